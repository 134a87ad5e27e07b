"""Recalibration of imputation intervals on held-out entries.

A GP-VAE's predictive draws can be too narrow (an amortised posterior that is over-confident)
or too wide. After training, the estimator imputes the observed entries it held out for
validation, from the draws it would report, and fits one spread factor ``c_d`` per feature:
every interval and draw is then ``m + c_d (q - m)`` around the predictive mean ``m``. ``c_d``
is picked from a log-spaced grid to make the held-out coverage of the central intervals at
the levels :data:`LEVELS` closest to nominal (sum of absolute coverage errors; ties go to
the factor nearest 1). Features with fewer than :data:`MIN_ENTRIES` held-out entries share
the factor fitted on all entries.

The factors are fitted on a random subsample of the held-out entries, at most
:data:`gpvae.settings.CALIBRATION_ENTRIES` per feature (all of a rarer feature's), and only
the steps holding them are drawn (:meth:`~gpvae.model.GPVAEModel.predictive_step_draws`):
calibration costs about the same whatever the size of the training set. (With several
processes, each subsamples its own held-out entries, and the factors are fitted on all of
theirs together.)

Scaling a quantile about the mean keeps the order of the quantiles (``c > 0``), so the
factors apply to any interval level the user asks for; they are fitted on imputation
residuals and so are used for imputation only.
"""

from __future__ import annotations

import numpy as np
import torch

from gpvae import settings
from gpvae.data import SeriesSet, batch_indices
from gpvae.estimator.blending import blend_draws
from gpvae.estimator.context import PredictContext
from gpvae.model import sorted_quantiles
from gpvae.rng import seed_for

__all__ = [
    "LEVELS",
    "MIN_ENTRIES",
    "SCALES",
    "calibrate_intervals",
    "calibration_steps",
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

    The draws have the distribution of imputation's, entry by entry
    (:data:`gpvae.settings.CALIBRATION_SAMPLES` per series, from each series' own
    generator), in standardised units, at the steps of :func:`calibration_steps`.

    Args:
        ctx: the fitted model and the call's settings.
        inputs: standardised series with the held-out entries hidden.
        targets: the held-out entries (NaN elsewhere), standardised.

    Returns:
        (D,) spread factors.
    """
    arrays = heldout_intervals(ctx, inputs, targets)
    return fit_interval_scales(*arrays, targets.num_features)


def calibration_steps(targets: SeriesSet, per_feature: int, seed: int) -> list[np.ndarray]:
    """The steps of each series whose held-out entries the factors are fitted on.

    For each feature, at most ``per_feature`` of its held-out entries are chosen at random
    (all of them when it has fewer); a step holding a chosen entry is drawn, and every
    held-out entry at a drawn step counts.

    Args:
        targets: the held-out entries (NaN elsewhere).
        per_feature: entries chosen per feature.
        seed: seeds the choice.

    Returns:
        per series, the ascending positions (in its sorted time order) of its drawn steps.
    """
    rng = np.random.default_rng(seed)
    where = [np.nonzero(~np.isnan(v)) for v in targets.values]  # (steps, features) per series
    series = np.concatenate([np.full(len(w[0]), i) for i, w in enumerate(where)] + [[]])
    step = np.concatenate([w[0] for w in where] + [[]]).astype(np.int64)
    feature = np.concatenate([w[1] for w in where] + [[]]).astype(np.int64)
    chosen = []
    for d in range(targets.num_features):
        idx = np.flatnonzero(feature == d)
        chosen.append(idx if len(idx) <= per_feature else rng.choice(idx, per_feature, False))
    pick = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    out = [np.zeros(0, np.int64)] * targets.num_series
    if len(pick):
        width = int(step.max()) + 1
        keys = np.unique(series[pick].astype(np.int64) * width + step[pick])
        for i, part in zip(*_groups(keys // width, keys % width)):
            out[i] = part
    return out


def _groups(owner: np.ndarray, value: np.ndarray) -> tuple[list[int], list[np.ndarray]]:
    """``value`` split by ``owner`` (sorted ascending): the owners and their parts."""
    owners, starts = np.unique(owner, return_index=True)
    return owners.tolist(), np.split(value, starts[1:])


def heldout_intervals(
    ctx: PredictContext, inputs: SeriesSet, targets: SeriesSet
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The held-out entries' predictive means, interval ends at :data:`LEVELS`, values and
    features: the arguments of :func:`fit_interval_scales` (their order does not matter to
    it, so several processes' arrays may be concatenated). Only the entries at the steps of
    :func:`calibration_steps` are drawn and returned.

    Returns:
        mean (M,), lower (M, K), upper (M, K), target (M,), feature (M,).
    """
    levels = np.asarray(LEVELS)
    probs = [*((1 - levels) / 2), *((1 + levels) / 2)]
    K = len(levels)
    D = targets.num_features
    steps = calibration_steps(targets, settings.CALIBRATION_ENTRIES, seed_for(ctx.seed, 14))
    # series with a drawn step, those with as many steps together (little padding)
    counts = np.array([len(st) for st in steps], dtype=np.int64)
    rows = np.flatnonzero(counts)
    rows = rows[np.argsort(counts[rows], kind="stable")]
    preds: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [
        (np.zeros(0), np.zeros((0, K)), np.zeros((0, K)))
    ]  # mean, lower, upper
    truth: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0), np.zeros(0, np.int64))]
    model = ctx.model
    model.eval()
    per_batch = max(ctx.batch_size, settings.CALIBRATION_BATCH)  # a few steps of each
    for part in batch_indices(len(rows), per_batch):
        idx = rows[part]
        batch = ctx.batch(inputs, idx)
        gens = ctx.series_generators(inputs, idx, salt=5)
        at = [torch.as_tensor(steps[i]) for i in idx]
        mean, y = model.predictive_step_draws(batch, gens, settings.CALIBRATION_SAMPLES, at)
        mean, y = blend_draws(ctx.blend_weight, batch, mean, y, at)
        target = np.full(mean.shape, np.nan)  # (B, K_max, D), NaN = not a target
        for b, i in enumerate(idx):
            target[b, : len(steps[i])] = targets.values[i][steps[i]]
        keep = ~np.isnan(target)
        keep_t = torch.as_tensor(keep, device=y.device)
        q = torch.stack(sorted_quantiles(y[:, keep_t], probs), dim=-1)  # (M, 2K)
        q_np = q.double().cpu().numpy()  # lower ends, then upper ends
        m_np = mean[keep_t].double().cpu().numpy()  # (M,)
        preds.append((m_np, q_np[:, :K], q_np[:, K:]))
        feature = np.broadcast_to(np.arange(D), target.shape)
        truth.append((target[keep], feature[keep]))
    mean_a, lo_a, hi_a = (np.concatenate(p) for p in zip(*preds))
    y_a, f_a = (np.concatenate(p) for p in zip(*truth))
    return mean_a, lo_a, hi_a, y_a, f_a
