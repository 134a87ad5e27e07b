"""Which entries :meth:`GPVAE.fit` scores for early stopping and interval calibration.

Three sources of validation targets, in order of preference:

1. **Hidden ground truth from the user** (``X_val_target``): ``X_val`` is what the model sees
   and the targets are the entries observed in ``X_val_target`` but missing in ``X_val``:
   exactly the kind of gap that will be imputed (points, blocks, or whatever the user's
   missingness looks like).
2. **Blocks held out by the estimator** (``val_pattern="blocks"``): runs of consecutive steps
   of one feature hidden from ``X_val`` (or, without ``X_val``, from the training data, which
   then trains without them), so that early stopping scores gaps longer than one step; with
   ``val_pattern="steps"``, runs of consecutive whole steps (every feature hidden), for gaps
   where nothing is observed.
3. **Points** (``val_pattern="points"``, the default): the fit session's own random hold-out
   (:class:`~gpvae.training.FitSession`), unchanged; but when the training series are cut
   into windows (``window``), the points are held out here, of the whole series before they
   are cut, as blocks are: the windows overlap, and an entry held out of one window alone
   would stay observed in its neighbour, which trains on it.

The pairs are returned in original units; the session standardises them.
"""

from __future__ import annotations

import warnings

import numpy as np

from gpvae.arguments import check_name, float_arg
from gpvae.data import SeriesSet
from gpvae.data.holdout import (
    HIDE_PATTERNS,
    MASK_PATTERNS,
    RUN_PATTERNS,
    check_lengths,
    hold_out_blocks,
)
from gpvae.errors import ShapeError, ValidationError, invalid
from gpvae.rng import seed_for

__all__ = ["hidden_targets", "hiding_args", "trained_targets", "validation_split"]


def hiding_args(
    val_pattern: object, mask_rate: object, mask_pattern: object, block_lengths: object
) -> tuple[str, float, str, tuple[int, int]]:
    """The estimator's ``val_pattern``, ``mask_rate``, ``mask_pattern`` and
    ``block_lengths``, checked (errors name the argument)."""
    rate = float_arg("mask_rate", mask_rate, positive=False)
    if rate >= 1.0:
        raise invalid("mask_rate", "a number in [0, 1)", mask_rate)
    return (
        check_name("val_pattern", val_pattern, HIDE_PATTERNS),
        rate,
        check_name("mask_pattern", mask_pattern, MASK_PATTERNS),
        check_lengths(block_lengths),
    )


def _by_id(val_set: SeriesSet, target_set: SeriesSet) -> SeriesSet:
    """``target_set``'s series in ``val_set``'s order of ids when both are long DataFrames
    (their series are matched by id, not by where each id first appears)."""
    ids, target_ids = val_set.layout.series_ids, target_set.layout.series_ids
    if ids is None or target_ids is None:
        return target_set
    where = {k: i for i, k in enumerate(target_ids)}
    unknown = [k for k in ids if k not in where]
    if unknown:
        raise ValidationError(
            f"X_val_target: expected the series ids of X_val, found none for {unknown[:3]} "
            f"(its ids are e.g. {list(target_ids[:3])})"
        )
    return target_set.subset([where[k] for k in ids])


def hidden_targets(val_set: SeriesSet, target_set: SeriesSet) -> SeriesSet:
    """The entries observed in ``target_set`` and missing in ``val_set`` (NaN elsewhere).

    Raises:
        ShapeError: naming ``X_val_target`` when its series or shapes differ from X_val's.
        ValidationError: naming ``X_val_target`` when its times differ from X_val's, when an
            entry observed in both differs, or when no entry is hidden.
    """
    if target_set.num_series != val_set.num_series:
        raise ShapeError(
            f"X_val_target: expected {val_set.num_series} series (as X_val), found "
            f"{target_set.num_series}"
        )
    names, target_names = list(val_set.feature_names), list(target_set.feature_names)
    if val_set.layout.names_given and target_set.layout.names_given and names != target_names:
        raise ValidationError(
            f"X_val_target: expected the features of X_val {names}, found {target_names}"
        )
    target_set = _by_id(val_set, target_set)
    held = []
    differ: list[tuple[int, int, int]] = []  # (series, step, feature) observed in both, unequal
    for i, (v, t, vt, tt) in enumerate(
        zip(val_set.values, val_set.times, target_set.values, target_set.times)
    ):
        if vt.shape != v.shape:
            raise ShapeError(
                f"X_val_target: expected series {i} of shape {v.shape} (as in X_val), found "
                f"{vt.shape}"
            )
        if not np.array_equal(t, tt):
            raise ValidationError(
                f"X_val_target: expected the times of X_val in series {i}, found other times"
            )
        both = ~np.isnan(v) & ~np.isnan(vt)
        differ.extend((i, int(k), int(d)) for k, d in np.argwhere(both & (v != vt)))
        held.append(np.where(np.isnan(v), vt, np.nan))
    if differ:
        i, k, d = differ[0]
        ids = val_set.layout.series_ids
        series = f"series {i}" + (f" (id {ids[i]!r})" if ids is not None else "")
        raise ValidationError(
            f"X_val_target: expected the values of X_val where both are observed, found "
            f"{len(differ)} that differ, the first {float(target_set.values[i][k, d])!r} "
            f"against {float(val_set.values[i][k, d])!r} in {series}, step {k}, feature "
            f"{d} ({str(val_set.feature_names[d])!r}); X_val_target is X_val with its "
            "missing entries filled in"
        )
    out = target_set.with_values(held)
    if out.num_observed == 0:
        raise ValidationError(
            "X_val_target: expected values at entries that are missing in X_val (the hidden "
            "ground truth to score), found none"
        )
    return out


def _agree(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` and ``b`` (same shape) hold equal values wherever both are observed,
    and both are observed somewhere."""
    both = ~np.isnan(a) & ~np.isnan(b)
    return bool(both.any()) and np.array_equal(a[both], b[both])


def trained_targets(train_set: SeriesSet, val_set: SeriesSet, targets: SeriesSet) -> int:
    """How many hidden validation entries (``targets``, aligned with ``val_set``) are
    observed in the training data: in a series of ``X`` that is the same series as one of
    ``X_val`` (long DataFrames: the same id, with equal values wherever both are observed
    at the times both hold, so a separate validation split whose ids restart at 0 does not
    match; else at the same position, of the same shape and times, with equal values
    wherever both are observed), at the same time and feature."""
    ids, train_ids = val_set.layout.series_ids, train_set.layout.series_ids
    if ids is not None and train_ids is not None:
        where = {k: i for i, k in enumerate(train_ids)}
        candidates = [(j, where[k]) for j, k in enumerate(ids) if k in where]
    else:
        candidates = [
            (j, j)
            for j in range(min(val_set.num_series, train_set.num_series))
            if val_set.values[j].shape == train_set.values[j].shape
            and np.array_equal(val_set.times[j], train_set.times[j])
        ]
    count = 0
    for j, i in candidates:
        _, at_val, at_train = np.intersect1d(
            val_set.times[j], train_set.times[i], return_indices=True
        )
        trained = train_set.values[i][at_train]
        if _agree(val_set.values[j][at_val], trained):
            held = ~np.isnan(targets.values[j][at_val])
            count += int((held & ~np.isnan(trained)).sum())
    return count


def validation_split(
    train_set: SeriesSet,
    val_set: SeriesSet | None,
    target_set: SeriesSet | None,
    *,
    pattern: str,
    fraction: float,
    lengths: tuple[int, int],
    seed: int,
    windows: bool = False,
) -> tuple[SeriesSet, tuple[SeriesSet, SeriesSet] | None]:
    """(training input, (validation input, validation targets) or None).

    None leaves the validation split to the fit session (points, ``val_fraction``).
    Entries held out of the training series (no ``val_set``) are missing from the returned
    training input: cut into windows afterwards, every window that holds such an entry
    lacks it.

    Args:
        train_set: the training series.
        val_set: ``X_val`` or None.
        target_set: ``X_val_target`` (needs ``val_set``) or None.
        pattern: ``"points"``, ``"blocks"`` or ``"steps"`` (for hold-outs made here).
        fraction: share of observed entries to hold out.
        lengths: (shortest, longest) block length.
        seed: the estimator's seed.
        windows: the training series are cut into windows after this split: points held
            out of them are drawn here, of the whole series (in one process, the draws
            the fit session would make of them), not by the session of each window.
    """
    if target_set is not None:
        if val_set is None:
            raise ValidationError("X_val_target: expected X_val as well (the model's input)")
        held = hidden_targets(val_set, target_set)
        trained = trained_targets(train_set, val_set, held)
        if trained:
            warnings.warn(
                f"X_val_target: expected its hidden entries (missing in X_val) to be missing "
                f"in the training data X too, found {trained} of its {held.num_observed} "
                "observed in X, in the same series: the model trains on the entries that "
                "choose its epoch and calibrate its intervals; hide them in X as well "
                "(fit(X_masked, X_val=X_masked, X_val_target=X_true))",
                UserWarning,
                stacklevel=4,  # the caller of GPVAE.fit (via fit_inputs)
            )
        return train_set, (val_set, held)
    whole_points = pattern == "points" and windows and val_set is None
    if fraction <= 0 or not (pattern in RUN_PATTERNS or whole_points):
        return train_set, None
    source = val_set if val_set is not None else train_set
    if whole_points:  # the session's draws (seed_for(seed, 10)), on the whole series
        kept, held = source.hold_out(fraction, seed=seed_for(seed, 10))
    else:
        kept, held = hold_out_blocks(
            source, fraction, lengths, seed=seed_for(seed, 13), pattern=pattern
        )
        if held.num_observed == 0:
            return train_set, None
    if val_set is None:
        return kept, (kept, held)  # the training input loses the held-out blocks
    return train_set, (kept, held)
