"""What a prediction method needs from a fitted estimator, passed down as one object.

The estimator's prediction bodies (:mod:`~gpvae.estimator.imputation`,
:mod:`~gpvae.estimator.forecasting`, :mod:`~gpvae.estimator.anomaly`) take a
:class:`PredictContext` (the fitted model and scaler, and the settings that apply at call
time), never the estimator itself, so no module below the estimator class refers to it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from gpvae import settings
from gpvae.arguments import check_memory
from gpvae.batch import Batch
from gpvae.data import Scaler, SeriesSet, batch_indices
from gpvae.data.convert import to_fitted_series_set, unmerged
from gpvae.errors import InputTypeError, ValidationError
from gpvae.estimator.differencing import Difference, increments
from gpvae.estimator.forecast_blend import ForecastBlend
from gpvae.likelihoods import Bernoulli
from gpvae.model import GPVAEModel, sample_chunks
from gpvae.posteriors import StructuredPosterior
from gpvae.posteriors.structured_draws import draws_per_pass
from gpvae.rng import seed_for, series_generators
from gpvae.training.distributed import is_main_process
from gpvae.training.loop import progress_bar

_T = TypeVar("_T")

__all__ = ["EMPTY_PREDICTED", "EMPTY_SCORED", "PredictContext", "warn_other_time_kind"]

#: The end of the warning about input series with no observed entry, for the methods that
#: predict their values (:meth:`PredictContext.input`).
EMPTY_PREDICTED = (
    "their values come from the model's prior (the population level), not from the series"
)
#: The same for the anomaly scores: such a series has nothing to score.
EMPTY_SCORED = "they have nothing to score: their scores are NaN"


def check_unit_interval(data: SeriesSet, name: str) -> None:
    """Raise unless every observed value of ``data`` lies in [0, 1]."""
    for i, v in enumerate(data.values):
        obs = v[~np.isnan(v)]
        if obs.size and (obs.min() < 0 or obs.max() > 1):
            raise ValidationError(
                f"{name}: expected values in [0, 1] for likelihood='bernoulli', found "
                f"{float(obs.min())!r}..{float(obs.max())!r} in {data.series_label(i)}"
            )


#: The days of the semi-monthly grids that gpvae reads in hours (:func:`semi_monthly`).
_SEMI_DAYS = {"SMS": "the 1st and 15th", "SME": "the 15th and the month's last day"}


def warn_other_time_kind(
    scaler: Scaler, ss: SeriesSet, stacklevel: int, name: str = "times", values: str = "X"
) -> None:
    """Warn when the times are of another kind than the training data's.

    A model fitted on datetimes or durations given numbers: they are read in the model's
    unit (hours, or steps of its calendar) since the training data's first time, as
    :meth:`GPVAE.sample` reads its times and as the error on missing times offers ("pass
    times (datetime64, or hours)"), so they are accepted, but a number meant as a date or
    in another unit would be misread without a word. A model fitted on numbers given
    datetimes or durations: they are read as hours (datetimes since their own first time),
    which the model takes for its numbers' unit, whatever that was (durations in minutes
    were read 60 times closer together without a word; the spacing check of numbers,
    :meth:`~gpvae.data.Scaler.warn_far_times`, leaves times with a unit alone).

    ``name``: the times' argument (``"X['times']"`` for a dict's times); ``values``: the
    data's argument, which names the times of a frame (``X['time']``, ``X.index``).
    ``stacklevel`` as in ``warnings.warn`` from the caller of this function."""
    form = scaler.time_form_
    fitted_numbers = form is None or form[0] is None
    if fitted_numbers == (ss.layout.time_unit is None):
        return
    lay = ss.layout
    if lay.kind in ("dataframe_long", "dataframe_wide"):  # the times are a column / index
        name = f"{values}.index" if lay.time_col is None else f"{values}[{lay.time_col!r}]"
    if fitted_numbers:
        found = "datetimes" if lay.time_origin is not None else "durations"
        warnings.warn(
            f"{name}: expected numbers like the training data's (the model counts time in "
            f"their own unit, {scaler.time_step_:g} per step), found {found}: they are read "
            f"as hours{' since their first time' if lay.time_origin is not None else ''}, "
            "which the model takes for that unit; pass numbers in the training data's unit",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
        return
    assert form is not None
    unit = "hours" if form[0] == "hours" else f"steps of its calendar {form[1]!r}"
    warnings.warn(
        f"{name}: expected datetimes or durations like the training data's (the model "
        f"counts time in {unit}), found numbers: they are read as {unit} since the "
        "training data's first time, and results keep them as numbers; pass datetimes "
        "or durations to have them read as such",
        UserWarning,
        stacklevel=stacklevel + 1,
    )


@dataclass(frozen=True)
class PredictContext:
    """A fitted model with the settings of one prediction call.

    Attributes:
        model: the trained model (in eval mode).
        scaler: the fitted scaler.
        device: where the model lives.
        batch_size: series per batch.
        seed: seed of every generator of the call.
        interval_scale: (D,) spread factors of the imputation intervals.
        posterior: the posterior family's name.
        forecast_scale: (bands, D) spread factors of the forecast intervals per horizon band
            (:mod:`gpvae.estimator.forecast_calibration`), or None.
        forecast_horizon: the horizon the bands split (steps ahead).
        blend_weight: (D,) weights of the model's imputation against each feature's linear
            interpolation (:mod:`gpvae.estimator.blending`), or None (the model alone).
        forecast_blend: the forecast mean's blend with a simple base forecast
            (:mod:`gpvae.estimator.forecast_blend`), or None (the model's mean alone).
        difference: the model was fitted on the series' increments
            (:mod:`gpvae.estimator.differencing`): :meth:`input` standardises the increments
            of its input, and forecasts add their cumulated sum to the last level.
        progress: show a progress bar over the call's batches (:meth:`tracked`).
    """

    model: GPVAEModel
    scaler: Scaler
    device: torch.device
    batch_size: int
    seed: int
    interval_scale: np.ndarray
    posterior: str
    forecast_scale: np.ndarray | None = None
    forecast_horizon: int = 1
    blend_weight: np.ndarray | None = None
    forecast_blend: ForecastBlend | None = None
    difference: Difference = False
    progress: bool = False

    def _warn_grid_in_hours(self, ss: SeriesSet, stacklevel: int) -> None:
        """Warn when a model that counts time in hours is given dates on a calendar grid
        (months, business days, ...): they are read in hours, as the model was fitted, so
        forecasts step by each series' median spacing and can leave the grid."""
        lay = ss.layout
        if self.scaler.time_form_ != ("hours", None) or lay.time_unit != "hours":
            return
        if not isinstance(lay.time_origin, np.datetime64):  # durations: no calendar
            return
        from gpvae.data.calendar import NS_PER_HOUR, infer_calendar, semi_monthly, wall_clock

        dates = [
            lay.time_origin + np.round(np.asarray(t) * NS_PER_HOUR).astype("timedelta64[ns]")
            for t in ss.times
        ]
        if lay.tz is not None:  # counted in UTC; a grid lies on the zone's own dates
            dates = [wall_clock(d, lay.tz) for d in dates]
        freq = infer_calendar(dates)
        semi = None if freq is not None else semi_monthly(dates)
        if semi is not None:
            warnings.warn(
                f"X: the dates lie on a semi-monthly calendar grid ({semi!r}: "
                f"{_SEMI_DAYS[semi]}), which gpvae counts in hours: forecasts step by each "
                "series' median spacing (about 15 days) and leave the grid (GPVAE.forecast "
                f"with future_times=pd.date_range(last, periods=H + 1, freq={semi!r})[1:] "
                "forecasts on it)",
                UserWarning,
                stacklevel=stacklevel + 1,
            )
        if freq is not None:
            warnings.warn(
                f"X: the dates lie on a calendar grid ({freq!r}) but the model counts time in "
                "hours (its training dates were not on one, or it was saved before gpvae read "
                "that grid): they are read in hours, so forecasts step by each series' median "
                "spacing and can leave the grid (weekends, drifting days of the month); fit on "
                "such dates to count in steps of the calendar",
                UserWarning,
                stacklevel=stacklevel + 1,
            )

    def input(
        self, X: Any, times: Any, callers: int = 2, empty: str = EMPTY_PREDICTED
    ) -> tuple[SeriesSet, SeriesSet]:
        """(original, standardised) series of a prediction input, checked against the fit
        (with :attr:`difference`, the standardised series are the input's increments).

        ``callers``: the gpvae frames between this call and the user's line (the body
        function and the GPVAE method that called it), where the warnings point.
        ``empty``: what the method does with a series that has no observed entry, the end
        of the warning about such series (:data:`EMPTY_PREDICTED`: its values come from
        the prior; the anomaly scores say that such a series has nothing to score)."""
        X, times = unmerged(X, times, "X", "times")
        form = self.scaler.time_form_
        step = self.scaler.time_step_
        framed = isinstance(X, (pd.DataFrame, pd.Series))  # a Series: its one-column frame
        defaulted = times is None and not (framed or isinstance(X, SeriesSet))
        in_dict = isinstance(X, Mapping) and X.get("times") is not None
        if in_dict:
            defaulted = False
        if defaulted and form is not None and form[0] == "hours" and step != 1.0:
            raise InputTypeError(
                f"times: expected the times of X for a model fitted on dates or durations (it "
                f"counts time in hours, {step:g} per step), found none: the default 0, 1, "
                "2, ... would be read as hours; pass times (datetime64, or hours) or the frame"
            )
        if defaulted and form is not None and form[0] is not None:  # one step per unit
            unit = "hours" if form[0] == "hours" else f"steps of its calendar {form[1]!r}"
            warnings.warn(
                f"times: expected the times of X for a model fitted on dates or durations, "
                f"found none: X's steps are read as 0, 1, 2, ... {unit} from the training "
                "data's first time, and results keep them as numbers; pass times (datetime64) "
                "or the frame to place X in time",
                UserWarning,
                stacklevel=2 + callers,
            )
        ss, unused = to_fitted_series_set(
            X,
            times,
            self.scaler.feature_names_ if self.scaler.names_given_ else None,
            # a frame's columns are checked by name below (Scaler.check names them)
            num_features=None if framed else self.scaler.num_features,
            allow_single_step=True,
            allow_empty_series=True,
            time_form=self.scaler.time_form_,
        )
        if unused:
            warnings.warn(
                f"X: columns {unused} are not among the model's features "
                f"{list(self.scaler.feature_names_)} (nor the id or time): left out",
                UserWarning,
                stacklevel=2 + callers,
            )
        self.scaler.check(ss)
        self.scaler.check_range(ss)
        if isinstance(self.model.likelihood, Bernoulli):  # the fit's check, for new data too
            check_unit_interval(ss, "X")
        self.scaler.warn_far_times(ss, stacklevel=2 + callers)
        self._warn_grid_in_hours(ss, stacklevel=2 + callers)
        if not defaulted:
            name = "X['times']" if in_dict else "times"
            warn_other_time_kind(self.scaler, ss, 2 + callers, name)
        count = sum(1 for v in ss.values if np.isnan(v).all())
        if count:
            warnings.warn(
                f"X: {count} series with no observed entry; {empty}",
                UserWarning,
                stacklevel=2 + callers,
            )
        if self.difference:
            inc = increments(ss, which=self.difference)
            self.scaler.check_range(inc)
            return ss, self.scaler.transform(inc)
        return ss, self.scaler.transform(ss)

    def batch(self, ss: SeriesSet, idx: np.ndarray) -> Batch:
        """The padded batch of series ``idx`` of the standardised ``ss`` on the device, in
        the dtype of the model's parameters (whatever torch's default dtype).

        Each row's index points are moved by its own whole steps
        (:meth:`~gpvae.data.SeriesSet.to_batch` with ``shift_rows``), so that a series far
        from the training origin keeps its distinct times in float32; index points of new
        times of these rows come from :meth:`new_points`."""
        return ss.to_batch(
            idx,
            dtype=next(self.model.parameters()).dtype,
            device=self.device,
            time_shift=self.scaler.time_origin_,
            time_scale=self.scaler.time_step_,
            shift_rows=True,
        )

    def new_points(self, ss: SeriesSet, idx: np.ndarray, x: np.ndarray) -> Tensor:
        """(B, H, 1) index points, in the frame of :meth:`batch` of ``ss``'s series ``idx``,
        of new times of every series of ``ss``: ``x`` (n, H) float64
        (:meth:`~gpvae.data.Scaler.scaled_times`), each row moved by its batch row's whole
        steps before the cast to the model's dtype."""
        shift = ss.row_shifts(
            idx, time_shift=self.scaler.time_origin_, time_scale=self.scaler.time_step_
        )
        moved = np.asarray(x, dtype=np.float64)[idx] - shift[:, None]
        return torch.as_tensor(
            moved[..., None], dtype=next(self.model.parameters()).dtype, device=self.device
        )

    def batches(
        self, n: int, what: str | None = None, lengths: Sequence[int] | None = None
    ) -> Iterator[np.ndarray]:
        """Indices of consecutive batches over n series; with ``what`` (the call's name),
        shown as a progress bar (:meth:`tracked`); with the series' ``lengths``, from the
        longest series to the shortest (:func:`~gpvae.data.batch_indices`), so that a
        batch of ragged series holds about one length."""
        idx = batch_indices(n, self.batch_size, lengths=lengths)
        if what is None:
            return idx
        return iter(self.tracked(idx, -(-n // self.batch_size), what))

    def tracked(self, items: Iterable[_T], total: int, what: str) -> Iterable[_T]:
        """``items`` (``total`` batches of a prediction call named ``what``), shown as a
        progress bar on stderr (batches done, ETA) when :attr:`progress` is on and the call
        lasts longer than :data:`~gpvae.settings.PREDICT_PROGRESS_DELAY` seconds (quick
        calls show nothing); under torchrun on process 0 only."""
        if not self.progress or total < 2 or not is_main_process():
            return items
        delay = settings.PREDICT_PROGRESS_DELAY  # tqdm ticks after each item, closes at the end
        return progress_bar(
            total, "batch", True, iterable=items, desc=what, delay=delay, leave=False
        )

    @contextmanager
    def draw_progress(self, n: int, S: int, what: str) -> Iterator[Callable[[int], object] | None]:
        """A progress bar of S draws for each of the batches over n series (tqdm's
        ``update``, for :meth:`GPVAEModel.predictive_draws`'s ``on_chunk``), or None where
        :meth:`tracked` would show nothing. It ticks after every chunk of draws, so one
        long series (a single batch) shows its progress too."""
        batches = -(-n // self.batch_size)
        chunks = batches * len(sample_chunks(S))
        if not self.progress or chunks < 2 or not is_main_process():
            yield None
            return
        delay = settings.PREDICT_PROGRESS_DELAY
        with progress_bar(batches * S, "draw", True, desc=what, delay=delay, leave=False) as bar:
            yield bar.update

    def generator(self, *salt: int) -> torch.Generator:
        """A generator seeded by the seed and ``salt``."""
        return torch.Generator(device=self.device).manual_seed(seed_for(self.seed, *salt))

    def series_generators(self, ss: SeriesSet, idx: np.ndarray, salt: int) -> list[torch.Generator]:
        """One generator per series of ``idx``, seeded by the seed, ``salt`` and its content."""
        values, times = [ss.values[i] for i in idx], [ss.times[i] for i in idx]
        return series_generators(self.seed, salt, values, times, self.device)

    def check_draws(
        self,
        names: str,
        S: int,
        n: int,
        N: int,
        prior_only: bool = False,
        batch: int = 0,
        chunked: bool | None = None,
        returned: int = 0,
        history: int | None = None,
    ) -> None:
        """Fail at once, naming ``names``, when S draws over a batch of series of N steps
        cannot fit in memory; the message says what the cost grows with and what lowers
        it (:meth:`draws_remedy`).

        The costs were measured (peak resident memory against S and N, float32 models of
        the default Matern 3/2 kernel; 2 and 8 latent channels, 5 features):

        - draws made all at once (forecasts, whose batches are sized for S draws of the
          whole path, ``batch``; prior draws, ``prior_only``): about 28 values per latent
          channel and 2 per feature for every draw from the posterior, a third of that per
          latent channel from the prior, all S counted;
        - draws from the posterior made in chunks of
          :data:`~gpvae.settings.SAMPLE_CHUNK` (``chunked``; by default when neither
          ``batch`` nor ``prior_only`` is given, as :meth:`GPVAE.impute` draws): the working
          set of one chunk, about 88 values per latent channel and 2 per feature per draw
          (a chunk's draws of z and their decoding: about 440 MiB for 32 draws of 5,000
          steps and 8 channels). Series longer than
          :data:`~gpvae.settings.DENSE_MAX_POINTS` (a structured posterior, kernels with a
          state-space form) run the simulation smoother over passes of fewer draws
          (:func:`~gpvae.posteriors.structured_draws.draws_per_pass`): the 88 values count
          for a pass's draws, and for each of the chunk's draws its noise (m + 1 values per
          channel, m the largest state dimension), z and its decoding. Measured by
          ``benchmarks/impute_memory.py`` (docs/benchmarks.md, "Imputation of one long
          series"): 100 draws of 1,000,000 steps, 4 channels, 3 features, peaked at
          6.46 GiB, 4.29 GiB above the fit's peak (6.17 GiB counted; before the passes
          this check refused them as 44.9 GiB); of 300,000 steps 1.17 GiB above it (1.85
          counted; 10.8 GiB before the passes). For every one of the S draws, what is kept of it:
          :data:`KEPT_PER_ENTRY` values per entry (the draws of y, and a margin for the
          quantiles' blocks: the quantiles go in blocks and the draws are moved in place,
          :mod:`~gpvae.estimator.imputation`), :data:`KEPT_RETURNED` with
          ``return_samples`` (one series' float64 copies while its returned draws are
          made). This check counted 13 values per entry before those copies went; counting
          the working set for all S, as it did earlier, refused 5,500 draws of one
          5,000-step series as 24 GiB where 2.6 GiB were used. Measured peaks of the whole
          process before the smoother's passes (audit B3's series, 3 features, 4
          channels; counted in brackets by the count of then): 100
          draws of 100,000 steps 4.15 GiB (4.49), of 300,000 steps 11.5 GiB (13.5); 1,000
          draws of 100,000 steps 5.16 GiB (6.50); 5,500 draws of one 5,000-step series, 8
          channels, 5 features: 1.49 GiB (1.45; 3.21 GiB before the copies went), with
          ``return_samples`` 4.23 GiB (5.55; 6.15 before).

        ``returned``: the time steps of every series of the call whose S draws are returned
        (``return_samples``), kept as float64 until the call ends, where the results put
        them in the input's order and form (:func:`~gpvae.estimator.results.samples_form`:
        a reordered copy per series and, for arrays, their stack): 24 bytes per draw and
        entry on top of the batch's cost (audit R2: 1,024 series of 200 steps, 4 features,
        200 draws peaked at 2.7 GiB where the batch alone was counted, 0.39 GiB; 8 bytes
        were counted since, which fell short of the 4.23 GiB above).

        ``history``: a forecast's longest history (N = history + the future steps): its
        draws cover the whole history, so the message says that its length, not the
        horizon, sets the cost.
        """
        B = min(batch or self.batch_size, n)  # ``batch``: the caller's own batch size
        L, D = self.model.latent_dim, self.scaler.num_features
        per_value = next(self.model.parameters()).element_size()
        if chunked is None:
            chunked = not prior_only and not batch
        if chunked:
            chunk = min(S, settings.SAMPLE_CHUNK)
            kept_values = KEPT_RETURNED if returned else KEPT_PER_ENTRY
            values = (88 * L + 2 * D) * chunk + kept_values * D * S
            if N > settings.DENSE_MAX_POINTS and self._markov_draws():
                # the simulation smoother's working set for one pass of its draws, and for
                # the chunk's draws their noise (m + 1 values per channel), z and decoding
                passes = min(chunk, draws_per_pass(B, N, L))
                m = max(k.state_dim for k in self.model.prior.kernel_list)
                values = 88 * L * passes + ((m + 2) * L + 2 * D) * chunk + kept_values * D * S
        else:
            values = ((10 if prior_only else 28) * L + 2 * D) * S
        kept = 24.0 * S * D * returned
        try:
            check_memory(
                names,
                float(per_value) * values * B * N + kept,
                self._draws_text(S, B, N, returned, history),
            )
        except ValidationError as err:
            remedy = self.draws_remedy(prior_only, returned, history)
            raise ValidationError(f"{err}; {remedy}") from None

    def _markov_draws(self) -> bool:
        """Whether impute draws the latents of series longer than
        :data:`~gpvae.settings.DENSE_MAX_POINTS` by the simulation smoother, in passes of
        :func:`~gpvae.posteriors.structured_draws.draws_per_pass` draws (a structured
        posterior and kernels with a state-space form)."""
        kernels = self.model.prior.kernel_list
        structured = isinstance(self.model.posterior, StructuredPosterior)
        return structured and all(k.has_state_space for k in kernels)

    def _draws_text(self, S: int, B: int, N: int, returned: int, history: int | None) -> str:
        """The draws of :meth:`check_draws` in words."""
        L, D = self.model.latent_dim, self.scaler.num_features
        steps = f"{N} steps"
        if history is not None:
            steps += f" ({history} of history and {N - history} ahead)"
        what = f"{S} draws x {B} series x {steps} of {L} latent channels and {D} features"
        if returned:
            what += f", and {S} draws of {returned} steps x {D} features returned"
        return what

    @staticmethod
    def draws_remedy(
        prior_only: bool = False, returned: int = 0, history: int | None = None
    ) -> str:
        """What the memory of S draws grows with and how to lower it, the end of the
        messages of :meth:`check_draws` and :meth:`allocating`."""
        if history is not None:
            return (
                "a forecast draws over each series' whole history, so its memory grows with "
                "num_samples x the history's length (not with the horizon): pass fewer "
                "num_samples, or only the recent history (X[-k:] and its times), on which "
                "alone the forecast then conditions"
            )
        if prior_only:
            return "the memory grows with num_samples x the times: pass fewer of either"
        more = ", or return_samples=False" if returned else ""
        return (
            "the memory grows with num_samples x the series' length: pass fewer num_samples"
            f"{more}, or a long series in parts (each part then conditions on its own "
            "steps only)"
        )

    @contextmanager
    def allocating(
        self,
        names: str,
        S: int,
        n: int,
        N: int,
        returned: int = 0,
        history: int | None = None,
        batch: int = 0,
    ) -> Iterator[None]:
        """Re-raise a failed allocation inside the block (a MemoryError, or torch's
        RuntimeError "can't allocate memory") as a ValidationError naming ``names``, with
        the draws and the remedies of :meth:`check_draws`: its estimate can pass where the
        process may use less than the machine's memory (a ulimit, other processes), and
        torch's own message names neither the argument nor the size."""
        try:
            yield
        except (MemoryError, RuntimeError) as err:
            if not isinstance(err, MemoryError) and not allocation_failed(err):
                raise
            B = min(batch or self.batch_size, n)
            detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise ValidationError(
                f"{names}: expected draws that fit in the memory this process may use, "
                f"found {self._draws_text(S, B, N, returned, history)}: allocating them "
                f"failed ({detail}); {self.draws_remedy(False, returned, history)}"
            ) from err


#: Values kept of every draw and entry by :meth:`GPVAE.impute`, without and with
#: ``return_samples`` (:meth:`PredictContext.check_draws`).
KEPT_PER_ENTRY = 2
KEPT_RETURNED = 4


def allocation_failed(err: BaseException) -> bool:
    """Whether ``err`` is torch's failure to allocate memory (a RuntimeError on the CPU,
    ``torch.cuda.OutOfMemoryError`` on a GPU)."""
    text = str(err)
    return (
        isinstance(err, torch.cuda.OutOfMemoryError)
        or "can't allocate memory" in text
        or "DefaultCPUAllocator" in text
    )
