"""The imputation benchmark protocol, shared by every method: data, splits, masks, metrics.

Everything here is method-agnostic, so that ours, the naive baselines and the PyPOTS peers
see exactly the same arrays (``DESIGN.md``, "Benchmark protocols"):

- ``prepare``: load a data set, split it (PhysioNet 2012: seeded 64/16/20 split of the 4,000
  stays with the fixed ``SPLIT_SEED``; BeijingAir: 24-step windows of the 132-feature hourly
  series, chronological 60/20/20) and standardise every feature with the mean and standard
  deviation of the *observed training* entries (a constant feature gets std 1).
- ``make_task``: hide observed validation and test entries with one pattern, ``"point"``
  (MCAR, 10% of the observed entries) or ``"block"`` (runs of 5-24 steps of one feature until
  10% of the observed entries are hidden). The masks depend on the run seed, the pattern and
  the split (validation and test get independent masks). Training data are never masked.
- ``score``: MAE and MSE over the hidden entries, in standardised units.
- ``downstream_auroc``: in-hospital death AUROC of a logistic regression on the flattened
  imputed series, stratified 5-fold cross-validation (folds fixed by ``CV_SEED``).
- ``ResultsFile``: the JSON list of records, resumable, rewritten atomically per record.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpvae.datasets import (
    chronological_split,
    hidden_rate,
    hide_blocks,
    hide_points,
    load_beijing_air,
    load_physionet2012,
    make_windows,
    random_split,
)

__all__ = [
    "BLOCK_LENGTHS",
    "CV_SEED",
    "DATASETS",
    "HIDE_RATE",
    "PATTERNS",
    "SPLIT_SEED",
    "Prepared",
    "ResultsFile",
    "Task",
    "coverage",
    "downstream_auroc",
    "downstream_predictions",
    "machine_info",
    "make_task",
    "prepare",
    "score",
]

DATASETS = ("physionet2012", "beijing_air")
PATTERNS = ("point", "block")
HIDE_RATE = 0.10
"""Fraction of the observed validation / test entries hidden by either pattern."""
BLOCK_LENGTHS = (5, 24)
"""Shortest and longest block, in steps."""
SPLIT_SEED = 0
"""Seed of the PhysioNet 2012 train/val/test split: fixed, the same for every run seed."""
CV_SEED = 0
"""Seed of the stratified 5-fold assignment of the downstream task: fixed for every run."""
_PATTERN_CODE = {"point": 1, "block": 2}
_SPLIT_CODE = {"val": 1, "test": 2}


@dataclass
class Prepared:
    """A standardised data set with its train / validation / test split.

    Shapes: n series, T steps, D features.

    Attributes:
        dataset: ``"physionet2012"`` or ``"beijing_air"``.
        X: (n, T, D) float64 standardised values, NaN where not observed in the data.
        times: (n, T) float64 times in hours.
        train, val, test: int64 indices into the n series.
        labels: (n,) int64 outcome (PhysioNet in-hospital death) or None.
        mean, std: (D,) training statistics used to standardise.
        features: the D feature names.
        info: how the data were built (for the records and the docs).
    """

    dataset: str
    X: np.ndarray
    times: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    labels: np.ndarray | None
    mean: np.ndarray
    std: np.ndarray
    features: list[str]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Task:
    """One missingness pattern applied to the validation and test splits.

    Attributes:
        pattern: ``"point"`` or ``"block"``.
        seed: the run seed that drew the masks.
        X_train: (n_train, T, D) training series, nothing hidden.
        X_val, X_test: (n, T, D) inputs with the hidden entries set to NaN.
        X_val_ori, X_test_ori: (n, T, D) the same series before hiding.
        val_mask, test_mask: (n, T, D) bool, True exactly at the hidden entries.
        times_train, times_val, times_test: (n, T) times.
    """

    pattern: str
    seed: int
    X_train: np.ndarray
    X_val: np.ndarray
    X_val_ori: np.ndarray
    val_mask: np.ndarray
    X_test: np.ndarray
    X_test_ori: np.ndarray
    test_mask: np.ndarray
    times_train: np.ndarray
    times_val: np.ndarray
    times_test: np.ndarray

    @property
    def hidden_rates(self) -> dict[str, float]:
        """Achieved fraction of hidden entries among the observed ones, per split."""
        return {
            "val": hidden_rate(self.X_val_ori, self.val_mask),
            "test": hidden_rate(self.X_test_ori, self.test_mask),
        }


def _standardise(X: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardise with the observed training entries; a constant feature keeps std 1."""
    Xtr = X[train]
    observed = ~np.isnan(Xtr)
    counts = observed.sum(axis=(0, 1))
    mean = np.where(counts > 0, np.nansum(Xtr, axis=(0, 1)) / np.maximum(counts, 1), 0.0)
    sq = np.nansum((Xtr - mean) ** 2, axis=(0, 1)) / np.maximum(counts, 1)
    std = np.sqrt(sq)
    std = np.where((counts > 0) & (std > 0), std, 1.0)
    return (X - mean) / std, mean, std


def _subset_rows(n: int, subset: int, start: int) -> slice:
    """Rows ``start`` to ``start + subset - 1`` of ``n`` series (from 0: the first ``subset``,
    all when there are fewer); a ValueError naming the argument when a later block does not
    lie inside them."""
    if subset < 1:
        raise ValueError(f"subset: expected at least 1 series, found {subset}")
    if start and (start < 0 or start + subset > n):
        raise ValueError(
            f"subset_start: expected 0 to {n - subset} (a block of {subset} series inside "
            f"the {n}), found {start}"
        )
    return slice(start, start + subset)


def prepare(
    dataset: str,
    data_dir: str | os.PathLike[str] | None = None,
    subset: int | None = None,
    subset_start: int = 0,
) -> Prepared:
    """Load, split and standardise a data set following the protocol.

    Args:
        dataset: ``"physionet2012"`` or ``"beijing_air"``.
        data_dir: the shared data directory (None: ``GPVAE_DATA`` or ``../shared/data``).
        subset: keep only the first ``subset`` series (stays, or windows in time order) before
            splitting (smoke runs, screens and reduced-scale runs). None keeps all.
        subset_start: with ``subset``, keep series ``subset_start`` to ``subset_start +
            subset - 1`` instead of the first ones (a reduced-scale run on another block of
            series, split and standardised exactly as the first block is).

    Returns:
        The prepared data set.
    """
    if dataset == "physionet2012":
        data = load_physionet2012(data_dir)
        X = np.asarray(data.X, dtype=np.float64)
        times = np.asarray(data.times, dtype=np.float64)
        labels = data.labels
        if subset is not None:
            keep = _subset_rows(len(X), subset, subset_start)
            X, times = X[keep], times[keep]
            labels = None if labels is None else labels[keep]
        train, val, test = random_split(len(X), (0.64, 0.16, 0.20), seed=SPLIT_SEED)
        info: dict[str, Any] = {
            "split": f"random 64/16/20 of stays, seed {SPLIT_SEED}",
            "steps": "48 hourly steps (mean within the hour)",
            "features": "37 time-varying parameters, raw values (no plausibility filter)",
        }
    elif dataset == "beijing_air":
        data = load_beijing_air(data_dir)
        X, times = make_windows(np.asarray(data.X, dtype=np.float64), data.times, 24, 24)
        labels = None
        if subset is not None:
            keep = _subset_rows(len(X), subset, subset_start)
            X, times = X[keep], times[keep]
        train, val, test = chronological_split(len(X), (0.6, 0.2, 0.2))
        info = {
            "split": "chronological 60/20/20 of non-overlapping 24-step windows",
            "steps": "24 hourly steps per window",
            "features": "12 stations x 11 features = 132",
        }
    else:
        raise ValueError(f"dataset: expected one of {DATASETS}, found {dataset!r}")
    if subset is None and subset_start:
        raise ValueError(f"subset_start: expected 0 without a subset, found {subset_start}")
    if subset_start:
        info["subset_start"] = subset_start
    Xs, mean, std = _standardise(X, train)
    info.update(
        {
            "n_series": len(X),
            "n_train": len(train),
            "n_val": len(val),
            "n_test": len(test),
            "standardise": "mean/std of observed training entries (std 1 if constant)",
        }
    )
    return Prepared(
        dataset=dataset,
        X=Xs,
        times=times,
        train=train,
        val=val,
        test=test,
        labels=labels,
        mean=mean,
        std=std,
        features=list(data.features),
        info=info,
    )


def _hide(X: np.ndarray, pattern: str, seed: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Apply one pattern with a generator seeded by (seed, pattern, split)."""
    rng = np.random.default_rng([seed, _PATTERN_CODE[pattern], _SPLIT_CODE[split]])
    if pattern == "point":
        return hide_points(X, HIDE_RATE, rng)
    if pattern == "block":
        return hide_blocks(X, HIDE_RATE, rng, min_len=BLOCK_LENGTHS[0], max_len=BLOCK_LENGTHS[1])
    raise ValueError(f"pattern: expected one of {PATTERNS}, found {pattern!r}")


def make_task(prep: Prepared, pattern: str, seed: int) -> Task:
    """Hide entries of the validation and test splits with one pattern.

    Args:
        prep: the prepared data set.
        pattern: ``"point"`` or ``"block"``.
        seed: the run seed; with the pattern and the split it seeds the mask.

    Returns:
        The task (training data untouched).
    """
    X_val_ori, X_test_ori = prep.X[prep.val], prep.X[prep.test]
    X_val, val_mask = _hide(X_val_ori, pattern, seed, "val")
    X_test, test_mask = _hide(X_test_ori, pattern, seed, "test")
    return Task(
        pattern=pattern,
        seed=seed,
        X_train=prep.X[prep.train],
        X_val=X_val,
        X_val_ori=X_val_ori,
        val_mask=val_mask,
        X_test=X_test,
        X_test_ori=X_test_ori,
        test_mask=test_mask,
        times_train=prep.times[prep.train],
        times_val=prep.times[prep.val],
        times_test=prep.times[prep.test],
    )


def score(imputed: np.ndarray, X_ori: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """MAE and MSE over the hidden entries (standardised units).

    Args:
        imputed: (n, T, D) imputation of the masked input.
        X_ori: (n, T, D) values before hiding.
        mask: (n, T, D) bool, the hidden entries.

    Returns:
        ``{"mae": ..., "mse": ..., "n_hidden": ...}``.

    Raises:
        ValueError: shapes differ, or the imputation is not finite at a hidden entry.
    """
    if imputed.shape != X_ori.shape or mask.shape != X_ori.shape:
        raise ValueError(
            f"imputed: expected shape {X_ori.shape} (and mask alike), found {imputed.shape}"
        )
    pred, true = imputed[mask], X_ori[mask]
    if not np.isfinite(pred).all():
        raise ValueError("imputed: expected finite values at every hidden entry, found NaN/inf")
    err = pred.astype(np.float64) - true
    return {
        "mae": float(np.abs(err).mean()),
        "mse": float((err**2).mean()),
        "n_hidden": int(mask.sum()),
    }


def coverage(interval: tuple[np.ndarray, np.ndarray], X_ori: np.ndarray, mask: np.ndarray) -> float:
    """Share of the hidden entries inside their (lower, upper) interval.

    Args:
        interval: (lower, upper), each (n, T, D).
        X_ori: (n, T, D) values before hiding.
        mask: (n, T, D) bool, the hidden entries.
    """
    lo, hi = interval
    true = X_ori[mask]
    return float(((lo[mask] <= true) & (true <= hi[mask])).mean())


def _downstream_parts(folds: int) -> tuple[Any, Any]:
    """The protocol's classifier (StandardScaler + LogisticRegression(max_iter=5000)) and its
    stratified folds (shuffled with ``CV_SEED``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    return model, StratifiedKFold(n_splits=folds, shuffle=True, random_state=CV_SEED)


def _flat(imputed: np.ndarray) -> np.ndarray:
    flat = imputed.reshape(len(imputed), -1)
    if not np.isfinite(flat).all():
        raise ValueError("imputed: expected complete series for the downstream task, found NaN")
    return flat


def downstream_auroc(imputed: np.ndarray, labels: np.ndarray, folds: int = 5) -> dict[str, Any]:
    """In-hospital death AUROC of logistic regression on flattened imputed series.

    Pipeline: flatten (n, T * D), standardise (``StandardScaler`` fitted inside each training
    fold), ``LogisticRegression(max_iter=5000)`` (L2, C=1, lbfgs); stratified ``folds``-fold
    CV with shuffling fixed by ``CV_SEED``; the AUROC is the mean over folds.

    Args:
        imputed: (n, T, D) complete series (no NaN).
        labels: (n,) binary labels.
        folds: number of folds.

    Returns:
        ``{"auroc": mean, "auroc_folds": [per fold]}``.
    """
    from sklearn.model_selection import cross_val_score

    model, cv = _downstream_parts(folds)
    scores = cross_val_score(model, _flat(imputed), labels, cv=cv, scoring="roc_auc")
    return {"auroc": float(np.mean(scores)), "auroc_folds": [float(s) for s in scores]}


def downstream_predictions(
    imputed: np.ndarray, labels: np.ndarray, folds: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """The classifier of :func:`downstream_auroc` on the same folds: (n,) out-of-fold death
    probabilities (each stay's from the model fitted on the other folds) and (n,) the fold of
    each stay. The AUROC of each fold's predictions is :func:`downstream_auroc`'s fold."""
    model, cv = _downstream_parts(folds)
    flat = _flat(imputed)
    prob = np.empty(len(flat))
    fold = np.empty(len(flat), dtype=np.int64)
    for k, (train, test) in enumerate(cv.split(flat, labels)):
        fitted = model.fit(flat[train], labels[train])
        prob[test] = fitted.predict_proba(flat[test])[:, 1]
        fold[test] = k
    return prob, fold


def record_command(script: str, argv: Sequence[str], drop: Sequence[str]) -> str:
    """The command line a record names, ``python benchmarks/SCRIPT ARGS``, with the options
    ``drop`` (and their values, in either spelling) left out: this machine's paths or
    analysis outputs that are not part of the record's identity."""
    words = list(argv)
    for flag in drop:
        while flag in words:
            at = words.index(flag)
            del words[at : at + 2]
        words = [w for w in words if not w.startswith(flag + "=")]
    return f"python benchmarks/{script} " + shlex.join(words)


def machine_info() -> dict[str, Any]:
    """Where a record was produced."""
    import torch

    from gpvae import settings

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        # The vector instructions torch's CPU kernels use: their round-off differs between
        # them, so a fit retraces its record bit for bit only on the same kind of machine.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        # gpvae's struct-of-arrays kernel precision (float32 by default since session 17)
        "float32_kernel": bool(settings.FUSED_SOA_FLOAT32),
    }


def _clean(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None (null)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def records_text(records: list[dict[str, Any]]) -> str:
    """A JSON list with one compact record per line: a record's change is one line of a
    diff, and a campaign of hundreds of records stays small (indented, the anomaly records
    passed 1 MiB)."""
    lines = ",\n".join(json.dumps(r, separators=(",", ":"), allow_nan=False) for r in records)
    return "[\n" + lines + "\n]\n" if records else "[]\n"


class ResultsFile:
    """A JSON list of records, read once and rewritten atomically after every append."""

    KEY = ("dataset", "pattern", "method", "seed", "subset", "subset_start")
    """A record's identity; ``subset`` (the first N series, reduced-scale runs) is absent,
    i.e. None, for runs on the whole data set; ``subset_start`` (where the block of series
    starts) is absent for the first block."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []
        if self.path.is_file():
            text = self.path.read_text()
            self.records = json.loads(text) if text.strip() else []

    def _key(self, record: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(record.get(k) for k in self.KEY)

    def has(
        self,
        dataset: str,
        pattern: str,
        method: str,
        seed: int,
        subset: int | None = None,
        subset_start: int | None = None,
    ) -> bool:
        """True when a record for this (dataset, pattern, method, seed, subset,
        subset_start) exists (``subset_start`` None or 0: the first block)."""
        key = (dataset, pattern, method, seed, subset, subset_start or None)
        return any(self._key(r) == key for r in self.records)

    def add(self, record: dict[str, Any]) -> None:
        """Append (replacing a record with the same key) and rewrite the file atomically."""
        self.add_many([record])

    def add_many(self, records: list[dict[str, Any]]) -> None:
        """Append every record (each replacing a record with the same key) and rewrite the
        file once, atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock.tmp")
        with open(lock, "w") as lock_fh:
            fcntl.flock(lock_fh, fcntl.LOCK_EX)  # concurrent runs append one at a time
            self._add_locked(records)

    def _add_locked(self, records: list[dict[str, Any]]) -> None:
        # Re-read first: another run may have appended since this one started.
        if self.path.is_file():
            text = self.path.read_text()
            self.records = json.loads(text) if text.strip() else []
        for record in records:
            key = self._key(record)
            self.records = [r for r in self.records if self._key(r) != key]
            self.records.append(_clean(record))
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(records_text(self.records))
            os.chmod(tmp, 0o644)  # mkstemp creates the file private
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
