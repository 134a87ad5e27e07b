"""Encoders and decoders by name: the registry the estimator and the command line read.

``build_encoder("mlp", D, L, hidden, num_outputs)`` and ``build_decoder("mlp", L, D, hidden,
num_params)`` make the named networks; :func:`encoder_names` / :func:`decoder_names` list
the choices. ``hidden`` holds the hidden widths (the MLP decoder uses them reversed; the
convolutional networks read their channel width from ``hidden[0]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from torch import nn

from gpvae.arguments import check_name
from gpvae.errors import ValidationError
from gpvae.nets.conv import ConvEncoder
from gpvae.nets.gru import GRUEncoder
from gpvae.nets.image import ImageDecoder, ImageEncoder
from gpvae.nets.mlp import MLPDecoder, MLPEncoder, PartialEncoder

__all__ = [
    "build_decoder",
    "build_encoder",
    "decoder_key",
    "decoder_names",
    "encoder_key",
    "encoder_names",
    "square_image_shape",
]

#: ``factory(num_features, latent_dim, hidden, num_outputs)``.
EncoderFactory = Callable[[int, int, Sequence[int], int], nn.Module]
#: ``factory(latent_dim, num_features, hidden, num_params)``.
DecoderFactory = Callable[[int, int, Sequence[int], int], nn.Module]


def square_image_shape(D: int, name: str) -> tuple[int, int]:
    """(H, W) of a square image with D = H * W pixels, or a ValidationError naming ``name``."""
    side = math.isqrt(D)
    if side * side != D:
        raise ValidationError(
            f"{name}: 'cnn' expected frames of a square image flattened to D = H * W features, "
            f"found D = {D}; pass an ImageEncoder / ImageDecoder module for other shapes"
        )
    return side, side


def _mlp_encoder(D: int, L: int, hidden: Sequence[int], num_outputs: int) -> nn.Module:
    return MLPEncoder(D, L, hidden=tuple(hidden), num_outputs=num_outputs)


def _partial_encoder(D: int, L: int, hidden: Sequence[int], num_outputs: int) -> nn.Module:
    if num_outputs != 2:
        raise ValidationError(
            "encoder: expected 'mlp' or 'conv' for posterior='banded' (it needs a third "
            "output), found 'partial'"
        )
    return PartialEncoder(D, L, hidden=tuple(hidden))


def _conv_encoder(D: int, L: int, hidden: Sequence[int], num_outputs: int) -> nn.Module:
    channels = hidden[0] if hidden else 64
    return ConvEncoder(D, L, channels=channels, hidden=tuple(hidden[1:]), num_outputs=num_outputs)


def _gru_encoder(D: int, L: int, hidden: Sequence[int], num_outputs: int) -> nn.Module:
    size = hidden[0] if hidden else 64
    return GRUEncoder(D, L, hidden_size=size, hidden=tuple(hidden[1:]), num_outputs=num_outputs)


def _cnn_encoder(D: int, L: int, hidden: Sequence[int], num_outputs: int) -> nn.Module:
    width = hidden[0] if hidden else 256
    shape = square_image_shape(D, "encoder")
    return ImageEncoder(shape, L, hidden=width, num_outputs=num_outputs)


def _mlp_decoder(L: int, D: int, hidden: Sequence[int], num_params: int) -> nn.Module:
    return MLPDecoder(L, D, hidden=tuple(reversed(tuple(hidden))), num_params=num_params)


def _cnn_decoder(L: int, D: int, hidden: Sequence[int], num_params: int) -> nn.Module:
    width = hidden[0] if hidden else 256
    return ImageDecoder(L, square_image_shape(D, "decoder"), hidden=width, num_params=num_params)


_ENCODERS: dict[str, EncoderFactory] = {
    "mlp": _mlp_encoder,
    "partial": _partial_encoder,
    "conv": _conv_encoder,
    "gru": _gru_encoder,
    "cnn": _cnn_encoder,
}
_DECODERS: dict[str, DecoderFactory] = {"mlp": _mlp_decoder, "cnn": _cnn_decoder}


def encoder_names() -> list[str]:
    """The encoder names: ``mlp`` (per point), ``partial`` (per-feature evidence), ``conv``
    (temporal convolution), ``gru`` (bidirectional GRU over the steps), ``cnn`` (square image
    frames)."""
    return list(_ENCODERS)


def decoder_names() -> list[str]:
    """The decoder names: ``mlp``, ``cnn`` (square image frames)."""
    return list(_DECODERS)


def encoder_key(name: object) -> str:
    """The normalised encoder name, or an error naming ``encoder`` with the choices."""
    return check_name("encoder", name, encoder_names())


def decoder_key(name: object) -> str:
    """The normalised decoder name, or an error naming ``decoder`` with the choices."""
    return check_name("decoder", name, decoder_names())


def build_encoder(
    name: str, num_features: int, latent_dim: int, hidden: Sequence[int], num_outputs: int
) -> nn.Module:
    """The named encoder for D = ``num_features`` and L = ``latent_dim``."""
    return _ENCODERS[encoder_key(name)](num_features, latent_dim, hidden, num_outputs)


def build_decoder(
    name: str, latent_dim: int, num_features: int, hidden: Sequence[int], num_params: int
) -> nn.Module:
    """The named decoder from L = ``latent_dim`` to ``num_params`` (..., D) outputs."""
    return _DECODERS[decoder_key(name)](latent_dim, num_features, hidden, num_params)
