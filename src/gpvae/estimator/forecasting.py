"""Forecasts of the estimator: future times, draws at them, results in the input's form.

Each series is conditioned on its whole history (the markov backend does this in O(T)),
the latent GP is extended to the future times and decoded, and the observation noise is
drawn (:meth:`gpvae.model.GPVAEModel.forecast_draws`). When the fit calibrated forecasts
(``GPVAE(forecast_horizon=...)``), the draws' spread around the mean is multiplied, per
feature and horizon band, by the factors of :mod:`gpvae.estimator.forecast_calibration`,
and the mean (with the draws) moves to its blend with a simple base forecast chosen on the
same origins (:mod:`gpvae.estimator.forecast_blend`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gpvae import settings
from gpvae.arguments import check_memory, interval_draws_arg, warn_few_draws
from gpvae.data import SeriesSet, batch_indices
from gpvae.errors import ValidationError
from gpvae.estimator.context import PredictContext
from gpvae.estimator.differencing import (
    difference_mask,
    increments,
    integrate,
    last_levels,
)
from gpvae.estimator.forecast_blend import ForecastBlend, blend_mean
from gpvae.estimator.imputation import impute_series
from gpvae.estimator.results import (
    ForecastResult,
    forecast_frame,
    resolve_future_times,
    time_texts,
    times_out,
)
from gpvae.model import sorted_quantiles
from gpvae.posteriors.structured import StructuredQ

__all__ = [
    "CALIBRATE_REMEDY",
    "REACH_SDS",
    "REACH_SHARE",
    "UNCALIBRATED_REMEDY",
    "LatentReach",
    "band_of_ahead",
    "band_of_steps",
    "batch_size_within",
    "check_forecasting_posterior",
    "forecast_draws",
    "forecast_series",
    "latent_reach_text",
    "steps_ahead",
]


def band_of_steps(num_steps: int, num_bands: int, horizon: int) -> np.ndarray:
    """Horizon band (0..num_bands-1) of each of ``num_steps`` future steps, for bands that
    split ``1..horizon`` into equal parts (steps beyond ``horizon`` take the last band)."""
    return band_of_ahead(np.arange(1, num_steps + 1), num_bands, horizon)


def band_of_ahead(ahead: np.ndarray, num_bands: int, horizon: int) -> np.ndarray:
    """Horizon band (0..num_bands-1) of future times ``ahead`` (any shape, ints >= 1) steps
    ahead, as :func:`band_of_steps` gives the k-th future step."""
    return np.minimum((np.asarray(ahead) - 1) * num_bands // max(horizon, 1), num_bands - 1)


def steps_ahead(ss: SeriesSet, future: np.ndarray, step: float) -> np.ndarray:
    """(n, H) how many steps of ``step`` (the model's time step) each of the (n, H)
    ``future`` times lies after its series' last time: rounded to the nearest step (a time
    off the step grid counts as the nearest step), at least 1 (the future times are after
    the last time, but one less than half a step after it rounds to 0 steps)."""
    last = _last_times(ss)
    k = np.rint((future - last[:, None]) / step)
    return np.clip(k, 1, 2**53).astype(np.int64)


def _spread(
    mean: Tensor, y: Tensor, scale: np.ndarray | None, horizon: int, ahead: np.ndarray
) -> Tensor:
    """Draws y (S, B, H, D) with their deviations from ``mean`` (B, H, D) scaled per band of
    the steps ``ahead`` (B, H) of each future time."""
    if scale is None:
        return y
    bands = band_of_ahead(ahead, scale.shape[0], horizon)
    factor = torch.as_tensor(scale[bands], dtype=y.dtype, device=y.device)  # (B, H, D)
    return mean + factor * (y - mean)


def batch_size_within(batch_size: int, num_samples: int, steps: int) -> int:
    """Series per batch of forecast draws: at most ``batch_size``, and few enough that S
    draws of the latent chain over history and future (``steps``) stay within
    :data:`gpvae.settings.FORECAST_BATCH_POINTS` draw x series x step points (at least 1)."""
    return max(1, min(batch_size, settings.FORECAST_BATCH_POINTS // (num_samples * steps)))


#: How many posterior sds either side of its mean a history point's latent counts as
#: covered by the posteriors the decoder was trained on (:class:`LatentReach`).
REACH_SDS = 3.0
#: The share of a latent channel's draws at the furthest forecast step outside the covered
#: range above which the forecast warns (:func:`_warn_latent_reach`).
REACH_SHARE = 0.5


class LatentReach:
    """Where a forecast's latent draws went against the latents of its histories.

    Per latent channel: the range ``[min(mean - 3 sd), max(mean + 3 sd)]`` of the posterior
    marginals over the histories' points with a pseudo-observation (an encoded observation),
    where the decoder saw latents in training when the histories are the training data, and
    the draws at each series' furthest future time. A channel the model does not use keeps
    its prior as posterior, so its draws stay in the range. Fed batch by batch through
    :meth:`GPVAEModel.forecast_draws`'s ``on_latents`` (:meth:`watch`): one smoother pass for
    the marginals per batch, no draw.
    """

    def __init__(self) -> None:
        self.low: list[Tensor] = []  # (B, L) each
        self.high: list[Tensor] = []
        self.far: list[Tensor] = []  # (S, B, L)

    def watch(self, x_new: Tensor) -> Callable[[StructuredQ, Tensor], None]:
        """The ``on_latents`` of a batch whose new points are ``x_new`` (B, H, 1)."""
        last = x_new[..., 0].argmax(dim=1)  # (B,) each series' furthest future time
        rows = torch.arange(x_new.shape[0], device=x_new.device)

        def add(q: StructuredQ, z: Tensor) -> None:
            mean, var = q.marginals()  # (B, N, L)
            sd = var.clamp_min(0).sqrt()
            inc = q.gp.included  # (B, N, L)
            inf = torch.full_like(mean, math.inf)
            self.low.append(torch.where(inc, mean - REACH_SDS * sd, inf).amin(dim=1).cpu())
            self.high.append(torch.where(inc, mean + REACH_SDS * sd, -inf).amax(dim=1).cpu())
            self.far.append(z[:, rows, last].float().cpu())

        return add

    def outside(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per latent channel (L,): the covered range's ends, the share of the draws at the
        furthest step outside it and those draws' 5% and 95% quantiles (4 x (L,))."""
        low = torch.cat(self.low).amin(dim=0).double().numpy()
        high = torch.cat(self.high).amax(dim=0).double().numpy()
        far = torch.cat(self.far, dim=1).flatten(0, 1).double().numpy()  # (S * n, L)
        share = ((far < low) | (far > high)).mean(axis=0)
        q05, q95 = np.quantile(far, (0.05, 0.95), axis=0)
        return np.stack([low, high]), share, q05, q95


def latent_reach_text(reach: LatentReach, furthest: int) -> str | None:
    """The warning when, in some latent channel, more than :data:`REACH_SHARE` of the draws
    ``furthest`` steps ahead lie outside the range the histories' posteriors cover
    (:class:`LatentReach`), or None (also when nothing was gathered)."""
    if not reach.far:
        return None
    ends, share, q05, q95 = reach.outside()
    away = np.flatnonzero(share > REACH_SHARE)
    if not len(away):
        return None
    where = "; ".join(
        f"channel {c}: the histories' posteriors cover [{ends[0, c]:.3g}, {ends[1, c]:.3g}], "
        f"{share[c]:.0%} of its draws lie outside (90% of them in [{q05[c]:.3g}, {q95[c]:.3g}])"
        for c in away
    )
    return (
        f"kernel: the forecast's latent paths leave the range the decoder was trained on "
        f"({furthest} steps ahead, posterior mean +- {REACH_SDS:g} sd over the histories' "
        f"observed steps): {where}. The forecast decodes latents the decoder never saw, so "
        "its levels (or increments, with difference=True) can be biased and its intervals "
        "far too wide; this happens when the kernel's lengthscale is long and the "
        "posteriors sit far from the prior mean, e.g. kernel='trend' on the increments of a "
        "series that wanders around a rising line (docs/forecasting.md). A shorter-range "
        "kernel such as 'matern32' or 'trend+matern32' keeps the latents in range; compare "
        "the choices with backtest"
    )


def _warn_latent_reach(reach: LatentReach, furthest: int) -> None:
    """Warn (at the caller of GPVAE.forecast) with :func:`latent_reach_text`, if any."""
    text = latent_reach_text(reach, furthest)
    if text is not None:
        warnings.warn(text, UserWarning, stacklevel=4)  # the caller of GPVAE.forecast


def forecast_draws(
    ctx: PredictContext,
    scaled: SeriesSet,
    future: np.ndarray,
    num_samples: int,
    salt: int = 2,
    ahead: np.ndarray | None = None,
    reach: LatentReach | None = None,
) -> Iterator[tuple[np.ndarray, Tensor, Tensor]]:
    """Per batch: series indices, mean (B, H, D) and S draws (S, B, H, D) in standardised
    units at ``future`` (n, H) times (input units), spread-calibrated when the context
    holds forecast factors and blended with a base forecast when it holds a blend.

    ``ahead`` (n, H): how many steps ahead each future time is (:func:`steps_ahead`; None:
    the consecutive steps 1..H), which picks its horizon band (of the spread factors and of
    the blend) and its base forecasts (the value one season before it, ...). When the blend
    anchors on the model's mean one step ahead and a series has no future time there, the
    model also forecasts that step (left out of the results).

    ``reach``: when given, gathers where the latent draws went (:class:`LatentReach`).

    The future times are checked before any work (naming ``future_times``).
    """
    model, scaler = ctx.model, ctx.scaler
    n, H = future.shape
    if ahead is None:
        ahead = np.broadcast_to(np.arange(1, H + 1), (n, H))
    blend = ctx.forecast_blend
    extra = blend is not None and _anchored(blend) and not bool((ahead == 1).any(axis=1).all())
    if extra:  # the anchored base needs the model's mean one step ahead
        last = _last_times(scaled)
        future = np.concatenate([(last + scaler.time_step_)[:, None], future], axis=1)
    x_all = scaler.scaled_times(future, "future_times")  # (n, H)
    gen = ctx.generator(salt)
    model.eval()
    horizon = ctx.forecast_horizon
    steps = max(len(t) for t in scaled.times) + future.shape[1]
    size = batch_size_within(ctx.batch_size, num_samples, steps)
    parts = -(-scaled.num_series // size)
    for idx in ctx.tracked(batch_indices(scaled.num_series, size), parts, "forecast"):
        batch = ctx.batch(scaled, idx)
        x_t = ctx.new_points(scaled, idx, x_all)  # in the batch rows' frames
        watch = None if reach is None else reach.watch(x_t)
        mean, y = model.forecast_draws(batch, x_t, num_samples, gen, watch)  # (B,H,D), (S,B,H,D)
        anchor = None
        if extra:
            anchor = mean[:, 0].double().cpu().numpy()  # (B, D)
            mean, y = mean[:, 1:], y[:, :, 1:]
        y = _spread(mean, y, ctx.forecast_scale, horizon, ahead[idx])
        if blend is not None:
            bands = band_of_ahead(ahead[idx], blend.base.shape[0], blend.horizon)
            histories = [scaled.values[i] for i in idx]
            moved = blend_mean(blend, mean, histories, bands, ahead[idx], anchor)
            y, mean = y + (moved - mean), moved
        yield idx, mean, y


def _anchored(blend: ForecastBlend) -> bool:
    """The blend uses its ``anchored`` base somewhere (a weight below 1 on it)."""
    used = blend.base[blend.weight < 1]
    return any(blend.names[k] == "anchored" for k in np.unique(used))


def _start_levels(ctx: PredictContext, ss: SeriesSet, num_samples: int) -> np.ndarray:
    """(n, D) the level each feature's forecast of increments starts from: its last observed
    value plus, when the series ends in a gap of that feature, the model's imputation of the
    increments since then (the mean of ``num_samples`` draws, as many as the forecast's;
    :mod:`gpvae.estimator.differencing`)."""
    level, gap = last_levels(ss)
    gap = gap * difference_mask(ctx.difference, ctx.scaler.feature_names_)  # levels: no start
    ended_in_gap = np.flatnonzero(gap.max(axis=1) > 0)
    if not len(ended_in_gap):
        return level
    inc = increments(ss, which=ctx.difference)
    plain = replace(ctx, difference=False, blend_weight=None)  # a model of the increments
    for i in ended_in_gap:
        filled = impute_series(plain, inc.subset([int(i)]), None, num_samples, (0.05, 0.95), False)
        steps = np.asarray(filled.mean[0])  # (T_i - 1, D), increments
        for d in np.flatnonzero(gap[i] > 0):
            level[i, d] += steps[len(steps) - gap[i, d] :, d].sum()
    return level


def _every_step(
    ss: SeriesSet, future: np.ndarray, ahead: np.ndarray, step: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """For a model of increments: (n, K) times of every step up to the last of the (n, H)
    ``future`` times, ``ahead`` steps after each series' last time (the future times in
    their steps, the model's time ``step`` apart elsewhere), and (n, H) the column of each
    future time among them; ``future`` itself and None when it holds the steps 1..H.

    The future times are after their series' last time
    (:func:`~gpvae.estimator.results.resolve_future_times` refuses others).

    Raises:
        ValidationError: naming ``future_times`` for two times in the same step.
    """
    n, H = future.shape
    last = _last_times(ss)
    for i, row in enumerate(ahead):
        k, first = np.unique(row, return_index=True)
        if len(k) < H:
            twice = int(np.setdiff1d(np.arange(H), first)[0])
            other = int(np.flatnonzero(row == row[twice])[0])
            one, two = time_texts(ss, future[i, [other, twice]])
            raise ValidationError(
                f"future_times: expected at most one time per step of the model's time step "
                f"({step:g}) with difference=True (each step adds one increment), found "
                f"{one} and {two} both {row[twice]} steps after the last time of "
                f"{ss.series_label(i)}"
            )
    if np.array_equal(ahead, np.broadcast_to(np.arange(1, H + 1), (n, H))):
        return future, None
    K = int(ahead.max())
    check_memory("future_times", 8.0 * n * K, f"{n} series x {K} steps up to the last time")
    grid = last[:, None] + step * np.arange(1, K + 1)
    np.put_along_axis(grid, ahead - 1, future, axis=1)  # the future times themselves
    return grid, ahead - 1


#: The remedies that the warnings on uncalibrated intervals and on steps beyond the
#: calibrated horizon give API users (``furthest``: the furthest step ahead); ``gpvae
#: forecast`` gives its own instead.
UNCALIBRATED_REMEDY = (
    "fit with forecast_horizon=H (gpvae fit --forecast-horizon H) or call "
    "calibrate_forecast(X, horizon=H) to calibrate them"
)
CALIBRATE_REMEDY = "calibrate_forecast(X, horizon={furthest}) calibrates them"


def _warn_uncalibrated(ctx: PredictContext, name: str, furthest: int) -> None:
    """Warn (at the caller of GPVAE.forecast) when the forecast intervals are the model's
    own, or when ``furthest`` steps ahead go beyond the calibrated horizon (``name``: the
    argument that set them)."""
    if ctx.forecast_scale is None:
        warnings.warn(
            "forecast_horizon: the forecast intervals are the model's own, not calibrated (no "
            "forecast_horizon at fit, or no room there for a calibration origin, and no "
            "calibrate_forecast since); on new data they can cover far less than their "
            f"nominal level: {UNCALIBRATED_REMEDY}",
            UserWarning,
            stacklevel=4,  # the caller of GPVAE.forecast
        )
    elif furthest > ctx.forecast_horizon:
        H = ctx.forecast_horizon
        bands = band_of_steps(H, ctx.forecast_scale.shape[0], H)
        first = int(np.flatnonzero(bands == bands[-1])[0]) + 1
        blended = " and blend" if ctx.forecast_blend is not None else ""
        warnings.warn(
            f"{name}: steps beyond the calibrated forecast_horizon={H} (up to {furthest} "
            f"here) reuse the spread factor{blended} of its last band, fitted on steps "
            f"{first}..{H} only: their intervals are not calibrated "
            f"({CALIBRATE_REMEDY.format(furthest=furthest)})",
            UserWarning,
            stacklevel=4,  # the caller of GPVAE.forecast
        )


def check_forecasting_posterior(posterior: str) -> None:
    """Raise naming ``posterior`` unless it can forecast (``"structured"``)."""
    if posterior != "structured":
        raise ValidationError(
            f"posterior: forecast expected a model fitted with posterior='structured' (its "
            f"posterior is a GP that can be evaluated at new times), found {posterior!r}"
        )


def _last_times(ss: SeriesSet) -> np.ndarray:
    """(n,) the last time of every series."""
    return np.array([t[-1] for t in ss.times], dtype=np.float64)


def forecast_series(
    ctx: PredictContext,
    X: Any,
    times: Any,
    horizon: int | None,
    future_times: Any,
    num_samples: int,
    quantiles: Sequence[float],
    return_samples: bool = False,
) -> ForecastResult:
    """:meth:`GPVAE.forecast` (see there)."""
    model, scaler = ctx.model, ctx.scaler
    check_forecasting_posterior(ctx.posterior)
    S, q_lo, q_hi = interval_draws_arg(num_samples, quantiles)
    ss, scaled = ctx.input(X, times)
    # (n, H) float, the input's units; a single-step series steps by the training time step
    future = resolve_future_times(ss, horizon, future_times, scaler.time_step_)
    future_name = "horizon" if future_times is None else "future_times"
    x_future = scaler.scaled_times(future, future_name)  # checked before any work
    # each series' times and its future times in one batch row, which float32 must resolve
    row_times = [
        np.concatenate([scaler.scaled_times(np.asarray(t, dtype=np.float64)), f])
        for t, f in zip(ss.times, x_future)
    ]
    scaler.check_resolution(row_times, future_name, "series {} with its future times")
    n, H = future.shape
    # steps ahead of each future time: its horizon band and base forecasts (horizon: 1..H)
    ahead = None if future_times is None else steps_ahead(ss, future, scaler.time_step_)
    furthest = H if ahead is None else int(ahead.max())
    grid, pick = future, None
    if ctx.difference and ahead is not None:  # increments add up one step at a time
        grid, pick = _every_step(ss, future, ahead, scaler.time_step_)
        ahead = None if pick is not None else ahead  # the grid's times are steps 1..K
    D = ss.num_features
    T_max = max(len(t) for t in ss.times)
    steps = T_max + grid.shape[1]  # forecast_draws' batches hold few series of long paths
    within = batch_size_within(ctx.batch_size, S, steps)
    # the draws cover the whole history: its length, not the horizon, sets the cost
    names = f"num_samples, {'X' if T_max >= grid.shape[1] else future_name}"
    ctx.check_draws(names, S, n, steps, batch=within, history=T_max)
    warn_few_draws(S, q_lo, q_hi)  # the inputs are checked: no warning before an error
    _warn_uncalibrated(ctx, future_name, furthest)
    if getattr(model, "interp_skip", False):
        warnings.warn(
            "interp_skip: the model was fitted with interp_skip=True, which is meant for "
            "imputation: past the data its base is the last observed value carried forward, "
            "so its forecasts revert to the last observed value (fit with interp_skip=False "
            "to forecast)",
            UserWarning,
            stacklevel=3,  # the caller of GPVAE.forecast
        )
    mean_out, lo_out, hi_out = (np.empty((n, H, D)) for _ in range(3))
    draws_out = np.empty((S, n, H, D)) if return_samples else None
    start = _start_levels(ctx, ss, S) if ctx.difference else None
    stepped = difference_mask(ctx.difference, ctx.scaler.feature_names_)
    reach = LatentReach()
    # a failed allocation names the arguments, with the remedies of check_draws
    with ctx.allocating(names, S, n, steps, history=T_max, batch=within):
        for idx, mean, y in forecast_draws(ctx, scaled, grid, S, ahead=ahead, reach=reach):
            if start is not None:  # cumulate the increments, draw by draw, from the last level
                incs = scaler.inverse_transform(y.double().cpu().numpy())
                paths = torch.as_tensor(integrate(start[idx], incs, stepped))
                mean = torch.as_tensor(
                    integrate(
                        start[idx], scaler.inverse_transform(mean.double().cpu().numpy()), stepped
                    )
                )
                if pick is not None:  # the levels at the future times among every step's
                    rows, cols = np.arange(len(idx))[:, None], pick[idx]
                    paths, mean = paths[:, rows, cols], mean[rows, cols]
                lo, hi = sorted_quantiles(paths, (q_lo, q_hi), "predictive")
                for out, t in ((mean_out, mean), (lo_out, lo), (hi_out, hi)):
                    out[idx] = t.numpy()
                if draws_out is not None:
                    draws_out[:, idx] = paths.numpy()
                continue
            lo, hi = sorted_quantiles(y, (q_lo, q_hi), "predictive")
            for out, t in ((mean_out, mean), (lo_out, lo), (hi_out, hi)):
                out[idx] = scaler.inverse_transform(t.double().cpu().numpy())
            if draws_out is not None:
                draws_out[:, idx] = scaler.inverse_transform(y.double().cpu().numpy())
    _warn_latent_reach(reach, furthest)
    dtype = ss.layout.dtype if ss.layout.dtype.kind == "f" else np.dtype(np.float64)
    t_out = times_out(ss, future)
    mean_c, lo_c, hi_c = (a.astype(dtype, copy=False) for a in (mean_out, lo_out, hi_out))
    return ForecastResult(
        times=t_out,
        mean=mean_c,
        lower=lo_c,
        upper=hi_c,
        samples=None if draws_out is None else draws_out.astype(dtype, copy=False),
        quantiles=(q_lo, q_hi),
        series_ids=ss.layout.series_ids,
        frame=forecast_frame(ss, t_out, mean_c, lo_c, hi_c),
    )
