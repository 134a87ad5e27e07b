"""Input checks shared by every GP backend.

Every backend (and :class:`~gpvae.gp.prior.GPPrior`) validates its inputs through these
functions, so that the same bad input raises the same :class:`~gpvae.errors.GPVAEError`, with a
message naming the argument, the expected and the found, whatever the backend.

Shapes: B series, N points, d index dimension, L channels, M new points.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gpvae.batch import all_finite
from gpvae.errors import InputTypeError, ShapeError, ValidationError, invalid

__all__ = [
    "as_index_points",
    "check_condition_inputs",
    "check_index_points",
    "check_num_samples",
    "check_valid",
]


def as_index_points(x: Tensor, name: str = "x") -> Tensor:
    """Check the type and rank of index points and return them as (B, N, d).

    Args:
        x: (B, N, d) index points, or (B, N) for d = 1.
        name: the argument's name, for messages.

    Returns:
        (B, N, d) view of ``x``.
    """
    if not isinstance(x, Tensor):
        raise InputTypeError(f"{name}: expected a torch.Tensor, found {type(x).__name__}")
    if not x.is_floating_point():
        raise InputTypeError(f"{name}: expected a floating-point tensor, found {x.dtype}")
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise ShapeError(f"{name}: expected shape (B, N, d) or (B, N), found {tuple(x.shape)}")
    return x


def check_valid(valid: Tensor | None, x: Tensor) -> Tensor:
    """Check a padding mask against (B, N, d) index points; None means no padding.

    Args:
        valid: (B, N) bool (False = padding), or None.
        x: (B, N, d) index points.

    Returns:
        (B, N) bool mask.
    """
    B, N = int(x.shape[0]), int(x.shape[1])
    if valid is None:
        return torch.ones(B, N, dtype=torch.bool, device=x.device)
    if not isinstance(valid, Tensor):
        raise InputTypeError(f"valid: expected a bool torch.Tensor, found {type(valid).__name__}")
    if valid.dtype != torch.bool:
        raise InputTypeError(f"valid: expected a bool tensor, found {valid.dtype}")
    if tuple(valid.shape) != (B, N):
        raise ShapeError(f"valid: expected shape {(B, N)} to match x, found {tuple(valid.shape)}")
    if valid.device != x.device:
        raise InputTypeError(f"valid: expected device {x.device} (that of x), found {valid.device}")
    return valid


def check_index_points(
    x: Tensor, valid: Tensor | None = None, name: str = "x"
) -> tuple[Tensor, Tensor]:
    """Check index points (finite on valid points) and their padding mask.

    Args:
        x: (B, N, d) or (B, N) index points.
        valid: (B, N) bool or None (no padding).
        name: the argument's name, for messages.

    Returns:
        ``x`` as (B, N, d) and ``valid`` as a (B, N) bool tensor.
    """
    x = as_index_points(x, name)
    valid = check_valid(valid, x)
    if not all_finite(x):  # one pass for the common case
        bad = ~torch.isfinite(x).all(dim=-1) & valid  # (B, N)
        if bool(bad.any()):
            b, n = (int(i) for i in bad.nonzero()[0])
            raise invalid(name, "finite index points", f"{x[b, n].tolist()} at [{b}, {n}]")
    return x, valid


def check_num_samples(num_samples: int) -> int:
    """Check that ``num_samples`` is a positive int and return it."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int):
        raise InputTypeError(
            f"num_samples: expected a positive int, found {type(num_samples).__name__}"
        )
    if num_samples < 1:
        raise invalid("num_samples", "a positive int", num_samples)
    return num_samples


def _check_channels(name: str, t: Tensor, x: Tensor, latent_dim: int) -> None:
    if not isinstance(t, Tensor):
        raise InputTypeError(f"{name}: expected a torch.Tensor, found {type(t).__name__}")
    if not t.is_floating_point():
        raise InputTypeError(f"{name}: expected a floating-point tensor, found {t.dtype}")
    expected = (int(x.shape[0]), int(x.shape[1]), latent_dim)
    if tuple(t.shape) != expected:
        raise ShapeError(
            f"{name}: expected shape (B, N, L) = {expected} to match x and latent_dim, "
            f"found {tuple(t.shape)}"
        )
    if t.dtype != x.dtype or t.device != x.device:
        raise InputTypeError(
            f"{name}: expected dtype {x.dtype} on {x.device} (those of x), "
            f"found {t.dtype} on {t.device}"
        )


def check_condition_inputs(
    x: Tensor, mean: Tensor, var: Tensor, valid: Tensor | None, latent_dim: int
) -> tuple[Tensor, Tensor]:
    """Check the inputs of ``GPPrior.condition`` / a posterior backend.

    Rules: ``x`` (B, N, d) or (B, N), finite on valid points; ``mean`` and ``var`` (B, N, L)
    with the dtype and device of ``x``; ``var`` never NaN and either > 0 or +inf (+inf
    excludes the point); ``mean`` finite wherever the point is included (finite ``var`` and
    valid); ``valid`` (B, N) bool or None.

    Args:
        x: (B, N, d) or (B, N) index points.
        mean: (B, N, L) pseudo-observation means.
        var: (B, N, L) pseudo-observation variances.
        valid: (B, N) bool, False for padding, or None (no padding).
        latent_dim: L.

    Returns:
        ``x`` as (B, N, d) and ``valid`` as a (B, N) bool tensor.

    Raises:
        ShapeError, InputTypeError, ValidationError: naming the offending argument.
    """
    x, valid = check_index_points(x, valid)
    _check_channels("mean", mean, x, latent_dim)
    _check_channels("var", var, x, latent_dim)
    with torch.no_grad():
        # the minimum (NaN if any entry is) rather than (var > 0).all(): a float reduction
        # instead of a bool mask and its reduction (~16 against ~75 us for 64 x 48 x 16)
        if var.numel() > 0 and not bool(var.min() > 0):  # NaN > 0 is False
            if bool(torch.isnan(var).any()):
                raise ValidationError("var: expected values > 0 or +inf, found NaN")
            raise invalid("var", "values > 0 or +inf", f"a minimum of {float(var.min())}")
        # one pass for the common case (mean finite everywhere)
        if not all_finite(mean):
            excluded = torch.isinf(var) | ~valid[..., None]  # (B, N, L); var > 0 here
            if not bool((torch.isfinite(mean) | excluded).all()):
                raise ValidationError(
                    "mean: expected finite values wherever var is finite on valid points, "
                    "found NaN or Inf"
                )
    return x, valid
