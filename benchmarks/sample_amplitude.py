"""The amplitude and smoothness of ``GPVAE.sample``'s draws against the data's, on data
simulated from a GP-VAE-like model whose kernel is known.

Data (seed s): 16 series of 300 steps, 5 features from 2 latent Matern-3/2 channels of
lengthscale 20 steps and variance 1 (exact draws), mixed by a fixed 5 x 2 matrix ``W``
(its own seed), ``f = W z + 0.3 tanh(W z)``, plus noise of sd 0.1. Fits:
``GPVAE(latent_dim=2, epochs=E, patience=None, batch_size=4, noise_lr=0.05, seed=s)``
(the structured posterior; 4 optimiser steps per epoch), for three variants: ``default``
(300 epochs, ``kernel_lr`` 1e-2), ``epochs900`` and ``kernel_lr0.1`` (300 epochs). Each
fit's ``sample(np.arange(300.0), 64, noise=False)`` is compared with the data: the summed
variance over the features, as a ratio to the data's (pooled over series and steps), and
the lag-10 / lag-20 autocorrelation, mean over features. The record also keeps the learned
lengthscales and variances, and the second moment of the training data's posterior latents
(``latent``: mean^2 + variance, per channel). For the default fits, ``refit`` holds the
trained encoder's posterior of the training series fixed (64 joint draws per series) and
fits only the prior's hyper-parameters to it (400 Adam steps, lr 0.05, maximising
``E_q[log p(z)]``, the ELBO's only term in them with q held fixed), then samples again.

Writes ``benchmarks/results/sample_amplitude.json`` and the ``sample-amplitude`` region of
``docs/results.md`` (``--doc-only``: from the record alone).

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/sample_amplitude.py
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _docs import write_region  # benchmarks/ is on sys.path when run as a script

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "sample_amplitude.json"
DOC = HERE.parent / "docs" / "results.md"
MARKER = "sample-amplitude"
VARIANTS = {
    "default": {},
    "epochs900": {"epochs": 900},
    "kernel_lr0.1": {"kernel_lr": 0.1},
}
N_SERIES, T, D, L = 16, 300, 5, 2


def simulate(seed: int) -> np.ndarray:
    """(16, 300, 5) noisy series of the module docstring's model."""
    t = np.arange(float(T))
    r = np.abs(t[:, None] - t[None, :]) * np.sqrt(3.0) / 20.0
    chol = np.linalg.cholesky((1.0 + r) * np.exp(-r) + 1e-6 * np.eye(T))
    mix = np.random.default_rng(1234).standard_normal((D, L))
    out = np.empty((N_SERIES, T, D))
    for i in range(N_SERIES):
        rng = np.random.default_rng(seed * 1000 + i)
        z = chol @ rng.standard_normal((T, L))  # (T, L)
        f = z @ mix.T
        out[i] = f + 0.3 * np.tanh(f) + 0.1 * rng.standard_normal((T, D))
    return out


def _acf(x: np.ndarray, lag: int) -> float:
    """Mean over series of the lag-``lag`` autocorrelation of x (N, T)."""
    x = x - x.mean(axis=1, keepdims=True)
    return float(np.mean((x[:, lag:] * x[:, :-lag]).sum(1) / (x * x).sum(1)))


def _draws(model: Any, X: np.ndarray) -> dict[str, Any]:
    S = model.sample(np.arange(float(T)), num_samples=64, noise=False)  # (64, T, D)
    table = model.kernel_summary()
    ratio = S.reshape(-1, D).var(0).sum() / X.reshape(-1, D).var(0).sum()
    return {
        "lengthscales": table[table["parameter"] == "lengthscale"]["value"].tolist(),
        "variances": table[table["parameter"] == "variance"]["value"].tolist(),
        "variance_ratio": float(ratio),
        "acf10": float(np.mean([_acf(S[..., d], 10) for d in range(D)])),
        "acf20": float(np.mean([_acf(S[..., d], 20) for d in range(D)])),
    }


def _refit_prior(model: Any, X: np.ndarray) -> None:
    """Fit the prior's hyper-parameters alone to the training series' posterior draws."""
    import torch

    ctx = model._context("sample")
    net = ctx.model
    net.eval()
    ss, scaled = ctx.input(X, None)
    gen = torch.Generator().manual_seed(0)
    draws = []
    with torch.no_grad():
        for idx in ctx.batches(ss.num_series):
            batch = ctx.batch(scaled, idx)
            z = net.encode(batch).rsample(64, gen)  # (S, B, N, L)
            draws.append((batch.x, z.double().permute(1, 3, 0, 2)))  # (B, L, S, N)
    params = [p.requires_grad_(True) for p in net.prior.parameters()]
    opt = torch.optim.Adam(params, lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        loss = torch.zeros((), dtype=torch.float64)
        for x, z in draws:
            K = net.prior.covariance(x).double()  # (B, L, N, N)
            chol = torch.linalg.cholesky(K + 1e-6 * torch.eye(K.shape[-1], dtype=K.dtype))
            solved = torch.cholesky_solve(z.transpose(-1, -2), chol)  # (B, L, N, S)
            quad = (z.transpose(-1, -2) * solved).sum(-2).mean(-1)  # (B, L)
            logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
            loss = loss + 0.5 * (quad + logdet).sum()
        loss.backward()
        opt.step()
    for p in params:
        p.requires_grad_(False)


def run_one(seed: int, variant: str) -> dict[str, Any]:
    import torch

    from gpvae import GPVAE

    torch.set_num_threads(1)
    X = simulate(seed)
    kw: dict[str, Any] = dict(
        latent_dim=L, epochs=300, patience=None, batch_size=4, noise_lr=0.05, seed=seed
    )
    kw.update(VARIANTS[variant])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GPVAE(progress=False, **kw).fit(X)
    out: dict[str, Any] = {"seed": seed, "variant": variant, "settings": kw}
    out["fit_s"] = time.perf_counter() - start
    out["data_acf10"] = float(np.mean([_acf(X[..., d], 10) for d in range(D)]))
    out["data_acf20"] = float(np.mean([_acf(X[..., d], 20) for d in range(D)]))
    mean, var = model.latent(X)
    out["posterior_second_moment"] = (mean**2 + var).reshape(-1, L).mean(0).tolist()
    out["fit"] = _draws(model, X)
    if variant == "default":
        _refit_prior(model, X)
        out["refit"] = _draws(model, X)
    return out


def _pair(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def render(data: dict[str, Any]) -> str:
    lines = [
        f"Generated by `{data['command']}` ({data['commit']}) from "
        "`benchmarks/results/sample_amplitude.json`; the data and fits are in the script's "
        "docstring. `var`: the draws' variance summed over the features, over the data's; "
        "`acf`: lag-10 / lag-20 autocorrelation (the data's in brackets); `posterior`: the "
        "second moment of the training data's posterior latents per channel; `refit`: the "
        "default fit with only its prior refitted to that posterior (the encoder fixed).",
        "",
        "| seed | fit | lengthscales; variances learned | posterior | var | acf (data) |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        kinds = [("fit", r["variant"])] + (
            [("refit", "default, prior refit")] if "refit" in r else []
        )
        for key, name in kinds:
            d = r[key]
            lines.append(
                f"| {r['seed']} | {name} | {_pair(d['lengthscales'])}; {_pair(d['variances'])} "
                f"| {_pair(r['posterior_second_moment'])} | {d['variance_ratio']:.2f} "
                f"| {d['acf10']:.2f} / {d['acf20']:.2f} "
                f"({r['data_acf10']:.2f} / {r['data_acf20']:.2f}) |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--doc-only", action="store_true", help="rebuild the docs table from --out")
    args = p.parse_args(argv)
    if not args.doc_only:
        rows = []
        for seed in args.seeds:
            for variant in args.variants:
                rows.append(run_one(seed, variant))
                print(json.dumps(rows[-1]), flush=True)
        commit = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        flags = " ".join(shlex.quote(a) for a in argv)
        data = {
            "rows": rows,
            "commit": commit or "unknown",
            "load": os.getloadavg()[0],
            "command": f"PYTHONPATH=src python benchmarks/sample_amplitude.py {flags}".strip(),
        }
        args.out.write_text(json.dumps(data, indent=1) + "\n")
    write_region(DOC, render(json.loads(args.out.read_text())), MARKER)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
