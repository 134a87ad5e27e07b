"""The forecast mean's blend with simple base forecasts (gpvae.estimator.forecast_blend): the
bases, the choice on rolling origins, and a trending series that leaves its training range."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gpvae import GPVAE, settings
from gpvae.errors import ModelFileError
from gpvae.estimator.forecast_blend import ForecastBlend, fit_blend, simple_forecasts

SMALL = {"latent_dim": 2, "hidden": (16,), "batch_size": 16, "progress": False, "lr": 1e-2}


def test_simple_forecasts_by_hand() -> None:
    hist = np.array([[1.0, np.nan], [2.0, 10.0], [3.0, np.nan], [4.0, np.nan], [np.nan, 12.0]])
    out = simple_forecasts(hist, 3, ("last", "season:2", "drift", "season:9"), horizon=2)
    np.testing.assert_array_equal(out[0], [[4.0, 12.0]] * 3)  # last observed, gaps filled
    # seasonal naive, lag 2: steps T-2, T-1, T-2 of the filled history (4, 4), (4, 12)
    np.testing.assert_array_equal(out[1], [[4.0, 10.0], [4.0, 12.0], [4.0, 10.0]])
    # drift over the last 2 steps: filled (3, 10) -> (4, 12), slope (0.5, 1)
    np.testing.assert_allclose(out[2], [[4.5, 13.0], [5.0, 14.0], [5.5, 15.0]])
    assert np.isnan(out[3]).all()  # a season longer than the history: no base
    model = np.array([[1.0, 0.0], [2.0, -1.0], [4.0, 1.0]])
    anchored = simple_forecasts(hist, 3, ("anchored",), 2, model)[0]
    np.testing.assert_allclose(anchored, [[4.0, 12.0], [5.0, 11.0], [7.0, 13.0]])
    assert np.isnan(simple_forecasts(hist, 3, ("anchored",), 2)).all()  # needs the model
    with pytest.raises(ValueError, match="names"):
        simple_forecasts(hist, 1, ("mean",), 1)


def test_fit_blend_picks_the_base_and_weight_with_the_least_error() -> None:
    rng = np.random.default_rng(0)
    M = 400
    truth = rng.standard_normal(M)
    feature = np.repeat([0, 1], M // 2)
    band = np.tile([0, 1], M // 2)
    good = truth + 0.1 * rng.standard_normal(M)
    bad = truth + 3.0 + rng.standard_normal(M)
    # feature 0: the model is right, both bases are off; feature 1: base 1 is right
    model = np.where(feature == 0, good, bad)
    bases = np.stack([bad + 1.0, np.where(feature == 1, good, bad)], axis=1)
    bases[:5, 0] = np.nan  # no base there: the model's mean stands in
    origin = np.arange(M) // 8  # 8 entries per origin
    blend = fit_blend(model, bases, truth, feature, band, origin, 2, 2, ("last", "drift"), 4)
    np.testing.assert_array_equal(blend.weight[:, 0], [1.0, 1.0])
    np.testing.assert_array_equal(blend.weight[:, 1], [0.0, 0.0])
    np.testing.assert_array_equal(blend.base[:, 1], [1, 1])
    # never worse than any base alone on the entries it was fitted on
    for b in range(2):
        for d in range(2):
            sel = (band == b) & (feature == d)
            w, k = blend.weight[b, d], blend.base[b, d]
            base = np.where(np.isnan(bases[sel, k]), model[sel], bases[sel, k])
            err = np.abs(w * model[sel] + (1 - w) * base - truth[sel]).mean()
            for j in range(2):
                alone = np.where(np.isnan(bases[sel, j]), model[sel], bases[sel, j])
                assert err <= np.abs(alone - truth[sel]).mean() + 1e-12
            assert err <= np.abs(model[sel] - truth[sel]).mean() + 1e-12


def test_fit_blend_keeps_the_model_unless_a_blend_is_clearly_better(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A base a little better than the model at a few noisy origins does not replace it
    (one standard error of the per-origin differences); a clearly better one does."""
    n_org, per = 6, 10
    M = n_org * per
    origin = np.repeat(np.arange(n_org), per)
    truth = np.random.default_rng(1).standard_normal(M)
    model = truth + 0.5  # error 0.5 everywhere
    # the base's error by origin: 0.467 on average, but 0.1 or 0.9 at any one origin
    base = truth + np.array([0.1, 0.9, 0.1, 0.9, 0.1, 0.7])[origin]
    zeros = np.zeros(M, dtype=np.int64)
    args = (truth, zeros, zeros, origin, 1, 1, ("last",), 4)
    monkeypatch.setattr(settings, "FORECAST_BLEND_SE", 0.0)
    loose = fit_blend(model, base[:, None], *args)
    assert loose.weight[0, 0] == 0.0  # the plain minimum takes the base
    monkeypatch.setattr(settings, "FORECAST_BLEND_SE", 1.0)
    strict = fit_blend(model, base[:, None], *args)
    assert strict.weight[0, 0] == 1.0
    clear = fit_blend(model, (truth + 0.05)[:, None], *args)
    assert clear.weight[0, 0] == 0.0


def _rising(T: int, seed: int) -> np.ndarray:
    """Two features on a steady rise with noise: the last year is above all earlier values."""
    rng = np.random.default_rng(seed)
    t = np.arange(T, dtype=float)
    a = 0.5 * t + rng.standard_normal(T)
    b = -0.3 * t + 0.5 * np.sin(2 * np.pi * t / 12) + 0.5 * rng.standard_normal(T)
    return np.stack([a, b], axis=1)


def test_blend_keeps_a_rising_series_forecast_at_its_level(tmp_path: Path) -> None:
    """A model of standardised values forecasts a series past its training range back
    towards that range; the blend, chosen on origins inside the training data, follows
    the last level and the drift."""
    torch.manual_seed(0)
    X = _rising(120, seed=1)
    hist, future = [X[:-12]], X[-12:]
    common = {"kernel": "matern32", "epochs": 10, "seed": 0, "forecast_horizon": 12, **SMALL}
    plain = GPVAE(**common).fit(hist)
    assert plain.forecast_blend_ is None
    assert not plain.forecast_blend
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = GPVAE(**common, forecast_blend=True).fit(hist)
    assert est.forecast_blend_ is not None
    # the model's own spread is far wider than the blended mean's errors: every factor at
    # the grid's smallest, which is no failed fit (forecast_calibration._warn_at_bounds)
    assert est.forecast_scale_ is not None
    assert est.forecast_scale_.max() < 0.3
    assert not [w for w in caught if "(forecast_scale_) ran out" in str(w.message)]
    mae_plain = np.abs(plain.forecast(hist, horizon=12, num_samples=32).mean[0] - future).mean()
    fc = est.forecast(hist, horizon=12, num_samples=32)
    mae = np.abs(fc.mean[0] - future).mean()
    persistence = np.abs(hist[0][-1] - future).mean()
    assert mae < 0.5 * mae_plain, (mae, mae_plain, persistence)
    assert mae < persistence, (mae, mae_plain, persistence)
    # the draws moved with the mean: the interval holds it
    assert ((fc.lower <= fc.mean) & (fc.mean <= fc.upper)).all()
    # saved and loaded with the model
    est.save(tmp_path / "m")
    back = GPVAE.load(tmp_path / "m")
    assert back.forecast_blend
    assert back.get_config()["forecast_blend"] is True
    assert back.forecast_blend_ is not None
    np.testing.assert_array_equal(back.forecast_blend_.weight, est.forecast_blend_.weight)
    np.testing.assert_array_equal(back.forecast_blend_.base, est.forecast_blend_.base)
    np.testing.assert_allclose(back.forecast(hist, horizon=12, num_samples=32).mean, fc.mean)


def test_a_malformed_saved_blend_is_named() -> None:
    good = ForecastBlend(("last",), np.zeros((1, 2), np.int64), np.ones((1, 2)), 3)
    back = ForecastBlend.from_json(good.to_json(), 2)
    np.testing.assert_array_equal(back.weight, good.weight)
    for bad in (
        {**good.to_json(), "weight": [[1.5, 1.0]]},
        {**good.to_json(), "base": [[1, 0]]},
        {**good.to_json(), "names": ["mean"]},
        [1, 2],
    ):
        with pytest.raises(ModelFileError, match="forecast_blend"):
            ForecastBlend.from_json(bad, 2)


def test_forecast_blend_argument_is_checked_and_refits_without_it() -> None:
    from gpvae.errors import GPVAEError

    with pytest.raises(GPVAEError, match="forecast_blend"):
        GPVAE(forecast_blend="yes")  # type: ignore[arg-type]
    X = [_rising(60, seed=2)]
    est = GPVAE(kernel="matern32", epochs=2, seed=0, forecast_horizon=6, **SMALL)
    est.fit(X)
    assert est.forecast_blend_ is None
    est.forecast_blend = True  # calibrate_forecast follows the argument
    assert est.calibrate_forecast(X, horizon=6).forecast_blend_ is not None


def _every_other_step_model() -> tuple[GPVAE, np.ndarray]:
    """A one-feature model of a 4-step season fitted briefly (its forecasts need not be
    good: the tests set the blend and the spread factors by hand)."""
    rng = np.random.default_rng(0)
    t = np.arange(48.0)
    X = (np.sin(2 * np.pi * t / 4) + 0.1 * rng.standard_normal(48))[None, :, None]
    return GPVAE(kernel="matern32", epochs=1, seed=0, **SMALL).fit(X), X


def test_future_times_take_the_base_forecast_of_their_own_step_ahead() -> None:
    """Future times that skip steps get the seasonal naive value of the step each one is
    (steps 2, 4, 7 after the last time), not of its position in future_times (1, 2, 3);
    a model with its anchored base, future times without step 1 are anchored on the
    model's own mean at step 1 (forecast alongside)."""
    est, X = _every_other_step_model()
    est.forecast_blend_ = ForecastBlend(
        ("season:4",), np.zeros((1, 1), np.int64), np.zeros((1, 1)), 4
    )
    est.forecast_scale_ = np.ones((1, 1))  # calibrated: no warning about it
    ahead = np.array([2, 4, 7])
    fc = est.forecast(X, future_times=47.0 + ahead, num_samples=4)
    np.testing.assert_allclose(fc.mean[0, :, 0], X[0, 44 + (ahead - 1) % 4, 0], rtol=1e-5)
    # the anchored base: last + m(t) - m(step 1), m from the same draws as the model's own
    anchored = ForecastBlend(("anchored",), np.zeros((1, 1), np.int64), np.zeros((1, 1)), 4)
    est.forecast_blend_ = None
    own = est.forecast(X, future_times=47.0 + np.array([1, 3, 5]), num_samples=4).mean[0, :, 0]
    est.forecast_blend_ = anchored
    got = est.forecast(X, future_times=47.0 + np.array([3, 5]), num_samples=4).mean[0, :, 0]
    np.testing.assert_allclose(got, X[0, -1, 0] + own[1:] - own[0], rtol=1e-5, atol=1e-6)


def test_future_times_take_the_spread_factor_of_their_own_step_ahead() -> None:
    """With factors 0 for steps 1-2 and 1 for steps 3-4, future times 3 and 4 steps ahead
    keep their spread (the first two positions of future_times took the band of steps
    1-2, and a zero-width interval)."""
    est, X = _every_other_step_model()
    est.forecast_scale_, est.forecast_horizon = np.array([[0.0], [1.0]]), 4
    near = est.forecast(X, horizon=2, num_samples=8)
    np.testing.assert_allclose(near.upper, near.lower)  # the factor 0 of band 1..2
    far = est.forecast(X, future_times=[50.0, 51.0], num_samples=8)
    assert (far.upper - far.lower > 1e-3).all()
