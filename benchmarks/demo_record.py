"""The demo's results as a record, and the README and docs text made from it.

Runs ``gpvae demo`` (the full demo, and ``--quick`` with ``--quick``) in a fresh process
with the checkout's ``gpvae`` (``python -m gpvae``), reads the ``metrics.json`` it
wrote and keeps it in ``benchmarks/results/demo.json`` with the command, the commit, the
date and the machine's load. Then (and with ``--doc-only`` from the record alone) it writes
the README's ``demo-results`` region (the table the demo prints) and the ``demo-results``
region of ``docs/results.md``.

Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/demo_record.py
    PYTHONPATH=src .venv/bin/python benchmarks/demo_record.py --quick
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from _docs import write_region  # benchmarks/ is on sys.path when run as a script

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "demo.json"
README = ROOT / "README.md"
RESULTS_DOC = ROOT / "docs" / "results.md"
MARKER = "demo-results"


def _commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "unknown"


def run(quick: bool) -> dict[str, Any]:
    """Run the demo into a temporary folder; its metrics with how they were made."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "gpvae", "demo", "--out", tmp, "--quiet"]
        argv += ["--quick"] if quick else []
        out = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
        if out.returncode != 0:
            raise SystemExit(f"gpvae demo failed ({out.returncode}):\n{out.stderr[-2000:]}")
        metrics = json.loads((Path(tmp) / "metrics.json").read_text())
    flags = " --quick" if quick else ""
    metrics["record"] = {
        "command": f"PYTHONPATH=src python benchmarks/demo_record.py{flags}",
        "commit": _commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "load": os.getloadavg()[0],
        "printed": out.stdout,
    }
    return metrics


def _table(metrics: dict[str, dict[str, float]]) -> str:
    from gpvae.app.demo.data import FEATURES

    cols = [*FEATURES, "all", "points", "gaps"]
    widths = [max(len(c), 5) + 2 for c in cols]
    lines = [f"{'method':<8}" + "".join(f"{c:>{w}}" for c, w in zip(cols, widths))]
    for name, row in metrics.items():
        lines.append(f"{name:<8}" + "".join(f"{row[c]:>{w}.3f}" for c, w in zip(cols, widths)))
    return "\n".join(lines)


def _wrap(text: str) -> str:
    """``text`` wrapped at 92 characters (words and inline code kept whole)."""
    return textwrap.fill(text, 92, break_long_words=False, break_on_hyphens=False)


def readme_text(data: dict[str, Any]) -> str:
    """The README's region: how the full demo ran, and the table it printed."""
    full = data["full"]
    rec, cov, fc = full["record"], full["interval_coverage_90"], full["forecast_mae_std_units"]
    prose = (
        f"What the demo printed on this 2-core machine ({rec['date']}, {rec['commit']}: "
        f"{full['total_seconds']:.0f} s, {full['epochs_run']} epochs; record "
        "`benchmarks/results/demo.json`, made by "
        f"`{rec['command']}`). Seattle weather 2012-2015 from the `vega_datasets` package; "
        "20% of the entries hidden at random plus three 30-day gaps; MAE on the hidden "
        "entries, last three columns in standardised units. Its 90% intervals cover "
        f"{cov['all']:.1%} of the hidden entries; its 28-day forecast has MAE "
        f"{fc['gpvae']:.3f} against seasonal naive {fc['seasonal_naive']:.3f} and "
        f'persistence {fc["persistence"]:.3f} (`docs/results.md`, "The demo"):'
    )
    return "\n".join([_wrap(prose), "", "```", _table(full["imputation_mae"]), "```"])


def results_text(data: dict[str, Any]) -> str:
    """The ``docs/results.md`` region: the full demo and the quick one, from the record."""
    full = data["full"]
    rec, cov, fc = full["record"], full["interval_coverage_90"], full["forecast_mae_std_units"]
    imp = full["imputation_mae"]
    parts = [
        f"The README shows the table the demo printed ({rec['date']}, {rec['commit']}: "
        f"{full['total_seconds']:.0f} s, {full['epochs_run']} epochs; "
        "`benchmarks/results/demo.json`, made by "
        f"`{rec['command']}`). Seattle weather 2012-2015; 20% of the entries hidden at random "
        "plus three 30-day gaps. Imputation MAE over the hidden entries (standardised units): "
        f"gpvae {imp['gpvae']['all']:.3f}, linear interpolation {imp['linear']['all']:.3f}, "
        f"LOCF {imp['LOCF']['all']:.3f}, the mean {imp['mean']['all']:.3f}; inside the gaps "
        f"gpvae {imp['gpvae']['gaps']:.3f} against linear {imp['linear']['gaps']:.3f}. The 90% "
        f"imputation intervals cover {cov['all']:.1%} of the hidden entries "
        f"({cov['points']:.1%} of the random points, {cov['gaps']:.1%} inside the 30-day gaps). "
        "They are recalibrated after training: one spread factor per feature, fitted on the "
        "entries held out for validation (`calibrate=True`, the default). The forecast of the "
        "held-out last 28 days (a `matern32+periodic` model with a yearly period, calibrated "
        f"forecast intervals) has MAE {fc['gpvae']:.3f} in standardised units against "
        f"persistence {fc['persistence']:.3f}, seasonal naive (a year before) "
        f"{fc['seasonal_naive']:.3f} and the mean {fc['mean']:.3f}, and its 90% intervals "
        f"cover {full['forecast_coverage_90']:.1%}; its fan (`gpvae-demo/forecast.png`) starts "
        "at the last days' level and settles to December's."
    ]
    quick = data.get("quick")
    if quick is not None:
        qrec, qfc = quick["record"], quick["forecast_mae_std_units"]
        qimp = quick["imputation_mae"]
        parts.append(
            f"`gpvae demo --quick` ({quick['settings']['days']} days, "
            f"{quick['epochs_run']} epochs; {qrec['date']}, {qrec['commit']}, "
            f"`{qrec['command']}`; `tests/app/test_demo.py` checks its ordering) forecasts "
            f"with MAE {qfc['gpvae']:.3f} against persistence {qfc['persistence']:.3f} and "
            f"seasonal naive {qfc['seasonal_naive']:.3f}, 90% intervals covering "
            f"{quick['forecast_coverage_90']:.1%}, and imputes with MAE "
            f"{qimp['gpvae']['all']:.3f} against linear interpolation's "
            f"{qimp['linear']['all']:.3f}: the quick version is a smoke run, not a result."
        )
    return "\n\n".join(_wrap(part) for part in parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="record `gpvae demo --quick`")
    p.add_argument("--doc-only", action="store_true", help="rebuild the text from the record")
    args = p.parse_args(argv)
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if not args.doc_only:
        data["quick" if args.quick else "full"] = run(args.quick)
        RESULTS.write_text(json.dumps(data, indent=1) + "\n")
    if "full" not in data:
        raise SystemExit(f"{RESULTS}: expected a record of the full demo, found none")
    write_region(README, readme_text(data), MARKER)
    write_region(RESULTS_DOC, results_text(data), MARKER)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
