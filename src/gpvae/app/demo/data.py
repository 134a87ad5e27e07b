"""The demo's data: four years of daily Seattle weather, its test masks and model units.

The record (2012-2015, 1461 days) comes from the ``vega_datasets`` package (MIT licence, no
network needed): precipitation (mm), temp_max and temp_min (°C) and wind (m/s). The last
:data:`HORIZON` days are held out for the forecast test; in the rest, :data:`NUM_GAPS` gaps of
:data:`GAP_DAYS` days (one feature each) and :data:`POINT_RATE` of the other observed entries
are hidden for the imputation test.

Shapes: T days of history, H = :data:`HORIZON` held-out days, D = 4 features.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from gpvae.data.windows import cut_windows
from gpvae.datasets.masking import hide_points

__all__ = [
    "FEATURES",
    "GAP_DAYS",
    "HORIZON",
    "NUM_GAPS",
    "POINT_RATE",
    "DemoData",
    "from_model_units",
    "load_weather",
    "make_demo_data",
    "to_model_units",
    "windows",
]

#: The weather features, in the order of the model's columns.
FEATURES = ("precipitation", "temp_max", "temp_min", "wind")
#: Days held out at the end for the forecast test.
HORIZON = 28
#: Length in days of each long gap of the imputation test.
GAP_DAYS = 30
#: Number of long gaps (each in a different feature).
NUM_GAPS = 3
#: Share of the entries left observed after the gaps that are hidden at random.
POINT_RATE = 0.2


def load_weather() -> pd.DataFrame:
    """The Seattle weather record from the ``vega_datasets`` package.

    Returns:
        A DataFrame of 1461 rows (one per day, 2012-01-01 to 2015-12-31): ``date``
        (datetime64) and the :data:`FEATURES` (float64).
    """
    path = resources.files("vega_datasets") / "_data" / "seattle-weather.csv"
    with resources.as_file(path) as p:
        frame = pd.read_csv(p)
    frame["date"] = pd.to_datetime(frame["date"], format="%Y/%m/%d")
    return frame[["date", *FEATURES]].astype({f: np.float64 for f in FEATURES})


@dataclass
class DemoData:
    """The demo's arrays (T days, D = 4 features).

    Attributes:
        dates: (T + H,) all dates.
        truth: (T + H, D) the full record.
        history: (T, D) the record before the forecast test, hidden entries set to NaN.
        points: (T, D) bool, entries hidden at random (the imputation test).
        gaps: (T, D) bool, entries hidden in the long gaps (the imputation test).
        validation: (T, D) bool, entries hidden for tuning only (all False in a normal run).
        horizon: H, the held-out days at the end.
    """

    dates: np.ndarray
    truth: np.ndarray
    history: np.ndarray
    points: np.ndarray
    gaps: np.ndarray
    validation: np.ndarray
    horizon: int

    @property
    def hidden(self) -> np.ndarray:
        """(T, D) bool: every entry hidden for the imputation test."""
        return self.points | self.gaps

    @property
    def days(self) -> np.ndarray:
        """(T,) float times of the history in days (0, 1, 2, ...)."""
        return np.arange(self.history.shape[0], dtype=np.float64)


def make_demo_data(
    frame: pd.DataFrame, seed: int = 0, days: int | None = None, validation: float = 0.0
) -> DemoData:
    """Hold out the forecast test and hide the imputation test entries.

    Args:
        frame: the weather frame from :func:`load_weather`.
        seed: seed of the masks.
        days: keep only the last this many days (None: all).
        validation: fraction of the entries left after the test mask to hide as well, for
            :func:`tune` (0 in a normal run).

    Returns:
        The arrays, with three 30-day gaps (of three different features, at random
        non-overlapping places) and 20% of the other observed entries hidden.
    """
    if days is not None:
        frame = frame.iloc[-days:]
    truth = frame[list(FEATURES)].to_numpy(dtype=np.float64)  # (T + H, D)
    dates = frame["date"].to_numpy()
    hist = truth[:-HORIZON]
    T, D = hist.shape
    rng = np.random.default_rng(seed)
    gaps = np.zeros((T, D), dtype=bool)
    features = rng.choice(D, size=NUM_GAPS, replace=False)
    slots = T // NUM_GAPS
    for k, d in enumerate(features):
        lo = k * slots + 5
        hi = (k + 1) * slots - GAP_DAYS - 5
        start = int(rng.integers(lo, max(lo + 1, hi)))
        gaps[start : start + GAP_DAYS, d] = True
    rest = np.where(gaps, np.nan, hist)
    rest_hidden, points_mask = hide_points(rest[None], POINT_RATE, rng)
    points = points_mask[0]
    masked = rest_hidden[0]
    val = np.zeros_like(points)
    if validation > 0:
        masked_v, val_mask = hide_points(masked[None], validation, rng)
        masked, val = masked_v[0], val_mask[0]
    return DemoData(dates, truth, masked, points, gaps, val, HORIZON)


def windows(
    values: np.ndarray, times: np.ndarray, window: int, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cut one series into overlapping windows (the last one ends at the series' end).

    Every window is kept, also one with nothing observed (see
    :func:`gpvae.data.windows.cut_windows`).

    Args:
        values: (T, D) the series, NaN for missing.
        times: (T,) its times.
        window: window length in steps.
        stride: steps between window starts.

    Returns:
        ``(X, t)``: (n, window, D) windows and (n, window) their times.
    """
    X, t = cut_windows([values], [times], window, stride, skip_empty=False)
    return np.stack(X), np.stack(t)


def to_model_units(X: np.ndarray) -> np.ndarray:
    """Precipitation (feature 0) -> log1p(precipitation); the other features unchanged.

    Daily rain is zero on most days and heavy-tailed on the others: on the log1p scale a
    Gaussian likelihood fits it far better, and the back-transformed predictive mean is
    close to the predictive median, the best point forecast for MAE.

    Args:
        X: (..., D) values in original units, NaN for missing.

    Returns:
        A transformed copy.
    """
    out = np.array(X, dtype=np.float64, copy=True)
    out[..., 0] = np.log1p(np.maximum(out[..., 0], 0.0))
    return out


def from_model_units(Y: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_model_units` (precipitation clipped at 0, as it is physically).

    Quantiles map exactly through the monotone inverse, so intervals keep their level.
    """
    out = np.array(Y, dtype=np.float64, copy=True)
    out[..., 0] = np.maximum(np.expm1(out[..., 0]), 0.0)
    return out
