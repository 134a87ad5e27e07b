"""Where gpvae's learned kernel ends, by its starting point and learning rate: the learned
lengthscales of runs that differ only in the initial lengthscale (and kernel learning
rate), read from their records (``benchmarks/anomaly.py`` writes ``kernel_fitted``).

If the kernel's hyper-parameters were set by the data, two fits of one series that start
from different lengthscales would end near each other; if they end near where they
started, the starting value is a setting of the model, not something it learns. Per
collection (SMAP+MSL, NAB; held-out series that have a record of every tag):

- per tag: its runs' initial lengthscale and kernel learning rate (from ``config``), the
  learned lengthscale (per run the median over latent channels; then the median and the
  10%-90% range over series), mean VUS-PR and mean epochs run;
- per pair ``A:B`` (``--pairs``): per series the ratio of B's learned lengthscale to A's
  (median and 10%-90% range), how many of the series whose two runs both recorded their
  kernels end within a factor 1.5 of each other, and the mean VUS-PR of B minus A;
- per tag whose runs start each latent channel at its own lengthscale (``--lengthscale
  3,6,12,24``): each channel's start and learned value, and in how many runs the learned
  values keep the order of the starts.

    python benchmarks/anomaly_kernels.py --results benchmarks/results/anomaly_s32.json \\
        --tags TAG_A TAG_B --pairs TAG_A:TAG_B --marker NAME
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anomaly_table import collection, write_region  # a sibling script

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
#: The library's initial lengthscale of a kernel given by name (``settings``), for runs
#: whose config leaves it to the library (``lengthscale`` None).
LIBRARY_LENGTHSCALE = 3.0
#: Learned lengthscales within this factor of each other "meet".
MEET = 1.5


def learned(record: dict[str, Any]) -> float:
    """The run's learned lengthscale: the median over its latent channels (NaN when the
    record has none)."""
    ls = (record.get("kernel_fitted") or {}).get("0.lengthscale")
    return float(np.median(ls)) if ls else float("nan")


def initial(record: dict[str, Any]) -> tuple[float, ...]:
    """The run's initial lengthscale per latent channel (one value for all channels when
    the config gives one, or leaves it to the library)."""
    value = record["config"].get("lengthscale") or LIBRARY_LENGTHSCALE
    if isinstance(value, list):
        return tuple(float(v) for v in value)
    return (float(value),) * int(record["config"].get("latent_dim", 1))


def _starts(rs: Sequence[dict[str, Any]]) -> str:
    """The runs' initial lengthscales: distinct values joined by '/', a per-channel start
    as its values joined by ','."""
    found = {initial(r) for r in rs}
    if all(len(set(v)) == 1 for v in found):
        return "/".join(f"{v:g}" for v in sorted({v[0] for v in found}))
    return "/".join(",".join(f"{x:g}" for x in v) for v in sorted(found))


def gather(
    records: Sequence[dict[str, Any]], tags: Sequence[str]
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """collection -> series -> tag -> gpvae's held-out record, for the series that have a
    record of every tag."""
    found: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in records:
        if r.get("dev") or not r["method"].startswith("gpvae/") or r.get("tag") not in tags:
            continue
        found.setdefault((r["dataset"], r["series"]), {})[r["tag"]] = r
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for (dataset, series), by_tag in sorted(found.items()):
        if all(t in by_tag for t in tags):
            out.setdefault(collection(dataset), {})[series] = by_tag
    return out


def _range(values: np.ndarray, fmt: str = ".2f") -> str:
    if np.isnan(values).all():
        return "-"
    lo, mid, hi = np.nanquantile(values, [0.1, 0.5, 0.9])
    return f"{mid:{fmt}} ({lo:{fmt}}-{hi:{fmt}})"


def _table(columns: Sequence[str], align: str, rows: Sequence[str]) -> str:
    """A markdown table: the header of ``columns``, the ``align`` row, then ``rows``."""
    return "\n".join([f"| {' | '.join(columns)} |", align, *rows])


def _by_tag(
    cells: dict[str, dict[str, dict[str, dict[str, Any]]]], tags: Sequence[str]
) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """(collection, tag, the tag's records over the collection's series), in order."""
    for coll, by_series in cells.items():
        for tag in tags:
            yield coll, tag, [by_tag[tag] for by_tag in by_series.values()]


def render(
    records: Sequence[dict[str, Any]], tags: Sequence[str], pairs: Sequence[tuple[str, str]]
) -> str:
    cells = gather(records, tags)
    if not cells:
        return "No series has a gpvae record of every tag."
    lines = []
    for coll, tag, rs in _by_tag(cells, tags):
        lr = {str(r["config"].get("kernel_lr", "library")) for r in rs}
        lines.append(
            f"| {coll} | {tag} | {len(rs)} | {_starts(rs)} "
            f"| {'/'.join(sorted(lr))} | {_range(np.array([learned(r) for r in rs]))} "
            f"| {np.mean([r['vus_pr'] for r in rs]):.3f} "
            f"| {np.mean([r['epochs_run'] for r in rs]):.1f} |"
        )
    columns = ["data set", "tag", "series", "initial lengthscale", "kernel lr",
               "learned lengthscale, median (10%-90%)", "VUS-PR", "epochs run"]  # fmt: skip
    text = _table(columns, "| --- | --- | ---: | ---: | --- | --- | ---: | ---: |", lines)
    if pairs:
        rows = []
        for coll, by_series in cells.items():
            for a, b in pairs:
                ratio = np.array([learned(d[b]) / learned(d[a]) for d in by_series.values()])
                diff = np.array([d[b]["vus_pr"] - d[a]["vus_pr"] for d in by_series.values()])
                known = ~np.isnan(ratio)  # both runs recorded their kernels
                meet = int(((ratio < MEET) & (ratio > 1 / MEET)).sum())
                within = f"{meet} of {known.sum()}" if known.any() else "-"
                rows.append(
                    f"| {coll} | {a} | {b} | {len(ratio)} | {_range(ratio)} "
                    f"| {within} | {diff.mean():+.3f} |"
                )
        columns = ["data set", "A", "B", "series", "learned B / A, median (10%-90%)",
                   f"within a factor {MEET:g}", "VUS-PR B - A"]  # fmt: skip
        text += "\n\n" + _table(columns, "| --- | --- | --- | ---: | --- | ---: | ---: |", rows)
    channels = by_channel(cells, tags)
    if channels:
        text += "\n\n" + channels
    return text + "\n"


def by_channel(cells: dict[str, dict[str, dict[str, dict[str, Any]]]], tags: Sequence[str]) -> str:
    """For tags whose runs start the latent channels at different lengthscales: per channel
    its start and where it ends (median and 10%-90% over series), and in how many runs the
    learned values keep the order of the starts ('' when no tag has such runs)."""
    rows = []
    for coll, tag, found in _by_tag(cells, tags):
        rs = [r for r in found if r.get("kernel_fitted")]
        starts = {initial(r) for r in rs}
        if len(starts) != 1 or len(set(next(iter(starts)))) == 1:
            continue  # one start for every channel, or runs that differ in their starts
        start = np.array(next(iter(starts)))
        ends = np.array([r["kernel_fitted"]["0.lengthscale"] for r in rs])  # (runs, L)
        order = np.argsort(start, kind="stable")
        kept = int((np.diff(ends[:, order], axis=1) > 0).all(axis=1).sum())
        for c in range(len(start)):
            rows.append(
                f"| {coll} | {tag} | {c} | {start[c]:g} | {_range(ends[:, c])} "
                f"| {np.median(ends[:, c] / start[c]):.2f} | {kept} of {len(rs)} |"
            )
    if not rows:
        return ""
    columns = ["data set", "tag", "channel", "initial lengthscale", "learned, median (10%-90%)",
               "learned / initial, median", "runs keeping the channels' order"]  # fmt: skip
    return _table(columns, "| --- | --- | ---: | ---: | --- | ---: | ---: |", rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", nargs="+", required=True)
    p.add_argument("--tags", nargs="+", required=True, help="gpvae's runs, one tag each.")
    p.add_argument(
        "--pairs",
        nargs="*",
        default=[],
        metavar="A:B",
        help="Tags (of --tags) whose learned lengthscales are compared series by series.",
    )
    p.add_argument("--marker", default=None, help="Also write the table into --docs here.")
    p.add_argument("--docs", default=str(DOCS))
    args = p.parse_args(argv)
    pairs = []
    for spec in args.pairs:
        a, sep, b = spec.partition(":")
        if not sep or a not in args.tags or b not in args.tags:
            p.error(f"--pairs: expected A:B with A and B among --tags, found {spec!r}")
        pairs.append((a, b))
    records = [r for path in args.results for r in json.loads(Path(path).read_text())]
    table = render(records, args.tags, pairs)
    if args.marker:
        write_region(Path(args.docs), table.rstrip("\n"), f"<!-- {args.marker} -->",
                     f"<!-- /{args.marker} -->")  # fmt: skip
    print(table, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
