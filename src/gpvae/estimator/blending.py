"""Blending the imputation with each feature's linear interpolation, weighted on validation.

Where a feature is observed close by, interpolating between its observed neighbours is hard
to beat, and a model that departs from it may do worse than it on some features. After
training, :func:`fit_blend` picks one weight ``w_d`` in [0, 1] per feature
(:data:`gpvae.settings.BLEND_WEIGHTS`) on the held-out validation entries: the imputed mean
becomes ``v + w_d (m - v)``, with ``m`` the model's predictive mean and ``v`` the feature's
linear interpolation between its nearest observed entries before and after the step
(:func:`~gpvae.data.interpolate.neighbour_interpolation`; constant beyond the first or last
one). The weight minimises the mean absolute error of the blend on the held-out entries that
have an observed neighbour, so on them the blend is never worse than either the model
(``w = 1``) or interpolation (``w = 0``). Entries without an observed neighbour in their
feature keep the model's prediction; features with fewer than
:data:`gpvae.settings.BLEND_MIN_ENTRIES` such held-out entries share the weight fitted on all
entries. Draws are shifted with their mean (:func:`blend_draws`), so the intervals keep the
model's spread about the blended mean, and the interval calibration that follows sees the
blended draws.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import Tensor

from gpvae import settings
from gpvae.batch import Batch
from gpvae.data import SeriesSet, batch_indices
from gpvae.data.interpolate import neighbour_interpolation
from gpvae.estimator.context import PredictContext
from gpvae.training import FitSession

__all__ = ["blend_draws", "blend_mean", "fit_blend", "fit_blend_weights", "heldout_blend_entries"]


def _interpolation(batch: Batch) -> tuple[Tensor, Tensor]:
    """(interpolated value, has an observed neighbour), each (B, N, D), of ``batch``."""
    value, gap = neighbour_interpolation(batch.x, batch.y, batch.observed, batch.valid)
    return value, torch.isfinite(gap)


def blend_mean(
    weight: np.ndarray | None, batch: Batch, mean: Tensor, steps: list[Tensor] | None = None
) -> Tensor:
    """The predictive mean moved to the blend ``v + w_d (mean - v)`` where the feature has an
    observed neighbour (unchanged elsewhere, and everywhere when ``weight`` is None).

    Args:
        weight: (D,) blend weights, or None.
        batch: the batch the prediction conditions on (its observed entries interpolate).
        mean: (B, N, D) predictive mean, or (B, K, D) at ``steps``.
        steps: per series of the batch, the ascending positions ``mean`` holds (padded to
            K), or None for every step.
    """
    if weight is None:
        return mean
    value, near = _interpolation(batch)
    if steps is not None:  # gather the interpolation at the chosen steps (padding: no blend)
        B, K, D = mean.shape
        v_at = torch.zeros(B, K, D, dtype=value.dtype, device=value.device)
        n_at = torch.zeros(B, K, D, dtype=torch.bool, device=value.device)
        for b, at in enumerate(steps):
            at = at.to(value.device)
            v_at[b, : len(at)], n_at[b, : len(at)] = value[b, at], near[b, at]
        value, near = v_at, n_at
    w = torch.as_tensor(weight, dtype=mean.dtype, device=mean.device)
    value = value.to(mean.dtype)
    return torch.where(near, value + w * (mean - value), mean)


def blend_draws(
    weight: np.ndarray | None,
    batch: Batch,
    mean: Tensor,
    draws: Tensor,
    steps: list[Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """``(mean, draws)`` moved to the blend :func:`blend_mean`, the draws with their mean.

    Args:
        weight, batch, mean, steps: as in :func:`blend_mean`.
        draws: (S, ...) draws of the same shape as ``mean`` after the first axis.
    """
    if weight is None:
        return mean, draws
    blended = blend_mean(weight, batch, mean, steps)
    return blended, draws + (blended - mean)


def heldout_blend_entries(
    ctx: PredictContext, inputs: SeriesSet, targets: SeriesSet
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The held-out entries that have an observed neighbour in their feature: the model's
    predictive mean (:data:`gpvae.settings.BLEND_SAMPLES` draws per series), the
    interpolation, the true value and the feature index, each (M,), standardised.

    Args:
        ctx: the fitted model (``ctx.blend_weight`` is not applied).
        inputs: standardised series with the held-out entries hidden.
        targets: the held-out entries (NaN elsewhere), standardised.
    """
    model = ctx.model
    model.eval()
    D = targets.num_features
    parts: list[tuple[np.ndarray, ...]] = [(np.zeros(0),) * 3 + (np.zeros(0, np.int64),)]
    rows = np.flatnonzero([bool((~np.isnan(v)).any()) for v in targets.values])
    for part in batch_indices(len(rows), ctx.batch_size):
        idx = rows[part]
        batch = ctx.batch(inputs, idx)
        gens = ctx.series_generators(inputs, idx, salt=6)
        with torch.no_grad():
            mean, _ = model.predictive_draws(batch, gens, settings.BLEND_SAMPLES)
            value, near = _interpolation(batch)
        target = np.full(mean.shape, np.nan)  # (B, N, D)
        for b, i in enumerate(idx):
            v = targets.values[i]
            target[b, : v.shape[0]] = v
        keep = ~np.isnan(target) & near.cpu().numpy()
        feature = np.broadcast_to(np.arange(D), target.shape)
        parts.append(
            (
                mean.double().cpu().numpy()[keep],
                value.double().cpu().numpy()[keep],
                target[keep],
                feature[keep].astype(np.int64),
            )
        )
    m, v, y, f = (np.concatenate(p) for p in zip(*parts))
    return m, v, y, f


def _best_weight(mean: np.ndarray, value: np.ndarray, target: np.ndarray) -> float:
    """The weight of :data:`gpvae.settings.BLEND_WEIGHTS` whose blend has the smallest mean
    absolute error (ties go to the largest weight: the model)."""
    grid = np.asarray(settings.BLEND_WEIGHTS, dtype=np.float64)
    step, miss = mean - value, target - value
    err = np.array([np.abs(w * step - miss).mean() for w in grid])
    best = np.flatnonzero(err <= err.min() + 1e-12)
    return float(grid[best].max())


def fit_blend_weights(
    mean: np.ndarray,
    value: np.ndarray,
    target: np.ndarray,
    feature: np.ndarray,
    num_features: int,
) -> np.ndarray:
    """One blend weight per feature from held-out entries (the arrays of
    :func:`heldout_blend_entries`; their order does not matter).

    Returns:
        (D,) weights in [0, 1]; all ones when there are no entries.
    """
    mean, value = np.asarray(mean, np.float64), np.asarray(value, np.float64)
    target, feature = np.asarray(target, np.float64), np.asarray(feature)
    keep = np.isfinite(mean) & np.isfinite(value) & np.isfinite(target)
    if not keep.any():
        return np.ones(num_features)
    shared = _best_weight(mean[keep], value[keep], target[keep])
    out = np.full(num_features, shared)
    for d in range(num_features):
        idx = keep & (feature == d)
        if idx.sum() >= settings.BLEND_MIN_ENTRIES:
            out[d] = _best_weight(mean[idx], value[idx], target[idx])
    return out


def fit_blend(ctx: PredictContext, session: FitSession) -> np.ndarray:
    """The blend weights on a fit session's held-out validation entries (of every process
    in a distributed fit).

    Args:
        ctx: the fitted model.
        session: the :class:`~gpvae.training.FitSession` that trained it.
    """
    D = ctx.scaler.num_features
    comm = session.comm
    arrays = (np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
    with contextlib.nullcontext() if comm is None else comm.together():
        local = session.local_validation()
        if local is not None:
            arrays = heldout_blend_entries(ctx, *local)
    if comm is None:
        return fit_blend_weights(*arrays, D)
    gathered = comm.all_gather(arrays)
    m, v, y, f = (np.concatenate([g[i] for g in gathered]) for i in range(4))
    return fit_blend_weights(m, v, y, f, D)
