"""The compiled (numba) path of the markov backend against the torch sequential path.

Both are checked against the dense reference by the backend contract
(test_backend_contract.py, entry ``markov-compiled``); here they must agree with each other
to rounding in float64 (values, gradients, the same samples for the same generator), agree
in float32 to float32 rounding, and every compiled autograd Function must pass gradcheck.
The distinct-step tables of :mod:`gpvae.gp._transitions` are checked against each kernel's
own ``transition`` and ``state_space``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from _reference import DTYPE, make_kernels, make_problem, new_points
from torch import Tensor

from gpvae.errors import NumericalError, ValidationError
from gpvae.gp import _compiled, _kalman, _scan, markov
from gpvae.gp._transitions import group_tables, group_transitions
from gpvae.gp.markov import MarkovGPPosterior, sample_prior_markov
from gpvae.kernels.base import Kernel
from gpvae.kernels.matern import Matern12, Matern32, Matern52

#: compiled vs sequential in float64: both exact, only rounding separates them.
SAME = 1e-10


def same(actual: Tensor, expected: Tensor, rtol: float = SAME) -> None:
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol)


def posteriors(
    kernels: list[Kernel], x: Tensor, mean: Tensor, var: Tensor, valid: Tensor
) -> tuple[MarkovGPPosterior, MarkovGPPosterior]:
    """(sequential, compiled) posteriors on the same inputs."""
    return (
        MarkovGPPosterior(kernels, x, mean, var, valid, method="sequential"),
        MarkovGPPosterior(kernels, x, mean, var, valid, method="compiled"),
    )


# ----------------------------------------------------------------------------------------
# values and samples


@pytest.mark.parametrize("case", ["matern12", "matern52", "sum12+32", "mixed"])
def test_values_match_sequential(case: str) -> None:
    kernels = make_kernels(case)
    x, mean, var, valid = make_problem(len(kernels), seed=50)
    x_new = new_points(x, valid, seed=51)
    seq, comp = posteriors(kernels, x, mean, var, valid)
    assert comp._chain.ops is _compiled
    same(comp.log_marginal, seq.log_marginal)
    for got, want in zip(comp.marginals(), seq.marginals()):
        same(got, want)
    for got, want in zip(comp.predict(x_new), seq.predict(x_new)):
        same(got, want)
    same(comp.kl(), seq.kl())


def test_samples_equal_sequential_draws() -> None:
    kernels = make_kernels("mixed")
    x, mean, var, valid = make_problem(len(kernels), seed=52)
    x_new = new_points(x, valid, seed=53)
    seq, comp = posteriors(kernels, x, mean, var, valid)
    gen = lambda: torch.Generator().manual_seed(54)  # noqa: E731
    same(comp.sample(16, gen()), seq.sample(16, gen()))
    same(comp.sample_at(x_new, 16, gen()), seq.sample_at(x_new, 16, gen()))
    same(
        sample_prior_markov(kernels, x, valid, 16, gen(), method="compiled"),
        sample_prior_markov(kernels, x, valid, 16, gen(), method="sequential"),
    )


def test_float32_agrees_with_sequential_float32() -> None:
    """float32 inputs (computed in float64 inside) give float32 results within float32
    rounding of the torch path. (Draws are compared in float64 above: in float32 the torch
    path's own rounding and its larger process-noise jitter, eps^(3/4) of the dtype, move
    Matern-5/2 draws at closely spaced points by up to about 3e-3.)"""
    kernels = [k.float() for k in make_kernels("mixed")]
    g = torch.Generator().manual_seed(64)
    B, N, L = 3, 12, len(kernels)
    x = torch.cumsum(torch.rand(B, N, 1, generator=g) + 0.1, dim=1)
    mean = torch.randn(B, N, L, generator=g)
    var = torch.rand(B, N, L, generator=g) + 0.1
    var[0, 3] = torch.inf
    valid = torch.ones(B, N, dtype=torch.bool)
    seq, comp = posteriors(kernels, x, mean, var, valid)
    assert comp.log_marginal.dtype == torch.float32
    tight = dict(rtol=2e-4, atol=2e-4)
    torch.testing.assert_close(comp.log_marginal, seq.log_marginal, **tight)
    for got, want in zip(comp.marginals(), seq.marginals()):
        torch.testing.assert_close(got, want, **tight)


# ----------------------------------------------------------------------------------------
# gradients

Quantity = Callable[[MarkovGPPosterior, Tensor], Tensor]

QUANTITIES: dict[str, Quantity] = {
    "log_marginal": lambda post, _: post.log_marginal,
    "kl": lambda post, _: post.kl(),
    "marginals": lambda post, _: post.marginals()[0].sin().sum(1) + post.marginals()[1].sum(1),
    "predict": lambda post, x_new: post.predict(x_new)[0].sum(1) + post.predict(x_new)[1].sum(1),
    "sample": lambda post, _: post.sample(4, torch.Generator().manual_seed(56)).square().sum(0),
}


@pytest.mark.parametrize("quantity", list(QUANTITIES))
def test_gradients_match_sequential(quantity: str) -> None:
    kernels = make_kernels("mixed")
    x, mean, var, valid = make_problem(len(kernels), seed=57)
    x_new = new_points(x, valid, seed=58)
    weights = torch.rand(x.shape[0], len(kernels), generator=torch.Generator().manual_seed(59))
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

    # The sample's hyper-parameter gradients pass through Cholesky factors of process noise
    # with a jitter of about 2e-12 at repeated points, which magnifies rounding.
    rtol = 1e-6 if quantity == "sample" else 1e-8
    for got, want in zip(grads("compiled"), grads("sequential"), strict=True):
        assert bool(torch.isfinite(got).all())
        same(got, want, rtol=rtol)


@pytest.mark.parametrize("m", [1, 2, 3], ids=["m=1", "m=2", "m=3"])
def test_compiled_functions_pass_gradcheck(m: int) -> None:
    g = torch.Generator().manual_seed(60)
    N, B, G, S = 5, 2, 2, 3

    def rand(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g, dtype=DTYPE)

    def psd(*shape: int) -> Tensor:
        X = rand(*shape, m, m)
        return X @ X.transpose(-1, -2) / m + 0.5 * torch.eye(m, dtype=DTYPE)

    A = 0.6 * rand(N, B, G, m, m)
    Pinf, H = psd(G), rand(G, 1, m)
    w = rand(N, B, G).abs() * (rand(N, B, G) > -0.5)  # some exact zeros (excluded points)
    log_var = rand(N, B, G)
    still = torch.zeros(N, B, dtype=torch.bool)
    still[2, 1] = True  # a repeated point: identity RTS gain

    # tables of K = 3 distinct steps, read through an index (N, B)
    K = 3
    ix = torch.randint(0, K, (N, B), generator=g)
    A_tab = 0.6 * rand(K, G, m, m)

    def cov_filter(A: Tensor, Q: Tensor, Pinf: Tensor, H: Tensor, w: Tensor, lv: Tensor) -> Tensor:
        out: Tensor = _compiled._FilterCovariances.apply(A, Q, ix, Pinf, H, w, lv, still)
        return out

    inputs = [t.clone().requires_grad_() for t in (A_tab, psd(K, G), Pinf, H, w, log_var)]
    assert torch.autograd.gradcheck(cov_filter, inputs)
    gain, y = rand(N, B, G, m, 1), rand(N, B, G, S)
    inputs = [t.clone().requires_grad_() for t in (A_tab, H, gain, y)]
    assert torch.autograd.gradcheck(
        lambda A, H, gain, y: _compiled._FilterMeans.apply(A, ix, H, gain, y), inputs
    )
    sgain, m_filt = rand(N - 1, B, G, m, m), rand(N, B, G, m, S)
    inputs = [t.clone().requires_grad_() for t in (A_tab, sgain, m_filt)]
    assert torch.autograd.gradcheck(
        lambda A, sgain, m_filt: _compiled._SmoothMeans.apply(A, ix, sgain, m_filt), inputs
    )

    def smooth_cov(sgain: Tensor, P_filt: Tensor, P_pred: Tensor) -> Tensor:
        out: Tensor = _compiled._SmoothCovariances.apply(sgain, P_filt, P_pred)
        return out

    inputs = [t.clone().requires_grad_() for t in (sgain, psd(N, B, G), psd(N, B, G))]
    assert torch.autograd.gradcheck(smooth_cov, inputs)
    eps = rand(N - 1, B, G, m, S)
    inputs = [t.clone().requires_grad_() for t in (A_tab, rand(K, G, m, m), rand(B, G, m, S))]
    assert torch.autograd.gradcheck(
        lambda A, c, s0: _compiled._LinearRecursion.apply(A, c, ix, s0, eps), inputs
    )
    # a full (N, B, G, m, m) tensor is a table of N * B entries
    full = _compiled.indexed(A)
    assert torch.equal(full.table[full.at], A)


def test_filter_outputs_match_torch_recursion() -> None:
    """Every output of the fused covariance filter equals the torch reference's."""
    g = torch.Generator().manual_seed(61)
    kernels = make_kernels("matern52") * 2
    x, mean, var, valid = make_problem(2, seed=62)
    post = MarkovGPPosterior(kernels, x, mean, var, valid, method="sequential")
    chain = post._chain
    grp = chain.groups[0]
    w = torch.rand(*grp.A.shape[:3], generator=g, dtype=DTYPE)
    log_var = -w.log()
    ref = _kalman.filter_covariances(grp.A, grp.Q, grp.Pinf, grp.H, w, log_var, grp.still)
    got = _compiled.filter_covariances(grp.A, grp.Q, grp.Pinf, grp.H, w, log_var, grp.still)
    for a, b in zip(got, ref, strict=True):
        same(a, b)


# ----------------------------------------------------------------------------------------
# errors and method selection


def test_singular_predicted_covariance_raises() -> None:
    m = 2
    N, B, G = 3, 1, 1
    A = torch.zeros(N, B, G, m, m, dtype=DTYPE)  # kills the state: P^- = Q = 0
    Q = torch.zeros(N, B, G, m, m, dtype=DTYPE)
    Pinf = torch.eye(m, dtype=DTYPE)[None]
    H = torch.tensor([[[1.0, 0.0]]], dtype=DTYPE)
    w = torch.ones(N, B, G, dtype=DTYPE)
    still = torch.zeros(N, B, dtype=torch.bool)
    with pytest.raises(NumericalError, match="singular"):
        _compiled.filter_covariances(A, Q, Pinf, H, w, w.log(), still)


def test_auto_takes_the_compiled_loops_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    kernels = make_kernels("mixed")
    x, mean, var, valid = make_problem(len(kernels), B=2, N=10)
    assert MarkovGPPosterior(kernels, x, mean, var, valid)._chain.ops is _compiled
    # where the compiled loops cannot run (tensors off the CPU), auto falls back
    monkeypatch.setattr(_compiled, "supports", lambda t: False)
    assert MarkovGPPosterior(kernels, x, mean, var, valid)._chain.ops is markov._kalman
    with pytest.raises(ValidationError, match=r"^method: expected 'compiled' only for"):
        _ = MarkovGPPosterior(kernels, x, mean, var, valid, method="compiled")._chain
    monkeypatch.setattr("gpvae.settings.PARALLEL_MIN_POINTS", 10)
    monkeypatch.setattr("gpvae.settings.PARALLEL_MAX_CHAINS", 10)
    assert MarkovGPPosterior(kernels, x, mean, var, valid)._chain.ops is _scan


# ----------------------------------------------------------------------------------------
# state-space tables per distinct step


@pytest.mark.parametrize("kind", [Matern12, Matern32, Matern52])
def test_group_transitions_match_each_kernel(kind: type[Kernel]) -> None:
    """The stacked closed forms equal every kernel's own transition and state space, values
    and gradients (including steps beyond the decay cap)."""
    kernels = [
        kind(lengthscale=ls, variance=s2).to(DTYPE)  # type: ignore[call-arg]
        for ls, s2 in [(0.5, 1.0), (2.0, 0.3), (1e-3, 2.0)]
    ]
    steps = torch.tensor([0.0, 0.3, 1.0, 7.5, 2e3], dtype=DTYPE)
    got = group_transitions(kernels, steps)
    w = torch.Generator().manual_seed(63)
    weights = [torch.randn(t.shape, generator=w, dtype=DTYPE) for t in got]
    params = [p for k in kernels for p in k.parameters()]
    for g, k in enumerate(kernels):
        A, Q = k.transition(steps)
        ss = k.state_space()
        same(got.A[:, g], A)
        same(got.Q[:, g], Q)
        same(got.Pinf[g], ss.Pinf)
        same(got.H[g], ss.H)
    fast = torch.autograd.grad(sum((wt * t).sum() for wt, t in zip(weights, got)), params)
    slow_parts = [k.transition(steps) for k in kernels]
    slow = torch.autograd.grad(
        sum(
            (weights[0][:, g] * a).sum()
            + (weights[1][:, g] * q).sum()
            + (weights[2][g] * k.state_space().Pinf).sum()
            for g, (k, (a, q)) in enumerate(zip(kernels, slow_parts))
        ),
        params,
    )
    for a, b in zip(fast, slow, strict=True):
        same(a, b, rtol=1e-9)


def _matern_group(kind: type[Kernel], dtype: torch.dtype) -> list[Kernel]:
    return [
        kind(lengthscale=ls, variance=s2).to(dtype)  # type: ignore[call-arg]
        for ls, s2 in [(0.5, 1.0), (2.0, 0.3), (1e-3, 2.0), (40.0, 0.05)]
    ]


@pytest.mark.parametrize("param_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", [Matern12, Matern32, Matern52])
def test_group_tables_match_the_torch_tables_and_factors(
    kind: type[Kernel], param_dtype: torch.dtype
) -> None:
    """The float64 tables of one autograd Function (group_tables) equal group_transitions'
    and the factors process_noise_factors and the Cholesky of Pinf give, values and the
    gradients of every output (steps of 0 and beyond the decay cap included)."""
    kernels = _matern_group(kind, param_dtype)
    steps = torch.tensor([0.0, 0.3, 1.0, 7.5, 2e3], dtype=DTYPE)
    fast = group_tables(kernels, steps)
    assert fast.chol_q is not None
    assert fast.chol0 is not None
    slow = group_transitions(kernels, steps)
    slow_outs = [
        slow.A,
        slow.Q,
        slow.Pinf,
        _kalman.process_noise_factors(slow.Q, slow.Pinf),
        _kalman._cholesky(slow.Pinf, "Pinf"),
    ]
    fast_outs = [fast.mats.A, fast.mats.Q, fast.mats.Pinf, fast.chol_q, fast.chol0]
    for got, want in zip(fast_outs, slow_outs, strict=True):
        assert got.dtype == DTYPE
        same(got, want)
    assert torch.equal(fast.mats.H, slow.H)
    w = torch.Generator().manual_seed(64)
    params = [p for k in kernels for p in k.parameters()]
    for i in range(len(slow_outs)):  # each output's gradient on its own
        weight = torch.randn(slow_outs[i].shape, generator=w, dtype=DTYPE)
        got, want = (
            torch.autograd.grad((weight * o[i]).sum(), params, retain_graph=True, allow_unused=True)
            for o in (fast_outs, slow_outs)
        )
        for a, b, param in zip(got, want, params, strict=True):
            a = torch.zeros_like(param) if a is None else a  # A does not depend on s2
            b = torch.zeros_like(param) if b is None else b
            assert a.dtype == b.dtype == param_dtype
            same(a, b, rtol=1e-9)


@pytest.mark.parametrize("kind", [Matern12, Matern32, Matern52])
def test_group_tables_factor_the_process_noise_of_short_steps(kind: type[Kernel]) -> None:
    """For short steps Q is nearly singular and its factor ill-conditioned (two ways of
    rounding disagree far beyond 1e-10 there); the factors still reproduce Q + jitter."""
    kernels = _matern_group(kind, DTYPE)
    steps = torch.tensor([1e-6, 1e-4, 1e-3, 1e-2], dtype=DTYPE)
    got = group_tables(kernels, steps)
    assert got.chol_q is not None
    Q, Pinf = got.mats.Q.detach(), got.mats.Pinf.detach()
    jitter = torch.finfo(DTYPE).eps ** 0.75 * torch.diagonal(Pinf, dim1=-2, dim2=-1)
    L = got.chol_q.detach()
    assert torch.equal(L, L.tril())
    scale = torch.diagonal(Pinf, dim1=-2, dim2=-1).amax(-1)[:, None, None]  # (G, 1, 1)
    err = (L @ L.transpose(-1, -2) - Q - torch.diag_embed(jitter)).abs() / scale
    assert float(err.max()) < 1e-14


@pytest.mark.parametrize("p", [0, 1, 2])
def test_matern_tables_function_passes_gradcheck(p: int) -> None:
    from gpvae.gp._transitions import _MaternTables

    lam = torch.tensor([0.7, 1.9, 3.0], dtype=DTYPE, requires_grad=True)
    s2 = torch.tensor([1.3, 0.4, 2.0], dtype=DTYPE, requires_grad=True)
    steps = torch.tensor([0.0, 0.5, 2.0], dtype=DTYPE)
    assert torch.autograd.gradcheck(
        lambda a, b: _MaternTables.apply(a, b, steps, p, True, []), (lam, s2)
    )


def test_group_tables_without_gradients_give_the_same_values() -> None:
    kernels = _matern_group(Matern32, torch.float32)
    steps = torch.tensor([0.0, 1.0, 2.5], dtype=DTYPE)
    with_grad = group_tables(kernels, steps)
    with torch.no_grad():
        without = group_tables(kernels, steps)
    assert without.mats.A.grad_fn is None
    for a, b in zip(
        [*with_grad.mats, with_grad.chol_q, with_grad.chol0],
        [*without.mats, without.chol_q, without.chol0],
        strict=True,
    ):
        assert torch.equal(a.detach(), b)


def test_group_tables_elsewhere_are_group_transitions_without_factors() -> None:
    """float32 steps, and groups other than one Matern order, take group_transitions."""
    kernels = _matern_group(Matern32, torch.float32)
    steps = torch.tensor([0.0, 1.0], dtype=torch.float32)
    got = group_tables(kernels, steps)
    assert got.chol_q is None
    assert got.chol0 is None
    for a, b in zip(got.mats, group_transitions(kernels, steps), strict=True):
        assert torch.equal(a, b)
    mixed = [Matern32(lengthscale=2.0).to(DTYPE), (Matern12() + Matern12()).to(DTYPE)]
    assert group_tables(mixed, steps.to(DTYPE)).chol_q is None


def test_a_failed_factorisation_raises_where_the_factors_are_used() -> None:
    """The tables do not raise for a process noise that cannot be factorised; the group
    computes the factors the torch way when they are asked for, which raises as before."""
    kernels = _matern_group(Matern32, DTYPE)
    with torch.no_grad():
        kernels[1].raw_lengthscale.fill_(float("nan"))
    x = torch.arange(6, dtype=DTYPE).expand(2, 6)
    steps = torch.tensor([0.0, 1.0], dtype=DTYPE)
    assert group_tables(kernels, steps).chol_q is None
    (group,) = markov._groups(kernels, x)  # no error yet: the filter does not need them
    with pytest.raises(NumericalError, match="process noise Q"):
        _ = group._chol_table


def test_prior_paths_from_given_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths driven by given noise: compiled and torch recursions agree, and their moments
    match the kernel (covariance at lag 0 and 1 within 5 standard errors)."""
    kernels = make_kernels("mixed")
    g = torch.Generator().manual_seed(65)
    B, N, S = 2, 30, 4000
    x = torch.cumsum(torch.rand(B, N, generator=g, dtype=DTYPE) + 0.05, dim=1)
    x[:, 7] = x[:, 6]  # a repeated point
    eps = torch.randn(S, B, N, len(kernels), 5, generator=g, dtype=DTYPE)
    got = markov.prior_paths(kernels, x, eps)  # (S, B, N, L)
    monkeypatch.setattr(_compiled, "supports", lambda t: False)
    same(got, markov.prior_paths(kernels, x, eps))
    for ch, k in enumerate(kernels):
        f = got[:, 0, :, ch]  # (S, N)
        K = k(x[0, :, None]).detach()  # (N, N)
        emp = f.T @ f / S
        se = (K.diagonal()[:, None] * K.diagonal()[None, :] + K**2).sqrt() / S**0.5
        assert bool(((emp - K).abs() <= 5 * se + 1e-9).all())


def test_gc_paused_restores_the_collector_state_also_on_error() -> None:
    import gc

    was = gc.isenabled()
    try:
        gc.enable()
        with _compiled.gc_paused():
            assert not gc.isenabled()
        assert gc.isenabled()
        with pytest.raises(RuntimeError), _compiled.gc_paused():
            raise RuntimeError("inside")
        assert gc.isenabled()
        gc.disable()  # a caller that paused it itself keeps it paused
        with _compiled.gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()

        @_compiled.without_gc
        def probe(x: int) -> tuple[int, bool]:
            return x + 1, gc.isenabled()

        gc.enable()
        assert probe(1) == (2, False)
        assert gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


def test_gc_paused_long_lived_moves_what_was_made_inside_to_the_oldest_generation() -> None:
    import gc

    if gc.get_freeze_count():  # pragma: no cover - the test process froze objects itself
        pytest.skip("objects are frozen in this process")
    was = gc.isenabled()
    try:
        gc.enable()
        with _compiled.gc_paused():
            young = [[] for _ in range(100)]
        oldest = {id(o) for o in gc.get_objects(generation=2)}
        assert not any(id(o) in oldest for o in young)  # without long_lived: still young
        with _compiled.gc_paused(long_lived=True):
            made = [[] for _ in range(1000)]
            assert not gc.isenabled()
        assert gc.isenabled()
        oldest = {id(o) for o in gc.get_objects(generation=2)}
        assert all(id(o) in oldest for o in made)
        assert all(id(o) in oldest for o in young)  # every young object moves with them
        assert gc.get_freeze_count() == 0
        gc.disable()  # a caller that paused it itself keeps it paused
        with _compiled.gc_paused(long_lived=True):
            pass
        assert not gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


def test_gc_paused_long_lived_leaves_objects_frozen_by_the_process_frozen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    if gc.get_freeze_count():  # pragma: no cover - the test process froze objects itself
        pytest.skip("objects are frozen in this process")
    real_freeze, real_unfreeze = gc.freeze, gc.unfreeze
    real_freeze()
    try:
        # the calls, not the count: a frozen object freed meanwhile (by its reference count,
        # in this or another thread) lowers the freeze count without anyone unfreezing
        calls: list[str] = []
        monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
        monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze"))
        with _compiled.gc_paused(long_lived=True):
            made = [[] for _ in range(10)]
        assert calls == []  # not unfrozen (nor refrozen) by us
        assert gc.get_freeze_count() > 0
        assert made
    finally:
        real_unfreeze()


def test_without_gc_promotes_after_the_first_call_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    if gc.get_freeze_count():  # pragma: no cover - the test process froze objects itself
        pytest.skip("objects are frozen in this process")
    calls: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze"))

    @_compiled.without_gc
    def probe(x: int) -> int:
        return x + 1

    assert probe(1) == 2
    assert calls == ["freeze", "unfreeze"]  # the first call loads numba's cached code
    assert probe(2) == 3
    assert calls == ["freeze", "unfreeze"]


def test_supports_imports_numba_but_not_the_per_chain_loops() -> None:
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from gpvae.gp import _compiled\n"
        "assert 'numba' not in sys.modules\n"
        "assert _compiled.supports(torch.zeros(1))\n"
        "assert 'numba' in sys.modules\n"
        "assert 'gpvae.gp._loops' not in sys.modules\n"
        "assert _compiled._compiler() is not None\n"
        "assert 'gpvae.gp._loops' in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_compiled_matern32_tables_equal_the_numpy_closed_forms_bit_for_bit() -> None:
    # the numba loop (the tables of every Matern-3/2 training step) against the numpy
    # closed forms it replaces: every output, tangent and success flag, bit for bit, on
    # random problems including failed factorisations (s2 <= 0, NaN lengthscales)
    import numpy as np

    from gpvae.gp import _transitions as tr

    assert tr._tables_loops() is not None
    rng = np.random.default_rng(0)
    failed = 0
    for trial in range(60):
        K, G = int(rng.integers(1, 6)), int(rng.integers(1, 20))
        lam, s2 = np.exp(rng.uniform(-6, 4, G)), np.exp(rng.uniform(-5, 5, G))
        steps = np.concatenate([[0.0], np.sort(np.exp(rng.uniform(-8, 4, K - 1)))])
        if trial % 7 == 0:
            s2[0] = -1.0
        if trial % 11 == 0:
            lam[-1] = np.nan
        dt = np.minimum(steps[:, None], tr._DECAY_MAX / lam)
        decay = np.exp(-lam * dt)
        for tangents in (False, True):
            with np.errstate(invalid="ignore"):
                ref = tr._matern32_np(lam, s2, dt, decay, tangents)
            out = tr._matern32(lam, s2, dt, decay, tangents)
            assert out[2] == ref[2]
            failed += not all(ref[2])
            for a, b in zip(out[0], ref[0]):
                assert a.shape == b.shape
                assert np.array_equal(a, b, equal_nan=True)
            if not tangents:
                assert out[1] is None
                assert ref[1] is None
                continue
            for pair, ref_pair in zip(out[1], ref[1]):
                for a, b in zip(pair, ref_pair):
                    if b is None:
                        assert a is None
                    else:
                        assert np.array_equal(a, b, equal_nan=True)
    assert failed > 0  # the failure cases were exercised


def test_the_compiled_matern32_tables_run_without_the_garbage_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the tables loop is the first compiled loop of a Matern-3/2 fit: its first call loads
    # numba's implementations (some 10^5 long-lived objects); like the fused pass's loops it
    # runs with the cyclic collector paused, and the collector's state is restored after
    import gc

    import numpy as np

    from gpvae.gp import _transitions as tr

    loops = tr._tables_loops()
    assert loops is not None
    seen: list[bool] = []
    real = loops.matern32

    def spy(*args: object) -> object:
        seen.append(gc.isenabled())
        return real(*args)

    tr._matern32_loop.cache_clear()
    monkeypatch.setattr(loops, "matern32", spy)
    try:
        lam, s2 = np.array([0.5, 2.0]), np.array([1.0, 3.0])
        dt = np.array([[0.0, 0.0], [1.0, 1.0]])
        was = gc.isenabled()
        for tangents in (False, True):
            out = tr._matern32(lam, s2, dt, np.exp(-lam * dt), tangents)
            assert all(out[2])
            assert gc.isenabled() is was
    finally:
        tr._matern32_loop.cache_clear()
    assert seen == [False, False]


def test_loops_compile_without_numba_cache_when_no_folder_can_hold_it() -> None:
    # a read-only installation run by a user without a writable home: numba finds no
    # folder to cache in ("cannot cache function ...: no locator available", made here by
    # leaving numba no locator), which stopped every fit; the loops are now compiled
    # without the cache, after one warning naming NUMBA_CACHE_DIR
    import subprocess
    import sys

    code = (
        "import warnings\n"
        "import numpy as np\n"
        "from numba.core import caching\n"
        "caching.CacheImpl._locator_classes = []\n"
        "from gpvae.gp import _compiled, _transitions as tr\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    loops = tr._tables_loops()\n"
        "    assert _compiled.loops_module('_fused_loops') is not None\n"
        "    lam, s2 = np.array([0.5, 2.0]), np.array([1.0, 3.0])\n"
        "    dt = np.array([[0.0, 0.0], [1.0, 1.0]])\n"
        "    got = tr._matern32(lam, s2, dt, np.exp(-lam * dt), False)\n"
        "    want = tr._matern32_np(lam, s2, dt, np.exp(-lam * dt), False)\n"
        "assert type(loops.matern32._cache) is caching.NullCache\n"
        "assert len(loops.matern32.signatures) == 1  # compiled, in memory\n"
        "for a, b in zip(got[0], want[0]):\n"
        "    np.testing.assert_array_equal(a, b)\n"
        "texts = [str(w.message) for w in seen]\n"
        "assert len(texts) == 1, texts\n"
        "assert 'NUMBA_CACHE_DIR' in texts[0] and 'gpvae.gp.warm' in texts[0], texts\n"
        "assert issubclass(seen[0].category, RuntimeWarning)\n"
        "print(texts[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "cannot cache" in out.stdout


def test_warm_without_numba_says_numba_is_not_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # it said "method: expected 'compiled' only for float32 or float64 tensors on the CPU,
    # found torch.float64 on cpu", which contradicts itself
    from gpvae.gp import warm

    monkeypatch.setattr(warm, "_numba", lambda: False)
    with pytest.raises(ImportError, match=r"numba is not installed.*pip install numba"):
        warm.compile_loops()
    with pytest.raises(SystemExit) as done:
        warm.main(["--no-bytecode"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "numba is not installed" in err
    assert "found torch.float64 on cpu" not in err
