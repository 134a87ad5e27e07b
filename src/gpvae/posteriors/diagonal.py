"""Diagonal (mean-field) posterior: independent Gaussians per point and channel.

``q(z) = prod_{n, l} N(z_nl | mean_nl, var_nl)``, the posterior of the seed notebook and of
the plain VAE. Its KL to the GP prior N(0, K) is

    KL = 1/2 [tr(K^-1 V) + m^T K^-1 m - n + log|K| - sum log var]

computed per channel by one of three routes:

- ``White`` kernel (K = s2 I, the plain VAE prior N(0, s2 I)): closed form per point;
- a kernel with a state-space form on strictly increasing 1-D points: the O(N) Markov route of
  :func:`gpvae.posteriors.base.markov_chain_cross_entropy` (q is a chain with a = 0);
- any other kernel: Cholesky of K (O(N^3)), with ``diag(K^-1)`` from the inverse factor.

Every valid point needs a finite variance (the encoder sees the mask and must emit one at
points with nothing observed); padding takes no part.
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
from gpvae.kernels.white import White
from gpvae.posteriors.base import (
    EncoderOutput,
    PosteriorFamily,
    SeriesSampler,
    VariationalPosterior,
    dense_prior_cholesky,
    markov_chain_cross_entropy,
    prior_log_prob,
    use_markov_route,
)
from gpvae.rng import batch_normal, per_series_normal

__all__ = ["DiagonalPosterior", "DiagonalQ"]

_LOG_2PI = math.log(2 * math.pi)


def check_finite_var(var: Tensor, valid: Tensor, family: str) -> None:
    """Raise a ValidationError unless ``var`` (B, N, L) is finite and positive on valid points."""
    with torch.no_grad():
        v = var[valid]
        if not bool(torch.isfinite(v).all()) or not bool((v > 0).all()):
            raise ValidationError(
                f"encoder_output[1]: expected finite positive variances at every valid point "
                f"for the {family} posterior, found non-finite or non-positive values (an "
                "encoder that excludes unobserved points, such as PartialEncoder, fits only the "
                "structured posterior)"
            )


class DiagonalQ(VariationalPosterior):
    """Mean-field q with the GP prior.

    Args:
        prior: the GP prior.
        x: (B, N, d) index points.
        valid: (B, N) bool.
        mean, var: (B, N, L) posterior means and variances (finite on valid points).
    """

    def __init__(self, prior: GPPrior, x: Tensor, valid: Tensor, mean: Tensor, var: Tensor) -> None:
        self.prior, self.x, self.valid = prior, x, valid
        v = valid[..., None]  # (B, N, 1)
        self.mean = torch.where(v, mean, torch.zeros_like(mean))  # (B, N, L)
        self.var = torch.where(v, var, torch.ones_like(var))  # (B, N, L), 1 at padding

    def rsample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        check_num_samples(num_samples)
        shape = (num_samples, *self.mean.shape)
        eps = batch_normal(shape, 1, generator, self.mean.dtype, self.mean.device)
        return self.mean + self.var.sqrt() * eps  # (S, B, N, L)

    def marginals(self) -> tuple[Tensor, Tensor]:
        return self.mean, self.var

    def series_sampler(self, generators: Sequence[torch.Generator]) -> SeriesSampler:
        return _DiagonalSeriesSampler(self, generators)

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z) over valid points: (S, B, N, L) -> (S, B)."""
        terms = -0.5 * (_LOG_2PI + torch.log(self.var) + (z - self.mean) ** 2 / self.var)
        return torch.where(self.valid[..., None], terms, torch.zeros_like(terms)).sum((-2, -1))

    def log_ratio(self, z: Tensor) -> Tensor:
        z = torch.where(self.valid[..., None], z, torch.zeros_like(z))
        return prior_log_prob(self.prior, self.x, self.valid, z) - self.log_prob(z)

    def kl(self) -> Tensor:
        return self.kl_per_channel().sum(-1)

    def kl_per_channel(self) -> Tensor:
        """(B, L) KL(q || p) per channel."""
        kernels = self.prior.kernel_list
        valid = self.valid
        n_valid = valid.sum(-1).to(self.mean.dtype)  # (B,)
        neg_entropy = (
            torch.where(valid[..., None], -0.5 * (_LOG_2PI + 1 + torch.log(self.var)), 0.0)
        ).sum(1)  # (B, L)
        whites = [k for k in kernels if isinstance(k, White)]
        if len(whites) == len(kernels):
            s2 = torch.stack([w.variance.reshape(()) for w in whites]).to(self.mean.dtype)  # (L,)
            quad = torch.where(valid[..., None], (self.mean**2 + self.var) / s2, 0.0).sum(1)
            cross = -0.5 * (n_valid[:, None] * (_LOG_2PI + torch.log(s2)) + quad)  # (B, L)
            return neg_entropy - cross
        if use_markov_route(self.prior, self.x, valid):
            zero = torch.zeros_like(self.mean[..., 0])  # (B, N)
            cross = torch.stack(
                [
                    markov_chain_cross_entropy(
                        k, self.x, valid, self.mean[..., ch], zero, self.var[..., ch]
                    ).sum(-1)
                    for ch, k in enumerate(kernels)
                ],
                dim=-1,
            )  # (B, L)
            return neg_entropy - cross
        chol = dense_prior_cholesky(self.prior, self.x, valid)  # (B, L, N, N)
        eye = torch.eye(chol.shape[-1], dtype=chol.dtype, device=chol.device)
        inv_chol = torch.linalg.solve_triangular(chol, eye, upper=False)  # (B, L, N, N)
        diag_kinv = (inv_chol**2).sum(-2)  # (B, L, N)
        m = self.mean.transpose(1, 2)  # (B, L, N), 0 at padding
        v = self.var.transpose(1, 2)  # (B, L, N), 1 at padding
        w = (inv_chol @ m[..., None])[..., 0]  # (B, L, N)
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (B, L)
        # Padding holds identity rows in K and (0, 1) in q: its terms cancel exactly.
        tr = (diag_kinv * v).sum(-1)  # (B, L)
        N = m.shape[-1]
        return 0.5 * (tr + (w**2).sum(-1) - N + log_det - torch.log(v).sum(-1))


class _DiagonalSeriesSampler(SeriesSampler):
    """``z = mean + sqrt(var) * eps``, series b's eps from its own generator."""

    def __init__(self, q: DiagonalQ, generators: Sequence[torch.Generator]) -> None:
        self.q, self.generators = q, list(generators)
        self.lengths = [int(v) for v in q.valid.sum(dim=1).tolist()]

    def draw(self, num_samples: int) -> Tensor:
        q = self.q
        N, L = q.mean.shape[1:]
        eps = per_series_normal(self.generators, self.lengths, num_samples, N, (L,), q.mean)
        return q.mean + q.var.sqrt() * eps  # (S, B, N, L)


class DiagonalPosterior(PosteriorFamily):
    """Mean-field family: q = prod N(mean, var) from the encoder's ``(mean, var)``.

    With a ``White`` kernel of variance 1 this is the plain VAE with an N(0, I) prior.
    """

    num_encoder_outputs = 2

    def forward(self, encoder_output: EncoderOutput, batch: Batch, prior: GPPrior) -> DiagonalQ:
        mean, var = self.check_encoder_output(encoder_output, batch, prior.latent_dim)
        check_finite_var(var, batch.valid, "diagonal")
        self.warn_singular_prior_once(prior, batch, "diagonal")
        return DiagonalQ(prior, batch.x, batch.valid, mean, var)
