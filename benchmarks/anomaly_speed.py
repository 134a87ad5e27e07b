"""Time of gpvae's anomaly workflow on SMAP channels: fit + threshold + scoring, and the
scoring of a 10,000-step series (the goals: under 60 s and under 5 s on this machine).

    env PYTHONPATH=src OMP_NUM_THREADS=1 \\
        .venv-bench/bin/python benchmarks/anomaly_speed.py --data-dir ../shared/data

Uses the model settings of ``benchmarks/anomaly.py`` (its defaults; the same options, e.g.
``--epochs``) and one thread. Records wall and CPU seconds, and the machine's load average
at the start (a loaded machine inflates wall time; CPU seconds are less affected), to
``--out`` (default ``benchmarks/results/anomaly_speed.json``, whose records the
``anomaly-speed`` region of ``docs/benchmarks.md`` shows: that region is rewritten, with the
command run, when ``--out`` is the default or ``--doc`` is given). Every record also holds
what the region shows besides the timings (``created``, the run's time, and ``command``, the
command as run), so ``--doc-only`` rebuilds the region from ``--out`` alone, without timing
anything; records written before they were kept (the one committed on 2026-12-02) lack them,
and ``--doc-only`` refuses those, naming what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anomaly as bench

OUT = bench.ROOT / "benchmarks" / "results" / "anomaly_speed.json"
DOC = bench.ROOT / "docs" / "benchmarks.md"


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The options: the channels, where to write, and ``anomaly.py``'s model options."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument(
        "--channels", default="P-1,E-1,C-1", help="Comma-separated SMAP channels to time."
    )
    p.add_argument(
        "--out",
        type=Path,
        default=OUT,
        help="Records file to write (default benchmarks/results/anomaly_speed.json).",
    )
    p.add_argument(
        "--doc",
        type=Path,
        default=None,
        help="Markdown whose anomaly-speed region to rewrite (default docs/benchmarks.md when "
        "--out is the default; none otherwise).",
    )
    p.add_argument(
        "--doc-only",
        action="store_true",
        help="Time nothing: rebuild the --doc region from the records in --out (their creation "
        "time and command included; the other options are not used). Records written before "
        "runs kept those two (the committed anomaly_speed.json of 2026-12-02) cannot be "
        "rebuilt from and are refused; a new run records them.",
    )
    p.add_argument("--folds", type=int, default=5, help="Folds of the threshold's scores.")
    bench.add_model_options(p)
    args = p.parse_args(argv)
    bench.check_model_args(p, args)
    if args.doc is None and args.out.resolve() == OUT:
        args.doc = DOC
    if args.doc_only and args.doc is None:
        p.error(
            "--doc-only: expected --doc with an --out other than the default, found --out "
            f"{args.out} alone"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.doc_only:
        return doc_only(args.out, args.doc)
    import torch

    torch.set_num_threads(1)
    # the command as run (every flag given), so that the region says how to remake it
    command = "env PYTHONPATH=src OMP_NUM_THREADS=1 .venv-bench/bin/python " + shlex.join(
        ["benchmarks/anomaly_speed.py", *argv]
    )
    channels = args.channels.split(",")
    records = []
    for ch in channels:
        s = bench.load("SMAP_MSL", ch, args.data_dir)
        tr, te = bench.standardise(s)
        load = os.getloadavg()[0]
        w0, c0 = _clock()
        est = bench.new_gpvae(args)
        vals, times = bench._gpvae_windows(tr, args.train_window, args.train_stride)
        est.fit(vals, times)
        w1, c1 = _clock()
        est.fit_threshold([tr], false_alarm_rate=args.far, num_samples=args.samples,
                          num_folds=args.folds, window=args.window)  # fmt: skip
        w2, c2 = _clock()
        est.anomaly_scores(te[None])
        w3, c3 = _clock()
        long = np.concatenate([te] * (10_000 // len(te) + 1))[:10_000]
        est.anomaly_scores(long[None])
        w4, c4 = _clock()
        rec = {
            "channel": ch,
            "n_train": len(tr),
            "n_test": len(te),
            "num_features": tr.shape[1],
            "epochs_run": len(est.history_),
            "load_average_1min": load,
            "fit_wall": w1 - w0,
            "fit_cpu": c1 - c0,
            "threshold_wall": w2 - w1,
            "threshold_cpu": c2 - c1,
            "score_test_wall": w3 - w2,
            "score_test_cpu": c3 - c2,
            "fit_and_score_wall": w3 - w0,
            "fit_and_score_cpu": c3 - c0,
            "score_10k_wall": w4 - w3,
            "score_10k_cpu": c4 - c3,
        }
        records.append(rec)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in rec.items()}))
    created = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for rec in records:  # what the region shows besides the timings, for --doc-only
        rec.update(created=created, command=command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(records, indent=1) + "\n")
    wrote = [str(args.out)]
    if args.doc is not None and write_doc(render(records), args.doc):
        wrote.append(str(args.doc))
    print("wrote " + " and ".join(wrote))
    return 0


def doc_only(out: Path, doc: Path) -> int:
    """Rewrite the ``anomaly-speed`` region of ``doc`` from the records in ``out`` (1, with
    a message naming what is missing, when the records lack what the region shows or
    ``doc`` has no such region)."""
    records = json.loads(out.read_text())
    missing = [k for k in ("created", "command") if any(k not in r for r in records)]
    if not records or missing:
        found = "no records" if not records else "records without " + ", ".join(map(repr, missing))
        print(
            f"--doc-only: expected records with the run's creation time and command (written "
            f"by runs since they are kept), found {found} in {out}; a new run records them",
            file=sys.stderr,
        )
        return 1
    if len({(r["created"], r["command"]) for r in records}) > 1:
        print(
            f"--doc-only: expected the records of one run (one creation time and command), "
            f"found several in {out}",
            file=sys.stderr,
        )
        return 1
    if not write_doc(render(records), doc):
        print(
            "--doc: expected a file with an <!-- anomaly-speed --> region, found " + str(doc),
            file=sys.stderr,
        )
        return 1
    print(f"wrote {doc}")
    return 0


def render(records: list[dict]) -> str:
    """The markdown of the ``anomaly-speed`` region of docs/benchmarks.md (the creation time
    and command are the first record's: every record of a run holds the same)."""
    created, command = records[0]["created"], records[0]["command"]
    lines = [
        f"**Speed** ({created}; one thread; wall seconds, CPU seconds in brackets; "
        "`benchmarks/results/anomaly_speed.json`). Goals (issue 17): fit plus scoring of "
        "one SMAP channel within 60 s, scoring under 5 s per 10,000 steps.",
        "",
        "| channel | train / scored steps x D | epochs | fit | threshold | scoring | "
        "**fit + scoring** | **10,000 steps** | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        cell = [f"{r[k + '_wall']:.1f} ({r[k + '_cpu']:.1f})" for k in
                ("fit", "threshold", "score_test", "fit_and_score", "score_10k")]  # fmt: skip
        lines.append(
            f"| {r['channel']} | {r['n_train']:,} / {r['n_test']:,} x {r['num_features']} | "
            f"{r['epochs_run']} | {cell[0]} | {cell[1]} | {cell[2]} | **{cell[3]}** | "
            f"**{cell[4]}** | {r['load_average_1min']:.1f} |"
        )
    lines += ["", f"Command: `{command}`"]
    return "\n".join(lines)


def write_doc(text: str, path: Path = DOC) -> bool:
    """Replace the ``anomaly-speed`` region of ``path`` with ``text``; False (nothing
    written) when ``path`` has no such region."""
    begin, end = "<!-- anomaly-speed -->", "<!-- /anomaly-speed -->"
    doc = path.read_text()
    if begin not in doc or end not in doc:
        return False
    head, rest = doc.split(begin, 1)
    path.write_text(head + f"{begin}\n{text}\n{end}" + rest.split(end, 1)[1])
    return True


if __name__ == "__main__":
    raise SystemExit(main())
