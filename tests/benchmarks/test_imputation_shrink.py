"""The shrink check of issue 15 (``benchmarks/imputation_shrink.py``): distances to the
nearest observation, the shrink itself, and the docs region made from the committed
records."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def test_distance_and_shrink(bench_script) -> None:  # type: ignore[no-untyped-def]
    shrink = bench_script("imputation_shrink")
    nan = np.nan
    X = np.array([[[1.0, nan], [nan, nan], [nan, nan], [4.0, nan], [nan, nan]]])  # (1, 5, 2)
    r = shrink.distance(X)
    np.testing.assert_array_equal(r[0, :, 0], [0, 1, 1, 0, 1])
    assert (r[0, :, 1] >= 5).all()  # never observed: farther than the series is long
    imputed = np.where(np.isnan(X), 2.0, X)
    out = shrink.shrink(imputed, X, np.array([2.0, np.inf]))
    # observed entries kept; distance 1 unchanged; never observed with tau inf unchanged
    np.testing.assert_array_equal(out[0, :, 0], [1.0, 2.0, 2.0, 4.0, 2.0])
    np.testing.assert_array_equal(out[0, :, 1], np.full(5, 2.0))
    X2 = np.array([[[0.5], [nan], [nan], [nan]]])
    out2 = shrink.shrink(np.where(np.isnan(X2), 1.0, X2), X2, 2.0)
    np.testing.assert_allclose(out2[0, :, 0], [0.5, 1.0, np.exp(-0.5), np.exp(-1.0)])


def test_the_validation_rule_picks_a_tau_per_feature(bench_script) -> None:  # type: ignore[no-untyped-def]
    """Where the imputation is right, no shrink (inf, the first of equals); where it sits far
    from values centred on the training mean, the strongest shrink."""
    shrink = bench_script("imputation_shrink")
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(20, 12, 2))
    X = truth.copy()
    X[:, 3:11] = np.nan  # gaps of 8 steps: distances 1 to 4
    mask = np.isnan(X)
    imputed = np.where(mask, truth, X)
    imputed[..., 1] = np.where(mask[..., 1], 3.0, X[..., 1])
    taus = shrink.per_feature_tau(imputed, X, truth, mask)
    assert taus[0] == np.inf
    assert taus[1] == 1.0


def test_edges_are_held_at_the_nearest_observation(bench_script) -> None:  # type: ignore[no-untyped-def]
    """Before the first and after the last observation of a feature, the nearest observed
    value; inside gaps, never-observed features and observed entries: unchanged. The
    validation rule holds a feature only where holding lowers its MAE at the edges."""
    shrink = bench_script("imputation_shrink")
    nan = np.nan
    X = np.array([[[nan, nan], [2.0, nan], [nan, nan], [5.0, nan], [nan, nan], [nan, nan]]])
    imputed = np.where(np.isnan(X), 9.0, X)
    out = shrink.hold_edges(imputed, X)
    np.testing.assert_array_equal(out[0, :, 0], [2.0, 2.0, 9.0, 5.0, 5.0, 5.0])
    np.testing.assert_array_equal(out[0, :, 1], np.full(6, 9.0))
    only_second = shrink.hold_edges(imputed, X, np.array([False, True]))
    np.testing.assert_array_equal(only_second, imputed)
    truth = np.stack([np.array([2.1, 2.0, 3.0, 5.0, 5.2, 4.9]), np.zeros(6)], axis=-1)[None]
    mask = np.isnan(X)
    assert shrink.per_feature_hold(imputed, X, truth, mask).tolist() == [True, False]
    good = np.where(mask, truth, X)  # already right: holding cannot do better
    assert shrink.per_feature_hold(good, X, truth, mask).tolist() == [False, False]


def test_the_documented_command_leaves_the_docs_as_committed(bench_script, tmp_path) -> None:  # type: ignore[no-untyped-def]
    shrink = bench_script("imputation_shrink")
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    [line] = [ln for ln in docs.splitlines() if ln.startswith("python benchmarks/imputation_shr")]
    argv = line.split()[2:]
    copy = tmp_path / "benchmarks.md"
    copy.write_text(docs)
    assert shrink.main([*argv, "--docs", str(copy)]) == 0
    assert copy.read_text() == docs
