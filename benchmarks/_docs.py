"""Generated regions of the documentation: the text between ``<!-- marker -->`` and
``<!-- /marker -->``, which the benchmark scripts write from their JSON records."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_region"]


def write_region(docs: Path, body: str, marker: str, what: str | None = None) -> None:
    """Put ``body`` between the ``<!-- marker -->`` markers of ``docs``; an error, named by
    ``what`` (the option that gave the marker; by default the document), when they are
    missing: a region's place in the document is chosen by hand."""
    begin, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    text = docs.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{what or docs.name}: expected {begin} and {end} in {docs}, found none")
    head, rest = text.split(begin, 1)
    docs.write_text(head + begin + "\n" + body + "\n" + end + rest.split(end, 1)[1])
