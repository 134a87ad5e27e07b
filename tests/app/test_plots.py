"""Tests of gpvae.app.plots: every function draws a readable figure and writes the file."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib import cbook
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from gpvae import GPVAE
from gpvae.app import plots
from gpvae.errors import ShapeError, ValidationError
from gpvae.estimator.backtest import BacktestResult
from gpvae.kernels import Matern32, Matern52, Periodic

T, D, H, L = 40, 3, 7, 2


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _check_png(path: Path, min_size: int = 5_000) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > min_size


def _labels(fig: Figure) -> tuple[list[str], list[str]]:
    """(y labels of every axes, legend texts of every axes and then of the figure)."""
    ylabels = [ax.get_ylabel() for ax in fig.axes]
    legends = [
        t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()
    ]
    legends += [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    return ylabels, legends


def test_imputation_panels_labels_and_file(tmp_path: Path, rng: np.random.Generator) -> None:
    t = np.arange(T, dtype=float)
    truth = rng.normal(size=(T, D))
    values = truth.copy()
    values[rng.random((T, D)) < 0.3] = np.nan
    mean = np.where(np.isnan(values), 0.0, values)
    hidden = np.where(np.isnan(values), truth, np.nan)
    fig = plots.plot_imputation(
        t,
        values,
        mean,
        mean - 1,
        mean + 1,
        truth=hidden,
        feature_names=["a", "b", "c"],
        save=tmp_path / "imp.png",
    )
    _check_png(tmp_path / "imp.png")
    ylabels, legends = _labels(fig)
    assert ylabels == ["a", "b", "c"]
    assert {"90% interval", "imputed mean", "observed", "hidden truth"} <= set(legends)
    assert fig.axes[-1].get_xlabel() == "time"
    assert fig.get_suptitle() == "Imputation"


def test_imputation_accepts_datetimes_and_one_feature(tmp_path: Path) -> None:
    dates = np.arange("2020-01-01", "2020-02-10", dtype="datetime64[D]").astype("datetime64[ns]")
    y = np.sin(np.arange(len(dates)) / 5.0)
    fig = plots.plot_imputation(dates, y, y, y - 0.1, y + 0.1, save=tmp_path / "d.pdf")
    assert (tmp_path / "d.pdf").read_bytes()[:4] == b"%PDF"
    assert len(fig.axes) == 1


def test_zone_aware_times_are_drawn_in_their_wall_clock() -> None:
    """The estimator returns zone-aware indexes for zone-aware input; every plot refused
    them ("expected numeric or datetime64 times, found object")."""
    import pandas as pd

    idx = pd.date_range("2021-03-28", periods=6, freq="h", tz="Europe/Berlin")  # DST at 2:00
    y = np.arange(6.0)
    wall = idx.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    for given in (idx, pd.Series(idx), np.asarray(idx)):
        fig = plots.plot_imputation(given, y, y, y - 1, y + 1)
        drawn = fig.axes[0].get_lines()[0].get_xdata()
        np.testing.assert_array_equal(drawn, wall)
    assert str(wall[2]) == "2021-03-28T03:00:00.000000000"  # 02:00 does not exist there
    fig = plots.plot_samples(idx, y[None, :, None])
    assert fig.axes[0].get_lines()[0].get_xdata()[0] == wall[0]
    mixed = np.array([pd.Timestamp("2021-01-01", tz="UTC"), pd.Timestamp("2021-01-02")])
    with pytest.raises(ValidationError, match=r"^times: expected datetimes all in one time zone"):
        plots.plot_anomalies(mixed, np.zeros(2), 1.0)


def test_imputation_rejects_mismatched_shapes() -> None:
    t = np.arange(T, dtype=float)
    y = np.zeros((T, D))
    with pytest.raises(ShapeError, match="lower"):
        plots.plot_imputation(t, y, y, np.zeros((T, D + 1)), y)
    with pytest.raises(ShapeError, match="values"):
        plots.plot_imputation(t[:-1], y, y, y, y)
    with pytest.raises(ShapeError, match="feature_names"):
        plots.plot_imputation(t, y, y, y, y, feature_names=["only one"])


def test_forecast_fan_chart_nested_bands(tmp_path: Path, rng: np.random.Generator) -> None:
    th = np.arange(T, dtype=float)
    tf = np.arange(T, T + H, dtype=float)
    hist = rng.normal(size=(T, D))
    mean = np.zeros((H, D))
    widths = np.linspace(0.5, 2.0, H)[:, None]
    lower = np.stack([mean - 2 * widths, mean - widths])
    upper = np.stack([mean + 2 * widths, mean + widths])
    fig = plots.plot_forecast(
        th,
        hist,
        tf,
        mean,
        lower,
        upper,
        levels=[0.9, 0.5],
        truth=rng.normal(size=(H, D)),
        save=tmp_path / "fc.png",
    )
    _check_png(tmp_path / "fc.png")
    _, legends = _labels(fig)
    assert {"history", "90% interval", "50% interval", "forecast mean", "truth"} <= set(legends)
    with pytest.raises(ShapeError, match="levels"):
        plots.plot_forecast(th, hist, tf, mean, lower, upper, levels=[0.9])


def test_forecast_history_breaks_at_gaps_and_takes_one_feature_as_1d() -> None:
    """The history's NaNs were dropped before drawing one connected line, so a missing
    stretch looked like observed data on a straight line; 1-D lower / upper were refused
    although a 1-D mean was taken."""
    t = np.arange(30.0)
    y = np.sin(t / 4.0)
    y[10:20] = np.nan
    tf = 30 + np.arange(3.0)
    fig = plots.plot_forecast(t, y, tf, np.zeros(3), -np.ones(3), np.ones(3))
    line = next(ln for ln in fig.axes[0].get_lines() if ln.get_label() == "history")
    np.testing.assert_array_equal(line.get_xdata(), t)
    assert np.isnan(line.get_ydata()[10:20]).all()  # matplotlib breaks the line at NaN
    band = fig.axes[0].collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == -1.0
    assert band[:, 1].max() == 1.0
    with pytest.raises(ShapeError, match="lower"):
        plots.plot_forecast(t, y, tf, np.zeros((3, 1)), -np.ones(3), np.ones(3))


def test_anomalies_marks_flagged_steps(tmp_path: Path, rng: np.random.Generator) -> None:
    t = np.arange(T, dtype=float)
    scores = rng.normal(size=T)
    scores[[5, 17]] = 10.0
    scores[3] = np.nan  # a step with nothing observed
    fig = plots.plot_anomalies(
        t, scores, 5.0, values=rng.normal(size=(T, D)), save=tmp_path / "an.png"
    )
    _check_png(tmp_path / "an.png")
    assert len(fig.axes) == 1 + D
    _, legends = _labels(fig)
    assert "flagged (2)" in legends
    assert fig.axes[0].get_ylabel() == "anomaly score"


def test_anomalies_marks_the_given_flags_without_a_threshold(rng: np.random.Generator) -> None:
    t = np.arange(T, dtype=float)
    scores = rng.normal(size=T)
    flagged = np.zeros(T, dtype=bool)
    flagged[[2, 9, 10]] = True
    fig = plots.plot_anomalies(t, scores, None, flagged=flagged)
    _, legends = _labels(fig)
    assert legends == ["score", "flagged (3)"]
    assert fig.axes[0].get_ylabel() == "anomaly score"
    # another curve (gpvae detect's alarm): the axis names it as the legend does
    fig = plots.plot_anomalies(t, scores, None, flagged=flagged, score_label="alarm")
    assert _labels(fig)[1] == ["alarm", "flagged (3)"]
    assert fig.axes[0].get_ylabel() == "alarm"
    with pytest.raises(ValidationError, match="threshold"):
        plots.plot_anomalies(t, scores, None)
    with pytest.raises(ShapeError, match="flagged"):
        plots.plot_anomalies(t, scores, 1.0, flagged=flagged[1:])


def _bands(ax: object, color: str) -> list[tuple[float, float]]:
    """(left, right) of the shaded bands of one colour on an axes, in axis units."""
    from matplotlib.colors import to_rgb

    out = []
    for p in ax.patches:  # type: ignore[attr-defined]
        if to_rgb(p.get_facecolor()) == to_rgb(color):
            out.append((round(p.get_x(), 6), round(p.get_x() + p.get_width(), 6)))
    return out


def test_anomaly_bands_cover_every_step_of_their_run() -> None:
    """A band was drawn from the first to the last time of its run: a run of one step had
    no width (not drawn at all) and longer runs lost their last step."""
    t = np.array([0.0, 1.0, 2.0, 3.0, 5.0, 7.0, 8.0, 9.0])  # irregular: steps of 1 and 2
    scores = np.zeros(len(t))
    scores[[1, 4, 5, 7]] = 9.0  # flagged runs: [1], [4, 5] (times 5, 7), [7] at the end
    labels = np.zeros(len(t), dtype=bool)
    labels[[0, 1, 2]] = True  # labelled run at the start
    fig = plots.plot_anomalies(t, scores, 5.0, labels=labels)
    ax = fig.axes[0]
    assert _bands(ax, plots._FLAG) == [(0.5, 1.5), (4.0, 7.5), (8.5, 9.5)]
    assert _bands(ax, "orange") == [(-0.5, 2.5)]
    dates = np.arange("2021-01-01", "2021-01-09", dtype="datetime64[D]")
    fig = plots.plot_anomalies(dates, scores, 5.0)
    days = [(b - a) for a, b in _bands(fig.axes[0], plots._FLAG)]  # matplotlib dates: days
    assert days == [1.0, 2.0, 1.0]


def test_anomaly_bands_and_lines_stop_at_gaps_in_time() -> None:
    """Hourly data with 29 hours of rows missing: a red band ran over the whole gap from the
    flagged step before it to the one after it, and the score and data lines were drawn
    straight across it. Each side is its own band, covering its own steps, and the lines
    break there (as the forecast's history line does)."""
    t = np.array([0.0, 1, 2, 3, 4, 33, 34, 35, 36])
    scores = np.zeros(len(t))
    scores[[4, 5]] = 9.0  # the last step before the gap and the first after it
    labels = np.zeros(len(t), dtype=bool)
    labels[[3, 4, 5, 6]] = True
    values = np.arange(2 * len(t), dtype=float).reshape(-1, 2)
    fig = plots.plot_anomalies(t, scores, 5.0, labels=labels, values=values)
    assert _bands(fig.axes[0], plots._FLAG) == [(3.5, 4.5), (32.5, 33.5)]
    assert _bands(fig.axes[0], "orange") == [(2.5, 4.5), (32.5, 34.5)]
    for ax in fig.axes:  # score panel, then each feature: one NaN halfway through the gap
        x, y = ax.get_lines()[0].get_data()
        inside = (np.asarray(x) > 4) & (np.asarray(x) < 33)
        assert inside.sum() == 1
        assert np.isnan(np.asarray(y)[inside]).all()
    # the same on dates with a time zone: the gap is found in elapsed time
    hours = pd.DatetimeIndex(
        np.datetime64("2014-03-02T00:00") + (t * 60).astype("timedelta64[m]")
    ).tz_localize("UTC")
    fig = plots.plot_anomalies(hours, scores, 5.0)
    assert len(_bands(fig.axes[0], plots._FLAG)) == 2


def test_latents_and_negative_variance(tmp_path: Path, rng: np.random.Generator) -> None:
    t = np.arange(T, dtype=float)
    mean = rng.normal(size=(T, L))
    fig = plots.plot_latents(t, mean, np.full((T, L), 0.1), save=tmp_path / "lat.png")
    _check_png(tmp_path / "lat.png")
    assert [ax.get_ylabel() for ax in fig.axes] == ["z0", "z1"]
    with pytest.raises(ValidationError, match="var"):
        plots.plot_latents(t, mean, -np.ones((T, L)))


def test_kernels_curves_match_the_kernel(tmp_path: Path) -> None:
    kernels = [Matern32(lengthscale=2.0), Matern52(lengthscale=5.0, variance=2.0)]
    fig = plots.plot_kernels(kernels, max_lag=20.0, save=tmp_path / "k.png")
    _check_png(tmp_path / "k.png")
    cov_ax, corr_ax = fig.axes
    x, y = cov_ax.get_lines()[1].get_data()
    assert y[0] == pytest.approx(2.0, rel=1e-5)  # variance at lag 0
    assert np.all(np.diff(y) <= 1e-6)  # Matern decays monotonically
    assert corr_ax.get_lines()[0].get_ydata()[0] == pytest.approx(1.0)
    assert x[-1] == pytest.approx(20.0)
    _, legends = _labels(fig)
    assert legends == ["z0: Matern32 (ℓ=2)", "z1: Matern52 (ℓ=5)"]
    with pytest.raises(ValidationError, match="max_lag"):
        plots.plot_kernels(kernels, max_lag=0.0)


def _fitted_on(times: Any, kernel: str = "matern32+periodic") -> GPVAE:
    X = np.sin(np.arange(len(times))[None, :, None] / 5 + np.arange(2)) * np.ones((2, 1, 1))
    model = GPVAE(
        latent_dim=2,
        hidden=(8,),
        epochs=1,
        val_fraction=0,
        calibrate=False,
        seed=0,
        progress=False,
        kernel=kernel,
    )
    return model.fit(X, [times, times])


def test_kernels_of_a_fitted_model_are_labelled_in_the_datas_units() -> None:
    """The legend gave lengthscales and periods in training steps (ℓ=3 for 1.5 hours of
    half-hourly data) beside gpvae fit's kernel lines in hours: for a fitted GPVAE the lag
    axis and the legend are in the data's units (kernel_summary's values), named."""
    times = pd.date_range("2024-01-01", periods=120, freq="30min")
    model = _fitted_on(times)
    rows = model.kernel_summary()
    latent = rows[rows["source"] == "latent 1"].set_index(["term", "parameter"])["value"]
    fig = plots.plot_kernels(model)
    _, legends = _labels(fig)
    lengthscale, relative, period = (
        latent[("0", "lengthscale")],
        latent[("1", "lengthscale")],
        latent[("1", "period")],
    )
    steps = float(model.model_.prior.kernel_list[1].terms[0].lengthscale.detach())
    assert lengthscale == pytest.approx(steps / 2)  # a step is half an hour
    assert legends[1] == (
        f"z1: Matern32 (ℓ={lengthscale:.3g} hours) + HarmonicPeriodic (ℓ={relative:.3g}, "
        f"p={period:.3g} hours)"
    )
    assert fig.axes[0].get_xlabel() == "lag τ (hours)"
    x = fig.axes[0].get_lines()[1].get_xdata()
    assert x[-1] == pytest.approx(1.5 * period, rel=1e-5)  # the longest period, in hours
    fig = plots.plot_kernels(model, max_lag=10.0)  # in hours
    assert fig.axes[0].get_lines()[0].get_xdata()[-1] == pytest.approx(10.0)


def test_kernels_of_a_fitted_model_reaching_48_hours_are_in_days() -> None:
    # as gpvae fit's kernel lines give 48 hours and more also in days
    model = _fitted_on(pd.date_range("2024-01-01", periods=60, freq="D"), kernel="matern32")
    rows = model.kernel_summary()
    hours = rows[rows["parameter"] == "lengthscale"]["value"].tolist()  # latent 0 and 1's
    fig = plots.plot_kernels(model)
    _, legends = _labels(fig)
    assert legends == [f"z{j}: Matern32 (ℓ={h / 24:.3g} days)" for j, h in enumerate(hours)]
    assert fig.axes[1].get_xlabel() == "lag τ (days)"
    x = fig.axes[0].get_lines()[0].get_xdata()
    assert x[-1] == pytest.approx(3 * max(hours) / 24, rel=1e-5)  # 3 lengthscales, in days
    fig = plots.plot_kernels(model, max_lag=24.0)  # one day: drawn in hours
    assert fig.axes[0].get_xlabel() == "lag τ (hours)"
    assert _labels(fig)[1][0] == f"z0: Matern32 (ℓ={hours[0]:.3g} hours)"


@pytest.mark.parametrize("channels", [1, 8])
def test_kernel_legend_lies_in_the_figure_below_the_panels(channels: int) -> None:
    """The legend sat inside the covariance panel: 8 channels of sums of kernels, in 2
    columns, ran out of the figure on the left and over both panels' curves."""
    kernels = [
        Matern32(lengthscale=1.0 + j) + Periodic(lengthscale=1.03, period=48.0)
        for j in range(channels)
    ]
    fig = plots.plot_kernels(kernels)
    fig.canvas.draw()
    (legend,) = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    box, whole = legend.get_window_extent(), fig.bbox
    assert whole.x0 <= box.x0 < box.x1 <= whole.x1
    assert whole.y0 <= box.y0 < box.y1 <= whole.y1
    assert all(box.y1 <= ax.get_window_extent().y0 for ax in fig.axes)
    assert len(legend.get_texts()) == channels


def test_kernels_of_a_model_fitted_on_sites_or_an_ensemble_are_refused() -> None:
    times = pd.date_range("2024-01-01", periods=48, freq="h")
    df = pd.DataFrame(
        [
            {"site": f"s{i}", "time": t, "lat": 50 + i / 10, "lon": 8 + i / 7, "x": np.sin(k + i)}
            for i in range(4)
            for k, t in enumerate(times)
        ]
    )
    model = GPVAE(latent_dim=2, epochs=1, batch_size=4, hidden=(8,), progress=False, seed=0)
    model.fit(df, id="site", time="time", coords=["lat", "lon"], window=24)
    with pytest.raises(ValidationError, match=r"kernels: expected kernels or a GPVAE fitted on"):
        plots.plot_kernels(model)
    # an ensemble was "TypeError: 'GPVAEEnsemble' object is not iterable"
    from gpvae import GPVAEEnsemble

    with pytest.raises(ValidationError, match=r"found GPVAEEnsemble: draw a member's, e\.g\."):
        plots.plot_kernels(GPVAEEnsemble())  # type: ignore[arg-type]


def test_samples_and_history(tmp_path: Path, rng: np.random.Generator) -> None:
    t = np.arange(T, dtype=float)
    fig = plots.plot_samples(t, rng.normal(size=(7, T, D)), save=tmp_path / "s.png")
    _check_png(tmp_path / "s.png")
    assert len(fig.axes[0].get_lines()) == 5  # max_samples
    history = [{"loss": 2.0 / (e + 1), "val_score": 2.5 / (e + 1), "lr": 1e-3} for e in range(6)]
    fig = plots.plot_history(history, save=tmp_path / "h.png")
    _check_png(tmp_path / "h.png")
    assert len(fig.axes[0].get_lines()) == 2
    with pytest.raises(ValidationError, match="history"):
        plots.plot_history([{"epoch": 1.0}])


def test_plot_history_draws_one_curve_without_validation() -> None:
    """Without validation the loop records the training loss as val_score: plot_history
    drew it a second time, as a 'val_score' curve. The loop's ``validated`` marker says so;
    histories written before it say it by val_score equal to loss every epoch."""
    X = np.sin(np.arange(40)[None, :, None] / 5 + np.arange(2)) * np.ones((3, 1, 1))
    model = GPVAE(latent_dim=2, hidden=(8,), epochs=2, val_fraction=0, seed=0, progress=False)
    history = model.fit(X).history_
    assert [h["validated"] for h in history] == [0.0, 0.0]
    for rows in (history, [{k: v for k, v in h.items() if k != "validated"} for h in history]):
        ax = plots.plot_history(rows).axes[0]
        assert [line.get_label() for line in ax.get_lines()] == ["loss"]
        assert ax.get_ylabel() == "loss"
    validated = [{**h, "val_score": h["loss"] + 0.1, "validated": 1.0} for h in history]
    ax = plots.plot_history(validated).axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["loss", "val_score"]
    model = GPVAE(latent_dim=2, hidden=(8,), epochs=1, val_fraction=0.2, seed=0, progress=False)
    assert model.fit(X).history_[0]["validated"] == 1.0


def _backtest_result(n_org: int, H: int = 3, D: int = 2) -> BacktestResult:
    """A made-up backtest of one series of 60 steps: origins at 30, 32, ..."""
    T = 60
    origins = 30 + 2 * np.arange(n_org)[None]  # (1, n_org)
    times = (origins[..., None] + np.arange(H)).astype(np.float64)  # (1, n_org, H)
    mean = np.zeros((1, n_org, H, D))
    scores = {k: np.ones((1, n_org, H, D)) for k in ("scaled_error", "covered")}
    return BacktestResult(
        origins=origins,
        times=times,
        truth=mean + 0.5,
        mean=mean,
        lower=mean - 1,
        upper=mean + 1,
        quantiles=np.stack([mean - 0.5, mean + 0.5]),
        history=[np.zeros((T, D))],
        history_times=[np.arange(T, dtype=np.float64)],
        scale=np.ones((1, D)),
        scores=scores,
        feature_names=["a", "b"][:D],
    )


def test_too_many_panels_is_a_clear_error() -> None:
    """The error named no argument ("data") and, for the origins of a backtest, told the
    user to plot a subset of the features."""
    t = np.arange(5, dtype=float)
    y = np.zeros((5, 13))
    with pytest.raises(ValidationError, match=r"^values: expected at most 12 features .*13"):
        plots.plot_imputation(t, y, y, y, y)
    with pytest.raises(ValidationError, match=r"^values: expected at most 11 features .*12"):
        plots.plot_anomalies(t, np.zeros(5), 1.0, values=y[:, :12])
    with pytest.raises(ValidationError, match=r"^mean: expected at most 12 latent channels"):
        plots.plot_latents(t, y, y)
    result = _backtest_result(13)
    with pytest.raises(ValidationError, match=r"^result: expected at most 12 origins") as err:
        plots.plot_backtest(result)
    assert "features" not in str(err.value)
    assert "origins=[...]" in str(err.value)


def test_backtest_draws_the_chosen_origins() -> None:
    fig = plots.plot_backtest(_backtest_result(13), feature="b", origins=range(1, 13))
    assert [ax.get_ylabel() for ax in fig.axes] == [f"origin {k}" for k in range(2, 14)]
    assert "over 13 origins" in fig.get_suptitle()
    assert fig.axes[-1].get_xlabel() == "time"
    with pytest.raises(ValidationError, match=r"^origins: expected positions in 0..12"):
        plots.plot_backtest(_backtest_result(13), origins=[13])


def test_date_ticks_do_not_run_into_each_other() -> None:
    """Ten days of hours were labelled with full dates, a few pixels apart."""
    t = np.arange("2013-03-01", "2013-03-11", dtype="datetime64[h]")
    y = np.sin(np.arange(len(t)) / 10.0)
    ax = plots.plot_imputation(t, y, y, y - 1, y + 1).axes[0]
    ax.figure.canvas.draw()  # type: ignore[union-attr]
    boxes = [lab.get_window_extent() for lab in ax.get_xticklabels() if lab.get_text()]
    assert min(b.x0 - a.x1 for a, b in itertools.pairwise(boxes)) > 10.0


def test_save_is_checked_before_drawing_and_its_folder_made(tmp_path: Path) -> None:
    """An unknown extension was matplotlib's ValueError after drawing, a missing folder a
    raw FileNotFoundError, and a name without extension was written to NAME.png."""
    t, s = np.arange(10.0), np.zeros((1, 10, 1))
    with pytest.raises(ValidationError, match=r"^save: expected a file name ending in one of "):
        plots.plot_samples(t, s, save=tmp_path / "p.xyz")
    with pytest.raises(ValidationError, match=r"\(no extension\)$") as err:
        plots.plot_samples(t, s, save=tmp_path / "noext")
    assert ".png, .pdf" not in str(err.value)  # sorted: ... .pdf, .pgf, .png ...
    assert ".png" in str(err.value)
    assert list(tmp_path.iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValidationError, match=r"^save: expected a file in a folder that exists"):
        plots.plot_samples(t, s, save=blocker / "p.png")
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ValidationError, match=r"^save: expected a file name, found the dir"):
        plots.plot_samples(t, s, save=tmp_path / "d.png")
    plots.plot_samples(t, s, save=tmp_path / "new" / "deeper" / "p.PNG")
    _check_png(tmp_path / "new" / "deeper" / "p.PNG", min_size=1_000)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_samples_max_samples_must_be_positive(bad: object) -> None:
    with pytest.raises(ValidationError, match=r"^max_samples: expected a positive integer"):
        plots.plot_samples(np.arange(3.0), np.zeros((2, 3, 1)), max_samples=bad)  # type: ignore[arg-type]


def _drawn_text(text: str) -> str:
    """What matplotlib draws for the text of a label or title: plain text (an escaped ``\\$``
    drawn as ``$``); mathtext (an even number of unescaped ``$``) fails the test."""
    assert not cbook.is_math_text(text), f"{text!r} is drawn as mathtext"
    return text.replace(r"\$", "$")


def test_names_with_dollars_are_drawn_as_written(tmp_path: Path) -> None:
    """Feature names, titles and time labels with ``$`` were read as mathtext: 'price ($) /
    cost ($)' was drawn 'price ()/cost()', and 'NO$_2' failed when the figure was saved."""
    names = ["price ($) / cost ($)", "NO$_2", "$x$"]
    t = np.arange(T, dtype=float)
    y = np.zeros((T, 3))
    fig = plots.plot_imputation(
        t, y, y, y - 1, y + 1, feature_names=names, title="cost in $ ($)", time_label="$t"
    )
    fig.savefig(tmp_path / "dollars.png")  # no mathtext parse error
    assert [_drawn_text(ax.get_ylabel()) for ax in fig.axes] == names
    assert _drawn_text(fig.get_suptitle()) == "cost in $ ($)"
    assert _drawn_text(fig.axes[-1].get_xlabel()) == "$t"
    res = _backtest_result(2, D=3)
    res.feature_names = names
    fig = plots.plot_backtest(res, feature=0, save=tmp_path / "fan.png")
    assert _drawn_text(fig.get_suptitle()).startswith("price ($) / cost ($): backtest")


def _shown(ax: Axes, label: str) -> bool:
    """Whether the line called ``label`` on ``ax`` is visible: through two points or more,
    or one point with a marker (a line through one point has no length)."""
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return len(line.get_xdata()) > 1 or line.get_marker() not in ("None", "", " ", None)


def _bars(ax: Axes) -> list[tuple[float, float]]:
    """The (low, high) of the vertical bars that ``ax`` draws as line collections."""
    return [
        (float(seg[:, 1].min()), float(seg[:, 1].max()))
        for c in ax.collections
        if isinstance(c, LineCollection)
        for seg in c.get_segments()
    ]


def test_a_single_step_is_drawn_with_a_marker_and_an_interval_bar(tmp_path: Path) -> None:
    """A forecast of one step, an imputation of one time, a sample of length 1 and a backtest
    of horizon 1 drew a line through one point without a marker and a band over one time: both
    without extent, the panel empty although the legend named them."""
    one = np.array([np.datetime64("2021-03-01T00:00", "ns")])
    th = one - np.arange(5, 0, -1).astype("timedelta64[h]")
    fig = plots.plot_forecast(th, np.ones(5), one, [2.0], [1.0], [3.0], levels=[0.9])
    assert _shown(fig.axes[0], "forecast mean")
    assert _bars(fig.axes[0]) == [(1.0, 3.0)]
    fig = plots.plot_imputation(one, [np.nan], [2.0], [1.0], [3.0])
    assert _shown(fig.axes[0], "imputed mean")
    assert _bars(fig.axes[0]) == [(1.0, 3.0)]
    fig = plots.plot_samples([0.0], np.zeros((2, 1, 1)))
    assert _shown(fig.axes[0], "sample 0")
    assert _shown(fig.axes[0], "sample 1")
    fig = plots.plot_latents([0.0], [[0.0]], [[1.0]])
    assert _shown(fig.axes[0], "posterior mean")
    assert _bars(fig.axes[0]) == [(-2.0, 2.0)]
    res = _backtest_result(1, H=1, D=1)
    fig = plots.plot_backtest(res, save=tmp_path / "fan.png")
    assert _shown(fig.axes[0], "forecast mean")
    assert sorted(_bars(fig.axes[0])) == [(-1.0, 1.0), (-0.5, 0.5)]
    # more than one step: lines without markers and bands alone, as before
    fig = plots.plot_forecast(th, np.ones(5), [1.0, 2.0], [2.0, 2.0], [1.0, 1.0], [3.0, 3.0])
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "forecast mean"]
    assert line.get_marker() == "None"
    assert _bars(fig.axes[0]) == []


def test_forecast_draws_the_context_and_breaks_the_history_at_missing_rows() -> None:
    """The whole history was drawn (7,267 steps before a forecast of 24: the forecast a few
    pixels wide), and drawn straight across rows missing from the times as if observed."""
    t = np.array([np.datetime64("2014-04-01T00:00", "ns")]) + np.arange(100).astype(
        "timedelta64[h]"
    )
    t = np.delete(t, np.arange(80, 90))  # ten hourly rows missing: a gap of 11 hours
    y = np.arange(90.0)
    tf = t[-1] + np.arange(1, 4).astype("timedelta64[h]")
    fig = plots.plot_forecast(t, y, tf, np.zeros(3), -np.ones(3), np.ones(3), context=20)
    line = next(ln for ln in fig.axes[0].get_lines() if ln.get_label() == "history")
    x, v = line.get_xdata(), line.get_ydata()
    assert len(x) == 21  # the last 20 steps and a break
    np.testing.assert_array_equal(np.delete(x, 10), t[-20:])
    assert x[10] == t[79] + np.timedelta64(330, "m")  # halfway through the gap
    assert np.isnan(v[10])
    np.testing.assert_array_equal(np.delete(v, 10), y[-20:])
    # a regular history is drawn as given, every step without context
    fig = plots.plot_forecast(t[:80], y[:80], tf, np.zeros(3), -np.ones(3), np.ones(3))
    line = next(ln for ln in fig.axes[0].get_lines() if ln.get_label() == "history")
    np.testing.assert_array_equal(line.get_xdata(), t[:80])
    with pytest.raises(ValidationError, match="context: expected a positive whole number"):
        plots.plot_forecast(t, y, tf, np.zeros(3), -np.ones(3), np.ones(3), context=0)


def _history_line(fig: Figure) -> tuple[np.ndarray, np.ndarray]:
    line = next(ln for ln in fig.axes[0].get_lines() if ln.get_label() == "history")
    return np.asarray(line.get_xdata()), np.asarray(line.get_ydata(), dtype=np.float64)


def test_forecast_history_is_not_broken_where_the_clocks_go_forward() -> None:
    """15-minute steps in Europe/Berlin jump from 01:45 to 03:00 on the wall clock when the
    clocks go forward: the history's line was broken there as if an hour were missing. The
    gaps are found in elapsed time (UTC), the line drawn on the wall clock."""
    t = pd.date_range("2024-03-31 00:00", periods=16, freq="15min", tz="Europe/Berlin")
    wall = t.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    assert wall[8] - wall[7] == np.timedelta64(75, "m")  # 01:45 -> 03:00
    y = np.arange(16.0)
    tf = t[-1] + pd.to_timedelta([15, 30], unit="min")
    fan = (np.zeros(2), -np.ones(2), np.ones(2))
    for times, elapsed in [(t, None), (wall, t.tz_convert("UTC").tz_localize(None))]:
        fig = plots.plot_forecast(times, y, tf, *fan, history_elapsed=elapsed)
        x, v = _history_line(fig)
        np.testing.assert_array_equal(x, wall)  # on the wall clock, unbroken
        np.testing.assert_array_equal(v, y)
    # rows missing are still a gap: three steps of 15 minutes across the clock change
    kept = np.r_[0:7, 10:16]
    x, v = _history_line(plots.plot_forecast(t[kept], y[kept], tf, *fan))
    assert len(x) == len(kept) + 1
    assert np.isnan(v[7])
    # the wall clock alone has the jump for a gap
    x, v = _history_line(plots.plot_forecast(wall, y, tf, *fan))
    assert np.isnan(v[8])
    with pytest.raises(ShapeError, match=r"history_elapsed: expected shape \(16,\) like"):
        plots.plot_forecast(t, y, tf, *fan, history_elapsed=wall[1:])


def _legends_clear_of_their_axes(fig: Figure) -> int:
    """How many legends ``fig`` has, checking that each lies above its axes, off the data."""
    fig.canvas.draw()
    count = 0
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            assert legend.get_window_extent().y0 >= ax.get_window_extent().y1 - 0.5
            count += 1
    return count


def test_legends_sit_above_the_panels_off_the_data(rng: np.random.Generator) -> None:
    """The legends sat at a fixed corner inside the top panel (upper right, 80% opaque) and
    hid the data there: gpvae detect's highest alarm, impute's last observed values."""
    t = np.arange(T, dtype=float)
    y = rng.normal(size=(T, 2))
    fig = plots.plot_imputation(t, y, y, y - 1, y + 1)
    assert _legends_clear_of_their_axes(fig) == 1
    fig = plots.plot_forecast(t, y, T + np.arange(3.0), y[:3], y[:3] - 1, y[:3] + 1)
    assert _legends_clear_of_their_axes(fig) == 1
    fig = plots.plot_anomalies(t, y[:, 0], 1.0, values=y)
    assert _legends_clear_of_their_axes(fig) == 2
    fig = plots.plot_latents(t, y, y**2)
    assert _legends_clear_of_their_axes(fig) == 1
    fig = plots.plot_samples(t, y[None])
    assert _legends_clear_of_their_axes(fig) == 1
    fig = plots.plot_backtest(_backtest_result(2))
    assert _legends_clear_of_their_axes(fig) == 1


def test_kernel_legend_names_the_terms_and_the_lag_shows_the_longest_period() -> None:
    """A composite kernel was labelled 'Sum' (no lengthscale, no period), where gpvae fit
    lists its terms; the demo drew lags up to 20 days of a kernel with a 365-day period."""
    seasonal = Matern32(lengthscale=3.0) + Periodic(lengthscale=0.8, period=365.0)
    decaying = Matern52(lengthscale=40.0) * (Periodic(period=7.0) + Matern32(lengthscale=2.0))
    fig = plots.plot_kernels([seasonal, decaying])
    _, legends = _labels(fig)
    assert legends == [
        "z0: Matern32 (ℓ=3) + Periodic (ℓ=0.8, p=365)",
        "z1: Matern52 (ℓ=40) × (Periodic (ℓ=1, p=7) + Matern32 (ℓ=2))",
    ]
    x = fig.axes[0].get_lines()[0].get_xdata()
    assert x[-1] == pytest.approx(1.5 * 365.0)  # a period and a half of the longest period
    fig = plots.plot_kernels([Matern32(lengthscale=4.0)])
    assert fig.axes[0].get_lines()[0].get_xdata()[-1] == pytest.approx(12.0)  # 3 lengthscales
