"""The chance reference of the false-alarm goal (``benchmarks/anomaly_alarm_floor.py``): the
exceedance probability of an interpolated quantile, the chance of a rate within the factor 2,
and the docs region made from the committed record."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _beta_binomial_pmf(k: int, m: int, a: float, b: float) -> float:
    log_choose = math.lgamma(m + 1) - math.lgamma(k + 1) - math.lgamma(m - k + 1)
    log_beta = (
        math.lgamma(k + a) + math.lgamma(m - k + b) - math.lgamma(m + a + b)
        - math.lgamma(a) - math.lgamma(b) + math.lgamma(a + b)
    )  # fmt: skip
    return math.exp(log_choose + log_beta)


def test_an_order_statistic_threshold_matches_the_exact_beta_binomial(bench_script) -> None:  # type: ignore[no-untyped-def]
    """n = 101 and the 0.99 quantile fall on the second largest of the normal steps, whose
    exceedance probability is Beta(2, 100), so the flagged count of m steps is
    beta-binomial: the simulated chance of each side of the factor 2 matches it."""
    floor = bench_script("anomaly_alarm_floor")
    n, m, far, draws = 101, 1000, 0.01, 400_000
    p = floor.exceedance_draws(n, 1 - far, draws, np.random.default_rng(0))
    assert p.mean() == pytest.approx(2 / 102, abs=4 * np.sqrt(2 * 100 / (102**2 * 103) / draws))
    sides = floor.within_draws(n, m, far, draws, np.random.default_rng(1))
    pmf = [_beta_binomial_pmf(k, m, 2.0, 100.0) for k in range(m + 1)]
    exact = {
        -1: sum(q for k, q in enumerate(pmf) if k / m < far / 2),
        0: sum(q for k, q in enumerate(pmf) if far / 2 <= k / m <= 2 * far),
        1: sum(q for k, q in enumerate(pmf) if k / m > 2 * far),
    }
    for side, want in exact.items():
        got = float((sides == side).mean())
        assert got == pytest.approx(want, abs=4 * np.sqrt(want * (1 - want) / draws))


@pytest.mark.parametrize("n", [1, 2, 7, 186, 250])
def test_the_exceedance_matches_np_quantile_of_uniform_draws(bench_script, n: int) -> None:  # type: ignore[no-untyped-def]
    """Between order statistics (linear interpolation) the drawn exceedance has the mean and
    quartiles of ``1 - np.quantile(u, 0.99)`` over fresh uniform samples u."""
    floor = bench_script("anomaly_alarm_floor")
    rng = np.random.default_rng(2)
    fast = floor.exceedance_draws(n, 0.99, 200_000, rng)
    slow = np.array([1.0 - np.quantile(rng.random(n), 0.99) for _ in range(20_000)])
    se = slow.std() / np.sqrt(len(slow))
    assert fast.mean() == pytest.approx(slow.mean(), abs=4 * se)
    for q in (0.25, 0.5, 0.75):
        assert np.quantile(fast, q) == pytest.approx(np.quantile(slow, q), abs=5 * se)


def test_bad_sizes_are_refused_by_name(bench_script) -> None:  # type: ignore[no-untyped-def]
    floor = bench_script("anomaly_alarm_floor")
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="n: expected at least 1"):
        floor.exceedance_draws(0, 0.99, 10, rng)
    with pytest.raises(ValueError, match="quantile: expected"):
        floor.exceedance_draws(10, 1.0, 10, rng)
    with pytest.raises(ValueError, match="m: expected at least 1"):
        floor.within_draws(10, 0, 0.01, 10, rng)


def _record(dataset: str, series: str, rate: float) -> dict:  # type: ignore[type-arg]
    return {
        "dataset": dataset, "series": series, "tag": "t", "dev": False,
        "method": "gpvae/k5ph_tailmaxcap95_s32_b512", "false_alarm_rate_rank": rate,
        "false_alarm_rate_spread": rate, "false_alarm_rate": rate,
        "false_alarm_rate_smoothed": rate,
    }  # fmt: skip


def test_compute_counts_the_ideal_and_gpvaes_series_within(bench_script) -> None:  # type: ignore[no-untyped-def]
    """A series with a million normal and scored steps is within the factor 2 in every
    draw, one with 20 normal steps mostly not; gpvae's sides come from its rates."""
    floor = bench_script("anomaly_alarm_floor")
    peers = [
        {"dataset": "MSL", "series": "big", "far": 0.01, "n_train": 10**6,
         "n_test_normal": 10**6},
        {"dataset": "NAB", "series": "small", "far": 0.01, "n_train": 20, "n_test_normal": 100},
    ]  # fmt: skip
    models = [_record("MSL", "big", 0.03), _record("NAB", "small", 0.01)]
    rec = floor.compute(peers, models, "t", 4000, 0)
    by = {s["series"]: s for s in rec["per_series"]}
    assert by["big"]["p_within"] == 1.0
    assert by["big"]["gpvae_side"] == 1
    assert by["small"]["p_within"] < 0.5
    assert by["small"]["gpvae_side"] == 0
    smap, nab = rec["collections"]
    assert (smap["expected_within"], smap["p_all_within"], smap["gpvae_within"]) == (1.0, 1.0, 0)
    assert smap["p_at_most_gpvae"] == 0.0  # the ideal keeps it in every draw
    assert nab["expected_within"] == pytest.approx(by["small"]["p_within"])
    text = floor.render(rec, "cmd")
    assert "| NAB | 1 | 20 | 100 |" in text
    assert "| MSL big | 1000000 |" in text
    with pytest.raises(ValueError, match="no sizes"):
        floor.compute(peers[:1], models, "t", 10, 0)


def test_the_documented_command_leaves_the_docs_as_committed(bench_script, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The region regenerates from the committed record with the command printed in it, and
    the record itself from the committed false-alarm records (same draws, same seed)."""
    floor = bench_script("anomaly_alarm_floor")
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    copy = tmp_path / "benchmarks.md"
    copy.write_text(docs)
    assert floor.main(["--table", "--marker", "anomaly-alarm-floor", "--docs", str(copy)]) == 0
    assert copy.read_text() == docs
    committed = json.loads(floor.OUT_FILE.read_text())
    again = tmp_path / "floor.json"
    assert floor.main(["--out", str(again)]) == 0
    assert json.loads(again.read_text()) == committed
