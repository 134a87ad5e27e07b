"""Result objects of :class:`gpvae.GPVAE`: imputations, forecasts and anomaly scores.

Every array is in the original units of the data. "Input form" means what the user passed:
an array (n, T, D) for an array, a list of n arrays (T_i, D) for a ragged list, a copy of
the DataFrame (same rows, order, index and columns) for a DataFrame.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from gpvae.arguments import check_memory, int_arg
from gpvae.data import SeriesSet, from_padded, unpad
from gpvae.data._parse import kept_float
from gpvae.data.calendar import calendar_steps, calendar_times, naive, zoned
from gpvae.errors import InputTypeError, ShapeError, ValidationError

__all__ = [
    "AnomalyResult",
    "ForecastResult",
    "ImputationResult",
    "forecast_frame",
    "future_times_row",
    "mask_form",
    "resolve_future_times",
    "samples_form",
    "time_texts",
    "times_1d",
    "times_out",
]

_NS_PER_HOUR = 3.6e12


def _no_frame(what: str) -> InputTypeError:
    return InputTypeError(
        f"to_frame: expected a {what} computed from a DataFrame input, found one from an "
        "array or list input (use .mean, .lower and .upper)"
    )


@dataclass(frozen=True, eq=False)
class ImputationResult:
    """Imputed values with predictive intervals.

    Observed entries of ``mean``, ``lower`` and ``upper`` (and of every sample) are the
    input's values, bit for bit. Missing entries hold the posterior-predictive mean and the
    quantiles of draws y ~ p(y | z), z ~ q(z | observed), so the intervals include the
    observation noise.

    Attributes:
        mean: posterior-predictive mean, input form ((n, T, D) array, list of (T_i, D)
            arrays, or DataFrame).
        lower: the lower quantile (default 5%), input form.
        upper: the upper quantile (default 95%), input form.
        samples: None unless asked for: (S, n, T, D) array for arrays, a list of n (S, T_i, D)
            arrays for ragged lists, (S, R, D) for a DataFrame of R rows (feature columns in
            order).
        observed: True where the input was observed: bool, input form (for DataFrames, a
            copy of the frame whose feature columns are bool).
        quantiles: the (lower, upper) probabilities.
    """

    mean: Any
    lower: Any
    upper: Any
    samples: Any
    observed: Any
    quantiles: tuple[float, float]
    frame: pd.DataFrame | None = field(default=None, repr=False)

    def to_frame(self) -> pd.DataFrame:
        """One frame for a DataFrame input: the input's columns with the feature columns
        imputed (mean), plus ``<feature>_lower`` and ``<feature>_upper`` columns.

        Raises:
            ValidationError: the input has a column (other than a feature) named like one
                of those, e.g. from an earlier ``to_frame()`` (the frame would hold two
                columns of that name).
        """
        if self.frame is None:
            raise _no_frame("result")
        columns = self.frame.columns
        clash = list(dict.fromkeys(columns[columns.duplicated()]))
        if clash:
            raise ValidationError(
                f"to_frame: expected no input column named like the <feature>_lower and "
                f"<feature>_upper columns it adds, found {clash} in the input (e.g. from an "
                f"earlier to_frame()): rename or drop {clash[0]!r} before imputing (.mean, "
                ".lower and .upper hold the results without it)"
            )
        return self.frame.copy()


@dataclass(frozen=True, eq=False)
class ForecastResult:
    """Forecasts at H future times of every series.

    Attributes:
        times: (n, H) future times in the input's time units (datetime64 for datetime
            inputs; an object array of pandas Timestamps in their zone for zone-aware
            ones, which datetime64 cannot hold).
        mean: (n, H, D) predictive mean.
        lower: (n, H, D) lower quantile.
        upper: (n, H, D) upper quantile.
        samples: None, or (S, n, H, D) draws of y.
        quantiles: the (lower, upper) probabilities.
        series_ids: the id of every series (long DataFrames) or None.
    """

    times: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    samples: np.ndarray | None
    quantiles: tuple[float, float]
    series_ids: tuple[Any, ...] | None = None
    frame: pd.DataFrame | None = field(default=None, repr=False)

    def to_frame(self) -> pd.DataFrame:
        """For a DataFrame input: one row per (series, future time) with the input's id and
        time columns (a wide frame's time becomes the index, as in the input), the feature
        columns (mean) and ``<feature>_lower`` / ``<feature>_upper`` columns."""
        if self.frame is None:
            raise _no_frame("forecast")
        return self.frame.copy()


@dataclass(frozen=True, eq=False)
class AnomalyResult:
    """Per-entry and per-step anomaly scores (higher = more anomalous).

    ``entry[i, t, d] = H[i, t, d] + w * r[d] * P[i, t, d]``, in standardised units (the
    value after the fit's scaler), NaN where the entry is not observed, where:

    - ``H = -log p(y[i, t, d] | y[i, steps not in the fold of t])``, the held-out negative
      log posterior-predictive density of the entry under the model's posterior given the
      series (or the window of ``window`` steps around t) with every entry at step t (and
      the other steps of its fold) hidden (``causal``: given the steps before its block);
    - ``P = -log p(y[i, t, d])`` under the GP prior alone at step t (nothing conditioned
      on: how far the value lies from anything the model calls normal);
    - ``w`` is the call's ``prior_weight`` (by default the stored profile's, else
      :data:`gpvae.settings.ANOMALY_PRIOR_WEIGHT`, 0.5; 0 for a likelihood whose entries
      are not independent given z, e.g. ``"gaussian_gp"``) and ``r[d]`` the profile's
      ``prior_ratio`` (the spread of feature d's held-out scores over that of its prior
      scores on the normal data; 1 without a profile).

    So ``entry`` is the held-out negative log predictive density only with
    ``prior_weight=0``; then adding ``log(scaler_.std_[d])`` gives it in original units
    (with a prior part the change of units adds ``(1 + w * r[d]) * log(scaler_.std_[d])``).
    Without a threshold profile ``step[i, t]`` is the sum of ``entry[i, t, :]`` over the
    observed entries (NaN if none); with one (after :meth:`~gpvae.GPVAE.fit_threshold`) it
    is the profile's normalised, smoothed step score (:mod:`gpvae.estimator.anomaly`; NaN at
    a step with no observed entry, whatever the smoothing).

    Attributes:
        entry: per-entry scores, input form ((n, T, D) array, list, or DataFrame copy with
            the feature columns replaced by scores), float64 whatever the input's dtype.
        step: per-step scores: (n, T) array, list of (T_i,) arrays, or a Series aligned with
            the DataFrame's rows.
        num_folds: the K interleaved folds of time steps used.
        num_samples: Monte Carlo samples of z per fold.
        window: steps per scoring window (None: whole series).
        threshold: the stored threshold (None before ``fit_threshold``).
        flagged: per-step booleans ``alarm > threshold`` in the form of ``step``, or None.
        alarm: the per-step scores compared with ``threshold`` (the profile's alarm score:
            ``step`` over the alarm's own trailing window, with its drift baseline and caps;
            :mod:`gpvae.estimator.anomaly`), in the form of ``step``, or None without a
            threshold. Draw ``threshold`` over these, not over ``step``.
        intervals: per series, the flagged intervals
            (:func:`gpvae.estimator.anomaly.flagged_intervals`), or None; for a long
            DataFrame in the order of ``series_ids``. ``start``, ``end`` and ``peak`` are
            positions among the series' own steps sorted by time (0 = its earliest step;
            with merged duplicate times, the merged steps), not a DataFrame's rows or index
            labels: use ``start_time`` / ``end_time`` / ``peak_time`` (and the series id)
            to find the rows, or ``flagged``, which is aligned with them. The ``*_time``
            values are the input's own: numbers, or ``pd.Timestamp`` (zone-aware in the
            input's zone, or naive) for datetimes, ``pd.Timedelta`` for durations.
            ``peak`` / ``peak_score`` are the interval's highest ``alarm`` (as ``gpvae
            detect``'s intervals; with the rank alarm, a share near 1), ``max_score`` its
            highest ``step`` score (how far out it goes). An interval's ``features`` are those
            that contribute materially (tail scale: a value at one of its steps as rare,
            on its own, as the profile's ``false_alarm_rate``), up to three.
        series_ids: the id of every series (long DataFrames: in the order each id first
            appears in the rows) or None.
    """

    entry: Any
    step: Any
    num_folds: int
    num_samples: int
    window: int | None = None
    threshold: float | None = None
    flagged: Any = None
    intervals: list[list[dict[str, Any]]] | None = None
    series_ids: tuple[Any, ...] | None = None
    alarm: Any = None


# ---------------------------------------------------------------- building results


def mask_form(ss: SeriesSet, observed: list[np.ndarray]) -> Any:
    kind = ss.layout.output_kind
    per = unpad(ss, observed, name="observed")
    if kind == "ragged":
        return per
    if kind == "array":
        return np.stack(per)
    frame = from_padded(ss, [o.astype(np.float64) for o in observed], name="observed")
    for col in ss.layout.feature_labels:
        frame[col] = frame[col].astype(bool)
    return frame


def samples_form(ss: SeriesSet, draws: list[np.ndarray]) -> Any:
    """Per-series (S, T_i, D) draws in sorted order -> the input's form (see results)."""
    lay = ss.layout
    cast = lay.dtype.kind == "f" and lay.output_kind in ("array", "ragged")  # frames: float64
    per = []
    for d, order in zip(draws, lay.order):
        w = np.empty_like(d)
        w[:, order] = d
        per.append(w.astype(lay.dtype, copy=False) if cast else w)
    if lay.output_kind == "ragged":
        return per
    if lay.output_kind == "array":
        return np.stack(per, axis=1)  # (S, n, T, D)
    frame, rows = lay.frame, lay.rows
    if frame is None or rows is None:
        raise InputTypeError(f"X: expected a DataFrame layout, found kind {lay.kind!r}")
    S, D = draws[0].shape[0], ss.num_features
    full = np.full((S, len(frame), D), np.nan)
    for r, d in zip(rows, draws):
        full[:, r] = d
    return full


def refuse_masked(value: Any, name: str) -> None:
    """Refuse a numpy masked array with masked entries where times are asked for: np.asarray
    drops the mask, so its hidden entries would be read as their fill values."""
    if isinstance(value, np.ma.MaskedArray) and bool(np.ma.getmaskarray(value).any()):
        raise InputTypeError(
            f"{name}: expected times without masked entries, found a masked array with "
            f"{int(np.ma.getmaskarray(value).sum())} masked (they would be read as their fill "
            "values): give only the times wanted"
        )


def times_1d(times: Any, name: str) -> np.ndarray:
    refuse_masked(times, name)
    if np.asarray(times).dtype.kind in "Mm":  # float() of them is nanoseconds since 1970
        raise InputTypeError(
            f"{name}: expected numbers in the model's time units (for a model fitted on "
            "dates: hours since the training data's first time, or steps of its calendar, "
            "e.g. months), found datetimes or durations"
        )
    try:
        t = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputTypeError(
            f"{name}: expected numeric times, found {type(times).__name__}"
        ) from None
    if t.ndim != 1 or t.size == 0:
        raise ShapeError(f"{name}: expected a non-empty 1-D array (T,), found shape {t.shape}")
    if not np.isfinite(t).all():
        raise ValidationError(f"{name}: expected finite times, found {t[~np.isfinite(t)][0]}")
    if np.unique(t).size != t.size:
        raise ValidationError(f"{name}: expected distinct times, found duplicates")
    return t


def _wall_days(lay: Any, step: float) -> bool:
    """Zone-aware dates counted in hours whose step is whole days: their future steps are
    days of the zone's wall clock (23 or 25 hours across a clock change)."""
    whole = step >= 24.0 and abs(step / 24.0 - round(step / 24.0)) < 1e-9
    return lay.tz is not None and lay.time_unit == "hours" and whole


def _wall_clock_steps(lay: Any, last: float, step: float, H: int) -> np.ndarray:
    """(H,) model hours of ``last`` + 1..H steps of ``step`` hours on the zone's wall clock:
    a daily reading at midnight stays at midnight after a clock change. A wall-clock time
    the change skips becomes the first after the gap; a repeated one, the summer-time one."""
    origin = pd.Timestamp(cast(Any, lay.time_origin))
    utc = origin + pd.to_timedelta(last, unit="h")
    wall = pd.Timestamp(utc).tz_localize("UTC").tz_convert(lay.tz).tz_localize(None)
    ahead = wall + pd.to_timedelta(step * np.arange(1, H + 1), unit="h")
    dst = np.ones(H, dtype=bool)
    moved = ahead.tz_localize(lay.tz, ambiguous=dst, nonexistent="shift_forward")
    back = moved.tz_convert("UTC").tz_localize(None)
    return np.asarray((back - origin) / pd.Timedelta(hours=1), dtype=np.float64)


def resolve_future_times(
    ss: SeriesSet, horizon: int | None, future_times: Any, default_step: float = 1.0
) -> np.ndarray:
    """(n, H) future times in the SeriesSet's float time units; ``horizon`` steps of each
    series' median step (``default_step``, e.g. the training data's, for a single step)."""
    n = ss.num_series
    if future_times is None:
        if horizon is None:
            raise ValidationError(
                "horizon: expected a positive int (or future_times), found neither"
            )
        H = int_arg("horizon", horizon)
        check_memory("horizon", 16.0 * n * H, f"{n} series x {H} future times")
        out = np.empty((n, H))
        for i, t in enumerate(ss.times):
            if ss.layout.time_unit == "steps":
                step = 1.0
            else:
                step = float(np.median(np.diff(t))) if len(t) > 1 else default_step
            out[i] = t[-1] + step * np.arange(1, H + 1)
            if _wall_days(ss.layout, step):
                out[i] = _wall_clock_steps(ss.layout, t[-1], step, H)
        return out
    if horizon is not None:
        raise ValidationError("horizon: expected None when future_times is given, found both")
    future = _given_future(ss, future_times)
    _check_after_last(ss, future)
    return future


def _given_future(ss: SeriesSet, future_times: Any) -> np.ndarray:
    """(n, H) ``future_times`` in the model's float units, in any of their accepted forms."""
    n, lay = ss.num_series, ss.layout
    refuse_masked(future_times, "future_times")
    per_series = isinstance(future_times, (list, tuple)) and len(future_times) == n
    if per_series:
        for i, f in enumerate(future_times):
            refuse_masked(f, f"future_times[{i}]")
    if per_series and all(np.ndim(f) == 1 for f in future_times):
        rows = [future_times_row(lay, f, f"future_times[{i}]") for i, f in enumerate(future_times)]
        if len({r.shape for r in rows}) != 1:
            raise ShapeError("future_times: expected the same number H of times for every series")
        return np.stack(rows)
    arr = np.asarray(future_times)
    if arr.ndim == 1:
        row = future_times_row(lay, arr, "future_times")
        return np.repeat(row[None], n, axis=0)
    if arr.ndim == 2 and arr.shape[0] == n:
        return np.stack([future_times_row(lay, r, f"future_times[{i}]") for i, r in enumerate(arr)])
    found = (
        f"a {type(future_times).__name__}"
        if arr.ndim == 0 and arr.dtype == object
        else f"shape {arr.shape}"
    )
    raise ShapeError(
        f"future_times: expected (H,), ({n}, H) or a list of {n} (H,) arrays, found {found}"
    )


def _check_after_last(ss: SeriesSet, future: np.ndarray) -> None:
    """Refuse, naming ``future_times``, a future time at or before its series' last time:
    the model of the levels "forecast" such a time as if it came after the data (a time
    inside the history is imputed by :meth:`GPVAE.impute`, conditioned on both sides)."""
    last = np.array([t[-1] for t in ss.times], dtype=np.float64)
    early = np.argwhere(future <= last[:, None])
    if not len(early):
        return
    i, j = (int(k) for k in early[0])
    found, end = time_texts(ss, np.array([future[i, j], last[i]]))
    raise ValidationError(
        f"future_times: expected times after each series' last time (a forecast starts where "
        f"the series ends; impute fills times inside it), found {found} in "
        f"{ss.series_label(i)}, whose last time is {end}"
    )


def time_texts(ss: SeriesSet, times: np.ndarray) -> list[str]:
    """Model times ``times`` (1-D) as messages show them, in the input's own terms: a date
    as ``2020-02-29`` (``2020-02-29 06:00:00``, with its zone's offset for zone-aware
    input), a duration as ``1 days 06:00:00``, a number as it is (``119``, not ``119.0``)."""
    out = []
    for value in np.asarray(times_out(ss, np.asarray(times, dtype=np.float64))).ravel():
        if isinstance(value, (np.datetime64, pd.Timestamp)):
            stamp = pd.Timestamp(value)
            midnight = stamp == stamp.normalize() and stamp.tz is None
            out.append(str(stamp.date()) if midnight else str(stamp))
        elif isinstance(value, np.timedelta64):
            out.append(str(pd.Timedelta(value)))
        else:
            out.append(np.format_float_positional(float(value), trim="-"))
    return out


def future_times_row(lay: Any, values: Any, name: str) -> np.ndarray:
    """One series' future times in the model's float units (distinct: a repeated date was
    forecast twice, as if two steps)."""
    out = _future_units(lay, values, name)
    if np.unique(out).size != out.size:
        raise ValidationError(f"{name}: expected distinct times, found duplicates")
    return out


def _future_units(lay: Any, values: Any, name: str) -> np.ndarray:
    arr = np.asarray(pd.Series(values).to_numpy() if isinstance(values, pd.Index) else values)
    if arr.ndim != 1 or arr.size == 0:
        raise ShapeError(f"{name}: expected a non-empty 1-D array of times, found {arr.shape}")
    if arr.dtype.kind in "US" or (arr.dtype.kind == "O" and isinstance(arr[0], str)):
        values = _date_strings(lay, arr, name)
        arr = np.asarray(values) if values.tz is None else np.asarray(values, dtype=object)
    elif arr.dtype.kind == "O" and all(isinstance(v, _DATE_OBJECTS) for v in arr):
        values = _date_objects(lay, arr, name)
        arr = np.asarray(values) if values.tz is None else np.asarray(values, dtype=object)
    if lay.tz is not None and arr.dtype.kind in "MO":  # the zone's times: UTC or wall clock
        try:
            arr = naive(values, lay.tz, lay.time_unit == "steps")
        except (ValueError, TypeError) as err:
            raise InputTypeError(
                f"{name}: expected datetimes like the input's (zone {lay.tz}), found {err}"
            ) from None
    if arr.dtype.kind in "Mm" and np.isnat(arr).any():
        raise ValidationError(f"{name}: expected finite times, found NaT")
    if arr.dtype.kind == "M":
        if lay.time_origin is None:
            raise InputTypeError(f"{name}: expected numeric times (the input's), found datetimes")
        if lay.time_unit == "steps":
            return calendar_steps(arr, lay.time_origin, str(lay.freq), name)
        hours = (
            arr.astype("datetime64[ns]") - pd.Timestamp(cast(Any, lay.time_origin)).to_datetime64()
        ).astype(np.int64) / _NS_PER_HOUR
        return hours.astype(np.float64)
    if arr.dtype.kind == "m":
        return arr.astype("timedelta64[ns]").astype(np.int64) / _NS_PER_HOUR
    if lay.time_unit is not None and lay.time_origin is not None:
        found = "numbers" if arr.dtype.kind in "iufb" else f"{str(arr[0])!r}"
        raise InputTypeError(f"{name}: expected datetimes like the input's times, found {found}")
    return times_1d(arr, name)


#: Date objects future times may be given as: ``pd.Timestamp``, ``datetime.datetime`` and
#: ``datetime.date`` (the first two are ``datetime.date``'s), ``np.datetime64``.
_DATE_OBJECTS = (datetime.date, np.datetime64)


def _date_objects(lay: Any, arr: np.ndarray, name: str) -> pd.DatetimeIndex:
    """Future times given as a list (object array) of ``pd.Timestamp``, ``datetime.datetime``,
    ``datetime.date`` or ``np.datetime64``, as one DatetimeIndex: read like a DatetimeIndex
    of the same times (naive ones on a zone-aware model's clock; zone-aware ones refused by
    a model of naive dates)."""
    shown = str(arr[0])
    if lay.time_origin is None:
        raise InputTypeError(f"{name}: expected numeric times (the input's), found datetimes")
    try:
        out = pd.DatetimeIndex(pd.to_datetime(list(arr)))
    except (ValueError, TypeError, OverflowError) as err:
        raise InputTypeError(
            f"{name}: expected datetimes all with a time zone or all without, like the "
            f"input's times, found {shown!r} ({err})"
        ) from None
    return _zone_like_input(lay, out, name, shown)


def _date_strings(lay: Any, arr: np.ndarray, name: str) -> pd.DatetimeIndex:
    """Future times given as strings: ISO dates (``"2005-01-01"``) parsed for a model of
    dated series, else an InputTypeError naming ``name`` that says strings were found."""
    if lay.time_origin is None:
        raise InputTypeError(
            f"{name}: expected numeric times (the input's), found strings such as {str(arr[0])!r}"
        )
    try:
        out = pd.DatetimeIndex(pd.to_datetime(pd.Index(arr, dtype=object), format="ISO8601"))
    except (ValueError, TypeError):
        raise InputTypeError(
            f"{name}: expected datetimes like the input's times (or ISO date strings such as "
            f"'2005-01-01'), found strings such as {str(arr[0])!r}"
        ) from None
    return _zone_like_input(lay, out, name, str(arr[0]))


def _zone_like_input(lay: Any, out: pd.DatetimeIndex, name: str, shown: str) -> pd.DatetimeIndex:
    """``out`` (future times as given), refused naming ``name`` when it has a zone and the
    input's times have none (naive ones are read on a zone-aware input's clock)."""
    if out.tz is not None and lay.tz is None:
        raise InputTypeError(
            f"{name}: expected times without a zone, like the input's, found {shown!r}"
        )
    return out


def times_out(ss: SeriesSet, future: np.ndarray) -> np.ndarray:
    """Model times ``future`` (any shape) in the input's own form: numbers, durations,
    datetimes, or zone-aware timestamps (an object array) for zone-aware input."""
    lay = ss.layout
    if lay.time_unit is None:
        return future
    if lay.time_unit == "steps":
        out = calendar_times(future, lay.time_origin, str(lay.freq))
        return out if lay.tz is None else zoned(out, lay.tz, wall=True)
    delta = (future * _NS_PER_HOUR).round().astype(np.int64).astype("timedelta64[ns]")
    if lay.time_origin is None:
        return delta
    out = pd.Timestamp(cast(Any, lay.time_origin)).to_datetime64() + delta
    return out if lay.tz is None else zoned(out, lay.tz, wall=False)


def _like(values: pd.Series, column: pd.Series | pd.Index | None) -> pd.Series:
    """``values`` in the dtype of the input's ``column`` when they fit it (integer times
    and ids stay integers: a forecast frame's times ``300.0`` of an integer time column
    came back as floats, its integer ids as objects), else as they are."""
    if column is None or values.dtype == column.dtype:
        return values
    if column.dtype.kind in "iu":
        if values.dtype.kind == "f":
            if not np.isfinite(values).all() or not (values == np.round(values)).all():
                return values
        elif values.dtype != object:
            return values
    elif not (isinstance(column.dtype, pd.CategoricalDtype) or column.dtype.kind in "bO"):
        return values  # datetimes, floats and strings come out in their own form already
    try:
        return values.astype(column.dtype)
    except (TypeError, ValueError, OverflowError):
        return values


def forecast_frame(
    ss: SeriesSet, times: np.ndarray, mean: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> pd.DataFrame | None:
    lay = ss.layout
    if lay.kind not in ("dataframe_long", "dataframe_wide"):
        return None
    n, H, _ = mean.shape
    labels = list(lay.feature_labels)
    cols: dict[Any, Any] = {}
    source = lay.frame
    if lay.kind == "dataframe_long":
        ids = np.empty(n, dtype=object)  # (an array of mixed ids would turn them to strings)
        ids[:] = lay.series_ids or tuple(range(n))
        column = None if source is None else source.get(lay.id_col)
        cols[lay.id_col] = _like(pd.Series(np.repeat(ids, H)), column)
    flat_t = times.reshape(n * H)
    if lay.time_col is not None:
        column = None if source is None else source.get(lay.time_col)
        cols[lay.time_col] = _like(pd.Series(flat_t), column)
    elif source is not None:
        flat_t = _like(pd.Series(flat_t), source.index).to_numpy()
    kept = [None if source is None else kept_float(source[c].dtype) for c in labels]
    for part, end in ((mean, ""), (lo, "_lower"), (hi, "_upper")):
        for j, c in enumerate(labels):  # each column in the input column's float dtype
            values = part[..., j].reshape(n * H)
            cols[f"{c}{end}" if end else c] = values if kept[j] is None else values.astype(kept[j])
    frame = pd.DataFrame(cols)
    if lay.time_col is None and lay.frame is not None:
        frame.index = pd.Index(flat_t, name=lay.frame.index.name)
    return frame
