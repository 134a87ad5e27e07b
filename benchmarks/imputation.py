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

Methods: ``mean``, ``locf``, ``linear`` (``gpvae.app.baselines``); ``gpvae`` (ours: the one
configuration ``GPVAE_CONFIG`` trained on the training split, early-stopped on the MAE of the
hidden validation entries, scored on test once; its 90% intervals' coverage of the hidden
test entries is recorded too); ``pypots_gpvae``, ``saits``, ``brits`` (PyPOTS 1.5, see
``benchmarks/_peers.py``; needs the benchmark environment of ``setup_bench_env.sh``).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/imputation.py --dataset physionet2012 \\
        --method linear --seed 0
    OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/imputation.py \\
        --dataset physionet2012 --method saits --seed 0 --epochs 20
    python benchmarks/imputation.py --dataset physionet2012 --method gpvae --smoke

Records are appended to ``benchmarks/results/imputation_fair.json`` (``--out`` to change), one
per (dataset, pattern, method, seed, subset), written atomically as each finishes; existing
records are skipped unless ``--force``. ``--subset N`` keeps the first N series only (split as
usual) for every method alike: a reduced-scale run, recorded with ``"subset": N``.
``--smoke`` runs a tiny subset for 2 epochs with a small gpvae (``SMOKE_GPVAE``; a
``--config`` replaces its settings) and writes to a temporary file.
``benchmarks/make_tables.py`` turns the JSON into ``docs/benchmarks.md``.
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
    coverage,
    downstream_auroc,
    machine_info,
    make_task,
    prepare,
    score,
)
from _protocol import (
    record_command as _record_command,
)

__all__ = [
    "BASELINES",
    "GPVAE_CONFIG",
    "METHODS",
    "PEERS",
    "GPVAEImputer",
    "NaiveImputer",
    "main",
    "make_imputer",
    "record_command",
    "run",
]

RESULTS = Path(__file__).resolve().parent / "results" / "imputation_fair.json"
BASELINES = ("mean", "locf", "linear")
PEERS = ("pypots_gpvae", "saits", "brits")
METHODS = (*BASELINES, "gpvae", *PEERS)
DEFAULT_EPOCHS = 100
DEFAULT_PATIENCE = 5
SMOKE_SUBSET = {"physionet2012": 64, "beijing_air": 60}
SMOKE_EPOCHS = 2

GPVAE_CONFIG: dict[str, Any] = {
    "latent_dim": 16,
    "kernel": "matern32",
    "posterior": "structured",
    "likelihood": "student_t",
    "encoder": "mlp",
    "hidden": [128, 128],
    "batch_size": 32,
    "lr": 1e-3,
    "interp_skip": True,
    "interp_cross": "fill+fit+fade",
    "interp_blend": True,
}
"""The one configuration of ``gpvae`` (the peers get theirs: PyPOTS's defaults): the
decoder's prediction fused with each feature's interpolation between its observed neighbours
(``interp_skip``), learned from 20% of the observed entries hidden at every step; after
training, the imputation is blended per feature with that interpolation, with the weight
that does best on the hidden validation entries (``interp_blend``). Batch size 32 (the
peers' PyPOTS default; 64 gave PhysioNet-300 three updates per epoch) and a Student-t
observation model were chosen in validation-only screens (seed 0, ``--val-only``, the test
split untouched): the configuration whose worst cell relative to linear interpolation on
the validation entries is best (the Gaussian one stopped after one epoch on BeijingAir
points, 1.7% above linear there; see docs/benchmarks.md). ``interp_cross`` (a feature
regression from the other features at the same step, its residual interpolated in time)
was added in session 7: on validation (seed 0) it lowered the MAE in all four cells by
13-35% (tag ``xreg`` in ``imputation_explore.json``). Its options ``fill+fit+fade`` (the
regression reads the other features' interpolation where they are unseen, is fitted to every
seen entry, and the interpolated residual fades towards it with the distance to the nearer
neighbour) were added in session 9: BeijingAir blocks validation (seed 0) 0.1369 against
0.1681 (tags ``x_*``)."""

GPVAE_PATTERN: dict[str, dict[str, Any]] = {
    "point": {"mask_rate": 0.2, "mask_pattern": "points"},
    "block": {"mask_rate": 0.2, "mask_pattern": "blocks", "block_lengths": [5, 24]},
}
"""Per-pattern settings of ``gpvae``: the shape of artificial missingness follows the pattern
being scored, as the validation signal does (blocks of the protocol's 5-24 steps). Ignored
when a ``--config`` sets ``mask_rate``."""

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


class GPVAEImputer:
    """Ours: ``gpvae.GPVAE`` with one configuration.

    Trained on the training split; early stopping scores the hidden validation entries of
    the pattern being scored, given to the estimator as ``fit(X_train, X_val=masked
    validation split, X_val_target=the same split unmasked)``: the peers' validation signal.
    The intervals are calibrated on new hold-outs of the validation series with the
    pattern's shape (``mask_pattern``, :func:`gpvae.estimator.calibration.fresh_holdouts`).
    Series without any observed entry (3 PhysioNet stays have no time-varying value) are
    imputed from the model's prior level.

    Args:
        epochs: maximum epochs.
        patience: early-stopping patience.
        seed: the estimator's seed (initial weights, batches, samples).
        config: the estimator's settings.
        num_samples: posterior draws per series at imputation (mean and 90% interval).
    """

    def __init__(
        self,
        epochs: int,
        patience: int,
        seed: int,
        config: dict[str, Any] | None = None,
        num_samples: int = 50,
    ) -> None:
        self.epochs = epochs
        self.patience = patience
        self.seed = seed
        self.config = dict(GPVAE_CONFIG if config is None else config)
        self.num_samples = num_samples
        self.epochs_run = 0
        self.best_epoch = 0
        self.history: list[dict[str, float]] = []
        self.model: Any = None
        self.last_interval: tuple[np.ndarray, np.ndarray] | None = None
        self.settings: dict[str, Any] = {
            "config": self.config,
            "epochs": epochs,
            "patience": patience,
            "impute_num_samples": num_samples,
            "early_stopping": "MAE on the hidden validation entries of the pattern "
            "(fit(X_train, X_val=masked, X_val_target=unmasked)); best weights kept; 90% "
            "intervals calibrated on 4 new hold-outs of the validation series shaped like the "
            "pattern (gpvae.estimator.calibration.fresh_holdouts)",
        }

    def fit(self, task: Task) -> None:
        """Fit on the training split, early-stopping on the hidden validation entries."""
        import warnings

        from gpvae import GPVAE

        args = dict(self.config)
        args["hidden"] = tuple(args["hidden"])
        if "block_lengths" in args:
            args["block_lengths"] = tuple(args["block_lengths"])
        args.update(GPVAE_PATTERN.get(task.pattern, {}) if "mask_rate" not in args else {})
        self.model = GPVAE(
            **args,
            epochs=self.epochs,
            patience=self.patience,
            seed=self.seed,
            device="cpu",
            progress=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # empty stays, reported in the record
            self.model.fit(
                task.X_train,
                task.times_train,
                X_val=task.X_val,
                times_val=task.times_val,
                X_val_target=task.X_val_ori,
            )
        hist = self.model.history_
        self.epochs_run = len(hist)
        scores = [h.get("val_score", float("nan")) for h in hist]
        self.best_epoch = int(np.nanargmin(scores)) + 1 if hist else 0
        self.history = [
            {
                "epoch": int(h["epoch"]),
                "val_mae": h.get("val_score"),
                "loss": h.get("loss"),
                "seconds": h.get("seconds"),
            }
            for h in hist
        ]
        self.settings["resolved"] = {k: v for k, v in args.items() if k != "hidden"}
        blend = getattr(self.model, "blend_weight_", None)
        self.settings["blend_weight"] = None if blend is None else [float(w) for w in blend]
        print(
            f"  [gpvae] best epoch {self.best_epoch} of {self.epochs_run}: val MAE "
            f"{np.nanmin(scores):.4f}",
            flush=True,
        )

    def impute(self, X: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Posterior-predictive mean (keeps the 5%/95% quantiles in ``last_interval``)."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            res = self.model.impute(X, times, num_samples=self.num_samples)
        self.last_interval = (np.asarray(res.lower), np.asarray(res.upper))
        return np.asarray(res.mean, dtype=np.float64)


def make_imputer(
    method: str,
    epochs: int,
    patience: int,
    seed: int,
    smoke: bool = False,
    config: dict[str, Any] | None = None,
) -> Imputer:
    """The imputer of ``method`` (peers import PyPOTS here, only when requested); with
    ``smoke``, gpvae's default configuration is ``SMOKE_GPVAE``."""
    if method in BASELINES:
        return NaiveImputer(method)
    if method == "gpvae":
        if smoke:
            smoke_config = SMOKE_GPVAE if config is None else config
            return GPVAEImputer(epochs, patience, seed, config=smoke_config, num_samples=4)
        return GPVAEImputer(epochs, patience, seed, config=config)
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
    if metrics.get("subset") is None:
        metrics.pop("subset", None)
    if not metrics.get("subset_start"):
        metrics.pop("subset_start", None)
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
    config: dict[str, Any] | None = None,
    tag: str | None = None,
    val_only: bool = False,
    subset: int | None = None,
    command: str | None = None,
    subset_start: int = 0,
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
        smoke: tiny subset (``SMOKE_SUBSET``), small gpvae (``SMOKE_GPVAE``).
        data_dir: the shared data directory.
        prep: an already prepared data set (else it is loaded).
        config: ``gpvae`` only: settings replacing those of ``GPVAE_CONFIG`` (exploration;
            with ``smoke``, those of ``SMOKE_GPVAE``, so a configuration can be smoke-tested).
        tag: record the method as ``method[tag]`` (exploration runs).
        val_only: score the validation split only (exploration: the test split and the
            downstream task are not touched).
        subset: only the first ``subset`` series (then split as usual): a reduced-scale run,
            recorded as ``"subset"`` in every record (part of the record's identity, so it
            never replaces or stands in for a run on the whole data set).
        command: recorded as each record's ``command`` (the command line that made it).
        subset_start: with ``subset``, the block of series starting here instead of the first
            (recorded as ``"subset_start"`` when not 0, also part of the identity).

    Returns:
        The records written by this call.
    """
    if smoke and subset is None:
        subset = SMOKE_SUBSET[dataset]
    if prep is None:
        prep = prepare(dataset, data_dir, subset, subset_start)
    written: list[dict[str, Any]] = []
    want_down = downstream and prep.labels is not None and not val_only
    name = method if tag is None else f"{method}[{tag}]"
    for pattern in patterns:
        need_pattern = force or not results.has(dataset, pattern, name, seed, subset, subset_start)
        need_down = (
            pattern == "point"
            and want_down
            and (force or not results.has(dataset, "downstream", name, seed, subset, subset_start))
        )
        if not (need_pattern or need_down):
            print(
                f"skip {dataset}/{pattern}/{method}/seed {seed}: already recorded",
                flush=True,
            )
            continue
        print(f"run {dataset}/{pattern}/{method}/seed {seed}", flush=True)
        task = make_task(prep, pattern, seed)
        cfg = None if config is None else {**(SMOKE_GPVAE if smoke else GPVAE_CONFIG), **config}
        imputer = make_imputer(method, epochs, patience, seed, smoke, cfg)
        print(f"  settings: {json.dumps(imputer.settings)}", flush=True)
        start = time.perf_counter()
        imputer.fit(task)
        fit_s = time.perf_counter() - start
        if need_pattern:
            test = {"mae": None, "mse": None, "n_hidden": None}
            extra: dict[str, Any] = {}
            if not val_only:
                imputed = imputer.impute(task.X_test, task.times_test)
                test = score(imputed, task.X_test_ori, task.test_mask)
                interval = getattr(imputer, "last_interval", None)
                if interval is not None:
                    extra["coverage90"] = coverage(interval, task.X_test_ori, task.test_mask)
            wall = time.perf_counter() - start
            val = score(
                imputer.impute(task.X_val, task.times_val),
                task.X_val_ori,
                task.val_mask,
            )
            interval = getattr(imputer, "last_interval", None)
            if interval is not None:
                extra["val_coverage90"] = coverage(interval, task.X_val_ori, task.val_mask)
            rec = _record(
                prep,
                pattern,
                name,
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
                subset=subset,
                subset_start=subset_start,
                **extra,
            )
            if command is not None:
                rec["command"] = command
            results.add(rec)
            written.append(rec)
            cov = "".join(f" {k} {v:.3f}" for k, v in extra.items())
            mae = "-" if test["mae"] is None else f"{test['mae']:.4f}"
            print(
                f"  {pattern}: MAE {mae} (val MAE {val['mae']:.4f}){cov} {wall:.1f}s",
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
                name,
                seed,
                imputer,
                wall,
                smoke,
                auroc=down["auroc"],
                auroc_folds=down["auroc_folds"],
                fit_s=round(fit_s, 3),
                n_stays=len(prep.X),
                subset=subset,
                subset_start=subset_start,
            )
            rec["settings"]["downstream"] = (
                "imputer fitted for the point pattern (training split, validation selection), "
                "then imputes all stays; StandardScaler + LogisticRegression(max_iter=5000) on "
                f"flattened (T*D) series; stratified 5-fold CV (shuffle, seed {CV_SEED}); "
                "wall_s = imputing all stays + CV, fit_s = training"
            )
            if command is not None:
                rec["command"] = command
            results.add(rec)
            written.append(rec)
            print(f"  downstream: AUROC {down['auroc']:.4f} {wall:.1f}s", flush=True)
    return written


def record_command(argv: Sequence[str]) -> str:
    """The command line a record names: this machine's paths (``--out``, ``--data-dir``, in
    either spelling) left out, so that it reads as a user types it from the repository."""
    return _record_command("imputation.py", argv, ("--out", "--data-dir"))


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
    parser.add_argument(
        "--config",
        default=None,
        help="gpvae: JSON settings replacing GPVAE_CONFIG's (with --smoke, SMOKE_GPVAE's)",
    )
    parser.add_argument("--tag", default=None, help="record the method as METHOD[TAG]")
    parser.add_argument(
        "--subset",
        type=int,
        default=None,
        help="only the first N series (then split as usual): screens, or a reduced-scale "
        "run recorded with its subset",
    )
    parser.add_argument(
        "--subset-start",
        type=int,
        default=0,
        help="with --subset: the block of N series starting at this one (0-based) instead "
        "of the first N",
    )
    parser.add_argument(
        "--val-only", action="store_true", help="score validation only (exploration)"
    )
    args = parser.parse_args(argv)
    if args.subset is not None and args.subset < 10:
        parser.error(f"--subset: expected at least 10 series, found {args.subset}")
    if args.subset_start and (args.subset is None or args.smoke):
        parser.error("--subset-start: expected with --subset (and without --smoke)")
    if args.subset_start < 0:
        parser.error(f"--subset-start: expected 0 or more, found {args.subset_start}")

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    command = record_command(sys.argv[1:] if argv is None else argv)
    epochs = args.epochs or (SMOKE_EPOCHS if args.smoke else DEFAULT_EPOCHS)
    out = args.out
    if out is None:
        out = Path(tempfile.gettempdir()) / "imputation_smoke.json" if args.smoke else RESULTS
    results = ResultsFile(out)
    subset = SMOKE_SUBSET[args.dataset] if args.smoke else args.subset
    try:
        prep = prepare(args.dataset, args.data_dir, subset, args.subset_start)
    except ValueError as err:
        parser.error(str(err).replace("subset_start:", "--subset-start:", 1))
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
            config=None if args.config is None else json.loads(args.config),
            tag=args.tag,
            val_only=args.val_only,
            subset=subset,
            command=command,
            subset_start=args.subset_start,
        )
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
