"""The GP prior over L independent latent channels, and the choice of backend.

``GPPrior`` holds one kernel per latent channel and hands the work to a backend:
``dense`` (Cholesky; any kernel, any index dimension, O(N^3)), ``markov`` (state-space
kernels on 1-D inputs, O(N)), ``spacetime`` (separable space x time kernels: Kalman along
time with the sites as the spatial block of the state, O(T S^3)) or ``sparse`` (M learnable
inducing sites, Kalman along time, O(T M^3 + T S M^2)). Backends are looked up in
:data:`BACKENDS`, a registry from name to a :class:`Backend`, so a new one is one entry, not
an ``if`` chain. ``backend="auto"`` picks by the kernels, the index dimension and
``inducing`` alone, never by size (:meth:`GPPrior.resolve_backend`).

Shapes: B series, N points, d index dimension, L channels, S samples.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from gpvae import settings
from gpvae.errors import InputTypeError, ValidationError, invalid
from gpvae.gp.base import GPPosterior
from gpvae.gp.checks import as_index_points, check_index_points, check_num_samples
from gpvae.gp.dense import DenseGPPosterior, stacked_covariance
from gpvae.gp.linalg import jittered_cholesky
from gpvae.gp.spacetime import SpaceTimeGPPosterior, spacetime_supported
from gpvae.kernels.base import Kernel
from gpvae.kernels.packing import pack_channels, pack_state_dict, unpack_state_dict
from gpvae.kernels.spacetime import SpaceTime

__all__ = ["BACKENDS", "Backend", "GPPrior", "adapt_state_dict", "backend_names"]


class Backend(NamedTuple):
    """How one backend conditions the prior and samples from it.

    Attributes:
        condition: ``(kernels, x, mean, var, valid, jitter) -> GPPosterior`` with x (B, N, d),
            mean and var (B, N, L), valid (B, N) bool; backends with ``needs_inducing`` also
            take the keyword ``inducing`` (M, d_s).
        sample_prior: ``(kernels, x, valid, num_samples, generator, jitter) -> (S, B, N, L)``.
        needs_state_space: the backend takes only kernels with a state-space form, on d = 1.
        needs_inducing: the backend needs the prior's inducing sites.
        spacetime: the backend takes SpaceTime kernels with state-space temporal parts (or
            purely spatial kernels), see :func:`gpvae.gp.spacetime.spacetime_supported`.
    """

    condition: Callable[..., GPPosterior]
    sample_prior: Callable[
        [Sequence[Kernel], Tensor, Tensor, int, torch.Generator | None, float], Tensor
    ]
    needs_state_space: bool
    needs_inducing: bool = False
    spacetime: bool = False


def _dense_sample_prior(
    kernels: Sequence[Kernel],
    x: Tensor,
    valid: Tensor,
    num_samples: int,
    generator: torch.Generator | None,
    jitter: float,
) -> Tensor:
    """Prior draws by Cholesky of K + jitter I; padding gets independent N(0, 1) draws."""
    x_safe = torch.where(valid[..., None], x, torch.zeros_like(x))  # (B, N, d)
    cov = stacked_covariance(kernels, x_safe)  # (B, L, N, N)
    pair = (valid[:, :, None] & valid[:, None, :])[:, None]  # (B, 1, N, N)
    pad_eye = torch.diag_embed((~valid).to(cov.dtype))[:, None]  # (B, 1, N, N)
    cov = torch.where(pair, cov, torch.zeros_like(cov)) + pad_eye
    scale = jittered_cholesky(cov, jitter, "prior covariance")  # (B, L, N, N)
    B, L, N = cov.shape[:3]
    z = torch.randn((num_samples, B, L, N, 1), generator=generator, dtype=x.dtype, device=x.device)
    return (scale @ z).squeeze(-1).permute(0, 1, 3, 2)  # (S, B, N, L)


def _markov_condition(
    kernels: Sequence[Kernel],
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    valid: Tensor | None,
    jitter: float,
) -> GPPosterior:
    """The markov posterior; ``jitter`` is not used (see :class:`GPPrior`)."""
    from gpvae.gp.markov import MarkovGPPosterior

    return MarkovGPPosterior(kernels, x, mean, var, valid)


def _markov_sample_prior(
    kernels: Sequence[Kernel],
    x: Tensor,
    valid: Tensor,
    num_samples: int,
    generator: torch.Generator | None,
    jitter: float,
) -> Tensor:
    """Markov prior draws; ``jitter`` is not used (see :class:`GPPrior`)."""
    from gpvae.gp.markov import sample_prior_markov

    return sample_prior_markov(kernels, x, valid, num_samples, generator)


def _spacetime_condition(
    kernels: Sequence[Kernel],
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    valid: Tensor | None,
    jitter: float,
    inducing: Tensor | None = None,
) -> GPPosterior:
    return SpaceTimeGPPosterior(kernels, x, mean, var, valid, inducing=inducing, jitter=jitter)


def _spacetime_sample_prior(
    kernels: Sequence[Kernel],
    x: Tensor,
    valid: Tensor,
    num_samples: int,
    generator: torch.Generator | None,
    jitter: float,
) -> Tensor:
    """Prior draws: the posterior with no pseudo-observation, sampled by the Kalman route."""
    B, N = valid.shape
    zeros = x.new_zeros(B, N, len(kernels))
    post = SpaceTimeGPPosterior(
        kernels, x, zeros, torch.full_like(zeros, math.inf), valid, jitter=jitter
    )
    return post.sample(num_samples, generator)


#: Registry of backends by name (``"auto"`` is resolved by :meth:`GPPrior.resolve_backend`).
BACKENDS: dict[str, Backend] = {
    "dense": Backend(DenseGPPosterior, _dense_sample_prior, needs_state_space=False),
    "markov": Backend(_markov_condition, _markov_sample_prior, needs_state_space=True),
    "spacetime": Backend(
        _spacetime_condition, _spacetime_sample_prior, needs_state_space=False, spacetime=True
    ),
    "sparse": Backend(
        _spacetime_condition,
        _spacetime_sample_prior,
        needs_state_space=False,
        needs_inducing=True,
        spacetime=True,
    ),
}


def adapt_state_dict(module: nn.Module, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A copy of ``state_dict`` with the kernel entries of every :class:`GPPrior` inside
    ``module`` in that prior's layout (:meth:`GPPrior.adapt_state_dict`): weights saved
    before the channel kernels were packed load into a model that packs them."""
    out = dict(state_dict)
    for name, sub in module.named_modules():
        if isinstance(sub, GPPrior):
            sub.adapt_state_dict(out, f"{name}." if name else "")
    return out


def backend_names() -> list[str]:
    """The backend names a :class:`GPPrior` accepts: ``"auto"`` and those of :data:`BACKENDS`."""
    return ["auto", *BACKENDS]


class GPPrior(nn.Module):
    """Independent GP priors over L latent channels, one kernel per channel.

    Args:
        kernel: a kernel, deep-copied per channel so that each channel learns its own
            hyper-parameters, or a sequence of ``latent_dim`` kernels (used as given).
        latent_dim: L, the number of latent channels.
        backend: ``"auto"`` (markov when every kernel has a state-space form and d == 1;
            spacetime when every kernel is a :class:`~gpvae.kernels.SpaceTime` kernel with a
            state-space temporal part; sparse when ``inducing`` is given; else dense), or a
            name in :data:`BACKENDS` (``"dense"``, ``"markov"``, ``"spacetime"``,
            ``"sparse"``).
        jitter: diagonal jitter of the dense and spacetime backends' Cholesky
            factorisations (None: :data:`gpvae.settings.JITTER`; multiplied by 10 on
            failure, with a warning, a few times before a NumericalError). ``dense``: those
            used to sample (the prior covariance, for prior draws and posterior draws by
            Matheron's rule; the posterior covariance at new points, for ``sample_at``); its
            conditioning (log-marginal, marginals, KL) factorises ``I + W^1/2 K W^1/2``
            without jitter. ``spacetime`` and ``sparse``: every factorisation that fails
            without it, the inducing sites' covariance, and sampling. ``markov`` ignores it
            (the same draws and values whatever it is): it factorises the stationary
            covariance Pinf without jitter and each step's process noise Q with its own
            relative jitter ``eps^(3/4) diag(Pinf)``, eps that of its working dtype
            (float64, about 2e-12 of the prior variance, except for float32 on mps), see
            :func:`gpvae.gp._kalman.process_noise_factors`.
        inducing: (M, d_s) initial inducing sites (the spatial columns of the index points),
            learned with the model; needed by (and only used by) the sparse backend, shared by
            every channel.
        pack_kernels: hold the channel kernels' hyper-parameters as one (L,) tensor per
            hyper-parameter (:mod:`gpvae.kernels.packing`; Matern kernels of one class with
            scalar hyper-parameters, else ignored): the same values and prior, fewer tensors
            for the optimiser (about 1.2 ms less per training step with 16 channels). A
            packed channel's hyper-parameters cannot be frozen on their own; False keeps a
            parameter per channel kernel.

    Example:
        >>> prior = GPPrior(Matern32(lengthscale=3.0), latent_dim=4)
        >>> post = prior.condition(x, mean, var, valid)   # x (B, N, 1), mean/var (B, N, 4)
        >>> loss = post.kl().sum()
    """

    def __init__(
        self,
        kernel: Kernel | Sequence[Kernel],
        latent_dim: int,
        backend: str = "auto",
        jitter: float | None = None,
        inducing: Tensor | None = None,
        pack_kernels: bool = True,
    ) -> None:
        super().__init__()
        if jitter is None:
            jitter = settings.JITTER
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int):
            raise InputTypeError(
                f"latent_dim: expected a positive int, found {type(latent_dim).__name__}"
            )
        if latent_dim < 1:
            raise invalid("latent_dim", "a positive int", latent_dim)
        if backend != "auto" and backend not in BACKENDS:
            names = ", ".join(repr(n) for n in ["auto", *BACKENDS])
            raise invalid("backend", f"one of {names}", repr(backend))
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not jitter > 0:
            raise invalid("jitter", "a positive float", repr(jitter))
        if jitter == float("inf"):
            raise invalid("jitter", "a finite positive float", repr(jitter))
        if not isinstance(pack_kernels, bool):
            raise InputTypeError(
                f"pack_kernels: expected a bool, found {type(pack_kernels).__name__}"
            )

        if isinstance(kernel, Kernel):
            kernels = [copy.deepcopy(kernel) for _ in range(latent_dim)]
        elif isinstance(kernel, (Sequence, nn.ModuleList)) and not isinstance(kernel, str):
            kernels = list(kernel)
            for k in kernels:
                if not isinstance(k, Kernel):
                    raise InputTypeError(
                        f"kernel: expected a Kernel or a sequence of Kernels, found an element "
                        f"of type {type(k).__name__}"
                    )
            if len(kernels) != latent_dim:
                raise ValidationError(
                    f"kernel: expected {latent_dim} kernels (one per latent channel, "
                    f"latent_dim={latent_dim}), found {len(kernels)}"
                )
        else:
            raise InputTypeError(
                f"kernel: expected a Kernel or a sequence of Kernels, found {type(kernel).__name__}"
            )
        if BACKENDS.get(backend, BACKENDS["dense"]).needs_state_space:
            for i, k in enumerate(kernels):
                if not k.has_state_space:
                    raise ValidationError(
                        f"kernel: backend={backend!r} needs kernels with a state-space form "
                        "(Matern12/32/52, Trend, HarmonicPeriodic, and sums and products of "
                        f"them), found {type(k).__name__} for "
                        f"channel {i}; use backend='dense' or 'auto'"
                    )

        if backend == "auto" and inducing is not None:
            backend = "sparse"
        if BACKENDS.get(backend, BACKENDS["dense"]).needs_inducing:
            if not isinstance(inducing, Tensor):
                raise InputTypeError(
                    f"inducing: backend={backend!r} needs an (M, d_s) tensor of initial inducing "
                    f"sites, found {type(inducing).__name__}"
                )
            if inducing.ndim != 2 or inducing.shape[0] < 1:
                raise ValidationError(
                    f"inducing: expected an (M, d_s) tensor with M >= 1, found shape "
                    f"{tuple(inducing.shape)}"
                )
            if not bool(torch.isfinite(inducing).all()):
                raise ValidationError("inducing: expected finite values, found NaN or Inf")
        elif inducing is not None:
            raise ValidationError(
                f"inducing: only the sparse backend takes inducing sites, found backend={backend!r}"
            )
        self.inducing: nn.Parameter | None = (
            nn.Parameter(inducing.detach().clone()) if inducing is not None else None
        )
        self.kernels = nn.ModuleList(kernels)
        #: the channels' raw hyper-parameters as (L,) tensors, or None (not packed)
        self.packed = pack_channels(kernels) if pack_kernels else None
        self.latent_dim = latent_dim
        self.backend = backend
        self.jitter = float(jitter)

    def extra_repr(self) -> str:
        extra = "" if self.inducing is None else f", inducing={tuple(self.inducing.shape)}"
        return (
            f"latent_dim={self.latent_dim}, backend={self.backend!r}, jitter={self.jitter:g}"
            + extra
        )

    def adapt_state_dict(self, state_dict: MutableMapping[str, Any], prefix: str = "") -> None:
        """Rewrite this prior's kernel entries of ``state_dict`` (under ``prefix``) in place
        to its own layout: weights saved with a parameter per channel kernel (before
        packing, or with ``pack_kernels=False``) into the (L,) tensors of packed kernels,
        and packed ones into per-kernel entries. ``load_state_dict`` does this itself; a
        check of names and shapes before loading needs it first (:func:`adapt_state_dict`)."""
        L = len(self.kernels)
        if self.packed is not None:
            pack_state_dict(state_dict, prefix, list(self.packed), L)
        elif L:
            names = dict(self.kernel_list[0].named_parameters(recurse=False))
            unpack_state_dict(state_dict, prefix, names, L)

    def _load_from_state_dict(  # type: ignore[no-untyped-def]
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
    ) -> None:
        self.adapt_state_dict(state_dict, prefix)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
        )

    @property
    def kernel_list(self) -> list[Kernel]:
        """The L channel kernels as a plain list."""
        return [k for k in self.kernels if isinstance(k, Kernel)]

    def resolve_backend(self, x: Tensor) -> str:
        """The backend name used for index points ``x`` (B, N, d) or (B, N).

        ``auto`` gives ``markov`` when every channel kernel has a state-space form and
        d == 1; else ``spacetime`` when every channel kernel is a
        :class:`~gpvae.kernels.SpaceTime` kernel that
        :func:`~gpvae.gp.spacetime.spacetime_supported` accepts on d; else ``dense``. The
        choice depends on the kernels and d only, never on the number of points: there is
        no size threshold past which ``auto`` turns sparse (a long series of a kernel
        without a state-space form stays dense, O(N^3)). ``sparse`` is never resolved
        here: the constructor turns ``auto`` into ``sparse`` when ``inducing`` is given.

        Raises:
            ValidationError: naming ``x`` when a state-space backend is asked for with d != 1.
        """
        d = 1 if x.ndim == 2 else int(x.shape[-1])
        if self.backend == "auto":
            markov_ok = d == 1 and all(k.has_state_space for k in self.kernel_list)
            if markov_ok:
                return "markov"
            st_ok = all(isinstance(k, SpaceTime) for k in self.kernel_list)
            return "spacetime" if st_ok and spacetime_supported(self.kernel_list, d) else "dense"
        if BACKENDS[self.backend].needs_state_space and d != 1:
            raise ValidationError(
                f"x: backend={self.backend!r} needs 1-D index points (d = 1), found d = {d}; "
                "use backend='dense' or 'auto'"
            )
        if BACKENDS[self.backend].spacetime and not spacetime_supported(self.kernel_list, d):
            raise ValidationError(
                f"kernel: backend={self.backend!r} needs SpaceTime kernels whose temporal part "
                f"has a state-space form on d >= 2 index points, or purely spatial kernels, "
                f"found {[type(k).__name__ for k in self.kernel_list]} on d = {d}; use "
                "backend='dense' or 'auto'"
            )
        return self.backend

    def covariance(self, x: Tensor) -> Tensor:
        """Prior kernel matrices of every channel.

        Args:
            x: (B, N, d) or (B, N) index points.

        Returns:
            (B, L, N, N) stacked kernel matrices.
        """
        x, _ = check_index_points(x)
        return stacked_covariance(self.kernel_list, x)

    def marginal_variance(self, x: Tensor) -> Tensor:
        """Prior variance ``k_l(x_n, x_n)`` of every channel at every point.

        Args:
            x: (B, N, d) or (B, N) index points.

        Returns:
            (B, N, L) variances.
        """
        x, _ = check_index_points(x)
        return torch.stack([k(x, diag=True) for k in self.kernel_list], dim=-1).to(x.dtype)

    def sample(
        self,
        x: Tensor,
        num_samples: int,
        generator: torch.Generator | None = None,
        valid: Tensor | None = None,
    ) -> Tensor:
        """Joint draws from the prior, reparameterised in the hyper-parameters.

        Args:
            x: (B, N, d) or (B, N) index points.
            num_samples: S.
            generator: source of randomness, or None for the global one.
            valid: (B, N) bool, False for padding, or None (no padding).

        Returns:
            (S, B, N, L) samples (placeholders at padding: mask them with ``valid``).
        """
        check_num_samples(num_samples)
        x, valid = check_index_points(x, valid)
        backend = BACKENDS[self.resolve_backend(x)]
        return backend.sample_prior(self.kernel_list, x, valid, num_samples, generator, self.jitter)

    def condition(
        self, x: Tensor, mean: Tensor, var: Tensor, valid: Tensor | None = None
    ) -> GPPosterior:
        """The prior conditioned on Gaussian pseudo-observations.

        For channel l of series b: ``mean[b, n, l] = f_l(x[b, n]) + eps``, ``eps ~ N(0,
        var[b, n, l])``; ``var = +inf`` excludes a point exactly, ``valid`` False marks padding.

        Args:
            x: (B, N, d) or (B, N) index points.
            mean: (B, N, L) pseudo-observation means.
            var: (B, N, L) pseudo-observation variances (> 0 or +inf).
            valid: (B, N) bool, or None (no padding).

        Returns:
            A :class:`~gpvae.gp.base.GPPosterior` of the resolved backend.
        """
        x = as_index_points(x)
        backend = BACKENDS[self.resolve_backend(x)]
        if backend.needs_inducing:
            return backend.condition(
                self.kernel_list, x, mean, var, valid, self.jitter, inducing=self.inducing
            )
        return backend.condition(self.kernel_list, x, mean, var, valid, self.jitter)
