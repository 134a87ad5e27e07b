"""Checks of user arguments shared by every upper layer (estimator, results, command line).

Each check returns the normalised value or raises a :class:`~gpvae.errors.GPVAEError` whose
message names the argument, what was expected and what was found.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence

import numpy as np

from gpvae.errors import InputTypeError, ValidationError, invalid

__all__ = [
    "bool_arg",
    "check_memory",
    "check_name",
    "float_arg",
    "int_arg",
    "interval_draws_arg",
    "member_draws_arg",
    "normalise_name",
    "physical_memory",
    "quantiles_arg",
    "warn_few_draws",
]


def int_arg(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` as an int >= ``minimum`` or raise a GPVAEError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name}: expected an integer >= {minimum}, found {value!r}")
    if value < minimum:
        raise invalid(name, f"an integer >= {minimum}", value)
    return int(value)


def float_arg(name: str, value: object, *, positive: bool = True) -> float:
    """A finite number, > 0 (``positive``) or >= 0, or a GPVAEError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name}: expected a number, found {value!r}")
    v = float(value)
    if not math.isfinite(v) or (v <= 0 if positive else v < 0):
        raise invalid(name, "a finite number " + ("> 0" if positive else ">= 0"), value)
    return v


def lengthscale_arg(value: object, latent_dim: int) -> float | tuple[float, ...] | None:
    """None, one positive number, or ``latent_dim`` of them (one per latent channel), else
    an error naming ``lengthscale``."""
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        return float_arg("lengthscale", value)
    values = list(np.asarray(value, dtype=object))
    nested = np.ndim(value) != 1
    if nested or len(values) != latent_dim:
        found = f"shape {np.shape(value)}" if nested else len(values)
        raise ValidationError(
            f"lengthscale: expected one number or {latent_dim} (one per latent channel, "
            f"latent_dim), found {found}"
        )
    return tuple(float_arg("lengthscale", v) for v in values)


def lengthscale_text(text: str) -> float | tuple[float, ...]:
    """``"16"`` or ``"3,6,12,24"`` (one per latent channel) as a number or a tuple of
    them; a ValidationError when a value is not a positive number."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValidationError(
            f"expected a number or comma-separated numbers, found {text!r}"
        ) from None
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValidationError(f"expected positive numbers, found {text!r}")
    return values[0] if len(values) == 1 else values


def bool_arg(name: str, value: object) -> bool:
    """``value`` as a bool (Python or numpy), or an InputTypeError naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise InputTypeError(f"{name}: expected True or False, found {value!r}")
    return bool(value)


def quantiles_arg(quantiles: object) -> tuple[float, float]:
    """Interval probabilities ``(lower, upper)`` with 0 < lower < upper < 1, or an error
    naming ``quantiles``."""
    try:
        lo, hi = (float(q) for q in quantiles)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise invalid("quantiles", "two probabilities (lower, upper)", quantiles) from None
    if not (0.0 < lo < hi < 1.0):
        raise invalid("quantiles", "0 < lower < upper < 1", quantiles)
    return lo, hi


def draws_for_interval(lo: float, hi: float) -> int:
    """The fewest draws S whose predictive positions p (S + 1) put both ends of the interval
    ``(lo, hi)`` strictly inside the sorted draws (each end at position >= 1), so that it
    covers a new draw with its nominal probability (:func:`gpvae.model.sorted_quantiles`)."""
    tail = min(lo, 1.0 - hi)
    return max(2, math.ceil(1.0 / tail - 1e-9) - 1)


def interval_draws_arg(num_samples: object, quantiles: object) -> tuple[int, float, float]:
    """``(S, lower, upper)`` for an interval read from ``num_samples`` draws: an error naming
    ``num_samples`` below 2 draws (one draw is no interval). Whether the draws are enough
    for the interval's level is :func:`warn_few_draws`, called once the inputs are checked
    (a warning before an error about them would only add noise)."""
    expected = "at least 2 draws for the interval [lower, upper]"
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        raise InputTypeError(
            f"num_samples: expected {expected} (an integer), found {num_samples!r}"
        )
    S = int(num_samples)
    lo, hi = quantiles_arg(quantiles)
    if S < 2:  # (0 said "an integer >= 1" while 1 said this)
        raise invalid("num_samples", expected, S)
    return S, lo, hi


def member_draws_arg(
    num_samples: object, quantiles: object, members: int
) -> tuple[int, float, float]:
    """:func:`interval_draws_arg` for draws shared out between ``members`` models (an
    ensemble): an error naming ``num_samples`` below two draws per member."""
    S, lo, hi = interval_draws_arg(num_samples, quantiles)
    if 2 * members > S:
        raise invalid("num_samples", f"at least two draws per member ({2 * members})", S)
    return S, lo, hi


def warn_few_draws(S: int, lo: float, hi: float, stacklevel: int = 4) -> None:
    """A :class:`UserWarning` when ``S`` draws are too few for the interval ``(lo, hi)``
    (an end then falls on the smallest or largest draw: with both there it covers a new
    draw with probability (S - 1) / (S + 1) only)."""
    need = draws_for_interval(lo, hi)
    if need > S:
        warnings.warn(
            f"num_samples: {S} draws are too few for the interval ({lo:g}, {hi:g}): an end "
            f"falls on the smallest or largest draw, so it covers a new draw less often than "
            f"{hi - lo:.2f}; this interval needs at least {need} draws",
            UserWarning,
            stacklevel=stacklevel,  # 4: the caller of GPVAE.impute or GPVAE.forecast
        )


def normalise_name(value: str) -> str:
    """The registry key of a name: stripped, lower case, ``-`` read as ``_``."""
    return value.strip().lower().replace("-", "_")


def check_name(argument: str, value: object, options: Sequence[str]) -> str:
    """Normalise a registry name (:func:`normalise_name`) or raise naming ``argument``."""
    if not isinstance(value, str):
        raise InputTypeError(
            f"{argument}: expected one of {', '.join(map(repr, options))}, found "
            f"{type(value).__name__}"
        )
    key = normalise_name(value)
    if key not in options:
        raise ValidationError(
            f"{argument}: expected one of {', '.join(map(repr, options))}, found {value!r}"
        )
    return key


def physical_memory() -> int | None:
    """Bytes of physical memory on this machine, or None where the OS does not report it."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return pages * size if pages > 0 and size > 0 else None


def check_memory(names: str, nbytes: float, what: str) -> None:
    """Raise a ValidationError naming ``names`` when ``nbytes`` exceed physical memory.

    Called before large work (``what`` describes it) so that an absurd request fails at
    once with a message that names the arguments, not with a MemoryError half-way through.
    """
    limit = physical_memory()
    if limit is not None and nbytes > limit:
        raise ValidationError(
            f"{names}: expected values whose working memory fits in this machine's "
            f"{limit / 2**30:.1f} GiB, found {what}, about {nbytes / 2**30:.3g} GiB"
        )
