"""Calibrated forecast intervals: rolling-origin forecasts inside the data.

After fit, each series long enough is cut at up to :data:`NUM_ORIGINS` origins ``T - k H``
(k = 1, 2, ...; H the calibration horizon): the model forecasts the next H steps from the
whole history before the origin, and the forecasts are compared with what followed.
Those futures were part of the training data. With
:data:`gpvae.settings.FORECAST_HOLDOUT_ORIGINS` = N > 0, a fit with ``forecast_horizon=H``
instead trains on each series without its last :func:`holdout_origins` horizons
(:func:`without_tail`; up to N, at most half the series) and calibrates on the origins in
that held-out tail only, which the model was not fitted to (off by default: on Seattle
weather a tail of 4 horizons is one season and gave worse coverage, see the setting).
:meth:`GPVAE.calibrate_forecast` on new data uses up to :data:`NUM_ORIGINS` origins per
series. The draws' spread around the mean is then rescaled, per feature and per horizon
band (:data:`NUM_BANDS` equal parts of 1..H), by the factor whose central intervals at the
levels of :data:`gpvae.estimator.calibration.LEVELS` cover the truth closest to their
nominal rates (:func:`gpvae.estimator.calibration.interval_scales`). Forecast errors grow
with the horizon in ways the latent GP's variance alone does not capture (the decoder and
the likelihood are fitted on one-step reconstructions), hence bands.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from gpvae import settings
from gpvae.data import SeriesSet, batch_indices, to_series_set
from gpvae.data.batching import shard_bounds
from gpvae.estimator.calibration import LEVELS, factors_at_bounds, interval_scales
from gpvae.estimator.context import PredictContext
from gpvae.estimator.forecast_blend import ForecastBlend, fit_blend, simple_forecasts
from gpvae.estimator.forecasting import (
    LatentReach,
    band_of_steps,
    batch_size_within,
    latent_reach_text,
)
from gpvae.model import sorted_quantiles
from gpvae.rng import series_seed
from gpvae.training.distributed import Communicator

__all__ = [
    "NUM_BANDS",
    "NUM_ORIGINS",
    "calibrate_and_blend",
    "calibrate_forecasts",
    "has_origin",
    "holdout_origins",
    "no_origin_text",
    "origins_of",
    "without_tail",
]

#: Rolling origins per series (fewer for series shorter than (origins + 1) x horizon).
NUM_ORIGINS = 12
#: Horizon bands with a factor of their own (fewer for horizons shorter than this).
NUM_BANDS = 4


def _min_history(horizon: int) -> int:
    return max(2 * horizon, 8)


def no_origin_text(data: SeriesSet, horizon: int) -> str:
    """Why no rolling origin was found: the series' lengths against the shortest with one."""
    longest = max((len(t) for t in data.times), default=0)
    need = _min_history(horizon) + horizon
    return (
        f"a series of at least {need} steps to calibrate forecasts {horizon} steps ahead (one "
        f"rolling origin: max(2 x {horizon}, 8) steps of history and {horizon} to score), "
        f"found at most {longest}"
    )


def _origin_count(held_out: bool) -> int:
    """The ``num_origins`` of :func:`origins_of` for a calibration with ``held_out`` (see
    :func:`calibrate_and_blend`): -1 (each series' :func:`holdout_origins`) or
    :data:`NUM_ORIGINS`."""
    return -1 if held_out and settings.FORECAST_HOLDOUT_ORIGINS > 0 else NUM_ORIGINS


def origins_of(length: int, horizon: int, num_origins: int) -> list[int]:
    """The rolling origins of a series of ``length`` steps, latest first: ``length - k
    horizon`` for k = 1 .. ``num_origins`` (its :func:`holdout_origins` when -1) while at
    least :func:`_min_history` steps come before."""
    n_org = holdout_origins(length, horizon) if num_origins < 0 else num_origins
    origins = []
    for k in range(1, n_org + 1):
        origin = length - k * horizon
        if origin < _min_history(horizon):
            break
        origins.append(origin)
    return origins


def has_origin(data: SeriesSet, horizon: int, held_out: bool = False) -> bool:
    """Whether :func:`calibrate_and_blend` of ``data`` (same ``horizon`` and ``held_out``)
    finds a rolling origin, so calibrates anything: known before training, from the
    series' lengths alone (:func:`no_origin_text` says why not)."""
    n_org = _origin_count(held_out)
    return any(origins_of(len(t), horizon, n_org) for t in data.times)


def holdout_origins(length: int, horizon: int) -> int:
    """Horizons held out at the end of a series of ``length`` steps for the forecast
    calibration: up to :data:`gpvae.settings.FORECAST_HOLDOUT_ORIGINS`, leaving at least half
    the series and :func:`_min_history` steps for training."""
    keep = max((length + 1) // 2, _min_history(horizon))
    return int(max(0, min(settings.FORECAST_HOLDOUT_ORIGINS, (length - keep) // horizon)))


def without_tail(data: SeriesSet, horizon: int) -> SeriesSet:
    """The series without their :func:`holdout_origins` last horizons (a ragged set in the
    same time units; unchanged when nothing is held out)."""
    cut = [len(t) - holdout_origins(len(t), horizon) * horizon for t in data.times]
    if all(c == len(t) for c, t in zip(cut, data.times)):
        return data
    return to_series_set(
        [v[:c] for v, c in zip(data.values, cut)],
        [t[:c] for t, c in zip(data.times, cut)],
        allow_single_step=True,
        allow_empty_series=True,
    )


def calibrate_forecasts(
    ctx: PredictContext,
    data: SeriesSet,
    horizon: int,
    held_out: bool = False,
    comm: Communicator | None = None,
    sharded: bool = False,
) -> np.ndarray | None:
    """Spread factors (bands, D) of the forecast intervals around the model's own mean, or
    None without any origin (:func:`calibrate_and_blend` without bases)."""
    return calibrate_and_blend(ctx, data, horizon, None, held_out, comm, sharded)[0]


def calibrate_and_blend(
    ctx: PredictContext,
    data: SeriesSet,
    horizon: int,
    bases: tuple[str, ...] | None,
    held_out: bool = False,
    comm: Communicator | None = None,
    sharded: bool = False,
    name: str = "forecast_horizon",
) -> tuple[np.ndarray | None, ForecastBlend | None]:
    """Spread factors (bands, D) of the forecast intervals and, with ``bases``, the blend of
    the model's mean with those simple forecasts (:mod:`gpvae.estimator.forecast_blend`,
    fitted first; the factors are then fitted around the blended mean); (None, None)
    without any origin.

    A series' origins are forecast together, with draws from a generator seeded by the
    seed and the series' content, so its rows do not depend on the other series; in a
    distributed fit (``comm``) every process forecasts its block of the series (its own
    series when ``sharded``), the rows of every process are gathered, and every process
    gets the factors one process would fit on all the series.

    Args:
        ctx: the fitted model (no forecast factors yet).
        data: the series, original units.
        horizon: H, steps ahead.
        bases: the base forecasts' names (:func:`~gpvae.estimator.forecast_blend.base_names`),
            or None: no blend.
        held_out: the model was fitted on :func:`without_tail` of ``data``: use only the
            origins in the held-out tails; else (or when
            :data:`gpvae.settings.FORECAST_HOLDOUT_ORIGINS` is 0) up to :data:`NUM_ORIGINS`
            per series.
        comm: the distributed job, or None.
        sharded: each process holds its own series (else every process holds them all).
        name: the argument that set the horizon, named by the warnings (at the caller of
            the caller: GPVAE.fit or GPVAE.calibrate_forecast; in process 0 only) when the
            origins' latent draws leave the trained range (:func:`_warn_latent_reach`) and
            when factors ran out of their grid (:func:`_warn_at_bounds`).
    """
    n_org = _origin_count(held_out)
    names = bases or ()
    rows: list[tuple[np.ndarray, ...]] = []
    reach = LatentReach()
    if comm is None:
        rows = _origin_rows(ctx, data, horizon, n_org, range(data.num_series), names, reach)
    else:
        mine = range(data.num_series)
        if not sharded:
            mine = range(*shard_bounds(data.num_series, comm.rank, comm.world_size))
        with comm.together():
            rows = _origin_rows(ctx, data, horizon, n_org, mine, names, reach)
        parts = comm.all_gather((rows, reach))
        rows = [r for part, _ in parts for r in part]
        reach = LatentReach()
        for _, theirs in parts:  # every process's origins, in process order
            reach.low += theirs.low
            reach.high += theirs.high
            reach.far += theirs.far
    if comm is None or comm.is_main:
        _warn_latent_reach(reach, horizon)
    if not rows:
        return None, None
    m_a, lo_a, hi_a, y_a, f_a, b_a, base_a, o_a = (np.concatenate(p) for p in zip(*rows))
    bands = band_of_steps(horizon, min(NUM_BANDS, horizon), horizon)
    D = data.num_features
    n_bands = int(bands.max()) + 1
    blend = None
    if bases is not None:
        blend = fit_blend(m_a, base_a, y_a, f_a, b_a, o_a, D, n_bands, bases, horizon)
        w = blend.weight[b_a, f_a]
        chosen = base_a[np.arange(len(m_a)), blend.base[b_a, f_a]]
        shift = (1 - w) * (np.where(np.isnan(chosen), m_a, chosen) - m_a)  # (M,)
        m_a, lo_a, hi_a = m_a + shift, lo_a + shift[:, None], hi_a + shift[:, None]
    out = np.ones((n_bands, D))
    limit = np.zeros((n_bands, D), np.int64)
    for b in range(out.shape[0]):
        sel = b_a == b
        out[b], limit[b] = interval_scales(m_a[sel], lo_a[sel], hi_a[sel], y_a[sel], f_a[sel], D)
    if comm is None or comm.is_main:
        _warn_at_bounds(out, limit, list(data.feature_names), horizon, name)
    return out, blend


def _warn_at_bounds(
    scale: np.ndarray, limit: np.ndarray, names: list[str], horizon: int, name: str
) -> None:
    """Warn (at the caller of GPVAE.fit or GPVAE.calibrate_forecast, naming ``name``) about
    the (feature, horizon band) factors that ran out of their grid, ``scale`` and ``limit``
    (bands, D) of :func:`~gpvae.estimator.calibration.interval_scales`, with the words of
    :func:`~gpvae.estimator.calibration.factors_at_bounds`: a diverged fit (``lr=10``) left
    every factor at 1 (no factor covered its errors) and its 90% intervals covered none of
    the next 8 steps (docs/forecasting.md). Only intervals still too narrow are named: a
    blended fit of a rising series (tests/test_forecast_blend.py, 10 or 100 epochs, 3 data
    seeds) had every factor at 1/4, the model's own spread being far wider than the blended
    mean's errors, yet its intervals covered 58-100% of the next 12 steps: no sign of a
    failed fit, which the warning's remedy (a smaller lr, more epochs) would not change."""
    bands = band_of_steps(horizon, scale.shape[0], horizon)
    steps = []
    for b in range(scale.shape[0]):
        first, last = np.flatnonzero(bands == b)[[0, -1]] + 1
        steps.append(f"step {first}" if first == last else f"steps {first}..{last}")
    labels = [f"{f!r} at {s}" for f in names for s in steps]  # feature by feature
    text = factors_at_bounds(
        scale.T.ravel(),
        np.maximum(limit.T.ravel(), 0),  # too narrow only
        names,
        subject=f"{name}: the forecast intervals' spread factor (forecast_scale_)",
        labels=labels,
        errors="rolling-origin forecast errors",
        unseen="the future",
    )
    if text is not None:
        warnings.warn(text, UserWarning, stacklevel=4)


def _warn_latent_reach(reach: LatentReach, horizon: int) -> None:
    """Warn (at the caller of GPVAE.fit or GPVAE.calibrate_forecast) when the rolling-origin
    forecasts' latent draws left the range of their histories' posteriors, in the words of
    :func:`gpvae.estimator.forecasting.latent_reach_text`: the factors and the blend are
    fitted on such forecasts."""
    text = latent_reach_text(reach, horizon)
    if text is not None:
        warnings.warn(
            f"{text}. These were the forecast calibration's rolling-origin forecasts inside "
            "the data (forecast_horizon at fit, or calibrate_forecast): the intervals' "
            "spread factors and the blend fitted on them come from such forecasts",
            UserWarning,
            stacklevel=4,  # the caller of GPVAE.fit or GPVAE.calibrate_forecast
        )


def _origin_rows(
    ctx: PredictContext,
    data: SeriesSet,
    horizon: int,
    num_origins: int,
    series: range,
    bases: tuple[str, ...],
    reach: LatentReach | None = None,
) -> list[tuple[np.ndarray, ...]]:
    """Per batch of origins of the ``series`` (positions in ``data``; up to ``num_origins``
    each, or their :func:`holdout_origins` when it is -1), standardised: the
    forecast entries' mean (M,), interval ends (M, K) twice, truth (M,), feature (M,),
    horizon band (M,), the ``bases`` forecasts (M, len(bases)) and a label of the origin (M,).
    Draws from a generator of the series' own (seed, content); ``reach``, when given,
    gathers where their latent draws went (the same draws either way)."""
    levels = np.asarray(LEVELS)
    probs = [*((1 - levels) / 2), *((1 + levels) / 2)]
    K = len(levels)
    bands = band_of_steps(horizon, min(NUM_BANDS, horizon), horizon)
    D = data.num_features
    model = ctx.model
    model.eval()
    rows: list[tuple[np.ndarray, ...]] = []
    for i in series:
        v, t = data.values[i], data.times[i]
        origins = origins_of(len(t), horizon, num_origins)
        if not origins:
            continue
        hist = to_series_set([v[:o] for o in origins], [t[:o] for o in origins])
        scaled = ctx.scaler.transform(hist)
        future = np.stack([t[o : o + horizon] for o in origins])  # (n, H), data's units
        x_all = ctx.scaler.scaled_times(future, "future_times")
        truth = ctx.scaler.transform(np.stack([v[o : o + horizon] for o in origins]))
        gen = torch.Generator(device=ctx.device).manual_seed(series_seed(ctx.seed, 7, v, t))
        S = settings.FORECAST_CALIBRATION_SAMPLES
        size = batch_size_within(ctx.batch_size, S, max(origins) + horizon)
        for idx in batch_indices(len(origins), size):
            batch = ctx.batch(scaled, idx)
            x_t = ctx.new_points(scaled, idx, x_all)  # in the batch rows' frames
            watch = None if reach is None else reach.watch(x_t)
            mean, y = model.forecast_draws(batch, x_t, S, gen, watch)
            q = torch.stack(sorted_quantiles(y, probs, "predictive"), dim=-1).double().cpu().numpy()
            m = mean.double().cpu().numpy()  # (B, H, D)
            target = truth[idx]  # (B, H, D)
            band = np.broadcast_to(bands[None, :, None], target.shape)
            feature = np.broadcast_to(np.arange(D), target.shape)
            keep = ~np.isnan(target)
            simple = np.stack(
                [
                    simple_forecasts(scaled.values[j], horizon, bases, horizon, m[r])
                    for r, j in enumerate(idx)
                ]
            )  # (B, n_bases, H, D)
            simple = np.moveaxis(simple, 1, -1)[keep]  # (M, n_bases)
            # a label per (series, origin), unique across the processes' series
            label = i * 1_000_000 + np.asarray(idx)
            org = np.broadcast_to(label[:, None, None], target.shape)
            rows.append(
                (
                    m[keep],
                    q[keep][:, :K],
                    q[keep][:, K:],
                    target[keep],
                    feature[keep],
                    band[keep],
                    simple,
                    org[keep],
                )
            )
    return rows
