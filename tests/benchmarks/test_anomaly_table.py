"""The anomaly table (``benchmarks/anomaly_table.py``): another tag's gpvae and VAE variant
as further rows beside a tag's records (``--compare``)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def table():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("anomaly_table")
    finally:
        sys.path.remove(str(BENCH))


def _rec(series: str, method: str, tag: str, vus: float, dev: bool = False) -> dict[str, Any]:
    return {"dataset": "MSL", "series": series, "method": method, "tag": tag, "vus_pr": vus,
            "auc_pr": vus, "auc_roc": 0.5, "wall_seconds": 1.0, "dev": dev,
            "config": {"far": 0.01}, "false_alarm_rate": 0.01}  # fmt: skip


def test_compare_adds_another_tags_gpvae_row(table) -> None:  # type: ignore[no-untyped-def]
    recs = []
    for s, (old, new, pca) in {"A": (0.1, 0.5, 0.3), "B": (0.3, 0.7, 0.5)}.items():
        recs += [_rec(s, "gpvae/old", "s10", old), _rec(s, "pca", "s10", pca),
                 _rec(s, "gpvae/new", "s11", new), _rec(s, "gpvae/old", "s11", 0.9),
                 _rec(s, "vae/new", "s11", new - 0.1)]  # fmt: skip
    recs += [_rec("C", "gpvae/old", "s10", 0.2), _rec("C", "pca", "s10", 0.2)]  # no s11
    plain = table.render(recs, "s10", "old")
    assert "| MSL | 3 | gpvae (GP prior) | 0.200 |" in plain
    assert "s11" not in plain
    both = table.render(recs, "s10", "old", compare=["s11:new"])
    # the series that every row has (A, B): old 0.2, new 0.6, PCA 0.4
    assert "| MSL | 2 | gpvae (GP prior) | 0.200 |" in both
    assert "| MSL | 2 | gpvae (GP prior), s11 new | 0.600 |" in both
    assert "| MSL | 2 | PCA reconstruction | 0.400 |" in both
    assert "| MSL | 2 | same nets, N(0, I) prior (Donut-like), s11 new | 0.500 |" in both
    means = both.split("Threshold")[0].splitlines()
    rows = [line.split(" | ")[2] for line in means if line.startswith("| MSL | 2 |")]
    vae = "same nets, N(0, I) prior (Donut-like), s11 new"
    assert rows == ["gpvae (GP prior)", "gpvae (GP prior), s11 new", vae, "PCA reconstruction"]
    assert "| MSL, gpvae (GP prior), s11 new | 2 | 0.01 |" in both
    # the s11 record of the old variant is not taken
    assert "0.900" not in both
