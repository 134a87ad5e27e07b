"""The README's claims point at records that exist, and its summary numbers are the generated
tables' numbers (docs/benchmarks.md is generated from benchmarks/results/ and its regions are
checked against their commands by tests/benchmarks)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: A decimal number (thousands separators allowed) or a percentage.
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*\.\d+%?|(?<![\w.])\d[\d,]*%")


def _section(text: str, start: str, end: str) -> str:
    a = text.index(start)
    return text[a : text.index(end, a)]


def _forms(token: str) -> set[str]:
    """A number as it may be written in the generated tables: itself, and a percentage also
    as a share (86.2% -> 0.862)."""
    token = token.replace(",", "")
    if not token.endswith("%"):
        return {token}
    share = float(token[:-1]) / 100.0
    digits = len(token[:-1].split(".")[1]) + 2 if "." in token else 2
    return {token, f"{share:.{digits}f}"}


def _numbers(text: str) -> set[str]:
    found = set()
    for token in NUMBER.findall(text):
        found |= _forms(token)
    return found


@pytest.mark.parametrize("doc", ["README.md", "docs/results.md"])
def test_every_record_named_exists(doc: str) -> None:
    text = (ROOT / doc).read_text()
    named = set(re.findall(r"`(?:benchmarks/results/)?([\w.-]+\.json)`", text))
    assert named, f"{doc}: expected it to name the records of its claims"
    missing = sorted(n for n in named if not (RESULTS / n).exists())
    assert not missing, f"{doc} names records that are not in benchmarks/results/: {missing}"


def test_glance_numbers_are_in_the_generated_tables() -> None:
    """Every number of the README's "Results at a glance" is one that docs/benchmarks.md
    prints (percentages also as shares), so the summary cannot drift from the records."""
    readme = (ROOT / "README.md").read_text()
    glance = _section(readme, "## Results at a glance", "## Python quickstart")
    docs = _numbers((ROOT / "docs" / "benchmarks.md").read_text())
    tokens = NUMBER.findall(glance)
    assert len(tokens) > 80, "expected the glance's tables of numbers"
    missing = [t for t in tokens if not (_forms(t) & docs)]
    assert not missing, f"README glance numbers not printed in docs/benchmarks.md: {missing}"


def test_glance_check_fails_on_an_edited_number() -> None:
    """The check above can fail: a number changed in the last digit is not in the docs."""
    docs = _numbers((ROOT / "docs" / "benchmarks.md").read_text())
    assert _forms("0.386") & docs
    assert not (_forms("0.38617") & docs)
    assert _forms("90.0%") & docs  # printed as the share 0.900


def test_readme_has_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    for marker in ("demo-command", "test-command"):
        block = _section(readme, f"<!-- {marker} -->", f"<!-- /{marker} -->")
        assert re.search(r"^bash \S+", block, re.M), f"README: no command under {marker}"
