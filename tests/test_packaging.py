"""Tests of the packaging: what pyproject.toml declares and what the distributions ship."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _lower_bound(requirement: str) -> tuple[int, ...]:
    match = re.search(r">=\s*([0-9.]+)", requirement)
    assert match is not None, requirement
    return tuple(int(part) for part in match.group(1).split("."))


def test_pandas_lower_bound_has_what_the_cli_imports() -> None:
    # the CLI reads dates with pandas.tseries.api.guess_datetime_format (pandas >= 2.2)
    (pandas,) = [r for r in _project()["project"]["dependencies"] if r.startswith("pandas")]
    assert _lower_bound(pandas) >= (2, 2)


def test_licence_is_an_spdx_expression_with_its_text_shipped() -> None:
    project = _project()
    assert project["project"]["license"] == "MIT"
    assert project["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the gpvae developers" in text
    # license-files and an SPDX string need setuptools >= 77 to build
    (setuptools,) = [r for r in project["build-system"]["requires"] if "setuptools" in r]
    assert _lower_bound(setuptools) >= (77,)


def test_sdist_leaves_out_the_tests() -> None:
    # setuptools would ship tests/test_*.py alone, without the conftest, helpers and data
    # they need: an sdist whose tests cannot run
    lines = (ROOT / "MANIFEST.in").read_text().splitlines()
    assert "prune tests" in [line.strip() for line in lines]
