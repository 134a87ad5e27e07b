"""What each imputer hands the PhysioNet-300 mortality classifier, on the subset's training +
validation stays only (issue 15; the test stays and the stays outside the subset are not read).

Reads the imputed stays written by ``downstream_outer.py --save-imputed FILE.npz`` (one file per
method and seed) and reports, per file:

- ``selection``: the protocol's classifier on the training + validation stays, 20 x 5-fold
  (:func:`downstream_outer.selection_auroc`), as recorded in ``imputation_outer.json``;
- ``slope`` / ``corr``: at the missing entries of features observed elsewhere in the stay,
  the least-squares slope and the correlation of the imputation on the feature's linear
  interpolation between its observed neighbours (constant beyond the first or last one), per
  band of distance (steps) to the nearest observation: 1 means the imputation follows the
  interpolation, 0 that it ignores it;
- ``gaps_linear``: the selection AUROC with those entries replaced by the interpolation;
- ``never_mean``: with the entries of features never observed in the stay replaced by the
  training mean (about 0 in standardised units), as mean and linear imputation leave them;
- ``shrunk``: with every missing entry shrunk towards the training mean, the imputation's
  departure from it times ``exp(-(r - 1) / tau)`` at distance r (none left for
  never-observed features), per ``tau``.

Usage::

    python benchmarks/downstream_gaps.py gpvae_0=/tmp/gpvae_0.npz saits_2=/tmp/saits_2.npz \\
        [--repeats 20] [--tau 24 8 3 1] [--out FILE.json]

``--out`` writes the results with the command that made them (``make_tables.py`` renders
``benchmarks/results/imputation_gaps.json`` into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from downstream_outer import SELECTION_REPEATS, SUBSET, selection_auroc

__all__ = ["BANDS", "analyse", "distance_to_observed", "main", "shrink"]

BANDS = ((1, 1), (2, 3), (4, 8), (9, 16), (17, 10**6))
"""Bands of distance (steps) to the feature's nearest observation."""
FAR = 10**6


def distance_to_observed(observed: np.ndarray) -> np.ndarray:
    """(n, T, D) steps from each entry to the nearest observed step of its feature in its
    series (0 at observed entries, ``FAR`` or more where the feature is never observed)."""
    step = np.arange(observed.shape[1])[None, :, None]
    prev = np.maximum.accumulate(np.where(observed, step, -FAR), axis=1)
    nxt = np.minimum.accumulate(np.where(observed, step, 2 * FAR)[:, ::-1], axis=1)[:, ::-1]
    return np.minimum(step - prev, nxt - step)


def shrink(
    imputed: np.ndarray, observed: np.ndarray, tau: float, level: np.ndarray | float = 0.0
) -> np.ndarray:
    """Missing entries moved towards ``level`` (per feature, (D,)): ``level + w (imputed -
    level)`` with ``w = exp(-(r - 1) / tau)`` at distance r to the nearest observation (0
    where the feature is never observed); observed entries unchanged."""
    r = distance_to_observed(observed).astype(np.float64)
    w = np.where(r >= FAR, 0.0, np.exp(-(r - 1.0) / tau))
    return np.where(observed, imputed, level + w * (imputed - level))


def analyse(
    imputed: np.ndarray,
    observed: np.ndarray,
    labels: np.ndarray,
    pick: np.ndarray,
    interpolation: np.ndarray,
    level: np.ndarray,
    taus: Sequence[float] = (),
    repeats: int = SELECTION_REPEATS,
) -> dict[str, Any]:
    """The measures of the module docstring for one imputation of the subset (standardised
    units; ``interpolation``: linear imputation of the same stays; ``level``: (D,) the
    training means the baselines fall back to; only rows ``pick`` are scored).

    ``level`` must be the baselines' own means bit for bit, not 0: the classifier
    standardises every (step, feature) column, so a column holding 0 for some stays and a
    mean of 1e-16 for the others becomes an indicator of unit variance.
    """
    never = ~observed.any(axis=1, keepdims=True) & ~observed
    gaps = ~observed & ~never
    r = distance_to_observed(observed)

    def auroc(x: np.ndarray) -> float:
        return selection_auroc(x[pick], labels[pick], repeats)

    bands = []
    for lo, hi in BANDS:
        at = gaps & (r >= lo) & (r <= hi)
        at[np.setdiff1d(np.arange(len(at)), pick)] = False
        x, y = interpolation[at], imputed[at]
        slope = float(np.polyfit(x, y, 1)[0]) if len(x) > 2 else float("nan")
        corr = float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 else float("nan")
        bands.append({"distance": [lo, min(hi, observed.shape[1])], "entries": int(at.sum()),
                      "slope": slope, "corr": corr})  # fmt: skip
    return {
        "selection": auroc(imputed),
        "bands": bands,
        "gaps_linear": auroc(np.where(gaps, interpolation, imputed)),
        "never_mean": auroc(np.where(never, level, imputed)),
        "shrunk": {str(t): auroc(shrink(imputed, observed, t, level)) for t in taus},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", help="NAME=FILE.npz from downstream_outer.py")
    parser.add_argument("--repeats", type=int, default=SELECTION_REPEATS)
    parser.add_argument("--tau", type=float, nargs="*", default=[24.0, 8.0, 3.0, 1.0])
    parser.add_argument("--subset", type=int, default=SUBSET)
    parser.add_argument("--data-dir", default=None, help="shared data dir (default GPVAE_DATA)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    from _protocol import make_task, prepare

    from gpvae.app.baselines import feature_means, impute_linear

    prep = prepare("physionet2012", args.data_dir, args.subset)
    train = make_task(prep, "point", 0).X_train  # what the baselines' fallback reads
    interpolation = impute_linear(prep.X, prep.times, train_X=train)
    level = feature_means(train)
    records: list[dict[str, Any]] = []
    for item in args.files:
        name, _, path = item.partition("=")
        with np.load(os.fspath(path)) as saved:
            imputed, observed = saved["imputed"], saved["observed"]
            labels, pick = saved["labels"], saved["pick"]
            run = {k: saved[k].item() for k in ("method", "seed", "epochs") if k in saved}
            # the file's --subset (files written before it was saved: its number of stays)
            theirs = int(saved["subset"]) if "subset" in saved else len(observed)
        if not np.array_equal(observed, ~np.isnan(prep.X)):
            parser.error(
                f"{item}: expected the imputed stays of the first {args.subset} (--subset "
                f"{args.subset}), found "
                + (
                    f"a file of the first {theirs} stays (downstream_outer.py --subset "
                    f"{theirs}): give --subset {theirs}"
                    if theirs != args.subset
                    else f"other stays ({len(observed)} with another pattern of observed entries)"
                )
            )
        res = analyse(imputed, observed, labels, pick, interpolation, level, args.tau, args.repeats)
        records.append({"name": name, "file": path, **run, **res})
        bands = " ".join(
            f"{b['distance'][0]}-{b['distance'][1]}: {b['slope']:.2f}/{b['corr']:.2f}"
            for b in res["bands"]
        )
        shrunk = " ".join(f"tau {t}: {v:.4f}" for t, v in res["shrunk"].items())
        print(
            f"{name}: selection {res['selection']:.4f}; gaps -> linear {res['gaps_linear']:.4f};"
            f" never-observed -> mean {res['never_mean']:.4f}; shrunk {shrunk}\n"
            f"  slope/corr on the interpolation by distance {bands}",
            flush=True,
        )
    if args.out is not None:
        doc = {
            "command": "python benchmarks/downstream_gaps.py "
            + shlex.join(sys.argv[1:] if argv is None else argv),
            "subset": args.subset,
            "repeats": args.repeats,
            "n_selection": len(pick),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "records": records,
        }
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
