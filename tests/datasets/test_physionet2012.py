"""PhysioNet 2012 set-A loader: shapes, features, labels, hourly means against the raw files."""

from __future__ import annotations

import csv
import functools
import time
from pathlib import Path

import numpy as np
import pytest

from gpvae.datasets import (
    PHYSIONET_TIME_VARYING,
    TimeSeriesData,
    _paths,
    load_physionet2012,
    physionet_plausibility_filter,
    random_split,
    resolve_data_dir,
)
from gpvae.errors import GPVAEError, ValidationError


@functools.lru_cache(maxsize=4)
def _load(path: str, hourly: bool) -> tuple[TimeSeriesData, float]:
    start = time.perf_counter()
    data = load_physionet2012(path, hourly=hourly)
    return data, time.perf_counter() - start


@pytest.fixture
def hourly(data_dir: Path) -> TimeSeriesData:
    return _load(str(data_dir), True)[0]


@pytest.fixture
def ragged(data_dir: Path) -> TimeSeriesData:
    return _load(str(data_dir), False)[0]


def _raw_rows(data_dir: Path, record_id: int) -> list[tuple[int, str, float]]:
    """(minutes, parameter, value) rows of one stay, parsed with the csv module."""
    path = data_dir / "physionet2012" / "set-a" / f"{record_id}.txt"
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = []
        for row in reader:
            hh, mm = row["Time"].split(":")
            rows.append((int(hh) * 60 + int(mm), row["Parameter"], float(row["Value"])))
    return rows


def _expected_hour_mean(rows: list[tuple[int, str, float]], parameter: str, hour: int) -> float:
    """Mean of the raw values of ``parameter`` in ``hour`` (48:00 counted in hour 47)."""
    values = [
        v
        for m, p, v in rows
        if p == parameter and v != -1 and min(m // 60, 47) == hour and m <= 48 * 60
    ]
    return sum(values) / len(values) if values else float("nan")


def test_shapes_ids_features_and_times(hourly: TimeSeriesData) -> None:
    assert isinstance(hourly.X, np.ndarray)
    assert hourly.X.shape == (4000, 48, 37)
    assert hourly.features == list(PHYSIONET_TIME_VARYING)
    for dropped in ("RecordID", "Age", "Gender", "Height", "ICUType"):
        assert dropped not in hourly.features
    assert "Weight" in hourly.features
    np.testing.assert_array_equal(hourly.times, np.tile(np.arange(48.0), (4000, 1)))
    assert hourly.ids[0] == 132539
    assert np.all(np.diff(hourly.ids) > 0)
    assert hourly.static is not None
    assert hourly.static.shape == (4000, 4)
    assert hourly.static_features == ["Age", "Gender", "Height", "ICUType"]
    assert 0.75 < hourly.missing_rate < 0.85


def test_labels_554_deaths_aligned_with_outcomes(data_dir: Path, hourly: TimeSeriesData) -> None:
    assert hourly.labels is not None
    assert hourly.labels.shape == (4000,)
    assert int(hourly.labels.sum()) == 554
    with (data_dir / "physionet2012" / "Outcomes-a.txt").open(newline="") as handle:
        outcome = {int(r["RecordID"]): int(r["In-hospital_death"]) for r in csv.DictReader(handle)}
    expected = np.array([outcome[int(i)] for i in hourly.ids])
    np.testing.assert_array_equal(hourly.labels, expected)


@pytest.mark.parametrize(
    ("record_id", "parameter", "hour"),
    [
        (132539, "HR", 0),  # two rows (00:07, 00:37) averaged
        (132539, "Urine", 0),
        (132540, "DiasABP", 1),
        (132540, "Weight", 0),  # the 00:00 descriptor counts as a time-series value
        (132577, "RespRate", 47),  # includes the row at exactly 48:00
    ],
    ids=["hr-two-rows", "urine", "diasabp", "weight-descriptor", "row-at-48h"],
)
def test_hourly_value_is_mean_of_raw_rows(
    data_dir: Path, hourly: TimeSeriesData, record_id: int, parameter: str, hour: int
) -> None:
    rows = _raw_rows(data_dir, record_id)
    expected = _expected_hour_mean(rows, parameter, hour)
    assert not np.isnan(expected)
    i = int(np.flatnonzero(hourly.ids == record_id)[0])
    j = hourly.features.index(parameter)
    assert isinstance(hourly.X, np.ndarray)
    np.testing.assert_allclose(hourly.X[i, hour, j], expected, rtol=1e-12)


def test_whole_stay_matches_raw_file(data_dir: Path, hourly: TimeSeriesData) -> None:
    record_id = 132540
    rows = _raw_rows(data_dir, record_id)
    i = int(np.flatnonzero(hourly.ids == record_id)[0])
    assert isinstance(hourly.X, np.ndarray)
    for j, parameter in enumerate(hourly.features):
        expected = [_expected_hour_mean(rows, parameter, h) for h in range(48)]
        np.testing.assert_allclose(hourly.X[i, :, j], expected, rtol=1e-12, equal_nan=True)


def test_minus_one_becomes_nan(hourly: TimeSeriesData) -> None:
    # Stay 132539 records Height -1 and Weight -1 at 00:00 and no other weight in hour 0.
    i = int(np.flatnonzero(hourly.ids == 132539)[0])
    assert isinstance(hourly.X, np.ndarray)
    assert hourly.static is not None
    assert np.isnan(hourly.X[i, 0, hourly.features.index("Weight")])
    assert np.isnan(hourly.static[i, 2])  # Height
    np.testing.assert_array_equal(hourly.static[i, [0, 1, 3]], [54.0, 0.0, 4.0])
    assert not np.any(hourly.X == -1.0)


def test_raw_ph_outlier_kept_and_filter_removes_it(hourly: TimeSeriesData) -> None:
    assert isinstance(hourly.X, np.ndarray)
    ph = hourly.features.index("pH")
    assert np.nanmax(hourly.X[..., ph]) > 700  # pH 735 (7.35) is returned raw
    filtered = physionet_plausibility_filter(hourly)
    assert isinstance(filtered.X, np.ndarray)
    assert np.nanmax(filtered.X[..., ph]) <= 8.0
    assert filtered.info["plausibility_filter_removed"]["pH"] >= 1
    assert np.nanmax(hourly.X[..., ph]) > 700  # input untouched


def test_irregular_records(data_dir: Path, ragged: TimeSeriesData) -> None:
    assert isinstance(ragged.X, list)
    assert isinstance(ragged.times, list)
    assert len(ragged.X) == len(ragged.times) == 4000
    assert all(x.shape == (len(t), 37) for x, t in zip(ragged.X, ragged.times))
    assert all(np.all(np.diff(t) > 0) for t in ragged.times)
    # First stay: first measurement time 00:07; all rows there as in the file.
    rows = _raw_rows(data_dir, 132539)
    assert ragged.times[0][0] == pytest.approx(7 / 60)
    for _, parameter, value in (r for r in rows if r[0] == 7):
        assert ragged.X[0][0, ragged.features.index(parameter)] == value
    n_times = len({m for m, p, v in rows if p in PHYSIONET_TIME_VARYING and v != -1})
    assert len(ragged.times[0]) == n_times


def test_loader_timing_reported(data_dir: Path) -> None:
    _, seconds = _load(str(data_dir), True)
    print(f"load_physionet2012(hourly=True): {seconds:.2f} s")
    assert seconds < 60


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"^data_dir"):
        load_physionet2012(tmp_path / "does-not-exist")
    with pytest.raises(ValidationError, match=r"^data_dir"):
        load_physionet2012(tmp_path)  # exists but holds no set-a
    with pytest.raises(GPVAEError, match=r"^num_hours"):
        load_physionet2012(tmp_path, num_hours=0)


def test_random_split_partition_and_seed() -> None:
    train, val, test = random_split(4000, (0.64, 0.16, 0.20), seed=3)
    assert (len(train), len(val), len(test)) == (2560, 640, 800)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val, test])), np.arange(4000))
    again = random_split(4000, (0.64, 0.16, 0.20), seed=3)
    for a, b in zip((train, val, test), again):
        np.testing.assert_array_equal(a, b)
    other = random_split(4000, (0.64, 0.16, 0.20), seed=4)
    assert not np.array_equal(train, other[0])


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"n": -1}, "n"),
        ({"n": 10, "fractions": (0.5, 0.2)}, "fractions"),
        ({"n": 10, "fractions": (1.2, -0.2)}, "fractions"),
        ({"n": 10, "seed": 1.5}, "seed"),
    ],
    ids=["negative-n", "sum-not-one", "negative-fraction", "float-seed"],
)
def test_random_split_bad_arguments(kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(GPVAEError, match=f"^{argument}:"):
        random_split(**kwargs)  # type: ignore[arg-type]


# resolve_data_dir (shared by every loader; tested here, next to its first user).


def test_resolve_data_dir_argument_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_data_dir(tmp_path) == tmp_path.resolve()
    monkeypatch.setenv("GPVAE_DATA", str(tmp_path))
    assert resolve_data_dir() == tmp_path.resolve()
    monkeypatch.setenv("GPVAE_DATA", str(tmp_path / "missing"))
    with pytest.raises(ValidationError, match=r"^GPVAE_DATA:"):
        resolve_data_dir()


def test_resolve_data_dir_reports_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GPVAE_DATA", raising=False)
    nowhere = [tmp_path / "a" / "shared" / "data", tmp_path / "b" / "shared" / "data"]
    monkeypatch.setattr(_paths, "_default_candidates", lambda: nowhere)
    with pytest.raises(ValidationError, match=r"^data_dir:") as info:
        resolve_data_dir()
    assert str(nowhere[0]) in str(info.value)
    assert str(nowhere[1]) in str(info.value)


def test_loader_accepts_dataset_folder_itself(data_dir: Path) -> None:
    data = load_physionet2012(data_dir / "physionet2012", num_hours=2)
    assert isinstance(data.X, np.ndarray)
    assert data.X.shape == (4000, 2, 37)
