"""Artificial missingness for imputation benchmarks: hide observed entries, score on them.

Both patterns of the benchmark protocol (``DESIGN.md``, "Benchmark protocols"):

- ``hide_points``: missing completely at random (MCAR) points, a fixed fraction of the
  *observed* entries.
- ``hide_blocks``: random runs of consecutive steps of one feature (5-24 steps by default)
  until about the requested fraction of observed entries is hidden.

Only entries that were observed can be hidden (entries already NaN are never counted), the
input is never modified, and all randomness comes from a ``numpy.random.Generator`` (or a
seed for one), so a seed fixes the mask.
"""

from __future__ import annotations

import numpy as np

from gpvae.errors import InputTypeError, ShapeError, ValidationError, invalid

__all__ = ["hidden_rate", "hide_blocks", "hide_points"]


def _check_X(X: np.ndarray) -> np.ndarray:
    """Validate an (n, T, D) float array with NaN for missing; returns it as an ndarray."""
    if not isinstance(X, np.ndarray):
        raise InputTypeError(f"X: expected a numpy array of shape (n, T, D), found {type(X)}")
    if X.ndim != 3:
        raise ShapeError(f"X: expected a 3-D array of shape (n, T, D), found shape {X.shape}")
    if not np.issubdtype(X.dtype, np.floating):
        raise InputTypeError(f"X: expected a float array (NaN for missing), found {X.dtype}")
    if np.isinf(X).any():
        raise ValidationError("X: expected finite values or NaN, found +-inf entries")
    return X


def _check_rate(rate: float) -> float:
    """A fraction in [0, 1]."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating, np.integer)):
        raise invalid("rate", "a float in [0, 1]", repr(rate))
    value = float(rate)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise invalid("rate", "a float in [0, 1]", value)
    return value


def _generator(rng: np.random.Generator | int) -> np.random.Generator:
    """A Generator from a Generator or an int seed."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise InputTypeError(f"rng: expected a numpy.random.Generator or an int seed, found {rng!r}")


def hidden_rate(X: np.ndarray, hidden_mask: np.ndarray) -> float:
    """Achieved fraction of hidden entries among the entries observed in ``X``.

    Args:
        X: (n, T, D) the array *before* hiding, NaN for missing.
        hidden_mask: (n, T, D) bool, True where an observed entry was hidden.

    Returns:
        ``hidden_mask.sum() / (~isnan(X)).sum()`` (NaN when nothing is observed).
    """
    _check_X(X)
    mask = np.asarray(hidden_mask, dtype=bool)
    if mask.shape != X.shape:
        raise ShapeError(f"hidden_mask: expected shape {X.shape}, found {mask.shape}")
    observed = int(np.count_nonzero(~np.isnan(X)))
    return float(np.count_nonzero(mask)) / observed if observed else float("nan")


def hide_points(
    X: np.ndarray, rate: float, rng: np.random.Generator | int
) -> tuple[np.ndarray, np.ndarray]:
    """Hide a fraction of the observed entries uniformly at random (MCAR points).

    Exactly ``round(rate * n_observed)`` observed entries are drawn without replacement.

    Args:
        X: (n, T, D) float array, NaN for missing. Not modified.
        rate: fraction of the observed entries to hide, in [0, 1].
        rng: a ``numpy.random.Generator`` or an int seed.

    Returns:
        ``(X_hidden, hidden_mask)``: a copy of ``X`` (n, T, D) with the hidden entries set to
        NaN, and the (n, T, D) bool mask that is True exactly at the entries that were
        observed in ``X`` and are NaN in ``X_hidden``.

    Raises:
        ShapeError, InputTypeError, ValidationError: bad ``X``, ``rate`` or ``rng``.
    """
    _check_X(X)
    rate = _check_rate(rate)
    gen = _generator(rng)
    observed = np.flatnonzero(~np.isnan(X))
    count = round(rate * len(observed))
    chosen = gen.choice(observed, size=count, replace=False) if count else observed[:0]
    hidden_mask = np.zeros(X.shape, dtype=bool)
    hidden_mask.flat[chosen] = True
    X_hidden = X.copy()
    X_hidden[hidden_mask] = np.nan
    return X_hidden, hidden_mask


def hide_blocks(
    X: np.ndarray,
    rate: float,
    rng: np.random.Generator | int,
    min_len: int = 5,
    max_len: int = 24,
) -> tuple[np.ndarray, np.ndarray]:
    """Hide random blocks of consecutive steps of one feature.

    Blocks are drawn one at a time: a series and a feature uniformly, a length uniformly in
    ``[min_len, max_len]`` (capped at T), and a start uniformly among the positions where
    the block fits. Every still-observed entry inside the block is hidden. Drawing stops as
    soon as at least ``round(rate * n_observed)`` entries are hidden, so the achieved rate
    can exceed ``rate`` by up to ``max_len`` entries (use ``hidden_rate`` to report it).

    Args:
        X: (n, T, D) float array, NaN for missing. Not modified.
        rate: target fraction of the observed entries to hide, in [0, 1].
        rng: a ``numpy.random.Generator`` or an int seed.
        min_len: shortest block, in steps (>= 1).
        max_len: longest block, in steps (>= min_len).

    Returns:
        ``(X_hidden, hidden_mask)`` as in ``hide_points``.

    Raises:
        ShapeError, InputTypeError, ValidationError: bad arguments.
    """
    _check_X(X)
    rate = _check_rate(rate)
    for name, val in (("min_len", min_len), ("max_len", max_len)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise invalid(name, "a positive int", repr(val))
    if max_len < min_len:
        raise invalid("max_len", f"an int >= min_len ({min_len})", max_len)
    gen = _generator(rng)
    n, T, D = X.shape
    # (n, D, T) layout so that a block is one contiguous slice.
    remaining = np.ascontiguousarray(~np.isnan(X).transpose(0, 2, 1))
    hidden = np.zeros_like(remaining)
    target = round(rate * int(np.count_nonzero(remaining)))
    # Blocks landing on never-observed stretches hide nothing; bound the work generously.
    max_draws = 1000 + 200 * n * D * (T // max(1, min(min_len, T)) + 1)
    done, draws, batch = 0, 0, 4096
    while done < target:
        series = gen.integers(0, n, size=batch)
        feature = gen.integers(0, D, size=batch)
        length = np.minimum(gen.integers(min_len, max_len + 1, size=batch), T)
        start = (gen.random(size=batch) * (T - length + 1)).astype(np.int64)
        for i, d, s, length_k in zip(
            series.tolist(), feature.tolist(), start.tolist(), length.tolist()
        ):
            segment = remaining[i, d, s : s + length_k]
            k = int(np.count_nonzero(segment))
            if k:
                hidden[i, d, s : s + length_k] |= segment
                segment[:] = False
                done += k
                if done >= target:
                    break
        draws += batch
        if draws > max_draws and done < target:
            raise ValidationError(
                f"rate: expected a rate reachable with blocks of {min_len}-{max_len} steps, "
                f"found only {done} of {target} entries hidden after {draws} blocks"
            )
    hidden_mask = hidden.transpose(0, 2, 1).copy()  # back to (n, T, D)
    X_hidden = X.copy()
    X_hidden[hidden_mask] = np.nan
    return X_hidden, hidden_mask
