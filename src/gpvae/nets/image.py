"""Image encoder and decoder: a small CNN per frame, for sequences of images.

Each point of a series is one image frame of ``H x W`` pixels, flattened row-major into the
D = H * W features of the batch (as :mod:`gpvae.datasets.hmnist` stores Healing MNIST). The
networks reshape the (B * N) frames (or (S * B * N) for sampled latents) into one
convolution batch, so a whole batch of sequences costs one call per layer.

- :class:`ImageEncoder` sees, per frame, two channels: the masked frame ``y * observed``
  and the mask ``observed``. Two stride-2 convolutions and a dense layer give the frame's
  pseudo-observation (mean, var) for every latent channel, and the banded posterior's
  off-diagonal when ``num_outputs == 3``. It is a plain encoder in the sense of
  :mod:`gpvae.nets.mlp`: it never guesses from zeros that a frame is empty; excluding frames
  with nothing observed (var = +inf) is the structured posterior's job, and the diagonal
  and banded families use the finite variance the network emits there.
- :class:`ImageDecoder` maps a latent (L,) through a dense layer to a ``C x h x w`` feature
  map and stride-2 transposed convolutions up to ``H x W``: one logit per pixel for the
  Bernoulli likelihood (or ``num_params`` maps for likelihoods with more parameters).

Shapes: B series, N frames per series, D = H * W pixels, L latent channels, S samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from gpvae.errors import ShapeError, ValidationError
from gpvae.nets.mlp import Activation, HeadEncoder, check_sizes

__all__ = ["ImageDecoder", "ImageEncoder"]


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int]:
    shape = tuple(image_shape)
    if len(shape) != 2 or any(
        isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape
    ):
        raise ValidationError(
            f"image_shape: expected two positive integers (H, W), found {image_shape!r}"
        )
    return shape[0], shape[1]


def _check_channels(channels: Sequence[int]) -> tuple[int, ...]:
    out = tuple(channels)
    if not out or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in out):
        raise ValidationError(
            f"channels: expected a non-empty sequence of positive integers, found {channels!r}"
        )
    return out


def _halved(size: int, times: int) -> int:
    """Spatial size after ``times`` convolutions (kernel 3, stride 2, padding 1)."""
    for _ in range(times):
        size = (size + 1) // 2
    return size


class ImageEncoder(HeadEncoder):
    """Per-frame CNN encoder over (masked frame, mask).

    Layers: ``len(channels)`` convolutions (kernel 3, stride 2, padding 1, activation), each
    halving the frame (28 -> 14 -> 7 for the defaults), a dense layer of width ``hidden``
    and a linear head of ``num_outputs * L`` values per frame, split as in
    :func:`gpvae.nets.mlp.split_heads`: ``var = softplus(raw) + min_var``.

    Args:
        image_shape: (H, W); D = H * W must be the last axis of ``y``.
        latent_dim: L.
        channels: output channels of the convolutions.
        hidden: width of the dense layer after the convolutions.
        num_outputs: 2 for (mean, var) (structured and diagonal posteriors), 3 for the
            banded posterior (mean, var, off-diagonal).
        min_var: floor added to the softplus variance.
        activation: a zero-argument callable building the activation module.

    Shapes:
        ``forward(y (B, N, H*W), observed (B, N, H*W) bool)`` -> ``num_outputs`` tensors
        (B, N, L).
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (28, 28),
        latent_dim: int = 16,
        channels: Sequence[int] = (32, 64),
        hidden: int = 256,
        num_outputs: int = 2,
        min_var: float = 1e-4,
        activation: Activation = nn.ReLU,
    ) -> None:
        shape = _check_image_shape(image_shape)
        H, W = shape
        super().__init__(H * W, latent_dim, num_outputs, min_var)
        self.image_shape = shape
        check_sizes("hidden", hidden)
        chans = _check_channels(channels)
        layers: list[nn.Module] = []
        width = 2
        for c in chans:
            layers += [nn.Conv2d(width, c, kernel_size=3, stride=2, padding=1), activation()]
            width = c
        layers.append(nn.Flatten())
        flat = width * _halved(H, len(chans)) * _halved(W, len(chans))
        layers += [
            nn.Linear(flat, hidden),
            activation(),
            nn.Linear(hidden, num_outputs * latent_dim),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, y: Tensor, observed: Tensor) -> tuple[Tensor, ...]:
        frames = self.masked(y, observed, dim=2)  # (B, N, 2, D)
        B, N, _ = y.shape
        H, W = self.image_shape
        h = self.net(frames.reshape(B * N, 2, H, W)).reshape(B, N, -1)  # (B, N, num_outputs * L)
        return self.heads(h)


class ImageDecoder(nn.Module):
    """Transposed-convolution decoder from a latent vector to per-pixel parameters.

    Layers: dense ``L -> hidden -> channels[0] * h0 * w0`` (activations between), then one
    transposed convolution (kernel 4, stride 2, padding 1) per entry of ``channels``, each
    doubling the map (7 -> 14 -> 28 for the defaults; the last one emits ``num_params``
    maps, and the others end in an activation), centre-cropped to (H, W) when H or W is
    not a multiple of ``2 ** len(channels)``. No output activation: for the Bernoulli
    likelihood the maps are logits.

    Args:
        latent_dim: L.
        image_shape: (H, W); the output has D = H * W features.
        channels: channels of the feature maps entering each transposed convolution.
        hidden: width of the dense hidden layer.
        num_params: parameters per pixel the likelihood needs
            (:attr:`gpvae.likelihoods.Likelihood.num_params`): 1 returns one tensor, more
            return a tuple.
        activation: a zero-argument callable building the activation module.

    Shapes:
        ``forward(z (..., N, L))`` -> (..., N, H*W), or a tuple of ``num_params`` of them.
    """

    def __init__(
        self,
        latent_dim: int,
        image_shape: Sequence[int] = (28, 28),
        channels: Sequence[int] = (64, 32),
        hidden: int = 256,
        num_params: int = 1,
        activation: Activation = nn.ReLU,
    ) -> None:
        super().__init__()
        check_sizes("latent_dim", latent_dim)
        check_sizes("hidden", hidden)
        check_sizes("num_params", num_params)
        self.image_shape = _check_image_shape(image_shape)
        chans = _check_channels(channels)
        H, W = self.image_shape
        self.latent_dim = latent_dim
        self.num_features = H * W
        self.num_params = num_params
        scale = 2 ** len(chans)
        self._base = (math.ceil(H / scale), math.ceil(W / scale))
        self.dense = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            activation(),
            nn.Linear(hidden, chans[0] * self._base[0] * self._base[1]),
            activation(),
        )
        self._base_channels = chans[0]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans, (*chans[1:], num_params)):
            layers.append(nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1))
            layers.append(activation())
        layers.pop()  # no activation after the last layer
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor | tuple[Tensor, ...]:
        if z.ndim < 2 or z.shape[-1] != self.latent_dim:
            raise ShapeError(
                f"z: expected shape (..., N, {self.latent_dim}), found {tuple(z.shape)}"
            )
        lead = z.shape[:-1]  # (..., N)
        H, W = self.image_shape
        h0, w0 = self._base
        h = self.dense(z.reshape(-1, self.latent_dim))  # (M, C0 h0 w0), M = prod(lead)
        h = h.reshape(-1, self._base_channels, h0, w0)  # (M, C0, h0, w0)
        out = self.deconv(h)  # (M, P, h0 * 2^k, w0 * 2^k)
        top = (out.shape[-2] - H) // 2
        left = (out.shape[-1] - W) // 2
        out = out[..., top : top + H, left : left + W]  # (M, P, H, W)
        out = out.reshape(*lead, self.num_params, H * W)  # (..., N, P, D)
        if self.num_params == 1:
            return out[..., 0, :]  # (..., N, D)
        return tuple(out.unbind(dim=-2))
