"""Anomaly scores of the estimator: held-out predictive densities per entry and step, a
threshold from normal data, and flagged intervals.

**Scores.** Every observed entry is scored by its negative log predictive density under
the model with its time step hidden (:func:`gpvae.model.scoring.heldout_nlpd`: the
steps fall into ``num_folds`` interleaved folds, one conditioning per fold). A long series
is scored in overlapping **windows** of ``window`` steps (half-overlapping; each step takes
its score from the window in which it lies farthest from the edges), batched many windows
at a time, so the cost is linear in the length and the sequential part of a Markov
conditioning is ``window`` steps long, not the series' length.

**Step scores.** Without a profile the step score is the sum of the entry scores at the
step. A :class:`AnomalyProfile` (:func:`fit_profile`, from the scores of normal data) puts
the features on one scale first, ``(entry - center_d) / scale_d`` with the median and a
robust spread of feature d's scores on the normal data, so that a feature whose normal
scores are large (a noisy sensor) does not drown the others, and sums these over the
observed entries. With ``baseline = L > 0`` the median of this sum over the previous L
steps is subtracted (the steps before a series count as the normal data's median
``level``): when the data drift slowly away from the normal part, every score rises, and
only the rise against the recent level remains (an anomaly that lasts longer than about
L / 2 steps becomes the new level). The step score is this, averaged over the last
``smooth`` steps (NaN at a step with no observed entry, whatever ``smooth``: the steps
before it do not score it, and it is never flagged). Both are trailing: no future step is
used, so they can run on a stream.

**Tail scale.** A feature that is nearly always the same (a 0/1 command flag that is rarely
on) has normal scores whose median and 90% quantile agree, so its occasional normal value
(the flag switched on) scores thousands of its spreads and drowns every other feature's
anomaly. With ``feature_scale="tail"`` each entry score becomes instead ``-log`` of the
share of the feature's normal scores at least as large (0 to ``-log``
:data:`gpvae.settings.ANOMALY_TAIL_SHARE`, read off :data:`gpvae.settings.ANOMALY_TAIL_LEVELS`
stored quantiles) and, beyond the top share, an exponential tail with the mean excess of the
normal scores there (at least :data:`gpvae.settings.ANOMALY_MIN_SCALE`): a value as rare
as one step in a hundred of the normal data counts the same in every feature.
``combine="max"`` takes the largest feature's score at a step instead of the sum (a value
rare in one feature is not averaged away by many ordinary ones).

**Novelty in a constant feature.** A feature that is constant, or nearly, through the normal
data (its normal scores span less than :data:`gpvae.settings.ANOMALY_MIN_SCALE`, with no
larger mean excess beyond their top quantile) has no tail to extrapolate, and any new value
of it lies far out on the tail scale. When such a
feature keeps changing on new normal data (telemetry off its training constant, a command
flag never set in training) it would hold the alarm above the threshold. With
``novelty="cap"`` the alarm counts such a value as rare as the normal data can show
(``log(n + 1)`` for n normal steps) and no rarer (:func:`novelty_caps`); the step score,
which ranks the steps, keeps the uncapped value.

**Causal scores.** With ``causal`` the held-out scores are forecasts: each window's steps
fall into ``num_folds`` consecutive blocks, each scored given the steps before it only
(a filtering score: no score depends on a later step, as a monitor of a stream needs).

**Threshold.** The threshold is compared with the **alarm score**: the same, averaged over
the last ``alarm_smooth`` steps (default 1: the step's own score). It is the
``1 - false_alarm_rate`` quantile of the normal data's alarm scores. With ``spread`` (and a
baseline) the alarm's difference from the trailing median is also divided by the trailing
spread of the summed score over the same L steps (its ``spread_quantile`` quantile,
:data:`gpvae.settings.ANOMALY_SPREAD_QUANTILE` by default, less its median; the normal
data's spread before a series and while fewer than L / 4 steps are there; at least
:data:`gpvae.settings.ANOMALY_MIN_SPREAD` times it): new data whose normal scores vary more,
or less, than the normal data's then keep about the target rate. With ``rank_window`` = W
> 0 (:data:`gpvae.settings.ANOMALY_RANK_WINDOW`, 256, the default since session 44) the
alarm is instead the **rank** of the step's summed score among those of the previous W steps
(:func:`trailing_ranks`: a continuous share, 0 to 1; the steps before a series are the
normal data's summed scores at W evenly spaced quantiles), and the threshold a share of the
recent steps: new data whose normal scores change in level, spread or shape keep about the
target rate, which no scale of the normal data's carried over to the next stretch of normal
data. The steps of an anomaly become part of what its later steps are ranked among, so its
start is flagged and, beyond its first few steps (about the target rate times W), fewer of
its later ones. Scores with many ties (a few distinct values) put atoms in the ranks, and
the rate is then met only to within an atom. The ranking (step)
score is not divided nor ranked. A long mean ranks
lasting anomalies better, but its upper quantile rests on a few independent stretches of
the normal data, which is why the alarm may use a shorter one. :func:`flagged_intervals`
turns the flagged steps into intervals (start, end, peak score, the features that
contribute most).

**Gaps.** The rate holds on new data about as complete as the normal data. The held-out
score of a step whose neighbours have missing entries is larger than with complete
neighbours (an encoder fitted on complete steps never saw a partly observed one), and the
alarm's normalisation does not undo it: the spread grows, but the upper tail grows more.
With the spread alarm, a threshold from complete normal data flagged 3.1-4.1% of normal
data with 30% of its entries missing, for a 1% target (3 seeds; a step's flag rate rose
with the missing entries of the two steps next to it, 0-0.3% with none to 9-15% with six
of their ten, and its fully observed steps were flagged 4.5-5.2%: not a matter of the
step's own observed count, so a threshold per observed count would not help; a model
fitted with ``mask_rate=0.3`` flagged 1.0-1.8%). The rank alarm does not undo it either:
on other simulated data (series of 200 steps, shorter than its window; 4 seeds, session
44) it flagged 2.5-3.8%, the spread alarm 2.5-5.0%. On two real series thousands of steps
long no rise was seen: with 30% of the test entries removed, the default rank alarm flagged
0.41% of SMAP/MSL channel C-1's unlabelled test steps against 0.56% complete, and 0.97%
against 0.96% of A-1's (one seed each, session 45); two checks, not a rule, so the warning
stays. The profile records the normal data's
``missing_share``, and scoring data that misses more than :data:`MISSING_SHARE_MARGIN`
more warns: a threshold learned from normal data with gaps like the scored data's keeps the
rate (0.8-1.4% there). Causal scores kept their rate and do not warn.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch

from gpvae import settings
from gpvae.arguments import check_memory, float_arg, int_arg
from gpvae.data import SeriesSet, from_padded
from gpvae.data.batching import shard_bounds
from gpvae.data.windows import window_starts
from gpvae.errors import InputTypeError, ModelFileError, ValidationError, invalid
from gpvae.estimator.context import EMPTY_SCORED, PredictContext
from gpvae.estimator.results import AnomalyResult, times_out
from gpvae.model.scoring import heldout_nlpd, latent_nlpd, prior_nlpd
from gpvae.rng import series_generators
from gpvae.training.distributed import Communicator
from gpvae.training.session import check_same_series

#: The end of the warning of :func:`fit_profile` (``fit_threshold``) about series with no
#: observed entry: they have no score, so the threshold is learned without them.
EMPTY_PROFILED = "they have nothing to score and are left out of the threshold"

#: Scoring data whose share of missing entries exceeds that of the normal data the
#: threshold was learned from by more than this warns (:func:`heldout_scores`): the
#: held-out scores of the steps next to gaps are larger than those of complete data (an
#: encoder fitted with ``mask_rate=0`` never saw a partly observed step), so the alarm flags
#: more normal steps than the target rate (a threshold from complete normal data flagged
#: 1.1-1.8% at 5% missing, 1.5-2.4% at 10% and 3.1-4.1% at 30%, for a 1% target, 3 seeds,
#: with the spread alarm; the rank alarm 2.5-3.8% at 30% on other data, 4 seeds, series
#: of 200 steps, shorter than its window; no rise on two real series thousands of steps
#: long, SMAP/MSL A-1 and C-1, one seed each;
#: 0.8-1.4% at 30% when learned from normal data with 30% missing; a model fitted with
#: ``mask_rate=0.3`` flagged 1.0-1.8% at 30% against 0.9-1.4% on complete data; causal
#: scores did not move with the share, and do not warn).
MISSING_SHARE_MARGIN = 0.05
#: The remedies of the threshold's warnings, which the command line says in its own words
#: (:mod:`gpvae.app.cli.errors`: its threshold is learned by ``gpvae fit``).
GAPS_REMEDY = "call fit_threshold with normal data that has gaps like this data's to keep the rate"
OBSERVED_REMEDY = "call fit_threshold with data where it is observed to include it"
THRESHOLD_DATA = "in the normal data that fit_threshold learned the threshold from"

__all__ = [
    "AnomalyProfile",
    "alarm_scores",
    "combine_prior",
    "entry_scores",
    "fit_profile",
    "flagged_intervals",
    "heldout_scores",
    "missing_share",
    "model_entry_scores",
    "novelty_caps",
    "profile_from_entries",
    "quantile_threshold",
    "runs_of",
    "score_settings",
    "spread_ratio",
    "step_scores",
    "tail_fit",
    "tail_scores",
    "time_gaps",
]


@dataclass
class AnomalyProfile:
    """How a fitted model scores anomalies, and its threshold, learned from normal data.

    Attributes:
        window: steps per scoring window (None: whole series).
        num_folds: interleaved folds of held-out steps.
        num_samples: Monte Carlo draws of z per conditioning.
        smooth: steps of the trailing mean of the step score (1: none).
        center: (D,) median of each feature's entry scores on the normal data.
        scale: (D,) robust spread of each feature's entry scores on the normal data.
        threshold: flag steps whose score is above it.
        false_alarm_rate: the share of the normal data's steps above ``threshold``.
        num_steps: the normal steps the threshold was chosen from.
        baseline: steps of the trailing median subtracted from the summed score (0: none).
        level: the normal data's median summed score (the baseline before a series starts).
        alarm_smooth: steps of the trailing mean compared with ``threshold`` (None: ``smooth``,
            as in profiles saved before this field existed).
        prior_weight: weight of the entries' scores under the prior alone added to their
            held-out scores (0: none, as in profiles saved before this field existed).
        prior_ratio: (D,) the normal data's spread of each feature's held-out scores over
            that of its prior scores; the prior score of feature d enters with the weight
            ``prior_weight * prior_ratio[d]``, so that ``prior_weight`` is relative to the
            held-out score whatever the scales (None: 1).
        causal: score each window's blocks from the steps before them only (False, as in
            profiles saved before this field existed: interleaved folds).
        spread: divide the alarm's baseline-subtracted score by its trailing spread (False,
            as in profiles saved before this field existed).
        level_spread: the normal data's spread of the summed score (``spread_quantile``
            quantile less median; the trailing spread before a series starts).
        spread_quantile: the upper quantile of the spreads (0.9, as in profiles saved
            before this field existed).
        feature_scale: "spread" (``(entry - center) / scale``) or "tail" (``-log`` of the
            normal data's tail probability, :func:`tail_scores`; "spread" in profiles saved
            before this field existed).
        combine: "sum" or "max" of the features' scaled scores at a step ("sum" in profiles
            saved before this field existed).
        tail_logp: (L,) increasing ``-log`` tail probabilities of the stored quantiles
            (``feature_scale="tail"``; else None).
        tail_quantiles: (L, D) each feature's normal entry score at those tail
            probabilities (non-decreasing down each column).
        tail_beta: (D,) mean excess of each feature's normal scores above its last quantile.
        alarm_cap: (D,) the largest tail score of each feature in the alarm (``novelty="cap"``:
            ``log(n + 1)`` for a feature whose n normal scores span less than
            :data:`gpvae.settings.ANOMALY_MIN_SCALE`, infinite for the others; None: no cap,
            as in profiles saved before this field existed).
        unprofiled: (D,) True for a feature with no observed value in the normal data: it
            has no normal scores to be put on a scale by, so it is left out of the step
            score, the alarm and the intervals' features (its entry scores are still
            reported; None: none, as in profiles saved before this field existed).
        missing_share: the share of the normal data's entries (of its profiled features, at
            the steps with one observed) that were missing (:func:`missing_share`); scoring
            data with a much larger share warns (:data:`MISSING_SHARE_MARGIN`; None:
            unknown, as in profiles saved before this field existed, and nothing warns).
        rank_window: the alarm is the rank of the step's summed score among those of the
            previous ``rank_window`` steps (:func:`trailing_ranks`), in place of the
            baseline and spread; 0: no rank (as in profiles saved before this field
            existed).
        rank_reference: (``rank_window``,) the normal data's summed alarm scores at
            ``rank_window`` evenly spaced quantiles: the steps before a series, which its
            first steps are ranked among (None without a rank).
    """

    window: int | None
    num_folds: int
    num_samples: int
    smooth: int
    center: np.ndarray
    scale: np.ndarray
    threshold: float
    false_alarm_rate: float
    num_steps: int
    baseline: int = 0
    level: float = 0.0
    alarm_smooth: int | None = None
    prior_weight: float = 0.0
    prior_ratio: np.ndarray | None = None
    causal: bool = False
    spread: bool = False
    level_spread: float = 1.0
    feature_scale: str = "spread"
    combine: str = "sum"
    tail_logp: np.ndarray | None = None
    tail_quantiles: np.ndarray | None = None
    tail_beta: np.ndarray | None = None
    alarm_cap: np.ndarray | None = None
    spread_quantile: float = 0.9
    unprofiled: np.ndarray | None = None
    missing_share: float | None = None
    rank_window: int = 0
    rank_reference: np.ndarray | None = None

    @property
    def alarm_width(self) -> int:
        """Steps of the trailing mean that the threshold is compared with."""
        return self.smooth if self.alarm_smooth is None else self.alarm_smooth

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (stored in the model folder's ``config.json``)."""
        out = dataclasses.asdict(self)
        out["center"] = [float(c) for c in self.center]
        out["scale"] = [float(s) for s in self.scale]
        for key in ("prior_ratio", "tail_logp", "tail_quantiles", "tail_beta", "rank_reference"):
            if getattr(self, key) is not None:
                out[key] = np.asarray(getattr(self, key), dtype=np.float64).tolist()
        if self.unprofiled is not None:
            out["unprofiled"] = [bool(u) for u in self.unprofiled]
        if self.alarm_cap is not None:  # JSON has no infinity: null for "no cap"
            out["alarm_cap"] = [float(c) if math.isfinite(c) else None for c in self.alarm_cap]
        return out

    @classmethod
    def from_json(cls, data: object, num_features: int) -> AnomalyProfile:
        """Rebuild from :meth:`to_json` (raises :class:`ModelFileError` when malformed)."""
        try:
            assert isinstance(data, dict)
            prof = cls(
                window=None if data["window"] is None else int(data["window"]),
                num_folds=int(data["num_folds"]),
                num_samples=int(data["num_samples"]),
                smooth=int(data["smooth"]),
                center=np.asarray(data["center"], dtype=np.float64),
                scale=np.asarray(data["scale"], dtype=np.float64),
                threshold=float(data["threshold"]),
                false_alarm_rate=float(data["false_alarm_rate"]),
                num_steps=int(data["num_steps"]),
                # absent in profiles saved before the drift baseline: none, alarm = step score
                baseline=int(data.get("baseline", 0)),
                level=float(data.get("level", 0.0)),
                alarm_smooth=None
                if data.get("alarm_smooth") is None
                else int(data["alarm_smooth"]),
                prior_weight=float(data.get("prior_weight", 0.0)),
                prior_ratio=None
                if data.get("prior_ratio") is None
                else np.asarray(data["prior_ratio"], dtype=np.float64),
                causal=bool(data.get("causal", False)),
                spread=bool(data.get("spread", False)),
                level_spread=float(data.get("level_spread", 1.0)),
                feature_scale=str(data.get("feature_scale", "spread")),
                combine=str(data.get("combine", "sum")),
                tail_logp=_optional_array(data.get("tail_logp")),
                tail_quantiles=_optional_array(data.get("tail_quantiles")),
                tail_beta=_optional_array(data.get("tail_beta")),
                alarm_cap=None
                if data.get("alarm_cap") is None
                else np.array(
                    [math.inf if c is None else float(c) for c in data["alarm_cap"]],
                    dtype=np.float64,
                ),
                spread_quantile=float(data.get("spread_quantile", 0.9)),
                unprofiled=_optional_flags(data.get("unprofiled")),
                missing_share=None
                if data.get("missing_share") is None
                else float(data["missing_share"]),
                rank_window=int(data.get("rank_window", 0)),
                rank_reference=_optional_array(data.get("rank_reference")),
            )
            ok = (
                prof.center.shape == (num_features,)
                and prof.scale.shape == (num_features,)
                and bool(np.isfinite(prof.center).all())
                and bool((prof.scale > 0).all())
                and math.isfinite(prof.threshold)
                and prof.num_folds >= 1
                and prof.num_samples >= 1
                and prof.smooth >= 1
                and (prof.window is None or prof.window >= 2)
                and prof.baseline >= 0
                and math.isfinite(prof.level)
                and prof.alarm_width >= 1
                and math.isfinite(prof.prior_weight)
                and prof.prior_weight >= 0.0
                and math.isfinite(prof.level_spread)
                and prof.level_spread > 0.0
                and 0.5 < prof.spread_quantile < 1.0
                and (
                    prof.prior_ratio is None
                    or (
                        prof.prior_ratio.shape == (num_features,)
                        and bool((prof.prior_ratio > 0).all())
                        and bool(np.isfinite(prof.prior_ratio).all())
                    )
                )
                and (prof.unprofiled is None or prof.unprofiled.shape == (num_features,))
                and (prof.missing_share is None or 0.0 <= prof.missing_share <= 1.0)
                and _rank_ok(prof)
                and prof.combine in COMBINES
                and prof.feature_scale in FEATURE_SCALES
                and (prof.feature_scale != "tail" or _tail_ok(prof, num_features))
                and (
                    prof.alarm_cap is None
                    or (
                        prof.feature_scale == "tail"
                        and prof.alarm_cap.shape == (num_features,)
                        and bool((prof.alarm_cap > 0).all())
                    )
                )
            )
        except (AssertionError, KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise ModelFileError(
                f"config.json: expected anomaly_profile to describe {num_features} features "
                f"(window, num_folds, num_samples, smooth, center, scale, threshold, "
                f"false_alarm_rate, num_steps; optionally baseline, level, alarm_smooth, "
                f"prior_weight, prior_ratio, causal, spread, level_spread, feature_scale, "
                f"combine, tail_logp, tail_quantiles, tail_beta, alarm_cap, "
                f"spread_quantile, unprofiled, missing_share), "
                f"found {data!r}"
            )
        return prof


#: Ways to put each feature's entry scores on one scale (:class:`AnomalyProfile`).
FEATURE_SCALES = ("spread", "tail")
#: Ways to combine the scaled entry scores of a step (:class:`AnomalyProfile`).
COMBINES = ("sum", "max")
#: How the alarm treats a value beyond the normal scores of a (near-)constant feature
#: (:func:`novelty_caps`): "extrapolate" (the tail scale's exponential tail, as the ranking
#: score does) or "cap" (no rarer than one in the n + 1 normal steps).
NOVELTIES = ("extrapolate", "cap")


def _optional_array(value: object) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=np.float64)


def _optional_flags(value: object) -> np.ndarray | None:
    """A JSON list of booleans as a bool array (None stays None)."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, bool) for v in value):
        raise TypeError("expected a list of booleans")
    return np.array(value, dtype=bool)


def _rank_ok(prof: AnomalyProfile) -> bool:
    """A profile without a rank has no reference; one with a rank has ``rank_window``
    finite, ordered reference scores."""
    ref = prof.rank_reference
    if prof.rank_window == 0:
        return ref is None
    return (
        prof.rank_window >= 2
        and ref is not None
        and ref.shape == (prof.rank_window,)
        and bool(np.isfinite(ref).all() and (np.diff(ref) >= 0).all())
    )


def _tail_ok(prof: AnomalyProfile, num_features: int) -> bool:
    """A tail profile's stored quantiles are complete, finite and ordered."""
    logp, q, beta = prof.tail_logp, prof.tail_quantiles, prof.tail_beta
    if logp is None or q is None or beta is None:
        return False
    L = logp.shape[0] if logp.ndim == 1 else -1
    return (
        L >= 2
        and q.shape == (L, num_features)
        and beta.shape == (num_features,)
        and bool(np.isfinite(logp).all() and np.isfinite(q).all() and np.isfinite(beta).all())
        and bool((np.diff(logp) > 0).all() and (np.diff(q, axis=0) >= 0).all())
        and bool((beta > 0).all())
    )


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise invalid(name, " or ".join(repr(a) for a in allowed), value)
    return value


def score_settings(
    profile: AnomalyProfile | None,
    num_samples: int | None,
    num_folds: int | None,
    window: int | str | None,
    prior_weight: float | None = None,
    causal: bool | None = None,
) -> tuple[int, int, int | None, float, bool]:
    """(draws, folds, window, prior weight, causal) of a call: the given ones, else the
    profile's, else 16, 5 (8 blocks when causal), :data:`gpvae.settings.ANOMALY_WINDOW`
    (``window="default"``; None: whole series), :data:`gpvae.settings.ANOMALY_PRIOR_WEIGHT`
    and False."""
    if causal is None:
        c = profile.causal if profile else False
    elif isinstance(causal, (bool, np.bool_)):
        c = bool(causal)
    else:
        raise invalid("causal", "True or False", causal)
    S = (profile.num_samples if profile else 16) if num_samples is None else num_samples
    default_k = settings.ANOMALY_CAUSAL_BLOCKS if c else 5
    K = (profile.num_folds if profile else default_k) if num_folds is None else num_folds
    if prior_weight is None:
        w = profile.prior_weight if profile else settings.ANOMALY_PRIOR_WEIGHT
    else:
        w = float_arg("prior_weight", prior_weight, positive=False)
    if isinstance(window, str):
        if window != "default":
            raise invalid("window", "a number of steps, None or 'default'", window)
        W = profile.window if profile else settings.ANOMALY_WINDOW
    else:
        W = window
    if profile is not None:
        _warn_other_settings(profile, (S, K, W, w, c))
    return S, K, W, w, c


def _warn_other_settings(
    profile: AnomalyProfile, chosen: tuple[int, int, int | None, float, bool]
) -> None:
    """Warn when scores of a fitted profile are computed with settings other than those its
    threshold was learned with: the scores are then on another scale (fewer draws, for one,
    score every step higher, since ``-log`` of a mean over fewer draws is larger on
    average), and the flags need not keep the profile's false-alarm rate."""
    stored = (
        profile.num_samples,
        profile.num_folds,
        profile.window,
        profile.prior_weight,
        profile.causal,
    )
    names = ("num_samples", "num_folds", "window", "prior_weight", "causal")
    other = [(n, new, old) for n, new, old in zip(names, chosen, stored, strict=True) if new != old]
    if other:
        found = ", ".join(f"{n}={new!r} (the threshold's: {old!r})" for n, new, old in other)
        warnings.warn(
            f"{', '.join(n for n, _, _ in other)}: expected the settings the stored "
            f"threshold was learned with, found {found}: these scores are on "
            "another scale, so the flagged share of normal steps need not keep the "
            f"false-alarm rate ({profile.false_alarm_rate:g}); leave them out to use the "
            "stored settings, or learn the threshold again with them (fit_threshold)",
            UserWarning,
            stacklevel=4,
        )


# ---------------------------------------------------------------- entry scores


def _check_window(window: int | None) -> int | None:
    return None if window is None else int_arg("window", window, minimum=2)


def _causal_starts(length: int, window: int, stride: int) -> list[int]:
    """Window starts every ``stride`` steps from 0 until a window reaches the end (the last
    may be shorter): unlike :func:`window_starts`, none is placed by where the series ends,
    so the window a step is scored in does not depend on how many steps follow it."""
    return list(range(0, -(-max(length - window, 0) // stride) * stride + 1, stride))


def _pieces(
    ss: SeriesSet, window: int | None, causal: bool = False
) -> tuple[SeriesSet, list[tuple[int, int]]]:
    """The windows of every series as a set of short series, and (series, start) of each."""
    where: list[tuple[int, int]] = []
    values: list[np.ndarray] = []
    times: list[np.ndarray] = []
    for i, (v, t) in enumerate(zip(ss.values, ss.times)):
        if window is None:
            starts = [0]
        elif causal:
            starts = _causal_starts(len(t), window, max(1, window // 2))
        else:
            starts = window_starts(len(t), window, max(1, window // 2))
        for s in starts:
            end = len(t) if window is None else s + window
            where.append((i, s))
            values.append(v[s:end])
            times.append(t[s:end])
    return dataclasses.replace(ss, values=tuple(values), times=tuple(times)), where


def _block_generators(
    ctx: PredictContext, pieces: SeriesSet, idx: np.ndarray, C: int, salt: int, k: int
) -> list[torch.Generator]:
    """One generator per piece of ``idx`` for its causal block ``k`` (steps k C ...),
    seeded by the estimator's seed, ``salt``, k and the piece's values and times before the
    block (block 0: its first time only), so its draws depend on nothing after them."""
    start = k * C
    values = [pieces.values[i][:start] for i in idx]
    keys = [np.concatenate([[float(k)], pieces.times[i][: max(start, 1)]]) for i in idx]
    return series_generators(ctx.seed, salt, values, keys, ctx.device)


def entry_scores(
    ctx: PredictContext,
    scaled: SeriesSet,
    num_samples: int,
    num_folds: int,
    window: int | None,
    prior: bool = False,
    causal: bool = False,
    latent_lags: int | None = None,
    block: int = 1,
) -> list[np.ndarray]:
    """Held-out entry scores of every series of the standardised ``scaled`` (``block``:
    the held-out folds in runs of that many consecutive steps, ``heldout_nlpd(block=)``;
    ``prior``:
    the scores under the prior alone, :func:`gpvae.model.scoring.prior_nlpd`; ``causal``:
    each window's blocks of ``ceil(window / num_folds)`` steps scored from the steps before
    them, :func:`gpvae.model.scoring.heldout_nlpd`, with the windows laid from each
    series' start and each block's draws seeded by what comes before it, and each step
    takes its score from the window in which it has the most steps before it, so no score
    depends on a later step (with ``window`` None: ``num_folds`` blocks of each series);
    ``latent_lags``: instead the latent path's one-step-ahead surprise under the prior
    given that many previous steps, per latent channel,
    :func:`gpvae.model.scoring.latent_nlpd`, each step from the window in which it has
    the most steps before it).

    Returns:
        n arrays (T_i, D) float64 (``latent_lags``: (T_i, L)), NaN where not observed.
    """
    S = int_arg("num_samples", num_samples)
    K = int_arg("num_folds", num_folds)
    W = _check_window(window)
    # causal windows: blocks of a fixed length, windows placed from the start, draws seeded
    # by what comes before each block (no score depends on a later step); the latent score
    # and whole-series windows keep their own layout
    strict = causal and W is not None and latent_lags is None
    pieces, where = _pieces(scaled, W, causal=strict)
    C = -(-W // K) if strict and W is not None else None
    D = scaled.num_features if latent_lags is None else ctx.model.latent_dim
    per_batch = settings.ANOMALY_WINDOW_BATCH if W is not None else ctx.batch_size
    B = min(per_batch, pieces.num_series)
    N = pieces.max_length
    # one float64 log-sum-exp per chunk of draws is kept until a fold is scored
    check_memory(
        "num_samples",
        8.0 * math.ceil(S / settings.SAMPLE_CHUNK) * B * N * D,
        f"{S} draws for {B} windows x {N} steps x {D} features",
    )
    model = ctx.model
    model.eval()
    piece_scores: list[np.ndarray] = [np.empty(0)] * pieces.num_series
    # a failed allocation of the draws names num_samples, with check_draws' remedies
    guard = (
        ctx.allocating("num_samples", S, pieces.num_series, N, batch=per_batch)
        if latent_lags is None
        else contextlib.nullcontext()
    )
    with guard:
        starts = range(0, pieces.num_series, per_batch)
        for start in ctx.tracked(starts, len(starts), "anomaly scores"):
            idx = np.arange(start, min(start + per_batch, pieces.num_series))
            batch = ctx.batch(pieces, idx)
            gens = ctx.series_generators(pieces, idx, salt=4)
            before = None
            if C is not None:  # block k's draws: seeded by the piece before the block
                before = partial(_block_generators, ctx, pieces, idx, C, 5 if prior else 4)
            if latent_lags is not None:
                s_np = latent_nlpd(model, batch, latent_lags).numpy()  # (B, N, L)
            elif prior:
                s_np = prior_nlpd(model, batch, gens, S, C, before).numpy()  # (B, N, D)
            else:
                s_np = heldout_nlpd(model, batch, gens, K, S, causal, block, C, before).numpy()
            for b, j in enumerate(idx):
                piece_scores[j] = s_np[b, : len(pieces.times[j])]
    out = [np.full((len(t), D), np.nan) for t in scaled.times]
    depth = [np.full(len(t), -1.0) for t in scaled.times]
    for (i, s), sc in zip(where, piece_scores):
        T, n = len(scaled.times[i]), len(sc)
        pos = np.arange(s, s + n)
        if causal or latent_lags is not None:  # the window with the most past
            d = (pos - s).astype(np.float64)
        else:
            d = np.minimum(pos - s, s + n - 1 - pos).astype(np.float64)
            d[(pos == 0) | (pos == T - 1)] = np.inf  # a series' own ends: no better window
        better = d > depth[i][pos]
        out[i][pos[better]] = sc[better]
        depth[i][pos[better]] = d[better]
    return out


def model_entry_scores(
    ctx: PredictContext,
    scaled: SeriesSet,
    num_samples: int,
    num_folds: int,
    window: int | None,
    prior_weight: float = 0.0,
    prior_ratio: np.ndarray | None = None,
    causal: bool = False,
) -> list[np.ndarray]:
    """The held-out (``causal``: forecast) entry scores plus ``prior_weight * prior_ratio``
    times the scores under the prior alone (:func:`entry_scores`; the same shapes;
    ``prior_ratio`` None: 1)."""
    w = float_arg("prior_weight", prior_weight, positive=False)
    held = entry_scores(ctx, scaled, num_samples, num_folds, window, causal=causal)
    if w == 0.0:
        return held
    alone = entry_scores(ctx, scaled, num_samples, num_folds, window, prior=True, causal=causal)
    return combine_prior(held, alone, w, prior_ratio)


def combine_prior(
    held: list[np.ndarray],
    alone: list[np.ndarray],
    prior_weight: float,
    prior_ratio: np.ndarray | None,
) -> list[np.ndarray]:
    """``held + prior_weight * prior_ratio * alone`` per series (arrays (T_i, D))."""
    r = 1.0 if prior_ratio is None else prior_ratio
    return [h + prior_weight * r * a for h, a in zip(held, alone)]


def spread_ratio(held: list[np.ndarray], alone: list[np.ndarray]) -> np.ndarray:
    """(D,) each feature's spread of the held-out scores over that of the prior scores, on
    normal data (the spread of :func:`profile_from_entries`, at least
    :data:`gpvae.settings.ANOMALY_MIN_SCALE`; 1 for a feature scored on neither)."""
    floor = settings.ANOMALY_MIN_SCALE
    return np.maximum(_center_spread(held)[1], floor) / np.maximum(_center_spread(alone)[1], floor)


def _center_spread(entry: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(D,) each feature's median and 90% quantile less median over its finite scores in
    the arrays (T_i, D) (0 and 1 where a feature has none)."""
    allrows = np.concatenate(entry)  # (sum T_i, D)
    D = allrows.shape[1]
    center, spread = np.zeros(D), np.ones(D)
    for d in range(D):
        col = allrows[:, d]
        col = col[np.isfinite(col)]
        if col.size:
            center[d] = float(np.median(col))
            spread[d] = float(np.quantile(col, 0.9)) - center[d]
    return center, spread


def tail_fit(entry: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tail of each feature's entry scores on normal data (arrays (T_i, D)).

    Returns:
        ``logp`` (L,): ``-log p`` at L = :data:`gpvae.settings.ANOMALY_TAIL_LEVELS` tail
        probabilities p evenly spaced in log from 1 to
        :data:`gpvae.settings.ANOMALY_TAIL_SHARE`; ``quantiles`` (L, D): each feature's
        ``1 - p`` quantile; ``beta`` (D,): the mean excess of its scores above the last one
        (at least :data:`gpvae.settings.ANOMALY_MIN_SCALE`). A feature scored nowhere: 0s, 1.
    """
    share = float(settings.ANOMALY_TAIL_SHARE)
    L = int_arg("ANOMALY_TAIL_LEVELS", settings.ANOMALY_TAIL_LEVELS, minimum=2)
    if not 0.0 < share < 1.0:
        raise invalid("ANOMALY_TAIL_SHARE", "a number in (0, 1)", share)
    logp = np.linspace(0.0, -math.log(share), L)
    allrows = np.concatenate(entry)
    D = allrows.shape[1]
    q, beta = np.zeros((L, D)), np.ones(D)
    for d in range(D):
        col = allrows[:, d]
        col = col[np.isfinite(col)]
        if not col.size:
            continue
        q[:, d] = np.maximum.accumulate(np.quantile(col, 1.0 - np.exp(-logp)))
        excess = col[col > q[-1, d]] - q[-1, d]
        beta[d] = max(float(excess.mean()) if excess.size else 0.0, settings.ANOMALY_MIN_SCALE)
    return logp, q, beta


def novelty_caps(entry: list[np.ndarray], quantiles: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """(D,) the alarm's cap of each feature's tail score (``novelty="cap"``).

    A feature has no tail of its own to extrapolate when its normal scores span less than
    :data:`gpvae.settings.ANOMALY_MIN_SCALE` between their minimum and their top
    :data:`gpvae.settings.ANOMALY_TAIL_SHARE` quantile and their mean excess beyond it is
    no larger either (``quantiles`` (L, D) and ``beta`` (D,) of :func:`tail_fit`; ``beta`` at
    its floor): a value constant, or nearly, through the normal data. Its exponential tail
    then has the floor's scale, and a new value of it scores far beyond every other
    feature's. Its cap is ``log(n + 1)`` (n: its normal scores): a value beyond all of them
    is taken as rare as the normal data can show, one step in n + 1, and no rarer. A flag
    set on fewer steps than the top share, with large normal scores when set, has a mean
    excess of its own and is not capped. The other features: infinite (no cap).
    """
    allrows = np.concatenate(entry)
    n = np.isfinite(allrows).sum(axis=0)
    floor = settings.ANOMALY_MIN_SCALE
    flat = ((quantiles[-1] - quantiles[0]) < floor) & (beta <= floor)
    return np.where(flat & (n > 0), np.log(n + 1.0), math.inf)


def tail_scores(
    entry: np.ndarray, logp: np.ndarray, quantiles: np.ndarray, beta: np.ndarray
) -> np.ndarray:
    """(T, D) ``-log`` of each entry score's tail probability under :func:`tail_fit`'s
    normal tail: linear in the score between the stored quantiles (a score equal to
    several tied quantiles takes the smallest, the share of normal scores at least as
    large), 0 at or below the lowest, ``logp[-1] + (score - quantiles[-1]) / beta`` above
    the last; NaN stays NaN."""
    entry = np.asarray(entry, dtype=np.float64)
    out = np.full(entry.shape, np.nan)
    L = len(logp)
    for d in range(entry.shape[1]):
        s, q = entry[:, d], quantiles[:, d]
        ok = np.isfinite(s)
        k = np.searchsorted(q, np.where(ok, s, 0.0), side="left")  # first q >= s
        lo, hi = np.clip(k - 1, 0, L - 1), np.clip(k, 0, L - 1)
        gap = q[hi] - q[lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            inside = logp[lo] + (logp[hi] - logp[lo]) * np.where(gap > 0, (s - q[lo]) / gap, 0.0)
        val = np.where(k == 0, logp[0], inside)
        val = np.where(k == L, logp[-1] + (s - q[-1]) / beta[d], val)
        out[:, d] = np.where(ok, val, np.nan)
    return out


# ---------------------------------------------------------------- step scores


def _trailing_mean(s: np.ndarray, width: int) -> np.ndarray:
    """Mean of the finite values among the last ``width`` steps (NaN where none)."""
    if width <= 1:
        return s
    ok = np.isfinite(s)
    c = np.concatenate([[0.0], np.cumsum(np.where(ok, s, 0.0))])
    k = np.concatenate([[0], np.cumsum(ok)])
    lo = np.maximum(np.arange(1, len(s) + 1) - width, 0)
    hi = np.arange(1, len(s) + 1)
    n = k[hi] - k[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (c[hi] - c[lo]) / n, np.nan)


def normalised_entries(entry: np.ndarray, profile: AnomalyProfile | None) -> np.ndarray:
    """Entry scores on the profile's common scale (as they are without a profile); NaN in
    the profile's ``unprofiled`` features (no normal scores to scale them by)."""
    if profile is None:
        return entry
    if profile.feature_scale == "tail":
        assert profile.tail_logp is not None
        assert profile.tail_quantiles is not None
        assert profile.tail_beta is not None
        z = tail_scores(entry, profile.tail_logp, profile.tail_quantiles, profile.tail_beta)
    else:
        z = (entry - profile.center) / profile.scale
    if profile.unprofiled is not None and profile.unprofiled.any():
        z = np.where(profile.unprofiled, np.nan, z)
    return z


def _trailing_median(s: np.ndarray, width: int, level: float) -> np.ndarray:
    """Median of the finite values among the ``width`` steps before each step, the steps
    before the series counting as ``level`` (``level`` where all of them are NaN)."""
    padded = pd.Series(np.concatenate([np.full(width, level), s]))
    med = padded.rolling(width, min_periods=1).median().to_numpy()[width - 1 : width - 1 + len(s)]
    return np.where(np.isnan(med), level, med)


def _summed(entry: np.ndarray, profile: AnomalyProfile | None, alarm: bool = False) -> np.ndarray:
    """The normalised entry scores summed (or, with the profile's ``combine="max"``, their
    largest) over the observed entries (NaN: none); ``alarm``: each capped at the profile's
    ``alarm_cap`` first."""
    z = normalised_entries(entry, profile)
    if alarm and profile is not None and profile.alarm_cap is not None:
        z = np.minimum(z, profile.alarm_cap)
    none = np.isnan(z).all(axis=1)
    if profile is not None and profile.combine == "max":
        return np.where(none, np.nan, np.where(np.isnan(z), -np.inf, z).max(axis=1))
    return np.where(none, np.nan, np.nansum(z, axis=1))


def _trailing_spread(
    s: np.ndarray, width: int, level_spread: float, quantile: float = 0.9
) -> np.ndarray:
    """``quantile`` less median of the finite values among the ``width`` steps before each
    step; ``level_spread`` where fewer than ``width // 4`` (at least 2) are finite; at least
    :data:`gpvae.settings.ANOMALY_MIN_SPREAD` times ``level_spread``."""
    prev = pd.Series(np.concatenate([[np.nan], s[:-1]])).rolling(width, min_periods=1)
    need = max(2, width // 4)
    count = prev.count().to_numpy()
    spread = (prev.quantile(quantile) - prev.median()).to_numpy()
    spread = np.where((count >= need) & np.isfinite(spread), spread, level_spread)
    return np.maximum(spread, settings.ANOMALY_MIN_SPREAD * level_spread)


def _detrended(
    entry: np.ndarray, profile: AnomalyProfile, alarm: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The summed score, and the same less its trailing median (the summed score itself
    without a baseline); ``alarm``: of the entries capped at the profile's ``alarm_cap``."""
    raw = _summed(entry, profile, alarm)
    if profile.baseline <= 0:
        return raw, raw
    return raw, raw - _trailing_median(raw, profile.baseline, profile.level)


#: Scores that :func:`trailing_ranks` compares at a time (steps times the window; at least
#: one step): its working set, a few times this many numbers, whatever the window.
RANK_CHUNK = 2**19


def trailing_ranks(raw: np.ndarray, width: int, reference: np.ndarray, scale: float) -> np.ndarray:
    """(T,) the rank in [0, 1) of each step's score in ``raw`` (T,) among the finite scores
    of the ``width`` steps before it, as a share: a score equal to one of them takes its
    mid-rank (the share below it plus half the share equal to it), a score between two of
    them the linear interpolation of theirs, a score below them all 0, and one above them
    all approaches 1 as ``1 - h / (1 + excess / scale)``, ``h`` the top value's half-share
    (``scale``: in the score's units; a hyperbola, not an exponential, so that large
    excesses stay apart from each other and from 1 in floating point: a threshold of exactly
    1 would never be exceeded). Continuous from the lowest of them up, so that the normal
    data's ``1 - rate`` quantile of the ranks flags ``rate`` of its steps: whole ranks of a
    window of 256 steps put that quantile on an atom, and ``> threshold`` then flagged less
    than half the rate (scores with many ties still put atoms at their values).

    The ``width`` sorted ``reference`` scores stand for the steps before the series, and a
    step with fewer than ``width // 4`` (at least 2) finite scores before it is ranked among
    them alone. NaN where the step's own score is NaN; +inf ranks 1, -inf 0. Time grows as
    T ``width`` log ``width`` (a sort of ``width`` scores per step), and memory is bounded
    (:data:`RANK_CHUNK` scores at a time)."""
    reference = np.asarray(reference, dtype=np.float64)
    if reference.shape != (width,) or not np.isfinite(reference).all():
        raise ValidationError(
            f"reference: expected {width} finite scores (one per step of the window), found "
            f"shape {reference.shape}"
        )
    raw = np.asarray(raw, dtype=np.float64)
    # non-finite scores before a step count as missing ones (the step's own keeps its sign)
    padded = np.concatenate([np.sort(reference), np.where(np.isfinite(raw), raw, np.nan)])
    need = max(2, width // 4)
    out = np.full(raw.shape, np.nan)
    rows = max(1, RANK_CHUNK // width)
    for a in range(0, len(raw), rows):
        b = min(len(raw), a + rows)
        # row i: the width scores before step a + i, sorted (NaN last)
        before = np.sort(
            np.lib.stride_tricks.sliding_window_view(padded[a : b + width - 1], width), axis=1
        )
        few = np.isfinite(before).sum(axis=1) < need
        before[few] = padded[:width]
        out[a:b] = _interpolated_ranks(raw[a:b], before, scale)
    return out


def _interpolated_ranks(s: np.ndarray, rows: np.ndarray, scale: float) -> np.ndarray:
    """(n,) :func:`trailing_ranks`' rank of each ``s[i]`` among the finite values of
    ``rows[i]`` (sorted, NaN last, at least one finite)."""
    n = np.isfinite(rows).sum(axis=1)
    idx = np.arange(len(s))
    below = (rows < s[:, None]).sum(axis=1)  # k: values below the score
    equal = (rows == s[:, None]).sum(axis=1)
    top = rows[idx, n - 1]
    lo = rows[idx, np.maximum(below - 1, 0)]  # the largest value below (k >= 1)
    # the smallest value above: the first past the values below and equal (k + e < n)
    hi = rows[idx, np.minimum(below + equal, n - 1)]
    lo_ties = (rows == lo[:, None]).sum(axis=1)
    hi_ties = (rows == hi[:, None]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # halved, so that values near the float limits do not overflow their difference
        frac = np.clip((s / 2 - lo / 2) / (hi / 2 - lo / 2), 0.0, 1.0)
        between = below - lo_ties / 2.0 + frac * (lo_ties + hi_ties) / 2.0
        excess = np.maximum(s / 2 - top / 2, 0.0) * 2.0 / scale
        beyond = below - lo_ties / 2.0 / (1.0 + excess)
    rank = np.where(equal > 0, below + equal / 2.0, np.where(below >= n, beyond, between))
    rank = np.where(below == 0, np.where(equal > 0, equal / 2.0, 0.0), rank)
    return np.where(np.isnan(s), np.nan, rank / n)


def _alarm_base(raw: np.ndarray, detrended: np.ndarray, profile: AnomalyProfile) -> np.ndarray:
    """The score the alarm averages: the summed score's trailing rank with
    ``profile.rank_window``; else the detrended score, divided by the summed score's
    trailing spread with ``profile.spread`` and a baseline (else as it is)."""
    if profile.rank_window > 0:
        assert profile.rank_reference is not None
        return trailing_ranks(
            raw, profile.rank_window, profile.rank_reference, profile.level_spread
        )
    if profile.baseline <= 0 or not profile.spread:
        return detrended
    return detrended / _trailing_spread(
        raw, profile.baseline, profile.level_spread, profile.spread_quantile
    )


def _step_mean(values: np.ndarray, raw: np.ndarray, width: int) -> np.ndarray:
    """The trailing mean of ``values`` over ``width`` steps, NaN where the step itself has
    no score (``raw`` NaN: no observed entry that counts): a step with nothing observed
    gets no score from the steps before it, and is never flagged."""
    return np.where(np.isnan(raw), np.nan, _trailing_mean(values, width))


def step_scores(entry: np.ndarray, profile: AnomalyProfile | None) -> np.ndarray:
    """(T,) step scores from (T, D) entry scores (NaN where no entry is observed, whatever
    the smoothing)."""
    if profile is None:
        return _summed(entry, None)
    raw, detrended = _detrended(entry, profile)
    return _step_mean(detrended, raw, profile.smooth)


def alarm_scores(entry: np.ndarray, profile: AnomalyProfile) -> np.ndarray:
    """(T,) scores that the profile's threshold is compared with (see the module; NaN
    where no entry is observed)."""
    raw, detrended = _detrended(entry, profile, alarm=True)
    return _step_mean(_alarm_base(raw, detrended, profile), raw, profile.alarm_width)


def heldout_scores(
    ctx: PredictContext,
    X: Any,
    times: Any,
    num_samples: int,
    num_folds: int,
    window: int | None,
    profile: AnomalyProfile | None = None,
    prior_weight: float = 0.0,
    causal: bool = False,
) -> AnomalyResult:
    """:meth:`GPVAE.anomaly_scores` (see there)."""
    ss, scaled = ctx.input(X, times, empty=EMPTY_SCORED)
    ratio = None if profile is None else profile.prior_ratio
    entry = model_entry_scores(
        ctx, scaled, num_samples, num_folds, window, prior_weight, ratio, causal
    )
    flagged = alarm = None
    if profile is None:
        step = [step_scores(e, None) for e in entry]
    else:
        _warn_unprofiled(entry, profile, list(ss.feature_names))
        _warn_missing(entry, profile)
        _warn_short(entry, profile)
        # the drift baseline (a rolling median) once per series, for both trailing means
        detrended = [_detrended(e, profile) for e in entry]
        step = [_step_mean(d, raw, profile.smooth) for raw, d in detrended]
        if profile.alarm_cap is not None:  # the alarm's own, of the capped entries
            detrended = [_detrended(e, profile, alarm=True) for e in entry]
        alarm = [
            _step_mean(_alarm_base(raw, d, profile), raw, profile.alarm_width)
            for raw, d in detrended
        ]
        flagged = [np.nan_to_num(a, nan=-np.inf) > profile.threshold for a in alarm]
    return AnomalyResult(
        # float64 whatever the input's dtype: a score (~ z^2 / 2) can exceed float32
        entry=from_padded(ss, entry, name="entry", dtype=np.float64),
        step=from_padded(ss, step, name="step", dtype=np.float64),
        num_folds=int(num_folds),
        num_samples=int(num_samples),
        window=window,
        threshold=None if profile is None else profile.threshold,
        flagged=None if flagged is None else _booleans(from_padded(ss, flagged, name="flagged")),
        alarm=None if alarm is None else from_padded(ss, alarm, name="alarm", dtype=np.float64),
        series_ids=ss.layout.series_ids,
        intervals=None
        if profile is None
        else [
            _in_input_times(
                ss,
                flagged_intervals(
                    a,
                    e,
                    t,
                    profile.threshold,
                    list(ss.feature_names),
                    profile,
                    flags=f,
                    scores=s,
                ),
            )
            # the peak is the highest alarm: the score the threshold is compared with; the
            # max_score the highest step score (the rank alarm peaks near 1 everywhere)
            for a, e, t, f, s in zip(alarm or [], entry, ss.times, flagged or [], step)
        ],
    )


def _warn_unprofiled(entry: list[np.ndarray], profile: AnomalyProfile, names: list[str]) -> None:
    """Warn when a feature that the profile leaves out (``unprofiled``) is observed."""
    if profile.unprofiled is None or not profile.unprofiled.any():
        return
    cols = np.flatnonzero(profile.unprofiled)
    seen = [d for d in cols if any(np.isfinite(e[:, d]).any() for e in entry)]
    if seen:
        warnings.warn(
            f"X: {', '.join(repr(names[d]) for d in seen)} had no observed value in the data "
            "fit_threshold learned from, so it has no normal scores: it is left out of the "
            "step score, the alarm and the intervals (its entry scores are still reported); "
            f"{OBSERVED_REMEDY}",
            UserWarning,
            stacklevel=4,
        )


def missing_share(entry: list[np.ndarray], profile: AnomalyProfile) -> float | None:
    """The share of missing entries (NaN scores) in the arrays (T_i, D), over the features
    the profile scores (not ``unprofiled``) at the steps where at least one of them is
    observed; None when there is no such step. A step with nothing observed does not count:
    it is never scored nor flagged, and an outage of whole steps is a gap in time, as rows
    absent from a frame are, not a partly observed neighbourhood."""
    used = np.ones(entry[0].shape[1], dtype=bool)
    if profile.unprofiled is not None:
        used = ~profile.unprofiled
    rows = [np.isnan(e[:, used]) for e in entry]
    rows = [m[~m.all(axis=1)] for m in rows]
    total = sum(m.size for m in rows)
    if total == 0:
        return None
    return float(sum(int(m.sum()) for m in rows)) / total


def _warn_missing(entry: list[np.ndarray], profile: AnomalyProfile) -> None:
    """Warn when the scored entries miss a much larger share than the normal data's
    (:data:`MISSING_SHARE_MARGIN`). Nothing for a profile that did not record its share,
    nor for causal scores (forecasts from the past blocks: their false alarms stayed at the
    normal data's rate with up to 30% of the entries missing)."""
    if profile.missing_share is None or profile.causal:
        return
    share = missing_share(entry, profile)
    if share is None or share <= profile.missing_share + MISSING_SHARE_MARGIN:
        return
    warnings.warn(
        f"X: {share:.1%} of the entries are missing (at the steps with an observed one), "
        f"against {profile.missing_share:.1%} {THRESHOLD_DATA}; the held-out scores "
        "of the steps next to gaps are larger than on data as complete as that, so the alarm "
        "may flag more normal steps than the target false_alarm_rate "
        f"({profile.false_alarm_rate:g}): 2.5 to 5 times as many with 30% of the entries "
        "missing against complete normal data on simulated series of 200 steps (shorter than "
        "the rank window), while on two real series thousands of steps long (SMAP/MSL "
        "channels A-1 and C-1, one seed each) the default rank alarm flagged no more than on "
        f"complete data: {GAPS_REMEDY}",
        UserWarning,
        stacklevel=4,
    )


def _warn_short(entry: list[np.ndarray], profile: AnomalyProfile) -> None:
    """Warn when a series is shorter than the alarm's trailing window (the rank window, else
    the baseline): its first steps are compared with fewer steps before them than the
    threshold's were, and short pieces of new data flag more normal steps than the target
    rate (measured once on a NAB model: 1.13% scored whole, 1.73% in chunks of 24 steps,
    2.92% one step at a time; docs/cli.md)."""
    width = profile.rank_window if profile.rank_window > 0 else max(profile.baseline, 0)
    lengths = [len(e) for e in entry if len(e)]
    short = [n for n in lengths if n < width]
    if not short:
        return
    warnings.warn(
        f"X: expected series of at least {width} steps (the alarm's trailing window), found "
        f"{len(short)} of {len(lengths)} shorter (the shortest {min(short)} steps): the "
        "first steps of a series are compared with fewer steps before them than in the "
        "normal data, so short pieces flag more normal steps than the target "
        f"false_alarm_rate ({profile.false_alarm_rate:g}); score new data together with its "
        "recent history and read the flags of the new steps only",
        UserWarning,
        stacklevel=4,
    )


def _booleans(flags: Any) -> Any:
    """Flags in the form of ``step``, as booleans (a frame's column came back as floats)."""
    if isinstance(flags, pd.Series):
        return flags.astype(bool)
    if isinstance(flags, list):
        return [np.asarray(f, dtype=bool) for f in flags]
    return np.asarray(flags, dtype=bool)


def _in_input_times(ss: SeriesSet, intervals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The intervals' ``*_time`` values in the input's own form: ``pd.Timestamp`` for
    datetime times, zone-aware or naive (not the hours since the first one that the model
    works in), ``pd.Timedelta`` for durations, numbers for numbers."""
    if ss.layout.time_unit is None:
        return intervals
    keys = ("start_time", "end_time", "peak_time")
    for iv in intervals:
        user = times_out(ss, np.array([iv[k] for k in keys], dtype=np.float64))
        iv.update(zip(keys, (_scalar_time(u) for u in user)))
    return intervals


def _scalar_time(value: Any) -> Any:
    """One datetime or duration as a pandas scalar (numpy's naive datetimes came back as
    ``np.datetime64``, zone-aware ones as ``pd.Timestamp``)."""
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value)
    if isinstance(value, np.timedelta64):
        return pd.Timedelta(value)
    return value


# ---------------------------------------------------------------- threshold, intervals


def quantile_threshold(step_scores: Any, quantile: float) -> float | None:
    """The ``quantile`` of the finite step scores (a list or array of per-series scores),
    or None when there is none: a threshold that flags ``1 - quantile`` of such steps."""
    flat = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in step_scores])
    flat = flat[np.isfinite(flat)]
    return float(np.quantile(flat, quantile)) if flat.size else None


def fit_profile(
    ctx: PredictContext,
    X: Any,
    times: Any,
    false_alarm_rate: float,
    num_samples: int,
    num_folds: int,
    window: int | None,
    smooth: int,
    baseline: int = 0,
    alarm_smooth: int | None = None,
    prior_weight: float = 0.0,
    causal: bool = False,
    spread: bool = False,
    feature_scale: str = "spread",
    combine: str = "sum",
    novelty: str = "extrapolate",
    spread_quantile: float = 0.9,
    comm: Communicator | None = None,
    sharded: bool = False,
    rank_window: int = 0,
) -> AnomalyProfile:
    """Score normal data ``X`` and learn the feature scales and the threshold from it
    (:func:`profile_from_entries`). In a distributed job (``comm``) every process scores
    a block of the series (its own series when ``sharded``), the scores are gathered, and
    every process learns the profile one process would learn from all of them."""
    _choice("feature_scale", feature_scale, FEATURE_SCALES)
    _choice("combine", combine, COMBINES)
    _choice("novelty", novelty, NOVELTIES)
    _spread_quantile_arg(spread_quantile)
    _rank_window_arg(rank_window)
    rate = _rate_arg(false_alarm_rate)
    smooth = int_arg("smooth", smooth)
    baseline = int_arg("baseline", baseline, minimum=0)
    if alarm_smooth is not None:
        alarm_smooth = int_arg("alarm_smooth", alarm_smooth)
    w = float_arg("prior_weight", prior_weight, positive=False)
    _, scaled = ctx.input(X, times, empty=EMPTY_PROFILED)
    names = list(scaled.feature_names)

    def scores(part: SeriesSet) -> tuple[list[np.ndarray], list[np.ndarray]]:
        held = entry_scores(ctx, part, num_samples, num_folds, window, causal=causal)
        if w == 0.0:
            return held, []
        alone = entry_scores(ctx, part, num_samples, num_folds, window, prior=True, causal=causal)
        return held, alone

    if comm is None:
        entry, alone = scores(scaled)
    else:  # a series' scores do not depend on the others: score a block, gather them all
        n = scaled.num_series
        if not sharded:
            check_same_series(comm, scaled)  # else each would score other data, silently
        lo, hi = (0, n) if sharded else shard_bounds(n, comm.rank, comm.world_size)
        with comm.together():
            mine = scores(scaled.subset(np.arange(lo, hi))) if hi > lo else ([], [])
        parts = comm.all_gather(mine)
        entry = [e for held, _ in parts for e in held]
        alone = [a for _, prior in parts for a in prior]
    ratio = None
    if w > 0.0:
        ratio = spread_ratio(entry, alone)
        entry = combine_prior(entry, alone, w, ratio)
    prof = profile_from_entries(
        entry, rate, num_samples, num_folds, window, smooth, True, baseline, alarm_smooth,
        spread=spread, feature_scale=feature_scale, combine=combine, novelty=novelty,
        spread_quantile=spread_quantile, feature_names=names, rank_window=rank_window,
    )  # fmt: skip
    prof.prior_weight, prof.prior_ratio, prof.causal = w, ratio, bool(causal)
    return prof


def _spread_quantile_arg(spread_quantile: float) -> float:
    q = float_arg("spread_quantile", spread_quantile)
    if not 0.5 < q < 1.0:
        raise ValidationError(
            f"spread_quantile: expected a number in (0.5, 1), found {spread_quantile!r}"
        )
    return q


def _rank_window_arg(rank_window: int) -> int:
    """0 (no rank) or a window of 2 to :data:`gpvae.settings.ANOMALY_RANK_WINDOW_MAX` steps."""
    top = settings.ANOMALY_RANK_WINDOW_MAX
    expected = (
        f"rank_window: expected 0 (no rank) or an integer of 2 to {top} steps to rank among "
        f"(gpvae.settings.ANOMALY_RANK_WINDOW_MAX), found {rank_window!r}"
    )
    if isinstance(rank_window, bool) or not isinstance(rank_window, (int, np.integer)):
        raise InputTypeError(expected)
    w = int(rank_window)
    if w < 0 or w == 1 or w > top:  # the same words for every refused window
        raise ValidationError(expected)
    return w


def _rate_arg(false_alarm_rate: float) -> float:
    rate = float_arg("false_alarm_rate", false_alarm_rate)
    if not rate < 1.0:
        raise ValidationError(
            f"false_alarm_rate: expected a number in (0, 1), found {false_alarm_rate!r}"
        )
    return rate


def profile_from_entries(
    entry: list[np.ndarray],
    false_alarm_rate: float,
    num_samples: int,
    num_folds: int,
    window: int | None,
    smooth: int,
    normalise: bool = True,
    baseline: int = 0,
    alarm_smooth: int | None = None,
    spread: bool = False,
    feature_scale: str = "spread",
    combine: str = "sum",
    novelty: str = "extrapolate",
    spread_quantile: float = 0.9,
    feature_names: list[str] | None = None,
    rank_window: int = 0,
) -> AnomalyProfile:
    """The profile of normal data from its entry scores (n arrays (T_i, D)).

    The scale of feature d is the spread between the median and the 90% quantile of its
    entry scores (at least :data:`gpvae.settings.ANOMALY_MIN_SCALE`: a feature whose normal
    scores never vary is not given an infinite weight); ``normalise=False`` keeps the raw
    scores (center 0, scale 1). ``level`` is the median of the summed normalised scores;
    ``level_spread`` its ``spread_quantile`` quantile less that median (at least
    :data:`gpvae.settings.ANOMALY_MIN_SCALE`; the alarm's trailing spread with ``spread``
    uses the same quantile); ``baseline``, ``alarm_smooth``, ``spread`` and
    ``spread_quantile`` (used only with a baseline) are stored as given (see the module). With
    ``feature_scale="tail"`` the features' scores are instead ``-log`` tail probabilities
    (:func:`tail_fit`, whatever ``normalise``); ``combine`` "sum" or "max" over the features.
    With the tail scale, ``novelty="cap"`` caps the alarm's score of each (near-)constant
    feature (:func:`novelty_caps`; the step score, which ranks the steps, is not capped);
    "extrapolate" (and the spread scale) caps nothing.
    A feature with no observed entry in ``entry`` has no normal scores to be scaled by: it
    is marked ``unprofiled`` (left out of the step score, the alarm and the intervals'
    features, so that its first values do not raise false alarms) with a warning that names
    it (``feature_names``, else its position).
    With ``rank_window`` > 0 the alarm is instead each step's rank among the previous
    ``rank_window`` steps (:func:`trailing_ranks`; the steps before a series: the normal
    data's summed alarm scores at ``rank_window`` evenly spaced quantiles).
    The threshold is the ``1 - false_alarm_rate`` quantile of the normal data's alarm scores;
    a rate below 1 / (2 n), n the scored normal steps, warns: the threshold then flags 1 of
    the n (1 / n, more than twice the rate; the rate needs at least 1 / (2 rate) steps).
    """
    rate = _rate_arg(false_alarm_rate)
    rank_window = _rank_window_arg(rank_window)
    feature_scale = _choice("feature_scale", feature_scale, FEATURE_SCALES)
    combine = _choice("combine", combine, COMBINES)
    novelty = _choice("novelty", novelty, NOVELTIES)
    spread_quantile = _spread_quantile_arg(spread_quantile)
    D = entry[0].shape[1]
    center, scale = np.zeros(D), np.ones(D)
    if normalise:
        center, scale = _center_spread(entry)
        scale = np.maximum(scale, settings.ANOMALY_MIN_SCALE)
    prof = AnomalyProfile(
        window=window,
        num_folds=int(num_folds),
        num_samples=int(num_samples),
        smooth=int_arg("smooth", smooth),
        center=center,
        scale=scale,
        threshold=math.inf,
        false_alarm_rate=rate,
        num_steps=0,
        baseline=int(baseline),
        alarm_smooth=alarm_smooth,
        spread=bool(spread),
        feature_scale=feature_scale,
        combine=combine,
        spread_quantile=spread_quantile,
    )
    seen = np.isfinite(np.concatenate(entry)).any(axis=0)
    if seen.any() and not seen.all():
        prof.unprofiled = ~seen
        names = [
            repr(feature_names[d]) if feature_names is not None else f"feature {d}"
            for d in np.flatnonzero(~seen)
        ]
        warnings.warn(
            f"X: expected observed values of every feature to learn its normal scores from, "
            f"found none of {', '.join(names)}; the threshold leaves it out of the step "
            "score and the alarm (its entry scores are still reported), so that its values "
            f"on new data raise no false alarms: {OBSERVED_REMEDY}",
            UserWarning,
            stacklevel=4,  # profile_from_entries < fit_profile < fit_threshold < the caller
        )
    if feature_scale == "tail":
        prof.tail_logp, prof.tail_quantiles, prof.tail_beta = tail_fit(entry)
        if novelty == "cap":
            prof.alarm_cap = novelty_caps(entry, prof.tail_quantiles, prof.tail_beta)
    summed = np.concatenate([_summed(e, prof) for e in entry])
    summed = summed[np.isfinite(summed)]
    prof.level = float(np.median(summed)) if summed.size else 0.0
    if summed.size:
        prof.level_spread = max(
            float(np.quantile(summed, spread_quantile)) - prof.level,
            settings.ANOMALY_MIN_SCALE,
        )
    prof.missing_share = missing_share(entry, prof)
    if rank_window:
        alarm = np.concatenate([_summed(e, prof, alarm=True) for e in entry])
        alarm = alarm[np.isfinite(alarm)]
        if alarm.size:
            prof.rank_window = rank_window
            prof.rank_reference = np.quantile(alarm, (np.arange(rank_window) + 0.5) / rank_window)
    steps = [alarm_scores(e, prof) for e in entry]
    thr = quantile_threshold(steps, 1.0 - rate)
    if thr is None:
        raise ValidationError("X: expected observed values to learn a threshold from, found none")
    prof.threshold = thr
    prof.num_steps = int(sum(np.isfinite(s).sum() for s in steps))
    _warn_unresolved_rate(rate, prof.num_steps, steps, thr)
    return prof


def _warn_unresolved_rate(
    rate: float, num_steps: int, steps: list[np.ndarray], threshold: float
) -> None:
    """Warn when ``rate`` is below 1 / (2 ``num_steps``), half a step of the ``num_steps``
    scored normal steps (their alarm scores ``steps``). Their ``1 - rate`` quantile
    ``threshold`` (linear interpolation) then lies between their two largest alarm scores
    and flags one of them (0 when the largest is tied), a share 1 / ``num_steps`` more
    than twice the target (``--false-alarm-rate 0.00001`` on 3,468 normal steps flagged
    0.1% of new normal data, 100 times the target). From 1 / (2 ``num_steps``) on, that one
    step is within a factor 2 of the rate: no warning."""
    need = math.ceil(1.0 / (2.0 * rate) - 1e-9)  # the fewest steps with rate >= 1 / (2 n)
    if num_steps < 1 or num_steps >= need:
        return
    num_flagged = int(sum((np.nan_to_num(s, nan=-np.inf) > threshold).sum() for s in steps))
    tail = (
        "more than twice the target rate"
        if num_flagged
        else "none, their largest alarm score being tied, while one is more than twice the "
        "target rate"
    )
    warnings.warn(
        f"false_alarm_rate: {rate:g} is below 1 / (2 x {num_steps}): the threshold flags "
        f"{num_flagged} of the {num_steps} scored steps of the normal data "
        f"({num_flagged}/{num_steps} = {100.0 * num_flagged / num_steps:.3g}%), {tail}; "
        f"a rate of {rate:g} needs at least {need} scored normal steps",
        UserWarning,
        stacklevel=5,  # < profile_from_entries < fit_profile < fit_threshold < the caller
    )


#: A spacing between consecutive times larger than this many times the series' median
#: spacing is a gap (rows missing from a regular series): :func:`time_gaps`.
GAP_FACTOR = 2.0

#: A series is regularly sampled, and :func:`time_gaps` finds gaps in it, when at least
#: this share of its spacings lie within :data:`REGULAR_TOLERANCE` of the median spacing.
REGULAR_SHARE = 0.5

#: How near the median spacing (a share of it) a spacing of a regular series lies.
REGULAR_TOLERANCE = 0.1


def time_gaps(times: Any) -> np.ndarray:
    """(T - 1,) booleans: True where the spacing between steps i and i + 1 of the sorted
    (T,) ``times`` (numbers, or datetime64 / timedelta64) exceeds :data:`GAP_FACTOR` times
    their median spacing (rows missing from a regular series), in a regularly sampled
    series: one with at least half of its spacings within 10% of the median spacing
    (:data:`REGULAR_SHARE`, :data:`REGULAR_TOLERANCE`; hourly rows, or every 5 minutes give
    or take seconds). An irregular series has no gaps: a Poisson-sampled series has a
    quarter of its spacings over twice their median, none of them rows missing. None is a
    gap either with fewer than 3 times or a median spacing of 0. The rule by which the plots
    break a line (:mod:`gpvae.app.plots`) and :func:`flagged_intervals` its runs."""
    t = np.asarray(times)
    if t.dtype.kind in "mM":
        unit = "datetime64[ns]" if t.dtype.kind == "M" else "timedelta64[ns]"
        spacing = np.diff(t.astype(unit)).astype(np.int64).astype(np.float64)
    else:
        spacing = np.diff(t.astype(np.float64))
    if len(t) < 3:
        return np.zeros(max(len(t) - 1, 0), dtype=bool)
    median = float(np.median(spacing))
    if not median > 0:
        return np.zeros(len(spacing), dtype=bool)
    near = np.abs(spacing - median) <= REGULAR_TOLERANCE * median
    if near.mean() < REGULAR_SHARE:  # irregular: no spacing tells rows missing
        return np.zeros(len(spacing), dtype=bool)
    return spacing > GAP_FACTOR * median


def runs_of(mask: np.ndarray, gaps: np.ndarray | None = None) -> list[tuple[int, int]]:
    """(first, last) positions of the runs of True in a (T,) boolean mask; with ``gaps``
    ((T - 1,) booleans, :func:`time_gaps`), a run also ends where a gap follows a step."""
    m = np.asarray(mask, dtype=bool)
    if not m.size:
        return []
    joined = m[1:] & m[:-1]  # step i and i + 1 in one run
    if gaps is not None:
        joined &= ~np.asarray(gaps, dtype=bool)
    starts = np.flatnonzero(m & ~np.concatenate([[False], joined]))
    ends = np.flatnonzero(m & ~np.concatenate([joined, [False]]))
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def flagged_intervals(
    step: np.ndarray,
    entry: np.ndarray,
    times: np.ndarray,
    threshold: float,
    feature_names: list[str],
    profile: AnomalyProfile | None = None,
    top: int = 3,
    flags: np.ndarray | None = None,
    scores: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """The runs of consecutive flagged steps: ``flags``, else those whose score is above
    ``threshold``. A run ends at a gap in ``times`` (in a regularly sampled series, a
    spacing over twice its median spacing, :func:`time_gaps`: rows missing), as it does at
    a step with no score: two flagged steps either side of missing rows are two intervals.
    An irregular series has no gaps: its runs are of consecutive positions.

    Args:
        step: (T,) the scores the interval's peak is taken from (:meth:`GPVAE.anomaly_scores`
            and ``gpvae detect`` pass the alarm, which ``flags`` compare with the threshold);
            entry: (T, D) entry scores; times: (T,) the steps' times.
        threshold: flag steps above it.
        feature_names: the D names.
        profile: puts the entry scores on one scale to rank the features (None: raw).
        top: features listed per interval.
        flags: (T,) booleans, the flagged steps (e.g. the profile's alarm score above the
            threshold); None: ``step > threshold``.
        scores: (T,) the step scores whose highest in each interval is its ``max_score``
            (:meth:`GPVAE.anomaly_scores` and ``gpvae detect`` pass the step score, which
            ranks anomalies, while the alarm of a rank profile peaks near 1 in every
            interval); None: ``step``.

    Returns:
        One dict per interval: ``start``, ``end`` (positions of its first and last step in
        ``step``), ``start_time``, ``end_time``, ``peak`` (position of its highest score),
        ``peak_time`` (``times``' values; :meth:`GPVAE.anomaly_scores` gives them in the
        input's own form: numbers, or ``pd.Timestamp`` / ``pd.Timedelta``; its positions
        count the series' own steps in time order, not a DataFrame's rows or index labels),
        ``peak_score``, ``max_score`` (the highest of ``scores`` in the interval; NaN when
        none is finite), ``steps`` and ``features``: up to
        ``top`` names of the features that contribute materially, most contributing first
        (by the sum of their normalised scores over the interval). Material: with a
        ``feature_scale="tail"`` profile, a feature whose value at some step of the
        interval is, on its own, as rare as the profile's ``false_alarm_rate`` in the
        normal data (tail score at least ``-log(false_alarm_rate)``; every tail score is
        >= 0, so a positive sum excludes nothing); else (spread scale, no profile) a
        feature whose summed score over the interval is positive. Empty when no feature
        qualifies (e.g. the alarm came from several features together); a series of one
        feature always names it (nothing else can have raised the alarm).
    """
    above = np.nan_to_num(step, nan=-np.inf) > threshold if flags is None else np.asarray(flags)
    if not above.any():
        return []
    z = normalised_entries(entry, profile)
    level = None  # the tail score of a value as rare as the target false-alarm rate
    if profile is not None and profile.feature_scale == "tail":
        level = -math.log(profile.false_alarm_rate)
    magnitude = step if scores is None else np.asarray(scores, dtype=np.float64)
    out = []
    for a, b in runs_of(above, time_gaps(times)):
        seg = step[a : b + 1]
        peak = int(a + np.nanargmax(seg)) if np.isfinite(seg).any() else int(a)
        inside = magnitude[a : b + 1]
        top_score = float(np.nanmax(inside)) if np.isfinite(inside).any() else math.nan
        contrib = np.nansum(z[a : b + 1], axis=0)  # (D,)
        if level is None:
            material = contrib > 0
        else:
            material = np.where(np.isnan(z[a : b + 1]), -np.inf, z[a : b + 1]).max(0) >= level
        ranked = np.argsort(-contrib, kind="stable")
        order = [int(d) for d in ranked if material[d] or len(feature_names) == 1][:top]
        out.append(
            {
                "start": int(a),
                "end": int(b),
                "start_time": float(times[a]),
                "end_time": float(times[b]),
                "peak": peak,
                "peak_time": float(times[peak]),
                "peak_score": float(step[peak]),
                "max_score": top_score,
                "steps": int(b - a + 1),
                "features": [feature_names[d] for d in order],
            }
        )
    return out
