"""Write the imputation tables of ``docs/benchmarks.md`` from ``results/imputation.json``.

Only the region between ``<!-- imputation-table -->`` and ``<!-- /imputation-table -->`` is
rewritten; the rest of the file (other benchmarks' sections) is kept as it is. The region is
appended when the file lacks it, and the file is created when absent.

Usage::

    python benchmarks/make_tables.py [--results benchmarks/results/imputation.json]
        [--docs docs/benchmarks.md] [--stdout]
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["BEGIN", "END", "main", "render", "replace_region"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "imputation.json"
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- imputation-table -->"
END = "<!-- /imputation-table -->"
METHOD_ORDER = ("mean", "locf", "linear", "gpvae", "pypots_gpvae", "saits", "brits")
DATASET_NAMES = {"physionet2012": "PhysioNet 2012 (set-a)", "beijing_air": "BeijingAir"}
PATTERN_NAMES = {"point": "points (MCAR 10%)", "block": "blocks (5-24 steps, 10%)"}
REFERENCE_MAE = {
    ("physionet2012", "gpvae_tsi"): 0.445,
    ("physionet2012", "saits"): 0.257,
    ("physionet2012", "brits"): 0.297,
    ("physionet2012", "linear"): 0.366,
    ("physionet2012", "locf"): 0.449,
    ("beijing_air", "gpvae_tsi"): 0.240,
    ("beijing_air", "saits"): 0.155,
    ("beijing_air", "brits"): 0.127,
    ("beijing_air", "linear"): 0.112,
}


def _stat(values: Sequence[float], digits: int = 3) -> str:
    """``mean +- std (n)``; std over seeds with ddof=1, left out for a single seed."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "-"
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{mean:.{digits}f} (1)"
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    return f"{mean:.{digits}f} +- {std:.{digits}f} ({len(vals)})"


def _mean(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _group(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("settings", {}).get("protocol", {}).get("smoke"):
            continue
        groups[(r["dataset"], r["pattern"], r["method"])].append(r)
    return groups


def _methods(groups: dict[tuple[str, str, str], list[dict[str, Any]]]) -> list[str]:
    present = {m for (_, _, m) in groups}
    return [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))


def _imputation_table(groups: dict[tuple[str, str, str], list[dict[str, Any]]], ds: str) -> str:
    head = (
        "| method | points MAE | points MSE | blocks MAE | blocks MSE | epochs | wall s |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for m in _methods(groups):
        cells = []
        recs_all: list[dict[str, Any]] = []
        for pattern in ("point", "block"):
            recs = groups.get((ds, pattern, m), [])
            recs_all += recs
            cells += [_stat([r["mae"] for r in recs]), _stat([r["mse"] for r in recs])]
        if not recs_all:
            continue
        epochs = _mean([r["epochs"] for r in recs_all])
        wall = _mean([r["wall_s"] for r in recs_all])
        ep = "-" if not epochs else f"{epochs:.0f}"
        rows.append(f"| {m} | {' | '.join(cells)} | {ep} | {wall:.0f} |")
    if not rows:
        return ""
    return head + "\n".join(rows) + "\n"


def _downstream_table(groups: dict[tuple[str, str, str], list[dict[str, Any]]]) -> str:
    rows = []
    for m in _methods(groups):
        recs = groups.get(("physionet2012", "downstream", m), [])
        if recs:
            wall = _mean([r["wall_s"] for r in recs]) or 0.0
            rows.append(f"| {m} | {_stat([r['auroc'] for r in recs])} | {wall:.0f} |")
    if not rows:
        return ""
    return "| method | AUROC | wall s (impute all + CV) |\n|---|---|---|\n" + "\n".join(rows) + "\n"


def _settings(records: list[dict[str, Any]]) -> str:
    """One line per learned method: budget and settings of its most recent record."""
    latest: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["pattern"] in ("point", "block") and r["epochs"]:
            latest[r["method"]] = r
    lines = []
    for m in _methods({("", "", k): [] for k in latest}):
        s = latest[m]["settings"]
        if m == "gpvae":
            chosen = s.get("chosen")
            cands = s.get("candidates", [])
            lines.append(
                f"- `gpvae`: at most {s.get('epochs')} epochs, patience {s.get('patience')}; "
                f"candidates {json.dumps(cands)}; chosen on validation MAE per run "
                f"(last run chose candidate {chosen}); {s.get('early_stopping')}; imputation "
                f"= mean of {s.get('impute_num_samples')} posterior-predictive draws."
            )
        elif "class" in s:
            lines.append(
                f"- `{m}` ({s['class']}, {s['library']}): at most {s.get('epochs')} epochs, "
                f"patience {s.get('patience')}; explicit {json.dumps(s['explicit'])}; "
                f"defaults {json.dumps(s['defaults'])}; {s.get('early_stopping')}."
            )
    return "\n".join(lines)


def render(records: list[dict[str, Any]]) -> str:
    """The Markdown of the imputation region (markers included)."""
    groups = _group(records)
    machine = next(
        (r["settings"].get("machine") for r in reversed(records) if "machine" in r["settings"]),
        None,
    )
    parts = [
        BEGIN,
        "## Imputation on real data (issue 6)",
        "",
        "Generated by `python benchmarks/make_tables.py` from "
        "`benchmarks/results/imputation.json`; do not edit this region by hand.",
        "",
        'Protocol (`benchmarks/_protocol.py`, DESIGN.md "Benchmark protocols"): features '
        "standardised with the observed training entries; 10% of the observed validation and "
        "test entries hidden, as single points (MCAR) or as blocks of 5-24 steps of one "
        "feature; MAE / MSE on the hidden test entries in standardised units; learned methods "
        "trained on the training split, early-stopped and selected on the masked validation "
        "split, scored on test once. Cells: mean +- std over seeds (number of seeds). The seed "
        "changes the validation/test masks and every random draw of training; the data split "
        "and the CV folds are fixed. PhysioNet's raw values include corrupted entries "
        "(pH 735), which dominate MSE: read MAE first. `epochs`: mean epochs actually run "
        "(for `gpvae`, summed over the candidates tried); `wall s`: training + test "
        "imputation per record, measured with 1 thread under `nice` on a shared machine (other "
        "jobs ran at the same time), so compare wall times only roughly.",
        "",
    ]
    for ds, title in DATASET_NAMES.items():
        table = _imputation_table(groups, ds)
        if table:
            parts += [f"### {title}", "", table]
    down = _downstream_table(groups)
    if down:
        parts += [
            "### PhysioNet 2012: in-hospital death AUROC (downstream)",
            "",
            "Each method imputes all 4,000 stays (learned methods: the model trained for the "
            "points pattern, on the training split, selected on validation; it sees the "
            "observed values of every stay but never a label). Logistic regression "
            "(StandardScaler, L2, `max_iter=5000`) on the flattened 48 x 37 series, stratified "
            "5-fold CV (fixed folds); AUROC averaged over folds.",
            "",
            down,
        ]
    settings = _settings(records)
    if settings:
        parts += ["### Settings of the learned methods", "", settings, ""]
    parts += [
        "### Published reference (TSI-Bench, points 10%, MAE; other splits and masks)",
        "",
        "PhysioNet 2012: PyPOTS GPVAE 0.445, SAITS 0.257, BRITS 0.297, linear 0.366, LOCF 0.449. "
        "BeijingAir: PyPOTS GPVAE 0.240, SAITS 0.155, BRITS 0.127, linear 0.112. Fortuin et al. "
        "2020 PhysioNet AUROC: GP-VAE 0.730, mean 0.703, forward 0.710, BRITS 0.742.",
        "",
        "### Commands",
        "",
        "```bash",
        "bash benchmarks/setup_bench_env.sh   # .venv-bench: torch 2.13, gpvae, pypots 1.5",
        "for ds in physionet2012 beijing_air; do",
        "  for m in mean locf linear gpvae pypots_gpvae saits brits; do",
        "    OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/imputation.py \\",
        "        --dataset $ds --method $m --seed 0 1 2 [--epochs N]",
        "  done",
        "done",
        "python benchmarks/make_tables.py          # rewrites this region",
        "```",
        "",
    ]
    if machine:
        parts += [
            f"Machine: {machine.get('platform')}, {machine.get('cpus')} CPUs (shared), "
            f"torch {machine.get('torch')}, {machine.get('torch_threads')} thread per run.",
            "",
        ]
    parts.append(END)
    return "\n".join(parts) + "\n"


def replace_region(text: str, region: str) -> str:
    """``text`` with its imputation region replaced by ``region`` (appended if absent)."""
    start, stop = text.find(BEGIN), text.find(END)
    if start != -1 and stop != -1 and stop > start:
        rest = text[stop + len(END) :].lstrip("\n")
        return text[:start] + region + ("\n" + rest if rest else "")
    if not text.strip():
        text = "# Benchmarks\n\n"
    return text.rstrip("\n") + "\n\n" + region


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--docs", type=Path, default=DOCS)
    parser.add_argument("--stdout", action="store_true", help="print the region only")
    args = parser.parse_args(argv)
    records = json.loads(args.results.read_text()) if args.results.is_file() else []
    region = render(records)
    if args.stdout:
        print(region)
        return 0
    old = args.docs.read_text() if args.docs.is_file() else ""
    args.docs.parent.mkdir(parents=True, exist_ok=True)
    args.docs.write_text(replace_region(old, region))
    print(f"wrote {args.docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
