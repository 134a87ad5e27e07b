"""Markov (state-space) GP backend: exact, O(N) time and memory, for 1-D index points.

A kernel with a state-space form ``(F, L, Qc, H, Pinf)`` (Matern-1/2, 3/2, 5/2 and sums of
them) makes ``f(x) = H s(x)`` with a Markov state ``s``: between sorted points ``x_{n-1} <=
x_n`` the state moves by ``s_n = A_n s_{n-1} + q_n``, ``A_n = expm(F dt_n)``, ``q_n ~ N(0,
Q_n)``, ``Q_n = Pinf - A_n Pinf A_n^T``, ``dt_n = x_n - x_{n-1}``, from ``s_0 ~ N(0, Pinf)``.
Conditioning on the pseudo-observations ``mean_n = H s_n + N(0, var_n)`` is then a Kalman
filter (log-marginal by the prediction-error decomposition), an RTS smoother (marginals) and a
simulation smoother (joint samples); see :mod:`gpvae.gp._kalman`.

- ``var = +inf`` and padding (``valid = False``) enter with precision 0: exact no-ops.
- Padded index points may hold anything; they are replaced internally by the nearest valid
  point before them (or after them, for leading padding), so the sequence stays sorted.
- Channels whose kernels share a state dimension are stacked and filtered together. The
  recursions over the N points run one of two ways (``method``), with the same results:
  ``"sequential"``, a Python loop of a few small batched matrix products with hand-written
  adjoint backward passes (:mod:`gpvae.gp._kalman`, the reference), or ``"parallel"``,
  associative scans of batched tensor ops over the time axis with O(log N) sequential steps
  (:mod:`gpvae.gp._scan`, Särkkä & García-Fernández 2021). Time and memory are O(N m^2) per
  series and channel either way. Two more run the recursions as numba-compiled loops on
  the CPU: ``"compiled"`` and ``"fused"`` (:mod:`gpvae.gp._compiled`). ``"auto"`` takes
  the compiled loops whenever it can, i.e. on the CPU with numba installed, whatever N and
  the number of chains; only without numba, or on a GPU, does it choose between the
  others: the scans for long series with few chains (at least
  :data:`gpvae.settings.PARALLEL_MIN_POINTS` points and at most
  :data:`gpvae.settings.PARALLEL_MAX_CHAINS` chains), else the sequential loop.
- Float32 (and narrower) inputs are computed in float64 by every method, on any device but
  ``mps`` (no float64 there), and the results cast back: in float32 the recursions lose
  most digits at long lengthscales (see :func:`_work_dtype`). The compiled loops always
  ran in float64; on the torch paths (``"parallel"``, ``"sequential"``: without numba, or
  on a GPU) the float64 work costs time and memory against float32: measured on the CPU
  (log-marginal + KL + backward, one series, 4 Matern32 channels), 11-22% more time and
  30-58% more peak memory (the parallel scan at 100,000 points: 2.9 s and 1.5 GiB instead
  of 2.4 s and 0.96 GiB). Accuracy is preferred. On GPUs whose float64 throughput is a
  small fraction of their float32 throughput (most consumer GPUs) the slowdown can be far
  larger (not measured here).
- Prediction at new points merges them into the sorted sequence as excluded points and reads
  the smoother there: exact, O(N + M).

References:
    S. Särkkä, "Bayesian Filtering and Smoothing", Cambridge University Press, 2013.
    J. Durbin and S. J. Koopman, "A simple and efficient simulation smoother for state space
    time series analysis", Biometrika 89(3), 2002.
    S. Särkkä and A. Solin, "Applied Stochastic Differential Equations", 2019, ch. 12.
    S. Särkkä and Á. F. García-Fernández, "Temporal parallelization of Bayesian smoothers",
    IEEE Transactions on Automatic Control 66(1), 2021.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cached_property
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from gpvae import settings
from gpvae.errors import InputTypeError, ShapeError, ValidationError, invalid
from gpvae.gp import _compiled, _fused, _kalman, _scan
from gpvae.gp._transitions import group_tables
from gpvae.gp.base import GPPosterior, expected_pseudo_loglik
from gpvae.gp.checks import check_condition_inputs, check_index_points, check_num_samples
from gpvae.kernels.base import Kernel
from gpvae.rng import batch_normal

__all__ = [
    "METHODS",
    "MarkovGPPosterior",
    "prior_paths",
    "sample_prior_markov",
]

#: Ways to run the recursions over the N points: ``"sequential"`` (Python loop over N with
#: hand-written adjoints, :mod:`gpvae.gp._kalman`), ``"parallel"`` (associative scans, O(log N)
#: sequential steps, :mod:`gpvae.gp._scan`), ``"compiled"`` (each recursion with numba loops,
#: :mod:`gpvae.gp._compiled`), ``"fused"`` (the same, drawing samples and the KL in one
#: compiled pass per chain, :mod:`gpvae.gp._fused`) or ``"auto"``: on the CPU with numba
#: installed, always the compiled loops (``"fused"``), whatever N; without numba or on a GPU,
#: parallel for long, narrow problems (at least :data:`gpvae.settings.PARALLEL_MIN_POINTS`
#: points and at most :data:`gpvae.settings.PARALLEL_MAX_CHAINS` chains B * L), else
#: sequential.
METHODS = ("auto", "sequential", "parallel", "compiled", "fused")

# --------------------------------------------------------------------------------------
# input handling


def _check_kernels(kernels: Sequence[Kernel]) -> list[Kernel]:
    """Check that every channel kernel has a state-space form; return them as a list."""
    kernels = list(kernels)
    for k in kernels:
        if not isinstance(k, Kernel):
            raise InputTypeError(f"kernels: expected Kernel instances, found {type(k).__name__}")
        if not k.has_state_space:
            raise ValidationError(
                "kernel: expected a kernel with a state-space form (Matern12/32/52, Trend, "
                "HarmonicPeriodic, and sums and products of them, on 1-D inputs) for the markov "
                f"backend, found {k!r}"
            )
    return kernels


def _check_one_dim(x: Tensor, name: str) -> None:
    if x.shape[-1] != 1:
        raise ShapeError(
            f"{name}: expected 1-D index points (B, N, 1) for the markov backend, "
            f"found d = {x.shape[-1]} (shape {tuple(x.shape)}); use the dense backend"
        )


def _fill_padding(x: Tensor, valid: Tensor) -> Tensor:
    """Replace padded index points by the previous valid one (the next one for leading padding).

    Args:
        x: (B, N) index points (anything, even NaN, on padding).
        valid: (B, N) bool.

    Returns:
        (B, N) index points, sorted whenever the valid ones are (0 for a series without any
        valid point).
    """
    N = x.shape[1]
    idx = torch.arange(N, device=x.device).expand_as(valid)  # (B, N)
    last = torch.where(valid, idx, torch.full_like(idx, -1)).cummax(dim=1).values  # (B, N)
    first = valid.to(torch.int64).argmax(dim=1, keepdim=True)  # (B, 1)
    filled = x.gather(1, torch.where(last >= 0, last, first))  # (B, N)
    any_valid = valid.any(dim=1, keepdim=True)  # (B, 1)
    return torch.where(any_valid, filled, torch.zeros_like(filled))


def _check_sorted(x_filled: Tensor) -> None:
    """Raise a ValidationError naming ``x`` if valid index points decrease along N."""
    decrease = x_filled[:, 1:] < x_filled[:, :-1]  # (B, N-1)
    if bool(decrease.any()):
        b, n = (int(i) for i in decrease.nonzero()[0])
        raise ValidationError(
            "x: expected sorted (non-decreasing) index points along N on valid points for the "
            f"markov backend, found {float(x_filled[b, n + 1])} after {float(x_filled[b, n])} "
            f"at position [{b}, {n + 1}]"
        )


def _prepared_x(x: Tensor, valid: Tensor) -> Tensor:
    """(B, N, 1) checked index points -> (B, N) sorted, padding filled."""
    _check_one_dim(x, "x")
    x0 = x[..., 0].detach()
    # without padding there is nothing to fill (one check instead of the filling's dozen ops)
    x_filled = x0 if bool(valid.all()) else _fill_padding(x0, valid)  # (B, N)
    _check_sorted(x_filled)
    return x_filled


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise invalid("method", f"one of {', '.join(map(repr, METHODS))}", repr(method))
    return method


def _checkpointed(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` under activation checkpointing when gradients are being recorded.

    The scans record every level's intermediate m x m products for autograd; with
    checkpointing only ``fn``'s inputs and outputs are kept and the levels are recomputed
    during the backward pass, one operation at a time (about a third more time for much
    less peak memory on long series).
    """

    def run(*args: Any) -> Any:
        if torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    return run


#: The scan operations under activation checkpointing (the prior-sample scan, which draws
#: from a generator, is not recomputed).
_SCAN_CHECKPOINTED = SimpleNamespace(
    filter_covariances=_checkpointed(_scan.filter_covariances),
    filter_means=_checkpointed(_scan.filter_means),
    smooth_means=_checkpointed(_scan.smooth_means),
    smooth_covariances=_checkpointed(_scan.smooth_covariances),
    prior_states=_scan.prior_states,
)


def _work_dtype(ops: Any, like: Tensor) -> torch.dtype:
    """The dtype the recursions of ``ops`` run in for tensors like ``like``.

    float64 for the compiled loops (always) and for narrower floating-point inputs on any
    device but ``mps`` (which has no float64): in float32 the torch recursions lose most of
    their accuracy for long lengthscales (Matern32 with lengthscale 1e5 at pseudo-observation
    variance 0.01 over 200 points: the KL 77% off, the dense float32 path 3%; in float64
    ~1e-7, as the compiled loops and the fused pass). The inputs are cast once, the results
    cast back (gradients flow through both casts). Otherwise (float64, or mps) the dtype of
    ``like``. On the torch paths this costs 11-22% more time and 30-58% more peak memory
    than float32 did (measured on the CPU; see the module docstring).
    """
    narrow = like.dtype in (torch.float16, torch.bfloat16, torch.float32)
    if ops is _compiled or (narrow and like.device.type != "mps"):
        return torch.float64
    return like.dtype


def _ops(method: str, num_points: int, num_chains: int, like: Tensor) -> Any:
    """The module running the recursions for ``method`` on B * L chains of N points of
    tensors like ``like``."""
    if method == "auto":
        if _compiled.supports(like):
            return _compiled
        long_and_narrow = (
            num_points >= settings.PARALLEL_MIN_POINTS
            and num_chains <= settings.PARALLEL_MAX_CHAINS
        )
        method = "parallel" if long_and_narrow else "sequential"
    if method in ("compiled", "fused"):
        if not _compiled.supports(like):
            raise invalid(
                "method",
                f"{method!r} only for float32 or float64 tensors on the CPU",
                f"{like.dtype} on {like.device}",
            )
        return _compiled
    if method == "sequential":
        return _kalman
    return _SCAN_CHECKPOINTED if num_points >= settings.CHECKPOINT_MIN_POINTS else _scan


# --------------------------------------------------------------------------------------
# the state-space model of one group of channels


class _Group:
    """Channels sharing a state dimension m, stacked; all tensors time-first.

    The matrices are evaluated once per distinct step of the batch
    (:func:`gpvae.gp._transitions.group_transitions`) and gathered.

    Attributes:
        channels: the G channel indices of the group.
        A, Q: (N, B, G, m, m) transitions into each step (entry 0 unused).
        H: (G, 1, m) measurement rows.
        Pinf: (G, m, m) stationary covariances.
        still: (N, B) bool, True where dt = 0 (repeated points and padding).
    """

    def __init__(
        self,
        kernels: Sequence[Kernel],
        channels: list[int],
        steps: Tensor,
        index: Tensor,
        still: Tensor | None = None,
    ) -> None:
        self.channels = channels
        # the channels as an index: a slice (a view, no gather) when they are consecutive
        first, last = channels[0], channels[-1]
        consecutive = channels == list(range(first, last + 1))
        self.sel: slice | list[int] = slice(first, last + 1) if consecutive else channels
        self._index = index  # (N, B) into steps
        # (N, B): A = I and Q = 0 there (given by _groups when it has it: steps[index] == 0)
        self.still = steps[index] == 0 if still is None else still
        mats, self._chol_q, self._chol0 = group_tables([kernels[c] for c in channels], steps)
        dtype = steps.dtype
        self._A_table = mats.A.to(dtype)  # (K, G, m, m)
        self._Q_table = mats.Q.to(dtype)
        self.H = mats.H.to(dtype)  # (G, 1, m)
        self.Pinf = mats.Pinf.to(dtype)  # (G, m, m)

    @cached_property
    def A(self) -> Tensor:
        """(N, B, G, m, m) transitions (gathered from the table)."""
        return self._A_table[self._index]

    @cached_property
    def Q(self) -> Tensor:
        """(N, B, G, m, m) process noise (gathered from the table)."""
        return self._Q_table[self._index]

    @cached_property
    def _chol_table(self) -> Tensor:
        """(K, G, m, m) lower factors of ``Q + jitter`` (see
        :func:`gpvae.gp._kalman.process_noise_factors`), one per distinct step."""
        if self._chol_q is not None and self._chol_q.dtype == self._Q_table.dtype:
            return self._chol_q  # made with the tables (gpvae.gp._transitions.group_tables)
        return _kalman.process_noise_factors(self._Q_table, self.Pinf)

    @cached_property
    def chol0(self) -> Tensor:
        """(G, m, m) lower factors of Pinf."""
        if self._chol0 is not None and self._chol0.dtype == self.Pinf.dtype:
            return self._chol0
        return _kalman._cholesky(self.Pinf, "stationary covariance Pinf")

    def matrices(self, ops: Any) -> tuple[Any, Any, Any]:
        """``(A, Q, chol_q)`` for the recursions of ``ops``: tables read through the step
        index for the compiled loops, else full tensors (chol_q (N - 1, B, G, m, m))."""
        if ops is _compiled:
            return tuple(  # type: ignore[return-value]
                _compiled.Indexed(t, self._index)
                for t in (self._A_table, self._Q_table, self._chol_table)
            )
        return self.A, self.Q, self._chol_table[self._index[1:]]

    def observe(self, states: Tensor) -> Tensor:
        """States (N, B, G, m, S') -> function values (N, B, G, S')."""
        # a sum of m scaled slices: a broadcast product summed over the short state axis
        # costs several times more on CPU (forward and backward)
        h = self.H[:, 0, :]  # (G, m)
        out = states[..., 0, :] * h[:, 0, None]
        for k in range(1, h.shape[-1]):
            out = out + states[..., k, :] * h[:, k, None]
        return out

    def variances(self, P: Tensor) -> Tensor:
        """Covariances (N, B, G, m, m) -> ``H P H^T`` (N, B, G)."""
        m = P.shape[-1]
        HtH = (self.H.transpose(-1, -2) * self.H).reshape(-1, m * m)  # (G, m m)
        # a product summed over one contiguous axis: several times cheaper on CPU than a
        # sum over the last two
        return (P.reshape(*P.shape[:-2], m * m) * HtH).sum(-1)


def _step_index(x_filled: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    """The distinct steps (K,) of sorted x (B, N) (``dt_0 = 0``), the index (N, B) of each
    point's step into them and, on the CPU, where the step is 0 (N, B), else None.

    On the CPU in numpy: the same values as torch's ``diff`` and sorted ``unique`` (the
    same differences; an index into the sorted distinct values), for a few microseconds
    each instead of a dozen small torch operations; when every series has the same steps
    (all series on one grid, as in most training batches) the distinct steps of the first
    series are those of all, and its index is every series' index."""
    numpy_ok = x_filled.dtype in (torch.float32, torch.float64)
    if numpy_ok and x_filled.device.type == "cpu" and not x_filled.requires_grad:
        x = x_filled.numpy()
        dt = np.empty_like(x)  # (B, N): np.diff's values, without its prepend's concatenation
        dt[:, :1] = 0.0
        np.subtract(x[:, 1:], x[:, :-1], out=dt[:, 1:])
        if (dt == dt[:1]).all():  # every series has the same steps (e.g. a shared grid)
            steps, first = _unique_inverse(dt[0])
            index_t = np.repeat(first[:, None], dt.shape[0], axis=1)
        else:
            steps, index = np.unique(dt, return_inverse=True)
            index_t = np.ascontiguousarray(index.reshape(dt.shape).T, dtype=np.int64)  # (N, B)
        still = np.ascontiguousarray(dt.T == 0)
        return torch.from_numpy(steps), torch.from_numpy(index_t), torch.from_numpy(still)
    dt_t = torch.diff(x_filled, dim=1, prepend=x_filled[:, :1])  # (B, N), dt_0 = 0
    steps_t, inverse = torch.unique(dt_t, return_inverse=True)  # (K,), (B, N)
    return steps_t, inverse.movedim(1, 0).contiguous(), None


def _unique_inverse(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(v, return_inverse=True)`` for a 1-D array without NaN (the sorted distinct
    values, and int64 indices into them), by a sort and a binary search: the same arrays,
    for ~15 instead of ~100 us at 48 points (np.unique's Python layer dominates there)."""
    s = np.sort(v)
    keep = np.empty(s.shape, dtype=bool)
    keep[:1] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    distinct = s[keep]
    return distinct, np.searchsorted(distinct, v).astype(np.int64, copy=False)


def _groups(kernels: Sequence[Kernel], x_filled: Tensor) -> list[_Group]:
    """Group channels by state dimension and build their transitions for sorted x (B, N)."""
    steps, index, still = _step_index(x_filled)
    by_dim: dict[int, list[int]] = {}
    for c, k in enumerate(kernels):
        by_dim.setdefault(k.state_dim, []).append(c)
    return [_Group(kernels, channels, steps, index, still) for channels in by_dim.values()]


def _to_channels(parts: list[Tensor], groups: list[_Group], dim: int = -1) -> Tensor:
    """Per-group tensors with G_g channels on axis ``dim`` -> L channels in channel order."""
    order = [c for g in groups for c in g.channels]
    stacked = torch.cat(parts, dim=dim) if len(parts) > 1 else parts[0]  # in group order
    if order == sorted(order):
        return stacked
    inverse = torch.tensor(sorted(range(len(order)), key=order.__getitem__))
    return stacked.index_select(dim, inverse.to(stacked.device))


# --------------------------------------------------------------------------------------
# the conditioned chain


class _Chain:
    """Kalman filter and smoother on a sorted sequence, for every channel group.

    Args:
        kernels: L state-space kernels.
        x_sorted: (B, N) sorted index points.
        mean: (B, N, L) pseudo-observation means (finite).
        var: (B, N, L) pseudo-observation variances, finite and positive where included.
        included: (B, N, L) bool.
        method: one of :data:`METHODS`.
    """

    def __init__(
        self,
        kernels: Sequence[Kernel],
        x_sorted: Tensor,
        mean: Tensor,
        var: Tensor,
        included: Tensor,
        method: str,
    ) -> None:
        B, N = x_sorted.shape
        self.ops = ops = _ops(method, N, B * len(kernels), mean)
        self.dtype = mean.dtype
        # float64 for the compiled loops and float32 inputs (cast once here, the results
        # cast back to self.dtype; see _work_dtype)
        work = _work_dtype(ops, mean)
        x_sorted, mean, var = x_sorted.to(work), mean.to(work), var.to(work)
        self._mean, self._var, self._included = mean, var, included  # (B, N, L), for kl()
        self.groups = _groups(kernels, x_sorted)
        safe_var = torch.where(included, var, torch.ones_like(var))  # (B, N, L)
        w = torch.where(included, 1.0 / safe_var, torch.zeros_like(var))  # (B, N, L)
        self.included = included.movedim(1, 0)  # (N, B, L)
        self.y = torch.where(included, mean, torch.zeros_like(mean)).movedim(1, 0)  # (N, B, L)
        self.sd = safe_var.sqrt().movedim(1, 0)  # (N, B, L)
        w = w.movedim(1, 0)  # (N, B, L)
        log_var = safe_var.log().movedim(1, 0)  # (N, B, L)
        self.mats = [g.matrices(ops) for g in self.groups]  # (A, Q, chol_q) per group
        self._own_means: list[Tensor] | None = None  # see _smoothed_f
        self.cov = [
            ops.filter_covariances(A, Q, g.Pinf, g.H, w[..., g.sel], log_var[..., g.sel], g.still)
            for g, (A, Q, _) in zip(self.groups, self.mats)
        ]

    @cached_property
    def _filtered(self) -> list[tuple[Tensor, Tensor]]:
        """Per group: filtered means (N, B, G, m, 1) and innovations (N, B, G, 1) of y."""
        return [
            self.ops.filter_means(A, g.H, cov.gain, self.y[..., g.sel, None])
            for g, (A, _, _), cov in zip(self.groups, self.mats, self.cov)
        ]

    def _smoothed_f(self, y: Tensor) -> list[Tensor]:
        """Smoothed means of f for data y (N, B, L, S'): per group (N, B, G, S').

        The pseudo-observations ride along as one more data column; when their own filter
        has not run yet (one pass of each recursion instead of two), their filtered means,
        innovations and smoothed means are kept for :meth:`log_marginal` and
        :attr:`smoothed`.
        """
        with_own = "_filtered" not in self.__dict__
        out, filtered, own_means = [], [], []
        for g, (A, _, _), cov in zip(self.groups, self.mats, self.cov):
            # the pseudo-observations' column always rides along, so that a draw comes out
            # bit for bit the same whether or not their filter ran before (the parallel
            # scan's rounding depends on the number of columns)
            data = torch.cat([self.y[..., g.sel, None], y[:, :, g.sel]], dim=-1)
            m_filt, innov = self.ops.filter_means(A, g.H, cov.gain, data)
            f = g.observe(self.ops.smooth_means(A, cov.smooth_gain, m_filt))
            if with_own:
                filtered.append((m_filt[..., :1], innov[..., :1]))
                own_means.append(f[..., :1])
            out.append(f[..., 1:])
        if with_own:
            self.__dict__["_filtered"] = filtered  # the cached_property's value
            self._own_means = own_means
        return out

    def log_marginal(self) -> Tensor:
        """(B, L) log N(mean | 0, K + diag var) over included points."""
        return self._log_marginal_work().to(self.dtype)

    def _log_marginal_work(self) -> Tensor:
        """:meth:`log_marginal` in the working dtype."""
        parts = []
        for g, cov, (_, v) in zip(self.groups, self.cov, self._filtered):
            v = v[..., 0]  # (N, B, G)
            terms = -0.5 * (math.log(2 * math.pi) + cov.log_s + cov.inv_s * v**2)  # (N, B, G)
            inc = self.included[..., g.sel]
            parts.append(torch.where(inc, terms, torch.zeros_like(terms)).sum(dim=0))
        return _to_channels(parts, self.groups)

    def kl(self) -> Tensor:
        """(B, L) KL(q || p) as :meth:`gpvae.gp.base.GPPosterior.kl`, computed in the working
        dtype and then cast: from float32 results the difference of the two large sums
        would lose about 1e-4 of the KL (their rounding), float64 keeps it to ~1e-7."""
        post_mean, post_var = self._smoothed_work
        expected = expected_pseudo_loglik(
            self._mean, self._var, self._included, post_mean, post_var
        )
        return (expected - self._log_marginal_work()).to(self.dtype)

    @cached_property
    def smoothed(self) -> tuple[Tensor, Tensor]:
        """Smoothed mean and variance of f, (B, N, L) each."""
        mean, var = self._smoothed_work
        return mean.to(self.dtype), var.to(self.dtype)

    @cached_property
    def _smoothed_work(self) -> tuple[Tensor, Tensor]:
        """:attr:`smoothed` in the working dtype."""
        means, variances = [], []
        own_means = self._own_means  # smoothed along with a sample's data, if it ran first
        for i, (g, (A, _, _), cov, (m_filt, _)) in enumerate(
            zip(self.groups, self.mats, self.cov, self._filtered)
        ):
            if own_means is None:
                means.append(g.observe(self.ops.smooth_means(A, cov.smooth_gain, m_filt)))
            else:
                means.append(own_means[i])
            variances.append(g.variances(self.ops.smooth_covariances(cov)))  # (N, B, G)
        mean = _to_channels([m[..., 0] for m in means], self.groups).movedim(0, 1)
        var = _to_channels(variances, self.groups).movedim(0, 1)
        return mean, var

    def sample(self, num_samples: int, generator: torch.Generator | None) -> Tensor:
        """Joint posterior samples of f (S, B, N, L) by the simulation smoother.

        Durbin & Koopman (2002): with a joint prior sample ``f+`` and synthetic data ``y+ =
        f+ + sqrt(var) e``, ``f+ + E[f | y - y+]`` is a posterior sample.
        """
        prior = [
            g.observe(
                self.ops.prior_states(A, Q, g.Pinf, num_samples, generator, chol_q, self.dtype)
            )
            for g, (A, Q, chol_q) in zip(self.groups, self.mats)
        ]  # per group (N, B, G, S)
        f_prior = _to_channels(prior, self.groups, dim=-2)  # (N, B, L, S)
        e = batch_normal(f_prior.shape, 1, generator, self.dtype, f_prior.device).to(f_prior.dtype)
        y_prior = f_prior + self.sd[..., None] * e  # (N, B, L, S)
        resid = self.y[..., None] - y_prior
        resid = torch.where(self.included[..., None], resid, torch.zeros_like(resid))
        correction = _to_channels(self._smoothed_f(resid), self.groups, dim=-2)  # (N, B, L, S)
        return (f_prior + correction).permute(3, 1, 0, 2).to(self.dtype)  # (S, B, N, L)


# --------------------------------------------------------------------------------------
# public API


class MarkovGPPosterior(GPPosterior):
    """GP posterior by Kalman filtering and RTS smoothing, O(N) per series and channel.

    Args:
        kernels: L kernels with a state-space form, one per latent channel.
        x: (B, N, 1) index points, sorted non-decreasing along N on valid points (repeats
            allowed); anything on padding.
        mean: (B, N, L) pseudo-observation means.
        var: (B, N, L) pseudo-observation variances, > 0, +inf to exclude a point.
        valid: (B, N) bool, False for padding, or None (no padding).
        method: ``"sequential"`` (a loop over the N points, the reference), ``"parallel"``
            (associative scans: O(N) work, O(log N) sequential steps) or ``"auto"`` (parallel
            from :data:`~gpvae.settings.PARALLEL_MIN_POINTS` points with at most
            :data:`~gpvae.settings.PARALLEL_MAX_CHAINS` chains B * L). Both give the same
            results up to rounding, and the same samples for the same generator.

    Raises:
        ShapeError: ``x`` has d != 1, or shapes disagree.
        ValidationError: unsorted ``x``; a ``kernel`` without a state-space form; bad ``var``;
            unknown ``method``.
    """

    def __init__(
        self,
        kernels: Sequence[Kernel],
        x: Tensor,
        mean: Tensor,
        var: Tensor,
        valid: Tensor | None = None,
        method: str = "auto",
    ) -> None:
        self.method = _check_method(method)
        self.kernels = _check_kernels(kernels)
        x, valid = check_condition_inputs(x, mean, var, valid, len(self.kernels))
        self._x_sorted = _prepared_x(x, valid)  # (B, N)
        self.x, self.mean, self.var, self.valid = x, mean, var, valid
        self._fused_kl: Tensor | None = None  # the KL of the last fused sample()
        self._fused_kl_grad = False  # whether it was computed with gradients enabled
        self._fused_layout = "auto"  # buffers of the fused pass (see _fused.sample_and_kl)

    @cached_property
    def _chain(self) -> _Chain:
        return _Chain(self.kernels, self._x_sorted, self.mean, self.var, self.included, self.method)

    @property
    def log_marginal(self) -> Tensor:
        """(B, L) log N(mean | 0, K + diag(var)) over the included points of each channel."""
        return self._chain.log_marginal()

    def marginals(self) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of f at ``x``: two (B, N, L) tensors.

        At padding they are those at the valid point whose index the padding was given (the
        previous valid point, or the first one for leading padding).
        """
        return self._chain.smoothed

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Joint posterior samples of f at ``x``, reparameterised: (S, B, N, L).

        With the fused pass (method ``"fused"``, or ``"auto"`` on the CPU) the KL comes out
        of the same pass and :meth:`kl` returns it.

        Args:
            num_samples: S.
            generator: random number generator, or None for the global one.
        """
        num_samples = check_num_samples(num_samples)
        groups = self._fused_groups
        if groups is None:
            return self._chain.sample(num_samples, generator)
        draws, kls = _fused.sample_and_kl(
            groups, self.mean, self.var, self.included, num_samples, generator, self._fused_layout
        )
        self._fused_kl = _to_channels(kls, groups).to(self.mean.dtype)
        self._fused_kl_grad = torch.is_grad_enabled()
        f = _to_channels(draws, groups)  # (S, B, N, L)
        # one group on struct-of-arrays buffers (the usual case): already a contiguous
        # (S, B, N, L) in the model's dtype, the decoder's input layout, returned as it is;
        # else one copy to the dtype and layout (a float64 permuted view stays a view: ``to``
        # returns a tensor of the right dtype as it is, whatever memory_format asks)
        return f.to(self.mean.dtype, memory_format=torch.contiguous_format)

    def kl(self) -> Tensor:
        """(B, L) KL(q || p); see :meth:`gpvae.gp.base.GPPosterior.kl`."""
        if self._fused_kl is not None and self._fused_kl_grad == torch.is_grad_enabled():
            return self._fused_kl
        groups = self._fused_groups
        if groups is None:
            return self._chain.kl()
        _, kls = _fused.sample_and_kl(
            groups, self.mean, self.var, self.included, 0, None, self._fused_layout
        )
        return _to_channels(kls, groups).to(self.mean.dtype)

    @cached_property
    def _fused_groups(self) -> list[_Group] | None:
        """The channel groups (float64 tables) when sample and KL take the fused pass."""
        if self.method not in ("auto", "fused"):
            return None
        B, N = self._x_sorted.shape
        if _ops(self.method, N, B * len(self.kernels), self.mean) is not _compiled:
            return None
        groups = _groups(self.kernels, self._x_sorted.to(torch.float64))
        return groups if _fused.supports_groups(groups) else None

    def _merged(self, x_new: Tensor) -> tuple[_Chain, Tensor]:
        """The chain on the sorted union of ``x`` and ``x_new`` (B, M, 1), and where the new
        points landed (B, M)."""
        x_new, _ = check_index_points(x_new, name="x_new")
        _check_one_dim(x_new, "x_new")
        B, N = self._x_sorted.shape
        if x_new.shape[0] != B:
            raise ShapeError(
                f"x_new: expected shape ({B}, M, 1) to match x, found {tuple(x_new.shape)}"
            )
        M, L = x_new.shape[1], self.mean.shape[-1]
        x_all = torch.cat([self._x_sorted, x_new[..., 0].detach().to(self._x_sorted.dtype)], 1)
        x_sorted, order = torch.sort(x_all, dim=1, stable=True)  # (B, N + M)
        position = torch.argsort(order, dim=1)[:, N:]  # (B, M)
        idx = order[..., None].expand(B, N + M, L)  # (B, N + M, L)
        pad_value = self.mean.new_ones(B, M, L)
        mean = torch.cat([self.mean, pad_value], 1).gather(1, idx)  # (B, N + M, L)
        var = torch.cat([self.var, pad_value], 1).gather(1, idx)
        inc = torch.cat([self.included, pad_value.bool().logical_not()], 1).gather(1, idx)
        return _Chain(self.kernels, x_sorted, mean, var, inc, self.method), position

    def predict(self, x_new: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of f at ``x_new``.

        Args:
            x_new: (B, M, 1) index points, in any order (may repeat or equal points of ``x``).

        Returns:
            Two (B, M, L) tensors.
        """
        chain, position = self._merged(x_new)
        mean, var = chain.smoothed  # (B, N + M, L)
        idx = position[..., None].expand(-1, -1, mean.shape[-1])  # (B, M, L)
        return mean.gather(1, idx), var.gather(1, idx)

    def sample_at(
        self, x_new: Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Joint posterior samples of f at ``x_new`` (B, M, 1), reparameterised: (S, B, M, L).

        Args:
            x_new: (B, M, 1) index points, in any order.
            num_samples: S.
            generator: random number generator, or None for the global one.
        """
        num_samples = check_num_samples(num_samples)
        chain, position = self._merged(x_new)
        f = chain.sample(num_samples, generator)  # (S, B, N + M, L)
        idx = position[None, ..., None].expand(num_samples, -1, -1, f.shape[-1])
        return f.gather(2, idx)


def sample_prior_markov(
    kernels: Sequence[Kernel],
    x: Tensor,
    valid: Tensor | None,
    num_samples: int,
    generator: torch.Generator | None = None,
    method: str = "auto",
) -> Tensor:
    """Joint GP prior samples at sorted 1-D index points in O(N), reparameterised.

    Args:
        kernels: L kernels with a state-space form, one per latent channel.
        x: (B, N, 1) index points, sorted along N on valid points (anything on padding).
        valid: (B, N) bool, False for padding, or None.
        num_samples: S.
        generator: random number generator, or None for the global one.
        method: ``"sequential"``, ``"parallel"`` or ``"auto"``, as for
            :class:`MarkovGPPosterior` (the same draws for the same generator).

    Returns:
        (S, B, N, L) samples; at padding, the value at the previous valid point (the first
        one for leading padding).
    """
    method = _check_method(method)
    kernels = _check_kernels(kernels)
    x, valid = check_index_points(x, valid)
    num_samples = check_num_samples(num_samples)
    x_sorted = _prepared_x(x, valid)  # (B, N)
    ops = _ops(method, x_sorted.shape[1], x_sorted.shape[0] * len(kernels), x_sorted)
    dtype = torch.promote_types(x_sorted.dtype, kernels[0].state_space().Pinf.dtype)
    work = _work_dtype(ops, x_sorted.new_empty(0, dtype=dtype))
    groups = _groups(kernels, x_sorted.to(work))
    parts = [
        g.observe(
            ops.prior_states(
                *g.matrices(ops)[:2], g.Pinf, num_samples, generator, g.matrices(ops)[2], dtype
            )
        )
        for g in groups
    ]  # per group (N, B, G, S)
    f = _to_channels(parts, groups, dim=-2).permute(3, 1, 0, 2)  # (S, B, N, L)
    return f.to(dtype)


def prior_paths(kernels: Sequence[Kernel], x_sorted: Tensor, eps: Tensor) -> Tensor:
    """Prior paths driven by given standard-normal noise, in float64 (no new randomness).

    ``s_0 = chol(Pinf) e_0``, ``s_n = A_n s_{n-1} + chol(Q_n + jitter) e_n`` (jitter as in
    :func:`gpvae.gp._kalman.process_noise_factors`), ``f_n = H s_n``; channels of one state
    dimension m use the first m noise entries. The recursion runs compiled on the CPU.

    Args:
        kernels: L kernels with a state-space form.
        x_sorted: (B, N) sorted index points (padding already filled).
        eps: (S, B, N, L, m_max) standard normal noise, m_max >= every state dimension.

    Returns:
        (S, B, N, L) float64 paths.
    """
    kernels = _check_kernels(kernels)
    x64 = x_sorted.to(torch.float64)
    groups = _groups(kernels, x64)
    ops: Any = _compiled if _compiled.supports(x64) else _kalman
    parts = []
    for g in groups:
        A, _, chol_q = g.matrices(ops)
        m = g.Pinf.shape[-1]
        e = eps[:, :, :, g.sel, :m].to(torch.float64).permute(2, 1, 3, 4, 0)  # (N,B,G,m,S)
        state0 = _kalman._cholesky(g.Pinf, "stationary covariance Pinf") @ e[0]  # (B, G, m, S)
        if ops is _compiled:
            states = _compiled.linear_states(A, chol_q, state0, e[1:])
        else:
            states = _kalman._LinearRecursion.apply(A, state0, chol_q @ e[1:])
        parts.append(g.observe(states))  # (N, B, G, S)
    return _to_channels(parts, groups, dim=-2).permute(3, 1, 0, 2)  # (S, B, N, L)
