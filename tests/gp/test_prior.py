"""GPPrior: kernels per channel, backend resolution, prior samples and input checks."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from gpvae.errors import GPVAEError, InputTypeError, ShapeError, ValidationError
from gpvae.gp import DenseGPPosterior, GPPrior
from gpvae.kernels import RBF, Kernel, Matern12, Matern32

DT = torch.float64


def _inputs(B: int = 2, N: int = 6, d: int = 1, L: int = 2, seed: int = 0) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.sort(torch.rand(B, N, d, generator=g, dtype=DT) * 10.0, dim=1).values
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[-1, -1] = False
    return {
        "x": x,
        "mean": torch.randn(B, N, L, generator=g, dtype=DT),
        "var": 0.1 + torch.rand(B, N, L, generator=g, dtype=DT),
        "valid": valid,
    }


# ----------------------------------------------------------------------------------------
# kernels per channel


@pytest.mark.parametrize("pack", [True, False])
def test_single_kernel_is_deep_copied_per_channel(pack: bool) -> None:
    kernel = Matern32(lengthscale=2.0)
    prior = GPPrior(kernel, latent_dim=3, pack_kernels=pack).to(DT)
    ks = list(prior.kernels)
    assert len(ks) == 3
    assert all(k is not kernel for k in ks)
    # three channels' values of each hyper-parameter: (3,) tensors when packed
    assert sum(p.numel() for p in prior.parameters()) == 3 * len(list(kernel.parameters()))
    assert len(list(prior.parameters())) == (2 if pack else 6)
    ks[0].lengthscale = 5.0
    assert float(ks[1].lengthscale.detach()) == pytest.approx(2.0)
    assert float(kernel.lengthscale.detach()) == pytest.approx(2.0)
    # a loss on channel 0 only reaches channel 0's hyper-parameters
    inp = _inputs(L=3)
    dense = GPPrior(kernel, latent_dim=3, backend="dense", pack_kernels=pack).to(DT)
    post = dense.condition(**inp)
    post.log_marginal[:, 0].sum().backward()
    if pack:
        assert dense.packed is not None
        grads = list(dense.packed["raw_lengthscale"].grad)
    else:
        grads = [k.raw_lengthscale.grad for k in post.kernels]  # type: ignore[attr-defined]
    assert grads[0] is not None
    assert float(grads[0].abs()) > 0
    assert all(g is None or float(g.abs()) == 0 for g in grads[1:])


def test_sequence_of_kernels_is_used_as_given() -> None:
    ks: list[Kernel] = [Matern32(lengthscale=1.0), RBF(lengthscale=3.0)]
    prior = GPPrior(ks, latent_dim=2).to(DT)
    assert prior.kernels[0] is ks[0]
    assert prior.kernels[1] is ks[1]
    x = _inputs()["x"]
    cov = prior.covariance(x)
    assert cov.shape == (2, 2, 6, 6)
    for ch, k in enumerate(ks):
        torch.testing.assert_close(cov[:, ch], k(x))
    torch.testing.assert_close(prior.covariance(x[..., 0]), cov)  # (B, N) means d = 1
    assert GPPrior(torch.nn.ModuleList(ks), latent_dim=2).kernels[1] is ks[1]


# ----------------------------------------------------------------------------------------
# backend resolution


@pytest.mark.parametrize(
    ("kernels", "d", "backend", "expected"),
    [
        pytest.param(lambda: RBF(), 1, "auto", "dense", id="auto-rbf-1d-dense"),
        pytest.param(
            lambda: Matern32(),
            1,
            "auto",
            "markov",
            id="auto-matern-1d",
        ),
        pytest.param(lambda: Matern32(), 2, "auto", "dense", id="auto-matern-2d-dense"),
        pytest.param(lambda: [Matern32(), RBF()], 1, "auto", "dense", id="auto-mixed-dense"),
        pytest.param(
            lambda: [Matern32(), Matern12()],
            1,
            "auto",
            "markov",
            id="auto-all-matern-1d",
        ),
        pytest.param(lambda: Matern32(), 1, "dense", "dense", id="dense-forced"),
        pytest.param(lambda: Matern32(), 1, "markov", "markov", id="markov-forced"),
    ],
)
def test_backend_resolution(
    kernels: Callable[[], Kernel | list[Kernel]], d: int, backend: str, expected: str
) -> None:
    prior = GPPrior(kernels(), latent_dim=2, backend=backend)
    assert prior.resolve_backend(torch.zeros(1, 3, d)) == expected


@pytest.mark.parametrize("kernel", [RBF, Matern32], ids=["rbf", "matern32"])
def test_auto_backend_does_not_depend_on_the_number_of_points(kernel: type[Kernel]) -> None:
    """``auto`` has no size threshold (documented in resolve_backend): a million points of
    a kernel without a state-space form stay dense, of a Matern kernel markov."""
    prior = GPPrior(kernel(), latent_dim=2)
    names = {prior.resolve_backend(torch.zeros(1, n, 1)) for n in (3, 1_000, 1_000_000)}
    assert names == ({"dense"} if kernel is RBF else {"markov"})


def test_jitter_is_used_by_dense_sampling_and_ignored_by_markov() -> None:
    """As documented in GPPrior: the dense backend's sampling factorisations take
    ``jitter``; the markov backend's draws and posterior do not depend on it."""
    x = _inputs()["x"]
    for backend in ("dense", "markov"):
        draws, kls = [], []
        for jitter in (1e-6, 1e-1):
            prior = GPPrior(Matern32(lengthscale=2.0), 2, backend=backend, jitter=jitter).to(DT)
            draws.append(prior.sample(x, 2, torch.Generator().manual_seed(0)))
            kls.append(prior.condition(**_inputs()).kl())
        if backend == "markov":
            assert torch.equal(draws[0], draws[1])
            assert torch.equal(kls[0], kls[1])
        else:
            assert float((draws[0] - draws[1]).detach().abs().max()) > 1e-3


def test_dense_backend_gives_dense_posterior() -> None:
    prior = GPPrior(RBF(), latent_dim=2).to(DT)
    assert isinstance(prior.condition(**_inputs()), DenseGPPosterior)


def test_markov_with_kernel_without_state_space_raises() -> None:
    with pytest.raises(GPVAEError, match=r"kernel.*backend='markov'.*RBF"):
        GPPrior(RBF(), latent_dim=2, backend="markov")
    with pytest.raises(GPVAEError, match="kernel"):
        GPPrior([Matern32(), RBF()], latent_dim=2, backend="markov")


def test_markov_with_multidimensional_x_raises() -> None:
    prior = GPPrior(Matern32(), latent_dim=2, backend="markov").to(DT)
    inp = _inputs(d=2)
    with pytest.raises(GPVAEError, match=r"x: backend='markov'.*d = 2"):
        prior.condition(**inp)
    with pytest.raises(GPVAEError, match="x: backend='markov'"):
        prior.sample(inp["x"], 2)


# ----------------------------------------------------------------------------------------
# prior samples


@pytest.mark.parametrize(
    ("backend", "kernels"),
    [
        pytest.param(
            "dense",
            lambda: [Matern32(lengthscale=1.5), RBF(lengthscale=2.0, variance=2.0)],
            id="dense",
        ),
        pytest.param(
            "markov",
            lambda: [Matern32(lengthscale=1.5), Matern12(lengthscale=2.0, variance=2.0)],
            id="markov",
        ),
    ],
)
def test_prior_sample_moments_match_kernel(
    backend: str, kernels: Callable[[], list[Kernel]]
) -> None:
    S = 20_000
    prior = GPPrior(kernels(), 2, backend=backend).to(DT)
    inp = _inputs(B=2, N=5)
    x, valid = inp["x"], inp["valid"]
    x[-1, -1] = math.nan  # padding may hold anything
    draws = prior.sample(x, S, torch.Generator().manual_seed(0), valid=valid)
    assert draws.shape == (S, 2, 5, 2)
    assert bool(torch.isfinite(draws).all())
    for b in range(2):
        v = valid[b]
        for ch, k in enumerate(prior.kernels):
            cov = k(x[b, v])
            f = draws[:, b, v, ch]
            diag = torch.diagonal(cov)
            assert bool((f.mean(0).abs() <= 5 * torch.sqrt(diag / S)).all())
            emp = f.T @ f / S
            se = torch.sqrt((diag[:, None] * diag[None, :] + cov**2) / S)
            assert bool(((emp - cov).abs() <= 5 * se + 1e-9).all())


def test_prior_sample_is_reparameterised_in_hyper_parameters() -> None:
    prior = GPPrior(Matern32(lengthscale=1.5), 1, backend="dense").to(DT)
    x = _inputs()["x"]
    prior.sample(x, 3, torch.Generator().manual_seed(0)).pow(2).sum().backward()
    for p in prior.parameters():
        assert p.grad is not None
        assert bool(torch.isfinite(p.grad).all())
        assert float(p.grad.abs()) > 0


# ----------------------------------------------------------------------------------------
# bad inputs: each raises a GPVAEError naming the argument


def _bad(**changes: Callable[[Tensor], Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def apply(inp: dict[str, Any]) -> dict[str, Any]:
        return {**inp, **{k: f(inp[k]) for k, f in changes.items()}}

    return apply


def _set(index: tuple[int, ...], value: float) -> Callable[[Tensor], Tensor]:
    def f(t: Tensor) -> Tensor:
        t = t.clone()
        t[index] = value
        return t

    return f


BAD_CONDITION = [
    ("x-rank", _bad(x=lambda x: x[..., None]), ShapeError, "x"),
    ("x-integer", _bad(x=lambda x: x.long()), InputTypeError, "x"),
    ("x-not-tensor", _bad(x=lambda x: x.tolist()), InputTypeError, "x"),
    ("x-nan-on-valid-point", _bad(x=_set((0, 1, 0), math.nan)), ValidationError, "x"),
    ("x-inf-on-valid-point", _bad(x=_set((0, 1, 0), math.inf)), ValidationError, "x"),
    ("mean-shape", _bad(mean=lambda m: m[..., :1]), ShapeError, "mean"),
    ("mean-dtype", _bad(mean=lambda m: m.float()), InputTypeError, "mean"),
    ("mean-nan-where-included", _bad(mean=_set((0, 2, 1), math.nan)), ValidationError, "mean"),
    ("mean-inf-where-included", _bad(mean=_set((0, 2, 1), math.inf)), ValidationError, "mean"),
    ("var-shape", _bad(var=lambda v: v[:, :-1]), ShapeError, "var"),
    ("var-nan", _bad(var=_set((1, 0, 0), math.nan)), ValidationError, "var"),
    ("var-zero", _bad(var=_set((1, 0, 0), 0.0)), ValidationError, "var"),
    ("var-negative", _bad(var=_set((1, 0, 0), -0.5)), ValidationError, "var"),
    ("var-minus-inf", _bad(var=_set((1, 0, 0), -math.inf)), ValidationError, "var"),
    ("valid-float", _bad(valid=lambda v: v.double()), InputTypeError, "valid"),
    ("valid-shape", _bad(valid=lambda v: v[:, :-1]), ShapeError, "valid"),
]


@pytest.mark.parametrize("backend", ["dense", pytest.param("markov", id="markov")])
@pytest.mark.parametrize(
    ("change", "error", "name"),
    [pytest.param(c, e, n, id=i) for i, c, e, n in BAD_CONDITION],
)
def test_bad_condition_input_raises(
    backend: str,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    error: type[Exception],
    name: str,
) -> None:
    prior = GPPrior(Matern32(), latent_dim=2, backend=backend).to(DT)
    with pytest.raises(error, match=rf"^{name}: expected"):
        prior.condition(**change(_inputs()))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_bad(x=_set((1, 5, 0), math.nan)), id="x-nan-on-padding"),
        pytest.param(_bad(mean=_set((1, 5, 0), math.nan)), id="mean-nan-on-padding"),
        pytest.param(
            _bad(var=_set((0, 2, 1), math.inf), mean=_set((0, 2, 1), math.nan)),
            id="mean-nan-where-excluded",
        ),
        pytest.param(_bad(valid=lambda v: None), id="valid-none"),
        pytest.param(_bad(x=lambda x: x[..., 0]), id="x-without-d-axis"),
    ],
)
def test_accepted_condition_input(change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    prior = GPPrior(Matern32(), latent_dim=2, backend="dense").to(DT)
    post = prior.condition(**change(_inputs()))
    assert bool(torch.isfinite(post.kl()).all())


BAD_CONSTRUCTOR: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("backend-unknown", {"backend": "sparse-ish"}, ValidationError, r"backend: .*'dense'"),
    ("latent-dim-zero", {"latent_dim": 0}, ValidationError, "latent_dim"),
    ("latent-dim-float", {"latent_dim": 2.0}, InputTypeError, "latent_dim"),
    ("latent-dim-bool", {"latent_dim": True}, InputTypeError, "latent_dim"),
    ("kernel-not-kernel", {"kernel": "matern32"}, InputTypeError, "kernel"),
    ("kernel-list-length", {"kernel": [RBF()]}, ValidationError, "kernel"),
    ("kernel-list-element", {"kernel": [RBF(), 3]}, InputTypeError, "kernel"),
    ("jitter-zero", {"jitter": 0.0}, ValidationError, "jitter"),
    ("jitter-nan", {"jitter": math.nan}, ValidationError, "jitter"),
    ("jitter-inf", {"jitter": math.inf}, ValidationError, "jitter"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [pytest.param(k, e, m, id=i) for i, k, e, m in BAD_CONSTRUCTOR],
)
def test_bad_constructor_argument_raises(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        GPPrior(**{"kernel": RBF(), "latent_dim": 2, **kwargs})


def test_unknown_backend_lists_names() -> None:
    with pytest.raises(ValidationError) as info:
        GPPrior(RBF(), 2, backend="cholesky")
    for name in ("'auto'", "'dense'", "'markov'", "'cholesky'"):
        assert name in str(info.value)


@pytest.mark.parametrize("num_samples", [0, -1, 2.0, True])
def test_bad_num_samples_raises(num_samples: Any) -> None:
    prior = GPPrior(RBF(), 2).to(DT)
    inp = _inputs()
    post = prior.condition(**inp)
    with pytest.raises(GPVAEError, match="num_samples"):
        prior.sample(inp["x"], num_samples)
    with pytest.raises(GPVAEError, match="num_samples"):
        post.sample(num_samples)
    with pytest.raises(GPVAEError, match="num_samples"):
        post.sample_at(inp["x"], num_samples)


def test_prior_sample_rejects_nan_x_on_valid_points() -> None:
    prior = GPPrior(RBF(), 2).to(DT)
    x = _inputs()["x"]
    x[0, 0, 0] = math.nan
    with pytest.raises(ValidationError, match=r"^x: expected finite"):
        prior.sample(x, 2)


@pytest.mark.parametrize(
    ("prior_dtype", "input_dtype"),
    [
        pytest.param(torch.float32, torch.float64, id="float32-prior-float64-inputs"),
        pytest.param(torch.float64, torch.float32, id="float64-prior-float32-inputs"),
    ],
)
def test_outputs_follow_the_input_dtype(prior_dtype: torch.dtype, input_dtype: torch.dtype) -> None:
    prior = GPPrior(Matern32(lengthscale=2.0), 2, backend="dense").to(prior_dtype)
    inp = {k: v.to(input_dtype) if v.is_floating_point() else v for k, v in _inputs().items()}
    post = prior.condition(**inp)
    assert post.log_marginal.dtype == input_dtype
    assert post.marginals()[1].dtype == input_dtype
    assert post.sample(2).dtype == input_dtype
    assert prior.sample(inp["x"], 2).dtype == input_dtype
    ref = GPPrior(Matern32(lengthscale=2.0), 2, backend="dense").to(DT).condition(**_inputs())
    torch.testing.assert_close(post.log_marginal.double(), ref.log_marginal, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["dense", "markov"])
@pytest.mark.parametrize("padding", [False, True])
def test_included_is_finite_var_on_valid_points(backend: str, padding: bool) -> None:
    g = torch.Generator().manual_seed(3)
    B, N, L = 3, 7, 2
    x = torch.arange(float(N)).expand(B, N)[..., None].clone()
    mean = torch.randn(B, N, L, generator=g)
    var = torch.rand(B, N, L, generator=g) + 0.1
    var[torch.rand(B, N, L, generator=g) < 0.3] = math.inf
    valid = torch.ones(B, N, dtype=torch.bool)
    if padding:
        valid[2, 5:] = False
    var.requires_grad_(True)
    q = GPPrior(Matern32(), L, backend=backend).condition(x, mean, var, valid)
    inc = q.included
    assert inc.dtype == torch.bool
    assert not inc.requires_grad
    assert torch.equal(inc, torch.isfinite(var.detach()) & valid[..., None])
