"""Per-series seeded draws of the structured posterior (see :meth:`StructuredQ.series_sampler`).

- Series of up to :data:`gpvae.settings.DENSE_MAX_POINTS` points (or kernels without a
  state-space form): ``z = mean + chol(Cov) eps`` from the exact dense posterior of the series
  alone, in float64 (the pseudo-observations are q's; any backend gives the same q).
- Longer series: the simulation smoother of Durbin & Koopman (2002),
  ``z = f+ + E[f | m - y+]`` with a prior path ``f+`` (state-space recursion driven by the
  series' own noise) and synthetic pseudo-observations ``y+ = f+ + sqrt(var) e``; the
  conditional mean is the backend's own smoother, run on S x B series at once.

The choice depends only on the series' own length, so it does not change with the batching.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from gpvae import settings
from gpvae.gp.base import GPPosterior
from gpvae.gp.dense import DenseGPPosterior
from gpvae.gp.linalg import jittered_cholesky
from gpvae.gp.markov import prior_paths
from gpvae.gp.prior import GPPrior
from gpvae.posteriors.base import SeriesSampler, filled_times
from gpvae.rng import per_series_normal

__all__ = ["StructuredSeriesSampler"]


class StructuredSeriesSampler(SeriesSampler):
    """Draws of z from a structured q, each series' noise from its own generator.

    The dense factors of the short series are computed once, at construction.

    Args:
        gp: the batch's structured posterior, a GP conditioned on pseudo-observations.
        prior: the GP prior it conditions.
        generators: B generators, one per series of the batch.
    """

    def __init__(
        self, gp: GPPosterior, prior: GPPrior, generators: Sequence[torch.Generator]
    ) -> None:
        self.gp, self.prior, self.generators = gp, prior, list(generators)
        self.lengths = [int(v) for v in gp.valid.sum(dim=1).tolist()]
        # series of one length share one batched factorisation: T -> (rows, mean (n, T, L),
        # scale (n, L, T, T))
        self.dense: dict[int, tuple[list[int], Tensor, Tensor]] = {}
        self.long: list[int] = []
        x = gp.x
        markov_ok = x.shape[-1] == 1 and all(k.has_state_space for k in self.prior.kernel_list)
        by_length: dict[int, list[int]] = {}
        for b, T in enumerate(self.lengths):
            if T <= settings.DENSE_MAX_POINTS or not markov_ok:
                by_length.setdefault(T, []).append(b)
            else:
                self.long.append(b)
        for T, rows in by_length.items():
            self.dense[T] = (rows, *_dense_factors(gp, self.prior, rows, T))

    def draw(self, num_samples: int) -> Tensor:
        """(S, B, N, L) joint draws (zeros on padding)."""
        gens = self.generators
        S = num_samples
        like = self.gp.mean
        out = like.new_zeros((S, *like.shape))  # (S, B, N, L)
        L = like.shape[-1]
        for T, (rows, mean, scale) in self.dense.items():
            eps = torch.stack(
                [
                    torch.randn((S, T, L), generator=gens[b], dtype=like.dtype, device=like.device)
                    for b in rows
                ]
            )  # (n, S, T, L), series b's noise from its own generator
            w = scale @ eps.double().permute(0, 3, 2, 1)  # (n, L, T, S): one GEMM per (n, L)
            z = (mean[..., None] + w.permute(0, 2, 1, 3)).to(like.dtype)  # (n, T, L, S)
            out[:, rows, :T] = z.permute(3, 0, 1, 2)
        if self.long:
            sub = [gens[b] for b in self.long]
            out[:, self.long] = _markov_draws(self.gp, self.prior, self.long, S, sub)
        return out


def _dense_factors(
    gp: GPPosterior, prior: GPPrior, rows: list[int], T: int
) -> tuple[Tensor, Tensor]:
    """Means (n, T, L) and covariance factors (n, L, T, T) of the series ``rows`` (all of
    length T), each conditioned on its own pseudo-observations alone; float64, exact.

    One batched factorisation for all of them; a series whose covariance needs more than
    the prior's jitter is refactorised alone with the retries of
    :func:`~gpvae.gp.linalg.jittered_cholesky` (and its warning), as if on its own.
    """
    post = DenseGPPosterior(
        prior.kernel_list,
        gp.x[rows, :T].double(),
        gp.mean[rows, :T].double(),
        gp.var[rows, :T].double(),
        jitter=prior.jitter,
    )
    mean, _ = post.marginals()  # (n, T, L)
    cov = post.covariance()  # (n, L, T, T)
    eye = torch.eye(T, dtype=cov.dtype, device=cov.device)
    scale, info = torch.linalg.cholesky_ex(cov + prior.jitter * eye)
    for i in (info != 0).any(dim=-1).nonzero()[:, 0].tolist():
        scale[i] = jittered_cholesky(cov[i], prior.jitter, "posterior covariance")
    return mean, scale


def _markov_draws(
    gp: GPPosterior,
    prior: GPPrior,
    rows: list[int],
    S: int,
    generators: Sequence[torch.Generator],
) -> Tensor:
    """Draws (S, B', N, L) for the series ``rows`` of the batch (simulation smoother).

    The noise of all S draws is drawn first (each series' generator is consumed as in one
    pass), then the smoother runs over passes of at most :func:`draws_per_pass` draws: its
    working set (prior paths, synthetic data, the Kalman filter's and smoother's states of
    S x B' chains) grows with the draws of a pass, not with S. Every chain is computed on
    its own, so the draws are those of one pass bit for bit on the CPU.
    """
    x, valid = gp.x[rows], gp.valid[rows]  # (B', N, d), (B', N)
    mean, var = gp.mean[rows], gp.var[rows]  # (B', N, L) pseudo-observations
    lengths = [int(v) for v in valid.sum(dim=1).tolist()]
    B, N = valid.shape
    L = prior.latent_dim
    m_max = max(k.state_dim for k in prior.kernel_list)
    noise = per_series_normal(generators, lengths, S, N, (L, m_max + 1), mean)
    t = filled_times(x, valid)  # (B, N)
    inc = torch.isfinite(var) & valid[..., None]  # (B, N, L)
    sd = torch.where(inc, var, torch.ones_like(var)).sqrt()
    step = draws_per_pass(B, N, L)
    if step >= S:
        return _smoothed(prior, x, t, valid, mean, var, inc, sd, noise, m_max)
    out = mean.new_empty((S, B, N, L))
    for start in range(0, S, step):
        part = noise[start : start + step]
        out[start : start + step] = _smoothed(prior, x, t, valid, mean, var, inc, sd, part, m_max)
    return out


def draws_per_pass(num_series: int, num_points: int, latent_dim: int) -> int:
    """Draws of a batch's long series (``num_series`` of ``num_points`` points, padded, and
    ``latent_dim`` channels) that one pass of the simulation smoother makes: at most
    :data:`gpvae.settings.SMOOTHER_PASS_POINTS` latent points (draws x series x points x
    channels), and at least one draw."""
    per_draw = max(1, num_series * num_points * latent_dim)
    return max(1, settings.SMOOTHER_PASS_POINTS // per_draw)


def _smoothed(
    prior: GPPrior,
    x: Tensor,
    t: Tensor,
    valid: Tensor,
    mean: Tensor,
    var: Tensor,
    inc: Tensor,
    sd: Tensor,
    noise: Tensor,
    m_max: int,
) -> Tensor:
    """Posterior draws (S', B, N, L) from the noise (S', B, N, L, m_max + 1) of S' draws."""
    S, (B, N, L) = noise.shape[0], mean.shape
    f_plus = prior_paths(prior.kernel_list, t, noise[..., :m_max]).to(mean.dtype)  # (S,B,N,L)
    y_plus = f_plus + sd * noise[..., m_max]  # (S, B, N, L)
    resid = torch.where(inc, mean - y_plus, torch.zeros_like(y_plus))
    x_rep = x.expand(S, *x.shape).reshape(S * B, N, -1)
    var_rep = var.expand(S, B, N, L).reshape(S * B, N, L)
    valid_rep = valid.expand(S, B, N).reshape(S * B, N)
    post = prior.condition(x_rep, resid.reshape(S * B, N, L), var_rep, valid_rep)
    correction, _ = post.marginals()  # (S B, N, L)
    return f_plus + correction.reshape(S, B, N, L)
