"""Hiding observed entries: validation hold-outs of a SeriesSet and training masks of a batch.

Three shapes of hiding, used in two places:

- ``"points"``: every observed entry is hidden independently with probability ``rate``.
- ``"blocks"``: runs of consecutive time steps of one feature are hidden, each run's length
  drawn uniformly from ``lengths = (shortest, longest)``; runs start at random steps until
  about ``rate`` of the observed entries are hidden (the gaps of sensor outages, of a lab
  value not measured for a day).
- ``"steps"``: runs of consecutive whole time steps, every feature hidden, each run's length
  drawn from ``lengths`` in the same way (the gaps of a recorder that was off: no feature
  seen for a while). A model fills such a gap with none of the other features to lean on,
  so its errors there are larger than in a block of one feature, and intervals calibrated
  on blocks of one feature are too narrow for it.

:func:`hold_out_blocks` splits a :class:`~gpvae.data.SeriesSet` into the kept input and the
held-out targets (validation on hidden ground truth when the user's gaps are blocks; the
``"points"`` hold-out is :meth:`SeriesSet.hold_out`). :func:`hide_mask` draws the (B, N, D)
mask of entries to hide from the encoder at one training step (artificial missingness, as in
SAITS's masked-imputation task).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gpvae.data.interpolate import site_order
from gpvae.data.series import SeriesSet
from gpvae.errors import ValidationError
from gpvae.rng import batch_rand, batch_randint

__all__ = [
    "HIDE_PATTERNS",
    "MASK_PATTERNS",
    "RUN_PATTERNS",
    "block_mask",
    "check_lengths",
    "hide_mask",
    "hold_out_blocks",
    "run_mask",
    "step_mask",
]

#: The shapes of hiding.
HIDE_PATTERNS = ("points", "blocks", "steps")
"""Shapes of held-out validation entries."""
RUN_PATTERNS = ("blocks", "steps")
"""The shapes that hide runs of ``block_lengths`` steps (of one feature, or of every feature)."""
MASK_PATTERNS = ("points", "blocks", "steps", "sites")
"""Shapes of training's artificial missingness (``sites``: whole sites of a space x time
field, the kriging task)."""


def check_lengths(lengths: object, name: str = "block_lengths") -> tuple[int, int]:
    """``(shortest, longest)`` block lengths as ints with 1 <= shortest <= longest.

    Raises:
        ValidationError: naming ``name``.
    """
    try:
        lo, hi = (int(v) for v in lengths)  # type: ignore[attr-defined]
        ok = all(float(v) == int(v) for v in lengths)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        ok, lo, hi = False, 0, 0
    if not ok or not 1 <= lo <= hi:
        raise ValidationError(
            f"{name}: expected (shortest, longest) integers with 1 <= shortest <= longest, "
            f"found {lengths!r}"
        )
    return lo, hi


def block_mask(
    observed: np.ndarray, rate: float, lengths: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """(T, D) bool: runs of one feature covering about ``rate`` of the observed entries."""
    T, D = observed.shape
    target = rate * observed.sum()
    hide = np.zeros_like(observed)
    if target <= 0:
        return hide
    for _ in range(100 * T * D):  # bounded: each try covers at least one step
        if (hide & observed).sum() >= target:
            break
        length = int(rng.integers(lengths[0], lengths[1] + 1))
        d = int(rng.integers(D))
        start = int(rng.integers(max(T - length, 0) + 1))
        hide[start : start + length, d] = True
    return hide


def step_mask(
    observed: np.ndarray, rate: float, lengths: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """(T, D) bool: runs of whole steps (every feature) covering about ``rate`` of the
    observed entries, each run's length drawn uniformly from ``lengths``; the run that
    reaches ``rate`` ends there (but is at least ``lengths[0]`` long), since a run of whole
    steps covers many entries and would overshoot."""
    T = observed.shape[0]
    target = rate * observed.sum()
    steps = np.zeros(T, dtype=bool)
    if target <= 0:
        return np.zeros_like(observed)
    per_step = observed.sum(axis=1)
    covered = 0
    for _ in range(100 * T):  # bounded: each try covers at least one step
        if covered >= target:
            break
        length = int(rng.integers(lengths[0], lengths[1] + 1))
        start = int(rng.integers(max(T - length, 0) + 1))
        new = np.where(steps[start : start + length], 0, per_step[start : start + length])
        reach = np.flatnonzero(covered + np.cumsum(new) >= target)
        if len(reach):  # the last run: up to the step that reaches the target
            length = max(int(reach[0]) + 1, lengths[0])
        steps[start : start + length] = True
        covered += int(new[:length].sum())  # new: the run's steps not covered before
    return np.broadcast_to(steps[:, None], observed.shape).copy()


def run_mask(
    pattern: str,
    observed: np.ndarray,
    rate: float,
    lengths: tuple[int, int],
    rng: np.random.Generator,
) -> np.ndarray:
    """(T, D) bool: :func:`block_mask` for ``"blocks"``, :func:`step_mask` for ``"steps"``."""
    if pattern == "blocks":
        return block_mask(observed, rate, lengths, rng)
    if pattern == "steps":
        return step_mask(observed, rate, lengths, rng)
    raise ValidationError(f"pattern: expected one of {RUN_PATTERNS}, found {pattern!r}")


def hold_out_blocks(
    series: SeriesSet,
    fraction: float,
    lengths: tuple[int, int],
    *,
    seed: int,
    pattern: str = "blocks",
) -> tuple[SeriesSet, SeriesSet]:
    """Hide blocks of consecutive steps of one feature (``pattern="blocks"``) or of every
    feature (``"steps"``), about ``fraction`` of each series' observed entries; every
    series keeps at least one observed entry.

    Args:
        series: the series (any scale).
        fraction: share of observed entries to hide, in [0, 1).
        lengths: (shortest, longest) block length in steps.
        seed: seed of the numpy generator.
        pattern: ``"blocks"`` or ``"steps"``.

    Returns:
        (kept, held) as :meth:`SeriesSet.hold_out`: ``kept`` has the hidden entries set to
        NaN, ``held`` has only the hidden entries observed.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValidationError(f"fraction: expected a number in [0, 1), found {fraction}")
    lengths = check_lengths(lengths)
    if pattern not in RUN_PATTERNS:
        raise ValidationError(f"pattern: expected one of {RUN_PATTERNS}, found {pattern!r}")
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for v in series.values:
        observed = ~np.isnan(v)
        hide = run_mask(pattern, observed, fraction, lengths, rng) & observed
        if observed.any() and not (observed & ~hide).any():
            first = np.argwhere(observed)[0]
            hide[first[0], first[1]] = False  # keep one observed entry
        kept.append(np.where(hide, np.nan, v))
        held.append(np.where(hide, v, np.nan))
    return series.with_values(kept), series.with_values(held)


def hide_mask(
    observed: Tensor,
    rate: float,
    pattern: str,
    lengths: tuple[int, int],
    generator: torch.Generator | None = None,
    x: Tensor | None = None,
) -> Tensor:
    """(B, N, D) bool: entries to hide from the encoder at one training step.

    ``"points"`` hides each entry with probability ``rate``; ``"sites"`` (a space x time field,
    ``x`` with sites and time) hides every entry of a site in a series with probability
    ``rate``; ``"blocks"`` starts a run at each
    (step, feature) with probability ``rate / mean length`` and hides it for a length drawn
    from ``lengths`` (runs may overlap, so slightly less than ``rate`` is hidden);
    ``"steps"`` does the same with one draw per step, and its runs hide every feature. Only
    observed entries are returned True.

    Args:
        observed: (B, N, D) bool.
        rate: share of entries to hide, in [0, 1).
        pattern: ``"points"``, ``"blocks"``, ``"steps"`` or ``"sites"``.
        lengths: (shortest, longest) run length for ``"blocks"`` and ``"steps"``.
        generator: source of randomness (on ``observed``'s device).
        x: (B, N, d) index points, or None. With ``d > 1`` (a space x time field) a run
            covers consecutive steps of one site (:func:`~gpvae.data.interpolate.site_order`)
            instead of consecutive points along N.
    """
    device = observed.device
    # inside gpvae.rng.batch_rows (a process's rows of a distributed batch) the draws are
    # those of the whole batch at these rows, as in one process
    u = batch_rand(observed.shape, 0, generator, device)
    if pattern == "points":
        return (u < rate) & observed
    if pattern == "sites":
        order = None if x is None else site_order(x)
        if order is None:
            raise ValidationError(
                "mask_pattern: 'sites' hides whole sites of a space x time field, expected "
                "index points with sites and time (a fit with coords=...), found a 1-D index"
            )
        perm, site = order
        first = torch.ones_like(site, dtype=torch.bool)  # the draw of a site's first point
        first[:, 1:] = site[:, 1:] != site[:, :-1]
        drawn = u[..., 0].gather(1, perm)
        pick = torch.zeros_like(first)
        pick[first] = drawn[first] < rate
        steps = torch.arange(site.shape[1], device=device).expand_as(site)
        head = torch.cummax(torch.where(first, steps, 0), dim=1).values  # site's first point
        chosen = pick.gather(1, head)
        hide = torch.zeros_like(chosen).scatter_(1, perm, chosen)
        return hide[..., None] & observed
    if pattern not in RUN_PATTERNS:
        raise ValidationError(f"pattern: expected one of {MASK_PATTERNS}, found {pattern!r}")
    lo, hi = lengths
    if pattern == "blocks":  # a run of one feature may start at each (step, feature)
        start = u < rate / (0.5 * (lo + hi))  # (B, N, D)
        run = batch_randint(lo, hi + 1, observed.shape, 0, generator, device)
    else:  # "steps": a run of every feature may start at each step
        start = u[..., :1] < rate / (0.5 * (lo + hi))  # (B, N, 1)
        run = batch_randint(lo, hi + 1, (*observed.shape[:2], 1), 0, generator, device)
    order = None if x is None else site_order(x)
    if order is not None:  # runs along each site's own steps
        perm, site = order
        idx = perm[..., None].expand(start.shape)
        start, run = start.gather(1, idx), run.gather(1, idx)
    hide = torch.zeros_like(start)
    N = observed.shape[1]
    for k in range(min(hi, N)):  # a run started at step n covers n .. n + length - 1
        hit = start[:, : N - k] & (run[:, : N - k] > k)
        if order is not None:  # ... while step n + k is the same site's
            hit &= (site[:, k:] == site[:, : N - k])[..., None]
        hide[:, k:] |= hit
    if order is not None:
        hide = torch.zeros_like(hide).scatter_(1, idx, hide)
    return hide.expand(observed.shape) & observed
