"""A dense GP prior over long series is said before training, not found out after hours.

``rbf`` (and every kernel without a state-space form, or ``backend="dense"``) makes each
series' prior dense: O(N^3) time and several N x N matrices per latent channel. ``fit``
warns when a training or predicted series is longer than
``settings.DENSE_PRIOR_WARN_POINTS`` and refuses, naming ``kernel``, ``batch_size`` and
``window``, when a training batch's dense matrices cannot fit in memory
(:func:`gpvae.estimator.assembly.check_dense_prior`).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gpvae import GPVAE, settings
from gpvae.errors import ValidationError

FAST = {"latent_dim": 2, "hidden": (8,), "epochs": 1, "progress": False, "calibrate": False}


def _series(n: int, T: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.sin(np.arange(T) / 5.0)[None, :, None] + 0.1 * rng.standard_normal((n, T, 2))


def _dense_warnings(**kwargs: object) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GPVAE(**{**FAST, **kwargs}).fit(_series(2, 40))
    return [str(w.message) for w in caught if "GP prior is dense" in str(w.message)]


def test_a_dense_prior_over_long_series_warns_with_the_remedies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings, "DENSE_PRIOR_WARN_POINTS", 30)
    (text,) = _dense_warnings(kernel="rbf")
    assert "kernel='rbf' has no state-space form" in text
    assert "N = 40 points" in text
    assert "window=W" in text
    (text,) = _dense_warnings(kernel="matern32", backend="dense")
    assert "backend='dense'" in text


def test_windows_leave_the_predictions_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "DENSE_PRIOR_WARN_POINTS", 30)
    (text,) = _dense_warnings(kernel="rbf", window=16)
    assert "training on windows of 16 points" in text
    assert "whole series of up to 40 points" in text
    # each epoch's validation predicts from whole series too (audit B3: 163 s an epoch on
    # windows of 64 at T = 12,000 with kernel='cauchy'), and the warning says so
    assert "every epoch's validation" in text
    assert "val_fraction=0" in text
    assert "window=W" not in text  # windows are given already


def test_state_space_kernels_and_short_series_pass_without_a_word(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings, "DENSE_PRIOR_WARN_POINTS", 30)
    assert _dense_warnings(kernel="matern32") == []
    assert _dense_warnings(kernel="matern32+periodic", period=10.0) == []
    monkeypatch.setattr(settings, "DENSE_PRIOR_WARN_POINTS", 40)
    assert _dense_warnings(kernel="rbf") == []


def test_a_dense_prior_beyond_memory_is_refused_before_training(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gpvae.arguments as arguments

    # 8 float64 matrices of 40 x 40 for 2 channels and a batch of 2 series: 409,600 bytes
    monkeypatch.setattr(arguments, "physical_memory", lambda: 400_000)
    model = GPVAE(**{**FAST, "kernel": "rbf"})
    refusal = r"kernel, batch_size, window: .*dense GP prior"
    with pytest.raises(ValidationError, match=refusal) as err:
        model.fit(_series(2, 40))
    assert "2 series of 40 points with 2 latent channels" in str(err.value)
    assert not model.is_fitted
    GPVAE(**{**FAST, "kernel": "rbf", "batch_size": 1}).fit(_series(2, 40))  # one series fits
    monkeypatch.setattr(arguments, "physical_memory", lambda: 420_000)
    GPVAE(**{**FAST, "kernel": "rbf"}).fit(_series(2, 40))  # fits
