"""The spacetime and sparse backends beyond the shared contract.

The contract (``test_backend_contract.py``) checks both against the exact dense GP, the sparse
one with inducing sites that hold every site. Here, in float64:

- with fewer inducing sites than sites, the sparse backend is the textbook projected
  (DTC / SVGP) model: log N(mean | 0, Q + V), the posterior of f through the projection plus
  the residual variance, and KL(q(u) || p(u)), values and gradients (with respect to the
  pseudo-observations, the kernels' hyper-parameters and the inducing sites);
- the inducing sites are learnable through ``GPPrior``; bad inducing sites are refused;
- ``auto`` picks the spacetime backend for SpaceTime kernels and sparse with inducing sites.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from gpvae.errors import ShapeError, ValidationError
from gpvae.gp import GPPrior, spacetime
from gpvae.gp.spacetime import SpaceTimeGPPosterior
from gpvae.kernels import Matern12, Matern32, SpaceTime

DTYPE = torch.float64


def _problem(seed: int = 0) -> tuple[list[SpaceTime], Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Two channels; 2 series of 7 sites x 5 times with holes; 3 inducing sites."""
    g = torch.Generator().manual_seed(seed)
    S, T, B, L = 7, 5, 2, 2
    sites = 4.0 * torch.rand(S, 2, generator=g, dtype=DTYPE)
    times = torch.cumsum(0.5 + torch.rand(B, T, generator=g, dtype=DTYPE), 1)
    x = torch.cat(
        [sites[None, None].expand(B, T, S, 2), times[..., None, None].expand(B, T, S, 1)], -1
    ).reshape(B, T * S, 3)
    mean = torch.randn(B, T * S, L, generator=g, dtype=DTYPE)
    var = 0.2 + torch.rand(B, T * S, L, generator=g, dtype=DTYPE)
    var = torch.where(torch.rand(var.shape, generator=g, dtype=DTYPE) < 0.3, math.inf, var)
    kernels = [
        SpaceTime(Matern32(lengthscale=[2.0, 1.5], variance=1.2), Matern12(lengthscale=1.5)),
        SpaceTime(Matern32(lengthscale=2.5, variance=0.8), Matern32(lengthscale=2.0)),
    ]
    kernels = [k.to(DTYPE) for k in kernels]
    inducing = 4.0 * torch.rand(3, 2, generator=g, dtype=DTYPE)
    return kernels, x, mean, var, inducing, sites


def _dtc(kernel: SpaceTime, x: Tensor, m: Tensor, v: Tensor, z: Tensor) -> dict[str, Tensor]:
    """Textbook projected model of one series and channel, over its included points."""
    inc = torch.isfinite(v)
    s, t = x[:, :2], x[:, 2:]
    kzz = kernel.spatial(z)
    a = kernel.spatial(s, z) @ torch.linalg.inv(kzz)  # (N, M)
    q_full = (a @ kernel.spatial(z, s)) * kernel.temporal(t)  # (N, N)
    k_diag = kernel(x, diag=True)
    q, mi, vi = q_full[inc][:, inc], m[inc], v[inc]
    cov = q + torch.diag(vi)
    log_z = torch.distributions.MultivariateNormal(torch.zeros_like(mi), cov).log_prob(mi)
    solve = torch.linalg.solve(cov, torch.stack([mi], -1))[:, 0]
    proj_mean = q_full[:, inc] @ solve
    proj_var = torch.diagonal(q_full) - (
        q_full[:, inc] * torch.linalg.solve(cov, q_full[inc]).T
    ).sum(-1)
    expected = (
        -0.5
        * (torch.log(2 * math.pi * vi) + ((mi - proj_mean[inc]) ** 2 + proj_var[inc]) / vi).sum()
    )
    return {
        "log_marginal": log_z,
        "kl": expected - log_z,
        "mean": proj_mean,
        "var": proj_var + k_diag - torch.diagonal(q_full),
    }


@pytest.mark.parametrize("chunked", [False, True], ids=["whole", "checkpointed-chunks"])
def test_sparse_is_the_projected_model_values_and_gradients(
    chunked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also with the sites' statistics formed one time step at a time under checkpointing
    (what saves the O(T S M) intermediates at many sites): same values and gradients."""
    calls = []
    if chunked:
        monkeypatch.setattr(spacetime, "_CHUNK_ELEMENTS", 1)
        real = spacetime.checkpoint

        def counted(*args: object, **kwargs: object) -> Tensor:
            calls.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(spacetime, "checkpoint", counted)
    kernels, x, mean, var, z, _ = _problem()
    mean = mean.clone().requires_grad_()
    z = z.clone().requires_grad_()
    post = SpaceTimeGPPosterior(kernels, x, mean, var, inducing=z)
    got_mean, got_var = post.marginals()
    B, _, L = mean.shape
    params = [mean, z, *[p for k in kernels for p in k.parameters()]]
    w = torch.randn(4, B, L, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    got = {"log_marginal": post.log_marginal, "kl": post.kl(), "mean": got_mean, "var": got_var}
    for key in got:
        want = torch.stack(
            [
                torch.stack(
                    [
                        _dtc(kernels[ell], x[b], mean[b, :, ell], var[b, :, ell], z)[key]
                        for ell in range(L)
                    ],
                    -1,
                )
                for b in range(B)
            ]
        )
        torch.testing.assert_close(got[key], want, rtol=1e-9, atol=1e-10, msg=key)
        wsum = w[0] if want.ndim == 2 else w[1][:, None, :]
        g_got = torch.autograd.grad(
            (got[key] * wsum).sum(), params, retain_graph=True, allow_unused=True
        )
        g_want = torch.autograd.grad(
            (want * wsum).sum(), params, retain_graph=True, allow_unused=True
        )
        for a, b, p in zip(g_got, g_want, params, strict=True):
            a = torch.zeros_like(p) if a is None else a
            b = torch.zeros_like(p) if b is None else b
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9, msg=f"d {key}")
    assert bool(calls) == chunked


def test_sparse_equals_exact_with_inducing_at_the_sites() -> None:
    kernels, x, mean, var, _, sites = _problem(seed=3)
    exact = SpaceTimeGPPosterior(kernels, x, mean, var)
    sparse = SpaceTimeGPPosterior(kernels, x, mean, var, inducing=sites.flip(0))
    torch.testing.assert_close(sparse.log_marginal, exact.log_marginal, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sparse.kl(), exact.kl(), rtol=1e-9, atol=1e-10)
    for a, b in zip(sparse.marginals(), exact.marginals()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    # a worse approximation with fewer sites: the log marginal is not the exact one
    fewer = SpaceTimeGPPosterior(kernels, x, mean, var, inducing=sites[:3])
    assert float((fewer.log_marginal - exact.log_marginal).detach().abs().max()) > 1e-3


def test_gpprior_learns_inducing_sites_and_picks_backends() -> None:
    kernels, x, mean, var, z, _ = _problem(seed=5)
    prior = GPPrior(kernels, 2, inducing=z).to(DTYPE)
    assert prior.backend == "sparse"
    assert isinstance(prior.inducing, torch.nn.Parameter)
    loss = prior.condition(x, mean, var).kl().sum()
    loss.backward()
    assert prior.inducing.grad is not None
    assert float(prior.inducing.grad.abs().sum()) > 0
    assert GPPrior(kernels, 2).resolve_backend(x) == "spacetime"
    assert GPPrior(Matern32(input_dim=3), 2).resolve_backend(x) == "dense"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"backend": "sparse"}, TypeError, "inducing"),
        (
            {"backend": "sparse", "inducing": torch.full((3, 2), math.nan)},
            ValidationError,
            "inducing",
        ),
        ({"backend": "dense", "inducing": torch.zeros(3, 2)}, ValidationError, "inducing"),
    ],
)
def test_bad_inducing_sites_are_refused(kwargs: dict, error: type, match: str) -> None:
    kernels, *_ = _problem()
    with pytest.raises(error, match=match):
        GPPrior(kernels, 2, **kwargs)


def test_inducing_sites_of_the_wrong_dimension_are_refused() -> None:
    kernels, x, mean, var, _, _ = _problem()
    with pytest.raises(ShapeError, match="inducing"):
        SpaceTimeGPPosterior(kernels, x, mean, var, inducing=torch.zeros(3, 3, dtype=DTYPE))


def test_spacetime_refuses_a_temporal_kernel_without_state_space() -> None:
    from gpvae.kernels import RBF

    kernels, x, mean, var, _, _ = _problem()
    bad = [SpaceTime(Matern32(), RBF()).to(DTYPE), kernels[1]]
    with pytest.raises(ValidationError, match="state-space"):
        SpaceTimeGPPosterior(bad, x, mean, var)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_unique_rows_equals_torch_unique(d: int) -> None:
    """The sort-per-column distinct rows equal torch.unique(dim=0): same rows, same order,
    same inverse, with repeated rows, ties in the first column, -0.0 and float64."""
    from gpvae.gp.linalg import unique_rows

    g = torch.Generator().manual_seed(d)
    base = torch.randint(0, 4, (40, d), generator=g).to(torch.float64) / 3
    x = base[torch.randint(0, 40, (500,), generator=g)]
    x[0] = -0.0
    x[1] = 0.0
    rows, inverse = unique_rows(x)
    ref_rows, ref_inverse = torch.unique(x, dim=0, return_inverse=True)
    torch.testing.assert_close(rows, ref_rows, rtol=0, atol=0)
    assert torch.equal(inverse, ref_inverse)
    assert torch.equal(rows[inverse], x)
    empty_rows, empty_inverse = unique_rows(x[:0])
    assert empty_rows.shape == (0, d)
    assert empty_inverse.shape == (0,)
