"""Compiled sequential Kalman recursions: the operations of :mod:`gpvae.gp._kalman`, on CPU.

The same five operations, with the same signatures, shapes and results (up to rounding),
and the same random draws for the same generator; each is a ``torch.autograd.Function``
whose forward and backward loops are compiled by numba (:mod:`gpvae.gp._loops`), so a step
of the recursions costs its arithmetic instead of a dozen batched operations on tiny
matrices. The torch loops of :mod:`gpvae.gp._kalman` stay the reference, and the path for
tensors that are not on the CPU. Differentiable once, like the reference.

Shapes as in :mod:`gpvae.gp._kalman`: N steps, B series, G channels of a group, m state
dimension, S' data vectors.
"""

from __future__ import annotations

import gc
import importlib
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, wraps
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple, TypeVar, cast

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from gpvae.errors import NumericalError
from gpvae.gp._kalman import Covariances, _cholesky, process_noise_factors
from gpvae.rng import batch_normal

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "Indexed",
    "filter_covariances",
    "filter_means",
    "indexed",
    "linear_states",
    "prior_states",
    "smooth_covariances",
    "smooth_means",
    "supports",
]


@contextmanager
def gc_paused(long_lived: bool = False) -> Iterator[None]:
    """No cyclic garbage collection inside (the previous state is restored after).

    Importing numba and loading its cached loops create some 10^5 objects; in a process
    that already holds torch and pandas, the collections they trigger walk millions of live
    objects. Paused, numba's one-time cost in a fit drops by about a third (import and first
    load: 0.86 -> 0.58 s of CPU, measured with torch, pandas and gpvae imported).

    Args:
        long_lived: the objects made inside live as long as the process (modules, numba's
            registries and loaded code): on leaving, every object of the young generations
            is moved to the oldest one (``gc.freeze()`` then ``gc.unfreeze()``), so that the
            next young collections do not each walk them again (~20-45 ms once per process
            after numba's load, at a fit's first steps). Skipped when the process has frozen
            objects itself (they stay frozen). Young garbage made just before is then freed
            by the next full collection instead of a young one.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if long_lived and gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()


def without_gc(fn: F) -> F:
    """``fn`` run inside :func:`gc_paused` (the compiled loops load from numba's cache at
    their first call: that call is ``long_lived``)."""
    first = [True]

    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        long_lived, first[0] = first[0], False
        with gc_paused(long_lived):
            return fn(*args, **kwargs)

    return cast(F, run)


@cache
def _numba() -> bool:
    """Whether numba imports (imported here, on first use: it takes a few tenths of a
    second). The compiled loops need nothing else; their modules are imported when used.
    When numba has no folder to cache them in, they are compiled without its cache
    (:func:`_compile_uncached_if_needed`)."""
    try:
        with gc_paused(long_lived=True):
            import numba  # noqa: F401
    except ImportError:  # pragma: no cover - numba is a dependency; this keeps torch usable
        return False
    _compile_uncached_if_needed()
    return True


#: What the warning of :func:`_compile_uncached_if_needed` says a user can do.
UNCACHED_ADVICE = (
    "set NUMBA_CACHE_DIR to a folder this user can write (the same for every process, e.g. "
    "one shared by the users of this installation) and run 'python -m gpvae.gp.warm' once "
    "with it set"
)


def _compile_uncached_if_needed() -> bool:
    """Let the loops compile without numba's cache when numba finds no folder to cache them
    in; returns whether that was needed.

    numba caches a function beside its source (``__pycache__``), else in the user's cache
    folder (``~/.cache``), or in ``NUMBA_CACHE_DIR`` when set, and needs that folder to be
    writable. In a read-only installation run by a user without a writable home, none is,
    and every ``cache=True`` loop would fail to be defined ("cannot cache function ...: no
    locator available"): every fit would stop. Here gpvae's loops are then defined without
    the cache (their dispatchers compile in memory, in every process: a minute or two of
    compilation in a fit's first steps) and one warning names ``NUMBA_CACHE_DIR``. Other
    numba functions, and any other error of numba's, are left as they are.
    """
    from numba.core.caching import FunctionCache
    from numba.core.dispatcher import Dispatcher

    try:  # the loops' files are in this folder: numba finds a cache for all or for none
        FunctionCache(_compile_uncached_if_needed)
    except RuntimeError as err:
        if "no locator available" not in str(err):
            raise
    else:
        return False
    enable_caching = Dispatcher.enable_caching

    def enable_caching_if_possible(self: Any) -> None:
        try:
            enable_caching(self)
        except RuntimeError as err:
            module = getattr(self.py_func, "__module__", None) or ""
            if not module.startswith("gpvae.") or "no locator available" not in str(err):
                raise
            # the dispatcher keeps the NullCache it was made with: compiled, not cached

    Dispatcher.enable_caching = enable_caching_if_possible  # type: ignore[method-assign]
    warnings.warn(
        "gpvae: numba cannot cache the compiled loops of the Markov backend (no writable "
        f"folder: neither {Path(__file__).parent / '__pycache__'}, nor the user's cache "
        "folder, nor NUMBA_CACHE_DIR), so every process compiles them again, which takes a "
        f"minute or two; to keep them, {UNCACHED_ADVICE}",
        RuntimeWarning,
        stacklevel=2,
    )
    return True


@cache
def loops_module(name: str) -> ModuleType:
    """The numba loops module ``gpvae.gp.<name>``, imported on first use (the garbage
    collector paused), its dispatchers loading from numba's cache without numba's context
    refresh (:func:`gpvae.gp._numba_cache.lean_loading`). Needs numba (:func:`_numba`)."""
    from gpvae.gp._numba_cache import lean_loading

    _numba()  # numba imported, and its cache checked, before the module's loops are defined
    with gc_paused(long_lived=True):
        module = importlib.import_module(f"gpvae.gp.{name}")
    lean_loading(module)
    return module


@cache
def _compiler() -> ModuleType | None:
    """The loops module, imported on first use; None when numba cannot be imported."""
    if not _numba():  # pragma: no cover - numba is a dependency
        return None
    return loops_module("_loops")


@cache
def _loops_of(m: int) -> Any:
    """``_loops.loops(m)``, its dispatchers given the lean cache loading."""
    from gpvae.gp._numba_cache import lean_loading

    module = _compiler()
    assert module is not None  # guarded by supports()
    ns = module.loops(m)
    lean_loading(ns)
    return ns


class _Loops:
    """``_loops.loops(m)`` through the lazily imported module."""

    @staticmethod
    def loops(m: int) -> Any:
        return _loops_of(m)


_loops = _Loops()


class Indexed(NamedTuple):
    """Matrices per distinct step and where each step reads them.

    Attributes:
        table: (K, G, m, m) one matrix per distinct step and channel.
        at: (N, B) int64, the entry of ``table`` that step n of series b uses.
    """

    table: Tensor
    at: Tensor


def indexed(A: Tensor | Indexed) -> Indexed:
    """``A`` as an :class:`Indexed` table; a full (N, B, G, m, m) tensor becomes a table of
    N * B entries (one per step)."""
    if isinstance(A, Indexed):
        return A
    N, B = A.shape[:2]
    index = torch.arange(N * B, device=A.device).reshape(N, B)
    return Indexed(A.reshape(N * B, *A.shape[2:]), index)


def supports(t: Tensor) -> bool:
    """Whether the compiled loops can run on tensors like ``t``: CPU, float32 or float64,
    and numba importable."""
    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) and _numba()


_F64 = torch.float64


def _np(t: Tensor) -> np.ndarray:
    """A float64, contiguous numpy view of ``t`` (detached; copied only when needed)."""
    return t.detach().to(_F64).contiguous().numpy()


def _buf(*shape: int) -> Tensor:
    """An output buffer of the loops: float64, contiguous, on the CPU."""
    return torch.empty(shape, dtype=_F64)


def _zeros(*shape: int) -> Tensor:
    """A gradient buffer of the loops: float64 zeros, contiguous, on the CPU."""
    return torch.zeros(shape, dtype=_F64)


def _chains(t: Tensor, lead: int) -> Tensor:
    """(lead axes..., B, G, rest...) -> (lead axes..., B * G, rest...), a view if possible."""
    shape = t.shape
    return t.reshape(*shape[:lead], shape[lead] * shape[lead + 1], *shape[lead + 2 :])


def _out(t: Tensor, lead: int | None = None) -> np.ndarray:
    """A writable numpy view of a buffer from :func:`_buf` / :func:`_zeros` (chains
    flattened after ``lead`` axes when given), so that the loops write into ``t``."""
    if lead is not None:
        shape = t.shape
        t = t.view(*shape[:lead], shape[lead] * shape[lead + 1], *shape[lead + 2 :])
    return t.numpy()


# --------------------------------------------------------------------------------------
# filter covariances (with the gains and RTS gains)


class _FilterCovariances(torch.autograd.Function):
    """``(A, Q, ix, Pinf, H, w, log_var, still) -> (P^-, P, K, inv_s, log_s, G^RTS)`` with
    tables A, Q (K, G, m, m) read through ``ix`` (N, B)."""

    @staticmethod
    def forward(
        ctx: Any,
        A: Tensor,
        Q: Tensor,
        ix: Tensor,
        Pinf: Tensor,
        H: Tensor,
        w: Tensor,
        log_var: Tensor,
        still: Tensor,
    ) -> tuple[Tensor, ...]:
        N, B, G = w.shape
        m = A.shape[-1]
        P_pred, P_filt = _buf(N, B, G, m, m), _buf(N, B, G, m, m)
        gain, inv_s, log_s = _buf(N, B, G, m, 1), _buf(N, B, G), _buf(N, B, G)
        sgain = _buf(max(N - 1, 0), B, G, m, m)
        bad = _loops.loops(m).cov_filter_fwd(
            _np(A),
            _np(Q),
            ix.numpy(),
            _np(Pinf),
            _np(H[:, 0, :]),
            _np(_chains(w, 1)),
            _np(_chains(log_var, 1)),
            still.contiguous().numpy(),
            _out(P_pred, 1),
            _out(P_filt, 1),
            _out(gain[..., 0], 1),
            _out(inv_s, 1),
            _out(log_s, 1),
            _out(sgain, 1),
        )
        if bad:
            raise NumericalError(
                "markov backend: a predicted state covariance is singular to working "
                "precision; pseudo-observation variances may be too small for this dtype (try "
                "float64 or a variance floor)"
            )
        ctx.save_for_backward(A, ix, H, w, still, P_pred, P_filt, sgain)
        return tuple(t.to(A.dtype) for t in (P_pred, P_filt, gain, inv_s, log_s, sgain))

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any,
        g_pred: Tensor,
        g_filt: Tensor,
        g_gain: Tensor,
        g_inv_s: Tensor,
        g_log_s: Tensor,
        g_sgain: Tensor,
    ) -> tuple[Tensor | None, ...]:
        A, ix, H, w, still, P_pred, P_filt, sgain = ctx.saved_tensors
        N, B, G = w.shape
        m = A.shape[-1]
        g_A, g_Q = _zeros(*A.shape), _zeros(*A.shape)
        g_Pinf, g_H = _zeros(G, m, m), _zeros(G, m)
        g_w, g_log_var = _zeros(N, B, G), _zeros(N, B, G)
        _loops.loops(m).cov_filter_bwd(
            _np(A),
            ix.numpy(),
            _np(H[:, 0, :]),
            _np(_chains(w, 1)),
            still.contiguous().numpy(),
            _out(P_pred, 1),
            _out(P_filt, 1),
            _out(sgain, 1),
            _chains(g_pred, 1).detach().to(_F64, copy=True).contiguous().numpy(),
            _chains(g_filt, 1).detach().to(_F64, copy=True).contiguous().numpy(),
            _np(_chains(g_gain[..., 0], 1)),
            _np(_chains(g_inv_s, 1)),
            _np(_chains(g_log_s, 1)),
            _np(_chains(g_sgain, 1)),
            _out(g_A),
            _out(g_Q),
            _out(g_Pinf),
            _out(g_H),
            _out(g_w, 1),
            _out(g_log_var, 1),
        )
        dtype = A.dtype
        return (
            g_A.to(dtype),
            g_Q.to(dtype),
            None,
            g_Pinf.to(dtype),
            g_H[:, None, :].to(dtype),
            g_w.to(dtype),
            g_log_var.to(dtype),
            None,
        )


def filter_covariances(
    A: Tensor | Indexed,
    Q: Tensor | Indexed,
    Pinf: Tensor,
    H: Tensor,
    w: Tensor,
    log_var: Tensor,
    still: Tensor,
) -> Covariances:
    """Covariance part of the Kalman filter and the RTS gains; see
    :func:`gpvae.gp._kalman.filter_covariances` (same arguments and results; ``A`` and ``Q``
    may also be :class:`Indexed` tables with one index)."""
    A, Q = indexed(A), indexed(Q)
    dtype = A.table.dtype
    out = _FilterCovariances.apply(
        A.table, Q.table, A.at, Pinf.to(dtype), H.to(dtype), w, log_var, still
    )
    return Covariances(*out)


# --------------------------------------------------------------------------------------
# filter means


class _FilterMeans(torch.autograd.Function):
    """``(A, ix, H, K, y) -> (m, v)``: filtered means (N, B, G, m, S') and innovations."""

    @staticmethod
    def forward(
        ctx: Any, A: Tensor, ix: Tensor, H: Tensor, gain: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor]:
        N, B, G, S = y.shape
        m = A.shape[-1]
        m_filt, innov = _buf(N, B, G, m, S), _buf(N, B, G, S)
        _loops.loops(m).mean_filter_fwd(
            _np(A),
            ix.numpy(),
            _np(H[:, 0, :]),
            _np(_chains(gain[..., 0], 1)),
            _np(_chains(y, 1)),
            _out(m_filt, 1),
            _out(innov, 1),
        )
        ctx.save_for_backward(A, ix, H, gain, m_filt, innov)
        return m_filt.to(A.dtype), innov.to(A.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_mean: Tensor, g_innov: Tensor) -> tuple[Tensor | None, ...]:
        A, ix, H, gain, m_filt, innov = ctx.saved_tensors
        N, B, G, S = innov.shape
        m = A.shape[-1]
        g_A, g_H = _zeros(*A.shape), _zeros(G, m)
        g_gain, g_y = _zeros(N, B, G, m, 1), _zeros(N, B, G, S)
        _loops.loops(m).mean_filter_bwd(
            _np(A),
            ix.numpy(),
            _np(H[:, 0, :]),
            _np(_chains(gain[..., 0], 1)),
            _out(m_filt, 1),
            _out(innov, 1),
            _np(_chains(g_mean, 1)),
            _np(_chains(g_innov, 1)),
            _out(g_A),
            _out(g_H),
            _out(g_gain[..., 0], 1),
            _out(g_y, 1),
        )
        dtype = A.dtype
        return g_A.to(dtype), None, g_H[:, None, :].to(dtype), g_gain.to(dtype), g_y.to(dtype)


def filter_means(A: Tensor | Indexed, H: Tensor, gain: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean part of the Kalman filter; see :func:`gpvae.gp._kalman.filter_means`."""
    A = indexed(A)
    m_filt, innov = _FilterMeans.apply(A.table, A.at, H.to(A.table.dtype), gain, y)
    return m_filt, innov


# --------------------------------------------------------------------------------------
# smoother


class _SmoothMeans(torch.autograd.Function):
    """``(A, ix, G^RTS, m) -> m^s``: ``m^s_n = m_n + G_n (m^s_{n+1} - A_{n+1} m_n)``."""

    @staticmethod
    def forward(ctx: Any, A: Tensor, ix: Tensor, sgain: Tensor, m_filt: Tensor) -> Tensor:
        m = A.shape[-1]
        m_smooth = _buf(*m_filt.shape)
        m_filt64 = m_filt.detach().to(_F64).contiguous()
        _loops.loops(m).smooth_mean_fwd(
            _np(A),
            ix.numpy(),
            _np(_chains(sgain, 1)),
            _out(m_filt64, 1),
            _out(m_smooth, 1),
        )
        ctx.save_for_backward(A, ix, sgain, m_filt64, m_smooth)
        return m_smooth.to(A.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_smooth: Tensor) -> tuple[Tensor | None, ...]:
        A, ix, sgain, m_filt, m_smooth = ctx.saved_tensors
        m = A.shape[-1]
        g_A, g_sgain, g_filt = _zeros(*A.shape), _zeros(*sgain.shape), _zeros(*m_filt.shape)
        _loops.loops(m).smooth_mean_bwd(
            _np(A),
            ix.numpy(),
            _np(_chains(sgain, 1)),
            _out(m_filt, 1),
            _out(m_smooth, 1),
            _np(_chains(g_smooth, 1)),
            _out(g_A),
            _out(g_sgain, 1),
            _out(g_filt, 1),
        )
        dtype = A.dtype
        return g_A.to(dtype), None, g_sgain.to(dtype), g_filt.to(dtype)


def smooth_means(A: Tensor | Indexed, smooth_gain: Tensor, m_filt: Tensor) -> Tensor:
    """RTS smoother means; see :func:`gpvae.gp._kalman.smooth_means`."""
    A = indexed(A)
    m_smooth: Tensor = _SmoothMeans.apply(A.table, A.at, smooth_gain, m_filt)
    return m_smooth


class _SmoothCovariances(torch.autograd.Function):
    """``(G^RTS, P, P^-) -> P^s``: ``P^s_n = P_n + G_n (P^s_{n+1} - P^-_{n+1}) G_n^T``."""

    @staticmethod
    def forward(ctx: Any, sgain: Tensor, P_filt: Tensor, P_pred: Tensor) -> Tensor:
        m = P_filt.shape[-1]
        P_smooth = _buf(*P_filt.shape)
        P_pred64 = P_pred.detach().to(_F64).contiguous()
        _loops.loops(m).smooth_cov_fwd(
            _np(_chains(sgain, 1)),
            _np(_chains(P_filt, 1)),
            _out(P_pred64, 1),
            _out(P_smooth, 1),
        )
        ctx.save_for_backward(sgain, P_smooth, P_pred64)
        ctx.dtype = P_filt.dtype
        return P_smooth.to(P_filt.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_smooth: Tensor) -> tuple[Tensor | None, ...]:
        sgain, P_smooth, P_pred = ctx.saved_tensors
        m = P_smooth.shape[-1]
        g_sgain, g_filt = _zeros(*sgain.shape), _zeros(*P_smooth.shape)
        g_pred = _zeros(*P_pred.shape)
        _loops.loops(m).smooth_cov_bwd(
            _np(_chains(sgain, 1)),
            _out(P_smooth, 1),
            _out(P_pred, 1),
            _np(_chains(g_smooth, 1)),
            _out(g_sgain, 1),
            _out(g_filt, 1),
            _out(g_pred, 1),
        )
        dtype = ctx.dtype
        return g_sgain.to(dtype), g_filt.to(dtype), g_pred.to(dtype)


def smooth_covariances(cov: Covariances) -> Tensor:
    """RTS smoother covariances; see :func:`gpvae.gp._kalman.smooth_covariances`."""
    P_smooth: Tensor = _SmoothCovariances.apply(cov.smooth_gain, cov.P_filt, cov.P_pred)
    return P_smooth


# --------------------------------------------------------------------------------------
# prior states


class _LinearRecursion(torch.autograd.Function):
    """``(A, chol_q, ix, s_0, eps) -> s``: ``s_n = A_n s_{n-1} + chol_q_n eps_n``, with
    tables A, chol_q (K, G, m, m) read through ``ix`` (N, B)."""

    @staticmethod
    def forward(
        ctx: Any, A: Tensor, chol_q: Tensor, ix: Tensor, state0: Tensor, eps: Tensor
    ) -> Tensor:
        N, (B, G, m, S) = ix.shape[0], state0.shape
        states = _buf(N, B, G, m, S)
        eps64 = eps.detach().to(_F64).contiguous()
        _loops.loops(m).linear_fwd(
            _np(A),
            _np(chol_q),
            ix.numpy(),
            _np(_chains(state0, 0)),
            _out(eps64, 1),
            _out(states, 1),
        )
        ctx.save_for_backward(A, ix, eps64, states)
        return states.to(A.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_states: Tensor) -> tuple[Tensor | None, ...]:
        A, ix, eps, states = ctx.saved_tensors
        m = A.shape[-1]
        g_A, g_chol = _zeros(*A.shape), _zeros(*A.shape)
        g_state0 = _zeros(*states.shape[1:])
        _loops.loops(m).linear_bwd(
            _np(A),
            ix.numpy(),
            _out(eps, 1),
            _out(states, 1),
            _np(_chains(g_states, 1)),
            _out(g_A),
            _out(g_chol),
            _out(g_state0, 0),
        )
        dtype = A.dtype
        return g_A.to(dtype), g_chol.to(dtype), None, g_state0.to(dtype), None


def linear_states(A: Indexed, chol_q: Indexed, state0: Tensor, eps: Tensor) -> Tensor:
    """``s_0 = state0``, ``s_n = A_n s_{n-1} + chol_q_n eps_{n-1}`` for tables sharing one
    index; state0 (B, G, m, S), eps (N - 1, B, G, m, S) -> (N, B, G, m, S)."""
    if chol_q.at is not A.at and not torch.equal(chol_q.at, A.at):
        A, chol_q = indexed(_full(A)), indexed(_full(chol_q))
    states: Tensor = _LinearRecursion.apply(A.table, chol_q.table, A.at, state0, eps)
    return states


def _full(t: Indexed) -> Tensor:
    """An :class:`Indexed` table as the full (N, B, G, m, m) tensor."""
    return t.table[t.at]


def prior_states(
    A: Tensor | Indexed,
    Q: Tensor | Indexed,
    Pinf: Tensor,
    num_samples: int,
    generator: torch.Generator | None = None,
    chol_q: Tensor | Indexed | None = None,
    noise_dtype: torch.dtype | None = None,
) -> Tensor:
    """Joint samples of the prior state sequence, reparameterised; see
    :func:`gpvae.gp._kalman.prior_states` (the same draws for the same generator).

    Args:
        A, Q: (N, B, G, m, m) transitions, or :class:`Indexed` tables.
        Pinf: (G, m, m) stationary covariances.
        num_samples: S.
        generator: random number generator, or None for the global one.
        chol_q: factors of ``Q_n + jitter`` when already known: (N - 1, B, G, m, m) for the
            steps n >= 1, or an :class:`Indexed` table (read at steps n >= 1); else computed
            here from ``Q``.
        noise_dtype: dtype of the normal draws (then cast to that of ``A``), None for that
            of ``A``: the same draws whatever dtype the recursion runs in.

    Returns:
        (N, B, G, m, S) states.
    """
    A = indexed(A)
    N, B = A.at.shape
    G, m = A.table.shape[1], A.table.shape[-1]
    dtype = A.table.dtype
    Pinf = Pinf.to(dtype)
    if chol_q is None:
        if isinstance(Q, Indexed):
            chol_q = Indexed(process_noise_factors(Q.table, Pinf), Q.at)
        else:
            chol_q = process_noise_factors(Q[1:], Pinf)
    if not isinstance(chol_q, Indexed):  # step n >= 1 reads row n; row 0 is a placeholder
        chol_q = indexed(torch.cat([chol_q[:1], chol_q]))
    if chol_q.at is not A.at and not torch.equal(chol_q.at, A.at):
        A, chol_q = indexed(_full(A)), indexed(_full(chol_q))
    chol_0 = _cholesky(Pinf, "stationary covariance Pinf")  # (G, m, m)
    eps = batch_normal(
        (N, B, G, m, num_samples), 1, generator, noise_dtype or dtype, Pinf.device
    ).to(dtype)
    state0 = chol_0 @ eps[0]  # (B, G, m, S)
    states: Tensor = _LinearRecursion.apply(A.table, chol_q.table, A.at, state0, eps[1:])
    return states
