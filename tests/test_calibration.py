"""Interval recalibration: the factor fit on its own, and through the estimator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from gpvae import GPVAE
from gpvae.errors import InputTypeError, ModelFileError
from gpvae.estimator.calibration import LEVELS, MIN_ENTRIES, SCALES, fit_interval_scales

FAST = {"latent_dim": 2, "hidden": (32,), "batch_size": 16, "progress": False}


def _normal_intervals(mean: np.ndarray, sd: float) -> tuple[np.ndarray, np.ndarray]:
    """Central intervals at LEVELS of N(mean, sd^2): (M, K) lower and upper ends."""
    z = norm.ppf((1 + np.asarray(LEVELS)) / 2)  # (K,)
    return mean[:, None] - sd * z, mean[:, None] + sd * z


@pytest.mark.parametrize(("true_sd", "expected"), [(2.0, 2.0), (1.0, 1.0), (0.5, 0.5)])
def test_factor_recovers_the_missing_spread(true_sd: float, expected: float) -> None:
    rng = np.random.default_rng(0)
    M = 20_000
    mean = rng.normal(size=M)
    target = mean + true_sd * rng.standard_normal(M)
    lo, hi = _normal_intervals(mean, 1.0)  # the model believes sd = 1
    (c,) = fit_interval_scales(mean, lo, hi, target, np.zeros(M, dtype=int), 1)
    assert c == pytest.approx(expected, rel=0.06)
    # with the factor, every level's coverage is near nominal
    covered = (mean[:, None] + c * (lo - mean[:, None]) <= target[:, None]) & (
        target[:, None] <= mean[:, None] + c * (hi - mean[:, None])
    )
    np.testing.assert_allclose(covered.mean(0), LEVELS, atol=0.02)


def test_sparse_features_share_the_pooled_factor() -> None:
    rng = np.random.default_rng(1)
    n0, n1 = 5_000, MIN_ENTRIES - 1  # feature 1 has too few entries of its own
    feature = np.r_[np.zeros(n0, dtype=int), np.ones(n1, dtype=int)]
    mean = np.zeros(n0 + n1)
    target = 3.0 * rng.standard_normal(n0 + n1)
    lo, hi = _normal_intervals(mean, 1.0)
    c = fit_interval_scales(mean, lo, hi, target, feature, 3)
    assert c[0] == pytest.approx(3.0, rel=0.08)
    assert c[1] == c[2]  # no own factor: the pooled one
    assert c[2] == pytest.approx(3.0, rel=0.08)


def test_no_entries_and_bad_shapes() -> None:
    empty = np.zeros(0)
    none = np.zeros((0, len(LEVELS)))
    assert (fit_interval_scales(empty, none, none, empty, empty, 4) == 1).all()
    with pytest.raises(ValueError, match="lower, upper"):
        fit_interval_scales(np.zeros(3), np.zeros((3, 1)), np.zeros((3, 1)), np.zeros(3),
                            np.zeros(3, dtype=int), 1)  # fmt: skip
    # far too narrow (sd 0.01 against 1): the grid's end, not beyond
    target = np.random.default_rng(2).standard_normal(500)
    lo, hi = _normal_intervals(np.zeros(500), 0.01)
    (c,) = fit_interval_scales(np.zeros(500), lo, hi, target, np.zeros(500, int), 1)
    assert c == SCALES[-1]


def _series(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Sinusoids with gaps, and a mask of observed entries hidden from the model."""
    rng = np.random.default_rng(seed)
    t = np.arange(30)[None, :, None]
    X = np.sin(t / 4 + rng.uniform(0, 6, (40, 1, 1))) * np.array([1.0, 2.0]) + 0.1 * (
        rng.standard_normal((40, 30, 2))
    )
    X[rng.random(X.shape) < 0.3] = np.nan
    hide = ~np.isnan(X) & (rng.random(X.shape) < 0.2)
    return X, hide


def test_estimator_intervals_cover_fresh_entries(tmp_path: Path) -> None:
    X, hide = _series()
    Xin = np.where(hide, np.nan, X)
    coverage = {}
    for calibrate in (False, True):
        est = GPVAE(**FAST, epochs=8, calibrate=calibrate).fit(Xin)
        res = est.impute(Xin, num_samples=64)
        coverage[calibrate] = ((res.lower <= X) & (res.upper >= X))[hide].mean()
        observed = ~np.isnan(Xin)
        assert np.array_equal(res.mean[observed], Xin[observed])
        assert np.array_equal(res.lower[observed], Xin[observed])
        if not calibrate:
            assert (est.interval_scale_ == 1).all()
    assert est.interval_scale_.shape == (2,)
    assert (est.interval_scale_ > 0).all()
    # the uncalibrated model is over-confident here; calibrated, it is near nominal (0.9)
    assert coverage[False] < 0.8
    assert 0.82 <= coverage[True] <= 0.98
    assert abs(coverage[True] - 0.9) < abs(coverage[False] - 0.9)
    # saved and loaded with the model: the same intervals
    est.save(tmp_path / "m")
    back = GPVAE.load(tmp_path / "m")
    np.testing.assert_array_equal(back.interval_scale_, est.interval_scale_)
    again = back.impute(Xin, num_samples=64)
    np.testing.assert_allclose(again.upper, res.upper, rtol=1e-6, atol=1e-6)


def test_calibrate_argument_and_old_model_files(tmp_path: Path) -> None:
    with pytest.raises(InputTypeError, match="calibrate"):
        GPVAE(calibrate="yes")  # type: ignore[arg-type]
    X, _ = _series(2)
    est = GPVAE(**FAST, epochs=1, val_fraction=0.0).fit(X)  # nothing held out: no factors
    assert (est.interval_scale_ == 1).all()
    est.save(tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    data = json.loads(cfg.read_text())
    extra_key = next(k for k in data if isinstance(data[k], dict) and "interval_scale" in data[k])
    del data[extra_key]["interval_scale"]  # a model saved before calibration existed
    cfg.write_text(json.dumps(data))
    assert (GPVAE.load(tmp_path / "m").interval_scale_ == 1).all()
    data[extra_key]["interval_scale"] = [1.0, -2.0]
    cfg.write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match="interval_scale"):
        GPVAE.load(tmp_path / "m")
