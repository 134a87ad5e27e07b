"""The data side of :meth:`GPVAE.fit`: inputs checked and turned into series, the scaler;
and, in a distributed fit, the scaler and the interval calibration over every process's
series (:func:`sharded_fit_data`, :func:`calibrate_fit`).

Real records are ragged: a series with a single time step is kept (it trains the encoder
and decoder; its latent is the prior conditioned on one point), a series with no observed
entry at all teaches nothing and is left out of training with a warning.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import numpy as np
import pandas as pd

from gpvae.data import Scaler, SeriesSet, to_series_set
from gpvae.data.convert import to_fitted_series_set
from gpvae.data.windows import cut_windows
from gpvae.errors import ValidationError
from gpvae.estimator.calibration import (
    LEVELS,
    calibrate_intervals,
    heldout_arrays,
    interval_scales,
)
from gpvae.estimator.context import PredictContext, check_unit_interval, warn_other_time_kind
from gpvae.estimator.seasonality import PeriodArg, resolve_periods
from gpvae.estimator.validation import validation_split
from gpvae.kernels import KernelArg
from gpvae.rng import seed_for
from gpvae.training import FitSession
from gpvae.training.distributed import Communicator, is_main_process

__all__ = [
    "calibrate_fit",
    "fit_data",
    "fit_inputs",
    "fit_periods",
    "median_of_counts",
    "merge_scaler",
    "sharded_fit_data",
    "windowed",
]


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
        stacklevel=6,  # the caller of GPVAE.fit (via fit_inputs, fit_data, _series)
    )
    keep = [i for i in range(data.num_series) if i not in set(empty)]
    return data.subset(keep)


def _validation(X: Any, times: Any, train_set: SeriesSet, name: str) -> SeriesSet:
    """Validation data (``name``) read in the training data's time form, as new data is
    read for a model: a frame's features are X's, found by name; a warning names the
    frame's columns that are none of them (left out)."""
    layout = train_set.layout
    names = list(train_set.feature_names) if layout.names_given else None
    data, unused = to_fitted_series_set(
        X,
        times,
        names,
        name=name,
        times_name="times_val",
        # a frame's columns are checked by name (Scaler.check, in _check_with, names them)
        num_features=None if names and isinstance(X, pd.DataFrame) else train_set.num_features,
        allow_single_step=True,
        allow_empty_series=True,
        time_form=(layout.time_unit, layout.freq),
    )
    if unused:
        warnings.warn(
            f"{name}: columns {unused} are not among the features of X {names} (nor the id "
            "or time): left out",
            UserWarning,
            stacklevel=6,  # the caller of GPVAE.fit (via fit_inputs, fit_data, _series)
        )
    return data


def _series(
    X: Any,
    times: Any,
    X_val: Any,
    times_val: Any,
    *,
    binary: bool,
    X_val_target: Any = None,
) -> tuple[SeriesSet, SeriesSet | None, SeriesSet | None]:
    """The training, validation and hidden-target series, checked."""
    train_set = _drop_empty(
        to_series_set(X, times, allow_single_step=True, allow_empty_series=True), "X"
    )
    val_set = target_set = None
    if X_val is not None:
        val_set = _validation(X_val, times_val, train_set, "X_val")
        if X_val_target is not None:
            target_set = _validation(X_val_target, times_val, train_set, "X_val_target")
    elif times_val is not None:
        raise ValidationError("times_val: expected None when X_val is None, found times")
    elif X_val_target is not None:
        raise ValidationError(
            "X_val_target: expected X_val as well (the input in which its entries are hidden)"
        )
    if binary:
        check_unit_interval(train_set, "X")
        if val_set is not None:
            check_unit_interval(val_set, "X_val")
        if target_set is not None:
            check_unit_interval(target_set, "X_val_target")
    return train_set, val_set, target_set


def _check_with(
    scaler: Scaler, train_set: SeriesSet, val_set: SeriesSet | None, target_set: SeriesSet | None
) -> None:
    """Raise when the series do not fit ``scaler`` (features, time range); warn, as
    prediction does (:meth:`~gpvae.data.Scaler.warn_far_times`,
    :func:`~gpvae.estimator.context.warn_other_time_kind`), when the validation times
    look like a unit or origin mistake (times in another unit, dates for a model of
    numbers, numbers for a model of dates), which would otherwise be read in the training
    data's units without a word."""
    scaler.check_range(train_set)
    if val_set is not None:
        scaler.check(val_set, "X_val")
        scaler.check_range(val_set, "X_val", "times_val")
        # the caller of GPVAE.fit (via fit_inputs, fit_data or sharded_fit_data, this)
        scaler.warn_far_times(val_set, "X_val", stacklevel=5)
        warn_other_time_kind(scaler, val_set, 5, "times_val", "X_val")
    if target_set is not None:
        scaler.check(target_set, "X_val_target")
        scaler.check_range(target_set, "X_val_target", "times_val")


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
    train_set, val_set, target_set = _series(
        X, times, X_val, times_val, binary=binary, X_val_target=X_val_target
    )
    scaler = Scaler().fit(train_set, standardise=not binary)
    _check_with(scaler, train_set, val_set, target_set)
    if is_main_process():  # every process of a distributed fit holds the same data: one says it
        warn_constant_features(train_set, stacklevel=5, binary=binary)  # GPVAE.fit's caller
    return train_set, val_set, target_set, scaler


def warn_constant_features(data: SeriesSet, stacklevel: int, *, binary: bool = False) -> None:
    """Warn when a feature of the training data takes one value wherever it is observed
    (a temperature recorded as 37.0 throughout), or is observed once: the model learns
    nothing about how it varies, and imputed 35.9 (31.3 to 38.9) with 90% intervals about
    9.6 wide for it, without a word. The scaling of such a feature is unchanged (saved
    models keep theirs). ``binary`` (a Bernoulli likelihood): no warning, since a 0/1 pixel
    that is always 0 (an image's border) is data the model fits, not a mistake."""
    names = list(data.feature_names)
    warn_constant_merged([_feature_stats(data)], names, stacklevel + 1, binary=binary)


def _warn_unvarying(
    names: list[str], counts: list[int], values: list[float | None], stacklevel: int
) -> None:
    """The warning of :func:`warn_constant_features`, from each feature's count of observed
    entries and its one value (None: it varies, or is never observed)."""
    constant: list[str] = []
    once: list[str] = []
    for name, count, value in zip(names, counts, values):
        if value is None or count < 1:
            continue
        if count == 1:
            once.append(f"{name!r} ({value!r})")
        else:
            constant.append(f"{name!r} (every observed entry {value!r})")
    found = [
        f"{len(group)} {kind}: "
        + ", ".join(group[:10])
        + (f" and {len(group) - 10} more" if len(group) > 10 else "")
        for kind, group in (("constant feature(s)", constant), ("feature(s) observed once", once))
        if group
    ]
    if found:
        warnings.warn(
            f"X: expected features that vary in the training data, found {' and '.join(found)}"
            "; nothing about their variation can be learned, so their imputations and "
            "intervals are unreliable: drop them, or fit on data where they vary",
            UserWarning,
            stacklevel=stacklevel,
        )


def warn_constant_merged(
    parts: list[dict[str, Any]], names: list[str], stacklevel: int, *, binary: bool = False
) -> None:
    """:func:`warn_constant_features` from every process's :func:`_feature_stats` (in a
    sharded fit, their :func:`_local_stats`): a feature is constant when every process that
    observes it saw one value (no squared deviation) and all saw the same one (its mean in
    units of its largest magnitude, times that, is the value exactly: +-1 or 0 times it)."""
    if binary:
        return
    counts, values = [], []
    for j in range(len(names)):
        seen = [p for p in parts if p["count"][j] > 0]
        one = {float(p["mean"][j] * p["big"][j]) for p in seen}  # a constant's value, exactly
        counts.append(int(sum(p["count"][j] for p in seen)))
        flat = bool(seen) and len(one) == 1 and all(p["m2"][j] == 0 for p in seen)
        values.append(one.pop() if flat else None)
    _warn_unvarying(names, counts, values, stacklevel + 1)


# ---------------------------------------------------------------------- distributed fits


def _feature_stats(data: SeriesSet) -> dict[str, np.ndarray]:
    """Per feature of ``data``: the count of observed entries, their largest magnitude
    (``big``) and their mean and sum of squared deviations in units of it."""
    D = data.num_features
    count, big, mean, m2 = np.zeros(D), np.zeros(D), np.zeros(D), np.zeros(D)
    for j in range(D):
        col = np.concatenate([v[:, j] for v in data.values])
        col = col[~np.isnan(col)]
        count[j] = col.size
        if col.size:
            big[j] = float(np.abs(col).max())
            unit = col / big[j] if big[j] > 0 else col
            mean[j] = float(unit.mean())
            m2[j] = float(((unit - mean[j]) ** 2).sum())
    return {"count": count, "big": big, "mean": mean, "m2": m2}


def _local_stats(data: SeriesSet) -> dict[str, Any]:
    """What one process contributes to the scaler of every process's series: per feature
    the count, the largest magnitude and the mean and sum of squared deviations in units of
    it (:func:`_feature_stats`); the distinct time steps with their counts; the earliest
    time."""
    with np.errstate(over="ignore", invalid="ignore"):
        steps = np.concatenate([np.diff(t) for t in data.times])
    if not np.isfinite(steps).all():
        raise ValidationError(
            "times: expected time differences that fit in float64, found an overflow "
            f"between {min(t[0] for t in data.times)!r} and {max(t[-1] for t in data.times)!r}"
        )
    values, counts = np.unique(steps, return_counts=True)
    return {
        "features": list(data.feature_names),
        **_feature_stats(data),
        "steps": (values, counts),
        "origin": float(min(t[0] for t in data.times)),
        "form": (data.layout.time_unit, data.layout.freq),
    }


def median_of_counts(values: np.ndarray, counts: np.ndarray) -> float:
    """``np.median`` of the sample holding ``counts[i]`` copies of ``values[i]``."""
    order = np.argsort(values, kind="stable")
    values, counts = values[order], counts[order]
    ends = np.cumsum(counts)
    n = int(ends[-1])
    low = float(values[np.searchsorted(ends, (n - 1) // 2, side="right")])
    high = float(values[np.searchsorted(ends, n // 2, side="right")])
    return float(np.mean([low, high]))


def merge_scaler(
    parts: list[dict[str, Any]], data: SeriesSet, *, standardise: bool = True
) -> Scaler:
    """The scaler of every process's series from their :func:`_local_stats` (the mean and
    std up to round-off, the time step and origin exactly as :meth:`Scaler.fit` would give
    on all the series at once)."""
    D = data.num_features
    for rank, p in enumerate(parts):
        if p.get("features", list(data.feature_names)) != list(data.feature_names):
            err = ValidationError(
                f"X: expected the same features in every process, found {p['features']} in "
                f"process {rank} and {list(data.feature_names)} here"
            )
            err.synchronized = len(parts) > 1  # type: ignore[attr-defined]  # all raise it
            raise err
    count = np.sum([p["count"] for p in parts], axis=0)
    for j in range(D):
        if count[j] == 0:
            err = ValidationError(
                f"X: expected every feature to be observed at least once in the training "
                f"data, found feature {data.feature_names[j]!r} (column {j}) never observed"
            )
            err.synchronized = len(parts) > 1  # type: ignore[attr-defined]  # all raise it
            raise err
    big = np.max([p["big"] for p in parts], axis=0)  # (D,) the largest magnitude of all
    mean, std = np.zeros(D), np.ones(D)
    for j in range(D):
        if big[j] == 0:
            continue
        n, m, s2 = 0.0, 0.0, 0.0  # Chan et al.'s pairwise update, in units of big[j]
        for p in parts:
            nb = float(p["count"][j])
            if nb == 0:
                continue
            r = p["big"][j] / big[j]
            mb, m2b = p["mean"][j] * r, p["m2"][j] * r * r
            delta = mb - m
            total = n + nb
            m += delta * nb / total
            s2 += m2b + delta * delta * n * nb / total
            n = total
        mean[j] = m * big[j]
        sd = float(np.sqrt(max(s2, 0.0) / n)) * big[j]
        std[j] = sd if sd > 0 and np.isfinite(sd) else 1.0
    if not standardise:
        mean, std = np.zeros(D), np.ones(D)
    values = np.concatenate([p["steps"][0] for p in parts])
    counts = np.concatenate([p["steps"][1] for p in parts])
    step = median_of_counts(values, counts) if counts.sum() else 1.0
    forms = {tuple(p["form"]) for p in parts}
    if len(forms) > 1:  # each process read its own times
        raise ValidationError(
            f"X: expected every process's times counted alike, found {sorted(map(str, forms))} "
            "(time unit, calendar frequency); give every process series on one calendar"
        )
    unit, freq = forms.pop()
    state = {
        "version": 1,
        "time_unit": unit,
        "time_freq": freq,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "feature_names": list(data.feature_names),
        "names_given": data.layout.names_given,
        "time_step": step,
        "time_origin": min(p["origin"] for p in parts),
    }
    return Scaler.from_state_dict(state)


def sharded_fit_data(
    X: Any,
    times: Any,
    X_val: Any,
    times_val: Any,
    *,
    binary: bool,
    comm: Communicator,
    X_val_target: Any = None,
) -> tuple[SeriesSet, SeriesSet | None, SeriesSet | None, Scaler]:
    """:func:`fit_data` when every process holds only its own series: the scaler is fitted
    on every process's series, and process 0 warns of features constant over all of them
    (:func:`warn_constant_merged`); a bad input on any process stops all of them."""
    with comm.together():
        train_set, val_set, target_set = _series(
            X, times, X_val, times_val, binary=binary, X_val_target=X_val_target
        )
        parts = _local_stats(train_set)
    gathered = comm.all_gather(parts)
    scaler = merge_scaler(gathered, train_set, standardise=not binary)
    with comm.together():
        _check_with(scaler, train_set, val_set, target_set)
    if comm.is_main:  # every process has the same statistics: said once
        names = list(train_set.feature_names)
        warn_constant_merged(gathered, names, stacklevel=5, binary=binary)  # GPVAE.fit's caller
    return train_set, val_set, target_set, scaler


def fit_inputs(
    X: Any,
    times: Any,
    X_val: Any,
    times_val: Any,
    X_val_target: Any,
    *,
    binary: bool,
    comm: Communicator | None,
    sharded: bool,
    hiding: tuple[str, float, tuple[int, int], int],
    windows: bool = False,
) -> tuple[SeriesSet, SeriesSet, SeriesSet | None, tuple[SeriesSet, SeriesSet] | None, Scaler]:
    """(all training series, training input, validation series, validation pair or None,
    scaler) of a fit: the training input lacks the blocks held out for validation.

    :func:`fit_data` in one process, :func:`sharded_fit_data` when every process holds
    its own series; when every process holds all the series, a bad input stops them all
    with one error. The validation pair is
    :func:`~gpvae.estimator.validation.validation_split`'s for ``hiding`` = (val_pattern,
    val_fraction, block_lengths, seed); with ``sharded``, each process hides its own blocks.
    ``windows``: the training input is cut into windows afterwards (``window``), so points
    held out of it are drawn here too, of the whole series.
    """
    if comm is None:
        full_set, val_set, target_set, scaler = fit_data(
            X, times, X_val, times_val, binary=binary, X_val_target=X_val_target
        )
    elif sharded:
        full_set, val_set, target_set, scaler = sharded_fit_data(
            X, times, X_val, times_val, binary=binary, comm=comm, X_val_target=X_val_target
        )
    else:
        with comm.together():
            full_set, val_set, target_set, scaler = fit_data(
                X, times, X_val, times_val, binary=binary, X_val_target=X_val_target
            )
    pattern, fraction, lengths, seed = hiding
    if comm is not None and sharded:
        seed = seed_for(seed, comm.rank)
    with contextlib.nullcontext() if comm is None else comm.together():
        train_set, validation = validation_split(
            full_set,
            val_set,
            target_set,
            pattern=pattern,
            fraction=fraction,
            lengths=lengths,
            seed=seed,
            windows=windows,
        )
    return full_set, train_set, val_set, validation, scaler


def fit_periods(
    kernel: KernelArg, period: PeriodArg, full_set: SeriesSet, scaler: Scaler, comm: Any
) -> tuple[list[float] | None, bool, float]:
    """(periods in steps, whether they are learned, the longest series' span in steps) for
    the model; in a distributed fit every process builds the same model: process 0's
    periods (the same everywhere unless each process holds its own series) and the longest
    span of all."""
    with contextlib.nullcontext() if comm is None else comm.together():
        periods, learn = resolve_periods(kernel, period, full_set, scaler)
    span = max(float(t[-1] - t[0]) for t in full_set.times) / scaler.time_step_
    if comm is not None:
        periods, learn = comm.all_gather((periods, learn))[0]
        span = max(comm.all_gather(span))
    return periods, learn, span


def calibrate_fit(
    ctx: PredictContext,
    session: FitSession,
    fresh: tuple[str, tuple[int, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The interval spread factors on the session's held-out entries (of every process), or
    on new hold-outs of its validation series with ``fresh`` = (pattern, block lengths)
    (:func:`~gpvae.estimator.calibration.fresh_holdouts`; for series held out of
    training), and where they ran out of their grid
    (:func:`~gpvae.estimator.calibration.interval_scales`)."""
    comm = session.comm
    D = ctx.scaler.num_features
    if session.val_input is None or session.val_target is None:
        return np.ones(D), np.zeros(D, np.int64)
    if comm is None:
        return calibrate_intervals(ctx, session.val_input, session.val_target, fresh)
    K = len(LEVELS)
    none = np.zeros(0, np.int64)
    empty = (np.zeros(0), np.zeros((0, K)), np.zeros((0, K)), np.zeros(0), none, none)
    arrays = empty
    with comm.together():
        local = session.local_validation()
        if local is not None:
            arrays = heldout_arrays(ctx, *local, fresh)
    gathered = comm.all_gather(arrays)
    offsets = np.cumsum([0] + [int(g[5].max()) + 1 if len(g[5]) else 0 for g in gathered])
    mean, lower, upper, target, feature = (
        np.concatenate([g[i] for g in gathered]) for i in range(5)
    )
    runs = np.concatenate([g[5] + off for g, off in zip(gathered, offsets)])
    return interval_scales(mean, lower, upper, target, feature, D, runs=runs)


def windowed(data: SeriesSet, window: int) -> SeriesSet:
    """The series cut into half-overlapping windows of ``window`` steps (windows with
    nothing observed left out; :func:`gpvae.data.windows.cut_windows`), as a ragged set in
    the same time units."""
    values, times = cut_windows(data.values, data.times, window)
    return to_series_set(list(values), list(times), allow_single_step=True)
