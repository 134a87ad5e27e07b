"""Write the anomaly-detection table of docs/benchmarks.md from the anomaly records.

    python benchmarks/anomaly_table.py --tag TAG [--results PATH ...] [--variant V]
        [--peer-variants] [--compare TAG:VARIANT ...] [--marker NAME]

Means per data set (SMAP, MSL, SMAP+MSL, NAB) of the records of ``--tag`` (required: each
campaign's records have their own tag; ``--variant``, default ``anomaly.CHOSEN``, must be
one of the tag's gpvae score variants, and tag ``main``, session 8's, has none of today's),
the held-out series and the development series (the score variant was chosen on them)
apart, over the series that **every** method has a record for (so a partly run campaign
compares like with like; the number of series is shown), and the gpvae threshold's
false-alarm rate on the unlabelled test steps.
``--compare TAG:VARIANT`` adds gpvae's and the N(0, I) VAE's records of another tag and score
variant as further rows beside the tag's (e.g. a later campaign of the two beside the
baselines' records).

The table is printed; ``--marker NAME`` also writes it between the ``<!-- NAME -->`` and
``<!-- /NAME -->`` markers of docs/benchmarks.md (``anomaly-table``: the held-out table
the README cites; ``anomaly-table-s8``: the session-8 records of tag ``main``). Without
it nothing is written, so a command of an earlier session, whose rows are now part of
another table, prints its table and leaves every region as it is.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: The records of each collection (benchmarks/anomaly.py writes them there), and those of
#: sessions 12, 13 and 14 (tags s12, s13, s14, every collection; written with ``--out``,
#: since the SMAP/MSL file is near the repository's 1 MiB limit on tracked files).
RESULTS = (
    ROOT / "benchmarks" / "results" / "anomaly_nab.json",
    ROOT / "benchmarks" / "results" / "anomaly_smap_msl.json",
    ROOT / "benchmarks" / "results" / "anomaly_s12.json",
    ROOT / "benchmarks" / "results" / "anomaly_s13.json",
    ROOT / "benchmarks" / "results" / "anomaly_s14.json",
)
DOCS = ROOT / "docs" / "benchmarks.md"
#: The markers of the held-out table that the README cites (``--marker anomaly-table``).
BEGIN = "<!-- anomaly-table -->"
END = "<!-- /anomaly-table -->"
METHODS = ("gpvae", "vae", "pca", "iforest", "zscore", "cnn")
NAMES = {
    "gpvae": "gpvae (GP prior)",
    "vae": "same nets, N(0, I) prior (Donut-like)",
    "pca": "PCA reconstruction",
    "iforest": "Isolation Forest",
    "zscore": "rolling z-score",
    "cnn": "CNN forecaster (TSB-AD)",
}
#: The baselines, whose post-processing variant is PEER_CHOSEN of anomaly.py.
PEERS = ("pca", "iforest", "zscore", "cnn")
GROUPS = (("SMAP", ("SMAP",)), ("MSL", ("MSL",)), ("SMAP+MSL", ("SMAP", "MSL")), ("NAB", ("NAB",)))


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def dev_table(records: list[dict[str, Any]], tag: str = "") -> str:
    """Mean VUS-PR of every score variant over the development series (those with all):
    gpvae's and the VAE's score variants, then the baselines' post-processing variants."""
    by: dict[str, dict[tuple[str, str], float]] = {}
    for r in records:
        if r.get("dev") and "/" in r["method"]:
            by.setdefault(r["method"], {})[(r["dataset"], r["series"])] = r["vus_pr"]
    if not by:
        return ""
    common = set.intersection(*(set(v) for v in by.values()))
    out = []
    for methods, head in (
        (("gpvae", "vae"), "| variant | gpvae | N(0, I) VAE |"),
        (PEERS, "| variant | " + " | ".join(NAMES[m] for m in PEERS) + " |"),
    ):
        names = sorted({m.split("/", 1)[1] for m in by if m.split("/", 1)[0] in methods})
        if not names:
            continue
        lines = [head, "| --- |" + " ---: |" * len(methods)]
        for v in names:
            cells = []
            for m in methods:
                vals = by.get(f"{m}/{v}", {})
                mean = float(np.mean([vals[k] for k in common])) if common <= set(vals) else None
                cells.append(_fmt(mean))
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return (
        f"Variants on the development subset ({len(common)} series"
        + (f", tag {tag}" if tag else "")
        + "), mean VUS-PR:\n\n"
        + "\n\n".join(out)
    )


def _summary(
    recs: list[dict[str, Any]],
    variant: str,
    peer: dict[str, str],
    extra: dict[str, str] | None = None,
) -> tuple[list[str], list[str]]:
    """Rows of the means table and of the false-alarm table for these records (gpvae and
    the VAE: ``variant``; a baseline m: ``peer[m]``, or its record without a variant;
    ``extra``: name -> label of further rows, records whose method is that name; "gpvae@..."
    ones also get a false-alarm row)."""
    extra = extra or {}
    names = {**NAMES, **extra}
    by: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in recs:
        method = r["method"]
        if method in extra:
            pass
        elif "/" in method:
            base, v = method.split("/", 1)
            if v != peer.get(base, variant):
                continue
            method = base
        by.setdefault((r["dataset"], r["series"]), {})[method] = r
    order = ("gpvae", *(e for e in extra if e.startswith("gpvae@")), "vae",
             *(e for e in extra if e.startswith("vae@")), *METHODS[2:])  # fmt: skip
    methods = [m for m in order if any(m in v for v in by.values())]
    lines: list[str] = []
    fa_lines: list[str] = []
    for label, members in GROUPS:
        full = [k for k, v in by.items() if k[0] in members and all(m in v for m in methods)]
        if not full:
            continue
        for m in methods:
            rows = [by[k][m] for k in full]
            mean = {
                x: float(np.mean([r[x] for r in rows])) for x in ("vus_pr", "auc_pr", "auc_roc")
            }
            wall = float(np.mean([r["wall_seconds"] for r in rows]))
            lines.append(
                f"| {label} | {len(full)} | {names[m]} | {_fmt(mean['vus_pr'])} | "
                f"{_fmt(mean['auc_pr'])} | {_fmt(mean['auc_roc'])} | {wall:.1f} |"
            )
        for g in ("gpvae", *(e for e in extra if e.startswith("gpvae@"))):
            if g in methods:
                fa_lines += _false_alarms(label if g == "gpvae" else f"{label}, {extra[g]}",
                                          [by[k][g] for k in full])  # fmt: skip
    return lines, fa_lines


def _false_alarms(label: str, rows: list[dict[str, Any]]) -> list[str]:
    """The false-alarm row of one gpvae configuration's records (none without rates)."""
    fa = [r.get("false_alarm_rate") for r in rows]
    fa = [f for f in fa if f is not None]
    if not fa:
        return []
    target = rows[0]["config"]["far"]
    within = np.mean([(target / 2 <= f <= 2 * target) for f in fa])
    # the threshold on the smoothed score itself (records before the alarm score: -)
    sm = [r.get("false_alarm_rate_smoothed") for r in rows]
    sm_cells = "- | -"
    if all(f is not None for f in sm):
        sm_in = np.mean([(target / 2 <= f <= 2 * target) for f in sm])  # type: ignore[operator]
        sm_cells = f"{np.median(sm):.4f} | {sm_in:.0%}"
    extra = []
    # the alarm divided by its trailing spread (fit_threshold(spread=True)); and,
    # label-free, the threshold of the normal part's first 80% on its last 20%,
    # without and with the spread (records before these: -)
    for key in ("false_alarm_rate_spread", "false_alarm_rate_tail", "false_alarm_rate_tail_spread"):
        vals = [r.get(key) for r in rows]
        if all(f is not None for f in vals):
            v_in = np.mean([(target / 2 <= f <= 2 * target) for f in vals])  # type: ignore[operator]
            extra.append(f"{np.median(vals):.4f} | {v_in:.0%}")
        else:
            extra.append("- | -")
    return [
        f"| {label} | {len(fa)} | {target:g} | {np.median(fa):.4f} | {np.mean(fa):.4f} | "
        f"{within:.0%} | {sm_cells} | " + " | ".join(extra) + " |"
    ]


def render(
    records: list[dict[str, Any]],
    tag: str,
    variant: str,
    peer: dict[str, str] | None = None,
    compare: Sequence[str] = (),
) -> str:
    """The held-out series (no choice was made on them) and the development series, each
    with its own means and false-alarm table; ``compare``: "TAG:VARIANT" of further gpvae
    rows (their records of that tag and variant, beside this tag's)."""
    peer = peer or {}
    recs = [r for r in records if r.get("tag") == tag]
    extra: dict[str, str] = {}
    for item in compare:
        ctag, cvar = item.split(":", 1)
        for m in ("gpvae", "vae"):
            name = f"{m}@{ctag}"
            new = [
                {**r, "method": name}
                for r in records
                if r.get("tag") == ctag and r["method"] == f"{m}/{cvar}"
            ]
            if new:
                extra[name] = f"{NAMES[m]}, {ctag} {cvar}"
                recs += new
    parts = []
    for title, subset in (
        ("Held-out series (no choice was made on them)", [r for r in recs if not r.get("dev")]),
        (
            "Development series (the score variant was chosen on them)",
            [r for r in recs if r.get("dev")],
        ),
    ):
        lines, fa_lines = _summary(subset, variant, peer, extra)
        if not lines:
            continue
        out = (
            f"**{title}.**\n\n"
            "| data set | series | method | VUS-PR | AUC-PR | AUC-ROC | wall s / series |\n"
            "| --- | ---: | --- | ---: | ---: | ---: | ---: |\n" + "\n".join(lines)
        )
        if fa_lines:
            out += (
                "\n\nThreshold learned from the normal (training) part, applied to the scored "
                "part: share of its unlabelled steps flagged (gpvae). Alarm: the score the "
                'threshold is compared with (`alarm_smooth` steps); "smoothed": the '
                "threshold on the smoothed ranking score itself, for comparison; "
                '"spread": the alarm divided by its trailing spread '
                "(`fit_threshold(spread=True)`, the default since session 12, when rows with "
                '"cap" in their variant have the novelty cap as well, and those with "cap95" '
                "the spread from the 95% quantile, the default since session 13, not the 90%); "
                '"tail": label-free, the threshold from the '
                "first 80% of the normal part applied to its last 20% (same fit), without "
                "and with the spread (`-`: records before these).\n\n"
                "| data set | series | target rate | median | mean | series within 2x | "
                "smoothed: median | smoothed: within 2x | spread: median | spread: within 2x | "
                "tail: median | tail: within 2x | tail, spread: median | "
                "tail, spread: within 2x |\n"
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
                "---: | ---: | ---: |\n" + "\n".join(fa_lines)
            )
        parts.append(out)
    out = "\n\n".join(parts)
    cfg = next((r["config"] for r in recs if r["method"].startswith("gpvae/")), None)
    if cfg:
        out += (
            f"\n\nScore variant: {variant}"
            + ("; baselines: " + ", ".join(f"{m} {v}" for m, v in peer.items()) if peer else "")
            + "".join(f"; {label} (tag {n.split('@')[1]})" for n, label in extra.items())
            + ". Settings: "
            + ", ".join(f"{k}={v}" for k, v in cfg.items())
            + "."
        )
    devs = [dev_table([r for r in recs if r.get("tag") == tag])]
    for ctag in dict.fromkeys(item.split(":", 1)[0] for item in compare):
        devs.append(dev_table([r for r in records if r.get("tag") == ctag], ctag))
    return out + "".join("\n\n" + d for d in devs if d)


def collection(dataset: str) -> str:
    """The collection a data set's series are compared within: SMAP and MSL together."""
    return "SMAP+MSL" if dataset in ("SMAP", "MSL") else dataset


def write_region(docs: Path, table: str, begin: str = BEGIN, end: str = END) -> None:
    """Put ``table`` between the markers ``begin`` and ``end`` of ``docs`` (the region
    appended at the end when the markers are missing)."""
    text = docs.read_text()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n{begin}\n{table}\n{end}\n"
    docs.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", nargs="+", default=[str(r) for r in RESULTS])
    p.add_argument(
        "--tag",
        required=True,
        help="The campaign whose records make the table (e.g. s10; main: session 8's).",
    )
    p.add_argument("--docs", default=str(DOCS))
    p.add_argument("--variant", default=None, help="Default: CHOSEN of anomaly.py.")
    p.add_argument(
        "--peer-variants",
        action="store_true",
        help="Report the baselines' PEER_CHOSEN variants of anomaly.py (records from session "
        "10 on); without it, their records without a variant.",
    )
    p.add_argument(
        "--compare",
        nargs="+",
        default=[],
        metavar="TAG:VARIANT",
        help="Add gpvae's records of this tag and score variant as a further row (e.g. a "
        "gpvae-only campaign beside the tag's baselines).",
    )
    p.add_argument(
        "--marker",
        default=None,
        help="Also write the table between the <!-- NAME --> and <!-- /NAME --> markers of "
        "--docs (e.g. anomaly-table); without it the table is only printed.",
    )
    args = p.parse_args(argv)
    import ast
    import re

    src = (ROOT / "benchmarks" / "anomaly.py").read_text()
    if args.variant is None:
        found = re.search(r'^CHOSEN = "([a-z0-9_]+)"', src, re.M)
        args.variant = found.group(1) if found else "k5_norm_s1"
    peer: dict[str, str] = {}
    if args.peer_variants:
        found_peer = re.search(r"^PEER_CHOSEN = (\{[^}]*\})", src, re.M)
        peer = ast.literal_eval(found_peer.group(1)) if found_peer else {}
    records = [r for path in args.results for r in json.loads(Path(path).read_text())]
    variants = sorted(
        {r["method"].split("/", 1)[1] for r in records
         if r.get("tag") == args.tag and r["method"].startswith("gpvae/")}
    )  # fmt: skip
    if args.variant not in variants:
        # a table without gpvae's rows (tag main has no records of today's CHOSEN)
        p.error(
            f"--variant: expected a score variant of tag {args.tag!r}'s gpvae records "
            f"({', '.join(variants) or 'none'}), found {args.variant!r}"
        )
    table = render(records, args.tag, args.variant, peer, args.compare)
    if args.marker:
        write_region(Path(args.docs), table, f"<!-- {args.marker} -->", f"<!-- /{args.marker} -->")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
