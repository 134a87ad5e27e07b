"""The predict-speed docs table (``benchmarks/predict_speed.py``) is its JSON records
rendered (the earlier records first), each with its stored command."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


@pytest.fixture(scope="module")
def bench(bench_script: Callable[[str], ModuleType]) -> ModuleType:
    return bench_script("predict_speed")


def test_docs_table_is_the_records_rendered(bench: ModuleType) -> None:
    records = [
        json.loads((RESULTS / name).read_text())
        for name in (
            "predict_speed_before.json",
            "predict_speed_after_1759.json",
            "predict_speed.json",
            "predict_speed_s10_before.json",
            "predict_speed_s10_after.json",
            "predict_speed_s11_before.json",
            "predict_speed_s11.json",
            "predict_speed_s11_repeat.json",
            "predict_speed_s18.json",
            "predict_speed_s18_repeat.json",
            "predict_speed_s23_run2.json",
            "predict_speed_s23_run3.json",
            "predict_speed_s24.json",
            "predict_speed_s24_run2.json",
            "predict_speed_s26.json",
            "predict_speed_s26_run2.json",
            "predict_speed_s26_packed.json",
            "predict_speed_s27.json",
            "predict_speed_s27_run2.json",
        )
    ]
    docs = (ROOT / "docs/benchmarks.md").read_text()
    region = docs.split("<!-- predict-speed -->", 1)[1].split("<!-- /predict-speed -->", 1)[0]
    assert region.strip() == bench.render(records).strip()
    for rec in records:
        assert f"`{rec['command']}`" in region
        assert "benchmarks/predict_speed.py" in rec["command"]


def test_calibration_share_from_the_timer_or_the_epochs(bench: ModuleType) -> None:
    """The calibration's own time: the timer when recorded, else the calibrated fit's time
    outside its epochs less the plain fit's."""
    plain = {"fit_s": 10.0, "epochs": 2, "epoch_s": [4.0, 4.0], "load": [1.0]}
    cal = {"fit_s": 16.0, "epochs": 2, "epoch_s": [5.0, 5.0], "load": [1.0]}
    key = "**calibration's own time / plain fit** (goal <= 20 %)"
    rows = bench._rows({"plain": plain, "calibrated": cal})
    assert rows[key].startswith("**4.0 s = 40 %**")  # (16 - 10) - (10 - 8)
    rows = bench._rows({"plain": plain, "calibrated": {**cal, "calibration_s": 1.5}})
    assert rows[key] == "**1.5 s = 15 %**"


def test_doc_only_says_it_wrote_the_docs_alone(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--doc-only`` re-renders the docs from the records and says so; it does not write
    (nor claim to write) the records file."""
    out, doc = tmp_path / "predict_speed.json", tmp_path / "benchmarks.md"
    text = (RESULTS / "predict_speed_s27.json").read_text()
    out.write_text(text)
    argv = ["--doc-only", "--out", str(out), "--doc", str(doc)]
    assert bench.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {doc}"]
    assert out.read_text() == text
    region = doc.read_text().split("<!-- predict-speed -->", 1)[1]
    assert (
        region.split("<!-- /predict-speed -->", 1)[0].strip()
        == bench.render([json.loads(text)]).strip()
    )
