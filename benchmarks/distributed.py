"""Distributed training: epoch time of 1 and 2 processes on the 4,000 PhysioNet 2012 stays.

The stays (set A, 48 hourly steps, 37 parameters, raw values; the 3 stays without any value in
their first 48 hours left out) are written once as a Parquet
dataset (a folder of 4 files sorted by RecordID, in a temporary folder, never in the
repository); every run then trains ``GPVAE`` from it for ``--epochs`` epochs (default
settings of the estimator otherwise: latent 8, Matern 3/2, structured posterior, markov
backend, MLP 128-128, 10% of the entries held out for validation; no early stop, no
calibration), with global batches of 32 (the default) and 256 series, one torch thread per
process:

- ``1 process``: one process reads the whole folder;
- ``1 process, 2 threads``: the same with two torch threads (the other way to use 2 cores);
- ``2 processes (all series)``: ``torchrun --nproc-per-node 2``, every process reads the
  whole folder and takes its rows of every batch (the one-process fit);
- ``2 processes (own series)``: ``torchrun --nproc-per-node 2``, each process reads only its
  2,000 stays (``gpvae.data.parquet.read_shard``, ``fit(..., sharded=True)``).

An epoch's time is the fit's own record (training steps and the validation score); the
figure is the median over epochs 2.. (the first carries one-off costs). Peak memory is each
process's peak resident set (``VmHWM``). The machine's load average is recorded before
and after.

Usage::

    .venv/bin/python benchmarks/distributed.py \\
        [--data-dir ../shared/data] [--epochs 3] [--batch-sizes 32 256]
        [--runs one threads2 all own]
        [--out benchmarks/results/distributed.json]
    .venv/bin/python benchmarks/distributed.py --doc-only   # the docs table from the JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "distributed.json"
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- distributed-table -->", "<!-- /distributed-table -->"
#: --runs keys, in the order of the runs: 1 process, 1 process with 2 threads, 2 processes
#: holding all series, 2 processes holding their own series.
RUN_KEYS = ("one", "threads2", "all", "own")
#: How the docs run the record's stored command (``python benchmarks/distributed.py ...``).
PREFIX = ".venv/bin/python"
#: The command of a record without a stored one.
COMMAND = (
    "benchmarks/distributed.py --data-dir ../shared/data --epochs {epochs} "
    "--batch-sizes {batches} --runs {runs}"
)


def write_folder(data_dir: str | None, folder: Path, limit: int | None) -> dict[str, Any]:
    """PhysioNet 2012 set A as a long Parquet dataset (id, t, 37 parameters) in ``folder``
    (its first ``limit`` stays when given, for a smoke run)."""
    import numpy as np
    import pandas as pd

    from gpvae.datasets import load_physionet2012

    data = load_physionet2012(data_dir)
    X = np.asarray(data.X)  # (4000, 48, 37)
    seen = np.isfinite(X).any(axis=(1, 2))  # 3 stays have no value in their first 48 hours
    X, ids = X[seen][:limit], np.asarray(data.ids, dtype=np.int64)[seen][:limit]
    n, T, D = X.shape
    frame = pd.DataFrame(X.reshape(n * T, D), columns=data.features)
    frame.insert(0, "t", np.tile(np.arange(T, dtype=np.float64), n))
    frame.insert(0, "id", np.repeat(ids, T))
    folder.mkdir(parents=True)
    for k, part in enumerate(np.array_split(np.arange(len(frame)), 4)):
        frame.iloc[part].to_parquet(folder / f"part-{k}.parquet", index=False, row_group_size=4096)
    return {
        "series": n,
        "left_out": int((~seen).sum()),
        "steps": T,
        "features": D,
        "observed": int(np.isfinite(X).sum()),
    }


def worker(args: argparse.Namespace) -> None:
    """One process of one run: read, fit, report (process 0 prints one JSON line)."""
    import torch

    from gpvae import GPVAE
    from gpvae.data import parquet, to_series_set
    from gpvae.training import distributed

    torch.set_num_threads(args.threads)
    comm = distributed.current()
    rank, world = (0, 1) if comm is None else (comm.rank, comm.world_size)
    t0 = time.perf_counter()
    sharded = args.mode == "sharded"
    frame = parquet.read_shard(args.folder, "id", rank if sharded else 0, world if sharded else 1)
    features = [c for c in frame.columns if c not in ("id", "t")]
    series = to_series_set(frame, id_col="id", time_col="t", feature_cols=features)
    read_s = time.perf_counter() - t0
    model = GPVAE(
        epochs=args.epochs,
        batch_size=args.batch_size,
        patience=None,
        calibrate=False,
        progress=False,
        seed=0,
        device="cpu",
    )
    model.fit(series, sharded=sharded)
    history = model.history_ or []
    record = {
        "rank": rank,
        "series_held": series.num_series,
        "read_s": read_s,
        "epoch_s": [h["seconds"] for h in history],
        "val_score": [h["val_score"] for h in history],
        "loss": [h["loss"] for h in history],
        "peak_rss_mib": _peak_mib(),
    }
    records = [record] if comm is None else comm.all_gather(record)
    if rank == 0:
        print("RESULT " + json.dumps(records), flush=True)


def _peak_mib() -> float:
    """This process's peak resident memory (VmHWM: since its exec, unlike ``ru_maxrss``,
    which a child inherits from the parent it was forked from)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _median(values: list[float]) -> float:
    s = sorted(values)
    m = len(s) // 2
    return s[m] if len(s) % 2 else 0.5 * (s[m - 1] + s[m])


def run(name: str, cmd: list[str], threads: int, timeout: float) -> dict[str, Any]:
    """Run one measurement; its per-process records and summary."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"name": name, "error": f"timed out after {timeout:.0f} s", "wall_s": timeout}
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"name": name, "error": proc.stderr[-2000:], "wall_s": wall}
    ranks = json.loads(lines[-1][len("RESULT ") :])
    epochs = ranks[0]["epoch_s"]
    return {
        "name": name,
        "processes": len(ranks),
        "threads_per_process": threads,
        "epoch_s": epochs,
        "median_epoch_s": _median(epochs[1:] if len(epochs) > 1 else epochs),
        "peak_rss_mib": [r["peak_rss_mib"] for r in ranks],
        "series_held": [r["series_held"] for r in ranks],
        "read_s": [r["read_s"] for r in ranks],
        "val_score": ranks[0]["val_score"],
        "loss": ranks[0]["loss"],
        "wall_s": wall,
    }


def render(result: dict[str, Any]) -> str:
    """The markdown of the docs region."""
    runs = {(r["batch_size"], r["name"]): r for r in result["runs"] if "error" not in r}
    lines = [
        "## Distributed training (issue 20)",
        "",
        f"PhysioNet 2012 set A, {result['data']['series']:,} stays (the "
        f"{result['data']['left_out']} without any value in 48 hours left out) x 48 hourly steps x "
        f"{result['data']['features']} parameters, read from a Parquet dataset; `GPVAE` "
        "defaults (latent 8, Matern 3/2, structured posterior, markov backend, MLP 128-128) "
        "with the global batch sizes below, one torch thread per process unless said, "
        f"{result['epochs']} epochs; epoch time = median of epochs 2..{result['epochs']} "
        "(training steps and validation score), peak memory = peak resident set of each "
        f"process. Machine: {result['machine']['cpus']} cores; load average "
        f"{result['machine']['load_before']:.1f} before, {result['machine']['load_after']:.1f} "
        f"after{_load_note(result['machine'])}.",
        "",
        "| batch | run | processes x threads | epoch (s) | speed-up | peak memory per process "
        "(MiB) | series held per process |",
        "|---|---|---|---|---|---|---|",
    ]
    diffs = []
    for r in result["runs"]:
        if "error" in r:
            lines.append(f"| {r['batch_size']} | {r['name']} | - | failed | - | - | - |")
            continue
        base = runs.get((r["batch_size"], "1 process"))
        speed = base["median_epoch_s"] / r["median_epoch_s"] if base else float("nan")
        mem = ", ".join(f"{m:.0f}" for m in r["peak_rss_mib"])
        held = ", ".join(f"{h:,}" for h in r["series_held"])
        lines.append(
            f"| {r['batch_size']} | {r['name']} | {r['processes']} x {r['threads_per_process']} "
            f"| {r['median_epoch_s']:.2f} | {speed:.2f}x | {mem} | {held} |"
        )
        if base and r["name"] == "2 processes (all series)":
            diffs += [abs(a - b) for a, b in zip(base["val_score"], r["val_score"])]
    if diffs:
        lines += [
            "",
            "With every process holding all series, two processes train the one-process model "
            f"(largest difference of the per-epoch validation MAE: {max(diffs):.1e}, float32 "
            "round-off).",
        ]
    lines += ["", f"Command: `{doc_command(result)}`"]
    return "\n".join(lines)


def doc_command(result: dict[str, Any]) -> str:
    """The command that reproduces the record: its stored arguments (every flag, e.g.
    ``--timeout``) after :data:`PREFIX`."""
    stored = result.get("command")
    if stored:
        args = stored.split()[1:]  # the interpreter's name is replaced by PREFIX's
    else:
        batches = " ".join(str(b) for b in result["batch_sizes"])
        keys = " ".join(result.get("runs_selected", RUN_KEYS))
        args = COMMAND.format(epochs=result["epochs"], batches=batches, runs=keys).split()
    return " ".join([PREFIX, *args])


def _load_note(machine: dict[str, Any]) -> str:
    """A warning when the load average exceeded the cores during the run."""
    if max(machine["load_before"], machine["load_after"]) > machine["cpus"]:
        return " (other jobs were running: the absolute times are noisy)"
    return ""


def write_doc(result: dict[str, Any], path: Path) -> None:
    """Replace the region between the markers in ``path`` (appended when missing)."""
    text = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{render(result)}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="shared data folder (or GPVAE_DATA)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--doc", type=Path, default=DOCS)
    parser.add_argument("--doc-only", action="store_true", help="only rewrite the docs table")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--series", type=int, default=None, help="first N stays (smoke run)")
    parser.add_argument(
        "--runs", nargs="+", choices=RUN_KEYS, default=list(RUN_KEYS), help="runs to measure"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="all", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[32, 256], help="global batch sizes"
    )
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.doc_only:
        write_doc(json.loads(args.out.read_text()), args.doc)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="gpvae-ddp-bench-"))
    try:
        folder = tmp / "physionet2012"
        data = write_folder(args.data_dir, folder, args.series)
        load_before = os.getloadavg()[0]
        torchrun = [str(Path(sys.executable).with_name("torchrun")), "--standalone",
                    "--nproc-per-node", "2"]  # fmt: skip
        runs = []
        for batch in args.batch_sizes:
            me = [
                sys.executable,
                str(Path(__file__).resolve()),
                *("--worker", "--folder", str(folder), "--epochs", str(args.epochs)),
                *("--batch-size", str(batch)),
            ]
            plan = [
                ("1 process", me, 1),
                ("1 process, 2 threads", [*me, "--threads", "2"], 2),
                ("2 processes (all series)", [*torchrun, *me[1:], "--mode", "all"], 1),
                ("2 processes (own series)", [*torchrun, *me[1:], "--mode", "sharded"], 1),
            ]
            plan = [p for p, key in zip(plan, RUN_KEYS) if key in args.runs]
            for name, cmd, threads in plan:
                print(f"[distributed] batch {batch}: {name} ...", flush=True)
                runs.append({"batch_size": batch, **run(name, cmd, threads, args.timeout)})
                shown = {k: v for k, v in runs[-1].items() if k != "error"}
                print(json.dumps(shown), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "benchmark": "distributed",
        "data": {"name": "physionet2012 set-a", **data},
        "epochs": args.epochs,
        "batch_sizes": args.batch_sizes,
        "runs_selected": list(args.runs),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
        },
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    write_doc(result, args.doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
