"""Anomaly detection on one labelled NAB series, the way a monitoring user would run it.

The model is fitted on the series' first 15% (NAB's probationary period, taken as normal),
its threshold is set on that same normal part for a 1% false-alarm rate and stored with the
model, and the rest of the series is scored without refitting. The four latent channels
start at four time scales (``lengthscale=[3, 6, 12, 24]`` steps): in the anomaly benchmarks
this bank did as well as the better single memory on each collection (docs/benchmarks.md,
"Session 33").

Printed: the flagged intervals (start, end, length, highest score), AUC-ROC and AUC-PR of the step
score against NAB's labelled windows, how many labelled windows get at least one flagged
step, and the false-alarm rate on the unlabelled scored steps. Written: ``anomalies.png``,
the score timeline with the labelled windows (orange) and the flagged intervals (red).

Run: ``python examples/anomaly_nab.py [--series realKnownCause/machine_temperature_system_failure]
[--data-dir ../shared/data] [--out out/anomaly_nab]`` (10-20 s on one CPU core). The
data are read from the shared data folder (``GPVAE_DATA`` or ``../shared/data``); nothing is
downloaded.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd

from gpvae import GPVAE
from gpvae.app.plots import plot_anomalies
from gpvae.data import merge_duplicate_times
from gpvae.datasets.anomaly import load_nab


def auc_roc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a labelled step outscores an unlabelled one
    (ties count half), from the ranks of the scores (ties get their mean rank)."""
    ranks = pd.Series(score).rank().to_numpy()
    pos = label.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auc_pr(score: np.ndarray, label: np.ndarray) -> float:
    """Average precision: the mean, over the labelled steps, of the precision at their
    score (steps ranked by descending score)."""
    order = np.argsort(-score, kind="stable")
    hits = label[order].astype(float)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def minutes(t: pd.Timestamp | np.datetime64) -> str:
    """A timestamp (``pd.Timestamp`` or ``np.datetime64``) to the minute (``2014-02-09T12:30``)."""
    return np.datetime_as_string(np.datetime64(t, "m"), unit="m")


def windows(label: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) step indices (end inclusive) of the runs of labelled steps."""
    edges = np.diff(np.concatenate([[0], label.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


def distinct_times(
    values: np.ndarray, times: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows that share a timestamp merged into one (their mean; NAB's files repeat a few),
    with a warning naming them; a merged row is labelled when any of its rows was."""
    out = merge_duplicate_times([values], [times])
    _, inverse = np.unique(times, return_inverse=True)
    merged_labels = np.zeros(len(out.times[0]), dtype=labels.dtype)
    np.maximum.at(merged_labels, inverse, labels)
    return out.X[0], out.times[0], merged_labels


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--series", default="realKnownCause/machine_temperature_system_failure")
    p.add_argument("--data-dir", default=None, help="shared data folder (default GPVAE_DATA)")
    p.add_argument("--out", default="out/anomaly_nab")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    s = load_nab(args.series, args.data_dir)
    print(s)
    train, train_times, _ = distinct_times(s.train, s.train_times, s.train_labels)
    test, test_times, labels = distinct_times(s.test, s.test_times, s.labels)
    model = GPVAE(
        latent_dim=4,
        lengthscale=[3, 6, 12, 24],  # one initial time scale per latent channel, in steps
        hidden=(64, 64),
        lr=3e-3,
        epochs=args.epochs,
        patience=5,
        window=64,  # train on half-overlapping windows of 64 steps
        calibrate=False,  # the intervals of imputations are not used here
        seed=args.seed,
    )
    t0 = time.perf_counter()
    model.fit(train[None], train_times[None])
    model.fit_threshold(train[None], train_times[None], false_alarm_rate=0.01)
    fitted = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = model.anomaly_scores(test[None], test_times[None])  # no refitting
    scored = time.perf_counter() - t0
    print(f"fit + threshold {fitted:.1f} s; scoring {len(test)} steps {scored:.1f} s")

    score = np.nan_to_num(np.asarray(res.step[0], dtype=np.float64), nan=-np.inf)
    flagged = np.asarray(res.flagged[0], dtype=bool)
    label = labels.astype(bool)
    intervals = res.intervals[0]
    longest = sorted(intervals, key=lambda iv: -iv["steps"])[:10]
    # the threshold is on the alarm: the rank of the step's score among the previous 256
    # steps' (a share); the score itself tells how far out an interval goes
    print(f"threshold {res.threshold:.3f}; {len(intervals)} flagged intervals, the longest:")
    for iv in sorted(longest, key=lambda iv: iv["start"]):
        print(
            f"  {minutes(iv['start_time'])} .. {minutes(iv['end_time'])} ({iv['steps']} "
            f"steps), highest score {score[iv['start'] : iv['end'] + 1].max():.2f}"
        )
    caught = sum(bool(flagged[a : b + 1].any()) for a, b in windows(label))
    print(
        f"AUC-ROC {auc_roc(score, label):.3f}, AUC-PR {auc_pr(score, label):.3f} "
        f"(labelled share {label.mean():.3f}); labelled windows with a flagged step: "
        f"{caught} of {len(windows(label))}; false-alarm rate on unlabelled steps "
        f"{flagged[~label].mean():.4f} (target 0.01)"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # the step score with the flagged steps: the alarm the threshold is for is a rank (a
    # share of the recent steps, a band from 0 to 1 when drawn)
    plot_anomalies(
        test_times,
        np.asarray(res.step[0], dtype=np.float64),
        None,
        flagged=flagged,
        values=test,
        feature_names=s.features,
        labels=label,
        title=f"NAB {s.name}: gpvae anomaly score",
        save=out / "anomalies.png",
    )
    print(f"wrote {out / 'anomalies.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
