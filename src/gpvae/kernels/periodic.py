"""The periodic kernel as a sum of resonators: a state-space form, so seasonal models are O(N).

MacKay's periodic kernel ``k(tau) = s2 exp(-2 sin^2(pi tau / p) / l^2)`` is, with ``z =
1 / l^2`` and ``exp(z cos t) = I_0(z) + 2 sum_{j>=1} I_j(z) cos(j t)`` (``I_j`` the modified
Bessel functions of the first kind),

    k(tau) = s2 sum_{j>=0} q_j cos(2 pi j tau / p),   q_0 = e^-z I_0(z), q_j = 2 e^-z I_j(z),

a sum of cosines whose weights decay fast in j. :class:`HarmonicPeriodic` keeps the first
``J = num_harmonics`` harmonics and renormalises the weights so that ``k(0) = s2`` exactly
(Solin & Särkkä 2014, "Explicit link between periodic covariance functions and state space
models", AISTATS). Its ``forward`` is that truncated series, so the dense and markov backends
compute the same kernel; it differs from MacKay's by at most about twice the dropped weight
``sum_{j>J} q_j`` (relative to ``s2``). Maximum absolute difference over all lags, for
``s2 = 1`` (``tests/kernels/test_periodic.py`` checks this table):

=====  ========  ========  ========  ========  ========
J      l = 0.5   l = 0.75  l = 1     l = 1.5   l = 2
=====  ========  ========  ========  ========  ========
3      1.1e-1    2.0e-2    3.9e-3    2.6e-4    3.1e-5
5      1.2e-2    5.3e-4    3.3e-5    4.3e-7    1.7e-8
7      7.9e-4    7.4e-6    1.5e-7    3.8e-10   4.6e-12
10     5.8e-6    5.2e-9    1.9e-11   4.4e-15   3.3e-16
=====  ========  ========  ========  ========  ========

The default ``J =`` :data:`gpvae.settings.PERIODIC_HARMONICS` (3, state dimension 7) keeps
the error below 4e-3 at the named kernel's initial ``l = 1`` and below 3e-4 from ``l = 1.5``
up; every Kalman step costs O(m^3), so J = 7 (m = 15) costs about 10 times as much. A sharp,
spiky season (small ``l``) needs more harmonics (``num_harmonics``). Whatever J, the model
*is* the truncated kernel: the dense and markov backends agree on it exactly.

State (m = 2J + 1): ``s = (a_0, a_1, b_1, ..., a_J, b_J)``; ``F = blockdiag(0, w_1 R, ...,
w_J R)`` with ``R = [[0, -1], [1, 0]]``, ``w_j = 2 pi j / p``; ``H = (1, 1, 0, ..., 1, 0)``;
``Pinf = s2 diag(q_0, q_1, q_1, ..., q_J, q_J)``; no process noise (``L = I``, ``Qc = 0``).
The transition over ``dt`` rotates each pair by ``w_j dt``, and ``Q = 0`` exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gpvae import settings
from gpvae.arguments import int_arg
from gpvae.errors import ShapeError
from gpvae.kernels.base import Positive, StateSpace
from gpvae.kernels.stationary import PositiveInit, Stationary, _format, _scalar_raw

__all__ = ["HarmonicPeriodic", "harmonic_weights"]


def harmonic_weights(lengthscale: Tensor, num_harmonics: int, normalise: bool = True) -> Tensor:
    """Weights ``q_0..q_J`` of the cosine series of MacKay's periodic kernel (``s2 = 1``).

    ``q_0 = e^-z I_0(z)``, ``q_j = 2 e^-z I_j(z)`` with ``z = 1 / l^2``; the Bessel functions
    come from their power series ``I_j(z) = sum_k (z/2)^(2k+j) / (k! (k+j)!)``, summed in
    log space (differentiable in ``l``).

    Args:
        lengthscale: () positive lengthscale ``l`` (relative to the period).
        num_harmonics: J.
        normalise: divide by the sum of the J + 1 weights (so that they sum to 1).

    Returns:
        (J + 1,) weights, in the dtype of ``lengthscale``.
    """
    z = lengthscale.reshape(()).pow(-2)
    zf = float(z.detach())
    terms = int(zf / 2 + 12.0 * math.sqrt(zf / 2 + 1.0) + 40)  # covers the series' mass
    k = torch.arange(terms, dtype=z.dtype, device=z.device)[:, None]  # (K, 1)
    j = torch.arange(num_harmonics + 1, dtype=z.dtype, device=z.device)[None]  # (1, J+1)
    log_half = torch.log(z / 2)
    log_terms = (2 * k + j) * log_half - torch.lgamma(k + 1) - torch.lgamma(k + j + 1)
    log_q = torch.logsumexp(log_terms, dim=0) - z  # (J+1,) log(e^-z I_j(z))
    log_q = log_q + (j[0] > 0).to(z.dtype) * math.log(2.0)
    if normalise:
        log_q = log_q - torch.logsumexp(log_q, dim=0)
    return log_q.exp()


class HarmonicPeriodic(Stationary):
    """Periodic kernel as a sum of J resonators, with an exact state-space form on 1-D inputs.

    ``k(tau) = s2 sum_{j=0..J} q_j cos(2 pi j tau / p)``, the first J harmonics of MacKay's
    ``s2 exp(-2 sin^2(pi tau / p) / l^2)`` with the weights renormalised to sum to 1 (see
    the module docstring for the weights, the state-space form and the truncation error).

    Args:
        lengthscale: positive scalar ``l``, relative to the period (``l = 1``: a smooth
            season with a few harmonics; small ``l``: sharp peaks, more harmonics needed).
        variance: positive scalar ``s2``.
        period: positive scalar period ``p`` in the index's units.
        num_harmonics: J (None: :data:`gpvae.settings.PERIODIC_HARMONICS`).

    Raises:
        ValidationError: a hyper-parameter is not finite and positive, or J < 1.
        ShapeError: a lengthscale of more than one value; inputs with d != 1.
    """

    period = Positive("Period p: ().")
    raw_period: nn.Parameter

    def __init__(
        self,
        lengthscale: PositiveInit = 1.0,
        variance: float | Tensor = 1.0,
        period: float | Tensor = 1.0,
        num_harmonics: int | None = None,
    ) -> None:
        super().__init__(lengthscale=_scalar_value(lengthscale), variance=variance)
        if self.raw_lengthscale.numel() != 1:  # fit failed in torch on the harmonic weights
            raise ShapeError(
                f"lengthscale: expected one number (the kernel acts on 1-D time; its "
                f"lengthscale is relative to the period), found "
                f"{self.raw_lengthscale.numel()} values"
            )
        self.raw_period = _scalar_raw("period", period)
        if num_harmonics is None:
            num_harmonics = settings.PERIODIC_HARMONICS
        self.num_harmonics = int_arg("num_harmonics", num_harmonics)

    @property
    def input_dim(self) -> int | None:
        """Always 1: the kernel acts on a 1-D index (time)."""
        return 1

    has_state_space = True

    @property
    def state_dim(self) -> int:
        """m = 2 J + 1."""
        return 2 * self.num_harmonics + 1

    def weights(self) -> Tensor:
        """(J + 1,) normalised harmonic weights ``q_j`` (sum 1)."""
        return harmonic_weights(self.lengthscale, self.num_harmonics)

    def _frequencies(self, dtype: torch.dtype) -> Tensor:
        j = torch.arange(self.num_harmonics + 1, dtype=dtype, device=self.raw_period.device)
        return 2.0 * math.pi * j / self.period.to(dtype)  # (J + 1,)

    def correlation(self, diff: Tensor) -> Tensor:
        q = self.weights().to(diff.dtype)  # (J + 1,)
        w = self._frequencies(diff.dtype)  # (J + 1,)
        return (q * torch.cos(diff[..., :1] * w)).sum(-1)  # (...)

    def state_space(self) -> StateSpace:
        """``(F, L, Qc, H, Pinf)`` with m = 2J + 1 (see the module docstring)."""
        m, J = self.state_dim, self.num_harmonics
        q = self.weights() * self.variance  # (J + 1,)
        w = self._frequencies(q.dtype)[1:]  # (J,)
        F = q.new_zeros(m, m)
        idx = torch.arange(J, device=q.device)
        a, b = 1 + 2 * idx, 2 + 2 * idx
        F = F.index_put((b, a), w).index_put((a, b), -w)
        diag = torch.cat([q[:1], q[1:].repeat_interleave(2)])  # (m,)
        H = q.new_zeros(1, m)
        H[0, 0] = 1.0
        H[0, a] = 1.0
        eye = torch.eye(m, dtype=q.dtype, device=q.device)
        return StateSpace(F=F, L=eye, Qc=q.new_zeros(m, m), H=H, Pinf=torch.diag(diag))

    def transition(self, dt: Tensor) -> tuple[Tensor, Tensor]:
        """Rotations by ``w_j dt`` of each resonator (exact), and ``Q = 0``.

        Args:
            dt: (...,) non-negative steps.

        Returns:
            ``A`` (..., m, m) and ``Q`` (..., m, m) zeros.
        """
        dt = torch.as_tensor(dt, device=self.raw_period.device)
        dtype = torch.promote_types(dt.dtype, self.raw_period.dtype)
        dt = dt.to(dtype)
        m, J = self.state_dim, self.num_harmonics
        w = self._frequencies(dtype)[1:]  # (J,)
        angle = dt[..., None] * w  # (..., J)
        c, s = torch.cos(angle), torch.sin(angle)
        A = dt.new_zeros(*dt.shape, m, m)
        A[..., 0, 0] = 1.0
        idx = torch.arange(J, device=dt.device)
        a, b = 1 + 2 * idx, 2 + 2 * idx
        A[..., a, a] = c
        A[..., b, b] = c
        A[..., a, b] = -s
        A[..., b, a] = s
        return A, dt.new_zeros(*dt.shape, m, m)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, period={_format(self.period)}, J={self.num_harmonics}"


def _scalar_value(value: PositiveInit) -> PositiveInit:
    """A lengthscale given as a one-element sequence becomes a scalar (the index is 1-D)."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return value[0]
    return value
