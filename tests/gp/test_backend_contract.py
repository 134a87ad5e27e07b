"""The contract of every GP backend, against the dense textbook reference, in float64.

Every :class:`~gpvae.gp.base.GPPosterior` implementation is one entry of :data:`BACKENDS`:
a name, a factory ``(kernels, x, mean, var, valid) -> GPPosterior``, a predicate saying which
problems (kernels, index dimension) it supports, its float64 tolerance, and the name under
which ``GPPrior(..., backend=name)`` selects it, if any. A new backend (sparse inducing
points, a spatio-temporal Kalman filter with d >= 1) plugs in by adding one entry; every test
below then runs on it for every problem of :data:`PROBLEMS` / :data:`SAMPLE_PROBLEMS` it
supports.

The reference (``_reference.py``) conditions each series and channel on its included points
only (valid, finite var) with ``torch.linalg.solve`` and ``torch.distributions``. The
problems have padding (leading and trailing; NaN index points and means there), excluded
points (var = +inf; NaN means there), a point where every channel is excluded, a channel
with no included point in a series, irregular sorted times with repeated points, several
channels with different kernels (Matern 1/2, 3/2, 5/2, sums of them, periodic resonators,
a quasi-periodic product, RBF, 2-D ARD), and new
points before, between, after and on the data, one of them twice.

Checked for every backend and supported problem:

- values: ``log_marginal``, ``marginals()`` (valid points; finite placeholders on
  padding), ``kl()``, ``predict(x_new)``; also through ``GPPrior.condition`` by name;
- gradients of log_marginal, kl, marginals and predict (random weighted sums) with respect
  to the pseudo-observation mean and var and every kernel hyper-parameter, against autograd
  through the reference; exactly 0 for the mean and var of points that are not included;
- the posterior with no included point is the prior;
- samples (``sample`` and ``sample_at``): mean and covariance within 5 standard errors with
  :data:`NUM_DRAWS` draws, where the same statistics reject a slightly wrong posterior
  (pseudo-observation variances doubled) by more than 20 standard errors, so that the check
  cannot pass by accident; seeded; reparameterised: draws are differentiable functions of
  mean, var and the hyper-parameters (gradcheck), d(draw)/d(mean) equals d(posterior
  mean)/d(mean) exactly, and the Monte Carlo gradient of E[sum w1 f + w2 (f - c)^2] is within
  6 standard errors (estimated from 16 independent groups of draws) of the exact gradient of
  sum w1 mean_q + w2 var_q, and within 10% of it in norm;
- the rows of a batch, drawn inside ``gpvae.rng.batch_rows`` (as a process of a distributed
  fit draws its part of the batch), are exactly those rows of the whole batch's draws.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import pytest
import torch
from _reference import (
    DTYPE,
    Reference,
    close,
    dense_all,
    has_state_space,
    make_kernels,
    make_problem,
    moment_errors,
    new_points,
    new_stacked,
    spread,
    stacked,
)
from torch import Tensor, nn
from torch.func import functional_call

from gpvae.gp import GPPrior
from gpvae.gp.base import GPPosterior
from gpvae.gp.dense import DenseGPPosterior
from gpvae.gp.markov import MarkovGPPosterior
from gpvae.gp.spacetime import SpaceTimeGPPosterior, spacetime_supported
from gpvae.kernels import Kernel, SpaceTime
from gpvae.rng import batch_rows

# ----------------------------------------------------------------------------------------
# problems


@dataclass(frozen=True)
class Problem:
    """A conditioning problem, built afresh (new kernel modules) by :meth:`build`.

    Attributes:
        name: the test id.
        kernels: a key of ``_reference.KERNEL_SETS``.
        d: index dimension.
        B, N: series and points per series (padding when N > 4).
        seed: of the pseudo-observations and new points.
        none_included: every var is +inf (the posterior is the prior).
    """

    name: str
    kernels: str
    d: int = 1
    B: int = 3
    N: int = 14
    seed: int = 0
    none_included: bool = False
    grid: int = 0

    def build(self) -> Instance:
        kernels = make_kernels(self.kernels)
        L = len(kernels)
        x, mean, var, valid = make_problem(
            L, self.seed, self.B, self.N, self.d, garbage=math.nan, padding=self.N > 4
        )
        if self.grid:
            x = _on_grid(x, valid, self.grid, self.seed)
        if self.N > 4:
            var[0, 4] = math.inf  # a point where no channel is included
            var[0, :, L - 1] = math.inf  # a channel with no included point in series 0
        if self.none_included:
            var = torch.full_like(var, math.inf)
        mean = torch.where(torch.isfinite(var) & valid[..., None], mean, math.nan)
        x_new = new_points(x, valid, seed=self.seed + 100)
        return Instance(self, kernels, x, mean, var, valid, x_new)


@dataclass
class Instance:
    """A built problem: kernels (L of them), x (B, N, d), mean and var (B, N, L), valid
    (B, N), x_new (B, M, d)."""

    problem: Problem
    kernels: list[Kernel]
    x: Tensor
    mean: Tensor
    var: Tensor
    valid: Tensor
    x_new: Tensor

    @property
    def d(self) -> int:
        return int(self.x.shape[-1])

    @property
    def params(self) -> list[Tensor]:
        """Every kernel hyper-parameter (raw), channel by channel."""
        return [q for k in self.kernels for q in k.parameters()]

    @property
    def included(self) -> Tensor:
        """(B, N, L) bool."""
        return torch.isfinite(self.var) & self.valid[..., None]


def _on_grid(x: Tensor, valid: Tensor, num_sites: int, seed: int) -> Tensor:
    """Move the valid points of (B, N, d) onto ``num_sites`` sites (the first d - 1 columns,
    shared by the series) x times of each series (the last column, 0.5 + Exp gaps), site
    fastest, as spatio-temporal data come; point 3 repeats point 1 (a duplicated point)."""
    g = torch.Generator().manual_seed(seed + 50)
    B, N, d = x.shape
    sites = 5.0 * torch.rand(num_sites, d - 1, generator=g, dtype=x.dtype)
    out = x.clone()
    for b in range(B):
        n = int(valid[b].sum())
        steps = torch.cumsum(0.5 + torch.rand(N, generator=g, dtype=x.dtype), 0)[: -(-n // 2)]
        k = torch.arange(n)
        pts = torch.cat([sites[k % num_sites], steps[k // num_sites, None]], dim=-1)
        if n > 3:
            pts[3] = pts[1]
        out[b, valid[b]] = pts
    return out


#: Problems for values and gradients.
PROBLEMS = [
    Problem("matern-1d", "matern-1d", seed=0),
    Problem("seasonal", "seasonal", seed=8),
    Problem("rbf-1d", "rbf-1d", seed=2),
    Problem("ard-2d", "ard-2d", d=2, N=10, seed=3),
    Problem("single-point", "mixed", B=2, N=1, seed=4),
    Problem("spacetime-grid", "spacetime", d=3, N=16, seed=8, grid=4),
    Problem("spacetime-scattered", "spacetime", d=3, N=9, seed=9),
    Problem("none-included", "pair", N=8, seed=5, none_included=True),
]

#: Smaller problems for the Monte Carlo checks of samples.
SAMPLE_PROBLEMS = [
    Problem("matern-1d-small", "pair", B=2, N=7, seed=6),
    Problem("seasonal-small", "seasonal-small", B=2, N=7, seed=9),
    Problem("ard-2d-small", "ard-2d", d=2, B=2, N=8, seed=7),
    Problem("spacetime-small", "spacetime", d=3, B=2, N=9, seed=10, grid=3),
]


# ----------------------------------------------------------------------------------------
# backends


Factory = Callable[[list[Kernel], Tensor, Tensor, Tensor, Tensor], GPPosterior]


@dataclass(frozen=True)
class BackendCase:
    """One GP backend implementation under the contract.

    Attributes:
        name: the test id.
        factory: ``(kernels, x, mean, var, valid) -> GPPosterior``.
        supports: which problems it takes (e.g. state-space kernels on 1-D inputs only).
        rtol: float64 tolerance against the reference, for values and gradients (relative,
            with an absolute part of rtol / 100 times the larger of the tensor's largest
            entry and 1; see ``_reference.close``).
        prior_backend: the name under which ``GPPrior(..., backend=name).condition`` gives
            this implementation, or None.
        prior_kwargs: further ``GPPrior`` arguments for that problem (e.g. inducing sites).
        per_row_draws: a process's rows of a batch draw those rows of the whole batch's
            sample (distributed training); False for the space x time backends, whose draws
            live on the batch's grid of distinct times (spatial fits run in one process).
    """

    name: str
    factory: Factory
    supports: Callable[[Instance], bool]
    rtol: float
    prior_backend: str | None = None
    prior_kwargs: Callable[[Instance], dict[str, object]] | None = None
    per_row_draws: bool = True


def _any_problem(_: Instance) -> bool:
    return True


def _state_space_1d(p: Instance) -> bool:
    return p.d == 1 and has_state_space(p.kernels)


def _spacetime(p: Instance) -> bool:
    """Kernels the spacetime backends take, with a well-conditioned spatial covariance of the
    sites (these backends factorise it directly, not ``I + W^1/2 K W^1/2``: a very smooth
    kernel on nearly coinciding sites, as ``rbf-1d``, is a case for the dense backend)."""
    if not spacetime_supported(p.kernels, p.d):
        return False
    for k in p.kernels:
        spatial = k.spatial if isinstance(k, SpaceTime) else k
        ds = p.d - 1 if isinstance(k, SpaceTime) else p.d
        sites = torch.unique(p.x[p.valid][:, :ds], dim=0)
        with torch.no_grad():
            if float(torch.linalg.cond(spatial(sites))) > 1e8:
                return False
    return True


def _sites_and_more(kernels: list[Kernel], x: Tensor, valid: Tensor) -> Tensor:
    """Inducing sites holding every site of the problem and three more: (M, d_s)."""
    ds = x.shape[-1] - 1 if isinstance(kernels[0], SpaceTime) else x.shape[-1]
    sites = torch.unique(x[valid][:, :ds], dim=0)
    g = torch.Generator().manual_seed(11)
    return torch.cat([7.0 * torch.rand(3, ds, generator=g, dtype=x.dtype) - 1.0, sites])


def _soa_layout(post: MarkovGPPosterior) -> MarkovGPPosterior:
    """``post`` with its fused pass on struct-of-arrays buffers whatever the number of chains
    (the default takes them from ``settings.FUSED_SOA_MIN_CHAINS`` chains)."""
    post._fused_layout = "soa"
    return post


BACKENDS = [
    BackendCase("dense", DenseGPPosterior, _any_problem, rtol=1e-9, prior_backend="dense"),
    BackendCase(
        "markov-sequential",
        lambda k, x, m, v, valid: MarkovGPPosterior(k, x, m, v, valid, method="sequential"),
        _state_space_1d,
        rtol=1e-9,
        prior_backend="markov",  # on the CPU, method "auto" runs the compiled loops (fused)
    ),
    BackendCase(
        "markov-parallel",
        lambda k, x, m, v, valid: MarkovGPPosterior(k, x, m, v, valid, method="parallel"),
        _state_space_1d,
        rtol=1e-9,
    ),
    BackendCase(
        "markov-compiled",
        lambda k, x, m, v, valid: MarkovGPPosterior(k, x, m, v, valid, method="compiled"),
        _state_space_1d,
        rtol=1e-9,
    ),
    BackendCase(
        "markov-fused",
        lambda k, x, m, v, valid: MarkovGPPosterior(k, x, m, v, valid, method="fused"),
        _state_space_1d,
        rtol=1e-9,
    ),
    BackendCase(  # the fused pass on struct-of-arrays buffers (state dimensions 1-3)
        "markov-fused-soa",
        lambda k, x, m, v, valid: _soa_layout(MarkovGPPosterior(k, x, m, v, valid, method="fused")),
        _state_space_1d,
        rtol=1e-9,
    ),
    BackendCase(
        "spacetime",
        SpaceTimeGPPosterior,
        _spacetime,
        rtol=1e-9,
        prior_backend="spacetime",
        per_row_draws=False,
    ),
    # inducing sites holding every site: the sparse bound is then exact
    BackendCase(
        "sparse-at-sites",
        lambda k, x, m, v, valid: SpaceTimeGPPosterior(
            k, x, m, v, valid, inducing=_sites_and_more(k, x, valid)
        ),
        lambda p: p.d >= 2 and _spacetime(p),
        rtol=1e-8,
        prior_backend="sparse",
        prior_kwargs=lambda p: {"inducing": _sites_and_more(p.kernels, p.x, p.valid)},
        per_row_draws=False,
    ),
]


def _pairs(problems: list[Problem]) -> list[object]:
    """pytest parameters (backend, problem) for every supported pair."""
    return [
        pytest.param(case, problem, id=f"{case.name}-{problem.name}")
        for case in BACKENDS
        for problem in problems
        if case.supports(problem.build())
    ]


CASES = _pairs(PROBLEMS)
SAMPLE_CASES = _pairs(SAMPLE_PROBLEMS)
NONE_INCLUDED = PROBLEMS[-1]


# ----------------------------------------------------------------------------------------
# outputs of the reference and of a backend, by name


def _outputs_of_reference(ref: Reference, valid: Tensor) -> dict[str, Tensor]:
    """(B, L) ``log_marginal`` (and ``kl`` when computed); (B, N, L) ``mean`` and ``var``
    (0 on padding); (B, M, L) ``new_mean`` and ``new_var``."""
    out = {
        "log_marginal": stacked(ref, "log_marginal"),
        "mean": spread(ref, "mean", valid),
        "var": spread(ref, "var", valid),
        "new_mean": new_stacked(ref, "new_mean"),
        "new_var": new_stacked(ref, "new_var"),
    }
    if "kl" in ref[0][0]:
        out["kl"] = stacked(ref, "kl")
    return out


def _outputs_of_backend(post: GPPosterior, x_new: Tensor) -> dict[str, Tensor]:
    """As :func:`_outputs_of_reference`, with 0 on padding (placeholders are per backend)."""
    mean, var = post.marginals()
    pad = ~post.valid[..., None]
    new_mean, new_var = post.predict(x_new)
    return {
        "log_marginal": post.log_marginal,
        "kl": post.kl(),
        "mean": torch.where(pad, 0.0, mean),
        "var": torch.where(pad, 0.0, var),
        "new_mean": new_mean,
        "new_var": new_var,
    }


@cache
def _reference(problem: Problem) -> dict[str, Tensor]:
    p = problem.build()
    with torch.no_grad():
        return _outputs_of_reference(
            dense_all(p.kernels, p.x, p.mean, p.var, p.valid, p.x_new), p.valid
        )


# ----------------------------------------------------------------------------------------
# values


def _check_values(
    post: GPPosterior, problem: Problem, p: Instance, rtol: float, out: dict[str, Tensor]
) -> None:
    """The outputs ``out`` of ``post`` against the reference, on the problem ``p`` built from
    ``problem``."""
    B, N, L = p.mean.shape
    M = p.x_new.shape[1]
    got = {k: v.detach() for k, v in out.items()}
    assert got["log_marginal"].shape == got["kl"].shape == (B, L)
    assert got["mean"].shape == got["var"].shape == (B, N, L)
    assert got["new_mean"].shape == got["new_var"].shape == (B, M, L)
    assert all(bool(torch.isfinite(t).all()) for t in post.marginals())  # padding too
    for key, want in _reference(problem).items():
        close(got[key], want, rtol, key)
    if p.d == 1:  # new points may come as (B, M) for d = 1
        for a, b in zip(post.predict(p.x_new[..., 0]), post.predict(p.x_new)):
            assert torch.equal(a, b)


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.name) for c in BACKENDS if c.prior_backend is not None]
)
def test_gpprior_condition_gives_this_backend(case: BackendCase) -> None:
    """``GPPrior(kernels, L, backend=case.prior_backend).condition`` is this backend (on the
    first problem it supports)."""
    problem = next(pr for pr in PROBLEMS if case.supports(pr.build()))
    p = problem.build()
    kwargs = case.prior_kwargs(p) if case.prior_kwargs is not None else {}
    prior = GPPrior(p.kernels, len(p.kernels), backend=str(case.prior_backend), **kwargs)
    if case.prior_kwargs is not None:
        prior = prior.to(torch.float64)
    post = prior.condition(p.x, p.mean, p.var, p.valid)
    assert type(post) is type(case.factory(p.kernels, p.x, p.mean, p.var, p.valid))
    _check_values(post, problem, p, case.rtol, _outputs_of_backend(post, p.x_new))


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.name) for c in BACKENDS if c.supports(NONE_INCLUDED.build())]
)
def test_no_included_point_gives_the_prior(case: BackendCase) -> None:
    """Against the prior itself, not the reference's conditional."""
    p = NONE_INCLUDED.build()
    assert not bool(p.included.any())
    post = case.factory(p.kernels, p.x, p.mean, p.var, p.valid)
    with torch.no_grad():
        zeros = torch.zeros_like(post.log_marginal)
        close(post.log_marginal, zeros, case.rtol, "log_marginal")
        close(post.kl(), zeros, case.rtol, "kl")
        v = p.valid
        mean, var = post.marginals()
        prior_var = torch.stack([k(p.x, diag=True) for k in p.kernels], dim=-1)  # (B, N, L)
        close(mean[v], torch.zeros_like(mean[v]), case.rtol, "marginal mean")
        close(var[v], prior_var[v], case.rtol, "marginal var")
        new_mean, new_var = post.predict(p.x_new)
        new_prior_var = torch.stack([k(p.x_new, diag=True) for k in p.kernels], dim=-1)
        close(new_mean, torch.zeros_like(new_mean), case.rtol, "predict mean")
        close(new_var, new_prior_var, case.rtol, "predict var")
        # 2,500 draws: 5 standard errors are 0.1 prior standard deviations for the mean
        f = post.sample(2_500, torch.Generator().manual_seed(0))
        for b in range(p.x.shape[0]):
            xv = p.x[b, v[b]]
            for ell, k in enumerate(p.kernels):
                cov = k(xv)
                err_mean, err_cov = moment_errors(f[:, b, v[b], ell], cov.new_zeros(len(cov)), cov)
                assert float(max(err_mean.max(), err_cov.max())) <= SIGMAS, (b, ell)


# ----------------------------------------------------------------------------------------
# gradients (and values)

#: Scalars built from a posterior's outputs by fixed random weights (padding excluded).
QUANTITIES: dict[str, tuple[str, ...]] = {
    "log_marginal": ("log_marginal",),
    "kl": ("kl",),
    "marginals": ("mean", "var"),
    "predict": ("new_mean", "new_var"),
}


def _weights(problem: Problem, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(problem.seed + 1000)
    return {k: torch.randn(outputs[k].shape, generator=g, dtype=DTYPE) for k in sorted(outputs)}


def _scalar(outputs: dict[str, Tensor], weights: dict[str, Tensor], quantity: str) -> Tensor:
    return torch.stack([(weights[k] * outputs[k]).sum() for k in QUANTITIES[quantity]]).sum()


def _grads(value: Tensor, inputs: list[Tensor]) -> list[Tensor]:
    """d value / d inputs, zeros for inputs it does not depend on."""
    if not value.requires_grad:  # e.g. the reference's log-marginal with nothing included
        return [torch.zeros_like(t) for t in inputs]
    return list(
        torch.autograd.grad(
            value, inputs, retain_graph=True, allow_unused=True, materialize_grads=True
        )
    )


@cache
def _reference_grads(problem: Problem) -> dict[str, list[Tensor]]:
    """Per quantity: gradients with respect to (mean, var, *kernel parameters)."""
    p = problem.build()
    mean = p.mean.clone().requires_grad_()
    var = p.var.clone().requires_grad_()
    out = _outputs_of_reference(dense_all(p.kernels, p.x, mean, var, p.valid, p.x_new), p.valid)
    weights = _weights(problem, out)
    return {q: _grads(_scalar(out, weights, q), [mean, var, *p.params]) for q in QUANTITIES}


@pytest.mark.parametrize(("case", "problem"), CASES)
def test_values_and_gradients_match_reference(case: BackendCase, problem: Problem) -> None:
    p = problem.build()
    mean = p.mean.clone().requires_grad_()
    var = p.var.clone().requires_grad_()
    post = case.factory(p.kernels, p.x, mean, var, p.valid)
    out = _outputs_of_backend(post, p.x_new)
    _check_values(post, problem, p, case.rtol, out)
    weights = _weights(problem, out)
    names = ["mean", "var", *[f"kernel parameter {i}" for i in range(len(p.params))]]
    for quantity, want in _reference_grads(problem).items():
        got = _grads(_scalar(out, weights, quantity), [mean, var, *p.params])
        for name, g, w in zip(names, got, want, strict=True):
            what = f"d {quantity} / d {name}"
            assert bool(torch.isfinite(g).all()), what
            close(g, w, case.rtol, what)
        for name, g in zip(names[:2], got[:2]):  # points that are not included take no part
            assert bool((g[~p.included] == 0).all()), f"d {quantity} / d {name} off included"


# ----------------------------------------------------------------------------------------
# samples

#: Draws for the moment checks: 5 standard errors are then 0.05 posterior standard
#: deviations for a mean, and 0.05-0.07 sqrt(C_ii C_jj) for a covariance entry.
NUM_DRAWS = 10_000
SIGMAS = 5.0

#: Groups and draws per group for the Monte Carlo gradient check, and its bound in standard
#: errors estimated from the groups (Student t with 15 degrees of freedom: a correct
#: gradient entry is outside with probability 2e-5).
GROUPS, GROUP_DRAWS = 16, 125
GRAD_SIGMAS = 6.0


def _draws(post: GPPosterior, x_new: Tensor | None, num: int, gen: torch.Generator) -> Tensor:
    """(S, B, N or M, L) draws at x (``x_new`` None) or at ``x_new``."""
    return post.sample(num, gen) if x_new is None else post.sample_at(x_new, num, gen)


def _moments(ref: Reference, where: str, b: int, ell: int) -> tuple[Tensor, Tensor]:
    r = ref[b][ell]
    return (r["mean"], r["cov"]) if where == "x" else (r["new_mean"], r["new_cov"])


WHERE = pytest.mark.parametrize("where", ["x", "x_new"])


@WHERE
@pytest.mark.parametrize(("case", "problem"), SAMPLE_CASES)
def test_sample_moments_match_reference(case: BackendCase, problem: Problem, where: str) -> None:
    p = problem.build()
    x_new = None if where == "x" else p.x_new
    post = case.factory(p.kernels, p.x, p.mean, p.var, p.valid)
    with torch.no_grad():
        f = _draws(post, x_new, NUM_DRAWS, torch.Generator().manual_seed(problem.seed))
        ref = dense_all(p.kernels, p.x, p.mean, p.var, p.valid, p.x_new, with_kl=False)
        wrong = dense_all(p.kernels, p.x, p.mean, 2 * p.var, p.valid, p.x_new, with_kl=False)
    B, N, L = p.mean.shape
    M = N if x_new is None else p.x_new.shape[1]
    assert f.shape == (NUM_DRAWS, B, M, L)
    assert bool(torch.isfinite(f).all())  # placeholders on padding too
    worst_wrong = 0.0
    for b in range(B):
        keep = p.valid[b] if x_new is None else slice(None)
        for ell in range(L):
            draws = f[:, b, keep, ell]
            err_mean, err_cov = moment_errors(draws, *_moments(ref, where, b, ell))
            assert float(err_mean.max()) <= SIGMAS, ("mean", b, ell, float(err_mean.max()))
            assert float(err_cov.max()) <= SIGMAS, ("cov", b, ell, float(err_cov.max()))
            bad_mean, bad_cov = moment_errors(draws, *_moments(wrong, where, b, ell))
            worst_wrong = max(worst_wrong, float(bad_mean.max()), float(bad_cov.max()))
    assert worst_wrong > 4 * SIGMAS, f"the check has no power: {worst_wrong:.1f} se"


@pytest.mark.parametrize(("case", "problem"), SAMPLE_CASES)
def test_samples_are_seeded(case: BackendCase, problem: Problem) -> None:
    p = problem.build()
    post = case.factory(p.kernels, p.x, p.mean, p.var, p.valid)
    for x_new in (None, p.x_new):
        state = torch.random.get_rng_state()
        a = _draws(post, x_new, 5, torch.Generator().manual_seed(3))
        b = _draws(post, x_new, 5, torch.Generator().manual_seed(3))
        c = _draws(post, x_new, 5, torch.Generator().manual_seed(4))
        assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
        assert torch.equal(a, b)
        keep = p.valid if x_new is None else torch.ones(a.shape[1:3], dtype=torch.bool)
        assert not bool((a[0][keep] == a[1][keep]).any())  # independent draws
        assert not bool((a[:, keep] == c[:, keep]).any())  # another seed, other draws


@pytest.mark.parametrize(("case", "problem"), SAMPLE_CASES)
def test_rows_of_a_batch_draw_the_rows_of_the_whole_batch(
    case: BackendCase, problem: Problem
) -> None:
    """Distributed training: a process holding some series of a batch (padded to the batch's
    length) draws, inside ``gpvae.rng.batch_rows``, exactly those rows of the whole batch's
    ``sample``, and leaves its generator where the whole batch's draw leaves it (so every
    process sees one process's draws). Training noise goes through
    ``gpvae.rng.batch_normal``."""
    if not case.per_row_draws:
        pytest.skip("draws on the batch's grid of distinct times: spatial fits run in one process")
    p = problem.build()
    B = p.x.shape[0]
    gen = torch.Generator().manual_seed(5)
    whole = case.factory(p.kernels, p.x, p.mean, p.var, p.valid).sample(3, gen)
    after = gen.get_state()
    for rows in ([B - 1], list(range(B))[::-1]):
        part = case.factory(p.kernels, p.x[rows], p.mean[rows], p.var[rows], p.valid[rows])
        gen = torch.Generator().manual_seed(5)
        with batch_rows(rows, B):
            got = part.sample(3, gen)
        assert torch.equal(gen.get_state(), after)
        keep = p.valid[rows]
        close(got[:, keep], whole[:, rows][:, keep], case.rtol, "rows")


class _Draws(nn.Module):
    """Draws (fixed seed) as a function of mean, var and the kernels' parameters."""

    def __init__(self, case: BackendCase, p: Instance, x_new: Tensor | None) -> None:
        super().__init__()
        self.case, self.p, self.x_new = case, p, x_new
        self.kernels = nn.ModuleList(p.kernels)

    def forward(self, mean: Tensor, var: Tensor) -> Tensor:
        kernels = [k for k in self.kernels if isinstance(k, Kernel)]
        post = self.case.factory(kernels, self.p.x, mean, var, self.p.valid)
        return _draws(post, self.x_new, 2, torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("case", "problem"), SAMPLE_CASES)
def test_draws_are_differentiable(case: BackendCase, problem: Problem) -> None:
    """For a fixed seed, draws at x are smooth functions of mean, var and the kernel
    hyper-parameters whose autograd gradients match finite differences (gradcheck in fast
    mode: along a random direction)."""
    p = problem.build()
    module = _Draws(case, p, None)
    names = [n for n, _ in module.named_parameters()]

    def draws(mean: Tensor, var: Tensor, *params: Tensor) -> Tensor:
        return functional_call(module, dict(zip(names, params, strict=True)), (mean, var))

    inputs = [p.mean, p.var, *(q.detach() for q in p.params)]
    inputs = [t.clone().requires_grad_() for t in inputs]
    assert torch.autograd.gradcheck(draws, inputs, fast_mode=True)


@WHERE
@pytest.mark.parametrize(("case", "problem"), SAMPLE_CASES)
def test_draws_move_with_the_mean_as_the_posterior_mean(
    case: BackendCase, problem: Problem, where: str
) -> None:
    """Each draw is the posterior mean plus a term that does not depend on the
    pseudo-observation mean, so d(draw)/d(mean) is d(posterior mean)/d(mean) exactly, draw
    by draw."""
    p = problem.build()
    x_new = None if where == "x" else p.x_new
    mean = p.mean.clone().requires_grad_()
    post = case.factory(p.kernels, p.x, mean, p.var, p.valid)
    f = _draws(post, x_new, 3, torch.Generator().manual_seed(problem.seed))  # (3, B, M, L)
    keep = p.valid if x_new is None else torch.ones(f.shape[1:3], dtype=torch.bool)
    g = torch.Generator().manual_seed(problem.seed + 3)
    w = torch.randn(f.shape[1:], generator=g, dtype=DTYPE) * keep[..., None]
    want = _reference_gradient(p, w, None, x_new)[: p.mean.numel()].view_as(mean)
    for s in range(3):
        (got,) = torch.autograd.grad((w * f[s]).sum(), [mean], retain_graph=True)
        close(got, want, case.rtol, f"draw {s}: d draw / d mean")


@WHERE
@pytest.mark.parametrize(("case", "problem"), SAMPLE_CASES)
def test_samples_are_reparameterised(case: BackendCase, problem: Problem, where: str) -> None:
    """Gradients of draws against the reference's exact gradients.

    The problem is replicated GROUPS times as extra channels (channel g L + l is a copy of
    channel l, with its own kernel module, mean and var): channels are independent, so one
    call gives GROUPS independent groups of draws, and one backward pass gives each group's
    gradient with respect to its own inputs. Their spread gives the standard errors.
    """
    p = problem.build()
    x_new = None if where == "x" else p.x_new
    B, N, L = p.mean.shape
    kernels = [copy.deepcopy(k) for _ in range(GROUPS) for k in p.kernels]
    params = [q for k in kernels for q in k.parameters()]
    mean = p.mean.repeat(1, 1, GROUPS).requires_grad_()  # (B, N, GROUPS L)
    var = p.var.repeat(1, 1, GROUPS).requires_grad_()
    post = case.factory(kernels, p.x, mean, var, p.valid)
    f = _draws(post, x_new, GROUP_DRAWS, torch.Generator().manual_seed(problem.seed + 1))
    M = f.shape[2]
    f = f.reshape(GROUP_DRAWS, B, M, GROUPS, L)
    keep = (p.valid if x_new is None else torch.ones(B, M, dtype=torch.bool))[..., None, None]
    g = torch.Generator().manual_seed(problem.seed + 2)
    w1, w2 = (torch.rand(B, M, 1, L, generator=g, dtype=DTYPE) * keep for _ in range(2))

    def per_group(value: Tensor) -> Tensor:
        """(GROUPS, inputs of one copy): d value / d(the copy's mean, var, parameters)."""
        grads = _grads(value, [mean, var, *params])
        g_mean, g_var = (t.reshape(B, N, GROUPS, L).movedim(2, 0) for t in grads[:2])
        size = len(p.params)
        return torch.stack(
            [
                torch.cat(
                    [g_mean[i].flatten(), g_var[i].flatten()]
                    + [t.flatten() for t in grads[2 + i * size : 2 + (i + 1) * size]]
                )
                for i in range(GROUPS)
            ]
        )

    # Monte Carlo gradient of E[sum w1 f + w2 (f - c)^2] = sum w1 mean_q + w2 var_q (c: the
    # reference's posterior mean, a constant that takes the mean's noise out of the
    # squares), averaged over the groups: within GRAD_SIGMAS standard errors of the exact one.
    c = _reference_mean(p, x_new)[:, :, None, :]  # (B, M, 1, L)
    both = per_group(((w1 * f).sum() + (w2 * (f - c) ** 2).sum()) / GROUP_DRAWS)
    assert bool(torch.isfinite(both).all())
    assert bool((both[:, 2 * p.mean.numel() :] != 0).all())  # every parameter gets a gradient
    estimate = both.mean(0)
    se = both.std(0) / math.sqrt(GROUPS)
    want = _reference_gradient(p, w1[..., 0, :], w2[..., 0, :], x_new)
    err = (estimate - want).abs() / (se + 1e-12 * want.abs().max())
    assert float(err.max()) <= GRAD_SIGMAS, f"{float(err.max()):.1f} se"
    # precise enough that a gradient missing a tenth of its norm would fail
    rel = float((estimate - want).norm() / want.norm())
    assert rel < 0.1, rel


def _reference_mean(p: Instance, x_new: Tensor | None) -> Tensor:
    """(B, N or M, L) the reference's posterior mean at x (0 on padding) or at x_new."""
    with torch.no_grad():
        ref = dense_all(p.kernels, p.x, p.mean, p.var, p.valid, p.x_new, with_kl=False)
        out = _outputs_of_reference(ref, p.valid)
    return out["mean"] if x_new is None else out["new_mean"]


def _reference_gradient(p: Instance, w1: Tensor, w2: Tensor | None, x_new: Tensor | None) -> Tensor:
    """Gradient of sum w1 mean_q + w2 var_q of the reference posterior q at x (valid points)
    or at x_new, with respect to (mean, var, *kernel parameters), flattened and joined."""
    m = p.mean.clone().requires_grad_()
    v = p.var.clone().requires_grad_()
    ref = dense_all(p.kernels, p.x, m, v, p.valid, p.x_new, with_kl=False)
    out = _outputs_of_reference(ref, p.valid)
    mu, s2 = (out["mean"], out["var"]) if x_new is None else (out["new_mean"], out["new_var"])
    value = (w1 * mu).sum() + (0.0 if w2 is None else (w2 * s2).sum())
    return torch.cat([t.flatten() for t in _grads(value, [m, v, *p.params])])
