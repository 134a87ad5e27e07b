"""Stationary kernels: the shared base class, RBF, Cauchy, rational quadratic and periodic.

Every kernel here is ``k(x, x') = variance * c(x - x')`` for a correlation ``c`` of the
difference of its inputs. Distance kernels use the scaled distance

    r^2 = sum_d (x_d - x'_d)^2 / l_d^2,

with ``l`` the lengthscale, one value shared by all dimensions or one per dimension (ARD,
shape (d,)). Positive hyper-parameters are stored raw and read through softplus (see
:class:`gpvae.kernels.base.Positive`).

The Matern family, which also has state-space forms, is in :mod:`gpvae.kernels.matern`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gpvae.errors import InputTypeError, ShapeError, ValidationError
from gpvae.kernels.base import Kernel, Positive, _as_positive_raw

__all__ = [
    "RBF",
    "Cauchy",
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
        if self.__dict__.get("_packed") is not None:
            return None  # only scalar hyper-parameters are packed (gpvae.kernels.packing)
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
