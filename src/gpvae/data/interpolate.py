"""Per-feature linear interpolation between each entry's observed neighbours, on tensors.

:func:`neighbour_interpolation` is what the model's ``interp_skip`` mixes with its decoder
output: every entry gets the value of its own feature interpolated linearly in time
between the nearest observed entries of that feature **strictly** before and after it. An
observed entry is therefore predicted from its neighbours, never from itself (leave one
out), so the same rule holds for the entries the model sees and for those it must impute,
and training on observed entries scores honest predictions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["neighbour_interpolation"]


def neighbour_interpolation(
    x: Tensor, y: Tensor, observed: Tensor, valid: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Each entry of feature d interpolated from feature d's observed neighbours, and how far
    the nearer neighbour is.

    Linear in the first index coordinate ``x[..., 0]`` between the nearest observed entries
    strictly before and strictly after the step; with only one of them, its value (constant
    extrapolation); with none, 0 (the feature mean of standardised data). Padding steps
    (``valid`` False) count as unobserved. Values at unobserved entries of ``y`` are never
    read (they may be NaN). No gradient flows to ``x`` or ``y``.

    Args:
        x: (B, N, d) index points, increasing along N within the valid steps.
        y: (B, N, D) values.
        observed: (B, N, D) bool.
        valid: (B, N) bool, or None (all steps valid).

    Returns:
        ``(value, gap)``, each (B, N, D) of ``y``'s dtype: the interpolated value and the
        distance in ``x[..., 0]`` to the nearer observed neighbour (inf with none).
    """
    obs = observed if valid is None else observed & valid[..., None]
    B, N, D = y.shape
    yv = torch.where(obs, y, torch.zeros_like(y)).detach()
    t = x[..., :1].detach().to(y.dtype).expand(B, N, D)  # (B, N, D)
    steps = torch.arange(N, device=y.device).view(1, N, 1).expand(B, N, D)
    # last observed step at or before n, then strictly before (shift by one); -1 if none
    prev_incl = torch.where(obs, steps, torch.full_like(steps, -1)).cummax(dim=1).values
    prev = torch.cat([torch.full_like(prev_incl[:, :1], -1), prev_incl[:, :-1]], dim=1)
    # first observed step at or after n, then strictly after; N if none
    after = torch.where(obs, steps, torch.full_like(steps, N)).flip(1)
    next_incl = after.cummin(dim=1).values.flip(1)
    nxt = torch.cat([next_incl[:, 1:], torch.full_like(next_incl[:, :1], N)], dim=1)
    has_prev, has_next = prev >= 0, nxt < N
    p, q = prev.clamp(0, N - 1), nxt.clamp(0, N - 1)
    y_p, y_q = yv.gather(1, p), yv.gather(1, q)
    t_p, t_q = t.gather(1, p), t.gather(1, q)
    both = has_prev & has_next
    span = torch.where(both, t_q - t_p, torch.ones_like(t))
    w = torch.where(both, (t - t_p) / span, torch.zeros_like(t))
    value = torch.where(both, y_p + w * (y_q - y_p), torch.zeros_like(y))
    value = torch.where(has_prev & ~has_next, y_p, value)
    value = torch.where(has_next & ~has_prev, y_q, value)
    inf = torch.full_like(t, math.inf)
    gap = torch.minimum(torch.where(has_prev, t - t_p, inf), torch.where(has_next, t_q - t, inf))
    return value, gap
