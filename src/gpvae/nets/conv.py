"""Temporal convolutional encoder for series on a regular grid (Fortuin et al. 2020).

A 1-D convolution over the N axis mixes each point with its neighbours before a per-point
MLP emits the outputs; like Fortuin's GP-VAE encoder it assumes equally spaced points (the
convolution sees positions, not times: a gap of 48 steps between two rows is read as one
step; :meth:`gpvae.GPVAE.fit` warns on such times). Padding (``valid`` False) is seen as
unobserved.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from gpvae.errors import ValidationError
from gpvae.nets.mlp import MLP, Activation, HeadEncoder, check_sizes

__all__ = ["ConvEncoder"]


class ConvEncoder(HeadEncoder):
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
        super().__init__(num_features, latent_dim, num_outputs, min_var)
        check_sizes("channels", channels)
        check_sizes("kernel_size", kernel_size)
        if kernel_size % 2 != 1:
            raise ValidationError(f"kernel_size: expected an odd integer, found {kernel_size}")
        self.conv = nn.Conv1d(2 * num_features, channels, kernel_size, padding=kernel_size // 2)
        self.act = activation()
        self.mlp = MLP(channels, hidden, num_outputs * latent_dim, activation)

    def forward(self, y: Tensor, observed: Tensor) -> tuple[Tensor, ...]:
        inp = self.masked(y, observed).transpose(1, 2)  # (B, 2D, N)
        h = self.act(self.conv(inp)).transpose(1, 2)  # (B, N, channels)
        return self.heads(self.mlp(h))  # (B, N, L) each
