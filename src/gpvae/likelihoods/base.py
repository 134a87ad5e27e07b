"""Likelihood base class: p(y | decoder parameters), summed over observed entries only.

The decoder emits ``num_params`` tensors per feature, each (..., N, D), passed as one tensor
when ``num_params == 1`` and as a tuple otherwise. Leading axes (...) are typically (S, B).
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn

from gpvae.errors import InputTypeError, ShapeError, ValidationError

__all__ = ["Likelihood", "Params"]

#: What a decoder returns: one (..., N, D) tensor, or a tuple of them.
Params = Tensor | tuple[Tensor, ...]


class Likelihood(nn.Module, abc.ABC):
    """Observation model for each entry of y given the decoder's per-feature parameters.

    Attributes:
        num_params: how many (..., N, D) tensors the decoder must emit.
        num_features: D when the likelihood has per-feature parameters, else None.
    """

    num_params: int = 1
    num_features: int | None = None

    def split(self, params: Params) -> tuple[Tensor, ...]:
        """Check the decoder output and return it as a tuple of ``num_params`` tensors."""
        parts = (params,) if isinstance(params, Tensor) else tuple(params)
        if len(parts) != self.num_params or not all(isinstance(p, Tensor) for p in parts):
            raise InputTypeError(
                f"params: expected {self.num_params} tensor(s) from the decoder for "
                f"{type(self).__name__}, found {len(parts)} item(s)"
            )
        shape = parts[0].shape
        if any(p.shape != shape for p in parts):
            raise ShapeError(
                f"params: expected tensors of one shape, found {[tuple(p.shape) for p in parts]}"
            )
        if self.num_features is not None and shape[-1] != self.num_features:
            raise ShapeError(
                f"params: expected {self.num_features} features (last axis), found {shape[-1]}"
            )
        return parts

    @abc.abstractmethod
    def log_prob_entries(self, params: Params, y: Tensor) -> Tensor:
        """Log density of every entry, observed or not: (..., N, D)."""

    def log_prob(self, params: Params, y: Tensor, observed: Tensor) -> Tensor:
        """Log-likelihood of the observed entries, summed over N and D.

        Args:
            params: decoder output, (..., N, D) tensor(s).
            y: (B, N, D) values (zeros where unobserved), broadcast against params.
            observed: (B, N, D) bool mask.

        Returns:
            (...,), e.g. (S, B).
        """
        if observed.dtype != torch.bool:
            raise InputTypeError(f"observed: expected a bool tensor, found {observed.dtype}")
        lp = self.log_prob_entries(params, y)  # (..., N, D)
        if lp.shape[-observed.ndim :] != observed.shape:
            raise ShapeError(
                f"observed: expected shape {tuple(lp.shape[-observed.ndim :])} to match the "
                f"decoder output, found {tuple(observed.shape)}"
            )
        return torch.where(observed, lp, torch.zeros_like(lp)).sum(dim=(-2, -1))

    @abc.abstractmethod
    def mean(self, params: Params) -> Tensor:
        """E[y | params]: (..., N, D)."""

    @abc.abstractmethod
    def variance(self, params: Params) -> Tensor:
        """Var[y | params]: (..., N, D)."""

    @abc.abstractmethod
    def sample(self, params: Params, generator: torch.Generator | None = None) -> Tensor:
        """One draw of y for every entry: (..., N, D)."""


def check_num_features(num_features: int | None) -> None:
    """Raise a ValidationError unless ``num_features`` is None or a positive integer."""
    if num_features is None:
        return
    if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
        raise ValidationError(
            f"num_features: expected a positive integer or None, found {num_features!r}"
        )


def check_positive(name: str, value: float) -> float:
    """Return ``float(value)`` or raise a ValidationError naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(f"{name}: expected a positive number, found {value!r}") from exc
    if not v > 0 or v == float("inf"):
        raise ValidationError(f"{name}: expected a finite positive number, found {value!r}")
    return v
