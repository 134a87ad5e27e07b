"""Gaussian likelihood whose per-feature noise is itself a Gaussian process along the index.

The plain Gaussian likelihood treats every entry's deviation from the decoder as independent
noise, so all temporal structure must pass through the L latent channels; with many features
and few channels, the idiosyncratic dynamics of each feature (which make linear
interpolation a strong imputer) are lost. Here, for feature d of a series,

    y_{n,d} = f_d(z_n) + a_d g_d(x_n) + eps_{n,d},   g_d ~ GP(0, k),   eps ~ N(0, s2_d),

with one unit-variance kernel k shared by the features (its lengthscale is learned), a
per-feature amplitude a_d and white-noise variance s2_d, and g_d independent across features
and series. Given z, the observed entries of one feature are jointly Gaussian:
``r = y_obs - f_obs ~ N(0, a_d^2 K + s2_d I)``. Its log density is the log marginal
likelihood of the GP g_d with pseudo-observations ``r / a_d`` of variance ``s2_d / a_d^2``,
minus ``n_obs log a_d`` (the change of variables), so it costs what the GP backend costs
(O(N) per feature with the markov backend). Missing entries are predicted by conditioning
g_d on the observed residuals of the same feature: :meth:`GPNoiseGaussian.conditional` gives
``E[y | y_obs, z] = f + a m_g`` and ``Var[y | y_obs, z] = a^2 v_g + s2`` at every entry.

The per-entry methods of :class:`~gpvae.likelihoods.base.Likelihood` (``mean``,
``variance``, ``sample``, ``log_prob_entries``) use the *marginal* of one entry, N(f, a^2 +
s2), since they see no other entry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.functional import softplus

from gpvae import settings
from gpvae.errors import InputTypeError, ShapeError, ValidationError
from gpvae.gp.base import GPPosterior
from gpvae.gp.prior import GPPrior
from gpvae.kernels import Kernel, Matern32
from gpvae.kernels.base import inv_softplus
from gpvae.likelihoods.base import Likelihood, Params, check_num_features, check_positive
from gpvae.rng import gaussian_draws

__all__ = ["GPNoiseGaussian"]

_LOG_2PI = math.log(2.0 * math.pi)


class GPNoiseGaussian(Likelihood):
    """Gaussian likelihood with per-feature GP-correlated noise (see the module docstring).

    Args:
        num_features: D.
        kernel: the unit-variance kernel of the noise processes (its ``variance`` is frozen
            at 1); default Matern32 with lengthscale :data:`gpvae.settings.DEFAULT_LENGTHSCALE`
            (in the index's units).
        amplitude: initial a_d (the same for every feature).
        variance: initial white-noise variance s2_d.
        min_variance: floor added to s2_d.
        backend: GP backend of the noise processes (``"auto"``, ``"markov"``, ``"dense"``).
        per_feature_kernel: give every feature its own copy of ``kernel`` (own lengthscale)
            instead of one kernel shared by all features.

    Attributes:
        needs_index: True: :meth:`log_prob` needs the index points and padding mask.
    """

    num_params = 1
    needs_index = True
    location_first = True

    def __init__(
        self,
        num_features: int | None = None,
        kernel: Kernel | None = None,
        amplitude: float = 0.5,
        variance: float = 0.1,
        min_variance: float = 1e-4,
        backend: str = "auto",
        per_feature_kernel: bool = False,
    ) -> None:
        super().__init__()
        check_num_features(num_features)
        if num_features is None:
            raise ValidationError(
                "num_features: expected a positive integer for GPNoiseGaussian (per-feature "
                "amplitudes and variances), found None"
            )
        if kernel is None:
            kernel = Matern32(lengthscale=settings.DEFAULT_LENGTHSCALE)
        if not isinstance(kernel, Kernel):
            raise InputTypeError(f"kernel: expected a Kernel, found {type(kernel).__name__}")
        if hasattr(kernel, "raw_variance"):
            kernel.variance = 1.0  # type: ignore[assignment]
            kernel.freeze("variance")
        if min_variance < 0:
            raise ValidationError(f"min_variance: expected >= 0, found {min_variance!r}")
        v = check_positive("variance", variance)
        if v <= min_variance:
            raise ValidationError(
                f"variance: expected a value above min_variance={min_variance}, found {variance!r}"
            )
        a = check_positive("amplitude", amplitude)
        self.num_features = num_features
        self.min_variance = float(min_variance)
        self.per_feature_kernel = bool(per_feature_kernel)
        self.gp = GPPrior(kernel, num_features if self.per_feature_kernel else 1, backend=backend)
        self.raw_amplitude = nn.Parameter(inv_softplus(torch.full((num_features,), a)))
        raw_var = inv_softplus(torch.full((num_features,), v - min_variance))
        self.raw_variance = nn.Parameter(raw_var)

    # ---------------------------------------------------------------- parameters

    def amplitude(self) -> Tensor:
        """a_d, (D,)."""
        return softplus(self.raw_amplitude)

    def feature_variance(self) -> Tensor:
        """s2_d, the white-noise variance, (D,)."""
        return softplus(self.raw_variance) + self.min_variance

    def _marginal_var(self) -> Tensor:
        return self.amplitude() ** 2 + self.feature_variance()

    # ---------------------------------------------------------------- per-entry marginals

    def log_prob_entries(self, params: Params, y: Tensor) -> Tensor:
        (f,) = self.split(params)
        var = self._marginal_var()
        return -0.5 * (_LOG_2PI + torch.log(var) + (y - f) ** 2 / var)

    def mean(self, params: Params) -> Tensor:
        (f,) = self.split(params)
        return f

    def variance(self, params: Params) -> Tensor:
        (f,) = self.split(params)
        return self._marginal_var().expand_as(f)

    def sample(self, params: Params, generator: torch.Generator | None = None) -> Tensor:
        (f,) = self.split(params)
        eps = torch.randn(f.shape, generator=generator, dtype=f.dtype, device=f.device)
        return f + self._marginal_var().sqrt() * eps

    # ---------------------------------------------------------------- joint over the index

    def _chains(self, t: Tensor) -> Tensor:
        """(S, B, N, D) -> the backend's layout: (S B, N, D) per-feature, else (S B D, N, 1)."""
        S, B, N, D = t.shape
        if self.per_feature_kernel:
            return t.reshape(S * B, N, D)
        return t.permute(0, 1, 3, 2).reshape(S * B * D, N, 1)

    def _unchain(self, c: Tensor, lead: tuple[int, ...], B: int, D: int) -> Tensor:
        """Inverse of :meth:`_chains`: -> (*lead, B, N, D)."""
        N = c.shape[-2]
        if self.per_feature_kernel:
            return c.reshape(*lead, B, N, D)
        return c.reshape(*lead, B, D, N).transpose(-1, -2)

    def _chain_index(self, index: Tensor, S: int, D: int) -> Tensor:
        """(B, N, d) index points (or a (B, N, 1) mask) in the layout of :meth:`_chains`."""
        B, N, d = index.shape
        if self.per_feature_kernel:
            return index[None].expand(S, B, N, d).reshape(S * B, N, d)
        return index[None, :, None].expand(S, B, D, N, d).reshape(S * B * D, N, d)

    def _condition(
        self, f: Tensor, y: Tensor, observed: Tensor, index: Tensor, valid: Tensor | None
    ) -> tuple[GPPosterior, tuple[int, ...], Tensor]:
        """Condition every (sample, series, feature) noise process on its observed residuals.

        Returns the backend's posterior over S B D chains, the leading shape of ``f`` and
        the amplitudes.
        """
        if observed.dtype != torch.bool:
            raise InputTypeError(f"observed: expected a bool tensor, found {observed.dtype}")
        if observed.shape != y.shape or f.shape[-3:] != y.shape:
            raise ShapeError(
                f"observed: expected y, observed and the decoder output to share (B, N, D), "
                f"found {tuple(y.shape)}, {tuple(observed.shape)}, {tuple(f.shape)}"
            )
        B, N, D = y.shape
        if index.ndim == 2:
            index = index[..., None]
        if index.shape[:2] != (B, N):
            raise ShapeError(f"index: expected shape ({B}, {N}, d), found {tuple(index.shape)}")
        lead = tuple(f.shape[:-3])
        S = math.prod(lead)
        a = self.amplitude()  # (D,)
        s2 = self.feature_variance()  # (D,)
        y = torch.where(observed, y, torch.zeros_like(y))  # NaN-free where unobserved
        r = (y - f.reshape(S, B, N, D)) / a  # (S, B, N, D)
        var = torch.where(observed, s2 / a**2, torch.full_like(y, math.inf))  # (B, N, D)
        mean = self._chains(r)
        var_c = self._chains(var.expand(S, B, N, D))
        x = self._chain_index(index, S, D)
        valid_c = None
        if valid is not None:
            valid_c = self._chain_index(valid[..., None], S, D)[..., 0]
        return self.gp.condition(x, mean, var_c, valid_c), lead, a

    def log_prob(
        self,
        params: Params,
        y: Tensor,
        observed: Tensor,
        index: Tensor | None = None,
        valid: Tensor | None = None,
    ) -> Tensor:
        """Joint log density of the observed entries, summed over features: (...,).

        Args:
            params: decoder output f, (..., B, N, D).
            y: (B, N, D) values (any finite value where unobserved).
            observed: (B, N, D) bool.
            index: (B, N, d) index points (required).
            valid: (B, N) bool padding mask, or None.
        """
        if index is None:
            raise ValidationError(
                "index: GPNoiseGaussian.log_prob needs the index points of y (its noise is a "
                "GP along them), found None"
            )
        (f,) = self.split(params)
        post, lead, a = self._condition(f, y, observed, index, valid)
        B, _, D = y.shape
        lm = post.log_marginal.reshape(-1, B, D)
        n_obs = observed.sum(-2).to(lm.dtype)  # (B, D)
        lm = lm - n_obs * torch.log(a)
        return lm.sum(-1).reshape(*lead, B)

    def conditional(
        self,
        params: Params,
        y: Tensor,
        observed: Tensor,
        index: Tensor,
        valid: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Mean and variance of every entry of y given z and the observed entries.

        Returns:
            (mean, var), each shaped like the decoder output (..., B, N, D).
        """
        (f,) = self.split(params)
        post, lead, a = self._condition(f, y, observed, index, valid)
        B, _, D = y.shape
        m, v = (self._unchain(t, lead, B, D) for t in post.marginals())
        return f + a * m, a**2 * v + self.feature_variance()

    def predict(
        self,
        params: Params,
        y: Tensor,
        observed: Tensor,
        index: Tensor,
        new_params: Params,
        new_index: Tensor,
        valid: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Mean and variance of y at new index points given z there and the observed entries.

        Args:
            params: decoder output at the observed index points, (..., B, N, D).
            y, observed, index, valid: the history, as in :meth:`log_prob`.
            new_params: decoder output at the new points, (..., B, H, D).
            new_index: (B, H, d) new index points.

        Returns:
            (mean, var), each (..., B, H, D).
        """
        (f,) = self.split(params)
        (g,) = self.split(new_params)
        post, lead, a = self._condition(f, y, observed, index, valid)
        B, _, D = y.shape
        if new_index.ndim == 2:
            new_index = new_index[..., None]
        x_new = self._chain_index(new_index, math.prod(lead), D)
        m, v = (self._unchain(t, lead, B, D) for t in post.predict(x_new))
        return g + a * m, a**2 * v + self.feature_variance()

    def predictive_sample(
        self,
        params: Params,
        y: Tensor,
        observed: Tensor,
        index: Tensor,
        valid: Tensor,
        generators: Sequence[torch.Generator],
    ) -> tuple[Tensor, Tensor]:
        """Conditional mean and one Gaussian draw of every entry given z and the observed
        entries (:meth:`conditional`), series b's draws from ``generators[b]``."""
        m, v = self.conditional(params, y, observed, index, valid)
        lengths = [int(n) for n in valid.sum(dim=-1).tolist()]
        return m, gaussian_draws(m, v, generators, lengths)

    def log_predictive_entries(
        self,
        params: Params,
        y: Tensor,
        observed: Tensor,
        index: Tensor,
        valid: Tensor | None = None,
    ) -> Tensor:
        """Gaussian log density of every entry given z and the observed entries, float64."""
        m, v = (t.double() for t in self.conditional(params, y, observed, index, valid))
        return -0.5 * (math.log(2 * math.pi) + v.log() + (y.double() - m) ** 2 / v)

    def sample_path(
        self, params: Params, index: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draws of y at every entry with the noise drawn jointly along the index.

        Args:
            params: decoder output f, (S, B, N, D).
            index: (B, N, d) index points.
            generator: source of randomness.

        Returns:
            (S, B, N, D): ``f + a g + eps`` with one prior path g per (sample, series, feature).
        """
        (f,) = self.split(params)
        if f.ndim != 4:
            raise ShapeError(f"params: expected (S, B, N, D), found {tuple(f.shape)}")
        S, B, _, D = f.shape
        if index.ndim == 2:
            index = index[..., None]
        x = self._chain_index(index, S, D)
        g = self._unchain(self.gp.sample(x, 1, generator)[0], (S,), B, D)  # (S, B, N, D)
        eps = torch.randn(f.shape, generator=generator, dtype=f.dtype, device=f.device)
        return f + self.amplitude() * g + self.feature_variance().sqrt() * eps
