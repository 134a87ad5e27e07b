"""Bernoulli likelihood on logits, for binary data (e.g. binarised image pixels)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import binary_cross_entropy_with_logits

from gpvae.likelihoods.base import Likelihood, Params, check_num_features

__all__ = ["Bernoulli"]


class Bernoulli(Likelihood):
    """y[n, d] ~ Bernoulli(sigmoid(logits[n, d])); the decoder emits logits (..., N, D).

    ``log_prob`` is ``-binary_cross_entropy_with_logits``, which is also defined for y in
    [0, 1] (grey levels as soft targets).

    Args:
        num_features: D, or None to accept any number of features.
    """

    num_params = 1

    def __init__(self, num_features: int | None = None) -> None:
        super().__init__()
        check_num_features(num_features)
        self.num_features = num_features

    def log_prob_entries(self, params: Params, y: Tensor) -> Tensor:
        (logits,) = self.split(params)
        y = y.to(logits.dtype).expand_as(logits)
        return -binary_cross_entropy_with_logits(logits, y, reduction="none")

    def mean(self, params: Params) -> Tensor:
        return torch.sigmoid(self.split(params)[0])

    def variance(self, params: Params) -> Tensor:
        p = self.mean(params)
        return p * (1 - p)

    def sample(self, params: Params, generator: torch.Generator | None = None) -> Tensor:
        return torch.bernoulli(self.mean(params), generator=generator)
