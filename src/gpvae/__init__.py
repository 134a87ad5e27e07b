"""gpvae: Gaussian-process-prior variational autoencoders.

``GPVAE``, ``GPVAEEnsemble``, ``gp`` and ``kernels`` are imported on first use (module
``__getattr__``): ``import gpvae`` alone, as the command line does for ``gpvae --help``,
does not import torch.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from gpvae import errors
from gpvae.heap import limit_heap_fragmentation
from gpvae.version import __version__

if TYPE_CHECKING:
    from gpvae import gp, kernels
    from gpvae.estimator import GPVAE, GPVAEEnsemble

__all__ = [
    "GPVAE",
    "GPVAEEnsemble",
    "__version__",
    "errors",
    "gp",
    "kernels",
    "limit_heap_fragmentation",
]

#: The names imported on first use -> the module that holds them (a module: itself).
_LAZY = {
    "GPVAE": "gpvae.estimator",
    "GPVAEEnsemble": "gpvae.estimator",
    "gp": "gpvae.gp",
    "kernels": "gpvae.kernels",
}


def __getattr__(name: str) -> Any:
    """``gpvae.GPVAE`` and the other names of ``_LAZY``, and every module of the package
    (``gpvae.data``, ``gpvae.settings``, ...; an eager ``import gpvae`` had loaded them with
    the estimator): imported now, kept afterwards."""
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
        module = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'gpvae' has no attribute {name!r}")
    value = module if module.__name__ == f"gpvae.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
