"""The score variant chosen by cross-validation over a collection's series, for gpvae and
the N(0, I) VAE alike, from the entry scores that their fits dumped.

``benchmarks/anomaly.py --dump DIR`` saves, for every series and model, the entry scores of
one fit on the normal and the scored part: the held-out predictive densities (``k5``;
``k5b8`` with a ``@b8`` variant; ``c8`` with a causal one) and the prior-alone scores
(``prior``); the candidates need all four, which ``--variants`` :data:`DUMP_VARIANTS` give
(``C,C@b8,c8ph_norm_s32_b512`` with ``C`` the chosen variant). Until session 30 the score
variant was chosen on six development series, three of them SMAP/MSL, which did not
predict the held-out channels. Here every candidate of
:data:`CANDIDATES` (each with the chosen variant's pipeline, ``anomaly.CHOSEN``: prior
weight times the spread ratio, tail scale, the largest feature, the trailing mean and the
drift baseline) is scored on every series, and a candidate is chosen per model and
collection by **repeated 2-fold cross-validation over the series**: in each random
half-split, the candidate with the largest mean VUS-PR on one half is scored on the other
half, and the other way round; the split's value is the out-of-fold mean over all series.
Both models get the same candidates and the same splits.

Two steps (and the tables by thirds):

    # 1. every candidate's metrics for the run that the best of --restarts restarts keeps
    #    (lowest val_score_best), per series and model (resumable; one JSON row each)
    PYTHONPATH=src .venv-bench/bin/python benchmarks/anomaly_channel_cv.py \\
        --dumps 'runs/dump_s{seed}' --records gpvae_smap_msl.json ... \\
        --tag-prefix s30_seed --seeds 0-2 --restarts 3 --models gpvae --out rows_gpvae.json
    # 2. the tables (the cross-validation over series)
    python benchmarks/anomaly_channel_cv.py --table rows_gpvae.json rows_vae.json
    # the chosen variant's table by thirds of the series: by the labelled anomalies' mean
    # length, or by the learned lengthscale of gpvae's kept runs (records with kernels)
    python benchmarks/anomaly_channel_cv.py --table rows_gpvae.json rows_vae.json \\
        --by-length ../shared/data
    python benchmarks/anomaly_channel_cv.py --table rows_gpvae.json rows_vae.json \\
        --by-lengthscale kernels.json

The chosen variant's own score of each fit is recomputed from its dump and checked against
its record (VUS-PR to 1e-4: dumps written before session 31 are float32), so the dumps are
known to be those of the recorded fits.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anomaly as A  # sibling scripts
from anomaly_ensemble import (
    add_dump_options,
    chosen_step_score,
    dump_path,
    load_dump,
    read_records,
    seed_range,
)
from anomaly_seeds import best_of, cap_limited
from anomaly_table import collection

from gpvae.estimator.anomaly import runs_of

#: name -> (held-out entries' key or None, prior weight; math.inf: the prior alone). The
#: first is the chosen variant (``anomaly.CHOSEN``), which wins ties.
CANDIDATES: dict[str, tuple[str | None, float]] = {
    "k5+0.5P": ("k5", 0.5),
    "k5": ("k5", 0.0),
    "k5+2P": ("k5", 2.0),
    "b8+0.5P": ("k5b8", 0.5),
    "b8+2P": ("k5b8", 2.0),
    "c8+0.5P": ("c8", 0.5),
    "c8+2P": ("c8", 2.0),
    "P": (None, math.inf),
}
MODELS = ("gpvae", "vae")
#: The ``anomaly.py --variants`` whose fits dump the entries the candidates need: the chosen
#: variant (``k5`` and ``prior``), it with ``@b8`` (``k5b8``) and a causal one (``c8``).
DUMP_VARIANTS = (A.CHOSEN, f"{A.CHOSEN}{A.BLOCK}8", "c8ph_norm_s32_b512")


def check_dump(dump: dict[str, np.ndarray], path: Path) -> None:
    """Refuse (SystemExit) a dump without the entries of every candidate, naming the
    missing ones and the ``anomaly.py --variants`` that dump them all."""
    keys = sorted({key or "" for key, _ in CANDIDATES.values()} - {""} | {"prior"})
    missing = [k for k in keys if f"{k}_train" not in dump or f"{k}_test" not in dump]
    if missing:
        need = [n for n, (key, w) in CANDIDATES.items()
                if key in missing or ("prior" in missing and w > 0)]  # fmt: skip
        raise SystemExit(
            f"{path}: expected the entries {', '.join(keys)}, found none of "
            f"{', '.join(missing)} (needed by the candidates {', '.join(need)}): dump the "
            f"fits with anomaly.py --variants {','.join(DUMP_VARIANTS)} --dump DIR"
        )


def candidate_score(dump: dict[str, np.ndarray], name: str, far: float, samples: int) -> np.ndarray:
    """A candidate's step score of the scored part, its profile from the normal part (the
    chosen variant's pipeline, ``anomaly_ensemble.chosen_step_score``)."""
    from gpvae.estimator.anomaly import combine_prior, spread_ratio

    key, weight = CANDIDATES[name]
    p_tr, p_te = dump["prior_train"], dump["prior_test"]
    if key is None:
        e_tr, e_te = p_tr, p_te
    else:
        e_tr, e_te = dump[f"{key}_train"], dump[f"{key}_test"]
        if weight > 0:
            ratio = spread_ratio([e_tr], [p_tr])
            e_tr, e_te = (combine_prior([e], [p], weight, ratio)[0] for e, p in
                          ((e_tr, p_tr), (e_te, p_te)))  # fmt: skip
    return chosen_step_score(e_tr, e_te, far, samples)


def evaluate(args: argparse.Namespace) -> int:
    """Step 1: every candidate's metrics for the run that each group of ``--restarts``
    consecutive seeds keeps (the lowest ``val_score_best``, label-free; anomaly_seeds'
    best of K), per series and model with a dump and a record for every seed."""
    recs = read_records(args.records, args.tag_prefix)
    runs: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = {}
    for (dataset, series, model, seed), rec in recs.items():
        if model in args.models and seed in args.seeds and dataset in args.datasets:
            runs.setdefault((dataset, series, model), {})[seed] = rec
    seeds = sorted(args.seeds)
    k = args.restarts
    groups = [seeds[i : i + k] for i in range(0, len(seeds) - k + 1, k)]
    out: list[dict[str, Any]] = []
    if Path(args.out).exists():
        out = json.loads(Path(args.out).read_text())
    done = {(r["dataset"], r["series"], r["model"], r["group"]) for r in out}
    for (dataset, series, model), by in sorted(runs.items()):
        for g, members in enumerate(groups):
            if (dataset, series, model, g) in done or not all(s in by for s in members):
                continue
            rec = best_of([by[s] for s in members], k)[0]
            seed = rec["config"]["seed"]
            refit = rec["tag"].endswith(A.RERUN_SUFFIX)
            name = f"{dataset}_{series.replace('/', '__')}_{model}.npz"
            path = dump_path(args.dumps, seed, refit) / name
            if not path.exists():
                continue
            dump = load_dump(path)
            check_dump(dump, path)
            labels, window = dump["labels"], rec["sliding_window"]
            metrics = {c: A.metrics(candidate_score(dump, c, args.far, args.samples), labels,
                                    window) for c in CANDIDATES}  # fmt: skip
            first = metrics[next(iter(CANDIDATES))]["vus_pr"]
            if not math.isclose(first, rec["vus_pr"], abs_tol=1e-4):
                raise SystemExit(
                    f"{name} seed {seed}: VUS-PR {first} from the dump, {rec['vus_pr']} in "
                    "the record: not the recorded fit"
                )
            row = {
                "dataset": dataset,
                "series": series,
                "model": model,
                "group": g,
                "seeds": members,
                "seed": seed,
                "tag": rec["tag"],
                "member_val_score": [by[s].get("val_score_best") for s in members],
                "member_vus_pr": [by[s]["vus_pr"] for s in members],
                "config": {k: rec["config"][k] for k in ("epochs", "patience")},
                "epochs_run": rec.get("epochs_run"),
                "best_epoch": rec.get("best_epoch"),
                "vus_pr": {c: m["vus_pr"] for c, m in metrics.items()},
                "auc_pr": {c: m["auc_pr"] for c, m in metrics.items()},
                "auc_roc": {c: m["auc_roc"] for c, m in metrics.items()},
            }
            out.append(row)
            Path(args.out).write_text(json.dumps(out, indent=1))
            cols = " ".join(f"{c} {v:.3f}" for c, v in row["vus_pr"].items())
            print(f"{dataset:5s} {series:45s} {model:5s} g{g} s{seed} {cols}", flush=True)
    return 0


def restart_matrix(
    rows: Sequence[dict[str, Any]],
) -> dict[tuple[str, str], tuple[list[str], np.ndarray, list[dict[str, Any]]]]:
    """(collection, model) -> (series, (S, C) VUS-PR, the kept runs): per series, the mean
    over its groups' kept runs. Only series that both models have, with the same groups,
    are kept."""
    by: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["dataset"], r["series"], r["model"]), {})[r["group"]] = r
    names = list(CANDIDATES)
    cells: dict[tuple[str, str], tuple[list[str], list[np.ndarray], list[dict[str, Any]]]] = {}
    for dataset, series, model in sorted(by):
        groups = [set(by.get((dataset, series, m), {})) for m in MODELS]
        if not groups[0] or groups[0] != groups[1]:
            continue
        kept = [by[(dataset, series, model)][g] for g in sorted(groups[0])]
        labels, values, runs = cells.setdefault((collection(dataset), model), ([], [], []))
        labels.append(series)
        values.append(np.mean([[k["vus_pr"][c] for c in names] for k in kept], axis=0))
        runs.extend(kept)
    return {key: (s, np.vstack(v), k) for key, (s, v, k) in cells.items()}


def cross_validate(values: np.ndarray, splits: Sequence[np.ndarray]) -> tuple[np.ndarray, list]:
    """Each split's out-of-fold mean (the candidate chosen on one half scored on the
    other, both ways) and the pair of choices (first of equals: the first candidate)."""
    n = len(values)
    oof, chosen = [], []
    for perm in splits:
        a, b = perm[: n // 2], perm[n // 2 :]
        ca, cb = int(np.argmax(values[a].mean(0))), int(np.argmax(values[b].mean(0)))
        oof.append((values[b, ca].sum() + values[a, cb].sum()) / n)
        chosen.append((ca, cb))
    return np.asarray(oof), chosen


def table(rows: Sequence[dict[str, Any]], n_splits: int, seed: int) -> str:
    """The markdown tables: per collection, each model's chosen variant (CV) against the
    development-chosen one on the same fits; and every candidate's mean."""
    cells = restart_matrix(rows)
    names = list(CANDIDATES)
    lines = [
        "| data set | series | model | chosen on the development series (k5+0.5P) "
        "| chosen by 2-fold CV over series: mean (sd) over splits | most chosen "
        "| gpvae - VAE, CV | splits with gpvae above | epochs run (best), kept runs "
        "| cap-limited |",
        "| --- | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for coll in sorted({c for c, _ in cells}):
        series = cells[(coll, "gpvae")][0]
        assert series == cells[(coll, "vae")][0]
        rng = np.random.default_rng(seed)
        splits = [rng.permutation(len(series)) for _ in range(n_splits)]
        res = {m: cross_validate(cells[(coll, m)][1], splits) for m in MODELS}
        diff = res["gpvae"][0] - res["vae"][0]
        for m in MODELS:
            _, values, kept = cells[(coll, m)]
            oof, chosen = res[m]
            counts = np.bincount(np.ravel(chosen), minlength=len(names))
            top = int(np.argmax(counts))
            run = np.mean([k["epochs_run"] for k in kept])
            best = np.mean([k["best_epoch"] for k in kept])
            capped = sum(cap_limited(k) for k in kept)
            lines.append(
                f"| {coll} | {len(series)} | {m} | {values[:, 0].mean():.3f} "
                f"| {oof.mean():.3f} ({oof.std():.3f}) "
                f"| {names[top]} ({counts[top] / counts.sum():.0%}) "
                + (f"| {diff.mean():+.4f} | {np.mean(diff > 0):.0%} " if m == "gpvae" else "| | ")
                + f"| {run:.0f} ({best:.0f}) | {capped} of {len(kept)} |"
            )
    lines += ["", "| data set | model | " + " | ".join(names) + " |",
              "| --- | --- |" + " ---: |" * len(names)]  # fmt: skip
    for (coll, m), (_, values, _) in sorted(cells.items()):
        lines.append(f"| {coll} | {m} | " + " | ".join(f"{v:.3f}" for v in values.mean(0)) + " |")
    return "\n".join(lines) + "\n"


def mean_run_length(labels: np.ndarray) -> float:
    """The mean length (steps) of the labelled anomalies: the runs of non-zero labels."""
    runs = runs_of(labels)
    return float(np.mean([b - a + 1 for a, b in runs])) if runs else math.nan


def by_thirds(
    rows: Sequence[dict[str, Any]], values: dict[str, float], what: str, fmt: str = ".0f"
) -> str:
    """The markdown table of the variant chosen on the development series (the first
    candidate) per third of each collection's series, ranked by ``values`` (one per series,
    ``what`` it is)."""
    cells = restart_matrix(rows)
    lines = [
        f"| data set | third by {what} | range | series "
        "| gpvae | VAE | gpvae - VAE | gpvae ahead / behind by > 0.01 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for coll in sorted({c for c, _ in cells}):
        series, gp, _ = cells[(coll, "gpvae")]
        vae = cells[(coll, "vae")][1]
        value = np.array([values.get(s, math.nan) for s in series], dtype=float)
        known = ~np.isnan(value)
        third = np.searchsorted(np.quantile(value[known], [1 / 3, 2 / 3]), value, side="right")
        third[~known] = -1  # no value (e.g. no labelled anomaly): a row of its own
        for k, name in ((0, "lowest"), (1, "middle"), (2, "highest"), (-1, "no value")):
            m = third == k
            if k == -1 and not m.any():
                continue
            d = gp[m, 0] - vae[m, 0]
            span = f"{value[m].min():{fmt}}-{value[m].max():{fmt}}" if k >= 0 else "-"
            lines.append(
                f"| {coll} | {name} | {span} "
                f"| {m.sum()} | {gp[m, 0].mean():.3f} | {vae[m, 0].mean():.3f} "
                f"| {d.mean():+.3f} | {(d > 0.01).sum()} / {(d < -0.01).sum()} |"
            )
    return "\n".join(lines) + "\n"


def kept_lengthscales(
    rows: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]]
) -> dict[str, float]:
    """Series -> the learned lengthscale (steps) of gpvae's kept runs: the median over
    latent channels of each kept run's (one per restart group), from the records
    (anomaly.py's ``kernel_fitted``) of that run's tag, averaged over the groups as
    :func:`restart_matrix` averages their VUS-PR."""
    fitted = {
        (r["dataset"], r["series"], r["tag"]): r["kernel_fitted"]["0.lengthscale"]
        for r in records
        if r["method"] == f"gpvae/{A.CHOSEN}" and r.get("kernel_fitted")
    }
    per_group: dict[str, list[float]] = {}
    for r in rows:
        if r["model"] == "gpvae":
            ls = fitted[(r["dataset"], r["series"], r["tag"])]
            per_group.setdefault(r["series"], []).append(float(np.median(ls)))
    return {series: float(np.mean(v)) for series, v in per_group.items()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_dump_options(
        p,
        "s30_seed",
        "0-2",
        "JSON rows (appended; existing kept).",
        "Print the tables of these row files and stop.",
    )
    p.add_argument("--models", default="gpvae,vae")
    p.add_argument("--datasets", default="SMAP,MSL,NAB")
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--splits", type=int, default=200)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument(
        "--by-length",
        metavar="DATA_DIR",
        default=None,
        help="With --table: the table by the labelled anomalies' length instead (labels "
        "read from DATA_DIR).",
    )
    p.add_argument(
        "--by-lengthscale",
        nargs="+",
        metavar="RECORDS",
        default=None,
        help="With --table: the table by the learned lengthscale of gpvae's kept run instead "
        "(its median over latent channels, from these anomaly.py results files).",
    )
    args = p.parse_args(argv)
    if args.table is not None:
        rows = [r for f in args.table for r in json.loads(Path(f).read_text())]
        if args.by_length is not None:
            series = {(r["dataset"], r["series"]) for r in rows}
            lengths = {name: mean_run_length(A.load(ds, name, args.by_length).labels)
                       for ds, name in sorted(series)}  # fmt: skip
            print(by_thirds(rows, lengths, "mean anomaly length (steps)"), end="")
        elif args.by_lengthscale:
            records = [r for f in args.by_lengthscale for r in json.loads(Path(f).read_text())]
            scales = kept_lengthscales(rows, records)
            print(by_thirds(rows, scales, "learned lengthscale (steps)", ".3g"), end="")
        else:
            print(table(rows, args.splits, args.split_seed), end="")
        return 0
    if not args.dumps or not args.out:
        p.error("--dumps and --out are needed (or --table)")
    args.models = args.models.split(",")
    args.datasets = args.datasets.split(",")
    args.seeds = set(seed_range(args.seeds))
    return evaluate(args)


if __name__ == "__main__":
    raise SystemExit(main())
