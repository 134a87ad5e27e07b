"""Per-feature standardisation fitted on observed training entries, and the time scale.

``z = (y - mean) / std`` per feature, with mean and (population, ddof=0) std computed from the
observed (non-NaN) training entries only. A constant feature (std 0, including a feature
observed once) is scaled by its own size, ``|mean|`` (1 when it is 0), so that its
uncertainty is relative to its value whatever its units (with std 1, a feature constant at
0.001 had intervals of about +-1). A feature never observed in the training
data cannot be scaled and raises an error.

The scaler also records ``time_step_``, the median spacing between consecutive time steps of
the training series, as a natural unit for kernel lengthscale defaults (it is not applied),
and ``time_spacing_``, the range of the training series' own median spacings, against which
:meth:`Scaler.warn_far_times` checks the spacing of new series (a time unit mistake).

The model computes in float32: :meth:`Scaler.check_range` rejects data whose standardised
values or scaled times ``(t - time_origin_) / time_step_`` do not fit in float32, naming the
argument, instead of letting them overflow to Inf inside the model. It also rejects a series
whose times float32 cannot resolve over its span: batches move each series to start within a
step of 0 (:meth:`~gpvae.data.SeriesSet.to_batch` with ``shift_rows``), but a series spanning
more than ~2**23 of its own spacings (two bursts of 1-s points two years apart) still had its
later times rounded by several spacings (3,000 distinct times became 751 positions) and its
posterior changed by about its own size, without a word.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, overload

import numpy as np
import torch
from torch import Tensor

from gpvae.data.series import SeriesSet
from gpvae.errors import NotFittedError, ShapeError, ValidationError

__all__ = ["FLOAT32_MAX", "TIME_RESOLUTION", "Scaler"]

_STATE_VERSION = 1
#: Largest magnitude the model's float32 tensors can hold.
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: How far float32 may move a time of a series (in its batch row, see
#: :meth:`Scaler.check_range`), as a share of the series' median spacing.
TIME_RESOLUTION = 0.25
_ArrayT = TypeVar("_ArrayT", np.ndarray, Tensor)


class Scaler:
    """Standardise features with statistics of observed training entries.

    Attributes (after :meth:`fit`):
        mean_: (D,) float64 per-feature mean of observed entries.
        std_: (D,) float64 per-feature std of observed entries (``|mean|`` for constant
            features, 1.0 when that is 0).
        feature_names_: D feature names seen at fit.
        names_given_: whether the names came from the user (DataFrame columns); only then
            are names compared at :meth:`transform`.
        time_step_: median difference between consecutive times of the training series
            (1.0 when no series has two steps).
        time_origin_: the earliest training time (a natural ``time_shift`` for batches).
        time_end_: the latest training time (None for scalers saved before it was kept).
        time_spacing_: (smallest, largest) median spacing of consecutive times over the
            training series with two steps or more (None when no series has two, and for
            scalers saved before it was kept).
        time_form_: how the training times were counted, (``time_unit``, ``freq``) of the
            layout (:class:`gpvae.data.series.Layout`): (None, None) for numbers,
            ("hours", None) for datetimes / durations in hours, ("steps", freq) on a
            calendar grid. New data are read in the same form (their own times would infer
            it afresh: one extra date off a business-day grid turned every time into hours).
            None for scalers saved before it was kept.
    """

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None
        self.feature_names_: tuple[str, ...] = ()
        self.names_given_: bool = False
        self.time_step_: float = 1.0
        self.time_origin_: float = 0.0
        self.time_end_: float | None = None
        self.time_spacing_: tuple[float, float] | None = None
        self.time_form_: tuple[str | None, str | None] | None = None

    @property
    def is_fitted(self) -> bool:
        """True after :meth:`fit` or :meth:`from_state_dict`."""
        return self.mean_ is not None

    @property
    def num_features(self) -> int:
        """D, the number of features seen at fit."""
        return len(self.feature_names_)

    def fit(self, data: SeriesSet, standardise: bool = True) -> Scaler:
        """Compute per-feature mean/std from the observed entries, and the median time step.

        Args:
            data: training series (values (T_i, D) with NaN for missing).
            standardise: False keeps values as they are (mean 0, std 1 for every feature,
                e.g. 0/1 data for a Bernoulli likelihood); the time scale is fitted either way.

        Returns:
            self.

        Raises:
            ValidationError: a feature has no observed entry in ``data`` (message names X and
                the feature).
        """
        D = data.num_features
        mean = np.empty(D)
        std = np.empty(D)
        every = _stacked(data.values, D)  # one copy, not one per feature
        for j in range(D):
            col = every[:, j]
            col = col[~np.isnan(col)]
            if col.size == 0:
                raise ValidationError(
                    f"X: expected every feature to be observed at least once in the training "
                    f"data, found feature {data.feature_names[j]!r} (column {j}) never observed"
                )
            # Divide by the largest magnitude first so that values near 1e300 do not overflow.
            big = float(np.abs(col).max())
            unit = col / big if big > 0 else col
            mean[j] = float(unit.mean()) * big if big > 0 else 0.0
            s = float(unit.std()) * big if big > 0 else 0.0
            if s > 0 and math.isfinite(s):
                std[j] = s
            else:  # constant: scaled by its own size, so its intervals are in its units
                std[j] = abs(mean[j]) if 0 < abs(mean[j]) < math.inf else 1.0
        with np.errstate(over="ignore", invalid="ignore"):
            steps = np.concatenate([np.diff(t) for t in data.times])
        if not np.isfinite(steps).all():
            raise ValidationError(
                "times: expected time differences that fit in float64, found an overflow "
                f"between {min(t[0] for t in data.times)!r} and {max(t[-1] for t in data.times)!r}"
            )
        if not standardise:
            mean, std = np.zeros(D), np.ones(D)
        self.mean_, self.std_ = mean, std
        self.feature_names_ = tuple(data.feature_names)
        self.names_given_ = data.layout.names_given
        self.time_step_ = float(np.median(steps)) if steps.size else 1.0
        self.time_origin_ = float(min(t[0] for t in data.times))
        self.time_end_ = float(max(t[-1] for t in data.times))
        spacings = _median_spacings(data.times)
        spacings = spacings[~np.isnan(spacings)]
        self.time_spacing_ = (
            (float(spacings.min()), float(spacings.max())) if spacings.size else None
        )
        self.time_form_ = (data.layout.time_unit, data.layout.freq)
        return self

    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean_ is None or self.std_ is None:
            raise NotFittedError("Scaler: call fit(...) before transforming data")
        return self.mean_, self.std_

    def check(self, data: SeriesSet, name: str = "X") -> None:
        """Raise if ``data`` has a different number of features (or names) than at fit."""
        self._stats()
        named = self.names_given_ and data.layout.names_given
        if named and tuple(data.feature_names) != self.feature_names_:
            fitted, found = list(self.feature_names_), [str(f) for f in data.feature_names]
            missing = [f for f in fitted if f not in found]
            extra = [f for f in found if f not in fitted]
            if missing or extra:
                raise ValidationError(
                    f"{name}: expected the feature columns seen at fit {fitted}, found "
                    + ", ".join(
                        part
                        for part in (
                            f"{missing} missing" if missing else "",
                            f"{extra} besides them" if extra else "",
                        )
                        if part
                    )
                    + " (leave the id and time columns and the features, or choose columns "
                    "with gpvae.data.to_series_set(X, feature_cols=[...]))"
                )
        if data.num_features != self.num_features:
            raise ShapeError(
                f"{name}: expected {self.num_features} features (as at fit), found "
                f"{data.num_features}"
            )
        same = tuple(data.feature_names) == self.feature_names_
        if self.names_given_ and data.layout.names_given and not same:
            fitted = list(self.feature_names_)
            hint = (
                f": the same features in another order; put the feature columns in the "
                f"fit's order, e.g. {name}[[<id and time columns>, *{fitted!r}]]"
                if sorted(data.feature_names) == sorted(fitted)
                else ""
            )
            raise ValidationError(
                f"{name}: expected features {fitted} (as at fit, same order), found "
                f"{list(data.feature_names)}{hint}"
            )

    def check_range(self, data: SeriesSet, name: str = "X", times_name: str = "times") -> None:
        """Raise unless ``data`` standardised and its scaled times fit in float32.

        Args:
            data: series with this scaler's features.
            name: the values' argument name for messages (e.g. ``"X_val"``).
            times_name: the times' argument name for messages.

        Raises:
            ValidationError: naming ``name`` for a value ``|y - mean| / std >= FLOAT32_MAX``
                (including an overflow of ``y - mean``), or ``times_name`` for a time with
                ``|t - time_origin_| / time_step_ >= FLOAT32_MAX``, or for a series whose
                times float32 cannot resolve: in its batch row (scaled times less the whole
                steps of its first, :meth:`~gpvae.data.SeriesSet.row_shifts`), rounding to
                float32 moves a time by more than :data:`TIME_RESOLUTION` of the series'
                median spacing (the kernels would read wrong distances, distinct times would
                merge).
        """
        mean, std = self._stats()
        if self._in_range(data):  # all at once; series by series only to name the culprit
            return
        lay = data.layout
        ids = lay.series_ids
        if lay.kind in ("dataframe_long", "dataframe_wide"):  # the times are a column / index
            times_name = f"{name}.index" if lay.time_col is None else f"{name}[{lay.time_col!r}]"
        for i, (v, t) in enumerate(zip(data.values, data.times)):
            label = f"series {ids[i]!r}" if ids is not None else f"{name}[{i}]"
            with np.errstate(over="ignore", invalid="ignore"):
                z = np.abs((v - mean) / std)  # NaN where missing
            big = z >= FLOAT32_MAX
            if big.any():
                k, j = (int(a) for a in np.argwhere(big)[0])
                raise ValidationError(
                    f"{name}: expected values within {FLOAT32_MAX:.3g} standard deviations of "
                    f"the training mean (the model computes in float32), found "
                    f"{float(v[k, j])!r} in feature {self.feature_names_[j]!r} of {label} "
                    f"(training mean {mean[j]:.4g}, std {std[j]:.4g})"
                )
            x = self.scaled_times(t, times_name, where=f" in {label}")
            blur = _float32_blur(x)
            if blur is not None:
                raise ValidationError(_blur_message(blur, x, times_name, label, self))

    def _in_range(self, data: SeriesSet) -> bool:
        """Whether every value and time of ``data`` passes :meth:`check_range`."""
        mean, std = self._stats()
        with np.errstate(over="ignore", invalid="ignore"):
            z = np.abs((_stacked(data.values, self.num_features) - mean) / std)
            if (z >= FLOAT32_MAX).any():
                return False
            times = [np.asarray(t, dtype=np.float64) for t in data.times]
            t = np.concatenate(times) if times else np.empty(0)
            x = (t - self.time_origin_) / self.time_step_
        if not (np.abs(x) < FLOAT32_MAX).all():
            return False
        return not _any_blurred(x, np.array([len(t) for t in times], dtype=np.int64))

    def check_resolution(self, rows: Sequence[np.ndarray], name: str, what: str) -> None:
        """Refuse, naming ``name``, time rows that float32 cannot resolve, as
        :meth:`check_range` refuses a series' own times: ``rows`` are scaled times (each
        increasing, e.g. a series' times followed by the times it is forecast at, or the
        times a sample is drawn at); ``what`` names row i in the message (``{i}`` in it).

        Raises:
            ValidationError: naming ``name`` for the first row that float32 blurs.
        """
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        x = np.concatenate(rows) if len(rows) else np.empty(0)
        if not len(x) or not _any_blurred(x, lengths):
            return
        for i, row in enumerate(rows):
            # times closer than a step apart (a sample's, near duplicates) may merge: the
            # kernels, whose scales are steps, cannot tell them apart anyway
            blur = _float32_blur(row, floor=1.0)
            if blur is not None:
                label = what.format(i)
                raise ValidationError(_blur_message(blur, row, name, label, self))

    def warn_far_times(
        self,
        data: SeriesSet,
        name: str = "X",
        spans: float = 10.0,
        stacklevel: int = 2,
        spacing_factor: float = 10.0,
    ) -> None:
        """Warn about times of ``data`` that look like a unit or origin mistake (seconds or
        minutes for hours, a wrong origin): the kernels and the time scale were learned in the
        training data's units, and such times would be read in them without a word.

        Let the band be the training time range widened by ``spans`` times its width (at
        least ``spans`` time steps) on either side, and a series' spacing the median positive
        difference of its consecutive times. Three rules, each naming the first series it
        concerns and the value found:

        - a series that *starts* outside the band (a wrong origin);
        - a series that *ends* outside the band and whose spacing is more than
          ``spacing_factor`` times larger or smaller than the training ``time_step_`` (a
          unit mistake: minutes, seconds, or days read as hours stretch both the series and
          its steps);
        - any other series of numbers (starting in the band; dates and durations carry
          their unit) whose spacing is more than
          ``spacing_factor`` times smaller than the smallest spacing of a training series or
          larger than the largest (``time_spacing_``): a unit mistake that squeezes the
          series into the training range (hours or minutes given to a model that counts
          seconds) or stretches it within it.

        So a series that starts in the band and keeps about the training spacing may run on
        for as long as it likes (monitoring data that continue after a short training
        stretch, a forecast from a later stretch), and a series of the training data is
        never flagged, however its spacing differs from the pooled step (a table mixing
        one-minute and three-hourly sensors: every spacing between the training series'
        own is expected).

        The rules need the training end (``time_end_``), which scalers saved before it was
        kept lack: those never warn; the third needs ``time_spacing_`` (scalers saved before
        it was kept, and those of spatial fields, skip it). ``stacklevel`` as in
        ``warnings.warn`` from the caller of this method (2: its caller's line)."""
        if self.time_end_ is None:
            return
        step = self.time_step_
        width = spans * max(self.time_end_ - self.time_origin_, step)
        lo, hi = self.time_origin_ - width, self.time_end_ + width
        far = [i for i, t in enumerate(data.times) if t.size and not lo <= t[0] <= hi]
        if far:
            found = float(data.times[far[0]][0])
            warnings.warn(
                f"{name}: {len(far)} series start far outside the training range "
                f"[{self.time_origin_:.6g}, {self.time_end_:.6g}] (more than {spans:g} times its "
                f"width away), e.g. at {found:.6g} in {data.series_label(far[0])}; check the "
                "time unit and origin",
                UserWarning,
                stacklevel=stacklevel + 1,
            )
        spaced: list[tuple[int, float]] = []
        squeezed: list[tuple[int, float]] = []  # (third rule)
        known = self.time_spacing_
        if data.layout.time_unit is not None:  # dates or durations: no unit to mistake
            known = None
        far_rows = set(far)  # (a list's membership test made the loop quadratic)
        spacings = _median_spacings(data.times)
        for i, t in enumerate(data.times):
            s = float(spacings[i])
            if i in far_rows or np.isnan(s):  # far, or fewer than two distinct times
                continue
            if not lo <= t[-1] <= hi and not step / spacing_factor <= s <= step * spacing_factor:
                spaced.append((i, s))
            elif known and not known[0] / spacing_factor <= s <= known[1] * spacing_factor:
                squeezed.append((i, s))
        if spaced:
            i, s = spaced[0]
            warnings.warn(
                f"{name}: {len(spaced)} series end far outside the training range "
                f"[{self.time_origin_:.6g}, {self.time_end_:.6g}] with a time spacing far from "
                f"the training data's: expected a median spacing within a factor of "
                f"{spacing_factor:g} of the training time step {step:.6g}, found {s:.6g} in "
                f"{data.series_label(i)}, ending at {float(data.times[i][-1]):.6g}; check the "
                "time unit and origin",
                UserWarning,
                stacklevel=stacklevel + 1,
            )
        if squeezed and known:
            i, s = squeezed[0]
            seen = (
                f"{known[0]:.6g}" if known[0] == known[1] else f"{known[0]:.6g} to {known[1]:.6g}"
            )
            warnings.warn(
                f"{name}: {len(squeezed)} series have a time spacing far from the training "
                f"data's: expected a median spacing within a factor of {spacing_factor:g} of "
                f"the training series' ({seen}; time step {step:.6g}), found {s:.6g} in "
                f"{data.series_label(i)} (times {float(data.times[i][0]):.6g} to "
                f"{float(data.times[i][-1]):.6g}); check the time unit",
                UserWarning,
                stacklevel=stacklevel + 1,
            )

    def scaled_times(self, t: np.ndarray, name: str = "times", where: str = "") -> np.ndarray:
        """``(t - time_origin_) / time_step_`` (float64), checked to fit in float32.

        Raises:
            ValidationError: naming ``name`` when a scaled time is not finite in float32.
        """
        self._stats()
        with np.errstate(over="ignore", invalid="ignore"):
            x = (np.asarray(t, dtype=np.float64) - self.time_origin_) / self.time_step_
        bad = ~(np.abs(x) < FLOAT32_MAX)
        if bad.any():
            found = float(np.asarray(t, dtype=np.float64)[bad][0])
            raise ValidationError(
                f"{name}: expected times within {FLOAT32_MAX:.3g} time steps (of "
                f"{self.time_step_:.6g}) of the training data's first time "
                f"{self.time_origin_:.6g} (the model computes in float32), found {found!r}"
                f"{where}"
            )
        return x

    @overload
    def transform(self, data: SeriesSet) -> SeriesSet: ...
    @overload
    def transform(self, data: _ArrayT) -> _ArrayT: ...

    def transform(self, data: SeriesSet | np.ndarray | Tensor) -> SeriesSet | np.ndarray | Tensor:
        """Standardise: ``(y - mean) / std`` per feature (last axis, D).

        Args:
            data: a SeriesSet, or values (..., D) as a numpy array or tensor. NaN stays NaN.

        Returns:
            The same kind of object, standardised.
        """
        if isinstance(data, SeriesSet):
            self.check(data)
            mean, std = self._stats()
            return data.with_values([(v - mean) / std for v in data.values])
        mean_, std_ = self._cast(data)
        return (data - mean_) / std_

    @overload
    def inverse_transform(self, data: SeriesSet) -> SeriesSet: ...
    @overload
    def inverse_transform(self, data: _ArrayT) -> _ArrayT: ...

    def inverse_transform(
        self, data: SeriesSet | np.ndarray | Tensor
    ) -> SeriesSet | np.ndarray | Tensor:
        """Back to original units: ``z * std + mean`` per feature (last axis, D).

        Args:
            data: a SeriesSet, or standardised values (..., D) as an array or tensor.
        """
        if isinstance(data, SeriesSet):
            self.check(data)
            mean, std = self._stats()
            return data.with_values([v * std + mean for v in data.values])
        mean_, std_ = self._cast(data)
        return data * std_ + mean_

    def inverse_transform_scale(self, scale: _ArrayT) -> _ArrayT:
        """Standard deviations (..., D) in standardised units -> original units (``* std``)."""
        _, std_ = self._cast(scale)
        return scale * std_

    def inverse_transform_variance(self, var: _ArrayT) -> _ArrayT:
        """Variances (..., D) in standardised units -> original units (``* std**2``)."""
        _, std_ = self._cast(var)
        return var * std_**2

    def transform_variance(self, var: _ArrayT) -> _ArrayT:
        """Variances (..., D) in original units -> standardised units (``/ std**2``)."""
        _, std_ = self._cast(var)
        return var / std_**2

    def _cast(self, data: np.ndarray | Tensor) -> tuple[Any, Any]:
        mean, std = self._stats()
        if data.shape[-1:] != (len(mean),):
            raise ShapeError(
                f"X: expected values with {len(mean)} features on the last axis, found shape "
                f"{tuple(data.shape)}"
            )
        if isinstance(data, Tensor):
            dtype = data.dtype if data.is_floating_point() else torch.float64
            return (
                torch.as_tensor(mean, dtype=dtype, device=data.device),
                torch.as_tensor(std, dtype=dtype, device=data.device),
            )
        if isinstance(data, np.ndarray) and data.dtype.kind == "f":
            return mean.astype(data.dtype), std.astype(data.dtype)
        return mean, std

    def state_dict(self) -> dict[str, Any]:
        """Plain, JSON-able state: lists of floats and strings."""
        mean, std = self._stats()
        return {
            "version": _STATE_VERSION,
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
            "feature_names": list(self.feature_names_),
            "names_given": self.names_given_,
            "time_step": self.time_step_,
            "time_origin": self.time_origin_,
            "time_end": self.time_end_,
            **({} if self.time_spacing_ is None else {"time_spacing": list(self.time_spacing_)}),
            **(
                {}
                if self.time_form_ is None
                else {"time_unit": self.time_form_[0], "time_freq": self.time_form_[1]}
            ),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> Scaler:
        """Rebuild a fitted scaler from :meth:`state_dict` output.

        Raises:
            ValidationError: the state is malformed (names the offending field).
        """
        if not isinstance(state, Mapping):
            raise ValidationError(f"state: expected a dict, found {type(state).__name__}")
        if state.get("version") != _STATE_VERSION:
            raise ValidationError(
                f"state['version']: expected {_STATE_VERSION}, found {state.get('version')!r}"
            )
        try:
            mean = np.asarray(state["mean"], dtype=np.float64)
            std = np.asarray(state["std"], dtype=np.float64)
            names = tuple(str(s) for s in state["feature_names"])
            step = float(state["time_step"])
            origin = float(state.get("time_origin", 0.0))
        except (KeyError, TypeError, ValueError) as err:
            msg = f"state: expected mean, std, feature_names and time_step, found error {err!r}"
            raise ValidationError(msg) from None
        D = len(names)
        if mean.shape != (D,) or std.shape != (D,) or D == 0:
            raise ValidationError(
                f"state: expected mean and std of length {D} (the number of feature_names), "
                f"found {mean.shape} and {std.shape}"
            )
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValidationError("state: expected finite mean and positive finite std")
        if not (math.isfinite(step) and step > 0):
            raise ValidationError(f"state['time_step']: expected a positive number, found {step}")
        if not math.isfinite(origin):
            raise ValidationError(f"state['time_origin']: expected a finite number, found {origin}")
        out = cls()
        out.mean_, out.std_ = mean, std
        out.feature_names_ = names
        out.names_given_ = bool(state.get("names_given", False))
        out.time_step_ = step
        out.time_origin_ = origin
        end = state.get("time_end")
        out.time_end_ = float(end) if isinstance(end, (int, float)) and math.isfinite(end) else None
        spacing = state.get("time_spacing")
        if spacing is not None:
            try:
                pair = tuple(float(v) for v in spacing)
            except (TypeError, ValueError):
                pair = ()
            ok = len(pair) == 2 and all(math.isfinite(v) and v > 0 for v in pair)
            if not (ok and pair[0] <= pair[1]):
                raise ValidationError(
                    "state['time_spacing']: expected [smallest, largest] positive median "
                    f"spacings, found {spacing!r}"
                )
            out.time_spacing_ = (pair[0], pair[1])
        if "time_unit" in state:
            unit, freq = state.get("time_unit"), state.get("time_freq")
            if unit not in (None, "hours", "steps") or (unit == "steps") != isinstance(freq, str):
                raise ValidationError(
                    f"state['time_unit']: expected None, 'hours', or 'steps' with a frequency, "
                    f"found {unit!r} with {freq!r}"
                )
            out.time_form_ = (unit, freq)
        return out


def _median_spacing(t: np.ndarray) -> float | None:
    """The median positive difference of consecutive times ``t`` (None for fewer than two
    distinct times)."""
    d = np.diff(np.asarray(t, dtype=np.float64))
    d = d[d > 0]
    return float(np.median(d)) if d.size else None


def _median_spacings(times: Sequence[np.ndarray]) -> np.ndarray:
    """(n,) float64 :func:`_median_spacing` of each series of ``times`` (NaN for None), the
    same values bit for bit: the series of one length go through one ``np.median`` along
    their rows (a loop over many short series cost a call each), those with a repeated or
    decreasing time one at a time."""
    out = np.full(len(times), np.nan)
    lengths = np.fromiter((len(t) for t in times), dtype=np.int64, count=len(times))
    for T in np.unique(lengths[lengths >= 2]).tolist():
        rows = np.flatnonzero(lengths == T)
        stacked = np.stack([np.asarray(times[i], dtype=np.float64) for i in rows.tolist()])
        d = np.diff(stacked, axis=1)
        rising = (d > 0).all(axis=1)
        if rising.any():
            out[rows[rising]] = np.median(d[rising], axis=1)
        for i in rows[~rising].tolist():
            s = _median_spacing(times[i])
            out[i] = np.nan if s is None else s
    return out


def _stacked(values: Sequence[np.ndarray], num_features: int) -> np.ndarray:
    """The (T_i, D) arrays one below the other: (sum T_i, D)."""
    return np.concatenate(values) if values else np.empty((0, num_features))


def _float32_blur(x: np.ndarray, floor: float = 0.0) -> tuple[float, float] | None:
    """For one series' scaled times ``x`` (float64, increasing): (largest move, median
    spacing) in steps when rounding its batch row ``x - floor(x[0])`` to float32 moves a time
    by more than :data:`TIME_RESOLUTION` of its median spacing (or of ``floor`` steps, if
    larger); None otherwise (also for fewer than two times)."""
    if len(x) < 2:
        return None
    p = x - np.floor(x[0])
    with np.errstate(over="ignore", invalid="ignore"):
        move = float(np.abs(p.astype(np.float32).astype(np.float64) - p).max())
    if move == 0.0:
        return None
    spacing = float(np.median(np.diff(p)))
    return None if move <= TIME_RESOLUTION * max(spacing, floor) else (move, spacing)


def _any_blurred(x: np.ndarray, lengths: np.ndarray) -> bool:
    """Whether :func:`_float32_blur` finds a series in the concatenated scaled times ``x`` of
    series of ``lengths``: all at once, the median only for series where float32 moves a
    time by more than :data:`TIME_RESOLUTION` of their smallest spacing."""
    keep = lengths >= 2
    if not keep.any():
        return False
    p = x[np.repeat(keep, lengths)]  # the series with two times or more, one after another
    lengths = lengths[keep]
    at = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # where each starts
    p = p - np.repeat(np.floor(p[at]), lengths)  # their batch rows
    with np.errstate(over="ignore", invalid="ignore"):
        move = np.abs(p.astype(np.float32).astype(np.float64) - p)
    worst = np.maximum.reduceat(move, at)
    if not worst.any():
        return False
    gaps = np.diff(p)
    gaps[at[1:] - 1] = np.inf  # across series
    smallest = np.minimum.reduceat(np.append(gaps, np.inf), at)
    maybe = np.flatnonzero(~(worst <= TIME_RESOLUTION * smallest))
    return any(_float32_blur(p[at[i] : at[i] + lengths[i]]) is not None for i in maybe.tolist())


def _blur_message(
    blur: tuple[float, float],
    x: np.ndarray,
    times_name: str,
    label: str,
    scaler: Scaler,
) -> str:
    """The message of :meth:`Scaler.check_range` for a series whose times float32 cannot
    resolve (``blur`` from :func:`_float32_blur` of its scaled times ``x``)."""
    move, spacing = blur
    gaps = np.diff(x)
    k = int(np.argmax(gaps))
    # float32 moves a time in [2**e, 2**(e + 1)) by at most 2**(e - 24)
    limit = 2.0 ** (math.floor(math.log2(TIME_RESOLUTION * spacing)) + 25) if spacing > 0 else 0
    return (
        f"{times_name}: expected times that float32 (the model's compute dtype) resolves, "
        f"found {label} spanning {float(x[-1] - x[0]):.4g} time steps (of "
        f"{scaler.time_step_:.6g}), over which float32 moves its times by up to {move:.3g} "
        f"steps, more than {TIME_RESOLUTION:g} of its median spacing {spacing:.3g} (distinct "
        f"times merge and the kernels read wrong distances); split the series at its long "
        f"gaps (its longest: {float(gaps[k]):.4g} steps, after its time number {k}, counting "
        f"from 0 in time order) into parts spanning under ~{limit:.3g} steps each, each "
        f"part a series of its own (e.g. a new value of a series id column), or each "
        f"part's times a call of their own"
    )
