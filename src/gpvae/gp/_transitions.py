"""State-space matrices of a group of channels at a set of distinct steps.

The markov backend needs, for every channel of a group (kernels sharing a state dimension
m), the transition ``A = expm(F dt)`` and process noise ``Q = Pinf - A Pinf A^T`` at every
step ``dt`` of the batch. On a regular grid the B x N steps take one or two distinct values
(the grid step, and 0 at the start and on padding), so :func:`group_transitions` evaluates
them once per distinct step and the backend gathers them (a table of K entries instead of
B x N evaluations, and K Cholesky factors of the process noise instead of B x N).

Channels whose kernels are all Matern kernels of one order (the usual case: one kernel
copied per latent channel) are evaluated together from their stacked hyper-parameters with
the closed forms of :mod:`gpvae.kernels.matern`, a few batched operations for all G
channels instead of G calls of :meth:`~gpvae.kernels.base.Kernel.transition`; any other
state-space kernel (sums, periodic forms, ...) goes through its own ``transition`` and
``state_space``. Both give the same values (tested in float64 against each kernel's own).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn.functional import softplus

from gpvae.kernels.base import Kernel
from gpvae.kernels.matern import Matern12, Matern32, Matern52

__all__ = ["GroupMatrices", "group_transitions"]

#: As ``gpvae.kernels.matern._DECAY_MAX``: lam * dt is capped where exp(-lam dt) underflows.
_DECAY_MAX = 800.0


class GroupMatrices(NamedTuple):
    """State-space matrices of G channels at K distinct steps.

    Attributes:
        A, Q: (K, G, m, m) transitions and process noise at each step.
        Pinf: (G, m, m) stationary covariances.
        H: (G, 1, m) measurement rows.
    """

    A: Tensor
    Q: Tensor
    Pinf: Tensor
    H: Tensor


def group_transitions(kernels: Sequence[Kernel], steps: Tensor) -> GroupMatrices:
    """The state-space matrices of ``kernels`` (G of them, one state dimension m) at ``steps``.

    Args:
        kernels: G kernels with a state-space form and the same state dimension.
        steps: (K,) non-negative steps.

    Returns:
        :class:`GroupMatrices` in the promoted dtype of ``steps`` and the parameters.
    """
    kinds = {type(k) for k in kernels}
    if len(kinds) == 1 and kinds <= {Matern12, Matern32, Matern52}:
        return _matern(kernels, steps)
    return _generic(kernels, steps)


def _generic(kernels: Sequence[Kernel], steps: Tensor) -> GroupMatrices:
    """Each kernel's own ``transition`` and ``state_space``, stacked over channels."""
    As, Qs, Ps, Hs = [], [], [], []
    for k in kernels:
        A, Q = k.transition(steps)  # (K, m, m)
        ss = k.state_space()
        As.append(A)
        Qs.append(Q)
        Ps.append(ss.Pinf)
        Hs.append(ss.H)
    dtype = As[0].dtype
    return GroupMatrices(
        A=torch.stack(As, dim=1),  # (K, G, m, m)
        Q=torch.stack(Qs, dim=1),
        Pinf=torch.stack(Ps).to(dtype),  # (G, m, m)
        H=torch.stack(Hs).to(dtype),  # (G, 1, m)
    )


def _matern(kernels: Sequence[Kernel], steps: Tensor) -> GroupMatrices:
    """Matern kernels of one order, from stacked hyper-parameters (closed forms)."""
    materns = [k for k in kernels if isinstance(k, (Matern12, Matern32, Matern52))]
    p = materns[0].order
    m = p + 1
    raw_l = _stacked([k.raw_lengthscale for k in materns])  # (G,)
    raw_s2 = _stacked([k.raw_variance for k in materns])  # (G,)
    dtype = torch.promote_types(steps.dtype, raw_l.dtype)
    lam = (math.sqrt(2 * p + 1) / softplus(raw_l)).to(dtype)  # (G,)
    s2 = softplus(raw_s2).to(dtype)  # (G,)
    G = lam.shape[0]
    eye = torch.eye(m, dtype=dtype, device=lam.device)
    # F: shift rows above, last row minus the coefficients of (s + lam)^m
    coeffs = torch.stack([-math.comb(m, k) * lam ** (m - k) for k in range(m)], dim=-1)  # (G, m)
    F = torch.cat([eye[1:].expand(G, m - 1, m), coeffs[:, None, :]], dim=1)  # (G, m, m)
    Pinf = _matern_pinf(p, lam, s2)  # (G, m, m)
    nil = F + lam[:, None, None] * eye  # (G, m, m), nilpotent
    dt = torch.minimum(steps.to(dtype)[:, None], _DECAY_MAX / lam)  # (K, G)
    dtb = dt[..., None, None]  # (K, G, 1, 1)
    series = eye.expand(*dt.shape, m, m)  # (K, G, m, m)
    term = eye.expand(G, m, m)
    for k in range(1, m):
        term = term @ nil / k  # nil^k / k!
        series = series + term * dtb**k
    A = torch.exp(-lam[:, None, None] * dtb) * series  # (K, G, m, m)
    if m == 1:
        Q = -Pinf * torch.expm1(-2.0 * lam[:, None, None] * dtb)  # (K, G, 1, 1)
    else:
        Q = Pinf - A @ Pinf @ A.transpose(-1, -2)
        Q = 0.5 * (Q + Q.transpose(-1, -2))
    H = torch.zeros(G, 1, m, dtype=dtype, device=lam.device)
    H[:, 0, 0] = 1.0
    return GroupMatrices(A=A, Q=Q, Pinf=Pinf, H=H)


def _stacked(params: Sequence[Tensor]) -> Tensor:
    """One-element parameters stacked into a (G,) tensor. Scalar (0-d) parameters go in as
    they are: a reshape per parameter would add a view and its backward node per channel and
    step (about 0.5 ms per training step for 16 channels' two parameters, measured)."""
    return torch.stack([p if p.dim() == 0 else p.reshape(()) for p in params])


def _matern_pinf(p: int, lam: Tensor, s2: Tensor) -> Tensor:
    """Stationary state covariances (G, m, m) of Matern-(p + 1/2) kernels."""
    if p == 0:
        return s2[:, None, None]
    if p == 1:
        return torch.diag_embed(torch.stack([s2, s2 * lam**2], dim=-1))
    a = s2 * lam**2 / 3.0
    zero = torch.zeros_like(s2)
    rows = [
        torch.stack([s2, zero, -a], dim=-1),
        torch.stack([zero, a, zero], dim=-1),
        torch.stack([-a, zero, s2 * lam**4], dim=-1),
    ]
    return torch.stack(rows, dim=-2)  # (G, 3, 3)
