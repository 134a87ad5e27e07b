"""Composable covariance functions with learnable, positive hyper-parameters."""

from __future__ import annotations

from gpvae.kernels.base import Kernel, Positive, Product, StateSpace, Sum

__all__ = ["Kernel", "Positive", "Product", "StateSpace", "Sum"]
