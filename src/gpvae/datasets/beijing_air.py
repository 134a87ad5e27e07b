"""Beijing Multi-Site Air-Quality data: 12 stations, hourly, 2013-03-01 to 2017-02-28.

Source: Zhang et al. 2017, Proc. R. Soc. A 473: 20170457; UCI Machine Learning Repository
(CC BY 4.0). One CSV per station, ``PRSA_Data_<Station>_20130301-20170228.csv``, 35,064
hourly rows, about 2% missing.

Also the windowing and chronological split of the BeijingAir benchmark protocol.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from gpvae.datasets._paths import TimeSeriesData, dataset_dir
from gpvae.datasets.splits import split_sizes
from gpvae.errors import ShapeError, ValidationError, invalid

__all__ = [
    "BEIJING_FEATURES",
    "BEIJING_STATION_COORDINATES",
    "chronological_split",
    "load_beijing_air",
    "make_windows",
]

BEIJING_FEATURES: tuple[str, ...] = (
    "PM2.5",
    "PM10",
    "SO2",
    "NO2",
    "CO",
    "O3",
    "TEMP",
    "PRES",
    "DEWP",
    "RAIN",
    "WSPM",
)
"""The 11 numeric features per station (``wd``, wind direction as text, and ``No`` dropped)."""

BEIJING_STATION_COORDINATES: dict[str, tuple[float, float]] = {
    "Aotizhongxin": (39.982, 116.397),
    "Changping": (40.217, 116.230),
    "Dingling": (40.292, 116.220),
    "Dongsi": (39.929, 116.417),
    "Guanyuan": (39.929, 116.339),
    "Gucheng": (39.914, 116.184),
    "Huairou": (40.328, 116.628),
    "Nongzhanguan": (39.937, 116.461),
    "Shunyi": (40.127, 116.655),
    "Tiantan": (39.886, 116.407),
    "Wanliu": (39.987, 116.287),
    "Wanshouxigong": (39.878, 116.352),
}
"""Approximate station coordinates (WGS84 latitude, longitude), from the data README."""

_PREFIX = "PRSA_Data_"
_SUFFIX = "_20130301-20170228.csv"
_TIME_COLUMNS = ("year", "month", "day", "hour")


def load_beijing_air(data_dir: str | os.PathLike[str] | None = None) -> TimeSeriesData:
    """Load the 12 Beijing stations as one wide hourly series of 132 features.

    Stations are in alphabetical order; each contributes the 11 ``BEIJING_FEATURES``, named
    ``"<Station>/<feature>"`` (station-major columns: column ``11 * s + f``). Values are the
    raw CSV values (units: ug/m3 for pollutants, degC, hPa, mm, m/s); missing values are NaN.

    Args:
        data_dir: the shared data directory or its ``beijing_air`` folder; None resolves it
            with ``resolve_data_dir`` (``GPVAE_DATA`` or ``../shared/data``).

    Returns:
        ``TimeSeriesData`` with ``X`` (1, 35064, 132) float, ``times`` (1, 35064) hours since
        2013-03-01 00:00, ``ids`` ``["beijing_air"]``, no labels. ``info`` holds
        ``"datetimes"`` (35064,) ``datetime64[h]``, ``"stations"``, ``"station_features"``
        and ``"coordinates"`` (station -> (lat, lon)).

    Raises:
        ValidationError: no station files, a missing column, or stations whose timestamps
            differ.
    """
    folder = dataset_dir(data_dir, "beijing_air", f"{_PREFIX}*{_SUFFIX}")
    paths = sorted(folder.glob(f"{_PREFIX}*{_SUFFIX}"))
    stations = [p.name[len(_PREFIX) : -len(_SUFFIX)] for p in paths]
    blocks: list[np.ndarray] = []
    datetimes: np.ndarray | None = None
    for path in paths:
        frame = pd.read_csv(path, usecols=lambda c: c in (*_TIME_COLUMNS, *BEIJING_FEATURES))
        missing = [c for c in (*_TIME_COLUMNS, *BEIJING_FEATURES) if c not in frame.columns]
        if missing:
            raise ValidationError(
                f"data_dir: expected columns {missing} in {str(path)!r}, "
                f"found {list(frame.columns)}"
            )
        stamps = pd.to_datetime(frame.loc[:, list(_TIME_COLUMNS)]).to_numpy("datetime64[h]")
        if datetimes is None:
            datetimes = stamps
        elif len(stamps) != len(datetimes) or np.any(stamps != datetimes):
            raise ValidationError(
                f"data_dir: expected every station to share the timestamps of "
                f"{stations[0]!r}, found different ones in {str(path)!r}"
            )
        blocks.append(frame.loc[:, list(BEIJING_FEATURES)].to_numpy(dtype=float))
    if datetimes is None:  # unreachable: dataset_dir found at least one file
        raise ValidationError(f"data_dir: expected station CSVs in {str(folder)!r}, found none")
    X = np.concatenate(blocks, axis=1)[None]  # (1, T, S * 11)
    hours = (datetimes - datetimes[0]).astype(np.int64).astype(float)
    features = [f"{s}/{f}" for s in stations for f in BEIJING_FEATURES]
    info: dict[str, object] = {
        "name": "beijing_air",
        "source": str(folder),
        "datetimes": datetimes,
        "stations": stations,
        "station_features": list(BEIJING_FEATURES),
        "coordinates": {s: BEIJING_STATION_COORDINATES.get(s) for s in stations},
        "units": "raw CSV values; times in hours since the first timestamp",
    }
    return TimeSeriesData(
        X=X,
        times=hours[None],
        ids=np.array(["beijing_air"]),
        features=features,
        info=info,
    )


def make_windows(
    X: np.ndarray,
    times: np.ndarray | None = None,
    window: int = 24,
    stride: int = 24,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut series into fixed-length windows.

    Each series gives windows starting at 0, stride, 2 * stride, ...; a trailing part shorter
    than ``window`` is dropped. Windows are ordered by series, then by start.

    Args:
        X: (n, T, D) or (T, D) array (a 2-D array is one series).
        times: (n, T) or (T,) times, or None for 0..T-1.
        window: steps per window (>= 1).
        stride: steps between window starts (>= 1).

    Returns:
        ``(X_windows, times_windows)`` of shapes (n_windows, window, D) and
        (n_windows, window), copies of the input.

    Raises:
        ShapeError: bad shapes. ValidationError: bad ``window`` or ``stride``.
    """
    arr = np.asarray(X)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ShapeError(f"X: expected shape (n, T, D) or (T, D), found {arr.shape}")
    n, T, _ = arr.shape
    for name, val in (("window", window), ("stride", stride)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise invalid(name, "a positive int", repr(val))
    if times is None:
        t = np.broadcast_to(np.arange(T, dtype=float), (n, T))
    else:
        t = np.asarray(times, dtype=float)
        if t.ndim == 1:
            t = np.broadcast_to(t, (n, t.shape[0]))
        if t.shape != (n, T):
            raise ShapeError(f"times: expected shape {(n, T)} or {(T,)}, found {t.shape}")
    starts = np.arange(0, T - window + 1, stride)
    index = starts[:, None] + np.arange(window)  # (W, window)
    X_w = arr[:, index].reshape(n * len(starts), window, arr.shape[2])
    t_w = t[:, index].reshape(n * len(starts), window)
    return X_w, np.array(t_w)


def chronological_split(
    n: int, fractions: tuple[float, ...] = (0.6, 0.2, 0.2)
) -> tuple[np.ndarray, ...]:
    """Split ``range(n)`` into consecutive parts, in order (BeijingAir protocol: 60/20/20).

    Part sizes are ``floor(f * n)`` for all parts but the last, which takes the remainder.

    Args:
        n: number of items (time steps or windows, in time order).
        fractions: non-negative part sizes summing to 1.

    Returns:
        One int64 index array per fraction; consecutive ranges covering ``range(n)``.

    Raises:
        ValidationError: bad ``n`` or ``fractions``.
    """
    sizes = split_sizes(n, fractions)
    edges = np.cumsum((0, *sizes))
    return tuple(np.arange(edges[i], edges[i + 1], dtype=np.int64) for i in range(len(sizes)))
