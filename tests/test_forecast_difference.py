"""A model of the increments (``GPVAE(difference=True)``, gpvae.estimator.differencing): the
increments and their cumulation against hand-computed and independently drawn references, a
trending series forecast past its training range, the errors, saving and the CLI flags."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpvae import GPVAE
from gpvae.app.cli import main
from gpvae.data import to_series_set
from gpvae.errors import GPVAEError, ValidationError
from gpvae.estimator.differencing import difference_mask, increments, integrate, last_levels

SMALL = {"latent_dim": 2, "hidden": (16,), "batch_size": 16, "progress": False, "lr": 1e-2}


def _trending(T: int, seed: int) -> np.ndarray:
    """Two features that rise steadily (a slope of 0.3 and 0.2 a step) with noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(T, dtype=float)
    a = 0.3 * t + 0.3 * rng.standard_normal(T)
    b = 0.2 * t + 0.4 * np.sin(2 * np.pi * t / 12) + 0.3 * rng.standard_normal(T)
    return np.stack([a, b], axis=1)


def _monthly_csv(tmp_path: Path, T: int, seed: int) -> Path:
    """A CSV of two trending features ``a``, ``b`` at month starts (column ``month``)."""
    frame = pd.DataFrame(_trending(T, seed), columns=["a", "b"])
    frame.insert(0, "month", pd.date_range("2010-01-01", periods=T, freq="MS"))
    data = tmp_path / "trend.csv"
    frame.to_csv(data, index=False)
    return data


def test_increments_levels_and_integration_by_hand() -> None:
    v = np.array([[1.0, 5.0], [3.0, np.nan], [6.0, 4.0], [10.0, np.nan]])
    ss = to_series_set([v], [np.array([0.0, 1.0, 2.0, 3.0])])
    inc = increments(ss)
    np.testing.assert_array_equal(inc.values[0], [[2.0, np.nan], [3.0, np.nan], [4.0, np.nan]])
    np.testing.assert_array_equal(inc.times[0], [1.0, 2.0, 3.0])
    assert inc.feature_names == ss.feature_names
    level, gap = last_levels(ss)
    np.testing.assert_array_equal(level, [[10.0, 4.0]])
    np.testing.assert_array_equal(gap, [[0, 1]])
    steps = np.array([[[1.0, -1.0], [2.0, 0.5], [0.0, 0.5]]])  # (B=1, H=3, D=2)
    np.testing.assert_allclose(integrate(level, steps)[0], [[11.0, 3.0], [13.0, 3.5], [13.0, 4.0]])
    with pytest.raises(ValidationError, match="X_val: expected at least 2 time steps"):
        increments(to_series_set([v[:1]], allow_single_step=True), "X_val")
    # a long frame's series is named by its id (it was "series 1", its position)
    long = pd.DataFrame({"id": ["B", "B", "A"], "time": [0.0, 1.0, 0.0], "x": [1.0, 2.0, 3.0]})
    ids = to_series_set(long, id_col="id", time_col="time", allow_single_step=True)
    with pytest.raises(ValidationError, match=r"found 1 in series 'A'$"):
        increments(ids)


@pytest.fixture(scope="module")
def fitted() -> tuple[GPVAE, np.ndarray]:
    X = _trending(132, seed=0)
    est = GPVAE(kernel="trend+matern32", window=24, epochs=30, seed=0, difference=True, **SMALL)
    est.fit([X[:120]], X_val=None)
    return est, X


def test_draws_are_the_cumulated_increment_draws(fitted: tuple[GPVAE, np.ndarray]) -> None:
    """Each forecast path is the last level plus the cumulated sum of the draws the same model
    gives when asked, as a model of levels, for the forecast of the increments series."""
    est, X = fitted
    hist = X[:120].copy()
    hist[-3:, 1] = np.nan  # feature 1 ends in a gap of 3 steps
    fc = est.forecast([hist], horizon=12, num_samples=40, return_samples=True)
    inc = np.diff(hist, axis=0)
    est.difference = False  # the same weights, read as a model of the increments
    try:
        raw = est.forecast([inc], horizon=12, num_samples=40, return_samples=True)
        # the gap's increments: imputed with as many draws as the forecast's
        filled = est.impute([inc], [np.arange(1.0, 120.0)], num_samples=40).mean[0]
    finally:
        est.difference = True
    start = np.array([hist[-1, 0], hist[-4, 1] + filled[-3:, 1].sum()])
    np.testing.assert_allclose(fc.samples[:, 0], start + np.cumsum(raw.samples[:, 0], axis=1))
    np.testing.assert_allclose(fc.mean[0], start + np.cumsum(raw.mean[0], axis=0))
    assert ((fc.lower <= fc.mean) & (fc.mean <= fc.upper)).all()


def test_a_trend_is_kept_past_the_training_range(fitted: tuple[GPVAE, np.ndarray]) -> None:
    """Fitted on levels, the forecast falls back into the training range; fitted on the
    increments it keeps the slope, and beats persistence and the model of levels."""
    est, X = fitted
    hist, future = [X[:120]], X[120:]
    levels = GPVAE(kernel="trend+matern32", window=24, epochs=30, seed=0, **SMALL).fit(hist)
    mae_levels = np.abs(levels.forecast(hist, horizon=12, num_samples=40).mean[0] - future).mean()
    mae = np.abs(est.forecast(hist, horizon=12, num_samples=40).mean[0] - future).mean()
    persistence = np.abs(X[119] - future).mean()
    assert mae < 0.6 * persistence, (mae, persistence, mae_levels)
    assert mae < 0.5 * mae_levels, (mae, persistence, mae_levels)


def test_future_times_that_skip_steps_add_up_every_step(
    fitted: tuple[GPVAE, np.ndarray],
) -> None:
    """Future times 2, 4 and 6 steps ahead are the levels of the 6-step forecast there (the
    increments of the steps between them are added too; they were added one per time); times
    not after the last one, or two in one step, are refused naming future_times."""
    est, X = fitted
    hist = [X[:120]]  # times 0..119
    full = est.forecast(hist, horizon=6, num_samples=20, return_samples=True)
    some = est.forecast(
        hist, future_times=[121.0, 123.0, 125.0], num_samples=20, return_samples=True
    )
    np.testing.assert_array_equal(some.times[0], [121.0, 123.0, 125.0])
    for name in ("mean", "lower", "upper"):
        np.testing.assert_allclose(getattr(some, name)[0], getattr(full, name)[0, 1::2])
    np.testing.assert_allclose(some.samples[:, 0], full.samples[:, 0, 1::2])
    with pytest.raises(ValidationError, match=r"^future_times: expected times after .*found 119"):
        est.forecast(hist, future_times=[119.0, 121.0], num_samples=20)
    with pytest.raises(ValidationError, match=r"^future_times: expected at most one time per step"):
        est.forecast(hist, future_times=[121.9, 122.1], num_samples=20)


def test_only_forecasts_and_saved_with_the_model(
    fitted: tuple[GPVAE, np.ndarray], tmp_path: Path
) -> None:
    est, X = fitted
    for call in (
        lambda: est.impute([X]),
        lambda: est.latent([X]),
        lambda: est.sample(np.arange(5.0)),
        lambda: est.anomaly_scores([X]),
    ):
        with pytest.raises(ValidationError, match=r"difference: .* fitted on their increments"):
            call()
    with pytest.raises(GPVAEError, match="difference"):
        GPVAE(difference=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="X: expected at least 2 time steps"):
        GPVAE(difference=True, **SMALL).fit([X[:1]])
    est.save(tmp_path / "m")
    back = GPVAE.load(tmp_path / "m")
    assert back.difference
    assert back.get_config()["difference"] is True
    a = est.forecast([X[:120]], horizon=6, num_samples=20).mean
    np.testing.assert_allclose(back.forecast([X[:120]], horizon=6, num_samples=20).mean, a)


def test_validation_data_are_differenced_at_their_own_times() -> None:
    """X_val and X_val_target (at times_val) become increments like X: the validation score
    is the imputation error of the hidden increments (finite)."""
    X = _trending(60, seed=4)
    hidden = X.copy()
    hidden[::7, 0] = np.nan
    t_val = np.arange(100.0, 160.0)
    est = GPVAE(kernel="trend", epochs=2, seed=0, difference=True, **SMALL)
    est.fit([X], X_val=[hidden], times_val=[t_val], X_val_target=[X])
    assert np.isfinite([h["val_score"] for h in est.history_]).all()


def test_cli_fit_with_difference_and_blend_then_forecast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _monthly_csv(tmp_path, 100, seed=3)
    model = tmp_path / "model"
    args = ["fit", str(data), "--time-col", "month", "-o", str(model), "--epochs", "2"]
    args += ["--latent-dim", "2", "--hidden", "16", "--quiet", "--kernel", "trend+matern32"]
    args += ["--forecast-horizon", "6", "--forecast-blend", "--difference"]
    assert main(args) == 0, capsys.readouterr()
    config = json.loads((model / "model" / "config.json").read_text())
    assert config["config"]["estimator"]["difference"] is True
    assert config["config"]["estimator"]["forecast_blend"] is True
    out = tmp_path / "fc.csv"
    fargs = ["forecast", str(model), str(data), "--horizon", "6", "-o", str(out)]
    assert main(fargs) == 0, capsys.readouterr()
    fc = pd.read_csv(out)
    assert len(fc) == 6
    assert fc["a"].notna().all()
    capsys.readouterr()
    iargs = ["impute", str(model), str(data), "-o", str(tmp_path / "imp.csv")]
    assert main(iargs) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "difference" in err[0]


def test_named_features_only_are_differenced_by_hand() -> None:
    v = np.array([[1.0, 5.0, 7.0], [3.0, np.nan, 8.0], [6.0, 4.0, 6.0], [10.0, 2.0, np.nan]])
    frame = pd.DataFrame(v, columns=["a", "rate", "c"])
    ss = to_series_set(frame)
    inc = increments(ss, which=("a", 2))  # a name and a column position
    np.testing.assert_array_equal(
        inc.values[0], [[2.0, np.nan, 1.0], [3.0, 4.0, -2.0], [4.0, 2.0, np.nan]]
    )
    assert difference_mask(("c",), ss.feature_names).tolist() == [False, False, True]
    assert difference_mask(True, ss.feature_names).tolist() == [True] * 3
    level = np.array([[10.0, 2.0, 6.0]])
    steps = np.array([[[1.0, 3.0, -1.0], [2.0, 3.5, 0.5]]])  # rate: levels already
    out = integrate(level, steps, np.array([True, False, True]))
    np.testing.assert_allclose(out[0], [[11.0, 3.0, 5.0], [13.0, 3.5, 5.5]])
    with pytest.raises(ValidationError, match=r"difference: expected feature names among"):
        increments(ss, which=("nope",))
    with pytest.raises(ValidationError, match=r"difference: expected column positions in 0..2"):
        increments(ss, which=(3,))
    with pytest.raises(GPVAEError, match="difference: expected True, False or a list"):
        GPVAE(difference=[1.5])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="difference: expected each feature named once"):
        GPVAE(difference=["a", "a"])
    with pytest.raises(ValidationError, match=r"named once, found 'a' \(column 0\) twice"):
        difference_mask(("a", 0), ss.feature_names)  # by its name and by its position


def test_a_model_of_some_increments_forecasts_levels_and_steps() -> None:
    """Differencing the trending feature only: its forecast cumulates the model's steps
    from the last level, the stationary feature's forecast is the model's level itself (the
    same weights read as a model of the mixed series give both), and the choice is saved."""
    rng = np.random.default_rng(5)
    X = _trending(132, seed=1)
    X[:, 1] = 0.5 * np.sin(np.arange(132) * 2 * np.pi / 12) + 0.1 * rng.standard_normal(132)
    frame = pd.DataFrame(X[:120], columns=["count", "rate"])
    est = GPVAE(
        kernel="trend+matern32", window=24, epochs=20, seed=0, difference=["count"], **SMALL
    )
    est.fit(frame)
    fc = est.forecast(frame, horizon=12, num_samples=30, return_samples=True)
    mixed = frame.iloc[1:].copy()
    mixed["count"] = np.diff(frame["count"].to_numpy())
    est.difference = False  # the same weights, read as a model of the mixed series
    try:
        raw = est.forecast(mixed, horizon=12, num_samples=30, return_samples=True)
    finally:
        est.difference = ("count",)
    start = frame["count"].iloc[-1]
    np.testing.assert_allclose(
        fc.samples[:, 0, :, 0], start + np.cumsum(raw.samples[:, 0, :, 0], 1)
    )
    np.testing.assert_allclose(fc.samples[:, 0, :, 1], raw.samples[:, 0, :, 1])
    with pytest.raises(ValidationError, match=r"difference: .* fitted on their increments"):
        est.impute(frame)
    assert est.get_config()["difference"] == ("count",)
    json.dumps(est.get_config())


def test_cli_difference_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _monthly_csv(tmp_path, 60, seed=2)
    model = tmp_path / "model"
    args = ["fit", str(data), "--time-col", "month", "-o", str(model), "--epochs", "1"]
    args += ["--latent-dim", "2", "--hidden", "16", "--quiet", "--difference-columns", "b"]
    assert main(args) == 0, capsys.readouterr()
    config = json.loads((model / "model" / "config.json").read_text())
    assert config["config"]["estimator"]["difference"] == ["b"]
    out = tmp_path / "fc.csv"
    assert main(["forecast", str(model), str(data), "--horizon", "3", "-o", str(out)]) == 0
    assert pd.read_csv(out)[["a", "b"]].notna().all().all()
    capsys.readouterr()
    bad = [*args[:-1], "nope"]
    bad[bad.index(str(model))] = str(tmp_path / "other")
    assert main(bad) != 0
    assert "difference" in capsys.readouterr().err


def _trend_stationary(n: int, T: int, seed: int) -> np.ndarray:
    """(n, T, 2): one Matern-3/2 GP path per series (lengthscale 10 steps), mixed into two
    features, around a line rising 0.05 a step: stationary wiggles about a trend, whose
    increments are noise-like, not a random walk's steps with drift."""
    rng = np.random.default_rng(seed)
    t = np.arange(T, dtype=float)
    r = np.sqrt(3.0) * np.abs(t[:, None] - t[None, :]) / 10.0
    K = (1 + r) * np.exp(-r) + 1e-8 * np.eye(T)
    z = (np.linalg.cholesky(K) @ rng.standard_normal((T, n))).T  # (n, T)
    y = z[..., None] * rng.standard_normal(2) + 0.05 * rng.standard_normal((n, T, 2))
    return y + 0.05 * t[None, :, None]


def _reach_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "latent paths leave" in str(w.message)]


_REACH = {"latent_dim": 2, "batch_size": 4, "epochs": 100, "patience": None, "progress": False}


@pytest.fixture(scope="module")
def reach_fits() -> tuple[np.ndarray, GPVAE, GPVAE]:
    """The trend-stationary series, and models of their increments with kernel="trend"
    (whose latents collapse) and "matern32" (whose do not)."""
    X = _trend_stationary(8, 200, seed=0)
    collapsed = GPVAE(kernel="trend", difference=True, seed=0, **_REACH).fit(X)
    well = GPVAE(kernel="matern32", difference=True, seed=0, **_REACH).fit(X)
    return X, collapsed, well


def test_latents_that_leave_the_trained_range_warn_once(
    reach_fits: tuple[np.ndarray, GPVAE, GPVAE],
) -> None:
    """kernel="trend" on the increments of a trend-stationary series: the posterior latents
    collapse to a near-constant away from the prior mean (posterior sd small), and 40 steps
    ahead most draws relax towards the prior, outside the range the histories' posteriors
    cover (the decoder never saw them); the same data with matern32 stay in range."""
    X, collapsed, well = reach_fits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        collapsed.forecast(X, horizon=40, num_samples=50)  # two batches of 4 series
    said = _reach_warnings(caught)
    assert len(said) == 1, said  # once per call, not per batch
    assert caught[[str(w.message) for w in caught].index(said[0])].filename == __file__
    text = said[0]
    assert text.startswith("kernel: the forecast's latent paths leave the range")
    assert re.search(r"channel \d: the histories' posteriors cover \[\S+, \S+\], \d+% of", text)
    assert "'matern32' or 'trend+matern32'" in text
    assert "backtest" in text
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        collapsed.forecast(X, horizon=1, num_samples=50)  # one step ahead: still in range
    assert _reach_warnings(caught) == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        well.forecast(X, horizon=40, num_samples=50)
    assert _reach_warnings(caught) == []


def test_calibrations_whose_latents_leave_the_trained_range_warn_once(
    reach_fits: tuple[np.ndarray, GPVAE, GPVAE],
) -> None:
    """calibrate_forecast and fit(..., forecast_horizon=H) fit the interval factors on
    rolling-origin forecasts inside X (3 origins of each of 8 series here); on the collapsed
    model their latents leave the range as forecast's do, so each call warns once, at the
    caller's line, in forecast's words and saying the factors come from such forecasts;
    matern32's calibration stays quiet."""
    X, collapsed, well = reach_fits
    calls = {
        "calibrate_forecast": lambda: collapsed.calibrate_forecast(X, horizon=40),
        "fit": lambda: GPVAE(
            kernel="trend", difference=True, seed=0, forecast_horizon=40, **_REACH
        ).fit(X),
    }
    for name, call in calls.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        said = _reach_warnings(caught)
        assert len(said) == 1, (name, said)  # once per call, not per series or batch
        assert caught[[str(w.message) for w in caught].index(said[0])].filename == __file__
        text = said[0]
        assert text.startswith("kernel: the forecast's latent paths leave the range"), name
        assert re.search(r"\(40 steps ahead, .*channel \d: the histories' posteriors cover", text)
        assert "forecast calibration's rolling-origin forecasts" in text
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        well.calibrate_forecast(X, horizon=40)
    assert _reach_warnings(caught) == []
