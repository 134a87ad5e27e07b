"""The speed section of docs/benchmarks.md (``benchmarks/speed.py``) is its JSON records
rendered, and S2's warm-epoch columns come from the records that have them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench(bench_script: Callable[[str], ModuleType]) -> ModuleType:
    return bench_script("speed")


def test_docs_section_is_the_records_rendered(bench: ModuleType) -> None:
    records = json.loads((ROOT / "benchmarks/results/speed.json").read_text())
    docs = (ROOT / "docs/benchmarks.md").read_text()
    region = docs.split("<!-- speed-table -->", 1)[1].split("<!-- /speed-table -->", 1)[0]
    assert region.strip() == bench.render(records).strip()
    assert "/work/" not in region  # the command is one a user can type


def test_s2_rows_show_warm_epochs_only_where_both_sides_have_one(bench: ModuleType) -> None:
    def s2(T: int, ours: dict[str, float], peer: dict[str, float]) -> dict[str, object]:
        rec: dict[str, object] = {"part": "s2", "T": T, "gpvae": ours, "pypots": peer}
        rec["time_ratio"] = ours["epoch_s"] / peer["epoch_s"]
        if "warm_epoch_s" in ours and "warm_epoch_s" in peer:
            rec["warm_time_ratio"] = ours["warm_epoch_s"] / peer["warm_epoch_s"]
        return rec

    text = bench.render(
        [
            s2(48, {"epoch_s": 1.2, "warm_epoch_s": 0.4}, {"epoch_s": 1.6, "warm_epoch_s": 1.5}),
            s2(500, {"epoch_s": 3.5}, {"epoch_s": 370.0}),
        ]
    )
    rows = [line for line in text.splitlines() if line.startswith(("| 48 ", "| 500 "))]
    assert "| 0.750 | 0.40 / 1.50 | 0.267 |" in rows[0]
    assert "| 0.009 | - | - |" in rows[1]


def test_s2_median_line_covers_the_rows_of_a_lengths_latest_run(bench: ModuleType) -> None:
    def s2(ratio: float, warm: float, when: str) -> dict[str, object]:
        ours = {"epoch_s": ratio, "warm_epoch_s": warm}
        peer = {"epoch_s": 1.0, "warm_epoch_s": 1.0}
        return {"part": "s2", "T": 48, "gpvae": ours, "pypots": peer, "time_ratio": ratio,
                "warm_time_ratio": warm, "created": f"2026-12-{when}:00Z"}  # fmt: skip

    # the latest run: the rows after the last gap of more than an hour (same day or not)
    rows = [s2(0.9, 0.5, "01T10:00"), s2(0.7, 0.5, "02T08:00"), s2(0.6, 0.3, "02T10:00"),
            s2(0.4, 0.4, "02T10:50")]  # fmt: skip
    text = bench.render(rows)
    assert (
        "T=48, the 2 rows of 2026-12-02 10:00-10:50 UTC: median time ratio **0.500** "
        "(range 0.400-0.600)" in text
    )
    assert "warm epochs 0.350 (0.300-0.400)" in text
    assert "the 1 rows" not in bench.render(rows[:3])  # one row in the latest run: no line


def test_s1_rows_name_their_kernel_float64_first(bench: ModuleType) -> None:
    def s1(T: int, ratio: float, kernel: str | None) -> dict[str, object]:
        rec: dict[str, object] = {"part": "s1", "T": T, "ratio": ratio, "gpvae_step_s": ratio,
                                  "plain_step_s": 1.0, "gp_part_s": 0.1}  # fmt: skip
        if kernel is not None:
            rec["kernel"] = kernel
        return rec

    text = bench.render([s1(48, 1.42, "float32"), s1(200, 1.4, None), s1(48, 1.57, "float64")])
    rows = [line for line in text.splitlines() if line.startswith(("| 48 ", "| 200 "))]
    assert [r.split(" | ")[1:5] for r in rows] == [
        ["float64", "1570", "1000", "**1.57**"],
        ["float64", "1400", "1000", "**1.40**"],  # a record without the field ran float64
        ["float32", "1420", "1000", "**1.42**"],
    ]


def test_s1_float32_run_keeps_the_float64_rows(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = [
        {"part": "s1", "T": 48, "ratio": 1.5, "kernel": "float64"},
        {"part": "s1", "T": 48, "ratio": 1.4, "kernel": "float32"},
    ]
    out = tmp_path / "speed.json"
    out.write_text(json.dumps(old))
    seen: list[str] = []

    def fake_run(python: str, argv: list[str], timeout: float) -> dict[str, object]:
        seen.extend(argv)
        return {"error": "not run"}

    monkeypatch.setattr(bench, "_run", fake_run)
    monkeypatch.setattr(bench, "S1_T", (48,))
    argv = ["--part", "s1", "--s1-kernel", "float32", "--out", str(out), "--quick"]
    argv += ["--plot", str(tmp_path / "p.png")]
    assert bench.main(argv) == 0
    records = json.loads(out.read_text())
    assert "--s1-kernel=float32" in seen
    assert [r.get("kernel") for r in records] == ["float64", None]  # the float32 row replaced


def test_s1_record_is_the_median_of_its_processes(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--s1-runs N`` measures each length in N fresh processes; the record's numbers are
    the medians over them (each number on its own), every process's numbers are kept, and
    the table shows the median ratio with the processes' range."""
    ratios = iter([1.40, 1.30, 1.90, 1.35, 1.45])

    def fake_run(python: str, argv: list[str], timeout: float) -> dict[str, object]:
        r = next(ratios)
        return {"gpvae_step_s": r * 0.02, "plain_step_s": 0.02, "ratio": r,
                "gp_part_s": r * 0.001, "repeats": 30, "kernel": "float32",
                "plain_mask": "where_zero"}  # fmt: skip

    monkeypatch.setattr(bench, "_run", fake_run)
    monkeypatch.setattr(bench, "S1_T", (48,))
    out = tmp_path / "speed.json"
    argv = ["--part", "s1", "--s1-runs", "5", "--out", str(out), "--doc", str(tmp_path / "d.md")]
    assert bench.main([*argv, "--plot", str(tmp_path / "p.png")]) == 0
    (rec,) = json.loads(out.read_text())
    assert rec["ratio"] == 1.40
    assert rec["gpvae_step_s"] == pytest.approx(0.028)
    assert rec["plain_mask"] == "where_zero"
    assert rec["repeats"] == 30
    assert [r["ratio"] for r in rec["runs"]] == [1.40, 1.30, 1.90, 1.35, 1.45]
    row = next(x for x in bench.render([rec]).splitlines() if x.startswith("| 48 "))
    assert "| **1.40** (1.30-1.90, 5 runs) |" in row
    assert bench.s1_summary([{"error": "timeout"}, {"ratio": 1.0}]) == {"error": "timeout"}


def test_s2_records_name_the_peer_interpreter_relative_to_the_checkout(bench: ModuleType) -> None:
    inside = bench.HERE.parent / ".venv-bench" / "bin" / "python"
    assert bench._shown(inside) == ".venv-bench/bin/python"
    assert bench._shown(Path("/opt/elsewhere/bin/python")) == "/opt/elsewhere/bin/python"
    rows = json.loads((bench.HERE / "results" / "speed.json").read_text())
    assert all(not r["python"].startswith("/") for r in rows if r.get("part") == "s2")


def test_quick_run_writes_its_own_files_never_the_committed_ones(
    bench: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--quick`` (the documented smoke run) writes ``speed_quick.json`` and
    ``speed_quick.png``, leaves the committed records, plot and docs alone, and says only
    what it wrote; given the committed records as ``--out`` it refuses."""
    committed = tmp_path / "speed.json"
    committed.write_text(json.dumps([{"part": "s3", "T": 1_000_000, "seconds": 9.0}]))
    doc = tmp_path / "benchmarks.md"
    doc.write_text("docs as committed\n")
    paths = {"RESULTS": committed, "PLOT": tmp_path / "speed.png", "DOC": doc}
    paths |= {"QUICK_RESULTS": tmp_path / "q.json", "QUICK_PLOT": tmp_path / "q.png"}
    for name, path in paths.items():
        monkeypatch.setattr(bench, name, path)

    def fake_run(python: str, argv: list[str], timeout: float) -> dict[str, object]:
        return {"seconds": 0.01, "peak_mib": 100.0, "peak_before_mib": 90.0}

    monkeypatch.setattr(bench, "_run", fake_run)
    assert bench.main(["--part", "s3", "--quick"]) == 0
    assert json.loads(committed.read_text()) == [{"part": "s3", "T": 1_000_000, "seconds": 9.0}]
    assert not paths["PLOT"].exists()
    assert doc.read_text() == "docs as committed\n"
    quick = json.loads(paths["QUICK_RESULTS"].read_text())
    assert [r["T"] for r in quick if r["part"] == "s3"] == list(bench.QUICK_S3_T)
    assert paths["QUICK_PLOT"].exists()
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"wrote {paths['QUICK_RESULTS']} and {paths['QUICK_PLOT']}"
    for argv in (["--out", str(committed)], ["--doc", str(doc)], ["--doc-only"]):
        with pytest.raises(SystemExit):
            bench.main(["--part", "s3", "--quick", *argv])
        assert "--quick" in capsys.readouterr().err
    assert json.loads(committed.read_text())[0]["T"] == 1_000_000


def test_gp_scaling_quick_run_keeps_the_committed_records(
    bench_script: Callable[[str], ModuleType],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``gp_scaling.py --quick`` writes ``gp_scaling_quick.json``, never the committed
    ``gp_scaling.json``, and refuses the committed file as ``--out``."""
    scaling = bench_script("gp_scaling")
    committed, quick = tmp_path / "gp_scaling.json", tmp_path / "gp_scaling_quick.json"
    committed.write_text("[]\n")
    monkeypatch.setattr(scaling, "RESULTS", committed)
    monkeypatch.setattr(scaling, "QUICK_RESULTS", quick)

    def fake_run(script: Path, argv: list[str], timeout: float) -> dict[str, object]:
        return {"peak_kib": 1024, "seconds": 0.01, "seconds_all": [0.01]}

    monkeypatch.setattr(scaling, "_run", fake_run)
    assert scaling.main(["--quick"]) == 0
    assert committed.read_text() == "[]\n"
    assert len(json.loads(quick.read_text())) == sum(map(len, scaling.QUICK.values()))
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {quick}"
    with pytest.raises(SystemExit):
        scaling.main(["--quick", "--out", str(committed)])
    assert "--quick: --out" in capsys.readouterr().err
    assert committed.read_text() == "[]\n"


def test_gp_scaling_docs_region_is_its_documented_commands_output(
    bench_script: Callable[[str], ModuleType],
    rerun_docs_command: Callable[[ModuleType, str, Path], tuple[str, str]],
    tmp_path: Path,
) -> None:
    """docs/benchmarks.md's gp-scaling region is what ``gp_scaling.py --doc-only`` (the
    command printed in it) renders from the committed records, measuring nothing."""
    scaling = bench_script("gp_scaling")
    docs, rerun = rerun_docs_command(scaling, "gp-scaling-table", tmp_path)
    assert "<!-- gp-scaling-table -->\n## GP backends" in docs
    assert "| markov | 100,000 | 26.9 | 678 |" in docs
    assert rerun == docs


def test_gp_scaling_doc_only_notes_records_before_the_parallel_scan(
    bench_script: Callable[[str], ModuleType],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Records without the markov path (made before the parallel scan) get the note that
    they predate it; records of the current script (``markov_method``) do not. A failed
    configuration gets its row; ``--doc-only`` with ``--quick`` is refused."""
    scaling = bench_script("gp_scaling")
    settings = {"B": 1, "L": 1, "kernel": "Matern32(lengthscale=10, variance=1)",
                "dtype": "float64", "threads": 2, "repeats": 5}  # fmt: skip
    old = [
        {
            "backend": "markov",
            "T": 1000,
            "seconds": 12.345,
            "peak_mib": 1234.5,
            "settings": settings,
        },
        {"backend": "dense", "T": 4000, "error": "timeout", "settings": settings},
    ]
    text = scaling.render(old)
    assert "Matern32, float64, 2 threads, irregular times, median of 5 runs" in text
    assert "| markov | 1,000 | 12.3 | 1,234 |" in text
    assert "| dense | 4,000 | failed: timeout | - |" in text
    assert "These markov figures predate the parallel-scan path" in text
    new = [{**old[0], "settings": {**settings, scaling.MARKOV_METHOD: "auto"}}]
    assert "predate" not in scaling.render(new)
    results, docs = tmp_path / "r.json", tmp_path / "d.md"
    results.write_text(json.dumps(new))
    docs.write_text("head\n<!-- gp-scaling-table -->\nold\n<!-- /gp-scaling-table -->\ntail\n")
    argv = ["--results", str(results), "--docs", str(docs), "--doc-only"]
    assert scaling.main(argv) == 0
    assert docs.read_text() == (
        "head\n<!-- gp-scaling-table -->\n"
        + scaling.render(new)
        + "\n<!-- /gp-scaling-table -->\ntail\n"
    )
    with pytest.raises(SystemExit):
        scaling.main([*argv, "--quick"])
    assert "--quick: expected no --doc-only" in capsys.readouterr().err
