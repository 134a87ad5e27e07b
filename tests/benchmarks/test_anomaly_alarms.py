"""The false-alarm comparison of issue 17 (``benchmarks/anomaly_alarm_peers.py`` and
``benchmarks/anomaly_alarm_table.py``): the baselines' thresholds from their normal-part
scores, what an alarm catches, and the docs region made from the committed records."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pytest

from gpvae.datasets.anomaly import AnomalySeries

ROOT = Path(__file__).resolve().parents[2]


def _series(train_len: int, labels: np.ndarray, dims: int = 3, seed: int = 0) -> AnomalySeries:
    rng = np.random.default_rng(seed)
    test_len = len(labels)
    return AnomalySeries(
        name="toy",
        dataset="MSL",
        train=rng.normal(size=(train_len, dims)),
        test=rng.normal(size=(test_len, dims)),
        labels=labels.astype(np.uint8),
        train_times=np.arange(train_len),
        test_times=np.arange(train_len, train_len + test_len),
        features=[f"f{j}" for j in range(dims)],
    )


def test_detected_counts_labelled_steps_and_runs(bench_script) -> None:  # type: ignore[no-untyped-def]
    anomaly = bench_script("anomaly")
    labels = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 1], dtype=bool)
    flagged = np.array([0, 0, 1, 0, 1, 0, 0, 0, 0, 1], dtype=bool)
    caught = anomaly.detected(flagged, labels)
    # three runs (1-2, 5, 7-9); the first and the last have a flagged step
    assert caught == {"step_recall": 2 / 6, "events": 3, "events_flagged": 2}
    none = anomaly.detected(flagged, np.zeros(10, dtype=bool))
    assert none == {"step_recall": None, "events": 0, "events_flagged": 0}


def test_the_threshold_is_the_normal_parts_quantile(bench_script) -> None:  # type: ignore[no-untyped-def]
    """With the raw score (s1), the threshold is the 0.99 quantile of the normal part's
    scores, the rate counts the unlabelled scored steps above it, and the labelled ones go to
    the detection fields only."""
    peers = bench_script("anomaly_alarm_peers")
    labels = np.zeros(200, dtype=bool)
    labels[50:60] = True
    s = _series(300, labels)
    on_train = np.arange(300, dtype=np.float64)  # quantile 0.99: 296.01
    on_test = np.full(200, 10.0)
    on_test[[5, 6, 7, 100]] = 400.0  # 4 false alarms among 190 unlabelled steps
    on_test[55] = 500.0  # one labelled step of the one event
    rec = peers.alarm_record("zscore", s, on_train, on_test, 0.01)["s1"]
    assert rec["threshold"] == pytest.approx(np.quantile(on_train, 0.99))
    assert rec["false_alarm_rate"] == pytest.approx(4 / 190)
    assert (rec["step_recall"], rec["events"], rec["events_flagged"]) == (0.1, 1, 1)
    # the normal part's NaN steps (the rolling z-score's first window) are left out
    gaps = on_train.copy()
    gaps[:100] = np.nan
    rec = peers.alarm_record("zscore", s, gaps, on_test, 0.01)["s1"]
    assert rec["n_threshold_steps"] == 200
    assert rec["threshold"] == pytest.approx(np.quantile(on_train[100:], 0.99))


@pytest.mark.parametrize("method", ["pca", "iforest", "zscore"])
@pytest.mark.parametrize("train_len", [700, 300])
def test_the_alarm_is_on_the_anomaly_tables_score(bench_script, method, train_len) -> None:  # type: ignore[no-untyped-def]
    """The threshold is applied to the score the anomaly table grades (the baseline's runner
    in anomaly.py, post-processed as there), with a normal part longer and shorter than the
    post-processing's context; the records hold the raw score and the reported variant."""
    anomaly = bench_script("anomaly")
    peers = bench_script("anomaly_alarm_peers")
    labels = np.zeros(400, dtype=bool)
    labels[200:230] = True
    s = _series(train_len, labels, seed=train_len)
    args = argparse.Namespace(peer_variants="all", seed=0)
    graded = anomaly.RUNNERS[method](s, args, 24)["variants"]
    on_train, on_test = peers.SCORERS[method](s, args, 24)
    got = peers.alarm_record(method, s, on_train, on_test, 0.01)
    assert set(got) == {"s1", anomaly.PEER_CHOSEN[method]}
    for name in anomaly.PEER_VARIANTS:  # the same score, bit for bit
        ours = peers.scored_part(on_test, len(s.test), name)
        np.testing.assert_array_equal(ours, graded[name]["score"], err_msg=name)
    for name, rec in got.items():
        normal_part = peers.post_process(on_train, name)
        threshold = float(np.quantile(normal_part[np.isfinite(normal_part)], 0.99))
        flagged = np.nan_to_num(graded[name]["score"], nan=-np.inf) > threshold
        assert rec["threshold"] == threshold
        assert rec["false_alarm_rate"] == float(flagged[~labels].mean()), name
        assert rec["step_recall"] == float(flagged[labels].mean()), name


@pytest.fixture(scope="module")
def anomaly_data() -> Path:
    data = Path(os.environ.get("GPVAE_DATA", ROOT.parent / "shared" / "data"))
    if not (data / "smap_msl").is_dir() or not (data / "nab").is_dir():
        pytest.skip(f"SMAP/MSL and NAB not found under {data} (set GPVAE_DATA)")
    return data


def test_the_documented_command_leaves_the_docs_as_committed(  # type: ignore[no-untyped-def]
    bench_script, anomaly_data, tmp_path
) -> None:
    """Every documented command of the table (session 37's and session 44's) regenerates
    its region as committed."""
    table = bench_script("anomaly_alarm_table")
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    lines = [ln for ln in docs.splitlines() if ln.startswith("python benchmarks/anomaly_alarm_t")]
    assert len(lines) == 2
    copy = tmp_path / "benchmarks.md"
    copy.write_text(docs)
    for line in lines:
        argv = line.split()[2:]
        argv[argv.index("--data-dir") + 1] = str(anomaly_data)
        assert table.main([*argv, "--docs", str(copy)]) == 0
    assert copy.read_text() == docs
