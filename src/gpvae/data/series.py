"""The normalised collection of series that the rest of gpvae works on.

A :class:`SeriesSet` holds n series, each as values (T_i, D) float64 with NaN for missing
entries and times (T_i,) float64, strictly increasing. It also keeps a :class:`Layout`: what
the user passed in (array, ragged list, long or wide DataFrame, PyPOTS-style dict), the
original order of unsorted timestamps, feature labels and dtype, so that per-point results can
be given back in the user's form (see :func:`gpvae.data.from_padded`).

Build one with :func:`gpvae.data.to_series_set`; do not fill the fields by hand.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from gpvae.batch import Batch
from gpvae.errors import ShapeError, ValidationError

__all__ = ["InputKind", "Layout", "MergedTimes", "SeriesSet", "check_time_transform"]

InputKind = Literal["array", "ragged", "dataframe_long", "dataframe_wide", "dict"]


@dataclass(frozen=True, eq=False)
class Layout:
    """How the user's input was laid out, to give results back in the same form.

    Attributes:
        kind: "array" (n, T, D), "ragged" (list of (T_i, D)), "dataframe_long" (id, time,
            feature columns), "dataframe_wide" (one series, time index or column) or "dict"
            (PyPOTS-style ``{"X": ...}``).
        inner_kind: for "dict", the kind of ``X`` inside it ("array" or "ragged"); else None.
        dtype: numpy float dtype for array outputs (the input's float dtype, float64 for
            int/bool inputs).
        order: per series, the sort permutation (T_i,): sorted point k is input point
            ``order[i][k]``; results are put back with ``out[order[i]] = sorted_out``.
        feature_labels: the user's feature labels (DataFrame column labels), length D.
        names_given: True when feature labels came from the user (DataFrame columns).
        time_unit: "hours" when datetimes / timedeltas were converted to float hours,
            "steps" when datetimes on a regular calendar grid (months, quarters, years,
            business days) were counted in steps of ``freq``, else None.
        time_origin: the timestamp that became time 0.0 for datetimes, else None.
        freq: the calendar frequency (a pandas frequency string, or a month grid shifted
            to one day of the month, ``"MS+14D"``, or to each series' own day, ``"MS+*"``)
            when ``time_unit`` is "steps", else None (see :mod:`gpvae.data.calendar`).
        tz: the time zone of zone-aware datetimes (DataFrame inputs), else None. Times in
            hours are counted in UTC (no repeated or missing hours at clock changes); a
            calendar grid (months, business days, ...) is found and counted on the zone's
            own dates, so ``time_origin`` is then a wall-clock time of that zone.
        frame: for DataFrame kinds, a copy of the input frame (outputs keep its rows, order,
            index and columns).
        id_col: the id column of a long DataFrame.
        time_col: the time column of a DataFrame (None when the index is the time).
        series_ids: the id of every series (long DataFrames), in first-appearance order.
        rows: for DataFrame kinds, per series, the positional row of each sorted point.
    """

    kind: InputKind
    dtype: np.dtype
    order: tuple[np.ndarray, ...]
    feature_labels: tuple[Hashable, ...]
    names_given: bool = False
    inner_kind: Literal["array", "ragged"] | None = None
    time_unit: str | None = None
    time_origin: object | None = None
    freq: str | None = None
    tz: Any = None
    frame: pd.DataFrame | None = field(default=None, repr=False)
    id_col: Hashable | None = None
    time_col: Hashable | None = None
    series_ids: tuple[Hashable, ...] | None = None
    rows: tuple[np.ndarray, ...] | None = field(default=None, repr=False)

    @property
    def output_kind(self) -> InputKind:
        """The kind results are given back in (a dict gives back its ``X``'s kind)."""
        if self.kind == "dict" and self.inner_kind is not None:
            return self.inner_kind
        return self.kind


@dataclass(frozen=True, eq=False)
class SeriesSet:
    """A validated collection of n series, sorted by time.

    Attributes:
        values: n arrays (T_i, D) float64, NaN where missing (read-only).
        times: n arrays (T_i,) float64, finite and strictly increasing (read-only).
        feature_names: D feature names (strings).
        layout: how to give results back in the user's form.
    """

    values: tuple[np.ndarray, ...]
    times: tuple[np.ndarray, ...]
    feature_names: tuple[str, ...]
    layout: Layout = field(repr=False)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def num_series(self) -> int:
        """n, the number of series."""
        return len(self.values)

    def series_label(self, i: int) -> str:
        """How messages name series ``i``: by its id (``series 'A'``) when the input had
        ids (a long DataFrame), else by its position (``series 3``)."""
        ids = self.layout.series_ids
        return f"series {ids[i]!r}" if ids is not None else f"series {i}"

    @property
    def num_features(self) -> int:
        """D, the number of features."""
        return len(self.feature_names)

    @cached_property
    def lengths(self) -> np.ndarray:
        """(n,) int64 number of time steps T_i of every series (read-only; computed once:
        every training batch reads it)."""
        out = np.array([len(t) for t in self.times], dtype=np.int64)
        out.setflags(write=False)
        return out

    @property
    def max_length(self) -> int:
        """The longest series length, max_i T_i."""
        return int(self.lengths.max())

    @property
    def num_observed(self) -> int:
        """Total number of observed (non-NaN) entries."""
        return int(sum(int((~np.isnan(v)).sum()) for v in self.values))

    def with_values(self, values: Sequence[np.ndarray]) -> SeriesSet:
        """A copy with new values (same times, names and layout), e.g. scaled or masked.

        Args:
            values: n arrays (T_i, D), NaN where missing, in this set's (sorted) time order.

        Raises:
            ShapeError: when the number of series or a shape differs.
        """
        if len(values) != self.num_series:
            raise ShapeError(f"values: expected {self.num_series} series, found {len(values)}")
        out = []
        for i, (v, t) in enumerate(zip(values, self.times)):
            a = np.array(v, dtype=np.float64)
            if a.shape != (len(t), self.num_features):
                raise ShapeError(
                    f"values[{i}]: expected shape {(len(t), self.num_features)}, found {a.shape}"
                )
            if np.isinf(a).any():
                raise ValidationError(f"values[{i}]: expected finite values or NaN, found Inf")
            a.setflags(write=False)
            out.append(a)
        return replace(self, values=tuple(out))

    def subset(self, indices: Sequence[int] | np.ndarray) -> SeriesSet:
        """The series ``indices`` (in this order) as a set of their own, e.g. one process's
        share; per-series layout fields (order, rows, ids) follow them.

        Results of a subset come back per series; a DataFrame layout keeps its frame, so
        give results of a subset back through the full set.

        Raises:
            ValidationError: an index out of range, or no index.
        """
        idx = _check_indices(indices, self)
        lay = self.layout
        layout = replace(
            lay,
            order=tuple(lay.order[i] for i in idx),
            rows=None if lay.rows is None else tuple(lay.rows[i] for i in idx),
            series_ids=None if lay.series_ids is None else tuple(lay.series_ids[i] for i in idx),
        )
        return replace(
            self,
            values=tuple(self.values[i] for i in idx),
            times=tuple(self.times[i] for i in idx),
            layout=layout,
        )

    def hold_out(
        self,
        fraction: float,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[SeriesSet, SeriesSet]:
        """Hide a random share of the observed entries, e.g. for validation without ``X_val``.

        Every series keeps at least one observed entry (so the kept set stays valid); the
        share actually hidden can therefore be a little below ``fraction``.

        Args:
            fraction: share of observed entries to hide, in [0, 1).
            seed: seed of a fresh random generator (not with ``generator``).
            generator: explicit torch random generator.

        Returns:
            (kept, held): ``kept`` has the hidden entries set to NaN; ``held`` has only the
            hidden entries observed (NaN elsewhere). Both have this set's times and layout.
        """
        if not (0.0 <= fraction < 1.0):
            raise ValidationError(f"fraction: expected a number in [0, 1), found {fraction}")
        if generator is not None and seed is not None:
            raise ValidationError("seed: expected None when a generator is given, found both")
        if seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        kept, held = [], []
        for v in self.values:
            observed = np.flatnonzero(~np.isnan(v))  # flat positions (T_i * D)
            u = torch.rand(len(observed), generator=generator, dtype=torch.float64).numpy()
            hide = u < fraction
            if hide.all() and len(observed):
                hide[np.argmax(u)] = False  # keep one observed entry
            k = v.copy()
            k.flat[observed[hide]] = np.nan
            h = np.full_like(v, np.nan)
            h.flat[observed[hide]] = v.flat[observed[hide]]
            kept.append(k)
            held.append(h)
        return self.with_values(kept), self.with_values(held)

    def padded(
        self, length: int | None = None, indices: Sequence[int] | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pad series (in sorted time order) to a common length.

        Args:
            length: N, at least the longest selected series; None for the longest.
            indices: which series (B of them), in this order; None for all.

        Returns:
            values (B, N, D) float64, NaN where missing or padding; times (B, N) float64,
            padding repeats the last valid time; valid (B, N) bool, False on padding.
        """
        idx = np.arange(self.num_series) if indices is None else _check_indices(indices, self)
        lengths = self.lengths[idx]
        n_max = int(lengths.max()) if len(idx) else 0
        if length is None:
            length = n_max
        if length < n_max:
            raise ShapeError(
                f"length: expected at least the longest series {n_max}, found {length}"
            )
        B, D = len(idx), self.num_features
        vals = np.full((B, length, D), np.nan)
        tms = np.zeros((B, length))
        valid = np.zeros((B, length), dtype=bool)
        for b, i in enumerate(idx):
            T = int(lengths[b])
            vals[b, :T] = self.values[i]
            tms[b, :T] = self.times[i]
            tms[b, T:] = self.times[i][-1]
            valid[b, :T] = True
        return vals, tms, valid

    def to_batch(
        self,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        time_shift: float = 0.0,
        time_scale: float = 1.0,
        length: int | None = None,
        shift_rows: bool = False,
    ) -> Batch:
        """Build a padded :class:`~gpvae.batch.Batch` of some series.

        Padding goes to the longest selected series: ``valid`` is False there, ``x`` repeats
        the last valid time, ``y`` is 0 and ``observed`` False; missing entries also have
        ``y`` = 0 and ``observed`` False.

        Args:
            indices: which series (B of them), in this order; None for all.
            dtype: floating dtype of ``x`` and ``y``.
            device: device of the tensors.
            time_shift: subtracted from the times (in float64, before the cast to ``dtype``:
                large absolute times such as Unix seconds lose precision in float32).
            time_scale: the shifted times are divided by it, ``x = (t - shift) / scale``
                (e.g. :attr:`Scaler.time_step_` to measure time in typical steps).
            length: pad to this many points N (at least the longest selected series; None:
                the longest selected series).
            shift_rows: also move each row by its own whole number of steps,
                ``x = (t - shift) / scale - k`` with ``k`` the :meth:`row_shifts` of the row
                (its first time's whole steps since ``time_shift``), so that every row's ``x``
                starts in [0, 1) and keeps float32's resolution however far the series lies
                from ``time_shift`` (with one shift, a series a year of seconds after it kept
                101 of its 200 distinct times). For models whose kernels see only differences
                of ``x`` (every kernel of :mod:`gpvae.kernels`); index points of new times of
                a row must be moved by the same ``k``. Only the first time moves into
                [0, 1): a row spanning more than ~2**23 of its own spacings still loses
                them in float32 (:meth:`Scaler.check_range` refuses such series).

        Returns:
            Batch with x (B, N, 1), y (B, N, D), observed (B, N, D), valid (B, N).
        """
        check_time_transform(time_shift, time_scale)
        vals, tms, valid = self.padded(length=length, indices=indices)
        observed = ~np.isnan(vals)
        y = np.where(observed, vals, 0.0)
        x = (tms - time_shift) / time_scale
        if shift_rows:
            x -= self.row_shifts(indices, time_shift=time_shift, time_scale=time_scale)[:, None]
        batch = Batch(
            x=torch.from_numpy(x[..., None]).to(device=device, dtype=dtype),
            y=torch.from_numpy(y).to(device=device, dtype=dtype),
            observed=torch.from_numpy(observed).to(device=device),
            valid=torch.from_numpy(valid).to(device=device),
        )
        batch.validate()
        return batch

    def row_shifts(
        self,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        time_shift: float = 0.0,
        time_scale: float = 1.0,
    ) -> np.ndarray:
        """The whole steps ``k`` that :meth:`to_batch` with ``shift_rows=True`` takes off the
        ``x`` of each row: ``floor((t_0 - time_shift) / time_scale)`` of the series' first
        time ``t_0`` (0 for a series without times).

        Whole steps, so that a row starting within a step of ``time_shift`` keeps its ``x``
        bit for bit, and times that float32 holds exactly (integers below 2**24 steps) stay
        exact, their differences unchanged.

        Args:
            indices: which series (B of them), in this order; None for all.
            time_shift, time_scale: as for :meth:`to_batch`.

        Returns:
            (B,) float64 whole numbers.
        """
        check_time_transform(time_shift, time_scale)
        idx = np.arange(self.num_series) if indices is None else _check_indices(indices, self)
        first = np.array(
            [float(self.times[i][0]) if len(self.times[i]) else time_shift for i in idx]
        )
        return np.floor((first - time_shift) / time_scale)


def check_time_transform(time_shift: float, time_scale: float) -> None:
    """Raise unless ``time_shift`` is finite and ``time_scale`` positive and finite."""
    if not math.isfinite(time_shift):
        raise ValidationError(f"time_shift: expected a finite number, found {time_shift}")
    if not (math.isfinite(time_scale) and time_scale > 0):
        raise ValidationError(f"time_scale: expected a positive number, found {time_scale}")


def _check_indices(indices: Sequence[int] | np.ndarray, ss: SeriesSet) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise ValidationError(
            f"indices: expected a 1-D sequence of series numbers, found shape {idx.shape} "
            f"dtype {idx.dtype}"
        )
    if idx.size == 0:
        raise ValidationError("indices: expected at least one series, found none")
    n = ss.num_series
    if idx.min() < -n or idx.max() >= n:
        raise ValidationError(
            f"indices: expected series numbers in [0, {n}), found {idx.min()}..{idx.max()}"
        )
    return idx.astype(np.int64) % n


@dataclass
class MergedTimes:
    """The result of :func:`gpvae.data.merge_duplicate_times` (here, beside the series, so that
    :func:`gpvae.data.to_series_set` reads it without importing the merge).

    Attributes:
        X: the data with one row per (series, time): a DataFrame for a DataFrame input, else
            a list of n (U_i, D) arrays.
        times: None for a DataFrame input, else a list of n (U_i,) arrays: datetime64 for
            datetime times (in their unit), else float.
        merged: one dict per merged group: ``series`` (id or position), ``time`` and ``rows``
            (the input's row labels or positions that were merged).
    """

    X: Any
    times: list[np.ndarray] | None
    merged: list[dict[str, Any]] = field(default_factory=list)
