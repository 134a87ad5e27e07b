"""The example scripts under ``examples/`` that read shared data run end to end (skipped
when the shared data directory is absent), and their helpers agree with scikit-learn."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from gpvae.datasets import resolve_data_dir
from gpvae.errors import ValidationError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

try:
    DATA = resolve_data_dir()
except ValidationError:
    DATA = None


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_anomaly_example_metrics_agree_with_scikit_learn() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    ex = _load("anomaly_nab")
    rng = np.random.default_rng(0)
    label = (rng.random(500) < 0.1).astype(np.uint8)
    score = np.round(rng.normal(size=500) + label, 1)  # rounded: ties
    assert ex.auc_roc(score, label) == pytest.approx(roc_auc_score(label, score), abs=1e-12)
    # average precision over distinct scores (scikit-learn's) and over steps agree without ties
    distinct = rng.normal(size=500) + label
    assert ex.auc_pr(distinct, label) == pytest.approx(
        average_precision_score(label, distinct), abs=1e-12
    )
    assert ex.windows(np.array([0, 1, 1, 0, 0, 1, 0, 1])) == [(1, 2), (5, 5), (7, 7)]


@pytest.mark.skipif(
    DATA is None or not (DATA / "nab").is_dir(), reason="shared data nab/ not found"
)
def test_anomaly_example_runs_on_a_nab_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two epochs on a short series: it prints the flagged intervals with the series' own
    timestamps and the metrics, and writes the plot."""
    ex = _load("anomaly_nab")
    argv = ["--series", "realTraffic/speed_7578", "--epochs", "2", "--out", str(tmp_path)]
    assert ex.main([*argv, "--data-dir", str(DATA)]) == 0
    out = capsys.readouterr().out
    assert "flagged intervals" in out
    assert re.search(r"\n  20\d\d-\d\d-\d\dT\d\d:\d\d \.\. 20\d\d-", out), out[:2000]
    assert "AUC-ROC" in out
    assert "labelled windows with a flagged step" in out
    assert (tmp_path / "anomalies.png").stat().st_size > 10_000
