"""The distributed benchmark's docs table (``benchmarks/distributed.py``) is its JSON record
rendered, and its command is the record's stored command, every flag included."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench(bench_script: Callable[[str], ModuleType]) -> ModuleType:
    return bench_script("distributed")


def test_docs_table_is_the_record_with_its_stored_command(bench: ModuleType) -> None:
    record = json.loads((ROOT / "benchmarks/results/distributed.json").read_text())
    docs = (ROOT / "docs/benchmarks.md").read_text()
    region = docs.split(bench.BEGIN, 1)[1].split(bench.END, 1)[0]
    assert region.strip() == bench.render(record).strip()
    stored = record["command"].split()
    assert stored[1] == "benchmarks/distributed.py"
    command = region.split("Command: `", 1)[1].split("`", 1)[0]
    assert command == " ".join([bench.PREFIX, *stored[1:]])


def test_docs_command_without_a_stored_one_lists_the_settings(bench: ModuleType) -> None:
    record = {"epochs": 2, "batch_sizes": [32], "runs_selected": ["one", "own"]}
    assert bench.doc_command(record) == (
        f"{bench.PREFIX} benchmarks/distributed.py --data-dir ../shared/data --epochs 2 "
        "--batch-sizes 32 --runs one own"
    )
