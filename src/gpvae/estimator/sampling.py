"""Prior samples and latent posteriors of the estimator (:meth:`GPVAE.sample`, ``latent``)."""

from __future__ import annotations

import datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch

from gpvae.arguments import int_arg
from gpvae.data import Scaler
from gpvae.data.calendar import naive
from gpvae.data.output import unpad
from gpvae.errors import InputTypeError
from gpvae.estimator.context import PredictContext
from gpvae.estimator.results import future_times_row, refuse_masked, times_1d

__all__ = ["latent_series", "sample_series", "sample_times"]

#: Objects read as datetimes (``pd.Timestamp``, ``datetime.datetime``, ``datetime.date``,
#: ``np.datetime64``) or durations (``pd.Timedelta``, ``datetime.timedelta``,
#: ``np.timedelta64``) in a list of sample times.
_DATES = (datetime.date, np.datetime64)
_DURATIONS = (datetime.timedelta, np.timedelta64)


def _time_objects(times: Any) -> bool:
    """Whether ``times`` holds datetimes or durations (datetime64 / timedelta64 arrays,
    DatetimeIndex / TimedeltaIndex, lists of such objects, or of date strings as forecast's
    ``future_times`` take them) rather than numbers."""
    arr = np.asarray(times)
    if arr.dtype.kind in "MmUS":
        return True
    kinds = (*_DATES, *_DURATIONS, str)
    return arr.dtype.kind == "O" and arr.size > 0 and all(isinstance(v, kinds) for v in arr.flat)


def sample_times(scaler: Scaler, times: Any) -> np.ndarray:
    """(T,) :meth:`GPVAE.sample`'s ``times`` in the model's float units.

    Numbers are the model's units as they are (:func:`~gpvae.estimator.results.times_1d`).
    For a model fitted on datetimes or durations, datetimes and durations are read as
    :meth:`GPVAE.forecast` reads its ``future_times`` (the same conversion and checks:
    zone-aware ones in UTC, or on their zone's wall clock for a calendar grid, naive ones
    as they are, a mix of the two refused; steps of the calendar grid, off-grid dates
    refused), datetimes counted from the earliest of them.
    """
    form = scaler.time_form_
    if form is None or form[0] is None or not _time_objects(times):
        return times_1d(times, "times")  # a model of numbers refuses datetimes there
    refuse_masked(times, "times")
    arr = np.asarray(times)
    durations = arr.dtype.kind == "m" or (
        arr.dtype.kind == "O" and all(isinstance(v, _DURATIONS) for v in arr.flat)
    )
    if durations:
        if form[0] == "steps":
            raise InputTypeError(
                f"times: expected datetimes on the model's calendar grid ({form[1]!r}) or "
                "steps of it, found durations"
            )
        values: Any = pd.TimedeltaIndex(arr.ravel()) if arr.dtype.kind == "O" else times
        lay = SimpleNamespace(time_unit=form[0], freq=form[1], tz=None, time_origin=None)
        return future_times_row(lay, values, "times")
    tz, origin = None, np.datetime64("1970-01-01", "ns")  # for times read as an error
    try:
        idx = pd.DatetimeIndex(arr.ravel())
    except (ValueError, TypeError, OverflowError):  # a mix of zones: refused below
        idx = None
    if idx is not None and idx.notna().any():
        tz, first = idx.tz, idx[idx.notna()].min()
        wall = form[0] == "steps"  # a calendar grid lies on the zone's own clock
        origin = naive(pd.DatetimeIndex([first]), tz, wall)[0] if tz else first.to_datetime64()
    lay = SimpleNamespace(time_unit=form[0], freq=form[1], tz=tz, time_origin=origin)
    return future_times_row(lay, times, "times")


def sample_series(
    ctx: PredictContext, times: Any, num_samples: int, noise: bool = True
) -> np.ndarray:
    """:meth:`GPVAE.sample` (see there): (S, T, D) in original units, ``times``' order."""
    model, scaler = ctx.model, ctx.scaler
    S = int_arg("num_samples", num_samples)
    t = sample_times(scaler, times)
    ctx.check_draws("num_samples, times", S, 1, len(t), prior_only=True)
    order = np.argsort(t, kind="stable")
    x = scaler.scaled_times(t[order], "times")
    scaler.check_resolution([x], "times", "the times to sample at")  # as fit's, impute's
    if len(x):  # moved by whole steps to start in [0, 1): float32 keeps far times apart
        x = x - np.floor(x[0])
    dtype = next(model.parameters()).dtype
    x_t = torch.as_tensor(x[None, :, None], dtype=dtype, device=ctx.device)
    model.eval()
    y = model.sample_series(x_t, S, ctx.generator(3), noise=noise)[:, 0]  # (S, T, D)
    out = np.empty((S, len(t), scaler.num_features))
    out[:, order] = scaler.inverse_transform(y.double().cpu().numpy())
    return out


def latent_series(ctx: PredictContext, X: Any, times: Any) -> tuple[Any, Any]:
    """:meth:`GPVAE.latent` (see there): posterior mean and variance of z per step."""
    ss, scaled = ctx.input(X, times)
    mean_l: list[np.ndarray] = [np.empty(0)] * ss.num_series
    var_l = list(mean_l)
    ctx.model.eval()
    for idx in ctx.batches(ss.num_series, "latent"):
        batch = ctx.batch(scaled, idx)
        with torch.no_grad():
            m, v = ctx.model.encode(batch).marginals()  # (B, N, L)
        m_np, v_np = m.double().cpu().numpy(), v.double().cpu().numpy()
        for b, i in enumerate(idx):
            T = len(ss.times[i])
            mean_l[i], var_l[i] = m_np[b, :T], v_np[b, :T]
    mean_u, var_u = unpad(ss, mean_l), unpad(ss, var_l)
    if ss.layout.output_kind == "array":
        return np.stack(mean_u), np.stack(var_u)
    return mean_u, var_u
