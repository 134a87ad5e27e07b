"""Input and output of the commands in one process (:mod:`gpvae.app.cli.shards`,
:mod:`gpvae.app.cli.tables`): Parquet files and folders read like the same CSV, OUT checked
against DATA before any work. The commands under torchrun are tests/app/test_cli_torchrun.py's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpvae.app.cli import main

FIT = ["--epochs", "2", "--latent-dim", "2", "--hidden", "8", "--quiet"]


def _wide(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """One series indexed by ``date`` (daily), two features, some missing."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-01-01", periods=n, freq="D", name="date")
    frame = pd.DataFrame({"a": np.sin(np.arange(n) / 4), "b": rng.normal(size=n)}, index=dates)
    frame.iloc[::5, 0] = np.nan
    return frame


def _errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]


def test_a_parquet_file_with_a_stored_date_index_reads_like_its_csv(tmp_path: Path) -> None:
    """``df.to_parquet()`` of a frame indexed by ``date`` holds the column, but it was read
    as the pandas index and dropped: "--time-col: unknown column 'date'"."""
    frame = _wide()
    frame.to_parquet(tmp_path / "w.parquet")
    frame.to_csv(tmp_path / "w.csv")
    assert main(["fit", str(tmp_path / "w.parquet"), "--time-col", "date",
                 "-o", str(tmp_path / "m"), *FIT]) == 0  # fmt: skip
    out = tmp_path / "imputed.csv"
    assert main(["impute", str(tmp_path / "m"), str(tmp_path / "w.parquet"), "-o", str(out)]) == 0
    imputed = pd.read_csv(out)
    assert list(imputed.columns[:3]) == ["date", "a", "b"]  # the CSV's columns
    assert imputed["date"].tolist() == pd.read_csv(tmp_path / "w.csv")["date"].tolist()
    assert imputed["a"].notna().all()


def _long(n: int = 3, seed: int = 1) -> pd.DataFrame:
    """n series of 20 steps (ids s0, s1, ...), two features, some missing."""
    rng = np.random.default_rng(seed)
    rows = [(f"s{i}", float(t), np.sin(t / 3 + i), rng.normal()) for i in range(n)
            for t in range(20)]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["id", "t", "a", "b"])
    frame.loc[rng.random(len(frame)) < 0.2, "a"] = np.nan
    return frame


@pytest.fixture(scope="module")
def long_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a folder of two Parquet files of long data, a model fitted on it)."""
    d = tmp_path_factory.mktemp("shards")
    data = d / "data"
    data.mkdir()
    frame = _long()
    frame.iloc[:30].to_parquet(data / "a.parquet", index=False)
    frame.iloc[30:].to_parquet(data / "b.parquet", index=False)
    assert main(["fit", str(data), "--time-col", "t", "--id-col", "id",
                 "-o", str(d / "m"), *FIT]) == 0  # fmt: skip
    return data, d / "m"


@pytest.mark.parametrize("out", ["imputed", "sub/imputed.parquet", "imputed.csv"])
def test_out_inside_the_data_folder_is_refused(
    out: str, long_folder: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """``-o DATA/imputed`` was accepted: its parts became part of DATA, and the next
    command on DATA failed (or read them as data)."""
    data, model = long_folder
    before = sorted(data.rglob("*"))
    capsys.readouterr()
    assert main(["impute", str(model), str(data), "-o", str(data / out)]) == 1
    lines = _errors(capsys)
    assert len(lines) == 1
    assert lines[0].startswith("error: OUT: expected a path outside the DATA folder")
    assert sorted(data.rglob("*")) == before


@pytest.mark.parametrize("command", ["impute", "forecast", "detect"])
def test_help_tells_the_folder_output_and_the_one_process_options(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "or a folder (a name without extension) that gets part-00000.parquet" in text
    if command == "detect":  # refused under torchrun, and nothing said so
        for option in ("--intervals", "--labels"):
            after = text.split(f"{option} TEXT", 1)[1].split(" --", 1)[0]
            assert "One process only (refused under torchrun)" in after, option


def test_forecast_keeps_a_date_column_as_dates(tmp_path: Path) -> None:
    """A Parquet date32 time column came back from forecast as timestamp[ns] (impute kept
    date32): the forecast's dates are dates again."""
    import datetime

    import pyarrow.parquet as pq

    days = [datetime.date(2024, 1, 1) + datetime.timedelta(days=k) for k in range(30)]
    frame = pd.DataFrame({"day": days, "y": np.sin(np.arange(30) / 3.0)})
    data = tmp_path / "d.parquet"
    frame.to_parquet(data)
    assert str(pq.read_schema(data).field("day").type) == "date32[day]"
    model, out = tmp_path / "m", tmp_path / "f.parquet"
    fit = ["fit", str(data), "--time-col", "day", "-o", str(model), "--epochs", "1"]
    assert main([*fit, "--latent-dim", "2", "--hidden", "8", "--quiet"]) == 0
    assert main(["forecast", str(model), str(data), "--horizon", "3", "-o", str(out)]) == 0
    assert str(pq.read_schema(out).field("day").type) == "date32[day]"
    got = pd.read_parquet(out)["day"].tolist()
    assert got == [datetime.date(2024, 1, 31), datetime.date(2024, 2, 1), datetime.date(2024, 2, 2)]


def test_forecast_writes_dates_as_data_writes_them(tmp_path: Path) -> None:
    """forecast wrote DATA's day-first dates (29/07/2021) and ISO times with a 'T' and a UTC
    offset in pandas' ISO form (2021-08-02; 2021-03-28 00:00:00+01:00), where impute keeps
    DATA's text: OUT writes the new dates in DATA's format."""
    days = pd.bdate_range("2021-01-04", periods=60)
    for k, (text, expected) in enumerate(
        (
            (days.strftime("%d/%m/%Y"), ["29/03/2021", "30/03/2021"]),
            (
                (days + pd.Timedelta(hours=9)).strftime("%Y-%m-%dT%H:%M:%S+01:00"),
                ["2021-03-29T09:00:00+01:00", "2021-03-30T09:00:00+01:00"],
            ),
        )
    ):
        data = tmp_path / "d.csv"
        pd.DataFrame({"day": text, "y": np.sin(np.arange(60) / 3.0)}).to_csv(data, index=False)
        model, out, fan = tmp_path / f"m{k}", tmp_path / "f.csv", tmp_path / "fan.png"
        fit = ["fit", str(data), "--time-col", "day", "-o", str(model), "--epochs", "1"]
        assert main([*fit, "--latent-dim", "2", "--hidden", "8", "--quiet"]) == 0
        args = ["forecast", str(model), str(data), "--horizon", "2", "-o", str(out)]
        assert main([*args, "--plot", str(fan)]) == 0
        assert pd.read_csv(out, dtype=str)["day"].tolist() == expected
        assert fan.is_file()


def test_sample_of_a_zoned_monthly_model_gives_month_starts(tmp_path: Path) -> None:
    """The calendar branch built the months in UTC: 2014-12-31 23:00 (zone dropped) for a
    model fitted on Berlin month starts."""
    idx = pd.date_range("2015-01-01", periods=36, freq="MS", tz="Europe/Berlin")
    data = tmp_path / "m.parquet"
    pd.DataFrame({"t": idx, "y": np.sin(np.arange(36.0))}).to_parquet(data)
    model, out = tmp_path / "model", tmp_path / "s.csv"
    fit = ["fit", str(data), "--time-col", "t", "-o", str(model), "--epochs", "1", "--quiet"]
    assert main([*fit, "--hidden", "8", "--latent-dim", "2"]) == 0
    assert main(["sample", str(model), "--length", "3", "-o", str(out)]) == 0
    assert pd.read_csv(out)["t"].tolist() == [
        "2015-01-01 00:00:00+01:00",
        "2015-02-01 00:00:00+01:00",
        "2015-03-01 00:00:00+01:00",
    ]


@pytest.mark.parametrize("id_col", [[], ["--id-col", "id"]], ids=["one-series", "long"])
def test_a_folder_without_pyarrow_says_to_install_it(
    id_col: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A folder of Parquet files read without pyarrow stopped with a bare
    "ModuleNotFoundError: import of pyarrow halted" (a single Parquet file says which engine
    is missing); it names DATA and says to install pyarrow."""
    data = tmp_path / "data"
    data.mkdir()
    _long().to_parquet(data / "a.parquet", index=False)
    for name in ("pyarrow", "pyarrow.dataset", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)
    capsys.readouterr()
    code = main(["fit", str(data), "--time-col", "t", *id_col, "-o", str(tmp_path / "m"), *FIT])
    assert code != 0
    (line,) = _errors(capsys)
    assert line.startswith(f"error: DATA: could not read {str(data)!r} as PARQUET: ")
    assert "install pyarrow (pip install pyarrow)" in line


def test_a_parquet_out_keeps_bool_and_int_features_without_gaps(tmp_path: Path) -> None:
    """A Parquet DATA's bool and int feature columns with every value observed come back
    with their types in a Parquet OUT (file or folder), their interval's ends too; a
    nullable boolean column with gaps holds floats throughout (a Parquet column has one
    type: the imputed values are not True/False), its observed values 1.0 / 0.0."""
    rng = np.random.default_rng(4)
    frame = _long()
    frame["flag"] = rng.random(len(frame)) < 0.5
    frame["cnt"] = rng.integers(0, 9, len(frame))
    frame["gappy"] = pd.array(rng.random(len(frame)) < 0.5, dtype="boolean")
    frame.loc[[3, 25], "gappy"] = pd.NA
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    assert main(["fit", str(tmp_path / "d.parquet"), "--time-col", "t", "--id-col", "id",
                 "-o", str(tmp_path / "m"), *FIT]) == 0  # fmt: skip
    for out in ("o.parquet", "parts"):
        assert main(["impute", str(tmp_path / "m"), str(tmp_path / "d.parquet"),
                     "-o", str(tmp_path / out)]) == 0  # fmt: skip
        back = pd.read_parquet(tmp_path / out)
        for end in ("", "_lower", "_upper"):
            assert back["flag" + end].dtype == bool
            assert back["flag" + end].tolist() == frame["flag"].tolist()
            assert back["cnt" + end].dtype == np.int64
            assert back["cnt" + end].tolist() == frame["cnt"].tolist()
            assert back["gappy" + end].dtype == np.float64
        seen = frame["gappy"].notna().to_numpy()
        assert back.loc[seen, "gappy"].tolist() == frame.loc[seen, "gappy"].astype(float).tolist()
