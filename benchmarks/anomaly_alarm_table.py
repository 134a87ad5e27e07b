"""The false-alarm table of issue 17: gpvae, the N(0, I) VAE and the baselines side by side.

Reads the baselines' records of ``anomaly_alarm_peers.py`` and the refits of gpvae's and the
VAE's kept runs (``anomaly.py --restart-of``: for each series, the restart with the lowest
validation score, as the README's anomaly table keeps them, refit with the alarm's detection
recorded), and tabulates, per collection and detector, the false-alarm rate on the scored
part's unlabelled steps of the threshold learned from the normal part: median, mean, and how
many series are within a factor 2 of the target, below half of it or above twice it, and what
the alarm catches. A second table asks whether the series gpvae misses are missed by the other
detectors too. Held-out series only (the development subset left out).

    python benchmarks/anomaly_alarm_table.py --data-dir ../shared/data [--marker NAME]

The table goes to stdout and, with ``--marker NAME``, between the ``<!-- NAME -->`` markers of
``--docs``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anomaly import PEER_CHOSEN, RANK_WINDOW
from anomaly_table import write_region

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PEERS_FILE = RESULTS / "anomaly_alarm_peers.json"
MODELS_FILE = RESULTS / "anomaly_s37_alarm.json"
TAG = "s37_alarm"
VARIANT = "k5ph_tailmaxcap95_s32_b512"
COLLECTIONS = (("SMAP+MSL", ("SMAP", "MSL")), ("NAB", ("NAB",)))
PEER_LABELS = {"pca": "PCA", "iforest": "Isolation Forest", "zscore": "rolling z-score",
               "cnn": "CNN forecaster"}  # fmt: skip
#: gpvae's alarms as its records hold them (field suffix, label): the library's alarm
#: (``fit_threshold(spread=True)``), the plain alarm (``spread=False``) and the threshold on
#: the reported (smoothed) score itself, the rule the baselines get here (no detection
#: recorded for it).
GPVAE_RULES = (
    ("_spread", "gpvae"),
    ("", "gpvae, plain alarm"),
    ("_smoothed", "gpvae, quantile of its score"),
)
#: The same for records with the trailing-rank alarm (session 44 on: ``_rank``), the
#: library's alarm from then on; the spread alarm is the default of sessions 12-43.
GPVAE_RANK_RULES = (
    ("_rank", "gpvae"),
    ("_spread", "gpvae, spread alarm"),
    ("", "gpvae, plain alarm"),
    ("_smoothed", "gpvae, quantile of its score"),
)
VAE_RULES = (("_spread", "VAE"),)
VAE_RANK_RULES = (("_rank", "VAE"), ("_spread", "VAE, spread alarm"))

Rates = dict[str, dict[tuple[str, str], dict[str, Any]]]


def has_rank(records: Sequence[dict[str, Any]], tag: str) -> bool:
    """Whether the refits of ``tag`` record the trailing-rank alarm (session 44 on)."""
    return any(r.get("tag") == tag and "false_alarm_rate_rank" in r for r in records)


def model_rates(records: Sequence[dict[str, Any]], tag: str = TAG) -> Rates:
    """detector -> (dataset, series) -> false-alarm rate and detection of the refits of the
    kept runs (tag ``tag``): gpvae (the bank of lengthscales 3, 6, 12, 24, the README
    table's) with each alarm of :data:`GPVAE_RULES`, and the VAE with the library's (with
    the rank alarm recorded: :data:`GPVAE_RANK_RULES` and :data:`VAE_RANK_RULES`)."""
    rank = has_rank(records, tag)
    gp_rules, vae_rules = (GPVAE_RANK_RULES, VAE_RANK_RULES) if rank else (GPVAE_RULES, VAE_RULES)
    out: Rates = {label: {} for _, label in (*gp_rules, *vae_rules)}
    for r in records:
        model, _, variant = r["method"].partition("/")
        if r.get("tag") != tag or variant != VARIANT or r.get("dev"):
            continue
        key = (r["dataset"], r["series"])
        rules = gp_rules if model == "gpvae" else vae_rules
        for suffix, label in rules:
            out[label][key] = {
                "rate": r[f"false_alarm_rate{suffix}"],
                "events": r.get("events"),
                "flagged": r.get(f"events_flagged{suffix}"),
                "recall": r.get(f"step_recall{suffix}"),
            }
    return out


def peer_rates(records: Sequence[dict[str, Any]], variant_of: dict[str, str]) -> Rates:
    """detector -> (dataset, series) -> a baseline's false-alarm rate and detection with the
    variant ``variant_of[method]`` (held-out series only)."""
    out: Rates = {}
    for r in records:
        if r.get("dev") or r["method"] not in variant_of:
            continue
        v = r["variants"][variant_of[r["method"]]]
        if v["false_alarm_rate"] is not None:
            out.setdefault(PEER_LABELS[r["method"]], {})[(r["dataset"], r["series"])] = {
                "rate": v["false_alarm_rate"],
                "events": v["events"],
                "flagged": v["events_flagged"],
                "recall": v["step_recall"],
            }
    return out


def _far(records: Sequence[dict[str, Any]]) -> float:
    targets = {float(r["far"]) for r in records}
    if len(targets) != 1:
        raise ValueError(f"{PEERS_FILE.name}: expected one target rate, found {sorted(targets)}")
    return targets.pop()


def _side(rate: float, far: float) -> int:
    """-1 below half the target, 1 above twice it, 0 within the factor 2."""
    return -1 if rate < far / 2 else (1 if rate > 2 * far else 0)


def event_lengths(
    keys: Sequence[tuple[str, str]], data_dir: str | None
) -> dict[tuple[str, str], list[int]]:
    """(dataset, series) -> the lengths of the labelled runs of its scored part."""
    from anomaly import load

    out = {}
    for ds, name in keys:
        labels = load("NAB" if ds == "NAB" else "SMAP_MSL", name, data_dir).labels.astype(np.int8)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], labels, [0]])))
        out[(ds, name)] = [int(b - a) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    return out


def by_chance(runs: Sequence[tuple[tuple[str, str], dict[str, Any]]], lengths: Any) -> float:
    """Events an alarm would catch by chance: each step flagged independently at the series'
    own false-alarm rate, an event of L steps is caught with probability 1 - (1 - r)^L."""
    return float(sum(1.0 - (1.0 - x["rate"]) ** n for k, x in runs for n in lengths[k]))


def summary_rows(rates: Rates, far: float, lengths: Any) -> list[str]:
    rows = []
    scored = rates["gpvae"]  # the series of the anomaly table (those with gpvae's kept runs)
    for label, members in COLLECTIONS:
        for det, per in rates.items():
            keyed = [(k, x) for k, x in sorted(per.items()) if k[0] in members and k in scored]
            if not keyed:
                continue
            runs = [x for _, x in keyed]
            v = np.array([x["rate"] for x in runs], dtype=np.float64)
            below, above = int((v < far / 2).sum()), int((v > 2 * far).sum())
            if all(x["flagged"] is not None for x in runs):
                caught = (
                    f"{sum(x['flagged'] for x in runs)} of {sum(x['events'] for x in runs)} | "
                    f"{by_chance(keyed, lengths):.1f} | {np.mean([x['recall'] for x in runs]):.3f}"
                )
            else:
                caught = f"- | {by_chance(keyed, lengths):.1f} | -"
            rows.append(
                f"| {label} | {det} | {len(v)} | {np.median(v):.4f} | {v.mean():.4f} | "
                f"{len(v) - below - above} | {below} | {above} | {caught} |"
            )
    return rows


def shared_rows(rates: Rates, far: float, others: Sequence[str]) -> list[str]:
    """For the series gpvae misses (too strict or too loose): how many each other detector
    misses the same way (and how many it has within the factor 2), and how many every
    baseline misses the same way."""
    rows = []
    baselines = [d for d in others if d != "VAE"]
    for label, members in COLLECTIONS:
        for direction, name in ((-1, "below half"), (1, "above twice")):
            keys = [
                k
                for k, x in rates["gpvae"].items()
                if k[0] in members
                and _side(x["rate"], far) == direction
                and all(k in rates[d] for d in others)
            ]
            cells = []
            for d in others:
                sides = [_side(rates[d][k]["rate"], far) for k in keys]
                cells.append(f"{sides.count(direction)} ({sides.count(0)})")
            every = sum(
                all(_side(rates[d][k]["rate"], far) == direction for d in baselines) for k in keys
            )
            rows.append(f"| {label} | {name} | {len(keys)} | {' | '.join(cells)} | {every} |")
    return rows


def render(
    peers: Sequence[dict[str, Any]],
    models: Sequence[dict[str, Any]],
    raw: bool,
    data_dir: str | None,
    tag: str = TAG,
) -> str:
    far = _far(peers)
    variant_of = {m: ("s1" if raw else PEER_CHOSEN[m]) for m in PEER_LABELS}
    rates = model_rates(models, tag)
    rates.update(peer_rates(peers, variant_of))
    lengths = event_lengths(sorted(rates["gpvae"]), data_dir)
    others = ["VAE", *(d for d in PEER_LABELS.values() if d in rates)]
    alarm = (
        "with the library's alarm (`fit_threshold`: the rank of the step's score among the "
        f"previous {RANK_WINDOW} steps'); `spread alarm`: spread-normalised, the default of "
        "sessions 12-43; "
        if has_rank(models, tag)
        else "with the library's alarm (`fit_threshold`, spread-normalised); "
    )
    head = [
        f"Target {far:g}, held-out series. gpvae and the VAE: the refits of their kept runs "
        f"(tag `{tag}`), {alarm}"
        "`gpvae, plain alarm`: without the spread normalisation; `gpvae, quantile of its "
        "score`: the baselines' rule on gpvae's reported score. Baselines: the "
        f"{1 - far:g} quantile of their "
        + ("raw score" if raw else "reported score (post-processed as in the anomaly table)")
        + " on the normal part they were fit on. `events caught`: labelled runs of the scored "
        "part with at least one step above the threshold; `by chance`: how many a detector "
        "flagging each step independently at the series' own false-alarm rate would catch "
        "(an event of L steps with probability 1 - (1 - rate)^L); `step recall`: the mean "
        "over the series of the share of labelled steps above the threshold.",
        "",
        "| collection | detector | series | median rate | mean rate | within x2 | below half "
        "| above twice | events caught | by chance | step recall |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *summary_rows(rates, far, lengths),
        "",
        "The series gpvae misses: how many of them each other detector misses the same way (in "
        "brackets: how many it has within the factor 2), and how many every baseline (not the "
        "VAE) misses the same way.",
        "",
        "| collection | gpvae's misses | series | " + " | ".join(others) + " | every baseline |",
        "|---|---|---:|" + "---:|" * len(others) + "---:|",
        *shared_rows(rates, far, others),
    ]
    return "\n".join(head)


def record_args(p: argparse.ArgumentParser, models: Path, tag: str) -> None:
    """The options of the scripts that read the false-alarm records and write a docs
    region: --peers, --models (default ``models``), --tag (default ``tag``), --docs,
    --marker."""
    p.add_argument("--peers", default=str(PEERS_FILE), help="anomaly_alarm_peers.py's records")
    p.add_argument("--models", default=str(models), help="the refits of the kept runs")
    p.add_argument("--tag", default=tag, help="the refits' tag in --models")
    p.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--marker", default=None, help="write the table between these markers")


def emit(table: str, docs: str, marker: str | None) -> None:
    """Print ``table`` and, with ``marker``, write it between its markers in ``docs``."""
    print(table)
    if marker is not None:
        write_region(Path(docs), table, f"<!-- {marker} -->", f"<!-- /{marker} -->")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    record_args(p, MODELS_FILE, TAG)
    p.add_argument("--data-dir", default=None, help="the shared data (the events' lengths)")
    p.add_argument("--raw", action="store_true", help="the baselines' raw score (variant s1)")
    args = p.parse_args(argv)
    peers = json.loads(Path(args.peers).read_text())
    models = json.loads(Path(args.models).read_text())
    emit(render(peers, models, args.raw, args.data_dir, args.tag), args.docs, args.marker)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
