"""The command line's choices from the registries, without importing them.

``gpvae fit --help`` lists the kernel, encoder, decoder and likelihood names, and
``gpvae fit --kernel X`` checks ``X`` before any work; the registries that own the names
(:mod:`gpvae.kernels.registry`, :mod:`gpvae.nets.registry`, :mod:`gpvae.likelihoods`) and the
patterns of :mod:`gpvae.data.holdout` import torch (seconds), which a command's help and its
usage errors need not pay. This module holds their names, and keys that take and normalise
exactly the names the registries' keys do (:func:`gpvae.kernels.kernel_key`, ...);
tests/app/test_cli_startup.py checks both against the registries.
"""

from __future__ import annotations

from gpvae.arguments import check_name, normalise_name
from gpvae.errors import InputTypeError, ValidationError

__all__ = [
    "DECODER_NAMES",
    "ENCODER_NAMES",
    "HIDE_PATTERNS",
    "KERNEL_ALIASES",
    "KERNEL_NAMES",
    "LIKELIHOOD_ALIASES",
    "LIKELIHOOD_NAMES",
    "MASK_PATTERNS",
    "decoder_key",
    "encoder_key",
    "kernel_key",
    "likelihood_key",
]

#: :func:`gpvae.kernels.kernel_names`: the kernel names without aliases, sorted.
KERNEL_NAMES = (
    "cauchy",
    "matern12",
    "matern32",
    "matern52",
    "periodic",
    "periodic_exact",
    "rbf",
    "rq",
    "trend",
    "white",
)
#: The kernel registry's aliases (:func:`gpvae.kernels.available_kernels` less the names).
KERNEL_ALIASES = ("exponential", "rational_quadratic", "se")
#: :func:`gpvae.likelihoods.likelihood_names`, in the registry's order.
LIKELIHOOD_NAMES = (
    "gaussian",
    "gaussian_hetero",
    "gaussian_gp",
    "gaussian_gp_per_feature",
    "student_t",
    "bernoulli",
)
#: The likelihood registry's aliases, alias -> name.
LIKELIHOOD_ALIASES = {"studentt": "student_t"}
#: :func:`gpvae.nets.registry.encoder_names`, in the registry's order.
ENCODER_NAMES = ("mlp", "partial", "conv", "gru", "cnn")
#: :func:`gpvae.nets.registry.decoder_names`, in the registry's order.
DECODER_NAMES = ("mlp", "cnn")
#: :data:`gpvae.data.holdout.MASK_PATTERNS` (``fit --mask-pattern``).
MASK_PATTERNS = ("points", "blocks", "steps", "sites")
#: :data:`gpvae.data.holdout.HIDE_PATTERNS` (``fit --val-pattern``).
HIDE_PATTERNS = ("points", "blocks", "steps")


def _kernel_part(part: str, name: str) -> str:
    key = normalise_name(part)
    if key not in (*KERNEL_NAMES, *KERNEL_ALIASES):
        raise ValidationError(
            f"kernel: expected one of {', '.join(sorted((*KERNEL_NAMES, *KERNEL_ALIASES)))} (or "
            f"sums '+' and products '*' of them), found {part.strip()!r} in {name!r}"
        )
    return key


def kernel_key(name: object) -> str:
    """:func:`gpvae.kernels.kernel_key` of a name given on the command line: the registry key
    (aliases kept as given), a composite name normalised term by term
    (``"Matern32 + periodic"`` -> ``"matern32+periodic"``).

    Raises:
        InputTypeError: ``name`` is not a string.
        ValidationError: unknown name, or an empty term around ``+`` or ``*``.
    """
    if not isinstance(name, str):
        raise InputTypeError(f"kernel: expected a kernel name, found {type(name).__name__}")
    return "+".join(
        "*".join(_kernel_part(f, name) for f in term.split("*")) for term in name.split("+")
    )


def likelihood_key(name: object) -> str:
    """:func:`gpvae.likelihoods.likelihood_key`: the canonical likelihood name."""
    if isinstance(name, str):
        name = LIKELIHOOD_ALIASES.get(normalise_name(name), name)
    return check_name("likelihood", name, LIKELIHOOD_NAMES)


def encoder_key(name: object) -> str:
    """:func:`gpvae.nets.registry.encoder_key`: the normalised encoder name."""
    return check_name("encoder", name, ENCODER_NAMES)


def decoder_key(name: object) -> str:
    """:func:`gpvae.nets.registry.decoder_key`: the normalised decoder name."""
    return check_name("decoder", name, DECODER_NAMES)
