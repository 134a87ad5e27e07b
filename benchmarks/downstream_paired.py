"""gpvae's mortality AUROC against linear interpolation's on the same stays, paired (issue 15).

On all 4,000 PhysioNet stays the protocol's AUROC (``imputation.py``, downstream) is a mean
over 5 folds; gpvae's is 0.0057 below linear interpolation's, and only 5 of its 15 (seed,
fold) pairs are above. This script asks whether that gap is larger than the stays' sampling
noise. It fits gpvae exactly as the points cell does (``GPVAE_CONFIG``, the seed's points
task, training split, early-stopped on the hidden validation entries, the same epoch cap and
patience), imputes every stay, and runs the protocol's classifier on the protocol's folds
for gpvae's imputations and linear interpolation's
(:func:`_protocol.downstream_predictions`). Each stay gets an out-of-fold death probability
from each method; the AUROC of the pooled out-of-fold probabilities is compared, the
difference resampled over stays (a paired bootstrap: both methods' probabilities of the same
resampled stays; the classifiers are not refitted).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/downstream_paired.py --seed 0 --data-dir ../shared/data
    python benchmarks/downstream_paired.py --table

Records go to ``benchmarks/results/imputation_paired.json`` (``--out``), one per seed
(``--save-imputed FILE.npz`` also keeps gpvae's imputed stays; ``--imputed FILE.npz`` reads
them instead of fitting).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _protocol import (
    ResultsFile,
    downstream_predictions,
    machine_info,
    make_task,
    prepare,
    record_command,
    score,
)

__all__ = ["compare", "main", "paired_bootstrap"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "imputation_paired.json"
BOOT = 2000


class PairedResults(ResultsFile):
    KEY = ("method", "seed", "subset")


def paired_bootstrap(
    labels: np.ndarray, a: np.ndarray, b: np.ndarray, draws: int = BOOT, seed: int = 0
) -> np.ndarray:
    """(draws,) AUROC(a) - AUROC(b) over stays resampled with replacement (the same stays
    for both; a draw without both classes is drawn again)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    n, out = len(labels), []
    while len(out) < draws:
        pick = rng.integers(0, n, n)
        y = labels[pick]
        if y.min() == y.max():
            continue
        out.append(roc_auc_score(y, a[pick]) - roc_auc_score(y, b[pick]))
    return np.asarray(out)


def compare(
    labels: np.ndarray, imputed: np.ndarray, baseline: np.ndarray, draws: int = BOOT
) -> dict[str, Any]:
    """Both methods through the protocol's classifier and folds; their fold AUROCs, pooled
    out-of-fold AUROCs, and the paired bootstrap of the pooled difference."""
    from sklearn.metrics import roc_auc_score

    out: dict[str, Any] = {}
    probs = {}
    for name, X in (("method", imputed), ("linear", baseline)):
        prob, fold = downstream_predictions(X, labels)
        probs[name] = prob
        out[f"{name}_folds"] = [
            float(roc_auc_score(labels[fold == k], prob[fold == k])) for k in range(fold.max() + 1)
        ]
        out[f"{name}_pooled"] = float(roc_auc_score(labels, prob))
    diff = paired_bootstrap(labels, probs["method"], probs["linear"], draws)
    out["pooled_diff"] = out["method_pooled"] - out["linear_pooled"]
    out["boot_ci95"] = [float(np.quantile(diff, 0.025)), float(np.quantile(diff, 0.975))]
    out["boot_share_above"] = float((diff > 0).mean())
    out["boot_draws"] = draws
    return out


def table(records: Sequence[dict[str, Any]]) -> str:
    """Markdown, one row per record."""
    lines = [
        "| seed | epochs run (best) | test MAE | gpvae AUROC: fold mean (pooled) "
        "| linear: fold mean (pooled) | gpvae minus linear, pooled [95% paired bootstrap] "
        "| draws above 0 |",
        "|---:|---|---:|---|---|---|---:|",
    ]
    for r in sorted(records, key=lambda r: r["seed"]):
        lo, hi = r["boot_ci95"]
        lines.append(
            f"| {r['seed']} | {r['epochs']} ({r['best_epoch']}) | {r['test_mae']:.4f} | "
            f"{np.mean(r['method_folds']):.4f} ({r['method_pooled']:.4f}) | "
            f"{np.mean(r['linear_folds']):.4f} ({r['linear_pooled']:.4f}) | "
            f"{r['pooled_diff']:+.4f} [{lo:+.4f}, {hi:+.4f}] | "
            f"{100 * r['boot_share_above']:.1f}% |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from imputation import DEFAULT_EPOCHS, DEFAULT_PATIENCE, GPVAEImputer, NaiveImputer

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, nargs="+", default=[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    p.add_argument("--patience", type=int, default=DEFAULT_PATIENCE)
    p.add_argument("--subset", type=int, default=None, help="the first N stays only (tests)")
    p.add_argument("--draws", type=int, default=BOOT, help="bootstrap draws")
    p.add_argument("--out", "--results", dest="out", default=str(RESULTS), help="the records")
    p.add_argument("--save-imputed", default=None, help="keep gpvae's imputed stays here")
    p.add_argument("--imputed", default=None, help="read gpvae's imputed stays, do not fit")
    p.add_argument("--table", action="store_true", help="print the table of --out and stop")
    p.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--marker", default=None, help="with --table: write it between these markers")
    args = p.parse_args(argv)
    store = PairedResults(args.out)
    if args.table:
        from _docs import write_region

        text = table(store.records)
        print(text)
        if args.marker is not None:
            write_region(Path(args.docs), text, args.marker, "--marker")
        return 0
    if args.imputed is not None and len(args.seed) > 1:
        p.error("--imputed: expected one --seed (the seed of the file's fit)")
    command = record_command(
        "downstream_paired.py",
        sys.argv[1:] if argv is None else argv,
        ("--out", "--results", "--data-dir", "--save-imputed", "--imputed"),
    )
    prep = prepare("physionet2012", args.data_dir, args.subset)
    if prep.labels is None:
        p.error("--data-dir: expected PhysioNet's Outcomes-a.txt (the labels)")
    linear = NaiveImputer("linear")
    for seed in args.seed:
        task = make_task(prep, "point", seed)
        linear.fit(task)
        baseline = linear.impute(prep.X, prep.times)
        start = time.perf_counter()
        if args.imputed is not None:
            saved = np.load(args.imputed)
            imputed, epochs, best, test_mae = (
                saved["imputed"],
                int(saved["epochs"]),
                int(saved["best_epoch"]),
                float(saved["test_mae"]),
            )
        else:
            model = GPVAEImputer(args.epochs, args.patience, seed)
            model.fit(task)
            hidden = model.impute(task.X_test, task.times_test)
            test_mae = score(hidden, task.X_test_ori, task.test_mask)["mae"]
            imputed = model.impute(prep.X, prep.times)
            epochs, best = model.epochs_run, model.best_epoch
            if args.save_imputed is not None:
                np.savez_compressed(
                    args.save_imputed,
                    imputed=imputed,
                    epochs=epochs,
                    best_epoch=best,
                    test_mae=test_mae,
                    seed=seed,
                )
        rec = {
            "method": "gpvae",
            "seed": seed,
            "subset": args.subset,
            "epochs": epochs,
            "best_epoch": best,
            "test_mae": test_mae,
            **compare(prep.labels, imputed, baseline, args.draws),
            "wall_s": round(time.perf_counter() - start, 1),
            "machine": machine_info(),
            "command": command,
        }
        store.add(rec)
        print(table([rec]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
