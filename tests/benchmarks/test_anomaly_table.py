"""The anomaly table (``benchmarks/anomaly_table.py``): another tag's gpvae and VAE variant
as further rows beside a tag's records (``--compare``); the docs regions it writes
(``--marker``) and the commands printed beside them."""

from __future__ import annotations

import importlib
import json
import re
import shlex
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


def test_main_writes_only_the_region_its_marker_names(table, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Without --marker the table is printed and the docs are left as they are (an earlier
    session's command no longer overwrites the README's region); with it, only that
    region changes."""
    res = tmp_path / "r.json"
    res.write_text(json.dumps([_rec("A", "gpvae/old", "s10", 0.1), _rec("A", "pca", "s10", 0.3)]))
    docs = tmp_path / "d.md"
    before = f"{table.BEGIN}\nkept\n{table.END}\n<!-- mine -->\nold\n<!-- /mine -->\ntail\n"
    docs.write_text(before)
    args = ["--results", str(res), "--tag", "s10", "--variant", "old", "--docs", str(docs)]
    assert table.main(args) == 0
    assert docs.read_text() == before
    assert table.main([*args, "--marker", "mine"]) == 0
    text = docs.read_text()
    assert text.startswith(f"{table.BEGIN}\nkept\n{table.END}\n<!-- mine -->\n**Held-out")
    assert "| MSL | 1 | gpvae (GP prior) | 0.100 |" in text
    assert "\nold\n" not in text
    assert text.endswith("<!-- /mine -->\ntail\n")


def test_a_variant_the_tag_has_no_gpvae_record_of_is_refused(table, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A table without gpvae's rows is not printed or written: --variant (default CHOSEN)
    must be one of the tag's gpvae variants, and the message names them."""
    res = tmp_path / "r.json"
    res.write_text(json.dumps([_rec("A", "gpvae/old", "main", 0.1), _rec("A", "pca", "main", 0.3)]))
    docs = tmp_path / "d.md"
    docs.write_text("<!-- mine -->\nold\n<!-- /mine -->\n")
    with pytest.raises(SystemExit):
        table.main(["--results", str(res), "--tag", "main", "--variant", "new",
                    "--docs", str(docs), "--marker", "mine"])  # fmt: skip
    err = capsys.readouterr().err
    assert "--variant: expected a score variant of tag 'main'" in err
    assert "(old), found 'new'" in err
    assert docs.read_text() == "<!-- mine -->\nold\n<!-- /mine -->\n"


def _documented_commands(docs: str) -> list[list[str]]:
    """The arguments of every ``python benchmarks/anomaly_table.py`` command of the docs, in
    order: those in code blocks (one line each) and those in the prose (between backticks,
    possibly over several lines)."""
    name = "python benchmarks/anomaly_table.py"
    found = [(m.start(), m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(.*)$", docs, re.M)]
    found += [(m.start(), m.group(1)) for m in re.finditer(rf"`{re.escape(name)}([^`]*)`", docs)]
    return [shlex.split(args) for _, args in sorted(found)]


def test_every_documented_command_leaves_the_docs_as_committed(table, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every anomaly_table.py command printed in docs/benchmarks.md, run in the order
    printed on a copy of the docs from the committed records, changes nothing: each one
    with --marker writes the region it is printed beside (the README's anomaly-table, the
    session-8 anomaly-table-s8), and the others only print."""
    docs = (BENCH.parent / "docs" / "benchmarks.md").read_text()
    commands = _documented_commands(docs)
    markers = [c[c.index("--marker") + 1] for c in commands if "--marker" in c]
    assert len(commands) == 11
    assert sorted(set(markers)) == ["anomaly-table", "anomaly-table-s8"]
    copy = tmp_path / "benchmarks.md"
    copy.write_text(docs)
    for argv in commands:
        assert table.main([*argv, "--docs", str(copy)]) == 0
        assert copy.read_text() == docs, argv


def test_the_bare_call_asks_for_a_tag(table, capsys) -> None:  # type: ignore[no-untyped-def]
    """Without arguments the script said that tag main (the old default) has no records of
    today's CHOSEN: --tag is required, and the usage line says so."""
    with pytest.raises(SystemExit):
        table.main([])
    err = capsys.readouterr().err
    assert "the following arguments are required: --tag" in err
    assert "--variant: expected" not in err
    assert "--tag TAG" in err
    assert "[--tag TAG]" not in err  # not shown as optional in the usage
