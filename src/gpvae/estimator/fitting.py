"""The data side of :meth:`GPVAE.fit`: inputs checked and turned into series, the scaler.

Real records are ragged: a series with a single time step is kept (it trains the encoder
and decoder; its latent is the prior conditioned on one point), a series with no observed
entry at all teaches nothing and is left out of training with a warning.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any

import numpy as np

from gpvae.data import Scaler, SeriesSet, to_series_set
from gpvae.data.windows import cut_windows
from gpvae.errors import ValidationError

__all__ = ["fit_data", "windowed"]


def _check_unit_interval(data: SeriesSet, name: str) -> None:
    """Raise unless every observed value of ``data`` lies in [0, 1]."""
    for i, v in enumerate(data.values):
        obs = v[~np.isnan(v)]
        if obs.size and (obs.min() < 0 or obs.max() > 1):
            raise ValidationError(
                f"{name}: expected values in [0, 1] for likelihood='bernoulli', found "
                f"{float(obs.min())!r}..{float(obs.max())!r} in series {i}"
            )


def _drop_empty(data: SeriesSet, name: str) -> SeriesSet:
    """``data`` without its series that have no observed entry (warning which)."""
    empty = [i for i, v in enumerate(data.values) if np.isnan(v).all()]
    if not empty:
        return data
    if len(empty) == data.num_series:
        raise ValidationError(
            f"{name}: expected at least one series with an observed entry, found none"
        )
    ids = data.layout.series_ids
    shown = [repr(ids[i]) if ids is not None else str(i) for i in empty[:10]]
    more = f" and {len(empty) - 10} more" if len(empty) > 10 else ""
    warnings.warn(
        f"{name}: {len(empty)} series with no observed entry left out of training (nothing "
        f"can be learned from them; impute gives them the model's prior level): "
        f"{', '.join(shown)}{more}",
        UserWarning,
        stacklevel=4,
    )
    keep = [i for i in range(data.num_series) if i not in set(empty)]
    return data.subset(keep)


def fit_data(
    X: Any,
    times: Any,
    X_val: Any,
    times_val: Any,
    *,
    binary: bool,
    X_val_target: Any = None,
) -> tuple[SeriesSet, SeriesSet | None, SeriesSet | None, Scaler]:
    """Training, validation and hidden-target series, and the scaler fitted on training.

    Args:
        X, times: the training data (see :meth:`GPVAE.fit`).
        X_val, times_val: optional validation data with the same features.
        binary: values are probabilities in [0, 1], modelled unstandardised.
        X_val_target: optional ``X_val`` with its hidden entries filled in (same times).

    Raises:
        GPVAEError: bad input, naming the argument.
    """
    loose = partial(to_series_set, allow_single_step=True, allow_empty_series=True)
    train_set = _drop_empty(loose(X, times), "X")
    D = train_set.num_features
    val_set = target_set = None
    if X_val is not None:
        val_set = loose(X_val, times_val, num_features=D, name="X_val", times_name="times_val")
        if X_val_target is not None:
            target_set = loose(
                X_val_target,
                times_val,
                num_features=D,
                name="X_val_target",
                times_name="times_val",
            )
    elif times_val is not None:
        raise ValidationError("times_val: expected None when X_val is None, found times")
    elif X_val_target is not None:
        raise ValidationError(
            "X_val_target: expected X_val as well (the input in which its entries are hidden)"
        )
    if binary:
        _check_unit_interval(train_set, "X")
        if val_set is not None:
            _check_unit_interval(val_set, "X_val")
    scaler = Scaler().fit(train_set, standardise=not binary)
    scaler.check_range(train_set)
    if val_set is not None:
        scaler.check(val_set, "X_val")
        scaler.check_range(val_set, "X_val", "times_val")
    if target_set is not None:
        if binary:
            _check_unit_interval(target_set, "X_val_target")
        scaler.check_range(target_set, "X_val_target", "times_val")
    return train_set, val_set, target_set, scaler


def windowed(data: SeriesSet, window: int) -> SeriesSet:
    """The series cut into half-overlapping windows of ``window`` steps (windows with
    nothing observed left out; :func:`gpvae.data.windows.cut_windows`), as a ragged set in
    the same time units."""
    values, times = cut_windows(data.values, data.times, window)
    return to_series_set(list(values), list(times))
