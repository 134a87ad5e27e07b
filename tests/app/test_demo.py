"""Tests of the demo: its data preparation (fast) and ``gpvae demo --quick`` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpvae.app.demo import (
    FEATURES,
    evaluate,
    from_model_units,
    load_weather,
    make_demo_data,
    to_model_units,
    windows,
)


@pytest.fixture(scope="module")
def weather() -> pd.DataFrame:
    return load_weather()


def test_weather_is_the_embedded_record(weather: pd.DataFrame) -> None:
    assert weather.shape == (1461, 5)
    assert list(weather.columns) == ["date", *FEATURES]
    assert weather["date"].iloc[0] == pd.Timestamp("2012-01-01")
    assert weather["date"].iloc[-1] == pd.Timestamp("2015-12-31")
    assert not weather[list(FEATURES)].isna().any().any()


def test_masks_are_disjoint_seeded_and_of_the_stated_size(weather: pd.DataFrame) -> None:
    data = make_demo_data(weather, seed=0)
    T = 1461 - 28
    assert data.history.shape == (T, 4)
    assert not (data.points & data.gaps).any()
    assert data.gaps.sum() == 3 * 30
    # three 30-day runs, one feature each, all different features
    assert sorted(int(c) for c in data.gaps.sum(axis=0) if c) == [30, 30, 30]
    # 20% of the entries left after the gaps
    assert data.points.sum() == round(0.2 * (T * 4 - 90))
    np.testing.assert_array_equal(np.isnan(data.history), data.hidden)
    observed = ~data.hidden
    np.testing.assert_array_equal(data.history[observed], data.truth[:T][observed])
    again = make_demo_data(weather, seed=0)
    np.testing.assert_array_equal(again.points, data.points)
    other = make_demo_data(weather, seed=1)
    assert (other.points != data.points).any()


def test_validation_mask_is_outside_the_test_mask(weather: pd.DataFrame) -> None:
    data = make_demo_data(weather, seed=0, validation=0.1)
    assert data.validation.any()
    assert not (data.validation & data.hidden).any()
    assert np.isnan(data.history[data.validation]).all()


def test_windows_cover_the_series_and_end_flush() -> None:
    values = np.arange(100, dtype=float)[:, None] * np.ones((1, 2))
    X, t = windows(values, np.arange(100, dtype=float), window=30, stride=20)
    assert X.shape == (5, 30, 2)
    assert t[0, 0] == 0.0
    assert t[-1, -1] == 99.0
    np.testing.assert_array_equal(X[:, :, 0], t)


def test_precipitation_transform_round_trip() -> None:
    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(size=(50, 4))) * 10
    X[3, 0] = np.nan
    Y = to_model_units(X)
    np.testing.assert_allclose(Y[:, 0], np.log1p(X[:, 0]))
    np.testing.assert_array_equal(Y[:, 1:], X[:, 1:])
    np.testing.assert_allclose(from_model_units(Y), X, rtol=1e-12)
    assert from_model_units(np.full((1, 4), -3.0))[0, 0] == 0.0  # no negative rain


def test_evaluate_perfect_and_mean_predictions(weather: pd.DataFrame) -> None:
    data = make_demo_data(weather, seed=0)
    T = data.history.shape[0]
    perfect = data.truth[:T]
    metrics = evaluate(data, {"perfect": perfect}, data.hidden)
    assert all(v == 0.0 for v in metrics["perfect"].values())
    shifted = perfect + np.array([1.0, 2.0, 3.0, 4.0])
    m = evaluate(data, {"shifted": shifted}, data.hidden)["shifted"]
    assert [m[f] for f in FEATURES] == pytest.approx([1.0, 2.0, 3.0, 4.0])


def test_demo_quick_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "gpvae", "demo", "--quick", "--quiet", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for name in ["imputed.csv", "forecast.csv", "anomalies.csv", "metrics.json"]:
        assert (out / name).is_file(), name
    for name in ["imputation", "imputation_full", "forecast", "anomalies", "latents",
                 "kernels", "training"]:  # fmt: skip
        png = out / f"{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG", name
    assert "MAE on the" in proc.stdout
    for method in ["gpvae", "mean", "LOCF", "linear"]:
        assert f"\n{method}" in proc.stdout

    metrics = json.loads((out / "metrics.json").read_text())
    mae = metrics["imputation_mae"]
    assert set(mae) == {"gpvae", "mean", "LOCF", "linear"}
    # Even the quick model must clearly beat filling in the mean.
    assert mae["gpvae"]["all"] < 0.9 * mae["mean"]["all"]
    assert 0.0 <= metrics["interval_coverage_90"]["all"] <= 1.0
    # The forecast follows the season (periodic kernel, whole history): it beats carrying the
    # last value forward clearly, and the same days a year before.
    fc = metrics["forecast_mae_std_units"]
    assert fc["gpvae"] < 0.8 * fc["persistence"], fc
    assert fc["gpvae"] < fc["seasonal_naive"], fc

    imputed = pd.read_csv(out / "imputed.csv")
    assert len(imputed) == 730 - 28
    for f in FEATURES:
        assert imputed[[f, f"{f}_lower", f"{f}_upper"]].notna().all().all()
        assert (imputed[f"{f}_lower"] <= imputed[f] + 1e-9).all()
        assert (imputed[f] <= imputed[f"{f}_upper"] + 1e-9).all()
        seen = ~imputed[f"{f}_hidden"]
        np.testing.assert_array_equal(imputed.loc[seen, f], imputed.loc[seen, f"{f}_true"])
    forecast = pd.read_csv(out / "forecast.csv")
    assert len(forecast) == 28
    anomalies = pd.read_csv(out / "anomalies.csv")
    assert len(anomalies) == 730
    assert anomalies["anomaly"].sum() == metrics["anomalies_flagged"] > 0


def test_holdout_mask_hides_observed_points_and_blocks(weather: pd.DataFrame) -> None:
    """The entries held out for early stopping and calibration: about 10% of the observed
    history, single days and runs of 10-30 days, the same for the same seed; they are hidden
    in every training window (fit_model masks the history before cutting windows)."""
    from gpvae.app.demo.model import holdout_mask

    data = make_demo_data(weather, seed=0)
    observed = ~np.isnan(data.history)
    held = holdout_mask(data.history, seed=0)
    assert not (held & ~observed).any()
    assert 0.08 <= held.sum() / observed.sum() <= 0.12
    assert np.array_equal(held, holdout_mask(data.history, seed=0))
    # blocks: some runs of held-out days (broken only where the history is missing)
    longest = max(len(r) - 1 for col in held.T for r in np.split(col, np.flatnonzero(~col)))
    assert longest >= 8


def test_demo_out_under_a_file_is_refused_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gpvae.app.cli import main

    (tmp_path / "afile").write_text("x")
    assert main(["demo", "--quick", "--out", str(tmp_path / "afile" / "d")]) != 0
    assert "--out: expected a folder that can be created" in capsys.readouterr().err
