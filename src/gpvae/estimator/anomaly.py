"""Anomaly scores of the estimator: held-out predictive densities per entry and step."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpvae import settings
from gpvae.arguments import check_memory, int_arg
from gpvae.data import from_padded
from gpvae.estimator.context import PredictContext
from gpvae.estimator.results import AnomalyResult

__all__ = ["heldout_scores", "quantile_threshold"]


def heldout_scores(
    ctx: PredictContext, X: Any, times: Any, num_samples: int, num_folds: int
) -> AnomalyResult:
    """:meth:`GPVAE.anomaly_scores` (see there)."""
    model = ctx.model
    S = int_arg("num_samples", num_samples)
    K = int_arg("num_folds", num_folds, minimum=2)
    ss, scaled = ctx.input(X, times)
    T_max = max(len(t) for t in ss.times)
    # one float64 log-sum-exp per chunk of draws is kept until the fold is scored
    B, D = min(ctx.batch_size, ss.num_series), ss.num_features
    check_memory(
        "num_samples",
        8.0 * math.ceil(S / settings.SAMPLE_CHUNK) * B * T_max * D,
        f"{S} draws for {B} series x {T_max} steps x {D} features",
    )
    entry: list[np.ndarray] = [np.empty(0)] * ss.num_series
    model.eval()
    for idx in ctx.batches(ss.num_series):
        batch = ctx.batch(scaled, idx)
        gens = ctx.series_generators(ss, idx, salt=4)
        s_np = model.heldout_nlpd(batch, gens, K, S).numpy()  # (B, N, D)
        for b, i in enumerate(idx):
            entry[i] = s_np[b, : len(ss.times[i])]
    step = [
        np.where(np.isnan(e).all(axis=1), np.nan, np.nansum(e, axis=1)) for e in entry
    ]  # (T_i,)
    return AnomalyResult(
        # float64 whatever the input's dtype: a score (~ z^2 / 2) can exceed float32
        entry=from_padded(ss, entry, name="entry", dtype=np.float64),
        step=from_padded(ss, step, name="step", dtype=np.float64),
        num_folds=K,
        num_samples=S,
    )


def quantile_threshold(step_scores: Any, quantile: float) -> float | None:
    """The ``quantile`` of the finite step scores (a list or array of per-series scores),
    or None when there is none: a threshold that flags ``1 - quantile`` of such steps."""
    flat = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in step_scores])
    flat = flat[np.isfinite(flat)]
    return float(np.quantile(flat, quantile)) if flat.size else None
