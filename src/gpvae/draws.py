"""Posterior draws whose randomness belongs to each series, not to its batch.

``q.rsample(S, generator)`` draws one block of noise for the whole padded batch, so a series'
draws change with the other series in its batch and with the padding. For results that do
not depend on how series are batched (``GPVAE.impute``), :func:`posterior_draws` takes one
generator per series and draws that series' noise, (S, T_i, ...), from it alone; padding
gets zeros. The draws have the same distribution as ``q.rsample``:

- diagonal q: ``z = mean + sqrt(var) * eps``;
- banded q: the same chain recursion as :class:`~gpvae.posteriors.BandedQ` (padding comes
  after the valid points, so it never feeds back into them);
- structured q, series of up to :data:`DENSE_MAX_POINTS` points (or kernels without a
  state-space form): ``z = mean + chol(Cov) eps`` from the exact dense posterior of the
  series alone, in float64 (the pseudo-observations are q's; any backend gives the same q);
- structured q, longer series: the simulation smoother of Durbin & Koopman (2002),
  ``z = f+ + E[f | m - y+]`` with a prior path ``f+`` (state-space recursion driven by the
  series' own noise) and synthetic pseudo-observations ``y+ = f+ + sqrt(var) e``; the
  conditional mean is the backend's own smoother, run on S x B series at once.

Other posterior families fall back to ``q.rsample`` with the first series' generator.
Series seeds come from :func:`series_seed`: a hash of the estimator seed and the series'
values and times, so the same series gets the same draws wherever it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from gpvae.batch import Batch
from gpvae.gp.dense import DenseGPPosterior, jittered_cholesky
from gpvae.gp.prior import GPPrior
from gpvae.likelihoods import Likelihood, Params
from gpvae.posteriors import BandedQ, DiagonalQ, StructuredQ, VariationalPosterior
from gpvae.posteriors.banded import linear_recurrence

__all__ = [
    "DENSE_MAX_POINTS",
    "PosteriorSampler",
    "gaussian_draws",
    "likelihood_draws",
    "per_series_normal",
    "posterior_draws",
    "series_seed",
]

#: Series up to this length are drawn from the exact dense posterior of the series alone
#: (float64 Cholesky, O(T^3)); longer ones by the O(T) simulation smoother. The choice depends
#: only on the series' own length, so it does not change with the batching.
DENSE_MAX_POINTS = 256


def series_seed(seed: int, salt: int, values: np.ndarray, times: np.ndarray) -> int:
    """A 63-bit seed from the estimator seed, a per-method salt and the series' content."""
    h = hashlib.sha256()
    h.update(np.array([seed, salt], dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(times, dtype=np.float64).tobytes())
    return int.from_bytes(h.digest()[:8], "little") >> 1


def per_series_normal(
    generators: Sequence[torch.Generator],
    lengths: Sequence[int],
    num_samples: int,
    num_points: int,
    tail: tuple[int, ...],
    like: Tensor,
) -> Tensor:
    """Standard-normal noise (S, B, N, *tail), series b's part (S, T_b, *tail) from its own
    generator, zeros on padding."""
    B = len(generators)
    out = like.new_zeros((num_samples, B, num_points, *tail))
    for b, (gen, T) in enumerate(zip(generators, lengths)):
        out[:, b, :T] = torch.randn(
            (num_samples, T, *tail), generator=gen, dtype=like.dtype, device=like.device
        )
    return out


class PosteriorSampler:
    """Draws of z from q for one batch, each series' noise from its own generator.

    Everything that does not depend on the noise (per-series dense posterior factors) is
    computed once, so :meth:`draw` can be called for several chunks of samples; each call
    continues every series' generator.

    Args:
        q: the batch's posterior (from ``model.encode(batch)``).
        prior: the model's GP prior.
        batch: the batch q was built from (padding after the valid points).
        generators: B generators, one per series of the batch.
    """

    def __init__(
        self,
        q: VariationalPosterior,
        prior: GPPrior,
        batch: Batch,
        generators: Sequence[torch.Generator],
    ) -> None:
        self.q, self.prior, self.batch, self.generators = q, prior, batch, list(generators)
        self.lengths = [int(v) for v in batch.valid.sum(dim=1).tolist()]
        self.dense: dict[int, tuple[Tensor, Tensor]] = {}  # b -> mean (T, L), scale (L, T, T)
        self.long: list[int] = []
        if isinstance(q, StructuredQ):
            markov_ok = batch.x.shape[-1] == 1 and all(k.has_state_space for k in prior.kernel_list)
            for b, T in enumerate(self.lengths):
                if T <= DENSE_MAX_POINTS or not markov_ok:
                    self.dense[b] = _dense_factor(q, prior, b, T)
                else:
                    self.long.append(b)

    def draw(self, num_samples: int) -> Tensor:
        """(S, B, N, L) joint draws (placeholders on padding)."""
        q, batch, gens, lengths = self.q, self.batch, self.generators, self.lengths
        S = num_samples
        N = batch.valid.shape[1]
        L = self.prior.latent_dim
        like = batch.y
        if isinstance(q, DiagonalQ):
            eps = per_series_normal(gens, lengths, S, N, (L,), like)  # (S, B, N, L)
            return q.mean + q.var.sqrt() * eps
        if isinstance(q, BandedQ):
            eps = per_series_normal(gens, lengths, S, N, (L,), like).transpose(-1, -2)
            u = linear_recurrence(q.a, q.var.sqrt() * eps)  # (S, B, L, N)
            return (q.mu + u).transpose(-1, -2)  # (S, B, N, L)
        if not isinstance(q, StructuredQ):
            return q.rsample(S, gens[0])
        out = like.new_zeros((S, *batch.valid.shape, L))  # (S, B, N, L)
        for b, (mean, scale) in self.dense.items():
            T = lengths[b]
            eps = torch.randn((S, T, L), generator=gens[b], dtype=like.dtype, device=like.device)
            w = (scale @ eps.double().transpose(-1, -2)[..., None])[..., 0]  # (S, L, T)
            out[:, b, :T] = (mean + w.transpose(-1, -2)).to(like.dtype)
        if self.long:
            sub = [gens[b] for b in self.long]
            out[:, self.long] = _markov_draws(q, self.prior, batch, self.long, S, sub)
        return out


def posterior_draws(
    q: VariationalPosterior,
    prior: GPPrior,
    batch: Batch,
    num_samples: int,
    generators: Sequence[torch.Generator],
) -> Tensor:
    """Joint draws of z from q (S, B, N, L), each series' noise from its own generator.

    One-shot form of :class:`PosteriorSampler`.
    """
    return PosteriorSampler(q, prior, batch, generators).draw(num_samples)


def _dense_factor(q: StructuredQ, prior: GPPrior, b: int, T: int) -> tuple[Tensor, Tensor]:
    """Mean (T, L) and covariance factor (L, T, T) of series b alone, float64, exact."""
    gp = q.gp
    post = DenseGPPosterior(
        prior.kernel_list,
        gp.x[b : b + 1, :T].double(),
        gp.mean[b : b + 1, :T].double(),
        gp.var[b : b + 1, :T].double(),
        jitter=prior.jitter,
    )
    mean, _ = post.marginals()  # (1, T, L)
    scale = jittered_cholesky(post.covariance(), prior.jitter, "posterior covariance")
    return mean[0], scale[0]


def _filled_times(x: Tensor, valid: Tensor) -> Tensor:
    """(B, N, 1) -> (B, N) with padding holding the last valid time (dt = 0 there)."""
    t = x[..., 0]
    idx = torch.arange(t.shape[1], device=t.device).expand_as(valid)
    last = torch.where(valid, idx, torch.zeros_like(idx)).cummax(dim=1).values  # (B, N)
    return t.gather(1, last)


def _prior_paths(prior: GPPrior, t: Tensor, eps: Tensor) -> Tensor:
    """Prior draws f+ (S, B, N, L) of state-space kernels at sorted times t (B, N), driven by
    eps (S, B, N, L, m_max): ``s_0 = chol(Pinf) e_0``, ``s_n = A_n s_{n-1} + chol(Q_n) e_n``.

    Channels with the same state dimension m run together; float64 throughout.
    """
    dt = torch.diff(t, dim=1, prepend=t[:, :1]).to(torch.float64)  # (B, N)
    kernels = prior.kernel_list
    by_dim: dict[int, list[int]] = {}
    for ch, k in enumerate(kernels):
        by_dim.setdefault(k.state_dim, []).append(ch)
    S, B, N, L, _ = eps.shape
    f = eps.new_zeros((S, B, N, L), dtype=torch.float64)
    for m, channels in by_dim.items():
        trans = [kernels[c].transition(dt) for c in channels]
        A = torch.stack([a for a, _ in trans], dim=2)  # (B, N, G, m, m)
        Q = torch.stack([q for _, q in trans], dim=2)  # (B, N, G, m, m)
        spaces = [kernels[c].state_space() for c in channels]
        Pinf = torch.stack([sp.Pinf for sp in spaces]).to(torch.float64)  # (G, m, m)
        H = torch.stack([sp.H[0] for sp in spaces]).to(torch.float64)  # (G, m)
        jitter = torch.finfo(torch.float64).eps ** 0.75 * torch.diagonal(Pinf, dim1=-2, dim2=-1)
        chol_q = torch.linalg.cholesky(Q + torch.diag_embed(jitter))  # (B, N, G, m, m)
        chol_0 = torch.linalg.cholesky(Pinf)  # (G, m, m)
        e = eps[:, :, :, channels, :m].to(torch.float64)  # (S, B, N, G, m)
        s = (chol_0 @ e[:, :, 0, :, :, None])[..., 0]  # (S, B, G, m)
        f[:, :, 0, channels] = (s * H).sum(-1)
        for n in range(1, N):
            s = (A[:, n] @ s[..., None])[..., 0] + (chol_q[:, n] @ e[:, :, n, :, :, None])[..., 0]
            f[:, :, n, channels] = (s * H).sum(-1)  # (S, B, G)
    return f.to(eps.dtype)


def _markov_draws(
    q: StructuredQ,
    prior: GPPrior,
    batch: Batch,
    rows: list[int],
    S: int,
    generators: Sequence[torch.Generator],
) -> Tensor:
    """Draws (S, B', N, L) for the series ``rows`` of the batch (simulation smoother)."""
    batch = Batch(batch.x[rows], batch.y[rows], batch.observed[rows], batch.valid[rows])
    mean, var = q.gp.mean[rows], q.gp.var[rows]  # (B', N, L) pseudo-observations
    lengths = [int(v) for v in batch.valid.sum(dim=1).tolist()]
    B, N = batch.valid.shape
    L = prior.latent_dim
    m_max = max(k.state_dim for k in prior.kernel_list)
    noise = per_series_normal(generators, lengths, S, N, (L, m_max + 1), batch.y)
    t = _filled_times(batch.x, batch.valid)  # (B, N)
    f_plus = _prior_paths(prior, t, noise[..., :m_max])  # (S, B, N, L)
    inc = torch.isfinite(var) & batch.valid[..., None]  # (B, N, L)
    sd = torch.where(inc, var, torch.ones_like(var)).sqrt()
    y_plus = f_plus + sd * noise[..., m_max]  # (S, B, N, L)
    resid = torch.where(inc, mean - y_plus, torch.zeros_like(y_plus))
    x_rep = batch.x.expand(S, *batch.x.shape).reshape(S * B, N, -1)
    var_rep = var.expand(S, B, N, L).reshape(S * B, N, L)
    valid_rep = batch.valid.expand(S, B, N).reshape(S * B, N)
    post = prior.condition(x_rep, resid.reshape(S * B, N, L), var_rep, valid_rep)
    correction, _ = post.marginals()  # (S B, N, L)
    return f_plus + correction.reshape(S, B, N, L)


def likelihood_draws(
    likelihood: Likelihood,
    params: Params,
    generators: Sequence[torch.Generator],
    lengths: Sequence[int],
) -> Tensor:
    """y ~ p(y | params) (S, B, N, D), series b's draws from its own generator (0 on padding)."""
    parts = (params,) if isinstance(params, Tensor) else tuple(params)
    out = torch.zeros_like(likelihood.mean(params))
    for b, (gen, T) in enumerate(zip(generators, lengths)):
        sub = tuple(p[:, b : b + 1, :T] for p in parts)
        one: Params = sub[0] if len(sub) == 1 else sub
        out[:, b : b + 1, :T] = likelihood.sample(one, gen)
    return out


def gaussian_draws(
    mean: Tensor,
    var: Tensor,
    generators: Sequence[torch.Generator],
    lengths: Sequence[int],
) -> Tensor:
    """y ~ N(mean, var) entry-wise (S, B, N, D), series b's draws from its own generator."""
    out = torch.zeros_like(mean)
    for b, (gen, T) in enumerate(zip(generators, lengths)):
        m, v = mean[:, b : b + 1, :T], var[:, b : b + 1, :T]
        eps = torch.randn(m.shape, generator=gen, dtype=m.dtype, device=m.device)
        out[:, b : b + 1, :T] = m + v.sqrt() * eps
    return out
