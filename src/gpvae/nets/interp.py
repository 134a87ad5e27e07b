"""Fusing the decoder's prediction with each feature's own interpolation.

Sparse records (ICU stays) observe each feature at its own times: near an observation of the
feature, interpolating between its neighbours is hard to beat; far from one, the latent
model's prediction from the other features is the better guess. :class:`InterpolationFusion`
predicts the location of every entry as a residual on the interpolation,
``base + net(decoded, interpolated, closeness)``, where ``base`` is the interpolated value
where the feature has an observed neighbour and the decoder's prediction where it has none,
and ``closeness = 1 / (1 + gap)`` (0 without a neighbour) tells the net how far the nearer
neighbour is. The net's last layer starts at zero, so an untrained model predicts exactly
linear interpolation, and training learns where and by how much to depart from it, from
all the features at that step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gpvae.nets.mlp import MLP, check_sizes

__all__ = ["InterpolationFusion"]


class InterpolationFusion(nn.Module):
    """``base + net(concat(decoded, interpolated, closeness))`` at unseen entries.

    Args:
        num_features: D.
        hidden: hidden widths of the net (3 D inputs, D outputs).

    Shapes:
        ``forward(decoded (..., B, N, D), interpolated (B, N, D), gap (B, N, D), seen (B, N,
        D))`` -> like ``decoded``; ``gap`` is the distance to the feature's nearer observed
        neighbour, inf where it has none; ``seen`` marks the entries the encoder saw: they keep
        the decoder's value (which may copy what the encoder saw), so the net learns only
        from entries hidden from the encoder (artificial missingness), the kind imputation
        asks for.
    """

    def __init__(self, num_features: int, hidden: Sequence[int] = (64,)) -> None:
        super().__init__()
        check_sizes("num_features", num_features)
        self.num_features = num_features
        self.net = MLP(3 * num_features, tuple(hidden), num_features, nn.ReLU)
        last = [m for m in self.net.modules() if isinstance(m, nn.Linear)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, decoded: Tensor, interpolated: Tensor, gap: Tensor, seen: Tensor) -> Tensor:
        near = torch.isfinite(gap)
        closeness = torch.where(near, 1.0 / (1.0 + gap.clamp_min(0)), torch.zeros_like(gap))
        value = torch.where(near, interpolated, torch.zeros_like(interpolated))
        shape = decoded.shape
        value, closeness = value.expand(shape), closeness.expand(shape)
        base = torch.where(near.expand(shape), value, decoded)
        fused = base + self.net(torch.cat([decoded, value, closeness], dim=-1))
        return torch.where(seen.expand(shape), decoded, fused)
