"""Sizes of the parts of a random or chronological split of a data set."""

from __future__ import annotations

import numpy as np

from gpvae.errors import invalid

__all__ = ["split_sizes"]


def split_sizes(n: int, fractions: tuple[float, ...]) -> list[int]:
    """Part sizes for a split of ``n`` items (shared by random and chronological splits)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise invalid("n", "a non-negative int", repr(n))
    try:
        fr = np.asarray(fractions, dtype=float)
    except (TypeError, ValueError):
        raise invalid("fractions", "a sequence of floats", repr(fractions)) from None
    if fr.ndim != 1 or len(fr) < 1 or np.any(~np.isfinite(fr)) or np.any(fr < 0):
        raise invalid("fractions", "a non-empty sequence of non-negative floats", fractions)
    if abs(fr.sum() - 1.0) > 1e-6:
        raise invalid("fractions", "values summing to 1", f"{fractions} (sum {fr.sum():g})")
    sizes = [int(np.floor(f * n + 1e-9)) for f in fr[:-1]]
    sizes.append(int(n) - sum(sizes))
    return sizes
