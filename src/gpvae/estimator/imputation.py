"""Imputation of the estimator: predictive draws per series, intervals, observed values kept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gpvae.arguments import bool_arg, interval_draws_arg, warn_few_draws
from gpvae.data import from_padded
from gpvae.estimator.blending import blend_draws
from gpvae.estimator.context import PredictContext
from gpvae.estimator.results import ImputationResult, mask_form, samples_form
from gpvae.model import sorted_quantiles

__all__ = ["impute_series"]


def impute_series(
    ctx: PredictContext,
    X: Any,
    times: Any,
    num_samples: int,
    quantiles: Sequence[float],
    return_samples: bool,
) -> ImputationResult:
    """:meth:`GPVAE.impute` (see there); observed entries are returned bit for bit."""
    model, scaler = ctx.model, ctx.scaler
    S, q_lo, q_hi = interval_draws_arg(num_samples, quantiles)
    return_samples = bool_arg("return_samples", return_samples)
    ss, scaled = ctx.input(X, times)
    T_max = max(len(t) for t in ss.times)
    returned = sum(len(t) for t in ss.times) if return_samples else 0
    names = "num_samples, return_samples" if return_samples else "num_samples"
    ctx.check_draws(names, S, ss.num_series, T_max, returned=returned)
    warn_few_draws(S, q_lo, q_hi)  # the inputs are checked: no warning before an error
    means: list[np.ndarray] = [np.empty(0)] * ss.num_series
    lowers, uppers = list(means), list(means)
    draws: list[np.ndarray] = list(means)
    spread = ctx.interval_scale
    model.eval()
    for idx in ctx.batches(ss.num_series):
        batch = ctx.batch(scaled, idx)
        mean, y = model.predictive_draws(batch, ctx.series_generators(ss, idx, 1), S)
        mean, y = blend_draws(ctx.blend_weight, batch, mean, y)
        if (spread != 1).any():  # spread recalibrated about the mean
            y = mean + torch.as_tensor(spread, dtype=y.dtype, device=y.device) * (y - mean)
        # quantiles only where they are reported: the missing entries of the series' steps
        need = batch.valid[..., None] & ~batch.observed  # (B, N, D)
        lo, hi = mean.clone(), mean.clone()  # observed entries and padding: replaced below
        if bool(need.any()):
            # predictive positions: the coverage does not depend on S (nor on S at calibration)
            lo[need], hi[need] = sorted_quantiles(y[:, need], (q_lo, q_hi), "predictive")
        parts = [scaler.inverse_transform(t.double().cpu().numpy()) for t in (mean, lo, hi)]
        y_np = scaler.inverse_transform(y.double().cpu().numpy()) if return_samples else None
        for b, i in enumerate(idx):
            orig = ss.values[i]  # (T_i, D) float64 in sorted time order
            obs = ~np.isnan(orig)
            T = orig.shape[0]
            means[i], lowers[i], uppers[i] = (np.where(obs, orig, p[b, :T]) for p in parts)
            if y_np is not None:
                draws[i] = np.where(obs, orig, y_np[:, b, :T])  # (S, T_i, D)
    observed = [~np.isnan(v) for v in ss.values]
    frame = None
    if ss.layout.output_kind not in ("array", "ragged"):
        frame = from_padded(ss, {"mean": means, "lower": lowers, "upper": uppers})
    return ImputationResult(
        mean=from_padded(ss, means, name="mean"),
        lower=from_padded(ss, lowers, name="lower"),
        upper=from_padded(ss, uppers, name="upper"),
        samples=samples_form(ss, draws) if return_samples else None,
        observed=mask_form(ss, observed),
        quantiles=(q_lo, q_hi),
        frame=frame,
    )
