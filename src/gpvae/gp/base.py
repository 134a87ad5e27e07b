"""The GP posterior interface shared by every backend.

A :class:`GPPosterior` is the GP prior over ``L`` independent latent channels conditioned on
Gaussian pseudo-observations: for channel ``l`` of series ``b``, at index points ``x[b]``,

    mean[b, n, l] = f_l(x[b, n]) + eps,   eps ~ N(0, var[b, n, l]),

where ``var = +inf`` excludes a point exactly and ``valid[b, n] = False`` marks padding (also
excluded). Shapes: B series, N points, d index dimension, L channels, S samples, M new points.
"""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor

__all__ = ["GPPosterior", "expected_pseudo_loglik"]


class GPPosterior(abc.ABC):
    """GP prior conditioned on pseudo-observations (one per backend).

    Attributes:
        x: (B, N, d) index points.
        mean: (B, N, L) pseudo-observation means.
        var: (B, N, L) pseudo-observation variances (+inf where excluded).
        valid: (B, N) bool, False for padding.
    """

    x: Tensor
    mean: Tensor
    var: Tensor
    valid: Tensor

    @property
    def included(self) -> Tensor:
        """(B, N, L) bool: the pseudo-observations that take part (finite var, not padding)."""
        finite = self.var.detach().abs() < math.inf  # isfinite in two passes, not five
        return finite if bool(self.valid.all()) else finite & self.valid[..., None]

    @property
    @abc.abstractmethod
    def log_marginal(self) -> Tensor:
        """(B, L) log N(mean | 0, K + diag(var)) over the included points of each channel."""

    @abc.abstractmethod
    def marginals(self) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of f at ``x``: two (B, N, L) tensors."""

    @abc.abstractmethod
    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Joint posterior samples of f at ``x``, reparameterised: (S, B, N, L)."""

    @abc.abstractmethod
    def predict(self, x_new: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of f at ``x_new`` (B, M, d): two (B, M, L) tensors."""

    @abc.abstractmethod
    def sample_at(
        self, x_new: Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Joint posterior samples of f at ``x_new`` (B, M, d): (S, B, M, L)."""

    def kl(self) -> Tensor:
        """(B, L) KL(q || p) of this posterior q to the GP prior p.

        Because q is p conditioned on the pseudo-observations,
        ``KL = E_q[log N(mean | f, var)] - log_marginal``, which needs only the marginals
        of q (so it costs what the backend's smoother costs).
        """
        post_mean, post_var = self.marginals()
        return expected_pseudo_loglik(self.mean, self.var, self.included, post_mean, post_var) - (
            self.log_marginal
        )


def expected_pseudo_loglik(
    mean: Tensor, var: Tensor, included: Tensor, post_mean: Tensor, post_var: Tensor
) -> Tensor:
    """E_q[log N(mean | f, var)] summed over included points, per series and channel.

    Args:
        mean, var: (B, N, L) pseudo-observations.
        included: (B, N, L) bool, the terms to sum.
        post_mean, post_var: (B, N, L) marginals of q.

    Returns:
        (B, L).
    """
    # Mask before any arithmetic: excluded entries may hold NaN/inf (e.g. a NaN mean on
    # padding), and a masked-out NaN would still poison the backward pass.
    safe_var = torch.where(included, var, torch.ones_like(var))
    safe_mean = torch.where(included, mean, torch.zeros_like(mean))
    sq = (safe_mean - post_mean) ** 2 + post_var
    terms = -0.5 * (math.log(2 * math.pi) + torch.log(safe_var) + sq / safe_var)
    return torch.where(included, terms, torch.zeros_like(terms)).sum(dim=-2)
