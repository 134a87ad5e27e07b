"""The estimator's ``interp_blend``: a per-feature weight of the imputation against each
feature's linear interpolation, picked on the held-out validation entries.

Covers the weight fit (:func:`gpvae.estimator.blending.fit_blend_weights` against a brute
force reference), the shift of means and draws (:func:`~gpvae.estimator.blending.blend_draws`:
entries without an observed neighbour and the spread of the draws are untouched), and the
estimator: an under-trained model that is far worse than linear interpolation is brought
back to it on hidden test entries (observed values bit for bit, intervals still covering),
and the weights survive save and load.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gpvae import GPVAE, settings
from gpvae.app.baselines import impute_linear
from gpvae.batch import Batch
from gpvae.errors import ModelFileError, ValidationError
from gpvae.estimator.blending import blend_draws, fit_blend_weights


def _reference_weight(m: np.ndarray, v: np.ndarray, y: np.ndarray) -> float:
    """Brute force over the grid in float64 (ties: the largest weight)."""
    best, best_err = None, np.inf
    for w in settings.BLEND_WEIGHTS:
        err = float(np.mean([abs(vi + w * (mi - vi) - yi) for mi, vi, yi in zip(m, v, y)]))
        if err <= best_err + 1e-12:
            best, best_err = w, min(err, best_err)
    assert best is not None
    return float(best)


def test_fit_blend_weights_matches_brute_force_and_shares_rare_features() -> None:
    rng = np.random.default_rng(3)
    M = 600
    y = rng.standard_normal(M)
    feature = rng.integers(0, 3, M)
    feature[:20] = 3  # feature 3: 20 entries, fewer than BLEND_MIN_ENTRIES
    v = y + 0.3 * rng.standard_normal(M)  # interpolation: noisy everywhere
    m = np.where(feature == 0, y + 0.05 * rng.standard_normal(M), 0.0)  # model: good on 0
    m = np.where(feature == 1, y + 3.0 * rng.standard_normal(M), m)  # bad on 1
    m = np.where(feature == 2, y + 0.3 * rng.standard_normal(M), m)  # as good on 2
    w = fit_blend_weights(m, v, y, feature, 5)
    for d in range(3):
        idx = feature == d
        assert w[d] == pytest.approx(_reference_weight(m[idx], v[idx], y[idx]), abs=1e-12)
    shared = _reference_weight(m, v, y)
    assert w[3] == pytest.approx(shared)  # rare
    assert w[4] == pytest.approx(shared)  # absent
    assert w[0] >= 0.9
    assert w[1] <= 0.1
    assert 0.2 <= w[2] <= 0.8
    # nothing to go on: the model alone
    assert (fit_blend_weights(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), 2) == 1).all()


def test_blend_draws_moves_the_mean_and_keeps_the_spread() -> None:
    g = torch.Generator().manual_seed(0)
    B, N, D, S = 2, 9, 3, 5
    y = torch.randn(B, N, D, generator=g, dtype=torch.float64)
    obs = torch.rand(B, N, D, generator=g) < 0.5
    obs[0, :, 2] = False  # no neighbour anywhere: the model's prediction stays
    obs[1, 4, 1] = True
    batch = Batch.from_tensors(torch.where(obs, y, 0.0), obs)
    mean = torch.randn(B, N, D, generator=g, dtype=torch.float64)
    draws = mean + torch.randn(S, B, N, D, generator=g, dtype=torch.float64)
    w = np.array([0.0, 0.25, 1.0])
    m2, d2 = blend_draws(w, batch, mean, draws)
    X = torch.where(obs, y, torch.nan).numpy()
    lin = impute_linear(X)  # linear interpolation (constant beyond the ends), per series
    for b in range(B):
        for d in range(D):
            if not obs[b, :, d].any():
                np.testing.assert_array_equal(m2[b, :, d].numpy(), mean[b, :, d].numpy())
                continue
            missing = ~obs[b, :, d].numpy()
            want = lin[b, :, d] + w[d] * (mean[b, :, d].numpy() - lin[b, :, d])
            np.testing.assert_allclose(m2[b, missing, d].numpy(), want[missing], atol=1e-12)
    np.testing.assert_allclose((d2 - m2).numpy(), (draws - mean).numpy(), atol=1e-12)
    assert blend_draws(None, batch, mean, draws) == (mean, draws)
    # at a few steps only: the same values as at every step
    steps = [torch.tensor([1, 4, 7]), torch.tensor([0, 8])]
    m_at = torch.stack(
        [torch.cat([mean[b, s], mean.new_zeros(3 - len(s), D)]) for b, s in enumerate(steps)]
    )
    m3, _ = blend_draws(w, batch, m_at, m_at[None].expand(S, -1, -1, -1), steps)
    for b, s in enumerate(steps):
        np.testing.assert_allclose(m3[b, : len(s)].numpy(), m2[b, s].numpy(), atol=1e-12)


def _smooth_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(truth, observed, input, hidden): smooth sinusoids, 60% observed; the input lacks a
    fifth of the observed entries (``hidden``)."""
    rng = np.random.default_rng(seed)
    n, T, D = 48, 40, 4
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    truth = np.sin(np.arange(T)[None, :, None] / 4.0 + phase + np.arange(D)[None, None, :])
    truth = truth + 0.05 * rng.standard_normal((n, T, D))
    obs = rng.random((n, T, D)) < 0.6
    hide = obs & (rng.random((n, T, D)) < 0.2)
    return truth, np.where(obs, truth, np.nan), np.where(obs & ~hide, truth, np.nan), hide


def _fit(blend: bool, observed: np.ndarray, X: np.ndarray) -> GPVAE:
    """A model trained for 2 epochs (far from converged) on the first 32 series, validated
    on the hidden entries of the next 8."""
    est = GPVAE(
        latent_dim=2,
        hidden=(16,),
        epochs=2,
        batch_size=16,
        patience=None,
        seed=0,
        progress=False,
        interp_blend=blend,
    )
    return est.fit(observed[:32], X_val=X[32:40], X_val_target=observed[32:40])


def test_blend_brings_a_poor_model_back_to_interpolation() -> None:
    truth, observed, X, hide = _smooth_data()
    test = slice(40, 48)
    lin = impute_linear(X[test])
    mae_lin = np.abs(lin - truth[test])[hide[test]].mean()
    scores = {}
    for blend in (False, True):
        est = _fit(blend, observed, X)
        res = est.impute(X[test], num_samples=20)
        mean = np.asarray(res.mean)
        seen = ~np.isnan(X[test])
        assert np.array_equal(mean[seen], X[test][seen])  # observed values bit for bit
        scores[blend] = np.abs(mean - truth[test])[hide[test]].mean()
        if blend:
            assert est.blend_weight_ is not None
            assert est.blend_weight_.shape == (4,)
            lo, hi = np.asarray(res.lower), np.asarray(res.upper)
            inside = (lo <= truth[test]) & (truth[test] <= hi)
            assert inside[hide[test]].mean() >= 0.7  # calibrated on the blended draws
        else:
            assert est.blend_weight_ is None
    assert scores[False] > 2 * mae_lin  # the under-trained model alone is far worse
    assert scores[True] <= 1.05 * mae_lin  # blended: level with interpolation


def test_blend_weights_are_saved_and_checked(tmp_path: Path) -> None:
    _, observed, X, _ = _smooth_data(1)
    est = _fit(True, observed, X)
    est.save(tmp_path / "m")
    back = GPVAE.load(tmp_path / "m")
    assert back.interp_blend
    np.testing.assert_array_equal(back.blend_weight_, est.blend_weight_)
    a = est.impute(X[40:], num_samples=8)
    b = back.impute(X[40:], num_samples=8)
    np.testing.assert_allclose(np.asarray(a.mean), np.asarray(b.mean), atol=1e-6)
    cfg = tmp_path / "m" / "config.json"
    doc = json.loads(cfg.read_text())
    doc["extra"]["blend_weight"] = [1.5, 0, 0, 0]
    cfg.write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="blend_weight"):
        GPVAE.load(tmp_path / "m")
    del doc["extra"]["blend_weight"]  # a model saved before blending existed
    cfg.write_text(json.dumps(doc))
    assert GPVAE.load(tmp_path / "m").blend_weight_ is None


def test_blend_without_held_out_entries_is_refused_before_training() -> None:
    # with val_fraction=0, X_val's entries are all inputs: a blend chosen on them sees the
    # interpolation pass through every one of them and picked weight 0 (interpolation alone)
    _, observed, X, _ = _smooth_data(2)
    est = GPVAE(latent_dim=2, epochs=1, progress=False, interp_blend=True, val_fraction=0.0)
    for x_val in (None, X[32:40]):
        with pytest.raises(ValidationError, match="interp_blend: expected held-out"):
            est.fit(observed[:32], X_val=x_val)
    assert not est.is_fitted
    # hidden ground truth is held out whatever val_fraction says
    est.fit(observed[:32], X_val=X[32:40], X_val_target=observed[32:40])
    assert est.blend_weight_ is not None
