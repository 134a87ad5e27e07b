"""Tests of the ``gpvae`` command line.

End-to-end tests run the CLI as a subprocess (``python -m gpvae`` and once the installed
``gpvae`` script) on small CSV and Parquet files, long and wide. Error handling is checked
both in a subprocess (exit code, a single ``error:`` line, no traceback) and, for the many
cases, in-process through :func:`gpvae.app.cli.main`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gpvae import GPVAE, settings
from gpvae.app.cli import main
from gpvae.app.cli.columns import CLI_FILE, ColumnSpec, merge_back, parse_times, spec_from_fit
from gpvae.app.cli.errors import CLIError
from gpvae.app.cli.tables import read_table, write_table

FEATURES = ["temp", "humidity", "wind"]
FIT_OPTIONS = ["--epochs", "4", "--latent-dim", "2", "--hidden", "16,16", "--quiet"]


def _keep_figures(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    """The figures that ``gpvae.app.plots.<name>`` returns from now on (it still draws them)."""
    from gpvae.app import plots

    figures: list[Any] = []
    real = getattr(plots, name)

    def keep(*args: Any, **kwargs: Any) -> Any:
        figures.append(real(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(plots, name, keep)
    return figures


def run_cli(*args: str | Path, script: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh process; returns the finished process (never raises)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("GPVAE_DEBUG", None)
    if script:
        exe = Path(sys.executable).with_name("gpvae")
        if not exe.is_file():
            pytest.skip(f"the installed gpvae script is not next to {sys.executable}")
        cmd = [str(exe)]
    else:
        cmd = [sys.executable, "-m", "gpvae"]
    return subprocess.run(
        [*cmd, *map(str, args)], capture_output=True, text=True, env=env, timeout=600
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr


def _one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


# ---------------------------------------------------------------- data


def _long_frame(seed: int = 0) -> pd.DataFrame:
    """3 series of 36-48 irregular numeric times, 3 correlated features, ~20% missing."""
    rng = np.random.default_rng(seed)
    rows = []
    for sid, T in zip(["a", "b", "c"], [40, 36, 48]):
        t = np.cumsum(rng.uniform(0.5, 1.5, size=T))
        base = np.sin(t / 4.0 + rng.uniform(0, 6))
        vals = np.stack([20 + 5 * base, 60 - 10 * base, 3 + rng.normal(size=T)], axis=1)
        vals += 0.1 * rng.normal(size=vals.shape)
        vals[rng.random(vals.shape) < 0.2] = np.nan
        for k in range(T):
            rows.append({"station": sid, "t": t[k], **dict(zip(FEATURES, vals[k]))})
    frame = pd.DataFrame(rows)
    # Shuffle the rows: outputs must keep this order.
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _wide_frame(seed: int = 1) -> pd.DataFrame:
    """One daily series of 80 days with a date column and a non-feature text column."""
    rng = np.random.default_rng(seed)
    T = 80
    base = np.sin(np.arange(T) / 6.0)
    vals = np.stack([20 + 5 * base, 60 - 10 * base, 3 + rng.normal(size=T)], axis=1)
    vals[rng.random(vals.shape) < 0.25] = np.nan
    frame = pd.DataFrame(vals, columns=FEATURES)
    frame.insert(0, "date", pd.date_range("2021-03-01", periods=T, freq="D"))
    frame["note"] = ["x"] * T
    return frame


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli_data")
    paths = {"long_csv": d / "long.csv", "wide_parquet": d / "wide.parquet"}
    _long_frame().to_csv(paths["long_csv"], index=False)
    _wide_frame().to_parquet(paths["wide_parquet"], index=False)
    return paths


@pytest.fixture(scope="module")
def long_model(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("long_model")
    proc = run_cli("fit", files["long_csv"], "--time-col", "t", "--id-col", "station",
                   "-o", out, *FIT_OPTIONS)  # fmt: skip
    _ok(proc)
    return out


@pytest.fixture(scope="module")
def wide_model(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wide_model")
    proc = run_cli("fit", files["wide_parquet"], "--time-col", "date", "--features",
                   ",".join(FEATURES), "-o", out, "--window", "30", *FIT_OPTIONS)  # fmt: skip
    _ok(proc)
    return out


def _check_imputed(original: pd.DataFrame, out: pd.DataFrame) -> None:
    assert len(out) == len(original)
    for col in original.columns:
        assert col in out.columns
    assert list(out.columns[: len(original.columns)]) == list(original.columns)
    for f in FEATURES:
        obs = original[f].notna().to_numpy()
        np.testing.assert_array_equal(out[f].to_numpy()[obs], original[f].to_numpy()[obs])
        for part in ("", "_lower", "_upper"):
            assert out[f + part].notna().all(), f"NaN left in {f + part}"
        lo, mid, up = (out[f + p].to_numpy() for p in ("_lower", "", "_upper"))
        assert (lo <= mid + 1e-9).all()
        assert (mid <= up + 1e-9).all()
        assert (up[~obs] > lo[~obs]).all()  # real intervals where missing
        np.testing.assert_array_equal(lo[obs], mid[obs])


# ---------------------------------------------------------------- end to end


def test_fit_writes_model_and_layout(long_model: Path) -> None:
    spec = json.loads((long_model / CLI_FILE).read_text())
    assert spec["time_col"] == "t"
    assert spec["id_col"] == "station"
    assert spec["features"] == FEATURES
    assert spec["time_type"] == "numeric"
    assert 0.5 < spec["time_step"] < 1.5
    # detect's threshold is the profile stored with the model (below); cli.json's threshold
    # (a quantile of the training scores, read from folders written before the profile) is
    # no longer computed
    assert spec["threshold"] is None
    assert spec["threshold_quantile"] is None
    assert (long_model / "model").is_dir()
    profile = GPVAE.load(long_model / "model").anomaly_profile_
    assert profile is not None
    assert np.isfinite(profile.threshold)
    assert profile.false_alarm_rate == 0.01


def test_fit_with_the_imputation_settings(files: dict[str, Path], tmp_path: Path) -> None:
    """--interp-skip, --interp-cross(-options), --interp-blend, --mask-rate/--mask-pattern,
    --val-pattern and --block-lengths reach the saved model; its imputation keeps the observed
    values."""
    from gpvae import GPVAE

    out = tmp_path / "m"
    proc = run_cli("fit", files["long_csv"], "--time-col", "t", "--id-col", "station",
                   "-o", out, *FIT_OPTIONS, "--interp-skip", "--interp-cross", "--interp-blend",
                   "--interp-cross-options", "fill+fit+fade", "--mask-rate", "0.2",
                   "--mask-pattern", "blocks", "--val-pattern", "blocks",
                   "--block-lengths", "3,6")  # fmt: skip
    _ok(proc)
    est = GPVAE.load(out / "model")
    assert est.interp_skip
    assert est.interp_cross == "fill+fit+fade"
    assert est.interp_blend
    assert est.blend_weight_ is not None
    assert ((est.blend_weight_ >= 0) & (est.blend_weight_ <= 1)).all()
    assert (est.mask_rate, est.mask_pattern) == (0.2, "blocks")
    assert (est.val_pattern, est.block_lengths) == ("blocks", (3, 6))
    assert est.model_.interp_fusion is not None
    assert est.model_.interp_fusion.cross
    imputed = tmp_path / "imputed.csv"
    _ok(run_cli("impute", out, files["long_csv"], "-o", imputed))
    _check_imputed(pd.read_csv(files["long_csv"]), pd.read_csv(imputed))


def test_impute_long_csv(long_model: Path, files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "imputed.csv"
    plot = tmp_path / "imputed.png"
    proc = run_cli("impute", long_model, files["long_csv"], "-o", out, "--num-samples", "30",
                   "--plot", plot, "--series", "b")  # fmt: skip
    _ok(proc)
    original = pd.read_csv(files["long_csv"])
    result = pd.read_csv(out)
    _check_imputed(original, result)
    np.testing.assert_array_equal(result["station"], original["station"])
    np.testing.assert_array_equal(result["t"], original["t"])
    assert plot.is_file()
    assert plot.stat().st_size > 5_000


def test_impute_wide_parquet_via_installed_script(
    wide_model: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "imputed.parquet"
    proc = run_cli("impute", wide_model, files["wide_parquet"], "-o", out, "--num-samples", "30",
                   script=True)  # fmt: skip
    _ok(proc)
    original = pd.read_parquet(files["wide_parquet"])
    result = pd.read_parquet(out)
    _check_imputed(original, result)
    assert (result["note"] == "x").all()
    assert pd.api.types.is_datetime64_any_dtype(result["date"])


def test_impute_parquet_with_model_fit_on_csv(
    long_model: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    """The layout is stored at fit: any format of the same columns can be imputed."""
    src = tmp_path / "long.parquet"
    original = pd.read_csv(files["long_csv"])
    original.to_parquet(src, index=False)
    out = tmp_path / "imputed.csv"
    _ok(run_cli("impute", long_model, src, "-o", out, "--num-samples", "20"))
    _check_imputed(original, pd.read_csv(out))


def test_forecast_long(long_model: Path, files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "fc.csv"
    plot = tmp_path / "fc.png"
    proc = run_cli("forecast", long_model, files["long_csv"], "--horizon", "5", "-o", out,
                   "--num-samples", "30", "--plot", plot)  # fmt: skip
    _ok(proc)
    fc = pd.read_csv(out)
    original = pd.read_csv(files["long_csv"])
    assert len(fc) == 3 * 5
    assert set(fc["station"]) == {"a", "b", "c"}
    for sid, part in fc.groupby("station"):
        last = original.loc[original["station"] == sid, "t"].max()
        assert (part["t"] > last).all()
        assert np.all(np.diff(part["t"].to_numpy()) > 0)
    for f in FEATURES:
        assert fc[[f, f + "_lower", f + "_upper"]].notna().all().all()
        assert (fc[f + "_lower"] <= fc[f]).all()
        assert (fc[f] <= fc[f + "_upper"]).all()
    assert plot.is_file()


def test_forecast_wide_keeps_dates(
    wide_model: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "fc.parquet"
    _ok(run_cli("forecast", wide_model, files["wide_parquet"], "--horizon", "7", "-o", out))
    fc = pd.read_parquet(out)
    assert len(fc) == 7
    dates = pd.to_datetime(fc["date"])
    assert dates.iloc[0] == pd.Timestamp("2021-05-20")  # the day after the last (80 days)
    assert (dates.diff().dropna() == pd.Timedelta(days=1)).all()


def test_detect_scores_and_flags(long_model: Path, files: dict[str, Path], tmp_path: Path) -> None:
    original = pd.read_csv(files["long_csv"])
    spiked = original.copy()
    row = int(np.flatnonzero(spiked["temp"].notna().to_numpy())[10])
    spiked.loc[row, "temp"] = spiked["temp"].max() + 40.0  # an obvious outlier
    src = tmp_path / "spiked.csv"
    spiked.to_csv(src, index=False)
    out = tmp_path / "scores.csv"
    plot = tmp_path / "scores.png"
    proc = run_cli("detect", long_model, src, "-o", out, "--quantile", "0.98", "--plot", plot)
    _ok(proc)
    res = pd.read_csv(out)
    assert len(res) == len(original)
    assert {"score", "anomaly", *(f + "_score" for f in FEATURES)} <= set(res.columns)
    for f in FEATURES:  # entry scores exactly where observed
        np.testing.assert_array_equal(res[f + "_score"].notna(), spiked[f].notna())
    assert res["anomaly"].dtype == bool
    assert 1 <= res["anomaly"].sum() <= 3
    assert bool(res.loc[row, "anomaly"])
    assert res["score"].idxmax() == row
    assert plot.is_file()
    # Default threshold: the one stored with the model by fit.
    _ok(run_cli("detect", long_model, src, "-o", out))
    assert "anomaly" in pd.read_csv(out).columns


def test_detect_reports_intervals_in_the_users_times_and_labels(
    wide_model: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    frame = pd.read_parquet(files["wide_parquet"])
    frame.loc[40:44, "temp"] = frame["temp"].max() + 30.0  # a 5-day fault
    frame["incident"] = 0
    frame.loc[40:44, "incident"] = 1
    src, out, ivs, plot = (tmp_path / n for n in ("new.csv", "s.csv", "iv.csv", "s.png"))
    frame.to_csv(src, index=False)
    proc = run_cli("detect", wide_model, src, "-o", out, "--intervals", ivs,
                   "--labels", "incident", "--plot", plot)  # fmt: skip
    _ok(proc)
    table = pd.read_csv(ivs)
    assert list(table.columns) == ["start", "end", "peak_time", "peak_score", "max_score",
                                   "steps", "features"]  # fmt: skip
    hit = table[(table["start"] <= "2021-04-14") & (table["end"] >= "2021-04-10")]
    assert len(hit) >= 1, table
    best = hit.sort_values("max_score").iloc[-1]
    # each interval's max_score is the highest score column inside it
    scores = pd.read_csv(out)
    for _, iv in table.iterrows():
        inside = scores[(scores["date"] >= iv["start"]) & (scores["date"] <= iv["end"])]
        assert iv["max_score"] == pytest.approx(inside["score"].max(), rel=1e-12)
    assert best["features"].split(";")[0] == "temp"
    assert str(best["start"]).startswith("2021-04-1")  # the file's own dates, not hours
    assert "labels 'incident': flagged" in proc.stdout
    assert plot.is_file()
    res = pd.read_csv(out)
    assert res.loc[40:44, "anomaly"].any()


def test_fit_stores_causal_scores_and_the_spread_for_detect(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """--causal-scores and --spread-baseline go into the stored profile, which detect
    then uses (a 5-day fault is still flagged)."""
    prof = _fit_then_detect_a_fault(files, tmp_path, "--causal-scores", "--spread-baseline")
    assert prof["causal"] is True
    assert prof["spread"] is True


def _fit_then_detect_a_fault(files: dict[str, Path], tmp_path: Path, *flags: str) -> Any:
    """Fit on the wide data with ``flags``, check that detect flags a 5-day fault added to
    new data, and return the stored anomaly profile."""
    out = tmp_path / "m"
    _ok(run_cli("fit", files["wide_parquet"], "--time-col", "date", "--features",
                ",".join(FEATURES), "-o", out, "--window", "30", *flags,
                *FIT_OPTIONS))  # fmt: skip
    cfg = json.loads((out / "model" / "config.json").read_text())
    prof = next(v["anomaly_profile"] for v in cfg.values()
                if isinstance(v, dict) and "anomaly_profile" in v)  # fmt: skip
    frame = pd.read_parquet(files["wide_parquet"])
    frame.loc[40:44, "temp"] = frame["temp"].max() + 30.0
    src, res = tmp_path / "new.csv", tmp_path / "s.csv"
    frame.to_csv(src, index=False)
    _ok(run_cli("detect", out, src, "-o", res))
    assert pd.read_csv(res).loc[40:44, "anomaly"].any()
    return prof


def test_fit_stores_the_tail_scale_and_max_for_detect(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """--feature-scale tail, --combine max, --novelty extrapolate and --no-spread-baseline go
    into the stored profile, which detect then uses (a 5-day fault is still flagged)."""
    prof = _fit_then_detect_a_fault(files, tmp_path, "--feature-scale", "tail", "--combine", "max",
                                    "--novelty", "extrapolate", "--no-spread-baseline")  # fmt: skip
    assert prof["feature_scale"] == "tail"
    assert prof["combine"] == "max"
    assert len(prof["tail_beta"]) == len(FEATURES)
    assert prof["spread"] is False
    assert prof["alarm_cap"] is None


def test_fit_stores_the_default_alarm(wide_model: Path) -> None:
    """Without flags the stored profile has the spread alarm, the novelty cap, the
    spread's quantile and the rank's window (settings.ANOMALY_SPREAD, ANOMALY_NOVELTY,
    ANOMALY_SPREAD_QUANTILE, ANOMALY_RANK_WINDOW)."""
    cfg = json.loads((wide_model / "model" / "config.json").read_text())
    prof = next(v["anomaly_profile"] for v in cfg.values()
                if isinstance(v, dict) and "anomaly_profile" in v)  # fmt: skip
    assert prof["spread"] is True
    assert len(prof["alarm_cap"]) == len(FEATURES)
    assert prof["spread_quantile"] == settings.ANOMALY_SPREAD_QUANTILE
    assert prof["rank_window"] == settings.ANOMALY_RANK_WINDOW == 256
    assert len(prof["rank_reference"]) == 256


def test_fit_stores_the_spread_quantile_for_detect(files: dict[str, Path], tmp_path: Path) -> None:
    """--spread-quantile goes into the stored profile, which detect then uses; a value
    outside (0.5, 1) is refused, naming the option."""
    prof = _fit_then_detect_a_fault(files, tmp_path, "--spread-quantile", "0.97")
    assert prof["spread_quantile"] == 0.97
    res = run_cli("fit", files["wide_parquet"], "--time-col", "date", "-o", tmp_path / "bad",
                  "--spread-quantile", "1.5")  # fmt: skip
    assert res.returncode != 0
    assert "--spread-quantile" in res.stderr


def test_fit_stores_the_rank_window_for_detect(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--rank-window goes into the stored profile, which detect then uses (0: the spread
    alarm, no reference); a window of 1 step is refused, naming the option, before the fit."""
    prof = _fit_then_detect_a_fault(files, tmp_path, "--rank-window", "64")
    assert prof["rank_window"] == 64
    assert len(prof["rank_reference"]) == 64
    (tmp_path / "zero").mkdir()
    prof = _fit_then_detect_a_fault(files, tmp_path / "zero", "--rank-window", "0")
    assert prof["rank_window"] == 0
    assert prof["rank_reference"] is None
    out = tmp_path / "bad"
    for bad in ("1", str(settings.ANOMALY_RANK_WINDOW_MAX + 1)):
        args = ["fit", str(files["wide_parquet"]), "--time-col", "date", "-o", str(out),
                "--rank-window", bad]  # fmt: skip
        _, line = _main_error(capsys, args)
        assert "--rank-window" in line
        assert f"2 to {settings.ANOMALY_RANK_WINDOW_MAX} steps" in line
        assert not out.exists()


@pytest.mark.parametrize("model_flags", [["--difference"], ["--members", "2"]])
def test_fit_of_a_forecaster_refuses_the_false_alarm_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model_flags: list[str]
) -> None:
    """A model of increments or an ensemble gets no detect threshold: --false-alarm-rate
    (silently ignored before) is refused by name before DATA is read, like --smooth."""
    model = tmp_path / "model"
    args = ["fit", str(tmp_path / "absent.csv"), "--time-col", "day", "-o", str(model)]
    assert main([*args, "--quiet", *model_flags, "--false-alarm-rate", "0.05"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: --false-alarm-rate: sets detect's anomaly threshold"), err
    assert "forecasts and backtests only" in err[0]
    assert not model.exists()


def test_fit_scores_the_training_data_once_for_the_threshold(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fit scores the training data once, for the profile that detect uses (fit_threshold);
    a second pass with 50 draws only wrote a quantile into cli.json that detect never read."""
    from gpvae.estimator import anomaly

    passes: list[int] = []
    real = anomaly.entry_scores

    def counted(*args: Any, **kwargs: Any) -> Any:
        passes.append(int(args[2]))  # the draws of the pass
        return real(*args, **kwargs)

    def scored(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("fit called anomaly_scores")

    monkeypatch.setattr(anomaly, "entry_scores", counted)
    monkeypatch.setattr(GPVAE, "anomaly_scores", scored)
    out = tmp_path / "m"
    args = ["fit", str(files["wide_parquet"]), "--time-col", "date", "--features",
            ",".join(FEATURES), "-o", str(out), "--window", "30", *FIT_OPTIONS]  # fmt: skip
    assert main(args) == 0
    assert 50 not in passes, passes
    spec = json.loads((out / CLI_FILE).read_text())
    assert spec["threshold"] is None
    assert GPVAE.load(out / "model").anomaly_profile_ is not None


def test_detect_labels_column_errors(
    wide_model: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    frame = pd.read_parquet(files["wide_parquet"])
    frame["flag"] = 2
    src = tmp_path / "bad.csv"
    frame.to_csv(src, index=False)
    _one_error_line(run_cli("detect", wide_model, src, "-o", tmp_path / "o.csv", "--labels",
                            "nope"), "--labels", "unknown column")  # fmt: skip
    _one_error_line(run_cli("detect", wide_model, src, "-o", tmp_path / "o.csv", "--labels",
                            "flag"), "--labels", "0/1")  # fmt: skip


def test_detect_checks_the_labels_column_before_scoring(
    wide_model: Path,
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A misspelt or non-0/1 --labels column is refused before DATA is scored (it was
    reported only after every row had been scored)."""
    frame = pd.read_parquet(files["wide_parquet"])
    frame["incident"] = 2
    src = tmp_path / "new.csv"
    frame.to_csv(src, index=False)

    def scored(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("DATA was scored before --labels was checked")

    monkeypatch.setattr(GPVAE, "anomaly_scores", scored)
    for col, needle in (("incidnet", "unknown column"), ("incident", "0/1")):
        args = ["detect", str(wide_model), str(src), "-o", str(tmp_path / "o.csv")]
        assert main([*args, "--labels", col]) != 0
        err = capsys.readouterr().err
        assert "--labels" in err, err
        assert needle in err, err
    assert not (tmp_path / "o.csv").exists()


def test_detect_names_the_empty_cells_of_the_labels_column(
    wide_model: Path, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty cell in a 0/1 --labels column gave "found other values", naming neither the
    cell nor its row (as for a column of yes/no)."""
    frame = pd.read_parquet(files["wide_parquet"])
    frame["incident"] = 0.0
    frame.loc[[3, 9], "incident"] = np.nan
    src = tmp_path / "new.csv"
    frame.to_csv(src, index=False)
    args = ["detect", str(wide_model), str(src), "-o", str(tmp_path / "o.csv")]
    _, line = _main_error(capsys, [*args, "--labels", "incident"])
    assert "expected a label on every row of column 'incident'" in line, line
    assert "found 2 empty cell(s) (row 3, 9;" in line, line
    frame["incident"] = "no"
    frame.loc[4, "incident"] = "yes"
    frame.to_csv(src, index=False)
    _, line = _main_error(capsys, [*args, "--labels", "incident"])
    assert "found other values such as 'no' (row 0; rows counted from 0 after the" in line, line
    # a whole number is shown as written (audit, session 47: it read np.int64(2))
    frame["incident"] = 0
    frame.loc[6, "incident"] = 2
    frame.to_csv(src, index=False)
    _, line = _main_error(capsys, [*args, "--labels", "incident"])
    assert "found other values such as 2 (row 6;" in line, line


def test_fit_summary_names_the_epoch_it_kept(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The summary said "after 16 epochs" only, though the model keeps the epoch of the best
    validation score (early stopping ends the fit patience epochs after it)."""
    out = tmp_path / "m"
    args = ["fit", str(files["long_csv"]), "--time-col", "t", "--id-col", "station", "-o"]
    assert main([*args, str(out), "--epochs", "8", "--latent-dim", "2", "--hidden", "8",
                 "--lr", "0.05", "--quiet"]) == 0  # fmt: skip
    said = capsys.readouterr().out
    (line,) = [text for text in said.splitlines() if text.startswith("fitted on")]
    history = GPVAE.load(out / "model").history_
    scores = [h["val_score"] for h in history]
    best = int(np.argmin(scores))
    assert history[best]["validated"] == 1.0
    assert f"after {len(history)} epochs, kept epoch {best + 1} (best validation score " in line
    assert f"{scores[best]:.4g})" in line, line


def test_fit_interrupted_says_what_is_kept_and_how_to_resume(
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C during fit printed a bare "error: aborted" (click turns KeyboardInterrupt into
    Abort): it says the fit was interrupted, that the checkpoint is kept (when one was
    written) and that --resume continues from it; the exit code stays 130."""
    written = {"checkpoint": True}

    def stopped(self: Any, *args: Any, **kwargs: Any) -> Any:
        if written["checkpoint"]:
            (Path(self.checkpoint_dir) / "checkpoint.safetensors").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(GPVAE, "fit", stopped)
    for checkpoint in (True, False):
        written["checkpoint"] = checkpoint
        out = tmp_path / f"m{checkpoint}"
        args = ["fit", str(files["long_csv"]), "--time-col", "t", "--id-col", "station"]
        assert main([*args, "-o", str(out), "--quiet"]) == 130
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(lines) == 1, lines
        assert lines[0].startswith("error: fit: interrupted (Ctrl-C)"), lines
        if checkpoint:
            assert repr(str(out / "checkpoints")) + " is kept" in lines[0], lines
            assert "rerun the same command with --resume" in lines[0], lines
        else:
            assert "--resume" not in lines[0], lines
        assert "(MODEL_DIR holds no model until a fit ends)" in lines[0], lines
        assert not (out / "model").exists()
    # a MODEL_DIR that held a model keeps it (audit, session 47: it said it held none)
    before = tmp_path / "mTrue" / "model"
    before.mkdir()
    (before / "config.json").write_text("{}")
    assert main([*args, "-o", str(tmp_path / "mTrue"), "--quiet"]) == 130
    line = capsys.readouterr().err.strip()
    assert line.endswith("(MODEL_DIR keeps its previous model, unchanged, until a fit ends)")
    assert (before / "config.json").read_text() == "{}"
    # elsewhere (here while impute loads the model): an interruption, not "aborted"
    import importlib

    def loading(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    command = importlib.import_module("gpvae.app.cli.commands.impute")
    monkeypatch.setattr(command, "load_model", loading)
    args = ["impute", str(tmp_path / "m"), str(files["long_csv"]), "-o", "o.csv"]
    assert main(args) == 130
    assert capsys.readouterr().err.strip() == "error: interrupted (Ctrl-C)"


def test_impute_writes_observed_true_false_cells_as_written(
    long_model: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    """Observed TRUE/FALSE cells of a feature column with empty cells came back from impute
    as 1.0/0.0; they are written as DATA wrote them (the gaps get numbers)."""
    frame = pd.read_csv(files["long_csv"])
    gaps = frame["wind"].isna()
    frame["wind"] = np.where(frame["wind"] > 3, "TRUE", "FALSE")
    data = tmp_path / "truth.csv"
    frame.assign(wind=frame["wind"].where(~gaps, "")).to_csv(data, index=False)
    out = tmp_path / "o.csv"
    _ok(run_cli("impute", long_model, data, "-o", out, "--num-samples", "19"))
    back = pd.read_csv(out, dtype=str, keep_default_na=False)
    for col in ("wind", "wind_lower", "wind_upper"):
        assert back.loc[~gaps, col].tolist() == frame.loc[~gaps, "wind"].tolist(), col
    assert np.isfinite(back.loc[gaps, "wind"].astype(float)).all()


def test_duplicate_dates_are_reported_as_written(files: dict[str, Path], tmp_path: Path) -> None:
    frame = pd.read_parquet(files["wide_parquet"])
    frame.loc[5, "date"] = frame.loc[4, "date"]
    src = tmp_path / "dup.csv"
    frame.to_csv(src, index=False)
    proc = run_cli("fit", src, "--time-col", "date", "--features", ",".join(FEATURES),
                   "-o", tmp_path / "m", *FIT_OPTIONS)  # fmt: skip
    _one_error_line(proc, "duplicate time 2021-03-05")


def test_sample_long_table(long_model: Path, wide_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    plot = tmp_path / "s.png"
    _ok(run_cli("sample", long_model, "--length", "12", "-n", "3", "-o", out, "--plot", plot))
    s = pd.read_csv(out)
    assert list(s.columns) == ["station", "t", *FEATURES]
    assert len(s) == 36
    assert sorted(s["station"].unique()) == [0, 1, 2]
    assert s[FEATURES].notna().all().all()
    assert plot.is_file()
    out2 = tmp_path / "s.parquet"
    _ok(run_cli("sample", wide_model, "--length", "10", "-n", "2", "-o", out2))
    s2 = pd.read_parquet(out2)
    assert len(s2) == 20
    assert pd.api.types.is_datetime64_any_dtype(s2["date"])
    # --no-noise: the smooth signal along the same latent paths (the same seed)
    smooth = tmp_path / "smooth.csv"
    _ok(run_cli("sample", long_model, "--length", "12", "-n", "3", "-o", smooth, "--no-noise"))
    signal = pd.read_csv(smooth)
    assert signal.shape == s.shape
    steps = [float(np.abs(np.diff(f[FEATURES].to_numpy(), axis=0)).mean()) for f in (s, signal)]
    assert steps[1] < steps[0]


@pytest.mark.parametrize(("freq", "expected"), [("MS", "MS"), ("5min", "5min")])
def test_sample_times_follow_the_training_calendar(
    freq: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A monthly model's samples were laid out hourly, and 5-minute data's at times such
    as 21:19:59.999999998 (float hours)."""
    t = pd.date_range("2000-01-01 21:15", periods=60, freq=freq)
    data = tmp_path / "d.csv"
    pd.DataFrame({"when": t, "v": np.sin(np.arange(60) / 5.0)}).to_csv(data, index=False)
    model, out = tmp_path / "m", tmp_path / "s.csv"
    fit = ["fit", str(data), "--time-col", "when", "-o", str(model), "--epochs", "1"]
    assert main([*fit, "--latent-dim", "2", "--hidden", "8", "--quiet"]) == 0, capsys.readouterr()
    assert main(["sample", str(model), "--length", "5", "-o", str(out)]) == 0
    shown = pd.DatetimeIndex(pd.to_datetime(pd.read_csv(out)["when"]))
    assert list(shown) == list(pd.date_range(t[0], periods=5, freq=expected))


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["sample", "v", "w"], "sample_id"),  # the time column is 'sample'
        (["t", "sample", "sample_id"], "sample_id_2"),  # features 'sample' and 'sample_id'
        (["t", "v", "sample_id"], "sample"),  # 'sample' is free
    ],
)
def test_sample_id_column_never_overwrites_a_data_column(
    names: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file whose time column (or a feature) was named 'sample' got its draw ids
    overwritten by the times (or the feature): the draws could not be told apart."""
    k = np.arange(30)
    frame = pd.DataFrame({names[0]: k * 2.0, names[1]: np.sin(k / 4), names[2]: np.cos(k / 5)})
    data, model, out = tmp_path / "d.csv", tmp_path / "m", tmp_path / "s.csv"
    frame.to_csv(data, index=False)
    fit = ["fit", str(data), "--time-col", names[0], "-o", str(model), "--epochs", "1"]
    assert main([*fit, "--latent-dim", "2", "--hidden", "8", "--quiet"]) == 0, capsys.readouterr()
    capsys.readouterr()
    assert main(["sample", str(model), "--length", "3", "-n", "2", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    s = pd.read_csv(out)
    assert list(s.columns) == [expected, *names]
    assert list(s[expected]) == [0, 0, 0, 1, 1, 1]
    assert list(s[names[0]]) == [0.0, 2.0, 4.0] * 2
    assert s[names[1:]].notna().all().all()
    renamed = f"the draws' id column is named '{expected}' ('sample' is a column of the data)"
    assert (renamed in said) == (expected != "sample")


def test_errors_after_fit_are_one_line(long_model: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"station": ["a", "a"], "t": [0.0, 1.0], "temp": [1.0, 2.0]}).to_csv(wrong)
    proc = run_cli("impute", long_model, wrong, "-o", tmp_path / "o.csv")
    _one_error_line(proc, "humidity")


# ---------------------------------------------------------------- errors, subprocess


def test_missing_file_subprocess(tmp_path: Path) -> None:
    proc = run_cli("fit", tmp_path / "nope.csv", "--time-col", "t", "-o", tmp_path / "m")
    _one_error_line(proc, "file not found", "nope.csv")
    assert proc.returncode == 1


def test_unknown_column_subprocess(files: dict[str, Path], tmp_path: Path) -> None:
    proc = run_cli("fit", files["long_csv"], "--time-col", "time", "-o", tmp_path / "m")
    _one_error_line(proc, "--time-col", "'time'")


def test_bad_option_subprocess_and_debug_traceback(files: dict[str, Path], tmp_path: Path) -> None:
    proc = run_cli("fit", files["long_csv"], "--time-col", "t", "-o", tmp_path / "m",
                   "--epochs", "-3")  # fmt: skip
    _one_error_line(proc, "--epochs")
    assert proc.returncode == 2
    proc = run_cli("--debug", "fit", tmp_path / "nope.csv", "--time-col", "t", "-o", tmp_path)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("command", ["demo", "fit", "impute", "forecast", "detect", "sample"])
def test_help_of_every_command_has_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example:" in out
    assert f"gpvae {command} " in out.split("Example:")[1]


@pytest.mark.parametrize(
    ("command", "option"),
    [
        ("impute", "--plot"),
        ("forecast", "--plot"),
        ("detect", "--plot"),
        ("sample", "--plot"),
        ("predict-sites", "--plot"),
        ("predict-sites", "--series-plot"),
    ],
)
def test_plot_help_names_every_image_format(
    command: str, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--plot's help said "to this .png" (or "(PNG/PDF path)") where .pdf, .svg and .jpg
    are written too; then named .jpg but not .jpeg, which is written too, and
    predict-sites' --series-plot named no format."""
    assert main([command, "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())  # the lines as click wraps them
    shown = help_text.split(f"{option} TEXT ")[1].split(" --")[0]
    assert "(.png, .pdf, .svg, .jpg or .jpeg)" in shown


def test_top_level_help_subprocess_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    proc = run_cli("--help")
    _ok(proc)
    for command in ["demo", "fit", "impute", "forecast", "detect", "sample"]:
        assert command in proc.stdout
    assert main(["--version"]) == 0
    assert "gpvae" in capsys.readouterr().out


# ---------------------------------------------------------------- errors, in process


def _main_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    return code, lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        pytest.param(["fit", "{dir}/x.txt", "--time-col", "t", "-o", "{dir}/m"], ".txt",
                     id="wrong-extension"),
        pytest.param(["fit", "{dir}/missing.parquet", "--time-col", "t", "-o", "{dir}/m"],
                     "file not found", id="missing-parquet"),
        pytest.param(["fit", "{dir}/garbage.parquet", "--time-col", "t", "-o", "{dir}/m"],
                     "could not read", id="unreadable-parquet"),
        pytest.param(["fit", "{dir}/empty.csv", "--time-col", "t", "-o", "{dir}/m"],
                     "could not read", id="empty-csv"),
        pytest.param(["fit", "{long}", "-o", "{dir}/m"], "--time-col", id="missing-time-col"),
        pytest.param(["fit", "{long}", "--time-col", "t", "--id-col", "site", "-o", "{dir}/m"],
                     "'site'", id="unknown-id-col"),
        pytest.param(["fit", "{long}", "--time-col", "t", "--id-col", "station", "--features",
                      "temp,rain", "-o", "{dir}/m"], "'rain'", id="unknown-feature"),
        pytest.param(["fit", "{long}", "--time-col", "t", "--id-col", "station", "-o",
                      "{dir}/m", "--hidden", "a,b"], "--hidden", id="bad-hidden"),
        pytest.param(["fit", "{long}", "--time-col", "t", "--lr", "0", "-o", "{dir}/m"],
                     "--lr", id="bad-lr"),
        pytest.param(["fit", "{long}", "--time-col", "t", "--kernel", "foo", "-o", "{dir}/m"],
                     "kernel", id="unknown-kernel"),
        pytest.param(["fit", "{long}", "--time-col", "t", "--encoder", "rnn", "-o", "{dir}/m"],
                     "--encoder", id="unknown-encoder"),
        pytest.param(["fit", "{long}", "--time-col", "t", "--id-col", "station", "--encoder",
                      "cnn", "-o", "{dir}/m"], "--encoder: 'cnn'", id="cnn-on-non-square-frames"),
        pytest.param(["fit", "{long}", "--time-col", "station", "-o", "{dir}/m"],
                     "time column", id="text-time-column"),
        pytest.param(["fit", "{long}", "--time-col", "t", "--id-col", "station", "--mask-rate",
                      "0.2", "--mask-pattern", "sites", "-o", "{dir}/m"], "--mask-pattern",
                     id="sites-mask-without-coords"),
        pytest.param(["fit", "{long}", "--time-col", "t", "--block-lengths", "9", "-o",
                      "{dir}/m"], "--block-lengths", id="bad-block-lengths"),
        pytest.param(["fit", "{long}", "--time-col", "t", "--block-lengths", "9,2", "-o",
                      "{dir}/m"], "--block-lengths", id="block-lengths-out-of-order"),
        pytest.param(["fit", "{long}", "--time-col", "t", "--mask-rate", "1", "-o",
                      "{dir}/m"], "--mask-rate", id="mask-rate-one"),
        pytest.param(["impute", "{dir}/no_model", "{long}", "-o", "{dir}/o.csv"], "MODEL_DIR",
                     id="missing-model-dir"),
        pytest.param(["impute", "{dir}", "{long}", "-o", "{dir}/o.csv"], "cli.json",
                     id="not-a-model-dir"),
        pytest.param(["impute", "{dir}", "{long}", "-o", "{dir}/o.xlsx"], ".xlsx",
                     id="wrong-output-extension"),
        pytest.param(["impute", "{dir}", "{long}", "-o", "{dir}/o.csv", "--level", "1.5"],
                     "--level", id="bad-level"),
        pytest.param(["forecast", "{dir}", "{long}", "-o", "{dir}/o.csv"], "--horizon",
                     id="missing-horizon"),
        pytest.param(["detect", "{dir}", "{long}", "-o", "{dir}/o.csv", "--threshold", "1",
                      "--quantile", "0.9"], "both", id="threshold-and-quantile"),
        pytest.param(["sample", "{dir}", "--length", "0", "-o", "{dir}/o.csv"], "--length",
                     id="bad-length"),
        pytest.param(["impute", "{dir}", "{long}", "-o", "{dir}/o.csv", "--plot", "{dir}/p.txt"],
                     "--plot", id="bad-plot-name"),
        pytest.param(["nonsense"], "No such command", id="unknown-command"),
    ],
)  # fmt: skip
def test_bad_input_in_process(
    args: list[str],
    needle: str,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "garbage.parquet").write_bytes(b"this is not parquet")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "x.txt").write_text("t,a\n1,2\n")
    filled = [a.format(dir=tmp_path, long=files["long_csv"]) for a in args]
    _, line = _main_error(capsys, filled)
    assert needle in line


@pytest.mark.parametrize(
    ("command", "extra", "needle"),
    [
        ("forecast", ["--horizon", "10000000000000"], "error: --horizon: "),
        (
            "forecast",
            ["--horizon", "3", "--num-samples", "10000000000000"],
            "error: --num-samples, DATA: ",  # the history is the longer part
        ),
        ("impute", ["--num-samples", "10000000000000"], "error: --num-samples: "),
        ("detect", ["--num-samples", "10000000000000"], "error: --num-samples: "),
        ("sample", ["--length", "10000000000000"], "error: --length: "),
    ],
)
def test_sizes_beyond_memory_name_the_option(
    command: str,
    extra: list[str],
    needle: str,
    long_model: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "o.csv"
    data = [] if command == "sample" else [str(files["long_csv"])]
    code, line = _main_error(capsys, [command, str(long_model), *data, "-o", str(out), *extra])
    assert code == 1
    assert needle in line
    assert "GiB" in line
    assert not out.exists()


def test_gpvae_error_in_data_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Errors from the data layer (here duplicate times) reach the user as one line."""
    src = tmp_path / "dup.csv"
    pd.DataFrame({"t": [0.0, 0.0, 1.0], "a": [1.0, 2.0, 3.0]}).to_csv(src, index=False)
    code, line = _main_error(capsys, ["fit", str(src), "--time-col", "t", "-o", str(tmp_path)])
    assert code == 1
    assert "duplicate time" in line


@pytest.mark.parametrize("command", ["impute", "forecast"])
def test_num_samples_too_few_for_the_interval(
    command: str,
    long_model: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One draw is refused before OUT is written; draws too few for --level warn, naming
    --num-samples and the draws the level needs."""
    out = tmp_path / "o.csv"
    args = [command, str(long_model), str(files["long_csv"]), "-o", str(out)]
    args += ["--horizon", "2"] if command == "forecast" else []
    for too_few in ("0", "1"):  # refused alike, as a bad option (audit M #7)
        code, line = _main_error(capsys, [*args, "--num-samples", too_few])
        assert code == 2
        assert line.startswith(
            "error: Invalid value for '--num-samples': expected at least 2 draws for the "
            f"interval [lower, upper], found {too_few}"
        ), line
        assert not out.exists()
    assert main([*args, "--num-samples", "8", "--level", "0.8"]) == 0
    err = capsys.readouterr().err
    assert "warning: --num-samples: 8 draws are too few" in err
    assert "needs at least 9 draws" in err
    assert main([*args, "--num-samples", "9", "--level", "0.8"]) == 0
    assert "warning: --num-samples" not in capsys.readouterr().err  # (forecast: uncalibrated)


def test_numbers_for_a_model_fitted_on_dates_warn(
    wide_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model fitted on dates read a DATA file whose time column holds numbers as hours,
    silently; it still does (numbers are accepted, in the model's unit), with a warning
    naming the time column."""
    frame = _wide_frame().iloc[:30].copy()
    src = tmp_path / "numbers.csv"
    frame.assign(date=np.arange(30) * 24.0).to_csv(src, index=False)
    assert main(["impute", str(wide_model), str(src), "-o", str(tmp_path / "o.csv")]) == 0
    err = capsys.readouterr().err
    assert "warning: DATA['date']: expected datetimes or durations like the training" in err
    assert "found numbers: they are read as hours since the training data's first time" in err
    dates = tmp_path / "dates.csv"
    frame.to_csv(dates, index=False)
    assert main(["impute", str(wide_model), str(dates), "-o", str(tmp_path / "d.csv")]) == 0
    assert "expected datetimes" not in capsys.readouterr().err


def test_fit_on_dates_does_not_warn_about_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """fit learned detect's threshold from the fitted series' times as numbers (hours), so
    every fit on dates warned 'DATA: expected datetimes ..., found numbers' about its own
    DATA. It passes the series as read."""
    src = tmp_path / "dates.csv"
    _wide_frame().to_csv(src, index=False)
    fit = ["fit", str(src), "--time-col", "date", "--features", ",".join(FEATURES)]
    assert main([*fit, "-o", str(tmp_path / "m"), *FIT_OPTIONS]) == 0
    err = capsys.readouterr().err
    assert "expected datetimes" not in err
    assert "found numbers" not in err


def _sine_model(tmp_path: Path, length: int, horizon: int) -> tuple[Path, Path, list[str]]:
    """(DATA, MODEL_DIR, fit's arguments without the net's size) of two sinusoids of
    ``length`` steps, the model fitted with ``--forecast-horizon horizon`` (1 epoch)."""
    k = np.arange(length)
    data, model = tmp_path / "d.csv", tmp_path / "m"
    pd.DataFrame({"t": k, "a": np.sin(k / 4.0), "b": np.cos(k / 6.0)}).to_csv(data, index=False)
    fit = ["fit", str(data), "--time-col", "t", "-o", str(model), "--forecast-horizon",
           str(horizon)]  # fmt: skip
    assert main([*fit, "--epochs", "1", "--latent-dim", "2", "--hidden", "8", "--quiet"]) == 0
    return data, model, fit


def test_forecast_past_the_calibrated_horizon_gives_a_cli_remedy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """gpvae forecast past the calibrated horizon advised 'calibrate_forecast(DATA,
    --horizon 30)', a Python call written with a command-line flag: it advises a refit with
    --forecast-horizon (the API keeps its calibrate_forecast, test_forecasting)."""
    data, model, fit = _sine_model(tmp_path, 120, 10)
    capsys.readouterr()
    out = str(tmp_path / "fc.csv")
    assert main(["forecast", str(model), str(data), "--horizon", "30", "-o", out]) == 0
    err = capsys.readouterr().err
    assert "warning: --horizon: steps beyond the calibrated forecast_horizon=10" in err
    assert "(refit with 'gpvae fit --forecast-horizon 30' to calibrate them)" in err
    assert "calibrate_forecast(" not in err
    plain = tmp_path / "plain"  # no calibration at all
    assert main([*fit[:5], str(plain), "--epochs", "1", "--latent-dim", "2", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["forecast", str(plain), str(data), "--horizon", "3", "-o", out]) == 0
    err = capsys.readouterr().err
    assert "warning: forecast_horizon: the forecast intervals are the model's own" in err
    assert err.count("warning: ") == 1
    assert "level: refit with 'gpvae fit --forecast-horizon H' to calibrate them\n" in err


def test_backtest_past_the_calibrated_horizon_gives_a_cli_remedy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """gpvae backtest advised 'calibrate_forecast(X, horizon=12)', a Python call, where
    gpvae forecast advises a refit with --forecast-horizon."""
    data, model, _ = _sine_model(tmp_path, 200, 5)
    capsys.readouterr()
    out = str(tmp_path / "b.json")
    backtest = ["backtest", str(model), str(data), "--horizon", "12", "--origins", "2", "-o", out]
    assert main(backtest) == 0
    err = capsys.readouterr().err
    assert "steps beyond the calibrated forecast_horizon=5" in err
    assert "(refit with 'gpvae fit --forecast-horizon 12' to calibrate them)" in err
    assert "calibrate_forecast(" not in err


def test_a_text_feature_names_the_cli_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The data layer's advice names its own argument (feature_cols); the command line's
    names --features."""
    src = tmp_path / "x.csv"
    frame = pd.DataFrame({"t": np.arange(10.0), "a": np.arange(10.0), "b": ["1.0x"] * 10})
    frame.to_csv(src, index=False)
    fit = ["fit", str(src), "--time-col", "t", "--features", "a,b", "-o", str(tmp_path / "m")]
    _, line = _main_error(capsys, fit)
    assert line.startswith("error: DATA['b']: expected numeric values")
    assert "'1.0x'" in line
    assert "leave the column out of the features ('gpvae fit --features')" in line
    assert "feature_cols" not in line


@pytest.mark.parametrize("command", ["impute", "forecast", "detect"])
def test_series_is_checked_before_any_work(
    command: str,
    long_model: Path,
    wide_model: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unknown --series id, or --series for a model of one series (a wide file), is an
    error before OUT is written (it was reported after OUT, or ignored)."""
    out, plot = tmp_path / "o.csv", tmp_path / "p.png"
    extra = ["--horizon", "2"] if command == "forecast" else []
    for model, data, series, needle in (
        (long_model, files["long_csv"], "nope", "--series: unknown id 'nope'; ids are e.g."),
        (wide_model, files["wide_parquet"], "b", "--series: expected no --series for DATA of one"),
    ):
        args = [command, str(model), str(data), "-o", str(out), *extra, "--series", series]
        _, line = _main_error(capsys, [*args, "--plot", str(plot)])
        assert needle in line
        assert not out.exists()
        assert not plot.exists()


def test_detect_describes_an_interval_of_one_step_in_the_singular() -> None:
    from gpvae.app.cli.commands.detect import describe_intervals

    spec = ColumnSpec(time_col="t", id_col=None, features=["a"])
    intervals = pd.DataFrame(
        {
            "start": [3.0, 10.0],
            "end": [3.0, 12.0],
            "peak_time": [3.0, 11.0],
            "peak_score": [0.999, 0.999],
            "max_score": [5.0, 9.0],
            "steps": [1, 3],
            "features": ["a", ""],
        }
    )
    # the highest score first: the peak alarms, ranks, tie
    lines = describe_intervals(intervals, spec)
    assert lines == [
        "  10.0 .. 12.0 (3 steps), highest score 9, peak alarm 0.999 at 11.0; features -",
        "  3.0 .. 3.0 (1 step), highest score 5, peak alarm 0.999 at 3.0; features a",
    ]


def test_merge_duplicate_times_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The duplicate-times error of a command points at its --merge-duplicate-times (not at
    a Python function); with it, fit merges the rows and says which; impute, which writes a
    row per row of DATA, asks for the rows to be merged first."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"t": np.arange(30.0), "a": rng.normal(size=30), "b": rng.normal(size=30)})
    frame.loc[7, "t"] = 6.0  # rows 6 and 7 share t = 6
    src = tmp_path / "dup.csv"
    frame.to_csv(src, index=False)
    fit = ["fit", str(src), "--time-col", "t", "-o", str(tmp_path / "m"), *FIT_OPTIONS]
    _, line = _main_error(capsys, fit)
    assert "duplicate time 6.0" in line
    assert "--merge-duplicate-times" in line
    assert "gpvae.data" not in line
    assert main([*fit, "--merge-duplicate-times"]) == 0
    out = capsys.readouterr().out
    assert "merged 2 rows of DATA into 1" in out
    assert "rows 6, 7 (time 6.0)" in out
    for command in ("impute", "detect"):  # without the option: the same advice
        out = tmp_path / f"{command}.csv"
        _, line = _main_error(capsys, [command, str(tmp_path / "m"), str(src), "-o", str(out)])
        assert "duplicate time 6.0" in line
        assert "--merge-duplicate-times" in line
        assert not out.exists()


def test_impute_and_detect_merge_duplicate_times_one_row_per_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """impute and detect with --merge-duplicate-times: the rows that share a time are one
    step for the model, and OUT still has one row per row of DATA, in DATA's order. impute
    keeps each row's own observed values (and intervals equal to them), filling its gaps
    from the merged step (the other row's value where only that one observed it); detect
    gives every merged row its step's scores and flag, and counts steps, not rows."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"t": np.arange(40.0), "a": rng.normal(size=40), "b": rng.normal(size=40)})
    frame.loc[7, "t"] = 6.0  # rows 6 and 7 share t = 6
    frame.loc[21, "t"] = 20.0  # rows 20 and 21 share t = 20
    frame.loc[7, "a"] = np.nan  # only row 6 observes a at t = 6
    frame.loc[6, "b"] = np.nan  # only row 7 observes b there
    frame.loc[[20, 21], "a"] = np.nan  # neither observes a at t = 20
    frame.loc[[3, 30], "b"] = np.nan
    frame = frame.iloc[rng.permutation(40)].reset_index(drop=True)  # rows in any order
    src = tmp_path / "dup.csv"
    frame.to_csv(src, index=False)
    model = tmp_path / "m"
    fit = ["fit", str(src), "--time-col", "t", "-o", str(model), "--merge-duplicate-times"]
    assert main([*fit, *FIT_OPTIONS]) == 0
    capsys.readouterr()
    out = tmp_path / "i.csv"
    assert main(["impute", str(model), str(src), "-o", str(out), "--merge-duplicate-times"]) == 0
    assert "merged 4 rows of DATA into 2" in capsys.readouterr().out
    got, back = pd.read_csv(out), pd.read_csv(src)
    assert len(got) == 40
    np.testing.assert_array_equal(got["t"], back["t"])
    for f in ("a", "b"):
        seen = back[f].notna().to_numpy()
        np.testing.assert_array_equal(got[f].to_numpy()[seen], back[f].to_numpy()[seen])
        for end in ("lower", "upper"):
            np.testing.assert_array_equal(got[f"{f}_{end}"].to_numpy()[seen], got[f][seen])
        assert np.isfinite(got[f]).all()
    at6 = np.flatnonzero(back["t"].to_numpy() == 6.0)
    r6, r7 = (at6[back["a"].to_numpy()[at6] == back["a"].to_numpy()[at6]][0],
              at6[np.isnan(back["a"].to_numpy()[at6])][0])  # fmt: skip
    assert got["a"][r7] == back["a"][r6]  # the merged step observed a: row 6's value
    assert got["b"][r6] == back["b"][r7]
    at20 = np.flatnonzero(back["t"].to_numpy() == 20.0)
    assert got["a"][at20[0]] == got["a"][at20[1]]  # one imputation for the merged step
    assert got["a_lower"][at20[0]] < got["a"][at20[0]] < got["a_upper"][at20[0]]

    scores, intervals = tmp_path / "s.csv", tmp_path / "iv.csv"
    detect = ["detect", str(model), str(src), "-o", str(scores), "--merge-duplicate-times"]
    assert main([*detect, "--quantile", "0.5", "--intervals", str(intervals)]) == 0
    text = capsys.readouterr().out
    assert "of 38 scored steps" in text  # 40 rows, 38 distinct (series, time) steps
    everything = tmp_path / "iv_all.csv"  # every step flagged: one interval of 38 steps
    flag_all = ["detect", str(model), str(src), "-o", str(tmp_path / "s_all.csv"),
                "--merge-duplicate-times", "--threshold", "-1e9"]  # fmt: skip
    assert main([*flag_all, "--intervals", str(everything)]) == 0
    assert "flagged 38 of 38 scored steps (100.00%) in 1 intervals" in capsys.readouterr().out
    assert pd.read_csv(everything)["steps"].tolist() == [38]
    s = pd.read_csv(scores)
    assert len(s) == 40
    np.testing.assert_array_equal(s["t"], back["t"])
    for rows in (at6, at20):
        for col in ("score", "a_score", "b_score", "anomaly"):
            a, b = s[col].to_numpy()[rows]
            assert a == b or (np.isnan(a) and np.isnan(b)), col
    assert pd.read_csv(intervals)["steps"].sum() == s.drop(index=[at6[1], at20[1]])["anomaly"].sum()


def test_merged_rows_follow_merge_duplicate_times_order() -> None:
    """merged_rows numbers each row's (series, time) group in the order in which
    merge_duplicate_times writes the merged rows: the first rows of the groups carry the
    merged table's keys, row for row, with series and rows in any order."""
    from gpvae.app.cli.columns import first_rows, merged_rows
    from gpvae.data import merge_duplicate_times

    frame = _long_frame(3)
    frame.loc[5, ["station", "t"]] = frame.loc[2, ["station", "t"]].to_numpy()
    frame.loc[9, ["station", "t"]] = frame.loc[2, ["station", "t"]].to_numpy()
    frame.loc[11, ["station", "t"]] = frame.loc[40, ["station", "t"]].to_numpy()
    spec = ColumnSpec(time_col="t", id_col="station", features=FEATURES)
    rows = merged_rows(frame, spec, "DATA")
    with pytest.warns(UserWarning, match="merged 5 rows into 2"):
        merged = merge_duplicate_times(frame[["station", "t", *FEATURES]], id_col="station",
                                       time_col="t").X  # fmt: skip
    assert len(merged) == len(frame) - 3 == rows.max() + 1
    firsts = frame.iloc[first_rows(rows)]
    np.testing.assert_array_equal(firsts["station"], merged["station"])
    np.testing.assert_array_equal(firsts["t"], merged["t"])
    assert rows[5] == rows[9] == rows[2]
    assert rows[11] == rows[40]


# ---------------------------------------------------------------- helpers


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.parquet", "t.pq"])
def test_table_round_trip_keeps_values_bit_for_bit(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"id": ["a", "b", "c"], "x": rng.normal(size=3) / 7.0})
    frame.loc[1, "x"] = np.nan
    write_table(frame, tmp_path / "sub" / name)  # creates the folder
    back = read_table(tmp_path / "sub" / name)
    pd.testing.assert_frame_equal(back, frame)


def test_column_spec_round_trip(tmp_path: Path) -> None:
    spec = ColumnSpec("date", None, ["a", "b"], "datetime", 24.0, "2020-01-01T00:00:00", 3.5, 0.99)
    spec.save(tmp_path)
    assert ColumnSpec.load(tmp_path) == spec
    data = json.loads((tmp_path / CLI_FILE).read_text())
    assert data["format_version"] == 1


def test_fit_with_gp_noise_likelihood_then_impute(files: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "gp_model"
    _ok(run_cli("fit", files["long_csv"], "--time-col", "t", "--id-col", "station", "-o", model,
                "--likelihood", "gaussian_gp", *FIT_OPTIONS))  # fmt: skip
    config = json.loads((model / "model" / "config.json").read_text())
    assert "gaussian_gp" in json.dumps(config)
    out = tmp_path / "imputed.csv"
    _ok(run_cli("impute", model, files["long_csv"], "-o", out, "--num-samples", "20"))
    _check_imputed(pd.read_csv(files["long_csv"]), pd.read_csv(out))


def test_fit_no_calibrate_keeps_unit_interval_factors(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "m"
    proc = run_cli("fit", files["long_csv"], "--time-col", "t", "--id-col", "station",
                   "-o", out, *FIT_OPTIONS, "--no-calibrate")  # fmt: skip
    _ok(proc)
    from gpvae import GPVAE

    model = GPVAE.load(out / "model")
    assert model.calibrate is False
    assert (model.interval_scale_ == 1).all()


# ---------------------------------------------------------------- choices and --lengthscale


def test_fit_choices_come_from_the_registries(capsys: pytest.CaptureFixture[str]) -> None:
    from gpvae.kernels import kernel_names
    from gpvae.likelihoods import likelihood_names
    from gpvae.nets.registry import encoder_names

    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    assert f"[{'|'.join(kernel_names())}]" in out
    assert "white" in kernel_names()
    assert f"[{'|'.join(encoder_names())}]" in out
    assert f"[{'|'.join(likelihood_names())}]" in out
    assert "--lengthscale" in out


def test_val_and_mask_pattern_take_whole_steps() -> None:
    """--val-pattern and --mask-pattern take "steps" (runs of whole steps, every feature
    hidden) beside points and blocks."""
    import click

    from gpvae.app.cli.commands.fit import fit

    params = {p.name: p for p in fit.params}
    for name in ("val_pattern", "mask_pattern"):
        kind = params[name].type
        assert isinstance(kind, click.Choice)
        assert {"points", "blocks", "steps"} <= set(kind.choices)


@pytest.mark.parametrize(
    ("given", "key"),
    [("matern32", "matern32"), ("Matern32", "matern32"), ("SE", "se"), ("white", "white"),
     ("rational-quadratic", "rational_quadratic")],
)  # fmt: skip
def test_kernel_option_takes_what_the_registry_takes(given: str, key: str) -> None:
    """Other cases, '-' for '_' and aliases pass (as the estimator takes them); the help and
    the error list the canonical names."""
    import click

    from gpvae.app.cli.options import RegistryChoice
    from gpvae.kernels import kernel_key, kernel_names

    choice = RegistryChoice(kernel_names(), kernel_key)
    assert choice.convert(given, None, None) == key
    with pytest.raises(click.BadParameter, match="'white'"):
        choice.convert("foo", None, None)


@pytest.mark.parametrize("lengthscale", [None, 5.0, (2.0, 5.0, 9.0)])
def test_fit_lengthscale_sets_the_initial_kernels(
    lengthscale: float | tuple[float, ...] | None, files: dict[str, Path], tmp_path: Path
) -> None:
    """--lengthscale (in time steps) starts every latent channel's kernel there, or each
    channel at its own value of a comma-separated list; without it, the estimator's default.
    One epoch at tiny learning rates (the networks' and the kernel's own) leaves it in
    place."""
    from gpvae import GPVAE
    from gpvae.settings import DEFAULT_LENGTHSCALE

    out = tmp_path / "m"
    text = ",".join(map(str, lengthscale)) if isinstance(lengthscale, tuple) else lengthscale
    given = [] if lengthscale is None else ["--lengthscale", str(text)]
    code = main(["fit", str(files["long_csv"]), "--time-col", "t", "--id-col", "station",
                 "-o", str(out), "--epochs", "1", "--lr", "1e-9", "--kernel-lr", "1e-9",
                 "--latent-dim", "3",
                 "--hidden", "8", "--quiet", *given])  # fmt: skip
    assert code == 0
    model = GPVAE.load(out / "model")
    assert model.lengthscale == lengthscale
    expected = DEFAULT_LENGTHSCALE if lengthscale is None else lengthscale
    if not isinstance(expected, tuple):
        expected = (expected,) * 3
    kernels = list(model.model_.prior.kernels)
    assert len(kernels) == 3
    for kernel, value in zip(kernels, expected):
        assert float(kernel.lengthscale.detach()) == pytest.approx(value, rel=1e-4)


def test_fit_noise_lr_reaches_the_estimator(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--noise-lr sets GPVAE(noise_lr=...), the learning rate of the likelihood's noise
    (without it: None, the noise at --lr)."""
    from gpvae import GPVAE

    for given, expected in (([], None), (["--noise-lr", "0.02"], 0.02)):
        out = tmp_path / f"m{len(given)}"
        code = main(["fit", str(files["long_csv"]), "--time-col", "t", "--id-col", "station",
                     "-o", str(out), "--epochs", "1", "--latent-dim", "2", "--hidden", "8",
                     "--quiet", *given])  # fmt: skip
        assert code == 0
        assert GPVAE.load(out / "model").noise_lr == expected
    code = main(["fit", str(files["long_csv"]), "--time-col", "t", "-o", str(tmp_path / "x"),
                 "--noise-lr", "0"])  # fmt: skip
    assert code != 0
    assert "--noise-lr" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "match"),
    [("2,x", "comma-separated numbers"), ("2,-1,3", "positive numbers"),
     ("2,5", "one number or 3")],
)  # fmt: skip
def test_fit_lengthscale_refuses_bad_lists_before_reading_data(
    given: str, match: str, files: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "m"
    code = main(["fit", str(files["long_csv"]), "--time-col", "t", "--id-col", "station",
                 "-o", str(out), "--epochs", "1", "--latent-dim", "3", "--quiet",
                 "--lengthscale", given])  # fmt: skip
    assert code != 0
    err = capsys.readouterr().err
    assert "lengthscale" in err
    assert match in err
    assert not (out / "model").exists()


def test_fit_blames_features_for_a_column_of_written_out_missing_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A feature whose only entry is "n.a." (the others empty) is a numeric column written
    badly, not a text column to leave out silently; a real text column (labels) still is."""
    src = tmp_path / "d.csv"
    src.write_text("t,a,b,label\n1,n.a.,,ok\n2,,1.5,fail\n3,,2.5,ok\n")
    args = ["fit", str(src), "--time-col", "t", "-o", str(tmp_path / "m"), "--epochs", "1"]
    _, line = _main_error(capsys, [*args, "--quiet"])
    assert "--features" in line
    assert "'a'" in line
    src.write_text("t,b,label\n1,0.5,ok\n2,1.5,fail\n3,2.5,ok\n")
    assert main([*args, "--quiet"]) == 0  # the label column is left out


@pytest.mark.parametrize("command", ["impute", "forecast", "detect"])
def test_out_that_is_data_is_refused_and_data_kept(
    command: str,
    long_model: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """-o naming DATA itself would replace the input (its missing entries) with the output."""
    data = tmp_path / "data.csv"
    data.write_bytes(files["long_csv"].read_bytes())
    extra = ["--horizon", "2"] if command == "forecast" else []
    code, line = _main_error(capsys, [command, str(long_model), str(data), "-o", str(data), *extra])
    assert code == 1
    assert line.startswith("error: OUT: ")
    assert "DATA" in line
    assert data.read_bytes() == files["long_csv"].read_bytes()


def test_out_folder_that_holds_data_is_refused_and_its_parts_kept(
    long_model: Path, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An OUT folder's old parts are removed before the run: never when they are DATA."""
    folder = tmp_path / "data"
    folder.mkdir()
    part = folder / "part-00000-from-spark.parquet"
    pd.read_csv(files["long_csv"]).to_parquet(part, index=False)
    before = part.read_bytes()
    code, line = _main_error(capsys, ["impute", str(long_model), str(folder), "-o", str(folder)])
    assert code == 1
    assert line.startswith("error: OUT: ")
    assert "DATA" in line
    assert part.read_bytes() == before


@pytest.mark.parametrize(
    ("command", "drop", "needle"),
    [
        ("impute", "t", "the time column 't'"),
        ("forecast", "station", "the id column 'station'"),
        ("detect", "humidity", "the feature column 'humidity'"),
    ],
)
def test_missing_column_after_fit_names_data_and_the_recorded_layout(
    command: str,
    drop: str,
    needle: str,
    long_model: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """impute/forecast/detect have no --time-col, --id-col or --features: the error names
    DATA and the column that fit recorded in MODEL_DIR."""
    data = tmp_path / "data.csv"
    pd.read_csv(files["long_csv"]).drop(columns=drop).to_csv(data, index=False)
    extra = ["--horizon", "2"] if command == "forecast" else []
    args = [command, str(long_model), str(data), "-o", str(tmp_path / "o.csv"), *extra]
    code, line = _main_error(capsys, args)
    assert code == 1
    assert line.startswith("error: DATA: ")
    assert needle in line
    assert "MODEL_DIR" in line


@pytest.mark.parametrize("rank", [True, False])
def test_detect_plot_flags_the_steps_the_output_flags(
    rank: bool,
    long_model: Path,
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the threshold stored by fit, 'anomaly' compares the alarm with it, not the
    score: the plot must flag those steps. The spread alarm (the score's rise over its
    recent level; --rank-window 0) is drawn under the threshold line (it drew the score,
    without the line); the rank alarm (the default), a share of the recent steps that fills
    a band from 0 to 1, is not: the score is drawn, with the flagged steps and no line."""
    model = long_model
    if not rank:
        model = tmp_path / "spread"
        _ok(run_cli("fit", files["long_csv"], "--time-col", "t", "--id-col", "station",
                    "-o", model, "--rank-window", "0", *FIT_OPTIONS))  # fmt: skip
    figures = _keep_figures(monkeypatch, "plot_anomalies")
    out = tmp_path / "scores.csv"
    args = ["detect", str(model), str(files["long_csv"]), "-o", str(out)]
    assert main([*args, "--plot", str(tmp_path / "scores.png"), "--series", "b"]) == 0
    res = pd.read_csv(out)
    shown = int(res.loc[res["station"] == "b", "anomaly"].sum())
    legends = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert f"flagged ({shown})" in legends, legends
    curve = "score" if rank else "alarm"  # OUT's column drawn, named so
    assert curve in legends, legends
    assert any(text.startswith("threshold") for text in legends) is not rank, legends
    # the axis names the curve as the legend does (it said "anomaly score" over the alarm)
    assert figures[0].axes[0].get_ylabel() == ("anomaly score" if rank else "alarm")
    drawn = np.asarray(figures[0].axes[0].lines[0].get_ydata(), dtype=np.float64)
    part = res[res["station"] == "b"].sort_values("t", kind="stable")
    np.testing.assert_allclose(drawn, part[curve].to_numpy(), equal_nan=True)


def test_detect_writes_the_alarm_that_the_threshold_is_compared_with(
    long_model: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    """With the stored threshold, OUT's 'alarm' is the score compared with it ('anomaly'
    exactly where alarm > threshold; 'score' does not follow it), the summary names that
    column, and each interval's peak is its highest alarm; with --quantile, alarm = score."""
    frame = pd.read_csv(files["long_csv"])
    frame.loc[frame.index[20:24], "temp"] = frame["temp"].max() + 40.0
    src, out, ivs = tmp_path / "new.csv", tmp_path / "s.csv", tmp_path / "iv.csv"
    frame.to_csv(src, index=False)
    proc = run_cli("detect", long_model, src, "-o", out, "--intervals", ivs)
    _ok(proc)
    assert "whose alarm (OUT's alarm column) is above" in proc.stdout
    prof = GPVAE.load(long_model / "model").anomaly_profile_
    assert prof is not None
    res, table = pd.read_csv(out), pd.read_csv(ivs)
    assert list(res.columns[-2:]) == ["alarm", "anomaly"]
    np.testing.assert_array_equal(
        res["anomaly"].to_numpy(), np.nan_to_num(res["alarm"], nan=-np.inf) > prof.threshold
    )
    assert len(table) >= 1
    for _, iv in table.iterrows():
        part = res[res["station"] == iv["station"]].sort_values("t")
        inside = part[(part["t"] >= iv["start"]) & (part["t"] <= iv["end"])]
        assert iv["peak_score"] == pytest.approx(inside["alarm"].max(), rel=1e-12)
        assert iv["peak_time"] == inside.loc[inside["alarm"].idxmax(), "t"]
        assert iv["peak_score"] > prof.threshold
    _ok(run_cli("detect", long_model, src, "-o", out, "--quantile", "0.98"))
    res = pd.read_csv(out)
    np.testing.assert_array_equal(res["alarm"].to_numpy(), res["score"].to_numpy())


def test_detect_shares_are_out_of_the_scored_steps(
    long_model: Path, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A step with nothing observed has no score and is never flagged: the summary's flagged
    share, and --labels' shares, are out of the scored steps, and the unscored ones are
    counted apart (detect said "flagged 0.94% of 3073 unlabelled steps" when 948 of them had
    no score, 1.36% of the scored ones). With --merge-duplicate-times the label shares count
    steps, not rows of DATA."""
    frame = pd.read_csv(files["long_csv"])
    rng = np.random.default_rng(3)
    blank = rng.random(len(frame)) < 0.3
    frame.loc[blank, FEATURES] = np.nan
    frame["incident"] = (np.arange(len(frame)) % 7 == 0).astype(int)
    src, out = tmp_path / "gappy.csv", tmp_path / "s.csv"
    frame.to_csv(src, index=False)
    args = ["detect", str(long_model), str(src), "-o", str(out), "--quantile", "0.5"]
    assert main([*args, "--labels", "incident"]) == 0
    text = capsys.readouterr().out
    res = pd.read_csv(out)
    scored = res["score"].notna().to_numpy()
    hit = res["anomaly"].to_numpy(dtype=bool)
    empty = frame[FEATURES].isna().all(axis=1).to_numpy()  # blanked, or already empty
    np.testing.assert_array_equal(~scored, empty)
    assert empty.sum() >= blank.sum() > 0
    assert not hit[~scored].any()
    assert (
        f"flagged {hit.sum()} of {scored.sum()} scored steps ({hit.mean() / scored.mean():.2%})"
        in text
    ), text
    assert f"{(~scored).sum()} steps of {len(res)} had no score" in text, text
    lab = frame["incident"].to_numpy() == 1
    for name, mask in (("labelled", lab), ("unlabelled", ~lab)):
        n = (mask & scored).sum()
        gone = (mask & ~scored).sum()
        want = f"{hit[mask & scored].mean():.2%} of {n} scored {name} steps ({gone} unscored)"
        assert want in text, text
    # merged rows: three times of station a given twice, labelled; each is one step
    dup = frame[(frame["station"] == "a")].dropna(subset=FEATURES).iloc[:3].copy()
    merged = pd.concat([frame.assign(incident=0), dup.assign(incident=1)], ignore_index=True)
    merged.loc[merged.index[:-3], "incident"] = 0
    key = set(zip(dup["station"], dup["t"]))
    twins = np.array([(s, t) in key for s, t in zip(merged["station"], merged["t"])])
    merged.loc[twins, "incident"] = 1
    merged.to_csv(src, index=False)
    assert main([*args, "--labels", "incident", "--merge-duplicate-times"]) == 0
    text = capsys.readouterr().out
    res = pd.read_csv(out)
    steps = res.drop_duplicates(["station", "t"])
    assert twins.sum() == 6
    assert len(steps) == len(res) - 3
    on = steps["incident"].to_numpy() == 1
    flagged = steps["anomaly"].to_numpy(dtype=bool)
    assert f"{flagged[on].mean():.2%} of 3 scored labelled steps (0 unscored)" in text, text
    n_off = int((~on & steps["score"].notna().to_numpy()).sum())
    assert f"of {n_off} scored unlabelled steps" in text, text


def test_detect_intervals_end_where_rows_are_missing(
    wide_model: Path, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Daily data with ten days of rows missing, every step flagged: detect joined the
    steps either side of the gap into one interval (it ran over the missing days); the gap
    ends an interval, as steps with nothing observed do."""
    frame = pd.read_parquet(files["wide_parquet"]).drop(index=range(30, 40))
    frame[FEATURES] = frame[FEATURES].ffill().bfill()  # every step scored
    src, out, ivs = tmp_path / "gap.csv", tmp_path / "s.csv", tmp_path / "iv.csv"
    frame.to_csv(src, index=False)
    args = ["detect", str(wide_model), str(src), "-o", str(out), "--intervals", str(ivs)]
    assert main([*args, "--threshold", "-1e9"]) == 0
    assert "in 2 intervals" in capsys.readouterr().out
    table = pd.read_csv(ivs)
    assert table["start"].tolist() == ["2021-03-01", "2021-04-10"]
    assert table["end"].tolist() == ["2021-03-30", "2021-05-19"]
    assert table["steps"].tolist() == [30, 40]


def test_fit_warns_of_a_false_alarm_rate_finer_than_its_data(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """fit --false-alarm-rate 0.00001 on 3,468 normal steps stored, silently, a threshold
    that flagged 0.1% (100 times the target): below half a step in the scored steps, it
    warns in the command line's words."""
    fit = ["fit", str(files["long_csv"]), "--time-col", "t", "--id-col", "station"]
    fit += ["-o", str(tmp_path / "m"), *FIT_OPTIONS]
    assert main([*fit, "--false-alarm-rate", "0.00001"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    n = int(pd.read_csv(files["long_csv"])[FEATURES].notna().any(axis=1).sum())  # scored
    assert f"--false-alarm-rate: 1e-05 is below 1 / (2 x {n}): the threshold flags 1 of" in said
    assert f"of the {n} scored steps of the normal data (1/{n} = " in said
    assert "needs at least 50000 scored normal steps" in said
    assert "false_alarm_rate" not in said


def test_detect_help_explains_the_rank_alarm_and_its_plot(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """detect --help explained the alarm column by 'gpvae fit --spread-baseline' only and said
    --plot draws the alarm with the threshold, while the default alarm is the rank among the
    previous steps (--rank-window, 256) and its plot draws the score with no line."""
    assert main(["detect", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "rank of the step's score among those of the previous steps" in text
    assert "'gpvae fit --rank-window' (default 256)" in text
    assert "fitted with --rank-window 0" in text
    assert "its score column with the flagged steps and no threshold line" in text


def test_fit_says_the_threshold_it_stored(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """gpvae fit stored detect's threshold without a word on it: it says its value, the
    alarm it is compared with (the rank among the previous W steps, or the spread
    baseline) and its target false-alarm rate."""
    fit = ["fit", str(files["long_csv"]), "--time-col", "t", "--id-col", "station"]
    for extra, alarm in (
        (["--rank-window", "32"], "the step's rank among the previous 32 steps"),
        (["--rank-window", "0"], "divided by its spread there (--rank-window 0"),
    ):
        out = tmp_path / extra[-1]
        argv = [*fit, "-o", str(out), *FIT_OPTIONS, "--false-alarm-rate", "0.02", *extra]
        assert main(argv) == 0
        said = capsys.readouterr().out
        prof = GPVAE.load(out / "model").anomaly_profile_
        assert prof is not None
        lines = [ln for ln in said.splitlines() if ln.startswith("stored detect's threshold")]
        assert len(lines) == 1, said
        assert f"threshold: {prof.threshold:.4g} on the alarm " in lines[0]
        assert alarm in lines[0]
        assert f"--false-alarm-rate of 0.02 on the {prof.num_steps} scored steps" in lines[0]


@pytest.mark.parametrize("clash", ["OUT", "DATA"])
def test_detect_intervals_that_would_replace_out_or_data_are_refused(
    clash: str,
    long_model: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, out = tmp_path / "data.csv", tmp_path / "scores.csv"
    data.write_bytes(files["long_csv"].read_bytes())
    target = out if clash == "OUT" else data
    args = ["detect", str(long_model), str(data), "-o", str(out), "--intervals", str(target)]
    code, line = _main_error(capsys, args)
    assert code == 1
    assert line.startswith("error: --intervals: ")
    assert clash in line
    assert data.read_bytes() == files["long_csv"].read_bytes()
    assert not out.exists()


def test_unparsable_time_names_the_value_that_does_not_parse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "dates.csv"
    dates = pd.date_range("2024-01-01", periods=6, freq="D").strftime("%Y-%m-%d").tolist()
    dates[3] = "soon"
    pd.DataFrame({"date": dates, "a": np.arange(6.0)}).to_csv(src, index=False)
    args = ["fit", str(src), "--time-col", "date", "-o", str(tmp_path / "m")]
    code, line = _main_error(capsys, args)
    assert code == 1
    assert "found values such as 'soon'" in line
    assert "2024-01-01" not in line


@pytest.mark.parametrize("style", ["%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y %H:%M", "%d %B %Y"])
def test_dates_are_read_with_one_format_for_the_whole_column(style: str) -> None:
    """Day-first dates were read value by value: days 1-12 month-first, days 13-31
    day-first, so the series was scrambled without a word."""
    from gpvae.app.cli.columns import parse_times

    days = pd.date_range("2021-03-01", periods=40, freq="D")
    frame = pd.DataFrame({"date": days.strftime(style), "a": np.arange(40.0)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unambiguous: no warning
        parsed = parse_times(frame, "date", "DATA")["date"]
    assert (parsed.to_numpy() == days.to_numpy()).all()


def test_dates_in_two_formats_in_one_column_are_read_in_one_order_or_refused() -> None:
    """A column mixing ISO and slashed dates (a spreadsheet's export) was read value by
    value, the slashed ones month-first, without a word: 03/01/2021 (3 January) became
    1 March. The slashed dates are now read in the one order their values allow (day-first
    when a day above 12 comes first); a column whose values allow either order beside
    other formats, or that holds both orders, is refused, naming two rows."""
    days = pd.date_range("2021-01-01", periods=30, freq="D")
    written = [d.strftime("%Y-%m-%d" if k % 2 else "%d/%m/%Y") for k, d in enumerate(days)]
    frame = pd.DataFrame({"id": "s0", "time": written, "a": np.arange(30.0)})
    parsed = parse_times(frame, "time", "DATA")["time"]
    assert list(parsed) == list(days)  # 13/01/2021 and later say day-first for them all
    with pytest.raises(CLIError) as caught:  # days 1-12 only: either order
        parse_times(frame.iloc[:12], "time", "DATA")
    message = str(caught.value.message)
    assert "time column 'time'" in message, message
    assert "one format" in message, message
    assert (
        "'01/01/2021' (row 0), whose day and month could be in either order, beside "
        "'2021-01-02' (row 1)" in message
    ), message
    both = frame.iloc[:3].assign(time=["13/01/2021", "01/13/2021 06:00", "2021-01-14"])
    with pytest.raises(CLIError, match=r"'13/01/2021' \(row 0, day first\) and '01/13/2021 "
                       r"06:00' \(row 1, month first\)"):  # fmt: skip
        parse_times(both, "time", "DATA")


@pytest.mark.parametrize(
    "written",
    [
        ["01/13/2021", "01/13/2021 06:00", "01/13/2021 12:00"],  # midnight without a time
        ["01/13/2021 06:00", "01/13/2021 06:00:30", "01/13/2021 07:00"],
        ["13.01.2021", "13.01.2021 06:00", "13.01.2021 12:00"],
        ["01/13/2021 06:00:00", "01/13/2021 06:00:00.5", "01/13/2021 06:00:01"],
        ["Jan 13 2021", "Jan 14 2021", "February 1 2021"],
        ["2021-01-13", "2021-01-13 06:00", "2021-01-13 12:00"],
    ],
)
def test_dates_whose_forms_differ_only_in_their_times_are_read(written: list[str]) -> None:
    """Columns that no one strict format reads but whose day and month are never in doubt
    (the first refusal of mixed formats, from the first row's format, refused them all)."""
    frame = pd.DataFrame({"time": written, "a": [1.0, 2.0, 3.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no pandas advice leaks
        parsed = parse_times(frame, "time", "DATA")["time"]
    expected = pd.to_datetime(pd.Series(written), format="mixed", dayfirst="13." in written[0])
    assert list(parsed) == list(expected)


def test_fit_counts_the_series_it_trained_on(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A series with nothing observed is left out of training (fit warns): fit still said
    "fitted on 4 series" (counting it), and said impute's warning on such series ("their
    values come from the model's prior") while it fitted (audit S #12)."""
    data = tmp_path / "data.csv"
    frame = pd.read_csv(files["long_csv"])
    extra = pd.DataFrame({"station": ["e", "e"], "t": [1.0, 2.0], "temp": [np.nan] * 2,
                          "humidity": [np.nan] * 2, "wind": [np.nan] * 2})  # fmt: skip
    pd.concat([frame, extra], ignore_index=True).to_csv(data, index=False)
    args = ["fit", str(data), "--time-col", "t", "--id-col", "station", "-o",
            str(tmp_path / "m"), *FIT_OPTIONS]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        assert main(args) == 0
    out, err = capsys.readouterr()
    assert "left out of training" in err
    assert "fitted on 3 series (1 with nothing observed left out)" in out
    assert "come from the model's prior" not in err
    assert "left out of the threshold" not in err  # fit said they were left out


def test_csv_row_numbers_are_not_a_default_feature(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV written by df.to_csv() has the frame's row numbers as an unnamed first column,
    which was fitted as a feature 'Unnamed: 0' (a Parquet file's are dropped) (audit S #9)."""
    frame = pd.read_csv(files["long_csv"])
    for name, written in (("range", frame), ("filtered", frame.iloc[::2])):
        path = tmp_path / f"{name}.csv"
        written.to_csv(path)  # with its index
        data = read_table(path)
        assert str(data.columns[0]) == "Unnamed: 0"
        spec = spec_from_fit(data, "t", "station", None)
        assert spec.features == FEATURES
        assert "'Unnamed: 0' of DATA (unnamed, holding distinct whole numbers" in (
            capsys.readouterr().out
        )
        listed = spec_from_fit(data, "t", "station", "Unnamed: 0,temp")
        assert listed.features == ["Unnamed: 0", "temp"]
    # a column that is no row numbers (a repeated value) stays a feature
    other = frame.assign(**{"Unnamed: 0": 1})[["Unnamed: 0", *frame.columns]]
    assert "Unnamed: 0" in spec_from_fit(other, "t", "station", None).features


def test_elapsed_times_without_a_date_are_read_as_hours(tmp_path: Path) -> None:
    """PhysioNet's HH:MM times since admission were read as clock times of the day the
    command ran (cli.json's time_start was that date), and a stay past 23:59 failed with
    pandas' 'hour must be in 0..23' (audit S #10)."""
    text = ["00:00", "01:37", "", "23:59", "24:03", "47:59", "100:00:30"]
    frame = pd.DataFrame({"Time": text, "a": np.arange(7.0)}).replace("", None)
    hours = parse_times(frame, "Time", "DATA")["Time"].to_numpy()
    expected = [0.0, 1 + 37 / 60, np.nan, 23 + 59 / 60, 24 + 3 / 60, 47 + 59 / 60, 100 + 30 / 3600]
    np.testing.assert_allclose(hours, expected)
    days = pd.DataFrame({"Time": ["0 days 00:00:00", "1 days 02:00:00", "2 days"], "a": [1.0] * 3})
    assert parse_times(days, "Time", "DATA")["Time"].tolist() == [0.0, 26.0, 48.0]
    durations = days.assign(Time=pd.to_timedelta(days["Time"]))  # a Parquet duration column
    assert parse_times(durations, "Time", "DATA")["Time"].tolist() == [0.0, 26.0, 48.0]
    # fit records numbers of hours, not the day it ran
    rows = [f"{k * 37 // 60:02d}:{k * 37 % 60:02d},{np.sin(k / 4):.3f}" for k in range(48)]
    data = tmp_path / "stay.csv"
    data.write_text("Time,HR\n" + "\n".join(rows) + "\n")
    assert main(["fit", str(data), "--time-col", "Time", "-o", str(tmp_path / "m"),
                 *FIT_OPTIONS]) == 0  # fmt: skip
    spec = json.loads((tmp_path / "m" / CLI_FILE).read_text())
    assert spec["time_type"] == "duration"  # (read in hours: fit names them hours)
    assert spec["time_start"] == 0.0
    assert spec["time_step"] == pytest.approx(37 / 60)


def test_impute_writes_whole_number_columns_as_data_wrote_them(tmp_path: Path) -> None:
    """impute wrote an integer feature column as floats ('4' -> '4.0'), and changed whole
    numbers beyond 2**53 ('9007199254740993' -> '9007199254740992.0') (audit S #5)."""
    rows = ["t,count,big,x"]
    for k in range(40):
        x = "" if k % 6 == 0 else f"{np.sin(k / 5):.4f}"
        rows.append(f"{k},{k % 9},{9007199254740993 + 2 * k},{x}")
    data, out = tmp_path / "ints.csv", tmp_path / "out.csv"
    data.write_text("\n".join(rows) + "\n")
    assert main(["fit", str(data), "--time-col", "t", "-o", str(tmp_path / "m"),
                 *FIT_OPTIONS]) == 0  # fmt: skip
    assert main(["impute", str(tmp_path / "m"), str(data), "-o", str(out)]) == 0
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    given = pd.read_csv(data, dtype=str, keep_default_na=False)
    for col in ("count", "big"):
        for end in ("", "_lower", "_upper"):
            assert written[col + end].tolist() == given[col].tolist()
    x = given["x"] != ""
    assert written.loc[x, "x"].astype(float).tolist() == given.loc[x, "x"].astype(float).tolist()
    assert (written.loc[~x, "x"] != "").all()  # imputed


def test_impute_fills_nullable_integer_and_boolean_columns(tmp_path: Path) -> None:
    """Parquet's nullable Int64 / boolean feature columns with missing entries were written
    with DATA's own values, so their gaps stayed empty while impute said it filled them
    (audit U #1)."""
    rng = np.random.default_rng(1)
    n = 40
    frame = pd.DataFrame({
        "time": np.arange(n),
        "x": rng.normal(size=n),
        "cnt": pd.array(rng.integers(0, 10, n), dtype="Int64"),
        "ok": pd.array(rng.integers(0, 2, n).astype(bool), dtype="boolean"),
        "full": pd.array(rng.integers(0, 10, n), dtype="Int64"),
    })  # fmt: skip
    frame.loc[[3, 10, 20], "cnt"] = pd.NA
    frame.loc[[5, 11], "ok"] = pd.NA
    frame.loc[[7, 8], "x"] = np.nan
    data, out = tmp_path / "nullable.parquet", tmp_path / "out.csv"
    frame.to_parquet(data)
    assert main(["fit", str(data), "--time-col", "time", "-o", str(tmp_path / "m"),
                 *FIT_OPTIONS]) == 0  # fmt: skip
    assert main(["impute", str(tmp_path / "m"), str(data), "-o", str(out)]) == 0
    written = pd.read_csv(out)
    feats = ["x", "cnt", "ok", "full"]
    assert int(written[feats].isna().sum().sum()) == 0
    for col in feats:
        for end in ("_lower", "_upper"):
            assert int(written[col + end].isna().sum()) == 0
    assert written["full"].tolist() == frame["full"].tolist()  # no gap: DATA's own values
    seen = frame["cnt"].notna().to_numpy()
    assert written.loc[seen, "cnt"].tolist() == frame.loc[seen, "cnt"].astype(float).tolist()


def test_whole_numbers_beyond_float_precision_with_empty_cells_are_read_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A column of whole numbers with an empty cell is read as floats: one beyond 2**53
    lost digits on reading and was written back changed, without a word (audit S #5); then
    every command refused the file even when it did not use the column, advising to write
    it as text, which is read the same way (audit U #5). Such a column is read as its text
    now: OUT writes it back as DATA wrote it, and it is refused as a feature, saying why."""
    data = tmp_path / "gaps.csv"
    data.write_text("t,big,x\n0,9007199254740993,1.0\n1,,2.0\n2,9007199254740995,3.0\n")
    assert read_table(data)["big"].tolist()[::2] == ["9007199254740993", "9007199254740995"]
    assert read_table(data)["big"].isna().tolist() == [False, True, False]
    fine = tmp_path / "fine.csv"  # beyond 2**53 but held exactly (a power of two), and 1e20
    fine.write_text("t,big,x\n0,9007199254740992,1e20\n1,,2.0\n")
    assert read_table(fine)["big"].iloc[0] == 2.0**53
    rows, quoted_rows = ["time,x,code"], ["time,x,code"]
    for k in range(40):
        x = "" if k % 6 == 0 else f"{np.sin(k / 5):.4f}"
        code = "" if k % 7 == 0 else str(2**53 + 1 + k)
        rows.append(f"{k},{x},{code}")
        quoted_rows.append(f'{k},{x},"{code}"')
    data.write_text("\n".join(rows) + "\n")
    quoted = tmp_path / "quoted.csv"  # quoted cells are read the same way
    quoted.write_text("\n".join(quoted_rows) + "\n")
    out = tmp_path / "out.csv"
    for path in (data, quoted):
        model = ["-o", str(tmp_path / "m"), *FIT_OPTIONS]
        assert main(["fit", str(path), "--time-col", "time", "--features", "x", *model]) == 0
        assert main(["impute", str(tmp_path / "m"), str(path), "-o", str(out)]) == 0
        written = pd.read_csv(out, dtype=str, keep_default_na=False)["code"]
        assert written.tolist() == [r.split(",")[2] for r in rows[1:]]
        capsys.readouterr()  # fit's warning on the rate its 33 steps cannot resolve
        for features in (["--features", "x,code"], []):  # listed, or a default feature
            _, line = _main_error(capsys, ["fit", str(path), "--time-col", "time",
                                           *features, *model])  # fmt: skip
            assert line.startswith(
                "error: --features: expected numbers that a float holds exactly in DATA's "
                "column 'code', found the whole number 9007199254740995 (row 2), beyond 2**53"
            )
            assert "cannot be held exactly as floats" in line


def test_fit_without_id_col_on_a_long_file_says_to_give_it(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """fit of a long file without --id-col: with numeric ids in a column 'id' the error
    named feature_cols (a Python argument); in a column 'stay' it said 'duplicate time'
    and advised --merge-duplicate-times, which averaged the series into one (audit S #4)."""
    frame = pd.read_csv(files["long_csv"]).sort_values(["station", "t"])
    frame["t"] = frame.groupby("station").cumcount().astype(float)  # times restart
    for name, ids in (("id", "num"), ("stay", "num"), ("stay", "text")):
        data = tmp_path / f"{name}_{ids}.csv"
        codes = frame["station"].map({"a": 1, "b": 2, "c": 3}) if ids == "num" else None
        table = frame.assign(station=codes) if ids == "num" else frame
        table.rename(columns={"station": name}).to_csv(data, index=False)
        args = ["fit", str(data), "--time-col", "t", "-o", str(tmp_path / "m"), *FIT_OPTIONS]
        _, line = _main_error(capsys, args)
        assert "feature_cols" not in line
        assert "id_col=" not in line
        if name == "id":
            assert line.startswith("error: --id-col: expected --id-col for DATA's column 'id'")
            continue
        assert "DATA looks like several series stacked (the column 'stay' " in line
        assert line.index("--id-col stay") < line.index("--merge-duplicate-times")
    # merging them anyway: said to average the series into one
    assert main([*args, "--merge-duplicate-times"]) == 0
    err = capsys.readouterr().err
    assert "warning: --merge-duplicate-times: DATA looks like several series stacked" in err
    assert "name the id column with --id-col stay instead" in err


def test_impute_of_stacked_series_with_a_one_series_model_advises_a_refit(
    wide_model: Path, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """impute (forecast, detect) with a model of one series (fitted without --id-col), given
    several series stacked: the error advised "--id-col stay", an option those commands do
    not have; they read fit's layout, so the advice is a refit with it (or one series)."""
    frame = pd.read_parquet(files["wide_parquet"])
    halves = [frame.iloc[:40].assign(stay=1), frame.iloc[:40].assign(stay=2)]
    data = tmp_path / "stacked.csv"
    pd.concat(halves, ignore_index=True).to_csv(data, index=False)
    args = ["impute", str(wide_model), str(data), "-o", str(tmp_path / "o.csv")]
    _, line = _main_error(capsys, args)
    assert "DATA looks like several series stacked (the column 'stay' " in line, line
    assert "name the id column with" not in line, line
    assert "refit the model with 'gpvae fit ... --id-col stay'" in line, line
    assert main([*args, "--num-samples", "19", "--merge-duplicate-times"]) == 0
    err = capsys.readouterr().err
    assert "warning: --merge-duplicate-times: DATA looks like several series stacked" in err
    assert "refit the model with 'gpvae fit ... --id-col stay'" in err, err


def test_stacked_series_that_share_no_time_are_warned_of(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Audit (session 45): a wide file of stays stacked without --id-col, whose times never
    repeat (hours since admission at different minutes), was fitted and imputed as one
    series without a word. fit now names the column (a text id, not a feature) and
    --id-col; impute, which reads fit's layout, advises a refit with it."""
    rng = np.random.default_rng(0)
    parts = [
        pd.DataFrame(
            {
                "stay": f"s{p}",
                "time": np.sort(rng.uniform(0, 48, 15)).round(3) + 1e-3 * p,
                "hr": rng.normal(80, 5, 15),
                "temp": rng.normal(37, 0.5, 15),
            }
        )
        for p in range(4)
    ]
    data = tmp_path / "stays.csv"
    pd.concat(parts, ignore_index=True).to_csv(data, index=False)
    model = tmp_path / "m"
    fit = ["fit", str(data), "--time-col", "time", "-o", str(model), *FIT_OPTIONS]
    assert main(fit) == 0
    err = capsys.readouterr().err
    said = (
        "warning: DATA looks like several series stacked (each of the 4 values of the column 'stay'"
    )
    assert said in err, err
    assert "it is read as one series: name the id column with --id-col stay" in err, err
    assert err.count("looks like several series stacked") == 1, err
    assert main(["impute", str(model), str(data), "-o", str(tmp_path / "o.csv")]) == 0
    err = capsys.readouterr().err
    assert said in err, err
    assert "refit the model with 'gpvae fit ... --id-col stay'" in err, err
    # following the advice: four series, no such warning
    assert main([*fit, "--id-col", "stay"]) == 0
    assert "looks like several series stacked" not in capsys.readouterr().err


def test_a_text_id_of_a_file_sorted_by_time_is_named_in_the_duplicate_time_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Audit (session 47, CLI #1): stations stacked and sorted by time, their text id
    'station' no feature, without --id-col: the duplicate-time error offered only
    --merge-duplicate-times (which averages the stations into one series; the merge then
    warned of 'station'). The error names --id-col station first, as for a file sorted by
    station."""
    hours = pd.date_range("2024-01-01", periods=12, freq="h").astype(str)
    frame = pd.DataFrame({
        "time": np.repeat(hours, 3),
        "pm": np.arange(36.0),
        "station": np.tile(["A", "B", "C"], 12),
    })  # fmt: skip
    data = tmp_path / "bytime.csv"
    frame.to_csv(data, index=False)
    args = ["fit", str(data), "--time-col", "time", "-o", str(tmp_path / "m"), *FIT_OPTIONS]
    _, line = _main_error(capsys, args)
    assert "DATA looks like several series stacked (the column 'station' " in line, line
    assert "name the id column with --id-col station; if it is one series" in line, line


def test_no_command_writes_over_the_models_training_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Audit (session 47, CLI #3): 'gpvae sample MODEL -o train.csv' replaced the training
    file with the draws without a word (impute, forecast and detect refuse only their own
    DATA). fit records DATA's path in cli.json; no command writes its OUT there; a folder
    written before the path was kept still samples."""
    import json
    import shutil

    data = tmp_path / "train.csv"
    pd.DataFrame({"t": np.arange(40.0), "a": np.sin(np.arange(40) / 4)}).to_csv(data, index=False)
    before = data.read_bytes()
    model = tmp_path / "m"
    assert main(["fit", str(data), "--time-col", "t", "-o", str(model), *FIT_OPTIONS]) == 0
    assert json.loads((model / "cli.json").read_text())["data_path"] == str(data.resolve())
    other = tmp_path / "other.csv"
    shutil.copy(data, other)
    for args in (
        ["sample", str(model), "--length", "5", "-o", str(data)],
        ["impute", str(model), str(other), "-o", str(data)],
        ["forecast", str(model), str(other), "--horizon", "3", "-o", str(data)],
        ["detect", str(model), str(other), "-o", str(data)],
    ):
        capsys.readouterr()
        code, line = _main_error(capsys, args)
        assert code == 1, (args, line)
        assert "OUT: expected a path other than the model's training data" in line, line
        assert data.read_bytes() == before, args
    spec = json.loads((model / "cli.json").read_text())
    del spec["data_path"]  # a folder written before it was kept
    (model / "cli.json").write_text(json.dumps(spec))
    assert main(["sample", str(model), "--length", "5", "-o", str(tmp_path / "s.csv")]) == 0


def test_an_id_column_of_row_numbers_is_said_to_look_like_row_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A one-series CSV with a column 'id' of row numbers 1..N was refused with "give
    --id-col id, or rename the column", and --id-col id made every row its own series
    (audit U #12). The error offers --features without the column, and says it looks like
    row numbers."""
    n = 30
    data = tmp_path / "rowid.csv"
    pd.DataFrame({
        "id": np.arange(1, n + 1),
        "time": pd.date_range("2024-01-01", periods=n, freq="h").astype(str),
        "temp": np.sin(np.arange(n) / 4),
        "rh": np.cos(np.arange(n) / 5),
    }).to_csv(data, index=False)  # fmt: skip
    args = ["fit", str(data), "--time-col", "time", "-o", str(tmp_path / "m"), *FIT_OPTIONS]
    _, line = _main_error(capsys, args)
    assert line.startswith("error: --id-col: expected --id-col for DATA's column 'id'")
    assert "looks like row numbers rather than series ids" in line
    assert "--features temp,rh" in line
    assert "give --id-col id" not in line
    assert main([*args, "--features", "temp,rh"]) == 0  # following the advice
    capsys.readouterr()  # its warning on the rate its 30 steps cannot resolve
    # ids of a long file (repeated): --id-col first, --features second
    long = tmp_path / "long.csv"
    pd.read_csv(data).assign(id=np.arange(n) % 3).to_csv(long, index=False)
    _, line = _main_error(capsys, ["fit", str(long), *args[2:]])
    assert "looks like row numbers" not in line
    assert line.index("--id-col id") < line.index("--features temp,rh")


def test_duplicate_time_error_shows_the_time_as_data_wrote_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Zone-aware dates of DATA were shown in naive UTC in the duplicate-time error
    ('2024-03-29 23:00:00' for '2024-03-30T00:00:00+01:00') (audit U #8)."""
    times = pd.date_range("2024-03-30", periods=30, freq="h", tz="Europe/Paris")
    rows = [(t.isoformat(), s, float(k)) for s in ("north", "south") for k, t in enumerate(times)]
    data = tmp_path / "stacked_tz.csv"
    pd.DataFrame(rows, columns=["time", "site", "v"]).to_csv(data, index=False)
    args = ["fit", str(data), "--time-col", "time", "--features", "v"]
    _, line = _main_error(capsys, [*args, "-o", str(tmp_path / "m"), *FIT_OPTIONS])
    assert "found duplicate time 2024-03-30T00:00:00+01:00 in DATA" in line


def test_repeated_elapsed_times_are_shown_as_data_wrote_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A repeated HH:MM time (time since admission, 07:17) was shown as its hours, 'found
    duplicate time 7.283333333333333', and --merge-duplicate-times listed 'rows 4, 29 (time
    7.283333333333333)' (audit M #5)."""
    minutes = 17 + 60 * np.arange(30)
    clock = [f"{m // 60:02d}:{m % 60:02d}" for m in minutes]
    clock[29] = clock[7]  # 07:17 again
    frame = pd.DataFrame({"time": clock, "v": np.sin(np.arange(30.0))})
    data = tmp_path / "hhmm.csv"
    frame.to_csv(data, index=False)
    fit = ["fit", str(data), "--time-col", "time", "-o", str(tmp_path / "m"), *FIT_OPTIONS]
    _, line = _main_error(capsys, fit)
    assert "found duplicate time 07:17 in DATA" in line, line
    assert main([*fit, "--merge-duplicate-times"]) == 0
    out = capsys.readouterr().out
    assert "rows 7, 29 (time 07:17)" in out, out


def test_a_text_cell_in_a_feature_is_reported_with_its_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stray 'error' in a numeric column: at fit without --features the message began
    with '--features:', an option not given; at impute it named no row (audit M #7)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"t": np.arange(30.0), "a": rng.normal(size=30), "b": rng.normal(size=30)})
    good, junk = tmp_path / "good.csv", tmp_path / "junk.csv"
    frame.to_csv(good, index=False)
    frame.astype({"a": object}).assign(a=lambda f: f["a"].where(f.index != 3, "error")).to_csv(
        junk, index=False
    )
    model = tmp_path / "m"
    _, line = _main_error(capsys, ["fit", str(junk), "--time-col", "t", "-o", str(model)])
    assert line.startswith("error: DATA: expected numeric values in column 'a'"), line
    assert "'error' (row 3)" in line, line
    assert main(["fit", str(good), "--time-col", "t", "-o", str(model), *FIT_OPTIONS]) == 0
    capsys.readouterr()
    impute = ["impute", str(model), str(junk), "-o", str(tmp_path / "o.csv")]
    for extra in ([], ["--merge-duplicate-times"]):
        _, line = _main_error(capsys, [*impute, *extra])
        assert line.startswith("error: DATA['a']: expected numeric values"), line
        assert "such as 'error' (row 3);" in line, line
        assert "gpvae.data" not in line, line


def test_day_first_dates_print_no_traceback() -> None:
    """Day-first dates made every command print pandas' "Exception ignored in ...
    Traceback" on stderr: the check for one date format turned pandas' warnings into
    errors, and pandas warns from compiled code, where an error is printed, not raised
    (audit S #6)."""
    code = (
        "import pandas as pd\n"
        "from gpvae.app.cli.columns import parse_times\n"
        "dates = [f'{d:02d}/03/2021' for d in range(13, 31)]\n"
        "frame = pd.DataFrame({'date': dates, 'a': range(18)})\n"
        "parsed = parse_times(frame, 'date', 'DATA')['date']\n"
        "print(parsed.iloc[0].date(), parsed.iloc[-1].date())\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2021-03-13", "2021-03-30"]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Exception ignored" not in proc.stderr, proc.stderr


def test_dates_that_read_both_ways_warn_and_are_read_month_first() -> None:
    from gpvae.app.cli.columns import parse_times

    frame = pd.DataFrame({"date": ["01/03/2021", "02/03/2021", "03/03/2021"], "a": [1.0, 2, 3]})
    with pytest.warns(UserWarning, match=r"'date'.*'01/03/2021'.*month-first.*ISO dates"):
        parsed = parse_times(frame, "date", "DATA")["date"]
    assert parsed.dt.month.tolist() == [1, 2, 3]


def test_text_in_a_feature_column_after_fit_names_data_once(
    long_model: Path, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data.csv"
    frame = pd.read_csv(files["long_csv"])
    frame["temp"] = frame["temp"].astype(object)
    frame.loc[4, "temp"] = "n/a?"
    frame.to_csv(data, index=False)
    args = ["impute", str(long_model), str(data), "-o", str(tmp_path / "o.csv")]
    code, line = _main_error(capsys, args)
    assert code == 1
    assert line.startswith("error: DATA['temp']: expected numeric values")


@pytest.mark.parametrize("command", ["impute", "forecast", "detect"])
def test_a_series_of_one_row_or_no_value_does_not_stop_the_others(
    command: str,
    long_model: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As GPVAE.impute/forecast/anomaly_scores do, series 'd' (one row) and 'e' (nothing
    observed) get the model's values (with a warning) instead of refusing the whole file."""
    data, out = tmp_path / "data.csv", tmp_path / "out.csv"
    frame = pd.read_csv(files["long_csv"])
    extra = pd.DataFrame(
        {"station": ["d", "e", "e"], "t": [1.0, 1.0, 2.0], "temp": [21.0, np.nan, np.nan],
         "humidity": [np.nan] * 3, "wind": [np.nan] * 3}
    )  # fmt: skip
    pd.concat([frame, extra], ignore_index=True).to_csv(data, index=False)
    horizon = ["--horizon", "2"] if command == "forecast" else []
    assert main([command, str(long_model), str(data), "-o", str(out), *horizon]) == 0
    res = pd.read_csv(out)
    assert set(res["station"]) == {"a", "b", "c", "d", "e"}
    if command == "impute":
        assert len(res) == len(frame) + 3
        assert res.loc[len(frame), "temp"] == 21.0  # observed: unchanged
        assert res[FEATURES].notna().all().all()


@pytest.mark.parametrize("flag", ["--false-alarm-rate", "--mask-rate", "--spread-quantile"])
def test_nan_options_are_refused_before_the_fit(
    flag: str, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """NaN compares False with both ends of a range, so --false-alarm-rate nan passed the
    option check and failed after the whole fit, blaming DATA."""
    out = tmp_path / "m"
    args = ["fit", str(files["wide_parquet"]), "--time-col", "date", "-o", str(out), flag, "nan"]
    _, line = _main_error(capsys, args)
    assert f"'{flag}': expected a finite number, found 'nan'" in line
    assert not out.exists()


def test_an_out_folder_that_cannot_be_made_names_out(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = files["long_csv"]
    args = ["fit", str(target), "--time-col", "t", "--id-col", "station", "-o",
            str(target / "model")]  # fmt: skip
    _, line = _main_error(capsys, args)
    assert line.startswith("error: --out: expected a folder that can be created")
    # a file named 'checkpoints' in the model folder: the error blamed DATA, after the data
    # were read ("DATA: checkpoint_dir: ...")
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "checkpoints").write_text("x")
    args = ["fit", str(target), "--time-col", "t", "--id-col", "station", "-o", str(folder)]
    _, line = _main_error(capsys, args)
    assert line.startswith("error: --out: expected a folder that can be created, found "), line
    assert "checkpoints" in line


def test_fit_refuses_options_it_would_ignore(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    _long_frame().to_csv(data, index=False)
    base = ["fit", data, "--id-col", "station", "--time-col", "t", *FIT_OPTIONS, "-o"]
    proc = run_cli(*base, tmp_path / "m1", "--difference", "--difference-columns", "wind")
    _one_error_line(proc, "--difference-columns:", "give one of the two")
    proc = run_cli(*base, tmp_path / "m2", "--inducing", "5")
    _one_error_line(proc, "--inducing: expected --coord-cols")
    assert not (tmp_path / "m1").exists()
    assert not (tmp_path / "m2").exists()


def test_fit_accepts_single_step_and_empty_series(tmp_path: Path) -> None:
    # as GPVAE.fit does (README): a one-row series is used, an empty one left out with a
    # warning; the command line refused both
    frame = _long_frame()
    extra = pd.DataFrame(
        {"station": ["one", "none", "none"], "t": [1.0, 1.0, 2.0], **{f: np.nan for f in FEATURES}}
    )
    extra.loc[0, "temp"] = 21.0
    data = tmp_path / "d.csv"
    pd.concat([frame, extra]).to_csv(data, index=False)
    proc = run_cli(
        "fit", data, "--id-col", "station", "--time-col", "t", *FIT_OPTIONS, "-o", tmp_path / "m"
    )
    _ok(proc)
    proc = run_cli("impute", tmp_path / "m", data, "-o", tmp_path / "out.csv")
    _ok(proc)
    assert len(pd.read_csv(tmp_path / "out.csv")) == len(frame) + 3


def test_no_command_prints_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    # it was squashed into one "error: Usage: ..." line of 1,400 characters
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: gpvae [OPTIONS] COMMAND")
    assert "\nCommands:\n" in err
    assert "error:" not in err


def test_fit_takes_the_image_decoder(tmp_path: Path) -> None:
    # the README's image model (encoder and decoder "cnn"); the command line had no
    # --decoder, so --encoder cnn trained an MLP decoder without a word
    rng = np.random.default_rng(0)
    pixels = (rng.random((2 * 6, 64)) < 0.3).astype(float)
    pixels[rng.random(pixels.shape) < 0.2] = np.nan
    frame = pd.DataFrame(pixels, columns=[f"p{k}" for k in range(64)])
    frame.insert(0, "frame", np.tile(np.arange(6), 2))
    frame.insert(0, "seq", np.repeat([0, 1], 6))
    data = tmp_path / "img.csv"
    frame.to_csv(data, index=False)
    args = ["fit", data, "--id-col", "seq", "--time-col", "frame", "--encoder", "cnn"]
    args += ["--likelihood", "bernoulli", "--epochs", "1", "--latent-dim", "2", "--quiet"]
    proc = run_cli(*args, "--decoder", "cnn", "-o", tmp_path / "m")
    _ok(proc)
    assert GPVAE.load(tmp_path / "m" / "model").decoder == "cnn"
    proc = run_cli(*args, "--decoder", "rnn", "-o", tmp_path / "m2")
    assert proc.returncode == 2
    assert "--decoder" in proc.stderr


def test_columns_named_like_the_outputs_are_refused(
    wide_model: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    # a label column named "anomaly" came back holding detect's flags, and re-imputing an
    # imputed file replaced its interval columns, without a word
    frame = pd.read_parquet(files["wide_parquet"])
    frame["anomaly"] = 0
    src = tmp_path / "labelled.csv"
    frame.to_csv(src, index=False)
    out = tmp_path / "o.csv"
    proc = run_cli("detect", wide_model, src, "-o", out, "--labels", "anomaly")
    _one_error_line(proc, "DATA: expected no column named like the output's own", "'anomaly'")
    assert not out.exists()
    frame = frame.drop(columns="anomaly").assign(temp_lower=1.0)
    frame.to_csv(src, index=False)
    proc = run_cli("impute", wide_model, src, "-o", out)
    _one_error_line(proc, "'temp_lower': rename or drop it")
    assert not out.exists()


def test_times_with_changing_utc_offsets_are_read(tmp_path: Path) -> None:
    # pandas writes a Europe/Berlin column as +01:00, then +02:00 after the clock change;
    # every command refused it ("Mixed timezones detected. Pass utc=True ...")
    t = pd.date_range("2021-03-20", periods=24, freq="D", tz="Europe/Berlin")
    frame = pd.DataFrame(
        {"time": t, "x": np.sin(np.arange(24) / 3), "y": np.cos(np.arange(24) / 3)}
    )
    frame.loc[5, "x"] = np.nan
    data = tmp_path / "berlin.csv"
    frame.to_csv(data, index=False)
    _ok(run_cli("fit", data, "--time-col", "time", "-o", tmp_path / "m", *FIT_OPTIONS))
    out = tmp_path / "o.csv"
    _ok(run_cli("impute", tmp_path / "m", data, "-o", out))
    back = pd.read_csv(out)
    assert back["time"].tolist() == pd.read_csv(data)["time"].tolist()  # as written
    assert back.loc[[4, 6], "x"].tolist() == pytest.approx(frame.loc[[4, 6], "x"].tolist())
    # a column where only some times carry an offset is not read as UTC
    mixed = pd.DataFrame({"time": ["2021-03-20T00:00+01:00", "2021-03-21T00:00"], "x": [1.0, 2.0]})
    with pytest.raises(CLIError, match=r"expected every time with a UTC offset .* or none"):
        parse_times(mixed, "time", "DATA")


def test_forecast_plot_history_is_unbroken_where_the_clocks_go_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 15-minute Europe/Berlin history, drawn on its wall clock, jumps from 01:45 to 03:00
    when the clocks go forward: forecast --plot broke its line there, as if an hour of rows
    were missing; the gaps are found in elapsed time."""

    t = pd.date_range("2024-03-30 20:00", periods=40, freq="15min", tz="Europe/Berlin")
    y = np.sin(np.arange(40) / 5)
    data = tmp_path / "berlin.csv"
    pd.DataFrame({"time": t, "x": y}).to_csv(data, index=False)  # +01:00, then +02:00
    fit = ["fit", str(data), "--time-col", "time", "-o", str(tmp_path / "m"), "--epochs", "1"]
    assert main([*fit, "--latent-dim", "2", "--hidden", "8", "--quiet"]) == 0
    figures = _keep_figures(monkeypatch, "plot_forecast")
    args = ["forecast", str(tmp_path / "m"), str(data), "--horizon", "2", "-o"]
    assert main([*args, str(tmp_path / "f.csv"), "--plot", str(tmp_path / "f.png")]) == 0
    line = next(ln for ln in figures[0].axes[0].get_lines() if ln.get_label() == "history")
    x = np.asarray(line.get_xdata())
    np.testing.assert_array_equal(x, t[-30:].tz_localize(None).to_numpy(dtype="datetime64[ns]"))
    np.testing.assert_allclose(line.get_ydata(), y[-30:])  # no break inserted
    assert np.timedelta64(75, "m") in np.diff(x)  # across 01:45 -> 03:00


def test_merge_back_of_many_columns_does_not_fragment_the_frame() -> None:
    # adding the result columns one at a time made pandas warn twice per feature
    feats = [f"p{k}" for k in range(300)]
    original = pd.DataFrame(np.zeros((4, 301)), columns=["t", *feats])
    result = pd.DataFrame(
        np.ones((4, 600)), columns=[f"{f}_{e}" for e in ("lo", "hi") for f in feats]
    )
    spec = ColumnSpec(time_col="t", id_col=None, features=feats)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = merge_back(original, result.assign(p0=5.0), spec)
    assert list(out.columns) == ["t", *feats, *result.columns]
    assert (out["p0"] == 5.0).all()
    assert (out["p1"] == 0.0).all()


def test_csv_ids_are_kept_as_written(tmp_path: Path) -> None:
    # "001" came back as 1, and an id "NA" (a country code) was read as a missing id
    rows = [(sid, t, np.sin(t / 3 + k), np.cos(t / 3)) for k, sid in enumerate(("001", "NA"))
            for t in range(20)]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["station", "t", "x", "y"])
    frame.loc[3, "x"] = np.nan
    data = tmp_path / "d.csv"
    frame.to_csv(data, index=False)
    _ok(run_cli("fit", data, "--id-col", "station", "--time-col", "t", "-o", tmp_path / "m",
                *FIT_OPTIONS))  # fmt: skip
    for command in ("impute", "forecast"):
        out = tmp_path / f"{command}.csv"
        extra = ["--horizon", "2"] if command == "forecast" else []
        _ok(run_cli(command, tmp_path / "m", data, "-o", out, *extra))
        ids = pd.read_csv(out, dtype={"station": str}, keep_default_na=False)["station"]
        assert set(ids) == {"001", "NA"}


@pytest.fixture(scope="module")
def many_features(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A wide CSV of 13 features (more than the 12 panels of a figure) and a model of it."""
    folder = tmp_path_factory.mktemp("many_features")
    rng = np.random.default_rng(0)
    T = 30
    frame = pd.DataFrame({"t": np.arange(T, dtype=float)})
    for j in range(13):
        frame[f"f{j}"] = np.sin(np.arange(T) / (3 + j)) + 0.1 * rng.normal(size=T)
    data, model = folder / "wide13.csv", folder / "model"
    frame.to_csv(data, index=False)
    fit = ["fit", str(data), "--time-col", "t", "-o", str(model), "--epochs", "1"]
    assert main([*fit, "--latent-dim", "2", "--hidden", "8", "--quiet"]) == 0
    return data, model


@pytest.mark.parametrize(
    ("command", "extra", "shown"),
    [
        ("impute", ["--num-samples", "20"], 12),
        ("forecast", ["--horizon", "2", "--num-samples", "20"], 12),
        ("sample", ["--length", "5"], 12),
        ("detect", ["--num-samples", "2"], 8),
    ],
)
def test_plots_of_many_features_draw_the_first_ones(
    command: str,
    extra: list[str],
    shown: int,
    many_features: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """More than 12 features failed after OUT was written ("expected at most 12 panels"):
    the plot draws the first ones and says so."""
    data, model = many_features
    out, plot = tmp_path / "o.csv", tmp_path / "p.png"
    inputs = [] if command == "sample" else [str(data)]
    args = [command, str(model), *inputs, "-o", str(out), *extra, "--plot", str(plot)]
    assert main(args) == 0, capsys.readouterr().err
    assert f"--plot: drawing the first {shown} of the 13 features" in capsys.readouterr().out
    assert out.is_file()
    assert plot.is_file()


@pytest.mark.parametrize("command", ["impute", "forecast", "detect", "sample"])
def test_plot_folder_is_checked_before_any_work(
    command: str,
    long_model: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A --plot in a folder that cannot be made failed after OUT was written; a missing
    folder is made."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = tmp_path / "o.csv"
    inputs = [] if command == "sample" else [str(files["long_csv"])]
    extra = {"forecast": ["--horizon", "2"], "sample": ["--length", "3"]}.get(command, [])
    args = [command, str(long_model), *inputs, "-o", str(out), *extra]
    _, line = _main_error(capsys, [*args, "--plot", str(blocker / "p.png")])
    assert line.startswith(
        f"error: --plot: expected a folder that can be created, found '{blocker}"
    )
    assert not out.exists()
    (tmp_path / "d.png").mkdir()
    _, line = _main_error(capsys, [*args, "--plot", str(tmp_path / "d.png")])
    assert line == f"error: --plot: expected a file name, found the directory '{tmp_path}/d.png'"
    folder = tmp_path / "new" / "plots"
    assert main([*args, "--num-samples", "4", "--plot", str(folder / "p.png")]) == 0
    assert (folder / "p.png").is_file()


def test_sample_plot_of_a_model_fitted_on_zone_aware_dates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plot failed after OUT was written ("times: expected numeric or datetime64 times,
    found object", naming no option of the command)."""
    data, model, out, plot = (tmp_path / n for n in ("z.csv", "m", "s.csv", "s.png"))
    t = pd.date_range("2013-03-01", periods=40, freq="h", tz="Asia/Shanghai")
    pd.DataFrame({"time": t, "a": np.sin(np.arange(40) / 5.0)}).to_csv(data, index=False)
    fit = ["fit", str(data), "--time-col", "time", "-o", str(model), "--epochs", "1"]
    assert main([*fit, "--latent-dim", "2", "--hidden", "8", "--quiet"]) == 0
    args = ["sample", str(model), "--length", "6", "-n", "2", "-o", str(out), "--plot", str(plot)]
    assert main(args) == 0, capsys.readouterr().err
    assert plot.is_file()
    assert pd.read_csv(out)["time"].iloc[0] == "2013-03-01 00:00:00+08:00"


@pytest.fixture(scope="module")
def increments_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A trending CSV and a model of its increments (``fit --difference``)."""
    folder = tmp_path_factory.mktemp("increments")
    data, model = folder / "trend.csv", folder / "model"
    y = np.cumsum(np.random.default_rng(0).normal(size=40))
    pd.DataFrame({"t": np.arange(40.0), "a": y}).to_csv(data, index=False)
    fit = ["fit", str(data), "--time-col", "t", "-o", str(model), "--difference", "--epochs", "1"]
    assert main([*fit, "--latent-dim", "2", "--hidden", "8", "--quiet"]) == 0
    return data, model


@pytest.mark.parametrize("command", ["sample", "impute", "detect"])
def test_a_model_of_increments_is_refused_naming_model_dir(
    command: str,
    increments_model: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """sample blamed --length (and impute, detect DATA) for a model fitted with --difference,
    with the estimator's advice (difference=False) instead of the command line's."""
    data, model = increments_model
    out = tmp_path / "o.csv"
    inputs = ["--length", "5"] if command == "sample" else [str(data)]
    _, line = _main_error(capsys, [command, str(model), *inputs, "-o", str(out)])
    assert line.startswith("error: MODEL_DIR: expected a model of the series' levels, found one")
    assert "fit without --difference to impute, detect or sample" in line
    assert not out.exists()


def test_default_features_do_not_drop_numbers_read_as_text() -> None:
    # a decimal-comma column and a True/False column with an empty cell were read as text
    # and left out of the features without a word
    k = np.arange(10)
    frame = pd.DataFrame({"time": k, "x": np.sin(k / 4)})
    commas = frame.assign(y=[f"0,{v}" for v in k])
    with pytest.raises(CLIError, match=r"'y', found numbers written with a decimal comma"):
        spec_from_fit(commas, "time", None, None)
    flags = frame.assign(pump=[True, False] * 4 + [None, True])
    with pytest.raises(CLIError, match=r"'pump', found True/False with empty cells"):
        spec_from_fit(flags, "time", None, None)
    words = frame.assign(site=["north"] * 10)  # a text column stays out
    assert spec_from_fit(words, "time", None, None).features == ["x"]


def test_output_paths_are_checked_before_the_work(
    wide_model: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    # --intervals under a file (a mistyped folder) failed after OUT was written, saying
    # "File exists"
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    out = tmp_path / "o.csv"
    proc = run_cli("detect", wide_model, files["wide_parquet"], "-o", out,
                   "--intervals", blocker / "alarms.csv")  # fmt: skip
    _one_error_line(proc, "--intervals: expected a folder that can be created", "in the way")
    assert not out.exists()
    proc = run_cli("impute", wide_model, files["wide_parquet"], "-o", blocker / "o.csv")
    _one_error_line(proc, "OUT: expected a folder that can be created")
    nested = tmp_path / "new" / "deeper" / "o.csv"  # a missing folder is made
    _ok(run_cli("impute", wide_model, files["wide_parquet"], "-o", nested))
    assert nested.is_file()


def test_data_are_read_as_the_model_counted_its_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The commands read DATA's dates with their own calendar inference, not the model's: a
    model of series each on a day of their own ('MS+*') refused one of those series alone,
    a monthly model refused two rows (too few to show a grid: read in hours), and sample
    dated such a model's draws at month starts, before the data began."""
    rows = []
    for sid, day in (("A", 15), ("B", 20)):
        for k, first in enumerate(pd.date_range("2015-01-01", periods=30, freq="MS")):
            when = first + pd.Timedelta(days=day - 1, hours=9)
            rows.append((sid, when.strftime("%Y-%m-%d %H:%M"), np.sin(k / 2.0)))
    frame = pd.DataFrame(rows, columns=["sid", "date", "x"])
    data, alone = tmp_path / "ab.csv", tmp_path / "a.csv"
    frame.to_csv(data, index=False)
    frame[frame.sid == "A"].to_csv(alone, index=False)
    model = tmp_path / "m"
    fit = ["fit", str(data), "--time-col", "date", "--id-col", "sid", "-o", str(model)]
    assert main([*fit, "--epochs", "1", "--latent-dim", "2", "--hidden", "8", "--quiet"]) == 0
    assert json.loads((model / "cli.json").read_text())["time_freq"] == "MS+*"
    out = tmp_path / "fc.csv"
    assert main(["forecast", str(model), str(alone), "--horizon", "2", "-o", str(out)]) == 0
    # (in DATA's own form: "2015-01-15 09:00", without seconds)
    assert list(pd.read_csv(out)["date"]) == ["2017-07-15 09:00", "2017-08-15 09:00"]
    two = tmp_path / "two.csv"
    frame[frame.sid == "A"].tail(2).assign(x=[np.nan, 0.5]).to_csv(two, index=False)
    assert main(["impute", str(model), str(two), "-o", str(tmp_path / "i.csv")]) == 0
    assert main(["sample", str(model), "--length", "3", "-o", str(tmp_path / "s.csv")]) == 0
    shown = list(pd.read_csv(tmp_path / "s.csv")["date"].iloc[:3])
    assert shown == ["2015-01-15 09:00:00", "2015-02-15 09:00:00", "2015-03-15 09:00:00"]
    capsys.readouterr()


@pytest.mark.parametrize(
    ("freq", "start", "expected"),
    [
        ("MS", "2015-02-01", ["2015-02-01 00:00:00+01:00", "2015-03-01 00:00:00+01:00",
                              "2015-04-01 00:00:00+02:00"]),
        ("h", "2015-03-29 00:00", ["2015-03-29 00:00:00+01:00", "2015-03-29 01:00:00+01:00",
                                   "2015-03-29 03:00:00+02:00"]),
        ("D", "2015-03-28", ["2015-03-28 00:00:00+01:00", "2015-03-29 00:00:00+01:00",
                             "2015-03-30 00:00:00+02:00"]),
    ],
)  # fmt: skip
def test_sample_writes_dates_on_the_zones_clock(
    freq: str, start: str, expected: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Samples of zone-aware dates kept the first date's UTC offset all year: April's month
    start was written 2015-04-01 00:00+01:00, an hour off Berlin's midnight, and hours after
    the clock change an hour off its clock; daily data stay at the zone's midnight (not
    01:00 after the change)."""
    t = pd.date_range(start, periods=40, freq=freq, tz="Europe/Berlin")
    data = tmp_path / "d.parquet"
    pd.DataFrame({"when": t, "v": np.sin(np.arange(40) / 5.0)}).to_parquet(data)
    model, out = tmp_path / "m", tmp_path / "s.csv"
    fit = ["fit", str(data), "--time-col", "when", "-o", str(model), "--epochs", "1"]
    assert main([*fit, "--latent-dim", "2", "--hidden", "8", "--quiet"]) == 0, capsys.readouterr()
    assert json.loads((model / "cli.json").read_text())["time_zone"] == "Europe/Berlin"
    assert main(["sample", str(model), "--length", "3", "-o", str(out)]) == 0
    assert list(pd.read_csv(out)["when"]) == expected


@pytest.mark.parametrize(
    ("freq", "start", "expected"),
    [
        ("D", "2021-03-26", ["2021-03-26 00:00:00+01:00", "2021-03-27 00:00:00+01:00",
                             "2021-03-28 00:00:00+01:00", "2021-03-29 00:00:00+02:00"]),
        ("h", "2021-03-28 00:00", ["2021-03-28 00:00:00+01:00", "2021-03-28 01:00:00+01:00",
                                   "2021-03-28 03:00:00+02:00", "2021-03-28 04:00:00+02:00"]),
    ],
)  # fmt: skip
def test_sample_writes_dates_with_the_offsets_of_csv_text(
    freq: str, start: str, expected: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV of zone-aware dates (pandas writes Europe/Berlin times with +01:00, then +02:00)
    is read in UTC: sample wrote every date in UTC ('2021-03-25 23:00:00+00:00', and after
    the clock change 22:00), off the data's own clock and grid."""
    t = pd.date_range(start, periods=40, freq=freq, tz="Europe/Berlin")
    data, model, out = tmp_path / "d.csv", tmp_path / "m", tmp_path / "s.csv"
    pd.DataFrame({"when": t, "v": np.sin(np.arange(40) / 5.0)}).to_csv(data, index=False)
    assert pd.read_csv(data)["when"].iloc[0] == expected[0]  # the offsets are all it has
    fit = ["fit", str(data), "--time-col", "when", "-o", str(model), "--epochs", "1"]
    assert main([*fit, "--latent-dim", "2", "--hidden", "8", "--quiet"]) == 0, capsys.readouterr()
    assert json.loads((model / "cli.json").read_text())["time_offsets"] == [
        expected[0].replace(" ", "T"),
        t[t.strftime("%z") == "+0200"][0].isoformat(),
    ]
    plot = tmp_path / "s.png"
    args = ["sample", str(model), "--length", "4", "-n", "2", "-o", str(out), "--plot", str(plot)]
    assert main(args) == 0, capsys.readouterr()
    assert list(pd.read_csv(out)["when"]) == expected * 2
    assert plot.is_file()
    # Parquet holds one zone per column: the same instants
    assert main(["sample", str(model), "--length", "4", "-o", str(tmp_path / "s.parquet")]) == 0
    back = pd.read_parquet(tmp_path / "s.parquet")["when"]
    assert list(back) == [pd.Timestamp(e) for e in expected]
    spec = json.loads((model / "cli.json").read_text())
    spec["time_offsets"] = ["2021-03-26 00:00"]  # no offset: a hand-edited cli.json
    (model / "cli.json").write_text(json.dumps(spec))
    capsys.readouterr()
    _, line = _main_error(capsys, ["sample", str(model), "--length", "4", "-o", str(out)])
    assert line.startswith("error: MODEL_DIR: malformed cli.json: time_offsets: expected ISO")


def test_forecast_and_backtest_write_dates_with_the_offsets_of_csv_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """forecast of CSV text whose offsets differ (read in UTC) wrote its dates in UTC
    ('2021-04-08 22:00:00+00:00') where sample writes them on the data's clock; backtest's
    origin_times were UTC too. A series that ends before the clock change steps whole days
    on the data's clock past it (midnight stays midnight)."""
    t = pd.date_range("2021-03-10", periods=30, freq="D", tz="Europe/Berlin")
    frame = pd.DataFrame({"site": ["A"] * 30 + ["B"] * 15, "when": [*t, *t[:15]]})
    frame["v"] = np.sin(np.arange(45) / 5.0)
    data, model, out = tmp_path / "d.csv", tmp_path / "m", tmp_path / "f.csv"
    frame.to_csv(data, index=False)
    fit = ["fit", str(data), "--time-col", "when", "--id-col", "site", "-o", str(model)]
    fit += ["--epochs", "1", "--latent-dim", "2", "--hidden", "8", "--quiet"]
    assert main(fit) == 0, capsys.readouterr()
    assert "time_offsets" in json.loads((model / "cli.json").read_text())
    args = ["forecast", str(model), str(data), "--horizon", "6", "-o", str(out)]
    assert main(args) == 0, capsys.readouterr()
    got = pd.read_csv(out)
    assert list(got.loc[got["site"] == "A", "when"]) == [
        f"2021-04-{d:02d} 00:00:00+02:00" for d in range(9, 15)
    ]
    assert list(got.loc[got["site"] == "B", "when"]) == [
        "2021-03-25 00:00:00+01:00",
        "2021-03-26 00:00:00+01:00",
        "2021-03-27 00:00:00+01:00",
        "2021-03-28 00:00:00+01:00",
        "2021-03-29 00:00:00+02:00",
        "2021-03-30 00:00:00+02:00",
    ]
    report = tmp_path / "bt.json"
    args = ["backtest", str(model), str(data), "--horizon", "2", "--origins", "2"]
    assert main([*args, "--num-samples", "10", "-o", str(report)]) == 0, capsys.readouterr()
    times = json.loads(report.read_text())["origin_times"]
    assert all(x.endswith(("T00:00:00+01:00", "T00:00:00+02:00")) for row in times for x in row)


def test_offset_changes_of_series_on_different_clocks() -> None:
    """Two series that write one instant with different offsets give the changes of the
    series of the earliest time; one offset, or times without offsets, give none."""
    from gpvae.app.cli.offsets import offset_changes

    berlin = pd.date_range("2021-03-27", periods=4, freq="D", tz="Europe/Berlin")
    london = berlin.tz_convert("Europe/London")
    times = pd.Series([str(x) for x in [*london, *berlin]])
    ids = pd.Series(["L"] * 4 + ["B"] * 4)
    assert offset_changes(times, ids) == [
        "2021-03-26T23:00:00+00:00",
        "2021-03-28T23:00:00+01:00",
    ]  # London's: its first time (23:00 UTC) ties Berlin's, and comes first
    assert offset_changes(times[4:], ids[4:]) == [
        "2021-03-27T00:00:00+01:00",
        "2021-03-29T00:00:00+02:00",
    ]
    assert offset_changes(pd.Series([str(x) for x in berlin[:2]])) is None  # one offset
    assert offset_changes(pd.Series(["2021-03-27 00:00", "2021-03-28 00:00"])) is None
    assert offset_changes(pd.Series(berlin)) is None  # parsed already: its zone says it


def test_cli_json_leaves_out_an_unset_time_zone(tmp_path: Path) -> None:
    """Every fit wrote "time_zone": null, which versions before it was kept refused as a
    malformed cli.json: the key is written only for zone-aware dates."""
    from gpvae.app.cli.columns import ColumnSpec

    spec = ColumnSpec(time_col="t", id_col=None, features=["v"])
    spec.save(tmp_path)
    saved = json.loads((tmp_path / "cli.json").read_text())
    assert "time_zone" not in saved
    assert ColumnSpec.load(tmp_path).time_zone is None
    spec.time_zone = "Europe/Berlin"
    spec.save(tmp_path)
    assert json.loads((tmp_path / "cli.json").read_text())["time_zone"] == "Europe/Berlin"
    assert ColumnSpec.load(tmp_path).time_zone == "Europe/Berlin"


def test_fit_prints_the_learned_kernels_in_the_data_s_units(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The learned kernels were visible only in the model's time steps (audit T #12): fit
    now prints one line per latent channel, lengthscales and periods in the data's units
    (half-hourly dates: hours; a period given as 24h reads 24 hours, fixed), at most
    KERNEL_LINES lines, then where to find the rest."""
    from gpvae import GPVAE
    from gpvae.app.cli.commands.fit import KERNEL_LINES

    rng = np.random.default_rng(0)
    data = tmp_path / "d.csv"
    times = pd.date_range("2021-01-01", periods=120, freq="30min")
    pd.DataFrame({"time": times, "a": np.sin(np.arange(120) / 8),
                  "b": rng.standard_normal(120)}).to_csv(data, index=False)  # fmt: skip
    out_dir = tmp_path / "m"
    args = ["fit", str(data), "--time-col", "time", "-o", str(out_dir), "--epochs", "1",
            "--hidden", "8", "--quiet", "--kernel", "matern32+periodic", "--period", "24h",
            "--latent-dim", str(KERNEL_LINES + 2)]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    at = lines.index("learned kernels (lengthscales and periods in the data's units):")
    shown = lines[at + 1 : at + 1 + KERNEL_LINES]
    assert [line.split(":")[0] for line in shown] == [f"  latent {i}" for i in range(KERNEL_LINES)]
    table = GPVAE.load(out_dir / "model").kernel_summary()
    lengthscale = table[(table.source == "latent 0") & (table.term == "0")
                        & (table.parameter == "lengthscale")].value.item()  # fmt: skip
    assert f"Matern32 lengthscale {lengthscale:.4g} hours" in shown[0]
    assert "period 24 hours (fixed)" in shown[0]
    assert lines[at + 1 + KERNEL_LINES].startswith("  ... and 2 more: GPVAE.load(")


def test_a_fit_on_durations_names_hours_and_writes_durations_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A time column of durations ('0 days 01:00:00') is read as numbers of hours, but fit
    printed 'lengthscale ... time units' and cli.json said time_type 'numeric', so forecast
    and sample wrote plain numbers (audit C #4). cli.json now says 'duration': the printout
    names hours, forecast, sample and backtest write durations, and a period given as a
    duration ('24h') is read in hours. A folder written before keeps its numbers."""
    n = 96
    data = tmp_path / "d.csv"
    pd.DataFrame({"elapsed": pd.to_timedelta(np.arange(n), unit="h").astype(str),
                  "a": np.sin(np.arange(n) / 4), "b": np.cos(np.arange(n) / 6)}
                 ).to_csv(data, index=False)  # fmt: skip
    out_dir = tmp_path / "m"
    args = ["fit", str(data), "--time-col", "elapsed", "-o", str(out_dir),
            "--kernel", "matern32+periodic", "--period", "24h", *FIT_OPTIONS]  # fmt: skip
    assert main(args) == 0
    shown = capsys.readouterr().out
    assert "time units" not in shown
    assert re.search(r"latent 0: Matern32 lengthscale [\d.]+ hours", shown)
    assert "period 24 hours (fixed)" in shown
    spec = json.loads((out_dir / CLI_FILE).read_text())
    assert (spec["time_type"], spec["time_start"], spec["time_step"]) == ("duration", 0.0, 1.0)
    fc, drawn, bt = tmp_path / "f.csv", tmp_path / "s.csv", tmp_path / "b.json"
    assert main(["forecast", str(out_dir), str(data), "--horizon", "2", "-o", str(fc)]) == 0
    assert pd.read_csv(fc)["elapsed"].tolist() == ["4 days 00:00:00", "4 days 01:00:00"]
    assert main(["sample", str(out_dir), "--length", "3", "-n", "1", "-o", str(drawn)]) == 0
    assert pd.read_csv(drawn)["elapsed"].tolist() == [
        "0 days 00:00:00", "0 days 01:00:00", "0 days 02:00:00"
    ]  # fmt: skip
    assert main(["backtest", str(out_dir), str(data), "--horizon", "2", "--origins", "1",
                 "-o", str(bt)]) == 0  # fmt: skip
    assert json.loads(bt.read_text())["origin_times"] == [["P3DT22H0M0S"]]
    # a cli.json written before durations were told apart: numbers of hours, as then
    (out_dir / CLI_FILE).write_text(json.dumps({**spec, "time_type": "numeric"}))
    assert main(["forecast", str(out_dir), str(data), "--horizon", "2", "-o", str(fc)]) == 0
    assert pd.read_csv(fc)["elapsed"].tolist() == [96.0, 97.0]
    assert main(["sample", str(out_dir), "--length", "2", "-n", "1", "-o", str(drawn)]) == 0
    assert pd.read_csv(drawn)["elapsed"].tolist() == [0.0, 1.0]


def test_fit_interrupted_in_training_says_only_the_command_lines_words(
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Ctrl-C inside the training loop: the estimator warns that it keeps the best weights
    in history_ and that resume=True goes on, which is the Python API's state; the command
    line keeps no model and says its own words (the checkpoint and --resume) once."""
    from gpvae.training import FitSession

    end = FitSession.on_epoch_end

    def interrupt(self: FitSession, state: Any, optimizer: Any) -> None:
        end(self, state, optimizer)
        if state.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(FitSession, "on_epoch_end", interrupt)
    out = tmp_path / "m"
    args = ["fit", str(files["long_csv"]), "--time-col", "t", "--id-col", "station"]
    assert main([*args, "-o", str(out), "--quiet", "--epochs", "5"]) == 130
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: fit: interrupted (Ctrl-C); the checkpoint"), lines
    assert "history_" not in lines[0]
    assert "resume=True" not in lines[0]


def _figures_drawn(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures that the commands save (--plot) and the fan charts of backtest, in order."""
    import gpvae.app.cli.tables as tables
    import gpvae.app.plots as plots

    figures: list[Any] = []
    save, fan = tables.save_figure, plots.plot_backtest

    def keep(fig: Any, *args: Any, **kwargs: Any) -> None:
        figures.append(fig)
        save(fig, *args, **kwargs)

    def keep_fan(*args: Any, **kwargs: Any) -> Any:
        figures.append(fan(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(tables, "save_figure", keep)
    monkeypatch.setattr(plots, "plot_backtest", keep_fan)
    return figures


def _line(fig: Any, label: str, panel: int = 0) -> Any:
    """The line called ``label`` on the panel ``panel`` of ``fig``."""
    (found,) = [ln for ln in fig.axes[panel].get_lines() if ln.get_label() == label]
    return found


def test_plots_draw_csv_text_of_changing_offsets_on_the_data_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plots of impute, forecast and detect and backtest's fan charts drew CSV text whose
    UTC offsets change (Europe/Berlin over its clock change, read in UTC) in UTC, an hour or
    two off the times that OUT, origin_times and sample's plot give on the data's clock."""
    t = pd.date_range("2021-03-27 00:00", periods=60, freq="h", tz="Europe/Berlin")
    wall = t.tz_localize(None).to_numpy()
    values = np.sin(np.arange(60) / 4.0)
    values[[5, 40]] = np.nan
    data, model = tmp_path / "d.csv", tmp_path / "m"
    pd.DataFrame({"when": t, "v": values}).to_csv(data, index=False)
    fit = ["fit", str(data), "--time-col", "when", "-o", str(model), "--epochs", "1"]
    assert main([*fit, "--latent-dim", "2", "--hidden", "8", "--quiet"]) == 0, capsys.readouterr()
    figures = _figures_drawn(monkeypatch)
    out = {c: tmp_path / f"{c}.csv" for c in ("impute", "forecast", "detect")}
    for command, extra in (("impute", []), ("forecast", ["--horizon", "3"]), ("detect", [])):
        args = [command, str(model), str(data), "-o", str(out[command]), *extra]
        assert main([*args, "--plot", str(tmp_path / f"{command}.png")]) == 0, capsys.readouterr()
    imputed, forecast, detected = figures
    np.testing.assert_array_equal(_line(imputed, "observed").get_xdata(), np.delete(wall, [5, 40]))
    # (--plot draws the last 30 steps of history: 3 horizons, and at least 30)
    np.testing.assert_array_equal(_line(forecast, "history").get_xdata(), wall[-30:])
    future = pd.read_csv(out["forecast"])["when"]
    assert future.iloc[0] == "2021-03-29 13:00:00+02:00"  # OUT, on the data's clock
    np.testing.assert_array_equal(
        _line(forecast, "forecast mean").get_xdata(),
        pd.to_datetime(future.str[:19]).to_numpy(),
    )
    np.testing.assert_array_equal(_line(detected, "data", panel=1).get_xdata(), wall)
    report = tmp_path / "bt.json"
    args = ["backtest", str(model), str(data), "--horizon", "2", "--origins", "2"]
    args += ["--num-samples", "10", "-o", str(report), "--plot-dir", str(tmp_path / "fans")]
    assert main(args) == 0, capsys.readouterr()
    origins = json.loads(report.read_text())["origin_times"][0]
    drawn = [_line(figures[-1], "forecast mean", k).get_xdata()[0] for k in range(2)]
    assert drawn == [np.datetime64(o[:19], "ns") for o in origins]
    assert all(o.endswith("+02:00") for o in origins)


def test_plot_titles_name_the_series_drawn(
    long_model: Path,
    wide_model: Path,
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The plots of impute, forecast and detect draw one series of a long file but their
    titles did not say which ('Imputation'); a wide file's one series keeps the title."""
    figures = _figures_drawn(monkeypatch)
    for command, extra in (("impute", []), ("forecast", ["--horizon", "2"]), ("detect", [])):
        for model, data, pick in (
            (long_model, files["long_csv"], ["--series", "b"]),
            (long_model, files["long_csv"], []),
            (wide_model, files["wide_parquet"], []),
        ):
            args = [command, str(model), str(data), "-o", str(tmp_path / "o.csv"), *extra]
            args += ["--num-samples", "20", "--plot", str(tmp_path / "p.png"), *pick]
            assert main([*args]) == 0, capsys.readouterr()
    first = pd.read_csv(files["long_csv"])["station"].iloc[0]  # drawn without --series
    assert [fig.get_suptitle() for fig in figures] == [
        f"{title}{of}"
        for title in ("Imputation", "Forecast", "Anomaly scores")
        for of in (" of station b", f" of station {first}", "")
    ]


def test_series_without_plot_warns_that_it_is_ignored(
    long_model: Path, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--series without --plot was ignored without a word: every series was imputed (its help
    says 'Series id to plot', which reads like a choice of the series to work on)."""
    for command, verb, extra in (
        ("impute", "imputed", []),
        ("forecast", "forecast", ["--horizon", "2"]),
        ("detect", "scored", []),
    ):
        args = [command, str(long_model), str(files["long_csv"]), "-o", str(tmp_path / "o.csv")]
        args += [*extra, "--num-samples", "20", "--series", "b"]
        assert main(args) == 0
        err = capsys.readouterr().err
        assert (
            "warning: --series: expected with --plot (it chooses the series that --plot draws), "
            f"found no --plot; it is ignored: every series is {verb}"
        ) in err
        assert main([*args, "--plot", str(tmp_path / "p.png")]) == 0
        assert "--series" not in capsys.readouterr().err
