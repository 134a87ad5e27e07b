"""``gpvae fit --coord-cols`` and ``gpvae predict-sites`` end to end on a tiny field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "gpvae", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def _frame(S: int = 4, T: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    lat = 39.9 + 0.1 * rng.random(S)
    lon = 116.4 + 0.1 * rng.random(S)
    common = np.sin(np.arange(T) / 5.0)
    rows = []
    for s in range(S):
        for t in range(T):
            rows.append(
                {
                    "station": f"s{s}",
                    "time": t,
                    "lat": lat[s],
                    "lon": lon[s],
                    "pm": common[t] + 0.1 * rng.standard_normal(),
                    "temp": 20 + common[t],
                }
            )
    return pd.DataFrame(rows)


def test_fit_with_coord_cols_then_predict_sites_with_plots(tmp_path: Path) -> None:
    df = _frame()
    train = tmp_path / "train.csv"
    df[df.station != "s0"].to_csv(train, index=False)
    fit = _cli(
        "fit",
        train,
        "--time-col",
        "time",
        "--id-col",
        "station",
        "--coord-cols",
        "lat,lon",
        "--window",
        "10",
        "--epochs",
        "2",
        "--latent-dim",
        "2",
        "--hidden",
        "8,8",
        "--quiet",
        "-o",
        tmp_path / "model",
    )
    assert fit.returncode == 0, fit.stderr
    new = tmp_path / "new.csv"
    df[df.station == "s0"][["station", "lat", "lon"]].iloc[:1].to_csv(new, index=False)
    out = tmp_path / "pred.csv"
    pred = _cli(
        "predict-sites",
        tmp_path / "model",
        train,
        new,
        "-o",
        out,
        "--num-samples",
        "8",
        "--plot",
        tmp_path / "map.png",
        "--series-plot",
        tmp_path / "series.png",
    )
    assert pred.returncode == 0, pred.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == [
        "station",
        "time",
        "pm",
        "temp",
        "pm_lower",
        "pm_upper",
        "temp_lower",
        "temp_upper",
    ]
    assert len(table) == 40
    assert set(table.station) == {"s0"}
    assert (table.pm_lower <= table.pm_upper).all()
    assert (tmp_path / "map.png").stat().st_size > 0
    assert (tmp_path / "series.png").stat().st_size > 0


def test_bad_coord_cols_name_the_option(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    _frame().to_csv(train, index=False)
    proc = _cli(
        "fit",
        train,
        "--time-col",
        "time",
        "--id-col",
        "station",
        "--coord-cols",
        "lat",
        "--quiet",
        "-o",
        tmp_path / "model",
    )
    assert proc.returncode != 0
    assert "--coord-cols" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _cli(
        "fit",
        train,
        "--time-col",
        "time",
        "--id-col",
        "station",
        "--coord-cols",
        "lat,height",
        "--quiet",
        "-o",
        tmp_path / "model",
    )
    assert proc.returncode != 0
    assert "--coord-cols" in proc.stderr
    assert "'height'" in proc.stderr


def test_fit_with_coord_cols_then_predict_sites_on_dates_written_as_text(tmp_path: Path) -> None:
    """As without --coord-cols, a time column of dates in a CSV (text) is parsed."""
    df = _frame(T=30)
    df["time"] = pd.Timestamp("2013-03-01") + pd.to_timedelta(df["time"], unit="h")
    train = tmp_path / "train.csv"
    df[df.station != "s0"].to_csv(train, index=False)
    assert not pd.api.types.is_datetime64_any_dtype(pd.read_csv(train)["time"])  # text
    fit = _cli("fit", train, "--time-col", "time", "--id-col", "station", "--coord-cols",
               "lat,lon", "--window", "10", "--epochs", "1", "--latent-dim", "2", "--hidden",
               "8,8", "--quiet", "-o", tmp_path / "model")  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    new = tmp_path / "new.csv"
    df[df.station == "s0"][["station", "lat", "lon"]].iloc[:1].to_csv(new, index=False)
    out = tmp_path / "pred.csv"
    pred = _cli("predict-sites", tmp_path / "model", train, new, "-o", out, "--num-samples", "4")
    assert pred.returncode == 0, pred.stderr
    table = pd.read_csv(out)
    expected = sorted(df.loc[df.station == "s0", "time"])
    assert sorted(pd.to_datetime(table["time"])) == expected
    # impute reads the dates too and writes them back as DATA wrote them
    data = tmp_path / "gappy.csv"
    given = _gappy(train, data)
    imp = _cli("impute", tmp_path / "model", data, "-o", out, "--num-samples", "19")
    assert imp.returncode == 0, imp.stderr
    table = pd.read_csv(out)
    assert table["time"].tolist() == given["time"].tolist()
    assert not table[["pm", "temp"]].isna().any().any()


@pytest.fixture(scope="module")
def spatial_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(MODEL_DIR, DATA, SITES) of a spatial model fitted on sites s1..s3; SITES is s0."""
    return _fit_sites(_frame(T=20), "s0", tmp_path_factory.mktemp("spatial"))


def _fit_sites(df: pd.DataFrame, held: str, d: Path) -> tuple[Path, Path, Path]:
    """(MODEL_DIR, DATA, SITES) in ``d``: a spatial model fitted on the sites of ``df`` but
    ``held`` (1 epoch, small), and SITES the held site's coordinates."""
    train, new = d / "train.csv", d / "new.csv"
    df[df.station != held].to_csv(train, index=False)
    df[df.station == held][["station", "lat", "lon"]].iloc[:1].to_csv(new, index=False)
    fit = _cli("fit", train, "--time-col", "time", "--id-col", "station", "--coord-cols",
               "lat,lon", "--window", "10", "--epochs", "1", "--latent-dim", "2", "--hidden",
               "8,8", "--quiet", "-o", d / "model")  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    return d / "model", train, new


@pytest.mark.parametrize("which", ["DATA", "SITES"])
def test_predict_sites_refuses_an_out_that_is_an_input(
    which: str, spatial_model: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    model, train, new = spatial_model
    data, sites = tmp_path / "train.csv", tmp_path / "new.csv"
    data.write_bytes(train.read_bytes())
    sites.write_bytes(new.read_bytes())
    target = data if which == "DATA" else sites
    proc = _cli("predict-sites", model, data, sites, "-o", target, "--num-samples", "4")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: OUT: ")
    assert which in proc.stderr
    assert data.read_bytes() == train.read_bytes()
    assert sites.read_bytes() == new.read_bytes()


@pytest.mark.parametrize(
    ("option", "value"),
    [("--plot", "map.txt"), ("--series-plot", "series.txt"), ("--feature", "nope")],
)
def test_predict_sites_checks_plot_options_before_any_work(
    option: str, value: str, spatial_model: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    model, train, new = spatial_model
    out = tmp_path / "pred.csv"
    extra = [option, value] + (["--plot", str(tmp_path / "m.png")] if option == "--feature" else [])
    proc = _cli("predict-sites", model, train, new, "-o", out, "--num-samples", "4", *extra)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: {option}: ")
    assert not out.exists()


def test_predict_sites_refuses_one_path_for_both_plots(
    spatial_model: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """The series plot silently replaced the map."""
    model, train, new = spatial_model
    out, fig = tmp_path / "pred.csv", tmp_path / "fig.png"
    proc = _cli("predict-sites", model, train, new, "-o", out, "--plot", fig, "--series-plot", fig)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: --series-plot: expected a path other than --plot's")
    assert not out.exists()


@pytest.mark.parametrize("command", ["detect", "forecast"])
def test_time_series_commands_say_a_spatial_model_is_for_impute_and_predict_sites(
    command: str, spatial_model: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """They said cli.json was missing and to fit the model with 'gpvae fit', which it was;
    then that predict-sites alone uses it (impute does too)."""
    model, train, _ = spatial_model
    extra = ["--horizon", "2"] if command == "forecast" else []
    proc = _cli(command, model, train, "-o", tmp_path / "out.csv", *extra)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: MODEL_DIR: expected a time-series model, found a spatial")
    assert "'gpvae impute' (gaps at observed sites) and 'gpvae predict-sites'" in proc.stderr


def _gappy(train: Path, path: Path) -> pd.DataFrame:
    """DATA of the observed sites with gaps, rows shuffled and a column that is no feature."""
    data = pd.read_csv(train).sample(frac=1.0, random_state=0).reset_index(drop=True)
    data.loc[::3, "pm"] = np.nan
    data.loc[1::5, "temp"] = np.nan
    data.insert(2, "note", "x")
    data.to_csv(path, index=False)
    return pd.read_csv(path)


def test_impute_fills_the_gaps_of_observed_sites_of_a_spatial_model(
    spatial_model: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """impute refused a spatial MODEL_DIR (for predict-sites), and predict-sites refused the
    observed sites (for impute): the command line could not fill their gaps. Now OUT is
    DATA (its rows, order and columns) with the gaps filled and the interval columns."""
    model, train, _ = spatial_model
    data, out, fig = tmp_path / "gappy.csv", tmp_path / "out.csv", tmp_path / "a" / "s2.png"
    given = _gappy(train, data)
    observed = pd.read_csv(train)[["station", "lat", "lon"]].drop_duplicates()
    sites = tmp_path / "observed_sites.csv"
    observed.to_csv(sites, index=False)
    circle = _cli("predict-sites", model, data, sites, "-o", out, "--num-samples", "4")
    assert circle.returncode == 1
    assert "impute fills the gaps of observed sites" in circle.stderr  # and now it does:
    proc = _cli("impute", model, data, "-o", out, "--num-samples", "19", "--level", "0.8",
                "--plot", fig, "--series", "s2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    feats = ["pm", "temp"]
    missing = int(given[feats].isna().sum().sum())
    assert proc.stdout.splitlines() == [
        f"imputed {missing} missing values; wrote {out}",
        f"wrote plot {fig}",
    ]
    table = pd.read_csv(out)
    ends = ["pm_lower", "temp_lower", "pm_upper", "temp_upper"]
    assert list(table.columns) == [*given.columns, *ends]
    pd.testing.assert_frame_equal(table[[c for c in given.columns if c not in feats]],
                                  given.drop(columns=feats))  # fmt: skip
    values = given[feats].to_numpy()
    seen = ~np.isnan(values)
    assert np.array_equal(table[feats].to_numpy()[seen], values[seen])  # bit for bit
    for end in ("lower", "upper"):
        bounds = table[[f"{f}_{end}" for f in feats]].to_numpy()
        assert np.array_equal(bounds[seen], values[seen])
    assert not table[feats + ends].isna().any().any()
    lo, hi = table[["pm_lower", "temp_lower"]].to_numpy(), table[["pm_upper", "temp_upper"]]
    assert (lo[~seen] < hi.to_numpy()[~seen]).all()
    assert fig.stat().st_size > 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--merge-duplicate-times"], "error: --merge-duplicate-times: merges the rows of a "),
        (["--series", "nope"], "error: --series: unknown id 'nope'"),
        (["--level", "0.99"], "warning: --num-samples: 19 draws are too few"),
    ],
)
def test_impute_with_a_spatial_model_checks_its_options(
    extra: list[str], message: str, spatial_model: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    model, train, _ = spatial_model
    data, out = tmp_path / "gappy.csv", tmp_path / "out.csv"
    _gappy(train, data)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "gpvae", "impute", str(model), str(data), "-o", str(out),
         "--num-samples", "19", *extra],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert message in proc.stderr
    assert proc.returncode == (0 if message.startswith("warning") else 1), proc.stderr
    assert out.exists() == (proc.returncode == 0)


def test_impute_with_a_spatial_model_names_a_missing_coordinate_column(
    spatial_model: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    model, train, _ = spatial_model
    data, out = tmp_path / "gappy.csv", tmp_path / "out.csv"
    _gappy(train, data).drop(columns="lat").to_csv(data, index=False)
    proc = _cli("impute", model, data, "-o", out, "--num-samples", "19")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: DATA: expected columns of the DataFrame, found ['lat']")
    assert not out.exists()


@pytest.mark.parametrize("which", ["DATA", "SITES"])
def test_predict_sites_names_the_file_that_lacks_a_coordinate_column(
    which: str, spatial_model: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A coordinate column missing from DATA was blamed on SITES (the estimator's
    ``coords`` argument, which the command named SITES), whose file was fine."""
    model, train, new = spatial_model
    data, sites, out = tmp_path / "data.csv", tmp_path / "sites.csv", tmp_path / "out.csv"
    for path, src in ((data, train), (sites, new)):
        frame = pd.read_csv(src)
        (frame.drop(columns="lon") if path.name.startswith(which.lower()) else frame).to_csv(
            path, index=False
        )
    proc = _cli("predict-sites", model, data, sites, "-o", out, "--num-samples", "4")
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {which}: expected the coordinate column 'lon'"), lines
    named = data if which == "DATA" else sites
    assert repr(str(named)) in lines[0], lines
    assert not out.exists()


def test_time_series_options_with_coord_cols_are_refused(tmp_path: Path) -> None:
    # they were accepted and ignored: the model then refused detect and forecast
    train = tmp_path / "train.csv"
    _frame().to_csv(train, index=False)
    base = ["fit", train, "--time-col", "time", "--id-col", "station", "--coord-cols", "lat,lon"]
    # --interp-blend too: it was accepted, then ignored by the spatial fit
    for extra in (
        ["--false-alarm-rate", "0.2"],
        ["--smooth", "5", "--forecast-horizon", "4"],
        ["--interp-blend"],
    ):
        proc = _cli(*base, *extra, "--quiet", "-o", tmp_path / "model")
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr
        assert f"{extra[0]}: sets up anomaly detection, forecasting or the" in proc.stderr
        assert not (tmp_path / "model").exists()
    proc = _cli(*base, "--resume", "--quiet", "-o", tmp_path / "model")  # was ignored
    assert proc.returncode != 0
    assert "--resume: continues a time-series fit from its checkpoint" in proc.stderr
    assert not (tmp_path / "model").exists()


def test_predict_sites_creates_the_folders_of_its_plots(
    spatial_model: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Other commands create a missing folder of --plot; predict-sites failed with a raw
    FileNotFoundError after OUT was written."""
    from gpvae.app.cli import main

    model, train, new = spatial_model
    out, fig, series = tmp_path / "pred.csv", tmp_path / "a" / "map.png", tmp_path / "b" / "s.png"
    args = ["predict-sites", str(model), str(train), str(new), "-o", str(out)]
    code = main([*args, "--num-samples", "4", "--plot", str(fig), "--series-plot", str(series)])
    assert code == 0, capsys.readouterr().err
    assert fig.stat().st_size > 0
    assert series.stat().st_size > 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("predicted 2 features at 1 sites")
    assert lines[1:] == [f"wrote plot {fig}", f"wrote plot {series}"]


@pytest.mark.parametrize("option", ["--plot", "--series-plot"])
def test_predict_sites_checks_the_folder_of_a_plot_before_any_work(
    option: str,
    spatial_model: tuple[Path, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gpvae.app.cli import main

    model, train, new = spatial_model
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = tmp_path / "pred.csv"
    args = ["predict-sites", str(model), str(train), str(new), "-o", str(out)]
    assert main([*args, option, str(blocker / "p.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {option}: expected a folder that can be created, found ")
    assert not out.exists()


def test_impute_with_a_spatial_model_refuses_several_processes() -> None:
    """Under torchrun each process would impute a share of the sites without the others (or
    all of them, each writing OUT): refused on every process, before DATA is read."""
    from types import SimpleNamespace

    from gpvae.app.cli.commands.impute import _check_sites_options
    from gpvae.app.cli.errors import CLIError

    with pytest.raises(CLIError, match=r"^MODEL_DIR: expected one process for a spatial") as err:
        _check_sites_options(SimpleNamespace(world=2), False)  # type: ignore[arg-type]
    assert "found 2 processes (run it without torchrun)" in str(err.value)
    assert getattr(err.value, "synchronized", False)  # raised alike: process 0 reports it
    _check_sites_options(SimpleNamespace(world=1), False)  # type: ignore[arg-type]


def test_predict_sites_keeps_ids_as_written(tmp_path: Path) -> None:
    """Ids such as 001 are text at fit; predict-sites read DATA and SITES as numbers and
    wrote the new site 000 as 0."""
    df = _frame(T=20)
    df["station"] = df["station"].map({"s0": "000", "s1": "001", "s2": "002", "s3": "003"})
    model, train, new = _fit_sites(df, "000", tmp_path)
    out = tmp_path / "out.csv"
    res = _cli("predict-sites", model, train, new, "-o", out)
    assert res.returncode == 0, res.stderr
    ids = pd.read_csv(out, dtype={"station": str})["station"]
    assert set(ids) == {"000"}


def test_a_repeated_site_and_time_reads_the_same_in_both_commands(tmp_path: Path) -> None:
    """impute (spatial MODEL_DIR) and predict-sites named a repeated (site, time) in two
    ways ('DATA: ...' and 'DATA: time: ...'), both with the parsed time (2013-03-01
    07:00:00) rather than DATA's text (2013-03-01 07:00). Now one message, as written."""
    df = _frame(T=20)
    df["time"] = (pd.Timestamp("2013-03-01") + pd.to_timedelta(df["time"], unit="h")).dt.strftime(
        "%Y-%m-%d %H:%M"
    )
    model, train, new = _fit_sites(df, "s0", tmp_path)
    table = pd.read_csv(train)
    twice = tmp_path / "twice.csv"
    pd.concat([table, table.iloc[[7]]], ignore_index=True).to_csv(twice, index=False)
    site, written = table["station"].iloc[7], table["time"].iloc[7]
    assert written == "2013-03-01 07:00"
    expected = (
        f"error: DATA: expected one row per site and time, found site {site!r} twice at "
        f"{written} in column 'time'"
    )
    out = tmp_path / "out.csv"
    for args in (("impute", model, twice), ("predict-sites", model, twice, new)):
        proc = _cli(*args, "-o", out, "--num-samples", "19")
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip() == expected, args[0]
        assert not out.exists()


def test_a_row_without_a_time_reads_the_same_in_both_commands(tmp_path: Path) -> None:
    """predict-sites said 'DATA: time: expected a time on every row ...' where impute (of
    the same spatial model and DATA) said 'DATA: expected a time on every row ...'."""
    df = _frame(T=20)
    df["time"] = (pd.Timestamp("2013-03-01") + pd.to_timedelta(df["time"], unit="h")).dt.strftime(
        "%Y-%m-%d %H:%M"
    )
    model, train, new = _fit_sites(df, "s0", tmp_path)
    table = pd.read_csv(train)
    table.loc[3, "time"] = None
    blank = tmp_path / "blank.csv"
    table.to_csv(blank, index=False)
    out = tmp_path / "out.csv"
    errors = []
    for args in (("impute", model, blank), ("predict-sites", model, blank, new)):
        proc = _cli(*args, "-o", out, "--num-samples", "19")
        assert proc.returncode == 1, proc.stderr
        errors.append(proc.stderr.strip())
        assert not out.exists()
    assert (
        errors[0]
        == errors[1]
        == "error: DATA: expected a time on every row, found missing values in 'time'"
    )


def test_series_plot_draws_at_most_twelve_features_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--series-plot drew one panel per feature however many (55 features: a figure of
    1100 x 11594 pixels), where the other plots draw the first 12 and say so."""
    import gpvae.app.cli.tables as tables
    from gpvae.app.cli import main

    df = _frame(S=3, T=12)
    extra = {f"f{k:02d}": df["pm"] + k for k in range(12)}
    model, train, new = _fit_sites(df.assign(**extra), "s0", tmp_path)
    figures = []
    save = tables.save_figure
    monkeypatch.setattr(tables, "save_figure", lambda fig, *a: (figures.append(fig), save(fig, *a)))
    series = tmp_path / "series.png"
    args = ["predict-sites", str(model), str(train), str(new), "-o", str(tmp_path / "p.csv")]
    assert main([*args, "--num-samples", "4", "--series-plot", str(series)]) == 0
    out = capsys.readouterr().out
    assert "--series-plot: drawing the first 12 of the 14 features (one panel each)" in out
    (fig,) = figures
    assert [ax.get_ylabel() for ax in fig.axes] == ["pm", "temp", *list(extra)[:10]]


def test_predict_sites_feature_without_plot_warns_that_it_is_ignored(
    spatial_model: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--feature (the map's feature) without --plot was ignored without a word."""
    from gpvae.app.cli import main

    model, train, new = spatial_model
    args = ["predict-sites", str(model), str(train), str(new), "-o", str(tmp_path / "p.csv")]
    args += ["--num-samples", "4", "--feature", "temp"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "warning: --feature: expected with --plot (it chooses the feature that --plot's" in err
    assert "found no --plot; it is ignored: every feature is predicted" in err
    assert main([*args, "--plot", str(tmp_path / "m.png")]) == 0
    assert "--feature" not in capsys.readouterr().err
