"""Seed-averaged comparison of gpvae and the N(0, I) VAE from the anomaly records.

    python benchmarks/anomaly_seeds.py --results benchmarks/results/anomaly_s15.json \\
        --tags s15_seed0 s15_seed1 s15_seed2 [--dev-prefixes s15_seed ...] [--variant NAME]
        [--restarts K] [--peers METHOD/VARIANT:TAG,TAG ...] [--peer-restarts K]
        [--marker NAME]
        [--docs docs/benchmarks.md]

Each tag is one seed's campaign of both models (``benchmarks/anomaly.py --seed S --tag
TAG``). Per data set (SMAP, MSL, SMAP+MSL, NAB), over the series that have a record of both
models for every tag (the number is shown):

- the mean over series of each series' seed mean of VUS-PR, AUC-PR and AUC-ROC;
- gpvae - VAE of those means, with a paired 95% bootstrap interval over series (the series
  resampled, each series' seed means kept together), and how many series gpvae leads;
- the seed-to-seed spread: the range (max - min) over seeds of each seed's mean over series,
  and the mean over series of the standard deviation over seeds of one series' VUS-PR;
- epochs run, best epoch, and how many runs were **cap-limited**: their best epoch within
  the last ``patience`` epochs of the cap (``best_epoch > epochs - patience``), so early
  stopping could not have ended them.

With ``--restarts K`` each model is the **best of K restarts**: the tags, in order, fall
into consecutive groups of K (a last incomplete group is dropped), and per series and
model each group keeps the run with the lowest ``val_score_best`` (the fit's own
validation score, label-free); the groups then take the place of the seeds above
(``best_of``).

With ``--peers``, also each baseline's mean over its own tags (one per seed; a
deterministic baseline needs one) against gpvae, on every data set whose series all have
them (``collect_peer``). With ``--peer-restarts K``, every baseline with more than one tag
is the best of K restarts too, by its own ``val_score_best`` (the CNN's validation loss;
records since session 17); baselines whose records carry their epochs get an epochs table.

With ``--dev-prefixes``, also the development series' mean VUS-PR of each setting, per
seed and over seeds (the settings' seed check); with ``--dev-restarts``, per group of
best-of-K restarts as well.

The table goes to stdout and, with ``--marker NAME``, between the ``<!-- NAME -->`` markers
of ``--docs`` (appended when they are missing); without ``--marker`` no docs region is
written (a default name once let one session's command overwrite another's table).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anomaly_table import write_region  # a sibling script

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "anomaly_s15.json"
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- anomaly-seeds-table -->"
END = "<!-- /anomaly-seeds-table -->"
MODELS = ("gpvae", "vae")
GROUPS = (("SMAP", ("SMAP",)), ("MSL", ("MSL",)), ("SMAP+MSL", ("SMAP", "MSL")), ("NAB", ("NAB",)))
METRICS = ("vus_pr", "auc_pr", "auc_roc")


def cap_limited(record: dict[str, Any]) -> bool:
    """True when the run's best epoch is within the last ``patience`` epochs of its cap:
    early stopping could not have ended it, so a larger cap might have trained it on."""
    cfg = record["config"]
    return int(record["best_epoch"]) > int(cfg["epochs"]) - int(cfg["patience"])


def bootstrap_ci(
    diff: np.ndarray, n_boot: int = 10000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the mean of ``diff`` (one value per series) over ``n_boot``
    resamples of the series with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(n_boot, len(diff)))
    means = diff[idx].mean(axis=1)
    a = (1.0 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a))


Suffixes = str | Sequence[str] | None


def rerun_of(tag: str, tags: Sequence[str], rerun_suffix: Suffixes) -> tuple[str, int] | None:
    """``(TAG, k)`` when ``tag`` is ``TAG`` of ``tags`` plus the k-th of the suffixes
    ``rerun_suffix`` (one or several, in order: a run refit with cap 200, then one of those
    refit again with cap 400, ...), else None."""
    suffixes = [rerun_suffix] if isinstance(rerun_suffix, str) else list(rerun_suffix or [])
    for k, suffix in enumerate(suffixes):
        if suffix and tag.endswith(suffix) and tag[: -len(suffix)] in tags:
            return tag[: -len(suffix)], k
    return None


def collect(
    records: Sequence[dict[str, Any]],
    tags: Sequence[str],
    variant: str,
    rerun_suffix: Suffixes = None,
    vae_tags: Sequence[str] | None = None,
) -> dict[tuple[str, str], dict[str, list[dict[str, Any]]]]:
    """(dataset, series) -> model -> its records, one per tag in ``tags``' order, for the
    held-out series that have a record of both models for every tag. With
    ``rerun_suffix``, a record of tag ``TAG + rerun_suffix`` (a cap-limited run refit with
    a larger cap) takes the place of the same series' and model's record of ``TAG``; with
    several suffixes, the record of the last one found does (:func:`rerun_of`). With
    ``vae_tags`` (as many as ``tags``), the VAE's records are those of these tags instead
    (its seed i is ``vae_tags[i]``: a setting of gpvae against the VAE's own runs)."""
    if vae_tags is not None and len(vae_tags) != len(tags):
        raise ValueError(
            f"vae_tags: expected {len(tags)} tags (one per seed), found {len(vae_tags)}"
        )
    own = {"gpvae": list(tags), "vae": list(tags if vae_tags is None else vae_tags)}
    found: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
    reruns: dict[tuple[str, str, str, str], tuple[int, dict[str, Any]]] = {}
    for r in records:
        model, _, v = r["method"].partition("/")
        if r.get("dev") or model not in MODELS or v != variant:
            continue
        tag, mine = r.get("tag", ""), own[model]
        rerun = rerun_of(tag, mine, rerun_suffix)
        if rerun is not None:
            key = (r["dataset"], r["series"], model, rerun[0])
            if key not in reruns or reruns[key][0] <= rerun[1]:
                reruns[key] = (rerun[1], r)
        elif tag in mine:
            found.setdefault((r["dataset"], r["series"]), {})[(model, tag)] = r
    for (ds, series, model, tag), (_, r) in reruns.items():
        if (model, tag) in found.get((ds, series), {}):
            found[(ds, series)][(model, tag)] = r
    out = {}
    for key, recs in found.items():
        if all((m, t) in recs for m in MODELS for t in own[m]):
            out[key] = {m: [recs[(m, t)] for t in own[m]] for m in MODELS}
    return out


def best_of(runs: Sequence[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Best of ``k`` restarts: ``runs`` (one per seed, in order) in consecutive groups of
    ``k`` (a last incomplete group dropped), from each the run with the lowest
    ``val_score_best`` (the first of equals; a run without one counts as the worst)."""
    if k < 1:
        raise ValueError(f"restarts: expected at least 1, found {k}")

    def val(r: dict[str, Any]) -> float:
        v = r.get("val_score_best")
        return float("inf") if v is None else float(v)

    return [min(runs[i : i + k], key=val) for i in range(0, len(runs) - k + 1, k)]


def restarted(
    by: dict[tuple[str, str], dict[str, list[dict[str, Any]]]], k: int
) -> dict[tuple[str, str], dict[str, list[dict[str, Any]]]]:
    """:func:`collect`'s runs with every model's seeds replaced by its best-of-``k`` groups."""
    return {key: {m: best_of(runs, k) for m, runs in d.items()} for key, d in by.items()}


def collect_peer(
    records: Sequence[dict[str, Any]],
    method: str,
    tags: Sequence[str],
    rerun_suffix: Suffixes = None,
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(dataset, series) -> the held-out records of baseline ``method`` (as recorded, e.g.
    ``cnn/s32_b512``), one per tag in ``tags``' order, for the series that have all; a
    record of tag ``TAG + rerun_suffix`` replaces the series' record of ``TAG`` (as in
    :func:`collect`)."""
    found: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    reruns: dict[tuple[str, str, str], tuple[int, dict[str, Any]]] = {}
    for r in records:
        if r.get("dev") or r["method"] != method:
            continue
        tag = r.get("tag", "")
        rerun = rerun_of(tag, tags, rerun_suffix)
        if rerun is not None:
            key = (r["dataset"], r["series"], rerun[0])
            if key not in reruns or reruns[key][0] <= rerun[1]:
                reruns[key] = (rerun[1], r)
        elif tag in tags:
            found.setdefault((r["dataset"], r["series"]), {})[tag] = r
    for (ds, series, tag), (_, r) in reruns.items():
        if tag in found.get((ds, series), {}):
            found[(ds, series)][tag] = r
    return {k: [v[t] for t in tags] for k, v in found.items() if all(t in v for t in tags)}


def _peer_cells(
    by: dict[tuple[str, str], dict[str, list[dict[str, Any]]]],
    peers: dict[str, dict[tuple[str, str], list[dict[str, Any]]]],
) -> Iterator[tuple[str, list[tuple[str, str]], str, dict[tuple[str, str], list[dict[str, Any]]]]]:
    """(data set label, its series keys of ``by``, baseline, its runs) for every data set
    and baseline whose runs cover all those series."""
    for label, members in GROUPS:
        keys = sorted(k for k in by if k[0] in members)
        for method, runs in peers.items():
            if keys and all(k in runs for k in keys):
                yield label, keys, method, runs


def peer_rows(
    by: dict[tuple[str, str], dict[str, list[dict[str, Any]]]],
    peers: dict[str, dict[tuple[str, str], list[dict[str, Any]]]],
    n_boot: int = 10000,
) -> list[dict[str, Any]]:
    """gpvae against each baseline of ``peers`` (method -> :func:`collect_peer`) on every
    data set whose series (those of ``by``) all have the baseline's records: the mean over
    series of each one's mean over its seeds (or restart groups), the difference with its
    paired bootstrap interval and how many series gpvae leads."""
    rows = []
    for label, keys, method, runs in _peer_cells(by, peers):
        g = np.array([np.mean([r["vus_pr"] for r in by[k]["gpvae"]]) for k in keys])
        b = np.array([np.mean([r["vus_pr"] for r in runs[k]]) for k in keys])
        rows.append(
            {"set": label, "n": len(keys), "peer": method, "seeds": len(runs[keys[0]]),
             "gpvae": float(g.mean()), "peer_vus": float(b.mean()),
             "diff": float((g - b).mean()), "ci": bootstrap_ci(g - b, n_boot),
             "leads": int((g > b).sum())}
        )  # fmt: skip
    return rows


def restarted_peers(
    peers: dict[str, dict[tuple[str, str], list[dict[str, Any]]]], k: int
) -> dict[str, dict[tuple[str, str], list[dict[str, Any]]]]:
    """Every baseline of ``peers`` (method -> :func:`collect_peer`) with more than one run per
    series as the best of ``k`` restarts (:func:`best_of`); one that has a run without a
    validation score (``val_score_best``) cannot be, and raises."""
    if k == 1:
        return peers
    out = {}
    for method, runs in peers.items():
        if any(len(v) > 1 for v in runs.values()):
            if any(r.get("val_score_best") is None for v in runs.values() for r in v):
                raise ValueError(
                    f"peer-restarts: baseline {method} has runs without a validation score "
                    "(val_score_best); expected every run to carry one"
                )
            runs = {key: best_of(v, k) for key, v in runs.items()}
        out[method] = runs
    return out


def peer_epochs(
    by: dict[tuple[str, str], dict[str, list[dict[str, Any]]]],
    peers: dict[str, dict[tuple[str, str], list[dict[str, Any]]]],
) -> list[str]:
    """Table rows of each baseline's epochs (mean epochs run and best epoch, cap-limited
    runs) on the data sets of :func:`peer_rows`, for baselines whose runs record them."""
    lines = []
    for label, keys, method, runs in _peer_cells(by, peers):
        rs = [r for k in keys for r in runs[k]]
        if any(r.get("epochs_run") is None for r in rs):
            continue
        caps = "/".join(map(str, sorted({int(r["config"]["epochs"]) for r in rs})))
        lines.append(
            f"| {label} | {method} | {caps} | {np.mean([r['epochs_run'] for r in rs]):.1f} | "
            f"{np.mean([r['best_epoch'] for r in rs]):.1f} | "
            f"{sum(cap_limited(r) for r in rs)} of {len(rs)} |"
        )
    return lines


def summarise(
    by: dict[tuple[str, str], dict[str, list[dict[str, Any]]]],
    members: Sequence[str],
    n_boot: int = 10000,
) -> dict[str, Any] | None:
    """The numbers of one data set (series whose dataset is in ``members``), or None."""
    keys = sorted(k for k in by if k[0] in members)
    if not keys:
        return None
    out: dict[str, Any] = {"n": len(keys), "seeds": len(by[keys[0]]["gpvae"])}
    for m in MODELS:
        runs = [by[k][m] for k in keys]
        vals = {x: np.array([[r[x] for r in rs] for rs in runs]) for x in METRICS}  # (n, seeds)
        out[m] = {x: float(v.mean(axis=1).mean()) for x, v in vals.items()}
        per_seed = vals["vus_pr"].mean(axis=0)
        out[m]["per_seed"] = [float(v) for v in per_seed]
        out[m]["seed_range"] = float(per_seed.max() - per_seed.min())
        one = vals["vus_pr"].shape[1] < 2  # one seed: no standard deviation
        sd = vals["vus_pr"].std(axis=1, ddof=1).mean() if not one else float("nan")
        out[m]["series_seed_sd"] = float(sd)
        flat = [r for rs in runs for r in rs]
        out[m]["epochs"] = float(np.mean([r["epochs_run"] for r in flat]))
        out[m]["best_epoch"] = float(np.mean([r["best_epoch"] for r in flat]))
        out[m]["cap_limited"] = sum(cap_limited(r) for r in flat)
        out[m]["runs"] = len(flat)
        out[m]["cap"] = sorted({int(r["config"]["epochs"]) for r in flat})
        out[m]["series_vus"] = vals["vus_pr"].mean(axis=1)
    diff = out["gpvae"]["series_vus"] - out["vae"]["series_vus"]
    out["diff"] = float(diff.mean())
    out["ci"] = bootstrap_ci(diff, n_boot)
    out["gpvae_leads"] = int((diff > 0).sum())
    seed_diffs = np.array(out["gpvae"]["per_seed"]) - np.array(out["vae"]["per_seed"])
    out["seed_diffs"] = [float(d) for d in seed_diffs]
    return out


#: The record's false-alarm rate of the library's default alarm (the alarm divided by its
#: trailing spread, ``fit_threshold(spread=True)``) on the unlabelled scored steps.
FALSE_ALARM_KEY = "false_alarm_rate_spread"


def false_alarm_rows(by: dict[tuple[str, str], dict[str, list[dict[str, Any]]]]) -> list[str]:
    """Per data set and model, the false-alarm rates of the runs in ``by`` (after the
    restarts: the kept runs) against their target: median, mean, and how many series are
    within a factor 2, below it or above it."""
    rows = []
    for label, members in GROUPS:
        keys = sorted(k for k in by if k[0] in members)
        for m in MODELS:
            runs = [r for k in keys for r in by[k][m]]
            rates = [r.get(FALSE_ALARM_KEY) for r in runs]
            if not runs or any(v is None for v in rates):
                continue
            target = {float(r["config"]["far"]) for r in runs}
            if len(target) != 1:
                raise ValueError(f"{label} {m}: runs with different targets {sorted(target)}")
            (far,) = target
            v = np.array(rates, dtype=np.float64)
            below, above = int((v < far / 2).sum()), int((v > 2 * far).sum())
            rows.append(
                f"| {label} | {'VAE' if m == 'vae' else m} | {len(v)} | {far:g} | "
                f"{np.median(v):.4f} | {v.mean():.4f} | {len(v) - below - above} of {len(v)} "
                f"| {below} | {above} |"
            )
    return rows


def _f(v: float) -> str:
    return f"{v:.3f}" if np.isfinite(v) else "-"


def _s(v: float) -> str:
    return f"{v:+.3f}"


def render(
    records: Sequence[dict[str, Any]],
    tags: Sequence[str],
    variant: str,
    rerun_suffix: Suffixes = None,
    restarts: int = 1,
    peers: dict[str, Sequence[str]] | None = None,
    peer_restarts: int = 1,
    vae_tags: Sequence[str] | None = None,
    peer_methods: dict[str, str] | None = None,
    false_alarms: bool = False,
) -> str:
    """The held-out tables. ``peers``: baseline name -> its tags, the name being the
    recorded method (e.g. ``cnn/s32_b512``) unless ``peer_methods`` maps it to one (two
    settings of one method side by side); ``false_alarms``: also the false-alarm rates of
    the runs compared (:func:`false_alarm_rows`)."""
    method_of = peer_methods or {}
    by = collect(records, tags, variant, rerun_suffix, vae_tags)
    if restarts > 1:
        by = restarted(by, restarts)
    rows, spread, epochs = [], [], []
    for label, members in GROUPS:
        s = summarise(by, members)
        if s is None:
            continue
        g, v = s["gpvae"], s["vae"]
        lo, hi = s["ci"]
        rows.append(
            f"| {label} | {s['n']} | {g['vus_pr']:.3f} | {v['vus_pr']:.3f} | {_s(s['diff'])} "
            f"[{_s(lo)}, {_s(hi)}] | {s['gpvae_leads']} of {s['n']} | {g['auc_pr']:.3f} | "
            f"{v['auc_pr']:.3f} | {g['auc_roc']:.3f} | {v['auc_roc']:.3f} |"
        )
        spread.append(
            f"| {label} | " + " / ".join(f"{x:.3f}" for x in g["per_seed"]) + " | "
            + " / ".join(f"{x:.3f}" for x in v["per_seed"]) + " | "
            + " / ".join(_s(d) for d in s["seed_diffs"])
            + f" | {g['seed_range']:.3f} | {v['seed_range']:.3f} | "
            f"{_f(g['series_seed_sd'])} | {_f(v['series_seed_sd'])} |"
        )  # fmt: skip
        caps = "/".join(map(str, sorted(set(g["cap"]) | set(v["cap"]))))
        epochs.append(
            f"| {label} | {caps} | {g['epochs']:.1f} | "
            f"{g['best_epoch']:.1f} | {g['cap_limited']} of {g['runs']} | {v['epochs']:.1f} | "
            f"{v['best_epoch']:.1f} | {v['cap_limited']} of {v['runs']} |"
        )
    if not rows:
        return "No series has records of both models for every tag."
    unit = "seed"
    intro = (
        f"Held-out series with records of both models for every seed (tags {', '.join(tags)}; "
        f"score variant {variant}). "
    )
    if vae_tags is not None:
        intro += f"The VAE's runs are those of the tags {', '.join(vae_tags)} (seed by seed). "
    if restarts > 1:
        unit = "group"
        groups = [tags[i : i + restarts] for i in range(0, len(tags) - restarts + 1, restarts)]
        intro += (
            f"**Best of {restarts} restarts:** per series and model, each group of seeds ("
            + "; ".join(", ".join(g) for g in groups)
            + ") keeps the run with the lowest validation score (`val_score_best`, label-free). "
            "Means over series of each series' mean over the groups; "
        )
    else:
        intro += "Means over series of each series' mean over seeds; "
    text = (
        intro + "gpvae - VAE with its paired 95% bootstrap interval over series (10,000 "
        "resamples).\n\n"
        "| data set | series | gpvae VUS-PR | VAE VUS-PR | gpvae - VAE | gpvae ahead | "
        "gpvae AUC-PR | VAE AUC-PR | gpvae AUC-ROC | VAE AUC-ROC |\n"
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n"
        + "\n".join(rows)
        + f"\n\n{unit.capitalize()} to {unit}: each {unit}'s mean VUS-PR over the series "
        f"({unit}s in tag order), gpvae - VAE per {unit}, the range of the per-{unit} means, "
        f"and the mean over series of one series' standard deviation over {unit}s.\n\n"
        f"| data set | gpvae per {unit} | VAE per {unit} | gpvae - VAE per {unit} | "
        "gpvae range | VAE range | gpvae series sd | VAE series sd |\n"
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |\n"
        + "\n".join(spread)
        + "\n\nEpochs ("
        + ("every run of every seed" if restarts == 1 else "the runs the groups keep")
        + "): mean epochs run and best epoch; cap-limited: "
        "the best epoch within the last `patience` epochs of the cap (the caps of either "
        "model's runs).\n\n"
        "| data set | cap | gpvae epochs | gpvae best | gpvae cap-limited | VAE epochs | "
        "VAE best | VAE cap-limited |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n" + "\n".join(epochs)
    )
    fa = false_alarm_rows(by) if false_alarms else []
    if fa:
        text += (
            "\n\nFalse alarms ("
            + ("every run of every seed" if restarts == 1 else "the runs the groups keep")
            + "): the share of the scored part's unlabelled steps that the threshold learned "
            "from the normal part flags (the library's default alarm), per series; within a "
            "factor 2 of the target, below half of it, above twice it.\n\n"
            "| data set | model | runs | target | median | mean | within 2x | below | above |\n"
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n" + "\n".join(fa)
        )
    collected = {
        m: collect_peer(records, method_of.get(m, m), t, rerun_suffix)
        for m, t in (peers or {}).items()
    }
    collected = restarted_peers(collected, peer_restarts)
    lines = [
        f"| {r['set']} | {r['n']} | {r['peer']} | {r['seeds']} | {r['gpvae']:.3f} | "
        f"{r['peer_vus']:.3f} | {_s(r['diff'])} [{_s(r['ci'][0])}, {_s(r['ci'][1])}] | "
        f"{r['leads']} of {r['n']} |"
        for r in peer_rows(by, collected)
    ]
    if lines:
        text += (
            "\n\nBaselines on the same series: each baseline's mean over series of its mean "
            "over its own runs (tags: "
            + "; ".join(
                f"{m}{f' ({method_of[m]})' if m in method_of else ''} {', '.join(t)}"
                for m, t in (peers or {}).items()
            )
            + "), against gpvae's above; paired 95% bootstrap interval over series"
            + (
                f"; a baseline with several runs is the best of {peer_restarts} restarts by "
                "its own validation loss (`val_score_best`), its runs are its groups"
                if peer_restarts > 1
                else ""
            )
            + ".\n\n"
            "| data set | series | baseline | its runs | gpvae VUS-PR | baseline VUS-PR | "
            "gpvae - baseline | gpvae ahead |\n"
            "| --- | ---: | --- | ---: | ---: | ---: | --- | ---: |\n" + "\n".join(lines)
        )
    ep = peer_epochs(by, collected)
    if ep:
        text += (
            "\n\nBaselines' epochs (the runs counted above): mean epochs run and best epoch; "
            "cap-limited: the best epoch within the last `patience` epochs of the cap.\n\n"
            "| data set | baseline | cap | epochs | best | cap-limited |\n"
            "| --- | --- | --- | ---: | ---: | ---: |\n" + "\n".join(ep)
        )
    return text


def dev_table(
    records: Sequence[dict[str, Any]],
    prefixes: Sequence[str],
    n_seeds: int,
    variant: str | Sequence[str],
    restarts: Sequence[int] = (1,),
) -> str:
    """Mean VUS-PR over the development series of each (model, setting) whose records have
    the tags ``PREFIX0`` ... ``PREFIX<n_seeds - 1>`` (one per seed): per seed and over
    seeds, over the series every seed has; for each K of ``restarts`` above 1 also per
    group of best-of-K restarts (:func:`best_of`) and over the groups. With several
    score variants, the rows of each in turn, each labelled with its variant."""
    if isinstance(variant, str):
        return _dev_lines(records, prefixes, n_seeds, variant, restarts, False)
    return "\n".join(
        _dev_lines(records, prefixes, n_seeds, v, restarts, True, i == 0)
        for i, v in enumerate(variant)
    ).rstrip("\n")


def _dev_lines(
    records: Sequence[dict[str, Any]],
    prefixes: Sequence[str],
    n_seeds: int,
    variant: str,
    restarts: Sequence[int],
    label_variant: bool,
    header: bool = True,
) -> str:
    """:func:`dev_table` of one variant (``label_variant``: its name in the tags column;
    without ``header``: the rows only)."""
    lines = []
    for prefix in prefixes:
        tags = [f"{prefix}{i}" for i in range(n_seeds)]
        for m, k in ((m, k) for k in restarts for m in MODELS):
            by: dict[str, dict[tuple[str, str], dict[str, Any]]] = {t: {} for t in tags}
            for r in records:
                if r.get("dev") and r.get("tag") in by and r["method"] == f"{m}/{variant}":
                    by[r["tag"]][(r["dataset"], r["series"])] = r
            common = set.intersection(*(set(v) for v in by.values()))
            if not common:
                continue
            kept = {s: best_of([by[t][s] for t in tags], k) for s in common}
            n_groups = len(tags) // k
            per_seed = [float(np.mean([kept[s][i]["vus_pr"] for s in common]))
                        for i in range(n_groups)]  # fmt: skip
            cfg = by[tags[0]][min(common)]["config"]
            setting = _setting(m, cfg)
            capped = sum(cap_limited(r) for s in common for r in kept[s])
            label = f"{prefix}*" + (f", best of {k}" if k > 1 else "")
            label += f", {variant}" if label_variant else ""
            lines.append(
                f"| {m} | {setting} | {label} | {len(common)} | "
                + " / ".join(f"{x:.3f}" for x in per_seed)
                + f" | {np.mean(per_seed):.3f} | {capped} of {len(common) * n_groups} |"
            )
    if not lines:
        return ""
    if not header:
        return "\n".join(lines)
    return (
        "Development series (mean VUS-PR over the series every seed has; tags PREFIX0, "
        "PREFIX1, ...: one per seed"
        + (
            "; best of K: per group of K consecutive seeds, the run with the lowest "
            "validation score"
            if any(k > 1 for k in restarts)
            else ""
        )
        + "):\n\n"
        "| model | setting | tags | series | per seed | mean over seeds | cap-limited |\n"
        "| --- | --- | --- | ---: | --- | ---: | ---: |\n" + "\n".join(lines)
    )


def _setting(model: str, cfg: dict[str, Any]) -> str:
    """A development row's setting: gpvae's kernel (and its initial lengthscale when one
    was given), the likelihood and encoder when not the defaults (Gaussian, MLP; records
    without the key ran with them), hidden width, KL weight and epoch cap."""
    kernel = ""
    if model == "gpvae":
        ls = cfg.get("lengthscale")
        kernel = f"{cfg['kernel']}" + (f" lengthscale {ls:g}" if ls is not None else "") + ", "
    for key, default in (("likelihood", "gaussian"), ("encoder", "mlp")):
        if cfg.get(key, default) != default:
            kernel += f"{key} {cfg[key]}, "
    return kernel + f"hidden {cfg['hidden']}, beta {cfg['beta']:g}, cap {cfg['epochs']}"


def dev_series_table(
    records: Sequence[dict[str, Any]],
    prefixes: Sequence[str],
    n_seeds: int,
    variant: str | Sequence[str],
    k: int,
) -> str:
    """Per development series, each (setting, model)'s VUS-PR as the mean over its groups
    of best-of-``k`` restarts (:func:`best_of`; seeds ``PREFIX0`` ... ``PREFIX<n_seeds -
    1>``), the mean over the series, and, for every setting after the first, on how many
    series it is below the first setting's value of the same model (the rule for adopting a
    setting on the development series). Only series every seed of every setting has. With
    several score variants, the rows of each variant in turn (labelled with its name), all
    compared with the model's first row."""
    many = not isinstance(variant, str)
    wanted = [variant] if isinstance(variant, str) else list(variant)
    cells: dict[tuple[str, str, str], dict[tuple[str, str], float]] = {}
    labels: dict[tuple[str, str, str], str] = {}
    for v, prefix in ((v, p) for v in wanted for p in prefixes):
        tags = [f"{prefix}{i}" for i in range(n_seeds)]
        for m in MODELS:
            by: dict[str, dict[tuple[str, str], dict[str, Any]]] = {t: {} for t in tags}
            for r in records:
                if r.get("dev") and r.get("tag") in by and r["method"] == f"{m}/{v}":
                    by[r["tag"]][(r["dataset"], r["series"])] = r
            common = set.intersection(*(set(x) for x in by.values()))
            if not common:
                continue
            cells[(v, prefix, m)] = {
                s: float(np.mean([g["vus_pr"] for g in best_of([by[t][s] for t in tags], k)]))
                for s in common
            }
            labels[(v, prefix, m)] = _setting(m, by[tags[0]][min(common)]["config"])
    if not cells:
        return ""
    series = sorted(set.intersection(*(set(x) for x in cells.values())))
    first = {m: next((c for c in cells if c[2] == m), None) for m in MODELS}
    names = [s.rsplit("/", 1)[-1] for _, s in series]  # NAB: the file name alone
    head = ["model", "setting", "tags", *names, "mean", "below the first"]
    lines = [
        "| " + " | ".join(head) + " |",
        "| --- | --- | --- | " + " | ".join("---:" for _ in series) + " | ---: | ---: |",
    ]
    for key, vals in cells.items():
        v, prefix, m = key
        ref = cells[first[m]] if first[m] is not None else vals
        below = (
            "-" if first[m] == key else f"{sum(vals[s] < ref[s] for s in series)} of {len(series)}"
        )
        lines.append(
            f"| {m} | {labels[key]} | {prefix}*, best of {k}"
            + (f", {v}" if many else "")
            + " | "
            + " | ".join(f"{vals[s]:.3f}" for s in series)
            + f" | {np.mean([vals[s] for s in series]):.3f} | {below} |"
        )
    return (
        f"Development series, per series (VUS-PR: the mean over the groups of best-of-{k} "
        f'restarts of seeds PREFIX0 ... PREFIX{n_seeds - 1}; "below the first": on how many '
        "series a setting is below the first setting of the same model):\n\n" + "\n".join(lines)
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", nargs="+", default=[str(RESULTS)])
    p.add_argument("--tags", nargs="+", required=True, help="One tag per seed.")
    p.add_argument("--variant", default=None, help="Default: CHOSEN of anomaly.py.")
    p.add_argument(
        "--rerun-suffix",
        nargs="+",
        default=None,
        help="Records of tag TAG + this suffix (cap-limited runs refit with a larger cap) "
        "replace the same series' and model's (or baseline's) record of TAG; with several "
        "suffixes (e.g. _cap200 _cap400) the last one a series has wins.",
    )
    p.add_argument(
        "--dev-prefixes",
        nargs="*",
        default=[],
        metavar="PREFIX",
        help="Also a development-series table of each setting whose seeds' tags are "
        "PREFIX0, PREFIX1, ... (as many as --tags).",
    )
    p.add_argument(
        "--dev-seeds",
        type=int,
        default=None,
        help="Seeds per development setting (default: as many as --tags).",
    )
    p.add_argument(
        "--restarts",
        type=int,
        default=1,
        help="Best of K restarts: the tags in consecutive groups of K, each keeping the run "
        "with the lowest validation score (default 1: every seed on its own).",
    )
    p.add_argument(
        "--dev-restarts",
        type=int,
        nargs="+",
        default=None,
        metavar="K",
        help="The development table's restart counts (default: --restarts).",
    )
    p.add_argument(
        "--vae-tags",
        nargs="+",
        default=None,
        help="The VAE's tags, one per seed as --tags (default: --tags): a gpvae setting "
        "against the VAE's own runs.",
    )
    p.add_argument(
        "--dev-variants",
        nargs="+",
        default=None,
        metavar="NAME",
        help="The development table's score variants, each in rows of its own labelled "
        "with its name (default: --variant alone, unlabelled).",
    )
    p.add_argument(
        "--peers",
        nargs="*",
        default=[],
        metavar="[NAME=]METHOD:TAGS",
        help="Baselines against gpvae: the recorded method (e.g. cnn/s32_b512), a colon, and "
        "its comma-separated tags (one per seed); NAME=METHOD:TAGS names it (two settings "
        "of one method side by side).",
    )
    p.add_argument(
        "--peer-restarts",
        type=int,
        default=1,
        metavar="K",
        help="Every baseline with several tags as the best of K restarts by its validation "
        "loss (default 1: each tag on its own).",
    )
    p.add_argument(
        "--marker",
        default=None,
        help="Name of the docs region to write (<!-- NAME --> ... <!-- /NAME -->); "
        "default: print only.",
    )
    p.add_argument(
        "--dev-only",
        action="store_true",
        help="Only the development tables (no held-out table; --tags then only sets the "
        "default --dev-seeds).",
    )
    p.add_argument(
        "--dev-per-series",
        action="store_true",
        help="Also the development series one by one (best of the largest --dev-restarts).",
    )
    p.add_argument(
        "--false-alarms",
        action="store_true",
        help="Also the false-alarm rates of the runs compared (the kept runs with "
        "--restarts), per data set and model.",
    )
    p.add_argument("--docs", default=str(DOCS), help="Markdown file to write the table into.")
    args = p.parse_args(argv)
    if args.variant is None:
        src = (ROOT / "benchmarks" / "anomaly.py").read_text()
        found = re.search(r'^CHOSEN = "([a-z0-9_]+)"', src, re.M)
        assert found, "CHOSEN not found in benchmarks/anomaly.py"
        args.variant = found.group(1)
    records = [r for path in args.results for r in json.loads(Path(path).read_text())]
    peers, peer_methods = {}, {}
    for spec in args.peers:
        method, _, tags = spec.partition(":")
        name, eq, named = method.partition("=")
        if eq:
            peer_methods[name], method = named, name
        if method in peers:
            p.error(f"--peers: {method!r} given twice; name one NAME=METHOD:TAGS")
        peers[method] = tags.split(",")
    parts = []
    if not args.dev_only:
        parts.append(render(
            records, args.tags, args.variant, args.rerun_suffix, args.restarts, peers,
            args.peer_restarts, args.vae_tags, peer_methods, args.false_alarms,
        ))  # fmt: skip
    n_dev = args.dev_seeds or len(args.tags)
    ks = args.dev_restarts or [args.restarts]
    parts.append(
        dev_table(records, args.dev_prefixes, n_dev, args.dev_variants or args.variant, ks)
    )
    if args.dev_per_series:
        names = args.dev_variants or args.variant
        parts.append(dev_series_table(records, args.dev_prefixes, n_dev, names, max(ks)))
    table = "\n\n".join(p for p in parts if p)
    if args.marker is not None:
        marker = args.marker
        write_region(Path(args.docs), table, f"<!-- {marker} -->", f"<!-- /{marker} -->")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
