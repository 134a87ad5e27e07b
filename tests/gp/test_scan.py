"""The parallel-scan path of the markov backend against the sequential path, in float64:
values, samples and gradients.

Both paths are checked against the dense reference by the backend contract
(test_backend_contract.py); here they must agree with each other to rounding. Samples: the
parallel path draws the same normal variates in the same order as the sequential one, so
the same generator gives the same draws (compared to 1e-10 here), not merely the same
distribution.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from _reference import DTYPE, dense_all, make_kernels, make_problem, new_points, stacked
from torch import Tensor

from gpvae import settings
from gpvae.errors import ValidationError
from gpvae.gp import _scan, markov
from gpvae.gp.markov import MarkovGPPosterior, sample_prior_markov
from gpvae.kernels.base import Kernel
from gpvae.kernels.matern import Matern32, Matern52

#: parallel vs sequential: both exact, so only rounding separates them.
SAME = 1e-10

#: Channel kernels of the value checks: single kernels, a sum, and five mixed channels.
KERNELS = ["matern12", "matern32", "matern52", "sum12+32", "mixed"]


def close(actual: Tensor, expected: Tensor, rtol: float = 1e-6) -> None:
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * 1e-2)


def same(actual: Tensor, expected: Tensor, rtol: float = SAME) -> None:
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol)


def posteriors(
    kernels: list[Kernel], x: Tensor, mean: Tensor, var: Tensor, valid: Tensor
) -> tuple[MarkovGPPosterior, MarkovGPPosterior]:
    """(sequential, parallel) posteriors on the same inputs."""
    return (
        MarkovGPPosterior(kernels, x, mean, var, valid, method="sequential"),
        MarkovGPPosterior(kernels, x, mean, var, valid, method="parallel"),
    )


# ----------------------------------------------------------------------------------------
# the scan itself


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 33])
def test_associative_scan_matches_a_loop(n: int) -> None:
    # A non-commutative operator: products of random matrices, later on the left.
    g = torch.Generator().manual_seed(n)
    M = torch.randn(n, 2, 3, 3, generator=g, dtype=DTYPE)  # (n, batch, 3, 3)
    (out,) = _scan.associative_scan((M,), lambda a, b: (b[0] @ a[0],))
    expected = [M[0]]
    for k in range(1, n):
        expected.append(M[k] @ expected[-1])
    same(out, torch.stack(expected))


# ----------------------------------------------------------------------------------------
# values


@pytest.mark.parametrize("case", KERNELS)
def test_values_match_sequential(case: str) -> None:
    kernels = make_kernels(case)
    x, mean, var, valid = make_problem(len(kernels), seed=20, N=15)
    x_new = new_points(x, valid)
    seq, par = posteriors(kernels, x, mean, var, valid)
    same(par.log_marginal, seq.log_marginal)
    same(par.kl(), seq.kl())
    for got, want in zip(par.marginals(), seq.marginals(), strict=True):
        same(got, want)
    for got, want in zip(par.predict(x_new), seq.predict(x_new), strict=True):
        same(got, want)


@pytest.mark.parametrize("N", [1, 2, 3, 5, 8, 13, 33])
def test_lengths_that_are_not_powers_of_two(N: int) -> None:
    kernels = make_kernels("mixed")
    x, mean, var, valid = make_problem(len(kernels), seed=21, B=2, N=N)
    valid[:, 0] = True  # keep a valid point in every series, also for N = 1
    seq, par = posteriors(kernels, x, mean, var, valid)
    same(par.log_marginal, seq.log_marginal)
    for got, want in zip(par.marginals(), seq.marginals(), strict=True):
        same(got, want)
    ref = dense_all(kernels, x, mean, var, valid)
    close(par.log_marginal, stacked(ref, "log_marginal"))
    close(par.kl(), stacked(ref, "kl"))
    gen = lambda: torch.Generator().manual_seed(N)  # noqa: E731
    same(par.sample(3, gen()), seq.sample(3, gen()))


def test_very_precise_repeated_points() -> None:
    # Nearly singular filtered covariances next to dt = 0 steps: X = I + C_i J_j in the
    # combination stays invertible and the RTS gain is exactly I there. K + diag(var) has a
    # condition number near 1e11, hence the tolerances of test_markov.
    kernels = make_kernels("mixed")
    x, mean, var, valid = make_problem(len(kernels), seed=23)
    var = var * 1e-9
    seq, par = posteriors(kernels, x, mean, var, valid)
    close(par.log_marginal, seq.log_marginal)
    torch.testing.assert_close(par.marginals()[0], seq.marginals()[0], rtol=1e-5, atol=1e-6)
    ref = dense_all(kernels, x, mean, var, valid, with_kl=False)
    close(par.log_marginal, stacked(ref, "log_marginal"))


def test_float32_long_series_agrees_with_sequential() -> None:
    # Not exactness (float64 above) but stability: the scans' rounding in float32 stays at
    # the level of the sequential filter's on a long series with repeats and exclusions.
    g = torch.Generator().manual_seed(34)
    N = 1500
    x = torch.cumsum(torch.rand(1, N, 1, generator=g) * (torch.rand(1, N, 1, generator=g) > 0.1), 1)
    mean = torch.randn(1, N, 2, generator=g)
    var = 0.05 + torch.rand(1, N, 2, generator=g)
    var = torch.where(torch.rand(1, N, 2, generator=g) < 0.2, torch.inf, var)
    kernels: list[Kernel] = [Matern32(lengthscale=10.0), Matern52(lengthscale=3.0)]
    seq, par = posteriors(kernels, x, mean, var, torch.ones(1, N, dtype=torch.bool))
    torch.testing.assert_close(par.log_marginal, seq.log_marginal, rtol=1e-5, atol=0.0)
    for got, want in zip(par.marginals(), seq.marginals(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------------------------------
# samples


def test_samples_equal_sequential_draws() -> None:
    kernels = make_kernels("mixed")
    x, mean, var, valid = make_problem(len(kernels), seed=24)
    x_new = new_points(x, valid, seed=25)
    seq, par = posteriors(kernels, x, mean, var, valid)
    gen = lambda: torch.Generator().manual_seed(26)  # noqa: E731
    same(par.sample(16, gen()), seq.sample(16, gen()))
    same(par.sample_at(x_new, 16, gen()), seq.sample_at(x_new, 16, gen()))
    prior = [sample_prior_markov(kernels, x, valid, 16, gen(), method=m) for m in markov.METHODS]
    same(prior[2], prior[1])


# ----------------------------------------------------------------------------------------
# gradients

Quantity = Callable[[MarkovGPPosterior, Tensor], Tensor]

QUANTITIES: dict[str, Quantity] = {
    "log_marginal": lambda post, _: post.log_marginal,
    "kl": lambda post, _: post.kl(),
    "marginals": lambda post, _: post.marginals()[0].sin().sum(1) + post.marginals()[1].sum(1),
    "predict": lambda post, x_new: post.predict(x_new)[0].sum(1) + post.predict(x_new)[1].sum(1),
    "sample": lambda post, _: post.sample(4, torch.Generator().manual_seed(29)).square().sum(0),
}


#: Every quantity on the mixed channels; the samples (the same draws on both paths, which the
#: contract's comparisons with the reference do not imply) on the single kernels too.
GRADIENT_CASES = [("mixed", q) for q in QUANTITIES] + [
    (case, "sample") for case in ("matern12", "matern32", "sum12+32")
]


@pytest.mark.parametrize(("case", "quantity"), GRADIENT_CASES)
def test_gradients_match_sequential(case: str, quantity: str) -> None:
    kernels = make_kernels(case)
    x, mean, var, valid = make_problem(len(kernels), seed=30)
    x_new = new_points(x, valid, seed=31)
    weights = torch.rand(x.shape[0], len(kernels), generator=torch.Generator().manual_seed(32))
    weights = weights.to(DTYPE) + 0.5
    params = [p for k in kernels for p in k.parameters()]

    def grads(method: str) -> list[Tensor]:
        m = mean.clone().requires_grad_()
        v = var.clone().requires_grad_()
        post = MarkovGPPosterior(kernels, x, m, v, valid, method=method)
        value = QUANTITIES[quantity](post, x_new)  # (B, L), (B, N, L) for samples
        if value.ndim == 3:
            value = value.sum(1)
        return list(torch.autograd.grad((weights * value).sum(), [m, v, *params]))

    for got, want in zip(grads("parallel"), grads("sequential"), strict=True):
        assert bool(torch.isfinite(got).all())
        same(got, want, rtol=1e-8)


@pytest.mark.parametrize("quantity", list(QUANTITIES))
def test_checkpointed_scans_match_sequential(
    quantity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Activation checkpointing (long series) changes memory, not values or gradients."""
    monkeypatch.setattr(settings, "CHECKPOINT_MIN_POINTS", 1)
    kernels = make_kernels("mixed")
    x, mean, var, valid = make_problem(len(kernels), seed=40)
    x_new = new_points(x, valid, seed=41)
    params = [p for k in kernels for p in k.parameters()]

    def run(method: str) -> list[Tensor]:
        m = mean.clone().requires_grad_()
        v = var.clone().requires_grad_()
        post = MarkovGPPosterior(kernels, x, m, v, valid, method=method)
        if method == "parallel":
            assert post._chain.ops is markov._SCAN_CHECKPOINTED
        value = QUANTITIES[quantity](post, x_new)
        return [value.detach(), *torch.autograd.grad(value.sin().sum(), [m, v, *params])]

    for got, want in zip(run("parallel"), run("sequential"), strict=True):
        same(got, want, rtol=1e-8)


# ----------------------------------------------------------------------------------------
# method selection


def test_auto_takes_the_scans_for_long_narrow_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the compiled loops cannot run (tensors off the CPU), ``auto`` picks the scans
    for long, narrow problems and the torch loops otherwise."""
    monkeypatch.setattr(markov._compiled, "supports", lambda t: False)
    kernels = make_kernels("mixed")  # L = 5
    x, mean, var, valid = make_problem(len(kernels), B=2, N=10)  # B * L = 10 chains
    monkeypatch.setattr(settings, "PARALLEL_MIN_POINTS", 10)
    monkeypatch.setattr(settings, "PARALLEL_MAX_CHAINS", 10)
    post = MarkovGPPosterior(kernels, x, mean, var, valid)
    assert post._chain.ops is _scan
    assert post._merged(x[:, :2])[0].ops is _scan  # predicting lengthens the chain
    monkeypatch.setattr(settings, "PARALLEL_MIN_POINTS", 11)
    post = MarkovGPPosterior(kernels, x, mean, var, valid)
    assert post._chain.ops is not _scan
    assert post._merged(x[:, :1])[0].ops is _scan
    monkeypatch.setattr(settings, "PARALLEL_MAX_CHAINS", 9)
    assert MarkovGPPosterior(kernels, x, mean, var, valid)._merged(x)[0].ops is not _scan
    for method, ops in [("parallel", _scan), ("sequential", markov._kalman)]:
        assert MarkovGPPosterior(kernels, x, mean, var, valid, method=method)._chain.ops is ops


def test_unknown_method_raises_naming_method() -> None:
    kernels = make_kernels("matern32")
    x, mean, var, valid = make_problem(1, N=6)
    with pytest.raises(ValidationError, match=r"^method: expected one of .* found 'fast'"):
        MarkovGPPosterior(kernels, x, mean, var, valid, method="fast")
    with pytest.raises(ValidationError, match=r"^method: "):
        sample_prior_markov(kernels, x, valid, 2, method="fast")
