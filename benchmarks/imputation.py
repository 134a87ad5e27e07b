"""Imputation benchmark on real data: ours vs naive baselines vs PyPOTS peers (issue 6).

Protocol (``DESIGN.md``, "Benchmark protocols"; data, splits, masks and metrics live in
``benchmarks/_protocol.py`` and are shared by every method):

- PhysioNet 2012 set-a (4,000 stays, 48 hourly steps, 37 time-varying parameters, random
  64/16/20 split with a fixed seed) and BeijingAir (132 features, 24-step windows,
  chronological 60/20/20); features standardised with the observed training entries.
- Two patterns on the validation and test splits: ``point`` (10% of observed entries, MCAR)
  and ``block`` (runs of 5-24 steps of one feature, 10% of observed entries). MAE and MSE on
  the hidden entries, standardised units.
- ``downstream`` (PhysioNet only): every method imputes all 4,000 stays (learned methods are
  the ones trained for the ``point`` pattern: trained on the training split, selected on the
  validation split; at imputation time they see the observed entries of every stay, never a
  label); then in-hospital death AUROC of a logistic regression on the flattened imputed
  series, stratified 5-fold CV.

What the run seed changes: the validation and test masks (each drawn from a generator
seeded by (seed, pattern, split)) and, for learned methods, every random draw of training
(initial weights, batch order, Monte Carlo samples; PyPOTS: ``torch.manual_seed`` and
``np.random.seed``). The data split (``SPLIT_SEED``) and the CV folds (``CV_SEED``) are the
same for every seed.

Methods: ``mean``, ``locf``, ``linear`` (``gpvae.app.baselines``); ``gpvae`` (ours: every
candidate of ``GPVAE_CANDIDATES`` is trained on the training split with early stopping on the
validation split, and the candidate with the lowest MAE on the hidden validation entries is
the one scored on test, once); ``pypots_gpvae``, ``saits``, ``brits`` (PyPOTS 1.5, see
``benchmarks/_peers.py``; needs the benchmark environment of ``setup_bench_env.sh``).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/imputation.py --dataset physionet2012 \\
        --method linear --seed 0
    OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/imputation.py \\
        --dataset physionet2012 --method saits --seed 0 --epochs 20
    python benchmarks/imputation.py --dataset physionet2012 --method gpvae --smoke

Records are appended to ``benchmarks/results/imputation.json`` (``--out`` to change), one per
(dataset, pattern, method, seed), written atomically as each finishes; existing records are
skipped unless ``--force``. ``--smoke`` runs a tiny subset for 2 epochs and writes to a
temporary file. ``benchmarks/make_tables.py`` turns the JSON into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _protocol import (
    BLOCK_LENGTHS,
    CV_SEED,
    DATASETS,
    HIDE_RATE,
    PATTERNS,
    SPLIT_SEED,
    Prepared,
    ResultsFile,
    Task,
    downstream_auroc,
    machine_info,
    make_task,
    prepare,
    score,
)

__all__ = [
    "BASELINES",
    "GPVAE_CANDIDATES",
    "METHODS",
    "PEERS",
    "GPVAEImputer",
    "NaiveImputer",
    "main",
    "make_imputer",
    "run",
]

RESULTS = Path(__file__).resolve().parent / "results" / "imputation.json"
BASELINES = ("mean", "locf", "linear")
PEERS = ("pypots_gpvae", "saits", "brits")
METHODS = (*BASELINES, "gpvae", *PEERS)
DEFAULT_EPOCHS = 100
DEFAULT_PATIENCE = 10
SMOKE_SUBSET = {"physionet2012": 64, "beijing_air": 60}
SMOKE_EPOCHS = 2

GPVAE_CANDIDATES: tuple[dict[str, Any], ...] = (
    {
        "latent_dim": 16,
        "kernel": "matern32",
        "posterior": "structured",
        "likelihood": "gaussian_gp",
        "encoder": "mlp",
        "hidden": [128, 128],
        "batch_size": 64,
        "lr": 1e-3,
    },
    {
        "latent_dim": 32,
        "kernel": "matern32",
        "posterior": "structured",
        "likelihood": "gaussian_gp",
        "encoder": "mlp",
        "hidden": [256, 256],
        "batch_size": 32,
        "lr": 1e-3,
    },
)
"""Settings tried for ``gpvae``; the validation split picks one (test is never consulted)."""

SMOKE_GPVAE: dict[str, Any] = {
    "latent_dim": 4,
    "kernel": "matern32",
    "posterior": "structured",
    "likelihood": "gaussian",
    "encoder": "mlp",
    "hidden": [32],
    "batch_size": 16,
    "lr": 1e-3,
}


class Imputer(Protocol):
    """What the harness needs from a method."""

    settings: dict[str, Any]
    epochs_run: int

    def fit(self, task: Task) -> None:
        """Train on ``task.X_train``, using the masked validation split for selection."""

    def impute(self, X: np.ndarray, times: np.ndarray) -> np.ndarray:
        """(n, T, D) -> (n, T, D) without NaN at the missing entries."""


class NaiveImputer:
    """``mean``, ``locf`` or ``linear`` from :mod:`gpvae.app.baselines` (no training).

    A feature with nothing to go on in a series falls back to its training mean (0 in
    standardised units).
    """

    def __init__(self, method: str) -> None:
        self.method = method
        self.epochs_run = 0
        self.settings: dict[str, Any] = {
            "function": f"gpvae.app.baselines.impute_{method}",
            "fallback": "training-split feature mean",
        }
        self._train: np.ndarray | None = None

    def fit(self, task: Task) -> None:
        """Remember the training split (for the mean fallback)."""
        self._train = task.X_train

    def impute(self, X: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Fill the NaN of X."""
        from gpvae.app.baselines import impute_linear, impute_locf, impute_mean

        if self.method == "mean":
            return impute_mean(X, train_X=self._train)
        if self.method == "locf":
            return impute_locf(X, train_X=self._train)
        return impute_linear(X, times, train_X=self._train)


def _nonempty(X: np.ndarray) -> np.ndarray:
    """(n,) bool: series with at least one observed entry."""
    return ~np.isnan(X).all(axis=(1, 2))


class GPVAEImputer:
    """Ours: ``gpvae.GPVAE``, one model per candidate, the validation split picks one.

    Each candidate is fitted on the training split with ``X_val`` = the masked validation
    split: the estimator's early stopping scores the MAE of a further ``val_fraction`` share
    of X_val's remaining observed entries (the hidden validation entries are never given to
    training). The candidate with the lowest MAE on the hidden validation entries is kept.
    Series without any observed entry (3 PhysioNet stays have no time-varying value) cannot
    be encoded; they are left out of training and imputed with the training mean (0).

    Args:
        epochs: maximum epochs per candidate.
        patience: early-stopping patience.
        seed: the estimator's seed (initial weights, batches, samples).
        candidates: the settings to try.
        num_samples: posterior samples averaged by ``impute``.
    """

    def __init__(
        self,
        epochs: int,
        patience: int,
        seed: int,
        candidates: Sequence[dict[str, Any]] = GPVAE_CANDIDATES,
        num_samples: int = 20,
    ) -> None:
        self.epochs = epochs
        self.patience = patience
        self.seed = seed
        self.candidates = [dict(c) for c in candidates]
        self.num_samples = num_samples
        self.epochs_run = 0
        self.model: Any = None
        self.settings: dict[str, Any] = {
            "candidates": self.candidates,
            "epochs": epochs,
            "patience": patience,
            "val_fraction": 0.1,
            "impute_num_samples": num_samples,
            "early_stopping": "estimator's held-out MAE on 10% of the masked validation "
            "split's observed entries; selection: MAE on the hidden validation entries",
        }

    def _make(self, cand: dict[str, Any]) -> Any:
        from gpvae import GPVAE

        args = dict(cand)
        args["hidden"] = tuple(args["hidden"])
        return GPVAE(
            **args,
            epochs=self.epochs,
            patience=self.patience,
            val_fraction=0.1,
            seed=self.seed,
            device="cpu",
            progress=False,
        )

    def fit(self, task: Task) -> None:
        """Fit every candidate, keep the best on the hidden validation entries."""
        tr, va = _nonempty(task.X_train), _nonempty(task.X_val)
        results = []
        best = (np.inf, None, -1)
        for k, cand in enumerate(self.candidates):
            start = time.perf_counter()
            model = self._make(cand)
            model.fit(
                task.X_train[tr],
                task.times_train[tr],
                X_val=task.X_val[va],
                times_val=task.times_val[va],
            )
            self.model = model
            val = score(self.impute(task.X_val, task.times_val), task.X_val_ori, task.val_mask)
            epochs = len(model.history_)
            self.epochs_run += epochs
            results.append(
                {
                    "candidate": k,
                    "val_mae": val["mae"],
                    "val_mse": val["mse"],
                    "epochs": epochs,
                    "seconds": time.perf_counter() - start,
                    "val_score_per_epoch": [h.get("val_score") for h in model.history_],
                }
            )
            print(f"  [gpvae] candidate {k}: val MAE {val['mae']:.4f} ({epochs} ep)", flush=True)
            if val["mae"] < best[0]:
                best = (val["mae"], model, k)
        self.model = best[1]
        self.settings["selection"] = results
        self.settings["chosen"] = best[2]

    def impute(self, X: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Posterior-predictive mean; series with nothing observed get the training mean 0."""
        out = np.where(np.isnan(X), 0.0, X)
        keep = _nonempty(X)
        if keep.any():
            res = self.model.impute(X[keep], times[keep], num_samples=self.num_samples)
            out[keep] = np.asarray(res.mean, dtype=np.float64)
        return out


def make_imputer(
    method: str,
    epochs: int,
    patience: int,
    seed: int,
    smoke: bool = False,
) -> Imputer:
    """The imputer of ``method`` (peers import PyPOTS here, only when requested)."""
    if method in BASELINES:
        return NaiveImputer(method)
    if method == "gpvae":
        if smoke:
            return GPVAEImputer(epochs, patience, seed, candidates=(SMOKE_GPVAE,), num_samples=4)
        return GPVAEImputer(epochs, patience, seed)
    if method in PEERS:
        from _peers import PeerImputer

        return PeerImputer(method, epochs, patience, seed)
    raise ValueError(f"method: expected one of {METHODS}, found {method!r}")


def _protocol_settings(prep: Prepared, smoke: bool) -> dict[str, Any]:
    return {
        "data": prep.info,
        "hide_rate": HIDE_RATE,
        "block_lengths": list(BLOCK_LENGTHS),
        "split_seed": SPLIT_SEED,
        "cv_seed": CV_SEED,
        "seed_changes": "val/test masks and all randomness of training",
        "smoke": smoke,
    }


def _record(
    prep: Prepared,
    pattern: str,
    method: str,
    seed: int,
    imputer: Imputer,
    wall_s: float,
    smoke: bool,
    **metrics: Any,
) -> dict[str, Any]:
    settings = dict(imputer.settings)
    settings["protocol"] = _protocol_settings(prep, smoke)
    settings["machine"] = machine_info()
    for key in ("best_epoch", "history"):
        if hasattr(imputer, key):
            settings[key] = getattr(imputer, key)
    record: dict[str, Any] = {
        "dataset": prep.dataset,
        "pattern": pattern,
        "method": method,
        "seed": seed,
        "mae": metrics.pop("mae", None),
        "mse": metrics.pop("mse", None),
        "auroc": metrics.pop("auroc", None),
        "wall_s": round(wall_s, 3),
        "epochs": int(imputer.epochs_run),
        "settings": settings,
    }
    record.update(metrics)
    record["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return record


def run(
    dataset: str,
    method: str,
    seed: int,
    results: ResultsFile,
    epochs: int = DEFAULT_EPOCHS,
    patience: int = DEFAULT_PATIENCE,
    patterns: Sequence[str] = PATTERNS,
    downstream: bool = True,
    force: bool = False,
    smoke: bool = False,
    data_dir: str | os.PathLike[str] | None = None,
    prep: Prepared | None = None,
) -> list[dict[str, Any]]:
    """Run one method on one data set for one seed; append a record per finished part.

    Parts, in order: ``point`` (then ``downstream`` with the same fitted model, PhysioNet
    only), ``block``. A part whose record exists is skipped unless ``force``.

    Args:
        dataset: ``"physionet2012"`` or ``"beijing_air"``.
        method: one of ``METHODS``.
        seed: run seed (masks and training randomness).
        results: where records go.
        epochs, patience: training budget of learned methods.
        patterns: which patterns to run.
        downstream: also run the downstream AUROC (PhysioNet 2012 only).
        force: recompute existing records.
        smoke: tiny subset (``SMOKE_SUBSET``), small gpvae.
        data_dir: the shared data directory.
        prep: an already prepared data set (else it is loaded).

    Returns:
        The records written by this call.
    """
    if prep is None:
        prep = prepare(dataset, data_dir, SMOKE_SUBSET[dataset] if smoke else None)
    written: list[dict[str, Any]] = []
    want_down = downstream and prep.labels is not None
    for pattern in patterns:
        need_pattern = force or not results.has(dataset, pattern, method, seed)
        need_down = (
            pattern == "point"
            and want_down
            and (force or not results.has(dataset, "downstream", method, seed))
        )
        if not (need_pattern or need_down):
            print(f"skip {dataset}/{pattern}/{method}/seed {seed}: already recorded", flush=True)
            continue
        print(f"run {dataset}/{pattern}/{method}/seed {seed}", flush=True)
        task = make_task(prep, pattern, seed)
        imputer = make_imputer(method, epochs, patience, seed, smoke)
        print(f"  settings: {json.dumps(imputer.settings)}", flush=True)
        start = time.perf_counter()
        imputer.fit(task)
        fit_s = time.perf_counter() - start
        if need_pattern:
            imputed = imputer.impute(task.X_test, task.times_test)
            wall = time.perf_counter() - start
            test = score(imputed, task.X_test_ori, task.test_mask)
            val = score(imputer.impute(task.X_val, task.times_val), task.X_val_ori, task.val_mask)
            rec = _record(
                prep,
                pattern,
                method,
                seed,
                imputer,
                wall,
                smoke,
                mae=test["mae"],
                mse=test["mse"],
                n_hidden=test["n_hidden"],
                hidden_rate=task.hidden_rates,
                val_mae=val["mae"],
                val_mse=val["mse"],
            )
            results.add(rec)
            written.append(rec)
            print(
                f"  {pattern}: MAE {test['mae']:.4f} MSE {test['mse']:.4f} "
                f"(val MAE {val['mae']:.4f}) {wall:.1f}s",
                flush=True,
            )
        if need_down and prep.labels is not None:
            start = time.perf_counter()
            full = imputer.impute(prep.X, prep.times)
            down = downstream_auroc(full, prep.labels)
            wall = time.perf_counter() - start
            rec = _record(
                prep,
                "downstream",
                method,
                seed,
                imputer,
                wall,
                smoke,
                auroc=down["auroc"],
                auroc_folds=down["auroc_folds"],
                fit_s=round(fit_s, 3),
                n_stays=len(prep.X),
            )
            rec["settings"]["downstream"] = (
                "imputer fitted for the point pattern (training split, validation selection), "
                "then imputes all stays; StandardScaler + LogisticRegression(max_iter=5000) on "
                f"flattened (T*D) series; stratified 5-fold CV (shuffle, seed {CV_SEED}); "
                "wall_s = imputing all stays + CV, fit_s = training"
            )
            results.add(rec)
            written.append(rec)
            print(f"  downstream: AUROC {down['auroc']:.4f} {wall:.1f}s", flush=True)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--method", choices=METHODS, required=True)
    parser.add_argument("--seed", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=None, help="epoch budget (default 100)")
    parser.add_argument("--patience", type=int, default=DEFAULT_PATIENCE)
    parser.add_argument("--pattern", choices=PATTERNS, nargs="+", default=list(PATTERNS))
    parser.add_argument("--no-downstream", action="store_true", help="skip the AUROC task")
    parser.add_argument("--force", action="store_true", help="recompute existing records")
    parser.add_argument("--smoke", action="store_true", help="tiny subset, 2 epochs, temp out")
    parser.add_argument("--out", type=Path, default=None, help=f"results JSON (default {RESULTS})")
    parser.add_argument("--data-dir", default=None, help="shared data dir (default GPVAE_DATA)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    epochs = args.epochs or (SMOKE_EPOCHS if args.smoke else DEFAULT_EPOCHS)
    out = args.out
    if out is None:
        out = Path(tempfile.gettempdir()) / "imputation_smoke.json" if args.smoke else RESULTS
    results = ResultsFile(out)
    prep = prepare(args.dataset, args.data_dir, SMOKE_SUBSET[args.dataset] if args.smoke else None)
    for seed in args.seed:
        run(
            args.dataset,
            args.method,
            seed,
            results,
            epochs=epochs,
            patience=args.patience,
            patterns=args.pattern,
            downstream=not args.no_downstream,
            force=args.force,
            smoke=args.smoke,
            prep=prep,
        )
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
