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
all the features at that step. With ``cross``, a feature regression (BRITS's: each feature
from the *other* features seen at the same step, linear, its own value and mask excluded)
predicts ``p`` everywhere, and the interpolation is applied to the regression's residual
instead of the value: ``base = p + interp(y - p)``; the net also reads ``p``. So a gap of
one feature follows the other features through the gap, offset by how far the feature sat
from their prediction at its neighbours. The regression starts at zero (plain
interpolation again).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gpvae.nets.mlp import MLP, check_sizes

__all__ = ["CROSS_OPTIONS", "FieldFusion", "InterpolationFusion", "cross_options"]

CROSS_OPTIONS = ("fill", "window", "fade", "fit")
"""The options of the feature regression (``interp_cross="fill+fade"`` etc.)."""


def cross_options(value: object, name: str = "interp_cross") -> frozenset[str] | None:
    """``interp_cross`` as a set of options: None for False, empty for True, else the
    ``+``-joined names of :data:`CROSS_OPTIONS`; a ValueError naming ``name`` otherwise."""
    if value is False:
        return None
    if value is True:
        return frozenset()
    if isinstance(value, str):
        parts = value.split("+")
        if all(p in CROSS_OPTIONS for p in parts) and len(set(parts)) == len(parts):
            return frozenset(parts)
    raise ValueError(
        f"{name}: expected True, False or options from {CROSS_OPTIONS} joined by '+', "
        f"found {value!r}"
    )


class InterpolationFusion(nn.Module):
    """``base + net(concat(decoded, interpolated, closeness))`` at unseen entries.

    Args:
        num_features: D.
        hidden: hidden widths of the net (3 D inputs, 4 D with ``cross``; D outputs).
        cross: add the feature regression (:meth:`regression`) and interpolate its residual;
            a string names options (:func:`cross_options`).

    Shapes:
        ``forward(decoded (..., B, N, D), interpolated (B, N, D), gap (B, N, D), seen (B, N,
        D), regressed (B, N, D) or None, regressed_interp (B, N, D) or None)`` -> like
        ``decoded``; with ``cross`` ``regressed`` is :meth:`regression`'s ``p`` and
        ``regressed_interp`` its interpolation from the seen entries (as ``interpolated`` is
        y's); ``gap`` is the distance to the feature's nearer observed neighbour, inf where
        it has none;
        ``seen`` marks the entries the encoder saw: they keep the decoder's value (which may
        copy what the encoder saw), so the net learns only from entries hidden from the
        encoder (artificial missingness), the kind imputation asks for.
    """

    def __init__(
        self, num_features: int, hidden: Sequence[int] = (64,), cross: bool | str = False
    ) -> None:
        super().__init__()
        check_sizes("num_features", num_features)
        self.num_features = num_features
        options = cross_options(cross, "cross")
        self.cross = options is not None
        self.options = frozenset() if options is None else options
        inputs = (4 if self.cross else 3) * num_features
        self.net = MLP(inputs, tuple(hidden), num_features, nn.ReLU)
        self.regress: nn.Linear | None = None
        self.fade_rate: nn.Parameter | None = None
        if self.cross:
            steps = 3 if "window" in self.options else 1
            self.regress = nn.Linear(2 * steps * num_features, num_features)
            nn.init.zeros_(self.regress.weight)
            nn.init.zeros_(self.regress.bias)
            own = torch.eye(num_features, dtype=torch.bool).repeat(1, 2 * steps)  # (D, 2sD)
            self.others: Tensor
            self.register_buffer("others", (~own).float(), persistent=False)
            if "fade" in self.options:
                # rate = exp(FADE_SCALE * theta + FADE_START): near 0 at the start, and a step
                # of Adam's size moves it by a useful factor; row 0 two-sided, row 1 one-sided
                self.fade_rate = nn.Parameter(torch.zeros(2, num_features))
        last = [m for m in self.net.modules() if isinstance(m, nn.Linear)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    FADE_SCALE = 10.0
    FADE_START = -5.0

    def regression(self, y: Tensor, seen: Tensor, filled: Tensor | None = None) -> Tensor:
        """(B, N, D) ``p``: each feature from the other features' seen values and mask at the
        same step (its own never read, so ``p`` at a seen entry is an honest prediction);
        values of ``y`` where not ``seen`` are never read. With the ``fill`` option, unseen
        entries read ``filled`` (B, N, D), the interpolation of the seen ones (0 where a
        feature has no neighbour), instead of 0; with ``window`` the regression also reads
        the steps before and after (0 beyond the ends)."""
        if self.regress is None:
            raise ValueError("regression: expected a fusion made with cross=True")
        if "fill" in self.options:
            if filled is None:
                raise ValueError("filled: expected the interpolation with the fill option")
            now = torch.where(seen, y, filled)
        else:
            now = torch.where(seen, y, torch.zeros_like(y))
        inp = torch.cat([now, seen.to(now.dtype)], dim=-1)  # (B, N, 2D)
        if "window" in self.options:
            pad = torch.zeros_like(inp[:, :1])
            before = torch.cat([pad, inp[:, :-1]], dim=1)
            after = torch.cat([inp[:, 1:], pad], dim=1)
            inp = torch.cat([inp, before, after], dim=-1)
        return nn.functional.linear(inp, self.regress.weight * self.others, self.regress.bias)

    def fade(self, gap: Tensor, one_sided: Tensor) -> Tensor:
        """(B, N, D) factor ``exp(-rate gap)`` on the interpolated residual (1 without the
        ``fade`` option); ``one_sided`` marks entries with a neighbour on one side only."""
        if self.fade_rate is None:
            return torch.ones_like(gap)
        rate = torch.exp(self.FADE_SCALE * self.fade_rate + self.FADE_START)  # (2, D)
        r = torch.where(one_sided, rate[1], rate[0])
        return torch.exp(-r * torch.where(torch.isfinite(gap), gap, torch.zeros_like(gap)))

    def forward(
        self,
        decoded: Tensor,
        interpolated: Tensor,
        gap: Tensor,
        seen: Tensor,
        regressed: Tensor | None = None,
        regressed_interp: Tensor | None = None,
        one_sided: Tensor | None = None,
    ) -> Tensor:
        near = torch.isfinite(gap)
        closeness = torch.where(near, 1.0 / (1.0 + gap.clamp_min(0)), torch.zeros_like(gap))
        value = torch.where(near, interpolated, torch.zeros_like(interpolated))
        shape = decoded.shape
        value, closeness = value.expand(shape), closeness.expand(shape)
        parts = [decoded, value, closeness]
        if self.cross:
            if regressed is None or regressed_interp is None:
                raise ValueError(
                    "regressed: expected the regression and its interpolation with cross=True"
                )
            # p + interp(y - p): the interpolation is linear in the values
            if self.fade_rate is None:
                value = torch.where(near, value + regressed - regressed_interp, value)
            else:
                if one_sided is None:
                    raise ValueError("one_sided: expected the one-sided entries with fade")
                k = self.fade(gap, one_sided)
                value = torch.where(near, regressed + k * (value - regressed_interp), value)
            value = value.expand(shape)
            parts = [decoded, value, closeness, regressed.expand(shape)]
        base = torch.where(near.expand(shape), value, decoded)
        fused = base + self.net(torch.cat(parts, dim=-1))
        return torch.where(seen.expand(shape), decoded, fused)


class FieldFusion(nn.Module):
    """:class:`InterpolationFusion` for a space x time field: the decoder's prediction fused
    with the feature's interpolation in time at the same site *and* its inverse distance
    weighting over the other sites at the same time.

    ``base`` blends the two interpolations with weights that fall with their distances,
    ``w_t = 1 / gap`` (in time steps) and ``w_s = exp(theta_d) scale / dist`` (``theta_d`` a
    learned log-weight per feature, 0 at the start; a missing neighbour weighs 0), and is the
    decoder's prediction where neither exists; the net (last layer zero at the start) adds a
    residual from ``decoded``, both values and both closenesses (``1 / (1 + gap)`` in time,
    ``1 / (1 + dist / scale)`` in space; 0 without a neighbour). So an untrained model at a
    site with no observations of its own (a new site) predicts exactly inverse distance
    weighting, and training learns where and by how much to depart from it. The estimator
    also picks ``theta`` per feature on its validation entries after training
    (:func:`gpvae.estimator.spatial.fit_field`). The power of each feature's inverse distance
    weights (``space_power``, a buffer, 2 at the start) is set by the estimator before
    training, from the training field (:func:`gpvae.estimator.spatial_validation.pick_space_power`);
    the model passes it to :func:`gpvae.data.interpolate.space_interpolation`. Where an
    entry has no observed neighbour in time at its own site (a new site, or a site hidden
    for the whole window), the net's residual is multiplied by ``new_site_residual`` (a
    buffer, one 0/1 gate per feature, 1 at the start): the estimator sets it to 0 for the
    features where the residual made predictions worse at sites held out of training
    (:func:`gpvae.estimator.spatial_validation.pick_new_site_residual`).

    Args:
        num_features: D.
        scale: distance (in the sites' units, km) at which the spatial closeness is 1/2.
        hidden: hidden widths of the net (5 D inputs, D outputs).
    Shapes:
        ``forward(decoded (..., B, N, D), t_value, t_gap, s_value, s_dist, seen)`` (each of
        the last five (B, N, D)) -> like ``decoded``; entries in ``seen`` keep ``decoded``.
    """

    def __init__(self, num_features: int, scale: float, hidden: Sequence[int] = (64,)) -> None:
        super().__init__()
        check_sizes("num_features", num_features)
        if not scale > 0:
            raise ValueError(f"scale: expected a positive distance, found {scale}")
        self.num_features = num_features
        self.scale: Tensor
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.log_space_weight = nn.Parameter(torch.zeros(num_features))
        self.space_power: Tensor
        self.register_buffer("space_power", torch.full((num_features,), 2.0))
        self.new_site_residual: Tensor
        self.register_buffer("new_site_residual", torch.ones(num_features))
        self.net = MLP(5 * num_features, tuple(hidden), num_features, nn.ReLU)
        last = [m for m in self.net.modules() if isinstance(m, nn.Linear)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def _load_from_state_dict(  # type: ignore[no-untyped-def]
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
    ) -> None:
        # models saved before these buffers: power 2 and the residual everywhere
        state_dict.setdefault(prefix + "space_power", torch.full((self.num_features,), 2.0))
        state_dict.setdefault(prefix + "new_site_residual", torch.ones(self.num_features))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
        )

    def forward(
        self,
        decoded: Tensor,
        t_value: Tensor,
        t_gap: Tensor,
        s_value: Tensor,
        s_dist: Tensor,
        seen: Tensor,
    ) -> Tensor:
        near_t, near_s = torch.isfinite(t_gap), torch.isfinite(s_dist)
        zero = torch.zeros_like(t_value)
        t_close = torch.where(near_t, 1.0 / (1.0 + t_gap.clamp_min(0)), zero)
        s_close = torch.where(near_s, 1.0 / (1.0 + s_dist.clamp_min(0) / self.scale), zero)
        tv, sv = torch.where(near_t, t_value, zero), torch.where(near_s, s_value, zero)
        shape = decoded.shape
        tv, sv, t_close, s_close = (a.expand(shape) for a in (tv, sv, t_close, s_close))
        tiny = 1e-6  # a gap or distance of 0 cannot occur; keeps the weights finite
        w_t = torch.where(near_t, 1.0 / t_gap.clamp_min(tiny), zero)
        w_s = torch.where(
            near_s, self.log_space_weight.exp() * self.scale / s_dist.clamp_min(tiny), zero
        )
        total = w_t + w_s
        blend = (w_t * tv + w_s * sv) / torch.where(total > 0, total, torch.ones_like(total))
        either = (near_t | near_s).expand(shape)
        base = torch.where(either, blend.expand(shape), decoded)
        residual = self.net(torch.cat([decoded, tv, t_close, sv, s_close], dim=-1))
        gate = torch.where(near_t, torch.ones_like(t_value), self.new_site_residual)
        fused = base + gate.expand(shape) * residual
        return torch.where(seen.expand(shape), decoded, fused)
