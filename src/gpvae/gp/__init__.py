"""Gaussian-process priors over latent channels, with dense and Markov backends.

``GPPrior(kernel, latent_dim, backend="auto")`` is the entry point; ``prior.condition(x, mean,
var, valid)`` returns a :class:`GPPosterior` of the chosen backend (:class:`DenseGPPosterior`
or :class:`MarkovGPPosterior`).
"""

from __future__ import annotations

from gpvae.gp.base import GPPosterior
from gpvae.gp.dense import DenseGPPosterior
from gpvae.gp.markov import MarkovGPPosterior
from gpvae.gp.prior import GPPrior

__all__ = ["DenseGPPosterior", "GPPosterior", "GPPrior", "MarkovGPPosterior"]
