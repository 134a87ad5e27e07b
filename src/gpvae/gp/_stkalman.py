"""Kalman filter and RTS smoother along time for a spatial block of M whitened GPs.

The model (one per series b and channel l; the batch dimensions are (B, L)):

    w_i(t), i = 1..M   independent GPs in time with the temporal kernel's state space
                       (state x_i(t) in R^m, f-part h x_i(t), stationary covariance Pinf),
    f(p, t) = sum_i G[p, i] h x_i(t)  (+ an independent residual the filter never sees),

observed through Gaussian pseudo-observations ``y_n = f(p_n, t_n) + eps_n``, ``eps_n ~
N(0, v_n)``. With ``G`` the Cholesky factor of the sites' spatial covariance this is the exact
separable space x time GP (:class:`gpvae.kernels.SpaceTime`); with ``G = K_PZ chol(K_ZZ)^-T``
it is the projection onto M inducing sites Z (DTC / SVGP).

The data enter through their sufficient statistics per time step, summed over the points of
that step (so repeated points need no special case):

    J_t = G^T diag(sum w) G  (M, M),   h_t = G^T (sum w y)  (M,),   c_t = sum w y^2,

with ``w = 1 / v`` (0 where a point is excluded). The update is done in the state space
(dimension K = M m) through the well-conditioned ``C = I + R^T O^T W O R`` (``R R^T`` the
predicted covariance, ``O = G (x) h``), so its cost is O(K^3) per step however many sites
there are; forming the statistics costs O(S M^2) per step. The log-likelihood uses the
matrix determinant lemma; everything is recorded by autograd.

The state is ordered (M, m): component j of site i is entry ``i m + j``.
Shapes: B series, L channels, T time steps, M spatial block, m temporal state, K = M m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from gpvae.gp.linalg import jittered_cholesky, sym

__all__ = [
    "SmootherResult",
    "StateModel",
    "factor",
    "log_two_pi",
    "run_filter_smoother",
    "sample_prior_states",
    "smoothed_means",
]


def factor(mat: Tensor, jitter: float, what: str) -> Tensor:
    """Lower Cholesky factor of ``mat``, adding jitter only when the plain one fails."""
    chol, info = torch.linalg.cholesky_ex(mat)
    if not bool(info.any()):
        return chol
    return jittered_cholesky(mat, jitter, what)


@dataclass
class StateModel:
    """The temporal state space of every channel, padded to a common m.

    Attributes:
        h: (L, m) measurement rows (zeros on padded components).
        pinf: (L, m, m) stationary covariances (identity on padded components).
        A: (B, L, T, m, m) transitions into step t (entry 0 unused).
        Q: (B, L, T, m, m) process noise of the step into t (entry 0 unused).
        M: size of the spatial block.
    """

    h: Tensor
    pinf: Tensor
    A: Tensor
    Q: Tensor
    M: int

    @property
    def m(self) -> int:
        return int(self.h.shape[-1])

    @property
    def K(self) -> int:
        return self.M * self.m

    @cached_property
    def A_steps(self) -> tuple[Tensor, ...]:
        """``A[:, :, t]`` for every t, split once. Indexing A at every step instead would give
        each step its own backward node whose gradient is a whole (B, L, T, m, m) tensor, so
        the backward pass would cost O(T^2)."""
        return self.A.unbind(2)

    @cached_property
    def Q_steps(self) -> tuple[Tensor, ...]:
        """``Q[:, :, t]`` for every t, split once (see :attr:`A_steps`)."""
        return self.Q.unbind(2)

    def hx(self, v: Tensor, steps: bool = False) -> Tensor:
        """f-part of state vectors: (..., L, K) -> (..., L, M), or with ``steps``
        (..., L, T, K) -> (..., L, T, M)."""
        h = self.h[:, None, None, :] if steps else self.h[:, None, :]
        return (v.unflatten(-1, (self.M, self.m)) * h).sum(-1)

    def hx_rows(self, R: Tensor) -> Tensor:
        """f-part of the rows of state matrices: (..., K, N) -> (..., M, N)."""
        R4 = R.unflatten(-2, (self.M, self.m))  # (..., M, m, N)
        return (R4 * self.h[:, None, :, None]).sum(-2)

    def ht(self, g: Tensor) -> Tensor:
        """Transpose of :meth:`hx`: (..., M) -> (..., K)."""
        return (g[..., :, None] * self.h[:, None, :]).flatten(-2)

    def first(self) -> Tensor:
        """(L, K, K) stationary covariance ``I_M (x) Pinf``."""
        eye = torch.eye(self.M, dtype=self.h.dtype, device=self.h.device)
        return _kron_eye(eye, self.pinf)

    def predict_mean(self, mu: Tensor, t: int) -> Tensor:
        """``(I (x) A_t) mu`` for mu (..., B, L, K)."""
        x = mu.unflatten(-1, (self.M, self.m))  # (..., B, L, M, m)
        return (x @ self.A_steps[t].transpose(-1, -2)).flatten(-2)

    def predict_cov(self, P: Tensor, t: int) -> Tensor:
        """``(I (x) A_t) P (I (x) A_t)^T + I (x) Q_t`` for P (B, L, K, K)."""
        A, Q = self.A_steps[t], self.Q_steps[t]  # (B, L, m, m)
        P4 = P.unflatten(-1, (self.M, self.m)).unflatten(-3, (self.M, self.m))  # (B,L,M,m,M,m)
        P4 = torch.einsum("uvab,uvibjc,uvdc->uviajd", A, P4, A)
        eye = torch.eye(self.M, dtype=P.dtype, device=P.device)
        P4 = P4 + eye[:, None, :, None] * Q[:, :, None, :, None, :]
        return sym(P4.flatten(-2).flatten(-3, -2))


def _kron_eye(eye: Tensor, blocks: Tensor) -> Tensor:
    """``I_M (x) blocks[l]`` for blocks (L, m, m) -> (L, M m, M m)."""
    M, m = eye.shape[0], blocks.shape[-1]
    out = eye[None, :, None, :, None] * blocks[:, None, :, None, :]  # (L, M, m, M, m)
    return out.reshape(blocks.shape[0], M * m, M * m)


@dataclass
class SmootherResult:
    """What the filter and smoother give, and what the mean-only passes reuse.

    Attributes:
        log_lik: (B, L) sum over steps of the data part of the log marginal likelihood
            (without ``-1/2 sum log(2 pi v)``).
        mean: (B, L, T, K) smoothed state means.
        fcov: (B, L, T, M, M) smoothed covariance of the f-part (``h``-rows and columns).
        gain_r: per step, ``R_t Lc_t^-T`` (B, L, K, K) of the update.
        gain_c: per step, ``Lc_t`` (B, L, K, K).
        hr: per step, ``O``-projection of R: (B, L, M, K).
        smooth_gain: per step t < T - 1, the RTS gain (B, L, K, K).
    """

    log_lik: Tensor
    mean: Tensor
    fcov: Tensor
    gain_r: list[Tensor]
    gain_c: list[Tensor]
    hr: list[Tensor]
    smooth_gain: list[Tensor]


def run_filter_smoother(
    model: StateModel, J: Tensor, hvec: Tensor, c: Tensor, jitter: float
) -> SmootherResult:
    """Kalman filter and RTS smoother on the statistics of every step.

    Args:
        model: the temporal state space (B, L batch; T steps).
        J: (B, L, T, M, M) information matrices ``G^T W_t G``.
        hvec: (B, L, T, M) information vectors ``G^T W_t y_t``.
        c: (B, L, T) ``sum w y^2`` of each step.
        jitter: diagonal jitter if a covariance factorisation fails without it.

    Returns:
        A :class:`SmootherResult`.
    """
    B, L, T, _, _ = J.shape
    K = model.K
    dtype, device = J.dtype, J.device
    eye_k = torch.eye(K, dtype=dtype, device=device)
    mu = torch.zeros(B, L, K, dtype=dtype, device=device)
    P = model.first().to(dtype).expand(B, L, K, K)
    log_lik = torch.zeros(B, L, dtype=dtype, device=device)
    mf, Pf, mp, Pp, Pp_chol = [], [], [], [], []
    gain_r, gain_c, hrs = [], [], []
    # each step's statistics split once: indexing them per step would make the backward
    # pass add a whole (B, L, T, ...) gradient per step, O(T^2)
    J_steps, h_steps, c_steps = J.unbind(2), hvec.unbind(2), c.unbind(2)
    for t in range(T):
        if t > 0:
            mu = model.predict_mean(mu, t)
            P = model.predict_cov(P, t)
        R = factor(P, jitter, "predicted state covariance")  # (B, L, K, K)
        mp.append(mu)
        Pp.append(P)
        Pp_chol.append(R)
        HR = model.hx_rows(R)  # (B, L, M, K)
        Jt, ht = J_steps[t], h_steps[t]  # (B, L, M, M), (B, L, M)
        C = eye_k + HR.transpose(-1, -2) @ Jt @ HR  # (B, L, K, K)
        Lc = torch.linalg.cholesky(sym(C))
        mu_f = model.hx(mu)  # (B, L, M)
        g = ht - (Jt @ mu_f[..., None]).squeeze(-1)  # (B, L, M)
        b = (HR.transpose(-1, -2) @ g[..., None]).squeeze(-1)  # (B, L, K)
        z = torch.linalg.solve_triangular(Lc, b[..., None], upper=False)  # (B, L, K, 1)
        quad = (
            c_steps[t]
            - 2.0 * (mu_f * ht).sum(-1)
            + (mu_f * (Jt @ mu_f[..., None]).squeeze(-1)).sum(-1)
            - (z.squeeze(-1) ** 2).sum(-1)
        )
        log_det = 2.0 * torch.log(torch.diagonal(Lc, dim1=-2, dim2=-1)).sum(-1)
        log_lik = log_lik - 0.5 * (quad + log_det)
        RL = torch.linalg.solve_triangular(Lc, R.transpose(-1, -2), upper=False).transpose(-1, -2)
        mu = mu + (RL @ z).squeeze(-1)  # R Lc^-T z
        P = sym(RL @ RL.transpose(-1, -2))
        mf.append(mu)
        Pf.append(P)
        gain_r.append(RL)
        gain_c.append(Lc)
        hrs.append(HR)
    # RTS smoother
    ms, Ps = [mf[-1]], [Pf[-1]]
    gains: list[Tensor] = []
    for t in range(T - 2, -1, -1):
        A = model.A_steps[t + 1]  # (B, L, m, m)
        AP = _apply_a(model, A, Pf[t])  # (I (x) A) P_f: (B, L, K, K)
        gain = torch.cholesky_solve(AP, Pp_chol[t + 1]).transpose(-1, -2)  # P_f A^T P_p^-1
        m_s = mf[t] + (gain @ (ms[0] - mp[t + 1])[..., None]).squeeze(-1)
        P_s = Pf[t] + gain @ (Ps[0] - Pp[t + 1]) @ gain.transpose(-1, -2)
        ms.insert(0, m_s)
        Ps.insert(0, sym(P_s))
        gains.insert(0, gain)
    mean = torch.stack(ms, dim=2)  # (B, L, T, K)
    fcov = torch.stack([model.hx_rows(model.hx_rows(p).transpose(-1, -2)) for p in Ps], dim=2)
    return SmootherResult(log_lik, mean, fcov, gain_r, gain_c, hrs, gains)


def _apply_a(model: StateModel, A: Tensor, P: Tensor) -> Tensor:
    """``(I_M (x) A) P`` for A (B, L, m, m), P (B, L, K, N)."""
    P4 = P.unflatten(-2, (model.M, model.m))  # (B, L, M, m, N)
    return (A[:, :, None] @ P4).flatten(-3, -2)


def smoothed_means(model: StateModel, res: SmootherResult, J: Tensor, hvec: Tensor) -> Tensor:
    """Smoothed state means for other data through the same gains (linear in ``hvec``).

    The data sets ride in the last dimension, so every step is one matrix product per
    (series, channel) for all of them.

    Args:
        model: the state space the gains were computed with.
        res: the filter and smoother of the same ``J``.
        J: (B, L, T, M, M) as given to :func:`run_filter_smoother`.
        hvec: (S, B, L, T, M) information vectors of S data sets.

    Returns:
        (S, B, L, T, K) smoothed means.
    """
    T = J.shape[2]
    h = hvec.permute(1, 2, 3, 4, 0)  # (B, L, T, M, S)
    B, L, _, _, S = h.shape
    mu = h.new_zeros(B, L, model.K, S)
    mf, mp = [], []
    h_steps, J_steps = h.unbind(2), J.unbind(2)  # split once (see run_filter_smoother)
    for t in range(T):
        if t > 0:
            mu = _apply_a(model, model.A_steps[t], mu)
        mp.append(mu)
        g = h_steps[t] - J_steps[t] @ model.hx_rows(mu)  # (B, L, M, S)
        z = torch.linalg.solve_triangular(
            res.gain_c[t], res.hr[t].transpose(-1, -2) @ g, upper=False
        )  # (B, L, K, S)
        mu = mu + res.gain_r[t] @ z
        mf.append(mu)
    ms = [mf[-1]]
    for t in range(T - 2, -1, -1):
        ms.insert(0, mf[t] + res.smooth_gain[t] @ (ms[0] - mp[t + 1]))
    return torch.stack(ms, dim=2).permute(4, 0, 1, 2, 3)  # (S, B, L, T, K)


def sample_prior_states(
    model: StateModel, num_samples: int, generator: torch.Generator | None, jitter: float
) -> Tensor:
    """Joint prior draws of the state at every step: (S, B, L, T, K)."""
    B, L, T = model.A.shape[:3]
    M, m = model.M, model.m
    dtype, device = model.h.dtype, model.h.device
    noise = torch.randn(
        (B, L, T, m, M * num_samples), generator=generator, dtype=dtype, device=device
    )
    pinf_chol = factor(model.pinf, jitter, "stationary state covariance")  # (L, m, m)
    x = pinf_chol @ noise[:, :, 0]  # (B, L, m, M S)
    out = [x]
    if T > 1:
        # steps of length 0 (padding of the time grid) have Q = 0: no noise there
        Q = model.Q[:, :, 1:]  # (B, L, T-1, m, m)
        still = (Q.abs().amax(dim=(-1, -2)) == 0)[..., None, None]  # (B, L, T-1, 1, 1)
        eye = torch.eye(m, dtype=dtype, device=device)
        q_chol = factor(torch.where(still, eye, Q), jitter, "process noise")
        q_chol = torch.where(still, torch.zeros_like(q_chol), q_chol)
        q_steps, noise_steps = q_chol.unbind(2), noise.unbind(2)
        for t in range(1, T):
            x = model.A_steps[t] @ x + q_steps[t - 1] @ noise_steps[t]
            out.append(x)
    states = torch.stack(out, dim=2).unflatten(-1, (M, num_samples))  # (B, L, T, m, M, S)
    return states.permute(5, 0, 1, 2, 4, 3).flatten(-2)  # (S, B, L, T, K)


def log_two_pi() -> float:
    """``log(2 pi)``."""
    return math.log(2.0 * math.pi)
