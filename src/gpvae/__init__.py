"""gpvae: Gaussian-process-prior variational autoencoders."""

from __future__ import annotations

from gpvae import errors, gp, kernels
from gpvae.estimator import GPVAE

__version__ = "0.1.0.dev0"

__all__ = ["GPVAE", "__version__", "errors", "gp", "kernels"]
