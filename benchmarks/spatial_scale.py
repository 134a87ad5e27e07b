"""Scale of the sparse space x time backend: S sites x T steps with M inducing sites.

One synthetic field (sites uniform in a 100 x 100 km square, one latent channel, pseudo-
observations at every (site, step) with 10% missing) per size; a step is what training does
with the prior: condition on the pseudo-observations, KL + one joint posterior sample, the
backward pass, an Adam update of the kernel hyper-parameters and the inducing sites. Each size
runs in its own process (peak resident memory from ``getrusage``), after one warm-up step;
the time is the median of ``--repeats`` steps (wall clock; the process's CPU time is
recorded beside it, less sensitive to other jobs on a shared machine). Growth rates are
least-squares slopes of log(time) on log(S) (T fixed) and on log(T) (S fixed), every size
reported, for both clocks.

Usage::

    PYTHONPATH=src python benchmarks/spatial_scale.py [--sites 100,316,1000,3162,10000]
        [--steps 1000] [--time-sites 1000] [--time-steps 250,500,1000,2000] [--inducing 64]
        [--out benchmarks/results/spatial_scale.json]
    python benchmarks/spatial_scale.py --table
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "spatial_scale.json"
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- spatial-scale-table -->", "<!-- /spatial-scale-table -->"


def one_size(
    S: int, T: int, M: int, repeats: int, seed: int = 0, heap: bool = True
) -> dict[str, Any]:
    """Time and peak memory of training steps at one size (run in a fresh process).

    With ``heap`` the process first does what the ``gpvae`` command does when it starts
    (:func:`gpvae.heap.limit_heap_fragmentation`)."""
    import torch

    from gpvae.gp import GPPrior
    from gpvae.heap import limit_heap_fragmentation
    from gpvae.kernels import Matern32, SpaceTime

    if heap:
        limit_heap_fragmentation()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(seed)
    sites = 100.0 * torch.rand(S, 2, generator=g)
    steps = torch.arange(T, dtype=torch.float32)
    x = torch.cat([sites[None].expand(T, S, 2), steps[:, None, None].expand(T, S, 1)], -1).reshape(
        1, T * S, 3
    )
    mean = torch.randn(1, T * S, 1, generator=g)
    var = 0.2 + torch.rand(1, T * S, 1, generator=g)
    var[torch.rand(var.shape, generator=g) < 0.1] = float("inf")
    kernel = SpaceTime(Matern32(lengthscale=[20.0, 20.0]), Matern32(lengthscale=10.0))
    prior = GPPrior(kernel, 1, inducing=100.0 * torch.rand(M, 2, generator=g))
    opt = torch.optim.Adam(prior.parameters(), lr=1e-3)
    times, cpu = [], []
    for r in range(repeats + 1):
        c0 = time.process_time()
        t0 = time.perf_counter()
        opt.zero_grad()
        post = prior.condition(x, mean, var)
        loss = post.kl().sum() + post.sample(1, torch.Generator().manual_seed(r)).square().mean()
        loss.backward()
        opt.step()
        if r > 0:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB -> MiB (Linux)
    return {
        "S": S,
        "T": T,
        "M": M,
        "seconds": float(np.median(times)),
        "all_seconds": times,
        "cpu_seconds": float(np.median(cpu)),
        "peak_mib": peak,
    }


def _slope(xs: list[float], ys: list[float]) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def _local_slopes(xs: list[float], ys: list[float]) -> list[float]:
    """log-log slope of every step between neighbouring sizes."""
    return [_slope(xs[i : i + 2], ys[i : i + 2]) for i in range(len(xs) - 1)]


def _run(S: int, T: int, M: int, repeats: int, heap: bool) -> dict[str, Any]:
    here = str(ROOT / "benchmarks")
    code = (
        f"import json, sys; sys.path.insert(0, {here!r}); from spatial_scale import one_size; "
        f"print(json.dumps(one_size({S}, {T}, {M}, {repeats}, heap={heap})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cpu_slopes(data: dict[str, Any]) -> str:
    if "cpu_slope_sites" not in data:
        return "CPU-time slopes: not recorded."
    by_s = ", ".join(f"{v:.2f}" for v in data["cpu_local_slopes_sites"])
    by_t = ", ".join(f"{v:.2f}" for v in data["cpu_local_slopes_steps"])
    return (
        f"The same slopes in CPU time: vs S {data['cpu_slope_sites']:.2f} (step by step: "
        f"{by_s}); vs T {data['cpu_slope_steps']:.2f} (step by step: {by_t})."
    )


def render(data: dict[str, Any]) -> str:
    lines = [
        "### Sparse space x time backend: scale",
        "",
        f"M = {data['config']['inducing']} inducing sites, one latent channel; a training step "
        "of the prior (condition, KL + a joint sample, backward, Adam), one thread; peak "
        "resident memory of the process.",
        "",
        "| S sites | T steps | step (s) | CPU (s) | peak memory (MiB) |",
        "|---|---|---|---|---|",
    ]
    for r in data["sites"] + data["steps"]:
        cpu = f"{r['cpu_seconds']:.2f}" if "cpu_seconds" in r else "not recorded"
        lines.append(f"| {r['S']} | {r['T']} | {r['seconds']:.2f} | {cpu} | {r['peak_mib']:.0f} |")
    steps = ", ".join(f"{v:.2f}" for v in data.get("local_slopes_sites", []))
    steps_t = ", ".join(f"{v:.2f}" for v in data.get("local_slopes_steps", []))
    heap = data["config"].get("default_heap")
    lines += [
        "",
        f"Least-squares log-log slopes: time vs S (T = {data['config']['steps']}) "
        f"{data['slope_sites']:.2f} (step by step: {steps or 'not recorded'}); time vs T "
        f"(S = {data['config']['time_sites']}) {data['slope_steps']:.2f} (step by step: "
        f"{steps_t or 'not recorded'}).",
        "",
        _cpu_slopes(data),
        "",
        "Heap: "
        + (
            "glibc's default (dynamic mmap threshold)."
            if heap
            else "the mmap threshold fixed as the `gpvae` command does "
            "(`gpvae.limit_heap_fragmentation`)."
            if heap is not None
            else "not recorded."
        )
        + f" Recorded {data.get('date', '(date not recorded)')}, load average "
        + f"{data.get('load', '(not recorded)')}.",
        "",
        f"Reproduce: `{data['command']}`",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", default="100,316,1000,3162,10000")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--time-sites", type=int, default=1000)
    p.add_argument("--time-steps", default="250,500,1000,2000")
    p.add_argument("--inducing", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument(
        "--default-heap",
        action="store_true",
        help="keep glibc's dynamic mmap threshold (the gpvae command fixes it)",
    )
    p.add_argument("--table", action="store_true")
    args = p.parse_args(argv)
    if args.table:
        data = json.loads(Path(args.out).read_text())
        text = DOCS.read_text() if DOCS.exists() else ""
        region = f"{BEGIN}\n{render(data)}\n{END}"
        start, stop = text.find(BEGIN), text.find(END)
        if start != -1 and stop > start:
            text = text[:start] + region + text[stop + len(END) :]
        else:
            text = text.rstrip("\n") + "\n\n" + region + "\n"
        DOCS.write_text(text)
        return 0
    by_sites, by_steps = [], []
    heap = not args.default_heap
    load = [round(os.getloadavg()[0], 2)]
    for S in (int(s) for s in args.sites.split(",")):
        by_sites.append(_run(S, args.steps, args.inducing, args.repeats, heap))
        print(by_sites[-1], flush=True)
    for T in (int(t) for t in args.time_steps.split(",")):
        by_steps.append(_run(args.time_sites, T, args.inducing, args.repeats, heap))
        print(by_steps[-1], flush=True)
    load.append(round(os.getloadavg()[0], 2))
    xs_s, ys_s = [r["S"] for r in by_sites], [r["seconds"] for r in by_sites]
    xs_t, ys_t = [r["T"] for r in by_steps], [r["seconds"] for r in by_steps]
    data = {
        "command": "PYTHONPATH=src python benchmarks/spatial_scale.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": {k: v for k, v in vars(args).items() if k != "table"},
        "sites": by_sites,
        "steps": by_steps,
        "slope_sites": _slope(xs_s, ys_s),
        "slope_steps": _slope(xs_t, ys_t),
        "local_slopes_sites": _local_slopes(xs_s, ys_s),
        "local_slopes_steps": _local_slopes(xs_t, ys_t),
        "cpu_slope_sites": _slope(xs_s, [r["cpu_seconds"] for r in by_sites]),
        "cpu_slope_steps": _slope(xs_t, [r["cpu_seconds"] for r in by_steps]),
        "cpu_local_slopes_sites": _local_slopes(xs_s, [r["cpu_seconds"] for r in by_sites]),
        "cpu_local_slopes_steps": _local_slopes(xs_t, [r["cpu_seconds"] for r in by_steps]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load": f"{load[0]} at start, {load[-1]} at end",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(data, indent=1))
    print(f"slopes: sites {data['slope_sites']:.2f}, steps {data['slope_steps']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
