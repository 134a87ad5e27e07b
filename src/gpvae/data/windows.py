"""Cutting long series into overlapping training windows.

A single long series gives one optimiser step per epoch; cut into windows it gives many,
each a series of its own. Windows of ``window`` steps start every ``stride`` steps, and the
last one ends at the series' end, so every step is in at least one window.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpvae.arguments import int_arg
from gpvae.errors import ValidationError

__all__ = ["cut_windows", "window_starts"]


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Starts of windows of ``window`` steps every ``stride`` steps over ``0..length-1``,
    the last one flush with the end (a series no longer than ``window`` is one window)."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def cut_windows(
    values: Sequence[np.ndarray],
    times: Sequence[np.ndarray],
    window: int,
    stride: int | None = None,
    skip_empty: bool = True,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Cut every series into overlapping windows.

    Args:
        values: n series, each (T_i, D) with NaN for missing.
        times: their (T_i,) times.
        window: window length in steps (>= 2).
        stride: steps between window starts (None: ``window // 2``, half-overlapping).
        skip_empty: leave out windows with no observed value.

    Returns:
        ``(values, times)``: lists of (w, D) and (w,) arrays, series after series.
    """
    window = int_arg("window", window, minimum=2)
    stride = max(1, window // 2) if stride is None else int_arg("stride", stride)
    if len(values) != len(times):
        raise ValidationError(
            f"times: expected one time array per series ({len(values)}), found {len(times)}"
        )
    out_v: list[np.ndarray] = []
    out_t: list[np.ndarray] = []
    for v, t in zip(values, times):
        v, t = np.asarray(v), np.asarray(t)
        for start in window_starts(len(t), window, stride):
            piece = v[start : start + window]
            if skip_empty and np.isnan(piece).all():
                continue
            out_v.append(piece)
            out_t.append(t[start : start + window])
    return out_v, out_t
