"""The baselines of the leave-one-station-out benchmark (``benchmarks/spatial.py``) against
direct formulas: inverse distance weighting and ordinary kriging (the kriging system solved
densely with its Lagrange multiplier)."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def spatial() -> ModuleType:
    pytest.importorskip("scipy")
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("spatial")
    finally:
        sys.path.remove(str(BENCH))


def test_idw_is_the_inverse_square_distance_average_of_the_observed(spatial: ModuleType) -> None:
    xy = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    target = np.array([0.0, 1.0])
    values = np.array([[[1.0], [2.0], [np.nan]], [[np.nan], [np.nan], [np.nan]]])  # (T, S, D)
    out = spatial.idw(values, xy, target)
    d = np.sqrt(((xy - target) ** 2).sum(-1))
    w = 1.0 / d[:2] ** 2
    assert out[0, 0] == pytest.approx((w * [1.0, 2.0]).sum() / w.sum(), rel=1e-12)
    assert np.isnan(out[1, 0])  # nothing observed at that hour


def _kriging_reference(
    y: np.ndarray, xy: np.ndarray, target: np.ndarray, sill: float, rng: float, nug: float
) -> tuple[float, float]:
    """Ordinary kriging from the bordered system [[K, 1], [1^T, 0]] [lam; nu] = [k; 1]."""

    def cov(d: np.ndarray) -> np.ndarray:
        r = math.sqrt(3.0) * d / rng
        return sill * (1.0 + r) * np.exp(-r)

    S = len(xy)
    dist = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    A = np.zeros((S + 1, S + 1))
    A[:S, :S] = cov(dist) + nug * np.eye(S)
    A[:S, S] = A[S, :S] = 1.0
    k = cov(np.sqrt(((xy - target) ** 2).sum(-1)))
    sol = np.linalg.solve(A, np.append(k, 1.0))
    lam, nu = sol[:S], sol[S]
    var = sill + nug - lam @ k - nu
    return float(lam @ y), float(var)


def test_ordinary_kriging_matches_the_bordered_system(spatial: ModuleType) -> None:
    rng = np.random.default_rng(0)
    S, D = 7, 2
    xy = rng.uniform(0, 30, (S, 2))
    target = np.array([12.0, 17.0])
    # a training field with a spatial structure, so the ML fit is well posed
    dist = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    chol = np.linalg.cholesky(spatial._matern32(dist, 10.0) + 0.05 * np.eye(S))
    train = np.einsum("st,htd->hsd", chol, rng.normal(size=(300, S, D))) + 2.0
    test = np.einsum("st,htd->hsd", chol, rng.normal(size=(4, S, D)))
    test[1, 3, 0] = np.nan  # a station missing at one hour
    mean, sd, params = spatial.ordinary_kriging(train, test, xy, target)
    for j in range(D):
        p = params[j]
        assert 3.0 < p["range_km"] < 30.0  # the fit finds the field's range (10 km)
        for t in range(test.shape[0]):
            obs = ~np.isnan(test[t, :, j])
            m, v = _kriging_reference(
                test[t, obs, j], xy[obs], target, p["sill"], p["range_km"], p["nugget"]
            )
            assert mean[t, j] == pytest.approx(m, rel=1e-8, abs=1e-10)
            assert sd[t, j] == pytest.approx(math.sqrt(v), rel=1e-8)


def test_linear_in_time_interpolates_between_observed_entries(spatial: ModuleType) -> None:
    x = np.array([[[1.0], [np.nan], [np.nan], [4.0], [np.nan]]])  # (S=1, T=5, D=1)
    out = spatial._linear_in_time(x)
    assert out[0, :, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 4.0]
    empty = np.full((1, 3, 1), np.nan)
    assert np.isnan(spatial._linear_in_time(empty)).all()


def test_idw_in_space_uses_only_the_other_stations(spatial: ModuleType) -> None:
    xy = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    x = np.array([[[10.0]], [[20.0]], [[40.0]]])  # (S=3, T=1, D=1)
    out = spatial._idw_in_space(x, xy)
    # station 0 from stations 1 (d=1) and 2 (d=2): weights 1 and 1/4
    assert out[0, 0, 0] == pytest.approx((20.0 * 1 + 40.0 * 0.25) / 1.25)
    x[1, 0, 0] = np.nan  # an unobserved neighbour is skipped
    assert spatial._idw_in_space(x, xy)[0, 0, 0] == pytest.approx(40.0)
