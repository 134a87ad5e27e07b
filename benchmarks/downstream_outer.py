"""The PhysioNet-300 mortality AUROC checked on many more stays (issue 15).

The downstream AUROC of ``imputation.py`` on the reduced-scale PhysioNet cell is a 5-fold
CV over its 300 stays (37 deaths) with one fixed split of the folds. In a check of session
10, reshuffling those folds 20 times moved linear interpolation's AUROC with a standard
deviation of 0.045, as large as the gaps between methods there. This check trains a method
exactly as
``imputation.py`` does for the PhysioNet-300 points cell (same task, seed, budget and
configuration; learned methods: training split, selected on the validation split). It then
records two more AUROCs. Both use the classifier of the protocol
(:func:`_protocol.downstream_auroc`: StandardScaler + LogisticRegression, stratified 5-fold
CV):

- ``auroc_outer``: on the 3,700 stays of set-a outside the subset (about 500 deaths),
  imputed by the same fitted model after standardising them with the subset's training
  statistics. No PhysioNet-300 record reads them, and the model never sees their labels.
- ``auroc_selection``: on the training and validation stays of the subset only (the test
  stays untouched), the CV repeated over 20 shuffles of the folds. This is a signal a
  configuration may be chosen on.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/downstream_outer.py --method gpvae --seed 0
    OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/downstream_outer.py --method saits

Records go to ``benchmarks/results/imputation_outer.json`` (``--out`` to change), one per
(method, seed), keyed like ``imputation.py``'s (pattern ``"outer"``, subset 300).
``--config`` / ``--tag`` as in ``imputation.py`` (gpvae only). Each record carries the
command that made it (``command``). ``--save-imputed FILE.npz`` also writes the subset's
imputed stays (``imputed``, standardised units; ``observed``; ``labels``; ``pick``, the
training + validation rows; ``subset``; ``method``, ``seed``, ``epochs``) for analysis
(``downstream_gaps.py``); it holds no outer stay.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _protocol import (
    CV_SEED,
    ResultsFile,
    downstream_auroc,
    machine_info,
    make_task,
    prepare,
    record_command,
)
from imputation import DEFAULT_EPOCHS, DEFAULT_PATIENCE, GPVAE_CONFIG, METHODS, make_imputer

__all__ = ["SELECTION_REPEATS", "SUBSET", "main", "outer_stays", "selection_auroc"]

RESULTS = Path(__file__).resolve().parent / "results" / "imputation_outer.json"
SUBSET = 300
SELECTION_REPEATS = 20


def outer_stays(
    data_dir: str | os.PathLike[str] | None, subset: int, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """The stays after the first ``subset`` (values standardised with the subset's training
    statistics, times, labels; only the first ``limit`` of them unless None) and the
    subset's prepared data set."""
    from gpvae.datasets.physionet2012 import load_physionet2012

    prep = prepare("physionet2012", data_dir, subset)
    data = load_physionet2012(data_dir)
    end = None if limit is None else subset + limit
    raw = np.asarray(data.X, dtype=np.float64)[subset:end]
    if not len(raw):
        raise ValueError(f"subset: expected fewer series than the {subset} of the data set")
    X = (raw - prep.mean) / prep.std
    times = np.asarray(data.times, dtype=np.float64)[subset:end]
    labels = np.asarray(data.labels)[subset:end]
    return X, times, labels, prep


def selection_auroc(
    imputed: np.ndarray, labels: np.ndarray, repeats: int = SELECTION_REPEATS
) -> float:
    """The protocol's classifier, stratified 5-fold CV repeated over ``repeats`` shuffles
    (seeded by ``CV_SEED``); the mean AUROC over all folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    flat = imputed.reshape(len(imputed), -1)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    cv = RepeatedStratifiedKFold(n_splits=5, n_repeats=repeats, random_state=CV_SEED)
    return float(np.mean(cross_val_score(model, flat, labels, cv=cv, scoring="roc_auc")))


def run(
    method: str,
    seed: int,
    results: ResultsFile,
    epochs: int = DEFAULT_EPOCHS,
    patience: int = DEFAULT_PATIENCE,
    data_dir: str | os.PathLike[str] | None = None,
    config: dict[str, Any] | None = None,
    tag: str | None = None,
    subset: int = SUBSET,
    outer_limit: int | None = None,
    repeats: int = SELECTION_REPEATS,
    command: str | None = None,
    save_imputed: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Fit ``method`` for the points cell of the first ``subset`` stays, score both AUROCs,
    append the record and return it (``outer_limit``, ``repeats``: smaller runs for
    tests; ``command``: recorded as the record's ``command``; ``save_imputed``: an ``.npz``
    path for the subset's imputed stays)."""
    X_out, t_out, y_out, prep = outer_stays(data_dir, subset, outer_limit)
    assert prep.labels is not None
    task = make_task(prep, "point", seed)
    cfg = None if config is None else {**GPVAE_CONFIG, **config}
    imputer = make_imputer(method, epochs, patience, seed, config=cfg)
    start = time.perf_counter()
    imputer.fit(task)
    fit_s = time.perf_counter() - start
    own = imputer.impute(prep.X, prep.times)
    pick = np.sort(np.concatenate([prep.train, prep.val]))
    if save_imputed is not None:
        np.savez_compressed(
            save_imputed,
            imputed=own,
            observed=~np.isnan(prep.X),
            labels=prep.labels,
            pick=pick,
            subset=subset,
            method=method if tag is None else f"{method}[{tag}]",
            seed=seed,
            epochs=int(imputer.epochs_run),
        )
    outer = downstream_auroc(imputer.impute(X_out, t_out), y_out)
    name = method if tag is None else f"{method}[{tag}]"
    record: dict[str, Any] = {
        "dataset": "physionet2012",
        "pattern": "outer",
        "method": name,
        "seed": seed,
        "subset": subset,
        "auroc_outer": outer["auroc"],
        "auroc_outer_folds": outer["auroc_folds"],
        "n_outer": len(X_out),
        "deaths_outer": int(y_out.sum()),
        "auroc_selection": selection_auroc(own[pick], prep.labels[pick], repeats),
        "n_selection": len(pick),
        "epochs": int(imputer.epochs_run),
        "best_epoch": int(getattr(imputer, "best_epoch", 0)),
        "fit_s": round(fit_s, 3),
        "settings": {
            **imputer.settings,
            "fit": "as imputation.py's PhysioNet-300 points cell (training split, "
            "validation selection)",
            "outer": f"stays {subset}.. of set-a, standardised with the subset's training "
            f"statistics; protocol classifier, stratified 5-fold CV (seed {CV_SEED})",
            "selection": f"training + validation stays of the subset; {repeats} x "
            f"stratified 5-fold CV (seed {CV_SEED})",
            "machine": machine_info(),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if command is not None:
        record["command"] = command
    results.add(record)
    print(
        f"{name} seed {seed}: AUROC outer {outer['auroc']:.4f} ({len(X_out)} stays), "
        f"selection {record['auroc_selection']:.4f}",
        flush=True,
    )
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", choices=METHODS, required=True)
    parser.add_argument("--seed", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--patience", type=int, default=DEFAULT_PATIENCE)
    parser.add_argument("--subset", type=int, default=SUBSET)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--data-dir", default=None, help="shared data dir (default GPVAE_DATA)")
    parser.add_argument("--config", default=None, help="gpvae: JSON replacing GPVAE_CONFIG's")
    parser.add_argument("--tag", default=None, help="record the method as METHOD[TAG]")
    parser.add_argument(
        "--save-imputed",
        type=Path,
        default=None,
        help="write the subset's imputed stays to this .npz (one seed only)",
    )
    args = parser.parse_args(argv)
    if args.save_imputed is not None and len(args.seed) != 1:
        parser.error("--save-imputed: expected one --seed")
    words = sys.argv[1:] if argv is None else argv
    # --save-imputed: an analysis output, not part of the record's identity
    command = record_command("downstream_outer.py", words, ("--save-imputed",))

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    results = ResultsFile(args.out)
    for seed in args.seed:
        run(
            args.method,
            seed,
            results,
            epochs=args.epochs,
            patience=args.patience,
            data_dir=args.data_dir,
            config=None if args.config is None else json.loads(args.config),
            tag=args.tag,
            subset=args.subset,
            command=command,
            save_imputed=args.save_imputed,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
