"""Kalman filter, RTS smoother and simulation smoother for the markov backend.

Every function works on a *group* of G latent channels whose kernels share the state
dimension m, laid out time-first so that the Python loop over the N steps slices contiguous
memory. Shapes: N steps, B series, G channels of the group, m state dimension, S' a batch of
data vectors that share the covariances (1 for the pseudo-observations, S for samples), kept
as the last axis so that every state update is one small matrix-matrix product per (B, G).

- ``A``, ``Q``: (N, B, G, m, m) transitions from step n - 1 to n (entry 0 is unused; the
  state at step 0 is N(0, Pinf)).
- ``Pinf``: (G, m, m) stationary covariances; ``H``: (G, 1, m) measurement rows.
- ``w``: (N, B, G) observation precisions ``1 / var``, 0 where a point is excluded.

The update is written with the precision ``w`` so that ``var = +inf`` (``w = 0``) is an exact
no-op: ``K = P H^T w / (1 + w H P H^T)``. The covariance recursions do not depend on the data,
so they run once and the mean recursions are batched over S' data vectors; posterior samples
use the simulation smoother of Durbin & Koopman (2002): a prior sample plus the smoothed mean
of the residual data.

Each sequential recursion (filter covariances and means, smoother covariances and means, the
prior-sample recursion) is a ``torch.autograd.Function`` whose backward pass is the adjoint
recursion, written out and checked with ``gradcheck`` in the tests: recorded op by op, every
step would add about ten tiny autograd nodes, whose overhead (not the m x m arithmetic) would
dominate time and memory. Everything that does not depend on the carried adjoint is batched
over the N steps outside the loops. These Functions are differentiable once (no
double-backward).

References:
    S. Särkkä, "Bayesian Filtering and Smoothing", Cambridge University Press, 2013
    (Kalman filter, Alg. 4.1; Rauch-Tung-Striebel smoother, Th. 8.2).
    J. Durbin and S. J. Koopman, "A simple and efficient simulation smoother for state space
    time series analysis", Biometrika 89(3), 2002.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from gpvae.errors import NumericalError
from gpvae.gp.linalg import sym
from gpvae.rng import batch_normal

__all__ = [
    "Covariances",
    "filter_covariances",
    "filter_means",
    "prior_states",
    "process_noise_factors",
    "smooth_covariances",
    "smooth_means",
]


class Covariances(NamedTuple):
    """Data-independent results of the covariance recursions (see module docstring).

    Attributes:
        P_pred: (N, B, G, m, m) predicted covariances ``P_n^-`` (``P_0^- = Pinf``).
        P_filt: (N, B, G, m, m) filtered covariances ``P_n``.
        gain: (N, B, G, m, 1) Kalman gains ``K_n``.
        inv_s: (N, B, G) ``w / (1 + w H P^- H^T)``, the inverse innovation variance
            (0 where excluded).
        log_s: (N, B, G) ``log(H P^- H^T + var)`` (finite placeholder where excluded).
        smooth_gain: (N - 1, B, G, m, m) RTS gains ``G_n = P_n A_{n+1}^T (P_{n+1}^-)^{-1}``.
    """

    P_pred: Tensor
    P_filt: Tensor
    gain: Tensor
    inv_s: Tensor
    log_s: Tensor
    smooth_gain: Tensor


# --------------------------------------------------------------------------------------
# Kalman filter (Särkkä 2013, Alg. 4.1). Each backward loop runs the steps in the opposite
# order of its forward loop and carries the adjoint of the state the next step consumed.


def _covariance_recursion(
    A: Tensor, Q: Tensor, Pinf: Tensor, H: Tensor, w: Tensor
) -> tuple[Tensor, Tensor]:
    """The filter's covariance recursion; see :class:`_FilterCovariances`."""
    N = A.shape[0]
    Ht = H.transpose(-1, -2)  # (G, m, 1)
    A_n, At_n, Q_n = A.unbind(0), A.transpose(-1, -2).unbind(0), Q.unbind(0)
    w_n = w[..., None, None].unbind(0)  # N x (B, G, 1, 1)
    P = Pinf.expand(A.shape[1:])  # (B, G, m, m)
    preds: list[Tensor] = []
    filts: list[Tensor] = []
    for n in range(N):
        if n > 0:
            P = A_n[n] @ P @ At_n[n] + Q_n[n]  # (B, G, m, m)
        preds.append(P)
        u = P @ Ht  # (B, G, m, 1)
        c = w_n[n] / (1.0 + w_n[n] * (H @ u))  # (B, G, 1, 1): w / (1 + w H P H^T)
        P = torch.addcmul(P, c * u, u.transpose(-1, -2), value=-1.0)  # P - c u u^T
        filts.append(P)
    return torch.stack(preds), torch.stack(filts)


class _FilterCovariances(torch.autograd.Function):
    """``(A, Q, Pinf, H, w) -> (P^-, P)``, both (N, B, G, m, m), with an adjoint backward.

    Forward (Särkkä 2013, Alg. 4.1, written with the precision w): ``P^-_0 = Pinf``,
    ``P^-_n = A_n P_{n-1} A_n^T + Q_n``, ``u = P^-_n H^T``, ``s = H u``,
    ``c = w_n / (1 + w_n s)``, ``P_n = P^-_n - c u u^T``.
    """

    @staticmethod
    def forward(
        ctx: Any, A: Tensor, Q: Tensor, Pinf: Tensor, H: Tensor, w: Tensor
    ) -> tuple[Tensor, Tensor]:
        P_pred, P_filt = _covariance_recursion(A, Q, Pinf, H, w)
        ctx.save_for_backward(A, H, w, P_pred, P_filt)
        return P_pred, P_filt

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, g_pred: Tensor, g_filt: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        A, H, w, P_pred, P_filt = ctx.saved_tensors
        N = A.shape[0]
        Ht = H.transpose(-1, -2)  # (G, m, 1)
        # Everything that does not depend on the carried adjoint is batched over the N steps.
        u = P_pred @ Ht  # (N, B, G, m, 1)
        s = H @ u  # (N, B, G, 1, 1)
        wn = w[..., None, None]  # (N, B, G, 1, 1)
        c = wn / (1.0 + wn * s)  # (N, B, G, 1, 1)
        A_n, u_n, c_n = A.unbind(0), u.unbind(0), c.unbind(0)
        ut_n = u.transpose(-1, -2).unbind(0)
        g_pred_n, g_filt_n = g_pred.unbind(0), g_filt.unbind(0)
        b_pred: list[Tensor] = [g_pred_n[0]] * N  # adjoints of P^-_n
        b_c: list[Tensor] = [c_n[0]] * N  # adjoints of c_n
        b_u: list[Tensor] = [u_n[0]] * N  # adjoints of u_n
        carry = torch.zeros_like(g_filt_n[0])  # adjoint of P_n from step n + 1
        for n in range(N - 1, -1, -1):
            bP = g_filt_n[n] + carry  # adjoint of P_n = P^-_n - c u u^T
            bc = -(ut_n[n] @ (bP @ u_n[n]))  # (B, G, 1, 1)
            # u enters through c u u^T and through c(s), s = H u: dc/ds = -c^2.
            bu = -c_n[n] * ((bP + bP.transpose(-1, -2)) @ u_n[n]) - (c_n[n] ** 2 * bc) * Ht
            bPm = bP + bu * H + g_pred_n[n]  # u = P^- H^T; bu * H is the outer product bu H
            b_pred[n], b_c[n], b_u[n] = bPm, bc, bu
            if n > 0:
                carry = A_n[n].transpose(-1, -2) @ bPm @ A_n[n]
        bPm_all = torch.stack(b_pred)  # (N, B, G, m, m)
        bc_all = torch.stack(b_c)  # (N, B, G, 1, 1)
        bu_all = torch.stack(b_u)  # (N, B, G, m, 1)
        bs_all = -(c**2) * bc_all  # (N, B, G, 1, 1)
        g_w = (bc_all * (1.0 - c * s) ** 2)[..., 0, 0]  # dc/dw = 1 / (1 + w s)^2
        g_H = (bs_all * u.transpose(-1, -2) + bu_all.transpose(-1, -2) @ P_pred).sum(dim=(0, 1))
        g_Q = bPm_all.clone()
        g_Q[0] = 0.0
        g_A = torch.zeros_like(A)
        bA = bPm_all[1:] @ A[1:]  # (N-1, B, G, m, m)
        P_prev = P_filt[:-1]
        g_A[1:] = bA @ P_prev.transpose(-1, -2) + bPm_all[1:].transpose(-1, -2) @ A[1:] @ P_prev
        g_Pinf = bPm_all[0].sum(dim=0)  # Pinf was broadcast over B
        return g_A, g_Q, g_Pinf, g_H, g_w


def filter_covariances(
    A: Tensor, Q: Tensor, Pinf: Tensor, H: Tensor, w: Tensor, log_var: Tensor, still: Tensor
) -> Covariances:
    """Covariance part of the Kalman filter, and the RTS gains.

    Args:
        A, Q: (N, B, G, m, m) transitions.
        Pinf: (G, m, m) stationary covariances (state covariance at step 0).
        H: (G, 1, m) measurement rows.
        w: (N, B, G) precisions, 0 where excluded.
        log_var: (N, B, G) ``log(var)`` where included, any finite value elsewhere.
        still: (N, B) bool, True where ``dt_n = 0`` (repeated points, padding): there
            ``A_n = I``, ``Q_n = 0`` and the RTS gain is exactly I, set without a solve (the
            filtered covariance may be singular there, e.g. after a very precise point).

    Returns:
        :class:`Covariances`.

    Raises:
        NumericalError: a predicted covariance is singular to working precision.
    """
    P_pred, P_filt = _FilterCovariances.apply(A, Q, Pinf, H, w)
    return gains(A, H, sym(P_pred), sym(P_filt), w, log_var, still)


def gains(
    A: Tensor,
    H: Tensor,
    P_pred: Tensor,
    P_filt: Tensor,
    w: Tensor,
    log_var: Tensor,
    still: Tensor,
) -> Covariances:
    """Kalman gains, innovation terms and RTS gains from the filter's covariances.

    Shared by the sequential and the parallel (scan) filters.

    Args:
        A: (N, B, G, m, m) transitions.
        H: (G, 1, m) measurement rows.
        P_pred, P_filt: (N, B, G, m, m) predicted and filtered covariances (symmetric).
        w: (N, B, G) precisions, 0 where excluded.
        log_var: (N, B, G) ``log(var)`` where included, any finite value elsewhere.
        still: (N, B) bool, True where ``dt_n = 0``: the RTS gain there is exactly I.

    Returns:
        :class:`Covariances`.

    Raises:
        NumericalError: a predicted covariance is singular to working precision.
    """
    Ph = P_pred @ H.transpose(-1, -2)  # (N, B, G, m, 1)
    s = (H @ Ph)[..., 0, 0]  # (N, B, G)
    ws = w * s
    inv_s = w / (1.0 + ws)  # (N, B, G)
    log_s = log_var + torch.log1p(ws)  # (N, B, G): log(s + var) = log(var) + log(1 + w s)
    gain = inv_s[..., None, None] * Ph  # (N, B, G, m, 1)
    # RTS gains G_n^T = (P_{n+1}^-)^{-1} A_{n+1} P_n, one batched solve (P^- symmetric).
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    still = still[1:, :, None, None, None]  # (N-1, B, 1, 1, 1)
    lhs = torch.where(still, eye, P_pred[1:])  # (N-1, B, G, m, m)
    rhs = torch.where(still, eye, A[1:] @ P_filt[:-1])
    Gt, info = torch.linalg.solve_ex(lhs, rhs)  # (N-1, B, G, m, m)
    if bool((info != 0).any()):
        raise NumericalError(
            "markov backend: a predicted state covariance is singular to working precision; "
            "pseudo-observation variances may be too small for this dtype (try float64 or a "
            "variance floor)"
        )
    return Covariances(P_pred, P_filt, gain, inv_s, log_s, Gt.transpose(-1, -2))


def _mean_recursion(A: Tensor, H: Tensor, gain: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The filter's mean recursion; see :class:`_FilterMeans`."""
    N, B, G, S = y.shape
    m = A.shape[-1]
    A_n, y_n, gain_n = A.unbind(0), y[..., None, :].unbind(0), gain.unbind(0)
    mean = y.new_zeros(B, G, m, S)  # (B, G, m, S')
    filts: list[Tensor] = []
    innovs: list[Tensor] = []
    for n in range(N):
        if n > 0:
            mean = A_n[n] @ mean  # (B, G, m, S')
        v = y_n[n] - H @ mean  # (B, G, 1, S')
        mean = torch.addcmul(mean, gain_n[n], v)  # (B, G, m, S'): m + K v
        filts.append(mean)
        innovs.append(v)
    return torch.stack(filts), torch.stack(innovs)[..., 0, :]


class _FilterMeans(torch.autograd.Function):
    """``(A, H, K, y) -> (m, v)``: filtered means (N, B, G, m, S') and innovations
    (N, B, G, S'), with an adjoint backward.

    Forward: ``m^-_0 = 0``, ``m^-_n = A_n m_{n-1}``, ``v_n = y_n - H m^-_n``,
    ``m_n = m^-_n + K_n v_n``.
    """

    @staticmethod
    def forward(ctx: Any, A: Tensor, H: Tensor, gain: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        m_filt, innov = _mean_recursion(A, H, gain, y)
        ctx.save_for_backward(A, H, gain, m_filt, innov)
        return m_filt, innov

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, g_mean: Tensor, g_innov: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        A, H, gain, m_filt, innov = ctx.saved_tensors
        N = A.shape[0]
        Ht = H.transpose(-1, -2)  # (G, m, 1)
        A_n, gain_n = A.unbind(0), gain.unbind(0)
        g_mean_n, g_innov_n = g_mean.unbind(0), g_innov[..., None, :].unbind(0)
        b_mean: list[Tensor] = [g_mean_n[0]] * N  # adjoints of m_n
        b_innov: list[Tensor] = [g_innov_n[0]] * N  # adjoints of v_n
        carry = torch.zeros_like(g_mean_n[0])  # adjoint of m_n from step n + 1
        for n in range(N - 1, -1, -1):
            bm = g_mean_n[n] + carry  # (B, G, m, S')
            bv = g_innov_n[n] + (gain_n[n] * bm).sum(dim=-2, keepdim=True)  # (B, G, 1, S')
            b_mean[n], b_innov[n] = bm, bv
            if n > 0:
                carry = A_n[n].transpose(-1, -2) @ (bm - Ht * bv)  # through m^-_n = A_n m_{n-1}
        bm_all = torch.stack(b_mean)  # (N, B, G, m, S')
        bv_all = torch.stack(b_innov)  # (N, B, G, 1, S')
        g_K = bm_all @ innov[..., None, :].transpose(-1, -2)  # (N, B, G, m, 1)
        g_A = torch.zeros_like(A)
        g_H = torch.zeros_like(H)
        if N > 1:
            m_prev = m_filt[:-1]  # (N-1, B, G, m, S')
            bmp = bm_all[1:] - Ht * bv_all[1:]  # adjoints of m^-_n, n >= 1
            g_A[1:] = bmp @ m_prev.transpose(-1, -2)
            g_H = -(bv_all[1:] @ (A[1:] @ m_prev).transpose(-1, -2)).sum(dim=(0, 1))
        return g_A, g_H, g_K, bv_all[..., 0, :]


def filter_means(A: Tensor, H: Tensor, gain: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean part of the Kalman filter for a batch of S' data vectors.

    Args:
        A: (N, B, G, m, m) transitions.
        H: (G, 1, m) measurement rows.
        gain: (N, B, G, m, 1) Kalman gains (0 where excluded).
        y: (N, B, G, S') data (any finite value where excluded).

    Returns:
        Filtered means (N, B, G, m, S') and innovations ``y_n - H m_n^-`` (N, B, G, S').
    """
    m_filt, innov = _FilterMeans.apply(A, H, gain, y)
    return m_filt, innov


# --------------------------------------------------------------------------------------
# RTS smoother (Särkkä 2013, Th. 8.2), with adjoint backward passes as for the filter.


class _SmoothMeans(torch.autograd.Function):
    """``(G, m, m^-) -> m^s``: ``m^s_{N-1} = m_{N-1}``,
    ``m^s_n = m_n + G_n (m^s_{n+1} - m^-_{n+1})``; shapes in :func:`smooth_means`."""

    @staticmethod
    def forward(ctx: Any, smooth_gain: Tensor, m_filt: Tensor, m_pred_next: Tensor) -> Tensor:
        N = m_filt.shape[0]
        m_filt_n, gain_n, pred_n = m_filt.unbind(0), smooth_gain.unbind(0), m_pred_next.unbind(0)
        mean = m_filt_n[-1]
        out = [mean]
        for n in range(N - 2, -1, -1):
            mean = m_filt_n[n] + gain_n[n] @ (mean - pred_n[n])  # (B, G, m, S')
            out.append(mean)
        out.reverse()
        m_smooth = torch.stack(out)
        ctx.save_for_backward(smooth_gain, m_smooth, m_pred_next)
        return m_smooth

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_smooth: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        smooth_gain, m_smooth, m_pred_next = ctx.saved_tensors
        N = m_smooth.shape[0]
        gain_t_n, g_n = smooth_gain.transpose(-1, -2).unbind(0), g_smooth.unbind(0)
        b_smooth: list[Tensor] = [g_n[0]] * N  # adjoints of m^s_n
        for n in range(N - 1):
            b_smooth[n + 1] = g_n[n + 1] + gain_t_n[n] @ b_smooth[n]
        b_all = torch.stack(b_smooth)  # (N, B, G, m, S'), also the adjoint of m_n
        b_diff = smooth_gain.transpose(-1, -2) @ b_all[:-1]  # adjoints of m^s_{n+1} - m^-_{n+1}
        g_gain = b_all[:-1] @ (m_smooth[1:] - m_pred_next).transpose(-1, -2)
        return g_gain, b_all, -b_diff


def smooth_means(A: Tensor, smooth_gain: Tensor, m_filt: Tensor) -> Tensor:
    """RTS smoother means.

    Args:
        A: (N, B, G, m, m) transitions.
        smooth_gain: (N - 1, B, G, m, m) RTS gains.
        m_filt: (N, B, G, m, S') filtered means.

    Returns:
        (N, B, G, m, S') smoothed means.
    """
    m_pred_next = A[1:] @ m_filt[:-1]  # (N-1, B, G, m, S')
    m_smooth: Tensor = _SmoothMeans.apply(smooth_gain, m_filt, m_pred_next)
    return m_smooth


class _SmoothCovariances(torch.autograd.Function):
    """``(G, P, P^-) -> P^s``: ``P^s_{N-1} = P_{N-1}``,
    ``P^s_n = P_n + G_n (P^s_{n+1} - P^-_{n+1}) G_n^T``; all (N, B, G, m, m) (G: N - 1)."""

    @staticmethod
    def forward(ctx: Any, smooth_gain: Tensor, P_filt: Tensor, P_pred: Tensor) -> Tensor:
        N = P_filt.shape[0]
        P_filt_n, P_pred_n = P_filt.unbind(0), P_pred.unbind(0)
        gain_n, gain_t_n = smooth_gain.unbind(0), smooth_gain.transpose(-1, -2).unbind(0)
        P = P_filt_n[-1]
        out = [P]
        for n in range(N - 2, -1, -1):
            P = P_filt_n[n] + gain_n[n] @ (P - P_pred_n[n + 1]) @ gain_t_n[n]  # (B, G, m, m)
            out.append(P)
        out.reverse()
        P_smooth = torch.stack(out)
        ctx.save_for_backward(smooth_gain, P_smooth, P_pred)
        return P_smooth

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_smooth: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        smooth_gain, P_smooth, P_pred = ctx.saved_tensors
        N = P_smooth.shape[0]
        gain_n, gain_t_n = smooth_gain.unbind(0), smooth_gain.transpose(-1, -2).unbind(0)
        g_n = g_smooth.unbind(0)
        b_smooth: list[Tensor] = [g_n[0]] * N  # adjoints of P^s_n
        for n in range(N - 1):
            b_smooth[n + 1] = g_n[n + 1] + gain_t_n[n] @ b_smooth[n] @ gain_n[n]
        b_all = torch.stack(b_smooth)  # (N, B, G, m, m), also the adjoint of P_n
        b_diff = smooth_gain.transpose(-1, -2) @ b_all[:-1] @ smooth_gain  # (N-1, B, G, m, m)
        diff = P_smooth[1:] - P_pred[1:]  # (N-1, B, G, m, m)
        bG = b_all[:-1] @ smooth_gain
        g_gain = bG @ diff.transpose(-1, -2) + b_all[:-1].transpose(-1, -2) @ smooth_gain @ diff
        g_pred = torch.zeros_like(P_pred)
        g_pred[1:] = -b_diff
        return g_gain, b_all, g_pred


def smooth_covariances(cov: Covariances) -> Tensor:
    """RTS smoother covariances.

    Args:
        cov: the filter's :class:`Covariances`.

    Returns:
        (N, B, G, m, m) smoothed covariances.
    """
    P_smooth: Tensor = _SmoothCovariances.apply(cov.smooth_gain, cov.P_filt, cov.P_pred)
    return sym(P_smooth)


def _cholesky(P: Tensor, what: str) -> Tensor:
    chol, info = torch.linalg.cholesky_ex(P)
    if bool((info != 0).any()):
        raise NumericalError(
            f"markov backend: the Cholesky factorisation of the {what} failed; the kernel's "
            "hyper-parameters may be extreme for this dtype (try float64)"
        )
    return chol


def process_noise_factors(Q: Tensor, Pinf: Tensor) -> Tensor:
    """Lower Cholesky factors of ``Q + jitter``, ``jitter = eps^(3/4) diag(Pinf)``.

    Args:
        Q: (..., G, m, m) process noise covariances.
        Pinf: (G, m, m) stationary covariances.

    Returns:
        (..., G, m, m).

    Raises:
        NumericalError: a covariance could not be factorised.
    """
    jitter = torch.finfo(Q.dtype).eps ** 0.75 * torch.diagonal(Pinf, dim1=-2, dim2=-1)  # (G, m)
    return _cholesky(Q + torch.diag_embed(jitter), "process noise Q")


def prior_states(
    A: Tensor,
    Q: Tensor,
    Pinf: Tensor,
    num_samples: int,
    generator: torch.Generator | None = None,
    chol_q: Tensor | None = None,
    noise_dtype: torch.dtype | None = None,
) -> Tensor:
    """Joint samples of the prior state sequence, reparameterised.

    ``s_0 = chol(Pinf) e_0`` and ``s_n = A_n s_{n-1} + chol(Q_n) e_n``. ``Q_n`` vanishes for
    ``dt = 0`` and is nearly singular for small steps, so its factorisation adds a jitter of
    ``eps^(3/4) diag(Pinf)`` (about 2e-12 relative in float64), negligible against the
    process noise.

    Args:
        A, Q: (N, B, G, m, m) transitions.
        Pinf: (G, m, m) stationary covariances.
        num_samples: S.
        generator: random number generator, or None for the global one.
        chol_q: (N - 1, B, G, m, m) :func:`process_noise_factors` of ``Q[1:]`` when already
            known, or None.
        noise_dtype: dtype of the normal draws (then cast to that of ``A``), None for that
            of ``A``: the same draws whatever dtype the recursion runs in.

    Returns:
        (N, B, G, m, S) states.

    Raises:
        NumericalError: a covariance could not be factorised.
    """
    state0, noise = prior_noise(A, Q, Pinf, num_samples, generator, chol_q, noise_dtype)
    states: Tensor = _LinearRecursion.apply(A, state0, noise)
    return states


def prior_noise(
    A: Tensor,
    Q: Tensor,
    Pinf: Tensor,
    num_samples: int,
    generator: torch.Generator | None = None,
    chol_q: Tensor | None = None,
    noise_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """The initial state and process-noise draws of a prior sample (shared by both paths).

    Args:
        A, Q: (N, B, G, m, m) transitions.
        Pinf: (G, m, m) stationary covariances.
        num_samples: S.
        generator: random number generator, or None for the global one.
        chol_q: (N - 1, B, G, m, m) factors of ``Q[1:]`` when known (see
            :func:`process_noise_factors`), or None.
        noise_dtype: dtype of the normal draws (then cast to that of ``A``), or None.

    Returns:
        ``s_0`` (B, G, m, S) and the noise terms ``chol(Q_n + jitter) e_n`` (N-1, B, G, m, S).
    """
    N, B, G, m, _ = A.shape
    if chol_q is None:
        chol_q = process_noise_factors(Q[1:], Pinf)  # (N-1, B, G, m, m)
    chol_0 = _cholesky(Pinf, "stationary covariance Pinf")  # (G, m, m)
    eps = batch_normal(
        (N, B, G, m, num_samples), 1, generator, noise_dtype or A.dtype, A.device
    ).to(A.dtype)
    return chol_0 @ eps[0], chol_q @ eps[1:]


class _LinearRecursion(torch.autograd.Function):
    """``(A, s_0, q) -> s``: ``s_n = A_n s_{n-1} + q_n`` for n >= 1, with an adjoint backward.

    Shapes: A (N, B, G, m, m), s_0 (B, G, m, S), q (N - 1, B, G, m, S), s (N, B, G, m, S).
    """

    @staticmethod
    def forward(ctx: Any, A: Tensor, state0: Tensor, noise: Tensor) -> Tensor:
        A_n, noise_n = A.unbind(0), noise.unbind(0)
        state = state0
        out = [state]
        for n in range(1, A.shape[0]):
            state = A_n[n] @ state + noise_n[n - 1]  # (B, G, m, S)
            out.append(state)
        states = torch.stack(out)
        ctx.save_for_backward(A, states)
        return states

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_states: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        A, states = ctx.saved_tensors
        N = A.shape[0]
        At_n, g_n = A.transpose(-1, -2).unbind(0), g_states.unbind(0)
        b: list[Tensor] = [g_n[0]] * N  # adjoints of s_n
        b[N - 1] = g_n[N - 1]
        for n in range(N - 1, 0, -1):
            b[n - 1] = g_n[n - 1] + At_n[n] @ b[n]
        b_all = torch.stack(b)  # (N, B, G, m, S)
        g_A = torch.zeros_like(A)
        g_A[1:] = b_all[1:] @ states[:-1].transpose(-1, -2)
        return g_A, b_all[0], b_all[1:]
