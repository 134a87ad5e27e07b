"""Naive imputation baselines on hand-made arrays, against references, and their contracts."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from gpvae.app.baselines import feature_means, impute_linear, impute_locf, impute_mean
from gpvae.errors import GPVAEError, InputTypeError, ShapeError, ValidationError

nan = np.nan
Imputer = Callable[[np.ndarray], np.ndarray]
IMPUTERS = [
    pytest.param(impute_mean, id="mean"),
    pytest.param(impute_locf, id="locf"),
    pytest.param(impute_linear, id="linear"),
]


def _series(*columns: list[float]) -> np.ndarray:
    """A (1, T, D) array from D columns of length T."""
    return np.array(columns, dtype=float).T[None]


def test_mean_hand_made() -> None:
    X = _series([1.0, nan, 3.0], [nan, nan, nan])  # feature 1 never observed -> 0
    np.testing.assert_array_equal(impute_mean(X)[0], [[1, 0], [2, 0], [3, 0]])


def test_mean_uses_train_statistics() -> None:
    X = _series([1.0, nan, 3.0], [nan, 5.0, nan])
    train = _series([10.0, 20.0], [nan, nan])
    np.testing.assert_array_equal(impute_mean(X, train_X=train)[0], [[1, 0], [15, 5], [3, 0]])
    np.testing.assert_array_equal(feature_means(train), [15.0, 0.0])


def test_locf_leading_trailing_and_all_missing() -> None:
    X = np.stack(
        [
            _series([nan, 2.0, nan, nan, 5.0, nan], [nan] * 6)[0],
            _series([1.0, nan, nan, nan, nan, nan], [4.0, nan, 8.0, nan, nan, nan])[0],
        ]
    )
    out = impute_locf(X)
    np.testing.assert_array_equal(out[0, :, 0], [2, 2, 2, 2, 5, 5])  # leading gap backfilled
    np.testing.assert_array_equal(out[0, :, 1], [6] * 6)  # never observed here: feature mean
    np.testing.assert_array_equal(out[1, :, 0], [1] * 6)
    np.testing.assert_array_equal(out[1, :, 1], [4, 4, 8, 8, 8, 8])


def test_linear_regular_grid_and_ends() -> None:
    X = _series([nan, 1.0, nan, 3.0, nan, nan], [nan] * 6)
    out = impute_linear(X)
    np.testing.assert_allclose(out[0, :, 0], [1, 1, 2, 3, 3, 3])  # constant extrapolation
    np.testing.assert_array_equal(out[0, :, 1], [0] * 6)  # all missing everywhere -> 0


def test_linear_irregular_times() -> None:
    X = _series([0.0, nan, nan, 8.0, nan], [1.0, nan, nan, nan, 2.0])
    times = np.array([0.0, 1.0, 1.5, 4.0, 10.0])
    out = impute_linear(X, times)
    np.testing.assert_allclose(out[0, :, 0], [0, 2, 3, 8, 8])
    np.testing.assert_allclose(out[0, :, 1], [1, 1.1, 1.15, 1.4, 2])


def test_linear_per_series_times_against_np_interp() -> None:
    rng = np.random.default_rng(0)
    n, T, D = 5, 30, 4
    X = rng.normal(size=(n, T, D))
    X[rng.random((n, T, D)) < 0.6] = nan
    X[0, :, 2] = nan  # one all-missing (series, feature)
    times = np.cumsum(rng.exponential(size=(n, T)) + 0.01, axis=1)
    means = feature_means(X)
    out = impute_linear(X, times)
    for i in range(n):
        for d in range(D):
            obs = ~np.isnan(X[i, :, d])
            if obs.any():
                ref = np.interp(times[i], times[i, obs], X[i, obs, d])
            else:
                ref = np.full(T, means[d])
            np.testing.assert_allclose(out[i, :, d], ref, rtol=1e-12, atol=1e-12)


def test_locf_against_loop_reference() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4, 25, 3))
    X[rng.random(X.shape) < 0.7] = nan
    out = impute_locf(X)
    means = feature_means(X)
    for i in range(X.shape[0]):
        for d in range(X.shape[2]):
            col = X[i, :, d]
            obs = np.flatnonzero(~np.isnan(col))
            last = col[obs[0]] if len(obs) else means[d]
            for t in range(X.shape[1]):
                if not np.isnan(col[t]):
                    last = col[t]
                assert out[i, t, d] == last


@pytest.mark.parametrize("impute", IMPUTERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_observed_unchanged_no_nan_input_untouched(impute: Imputer, dtype: type) -> None:
    rng = np.random.default_rng(2)
    X = (rng.normal(size=(6, 17, 5)) * 1e3).astype(dtype)
    X[rng.random(X.shape) < 0.5] = nan
    X[1, :, 3] = nan
    before = X.copy()
    out = impute(X)
    assert out.shape == X.shape
    assert out.dtype == X.dtype
    assert not np.isnan(out).any()
    observed = ~np.isnan(X)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(out[observed].view(bits), X[observed].view(bits))
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("impute", IMPUTERS)
@pytest.mark.parametrize(
    ("X", "error"),
    [
        (np.zeros(5), ShapeError),
        (np.zeros((3, 4)), ShapeError),
        ([[[1.0]]], InputTypeError),
        (np.full((1, 2, 2), np.inf), ValidationError),
    ],
    ids=["1d", "2d", "list", "inf"],
)
def test_bad_input_names_X(impute: Imputer, X: object, error: type[GPVAEError]) -> None:
    with pytest.raises(error, match=r"^X:"):
        impute(X)  # type: ignore[arg-type]


def test_bad_times_and_train_X() -> None:
    X = _series([1.0, nan, 3.0])
    with pytest.raises(ShapeError, match=r"^times:"):
        impute_linear(X, np.arange(4.0))
    with pytest.raises(ValidationError, match=r"^times:"):
        impute_linear(X, np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValidationError, match=r"^times:"):
        impute_linear(X, np.array([0.0, nan, 1.0]))
    with pytest.raises(ShapeError, match=r"^train_X:"):
        impute_mean(X, train_X=np.zeros((1, 3, 2)))


def test_integer_input_is_converted() -> None:
    out = impute_locf(np.arange(6).reshape(1, 3, 2))
    assert out.dtype == np.float64
