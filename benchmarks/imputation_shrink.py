"""What the mortality AUROC asks of an imputation, and what it costs in MAE (issue 15).

``downstream_gaps.py`` found that the downstream classifier (logistic regression on the
flattened 48 x 37 stays) scores higher when every missing entry is shrunk towards the
training mean with its distance to the nearest observation, for every imputer (its
``shrunk, tau`` columns, a what-if on 240 stays). This script asks whether gpvae should do
so: it fits gpvae exactly as ``imputation.py`` does for the points pattern (``GPVAE_CONFIG``,
the same seed, cap and patience), imputes, and for every shrink strength ``tau`` (hours)
scores

- the MAE on the hidden validation and test entries of the points pattern, with every
  imputed entry ``x`` at distance ``r`` hours from the nearest observation of its feature in
  its stay replaced by ``x * exp(-(r - 1) / tau)`` (0 is the training mean in standardised
  units; ``tau = inf`` is gpvae's own imputation);
- the protocol's downstream AUROC (``_protocol.downstream_auroc``) on every stay so shrunk;
- the same for one ``tau`` per feature chosen on the validation MAE (``val-chosen``): a
  rule gpvae could adopt without reading a label or a test entry;

- ``edges held``: every missing entry before the first or after the last observation of its
  feature in its stay set to the nearest observed value, as linear interpolation leaves it;
  ``edges held, val-chosen``: the same for the features whose hidden validation entries at
  the edges have the lower MAE so (``held_features`` in the record);

and does the same to linear interpolation (no fit). Run in the repository's environment:

    PYTHONPATH=src python benchmarks/imputation_shrink.py --seed 0 [--subset 300]

Each run appends one record to ``--out``.
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
from _protocol import ResultsFile, downstream_auroc, make_task, prepare
from imputation import DEFAULT_EPOCHS, DEFAULT_PATIENCE, GPVAEImputer, NaiveImputer

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "imputation_shrink.json"
TAUS = (np.inf, 48.0, 24.0, 12.0, 8.0, 4.0, 2.0, 1.0)


def distance(X: np.ndarray) -> np.ndarray:
    """(n, T, D) steps from each entry to the nearest observed entry of its feature in its
    series (0 at an observation; ``T`` or more for a feature never observed there)."""
    T = X.shape[1]
    obs = ~np.isnan(X)
    idx = np.arange(T)[None, :, None]
    far = 10 * T
    last = np.maximum.accumulate(np.where(obs, idx, -far), axis=1)
    nxt = np.minimum.accumulate(np.where(obs, idx, far)[:, ::-1], axis=1)[:, ::-1]
    return np.minimum(idx - last, nxt - idx).astype(np.float64)


def shrink(imputed: np.ndarray, X: np.ndarray, tau: np.ndarray | float) -> np.ndarray:
    """``imputed`` with each entry missing in ``X`` multiplied by ``exp(-(r - 1) / tau)``
    (``r``: :func:`distance`; ``tau`` a number or one per feature; inf: unchanged); the
    observed entries are kept."""
    tau = np.broadcast_to(np.asarray(tau, dtype=np.float64), (X.shape[2],))
    r = np.maximum(distance(X), 1.0)
    with np.errstate(divide="ignore"):
        rate = np.where(np.isfinite(tau), 1.0 / tau, 0.0)
    factor = np.exp(-(r - 1.0) * rate[None, None, :])
    return np.where(np.isnan(X), imputed * factor, imputed)


def edges(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, T, D) bool: the missing entries of ``X`` before the first or after the last
    observed entry of their feature in their series (the feature observed there), and the
    nearest observed value of that feature at them (NaN elsewhere)."""
    obs = ~np.isnan(X)
    T = X.shape[1]
    idx = np.arange(T)[None, :, None]
    first = np.where(obs.any(axis=1), obs.argmax(axis=1), T)[:, None, :]
    last = np.where(obs.any(axis=1), T - 1 - obs[:, ::-1].argmax(axis=1), -1)[:, None, :]
    before, after = (idx < first) & (first < T), (idx > last) & (last >= 0)
    at = np.where(before, first, np.where(after, last, 0))
    held = np.take_along_axis(np.nan_to_num(X), np.broadcast_to(at, X.shape), axis=1)
    where = before | after
    return where, np.where(where, held, np.nan)


def hold_edges(
    imputed: np.ndarray, X: np.ndarray, features: np.ndarray | None = None
) -> np.ndarray:
    """``imputed`` with the entries of :func:`edges` set to the nearest observed value of
    their feature (as linear interpolation does), for every feature or only where
    ``features`` (D,) is True; every other entry kept."""
    where, held = edges(X)
    if features is not None:
        where = where & np.asarray(features, dtype=bool)[None, None, :]
    return np.where(where, held, imputed)


def per_feature_hold(
    imputed: np.ndarray, X: np.ndarray, truth: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """(D,) bool: the features whose hidden entries at the edges (:func:`edges`) have a
    lower MAE held at the nearest observed value than as imputed (False where a feature has
    no such entry)."""
    where, held = edges(X)
    out = np.zeros(X.shape[2], dtype=bool)
    for j in range(X.shape[2]):
        m = mask[..., j] & where[..., j]
        if m.any():
            out[j] = mae(held[..., j], truth[..., j], m) < mae(imputed[..., j], truth[..., j], m)
    return out


def mae(imputed: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    return float(np.abs(imputed[mask] - truth[mask]).mean())


def per_feature_tau(
    imputed: np.ndarray, X: np.ndarray, truth: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """The ``tau`` of :data:`TAUS` with the lowest MAE on each feature's hidden entries
    (inf where a feature has none; the first of equals, so inf when shrinking does not help)."""
    out = np.full(X.shape[2], np.inf)
    for j in range(X.shape[2]):
        m = mask[..., j]
        if not m.any():
            continue
        errs = [mae(shrink(imputed, X, t)[..., j], truth[..., j], m) for t in TAUS]
        out[j] = TAUS[int(np.argmin(errs))]
    return out


def score(method: str, imputer: Any, prep: Any, task: Any) -> dict[str, Any]:
    """MAE (validation, test) and AUROC per shrink strength of one fitted imputer."""
    val = imputer.impute(task.X_val, task.times_val)
    test = imputer.impute(task.X_test, task.times_test)
    full = imputer.impute(prep.X, prep.times)
    chosen = per_feature_tau(val, task.X_val, task.X_val_ori, task.val_mask)
    rows = []
    for label, tau in [*((str(t), t) for t in TAUS), ("val-chosen", chosen)]:
        rows.append(
            {
                "tau": label,
                "val_mae": mae(shrink(val, task.X_val, tau), task.X_val_ori, task.val_mask),
                "test_mae": mae(shrink(test, task.X_test, tau), task.X_test_ori, task.test_mask),
                **downstream_auroc(shrink(full, prep.X, tau), prep.labels),
            }
        )
    held = per_feature_hold(val, task.X_val, task.X_val_ori, task.val_mask)
    for label, features in (("edges held", None), ("edges held, val-chosen", held)):
        rows.append(
            {
                "tau": label,
                "val_mae": mae(
                    hold_edges(val, task.X_val, features), task.X_val_ori, task.val_mask
                ),
                "test_mae": mae(
                    hold_edges(test, task.X_test, features), task.X_test_ori, task.test_mask
                ),
                **downstream_auroc(hold_edges(full, prep.X, features), prep.labels),
            }
        )
    return {
        "method": method,
        "rows": rows,
        "chosen_tau": [float(t) for t in chosen],
        "held_features": [bool(h) for h in held],
    }


class ShrinkResults(ResultsFile):
    KEY = ("method", "seed", "subset")


def table(records: Sequence[dict[str, Any]]) -> str:
    """Per data set (all stays, or the first N), method and ``tau``: the mean over the seeds
    of the test MAE, the validation MAE and the AUROC."""
    lines = [
        "| stays | method | seeds | tau (h), or the edges rule | val MAE | test MAE | AUROC |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    groups: dict[tuple[Any, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["subset"] or 0, r["method"]), []).append(r)
    for (subset, method), recs in sorted(groups.items(), key=lambda kv: (kv[0][0] != 0, kv[0])):
        recs = sorted(recs, key=lambda r: r["seed"])
        seeds = ", ".join(str(r["seed"]) for r in recs)
        for k, row in enumerate(recs[0]["rows"]):
            vals = [[r["rows"][k][key] for r in recs] for key in ("val_mae", "test_mae", "auroc")]
            stays = f"first {subset}" if subset else "all 4,000"
            lines.append(
                f"| {stays} | {method} | {seeds} | {row['tau']} | "
                + " | ".join(f"{np.mean(v):.4f}" for v in vals)
                + " |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, nargs="+", default=[0])
    p.add_argument("--subset", type=int, default=None, help="the first N stays only")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    p.add_argument("--patience", type=int, default=DEFAULT_PATIENCE)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--table", action="store_true", help="print the table of --out and stop")
    p.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--marker", default=None, help="with --table: write it between these markers")
    args = p.parse_args(argv)
    if args.table:
        from anomaly_table import write_region

        text = table(ShrinkResults(args.out).records)
        print(text)
        if args.marker is not None:
            write_region(
                Path(args.docs), text, f"<!-- {args.marker} -->", f"<!-- /{args.marker} -->"
            )
        return 0
    command = "python benchmarks/imputation_shrink.py " + " ".join(
        a for a in (sys.argv[1:] if argv is None else argv)
    )
    store = ShrinkResults(args.out)
    prep = prepare("physionet2012", args.data_dir, subset=args.subset)
    for seed in args.seed:
        task = make_task(prep, "point", seed)
        fits: list[tuple[str, Any]] = [("linear", NaiveImputer("linear"))]
        fits.append(("gpvae", GPVAEImputer(args.epochs, args.patience, seed)))
        for method, imputer in fits:
            t0 = time.perf_counter()
            imputer.fit(task)
            rec = score(method, imputer, prep, task)
            rec.update(
                seed=seed,
                subset=args.subset,
                epochs_run=imputer.epochs_run,
                best_epoch=getattr(imputer, "best_epoch", None),
                wall_s=time.perf_counter() - t0,
                command=command,
            )
            store.add(rec)
            for row in rec["rows"]:
                print(
                    f"{method} seed {seed} tau {row['tau']:>10}: val MAE {row['val_mae']:.4f} "
                    f"test MAE {row['test_mae']:.4f} AUROC {row['auroc']:.4f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
