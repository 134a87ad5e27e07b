"""A model of the steps of a series: fit on first differences, forecast their cumulated sum.

``GPVAE(difference=True)`` fits the model to each series' increments ``y[t] - y[t-1]``
(:func:`increments`; NaN where either value is missing) instead of its levels, and a
forecast is the last observed level plus the cumulated sum of the forecast increments
(:func:`integrate`), draw by draw, so the intervals come from joint sample paths. A decoder
of standardised values cannot give back a level it never saw in training, so a series that
leaves its training range (a recovery to new highs) is forecast back into that range by a
model of the levels; the steps of such a series stay in their range, and a latent GP with a
long-range component keeps their recent level, so the forecast keeps the trend. The
forecast calibration and the blend (:mod:`gpvae.estimator.forecast_blend`) act on the
increments. Such a model forecasts only (``forecast``, ``calibrate_forecast``, ``backtest``):
its other outputs would be increments, so they raise (:func:`check_levels_method`).

A feature whose last value is missing starts from its last observed value plus the model's
imputation of the increments since then.

``difference`` may also name some features (``difference=["nonfarm", "retail"]``, or their
column positions): those are modelled by their increments and the others by their levels
(a rate or a change that is already stationary beside trending counts). The model's data are
then the increments of the named features and the levels of the others at the times
``t[1:]``, and a forecast cumulates only the named features' steps (:func:`difference_mask`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gpvae.data import SeriesSet, to_series_set
from gpvae.data.series import Layout
from gpvae.errors import InputTypeError, ValidationError

__all__ = [
    "FORECAST_METHODS",
    "check_levels_method",
    "difference_arg",
    "difference_mask",
    "increments",
    "increments_of",
    "integrate",
    "last_levels",
]

#: What ``GPVAE(difference=...)`` holds: all features, none, or the named ones.
Difference = bool | tuple[str | int, ...]


#: The methods a model of increments serves (the others would return increments).
FORECAST_METHODS = ("forecast", "calibrate_forecast", "save")


def check_levels_method(method: str, difference: Difference) -> None:
    """Raise for a method that needs a model of the levels on a model of increments."""
    if difference and method not in FORECAST_METHODS:
        raise ValidationError(
            f"difference: {method} expected a model of the series' levels, found a model "
            f"fitted on their increments (difference={difference!r}), which forecasts only "
            "(forecast, calibrate_forecast, backtest); fit one with difference=False"
        )


def difference_arg(value: object) -> Difference:
    """``difference`` as given to the estimator: True, False, or a list of feature names
    and column positions (kept as a tuple), or an InputTypeError naming ``difference``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (list, tuple)):
        items: list[str | int] = []
        for item in value:
            if isinstance(item, str):
                items.append(item)
            elif isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
                items.append(int(item))
            else:
                break
        else:
            if len(set(items)) != len(items):
                raise ValidationError(
                    f"difference: expected each feature named once, found {list(value)!r}"
                )
            return tuple(items)
    raise InputTypeError(
        "difference: expected True, False or a list of feature names / column positions, "
        f"found {value!r}"
    )


def difference_mask(which: Difference, feature_names: Sequence[str]) -> np.ndarray:
    """(D,) True for the features modelled by their increments (``which``: as
    :func:`difference_arg` gives), for data with these feature names.

    Raises:
        ValidationError: naming ``difference`` for a name not among the features, a
            position outside 0..D-1, or a feature named twice (by name and position).
    """
    D = len(feature_names)
    if isinstance(which, bool):
        return np.full(D, which)
    mask = np.zeros(D, dtype=bool)
    names = [str(f) for f in feature_names]
    for item in which:
        if isinstance(item, str):
            if item not in names:
                raise ValidationError(
                    f"difference: expected feature names among {names}, found {item!r}"
                )
            j = names.index(item)
        else:
            if not 0 <= item < D:
                raise ValidationError(
                    f"difference: expected column positions in 0..{D - 1}, found {item}"
                )
            j = item
        if mask[j]:  # e.g. by its name and by its position
            raise ValidationError(
                f"difference: expected each feature named once, found {names[j]!r} (column "
                f"{j}) twice in {list(which)!r}"
            )
        mask[j] = True
    return mask


def increments(data: SeriesSet, name: str = "X", which: Difference = True) -> SeriesSet:
    """The series of steps ``y[t] - y[t-1]`` at the times ``t[1:]`` (NaN where either value
    is missing), as ragged series with the input's time units; with ``which`` naming some
    features, only those are steps and the others keep their levels at ``t[1:]``.

    Raises:
        ValidationError: a series with fewer than two steps (naming ``name``), a feature
            ``which`` names that the data do not have (naming ``difference``).
    """
    mask = difference_mask(which, data.feature_names)
    short = [i for i, t in enumerate(data.times) if len(t) < 2]
    if short:
        raise ValidationError(
            f"{name}: expected at least 2 time steps in every series with difference=True "
            f"(its increments), found {len(data.times[short[0]])} in {data.series_label(short[0])}"
        )
    values = tuple(np.where(mask, np.diff(v, axis=0), v[1:]) for v in data.values)
    times = tuple(np.asarray(t[1:]) for t in data.times)
    for v, t in zip(values, times):
        v.setflags(write=False)
        t.setflags(write=False)
    old = data.layout
    layout = Layout(
        kind="ragged",
        dtype=np.dtype(np.float64),
        order=tuple(np.arange(len(t)) for t in times),
        feature_labels=old.feature_labels,
        names_given=old.names_given,
        time_unit=old.time_unit,
        time_origin=old.time_origin,
        freq=old.freq,
    )
    return SeriesSet(values=values, times=times, feature_names=data.feature_names, layout=layout)


def increments_of(
    X: Any, times: Any, name: str, times_name: str, which: Difference = True
) -> SeriesSet:
    """:func:`increments` of fit input in any accepted form (series with a single step or
    none observed are accepted as fit accepts them, and then named by :func:`increments`)."""
    data = to_series_set(
        X,
        times,
        allow_single_step=True,
        allow_empty_series=True,
        name=name,
        times_name=times_name,
    )
    return increments(data, name, which)


def last_levels(data: SeriesSet) -> tuple[np.ndarray, np.ndarray]:
    """(n, D) the last observed value of each feature of each series (NaN: never observed)
    and (n, D) the number of steps at the end of each series after it (the increments a
    forecast must add before its first future step)."""
    n, D = data.num_series, data.num_features
    level, gap = np.full((n, D), np.nan), np.zeros((n, D), dtype=np.int64)
    for i, v in enumerate(data.values):
        seen = ~np.isnan(v)
        for d in range(D):
            idx = np.flatnonzero(seen[:, d])
            if len(idx):
                level[i, d] = v[idx[-1], d]
                gap[i, d] = len(v) - 1 - idx[-1]
    return level, gap


def integrate(level: np.ndarray, steps: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Levels (..., B, H, D) of the cumulated forecast ``steps`` (..., B, H, D) from the
    starting ``level`` (B, D); features where ``mask`` (D,) is False are levels already and
    are returned as they are."""
    out = level[:, None, :] + np.cumsum(steps, axis=-2)
    return out if mask is None else np.where(mask, out, steps)
