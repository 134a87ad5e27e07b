"""``gpvae.GPVAE``: one estimator for imputation, forecasting, sampling and anomaly scores.

The estimator takes data as users have it (see :func:`gpvae.data.to_series_set`: arrays
(n, T, D) with NaN, ragged lists, irregular times, long or wide DataFrames, PyPOTS dicts),
standardises the features with statistics of the observed training entries and the times
with the training data's median step, ``x = (t - time_origin) / time_step``, so that kernel
lengthscales are in time steps whatever the time unit. Every output is in original units.

Randomness: every method draws from ``torch.Generator`` objects seeded with ``seed`` and
created afresh at each call, so the same model, inputs and arguments give identical results
on the CPU. ``impute`` and ``anomaly_scores`` give each series its own generator, seeded by
``seed`` and the series' values and times (:mod:`gpvae.draws`), so a series gets the same
result whether it is imputed alone or batched with others (up to float round-off).
``forecast`` and ``sample`` draw per call (their draws depend on the batching).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gpvae.batch import Batch
from gpvae.builders import (
    BACKEND_NAMES,
    DECODERS,
    ENCODERS,
    LIKELIHOODS,
    POSTERIORS,
    build_kernel,
    build_model,
    check_kernel_name,
    check_memory,
    check_name,
    float_arg,
    int_arg,
    kernel_from_spec,
    kernel_spec,
)
from gpvae.calibration import LEVELS, fit_interval_scales
from gpvae.data import Scaler, SeriesSet, batch_indices, from_padded
from gpvae.data import to_series_set as _to_series_set
from gpvae.data.output import unpad
from gpvae.draws import PosteriorSampler, gaussian_draws, likelihood_draws, series_seed
from gpvae.errors import (
    GPVAEError,
    InputTypeError,
    ModelFileError,
    NotFittedError,
    ValidationError,
    invalid,
)
from gpvae.fit_run import FitRun, json_number, seed_for
from gpvae.io import check_state_dict, read_model, save_model
from gpvae.kernels import Kernel
from gpvae.likelihoods import Params
from gpvae.model import GPVAEModel
from gpvae.posteriors import StructuredQ
from gpvae.results import (
    AnomalyResult,
    ForecastResult,
    ImputationResult,
    forecast_frame,
    mask_form,
    resolve_future_times,
    samples_form,
    times_1d,
    times_out,
)
from gpvae.training import OPTIMIZERS

__all__ = ["GPVAE"]

# ---------------------------------------------------------------- argument checks


def _check_unit_interval(data: Any, name: str) -> None:
    """Raise unless every observed value of the SeriesSet ``data`` lies in [0, 1]."""
    for i, v in enumerate(data.values):
        obs = v[~np.isnan(v)]
        if obs.size and (obs.min() < 0 or obs.max() > 1):
            raise ValidationError(
                f"{name}: expected values in [0, 1] for likelihood='bernoulli', found "
                f"{float(obs.min())!r}..{float(obs.max())!r} in series {i}"
            )


def _quantiles_arg(quantiles: object) -> tuple[float, float]:
    try:
        lo, hi = (float(q) for q in quantiles)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise invalid("quantiles", "two probabilities (lower, upper)", quantiles) from None
    if not (0.0 < lo < hi < 1.0):
        raise invalid("quantiles", "0 < lower < upper < 1", quantiles)
    return lo, hi


def _double(params: Params) -> Params:
    """Likelihood parameters in float64."""
    if isinstance(params, Tensor):
        return params.double()
    return tuple(p.double() for p in params)


def _interval_scale_entry(value: object, D: int) -> np.ndarray:
    """The saved spread factors, or ones for a model saved before they existed."""
    if value is None:
        return np.ones(D)
    arr = np.asarray(value, dtype=np.float64) if isinstance(value, list) else None
    if arr is None or arr.shape != (D,) or not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ModelFileError(
            f"config.json: expected interval_scale to be {D} positive numbers, found {value!r}"
        )
    return arr


def _resolve_device(device: str | torch.device) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise invalid("device", "an available device ('auto', 'cpu', ...)", f"{device!r}")
    return dev


def _sorted_quantiles(samples: Tensor, probs: Sequence[float]) -> list[Tensor]:
    """Linear-interpolation quantiles over axis 0 of ``samples`` (S, ...) -> each (...)."""
    s = samples.sort(dim=0).values
    S = s.shape[0]
    out = []
    for p in probs:
        pos = p * (S - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, S - 1)
        frac = pos - lo
        out.append(s[lo] * (1 - frac) + s[hi] * frac)
    return out


def _predictive_draws(
    model: GPVAEModel,
    batch: Batch,
    gens: list[torch.Generator],
    lengths: list[int],
    S: int,
) -> tuple[Tensor, Tensor]:
    """Posterior-predictive mean (B, N, D) and S draws (S, B, N, D) of y for a batch.

    z ~ q(z | observed entries), joint over each series; y ~ p(y | z), conditioned on the
    observed residuals when the likelihood's noise is correlated along the index. Draws come
    in chunks of :data:`_SAMPLE_CHUNK` from each series' own generator.
    """
    sampler = PosteriorSampler(model.encode(batch), model.prior, batch, gens)
    mean_sum = torch.zeros_like(batch.y)  # (B, N, D)
    ys = []
    correlated = hasattr(model.likelihood, "conditional")
    for s in _sample_chunks(S):
        z = sampler.draw(s)  # (s, B, N, L)
        params = model.decode(z)
        if correlated:  # noise correlated along the index: condition on y_obs
            m, v = model.predictive(params, batch)  # (s, B, N, D) each
            mean_sum = mean_sum + m.sum(0)
            ys.append(gaussian_draws(m, v, gens, lengths))
            continue
        mean_sum = mean_sum + model.likelihood.mean(params).sum(0)  # (B, N, D)
        ys.append(likelihood_draws(model.likelihood, params, gens, lengths))
    return mean_sum / S, torch.cat(ys)


#: Samples per chunk in impute / anomaly_scores: bounds memory, and is a constant (not a
#: function of the batch) so that every series consumes its generator the same way.
_SAMPLE_CHUNK = 32
#: Draws per series when fitting the interval spread factors after training.
_CALIBRATION_SAMPLES = 64


def _sample_chunks(num_samples: int) -> list[int]:
    full, rest = divmod(num_samples, _SAMPLE_CHUNK)
    return [_SAMPLE_CHUNK] * full + ([rest] if rest else [])


class GPVAE:
    """Gaussian-process-prior VAE for multivariate series with gaps.

    Args:
        latent_dim: L, latent channels, each with its own GP prior over time.
        kernel: a kernel name (``gpvae.kernels.available_kernels()``) or a Kernel instance,
            in units of time steps (one unit = the training data's median time step).
            ``"white"`` with ``posterior="diagonal"`` is the plain VAE.
        posterior: ``"structured"`` (default; needed by ``forecast``), ``"banded"``
            (Fortuin et al. 2020) or ``"diagonal"``.
        backend: GP backend, ``"auto"``, ``"dense"`` or ``"markov"``.
        likelihood: ``"gaussian"`` (learned per-feature variance), ``"gaussian_hetero"``
            (variance predicted by the decoder per entry), ``"gaussian_gp"`` (each feature's
            deviation from the decoder is a GP in time of its own:
            :class:`~gpvae.likelihoods.GPNoiseGaussian`), ``"student_t"`` or ``"bernoulli"``
            (values in [0, 1], not standardised; imputations are probabilities).
        encoder: ``"mlp"``, ``"partial"``, ``"conv"``, ``"cnn"`` (frames of a square image
            flattened to D = H * W features: :class:`~gpvae.nets.ImageEncoder`) or an
            ``nn.Module`` (see :mod:`gpvae.nets`); deep-copied at each fit.
        decoder: ``"mlp"``, ``"cnn"`` (:class:`~gpvae.nets.ImageDecoder`) or an
            ``nn.Module``; deep-copied at each fit.
        hidden: hidden widths of the named networks (the decoder uses them reversed).
        beta: weight of the KL term.
        epochs: maximum training epochs.
        batch_size: series per batch (training and prediction).
        lr: learning rate.
        optimizer: ``"adam"``, ``"adamw"`` or ``"rmsprop"``.
        patience: epochs without a better validation score before stopping (None: never).
        val_fraction: share of observed entries held out as validation targets (of
            ``X_val`` when given, else of the training data, which then trains without them);
            0 turns early stopping on a held-out score off.
        calibrate: after fit, rescale the imputation intervals per feature so that they
            cover the held-out entries at their nominal levels
            (:mod:`gpvae.calibration`; needs ``val_fraction > 0``; not for ``"bernoulli"``).
        num_samples: Monte Carlo samples of z per series in the training ELBO.
        lengthscale: initial kernel lengthscale in time steps for named kernels (None: 3).
        device: ``"auto"`` (cuda, then mps, then cpu) or a torch device.
        seed: seed of every random draw (initial weights, batches, samples).
        progress: show a tqdm progress bar during fit.
        checkpoint_dir: directory for a crash-safe checkpoint during fit (None: none).
        checkpoint_every: write the checkpoint every this many epochs.

    Attributes (after fit or load):
        model_: the trained :class:`~gpvae.model.GPVAEModel`.
        scaler_: the fitted :class:`~gpvae.data.Scaler` (feature statistics, time step).
        history_: one dict per epoch (loss, loglik, kl, val_score, lr, seconds).
        num_features_: D.
        feature_names_: the D feature names.
        interval_scale_: (D,) spread factors of the imputation intervals (ones without
            calibration).
    """

    def __init__(
        self,
        latent_dim: int = 8,
        kernel: str | Kernel = "matern32",
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
        calibrate: bool = True,
        num_samples: int = 1,
        lengthscale: float | None = None,
        device: str | torch.device = "auto",
        seed: int = 0,
        progress: bool = True,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_every: int = 1,
    ) -> None:
        self.latent_dim = int_arg("latent_dim", latent_dim)
        if isinstance(kernel, Kernel):
            self.kernel: str | Kernel = kernel
        elif isinstance(kernel, str):
            check_kernel_name(kernel)
            self.kernel = kernel
        else:
            raise InputTypeError(
                f"kernel: expected a kernel name or a Kernel instance, found "
                f"{type(kernel).__name__}"
            )
        self.posterior = check_name("posterior", posterior, POSTERIORS)
        self.backend = check_name("backend", backend, BACKEND_NAMES)
        if self.backend == "markov" and not build_kernel(self.kernel, None).has_state_space:
            raise ValidationError(
                f"backend: 'markov' needs a kernel with a state-space form (matern12/32/52 or "
                f"sums of them), found kernel={self.kernel!r}; use backend='auto' or 'dense'"
            )
        self.likelihood = check_name("likelihood", likelihood, tuple(LIKELIHOODS))
        self.encoder = self._network_arg("encoder", encoder, tuple(ENCODERS))
        self.decoder = self._network_arg("decoder", decoder, tuple(DECODERS))
        if self.encoder == "partial" and self.posterior == "banded":
            raise ValidationError(
                "encoder: expected 'mlp' or 'conv' with posterior='banded' (it needs a third "
                "output), found 'partial'"
            )
        if self.encoder == "partial" and self.posterior == "diagonal":
            raise ValidationError(
                "encoder: expected 'mlp' or 'conv' with posterior='diagonal' ('partial' gives no "
                "pseudo-observation at a time step with nothing observed, which only the "
                "structured posterior accepts), found 'partial'"
            )
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise InputTypeError(f"hidden: expected a sequence of positive ints, found {hidden!r}")
        self.hidden = tuple(int_arg("hidden", h) for h in hidden)
        self.beta = float_arg("beta", beta, positive=False)
        self.epochs = int_arg("epochs", epochs)
        self.batch_size = int_arg("batch_size", batch_size)
        self.lr = float_arg("lr", lr)
        self.optimizer = check_name("optimizer", optimizer, tuple(OPTIMIZERS))
        self.patience = None if patience is None else int_arg("patience", patience)
        vf = float_arg("val_fraction", val_fraction, positive=False)
        if vf >= 1.0:
            raise invalid("val_fraction", "a number in [0, 1)", val_fraction)
        self.val_fraction = vf
        if not isinstance(calibrate, (bool, np.bool_)):
            raise InputTypeError(f"calibrate: expected True or False, found {calibrate!r}")
        self.calibrate = bool(calibrate)
        self.num_samples = int_arg("num_samples", num_samples)
        self.lengthscale = None if lengthscale is None else float_arg("lengthscale", lengthscale)
        if device != "auto":
            try:
                torch.device(device)
            except (RuntimeError, TypeError, ValueError):
                msg = "'auto', 'cpu', 'cuda', 'mps' or a torch.device"
                raise invalid("device", msg, device) from None
        self.device = device
        self.seed = int_arg("seed", seed, minimum=0)
        if not isinstance(progress, bool):
            raise InputTypeError(f"progress: expected True or False, found {progress!r}")
        self.progress = progress
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
        self.device_: torch.device | None = None

    @staticmethod
    def _network_arg(name: str, value: object, options: tuple[str, ...]) -> str | nn.Module:
        if isinstance(value, nn.Module):
            return value
        return check_name(name, value, options)

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
    def model_(self) -> GPVAEModel:
        """The trained model (raises :class:`~gpvae.errors.NotFittedError` before fit)."""
        return self._fitted("model_")[0]

    @property
    def scaler_(self) -> Scaler:
        """The fitted scaler (raises :class:`~gpvae.errors.NotFittedError` before fit)."""
        return self._fitted("scaler_")[1]

    # ------------------------------------------------------------------ helpers

    def _build_model(self, num_features: int) -> GPVAEModel:
        """A fresh model with initial weights fixed by ``seed`` (global RNG untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return build_model(
                num_features=num_features,
                latent_dim=self.latent_dim,
                kernel=self.kernel,
                posterior=self.posterior,
                backend=self.backend,
                likelihood=self.likelihood,
                encoder=self.encoder,
                decoder=self.decoder,
                hidden=self.hidden,
                beta=self.beta,
                lengthscale=self.lengthscale,
            )

    def _fitted(self, method: str) -> tuple[GPVAEModel, Scaler]:
        if self._model is None or self._scaler is None:
            raise NotFittedError(
                f"{method}: this GPVAE is not fitted; call fit(X) or GPVAE.load(path) first"
            )
        return self._model, self._scaler

    def _generator(self, *salt: int) -> torch.Generator:
        device = self.device_ or torch.device("cpu")
        return torch.Generator(device=device).manual_seed(seed_for(self.seed, *salt))

    def _series_generators(
        self, ss: SeriesSet, idx: np.ndarray, salt: int, device: torch.device | None = None
    ) -> list[torch.Generator]:
        """One generator per series, seeded by ``seed``, ``salt`` and the series' content."""
        device = device or self.device_ or torch.device("cpu")
        return [
            torch.Generator(device=device).manual_seed(
                series_seed(self.seed, salt, ss.values[i], ss.times[i])
            )
            for i in idx
        ]

    def _scale(self) -> np.ndarray:
        """The (D,) interval spread factors (ones for a model saved without them)."""
        if self.interval_scale_ is None:
            return np.ones(self.num_features_ or 0)
        return self.interval_scale_

    def _interval_scales(
        self,
        model: GPVAEModel,
        scaler: Scaler,
        device: torch.device,
        inputs: SeriesSet,
        targets: SeriesSet,
    ) -> np.ndarray:
        """Fit the spread factors on the held-out entries (``targets``, hidden in ``inputs``).

        The draws are the ones :meth:`impute` would make (``_CALIBRATION_SAMPLES`` per
        series), in standardised units.
        """
        levels = np.asarray(LEVELS)
        probs = [*((1 - levels) / 2), *((1 + levels) / 2)]
        K = len(levels)
        preds: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # mean, lower, upper
        truth: list[tuple[np.ndarray, np.ndarray]] = []  # value, feature index
        model.eval()
        for idx in batch_indices(inputs.num_series, self.batch_size):
            batch = inputs.to_batch(
                idx, device=device, time_shift=scaler.time_origin_, time_scale=scaler.time_step_
            )
            gens = self._series_generators(inputs, idx, salt=5, device=device)
            lengths = [len(inputs.times[i]) for i in idx]
            with torch.no_grad():
                mean, y = _predictive_draws(model, batch, gens, lengths, _CALIBRATION_SAMPLES)
                q = torch.stack(_sorted_quantiles(y, probs), dim=-1)  # (B, N, D, 2K)
            target, _, _ = targets.padded(indices=idx)  # (B, N, D), NaN = not a target
            keep = ~np.isnan(target)
            feature = np.broadcast_to(np.arange(target.shape[-1]), target.shape)
            q_np = q.double().cpu().numpy()[keep]  # (M, 2K): lower ends, then upper ends
            m_np = mean.double().cpu().numpy()[keep]  # (M,)
            preds.append((m_np, q_np[:, :K], q_np[:, K:]))
            truth.append((target[keep], feature[keep]))
        mean_a, lo_a, hi_a = (np.concatenate(p) for p in zip(*preds))
        y_a, f_a = (np.concatenate(p) for p in zip(*truth))
        return fit_interval_scales(mean_a, lo_a, hi_a, y_a, f_a, targets.num_features)

    def _batch(self, ss: SeriesSet, idx: np.ndarray, scaler: Scaler) -> Batch:
        return ss.to_batch(
            idx,
            device=self.device_,
            time_shift=scaler.time_origin_,
            time_scale=scaler.time_step_,
        )

    def _input(self, X: Any, times: Any, method: str) -> tuple[SeriesSet, SeriesSet]:
        """(original, standardised) series of a prediction input."""
        _, scaler = self._fitted(method)
        ss = _to_series_set(X, times, num_features=scaler.num_features)
        scaler.check(ss)
        scaler.check_range(ss)
        return ss, scaler.transform(ss)

    def _batches(self, n: int) -> Iterator[np.ndarray]:
        return batch_indices(n, self.batch_size)

    def _check_draws(
        self, model: GPVAEModel, names: str, S: int, n: int, N: int, width: int, copies: int
    ) -> None:
        """Fail at once, naming ``names``, when S draws of (batch, N, width) values cannot fit.

        ``copies`` of the (S, batch, N, width) array in the model's dtype are alive at once.
        """
        B = min(self.batch_size, n)
        nbytes = next(model.parameters()).element_size()
        check_memory(
            names,
            float(copies) * nbytes * S * B * N * width,
            f"{S} draws x {B} series x {N} steps x {width} channels",
        )

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        X: Any,
        times: Any = None,
        X_val: Any = None,
        times_val: Any = None,
        *,
        resume: bool = False,
    ) -> GPVAE:
        """Train on X (observed entries only), early-stopping on a held-out imputation MAE.

        The validation score is the mean absolute error, in standardised units, of the
        imputation (likelihood mean decoded at the posterior mean of z) of held-out observed
        entries: a ``val_fraction`` share of the observed entries of ``X_val`` when given
        (the rest is the input), else of ``X`` (hidden from the training input). The weights
        with the best score are kept.

        Args:
            X: (n, T, D) array with NaN, list of (T_i, D) arrays, DataFrame or dict.
            times: None (0..T-1), (T,), (n, T) or a list of (T_i,) arrays.
            X_val: optional validation data in the same form (same D).
            times_val: times of ``X_val``.
            resume: continue from the checkpoint in ``checkpoint_dir`` (same data and
                settings) up to ``epochs``; starts afresh when there is no checkpoint yet.

        Returns:
            self.

        Raises:
            GPVAEError: bad input (naming the argument); an already fitted model is kept.
        """
        if not isinstance(resume, bool):
            raise InputTypeError(f"resume: expected True or False, found {resume!r}")
        if resume and self.checkpoint_dir is None:
            raise ValidationError(
                "resume: expected checkpoint_dir to be set (the checkpoint to resume from), "
                "found checkpoint_dir=None"
            )
        train_set = _to_series_set(X, times)
        D = train_set.num_features
        val_set = None
        if X_val is not None:
            val_set = _to_series_set(
                X_val, times_val, num_features=D, name="X_val", times_name="times_val"
            )
        elif times_val is not None:
            raise ValidationError("times_val: expected None when X_val is None, found times")
        binary = self.likelihood == "bernoulli"  # 0/1 values are modelled as they are
        if binary:
            _check_unit_interval(train_set, "X")
            if val_set is not None:
                _check_unit_interval(val_set, "X_val")
        scaler = Scaler().fit(train_set, standardise=not binary)
        scaler.check_range(train_set)
        if val_set is not None:
            scaler.check(val_set, "X_val")
            scaler.check_range(val_set, "X_val", "times_val")
        device = _resolve_device(self.device)
        model = self._build_model(D).to(device)
        run = FitRun(self, model, scaler, device, train_set, val_set)
        state = run.run(resume)
        scale = np.ones(D)
        if self.calibrate and not binary and run.val_input is not None:
            assert run.val_target is not None
            scale = self._interval_scales(model, scaler, device, run.val_input, run.val_target)

        self._model, self._scaler, self.device_ = model, scaler, device
        self.interval_scale_ = scale
        self.history_ = [dict(h) for h in state.history]
        self.num_features_ = D
        self.feature_names_ = list(train_set.feature_names)
        return self

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
        the ``quantiles`` of the draws of y, so they include observation noise. Observed
        entries are returned unchanged, bit for bit, in ``mean``, ``lower``, ``upper`` and
        every sample. Each series draws from its own generator, seeded by ``seed`` and the
        series' values and times, so its result does not depend on the other series in X
        or on ``batch_size`` (up to float round-off).

        Args:
            X: data in any accepted form, with the fit's D features.
            times: as in :meth:`fit`.
            num_samples: S, draws per series.
            quantiles: (lower, upper) probabilities of the interval.
            return_samples: also return the S draws of y.

        Returns:
            :class:`~gpvae.results.ImputationResult` in the input's form.
        """
        model, scaler = self._fitted("impute")
        S = int_arg("num_samples", num_samples)
        q_lo, q_hi = _quantiles_arg(quantiles)
        if not isinstance(return_samples, (bool, np.bool_)):
            raise InputTypeError(
                f"return_samples: expected True or False, found {return_samples!r}"
            )
        ss, scaled = self._input(X, times, "impute")
        T_max = max(len(t) for t in ss.times)
        # the draws of y, their concatenation and the sorted copy for the quantiles
        self._check_draws(model, "num_samples", S, ss.num_series, T_max, ss.num_features, 3)
        means: list[np.ndarray] = [np.empty(0)] * ss.num_series
        lowers, uppers = list(means), list(means)
        draws: list[np.ndarray] = list(means)
        model.eval()
        for idx in self._batches(ss.num_series):
            batch = self._batch(scaled, idx, scaler)
            gens = self._series_generators(ss, idx, salt=1)
            lengths = [len(ss.times[i]) for i in idx]
            with torch.no_grad():
                mean, y = _predictive_draws(model, batch, gens, lengths, S)
                if (self._scale() != 1).any():  # spread recalibrated about the mean
                    scale = torch.as_tensor(self._scale(), dtype=y.dtype, device=y.device)
                    y = mean + scale * (y - mean)  # (S, B, N, D)
                lo, hi = _sorted_quantiles(y, (q_lo, q_hi))  # (B, N, D) each
            parts = [scaler.inverse_transform(t.double().cpu().numpy()) for t in (mean, lo, hi)]
            y_np = scaler.inverse_transform(y.double().cpu().numpy()) if return_samples else None
            for b, i in enumerate(idx):
                orig = ss.values[i]  # (T_i, D) float64 in sorted time order
                obs = ~np.isnan(orig)
                T = orig.shape[0]
                means[i], lowers[i], uppers[i] = (np.where(obs, orig, p[b, :T]) for p in parts)
                if y_np is not None:
                    draws[i] = np.where(obs, orig, y_np[:, b, :T])  # (S, T_i, D)
        observed = [~np.isnan(v) for v in ss.values]
        frame = None
        if ss.layout.output_kind not in ("array", "ragged"):
            frame = from_padded(ss, {"mean": means, "lower": lowers, "upper": uppers})
        return ImputationResult(
            mean=from_padded(ss, means, name="mean"),
            lower=from_padded(ss, lowers, name="lower"),
            upper=from_padded(ss, uppers, name="upper"),
            samples=samples_form(ss, draws) if return_samples else None,
            observed=mask_form(ss, observed),
            quantiles=(q_lo, q_hi),
            frame=frame,
        )

    # ------------------------------------------------------------------ forecast

    def forecast(
        self,
        X: Any,
        times: Any = None,
        horizon: int | None = None,
        future_times: Any = None,
        num_samples: int = 100,
        quantiles: Sequence[float] = (0.05, 0.95),
    ) -> ForecastResult:
        """Predict every series at future times, with intervals.

        Latent paths at the future times are joint draws from the posterior GP of each
        series (the prior conditioned on the encoder's pseudo-observations of the observed
        entries), decoded; y ~ p(y | z) gives the intervals. Needs ``posterior="structured"``.

        Args:
            X: the observed history, any accepted form.
            times: as in :meth:`fit`.
            horizon: H steps of each series' median time step after its last time.
            future_times: instead of ``horizon``: (H,) times for every series, (n, H), or a
                list of n (H,) arrays, in the input's time units.
            num_samples: S draws.
            quantiles: (lower, upper) probabilities.

        Returns:
            :class:`~gpvae.results.ForecastResult` with (n, H, D) arrays.
        """
        model, scaler = self._fitted("forecast")
        if self.posterior != "structured":
            raise ValidationError(
                f"posterior: forecast expected a model fitted with posterior='structured' (its "
                f"posterior is a GP that can be evaluated at new times), found "
                f"{self.posterior!r}"
            )
        S = int_arg("num_samples", num_samples)
        q_lo, q_hi = _quantiles_arg(quantiles)
        ss, scaled = self._input(X, times, "forecast")
        future = resolve_future_times(ss, horizon, future_times)  # (n, H) float, input's units
        future_name = "horizon" if future_times is None else "future_times"
        scaler.scaled_times(future, future_name)  # checked before any work
        n, H = future.shape
        D = ss.num_features
        width = max(D, model.latent_dim)
        T_max = max(len(t) for t in ss.times)
        # z and the decoded draws over history + future, the draws of y, the sorted copy
        self._check_draws(model, f"num_samples, {future_name}", S, n, T_max + H, width, 4)
        gen = self._generator(2)
        mean_out, lo_out, hi_out = (np.empty((n, H, D)) for _ in range(3))
        model.eval()
        for idx in self._batches(n):
            batch = self._batch(scaled, idx, scaler)
            x_new = scaler.scaled_times(future[idx], future_name)  # (B, H)
            x_t = torch.as_tensor(x_new[..., None], dtype=batch.x.dtype, device=batch.x.device)
            with torch.no_grad():
                q = model.encode(batch)
                if not isinstance(q, StructuredQ):
                    raise ValidationError("posterior: forecast expected a structured posterior")
                predict = getattr(model.likelihood, "predict", None)
                if predict is None:
                    z = q.gp.sample_at(x_t, S, gen)  # (S, B, H, L)
                    params = model.decode(z)
                    mean = model.likelihood.mean(params).mean(0)  # (B, H, D)
                    y = model.likelihood.sample(params, gen)  # (S, B, H, D)
                else:  # noise correlated along the index: joint z over history and future
                    N = batch.x.shape[1]
                    z = q.gp.sample_at(torch.cat([batch.x, x_t], dim=1), S, gen)
                    f_all = model.decode(z)  # (S, B, N + H, D)
                    if not isinstance(f_all, Tensor):
                        raise ValidationError("decoder: expected one tensor for gaussian_gp")
                    m, v = predict(
                        f_all[..., :N, :],
                        batch.y,
                        batch.observed,
                        batch.x,
                        f_all[..., N:, :],
                        x_t,
                        batch.valid,
                    )  # (S, B, H, D) each
                    mean = m.mean(0)
                    eps = torch.randn(m.shape, generator=gen, dtype=m.dtype, device=m.device)
                    y = m + v.sqrt() * eps
                lo, hi = _sorted_quantiles(y, (q_lo, q_hi))
            for out, t in ((mean_out, mean), (lo_out, lo), (hi_out, hi)):
                out[idx] = scaler.inverse_transform(t.double().cpu().numpy())
        dtype = ss.layout.dtype if ss.layout.dtype.kind == "f" else np.dtype(np.float64)
        t_out = times_out(ss, future)
        mean_c, lo_c, hi_c = (a.astype(dtype, copy=False) for a in (mean_out, lo_out, hi_out))
        return ForecastResult(
            times=t_out,
            mean=mean_c,
            lower=lo_c,
            upper=hi_c,
            samples=None,
            quantiles=(q_lo, q_hi),
            series_ids=ss.layout.series_ids,
            frame=forecast_frame(ss, t_out, mean_c, lo_c, hi_c),
        )

    # ------------------------------------------------------------------ sample, latent

    def sample(self, times: Any, num_samples: int = 1) -> np.ndarray:
        """New series from the model: z ~ GP prior at ``times``, y ~ p(y | z).

        Args:
            times: (T,) finite, distinct times in the training data's time units.
            num_samples: S series.

        Returns:
            (S, T, D) array in original units (points in the order of ``times``).
        """
        model, scaler = self._fitted("sample")
        S = int_arg("num_samples", num_samples)
        t = times_1d(times, "times")
        width = max(scaler.num_features, model.latent_dim)
        self._check_draws(model, "num_samples, times", S, 1, len(t), width, 3)
        order = np.argsort(t, kind="stable")
        x = scaler.scaled_times(t[order], "times")
        dtype = next(model.parameters()).dtype
        x_t = torch.as_tensor(x[None, :, None], dtype=dtype, device=self.device_)
        gen = self._generator(3)
        model.eval()
        with torch.no_grad():
            z = model.prior.sample(x_t, S, gen)  # (S, 1, T, L)
            path = getattr(model.likelihood, "sample_path", None)
            if path is None:
                y = model.likelihood.sample(model.decode(z), gen)[:, 0]  # (S, T, D)
            else:  # noise correlated along the index: drawn jointly over the times
                y = path(model.decode(z), x_t, gen)[:, 0]
        out = np.empty((S, len(t), scaler.num_features))
        out[:, order] = scaler.inverse_transform(y.double().cpu().numpy())
        return out

    def latent(self, X: Any, times: Any = None) -> tuple[Any, Any]:
        """Posterior mean and variance of z at every time step of X.

        Returns:
            (mean, var): (n, T, L) arrays for array inputs, else lists of n (T_i, L) arrays
            (in each series' input order).
        """
        model, scaler = self._fitted("latent")
        ss, scaled = self._input(X, times, "latent")
        mean_l: list[np.ndarray] = [np.empty(0)] * ss.num_series
        var_l = list(mean_l)
        model.eval()
        for idx in self._batches(ss.num_series):
            batch = self._batch(scaled, idx, scaler)
            with torch.no_grad():
                m, v = model.encode(batch).marginals()  # (B, N, L)
            m_np, v_np = m.double().cpu().numpy(), v.double().cpu().numpy()
            for b, i in enumerate(idx):
                T = len(ss.times[i])
                mean_l[i], var_l[i] = m_np[b, :T], v_np[b, :T]
        mean_u, var_u = unpad(ss, mean_l), unpad(ss, var_l)
        if ss.layout.output_kind == "array":
            return np.stack(mean_u), np.stack(var_u)
        return mean_u, var_u

    # ------------------------------------------------------------------ anomaly scores

    def anomaly_scores(
        self, X: Any, times: Any = None, num_samples: int = 100, num_folds: int = 5
    ) -> AnomalyResult:
        """Negative log predictive density of every observed entry, with its step hidden.

        The time steps of each series are split into ``num_folds`` interleaved folds (step k,
        in time order, goes to fold ``k % num_folds``). For each fold, every entry at its
        steps is hidden from the encoder (those steps give no pseudo-observation), and each
        observed entry there is scored by

            entry = -log (1/S) sum_s p(y | z_s),   z_s ~ q(z | the other folds' entries),

        the negative log posterior-predictive density (Monte Carlo over S joint draws of z)
        of the standardised value (add ``log(scaler_.std_[d])`` for original units). The
        step score is the sum over the observed entries at the step (NaN if none).

        Returns:
            :class:`~gpvae.results.AnomalyResult`: ``entry`` in the input's form (NaN where
            unobserved), ``step`` (n, T) / list / Series.
        """
        model, scaler = self._fitted("anomaly_scores")
        S = int_arg("num_samples", num_samples)
        K = int_arg("num_folds", num_folds, minimum=2)
        ss, scaled = self._input(X, times, "anomaly_scores")
        T_max = max(len(t) for t in ss.times)
        # one float64 log-sum-exp per chunk of draws is kept until the fold is scored
        B, D = min(self.batch_size, ss.num_series), ss.num_features
        check_memory(
            "num_samples",
            8.0 * math.ceil(S / _SAMPLE_CHUNK) * B * T_max * D,
            f"{S} draws for {B} series x {T_max} steps x {D} features",
        )
        entry: list[np.ndarray] = [np.empty(0)] * ss.num_series
        model.eval()
        for idx in self._batches(ss.num_series):
            batch = self._batch(scaled, idx, scaler)
            gens = self._series_generators(ss, idx, salt=4)
            B, N, D = batch.y.shape
            fold_of = torch.arange(N, device=batch.y.device) % K  # (N,)
            score = torch.full((B, N, D), float("nan"), dtype=torch.float64)
            for k in range(K):
                hide = (fold_of == k)[None, :, None]  # (1, N, 1)
                masked = Batch(batch.x, batch.y, batch.observed & ~hide, batch.valid)
                with torch.no_grad():
                    sampler = PosteriorSampler(model.encode(masked), model.prior, masked, gens)
                    parts = []
                    for s in _sample_chunks(S):
                        z = sampler.draw(s)  # (s, B, N, L)
                        params = model.decode(z)
                        # float64: a value far from the training data (|y| ~ 1e20
                        # standardised) has a squared residual beyond float32.
                        y64 = batch.y.double()
                        if hasattr(model.likelihood, "conditional"):  # given the other folds
                            m, v = (t.double() for t in model.predictive(params, masked))
                            lp = -0.5 * (math.log(2 * math.pi) + v.log() + (y64 - m) ** 2 / v)
                        else:
                            lp = model.likelihood.log_prob_entries(_double(params), y64)
                        parts.append(torch.logsumexp(lp.double(), dim=0))  # (B, N, D)
                    lpd = torch.logsumexp(torch.stack(parts), dim=0) - math.log(S)
                target = (batch.observed & hide).cpu()
                score = torch.where(target, -lpd.cpu(), score)
            s_np = score.numpy()
            for b, i in enumerate(idx):
                entry[i] = s_np[b, : len(ss.times[i])]
        step = [
            np.where(np.isnan(e).all(axis=1), np.nan, np.nansum(e, axis=1)) for e in entry
        ]  # (T_i,)
        return AnomalyResult(
            # float64 whatever the input's dtype: a score (~ z^2 / 2) can exceed float32
            entry=from_padded(ss, entry, name="entry", dtype=np.float64),
            step=from_padded(ss, step, name="step", dtype=np.float64),
            num_folds=K,
            num_samples=S,
        )

    # ------------------------------------------------------------------ save / load

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON-able values (kernels as specs).

        Raises:
            ValidationError: naming ``encoder``/``decoder`` when it is an ``nn.Module``, or
                ``kernel`` for a kernel instance that cannot be rebuilt from JSON.
        """
        for name, options in (("encoder", ENCODERS), ("decoder", DECODERS)):
            value = getattr(self, name)
            if isinstance(value, nn.Module):
                raise ValidationError(
                    f"{name}: expected a named network ({', '.join(options)}) to save the "
                    f"model to JSON, found a custom {type(value).__name__}; save its weights "
                    "with torch yourself"
                )
        return {
            "latent_dim": self.latent_dim,
            "kernel": kernel_spec(self.kernel),
            "posterior": self.posterior,
            "backend": self.backend,
            "likelihood": self.likelihood,
            "encoder": self.encoder,
            "decoder": self.decoder,
            "hidden": list(self.hidden),
            "beta": self.beta,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "optimizer": self.optimizer,
            "patience": self.patience,
            "val_fraction": self.val_fraction,
            "calibrate": self.calibrate,
            "num_samples": self.num_samples,
            "lengthscale": self.lengthscale,
            "device": str(self.device),
            "seed": self.seed,
            "progress": self.progress,
            "checkpoint_dir": None if self.checkpoint_dir is None else str(self.checkpoint_dir),
            "checkpoint_every": self.checkpoint_every,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted model to the directory ``path``: ``model.safetensors`` (weights)
        and ``config.json`` (constructor arguments, D, feature names, time scale, scaler
        state, history, gpvae version). Nothing is pickled.

        Raises:
            NotFittedError: before fit.
            ValidationError: a custom encoder/decoder module or a kernel instance that JSON
                cannot describe (names the argument).
        """
        model, scaler = self._fitted("save")
        config = {
            "estimator": self.get_config(),
            "num_features": self.num_features_,
            "feature_names": self.feature_names_,
            "time_step": scaler.time_step_,
            "time_origin": scaler.time_origin_,
            "dtype": "float32",
        }
        history = [{k: json_number(v) for k, v in h.items()} for h in self.history_]
        extra = {
            "scaler": scaler.state_dict(),
            "history": history,
            "interval_scale": self._scale().tolist(),
        }
        save_model(path, model.state_dict(), config, extra)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> GPVAE:
        """Load a model saved by :meth:`save` (never unpickles anything).

        Args:
            path: the model directory.
            device: where to put the model (default the CPU; ``"auto"`` picks cuda/mps).

        Raises:
            ModelFileError: missing or malformed files, a config that does not describe a
                valid estimator, or weights whose names or shapes do not match it.
        """
        mf = read_model(path)
        cfg = mf.config
        try:
            args = dict(cfg["estimator"])
            args["kernel"] = kernel_from_spec(args["kernel"])
            args["hidden"] = tuple(args["hidden"])
            args["device"] = device
            est = cls(**args)
            D = int_arg("num_features", cfg["num_features"])
            scaler = Scaler.from_state_dict(mf.extra["scaler"])
            names = [str(s) for s in cfg["feature_names"]]
            model = est._build_model(D)
        except GPVAEError as err:
            raise ModelFileError(f"config.json: does not describe a GPVAE ({err})") from None
        except (KeyError, TypeError, ValueError) as err:
            raise ModelFileError(
                f"config.json: expected the estimator's config, num_features, feature_names "
                f"and the scaler state, found error {err!r}"
            ) from None
        if scaler.num_features != D or len(names) != D:
            raise ModelFileError(
                f"config.json: expected {D} features in the scaler and feature_names, found "
                f"{scaler.num_features} and {len(names)}"
            )
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        check_state_dict(mf.state_dict, expected)
        model.load_state_dict(mf.state_dict)
        dev = _resolve_device(device)
        est._model, est._scaler, est.device_ = model.to(dev).eval(), scaler, dev
        est.num_features_, est.feature_names_ = D, names
        est.interval_scale_ = _interval_scale_entry(mf.extra.get("interval_scale"), D)
        history = mf.extra.get("history", [])
        if isinstance(history, list):
            est.history_ = [
                {k: math.nan if v is None else v for k, v in h.items()}
                for h in history
                if isinstance(h, dict)
            ]
        return est
