"""The Matern family (nu = 1/2, 3/2, 5/2) and its exact state-space forms.

``k(r) = s2 * p(r) * exp(-sqrt(2 nu) r)`` with r the scaled distance; on 1-D inputs each kernel
is the stationary covariance of a linear SDE of order nu + 1/2, so the markov backend runs it
in O(N) (Hartikainen & Särkkä 2010; Särkkä & Solin 2019, ch. 12). ``transition(dt)`` is the
exact matrix exponential in closed form: ``F + lam I`` is nilpotent, so
``expm(F dt) = exp(-lam dt) sum_{k<m} (F + lam I)^k dt^k / k!``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gpvae.errors import ValidationError
from gpvae.kernels.base import StateSpace
from gpvae.kernels.stationary import Stationary, _safe_sqrt

#: exp(-x) is exactly 0 in float32 and float64 beyond x = 800, and so is every Matern
#: correlation ``poly(x) exp(-x)``: scaled distances (and lam dt in transitions) are capped
#: there, which leaves every value unchanged while keeping the polynomial factors finite for
#: points up to float max apart (without the cap, 1e20 lengthscales gave inf * 0 = NaN).
_DECAY_MAX = 800.0

__all__ = ["Matern12", "Matern32", "Matern52"]


class _Matern(Stationary):
    """Matern kernel of half-integer order ``nu = p + 1/2``, with a state-space form in 1-D.

    With ``lam = sqrt(2 nu) / l`` the state ``s = (f, f', ..., f^(p))`` follows the SDE whose
    feedback matrix ``F`` is the companion matrix of ``(D + lam)^(p+1)``, driven by white noise
    of spectral density ``Qc = 2 s2 sqrt(pi) lam^(2 nu) Gamma(nu + 1/2) / Gamma(nu)``.
    Because ``F + lam I`` is nilpotent, the transition has the exact closed form
    ``expm(F dt) = exp(-lam dt) sum_{k<=p} (F + lam I)^k dt^k / k!``.
    """

    #: p in nu = p + 1/2 (0, 1, 2).
    order: int = 0

    @property
    def has_state_space(self) -> bool:  # type: ignore[override]
        """True when the kernel acts on 1-D inputs (scalar or one-element lengthscale)."""
        return self.input_dim in (None, 1)

    @property
    def state_dim(self) -> int:
        """State dimension m = p + 1 of the state-space form."""
        self._require_state_space()
        return self.order + 1

    def _require_state_space(self) -> None:
        if not self.has_state_space:
            raise ValidationError(
                f"kernel: expected a kernel with a state-space form, which needs 1-D inputs, "
                f"found {type(self).__name__} with {self.input_dim} ARD lengthscales"
            )

    def _lam(self) -> Tensor:
        """``lam = sqrt(2 nu) / l`` as a () tensor; needs a 1-D kernel."""
        self._require_state_space()
        return math.sqrt(2 * self.order + 1) / self.lengthscale.reshape(())

    def _pinf(self, lam: Tensor, s2: Tensor) -> Tensor:
        raise NotImplementedError

    def state_space(self) -> StateSpace:
        """State-space form ``(F, L, Qc, H, Pinf)``; see :class:`gpvae.kernels.StateSpace`.

        Returns tensors F (m, m), L (m, 1), Qc (1, 1), H (1, m), Pinf (m, m) with m =
        :attr:`state_dim`, differentiable with respect to the hyper-parameters.

        Raises:
            ValidationError: the kernel has ARD lengthscales for d > 1 inputs.
        """
        lam = self._lam()
        s2 = self.variance
        m = self.state_dim
        nu = self.order + 0.5
        # Last row of F: minus the coefficients of (s + lam)^m = sum_k C(m, k) lam^(m-k) s^k.
        coeffs = torch.stack([-math.comb(m, k) * lam ** (m - k) for k in range(m)])  # (m,)
        eye_above = torch.eye(m, dtype=lam.dtype, device=lam.device)[1:]  # (m-1, m) shift
        F = torch.cat([eye_above, coeffs[None, :]], dim=0)  # (m, m)
        L = lam.new_zeros(m, 1)
        L[-1, 0] = 1.0
        qc = 2.0 * math.sqrt(math.pi) * math.gamma(nu + 0.5) / math.gamma(nu)
        Qc = (qc * s2 * lam ** (2 * nu)).reshape(1, 1)
        H = lam.new_zeros(1, m)
        H[0, 0] = 1.0
        return StateSpace(F=F, L=L, Qc=Qc, H=H, Pinf=self._pinf(lam, s2))

    def transition(self, dt: Tensor) -> tuple[Tensor, Tensor]:
        """Closed-form transition over steps ``dt`` >= 0.

        Args:
            dt: (...,) non-negative time steps (any batch shape).

        Returns:
            ``A`` (..., m, m) = expm(F dt) and ``Q`` (..., m, m) = Pinf - A Pinf A^T, in the
            promoted dtype of ``dt`` and the parameters, on the parameters' device.
        """
        ss = self.state_space()
        lam = self._lam()
        dt = torch.as_tensor(dt, device=lam.device)
        dtype = torch.promote_types(dt.dtype, lam.dtype)
        dt, lam = dt.to(dtype), lam.to(dtype)
        F, Pinf = ss.F.to(dtype), ss.Pinf.to(dtype)
        m = self.state_dim
        eye = torch.eye(m, dtype=dtype, device=lam.device)
        nil = F + lam * eye  # (m, m), nilpotent: nil^m = 0
        # Beyond lam dt = _DECAY_MAX, A is exactly 0 in float32 and float64 (exp underflows),
        # so the step is capped there: the polynomial factor dt^k then cannot overflow.
        dt = torch.minimum(dt, _DECAY_MAX / lam)
        dtb = dt[..., None, None]  # (..., 1, 1)
        series = eye.expand(*dt.shape, m, m)  # (..., m, m)
        term = eye
        for k in range(1, m):
            term = term @ nil / k  # nil^k / k!
            series = series + term * dtb**k
        A = torch.exp(-lam * dtb) * series  # (..., m, m)
        if m == 1:
            # Q = s2 (1 - exp(-2 lam dt)) without cancellation for small dt.
            Q = -Pinf * torch.expm1(-2.0 * lam * dtb)  # (..., 1, 1)
        else:
            Q = Pinf - A @ Pinf @ A.transpose(-1, -2)  # (..., m, m)
            Q = 0.5 * (Q + Q.transpose(-1, -2))
        return A, Q


class Matern12(_Matern):
    """Matern-1/2 (exponential, Ornstein-Uhlenbeck) kernel ``k = s2 * exp(-r)``.

    ``r = sqrt(sum_d (x_d - x'_d)^2 / l_d^2)``. In 1-D its state-space form has m = 1:
    ``F = -1/l``, ``L = 1``, ``Qc = 2 s2 / l``, ``H = 1``, ``Pinf = s2``.
    See :class:`Stationary` for the arguments.
    """

    order = 0

    def profile(self, r2: Tensor) -> Tensor:
        return torch.exp(-_safe_sqrt(r2))

    def _pinf(self, lam: Tensor, s2: Tensor) -> Tensor:
        return s2.reshape(1, 1)


class Matern32(_Matern):
    """Matern-3/2 kernel ``k = s2 * (1 + sqrt(3) r) exp(-sqrt(3) r)``.

    ``r = sqrt(sum_d (x_d - x'_d)^2 / l_d^2)``. In 1-D, with ``lam = sqrt(3) / l``, its
    state-space form has m = 2: ``F = [[0, 1], [-lam^2, -2 lam]]``, ``L = [0, 1]^T``,
    ``Qc = 4 s2 lam^3``, ``H = [1, 0]``, ``Pinf = diag(s2, s2 lam^2)``, and
    ``expm(F dt) = exp(-lam dt) [[1 + lam dt, dt], [-lam^2 dt, 1 - lam dt]]``.
    See :class:`Stationary` for the arguments.
    """

    order = 1

    def profile(self, r2: Tensor) -> Tensor:
        sr = torch.clamp(math.sqrt(3.0) * _safe_sqrt(r2), max=_DECAY_MAX)  # see _DECAY_MAX
        return (1.0 + sr) * torch.exp(-sr)

    def _pinf(self, lam: Tensor, s2: Tensor) -> Tensor:
        return torch.diag(torch.stack([s2, s2 * lam**2]))


class Matern52(_Matern):
    """Matern-5/2 kernel ``k = s2 * (1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r)``.

    ``r = sqrt(sum_d (x_d - x'_d)^2 / l_d^2)``. In 1-D, with ``lam = sqrt(5) / l``, its
    state-space form has m = 3: ``F = [[0, 1, 0], [0, 0, 1], [-lam^3, -3 lam^2, -3 lam]]``,
    ``L = [0, 0, 1]^T``, ``Qc = 16/3 s2 lam^5``, ``H = [1, 0, 0]``, and ``Pinf = s2 *
    [[1, 0, -lam^2/3], [0, lam^2/3, 0], [-lam^2/3, 0, lam^4]]``.
    See :class:`Stationary` for the arguments.
    """

    order = 2

    def profile(self, r2: Tensor) -> Tensor:
        sr = torch.clamp(math.sqrt(5.0) * _safe_sqrt(r2), max=_DECAY_MAX)  # see _DECAY_MAX
        return (1.0 + sr + sr.square() / 3.0) * torch.exp(-sr)

    def _pinf(self, lam: Tensor, s2: Tensor) -> Tensor:
        a = s2 * lam**2 / 3.0
        zero = torch.zeros_like(s2)
        rows = [
            torch.stack([s2, zero, -a]),
            torch.stack([zero, a, zero]),
            torch.stack([-a, zero, s2 * lam**4]),
        ]
        return torch.stack(rows)  # (3, 3)
