"""Per-series draws of the structured posterior: the batched dense factorisation of series of
equal length gives the same draws as factorising every series alone, for the same
generators, and a series' draws do not depend on the rest of its batch."""

from __future__ import annotations

import torch
from torch import Tensor

from gpvae.gp import GPPrior
from gpvae.gp.dense import DenseGPPosterior
from gpvae.gp.linalg import jittered_cholesky
from gpvae.kernels import Matern32, Matern52
from gpvae.posteriors.structured_draws import StructuredSeriesSampler

DTYPE = torch.float32


def _problem(seed: int, B: int = 6, N: int = 12, L: int = 3) -> tuple[GPPrior, object]:
    g = torch.Generator().manual_seed(seed)
    prior = GPPrior([Matern32(lengthscale=2.0), Matern52(lengthscale=3.0), Matern32()], L)
    x = torch.arange(N, dtype=DTYPE).expand(B, N)[..., None].contiguous()
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[1, 9:] = False  # lengths 12, 9, 12, 7, 12, 9
    valid[3, 7:] = False
    valid[5, 9:] = False
    mean = torch.randn(B, N, L, generator=g, dtype=DTYPE)
    var = torch.rand(B, N, L, generator=g, dtype=DTYPE) + 0.05
    var[0, 4] = torch.inf  # a point without pseudo-observation
    return prior, prior.condition(x, mean, var, valid)


def _one_by_one(gp: object, prior: GPPrior, gens: list[torch.Generator], S: int) -> Tensor:
    """The draws of each series from its own dense posterior, factorised alone."""
    like = gp.mean  # type: ignore[attr-defined]
    out = like.new_zeros((S, *like.shape))
    L = like.shape[-1]
    for b, T in enumerate(gp.valid.sum(1).tolist()):  # type: ignore[attr-defined]
        post = DenseGPPosterior(
            prior.kernel_list,
            gp.x[b : b + 1, :T].double(),  # type: ignore[attr-defined]
            gp.mean[b : b + 1, :T].double(),  # type: ignore[attr-defined]
            gp.var[b : b + 1, :T].double(),  # type: ignore[attr-defined]
            jitter=prior.jitter,
        )
        mean = post.marginals()[0][0]
        scale = jittered_cholesky(post.covariance(), prior.jitter)[0]
        eps = torch.randn((S, T, L), generator=gens[b], dtype=like.dtype)
        w = (scale @ eps.double().transpose(-1, -2)[..., None])[..., 0]
        out[:, b, :T] = (mean + w.transpose(-1, -2)).to(like.dtype)
    return out


@torch.no_grad()
def test_batched_dense_draws_equal_series_alone() -> None:
    prior, gp = _problem(0)
    seeds = [11, 12, 13, 14, 15, 16]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    got = torch.cat([StructuredSeriesSampler(gp, prior, gens).draw(s) for s in (5, 3)])
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    want = torch.cat([_one_by_one(gp, prior, gens, s) for s in (5, 3)])
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert float((got - want).abs().max()) < 1e-6
    assert bool((got[:, 1, 9:] == 0).all())  # padding


@torch.no_grad()
def test_draws_of_a_series_do_not_depend_on_its_batch() -> None:
    prior, gp = _problem(1)
    gens = [torch.Generator().manual_seed(20 + b) for b in range(6)]
    full = StructuredSeriesSampler(gp, prior, gens).draw(4)
    rows = [1, 2]  # a short series and a full one, batched with others of their length above
    sub = prior.condition(gp.x[rows], gp.mean[rows], gp.var[rows], gp.valid[rows])
    gens = [torch.Generator().manual_seed(20 + b) for b in rows]
    alone = StructuredSeriesSampler(sub, prior, gens).draw(4)
    torch.testing.assert_close(alone, full[:, rows], rtol=1e-6, atol=1e-6)


@torch.no_grad()
def test_long_series_draws_are_the_same_in_passes_of_few_draws(monkeypatch) -> None:
    """The simulation smoother of series longer than DENSE_MAX_POINTS runs over passes of
    at most SMOOTHER_PASS_POINTS latent points (its working set grows with a pass, not with
    the chunk of draws); the draws are those of one pass bit for bit."""
    from gpvae import settings
    from gpvae.posteriors import structured_draws

    monkeypatch.setattr(settings, "DENSE_MAX_POINTS", 4)  # every series of _problem is long
    prior, gp = _problem(2)
    B, N, L = gp.mean.shape
    seeds = [30 + b for b in range(B)]
    sizes: list[int] = []
    real = structured_draws.prior_paths

    def counted(kernels, x_sorted, eps):  # type: ignore[no-untyped-def]
        sizes.append(eps.shape[0])
        return real(kernels, x_sorted, eps)

    monkeypatch.setattr(structured_draws, "prior_paths", counted)
    draws = {}
    for points in (10**9, 2 * B * N * L, 1):  # one pass; passes of 2 draws; of 1 draw
        monkeypatch.setattr(settings, "SMOOTHER_PASS_POINTS", points)
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        sampler = StructuredSeriesSampler(gp, prior, gens)
        draws[points] = torch.cat([sampler.draw(5), sampler.draw(2)])
    assert sizes == [5, 2] + [2, 2, 1, 2] + [1] * 7
    assert torch.equal(draws[2 * B * N * L], draws[10**9])
    assert torch.equal(draws[1], draws[10**9])
    assert structured_draws.draws_per_pass(B, N, L) == 1  # at least one draw per pass
