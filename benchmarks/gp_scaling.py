"""Time and peak memory of ``log_marginal`` + backward for the dense and markov GP backends.

Each configuration runs in a fresh Python subprocess, which reports the median wall time of a
few repeats (after one warm-up) of ``prior.condition(x, mean, var).log_marginal.sum()
.backward()`` and its peak resident memory (``ru_maxrss``); the peak of an idle subprocess
that has imported torch and gpvae is subtracted, so ``peak_mib`` is what the computation
itself added.

Settings: B = 1 series, L = 1 channel, Matern32 (lengthscale 10, variance 1) on irregular
sorted times (gaps ~ Exp(1)), pseudo-observation variance 0.1, float64, 1 thread.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gp_scaling.py            # full run
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gp_scaling.py --quick    # smoke run
    python benchmarks/gp_scaling.py --results benchmarks/results/gp_scaling.json \
        --doc-only --marker gp-scaling-table                                 # the docs' table

Writes ``benchmarks/results/gp_scaling.json`` (or ``--out``): a list of records with
``backend``, ``T``, ``seconds``, ``peak_mib``, ``settings`` and ``machine``, and prints a table.
A ``--quick`` smoke run writes ``benchmarks/results/gp_scaling_quick.json`` (or ``--out``),
never the committed records. ``--doc-only`` measures nothing: it renders the records of
``--results`` between the ``<!-- MARKER -->`` markers of ``--docs`` (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

from _docs import write_region  # benchmarks/ is on sys.path when run as a script
from _worker import run_worker

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results" / "gp_scaling.json"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
MARKER = "gp-scaling-table"
#: the settings key of the markov backend's path; records without it were made before the
#: parallel-scan path existed (the sequential Kalman recursions)
MARKOV_METHOD = "markov_method"
#: where a ``--quick`` smoke run writes by default (never the committed records)
QUICK_RESULTS = RESULTS.with_name("gp_scaling_quick.json")
FULL = {"markov": [1_000, 10_000, 100_000], "dense": [1_000, 2_000, 4_000]}
QUICK = {"markov": [1_000, 10_000], "dense": [1_000, 2_000]}


def _peak_kib() -> int:
    """Peak resident memory of this process so far, KiB (Linux reports ru_maxrss in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak // 1024) if sys.platform == "darwin" else int(peak)


def _worker(args: argparse.Namespace) -> dict[str, Any]:
    """Run one configuration in this (fresh) process and return its measurements."""
    import torch

    from gpvae.gp import GPPrior
    from gpvae.kernels import Matern32

    torch.set_num_threads(args.threads)
    if args.backend == "baseline":
        return {"peak_kib": _peak_kib()}
    dtype = getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(0)
    B, T, L = args.batch, args.T, args.latent_dim
    x = torch.cumsum(-torch.log(torch.rand(B, T, generator=g, dtype=dtype)), dim=1)[..., None]
    mean = torch.randn(B, T, L, generator=g, dtype=dtype)
    var = torch.full((B, T, L), 0.1, dtype=dtype)
    prior = GPPrior(Matern32(lengthscale=10.0, variance=1.0), L, backend=args.backend).to(dtype)

    def step() -> float:
        prior.zero_grad()
        start = time.perf_counter()
        prior.condition(x, mean, var).log_marginal.sum().backward()
        return time.perf_counter() - start

    step()  # warm-up
    seconds = sorted(step() for _ in range(args.repeats))
    return {"seconds": seconds[len(seconds) // 2], "seconds_all": seconds, "peak_kib": _peak_kib()}


def _run(script: Path, argv: list[str], timeout: float) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return run_worker(sys.executable, script, argv, timeout, env)


def _machine() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def _seconds(value: float) -> str:
    """``0.20``, ``2.58``, ``26.9``: two decimals below 10 s, one from there."""
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def render(records: list[dict[str, Any]]) -> str:
    """The Markdown of the ``gp-scaling-table`` region (without its markers) from the records
    of ``gp_scaling.json``."""
    if not records:
        raise ValueError("records: expected at least one gp_scaling record, found none")
    s = records[0]["settings"]
    threads = f"{s['threads']} thread" + ("" if s["threads"] == 1 else "s")
    kernel = str(s["kernel"]).split("(")[0]
    lines = [
        "## GP backends: time and memory of `log_marginal` + backward",
        "",
        "`python benchmarks/gp_scaling.py` (writes `benchmarks/results/gp_scaling.json`): "
        f"B = {s['B']}, L = {s['L']},",
        f"{kernel}, {s['dtype']}, {threads}, irregular times, median of {s['repeats']} runs "
        "after a warm-up; peak memory is",
        "`ru_maxrss` of a fresh process minus that of an idle one with torch imported. "
        "Measured on the",
        "2-core development machine while other jobs were running (timings are noisy). The markov",
        'backend picked its path with `method="auto"` (parallel scan from N = 512 with few '
        "chains).",
        "",
        "| backend | T | seconds | peak MiB |",
        "|---|---|---|---|",
    ]
    for r in records:
        if "error" in r:
            lines.append(f"| {r['backend']} | {r['T']:,} | failed: {r['error']} | - |")
        else:
            lines.append(
                f"| {r['backend']} | {r['T']:,} | {_seconds(r['seconds'])} | "
                f"{round(r['peak_mib']):,} |"
            )
    if any(r["backend"] == "markov" and MARKOV_METHOD not in r["settings"] for r in records):
        lines += [
            "",
            "These markov figures predate the parallel-scan path: they are from the sequential "
            "Kalman",
            "recursions (custom backward). Re-run the script for the current numbers.",
        ]
    lines += [
        "",
        "The table (`--doc-only` measures nothing, it renders the JSON):",
        "",
        f"    python benchmarks/gp_scaling.py --results benchmarks/results/gp_scaling.json "
        f"--doc-only --marker {MARKER}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--worker``, one configuration) and write the JSON; with
    ``--doc-only``, render the JSON into the docs instead."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON file to write (default results/gp_scaling.json; with --quick "
        "results/gp_scaling_quick.json)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller sizes, one repeat (smoke run; never writes the committed records)",
    )
    parser.add_argument(
        "--doc-only",
        action="store_true",
        help="measure nothing: render the records of --results into the --marker region of --docs",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="records to render")
    parser.add_argument("--docs", type=Path, default=DOCS, help="markdown to update")
    parser.add_argument("--marker", default=MARKER, help="the region's marker name")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after a warm-up")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per config")
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--latent-dim", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="baseline", help=argparse.SUPPRESS)
    parser.add_argument("--T", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(_worker(args)))
        return 0
    if args.doc_only:
        if args.quick:
            parser.error("--quick: expected no --doc-only, found it (a smoke run never "
                         "writes the docs)")  # fmt: skip
        body = render(json.loads(args.results.read_text()))
        write_region(args.docs, body, args.marker, what="--marker")
        print(f"wrote {args.docs}")
        return 0
    if args.quick and args.out is not None and args.out.resolve() == RESULTS:
        parser.error(
            f"--quick: --out expected a file other than the committed {RESULTS}, found "
            f"{args.out} (a smoke run never replaces the committed records)"
        )
    args.out = args.out or (QUICK_RESULTS if args.quick else RESULTS)

    repeats = 1 if args.quick else args.repeats
    common = [
        f"--dtype={args.dtype}",
        f"--threads={args.threads}",
        f"--repeats={repeats}",
        f"--batch={args.batch}",
        f"--latent-dim={args.latent_dim}",
    ]
    script = Path(__file__).resolve()
    baseline = _run(script, ["--backend=baseline", *common], args.timeout)
    if "error" in baseline:
        print(f"baseline process failed: {baseline['error']}", file=sys.stderr)
        return 1
    settings = {
        "B": args.batch,
        "L": args.latent_dim,
        "kernel": "Matern32(lengthscale=10, variance=1)",
        "times": "irregular, gaps ~ Exp(1)",
        "pseudo_observation_var": 0.1,
        "dtype": args.dtype,
        "threads": args.threads,
        "repeats": repeats,
        "measured": "median wall time of condition(...).log_marginal.sum().backward()",
        MARKOV_METHOD: "auto",  # GPPrior's default: the parallel scan or the sequential filter
        "baseline_peak_mib": baseline["peak_kib"] / 1024,
    }
    machine = _machine()
    records: list[dict[str, Any]] = []
    print(f"{'backend':<8} {'T':>8} {'seconds':>10} {'peak MiB':>10}")
    for backend, sizes in (QUICK if args.quick else FULL).items():
        for T in sizes:
            res = _run(script, [f"--backend={backend}", f"--T={T}", *common], args.timeout)
            record: dict[str, Any] = {"backend": backend, "T": T}
            if "error" in res:
                record["error"] = res["error"]
                print(f"{backend:<8} {T:>8} {'failed: ' + res['error']}")
            else:
                peak = (res["peak_kib"] - baseline["peak_kib"]) / 1024
                record.update(seconds=res["seconds"], seconds_all=res["seconds_all"])
                record["peak_mib"] = round(peak, 1)
                print(f"{backend:<8} {T:>8} {res['seconds']:>10.3f} {peak:>10.1f}")
            record.update(settings=settings, machine=machine)
            records.append(record)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(records, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
