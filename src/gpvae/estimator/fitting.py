"""The data side of :meth:`GPVAE.fit`: inputs checked and turned into series, the scaler."""

from __future__ import annotations

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


def fit_data(
    X: Any, times: Any, X_val: Any, times_val: Any, *, binary: bool
) -> tuple[SeriesSet, SeriesSet | None, Scaler]:
    """Training and validation series, and the scaler fitted on the training series.

    Args:
        X, times: the training data (see :meth:`GPVAE.fit`).
        X_val, times_val: optional validation data with the same features.
        binary: values are probabilities in [0, 1], modelled unstandardised.

    Raises:
        GPVAEError: bad input, naming the argument.
    """
    train_set = to_series_set(X, times)
    D = train_set.num_features
    val_set = None
    if X_val is not None:
        val_set = to_series_set(
            X_val, times_val, num_features=D, name="X_val", times_name="times_val"
        )
    elif times_val is not None:
        raise ValidationError("times_val: expected None when X_val is None, found times")
    if binary:
        _check_unit_interval(train_set, "X")
        if val_set is not None:
            _check_unit_interval(val_set, "X_val")
    scaler = Scaler().fit(train_set, standardise=not binary)
    scaler.check_range(train_set)
    if val_set is not None:
        scaler.check(val_set, "X_val")
        scaler.check_range(val_set, "X_val", "times_val")
    return train_set, val_set, scaler


def windowed(data: SeriesSet, window: int) -> SeriesSet:
    """The series cut into half-overlapping windows of ``window`` steps (windows with
    nothing observed left out; :func:`gpvae.data.windows.cut_windows`), as a ragged set in
    the same time units."""
    values, times = cut_windows(data.values, data.times, window)
    return to_series_set(list(values), list(times))
