"""DataFrame inputs: long (id, time, feature columns) and wide (one series, time index).

Private to :mod:`gpvae.data`; see :func:`gpvae.data.to_series_set`. Column names are inferred
only when unambiguous: an id column named like "id"/"series_id" makes the frame long, a time
column named like "time"/"timestamp" is used as the time. A wide frame's index is its time
instead when it says so: dates, durations or periods, or, without a column named like a
time, a named index; an unnamed integer index is row labels (a filtered frame's), and it is
the time only without a time column. A column named like a time wins over a named index
that is not of dates only when that index is row numbers (0..n-1 or 1..n: a ``row_id``
index beside a ``time`` column is row labels); beside any other named index (floats such as
``hours``, irregular integers) which is the time is unsaid, and time_col must be given.
A time column found by its name whose numbers are out of order is used with a warning (a
feature named "t" would otherwise become the time axis without a word).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gpvae.data._parse import Parsed, check_no_inf, kept_float, pandas_times, plain
from gpvae.errors import InputTypeError, ShapeError, ValidationError

__all__ = ["from_frame"]

#: The names (lower case) of a column taken as the series id when id_col is not given.
ID_NAMES = frozenset({"id", "series", "series_id", "unique_id", "item_id", "recordid"})
_TIME_NAMES = frozenset({"time", "times", "timestamp", "t", "date", "datetime", "ds"})


#: How to name the columns when they cannot be inferred (the estimator's methods take X as
#: it is; the columns are chosen where a frame becomes a SeriesSet).
CHOOSE_COLUMNS = (
    "name the columns with gpvae.data.to_series_set(X, id_col=..., time_col=..., "
    "feature_cols=[...]) and pass its result instead"
)

#: The end of the error on a text value in a feature column that the caller listed (the
#: command line, which lists them from --features, replaces it with its own).
LISTED_FEATURE_ADVICE = "write missing values as NaN, or leave the column out of feature_cols"

#: ... and in a feature column taken by default (every column but the id and time).
DEFAULT_FEATURE_ADVICE = (
    "every column other than the id and time is taken as a feature: drop this one, or "
    "choose the features with gpvae.data.to_series_set(X, feature_cols=[...]) and pass "
    "its result instead (a column of series ids is named there with id_col=...: only one "
    "named like 'id' is found by itself)"
)


def _frame_column(frame: pd.DataFrame, col: Hashable, name: str, listed: bool) -> np.ndarray:
    """One feature column as float64 (R,), NaN for missing (nullable dtypes included).
    ``listed``: the caller chose the feature columns (``feature_cols``), which the advice
    of the error on a text value depends on."""
    s = frame[col]
    what = f"{name}[{col!r}]"
    if pd.api.types.is_datetime64_any_dtype(s.dtype) or pd.api.types.is_timedelta64_dtype(s.dtype):
        raise InputTypeError(
            f"{what}: expected a numeric feature column, found dtype {s.dtype} (is it the time "
            f"column? {CHOOSE_COLUMNS})"
        )
    try:
        num = pd.to_numeric(s, errors="raise")
    except (ValueError, TypeError):
        coerced = pd.to_numeric(s, errors="coerce")
        bad = s[coerced.isna() & s.notna()]
        example = bad.iloc[0] if len(bad) else None
        where = (
            f" (row {plain(bad.index[0])!r}{', ...' if len(bad) > 1 else ''})" if len(bad) else ""
        )
        raise InputTypeError(
            f"{what}: expected numeric values (NaN for missing), found dtype {s.dtype} with "
            f"{len(bad)} value(s) that cannot be converted to float, such as "
            f"{plain(example)!r}{where}; "
            f"{LISTED_FEATURE_ADVICE if listed else DEFAULT_FEATURE_ADVICE}"
        ) from None
    try:
        arr = np.asarray(pd.Series(num).to_numpy(dtype=np.float64, na_value=np.nan))
    except (ValueError, TypeError) as err:
        raise InputTypeError(f"{what}: expected numeric values, found {err}") from None
    return arr


def _pick_column(
    given: Hashable | None, names: frozenset[str], columns: list[Hashable], arg: str, exclude: set
) -> Hashable | None:
    if given is not None:
        if given not in columns:
            raise ValidationError(f"{arg}: expected one of the columns {columns}, found {given!r}")
        return given
    found = [c for c in columns if str(c).lower() in names and c not in exclude]
    if len(found) > 1:
        raise ValidationError(
            f"{arg}: expected one column to infer, found several candidates {found}; "
            f"{CHOOSE_COLUMNS}"
        )
    return found[0] if found else None


def _index_is_time(index: pd.Index, time_named: bool) -> bool:
    """Whether a wide frame's index is its time axis rather than row labels: dates,
    durations or periods; or, when no column is named like a time (``time_named``), a
    named index or one of other values than integers (a default or filtered frame's
    integer labels are unnamed). A column named like a time wins over an index that is not
    of dates: a named index of row numbers (``row_id`` of a database table) is row labels
    then (:func:`from_frame` refuses any other named index beside such a column)."""
    if isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex, pd.PeriodIndex)):
        return True
    if isinstance(index, pd.RangeIndex) or time_named:
        return False
    return index.name is not None or index.dtype.kind not in "iu"


def _row_numbers(index: pd.Index) -> bool:
    """Whether ``index`` is plain row labels: a RangeIndex, or the integers 0..n-1 or 1..n
    in order (a named index of other values may be a time axis)."""
    if isinstance(index, pd.RangeIndex):
        return True
    if index.dtype.kind not in "iu":
        return False
    labels = index.to_numpy()
    steps = np.arange(len(labels))
    return bool((labels == steps).all() or (labels == steps + 1).all())


def from_frame(
    X: pd.DataFrame,
    id_col: Hashable | None,
    time_col: Hashable | None,
    feature_cols: Sequence[Hashable] | None,
    name: str,
) -> Parsed:
    """Parse a long or wide DataFrame (see the module docstring); values are (R, D) rows."""
    if isinstance(X.index, pd.MultiIndex):  # read as times, it failed on its tuples
        raise InputTypeError(
            f"{name}.index: expected one level (a wide frame's times, or row labels), found a "
            f"MultiIndex of levels {list(X.index.names)}; pass {name}.reset_index() (an id "
            "and a time column are found by their names) or a SeriesSet from "
            "gpvae.data.to_series_set(X.reset_index(), id_col=..., time_col=...)"
        )
    columns: list[Hashable] = list(X.columns)
    if X.columns.has_duplicates:
        dup = X.columns[X.columns.duplicated()].tolist()
        raise ValidationError(f"{name}: expected unique column names, found duplicates {dup}")
    if X.shape[0] == 0:
        raise ShapeError(f"{name}: expected at least one row, found an empty DataFrame")
    id_col = _pick_column(id_col, ID_NAMES, columns, "id_col", {time_col})
    long = id_col is not None
    inferred = time_col is None
    time_named = any(str(c).lower() in _TIME_NAMES and c != id_col for c in columns)
    if (
        not long
        and time_col is None
        and time_named
        and X.index.name is not None
        and not isinstance(X.index, (pd.DatetimeIndex, pd.TimedeltaIndex, pd.PeriodIndex))
        and (str(X.index.name).lower() in _TIME_NAMES or not _row_numbers(X.index))
    ):
        cols = [c for c in columns if str(c).lower() in _TIME_NAMES and c != id_col]
        if str(X.index.name).lower() in _TIME_NAMES:
            what = "named like a time"
        else:  # a named index of other values than row numbers may be the time axis
            what = "not row numbers 0..n-1 or 1..n"
        raise ValidationError(
            f"time_col: expected one time of {name} to infer, found both its index "
            f"{X.index.name!r} ({what}) and the column {cols[0]!r} named like a time; pass "
            f"time_col={cols[0]!r} for the column, or {name}.reset_index() and "
            f"time_col={X.index.name!r} for the index"
        )
    if long or time_col is not None or not _index_is_time(X.index, time_named):
        time_col = _pick_column(time_col, _TIME_NAMES, columns, "time_col", {id_col})
    if long and time_col is None:
        raise ValidationError(
            f"time_col: expected the time column of the long DataFrame {name} (id column "
            f"{id_col!r}), found none among {columns}; {CHOOSE_COLUMNS}"
        )
    if feature_cols is None:
        feats: list[Hashable] = [c for c in columns if c != id_col and c != time_col]
    else:
        feats = list(feature_cols)
        for c in feats:
            if c not in columns or c in (id_col, time_col):
                raise ValidationError(
                    f"feature_cols: expected columns of {name} other than the id and time "
                    f"columns, found {c!r} (columns: {columns})"
                )
    if not feats:
        raise ShapeError(f"{name}: expected at least one feature column, found none in {columns}")
    columns_f = [_frame_column(X, c, name, feature_cols is not None) for c in feats]
    for c, col in zip(feats, columns_f):
        check_no_inf(col, f"{name}[{c!r}]")  # the message gives the row
    values = np.stack(columns_f, axis=1)  # (R, D)
    if time_col is None:
        time_name = f"{name}.index"
        raw_t = pandas_times(X.index, time_name)
    else:
        time_name = f"{name}[{time_col!r}]"
        raw_t = pandas_times(X[time_col], time_name)
        if inferred and not long and raw_t.dtype.kind in "iuf" and (np.diff(raw_t) < 0).any():
            warnings.warn(
                f"time_col: took {name}[{time_col!r}] as the time column by its name, but its "
                f"values are out of order; if it is a feature, {CHOOSE_COLUMNS}",
                UserWarning,
                stacklevel=4,
            )
    kept = [kept_float(X[c].dtype) for c in feats]  # float32 columns: float32 results
    layout: dict[str, Any] = {
        "dtype": np.result_type(*kept) if None not in kept else np.dtype(np.float64),
        "feature_labels": tuple(feats),
        "names_given": True,
        "frame": X.copy(),
        "time_col": time_col,
        # a time zone: the times are computed in UTC and given back in this zone
        "tz": getattr((X.index if time_col is None else X[time_col]).dtype, "tz", None),
    }
    if not long:
        rows = np.arange(len(X))
        layout.update(kind="dataframe_wide", rows=[rows])
        return Parsed([values], [raw_t], [name], time_name, layout)
    ids = X[id_col]
    if ids.isna().any():
        raise ValidationError(
            f"{name}[{id_col!r}]: expected a series id on every row, found "
            f"{int(ids.isna().sum())} missing"
        )
    codes, uniques = pd.factorize(ids, sort=False)
    by_series = np.argsort(codes, kind="stable")
    splits = np.cumsum(np.bincount(codes, minlength=len(uniques)))[:-1]
    row_groups = np.split(by_series, splits)
    layout.update(kind="dataframe_long", id_col=id_col, series_ids=tuple(uniques), rows=row_groups)
    return Parsed(
        values=[values[r] for r in row_groups],
        times=[raw_t[r] for r in row_groups],
        labels=[f"series {u!r}" for u in uniques],
        time_name=time_name,
        layout=layout,
    )
