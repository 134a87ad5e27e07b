"""The fused pass of the markov backend (``method="fused"``, the CPU default of ``"auto"``):
joint draws and the KL in one autograd Function (:mod:`gpvae.gp._fused`).

Both layouts of the pass are checked: per chain (``"chains"``, the reference loops) and on
struct-of-arrays buffers (``"soa"``, chains innermost, for state dimensions 1-3). Each is
checked against the dense reference by the backend contract (test_backend_contract.py,
entries ``markov-fused`` and ``markov-fused-soa``); here each must agree with the torch
sequential path and the per-recursion compiled path to rounding in float64 (values,
gradients, the same draws for the same generator), agree in float32 to float32 rounding, and
its autograd Function must pass gradcheck.
"""

from __future__ import annotations

import pytest
import torch
from _reference import DTYPE, make_kernels, make_problem
from torch import Tensor

from gpvae import settings
from gpvae.errors import NumericalError, ValidationError
from gpvae.gp import _fused, markov
from gpvae.gp.markov import MarkovGPPosterior

#: fused vs sequential in float64: both exact, only rounding separates them.
SAME = 1e-10
CASES = ["matern12", "matern52", "sum12+32", "mixed"]
LAYOUTS = ["chains", "soa"]
FUNCTIONS = {"chains": _fused._SampleKL, "soa": _fused._SampleKLSoA}


def same(actual: Tensor, expected: Tensor, rtol: float = SAME) -> None:
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol)


def gen() -> torch.Generator:
    return torch.Generator().manual_seed(71)


def fused(*args: object, layout: str) -> MarkovGPPosterior:
    """A posterior whose sample and KL take the fused pass with buffers in ``layout``."""
    post = MarkovGPPosterior(*args, method="fused")  # type: ignore[arg-type]
    post._fused_layout = layout
    return post


def draws_kl_grads(
    kernels: list, x: Tensor, mean: Tensor, var: Tensor, valid: Tensor, method: str,
    layout: str, w_draw: Tensor, w_kl: Tensor, squares: bool = True,
) -> list[Tensor]:  # fmt: skip
    """[draws, KL, gradients of a weighted sum of both with respect to mean, var and every
    kernel hyper-parameter] of ``w_draw.shape[0]`` draws by ``method`` (``layout`` for the
    fused pass); ``squares`` adds the draws' squares weighted by ``|w_draw|``."""
    params = [p for k in kernels for p in k.parameters()]
    m = mean.clone().requires_grad_()
    v = var.clone().requires_grad_()
    post = MarkovGPPosterior(kernels, x, m, v, valid, method=method)
    post._fused_layout = layout
    draws = post.sample(w_draw.shape[0], gen())
    kl = post.kl()
    value = (w_draw * draws).sum()
    if squares:
        value = value + (draws.square() * w_draw.abs()).sum()
    value = value + (w_kl * kl).sum()
    return [draws.detach(), kl.detach(), *torch.autograd.grad(value, [m, v, *params])]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES)
def test_draws_and_kl_match_the_other_paths(case: str, layout: str) -> None:
    kernels = make_kernels(case)
    x, mean, var, valid = make_problem(len(kernels), seed=70)
    post = fused(kernels, x, mean, var, valid, layout=layout)
    draws = post.sample(5, gen())
    assert post._fused_kl is not None  # the KL came out of the same pass
    for method in ("sequential", "compiled"):
        other = MarkovGPPosterior(kernels, x, mean, var, valid, method=method)
        same(draws, other.sample(5, gen()))
        same(post.kl(), other.kl())
    # the KL alone (no draws asked for) is the same
    alone = fused(kernels, x, mean, var, valid, layout=layout)
    same(alone.kl(), post.kl())
    assert draws.dtype == DTYPE
    assert bool(torch.isfinite(draws).all())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", ["mixed", "matern52"])
def test_gradients_match_sequential(case: str, layout: str) -> None:
    """Gradients of a weighted sum of draws and KL with respect to the pseudo-observations and
    every kernel hyper-parameter; exactly zero at excluded points and padding."""
    kernels = make_kernels(case)
    x, mean, var, valid = make_problem(len(kernels), seed=72)
    g = torch.Generator().manual_seed(73)
    w_draw = torch.randn(4, *mean.shape, generator=g, dtype=DTYPE)
    w_kl = torch.rand(mean.shape[0], len(kernels), generator=g, dtype=DTYPE) + 0.5

    def grads(method: str) -> list[Tensor]:
        return draws_kl_grads(kernels, x, mean, var, valid, method, layout, w_draw, w_kl)[2:]

    got, want = grads("fused"), grads("sequential")
    # as in test_compiled: the draws' hyper-parameter gradients pass through Cholesky factors
    # of process noise with a jitter of about 2e-12 at repeated points, magnifying rounding
    for a, b in zip(got, want, strict=True):
        assert bool(torch.isfinite(a).all())
        same(a, b, rtol=1e-6)
    for a, b in zip(got[:2], grads("compiled")[:2], strict=True):
        same(a, b)
    excluded = ~(torch.isfinite(var) & valid[..., None])
    assert bool(excluded.any())
    assert bool((got[0][excluded] == 0).all())
    assert bool((got[1][excluded] == 0).all())


@pytest.mark.parametrize("num_samples", [1, 3], ids=["S=1", "S=3"])
@pytest.mark.parametrize("case", ["matern32", "mixed"])
def test_struct_of_arrays_on_a_mostly_regular_grid_matches_sequential(
    case: str, num_samples: int
) -> None:
    """The struct-of-arrays pass gathers a step's transitions only when its table entries
    differ from the step gathered last (a regular grid gathers once per sweep): on a regular
    grid with a few irregular gaps in one series, padding and excluded points, its draws, KL
    and gradients must still agree with the sequential path. With one draw (training's
    default) and with several: the m = 2 loops write the sums over the data columns out for
    one draw."""
    kernels = make_kernels(case)
    B, N, L = 4, 12, len(kernels)
    g = torch.Generator().manual_seed(77)
    x = 0.5 * torch.arange(N, dtype=DTYPE).expand(B, N).clone()
    x[1, 5:] += 0.3  # one longer gap in series 1 ...
    x[1, 8:] += 0.2  # ... and another, two steps whose entries change
    x = x[..., None]
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[2, -3:] = False  # trailing padding
    mean = torch.randn(B, N, L, generator=g, dtype=DTYPE)
    var = 0.1 + torch.rand(B, N, L, generator=g, dtype=DTYPE)
    var[0, 4] = torch.inf  # a point with no channel included
    var[3, :, 0] = torch.inf  # a chain with no included point
    var = torch.where(valid[..., None], var, 7.0)
    w_draw = torch.randn(num_samples, B, N, L, generator=g, dtype=DTYPE)
    w_kl = torch.rand(B, L, generator=g, dtype=DTYPE) + 0.5

    def run(method: str) -> list[Tensor]:
        args = (x, mean, var, valid, method, "soa", w_draw, w_kl)
        return draws_kl_grads(kernels, *args, squares=False)

    got, want = run("fused"), run("sequential")
    same(got[0], want[0])
    same(got[1], want[1])
    for a, b in zip(got[2:], want[2:], strict=True):  # rtol as in the gradient test above
        assert bool(torch.isfinite(a).all())
        same(a, b, rtol=1e-6)


@pytest.mark.parametrize("case", ["matern32", "mixed"])
def test_struct_of_arrays_one_draw_on_an_irregular_grid_matches_sequential(case: str) -> None:
    """One draw of a state dimension 2 (training's default) takes the fused steps of
    :mod:`gpvae.gp._soa_loops` (one loop over the chains per step, fewer rows stored and
    the rest recomputed in the backward pass): on irregular times with repeated points
    (steps that stand still), excluded points and padding, its draws, KL and gradients
    must agree with the sequential path."""
    kernels = make_kernels(case)
    x, mean, var, valid = make_problem(len(kernels), seed=90, B=4, N=15)
    g = torch.Generator().manual_seed(91)
    w_draw = torch.randn(1, *mean.shape, generator=g, dtype=DTYPE)
    w_kl = torch.rand(mean.shape[0], len(kernels), generator=g, dtype=DTYPE) + 0.5

    def run(method: str) -> list[Tensor]:
        return draws_kl_grads(kernels, x, mean, var, valid, method, "soa", w_draw, w_kl)

    got, want = run("fused"), run("sequential")
    same(got[0], want[0])
    same(got[1], want[1])
    for a, b in zip(got[2:], want[2:], strict=True):  # rtol as in the gradient test above
        assert bool(torch.isfinite(a).all())
        same(a, b, rtol=1e-6)


def test_struct_of_arrays_rows_are_an_odd_number_of_cache_lines() -> None:
    """The chains' rows are padded to whole 64-byte lines, an odd number of them (rows a
    multiple of 4 KiB long would share the L1 cache's sets), never shorter than the chains;
    the arenas fit the padded rows of either dtype."""
    from gpvae.gp import _soa_loops

    assert _soa_loops.padded(1024, 4) == 1040
    assert _soa_loops.padded(1024, 8) == 1032
    for C in (1, 7, 8, 15, 16, 17, 64, 100, 1000, 2048):
        for itemsize in (4, 8):
            p = _soa_loops.padded(C, itemsize)
            assert p >= C
            assert (p * itemsize) % 64 == 0
            assert (p * itemsize // 64) % 2 == 1
    row = max(_soa_loops.padded(100, 4), _soa_loops.padded(100, 8))
    assert row == 112
    for size in _soa_loops.arena_sizes(6, 2, 1, 100):  # whole rows of 6 steps
        assert size > 0
        assert size % (6 * row) == 0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_float32_agrees_with_sequential_float32(layout: str) -> None:
    kernels = [k.float() for k in make_kernels("mixed")]
    g = torch.Generator().manual_seed(74)
    B, N, L = 3, 12, len(kernels)
    x = torch.cumsum(torch.rand(B, N, 1, generator=g) + 0.1, dim=1)
    mean = torch.randn(B, N, L, generator=g)
    var = torch.rand(B, N, L, generator=g) + 0.1
    var[0, 3] = torch.inf
    valid = torch.ones(B, N, dtype=torch.bool)
    seq = MarkovGPPosterior(kernels, x, mean, var, valid, method="sequential")
    post = fused(kernels, x, mean, var, valid, layout=layout)
    kl = post.kl()
    assert kl.dtype == torch.float32
    torch.testing.assert_close(kl, seq.kl(), rtol=2e-4, atol=2e-4)
    assert post.sample(3, gen()).dtype == torch.float32


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("m", [1, 2, 3], ids=["m=1", "m=2", "m=3"])
def test_fused_function_passes_gradcheck(m: int, layout: str) -> None:
    g = torch.Generator().manual_seed(75)
    N, B, G, S, K = 5, 2, 2, 2, 3
    C = B * G

    def rand(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g, dtype=DTYPE)

    def psd(*shape: int) -> Tensor:
        X = rand(*shape, m, m)
        return X @ X.transpose(-1, -2) / m + 0.5 * torch.eye(m, dtype=DTYPE)

    ix = torch.randint(0, K, (N, B), generator=g)
    still = torch.zeros(N, B, dtype=torch.bool)
    still[2, 1] = True  # a repeated point: identity RTS gain
    inc = rand(N, C) > -0.7  # some excluded points
    H = rand(G, m)
    eps, e = rand(N, C, m, S), rand(N, C, S)
    mean = rand(N, C).masked_fill(~inc, float("nan"))
    var = rand(N, C).abs() + 0.3
    tables = [0.6 * rand(K, G, m, m), psd(K, G), torch.linalg.cholesky(psd(K, G))]
    Pinf = psd(G)
    inputs = [t.clone().requires_grad_() for t in (*tables, Pinf, torch.linalg.cholesky(Pinf))]
    safe_mean = mean.nan_to_num(0.0).clone().requires_grad_()

    def fn(*args: Tensor) -> tuple[Tensor, Tensor]:
        *tabs, mu, v = args
        mu = torch.where(inc, mu, torch.nan)  # excluded entries are never read
        v = torch.where(inc, v, torch.inf)
        sample, kl = FUNCTIONS[layout].apply(*tabs, mu, v, ix, still, H, inc, eps, e)
        return sample, kl

    v_in = torch.where(inc, var, torch.ones_like(var)).requires_grad_()
    assert torch.autograd.gradcheck(fn, [*inputs, safe_mean, v_in])


def test_auto_takes_the_fused_pass_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    kernels = make_kernels("mixed")
    x, mean, var, valid = make_problem(len(kernels), B=2, N=10)
    auto = MarkovGPPosterior(kernels, x, mean, var, valid)
    auto.sample(2, gen())
    assert auto._fused_kl is not None
    compiled = MarkovGPPosterior(kernels, x, mean, var, valid, method="compiled")
    compiled.sample(2, gen())
    assert compiled._fused_kl is None
    assert compiled._fused_groups is None
    # where the compiled loops cannot run, auto falls back and "fused" is refused
    monkeypatch.setattr(markov._compiled, "supports", lambda t: False)
    assert MarkovGPPosterior(kernels, x, mean, var, valid)._fused_groups is None
    with pytest.raises(ValidationError, match=r"^method: expected 'fused' only for"):
        MarkovGPPosterior(kernels, x, mean, var, valid, method="fused").sample(1)


def test_kl_from_draws_without_gradients_is_not_reused_with_gradients() -> None:
    kernels = make_kernels("matern52")
    x, mean, var, valid = make_problem(len(kernels), seed=76)
    m = mean.clone().requires_grad_()
    post = MarkovGPPosterior(kernels, x, m, var, valid)
    with torch.no_grad():
        post.sample(1, gen())
    kl = post.kl()
    assert kl.requires_grad
    (grad,) = torch.autograd.grad(kl.sum(), [m])
    assert bool(torch.isfinite(grad).all())
    assert bool((grad != 0).any())


def test_auto_layout_is_struct_of_arrays_for_many_chains_of_small_states(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """m = 1-3 on at least FUSED_SOA_MIN_CHAINS chains run on struct-of-arrays buffers; fewer
    chains, or other state dimensions, per chain. Both give the same draws and KL."""
    for m in (1, 2, 3):
        assert _fused._function(m, settings.FUSED_SOA_MIN_CHAINS, "auto") is _fused._SampleKLSoA
        assert _fused._function(m, settings.FUSED_SOA_MIN_CHAINS - 1, "auto") is _fused._SampleKL
        assert _fused._function(m, 1, "soa") is _fused._SampleKLSoA
        assert _fused._function(m, 10**6, "chains") is _fused._SampleKL
    assert _fused._function(4, 10**6, "soa") is _fused._SampleKL
    kernels = make_kernels("mixed")
    x, mean, var, valid = make_problem(len(kernels), B=2, N=10)
    used: list[str] = []
    for cls in (_fused._SampleKL, _fused._SampleKLSoA):
        monkeypatch.setattr(cls, "apply", _recording(cls.apply, cls.__name__, used))
    monkeypatch.setattr(settings, "FUSED_SOA_MIN_CHAINS", 1)
    many = MarkovGPPosterior(kernels, x, mean, var, valid).sample(2, gen())
    assert used
    assert set(used) == {"_SampleKLSoA"}
    used.clear()
    monkeypatch.setattr(settings, "FUSED_SOA_MIN_CHAINS", 10**6)
    few = MarkovGPPosterior(kernels, x, mean, var, valid).sample(2, gen())
    assert used
    assert set(used) == {"_SampleKL"}
    same(many, few)


def _recording(apply: object, name: str, used: list[str]) -> object:
    def run(*args: object) -> object:
        used.append(name)
        return apply(*args)  # type: ignore[operator]

    return run


@pytest.mark.parametrize("layout", LAYOUTS)
def test_singular_predicted_covariance_raises(layout: str) -> None:
    m, N, B, G, S = 2, 3, 1, 1, 1
    zeros = torch.zeros(1, G, m, m, dtype=DTYPE)  # A = Q = 0 kills the state: P^- = 0
    Pinf = torch.eye(m, dtype=DTYPE)[None]
    ix = torch.zeros(N, B, dtype=torch.long)
    still = torch.zeros(N, B, dtype=torch.bool)
    H = torch.tensor([[1.0, 0.0]], dtype=DTYPE)
    inc = torch.ones(N, B * G, dtype=torch.bool)
    mean, var = torch.zeros(N, B * G, dtype=DTYPE), torch.ones(N, B * G, dtype=DTYPE)
    eps, e = torch.zeros(N, B * G, m, S, dtype=DTYPE), torch.zeros(N, B * G, S, dtype=DTYPE)
    with pytest.raises(NumericalError, match="singular"):
        FUNCTIONS[layout].apply(
            zeros, zeros, zeros, Pinf, Pinf, mean, var, ix, still, H, inc, eps, e
        )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_buffers_reused_between_steps_never_overwrite_a_pending_graph(layout: str) -> None:
    """Two passes whose graphs are both alive, their backward passes run in the other order
    (the second reuses no buffer the first still holds): same gradients as alone."""
    kernels = make_kernels("matern12")
    x, mean, var, valid = make_problem(len(kernels), seed=77)

    def run(shift: float) -> tuple[Tensor, Tensor]:
        m = (mean + shift).requires_grad_()
        post = fused(kernels, x, m, var, valid, layout=layout)
        draws = post.sample(2, gen())
        return (draws.square().sum() + post.kl().sum()), m

    alone = [torch.autograd.grad(*run(s))[0] for s in (0.0, 0.5)]
    (loss0, m0), (loss1, m1) = run(0.0), run(0.5)
    (g1,) = torch.autograd.grad(loss1, m1)
    (g0,) = torch.autograd.grad(loss0, m0)
    assert bool((g0 != g1).any())
    torch.testing.assert_close(g0, alone[0], rtol=0, atol=0)
    torch.testing.assert_close(g1, alone[1], rtol=0, atol=0)


@pytest.mark.parametrize("long_arenas", [False, True])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_reused_buffers_holding_garbage_give_the_same_results(
    layout: str, long_arenas: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step on arenas from the pool, every free arena filled with NaN first, gives the
    values and gradients of a step on fresh buffers (nothing is read before it is written);
    arenas longer than _ARENA_MAX are kept one per kind, and release_arenas drops them."""
    if long_arenas:
        monkeypatch.setattr(_fused, "_ARENA_MAX", 16)
    _fused.release_arenas()
    kernels = make_kernels("mixed")
    x, mean, var, valid = make_problem(len(kernels), seed=78)

    def step() -> list[Tensor]:
        m, v = mean.clone().requires_grad_(), var.clone().requires_grad_()
        post = fused(kernels, x, m, v, valid, layout=layout)
        draws, kl = post.sample(2, gen()), post.kl()
        grads = torch.autograd.grad(draws.square().sum() + kl.sum(), (m, v))
        return [draws.detach(), kl.detach(), *grads]

    first = step()
    assert _fused._ARENAS, "the step's buffers went back to the pool"
    if long_arenas:
        for kind in {k for k, _ in _fused._ARENAS}:
            assert len([k for k in _fused._ARENAS if k[0] == kind]) == 1
    for free in _fused._ARENAS.values():
        for arena in free:
            arena.fill(float("nan"))
    again = step()
    for a, b in zip(again, first):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    _fused.release_arenas()
    assert not _fused._ARENAS


def test_log_terms_sum_log1p_through_products_without_overflow() -> None:
    """The KL's ``sum log1p(x)`` per chain taken as logarithms of running products: equal to
    the sum of log1p over the included points, for tiny and moderate factors, products
    that grow past the bound (taken and restarted) and single factors past it."""
    import numpy as np

    from gpvae.gp import _soa_loops

    rng = np.random.default_rng(81)
    N, C = 40, 7
    x = np.exp(rng.uniform(-40.0, 30.0, size=(N, C)))  # 4e-18 .. 1e13: products overflow
    x[5, 2] = 0.0
    x[7] = 2.0**420  # a step whose factors are past the bound
    x[9, 3] = 1e300
    inc = rng.random((N, C)) > 0.2
    inc[:, 6] = False  # a chain without included points
    x[:, 6] = np.nan  # (never read there)
    prod, logs = np.ones(C), np.zeros(C)
    for n in range(N):
        _soa_loops._log_terms(x[n], inc[n], prod, logs)
        assert bool((prod <= _soa_loops._LOG_FLUSH).all())
    got = logs + np.log(prod)
    want = np.where(inc, np.log1p(np.where(inc, x, 0.0)), 0.0).sum(0)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)
    assert got[6] == 0.0


def test_time_first_takes_the_channels_time_first_and_contiguous() -> None:
    """(B, N, L) -> (N, B * G) for all channels, a slice, a list and a single channel
    (a slice or a list of one: G = 1), with and without a dtype change, for float and bool
    tensors: contiguous (numpy's C layout, the one signature the loops are compiled for);
    the gradient reaches only the channels taken."""
    g = torch.Generator().manual_seed(82)
    t = torch.randn(3, 5, 4, generator=g)
    for x in (t, t > 0, torch.randn(3, 5, 1, generator=g)):
        L = x.shape[-1]
        sels = [slice(0, L), [0]] + ([slice(1, 3), [0, 2, 3], slice(2, 3), [1]] if L > 1 else [])
        for sel in sels:
            want = x[..., sel].movedim(1, 0).reshape(5, -1)
            for dtype in (None, DTYPE) if x.is_floating_point() else (None,):
                got = _fused._time_first(x, sel, dtype)
                assert got.is_contiguous()
                assert got.numpy().flags.c_contiguous
                assert got.dtype == (dtype or x.dtype)
                torch.testing.assert_close(got, want.to(got.dtype), rtol=0, atol=0)
    leaf = t.clone().requires_grad_()
    _fused._time_first(leaf, slice(1, 3), DTYPE).sum().backward()
    assert leaf.grad is not None
    assert bool((leaf.grad[..., 1:3] == 1).all())
    assert bool((leaf.grad[..., [0, 3]] == 0).all())


@pytest.mark.parametrize("dtype", [torch.float32, DTYPE], ids=["float32", "float64"])
@pytest.mark.parametrize("sel", [slice(0, 3), slice(1, 3), [0, 2]], ids=["all", "slice", "list"])
def test_struct_of_arrays_series_first_is_the_time_first_call_relaid(
    sel: slice | list[int], dtype: torch.dtype
) -> None:
    """``series_first``: mean, var and inc as the group's (B, N, G) channels, the draws out
    as a contiguous (S, B, N, G) in the data's dtype, the gradients of mean and var
    contiguous (B, N, G). The same numbers, bit for bit, as the time-first call on the
    same data (float32 data: the float32 kernel; float64 data: the float64 kernel)."""
    g = torch.Generator().manual_seed(84)
    m, N, B, L, S, K = 2, 6, 4, 3, 2, 2
    G = len(sel) if isinstance(sel, list) else len(range(L)[sel])
    C = B * G

    def rand(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g, dtype=DTYPE)

    X = rand(K, G, m, m)
    Pinf = X @ X.transpose(-1, -2) / m + torch.eye(m, dtype=DTYPE)
    tables = (0.5 * rand(K, G, m, m), 0.3 * Pinf, torch.linalg.cholesky(0.3 * Pinf))
    Pinf, chol0 = Pinf[0], torch.linalg.cholesky(Pinf[0])
    ix = torch.randint(0, K, (N, B), generator=g)
    still = torch.zeros(N, B, dtype=torch.bool)
    H = torch.tensor([[1.0, 0.0]], dtype=DTYPE).expand(G, m).contiguous()
    inc = rand(B, N, L) > -0.8
    mean = rand(B, N, L).to(dtype)
    var = (rand(B, N, L).abs() + 2.0).to(dtype)
    eps, e = rand(N, C, m, S).to(dtype), rand(N, C, S).to(dtype)
    w = rand(S, B, N, G).to(dtype)  # weights of the draws
    w_kl = rand(C).abs()

    def run(series_first: bool) -> list[Tensor]:
        mu, v = mean.clone().requires_grad_(), var.clone().requires_grad_()
        mu_g, v_g, inc_g = mu[..., sel], v[..., sel], inc[..., sel]
        if series_first:
            args = (mu_g, v_g, ix, still, H, inc_g, eps, e, True)
        else:
            args = (*(_fused._time_first(t, slice(None)) for t in (mu_g, v_g)), ix, still, H)
            args = (*args, _fused._time_first(inc_g, slice(None)), eps, e)
        sample, kl = _fused._SampleKLSoA.apply(*tables, Pinf, chol0, *args)
        if series_first:
            assert sample.shape == (S, B, N, G)
            assert sample.dtype == dtype
            assert sample.is_contiguous()
            draws = sample
        else:
            draws = sample.reshape(N, B, G, S).permute(3, 1, 0, 2).to(dtype)
        layouts: list[bool] = []
        for t in (mu_g, v_g):
            t.register_hook(lambda grad: layouts.append(grad.is_contiguous()))
        (w * draws).sum().backward(retain_graph=True)
        (w_kl * kl).sum().backward()
        if series_first:
            assert layouts == [True, True] * 2, "gradients contiguous in (B, N, G)"
        return [draws.detach(), kl.detach(), mu.grad, v.grad]  # type: ignore[list-item]

    for a, b in zip(run(True), run(False), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_markov_draws_reach_the_encoder_contiguous_and_its_gradients_too() -> None:
    """A float32 model's fused draws (one group of 64 chains: struct-of-arrays buffers) are a
    contiguous (S, B, N, L) in float32, and the gradients they send to the encoder's mean
    and var are contiguous (B, N, L): nothing upstream runs on permuted memory."""
    kernels = [k.to(torch.float32) for k in make_kernels("matern32") * 4]
    B, N = 16, 9
    assert B * len(kernels) >= settings.FUSED_SOA_MIN_CHAINS
    x, mean, var, valid = make_problem(len(kernels), seed=85, B=B, N=N, padding=False)
    leaf_m = mean.float().requires_grad_()
    leaf_v = var.float().clamp(max=5.0).requires_grad_()
    m, v = leaf_m * 1.0, leaf_v * 1.0  # non-leaves: the hooks see the gradients passed on
    layouts: list[bool] = []
    for t in (m, v):
        t.register_hook(lambda grad: layouts.append(grad.is_contiguous()))
    post = MarkovGPPosterior(kernels, x.float(), m, v, valid)
    draws = post.sample(2, gen())
    assert draws.dtype == torch.float32
    assert draws.shape == (2, B, N, len(kernels))
    assert draws.is_contiguous()
    (draws.square().sum() + post.kl().sum()).backward()
    assert layouts == [True, True]


def test_chains_last_moves_the_chain_axis_last_contiguous() -> None:
    """(N, C, ...) -> (N, ..., C) as a C-contiguous numpy array of the dtype asked for, the
    same values whether the dtype changes (torch's copy) or not (numpy's), from contiguous
    and from strided tensors."""
    g = torch.Generator().manual_seed(86)
    base = torch.randn(4, 6, 2, 3, generator=g)
    for t in (base, base[:, ::2], base.transpose(2, 3), base[..., 0]):
        want = t.movedim(1, -1)
        for dtype in (torch.float32, DTYPE):
            got = _fused._chains_last(t, dtype)
            assert got.flags.c_contiguous
            assert got.dtype == torch.empty(0, dtype=dtype).numpy().dtype
            torch.testing.assert_close(torch.from_numpy(got), want.to(dtype), rtol=0, atol=0)


def test_accumulated_table_gradients_equal_a_scatter_per_step() -> None:
    """The struct-of-arrays backward sums a step's table gradients per chain while the
    steps read the same table entries and scatters the sum when they change (and at the
    end): the table equals one scatter per step, for runs of every length, a return to an
    earlier row and single steps."""
    import numpy as np

    from gpvae.gp import _soa_loops

    rng = np.random.default_rng(87)
    N, B, G, m, K = 11, 3, 2, 2, 4
    rows = [0, 1, 1, 1, 2, 1, 1, 3, 3, 0, 2]  # the table row of series 0 at each step
    ix = np.array([[r, (r + 1) % K, r] for r in rows], dtype=np.int64)  # (N, B)
    ix[4, 2] = 3  # series 2 alone differs at step 4: a run ends for all chains
    src = rng.standard_normal((N, m, m, B * G)).astype(np.float32)
    want = np.zeros((K, G, m, m))
    for n in range(N):
        for b in range(B):
            for g in range(G):
                want[ix[n, b], g] += src[n, :, :, b * G + g]
    got = np.zeros((K, G, m, m))
    acc = np.zeros((m, m, B * G))
    pend = np.full(1, -1, dtype=np.int64)
    for n in range(N):
        _soa_loops._accumulate(src[n], acc, pend, ix, n, G, got)
    _soa_loops._flush(acc, pend, ix, G, got)
    assert pend[0] == -1
    assert not acc.any()
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-15)


def test_numpy_view_is_the_tensor_itself_when_it_can_be() -> None:
    """``_numpy``: no copy for a contiguous tensor of the dtype asked for (or any dtype when
    none is asked), one C-contiguous copy otherwise; the same values."""
    import numpy as np

    g = torch.Generator().manual_seed(88)
    t = torch.randn(3, 4, 5, generator=g)
    assert np.shares_memory(_fused._numpy(t), t.numpy())
    assert np.shares_memory(_fused._numpy(t, torch.float32), t.numpy())
    for x, dtype in ((t, DTYPE), (t.transpose(0, 2), None), (t[:, ::2], torch.float32)):
        got = _fused._numpy(x, dtype)
        assert got.flags.c_contiguous
        assert not np.shares_memory(got, t.numpy())
        torch.testing.assert_close(torch.from_numpy(got), x.to(dtype or x.dtype), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, DTYPE])
def test_struct_of_arrays_relays_data_and_noise_inside_the_compiled_pass(
    dtype: torch.dtype,
) -> None:
    """The struct-of-arrays loops take the data series first (B, N, G) and the noise chain
    before draw, give the draws series first and the gradients of mean and var in the
    data's layout: the same numbers as the pass run on the arrays relaid beforehand by
    numpy (the data as one series of C channels, (1, N, C); the noise chains last), and
    the draws and gradients relaid afterwards."""
    import numpy as np

    from gpvae.gp import _soa_loops

    rng = np.random.default_rng(89)
    B, N, G, m, S = 3, 6, 2, 2, 2
    C, npd = B * G, torch.empty(0, dtype=dtype).numpy().dtype
    eye = np.broadcast_to(np.eye(m), (2, G, m, m))
    A = (0.9 * eye + 0.05 * rng.standard_normal((2, G, m, m))).astype(npd)
    Q = (0.3 * eye).astype(npd)
    CQ = np.sqrt(0.3) * eye.astype(npd)
    Pinf, chol0 = np.eye(m)[None].repeat(G, 0).astype(npd), np.eye(m)[None].repeat(G, 0)
    H = np.zeros((G, m), npd)
    H[:, 0] = 1.0
    ix = np.ones((N, B), dtype=np.int64)
    ix[0] = 0
    still = np.zeros((N, B), dtype=bool)
    mean = rng.standard_normal((B, N, G)).astype(npd)
    var = (0.5 + rng.random((B, N, G))).astype(npd)
    inc = rng.random((B, N, G)) > 0.2
    eps = rng.standard_normal((N, C, m, S)).astype(npd)
    e = rng.standard_normal((N, C, S)).astype(npd)
    g_out = rng.standard_normal((S, B, N, G)).astype(npd)
    g_kl = rng.standard_normal(C).astype(npd)
    fwd, bwd = _soa_loops.arena_sizes(N, m, S, C)

    def run(mean, var, inc, g_out):  # type: ignore[no-untyped-def]
        chol = chol0.astype(npd)
        args = (A, Q, CQ, ix, Pinf, chol, H, still, mean, var, inc, eps, e, np.empty(fwd, npd))
        sample, kl, _bad, saved = _soa_loops.forward(*args)
        grads = _soa_loops.backward(2, G, ix, still, g_kl, g_out, saved, np.empty(bwd, npd))
        return sample, kl, grads

    def time_first(x):  # type: ignore[no-untyped-def]
        return np.ascontiguousarray(x.transpose(1, 0, 2).reshape(1, N, C))

    sample, kl, grads = run(mean, var, inc, g_out)
    relaid = [time_first(x) for x in (mean, var, inc)]
    g_relaid = np.ascontiguousarray(g_out.transpose(0, 2, 1, 3).reshape(S, 1, N, C))
    sample1, kl1, grads1 = run(*relaid, g_relaid)
    assert sample.shape == (S, B, N, G)
    assert grads[5].shape == grads[6].shape == (B, N, G)
    for s in range(S):
        np.testing.assert_array_equal(time_first(sample[s]), sample1[s])
    np.testing.assert_array_equal(kl, kl1)
    for a, b in zip(grads[:5], grads1[:5]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(grads[5:], grads1[5:]):
        np.testing.assert_array_equal(time_first(a), b)
