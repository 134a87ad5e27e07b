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


def test_s2_median_line_covers_the_rows_of_a_lengths_latest_day(bench: ModuleType) -> None:
    def s2(ratio: float, warm: float, day: str) -> dict[str, object]:
        ours = {"epoch_s": ratio, "warm_epoch_s": warm}
        peer = {"epoch_s": 1.0, "warm_epoch_s": 1.0}
        return {"part": "s2", "T": 48, "gpvae": ours, "pypots": peer, "time_ratio": ratio,
                "warm_time_ratio": warm, "created": f"{day}T10:00:00Z"}  # fmt: skip

    rows = [s2(0.9, 0.5, "2026-12-01"), s2(0.6, 0.3, "2026-12-02"), s2(0.4, 0.4, "2026-12-02")]
    text = bench.render(rows)
    assert "T=48, the 2 rows of 2026-12-02: median time ratio **0.500** (range 0.400-0.600)" in text
    assert "warm epochs 0.350 (0.300-0.400)" in text
    assert "the 1 rows" not in bench.render(rows[:2])  # one row that day: no median line
