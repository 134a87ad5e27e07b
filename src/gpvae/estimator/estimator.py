"""``gpvae.GPVAE``: one estimator for imputation, forecasting, sampling and anomaly scores.

The estimator takes data as users have it (see :func:`gpvae.data.to_series_set`: arrays
(n, T, D) with NaN, ragged lists, irregular times, long or wide DataFrames, PyPOTS dicts),
standardises the features with statistics of the observed training entries and the times
with the training data's median step, ``x = (t - time_origin) / time_step``, so that kernel
lengthscales are in time steps whatever the time unit. Every output is in original units.

The estimator holds the user's settings and turns data into batches and results; the maths
is the model's (:class:`~gpvae.model.GPVAEModel`: ELBO and predictive draws), a fit is a
:class:`~gpvae.training.FitSession`, model files are :mod:`gpvae.estimator.modelfile`.

Randomness: every method draws from ``torch.Generator`` objects seeded with ``seed`` and
created afresh at each call, so the same model, inputs and arguments give identical results
on the CPU. ``impute`` and ``anomaly_scores`` give each series its own generator, seeded by
``seed`` and the series' values and times (:func:`gpvae.rng.series_seed`), so a series gets
the same result whether it is imputed alone or batched with others (up to float round-off).
``forecast`` and ``sample`` draw per call: their draws, and so a forecast's Monte-Carlo mean
and intervals, depend on the other series in the call and their order.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from gpvae import settings
from gpvae.arguments import bool_arg, check_name, float_arg, int_arg, lengthscale_arg
from gpvae.data import Scaler, SeriesSet
from gpvae.data.holdout import RUN_PATTERNS
from gpvae.errors import (
    GPVAEError,
    InputTypeError,
    NotFittedError,
    ValidationError,
    invalid,
)
from gpvae.estimator.anomaly import AnomalyProfile
from gpvae.estimator.anomaly_methods import AnomalyMethods
from gpvae.estimator.assembly import (
    ModelSpec,
    build_model,
    check_dense_prior,
    check_device,
    check_parts,
    hidden_arg,
    kernel_arg,
    resolve_device,
    warn_positional_encoder,
)
from gpvae.estimator.blending import fit_blend
from gpvae.estimator.calibration import (
    factors_at_bounds,
    gap_shape,
    held_out_of_training,
    hidden_runs,
    whole_step_entries,
)
from gpvae.estimator.context import PredictContext
from gpvae.estimator.differencing import check_levels_method, difference_arg, increments_of
from gpvae.estimator.fitting import calibrate_fit, fit_inputs, fit_periods, windowed
from gpvae.estimator.forecast_blend import ForecastBlend, base_names
from gpvae.estimator.forecast_calibration import (
    calibrate_and_blend,
    has_origin,
    no_origin_text,
    without_tail,
)
from gpvae.estimator.forecast_methods import ForecastMethods
from gpvae.estimator.imputation import impute_series
from gpvae.estimator.persistence import ARGUMENTS as _ARGUMENTS
from gpvae.estimator.persistence import PersistenceMethods
from gpvae.estimator.results import (
    ImputationResult,
)
from gpvae.estimator.sampling import latent_series, sample_series
from gpvae.estimator.seasonality import PeriodArg, check_period, given_periods
from gpvae.estimator.spatial_methods import SpatialMethods
from gpvae.estimator.validation import hiding_args
from gpvae.gp.prior import backend_names
from gpvae.kernels import KernelArg, num_periods
from gpvae.kernels.registry import check_lengthscale
from gpvae.likelihoods import get_likelihood, likelihood_key
from gpvae.model import GPVAEModel
from gpvae.nets.interp import cross_options
from gpvae.nets.registry import decoder_key, encoder_key
from gpvae.posteriors import posterior_key
from gpvae.training import OPTIMIZERS, FitSession, SessionConfig, TrainConfig, distributed
from gpvae.training.distributed import Communicator

__all__ = ["GPVAE", "best_epoch"]


def best_epoch(history: Sequence[dict[str, float]]) -> int | None:
    """The epoch of ``history`` (one record per epoch, as ``GPVAE.history_``) whose weights
    a fit keeps: the first with the lowest finite ``val_score``, as the training loop keeps
    them (:func:`gpvae.training.loop.train`); the last epoch when no score is finite (the
    loop then keeps the last weights); None for an empty history."""
    if not history:
        return None
    scores = [float(h.get("val_score", math.nan)) for h in history]
    finite = [k for k, v in enumerate(scores) if math.isfinite(v)]
    k = min(finite, key=lambda j: scores[j]) if finite else len(history) - 1
    return int(history[k].get("epoch", k + 1))


#: Settings a resumed fit may change: they pace or report the fit, say where it goes, or
#: act only after training (``epochs`` and ``patience``: as far as the checkpoint's run
#: agrees with them, :meth:`gpvae.training.FitSession.restore`).
RESUME_FREE = ("epochs", "patience", "progress", "checkpoint_dir", "checkpoint_every",
               "device", "spatial", "calibrate", "interp_blend", "forecast_blend")  # fmt: skip


class GPVAE(AnomalyMethods, ForecastMethods, SpatialMethods, PersistenceMethods):
    """Gaussian-process-prior VAE for multivariate series with gaps.

    Args:
        latent_dim: L, latent channels, each with its own GP prior over time.
        kernel: a kernel name (``gpvae.kernels.kernel_names()``; ``+`` and ``*`` add and
            multiply kernels in every channel: ``"matern32+periodic"``) or a Kernel instance
            (copied per channel), or a list of ``latent_dim`` names or kernels, one per
            channel; in units of time steps (one unit = the training data's median time
            step).
            ``"white"`` with ``posterior="diagonal"`` is the plain VAE. The Matern kernels,
            ``"trend"``, ``"periodic"`` and their sums and products have a state-space form
            and cost O(N) per series of N steps (``"markov"`` backend); any other kernel
            (``"rbf"``, ``"cauchy"``, ``"rq"``, ``"periodic_exact"``, or a sum with one of
            them) runs on the ``"dense"`` backend at O(N^3) time and O(N^2) memory per
            series and channel, whatever N (e.g. 7.5 s per conditioning and KL of one RBF
            channel at N = 4000).
        posterior: ``"structured"`` (default; needed by ``forecast``), ``"banded"``
            (Fortuin et al. 2020) or ``"diagonal"``.
        backend: GP backend: ``"auto"`` (``"markov"`` when every channel kernel has a
            state-space form, else ``"dense"``), ``"dense"``, ``"markov"``, or
            ``"spacetime"`` (the space x time backend of spatial fits, ``fit(...,
            coords=...)``, which ``"auto"`` gives them; accepted for plain series too).
            ``"sparse"`` is chosen by ``fit(..., inducing=M)`` for spatial data only.
        likelihood: ``"gaussian"`` (learned per-feature variance), ``"gaussian_hetero"``
            (variance predicted by the decoder per entry), ``"gaussian_gp"`` (each feature's
            deviation from the decoder is a GP in time of its own:
            :class:`~gpvae.likelihoods.GPNoiseGaussian`), ``"student_t"`` or ``"bernoulli"``
            (values in [0, 1], not standardised; imputations are probabilities).
        encoder: ``"mlp"``, ``"partial"``, ``"conv"``, ``"gru"``, ``"cnn"`` (frames of a square
            image flattened to D = H * W features: :class:`~gpvae.nets.ImageEncoder`) or an
            ``nn.Module`` (see :mod:`gpvae.nets`); deep-copied at each fit. ``"mlp"`` and
            ``"partial"`` encode each point alone and leave its time to the GP, so they
            suit irregular times; ``"conv"`` (a convolution over neighbouring rows) and
            ``"gru"`` (a bidirectional GRU from row to row) read a series' rows by position,
            not by time, as if equally spaced: a gap of 48 steps between two rows is read as
            one step. They suit regular grids (missing times as rows of NaN); fit warns
            when their series have irregular times
            (:data:`~gpvae.estimator.assembly.POSITIONAL_GAP_RATIO`).
        decoder: ``"mlp"``, ``"cnn"`` (:class:`~gpvae.nets.ImageDecoder`) or an
            ``nn.Module``; deep-copied at each fit.
        hidden: hidden widths of the named networks (the decoder uses them reversed).
        beta: weight of the KL term.
        epochs: maximum training epochs.
        batch_size: series per batch (training and prediction).
        lr: learning rate.
        optimizer: ``"adam"``, ``"adamw"`` or ``"rmsprop"``.
        patience: epochs without a better validation score (without validation: training
            loss) before stopping (None: never). An epoch of few series is one optimiser
            step or a few: a fit that this stops after fewer than
            :data:`gpvae.settings.EARLY_STOP_MIN_STEPS` steps warns (a smaller
            ``batch_size``, a larger ``patience`` or ``window`` gives it more steps).
        val_fraction: share of observed entries held out as validation targets (of
            ``X_val`` when given, else of the training data, which then trains without them);
            0 holds nothing out: without ``X_val``, the training loss then decides when to
            stop and which epoch's weights are kept (the lowest; not the last); with
            ``X_val``, the reconstruction error (MAE) of ``X_val``'s own observed entries
            does, entries the model sees (no held-out score: ``interp_blend`` refuses, even
            when the series of ``X_val`` are not training series; ``calibrate`` warns, unless
            they are not, when it calibrates on new hold-outs of them). Unused with
            ``X_val_target``.
        val_pattern: the held-out validation entries are ``"points"``, ``"blocks"`` (runs of
            ``block_lengths`` steps of one feature, the others still observed: choose it when
            one feature at a time goes missing for a while, a sensor or a lab value) or
            ``"steps"`` (runs of ``block_lengths`` whole steps, every feature hidden: choose
            it when the gaps hide every feature, a recorder that was off). They choose the
            stopping epoch and, without ``X_val``, the intervals' calibration, so they should
            look like the gaps to impute: on whole-step gaps of 3/10/30 steps (audit W's
            data from the model class, 2 seeds), intervals calibrated on ``"blocks"`` covered
            0.91/0.70/0.56 and 0.89/0.74/0.52 at 90%, on ``"steps"`` 0.99/0.93/0.82 and
            1.00/0.95/0.77.
        mask_rate: artificial missingness: at every training step this share of the observed
            entries is hidden from the encoder, still scored (:class:`~gpvae.model.GPVAEModel`).
        mask_pattern: ``"points"``, ``"blocks"`` or ``"steps"`` (as for ``val_pattern``), the
            shape of the entries hidden in training; for spatial data also ``"sites"`` (whole
            sites of a window: the kriging task).
        block_lengths: (shortest, longest) run length in steps of the ``"blocks"`` and
            ``"steps"`` patterns.
        interp_skip: the decoder predicts a residual on top of each feature's linear
            interpolation between its observed neighbours (:class:`~gpvae.model.GPVAEModel`);
            for sparse records whose features are observed at different times. Meant for
            imputation: past the data the interpolation is the last observed value carried
            forward, so forecasts revert to the last observed value (``forecast`` warns).
            Needs ``mask_rate > 0``: the residual is learnt only from the entries hidden
            from the encoder in training, so without them the imputation stays each
            feature's linear interpolation (``fit`` warns; not on spatial data, whose
            training hides whole sites).
        interp_cross: with ``interp_skip``, a feature regression (BRITS's: each feature from
            the other features observed at the same step) whose residual is interpolated in
            time instead of the value, so a gap of one feature follows the others through it
            (``InterpolationFusion(cross=True)``; not for spatial data); a string of options
            joined by ``+`` adds them (:func:`gpvae.nets.interp.cross_options`: ``fill``,
            ``window``, ``fade``, ``fit``).
        interp_blend: after fit, pick per feature a weight in [0, 1] of the imputation
            against the feature's linear interpolation between its observed neighbours, the
            one with the smallest error on the held-out validation entries
            (:mod:`gpvae.estimator.blending`; needs held-out validation entries,
            ``val_fraction > 0`` or ``X_val_target``, else fit refuses; not for
            ``"bernoulli"``).
        calibrate: after fit, rescale the imputation intervals per feature so that they
            cover held-out entries at their nominal levels: with ``X_val`` holding no
            training series, new hold-outs of the validation series shaped like the gaps
            (runs of ``block_lengths`` when ``val_pattern``, or else ``mask_pattern``, is
            ``"blocks"`` or ``"steps"``, in that shape; else, with ``X_val_target``, whole
            steps when most of its hidden entries are at steps with every feature hidden,
            else blocks of one feature when most of them come in runs, as long as its runs;
            else points), else the validation hold-out
            (at most :data:`gpvae.settings.CALIBRATION_ENTRIES` random entries per feature;
            :mod:`gpvae.estimator.calibration`; needs held-out validation entries,
            ``val_fraction > 0``, ``X_val_target`` or ``X_val`` series not trained on,
            else fit warns and leaves the intervals as they are; not for ``"bernoulli"``).
            The factors lie in [1/4, 8]; fit warns, naming the features, when the held-out
            errors asked for more (:func:`~gpvae.estimator.calibration.interval_scales`):
            for wider intervals than 8 times the model's own, or for narrower ones than a
            quarter of them in every feature; those intervals are then not calibrated,
            most often because the model is poorly trained. (Some features at 1/4 beside
            calibrated ones, with no warning, are common: smooth features whose errors are
            smaller than the observation noise learned so far, see ``noise_lr``.)
        num_samples: Monte Carlo samples of z per series in the training ELBO.
        lengthscale: initial kernel lengthscale in time steps for named kernels (every
            non-periodic factor's, the decay of a quasi-periodic product
            ``"periodic*matern32"`` included) and for the noise kernels of
            ``"gaussian_gp*"`` (None: :data:`gpvae.settings.DEFAULT_LENGTHSCALE`, and in a
            quasi-periodic product :data:`gpvae.settings.QUASI_PERIODIC_DECAY` periods; a
            periodic factor's lengthscale is relative to its period and starts at
            :data:`gpvae.settings.PERIODIC_LENGTHSCALE` whatever this says; refused for Kernel
            instances, whose hyper-parameters are taken as given, and for names without a
            factor that takes it, ``"white"`` or ``"periodic"``, unless a ``"gaussian_gp*"``
            noise kernel takes it),
            or ``latent_dim`` of them, one per latent channel (e.g. ``(3, 6, 12, 24)``: a
            bank of time scales; the noise kernels then start at their median). Not for
            spatial fits. In the anomaly benchmarks the learned lengthscales stayed near
            their initial values (``docs/benchmarks.md``), so the initial values matter.
        period: the period(s) of the periodic factors of a kernel name: a finite positive
            number (numpy scalars too) in the data's time units (hours for datetimes, steps
            on a calendar grid) or a string
            (``"24h"``, ``"365.25D"``, ``"12MS"``), or one per factor; fixed in training.
            None: found in the data's spectrum and learned (``docs/forecasting.md``).
        kernel_lr: learning rate of the kernel hyper-parameters, those of the prior and of
            the noise kernels of ``"gaussian_gp*"`` (None: the larger of ``lr`` and
            :data:`gpvae.settings.KERNEL_LR`).
        noise_lr: learning rate of the likelihood's own parameters (the Gaussian's
            per-feature noise variance; the Student-t's scale and degrees of freedom; the
            correlated-noise amplitude and white-noise variance of ``"gaussian_gp*"``, whose
            kernels learn at ``kernel_lr``), in an optimiser group of their own. None (the
            default, with which the benchmarks ran): ``lr``, which moves the noise slowly:
            at lr = 1e-3 the noise sd stays near its start (0.32 in standardised units) for
            hundreds of steps; on simulated data 5e-2 came close to the true noise in 600
            steps and 1e-2 went part of the way (``docs/results.md``, "The observation
            noise").
        window: train on overlapping windows of this many steps of each series (half
            overlapping), which gives a long series many optimiser steps per epoch; None:
            whole series. Predictions always condition on the whole series given. Validation
            entries held out of the training data are drawn before the series are cut, so
            each is hidden in every window that holds it, and scored on the whole series.
        forecast_horizon: calibrate the forecast intervals for this many steps ahead after
            fit, by rolling-origin forecasts inside the training data (or on a held-out
            tail: :data:`gpvae.settings.FORECAST_HOLDOUT_ORIGINS`), per feature and horizon
            band (:mod:`gpvae.estimator.forecast_calibration`), and blend the forecast
            mean with a simple base forecast chosen on the same origins
            (:mod:`gpvae.estimator.forecast_blend`, with ``forecast_blend=True``); None:
            neither. Only with ``posterior="structured"``.
        forecast_blend: with ``forecast_horizon``, replace the forecast mean by
            ``w * model + (1 - w) * base``, a simple base forecast (last value, seasonal
            naive, drift, or the model's change from the last value) and weight chosen per
            feature and horizon band on the calibration origins, where it beats the model's
            mean by more than a standard error (:mod:`gpvae.estimator.forecast_blend`).
            Saved with the model. Without ``forecast_horizon``, fit warns and blends
            nothing; :meth:`calibrate_forecast` chooses the blend then.
        difference: fit the model to each series' increments ``y[t] - y[t-1]`` and forecast
            the last level plus their cumulated sum (:mod:`gpvae.estimator.differencing`):
            a trending series keeps its trend beyond the levels seen in training. Such a
            model forecasts only (``impute``, ``latent``, ``sample`` and the anomaly scores
            raise). A list of feature names (or column positions) differences only those
            features and models the others by their levels (a rate or a change that is
            stationary already, beside trending counts). Only with
            ``posterior="structured"`` (the posterior that forecasts).
        device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``,
            ``"cuda:<k>"``, ``"mps"`` (fit refuses them when this machine lacks them) or
            another torch device that torch reports available here (e.g. ``"xpu"``).
        seed: seed of every random draw (initial weights, batches, samples).
        progress: show a tqdm progress bar during fit, and during a prediction (impute,
            anomaly scores, forecast, latent) over several batches once it has run
            :data:`gpvae.settings.PREDICT_PROGRESS_DELAY` seconds.
        checkpoint_dir: directory for a crash-safe checkpoint during fit (None: none).
        checkpoint_every: write the checkpoint every this many epochs.

    Attributes (after fit or load):
        model_: the trained :class:`~gpvae.model.GPVAEModel`.
        scaler_: the fitted :class:`~gpvae.data.Scaler` (feature statistics, time step).
        history_: one dict per epoch (loss, loglik, kl, val_score, validated, epoch, lr,
            seconds). ``val_score`` is the score early stopping and the kept epoch go by:
            the validation score (``val_fraction`` > 0 or ``X_val``; ``validated`` 1.0),
            else the epoch's training loss (the same number as ``loss``, not a validation
            score; ``validated`` 0.0).
        best_epoch_: the epoch whose weights the fit kept (``history_``'s ``epoch``, from
            1): the first with the lowest finite ``val_score``, which early stopping and the
            kept weights go by; the last epoch when none was finite (the weights are then
            the last ones); None before fit or with no history.
        num_features_: D.
        feature_names_: the D feature names.
        interval_scale_: (D,) spread factors of the imputation intervals (ones without
            calibration).
        anomaly_profile_: the anomaly threshold and score settings learned by
            :meth:`fit_threshold` (None before; saved with the model).
    """

    def __init__(
        self,
        latent_dim: int = 8,
        kernel: KernelArg = "matern32",
        posterior: str = "structured",
        backend: str = "auto",
        likelihood: str = "gaussian",
        encoder: str | nn.Module = "mlp",
        decoder: str | nn.Module = "mlp",
        hidden: Sequence[int] = (128, 128),
        beta: float = 1.0,
        epochs: int = 100,
        batch_size: int = 32,
        lr: float = 1e-3,
        optimizer: str = "adam",
        patience: int | None = 10,
        val_fraction: float = 0.1,
        val_pattern: str = "points",
        mask_rate: float = 0.0,
        mask_pattern: str = "points",
        block_lengths: Sequence[int] = (2, 24),
        interp_skip: bool = False,
        interp_cross: bool | str = False,
        interp_blend: bool = False,
        calibrate: bool = True,
        num_samples: int = 1,
        lengthscale: float | Sequence[float] | None = None,
        period: PeriodArg = None,
        kernel_lr: float | None = None,
        noise_lr: float | None = None,
        window: int | None = None,
        forecast_horizon: int | None = None,
        forecast_blend: bool = False,
        difference: bool | Sequence[str | int] = False,
        device: str | torch.device = "auto",
        seed: int = 0,
        progress: bool = True,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_every: int = 1,
    ) -> None:
        self.latent_dim = int_arg("latent_dim", latent_dim)
        self.kernel: KernelArg = kernel_arg(kernel, self.latent_dim)  # names checked
        self.posterior = posterior_key(posterior)
        self.backend = check_name("backend", backend, backend_names())
        self.likelihood = likelihood_key(likelihood)
        self.encoder = encoder if isinstance(encoder, nn.Module) else encoder_key(encoder)
        self.decoder = decoder if isinstance(decoder, nn.Module) else decoder_key(decoder)
        check_parts(self.kernel, self.backend, self.posterior, self.encoder)
        self.hidden = hidden_arg(hidden)
        self.beta = float_arg("beta", beta, positive=False)
        self.epochs = int_arg("epochs", epochs)
        self.batch_size = int_arg("batch_size", batch_size)
        self.lr = float_arg("lr", lr)
        self.optimizer = check_name("optimizer", optimizer, tuple(OPTIMIZERS))
        integer = isinstance(patience, (int, np.integer)) and not isinstance(patience, bool)
        if integer and patience < 1:  # type: ignore[operator]  # (an int here) never: None
            raise invalid("patience", "an integer >= 1, or None never to stop early", patience)
        self.patience = None if patience is None else int_arg("patience", patience)
        self.val_fraction = float_arg("val_fraction", val_fraction, positive=False)
        if self.val_fraction >= 1.0:
            raise invalid("val_fraction", "a number in [0, 1)", val_fraction)
        self.val_pattern, self.mask_rate, self.mask_pattern, self.block_lengths = hiding_args(
            val_pattern, mask_rate, mask_pattern, block_lengths
        )
        self.interp_skip = bool_arg("interp_skip", interp_skip)
        try:
            cross_options(interp_cross)
        except ValueError as err:
            raise ValidationError(str(err)) from None
        self.interp_cross: bool | str = (
            interp_cross if isinstance(interp_cross, str) else bool(interp_cross)
        )
        if self.interp_cross and not self.interp_skip:
            raise invalid("interp_cross", "False without interp_skip=True", interp_cross)
        self.interp_blend = bool_arg("interp_blend", interp_blend)
        self.calibrate = bool_arg("calibrate", calibrate)
        self.num_samples = int_arg("num_samples", num_samples)
        self.lengthscale = lengthscale_arg(lengthscale, self.latent_dim)
        noise_kernel = get_likelihood(self.likelihood, 1).needs_index  # starts at lengthscale
        check_lengthscale(self.kernel, self.lengthscale, noise_kernel=noise_kernel)
        self.period = check_period(period, self.kernel)
        self.kernel_lr = None if kernel_lr is None else float_arg("kernel_lr", kernel_lr)
        self.noise_lr = None if noise_lr is None else float_arg("noise_lr", noise_lr)
        self.window = None if window is None else int_arg("window", window, minimum=2)
        self.forecast_horizon = (
            None if forecast_horizon is None else int_arg("forecast_horizon", forecast_horizon)
        )
        self.forecast_blend = bool_arg("forecast_blend", forecast_blend)
        self.difference = difference_arg(difference)
        if self.posterior != "structured":  # fit would ignore them, forecast then refuses
            forecasting = {
                "forecast_horizon": (self.forecast_horizon is not None, "None"),
                "forecast_blend": (self.forecast_blend, "False"),
                "difference": (bool(self.difference), "False"),
            }
            for name, (given, default) in forecasting.items():
                if given:
                    raise ValidationError(
                        f"{name}: forecasting needs posterior='structured' (its posterior is a "
                        f"GP that can be evaluated at new times): expected {default} with "
                        f"posterior={self.posterior!r}, found {getattr(self, name)!r}"
                    )
        self.device = check_device(device)
        self.seed = int_arg("seed", seed, minimum=0)
        if self.seed >= 2**63:  # the generators take 64-bit signed seeds
            raise invalid("seed", "an integer in [0, 2**63 - 1]", seed)
        self.progress = bool_arg("progress", progress)  # numpy bools too, as the others
        if checkpoint_dir is not None and not isinstance(checkpoint_dir, (str, os.PathLike)):
            raise InputTypeError(
                f"checkpoint_dir: expected a directory path or None, found {checkpoint_dir!r}"
            )
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = int_arg("checkpoint_every", checkpoint_every)

        self._model: GPVAEModel | None = None
        self._scaler: Scaler | None = None
        self.history_: list[dict[str, float]] = []
        self.num_features_: int | None = None
        self.feature_names_: list[str] | None = None
        self.interval_scale_: np.ndarray | None = None
        #: (bands, D) forecast spread factors per horizon band (None: not calibrated).
        self.forecast_scale_: np.ndarray | None = None
        #: (D,) imputation blend weights against interpolation (None: not blended).
        self.blend_weight_: np.ndarray | None = None
        #: the forecast mean's blend with simple base forecasts (None: the model's alone).
        self.forecast_blend_: ForecastBlend | None = None
        self.device_: torch.device | None = None
        self.anomaly_profile_: AnomalyProfile | None = None
        self.spatial_ = None

    def __repr__(self) -> str:
        fitted = "fitted" if self.is_fitted else "not fitted"
        return (
            f"GPVAE(latent_dim={self.latent_dim}, kernel={self.kernel!r}, "
            f"posterior={self.posterior!r}, likelihood={self.likelihood!r}; {fitted})"
        )

    @property
    def is_fitted(self) -> bool:
        """True after :meth:`fit` or :meth:`load`."""
        return self._model is not None

    @property
    def best_epoch_(self) -> int | None:
        """The epoch whose weights the fit kept, read from ``history_`` (see the class's
        attributes); None before fit or with no history."""
        return best_epoch(self.history_)

    @property
    def model_(self) -> GPVAEModel:
        """The trained model (raises :class:`~gpvae.errors.NotFittedError` before fit)."""
        return self._fitted("model_")[0]

    @property
    def scaler_(self) -> Scaler:
        """The fitted scaler (raises :class:`~gpvae.errors.NotFittedError` before fit)."""
        return self._fitted("scaler_")[1]

    # ------------------------------------------------------------------ helpers

    def _build_model(
        self,
        num_features: int,
        periods: list[float] | None = None,
        learn_period: bool = True,
        span: float | None = None,
    ) -> GPVAEModel:
        """A fresh model with initial weights fixed by ``seed`` (global RNG untouched);
        ``periods`` in time steps (None: placeholders, for weights loaded afterwards)."""
        held = {f.name: getattr(self, f.name) for f in fields(ModelSpec) if f.name in _ARGUMENTS}
        spec = ModelSpec(**held, periods=periods, learn_period=learn_period, span=span)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return build_model(spec, num_features)

    def _session_config(self) -> SessionConfig:
        train = TrainConfig(
            epochs=self.epochs,
            lr=self.lr,
            kernel_lr=max(self.lr, settings.KERNEL_LR)
            if self.kernel_lr is None
            else self.kernel_lr,
            noise_lr=self.noise_lr,
            optimizer=self.optimizer,
            patience=self.patience,
            num_samples=self.num_samples,
            progress=self.progress,
        )
        return SessionConfig(
            train=train,
            batch_size=self.batch_size,
            seed=self.seed,
            val_fraction=self.val_fraction,
            checkpoint_dir=self.checkpoint_dir,
            checkpoint_every=self.checkpoint_every,
            settings=self._resume_settings(),
        )

    def _resume_settings(self) -> dict[str, Any] | None:
        """The settings a resumed fit must share with the interrupted one: the configuration
        without what only paces or reports the fit (None when JSON cannot describe it)."""
        if self.checkpoint_dir is None:
            return None
        try:
            config = self.get_config()
        except GPVAEError:
            return None
        for key in RESUME_FREE:
            config.pop(key, None)
        return cast(dict[str, Any], json.loads(json.dumps(config)))

    def _set_fitted(
        self,
        model: GPVAEModel,
        scaler: Scaler,
        device: torch.device,
        *,
        feature_names: list[str],
        interval_scale: np.ndarray,
        history: list[dict[str, float]],
        anomaly_profile: AnomalyProfile | None = None,
        forecast_scale: np.ndarray | None = None,
        forecast_blend: ForecastBlend | None = None,
        blend_weight: np.ndarray | None = None,
        spatial: Any = None,
    ) -> None:
        """Replace the whole fitted state at once (a fit or load that fails before this
        keeps the previous one): what is not given is reset, so nothing of an earlier fit
        (e.g. the sites of a spatial fit, a time-series fit's forecast calibration)
        survives a new one."""
        self._model, self._scaler, self.device_ = model, scaler, device
        self.anomaly_profile_ = anomaly_profile
        self.num_features_ = scaler.num_features
        self.feature_names_ = list(feature_names)
        self.interval_scale_ = interval_scale
        self.forecast_scale_, self.forecast_blend_ = forecast_scale, forecast_blend
        self.blend_weight_ = blend_weight
        self.spatial_ = spatial
        self.history_ = [dict(h) for h in history]

    def _fitted(self, method: str) -> tuple[GPVAEModel, Scaler]:
        if self._model is None or self._scaler is None:
            raise NotFittedError(
                f"{method}: this GPVAE is not fitted; call fit(X) or GPVAE.load(path) first"
            )
        return self._model, self._scaler

    def _context(self, method: str) -> PredictContext:
        """The fitted model with this call's settings (raises before fit)."""
        model, scaler = self._fitted(method)
        check_levels_method(method, self.difference)
        if self.spatial_ is not None and method != "save":
            raise ValidationError(
                f"{method}: expected a model fitted on time series, found one fitted on sites "
                "(fit(..., coords=...)), which predict_sites and impute serve"
            )
        assert self.device_ is not None
        scale = self.interval_scale_
        return PredictContext(
            model=model,
            scaler=scaler,
            device=self.device_,
            batch_size=self.batch_size,
            seed=self.seed,
            interval_scale=np.ones(scaler.num_features) if scale is None else scale,
            posterior=self.posterior,
            forecast_scale=self.forecast_scale_,
            forecast_horizon=self.forecast_horizon or 1,
            blend_weight=self.blend_weight_,
            forecast_blend=self.forecast_blend_,
            difference=self.difference,
            progress=self.progress,
        )

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        X: Any,
        times: Any = None,
        X_val: Any = None,
        times_val: Any = None,
        *,
        X_val_target: Any = None,
        resume: bool = False,
        sharded: bool = False,
        id: Any = None,
        time: Any = None,
        coords: Sequence[Any] | None = None,
        features: Sequence[Any] | None = None,
        projection: str = "auto",
        window: int = 48,
        inducing: int | None = None,
    ) -> GPVAE:
        """Train on X (observed entries only), early-stopping on a held-out imputation MAE.

        The validation score is the mean absolute error, in standardised units, of the
        imputation (likelihood mean decoded at the posterior mean of z) of entries hidden
        from the model: with ``X_val_target``, its entries that are missing in ``X_val`` (the
        hidden ground truth); else a ``val_fraction`` share of the observed entries of
        ``X_val`` when given (the rest is the input), or of ``X`` (hidden from the training
        input), as single entries or as blocks (``val_pattern``). The weights with the best
        score are kept, and the imputation intervals are calibrated on the same entries,
        or, when no series of ``X_val`` is a training series, on new hold-outs of its
        series shaped like the gaps (``calibrate``).
        Series with a single time step are accepted; series with no observed entry are left
        out of training (with a warning).

        Args:
            X: (n, T, D) array with NaN, list of (T_i, D) arrays, DataFrame or dict.
            times: None (0..T-1), (T,), (n, T) or a list of (T_i,) arrays.
            X_val: optional validation data in the same form (same D).
            times_val: times of ``X_val`` (and of ``X_val_target``).
            X_val_target: ``X_val`` with the entries hidden from it filled in (same form,
                series and times): the validation targets.
            resume: continue from the checkpoint in ``checkpoint_dir`` (same data and
                settings, except those of :data:`RESUME_FREE`) up to ``epochs`` and as
                ``patience`` says, exactly as an uninterrupted fit with them (a larger
                ``epochs`` or ``patience`` continues a finished or early-stopped run; fewer
                epochs than the checkpoint ran, or a patience that would have stopped it
                earlier, is refused); starts afresh when there is no checkpoint yet.
            sharded: under torchrun, X (and X_val) hold only this process's series (e.g.
                its part of a Parquet dataset, :func:`gpvae.data.parquet.read_shard`);
                else every process passes all the series and takes its share of every
                batch. Outside torchrun it changes nothing. See :mod:`gpvae.training.session`.
            id, time, coords, features, projection, window, inducing: spatial data (X a long
                DataFrame; latents are GPs over space x time): see
                :mod:`gpvae.estimator.spatial` and :meth:`predict_sites`.

        Returns:
            self.

        Raises:
            GPVAEError: bad input (naming the argument); an already fitted model is kept.
        """
        if coords is not None:
            check_levels_method("spatial fit", self.difference)
            series_only = {"times": times, "X_val": X_val, "times_val": times_val}
            series_only |= {"X_val_target": X_val_target}
            given = [name for name, value in series_only.items() if value is not None]
            given += [name for name, on in (("resume", resume), ("sharded", sharded)) if on]
            if given:  # the spatial fit would ignore them
                raise invalid(
                    ", ".join(given),
                    "their defaults with coords (a spatial fit reads its times from X's time "
                    "column and takes no validation data, checkpoint or shards)",
                    "them given",
                )
            return self._fit_spatial(X, id, time, coords, features, projection, window, inducing)
        spatial_only = {"id": id, "time": time, "features": features, "inducing": inducing}
        given = [name for name, value in spatial_only.items() if value is not None]
        if given:  # they would be ignored: the id and time columns fitted as features
            raise invalid(
                ", ".join(given),
                "coords with them (they describe spatial data: fit(df, id=..., time=..., "
                "coords=[...])); for time series give X only the id, time and feature columns "
                "(found by their names) or a SeriesSet from gpvae.data.to_series_set(df, "
                "id_col=..., time_col=..., feature_cols=...)",
                "no coords",
            )
        if self.mask_pattern == "sites":
            raise ValidationError(
                "mask_pattern: 'sites' hides whole sites of a space x time field: expected "
                "fit(..., coords=[...]) with it, found no coords"
            )
        resume = bool_arg("resume", resume)
        if resume and self.checkpoint_dir is None:
            raise ValidationError(
                "resume: expected checkpoint_dir to be set (the checkpoint to resume from), "
                "found checkpoint_dir=None"
            )
        sharded = bool_arg("sharded", sharded)
        # entries hidden from the model to validate on: the blend weights need them
        held_out = X_val_target is not None or self.val_fraction > 0
        if self.interp_blend and not held_out and self.likelihood != "bernoulli":
            raise ValidationError(
                "interp_blend: expected held-out validation entries to choose the weights on "
                "(val_fraction > 0 or X_val_target), found val_fraction=0 and no X_val_target"
            )
        if self.interp_skip and self.mask_rate == 0:  # the fusion would never be trained
            warnings.warn(
                "interp_skip: expected mask_rate > 0 with it (the fusion learns only from the "
                "entries hidden from the encoder in training), found mask_rate=0: the model "
                "is not trained past plain linear interpolation, and the imputation of a gap "
                "is each feature's linear interpolation; set mask_rate (e.g. 0.2)",
                UserWarning,
                stacklevel=2,
            )
        if self.checkpoint_dir is not None and distributed.is_main_process():
            try:  # a folder that cannot be made fails now, not after the first epoch
                Path(self.checkpoint_dir).mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise ValidationError(
                    f"checkpoint_dir: expected a folder that can be created, found "
                    f"{str(self.checkpoint_dir)!r} ({err.strerror or err})"
                ) from None
        if self.difference:  # the model's data are the increments (differencing.py)
            X, times = increments_of(X, times, "X", "times", self.difference), None
            if X_val_target is not None:  # at X_val's times
                X_val_target = increments_of(
                    X_val_target, times_val, "X_val_target", "times_val", self.difference
                )
            if X_val is not None:
                X_val = increments_of(X_val, times_val, "X_val", "times_val", self.difference)
                times_val = None
        binary = self.likelihood == "bernoulli"  # 0/1 values are modelled as they are
        device = resolve_device(self.device)
        comm = distributed.current(device)  # None outside torchrun
        hiding = (self.val_pattern, self.val_fraction, self.block_lengths, self.seed)
        data = (X, times, X_val, times_val, X_val_target)
        full_set, train_set, val_set, validation, scaler = fit_inputs(
            *data,
            binary=binary,
            comm=comm,
            sharded=sharded,
            hiding=hiding,
            windows=self.window is not None,
        )
        D = full_set.num_features
        warn_positional_encoder(self.encoder, full_set, stacklevel=2)  # conv, gru on gaps
        H = self.forecast_horizon if self.posterior == "structured" else None
        if self.forecast_blend and H is None:
            warnings.warn(
                "forecast_blend: expected forecast_horizon with it (the blend is chosen on "
                "the forecast calibration's origins), found None; the forecast is not "
                "blended until calibrate_forecast(X, horizon=H)",
                UserWarning,
                stacklevel=2,
            )
        calibrable = H is not None and has_origin(full_set, H, held_out=True)
        if H is not None and comm is not None and sharded:  # any process's series will do
            calibrable = any(comm.all_gather(calibrable))
        if H is not None and not calibrable:  # known now: say it before training, not after
            warnings.warn(
                f"forecast_horizon: expected {no_origin_text(full_set, H)}; the forecast "
                "intervals will be the model's own, not calibrated"
                + (", and the forecast not blended" if self.forecast_blend else "")
                + " (a smaller forecast_horizon, or longer series)",
                UserWarning,
                stacklevel=2,
            )
        if H is not None:  # a held-out calibration tail is not trained on
            train_set = without_tail(train_set, H)
        if self.window is not None:  # after the validation split: windows keep its holes
            train_set = windowed(train_set, self.window)
        periods, learn, span = fit_periods(self.kernel, self.period, full_set, scaler, comm)
        device = comm.device if comm is not None and comm.backend == "nccl" else device
        model = self._build_model(D, periods, learn, span).to(device)
        check_dense_prior(
            model.prior,
            self.kernel,
            train_set.max_length,
            full_set.max_length,
            min(self.batch_size, train_set.num_series),
        )
        sets = (train_set, val_set, validation)
        session = FitSession(
            self._session_config(), model, scaler, device, *sets, comm=comm, sharded=sharded
        )
        try:
            state = session.run(resume)
        except KeyboardInterrupt:  # the best weights so far stay fitted; the interrupt goes on
            kept = session.interrupted_note()
            if kept is not None and session.state is not None:
                names = list(full_set.feature_names)
                self._set_fitted(
                    model, scaler, device, feature_names=names, interval_scale=np.ones(D),
                    history=session.state.history,
                )  # fmt: skip
                warnings.warn(kept, UserWarning, stacklevel=2)
            raise
        scale = np.ones(D)
        ctx = PredictContext(
            model, scaler, device, self.batch_size, self.seed, scale, self.posterior
        )
        blend = None
        if self.interp_blend and not binary:
            if session.val_input is not None:
                blend = fit_blend(ctx, session)
            else:
                warnings.warn(
                    "interp_blend: too little data to hold validation entries out; the "
                    "imputation is not blended",
                    UserWarning,
                    stacklevel=2,
                )
        if self.calibrate and not binary:
            truth = validation if X_val_target is not None else None  # user's hidden entries
            fresh = self._fresh_holdouts(full_set, val_set, truth, comm if sharded else None)
            if session.val_input is not None and (held_out or fresh is not None):
                ctx = replace(ctx, blend_weight=blend)
                scale, limit = calibrate_fit(ctx, session, fresh)
                bounds = factors_at_bounds(scale, limit, list(full_set.feature_names))
                if bounds is not None and (comm is None or comm.is_main):
                    warnings.warn(bounds, UserWarning, stacklevel=2)
            else:  # X_val's own observed entries (val_fraction=0) are seen, not held out
                warnings.warn(
                    "calibrate: expected held-out validation entries (val_fraction > 0, "
                    "X_val_target, or X_val series held out of training), found none; the "
                    "imputation intervals are the model's own, not calibrated (calibrate=False "
                    "says so without this warning)",
                    UserWarning,
                    stacklevel=2,
                )
        forecast_scale, forecast_blend = None, None  # the fitted state changes only at the end
        if H is not None and calibrable:
            ctx = PredictContext(
                model, scaler, device, self.batch_size, self.seed, scale, self.posterior
            )
            bases = base_names(model) if self.forecast_blend else None
            forecast_scale, forecast_blend = calibrate_and_blend(
                ctx, full_set, H, bases, held_out=True, comm=comm, sharded=sharded
            )
            if forecast_scale is None:
                warnings.warn(
                    f"forecast_horizon: expected {no_origin_text(full_set, H)}; the forecast "
                    "intervals are the model's own, not calibrated"
                    + (", and the forecast is not blended" if bases is not None else ""),
                    UserWarning,
                    stacklevel=2,
                )
        self._set_fitted(
            model,
            scaler,
            device,
            feature_names=list(full_set.feature_names),
            interval_scale=scale,
            history=state.history,
            forecast_scale=forecast_scale,
            forecast_blend=forecast_blend,
            blend_weight=blend,
        )
        return self

    def _fresh_holdouts(
        self,
        train_set: SeriesSet,
        val_set: SeriesSet | None,
        given: tuple[SeriesSet, SeriesSet] | None = None,
        comm: Communicator | None = None,
    ) -> tuple[str, tuple[int, int]] | None:
        """(pattern, block lengths) of the new hold-outs the intervals are calibrated on
        when the validation series were held out of training, else None: runs of
        ``block_lengths`` steps when ``val_pattern``, or else ``mask_pattern``, is
        ``"blocks"`` or ``"steps"`` (that pattern); else shaped like the hidden entries of
        ``X_val_target`` (``given``, the validation input and targets; over every process's
        with ``comm``): whole steps when most of them are at whole-step gaps
        (:func:`~gpvae.estimator.calibration.whole_step_entries`), as long as their runs,
        else blocks or points (:func:`~gpvae.estimator.calibration.gap_shape`); else
        points."""
        lengths = None
        steps = False
        if given is not None:  # in every process, before any returns
            runs = hidden_runs(*given)
            whole, total = whole_step_entries(*given)
            if comm is not None:
                sizes, spans, wholes, totals = zip(*comm.all_gather((*runs, whole, total)))
                runs = (np.concatenate(sizes), np.concatenate(spans))
                whole, total = sum(wholes), sum(totals)
            lengths = gap_shape(*runs)
            steps = 2 * whole > total
        if not held_out_of_training(train_set, val_set):
            return None
        for pattern in (self.val_pattern, self.mask_pattern):
            if pattern in RUN_PATTERNS:
                return (pattern, self.block_lengths)
        if steps:  # single whole steps: runs of one step
            return ("steps", lengths or (1, 1))
        return ("points", self.block_lengths) if lengths is None else ("blocks", lengths)

    # ------------------------------------------------------------------ impute

    def impute(
        self,
        X: Any,
        times: Any = None,
        num_samples: int = 100,
        quantiles: Sequence[float] = (0.05, 0.95),
        return_samples: bool = False,
    ) -> ImputationResult:
        """Fill the gaps of X with the posterior-predictive mean and intervals.

        For every series, z ~ q(z | observed entries) (``num_samples`` joint draws), and
        y ~ p(y | z). ``mean`` averages the decoded means E[y | z]; ``lower``/``upper`` are
        the ``quantiles`` of the draws of y, so they include observation noise, at the
        predictive positions p (S + 1) of the sorted draws
        (:func:`gpvae.model.sorted_quantiles`): a 90% interval covers a new draw 90% of the
        time whatever ``num_samples``, as the spread calibration (fitted on
        :data:`gpvae.settings.CALIBRATION_SAMPLES` draws) assumes. Observed
        entries are returned unchanged, bit for bit, in ``mean``, ``lower``, ``upper`` and
        every sample. Each series draws from its own generator, seeded by ``seed`` and the
        series' values and times, so its result does not depend on the other series in X
        or on ``batch_size`` (up to float round-off).

        Args:
            X: data in any accepted form, with the fit's D features.
            times: as in :meth:`fit`.
            num_samples: S, draws per series, at least 2 (a warning when too few for
                ``quantiles``: :func:`gpvae.arguments.interval_draws_arg`).
            quantiles: (lower, upper) probabilities of the interval.
            return_samples: also return the S draws of y.

        Returns:
            :class:`~gpvae.estimator.results.ImputationResult` in the input's form; for a
            model fitted on sites X is the long DataFrame (the fit's id, time, coordinate
            and feature columns), every window conditioned on all its sites, and ``times``
            is refused (:func:`gpvae.estimator.spatial.impute_field`).
        """
        if self.spatial_ is not None:  # a field: neighbours inform every gap
            return self._impute_spatial(X, num_samples, quantiles, times, return_samples)
        ctx = self._context("impute")
        return impute_series(ctx, X, times, num_samples, quantiles, return_samples)

    # ------------------------------------------------------------------ sample, latent

    def sample(
        self, times: Any, num_samples: int = 1, noise: bool = True, seed: int | None = None
    ) -> np.ndarray:
        """New series from the model: z ~ GP prior at ``times``, y ~ p(y | z).

        The draws are reproducible: a call draws from generators seeded afresh with
        ``seed``, so the same model, ``times``, ``num_samples``, ``noise`` and ``seed`` give
        the same series (on the CPU), and two calls without ``seed`` give the very same
        series. For other series, pass another ``seed`` (e.g. 1, 2, ...), or draw them in
        one call with a larger ``num_samples``. The S series are drawn together, so the
        first of ``sample(t, 3)`` is not ``sample(t, 1)``: a series depends on
        ``num_samples`` (and on ``times``), not only on ``seed``.

        The draws are as large and as smooth as the learned kernel says, and on a fit whose
        kernel has not finished learning they are smaller and rougher than the data: in
        session 43, 300 epochs on 16 simulated series (latent lengthscale 20 steps) learned
        lengthscales of about 10 (from a start of 3) and draws with a quarter of the data's
        variance; ``kernel_lr=0.1`` learned about 21 and draws with the data's variance
        (0.97-1.04 of it, three seeds; ``docs/results.md``, "The amplitude of sample's
        draws"). Compare :meth:`kernel_summary`'s ``value`` with its ``initial``.

        Args:
            times: (T,) finite, distinct times: numbers in the model's time units (for a
                model fitted on dates or durations: hours, or steps of its calendar grid,
                e.g. months); for a model fitted on dates or durations also datetimes
                (datetime64, a DatetimeIndex, a list of Timestamps) or durations
                (timedelta64, a TimedeltaIndex, Timedeltas), read as :meth:`forecast`
                reads ``future_times``: hours apart (zone-aware ones in UTC, so the hour
                of a clock change is one hour), or steps of the calendar grid (dates off
                it refused). Only the times' spacing matters: datetimes are counted from
                the earliest of them, numbers moved by whole steps to start near 0.
            num_samples: S series.
            noise: False gives the smooth signal of each series, E[y | z] along its latent
                path, without the observation noise (which every step draws on its own:
                with it, samples are as rough as the data's noise, e.g. a lag-1
                autocorrelation of 0.8 for data at 0.99). With the same seed, both draw
                the same latent paths.
            seed: an integer in [0, 2**63 - 1] that seeds this call's draws; None (the
                default): the estimator's ``seed``, which the model keeps.

        Returns:
            (S, T, D) array in original units (points in the order of ``times``), for
            datetimes too (their times are ``times`` themselves).
        """
        noise = bool_arg("noise", noise)
        ctx = self._context("sample")
        if seed is not None:
            if int_arg("seed", seed, minimum=0) >= 2**63:  # 64-bit signed generator seeds
                raise invalid("seed", "an integer in [0, 2**63 - 1] or None", seed)
            ctx = replace(ctx, seed=int(seed))
        return sample_series(ctx, times, num_samples, noise)

    def kernel_summary(self) -> Any:
        """The learned kernels' hyper-parameters in the data's own units.

        The model computes in training time steps (``x = (t - origin) / step``); this reads
        every kernel back in the data's units: lengthscales and periods along time in hours
        for dates and durations, in steps of the grid for calendar data (``'MS'``: months),
        in the time column's units for numbers (positions when no times were given), and
        spatial lengthscales in km. A periodic kernel's lengthscale (relative to its period)
        and variances have no unit. Sums and products are read term by term.

        With ``likelihood="gaussian_gp"`` each feature's deviation from the decoder is
        ``a_d g_d + eps_d`` (:mod:`gpvae.likelihoods.gp_noise`): ``g_d``'s kernel is listed
        once, source ``"noise of all features"`` (one kernel per feature, sources
        ``"noise of <feature>"``, with ``"gaussian_gp_per_feature"``), its ``variance`` 1 and
        fixed; each feature then has the rows ``amplitude`` (``a_d``) and ``white_sd`` (the
        white noise's standard deviation, ``sqrt(s2_d)``), source ``"noise of <feature>"``,
        term ``"scale"``, in the feature's own units (unit ``"feature units"``).

        Learned values are where training left them, which on a short fit is often near
        where they started (:data:`gpvae.settings.DEFAULT_LENGTHSCALE` or ``lengthscale``):
        in audit W, data whose latent lengthscale was 10 steps gave 6.5 from a start of 3
        and 27.6 from a start of 30 after 150 epochs, both marked learned. Compare
        ``value`` with ``initial``; to see whether a value is the data's, refit from another
        start (``lengthscale=...``) and compare.

        Returns:
            A pandas DataFrame, one row per hyper-parameter, with the columns ``source``
            (``"latent 0"``, ..., then the ``"noise of ..."`` rows of ``"gaussian_gp"``),
            ``term`` (``"1.0"``: the first factor of the second term; ``space`` / ``time``
            for a spatial fit's parts), ``kernel`` (class name), ``parameter``, ``value``,
            ``unit``, ``learned`` (False: fixed in training, e.g. a period given) and
            ``initial``: the value training started from, in the same unit (a fixed
            parameter's own value; NaN for a learned period, which started from the
            data's spectrum, for a quasi-periodic decay set from such a period, for a
            trend kernel's lengthscale, which started from the data's span, and for
            spatial fits).

        Raises:
            NotFittedError: before fit.
        """
        import pandas as pd

        from gpvae.estimator.kernel_report import COLUMNS, kernel_rows, time_unit, with_initial

        model, scaler = self._fitted("kernel_summary")
        unit = time_unit(scaler, self.spatial_)
        names = list(scaler.feature_names_)
        rows = kernel_rows(model, unit, names, scaler.std_)
        starts = None
        if self.spatial_ is None:  # the kernels as this estimator's settings build them
            periods: list[float] | None = None
            n = num_periods(self.kernel)
            if n and self.period is not None:  # the user's periods, in steps
                form = scaler.time_form_ or (None, None)
                periods = given_periods(self.period, n, form, scaler.time_step_)[1]
            starts = []
            for scale in (1.0, 2.0):  # starts taken from the data differ between the two
                guess = [scale] * n if periods is None and n else periods
                # the span stand-ins are long enough that a trend's lengthscale, the larger of
                # the default start and a fraction of the span, takes them (a span of 1 or 2
                # steps left both at the default start, reported as the trend's initial value)
                span = scale * 1e9
                fresh = self._build_model(scaler.num_features, guess, self.period is None, span)
                starts.append(kernel_rows(fresh, unit, names, scaler.std_))
        return pd.DataFrame(with_initial(rows, starts), columns=list(COLUMNS))

    def latent(self, X: Any, times: Any = None) -> tuple[Any, Any]:
        """Posterior mean and variance of z at every time step of X.

        Returns:
            (mean, var): (n, T, L) arrays for array inputs, else lists of n (T_i, L) arrays
            (in each series' input order).
        """
        return latent_series(self._context("latent"), X, times)
