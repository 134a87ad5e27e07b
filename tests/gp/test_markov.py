"""The markov (state-space) backend against an independent dense reference, in float64.

The reference builds ``K = kernel(x, x)`` on the valid points of each series and conditions
on the included points of each channel by textbook Gaussian conditioning; log-marginals and
KL divergences come from ``torch.distributions``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor
from torch.distributions import MultivariateNormal, kl_divergence

from gpvae.errors import GPVAEError, ShapeError, ValidationError
from gpvae.gp import _kalman
from gpvae.gp.markov import MarkovGPPosterior, sample_prior_markov
from gpvae.kernels.base import Kernel
from gpvae.kernels.matern import Matern12, Matern32, Matern52
from gpvae.kernels.stationary import RBF

DTYPE = torch.float64
RTOL = 1e-6
GRAD_RTOL = 1e-5

KernelFactory = Callable[[], list[Kernel]]

#: One list of channel kernels per case; the mixed case has two channels with m = 2 and a
#: Sum (m = 1 + 2 = 3) stacked with a Matern52 (m = 3).
CASES: dict[str, KernelFactory] = {
    "matern12": lambda: [Matern12(lengthscale=0.7, variance=1.3)],
    "matern32": lambda: [Matern32(lengthscale=0.9, variance=0.8)],
    "matern52": lambda: [Matern52(lengthscale=1.1, variance=1.5)],
    "sum12+32": lambda: [Matern12(lengthscale=2.0, variance=0.5) + Matern32(lengthscale=0.5)],
    "mixed": lambda: [
        Matern32(lengthscale=0.5, variance=1.0),
        Matern12(lengthscale=1.0, variance=2.0),
        Matern52(lengthscale=0.8, variance=0.7),
        Matern32(lengthscale=2.0, variance=0.5),
        Matern12(lengthscale=0.3, variance=0.4) + Matern32(lengthscale=1.5, variance=1.2),
    ],
}


def make_kernels(case: str) -> list[Kernel]:
    return [k.to(DTYPE) for k in CASES[case]()]


def make_problem(
    num_channels: int, seed: int = 0, B: int = 3, N: int = 14
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Irregular times with duplicates, excluded points and padding (leading and trailing).

    Returns x (B, N, 1), mean (B, N, L), var (B, N, L), valid (B, N).
    """
    g = torch.Generator().manual_seed(seed)
    gaps = 0.1 + torch.empty(B, N, dtype=DTYPE).exponential_(2.0, generator=g)
    gaps = torch.where(torch.rand(B, N, generator=g, dtype=DTYPE) < 0.2, 0.0, gaps)  # repeats
    x = torch.cumsum(gaps, dim=1) - 2.0 * torch.rand(B, 1, generator=g, dtype=DTYPE)
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[1, -4:] = False  # trailing padding
    if B > 2:
        valid[2, :2] = False  # leading padding
        valid[2, -1] = False
    x = torch.where(valid, x, torch.zeros_like(x))  # garbage x on padding
    mean = torch.randn(B, N, num_channels, generator=g, dtype=DTYPE)
    var = 0.1 + torch.rand(B, N, num_channels, generator=g, dtype=DTYPE)
    excluded = torch.rand(B, N, num_channels, generator=g, dtype=DTYPE) < 0.25
    var = torch.where(excluded, torch.inf, var)
    var = torch.where(valid[..., None], var, 7.0)  # garbage on padding
    return x[..., None], mean, var, valid


def new_points(x: Tensor, valid: Tensor, seed: int = 1) -> Tensor:
    """(B, M, 1) unsorted points before, after, between and equal to the valid points."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(x.shape[0]):
        xv = x[b, valid[b], 0]
        between = xv[:-1] + torch.rand(len(xv) - 1, generator=g, dtype=DTYPE) * xv.diff()
        pts = torch.cat([xv[:1] - 1.3, xv[-1:] + 0.7, xv[-1:] + 3.0, between[:3], xv[:3]])
        pts = torch.cat([pts, pts[5:6]])  # a repeated new point
        out.append(pts[torch.randperm(len(pts), generator=g)])
    return torch.stack(out)[..., None]


# ----------------------------------------------------------------------------------------
# dense reference


def dense_reference(
    kernel: Kernel,
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    valid: Tensor,
    x_new: Tensor | None = None,
    with_kl: bool = True,
) -> dict[str, Tensor]:
    """One series, one channel: x (N, 1), mean/var (N,), valid (N,); x_new (M, 1)."""
    xv, mv, vv = x[valid], mean[valid], var[valid]
    inc = torch.isfinite(vv)
    xi, yi, di = xv[inc], mv[inc], vv[inc]
    Kii = kernel(xi, xi) + torch.diag(di)

    def conditional(xs: Tensor) -> tuple[Tensor, Tensor]:
        Kss = kernel(xs, xs)
        if len(yi) == 0:
            return xs.new_zeros(len(xs)), Kss
        Ksi = kernel(xs, xi)
        return Ksi @ torch.linalg.solve(Kii, yi), Kss - Ksi @ torch.linalg.solve(Kii, Ksi.T)

    out: dict[str, Tensor] = {}
    if len(yi) == 0:
        out["log_marginal"] = x.new_zeros(())
    else:
        out["log_marginal"] = MultivariateNormal(x.new_zeros(len(yi)), Kii).log_prob(yi)
    out["mean"], out["cov"] = conditional(xv)
    if with_kl:
        xu = torch.unique(xv)[:, None]  # KL over distinct points (repeats are degenerate)
        mu, cov = conditional(xu)
        prior = MultivariateNormal(xu.new_zeros(len(xu)), kernel(xu, xu))
        out["kl"] = kl_divergence(MultivariateNormal(mu, cov), prior)
    if x_new is not None:
        out["new_mean"], out["new_cov"] = conditional(x_new)
    return out


def dense_all(
    kernels: list[Kernel],
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    valid: Tensor,
    x_new: Tensor | None = None,
    with_kl: bool = True,
) -> list[list[dict[str, Tensor]]]:
    """dense_reference for every series b and channel l: result[b][l]."""
    return [
        [
            dense_reference(
                k,
                x[b],
                mean[b, :, ell],
                var[b, :, ell],
                valid[b],
                None if x_new is None else x_new[b],
                with_kl,
            )
            for ell, k in enumerate(kernels)
        ]
        for b in range(x.shape[0])
    ]


def close(actual: Tensor, expected: Tensor, rtol: float = RTOL) -> None:
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * 1e-2)


# ----------------------------------------------------------------------------------------
# exactness


@pytest.mark.parametrize("case", list(CASES))
def test_log_marginal_marginals_kl_match_dense(case: str) -> None:
    kernels = make_kernels(case)
    x, mean, var, valid = make_problem(len(kernels))
    post = MarkovGPPosterior(kernels, x, mean, var, valid)
    ref = dense_all(kernels, x, mean, var, valid)
    B, L = mean.shape[0], mean.shape[-1]
    expect = lambda key: torch.stack([torch.stack([r[key] for r in row]) for row in ref])  # noqa: E731

    close(post.log_marginal, expect("log_marginal"))
    close(post.kl(), expect("kl"))
    pm, pv = post.marginals()
    assert pm.shape == pv.shape == (B, x.shape[1], L)
    assert bool(torch.isfinite(pm).all())
    assert bool(torch.isfinite(pv).all())
    for b in range(B):
        for ell in range(L):
            close(pm[b, valid[b], ell], ref[b][ell]["mean"])
            close(pv[b, valid[b], ell], torch.diagonal(ref[b][ell]["cov"]))


@pytest.mark.parametrize("case", list(CASES))
def test_predict_matches_dense(case: str) -> None:
    kernels = make_kernels(case)
    x, mean, var, valid = make_problem(len(kernels), seed=3)
    x_new = new_points(x, valid)
    post = MarkovGPPosterior(kernels, x, mean, var, valid)
    ref = dense_all(kernels, x, mean, var, valid, x_new)
    pm, pv = post.predict(x_new)
    assert pm.shape == pv.shape == (x.shape[0], x_new.shape[1], len(kernels))
    for b in range(x.shape[0]):
        for ell in range(len(kernels)):
            close(pm[b, :, ell], ref[b][ell]["new_mean"])
            close(pv[b, :, ell], torch.diagonal(ref[b][ell]["new_cov"]))


def test_no_included_point_gives_the_prior() -> None:
    kernels = make_kernels("mixed")
    x, mean, var, valid = make_problem(len(kernels), seed=4)
    var = torch.full_like(var, torch.inf)
    post = MarkovGPPosterior(kernels, x, mean, var, valid)
    close(post.log_marginal, torch.zeros_like(post.log_marginal))
    close(post.kl(), torch.zeros_like(post.log_marginal))
    pm, pv = post.marginals()
    close(pm, torch.zeros_like(pm))
    prior_var = torch.stack([k(x, diag=True) for k in kernels], dim=-1)  # (B, N, L)
    close(pv[valid], prior_var[valid])


@pytest.mark.parametrize("quantity", ["log_marginal", "kl"])
@pytest.mark.parametrize("case", ["matern12", "matern52", "sum12+32", "mixed"])
def test_gradients_match_dense(case: str, quantity: str) -> None:
    kernels = make_kernels(case)
    x, mean, var, valid = make_problem(len(kernels), seed=5)
    weights = torch.rand(x.shape[0], len(kernels), generator=torch.Generator().manual_seed(6))
    weights = weights.to(DTYPE) + 0.5

    def grads(markov: bool) -> list[Tensor]:
        m = mean.clone().requires_grad_()
        v = var.clone().requires_grad_()
        if markov:
            post = MarkovGPPosterior(kernels, x, m, v, valid)
            value = post.log_marginal if quantity == "log_marginal" else post.kl()
        else:
            ref = dense_all(kernels, x, m, v, valid)
            value = torch.stack([torch.stack([r[quantity] for r in row]) for row in ref])
        params = [p for k in kernels for p in k.parameters()]
        return list(torch.autograd.grad((weights * value).sum(), [m, v, *params]))

    for got, want in zip(grads(True), grads(False), strict=True):
        assert bool(torch.isfinite(got).all())
        close(got, want, rtol=GRAD_RTOL)


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
    expected = torch.stack([torch.stack([r["log_marginal"] for r in row]) for row in ref])
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
    expected = torch.stack([torch.stack([r["log_marginal"] for r in row]) for row in ref])
    close(post.log_marginal.detach(), expected, rtol=1e-6)
    # K + diag(var) has a condition number near 1e11 here, so the dense means carry errors
    # of about 1e-6: compare to that accuracy.
    for b in range(x.shape[0]):
        for ell in range(len(kernels)):
            torch.testing.assert_close(
                pm[b, valid[b], ell].detach(), ref[b][ell]["mean"], rtol=1e-4, atol=1e-5
            )


# ----------------------------------------------------------------------------------------
# samples


def check_moments(samples: Tensor, mu: Tensor, cov: Tensor, sigmas: float = 6.0) -> None:
    """Sample mean and covariance (S, n) against (n,), (n, n) within ``sigmas`` standard
    errors: se(mean_i) = sqrt(C_ii / S), se(C_ij) = sqrt((C_ii C_jj + C_ij^2) / S)."""
    S = samples.shape[0]
    d = torch.diagonal(cov).clamp_min(0)
    emp_mean = samples.mean(0)
    centred = samples - emp_mean
    emp_cov = centred.T @ centred / (S - 1)
    tol_mean = sigmas * (d / S).sqrt() + 1e-9
    tol_cov = sigmas * ((d[:, None] * d[None, :] + cov**2) / S).sqrt() + 1e-9
    assert bool(((emp_mean - mu).abs() <= tol_mean).all()), (emp_mean - mu).abs() / tol_mean
    assert bool(((emp_cov - cov).abs() <= tol_cov).all()), ((emp_cov - cov).abs() / tol_cov).max()


NUM_SAMPLES = 20_000


def test_sample_moments_match_dense() -> None:
    kernels = make_kernels("mixed")
    x, mean, var, valid = make_problem(len(kernels), seed=9, N=9)
    post = MarkovGPPosterior(kernels, x, mean, var, valid)
    f = post.sample(NUM_SAMPLES, generator=torch.Generator().manual_seed(10))
    assert f.shape == (NUM_SAMPLES, *mean.shape)
    assert bool(torch.isfinite(f).all())
    ref = dense_all(kernels, x, mean, var, valid)
    for b in range(x.shape[0]):
        for ell in range(len(kernels)):
            check_moments(f[:, b, valid[b], ell], ref[b][ell]["mean"], ref[b][ell]["cov"])


def test_sample_at_moments_match_dense() -> None:
    kernels = make_kernels("mixed")
    x, mean, var, valid = make_problem(len(kernels), seed=11, N=9)
    x_new = new_points(x, valid, seed=12)
    post = MarkovGPPosterior(kernels, x, mean, var, valid)
    f = post.sample_at(x_new, NUM_SAMPLES, generator=torch.Generator().manual_seed(13))
    assert f.shape == (NUM_SAMPLES, x.shape[0], x_new.shape[1], len(kernels))
    ref = dense_all(kernels, x, mean, var, valid, x_new)
    for b in range(x.shape[0]):
        for ell in range(len(kernels)):
            check_moments(f[:, b, :, ell], ref[b][ell]["new_mean"], ref[b][ell]["new_cov"])


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
            check_moments(f[:, b, valid[b], ell], xv.new_zeros(len(xv)), K)


def test_samples_are_seeded_and_reparameterised() -> None:
    kernels = make_kernels("mixed")
    x, mean, var, valid = make_problem(len(kernels), seed=16, N=8)
    m = mean.clone().requires_grad_()
    v = var.clone().requires_grad_()
    post = MarkovGPPosterior(kernels, x, m, v, valid)
    f1 = post.sample(64, generator=torch.Generator().manual_seed(0))
    f2 = post.sample(64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(f1, f2, rtol=0, atol=0)
    assert not torch.equal(f1[0], f1[1])
    # The simulation smoother is f+ + W (mean - y+): d(sample)/d(mean) = W exactly, the
    # derivative of the posterior mean.
    inc = post.included
    (g_sample,) = torch.autograd.grad(f1.mean(0).sum(), m, retain_graph=True)
    (g_mean,) = torch.autograd.grad(post.marginals()[0].sum(), m, retain_graph=True)
    close(g_sample[inc], g_mean[inc], rtol=1e-10)
    new = new_points(x, valid)
    f_new = post.sample_at(new, 8, generator=torch.Generator().manual_seed(1))
    loss = f1.square().sum() + f_new.square().sum()
    params = [p for k in kernels for p in k.parameters()]
    grads = torch.autograd.grad(loss, [m, v, *params])
    for grad in grads:
        assert bool(torch.isfinite(grad).all())
        assert bool((grad != 0).any())
    prior = sample_prior_markov(kernels, x, valid, 8, torch.Generator().manual_seed(2))
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
        pytest.param(lambda: Matern32() * Matern12(), id="product"),
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
