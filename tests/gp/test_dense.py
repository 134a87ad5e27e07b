"""DenseGPPosterior against obviously-correct float64 references built by indexing.

Each reference takes, for one series b and channel ch, only the included points (finite var,
valid) and applies the textbook formulas with ``torch.distributions.MultivariateNormal`` and
``torch.linalg.solve``; the backend must agree although it handles exclusion and padding by
zero precisions in one batched Cholesky.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor
from torch.distributions import MultivariateNormal, kl_divergence

from gpvae.errors import GPVAEError, NumericalError, ShapeError
from gpvae.gp import DenseGPPosterior, GPPrior
from gpvae.gp.dense import jittered_cholesky
from gpvae.kernels import RBF, Kernel, Matern32, Matern52

DT = torch.float64


@dataclass
class Case:
    """One conditioning problem: a prior and pseudo-observations with holes and padding."""

    prior: GPPrior
    x: Tensor  # (B, N, d)
    mean: Tensor  # (B, N, L)
    var: Tensor  # (B, N, L)
    valid: Tensor  # (B, N)


def _kernels_1d() -> list[Kernel]:
    return [Matern32(lengthscale=1.5, variance=0.8), RBF(lengthscale=2.0, variance=1.3)]


def _kernels_2d() -> list[Kernel]:
    return [RBF(lengthscale=[1.5, 2.5], variance=1.1), Matern52(lengthscale=2.0)]


def _make_case(
    kernels: Callable[[], list[Kernel]], B: int, N: int, d: int, holes: bool, seed: int
) -> Case:
    g = torch.Generator().manual_seed(seed)
    ks = kernels()
    L = len(ks)
    prior = GPPrior(ks, latent_dim=L, backend="dense").to(DT)
    x = torch.rand(B, N, d, generator=g, dtype=DT) * 10.0
    x, _ = torch.sort(x, dim=1)  # sorted along N (irrelevant to the dense backend)
    mean = torch.randn(B, N, L, generator=g, dtype=DT)
    var = 0.05 + torch.rand(B, N, L, generator=g, dtype=DT)
    valid = torch.ones(B, N, dtype=torch.bool)
    if holes:
        excluded = torch.rand(B, N, L, generator=g) < 0.3
        var = torch.where(excluded, torch.full_like(var, math.inf), var)
        mean = torch.where(excluded, torch.full_like(mean, math.nan), mean)  # never read
        var[0, :, L - 1] = math.inf  # a channel with no pseudo-observation at all
        mean[0, :, L - 1] = math.nan
        valid[-1, N - 2 :] = False  # padding with garbage everywhere
        x[-1, N - 2 :] = math.nan
        mean[-1, N - 2 :] = math.nan
        var[-1, N - 2 :] = 1.0
    return Case(prior, x, mean, var, valid)


CASES = {
    "1d-all-included": lambda: _make_case(_kernels_1d, B=2, N=7, d=1, holes=False, seed=0),
    "1d-excluded-and-padding": lambda: _make_case(_kernels_1d, B=3, N=9, d=1, holes=True, seed=1),
    "2d-ard-excluded-and-padding": lambda: _make_case(
        _kernels_2d, B=2, N=8, d=2, holes=True, seed=2
    ),
    "single-point": lambda: _make_case(_kernels_1d, B=2, N=1, d=1, holes=False, seed=3),
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]()


# ----------------------------------------------------------------------------------------
# references, one (series, channel) at a time, on the included subset only


def _included(c: Case, b: int, ch: int) -> Tensor:
    return torch.isfinite(c.var[b, :, ch]) & c.valid[b]


def _ref_log_marginal(c: Case, b: int, ch: int, mean: Tensor, var: Tensor) -> Tensor:
    inc = _included(c, b, ch)
    if not bool(inc.any()):
        return torch.zeros((), dtype=DT)
    xi = c.x[b, inc]  # (n, d)
    cov = c.prior.kernels[ch](xi) + torch.diag(var[b, inc, ch])
    return MultivariateNormal(torch.zeros(len(xi), dtype=DT), cov).log_prob(mean[b, inc, ch])


def _ref_conditional(
    c: Case, b: int, ch: int, x_new: Tensor, mean: Tensor | None = None, var: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Textbook GP conditional at x_new (M, d): mean (M,), covariance (M, M)."""
    mean = c.mean if mean is None else mean
    var = c.var if var is None else var
    k = c.prior.kernels[ch]
    inc = _included(c, b, ch)
    if not bool(inc.any()):
        return torch.zeros(len(x_new), dtype=DT), k(x_new)
    xi = c.x[b, inc]
    gram = k(xi) + torch.diag(var[b, inc, ch])
    cross = k(xi, x_new)  # (n, M)
    post_mean = cross.T @ torch.linalg.solve(gram, mean[b, inc, ch])
    post_cov = k(x_new) - cross.T @ torch.linalg.solve(gram, cross)
    return post_mean, post_cov


def _posterior(c: Case, mean: Tensor | None = None, var: Tensor | None = None) -> DenseGPPosterior:
    post = c.prior.condition(
        c.x, c.mean if mean is None else mean, c.var if var is None else var, c.valid
    )
    assert isinstance(post, DenseGPPosterior)
    return post


def _pairs(c: Case) -> list[tuple[int, int]]:
    return [(b, ch) for b in range(c.x.shape[0]) for ch in range(c.mean.shape[2])]


# ----------------------------------------------------------------------------------------
# values


def test_log_marginal_matches_mvn_on_included_subset(case: Case) -> None:
    post = _posterior(case)
    lm = post.log_marginal
    assert lm.shape == case.mean.shape[::2]
    for b, ch in _pairs(case):
        ref = _ref_log_marginal(case, b, ch, case.mean, case.var)
        torch.testing.assert_close(lm[b, ch], ref, rtol=1e-9, atol=1e-9)


def test_marginals_match_textbook_conditional(case: Case) -> None:
    mean, var = _posterior(case).marginals()
    assert mean.shape == var.shape == case.mean.shape
    for b, ch in _pairs(case):
        v = case.valid[b]
        ref_mean, ref_cov = _ref_conditional(case, b, ch, case.x[b, v])
        torch.testing.assert_close(mean[b, v, ch], ref_mean, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(var[b, v, ch], torch.diagonal(ref_cov), rtol=1e-8, atol=1e-10)
    pad = ~case.valid
    assert bool((mean[pad] == 0).all())  # the documented placeholder at padding
    assert bool((var[pad] == 1).all())


def _new_points(c: Case) -> Tensor:
    """(B, M, d): before, between and after each series' valid points."""
    lo = torch.where(c.valid[..., None], c.x, math.inf).amin(dim=1)  # (B, d)
    hi = torch.where(c.valid[..., None], c.x, -math.inf).amax(dim=1)
    frac = torch.tensor([-0.3, 0.1, 0.37, 0.5, 0.81, 1.0, 1.4], dtype=DT)  # (M,)
    return lo[:, None, :] + frac[None, :, None] * (hi - lo + 1.0)[:, None, :]


def test_predict_matches_textbook_conditional(case: Case) -> None:
    x_new = _new_points(case)
    mean, var = _posterior(case).predict(x_new)
    assert mean.shape == (x_new.shape[0], x_new.shape[1], case.mean.shape[2])
    for b, ch in _pairs(case):
        ref_mean, ref_cov = _ref_conditional(case, b, ch, x_new[b])
        torch.testing.assert_close(mean[b, :, ch], ref_mean, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(var[b, :, ch], torch.diagonal(ref_cov), rtol=1e-8, atol=1e-10)


def test_predict_accepts_2d_x_new_for_1d_inputs() -> None:
    c = CASES["1d-excluded-and-padding"]()
    x_new = _new_points(c)
    post = _posterior(c)
    for a, b in zip(post.predict(x_new), post.predict(x_new[..., 0])):
        torch.testing.assert_close(a, b)


def _ref_kl(c: Case, b: int, ch: int, mean: Tensor, var: Tensor) -> Tensor:
    v = c.valid[b]
    xv = c.x[b, v]
    post_mean, post_cov = _ref_conditional(c, b, ch, xv, mean, var)
    q = MultivariateNormal(post_mean, post_cov)
    p = MultivariateNormal(torch.zeros(len(xv), dtype=DT), c.prior.kernels[ch](xv))
    return kl_divergence(q, p)


def test_kl_matches_kl_divergence_of_mvns(case: Case) -> None:
    kl = _posterior(case).kl()
    for b, ch in _pairs(case):
        ref = _ref_kl(case, b, ch, case.mean, case.var)
        torch.testing.assert_close(kl[b, ch], ref, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------------------
# gradients: autograd through the backend vs autograd through the reference


def _grad_inputs(c: Case) -> tuple[Tensor, Tensor, list[Tensor]]:
    mean = c.mean.detach().clone().requires_grad_(True)
    var = c.var.detach().clone().requires_grad_(True)
    return mean, var, list(c.prior.parameters())


@pytest.mark.parametrize("quantity", ["log_marginal", "kl"])
def test_gradients_match_reference(case: Case, quantity: str) -> None:
    mean, var, params = _grad_inputs(case)
    weights = torch.linspace(0.5, 1.5, len(_pairs(case)), dtype=DT).reshape(case.mean.shape[::2])
    post = _posterior(case, mean, var)
    ours = (weights * (post.log_marginal if quantity == "log_marginal" else post.kl())).sum()
    ref_fn = _ref_log_marginal if quantity == "log_marginal" else _ref_kl
    ref = sum(weights[b, ch] * ref_fn(case, b, ch, mean, var) for b, ch in _pairs(case))
    assert isinstance(ref, Tensor)
    inputs = [mean, var, *params]
    g_ours = torch.autograd.grad(ours, inputs, allow_unused=True, materialize_grads=True)
    g_ref = torch.autograd.grad(ref, inputs, allow_unused=True, materialize_grads=True)
    included = torch.isfinite(case.var) & case.valid[..., None]
    for name, a, r in zip(
        ["mean", "var", *[f"param{i}" for i in range(len(params))]], g_ours, g_ref
    ):
        assert bool(torch.isfinite(a).all()), f"{name}: non-finite gradient"
        if name in ("mean", "var"):
            assert bool((a[~included] == 0).all()), f"{name}: gradient at excluded points"
            a, r = a[included], r[included]
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-8, msg=lambda m, n=name: f"{n}: {m}")


def test_gradients_finite_for_excluded_points_and_nan_padding() -> None:
    c = CASES["1d-excluded-and-padding"]()
    mean, var, params = _grad_inputs(c)
    post = _posterior(c, mean, var)
    loss = post.kl().sum() + post.sample(2, torch.Generator().manual_seed(0)).sum()
    loss = loss + post.sample_at(_new_points(c), 2, torch.Generator().manual_seed(1)).sum()
    loss.backward()
    for t in [mean, var, *params]:
        assert t.grad is not None
        assert bool(torch.isfinite(t.grad).all())


# ----------------------------------------------------------------------------------------
# samples: seeded Monte Carlo checks with 5-standard-error bounds


def _check_moments(draws: Tensor, mean: Tensor, cov: Tensor) -> None:
    """draws (S, M) vs mean (M,), cov (M, M), bounds from the standard errors.

    The sample mean has standard error sqrt(cov_ii / S); the sample covariance entry
    (i, j) has standard error sqrt((cov_ii cov_jj + cov_ij^2) / S) for Gaussian draws.
    """
    S = draws.shape[0]
    diag = torch.diagonal(cov)
    se_mean = torch.sqrt(diag / S)
    assert bool(((draws.mean(0) - mean).abs() <= 5 * se_mean + 1e-12).all())
    centred = draws - mean  # known mean: unbiased without the S - 1 correction
    emp = centred.T @ centred / S
    se_cov = torch.sqrt((diag[:, None] * diag[None, :] + cov**2) / S)
    assert bool(((emp - cov).abs() <= 5 * se_cov + 1e-9).all())


NUM_DRAWS = 20_000


def test_sample_moments_match_posterior() -> None:
    c = _make_case(_kernels_1d, B=2, N=5, d=1, holes=True, seed=4)
    draws = _posterior(c).sample(NUM_DRAWS, torch.Generator().manual_seed(0))
    assert draws.shape == (NUM_DRAWS, *c.mean.shape)
    for b, ch in _pairs(c):
        v = c.valid[b]
        ref_mean, ref_cov = _ref_conditional(c, b, ch, c.x[b, v])
        _check_moments(draws[:, b, v, ch], ref_mean, ref_cov)
    assert bool(torch.isfinite(draws).all())


def test_sample_at_moments_match_posterior() -> None:
    c = _make_case(_kernels_1d, B=2, N=5, d=1, holes=True, seed=5)
    x_new = _new_points(c)
    draws = _posterior(c).sample_at(x_new, NUM_DRAWS, torch.Generator().manual_seed(1))
    assert draws.shape == (NUM_DRAWS, x_new.shape[0], x_new.shape[1], c.mean.shape[2])
    for b, ch in _pairs(c):
        ref_mean, ref_cov = _ref_conditional(c, b, ch, x_new[b])
        _check_moments(draws[:, b, :, ch], ref_mean, ref_cov)


def test_samples_are_distinct_and_seeded() -> None:
    c = CASES["1d-all-included"]()
    post = _posterior(c)
    a = post.sample(3, torch.Generator().manual_seed(7))
    b = post.sample(3, torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a[0], a[1])


@pytest.mark.parametrize("method", ["sample", "sample_at"])
def test_samples_are_reparameterised(method: str) -> None:
    """With the noise fixed by the seed, samples are smooth functions of mean and var."""
    c = _make_case(_kernels_1d, B=1, N=4, d=1, holes=False, seed=6)
    x_new = _new_points(c)

    def draw(mean: Tensor, var: Tensor) -> Tensor:
        post = _posterior(c, mean, var)
        g = torch.Generator().manual_seed(3)
        return post.sample(2, g) if method == "sample" else post.sample_at(x_new, 2, g)

    mean = c.mean.clone().requires_grad_(True)
    var = c.var.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(draw, (mean, var))


# ----------------------------------------------------------------------------------------
# numerical failures and bad new points


def test_jittered_cholesky_retries_with_warning() -> None:
    cov = torch.tensor([[1.0, 1.0 + 1e-5], [1.0 + 1e-5, 1.0]], dtype=DT)  # eigenvalue -1e-5
    with pytest.warns(RuntimeWarning, match="jitter"):
        factor = jittered_cholesky(cov, 1e-6)
    assert bool(torch.isfinite(factor).all())


def test_jittered_cholesky_gives_up_with_numerical_error() -> None:
    cov = torch.tensor([[1.0, 3.0], [3.0, 1.0]], dtype=DT)  # eigenvalue -2
    with pytest.raises(NumericalError, match="jitter"):
        jittered_cholesky(cov, 1e-6)


def test_nan_hyper_parameter_raises_numerical_error() -> None:
    c = CASES["1d-all-included"]()
    with torch.no_grad():
        c.prior.kernels[0].raw_lengthscale.fill_(math.nan)
    with pytest.raises(NumericalError, match="kernel"):
        c.prior.condition(c.x, c.mean, c.var, c.valid)


@pytest.mark.parametrize(
    ("x_new", "error"),
    [
        pytest.param(lambda x: x[:1], ShapeError, id="wrong-batch"),
        pytest.param(lambda x: torch.cat([x, x], dim=-1), ShapeError, id="wrong-d"),
        pytest.param(lambda x: x.float(), GPVAEError, id="wrong-dtype"),
        pytest.param(lambda x: torch.full_like(x, math.nan), GPVAEError, id="nan"),
    ],
)
def test_bad_x_new_raises(x_new: Callable[[Tensor], Tensor], error: type[Exception]) -> None:
    c = CASES["1d-all-included"]()
    post = _posterior(c)
    bad = x_new(_new_points(c))
    with pytest.raises(error, match="x_new"):
        post.predict(bad)
    with pytest.raises(error, match="x_new"):
        post.sample_at(bad, 2)


@pytest.mark.parametrize("method", ["sample", "sample_at"])
def test_samples_are_reparameterised_in_hyper_parameters(method: str) -> None:
    """d(sum of seeded samples)/d(raw hyper-parameter) by autograd == central differences."""
    c = _make_case(_kernels_1d, B=2, N=4, d=1, holes=True, seed=8)
    x_new = _new_points(c)

    def total() -> Tensor:
        post = _posterior(c)
        g = torch.Generator().manual_seed(5)
        draws = post.sample(3, g) if method == "sample" else post.sample_at(x_new, 3, g)
        return (draws * torch.linspace(-1.0, 2.0, draws.numel(), dtype=DT).view_as(draws)).sum()

    for param in c.prior.parameters():
        (grad,) = torch.autograd.grad(total(), [param])
        h = 1e-6
        with torch.no_grad():
            param += h
            up = total()
            param -= 2 * h
            down = total()
            param += h
        torch.testing.assert_close(grad, (up - down) / (2 * h), rtol=1e-5, atol=1e-7)
