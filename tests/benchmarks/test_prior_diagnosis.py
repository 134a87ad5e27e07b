"""The prior diagnosis (``benchmarks/anomaly_prior.py``): the kernel's memory, the loss
parts, the latent paths' measures and the score separations."""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest


@pytest.fixture(scope="module")
def prior(bench_script: Callable[[str], ModuleType]) -> ModuleType:
    return bench_script("anomaly_prior")


def test_the_memory_is_where_the_matern32_correlation_reaches_the_level(prior) -> None:  # type: ignore[no-untyped-def]
    for ls in (0.7, 3.0, 16.0):
        lag = prior.matern32_memory(ls, 0.1)
        assert prior.matern32_correlation(lag, ls) == pytest.approx(0.1, abs=1e-9)
        assert prior.matern32_correlation(0.9 * lag, ls) > 0.1
    # proportional to the lengthscale; about 2.25 lengthscales at 0.1
    assert prior.matern32_memory(16.0) == pytest.approx(16.0 / 3.0 * prior.matern32_memory(3.0))
    assert prior.matern32_memory(1.0) == pytest.approx(3.88972 / math.sqrt(3.0), abs=1e-4)
    assert prior.matern32_correlation(0.0, 2.0) == 1.0
    with pytest.raises(ValueError, match="level"):
        prior.matern32_memory(1.0, 1.0)


def test_lag1_autocorrelation_of_smooth_rough_and_constant_columns(prior) -> None:  # type: ignore[no-untyped-def]
    t = np.arange(400.0)
    x = np.stack([np.sin(t / 20.0), (-1.0) ** t, np.ones_like(t)], axis=1)
    r = prior.lag1_autocorrelation(x)
    assert r[0] > 0.99
    assert r[1] == pytest.approx(-1.0, abs=0.01)
    assert math.isnan(r[2])


def test_auc_roc_counts_pairs_and_ties_half(prior) -> None:  # type: ignore[no-untyped-def]
    y = np.array([0, 0, 1, 1])
    assert prior.auc_roc(np.array([0.1, 0.2, 0.3, 0.4]), y) == 1.0
    assert prior.auc_roc(np.array([0.4, 0.3, 0.2, 0.1]), y) == 0.0
    assert prior.auc_roc(np.array([0.1, 0.3, 0.3, 0.2]), y) == pytest.approx(0.625)  # a tie
    # brute force over pairs on random scores with ties
    rng = np.random.default_rng(0)
    s, yy = rng.integers(0, 5, 60).astype(float), rng.integers(0, 2, 60)
    pairs = [(a > b) + 0.5 * (a == b) for a in s[yy == 1] for b in s[yy == 0]]
    assert prior.auc_roc(s, yy) == pytest.approx(np.mean(pairs))
    assert prior.auc_roc(np.array([np.nan, 1.0]), np.array([1, 0])) == 0.0  # NaN ranks lowest
    assert math.isnan(prior.auc_roc(np.ones(3), np.zeros(3)))


def test_median_ratio_and_loss_parts(prior) -> None:  # type: ignore[no-untyped-def]
    y = np.array([0, 0, 0, 1, 1])
    assert prior.median_ratio(np.array([1.0, 2.0, 3.0, 8.0, np.nan]), y) == 4.0
    hist = [{"val_score": 0.5, "kl": 9.0, "loglik": -1.0},
            {"val_score": 0.2, "kl": 0.5, "loglik": -1.5},
            {"val_score": 0.3, "kl": 0.1, "loglik": 2.0}]  # fmt: skip
    parts = prior.loss_parts(hist, 2.0, 4)  # the kept epoch is the second
    assert parts == {"kl_per_entry": 0.5, "loglik_per_entry": -1.5, "kl_per_step": 2.0,
                     "kl_share": pytest.approx(1.0 / 2.5)}  # fmt: skip


def test_latent_paths_use_smoothness_and_anomaly_ratios(prior) -> None:  # type: ignore[no-untyped-def]
    T = 200
    t = np.arange(T, dtype=float)
    labels = np.zeros(T, dtype=int)
    labels[100:120] = 1
    mean = np.stack([np.sin(t / 10.0), np.zeros(T)], axis=1)
    mean[100:120, 1] = 2.0  # channel 1 jumps during the anomaly
    var = np.stack([np.full(T, 0.25), np.full(T, 1.0)], axis=1)
    out = prior.latent_paths(mean, var, np.array([1.0, 1.0]), labels)
    assert out["use"] == pytest.approx([0.75, 0.0])
    assert out["lag1"][0] > 0.99
    energy = (mean**2).sum(1)
    assert out["energy_ratio"] == pytest.approx(
        energy[labels == 1].mean() / energy[labels == 0].mean()
    )
    assert out["energy_auc"] > 0.9
    step = (np.diff(mean, axis=0) ** 2).sum(1)
    # the jump into the anomaly is step 100 (anomalous), the jump out step 120 (normal)
    assert out["step_ratio"] == pytest.approx(
        step[99:119].mean() / np.r_[step[:99], step[119:]].mean()
    )
