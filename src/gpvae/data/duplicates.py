"""Merging rows that share a timestamp within a series (on request).

gpvae needs distinct times within a series, and rejects repeated ones rather than guess.
Real records repeat them (two lab draws logged in the same minute, a sensor that reports
twice); :func:`merge_duplicate_times` merges such rows into one, the per-feature mean of the
values observed there, and says which rows it merged::

    merged = merge_duplicate_times(frame, id_col="stay", time_col="time")
    merged.merged           # one entry per merged group: series, time, input rows
    GPVAE(...).fit(merged.X)
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gpvae.data._parse import plain
from gpvae.data.convert import ID_ADVICE, stacked_series, to_series_set
from gpvae.data.frames import from_frame
from gpvae.data.series import MergedTimes
from gpvae.errors import InputTypeError, ValidationError

__all__ = ["MergedTimes", "merge_duplicate_times"]


def _warn(merged: list[dict[str, Any]], stacklevel: int) -> None:
    if merged:
        rows = sum(len(m["rows"]) for m in merged)
        first = merged[0]
        when = first["time"]
        shown = str(when) if isinstance(when, np.datetime64) else repr(when)
        warnings.warn(
            f"merged {rows} rows into {len(merged)} (same series and time), e.g. rows "
            f"{first['rows']} of series {first['series']!r} at time {shown}; "
            "see .merged for all",
            UserWarning,
            stacklevel=stacklevel,
        )


#: What :func:`pandas.api.types.infer_dtype` calls a column of numbers (the merge averages).
_NUMBERS = {"integer", "floating", "mixed-integer-float", "decimal", "boolean", "empty"}


def _number(value: Any) -> bool:
    """Whether one entry is a number or missing (not text)."""
    return isinstance(value, (int, float, np.number)) or any(
        value is missing for missing in (None, pd.NA, pd.NaT)
    )


def _numeric_features(
    frame: pd.DataFrame, feats: list[Any], id_like: Hashable | None
) -> pd.DataFrame:
    """``frame`` with its feature columns ``feats`` as numbers (the merge averages them);
    a column holding text (even text of digits: ids read as text) is refused, naming it
    (``id_like``: the column that looks like the id of several series stacked, see
    :func:`~gpvae.data.convert.stacked_series`)."""
    converted: dict[Any, pd.Series] = {}
    for col in feats:
        values = frame[col]
        if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
            continue
        if isinstance(values.dtype, pd.CategoricalDtype):  # categories are not averaged
            raise InputTypeError(
                f"X[{col!r}]: expected numbers (the merge averages every column other than "
                f"the id and time), found a categorical column (dtype {values.dtype}); "
                f"convert it (X[{col!r}].astype(float) for numbers) or drop it before merging"
                + (f", or pass id_col={col!r} if it is the id of several series stacked"
                   if id_like is None or col == id_like else "")
            )  # fmt: skip
        if pd.api.types.infer_dtype(values, skipna=True) in _NUMBERS:
            converted[col] = pd.to_numeric(values)
            continue
        bad = np.array([not _number(v) for v in values], dtype=bool)
        first = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        if col == id_like or id_like is None:
            advice = (
                f"if {col!r} is the id of several series stacked, pass id_col={col!r}; "
                "else convert it to numbers (pd.to_numeric) or drop it before merging"
            )
        else:
            advice = (
                "convert it to numbers (pd.to_numeric) or drop it before merging (X looks "
                f"like several series stacked: if so, pass id_col={id_like!r})"
            )
        raise InputTypeError(
            f"X[{col!r}]: expected numbers (the merge averages every column other than the "
            f"id and time), found {int(bad.sum())} text or other non-numeric value(s) such as "
            f"{plain(values.iloc[first])!r} (row {plain(frame.index[first])!r}); {advice}"
        )
    if converted:
        frame = frame.copy()
        for col, numbers in converted.items():
            frame[col] = numbers
    return frame


def _merge_frame(
    X: pd.DataFrame, id_col: Hashable | None, time_col: Hashable | None
) -> MergedTimes:
    parsed = from_frame(X, id_col, time_col, None, "X")
    lay = parsed.layout
    id_c, time_c = lay.get("id_col"), lay.get("time_col")
    stacked = None if id_c is not None else stacked_series(X, parsed.times[0], {time_c})
    if stacked is not None:  # merging would average several series into one
        why, col = stacked
        warnings.warn(
            f"id_col: X looks like several series stacked ({why}), which this merge averages "
            f"into one series; {ID_ADVICE.format(col='...' if col is None else repr(col))} "
            "if so",
            UserWarning,
            stacklevel=3,
        )
    frame = X if time_c is not None else X.rename_axis("__time__").reset_index()
    time_key = time_c if time_c is not None else "__time__"
    keys = [k for k in (id_c, time_key) if k is not None]
    for key in keys:  # groupby would merge the rows without a time (or id) with each other
        missing = frame[key].isna().to_numpy()
        if missing.any():
            rows = list(X.index[missing][:5])
            what = "time" if key == time_key else "series id"
            name = f"X[{key!r}]" if key != "__time__" else "X.index"
            raise ValidationError(
                f"{name}: expected a {what} on every row, found {int(missing.sum())} rows "
                f"without one (rows {rows}{', ...' if missing.sum() > 5 else ''}); drop or "
                "fill them before merging"
            )
    feats = [c for c in frame.columns if c not in keys]
    frame = _numeric_features(frame, feats, None if stacked is None else stacked[1])
    dup = frame.duplicated(keys, keep=False).to_numpy()
    merged: list[dict[str, Any]] = []
    for key, group in frame[dup].groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        merged.append(
            {
                "series": key[0] if id_c is not None else 0,
                "time": key[-1],
                "rows": list(group.index),
            }
        )
    out = frame.groupby(keys, sort=False, dropna=False)[feats].mean().reset_index()
    if time_c is None:
        out = out.set_index("__time__").rename_axis(X.index.name)
    _warn(merged, 4)
    return MergedTimes(out, None, merged)


def merge_duplicate_times(
    X: Any,
    times: Any = None,
    *,
    id_col: Hashable | None = None,
    time_col: Hashable | None = None,
) -> MergedTimes:
    """Merge the rows of each series that share a time into one (per-feature mean).

    An entry of a merged row is the mean of the values observed at that time (NaN when none
    was); rows keep the input's order (a merged row takes its group's first place). A
    :class:`UserWarning` says how many rows were merged.

    Args:
        X: a long or wide DataFrame, a list of (T_i, D) arrays or an (n, T, D) array.
        times: for arrays, as in :func:`~gpvae.data.to_series_set` (None: 0..T-1, which
            never repeats).
        id_col, time_col: the DataFrame's id and time columns (inferred as in
            :func:`~gpvae.data.to_series_set`).

    Returns:
        :class:`MergedTimes`.

    Raises:
        GPVAEError: input that :func:`~gpvae.data.to_series_set` would reject for another
            reason than repeated times (naming the argument), such as rows without a time.
    """
    if isinstance(X, pd.DataFrame):
        if times is not None:
            raise ValidationError("times: expected None for a DataFrame X, found times")
        return _merge_frame(X, id_col, time_col)
    if isinstance(X, np.ndarray) and X.ndim == 3:
        series: Sequence[Any] = list(X)
        if times is not None and np.ndim(times) == 2:
            times = list(np.asarray(times))
        elif times is not None:
            times = [np.asarray(times)] * len(series)
    else:
        series = X
    if times is None:
        times = [np.arange(len(np.asarray(v)), dtype=np.float64) for v in series]
    values_out: list[np.ndarray] = []
    times_out: list[np.ndarray] = []
    merged: list[dict[str, Any]] = []
    for i, (v, t) in enumerate(zip(series, times, strict=True)):
        v = np.asarray(v, dtype=np.float64)
        t = np.asarray(t)
        if not np.issubdtype(t.dtype, np.datetime64):  # datetimes stay datetimes
            t = t.astype(np.float64)
        u, inverse, counts = np.unique(t, return_inverse=True, return_counts=True)
        out = np.full((len(u), v.shape[1]), np.nan)
        for k in np.flatnonzero(counts > 1):
            rows = np.flatnonzero(inverse == k)
            when = u[k] if np.issubdtype(u.dtype, np.datetime64) else float(u[k])
            merged.append({"series": i, "time": when, "rows": rows.tolist()})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
                out[k] = np.nanmean(v[rows], axis=0)
        single = counts[inverse] == 1
        out[inverse[single]] = v[single]
        values_out.append(out)
        times_out.append(u)
    to_series_set(values_out, times_out, allow_single_step=True, allow_empty_series=True)
    _warn(merged, 3)
    return MergedTimes(values_out, times_out, merged)
