"""Speed around training: a PhysioNet epoch, interval calibration, imputation, anomaly scores.

- **epoch / calibration** (PhysioNet 2012 set A, hourly, 48 steps, D = 37; the first
  ``--train`` stays): ``GPVAE(latent_dim=16, epochs=E)`` fitted with ``calibrate=False`` and
  with ``calibrate=True`` (same seed, same epochs, default validation share), each in a fresh
  process; the time per epoch and the share calibration adds to a fit,
  ``(t_calibrated - t_plain) / t_plain`` (goal <= 0.2).
- **impute**: the fitted model imputes ``--impute`` other stays with 100 draws (goal < 30 s).
- **anomaly**: one series of 10,000 steps (D = 5, sines plus noise, 5 % missing), a model
  fitted for one epoch on 64-step windows of it, then ``anomaly_scores`` of the whole series
  with the default settings (draws, folds and window recorded; goal < 5 s).

Every measurement runs in a fresh process with 1 torch thread, float32, on the CPU, and
records the machine's load average. Writes ``benchmarks/results/predict_speed.json`` and the
``predict-speed`` region of ``docs/benchmarks.md`` (the ``--compare`` records, then this one).
A record keeps the ``--compare`` files its table showed, so ``--doc-only`` rebuilds that
table from ``--out`` alone (records from before the list was kept: from the ``--compare``
flags of their stored command).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/predict_speed.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

from _worker import run_worker  # benchmarks/ is on sys.path when run as a script
from speed import cpu_model

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # the checkout: the documented commands run here
RESULTS = HERE / "results" / "predict_speed.json"
DOC = HERE.parent / "docs" / "benchmarks.md"


def _physionet(args: argparse.Namespace) -> Any:
    from gpvae.datasets.physionet2012 import load_physionet2012

    return load_physionet2012(args.data_dir).X


def _worker_fit(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    import gpvae.estimator.estimator as estimator_module
    from gpvae import GPVAE

    torch.set_num_threads(1)
    X = _physionet(args)
    train, other = X[: args.train], X[args.train : args.train + args.impute]
    # the calibration's own time, apart from the noise of the epochs' times between runs
    spent: list[float] = []
    calibrate_fit = estimator_module.calibrate_fit

    def timed(*a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        out = calibrate_fit(*a, **k)
        spent.append(time.perf_counter() - start)
        return out

    estimator_module.calibrate_fit = timed  # type: ignore[attr-defined]
    model = GPVAE(latent_dim=16, epochs=args.epochs, patience=None, progress=False, seed=0)
    model.calibrate = args.calibrate
    start = time.perf_counter()
    model.fit(train)
    fit_s = time.perf_counter() - start
    epoch_s = [float(h.get("seconds", float("nan"))) for h in model.history_]
    out: dict[str, Any] = {"fit_s": fit_s, "epochs": len(epoch_s), "epoch_s": epoch_s}
    if spent:
        out["calibration_s"] = sum(spent)
    if not args.calibrate:
        start = time.perf_counter()
        model.impute(other, num_samples=100)
        out["impute_s"] = time.perf_counter() - start
        out["impute_series"] = len(other)
    return out


def _worker_anomaly(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from gpvae import GPVAE

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    T, D = 10_000, 5
    t = np.arange(T)[:, None]
    X = np.sin(2 * np.pi * t / (24 + 7 * np.arange(D))) + 0.3 * rng.standard_normal((T, D))
    X[rng.random(X.shape) < 0.05] = np.nan
    windows = np.stack([X[i : i + 64] for i in range(0, T - 64, 64)])
    model = GPVAE(latent_dim=4, epochs=1, patience=None, progress=False, seed=0, calibrate=False)
    model.fit(windows)
    start = time.perf_counter()
    res = model.anomaly_scores(X[None])
    return {
        "anomaly_s": time.perf_counter() - start,
        "T": T,
        "D": D,
        "num_samples": res.num_samples,
        "num_folds": res.num_folds,
        "window": res.window,
    }


def _machine() -> dict[str, Any]:
    """The CPU (model, and the vector instructions torch's kernels use): absolute times
    move with it."""
    import torch

    return {"cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _run(argv: list[str], timeout: float) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    load = _load()
    res = run_worker(sys.executable, Path(__file__).resolve(), argv, timeout, env)
    return {**res, "load": load}


def _rows(rec: dict[str, Any]) -> dict[str, str]:
    """The table's cells of one record (measurement -> text)."""
    plain, cal, anom = rec.get("plain", {}), rec.get("calibrated", {}), rec.get("anomaly", {})
    out: dict[str, str] = {}
    if "fit_s" in plain:
        epoch = plain["fit_s"] / max(plain["epochs"], 1)
        out["fit, no calibration (s)"] = f"{plain['fit_s']:.1f} ({epoch:.1f} per epoch)"
    if "fit_s" in cal:
        out["fit with interval calibration (s)"] = f"{cal['fit_s']:.1f}"
    if "fit_s" in plain and "fit_s" in cal:
        share = (cal["fit_s"] - plain["fit_s"]) / plain["fit_s"]
        out["calibrated fit / plain fit - 1"] = f"{100 * share:+.0f} %"
    key = "**calibration's own time / plain fit** (goal <= 20 %)"
    if "calibration_s" in cal and "fit_s" in plain:
        share = cal["calibration_s"] / plain["fit_s"]
        out[key] = f"**{cal['calibration_s']:.1f} s = {100 * share:.0f} %**"
    elif "epoch_s" in cal and "epoch_s" in plain:
        # a record without the timer: the calibrated fit's time outside its epochs, less
        # the plain fit's time outside its epochs
        own = (cal["fit_s"] - sum(cal["epoch_s"])) - (plain["fit_s"] - sum(plain["epoch_s"]))
        share = own / plain["fit_s"]
        out[key] = f"**{own:.1f} s = {100 * share:.0f} %** (from the epochs' times)"
    if "impute_s" in plain:
        key = f"**`impute`** of {plain['impute_series']} stays x 100 draws (goal < 30 s)"
        out[key] = f"**{plain['impute_s']:.1f} s**"
    if "anomaly_s" in anom:
        settings = (
            f"{anom['num_samples']} draws, {anom['num_folds']} folds, window {anom['window']}"
            if "num_samples" in anom
            else "100 draws, 5 folds, whole series"
        )
        key = f"**`anomaly_scores`** of {anom['T']:,} steps x {anom['D']} (goal < 5 s)"
        out[key] = f"**{anom['anomaly_s']:.1f} s** ({settings})"
    for k in ("plain", "calibrated", "anomaly"):
        if k in rec:
            out[f"load average at the start ({k})"] = f"{rec[k]['load'][0]}"
    machine = rec.get("machine", {})
    if "cpu_capability" in machine:  # records before session 26 did not name the CPU
        out["CPU"] = f"{machine.get('cpu_model', '?')}, {machine['cpu_capability']}"
    return out


def render(records: list[dict[str, Any]]) -> str:
    """The markdown of the ``predict-speed`` region: one column per record."""
    lines = ["## Speed around training (issue 19)", ""]
    first = records[-1]
    lines += [
        f"PhysioNet 2012: the first {first['train']} stays (48 h x 37 features) fitted with "
        f"latent 16 for {first['epochs']} epochs (validation included), then `impute` of "
        "other stays; a 10,000-step synthetic series scored for anomalies by a model fitted "
        "one epoch on its 64-step windows. One process per measurement, 1 torch thread, "
        "float32; wall seconds.",
        "",
    ]
    cells = [_rows(r) for r in records]
    keys = list(dict.fromkeys(k for c in cells for k in c))
    heads = [f"{r.get('label', 'record')}, {r.get('created', '?')[:16]}" for r in records]
    lines += ["| measurement | " + " | ".join(heads) + " |"]
    lines += ["|---|" + "---|" * len(records)]
    for k in keys:
        lines += [f"| {k} | " + " | ".join(c.get(k, "-") for c in cells) + " |"]
    lines += [""]
    lines += [
        f"- {r.get('label', 'record')}: `{r.get('command', '?')}`"
        + (f" ({r['note']})" if r.get("note") else "")
        for r in records
    ]
    lines += [
        "",
        "A record whose `PYTHONPATH` is not `src` ran this script on an older source tree, "
        "extracted with `git archive <commit> src | tar -x -C <dir>` (its numba cache warmed "
        "by one earlier run). The calibration's own time is measured inside the calibrated "
        "fit; the difference of the two fits also carries the epochs' run-to-run noise.",
    ]
    return "\n".join(lines)


def write_doc(text: str, path: Path) -> None:
    begin, end = "<!-- predict-speed -->", "<!-- /predict-speed -->"
    doc = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in doc and end in doc:
        head, rest = doc.split(begin, 1)
        doc = head + block + rest.split(end, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(doc)


def _label() -> str:
    """The source's commit (git, short hash), or "unknown"."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _path_text(path: Path) -> str:
    """``path`` as a record keeps it: relative to the checkout when inside it."""
    full = path.resolve()
    return str(full.relative_to(ROOT)) if full.is_relative_to(ROOT) else str(full)


def recorded_compares(rec: dict[str, Any]) -> list[Path]:
    """The ``--compare`` files whose records the table of ``rec``'s run showed before it
    (its ``compare`` list; for records written before that was kept, the ``--compare``
    flags of its command), relative paths from the checkout."""
    if "compare" in rec:
        names = list(rec["compare"])
    else:
        words = shlex.split(rec.get("command", ""))
        names = [b for a, b in pairwise(words) if a == "--compare"]
    return [ROOT / n for n in names]


def _check_compares(parser: argparse.ArgumentParser, paths: list[Path]) -> None:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        parser.error(
            "--compare: expected the records files of earlier runs, found no file "
            + ", ".join(missing)
        )


def _documented_out(doc: Path) -> str:
    """The ``--out`` of the last command printed in ``doc``'s region ("unknown" without)."""
    text = doc.read_text() if doc.is_file() else ""
    begin, end = "<!-- predict-speed -->", "<!-- /predict-speed -->"
    region = text.split(begin, 1)[-1].split(end, 1)[0] if begin in text else ""
    found = re.findall(r"predict_speed\.py [^`]*?--out (\S+)", region)
    return found[-1] if found else "unknown"


def _doc_only_records(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[Path]:
    """The records files the table of ``--out``'s run showed (its ``--compare`` files, then
    ``--out``): ``--compare`` given with ``--doc-only`` must name the same ones, in order."""
    if not args.out.is_file():
        parser.error(f"--out: expected a records file to re-render, found no file {args.out}")
    recorded = recorded_compares(json.loads(args.out.read_text()))
    if args.compare:
        given = [p.resolve() for p in args.compare]
        want = [p.resolve() for p in recorded]
        if given != want:
            lost = [_path_text(p) for p in want if p not in given]
            extra = [_path_text(p) for p in given if p not in want]
            parser.error(
                f"--compare: expected the {len(want)} records files the table of {args.out} "
                "showed, in its order (or no --compare: the record names them), found "
                + "; ".join(
                    [f"{len(given)} files"]
                    + ([f"without {', '.join(lost)}"] if lost else [])
                    + ([f"with {', '.join(extra)}"] if extra else [])
                    + (["in another order"] if not lost and not extra else [])
                )
            )
    _check_compares(parser, recorded)
    return [*recorded, args.out]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("GPVAE_DATA", "../shared/data"))
    parser.add_argument("--train", type=int, default=3200)
    parser.add_argument("--impute", type=int, default=800)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"The records file (default {RESULTS.relative_to(HERE.parent)}); with --doc-only "
        "the run whose table to rebuild, required.",
    )
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--label", default=None, help="Names the record (default: the commit).")
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        help="Earlier records shown before this one in the docs table (repeatable; kept in "
        "the record, for --doc-only).",
    )
    parser.add_argument(
        "--doc-only",
        action="store_true",
        help="Re-render the docs table of --out's run exactly: its record and the --compare "
        "records its run showed (kept in the record; a --compare given here must name the same "
        "files in the same order). Nothing is measured and no JSON written.",
    )
    parser.add_argument("worker_part", nargs="?", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--calibrate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        fn = {"fit": _worker_fit, "anomaly": _worker_anomaly}[args.worker_part]
        print(json.dumps(fn(args)))
        return 0
    if args.doc_only and args.out is None:  # the default file holds an old run (2 columns)
        parser.error(
            "--out: expected, with --doc-only, the records file of the run whose table to "
            f"rebuild, found none (the docs region's last run: {_documented_out(args.doc)})"
        )
    if args.out is None:
        args.out = RESULTS
    if args.doc_only:
        paths = _doc_only_records(parser, args)
    else:
        _check_compares(parser, args.compare)  # before anything is measured
        paths = [*args.compare, args.out]
        common = [
            f"--data-dir={args.data_dir}",
            f"--train={args.train}",
            f"--impute={args.impute}",
            f"--epochs={args.epochs}",
        ]
        rec: dict[str, Any] = {"train": args.train, "epochs": args.epochs}
        rec["label"] = args.label or _label()
        rec["compare"] = [_path_text(p) for p in args.compare]  # for --doc-only
        rec["plain"] = _run(["fit", *common], args.timeout)
        print("plain fit + impute:", rec["plain"])
        rec["calibrated"] = _run(["fit", *common, "--calibrate"], args.timeout)
        print("calibrated fit:", rec["calibrated"])
        rec["anomaly"] = _run(["anomaly"], args.timeout)
        print("anomaly scores:", rec["anomaly"])
        rec["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        rec["machine"] = _machine()
        rec["command"] = (
            "env OMP_NUM_THREADS=1 "
            f"PYTHONPATH={os.environ.get('PYTHONPATH', 'src')} "
            f".venv/bin/python benchmarks/predict_speed.py --data-dir ../shared/data "
            f"--train {args.train} --impute {args.impute} --epochs {args.epochs}"
            + (f" --out {args.out}" if args.out != RESULTS else "")
            + (f" --label '{args.label}'" if args.label else "")
            + "".join(f" --compare {p}" for p in args.compare)
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rec, indent=2) + "\n")
    records = [json.loads(p.read_text()) for p in paths]
    write_doc(render(records), args.doc)
    # --doc-only reads --out, it does not write it
    print(f"wrote {args.doc}" if args.doc_only else f"wrote {args.out} and {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
