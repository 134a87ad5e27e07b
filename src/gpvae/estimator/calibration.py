"""Recalibration of imputation intervals on held-out entries.

A GP-VAE's predictive draws can be too narrow (an amortised posterior that is over-confident)
or too wide. After training, the estimator imputes the observed entries it held out for
validation, from the draws it would report, and fits one spread factor ``c_d`` per feature:
every interval and draw is then ``m + c_d (q - m)`` around the predictive mean ``m``. ``c_d``
is picked from a log-spaced grid to make the held-out coverage of the central intervals at
the levels :data:`LEVELS` closest to nominal (sum of absolute coverage errors; ties go to
the factor nearest 1). Features with fewer than :data:`MIN_ENTRIES` held-out entries share
the factor fitted on all entries.

Scaling a quantile about the mean keeps the order of the quantiles (``c > 0``), so the
factors apply to any interval level the user asks for; they are fitted on imputation
residuals and so are used for imputation only.
"""

from __future__ import annotations

import numpy as np
import torch

from gpvae import settings
from gpvae.data import SeriesSet
from gpvae.estimator.context import PredictContext
from gpvae.model import sorted_quantiles

__all__ = [
    "LEVELS",
    "MIN_ENTRIES",
    "SCALES",
    "calibrate_intervals",
    "fit_interval_scales",
    "heldout_intervals",
]

#: Central-interval levels whose held-out coverage the factors are fitted to.
LEVELS = (0.5, 0.8, 0.9, 0.95)
#: Candidate spread factors: 161 log-spaced values from 1/4 to 8.
SCALES = np.exp(np.linspace(np.log(0.25), np.log(8.0), 161))
#: Held-out entries a feature needs for a factor of its own.
MIN_ENTRIES = 50


def _best_scale(mean: np.ndarray, lower: np.ndarray, upper: np.ndarray, y: np.ndarray) -> float:
    """The factor of :data:`SCALES` with held-out coverage closest to :data:`LEVELS`."""
    lo = lower - mean[:, None]  # (M, K), <= 0 for a draw spread around the mean
    hi = upper - mean[:, None]  # (M, K)
    r = (y - mean)[:, None]  # (M, 1)
    levels = np.asarray(LEVELS)
    errors = np.empty(len(SCALES))
    for j, c in enumerate(SCALES):
        covered = (c * lo <= r) & (r <= c * hi)  # (M, K)
        errors[j] = np.abs(covered.mean(axis=0) - levels).sum()
    best = np.flatnonzero(errors <= errors.min() + 1e-12)
    return float(SCALES[best[np.argmin(np.abs(np.log(SCALES[best])))]])


def fit_interval_scales(
    mean: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    target: np.ndarray,
    feature: np.ndarray,
    num_features: int,
) -> np.ndarray:
    """One spread factor per feature from held-out entries.

    Args:
        mean: (M,) predictive mean of each held-out entry.
        lower: (M, K) lower ends of the central intervals at :data:`LEVELS` (K levels).
        upper: (M, K) upper ends.
        target: (M,) the held-out true values.
        feature: (M,) feature index of each entry, in ``[0, num_features)``.
        num_features: D.

    Returns:
        (D,) factors in ``[SCALES[0], SCALES[-1]]``; all ones when there are no entries.
    """
    mean, target = np.asarray(mean, np.float64), np.asarray(target, np.float64)
    lower, upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    feature = np.asarray(feature)
    K = len(LEVELS)
    if lower.shape != (len(mean), K) or upper.shape != lower.shape:
        raise ValueError(f"lower, upper: expected shape ({len(mean)}, {K}), found {lower.shape}")
    keep = np.isfinite(mean) & np.isfinite(target) & np.isfinite(lower).all(1)
    keep &= np.isfinite(upper).all(1)
    if not keep.any():
        return np.ones(num_features)
    shared = _best_scale(mean[keep], lower[keep], upper[keep], target[keep])
    out = np.full(num_features, shared)
    for d in range(num_features):
        idx = keep & (feature == d)
        if idx.sum() >= MIN_ENTRIES:
            out[d] = _best_scale(mean[idx], lower[idx], upper[idx], target[idx])
    return out


def calibrate_intervals(ctx: PredictContext, inputs: SeriesSet, targets: SeriesSet) -> np.ndarray:
    """Fit the spread factors on held-out entries (``targets``, hidden in ``inputs``).

    The draws are the ones imputation would make (:data:`gpvae.settings.CALIBRATION_SAMPLES`
    per series, from each series' own generator), in standardised units.

    Args:
        ctx: the fitted model and the call's settings.
        inputs: standardised series with the held-out entries hidden.
        targets: the held-out entries (NaN elsewhere), standardised.

    Returns:
        (D,) spread factors.
    """
    arrays = heldout_intervals(ctx, inputs, targets)
    return fit_interval_scales(*arrays, targets.num_features)


def heldout_intervals(
    ctx: PredictContext, inputs: SeriesSet, targets: SeriesSet
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The held-out entries' predictive means, interval ends at :data:`LEVELS`, values and
    features: the arguments of :func:`fit_interval_scales` (their order does not matter to
    it, so several processes' arrays may be concatenated).

    Returns:
        mean (M,), lower (M, K), upper (M, K), target (M,), feature (M,).
    """
    levels = np.asarray(LEVELS)
    probs = [*((1 - levels) / 2), *((1 + levels) / 2)]
    K = len(levels)
    preds: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # mean, lower, upper
    truth: list[tuple[np.ndarray, np.ndarray]] = []  # value, feature index
    model = ctx.model
    model.eval()
    for idx in ctx.batches(inputs.num_series):
        batch = ctx.batch(inputs, idx)
        gens = ctx.series_generators(inputs, idx, salt=5)
        mean, y = model.predictive_draws(batch, gens, settings.CALIBRATION_SAMPLES)
        q = torch.stack(sorted_quantiles(y, probs), dim=-1)  # (B, N, D, 2K)
        target, _, _ = targets.padded(indices=idx)  # (B, N, D), NaN = not a target
        keep = ~np.isnan(target)
        feature = np.broadcast_to(np.arange(target.shape[-1]), target.shape)
        q_np = q.double().cpu().numpy()[keep]  # (M, 2K): lower ends, then upper ends
        m_np = mean.double().cpu().numpy()[keep]  # (M,)
        preds.append((m_np, q_np[:, :K], q_np[:, K:]))
        truth.append((target[keep], feature[keep]))
    mean_a, lo_a, hi_a = (np.concatenate(p) for p in zip(*preds))
    y_a, f_a = (np.concatenate(p) for p in zip(*truth))
    return mean_a, lo_a, hi_a, y_a, f_a
