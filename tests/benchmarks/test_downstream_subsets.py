"""Blocks of series other than the first (``prepare(subset_start=...)``, ``imputation.py
--subset-start``) and ``benchmarks/downstream_subsets.py``'s tables of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest


@pytest.fixture
def protocol(bench_script: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``_protocol`` reading 50 synthetic stays (stay i holds the value i; its label is i % 2)
    instead of PhysioNet."""
    mod = bench_script("_protocol")
    n, T, D = 50, 48, 3
    X = np.broadcast_to(np.arange(n, dtype=np.float64)[:, None, None], (n, T, D)).copy()
    X[:, ::2, 1] = np.nan
    data = SimpleNamespace(
        X=X,
        times=np.tile(np.arange(T, dtype=np.float64), (n, 1)),
        labels=np.arange(n) % 2,
        features=["a", "b", "c"],
    )
    monkeypatch.setattr(mod, "load_physionet2012", lambda data_dir=None: data)
    return mod


def _raw(prep: Any) -> np.ndarray:
    return prep.X * prep.std + prep.mean


def test_a_later_block_holds_those_series_split_as_the_first_block_is(protocol: Any) -> None:
    first = protocol.prepare("physionet2012", None, 20)
    later = protocol.prepare("physionet2012", None, 20, subset_start=30)
    # stays 30..49, in order, with their labels
    np.testing.assert_allclose(_raw(later)[:, 0, 0], np.arange(30, 50), atol=1e-9)
    np.testing.assert_array_equal(later.labels, np.arange(30, 50) % 2)
    # the split of a block is by position, as for the first block
    np.testing.assert_array_equal(later.train, first.train)
    np.testing.assert_array_equal(later.test, first.test)
    assert later.info["subset_start"] == 30
    assert "subset_start" not in first.info
    np.testing.assert_allclose(_raw(first)[:, 0, 0], np.arange(20), atol=1e-9)
    # the first block of more series than there are: all of them, as before
    assert len(protocol.prepare("physionet2012", None, 80).X) == 50


@pytest.mark.parametrize(
    ("subset", "start", "words"),
    [(20, 31, "subset_start: expected 0 to 30"), (20, -1, "subset_start"), (None, 5, "subset")],
)
def test_a_block_outside_the_series_is_refused_by_name(
    protocol: Any, subset: int | None, start: int, words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        protocol.prepare("physionet2012", None, subset, subset_start=start)


def test_blocks_are_records_of_their_own(protocol: Any, tmp_path: Path) -> None:
    results = protocol.ResultsFile(tmp_path / "r.json")
    base = {"dataset": "physionet2012", "pattern": "downstream", "method": "linear", "seed": 0}
    results.add({**base, "subset": 300, "auroc": 0.6})
    results.add({**base, "subset": 300, "subset_start": 300, "auroc": 0.7})
    assert len(protocol.ResultsFile(tmp_path / "r.json").records) == 2  # neither replaced
    assert results.has("physionet2012", "downstream", "linear", 0, 300)
    assert results.has("physionet2012", "downstream", "linear", 0, 300, 0)
    assert results.has("physionet2012", "downstream", "linear", 0, 300, 300)
    assert not results.has("physionet2012", "downstream", "linear", 0, 300, 600)


def test_the_harness_asks_for_a_subset_with_a_start(
    bench_script: Callable[[str], ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    harness = bench_script("imputation")
    base = ["--dataset", "physionet2012", "--method", "linear"]
    for argv in (
        [*base, "--subset-start", "300"],
        [*base, "--subset", "300", "--subset-start", "-300"],
    ):
        with pytest.raises(SystemExit) as err:
            harness.main(argv)
        assert err.value.code == 2
        assert "--subset-start: expected" in capsys.readouterr().err


def _records(aurocs: dict[int, dict[str, float]]) -> list[dict[str, Any]]:
    out = []
    for start, row in aurocs.items():
        for method, auroc in row.items():
            rec = {"dataset": "physionet2012", "method": method, "seed": 0, "subset": 300}
            if start:
                rec["subset_start"] = start
            out.append({**rec, "pattern": "downstream", "auroc": auroc, "auroc_folds": [auroc]})
            learned = method not in ("linear", "mean", "locf")
            out.append(
                {
                    **rec,
                    "pattern": "point",
                    "mae": 0.25 if method == "gpvae" else 0.3,
                    "epochs": 40 if learned else 0,
                    "settings": {"best_epoch": 35} if learned else {},
                }
            )
    return out


def test_the_table_compares_gpvae_with_each_blocks_best_peer(
    bench_script: Callable[[str], ModuleType],
) -> None:
    mod = bench_script("downstream_subsets")
    aurocs = {
        0: {"linear": 0.66, "gpvae": 0.65, "saits": 0.70, "brits": 0.60},
        300: {"linear": 0.72, "gpvae": 0.75, "saits": 0.70, "brits": 0.74},
        600: {"linear": 0.60, "gpvae": 0.62, "saits": 0.61, "brits": 0.58},
        900: {"linear": 0.70, "gpvae": 0.71},  # peers not run: left out of the summary
    }
    text = mod.table(_records(aurocs), {0: 37, 300: 41, 600: 38, 900: 48})
    assert "| 0-299 | 37 | 0.660 | 0.650 | 0.700 | 0.600 | -0.050 | -0.010 |" in text
    assert "| 300-599 | 41 | 0.720 | 0.750 | 0.700 | 0.740 | +0.010 | +0.030 |" in text
    assert "| 900-1199 | 48 | 0.700 | 0.710 | - | - | - | +0.010 |" in text
    assert "Over the 3 blocks that every method above has (0, 300, 600)" in text
    diffs = np.array([-0.05, 0.01, 0.01])  # gpvae minus the best peer of each block
    mean, lo, hi = mod.paired(diffs)
    assert mean == pytest.approx(diffs.mean())
    assert lo < mean < hi
    assert f"| the best peer in each block | {np.mean([0.70, 0.74, 0.61]):.4f} | " in text
    assert "peers: saits, brits)" in text
    assert f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}] | 2 of 3 |" in text
    # gpvae against SAITS: above in 2 of the 3 blocks, mean (-0.05 + 0.05 + 0.01) / 3
    assert "| saits | 0.6700 | +0.0033 [" in text
    assert "| gpvae | 4 | 0.2500 | 40 (35); 40 (35); 40 (35); 40 (35) |" in text
    # a choice of methods: brits left out, SAITS is then each block's best peer
    text = mod.table(_records(aurocs), None, only=("linear", "gpvae", "saits"))
    assert "| 300-599 | - | 0.720 | 0.750 | 0.700 | +0.050 | +0.030 |" in text
    assert "Over the 3 blocks" in text  # 900-1199 has no SAITS record


def test_several_seeds_are_averaged_where_every_seed_is_there(
    bench_script: Callable[[str], ModuleType],
) -> None:
    mod = bench_script("downstream_subsets")
    one = _records({0: {"linear": 0.66, "gpvae": 0.60}, 300: {"linear": 0.7, "gpvae": 0.8}})
    two = _records({0: {"linear": 0.66, "gpvae": 0.70}})  # block 300 lacks seed 1
    for r in two:
        r["seed"] = 1
    data = mod.blocks(one + two, seeds=(0, 1))
    assert data[0]["gpvae"]["auroc"] == pytest.approx(0.65)
    assert data[0]["gpvae"]["runs"] == [(40, 35), (40, 35)]
    assert "auroc" not in data[300]["gpvae"]
    assert mod.blocks(one + two)[300]["gpvae"]["auroc"] == pytest.approx(0.8)


def test_the_paired_interval_is_the_t_interval(bench_script: Callable[[str], ModuleType]) -> None:
    mod = bench_script("downstream_subsets")
    d = np.array([0.01, -0.02, 0.03, 0.00, 0.015])
    mean, lo, hi = mod.paired(d)
    half = 2.7764451051977987 * d.std(ddof=1) / np.sqrt(5)  # t(0.975, 4)
    assert (lo, hi) == pytest.approx((mean - half, mean + half))


@pytest.mark.parametrize("marker", ["downstream-subsets", "downstream-subsets-seeds"])
def test_docs_regions_are_their_documented_commands_output(
    bench_script: Callable[[str], ModuleType],
    rerun_docs_command: Callable[[ModuleType, str, Path], tuple[str, str]],
    physionet_data: Path,
    tmp_path: Path,
    marker: str,
) -> None:
    """docs/benchmarks.md's regions are what the commands printed beside them write from the
    committed records (the deaths per block read from the data: skips without it)."""
    docs, rerun = rerun_docs_command(bench_script("downstream_subsets"), marker, tmp_path)
    assert f"<!-- {marker} -->\nAUROC per block" in docs
    assert rerun == docs
