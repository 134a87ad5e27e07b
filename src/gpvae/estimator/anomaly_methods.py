"""The anomaly methods of :class:`gpvae.GPVAE` (``anomaly_scores``, ``fit_threshold``): thin
methods over :mod:`gpvae.estimator.anomaly`, kept here so that ``estimator.py`` stays about
arguments, fitting and model files.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

from gpvae import settings
from gpvae.arguments import bool_arg
from gpvae.errors import ValidationError, invalid
from gpvae.estimator.anomaly import AnomalyProfile, fit_profile, heldout_scores, score_settings
from gpvae.estimator.context import PredictContext
from gpvae.estimator.results import AnomalyResult
from gpvae.training import distributed

__all__ = ["AnomalyMethods"]

_T = TypeVar("_T", bound="AnomalyMethods")


class AnomalyMethods:
    """Mixed into :class:`gpvae.GPVAE`, which defines ``_context`` and the attributes."""

    anomaly_profile_: AnomalyProfile | None

    def _context(self, method: str) -> PredictContext:
        raise NotImplementedError  # GPVAE's

    def anomaly_scores(
        self,
        X: Any,
        times: Any = None,
        num_samples: int | None = None,
        num_folds: int | None = None,
        window: int | str | None = "default",
        prior_weight: float | None = None,
        causal: bool | None = None,
    ) -> AnomalyResult:
        """Anomaly score of every observed entry: its negative log predictive density with
        its step hidden, plus ``prior_weight`` times (a per-feature ratio of) its score
        under the prior alone (see :class:`~gpvae.estimator.results.AnomalyResult`).

        The steps of each series fall into ``num_folds`` interleaved folds; for each fold,
        the entries at its steps are hidden from the encoder and each observed entry there
        is scored by ``-log (1/S) sum_s p(y | z_s)``, ``z_s ~ q(z | the other folds)``, in
        standardised units; with ``prior_weight > 0`` (the default) the prior score below
        is added, so ``entry`` is the held-out density alone only with ``prior_weight=0``.
        Long series are scored in half-overlapping windows of ``window`` steps (time linear
        in the length). The step score is the sum over the observed entries; after
        :meth:`fit_threshold`, the stored profile's scaled, combined and smoothed score,
        with ``flagged`` steps and ``intervals``. Nothing is refitted (see
        :mod:`gpvae.estimator.anomaly`). With a profile, data that misses a much larger share
        of its entries than the normal data it was learned from (more than
        :data:`gpvae.estimator.anomaly.MISSING_SHARE_MARGIN` more) warns, unless the
        scores are causal: its held-out scores are larger next to gaps, and the alarm may
        flag more than the target rate of normal steps (2.5 to 5 times as many at 30%
        missing against complete normal data on simulated series of 200 steps, shorter than
        the rank window; on two real series thousands of steps long, SMAP/MSL A-1 and C-1,
        one seed each, the default rank alarm flagged no more than on complete data).

        Args:
            X, times: data in any accepted form (e.g. new data of a fitted model).
            num_samples, num_folds, window: None / "default": the stored profile's, else
                16 draws, 5 folds, :data:`gpvae.settings.ANOMALY_WINDOW` steps;
                ``num_folds=1`` hides nothing (a reconstruction score, one conditioning);
                ``window=None`` scores every series whole.
            prior_weight: add this many times each entry's score under the prior alone
                (``-log (1/S) sum_s p(y | z_s)``, ``z_s`` from the GP prior at its step: how
                far the value lies from anything normal, where the held-out score asks how
                far it lies from its neighbours). None: the stored profile's, else
                :data:`gpvae.settings.ANOMALY_PRIOR_WEIGHT`. A likelihood whose entries are
                not independent given z (``"gaussian_gp"``) has no such score: its default
                is 0 and a positive weight is refused before any scoring.
            causal: score each window's ``num_folds`` consecutive blocks (None: the stored
                profile's, else False; default blocks
                :data:`gpvae.settings.ANOMALY_CAUSAL_BLOCKS`) from the steps before them
                only: a forecast score, where no score depends on a later step, neither on
                its value nor on whether it has arrived (windows laid from the series'
                start, blocks of ``ceil(window / num_folds)`` steps, each block's draws
                seeded by what comes before it; for a stream). With ``window=None`` the
                blocks divide each whole series, so their length, and a step's past, grow
                with the series: rescoring a longer series can change earlier scores.
                False: interleaved folds, each step scored from both sides.

        Returns:
            :class:`~gpvae.estimator.results.AnomalyResult`.
        """
        ctx, prof = self._context("anomaly_scores"), self.anomaly_profile_
        S, K, W, pw, c = score_settings(prof, num_samples, num_folds, window, prior_weight, causal)
        pw = _supported_weight(ctx, pw, prior_weight is None and prof is None)
        return heldout_scores(ctx, X, times, S, K, W, prof, pw, c)

    def fit_threshold(
        self: _T,
        X: Any,
        times: Any = None,
        false_alarm_rate: float = 0.01,
        num_samples: int | None = None,
        num_folds: int | None = None,
        window: int | str | None = "default",
        smooth: int | None = None,
        baseline: int | None = None,
        alarm_smooth: int | None = None,
        prior_weight: float | None = None,
        causal: bool | None = None,
        spread: bool | None = None,
        feature_scale: str | None = None,
        combine: str | None = None,
        novelty: str | None = None,
        spread_quantile: float | None = None,
        sharded: bool = False,
        rank_window: int | None = None,
    ) -> _T:
        """Learn the anomaly threshold from normal data ``X`` and store it with the model.

        Each feature's scores are put on the scale of its normal scores and combined (see
        ``feature_scale`` and ``combine`` below); the median of this step score over the
        previous ``baseline`` steps is subtracted (None:
        :data:`gpvae.settings.ANOMALY_BASELINE`; 0: nothing), so that a slow drift of new
        data does not raise every score; the step score is averaged over the last ``smooth``
        steps (None: :data:`gpvae.settings.ANOMALY_SMOOTH`). The threshold is the
        ``1 - false_alarm_rate`` quantile of the normal data's alarm scores (a rate below
        1 / (2 n), n the scored normal steps, warns: the threshold then flags 1 of the n,
        1 / n, more than twice the rate, which needs at least 1 / (2 rate) steps): the
        same, averaged over ``alarm_smooth``
        steps (None:
        :data:`gpvae.settings.ANOMALY_ALARM_SMOOTH`). The profile is saved by :meth:`save`
        and used by :meth:`anomaly_scores` (see :mod:`gpvae.estimator.anomaly`), with the
        ``prior_weight`` of the scores (None: :data:`gpvae.settings.ANOMALY_PRIOR_WEIGHT`)
        and their ``causal`` setting (None: False; see :meth:`anomaly_scores`). With
        ``rank_window=0`` and ``spread`` (None: :data:`gpvae.settings.ANOMALY_SPREAD`, True;
        with a baseline) the
        alarm's difference from the trailing median is also divided by the score's trailing
        spread over the same steps, so that new data whose normal scores vary more or less
        than the normal data's keep about the target rate (the step score, which ranks the
        steps, is not divided). ``feature_scale="tail"``
        (None: :data:`gpvae.settings.ANOMALY_FEATURE_SCALE`, "tail") scores each entry by
        ``-log`` of the share of its feature's normal scores at least as large (an
        exponential tail beyond the top :data:`gpvae.settings.ANOMALY_TAIL_SHARE`), so that a
        feature whose normal values are nearly always the same (a rarely set 0/1 flag) does
        not drown the others whenever it changes; "spread" divides each feature's scores by
        the spread of its normal ones (the default before session 11). ``combine="max"``
        (None: :data:`gpvae.settings.ANOMALY_COMBINE`, "max") takes the largest feature's
        score at each step; "sum" their sum. ``novelty="cap"`` (None:
        :data:`gpvae.settings.ANOMALY_NOVELTY`, "cap"; tail scale only) counts a value beyond
        the normal scores of a feature that is constant, or nearly, in the normal data as no
        rarer than one normal step in n + 1 in the alarm, so that such a feature changing on
        new normal data does not hold the alarm on; "extrapolate" scores it on the
        exponential tail in the alarm too (the step score always does).
        ``spread_quantile`` (None: :data:`gpvae.settings.ANOMALY_SPREAD_QUANTILE`, 0.95; with
        ``spread``): the spread is this quantile of the recent scores less their median.
        ``rank_window`` (None: :data:`gpvae.settings.ANOMALY_RANK_WINDOW`; 0: none): the
        alarm is instead the rank of the step's score among those of the previous
        ``rank_window`` steps (0 to 1; the share below it), whatever its level and spread,
        so the threshold is a share of the recent steps rather than a score. Its cost: a
        sustained shift of level is flagged mostly at its start, since its later steps rank
        among equally high ones (300 steps at 1e6 where normal is about 70: 2.7% flagged,
        in audit; the ``scores`` still show the whole shift). To flag every step of such
        shifts, use ``rank_window=0`` (``detect --rank-window 0``), or threshold the scores
        yourself.

        The rate holds on new data with about as many gaps as ``X``: the profile records
        ``X``'s share of missing entries (``missing_share``), and :meth:`anomaly_scores`
        warns on data that misses much more (not for causal scores, whose rate did not
        move). To monitor data with gaps, learn the threshold from normal data with gaps
        like it (a threshold from complete data flagged 2.5-5% of normal data with 30% of its
        entries missing, one from normal data with 30% missing 0.8-1.4%, for 1%).

        A feature with no observed value in ``X`` has no normal scores to scale it by: it is
        left out of the step score, the alarm and the intervals of this profile (its entry
        scores are still reported), with a warning here and whenever scored data has values
        of it, so that a sensor that was offline while the threshold was learned raises no
        false alarms when it comes back; call it again with data where the feature is
        observed to include it.

        Under torchrun every process must call it: each scores a block of the series of X
        (``sharded``: X holds this process's own series, as in :meth:`fit`), and every
        process stores the threshold one process would learn from all of them.

        Returns:
            self.
        """
        ctx = self._context("fit_threshold")
        S, K, W, pw, c = score_settings(None, num_samples, num_folds, window, prior_weight, causal)
        pw = _supported_weight(ctx, pw, prior_weight is None)
        if spread is None:
            spread = settings.ANOMALY_SPREAD
        if not isinstance(spread, (bool, np.bool_)):
            raise invalid("spread", "True or False", spread)
        sm = settings.ANOMALY_SMOOTH if smooth is None else smooth
        base = settings.ANOMALY_BASELINE if baseline is None else baseline
        alarm = settings.ANOMALY_ALARM_SMOOTH if alarm_smooth is None else alarm_smooth
        self.anomaly_profile_ = fit_profile(
            ctx, X, times, false_alarm_rate, S, K, W, sm, base, alarm, pw, c, bool(spread),
            settings.ANOMALY_FEATURE_SCALE if feature_scale is None else feature_scale,
            settings.ANOMALY_COMBINE if combine is None else combine,
            settings.ANOMALY_NOVELTY if novelty is None else novelty,
            settings.ANOMALY_SPREAD_QUANTILE if spread_quantile is None else spread_quantile,
            distributed.current(ctx.device), bool_arg("sharded", sharded),
            settings.ANOMALY_RANK_WINDOW if rank_window is None else rank_window,
        )  # fmt: skip
        return self


def _supported_weight(ctx: PredictContext, weight: float, default: bool) -> float:
    """The prior weight of a call: the default one is dropped (0) for a likelihood whose
    entries are not independent given z (they have no score under the prior alone); a
    positive weight given by the caller is refused there, naming ``prior_weight``, before
    any scoring."""
    likelihood = ctx.model.likelihood
    if not likelihood.needs_index or weight == 0.0:
        return weight
    if default:
        return 0.0
    raise ValidationError(
        f"prior_weight: expected 0 for a likelihood whose entries are not independent given "
        f"z ({type(likelihood).__name__}, e.g. likelihood='gaussian_gp': they have no score "
        f"under the prior alone), found {weight!r}"
    )
