"""GPNoiseGaussian against the dense, obviously-correct Gaussian computations (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from gpvae.errors import GPVAEError
from gpvae.kernels import Matern32, Matern52
from gpvae.likelihoods.gp_noise import GPNoiseGaussian

S, B, N, D = 2, 3, 9, 4


def _setup(
    seed: int, backend: str, kernel: object = None, per_feature: bool = False
) -> tuple[GPNoiseGaussian, torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    lik = GPNoiseGaussian(
        D,
        kernel=kernel,  # type: ignore[arg-type]
        backend=backend,
        per_feature_kernel=per_feature,
    ).double()
    with torch.no_grad():
        lik.raw_amplitude.copy_(torch.randn(D, generator=g, dtype=torch.float64))
        lik.raw_variance.copy_(torch.randn(D, generator=g, dtype=torch.float64) - 1.0)
        for i, k in enumerate(lik.gp.kernel_list):
            k.lengthscale = 2.5 + i
    x = torch.cumsum(torch.rand(B, N, generator=g, dtype=torch.float64) + 0.2, dim=1)[..., None]
    f = torch.randn(S, B, N, D, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(B, N, D, generator=g, dtype=torch.float64)
    observed = torch.rand(B, N, D, generator=g) < 0.6
    observed[0, :, 0] = False  # a feature with nothing observed
    return lik, x, f, y, observed


def _kernel(lik: GPNoiseGaussian, d: int):  # type: ignore[no-untyped-def]
    return lik.gp.kernel_list[d if lik.per_feature_kernel else 0]


def _dense_cov(lik: GPNoiseGaussian, x: torch.Tensor, d: int) -> torch.Tensor:
    """a_d^2 K(x, x) + s2_d I for one series (N, N)."""
    a = lik.amplitude()[d]
    K = _kernel(lik, d)(x, x)
    return a**2 * K + lik.feature_variance()[d] * torch.eye(x.shape[0], dtype=x.dtype)


def _dense_log_prob(lik, x, f, y, observed):  # type: ignore[no-untyped-def]
    out = torch.zeros(S, B, dtype=torch.float64)
    for s in range(S):
        for b in range(B):
            total = torch.zeros((), dtype=torch.float64)
            for d in range(D):
                o = observed[b, :, d]
                if not o.any():
                    continue
                C = _dense_cov(lik, x[b][o], d)
                r = y[b, o, d] - f[s, b, o, d]
                dist = torch.distributions.MultivariateNormal(torch.zeros_like(r), C)
                total = total + dist.log_prob(r)
            out[s, b] = total
    return out


@pytest.mark.parametrize("per_feature", [False, True])
@pytest.mark.parametrize("backend", ["markov", "dense"])
@pytest.mark.parametrize("seed", [0, 1])
def test_log_prob_matches_dense_multivariate_normal(
    backend: str, seed: int, per_feature: bool
) -> None:
    lik, x, f, y, observed = _setup(seed, backend, per_feature=per_feature)
    got = lik.log_prob(f, y, observed, index=x)
    want = _dense_log_prob(lik, x, f, y, observed)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    # the kernels' learned hyper-parameters: (L,) tensors when packed, else one per kernel
    scales = [p for p in lik.gp.parameters() if p.requires_grad]
    assert scales
    params = [f, lik.raw_amplitude, lik.raw_variance, *scales]
    g_got = torch.autograd.grad(got.sum(), params)
    g_want = torch.autograd.grad(want.sum(), params)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_log_prob_matern52_kernel_and_padding() -> None:
    lik, x, f, y, observed = _setup(3, "markov", kernel=Matern52(lengthscale=1.0))
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[1, -3:] = False  # padding at the end of series 1
    obs = observed & valid[..., None]
    got = lik.log_prob(f, y, obs, index=x, valid=valid)
    torch.testing.assert_close(got, _dense_log_prob(lik, x, f, y, obs), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("per_feature", [False, True])
@pytest.mark.parametrize("backend", ["markov", "dense"])
def test_conditional_matches_dense_gaussian_conditioning(backend: str, per_feature: bool) -> None:
    lik, x, f, y, observed = _setup(4, backend, per_feature=per_feature)
    with torch.no_grad():
        mean, var = lik.conditional(f, y, observed, x)
        for s in range(S):
            for b in range(B):
                for d in range(D):
                    o = observed[b, :, d]
                    a2 = lik.amplitude()[d] ** 2
                    K = a2 * _kernel(lik, d)(x[b], x[b])  # (N, N), the noise process
                    s2 = lik.feature_variance()[d]
                    if o.any():
                        C = K[o][:, o] + s2 * torch.eye(int(o.sum()), dtype=torch.float64)
                        r = y[b, o, d] - f[s, b, o, d]
                        Kx = K[:, o]
                        m_want = f[s, b, :, d] + Kx @ torch.linalg.solve(C, r)
                        v_want = K.diagonal() - (Kx * torch.linalg.solve(C, Kx.T).T).sum(-1) + s2
                    else:
                        m_want, v_want = f[s, b, :, d], K.diagonal() + s2
                    torch.testing.assert_close(mean[s, b, :, d], m_want, rtol=1e-8, atol=1e-9)
                    torch.testing.assert_close(var[s, b, :, d], v_want, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("per_feature", [False, True])
def test_predict_matches_dense_gaussian_conditioning(per_feature: bool) -> None:
    lik, x, f, y, observed = _setup(5, "markov", per_feature=per_feature)
    H = 3
    x_new = x[:, -1:] + torch.arange(1, H + 1, dtype=torch.float64)[None, :, None]
    g_new = torch.randn(S, B, H, D, dtype=torch.float64)
    with torch.no_grad():
        mean, var = lik.predict(f, y, observed, x, g_new, x_new)
        for s, b, d in [(0, 1, 2), (1, 2, 3), (1, 0, 0)]:
            k = _kernel(lik, d)
            o = observed[b, :, d]
            a2, s2 = lik.amplitude()[d] ** 2, lik.feature_variance()[d]
            Kss = a2 * k(x_new[b], x_new[b])
            if o.any():
                C = a2 * k(x[b][o], x[b][o]) + s2 * torch.eye(int(o.sum()), dtype=torch.float64)
                Kx = a2 * k(x_new[b], x[b][o])
                r = y[b, o, d] - f[s, b, o, d]
                m_want = g_new[s, b, :, d] + Kx @ torch.linalg.solve(C, r)
                v_want = Kss.diagonal() - (Kx * torch.linalg.solve(C, Kx.T).T).sum(-1) + s2
            else:
                m_want, v_want = g_new[s, b, :, d], Kss.diagonal() + s2
            torch.testing.assert_close(mean[s, b, :, d], m_want, rtol=1e-8, atol=1e-9)
            torch.testing.assert_close(var[s, b, :, d], v_want, rtol=1e-8, atol=1e-9)


def test_marginal_methods_are_one_entry_of_the_joint() -> None:
    lik, x, f, y, observed = _setup(6, "markov")
    with torch.no_grad():
        var = lik.variance(f)
        want = lik.amplitude() ** 2 + lik.feature_variance()
        torch.testing.assert_close(var[0, 0, 0], want)
        lp = lik.log_prob_entries(f, y)
        one = torch.distributions.Normal(f, want.sqrt()).log_prob(y.expand_as(f))
        torch.testing.assert_close(lp, one)
        # a single observed entry: the joint log density is the marginal one
        obs = torch.zeros_like(observed)
        obs[1, 4, 2] = True
        joint = lik.log_prob(f, y, obs, index=x)
        torch.testing.assert_close(joint[:, 1], lp[:, 1, 4, 2])
        assert math.isclose(float(joint[:, 0].abs().max()), 0.0)


def test_bad_arguments_raise_named_errors() -> None:
    lik, x, f, y, observed = _setup(7, "markov")
    with pytest.raises(GPVAEError, match="index"):
        lik.log_prob(f, y, observed)
    with pytest.raises(GPVAEError, match="index"):
        lik.log_prob(f, y, observed, index=x[:, :-1])
    with pytest.raises(GPVAEError, match="observed"):
        lik.log_prob(f, y, observed.double(), index=x)
    with pytest.raises(GPVAEError, match="num_features"):
        GPNoiseGaussian(None)
    with pytest.raises(GPVAEError, match="amplitude"):
        GPNoiseGaussian(3, amplitude=-1.0)
    with pytest.raises(GPVAEError, match="kernel"):
        GPNoiseGaussian(3, kernel="matern32")  # type: ignore[arg-type]


def test_kernel_variance_is_frozen_at_one() -> None:
    lik = GPNoiseGaussian(3, kernel=Matern32(lengthscale=2.0, variance=4.0))
    k = lik.gp.kernel_list[0]
    assert float(k.variance) == pytest.approx(1.0)
    assert not k.raw_variance.requires_grad
    assert k.raw_lengthscale.requires_grad


@pytest.mark.parametrize("per_feature", [False, True])
def test_sample_path_has_the_joint_covariance(per_feature: bool) -> None:
    lik, x, _, _, _ = _setup(8, "markov", per_feature=per_feature)
    S = 20_000
    f = torch.zeros(S, 1, N, D, dtype=torch.float64)
    with torch.no_grad():
        y = lik.sample_path(f, x[:1], torch.Generator().manual_seed(9))  # (S, 1, N, D)
        for d in range(D):
            want = _dense_cov(lik, x[0], d)
            got = torch.cov(y[:, 0, :, d].T)
            se = (want.diagonal()[:, None] * want.diagonal()[None, :] * 2 / S).sqrt()
            assert bool(((got - want).abs() <= 6 * se).all()), (d, (got - want).abs().max())
