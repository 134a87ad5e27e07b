"""Spatio-temporal fields from long DataFrames: sites, coordinates, times, features.

A :class:`Field` is S sites (fixed coordinates) x T times x D features, NaN where missing.
It is read from a long DataFrame with one row per (site, time): a site id column, a time
column, two coordinate columns and the feature columns (:func:`field_from_frame`).

Coordinates become planar kilometres (:class:`Projection`): longitude / latitude by a local
equirectangular projection about the centre of the training sites,

    east = R cos(lat0) (lon - lon0),   north = R (lat - lat0)   (radians, R = 6371.0088 km),

with ``lon - lon0`` taken the short way round (in [-180, 180]) and the centre in the middle
of the smallest arc of longitude holding the sites, so sites on both sides of the 180th
meridian (Fiji, the Aleutians) stay neighbours. The east scale is exact only at lat0, so the
error grows with the extent L of the sites, about ``L tan(lat0) / (2 R)``. Measured as the
worst relative error of a pairwise distance against the great-circle (haversine) distance:
0.31% over the 12 BeijingAir stations (55 km north to south, 40 N); on squares of side L
centred at 40 N, 0.33% (L = 50 km), 0.67% (100 km), 3.5% (500 km); at 60 N, 0.69%, 1.4%,
7.5%; at the equator under 0.1% up to 500 km. Coordinates already projected (x / y) are
taken as they are, in km. The origin is kept, so new sites are projected the same way
after saving and loading.

Times are turned into steps (:class:`TimeAxis`): datetimes into hours since the first
training time, then divided by the median time step, so that kernel lengthscales are in steps.

Shapes: S sites, T times, D features.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gpvae.errors import InputTypeError, ValidationError

__all__ = [
    "EARTH_RADIUS_KM",
    "Field",
    "Projection",
    "TimeAxis",
    "field_batch",
    "field_from_frame",
    "site_table",
    "warn_far_sites",
]

#: Mean Earth radius (IUGG), km.
EARTH_RADIUS_KM = 6371.0088

_LAT = ("lat", "latitude")
_LON = ("lon", "lng", "long", "longitude")


def _is(name: Hashable, options: tuple[str, ...]) -> bool:
    return isinstance(name, str) and name.strip().lower() in options


def _check_degrees(lat: np.ndarray, lon: np.ndarray, lat_col: str, lon_col: str) -> None:
    """Raise naming the column when a latitude or longitude is out of range (e.g. the two
    columns swapped)."""
    if len(lat) and np.abs(lat).max() > 90.0:
        raise ValidationError(
            f"coords: expected latitudes in [-90, 90] in column {lat_col!r}, found "
            f"{float(lat[np.argmax(np.abs(lat))])!r} (pass projection='xy' for planar "
            "coordinates in km)"
        )
    if len(lon) and np.abs(lon).max() > 180.0:
        raise ValidationError(
            f"coords: expected longitudes in [-180, 180] in column {lon_col!r}, "
            f"found {float(lon[np.argmax(np.abs(lon))])!r}"
        )


def _short_way(dlon: np.ndarray) -> np.ndarray:
    """Longitude differences (radians) moved into [-pi, pi] by a turn where they fall
    outside (the others unchanged, bit for bit)."""
    turn = 2.0 * math.pi
    return np.where(dlon > math.pi, dlon - turn, np.where(dlon < -math.pi, dlon + turn, dlon))


def _central_longitude(lon: np.ndarray) -> float:
    """The middle of the smallest arc of longitude (degrees) that holds every site: the
    middle of [min, max] unless the widest gap between sorted longitudes lies inside that
    range (the sites straddle the 180th meridian), then the middle of the arc across it."""
    lo, hi = float(lon.min()), float(lon.max())
    ordered = np.sort(np.asarray(lon, dtype=np.float64))
    gaps = np.diff(ordered)
    if len(gaps) == 0 or float(gaps.max()) <= 360.0 - (hi - lo):  # no wrap needed
        return 0.5 * (lo + hi)
    k = int(np.argmax(gaps))  # the arc runs east from ordered[k + 1] to ordered[k] + 360
    mid = 0.5 * (float(ordered[k + 1]) + float(ordered[k]) + 360.0)
    return mid - 360.0 if mid > 180.0 else mid


@dataclass(frozen=True)
class Projection:
    """How two coordinate columns become planar kilometres.

    Attributes:
        columns: the two coordinate column names, as the user gave them.
        kind: ``"latlon"`` (the columns are latitude and longitude in degrees, in either
            order) or ``"xy"`` (planar coordinates in km).
        lat_index: for ``latlon``, which of the two columns is the latitude (0 or 1).
        lat0, lon0: the projection's centre in degrees (``latlon`` only).
    """

    columns: tuple[str, str]
    kind: str
    lat_index: int = 0
    lat0: float = 0.0
    lon0: float = 0.0

    @classmethod
    def infer(cls, columns: Sequence[str], coords: np.ndarray, kind: str = "auto") -> Projection:
        """The projection of ``columns`` with its centre at the middle of ``coords`` (S, 2).

        ``kind="auto"`` reads columns named lat/latitude and lon/lng/longitude as degrees and
        anything else as planar km.
        """
        cols = (str(columns[0]), str(columns[1]))
        if kind not in ("auto", "latlon", "xy"):
            raise ValidationError(f"projection: expected 'auto', 'latlon' or 'xy', found {kind!r}")
        if kind == "xy" or (
            kind == "auto"
            and not any(_is(c, _LAT) for c in cols)
            and not any(_is(c, _LON) for c in cols)
        ):
            return cls(cols, "xy")
        lat_index = 1 if _is(cols[0], _LON) or _is(cols[1], _LAT) else 0
        lat, lon = coords[:, lat_index], coords[:, 1 - lat_index]
        _check_degrees(lat, lon, cols[lat_index], cols[1 - lat_index])
        lat0 = 0.5 * (float(lat.min()) + float(lat.max()))
        return cls(cols, "latlon", lat_index, lat0, _central_longitude(lon))

    def to_km(self, coords: np.ndarray) -> np.ndarray:
        """(n, 2) coordinates in the columns' order -> (n, 2) planar (east, north) km."""
        coords = np.asarray(coords, dtype=np.float64)
        if self.kind == "xy":
            return coords.copy()
        lat, lon = coords[:, self.lat_index], coords[:, 1 - self.lat_index]
        _check_degrees(lat, lon, self.columns[self.lat_index], self.columns[1 - self.lat_index])
        lat, lon = np.radians(lat), np.radians(lon)
        dlon = _short_way(lon - math.radians(self.lon0))
        east = EARTH_RADIUS_KM * math.cos(math.radians(self.lat0)) * dlon
        north = EARTH_RADIUS_KM * (lat - math.radians(self.lat0))
        return np.stack([east, north], axis=-1)

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns),
            "kind": self.kind,
            "lat_index": self.lat_index,
            "lat0": self.lat0,
            "lon0": self.lon0,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Projection:
        cols = data["columns"]
        return cls(
            (str(cols[0]), str(cols[1])),
            str(data["kind"]),
            int(data["lat_index"]),
            float(data["lat0"]),
            float(data["lon0"]),
        )


@dataclass(frozen=True)
class TimeAxis:
    """Times -> model steps: ``(t - origin) / step`` (datetimes in hours first).

    Attributes:
        column: the time column.
        datetime: the column held datetimes (origin is then an ISO timestamp).
        origin: the first training time (hours since the epoch for datetimes).
        step: the median step between consecutive training times (same unit).
    """

    column: str
    datetime: bool
    origin: float
    step: float

    @staticmethod
    def raw(series: pd.Series, column: str) -> tuple[np.ndarray, bool]:
        """Times of a column as float64 (hours since 1970 for datetimes), and whether they
        were datetimes."""
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            ns = pd.to_datetime(series).to_numpy(dtype="datetime64[ns]").astype(np.int64)
            out = ns.astype(np.float64) / 3.6e12
            out[pd.isna(series).to_numpy()] = np.nan
            return out, True
        try:
            return pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64), False
        except (ValueError, TypeError):
            raise InputTypeError(
                f"time: expected numbers or datetimes in column {column!r}, found dtype "
                f"{series.dtype}"
            ) from None

    def steps(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.origin) / self.step

    def to_json(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "datetime": self.datetime,
            "origin": self.origin,
            "step": self.step,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TimeAxis:
        return cls(
            str(data["column"]), bool(data["datetime"]), float(data["origin"]), float(data["step"])
        )


@dataclass(frozen=True, eq=False)
class Field:
    """S sites x T times x D features.

    Attributes:
        site_ids: (S,) site ids in first-appearance order.
        coords: (S, 2) coordinates as given (in the projection's column order).
        xy: (S, 2) planar km.
        times: (T,) sorted distinct times, in model steps.
        raw_times: (T,) the same times as in the frame (datetime64 or float).
        values: (T, S, D) float64, NaN where missing.
        feature_names: the D feature columns.
    """

    site_ids: tuple[Hashable, ...]
    coords: np.ndarray
    xy: np.ndarray
    times: np.ndarray
    raw_times: np.ndarray
    values: np.ndarray
    feature_names: tuple[str, ...]

    @property
    def num_sites(self) -> int:
        return len(self.site_ids)


def _columns(frame: pd.DataFrame, names: Sequence[Hashable], what: str) -> None:
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"{what}: expected columns of the DataFrame, found {missing!r} missing (columns: "
            f"{list(frame.columns)!r})"
        )


def site_table(
    frame: pd.DataFrame,
    id_col: Hashable,
    coords: Sequence[Hashable],
    min_sites: int = 2,
    *,
    name: str = "sites",
) -> tuple[tuple[Hashable, ...], np.ndarray]:
    """The sites of a frame and their coordinates, checked.

    Args:
        frame: one row per site (new sites) or per (site, time) (a field).
        id_col: the site id column.
        coords: the two coordinate columns.
        min_sites: the fewest sites accepted.
        name: the argument ``frame`` was given as, for messages: ``"sites"`` for a table
            of new sites (the default), ``"X"`` for the field (:func:`field_from_frame`).

    Raises:
        InputTypeError: ``frame`` is not a DataFrame (naming ``name``; a Series, one site's
            row, is told to be given as a one-row frame).
        ValidationError: missing or non-finite coordinates, coordinates that change over
            time for one site, two sites at the same coordinates, a missing site id, or
            fewer than ``min_sites`` sites; each naming the column.
    """
    if not isinstance(frame, pd.DataFrame):
        hint = ""
        if isinstance(frame, pd.Series):  # one row of a frame: one site
            hint = f" (for one site pass a one-row DataFrame, {name}.to_frame().T)"
        raise InputTypeError(
            f"{name}: expected a long pandas DataFrame (site id and coordinate columns), "
            f"found {type(frame).__name__}{hint}"
        )
    if len(coords) != 2:
        raise ValidationError(f"coords: expected two coordinate columns, found {list(coords)!r}")
    _columns(frame, [id_col], "id")
    _columns(frame, coords, "coords")
    if frame[id_col].isna().any():
        raise ValidationError(
            f"id: expected a site id on every row, found missing values in {id_col!r}"
        )
    xy = np.empty((len(frame), 2))
    for j, col in enumerate(coords):
        try:
            xy[:, j] = pd.to_numeric(frame[col], errors="raise").to_numpy(dtype=np.float64)
        except (ValueError, TypeError):
            raise InputTypeError(
                f"coords: expected numeric coordinates in column {col!r}, found dtype "
                f"{frame[col].dtype}"
            ) from None
        bad = ~np.isfinite(xy[:, j])
        if bad.any():
            row = int(np.argmax(bad))
            raise ValidationError(
                f"coords: expected finite coordinates in column {col!r}, found "
                f"{xy[row, j]!r} for site {frame[id_col].iloc[row]!r} ({int(bad.sum())} rows)"
            )
    codes, ids = pd.factorize(frame[id_col], sort=False)
    num_sites = len(ids)
    if num_sites < min_sites:
        raise ValidationError(
            f"id: expected at least {min_sites} sites in column {id_col!r}, found {num_sites}"
        )
    first = np.zeros(num_sites, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    site_xy = xy[first]  # (S, 2)
    for j, col in enumerate(coords):
        moved = xy[:, j] != site_xy[codes, j]
        if moved.any():
            row = int(np.argmax(moved))
            was, now = float(site_xy[codes[row], j]), float(xy[row, j])
            raise ValidationError(
                f"coords: expected fixed coordinates per site, found column {col!r} changing "
                f"for site {ids[codes[row]]!r} ({was!r} then {now!r})"
            )
    _, first_at, counts = np.unique(site_xy, axis=0, return_index=True, return_counts=True)
    if (counts > 1).any():
        same = np.all(site_xy == site_xy[first_at[np.argmax(counts > 1)]], axis=1)
        names = [ids[i] for i in np.flatnonzero(same)]
        raise ValidationError(
            f"coords: expected distinct coordinates for distinct sites, found sites {names!r} "
            f"at the same {list(coords)!r}"
        )
    return tuple(ids.tolist()), site_xy


def field_from_frame(
    frame: pd.DataFrame,
    id_col: Hashable,
    time_col: Hashable,
    coords: Sequence[Hashable],
    features: Sequence[Hashable] | None = None,
    projection: Projection | str = "auto",
    time_axis: TimeAxis | None = None,
    min_sites: int = 2,
) -> tuple[Field, Projection, TimeAxis]:
    """Read a long DataFrame into a :class:`Field`.

    Args:
        frame: one row per (site, time).
        id_col: the site id column.
        time_col: the time column (numbers or datetimes).
        coords: the two coordinate columns (lat/lon in degrees, or x/y in km).
        features: the feature columns (None: every other numeric column).
        projection: a fitted :class:`Projection` (prediction), or ``"auto"`` / ``"latlon"``
            / ``"xy"`` to fit one on these sites.
        time_axis: a fitted :class:`TimeAxis`, or None to fit one on these times.
        min_sites: the fewest sites accepted.

    Returns:
        The field, the projection and the time axis.

    Raises:
        ValidationError / InputTypeError: naming the argument and column (see
            :func:`site_table`); also duplicate (site, time) rows and missing times.
    """
    ids, site_xy = site_table(frame, id_col, coords, min_sites, name="X")
    _columns(frame, [time_col], "time")
    if features is None:
        skip = {id_col, time_col, *coords}
        features = [
            c
            for c in frame.columns
            if c not in skip
            and pd.api.types.is_numeric_dtype(frame[c].dtype)
            and not pd.api.types.is_bool_dtype(frame[c].dtype)
        ]
        if not features:
            raise ValidationError("X: expected at least one numeric feature column, found none")
    _columns(frame, list(features), "features")
    t_raw, is_dt = TimeAxis.raw(frame[time_col], str(time_col))
    if np.isnan(t_raw).any():
        raise ValidationError(
            f"time: expected a time on every row, found missing values in {time_col!r}"
        )
    if isinstance(projection, str):
        projection = Projection.infer([str(c) for c in coords], site_xy, projection)
    if time_axis is None:
        uniq = np.unique(t_raw)
        step = float(np.median(np.diff(uniq))) if uniq.size > 1 else 1.0
        time_axis = TimeAxis(str(time_col), is_dt, float(uniq[0]), step if step > 0 else 1.0)
    elif time_axis.datetime != is_dt:
        raise InputTypeError(
            f"time: expected {'datetimes' if time_axis.datetime else 'numbers'} in column "
            f"{time_col!r} (as at fit), found dtype {frame[time_col].dtype}"
        )
    codes = pd.factorize(frame[id_col], sort=False)[0]
    times, t_idx = np.unique(t_raw, return_inverse=True)
    dup = pd.Series(codes * len(times) + t_idx).duplicated()
    if dup.any():
        row = int(np.argmax(dup.to_numpy()))
        raise ValidationError(
            f"time: expected one row per site and time, found site {ids[codes[row]]!r} twice at "
            f"{frame[time_col].iloc[row]} in column {time_col!r}"
        )
    values = np.full((len(times), len(ids), len(features)), np.nan)
    for j, col in enumerate(features):
        try:
            col_values = pd.to_numeric(frame[col], errors="raise").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
        except (ValueError, TypeError):
            raise InputTypeError(
                f"features: expected numeric values in column {col!r}, found dtype "
                f"{frame[col].dtype}"
            ) from None
        if np.isinf(col_values).any():
            raise ValidationError(
                f"X: expected finite or missing values in column {col!r}, found Inf"
            )
        values[t_idx, codes, j] = col_values
    raw_sorted = frame[time_col].iloc[np.unique(t_raw, return_index=True)[1]].to_numpy()
    field = Field(
        site_ids=ids,
        coords=site_xy,
        xy=projection.to_km(site_xy),
        times=time_axis.steps(times),
        raw_times=raw_sorted,
        values=values,
        feature_names=tuple(str(c) for c in features),
    )
    return field, projection, time_axis


def warn_far_sites(
    new_xy: np.ndarray,
    train_xy: np.ndarray,
    names: Sequence[Hashable],
    columns: Sequence[str],
    note: str,
    stacklevel: int = 3,
) -> None:
    """Warn about sites far outside the training area: farther from the training sites'
    centre than 1.5 times the farthest training site. ``note`` ends the message: what the
    predictions there are (it depends on the model: see
    :func:`gpvae.estimator.spatial.predict_sites`). ``stacklevel`` as in ``warnings.warn``
    from this function (3: its caller's caller)."""
    centre = train_xy.mean(0)
    radius = float(np.sqrt(((train_xy - centre) ** 2).sum(-1)).max())
    dist = np.sqrt(((new_xy - centre) ** 2).sum(-1))
    far = dist > 1.5 * max(radius, 1e-9)
    if far.any():
        listed = ", ".join(f"{names[i]!r} ({dist[i]:.1f} km)" for i in np.flatnonzero(far)[:5])
        warnings.warn(
            f"coords: sites {listed} in columns {list(columns)!r} are far outside the training "
            f"area (radius {radius:.1f} km about its centre); {note}",
            UserWarning,
            stacklevel=stacklevel,
        )


def field_batch(
    values: np.ndarray,
    xy: np.ndarray,
    times: np.ndarray,
    starts: Sequence[int],
    length: int,
    dtype: Any = None,
) -> Any:
    """A :class:`~gpvae.batch.Batch` of time windows of a field, one series per window.

    Series b holds the points (site s, step t) for t in ``[starts[b], starts[b] + length)``
    (cut at the end of the field: the rest is padding), time-major: every site of the first
    step, then of the second, ... Index points are ``(east_km, north_km, t - t_start)``.

    Args:
        values: (T, S, D) standardised values, NaN where missing.
        xy: (S, 2) planar km.
        times: (T,) steps.
        starts: first step of each window.
        length: steps per window.
        dtype: torch dtype (default float32).

    Returns:
        Batch with x (B, length S, 3), y and observed (B, length S, D), valid (B, length S).
    """
    import torch

    from gpvae.batch import Batch

    T, S, D = values.shape
    B = len(starts)
    dtype = torch.float32 if dtype is None else dtype
    y = np.full((B, length, S, D), np.nan)
    x = np.zeros((B, length, S, 3))
    valid = np.zeros((B, length, S), dtype=bool)
    for b, a in enumerate(starts):
        stop = min(a + length, T)
        n = stop - a
        y[b, :n] = values[a:stop]
        x[b, :n, :, :2] = xy[None]
        x[b, :n, :, 2] = (times[a:stop] - times[a])[:, None]
        valid[b, :n] = True
    yt = torch.as_tensor(y.reshape(B, length * S, D), dtype=dtype)
    observed = ~torch.isnan(yt)
    return Batch.from_tensors(
        torch.where(observed, yt, torch.zeros_like(yt)),
        observed,
        torch.as_tensor(x.reshape(B, length * S, 3), dtype=dtype),
        torch.as_tensor(valid.reshape(B, length * S)),
    )
