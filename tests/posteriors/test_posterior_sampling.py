"""Samples, marginals, log-density ratios and input checks of the posterior families."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from gpvae.batch import Batch
from gpvae.errors import GPVAEError, InputTypeError, ShapeError, ValidationError
from gpvae.gp import GPPrior
from gpvae.kernels import RBF, Matern32, White
from gpvae.posteriors import (
    BandedPosterior,
    DiagonalPosterior,
    StructuredPosterior,
    get_posterior,
)
from gpvae.posteriors.banded import linear_recurrence
from gpvae.posteriors.base import prior_log_prob
from gpvae.posteriors.structured import StructuredQ

B, N, D, L = 2, 9, 2, 2


def make_batch(seed: int = 0, pad: bool = True) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = torch.sort(torch.rand(B, N, generator=g, dtype=torch.float64) * 8, dim=1).values
    valid = torch.ones(B, N, dtype=torch.bool)
    if pad:
        valid[1, 6:] = False
    observed = (torch.rand(B, N, D, generator=g) < 0.7) & valid[..., None]
    observed[0, 2] = False
    y = torch.where(observed, torch.randn(B, N, D, generator=g, dtype=torch.float64), 0.0)
    return Batch.from_tensors(y, observed=observed, x=x, valid=valid)


def outputs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(B, N, L, generator=g, dtype=torch.float64)
    var = torch.rand(B, N, L, generator=g, dtype=torch.float64) * 0.5 + 0.2
    off = torch.randn(B, N, L, generator=g, dtype=torch.float64)
    return mean, var, off


def dense_banded(mean, var, off, b: int, ch: int, n: int) -> MultivariateNormal:
    Bm = torch.diag(var[b, :n, ch].rsqrt()) + torch.diag(off[b, : n - 1, ch], 1)
    return MultivariateNormal(mean[b, :n, ch], precision_matrix=Bm @ Bm.T)


def test_linear_recurrence_matches_a_loop() -> None:
    g = torch.Generator().manual_seed(0)
    for n in [1, 2, 5, 16, 37]:
        a = torch.randn(3, n, generator=g, dtype=torch.float64)
        d = torch.randn(3, n, generator=g, dtype=torch.float64)
        ref = torch.zeros_like(d)
        ref[:, 0] = d[:, 0]
        for i in range(1, n):
            ref[:, i] = a[:, i] * ref[:, i - 1] + d[:, i]
        torch.testing.assert_close(linear_recurrence(a, d), ref)


def test_banded_marginals_and_sample_covariance_match_dense() -> None:
    batch = make_batch()
    mean, var, off = outputs()
    prior = GPPrior(Matern32(), L).double()
    q = BandedPosterior()((mean, var, off), batch, prior)
    m, v = q.marginals()
    z = q.rsample(40000, torch.Generator().manual_seed(0))
    assert z.shape == (40000, B, N, L)
    for b, ch in [(0, 0), (0, 1), (1, 1)]:
        n = int(batch.valid[b].sum())
        ref = dense_banded(mean, var, off, b, ch, n)
        torch.testing.assert_close(m[b, :n, ch], ref.mean)
        torch.testing.assert_close(v[b, :n, ch], ref.covariance_matrix.diagonal())
        emp = torch.cov(z[:, b, :n, ch].T)
        scale = ref.covariance_matrix.diagonal().max()
        assert float((emp - ref.covariance_matrix).abs().max()) < 0.05 * float(scale)


@pytest.mark.parametrize("family", ["structured", "banded", "diagonal"])
@pytest.mark.parametrize("kernel", ["matern32", "rbf", "white"])
def test_log_ratio_equals_dense_log_densities(family: str, kernel: str) -> None:
    batch = make_batch()
    mean, var, off = outputs()
    k = {"matern32": Matern32(lengthscale=2.0), "rbf": RBF(lengthscale=2.0), "white": White(0.7)}[
        kernel
    ]
    prior = GPPrior(k, L, backend="dense").double()
    enc = (mean, var, off) if family == "banded" else (mean, var)
    q = get_posterior(family)(enc, batch, prior)
    z = q.rsample(4, torch.Generator().manual_seed(3))
    ratio = q.log_ratio(z)
    assert ratio.shape == (4, B)
    K = prior.covariance(batch.x)
    mq, _ = q.marginals()
    for b in range(B):
        n = int(batch.valid[b].sum())
        ref = torch.zeros(4, dtype=torch.float64)
        for ch in range(L):
            zz = z[:, b, :n, ch]
            p = MultivariateNormal(torch.zeros(n, dtype=K.dtype), K[b, ch, :n, :n])
            if family == "banded":
                qd = dense_banded(mean, var, off, b, ch, n)
            elif family == "diagonal":
                qd = MultivariateNormal(mean[b, :n, ch], torch.diag(var[b, :n, ch]))
            else:
                cov = q.gp.covariance()[b, ch, :n, :n]  # type: ignore[attr-defined]
                qd = MultivariateNormal(mq[b, :n, ch], cov)
            ref += p.log_prob(zz) - qd.log_prob(zz)
        torch.testing.assert_close(ratio[:, b], ref, rtol=1e-6, atol=1e-6)


def test_prior_log_prob_markov_route_equals_dense() -> None:
    batch = make_batch()
    prior = GPPrior(Matern32(lengthscale=1.7), L).double()
    z = prior.sample(batch.x, 3, torch.Generator().manual_seed(0), valid=batch.valid)
    z = torch.where(batch.valid[..., None], z, 0.0)
    markov = prior_log_prob(prior, batch.x, batch.valid, z)
    K = prior.covariance(batch.x)
    for b in range(B):
        n = int(batch.valid[b].sum())
        ref = sum(
            MultivariateNormal(torch.zeros(n, dtype=K.dtype), K[b, ch, :n, :n]).log_prob(
                z[:, b, :n, ch]
            )
            for ch in range(L)
        )
        torch.testing.assert_close(markov[:, b], ref, rtol=1e-8, atol=1e-8)


def test_banded_with_a_markov_prior_builds_no_n_by_n_matrix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sampling, KL and log-ratio never call the prior's dense covariance or a Cholesky (in
    eval mode: a family's first training call checks the prior's conditioning once, on at
    most 256 points, :func:`gpvae.posteriors.base.warn_singular_prior`)."""
    batch = make_batch()
    mean, var, off = outputs()
    prior = GPPrior(Matern32(), L).double()

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("an N x N matrix was built")

    monkeypatch.setattr(prior, "covariance", forbidden)
    monkeypatch.setattr(torch.linalg, "cholesky_ex", forbidden)
    monkeypatch.setattr(torch.linalg, "solve_triangular", forbidden)
    q = BandedPosterior(route="markov").eval()((mean, var, off), batch, prior)
    z = q.rsample(2)
    assert torch.isfinite(q.kl()).all()
    assert torch.isfinite(q.log_ratio(z)).all()
    q.marginals()


def test_structured_excludes_points_with_nothing_observed() -> None:
    batch = make_batch()
    mean, var, _ = outputs()
    prior = GPPrior(Matern32(), L).double()
    q1 = StructuredPosterior()((mean, var), batch, prior)
    none = ~batch.observed.any(-1)
    mean2 = torch.where(none[..., None], 1e3, mean)
    var2 = torch.where(none[..., None], 1e-3, var)
    q2 = StructuredPosterior()((mean2, var2), batch, prior)
    torch.testing.assert_close(q1.kl(), q2.kl())
    for a, b in zip(q1.marginals(), q2.marginals()):
        torch.testing.assert_close(a, b)


def test_structured_with_every_point_observed_conditions_on_the_outputs_themselves() -> None:
    # no point to mask: the encoder's tensors go to the prior as they are (no where's), and
    # the draws, KL and gradients are those of the masked route, bit for bit
    batch = make_batch(pad=False)
    observed = batch.observed.clone()
    observed[..., 0] = True
    batch = Batch(batch.x, torch.where(observed, batch.y, 0.0), observed, batch.valid)
    mean, var, _ = outputs()
    prior = GPPrior(Matern32(), L).double()
    q = StructuredPosterior()((mean, var), batch, prior)
    assert q.gp.mean is mean
    assert q.gp.var is var
    results = []
    for masked in (False, True):
        m, v = mean.clone().requires_grad_(), var.clone().requires_grad_()
        if masked:  # the general route: every point has an observation, so nothing changes
            keep = observed.any(-1, keepdim=True) & batch.valid[..., None]
            q = StructuredQ(
                prior.condition(
                    batch.x,
                    torch.where(keep, m, torch.zeros_like(m)),
                    torch.where(keep, v, torch.full_like(v, math.inf)),
                    valid=batch.valid,
                ),
                prior,
            )
        else:
            q = StructuredPosterior()((m, v), batch, prior)
        z = q.rsample(2, torch.Generator().manual_seed(3))
        kl = q.kl()
        grads = torch.autograd.grad((z * z).sum() + kl.sum(), (m, v))
        results.append((z, kl, *grads))
    for a, b in zip(*results):
        assert torch.equal(a, b)
    # with a point that has nothing observed, that point is masked (its pseudo-observation
    # excluded): the KL differs from the unmasked conditioning
    observed2 = observed.clone()
    observed2[0, 3] = False
    batch2 = Batch(batch.x, torch.where(observed2, batch.y, 0.0), observed2, batch.valid)
    q2 = StructuredPosterior()((mean, var), batch2, prior)
    assert torch.isinf(q2.gp.var[0, 3]).all()
    assert torch.isfinite(q2.gp.var[1]).all()
    assert not torch.allclose(q2.kl(), StructuredPosterior()((mean, var), batch, prior).kl())


def test_diagonal_with_white_prior_is_the_plain_vae_kl() -> None:
    batch = make_batch(pad=False)
    mean, var, _ = outputs()
    prior = GPPrior(White(1.0), L).double()
    kl = DiagonalPosterior()((mean, var), batch, prior).kl()
    ref = 0.5 * (mean**2 + var - 1 - torch.log(var)).sum((1, 2))
    torch.testing.assert_close(kl, ref)


def test_samples_are_reproducible_with_a_generator() -> None:
    batch = make_batch()
    mean, var, off = outputs()
    prior = GPPrior(Matern32(), L).double()
    for family, enc in [("banded", (mean, var, off)), ("diagonal", (mean, var))]:
        q = get_posterior(family)(enc, batch, prior)
        a = q.rsample(3, torch.Generator().manual_seed(5))
        b = q.rsample(3, torch.Generator().manual_seed(5))
        assert torch.equal(a, b)
        assert not torch.equal(a[0], a[1])


def test_bad_encoder_outputs_name_the_argument() -> None:
    batch = make_batch()
    mean, var, off = outputs()
    prior = GPPrior(Matern32(), L).double()
    with pytest.raises(ValidationError, match="encoder_output"):
        BandedPosterior()((mean, var), batch, prior)
    with pytest.raises(InputTypeError, match="encoder_output"):
        StructuredPosterior()(mean, batch, prior)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match=r"encoder_output\[1\]"):
        StructuredPosterior()((mean, var[..., :1]), batch, prior)
    with pytest.raises(InputTypeError, match=r"encoder_output\[0\]"):
        StructuredPosterior()((mean.float(), var), batch, prior)
    inf_var = var.clone()
    inf_var[0, 0, 0] = math.inf
    with pytest.raises(ValidationError, match="finite positive variances"):
        DiagonalPosterior()((mean, inf_var), batch, prior)
    with pytest.raises(ValidationError, match="finite positive variances"):
        BandedPosterior()((mean, inf_var, off), batch, prior)
    with pytest.raises(ValidationError, match="route"):
        BandedPosterior(route="sparse")
    with pytest.raises(GPVAEError, match="route"):
        BandedPosterior(route="markov")((mean, var, off), batch, GPPrior(RBF(), L).double())
    with pytest.raises(ValidationError, match="posterior"):
        get_posterior("full")


def test_banded_needs_trailing_padding() -> None:
    batch = make_batch()
    valid = batch.valid.clone()
    valid[0, 0] = False
    observed = batch.observed & valid[..., None]
    bad = Batch(x=batch.x, y=batch.y, observed=observed, valid=valid)
    mean, var, off = outputs()
    with pytest.raises(ValidationError, match="valid"):
        BandedPosterior()((mean, var, off), bad, GPPrior(Matern32(), L).double())


def test_structured_log_ratio_is_the_same_for_dense_and_markov_backends() -> None:
    batch = make_batch()
    mean, var, _ = outputs()
    z = torch.randn(3, B, N, L, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ratios = []
    for backend in ["dense", "markov"]:
        prior = GPPrior(Matern32(lengthscale=1.3), L, backend=backend).double()
        ratios.append(StructuredPosterior()((mean, var), batch, prior).log_ratio(z))
    torch.testing.assert_close(ratios[0], ratios[1], rtol=1e-8, atol=1e-8)
