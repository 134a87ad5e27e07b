"""Anomaly-detection benchmark (TSB-AD style) on NAB and SMAP/MSL: gpvae against baselines.

Protocol (``DESIGN.md``, "Benchmark protocols"): for every series, fit on the normal part
(NAB: the first 15% of the steps, NAB's probationary period; SMAP/MSL: ``train``), score
the rest, and compute VUS-PR (TSB-AD's ``generate_curve``, version ``opt``, 250
thresholds, its sliding window from ``find_length_rank`` of the scored part's first
column), AUC-PR and AUC-ROC, without point adjustment (TSB-AD's ``basic_metricor``). Run it
in the benchmark environment (``benchmarks/setup_bench_env.sh``), which has ``TSB_AD``:

    PYTHONPATH=src .venv-bench/bin/python benchmarks/anomaly.py --data-dir ../shared/data

Methods (every one sees the same standardised arrays; the learned ones the same epoch cap
and patience):

- ``gpvae``: GPVAE (Matern-3/2 GP prior, structured posterior) fit on half-overlapping
  windows of the normal part; scores: held-out predictive densities in windows
  (``GPVAE.anomaly_scores``) put on one scale, less their trailing median (the variant's
  baseline) and averaged over the variant's smoothing steps by the profile of
  ``GPVAE.fit_threshold`` on the normal part. The threshold (target false-alarm rate
  ``--far``) is also applied to the scored part: ``false_alarm_rate`` is the share of its
  unlabelled steps whose alarm score (``ANOMALY_ALARM_SMOOTH`` steps) is above it;
  ``false_alarm_rate_smoothed`` the same with the threshold on the smoothed score itself;
  ``step_recall``, ``events`` and ``events_flagged`` (``_spread``: of the spread alarm;
  ``_rank``: of the trailing-rank alarm, records from session 44 on) what the alarm
  catches: the share of the labelled steps above the threshold, and how many of the
  labelled runs have a step above it (records from session 37 on).
- ``vae``: the same networks and windows with an N(0, I) prior (white kernel, mean-field
  posterior): a Donut-like VAE, scored by its reconstruction probability (a white prior
  has nothing to say about a hidden step, so its held-out score is the prior's).
- ``pca``: reconstruction error of PCA (90% of the variance) fit on the normal part;
  ``iforest``: scikit-learn's Isolation Forest fit on the normal part. Both on the
  standardised points (multivariate) or on lag windows of the period (univariate).
- ``zscore``: rolling z-score, the largest ``|y - mean| / std`` over the features, mean and
  std of the previous ``period`` steps.
- ``cnn``: TSB-AD's CNN forecaster (window 100, one step ahead), its prediction error.
  Its training loop is TSB-AD's, with the early stopping replaced by :class:`KeepBest`
  (the same rule: patience, improvement above 1e-4) so that, as gpvae, it keeps its best
  weights and records its epochs and best validation loss (records from session 17 on;
  earlier CNN records scored the last epoch's weights and did not record epochs).

Each (series, method) run appends one record to ``--out`` as it finishes, so an
interrupted campaign resumes where it stopped. ``--dev`` runs the development subset that
the scoring choices were tuned on (``DEV_SERIES``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _protocol import ResultsFile, _clean

from gpvae.datasets.anomaly import (
    AnomalySeries,
    load_nab,
    load_smap_msl,
    nab_names,
    smap_msl_channels,
)

ROOT = Path(__file__).resolve().parents[1]
#: The records, one file per collection (a single file outgrew the repository's 1 MiB
#: limit on tracked files); ``--out`` puts every record of a run in one file instead. The
#: SMAP/MSL file is near that limit (955 KB after session 11): later campaigns write to a
#: file of their own with ``--out`` (session 12: anomaly_s12.json, which anomaly_table.py
#: reads too).
RESULTS = {
    "NAB": ROOT / "benchmarks" / "results" / "anomaly_nab.json",
    "SMAP": ROOT / "benchmarks" / "results" / "anomaly_smap_msl.json",
    "MSL": ROOT / "benchmarks" / "results" / "anomaly_smap_msl.json",
}
METHODS = ("gpvae", "vae", "pca", "iforest", "zscore", "cnn")
#: The development subset: scoring choices (window, folds, smoothing, normalisation) were
#: compared on these series only; the table reports all series.
DEV_SERIES = (
    "SMAP:P-1",
    "SMAP:E-1",
    "MSL:C-1",
    "NAB:realKnownCause/nyc_taxi",
    "NAB:realKnownCause/machine_temperature_system_failure",
    "NAB:realAWSCloudwatch/ec2_cpu_utilization_5f5533",
)


class AnomalyResults(ResultsFile):
    """The JSON list of records, one per (dataset, series, method, tag)."""

    KEY = ("dataset", "series", "method", "tag")

    def has(self, dataset: str, series: str, method: str, tag: str) -> bool:  # type: ignore[override]
        """True when a record for this (dataset, series, method, tag) exists (so a rerun
        of the same command skips it)."""
        return any(self._key(r) == (dataset, series, method, tag) for r in self.records)


class AnomalyStore:
    """The records of a campaign: in the file of each record's collection (:data:`RESULTS`)
    or, with ``path``, all in that one file."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.files: dict[Path, AnomalyResults] = {}

    def file(self, dataset: str) -> AnomalyResults:
        path = Path(self.path) if self.path else RESULTS[dataset]
        if path not in self.files:
            self.files[path] = AnomalyResults(path)
        return self.files[path]

    def has(self, dataset: str, series: str, method: str, tag: str) -> bool:
        return self.file(dataset).has(dataset, series, method, tag)

    def add(self, record: dict[str, Any]) -> None:
        self.file(record["dataset"]).add(record)

    def merge(self, records: Sequence[dict[str, Any]]) -> int:
        """Add the records of other runs (the ``--out`` file of a shard, or the collection
        files of another checkout) to theirs: a record already there unchanged is skipped,
        one with the same (dataset, series, method, tag) and other values replaced, the rest
        appended; each file is rewritten once. Returns how many were added or replaced."""
        todo: dict[Path, list[dict[str, Any]]] = {}
        for record in records:
            results = self.file(record["dataset"])
            if _clean(record) not in results.records:
                todo.setdefault(results.path, []).append(record)
        for path, new in todo.items():
            self.files[path].add_many(new)
        return sum(len(v) for v in todo.values())


# ---------------------------------------------------------------- data and metrics


def all_series(data_dir: str | None, datasets: Sequence[str]) -> list[tuple[str, str]]:
    """(kind, name) of every series, kind "NAB" or "SMAP_MSL": the development subset
    first, then the two collections alternately (so that a partly run campaign covers
    both)."""
    smap = [("SMAP_MSL", c) for c in smap_msl_channels(data_dir)] if "smap_msl" in datasets else []
    nab = [("NAB", n) for n in nab_names(data_dir)] if "nab" in datasets else []
    dev = {d.split(":", 1)[1] for d in DEV_SERIES}
    first = [x for x in smap + nab if x[1] in dev]
    rest_s = [x for x in smap if x[1] not in dev]
    rest_n = [x for x in nab if x[1] not in dev]
    mixed: list[tuple[str, str]] = []
    for k in range(max(len(rest_s), len(rest_n))):
        # about 3 SMAP/MSL channels per NAB series: the same share as in the collections
        mixed += rest_s[2 * k : 2 * k + 2] + rest_n[k : k + 1]
    mixed += [x for x in rest_s if x not in mixed]
    return first + mixed


def load(kind: str, name: str, data_dir: str | None) -> AnomalySeries:
    return load_nab(name, data_dir) if kind == "NAB" else load_smap_msl(name, data_dir)


def standardise(s: AnomalySeries) -> tuple[np.ndarray, np.ndarray]:
    """Train and test standardised with the train part's mean and std (std 0 -> 1)."""
    mu, sd = s.train.mean(0), s.train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return (s.train - mu) / sd, (s.test - mu) / sd


def period(s: AnomalySeries) -> int:
    """TSB-AD's sliding window: ``find_length_rank`` of the scored part's first column."""
    from TSB_AD.utils.slidingWindows import find_length_rank

    return int(find_length_rank(s.test[:, :1], rank=1))


def metrics(score: np.ndarray, labels: np.ndarray, window: int) -> dict[str, float]:
    """VUS-PR, AUC-PR, AUC-ROC (TSB-AD's implementations), no point adjustment."""
    from TSB_AD.evaluation.basic_metrics import basic_metricor, generate_curve

    s = np.asarray(score, dtype=np.float64)
    if not np.isfinite(s).all():
        finite = s[np.isfinite(s)]
        low = float(finite.min()) if finite.size else 0.0
        s = np.where(np.isfinite(s), s, low)
    grader = basic_metricor()
    vus_pr = generate_curve(labels.astype(int), s, window, "opt", 250)[-1]
    return {
        "vus_pr": float(vus_pr),
        "auc_pr": float(grader.metric_PR(labels, s)),
        "auc_roc": float(grader.metric_ROC(labels, s)),
    }


# ---------------------------------------------------------------- methods


def _lagged(x: np.ndarray, width: int) -> np.ndarray:
    """(T, D) -> (T, width * D): each step with the ``width - 1`` steps before it (the
    first steps repeat the first value)."""
    padded = np.concatenate([np.repeat(x[:1], width - 1, axis=0), x])
    return np.concatenate([padded[k : k + len(x)] for k in range(width)], axis=1)


def _features(tr: np.ndarray, te: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    if tr.shape[1] > 1:
        return tr, te
    w = max(2, min(w, 100))
    return _lagged(tr, w), _lagged(np.concatenate([tr[-(w - 1) :], te]), w)[w - 1 :]


#: Post-processing variants of every baseline's score (smooth, baseline), the same trailing
#: mean and trailing median the gpvae variants use; each baseline's reported variant is the
#: one with the best mean VUS-PR on ``DEV_SERIES`` (``PEER_CHOSEN``), as for gpvae.
PEER_VARIANTS = {"s1": (1, 0), "s32": (32, 0), "s1_b512": (1, 512), "s32_b512": (32, 512)}
#: Each baseline's reported post-processing variant, chosen on ``DEV_SERIES`` (docs).
PEER_CHOSEN = {"pca": "s32_b512", "iforest": "s32", "zscore": "s32", "cnn": "s32_b512"}
#: Steps of the normal part scored in front of the scored part (the trailing median's and
#: mean's history at its start).
PEER_CONTEXT = 512


def peer_variants(full: np.ndarray, n_test: int, names: Sequence[str]) -> dict[str, Any]:
    """The post-processing variants of a baseline's score ``full`` (the last
    ``PEER_CONTEXT`` normal steps, then the ``n_test`` scored steps)."""
    from gpvae.estimator.anomaly import _trailing_mean, _trailing_median

    full = np.asarray(full, dtype=np.float64)
    out = {}
    for name in names:
        smooth, base = PEER_VARIANTS[name]
        x = full
        if base:  # the steps before the normal context count as its median
            x = x - _trailing_median(x, base, float(np.median(full[: len(full) - n_test])))
        out[name] = {"score": _trailing_mean(x, smooth)[len(full) - n_test :]}
    return out


def _peer_names(args: argparse.Namespace, method: str) -> list[str]:
    """The post-processing variants of baseline ``method`` to record (``--peer-variants``)."""
    if args.peer_variants == "chosen":
        return [PEER_CHOSEN[method]]
    return list(PEER_VARIANTS) if args.peer_variants == "all" else args.peer_variants.split(",")


def _with_context(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
    return np.concatenate([tr[-PEER_CONTEXT:], te])


def peer_inputs(s: AnomalySeries, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The points PCA and Isolation Forest see: the normal part's, and those of its last
    ``PEER_CONTEXT`` steps followed by the scored part (lag windows for one feature)."""
    tr0, te0 = standardise(s)
    return _features(tr0, _with_context(tr0, te0), w)


def run_pca(s: AnomalySeries, args: argparse.Namespace, w: int) -> dict[str, Any]:
    from sklearn.decomposition import PCA

    tr, te = peer_inputs(s, w)
    pca = PCA(n_components=0.9, random_state=0).fit(tr)
    rec = pca.inverse_transform(pca.transform(te))
    score = ((te - rec) ** 2).sum(1)
    return {
        "variants": peer_variants(score, len(s.test), _peer_names(args, "pca")),
        "components": int(pca.n_components_),
    }


def run_iforest(s: AnomalySeries, args: argparse.Namespace, w: int) -> dict[str, Any]:
    from sklearn.ensemble import IsolationForest

    tr, te = peer_inputs(s, w)
    forest = IsolationForest(n_estimators=100, random_state=args.seed).fit(tr)
    score = -forest.score_samples(te)
    return {"variants": peer_variants(score, len(s.test), _peer_names(args, "iforest"))}


def rolling_zscore(x: np.ndarray, w: int) -> np.ndarray:
    """The largest ``|y - mean| / std`` over the features of a (T, D) array, mean and std of
    the ``w`` steps before (NaN where fewer than 2 precede)."""
    import pandas as pd

    full = pd.DataFrame(x)
    prev = full.rolling(w, min_periods=2)
    mean, sd = prev.mean().shift(1), prev.std().shift(1)
    # a feature constant over the window has no scale of its own: use 0.1 training std
    z = (full - mean).abs() / np.maximum(sd.to_numpy(), 0.1)
    return z.to_numpy().max(axis=1)


def run_zscore(s: AnomalySeries, args: argparse.Namespace, w: int) -> dict[str, Any]:
    tr, te = standardise(s)
    w = max(2, w)
    n_ctx = min(len(tr), max(w, PEER_CONTEXT))
    full = rolling_zscore(np.concatenate([tr[-n_ctx:], te]), w)
    score = full[n_ctx - min(n_ctx, PEER_CONTEXT) :]
    return {"variants": peer_variants(score, len(te), _peer_names(args, "zscore"))}


def _gpvae_windows(
    tr: np.ndarray, window: int, stride: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from gpvae.data.windows import cut_windows

    return cut_windows([tr], [np.arange(len(tr), dtype=np.float64)], window, stride)


#: Score variants computed from one fitted model: (folds, normalise, smooth, baseline, prior
#: weight[, causal[, feature scale, combine[, novelty[, spread quantile]]]]). The one reported
#: as "gpvae" (and "vae") is chosen by the mean VUS-PR over ``DEV_SERIES`` only. ``c8``:
#: causal (forecast) scores, 8 blocks per window (``anomaly_scores(causal=True)``);
#: ``tail``/``tailmax``: the features' scores as -log tail probabilities of their normal
#: scores, summed / their maximum (``fit_threshold(feature_scale="tail", combine="sum" /
#: "max")``); ``cap``: the alarm's scores of (near-)constant features capped
#: (``novelty="cap"``; the same ranking score);
#: ``cap95``: also the alarm's spread from the 95% quantile (``spread_quantile=0.95``; 0.9
#: in the others).
VARIANTS: dict[str, tuple[Any, ...]] = {
    "k5_raw_s1": (5, False, 1, 0, 0.0),
    "k5_norm_s1": (5, True, 1, 0, 0.0),
    "k5_norm_s8": (5, True, 8, 0, 0.0),
    "k5_norm_s32": (5, True, 32, 0, 0.0),
    "k1_norm_s1": (1, True, 1, 0, 0.0),
    "k1_norm_s8": (1, True, 8, 0, 0.0),
    "k5_norm_s1_b512": (5, True, 1, 512, 0.0),
    "k5_norm_s32_b512": (5, True, 32, 512, 0.0),
    # the prior's score added with this weight relative to the held-out score
    # (GPVAE.fit_threshold's prior_weight); math.inf: the prior's score alone
    "k5p_norm_s32_b512": (5, True, 32, 512, 1.0),
    "k5p_norm_s32": (5, True, 32, 0, 1.0),
    "k5p_norm_s1_b512": (5, True, 1, 512, 1.0),
    "k5ph_norm_s32_b512": (5, True, 32, 512, 0.5),
    "k5p2_norm_s32_b512": (5, True, 32, 512, 2.0),
    "p_norm_s32_b512": (5, True, 32, 512, math.inf),
    # session 10: causal scores
    "c8ph_norm_s32_b512": (8, True, 32, 512, 0.5, True),
    "c8_norm_s32_b512": (8, True, 32, 512, 0.0, True),
    "c8p_norm_s32_b512": (8, True, 32, 512, 1.0, True),
    # session 11: tail-probability scale of each feature, summed or the largest
    "k5ph_tail_s32_b512": (5, True, 32, 512, 0.5, False, "tail", "sum"),
    "k5ph_tailmax_s32_b512": (5, True, 32, 512, 0.5, False, "tail", "max"),
    # the prior's weight again, on the tail scale
    "k5p_tailmax_s32_b512": (5, True, 32, 512, 1.0, False, "tail", "max"),
    "k5p2_tailmax_s32_b512": (5, True, 32, 512, 2.0, False, "tail", "max"),
    "p_tailmax_s32_b512": (5, True, 32, 512, math.inf, False, "tail", "max"),
    # session 12: the alarm caps new values of features constant in the normal part
    "k5ph_tailmaxcap_s32_b512": (5, True, 32, 512, 0.5, False, "tail", "max", "cap"),
    # session 13: the spread alarm's spread from the 95% quantile (the same ranking score)
    "k5ph_tailmaxcap95_s32_b512": (5, True, 32, 512, 0.5, False, "tail", "max", "cap", 0.95),
    # session 19: the held-out part alone (the base of ``k5_tailmaxcap95_s32_b512+prior``)
    "k5_tailmaxcap95_s32_b512": (5, True, 32, 512, 0.0, False, "tail", "max", "cap", 0.95),
}


#: A variant name may end in ``+latP``: the base variant's entry scores with the latent
#: path's one-step-ahead surprise under the prior given P previous steps appended as L more
#: features (``gpvae.model.scoring.latent_nlpd``; each channel on the base's feature scale
#: and combined with the data's features as the base combines them). ``+lat0``: the latent's
#: marginal surprise, without dynamics (for the VAE's white prior every P gives this).
#: ``+latsumP``: the L channels' scores summed into one more feature (the step's term of the
#: prior's log density of the path) instead.
LATENT = "+lat"


#: A variant name may end in ``@bB``: its held-out entry scores with the folds in runs of B
#: consecutive steps (``entry_scores(block=B)``, ``heldout_nlpd(block=B)``), so a scored
#: step's neighbours up to B - 1 steps away can be hidden with it; ``@b1`` is the base.
BLOCK = "@b"


def split_block(name: str) -> tuple[str, int]:
    """(the variant name without its ``@bB`` suffix, B; 1 without one)."""
    base, sep, block = name.partition(BLOCK)
    if not sep:
        return name, 1
    if not block.isdigit() or int(block) < 1:
        raise ValueError(f"variant: expected NAME{BLOCK}B with B >= 1, found {name!r}")
    return base, int(block)


#: A variant name may have ``+prior`` right after its base: the base's entry scores with
#: the prior-alone entry scores (``prior_nlpd``) appended as D more features, each on its
#: own scale fitted on the normal part and combined with the base's as the base combines
#: its features (``tailmax``: the largest). With a held-out base the held-out part then
#: counts where it is more surprising than the prior part on the normal part's scale, and
#: inside a sustained anomaly, whose hidden steps the anomalous neighbours predict well,
#: the prior part carries the alarm on its own scale.
PRIOR = "+prior"


#: A variant name may have ``+gateM`` right after its base (one with a prior weight): the
#: base's entries with the held-out part replaced by the prior part where the step's
#: neighbours look anomalous under the prior (:func:`gate_heldout`, neighbours within M
#: steps); elsewhere the base's entries unchanged.
GATE = "+gate"


def split_gate(name: str) -> tuple[str, int | None]:
    """(the variant name without ``+gateM`` and its ``@bB`` suffix, M or None)."""
    rest = split_block(name)[0]
    base, sep, after = rest.partition(GATE)
    if not sep:
        return rest, None
    digits = after[: len(after) - len(after.lstrip("0123456789"))]
    tail = after[len(digits) :]
    if not digits or int(digits) < 1 or LATENT in base or (tail and not tail.startswith(LATENT)):
        raise ValueError(f"variant: expected BASE{GATE}M[{LATENT}P] with M >= 1, found {name!r}")
    return base + tail, int(digits)


def neighbour_mean(p: np.ndarray, width: int) -> np.ndarray:
    """(T, D) each entry's mean of the finite entries of its feature within ``width`` steps
    before and after it, itself excluded (NaN where there is none)."""
    T, D = p.shape
    fin = np.isfinite(p)
    v = np.where(fin, p, 0.0)
    cs = np.concatenate([np.zeros((1, D)), np.cumsum(v, 0)])
    cn = np.concatenate([np.zeros((1, D)), np.cumsum(fin, 0)])
    n = np.arange(T)
    lo, hi = np.clip(n - width, 0, T), np.clip(n + width + 1, 0, T)
    total, count = cs[hi] - cs[lo] - v, cn[hi] - cn[lo] - fin
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def gate_heldout(
    held: tuple[np.ndarray, np.ndarray],
    alone: tuple[np.ndarray, np.ndarray],
    weight: float,
    ratio: np.ndarray,
    width: int,
    level: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The entries ``H + weight * ratio * P`` of the normal part and the scored part
    (``held`` = (H_normal, H_scored), ``alone`` the prior-alone P alike, arrays (T, D)),
    with H replaced by ``median(H) + ratio * (P - median(P))`` (P on H's scale, medians
    over the normal part) at the entries whose neighbours within ``width`` steps look
    anomalous: their mean P (:func:`neighbour_mean`) above its ``level`` quantile over the
    normal part, per feature. There the hidden step's prediction leans on anomalous
    neighbours, so the prior part stands in for it."""
    h_tr, p_tr = held[0], alone[0]
    D = h_tr.shape[1]
    h_c, p_c, cut = np.zeros(D), np.zeros(D), np.full(D, np.inf)
    g_tr = neighbour_mean(p_tr, width)
    for d in range(D):
        h, p, g = h_tr[:, d], p_tr[:, d], g_tr[:, d]
        h_c[d] = float(np.median(h[np.isfinite(h)])) if np.isfinite(h).any() else 0.0
        p_c[d] = float(np.median(p[np.isfinite(p)])) if np.isfinite(p).any() else 0.0
        if np.isfinite(g).any():
            cut[d] = float(np.quantile(g[np.isfinite(g)], level))
    out = []
    for h, p in zip(held, alone):
        g = neighbour_mean(p, width)
        swap = np.nan_to_num(g, nan=-np.inf) > cut
        stand_in = h_c + ratio * (p - p_c)
        out.append(np.where(swap, stand_in, h) + weight * ratio * p)
    return out[0], out[1]


def split_prior(name: str) -> tuple[str, bool]:
    """(the variant name without ``+prior``, ``+gateM`` and its ``@bB`` suffix, whether it
    has ``+prior``)."""
    rest = split_gate(name)[0]
    base, sep, after = rest.partition(PRIOR)
    if sep and (LATENT in base or PRIOR in after or (after and not after.startswith(LATENT))):
        raise ValueError(f"variant: expected BASE{PRIOR}[{LATENT}P], found {name!r}")
    return base + after, bool(sep)


def split_latent(name: str) -> tuple[str, int | None, bool]:
    """(base variant, latent lags or None, whether the latent channels are summed) of a
    variant name (its ``+prior`` part and ``@bB`` suffix left out)."""
    rest = split_prior(name)[0]
    base, sep, lags = rest.partition(LATENT)
    if not sep:
        return rest, None, False
    summed = lags.startswith("sum")
    lags = lags[3:] if summed else lags
    if base not in VARIANTS or not lags.isdigit():
        raise ValueError(
            f"variant: expected BASE{LATENT}P or BASE{LATENT}sumP with BASE in VARIANTS, "
            f"found {name!r}"
        )
    return base, int(lags), summed


def variant(name: str) -> tuple[int, bool, int, int, float, bool]:
    """(folds, normalise, smooth, baseline, prior weight, causal) of a variant."""
    v = VARIANTS[split_latent(name)[0]]
    return (*v, False)[:6]  # type: ignore[return-value]


def scale_combine(name: str) -> dict[str, Any]:
    """``feature_scale``, ``combine``, ``novelty`` and ``spread_quantile`` of a variant
    (profile_from_entries' keywords)."""
    v = VARIANTS[split_latent(name)[0]]
    scale, combine = v[6:8] if len(v) >= 8 else ("spread", "sum")
    novelty = v[8] if len(v) >= 9 else "extrapolate"
    quantile = v[9] if len(v) >= 10 else 0.9
    return {
        "feature_scale": scale,
        "combine": combine,
        "novelty": novelty,
        "spread_quantile": quantile,
    }


#: The variant chosen on the development subset (``--dev --variants all``; see docs).
#: Session 11 (tag s11): the tail scale, largest feature (mean development VUS-PR 0.285,
#: against 0.282 for the session-10 choice k5ph_norm_s32_b512 and 0.275 for the tail scale
#: summed over the features). Session 12: the same ranking score with the alarm's novelty
#: cap (``novelty="cap"``; chosen on normal data only, so its VUS-PR is k5ph_tailmax's).
#: Session 13: the same with the alarm's spread from the 95% quantile (chosen on normal data
#: and the development series' rates; the same VUS-PR again).
CHOSEN = "k5ph_tailmaxcap95_s32_b512"
#: The trailing-rank alarm's window in the records (``settings.ANOMALY_RANK_WINDOW`` since
#: session 44), fixed here so that records keep their meaning if the default moves.
RANK_WINDOW = 256
#: The alarms whose thresholds are recorded: (spread, rank window, suffix of the fields):
#: the plain alarm, the spread alarm (fit_threshold's default from session 12 to 43) and the
#: trailing-rank alarm (the default from session 44; fields from then on).
ALARMS = ((False, 0, ""), (True, 0, "_spread"), (True, RANK_WINDOW, "_rank"))
#: Share of the normal part at its end whose false-alarm rate checks the threshold learned
#: from the rest (``false_alarm_rate_tail``: label-free, the normal part only).
TAIL = 0.2


def new_gpvae(args: argparse.Namespace, white: bool = False) -> Any:
    """The benchmark's GPVAE (with ``white``: the N(0, I) VAE with the same networks)."""
    from gpvae import GPVAE

    return GPVAE(
        latent_dim=args.latent_dim,
        kernel="white" if white else args.kernel,
        lengthscale=None if white else args.lengthscale,  # one value, or one per channel
        beta=args.beta,
        posterior="diagonal" if white else "structured",
        likelihood=args.likelihood,
        encoder=args.encoder,
        hidden=(args.hidden, args.hidden),
        epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        lr=args.lr,
        kernel_lr=None if white else args.kernel_lr,
        calibrate=False,
        progress=False,
        seed=args.seed,
    )


def run_gpvae(
    s: AnomalySeries, args: argparse.Namespace, w: int, white: bool = False
) -> dict[str, Any]:
    """Fit once; score the normal and the scored part with 5 folds and with 1 (nothing
    hidden); every variant's step score, threshold and false-alarm rate from those."""
    from gpvae import settings
    from gpvae.estimator.anomaly import (
        alarm_scores,
        combine_prior,
        profile_from_entries,
        spread_ratio,
        step_scores,
    )

    tr, te = standardise(s)
    t_tr = np.arange(len(tr), dtype=np.float64)
    t_te = np.arange(len(tr), len(tr) + len(te), dtype=np.float64)
    est = new_gpvae(args, white)
    fit_part, thr_part, t_thr = tr, tr, t_tr
    hold = round(args.threshold_holdout * len(tr))
    if hold > 0:  # the threshold's scores from normal steps the model never trained on
        fit_part, thr_part, t_thr = tr[:-hold], tr[-hold:], t_tr[-hold:]
    t0 = time.perf_counter()
    vals, times = _gpvae_windows(fit_part, args.train_window, args.train_stride)
    est.fit(vals, times)
    out: dict[str, Any] = {"fit_seconds": time.perf_counter() - t0}
    entries: dict[Any, tuple[np.ndarray, np.ndarray]] = {}
    fit_entries: dict[str, np.ndarray] = {}  # with --dump and a held-back part
    wanted = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    folds = {(variant(v)[0], variant(v)[5], split_block(v)[1]) for v in wanted}
    for K, causal, block in sorted(folds, reverse=True):
        key = held_key(K, causal, block)
        t0 = time.perf_counter()
        if block > 1:  # the folds in runs of consecutive steps (not an estimator option)
            e_tr = _block_entries(est, thr_part, t_thr, args, K, block)
            t1 = time.perf_counter()
            e_te = _block_entries(est, te, t_te, args, K, block)
        else:
            e_tr = est.anomaly_scores(
                thr_part[None], t_thr[None], args.samples, K, args.window, 0.0, causal
            ).entry[0]
            t1 = time.perf_counter()
            e_te = est.anomaly_scores(te[None], t_te[None], args.samples, K, args.window, 0.0,
                                      causal).entry[0]  # fmt: skip
        out[f"threshold_seconds_{key}"] = t1 - t0
        out[f"score_seconds_{key}"] = time.perf_counter() - t1
        entries[key] = (e_tr, e_te)
        if args.dump and hold > 0 and block == 1:  # the fit part's own (in-sample) scores
            fit_entries[key] = est.anomaly_scores(
                fit_part[None], t_tr[None, :-hold], args.samples, K, args.window, 0.0, causal
            ).entry[0]
    if args.dump:
        Path(args.dump).mkdir(parents=True, exist_ok=True)
    if any(variant(v)[4] > 0 or split_prior(v)[1] for v in wanted):
        t0 = time.perf_counter()
        e_tr = _prior_entries(est, thr_part, t_thr, args)
        t1 = time.perf_counter()
        e_te = _prior_entries(est, te, t_te, args)
        out["threshold_seconds_prior"] = t1 - t0
        out["score_seconds_prior"] = time.perf_counter() - t1
        entries["prior"] = (e_tr, e_te)
        if args.dump and hold > 0:
            fit_entries["prior"] = _prior_entries(est, fit_part, t_tr[:-hold], args)
    for P in sorted({p for v in wanted if (p := split_latent(v)[1]) is not None}):
        t0 = time.perf_counter()
        e_tr = _latent_entries(est, thr_part, t_thr, args, P)
        t1 = time.perf_counter()
        e_te = _latent_entries(est, te, t_te, args, P)
        out[f"threshold_seconds_lat{P}"] = t1 - t0
        out[f"score_seconds_lat{P}"] = time.perf_counter() - t1
        entries[f"lat{P}"] = (e_tr, e_te)
    if args.dump:  # every entry score, for analyses beyond the recorded variants
        # float64: float32 rounding moved MSL T-8's VUS-PR by 1.6e-4 (near-tied step scores)
        tag = f"{s.dataset}_{s.name.replace('/', '__')}_{'vae' if white else 'gpvae'}"
        np.savez_compressed(
            Path(args.dump) / f"{tag}.npz",
            labels=s.labels,
            **{f"{k}_{part}": v[i].astype(np.float64) for k, v in entries.items()
               for i, part in enumerate(("train", "test"))},
            **{f"{k}_fit": v.astype(np.float64) for k, v in fit_entries.items()},
        )  # fmt: skip
    normal = s.labels == 0
    variants = {}
    for name in wanted:
        K, norm, smooth, base, pw, causal = variant(name)
        e_tr, e_te = entries[held_key(K, causal, split_block(name)[1])]
        if pw == math.inf:
            e_tr, e_te = entries["prior"]
        elif pw > 0:  # as GPVAE.fit_threshold does: the weight relative to the spreads
            p_tr, p_te = entries["prior"]
            ratio = spread_ratio([e_tr], [p_tr])
            width = split_gate(name)[1]
            if width is not None:  # the prior part stands in where the neighbours look anomalous
                e_tr, e_te = gate_heldout((e_tr, e_te), (p_tr, p_te), pw, ratio, width,
                                          1.0 - args.far)  # fmt: skip
            else:
                e_tr, e_te = (
                    combine_prior([e], [p], pw, ratio)[0] for e, p in ((e_tr, p_tr), (e_te, p_te))
                )
        if split_prior(name)[1]:  # the prior-alone scores as D more features
            p_tr, p_te = entries["prior"]
            e_tr, e_te = np.concatenate([e_tr, p_tr], 1), np.concatenate([e_te, p_te], 1)
        _, lags, summed = split_latent(name)
        if lags is not None:  # the latent channels as more features
            l_tr, l_te = entries[f"lat{lags}"]
            if summed:  # one feature: the sum over the channels
                l_tr, l_te = l_tr.sum(1, keepdims=True), l_te.sum(1, keepdims=True)
            e_tr, e_te = np.concatenate([e_tr, l_tr], 1), np.concatenate([e_te, l_te], 1)
        variants[name] = {}
        cut = round((1.0 - TAIL) * len(e_tr))
        for spread, rank, suffix in ALARMS:
            # label-free check of the threshold: the profile of the normal part's first
            # (1 - TAIL) share, its rate on the last TAIL share (same fit; no test data)
            prof = profile_from_entries([e_tr[:cut]], args.far, args.samples, K, args.window,
                                        smooth, norm, base, settings.ANOMALY_ALARM_SMOOTH,
                                        spread, **scale_combine(name),
                                        rank_window=rank)  # fmt: skip
            tail = np.nan_to_num(alarm_scores(e_tr, prof), nan=-np.inf)[cut:] > prof.threshold
            variants[name][f"false_alarm_rate_tail{suffix}"] = (
                float(tail.mean()) if len(tail) else None
            )
            # the library's alarm (the step's own score, ANOMALY_ALARM_SMOOTH; with
            # spread: fit_threshold(spread=True)) and, for comparison, the threshold on the
            # smoothed score itself (the former rule)
            for key, alarm in (
                (f"false_alarm_rate{suffix}", settings.ANOMALY_ALARM_SMOOTH),
                ("false_alarm_rate_smoothed", smooth),
            ):
                if suffix and alarm != settings.ANOMALY_ALARM_SMOOTH:
                    continue
                prof = profile_from_entries([e_tr], args.far, args.samples, K, args.window,
                                            smooth, norm, base, alarm, spread,
                                            **scale_combine(name),
                                            rank_window=rank)  # fmt: skip
                flagged = np.nan_to_num(alarm_scores(e_te, prof), nan=-np.inf) > prof.threshold
                variants[name][key] = float(flagged[normal].mean()) if normal.any() else None
                if key != "false_alarm_rate_smoothed":  # what the library's alarms catch
                    caught = detected(flagged, ~normal)
                    variants[name].update({f"{k}{suffix}": v for k, v in caught.items()})
        variants[name]["score"] = step_scores(e_te, prof)
    hist = est.history_
    best = int(np.nanargmin([h["val_score"] for h in hist])) + 1 if hist else 0
    out.update(epochs_run=len(hist), best_epoch=best, variants=variants)
    if hist:  # label-free: the validation score of the weights kept (lower is better)
        out["val_score_best"] = float(hist[best - 1]["val_score"])
    out["kernel_fitted"] = fitted_kernel(est)
    return out


def detected(flagged: np.ndarray, anomalous: np.ndarray) -> dict[str, Any]:
    """What an alarm catches on the scored part: the share of its labelled steps flagged
    (``step_recall``), and how many of its ``events`` (runs of labelled steps) have at least
    one flagged step (``events_flagged``)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], anomalous.astype(np.int8), [0]])))
    events = list(zip(edges[::2], edges[1::2], strict=True))
    return {
        "step_recall": float(flagged[anomalous].mean()) if anomalous.any() else None,
        "events": len(events),
        "events_flagged": sum(bool(flagged[a:b].any()) for a, b in events),
    }


def fitted_kernel(est: Any) -> dict[str, list[float]]:
    """The trained prior's positive hyper-parameters, one list entry per latent channel's
    kernel term: ``{"0.lengthscale": [...], "0.variance": [...]}`` (term index within the
    channel's kernel, ``0`` for a single kernel)."""
    out: dict[str, list[float]] = {}
    for name, mod in est.model_.prior.named_modules():
        parts = name.split(".")  # kernels.<channel>[.kernels.<term>]
        if len(parts) < 2 or parts[0] != "kernels":
            continue
        term = parts[3] if len(parts) >= 4 else "0"
        # raw_parameters: a packed channel reads its entries of the prior's (L,) tensors
        raw = mod.raw_parameters() if hasattr(mod, "raw_parameters") else {}
        for attr in ("lengthscale", "variance"):
            if f"raw_{attr}" in raw:
                out.setdefault(f"{term}.{attr}", []).append(float(getattr(mod, attr).detach()))
    return out


def held_key(folds: int, causal: bool, block: int = 1) -> str:
    """The key of a held-out score's entries: ``k5``, ``c8``, ``k5b8`` (blocks of 8)."""
    return (f"c{folds}" if causal else f"k{folds}") + (f"b{block}" if block > 1 else "")


def _block_entries(
    est: Any, X: np.ndarray, t: np.ndarray, args: argparse.Namespace, folds: int, block: int
) -> Any:
    from gpvae.estimator.anomaly import entry_scores

    ctx = est._context("anomaly_scores")
    _, scaled = ctx.input(X[None], t[None])
    return entry_scores(ctx, scaled, args.samples, folds, args.window, block=block)[0]


def _prior_entries(est: Any, X: np.ndarray, t: np.ndarray, args: argparse.Namespace) -> Any:
    from gpvae.estimator.anomaly import entry_scores

    ctx = est._context("anomaly_scores")
    _, scaled = ctx.input(X[None], t[None])
    return entry_scores(ctx, scaled, args.samples, 1, args.window, prior=True)[0]


def _latent_entries(
    est: Any, X: np.ndarray, t: np.ndarray, args: argparse.Namespace, lags: int
) -> Any:
    from gpvae.estimator.anomaly import entry_scores

    ctx = est._context("anomaly_scores")
    _, scaled = ctx.input(X[None], t[None])
    return entry_scores(ctx, scaled, args.samples, 1, args.window, latent_lags=lags)[0]


def run_vae(s: AnomalySeries, args: argparse.Namespace, w: int) -> dict[str, Any]:
    return run_gpvae(s, args, w, white=True)


class KeepBest:
    """Early stopping for TSB-AD's training loops (they call ``stopper(val_loss, model)``
    after each epoch and stop when ``early_stop`` is set), with TSB-AD's rule (stop after
    ``patience`` epochs without a validation loss ``delta`` below the best) that also keeps
    a copy of the best weights (:meth:`restore`) and records every epoch's loss."""

    def __init__(self, patience: int, delta: float = 1e-4) -> None:
        if patience < 1:
            raise ValueError(f"patience: expected at least 1, found {patience}")
        self.patience, self.delta = patience, delta
        self.history: list[float] = []
        self.best_epoch = 0
        self.early_stop = False
        self._best_state: dict[str, Any] | None = None

    def __call__(self, val_loss: float, model: Any) -> None:
        self.history.append(float(val_loss))
        best = self.history[self.best_epoch - 1] if self.best_epoch else math.inf
        if not self.best_epoch or val_loss < best - self.delta:
            self.best_epoch = len(self.history)
            self._best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif len(self.history) - self.best_epoch >= self.patience:
            self.early_stop = True

    def restore(self, model: Any) -> None:
        """Load the best epoch's weights into ``model`` (nothing when no epoch ran)."""
        if self._best_state is not None:
            model.load_state_dict(self._best_state)

    def summary(self) -> dict[str, Any]:
        """``epochs_run``, ``best_epoch`` and ``val_score_best`` (the best validation loss,
        label-free, lower is better) as the records of gpvae carry them."""
        out: dict[str, Any] = {"epochs_run": len(self.history), "best_epoch": self.best_epoch}
        if self.best_epoch:
            out["val_score_best"] = self.history[self.best_epoch - 1]
        return out


def run_cnn(s: AnomalySeries, args: argparse.Namespace, w: int) -> dict[str, Any]:
    tr, te = standardise(s)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        clf, stopper = train_cnn(tr, args)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        # the scored part with the train's last window (and the post-processing's context)
        # in front, so every step has context
        n_ctx = min(len(tr), 100 + PEER_CONTEXT)
        ctx = np.concatenate([tr[-n_ctx:], te])
        score = np.asarray(clf.decision_function(ctx)).ravel()[min(100, n_ctx) :]
    return {
        "variants": peer_variants(score, len(te), _peer_names(args, "cnn")),
        "fit_seconds": fit_s,
        "score_seconds": time.perf_counter() - t0,
        **stopper.summary(),
    }


def train_cnn(tr: np.ndarray, args: argparse.Namespace) -> tuple[Any, KeepBest]:
    """TSB-AD's CNN forecaster (window 100, one step ahead) trained on ``tr`` with the seed,
    epoch cap and patience of ``args``, its best weights restored; and its stopper."""
    import torch
    from TSB_AD.models.CNN import CNN

    torch.manual_seed(args.seed)
    # TSB-AD's loop leaves after epoch ``epochs - 1``: one more makes ``--epochs`` the cap
    clf = CNN(window_size=100, feats=tr.shape[1], epochs=args.epochs + 1, batch_size=128)
    stopper = KeepBest(args.patience)
    clf.early_stopping = stopper
    clf.fit(tr)
    stopper.restore(clf.model)
    return clf, stopper


RUNNERS: dict[str, Callable[[AnomalySeries, argparse.Namespace, int], dict[str, Any]]] = {
    "gpvae": run_gpvae,
    "vae": run_vae,
    "pca": run_pca,
    "iforest": run_iforest,
    "zscore": run_zscore,
    "cnn": run_cnn,
}


# ---------------------------------------------------------------- campaign


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument(
        "--out",
        default=None,
        help="One results file for every record (default: the collection's file, "
        "benchmarks/results/anomaly_nab.json or anomaly_smap_msl.json).",
    )
    p.add_argument("--datasets", default="smap_msl,nab")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--series", default=None, help="Comma-separated names (default: all).")
    p.add_argument("--dev", action="store_true", help="Only the development subset.")
    p.add_argument("--no-dev", action="store_true", help="Leave the development subset out.")
    p.add_argument("--shard", default="0/1", help="i/n: run every n-th series from the i-th.")
    p.add_argument("--tag", default="main", help="Label of this configuration's records.")
    add_model_options(p)
    # the score variant's name sets the folds and the smoothing (--variants): refused
    p.add_argument("--folds", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--smooth", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--threshold-holdout",
        type=float,
        default=0.0,
        help="Share of the normal part (its end) held back from gpvae's fit; the threshold "
        "then comes from the scores there (0: from the in-sample scores of the whole part).",
    )
    p.add_argument(
        "--variants",
        default=CHOSEN,
        help="Score variants of gpvae and vae to record ('all' or names of VARIANTS); "
        "the default is the one chosen on the development subset.",
    )
    p.add_argument(
        "--peer-variants",
        default="chosen",
        help="Post-processing variants of the baselines' scores to record ('chosen': each "
        "baseline's PEER_CHOSEN; 'all'; or names of PEER_VARIANTS).",
    )
    p.add_argument(
        "--dump",
        default=None,
        help="Also save gpvae's entry scores here (.npz: KEY_train, the normal part the "
        "threshold comes from, and KEY_test; with --threshold-holdout also KEY_fit, the "
        "in-sample scores of the part the model was fit on).",
    )
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="FILE",
        help="Run nothing: add the records of these files (other runs' --out files or "
        "collection files) to the collection files (or to --out), skipping those already "
        "recorded unchanged.",
    )
    p.add_argument(
        "--merge-variants",
        default=None,
        help="With --merge: only the records of these score variants (comma-separated) of "
        "gpvae and the VAE (records without a variant are all kept).",
    )
    p.add_argument(
        "--restart-of",
        nargs="+",
        default=None,
        metavar="FILE",
        help="Refit, for each series and model, only the run that the best of --restarts "
        "restarts keeps in group --group among these files' records of tags PREFIXSEED "
        "(--restart-prefix; a PREFIXSEED_cap200 refit in their place), with that run's seed "
        "and epoch cap (the lowest val_score_best; label-free). --seed and --epochs are "
        "then ignored; the other settings must be the kept run's.",
    )
    p.add_argument("--restart-prefix", default="s15_seed")
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--group", type=int, default=0)
    args = p.parse_args(argv)
    check_model_args(p, args)
    for option, what in (("folds", "folds"), ("smooth", "smoothing steps")):
        if getattr(args, option) is not None:
            p.error(
                f"--{option}: expected none (the score variant's name sets its {what}: "
                f"k5..._s32 scores with 5 folds smoothed over 32 steps; choose variants with "
                f"--variants), found --{option} {getattr(args, option)}"
            )
    del args.folds, args.smooth
    return args


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Add the options of the models' fit and of gpvae's threshold and scoring (shared with
    ``anomaly_speed.py``): what :func:`new_gpvae` and the scoring read."""
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--latent-dim", type=int, default=4)
    p.add_argument("--kernel", default="matern32", help="gpvae's kernel name (the VAE's is white).")
    p.add_argument(
        "--lengthscale",
        type=lengthscale_arg,
        default=None,
        help="gpvae's initial lengthscale in steps (default: the library's), or one per "
        "latent channel, comma-separated (e.g. 3,6,12,24 with --latent-dim 4).",
    )
    p.add_argument("--beta", type=float, default=1.0, help="KL weight of both VAEs.")
    p.add_argument(
        "--likelihood",
        default="gaussian",
        help="Observation model of both VAEs (a GPVAE likelihood name, e.g. student_t).",
    )
    p.add_argument(
        "--encoder",
        default="mlp",
        help="Encoder of both VAEs (a GPVAE encoder name, e.g. conv: width 3 over time).",
    )
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument(
        "--kernel-lr",
        type=float,
        default=None,
        help="gpvae's learning rate of the kernel hyper-parameters (default: the library's, "
        "max(--lr, settings.KERNEL_LR)).",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--train-window", type=int, default=64, help="Steps per training window.")
    p.add_argument("--train-stride", type=int, default=16, help="Steps between their starts.")
    p.add_argument("--window", type=int, default=128, help="Steps per scoring window.")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--far", type=float, default=0.01, help="Target false-alarm rate.")
    p.add_argument("--seed", type=int, default=0)


def check_model_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (``p.error``) a ``--lengthscale`` list whose length is not ``--latent-dim``."""
    if isinstance(args.lengthscale, list) and len(args.lengthscale) != args.latent_dim:
        p.error(
            f"--lengthscale: expected one value or {args.latent_dim} (one per latent "
            f"channel, --latent-dim), found {len(args.lengthscale)}"
        )


def lengthscale_arg(text: str) -> float | list[float]:
    """``--lengthscale``: one positive number, or a comma-separated list of them (a list,
    as the records' JSON holds it, so that ``--restart-of`` compares like with like)."""
    from gpvae.arguments import lengthscale_text
    from gpvae.errors import ValidationError

    try:
        value = lengthscale_text(text)
    except ValidationError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return list(value) if isinstance(value, tuple) else value


#: The model settings of records written before their option existed (session 21): a
#: record without the key ran with this value.
MODEL_DEFAULTS = {"likelihood": "gaussian", "encoder": "mlp", "kernel_lr": None}

#: A refit of a cap-limited run with a larger cap: its tag is the run's with this suffix.
RERUN_SUFFIX = "_cap200"


def kept_runs(
    records: Sequence[dict[str, Any]], prefix: str, restarts: int, group: int
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(dataset, series, model) -> the record of the run that the best of ``restarts``
    restarts keeps in group ``group`` (seeds ``group * restarts`` onwards, the tags
    ``PREFIX<seed>``; a ``PREFIX<seed>_cap200`` record takes its run's place): the lowest
    ``val_score_best`` (``anomaly_seeds.best_of``). Series without every seed of the group
    are left out."""
    from anomaly_seeds import best_of  # a sibling script (it imports nothing of this one)

    seeds = range(group * restarts, (group + 1) * restarts)
    runs: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = {}
    for r in records:
        model = r["method"].partition("/")[0]
        tag = r.get("tag", "")
        base = tag[: -len(RERUN_SUFFIX)] if tag.endswith(RERUN_SUFFIX) else tag
        seed = r.get("config", {}).get("seed")
        if model not in ("gpvae", "vae") or base != f"{prefix}{seed}" or seed not in seeds:
            continue
        found = runs.setdefault((r["dataset"], r["series"], model), {})
        if tag != base or seed not in found:  # the refit wins
            found[seed] = r
    return {
        key: best_of([by[s] for s in seeds], restarts)[0]
        for key, by in runs.items()
        if all(s in by for s in seeds)
    }


def restart_args(args: argparse.Namespace, method: str, kept: dict[str, Any]) -> argparse.Namespace:
    """``args`` with the kept run's seed and epoch cap; a ValueError when another setting
    differs from the kept run's (a refit of another model would pass for it)."""
    new = argparse.Namespace(**{**vars(args), "seed": kept["config"]["seed"]})
    new.epochs = kept["config"]["epochs"]
    ours, theirs = method_config(run_config(new), method), kept["config"]
    for k in ("latent_dim", "hidden", "beta", "kernel", "lengthscale", "patience", "lr",
              "likelihood", "encoder", "kernel_lr"):  # fmt: skip
        if ours.get(k, MODEL_DEFAULTS.get(k)) != theirs.get(k, MODEL_DEFAULTS.get(k)):
            raise ValueError(
                f"--restart-of: {method} {kept['series']}: {k} is {ours.get(k)!r} here, "
                f"{theirs.get(k)!r} in the kept run"
            )
    return new


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """The run's settings written to each record's ``config`` (the seed too, so that runs
    of several seeds are told apart by their records, not only by their tags)."""
    from gpvae import settings

    config = {
        k: getattr(args, k)
        for k in ("epochs", "patience", "latent_dim", "hidden", "lr", "batch_size")
    }
    config.update(kernel=args.kernel, lengthscale=args.lengthscale, beta=args.beta)
    if args.kernel_lr is not None:  # recorded only when set (older records have none)
        config.update(kernel_lr=args.kernel_lr)
    config.update(likelihood=args.likelihood, encoder=args.encoder)
    config.update(train_window=args.train_window, train_stride=args.train_stride)
    config.update({k: getattr(args, k) for k in ("window", "samples", "far", "threshold_holdout")})
    config.update(alarm_smooth=settings.ANOMALY_ALARM_SMOOTH, seed=args.seed)
    return config


def method_config(config: dict[str, Any], method: str) -> dict[str, Any]:
    """The run's configuration as it applies to ``method``: the VAE runs a white kernel
    whatever ``--kernel``, ``--lengthscale`` and ``--kernel-lr`` say."""
    if method == "vae":
        white = {**config, "kernel": "white", "lengthscale": None}
        white.pop("kernel_lr", None)  # the VAE has no kernel to learn
        return white
    return config


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out = AnomalyStore(args.out)
    if args.merge:
        keep = args.merge_variants.split(",") if args.merge_variants else None
        for path in args.merge:
            records = json.loads(Path(path).read_text())
            if keep is not None:  # gpvae's and the VAE's other variants left out
                records = [
                    r
                    for r in records
                    if r["method"].partition("/")[0] not in ("gpvae", "vae")
                    or r.get("variant") in keep
                ]
            n = out.merge(records)
            print(f"{path}: {n} records added or replaced", flush=True)
        return 0
    series = all_series(args.data_dir, args.datasets.split(","))
    if args.dev:
        keep = {d.split(":", 1)[1] for d in DEV_SERIES}
        series = [x for x in series if x[1] in keep]
    if args.no_dev:
        skip = {d.split(":", 1)[1] for d in DEV_SERIES}
        series = [x for x in series if x[1] not in skip]
    if args.series:
        keep = set(args.series.split(","))
        series = [x for x in series if x[1] in keep]
    i, n = (int(v) for v in args.shard.split("/"))
    series = series[i::n]
    methods = args.methods.split(",")
    config = run_config(args)
    kept = None
    if args.restart_of:
        records = [r for f in args.restart_of for r in json.loads(Path(f).read_text())]
        kept = kept_runs(records, args.restart_prefix, args.restarts, args.group)
    for kind, name in series:
        data = None
        for method in methods:
            ds = "NAB" if kind == "NAB" else ("SMAP" if name_dim(name, args) == 25 else "MSL")
            v0 = next(iter(VARIANTS)) if args.variants == "all" else args.variants.split(",")[0]
            first = f"{method}/{v0}" if method in ("gpvae", "vae") else method
            if method not in ("gpvae", "vae"):
                first = f"{method}/{_peer_names(args, method)[0]}"
            if out.has(ds, name, first, args.tag):
                continue
            if data is None:
                data = load(kind, name, args.data_dir)
                w = period(data)
            assert data is not None
            if not data.labels.any():  # VUS-PR and AUC-PR are undefined without an anomaly
                print(f"{data.dataset:5s} {name:48s} skipped: no labelled anomaly in the "
                      f"scored part", flush=True)  # fmt: skip
                break
            run_args, run_cfg = args, config
            if kept is not None:
                if (data.dataset, name, method) not in kept:
                    print(f"{data.dataset:5s} {name:48s} {method}: no kept run", flush=True)
                    continue
                run_args = restart_args(args, method, kept[(data.dataset, name, method)])
                run_cfg = run_config(run_args)
            t0 = time.perf_counter()
            res = RUNNERS[method](data, run_args, w)
            wall = time.perf_counter() - t0
            variants = res.pop("variants", None)
            if variants is None:
                variants = {"": {"score": res.pop("score")}}
            for vname, vres in variants.items():
                score = np.asarray(vres.pop("score"), dtype=np.float64)
                rec = {
                    "dataset": data.dataset,
                    "series": name,
                    "method": method,
                    "variant": vname,
                    "tag": args.tag,
                    **metrics(score, data.labels, w),
                    "wall_seconds": wall,
                    "n_train": len(data.train),
                    "n_test": len(data.test),
                    "num_features": data.train.shape[1],
                    "anomalous_share": float(data.labels.mean()),
                    "sliding_window": w,
                    "dev": f"{data.dataset}:{name}" in DEV_SERIES,
                    "config": method_config(run_cfg, method),
                    **{k: _finite(v) for k, v in {**res, **vres}.items()},
                }
                if vname:
                    rec["method"] = f"{method}/{vname}"
                out.add(rec)
                print(
                    f"{data.dataset:5s} {name:48s} {rec['method']:18s} "
                    f"VUS-PR {rec['vus_pr']:.3f} AUC-PR {rec['auc_pr']:.3f} "
                    f"AUC-ROC {rec['auc_roc']:.3f} {wall:6.1f}s",
                    flush=True,
                )
    return 0


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


_DIMS: dict[str, int] = {}


def name_dim(name: str, args: argparse.Namespace) -> int:
    """D of a SMAP/MSL channel (25 SMAP, 55 MSL), read from its file once."""
    if name not in _DIMS:
        from gpvae.datasets._paths import dataset_dir

        path = dataset_dir(args.data_dir, "smap_msl", "*.npz") / f"{name}.npz"
        with np.load(path) as z:
            _DIMS[name] = int(z["train"].shape[1])
    return _DIMS[name]


if __name__ == "__main__":
    raise SystemExit(main())
