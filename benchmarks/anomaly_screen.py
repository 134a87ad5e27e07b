"""Label-free screens of gpvae's alarm rules on dumped entry scores (``anomaly.py --dump``).

A rule is an alarm (``profile_from_entries`` keywords: the spread's quantile) and a way to
read the threshold off the normal data's alarm scores (their ``1 - far`` quantile, or a
tail fitted above a lower quantile). Each check gives one false-alarm rate per series, and
the summary counts the series within a factor 2 of ``--far``:

- ``tail`` (in-sample): dumps of an ordinary run (``KEY_train``: the whole normal part, on
  which the model was fit). The profile of its first 80%, the rate on its last 20% (the
  check ``anomaly.py`` records as ``false_alarm_rate_tail``).
- ``oos`` (out-of-sample): dumps of a run with ``--threshold-holdout 0.2`` (``KEY_fit``:
  the first 80%, on which the model was fit, scored in-sample; ``KEY_train``: the held-back
  20%). The profile of ``KEY_fit``, the rate on ``KEY_train``: as new normal data meets a
  model fit on other normal data.
- ``dev``: the development series' test rates (``DEV_SERIES`` of ``anomaly.py``; the only
  labels read).

No held-out label is read. The entry scores are those of the variant ``k5ph`` (5 folds and
the prior's score with weight 0.5, as ``fit_threshold`` combines them), on the tail scale
with the largest feature, the novelty cap and the spread baseline over 512 steps.

    python benchmarks/anomaly_screen.py --dumps DUMPS... --oos OOS_DUMPS... --out screen.json
    python benchmarks/anomaly_screen.py --records screen.json --rules q95,rank256 --marker M
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import write_region
from anomaly import DEV_SERIES

from gpvae.estimator.anomaly import (
    alarm_scores,
    combine_prior,
    profile_from_entries,
    spread_ratio,
)

ROOT = Path(__file__).resolve().parents[1]
#: Share of the normal part at its end that the in-sample check rates.
TAIL = 0.2
#: Prior weight of the screened entry scores (the variant ``k5ph``).
PRIOR_WEIGHT = 0.5


def _finite(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[np.isfinite(a)]


def empirical(a: np.ndarray, far: float) -> float:
    """The ``1 - far`` quantile (``fit_threshold``'s threshold)."""
    return float(np.quantile(_finite(a), 1.0 - far))


def exponential_tail(share: float) -> Callable[[np.ndarray, float], float]:
    """The level exceeded with probability ``far`` under an exponential tail fitted to the
    scores above their ``1 - share`` quantile (mean excess), as peaks-over-threshold
    detectors read it."""

    def rule(a: np.ndarray, far: float) -> float:
        x = _finite(a)
        u = float(np.quantile(x, 1.0 - share))
        excess = x[x > u] - u
        return u + float(excess.mean()) * np.log(share / far) if excess.size else u

    return rule


def pareto_tail(share: float) -> Callable[[np.ndarray, float], float]:
    """The same with a generalised Pareto tail (maximum likelihood, location 0)."""

    def rule(a: np.ndarray, far: float) -> float:
        from scipy import stats

        x = _finite(a)
        u = float(np.quantile(x, 1.0 - share))
        excess = x[x > u] - u
        if excess.size < 5:
            return empirical(x, far)
        c, _, scale = stats.genpareto.fit(excess, floc=0.0)
        r = share / far
        return u + (scale * np.log(r) if abs(c) < 1e-6 else scale / c * (r**c - 1.0))

    return rule


def harrell_davis(a: np.ndarray, far: float) -> float:
    """The Harrell-Davis estimate of the ``1 - far`` quantile (every order statistic,
    weighted: less variable than one of them for short normal parts)."""
    from scipy import stats

    x = np.sort(_finite(a))
    n, q = len(x), 1.0 - far
    grid = stats.beta.cdf(np.arange(n + 1) / n, (n + 1) * q, (n + 1) * (1 - q))
    return float((np.diff(grid) * x).sum())


#: name -> (spread quantile, threshold rule[, rank window]): ``rankW`` is the trailing-rank
#: alarm over W steps (session 44; ``profile_from_entries(rank_window=W)``), the others the
#: spread alarm.
RULES: dict[str, tuple[Any, ...]] = {
    "q90": (0.9, empirical),
    "q925": (0.925, empirical),
    "q95": (0.95, empirical),
    "q97": (0.97, empirical),
    "q90_exp05": (0.9, exponential_tail(0.05)),
    "q90_exp10": (0.9, exponential_tail(0.10)),
    "q90_gpd05": (0.9, pareto_tail(0.05)),
    "q90_hd": (0.9, harrell_davis),
    "rank256": (0.95, empirical, 256),
    "rank512": (0.95, empirical, 512),
    "rank1024": (0.95, empirical, 1024),
}


def _entries(z: Any, part: str, ratio: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
    """The k5ph entry scores of ``part`` and the prior ratio used (from ``part`` if None)."""
    e, p = z[f"k5_{part}"].astype(np.float64), z[f"prior_{part}"].astype(np.float64)
    if ratio is None:
        ratio = spread_ratio([e], [p])
    return combine_prior([e], [p], PRIOR_WEIGHT, ratio)[0], ratio


def _profile(fit: np.ndarray, quantile: float, far: float, rank: int = 0) -> Any:
    return profile_from_entries([fit], far, 16, 5, 128, 32, True, 512, 1, True,
                                feature_scale="tail", combine="max", novelty="cap",
                                spread_quantile=quantile, rank_window=rank)  # fmt: skip


def rate(
    fit: np.ndarray, new: np.ndarray, quantile: float, rule: Any, far: float, rank: int = 0
) -> float:
    """Share of ``new``'s steps flagged by the rule learned from ``fit``, ``new`` continuing
    ``fit`` (the alarm's trailing median and spread, or rank, run on from it)."""
    prof = _profile(fit, quantile, far, rank)
    thr = rule(alarm_scores(fit, prof), far)
    a = np.nan_to_num(alarm_scores(np.concatenate([fit, new]), prof), nan=-np.inf)
    return float((a[len(fit) :] > thr).mean())


def _key(path: Path) -> tuple[str, str]:
    """(data set, series name) of a dump ``DATASET_NAME_gpvae.npz``."""
    ds, name = path.name[: -len("_gpvae.npz")].split("_", 1)
    return ds, name.replace("__", "/")


def screen(dumps: Sequence[Path], oos: Sequence[Path], rules: Sequence[str],
           far: float) -> list[dict[str, Any]]:  # fmt: skip
    """One record per series: its data set, name, ``dev`` and each check's rate per rule."""
    dev = set(DEV_SERIES)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for folders, check in ((dumps, "tail"), (oos, "oos")):
        for path in sorted(p for d in folders for p in d.glob("*_gpvae.npz")):
            ds, name = _key(path)
            rec = out.setdefault((ds, name), {"dataset": ds, "series": name,
                                              "dev": f"{ds}:{name}" in dev})  # fmt: skip
            with np.load(path) as z:
                rec.update(_checks(z, check, rec["dev"], rules, far))
    return list(out.values())


def _checks(z: Any, check: str, dev: bool, rules: Sequence[str], far: float) -> dict[str, Any]:
    """The rates of one dump: ``tail`` (and ``dev_test`` for a development series) from an
    ordinary run's, ``oos`` from a held-back run's."""
    if check == "oos":
        e_fit, ratio = _entries(z, "fit")
        e_held, _ = _entries(z, "train", ratio)
        return {"oos": {r: rate(e_fit, e_held, *_rule(r, far)) for r in rules}}
    e_tr, ratio = _entries(z, "train")
    cut = round((1.0 - TAIL) * len(e_tr))
    out = {"tail": {r: rate(e_tr[:cut], e_tr[cut:], *_rule(r, far)) for r in rules}}
    if dev:
        e_te, _ = _entries(z, "test", ratio)
        normal = z["labels"] == 0
        out["dev_test"] = {r: _dev_rate(e_tr, e_te, normal, RULES[r], far) for r in rules}
    return out


def _rule(name: str, far: float) -> tuple[Any, ...]:
    """``rate``'s arguments after ``fit`` and ``new`` for the rule ``name``."""
    quantile, read, *rank = RULES[name]
    return quantile, read, far, *rank


def _dev_rate(e_tr: np.ndarray, e_te: np.ndarray, normal: np.ndarray, rule: Any,
              far: float) -> float:  # fmt: skip
    """A development series' test rate: the alarm on its whole test part (as ``detect``
    scores it), the share of its normal steps flagged."""
    quantile, read, *rank = rule
    prof = _profile(e_tr, quantile, far, *rank)
    thr = read(alarm_scores(e_tr, prof), far)
    flags = np.nan_to_num(alarm_scores(e_te, prof), nan=-np.inf) > thr
    return float(flags[normal].mean())


def summary(records: list[dict[str, Any]], rules: Sequence[str], far: float) -> str:
    """Per check and group: series within a factor 2 / below / above, per rule."""
    lines = []
    groups = ("MSL", "NAB", "SMAP")
    for check in ("tail", "oos", "dev_test"):
        rows = [r for r in records if check in r]
        if not rows:
            continue
        parts = [("dev", [r for r in rows if r["dev"]])] if any(r["dev"] for r in rows) else []
        if check != "dev_test":
            held = [(g, [r for r in rows if r["dataset"] == g and not r["dev"]]) for g in groups]
            parts = [(g, rs) for g, rs in held if rs] + parts
        head = " | ".join(f"{g} ({len(rs)})" for g, rs in parts)
        lines += [f"{check}: within 2x / below / above", f"| rule | {head} |",
                  "|---" * (len(parts) + 1) + "|"]  # fmt: skip
        for rule in rules:
            cells = []
            for _, rs in parts:
                v = np.array([r[check][rule] for r in rs])
                low, high = int((v < far / 2).sum()), int((v > 2 * far).sum())
                cells.append(f"{len(v) - low - high} / {low} / {high}")
            lines.append(f"| {rule} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dumps", type=Path, nargs="*", default=[],
                   help="Folders of dumps of an ordinary run.")  # fmt: skip
    p.add_argument("--oos", type=Path, nargs="*", default=[],
                   help="Folders of dumps of a run with --threshold-holdout 0.2.")  # fmt: skip
    p.add_argument("--rules", default=",".join(RULES), help="Names of RULES.")
    p.add_argument("--far", type=float, default=0.01, help="Target false-alarm rate.")
    p.add_argument("--out", type=Path, default=None, help="Write the records here (JSON).")
    p.add_argument("--records", type=Path, default=None,
                   help="Screen nothing: summarise these records (an earlier --out).")  # fmt: skip
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--marker", default=None, help="Write the summary between these markers.")
    args = p.parse_args(argv)
    rules = args.rules.split(",")
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        p.error(f"--rules: unknown {unknown}, expected names of {list(RULES)}")
    if args.records is not None:
        records = json.loads(args.records.read_text())
    else:
        records = screen(args.dumps, args.oos, rules, args.far)
    if args.out:
        clean = [{k: ({r: round(x, 6) for r, x in v.items()} if isinstance(v, dict) else v)
                  for k, v in rec.items()} for rec in records]  # fmt: skip
        args.out.write_text(json.dumps(clean, indent=1) + "\n")
    table = summary(records, rules, args.far)
    print(table)
    if args.marker is not None:
        write_region(args.docs, table.rstrip("\n"), args.marker, "--marker")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
