"""Posterior families q(z | y): structured (default), banded (Fortuin), diagonal (mean field).

See :mod:`gpvae.posteriors.base` for the interface shared by every family.
"""

from __future__ import annotations

from typing import Any

from gpvae.errors import ValidationError
from gpvae.posteriors.banded import BandedPosterior, BandedQ
from gpvae.posteriors.base import EncoderOutput, PosteriorFamily, VariationalPosterior
from gpvae.posteriors.diagonal import DiagonalPosterior, DiagonalQ
from gpvae.posteriors.structured import StructuredPosterior, StructuredQ

__all__ = [
    "BandedPosterior",
    "BandedQ",
    "DiagonalPosterior",
    "DiagonalQ",
    "EncoderOutput",
    "PosteriorFamily",
    "StructuredPosterior",
    "StructuredQ",
    "VariationalPosterior",
    "get_posterior",
]

_REGISTRY: dict[str, type[PosteriorFamily]] = {
    "structured": StructuredPosterior,
    "banded": BandedPosterior,
    "diagonal": DiagonalPosterior,
}


def get_posterior(name: str, **kwargs: Any) -> PosteriorFamily:
    """Build a posterior family by name: ``"structured"``, ``"banded"`` or ``"diagonal"``."""
    key = str(name).lower()
    if key not in _REGISTRY:
        raise ValidationError(
            f"posterior: expected one of 'structured', 'banded', 'diagonal', found {name!r}"
        )
    return _REGISTRY[key](**kwargs)
