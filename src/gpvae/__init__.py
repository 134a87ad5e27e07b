"""gpvae: Gaussian-process-prior variational autoencoders."""

from __future__ import annotations

from gpvae import errors, gp, kernels
from gpvae.estimator import GPVAE
from gpvae.version import __version__

__all__ = ["GPVAE", "__version__", "errors", "gp", "kernels"]
