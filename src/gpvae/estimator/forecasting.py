"""Forecasts of the estimator: future times, draws at them, results in the input's form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gpvae.arguments import int_arg, quantiles_arg
from gpvae.errors import ValidationError
from gpvae.estimator.context import PredictContext
from gpvae.estimator.results import ForecastResult, forecast_frame, resolve_future_times, times_out
from gpvae.model import sorted_quantiles

__all__ = ["forecast_series"]


def forecast_series(
    ctx: PredictContext,
    X: Any,
    times: Any,
    horizon: int | None,
    future_times: Any,
    num_samples: int,
    quantiles: Sequence[float],
) -> ForecastResult:
    """:meth:`GPVAE.forecast` (see there)."""
    model, scaler = ctx.model, ctx.scaler
    if ctx.posterior != "structured":
        raise ValidationError(
            f"posterior: forecast expected a model fitted with posterior='structured' (its "
            f"posterior is a GP that can be evaluated at new times), found "
            f"{ctx.posterior!r}"
        )
    S = int_arg("num_samples", num_samples)
    q_lo, q_hi = quantiles_arg(quantiles)
    ss, scaled = ctx.input(X, times)
    # (n, H) float, the input's units; a single-step series steps by the training time step
    future = resolve_future_times(ss, horizon, future_times, scaler.time_step_)
    future_name = "horizon" if future_times is None else "future_times"
    scaler.scaled_times(future, future_name)  # checked before any work
    n, H = future.shape
    D = ss.num_features
    width = max(D, model.latent_dim)
    T_max = max(len(t) for t in ss.times)
    # z and the decoded draws over history + future, the draws of y, the sorted copy
    ctx.check_draws(f"num_samples, {future_name}", S, n, T_max + H, width, 4)
    gen = ctx.generator(2)
    mean_out, lo_out, hi_out = (np.empty((n, H, D)) for _ in range(3))
    model.eval()
    for idx in ctx.batches(n):
        batch = ctx.batch(scaled, idx)
        x_new = scaler.scaled_times(future[idx], future_name)  # (B, H)
        x_t = torch.as_tensor(x_new[..., None], dtype=batch.x.dtype, device=batch.x.device)
        mean, y = model.forecast_draws(batch, x_t, S, gen)  # (B, H, D), (S, B, H, D)
        lo, hi = sorted_quantiles(y, (q_lo, q_hi))
        for out, t in ((mean_out, mean), (lo_out, lo), (hi_out, hi)):
            out[idx] = scaler.inverse_transform(t.double().cpu().numpy())
    dtype = ss.layout.dtype if ss.layout.dtype.kind == "f" else np.dtype(np.float64)
    t_out = times_out(ss, future)
    mean_c, lo_c, hi_c = (a.astype(dtype, copy=False) for a in (mean_out, lo_out, hi_out))
    return ForecastResult(
        times=t_out,
        mean=mean_c,
        lower=lo_c,
        upper=hi_c,
        samples=None,
        quantiles=(q_lo, q_hi),
        series_ids=ss.layout.series_ids,
        frame=forecast_frame(ss, t_out, mean_c, lo_c, hi_c),
    )
