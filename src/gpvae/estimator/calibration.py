"""Recalibration of imputation intervals on held-out entries.

A GP-VAE's predictive draws can be too narrow (an amortised posterior that is over-confident)
or too wide. After training, the estimator imputes held-out entries from the draws it would
report, and fits one spread factor ``c_d`` per feature: every interval and draw is then
``m + c_d (q - m)`` around the predictive mean ``m``. ``c_d`` is picked from a log-spaced
grid to make the held-out coverage of the central intervals at the levels :data:`LEVELS`
closest to nominal (sum of absolute coverage errors; ties go to the factor nearest 1).

Which entries: when the validation series were held out of training (``X_val`` with no
series also in the training data, :func:`held_out_of_training`),
:func:`fresh_holdouts` hides new entries of the whole validation series,
:data:`gpvae.settings.CALIBRATION_HOLDOUTS` times, each time as many as the validation
hold-out and with the shape of the gaps being imputed: runs of ``block_lengths`` steps when
``val_pattern`` or else ``mask_pattern`` says the gaps are blocks of one feature
(``"blocks"``) or of whole steps (``"steps"``); else, when the validation entries are the
user's hidden ground truth (``X_val_target``), the shape of those hidden entries: whole
steps when most of them are at steps where every observed feature is hidden
(:func:`whole_step_entries`), else blocks of one feature (:func:`gap_shape`: blocks as long
as their runs when most of them come in runs, else points); else points. The validation
hold-out itself chose the stopping epoch and the blend weights, so its residuals are
smaller than those of new gaps, and intervals fitted to it are too narrow there
(PhysioNet-300 blocks, validation only: calibrated on it, new gaps of other validation
stays were covered 84-85% at 90%; calibrated on new gaps, 87-89%). Without validation
series the validation hold-out is used, as before.

How much a feature's own entries count: entries of one block (a run of consecutive held-out
steps of one feature in one series) move together, so a feature's evidence is its number
of blocks ``n_d``, not of entries. Its factor minimises
``(n_d err_d(c) + n_0 err(c)) / (n_d + n_0)``, the coverage error on its own entries
shrunk towards the one on all entries by :data:`gpvae.settings.CALIBRATION_POOL_BLOCKS`
``= n_0`` blocks' worth: a feature seen in a few blocks gets about the pooled factor, one
seen in hundreds of separate points its own.

The factors are fitted on a random subsample of the held-out entries, at most
:data:`gpvae.settings.CALIBRATION_ENTRIES` per feature and hold-out (all of a rarer
feature's), and only the steps holding them are drawn
(:meth:`~gpvae.model.GPVAEModel.predictive_entry_draws`, with observation noise for
the held-out entries only): calibration costs about the same
whatever the size of the training set. (With several processes, each subsamples its own
held-out entries, and the factors are fitted on all of theirs together.)

The grid ends at 1/4 and 8: when a feature's held-out errors ask for more (its factor is
an end of the grid, or the end does as well as the factor chosen while every level still
covers too little, or too much: :func:`interval_scales`), its intervals are not calibrated,
and fit warns (:func:`factors_at_bounds`): a model whose validation score diverged (lr=10)
ended with [8, 8, 8] and 90% intervals covering 46% of new gaps.

Scaling a quantile about the mean keeps the order of the quantiles (``c > 0``), so the
factors apply to any interval level the user asks for; they are fitted on imputation
residuals and so are used for imputation only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from gpvae import settings
from gpvae.data import SeriesSet, batch_indices
from gpvae.data.holdout import RUN_PATTERNS, run_mask
from gpvae.estimator.anomaly import runs_of
from gpvae.estimator.blending import blend_mean
from gpvae.estimator.context import PredictContext
from gpvae.model import sorted_quantiles
from gpvae.rng import seed_for, series_seed

__all__ = [
    "IMPUTATION_FACTORS",
    "LEVELS",
    "SCALES",
    "calibrate_intervals",
    "calibration_steps",
    "factors_at_bounds",
    "fit_interval_scales",
    "fresh_holdouts",
    "gap_shape",
    "held_out_of_training",
    "heldout_arrays",
    "heldout_intervals",
    "hidden_runs",
    "interval_scales",
    "whole_step_entries",
]

#: Central-interval levels whose held-out coverage the factors are fitted to.
LEVELS = (0.5, 0.8, 0.9, 0.95)
#: Candidate spread factors: 161 log-spaced values from 1/4 to 8.
SCALES = np.exp(np.linspace(np.log(0.25), np.log(8.0), 161))


def _coverage_errors(
    mean: np.ndarray, lower: np.ndarray, upper: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """(len(SCALES),) the held-out coverage error (summed over :data:`LEVELS`) of each
    factor of :data:`SCALES`."""
    groups = np.zeros(len(mean), np.int64)
    return _errors_of_counts(*_covered_counts(mean, lower, upper, y, groups, 1))[0]


def _scaled_at_most(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where ``SCALES[j] * a <= b`` holds, as index ranges [start, end) over j: one range
    per element of ``a`` and ``b`` (same shape, finite). The products are those of the
    test itself, so the ranges are exact: rounding is monotone, so for ``a < 0`` the test
    fails below a first index and holds from it on, for ``a > 0`` it holds up to an index,
    and for ``a = 0`` it holds everywhere or nowhere. The index is found from ``b / a`` and
    moved step by step until the test changes there."""
    n = len(SCALES)
    pos = a > 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t = b / a
    first = np.where(pos, np.searchsorted(SCALES, t, "right"), np.searchsorted(SCALES, t))
    first = np.where(a == 0, np.where(b >= 0, 0, n), first)

    def flipped(j: np.ndarray) -> np.ndarray:  # false below the index, true from it on
        return (SCALES[j] * a <= b) ^ pos

    while True:
        down = (first > 0) & flipped(np.maximum(first - 1, 0))
        up = (first < n) & ~flipped(np.minimum(first, n - 1)) & ~down
        if not (down.any() or up.any()):
            break
        first = first - down + up
    return np.where(pos, 0, first), np.where(pos, first, n)


def _covered_counts(
    mean: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    num_groups: int,
) -> tuple[np.ndarray, np.ndarray]:
    """For each group of entries (``groups`` (M,) in ``[0, num_groups)``), how many of its
    entries the interval at each level covers once scaled by each factor of :data:`SCALES`,
    ``c lo <= r <= c hi`` (``lo``, ``hi``, ``r``: lower end, upper end, value less the
    mean): (num_groups, K, len(SCALES)) counts, and (num_groups,) entries. The same test
    as one comparison per factor, counted from where each entry is covered (a range of
    factors)."""
    n, K = len(SCALES), lower.shape[1]
    lo = lower - mean[:, None]  # (M, K), <= 0 for a draw spread around the mean
    hi = upper - mean[:, None]  # (M, K)
    r = np.broadcast_to((y - mean)[:, None], lo.shape)  # (M, K)
    start_lo, end_lo = _scaled_at_most(lo, r)  # c lo <= r
    start_hi, end_hi = _scaled_at_most(-hi, -r)  # r <= c hi, exactly (-c hi = c (-hi))
    start, end = np.maximum(start_lo, start_hi), np.minimum(end_lo, end_hi)
    base = (groups[:, None] * K + np.arange(K)) * (n + 1)  # (M, K) row of each count
    some = start < end
    size = num_groups * K * (n + 1)
    diff = np.bincount((base + start)[some], minlength=size)
    diff -= np.bincount((base + end)[some], minlength=size)
    counts = np.cumsum(diff.reshape(num_groups, K, n + 1), axis=-1)[..., :n]
    return counts, np.bincount(groups, minlength=num_groups)


def _errors_of_counts(counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """(G, len(SCALES)) coverage errors summed over :data:`LEVELS` from the counts of
    :func:`_covered_counts` (the levels' errors added in order, as a sum over them)."""
    shares = counts / np.maximum(totals, 1)[:, None, None].astype(np.float64)  # (G, K, n)
    errors = np.zeros((len(totals), len(SCALES)))
    for k, level in enumerate(LEVELS):
        errors = errors + np.abs(shares[:, k] - level)
    return errors


def _best_scale(errors: np.ndarray) -> float:
    """The factor of :data:`SCALES` with the smallest error (ties: the one nearest 1)."""
    best = np.flatnonzero(errors <= errors.min() + 1e-12)
    return float(SCALES[best[np.argmin(np.abs(np.log(SCALES[best])))]])


def fit_interval_scales(
    mean: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    target: np.ndarray,
    feature: np.ndarray,
    num_features: int,
    runs: np.ndarray | None = None,
) -> np.ndarray:
    """One spread factor per feature from held-out entries: the factors of
    :func:`interval_scales` (see there for the arguments), without where they ran out of
    their grid.

    Returns:
        (D,) factors in ``[SCALES[0], SCALES[-1]]``; all ones when there are no entries.
    """
    return interval_scales(mean, lower, upper, target, feature, num_features, runs)[0]


def interval_scales(
    mean: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    target: np.ndarray,
    feature: np.ndarray,
    num_features: int,
    runs: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One spread factor per feature from held-out entries, each feature's own coverage
    error shrunk towards the pooled one by its number of blocks (see the module doc), and
    where each feature's factor ran out of the grid :data:`SCALES`.

    Args:
        mean: (M,) predictive mean of each held-out entry.
        lower: (M, K) lower ends of the central intervals at :data:`LEVELS` (K levels).
        upper: (M, K) upper ends.
        target: (M,) the held-out true values.
        feature: (M,) feature index of each entry, in ``[0, num_features)``.
        num_features: D.
        runs: (M,) the block of each entry (equal ids: one run of consecutive held-out
            steps of one feature in one series), or None: every entry its own block.

    Returns:
        (D,) factors in ``[SCALES[0], SCALES[-1]]`` (all ones when there are no entries),
        and (D,) limits: +1 when the held-out errors asked for more than the largest factor
        (it is the factor chosen, or it does as well as the factor chosen while every
        level's interval still covers less than its nominal share of the feature's entries:
        a model so far off that no factor covers them chose 1 by the tie rule), -1 likewise
        for less than the smallest factor (every level still covers more than its share),
        else 0.
    """
    mean, target = np.asarray(mean, np.float64), np.asarray(target, np.float64)
    lower, upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    feature = np.asarray(feature)
    K = len(LEVELS)
    if lower.shape != (len(mean), K) or upper.shape != lower.shape:
        raise ValueError(f"lower, upper: expected shape ({len(mean)}, {K}), found {lower.shape}")
    keep = np.isfinite(mean) & np.isfinite(target) & np.isfinite(lower).all(1)
    keep &= np.isfinite(upper).all(1)
    limit = np.zeros(num_features, np.int64)
    if not keep.any():
        return np.ones(num_features), limit
    runs = np.arange(len(mean)) if runs is None else np.asarray(runs)
    if runs.shape != mean.shape:
        raise ValueError(f"runs: expected shape {mean.shape}, found {runs.shape}")
    mean, lower, upper = mean[keep], lower[keep], upper[keep]
    target, feature, runs = target[keep], feature[keep], runs[keep]
    groups = np.zeros(len(mean), np.int64)
    pooled_counts, pooled_totals = _covered_counts(mean, lower, upper, target, groups, 1)
    pooled = _errors_of_counts(pooled_counts, pooled_totals)[0]
    pooled_shares = pooled_counts[0] / max(int(pooled_totals[0]), 1)  # (K, len(SCALES))
    out = np.full(num_features, _best_scale(pooled))
    limit[:] = _limit(pooled, pooled_shares, out[0])
    n0 = float(settings.CALIBRATION_POOL_BLOCKS)
    ours = (feature >= 0) & (feature < num_features) & (feature % 1 == 0)  # features fitted
    index = feature[ours].astype(np.int64)
    counts, totals = _covered_counts(
        mean[ours], lower[ours], upper[ours], target[ours], index, num_features
    )
    own = _errors_of_counts(counts, totals)  # (D, len(SCALES))
    pairs = np.unique(np.stack([index, runs[ours]]), axis=1)  # (feature, block) pairs
    blocks = np.bincount(pairs[0], minlength=num_features)
    for d in np.flatnonzero(totals):
        n = float(blocks[d])
        errors = (n * own[d] + n0 * pooled) / (n + n0)
        out[d] = _best_scale(errors)
        limit[d] = _limit(errors, counts[d] / float(totals[d]), out[d])
    return out, limit


def _limit(errors: np.ndarray, shares: np.ndarray, chosen: float) -> int:
    """+1, -1 or 0 for one feature (see :func:`interval_scales`), from its error at each
    factor (len(SCALES),), the share of its entries each level covers at each factor (K,
    len(SCALES)) and the factor chosen."""
    best = errors.min() + 1e-12
    levels = np.asarray(LEVELS)
    if chosen == SCALES[-1] or (errors[-1] <= best and (shares[:, -1] < levels).all()):
        return 1
    if chosen == SCALES[0] or (errors[0] <= best and (shares[:, 0] > levels).all()):
        return -1
    return 0


#: The subject of :func:`factors_at_bounds`' warning on imputation's factors.
IMPUTATION_FACTORS = "calibrate: the imputation intervals' spread factor (interval_scale_)"


def factors_at_bounds(
    scale: np.ndarray,
    limit: np.ndarray,
    names: Sequence[str],
    *,
    subject: str = IMPUTATION_FACTORS,
    labels: Sequence[str] | None = None,
    errors: str = "held-out errors",
    unseen: str = "new gaps",
    grid: tuple[float, float] = (float(SCALES[0]), float(SCALES[-1])),
) -> str | None:
    """The warning about the features whose spread factor ran out of the grid
    :data:`SCALES` (``limit`` of :func:`interval_scales`; ``scale`` their factors, ``names``
    their names), or None: the held-out errors asked for more than the grid allows, so
    those features' intervals are not calibrated, most often because the model is poorly
    trained. Intervals still too narrow (the largest factor) are always named; intervals
    still too wide (the smallest factor) only when every feature's are: on BeijingAir
    points (the benchmark's configuration, 180 training windows, 20 epochs) 55 of 132
    smooth features (temperature, pressure, dew point) sat at 1/4, their 90% intervals
    covering 97% of test gaps (median) while the whole covered 89%: the observation
    noise, learned slowly at the default ``lr``, is wider than their errors, which a
    warning on every such fit would not change (``noise_lr`` does).

    The other calibrations reuse it with their own words: ``subject`` (the argument and
    the factors, e.g. the forecast's), ``labels`` (shown instead of the names' repr, one
    per factor: e.g. a feature and its horizon band), ``errors`` (what the factors were
    fitted on), ``unseen`` (what the intervals will not cover at their rate) and ``grid``
    (the smallest and largest factor)."""
    scale, limit = np.asarray(scale, dtype=np.float64), np.asarray(limit)
    high, low = np.flatnonzero(limit > 0), np.flatnonzero(limit < 0)
    if len(low) < len(limit):  # some features calibrated: too wide is not a failed fit
        low = low[:0]
    if not len(low) and not len(high):
        return None
    shown = [repr(n) for n in names] if labels is None else list(labels)

    def listed(idx: np.ndarray) -> str:
        listing = ", ".join(f"{shown[j]} ({scale[j]:.3g})" for j in idx[:10])
        return listing + (f" and {len(idx) - 10} more" if len(idx) > 10 else "")

    parts = []
    if len(high):
        parts.append(
            f"{listed(high)}: their {errors} needed intervals wider than the largest "
            f"factor, {grid[1]:g} times the model's own, gives, so they are still too narrow"
        )
    if len(low):
        parts.append(
            f"{listed(low)}: their {errors} needed intervals narrower than the "
            f"smallest factor, {grid[0]:g} times the model's own, gives, so they are still "
            "too wide"
        )
    return (
        f"{subject} ran out of its range [{grid[0]:g}, {grid[1]:g}] for feature(s) "
        f"{'; '.join(parts)}. The intervals of these features are not calibrated (they will "
        f"not cover {unseen} at their nominal rate). The model may be poorly trained: check "
        "history_ (a validation score that diverged or barely fell) and try a smaller lr or "
        "more epochs"
    )


def calibrate_intervals(
    ctx: PredictContext,
    inputs: SeriesSet,
    targets: SeriesSet,
    fresh: tuple[str, tuple[int, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit the spread factors on held-out entries (``targets``, hidden in ``inputs``), or
    on :func:`fresh_holdouts` of the same series with ``fresh``.

    The draws have the distribution of imputation's, entry by entry
    (:data:`gpvae.settings.CALIBRATION_SAMPLES` per series, from each series' own
    generator), in standardised units, at the steps of :func:`calibration_steps`.

    Args:
        ctx: the fitted model and the call's settings.
        inputs: standardised series with the held-out entries hidden.
        targets: the held-out entries (NaN elsewhere), standardised.
        fresh: (pattern, block lengths) of new hold-outs, for series held out of training.

    Returns:
        (D,) spread factors, and (D,) where they ran out of the grid
        (:func:`interval_scales`).
    """
    arrays = heldout_arrays(ctx, inputs, targets, fresh)
    return interval_scales(*arrays[:5], targets.num_features, runs=arrays[5])


def fresh_holdouts(
    inputs: SeriesSet,
    targets: SeriesSet,
    pattern: str,
    lengths: tuple[int, int],
    seed: int,
) -> list[tuple[SeriesSet, SeriesSet]]:
    """:data:`gpvae.settings.CALIBRATION_HOLDOUTS` new (inputs, targets) pairs of the same
    series: each series whole (``inputs`` with ``targets`` filled in), each time with about
    as large a share of its observed entries hidden as ``targets`` holds of it, as single
    entries (``pattern="points"``), as blocks of ``lengths`` steps of one feature
    (``"blocks"``) or as runs of ``lengths`` whole steps (``"steps"``); every
    series keeps an observed entry. Each series draws from its own generator (seeded by
    ``seed`` and its content), so its hold-outs do not depend on the other series. Empty
    when there is nothing to hide, or when ``targets`` holds half of the entries or more.
    """
    whole, shares = [], []
    for v, t in zip(inputs.values, targets.values):
        full = np.where(np.isnan(v), t, v)
        n = int((~np.isnan(full)).sum())
        whole.append(full)
        shares.append(int((~np.isnan(t)).sum()) / n if n else 0.0)
    if targets.num_observed == 0 or max(shares) > 0.5:
        return []
    pairs = []
    for r in range(settings.CALIBRATION_HOLDOUTS):
        kept, held = [], []
        for v, t, share in zip(whole, inputs.times, shares):
            rng = np.random.default_rng(series_seed(seed, 100 + r, v, t))
            observed = ~np.isnan(v)
            if pattern in RUN_PATTERNS:
                hide = run_mask(pattern, observed, share, lengths, rng) & observed
            else:
                hide = observed & (rng.random(v.shape) < share)
            if observed.any() and not (observed & ~hide).any():
                first = np.argwhere(observed)[0]
                hide[first[0], first[1]] = False  # keep one observed entry
            kept.append(np.where(hide, np.nan, v))
            held.append(np.where(hide, v, np.nan))
        held_set = targets.with_values(held)
        if held_set.num_observed:
            pairs.append((inputs.with_values(kept), held_set))
    return pairs


def hidden_runs(inputs: SeriesSet, targets: SeriesSet) -> tuple[np.ndarray, np.ndarray]:
    """The runs of held-out entries: a run is a longest sequence of one feature's observed
    entries (those of ``inputs`` and of ``targets``, in time order) that are all held out.

    Args:
        inputs: the series with the held-out entries missing.
        targets: the held-out entries (NaN elsewhere), same series and times.

    Returns:
        (sizes, spans), one per run: its number of entries, and its length in steps (last
        step less first, plus one).
    """
    sizes: list[int] = []
    spans: list[int] = []
    for v, t, h in zip(inputs.values, inputs.times, targets.values):
        order = np.argsort(t, kind="stable")
        held = ~np.isnan(h[order])  # (T, D)
        seen = held | ~np.isnan(v[order])
        for d in np.flatnonzero(held.any(axis=0)):
            steps = np.flatnonzero(seen[:, d])
            for first, last in runs_of(held[steps, d]):  # positions in steps
                sizes.append(last - first + 1)
                spans.append(int(steps[last] - steps[first]) + 1)
    return np.asarray(sizes, dtype=np.int64), np.asarray(spans, dtype=np.int64)


def whole_step_entries(inputs: SeriesSet, targets: SeriesSet) -> tuple[int, int]:
    """How many held-out entries are at whole-step gaps, and how many are held out: a step
    is a whole-step gap when two or more entries are held out at it (``targets``) and none
    of its entries is left observed (``inputs``), as when a recorder was off. (A step with a
    single held-out entry does not count: at it a block of one feature and a whole step are
    the same gap.)

    Args:
        inputs: the series with the held-out entries missing.
        targets: the held-out entries (NaN elsewhere), same series and times.

    Returns:
        (entries at whole-step gaps, all held-out entries).
    """
    whole = total = 0
    for v, h in zip(inputs.values, targets.values):
        held = (~np.isnan(h)).sum(axis=1)  # (T,) held-out entries per step
        gap = (held >= 2) & np.isnan(v).all(axis=1)
        whole += int(held[gap].sum())
        total += int(held.sum())
    return whole, total


def gap_shape(sizes: np.ndarray, spans: np.ndarray) -> tuple[int, int] | None:
    """The (shortest, longest) block length of new hold-outs shaped like held-out entries
    whose runs are ``sizes`` entries and ``spans`` steps long (:func:`hidden_runs`): when
    most runs hold two entries or more (the entries are blocks: independent points with a
    share below one half come mostly alone), the 10th and 90th percentiles of the spans
    (overlapping blocks of the user's merge into longer runs); else None (points)."""
    if len(sizes) == 0 or np.median(sizes) < 2:
        return None
    lo = max(int(np.floor(np.percentile(spans, 10))), 1)
    return lo, max(int(np.ceil(np.percentile(spans, 90))), lo)


def held_out_of_training(train_set: SeriesSet, val_set: SeriesSet | None) -> bool:
    """True when there are validation series and none of them is also a training series
    (same times and values): only then are new hold-outs of them unseen in training (the
    demo, for one, validates on its training windows with entries hidden in all of them)."""
    if val_set is None:
        return False

    def key(v: np.ndarray, t: np.ndarray) -> bytes:
        h = hashlib.sha256(np.ascontiguousarray(t, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(v, dtype=np.float64).tobytes())
        return h.digest()

    seen = {key(v, t) for v, t in zip(train_set.values, train_set.times)}
    return not any(key(v, t) in seen for v, t in zip(val_set.values, val_set.times))


def heldout_arrays(
    ctx: PredictContext,
    inputs: SeriesSet,
    targets: SeriesSet,
    fresh: tuple[str, tuple[int, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`heldout_intervals` of the validation hold-out, or of every one of its
    :func:`fresh_holdouts` with ``fresh`` = (pattern, block lengths), concatenated (block
    ids kept apart between hold-outs)."""
    pairs = [(inputs, targets)]
    if fresh is not None:
        pairs = fresh_holdouts(inputs, targets, *fresh, ctx.seed) or pairs
    parts = [heldout_intervals(ctx, *pair) for pair in pairs]
    offset = 0
    for k, part in enumerate(parts):
        runs = part[5] + offset
        offset = int(runs.max()) + 1 if len(runs) else offset
        parts[k] = (*part[:5], runs)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(6))  # type: ignore[return-value]


def calibration_steps(targets: SeriesSet, per_feature: int, seed: int) -> list[np.ndarray]:
    """The steps of each series whose held-out entries the factors are fitted on.

    For each feature, at most ``per_feature`` of its held-out entries are chosen at random
    (all of them when it has fewer); a step holding a chosen entry is drawn, and every
    held-out entry at a drawn step counts.

    The features' choices are coordinated, so that they share steps where they can: every
    step holding a held-out entry gets one uniform random number, and each feature takes
    its ``per_feature`` entries at the steps with the smallest numbers. Each feature's choice
    is still a uniformly random subset of its held-out entries, but fewer steps are drawn:
    11,744 instead of 13,593 for the 108,950 held-out entries of predict_speed's 3,200
    PhysioNet stays (500 per feature), and the draws cost in proportion to the steps.

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
    width = int(step.max()) + 1 if len(step) else 1
    key = series.astype(np.int64) * width + step  # one per (series, step)
    distinct, order = np.unique(key, return_inverse=True)
    priority = rng.random(len(distinct))[order.reshape(-1)]  # one number per step
    chosen = []
    for d in range(targets.num_features):
        idx = np.flatnonzero(feature == d)
        if len(idx) > per_feature:
            idx = idx[np.argpartition(priority[idx], per_feature - 1)[:per_feature]]
        chosen.append(idx)
    pick = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    out = [np.zeros(0, np.int64)] * targets.num_series
    if len(pick):
        keys = np.unique(key[pick])
        for i, part in zip(*_groups(keys // width, keys % width)):
            out[i] = part
    return out


def _groups(owner: np.ndarray, value: np.ndarray) -> tuple[list[int], list[np.ndarray]]:
    """``value`` split by ``owner`` (sorted ascending): the owners and their parts."""
    owners, starts = np.unique(owner, return_index=True)
    return owners.tolist(), np.split(value, starts[1:])


def heldout_intervals(
    ctx: PredictContext, inputs: SeriesSet, targets: SeriesSet
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The held-out entries' predictive means, interval ends at :data:`LEVELS`, values,
    features and blocks: the arguments of :func:`fit_interval_scales` (their order does not
    matter to it, so several processes' arrays may be concatenated, their block ids kept
    apart). Only the entries at the steps of :func:`calibration_steps` are drawn and
    returned.

    Returns:
        mean (M,), lower (M, K), upper (M, K), target (M,), feature (M,), block (M,): ids
        in ``[0, number of blocks)``, one per run of consecutive held-out steps of one
        feature in one series.
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
    truth: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [
        (np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))
    ]
    model = ctx.model
    model.eval()
    per_batch = max(ctx.batch_size, settings.CALIBRATION_BATCH)  # a few steps of each
    offset = 0  # block ids used by the batches before
    for part in batch_indices(len(rows), per_batch):
        idx = rows[part]
        batch = ctx.batch(inputs, idx)
        gens = ctx.series_generators(inputs, idx, salt=5)
        at = [torch.as_tensor(steps[i]) for i in idx]
        held = targets.padded(indices=idx)[0]  # (B, N, D), NaN = not held out
        ids = _run_ids(~np.isnan(held)) + offset  # (B, N, D)
        offset = int(ids.max()) + 1
        pos = np.zeros((len(idx), max(len(a) for a in at)), np.int64)  # (B, K_max)
        on = np.zeros(pos.shape, bool)  # False on the padding of the step lists
        for b, a in enumerate(at):
            pos[b, : len(a)], on[b, : len(a)] = a.numpy(), True
        target = np.take_along_axis(held, pos[..., None], axis=1)  # (B, K_max, D)
        keep = ~np.isnan(target) & on[..., None]
        keep_t = torch.as_tensor(keep, device=batch.y.device)
        mean, y = model.predictive_entry_draws(
            batch, gens, settings.CALIBRATION_SAMPLES, at, keep_t
        )  # (M,), (S, M)
        if ctx.blend_weight is not None:
            full = mean.new_zeros(keep.shape)
            full[keep_t] = mean
            blended = blend_mean(ctx.blend_weight, batch, full, at)[keep_t]
            mean, y = blended, y + (blended - mean)
        # the positions of the reported intervals, so factors fitted on CALIBRATION_SAMPLES
        # draws hold for intervals from any number of draws
        q = torch.stack(sorted_quantiles(y, probs, "predictive"), dim=-1)
        q_np = q.double().cpu().numpy()  # lower ends, then upper ends
        preds.append((mean.double().cpu().numpy(), q_np[:, :K], q_np[:, K:]))
        feature = np.broadcast_to(np.arange(D), keep.shape)
        block = np.take_along_axis(ids, pos[..., None], axis=1)
        truth.append((target[keep], feature[keep], block[keep]))
    mean_a, lo_a, hi_a = (np.concatenate(p) for p in zip(*preds))
    y_a, f_a, b_a = (np.concatenate(p) for p in zip(*truth))
    return mean_a, lo_a, hi_a, y_a, f_a, np.unique(b_a, return_inverse=True)[1].reshape(-1)


def _run_ids(held: np.ndarray) -> np.ndarray:
    """(B, N, D) ids from 0, distinct across series and features, of the runs of
    consecutive held-out steps of ``held`` (B, N, D) bool (arbitrary where nothing is held
    out)."""
    start = held.copy()
    start[:, 1:] &= ~held[:, :-1]
    order = np.cumsum(start.transpose(0, 2, 1).reshape(-1)) - 1  # series, feature, step
    return order.reshape(held.shape[0], held.shape[2], held.shape[1]).transpose(0, 2, 1)
