"""Observation models p(y | decoder output), summed over observed entries only.

:func:`get_likelihood` builds one by name; :func:`likelihood_names` lists the names (the
estimator and the command line take their choices from it).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from gpvae.arguments import check_name, normalise_name
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
    "likelihood_key",
    "likelihood_names",
]

_REGISTRY: dict[str, Callable[..., Likelihood]] = {
    "gaussian": Gaussian,
    "gaussian_hetero": partial(Gaussian, heteroscedastic=True),
    "gaussian_gp": GPNoiseGaussian,
    "gaussian_gp_per_feature": partial(GPNoiseGaussian, per_feature_kernel=True),
    "student_t": StudentT,
    "bernoulli": Bernoulli,
}
_ALIASES = {"studentt": "student_t"}


def likelihood_names() -> list[str]:
    """The likelihood names: ``gaussian`` (learned per-feature variance), ``gaussian_hetero``
    (variance from the decoder), ``gaussian_gp`` (each feature's noise a GP along the index,
    one kernel shared by the features), ``gaussian_gp_per_feature`` (the same, each feature's
    kernel its own lengthscale), ``student_t`` (heavy tails), ``bernoulli`` (values in [0, 1])."""
    return list(_REGISTRY)


def likelihood_key(name: object) -> str:
    """The canonical likelihood name, or an error naming ``likelihood`` with the choices."""
    if isinstance(name, str):
        name = _ALIASES.get(normalise_name(name), name)
    return check_name("likelihood", name, likelihood_names())


def get_likelihood(name: str, num_features: int, **kwargs: Any) -> Likelihood:
    """Build a likelihood by name (see :func:`likelihood_names`).

    Args:
        name: the likelihood's name (case-insensitive, ``-`` or ``_``).
        num_features: D.
        **kwargs: passed to the class (e.g. ``variance=0.5`` for Gaussian).
    """
    return _REGISTRY[likelihood_key(name)](num_features=num_features, **kwargs)
