"""Stationary kernels: RBF, the Matern family, Cauchy, rational quadratic and periodic.

Every kernel here is ``k(x, x') = variance * c(x - x')`` for a correlation ``c`` of the
difference of its inputs. Distance kernels use the scaled distance

    r^2 = sum_d (x_d - x'_d)^2 / l_d^2,

with ``l`` the lengthscale, one value shared by all dimensions or one per dimension (ARD,
shape (d,)). Positive hyper-parameters are stored raw and read through softplus (see
:class:`gpvae.kernels.base.Positive`).

The Matern-1/2, 3/2 and 5/2 kernels on 1-D inputs also give their state-space form
(Hartikainen & Särkkä, "Kalman filtering and smoothing solutions to temporal Gaussian
process regression models", 2010; Särkkä & Solin, "Applied Stochastic Differential
Equations", 2019, ch. 12.3) and a closed-form transition for any step ``dt``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gpvae.errors import InputTypeError, ShapeError, ValidationError
from gpvae.kernels.base import Kernel, Positive, StateSpace, _as_positive_raw

__all__ = [
    "RBF",
    "Cauchy",
    "Matern12",
    "Matern32",
    "Matern52",
    "Periodic",
    "RationalQuadratic",
    "Stationary",
]

PositiveInit = float | Tensor | Sequence[float]


# --------------------------------------------------------------------------------------
# input checks and helpers shared by the kernels of this package


def _check_inputs(
    x1: Tensor, x2: Tensor | None, diag: bool, input_dim: int | None, owner: str
) -> None:
    """Check the shapes of ``x1`` (..., N, d) and ``x2`` (..., M, d) (shapes only, no sync).

    Args:
        x1: first index points.
        x2: second index points or None.
        diag: whether the diagonal is requested (then ``x2``, if given, needs M == N).
        input_dim: the dimension d the kernel's hyper-parameters fix, or None for any d.
        owner: what fixes ``input_dim``, for the error message.
    """
    for name, x in (("x1", x1), ("x2", x2)):
        if x is None:
            continue
        if not isinstance(x, Tensor):
            raise InputTypeError(
                f"{name}: expected a torch.Tensor of shape (..., N, d), found {type(x).__name__}"
            )
        if x.ndim < 2:
            raise ShapeError(
                f"{name}: expected shape (..., N, d) with at least 2 dimensions, "
                f"found shape {tuple(x.shape)}"
            )
        if x.is_complex() or x.dtype == torch.bool:
            raise InputTypeError(f"{name}: expected a real floating tensor, found {x.dtype}")
    d = x1.shape[-1]
    if d < 1:
        raise ShapeError(f"x1: expected shape (..., N, d) with d >= 1, found {tuple(x1.shape)}")
    if input_dim is not None and d != input_dim:
        raise ShapeError(
            f"x1: expected last dimension d = {input_dim} (fixed by {owner}), "
            f"found d = {d} (shape {tuple(x1.shape)})"
        )
    if x2 is None:
        return
    if x2.shape[-1] != d:
        raise ShapeError(
            f"x2: expected last dimension d = {d} to match x1 {tuple(x1.shape)}, "
            f"found shape {tuple(x2.shape)}"
        )
    try:
        torch.broadcast_shapes(x1.shape[:-2], x2.shape[:-2])
    except RuntimeError as exc:
        raise ShapeError(
            f"x2: expected batch dimensions broadcastable with x1 {tuple(x1.shape)}, "
            f"found shape {tuple(x2.shape)}"
        ) from exc
    if diag and x2.shape[-2] != x1.shape[-2]:
        raise ShapeError(
            f"x2: expected N = {x1.shape[-2]} points like x1 when diag=True, "
            f"found shape {tuple(x2.shape)}"
        )


def _difference(x1: Tensor, x2: Tensor | None, diag: bool, dtype: torch.dtype) -> Tensor:
    """Differences ``x1_n - x2_m``: (..., N, M, d), or (..., N, d) pointwise when ``diag``."""
    x1 = x1.to(dtype)
    x2 = x1 if x2 is None else x2.to(dtype)
    if diag:
        return x1 - x2  # (..., N, d)
    return x1[..., :, None, :] - x2[..., None, :, :]  # (..., N, M, d)


def _safe_sqrt(r2: Tensor) -> Tensor:
    """``sqrt(r2)`` with a zero (not NaN) gradient where ``r2 == 0``; NaN stays NaN."""
    zero = r2 == 0
    return torch.where(zero, torch.zeros_like(r2), torch.sqrt(torch.where(zero, 1.0, r2)))


def _result_dtype(x: Tensor, param: Tensor) -> torch.dtype:
    """The dtype the kernel computes in: the promotion of the inputs' and parameters' dtypes."""
    return torch.promote_types(x.dtype, param.dtype)


def _ard_size(value: Tensor) -> int | None:
    """The dimension a raw hyper-parameter fixes: None for a scalar, its length otherwise."""
    return None if value.ndim == 0 else int(value.shape[0])


def _check_input_dim(input_dim: int | None) -> None:
    if input_dim is None:
        return
    if isinstance(input_dim, bool) or not isinstance(input_dim, int):
        raise InputTypeError(
            f"input_dim: expected an int >= 1 or None, found {type(input_dim).__name__}"
        )
    if input_dim < 1:
        raise ValidationError(f"input_dim: expected an int >= 1 or None, found {input_dim}")


def _ard_raw(name: str, value: PositiveInit, input_dim: int | None) -> nn.Parameter:
    """Raw parameter of a positive, possibly per-dimension hyper-parameter.

    A scalar with ``input_dim`` given becomes a vector (input_dim,) of equal values; a vector
    must have ``input_dim`` entries when ``input_dim`` is given.
    """
    raw = _as_positive_raw(name, value)
    if input_dim is None:
        return raw
    if raw.ndim == 0:
        return nn.Parameter(raw.detach().expand(input_dim).clone())
    if raw.shape[0] != input_dim:
        raise ShapeError(
            f"{name}: expected a scalar or {input_dim} values (input_dim = {input_dim}), "
            f"found {raw.shape[0]} values"
        )
    return raw


def _scalar_raw(name: str, value: float | Tensor) -> nn.Parameter:
    """Raw parameter of a positive scalar hyper-parameter (stored with shape ())."""
    raw = _as_positive_raw(name, value)
    if raw.numel() != 1:
        raise ShapeError(f"{name}: expected a single positive number, found {raw.numel()} values")
    return nn.Parameter(raw.detach().reshape(()))


def _format(value: Tensor) -> str:
    v = value.detach()
    return f"{v.item():.4g}" if v.numel() == 1 else "[" + ", ".join(f"{a:.4g}" for a in v) + "]"


# --------------------------------------------------------------------------------------
# base class


class Stationary(Kernel):
    """Base class of stationary kernels ``variance * c(x - x')`` with a lengthscale.

    Subclasses implement :meth:`correlation` (for distance kernels, :meth:`profile` of the
    squared scaled distance ``r^2``).

    Args:
        lengthscale: positive lengthscale ``l``, a scalar shared by all input dimensions or a
            sequence (d,) of per-dimension values (ARD).
        variance: positive scalar output variance ``s2 = k(x, x)``.
        input_dim: the input dimension d, or None to accept any d (with a scalar
            lengthscale). When given, a scalar lengthscale becomes (input_dim,) ARD values.

    Raises:
        ValidationError: a hyper-parameter is zero, negative or not finite.
        ShapeError: a hyper-parameter has the wrong number of values.
    """

    lengthscale = Positive("Lengthscale l: () shared or (d,) per input dimension (ARD).")
    variance = Positive("Output variance s2 = k(x, x): ().")

    raw_lengthscale: nn.Parameter
    raw_variance: nn.Parameter

    def __init__(
        self,
        lengthscale: PositiveInit = 1.0,
        variance: float | Tensor = 1.0,
        input_dim: int | None = None,
    ) -> None:
        super().__init__()
        _check_input_dim(input_dim)
        self.raw_lengthscale = _ard_raw("lengthscale", lengthscale, input_dim)
        self.raw_variance = _scalar_raw("variance", variance)

    @property
    def input_dim(self) -> int | None:
        """The input dimension d the hyper-parameters fix (None: any d)."""
        return _ard_size(self.raw_lengthscale)

    def forward(self, x1: Tensor, x2: Tensor | None = None, diag: bool = False) -> Tensor:
        """Covariance ``variance * c(x1_n - x2_m)``.

        Args:
            x1: (..., N, d) index points.
            x2: (..., M, d) index points with batch dimensions broadcastable with ``x1``'s,
                or None for ``x1``.
            diag: return only ``k(x1_n, x2_n)`` (..., N) (``x2`` None or with M == N).

        Returns:
            (..., N, M) covariance matrix, or (..., N) when ``diag``; in the promoted dtype of
            the inputs and the parameters.

        Raises:
            ShapeError: wrong number of dimensions, d not matching the ARD size or ``x2``.
        """
        _check_inputs(x1, x2, diag, self.input_dim, f"the lengthscale of {type(self).__name__}")
        diff = _difference(x1, x2, diag, _result_dtype(x1, self.raw_variance))
        return self.variance * self.correlation(diff)  # (..., N, M) or (..., N)

    def correlation(self, diff: Tensor) -> Tensor:
        """Correlation ``c`` of differences ``diff`` (..., d) -> (...); ``c(0) = 1``."""
        r2 = (diff / self.lengthscale).square().sum(-1)  # (...)
        return self.profile(r2)

    def profile(self, r2: Tensor) -> Tensor:
        """Correlation as a function of the squared scaled distance ``r2`` (...)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"lengthscale={_format(self.lengthscale)}, variance={_format(self.variance)}"


# --------------------------------------------------------------------------------------
# distance kernels


class RBF(Stationary):
    """Squared-exponential (RBF) kernel ``k = s2 * exp(-r^2 / 2)``.

    ``r^2 = sum_d (x_d - x'_d)^2 / l_d^2``. Infinitely smooth sample paths; no state-space
    form. See :class:`Stationary` for the arguments.
    """

    def profile(self, r2: Tensor) -> Tensor:
        return torch.exp(-0.5 * r2)


class Cauchy(Stationary):
    """Cauchy kernel ``k = s2 / (1 + r^2)``, the default of GP-VAE (Fortuin et al. 2020).

    ``r^2 = sum_d (x_d - x'_d)^2 / l_d^2``; a rational quadratic kernel with ``alpha = 1``
    up to the scaling of ``l`` by sqrt(2). See :class:`Stationary` for the arguments.
    """

    def profile(self, r2: Tensor) -> Tensor:
        return 1.0 / (1.0 + r2)


class RationalQuadratic(Stationary):
    """Rational quadratic kernel ``k = s2 * (1 + r^2 / (2 alpha))^(-alpha)``.

    ``r^2 = sum_d (x_d - x'_d)^2 / l_d^2``: a scale mixture of RBF kernels (Rasmussen &
    Williams 2006, eq. 4.19), tending to the RBF kernel as ``alpha`` -> infinity.

    Args:
        lengthscale: positive lengthscale, scalar or (d,) (ARD).
        variance: positive scalar output variance.
        alpha: positive scalar shape parameter.
        input_dim: the input dimension d, or None (see :class:`Stationary`).
    """

    alpha = Positive("Shape parameter alpha: ().")
    raw_alpha: nn.Parameter

    def __init__(
        self,
        lengthscale: PositiveInit = 1.0,
        variance: float | Tensor = 1.0,
        alpha: float | Tensor = 1.0,
        input_dim: int | None = None,
    ) -> None:
        super().__init__(lengthscale=lengthscale, variance=variance, input_dim=input_dim)
        self.raw_alpha = _scalar_raw("alpha", alpha)

    def profile(self, r2: Tensor) -> Tensor:
        alpha = self.alpha
        return torch.exp(-alpha * torch.log1p(r2 / (2.0 * alpha)))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={_format(self.alpha)}"


class Periodic(Stationary):
    """Periodic kernel ``k = s2 * exp(-2 sum_d sin^2(pi |x_d - x'_d| / p_d) / l_d^2)``.

    MacKay (1998); ``p`` is the period and ``l`` the lengthscale, each a scalar or per input
    dimension (d,). No state-space form here.

    Args:
        lengthscale: positive lengthscale, scalar or (d,).
        variance: positive scalar output variance.
        period: positive period, scalar or (d,).
        input_dim: the input dimension d, or None (see :class:`Stationary`).
    """

    period = Positive("Period p: () shared or (d,) per input dimension.")
    raw_period: nn.Parameter

    def __init__(
        self,
        lengthscale: PositiveInit = 1.0,
        variance: float | Tensor = 1.0,
        period: PositiveInit = 1.0,
        input_dim: int | None = None,
    ) -> None:
        super().__init__(lengthscale=lengthscale, variance=variance, input_dim=input_dim)
        self.raw_period = _ard_raw("period", period, input_dim)
        sizes = {_ard_size(self.raw_lengthscale), _ard_size(self.raw_period)} - {None}
        if len(sizes) > 1:
            raise ShapeError(
                f"period: expected a scalar or {_ard_size(self.raw_lengthscale)} values like "
                f"lengthscale, found {_ard_size(self.raw_period)} values"
            )

    @property
    def input_dim(self) -> int | None:
        """The input dimension d the hyper-parameters fix (None: any d)."""
        size = _ard_size(self.raw_lengthscale)
        return _ard_size(self.raw_period) if size is None else size

    def correlation(self, diff: Tensor) -> Tensor:
        s = torch.sin(math.pi * diff / self.period) / self.lengthscale  # (..., d)
        return torch.exp(-2.0 * s.square().sum(-1))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, period={_format(self.period)}"


# --------------------------------------------------------------------------------------
# Matern family with state-space forms


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
        sr = math.sqrt(3.0) * _safe_sqrt(r2)
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
        sr = math.sqrt(5.0) * _safe_sqrt(r2)
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
