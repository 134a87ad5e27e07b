"""Prior samples and latent posteriors of the estimator (:meth:`GPVAE.sample`, ``latent``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gpvae.arguments import int_arg
from gpvae.data.output import unpad
from gpvae.estimator.context import PredictContext
from gpvae.estimator.results import times_1d

__all__ = ["latent_series", "sample_series"]


def sample_series(
    ctx: PredictContext, times: Any, num_samples: int, noise: bool = True
) -> np.ndarray:
    """:meth:`GPVAE.sample` (see there): (S, T, D) in original units, ``times``' order."""
    model, scaler = ctx.model, ctx.scaler
    S = int_arg("num_samples", num_samples)
    t = times_1d(times, "times")
    ctx.check_draws("num_samples, times", S, 1, len(t), prior_only=True)
    order = np.argsort(t, kind="stable")
    x = scaler.scaled_times(t[order], "times")
    scaler.check_resolution([x], "times", "the times to sample at")  # as fit's, impute's
    if len(x):  # moved by whole steps to start in [0, 1): float32 keeps far times apart
        x = x - np.floor(x[0])
    dtype = next(model.parameters()).dtype
    x_t = torch.as_tensor(x[None, :, None], dtype=dtype, device=ctx.device)
    model.eval()
    y = model.sample_series(x_t, S, ctx.generator(3), noise=noise)[:, 0]  # (S, T, D)
    out = np.empty((S, len(t), scaler.num_features))
    out[:, order] = scaler.inverse_transform(y.double().cpu().numpy())
    return out


def latent_series(ctx: PredictContext, X: Any, times: Any) -> tuple[Any, Any]:
    """:meth:`GPVAE.latent` (see there): posterior mean and variance of z per step."""
    ss, scaled = ctx.input(X, times)
    mean_l: list[np.ndarray] = [np.empty(0)] * ss.num_series
    var_l = list(mean_l)
    ctx.model.eval()
    for idx in ctx.batches(ss.num_series, "latent"):
        batch = ctx.batch(scaled, idx)
        with torch.no_grad():
            m, v = ctx.model.encode(batch).marginals()  # (B, N, L)
        m_np, v_np = m.double().cpu().numpy(), v.double().cpu().numpy()
        for b, i in enumerate(idx):
            T = len(ss.times[i])
            mean_l[i], var_l[i] = m_np[b, :T], v_np[b, :T]
    mean_u, var_u = unpad(ss, mean_l), unpad(ss, var_l)
    if ss.layout.output_kind == "array":
        return np.stack(mean_u), np.stack(var_u)
    return mean_u, var_u
