"""The spatial methods of :class:`~gpvae.estimator.GPVAE` (a mixin, bodies in
:mod:`gpvae.estimator.spatial`)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gpvae.arguments import bool_arg, int_arg, interval_draws_arg, warn_few_draws
from gpvae.errors import NotFittedError, ValidationError
from gpvae.estimator.results import ImputationResult
from gpvae.estimator.spatial import (
    SpatialResult,
    SpatialSpec,
    build_spatial_model,
    fit_field,
    impute_field,
    predict_sites,
)
from gpvae.kernels import Kernel
from gpvae.kernels.registry import num_periods
from gpvae.training import distributed

__all__ = ["SPATIAL_ONE_PROCESS", "SpatialMethods", "check_spatial_settings"]

#: Why a spatial fit refuses to run under torchrun (the start of its error message).
SPATIAL_ONE_PROCESS = (
    "expected one process: a spatial fit does not run under torchrun, because each of its "
    "series is a time window over all the sites, and the space x time backends draw the "
    "latent field on the grid of a whole batch's times, so a process cannot compute its "
    "share of a batch (run it without torchrun)"
)


def check_spatial_settings(est: Any, window: int) -> None:
    """Refuse, before any work, the settings of ``est`` that a spatial fit cannot honour
    (it would otherwise train and ignore them, or fail afterwards), naming each.

    Raises:
        ValidationError: ``posterior`` other than ``"structured"``; a per-channel ``kernel``
            list or a kernel name with a periodic factor (GPVAE refuses a ``period``
            without one); a ``window`` of
            the estimator other than fit's; ``interp_blend``; ``forecast_horizon`` or
            ``forecast_blend``; ``checkpoint_dir``.
    """
    if est.posterior != "structured":
        raise ValidationError(
            f"posterior: expected 'structured' for a spatial fit (predict_sites draws the "
            f"latent GP at new sites from the structured posterior's conditioned GP), found "
            f"{est.posterior!r}"
        )
    kernel = est.kernel
    if not isinstance(kernel, (str, Kernel)):
        raise ValidationError(
            f"kernel: expected one kernel name or Kernel instance for a spatial fit (one "
            f"SpaceTime kernel is shared by the latent channels), found a list of "
            f"{len(kernel)}"
        )
    if isinstance(kernel, str) and num_periods(kernel) > 0:
        raise ValidationError(
            f"kernel: expected a name without periodic factors for a spatial fit (the name "
            f"also gives the kernel over space, in km), found {kernel!r}; pass a SpaceTime's "
            f"temporal part as a Kernel instance with its period in time steps instead"
        )
    if est.window is not None and est.window != window:
        raise ValidationError(
            f"window: a spatial fit cuts the record into windows of fit(..., window=...) "
            f"steps ({window}), expected GPVAE(window=None) or the same, found "
            f"GPVAE(window={est.window})"
        )
    refused = {
        "interp_blend": (est.interp_blend, "blends time-series imputations"),
        "forecast_horizon": (est.forecast_horizon is not None, "calibrates forecasts"),
        "forecast_blend": (est.forecast_blend, "blends forecasts"),
        "checkpoint_dir": (est.checkpoint_dir is not None, "writes checkpoints of a fit"),
    }
    for name, (given, what) in refused.items():
        if given:
            default = "False" if name in ("interp_blend", "forecast_blend") else "None"
            raise ValidationError(
                f"{name}: {what} of time series, which a spatial fit does not do: expected "
                f"{default}, found {getattr(est, name)!r}"
            )


class SpatialMethods:
    """Fit on a field of sites, predict at new sites, impute with neighbours."""

    spatial_: SpatialSpec | None = None

    def _fit_spatial(  # the body of ``fit(X, id=, time=, coords=, ...)``
        self,
        X: Any,
        id: Hashable | None,
        time: Hashable | None,
        coords: Sequence[Hashable],
        features: Sequence[Hashable] | None,
        projection: str,
        window: int,
        inducing: int | None,
    ) -> Any:
        if distributed.launched():  # before any work, alike on every process
            raise ValidationError(f"coords: {SPATIAL_ONE_PROCESS}, found a distributed job")
        if not isinstance(X, pd.DataFrame):
            raise ValidationError(
                f"X: expected a long pandas DataFrame (site id, time, coordinates, features) "
                f"with coords, found {type(X).__name__}"
            )
        if id is None or time is None:
            raise ValidationError(
                f"id: expected the site id and time column names with coords (id=..., "
                f"time=...), found id={id!r}, time={time!r}"
            )
        window = int_arg("window", window, minimum=2)
        if inducing is not None:
            inducing = int_arg("inducing", inducing)
        check_spatial_settings(self, window)
        model, scaler, spec, scale, state = fit_field(
            self, X, id, time, coords, features, projection, window, inducing
        )
        import torch

        self._set_fitted(  # type: ignore[attr-defined]
            model.eval(),
            scaler,
            torch.device("cpu"),
            feature_names=list(spec.features),
            interval_scale=scale,
            history=state.history,
            spatial=spec,
        )
        return self

    def _spatial_fitted(self, method: str) -> SpatialSpec:
        if self.spatial_ is None:
            raise NotFittedError(
                f"{method}: this GPVAE was not fitted on spatial data; call "
                "fit(df, id=..., time=..., coords=[...]) first"
            )
        return self.spatial_

    def predict_sites(
        self,
        X: pd.DataFrame,
        sites: pd.DataFrame,
        num_samples: int = 100,
        quantiles: Sequence[float] = (0.05, 0.95),
    ) -> SpatialResult:
        """Predict every feature at new sites, at every time of ``X``.

        The latent GP of each time window is conditioned on the sites observed in ``X`` (the
        neighbours) and drawn at the new sites (kriging through the latent GP), then decoded;
        intervals are quantiles of the predictive draws (observation noise included) at the
        predictive positions p (S + 1) (:func:`gpvae.model.sorted_quantiles`), scaled per
        feature by the validation calibration of :meth:`fit`.

        Args:
            X: long DataFrame of the observed sites over the period to predict (the fit's id,
                time, coordinate and feature columns).
            sites: DataFrame with the id and coordinate columns of the new sites (one row
                per site, or one per site and time with fixed coordinates).
            num_samples: S, draws per window.
            quantiles: (lower, upper) probabilities of the interval.

        Returns:
            :class:`~gpvae.estimator.spatial.SpatialResult` of long frames (id, time,
            features) in the original units.

        Warns:
            UserWarning: naming the coordinate columns, for new sites far outside the
                training area.
        """
        spec = self._spatial_fitted("predict_sites")
        model, scaler = self._fitted("predict_sites")  # type: ignore[attr-defined]
        S = interval_draws_arg(num_samples, (0.05, 0.95))[0]  # at least 2: one is no interval
        q = _quantiles(quantiles)
        warn_few_draws(S, q[0], q[1], stacklevel=3)
        site_scale = spec.site_interval_scale
        return predict_sites(
            model,
            scaler,
            spec,
            self._interval_scale() if site_scale is None else np.asarray(site_scale),
            X,
            sites,
            S,
            q,
            self.seed,  # type: ignore[attr-defined]
            self.batch_size,  # type: ignore[attr-defined]
        )

    def _impute_spatial(
        self,
        X: Any,
        num_samples: int,
        quantiles: Sequence[float],
        times: Any = None,
        return_samples: bool = False,
    ) -> ImputationResult:
        """The body of ``impute(X)`` on a model fitted on sites: X is a long DataFrame with
        the fit's id, time, coordinate and feature columns; ``times`` is refused (the times
        are X's time column). The result is an
        :class:`~gpvae.estimator.results.ImputationResult` in the DataFrame form, with the
        draws on request (:func:`gpvae.estimator.spatial.impute_field`)."""
        spec = self._spatial_fitted("impute")
        if times is not None:
            raise ValidationError(
                f"times: expected None for a model fitted on sites (the times are X's column "
                f"{spec.time!r}), found {type(times).__name__}"
            )
        return_samples = bool_arg("return_samples", return_samples)
        model, scaler = self._fitted("impute")  # type: ignore[attr-defined]
        S = interval_draws_arg(num_samples, (0.05, 0.95))[0]  # at least 2: one is no interval
        q = _quantiles(quantiles)
        warn_few_draws(S, q[0], q[1], stacklevel=4)
        return impute_field(
            model,
            scaler,
            spec,
            self._interval_scale(),
            X,
            S,
            q,
            self.seed,  # type: ignore[attr-defined]
            self.batch_size,  # type: ignore[attr-defined]
            return_samples,
        )

    def _interval_scale(self) -> np.ndarray:
        scale = getattr(self, "interval_scale_", None)
        return np.ones(len(self._spatial_fitted("predict").features)) if scale is None else scale

    def _spatial_model(self, spatial: dict[str, Any], num_features: int) -> Any:
        self.spatial_ = SpatialSpec.from_json(spatial)
        return build_spatial_model(self, self.spatial_, num_features)


def _quantiles(quantiles: Sequence[float]) -> tuple[float, float]:
    q = tuple(float(v) for v in quantiles)
    if len(q) != 2 or not 0.0 < q[0] < q[1] < 1.0:
        raise ValidationError(
            f"quantiles: expected (lower, upper) with 0 < lower < upper < 1, found {quantiles!r}"
        )
    return q[0], q[1]
