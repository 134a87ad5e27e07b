"""Posterior families q(z | y): structured (default), banded (Fortuin), diagonal (mean field).

See :mod:`gpvae.posteriors.base` for the interface shared by every family.
"""

from __future__ import annotations

from typing import Any

from gpvae.arguments import check_name
from gpvae.posteriors.banded import BandedPosterior, BandedQ
from gpvae.posteriors.base import (
    EncoderOutput,
    PosteriorFamily,
    SeriesSampler,
    VariationalPosterior,
)
from gpvae.posteriors.diagonal import DiagonalPosterior, DiagonalQ
from gpvae.posteriors.structured import StructuredPosterior, StructuredQ

__all__ = [
    "BandedPosterior",
    "BandedQ",
    "DiagonalPosterior",
    "DiagonalQ",
    "EncoderOutput",
    "PosteriorFamily",
    "SeriesSampler",
    "StructuredPosterior",
    "StructuredQ",
    "VariationalPosterior",
    "get_posterior",
    "posterior_key",
    "posterior_names",
]

_REGISTRY: dict[str, type[PosteriorFamily]] = {
    "structured": StructuredPosterior,
    "banded": BandedPosterior,
    "diagonal": DiagonalPosterior,
}


def posterior_names() -> list[str]:
    """The posterior family names: ``structured``, ``banded``, ``diagonal``."""
    return list(_REGISTRY)


def posterior_key(name: object) -> str:
    """The normalised family name, or an error naming ``posterior`` with the choices."""
    return check_name("posterior", name, posterior_names())


def get_posterior(name: str, **kwargs: Any) -> PosteriorFamily:
    """Build a posterior family by name: ``"structured"``, ``"banded"`` or ``"diagonal"``."""
    return _REGISTRY[posterior_key(name)](**kwargs)
