"""Build a :class:`~gpvae.model.GPVAEModel` from the estimator's names and numbers.

Names are looked up in small registries (:data:`ENCODERS`, :data:`DECODERS`,
:data:`LIKELIHOODS`; kernels through :func:`gpvae.kernels.get_kernel`, posteriors through
:func:`gpvae.posteriors.get_posterior`), and an unknown name raises a
:class:`~gpvae.errors.ValidationError` that names the argument and lists the options.

Kernel instances cannot be written to JSON as they are; :func:`kernel_spec` describes a
kernel of a registered class (its class name and the current values of its positive
hyper-parameters, which fix the parameter shapes) and :func:`kernel_from_spec` rebuilds it.
The learned values themselves travel in the model's weights.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
from torch import nn
from torch.nn.functional import softplus

from gpvae.errors import InputTypeError, ValidationError, invalid
from gpvae.gp.prior import BACKENDS, GPPrior
from gpvae.kernels import (
    RBF,
    Cauchy,
    Kernel,
    Matern12,
    Matern32,
    Matern52,
    Periodic,
    RationalQuadratic,
    White,
    available_kernels,
    get_kernel,
)
from gpvae.likelihoods import Bernoulli, Gaussian, GPNoiseGaussian, Likelihood, StudentT
from gpvae.model import GPVAEModel
from gpvae.nets import (
    ConvEncoder,
    ImageDecoder,
    ImageEncoder,
    MLPDecoder,
    MLPEncoder,
    PartialEncoder,
)
from gpvae.posteriors import get_posterior

__all__ = [
    "BACKEND_NAMES",
    "DECODERS",
    "DEFAULT_LENGTHSCALE",
    "ENCODERS",
    "LIKELIHOODS",
    "POSTERIORS",
    "build_kernel",
    "build_model",
    "check_kernel_name",
    "check_name",
    "float_arg",
    "int_arg",
    "kernel_from_spec",
    "kernel_spec",
]

#: Default initial lengthscale, in median time steps of the training data.
DEFAULT_LENGTHSCALE = 3.0

EncoderFactory = Callable[[int, int, Sequence[int], int], nn.Module]
DecoderFactory = Callable[[int, int, Sequence[int], int], nn.Module]


def _mlp_encoder(D: int, L: int, hidden: Sequence[int], num_outputs: int) -> nn.Module:
    return MLPEncoder(D, L, hidden=tuple(hidden), num_outputs=num_outputs)


def _partial_encoder(D: int, L: int, hidden: Sequence[int], num_outputs: int) -> nn.Module:
    if num_outputs != 2:
        raise ValidationError(
            "encoder: expected 'mlp' or 'conv' for posterior='banded' (it needs a third "
            "output), found 'partial'"
        )
    return PartialEncoder(D, L, hidden=tuple(hidden))


def _conv_encoder(D: int, L: int, hidden: Sequence[int], num_outputs: int) -> nn.Module:
    channels = hidden[0] if hidden else 64
    return ConvEncoder(D, L, channels=channels, hidden=tuple(hidden[1:]), num_outputs=num_outputs)


def square_image_shape(D: int, name: str) -> tuple[int, int]:
    """(H, W) of a square image with D = H * W pixels, or a ValidationError naming ``name``."""
    side = math.isqrt(D)
    if side * side != D:
        raise ValidationError(
            f"{name}: 'cnn' expected frames of a square image flattened to D = H * W features, "
            f"found D = {D}; pass an ImageEncoder / ImageDecoder module for other shapes"
        )
    return side, side


def _cnn_encoder(D: int, L: int, hidden: Sequence[int], num_outputs: int) -> nn.Module:
    width = hidden[0] if hidden else 256
    shape = square_image_shape(D, "encoder")
    return ImageEncoder(shape, L, hidden=width, num_outputs=num_outputs)


def _cnn_decoder(L: int, D: int, hidden: Sequence[int], num_params: int) -> nn.Module:
    width = hidden[0] if hidden else 256
    return ImageDecoder(L, square_image_shape(D, "decoder"), hidden=width, num_params=num_params)


def _mlp_decoder(L: int, D: int, hidden: Sequence[int], num_params: int) -> nn.Module:
    return MLPDecoder(L, D, hidden=tuple(reversed(tuple(hidden))), num_params=num_params)


#: Encoders by name: ``factory(num_features, latent_dim, hidden, num_outputs)``.
ENCODERS: dict[str, EncoderFactory] = {
    "mlp": _mlp_encoder,
    "partial": _partial_encoder,
    "conv": _conv_encoder,
    "cnn": _cnn_encoder,
}
#: Decoders by name: ``factory(latent_dim, num_features, hidden, num_params)``.
DECODERS: dict[str, DecoderFactory] = {"mlp": _mlp_decoder, "cnn": _cnn_decoder}
#: Likelihoods by name: ``cls(num_features=D)``.
LIKELIHOODS: dict[str, Callable[..., Likelihood]] = {
    "gaussian": Gaussian,
    "gaussian_hetero": partial(Gaussian, heteroscedastic=True),
    "gaussian_gp": GPNoiseGaussian,
    "student_t": StudentT,
    "bernoulli": Bernoulli,
}
#: Posterior family names (see :func:`gpvae.posteriors.get_posterior`).
POSTERIORS = ("structured", "banded", "diagonal")
#: GP backend names.
BACKEND_NAMES = ("auto", *BACKENDS)

_KERNEL_CLASSES: dict[type, str] = {
    RBF: "rbf",
    Matern12: "matern12",
    Matern32: "matern32",
    Matern52: "matern52",
    Cauchy: "cauchy",
    RationalQuadratic: "rq",
    Periodic: "periodic",
    White: "white",
}


def int_arg(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` as an int >= ``minimum`` or raise a GPVAEError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name}: expected an integer >= {minimum}, found {value!r}")
    if value < minimum:
        raise invalid(name, f"an integer >= {minimum}", value)
    return int(value)


def physical_memory() -> int | None:
    """Bytes of physical memory on this machine, or None where the OS does not report it."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return pages * size if pages > 0 and size > 0 else None


def check_memory(names: str, nbytes: float, what: str) -> None:
    """Raise a ValidationError naming ``names`` when ``nbytes`` exceed physical memory.

    Called before large work (``what`` describes it) so that an absurd request fails at
    once with a message that names the arguments, not with a MemoryError half-way through.
    """
    limit = physical_memory()
    if limit is not None and nbytes > limit:
        raise ValidationError(
            f"{names}: expected values whose working memory fits in this machine's "
            f"{limit / 2**30:.1f} GiB, found {what}, about {nbytes / 2**30:.3g} GiB"
        )


def float_arg(name: str, value: object, *, positive: bool = True) -> float:
    """A finite number, > 0 (``positive``) or >= 0, or a GPVAEError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name}: expected a number, found {value!r}")
    v = float(value)
    if not math.isfinite(v) or (v <= 0 if positive else v < 0):
        raise invalid(name, "a finite number " + ("> 0" if positive else ">= 0"), value)
    return v


def check_name(argument: str, value: object, options: Sequence[str]) -> str:
    """Normalise a registry name (lower case, ``-`` -> ``_``) or raise naming ``argument``."""
    if not isinstance(value, str):
        raise InputTypeError(
            f"{argument}: expected one of {', '.join(map(repr, options))}, found "
            f"{type(value).__name__}"
        )
    key = value.strip().lower().replace("-", "_")
    if key == "studentt":
        key = "student_t"
    if key not in options:
        raise ValidationError(
            f"{argument}: expected one of {', '.join(map(repr, options))}, found {value!r}"
        )
    return key


def check_kernel_name(value: str) -> str:
    """Raise the registry's error for an unknown kernel name; return the name."""
    key = value.strip().lower().replace("-", "_")
    if key not in available_kernels():
        get_kernel(value)  # raises a ValidationError naming ``kernel`` with the options
    return key


def build_kernel(kernel: str | Kernel, lengthscale: float | None) -> Kernel:
    """The kernel for standardised times (unit = one median time step).

    Args:
        kernel: a registered name, or a Kernel (deep-copied; its hyper-parameters are taken
            as given, in time steps).
        lengthscale: initial lengthscale in time steps for a named kernel (None: the default
            :data:`DEFAULT_LENGTHSCALE`; ignored by kernels without a lengthscale).
    """
    if isinstance(kernel, Kernel):
        return copy.deepcopy(kernel)
    key = check_kernel_name(kernel)
    probe = get_kernel(key)
    if hasattr(probe, "raw_lengthscale"):
        value = DEFAULT_LENGTHSCALE if lengthscale is None else float(lengthscale)
        return get_kernel(key, lengthscale=value)
    return probe


def _positive_values(kernel: Kernel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, param in kernel.named_parameters(recurse=False):
        if name.startswith("raw_"):
            value = softplus(param.detach().double().cpu())
            out[name[4:]] = float(value) if value.ndim == 0 else value.tolist()
    return out


def kernel_spec(kernel: str | Kernel) -> dict[str, Any]:
    """A JSON description of ``kernel``, for saving the estimator's configuration.

    Raises:
        ValidationError: naming ``kernel`` when it is an instance of a class that cannot be
            rebuilt from JSON (sums, products, user-defined kernels).
    """
    if isinstance(kernel, str):
        return {"name": kernel}
    cls = type(kernel)
    if cls not in _KERNEL_CLASSES:
        raise ValidationError(
            f"kernel: expected a kernel name or an instance of a registered kernel class "
            f"({', '.join(sorted(c.__name__ for c in _KERNEL_CLASSES))}) to save the model, "
            f"found {cls.__name__}; pass the kernel by name, or save the weights yourself"
        )
    params = _positive_values(kernel)
    if cls is White and getattr(kernel, "input_dim", None) is not None:
        params["input_dim"] = kernel.input_dim
    return {"name": _KERNEL_CLASSES[cls], "params": params}


def kernel_from_spec(spec: Mapping[str, Any]) -> str | Kernel:
    """Inverse of :func:`kernel_spec`: a name, or a kernel of the recorded class and shapes."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ValidationError(f"kernel: expected a saved kernel spec with a name, found {spec!r}")
    if "params" not in spec:
        return str(spec["name"])
    params = spec["params"]
    if not isinstance(params, Mapping):
        raise ValidationError(f"kernel: expected saved parameters as an object, found {params!r}")
    return get_kernel(str(spec["name"]), **dict(params))


def build_model(
    *,
    num_features: int,
    latent_dim: int,
    kernel: str | Kernel,
    posterior: str,
    backend: str,
    likelihood: str,
    encoder: str | nn.Module,
    decoder: str | nn.Module,
    hidden: Sequence[int],
    beta: float,
    lengthscale: float | None,
) -> GPVAEModel:
    """Assemble encoder, posterior family, GP prior, decoder and likelihood.

    Module arguments (``encoder``, ``decoder``) are deep-copied so that every fit starts from
    the same initial weights and the caller's modules are never trained in place.

    Returns:
        The model (float32, on the CPU).
    """
    family = get_posterior(posterior)
    lik = LIKELIHOODS[likelihood](num_features=num_features)
    if isinstance(encoder, nn.Module):
        enc = copy.deepcopy(encoder)
    else:
        enc = ENCODERS[encoder](num_features, latent_dim, hidden, family.num_encoder_outputs)
    if isinstance(decoder, nn.Module):
        dec = copy.deepcopy(decoder)
    else:
        dec = DECODERS[decoder](latent_dim, num_features, hidden, lik.num_params)
    prior = GPPrior(build_kernel(kernel, lengthscale), latent_dim, backend=backend)
    if not math.isfinite(beta):
        raise ValidationError(f"beta: expected a finite number, found {beta}")
    return GPVAEModel(enc, family, prior, dec, lik, beta=beta)
