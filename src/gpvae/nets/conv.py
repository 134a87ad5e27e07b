"""Temporal convolutional encoder for series on a regular grid (Fortuin et al. 2020).

A 1-D convolution over the N axis mixes each point with its neighbours before a per-point
MLP emits the outputs; like Fortuin's GP-VAE encoder it assumes equally spaced points (the
convolution sees positions, not times). Padding (``valid`` False) is seen as unobserved.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gpvae.errors import ValidationError
from gpvae.nets.mlp import MLP, Activation, check_encoder_inputs, check_sizes, split_heads

__all__ = ["ConvEncoder"]


class ConvEncoder(nn.Module):
    """Conv1d over time, then a per-point MLP; same outputs as :class:`MLPEncoder`.

    Args:
        num_features: D.
        latent_dim: L.
        channels: output channels of the temporal convolution.
        kernel_size: odd window length of the convolution (Fortuin uses 3).
        hidden: hidden widths of the per-point MLP after the convolution.
        num_outputs: 2 for (mean, var), 3 for the banded posterior (mean, var, off-diagonal).
        min_var: floor added to the softplus variance.
        activation: a zero-argument callable building the activation module.

    Shapes:
        ``forward(y (B, N, D), observed (B, N, D))`` -> ``num_outputs`` tensors (B, N, L).
    """

    def __init__(
        self,
        num_features: int,
        latent_dim: int,
        channels: int = 128,
        kernel_size: int = 3,
        hidden: Sequence[int] = (64,),
        num_outputs: int = 2,
        min_var: float = 1e-4,
        activation: Activation = nn.ReLU,
    ) -> None:
        super().__init__()
        check_sizes("num_features", num_features)
        check_sizes("latent_dim", latent_dim)
        check_sizes("channels", channels)
        check_sizes("kernel_size", kernel_size)
        if kernel_size % 2 != 1:
            raise ValidationError(f"kernel_size: expected an odd integer, found {kernel_size}")
        if isinstance(num_outputs, bool) or num_outputs not in (2, 3):
            raise ValidationError(f"num_outputs: expected 2 or 3, found {num_outputs!r}")
        self.num_features = num_features
        self.latent_dim = latent_dim
        self.num_outputs = num_outputs
        self.min_var = float(min_var)
        self.conv = nn.Conv1d(2 * num_features, channels, kernel_size, padding=kernel_size // 2)
        self.act = activation()
        self.mlp = MLP(channels, hidden, num_outputs * latent_dim, activation)

    def forward(self, y: Tensor, observed: Tensor) -> tuple[Tensor, ...]:
        check_encoder_inputs(y, observed, self.num_features)
        obs = observed.to(y.dtype)
        inp = torch.cat([y * obs, obs], dim=-1).transpose(1, 2)  # (B, 2D, N)
        h = self.act(self.conv(inp)).transpose(1, 2)  # (B, N, channels)
        out = self.mlp(h)  # (B, N, num_outputs * L)
        return split_heads(out, self.latent_dim, self.num_outputs, self.min_var)
