"""Where gpvae's learned kernel ends (``benchmarks/anomaly_kernels.py``): learned
lengthscales by tag and series, their ratios between two starts, and the docs tables."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest

V = "k5ph_tailmaxcap95_s32_b512"


@pytest.fixture(scope="module")
def kernels(bench_script: Callable[[str], ModuleType]) -> ModuleType:
    return bench_script("anomaly_kernels")


def _rec(series: str, tag: str, ls: list[float] | None, vus: float, init: float | None,
         dataset: str = "SMAP", dev: bool = False, model: str = "gpvae",
         kernel_lr: float | None = None, epochs: int = 20) -> dict[str, Any]:  # fmt: skip
    config: dict[str, Any] = {"lengthscale": init}
    if kernel_lr is not None:
        config["kernel_lr"] = kernel_lr
    return {"dataset": dataset, "series": series, "method": f"{model}/{V}", "tag": tag,
            "dev": dev, "vus_pr": vus, "epochs_run": epochs, "config": config,
            "kernel_fitted": {"0.lengthscale": ls, "0.variance": [1.0]} if ls else {}}  # fmt: skip


def test_learned_lengthscales_and_their_ratio_between_two_starts(kernels) -> None:  # type: ignore[no-untyped-def]
    recs = [
        # series A: the two starts meet (4 and 5); B: they do not (1 and 11.25)
        _rec("A", "s3", [3.0, 4.0, 9.0], 0.2, None, kernel_lr=0.1),
        _rec("A", "s16", [5.0, 5.0, 1.0], 0.4, 16.0, kernel_lr=0.1, epochs=30),
        _rec("B", "s3", [1.0], 0.5, None, kernel_lr=0.1),
        _rec("B", "s16", [11.25], 0.5, 16.0, kernel_lr=0.1, epochs=40),
        _rec("B", "c0", None, 0.3, None),  # no kernel recorded
        _rec("A", "c0", None, 0.1, None),
        _rec("C", "s3", [2.0], 0.9, None),  # no s16 record: left out
        _rec("D", "s3", [2.0], 0.9, None, dev=True),  # development series: left out
        _rec("D", "s16", [2.0], 0.9, 16.0, dev=True),
        _rec("D", "c0", None, 0.9, None, dev=True),
        _rec("A", "s16", [99.0], 0.0, 16.0, model="vae"),  # not gpvae: ignored
        _rec("N", "s3", [2.0], 0.1, None, dataset="NAB"),
        _rec("N", "s16", [8.0], 0.3, 16.0, dataset="NAB"),
        _rec("N", "c0", None, 0.2, None, dataset="NAB"),
    ]
    assert kernels.learned(recs[0]) == 4.0
    assert np.isnan(kernels.learned(recs[4]))
    cells = kernels.gather(recs, ["s3", "s16", "c0"])
    assert {c: sorted(s) for c, s in cells.items()} == {"SMAP+MSL": ["A", "B"], "NAB": ["N"]}
    text = kernels.render(recs, ["s3", "s16", "c0"], [("s3", "s16")])
    lines = text.splitlines()
    # medians over series: s3 learned 4 and 1 -> 2.5 (10%-90%: 1.3-3.7)
    assert "| SMAP+MSL | s3 | 2 | 3 | 0.1 | 2.50 (1.30-3.70) | 0.350 | 20.0 |" in lines
    assert "| SMAP+MSL | s16 | 2 | 16 | 0.1 | 8.12 (5.62-10.62) | 0.450 | 35.0 |" in lines
    assert "| SMAP+MSL | c0 | 2 | 3 | library | - | 0.200 | 20.0 |" in lines
    # ratios 5/4 = 1.25 (within 1.5) and 11.25/1 (not)
    assert "| SMAP+MSL | s3 | s16 | 2 | 6.25 (2.25-10.25) | 1 of 2 | +0.100 |" in lines
    assert "| NAB | s3 | s16 | 1 | 4.00 (4.00-4.00) | 0 of 1 | +0.200 |" in lines
    # a run without recorded kernels: no ratio, and no count of series that meet
    no_kernels = kernels.render(recs, ["s3", "c0"], [("s3", "c0")]).splitlines()
    assert "| NAB | s3 | c0 | 1 | - | - | +0.100 |" in no_kernels
    assert kernels.render(recs, ["zz"], []) == "No series has a gpvae record of every tag."


def test_main_writes_its_region_and_refuses_unknown_pairs(kernels, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    recs = [_rec("A", "s3", [2.0], 0.2, None), _rec("A", "s16", [4.0], 0.3, 16.0)]
    res = tmp_path / "r.json"
    res.write_text(json.dumps(recs))
    docs = tmp_path / "d.md"
    docs.write_text("head\n<!-- k -->\nold\n<!-- /k -->\ntail\n")
    argv = ["--results", str(res), "--tags", "s3", "s16", "--pairs", "s3:s16"]
    assert kernels.main([*argv, "--marker", "k", "--docs", str(docs)]) == 0
    out = capsys.readouterr().out
    text = docs.read_text()
    assert text.startswith("head\n<!-- k -->\n| data set |")
    assert text.endswith("<!-- /k -->\ntail\n")
    assert out.rstrip("\n") in text
    assert "| SMAP+MSL | s3 | s16 | 1 | 2.00 (2.00-2.00) | 0 of 1 | +0.100 |" in out
    with pytest.raises(SystemExit):
        kernels.main([*argv[:5], "--pairs", "s3:s9"])


@pytest.mark.parametrize(
    "marker", ["anomaly-kernels-s32-smap-msl", "anomaly-kernels-s32-nab", "anomaly-kernels-s33"]
)
def test_docs_region_is_its_documented_commands_output(
    kernels, rerun_docs_command, tmp_path, marker
) -> None:  # type: ignore[no-untyped-def]
    """docs/benchmarks.md's region is what the command printed beside it writes from the
    committed records: rerunning it on a copy of the docs changes nothing."""
    docs, rerun = rerun_docs_command(kernels, marker, tmp_path)
    assert f"<!-- {marker} -->\n| data set | tag |" in docs
    assert rerun == docs


def test_per_channel_starts_get_a_table_of_their_own(kernels) -> None:  # type: ignore[no-untyped-def]
    """Runs that start each latent channel at its own lengthscale: the main table shows the
    start as its values; the channel table gives each channel's learned median and counts
    the runs whose learned values keep the order of the starts (A keeps it, B swaps its
    last two channels)."""
    recs = [
        _rec("A", "ms", [2.0, 7.0, 30.0], 0.2, None),
        _rec("B", "ms", [4.0, 20.0, 10.0], 0.4, None),
        _rec("A", "c0", [3.0], 0.1, None),
        _rec("B", "c0", [3.0], 0.3, None),
    ]
    for r in recs[:2]:
        r["config"]["lengthscale"] = [3.0, 6.0, 12.0]
    assert kernels.initial(recs[0]) == (3.0, 6.0, 12.0)
    assert kernels.initial(recs[2]) == (3.0,)
    lines = kernels.render(recs, ["ms", "c0"], []).splitlines()
    assert "| SMAP+MSL | ms | 2 | 3,6,12 | library | 8.50 (7.30-9.70) | 0.300 | 20.0 |" in lines
    assert "| SMAP+MSL | c0 | 2 | 3 | library | 3.00 (3.00-3.00) | 0.200 | 20.0 |" in lines
    assert "| SMAP+MSL | ms | 0 | 3 | 3.00 (2.20-3.80) | 1.00 | 1 of 2 |" in lines
    assert "| SMAP+MSL | ms | 1 | 6 | 13.50 (8.30-18.70) | 2.25 | 1 of 2 |" in lines
    assert "| SMAP+MSL | ms | 2 | 12 | 20.00 (12.00-28.00) | 1.67 | 1 of 2 |" in lines
    assert not any("| c0 | 0 |" in line for line in lines)  # one start for every channel
    # without per-channel starts there is no channel table
    assert "keeping the channels' order" not in kernels.render(recs[2:], ["c0"], [])
