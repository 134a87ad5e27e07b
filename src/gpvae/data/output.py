"""Give per-point results back in the user's form: the inverse of batching.

Results are computed on padded, time-sorted series: an array (n, N, ...) with N at least the
longest series (for example the per-batch outputs written into one (n, N_max, D) array), or a
list of n arrays (T_i, ...) in sorted time order. :func:`from_padded` drops the padding,
restores the input's order of unsorted timestamps and returns

- "array" (and a dict holding an array): an array (n, T, ...);
- "ragged" (and a dict holding a list): a list of n arrays (T_i, ...);
- "dataframe_long" / "dataframe_wide": a copy of the input DataFrame, same rows, order,
  index and columns, with the feature columns replaced by the result (a result with one value
  per point, (n, N), gives a Series aligned with the frame's rows instead).

Float results are cast to the input's float dtype (float64 for int/bool input); in a
DataFrame, to each feature column's own float32 or float64 dtype (float64 for int, bool,
Int64 or float16 columns).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor

from gpvae.data._parse import kept_float
from gpvae.data.series import SeriesSet
from gpvae.errors import InputTypeError, ShapeError

__all__ = ["from_padded", "unpad"]


def _sorted_series(series_set: SeriesSet, values: Any, name: str) -> list[np.ndarray]:
    """Per-series arrays (T_i, ...) in sorted time order, padding dropped."""
    lengths = series_set.lengths
    n = series_set.num_series
    if isinstance(values, (list, tuple)):
        if len(values) != n:
            raise ShapeError(
                f"{name}: expected a list of {n} per-series arrays, found {len(values)}"
            )
        out = [_as_numpy(v, f"{name}[{i}]") for i, v in enumerate(values)]
        for i, (v, T) in enumerate(zip(out, lengths)):
            if v.ndim == 0 or v.shape[0] != T:
                raise ShapeError(
                    f"{name}[{i}]: expected {T} points on the first axis, found shape {v.shape}"
                )
        return out
    arr = _as_numpy(values, name)
    if arr.ndim < 2 or arr.shape[0] != n or arr.shape[1] < series_set.max_length:
        raise ShapeError(
            f"{name}: expected shape ({n}, N, ...) with N >= {series_set.max_length} (the "
            f"longest series), found {arr.shape}"
        )
    return [arr[i, :T] for i, T in enumerate(lengths)]


def _as_numpy(v: Any, name: str) -> np.ndarray:
    if isinstance(v, Tensor):
        return v.detach().cpu().numpy()
    try:
        return np.asarray(v)
    except (ValueError, TypeError) as err:
        raise InputTypeError(
            f"{name}: expected an array, found {type(v).__name__} ({err})"
        ) from None


def _cast(series_set: SeriesSet, v: np.ndarray, dtype: np.dtype | None = None) -> np.ndarray:
    if v.dtype.kind == "f":
        return saturating_cast(v, series_set.layout.dtype if dtype is None else dtype)
    return v


def saturating_cast(values: np.ndarray, dtype: Any) -> np.ndarray:
    """``values`` (float) in the float ``dtype``, finite values beyond its range held at its
    largest finite value (the input's float32 keeps a score of 1e40, which float32 cannot
    hold, as 3.4e38, not inf; inf and NaN stay as they are)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize < values.dtype.itemsize:
        top = float(np.finfo(dtype).max)
        if bool((np.abs(values[np.isfinite(values)]) > top).any()):
            values = np.where(np.isfinite(values), np.clip(values, -top, top), values)
    return values.astype(dtype, copy=False)


def unpad(series_set: SeriesSet, values: Any, *, name: str = "values") -> list[np.ndarray]:
    """Drop padding and restore the input's time order.

    Args:
        series_set: the series the values were computed for.
        values: (n, N, ...) array/tensor with N >= max T_i, or a list of n arrays (T_i, ...),
            in sorted time order.
        name: argument name for error messages.

    Returns:
        n arrays (T_i, ...), points in the order they had in the input.
    """
    out = []
    for v, order in zip(_sorted_series(series_set, values, name), series_set.layout.order):
        w = np.empty_like(v)
        w[order] = v
        out.append(w)
    return out


def _frame(series_set: SeriesSet) -> pd.DataFrame:
    lay = series_set.layout
    if lay.frame is None or lay.rows is None:
        raise InputTypeError(
            f"series_set: expected a DataFrame layout (kind {lay.kind!r}), found no frame"
        )
    return lay.frame


def _frame_output(series_set: SeriesSet, sorted_vals: list[np.ndarray], name: str) -> np.ndarray:
    """Rows (R, ...) of the input frame filled from per-series sorted values."""
    lay = series_set.layout
    _frame(series_set)
    rows_per_series = lay.rows if lay.rows is not None else ()
    tail = sorted_vals[0].shape[1:]
    D = series_set.num_features
    if tail not in ((), (D,)):
        raise ShapeError(
            f"{name}: expected per-point values (n, N) or (n, N, {D}) for a DataFrame input, "
            f"found trailing shape {tail}"
        )
    full = np.full((len(_frame(series_set)), *tail), np.nan)
    for rows, v in zip(rows_per_series, sorted_vals):
        full[rows] = v
    return full


def _one(series_set: SeriesSet, values: Any, name: str, dtype: np.dtype | None = None) -> Any:
    kind = series_set.layout.output_kind
    if kind in ("array", "ragged"):
        per = [_cast(series_set, v, dtype) for v in unpad(series_set, values, name=name)]
        if kind == "ragged":
            return per
        shapes = {v.shape for v in per}
        if len(shapes) > 1:
            raise ShapeError(f"{name}: expected equal shapes per series, found {sorted(shapes)}")
        return np.stack(per)
    full = _frame_output(series_set, _sorted_series(series_set, values, name), name)
    frame = _frame(series_set)
    if full.ndim == 1:
        return pd.Series(full, index=frame.index.copy(), name=name)
    out = frame.copy()
    for j, col in enumerate(series_set.layout.feature_labels):
        out[col] = _in_column_dtype(full[:, j], frame[col].dtype)
    return out


def _in_column_dtype(values: np.ndarray, given: Any) -> np.ndarray:
    """A feature column's results in the dtype it keeps (:func:`kept_float`: float32 stays
    float32; int, bool, Int64 and float16 columns become float64)."""
    keep = kept_float(given)
    if keep is None or values.dtype.kind != "f":
        return values
    return saturating_cast(values, keep)


def from_padded(
    series_set: SeriesSet,
    outputs: Any | Mapping[str, Any],
    *,
    name: str = "values",
    dtype: np.dtype | type | None = None,
) -> Any:
    """Return per-point results in the user's original form.

    Args:
        series_set: the series (from :func:`to_series_set`) the results belong to.
        outputs: one result, an (n, N, D) or (n, N) array/tensor (N >= the longest series)
            or a list of n arrays (T_i, ...) in sorted time order; or a mapping of such
            results, e.g. ``{"mean": m, "lower": lo, "upper": up}``.
        name: argument name for error messages (and the Series name for (n, N) results on
            DataFrames).
        dtype: float dtype of array / list results (default: the input's float dtype, see
            :attr:`Layout.dtype`), e.g. float64 for scores that may exceed float32.

    Returns:
        For one result: an array (n, T, ...), a list of n arrays (T_i, ...), or a copy of the
        input DataFrame with the feature columns replaced (a Series for (n, N) results).
        For a mapping: a dict of those, except for DataFrame inputs, which give one frame:
        the first result fills the feature columns and every other result ``key`` adds
        columns ``<feature>_<key>`` (or ``key`` for (n, N) results) after the input's
        columns.
    """
    out_dtype = None if dtype is None else np.dtype(dtype)
    if not isinstance(outputs, Mapping):
        return _one(series_set, outputs, name, out_dtype)
    if not outputs:
        raise ShapeError(f"{name}: expected at least one output, found an empty mapping")
    if series_set.layout.output_kind in ("array", "ragged"):
        return {
            key: _one(series_set, val, f"{name}[{key!r}]", out_dtype)
            for key, val in outputs.items()
        }
    out = _frame(series_set).copy()
    new_cols: dict[str, np.ndarray] = {}
    for k, (key, val) in enumerate(outputs.items()):
        what = f"{name}[{key!r}]"
        full = _frame_output(series_set, _sorted_series(series_set, val, what), what)
        if full.ndim == 1:
            new_cols[str(key)] = full
            continue
        for j, col in enumerate(series_set.layout.feature_labels):
            values = _in_column_dtype(full[:, j], _frame(series_set)[col].dtype)
            if k == 0:
                out[col] = values
            else:
                new_cols[f"{col}_{key}"] = values
    if new_cols:
        out = pd.concat([out, pd.DataFrame(new_cols, index=out.index)], axis=1)
    return out
