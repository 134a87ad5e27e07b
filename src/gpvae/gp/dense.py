"""Dense (Cholesky) GP backend: any kernel, any index dimension, O(N^3) per channel.

The pseudo-observations enter through their precisions ``W = 1 / var`` (0 where a point is
excluded, ``var = +inf``, or is padding), which excludes those points exactly. With
``S = W^1/2`` and the well-conditioned ``B = I + S K S`` (Rasmussen & Williams, "Gaussian
Processes for Machine Learning", 2006, Alg. 3.2 and sec. 3.4.3), over the included points

    (K + V)^-1 = S B^-1 S,     log|K + V| = log|B| + sum log var,

and the posterior of f at any points x* is

    mean* = K*^T S B^-1 S m,   cov* = K** - K*^T S B^-1 S K*.

Every (series, channel) pair is one batched Cholesky of B; the only Python loop is over the
L channel kernels that build K.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from gpvae import settings
from gpvae.errors import InputTypeError, NumericalError, ShapeError, invalid
from gpvae.gp.base import GPPosterior
from gpvae.gp.checks import check_condition_inputs, check_index_points, check_num_samples
from gpvae.gp.linalg import jittered_cholesky
from gpvae.kernels.base import Kernel
from gpvae.rng import batch_normal

__all__ = ["DenseGPPosterior", "stacked_covariance"]


def stacked_covariance(kernels: Sequence[Kernel], x1: Tensor, x2: Tensor | None = None) -> Tensor:
    """One kernel matrix per channel.

    Args:
        kernels: L kernels.
        x1: (B, N, d) index points.
        x2: (B, M, d) index points, or None for ``x1``.

    Returns:
        (B, L, N, M) covariances (M = N when ``x2`` is None), in the dtype of ``x1``.
    """
    return torch.stack([k(x1, x2) for k in kernels], dim=1).to(x1.dtype)


def _stacked_diag(kernels: Sequence[Kernel], x: Tensor) -> Tensor:
    """(B, N, d) -> (B, L, N) prior variances k_l(x_n, x_n), in the dtype of ``x``."""
    return torch.stack([k(x, diag=True) for k in kernels], dim=1).to(x.dtype)


class DenseGPPosterior(GPPosterior):
    """Exact GP posterior by Cholesky factorisation, for any kernel and index dimension.

    Points with ``var = +inf`` and padding (``valid`` False) are excluded exactly. At padding
    points, the outputs are a placeholder, finite and independent of everything else:
    marginals (0, 1) and standard-normal samples; mask them with ``valid``.

    Args:
        kernels: L kernels, one per channel.
        x: (B, N, d) or (B, N) index points.
        mean: (B, N, L) pseudo-observation means (stored with zeros where not included).
        var: (B, N, L) pseudo-observation variances (> 0, or +inf to exclude a point).
        valid: (B, N) bool, False for padding, or None (no padding).
        jitter: diagonal jitter added to covariances before the Cholesky used for sampling
            (None: :data:`gpvae.settings.JITTER`).
    """

    def __init__(
        self,
        kernels: Sequence[Kernel],
        x: Tensor,
        mean: Tensor,
        var: Tensor,
        valid: Tensor | None = None,
        jitter: float | None = None,
    ) -> None:
        self.kernels = list(kernels)
        if not self.kernels:
            raise invalid("kernels", "one kernel per latent channel", "an empty sequence")
        if jitter is None:
            jitter = settings.JITTER
        if not math.isfinite(jitter) or jitter <= 0:
            raise invalid("jitter", "a finite positive float", repr(jitter))
        x, valid = check_condition_inputs(x, mean, var, valid, len(self.kernels))
        included = torch.isfinite(var) & valid[..., None]  # (B, N, L)
        # ``mean`` may hold anything (even NaN) where a point is not included: store zeros
        # there so that no later product (e.g. in ``kl``) can carry a NaN into a gradient.
        mean = torch.where(included, mean, torch.zeros_like(mean))
        self.x, self.mean, self.var, self.valid = x, mean, var, valid
        self.jitter = jitter

        # Padding x may be anything (even NaN): evaluate the kernel there at a harmless 0.
        self._x_safe = torch.where(valid[..., None], x, torch.zeros_like(x))  # (B, N, d)
        # W^1/2 and log var without ever touching +inf (so gradients stay finite).
        safe_var = torch.where(included, var, torch.ones_like(var))  # (B, N, L)
        self._sqrt_w = torch.where(
            included, torch.rsqrt(safe_var), torch.zeros_like(var)
        ).transpose(1, 2)  # (B, L, N)
        self._sum_log_var = torch.where(included, torch.log(safe_var), torch.zeros_like(var)).sum(
            dim=1
        )  # (B, L)
        self._num_included = included.sum(dim=1).to(var.dtype)  # (B, L)
        m = mean.transpose(1, 2)  # (B, L, N)

        self._K = stacked_covariance(self.kernels, self._x_safe)  # (B, L, N, N)
        s = self._sqrt_w
        b_mat = self._K * (s[..., :, None] * s[..., None, :])  # (B, L, N, N)
        b_mat.diagonal(dim1=-2, dim2=-1).add_(1.0)  # I + S K S, in place to save an N x N
        chol, info = torch.linalg.cholesky_ex(b_mat)
        if bool(info.any()):
            raise NumericalError(
                "kernel: Cholesky of I + W^1/2 K W^1/2 failed (the kernel matrix is not "
                "positive semi-definite or holds NaN; check the hyper-parameters)"
            )
        self._chol_b = chol  # (B, L, N, N)
        u = torch.linalg.solve_triangular(chol, (s * m)[..., None], upper=False)  # (B, L, N, 1)
        self._quad = (u.squeeze(-1) ** 2).sum(dim=-1)  # (B, L): m^T (K + V)^-1 m
        v = torch.linalg.solve_triangular(chol.transpose(-1, -2), u, upper=True)
        self._alpha = s * v.squeeze(-1)  # (B, L, N): (K + V)^-1 m

    # ------------------------------------------------------------------------------------
    @property
    def log_marginal(self) -> Tensor:
        """(B, L) log N(mean | 0, K + diag(var)) over the included points of each channel."""
        log_det_b = 2.0 * torch.log(torch.diagonal(self._chol_b, dim1=-2, dim2=-1)).sum(-1)
        return -0.5 * (
            self._quad
            + log_det_b
            + self._sum_log_var
            + self._num_included * math.log(2.0 * math.pi)
        )

    def _conditional(self, k_cross: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and the reduction term for targets with cross-covariance k_cross.

        Args:
            k_cross: (B, L, N, M) covariance between ``x`` and the targets.

        Returns:
            mean (B, L, M) and ``R`` (B, L, N, M) with ``R^T R = K*^T S B^-1 S K*``.
        """
        mean = (k_cross * self._alpha[..., None]).sum(dim=-2)  # (B, L, M)
        red = torch.linalg.solve_triangular(
            self._chol_b, self._sqrt_w[..., None] * k_cross, upper=False
        )  # (B, L, N, M)
        return mean, red

    def _mask_padding(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        """(B, L, N) marginals -> (B, N, L), with the (0, 1) placeholder at padding."""
        pad = ~self.valid[:, None, :]  # (B, 1, N)
        mean = torch.where(pad, torch.zeros_like(mean), mean)
        var = torch.where(pad, torch.ones_like(var), var)
        return mean.transpose(1, 2), var.transpose(1, 2)

    def marginals(self) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of f at ``x``: two (B, N, L) tensors.

        Variances are clamped at 0 from below (round-off only: they are >= 0 in exact
        arithmetic).
        """
        mean, red = self._conditional(self._K)
        var = torch.diagonal(self._K, dim1=-2, dim2=-1) - (red**2).sum(dim=-2)  # (B, L, N)
        return self._mask_padding(mean, var.clamp_min(0.0))

    def covariance(self) -> Tensor:
        """(B, L, N, N) posterior covariance of f at ``x`` (identity block at padding)."""
        _, red = self._conditional(self._K)
        cov = self._K - red.transpose(-1, -2) @ red  # (B, L, N, N)
        pair = (self.valid[:, :, None] & self.valid[:, None, :])[:, None]  # (B, 1, N, N)
        pad_eye = torch.diag_embed((~self.valid).to(cov.dtype))[:, None]  # (B, 1, N, N)
        cov = torch.where(pair, cov, torch.zeros_like(cov)) + pad_eye
        return 0.5 * (cov + cov.transpose(-1, -2))

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Joint posterior samples of f at ``x``, reparameterised: (S, B, N, L).

        Drawn by Matheron's rule (pathwise conditioning): a prior draw ``f_p ~ N(0, K)`` and
        pseudo-noise ``e ~ N(0, V)`` give the posterior draw
        ``f_p + K (K + V)^-1 (mean - f_p - e)``. Only the prior covariance is factorised, never
        the posterior one, which is close to singular whenever the pseudo-observations are
        precise. Padding points get independent standard-normal draws (placeholders).
        """
        check_num_samples(num_samples)
        return self._pathwise(num_samples, generator).permute(0, 1, 3, 2)  # (S, B, N, L)

    def _pathwise(self, num_samples: int, generator: torch.Generator | None) -> Tensor:
        """Matheron's rule at ``x``: (S, B, L, N) posterior draws."""
        B, L, N, _ = self._K.shape
        # Padding points (x set to 0) would make K singular: give them an identity block, so
        # their prior draws are independent standard normals (the documented placeholder).
        pair = (self.valid[:, :, None] & self.valid[:, None, :])[:, None]  # (B, 1, N, N)
        pad_eye = torch.diag_embed((~self.valid).to(self._K.dtype))[:, None]  # (B, 1, N, N)
        cov = torch.where(pair, self._K, torch.zeros_like(self._K)) + pad_eye
        scale = jittered_cholesky(cov, self.jitter, "prior covariance")  # (B, L, N, N)
        dtype, device = cov.dtype, cov.device
        eps = batch_normal((num_samples, B, L, N, 1), 1, generator, dtype, device)
        noise = batch_normal((num_samples, B, L, N), 1, generator, dtype, device)
        prior = (scale @ eps).squeeze(-1)  # (S, B, L, N)
        s = self._sqrt_w  # (B, L, N), zero where not included
        m = self.mean.transpose(1, 2)  # (B, L, N), zero where not included
        # W^1/2 (mean - f_p - e); the pseudo-noise term W^1/2 sqrt(var) noise is just noise.
        resid = s * (m - prior) - torch.where(s > 0, noise, torch.zeros_like(noise))
        v = torch.cholesky_solve(resid[..., None], self._chol_b).squeeze(-1)  # B^-1 (...)
        correction = (self._K @ (s * v)[..., None]).squeeze(-1)  # K (K + V)^-1 (...)
        # padding is decoupled from the data: its draws stay the prior's placeholders
        return prior + torch.where(self.valid[:, None, :], correction, torch.zeros_like(correction))

    def predict(self, x_new: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of f at ``x_new``.

        Args:
            x_new: (B, M, d) or (B, M) new index points (finite).

        Returns:
            mean and variance, two (B, M, L) tensors.
        """
        x_new = self._check_new(x_new)
        mean, red = self._conditional(stacked_covariance(self.kernels, self._x_safe, x_new))
        var = _stacked_diag(self.kernels, x_new) - (red**2).sum(dim=-2)  # (B, L, M)
        return mean.transpose(1, 2), var.clamp_min(0.0).transpose(1, 2)

    def sample_at(
        self, x_new: Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Joint posterior samples of f at ``x_new``, reparameterised.

        Args:
            x_new: (B, M, d) or (B, M) new index points (finite).
            num_samples: S.
            generator: source of randomness, or None for the global one.

        Returns:
            (S, B, M, L) samples.
        """
        check_num_samples(num_samples)
        x_new = self._check_new(x_new)
        mean, red = self._conditional(stacked_covariance(self.kernels, self._x_safe, x_new))
        cov = stacked_covariance(self.kernels, x_new) - red.transpose(-1, -2) @ red
        cov = 0.5 * (cov + cov.transpose(-1, -2))  # (B, L, M, M)
        scale = jittered_cholesky(cov, self.jitter, "posterior covariance at x_new")
        eps = torch.randn(
            (num_samples, *mean.shape, 1), generator=generator, dtype=mean.dtype, device=mean.device
        )
        draws = mean + (scale @ eps).squeeze(-1)  # (S, B, L, M)
        return draws.permute(0, 1, 3, 2)

    def _check_new(self, x_new: Tensor) -> Tensor:
        """Check new index points against ``x``: (B, M, d) or (B, M) -> (B, M, d)."""
        x_new, _ = check_index_points(x_new, None, "x_new")
        B, _, d = self.x.shape
        if x_new.shape[0] != B or x_new.shape[2] != d:
            raise ShapeError(
                f"x_new: expected shape ({B}, M, {d}) to match x, found {tuple(x_new.shape)}"
            )
        if x_new.dtype != self.x.dtype or x_new.device != self.x.device:
            raise InputTypeError(
                f"x_new: expected dtype {self.x.dtype} on {self.x.device} (those of x), "
                f"found {x_new.dtype} on {x_new.device}"
            )
        return x_new
