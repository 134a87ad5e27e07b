"""The predict-speed docs table (``benchmarks/predict_speed.py``) is its JSON records
rendered (the earlier records first), each with its stored command."""

from __future__ import annotations

import json
import shlex
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
    """``--doc-only`` re-renders the docs from the records (the record's own and those of
    the --compare files its run named) and says so; it does not write (nor claim to write)
    the records file."""
    out, doc = tmp_path / "predict_speed.json", tmp_path / "benchmarks.md"
    text = (RESULTS / "predict_speed_s27.json").read_text()
    out.write_text(text)
    argv = ["--doc-only", "--out", str(out), "--doc", str(doc)]
    assert bench.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {doc}"]
    assert out.read_text() == text
    region = doc.read_text().split("<!-- predict-speed -->", 1)[1]
    earlier = [json.loads(p.read_text()) for p in bench.recorded_compares(json.loads(text))]
    assert len(earlier) == 17
    assert (
        region.split("<!-- /predict-speed -->", 1)[0].strip()
        == bench.render([*earlier, json.loads(text)]).strip()
    )


def _documented_command(docs: str) -> list[str]:
    """The arguments of the command of the region's last record (the run whose table the
    region is; the earlier records' commands wrote the tables of their own day)."""
    region = docs.split("<!-- predict-speed -->", 1)[1].split("<!-- /predict-speed -->", 1)[0]
    lines = [ln for ln in region.splitlines() if ln.startswith("- ") and "predict_speed.py" in ln]
    argv = shlex.split(lines[-1].split("`")[1])
    argv = argv[argv.index("benchmarks/predict_speed.py") + 1 :]
    return [str(ROOT / a) if a.startswith("benchmarks/results/") else a for a in argv]


def test_doc_only_rebuilds_the_documented_table_from_the_record_alone(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--doc-only rendered --out and only the --compare files given again: without all 18
    of the region's run, the table shrank (said only in --help). The record's run names its
    --compare files, so its command with --doc-only, and --doc-only with its --out alone,
    both leave the docs as committed; a --compare list other than the run's is refused,
    naming the missing files, and nothing is written."""
    docs = (ROOT / "docs/benchmarks.md").read_text()
    argv = _documented_command(docs)
    out = argv[argv.index("--out") + 1]
    copy = tmp_path / "benchmarks.md"
    for run in ([*argv, "--doc-only"], ["--doc-only", "--out", out]):
        copy.write_text(docs.replace("| measurement |", "| changed |"))
        assert bench.main([*run, "--doc", str(copy)]) == 0
        assert copy.read_text() == docs, run
    copy.write_text(docs)
    some = argv[: argv.index("--compare") + 2]  # the first --compare only
    with pytest.raises(SystemExit):
        bench.main([*some, "--out", out, "--doc-only", "--doc", str(copy)])
    err = capsys.readouterr().err
    assert "--compare: expected the 18 records files the table of " in err
    assert "found 1 files; without benchmarks/results/predict_speed_after_1759.json, " in err
    assert copy.read_text() == docs


def test_a_run_keeps_its_compare_files_and_refuses_missing_ones(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stores the --compare files in its record (--doc-only reads them there); a
    --compare file that does not exist was left out of the table without a word, and is
    now refused before anything is measured."""
    measured: list[list[str]] = []

    def run(argv: list[str], timeout: float) -> dict[str, object]:
        measured.append(argv)
        return {"load": [0.5]}

    monkeypatch.setattr(bench, "_run", run)
    monkeypatch.setattr(bench, "_machine", lambda: {})
    earlier = RESULTS / "predict_speed_s10_before.json"
    out, doc = tmp_path / "new.json", tmp_path / "benchmarks.md"
    with pytest.raises(SystemExit):
        bench.main(["--out", str(out), "--doc", str(doc), "--compare", str(tmp_path / "no.json")])
    assert measured == []
    assert not out.exists()
    assert bench.main(["--out", str(out), "--doc", str(doc), "--compare", str(earlier)]) == 0
    rec = json.loads(out.read_text())
    assert rec["compare"] == ["benchmarks/results/predict_speed_s10_before.json"]
    written = doc.read_text()
    assert written.count("| measurement |") == 1
    assert "| measurement | before (94c6e01), " in written  # the earlier record first
    doc.write_text("")
    assert bench.main(["--doc-only", "--out", str(out), "--doc", str(doc)]) == 0
    assert doc.read_text() == written


def test_doc_only_without_out_names_the_documented_run(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--doc-only with the default --out rebuilt that file's run, a two-column table of
    2026-12-01, in place of the documented 19-column one: --out is required there, and the
    message names the file of the region's last run; nothing is written."""
    docs = (ROOT / "docs/benchmarks.md").read_text()
    copy = tmp_path / "benchmarks.md"
    copy.write_text(docs)
    with pytest.raises(SystemExit):
        bench.main(["--doc-only", "--doc", str(copy)])
    err = capsys.readouterr().err
    assert "--out: expected, with --doc-only, the records file of the run" in err
    assert "(the docs region's last run: benchmarks/results/predict_speed_s27_run2.json)" in err
    assert copy.read_text() == docs
