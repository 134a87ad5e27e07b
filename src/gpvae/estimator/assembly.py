"""Assembly of a :class:`~gpvae.model.GPVAEModel` from the estimator's names and numbers.

Every name is owned by the registry of its kind (:mod:`gpvae.kernels.registry`,
:mod:`gpvae.nets.registry`, :func:`gpvae.likelihoods.likelihood_names`,
:func:`gpvae.posteriors.posterior_names`, :func:`gpvae.gp.prior.backend_names`); this module
only checks that the chosen parts fit together and puts them together.
"""

from __future__ import annotations

import copy
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gpvae import settings
from gpvae.arguments import check_memory, int_arg
from gpvae.data import SeriesSet
from gpvae.errors import InputTypeError, ShapeError, ValidationError, invalid
from gpvae.gp.prior import GPPrior
from gpvae.kernels import (
    Kernel,
    KernelArg,
    Product,
    Sum,
    build_kernel,
    has_finite_rank,
    has_state_space,
    kernel_from_spec,
    kernel_key,
    num_periods,
)
from gpvae.likelihoods import get_likelihood
from gpvae.model import GPVAEModel
from gpvae.nets.registry import build_decoder, build_encoder
from gpvae.posteriors import get_posterior

__all__ = [
    "POSITIONAL_ENCODERS",
    "POSITIONAL_GAP_RATIO",
    "ModelSpec",
    "build_model",
    "check_dense_prior",
    "check_device",
    "check_parts",
    "hidden_arg",
    "kernel_arg",
    "resolve_device",
    "warn_positional_encoder",
]


@dataclass(frozen=True)
class ModelSpec:
    """The parts of a model by name (or module), as the estimator holds them."""

    latent_dim: int
    kernel: KernelArg
    posterior: str
    backend: str
    likelihood: str
    encoder: str | nn.Module
    decoder: str | nn.Module
    hidden: tuple[int, ...]
    beta: float
    lengthscale: float | tuple[float, ...] | None
    mask_rate: float = 0.0
    mask_pattern: str = "points"
    block_lengths: tuple[int, int] = (2, 24)
    periods: list[float] | None = None
    learn_period: bool = True
    span: float | None = None
    interp_skip: bool = False
    interp_space: float | None = None
    interp_cross: bool | str = False


def check_parts(kernel: KernelArg, backend: str, posterior: str, encoder: object) -> None:
    """Raise a ValidationError naming the argument when chosen parts do not fit together."""
    if backend == "sparse":
        raise ValidationError(
            "backend: 'sparse' needs inducing sites, which spatial data give: use "
            "fit(df, id=..., time=..., coords=[...], inducing=M) with backend='auto'"
        )
    if backend == "markov" and not has_state_space(kernel):
        raise ValidationError(
            f"backend: 'markov' needs a kernel with a state-space form (matern12/32/52, "
            f"trend, periodic, and sums and products of them), found kernel={kernel!r}; use "
            f"backend='auto' or 'dense'"
        )
    if posterior in ("diagonal", "banded") and has_finite_rank(kernel):
        name = _kernel_text(kernel)
        raise ValidationError(
            f"posterior: expected 'structured' with kernel={name} (a sum of resonators, a "
            "covariance of finite rank: 2J + 1 per periodic kernel, 7 by default), found "
            f"{posterior!r}, whose KL to such a prior is infinite (it gives every time step a "
            "variance of its own); use posterior='structured', or add a full-rank kernel "
            "(e.g. kernel='matern32+periodic')"
        )
    if encoder == "partial" and posterior == "banded":
        raise ValidationError(
            "encoder: expected 'mlp' or 'conv' with posterior='banded' (it needs a third "
            "output), found 'partial'"
        )
    if encoder == "partial" and posterior == "diagonal":
        raise ValidationError(
            "encoder: expected 'mlp' or 'conv' with posterior='diagonal' ('partial' gives no "
            "pseudo-observation at a time step with nothing observed, which only the "
            "structured posterior accepts), found 'partial'"
        )


#: float64 N x N matrices per latent channel and series that a training step of a dense GP
#: prior holds at its peak (measured 7.2-7.5 at N = 4,000-8,000 with ``rbf``; see
#: :data:`gpvae.settings.DENSE_PRIOR_WARN_POINTS`)
DENSE_PRIOR_MATRICES = 8


def check_dense_prior(
    prior: GPPrior, kernel: KernelArg, train_points: int, series_points: int, batch: int
) -> None:
    """Refuse or warn, before training, when the prior is dense over long series.

    A kernel without a state-space form (or ``backend="dense"``) makes the prior of each
    series dense: O(N^3) time and :data:`DENSE_PRIOR_MATRICES` N x N float64 matrices per
    latent channel. Raises a ValidationError naming ``kernel``, ``batch_size`` and ``window``
    when a training batch of ``batch`` series of ``train_points`` points cannot fit in
    physical memory;
    warns when the training series (``train_points``, windows when ``window`` is set) or the
    whole series that predictions condition on (``series_points``) have more than
    :data:`gpvae.settings.DENSE_PRIOR_WARN_POINTS` points. A markov or spacetime prior
    (every built-in kernel but ``rbf``, ``cauchy``, ``rq``, ``periodic_exact`` and ``white``)
    passes without a word.
    """
    if prior.resolve_backend(torch.zeros(1, 2)) != "dense":
        return
    L = prior.latent_dim
    cause = (
        "backend='dense'"
        if prior.backend == "dense"
        else f"kernel={_kernel_text(kernel)} has no state-space form"
    )
    per_series = DENSE_PRIOR_MATRICES * 8.0 * L * float(train_points) ** 2
    check_memory(
        "kernel, batch_size, window",
        per_series * batch,
        f"a dense GP prior ({cause}) over training batches of {batch} series of "
        f"{train_points} points with {L} latent channels",
    )
    longest = max(train_points, series_points)
    if longest <= settings.DENSE_PRIOR_WARN_POINTS:
        return
    gib = DENSE_PRIOR_MATRICES * 8.0 * L * float(longest) ** 2 / 2**30
    if train_points > settings.DENSE_PRIOR_WARN_POINTS:
        where = f"training on series of up to {train_points} points"
        fix = "give window=W (e.g. 512) to train on windows, or "
    else:
        where = (
            f"training on windows of {train_points} points, but imputation, forecasts and "
            f"anomaly scores condition on whole series of up to {series_points} points, "
            "and so does every epoch's validation (its held-out entries are predicted from "
            "whole series, dense too: each epoch costs O(N^3) per series on top of its "
            "windows; val_fraction=0 without X_val skips it, and the training loss then "
            "decides when to stop)"
        )
        fix = ""
    warnings.warn(
        f"kernel: the GP prior is dense ({cause}): O(N^3) time and about {gib:.3g} GiB per "
        f"series of N = {longest} points with {L} latent channels, {where}; {fix}use a kernel "
        "with a state-space form (matern12/32/52, periodic, trend, and sums and products of "
        "them), which keeps every series O(N)",
        UserWarning,
        stacklevel=3,
    )


def _kernel_text(kernel: KernelArg) -> str:
    """``kernel`` for a message: a name quoted, an instance or a list by their classes."""
    if isinstance(kernel, str):
        return repr(kernel)
    if isinstance(kernel, Kernel):
        return f"{type(kernel).__name__}(...)"
    return "[" + ", ".join(_kernel_text(k) for k in kernel) + "]"


def build_model(spec: ModelSpec, num_features: int) -> GPVAEModel:
    """Assemble encoder, posterior family, GP prior, decoder and likelihood (float32, CPU).

    The model is float32, the compute dtype, whatever torch's default dtype (a process
    that set ``torch.set_default_dtype(torch.float64)`` builds the same initial weights).
    Module arguments (``encoder``, ``decoder``) are deep-copied so that every fit starts
    from the same initial weights and the caller's modules are never trained in place.
    """
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        return _build_model(spec, num_features).to(torch.float32)
    finally:
        torch.set_default_dtype(default)


def _build_model(spec: ModelSpec, num_features: int) -> GPVAEModel:
    """:func:`build_model` under torch's current default dtype."""
    family = get_posterior(spec.posterior)
    lik = get_likelihood(spec.likelihood, num_features)
    if lik.needs_index and spec.lengthscale is not None:
        # noise that is a GP along the index starts at the latents' (median) lengthscale
        ell = spec.lengthscale
        noise_kernel = build_kernel(
            "matern32", statistics.median(ell) if isinstance(ell, tuple) else ell
        )
        lik = get_likelihood(spec.likelihood, num_features, kernel=noise_kernel)
    enc: nn.Module
    dec: nn.Module
    if isinstance(spec.encoder, nn.Module):
        enc = copy.deepcopy(spec.encoder)
    else:
        enc = build_encoder(
            spec.encoder, num_features, spec.latent_dim, spec.hidden, family.num_encoder_outputs
        )
    if isinstance(spec.decoder, nn.Module):
        dec = copy.deepcopy(spec.decoder)
    else:
        dec = build_decoder(
            spec.decoder, spec.latent_dim, num_features, spec.hidden, lik.num_params
        )
    periods = spec.periods
    if periods is None and num_periods(spec.kernel):  # placeholders for loaded weights
        periods = [1.0] * num_periods(spec.kernel)
    kernel = build_kernel(spec.kernel, spec.lengthscale, periods, spec.learn_period, spec.span)
    prior = GPPrior(kernel, spec.latent_dim, backend=spec.backend)
    return GPVAEModel(
        enc,
        family,
        prior,
        dec,
        lik,
        beta=spec.beta,
        mask_rate=spec.mask_rate,
        mask_pattern=spec.mask_pattern,
        mask_lengths=spec.block_lengths,
        interp_skip=spec.interp_skip,
        interp_space=spec.interp_space,
        interp_cross=spec.interp_cross,
    )


#: The device types a GPVAE may name before the machine has them (checked at fit and load).
_KNOWN_DEVICES = ("cpu", "cuda", "mps")
_DEVICE_TEXT = "'auto', 'cpu', 'cuda', 'cuda:<k>', 'mps' or another device torch reports available"


def _available(dev: torch.device) -> bool:
    """Whether torch can put tensors on ``dev`` in this process."""
    if dev.type == "cpu":
        return True
    if dev.type == "cuda":
        return torch.cuda.is_available() and (
            dev.index is None or dev.index < torch.cuda.device_count()
        )
    if dev.type == "mps":
        return bool(torch.backends.mps.is_available())
    # another accelerator (xpu, ...) with its own torch module; 'meta' holds no data
    is_available = getattr(getattr(torch, dev.type, None), "is_available", None)
    try:
        return bool(is_available()) if callable(is_available) else False
    except (RuntimeError, AssertionError):  # torch built without it
        return False


def check_device(device: object) -> str | torch.device:
    """``"auto"``, ``"cpu"``, ``"cuda[:k]"``, ``"mps"`` (these are checked for availability
    at fit and load: :func:`resolve_device`), or another device torch reports available in
    this process, else an error naming ``device``."""
    if device == "auto":
        return "auto"
    try:
        dev = torch.device(device)  # type: ignore[call-overload]
    except (RuntimeError, TypeError, ValueError):
        raise invalid("device", _DEVICE_TEXT, device) from None
    if dev.type not in _KNOWN_DEVICES and not _available(dev):
        raise invalid("device", _DEVICE_TEXT, f"{device!r} (not available here)")
    return device  # type: ignore[return-value]


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device for ``device`` (``"auto"``: cuda, then mps, then the CPU), or an
    error naming ``device`` when torch cannot use it in this process."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(check_device(device))
    if not _available(dev):
        raise invalid("device", _DEVICE_TEXT, f"{device!r} (not available here)")
    return dev


def hidden_arg(hidden: object) -> tuple[int, ...]:
    """Hidden widths as a tuple of positive ints, or an error naming ``hidden``."""
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise InputTypeError(f"hidden: expected a sequence of positive ints, found {hidden!r}")
    return tuple(int_arg("hidden", h) for h in hidden)


def kernel_arg(kernel: object, latent_dim: int) -> KernelArg:
    """A kernel name (normalised), a Kernel, or a list of ``latent_dim`` of them; also the
    saved form ``get_config()`` gives (a dict), so ``GPVAE(**model.get_config())`` works."""
    if isinstance(kernel, Kernel):
        _check_time_kernel(kernel)
        return kernel
    if isinstance(kernel, Mapping):
        return kernel_arg(kernel_from_spec(kernel), latent_dim)
    if isinstance(kernel, (list, tuple)):
        if len(kernel) != latent_dim:
            raise ValidationError(
                f"kernel: expected one kernel per latent channel ({latent_dim}), found "
                f"{len(kernel)}"
            )
        for k in kernel:
            if isinstance(k, Kernel):
                _check_time_kernel(k)
        return [k if isinstance(k, Kernel) else kernel_key(k) for k in kernel]
    return kernel_key(kernel)


def _check_time_kernel(kernel: Kernel) -> None:
    """Refuse a kernel instance whose hyper-parameters fix an index of d > 1 dimensions (an
    ARD lengthscale of several values): the estimator's kernel acts on 1-D time (a spatial
    fit puts it beside its own kernel over space), and fit failed naming the internal
    ``x1``."""
    parts = kernel.terms if isinstance(kernel, (Sum, Product)) else [kernel]
    for part in parts:
        if isinstance(part, (Sum, Product)):
            _check_time_kernel(part)
            continue
        d = getattr(part, "input_dim", None)
        if d is not None and d != 1:
            raise ShapeError(
                f"kernel: expected a kernel over 1-D time (one lengthscale), found "
                f"{type(part).__name__} with input dimension {d} (e.g. {d} ARD lengthscales); "
                f"give it one lengthscale"
            )


#: The named encoders that read a series' rows by position, not by time
#: (:class:`~gpvae.nets.ConvEncoder`, :class:`~gpvae.nets.GRUEncoder`).
POSITIONAL_ENCODERS = ("conv", "gru")
#: A series is irregular for them when its largest gap between consecutive times is more
#: than this many times its median gap: such a gap is read as a single step.
POSITIONAL_GAP_RATIO = 4.0


def warn_positional_encoder(encoder: object, data: SeriesSet, stacklevel: int = 2) -> None:
    """Warn when an encoder of :data:`POSITIONAL_ENCODERS` is fitted on series with
    irregular times (:data:`POSITIONAL_GAP_RATIO`), naming the encoder, how many series and
    the largest gap; ``stacklevel`` as in ``warnings.warn`` from the caller of this."""
    if not isinstance(encoder, str) or encoder not in POSITIONAL_ENCODERS:
        return
    irregular: list[tuple[float, int]] = []  # (largest gap / median gap, series)
    for i, t in enumerate(data.times):
        gaps = np.diff(np.sort(np.asarray(t, dtype=np.float64)))
        gaps = gaps[gaps > 0]
        if gaps.size >= 2:
            ratio = float(gaps.max() / np.median(gaps))
            if ratio > POSITIONAL_GAP_RATIO:
                irregular.append((ratio, i))
    if not irregular:
        return
    ratio, worst = max(irregular, key=lambda r: r[0])  # the first of the largest
    how = (
        "a convolution over neighbouring rows"
        if encoder == "conv"
        else "a recurrent pass from row to row"
    )
    warnings.warn(
        f"encoder: {encoder!r} reads a series' rows by position, not by time ({how}, as "
        f"if they were equally spaced), found irregular times: in {len(irregular)} of "
        f"{data.num_series} series the largest gap is more than {POSITIONAL_GAP_RATIO:g} "
        f"times the median spacing (up to {ratio:.3g} times, in {data.series_label(worst)}), "
        "and such a gap is read as one step; use encoder='mlp' or 'partial' (they read each "
        "point alone and leave the times to the GP), or give the series on a regular grid "
        "(rows of NaN at the missing times)",
        UserWarning,
        stacklevel=stacklevel + 1,
    )
