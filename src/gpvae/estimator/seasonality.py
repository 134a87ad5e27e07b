"""The periods of a model's periodic kernels: given by the user, or found in the data.

``GPVAE(period=...)`` takes a number in the data's time units, a duration or calendar
offset string (``"24h"``, ``"365.25D"``, ``"12MS"``; see :mod:`gpvae.data.calendar`), or a
sequence of them, one per periodic factor of the kernel name in order. Periods the user gives
stay fixed during training. With ``period=None`` the periods start at the strongest peaks of
the training data's periodogram (:func:`gpvae.data.spectrum.dominant_periods`) and are
learned.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any, cast

from torch import nn

from gpvae.data import Scaler, SeriesSet
from gpvae.data.calendar import check_period_text, period_in_units
from gpvae.data.spectrum import dominant_periods
from gpvae.errors import InputTypeError, ValidationError, outside_stacklevel
from gpvae.kernels import (
    HarmonicPeriodic,
    Kernel,
    KernelArg,
    Periodic,
    SpaceTime,
    num_periods,
)
from gpvae.kernels.registry import periods_text

__all__ = ["PeriodArg", "check_period", "given_periods", "resolve_periods"]

PeriodArg = float | str | Sequence[float | str] | None


def check_period(period: Any, kernel: KernelArg) -> PeriodArg:
    """Validate the form of ``period`` for ``kernel`` (the units are checked at fit).

    Raises:
        InputTypeError, ValidationError: naming ``period``.
    """
    _check_kernel_periods(kernel)
    if period is None:
        return None
    n = num_periods(kernel)
    if n == 0:
        name = kernel if isinstance(kernel, str) else type(kernel).__name__
        raise ValidationError(
            f"period: expected None for kernel={name!r}, which has no periodic factor named "
            f"in it (a period needs one, e.g. kernel='matern32+periodic'; a kernel "
            f"instance's period is set on the instance), found {period!r}"
        )
    one = isinstance(period, (str, numbers.Real))
    values = [period] if one else period
    if not isinstance(values, (list, tuple)):
        raise InputTypeError(
            f"period: expected a number, a string such as '24h' or a list of them, found "
            f"{type(period).__name__}"
        )
    if len(values) not in (1, n):
        raise ValidationError(f"period: {periods_text(n, kernel)}, found {len(values)}")
    checked: list[float | str] = []
    for v in values:
        ok = isinstance(v, (str, numbers.Real)) and not isinstance(v, bool)
        if not ok:
            raise InputTypeError(f"period: expected numbers or strings, found {v!r}")
        if isinstance(v, numbers.Real):  # numpy scalars too; the units are checked at fit
            if not 0 < float(v) < float("inf"):
                raise ValidationError(f"period: expected finite positive periods, found {v!r}")
            v = int(v) if isinstance(v, numbers.Integral) else float(v)  # JSON-able
        else:  # a duration or offset (its size in the data's units is known at fit)
            check_period_text(v)
        checked.append(v)
    return checked[0] if one else checked


def _check_kernel_periods(kernel: KernelArg) -> None:
    """Refuse a kernel object whose periodic part repeats in under two time steps (the
    default period of 1 step, say): sampled once a step it cannot be told from a constant,
    and its period gets no gradient there, so it is never learned away."""
    if isinstance(kernel, str):
        return
    if not isinstance(kernel, Kernel):
        for one in kernel:
            _check_kernel_periods(one)
        return
    if isinstance(kernel, SpaceTime):  # (the spatial kernel counts in km, not steps)
        _check_kernel_periods(kernel.temporal)
        return
    if isinstance(kernel, (HarmonicPeriodic, Periodic)):
        steps = float(kernel.period.detach().min())
        if steps < 2.0:
            name = type(kernel).__name__
            raise ValidationError(
                f"kernel: expected periodic parts with a period of at least two time steps "
                f"(a kernel object counts time in median time steps of the training data), "
                f"found {name} with period {steps:g}; give the period in steps, e.g. "
                f"{name}(period=24) for a daily cycle in hourly data"
            )
    for part in kernel.children():
        if isinstance(part, Kernel):
            _check_kernel_periods(part)
        elif isinstance(part, nn.ModuleList):
            _check_kernel_periods([k for k in part if isinstance(k, Kernel)])


def given_periods(
    period: PeriodArg, n: int, time_form: tuple[Any, Any], time_step: float
) -> tuple[list[Any], list[float]]:
    """The user's ``period`` for each of ``n`` periodic factors, as given and in model units
    (time steps of ``time_step`` time units, on times counted as ``time_form``, the
    (``time_unit``, ``freq``) of the data or of a fitted :class:`~gpvae.data.Scaler`)."""
    values: list[Any] = (
        [period] if isinstance(period, (str, numbers.Real)) else list(cast(Sequence[Any], period))
    )
    if len(values) == 1:
        values = values * n
    steps = [period_in_units(v, time_form[0], time_form[1]) / time_step for v in values]
    return values, steps


def _short_period(
    value: Any, steps: float, time_unit: str | None, freq: str | None, scaler: Scaler
) -> str:
    """The error for a period of under two time steps (``steps``) given as ``value``, in
    the units the data's times are counted in (``time_unit``, ``freq``: the data's
    layout). A number for dates or durations counts hours (steps of ``freq`` on a calendar
    grid), which is said, with the string forms of the period that was likely meant
    (period=7 on daily dates: 7 hours, not the 7 days of '7D' or '168h')."""
    step = scaler.time_step_
    spacing = {"hours": _count(step, "hour"), "steps": f"{_count(step, 'step')} of {freq}"}
    text = (
        f"period: expected at least two time steps per period (the training series are "
        f"spaced {spacing.get(str(time_unit), f'{step:g} time units')} apart in their "
        f"median step, so a shorter cycle cannot be seen in them), found {value!r} "
        f"({steps:g} steps)"
    )
    if isinstance(value, str) or time_unit is None:
        return text
    if time_unit == "hours":
        return (
            f"{text}: the model counts dates and durations in hours, so the number "
            f"{value!r} means {_count(value, 'hour')}; give the period as a duration string "
            f"with its unit, such as '{value:g}D' or '{24 * value:g}h' for "
            f"{_count(value, 'day')}"
        )
    return (
        f"{text}: the model counts these dates in steps of their calendar {freq!r}, so the "
        f"number {value!r} means {_count(value, 'step')} of {freq}; give at least 2, or the "
        f"period as a calendar offset string such as '12MS' or '1YS'"
    )


def _count(value: float, unit: str) -> str:
    """``value`` with its unit in the singular or plural ('1 hour', '7 hours')."""
    return f"{value:g} {unit}" if value == 1 else f"{value:g} {unit}s"


def _warn_long_periods(
    values: list[Any], steps: list[float], data: SeriesSet, scaler: Scaler
) -> None:
    """Warn of a given period longer than the longest training series: no cycle of it can
    be seen in the data, and a number may have been meant in another unit (audit, session
    47: period=8760, a year in hours, on weekly dates was read as 8,760 weeks without a
    word; weekly dates are counted in weeks)."""
    span = max((float(t[-1] - t[0]) for t in data.times if len(t)), default=0.0)
    span_steps = span / scaler.time_step_
    lay = data.layout
    unit = {"hours": "hours", "steps": f"steps of {lay.freq}"}.get(
        str(lay.time_unit), "the times' own units"
    )
    for v, p in zip(values, steps):
        if span_steps > 0 and p > span_steps:
            warnings.warn(
                f"period: expected a cycle the training data can show, found {v!r} "
                f"({p:g} steps), longer than the longest training series ({span_steps:g} "
                f"steps); a number is read in {unit} (a string such as '365D' names its "
                "unit)",
                UserWarning,
                stacklevel=outside_stacklevel(),
            )


def resolve_periods(
    kernel: KernelArg, period: PeriodArg, data: SeriesSet, scaler: Scaler
) -> tuple[list[float] | None, bool]:
    """The periods in model units (time steps) and whether they are learned.

    Returns:
        ``(None, True)`` for kernels without a periodic factor by name; otherwise one period
        per periodic factor and False when the user gave them.

    Raises:
        ValidationError: naming ``period`` when it cannot be read in the data's units, or
            when ``period=None`` and the data are too short to show a period.
    """
    n = num_periods(kernel)
    if n == 0:
        return None, True
    lay = data.layout
    if period is not None:
        values, steps = given_periods(period, n, (lay.time_unit, lay.freq), scaler.time_step_)
        for v, p in zip(values, steps):
            if p < 2.0:  # e.g. period="24h" on daily data: one value per cycle
                raise ValidationError(_short_period(v, p, lay.time_unit, lay.freq, scaler))
        _warn_long_periods(values, steps, data, scaler)
        return steps, False
    found = dominant_periods(data.values, data.times, n)
    if not found:
        raise ValidationError(
            "period: expected a period for the periodic kernel (the training series are too "
            "short to find one in their spectrum), found None"
        )
    found = found + [found[-1]] * (n - len(found))
    return [p / scaler.time_step_ for p in found], True
