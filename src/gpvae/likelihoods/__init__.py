"""Observation models p(y | decoder output), summed over observed entries only."""

from __future__ import annotations

from typing import Any

from gpvae.errors import ValidationError
from gpvae.likelihoods.base import Likelihood, Params
from gpvae.likelihoods.bernoulli import Bernoulli
from gpvae.likelihoods.gaussian import Gaussian
from gpvae.likelihoods.gp_noise import GPNoiseGaussian
from gpvae.likelihoods.student_t import StudentT

__all__ = [
    "Bernoulli",
    "GPNoiseGaussian",
    "Gaussian",
    "Likelihood",
    "Params",
    "StudentT",
    "get_likelihood",
]

_REGISTRY: dict[str, type[Likelihood]] = {
    "gaussian": Gaussian,
    "gaussian_gp": GPNoiseGaussian,
    "bernoulli": Bernoulli,
    "student_t": StudentT,
    "studentt": StudentT,
}


def get_likelihood(name: str, num_features: int, **kwargs: Any) -> Likelihood:
    """Build a likelihood by name.

    Names: ``"gaussian"``, ``"gaussian_gp"`` (noise correlated along the index),
    ``"bernoulli"``, ``"student_t"``.

    Args:
        name: the likelihood's name (case-insensitive).
        num_features: D.
        **kwargs: passed to the class (e.g. ``heteroscedastic=True`` for Gaussian).
    """
    key = str(name).lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValidationError(
            "likelihood: expected one of 'gaussian', 'gaussian_gp', 'bernoulli', 'student_t', "
            f"found {name!r}"
        )
    return _REGISTRY[key](num_features=num_features, **kwargs)
