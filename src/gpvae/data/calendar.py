"""Calendar-aware time: regular calendar frequencies, steps, periods and future timestamps.

Datetimes become float hours since the earliest time, except on a regular *calendar* grid
whose steps differ in hours: months (``MS``, ``ME``), quarters, years, business days. Read
as hours, a monthly series has steps of 672 to 744 hours, so ``horizon=24`` stepped by the
median (744 h) drifts off the month starts and a yearly period is 11.8 steps. On such a grid
times are instead counted in steps of the frequency (``time_unit = "steps"``): month k after
the origin is k, future times are ``origin + k * freq`` exactly, and a yearly period is 12.
Months dated on another day than the first (the 15th of every month, possibly at a fixed hour)
are the month-start grid shifted by a fixed time: ``"MS+14D"`` (``"MS+348h"`` at noon). A day
that short months lack is clipped to their last: ``"MS+29D"`` is the 30th of every month and
February's 28th (29th); quarters and years dated so are read alike (``"QS-FEB+29D"``).
Series on one month grid but each on a day of its own (one on the 15th, another on the 20th)
are ``"MS+*"``: a time is its month's step plus its day's shift from the month's first in
units of 31 days (the 15th of month k is ``k + 14 / 31``), so a series' steps are whole
months and its forecasts keep its day.

Periods (``GPVAE(period=...)``) are numbers in the data's time units, or strings: a pandas
duration (``"24h"``, ``"7D"``, ``"365.25D"``) or a calendar offset (``"12MS"``, ``"1YS"``,
``"4QS"``). A calendar offset counts steps exactly on a grid of the same unit (``"12MS"`` on
monthly data is 12 steps) and is otherwise converted through the offset's average length
(a year is 365.2425 days).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pandas as pd

from gpvae.errors import InputTypeError, ValidationError

__all__ = [
    "NS_PER_HOUR",
    "calendar_steps",
    "calendar_times",
    "check_period_text",
    "infer_calendar",
    "mean_step_hours",
    "naive",
    "period_in_units",
    "semi_monthly",
    "wall_clock",
    "zoned",
]

NS_PER_HOUR = 3_600 * 10**9

#: The shift of a month grid whose series are each on a day of their own (``"MS+*"``).
_EACH = "*"
#: On such a grid a time is its month's step plus its shift in units of 31 days.
_EACH_SPAN = pd.Timedelta(days=31)


def _split(freq: str) -> tuple[str, pd.Timedelta | None]:
    """A frequency -> (pandas frequency, shift of its grid): ``"MS+14D"`` -> ("MS", 14 days),
    ``"MS"`` -> ("MS", 0), ``"MS+*"`` -> ("MS", None): each series its own shift."""
    base, plus, shift = freq.partition("+")
    if shift == _EACH:
        return base, None
    return base, pd.Timedelta(shift) if plus else pd.Timedelta(0)


def _offset(freq: str) -> pd.DateOffset:
    return cast(pd.DateOffset, pd.tseries.frequencies.to_offset(_split(freq)[0]))


def _shift_text(shift: pd.Timedelta) -> str:
    hours = shift / pd.Timedelta(hours=1)
    if hours % 24 == 0:
        return f"{int(hours // 24)}D"
    return f"{int(hours)}h" if hours == int(hours) else f"{int(shift.value)}ns"


def _month_starts(idx: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The first day (at midnight) of every time's month."""
    return idx.to_period("M").to_timestamp()


def _clip(starts: pd.DatetimeIndex, shift: Any) -> pd.DatetimeIndex:
    """Month starts moved by ``shift`` (one, or one per start) with the day clipped to the
    month's last: ``shift`` 29 days is the 30th, in February the 28th (29th)."""
    day = pd.Timedelta(days=1)
    days = shift // day
    rest = shift - days * day
    clipped = np.minimum(np.asarray(days), starts.days_in_month.to_numpy() - 1)
    return starts + pd.to_timedelta(clipped, unit="D") + rest


def _day_shift(idx: pd.DatetimeIndex) -> pd.Timedelta | None:
    """The time after its month's first at which every time of ``idx`` lies: one day of
    the month, clipped to the month's last in short months (the 30th, February's 28th), at
    one time of day; the 31st when every time is its month's last. None when they differ."""
    tod = idx - idx.normalize()
    if not bool((tod == tod[0]).all()):
        return None
    day, last = idx.day.to_numpy(), idx.days_in_month.to_numpy()
    free = day < last  # (a month's last day may be a later day clipped)
    anchor = int(day[free][0]) if free.any() else 31
    if (day[free] != anchor).any() or (last[~free] > anchor).any():
        return None
    return pd.Timedelta(days=anchor - 1) + tod[0]


def _month_form(t: np.ndarray) -> tuple[str, pd.Timedelta] | None:
    """Months (quarters, years) dated on one day of the month at one time of day (see
    :func:`_day_shift`): the month-start grid of their months and the shift of that day."""
    if len(t) < 3 or np.diff(np.asarray(t, dtype="datetime64[ns]")).min() < np.timedelta64(
        28 * 24, "h"
    ):  # steps under 28 days: not months (and the common case, kept cheap)
        return None
    idx = pd.DatetimeIndex(t)
    shift = _day_shift(idx)
    if shift is None:
        return None
    base = _pandas_grid(_month_starts(idx).to_numpy())
    if base is None or _months(_offset(base)) is None:
        return None
    return base, shift


def _shifted_freq(t: np.ndarray) -> str | None:
    """Months (quarters, years) dated a fixed time after their first day, the same in every
    month (the 15th, at 09:00, ...; the 30th, clipped to February's last): the month-start
    grid shifted, e.g. ``"MS+14D"``, ``"MS+29D"``."""
    form = _month_form(t)
    if form is None or form[1] == pd.Timedelta(0):
        return None  # (month starts are pandas' own)
    return f"{form[0]}+{_shift_text(form[1])}"


def _is_fixed(offset: pd.DateOffset) -> bool:
    """True for offsets of a fixed duration (hours, days, weeks): hours describe them well."""
    try:
        pd.Timedelta(offset)
    except (TypeError, ValueError):
        return isinstance(offset, pd.offsets.Week) and offset.weekday is None
    return True


def _infer_freq(idx: pd.DatetimeIndex) -> str | None:
    """``pd.infer_freq`` as a string (pandas 4 returns an offset)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pandas 4 return-type notice
        freq = pd.infer_freq(idx)
    if freq is None or isinstance(freq, str):
        return freq
    return str(freq.freqstr)


def _pandas_grid(t: np.ndarray) -> str | None:
    """A pandas frequency on whose grid every time of ``t`` (sorted datetime64) lies."""
    if len(t) < 3:
        return None
    idx = pd.DatetimeIndex(t)
    freq = _infer_freq(idx)
    for i in range(min(len(t) - 2, 50)):  # gaps: the first three consecutive grid points
        if freq is not None:
            break
        freq = _infer_freq(idx[i : i + 3])
    if freq is not None and bool(idx.isin(pd.date_range(idx[0], idx[-1], freq=freq)).all()):
        return freq
    return None


#: Business days with gaps (holidays) are read as such when they pass over at least this
#: many weekend days (two weekends) without a date on one.
_WEEKEND_DAYS_PASSED = 4


def _business_days(t: np.ndarray) -> bool:
    """True for business days with some days missing (holidays): every time a weekday at
    one time of day, no date on any of the (at least two) weekends they span, and more than
    half of the steps one business day. Every such date lies on pandas' ``"B"`` grid, but
    its first three dates (Wednesday to Friday) read as days: ``"D"``, in hours, with
    forecasts on Saturdays and Sundays. Daily data that happen to miss a weekend (a shorter
    stretch) and weekly data on one weekday are not business days."""
    idx = pd.DatetimeIndex(t)
    if len(idx) < 3 or (idx.day_of_week >= 5).any():
        return False
    tod = idx - idx.normalize()
    if not bool((tod == tod[0]).all()):
        return False
    days = idx.normalize().to_numpy().astype("datetime64[D]")
    passed = int(np.busday_count(days[0], days[-1], weekmask="0000011"))  # Sat, Sun between
    if passed < _WEEKEND_DAYS_PASSED:
        return False
    steps = np.busday_count(days[:-1], days[1:])  # business days from each date to the next
    return bool(steps.min() >= 1 and (steps == 1).mean() > 0.5)


def _grid_freq(t: np.ndarray) -> str | None:
    """A frequency on whose grid every time of ``t`` (sorted datetime64) lies: pandas', or a
    shifted month grid (:func:`_shifted_freq`); business days with holidays missing
    (:func:`_business_days`, which pandas reads as days or as no grid) are ``"B"``."""
    freq = _pandas_grid(t)
    if (freq is None or _is_fixed(_offset(freq))) and _business_days(t):
        return "B"
    return freq or _shifted_freq(t)


def _on_grid(x: pd.Timestamp, freq: str) -> bool:
    """True when time ``x`` lies on the grid of ``freq``."""
    shift = _split(freq)[1]
    if shift == pd.Timedelta(0):
        return bool(_offset(freq).is_on_offset(x))
    start = _month_starts(pd.DatetimeIndex([x]))
    on_day = shift is None or _clip(start, shift)[0] == x  # (one time: any day of its own)
    return bool(_offset(freq).is_on_offset(start[0])) and on_day


def _each_day(series: list[np.ndarray]) -> str | None:
    """Series on one month (quarter, year) grid, each on a day of its own (the 15th, the
    20th): ``"MS+*"`` (``"MS+14D"`` when they share one day after all)."""
    forms = [_month_form(t) for t in series if len(t) >= 3]
    if not forms or any(f is None for f in forms):
        return None
    bases = [_offset(cast(tuple[str, pd.Timedelta], f)[0]) for f in forms]
    offset = bases[0]
    if offset.n != 1 or any(type(b) is not type(offset) or b.n != 1 for b in bases):
        return None
    shifts = set()
    for t in series:
        idx = pd.DatetimeIndex(t)
        shift = _day_shift(idx)
        starts = _month_starts(idx)
        if shift is None or shift % pd.Timedelta(seconds=1) or starts.has_duplicates:
            return None  # (shifts in whole seconds: exact in a float step, see calendar_steps)
        if not all(offset.is_on_offset(x) for x in starts):
            return None
        shifts.add(shift)
    base = cast(tuple[str, pd.Timedelta], forms[0])[0]
    if len(shifts) > 1:
        return f"{base}+{_EACH}"
    shift = shifts.pop()
    return base if shift == pd.Timedelta(0) else f"{base}+{_shift_text(shift)}"


def infer_calendar(times: Sequence[np.ndarray]) -> str | None:
    """The calendar frequency shared by all series, when their steps vary in hours.

    Args:
        times: per series, sorted datetime64 times.

    Returns:
        A pandas frequency string (``"MS"``, ``"QS-OCT"``, ``"B"``, ...), a shifted month
        grid (``"MS+14D"``; ``"MS+*"`` when each series is on a day of its own), or None
        when the times are not on one regular calendar grid or the grid has steps of a
        fixed length (hours, days: those stay in hours; weeks anchored on a weekday, the
        grid pandas names weekly dates by, ``"W-MON"``, are counted in weeks).
    """
    series = [np.sort(np.asarray(t, dtype="datetime64[ns]")) for t in times]
    freqs = set()
    short = []  # series of one or two times cannot show a grid; they must lie on it
    for t in series:
        if len(t) < 3:
            short.append(t)
            continue
        freq = _grid_freq(t)
        if freq is None:
            return None
        freqs.add(freq)
    if not freqs:
        return None
    if len(freqs) == 1:
        freq = freqs.pop()
        if _is_fixed(_offset(freq)):
            return None
        if all(_on_grid(pd.Timestamp(x), freq) for t in short for x in t):
            return freq
    return _each_day(series)


def semi_monthly(times: Sequence[np.ndarray]) -> str | None:
    """``"SMS"`` (the 1st and 15th of every month) or ``"SME"`` (the 15th and the month's
    last day) when every time of every series lies on that semi-monthly grid, at one time
    of day, and some series has three or more times on both of its days; else None.

    gpvae does not count these grids in steps (:func:`infer_calendar` reads them as no
    grid, in hours: a step is 13 to 16 days); this names them for a warning."""
    series = [pd.DatetimeIndex(np.asarray(t, dtype="datetime64[ns]")) for t in times]
    series = [idx for idx in series if len(idx)]
    if not any(len(idx) >= 3 for idx in series):
        return None
    every = series[0].append(series[1:]) if len(series) > 1 else series[0]
    tod = every - every.normalize()
    if not bool((tod == tod[0]).all()):
        return None
    day = every.day.to_numpy()
    last = every.days_in_month.to_numpy()
    for freq, first, second in (("SMS", day == 1, day == 15), ("SME", day == 15, day == last)):
        if bool((first | second).all() and first.any() and second.any()):
            return freq
    return None


def wall_clock(t: np.ndarray, tz: Any) -> np.ndarray:
    """UTC datetimes ``t`` (naive datetime64) as the wall-clock times of zone ``tz``."""
    idx = pd.DatetimeIndex(np.asarray(t, dtype="datetime64[ns]").ravel())
    local = idx.tz_localize("UTC").tz_convert(tz).tz_localize(None)
    return local.to_numpy(dtype="datetime64[ns]").reshape(np.shape(t))


def zoned(t: np.ndarray, tz: Any, wall: bool) -> np.ndarray:
    """Naive datetimes ``t`` (any shape) as zone-aware timestamps of ``tz`` (an object array):
    ``t`` holds the zone's wall-clock times when ``wall``, else UTC times."""
    idx = pd.DatetimeIndex(np.asarray(t, dtype="datetime64[ns]").ravel())
    if wall:  # a wall-clock time skipped at a clock change becomes the first after the
        # gap; a repeated one is read as the first (summer time) of the two
        dst = np.ones(len(idx), dtype=bool)
        out = idx.tz_localize(tz, ambiguous=dst, nonexistent="shift_forward")
    else:
        out = idx.tz_localize("UTC").tz_convert(tz)
    return np.asarray(out.astype(object)).reshape(np.shape(t))


def naive(values: Any, tz: Any, wall: bool) -> np.ndarray:
    """Datetimes ``values`` (1-D; zone-aware or naive) as naive datetime64: zone-aware ones
    as the wall-clock times of ``tz`` when ``wall``, else in UTC; naive ones are read as the
    wall-clock times of ``tz``."""
    idx = pd.DatetimeIndex(values)
    if idx.tz is None:
        idx = idx.tz_localize(tz)
    idx = idx.tz_convert(tz) if wall else idx.tz_convert("UTC")
    return idx.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def _first_off_day(idx: pd.DatetimeIndex) -> pd.Timestamp:
    """The first time of ``idx`` on another day of the month (or time of day) than those
    before it (:func:`_day_shift` of ``idx`` is None)."""
    lo, hi = 1, len(idx)  # idx[:lo] on one day, idx[:hi] not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _day_shift(idx[:mid]) is None else (mid, hi)
    return idx[hi - 1]


def calendar_steps(t: np.ndarray, origin: Any, freq: str, name: str = "times") -> np.ndarray:
    """Steps of ``freq`` from ``origin`` (float64) for datetimes ``t`` on that grid.

    On a grid of series each on a day of its own (``"MS+*"``), ``t`` is one series: its
    month's step plus its shift from the month's first day in units of 31 days (the 15th
    is ``k + 14 / 31``), so that its steps are whole months apart.

    Raises:
        ValidationError: naming ``name`` when a time is not on the grid.
    """
    shift = _split(freq)[1]
    idx = pd.DatetimeIndex(np.asarray(t, dtype="datetime64[ns]"))
    if len(idx) == 0:
        return np.zeros(0)
    if shift == pd.Timedelta(0):  # pandas' own grid
        start = pd.Timestamp(origin)
        points = idx
    else:  # a shifted month grid: the months' first days, then the day in each month
        start = _month_starts(pd.DatetimeIndex([pd.Timestamp(origin)]))[0]
        points = _month_starts(idx)
    own = shift if shift is not None else _day_shift(idx)
    if own is None or (shift is None and own % pd.Timedelta(seconds=1)):
        found = (
            f"{idx[0]} and {_first_off_day(idx)}"
            if own is None
            else f"{idx[0]} (a fraction of a second)"
        )
        raise ValidationError(
            f"{name}: expected the times of a series on one day of the month at one time of "
            f"day in whole seconds (the data's calendar grid {freq!r}: months, each series "
            f"on a day of its own), found {found}"
        )
    lo, hi = min(points.min(), start), max(points.max(), start)
    grid = pd.date_range(lo, hi, freq=_offset(freq))
    pos = grid.get_indexer(points)
    zero = grid.get_indexer([start])[0]
    off = pos < 0
    if own != pd.Timedelta(0):
        off |= np.asarray(_clip(points, own) != idx)
    if off.any() or zero < 0:
        bad = idx[off][0] if off.any() else pd.Timestamp(origin)
        # (the grid's origin is only named when it is on the grid: else it is the time off it)
        where = "" if zero < 0 or bad == pd.Timestamp(origin) else f" from {pd.Timestamp(origin)}"
        raise ValidationError(
            f"{name}: expected times on the data's calendar grid (frequency {freq!r}{where}), "
            f"found {bad}"
        )
    steps = (pos - zero).astype(np.float64)
    return steps if shift is not None else steps + own / _EACH_SPAN


def calendar_times(steps: np.ndarray, origin: Any, freq: str) -> np.ndarray:
    """Datetimes ``origin + k * freq`` for whole steps ``k`` (any shape) -> datetime64[ns]
    (on a grid of series each on a day of its own, ``"MS+*"``, ``k`` plus that day's shift
    in units of 31 days, see :func:`calendar_steps`).

    Raises:
        ValidationError: naming ``future_times`` when a step is not a whole number.
    """
    steps = np.asarray(steps, dtype=np.float64)
    shift = _split(freq)[1]
    if shift is None:  # the step's fraction is its series' own shift, in whole seconds
        k = np.floor(steps + 1e-9)
        seconds = np.round(np.maximum(steps - k, 0.0) * _EACH_SPAN.total_seconds())
        own: Any = pd.to_timedelta(seconds.ravel(), unit="s")
    else:
        k = np.round(steps)
        own = shift
        if not np.allclose(steps, k, atol=1e-6):
            raise ValidationError(
                f"future_times: expected whole steps of the calendar frequency {freq!r}, "
                f"found {steps[np.abs(steps - k) > 1e-6][0]}"
            )
    ki = k.astype(np.int64)
    lo, hi = int(min(ki.min(), 0)), int(max(ki.max(), 0))
    start = pd.Timestamp(origin)
    if shift != pd.Timedelta(0):
        start = _month_starts(pd.DatetimeIndex([start]))[0]
    offset = _offset(freq)
    first = start + lo * offset if lo < 0 else start
    grid = pd.date_range(first, periods=hi - lo + 1, freq=offset)
    out = pd.DatetimeIndex(grid.to_numpy()[(ki - lo).ravel()])
    if shift != pd.Timedelta(0):
        out = _clip(out, own)
    return out.to_numpy().astype("datetime64[ns]").reshape(steps.shape)


#: Hours in an average Gregorian month (365.2425 days / 12).
_MONTH_HOURS = 365.2425 * 24.0 / 12.0


def _months(offset: pd.DateOffset) -> int | None:
    """Months per step of a month, quarter or year offset, else None."""
    name = type(offset).__name__
    if "Month" in name:
        return int(offset.n)
    if "Quarter" in name:
        return 3 * int(offset.n)
    if "Year" in name:
        return 12 * int(offset.n)
    return None


def mean_step_hours(freq: str) -> float:
    """Average length of one step of ``freq`` in hours (months: 365.2425 / 12 days)."""
    offset = _offset(freq)
    months = _months(offset)
    if months is not None:
        return months * _MONTH_HOURS
    if _is_fixed(offset):
        return float(pd.Timedelta(offset) / pd.Timedelta(hours=1))
    start = pd.Timestamp("2000-01-03")  # other calendar offsets: average over 2000 steps
    span = (start + 2000 * offset.base) - start
    return float(span / pd.Timedelta(hours=1)) / 2000.0 * offset.n


def period_in_units(period: float | str, time_unit: str | None, freq: str | None) -> float:
    """A period in the data's time units (hours, steps of ``freq``, or plain numbers).

    Args:
        period: a positive number (already in the data's units), or a duration / calendar
            offset string (see the module docstring).
        time_unit: the data's time unit: None (numbers), ``"hours"`` or ``"steps"``.
        freq: the calendar frequency when ``time_unit == "steps"``.

    Raises:
        InputTypeError: naming ``period`` for a string with numeric times.
        ValidationError: naming ``period`` for an unreadable string or a non-positive value.
    """
    if not isinstance(period, str):
        value = float(period)
        if not 0 < value < float("inf"):
            raise ValidationError(f"period: expected a finite positive period, found {period!r}")
        return value
    if time_unit is None:
        raise InputTypeError(
            f"period: expected a number in the data's time units (the times are numbers, "
            f"not datetimes), found {period!r}"
        )
    hours, offset = _period_hours(period)
    if time_unit == "hours":
        return hours
    step = _offset(str(freq))  # "steps" always comes with its frequency
    if offset is not None:
        if _months(offset) is not None and _months(step) is not None:
            return float(cast(int, _months(offset)) / cast(int, _months(step)))
        if type(offset) is type(step) and offset.base == step.base:
            return offset.n / step.n
    return hours / mean_step_hours(str(freq))


def check_period_text(period: str) -> None:
    """Refuse a period string that is no positive duration or calendar offset (``'abc'``,
    ``'0h'``, ``'-24h'``, or a number without a unit such as ``'24'``, which pandas reads
    as nanoseconds), naming ``period``."""
    _period_hours(period)


def _period_hours(period: str) -> tuple[float, pd.DateOffset | None]:
    """Hours of a period string, and its calendar offset when it is one."""
    try:
        float(period)
    except ValueError:
        pass
    else:  # pandas reads "24" as 24 nanoseconds
        raise ValidationError(
            f"period: expected a number, or a duration or calendar offset string with its "
            f"unit such as '24h', '365.25D' or '12MS', found the string {period!r} without a "
            f"unit (give the number {period.strip()}, in the data's time units, or add the unit)"
        )
    if "," in period:  # pandas would read "24h,7D" as one period of their sum
        raise ValidationError(
            f"period: expected one duration per period (a list, or --period once per "
            f"periodic factor), found {period!r}"
        )
    try:  # (not _offset: "+" is no part of a period)
        offset = cast(pd.DateOffset, pd.tseries.frequencies.to_offset(period))
    except (TypeError, ValueError):
        offset = None
    if offset is not None and not _is_fixed(offset):
        if offset.n <= 0:
            raise ValidationError(f"period: expected a positive period, found {period!r}")
        return mean_step_hours(period), offset
    try:
        delta = pd.Timedelta(period)
    except (TypeError, ValueError):
        delta = None
    if delta is None or not delta > pd.Timedelta(0):
        raise ValidationError(
            f"period: expected a number, a positive duration such as '24h' or '365.25D', or "
            f"a calendar offset such as '12MS' or '1YS', found {period!r}"
        )
    return float(delta / pd.Timedelta(hours=1)), None
