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

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn.functional import softplus

from gpvae.kernels.base import Kernel
from gpvae.kernels.matern import Matern12, Matern32, Matern52
from gpvae.kernels.packing import packed_of

__all__ = ["GroupMatrices", "GroupTables", "group_tables", "group_transitions"]

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
    raw_l = _raw(materns, "raw_lengthscale")  # (G,)
    raw_s2 = _raw(materns, "raw_variance")  # (G,)
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


def _raw(kernels: Sequence[Kernel], name: str) -> Tensor:
    """The (G,) raw hyper-parameter ``name`` of one-element-parameter kernels: the prior's
    (L,) tensor when they are its packed channels in order (:mod:`gpvae.kernels.packing`),
    its entries for some of them, else their parameters stacked."""
    packed = packed_of(kernels)
    if packed is None:
        return _stacked([getattr(k, name) for k in kernels])
    params, index = packed
    full = params[name]
    if index == list(range(full.shape[0])):
        return full
    return full[torch.tensor(index, device=full.device)]


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


# --------------------------------------------------------------------------------------
# float64 tables of Matern groups in one autograd Function (the compiled paths' tables)


class GroupTables(NamedTuple):
    """:class:`GroupMatrices` and the two Cholesky factors the compiled paths need.

    Attributes:
        mats: A, Q (K, G, m, m), Pinf (G, m, m), H (G, 1, m).
        chol_q: (K, G, m, m) lower factors of ``Q + jitter`` (as
            :func:`gpvae.gp._kalman.process_noise_factors`), or None when they are not known
            (computed, and their failure reported, by whoever needs them).
        chol0: (G, m, m) lower factors of Pinf, or None likewise.
    """

    mats: GroupMatrices
    chol_q: Tensor | None
    chol0: Tensor | None


def group_tables(kernels: Sequence[Kernel], steps: Tensor) -> GroupTables:
    """:func:`group_transitions` with the Cholesky factors of ``Q + jitter`` and Pinf.

    For Matern kernels of one order and float64 steps on the CPU (the compiled paths' tables)
    everything comes out of one autograd Function (:class:`_MaternTables`: closed forms in
    numpy on (K, G) arrays, whose operations cost a fraction of torch's on such small
    tensors, and one backward node), instead of some sixty small torch operations, the two
    Cholesky factorisations and their backward nodes; its values are those of
    :func:`group_transitions` and :func:`gpvae.gp._kalman.process_noise_factors` to rounding.
    Otherwise :func:`group_transitions`, with no factors.
    """
    kinds = {type(k) for k in kernels}
    fast = (
        len(kinds) == 1
        and kinds <= {Matern12, Matern32, Matern52}
        and steps.dtype == torch.float64
        and steps.device.type == "cpu"
    )
    if not fast:
        return GroupTables(group_transitions(kernels, steps), None, None)
    materns = [k for k in kernels if isinstance(k, (Matern12, Matern32, Matern52))]
    p = materns[0].order
    raw_l = _raw(materns, "raw_lengthscale")  # (G,)
    raw_s2 = _raw(materns, "raw_variance")  # (G,)
    if raw_l.device.type != "cpu" or raw_s2.device.type != "cpu":
        return GroupTables(group_transitions(kernels, steps), None, None)
    # lam and s2 as in _matern (in the parameters' dtype, then float64): the same values
    lam = (math.sqrt(2 * p + 1) / softplus(raw_l)).to(torch.float64)  # (G,)
    s2 = softplus(raw_s2).to(torch.float64)  # (G,)
    tangents = torch.is_grad_enabled() and (lam.requires_grad or s2.requires_grad)
    flags: list[bool] = []
    A, Q, Pinf, chol_q, chol0 = _MaternTables.apply(lam, s2, steps.detach(), p, tangents, flags)
    G, m = lam.shape[0], p + 1
    h = np.zeros((G, 1, m))  # built in numpy: a tenth of torch's zeros and item assignment
    h[:, 0, 0] = 1.0
    H = torch.from_numpy(h)
    ok_q, ok_0 = flags
    mats = GroupMatrices(A=A, Q=Q, Pinf=Pinf, H=H)
    return GroupTables(mats, chol_q if ok_q else None, chol0 if ok_0 else None)


#: As :func:`gpvae.gp._kalman.process_noise_factors`: the jitter of Q is this times diag(Pinf).
_Q_JITTER = torch.finfo(torch.float64).eps ** 0.75


def _pinf_np(p: int, lam: Any, s2: Any) -> tuple[Any, Any, Any]:
    """Pinf (G, m, m) of Matern-(p + 1/2) kernels (as :func:`_matern_pinf`) and its
    derivatives in lam and s2."""
    G, m = lam.shape[0], p + 1
    P, dl, ds = np.zeros((G, m, m)), np.zeros((G, m, m)), np.zeros((G, m, m))
    P[:, 0, 0], ds[:, 0, 0] = s2, 1.0
    if p == 1:
        l2 = lam * lam
        P[:, 1, 1], ds[:, 1, 1], dl[:, 1, 1] = s2 * l2, l2, 2.0 * s2 * lam
    elif p == 2:
        l2, l4 = lam * lam, lam**4
        a = s2 * l2 / 3.0
        for i, j in ((0, 2), (2, 0)):
            P[:, i, j], ds[:, i, j], dl[:, i, j] = -a, -l2 / 3.0, -2.0 * s2 * lam / 3.0
        P[:, 1, 1], ds[:, 1, 1], dl[:, 1, 1] = a, l2 / 3.0, 2.0 * s2 * lam / 3.0
        P[:, 2, 2], ds[:, 2, 2], dl[:, 2, 2] = s2 * l4, l4, 4.0 * s2 * lam**3
    return P, dl, ds


def _cholesky_np(S: Any, dS: Sequence[Any]) -> tuple[Any, list[Any], bool]:
    """Lower Cholesky factors of S (..., m, m) (the unblocked LAPACK recursion) and their
    derivatives along the directions dS; whether every factorisation succeeded (a pivot
    that is not > 0, or NaN, fails as in LAPACK)."""
    m = S.shape[-1]
    L = np.zeros_like(S)
    dL = [np.zeros_like(S) for _ in dS]
    ok = True
    for j in range(m):
        d = S[..., j, j] - (L[..., j, :j] ** 2).sum(-1)
        ok = ok and bool((d > 0).all())
        ljj = np.sqrt(np.maximum(d, 0.0))
        L[..., j, j] = ljj
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / ljj
            for t, dLt in zip(dS, dL):
                dd = t[..., j, j] - 2.0 * (L[..., j, :j] * dLt[..., j, :j]).sum(-1)
                dLt[..., j, j] = 0.5 * dd * inv
            for i in range(j + 1, m):
                L[..., i, j] = (S[..., i, j] - (L[..., i, :j] * L[..., j, :j]).sum(-1)) * inv
                for t, dLt in zip(dS, dL):
                    cross = dLt[..., i, :j] * L[..., j, :j] + L[..., i, :j] * dLt[..., j, :j]
                    num = t[..., i, j] - cross.sum(-1) - L[..., i, j] * dLt[..., j, j]
                    dLt[..., i, j] = num * inv
    return L, dL, ok


def _matern32_np(
    lam: Any, s2: Any, dt: Any, decay: Any, tangents: bool
) -> tuple[tuple[Any, ...], Any, list[bool]]:
    """:class:`_MaternTables` for m = 2 in closed form, entry by entry on (K, G) arrays: Q,
    its jitter and Pinf are s2 times their values at s2 = 1, so the factors scale by
    sqrt(s2) and only the derivatives in lam need carrying."""
    K, G = dt.shape
    l2 = lam * lam
    x = lam * dt
    dtl2 = l2 * dt
    a00, a01, a10, a11 = decay * (1.0 + x), decay * dt, decay * -dtl2, decay * (1.0 - x)
    # Q at s2 = 1: Pinf - A Pinf A^T with Pinf = diag(1, lam^2)
    q00 = 1.0 - (a00 * a00 + a01 * a01 * l2)
    q01 = -(a00 * a10 + a01 * a11 * l2)
    q11 = l2 - (a10 * a10 + a11 * a11 * l2)
    # factors of Q + jitter (2 x 2 Cholesky, reciprocal scaling as LAPACK)
    s00, s11 = q00 + _Q_JITTER, q11 + _Q_JITTER * l2
    ok_q = bool((s00 > 0).all())
    with np.errstate(divide="ignore", invalid="ignore"):
        c00 = np.sqrt(s00)
        inv0 = 1.0 / c00
        c10 = q01 * inv0
        r11 = s11 - c10 * c10
        ok_q = ok_q and bool((r11 > 0).all())
        c11 = np.sqrt(r11)
    rs2, rl = np.sqrt(s2), np.sqrt(s2 * l2)
    ok_0 = bool((s2 > 0).all()) and bool((s2 * l2 > 0).all())
    A = np.empty((K, G, 2, 2))
    A[..., 0, 0], A[..., 0, 1], A[..., 1, 0], A[..., 1, 1] = a00, a01, a10, a11
    Qn = np.empty((K, G, 2, 2))
    Qn[..., 0, 0], Qn[..., 1, 1] = s2 * q00, s2 * q11
    Qn[..., 0, 1] = Qn[..., 1, 0] = s2 * q01
    CQ = np.zeros((K, G, 2, 2))
    CQ[..., 0, 0], CQ[..., 1, 0], CQ[..., 1, 1] = rs2 * c00, rs2 * c10, rs2 * c11
    P, C0 = np.zeros((G, 2, 2)), np.zeros((G, 2, 2))
    P[:, 0, 0], P[:, 1, 1] = s2, s2 * l2
    C0[:, 0, 0], C0[:, 1, 1] = rs2, rl
    outs = (A, Qn, P, CQ, C0)
    if not tangents:
        return outs, None, [ok_q, ok_0]
    # derivatives in lam (dt fixed: where it is capped, A and its derivative are 0)
    e_dt = decay * dt
    d00, d01, d10, d11 = -e_dt * x, -e_dt * dt, e_dt * (dtl2 - 2.0 * lam), -e_dt * (2.0 - x)
    lam2 = 2.0 * lam
    dq00 = -(2.0 * a00 * d00 + 2.0 * a01 * d01 * l2 + a01 * a01 * lam2)
    dq01 = -(d00 * a10 + a00 * d10 + (d01 * a11 + a01 * d11) * l2 + a01 * a11 * lam2)
    dq11 = lam2 - (2.0 * a10 * d10 + 2.0 * a11 * d11 * l2 + a11 * a11 * lam2)
    with np.errstate(divide="ignore", invalid="ignore"):
        dc00 = 0.5 * dq00 * inv0
        dc10 = (dq01 - c10 * dc00) * inv0
        dc11 = 0.5 * (dq11 + _Q_JITTER * lam2 - 2.0 * c10 * dc10) / c11
        half = 0.5 / rs2
    dA = np.empty((K, G, 2, 2))
    dA[..., 0, 0], dA[..., 0, 1], dA[..., 1, 0], dA[..., 1, 1] = d00, d01, d10, d11
    dQ_l, dQ_s = np.empty((K, G, 2, 2)), np.empty((K, G, 2, 2))
    dQ_l[..., 0, 0], dQ_l[..., 1, 1] = s2 * dq00, s2 * dq11
    dQ_l[..., 0, 1] = dQ_l[..., 1, 0] = s2 * dq01
    dQ_s[..., 0, 0], dQ_s[..., 1, 1] = q00, q11
    dQ_s[..., 0, 1] = dQ_s[..., 1, 0] = q01
    dCQ_l, dCQ_s = np.zeros((K, G, 2, 2)), np.zeros((K, G, 2, 2))
    dCQ_l[..., 0, 0], dCQ_l[..., 1, 0], dCQ_l[..., 1, 1] = rs2 * dc00, rs2 * dc10, rs2 * dc11
    dCQ_s[..., 0, 0], dCQ_s[..., 1, 0], dCQ_s[..., 1, 1] = half * c00, half * c10, half * c11
    dP_l, dP_s = np.zeros((G, 2, 2)), np.zeros((G, 2, 2))
    dP_l[:, 1, 1] = s2 * lam2
    dP_s[:, 0, 0], dP_s[:, 1, 1] = 1.0, l2
    dC0_l, dC0_s = np.zeros((G, 2, 2)), np.zeros((G, 2, 2))
    dC0_l[:, 1, 1] = rs2  # d sqrt(s2 lam^2) / d lam for lam > 0
    dC0_s[:, 0, 0], dC0_s[:, 1, 1] = half, half * lam
    tang = ((dA, None), (dQ_l, dQ_s), (dP_l, dP_s), (dCQ_l, dCQ_s), (dC0_l, dC0_s))
    return outs, tang, [ok_q, ok_0]


@functools.cache
def _tables_loops() -> Any:
    """The compiled closed forms (:mod:`gpvae.gp._tables_loops`), imported on first use;
    None when numba cannot be imported."""
    from gpvae.gp._compiled import _numba, loops_module  # _compiled imports numba lazily

    if not _numba():  # pragma: no cover - numba is a dependency
        return None
    return loops_module("_tables_loops")


@functools.cache
def _matern32_loop() -> Any:
    """:func:`gpvae.gp._tables_loops.matern32`, each call without the cyclic garbage
    collector (:func:`gpvae.gp._compiled.without_gc`); None when numba cannot be imported.
    Its first call loads it from numba's cache and, being the first compiled loop of a
    Matern-3/2 fit, pays numba's one-time start (numba imports its implementations and
    fills its registries: some 10^5 long-lived objects), which the collector would walk
    again and again, as for the fused pass's loops."""
    from gpvae.gp._compiled import without_gc

    loops = _tables_loops()
    if loops is None:  # pragma: no cover - numba is a dependency
        return None
    return without_gc(loops.matern32)


def _matern32(
    lam: Any, s2: Any, dt: Any, decay: Any, tangents: bool
) -> tuple[tuple[Any, ...], Any, list[bool]]:
    """:func:`_matern32_np`'s values (bit for bit), compiled when numba is there (one loop
    over (K, G) instead of ~150 numpy operations: ~0.3 ms less per training step)."""
    loop = _matern32_loop()
    if loop is None:  # pragma: no cover - numba is a dependency
        return _matern32_np(lam, s2, dt, decay, tangents)
    outs, t, ok_q, ok_0 = loop(lam, s2, dt, decay, _Q_JITTER, tangents)
    if not tangents:
        return outs, None, [ok_q, ok_0]
    dA, dQ_l, dQ_s, dP_l, dP_s, dCQ_l, dCQ_s, dC0_l, dC0_s = t
    tang = ((dA, None), (dQ_l, dQ_s), (dP_l, dP_s), (dCQ_l, dCQ_s), (dC0_l, dC0_s))
    return outs, tang, [ok_q, ok_0]


class _MaternTables(torch.autograd.Function):
    """``(lam (G,), s2 (G,), steps (K,); p) -> (A, Q (K, G, m, m), Pinf (G, m, m), chol_q
    (K, G, m, m), chol0 (G, m, m))`` in float64, by the closed forms of :func:`_matern` and
    :func:`gpvae.gp._kalman.process_noise_factors`, evaluated in numpy. Every entry depends
    on its channel's (lam, s2) only, so the forward pass carries the derivatives of every
    output along lam and along s2 (forward mode), and the backward pass is two weighted sums.
    ``flags`` receives whether the two factorisations succeeded (their values are undefined
    where not)."""

    @staticmethod
    def forward(
        ctx: Any,
        lam_t: Tensor,
        s2_t: Tensor,
        steps_t: Tensor,
        p: int,
        tangents: bool,
        flags: list[bool],
    ) -> tuple[Tensor, ...]:
        lam, s2 = lam_t.detach().numpy(), s2_t.detach().numpy()
        steps = steps_t.numpy()
        m = p + 1
        dt = np.minimum(steps[:, None], _DECAY_MAX / lam)  # (K, G)
        decay = np.exp(-lam * dt)  # (K, G)
        ctx.set_materialize_grads(False)
        if m == 2:
            outs, ctx.tangents, flags[:] = _matern32(lam, s2, dt, decay, tangents)
            return tuple(torch.from_numpy(t) for t in outs)
        P, dP_l, dP_s = _pinf_np(p, lam, s2)
        zero = np.zeros((*dt.shape, m, m))
        if m == 1:
            e2 = -2.0 * lam * dt
            A = decay[..., None, None] + zero
            Q = (-P * np.expm1(e2)[..., None, None]).reshape(zero.shape)
            dA_l = (-dt * decay)[..., None, None] + zero
            dQ_l = (2.0 * dt * np.exp(e2))[..., None, None] * P
            dQ_s = -np.expm1(e2)[..., None, None] + zero
        else:
            eye = np.eye(m)
            # F + lam I (nilpotent) and its derivative in lam, as in _matern
            nil = np.broadcast_to(np.eye(m, k=1), (lam.shape[0], m, m)).copy()
            dnil = np.zeros_like(nil)
            for k in range(m):
                nil[:, m - 1, k] = -math.comb(m, k) * lam ** (m - k)
                dnil[:, m - 1, k] = -math.comb(m, k) * (m - k) * lam ** (m - k - 1)
            nil += lam[:, None, None] * eye
            dnil += eye
            series, dseries = eye + zero, zero.copy()
            term, dterm = np.broadcast_to(eye, nil.shape), np.zeros_like(nil)
            for k in range(1, m):
                dterm = (dterm @ nil + term @ dnil) / k
                term = term @ nil / k  # nil^k / k!
                dtk = (dt**k)[..., None, None]
                series = series + term * dtk
                dseries = dseries + dterm * dtk
            dec = decay[..., None, None]
            A = dec * series
            dA_l = dec * dseries - (dt[..., None, None] * dec) * series
            At = A.swapaxes(-1, -2)
            Qr = P - A @ P @ At
            Q = 0.5 * (Qr + Qr.swapaxes(-1, -2))
            X = dA_l @ P @ At
            dQr_l = dP_l - (X + A @ dP_l @ At + X.swapaxes(-1, -2))
            dQr_s = dP_s - A @ dP_s @ At
            dQ_l = 0.5 * (dQr_l + dQr_l.swapaxes(-1, -2))
            dQ_s = 0.5 * (dQr_s + dQr_s.swapaxes(-1, -2))
        idx = np.arange(m)
        jit = _Q_JITTER * P[:, idx, idx]  # (G, m)
        S = Q.copy()
        S[..., idx, idx] += jit
        dirs_q = []
        if tangents:
            dS_l, dS_s = dQ_l.copy(), dQ_s + 0.0
            dS_l[..., idx, idx] += _Q_JITTER * dP_l[:, idx, idx]
            dS_s[..., idx, idx] += _Q_JITTER * dP_s[:, idx, idx]
            dirs_q = [dS_l, dS_s]
        CQ, dCQ, ok_q = _cholesky_np(S, dirs_q)
        C0, dC0, ok_0 = _cholesky_np(P, [dP_l, dP_s] if tangents else [])
        flags[:] = [ok_q, ok_0]
        ctx.tangents = None
        if tangents:
            ctx.tangents = ((dA_l, None), (dQ_l, dQ_s), (dP_l, dP_s), tuple(dCQ), tuple(dC0))
        return tuple(torch.from_numpy(t) for t in (A, Q, P, CQ, C0))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        G = ctx.tangents[2][0].shape[0]
        g_l, g_s = np.zeros(G), np.zeros(G)
        for g, (t_l, t_s) in zip(grads, ctx.tangents):
            if g is None:
                continue
            gn = g.numpy()
            axes = tuple(i for i in range(gn.ndim) if i != gn.ndim - 3)  # all but G
            g_l += (gn * t_l).sum(axes)
            if t_s is not None:
                g_s += (gn * t_s).sum(axes)
        return torch.from_numpy(g_l), torch.from_numpy(g_s), None, None, None, None
