"""The forecasting methods of :class:`gpvae.GPVAE` (``forecast``, ``calibrate_forecast``,
``backtest``): thin methods over :mod:`gpvae.estimator.forecasting`,
:mod:`gpvae.estimator.forecast_calibration` and :mod:`gpvae.estimator.backtest`, kept here so
that ``estimator.py`` stays about arguments, fitting and model files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TypeVar, cast

import numpy as np

from gpvae.arguments import int_arg
from gpvae.errors import ValidationError
from gpvae.estimator.backtest import BacktestResult, Estimator, backtest
from gpvae.estimator.context import PredictContext
from gpvae.estimator.differencing import Difference, increments
from gpvae.estimator.forecast_blend import ForecastBlend, base_names
from gpvae.estimator.forecast_calibration import calibrate_and_blend, no_origin_text
from gpvae.estimator.forecasting import forecast_series
from gpvae.estimator.results import ForecastResult

__all__ = ["ForecastMethods"]

_T = TypeVar("_T", bound="ForecastMethods")


class ForecastMethods:
    """Mixed into :class:`gpvae.GPVAE`, which defines ``_context`` and the attributes."""

    forecast_scale_: np.ndarray | None
    forecast_blend_: ForecastBlend | None
    forecast_horizon: int | None
    forecast_blend: bool
    difference: Difference

    def _context(self, method: str) -> PredictContext:
        raise NotImplementedError  # GPVAE's

    def forecast(
        self,
        X: Any,
        times: Any = None,
        horizon: int | None = None,
        future_times: Any = None,
        num_samples: int = 100,
        quantiles: Sequence[float] = (0.05, 0.95),
        return_samples: bool = False,
    ) -> ForecastResult:
        """Predict every series at future times, with intervals.

        Latent paths at the future times are joint draws from the posterior GP of each
        series (the prior conditioned on the encoder's pseudo-observations of the observed
        entries), decoded; y ~ p(y | z) gives the intervals, read at the predictive positions
        p (S + 1) of the sorted draws (:func:`gpvae.model.sorted_quantiles`), so a 90%
        interval covers a new draw 90% of the time whatever ``num_samples``. Needs
        ``posterior="structured"``. The intervals are calibrated only when the model was
        (``forecast_horizon`` at fit, or :meth:`calibrate_forecast`), and up to that
        horizon; a forecast warns (UserWarning) when they are not. It also warns, once per
        call, when in some latent channel more than half of the draws at the furthest
        future step lie outside the range the histories' posteriors cover (the decoder
        never saw such latents: biased levels, intervals far too wide;
        :class:`gpvae.estimator.forecasting.LatentReach`, docs/forecasting.md).

        Args:
            X: the observed history, any accepted form.
            times: as in :meth:`fit`.
            horizon: H steps of each series' median time step after its last time.
            future_times: instead of ``horizon``: (H,) times for every series, (n, H), or a
                list of n (H,) arrays, in the input's time units (for dated series,
                datetimes or ISO date strings such as ``"2005-01-01"``). Each time's horizon band
                (of the calibrated spread) and base forecast (of the blend) are those of
                its number of steps after the series' last time (in the model's time step,
                rounded: a time off the step grid counts as the nearest step), so the times
                may skip steps. Each must come after its series' last time (a
                ValidationError naming ``future_times`` otherwise: :meth:`impute` fills the
                times inside the data). A model of increments (``difference``) forecasts every step
                up to the last of them and returns the levels at these times (after the
                last time, one time per step).
            num_samples: S draws, at least 2 (a warning when too few for ``quantiles``:
                :func:`gpvae.arguments.interval_draws_arg`). Unlike imputations, the draws
                come from one generator per call: a series' draws change with the series
                forecast beside it, with their order and with the number of processes (the
                same call on the same data and seed repeats them). The mean and the
                intervals are Monte-Carlo estimates over these draws (the mean averages the
                decoded draws), so they change with them: on a small example (3 features of
                amplitude 1-3), adding other series to the call moved a series' mean by up
                to 0.037 and its ``upper`` by up to 0.78 at 100 draws. More draws shrink
                this (about as 1 / sqrt(S)); forecasting one series per call makes a
                series' results depend only on its own data, the model and ``seed``.
            quantiles: (lower, upper) probabilities.
            return_samples: also return the S joint sample paths (S, n, H, D).

        Returns:
            :class:`~gpvae.estimator.results.ForecastResult` with (n, H, D) arrays; its
            ``times`` in the input's time type (dates in, dates out; calendar frequencies
            such as month starts kept).
        """
        ctx = self._context("forecast")
        return forecast_series(
            ctx, X, times, horizon, future_times, num_samples, quantiles, return_samples
        )

    def calibrate_forecast(self: _T, X: Any, times: Any = None, *, horizon: int) -> _T:
        """(Re)calibrate the forecast intervals on series X for ``horizon`` steps ahead, by
        rolling-origin forecasts inside X (:mod:`gpvae.estimator.forecast_calibration`), and
        the forecast mean's blend with simple base forecasts on the same origins
        (:mod:`gpvae.estimator.forecast_blend`); ``fit(..., forecast_horizon=H)`` does this on
        the training data. Like :meth:`forecast`, it warns once per call when the latent
        draws of these forecasts leave the range their histories' posteriors cover
        (:class:`gpvae.estimator.forecasting.LatentReach`): the factors and the blend are
        then fitted on such forecasts; and when a feature's factor in some horizon band ran
        out of its grid with the intervals still too narrow (a diverged fit, naming
        ``horizon``; docs/forecasting.md). Returns self."""
        H = int_arg("horizon", horizon)
        ctx = self._context("calibrate_forecast")
        ss, _ = ctx.input(X, times, callers=1)
        if self.difference:  # the model's data are the increments
            ss = increments(ss, which=self.difference)
        bases = base_names(ctx.model) if self.forecast_blend else None
        plain = replace(ctx, forecast_scale=None, forecast_blend=None)
        scale, blend = calibrate_and_blend(plain, ss, H, bases, name="horizon")
        if scale is None:  # nothing to fit on: the calibration the model has stays
            raise ValidationError(
                f"X: expected {no_origin_text(ss, H)} (horizon={H}); the model's forecast "
                "calibration is unchanged"
            )
        self.forecast_scale_, self.forecast_blend_ = scale, blend
        self.forecast_horizon = H
        return self

    def backtest(self, X: Any, times: Any = None, **kwargs: Any) -> BacktestResult:
        """Rolling-origin backtest of this configuration on X (this estimator is not
        changed): :func:`gpvae.estimator.backtest.backtest` (``horizon``, ``num_origins``,
        ``step``, ``season``, ``refit``, ``num_samples``)."""
        return backtest(cast(Estimator, self), X, times, **kwargs)
