"""KL and joint draws of the Markov posterior in one compiled pass per chain (CPU).

A training step asks the structured posterior for ``S`` reparameterised joint draws and for
``KL(q || p)``. On the compiled path these are five recursions (covariance filter, mean
filter, the two smoothers and the prior draws), each an autograd Function over all chains,
with full-size intermediates and torch operations between them; at short lengths that
overhead, not the arithmetic, is the cost. Here one autograd Function computes both for a
group of channels with :mod:`gpvae.gp._fused_loops`, a chain at a time, and its backward
pass recomputes each chain before running its adjoint.

The results are those of :class:`gpvae.gp.markov.MarkovGPPosterior` with method
``"compiled"`` (same formulas, float64 inside; equal up to rounding), with the same random
draws for the same generator: the prior noise of each group in group order, then the noise
of the synthetic data, exactly as :meth:`gpvae.gp.markov._Chain.sample` draws them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from gpvae import settings
from gpvae.errors import NumericalError
from gpvae.gp._compiled import _loops as _recursions
from gpvae.gp._compiled import loops_module, without_gc
from gpvae.rng import batch_normal

__all__ = ["release_arenas", "sample_and_kl", "supports_groups"]

_F64 = torch.float64


def _glue() -> Any:
    return loops_module("_fused_loops")  # numba: imported on first use


def _np(t: Tensor, dtype: torch.dtype = _F64) -> Any:
    return t.detach().to(dtype).contiguous().numpy()


def supports_groups(groups: Sequence[Any]) -> bool:
    """Whether the fused pass applies: measurement rows that need no gradient (every
    kernel with a state-space form here has a constant H)."""
    return all(not g.H.requires_grad for g in groups)


#: The error of either fused pass when a predicted state covariance cannot be factorised.
_SINGULAR = (
    "markov backend: a predicted state covariance is singular to working precision; "
    "pseudo-observation variances may be too small for this dtype (try float64 or a "
    "variance floor)"
)


class _SampleKL(torch.autograd.Function):
    """``(A, Q, CQ, Pinf, chol0, mean, var; ix, still, H, inc, eps, e) -> (sample (N, C,
    S), kl (C,))`` for tables A, Q, CQ (K, G, m, m) read through ix (N, B)."""

    @staticmethod
    @without_gc
    def forward(
        ctx: Any,
        A: Tensor,
        Q: Tensor,
        CQ: Tensor,
        Pinf: Tensor,
        chol0: Tensor,
        mean: Tensor,
        var: Tensor,
        ix: Tensor,
        still: Tensor,
        H: Tensor,
        inc: Tensor,
        eps: Tensor,
        e: Tensor,
    ) -> tuple[Tensor, Tensor]:
        N, C = mean.shape
        m, S = eps.shape[-2], eps.shape[-1]
        lp, glue = _recursions.loops(m), _glue()
        a, q, cq, pinf, h = _np(A), _np(Q), _np(CQ), _np(Pinf), _np(H)
        ixn, stilln, incn = ix.numpy(), still.numpy(), inc.numpy()
        varn, epsn, en = _np(var), _np(eps), _np(e)
        S1 = S + 1
        arena, b = _carve("chains-fwd", {
            "y": (N, C), "w": (N, C), "lv": (N, C), "sd": (N, C), "P_pred": (N, C, m, m),
            "P_filt": (N, C, m, m), "gain": (N, C, m), "inv_s": (N, C), "log_s": (N, C),
            "sgain": (max(N - 1, 0), C, m, m), "state0": (C, m, S), "states": (N, C, m, S),
            "D": (N, C, S1), "m_filt": (N, C, m, S1), "innov": (N, C, S1),
            "m_smooth": (N, C, m, S1), "P_smooth": (N, C, m, m),
        }, ())  # fmt: skip
        ctx.lease = _Lease("chains-fwd", arena)  # the saved buffers are views of the arena
        y, w, lv, sd = b["y"], b["w"], b["lv"], b["sd"]
        glue.precisions(_np(mean), varn, incn, y, w, lv, sd)
        P_pred, P_filt, gain = b["P_pred"], b["P_filt"], b["gain"]
        inv_s, log_s, sgain = b["inv_s"], b["log_s"], b["sgain"]
        bad = lp.cov_filter_fwd(
            a, q, ixn, pinf, h, w, lv, stilln, P_pred, P_filt, gain, inv_s, log_s, sgain
        )
        if bad:
            raise NumericalError(_SINGULAR)
        state0, states = b["state0"], b["states"]
        glue.start(_np(chol0), epsn[0], state0)
        lp.linear_fwd(a, cq, ixn, state0, epsn[1:], states)
        D = b["D"]
        glue.data(h, incn, y, sd, states, en, D)
        m_filt, innov = b["m_filt"], b["innov"]
        lp.mean_filter_fwd(a, ixn, h, gain, D, m_filt, innov)
        m_smooth, P_smooth = b["m_smooth"], b["P_smooth"]
        lp.smooth_mean_fwd(a, ixn, sgain, m_filt, m_smooth)
        lp.smooth_cov_fwd(sgain, P_filt, P_pred, P_smooth)
        kl, sample = torch.empty(C, dtype=_F64), torch.empty(N, C, S, dtype=_F64)
        glue.finish(
            h, incn, varn, y, lv, inv_s, log_s, innov, states, m_smooth, P_smooth,
            kl.numpy(), sample.numpy(),
        )  # fmt: skip
        ctx.arrays = (a, q.shape, ixn, stilln, h, incn, varn, epsn, en, y, w, sd, P_pred,
                      P_filt, gain, inv_s, sgain, states, m_filt, innov, m_smooth,
                      P_smooth)  # fmt: skip
        return sample, kl

    @staticmethod
    @once_differentiable
    @without_gc
    def backward(ctx: Any, g_sample: Tensor, g_kl: Tensor) -> tuple[Tensor | None, ...]:
        (a, table, ixn, stilln, h, incn, varn, epsn, en, y, w, sd, P_pred, P_filt, gain,
         inv_s, sgain, states, m_filt, innov, m_smooth, P_smooth) = ctx.arrays  # fmt: skip
        N, C, m, S = states.shape
        lp, glue = _recursions.loops(m), _glue()
        G = table[1]
        g_A, g_Q, g_CQ = (torch.zeros(table, dtype=_F64) for _ in range(3))
        g_Pinf, g_chol0 = torch.zeros(G, m, m, dtype=_F64), torch.zeros(G, m, m, dtype=_F64)
        g_mean, g_var = torch.zeros(N, C, dtype=_F64), torch.zeros(N, C, dtype=_F64)
        gA, gmean, gvar = g_A.numpy(), g_mean.numpy(), g_var.numpy()
        S1 = S + 1
        zeroed = ("g_sgain", "g_filt", "g_pred", "g_mfilt", "g_H", "g_gain", "g_D", "g_state0",
                  "g_w", "g_lv")  # fmt: skip
        scratch, b = _carve("chains-bwd", {
            "g_states": (N, C, m, S), "g_ms": (N, C, m, S1), "g_Ps": (N, C, m, m),
            "g_inv_s": (N, C), "g_log_s": (N, C), "g_innov": (N, C, S1),
            "g_sgain": sgain.shape, "g_filt": (N, C, m, m), "g_pred": (N, C, m, m),
            "g_mfilt": (N, C, m, S1), "g_H": (G, m), "g_gain": (N, C, m), "g_D": (N, C, S1),
            "g_state0": (C, m, S), "g_w": (N, C), "g_lv": (N, C),
        }, zeroed)  # fmt: skip
        g_states, g_ms = b["g_states"], b["g_ms"]
        g_Ps, g_inv_s, g_log_s = b["g_Ps"], b["g_inv_s"], b["g_log_s"]
        g_innov = b["g_innov"]
        glue.finish_bwd(
            h, incn, varn, y, inv_s, innov, states, m_smooth, P_smooth, _np(g_kl),
            _np(g_sample), gmean, gvar, g_states, g_ms, g_Ps, g_inv_s, g_log_s, g_innov,
        )  # fmt: skip
        g_sgain, g_filt, g_pred = b["g_sgain"], b["g_filt"], b["g_pred"]
        lp.smooth_cov_bwd(sgain, P_smooth, P_pred, g_Ps, g_sgain, g_filt, g_pred)
        g_mfilt = b["g_mfilt"]
        lp.smooth_mean_bwd(a, ixn, sgain, m_filt, m_smooth, g_ms, gA, g_sgain, g_mfilt)
        g_H, g_gain, g_D = b["g_H"], b["g_gain"], b["g_D"]
        lp.mean_filter_bwd(a, ixn, h, gain, m_filt, innov, g_mfilt, g_innov, gA, g_H, g_gain, g_D)
        glue.data_bwd(h, incn, sd, en, g_D, gmean, gvar, g_states)
        g_state0 = b["g_state0"]
        lp.linear_bwd(a, ixn, epsn[1:], states, g_states, gA, g_CQ.numpy(), g_state0)
        glue.start_bwd(epsn[0], g_state0, g_chol0.numpy())
        g_w, g_lv = b["g_w"], b["g_lv"]
        lp.cov_filter_bwd(
            a, ixn, h, w, stilln, P_pred, P_filt, sgain, g_pred, g_filt, g_gain, g_inv_s,
            g_log_s, g_sgain, gA, g_Q.numpy(), g_Pinf.numpy(), g_H, g_w, g_lv,
        )  # fmt: skip
        glue.precisions_bwd(varn, incn, g_w, g_lv, gvar)
        _release("chains-bwd", scratch)
        return (g_A, g_Q, g_CQ, g_Pinf, g_chol0, g_mean, g_var) + (None,) * 6


def _soa() -> Any:
    return loops_module("_soa_loops")  # numba: imported on first use


#: Free arenas of both fused passes by (kind, length), most recently used last: a training
#: step's buffers are reused by the next step instead of being fresh pages. Large buffers
#: are mapped afresh by the C library at every allocation (above its mmap threshold, at
#: most 32 MiB), and their page faults cost as much as the arithmetic.
_ARENAS: dict[tuple[str, int], list[Any]] = {}
_ARENA_KEYS = 4  # lengths kept (at most two free arenas of each kind and length)
#: Longer arenas (float64 entries; 64 MiB) are kept one per kind (the last one released)
#: until :func:`release_arenas` (called at the end of a training loop): a long series' step
#: needs the same buffers again at the next step, but they should not outlive the fit.
_ARENA_MAX = 8 * 2**20


def _arena(kind: str, size: int, dtype: Any = np.float64) -> Any:
    """A free arena of ``size`` entries of ``dtype`` (float64 or float32; pooled by kind and
    length, so a kind holds one dtype: the float32 kernel's arenas are kinds of their own)."""
    free = _ARENAS.get((kind, size))
    return free.pop() if free else np.empty(size, dtype)


def _release(kind: str, arena: Any) -> None:
    key = (kind, arena.shape[0])
    if arena.shape[0] > _ARENA_MAX:  # one long arena per kind
        for other in [k for k in _ARENAS if k[0] == kind and k[1] > _ARENA_MAX]:
            del _ARENAS[other]
        _ARENAS[key] = [arena]
    else:
        free = _ARENAS.pop(key, [])  # re-inserted last: the most recently used
        if len(free) < 2:
            free.append(arena)
        _ARENAS[key] = free
    while len(_ARENAS) > _ARENA_KEYS:
        del _ARENAS[next(iter(_ARENAS))]


def release_arenas() -> None:
    """Drop every free arena (the buffers a training loop's steps reused)."""
    _ARENAS.clear()


def _carve(
    kind: str, shapes: dict[str, tuple[int, ...]], zeroed: Sequence[str]
) -> tuple[Any, dict[str, Any]]:
    """An arena of the pool and float64 views of it, one per named shape (C-contiguous,
    uninitialised unless named in ``zeroed``)."""
    sizes = {k: math.prod(v) for k, v in shapes.items()}
    arena = _arena(kind, sum(sizes.values()))
    views, pos = {}, 0
    for k, shape in shapes.items():
        views[k] = arena[pos : pos + sizes[k]].reshape(shape)
        pos += sizes[k]
        if k in zeroed:
            views[k].fill(0.0)
    return arena, views


class _Lease:
    """Holds an arena while the autograd graph holding it lives (the backward pass may run
    more than once with ``retain_graph``); gives it back to the pool when dropped."""

    __slots__ = ("arena", "kind")

    def __init__(self, kind: str, arena: Any) -> None:
        self.kind, self.arena = kind, arena

    def __del__(self) -> None:
        _release(self.kind, self.arena)


def _numpy(t: Tensor, dtype: torch.dtype | None = None) -> Any:
    """``t`` as a C-contiguous numpy array of ``dtype`` (its own when None): the array of
    ``t`` itself when it already is one (no copy), else one copy."""
    t = t.detach()
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype, memory_format=torch.contiguous_format)
    return (t if t.is_contiguous() else t.contiguous()).numpy()


def _chains_last(t: Tensor, dtype: torch.dtype = _F64) -> Any:
    """(N, C, ...) -> a numpy array (N, ..., C) of ``dtype``, contiguous, in one copy (dtype
    and layout at once when the dtype changes; ``to`` returns a view as it is): the
    layout the struct-of-arrays loops relay the noise to (they do it themselves; this is
    their reference in the tests). The same
    dtype is moved by numpy: the draws (N, C, m, S) -> (N, m, S, C), whose innermost
    source stride is m S, take ~35 us there against ~90 us as a torch copy (1,024 chains,
    m = 2, one draw, float32; one thread)."""
    if t.dtype == dtype and t.device.type == "cpu":
        return np.ascontiguousarray(np.moveaxis(t.detach().numpy(), 1, -1))
    out = t.detach().movedim(1, -1).to(dtype, memory_format=torch.contiguous_format)
    return (out if out.is_contiguous() else out.contiguous()).numpy()


def _float32_ok(var: Any, inc: Any, Pinf: Tensor, H: Tensor) -> bool:
    """Whether the float32 kernel keeps float32 accuracy for a group: every included variance
    (var, inc (N, C) with chain c = channel c % G, or series first (B, N, G) or (1, N, C):
    the last axis in chain order) is at least the channel's prior variance
    H Pinf H^T over :data:`gpvae.settings.FUSED_FLOAT32_MAX_RATIO`. The measurement update
    P - P H^T H P / (H P H^T + var) cancels the prior's digits down to var's scale, so its
    relative rounding error grows like that ratio times float32's 6e-8 (measured: normwise
    errors of the draws, KL and gradients against the float64 kernel <= 1.2e-4 at ratios
    <= 55, including lengthscales of 0.3-500 steps, gaps of 1e-6 and 1,000 steps; 1e-3 to
    5e-2 at ratios 1e4-1e5; up to 1 at 1e6-1e7)."""
    G = H.shape[0]
    h = H.detach().numpy()
    prior = np.einsum("gi,gij,gj->g", h, Pinf.detach().numpy(), h)  # numpy: (G,) is tiny
    # every entry included (the usual training batch): the minimum of var as it is
    floor = (var if inc.all() else np.where(inc, var, np.inf)).min(axis=0).reshape(-1, G).min(0)
    return bool((prior <= settings.FUSED_FLOAT32_MAX_RATIO * floor).all())


class _SampleKLSoA(torch.autograd.Function):
    """:class:`_SampleKL` (same inputs and outputs) on struct-of-arrays buffers, the chain
    index innermost (:mod:`gpvae.gp._soa_loops`): the loops vectorise across chains. For
    state dimensions 1, 2 and 3.

    Float32 pseudo-observations (mean and var float32: the encoder's outputs) run the
    float32 kernel when :data:`gpvae.settings.FUSED_SOA_FLOAT32` is on (the default) and
    the group passes :func:`_float32_ok` (about twice as fast: half the bytes through
    memory, twice the lanes); otherwise, and for float64 data, the float64 kernel. The
    float32 kernel reads the tables rounded to float32 and returns the same outputs (draws
    float64, KL float64); the gradients of the tables come out float64, those of mean and
    var in their dtype.

    With ``series_first`` (what :func:`sample_and_kl` passes), mean, var and inc are the
    group's (B, N, G) channels of the (B, N, L) pseudo-observations and the draws come out
    as (S, B, N, G) in the dtype of mean, contiguous (the decoder's layout; the same
    values: float32 draws widened and narrowed again before). The layout changes are made
    inside the compiled pass (:func:`gpvae.gp._soa_loops.forward` takes the data series
    first and the noise chain before draw, and gives the draws series first; its backward
    takes and gives the gradients likewise), not by torch or numpy copies around it (five
    copies and their calls, ~0.5 ms of a 48-step pass on 1,024 chains), nor by torch
    operations with their autograd nodes; the gradients of mean and var go back contiguous
    in (B, N, G): a gradient that is a permuted view makes every operation it flows through
    upstream (the encoder's) run on strided memory. Without ``series_first`` the (N, C)
    data go in as (1, N, C) (one series of C channels: the same chains)."""

    @staticmethod
    @without_gc
    def forward(
        ctx: Any,
        A: Tensor,
        Q: Tensor,
        CQ: Tensor,
        Pinf: Tensor,
        chol0: Tensor,
        mean: Tensor,
        var: Tensor,
        ix: Tensor,
        still: Tensor,
        H: Tensor,
        inc: Tensor,
        eps: Tensor,
        e: Tensor,
        series_first: bool = False,
    ) -> tuple[Tensor, Tensor]:
        soa = _soa()
        out_dtype = mean.dtype
        ctx.series = series_first
        if not series_first:  # (N, C) as (1, N, C): the loops take the data series first
            mean, var, inc = mean[None], var[None], inc[None]
        incn = _numpy(inc)
        dt = _F64
        f32 = mean.dtype == var.dtype == torch.float32 and settings.FUSED_SOA_FLOAT32
        if f32 and _float32_ok(_numpy(var), incn, Pinf, H):
            dt = torch.float32
        kind = "fwd" if dt == _F64 else "fwd32"
        # the loops relay the data and draws themselves (one compiled pass, no copies here)
        epsn, en = _numpy(eps, dt), _numpy(e, dt)
        N, C, m, S = epsn.shape
        sizes = soa.arena_sizes(N, m, S, C)
        arena = _arena(kind, sizes[0], epsn.dtype)
        ctx.lease = _Lease(kind, arena)  # the saved buffers are views of the arena
        sample, kl, bad, saved = soa.forward(
            _np(A, dt), _np(Q, dt), _np(CQ, dt), ix.numpy(), _np(Pinf, dt), _np(chol0, dt),
            _np(H, dt), still.numpy(), _numpy(mean, dt), _numpy(var, dt), incn, epsn, en, arena,
        )  # fmt: skip
        if bad:
            raise NumericalError(_SINGULAR)
        ctx.arrays = (A.shape[0], H.shape[0], ix.numpy(), still.numpy(), saved)
        ctx.scratch, ctx.dtypes = sizes[1], (dt, mean.dtype, var.dtype)
        draws = torch.from_numpy(sample)  # (S, B, N, G), or (S, 1, N, C)
        if series_first:
            return draws.to(out_dtype), torch.from_numpy(kl)
        return draws[:, 0].permute(1, 2, 0).to(_F64), torch.from_numpy(kl)  # (N, C, S)

    @staticmethod
    @once_differentiable
    @without_gc
    def backward(ctx: Any, g_sample: Tensor, g_kl: Tensor) -> tuple[Tensor | None, ...]:
        K, G, ixn, stilln, saved = ctx.arrays
        dt, mean_dtype, var_dtype = ctx.dtypes
        kind = "bwd" if dt == _F64 else "bwd32"
        if ctx.series:  # (S, B, N, G), the draws' layout (the loops relay it)
            g_draws = _numpy(g_sample, dt)
        else:  # (N, C, S) -> (S, 1, N, C)
            g_draws = _numpy(g_sample.permute(2, 0, 1)[:, None], dt)
        scratch = _arena(kind, ctx.scratch, g_draws.dtype)
        grads = _soa().backward(K, G, ixn, stilln, _np(g_kl, dt), g_draws, saved, scratch)
        _release(kind, scratch)
        g_tables = tuple(torch.from_numpy(g) for g in grads[:5])
        g_mean, g_var = torch.from_numpy(grads[5]), torch.from_numpy(grads[6])  # (B, N, G)
        if not ctx.series:  # (1, N, C) -> (N, C)
            g_mean, g_var = g_mean[0], g_var[0]
        g_mean, g_var = g_mean.to(mean_dtype), g_var.to(var_dtype)
        return (*g_tables, g_mean, g_var) + (None,) * 7


#: State dimensions whose fused pass runs on struct-of-arrays buffers (:class:`_SampleKLSoA`)
#: when a group has at least :data:`gpvae.settings.FUSED_SOA_MIN_CHAINS` chains; other
#: groups take the per-chain loops (:class:`_SampleKL`, the reference).
SOA_STATE_DIMS = (1, 2, 3)


def _function(m: int, chains: int, layout: str) -> Any:
    """The fused autograd Function for a group of state dimension m: per chain for layout
    "chains"; on struct-of-arrays buffers for layout "soa" when m is in
    :data:`SOA_STATE_DIMS`, and for "auto" when there are also enough chains."""
    soa = m in SOA_STATE_DIMS and (
        layout == "soa" or (layout == "auto" and chains >= settings.FUSED_SOA_MIN_CHAINS)
    )
    return _SampleKLSoA if soa else _SampleKL


def _time_first(t: Tensor, sel: slice | list[int], dtype: torch.dtype | None = None) -> Tensor:
    """(B, N, L) -> the channels ``sel`` (G of them) as (N, B * G), contiguous, in ``dtype``
    (that of ``t`` when None), in one copy: dtype and layout at once when the dtype changes,
    else the reshape's copy. No channel slice when ``sel`` takes all L channels, so no
    zero-filled gradient of a slice in backward.

    Contiguous whatever G: the numpy arrays the loops receive then always have numba's
    C layout, so one compiled signature per dtype serves every group (``to`` returns the
    permuted view itself when the dtype is already right, and for one channel the reshape
    keeps it a strided view: the loops then compiled F- and A-layout signatures that
    ``python -m gpvae.gp.warm`` covered and a fit over several channels did not use)."""
    _, N, L = t.shape
    if not (isinstance(sel, slice) and sel.indices(L) == (0, L, 1)):
        t = t[..., sel]
    out = t.movedim(1, 0).to(dtype or t.dtype, memory_format=torch.contiguous_format)
    if not out.is_contiguous():  # the dtype was already right: ``to`` returned the view
        out = out.contiguous()
    return out.reshape(N, -1)


def sample_and_kl(
    groups: Sequence[Any],
    mean: Tensor,
    var: Tensor,
    included: Tensor,
    num_samples: int,
    generator: torch.Generator | None,
    layout: str = "auto",
) -> tuple[list[Tensor], list[Tensor]]:
    """Joint posterior draws and KL of every group of a Markov posterior.

    Args:
        groups: the channel groups (:class:`gpvae.gp.markov._Group`, float64 tables).
        mean, var: (B, N, L) pseudo-observations (any float dtype).
        included: (B, N, L) bool.
        num_samples: S >= 0 (0: the KL alone, nothing drawn).
        generator: random number generator, or None for the global one.
        layout: "auto" (struct-of-arrays loops for the state dimensions of
            :data:`SOA_STATE_DIMS` on enough chains, else per-chain loops), "chains" (always
            per chain: the reference) or "soa" (struct-of-arrays whenever m allows).

    Returns:
        Per group: draws (S, B, N, G) (float64 from the per-chain Function, a permuted view;
        in the dtype of ``mean`` and contiguous from the struct-of-arrays one) and KL (B, G),
        float64.
    """
    B, N, L = mean.shape
    dtype, device = mean.dtype, mean.device
    S = num_samples
    # the draws stay in their dtype here: each Function converts them once, in its layout
    eps = []
    for g in groups:
        shape = (N, B, len(g.channels), g.Pinf.shape[-1], S)
        if S > 0:
            eps.append(batch_normal(shape, 1, generator, dtype, device))
        else:
            eps.append(torch.zeros(shape, dtype=_F64))
    e = (
        batch_normal((N, B, L, S), 1, generator, dtype, device)
        if S > 0
        else torch.zeros(N, B, L, 0, dtype=_F64)
    )
    draws, kls = [], []
    for g, eps_g in zip(groups, eps):
        G = len(g.channels)
        chol0 = g.chol0
        fn = _function(g.Pinf.shape[-1], B * G, layout)
        tables = (g._A_table, g._Q_table, g._chol_table, g.Pinf, chol0)
        noise = (eps_g.reshape(N, B * G, *eps_g.shape[3:]), e[:, :, g.sel].reshape(N, B * G, S))
        steps, H = (g._index, g.still), g.H[:, 0, :].detach()
        if fn is _SampleKLSoA:  # the data as it is: the Function takes the layout and dtype
            mean_g, var_g, inc_g = (_channels(t, g.sel) for t in (mean, var, included))
            sample, kl = fn.apply(*tables, mean_g, var_g, *steps, H, inc_g, *noise, True)
            draws.append(sample)
        else:
            mean_g, var_g = _time_first(mean, g.sel, _F64), _time_first(var, g.sel, _F64)
            inc_g = _time_first(included, g.sel)
            sample, kl = fn.apply(*tables, mean_g, var_g, *steps, H, inc_g, *noise)
            draws.append(sample.reshape(N, B, G, S).permute(3, 1, 0, 2))
        kls.append(kl.reshape(B, G))
    return draws, kls


def _channels(t: Tensor, sel: slice | list[int]) -> Tensor:
    """(B, N, L) -> the channels ``sel`` (B, N, G): ``t`` itself when ``sel`` takes all L
    channels (no slice, so no zero-filled gradient of one in backward)."""
    full = isinstance(sel, slice) and sel.indices(t.shape[-1]) == (0, t.shape[-1], 1)
    return t if full else t[..., sel]
