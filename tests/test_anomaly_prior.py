"""Anomaly scores under the prior alone (``prior_weight``): the Monte Carlo estimate against
quadrature, what the term adds to the held-out score, and its place in the profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.test_anomaly import _auc, fit_seasonal, seasonal

from gpvae import GPVAE
from gpvae.batch import Batch
from gpvae.errors import ValidationError
from gpvae.estimator.anomaly import AnomalyProfile
from gpvae.model.scoring import prior_nlpd


@pytest.fixture(scope="module")
def fitted() -> GPVAE:
    return fit_seasonal()


def _batch(fitted: GPVAE, y: np.ndarray) -> Batch:
    T = len(y)
    return Batch(
        torch.arange(float(T))[None, :, None],
        torch.tensor(fitted.scaler_.transform(y)[None], dtype=torch.float32),
        torch.ones(1, T, y.shape[1], dtype=torch.bool),
        torch.ones(1, T, dtype=torch.bool),
    )


def test_prior_score_matches_gauss_hermite_quadrature(fitted: GPVAE) -> None:
    """``-log p(y_nd)`` with ``p(y_nd) = E_z p(y_nd | z)``, ``z ~ N(0, diag k_l(x_n, x_n))``:
    the model's Monte Carlo estimate against a 2-D Gauss-Hermite quadrature over the latent
    (the prior variances read off the dense covariance matrix)."""
    model = fitted.model_
    y = seasonal(6, 30)
    y[3, 1] += 1.2  # one entry away from the normal pattern
    batch = _batch(fitted, y)
    ours = prior_nlpd(model, batch, [torch.Generator().manual_seed(0)], 100_000)[0].numpy()

    with torch.no_grad():
        cov = model.prior.covariance(batch.x.double())  # (1, L, N, N)
        var = torch.diagonal(cov, dim1=-2, dim2=-1)[0].T  # (N, L)
        nodes, weights = np.polynomial.hermite_e.hermegauss(60)  # weight exp(-u^2 / 2)
        weights = weights / weights.sum()
        u1, u2 = np.meshgrid(nodes, nodes, indexing="ij")
        w = torch.tensor((weights[:, None] * weights[None, :]).ravel())  # (G,)
        u = torch.tensor(np.stack([u1.ravel(), u2.ravel()], -1))  # (G, 2)
        z = (u[:, None, :] * var.sqrt()[None]).float()[:, None]  # (G, 1, N, L)
        lp = model.likelihood.log_predictive_entries(
            model.decode(z, batch), batch.y, batch.observed, batch.x, batch.valid
        )  # (G, 1, N, D)
        ref = -torch.logsumexp(lp[:, 0] + w.log()[:, None, None], dim=0).numpy()
    np.testing.assert_allclose(ours, ref, atol=0.03)
    # and it is a density of the value alone: the shifted entry is far less likely
    assert ours[3, 1] > ours[2, 1] + 0.5


def test_prior_variance_is_the_diagonal_of_the_covariance(fitted: GPVAE) -> None:
    x = torch.tensor([[0.0, 1.5, 4.0, 4.5]], dtype=torch.float64)
    prior = fitted.model_.prior
    dense = torch.diagonal(prior.covariance(x), dim1=-2, dim2=-1)  # (1, L, N)
    np.testing.assert_allclose(
        prior.marginal_variance(x).detach().numpy(), dense.transpose(1, 2).detach().numpy()
    )


def test_prior_weight_ranks_a_slow_departure_that_the_heldout_score_misses(
    fitted: GPVAE,
) -> None:
    """One feature drifts smoothly to a level the normal data never reach, and back: each
    step is fairly well predicted by its neighbours, so the held-out score sees it poorly;
    the prior's score sees the level."""
    y = seasonal(400, 31)
    bump = np.zeros(400)
    bump[120:280] = 2.5 * np.sin(np.pi * np.arange(160) / 160.0) ** 2
    y[:, 0] += bump
    labels = bump > 1.0  # the steps at least 1 (about 1.4 sd) above the normal pattern
    held = fitted.anomaly_scores(y[None], num_samples=16, prior_weight=0.0).step[0]
    both = fitted.anomaly_scores(y[None], num_samples=16, prior_weight=1.0).step[0]
    a_held, a_both = _auc(held, labels), _auc(both, labels)
    assert a_both > 0.85, (a_held, a_both)
    assert a_both > a_held + 0.1, (a_held, a_both)


def test_profile_stores_the_prior_weight(fitted: GPVAE, tmp_path: Path) -> None:
    fitted.fit_threshold([seasonal(300, 32)], false_alarm_rate=0.05, num_samples=4,
                         prior_weight=0.5)  # fmt: skip
    try:
        prof = fitted.anomaly_profile_
        assert prof is not None
        assert prof.prior_weight == 0.5
        y = seasonal(120, 33)
        stored = fitted.anomaly_scores(y[None])
        given = fitted.anomaly_scores(y[None], prior_weight=0.5)
        np.testing.assert_array_equal(stored.entry, given.entry)
        none = fitted.anomaly_scores(y[None], prior_weight=0.0)
        assert not np.allclose(stored.entry, none.entry)
        fitted.save(tmp_path / "m")
        loaded = GPVAE.load(tmp_path / "m")
        assert loaded.anomaly_profile_ is not None
        assert loaded.anomaly_profile_.prior_weight == 0.5
        np.testing.assert_array_equal(loaded.anomaly_scores(y[None]).step, stored.step)
    finally:
        fitted.anomaly_profile_ = None


def test_profile_weighs_the_prior_by_the_spread_of_normal_scores(fitted: GPVAE) -> None:
    """fit_threshold puts the prior's score on the held-out score's scale: feature d's
    weight is prior_weight times the ratio of the two spreads (90% quantile less median)
    on the normal data, computed here from the two scores separately."""
    normal = seasonal(300, 35)
    held = fitted.anomaly_scores([normal], num_samples=4, prior_weight=0.0).entry[0]
    alone = fitted.anomaly_scores([normal], num_samples=4, prior_weight=1.0).entry[0] - held
    spread = [np.quantile(e, 0.9, axis=0) - np.median(e, axis=0) for e in (held, alone)]
    y = seasonal(100, 36)
    h = fitted.anomaly_scores([y], num_samples=4, prior_weight=0.0).entry[0]
    a = fitted.anomaly_scores([y], num_samples=4, prior_weight=1.0).entry[0] - h
    fitted.fit_threshold([normal], false_alarm_rate=0.05, num_samples=4, prior_weight=2.0)
    try:
        prof = fitted.anomaly_profile_
        assert prof is not None
        assert prof.prior_ratio is not None
        np.testing.assert_allclose(prof.prior_ratio, spread[0] / spread[1], rtol=1e-9)
        both = fitted.anomaly_scores([y]).entry[0]
        np.testing.assert_allclose(both, h + 2.0 * prof.prior_ratio * a, rtol=1e-9, atol=1e-9)
    finally:
        fitted.anomaly_profile_ = None


def test_profile_saved_before_the_prior_weight_has_none() -> None:
    data = AnomalyProfile(64, 5, 4, 3, np.zeros(2), np.ones(2), 1.0, 0.01, 10).to_json()
    del data["prior_weight"]
    assert AnomalyProfile.from_json(data, 2).prior_weight == 0.0


def test_bad_prior_weight_names_itself(fitted: GPVAE) -> None:
    y = seasonal(50, 34)
    with pytest.raises(ValidationError, match="prior_weight"):
        fitted.anomaly_scores([y], prior_weight=-1.0)
    with pytest.raises(ValidationError, match="prior_weight"):
        fitted.fit_threshold([y], prior_weight=float("nan"))


def test_prior_weight_with_correlated_noise_is_refused_before_any_scoring(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """likelihood="gaussian_gp" has no prior score: an explicit prior_weight > 0 is refused
    naming prior_weight, before the held-out scoring pass (it ran first, ~45 s on a long
    series, and then the error named 'likelihood'); 0 and the default are accepted."""
    from gpvae.estimator import anomaly

    model = fit_seasonal(likelihood="gaussian_gp", epochs=2)
    y = seasonal(60, 35)
    real = anomaly.entry_scores

    def scored(*args: object, **kwargs: object) -> object:
        raise AssertionError("scored before the prior weight was checked")

    monkeypatch.setattr(anomaly, "entry_scores", scored)
    with pytest.raises(ValidationError, match=r"^prior_weight: expected 0 .* found 0\.5"):
        model.anomaly_scores([y], prior_weight=0.5)
    with pytest.raises(ValidationError, match=r"^prior_weight: expected 0"):
        model.fit_threshold([y], prior_weight=0.5)
    monkeypatch.setattr(anomaly, "entry_scores", real)
    res = model.anomaly_scores([y], num_samples=2, prior_weight=0.0)
    assert np.isfinite(np.asarray(res.entry)).all()
    model.fit_threshold([y], num_samples=2)
    assert model.anomaly_profile_ is not None
    assert model.anomaly_profile_.prior_weight == 0.0
