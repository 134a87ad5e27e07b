"""Fixtures of the benchmark-script tests: the scripts of ``benchmarks/`` imported as
modules."""

from __future__ import annotations

import importlib
import os
import shlex
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
def rerun_docs_command() -> Callable[[ModuleType, str, Path], tuple[str, str]]:
    """``rerun_docs_command(script, marker, tmp_path)``: see :func:`_rerun_docs_command`."""
    return _rerun_docs_command


def _rerun_docs_command(script: ModuleType, marker: str, tmp_path: Path) -> tuple[str, str]:
    """The text of ``docs/benchmarks.md`` and of a copy of it after rerunning the command
    printed there that writes region ``marker`` with ``benchmarks/<script>.py`` (its
    ``main``; results paths resolved from the checkout's root). Equal texts: the region is
    that command's output from the committed records."""
    root = BENCHMARKS.parent
    name = f"benchmarks/{Path(script.__file__).name}"
    docs = (root / "docs" / "benchmarks.md").read_text()
    [line] = [
        ln for ln in docs.splitlines()
        if f"{name} --results" in ln and ln.endswith(f"--marker {marker}")
    ]  # fmt: skip
    argv = shlex.split(line)
    argv = argv[argv.index(name) + 1 :]
    argv = [str(root / a) if a.startswith("benchmarks/results/") else a for a in argv]
    copy = tmp_path / "benchmarks.md"
    copy.write_text(docs)
    assert script.main([*argv, "--docs", str(copy)]) == 0
    return docs, copy.read_text()


@pytest.fixture(scope="session")
def physionet_data() -> Path:
    """The shared data directory (``GPVAE_DATA``, else ``../shared/data`` beside the
    checkout) when it holds PhysioNet 2012's set-a; the test skips otherwise."""
    root = Path(__file__).resolve().parents[2]
    data = Path(os.environ.get("GPVAE_DATA", root.parent / "shared" / "data"))
    if not (data / "physionet2012" / "set-a").is_dir():
        pytest.skip(f"PhysioNet 2012 data not found under {data} (set GPVAE_DATA)")
    return data
