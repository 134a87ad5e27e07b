"""Kernels by name: ``get_kernel("matern32", lengthscale=2.0)``.

Names are case-insensitive; ``-`` and ``_`` are interchangeable. Built-in names:
``rbf``/``se``, ``matern12``/``exponential``, ``matern32``, ``matern52``, ``cauchy``,
``rq``/``rational_quadratic``, ``periodic``, ``white``. :func:`register_kernel` adds more.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from gpvae.errors import InputTypeError, ValidationError
from gpvae.kernels.base import Kernel
from gpvae.kernels.matern import Matern12, Matern32, Matern52
from gpvae.kernels.stationary import (
    RBF,
    Cauchy,
    Periodic,
    RationalQuadratic,
)
from gpvae.kernels.white import White

__all__ = ["available_kernels", "get_kernel", "register_kernel"]

KernelFactory = Callable[..., Kernel]

_REGISTRY: dict[str, KernelFactory] = {
    "rbf": RBF,
    "se": RBF,
    "matern12": Matern12,
    "exponential": Matern12,
    "matern32": Matern32,
    "matern52": Matern52,
    "cauchy": Cauchy,
    "rq": RationalQuadratic,
    "rational_quadratic": RationalQuadratic,
    "periodic": Periodic,
    "white": White,
}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def available_kernels() -> list[str]:
    """The registered kernel names (aliases included), sorted."""
    return sorted(_REGISTRY)


def register_kernel(name: str, factory: KernelFactory, *, overwrite: bool = False) -> None:
    """Make ``get_kernel(name, **kwargs)`` call ``factory(**kwargs)``.

    Args:
        name: the new name (case-insensitive).
        factory: a callable returning a :class:`Kernel`, e.g. a Kernel subclass.
        overwrite: replace an existing registration of ``name`` instead of raising.

    Raises:
        InputTypeError: ``name`` is not a string or ``factory`` is not callable.
        ValidationError: ``name`` is empty, or already registered and ``overwrite`` is False.
    """
    if not isinstance(name, str):
        raise InputTypeError(f"name: expected a string, found {type(name).__name__}")
    key = _normalise(name)
    if not key:
        raise ValidationError(f"name: expected a non-empty kernel name, found {name!r}")
    if not callable(factory):
        raise InputTypeError(
            f"factory: expected a callable returning a Kernel, found {type(factory).__name__}"
        )
    if key in _REGISTRY and not overwrite:
        raise ValidationError(
            f"name: expected a name not yet registered (or overwrite=True), found {name!r}"
        )
    _REGISTRY[key] = factory


def get_kernel(spec: str | Kernel, **kwargs: Any) -> Kernel:
    """A kernel from its name, or the given kernel instance unchanged.

    Args:
        spec: a registered name (see :func:`available_kernels`) or a :class:`Kernel`.
        **kwargs: constructor keywords for a named kernel (``lengthscale``, ``variance``,
            ``period``, ``alpha``, ``input_dim``); not allowed with an instance.

    Returns:
        The kernel.

    Raises:
        ValidationError: unknown name, or keywords given with a kernel instance.
        InputTypeError: ``spec`` is neither a string nor a Kernel, or the factory did not
            return a Kernel.
    """
    if isinstance(spec, Kernel):
        if kwargs:
            raise ValidationError(
                f"kernel: expected no keyword arguments with a Kernel instance (set its "
                f"hyper-parameters directly), found {sorted(kwargs)}"
            )
        return spec
    if not isinstance(spec, str):
        raise InputTypeError(
            f"kernel: expected a kernel name or a Kernel instance, found {type(spec).__name__}"
        )
    key = _normalise(spec)
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValidationError(
            f"kernel: expected one of {', '.join(available_kernels())} or a Kernel instance, "
            f"found {spec!r}{hint}"
        )
    kernel = _REGISTRY[key](**kwargs)
    if not isinstance(kernel, Kernel):
        raise InputTypeError(
            f"kernel: expected the factory of {spec!r} to return a Kernel, "
            f"found {type(kernel).__name__}"
        )
    return kernel
