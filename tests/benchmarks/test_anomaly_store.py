"""The anomaly benchmark keeps its records in one file per collection (NAB; SMAP and MSL),
the table reads them all, and every tracked results file stays under 1 MiB."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench(bench_script: Callable[[str], ModuleType]) -> ModuleType:
    return bench_script("anomaly")


def _rec(dataset: str, series: str) -> dict[str, object]:
    return {"dataset": dataset, "series": series, "method": "zscore", "tag": "t", "vus_pr": 0.5}


def _collections(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    """The benchmark's collection files (NAB; SMAP and MSL together) moved into tmp_path."""
    paths = {
        "NAB": tmp_path / "nab.json",
        "SMAP": tmp_path / "sm.json",
        "MSL": tmp_path / "sm.json",
    }
    monkeypatch.setattr(bench, "RESULTS", paths)
    return paths


def test_records_go_to_their_collection_file(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _collections(bench, tmp_path, monkeypatch)
    store = bench.AnomalyStore()
    for ds, name in (("NAB", "a"), ("SMAP", "P-1"), ("MSL", "C-1")):
        store.add(_rec(ds, name))
    assert [r["series"] for r in json.loads(paths["NAB"].read_text())] == ["a"]
    assert [r["series"] for r in json.loads(paths["SMAP"].read_text())] == ["P-1", "C-1"]
    again = bench.AnomalyStore()  # a rerun skips what is recorded
    assert again.has("MSL", "C-1", "zscore", "t")
    assert not again.has("NAB", "C-1", "zscore", "t")
    one = bench.AnomalyStore(str(tmp_path / "one.json"))  # --out: a single file
    one.add(_rec("NAB", "b"))
    one.add(_rec("SMAP", "E-1"))
    assert len(json.loads((tmp_path / "one.json").read_text())) == 2


def test_result_files_are_under_the_size_limit() -> None:
    for path in (ROOT / "benchmarks" / "results").glob("*.json"):
        assert path.stat().st_size < 1024 * 1024, path.name


def test_merge_adds_new_records_once_and_keeps_the_order(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _collections(bench, tmp_path, monkeypatch)
    store = bench.AnomalyStore()
    store.add(_rec("SMAP", "P-1"))
    store.add(_rec("MSL", "C-1"))
    shard = tmp_path / "shard.json"  # another run's --out file: one old record, two new
    other = bench.AnomalyStore(str(shard))
    other.add(_rec("SMAP", "P-1"))
    other.add(_rec("MSL", "D-1"))
    other.add(_rec("NAB", "a"))
    assert bench.main(["--merge", str(shard)]) == 0
    assert [r["series"] for r in json.loads(paths["SMAP"].read_text())] == ["P-1", "C-1", "D-1"]
    assert [r["series"] for r in json.loads(paths["NAB"].read_text())] == ["a"]
    assert bench.AnomalyStore().merge(json.loads(shard.read_text())) == 0  # nothing new
    changed = {**_rec("SMAP", "P-1"), "vus_pr": 0.25}  # same key, other values: replaced
    assert bench.AnomalyStore().merge([changed]) == 1
    recs = json.loads(paths["SMAP"].read_text())
    assert [(r["series"], r["vus_pr"]) for r in recs] == [("C-1", 0.5), ("D-1", 0.5), ("P-1", 0.25)]


def test_merge_variants_keeps_the_named_variants_of_gpvae_and_the_vae(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _collections(bench, tmp_path, monkeypatch)
    shard = tmp_path / "shard.json"
    other = bench.AnomalyStore(str(shard))
    for method, variant in (("gpvae", "a"), ("gpvae", "b"), ("vae", "b"), ("vae", "c")):
        other.add({**_rec("SMAP", "P-1"), "method": f"{method}/{variant}", "variant": variant})
    other.add({**_rec("SMAP", "P-1"), "method": "pca/b", "variant": "s32"})  # a baseline
    assert bench.main(["--merge", str(shard), "--merge-variants", "b,c"]) == 0
    recs = json.loads(paths["SMAP"].read_text())
    assert [r["method"] for r in recs] == ["gpvae/b", "vae/b", "vae/c", "pca/b"]
