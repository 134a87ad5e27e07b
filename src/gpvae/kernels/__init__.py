"""Composable covariance functions with learnable, positive hyper-parameters.

``k1 + k2`` and ``k1 * k2`` build flat :class:`Sum` / :class:`Product` kernels; the Matern
kernels, the resonator form of the periodic kernel, and sums and products of them, on 1-D
inputs, also give a state-space form for the markov backend;
:func:`get_kernel` builds a kernel from its name.
"""

from __future__ import annotations

from gpvae.kernels.base import Kernel, Positive, Product, StateSpace, Sum, inv_softplus
from gpvae.kernels.matern import Matern12, Matern32, Matern52
from gpvae.kernels.periodic import HarmonicPeriodic
from gpvae.kernels.registry import (
    KernelArg,
    available_kernels,
    build_kernel,
    get_kernel,
    has_finite_rank,
    has_state_space,
    kernel_from_spec,
    kernel_key,
    kernel_names,
    kernel_spec,
    num_periods,
    parse_kernel_name,
    register_kernel,
)
from gpvae.kernels.spacetime import SpaceTime
from gpvae.kernels.stationary import (
    RBF,
    Cauchy,
    Periodic,
    RationalQuadratic,
    Stationary,
)
from gpvae.kernels.trend import Trend
from gpvae.kernels.white import White

__all__ = [
    "RBF",
    "Cauchy",
    "HarmonicPeriodic",
    "Kernel",
    "KernelArg",
    "Matern12",
    "Matern32",
    "Matern52",
    "Periodic",
    "Positive",
    "Product",
    "RationalQuadratic",
    "SpaceTime",
    "StateSpace",
    "Stationary",
    "Sum",
    "Trend",
    "White",
    "available_kernels",
    "build_kernel",
    "get_kernel",
    "has_finite_rank",
    "has_state_space",
    "inv_softplus",
    "kernel_from_spec",
    "kernel_key",
    "kernel_names",
    "kernel_spec",
    "num_periods",
    "parse_kernel_name",
    "register_kernel",
]
