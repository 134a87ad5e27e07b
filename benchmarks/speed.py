"""Speed and memory of GP-VAE training: S1 (vs an N(0, I) prior), S2 (vs PyPOTS GPVAE), S3 (long T).

- **S1**: one training step (forward + backward + Adam, built as ``GPVAE.fit`` builds it
  with :func:`gpvae.training.make_optimizer`) of the GP-VAE (structured
  posterior, markov backend, Matern32) against the *same* encoder, decoder and likelihood
  with an N(0, I) prior (diagonal Gaussian posterior, closed-form KL): T = 48 (also 200 and
  1,000), D = 35, L = 16, B = 64, hidden (128, 128), 50 % of entries missing. Both steps run
  in one process per T, interleaved, and the median of ``--repeats`` timed steps is
  reported.
- **S2**: one epoch of ``gpvae.GPVAE.fit`` against one epoch of PyPOTS 1.5 ``GPVAE.fit`` on
  identical shapes: 512 series, D = 35, latent 16, batch 32, encoder and decoder widths
  (64, 64), 20 % missing, T = 48, 200, 500. Each run is a fresh subprocess reporting its
  wall time and peak resident memory (``ru_maxrss``) minus the peak of an idle subprocess
  that imported the same libraries. PyPOTS runs in the benchmark environment
  (``--peer-python``, default ``.venv-bench/bin/python``; see ``setup_bench_env.sh``); when it
  is missing, S2 records only gpvae's side.
- **S3**: one long series, D = 8, L = 4, hidden (64, 64), 10 % missing, one training step of
  the structured markov GP-VAE at T = 1e3 ... 1e6, in a fresh subprocess per T: median step
  time and peak memory; the least-squares log-log slope of time against T over all sizes is
  reported, and the slope of every decade. The markov backend runs ``method="auto"``: on
  the CPU with numba (as here) that is always the numba-compiled loops (the fused pass),
  whatever T; the parallel scan (from ``PARALLEL_MIN_POINTS`` points with few chains) runs
  only without numba or on a GPU, so these records do not measure it.

Every record carries the machine's load average when it was made (``load``).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/speed.py                 # all parts
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/speed.py --part s1 s3    # some parts
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/speed.py --quick         # smoke run

Writes ``benchmarks/results/speed.json`` (records of the parts run are replaced, others kept)
and ``benchmarks/results/speed.png`` (log-log plots of S2 and S3), updates the speed region
of ``docs/benchmarks.md``, and prints a table. A ``--quick`` smoke run writes
``benchmarks/results/speed_quick.json`` and ``speed_quick.png`` instead (or ``--out`` and
``--plot``, never the committed records or plot) and never the docs.
Everything is float32 on the CPU with 1 torch thread.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _worker import run_worker  # benchmarks/ is on sys.path when run as a script

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "speed.json"
PLOT = HERE / "results" / "speed.png"
#: where a ``--quick`` smoke run writes (never the committed records, plot or docs)
QUICK_RESULTS = HERE / "results" / "speed_quick.json"
QUICK_PLOT = HERE / "results" / "speed_quick.png"
DOC = HERE.parent / "docs" / "benchmarks.md"
PEER_PYTHON = HERE.parent / ".venv-bench" / "bin" / "python"
PARTS = ("s1", "s2", "s3")
S1_T = (48, 200, 1_000)
S2_T = (48, 200, 500)
S3_T = (1_000, 10_000, 100_000, 1_000_000)
QUICK_S2_T = (48,)
#: S2 lengths with a warm epoch too (a second model's epoch in the same process)
S2_WARM_T = (48,)
QUICK_S3_T = (1_000, 10_000)


def _peak_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux: ru_maxrss in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak) / (1024.0**2 if sys.platform == "darwin" else 1024.0)


# ---------------------------------------------------------------- workers (fresh processes)


def _gpvae_parts(D: int, L: int, hidden: tuple[int, ...], backend: str) -> tuple[Any, ...]:
    from gpvae.gp import GPPrior
    from gpvae.kernels import Matern32
    from gpvae.likelihoods import Gaussian
    from gpvae.model import GPVAEModel
    from gpvae.nets import MLPDecoder, MLPEncoder
    from gpvae.posteriors import get_posterior

    enc, dec, lik = MLPEncoder(D, L, hidden), MLPDecoder(L, D, hidden), Gaussian(D)
    prior = GPPrior(Matern32(lengthscale=5.0), L, backend=backend)
    return GPVAEModel(enc, get_posterior("structured"), prior, dec, lik), enc, dec, lik


def _batch(B: int, T: int, D: int, missing: float, seed: int) -> Any:
    import torch

    from gpvae.batch import Batch

    g = torch.Generator().manual_seed(seed)
    y = torch.randn(B, T, D, generator=g)
    observed = torch.rand(B, T, D, generator=g) >= missing
    x = torch.arange(T, dtype=torch.float32).expand(B, T)[..., None].contiguous()
    return Batch(x=x, y=y, observed=observed, valid=torch.ones(B, T, dtype=torch.bool))


def _optimizer(module: Any) -> Any:
    """Adam with learning rate 1e-3 over ``module``'s parameters, built by
    :func:`gpvae.training.make_optimizer` as ``GPVAE.fit`` builds it (fused where torch has
    it)."""
    from gpvae.training import TrainConfig, make_optimizer

    return make_optimizer(module, TrainConfig(lr=1e-3))


def _describe(opt: Any) -> str:
    """E.g. "Adam (fused)": the optimiser's class and its all-at-once mode."""
    mode = [k for k in ("fused", "foreach") if opt.defaults.get(k)]
    return type(opt).__name__ + (f" ({mode[0]})" if mode else " (single-tensor)")


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _worker_s1(args: argparse.Namespace) -> dict[str, Any]:
    """GP-VAE step vs N(0, I)-prior step with the same networks, interleaved."""
    import torch

    from gpvae import settings
    from gpvae.batch import where_zero

    settings.FUSED_SOA_FLOAT32 = args.s1_kernel == "float32"
    B, T, D, L = 64, args.T or 48, 35, 16
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, enc, dec, lik = _gpvae_parts(D, L, (128, 128), "markov")
    batch = _batch(B, T, D, 0.5, 0)
    n_obs = batch.observed.sum()

    def gp_loss() -> Any:
        return -model.elbo(batch).elbo.sum() / n_obs

    def plain_loss() -> Any:  # same networks, N(0, I) prior, diagonal q
        # the input masked as GPVAEModel.encode masks it (torch.where's values, bit for bit)
        y = where_zero(batch.observed, batch.y)
        mean, var = enc(y, batch.observed)
        z = mean + var.sqrt() * torch.randn_like(mean)
        loglik = lik.log_prob(dec(z[None]), batch.y, batch.observed).mean(0)
        kl = 0.5 * (var + mean**2 - 1.0 - var.log()).sum((-2, -1))
        return -(loglik - kl).sum() / n_obs

    # both optimisers built as `GPVAE.fit` builds its own (fused Adam where torch has it)
    opt_gp = _optimizer(model)
    opt_plain = _optimizer(torch.nn.ModuleList([enc, dec, lik]))

    def step(loss_fn: Any, opt: Any) -> float:
        start = time.perf_counter()
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
        return time.perf_counter() - start

    for _ in range(3):
        step(gp_loss, opt_gp)
        step(plain_loss, opt_plain)
    gp, plain = [], []
    for _ in range(args.repeats):
        gp.append(step(gp_loss, opt_gp))
        plain.append(step(plain_loss, opt_plain))
    # where the GP-VAE's time goes: the prior/posterior part alone (forward + backward)
    mean = torch.randn(B, T, L, requires_grad=True)
    var = torch.full((B, T, L), 0.5, requires_grad=True)
    post: list[float] = []
    for _ in range(max(3, args.repeats // 3)):
        start = time.perf_counter()
        q = model.prior.condition(batch.x, mean, var)
        # in the ELBO's order: the draw, then the KL (the fused pass gives both at once)
        (q.sample(1, None).sum() + q.kl().sum()).backward()
        post.append(time.perf_counter() - start)
    return {
        "gpvae_step_s": _median(gp),
        "plain_step_s": _median(plain),
        "ratio": _median(gp) / _median(plain),
        "gp_part_s": _median(post),
        "repeats": args.repeats,
        "kernel": args.s1_kernel,
        "optimizer": _describe(opt_gp),
        "plain_mask": "where_zero",
        "T": T,
        "shapes": {"B": B, "T": T, "D": D, "L": L, "hidden": [128, 128], "missing": 0.5},
    }


def _s2_data(T: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.standard_normal((512, T, 35)).astype(np.float32)
    X[rng.random(X.shape) < 0.2] = np.nan
    return X


def _worker_s2(args: argparse.Namespace) -> dict[str, Any]:
    """One epoch of ours or PyPOTS's GPVAE (fresh process), wall time and peak memory."""
    import torch

    torch.set_num_threads(1)
    if args.impl == "idle_pypots":
        import pypots.imputation  # noqa: F401

        return {"peak_mib": _peak_mib()}
    if args.impl == "idle_gpvae":
        import gpvae  # noqa: F401

        return {"peak_mib": _peak_mib()}
    X = _s2_data(args.T)
    # The first torch optimizer of a process imports torch._dynamo (about 3.5 s). PyPOTS's
    # constructor builds its optimizer, before the timer; ours is built inside fit. Import
    # it here for both, so that the epoch times compare training, not that one import.
    import torch._dynamo

    if args.impl == "pypots":
        from pypots.imputation import GPVAE as PyPOTSGPVAE

        peer_args = {
            "n_steps": args.T,
            "n_features": 35,
            "latent_size": 16,
            "encoder_sizes": (64, 64),
            "decoder_sizes": (64, 64),
            "batch_size": 32,
            "epochs": 1,
            "device": "cpu",
            "verbose": False,
        }
        peer = PyPOTSGPVAE(**peer_args)
        start = time.perf_counter()
        peer.fit({"X": X})
        seconds = time.perf_counter() - start
        if args.warm:  # a second model's epoch in the same process: no one-time costs
            peer = PyPOTSGPVAE(**peer_args)
            start = time.perf_counter()
            peer.fit({"X": X})
            warm = time.perf_counter() - start
    else:
        from gpvae import GPVAE

        ours_args: dict[str, Any] = {
            "latent_dim": 16,
            "hidden": (64, 64),
            "batch_size": 32,
            "epochs": 1,
            "patience": None,
            "val_fraction": 0.0,
            "device": "cpu",
            "progress": False,
        }
        start = time.perf_counter()
        GPVAE(**ours_args).fit(X)
        seconds = time.perf_counter() - start
        if args.warm:  # a second model's epoch in the same process: no one-time costs
            start = time.perf_counter()
            GPVAE(**ours_args).fit(X)
            warm = time.perf_counter() - start
    out = {"seconds": seconds, "peak_mib": _peak_mib()}
    if args.warm:
        out["warm_seconds"] = warm
    return out


def _worker_s3(args: argparse.Namespace) -> dict[str, Any]:
    """Training steps on one long series (fresh process): median time and peak memory."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    D, L = 8, 4
    model, *_ = _gpvae_parts(D, L, (64, 64), "markov")
    batch = _batch(1, args.T, D, 0.1, 0)
    opt = _optimizer(model)
    n_obs = batch.observed.sum()
    idle = _peak_mib()
    times = []
    for _ in range(args.repeats + 1):
        start = time.perf_counter()
        opt.zero_grad()
        (-model.elbo(batch).elbo.sum() / n_obs).backward()
        opt.step()
        times.append(time.perf_counter() - start)
    steps = times[1:] if len(times) > 1 else times
    return {
        "seconds": _median(steps),
        "seconds_all": times,
        "peak_mib": _peak_mib(),
        "peak_before_mib": idle,
        "optimizer": _describe(opt),
    }


# ---------------------------------------------------------------- driver


def _run(python: str | Path, argv: list[str], timeout: float) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return run_worker(python, Path(__file__).resolve(), argv, timeout, env)


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        # the CPU and the vector instructions torch's kernels use (AVX2, AVX512): the S1
        # ratio moves with them (the networks' matrix products and the GP pass scale apart)
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": 1,
        "dtype": "float32",
    }


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(seconds) against log(T) over all (T, seconds) points."""
    if len(points) < 2:
        return None
    xs = [math.log(t) for t, _ in points]
    ys = [math.log(s) for _, s in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    num = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    return num / sum((x - mx) ** 2 for x in xs)


def _steps(points: list[tuple[float, float]]) -> list[float]:
    """Log-log slope of every consecutive pair of points (every decade for S3)."""
    return [
        math.log(s1 / s0) / math.log(t1 / t0) for (t0, s0), (t1, s1) in itertools.pairwise(points)
    ]


def _cpu(rec: dict[str, Any]) -> str:
    """The CPU a record ran on, e.g. "AMD EPYC, AVX2"; "-" for records that predate the
    field (made on earlier machines of the same kind, whose CPU was not recorded)."""
    machine = rec.get("machine", {})
    if "cpu_capability" not in machine:
        return "-"
    return f"{machine.get('cpu_model', '?')}, {machine['cpu_capability']}"


def _load() -> list[float]:
    """The 1, 5 and 15 minute load averages of the machine."""
    return [round(v, 2) for v in os.getloadavg()]


S1_SUMMARY = ("gpvae_step_s", "plain_step_s", "ratio", "gp_part_s")
"""The numbers of an S1 worker that a record summarises over its processes."""


def s1_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One S1 record from the results of ``runs`` fresh worker processes at one length:
    each number of :data:`S1_SUMMARY` is the median over the processes (the upper middle
    one for an even count, as within a process), every process's numbers are kept under
    ``"runs"``. A failed process (its result has ``"error"``) makes the record an error."""
    failed = [r for r in runs if "error" in r]
    if failed or not runs:
        return failed[0] if failed else {"error": "no S1 process ran"}
    rec = {k: v for k, v in runs[0].items() if k not in S1_SUMMARY}
    rec.update({k: _median([r[k] for r in runs]) for k in S1_SUMMARY})
    rec["runs"] = [{k: r[k] for k in S1_SUMMARY} for r in runs]
    return rec


def _s1_spread(rec: dict[str, Any]) -> str:
    """ " (1.31-1.38, 5 runs)" for a record over several processes, else ""."""
    ratios = [r["ratio"] for r in rec.get("runs", [])]
    if len(ratios) < 2:
        return ""
    return f" ({min(ratios):.2f}-{max(ratios):.2f}, {len(ratios)} runs)"


def run_s1(args: argparse.Namespace) -> list[dict[str, Any]]:
    records = []
    for T in (48,) if args.quick else S1_T:
        load = _load()
        argv = [
            "--part=s1",
            f"--repeats={args.repeats}",
            f"--T={T}",
            f"--s1-kernel={args.s1_kernel}",
        ]
        res = s1_summary([_run(sys.executable, argv, args.timeout) for _ in range(args.s1_runs)])
        rec = {"part": "s1", "T": T, **res, "load": load}
        if "error" not in res:
            print(
                f"S1  T={T:>5} ({args.s1_kernel} kernel): GP-VAE step "
                f"{1e3 * res['gpvae_step_s']:.1f} ms, N(0, I) prior step "
                f"{1e3 * res['plain_step_s']:.1f} ms, ratio {res['ratio']:.2f} (goal <= 1.3 "
                f"at T=48); GP part alone {1e3 * res['gp_part_s']:.1f} ms (load {load[0]}; "
                f"medians of {len(res['runs'])} processes, ratios "
                f"{', '.join(format(r['ratio'], '.2f') for r in res['runs'])})"
            )
        else:
            print(f"S1  T={T}: failed: {res['error']}")
        records.append(rec)
    return records


def _shown(python: Path) -> str:
    """The interpreter as a record shows it: relative to the checkout when it lies inside
    (``.venv-bench/bin/python``), so a record names no machine's or snapshot's directory."""
    try:
        return str(python.absolute().relative_to(HERE.parent))
    except ValueError:
        return str(python)


def run_s2(args: argparse.Namespace) -> list[dict[str, Any]]:
    peer_python = Path(args.peer_python)
    have_peer = peer_python.exists()
    if not have_peer:
        print(f"S2  no PyPOTS environment at {peer_python}: only gpvae is measured")
    python = peer_python if have_peer else Path(sys.executable)
    idle = {
        impl: _run(python, ["--part=s2", f"--impl=idle_{impl}"], args.timeout)
        for impl in (("gpvae", "pypots") if have_peer else ("gpvae",))
    }
    old = json.loads(args.out.read_text()) if args.out.exists() else []
    earlier = {r["T"]: r for r in old if r.get("part") == "s2" and "epoch_s" in r.get("pypots", {})}
    records = []
    for T in QUICK_S2_T if args.quick else args.s2_T:
        rec: dict[str, Any] = {"part": "s2", "T": T, "python": _shown(python), "load": _load()}
        if T in args.s2_reuse_peer and T in earlier:  # PyPOTS's side, as measured before
            peer = earlier[T]["pypots"]  # a reused record keeps its first measurement's date
            rec["pypots"] = {
                **peer,
                "reused_from": peer.get("reused_from", earlier[T].get("created")),
            }
        for impl in ("gpvae", "pypots") if have_peer else ("gpvae",):
            if impl in rec:
                continue
            argv = ["--part=s2", f"--impl={impl}", f"--T={T}"]
            res = _run(python, argv + (["--warm"] if T in args.s2_warm_T else []), args.timeout)
            if "error" in res:
                rec[impl] = {"error": res["error"]}
                continue
            base = idle[impl].get("peak_mib", 0.0)
            rec[impl] = {
                "epoch_s": res["seconds"],
                "peak_mib": res["peak_mib"],
                "peak_above_idle_mib": res["peak_mib"] - base,
            }
            if "warm_seconds" in res:
                rec[impl]["warm_epoch_s"] = res["warm_seconds"]
        ours, peer = rec.get("gpvae", {}), rec.get("pypots", {})
        if "epoch_s" in ours and "epoch_s" in peer:
            rec["time_ratio"] = ours["epoch_s"] / peer["epoch_s"]
            rec["memory_ratio"] = ours["peak_above_idle_mib"] / max(
                peer["peak_above_idle_mib"], 1e-9
            )
        if "warm_epoch_s" in ours and "warm_epoch_s" in peer:
            rec["warm_time_ratio"] = ours["warm_epoch_s"] / peer["warm_epoch_s"]
        print(
            f"S2  T={T:>4}: gpvae {ours.get('epoch_s', float('nan')):8.2f} s "
            f"{ours.get('peak_above_idle_mib', float('nan')):7.0f} MiB | PyPOTS "
            f"{peer.get('epoch_s', float('nan')):8.2f} s "
            f"{peer.get('peak_above_idle_mib', float('nan')):7.0f} MiB | time ratio "
            f"{rec.get('time_ratio', float('nan')):.3f}"
        )
        records.append(rec)
    return records


def run_s3(args: argparse.Namespace) -> list[dict[str, Any]]:
    records = []
    for T in QUICK_S3_T if args.quick else args.s3_T:
        repeats = 3 if T <= 100_000 else 1
        load = _load()
        res = _run(sys.executable, ["--part=s3", f"--T={T}", f"--repeats={repeats}"], args.timeout)
        rec = {"part": "s3", "T": T, **res, "load": load}
        if "error" in res:
            print(f"S3  T={T:>8}: failed: {res['error']}")
        else:
            print(
                f"S3  T={T:>8}: step {res['seconds']:8.3f} s, peak {res['peak_mib']:8.0f} MiB "
                f"({res['peak_mib'] - res['peak_before_mib']:.0f} above the set-up)"
            )
        records.append(rec)
    points = [(float(r["T"]), float(r["seconds"])) for r in records if "seconds" in r]
    slope = _slope(points)
    if slope is not None:
        steps = _steps(points)
        print(
            f"S3  least-squares log-log slope {points[0][0]:g}..{points[-1][0]:g}: {slope:.3f}, "
            f"step by step {', '.join(f'{v:.2f}' for v in steps)} (goal <= 1.1 each)"
        )
        span = [points[0][0], points[-1][0]]
        records.append(
            {"part": "s3_summary", "slope": slope, "step_slopes": steps, "T_range": span}
        )
    return records


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """Log-log plots: S2 epoch time vs T (both implementations), S3 step time and memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    s2 = [r for r in records if r.get("part") == "s2"]
    for impl, label in (("gpvae", "gpvae"), ("pypots", "PyPOTS 1.5 GPVAE")):
        pts = [(r["T"], r[impl]["epoch_s"]) for r in s2 if "epoch_s" in r.get(impl, {})]
        if pts:
            axes[0].loglog(*zip(*pts), marker="o", label=label)
    axes[0].set(xlabel="T (steps per series)", ylabel="one epoch (s)", title="S2: 512 series")
    s2_T = sorted({r["T"] for r in s2})
    if s2_T:
        axes[0].set_xticks(s2_T, [str(t) for t in s2_T])
        axes[0].minorticks_off()
    axes[0].legend()
    s3 = [r for r in records if r.get("part") == "s3" and "seconds" in r]
    if s3:
        Ts = [r["T"] for r in s3]
        axes[1].loglog(Ts, [r["seconds"] for r in s3], marker="o", label="step time (s)")
        axes[1].loglog(Ts, [r["peak_mib"] / 1024 for r in s3], marker="s", label="peak GiB")
        ref = [s3[0]["seconds"] * t / Ts[0] for t in Ts]
        axes[1].loglog(Ts, ref, "k:", label="linear in T")
    axes[1].set(xlabel="T (one series)", title="S3: D=8, L=4, one training step")
    axes[1].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: S2 rows more than this apart (seconds) belong to different measurement runs.
S2_RUN_GAP_S = 3600.0


def _latest_run(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the latest measurement run: those after the last gap of more than
    ``S2_RUN_GAP_S`` between consecutive ``created`` times (rows of one day can come from
    different code)."""
    from datetime import datetime

    def when(r: dict[str, Any]) -> float:
        return datetime.strptime(str(r["created"]), "%Y-%m-%dT%H:%M:%SZ").timestamp()

    rows = sorted((r for r in rows if r.get("created")), key=when)
    start = 0
    for i in range(1, len(rows)):
        if when(rows[i]) - when(rows[i - 1]) > S2_RUN_GAP_S:
            start = i
    return rows[start:]


def _s2_medians(s2: list[dict[str, Any]]) -> list[str]:
    """Lines giving, for each length with several S2 rows in its latest measurement run
    (:func:`_latest_run`), the median time ratios of those rows (fresh and warm epochs)."""
    out = []
    for T in sorted({r["T"] for r in s2}):
        rows = _latest_run([r for r in s2 if r["T"] == T and "time_ratio" in r])
        if len(rows) < 2:
            continue
        first, last = str(rows[0]["created"]), str(rows[-1]["created"])
        fresh = statistics.median([r["time_ratio"] for r in rows])
        warm = [r["warm_time_ratio"] for r in rows if "warm_time_ratio" in r]
        text = (
            f"T={T}, the {len(rows)} rows of {first[:10]} {first[11:16]}-{last[11:16]} UTC: "
            f"median time ratio **{fresh:.3f}** "
            f"(range {min(r['time_ratio'] for r in rows):.3f}-"
            f"{max(r['time_ratio'] for r in rows):.3f})"
        )
        if warm:
            text += f"; warm epochs {statistics.median(warm):.3f} ({min(warm):.3f}-{max(warm):.3f})"
        out += ["", text + "."]
    return out


def render(records: list[dict[str, Any]]) -> str:
    """The markdown of docs/benchmarks.md's speed region from the records."""
    by = {r.get("part"): r for r in records if r.get("part") in ("s3_summary",)}
    lines = [
        "## Speed and scale (issues 7, 19)",
        "",
        "One process per measurement, 1 torch thread, float32, on this 2-core machine; the",
        "load column is the machine's 1-minute load average when the measurement started",
        "(other engineers' jobs; ratios within one process are the robust figures).",
        "",
    ]
    s1 = [r for r in records if r.get("part") == "s1" and "ratio" in r]
    if s1:
        lines += [
            "**S1** (D=35, L=16, B=64, hidden 128-128; goal ratio <= 1.3 at T=48): one training "
            "step of the GP-VAE against the same networks with an N(0, I) prior; GP part = the "
            "prior and posterior alone (one sample + KL, forward + backward; before the records "
            "of 2026-12-01 21:30 UTC in the order KL, then sample). Both steps use Adam "
            "built as `GPVAE.fit` builds it (`gpvae.training.make_optimizer`: fused Adam) "
            "since the records of 2026-12-02 (session 10; column `Adam`); earlier records "
            "used single-tensor Adam for both, which costs the GP-VAE more (its 32 extra "
            "scalar kernel tensors): about 1.5 ms more per step against about 0.3 ms fused. "
            "The N(0, I) step masks its input with `gpvae.batch.where_zero` as the GP-VAE's "
            "`encode` does (the same values as `torch.where`) in the records that name "
            "`plain_mask`; earlier ones used `torch.where` there, about 0.4 ms slower. "
            "Records with `runs` (session 23 on) are medians over that many fresh processes, "
            "with the range of their ratios; earlier records are one process each.",
            "",
            "Kernel: the struct-of-arrays kernel's precision, float32 (the default, "
            "`gpvae.settings.FUSED_SOA_FLOAT32 = True`; `--s1-kernel float32`) or float64 "
            "(the setting off, the default before 2026-12-03; `--s1-kernel float64`); records "
            "without the field are float64.",
            "",
            "| T | kernel | GP-VAE step (ms) | N(0, I) step (ms) | ratio | GP part (ms) | Adam "
            "| load | CPU |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(
            s1, key=lambda r: (r.get("kernel", "float64") != "float64", r.get("T", 48))
        ):
            load = r.get("load", ["-"])[0]
            lines.append(
                f"| {r.get('T', 48)} | {r.get('kernel', 'float64')} | "
                f"{1e3 * r['gpvae_step_s']:.0f} | "
                f"{1e3 * r['plain_step_s']:.0f} | **{r['ratio']:.2f}**{_s1_spread(r)} | "
                f"{1e3 * r['gp_part_s']:.0f} | {r.get('optimizer', 'Adam (single-tensor)')} "
                f"| {load} | {_cpu(r)} |"
            )
        lines.append("")
    s2 = [r for r in records if r.get("part") == "s2"]
    if s2:
        lines += [
            "**S2** (512 series, D=35, latent 16, batch 32, widths 64-64, one epoch; goals time "
            "ratio <= 0.5 at T=48, <= 0.01 at T=500; rows measured on different days come from "
            "different code):",
            "",
            "| T | gpvae epoch (s) | PyPOTS GPVAE epoch (s) | time ratio | warm epochs (s) "
            "| warm ratio | gpvae peak MiB | PyPOTS peak MiB | measured | load | CPU |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in s2:
            ours, peer = r.get("gpvae", {}), r.get("pypots", {})

            def num(d: dict[str, Any], key: str, fmt: str) -> str:
                return format(d[key], fmt) if key in d else "-"

            ratio = format(r["time_ratio"], ".3f") if "time_ratio" in r else "-"
            load = r.get("load", ["-"])[0]
            if "reused_from" in peer:  # the peer's time measured on another day
                load = f"{load} (PyPOTS: {str(peer['reused_from'])[:10]})"
            warm = (
                f"{ours['warm_epoch_s']:.2f} / {peer['warm_epoch_s']:.2f}"
                if "warm_epoch_s" in ours and "warm_epoch_s" in peer
                else "-"
            )
            warm_ratio = format(r["warm_time_ratio"], ".3f") if "warm_time_ratio" in r else "-"
            lines.append(
                f"| {r['T']} | {num(ours, 'epoch_s', '.2f')} | {num(peer, 'epoch_s', '.2f')} "
                f"| {ratio} | {warm} | {warm_ratio} | {num(ours, 'peak_above_idle_mib', '.0f')} "
                f"| {num(peer, 'peak_above_idle_mib', '.0f')} | {r.get('created', '-')[:10]} "
                f"| {load} | {_cpu(r)} |"
            )
        lines += _s2_medians(s2)
        lines += [
            "",
            "Peak MiB: resident memory above an idle process with the same imports. Epoch "
            "time: the timed `fit` of one epoch. Since the records of 2026-12-01 21:00 UTC "
            "both processes import `torch._dynamo` before the timer (a torch optimizer's "
            "first construction imports it, about 3.5 s; PyPOTS's constructor builds its "
            "optimizer before its timer, ours inside `fit`); earlier gpvae rows include that "
            "import. gpvae's epoch includes importing numba and loading its compiled loops "
            "from the cache (about 1.1 s of CPU in a fresh process before 2026-12-02, about "
            "0.8 s since, with the cyclic garbage collector paused while numba loads; about "
            "0.45 s since session 20, which loads them without numba's context refresh and "
            "whose `python -m gpvae.gp.warm` also writes gpvae's bytecode caches; about 0.3 s "
            "since session 28, which rebuilds them without parsing their bitcode). Warm "
            "epochs (gpvae / PyPOTS; records since session 12): in the same process, a second "
            "model's one-epoch `fit`, timed after the first one, so neither side pays its "
            "one-time costs; the goal is judged on the fresh-process epoch.",
            "",
        ]
    s3 = [r for r in records if r.get("part") == "s3"]
    if s3:
        lines += [
            "**S3** (one series, D=8, L=4, widths 64-64, one training step; goals slope <= 1.1, "
            "T=1e6 within 8 GiB):",
            "",
            "| T | step (s) | peak resident MiB | Adam | CPU |",
            "|---|---|---|---|---|",
        ]
        for r in s3:
            if "seconds" in r:
                lines.append(
                    f"| {r['T']:.0e} | {r['seconds']:.3f} | {r['peak_mib']:.0f} "
                    f"| {r.get('optimizer', 'Adam (single-tensor)')} | {_cpu(r)} |"
                )
            else:
                lines.append(f"| {r['T']:.0e} | failed: {r.get('error', '?')} | - | - | - |")
        summ = by.get("s3_summary")
        if summ:
            steps = ", ".join(f"{v:.2f}" for v in summ.get("step_slopes", []))
            lines += [
                "",
                f"Least-squares log-log slope of step time from {summ['T_range'][0]:g} to "
                f"{summ['T_range'][1]:g}: **{summ['slope']:.2f}**; decade by decade: {steps}.",
            ]
        lines.append("")
    lines += [
        "![speed](../benchmarks/results/speed.png)",
        "",
        "Command: `OMP_NUM_THREADS=1 .venv/bin/python "
        "benchmarks/speed.py --peer-python .venv-bench/bin/python` on an otherwise idle "
        "machine (S2 needs the PyPOTS "
        "environment of `benchmarks/setup_bench_env.sh`; `--part s1 s3` runs without it; "
        "`--doc-only` re-renders this section from the JSON).",
    ]
    commands = dict.fromkeys(r["command"] for r in records if "command" in r)
    if commands:
        lines += ["", "The records above were made by:", ""]
        lines += [f"- `{c}`" for c in commands]
    return "\n".join(lines)


def write_doc(records: list[dict[str, Any]], path: Path) -> None:
    """Replace the ``speed-table`` region of ``path`` (appended when missing)."""
    begin, end = "<!-- speed-table -->", "<!-- /speed-table -->"
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{render(records)}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen parts (or, with ``--worker``, one measurement) and write the results."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--part", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes (smoke run): writes --out (default results/speed_quick.json) and "
        "--plot (default results/speed_quick.png), never the committed ones or the docs",
    )
    parser.add_argument("--repeats", type=int, default=30, help="timed S1 steps")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per process")
    parser.add_argument(
        "--s2-T",
        type=int,
        nargs="+",
        default=list(S2_T),
        help="S2 lengths to measure (records of other lengths are kept from the JSON)",
    )
    parser.add_argument(
        "--s2-warm-T",
        type=int,
        nargs="*",
        default=list(S2_WARM_T),
        help="S2 lengths at which each process also times a second model's epoch (warm: "
        "imports, numba's loading and first-call costs already paid)",
    )
    parser.add_argument(
        "--s2-append",
        action="store_true",
        help="keep the JSON's S2 records of the lengths measured (repeats add rows; the docs "
        "give the median of a length's rows of the same day)",
    )
    parser.add_argument(
        "--s3-T", type=int, nargs="+", default=list(S3_T), help="S3 lengths to measure"
    )
    parser.add_argument(
        "--s2-reuse-peer",
        type=int,
        nargs="*",
        default=[],
        help="S2 lengths whose PyPOTS epoch is taken from the JSON's earlier record instead of "
        "re-run (the peer's code does not change with ours; marked in the record and table)",
    )
    parser.add_argument(
        "--s1-runs",
        type=int,
        default=5,
        help="fresh processes per S1 length; the record gives the medians (every process's "
        "numbers kept in it)",
    )
    parser.add_argument(
        "--s1-kernel",
        choices=("float64", "float32"),
        default="float32",
        help="S1's struct-of-arrays kernel: float32 (the default, gpvae.settings."
        "FUSED_SOA_FLOAT32 on) or float64 (the setting off); the JSON keeps the other's rows",
    )
    parser.add_argument("--peer-python", default=str(PEER_PYTHON), help="python with pypots")
    parser.add_argument(
        "--out", type=Path, default=None, help="records JSON (default results/speed.json)"
    )
    parser.add_argument(
        "--plot", type=Path, default=None, help="plot to write (default results/speed.png)"
    )
    parser.add_argument("--doc", type=Path, default=None, help="markdown to update (speed region)")
    parser.add_argument("--doc-only", action="store_true", help="only re-render the doc region")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="gpvae", help=argparse.SUPPRESS)
    parser.add_argument("--T", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        workers = {"s1": _worker_s1, "s2": _worker_s2, "s3": _worker_s3}
        print(json.dumps(workers[args.part[0]](args)))
        return 0
    if args.quick:
        if args.doc_only or args.doc is not None:
            parser.error(
                f"--quick: expected no {'--doc-only' if args.doc_only else '--doc'}, found it "
                "(a smoke run never writes the docs)"
            )
        for option, given, committed in (("--out", args.out, RESULTS), ("--plot", args.plot, PLOT)):
            if given is not None and given.resolve() == committed:
                parser.error(
                    f"--quick: {option} expected a file other than the committed {committed}, "
                    f"found {given} (a smoke run never replaces the committed records or plot)"
                )
        args.out = args.out or QUICK_RESULTS
        args.plot = args.plot or QUICK_PLOT
        args.repeats = min(args.repeats, 5)
    args.out = args.out or RESULTS
    args.plot = args.plot or PLOT
    args.doc = args.doc or DOC
    runners = {"s1": run_s1, "s2": run_s2, "s3": run_s3}
    old = json.loads(args.out.read_text()) if args.out.exists() else []
    if args.doc_only:
        write_doc(old, args.doc)
        plot(old, args.plot)
        print(f"wrote {args.doc} and {args.plot}")
        return 0
    parts = set(args.part)
    kept = [
        r
        for r in old
        if r.get("part", "").split("_")[0] not in parts
        or (r.get("part") == "s1" and r.get("kernel", "float64") != args.s1_kernel)
        or (r.get("part") == "s2" and (r.get("T") not in args.s2_T or args.s2_append))
    ]
    new: list[dict[str, Any]] = []
    for part in PARTS:
        if part in parts:
            new.extend(runners[part](args))
    machine = _machine()
    command = "env OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python " + " ".join(
        ["benchmarks/speed.py", *(argv if argv is not None else sys.argv[1:])]
    )
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for rec in new:
        rec.update(machine=machine, created=stamp, quick=args.quick, command=command)
    records = kept + new
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(records, indent=2) + "\n")
    plot(records, args.plot)
    if args.quick:  # a smoke run: its own records and plot, never the docs
        print(f"wrote {args.out} and {args.plot}")
        return 0
    write_doc(records, args.doc)
    print(f"wrote {args.out}, {args.plot} and {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
