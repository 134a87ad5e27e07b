"""``gpvae fit --kernel matern32+periodic --period 7D`` and ``gpvae backtest`` end to end, in
process through :func:`gpvae.app.cli.main` (exit code, outputs, one-line errors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpvae.app.cli import main


def _weekly_csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    T = 140
    t = np.arange(T)
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=T, freq="D").strftime("%Y-%m-%d"),
            "load": 10 + 3 * np.sin(2 * np.pi * t / 7) + 0.3 * rng.standard_normal(T),
            "temp": 5 + np.cos(2 * np.pi * t / 7) + 0.3 * rng.standard_normal(T),
        }
    )
    frame.loc[rng.random(T) < 0.05, "temp"] = np.nan
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A weekly-seasonal CSV and a model fitted on it with a 7-day period (shared)."""
    folder = tmp_path_factory.mktemp("backtest")
    data = _weekly_csv(folder / "weekly.csv")
    model = folder / "model"
    fit_args = ["fit", str(data), "--time-col", "date", "-o", str(model), "--epochs", "2"]
    fit_args += ["--latent-dim", "2", "--hidden", "16", "--quiet"]
    fit_args += ["--kernel", "matern32+periodic", "--period", "7D", "--forecast-horizon", "7"]
    assert main(fit_args) == 0
    return data, model


def test_fit_with_a_period_then_backtest(
    fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, model = fitted
    out = tmp_path / "bt.json"
    args = ["backtest", str(model), str(data), "--horizon", "7", "--origins", "3"]
    args += ["--season", "7", "--num-samples", "20", "-o", str(out)]
    code = main([*args, "--plot-dir", str(tmp_path / "fans")])
    assert code == 0, capsys.readouterr()
    report = json.loads(out.read_text())
    assert report["origins"] == [[119, 126, 133]]
    # the origins as DATA's own dates, not only as step positions
    assert report["origin_times"] == [["2024-04-29T00:00:00", "2024-05-06T00:00:00",
                                       "2024-05-13T00:00:00"]]  # fmt: skip
    assert report["series"] is None  # a wide file: one series, no id column
    assert report["epochs"] == [2]
    assert set(report["summary"]) == {"mae", "mase", "crps", "coverage90"}
    assert len(report["by_horizon"]["mase"]) == 7
    assert set(report["by_feature"]) == {"load", "temp"}
    assert sorted(p.name for p in (tmp_path / "fans").iterdir()) == [
        "backtest_load.png",
        "backtest_temp.png",
    ]


def test_backtest_errors_are_one_line(
    fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, model = fitted
    capsys.readouterr()
    args = ["backtest", str(model), str(data), "--horizon", "60", "--origins", "5"]
    code = main([*args, "-o", str(tmp_path / "bt.json")])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: --horizon, --origins: ")  # the options, not the estimator's
    assert "expected series long enough for 5 origins" in err[0]


def test_a_constant_feature_is_left_out_of_the_scaled_means(
    fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A feature constant over the history (rain in a dry spell) has a seasonal naive scale
    of 0: MASE and CRPS were infinite overall, and OUT held bare Infinity (not JSON)."""
    data, model = fitted
    frame = pd.read_csv(data)
    dry = tmp_path / "dry.csv"
    frame.assign(temp=0.0).to_csv(dry, index=False)  # same columns, temp constant
    out = tmp_path / "bt.json"
    args = ["backtest", str(model), str(dry), "--horizon", "7", "--origins", "2"]
    args += ["--season", "7", "--num-samples", "20", "-o", str(out)]
    assert main(args) == 0, capsys.readouterr()
    assert "no MASE scale for 'temp' in series 0" in capsys.readouterr().err

    def refuse(token: str) -> None:
        raise AssertionError(f"not strict JSON: {token}")

    report = json.loads(out.read_text(), parse_constant=refuse)
    assert np.isfinite(report["summary"]["mase"])
    assert np.isfinite(report["summary"]["crps"])
    assert report["by_feature"]["temp"]["mase"] is None
    assert np.isfinite(report["by_feature"]["load"]["mase"])


def test_plot_dir_draws_the_first_origins_of_many(
    fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """More than 12 origins failed after OUT was written, telling the user to plot a subset
    of the features: the fan charts draw the first 12 origins and say so."""
    data, model = fitted
    out, fans = tmp_path / "bt.json", tmp_path / "fans"
    args = ["backtest", str(model), str(data), "--horizon", "1", "--origins", "13"]
    args += ["--season", "7", "--num-samples", "4", "-o", str(out), "--plot-dir", str(fans)]
    assert main(args) == 0, capsys.readouterr().err
    assert "--plot-dir: drawing the first 12 of the 13 origins" in capsys.readouterr().out
    assert len(json.loads(out.read_text())["origins"][0]) == 13
    assert sorted(p.name for p in fans.iterdir()) == ["backtest_load.png", "backtest_temp.png"]


@pytest.mark.parametrize("option", ["--plot-dir", "--out"])
def test_folders_are_checked_before_the_backtest(
    option: str, fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --plot-dir (or the folder of --out) that cannot be made failed with a raw
    FileExistsError after the whole backtest (and, for --plot-dir, after OUT was written)."""
    data, model = fitted
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker / "bt.json" if option == "--out" else tmp_path / "bt.json"
    args = ["backtest", str(model), str(data), "--horizon", "7", "-o", str(out)]
    if option == "--plot-dir":
        args += ["--plot-dir", str(blocker)]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"error: {option}: expected a folder that can be created, found ")
    assert not (tmp_path / "bt.json").exists()


def test_plot_dir_gives_features_of_one_file_name_charts_of_their_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Features whose names differ only in characters a file name cannot hold ('NO2 (a)',
    'NO2 [a]') wrote one chart over the other, while backtest said it wrote two."""
    rng = np.random.default_rng(1)
    data, model = tmp_path / "d.csv", tmp_path / "m"
    names = ["NO2 (a)", "NO2 [a]", "no2 _a_"]
    frame = pd.DataFrame(rng.normal(size=(60, 3)), columns=names)
    frame.insert(0, "t", np.arange(60))
    frame.to_csv(data, index=False)
    fit = ["fit", str(data), "--time-col", "t", "-o", str(model), "--epochs", "1"]
    assert main([*fit, "--latent-dim", "2", "--hidden", "8", "--quiet"]) == 0
    fans = tmp_path / "fans"
    args = ["backtest", str(model), str(data), "--horizon", "2", "--origins", "2"]
    args += ["--num-samples", "10", "-o", str(tmp_path / "bt.json"), "--plot-dir", str(fans)]
    assert main(args) == 0, capsys.readouterr()
    assert f"wrote 3 fan charts to {fans}" in capsys.readouterr().out
    assert sorted(p.name for p in fans.iterdir()) == [
        "backtest_NO2__a_.png",
        "backtest_NO2__a__2.png",
        "backtest_no2__a__3.png",
    ]


def test_fan_charts_of_a_long_file_name_the_series_they_draw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Audit (session 47, anomaly/forecast #4): on a long file the fan chart draws the
    first series, but its title gave the feature and scores without saying whose they were,
    beside a report whose scores are over every series. The title names the series by its
    id, with that series' scores; the Python plot names it by position."""
    from gpvae.app import plots
    from gpvae.app.plots import plot_backtest

    titles: list[str] = []
    real = plots.plot_backtest

    def keep(*args: object, **kwargs: object) -> object:
        fig = real(*args, **kwargs)  # type: ignore[arg-type]
        titles.append(fig._suptitle.get_text())
        return fig

    monkeypatch.setattr(plots, "plot_backtest", keep)
    rng = np.random.default_rng(2)
    data, model = tmp_path / "d.csv", tmp_path / "m"
    frame = pd.DataFrame({
        "site": np.repeat(["north", "south"], 40),
        "t": np.tile(np.arange(40), 2),
        "load": rng.normal(size=80),
    })  # fmt: skip
    frame.to_csv(data, index=False)
    fit = ["fit", str(data), "--time-col", "t", "--id-col", "site", "-o", str(model)]
    assert main([*fit, "--epochs", "1", "--latent-dim", "1", "--hidden", "8", "--quiet"]) == 0
    args = ["backtest", str(model), str(data), "--horizon", "2", "--origins", "2"]
    args += ["--num-samples", "10", "-o", str(tmp_path / "bt.json")]
    assert main([*args, "--plot-dir", str(tmp_path / "fans")]) == 0, capsys.readouterr()
    assert len(titles) == 1
    assert titles[0].startswith("load of site north: backtest over 2 origins (MASE "), titles
    report = json.loads((tmp_path / "bt.json").read_text())
    assert report["series"] == ["north", "south"]
    from gpvae import GPVAE
    from gpvae.data import to_series_set

    series = to_series_set(pd.read_csv(data), id_col="site", time_col="t")
    res = GPVAE.load(model / "model").backtest(series, horizon=2, num_origins=2, num_samples=10)
    fig = plot_backtest(res, series=1)
    assert fig._suptitle.get_text().startswith("load of series 1 of 2: backtest")
