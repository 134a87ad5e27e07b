"""Input and output of the commands in one process (:mod:`gpvae.app.cli.shards`,
:mod:`gpvae.app.cli.tables`): Parquet files and folders read like the same CSV, OUT checked
against DATA before any work. The commands under torchrun are tests/app/test_cli_torchrun.py's.
"""

from __future__ import annotations

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
