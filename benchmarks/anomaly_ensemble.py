"""Anomaly scores of an ensemble of restarts, from the entry scores its members dumped.

``benchmarks/anomaly.py --dump DIR`` saves, for every series and model, the entry scores of
one fit (the held-out predictive densities ``k5`` and the prior-alone scores ``prior``, on
the normal part and on the scored part). Runs of several seeds with one ``--dump`` folder
per seed are the members of an ensemble. This script groups the seeds (``--seeds``,
``--members`` per group, consecutive) and, per group, series and model, scores:

- ``best``: the member with the lowest validation score (``val_score_best`` of the
  records in ``--records``; label-free): the best of ``--members`` restarts, as
  ``anomaly_seeds.py`` keeps it;
- ``mix``: the ensemble's predictive density per entry, the mixture of the members'
  ``-log (1/K sum_k exp(-e_k))``, for the held-out and for the prior-alone entries alike,
  then the chosen variant's pipeline (``anomaly.CHOSEN``: prior weight times the spread
  ratio, tail scale, the largest feature, the novelty cap, the trailing mean and the drift
  baseline), its profile fitted on the mixture's normal-part entries;
- ``avg``: the mean of the members' own step scores under the chosen variant.

A run refitted with a larger cap (records tagged ``PREFIX<seed>_cap200``, dumped to the
``--dumps`` folder of seed ``<seed>_cap200``) takes its run's place. Each member's own score
is recomputed too, and its VUS-PR checked against its record (to
1e-4: the dumps are float32), so the dumps are known to be those of the recorded fits. One
JSON record per (series, model, group); ``--table`` prints the means per collection.

    PYTHONPATH=src .venv-bench/bin/python benchmarks/anomaly_ensemble.py \\
        --dumps 'runs/dump_dev_s{seed}' --records dev_gpvae.json dev_vae.json \\
        --tag-prefix s29_seed --seeds 0-8 --members 3 --out results.json
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
from anomaly_seeds import best_of


def mixture_entries(entries: Sequence[np.ndarray]) -> np.ndarray:
    """-log of the mean of exp(-e_k) over the members, entry by entry (NaN stays NaN)."""
    from scipy.special import logsumexp

    stack = np.stack([np.asarray(e, dtype=np.float64) for e in entries])  # (K, T, D)
    return -(logsumexp(-stack, axis=0) - np.log(len(stack)))


def chosen_entries(held: tuple[np.ndarray, np.ndarray], prior: tuple[np.ndarray, np.ndarray]):
    """The chosen variant's combined entries (normal part, scored part): the held-out
    entries plus the prior weight times the spread ratio times the prior-alone entries."""
    from gpvae.estimator.anomaly import combine_prior, spread_ratio

    _, _, _, _, pw, _ = A.variant(A.CHOSEN)
    ratio = spread_ratio([held[0]], [prior[0]])
    return tuple(combine_prior([h], [p], pw, ratio)[0] for h, p in zip(held, prior))


def chosen_step_score(e_tr: np.ndarray, e_te: np.ndarray, far: float, samples: int) -> np.ndarray:
    """The chosen variant's step score of the scored part, its profile from the normal part."""
    from gpvae import settings
    from gpvae.estimator.anomaly import profile_from_entries, step_scores

    K, norm, smooth, base, _, _ = A.variant(A.CHOSEN)
    prof = profile_from_entries(
        [e_tr],
        far,
        samples,
        K,
        None,
        smooth,
        norm,
        base,
        settings.ANOMALY_ALARM_SMOOTH,
        True,
        **A.scale_combine(A.CHOSEN),
    )
    return step_scores(e_te, prof)


def load_dump(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def dump_path(pattern: str, seed: int, refit: bool) -> Path:
    """The dump folder of one seed's run (``<seed>_cap200`` for its refit)."""
    return Path(pattern.format(seed=f"{seed}{A.RERUN_SUFFIX}" if refit else seed))


def seed_range(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def read_records(
    files: Sequence[str], prefix: str
) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    """(dataset, series, model, seed) -> the record of the chosen variant of tag
    PREFIX<seed> (a PREFIX<seed>_cap200 refit in its place)."""
    recs: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for f in files:
        for r in json.loads(Path(f).read_text()):
            model, _, var = r["method"].partition("/")
            seed = r.get("config", {}).get("seed")
            tag, base = r.get("tag", ""), f"{prefix}{seed}"
            if var != A.CHOSEN or tag not in (base, base + A.RERUN_SUFFIX):
                continue
            key = (r["dataset"], r["series"], model, seed)
            if tag != base or key not in recs:  # a refit with a larger cap wins
                recs[key] = r
    return recs


def add_dump_options(
    p: argparse.ArgumentParser, tag_prefix: str, seeds: str, out_help: str, table_help: str
) -> None:
    """The options shared by the scripts that rescore anomaly.py's dumps."""
    p.add_argument("--dumps", help="Dump folder per seed, with '{seed}' in it.")
    p.add_argument("--records", nargs="+", default=[], help="anomaly.py results files.")
    p.add_argument("--tag-prefix", default=tag_prefix, help="The records' tags: PREFIX<seed>.")
    p.add_argument("--seeds", default=seeds)
    p.add_argument("--far", type=float, default=0.01)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--out", default=None, help=out_help)
    p.add_argument("--table", nargs="*", default=None, metavar="FILE", help=table_help)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_dump_options(
        p,
        "s29_seed",
        "0-8",
        "JSON records (appended; existing kept).",
        "Print the means per collection of these record files and stop.",
    )
    p.add_argument("--members", type=int, default=3)
    args = p.parse_args(argv)
    if args.table is not None:
        print_table([r for f in args.table for r in json.loads(Path(f).read_text())])
        return 0
    seeds = seed_range(args.seeds)
    groups = [seeds[i : i + args.members] for i in range(0, len(seeds), args.members)]
    recs = read_records(args.records, args.tag_prefix)
    refit = {k: r["tag"].endswith(A.RERUN_SUFFIX) for k, r in recs.items()}
    out: list[dict[str, Any]] = []
    if args.out and Path(args.out).exists():
        out = json.loads(Path(args.out).read_text())
    done = {(r["dataset"], r["series"], r["model"], r["group"]) for r in out}
    first = Path(args.dumps.format(seed=seeds[0]))
    for path in sorted(first.glob("*.npz")):
        stem = path.stem
        dataset, _, rest = stem.partition("_")
        name, _, model = rest.rpartition("_")
        series = name.replace("__", "/")
        for g, members in enumerate(groups):
            if (dataset, series, model, g) in done:
                continue
            files = [
                dump_path(args.dumps, s, refit.get((dataset, series, model, s), False)) / path.name
                for s in members
            ]
            if not all(f.exists() for f in files) or not all(
                (dataset, series, model, s) in recs for s in members
            ):
                continue
            dumps = [load_dump(f) for f in files]
            runs = [recs[(dataset, series, model, k)] for k in members]
            labels = dumps[0]["labels"]
            window = runs[0]["sliding_window"]
            combined = [
                chosen_entries((d["k5_train"], d["k5_test"]), (d["prior_train"], d["prior_test"]))
                for d in dumps
            ]
            own = [chosen_step_score(tr, te, args.far, args.samples) for tr, te in combined]
            own_metrics = [A.metrics(s, labels, window) for s in own]
            for k, m, rec in zip(members, own_metrics, runs):
                # the dumps are float32: their rounding moves VUS-PR by ~1e-6, a refit by more
                if not math.isclose(m["vus_pr"], rec["vus_pr"], abs_tol=1e-4):
                    raise SystemExit(
                        f"{stem} seed {k}: VUS-PR {m['vus_pr']} from the dump, "
                        f"{rec['vus_pr']} in the record: not the recorded fit"
                    )
            kept = runs.index(best_of(runs, len(runs))[0])  # the lowest validation score
            held = [mixture_entries([d[f"k5_{part}"] for d in dumps]) for part in ("train", "test")]
            prior = [
                mixture_entries([d[f"prior_{part}"] for d in dumps]) for part in ("train", "test")
            ]
            e_tr, e_te = chosen_entries((held[0], held[1]), (prior[0], prior[1]))
            with np.errstate(invalid="ignore"):
                average = np.nanmean(np.stack(own), axis=0)
            scores = {
                "best": own_metrics[kept],
                "mix": A.metrics(
                    chosen_step_score(e_tr, e_te, args.far, args.samples), labels, window
                ),
                "avg": A.metrics(average, labels, window),
            }
            row = {
                "dataset": dataset,
                "series": series,
                "model": model,
                "group": g,
                "seeds": members,
                "member_vus_pr": [r["vus_pr"] for r in runs],
            }
            for key, metrics in scores.items():
                row.update({f"{key}_{m}": v for m, v in metrics.items()})
            out.append(row)
            print(
                f"{dataset:5s} {series:45s} {model:5s} g{g} best {row['best_vus_pr']:.3f} "
                f"mix {row['mix_vus_pr']:.3f} avg {row['avg_vus_pr']:.3f} members "
                + " ".join(f"{v:.3f}" for v in row["member_vus_pr"]),
                flush=True,
            )
            if args.out:
                Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


def print_table(rows: list[dict[str, Any]]) -> None:
    """Per collection (and ``all``) and model: series, the mean over series of each series'
    mean over groups, for the member mean, best of K, the mixture and the average; on how
    many series the mixture and the average are below the best of K."""
    by: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        key = ("SMAP+MSL" if r["dataset"] in ("SMAP", "MSL") else r["dataset"], r["model"])
        by.setdefault(key, {}).setdefault(r["series"], []).append(r)
        by.setdefault(("all", r["model"]), {}).setdefault(r["series"], []).append(r)
        if r["dataset"] in ("SMAP", "MSL"):
            by.setdefault((r["dataset"], r["model"]), {}).setdefault(r["series"], []).append(r)
    print(
        "| data set | model | series | members (mean) | best of K | mixture | average "
        "| mixture below best | average below best |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (ds, model), series in sorted(by.items()):
        cols = [_mean_of(series, lambda r: np.mean(r["member_vus_pr"]))]
        cols += [_mean_of(series, lambda r, k=k: r[f"{k}_vus_pr"]) for k in ("best", "mix", "avg")]
        below = [
            sum(
                np.mean([r[f"{k}_vus_pr"] for r in rs]) < np.mean([r["best_vus_pr"] for r in rs])
                for rs in series.values()
            )
            for k in ("mix", "avg")
        ]
        print(
            f"| {ds} | {model} | {len(series)} | "
            + " | ".join(f"{c:.3f}" for c in cols)
            + "".join(f" | {b} of {len(series)}" for b in below)
            + " |"
        )


def _mean_of(series: dict[str, list[dict[str, Any]]], value: Any) -> float:
    """The mean over series of each series' mean of ``value(row)`` over its groups."""
    return float(np.mean([np.mean([value(r) for r in rows]) for rows in series.values()]))


if __name__ == "__main__":
    raise SystemExit(main())
