"""Small linear-algebra helpers shared by the GP backends."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from gpvae import settings
from gpvae.errors import NumericalError

__all__ = ["jittered_cholesky", "sym"]


def sym(P: Tensor) -> Tensor:
    """The symmetric part ``(P + P^T) / 2`` of square matrices (..., m, m)."""
    return 0.5 * (P + P.transpose(-1, -2))


def jittered_cholesky(cov: Tensor, jitter: float, what: str = "covariance") -> Tensor:
    """Lower Cholesky factor of ``cov + jitter I``, retrying with jitter x10 on failure.

    Args:
        cov: (..., N, N) symmetric covariance matrices.
        jitter: the first diagonal jitter tried.
        what: what ``cov`` is, for the warning and error messages.

    Returns:
        (..., N, N) lower-triangular factors.

    Raises:
        NumericalError: if the factorisation fails even with
            ``jitter * 10**settings.MAX_JITTER_RETRIES``.
    """
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    for attempt in range(settings.MAX_JITTER_RETRIES + 1):
        current = jitter * 10.0**attempt
        factor, info = torch.linalg.cholesky_ex(cov + current * eye)
        if not bool(info.any()):
            if attempt > 0:
                warnings.warn(
                    f"Cholesky of the {what} needed jitter {current:g} (asked {jitter:g}); "
                    "samples are slightly over-dispersed",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return factor
    raise NumericalError(
        f"{what}: Cholesky factorisation failed even with jitter {current:g} "
        f"(not positive definite; check the kernel hyper-parameters for NaN or extreme values)"
    )
