"""Kernels by name: the one place that owns kernel names, defaults, specs and validation.

``get_kernel("matern32", lengthscale=2.0)`` builds a kernel from its name. Names are
case-insensitive; ``-`` and ``_`` are interchangeable. Built-in names (aliases in brackets):
``rbf`` (``se``), ``matern12`` (``exponential``), ``matern32``, ``matern52``, ``cauchy``,
``rq`` (``rational_quadratic``), ``periodic`` (the state-space sum of resonators,
:class:`~gpvae.kernels.HarmonicPeriodic`), ``periodic_exact`` (MacKay's kernel, dense only),
``trend`` (a long-range Matern-5/2 kernel that forecasts keep, :class:`~gpvae.kernels.Trend`),
``white``. :func:`register_kernel` adds more.

**Composite names.** ``+`` adds kernels and ``*`` multiplies them (``*`` binds tighter), so
``"matern32+periodic"`` is ``Matern32 + HarmonicPeriodic`` and ``"periodic*matern32"`` is a
quasi-periodic kernel (a season whose shape drifts). A composite name gives *every* latent
channel the whole composite kernel, each channel with its own hyper-parameters: each channel
can then carry a trend, a season and short-range variation at once, and learns through the
term variances how much of each it needs (see ``docs/forecasting.md`` for the comparison with
splitting the channels among the kernels, which forecast worse).

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
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from torch.nn.functional import softplus

from gpvae import settings
from gpvae.arguments import normalise_name
from gpvae.errors import InputTypeError, ValidationError
from gpvae.kernels.base import Kernel, Product, Sum
from gpvae.kernels.matern import Matern12, Matern32, Matern52
from gpvae.kernels.periodic import HarmonicPeriodic
from gpvae.kernels.stationary import RBF, Cauchy, Periodic, RationalQuadratic
from gpvae.kernels.trend import Trend
from gpvae.kernels.white import White

__all__ = [
    "KernelArg",
    "KernelEntry",
    "available_kernels",
    "build_kernel",
    "check_lengthscale",
    "get_kernel",
    "has_finite_rank",
    "has_state_space",
    "kernel_from_spec",
    "kernel_key",
    "kernel_names",
    "kernel_spec",
    "num_periods",
    "parse_kernel_name",
    "periods_text",
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
        periodic: the factory takes a ``period`` keyword (and its lengthscale is relative to
            the period).
    """

    factory: KernelFactory
    state_space: bool
    lengthscale: bool
    alias_of: str | None = None
    periodic: bool = False


def _builtin(
    factory: type[Kernel], state_space: bool, lengthscale: bool = True, periodic: bool = False
) -> KernelEntry:
    return KernelEntry(factory, state_space=state_space, lengthscale=lengthscale, periodic=periodic)


_REGISTRY: dict[str, KernelEntry] = {
    "rbf": _builtin(RBF, False),
    "matern12": _builtin(Matern12, True),
    "matern32": _builtin(Matern32, True),
    "matern52": _builtin(Matern52, True),
    "cauchy": _builtin(Cauchy, False),
    "rq": _builtin(RationalQuadratic, False),
    "periodic": _builtin(HarmonicPeriodic, True, periodic=True),
    "periodic_exact": _builtin(Periodic, False, periodic=True),
    "trend": _builtin(Trend, True),
    "white": _builtin(White, False, lengthscale=False),
}
for _alias, _name in (("se", "rbf"), ("exponential", "matern12"), ("rational_quadratic", "rq")):
    _REGISTRY[_alias] = KernelEntry(
        _REGISTRY[_name].factory,
        _REGISTRY[_name].state_space,
        _REGISTRY[_name].lengthscale,
        alias_of=_name,
        periodic=_REGISTRY[_name].periodic,
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

    A composite name (``"matern32 + periodic"``, ``"periodic*matern32"``) is normalised term
    by term (``"matern32+periodic"``).

    Raises:
        InputTypeError: ``name`` is not a string.
        ValidationError: unknown name.
    """
    if not isinstance(name, str):
        raise InputTypeError(
            f"kernel: expected a kernel name or a Kernel instance, found {type(name).__name__}"
        )
    if "+" in name or "*" in name:
        return "+".join(
            "*".join(_single_key(f, name) for f in term.split("*")) for term in name.split("+")
        )
    return _single_key(name, name)


def parse_kernel_name(name: str) -> list[list[str]]:
    """The terms of a (composite) kernel name, each a list of its factors' registry keys.

    ``"matern32+periodic*matern52"`` -> ``[["matern32"], ["periodic", "matern52"]]``.
    """
    return [term.split("*") for term in kernel_key(name).split("+")]


def _single_key(part: str, name: str) -> str:
    key = normalise_name(part)
    if not key:
        raise ValidationError(
            f"kernel: expected kernel names around '+' and '*', found an empty one in {name!r}"
        )
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValidationError(
            f"kernel: expected one of {', '.join(available_kernels())} (or sums '+' and "
            f"products '*' of them) or a Kernel instance, found {part.strip()!r}{hint}"
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
            ``period``, ``alpha``, ``input_dim``); not allowed with an instance. A name with
            a periodic factor needs ``period`` (given to every periodic factor).

    Returns:
        The kernel.

    Raises:
        ValidationError: unknown name, keywords given with a kernel instance, or a name with
            a periodic factor without ``period``.
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
    key = kernel_key(spec)
    if num_periods(key) and kwargs.get("period") is None:  # as build_kernel and GPVAE
        _periods_arg(None, num_periods(key), key)
    if "+" in key or "*" in key:
        terms = [
            _product([_build_factor(f, _factor_kwargs(f, kwargs)) for f in term])
            for term in parse_kernel_name(key)
        ]
        return terms[0] if len(terms) == 1 else Sum(*terms)
    return _build_factor(key, kwargs)


def _factor_kwargs(key: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords of a composite name's factor: ``period`` and ``num_harmonics`` go to the
    periodic factors only, the rest to all."""
    if _REGISTRY[key].periodic:
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k not in ("period", "num_harmonics")}


def _product(factors: list[Kernel]) -> Kernel:
    return factors[0] if len(factors) == 1 else Product(*factors)


def _build_factor(key: str, kwargs: Mapping[str, Any]) -> Kernel:
    kernel = _REGISTRY[key].factory(**kwargs)
    if not isinstance(kernel, Kernel):
        raise InputTypeError(
            f"kernel: expected the factory of {key!r} to return a Kernel, "
            f"found {type(kernel).__name__}"
        )
    return kernel


#: A kernel argument: a (composite) name, a kernel, or one of them per latent channel.
KernelArg = str | Kernel | Sequence[str | Kernel]


def has_state_space(spec: KernelArg) -> bool:
    """Whether a kernel name (with default arguments) or instance has a state-space form
    (for a list of per-channel kernels: every one)."""
    if not isinstance(spec, (str, Kernel)):
        return all(has_state_space(k) for k in spec)
    if isinstance(spec, Kernel):
        return spec.has_state_space
    return all(_REGISTRY[f].state_space for t in parse_kernel_name(spec) for f in t)


def has_finite_rank(spec: KernelArg) -> bool:
    """Whether a kernel name or instance has a covariance of finite rank, singular on more
    points than that (for a list of per-channel kernels: any one).

    :class:`~gpvae.kernels.HarmonicPeriodic` (the name ``periodic``) is a sum of J
    resonators, rank 2J + 1; a sum or product made *only* of such kernels has finite rank
    too (at most the sum, resp. the product, of the ranks). A sum with any other term, or a
    product with any other factor (``"matern32+periodic"``, ``"periodic*matern52"``), is
    positive definite (the other kernels are, and by the Schur product theorem so is their
    elementwise product with a covariance of positive diagonal), as is every other built-in
    kernel; a kernel of another class counts as full rank.
    """
    if not isinstance(spec, (str, Kernel)):
        return any(has_finite_rank(k) for k in spec)
    if isinstance(spec, Kernel):
        if isinstance(spec, HarmonicPeriodic):
            return True
        if isinstance(spec, (Sum, Product)):
            return all(has_finite_rank(k) for k in spec.terms)
        return False
    return all(
        all(_finite_rank_factory(_REGISTRY[f].factory) for f in term)
        for term in parse_kernel_name(spec)
    )


def _finite_rank_factory(factory: KernelFactory) -> bool:
    return isinstance(factory, type) and issubclass(factory, HarmonicPeriodic)


def num_periods(spec: KernelArg) -> int:
    """How many periodic factors a kernel name has (each takes a period); 0 for instances;
    the sum over the channels of a per-channel list."""
    if not isinstance(spec, (str, Kernel)):
        return sum(num_periods(k) for k in spec)
    if isinstance(spec, Kernel):
        return 0
    return sum(_REGISTRY[f].periodic for t in parse_kernel_name(spec) for f in t)


def build_kernel(
    spec: KernelArg,
    lengthscale: float | Sequence[float] | None = None,
    period: float | Sequence[float] | None = None,
    learn_period: bool = True,
    span: float | None = None,
) -> Any:
    """The estimator's kernel, for standardised times (one unit = one median time step).

    Initial values of a named kernel: every non-periodic factor's lengthscale is
    ``lengthscale``; when it is None, :data:`gpvae.settings.DEFAULT_LENGTHSCALE`, except in a
    product with a periodic factor (quasi-periodic), where it is
    :data:`gpvae.settings.QUASI_PERIODIC_DECAY` times the factor's (longest) period; a
    periodic factor's lengthscale is :data:`gpvae.settings.PERIODIC_LENGTHSCALE` (relative
    to its period, whatever ``lengthscale``); each of
    the K terms of a sum starts with variance 1 / K; in a product only the first factor's
    variance is learned (the others' are fixed at 1, as they are redundant).

    Args:
        spec: a registered (possibly composite) name, or a Kernel (deep-copied; its
            hyper-parameters are taken as given).
        lengthscale: initial lengthscale in time steps of the non-periodic factors (those
            of quasi-periodic products too), or one per latent channel (a name then gives
            the list of the channels' kernels, each with its own; a per-channel list of
            names takes them in order).
        period: the period of every periodic factor, or one per periodic factor in the
            order of the name, in time steps; needed when the name has a periodic factor.
        learn_period: learn the periods (else they stay fixed).
        span: the training data's time span in time steps; a ``trend`` factor's lengthscale
            starts at :data:`gpvae.settings.TREND_SPAN_FRACTION` of it (None: at
            ``lengthscale``).

    Returns:
        The kernel, or for a per-channel list the list of the channels' kernels (periods
        handed out in the order of the periodic factors over the channels).

    Raises:
        ValidationError: naming ``period`` when it is missing, or has the wrong number of
            values, for the name's periodic factors; naming ``lengthscale`` when a
            per-channel list of names has another number of lengthscales.
    """
    if isinstance(spec, Kernel):
        return copy.deepcopy(spec)
    one: float | None = None  # one lengthscale for every channel (None: the default)
    if isinstance(lengthscale, numbers.Real):  # numpy scalars too
        one = float(lengthscale)
    elif lengthscale is not None:  # one per channel
        ells = [float(v) for v in cast(Sequence[float], lengthscale)]
        specs = [spec] * len(ells) if isinstance(spec, str) else list(spec)
        if len(specs) != len(ells):
            raise ValidationError(
                f"lengthscale: expected one number or one per channel kernel ({len(specs)}), "
                f"found {len(ells)}"
            )
        if isinstance(spec, str):  # every channel has the name's periodic factors
            return [build_kernel(spec, v, period, learn_period, span) for v in ells]
        return _per_channel(specs, ells, period, learn_period, span)
    if not isinstance(spec, str):
        return _per_channel(list(spec), [one] * len(spec), period, learn_period, span)
    terms = parse_kernel_name(spec)
    n_per = num_periods(spec)
    periods = _periods_arg(period, n_per, spec)
    ell = settings.DEFAULT_LENGTHSCALE if one is None else one
    built: list[Kernel] = []
    it = iter(periods)
    for term in terms:
        term_periods = [next(it) for f in term if _REGISTRY[f].periodic]
        factors: list[Kernel] = []
        for f in term:
            entry = _REGISTRY[f]
            kwargs: dict[str, Any] = {}
            if entry.periodic:
                kwargs["period"] = term_periods[len([g for g in factors if _is_periodic(g)])]
                kwargs["lengthscale"] = settings.PERIODIC_LENGTHSCALE
            elif entry.lengthscale:
                kwargs["lengthscale"] = ell
                if term_periods and one is None:  # the season drifts over a few periods
                    kwargs["lengthscale"] = settings.QUASI_PERIODIC_DECAY * max(term_periods)
                if f == "trend" and span is not None:
                    kwargs["lengthscale"] = max(ell, settings.TREND_SPAN_FRACTION * span)
            if not factors and len(terms) > 1 and isinstance(entry.factory, type):
                kwargs["variance"] = 1.0 / len(terms)  # every built-in class takes it
            k = _build_factor(f, kwargs)
            if factors and "variance" in _raw_names(k):
                k.freeze("variance")
            if entry.periodic and not learn_period:
                k.freeze("period")
            factors.append(k)
        built.append(_product(factors))
    return built[0] if len(built) == 1 else Sum(*built)


def check_lengthscale(
    spec: KernelArg, lengthscale: float | Sequence[float] | None, *, noise_kernel: bool = False
) -> None:
    """Refuse a ``lengthscale`` that :func:`build_kernel` would ignore: a Kernel instance's
    hyper-parameters are taken as given, and a name without a factor that takes one
    (``"white"``, ``"periodic"``: a periodic factor's lengthscale is relative to its period)
    has none in time steps, so a lengthscale for it (one for every channel, or a per-channel
    value of such a channel) would go nowhere, unless ``noise_kernel`` (the likelihood's
    noise kernel starts at it).

    Raises:
        ValidationError: naming ``lengthscale``.
    """
    if lengthscale is None or noise_kernel:
        return
    if isinstance(spec, str):
        if not _takes_lengthscale(spec):
            raise ValidationError(
                f"lengthscale: expected None for kernel={spec!r} ({_no_lengthscale_text}), "
                f"found {lengthscale!r}"
            )
        return
    specs = [spec] if isinstance(spec, Kernel) else list(spec)
    per_channel = not isinstance(lengthscale, numbers.Real)
    names = [i for i, k in enumerate(specs) if isinstance(k, str) and not _takes_lengthscale(k)]
    if names and (per_channel or len(names) == len(specs)):
        raise ValidationError(
            f"lengthscale: expected None for the kernels of channels {names} "
            f"({_no_lengthscale_text}) or a Kernel instance, found {lengthscale!r}"
        )
    instances = [i for i, k in enumerate(specs) if isinstance(k, Kernel)]
    if not instances or (len(instances) < len(specs) and not per_channel):
        return  # the named kernels take it
    which = (
        f"kernel={type(spec).__name__}(...)"
        if isinstance(spec, Kernel)
        else f"the Kernel instances of channels {instances}"
    )
    raise ValidationError(
        f"lengthscale: expected None for {which} (an instance's hyper-parameters are taken as "
        f"given; set its lengthscale directly), found {lengthscale!r}"
    )


_no_lengthscale_text = (
    "no factor of it takes a lengthscale in time steps: 'white' has none, and a periodic "
    "factor's is relative to its period and starts at settings.PERIODIC_LENGTHSCALE"
)


def _takes_lengthscale(name: str) -> bool:
    """Whether :func:`build_kernel` gives the ``lengthscale`` argument to a factor of the
    name (a non-periodic factor that takes one)."""
    return any(
        _REGISTRY[f].lengthscale and not _REGISTRY[f].periodic
        for term in parse_kernel_name(name)
        for f in term
    )


def _per_channel(
    specs: list[Any],
    ells: Sequence[float | None],
    period: float | Sequence[float] | None,
    learn_period: bool,
    span: float | None,
) -> list[Any]:
    """The channel kernels of a per-channel list, the periods handed out in order."""
    periods = _periods_arg(period, num_periods(specs), "the channel kernels")
    out, i = [], 0
    for k, ell in zip(specs, ells):
        n = num_periods(k)
        out.append(build_kernel(k, ell, periods[i : i + n] or None, learn_period, span))
        i += n
    return out


def _raw_names(kernel: Kernel) -> set[str]:
    """The kernel's own positive hyper-parameters (``raw_<name>`` parameters)."""
    return {n[4:] for n in kernel.raw_parameters()}


def _is_periodic(kernel: Kernel) -> bool:
    return "period" in _raw_names(kernel)


def periods_text(n: int, kernel: object) -> str:
    """What ``period`` must hold for a kernel with ``n`` >= 1 periodic factors (the
    ``period: expected ...`` of an error, without what was found)."""
    if n == 1:
        return f"expected 1 period (the kernel {kernel!r} has one periodic factor)"
    return f"expected 1 or {n} periods (one per periodic factor of {kernel!r})"


def _periods_arg(period: float | Sequence[float] | None, n: int, spec: str) -> list[float]:
    if n == 0:
        return []
    if period is None:
        raise ValidationError(
            f"period: expected the period of the periodic kernel in {spec!r} (in time steps), "
            "found None"
        )
    values = [period] if isinstance(period, numbers.Real) else list(cast(Sequence[float], period))
    if len(values) == 1:
        values = values * n
    if len(values) != n:
        raise ValidationError(f"period: {periods_text(n, spec)}, found {len(values)}")
    out = []
    for v in values:
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool)
        if not ok or not 0 < float(v) < float("inf"):
            raise ValidationError(f"period: expected finite positive periods, found {v!r}")
        out.append(float(v))
    return out


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
    for name, param in kernel.raw_parameters().items():
        value = softplus(param.detach().double().cpu())
        out[name[4:]] = float(value) if value.ndim == 0 else value.tolist()
    return out


def _fixed(kernel: Kernel) -> list[str]:
    return sorted(
        name[4:] for name, param in kernel.raw_parameters().items() if not param.requires_grad
    )


def kernel_spec(kernel: KernelArg) -> dict[str, Any]:
    """A JSON description of ``kernel``: ``{"name": ...}`` for a name; for an instance of
    a registered class its name, the current values of its positive hyper-parameters
    (which fix the parameter shapes; the learned values travel in the model's weights) and
    the names of the fixed ones; for sums and products of such kernels
    ``{"name": "sum" | "product", "terms": [...]}``.

    Raises:
        ValidationError: naming ``kernel`` when it is an instance of a class that cannot be
            rebuilt from JSON (user-defined kernels).
    """
    if isinstance(kernel, str):
        return {"name": kernel}
    if not isinstance(kernel, Kernel):
        return {"name": "channels", "channels": [kernel_spec(k) for k in kernel]}
    if isinstance(kernel, (Sum, Product)):
        return {
            "name": "sum" if isinstance(kernel, Sum) else "product",
            "terms": [kernel_spec(k) for k in kernel.terms],
        }
    names = _class_names()
    cls = type(kernel)
    if cls not in names:
        raise ValidationError(
            f"kernel: expected a kernel name or an instance of a registered kernel class "
            f"({', '.join(sorted(c.__name__ for c in names))}, or sums and products of them) "
            f"to save the model, found {cls.__name__}; pass the kernel by name, or save the "
            "weights yourself"
        )
    params = _positive_values(kernel)
    input_dim = getattr(kernel, "input_dim", None)
    if isinstance(kernel, White) and input_dim is not None:
        params["input_dim"] = input_dim
    if isinstance(kernel, HarmonicPeriodic):
        params["num_harmonics"] = kernel.num_harmonics
    out: dict[str, Any] = {"name": names[cls], "params": params}
    fixed = _fixed(kernel)
    if fixed:
        out["fixed"] = fixed
    return out


def kernel_from_spec(spec: Mapping[str, Any]) -> Any:
    """Inverse of :func:`kernel_spec`: a name, a kernel of the recorded class and shapes, or
    a per-channel list of them."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ValidationError(f"kernel: expected a saved kernel spec with a name, found {spec!r}")
    if spec["name"] == "channels" and isinstance(spec.get("channels"), list):
        return [kernel_from_spec(c) for c in spec["channels"]]
    if spec["name"] in ("sum", "product") and "terms" in spec:
        terms = spec["terms"]
        if not isinstance(terms, list) or not terms:
            raise ValidationError(f"kernel: expected a list of saved terms, found {terms!r}")
        built = [kernel_from_spec(t) for t in terms]
        kernels = [k if isinstance(k, Kernel) else get_kernel(k) for k in built]
        return Sum(*kernels) if spec["name"] == "sum" else Product(*kernels)
    if "params" not in spec:
        return str(spec["name"])
    params = spec["params"]
    if not isinstance(params, Mapping):
        raise ValidationError(f"kernel: expected saved parameters as an object, found {params!r}")
    kernel = get_kernel(str(spec["name"]), **dict(params))
    fixed = spec.get("fixed", [])
    if fixed:
        kernel.freeze(*fixed)
    return kernel
