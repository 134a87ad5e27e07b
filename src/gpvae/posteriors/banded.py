"""Banded posterior (Fortuin et al. 2020, GP-VAE): tridiagonal precision per channel.

For each series and latent channel, ``q(z) = N(mu, (B B^T)^-1)`` with B upper bidiagonal:
diagonal ``b_n = 1 / sqrt(var_n) > 0`` and super-diagonal ``c_n = B[n, n+1]`` (the encoder's
``(mean, var, offdiag)``; ``offdiag`` at the last point is unused). The precision
``B B^T`` is tridiagonal. Since ``B^T (z - mu) = eps``, eps ~ N(0, I), and ``B^T`` is lower
bidiagonal, q is the first-order chain

    z_0 = mu_0 + sqrt(var_0) eps_0,
    z_n = mu_n + a_n (z_{n-1} - mu_{n-1}) + sqrt(var_n) eps_n,   a_n = -c_{n-1} / b_n,

so sampling is a linear recurrence, solved here by a parallel (doubling) scan: O(N log N)
work, O(log N) sequential steps, no N x N matrix. With ``offdiag = 0`` the family is the
diagonal one with variances ``var``.

KL(q || p) = E_q[log q] - E_q[log p], with ``E_q[log q] = -sum_n (log(2 pi var_n) + 1) / 2``.
For the cross-entropy E_q[log p]:

- **Markov prior** (every channel kernel has a state-space form, 1-D strictly increasing
  index points): the exact O(N) recursion of
  :func:`gpvae.posteriors.base.markov_chain_cross_entropy`; no N x N matrix is built.
- **any other kernel** (RBF, Cauchy, periodic, products, d > 1, repeated index points): the
  dense route, ``1/2 [tr(K^-1 S) + mu^T K^-1 mu + log|K| + n log 2 pi]`` with
  ``tr(K^-1 S) = ||L_K^-1 B^-T||_F^2``: one N x N Cholesky and two triangular solves per
  channel, O(N^3) time and O(N^2) memory (as in Fortuin's implementation).

Padding must come after the valid points of a series (``valid`` a prefix), because the
chain's marginal on the first n points is the chain truncated there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from gpvae.batch import Batch
from gpvae.errors import ValidationError
from gpvae.gp.checks import check_num_samples
from gpvae.gp.prior import GPPrior
from gpvae.posteriors.base import (
    EncoderOutput,
    PosteriorFamily,
    SeriesSampler,
    VariationalPosterior,
    dense_prior_cholesky,
    markov_capable,
    markov_chain_cross_entropy,
    prior_log_prob,
    use_markov_route,
)
from gpvae.posteriors.diagonal import check_finite_var
from gpvae.rng import batch_normal, per_series_normal

__all__ = ["BandedPosterior", "BandedQ", "linear_recurrence"]

_LOG_2PI = math.log(2 * math.pi)


def linear_recurrence(a: Tensor, d: Tensor) -> Tensor:
    """Solve ``u_0 = d_0``, ``u_n = a_n u_{n-1} + d_n`` along the last axis.

    A Hillis-Steele scan over the affine maps ``u -> a u + d`` (composition
    ``(a2, d2) o (a1, d1) = (a2 a1, a2 d1 + d2)``): ceil(log2 N) vectorised steps.

    Args:
        a: (..., N) coefficients (``a[..., 0]`` is ignored).
        d: (..., N) offsets.

    Returns:
        (..., N) the solution u.
    """
    shape = torch.broadcast_shapes(a.shape, d.shape)
    a = torch.cat([torch.zeros_like(a[..., :1]), a[..., 1:]], dim=-1).expand(shape)
    d = d.expand(shape)
    N = shape[-1]
    shift = 1
    while shift < N:
        d = torch.cat([d[..., :shift], d[..., shift:] + a[..., shift:] * d[..., :-shift]], dim=-1)
        a = torch.cat([a[..., :shift], a[..., shift:] * a[..., :-shift]], dim=-1)
        shift *= 2
    return d


class BandedQ(VariationalPosterior):
    """Fortuin's banded q, one chain per series and channel.

    Args:
        prior: the GP prior.
        x: (B, N, d) index points.
        valid: (B, N) bool, a prefix of each series.
        mu: (B, N, L) means.
        var: (B, N, L) ``1 / b_n^2`` (finite, positive on valid points).
        offdiag: (B, N, L) ``c_n`` (the last point's value is unused).
        route: ``"auto"`` (Markov when possible and the prior's backend is not ``"dense"``),
            ``"markov"`` or ``"dense"`` for the KL and the prior density.
    """

    def __init__(
        self,
        prior: GPPrior,
        x: Tensor,
        valid: Tensor,
        mu: Tensor,
        var: Tensor,
        offdiag: Tensor,
        route: str = "auto",
    ) -> None:
        self.prior, self.x, self.valid = prior, x, valid
        v = valid[..., None]  # (B, N, 1)
        # Padding: z ~ N(0, 1) independent of everything (a = 0 there and into it).
        self.mu = torch.where(v, mu, torch.zeros_like(mu)).transpose(1, 2)  # (B, L, N)
        self.var = torch.where(v, var, torch.ones_like(var)).transpose(1, 2)  # (B, L, N)
        b = torch.rsqrt(self.var)  # (B, L, N)
        c_prev = torch.cat([torch.zeros_like(offdiag[:, :1]), offdiag[:, :-1]], dim=1)
        a = -c_prev.transpose(1, 2) * self.var.sqrt()  # (B, L, N): a_n = -c_{n-1} / b_n
        self.a = torch.where(valid[:, None, :], a, torch.zeros_like(a))  # (B, L, N)
        self.b = b
        if route == "markov" and not markov_capable(prior, x, valid):
            raise ValidationError(
                "route: 'markov' needs state-space kernels on 1-D strictly increasing index "
                "points, found otherwise; use route='auto' or 'dense'"
            )
        self.markov = route == "markov" or (route == "auto" and use_markov_route(prior, x, valid))

    def rsample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        check_num_samples(num_samples)
        shape = (num_samples, *self.mu.shape)
        eps = batch_normal(shape, 1, generator, self.mu.dtype, self.mu.device)
        u = linear_recurrence(self.a, self.var.sqrt() * eps)  # (S, B, L, N)
        return (self.mu + u).transpose(-1, -2)  # (S, B, N, L)

    def marginals(self) -> tuple[Tensor, Tensor]:
        var = linear_recurrence(self.a**2, self.var)  # (B, L, N)
        return self.mu.transpose(1, 2), var.transpose(1, 2)

    def series_sampler(self, generators: Sequence[torch.Generator]) -> SeriesSampler:
        return _BandedSeriesSampler(self, generators)

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z) over valid points: (S, B, N, L) -> (S, B)."""
        u = z.transpose(-1, -2) - self.mu  # (S, B, L, N)
        u_prev = torch.cat([torch.zeros_like(u[..., :1]), u[..., :-1]], dim=-1)
        eps2 = (u - self.a * u_prev) ** 2 / self.var  # (S, B, L, N)
        terms = -0.5 * (_LOG_2PI + torch.log(self.var) + eps2)
        return torch.where(self.valid[:, None, :], terms, torch.zeros_like(terms)).sum((-2, -1))

    def log_ratio(self, z: Tensor) -> Tensor:
        z = torch.where(self.valid[..., None], z, torch.zeros_like(z))
        return prior_log_prob(self.prior, self.x, self.valid, z) - self.log_prob(z)

    def kl(self) -> Tensor:
        return self.kl_per_channel().sum(-1)

    def kl_per_channel(self) -> Tensor:
        """(B, L) KL(q || p) per channel."""
        valid = self.valid[:, None, :]  # (B, 1, N)
        neg_entropy = torch.where(
            valid, -0.5 * (_LOG_2PI + 1 + torch.log(self.var)), torch.zeros_like(self.var)
        ).sum(-1)  # (B, L)
        if self.markov:
            cross = torch.stack(
                [
                    markov_chain_cross_entropy(
                        k, self.x, self.valid, self.mu[:, ch], self.a[:, ch], self.var[:, ch]
                    ).sum(-1)
                    for ch, k in enumerate(self.prior.kernel_list)
                ],
                dim=-1,
            )  # (B, L)
            return neg_entropy - cross
        return neg_entropy - self._dense_cross_entropy()

    def _dense_cross_entropy(self) -> Tensor:
        """(B, L) E_q[log N(z | 0, K)] by Cholesky of K (O(N^3))."""
        chol = dense_prior_cholesky(self.prior, self.x, self.valid)  # (B, L, N, N)
        N = chol.shape[-1]
        # B^T = diag(b) + sub-diagonal c_{n-1}, with c_{n-1} = -a_n b_n.
        c_prev = -self.a * self.b  # (B, L, N)
        bt = torch.diag_embed(self.b) + torch.diag_embed(c_prev[..., 1:], offset=-1)
        eye = torch.eye(N, dtype=chol.dtype, device=chol.device)
        bt_inv = torch.linalg.solve_triangular(bt, eye, upper=False)  # (B, L, N, N): B^-T
        r = torch.linalg.solve_triangular(chol, bt_inv, upper=False)  # L_K^-1 B^-T
        w = torch.linalg.solve_triangular(chol, self.mu[..., None], upper=False)[..., 0]
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (B, L)
        # Padding is N(0, 1) in both q and the (identity-padded) K: drop its terms.
        n_pad = (~self.valid).sum(-1).to(chol.dtype)[:, None]  # (B, 1)
        quad = (r**2).sum((-2, -1)) - n_pad + (w**2).sum(-1)  # (B, L)
        n_valid = self.valid.sum(-1).to(chol.dtype)[:, None]  # (B, 1)
        return -0.5 * (quad + log_det + n_valid * _LOG_2PI)


class _BandedSeriesSampler(SeriesSampler):
    """The chain recursion of :meth:`BandedQ.rsample`, series b's noise from its own
    generator (padding comes after the valid points, so it never feeds back into them)."""

    def __init__(self, q: BandedQ, generators: Sequence[torch.Generator]) -> None:
        self.q, self.generators = q, list(generators)
        self.lengths = [int(v) for v in q.valid.sum(dim=1).tolist()]

    def draw(self, num_samples: int) -> Tensor:
        q = self.q
        L, N = q.mu.shape[1:]
        eps = per_series_normal(self.generators, self.lengths, num_samples, N, (L,), q.mu)
        u = linear_recurrence(q.a, q.var.sqrt() * eps.transpose(-1, -2))  # (S, B, L, N)
        return (q.mu + u).transpose(-1, -2)  # (S, B, N, L)


class BandedPosterior(PosteriorFamily):
    """Fortuin's family q(z_l) = N(mu, (B B^T)^-1); encoder outputs ``(mean, var, offdiag)``.

    Args:
        route: ``"auto"`` (the O(N) Markov route whenever the prior allows and its backend
            is not ``"dense"``, else dense),
            ``"markov"`` (raise if not possible) or ``"dense"``.
    """

    num_encoder_outputs = 3

    def __init__(self, route: str = "auto") -> None:
        super().__init__()
        if route not in ("auto", "markov", "dense"):
            raise ValidationError(
                f"route: expected one of 'auto', 'markov', 'dense', found {route!r}"
            )
        self.route = route

    def forward(self, encoder_output: EncoderOutput, batch: Batch, prior: GPPrior) -> BandedQ:
        mean, var, offdiag = self.check_encoder_output(encoder_output, batch, prior.latent_dim)
        valid = batch.valid
        if bool((valid[:, 1:] & ~valid[:, :-1]).any()):
            raise ValidationError(
                "valid: expected padding only after the valid points of each series for the "
                "banded posterior, found a valid point after padding"
            )
        check_finite_var(var, valid, "banded")
        self.warn_singular_prior_once(prior, batch, "banded")
        return BandedQ(prior, batch.x, valid, mean, var, offdiag, route=self.route)
