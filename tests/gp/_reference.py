"""Shared helpers of the GP backend tests (a plain module, not a test module).

- kernel sets and problem generators: irregular sorted times with repeated points, padding
  (leading and trailing), excluded points (``var = +inf``), several channels with different
  kernels, 2-D index points;
- the obviously-correct dense reference: for one series and one channel it keeps only the
  included points (valid and finite var) and applies the textbook Gaussian formulas in
  float64 with ``torch.linalg.solve`` and ``torch.distributions`` (log-marginal as
  ``MultivariateNormal.log_prob``, KL as ``kl_divergence`` of the posterior and prior MVNs);
  kernel matrices come from ``Kernel.forward`` (tested against the closed forms in
  tests/kernels), never from a state-space form or a backend;
- Monte Carlo checks of sample moments with explicit standard errors.

Everything is differentiable, so gradients of the reference (autograd through the textbook
formulas) are the reference gradients.

Shapes: B series, N points, d index dimension, L channels, M new points, S samples.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal, kl_divergence

from gpvae.kernels import RBF, HarmonicPeriodic, Kernel, Matern12, Matern32, Matern52, SpaceTime

__all__ = [
    "DTYPE",
    "KERNEL_SETS",
    "Reference",
    "check_moments",
    "close",
    "dense_all",
    "has_state_space",
    "make_kernels",
    "make_problem",
    "moment_errors",
    "new_points",
    "new_stacked",
    "reference_one",
    "spread",
    "stacked",
]

DTYPE = torch.float64

KernelFactory = Callable[[], list[Kernel]]

#: Channel kernels by name. The 1-D state-space sets (Matern and sums of Matern kernels) fit
#: every backend; ``rbf-1d`` and ``ard-2d`` have no state-space form (dense and friends).
KERNEL_SETS: dict[str, KernelFactory] = {
    "matern12": lambda: [Matern12(lengthscale=0.7, variance=1.3)],
    "matern32": lambda: [Matern32(lengthscale=0.9, variance=0.8)],
    "matern52": lambda: [Matern52(lengthscale=1.1, variance=1.5)],
    "sum12+32": lambda: [Matern12(lengthscale=2.0, variance=0.5) + Matern32(lengthscale=0.5)],
    # state dimensions 2, 1, 3, 3, 2 (two channels share m = 2, two m = 3)
    "mixed": lambda: [
        Matern32(lengthscale=0.5, variance=1.0),
        Matern12(lengthscale=1.0, variance=2.0),
        Matern52(lengthscale=0.8, variance=0.7),
        Matern32(lengthscale=2.0, variance=0.5),
        Matern12(lengthscale=0.3, variance=0.4) + Matern32(lengthscale=1.5, variance=1.2),
    ],
    # every Matern order alone and in sums, state dimensions 1, 2, 3, 3, 5, 5
    "matern-1d": lambda: [
        Matern12(lengthscale=1.0, variance=2.0),
        Matern32(lengthscale=0.5, variance=1.0),
        Matern52(lengthscale=0.8, variance=0.7),
        Matern12(lengthscale=0.3, variance=0.4) + Matern32(lengthscale=1.5, variance=1.2),
        Matern52(lengthscale=1.2, variance=0.6) + Matern32(lengthscale=0.4, variance=0.3),
        Matern12(lengthscale=0.6, variance=0.5)
        + Matern52(lengthscale=2.0, variance=1.0)
        + Matern12(lengthscale=3.0, variance=0.2),
    ],
    # a Matern52 and a sum of two Matern kernels, both with m = 3 (small, for sampling)
    "pair": lambda: [
        Matern52(lengthscale=0.8, variance=0.7),
        Matern12(lengthscale=0.3, variance=0.4) + Matern32(lengthscale=1.5, variance=1.2),
    ],
    # periodic kernels in state-space form (sums of resonators, no process noise) in sums
    # with Matern kernels, and a quasi-periodic product with a Matern kernel (Kronecker
    # state). A periodic kernel alone has a finite-rank prior covariance, which the
    # reference's KL cannot take: tests/kernels/test_periodic.py checks it alone.
    "seasonal": lambda: [
        Matern12(lengthscale=0.5, variance=0.3)
        + HarmonicPeriodic(lengthscale=0.8, variance=1.2, period=2.5, num_harmonics=4),
        HarmonicPeriodic(lengthscale=1.1, variance=0.9, period=1.7, num_harmonics=3)
        * Matern32(lengthscale=3.0),
        Matern32(lengthscale=0.7, variance=0.5)
        + HarmonicPeriodic(lengthscale=0.6, variance=0.8, period=3.1, num_harmonics=5),
    ],
    # the same kinds with few harmonics (state dimensions 6 and 5), for the sampling checks
    "seasonal-small": lambda: [
        Matern12(lengthscale=0.5, variance=0.3)
        + HarmonicPeriodic(lengthscale=1.0, variance=1.2, period=2.5, num_harmonics=2),
        HarmonicPeriodic(lengthscale=1.1, variance=0.9, period=1.7, num_harmonics=2)
        * Matern12(lengthscale=3.0),
    ],
    "rbf-1d": lambda: [
        RBF(lengthscale=1.2, variance=1.3),
        Matern32(lengthscale=1.5, variance=0.8),
        RBF(lengthscale=2.0, variance=0.7) + Matern12(lengthscale=0.5, variance=0.3),
    ],
    # separable space x time kernels on (s1, s2, t): ARD and shared spatial lengthscales,
    # temporal state dimensions 1, 4 (a sum) and 2
    "spacetime": lambda: [
        SpaceTime(Matern32(lengthscale=[1.5, 2.5], variance=1.1), Matern12(lengthscale=1.3)),
        SpaceTime(
            RBF(lengthscale=2.0, variance=0.8),
            Matern32(lengthscale=2.0, variance=0.9) + Matern12(lengthscale=0.6, variance=0.3),
        ),
        SpaceTime(Matern12(lengthscale=[3.0, 1.0], variance=0.7), Matern32(lengthscale=0.8)),
    ],
    "ard-2d": lambda: [
        RBF(lengthscale=[1.5, 2.5], variance=1.1),
        Matern52(lengthscale=2.0, variance=0.9),
        Matern12(lengthscale=[1.0, 3.0], variance=0.6) + RBF(lengthscale=1.8, variance=0.4),
    ],
}


def make_kernels(name: str) -> list[Kernel]:
    """The channel kernels of ``KERNEL_SETS[name]``, in float64."""
    return [k.to(DTYPE) for k in KERNEL_SETS[name]()]


def has_state_space(kernels: list[Kernel]) -> bool:
    """Every channel kernel has a state-space form."""
    return all(k.has_state_space for k in kernels)


# ----------------------------------------------------------------------------------------
# problems


def make_problem(
    num_channels: int,
    seed: int = 0,
    B: int = 3,
    N: int = 14,
    d: int = 1,
    garbage: float = 0.0,
    padding: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pseudo-observations with holes: excluded points, padding, repeated index points.

    For d = 1 the index points are irregular and sorted along N (gaps 0.1 + Exp(2), a fifth
    of them 0: repeated points); for d > 1 they are uniform on [0, 6]^d with one repeated
    point per series. About a quarter of the (point, channel) pairs are excluded (var =
    +inf). With ``padding``, series 1 has 4 trailing padded points and series 2 (when
    B > 2) 2 leading and 1 trailing. ``garbage`` fills x and mean on padding and mean on
    excluded points (NaN checks that nothing reads them); var on padding is 7.0 (finite,
    but not included).

    Returns:
        x (B, N, d), mean (B, N, L), var (B, N, L), valid (B, N).
    """
    g = torch.Generator().manual_seed(seed)
    if d == 1:
        gaps = 0.1 + torch.empty(B, N, dtype=DTYPE).exponential_(2.0, generator=g)
        gaps = torch.where(torch.rand(B, N, generator=g, dtype=DTYPE) < 0.2, 0.0, gaps)
        x = torch.cumsum(gaps, dim=1) - 2.0 * torch.rand(B, 1, generator=g, dtype=DTYPE)
        x = x[..., None]
    else:
        x = 6.0 * torch.rand(B, N, d, generator=g, dtype=DTYPE)
        if N > 3:
            x[:, 3] = x[:, 1]  # a repeated point
    valid = torch.ones(B, N, dtype=torch.bool)
    if padding and B > 1:
        valid[1, -4:] = False  # trailing padding
    if padding and B > 2:
        valid[2, :2] = False  # leading padding
        valid[2, -1] = False
    mean = torch.randn(B, N, num_channels, generator=g, dtype=DTYPE)
    var = 0.1 + torch.rand(B, N, num_channels, generator=g, dtype=DTYPE)
    excluded = torch.rand(B, N, num_channels, generator=g, dtype=DTYPE) < 0.25
    var = torch.where(excluded, torch.inf, var)
    var = torch.where(valid[..., None], var, 7.0)  # finite garbage on padding
    included = torch.isfinite(var) & valid[..., None]
    x = torch.where(valid[..., None], x, garbage)
    mean = torch.where(included, mean, garbage)
    return x, mean, var, valid


def new_points(x: Tensor, valid: Tensor, seed: int = 1) -> Tensor:
    """(B, M, d) new index points for every series, in random order.

    For d = 1: before the first valid point, after the last (two), between valid points
    (three), equal to valid points (three), and one new point given twice. For d > 1: outside
    the bounding box of the valid points (two), inside it (three), equal to valid points
    (three), and one given twice.
    """
    g = torch.Generator().manual_seed(seed)
    d = x.shape[-1]
    out = []
    for b in range(x.shape[0]):
        xv = x[b, valid[b]]  # (n, d)
        if d == 1:
            between = xv[:0]
            if len(xv) > 1:
                i = torch.randint(len(xv) - 1, (3,), generator=g)
                u = torch.rand(3, 1, generator=g, dtype=DTYPE)
                between = xv[i] + u * (xv[i + 1] - xv[i])
            pts = torch.cat([xv[:1] - 1.3, xv[-1:] + 0.7, xv[-1:] + 3.0, between[:3], xv[:3]])
        else:
            lo, hi = xv.min(0).values, xv.max(0).values
            inside = lo + torch.rand(3, d, generator=g, dtype=DTYPE) * (hi - lo)
            pts = torch.cat([(lo - 1.0)[None], (hi + 2.0)[None], inside, xv[:3]])
        pts = torch.cat([pts, pts[5:6]])  # a repeated new point
        out.append(pts[torch.randperm(len(pts), generator=g)])
    return torch.stack(out)


# ----------------------------------------------------------------------------------------
# the dense textbook reference


def reference_one(
    kernel: Kernel,
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    valid: Tensor,
    x_new: Tensor | None = None,
    with_kl: bool = True,
) -> dict[str, Tensor]:
    """Textbook GP conditioning for one series and one channel.

    Args:
        kernel: the channel's kernel.
        x: (N, d) index points; mean, var: (N,); valid: (N,) bool.
        x_new: (M, d) new points, or None.
        with_kl: also compute the KL divergence.

    Returns:
        ``log_marginal`` () = log N(mean_i | 0, K_ii + diag var_i) over the included points i
        (0 when there is none); ``mean`` (n,) and ``cov`` (n, n) of f at the n valid points;
        ``kl`` () = KL(N(mean_u, cov_u) || N(0, K_uu)) over the distinct valid points u;
        ``new_mean`` (M,) and ``new_cov`` (M, M) at ``x_new``.
    """
    xv = x[valid]
    inc = torch.isfinite(var) & valid
    xi, yi, vi = x[inc], mean[inc], var[inc]
    gram = kernel(xi, xi) + torch.diag(vi)

    def conditional(xs: Tensor) -> tuple[Tensor, Tensor]:
        kss = kernel(xs, xs)
        if len(yi) == 0:
            return xs.new_zeros(len(xs)), kss
        ksi = kernel(xs, xi)
        return ksi @ torch.linalg.solve(gram, yi), kss - ksi @ torch.linalg.solve(gram, ksi.T)

    out: dict[str, Tensor] = {}
    if len(yi) == 0:
        out["log_marginal"] = x.new_zeros(())
    else:
        out["log_marginal"] = MultivariateNormal(x.new_zeros(len(yi)), gram).log_prob(yi)
    out["mean"], out["cov"] = conditional(xv)
    if with_kl:
        xu = torch.unique(xv, dim=0)  # repeated points make both covariances singular
        mu, cov = conditional(xu)
        prior = MultivariateNormal(xu.new_zeros(len(xu)), kernel(xu, xu))
        out["kl"] = kl_divergence(MultivariateNormal(mu, cov), prior)
    if x_new is not None:
        out["new_mean"], out["new_cov"] = conditional(x_new)
    return out


Reference = list[list[dict[str, Tensor]]]


def dense_all(
    kernels: list[Kernel],
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    valid: Tensor,
    x_new: Tensor | None = None,
    with_kl: bool = True,
) -> Reference:
    """:func:`reference_one` for every series b and channel l: ``result[b][l]``."""
    return [
        [
            reference_one(
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


def stacked(ref: Reference, key: str) -> Tensor:
    """A scalar quantity of the reference as a (B, L) tensor."""
    return torch.stack([torch.stack([r[key] for r in row]) for row in ref])


def spread(ref: Reference, key: str, valid: Tensor) -> Tensor:
    """Per-point quantities (``mean``; ``var``, the diagonal of ``cov``) as (B, N, L) with
    zeros on padding (differentiable)."""
    B, N = valid.shape
    rows = []
    for b in range(B):
        idx = valid[b].nonzero()[:, 0]
        cols = []
        for r in ref[b]:
            values = torch.diagonal(r["cov"]) if key == "var" else r[key]
            cols.append(values.new_zeros(N).index_put((idx,), values))
        rows.append(torch.stack(cols, dim=-1))
    return torch.stack(rows)


def new_stacked(ref: Reference, key: str) -> Tensor:
    """``new_mean`` or ``new_var`` (the diagonal of ``new_cov``) as (B, M, L)."""
    pick = (lambda r: torch.diagonal(r["new_cov"])) if key == "new_var" else (lambda r: r[key])
    return torch.stack([torch.stack([pick(r) for r in row], dim=-1) for row in ref])


# ----------------------------------------------------------------------------------------
# comparisons


def close(actual: Tensor, expected: Tensor, rtol: float, what: str = "") -> None:
    """``|actual - expected| <= rtol * |expected| + rtol / 100 * max(max|expected|, 1)``.

    The absolute part is for entries that are zero or nearly so (posterior means,
    gradients), whose rounding errors follow the size of the whole computation rather than
    their own; the quantities compared here are of order 1, hence the floor of 1.
    """
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = float(expected.detach().abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(
        actual,
        expected,
        rtol=rtol,
        atol=rtol * 1e-2 * max(scale, 1.0),
        msg=lambda m: f"{what}: {m}",
    )


def moment_errors(samples: Tensor, mu: Tensor, cov: Tensor) -> tuple[Tensor, Tensor]:
    """Errors of sample moments in standard errors, for Gaussian draws with known mean.

    Args:
        samples: (S, n) draws; mu: (n,) and cov: (n, n) the true moments.

    Returns:
        (n,) ``|mean_hat - mu| / se_mean`` with ``se_mean_i = sqrt(C_ii / S)``, and (n, n)
        ``|C_hat - C| / se_cov`` with ``C_hat = (f - mu)^T (f - mu) / S`` and ``se_cov_ij =
        sqrt((C_ii C_jj + C_ij^2) / S)``, the exact standard error of that estimator.
    """
    S = samples.shape[0]
    diag = torch.diagonal(cov).clamp_min(0.0)
    se_mean = (diag / S).sqrt().clamp_min(1e-12)
    err_mean = (samples.mean(0) - mu).abs() / se_mean
    centred = samples - mu
    emp = centred.T @ centred / S
    se_cov = ((diag[:, None] * diag[None, :] + cov**2) / S).sqrt().clamp_min(1e-12)
    return err_mean, (emp - cov).abs() / se_cov


def check_moments(samples: Tensor, mu: Tensor, cov: Tensor, sigmas: float = 5.0) -> None:
    """Sample mean and covariance (S, n) within ``sigmas`` standard errors of (n,), (n, n).

    With ``sigmas = 5`` a correct sampler fails one given entry with probability 6e-7
    (normal approximation); the draws are seeded, so the check is deterministic.
    """
    err_mean, err_cov = moment_errors(samples.detach(), mu.detach(), cov.detach())
    assert float(err_mean.max()) <= sigmas, f"mean off by {float(err_mean.max()):.1f} se"
    assert float(err_cov.max()) <= sigmas, f"covariance off by {float(err_cov.max()):.1f} se"
