"""Kernels by name: the one place that owns kernel names, defaults, specs and validation.

``get_kernel("matern32", lengthscale=2.0)`` builds a kernel from its name. Names are
case-insensitive; ``-`` and ``_`` are interchangeable. Built-in names (aliases in brackets):
``rbf`` (``se``), ``matern12`` (``exponential``), ``matern32``, ``matern52``, ``cauchy``,
``rq`` (``rational_quadratic``), ``periodic``, ``white``. :func:`register_kernel` adds more.

For the layers above (the estimator, the command line), the registry also

- validates a name once (:func:`kernel_key`) and lists the choices (:func:`kernel_names`);
- says what a name offers without building it (:func:`has_state_space`);
- builds the estimator's kernel, with the default initial lengthscale
  :data:`gpvae.settings.DEFAULT_LENGTHSCALE` for named kernels (:func:`build_kernel`);
- writes a kernel to JSON and back (:func:`kernel_spec`, :func:`kernel_from_spec`).
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch.nn.functional import softplus

from gpvae import settings
from gpvae.arguments import normalise_name
from gpvae.errors import InputTypeError, ValidationError
from gpvae.kernels.base import Kernel
from gpvae.kernels.matern import Matern12, Matern32, Matern52
from gpvae.kernels.stationary import RBF, Cauchy, Periodic, RationalQuadratic
from gpvae.kernels.white import White

__all__ = [
    "KernelEntry",
    "available_kernels",
    "build_kernel",
    "get_kernel",
    "has_state_space",
    "kernel_from_spec",
    "kernel_key",
    "kernel_names",
    "kernel_spec",
    "register_kernel",
]

KernelFactory = Callable[..., Kernel]


@dataclass(frozen=True)
class KernelEntry:
    """What the registry knows of a kernel name.

    Attributes:
        factory: builds the kernel from keyword arguments (e.g. the Kernel subclass).
        state_space: the kernel (with its default arguments) has a state-space form, so the
            markov backend can use it on 1-D inputs.
        lengthscale: the factory takes a ``lengthscale`` keyword.
        alias_of: the canonical name when this name is an alias, else None.
    """

    factory: KernelFactory
    state_space: bool
    lengthscale: bool
    alias_of: str | None = None


def _builtin(factory: type[Kernel], state_space: bool, lengthscale: bool = True) -> KernelEntry:
    return KernelEntry(factory, state_space=state_space, lengthscale=lengthscale)


_REGISTRY: dict[str, KernelEntry] = {
    "rbf": _builtin(RBF, False),
    "matern12": _builtin(Matern12, True),
    "matern32": _builtin(Matern32, True),
    "matern52": _builtin(Matern52, True),
    "cauchy": _builtin(Cauchy, False),
    "rq": _builtin(RationalQuadratic, False),
    "periodic": _builtin(Periodic, False),
    "white": _builtin(White, False, lengthscale=False),
}
for _alias, _name in (("se", "rbf"), ("exponential", "matern12"), ("rational_quadratic", "rq")):
    _REGISTRY[_alias] = KernelEntry(
        _REGISTRY[_name].factory,
        _REGISTRY[_name].state_space,
        _REGISTRY[_name].lengthscale,
        alias_of=_name,
    )


def available_kernels() -> list[str]:
    """The registered kernel names (aliases included), sorted."""
    return sorted(_REGISTRY)


def kernel_names() -> list[str]:
    """The registered kernel names without aliases, sorted (e.g. for command-line choices)."""
    return sorted(k for k, e in _REGISTRY.items() if e.alias_of is None)


def kernel_key(name: object) -> str:
    """The registry key of a kernel name (aliases kept as given), or an error naming
    ``kernel`` that lists the names and suggests the closest one.

    Raises:
        InputTypeError: ``name`` is not a string.
        ValidationError: unknown name.
    """
    if not isinstance(name, str):
        raise InputTypeError(
            f"kernel: expected a kernel name or a Kernel instance, found {type(name).__name__}"
        )
    key = normalise_name(name)
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValidationError(
            f"kernel: expected one of {', '.join(available_kernels())} or a Kernel instance, "
            f"found {name!r}{hint}"
        )
    return key


def register_kernel(
    name: str,
    factory: KernelFactory,
    *,
    overwrite: bool = False,
    state_space: bool | None = None,
) -> None:
    """Make ``get_kernel(name, **kwargs)`` call ``factory(**kwargs)``.

    Args:
        name: the new name (case-insensitive).
        factory: a callable returning a :class:`Kernel`, e.g. a Kernel subclass.
        overwrite: replace an existing registration of ``name`` instead of raising.
        state_space: whether the kernel has a state-space form; None asks the kernel
            built with default arguments (built once, here).

    Raises:
        InputTypeError: ``name`` is not a string or ``factory`` is not callable.
        ValidationError: ``name`` is empty, or already registered and ``overwrite`` is False.
    """
    if not isinstance(name, str):
        raise InputTypeError(f"name: expected a string, found {type(name).__name__}")
    key = normalise_name(name)
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
    takes_lengthscale = True
    if state_space is None:
        try:
            probe = factory()
        except TypeError:  # needs arguments: it can only be asked when built
            probe = None
        state_space = isinstance(probe, Kernel) and probe.has_state_space
        takes_lengthscale = probe is None or hasattr(probe, "raw_lengthscale")
    _REGISTRY[key] = KernelEntry(
        factory, state_space=bool(state_space), lengthscale=takes_lengthscale
    )


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
    kernel = _REGISTRY[kernel_key(spec)].factory(**kwargs)
    if not isinstance(kernel, Kernel):
        raise InputTypeError(
            f"kernel: expected the factory of {spec!r} to return a Kernel, "
            f"found {type(kernel).__name__}"
        )
    return kernel


def has_state_space(spec: str | Kernel) -> bool:
    """Whether a kernel name (with default arguments) or instance has a state-space form."""
    if isinstance(spec, Kernel):
        return spec.has_state_space
    return _REGISTRY[kernel_key(spec)].state_space


def build_kernel(spec: str | Kernel, lengthscale: float | None = None) -> Kernel:
    """The estimator's kernel, for standardised times (one unit = one median time step).

    Args:
        spec: a registered name, or a Kernel (deep-copied; its hyper-parameters are taken
            as given).
        lengthscale: initial lengthscale of a named kernel (None:
            :data:`gpvae.settings.DEFAULT_LENGTHSCALE`); ignored by kernels without one.
    """
    if isinstance(spec, Kernel):
        return copy.deepcopy(spec)
    entry = _REGISTRY[kernel_key(spec)]
    if not entry.lengthscale:
        return get_kernel(spec)
    value = settings.DEFAULT_LENGTHSCALE if lengthscale is None else float(lengthscale)
    return get_kernel(spec, lengthscale=value)


# ---------------------------------------------------------------- JSON specs


def _class_names() -> dict[type, str]:
    """Canonical name of every registered Kernel class."""
    return {
        e.factory: key
        for key, e in _REGISTRY.items()
        if e.alias_of is None and isinstance(e.factory, type)
    }


def _positive_values(kernel: Kernel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, param in kernel.named_parameters(recurse=False):
        if name.startswith("raw_"):
            value = softplus(param.detach().double().cpu())
            out[name[4:]] = float(value) if value.ndim == 0 else value.tolist()
    return out


def kernel_spec(kernel: str | Kernel) -> dict[str, Any]:
    """A JSON description of ``kernel``: ``{"name": ...}`` for a name, and for an instance of
    a registered class its name and the current values of its positive hyper-parameters
    (which fix the parameter shapes; the learned values travel in the model's weights).

    Raises:
        ValidationError: naming ``kernel`` when it is an instance of a class that cannot be
            rebuilt from JSON (sums, products, user-defined kernels).
    """
    if isinstance(kernel, str):
        return {"name": kernel}
    names = _class_names()
    cls = type(kernel)
    if cls not in names:
        raise ValidationError(
            f"kernel: expected a kernel name or an instance of a registered kernel class "
            f"({', '.join(sorted(c.__name__ for c in names))}) to save the model, "
            f"found {cls.__name__}; pass the kernel by name, or save the weights yourself"
        )
    params = _positive_values(kernel)
    input_dim = getattr(kernel, "input_dim", None)
    if isinstance(kernel, White) and input_dim is not None:
        params["input_dim"] = input_dim
    return {"name": names[cls], "params": params}


def kernel_from_spec(spec: Mapping[str, Any]) -> str | Kernel:
    """Inverse of :func:`kernel_spec`: a name, or a kernel of the recorded class and shapes."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ValidationError(f"kernel: expected a saved kernel spec with a name, found {spec!r}")
    if "params" not in spec:
        return str(spec["name"])
    params = spec["params"]
    if not isinstance(params, Mapping):
        raise ValidationError(f"kernel: expected saved parameters as an object, found {params!r}")
    return get_kernel(str(spec["name"]), **dict(params))
