"""Per-point MLP encoders and decoder.

Encoder contract (every encoder here, and any user ``nn.Module`` passed instead)::

    encoder(y, observed) -> (mean, var, *extra)

with ``y`` (B, N, D) float (zeros where unobserved), ``observed`` (B, N, D) bool, and each
output (B, N, L). ``mean`` and ``var`` are the per-point Gaussian pseudo-observations (or, for
the diagonal and banded posteriors, the posterior's own means and variances); ``extra``
outputs are unconstrained (the banded posterior reads a third one, the off-diagonal of its
bidiagonal precision factor). Excluding points with no observed feature (var = +inf) is the
posterior's job, not the encoder's: the plain encoders never guess it from zeros.

Decoder contract: ``decoder(z)`` with ``z`` (..., N, L) returns the likelihood's parameters,
a tensor (..., N, D) or a tuple of them (see :class:`gpvae.likelihoods.Likelihood`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.functional import softplus
from torch.utils.checkpoint import checkpoint

from gpvae import settings
from gpvae.batch import any_along
from gpvae.errors import ShapeError, ValidationError

__all__ = [
    "MLP",
    "HeadEncoder",
    "MLPDecoder",
    "MLPEncoder",
    "PartialEncoder",
    "check_encoder_inputs",
    "check_sizes",
    "split_heads",
]

Activation = Callable[[], nn.Module]


def check_sizes(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{name}: expected a positive integer, found {value!r}")


def _check_hidden(hidden: Sequence[int]) -> tuple[int, ...]:
    out = tuple(hidden)
    for h in out:
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise ValidationError(
                f"hidden: expected a sequence of positive integers, found {hidden!r}"
            )
    return out


class MLP(nn.Sequential):
    """A plain multilayer perceptron acting on the last axis.

    Args:
        in_features: input width.
        hidden: widths of the hidden layers (may be empty for a linear map).
        out_features: output width.
        activation: a zero-argument callable building the activation module.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: Activation = nn.ReLU,
    ) -> None:
        check_sizes("in_features", in_features)
        check_sizes("out_features", out_features)
        layers: list[nn.Module] = []
        width = in_features
        for h in _check_hidden(hidden):
            layers += [nn.Linear(width, h), activation()]
            width = h
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """The MLP on the last axis of ``x`` (..., in_features), on the CPU over chunks of
        rows: without gradients, chunks whose widest layer output holds at most
        :data:`gpvae.settings.MLP_INFERENCE_CHUNK_BYTES` (cache-sized; a quarter of
        :data:`gpvae.settings.MLP_CHUNK_BYTES` if that is smaller), written into one output;
        with gradients, when the widest layer's output would exceed
        :data:`gpvae.settings.MLP_CHUNK_BYTES`, chunks of a quarter of that, each
        checkpointed; else in one pass. The cost chunking avoids is glibc's fresh mappings
        of large tensors and layers reading their inputs from memory rather than cache,
        which a GPU does not have. Every row's arithmetic is the same as in one pass."""
        width = x.shape[-1]
        rows = x.numel() // width if width else 0
        widest = max((m.out_features for m in self if isinstance(m, nn.Linear)), default=width)
        per_row = widest * x.element_size()
        limit = settings.MLP_CHUNK_BYTES
        if x.device.type != "cpu":
            return super().forward(x)
        grad = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.parameters())
        )
        if not grad:
            most = min(limit // 4, settings.MLP_INFERENCE_CHUNK_BYTES)
            if rows * per_row <= most:
                return super().forward(x)
            return self._in_chunks(x.reshape(rows, width), max(1, most // per_row)).reshape(
                *x.shape[:-1], -1
            )
        if rows * per_row <= limit:
            return super().forward(x)
        chunk = max(1, limit // (4 * per_row))  # well below the limit: see the setting
        run = super().forward
        outs = [
            checkpoint(run, part, use_reentrant=False)
            for part in x.reshape(rows, width).split(chunk)
        ]
        out = torch.cat(outs)
        return out.reshape(*x.shape[:-1], out.shape[-1])

    def _in_chunks(self, x: Tensor, chunk: int) -> Tensor:
        """(rows, out_features) of ``x`` (rows, in_features) run ``chunk`` rows at a time
        without gradients, into one preallocated output (ReLUs applied in place on the
        layers' own outputs)."""
        out: Tensor | None = None
        for start in range(0, x.shape[0], chunk):
            part = x[start : start + chunk]
            h = part
            for layer in self:
                in_place = isinstance(layer, nn.ReLU) and h is not part
                h = h.relu_() if in_place else layer(h)
            if out is None:
                out = h.new_empty((x.shape[0], h.shape[-1]))
            out[start : start + len(part)] = h
        assert out is not None  # x has rows: the caller runs one pass otherwise
        return out


def check_encoder_inputs(y: Tensor, observed: Tensor, num_features: int) -> None:
    """Raise :class:`~gpvae.errors.ShapeError` unless ``y`` and ``observed`` are (B, N, D)."""
    if y.ndim != 3 or y.shape[-1] != num_features:
        raise ShapeError(f"y: expected shape (B, N, {num_features}), found {tuple(y.shape)}")
    if observed.shape != y.shape:
        raise ShapeError(
            f"observed: expected shape {tuple(y.shape)} to match y, found {tuple(observed.shape)}"
        )


def split_heads(h: Tensor, latent_dim: int, num_outputs: int, min_var: float) -> tuple[Tensor, ...]:
    """Split a (..., num_outputs * L) head into (mean, var, *extra), each (..., L).

    ``var = softplus(raw) + min_var``; extra outputs are returned unconstrained.
    """
    parts = h.split(latent_dim, dim=-1)  # num_outputs x (..., L)
    mean, raw_var, *extra = parts
    var = softplus(raw_var) + min_var
    return (mean, var, *extra)


class HeadEncoder(nn.Module):
    """Base of the encoders that end in one linear head of ``num_outputs * L`` values per point.

    It checks the sizes every such encoder shares, builds the masked input
    ``concat(y * observed, observed)`` and splits the head with :func:`split_heads`.

    Args:
        num_features: D.
        latent_dim: L.
        num_outputs: 2 for (mean, var), 3 for the banded posterior (mean, var, off-diagonal).
        min_var: floor added to the softplus variance.
    """

    def __init__(self, num_features: int, latent_dim: int, num_outputs: int, min_var: float):
        super().__init__()
        check_sizes("num_features", num_features)
        check_sizes("latent_dim", latent_dim)
        if isinstance(num_outputs, bool) or num_outputs not in (2, 3):
            raise ValidationError(f"num_outputs: expected 2 or 3, found {num_outputs!r}")
        self.num_features = num_features
        self.latent_dim = latent_dim
        self.num_outputs = num_outputs
        self.min_var = float(min_var)

    def masked(self, y: Tensor, observed: Tensor, dim: int = -1) -> Tensor:
        """Checked ``y * observed`` and ``observed`` stacked (``dim`` new) or joined (-1)."""
        check_encoder_inputs(y, observed, self.num_features)
        obs = observed.to(y.dtype)
        if dim == -1:
            return torch.cat([y * obs, obs], dim=-1)  # (B, N, 2D)
        return torch.stack([y * obs, obs], dim=dim)

    def heads(self, h: Tensor) -> tuple[Tensor, ...]:
        """(mean, var, *extra) from a (..., num_outputs * L) head."""
        return split_heads(h, self.latent_dim, self.num_outputs, self.min_var)


class MLPEncoder(HeadEncoder):
    """Per-point MLP encoder: each point's input is ``concat(y * observed, observed)``.

    Args:
        num_features: D, the number of observed features.
        latent_dim: L, the number of latent channels.
        hidden: hidden layer widths.
        num_outputs: how many (B, N, L) outputs to emit: 2 for (mean, var) (structured and
            diagonal posteriors), 3 for the banded posterior (mean, var, off-diagonal).
        min_var: floor added to the softplus variance.
        activation: a zero-argument callable building the activation module.

    Shapes:
        ``forward(y (B, N, D), observed (B, N, D))`` -> ``num_outputs`` tensors (B, N, L).
    """

    def __init__(
        self,
        num_features: int,
        latent_dim: int,
        hidden: Sequence[int] = (128, 64),
        num_outputs: int = 2,
        min_var: float = 1e-4,
        activation: Activation = nn.ReLU,
    ) -> None:
        super().__init__(num_features, latent_dim, num_outputs, min_var)
        self.net = MLP(2 * num_features, hidden, num_outputs * latent_dim, activation)

    def forward(self, y: Tensor, observed: Tensor) -> tuple[Tensor, ...]:
        return self.heads(self.net(self.masked(y, observed)))  # (B, N, L) each


class PartialEncoder(nn.Module):
    """Partial inference network (Ashman et al. 2020, "Sparse Gaussian process variational
    autoencoders"): every observed feature contributes a Gaussian factor, and factors add.

    For point n and feature d, a shared MLP sees ``(y[n, d], embedding[d])`` and emits, for each
    latent channel, a precision ``lam[n, d] > 0`` and a precision-weighted mean ``eta[n, d]``.
    The point's pseudo-observation is the product of the factors of its observed features::

        prec[n] = sum_{d observed} lam[n, d],   mean[n] = sum_{d observed} eta[n, d] / prec[n]

    so a point becomes more precise with every observed feature, and a point with no observed
    feature gets precision 0, i.e. ``var = +inf`` and ``mean = 0`` exactly (excluded from the
    structured posterior by construction, not guessed from zeros).

    Args:
        num_features: D.
        latent_dim: L.
        hidden: hidden widths of the shared per-feature MLP.
        embedding_dim: width of the learned per-feature embedding.
        min_precision: floor added to each factor's softplus precision.
        activation: a zero-argument callable building the activation module.

    Shapes:
        ``forward(y (B, N, D), observed (B, N, D))`` -> (mean, var), each (B, N, L).
    """

    num_outputs = 2

    def __init__(
        self,
        num_features: int,
        latent_dim: int,
        hidden: Sequence[int] = (64, 64),
        embedding_dim: int = 8,
        min_precision: float = 1e-4,
        activation: Activation = nn.ReLU,
    ) -> None:
        super().__init__()
        check_sizes("num_features", num_features)
        check_sizes("latent_dim", latent_dim)
        check_sizes("embedding_dim", embedding_dim)
        self.num_features = num_features
        self.latent_dim = latent_dim
        self.min_precision = float(min_precision)
        self.embedding = nn.Parameter(torch.randn(num_features, embedding_dim) / embedding_dim**0.5)
        self.net = MLP(1 + embedding_dim, hidden, 2 * latent_dim, activation)

    def forward(self, y: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
        check_encoder_inputs(y, observed, self.num_features)
        B, N, D = y.shape
        emb = self.embedding.to(y.dtype).expand(B, N, D, -1)  # (B, N, D, E)
        h = self.net(torch.cat([y[..., None], emb], dim=-1))  # (B, N, D, 2L)
        eta, raw_lam = h.split(self.latent_dim, dim=-1)  # (B, N, D, L) each
        lam = softplus(raw_lam) + self.min_precision
        obs = observed[..., None].to(y.dtype)  # (B, N, D, 1)
        prec = (lam * obs).sum(dim=-2)  # (B, N, L)
        eta_sum = (eta * obs).sum(dim=-2)  # (B, N, L)
        has_obs = any_along(observed, -1, keepdim=True)  # (B, N, 1)
        safe_prec = torch.where(has_obs, prec, torch.ones_like(prec))
        mean = torch.where(has_obs, eta_sum / safe_prec, torch.zeros_like(prec))
        var = torch.where(has_obs, 1.0 / safe_prec, torch.full_like(prec, float("inf")))
        return mean, var


class MLPDecoder(nn.Module):
    """Per-point MLP decoder from latents to likelihood parameters.

    Args:
        latent_dim: L.
        num_features: D.
        hidden: hidden layer widths (empty for a linear decoder).
        num_params: parameters per feature the likelihood needs
            (:attr:`gpvae.likelihoods.Likelihood.num_params`): 1 returns one tensor, more
            return a tuple.
        activation: a zero-argument callable building the activation module.

    Shapes:
        ``forward(z (..., N, L))`` -> (..., N, D), or a tuple of ``num_params`` of them.
    """

    def __init__(
        self,
        latent_dim: int,
        num_features: int,
        hidden: Sequence[int] = (64, 128),
        num_params: int = 1,
        activation: Activation = nn.ReLU,
    ) -> None:
        super().__init__()
        check_sizes("latent_dim", latent_dim)
        check_sizes("num_features", num_features)
        check_sizes("num_params", num_params)
        self.latent_dim = latent_dim
        self.num_features = num_features
        self.num_params = num_params
        self.net = MLP(latent_dim, hidden, num_params * num_features, activation)

    def forward(self, z: Tensor) -> Tensor | tuple[Tensor, ...]:
        if z.shape[-1] != self.latent_dim:
            raise ShapeError(
                f"z: expected shape (..., N, {self.latent_dim}), found {tuple(z.shape)}"
            )
        h = self.net(z)  # (..., N, num_params * D)
        if self.num_params == 1:
            return h
        return tuple(h.split(self.num_features, dim=-1))
