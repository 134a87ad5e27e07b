"""Gaussian likelihood with learned per-feature or decoder-predicted (heteroscedastic) variance."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.functional import softplus

from gpvae.errors import ValidationError
from gpvae.kernels.base import inv_softplus
from gpvae.likelihoods.base import Likelihood, Params, check_num_features, check_positive
from gpvae.rng import per_series_normal

__all__ = ["Gaussian"]


class Gaussian(Likelihood):
    """y[n, d] ~ N(mean[n, d], var[n, d]).

    Homoscedastic (default): the decoder emits the mean (..., N, D); the variance is one
    learned positive number per feature, ``var[d] = softplus(raw_variance[d]) + min_variance``.
    Heteroscedastic: the decoder emits ``(mean, raw_var)`` and
    ``var = softplus(raw_var) + min_variance``.

    The learned variance trains in the optimiser group of the likelihood's parameters:
    at ``TrainConfig.noise_lr`` (``GPVAE(noise_lr=...)``) when set, else at ``lr`` with the
    networks. Adam moves ``raw_variance`` by about the learning rate per step, so at the
    estimator's default lr of 1e-3 the variance stays near its start (0.1 in standardised
    units) for hundreds of steps; on simulated data 5e-2 came close to the true noise in 600
    steps and 1e-2 went part of the way (``docs/results.md``, "The observation noise").

    Args:
        num_features: D (required unless heteroscedastic).
        variance: initial per-feature variance (homoscedastic only).
        heteroscedastic: read the variance from the decoder's second output.
        learn_variance: learn the per-feature variance (False keeps it fixed, e.g. for
            a model with known noise).
        min_variance: floor added to the variance.
    """

    location_first = True

    def __init__(
        self,
        num_features: int | None = None,
        variance: float = 0.1,
        heteroscedastic: bool = False,
        learn_variance: bool = True,
        min_variance: float = 1e-6,
    ) -> None:
        super().__init__()
        check_num_features(num_features)
        self.num_features = num_features
        self.heteroscedastic = bool(heteroscedastic)
        self.num_params = 2 if self.heteroscedastic else 1
        if min_variance < 0:
            raise ValidationError(f"min_variance: expected >= 0, found {min_variance!r}")
        self.min_variance = float(min_variance)
        if not self.heteroscedastic:
            if num_features is None:
                raise ValidationError(
                    "num_features: expected a positive integer for a homoscedastic Gaussian "
                    "(one learned variance per feature), found None"
                )
            v = check_positive("variance", variance)
            if v <= self.min_variance:
                raise ValidationError(
                    f"variance: expected a value above min_variance={self.min_variance}, "
                    f"found {variance!r}"
                )
            raw = inv_softplus(torch.full((num_features,), v - self.min_variance))
            self.raw_variance = nn.Parameter(raw, requires_grad=learn_variance)

    def feature_variance(self) -> Tensor:
        """The learned per-feature variance (D,) (homoscedastic only)."""
        if self.heteroscedastic:
            raise ValidationError(
                "feature_variance: expected a homoscedastic Gaussian, found heteroscedastic"
            )
        return softplus(self.raw_variance) + self.min_variance

    def _mean_var(self, params: Params) -> tuple[Tensor, Tensor]:
        parts = self.split(params)
        if self.heteroscedastic:
            mean, raw_var = parts
            return mean, softplus(raw_var) + self.min_variance
        mean = parts[0]
        return mean, self.feature_variance().to(mean.dtype).expand_as(mean)

    def log_prob_entries(self, params: Params, y: Tensor) -> Tensor:
        mean, var = self._mean_var(params)
        return -0.5 * (math.log(2 * math.pi) + torch.log(var) + (y - mean) ** 2 / var)

    def mean(self, params: Params) -> Tensor:
        return self._mean_var(params)[0]

    def variance(self, params: Params) -> Tensor:
        return self._mean_var(params)[1]

    def sample(self, params: Params, generator: torch.Generator | None = None) -> Tensor:
        mean, var = self._mean_var(params)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + var.sqrt() * eps

    def predictive_sample(
        self,
        params: Params,
        y: Tensor,
        observed: Tensor,
        index: Tensor,
        valid: Tensor,
        generators: Sequence[torch.Generator],
    ) -> tuple[Tensor, Tensor]:
        """The base class's draws bit for bit (series b's noise, from ``generators[b]``,
        covers its own steps in the same order), with the mean and variance computed once
        for the whole batch."""
        mean, var = self._mean_var(params)  # (S, B, N, D) each
        lengths = [int(v) for v in valid.sum(dim=-1).tolist()]
        S, _, N, D = mean.shape
        eps = per_series_normal(generators, lengths, S, N, (D,), mean)  # zeros on padding
        draws = torch.where(valid[..., None], mean + var.sqrt() * eps, 0.0)
        return mean, draws

    def entry_draws(
        self, params: Params, entries: Tensor, generators: Sequence[torch.Generator]
    ) -> tuple[Tensor, Tensor]:
        """Noise for the wanted entries only: series b draws (S, M_b) normals from its own
        generator, one per wanted entry (the base class draws a whole step's)."""
        mean, var = self._mean_var(params)  # (S, B, N, D) each
        mean, sd = mean[:, entries], var[:, entries].sqrt()  # (S, M)
        counts = entries.flatten(1).sum(dim=1).tolist()  # M_b per series
        S = mean.shape[0]
        eps = [
            torch.randn((S, int(n)), generator=gen, dtype=mean.dtype, device=mean.device)
            for gen, n in zip(generators, counts)
            if n
        ]
        noise = torch.cat(eps, dim=1) if eps else torch.zeros_like(mean)
        return mean, mean + sd * noise
