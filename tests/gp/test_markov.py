"""Markov-specific tests of the state-space backend, in float64 (and float32 inputs).

Its agreement with the dense reference (values, gradients, sample moments, the prior when
nothing is included) is the backend contract, in test_backend_contract.py. Here: numerics
at extreme lengthscales and nearly singular filters, prior samples, padding, error
messages, a long series, gradcheck of the hand-written backward passes, and float32
inputs on the torch recursions at long lengthscales.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytest
import torch
from _reference import DTYPE, check_moments, dense_all, make_kernels, make_problem, stacked
from torch import Tensor

from gpvae.errors import GPVAEError, ShapeError, ValidationError
from gpvae.gp import _kalman, markov
from gpvae.gp.base import GPPosterior
from gpvae.gp.dense import DenseGPPosterior
from gpvae.gp.markov import MarkovGPPosterior, sample_prior_markov
from gpvae.kernels.base import Kernel
from gpvae.kernels.matern import Matern32, Matern52
from gpvae.kernels.stationary import RBF

RTOL = 1e-6


def close(actual: Tensor, expected: Tensor, rtol: float = RTOL) -> None:
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * 1e-2)


# ----------------------------------------------------------------------------------------
# numerics


@pytest.mark.parametrize("lengthscale", [1e-3, 1e3], ids=["tiny-lengthscale", "huge-lengthscale"])
def test_extreme_lengthscales_stay_finite_and_exact(lengthscale: float) -> None:
    kernels = [
        k.to(DTYPE) for k in (Matern32(lengthscale=lengthscale), Matern52(lengthscale=lengthscale))
    ]
    x, mean, var, valid = make_problem(2, seed=8, N=10)
    m = mean.clone().requires_grad_()
    post = MarkovGPPosterior(kernels, x, m, var, valid)
    lm = post.log_marginal
    pm, pv = post.marginals()
    (lm.sum() + pm.sum() + pv.sum()).backward()
    assert m.grad is not None
    assert bool(torch.isfinite(m.grad).all())
    for k in kernels:
        for p in k.parameters():
            assert p.grad is not None
            assert bool(torch.isfinite(p.grad).all())
    ref = dense_all(kernels, x, mean, var, valid, with_kl=False)
    expected = stacked(ref, "log_marginal")
    # The dense reference itself is ill-conditioned for a huge lengthscale: looser tolerance.
    close(lm.detach(), expected, rtol=1e-6 if lengthscale < 1 else 1e-4)


def test_very_precise_repeated_points() -> None:
    # After a point with var << prior variance the filtered covariance is nearly singular;
    # at a repeated point (dt = 0) the RTS gain must still be exact (it is I).
    kernels = make_kernels("mixed")
    x, mean, var, valid = make_problem(len(kernels), seed=19)
    var = var * 1e-9
    m = mean.clone().requires_grad_()
    post = MarkovGPPosterior(kernels, x, m, var, valid)
    pm, _ = post.marginals()
    (post.log_marginal.sum() + post.kl().sum()).backward()
    assert m.grad is not None
    assert bool(torch.isfinite(m.grad).all())
    ref = dense_all(kernels, x, mean, var, valid, with_kl=False)
    expected = stacked(ref, "log_marginal")
    close(post.log_marginal.detach(), expected, rtol=1e-6)
    # K + diag(var) has a condition number near 1e11 here, so the dense means carry errors
    # of about 1e-6: compare to that accuracy.
    for b in range(x.shape[0]):
        for ell in range(len(kernels)):
            torch.testing.assert_close(
                pm[b, valid[b], ell].detach(), ref[b][ell]["mean"], rtol=1e-4, atol=1e-5
            )


# ----------------------------------------------------------------------------------------
# prior samples (posterior samples are in the backend contract)

NUM_SAMPLES = 20_000


def test_sample_prior_moments_match_kernel() -> None:
    kernels = make_kernels("mixed")
    x, _, _, valid = make_problem(len(kernels), seed=14, N=9)
    f = sample_prior_markov(
        kernels, x, valid, NUM_SAMPLES, generator=torch.Generator().manual_seed(15)
    )
    assert f.shape == (NUM_SAMPLES, x.shape[0], x.shape[1], len(kernels))
    assert bool(torch.isfinite(f).all())
    for b in range(x.shape[0]):
        xv = x[b, valid[b]]
        for ell, k in enumerate(kernels):
            with torch.no_grad():
                K = k(xv, xv)
            check_moments(f[:, b, valid[b], ell], xv.new_zeros(len(xv)), K, sigmas=6.0)


def test_prior_samples_are_seeded_and_reparameterised() -> None:
    kernels = make_kernels("mixed")
    x, _, _, valid = make_problem(len(kernels), seed=16, N=8)
    params = [p for k in kernels for p in k.parameters()]
    draw = lambda seed: sample_prior_markov(  # noqa: E731
        kernels, x, valid, 8, torch.Generator().manual_seed(seed)
    )
    prior = draw(2)
    assert torch.equal(prior, draw(2))
    grads = torch.autograd.grad(prior.square().sum(), params)
    assert all(bool(torch.isfinite(g).all()) and bool((g != 0).any()) for g in grads)


# ----------------------------------------------------------------------------------------
# bad inputs


def test_unsorted_x_raises_naming_x() -> None:
    kernels = make_kernels("matern32")
    x, mean, var, valid = make_problem(1, N=6)
    x[0, 3, 0] = x[0, 2, 0] - 0.5
    with pytest.raises(ValidationError, match=r"x: expected sorted .* found .* at position"):
        MarkovGPPosterior(kernels, x, mean, var, valid)
    with pytest.raises(ValidationError, match=r"^x: expected sorted"):
        sample_prior_markov(kernels, x, valid, 2)


def test_padding_may_hold_unsorted_garbage() -> None:
    kernels = make_kernels("matern32")
    x, mean, var, valid = make_problem(1, N=8)
    x2 = x.clone()
    x2[~valid] = -100.0
    a = MarkovGPPosterior(kernels, x, mean, var, valid)
    b = MarkovGPPosterior(kernels, x2, mean, var, valid)
    close(a.log_marginal, b.log_marginal)
    close(a.marginals()[0][valid], b.marginals()[0][valid])


def test_two_dimensional_x_raises_naming_x() -> None:
    kernels = make_kernels("matern32")
    x, mean, var, valid = make_problem(1, N=6)
    x2 = torch.cat([x, x], dim=-1)
    with pytest.raises(ShapeError, match=r"^x: .*d = 2"):
        MarkovGPPosterior(kernels, x2, mean, var, valid)
    post = MarkovGPPosterior(kernels, x, mean, var, valid)
    with pytest.raises(ShapeError, match=r"^x_new: "):
        post.predict(torch.zeros(x.shape[0], 3, 2, dtype=DTYPE))


@pytest.mark.parametrize(
    "kernel",
    [
        pytest.param(lambda: RBF(lengthscale=1.0), id="rbf"),
        pytest.param(lambda: Matern32() * RBF(), id="product-with-rbf"),
        pytest.param(lambda: Matern32() + RBF(), id="sum-with-rbf"),
    ],
)
def test_kernel_without_state_space_raises_naming_kernel(kernel: Callable[[], Kernel]) -> None:
    x, mean, var, valid = make_problem(1, N=6)
    with pytest.raises(GPVAEError, match=r"^kernel: expected a kernel with a state-space form"):
        MarkovGPPosterior([kernel().to(DTYPE)], x, mean, var, valid)
    with pytest.raises(GPVAEError, match=r"^kernel: "):
        sample_prior_markov([kernel().to(DTYPE)], x, valid, 2)


# ----------------------------------------------------------------------------------------
# float32 inputs: the torch recursions (the path on a GPU, or without numba) run in float64

#: The audit's problems: one series of 200 unit steps, pseudo-observation variance 0.01, and
#: a lengthscale 1,000 or 100,000 steps long, where the recursions in float32 lost 17% and 77%
#: of the KL (dense float32: 3%).
LONG_LENGTHSCALES = [
    pytest.param(lambda: Matern52(lengthscale=1e3), id="matern52-1e3"),
    pytest.param(lambda: Matern32(lengthscale=1e5), id="matern32-1e5"),
]

#: Float32 outputs are float64 results rounded once to float32 (2^-24 = 6e-8 relative) and
#: the float64 recursions' own error here is below 1e-9 (float64 dense and markov agree to
#: that); 1e-6 leaves a margin of 16 over the rounding. Dense float32 misses it by far (KL
#: off by 3e-2 relative, posterior variances 7e-3, log-marginal 1e-5 here), the float32
#: recursions before they ran in float64 by more (KL 0.17 and 0.77, variances 0.14).
FLOAT32_RTOL = 1e-6


def float32_problem() -> tuple[Tensor, Tensor, Tensor]:
    """The audit's x, mean and var (1, 200, 1), float32 values (exact in float64 too)."""
    g = torch.Generator().manual_seed(0)
    N = 200
    x = torch.arange(N, dtype=torch.float32)[None, :, None]
    mean = torch.randn(1, N, 1, generator=g, dtype=DTYPE).float()
    return x, mean, torch.full((1, N, 1), 0.01)


@pytest.mark.parametrize("method", ["sequential", "parallel", "compiled"])
@pytest.mark.parametrize("kernel", LONG_LENGTHSCALES)
def test_float32_recursions_match_float64_dense(kernel: Callable[[], Kernel], method: str) -> None:
    """KL, log-marginal, marginals and their gradients in float32 within FLOAT32_RTOL of the
    float64 dense backend on the same values (the float32 kernel and data cast to float64).

    The KL is computed in float64 too (with ``"compiled"`` as well): from the float32
    marginals and log-marginal (~ -9,600 here) their difference (the KL, 5 to 19) would
    lose 5e-5 to 2e-4 of it."""
    k32 = kernel().float()
    x, mean, var = float32_problem()
    results = {}
    for k, dtype in ((k32, torch.float32), (copy.deepcopy(k32).double(), DTYPE)):
        m, v = mean.to(dtype).requires_grad_(), var.to(dtype).requires_grad_()
        if dtype == DTYPE:
            q: GPPosterior = DenseGPPosterior([k], x.to(dtype), m, v)
        else:
            q = MarkovGPPosterior([k], x, m, v, method=method)
        kl, lm, (pm, pv) = q.kl(), q.log_marginal, q.marginals()
        assert kl.dtype == lm.dtype == pm.dtype == pv.dtype == dtype
        g_m, g_v, *g_k = torch.autograd.grad(kl.sum(), (m, v, *k.parameters()))
        results[dtype] = [t.detach().double() for t in (kl, lm, pm, pv, g_m, g_v, *g_k)]
    got, want = results[torch.float32], results[DTYPE]
    for name, a, b in zip(["kl", "log_marginal", "mean", "var"], got, want):
        scale = float(b.abs().max())
        torch.testing.assert_close(a, b, rtol=FLOAT32_RTOL, atol=FLOAT32_RTOL * scale, msg=name)
    # gradients of the KL, relative to each gradient's largest entry: measured at most 2.3e-7
    # (the kernel's, at lengthscale 1e3, where the dense float64 reference is the less exact)
    for name, a, b in zip(["d mean", "d var", "d kernel"], got[4:], want[4:]):
        scale = float(b.abs().max())
        torch.testing.assert_close(a, b, rtol=0.0, atol=10 * FLOAT32_RTOL * scale, msg=name)


@pytest.mark.parametrize("method", ["sequential", "parallel"])
@pytest.mark.parametrize("kernel", LONG_LENGTHSCALES)
def test_float32_recursions_sample_as_the_compiled_loops(
    kernel: Callable[[], Kernel], method: str
) -> None:
    """Posterior and prior draws of float32 inputs: the torch recursions and the compiled
    loops draw the same float32 noise and compute in float64, so their draws agree to the
    final rounding to float32 (see FLOAT32_RTOL)."""
    k = kernel().float()
    x, mean, var = float32_problem()
    draws = {}
    for meth in (method, "compiled"):
        q = MarkovGPPosterior([k], x, mean, var, method=meth)
        post = q.sample(4, torch.Generator().manual_seed(3))
        prior = sample_prior_markov([k], x, None, 4, torch.Generator().manual_seed(4), meth)
        assert post.dtype == prior.dtype == torch.float32
        draws[meth] = (post.detach().double(), prior.detach().double())
    for a, b in zip(draws[method], draws["compiled"]):
        scale = float(b.abs().max())
        torch.testing.assert_close(a, b, rtol=FLOAT32_RTOL, atol=FLOAT32_RTOL * scale)


# ----------------------------------------------------------------------------------------
# scale


def test_long_series_sequential_and_parallel_agree() -> None:
    """N = 20,000 runs in O(N) memory on both paths, with the same value and gradients."""
    N = 20_000
    g = torch.Generator().manual_seed(17)
    x = torch.cumsum(torch.rand(1, N, 1, generator=g, dtype=DTYPE), dim=1)
    mean = torch.randn(1, N, 1, generator=g, dtype=DTYPE)
    results = {}
    for method in ("sequential", "parallel"):
        var = torch.full((1, N, 1), 0.5, dtype=DTYPE).requires_grad_()
        kernel = Matern32(lengthscale=3.0).to(DTYPE)
        post = MarkovGPPosterior([kernel], x, mean, var, method=method)
        value = post.log_marginal.sum()
        value.backward()
        assert var.grad is not None
        results[method] = (value.detach(), var.grad.clone(), kernel.raw_lengthscale.grad)
    (v_s, g_s, l_s), (v_p, g_p, l_p) = results["sequential"], results["parallel"]
    torch.testing.assert_close(v_p, v_s, rtol=1e-10, atol=0.0)
    torch.testing.assert_close(g_p, g_s, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(l_p, l_s, rtol=1e-8, atol=1e-10)


# ----------------------------------------------------------------------------------------
# the hand-written backward passes of the filter and smoother recursions


@pytest.mark.parametrize("m", [1, 3], ids=["m=1", "m=3"])
def test_filter_and_smoother_recursions_pass_gradcheck(m: int) -> None:
    g = torch.Generator().manual_seed(18)
    N, B, G, S = 5, 2, 2, 3

    def rand(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g, dtype=DTYPE)

    def psd(*shape: int) -> Tensor:
        X = rand(*shape, m, m)
        return X @ X.transpose(-1, -2) / m + 0.5 * torch.eye(m, dtype=DTYPE)

    A = 0.6 * rand(N, B, G, m, m)
    Q, Pinf, H = psd(N, B, G), psd(G), rand(G, 1, m)
    w = rand(N, B, G).abs() * (rand(N, B, G) > -0.5)  # some exact zeros (excluded points)
    gain, y = rand(N, B, G, m, 1), rand(N, B, G, S)
    inputs = [t.clone().requires_grad_() for t in (A, Q, Pinf, H, w)]
    assert torch.autograd.gradcheck(_kalman._FilterCovariances.apply, inputs)
    inputs = [t.clone().requires_grad_() for t in (A, H, gain, y)]
    assert torch.autograd.gradcheck(_kalman._FilterMeans.apply, inputs)
    smooth_gain, m_filt, m_pred = (
        rand(N - 1, B, G, m, m),
        rand(N, B, G, m, S),
        rand(N - 1, B, G, m, S),
    )
    inputs = [t.clone().requires_grad_() for t in (smooth_gain, m_filt, m_pred)]
    assert torch.autograd.gradcheck(_kalman._SmoothMeans.apply, inputs)
    inputs = [t.clone().requires_grad_() for t in (smooth_gain, psd(N, B, G), psd(N, B, G))]
    assert torch.autograd.gradcheck(_kalman._SmoothCovariances.apply, inputs)
    inputs = [t.clone().requires_grad_() for t in (A, rand(B, G, m, S), rand(N - 1, B, G, m, S))]
    assert torch.autograd.gradcheck(_kalman._LinearRecursion.apply, inputs)


# ----------------------------------------------------------------------------------------
# a sample's data filtered together with the pseudo-observations


@pytest.mark.parametrize("method", ["sequential", "compiled"])
@pytest.mark.parametrize("case", ["matern32", "mixed"])
def test_sample_first_gives_the_same_kl_marginals_and_gradients(case: str, method: str) -> None:
    """Sampling before the KL filters the pseudo-observations along with the sample's data
    (one pass); KL, marginals, samples and all gradients must equal those of the KL first."""
    kernels = make_kernels(case)
    x, mean, var, valid = make_problem(len(kernels), seed=70)
    results = []
    for sample_first in (False, True):
        m, v = mean.clone().requires_grad_(), var.clone().requires_grad_()
        q = MarkovGPPosterior(kernels, x, m, v, valid, method=method)
        gen = torch.Generator().manual_seed(71)
        if sample_first:
            f = q.sample(3, gen)
            kl, (pm, pv) = q.kl(), q.marginals()
        else:
            kl, (pm, pv) = q.kl(), q.marginals()
            f = q.sample(3, gen)
        loss = kl.sum() + (f.sin() * torch.linspace(-1, 1, f.shape[-2], dtype=DTYPE)[:, None]).sum()
        loss = loss + (pm * pv).sum()
        grads = torch.autograd.grad(loss, (m, v, *[p for k in kernels for p in k.parameters()]))
        results.append((kl, pm, pv, f, *grads))
    assert results[1][0].abs().sum() > 0
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unique_inverse_equals_numpys_unique(dtype: type) -> None:
    rng = np.random.default_rng(0)
    cases = [
        rng.integers(0, 5, 48).astype(dtype) * 0.5,  # repeats
        rng.standard_normal(31).astype(dtype),  # all distinct
        np.zeros(7, dtype),
        np.array([3.0], dtype),
        np.array([0.0, -0.0, 1.0, 0.0, 2.0, 1.0], dtype),  # signed zeros compare equal
    ]
    for v in cases:
        got, got_inv = markov._unique_inverse(v)
        want, want_inv = np.unique(v, return_inverse=True)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got_inv, want_inv)
        assert got_inv.dtype == np.int64
        np.testing.assert_array_equal(got[got_inv], v)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_index_in_numpy_equals_torch_diff_and_unique(dtype: torch.dtype) -> None:
    # the CPU step index (numpy) against torch's diff / sorted unique, and the zero steps
    # against steps[index] == 0: regular grids, repeats, irregular gaps, filled padding
    g = torch.Generator().manual_seed(0)
    irregular = torch.cumsum(torch.rand(5, 13, generator=g, dtype=dtype) * 3, dim=1)
    irregular[1, 4:7] = irregular[1, 3]  # repeated points (and filled padding)
    irregular[2] = irregular[2].round()  # shared integer steps
    regular = torch.arange(48, dtype=dtype).expand(7, 48).contiguous()
    shifted = regular * 0.5 + torch.arange(7, dtype=dtype)[:, None] * 3  # shared steps
    for x in (irregular, regular, shifted, irregular[:, :1].contiguous(), irregular[:1]):
        steps, index, still = markov._step_index(x)
        dt = torch.diff(x, dim=1, prepend=x[:, :1])
        ref_steps, ref_index = torch.unique(dt, return_inverse=True)
        assert steps.dtype == dtype
        assert index.dtype == torch.int64
        assert still is not None
        assert torch.equal(steps, ref_steps)
        assert torch.equal(index, ref_index.T)
        assert index.is_contiguous()
        assert torch.equal(still, ref_steps[ref_index.T] == 0)
        assert still.is_contiguous()
        assert torch.equal(steps[index], dt.T)
        # the torch route (other devices, or tensors that record gradients) gives the same
        steps2, index2, still2 = markov._step_index(x.clone().requires_grad_())
        assert torch.equal(steps2.detach(), steps)
        assert torch.equal(index2, index)
        assert still2 is None
        (group,) = markov._groups([Matern32()], x.double())
        assert torch.equal(group.still, still)
        assert torch.equal(group._index, index)
