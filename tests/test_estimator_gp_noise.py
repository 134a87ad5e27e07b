"""GPVAE(likelihood="gaussian_gp"): per-feature noise correlated in time, end to end."""

from __future__ import annotations

import numpy as np
import pytest

from gpvae import GPVAE
from gpvae.errors import ValidationError


def _data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two shared smooth latents plus a random walk of each feature's own; 30 % missing."""
    rng = np.random.default_rng(seed)
    n, T, D = 64, 40, 12
    t = np.arange(T)
    latent = np.sin(t[None, :, None] / 5 + rng.uniform(0, 6, (n, 1, 2)))
    own = np.cumsum(rng.normal(size=(n, T, D)) * 0.3, axis=1)
    X = latent @ rng.normal(size=(2, D)) + own + 0.05 * rng.normal(size=(n, T, D))
    hidden = rng.random(X.shape) < 0.3
    Xm = np.where(hidden, np.nan, X)
    return X, Xm, hidden


@pytest.fixture(scope="module")
def fitted() -> tuple[GPVAE, GPVAE, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    X, Xm, hidden = _data(0)
    settings = dict(latent_dim=4, epochs=30, progress=False, seed=0)
    plain = GPVAE(likelihood="gaussian", **settings).fit(Xm)  # type: ignore[arg-type]
    gp = GPVAE(likelihood="gaussian_gp", **settings).fit(Xm)  # type: ignore[arg-type]
    return plain, gp, (X, Xm, hidden)


def test_feature_dynamics_are_imputed_far_better_and_calibrated(fitted) -> None:  # type: ignore[no-untyped-def]
    plain, gp, (X, Xm, hidden) = fitted
    res = {}
    for name, model in (("plain", plain), ("gp", gp)):
        r = model.impute(Xm, num_samples=20)
        np.testing.assert_array_equal(r.mean[~hidden], X[~hidden])  # observed kept exactly
        mae = float(np.abs(r.mean[hidden] - X[hidden]).mean())
        cover = float(((r.lower[hidden] <= X[hidden]) & (X[hidden] <= r.upper[hidden])).mean())
        res[name] = (mae, cover)
    # each feature's own random walk is only recoverable from that feature's neighbours
    assert res["gp"][0] < 0.5 * res["plain"][0], res
    assert 0.85 <= res["gp"][1] <= 0.97, res


def test_interval_coverage_does_not_depend_on_the_number_of_draws(fitted) -> None:  # type: ignore[no-untyped-def]
    """The spread factors are fitted on CALIBRATION_SAMPLES draws; intervals from 20 or
    200 draws cover the hidden entries alike (linear quantile positions: 0.85 and 0.91)."""
    _, gp, (X, Xm, hidden) = fitted
    cover = []
    for S in (20, 200):
        r = gp.impute(Xm, num_samples=S)
        cover.append(
            float(((r.lower[hidden] <= X[hidden]) & (X[hidden] <= r.upper[hidden])).mean())
        )
    assert abs(cover[0] - cover[1]) < 0.02, cover


def test_forecast_sample_and_scores_are_finite(fitted) -> None:  # type: ignore[no-untyped-def]
    _, gp, (_, Xm, _) = fitted
    f = gp.forecast(Xm[:8], horizon=4, num_samples=10)
    assert f.mean.shape == (8, 4, 12)
    assert np.isfinite(f.mean).all()
    assert (f.lower <= f.upper).all()
    s = gp.sample(np.arange(15.0), num_samples=3)
    assert s.shape == (3, 15, 12)
    assert np.isfinite(s).all()
    a = gp.anomaly_scores(Xm[:4], num_samples=5)
    step = np.concatenate([np.asarray(v).ravel() for v in a.step])
    assert np.isfinite(step[~np.isnan(step)]).all()
    # correlated noise has no score under the prior alone: the default weight drops to 0,
    # an explicit one is refused, naming the likelihood
    held = gp.anomaly_scores(Xm[:4], num_samples=5, prior_weight=0.0)
    np.testing.assert_array_equal(np.asarray(a.entry), np.asarray(held.entry))
    with pytest.raises(ValidationError, match="likelihood"):
        gp.anomaly_scores(Xm[:4], num_samples=5, prior_weight=1.0)


def test_one_step_forecast_uses_each_features_recent_values(fitted) -> None:  # type: ignore[no-untyped-def]
    plain, gp, (X, _, _) = fitted
    hist, nxt = X[:, :-1], X[:, -1]
    err = {}
    for name, model in (("plain", plain), ("gp", gp)):
        f = model.forecast(hist, horizon=1, num_samples=20)
        err[name] = float(np.abs(f.mean[:, 0] - nxt).mean())
    assert err["gp"] < 0.7 * err["plain"], err


def test_save_load_round_trip(fitted, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, gp, (_, Xm, _) = fitted
    gp.save(tmp_path / "m")
    again = GPVAE.load(tmp_path / "m")
    a = gp.impute(Xm[:5], num_samples=4).mean
    b = again.impute(Xm[:5], num_samples=4).mean
    np.testing.assert_array_equal(a, b)
