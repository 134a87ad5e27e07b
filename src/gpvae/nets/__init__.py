"""Encoders and decoders: per-point MLP, partial inference network, temporal convolution,
image CNN.

Any ``nn.Module`` with the same call signature and shapes may be used instead; see
:mod:`gpvae.nets.mlp` for the contracts.
"""

from __future__ import annotations

from gpvae.nets.conv import ConvEncoder
from gpvae.nets.gru import GRUEncoder
from gpvae.nets.image import ImageDecoder, ImageEncoder
from gpvae.nets.interp import FieldFusion, InterpolationFusion
from gpvae.nets.mlp import MLP, MLPDecoder, MLPEncoder, PartialEncoder

__all__ = [
    "MLP",
    "ConvEncoder",
    "FieldFusion",
    "GRUEncoder",
    "ImageDecoder",
    "ImageEncoder",
    "InterpolationFusion",
    "MLPDecoder",
    "MLPEncoder",
    "PartialEncoder",
]
