"""Student-t likelihood with learned per-feature degrees of freedom and scale (robust)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.functional import softplus

from gpvae.errors import ValidationError
from gpvae.kernels.base import inv_softplus
from gpvae.likelihoods.base import Likelihood, Params, check_num_features, check_positive

__all__ = ["StudentT"]


class StudentT(Likelihood):
    """y[n, d] = mean[n, d] + scale[d] * t_{df[d]}; the decoder emits the location (..., N, D).

    ``df[d] = softplus(raw_df[d]) + min_df`` and ``scale[d] = softplus(raw_scale[d]) + 1e-6``
    are learned per feature. Heavy tails make the fit robust to corrupted entries.

    Density: ``Gamma((df+1)/2) / (Gamma(df/2) sqrt(df pi) scale)
    * (1 + ((y - mean) / scale)^2 / df)^(-(df+1)/2)``.

    Args:
        num_features: D.
        df: initial degrees of freedom.
        scale: initial scale.
        min_df: lower bound of the degrees of freedom (1 keeps the mean defined; the
            variance, ``scale^2 df / (df - 2)``, is reported as +inf for df <= 2).
    """

    num_params = 1
    location_first = True

    def __init__(
        self, num_features: int, df: float = 4.0, scale: float = 0.3, min_df: float = 1.0
    ) -> None:
        super().__init__()
        check_num_features(num_features)
        self.num_features = num_features
        if min_df < 0:
            raise ValidationError(f"min_df: expected >= 0, found {min_df!r}")
        self.min_df = float(min_df)
        df = check_positive("df", df)
        if df <= self.min_df:
            raise ValidationError(f"df: expected a value above min_df={self.min_df}, found {df}")
        scale = check_positive("scale", scale)
        self.raw_df = nn.Parameter(inv_softplus(torch.full((num_features,), df - self.min_df)))
        self.raw_scale = nn.Parameter(inv_softplus(torch.full((num_features,), scale - 1e-6)))

    @property
    def df(self) -> Tensor:
        """Degrees of freedom (D,)."""
        return softplus(self.raw_df) + self.min_df

    @property
    def scale(self) -> Tensor:
        """Scale (D,)."""
        return softplus(self.raw_scale) + 1e-6

    def log_prob_entries(self, params: Params, y: Tensor) -> Tensor:
        (loc,) = self.split(params)
        df, scale = self.df.to(loc.dtype), self.scale.to(loc.dtype)
        r2 = ((y - loc) / scale) ** 2
        return (
            torch.lgamma((df + 1) / 2)
            - torch.lgamma(df / 2)
            - 0.5 * torch.log(df * math.pi)
            - torch.log(scale)
            - (df + 1) / 2 * torch.log1p(r2 / df)
        )

    def mean(self, params: Params) -> Tensor:
        return self.split(params)[0]

    def variance(self, params: Params) -> Tensor:
        (loc,) = self.split(params)
        df, scale = self.df.to(loc.dtype), self.scale.to(loc.dtype)
        safe = torch.where(df > 2, df - 2, torch.ones_like(df))
        var = torch.where(df > 2, scale**2 * df / safe, torch.full_like(df, float("inf")))
        return var.expand_as(loc)

    def sample(self, params: Params, generator: torch.Generator | None = None) -> Tensor:
        (loc,) = self.split(params)
        df, scale = self.df.to(loc.dtype), self.scale.to(loc.dtype)
        # t = z / sqrt(g / df), z ~ N(0, 1), g ~ chi2(df) = 2 * Gamma(df / 2, 1). The Gamma draw
        # uses torch._standard_gamma because torch.distributions takes no generator.
        z = torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
        gamma = torch._standard_gamma((df / 2).expand_as(loc).contiguous(), generator=generator)
        return loc + scale * z / torch.sqrt(2 * gamma / df)
