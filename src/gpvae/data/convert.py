"""Turn what users pass in (arrays, ragged lists, DataFrames, dicts) into a :class:`SeriesSet`.

Accepted ``X`` (n series, T_i time steps, D features; NaN marks a missing entry):

- a numpy array or torch tensor (n, T, D); ``times`` None (0..T-1), (T,) shared by all
  series, (n, T), or a list of n arrays (T,);
- a list of n arrays (T_i, D) (ragged); ``times`` None (0..T_i-1) or a list of n arrays (T_i,);
- a long pandas DataFrame: an id column, a time column and feature columns, one row per
  (series, time);
- a wide pandas DataFrame: one series, the time in the index or in ``time_col``; a pandas
  Series is one series of one feature, read as ``X.to_frame()`` (its index the time);
- a PyPOTS-style dict ``{"X": array or list, "times": optional, "missing_mask": optional}``:
  ``missing_mask`` (X's shape; 1 or True = observed, as in PyPOTS) makes its 0 entries
  missing, so a zero-filled ``X`` may come with it; other keys (``X_ori``, ``X_pred``,
  ``indicating_mask``, ``y``, ...) are refused, naming the key and what to do instead (the
  hidden truth of validation data, ``X_ori``, is ``fit``'s ``X_val_target``).

Datetime times become float hours since the earliest timestamp (timedeltas become hours);
the unit and origin are kept in the layout. Unsorted times are sorted and the permutation
kept so that outputs come back in the input's order. Every problem raises a
:class:`~gpvae.errors.GPVAEError` naming the argument, the expected and the found.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gpvae.data._parse import Parsed, check_no_inf, plain, raw_times, to_float
from gpvae.data.calendar import calendar_steps, infer_calendar, wall_clock
from gpvae.data.frames import LISTED_FEATURE_ADVICE, from_frame
from gpvae.data.series import InputKind, Layout, MergedTimes, SeriesSet
from gpvae.errors import InputTypeError, ShapeError, ValidationError

__all__ = ["to_fitted_series_set", "to_series_set", "unmerged"]

_NS_PER_HOUR = 3.6e12

#: The advice that ends the duplicate-times error (the command line replaces it with its own).
DUPLICATE_ADVICE = (
    "(gpvae.data.merge_duplicate_times merges rows that share a time, and says which)"
)

#: How the duplicate-times error on a frame that looks like several series stacked says to
#: name the id column; ``{col}`` is the candidate column's repr, or ``...`` (the command
#: line replaces it with its option, the error's ``id_column`` holding the candidate).
ID_ADVICE = "name the id column with id_col={col}"

#: Where ``id_col`` is given, after :data:`ID_ADVICE` in the errors and warnings of
#: :func:`to_series_set`, which GPVAE's methods read their data with (they take no id_col;
#: the command line replaces both with its option).
ID_WHERE = (
    " (gpvae.data.to_series_set(X, id_col=..., time_col=...), whose result GPVAE's methods "
    "take: they find an id column by itself only when it is named like 'id')"
)


#: What to pass instead of a list of DataFrames (one per series).
FRAMES_ADVICE = (
    "stack the frames into one long DataFrame with an id column, e.g. pd.concat({name}, "
    "keys=range(len({name})), names=['id', 'time']).reset_index() when each frame's index "
    "is its time (columns are matched by name), or pass [f.to_numpy() for f in {name}] to "
    "read them as arrays"
)


def to_series_set(
    X: Any,
    times: Any = None,
    *,
    id_col: Hashable | None = None,
    time_col: Hashable | None = None,
    feature_cols: Sequence[Hashable] | None = None,
    num_features: int | None = None,
    allow_single_step: bool = False,
    allow_empty_series: bool = False,
    name: str = "X",
    times_name: str = "times",
    time_form: tuple[str | None, str | None] | None = None,
) -> SeriesSet:
    """Validate and normalise user data into a :class:`SeriesSet`.

    Args:
        X: (n, T, D) array/tensor, list of (T_i, D) arrays, long or wide DataFrame, a
            Series (one series of one feature, read as ``X.to_frame()``: results come
            back as that frame), or a dict ``{"X": ..., "times": ..., "missing_mask":
            ...}`` (only these keys; ``missing_mask`` 1 = observed, 0 = missing); NaN
            marks missing entries; masked entries of a numpy masked array are missing. A
            :class:`SeriesSet` is returned as is (after the ``num_features`` check). A
            list of DataFrames is refused (a list holds bare arrays): stack them into one
            long frame. The result of :func:`gpvae.data.merge_duplicate_times` is read as
            its ``.X`` (and ``.times``).
        times: None (0..T_i-1), a (T,) array shared by all series, an (n, T) array or a list
            of n (T_i,) arrays; numeric, datetime64 or timedelta64. Must be None for
            DataFrames (use ``time_col`` or the index).
        id_col: series id column of a long DataFrame (inferred from names such as "id").
        time_col: time column of a DataFrame (inferred from names such as "time"; for a wide
            frame the index is the time when it holds dates, durations or periods, or when
            no time column is given or found; a named index other than row numbers 0..n-1
            or 1..n beside a column named like a time is refused: give time_col).
        feature_cols: feature columns of a DataFrame; default all other columns.
        num_features: expected D (e.g. the number seen at fit), or None.
        allow_single_step: accept series with a single time step (T_i == 1), as
            :meth:`GPVAE.fit <gpvae.GPVAE.fit>` and the predictions do (pass True for a
            SeriesSet given to them; the default refuses, for code that needs 2 steps).
        allow_empty_series: accept series with no observed entry at all (the same).
        name: the argument name used in error messages (e.g. "X_val").
        times_name: the name of the times argument in error messages (e.g. "times_val").
        time_form: read datetimes as the fitted data's were, (``time_unit``, ``freq``) of
            its layout (:attr:`gpvae.data.Scaler.time_form_`): in hours, or in steps of
            that calendar frequency (times off its grid are refused); None, or a fit on
            numbers: inferred from these times.

    Returns:
        The validated, time-sorted :class:`SeriesSet`.

    Raises:
        ShapeError: wrong number of dimensions, mismatched shapes or feature counts, empty X.
        InputTypeError: values or times that cannot be converted to float.
        ValidationError: Inf in X, non-finite or duplicate times, a series with no observed
            entry or a single time step (unless allowed), unknown or ambiguous columns, a
            dict key other than 'X', 'times' and 'missing_mask', a missing_mask that is not
            0/1 or marks a NaN as observed.
    """
    X, times = unmerged(X, times, name, times_name)
    if isinstance(X, SeriesSet):
        if times is not None:
            raise ValidationError(
                f"{times_name}: expected None when {name} is already a SeriesSet, found "
                f"{type(times).__name__}"
            )
        _check_num_features(X.num_features, num_features, name)
        form = (X.layout.time_unit, X.layout.freq)
        known = time_form is not None and time_form[0] is not None  # (fitted on numbers: any)
        if time_form is not None and known and X.layout.time_unit is not None and form != time_form:
            raise ValidationError(
                f"{name}: expected times counted as the fitted data's ({_form_text(time_form)}), "
                f"found a SeriesSet counted in {_form_text(form)}; pass the data themselves"
            )
        return X
    if isinstance(X, pd.Series):  # one series of one feature, its index the time
        X = X.to_frame()
    if isinstance(X, pd.DataFrame):
        if times is not None:
            raise ValidationError(
                f"{times_name}: expected None for a DataFrame {name} (give the time column as "
                f"time_col, or use the index), found {type(times).__name__}"
            )
        parsed = from_frame(X, id_col, time_col, feature_cols, name)
    elif isinstance(X, Mapping):
        parsed = _from_dict(X, times, name, times_name)
    elif isinstance(X, (list, tuple)):
        parsed = _from_ragged(X, times, name, times_name)
    else:
        parsed = _from_array(X, times, name, times_name)
    _check_num_features(parsed.values[0].shape[1], num_features, name)
    return _finish(parsed, name, allow_single_step, allow_empty_series, time_form)


def _check_num_features(found: int, expected: int | None, name: str) -> None:
    if expected is not None and found != expected:
        raise ShapeError(
            f"{name}: expected {expected} features (last axis; as at fit), found {found}"
        )


# ---------------------------------------------------------------- input paths


def _split_times(times: Any, lengths: list[int], times_name: str, name: str) -> list[np.ndarray]:
    n = len(lengths)
    if times is None:
        return [np.arange(T, dtype=np.float64) for T in lengths]
    expected = f"None, an ({n}, T) array or a list of {n} arrays (T_i,) matching {name}"
    if isinstance(times, (list, tuple)) and times and all(np.ndim(t) == 0 for t in times):
        times = np.asarray(times)  # a list of T times shared by every series, as an array
    if isinstance(times, (list, tuple)):
        if len(times) != n:
            raise ShapeError(f"{times_name}: expected {expected}, found a list of {len(times)}")
        out = [raw_times(t, f"{times_name}[{i}]") for i, t in enumerate(times)]
    else:
        arr = raw_times(times, times_name)
        if arr.ndim == 1 and len(set(lengths)) == 1 and arr.shape[0] == lengths[0]:
            return [arr.copy() for _ in range(n)]
        if arr.ndim != 2 or arr.shape[0] != n:
            raise ShapeError(f"{times_name}: expected {expected}, found shape {arr.shape}")
        out = list(arr)
    for i, (t, T) in enumerate(zip(out, lengths)):
        if t.shape != (T,):
            raise ShapeError(
                f"{times_name}[{i}]: expected shape ({T},) to match {name}[{i}] with {T} time "
                f"steps, found shape {t.shape}"
            )
    return out


def _from_array(X: Any, times: Any, name: str, times_name: str) -> Parsed:
    arr, dtype = to_float(X, name)
    if arr.ndim != 3:
        hint = ""
        if arr.ndim == 2:
            hint = f"; for one series of shape (T, D) pass {name}[None] or [{name}]"
        elif arr.ndim == 1:
            hint = f"; for one univariate series pass {name}.reshape(1, -1, 1)"
        raise ShapeError(
            f"{name}: expected a 3-D array (n, T, D) or a list of (T_i, D) arrays, found a "
            f"{arr.ndim}-D array of shape {arr.shape}{hint}"
        )
    if 0 in arr.shape:
        raise ShapeError(f"{name}: expected a non-empty (n, T, D) array, found shape {arr.shape}")
    check_no_inf(arr, name)
    n, T, _ = arr.shape
    tms = _split_times(times, [T] * n, times_name, name)
    return Parsed(
        values=list(arr),
        times=tms,
        labels=[f"{name}[{i}]" for i in range(n)],
        time_name=times_name,
        layout={"kind": "array", "dtype": dtype},
    )


def _from_ragged(X: Sequence[Any], times: Any, name: str, times_name: str) -> Parsed:
    if len(X) == 0:
        raise ShapeError(f"{name}: expected at least one series, found an empty list")
    values: list[np.ndarray] = []
    dtypes: list[np.dtype] = []
    for i, x in enumerate(X):
        what = f"{name}[{i}]"
        if isinstance(x, (pd.DataFrame, pd.Series)):
            raise InputTypeError(
                f"{what}: expected a (T_i, D) array in a list of series, found a "
                f"{type(x).__name__} (a list is read as bare arrays: each frame's index and "
                f"column names would be lost); {FRAMES_ADVICE.format(name=name)}"
            )
        arr, dt = to_float(x, what)
        if arr.ndim != 2:
            hint = " (reshape a univariate series with .reshape(-1, 1))" if arr.ndim == 1 else ""
            raise ShapeError(
                f"{what}: expected a 2-D array (T_i, D), found shape {arr.shape}{hint}"
            )
        if arr.shape[0] == 0:
            raise ShapeError(f"{what}: expected at least one time step, found shape {arr.shape}")
        if arr.shape[1] == 0:
            raise ShapeError(f"{what}: expected at least 1 feature, found shape {arr.shape}")
        if values and arr.shape[1] != values[0].shape[1]:
            raise ShapeError(
                f"{what}: expected {values[0].shape[1]} features like {name}[0], found "
                f"{arr.shape[1]}"
            )
        check_no_inf(arr, what)
        values.append(arr)
        dtypes.append(dt)
    tms = _split_times(times, [len(v) for v in values], times_name, name)
    return Parsed(
        values=values,
        times=tms,
        labels=[f"{name}[{i}]" for i in range(len(values))],
        time_name=times_name,
        layout={"kind": "ragged", "dtype": np.result_type(*dtypes)},
    )


#: The keys a PyPOTS-style dict may hold; any other is refused (see :func:`_from_dict`).
DICT_KEYS = ("X", "times", "missing_mask")

#: What to do with the keys PyPOTS puts in its data sets that gpvae does not read from a dict.
_DICT_KEY_ADVICE = {
    "X_ori": "pass the hidden ground truth of validation data as fit(..., X_val=d['X'], "
    "X_val_target=d['X_ori']); for scoring imputations compare with it yourself",
    "X_intact": "pass the hidden ground truth of validation data as fit(..., X_val=d['X'], "
    "X_val_target=d['X_intact']); for scoring imputations compare with it yourself",
    "X_pred": "the future values are not input: forecast(d['X'], horizon=...) and compare "
    "with them yourself",
    "indicating_mask": "the hidden entries are those missing in X_val and present in "
    "X_val_target; drop the key",
    "y": "gpvae uses no labels; drop the key",
}


def _from_dict(X: Mapping[Any, Any], times: Any, name: str, times_name: str) -> Parsed:
    """A PyPOTS-style dict: ``X`` (array or ragged list) with optional ``times`` and
    ``missing_mask`` (1 or True = observed, as in PyPOTS; its 0 entries become missing
    whatever ``X`` holds there, so a zero-filled ``X`` may be given with it). Any other
    key is refused, naming it (e.g. ``X_ori``, which gpvae takes as ``X_val_target``)."""
    if "X" not in X:
        raise ValidationError(
            f"{name}: expected a PyPOTS-style dict with key 'X', found keys {sorted(map(str, X))}"
        )
    unknown = [k for k in X if k not in DICT_KEYS]
    if unknown:
        key = unknown[0]
        advice = _DICT_KEY_ADVICE.get(
            str(key), "drop it, or pass its data through the argument that takes them"
        )
        if "missing_mask" in X:  # X alone would hold the missing entries' zeros
            keep = "X_val={'X': d['X'], 'missing_mask': d['missing_mask']}"
            advice = advice.replace("X_val=d['X']", keep)
        raise ValidationError(
            f"{name}: expected a PyPOTS-style dict with only the keys "
            f"{', '.join(map(repr, DICT_KEYS))}, found the key {key!r} that gpvae does not "
            f"read ({advice})"
        )
    if "times" in X and X["times"] is not None:
        if times is not None:
            raise ValidationError(
                f"{times_name}: expected None when {name} has a 'times' entry, found both"
            )
        times = X["times"]
    inner = X["X"]
    if isinstance(inner, (pd.DataFrame, Mapping)):
        raise InputTypeError(
            f"{name}['X']: expected an (n, T, D) array or a list of (T_i, D) arrays, found "
            f"{type(inner).__name__}"
        )
    if isinstance(inner, (list, tuple)):
        parsed = _from_ragged(inner, times, f"{name}['X']", times_name)
    else:
        parsed = _from_array(inner, times, f"{name}['X']", times_name)
    if X.get("missing_mask") is not None:
        parsed.values = _apply_missing_mask(parsed.values, X["missing_mask"], name)
    parsed.layout["inner_kind"] = parsed.layout["kind"]
    parsed.layout["kind"] = "dict"
    return parsed


def _apply_missing_mask(values: list[np.ndarray], mask: Any, name: str) -> list[np.ndarray]:
    """``values`` with NaN where ``mask`` (same shapes as ``values``: an (n, T, D) array or
    a list of (T_i, D) arrays) is 0 or False; 1 or True keeps the entry, which must then
    not be NaN (a mask whose 1 marks missing entries, the other convention, is refused, as
    is a numpy masked array with masked entries, which are neither)."""
    what = f"{name}['missing_mask']"
    shapes = [v.shape for v in values]
    for i, m in enumerate(mask if isinstance(mask, (list, tuple)) else [mask]):
        hidden = int(np.ma.getmaskarray(m).sum()) if isinstance(m, np.ma.MaskedArray) else 0
        if hidden:  # to_float makes them NaN: "found nan", which the caller never wrote
            where = f"{what}[{i}]" if isinstance(mask, (list, tuple)) else what
            raise ValidationError(
                f"{where}: expected 0 (missing) or 1 (observed) entries, found a masked array "
                f"with {hidden} masked (neither 0 nor 1: whether the entry is observed is "
                "unknown); fill them with 0 or 1"
            )
    if isinstance(mask, (list, tuple)):
        if len(mask) != len(values):
            raise ShapeError(
                f"{what}: expected {len(values)} masks, one per series of {name}['X'], "
                f"found {len(mask)}"
            )
        parts = [to_float(m, f"{what}[{i}]")[0] for i, m in enumerate(mask)]
    else:
        arr = to_float(mask, what)[0]
        expected = (len(values), *shapes[0]) if len(set(shapes)) == 1 else None
        if arr.shape != expected:
            want = f"shape {expected}" if expected else f"a list of {len(values)} arrays"
            raise ShapeError(f"{what}: expected {want} like {name}['X'], found shape {arr.shape}")
        parts = list(arr)
    out = []
    for i, (v, m) in enumerate(zip(values, parts)):
        if m.shape != v.shape:
            raise ShapeError(
                f"{what}[{i}]: expected shape {v.shape} like {name}['X'][{i}], found {m.shape}"
            )
        bad = ~((m == 0) | (m == 1))
        if bad.any():
            raise ValidationError(
                f"{what}: expected 0 (missing) or 1 (observed) entries, found "
                f"{float(m[bad][0])} in series {i}"
            )
        if np.isnan(v[m == 1]).any():
            raise ValidationError(
                f"{what}: expected 1 only at entries of {name}['X'] that hold a value (1 marks "
                f"an observed entry, as in PyPOTS), found 1 at a NaN of series {i}"
            )
        out.append(np.where(m == 1, v, np.nan))
    return out


# ---------------------------------------------------------------- validation, sorting


def _form_text(form: tuple[str | None, str | None]) -> str:
    unit, freq = form
    if unit == "steps":
        return f"steps of the calendar frequency {freq!r}"
    return "hours" if unit == "hours" else "numbers"


def _times_to_hours(
    parsed: Parsed, time_form: tuple[str | None, str | None] | None = None
) -> tuple[list[np.ndarray], str | None, object | None, str | None]:
    """Float times, their unit (None, "hours" or "steps"), the datetime origin and the
    calendar frequency (see :mod:`gpvae.data.calendar`); datetimes in ``time_form`` when
    given (the fitted data's), else in the form these times show."""
    kinds = {t.dtype.kind for t in parsed.times}
    if len(kinds) > 1:
        raise InputTypeError(
            f"{parsed.time_name}: expected all times of one kind (numeric, datetime or "
            f"timedelta), found a mix of dtypes {sorted(str(t.dtype) for t in parsed.times)[:3]}"
        )
    kind = kinds.pop()
    if kind == "f":
        return parsed.times, None, None, None
    for i, (t, label) in enumerate(zip(parsed.times, parsed.labels)):
        if np.isnat(t).any():
            where = _where(parsed, i, int(np.flatnonzero(np.isnat(t))[0]))
            raise ValidationError(
                f"{parsed.time_name}: expected finite times, found NaT in {label}{where}"
            )
    if kind == "m":
        return [t.astype(np.int64) / _NS_PER_HOUR for t in parsed.times], "hours", None, None
    tz = parsed.layout.get("tz")
    # zone-aware times arrive in UTC; a calendar grid lies on the zone's own dates
    local = parsed.times if tz is None else [wall_clock(t, tz) for t in parsed.times]
    known = time_form is not None and time_form[0] is not None  # (numbers at fit: not known)
    freq = time_form[1] if known and time_form is not None else infer_calendar(local)
    if freq is not None:
        origin = min(t.min() for t in local)
        steps = [calendar_steps(t, origin, freq, parsed.time_name) for t in local]
        return steps, "steps", origin, freq
    origin = min(t.min() for t in parsed.times)
    hours = [(t - origin).astype(np.int64) / _NS_PER_HOUR for t in parsed.times]
    return hours, "hours", origin, None


def _time_text(value: Any, tz: Any = None) -> str:
    """A time as the user gave it: a date or duration as text, a number as it is; a date
    of zone-aware times (``tz``: they arrive in UTC) in that zone, with its offset."""
    if isinstance(value, np.datetime64):
        if tz is not None:
            return str(pd.Timestamp(value).tz_localize("UTC").tz_convert(tz))
        return str(pd.Timestamp(value))
    if isinstance(value, np.timedelta64):
        return str(pd.Timedelta(value))
    return str(value)


def stacked_series(
    frame: pd.DataFrame, times: np.ndarray, skip: set[Any]
) -> tuple[str, Hashable | None] | None:
    """Whether a one-series frame whose times repeat looks like several series stacked
    (an id column not named like one): why, and the column that would be their id (None
    when no column is one), else None.

    ``times``: the frame's times in its row order (float, datetime64 or timedelta64).
    A column is the id when, none of its entries missing, it takes 2 to R/2 values, it
    explains the repeated times (rows that share a time differ in it, but for a few
    genuine repeats within one series: see :func:`_explains_repeats`), and it changes only
    where the times restart (a column of whole numbers or text with more than two values
    may change anywhere, rows sorted by time, when most rows share their time with
    another: a 0/1 column that alternates within repeated times is taken for a feature);
    without one, times that restart and repeat on most rows say so."""
    R = len(times)
    t = times.astype(np.int64).astype(np.float64) if times.dtype.kind in "mM" else times
    restarts = set((np.flatnonzero(np.diff(t) < 0) + 1).tolist())
    keys = pd.Series(times)
    shared = float(keys.duplicated(keep=False).mean())  # share of rows whose time repeats
    repeats = int(keys.duplicated().sum())  # rows whose time an earlier row has
    best: tuple[bool, int, int, Hashable] | None = None
    for pos, col in enumerate(frame.columns):
        if col in skip:
            continue
        values = frame[col]
        if values.isna().any() or not 2 <= values.nunique() <= R // 2:
            continue
        left = int(pd.DataFrame({"c": values.to_numpy(), "t": keys}).duplicated().sum())
        arr = values.to_numpy()
        changes = set((np.flatnonzero(arr[1:] != arr[:-1]) + 1).tolist())
        runs = bool(changes) and changes <= restarts
        if not _explains_repeats(left, repeats):
            continue
        # (not a 0/1 feature that differs between a few rows of one series at one time,
        # nor between the two readings of every time: two values alternating within
        # repeated times are a feature as well as two series sorted by time, so a column
        # of two values is an id only in runs that change where the times restart)
        labels = (
            shared >= 0.5
            and values.nunique() > 2
            and (values.dtype.kind in "iuOSU" or isinstance(values.dtype, pd.CategoricalDtype))
        )
        # the column in runs first, then the one that leaves the fewest repeats within
        # its values (a per-stay feature such as a ward that recurs across stays leaves
        # more than the stays' id), then the first
        if (runs or labels) and (best is None or (not runs, left, pos) < best[:3]):
            best = (not runs, left, pos, col)
    if best is not None:
        where = "changes where the times restart" if not best[0] else "has distinct times"
        if best[0] and best[1]:
            where += f" but on {best[1]} row(s)"
        return f"the column {best[3]!r} {where}, as an id column does", best[3]
    if restarts and shared >= 0.5:
        return (
            f"its times restart {len(restarts)} time(s) and {shared:.0%} of its rows share "
            "a time with another",
            None,
        )
    return None


def stacked_runs(frame: pd.DataFrame, times: np.ndarray, skip: set[Any]) -> tuple[Any, int] | None:
    """Whether a one-series frame whose times go back looks like several series stacked
    that share no time (stays whose times repeat raise the duplicate-time error instead,
    see :func:`stacked_series`): the column that looks like their id and its number of
    values, else None.

    ``times``: the frame's times in its row order (float, datetime64 or timedelta64). A
    column (not in ``skip``) looks like the id when, none of its entries missing, each of
    its 2 to R/2 values fills one run of rows and the times go back only where it changes
    (a file sorted newest first, or a feature whose values recur, is no such column)."""
    t = times.astype(np.int64).astype(np.float64) if times.dtype.kind in "mM" else times
    back = np.flatnonzero(np.diff(t) < 0) + 1
    if back.size == 0:
        return None
    R = len(t)
    for col in frame.columns:
        if col in skip:
            continue
        values = frame[col]
        count = values.nunique()
        if values.isna().any() or not 2 <= count <= R // 2:
            continue
        arr = values.to_numpy()
        changes = np.flatnonzero(arr[1:] != arr[:-1]) + 1
        if len(changes) + 1 == count and np.isin(back, changes).all():
            return col, int(count)
    return None


#: The start of the warning on a frame that looks like several series stacked, sharing no
#: time (the command line gives its own, with its option).
STACKED_WARNING = "looks like several series stacked (each of the "


def _warn_stacked(parsed: Parsed, times: list[np.ndarray], name: str) -> None:
    """Warn when a wide frame (one series) looks like several series stacked that share no
    time (:func:`stacked_runs`): it was read as one series without a word; it still is,
    its rows in time order."""
    frame = parsed.layout.get("frame")
    if parsed.layout.get("kind") != "dataframe_wide" or frame is None or len(times) != 1:
        return
    found = stacked_runs(frame, times[0], {parsed.layout.get("time_col")})
    if found is not None:
        col, count = found
        warnings.warn(
            f"{name} {STACKED_WARNING}{count} values of the column {col!r} fills one run of "
            "rows, and the times go back only where it changes, as an id column does); it is "
            f"read as one series, its rows in time order: {ID_ADVICE.format(col=repr(col))}"
            f"{ID_WHERE}",
            UserWarning,
            stacklevel=4,  # the caller of to_series_set (via _finish)
        )


def _explains_repeats(left: int, repeats: int) -> bool:
    """Whether a column explains the repeated times of a frame: of its ``repeats`` rows
    whose time an earlier row has, ``left`` have an earlier row of the same value too (a
    time repeated within one series). It needs to explain nine in ten: a stay with one
    genuinely repeated time among five stays stacked still names its id; a feature that
    differs between most readings of a time, or a day of the month, which changes where
    the hours restart but recurs every month (half the repeats was enough for a column in
    runs, and BeijingAir's raw file was advised id_col='day'), is no id."""
    if left == 0:
        return True
    return 10 * left <= repeats


def _where(parsed: Parsed, series: int, at: int) -> str:
    """`` (row R)``: the row label of point ``at`` (input order) of series ``series`` of a
    frame, as the error on a text value names it; `` (step k)`` otherwise (the message
    said only which series held a missing time)."""
    rows = parsed.layout.get("rows")
    frame = parsed.layout.get("frame")
    if rows is not None and frame is not None:
        return f" (row {plain(frame.index[rows[series][at]])!r})"
    return f" (step {at})"


def _finish(
    parsed: Parsed,
    name: str,
    allow_single_step: bool,
    allow_empty_series: bool,
    time_form: tuple[str | None, str | None] | None = None,
) -> SeriesSet:
    times, unit, origin, freq = _times_to_hours(parsed, time_form)
    values_out: list[np.ndarray] = []
    times_out: list[np.ndarray] = []
    orders: list[np.ndarray] = []
    for i, (v, t, raw, label) in enumerate(zip(parsed.values, times, parsed.times, parsed.labels)):
        if not np.isfinite(t).all():
            at = int(np.flatnonzero(~np.isfinite(t))[0])
            raise ValidationError(
                f"{parsed.time_name}: expected finite times, found {t[at]} in {label}"
                f"{_where(parsed, i, at)}"
            )
        if len(t) == 1 and not allow_single_step:
            raise ValidationError(
                f"{name}: expected at least 2 time steps per series, found a single time step "
                f"in {label} (to_series_set(..., allow_single_step=True) accepts such series, "
                "as GPVAE.fit and impute do)"
            )
        order = np.argsort(t, kind="stable")
        ts = t[order]
        dup = np.flatnonzero(np.diff(ts) == 0)
        if dup.size:
            shown = _time_text(raw[order][dup[0]], parsed.layout.get("tz"))
            found = (
                f"{parsed.time_name}: expected distinct times within each series, found "
                f"duplicate time {shown} in {label}"
            )
            frame = parsed.layout.get("frame")
            stacked = None
            if parsed.layout.get("kind") == "dataframe_wide" and frame is not None:
                stacked = stacked_series(frame, t, {parsed.layout.get("time_col")})
            if stacked is None:
                err = ValidationError(f"{found} {DUPLICATE_ADVICE}")
            else:
                why, col = stacked
                err = ValidationError(
                    f"{found}: {name} looks like several series stacked ({why}): "
                    f"{ID_ADVICE.format(col='...' if col is None else repr(col))}{ID_WHERE}; "
                    "if it is "
                    f"one series whose rows share times, merge them {DUPLICATE_ADVICE}"
                )
                err.id_column = col  # type: ignore[attr-defined]
            # the time as shown and as parsed (the command line shows DATA's own text)
            err.duplicate_time = (shown, raw[order][dup[0]])  # type: ignore[attr-defined]
            raise err
        vs = np.ascontiguousarray(v[order])
        if not allow_empty_series and np.isnan(vs).all():
            raise ValidationError(
                f"{name}: expected at least one observed (non-NaN) entry per series, found none "
                f"in {label} (to_series_set(..., allow_empty_series=True) accepts such series, "
                "as GPVAE.fit and impute do)"
            )
        vs.setflags(write=False)
        ts.setflags(write=False)
        order.setflags(write=False)
        values_out.append(vs)
        times_out.append(ts)
        orders.append(order)
    lay = parsed.layout
    _warn_stacked(parsed, times, name)
    D = values_out[0].shape[1]
    labels = lay.get("feature_labels", tuple(f"feature_{j}" for j in range(D)))
    rows = lay.get("rows")
    kind: InputKind = lay["kind"]
    layout = Layout(
        kind=kind,
        dtype=np.dtype(lay["dtype"]),
        order=tuple(orders),
        feature_labels=tuple(labels),
        names_given=bool(lay.get("names_given", False)),
        inner_kind=lay.get("inner_kind"),
        time_unit=unit,
        time_origin=origin,
        freq=freq,
        tz=lay.get("tz") if unit is not None else None,
        frame=lay.get("frame"),
        id_col=lay.get("id_col"),
        time_col=lay.get("time_col"),
        series_ids=lay.get("series_ids"),
        rows=None if rows is None else tuple(r[o] for r, o in zip(rows, orders)),
    )
    return SeriesSet(
        values=tuple(values_out),
        times=tuple(times_out),
        feature_names=tuple(str(c) for c in labels),
        layout=layout,
    )


#: The end of the error on a text value in a model's feature column of a frame (the model
#: chose the column, not the caller: it cannot be left out).
FITTED_FEATURE_ADVICE = "write missing values as NaN (the column is one of the model's features)"


def to_fitted_series_set(
    X: Any, times: Any, names: Sequence[str] | None, *, name: str = "X", **kwargs: Any
) -> tuple[SeriesSet, list[Hashable]]:
    """:func:`to_series_set` for data given to a fitted model: a DataFrame's features are
    the model's (``names``, their labels as text, as a model stores them), found by name
    wherever they stand and whatever other columns the frame has, as the command line
    finds them.

    Args:
        X, times: as for :func:`to_series_set`.
        names: the fitted feature names when they came from the user's columns, else None
            (data then read as :func:`to_series_set` reads it).
        name: the argument name for messages.
        **kwargs: the other arguments of :func:`to_series_set`.

    Returns:
        The series, and the columns of a frame that were neither its id, its time nor one
        of the model's features (left out; a frame result keeps them as they are). A frame
        that lacks one of the features, or holds two columns whose labels read the same, is
        read as :func:`to_series_set` reads it, whose checks then name what is wrong.
    """
    X, times = unmerged(X, times, name, kwargs.get("times_name", "times"))
    listed = _fitted_columns(X, names)
    if listed is None:
        return to_series_set(X, times, name=name, **kwargs), []
    try:
        ss = to_series_set(X, times, feature_cols=listed, name=name, **kwargs)
    except InputTypeError as err:
        message = str(err)
        if not message.endswith(LISTED_FEATURE_ADVICE):
            raise
        raise InputTypeError(
            message[: -len(LISTED_FEATURE_ADVICE)] + FITTED_FEATURE_ADVICE
        ) from None
    taken = {c for c in (ss.layout.id_col, ss.layout.time_col, *listed) if c is not None}
    return ss, [c for c in X.columns if c not in taken]


def unmerged(X: Any, times: Any, name: str, times_name: str) -> tuple[Any, Any]:
    """The data and times of :func:`gpvae.data.merge_duplicate_times`'s result (its ``.X``
    and ``.times``; its repr, the whole frame, was pasted into a numeric-values error),
    else ``X`` and ``times`` as given."""
    if not isinstance(X, MergedTimes):
        return X, times
    if times is not None and X.times is not None:
        raise ValidationError(
            f"{times_name}: expected None for {name} from merge_duplicate_times (its times "
            f"are its .times), found {type(times).__name__}"
        )
    return X.X, X.times if times is None else times


def _fitted_columns(X: Any, names: Sequence[str] | None) -> list[Hashable] | None:
    """The columns of the DataFrame ``X`` labelled ``names`` (as text), in that order; None
    when there are no names, ``X`` is no DataFrame or it lacks one of them."""
    if names is None or not isinstance(X, pd.DataFrame) or X.columns.has_duplicates:
        return None
    by_label = {str(c): c for c in X.columns}
    if len(by_label) != X.shape[1] or any(f not in by_label for f in names):
        return None
    return [by_label[f] for f in names]
