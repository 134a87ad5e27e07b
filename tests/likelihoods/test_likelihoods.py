"""Likelihoods: log-densities against scipy, masking, sampling moments, parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from gpvae.errors import GPVAEError, InputTypeError, ShapeError, ValidationError
from gpvae.likelihoods import Bernoulli, Gaussian, StudentT, get_likelihood

D = 3


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(2, 4, 5, D, generator=g, dtype=torch.float64)  # (S, B, N, D)
    y = torch.randn(4, 5, D, generator=g, dtype=torch.float64)  # (B, N, D)
    observed = torch.rand(4, 5, D, generator=g) < 0.5
    return loc, y, observed


def test_gaussian_matches_scipy_and_masks() -> None:
    loc, y, observed = _data()
    lik = Gaussian(D, variance=0.3).double()
    var = lik.feature_variance().detach().numpy()
    ref = stats.norm(loc.numpy(), np.sqrt(var)).logpdf(y.numpy())
    np.testing.assert_allclose(lik.log_prob_entries(loc, y).detach().numpy(), ref, rtol=1e-10)
    total = lik.log_prob(loc, y, observed)
    assert total.shape == (2, 4)
    expected = (ref * observed.numpy()).sum(axis=(-2, -1))
    np.testing.assert_allclose(total.detach().numpy(), expected, rtol=1e-10)


def test_gaussian_heteroscedastic_reads_variance_from_decoder() -> None:
    loc, y, _observed = _data()
    raw = torch.randn_like(loc)
    lik = Gaussian(heteroscedastic=True, min_variance=0.0)
    assert lik.num_params == 2
    var = torch.nn.functional.softplus(raw)
    ref = stats.norm(loc.numpy(), np.sqrt(var.numpy())).logpdf(y.numpy())
    np.testing.assert_allclose(lik.log_prob_entries((loc, raw), y).numpy(), ref, rtol=1e-10)
    torch.testing.assert_close(lik.variance((loc, raw)), var)


def test_gaussian_variance_is_learned_per_feature_or_fixed() -> None:
    lik = Gaussian(D, variance=0.5)
    assert lik.raw_variance.requires_grad
    assert lik.raw_variance.shape == (D,)
    torch.testing.assert_close(lik.feature_variance(), torch.full((D,), 0.5))
    fixed = Gaussian(D, variance=0.5, learn_variance=False)
    assert not fixed.raw_variance.requires_grad


def test_bernoulli_matches_scipy() -> None:
    loc, _, observed = _data()
    g = torch.Generator().manual_seed(1)
    y = (torch.rand(4, 5, D, generator=g) < 0.5).double()
    lik = Bernoulli(D)
    p = torch.sigmoid(loc).numpy()
    ref = stats.bernoulli(p).logpmf(y.numpy())
    np.testing.assert_allclose(lik.log_prob_entries(loc, y).numpy(), ref, rtol=1e-10)
    assert lik.log_prob(loc, y, observed).shape == (2, 4)


def test_student_t_matches_scipy() -> None:
    loc, y, _ = _data()
    lik = StudentT(D, df=3.5, scale=0.7).double()
    df, scale = lik.df.detach().numpy(), lik.scale.detach().numpy()
    ref = stats.t(df=df, loc=loc.numpy(), scale=scale).logpdf(y.numpy())
    np.testing.assert_allclose(
        lik.log_prob_entries(loc, y).detach().numpy(), ref, rtol=1e-8, atol=1e-10
    )


@pytest.mark.parametrize(
    "lik",
    [Gaussian(D, variance=0.5), Bernoulli(D), StudentT(D, df=6.0, scale=0.5)],
    ids=["gaussian", "bernoulli", "student-t"],
)
def test_sample_moments_match_mean_and_variance(lik: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    params = torch.tensor([0.3, -1.0, 2.0]).expand(40000, 1, D)
    s = lik.sample(params, generator=g)
    assert s.shape == params.shape
    torch.testing.assert_close(s.mean(0), lik.mean(params)[0], atol=0.03, rtol=0.0)
    var = lik.variance(params)[0]
    torch.testing.assert_close(s.var(0), var.detach(), atol=0.0, rtol=0.06)
    s2 = lik.sample(params, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s, s2)


def test_unobserved_entries_take_no_part() -> None:
    loc, y, observed = _data()
    lik = Gaussian(D)
    y2 = torch.where(observed, y, torch.full_like(y, 1e6))
    torch.testing.assert_close(lik.log_prob(loc, y, observed), lik.log_prob(loc, y2, observed))


def test_registry_and_bad_arguments() -> None:
    assert isinstance(get_likelihood("student-t", 2), StudentT)
    assert isinstance(get_likelihood("Gaussian", 2, heteroscedastic=True), Gaussian)
    with pytest.raises(ValidationError, match="likelihood"):
        get_likelihood("poisson", 2)
    with pytest.raises(ValidationError, match="num_features"):
        Gaussian(None)
    with pytest.raises(ValidationError, match="variance"):
        Gaussian(D, variance=-1.0)
    with pytest.raises(ValidationError, match="df"):
        StudentT(D, df=0.5)
    loc, y, observed = _data()
    with pytest.raises(ShapeError, match="params"):
        Gaussian(D + 1).log_prob(loc, y, observed)
    with pytest.raises(InputTypeError, match="params"):
        Gaussian(heteroscedastic=True).log_prob(loc, y, observed)
    with pytest.raises(InputTypeError, match="observed"):
        Gaussian(D).log_prob(loc, y, observed.double())
    with pytest.raises(GPVAEError, match="observed"):
        Gaussian(D).log_prob(loc, y, observed[:, :2])


@pytest.mark.parametrize("heteroscedastic", [False, True])
def test_gaussian_predictive_sample_is_the_per_series_loop_bit_for_bit(
    heteroscedastic: bool,
) -> None:
    """The batched Gaussian draws equal the base class's loop (each series' slice drawn
    from its own generator): the same noise, so the same values (bit for bit with a learned
    variance per feature; to rounding with the decoder's variance, a softplus of the whole
    batch instead of each slice), zeros on padding, generators left in the same state."""
    from gpvae.likelihoods.base import Likelihood

    torch.manual_seed(0)
    lik = Gaussian(heteroscedastic=heteroscedastic, num_features=None if heteroscedastic else 3)
    S, B, N, D = 5, 3, 7, 3
    loc = torch.randn(S, B, N, D)
    params = (loc, torch.randn(S, B, N, D)) if heteroscedastic else loc
    valid = torch.arange(N)[None, :] < torch.tensor([7, 4, 1])[:, None]  # (B, N)
    y, observed, index = torch.zeros(B, N, D), torch.ones(B, N, D, dtype=torch.bool), None
    gens = [torch.Generator().manual_seed(10 + b) for b in range(B)]
    ref_gens = [torch.Generator().manual_seed(10 + b) for b in range(B)]
    mean, draws = lik.predictive_sample(params, y, observed, index, valid, gens)
    ref_mean, ref = Likelihood.predictive_sample(lik, params, y, observed, index, valid, ref_gens)
    assert torch.equal(mean, ref_mean)
    if heteroscedastic:
        torch.testing.assert_close(draws, ref, rtol=1e-6, atol=1e-7)
    else:
        assert torch.equal(draws, ref)
    assert (draws[:, 2, 1:] == 0).all()
    assert all(torch.equal(g.get_state(), r.get_state()) for g, r in zip(gens, ref_gens))


@pytest.mark.parametrize("heteroscedastic", [False, True])
def test_gaussian_entry_draws_have_the_base_class_distribution(heteroscedastic: bool) -> None:
    """Noise for the wanted entries only: the mean at them exactly, the draws with the
    distribution of the base class's (which draws whole steps and picks), each series'
    draws from its own generator alone, in row-major order."""
    from gpvae.likelihoods.base import Likelihood

    torch.manual_seed(1)
    lik = Gaussian(heteroscedastic=heteroscedastic, num_features=None if heteroscedastic else 3)
    S, B, N, D = 20_000, 3, 4, 3
    loc = torch.randn(1, B, N, D).expand(S, B, N, D)
    raw = torch.randn(1, B, N, D).expand(S, B, N, D)
    params = (loc, raw) if heteroscedastic else loc
    entries = torch.rand(B, N, D) < 0.4
    entries[1] = False  # a series with no wanted entry
    entries[2, 0, 1] = True
    gens = [torch.Generator().manual_seed(20 + b) for b in range(B)]
    mean, draws = lik.entry_draws(params, entries, gens)
    ref_mean, ref = Likelihood.entry_draws(
        lik, params, entries, [torch.Generator().manual_seed(30 + b) for b in range(B)]
    )
    M = int(entries.sum())
    assert mean.shape == draws.shape == ref.shape == (S, M)
    assert torch.equal(mean, ref_mean)
    torch.testing.assert_close(mean[0], lik.mean(params)[0][entries])
    sd = lik.variance(params)[0][entries].sqrt()
    for d in (draws, ref):  # both N(mean, var) at each entry
        assert ((d.mean(0) - mean[0]).abs() < 4 * sd / S**0.5).all()
        assert ((d.std(0) / sd - 1).abs() < 0.04).all()
    # series 2's draws come from its generator alone: the same with series 0 left out
    alone = entries.clone()
    alone[0] = False
    fresh = [torch.Generator().manual_seed(20 + b) for b in range(B)]
    again = lik.entry_draws(params, alone, fresh)
    n0 = int(entries[0].sum())
    assert torch.equal(again[1], draws[:, n0:])


def test_student_t_entry_draws_pick_the_wanted_entries_of_its_draws() -> None:
    """The base class: the series' wanted steps drawn whole from its generator, the wanted
    entries picked (a Student-t, whose draws use two streams)."""
    lik = StudentT(D, df=4.0)
    S, B, N = 3, 2, 5
    loc = torch.randn(S, B, N, D, generator=torch.Generator().manual_seed(0))
    entries = torch.zeros(B, N, D, dtype=torch.bool)
    entries[0, 1, 2] = entries[0, 3, 0] = entries[1, 4, 1] = True
    gens = [torch.Generator().manual_seed(b) for b in range(B)]
    mean, draws = lik.entry_draws(loc, entries, gens)
    assert torch.equal(mean, loc[:, entries])
    for b, steps in ((0, [1, 3]), (1, [4])):
        whole = lik.sample(loc[:, b : b + 1, steps], torch.Generator().manual_seed(b))[:, 0]
        picked = whole[:, entries[b, steps]]
        first = 0 if b == 0 else 2
        assert torch.equal(draws[:, first : first + picked.shape[-1]], picked)
