"""Per-feature linear interpolation between each entry's observed neighbours, on tensors.

:func:`neighbour_interpolation` is what the model's ``interp_skip`` mixes with its decoder
output: every entry gets the value of its own feature interpolated linearly in time
between the nearest observed entries of that feature **strictly** before and after it. An
observed entry is therefore predicted from its neighbours, never from itself (leave one
out), so the same rule holds for the entries the model sees and for those it must impute,
and training on observed entries scores honest predictions.

Index points with several columns (a space x time field: sites in the first ``d - 1``
columns, time last, as :func:`gpvae.data.spatial.field_batch` lays them out) are grouped by
site: an entry's neighbours are its own site's entries, in time. :func:`site_order` gives
that grouping, also used to keep training's hidden blocks within one site.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["neighbour_interpolation", "site_order", "space_interpolation"]


def site_order(x: Tensor) -> tuple[Tensor, Tensor] | None:
    """The order that puts each site's points together, in their order along N.

    Args:
        x: (B, N, d) index points; a site is a distinct value of the first ``d - 1``
            columns (time is the last column).

    Returns:
        None for ``d == 1`` (one site: the order along N). Else ``(perm, site)``, each
        (B, N) long: ``perm[b]`` lists series b's points site by site (stable in N), and
        ``site[b, k]`` is the site id of point ``perm[b, k]``.
    """
    B, N, d = x.shape
    if d == 1:
        return None
    _, ids = torch.unique(x[..., :-1].detach().reshape(B * N, d - 1), dim=0, return_inverse=True)
    ids = ids.reshape(B, N)
    steps = torch.arange(N, device=x.device)
    perm = torch.argsort(ids * N + steps, dim=1)
    return perm, ids.gather(1, perm)


def neighbour_interpolation(
    x: Tensor, y: Tensor, observed: Tensor, valid: Tensor | None = None, grad: bool = False
) -> tuple[Tensor, Tensor]:
    """Each entry of feature d interpolated from feature d's observed neighbours, and how far
    the nearer neighbour is.

    Linear in the last index coordinate ``x[..., -1]`` (time) between the nearest observed
    entries strictly before and strictly after the step; with only one of them, its value
    (constant extrapolation); with none, 0 (the feature mean of standardised data). With
    ``d > 1`` the neighbours are those of the same site (the first ``d - 1`` columns, see
    :func:`site_order`). Padding steps (``valid`` False) count as unobserved. Values at
    unobserved entries of ``y`` are never read (they may be NaN). No gradient flows to ``x``,
    nor to ``y`` unless ``grad`` (the value is linear in the observed values of ``y``).

    Args:
        x: (B, N, d) index points, time increasing along N within each site's valid steps.
        y: (B, N, D) values.
        observed: (B, N, D) bool.
        valid: (B, N) bool, or None (all steps valid).
        grad: let the gradient flow from ``value`` to the observed values of ``y``.

    Returns:
        ``(value, gap)``, each (B, N, D) of ``y``'s dtype: the interpolated value and the
        distance in ``x[..., -1]`` to the nearer observed neighbour (inf with none).
    """
    obs = observed if valid is None else observed & valid[..., None]
    B, N, D = y.shape
    yv = torch.where(obs, y, torch.zeros_like(y))
    yv = yv if grad else yv.detach()
    t = x[..., -1:].detach().to(y.dtype).expand(B, N, D)  # (B, N, D)
    order = site_order(x)
    if order is None:
        return _interpolate_runs(t, yv, obs, None)
    perm, site = order
    idx = perm[..., None].expand(B, N, D)
    value, gap = _interpolate_runs(t.gather(1, idx), yv.gather(1, idx), obs.gather(1, idx), site)
    back = torch.empty_like(value).scatter_(1, idx, value)
    return back, torch.empty_like(gap).scatter_(1, idx, gap)


def _interpolate_runs(
    t: Tensor, yv: Tensor, obs: Tensor, site: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The interpolation along N; with ``site`` (B, N), only between points of one site
    (each site's points contiguous along N)."""
    B, N, D = yv.shape
    steps = torch.arange(N, device=yv.device).view(1, N, 1).expand(B, N, D)
    # last observed step at or before n, then strictly before (shift by one); -1 if none
    prev_incl = torch.where(obs, steps, torch.full_like(steps, -1)).cummax(dim=1).values
    prev = torch.cat([torch.full_like(prev_incl[:, :1], -1), prev_incl[:, :-1]], dim=1)
    # first observed step at or after n, then strictly after; N if none
    after = torch.where(obs, steps, torch.full_like(steps, N)).flip(1)
    next_incl = after.cummin(dim=1).values.flip(1)
    nxt = torch.cat([next_incl[:, 1:], torch.full_like(next_incl[:, :1], N)], dim=1)
    has_prev, has_next = prev >= 0, nxt < N
    p, q = prev.clamp(0, N - 1), nxt.clamp(0, N - 1)
    if site is not None:  # a neighbour found in another site's run is no neighbour
        own = site[..., None].expand(B, N, D)
        has_prev = has_prev & (own.gather(1, p) == own)
        has_next = has_next & (own.gather(1, q) == own)
    y_p, y_q = yv.gather(1, p), yv.gather(1, q)
    t_p, t_q = t.gather(1, p), t.gather(1, q)
    both = has_prev & has_next
    span = torch.where(both, t_q - t_p, torch.ones_like(t))
    w = torch.where(both, (t - t_p) / span, torch.zeros_like(t))
    value = torch.where(both, y_p + w * (y_q - y_p), torch.zeros_like(yv))
    value = torch.where(has_prev & ~has_next, y_p, value)
    value = torch.where(has_next & ~has_prev, y_q, value)
    inf = torch.full_like(t, math.inf)
    gap = torch.minimum(torch.where(has_prev, t - t_p, inf), torch.where(has_next, t_q - t, inf))
    return value, gap


def space_interpolation(
    x: Tensor,
    y: Tensor,
    observed: Tensor,
    valid: Tensor | None = None,
    power: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Each entry of feature d by inverse distance weighting (weights ``distance ** -p_d``)
    of feature d at the *other* sites observed at the same time, and how far those sites are.

    For index points of a space x time field (sites in the first ``d - 1`` columns, time
    last): the neighbours of point n are the points of the same series with the same time
    and a different site whose feature is observed (and valid). The point's own value is
    never used (leave one out). Values at unobserved entries of ``y`` are never read. No
    gradient flows to ``x`` or ``y``. Cost: every pair of points of a series, O(N^2 D).

    Args:
        x: (B, N, d) index points, ``d >= 2``.
        y: (B, N, D) values.
        observed: (B, N, D) bool.
        valid: (B, N) bool, or None (all points valid).
        power: (D,) the power ``p_d`` of each feature's weights (0: the plain mean of the
            other sites; large: the nearest site), or None (2 for every feature).

    Returns:
        ``(value, dist)``, each (B, N, D) of ``y``'s dtype: the weighted value (0 without a
        neighbour) and the neighbours' effective distance ``(sum_j d_j^-2)^-1/2`` (the
        distance itself with one neighbour, shorter with more; inf without a neighbour),
        whatever the power.
    """
    if x.shape[-1] < 2:
        raise ValueError(f"x: expected sites and time (d >= 2 columns), found d = {x.shape[-1]}")
    obs = observed if valid is None else observed & valid[..., None]
    xs, t = x[..., :-1].detach().to(y.dtype), x[..., -1].detach()
    yv = torch.where(obs, y, torch.zeros_like(y)).detach()
    d2 = torch.cdist(xs, xs).square()  # (B, N, N)
    same = (t[..., :, None] == t[..., None, :]) & (d2 > 0)
    if valid is not None:
        same = same & valid[..., None, :]
    safe = torch.where(same, d2, torch.ones_like(d2))
    zero = torch.zeros_like(d2)
    w = torch.where(same, 1.0 / safe, zero)
    o = obs.to(y.dtype)
    num, den = w @ (yv * o), w @ o  # (B, N, D)
    if power is not None:  # one weight matrix per distinct power, for its features
        power = power.detach().to(y.dtype)
        if power.shape != (y.shape[-1],):
            raise ValueError(f"power: expected shape ({y.shape[-1]},), found {tuple(power.shape)}")
        num_p, den_p = torch.empty_like(num), torch.empty_like(den)
        for p in torch.unique(power).tolist():
            cols = power == p
            if p == 2.0:  # the weights of the effective distance, already applied
                num_p[..., cols], den_p[..., cols] = num[..., cols], den[..., cols]
                continue
            w_p = torch.where(same, safe.pow(-p / 2), zero)
            num_p[..., cols] = w_p @ (yv * o)[..., cols]
            den_p[..., cols] = w_p @ o[..., cols]
    else:
        num_p, den_p = num, den
    has = den > 0
    value = torch.where(
        has, num_p / torch.where(has, den_p, torch.ones_like(den_p)), torch.zeros_like(num)
    )
    dist = torch.where(has, den.clamp_min(1e-30).rsqrt(), torch.full_like(den, math.inf))
    return value, dist
