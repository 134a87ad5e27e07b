"""BeijingAir loader, windowing and chronological split."""

from __future__ import annotations

import csv
import functools
import time
from pathlib import Path

import numpy as np
import pytest

from gpvae.datasets import (
    BEIJING_FEATURES,
    TimeSeriesData,
    chronological_split,
    load_beijing_air,
    make_windows,
)
from gpvae.errors import GPVAEError, ShapeError, ValidationError


@functools.lru_cache(maxsize=2)
def _load(path: str) -> tuple[TimeSeriesData, float]:
    start = time.perf_counter()
    data = load_beijing_air(path)
    return data, time.perf_counter() - start


@pytest.fixture
def beijing(data_dir: Path) -> TimeSeriesData:
    return _load(str(data_dir))[0]


def _csv_rows(data_dir: Path, station: str) -> list[dict[str, str]]:
    path = data_dir / "beijing_air" / f"PRSA_Data_{station}_20130301-20170228.csv"
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_shape_features_times(beijing: TimeSeriesData) -> None:
    assert isinstance(beijing.X, np.ndarray)
    assert beijing.X.shape == (1, 35064, 132)
    assert beijing.features[:2] == ["Aotizhongxin/PM2.5", "Aotizhongxin/PM10"]
    assert beijing.features[-1] == "Wanshouxigong/WSPM"
    assert len(beijing.info["stations"]) == 12
    np.testing.assert_array_equal(beijing.times, np.arange(35064.0)[None])
    stamps = beijing.info["datetimes"]
    assert str(stamps[0]) == "2013-03-01T00"
    assert str(stamps[-1]) == "2017-02-28T23"
    assert beijing.info["coordinates"]["Dongsi"] == (39.929, 116.417)


def test_missing_rate_about_two_percent(beijing: TimeSeriesData) -> None:
    rate = beijing.missing_rate
    print(f"BeijingAir missing rate: {rate:.4f}")
    assert 0.005 < rate < 0.03


@pytest.mark.parametrize(
    ("station", "row", "feature"),
    [("Aotizhongxin", 0, "PM2.5"), ("Aotizhongxin", 0, "TEMP"), ("Wanliu", 20000, "DEWP")],
)
def test_known_values_from_csv(
    data_dir: Path, beijing: TimeSeriesData, station: str, row: int, feature: str
) -> None:
    record = _csv_rows(data_dir, station)[row]
    expected = float("nan") if record[feature] == "NA" else float(record[feature])
    assert isinstance(beijing.X, np.ndarray)
    column = beijing.features.index(f"{station}/{feature}")
    np.testing.assert_equal(beijing.X[0, row, column], expected)


def test_missing_entries_match_csv_na(data_dir: Path, beijing: TimeSeriesData) -> None:
    rows = _csv_rows(data_dir, "Dongsi")
    assert isinstance(beijing.X, np.ndarray)
    for feature in BEIJING_FEATURES:
        column = beijing.features.index(f"Dongsi/{feature}")
        expected = np.array([r[feature] == "NA" for r in rows])
        np.testing.assert_array_equal(np.isnan(beijing.X[0, :, column]), expected)


def test_windows_and_split_on_real_data(beijing: TimeSeriesData) -> None:
    assert isinstance(beijing.X, np.ndarray)
    assert isinstance(beijing.times, np.ndarray)
    X_w, t_w = make_windows(beijing.X, beijing.times, window=24, stride=24)
    assert X_w.shape == (1461, 24, 132)
    np.testing.assert_array_equal(X_w[1], beijing.X[0, 24:48])
    np.testing.assert_array_equal(t_w[1], np.arange(24.0, 48.0))
    train, val, test = chronological_split(len(X_w))
    assert (len(train), len(val), len(test)) == (876, 292, 293)


def test_loader_timing_reported(data_dir: Path) -> None:
    _, seconds = _load(str(data_dir))
    print(f"load_beijing_air: {seconds:.2f} s")
    assert seconds < 60


def test_make_windows_synthetic() -> None:
    X = np.arange(2 * 10 * 3, dtype=float).reshape(2, 10, 3)
    X_w, t_w = make_windows(X, window=4, stride=3)
    assert X_w.shape == (6, 4, 3)  # starts 0, 3, 6 per series; the tail 9 is dropped
    np.testing.assert_array_equal(X_w[4], X[1, 3:7])
    np.testing.assert_array_equal(t_w[2], [6.0, 7.0, 8.0, 9.0])
    X_w2, _ = make_windows(X[0], window=5, stride=5)  # a 2-D array is one series
    assert X_w2.shape == (2, 5, 3)
    X_w[0, 0, 0] = -1.0
    assert X[0, 0, 0] == 0.0  # windows are copies


def test_make_windows_bad_arguments() -> None:
    with pytest.raises(ShapeError, match=r"^X:"):
        make_windows(np.zeros(5))
    with pytest.raises(ValidationError, match=r"^window:"):
        make_windows(np.zeros((1, 5, 2)), window=0)
    with pytest.raises(ShapeError, match=r"^times:"):
        make_windows(np.zeros((1, 5, 2)), times=np.zeros(4))


def test_chronological_split() -> None:
    parts = chronological_split(10, (0.6, 0.2, 0.2))
    np.testing.assert_array_equal(parts[0], np.arange(6))
    np.testing.assert_array_equal(parts[1], [6, 7])
    np.testing.assert_array_equal(parts[2], [8, 9])
    with pytest.raises(GPVAEError, match=r"^fractions:"):
        chronological_split(10, (0.6, 0.6))
