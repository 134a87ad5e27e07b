"""gpvae.GPVAE end to end on synthetic data with a known answer: calibrated intervals, the
value of real timestamps, forecasts that beat the last value.

Data are GP-VAE draws: L = 2 latent channels from a Matern-3/2 GP, a fixed nonlinear decoder
``y = tanh(z W + b) + 0.3 z W`` and Gaussian noise. Models are small and train for tens of
epochs (about a minute for the whole file on one CPU thread).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpvae import GPVAE
from gpvae.gp import GPPrior
from gpvae.kernels import Matern32

MODEL = {"latent_dim": 2, "hidden": (32, 32), "lr": 1e-2, "batch_size": 32, "progress": False}


def gpvae_data(
    times: np.ndarray, num_features: int, noise: float, lengthscale: float, seed: int
) -> np.ndarray:
    """Noisy observations (n, T, D) of a GP-VAE with a fixed decoder, at times (n, T)."""
    g = torch.Generator().manual_seed(seed)
    prior = GPPrior(Matern32(lengthscale=lengthscale), 2, backend="dense").double()
    with torch.no_grad():
        z = prior.sample(torch.as_tensor(times, dtype=torch.float64), 1, generator=g)[0].numpy()
    rng = np.random.default_rng(123)
    W = rng.normal(size=(2, num_features))
    b = 0.5 * rng.normal(size=num_features)
    f = np.tanh(z @ W + b) + 0.3 * (z @ W)  # (n, T, D)
    return f + noise * np.random.default_rng(seed + 1).standard_normal(f.shape)


@pytest.fixture(scope="module")
def calibration_run() -> dict[str, np.ndarray]:
    """Fit on 150 series (30% of entries missing), predict 50 held-out series."""
    n_train, n_test, T, H = 150, 50, 30, 10
    Y = gpvae_data(np.tile(np.arange(T, dtype=float), (n_train + n_test, 1)), 5, 0.3, 4.0, 0)
    hidden = np.random.default_rng(5).random(Y.shape) < 0.3
    X = np.where(hidden, np.nan, Y)
    est = GPVAE(**MODEL, epochs=60, patience=10).fit(X[:n_train])
    test, Y_test = X[n_train:], Y[n_train:]
    imp = est.impute(test, num_samples=200)
    fc = est.forecast(test[:, :-H], horizon=H, num_samples=200)
    return {
        "Y": Y_test,
        "hidden": hidden[n_train:],
        "lower": imp.lower,
        "upper": imp.upper,
        "mean": imp.mean,
        "f_lower": fc.lower,
        "f_upper": fc.upper,
        "f_mean": fc.mean,
        "H": np.array(H),
    }


def test_imputation_intervals_are_calibrated(calibration_run: dict[str, np.ndarray]) -> None:
    """90% intervals (5%-95% quantiles of y ~ p(y | z), z ~ q) cover 85-95% of the hidden
    true values."""
    r = calibration_run
    inside = (r["Y"] >= r["lower"]) & (r["Y"] <= r["upper"])
    coverage = inside[r["hidden"]].mean()
    assert 0.85 <= coverage <= 0.95, coverage
    mae = np.abs(r["mean"] - r["Y"])[r["hidden"]].mean()
    mean_mae = np.abs(np.nanmean(np.where(r["hidden"], np.nan, r["Y"]), axis=(0, 1)) - r["Y"])
    assert mae < 0.6 * mean_mae[r["hidden"]].mean()  # far better than the feature mean


def test_forecast_intervals_are_calibrated(calibration_run: dict[str, np.ndarray]) -> None:
    """90% forecast intervals 1 to 10 steps ahead cover 85-95% of the true values."""
    r = calibration_run
    H = int(r["H"])
    future = r["Y"][:, -H:]
    inside = (future >= r["f_lower"]) & (future <= r["f_upper"])  # (n, H, D)
    assert 0.85 <= inside.mean() <= 0.95, inside.mean()
    per_step = inside.mean(axis=(0, 2))
    assert (per_step > 0.75).all(), per_step


def test_real_timestamps_beat_the_step_index() -> None:
    """Series observed at irregular times (gaps of 0.1 or 4, lengthscale 2) with 40% of the
    time steps missing: the model given the timestamps imputes them far better than the same
    model given 0..T-1."""
    n_train, n_test, T = 100, 40, 30
    rng = np.random.default_rng(0)
    times = np.cumsum(np.where(rng.random((n_train + n_test, T)) < 0.5, 0.1, 4.0), axis=1)
    Y = gpvae_data(times, 4, 0.1, 2.0, 0)
    # whole time steps are missing, so imputing them needs the neighbouring steps
    hidden = np.broadcast_to(np.random.default_rng(2).random((*Y.shape[:2], 1)) < 0.4, Y.shape)
    X = np.where(hidden, np.nan, Y)
    X[:, 0] = Y[:, 0]  # no series starts with a gap
    hidden = np.isnan(X)
    mae = {}
    for name, t in (("real", times), ("index", None)):
        est = GPVAE(**MODEL, epochs=40).fit(X[:n_train], None if t is None else t[:n_train])
        imp = est.impute(X[n_train:], None if t is None else t[n_train:], num_samples=50)
        mae[name] = np.abs(imp.mean - Y[n_train:])[hidden[n_train:]].mean()
    assert mae["real"] < 0.85 * mae["index"], mae


def test_forecast_beats_the_last_value_on_a_smooth_signal() -> None:
    """Noisy sinusoids (periods 20-30 steps): 10-step forecasts beat carrying the last value
    forward by a wide margin."""
    n, T, H = 100, 40, 10
    rng = np.random.default_rng(0)
    t = np.arange(T + H)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    period = rng.uniform(20, 30, size=(n, 1, 1))
    Y = np.sin(2 * np.pi * t / period + phase) * np.array([1.0, -0.5, 2.0])
    Y = Y + 0.05 * rng.standard_normal(Y.shape)
    est = GPVAE(**MODEL, epochs=40).fit(Y[:60, :T])
    fc = est.forecast(Y[60:, :T], horizon=H, num_samples=100)
    future = Y[60:, T:]
    mae = np.abs(fc.mean - future).mean()
    last_value = np.abs(Y[60:, T - 1 : T] - future).mean()
    assert mae < 0.75 * last_value, (mae, last_value)
