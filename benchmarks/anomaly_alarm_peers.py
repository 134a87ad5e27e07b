"""False alarms of the baselines under the threshold rule gpvae is judged by (issue 17).

The goal "the threshold from training data keeps the false-alarm rate on the anomaly-free
part of the test data within a factor 2 of the target" is measured for gpvae and the
N(0, I) VAE only (``anomaly.py``'s ``false_alarm_rate*``). This script asks the same
question of the other detectors of the anomaly table, on the same series and splits, so that
a miss can be read as the detector's or as the series':

- each baseline (``anomaly.py``'s ``pca``, ``iforest``, ``zscore``, ``cnn``, unchanged) scores
  the normal part (the part it was fit on: in-sample, as gpvae's threshold is) and the scored
  part;
- both scores go through the same post-processing (``anomaly.PEER_VARIANTS``: ``s1``, the raw
  score, and the baseline's reported variant ``anomaly.PEER_CHOSEN``): the scored part
  exactly as ``anomaly.peer_variants`` takes it for the anomaly table, and the normal part
  with the trailing median's history before its first step at the normal part's median;
- the threshold is the empirical ``1 - far`` quantile of the normal part's post-processed
  score (steps without one left out: the rolling z-score's first window);
- ``false_alarm_rate`` is the share of the scored part's unlabelled steps above it;
  ``step_recall`` the share of its labelled steps above it, ``events_flagged`` how many of its
  ``events`` (runs of labelled steps) have a step above it.

Labels are read only to score the alarm on the scored part, as for gpvae. Run
it in the benchmark environment (TSB-AD's sliding window and CNN):

    PYTHONPATH=src .venv-bench/bin/python benchmarks/anomaly_alarm_peers.py \
        --data-dir ../shared/data

Each (series, method) appends one record to ``--out`` as it finishes; a rerun skips the
(series, method, seed) runs already there. ``anomaly_alarm_table.py`` makes the table from
the records, beside gpvae's and the VAE's.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anomaly as A
from _protocol import ResultsFile

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "anomaly_alarm_peers.json"
PEERS = ("pca", "iforest", "zscore", "cnn")
RECORDED_VARIANTS = ("s1",)  # plus each method's PEER_CHOSEN


class AlarmResults(ResultsFile):
    """The records: one per (dataset, series, method, seed)."""

    KEY = ("dataset", "series", "method", "seed")


def post_process(score: np.ndarray, name: str, level: float | None = None) -> np.ndarray:
    """``anomaly.PEER_VARIANTS[name]`` applied to a whole score series: less its trailing
    median (the steps before the series counting as ``level``, default the series' median),
    then its trailing mean."""
    from gpvae.estimator.anomaly import _trailing_mean, _trailing_median

    x = np.asarray(score, dtype=np.float64)
    smooth, base = A.PEER_VARIANTS[name]
    if base:
        start = float(np.nanmedian(x)) if level is None else level
        x = x - _trailing_median(x, base, start)
    return _trailing_mean(x, smooth)


def pca_scores(s: Any, args: argparse.Namespace, w: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA's reconstruction error on the normal part and on ``PEER_CONTEXT`` normal steps +
    the scored part (``anomaly.run_pca``'s score)."""
    from sklearn.decomposition import PCA

    tr, te = A.peer_inputs(s, w)
    pca = PCA(n_components=0.9, random_state=0).fit(tr)

    def err(x: np.ndarray) -> np.ndarray:
        return ((x - pca.inverse_transform(pca.transform(x))) ** 2).sum(1)

    return err(tr), err(te)


def iforest_scores(s: Any, args: argparse.Namespace, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Isolation Forest's score (``anomaly.run_iforest``'s), both parts."""
    from sklearn.ensemble import IsolationForest

    tr, te = A.peer_inputs(s, w)
    forest = IsolationForest(n_estimators=100, random_state=args.seed).fit(tr)
    return -forest.score_samples(tr), -forest.score_samples(te)


def zscore_scores(s: Any, args: argparse.Namespace, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The rolling z-score on the normal part alone, and on the normal part's last steps +
    the scored part (as ``anomaly.run_zscore``)."""
    tr, te = A.standardise(s)
    w = max(2, w)
    n_ctx = min(len(tr), max(w, A.PEER_CONTEXT))
    full = A.rolling_zscore(np.concatenate([tr[-n_ctx:], te]), w)
    return A.rolling_zscore(tr, w), full[n_ctx - min(n_ctx, A.PEER_CONTEXT) :]


def cnn_scores(s: Any, args: argparse.Namespace, w: int) -> tuple[np.ndarray, np.ndarray]:
    """TSB-AD's CNN forecaster trained as in ``anomaly.run_cnn`` (``anomaly.train_cnn``);
    its prediction error on the normal part (from step 100, the first with a full window)
    and on the context + scored part."""
    tr, te = A.standardise(s)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        clf, _ = A.train_cnn(tr, args)
        on_train = np.asarray(clf.decision_function(tr), dtype=np.float64).ravel()
        n_ctx = min(len(tr), 100 + A.PEER_CONTEXT)
        ctx = np.concatenate([tr[-n_ctx:], te])
        on_test = np.asarray(clf.decision_function(ctx), dtype=np.float64).ravel()
    return on_train[min(100, len(tr)) :], on_test[min(100, n_ctx) :]


SCORERS: dict[str, Callable[[Any, argparse.Namespace, int], tuple[np.ndarray, np.ndarray]]] = {
    "pca": pca_scores,
    "iforest": iforest_scores,
    "zscore": zscore_scores,
    "cnn": cnn_scores,
}


def scored_part(on_test: np.ndarray, n_test: int, name: str) -> np.ndarray:
    """The last ``n_test`` steps of ``on_test`` post-processed as ``anomaly.peer_variants``
    does for the anomaly table: the steps before them are history, and the trailing median's
    history before the first of those counts as their median."""
    level = float(np.median(on_test[: len(on_test) - n_test]))
    return post_process(on_test, name, level)[len(on_test) - n_test :]


def alarm_record(
    method: str, s: Any, on_train: np.ndarray, on_test: np.ndarray, far: float
) -> dict[str, Any]:
    """The false-alarm rates of one baseline's scores: per post-processing variant, the
    threshold from the normal part and the share of the scored part's unlabelled steps
    above it. ``on_test`` holds the last ``len(on_test) - len(s.test)`` normal steps in
    front of the scored part (the post-processing's history), as ``anomaly.peer_variants``
    takes it."""
    n_test = len(s.test)
    normal = np.asarray(s.labels) == 0
    out: dict[str, Any] = {}
    for name in (*RECORDED_VARIANTS, A.PEER_CHOSEN[method]):
        pp_train = post_process(on_train, name)
        pp_train = pp_train[np.isfinite(pp_train)]
        pp_test = scored_part(on_test, n_test, name)
        threshold = float(np.quantile(pp_train, 1.0 - far))
        flagged = np.nan_to_num(pp_test, nan=-np.inf) > threshold
        out[name] = {
            "threshold": threshold,
            "false_alarm_rate": float(flagged[normal].mean()) if normal.any() else None,
            "n_threshold_steps": len(pp_train),
            **A.detected(flagged, ~normal),
        }
    return out


def run(args: argparse.Namespace) -> int:
    store = AlarmResults(Path(args.out))
    done = {(r["dataset"], r["series"], r["method"], r["seed"]) for r in store.records}
    series = A.all_series(args.data_dir, args.datasets)
    if args.series:
        wanted = set(args.series)
        series = [x for x in series if x[1] in wanted]
    k, n = args.shard
    series = series[k::n]
    for kind, name in series:
        s = A.load(kind, name, args.data_dir)
        w = A.period(s)
        for method in args.methods:
            if (s.dataset, s.name, method, args.seed) in done:
                continue
            t0 = time.perf_counter()
            on_train, on_test = SCORERS[method](s, args, w)
            rec = {
                "dataset": s.dataset,
                "series": s.name,
                "method": method,
                "seed": args.seed,
                "far": args.far,
                "dev": f"{s.dataset}:{s.name}" in A.DEV_SERIES,
                "n_train": len(s.train),
                "n_test": len(s.test),
                "n_test_normal": int((np.asarray(s.labels) == 0).sum()),
                "sliding_window": w,
                "variants": alarm_record(method, s, on_train, on_test, args.far),
                "wall_seconds": time.perf_counter() - t0,
                "command": args.command,
            }
            if method == "cnn":
                rec["config"] = {"epochs": args.epochs, "patience": args.patience}
            store.add(rec)
            chosen = rec["variants"][A.PEER_CHOSEN[method]]["false_alarm_rate"]
            print(f"{s.dataset}:{s.name} {method}: rate {chosen}", flush=True)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="the shared data folder")
    p.add_argument("--datasets", nargs="+", default=["smap_msl", "nab"],
                   choices=["smap_msl", "nab"])  # fmt: skip
    p.add_argument("--methods", nargs="+", default=list(PEERS), choices=PEERS)
    p.add_argument("--series", nargs="*", default=None, help="only these series names")
    p.add_argument("--far", type=float, default=0.01, help="target false-alarm rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=40, help="the CNN's cap (as recorded)")
    p.add_argument("--patience", type=int, default=5, help="the CNN's patience")
    p.add_argument("--shard", default="0/1", help="K/N: every N-th series from the K-th")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    try:
        k, n = (int(x) for x in args.shard.split("/"))
        if not 0 <= k < n:
            raise ValueError
    except ValueError:
        p.error(f"--shard: expected K/N with 0 <= K < N, found {args.shard!r}")
    args.shard = (k, n)
    if not 0.0 < args.far < 0.5:
        p.error(f"--far: expected a rate in (0, 0.5), found {args.far}")
    args.command = "python benchmarks/anomaly_alarm_peers.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
