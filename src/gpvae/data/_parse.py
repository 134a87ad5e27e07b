"""Low-level conversions shared by the input paths: numbers, times, the parsed record.

Private to :mod:`gpvae.data`; see :func:`gpvae.data.to_series_set` for the public entry point.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from gpvae.errors import InputTypeError, ValidationError

__all__ = ["Parsed", "check_no_inf", "first_non_numeric", "pandas_times", "raw_times", "to_float"]


@dataclass
class Parsed:
    """Intermediate result of one input path, before validation and sorting."""

    values: list[np.ndarray]
    times: list[np.ndarray]
    labels: list[str]  # how to name each series in messages
    time_name: str
    layout: dict[str, Any] = field(default_factory=dict)


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (messages show 2, not np.int64(2))."""
    return value.item() if isinstance(value, np.generic) else value


def kept_float(given: Any) -> np.dtype | None:
    """The dtype a DataFrame's feature column of dtype ``given`` keeps in results: its own
    float dtype (float32 stays float32), None (float64) for other columns (int, bool,
    Int64: their imputations are not whole numbers) and for float16 (which would overflow
    wide intervals)."""
    keep = isinstance(given, np.dtype) and given.kind == "f" and given.itemsize >= 4
    return given if keep else None


def _unmasked(a: np.ma.MaskedArray) -> tuple[np.ndarray, np.ndarray]:
    """A masked array's data and mask (bool, its shape); masked text entries become NaN
    objects (a masked text need not be a number), the caller sets the others missing."""
    masked = np.ma.getmaskarray(a)
    data = np.ma.getdata(a)
    if data.dtype.kind in "OUS" and masked.any():
        data = np.where(masked, np.array(np.nan, dtype=object), data.astype(object))
    return data, masked


def to_float(a: Any, what: str) -> tuple[np.ndarray, np.dtype]:
    """Convert to a float64 array; return it and the float dtype to give results back in.

    Results come back in the input's float dtype, except float16 inputs, whose results are
    float32 (imputed values and interval bounds beyond 65504 would overflow float16), and
    extended-precision inputs, whose results are float64 (the precision computed in).

    The masked entries of a numpy masked array are missing (NaN), whatever their fill
    values hold.
    """
    if isinstance(a, np.ma.MaskedArray):
        data, masked = _unmasked(a)
        arr, out = to_float(data, what)
        arr[masked] = np.nan  # (arr is a fresh float64 copy)
        return arr, out
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as err:
        raise InputTypeError(
            f"{what}: expected a numeric array, found {type(a).__name__} that numpy cannot "
            f"read as one ({err})"
        ) from None
    kind = arr.dtype.kind
    if kind in "biu":
        return arr.astype(np.float64), np.dtype(np.float64)
    if kind == "f":
        out = arr.dtype
        if out.itemsize < 4:
            out = np.dtype(np.float32)
        elif out.itemsize > 8:
            out = np.dtype(np.float64)
        with np.errstate(over="ignore"):  # longdouble beyond float64 -> Inf, rejected later
            return arr.astype(np.float64), out
    if kind in "OUS":
        try:
            return arr.astype(np.float64), np.dtype(np.float64)
        except (ValueError, TypeError):
            bad = first_non_numeric(arr.ravel())
            raise InputTypeError(
                f"{what}: expected numeric values (NaN for missing), found dtype {arr.dtype} "
                f"with a value that cannot be converted to float: {bad!r}"
            ) from None
    raise InputTypeError(
        f"{what}: expected real numeric values (float, int or bool), found dtype {arr.dtype}"
    )


def first_non_numeric(flat: np.ndarray) -> object:
    """The first element that ``float()`` rejects, for error messages."""
    for v in flat:
        try:
            float(v)
        except (ValueError, TypeError):
            return v
    return None


def check_no_inf(arr: np.ndarray, what: str) -> None:
    """Raise a ValidationError naming ``what`` if ``arr`` holds +-Inf (NaN is fine)."""
    inf = np.isinf(arr)
    if inf.any():
        where = tuple(int(i) for i in np.argwhere(inf)[0])
        raise ValidationError(
            f"{what}: expected finite values, found {int(inf.sum())} infinite value(s) "
            f"(first at index {where}); use NaN for missing entries"
        )


def raw_times(a: Any, what: str) -> np.ndarray:
    """A 1-D-or-more time array: float64, datetime64[ns] or timedelta64[ns]; the masked
    entries of a numpy masked array are NaN or NaT (refused later as missing times)."""
    if isinstance(a, np.ma.MaskedArray):
        data, masked = _unmasked(a)
        arr = raw_times(data, what).copy()
        gap = {"M": np.datetime64("NaT"), "m": np.timedelta64("NaT")}
        arr[masked] = gap.get(arr.dtype.kind, np.nan)
        return arr
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    if isinstance(a, (pd.Series, pd.Index)):
        return pandas_times(a, what)
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as err:
        raise InputTypeError(f"{what}: expected numeric or datetime times, found {err}") from None
    kind = arr.dtype.kind
    if kind == "M":
        return arr.astype("datetime64[ns]")
    if kind == "m":
        return arr.astype("timedelta64[ns]")
    if kind in "biuf":
        return arr.astype(np.float64)
    if kind in "OUS":
        try:
            return arr.astype(np.float64)
        except (ValueError, TypeError):
            bad = first_non_numeric(arr.ravel())
            advice = "parse dates with pd.to_datetime, durations with pd.to_timedelta"
            if isinstance(bad, str) and re.fullmatch(r"\s*\d+:[0-5]\d\s*", bad):
                # (pd.to_timedelta wants H:MM:SS; pd.to_datetime reads a clock); a frame's
                # column takes + ':00' itself, a list or array of text one by one
                column = "['" in what or '["' in what
                parse = (
                    f"pd.to_timedelta({what} + ':00')"
                    if column
                    else f"pd.to_timedelta([t + ':00' for t in {what}])"
                )
                advice = (
                    f"elapsed times, hours:minutes since a start: parse them with {parse}; "
                    "pd.to_datetime reads them as clock times of today and fails past 23:59"
                )
            elif isinstance(bad, pd.Period):  # (pd.to_datetime refuses periods)
                advice = "turn periods into timestamps with .to_timestamp()"
            raise InputTypeError(
                f"{what}: expected numeric or datetime times, found dtype {arr.dtype} with "
                f"value {plain(bad)!r} ({advice})"
            ) from None
    raise InputTypeError(f"{what}: expected numeric or datetime times, found dtype {arr.dtype}")


def pandas_times(s: pd.Series | pd.Index, what: str) -> np.ndarray:
    """Times of a column or index: float64, datetime64[ns] (tz-aware -> UTC; periods -> the
    timestamp of their start, as ``.to_timestamp()`` gives) or timedelta64."""
    dtype = s.dtype
    if isinstance(dtype, pd.PeriodDtype):
        start = pd.PeriodIndex(s).to_timestamp()
        return np.asarray(start.to_numpy(), dtype="datetime64[ns]")
    if isinstance(dtype, pd.DatetimeTZDtype):
        idx = pd.DatetimeIndex(s).tz_convert("UTC").tz_localize(None)
        return idx.to_numpy(dtype="datetime64[ns]")
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return np.asarray(s.to_numpy(), dtype="datetime64[ns]")
    if pd.api.types.is_timedelta64_dtype(dtype):
        return np.asarray(s.to_numpy(), dtype="timedelta64[ns]")
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return np.asarray(pd.Series(s).to_numpy(dtype=np.float64, na_value=np.nan))
    return raw_times(np.asarray(s, dtype=object), what)
