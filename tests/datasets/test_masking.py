"""Artificial missingness: rates, masks only on observed entries, input untouched, seeding."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from gpvae.datasets import hidden_rate, hide_blocks, hide_points
from gpvae.errors import GPVAEError, InputTypeError, ShapeError, ValidationError

Hider = Callable[..., tuple[np.ndarray, np.ndarray]]
HIDERS = [pytest.param(hide_points, id="points"), pytest.param(hide_blocks, id="blocks")]


def _data(missing: float = 0.3, shape: tuple[int, int, int] = (20, 48, 6)) -> np.ndarray:
    rng = np.random.default_rng(123)
    X = rng.normal(size=shape)
    X[rng.random(shape) < missing] = np.nan
    return X


@pytest.mark.parametrize("hide", HIDERS)
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5])
def test_mask_only_on_observed_and_input_untouched(hide: Hider, rate: float) -> None:
    X = _data()
    before = X.copy()
    X_hidden, mask = hide(X, rate, np.random.default_rng(0))
    np.testing.assert_array_equal(X, before)  # equal_nan by default for floats
    assert mask.dtype == np.bool_
    assert mask.shape == X.shape
    observed = ~np.isnan(X)
    assert not np.any(mask & ~observed)
    # True exactly where observed in X and NaN in X_hidden.
    np.testing.assert_array_equal(mask, observed & np.isnan(X_hidden))
    np.testing.assert_array_equal(X_hidden[~mask], X[~mask])


def test_points_rate_is_exact() -> None:
    X = _data()
    n_observed = int(np.count_nonzero(~np.isnan(X)))
    _, mask = hide_points(X, 0.1, 7)
    assert mask.sum() == round(0.1 * n_observed)
    assert hidden_rate(X, mask) == pytest.approx(0.1, abs=1 / n_observed)


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_blocks_rate_within_one_block(rate: float) -> None:
    X = _data()
    n_observed = int(np.count_nonzero(~np.isnan(X)))
    _, mask = hide_blocks(X, rate, 11, min_len=5, max_len=24)
    achieved = hidden_rate(X, mask)
    assert rate <= achieved <= rate + 24 / n_observed


def test_blocks_are_runs_of_one_feature() -> None:
    X = _data(missing=0.0, shape=(10, 60, 4))  # fully observed: hidden runs are whole blocks
    _, mask = hide_blocks(X, 0.2, 5, min_len=5, max_len=8)
    runs = []
    for i in range(mask.shape[0]):
        for d in range(mask.shape[2]):
            padded = np.concatenate([[0], mask[i, :, d].astype(int), [0]])
            edges = np.flatnonzero(np.diff(padded))
            runs.extend((edges[1::2] - edges[::2]).tolist())
    assert runs
    assert min(runs) >= 5


def test_blocks_on_sparse_data_still_reach_rate() -> None:
    X = _data(missing=0.8, shape=(30, 48, 10))  # like PhysioNet hourly
    _, mask = hide_blocks(X, 0.1, 2)
    n_observed = int(np.count_nonzero(~np.isnan(X)))
    assert 0.1 <= hidden_rate(X, mask) <= 0.1 + 24 / n_observed


@pytest.mark.parametrize("hide", HIDERS)
def test_seeded_reproducibility(hide: Hider) -> None:
    X = _data()
    _, a = hide(X, 0.2, np.random.default_rng(42))
    _, b = hide(X, 0.2, np.random.default_rng(42))
    _, c = hide(X, 0.2, 42)  # an int seed is the same as default_rng(seed)
    _, d = hide(X, 0.2, np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, d)


@pytest.mark.parametrize("hide", HIDERS)
def test_float32_and_all_missing(hide: Hider) -> None:
    X = _data().astype(np.float32)
    X_hidden, _ = hide(X, 0.1, 0)
    assert X_hidden.dtype == np.float32
    empty = np.full((2, 5, 3), np.nan)
    X_hidden, mask = hide(empty, 0.5, 0)
    assert not mask.any()


@pytest.mark.parametrize("hide", HIDERS)
@pytest.mark.parametrize(
    ("X", "rate", "rng", "error", "argument"),
    [
        (np.zeros(5), 0.1, 0, ShapeError, "X"),
        (np.zeros((2, 5)), 0.1, 0, ShapeError, "X"),
        ([[[1.0]]], 0.1, 0, InputTypeError, "X"),
        (np.zeros((1, 5, 2), dtype=int), 0.1, 0, InputTypeError, "X"),
        (np.full((1, 5, 2), np.inf), 0.1, 0, ValidationError, "X"),
        (np.zeros((1, 5, 2)), 1.5, 0, ValidationError, "rate"),
        (np.zeros((1, 5, 2)), -0.1, 0, ValidationError, "rate"),
        (np.zeros((1, 5, 2)), "0.1", 0, ValidationError, "rate"),
        (np.zeros((1, 5, 2)), float("nan"), 0, ValidationError, "rate"),
        (np.zeros((1, 5, 2)), 0.1, "seed", InputTypeError, "rng"),
    ],
    ids=[
        "1d",
        "2d",
        "list",
        "int-dtype",
        "inf",
        "rate-above-1",
        "rate-negative",
        "rate-str",
        "rate-nan",
        "rng-str",
    ],
)
def test_bad_input(
    hide: Hider, X: object, rate: object, rng: object, error: type[GPVAEError], argument: str
) -> None:
    with pytest.raises(error, match=f"^{argument}:"):
        hide(X, rate, rng)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"min_len": 0}, "min_len"), ({"min_len": 5, "max_len": 3}, "max_len")],
)
def test_bad_block_lengths(kwargs: dict[str, int], argument: str) -> None:
    with pytest.raises(ValidationError, match=f"^{argument}:"):
        hide_blocks(np.zeros((1, 10, 2)), 0.1, 0, **kwargs)
