"""KL(q || GP prior) of every posterior family against torch.distributions' dense KL."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from gpvae.batch import Batch
from gpvae.gp import GPPrior
from gpvae.kernels import (
    RBF,
    Cauchy,
    HarmonicPeriodic,
    Kernel,
    Matern12,
    Matern32,
    Matern52,
    White,
)
from gpvae.posteriors import BandedPosterior, DiagonalPosterior, StructuredPosterior

B, N, D, L = 3, 14, 2, 2
KERNELS = {
    "matern12": lambda: Matern12(lengthscale=1.5, variance=0.8),
    "matern32": lambda: Matern32(lengthscale=2.5, variance=1.3),
    "matern52": lambda: Matern52(lengthscale=3.0),
    "rbf": lambda: RBF(lengthscale=2.0),
    "cauchy": lambda: Cauchy(lengthscale=1.5),
}


def make_batch(seed: int = 0, irregular: bool = True) -> Batch:
    """Float64 batch with padding in series 1, and a point with nothing observed."""
    g = torch.Generator().manual_seed(seed)
    if irregular:
        x = torch.sort(torch.rand(B, N, generator=g, dtype=torch.float64) * 12, dim=1).values
    else:
        x = torch.arange(N, dtype=torch.float64).expand(B, N)
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[1, 10:] = False
    observed = (torch.rand(B, N, D, generator=g) < 0.7) & valid[..., None]
    observed[0, 3] = False
    observed[2, 5] = False
    y = torch.where(observed, torch.randn(B, N, D, generator=g, dtype=torch.float64), 0.0)
    return Batch.from_tensors(y, observed=observed, x=x, valid=valid)


def encoder_output(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(B, N, L, generator=g, dtype=torch.float64)
    var = torch.rand(B, N, L, generator=g, dtype=torch.float64) * 0.8 + 0.1
    offdiag = torch.randn(B, N, L, generator=g, dtype=torch.float64)
    return mean, var, offdiag


def prior_of(kernel: Kernel, backend: str = "dense") -> GPPrior:
    return GPPrior(kernel, L, backend=backend).double()


def _check(kl: torch.Tensor, ref: torch.Tensor) -> None:
    assert kl.shape == ref.shape
    torch.testing.assert_close(kl, ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("backend", ["dense", "markov"])
@pytest.mark.parametrize("name", ["matern12", "matern32", "matern52"])
def test_structured_kl_equals_dense_mvn_kl(name: str, backend: str) -> None:
    batch = make_batch()
    mean, var, _ = encoder_output()
    prior = prior_of(KERNELS[name](), backend)
    q = StructuredPosterior()((mean, var), batch, prior)
    K = prior.covariance(batch.x)  # (B, L, N, N)
    ref = torch.zeros(B, dtype=torch.float64)
    for b in range(B):
        n = int(batch.valid[b].sum())
        inc = batch.observed[b, :n].any(-1)  # points with a pseudo-observation
        for ch in range(L):
            Kb = K[b, ch, :n, :n]
            Kxi = Kb[:, inc]
            A = Kb[inc][:, inc] + torch.diag(var[b, :n, ch][inc])
            mu = Kxi @ torch.linalg.solve(A, mean[b, :n, ch][inc])
            cov = Kb - Kxi @ torch.linalg.solve(A, Kxi.T)
            qd = MultivariateNormal(mu, cov)
            ref[b] += kl_divergence(qd, MultivariateNormal(torch.zeros(n, dtype=Kb.dtype), Kb))
    _check(q.kl(), ref)


def banded_reference(batch: Batch, prior: GPPrior, mean, var, offdiag) -> torch.Tensor:
    K = prior.covariance(batch.x)
    ref = torch.zeros(B, dtype=torch.float64)
    for b in range(B):
        n = int(batch.valid[b].sum())
        for ch in range(L):
            Bm = torch.diag(var[b, :n, ch].rsqrt()) + torch.diag(offdiag[b, : n - 1, ch], 1)
            qd = MultivariateNormal(mean[b, :n, ch], precision_matrix=Bm @ Bm.T)
            p = MultivariateNormal(torch.zeros(n, dtype=K.dtype), K[b, ch, :n, :n])
            ref[b] += kl_divergence(qd, p)
    return ref


@pytest.mark.parametrize("route", ["auto", "dense"])
@pytest.mark.parametrize("name", ["matern12", "matern32", "matern52", "rbf", "cauchy"])
def test_banded_kl_equals_dense_mvn_kl(name: str, route: str) -> None:
    batch = make_batch()
    mean, var, offdiag = encoder_output()
    prior = prior_of(KERNELS[name](), backend="auto")
    q = BandedPosterior(route=route)((mean, var, offdiag), batch, prior)
    assert q.markov == (route == "auto" and name.startswith("matern"))
    # the dense backend takes the dense route unless the family is told otherwise
    dense_q = BandedPosterior(route=route)((mean, var, offdiag), batch, prior_of(KERNELS[name]()))
    assert not dense_q.markov
    _check(q.kl(), banded_reference(batch, prior, mean, var, offdiag))


@pytest.mark.parametrize("name", ["matern32", "rbf", "white"])
def test_diagonal_kl_equals_dense_mvn_kl(name: str) -> None:
    batch = make_batch()
    mean, var, _ = encoder_output()
    kernel = White(variance=0.7) if name == "white" else KERNELS[name]()
    prior = prior_of(kernel)
    q = DiagonalPosterior()((mean, var), batch, prior)
    K = prior.covariance(batch.x)
    ref = torch.zeros(B, dtype=torch.float64)
    for b in range(B):
        n = int(batch.valid[b].sum())
        for ch in range(L):
            qd = MultivariateNormal(mean[b, :n, ch], torch.diag(var[b, :n, ch]))
            p = MultivariateNormal(torch.zeros(n, dtype=K.dtype), K[b, ch, :n, :n])
            ref[b] += kl_divergence(qd, p)
    _check(q.kl(), ref)


def test_banded_markov_kl_on_a_regular_grid_and_gradients_match_dense() -> None:
    batch = make_batch(irregular=False)
    mean, var, offdiag = (t.requires_grad_() for t in encoder_output())
    prior = prior_of(Matern32(lengthscale=4.0))
    kl_m = BandedPosterior(route="markov")((mean, var, offdiag), batch, prior).kl().sum()
    grads_m = torch.autograd.grad(kl_m, [mean, var, offdiag, *prior.parameters()])
    kl_d = BandedPosterior(route="dense")((mean, var, offdiag), batch, prior).kl().sum()
    grads_d = torch.autograd.grad(kl_d, [mean, var, offdiag, *prior.parameters()])
    torch.testing.assert_close(kl_m, kl_d, rtol=1e-8, atol=1e-10)
    for gm, gd in zip(grads_m, grads_d):
        torch.testing.assert_close(gm, gd, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("family", [DiagonalPosterior, BandedPosterior])
def test_a_numerically_singular_prior_warns_once_in_training(family: type) -> None:
    """With a smooth kernel the diagonal and banded KL is set by the jitter (1e5 per entry
    at jitter 1e-6, 1e4 at 1e-5, for RBF(3) on 60 unit steps) without a word; now the
    family's first training call warns, naming the kernel and the posterior."""
    T = 60
    x = torch.arange(T, dtype=torch.float64).expand(2, T)
    batch = Batch.from_tensors(torch.zeros(2, T, D, dtype=torch.float64), x=x)
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(2, T, L, generator=g, dtype=torch.float64)
    out = (mean, torch.full_like(mean, 0.3), torch.zeros_like(mean))
    name = family.__name__.removesuffix("Posterior").lower()
    quasi_periodic = Matern52(lengthscale=96.0) * HarmonicPeriodic(period=24.0)  # as named
    for kernel in (RBF(lengthscale=3.0), quasi_periodic):
        fam = family()
        with pytest.warns(UserWarning, match=rf"^kernel: .*{name} posterior.*matern52"):
            fam(out, batch, prior_of(kernel, backend="auto"))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fam(out, batch, prior_of(kernel, backend="auto"))  # once per family
            family().eval()(out, batch, prior_of(kernel, backend="auto"))  # not in eval
    for kernel in (Matern32(lengthscale=3.0), Matern52(lengthscale=3.0), Cauchy(lengthscale=3.0)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            family()(out, batch, prior_of(kernel, backend="auto"))
