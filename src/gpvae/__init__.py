"""gpvae: Gaussian-process-prior variational autoencoders."""

from __future__ import annotations

from gpvae import errors, gp, kernels
from gpvae.estimator import GPVAE, GPVAEEnsemble
from gpvae.heap import limit_heap_fragmentation
from gpvae.version import __version__

__all__ = [
    "GPVAE",
    "GPVAEEnsemble",
    "__version__",
    "errors",
    "gp",
    "kernels",
    "limit_heap_fragmentation",
]
