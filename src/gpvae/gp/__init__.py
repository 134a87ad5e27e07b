"""Gaussian-process priors over latent channels, with dense and Markov backends.

``GPPrior(kernel, latent_dim, backend="auto")`` is the entry point; ``prior.condition(x, mean,
var, valid)`` returns a :class:`GPPosterior` of the chosen backend (:class:`DenseGPPosterior`
or :class:`MarkovGPPosterior`). :func:`release_arenas` drops the buffers the markov backend's
fused pass keeps between training steps (:func:`gpvae.training.train` calls it when it ends).
"""

from __future__ import annotations

from gpvae.gp._fused import release_arenas
from gpvae.gp.base import GPPosterior
from gpvae.gp.dense import DenseGPPosterior
from gpvae.gp.markov import MarkovGPPosterior
from gpvae.gp.prior import GPPrior

__all__ = ["DenseGPPosterior", "GPPosterior", "GPPrior", "MarkovGPPosterior", "release_arenas"]
