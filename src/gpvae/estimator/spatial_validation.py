"""Validation of the spatial fit: windows with hidden sites and entries, the score, the
fusion's spatial weight and power and the interval calibration (used by :func:`~gpvae.estimator.
spatial.fit_field`).

Each validation window hides one site whole (predicted from the others: the task of
:func:`~gpvae.estimator.spatial.predict_sites`) and a share of the other entries as points
or blocks (the task of :func:`~gpvae.estimator.spatial.impute_field`). For the interval
factors of new sites, the windows are also copied so that their sites are hidden whole in
turn (up to ``settings.SPATIAL_VAL_SITE_WINDOWS`` copies): one hidden site per window would
calibrate those intervals on a handful of sites.

Shapes: B (copies of) validation windows, W window steps, S sites, D features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from gpvae import settings
from gpvae.data.holdout import RUN_PATTERNS, run_mask
from gpvae.data.spatial import field_batch
from gpvae.model import GPVAEModel, sorted_quantiles
from gpvae.nets.interp import FieldFusion

if TYPE_CHECKING:
    from gpvae.batch import Batch

__all__ = [
    "SiteValidation",
    "calibrate",
    "gate_sites",
    "pick_new_site_residual",
    "pick_space_power",
    "pick_space_weight",
    "predict_hidden",
]

#: Share of the other sites' observed entries hidden in a validation window.
VAL_POINT_SHARE = 0.1

#: Candidate factors on the fusion's spatial weight (``exp(theta)``), tried on validation.
SPACE_WEIGHTS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 8.0, 16.0)

#: Candidate powers of the fusion's inverse distance weights (0: the mean of the other
#: sites; 6: nearly the nearest site), tried per feature on the training field.
SPACE_POWERS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)

#: At most this many site pairs x times enter :func:`pick_space_power` (times are thinned
#: evenly beyond it).
SPACE_POWER_MAX_WORK = 50_000_000


def pick_space_power(
    values: np.ndarray, xy: np.ndarray, powers: tuple[float, ...] = SPACE_POWERS
) -> np.ndarray:
    """Per feature, the power of inverse distance weighting with the smallest mean absolute
    error when each observed entry is predicted from the other sites observed at the same
    time (leave one site out, the rule of :func:`gpvae.data.interpolate.space_interpolation`),
    on a field of values; ties go to the earlier power. A feature with no entry to predict
    keeps power 2.

    Args:
        values: (T, S, D) values, NaN where missing.
        xy: (S, k) site coordinates.
        powers: the candidates.

    Returns:
        (D,) float powers.
    """
    T, S, D = values.shape
    keep = max(1, min(T, SPACE_POWER_MAX_WORK // max(S * S, 1)))
    values = values[np.unique(np.linspace(0, T - 1, keep).round().astype(int))]
    obs = ~np.isnan(values)
    yv = np.where(obs, values, 0.0)
    o = obs.astype(float)
    r = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
    apart = r > 0  # co-located sites (and a site itself) are not each other's neighbours
    safe = np.where(apart, r, 1.0)
    errors, count = [], np.zeros(D)
    for p in powers:
        w = np.where(apart, safe**-p, 0.0)  # (S, S)
        num, den = np.einsum("ks,tsd->tkd", w, yv), np.einsum("ks,tsd->tkd", w, o)
        has = obs & (den > 0)  # the same entries for every power
        err = np.where(has, np.abs(num / np.where(has, den, 1.0) - yv), 0.0)
        count = has.sum((0, 1))
        errors.append(err.sum((0, 1)) / np.maximum(count, 1))
    best = np.array([powers[i] for i in np.argmin(np.stack(errors), axis=0)], dtype=float)
    return np.where(count > 0, best, 2.0)


def gate_sites(num_sites: int, seed: int) -> np.ndarray:
    """The sites a spatial fit with a fusion holds out of training to decide, per feature,
    whether the fusion's residual helps at new sites: ``settings.SPATIAL_GATE_SITE_SHARE``
    of them (at least one), none below ``settings.SPATIAL_GATE_MIN_SITES`` sites."""
    if num_sites < settings.SPATIAL_GATE_MIN_SITES:
        return np.zeros(0, dtype=int)
    k = max(1, round(settings.SPATIAL_GATE_SITE_SHARE * num_sites))
    rng = np.random.default_rng((seed, 18))
    return np.sort(rng.choice(num_sites, size=k, replace=False))


def pick_new_site_residual(
    model: GPVAEModel,
    values: np.ndarray,
    held: np.ndarray,
    xy: np.ndarray,
    times: np.ndarray,
    window: int,
    seed: int,
) -> np.ndarray:
    """Per feature, whether the fusion's residual helps where a site has no observation of
    its own (a new site): the sites ``held`` were never observed in training; every window
    of ``values`` is predicted with them unobserved, with the residual (gate 1) and without
    it (gate 0, the fusion's interpolation alone), and the gate with the smaller MAE at their
    observed entries is kept (1 on ties or without entries).

    Args:
        model: a trained model with a :class:`~gpvae.nets.FieldFusion`.
        values: (T, S, D) standardised values of every site.
        held: the held-out site indices.
        xy, times: the sites' km and the steps.
        window: steps per window.
        seed: seeds the draws (the same for both gates).

    Returns:
        (D,) 0/1 floats (all ones without a fusion or held sites).
    """
    fusion = model.interp_fusion
    D = values.shape[-1]
    if not isinstance(fusion, FieldFusion) or len(held) == 0:
        return np.ones(D)
    T, S, _ = values.shape
    inputs = values.copy()
    inputs[:, held] = np.nan
    starts = list(range(0, T, window))
    err, count = np.zeros((2, D)), np.zeros(D)
    trained = fusion.new_site_residual.detach().clone()
    with torch.no_grad():
        for i in range(0, len(starts), 32):
            chunk = starts[i : i + 32]
            batch = field_batch(inputs, xy, times, chunk, window)
            target = np.full((len(chunk), window, len(held), D), np.nan)
            for b, a in enumerate(chunk):
                n = min(a + window, T) - a
                target[b, :n] = values[a : a + n][:, held]
            ok = ~np.isnan(target)
            count += ok.sum((0, 1, 2))
            for g in (0, 1):
                fusion.new_site_residual.fill_(float(g))
                mean, _ = predict_hidden(model, batch, 4, torch.Generator().manual_seed(seed))
                pred = mean.reshape(len(chunk), window, S, D).double().numpy()[:, :, held]
                err[g] += np.where(ok, np.abs(pred - np.where(ok, target, 0.0)), 0.0).sum((0, 1, 2))
        fusion.new_site_residual.copy_(trained)
    return np.where((count > 0) & (err[0] < err[1]), 0.0, 1.0)


def site_copies(num_windows: int, num_sites: int) -> int:
    """How many copies of each validation window the new-site calibration makes, each with
    its own site hidden whole: as many as fit ``settings.SPATIAL_VAL_SITE_WINDOWS`` in all,
    at least one, at most one per site."""
    if num_windows <= 0:
        return 0
    return max(1, min(num_sites, settings.SPATIAL_VAL_SITE_WINDOWS // num_windows))


@dataclass
class SiteValidation:
    """Validation copies of windows of a field.

    Attributes:
        starts: (B,) first step of each copy (a window appears once per copy).
        target: (B, W, S, D) standardised values (NaN where missing or past the end).
        hidden: (B, W, S, D) bool, the observed entries hidden from the model in each copy.
        whole: (B, W, S, D) bool, the hidden entries of the copy's site hidden whole.
    """

    starts: list[int]
    target: np.ndarray
    hidden: np.ndarray
    whole: np.ndarray

    @classmethod
    def make(
        cls,
        values: np.ndarray,
        starts: list[int],
        W: int,
        seed: int,
        pattern: str = "points",
        lengths: tuple[int, int] = (2, 24),
        copies: int = 1,
    ) -> SiteValidation:
        """``copies`` copies of each window starting at ``starts`` of ``values`` (T, S, D):
        the k-th copy overall hides site ``k % S`` whole and a share of the rest as
        ``pattern``."""
        T, S, D = values.shape
        rng = np.random.default_rng(seed)
        all_starts = [a for a in starts for _ in range(copies)]
        B = len(all_starts)
        target = np.full((B, W, S, D), np.nan)
        hidden = np.zeros((B, W, S, D), dtype=bool)
        whole = np.zeros((B, W, S, D), dtype=bool)
        short = (min(lengths[0], W), min(lengths[1], W))
        for b, a in enumerate(all_starts):
            n = min(a + W, T) - a
            target[b, :n] = values[a : a + n]
            observed = ~np.isnan(target[b])
            if pattern in RUN_PATTERNS:  # runs along each site's steps
                for s in range(S):
                    hidden[b, :, s] = run_mask(pattern, observed[:, s], VAL_POINT_SHARE, short, rng)
            else:
                hidden[b] = rng.random((W, S, D)) < VAL_POINT_SHARE
            hidden[b, :, b % S] = True
            whole[b, :, b % S] = True
            hidden[b] &= observed
            whole[b] &= observed
        return cls(all_starts, target, hidden, whole)

    def batch(self, xy: np.ndarray, times: np.ndarray) -> Batch:
        """The copies as a batch, with the hidden entries unobserved."""
        from gpvae.batch import Batch

        T = len(times)
        B, W, S, D = self.target.shape
        nothing = np.broadcast_to(np.float64(np.nan), (T, S, D))  # x and valid only, no copy
        out = field_batch(nothing, xy, times, self.starts, W)
        y = torch.as_tensor(np.where(self.hidden, np.nan, self.target).reshape(B, W * S, D))
        observed = ~torch.isnan(y)
        y = torch.where(observed, y, torch.zeros_like(y)).to(out.y.dtype)
        return Batch.from_tensors(y, observed, out.x, out.valid)

    def split(self, pred: torch.Tensor) -> np.ndarray:
        """Batch predictions (..., B, W S, D) -> (..., B, W, S, D)."""
        p = pred.cpu().numpy()
        return p.reshape(*p.shape[:-2], *self.target.shape[1:])

    def mae(self, mean: torch.Tensor) -> float:
        """MAE of the hidden entries."""
        err = np.abs(self.split(mean) - self.target)
        return float(err[self.hidden].mean())


def predict_hidden(
    model: GPVAEModel, batch: Batch, num_samples: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictive mean (B, N, D) and draws (S, B, N, D) of every entry of the batch (with
    ``interp_skip``, fused with each site's interpolation of the batch's observed entries)."""
    q = model.encode(batch)
    z = q.rsample(num_samples, gen)  # (S, B, N, L)
    params = model.decode(z, batch)
    lik = model.likelihood
    return lik.mean(params).mean(0), lik.sample(params, gen)


def pick_space_weight(model: GPVAEModel, batch: Batch, val: SiteValidation, seed: int) -> None:
    """With a :class:`~gpvae.nets.FieldFusion`: per feature, the weight of the spatial
    interpolation against the one in time (``log_space_weight``) that gives the smallest
    MAE on the hidden validation entries, among the trained value times ``SPACE_WEIGHTS``
    (the same draws for every candidate)."""
    fusion = model.interp_fusion
    if not isinstance(fusion, FieldFusion):
        return
    D = val.target.shape[-1]
    hidden = val.hidden.reshape(-1, D)
    trained = fusion.log_space_weight.detach().clone()
    errors = []
    with torch.no_grad():
        for factor in SPACE_WEIGHTS:
            fusion.log_space_weight.copy_(trained + math.log(factor))
            mean, _ = predict_hidden(model, batch, 4, torch.Generator().manual_seed(seed))
            err = np.abs(val.split(mean) - val.target).reshape(-1, D)
            err = np.where(hidden, err, 0.0)
            errors.append(err.sum(0) / np.maximum(hidden.sum(0), 1))
        best = np.argmin(np.stack(errors), axis=0)  # first (smallest factor) on ties
        logs = torch.tensor([math.log(SPACE_WEIGHTS[i]) for i in best], dtype=trained.dtype)
        fusion.log_space_weight.copy_(trained + logs)


def calibrate(
    model: GPVAEModel,
    batch: Batch,
    val: SiteValidation,
    seed: int,
    only_whole: bool = False,
) -> np.ndarray:
    """Per-feature factors on the interval half-widths so that 90% of the hidden validation
    entries (only those of the sites hidden whole with ``only_whole``) fall inside the
    (5%, 95%) interval."""
    with torch.no_grad():
        mean, draws = predict_hidden(model, batch, 100, torch.Generator().manual_seed(seed + 1))
        lo_t, hi_t = sorted_quantiles(draws, (0.05, 0.95), "predictive")
    m, lo, hi = val.split(mean), val.split(lo_t), val.split(hi_t)
    hidden = val.whole if only_whole else val.hidden
    out = np.ones(m.shape[-1])
    for j in range(len(out)):
        h = hidden[..., j]
        if h.sum() < 20:
            continue
        t, mj = val.target[..., j][h], m[..., j][h]
        up = (t - mj) / np.maximum(hi[..., j][h] - mj, 1e-9)
        down = (mj - t) / np.maximum(mj - lo[..., j][h], 1e-9)
        out[j] = float(np.quantile(np.where(t >= mj, up, down), 0.9))
    return np.clip(out, 0.2, 20.0)
