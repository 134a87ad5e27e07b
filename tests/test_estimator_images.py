"""GPVAE on image sequences: encoder="cnn", decoder="cnn", likelihood="bernoulli"."""

from __future__ import annotations

import numpy as np
import pytest

from gpvae import GPVAE
from gpvae.errors import GPVAEError

SIDE = 12


def _sequences(n: int, T: int, seed: int) -> np.ndarray:
    """Binary frames of a bar rotating slowly about the centre: (n, T, SIDE * SIDE)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] - (SIDE - 1) / 2
    angle = rng.uniform(0, np.pi, (n, 1)) + np.cumsum(rng.normal(0, 0.15, (n, T)), axis=1)
    c, s = np.cos(angle)[..., None, None], np.sin(angle)[..., None, None]
    dist = np.abs(-s * xx + c * yy)  # distance from the bar's axis
    frames = (dist < 1.2) & (np.hypot(xx, yy) < SIDE / 2 - 1)
    return frames.reshape(n, T, SIDE * SIDE).astype(np.float64)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = _sequences(96, 8, 0)
    hidden = np.random.default_rng(1).random(X.shape) < 0.5
    return X, np.where(hidden, np.nan, X), hidden


def _fit(Xm: np.ndarray, **kwargs: object) -> GPVAE:
    return GPVAE(
        latent_dim=4,
        encoder="cnn",
        decoder="cnn",
        likelihood="bernoulli",
        hidden=(64,),
        epochs=25,
        batch_size=16,
        lr=3e-3,
        progress=False,
        seed=0,
        **kwargs,  # type: ignore[arg-type]
    ).fit(Xm)


def _mse(model: GPVAE, X: np.ndarray, Xm: np.ndarray, hidden: np.ndarray) -> float:
    p = model.impute(Xm, num_samples=10).mean
    return float(((p[hidden] - X[hidden]) ** 2).mean())


def test_cnn_bernoulli_imputes_probabilities_better_than_the_pixel_mean(data) -> None:  # type: ignore[no-untyped-def]
    X, Xm, hidden = data
    model = _fit(Xm)
    assert float(model.scaler_.std_.min()) == 1.0  # 0/1 values are not standardised
    res = model.impute(Xm, num_samples=10)
    p = res.mean
    np.testing.assert_array_equal(p[~hidden], X[~hidden])
    assert float(p.min()) >= 0.0
    assert float(p.max()) <= 1.0
    truth = X[hidden]
    mse = float(((p[hidden] - truth) ** 2).mean())
    pixel_mean = np.nanmean(Xm.reshape(-1, SIDE * SIDE), axis=0)  # per-pixel observed rate
    base = float(((np.broadcast_to(pixel_mean, X.shape)[hidden] - truth) ** 2).mean())
    assert mse < 0.7 * base, (mse, base)
    # the same networks with an N(0, I) prior cannot borrow from neighbouring frames
    plain = _fit(Xm, kernel="white", posterior="diagonal")
    assert _mse(plain, X, Xm, hidden) > 2 * mse


def test_bernoulli_rejects_values_outside_the_unit_interval(data) -> None:  # type: ignore[no-untyped-def]
    _, Xm, _ = data
    bad = Xm * 2.0
    with pytest.raises(GPVAEError, match=r"^X: expected values in \[0, 1\]"):
        GPVAE(likelihood="bernoulli", epochs=1, progress=False).fit(bad)
    # new data too: imputing or scoring 0..255 pixels gave meaningless numbers
    model = GPVAE(likelihood="bernoulli", epochs=1, progress=False, hidden=(8,)).fit(Xm[:8])
    for method in (model.impute, model.anomaly_scores):
        with pytest.raises(GPVAEError, match=r"^X: expected values in \[0, 1\]"):
            method(bad[:2])


def test_cnn_needs_square_frames() -> None:
    X = np.random.default_rng(0).random((4, 5, 10))
    with pytest.raises(GPVAEError, match=r"^encoder: 'cnn' expected frames of a square image"):
        GPVAE(encoder="cnn", epochs=1, progress=False).fit(X)
