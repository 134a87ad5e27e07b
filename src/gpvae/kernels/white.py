"""White-noise kernel: independent values at distinct index points."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gpvae.kernels.base import Kernel, Positive
from gpvae.kernels.stationary import (
    _check_input_dim,
    _check_inputs,
    _format,
    _result_dtype,
    _scalar_raw,
)

__all__ = ["White"]


class White(Kernel):
    """White-noise kernel ``k(x, x') = s2 * [x == x']``.

    ``x1`` against itself (``x2`` None) gives ``s2 * I``; otherwise two points covary (with
    ``s2``) exactly when all their coordinates are equal. Used alone it turns the GP prior
    into the plain VAE prior N(0, s2 I); added to another kernel it models jitter. No
    state-space form, no gradient with respect to the inputs.

    Args:
        variance: positive scalar variance ``s2``.
        input_dim: the input dimension d, or None to accept any d.

    Raises:
        ValidationError: ``variance`` is zero, negative or not finite.
    """

    variance = Positive("Variance s2 = k(x, x): ().")
    raw_variance: nn.Parameter

    def __init__(self, variance: float | Tensor = 1.0, input_dim: int | None = None) -> None:
        super().__init__()
        _check_input_dim(input_dim)
        self.input_dim = input_dim
        self.raw_variance = _scalar_raw("variance", variance)

    def forward(self, x1: Tensor, x2: Tensor | None = None, diag: bool = False) -> Tensor:
        """Covariance ``s2 * [x1_n == x2_m]``.

        Args:
            x1: (..., N, d) index points.
            x2: (..., M, d) index points with batch dimensions broadcastable with ``x1``'s,
                or None for ``x1`` (then the result is ``s2 * I``).
            diag: return only ``k(x1_n, x2_n)`` (..., N) (``x2`` None or with M == N).

        Returns:
            (..., N, M), or (..., N) when ``diag``.
        """
        _check_inputs(x1, x2, diag, self.input_dim, "input_dim of White")
        dtype = _result_dtype(x1, self.raw_variance)
        if x2 is not None:
            dtype = torch.promote_types(dtype, x2.dtype)
        s2 = self.variance.to(dtype)
        if x2 is None:
            if diag:
                return s2.expand(x1.shape[:-1])  # (..., N)
            n = x1.shape[-2]
            eye = torch.eye(n, dtype=dtype, device=s2.device)  # (N, N)
            return s2 * eye.expand(*x1.shape[:-2], n, n)  # (..., N, N)
        a, b = (x1, x2) if diag else (x1[..., :, None, :], x2[..., None, :, :])
        equal = (a == b).all(-1)  # (..., N) or (..., N, M)
        return s2 * equal.to(dtype)

    def extra_repr(self) -> str:
        return f"variance={_format(self.variance)}"
