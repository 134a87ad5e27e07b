"""The draws-against-coverage benchmark (``benchmarks/calibration_draws.py``): its hold-outs
and a tiny run's record."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from gpvae import settings


@pytest.mark.parametrize("pattern", ["points", "blocks"])
def test_hidden_entries_are_a_tenth_of_the_observed_ones(
    bench_script: Callable[[str], ModuleType], pattern: str
) -> None:
    rng = np.random.default_rng(0)
    X = np.where(rng.random((30, 48, 5)) < 0.9, 1.0, np.nan)
    hidden = bench_script("calibration_draws")._hidden(X, pattern, seed=3)
    observed = ~np.isnan(X)
    assert not (hidden & ~observed).any()
    assert 0.07 < hidden.sum() / observed.sum() < 0.13
    runs = hidden[:, 1:] & hidden[:, :-1]  # a hidden entry right after another
    assert (runs.sum() / hidden.sum() > 0.4) == (pattern == "blocks")


@pytest.mark.slow  # about 10 s: reads PhysioNet and fits a model
def test_a_tiny_run_records_every_draw_count(
    bench_script: Callable[[str], ModuleType], physionet_data: Path, tmp_path: Path
) -> None:
    default = settings.CALIBRATION_SAMPLES
    out = tmp_path / "draws.json"
    args = ["--data-dir", str(physionet_data), "--train", "40", "--val", "20", "--test", "20"]
    args += ["--epochs", "1", "--draws", "8", "4", "--out", str(out)]
    assert bench_script("calibration_draws").main(args) == 0
    rec = json.loads(out.read_text())
    assert [r["draws"] for r in rec["rows"]] == [8, 4]
    for row in rec["rows"]:
        assert 0.0 <= row["coverage_50"] <= row["coverage_90"] <= 1.0
        assert row["calibration_s"] > 0
        assert row["median_factor"] > 0
    assert rec["epochs_run"] == 1
    assert rec["hidden_test_entries"] > 0
    assert "--draws 8 4" in rec["command"]
    restored = settings.CALIBRATION_SAMPLES
    assert restored == default  # restored after the run
