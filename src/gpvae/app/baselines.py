"""Naive imputation baselines: per-feature mean, last observation carried forward, linear.

Every function takes an (n, T, D) float array with NaN for missing and returns an array of
the same shape and dtype with no NaN, in which the observed entries are bit-for-bit those of
the input. Entries with nothing to go on fall back to the per-feature mean of the observed
entries (of ``train_X`` when given, else of ``X``); a feature never observed there gets 0
(the mean of a standardised feature). The input is never modified.
"""

from __future__ import annotations

import numpy as np

from gpvae.errors import InputTypeError, ShapeError, ValidationError

__all__ = ["feature_means", "impute_linear", "impute_locf", "impute_mean"]


def _check_X(X: np.ndarray, name: str = "X") -> np.ndarray:
    """An (n, T, D) float array; integer input is converted to float64."""
    if not isinstance(X, np.ndarray):
        raise InputTypeError(f"{name}: expected a numpy array of shape (n, T, D), found {type(X)}")
    if X.ndim != 3:
        raise ShapeError(f"{name}: expected a 3-D array of shape (n, T, D), found {X.shape}")
    if np.issubdtype(X.dtype, np.integer) or X.dtype == np.bool_:
        X = X.astype(np.float64)
    elif not np.issubdtype(X.dtype, np.floating):
        raise InputTypeError(f"{name}: expected a float array (NaN for missing), found {X.dtype}")
    if np.isinf(X).any():
        raise ValidationError(f"{name}: expected finite values or NaN, found +-inf entries")
    return X


def feature_means(X: np.ndarray) -> np.ndarray:
    """Per-feature mean of the observed entries over all series and steps.

    Args:
        X: (n, T, D) float array, NaN for missing.

    Returns:
        (D,) float64 means; 0 for a feature with no observed entry.
    """
    X = _check_X(X)
    observed = ~np.isnan(X)
    counts = observed.sum(axis=(0, 1))
    sums = np.where(observed, X, 0.0).sum(axis=(0, 1), dtype=np.float64)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def _fallback(X: np.ndarray, train_X: np.ndarray | None) -> np.ndarray:
    """(D,) per-feature means of ``train_X`` (or ``X``), checked against X's D."""
    if train_X is None:
        return feature_means(X)
    train_X = _check_X(train_X, "train_X")
    if train_X.shape[2] != X.shape[2]:
        raise ShapeError(
            f"train_X: expected {X.shape[2]} features (last axis) like X, "
            f"found shape {train_X.shape}"
        )
    return feature_means(train_X)


def _finish(X: np.ndarray, observed: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Observed entries from X unchanged, the rest from ``filled``, in X's float dtype."""
    out = X.copy()
    out[~observed] = filled[~observed].astype(X.dtype, copy=False)
    return out


def impute_mean(X: np.ndarray, train_X: np.ndarray | None = None) -> np.ndarray:
    """Fill every missing entry with its feature's mean.

    Args:
        X: (n, T, D) float array, NaN for missing.
        train_X: (m, T', D) array whose observed entries give the means (to avoid using test
            data); None uses ``X`` itself.

    Returns:
        (n, T, D) array without NaN; observed entries unchanged. A feature never observed
        (in ``train_X``, or ``X``) is filled with 0.
    """
    X = _check_X(X)
    means = _fallback(X, train_X)
    observed = ~np.isnan(X)
    return _finish(X, observed, np.broadcast_to(means, X.shape))


def _neighbours(observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the previous and next observed step along axis 1 (inclusive).

    Args:
        observed: (n, T, D) bool.

    Returns:
        ``prev``, ``nxt``: (n, T, D) int64; ``prev`` is -1 before the first observation and
        ``nxt`` is T after the last.
    """
    T = observed.shape[1]
    steps = np.arange(T).reshape(1, T, 1)
    prev = np.maximum.accumulate(np.where(observed, steps, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(observed, steps, T)[:, ::-1], axis=1)[:, ::-1]
    return prev, nxt


def impute_locf(X: np.ndarray, train_X: np.ndarray | None = None) -> np.ndarray:
    """Last observation carried forward along time, per series and feature.

    Leading gaps (before a feature's first observation in a series) are filled backwards
    with that first observation; a feature never observed in a series gets the feature
    mean (of ``train_X`` if given, else of ``X``; 0 if never observed there either).

    Args:
        X: (n, T, D) float array, NaN for missing.
        train_X: (m, T', D) array for the mean fallback, or None.

    Returns:
        (n, T, D) array without NaN; observed entries unchanged.
    """
    X = _check_X(X)
    observed = ~np.isnan(X)
    prev, nxt = _neighbours(observed)
    T = X.shape[1]
    source = np.where(prev >= 0, prev, np.minimum(nxt, T - 1))  # (n, T, D)
    filled = np.take_along_axis(X, source, axis=1)
    none = (prev < 0) & (nxt >= T)
    if none.any():
        means = np.broadcast_to(_fallback(X, train_X), X.shape)
        filled = np.where(none, means, filled)
    return _finish(X, observed, filled)


def impute_linear(
    X: np.ndarray,
    times: np.ndarray | None = None,
    train_X: np.ndarray | None = None,
) -> np.ndarray:
    """Linear interpolation in time, per series and feature.

    Between two observations the value is interpolated linearly in ``times`` (so irregular
    spacing is honoured); before the first and after the last observation the nearest
    observation is carried (constant extrapolation); a feature never observed in a series
    gets the feature mean (of ``train_X`` if given, else of ``X``; 0 if never observed).

    Args:
        X: (n, T, D) float array, NaN for missing.
        times: (n, T) or (T,) strictly increasing finite times, or None for 0..T-1.
        train_X: (m, T', D) array for the mean fallback, or None.

    Returns:
        (n, T, D) array without NaN; observed entries unchanged. Interpolation is computed
        in float64 and cast to X's dtype.

    Raises:
        ShapeError: ``times`` does not match X. ValidationError: times not finite or not
            strictly increasing.
    """
    X = _check_X(X)
    n, T, _ = X.shape
    if times is None:
        t = np.broadcast_to(np.arange(T, dtype=np.float64), (n, T))
    else:
        t = np.asarray(times, dtype=np.float64)
        if t.ndim == 1:
            t = np.broadcast_to(t, (n, t.shape[0]))
        if t.shape != (n, T):
            raise ShapeError(f"times: expected shape {(n, T)} or {(T,)}, found {t.shape}")
        if not np.isfinite(t).all():
            raise ValidationError("times: expected finite values, found NaN or inf")
        if T > 1 and not (np.diff(t, axis=1) > 0).all():
            raise ValidationError(
                "times: expected strictly increasing times along each series, found "
                "repeated or decreasing times"
            )
    observed = ~np.isnan(X)
    prev, nxt = _neighbours(observed)
    has_prev, has_next = prev >= 0, nxt < T
    p = np.where(has_prev, prev, np.minimum(nxt, T - 1))
    q = np.where(has_next, nxt, np.maximum(prev, 0))
    x64 = X.astype(np.float64)
    xp = np.take_along_axis(x64, p, axis=1)
    xq = np.take_along_axis(x64, q, axis=1)
    t3 = np.broadcast_to(t[:, :, None], X.shape)
    tp = np.take_along_axis(t3, p, axis=1)
    tq = np.take_along_axis(t3, q, axis=1)
    between = has_prev & has_next & (q > p)
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(between, (t3 - tp) / np.where(between, tq - tp, 1.0), 0.0)
    filled = np.where(between, xp + weight * (xq - xp), np.where(has_prev, xp, xq))
    none = ~has_prev & ~has_next
    if none.any():
        means = np.broadcast_to(_fallback(X, train_X), X.shape)
        filled = np.where(none, means, filled)
    return _finish(X, observed, filled)
