"""Fixtures of the benchmark-script tests: the scripts of ``benchmarks/`` imported as
modules."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="session")
def bench_script() -> Callable[[str], ModuleType]:
    """``bench_script(name)``: ``benchmarks/<name>.py`` imported (its own imports of the
    other scripts, such as ``_protocol``, resolve while it loads)."""

    def load(name: str) -> ModuleType:
        sys.path.insert(0, str(BENCHMARKS))
        try:
            return importlib.import_module(name)
        finally:
            sys.path.remove(str(BENCHMARKS))

    return load


@pytest.fixture(scope="session")
def physionet_data() -> Path:
    """The shared data directory (``GPVAE_DATA``, else ``../shared/data`` beside the
    checkout) when it holds PhysioNet 2012's set-a; the test skips otherwise."""
    root = Path(__file__).resolve().parents[2]
    data = Path(os.environ.get("GPVAE_DATA", root.parent / "shared" / "data"))
    if not (data / "physionet2012" / "set-a").is_dir():
        pytest.skip(f"PhysioNet 2012 data not found under {data} (set GPVAE_DATA)")
    return data
