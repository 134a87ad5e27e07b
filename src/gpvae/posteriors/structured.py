"""Structured posterior: the GP prior conditioned on per-point pseudo-observations.

The encoder's ``(mean, var)`` are Gaussian pseudo-observations of every latent channel, and
``q(z) = p(z) prod_n N(mean_n | z_n, var_n) / Z`` is the prior conditioned on them
(Pearce 2019; Jazbec et al. 2021, SVGP-VAE; Zhu et al. 2023, Markovian GP-VAE). A point with
no observed feature (or padding) contributes no pseudo-observation: its variance is set to
+inf here, whatever the encoder emitted there. The work is the GP backend's
(:meth:`gpvae.gp.prior.GPPrior.condition`), so sampling and KL cost what the backend costs
(O(N) for the markov backend).

Because q is p times the pseudo-likelihood t(z) over Z = exp(log_marginal),
``log p(z) - log q(z) = log Z - log t(z)`` exactly, for any backend; the IWAE bound needs
nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from gpvae.batch import Batch, any_along
from gpvae.gp.base import GPPosterior
from gpvae.gp.prior import GPPrior
from gpvae.posteriors.base import (
    EncoderOutput,
    PosteriorFamily,
    SeriesSampler,
    VariationalPosterior,
)
from gpvae.posteriors.structured_draws import StructuredSeriesSampler

__all__ = ["StructuredPosterior", "StructuredQ"]


class StructuredQ(VariationalPosterior):
    """q = GP prior conditioned on pseudo-observations.

    Args:
        gp: the backend's :class:`~gpvae.gp.base.GPPosterior` (use it for ``predict`` /
            ``sample_at`` at new index points, e.g. forecasting).
        prior: the GP prior that ``gp`` conditions.

    Attributes:
        gp, prior: as given.
        valid: (B, N) bool.
    """

    def __init__(self, gp: GPPosterior, prior: GPPrior) -> None:
        self.gp, self.prior = gp, prior
        self.valid = gp.valid

    def rsample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        return self.gp.sample(num_samples, generator)

    def kl(self) -> Tensor:
        return self.gp.kl().sum(-1)

    def marginals(self) -> tuple[Tensor, Tensor]:
        return self.gp.marginals()

    def series_sampler(self, generators: Sequence[torch.Generator]) -> SeriesSampler:
        """Per-series draws: exact dense posterior of each short series, simulation smoother
        for long ones (:mod:`gpvae.posteriors.structured_draws`)."""
        return StructuredSeriesSampler(self.gp, self.prior, generators)

    def log_ratio(self, z: Tensor) -> Tensor:
        """log Z - log t(z), with t(z) = prod over included points of N(mean | z, var).

        Args:
            z: (S, B, N, L) joint samples.

        Returns:
            (S, B).
        """
        inc = self.gp.included  # (B, N, L)
        var = torch.where(inc, self.gp.var, torch.ones_like(self.gp.var))
        mean = torch.where(inc, self.gp.mean, torch.zeros_like(self.gp.mean))
        z_safe = torch.where(inc, z, torch.zeros_like(z))  # (S, B, N, L)
        terms = -0.5 * (math.log(2 * math.pi) + torch.log(var) + (mean - z_safe) ** 2 / var)
        log_t = torch.where(inc, terms, torch.zeros_like(terms)).sum(dim=(-2, -1))  # (S, B)
        return self.gp.log_marginal.sum(-1) - log_t


class StructuredPosterior(PosteriorFamily):
    """The default family: q = ``prior.condition(x, mean, var, valid)``.

    Points where no feature is observed, and padding, get ``var = +inf`` (no
    pseudo-observation). Encoder outputs: ``(mean, var)``.
    """

    num_encoder_outputs = 2

    def forward(self, encoder_output: EncoderOutput, batch: Batch, prior: GPPrior) -> StructuredQ:
        mean, var = self.check_encoder_output(encoder_output, batch, prior.latent_dim)
        has_obs = (any_along(batch.observed, -1) & batch.valid)[..., None]  # (B, N, 1)
        # every point with an observed feature (the usual training batch): nothing to mask,
        # so no where's (the same values, and the gradients pass through unchanged)
        if not bool(has_obs.all()):
            var = torch.where(has_obs, var, torch.full_like(var, float("inf")))  # (B, N, L)
            mean = torch.where(has_obs, mean, torch.zeros_like(mean))
        return StructuredQ(prior.condition(batch.x, mean, var, valid=batch.valid), prior)
