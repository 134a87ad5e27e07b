"""How many draws the imputation interval calibration needs: coverage against draws.

One ``GPVAE(latent_dim=16)`` is fitted on PhysioNet 2012 (set A, the first ``--train``
stays; ``--epochs``, patience 4) with ``--val`` further stays as validation series (10% of
their observed entries hidden, as ``--pattern``: single points, or blocks of 3-8 steps of
one feature). The spread factors are then fitted on the same model with
:data:`gpvae.settings.CALIBRATION_SAMPLES` set to each of ``--draws`` in turn (the rest of
the calibration unchanged), and ``--test`` other stays with 10% of their entries hidden the
same way are imputed with 100 draws under each set of factors. Recorded per draw count: the
calibration's own time (1 torch thread), the median factor, and the share of hidden test
entries inside the 50% and 90% intervals.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration_draws.py \\
        --data-dir ../shared/data --pattern points --seed 0 \\
        --out benchmarks/results/calibration_draws_points_s0.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main"]

HERE = Path(__file__).resolve().parent


def _hidden(X: np.ndarray, pattern: str, seed: int) -> np.ndarray:
    """(n, T, D) bool: 10% of each stay's observed entries, points or blocks of 3-8 steps."""
    from gpvae.data.holdout import block_mask

    rng = np.random.default_rng(seed)
    out = []
    for x in X:
        observed = ~np.isnan(x)
        if pattern == "blocks":
            out.append(block_mask(observed, 0.1, (3, 8), rng) & observed)
        else:
            out.append(observed & (rng.random(x.shape) < 0.1))
    return np.stack(out)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    import gpvae.estimator.estimator as estimator_module
    from gpvae import GPVAE, settings
    from gpvae.datasets.physionet2012 import load_physionet2012

    torch.set_num_threads(1)
    X = load_physionet2012(args.data_dir).X
    a, b = args.train, args.train + args.val
    train, val, test = X[:a], X[a:b], X[b : b + args.test]
    if len(test) < args.test:
        raise SystemExit(f"--test: only {len(test)} stays are left after train and val")
    val_hidden = _hidden(val, args.pattern, 1 + 10 * args.seed)
    test_hidden = _hidden(test, args.pattern, 2 + 10 * args.seed)
    draws = list(dict.fromkeys(args.draws))
    found: dict[int, tuple[np.ndarray, float]] = {}
    calibrate_fit = estimator_module.calibrate_fit
    default = settings.CALIBRATION_SAMPLES

    def every_count(*a: Any, **k: Any) -> np.ndarray:
        try:
            for S in draws:
                settings.CALIBRATION_SAMPLES = S
                start = time.perf_counter()
                scales = calibrate_fit(*a, **k)
                found[S] = (scales, time.perf_counter() - start)
        finally:
            settings.CALIBRATION_SAMPLES = default
        return found[draws[0]][0]

    estimator_module.calibrate_fit = every_count
    est = GPVAE(
        latent_dim=16,
        epochs=args.epochs,
        patience=4,
        progress=False,
        seed=args.seed,
        mask_pattern=args.pattern,
    )
    est.fit(train, X_val=np.where(val_hidden, np.nan, val), X_val_target=val)
    estimator_module.calibrate_fit = calibrate_fit
    test_in = np.where(test_hidden, np.nan, test)
    rows = []
    for S in draws:
        scales, seconds = found[S]
        est.interval_scale_ = scales
        row: dict[str, Any] = {
            "draws": S,
            "calibration_s": seconds,
            "median_factor": float(np.median(scales)),
        }
        for level in (0.5, 0.9):
            res = est.impute(test_in, num_samples=100, quantiles=((1 - level) / 2, (1 + level) / 2))
            inside = (res.lower <= test) & (res.upper >= test)
            row[f"coverage_{int(level * 100)}"] = float(inside[test_hidden].mean())
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {
        "pattern": args.pattern,
        "seed": args.seed,
        "train": args.train,
        "val": args.val,
        "test": args.test,
        "epochs_run": len(est.history_),
        "history": est.history_,
        "hidden_test_entries": int(test_hidden.sum()),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--pattern", choices=("points", "blocks"), default="points")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=1200)
    parser.add_argument("--val", type=int, default=300)
    parser.add_argument("--test", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--draws", type=int, nargs="+", default=[64, 48, 32])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rec = run(args)
    rec["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rec["command"] = "env OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python " + shlex.join(
        ["benchmarks/calibration_draws.py", *(sys.argv[1:] if argv is None else argv)]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rec, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
