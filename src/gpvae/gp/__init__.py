"""Gaussian-process priors over latent channels, with dense and Markov backends."""

from __future__ import annotations

from gpvae.gp.base import GPPosterior

__all__ = ["GPPosterior"]
