"""The dominant periods of a set of series, from their periodogram (to initialise periods).

Each series is put on a regular grid of its median step (observed entries interpolated
linearly, each feature standardised, a straight line removed), and the periodograms of all
features and series are summed on a common frequency grid. Peaks are taken from periods of
2 steps up to a third of the longest series (a period needs a few repetitions to be seen).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["dominant_periods"]

#: Longest grid the periodogram is computed on (longer series are cut to their last part).
MAX_GRID = 1 << 16


def _regular(values: np.ndarray, times: np.ndarray, step: float) -> np.ndarray:
    """(G, D) standardised, detrended values on the regular grid of ``step`` (NaN-free)."""
    grid = np.arange(times[0], times[-1] + 0.5 * step, step)[-MAX_GRID:]
    out = np.zeros((len(grid), values.shape[1]))
    for j in range(values.shape[1]):
        ok = np.isfinite(values[:, j])
        if ok.sum() < 4:
            continue
        col = np.interp(grid, times[ok], values[ok, j])
        coef = np.polyfit(np.arange(len(grid)), col, 1)
        col = col - np.polyval(coef, np.arange(len(grid)))
        sd = col.std()
        out[:, j] = col / sd if sd > 0 else 0.0
    return out


def dominant_periods(
    values: Sequence[np.ndarray], times: Sequence[np.ndarray], count: int = 1
) -> list[float]:
    """The ``count`` strongest periods, in the times' units, strongest first.

    Args:
        values: n series (T_i, D) with NaN for missing.
        times: their sorted (T_i,) times.
        count: how many periods; peaks closer than a factor 1.5 to a stronger one are
            skipped (so a harmonic of the main period counts only when it is that far).

    Returns:
        ``count`` periods (fewer when the data show fewer; empty for series too short).
    """
    step = float(np.median(np.concatenate([np.diff(t) for t in times if len(t) > 1])))
    longest = max(float(t[-1] - t[0]) for t in times)
    n_fft = int(min(MAX_GRID, 2 ** np.ceil(np.log2(longest / step + 1))))
    freqs = np.fft.rfftfreq(n_fft, d=step)  # cycles per time unit
    power = np.zeros(len(freqs))
    for v, t in zip(values, times):
        if len(t) < 8:
            continue
        reg = _regular(np.asarray(v, dtype=np.float64), np.asarray(t, dtype=np.float64), step)
        spec = np.abs(np.fft.rfft(reg, n=n_fft, axis=0)) ** 2  # (F, D)
        power += spec.sum(axis=1)
    with np.errstate(divide="ignore"):
        periods = np.where(freqs > 0, 1.0 / np.maximum(freqs, 1e-300), np.inf)
    usable = (periods >= 2 * step) & (periods <= longest / 3) & (power > 0)
    order = np.argsort(-np.where(usable, power, -np.inf))
    found: list[float] = []
    for i in order:
        if not usable[i] or len(found) == count:
            break
        p = float(periods[i])
        if all(max(p / q, q / p) >= 1.5 for q in found):
            found.append(_refine(power, freqs, int(i)))
    return found


def _refine(power: np.ndarray, freqs: np.ndarray, i: int) -> float:
    """The period at a peak, refined by a parabola through the log power around it."""
    if 0 < i < len(power) - 1 and min(power[i - 1], power[i + 1]) > 0:
        a, b, c = np.log(power[i - 1 : i + 2])
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
        f = freqs[i] + float(np.clip(shift, -0.5, 0.5)) * (freqs[1] - freqs[0])
        return float(1.0 / f)
    return float(1.0 / freqs[i])
