"""Bidirectional GRU encoder: each point's pseudo-observation sees the whole series.

The per-point MLP encoder sees one time step; with most features missing at most steps (ICU
records) its pseudo-observations are weak. A bidirectional GRU over ``concat(y * observed,
observed)`` lets every point's output depend on what was observed before and after it
(with mask channels, so "missing" is never read as zero), before the GP posterior combines
the points. Like :class:`~gpvae.nets.ConvEncoder` it reads positions, not times; padding
(``valid`` False) is seen as unobserved.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gpvae.nets.mlp import MLP, Activation, HeadEncoder, check_sizes

__all__ = ["GRUEncoder"]


class GRUEncoder(HeadEncoder):
    """Bidirectional GRU over the steps, then a per-point MLP; outputs as :class:`MLPEncoder`.

    Args:
        num_features: D.
        latent_dim: L.
        hidden_size: units of the GRU in each direction.
        hidden: hidden widths of the per-point MLP after the GRU.
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
        hidden_size: int = 64,
        hidden: Sequence[int] = (64,),
        num_outputs: int = 2,
        min_var: float = 1e-4,
        activation: Activation = nn.ReLU,
    ) -> None:
        super().__init__(num_features, latent_dim, num_outputs, min_var)
        check_sizes("hidden_size", hidden_size)
        self.gru = nn.GRU(2 * num_features, hidden_size, batch_first=True, bidirectional=True)
        self.mlp = MLP(2 * hidden_size + 2 * num_features, hidden, num_outputs * latent_dim,
                       activation)  # fmt: skip

    def forward(self, y: Tensor, observed: Tensor) -> tuple[Tensor, ...]:
        inp = self.masked(y, observed)  # (B, N, 2D)
        h, _ = self.gru(inp)  # (B, N, 2 hidden_size)
        return self.heads(self.mlp(torch.cat([h, inp], dim=-1)))
