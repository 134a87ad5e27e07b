"""The PhysioNet-300 protocol repeated on other blocks of 300 stays (issue 15).

The reduced-scale PhysioNet cells use the first 300 stays of set-a (37 deaths). Its mortality
AUROC (logistic regression on the imputed stays, stratified 5-fold CV over those 300 stays)
ranks the methods by a few stays. This script tabulates the same protocol run on the other
blocks of 300 stays (stays 300-599, 600-899, ..., 3600-3899), each split, standardised,
masked, trained and scored exactly as the first block is, by ``benchmarks/imputation.py``
with ``--subset 300 --subset-start S`` (seed 0, points pattern and its downstream AUROC,
the same epoch cap and patience for every learned method)::

    for s in 0 300 600 900 1200 1500 1800 2100 2400 2700 3000 3300 3600; do
      OMP_NUM_THREADS=1 python benchmarks/imputation.py --dataset physionet2012 \\
          --method gpvae --seed 0 --pattern point --subset 300 --subset-start $s \\
          --epochs 200 --patience 5 --out benchmarks/results/imputation_subsets.json
    done

(seeds 1 and 2 into ``imputation_subsets_seeds12.json``: one file of every seed passes the
repository's size limit for a results file)
(and the same for ``mean``, ``locf``, ``linear``, and, in the benchmark environment,
``saits``, ``brits``, ``pypots_gpvae``). Then::

    python benchmarks/downstream_subsets.py \\
        --results benchmarks/results/imputation_subsets.json --table \\
        --marker downstream-subsets

prints the tables (and writes them into docs/benchmarks.md between the markers).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _docs import write_region

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "imputation_subsets.json"
ORDER = ("mean", "locf", "linear", "gpvae", "pypots_gpvae", "saits", "brits")
PEERS = ("pypots_gpvae", "saits", "brits")
LEARNED = ("gpvae", *PEERS)

__all__ = ["blocks", "paired", "table"]


def blocks(
    records: Sequence[dict[str, Any]], seeds: Sequence[int] = (0,)
) -> dict[int, dict[str, dict[str, Any]]]:
    """``{block start: {method: {"auroc", "mae", "runs"}}}`` from the records of 300-stay
    blocks: the AUROC (``downstream``) and the test MAE (``point``) averaged over ``seeds``,
    each only where every seed has its record; ``runs``: ``(epochs run, best epoch)`` per
    seed."""
    parts: dict[tuple[int, str], dict[str, dict[int, Any]]] = {}
    for r in records:
        if r.get("subset") != 300 or r["dataset"] != "physionet2012" or r["seed"] not in seeds:
            continue
        got = parts.setdefault((int(r.get("subset_start") or 0), r["method"]), {})
        if r["pattern"] == "downstream":
            got.setdefault("auroc", {})[r["seed"]] = float(r["auroc"])
        elif r["pattern"] == "point":
            got.setdefault("mae", {})[r["seed"]] = float(r["mae"])
            best = r.get("settings", {}).get("best_epoch")
            got.setdefault("runs", {})[r["seed"]] = (int(r["epochs"]), best)
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for (start, method), got in parts.items():
        row = out.setdefault(start, {}).setdefault(method, {})
        for key in ("auroc", "mae"):
            if set(seeds) <= set(got.get(key, {})):
                row[key] = float(np.mean([got[key][s] for s in seeds]))
        if set(seeds) <= set(got.get("runs", {})):
            row["runs"] = [got["runs"][s] for s in seeds]
    return out


def paired(diff: Sequence[float]) -> tuple[float, float, float]:
    """Mean of per-block differences and its 95% t interval over the blocks."""
    from scipy import stats

    d = np.asarray(diff, dtype=np.float64)
    mean = float(d.mean())
    if len(d) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return mean, mean - half, mean + half


def _deaths(data_dir: str | None) -> dict[int, int] | None:
    """Deaths per 300-stay block: the loader's labels (``_read_labels``) in its order of the
    stays (their RecordIDs, sorted), without reading the stays; None when the data are not
    there."""
    from gpvae.datasets import resolve_data_dir
    from gpvae.datasets.physionet2012 import _read_labels

    try:
        folder = resolve_data_dir(data_dir) / "physionet2012"
        ids = sorted(int(p.stem) for p in (folder / "set-a").glob("*.txt") if p.stem.isdigit())
        labels = _read_labels(folder, np.asarray(ids, dtype=np.int64))
    except (OSError, ValueError):
        return None
    if labels is None:
        return None
    return {s: int(labels[s : s + 300].sum()) for s in range(0, len(labels) - 299, 300)}


def table(
    records: Sequence[dict[str, Any]],
    deaths: dict[int, int] | None = None,
    seeds: Sequence[int] = (0,),
    only: Sequence[str] | None = None,
) -> str:
    """Markdown: the AUROC per block and method (means over ``seeds``; the methods ``only``,
    else every one recorded), the summary over the blocks that every method has, and the
    points MAE and epochs run per method."""
    data = blocks(records, seeds)
    methods = [
        m for m in ORDER if (only is None or m in only) and any(m in row for row in data.values())
    ]
    complete = sorted(
        s for s, row in data.items() if all("auroc" in row.get(m, {}) for m in methods)
    )
    peers = [m for m in PEERS if m in methods]
    head = (
        "| stays | deaths | "
        + " | ".join(methods)
        + " | gpvae minus best peer | gpvae minus linear |"
    )
    seed_text = ", ".join(str(x) for x in seeds)
    lines = [
        f"AUROC per block (seed {seed_text}; a mean over the seeds where more than one; "
        f"peers: {', '.join(peers) or 'none'}):",
        "",
        head,
        "|" + "---|" * (len(methods) + 4),
    ]
    for s in sorted(data):
        row = data[s]
        vals = [row.get(m, {}).get("auroc") for m in methods]
        cells = ["-" if v is None else f"{v:.3f}" for v in vals]
        g = row.get("gpvae", {}).get("auroc")
        p = [row[m]["auroc"] for m in peers if "auroc" in row.get(m, {})]
        lin = row.get("linear", {}).get("auroc")
        vs_peer = "-" if g is None or len(p) < len(peers) or not p else f"{g - max(p):+.3f}"
        vs_lin = "-" if g is None or lin is None else f"{g - lin:+.3f}"
        dead = "-" if deaths is None else str(deaths.get(s, "-"))
        lines.append(
            f"| {s}-{s + 299} | {dead} | " + " | ".join(cells) + f" | {vs_peer} | {vs_lin} |"
        )
    out = ["\n".join(lines)]
    if complete and "gpvae" in methods:
        n = len(complete)
        summary = [
            f"Over the {n} blocks that every method above has "
            f"({', '.join(str(s) for s in complete)}):",
            "",
            "| method | mean AUROC | gpvae minus it: mean [95% t interval over blocks] | "
            "blocks gpvae at or above |",
            "|---|---:|---|---:|",
        ]
        g = np.array([data[s]["gpvae"]["auroc"] for s in complete])
        for m in methods:
            a = np.array([data[s][m]["auroc"] for s in complete])
            if m == "gpvae":
                summary.append(f"| gpvae | {a.mean():.4f} | - | - |")
                continue
            mean, lo, hi = paired(g - a)
            summary.append(
                f"| {m} | {a.mean():.4f} | {mean:+.4f} [{lo:+.4f}, {hi:+.4f}] | "
                f"{int((g >= a).sum())} of {n} |"
            )
        if peers:
            best = np.array([max(data[s][m]["auroc"] for m in peers) for s in complete])
            mean, lo, hi = paired(g - best)
            summary.append(
                f"| the best peer in each block | {best.mean():.4f} | "
                f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}] | {int((g >= best).sum())} of {n} |"
            )
        out.append("\n".join(summary))
    mae_lines = [
        "Points cell of each block (test MAE, standardised units; learned methods: epochs run "
        "(best epoch) of each seed, the blocks in order, separated by semicolons):",
        "",
        "| method | blocks | mean test MAE | epochs run (best) |",
        "|---|---:|---:|---|",
    ]
    for m in methods:
        rows = [data[s][m] for s in sorted(data) if "mae" in data[s].get(m, {})]
        if not rows:
            continue
        ep = "-"
        if m in LEARNED:
            ep = "; ".join(
                ", ".join(f"{e} ({'?' if b is None else b})" for e, b in r["runs"]) for r in rows
            )
        mae = np.mean([r["mae"] for r in rows])
        mae_lines.append(f"| {m} | {len(rows)} | {mae:.4f} | {ep} |")
    out.append("\n".join(mae_lines))
    return "\n\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--table", action="store_true", help="print the tables of --out")
    p.add_argument(
        "--results", nargs="+", default=[str(OUT)], help="the records (imputation.py --out)"
    )
    p.add_argument("--data-dir", default=None, help="shared data dir (deaths per block)")
    p.add_argument("--seed", type=int, nargs="+", default=[0], help="average over these seeds")
    p.add_argument("--method", nargs="+", default=None, choices=ORDER, help="these only")
    p.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--marker", default=None, help="with --table: write it between these markers")
    args = p.parse_args(argv)
    if not args.table:
        p.error("--table: expected (the runs are made by benchmarks/imputation.py)")
    from _protocol import ResultsFile

    records = [r for path in args.results for r in ResultsFile(path).records]
    text = table(records, _deaths(args.data_dir), args.seed, args.method)
    print(text)
    if args.marker is not None:
        write_region(Path(args.docs), text, args.marker, "--marker")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
