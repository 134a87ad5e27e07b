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
  kernels end within a factor 1.5 of each other, and the mean VUS-PR of B minus A.

    python benchmarks/anomaly_kernels.py --results benchmarks/results/anomaly_s32.json \\
        --tags TAG_A TAG_B --pairs TAG_A:TAG_B --marker NAME
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
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


def render(
    records: Sequence[dict[str, Any]], tags: Sequence[str], pairs: Sequence[tuple[str, str]]
) -> str:
    cells = gather(records, tags)
    if not cells:
        return "No series has a gpvae record of every tag."
    lines = [
        "| data set | tag | series | initial lengthscale | kernel lr | learned lengthscale, "
        "median (10%-90%) | VUS-PR | epochs run |",
        "| --- | --- | ---: | ---: | --- | --- | ---: | ---: |",
    ]
    for coll, by_series in cells.items():
        for tag in tags:
            rs = [by_tag[tag] for by_tag in by_series.values()]
            init = {r["config"].get("lengthscale") or LIBRARY_LENGTHSCALE for r in rs}
            lr = {str(r["config"].get("kernel_lr", "library")) for r in rs}
            lines.append(
                f"| {coll} | {tag} | {len(rs)} | {'/'.join(f'{v:g}' for v in sorted(init))} "
                f"| {'/'.join(sorted(lr))} | {_range(np.array([learned(r) for r in rs]))} "
                f"| {np.mean([r['vus_pr'] for r in rs]):.3f} "
                f"| {np.mean([r['epochs_run'] for r in rs]):.1f} |"
            )
    text = "\n".join(lines)
    if pairs:
        rows = [
            "| data set | A | B | series | learned B / A, median (10%-90%) "
            f"| within a factor {MEET:g} | VUS-PR B - A |",
            "| --- | --- | --- | ---: | --- | ---: | ---: |",
        ]
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
        text += "\n\n" + "\n".join(rows)
    return text + "\n"


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
