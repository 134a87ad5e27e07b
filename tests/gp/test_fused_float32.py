"""The float32 kernel of the struct-of-arrays fused pass (:mod:`gpvae.gp._fused`).

Float32 pseudo-observations (the encoder's outputs) run the struct-of-arrays loops in
float32 when ``settings.FUSED_SOA_FLOAT32`` is on (the default; on in every test here)
and every included variance of a group is at least its prior variance over
``settings.FUSED_FLOAT32_MAX_RATIO``; otherwise the float64 kernel runs, as for float64
data. The float64 path is tested everywhere else; here the
float32 one against the dense float64 reference (KL and its gradients) and against the
float64 kernel on the same data and the same random draws (draws, KL, gradients).

Tolerance, derived from the rounding: the data are float32 (exact in float64 too), the
tables are rounded once to float32 (relative 2^-24 = 6e-8 each), and each of the N steps'
covariance updates cancels the prior's digits down to the included variances' scale, so a
step's relative rounding error is at most about u * r, r = prior variance / smallest
variance (<= 20 in these problems). Summed over N <= 30 steps without cancellation
between them, the normwise relative error of every output is at most ~ N * r * u (3.6e-5
here); the tests allow ``4 * N * r * u``. Measured errors are 10-100x smaller (worst 1.2e-4
over S1-sized problems at r <= 55, lengthscales 0.3-500 steps and 1,000 steps; 1e-3 to 1 at
r = 1e4-1e7, which the conditioning check sends to float64).
"""

from __future__ import annotations

import copy

import pytest
import torch
from _reference import DTYPE, dense_all, make_kernels, stacked
from torch import Tensor

from gpvae import settings
from gpvae.gp import _fused, _soa_loops
from gpvae.gp.markov import MarkovGPPosterior

U32 = 2.0**-24


@pytest.fixture(autouse=True)
def float32_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The float32 kernel switched on (it is off by default)."""
    monkeypatch.setattr(settings, "FUSED_SOA_FLOAT32", True)


CASES = ["matern12", "matern32", "matern52", "sum12+32"]


def problem(num_channels: int, seed: int, B: int = 6, N: int = 30) -> tuple[Tensor, ...]:
    """Float32 index points and pseudo-observations on irregular times with repeated points,
    excluded points and padding; variances in [0.05, 1.05] (prior variances 0.5-1.5: ratios
    <= 30)."""
    g = torch.Generator().manual_seed(seed)
    gaps = 0.05 + torch.empty(B, N, dtype=DTYPE).exponential_(2.0, generator=g)
    gaps = torch.where(torch.rand(B, N, generator=g, dtype=DTYPE) < 0.15, 0.0, gaps)
    x = torch.cumsum(gaps, dim=1)[..., None].float()
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[1, -4:] = False
    mean = torch.randn(B, N, num_channels, generator=g)
    var = 0.05 + torch.rand(B, N, num_channels, generator=g)
    var = torch.where(torch.rand(B, N, num_channels, generator=g) < 0.2, torch.inf, var)
    var = torch.where(valid[..., None], var, 7.0)
    return x, mean, var, valid


def ratio(kernels: list, var: Tensor, valid: Tensor) -> float:
    with torch.no_grad():
        prior = max(float(k(torch.zeros(1, 1))[0, 0]) for k in kernels)
    return prior / float(var[valid].min())


def spy_dtypes(monkeypatch: pytest.MonkeyPatch) -> list:
    """The dtype names the struct-of-arrays forward pass runs in, call by call."""
    seen = []
    forward = _soa_loops.forward

    def spy(*args):  # type: ignore[no-untyped-def]
        seen.append(args[8].dtype.name)
        return forward(*args)

    monkeypatch.setattr(_soa_loops, "forward", spy)
    return seen


def run(kernels, x, mean, var, valid, w_draw, w_kl, num_samples=2):  # type: ignore[no-untyped-def]
    """Draws, KL and the gradients of a weighted sum of both (mean, var, hyper-parameters)."""
    params = [p for k in kernels for p in k.parameters()]
    m, v = mean.clone().requires_grad_(), var.clone().requires_grad_()
    post = MarkovGPPosterior(kernels, x, m, v, valid, method="fused")
    post._fused_layout = "soa"
    draws = post.sample(num_samples, torch.Generator().manual_seed(71))
    kl = post.kl()
    value = (w_draw * draws).sum() + (w_kl * kl).sum()
    return [draws.detach(), kl.detach(), *torch.autograd.grad(value, [m, v, *params])]


def normwise(actual: Tensor, expected: Tensor, tol: float, what: str) -> None:
    scale = float(expected.abs().max())
    err = float((actual.to(DTYPE) - expected.to(DTYPE)).abs().max())
    assert err <= tol * scale, f"{what}: normwise error {err / scale:.2e} > {tol:.2e}"


@pytest.mark.parametrize("case", CASES)
def test_float32_kernel_matches_the_float64_kernel_on_the_same_draws(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same float32 data, same generator: the float32 kernel's draws, KL and gradients
    against the float64 kernel's (tested against the sequential path and the dense reference
    elsewhere), normwise within 4 N r u; and the float32 kernel is the one that ran."""
    kernels = [k.float() for k in make_kernels(case)]
    x, mean, var, valid = problem(len(kernels), seed=81)
    N, r = x.shape[1], ratio(kernels, var, valid)
    tol = 4 * N * r * U32
    g = torch.Generator().manual_seed(82)
    w_draw = torch.randn(2, *mean.shape, generator=g)
    w_kl = torch.rand(mean.shape[0], len(kernels), generator=g) + 0.5
    seen = spy_dtypes(monkeypatch)
    got = run(kernels, x, mean, var, valid, w_draw, w_kl)
    assert seen
    assert all(d == "float32" for d in seen)
    monkeypatch.setattr(settings, "FUSED_SOA_FLOAT32", False)
    want = run(kernels, x, mean, var, valid, w_draw, w_kl)
    assert seen[-1] == "float64"
    names = ["draws", "kl", "mean", "var"] + [f"param {i}" for i in range(len(got) - 4)]
    for a, b, name in zip(got, want, names, strict=True):
        assert a.dtype == b.dtype
        assert bool(torch.isfinite(a).all())
        normwise(a, b, tol, name)
    excluded = ~(torch.isfinite(var) & valid[..., None])
    assert bool((got[2][excluded] == 0).all())
    assert bool((got[3][excluded] == 0).all())


@pytest.mark.parametrize("case", CASES)
def test_float32_kl_and_its_gradients_match_the_dense_float64_reference(case: str) -> None:
    """The KL of the float32 kernel and its gradients (mean, var, hyper-parameters) against
    the textbook dense formulas in float64 on the same (float32-exact) data."""
    kernels = [k.float() for k in make_kernels(case)]
    kernels64 = [copy.deepcopy(k).to(DTYPE) for k in kernels]
    x, mean, var, valid = problem(len(kernels), seed=83, B=3, N=20)
    N, r = x.shape[1], ratio(kernels, var, valid)
    tol = 4 * N * r * U32
    params = [p for k in kernels for p in k.parameters()]
    w_kl = torch.rand(mean.shape[0], len(kernels), generator=torch.Generator().manual_seed(84))

    m, v = mean.clone().requires_grad_(), var.clone().requires_grad_()
    post = MarkovGPPosterior(kernels, x, m, v, valid, method="fused")
    post._fused_layout = "soa"
    kl = post.kl()
    got = [kl.detach(), *torch.autograd.grad((w_kl * kl).sum(), [m, v, *params])]

    m64, v64 = mean.to(DTYPE).requires_grad_(), var.to(DTYPE).requires_grad_()
    ref = stacked(dense_all(kernels64, x.to(DTYPE), m64, v64, valid), "kl")
    params64 = [p for k in kernels64 for p in k.parameters()]
    want = [
        ref.detach(),
        *torch.autograd.grad((w_kl.to(DTYPE) * ref).sum(), [m64, v64, *params64]),
    ]
    for a, b, name in zip(got, want, ["kl", "mean", "var", "params"], strict=False):
        normwise(a, b, tol, name)
    for a, b in zip(got[3:], want[3:], strict=True):
        normwise(a, b, tol, "param")


def test_ill_conditioned_groups_and_the_switch_run_the_float64_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A group with an included variance below its prior variance over the ratio runs the
    float64 kernel (bit for bit the result with the float32 kernel switched off); float64
    data run it always; groups are checked one by one."""
    kernels = [k.float() for k in make_kernels("mixed")]  # groups of state dimension 2, 1 and 3
    x, mean, var, valid = problem(len(kernels), seed=85)
    g = torch.Generator().manual_seed(86)
    w_draw = torch.randn(2, *mean.shape, generator=g)
    w_kl = torch.rand(mean.shape[0], len(kernels), generator=g) + 0.5
    seen = spy_dtypes(monkeypatch)
    run(kernels, x, mean, var, valid, w_draw, w_kl)
    K = len(seen)
    assert K >= 3
    assert seen == ["float32"] * K
    tiny = var.clone()
    tiny[2, 5, 1] = 1e-4  # channel 1 (Matern12, prior variance 2): ratio 2e4
    seen.clear()
    got = run(kernels, x, mean, tiny, valid, w_draw, w_kl)
    groups = MarkovGPPosterior(kernels, x, mean, tiny, valid, method="fused")._fused_groups
    assert groups is not None
    expect = ["float64" if 1 in g.channels else "float32" for g in groups]
    assert seen == expect
    assert "float64" in seen
    assert "float32" in seen
    monkeypatch.setattr(settings, "FUSED_SOA_FLOAT32", False)
    seen.clear()
    off = run(kernels, x, mean, tiny, valid, w_draw, w_kl)
    assert seen == ["float64"] * K
    for a, b in zip(got, off, strict=True):
        if a.dim() >= 2 and a.shape[-1] == len(kernels):  # (B, N, L) gradients, (B, L) KL
            torch.testing.assert_close(a[..., 1], b[..., 1], rtol=0, atol=0)
    monkeypatch.setattr(settings, "FUSED_SOA_FLOAT32", True)
    seen.clear()
    k64 = [copy.deepcopy(k).to(DTYPE) for k in kernels]
    run(k64, x.to(DTYPE), mean.to(DTYPE), var.to(DTYPE), valid, w_draw.to(DTYPE), w_kl.to(DTYPE))
    assert seen == ["float64"] * K


def test_float32_ok_compares_each_channel_with_its_prior_variance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check at its boundary: a variance of exactly prior / ratio passes, below fails;
    excluded points (inc False) are ignored whatever their variance."""
    monkeypatch.setattr(settings, "FUSED_FLOAT32_MAX_RATIO", 64.0)  # exact bounds in float32
    G, B, N = 2, 3, 4
    Pinf = torch.stack([torch.diag(torch.tensor([2.0, 5.0])), torch.eye(2)]).to(DTYPE)
    H = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=DTYPE)
    var = torch.ones(N, B * G, dtype=torch.float32).numpy()
    inc = torch.ones(N, B * G, dtype=torch.bool).numpy()
    var[2, 4] = 2.0 / 64  # channel 0 of series 2 at its bound
    var[3, 5] = 1.0 / 64  # channel 1 of series 2 at its bound
    assert _fused._float32_ok(var, inc, Pinf, H)
    var[1, 3] = 0.5 / 64  # channel 1 (prior variance 1) below its bound
    assert not _fused._float32_ok(var, inc, Pinf, H)
    inc[1, 3] = False
    assert _fused._float32_ok(var, inc, Pinf, H)
    var[0, 0] = 1.5 / 64  # channel 0 below its bound (2 / 64)
    assert not _fused._float32_ok(var, inc, Pinf, H)
