"""Does the fitted GP prior differ from N(0, I) where anomaly detection needs it?

For each series and seed, fit gpvae and the N(0, I) VAE exactly as ``anomaly.py`` does
(its ``run_gpvae``, the same arguments and seeds, so a fit reproduces the recorded run of
the same settings) and record, beside the score variants' VUS-PR:

- the fitted kernel: each latent channel's lengthscale (steps) and variance, the prior's
  correlation at lag 1 and its *memory* (the lag where the Matern-3/2 correlation falls
  below 0.1), against the training window (``--train-window``) and the scoring window
  (``--window``);
- the loss at the kept epoch: the KL term and the log likelihood per observed entry, the
  KL per time step (all latent channels) and the KL's share ``beta KL / (beta KL + |loglik|)``;
- the encoded latent paths of the scored part (posterior means and variances,
  ``GPVAE.latent``): each channel's use (``1 - mean posterior variance / prior variance``),
  the lag-1 autocorrelation of its posterior mean (the smoothness the encoder gives the
  path) against the prior's, and how anomalous steps' paths differ from normal ones (the
  marginal energy ``sum_l m_l^2 / s2_l`` and the squared step ``sum_l (m_l[n] - m_l[n-1])^2
  / s2_l``, anomalous mean over normal mean);
- the scores: the chosen variant's VUS-PR (``metrics``), each variant's AUC-ROC, and per
  score component (the held-out
  entry scores ``k5``, the prior's ``prior``) the AUC-ROC of their sum over features and
  the ratio of its median over anomalous steps to its median over normal steps.

Run it in the benchmark environment (development series only unless ``--series``):

    PYTHONPATH=src .venv-bench/bin/python benchmarks/anomaly_prior.py --data-dir ../shared/data \
        --seeds 0 1 2 --out anomaly_prior.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anomaly as bench

#: Score variants recorded: the chosen one, the held-out score alone and the prior's alone.
VARIANTS = (bench.CHOSEN, "k5_norm_s32_b512", "p_tailmax_s32_b512")
#: The correlation level that defines the prior's memory.
MEMORY_LEVEL = 0.1


def matern32_correlation(lag: float | np.ndarray, lengthscale: float) -> Any:
    """The Matern-3/2 correlation ``(1 + a) exp(-a)``, ``a = sqrt(3) |lag| / lengthscale``."""
    a = math.sqrt(3.0) * np.abs(np.asarray(lag, dtype=np.float64)) / lengthscale
    return (1.0 + a) * np.exp(-a)


def matern32_memory(lengthscale: float, level: float = MEMORY_LEVEL) -> float:
    """The lag (steps) at which the Matern-3/2 correlation falls to ``level`` (bisection on
    the decreasing correlation; proportional to the lengthscale)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: expected a number in (0, 1), found {level}")
    lo, hi = 0.0, 1.0
    while (1.0 + hi) * math.exp(-hi) > level:
        hi *= 2.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if (1.0 + mid) * math.exp(-mid) > level else (lo, mid)
    return 0.5 * (lo + hi) * lengthscale / math.sqrt(3.0)


def lag1_autocorrelation(x: np.ndarray) -> np.ndarray:
    """(T, L) -> (L,): each column's lag-1 autocorrelation (NaN for a constant column)."""
    x = np.asarray(x, dtype=np.float64)
    c = x - x.mean(0)
    den = (c * c).sum(0)
    num = (c[1:] * c[:-1]).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def auc_roc(score: np.ndarray, labels: np.ndarray) -> float:
    """The probability that an anomalous step outscores a normal one (ties count half;
    Mann-Whitney, average ranks); NaN scores rank lowest."""
    s = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-np.inf)
    y = np.asarray(labels).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def median_ratio(score: np.ndarray, labels: np.ndarray) -> float:
    """Median score over anomalous steps over the median over normal ones (finite only)."""
    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    a, n = s[y & np.isfinite(s)], s[~y & np.isfinite(s)]
    if not len(a) or not len(n) or np.median(n) == 0:
        return math.nan
    return float(np.median(a) / np.median(n))


def loss_parts(history: Sequence[dict[str, float]], beta: float, num_features: int) -> dict:
    """The kept epoch's (lowest ``val_score``) KL and log likelihood per observed entry, the
    KL per step (times the number of features: every entry is observed here) and the KL's
    share of the loss's magnitude ``beta KL / (beta KL + |loglik|)``."""
    best = min(range(len(history)), key=lambda i: history[i]["val_score"])
    kl, ll = float(history[best]["kl"]), float(history[best]["loglik"])
    return {
        "kl_per_entry": kl,
        "loglik_per_entry": ll,
        "kl_per_step": kl * num_features,
        "kl_share": beta * kl / (beta * kl + abs(ll)) if beta * kl + abs(ll) > 0 else math.nan,
    }


def latent_paths(
    mean: np.ndarray, var: np.ndarray, prior_var: np.ndarray, labels: np.ndarray
) -> dict[str, Any]:
    """Use and smoothness of the encoded paths (T, L) and how anomalous steps differ."""
    y = np.asarray(labels).astype(bool)
    s2 = np.asarray(prior_var, dtype=np.float64)
    energy = (mean**2 / s2).sum(1)
    step = np.concatenate([[np.nan], ((np.diff(mean, axis=0) ** 2) / s2).sum(1)])
    out: dict[str, Any] = {
        "use": (1.0 - var.mean(0) / s2).tolist(),
        "lag1": lag1_autocorrelation(mean).tolist(),
    }
    for key, v in (("energy", energy), ("step", step)):
        a, n = v[y & np.isfinite(v)], v[~y & np.isfinite(v)]
        out[f"{key}_ratio"] = float(a.mean() / n.mean()) if len(a) and n.mean() > 0 else None
        out[f"{key}_auc"] = auc_roc(v, y)
    return out


def prior_of(est: Any, white: bool, latent_dim: int) -> tuple[list[float], list[float]]:
    """(lengthscales, variances) of the latent channels; the VAE's white kernel has no
    lengthscale (0: no memory) and its learned variances."""
    k = bench.fitted_kernel(est)
    var = k.get("0.variance", [1.0] * latent_dim)
    ls = [0.0] * latent_dim if white else k["0.lengthscale"]
    return ls, var


def diagnose(s: Any, args: argparse.Namespace, white: bool) -> dict[str, Any]:
    """Fit as ``anomaly.run_gpvae`` does (capturing its estimator) and measure."""
    kept: list[Any] = []
    make = bench.new_gpvae

    def capture(a: argparse.Namespace, white: bool = False) -> Any:
        est = make(a, white)
        kept.append(est)
        return est

    bench.new_gpvae = capture
    try:
        w = bench.period(s)
        res = bench.run_gpvae(s, args, w, white)
    finally:
        bench.new_gpvae = make
    est = kept[-1]
    tr, te = bench.standardise(s)
    t_te = np.arange(len(tr), len(tr) + len(te), dtype=np.float64)
    ls, var = prior_of(est, white, args.latent_dim)
    out: dict[str, Any] = {
        "lengthscale": ls,
        "variance": var,
        "prior_lag1": [float(matern32_correlation(1.0, v)) if v > 0 else 0.0 for v in ls],
        "memory_steps": [matern32_memory(v) if v > 0 else 0.0 for v in ls],
        "train_window": args.train_window,
        "window": args.window,
        "epochs_run": res["epochs_run"],
        "best_epoch": res["best_epoch"],
        "val_score_best": res.get("val_score_best"),
        **loss_parts(est.history_, args.beta, s.train.shape[1]),
    }
    mean, v = est.latent(te[None], t_te[None])
    out["latent"] = latent_paths(np.asarray(mean)[0], np.asarray(v)[0], np.asarray(var), s.labels)
    from gpvae.estimator.anomaly import entry_scores

    ctx = est._context("anomaly_scores")
    _, scaled = ctx.input(te[None], t_te[None])
    comps = {
        "k5": entry_scores(ctx, scaled, args.samples, 5, args.window)[0],
        "prior": entry_scores(ctx, scaled, args.samples, 1, args.window, prior=True)[0],
    }
    for key, e in comps.items():
        step = np.nansum(e, axis=1)
        out[f"{key}_auc_roc"] = auc_roc(step, s.labels)
        out[f"{key}_median_ratio"] = median_ratio(step, s.labels)
    # VUS-PR (slow) of the chosen variant only; every variant's AUC-ROC
    out["vus_pr"] = bench.metrics(res["variants"][bench.CHOSEN]["score"], s.labels, w)["vus_pr"]
    out["variant_auc_roc"] = {
        name: auc_roc(v["score"], s.labels) for name, v in res["variants"].items()
    }
    return out


def _mean(values: Sequence[float]) -> float:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return float(np.mean(v)) if v else math.nan


def _used(values: Sequence[float], use: Sequence[float], threshold: float = 0.1) -> list[float]:
    """The entries of ``values`` of the latent channels in use (``use`` above
    ``threshold``: the posterior variance at most 90% of the prior's)."""
    return [v for v, u in zip(values, use) if u is not None and u > threshold]


def table(records: Sequence[dict[str, Any]]) -> str:
    """Per series and model, means over the seeds: the fitted lengthscales (range over
    seeds and channels), the prior's memory (median over channels, mean over seeds),
    the KL per step and its share, the channels in use, the lag-1 autocorrelation of the
    used channels' paths against the prior's, the anomalous / normal ratios and AUC-ROCs of
    the latent measures and score components, and the chosen variant's VUS-PR."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        cells.setdefault((r["series"], r["method"]), []).append(r)
    head = ("| series | model | seeds | lengthscale (steps) | memory (steps) | KL / step | "
            "KL share | channels used | lag-1 path (used) | lag-1 prior | energy AUC | "
            "step AUC | held-out AUC | prior AUC | held-out med. ratio | prior med. ratio | "
            "VUS-PR |")  # fmt: skip
    lines = [head, "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | "
             "---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for (series, model), rs in cells.items():
        ls = [v for r in rs for v in r["lengthscale"]]
        use = [r["latent"]["use"] for r in rs]
        lag1 = _mean([_mean(_used(r["latent"]["lag1"], u)) for r, u in zip(rs, use)])
        prior_lag1 = _mean([_mean(r["prior_lag1"]) for r in rs])
        lscale = f"{min(ls):.1f}-{max(ls):.1f}" if max(ls) > 0 else "- (white)"
        memory = _mean([float(np.median(r["memory_steps"])) for r in rs])
        n_used = _mean([sum(x > 0.1 for x in u) for u in use])
        lines.append(
            f"| {series.split(':', 1)[1].rsplit('/', 1)[-1]} | {model} | {len(rs)} | {lscale} | "
            f"{memory:.1f} | {_mean([r['kl_per_step'] for r in rs]):.2f} | "
            f"{_mean([r['kl_share'] for r in rs]):.3f} | {n_used:.1f} of {len(use[0])} | "
            f"{lag1:.2f} | {prior_lag1:.2f} | "
            f"{_mean([r['latent']['energy_auc'] for r in rs]):.2f} | "
            f"{_mean([r['latent']['step_auc'] for r in rs]):.2f} | "
            f"{_mean([r['k5_auc_roc'] for r in rs]):.2f} | "
            f"{_mean([r['prior_auc_roc'] for r in rs]):.2f} | "
            f"{_mean([r['k5_median_ratio'] for r in rs]):.2f} | "
            f"{_mean([r['prior_median_ratio'] for r in rs]):.2f} | "
            f"{_mean([r['vus_pr'] for r in rs]):.3f} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--series", default=None, help="Comma-separated DATASET:NAME (default: dev).")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", default="gpvae,vae")
    p.add_argument("--tag", default="s18_prior")
    p.add_argument("--gpvae-args", default="--kernel matern32 --beta 1 --epochs 100")
    p.add_argument("--vae-args", default="--hidden 32 --beta 0.5 --epochs 100")
    p.add_argument(
        "--table",
        action="store_true",
        help="Run nothing: write the table of the --out records into --docs between "
        "<!-- --marker --> markers (and print it).",
    )
    p.add_argument("--docs", default=str(bench.ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--marker", default="anomaly-prior")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    path = Path(args.out)
    if args.table:
        from anomaly_table import write_region  # a sibling script

        text = table(json.loads(path.read_text()))
        write_region(Path(args.docs), text, f"<!-- {args.marker} -->", f"<!-- /{args.marker} -->")
        print(text)
        return 0
    names = args.series.split(",") if args.series else list(bench.DEV_SERIES)
    records = json.loads(path.read_text()) if path.exists() else []
    done = {(r["series"], r["method"], r["seed"]) for r in records}
    for full in names:
        kind, name = full.split(":", 1)
        s = bench.load("NAB" if kind == "NAB" else "SMAP_MSL", name, args.data_dir)
        for method in args.methods.split(","):
            extra = args.gpvae_args if method == "gpvae" else args.vae_args
            for seed in args.seeds:
                if (full, method, seed) in done:
                    continue
                run = bench.parse_args(
                    [*extra.split(), "--seed", str(seed), "--variants", ",".join(VARIANTS)]
                )
                rec = {"series": full, "method": method, "seed": seed, "tag": args.tag,
                       "args": extra, **diagnose(s, run, method == "vae")}  # fmt: skip
                records.append(rec)
                path.write_text(json.dumps(records, indent=1, default=float) + "\n")
                print(full, method, seed, f"{rec['vus_pr']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
