"""Memory and time of ``GPVAE.impute`` on one long series, against its length.

One series of T steps at 1-minute spacing (3 features: sines of periods 500, 1,300 and 97
steps plus noise of sd 0.1, 10 % of the entries missing; data seed 0). A model is fitted
for one epoch on windows of 256 steps (``GPVAE(latent_dim=4, epochs=1, window=256,
seed=0)``, float32), then imputes the whole series with ``--num-samples`` draws (the default
90 % intervals). Every size runs in a fresh process with 1 torch thread; the record keeps
the peak resident memory after the fit and after the imputation, the impute's wall time,
the bytes the library's memory check counted for the draws (``check_draws``), and the
least-squares log-log slopes over all sizes with every step between neighbouring sizes.

``--label`` names the code measured; records of several labels (e.g. the code before and
after a change, run from two checkouts with the same script) sit side by side in ``--out``
and in the table.

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/impute_memory.py --label after
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _docs import write_region  # benchmarks/ is on sys.path when run as a script
from _worker import run_worker

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "impute_memory.json"
DOC = HERE.parent / "docs" / "benchmarks.md"
MARKER = "impute-memory"
SCRIPT = "benchmarks/impute_memory.py"


def _series(T: int) -> Any:
    import pandas as pd

    rng = np.random.default_rng(0)
    t = np.arange(T)
    waves = [np.sin(2 * np.pi * t / 500), np.cos(2 * np.pi * t / 1300), np.sin(2 * np.pi * t / 97)]
    X = np.stack(waves, 1) + 0.1 * rng.standard_normal((T, 3))
    X[rng.random(X.shape) < 0.1] = np.nan
    index = pd.date_range("2026-01-01", periods=T, freq="1min", name="time")
    return pd.DataFrame(X, columns=["a", "b", "c"], index=index)


def _peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB -> MiB (Linux)


def one_size(T: int, num_samples: int) -> dict[str, Any]:
    """Fit and impute one series of T steps in this process (see the module docstring)."""
    import warnings

    import torch

    import gpvae
    import gpvae.estimator.context as context
    from gpvae import GPVAE

    torch.set_num_threads(1)
    frame = _series(T)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = GPVAE(latent_dim=4, epochs=1, window=256, seed=0, progress=False).fit(frame)
    fit_s = time.perf_counter() - start
    fit_peak = _peak_mib()
    counted: list[float] = []
    real = context.check_memory

    def counting(names: str, nbytes: float, what: str) -> None:
        counted.append(float(nbytes))
        real(names, nbytes, what)

    context.check_memory = counting  # type: ignore[assignment]
    out: dict[str, Any] = {"T": T, "num_samples": num_samples, "fit_s": fit_s}
    out["commit"] = _commit(Path(gpvae.__file__).parent)
    out["fit_peak_mib"] = fit_peak
    start = time.perf_counter()
    try:
        result = est.impute(frame, num_samples=num_samples)
    except Exception as err:  # a refusal of the memory check is a result
        out["error"] = f"{type(err).__name__}: {str(err)[:300]}"
    else:
        observed = ~np.isnan(frame.to_numpy())
        kept = np.array_equal(result.mean.to_numpy()[observed], frame.to_numpy()[observed])
        out["observed_kept"] = bool(kept)
    out["impute_s"] = time.perf_counter() - start
    out["peak_mib"] = _peak_mib()
    out["counted_mib"] = counted[0] / 2**20 if counted else None
    return out


def _slopes(xs: list[float], ys: list[float]) -> tuple[float, list[float]]:
    """The least-squares log-log slope over all points, and every step's."""
    lx, ly = np.log(xs), np.log(ys)
    whole = float(np.polyfit(lx, ly, 1)[0])
    steps = [float((ly[i + 1] - ly[i]) / (lx[i + 1] - lx[i])) for i in range(len(xs) - 1)]
    return whole, steps


def _fits(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if "error" not in r]
    if len(ok) < 2:
        return {}
    T = [float(r["T"]) for r in ok]
    out: dict[str, Any] = {"sizes": [r["T"] for r in ok]}
    impute = [r["impute_s"] for r in ok]
    extra = [max(r["peak_mib"] - r["fit_peak_mib"], 1.0) for r in ok]
    out["impute_s_slope"], out["impute_s_steps"] = _slopes(T, impute)
    out["extra_mib_slope"], out["extra_mib_steps"] = _slopes(T, extra)
    return out


def _commit(where: Path) -> str:
    """The commit checked out at ``where`` (the gpvae a worker imported)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def render(data: dict[str, Any]) -> str:
    """The markdown of the ``impute-memory`` region: one table over every label."""
    lines = [
        "One series of T steps (3 features, 10 % missing), a model fitted for one epoch on "
        "256-step windows (4 latent channels, float32), then `impute` of the whole series with "
        "100 draws; a fresh process per size, 1 thread. `extra`: peak resident memory after "
        "the impute minus that after the fit. `counted`: what the library's memory check "
        "counted for the draws before it let them run. Slopes: least-squares log-log over "
        "every size that ran, then step by step.",
        "",
        "| code | T | impute s | peak after fit MiB | peak after impute MiB | extra MiB "
        "| counted MiB | observed kept |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    notes = []
    for label, rec in data["records"].items():
        for r in rec["rows"]:
            counted = "-" if r.get("counted_mib") is None else f"{r['counted_mib']:.0f}"
            if "fit_peak_mib" not in r:  # the worker failed before or in the fit
                lines.append(f"| {label} | {r['T']} | failed: {r['error']} | - | - | - | - | - |")
                continue
            if "error" in r:
                lines.append(
                    f"| {label} | {r['T']} | refused after {r['impute_s']:.1f} s "
                    f"| {r['fit_peak_mib']:.0f} | - | - | {counted} | - |"
                )
                continue
            extra = r["peak_mib"] - r["fit_peak_mib"]
            lines.append(
                f"| {label} | {r['T']} | {r['impute_s']:.1f} | {r['fit_peak_mib']:.0f} "
                f"| {r['peak_mib']:.0f} | {extra:.0f} | {counted} | {r['observed_kept']} |"
            )
        fits = rec.get("fits") or {}
        if fits:
            t_steps = ", ".join(f"{v:.2f}" for v in fits["impute_s_steps"])
            m_steps = ", ".join(f"{v:.2f}" for v in fits["extra_mib_steps"])
            notes.append(
                f"- `{label}` ({rec['commit']}, load {rec['load']:.2f}): impute time grows as "
                f"T^{fits['impute_s_slope']:.2f} (steps {t_steps}), extra memory as "
                f"T^{fits['extra_mib_slope']:.2f} (steps {m_steps})."
            )
    lines += ["", *notes, "", "Commands:", "", "```bash"]
    lines += [rec["command"] for rec in data["records"].values()]
    lines += ["```"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        T, S = int(argv[1]), int(argv[2])
        print(json.dumps(one_size(T, S)))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,30000,100000,300000,1000000")
    p.add_argument("--num-samples", type=int, default=100)
    p.add_argument("--label", default="main", help="name of the code measured")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--doc-only", action="store_true", help="rebuild the docs table from --out")
    p.add_argument(
        "--commit", help="the commit of the code measured, when its source is not a checkout"
    )
    args = p.parse_args(argv)
    data = json.loads(args.out.read_text()) if args.out.exists() else {"records": {}}
    if not args.doc_only:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        rows = []
        for T in (int(float(v)) for v in args.sizes.split(",")):
            row = run_worker(
                sys.executable, Path(__file__), [str(T), str(args.num_samples)], args.timeout, env
            )
            row.setdefault("T", T)
            print(json.dumps(row), flush=True)
            rows.append(row)
        flags = " ".join(shlex.quote(a) for a in argv)
        path = shlex.quote(os.environ.get("PYTHONPATH", "src"))
        data["records"][args.label] = {
            "rows": rows,
            "fits": _fits(rows),
            "commit": args.commit or next((r["commit"] for r in rows if "commit" in r), "unknown"),
            "load": os.getloadavg()[0],
            "command": f"OMP_NUM_THREADS=1 PYTHONPATH={path} python {SCRIPT} {flags}",
        }
        args.out.write_text(json.dumps(data, indent=1) + "\n")
    write_region(DOC, render(data), MARKER)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
