"""The latent path's one-step-ahead surprise under the GP prior (``latent_nlpd``): against
the prior's log marginal of the pseudo-observations, a dense float64 conditioning written
out here, the marginal for ``lags=0`` and the white prior, and the estimator's windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.test_anomaly import fit_seasonal, seasonal
from tests.test_anomaly_prior import _batch

from gpvae import GPVAE
from gpvae.errors import ValidationError
from gpvae.estimator.anomaly import entry_scores
from gpvae.model.scoring import latent_nlpd


@pytest.fixture(scope="module")
def fitted() -> GPVAE:
    return fit_seasonal()


def _sites(fitted: GPVAE, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(m, v) (N, L) pseudo-observations of ``y`` and the (L, N, N) prior covariances."""
    batch = _batch(fitted, y)
    with torch.no_grad():
        q = fitted.model_.encode(batch)
        cov = fitted.model_.prior.covariance(batch.x.double())[0]
    return q.gp.mean[0].double().numpy(), q.gp.var[0].double().numpy(), cov.numpy()


def _gauss_nlpd(y: float, mu: float, s: float) -> float:
    return 0.5 * (np.log(2 * np.pi * s) + (y - mu) ** 2 / s)


def test_all_lags_sum_to_the_log_marginal_of_the_pseudo_observations(fitted: GPVAE) -> None:
    """With every earlier step conditioned on, the step scores are the chain rule's factors
    of ``log N(m | 0, K + diag(v))``: their sum per channel is the posterior's log
    normaliser (computed by the GP backend, another route)."""
    y = seasonal(40, 3)
    y[20] += 1.5
    batch = _batch(fitted, y)
    ours = latent_nlpd(fitted.model_, batch, 39)[0].numpy()  # (N, L)
    with torch.no_grad():
        ref = -fitted.model_.encode(batch).gp.log_marginal[0].double().numpy()  # (L,)
    np.testing.assert_allclose(ours.sum(0), ref, rtol=1e-5)


def test_each_step_is_the_dense_conditional_on_its_previous_lags(fitted: GPVAE) -> None:
    y = seasonal(30, 4)
    y[12] -= 2.0
    m, v, cov = _sites(fitted, y)
    P = 5
    ours = latent_nlpd(fitted.model_, _batch(fitted, y), P)[0].numpy()
    for n in (0, 3, 12, 13, 29):
        past = np.arange(max(0, n - P), n)
        for ch in range(m.shape[1]):
            K = cov[ch]
            A = K[np.ix_(past, past)] + np.diag(v[past, ch])
            c = K[past, n]
            mu = c @ np.linalg.solve(A, m[past, ch]) if len(past) else 0.0
            s = K[n, n] - (c @ np.linalg.solve(A, c) if len(past) else 0.0) + v[n, ch]
            assert ours[n, ch] == pytest.approx(_gauss_nlpd(m[n, ch], mu, s), rel=1e-6)


def test_no_lags_is_the_prior_marginal(fitted: GPVAE) -> None:
    y = seasonal(25, 5)
    m, v, cov = _sites(fitted, y)
    ours = latent_nlpd(fitted.model_, _batch(fitted, y), 0)[0].numpy()
    k0 = np.stack([np.diagonal(c) for c in cov], -1)  # (N, L)
    np.testing.assert_allclose(ours, _gauss_nlpd(m, 0.0, k0 + v), rtol=1e-6)


def test_a_step_without_observations_is_skipped(fitted: GPVAE) -> None:
    """NaN at the step, and the later steps condition on the observed ones only (the same
    as the dense conditional with that step left out)."""
    y = seasonal(20, 6)
    m, v, cov = _sites(fitted, y)
    batch = _batch(fitted, y)
    batch.observed[0, 10] = False
    ours = latent_nlpd(fitted.model_, batch, 3)[0].numpy()
    assert np.isnan(ours[10]).all()
    assert np.isfinite(np.delete(ours, 10, 0)).all()
    past = np.array([8, 9])  # step 11's three previous steps, 10 left out
    K = cov[0]
    A = K[np.ix_(past, past)] + np.diag(v[past, 0])
    c = K[past, 11]
    mu = c @ np.linalg.solve(A, m[past, 0])
    s = K[11, 11] - c @ np.linalg.solve(A, c) + v[11, 0]
    assert ours[11, 0] == pytest.approx(_gauss_nlpd(m[11, 0], mu, s), rel=1e-6)


def test_a_jump_of_the_latent_path_stands_out_where_the_marginal_misses_it(
    fitted: GPVAE,
) -> None:
    """Two half-periods swapped: every value stays in the normal range (the marginal score
    barely moves) but the path jumps at the swap (the dynamics' score peaks there)."""
    y = seasonal(96, 7)
    y[48:] = -y[48:]  # a phase jump by half a period at step 48
    batch = _batch(fitted, y)
    dyn = latent_nlpd(fitted.model_, batch, 8)[0].numpy().sum(1)
    marg = latent_nlpd(fitted.model_, batch, 0)[0].numpy().sum(1)
    rank = lambda s: (s[48:50].max() > s).mean()  # noqa: E731
    assert rank(dyn) > 0.97
    assert dyn[48:50].max() - np.median(dyn) > 2 * (marg[48:50].max() - np.median(marg))


def test_under_a_white_prior_every_lag_gives_the_marginal() -> None:
    vae = fit_seasonal(kernel="white", posterior="diagonal")
    batch = _batch(vae, seasonal(30, 8))
    a = latent_nlpd(vae.model_, batch, 0)
    np.testing.assert_allclose(latent_nlpd(vae.model_, batch, 6), a, rtol=1e-12)
    with torch.no_grad():
        mean, var = (t.double().numpy() for t in vae.model_.encode(batch).marginals())
        k0 = vae.model_.prior.marginal_variance(batch.x).double().numpy()  # the white variance
    np.testing.assert_allclose(a, _gauss_nlpd(mean, 0.0, k0 + var), rtol=1e-6)


def test_lags_must_be_a_non_negative_int(fitted: GPVAE) -> None:
    batch = _batch(fitted, seasonal(10, 9))
    for bad in (-1, 1.5, True):
        with pytest.raises(ValidationError, match="lags"):
            latent_nlpd(fitted.model_, batch, bad)  # type: ignore[arg-type]


def test_windows_give_each_step_a_window_with_its_lags(fitted: GPVAE) -> None:
    """The estimator's windowed scores equal the whole series' wherever the chosen window
    holds the step's ``lags`` previous steps (every step after the first ``lags``)."""
    y = seasonal(300, 10)
    ctx = fitted._context("anomaly_scores")
    _, scaled = ctx.input(y[None], np.arange(300.0)[None])
    got = entry_scores(ctx, scaled, 4, 1, 64, latent_lags=8)[0]
    assert got.shape == (300, fitted.model_.latent_dim)
    whole = latent_nlpd(fitted.model_, _batch(fitted, y), 8)[0].numpy()
    np.testing.assert_allclose(got[8:], whole[8:], rtol=1e-4, atol=1e-5)
