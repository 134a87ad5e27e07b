"""Posterior families: the interface, and the GP-prior densities they share.

A posterior family turns the encoder's output into q(z | y)::

    q = family(encoder_output, batch, prior)
    z = q.rsample(S, generator)        # (S, B, N, L), reparameterised
    q.kl()                             # (B,) KL(q || p), summed over channels and valid points
    q.marginals()                      # (mean, var), each (B, N, L)
    q.log_ratio(z)                     # (S, B) log p(z) - log q(z) over valid points (IWAE)

``encoder_output`` is the tuple ``(mean, var, *extra)`` of (B, N, L) tensors described in
:mod:`gpvae.nets.mlp`. ``batch`` is a :class:`~gpvae.batch.Batch` and ``prior`` a
:class:`~gpvae.gp.prior.GPPrior`. Padding (``valid`` False) takes no part in any density.

This module also holds the two routes to the GP prior's density that the diagonal and banded
families need: a **Markov route** (the prior's state-space form, a Kalman filter with
noise-free observations; O(N), no N x N matrix) used when every channel kernel has a
state-space form, the index points are 1-D and strictly increasing on valid points; and a
**dense route** (Cholesky of the N x N kernel matrix, O(N^3)) otherwise. The prior is
N(0, K) exactly, as in the GP backends' ``kl``; only when K is numerically singular (e.g.
repeated index points) is the prior's jitter added, with the backend's retry rule.
"""

from __future__ import annotations

import abc
import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gpvae import settings
from gpvae.batch import Batch
from gpvae.errors import InputTypeError, ShapeError, ValidationError
from gpvae.gp.linalg import jittered_cholesky
from gpvae.gp.prior import GPPrior
from gpvae.kernels.base import Kernel, Product, Sum
from gpvae.kernels.white import White

__all__ = [
    "EncoderOutput",
    "PosteriorFamily",
    "SeriesSampler",
    "VariationalPosterior",
    "dense_prior_cholesky",
    "filled_times",
    "markov_capable",
    "markov_chain_cross_entropy",
    "prior_log_prob",
    "use_markov_route",
    "warn_singular_prior",
]

#: What an encoder returns: ``(mean, var, *extra)``, each (B, N, L).
EncoderOutput = tuple[Tensor, ...]

_LOG_2PI = math.log(2 * math.pi)

#: :func:`warn_singular_prior` warns when the prior covariance's smallest eigenvalue is below
#: this share of its largest variance. A posterior with a variance of its own at every point
#: pays about ``var / lambda_min`` per point in KL (``tr(K^-1 V)``): below 1e-4 that is
#: hundreds to 1e13 per entry, against a log-likelihood of order 1 (measured at the initial
#: hyper-parameters, unit steps: matern32 1.5e-2, matern52 2.2e-3, cauchy 1.5e-3 and
#: matern32+periodic 7.5e-3 pass; rq 4.4e-5, rbf, periodic_exact, trend alone and
#: periodic*matern52 (8.9e-11) warn).
SINGULAR_PRIOR_RATIO = 1e-4
#: At most this many distinct points of the first series are checked (an N^3 eigensolve).
_SINGULAR_CHECK_POINTS = 256


class VariationalPosterior(abc.ABC):
    """q(z | y) for one batch: samples, marginals, KL to the prior, and density ratios.

    Attributes:
        valid: (B, N) bool, False for padding.
    """

    valid: Tensor

    @abc.abstractmethod
    def rsample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised joint samples of z: (S, B, N, L) (placeholders at padding)."""

    @abc.abstractmethod
    def kl(self) -> Tensor:
        """(B,) KL(q || p) summed over latent channels and valid points."""

    @abc.abstractmethod
    def marginals(self) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of z at every point: two (B, N, L) tensors."""

    @abc.abstractmethod
    def log_ratio(self, z: Tensor) -> Tensor:
        """log p(z) - log q(z) of joint samples z (S, B, N, L), over valid points: (S, B)."""

    @abc.abstractmethod
    def series_sampler(self, generators: Sequence[torch.Generator]) -> SeriesSampler:
        """Joint draws of z with each series' noise from its own generator.

        The draws have the distribution of :meth:`rsample`, but series b's draws depend only
        on ``generators[b]`` and on the series itself, never on the other series of the
        batch or on its padding (so prediction does not depend on the batching).

        Args:
            generators: B generators, one per series of the batch.
        """


class SeriesSampler(abc.ABC):
    """Draws of z from one batch's q, each series' noise from its own generator.

    Work that does not depend on the noise is done once, so :meth:`draw` can be called for
    several chunks of samples; each call continues every series' generator.
    """

    @abc.abstractmethod
    def draw(self, num_samples: int) -> Tensor:
        """(S, B, N, L) joint draws (placeholders on padding)."""


class PosteriorFamily(nn.Module, abc.ABC):
    """A way of turning encoder outputs into q(z | y) (subclasses: structured, banded,
    diagonal).

    Attributes:
        num_encoder_outputs: how many (B, N, L) tensors the encoder must emit.
    """

    num_encoder_outputs: int = 2

    @abc.abstractmethod
    def forward(
        self, encoder_output: EncoderOutput, batch: Batch, prior: GPPrior
    ) -> VariationalPosterior:
        """Build q for ``batch`` from ``encoder_output`` (see module docstring)."""

    def warn_singular_prior_once(self, prior: GPPrior, batch: Batch, family: str) -> None:
        """:func:`warn_singular_prior` at this family's first training call (a fit builds a
        new family, so once per fit); never in evaluation."""
        if self.training and not self.__dict__.get("_prior_checked", False):
            self.__dict__["_prior_checked"] = True
            warn_singular_prior(prior, batch.x, batch.valid, family)

    def check_encoder_output(
        self, encoder_output: EncoderOutput, batch: Batch, latent_dim: int
    ) -> tuple[Tensor, ...]:
        """Check count, types and shapes of the encoder's outputs; return them as a tuple."""
        if isinstance(encoder_output, Tensor) or not isinstance(encoder_output, (tuple, list)):
            raise InputTypeError(
                f"encoder_output: expected a tuple of {self.num_encoder_outputs} tensors "
                f"(mean, var{', offdiag' if self.num_encoder_outputs == 3 else ''}), "
                f"found {type(encoder_output).__name__}"
            )
        outs = tuple(encoder_output)
        if len(outs) < self.num_encoder_outputs:
            raise ValidationError(
                f"encoder_output: expected {self.num_encoder_outputs} tensors for "
                f"{type(self).__name__}, found {len(outs)}"
            )
        B, N = batch.valid.shape
        for i, t in enumerate(outs[: self.num_encoder_outputs]):
            if not isinstance(t, Tensor):
                raise InputTypeError(
                    f"encoder_output[{i}]: expected a tensor, found {type(t).__name__}"
                )
            if tuple(t.shape) != (B, N, latent_dim):
                raise ShapeError(
                    f"encoder_output[{i}]: expected shape (B, N, L) = {(B, N, latent_dim)}, "
                    f"found {tuple(t.shape)}"
                )
            if t.dtype != batch.y.dtype:
                raise InputTypeError(
                    f"encoder_output[{i}]: expected dtype {batch.y.dtype} (that of y), "
                    f"found {t.dtype}"
                )
        return outs[: self.num_encoder_outputs]


# --------------------------------------------------------------------------------------
# routes to the prior density


def _strictly_increasing(x: Tensor, valid: Tensor) -> bool:
    """True when the valid points of every series of x (B, N) strictly increase."""
    big = torch.finfo(x.dtype).max
    # Carry the last valid value forward; padding may hold anything.
    idx = torch.arange(x.shape[1], device=x.device).expand_as(valid)
    last = torch.where(valid, idx, torch.full_like(idx, -1)).cummax(dim=1).values  # (B, N)
    prev = torch.cat([torch.full_like(last[:, :1], -1), last[:, :-1]], dim=1)  # (B, N)
    prev_x = torch.where(prev >= 0, x.gather(1, prev.clamp_min(0)), torch.full_like(x, -big))
    ok = ~valid | (x > prev_x)
    return bool(ok.all())


def markov_capable(prior: GPPrior, x: Tensor, valid: Tensor) -> bool:
    """Whether the prior density *can* be evaluated by the O(N) Markov route: every channel
    kernel has a state-space form, ``x`` (B, N, d) has d = 1, and the valid index points
    strictly increase along N in every series."""
    if x.shape[-1] != 1 or not all(k.has_state_space for k in prior.kernel_list):
        return False
    x1 = torch.where(valid, x[..., 0], torch.zeros_like(x[..., 0])).detach()  # (B, N)
    return _strictly_increasing(x1, valid)


def use_markov_route(prior: GPPrior, x: Tensor, valid: Tensor) -> bool:
    """Whether the prior density is evaluated by the Markov route: when it can be
    (:func:`markov_capable`) and the prior's backend is not ``"dense"``."""
    return prior.backend != "dense" and markov_capable(prior, x, valid)


def filled_times(x: Tensor, valid: Tensor) -> Tensor:
    """(B, N, 1) index points -> (B, N) with padding replaced by the last valid point."""
    t = x[..., 0]
    idx = torch.arange(t.shape[1], device=t.device).expand_as(valid)
    last = torch.where(valid, idx, torch.full_like(idx, -1)).cummax(dim=1).values  # (B, N)
    first = valid.to(torch.int64).argmax(dim=1, keepdim=True)  # (B, 1)
    t_safe = torch.where(valid, t, torch.zeros_like(t))
    return t_safe.gather(1, torch.where(last >= 0, last, first))  # (B, N)


def markov_chain_cross_entropy(
    kernel: Kernel, x: Tensor, valid: Tensor, mu: Tensor, a: Tensor, s2: Tensor
) -> Tensor:
    """Per-point E_q[log p(z_n | z_<n)] for a Gaussian chain q and a state-space GP prior p.

    q is the first-order chain ``z_0 ~ N(mu_0, s2_0)``,
    ``z_n = mu_n + a_n (z_{n-1} - mu_{n-1}) + N(0, s2_n)`` (a diagonal q has a = 0; a point
    mass at z has mu = z, a = 0, s2 = 0, which gives log p(z)). p is the GP prior N(0, K) on
    the valid points, written by its state-space form as ``f_n = H s_n``. The noise-free Kalman
    filter of p gives ``log p(z) = sum_n log N(e_n | 0, S_n)`` with innovations
    ``e_n = z_n - H A_n m_{n-1}``, where the filtered mean m_n is linear in z; so
    ``u_n = (z_n, m_n)`` follows a linear-Gaussian recursion under q, whose mean and covariance
    give ``E_q[e_n^2]`` exactly. O(N) in time and memory, no N x N matrix.

    Padding points (``valid`` False) are skipped by the filter (exact marginalisation) and
    contribute 0. The recursion runs in float64 (in float32 the innovation variances of
    smooth kernels with long lengthscales cancel to <= 0) with p's points observed under a
    white-noise jitter of :data:`gpvae.settings.CHAIN_JITTER` times the prior variance
    (bounding the terms for nearly repeated times); the terms are returned in mu's dtype.

    Args:
        kernel: a kernel with a state-space form (1-D inputs).
        x: (B, N, 1) index points, strictly increasing on valid points.
        valid: (B, N) bool.
        mu, a, s2: (..., B, N) chain parameters (``a[..., 0]`` is ignored).

    Returns:
        (..., B, N) the terms ``E_q[log p(z_n | z_<n)]`` (0 at padding).
    """
    out_dtype = mu.dtype
    dtype = torch.float64  # the noise-free filter cancels badly in float32 (smooth kernels)
    mu, a, s2 = mu.to(dtype), a.to(dtype), s2.to(dtype)
    ss = kernel.state_space()
    t = filled_times(x, valid).to(dtype)  # (B, N)
    dt = torch.diff(t, dim=1, prepend=t[:, :1])  # (B, N), dt_0 = 0
    A, Q = kernel.transition(dt)  # (B, N, m, m); A_0 = I, Q_0 = 0
    A, Q = A.to(dtype), Q.to(dtype)
    H = ss.H.to(dtype)  # (1, m)
    # jitter: p's points are observed with white noise of this variance, which bounds the
    # innovation variance away from 0 for (nearly) repeated times, as the dense route's
    # jitter does; negligible otherwise (1e-14 of the prior variance, ~50 float64 eps)
    floor = settings.CHAIN_JITTER * (H @ ss.Pinf.to(dtype) @ H.T)[0, 0]
    m = H.shape[-1]
    batch_shape = torch.broadcast_shapes(mu.shape, a.shape, s2.shape)  # (..., B, N)
    mu, a, s2 = mu.expand(batch_shape), a.expand(batch_shape), s2.expand(batch_shape)
    lead = batch_shape[:-1]  # (..., B)
    eye = torch.eye(m, dtype=dtype, device=mu.device)

    P = ss.Pinf.to(dtype).expand(A.shape[0], m, m)  # (B, m, m), P_{-1} = Pinf
    ubar = mu.new_zeros(*lead, 1 + m)  # (..., B, 1 + m): E_q[(z_{n-1}, m_{n-1})]
    C = mu.new_zeros(*lead, 1 + m, 1 + m)  # (..., B, 1 + m, 1 + m): its covariance
    mu_prev = torch.zeros_like(mu[..., 0])  # (..., B)
    terms: list[Tensor] = []
    for n in range(mu.shape[-1]):
        An, vn = A[:, n], valid[:, n]  # (B, m, m), (B,)
        an = a[..., n] if n > 0 else torch.zeros_like(a[..., 0])  # (..., B)
        # prior: predicted covariance, innovation variance, gain (0 at padding)
        P_pred = An @ P @ An.transpose(-1, -2) + Q[:, n]  # (B, m, m)
        Ph = (P_pred @ H.T)[..., 0]  # (B, m)
        S = (Ph * H[0]).sum(-1) + floor  # (B,)
        S_safe = torch.where(vn, S, torch.ones_like(S))
        G = torch.where(vn[:, None], Ph / S_safe[:, None], torch.zeros_like(Ph))  # (B, m)
        IGH = eye - G[:, :, None] * H  # (B, m, m)
        # Joseph form with the jitter's observation noise
        P = IGH @ P_pred @ IGH.transpose(-1, -2) + floor * (G[:, :, None] * G[:, None, :])
        # q: e_n = r . u_{n-1} + beta_n + noise, with r = (a_n, -H A_n)
        beta = mu[..., n] - an * mu_prev  # (..., B)
        HA = (H @ An)[:, 0]  # (B, m)
        r = torch.cat([an[..., None], (-HA).expand(*lead, m)], dim=-1)  # (..., B, 1 + m)
        mean_e = (r * ubar).sum(-1) + beta  # (..., B)
        var_e = (r[..., None, :] @ C @ r[..., :, None])[..., 0, 0] + s2[..., n]  # (..., B)
        term = -0.5 * (_LOG_2PI + torch.log(S_safe) + (mean_e**2 + var_e) / S_safe)
        terms.append(torch.where(vn, term, torch.zeros_like(term)))
        # u_n = T u_{n-1} + g (beta_n + noise), T = [[a, 0], [G a, A - G H A]], g = (1, G)
        top = torch.cat(
            [an[..., None, None], torch.zeros_like(ubar[..., None, 1:])], dim=-1
        )  # (..., B, 1, 1 + m)
        left = (G * an[..., None])[..., None]  # (..., B, m, 1)
        right = (An - G[:, :, None] * HA[:, None, :]).expand(*lead, m, m)  # (..., B, m, m)
        bottom = torch.cat([left, right], dim=-1)  # (..., B, m, 1 + m)
        T = torch.cat([top, bottom], dim=-2)  # (..., B, 1 + m, 1 + m)
        g = torch.cat([torch.ones_like(G[:, :1]), G], dim=-1)  # (B, 1 + m)
        ubar = (T @ ubar[..., None])[..., 0] + g * beta[..., None]
        C = T @ C @ T.transpose(-1, -2) + (g[:, :, None] * g[:, None, :]) * s2[..., n, None, None]
        mu_prev = mu[..., n]
    return torch.stack(terms, dim=-1).to(out_dtype)  # (..., B, N)


def _kernel_text(kernel: Kernel) -> str:
    """A kernel's class, with the terms of sums and products (``Product(HarmonicPeriodic,
    Matern52)``)."""
    if isinstance(kernel, (Sum, Product)):
        inner = ", ".join(_kernel_text(k) for k in kernel.terms)
        return f"{type(kernel).__name__}({inner})"
    return type(kernel).__name__


def warn_singular_prior(prior: GPPrior, x: Tensor, valid: Tensor, family: str) -> bool:
    """Warn when the prior covariance is numerically singular for a posterior with a
    variance of its own at every point (``family``: ``"diagonal"``, ``"banded"``).

    The KL of such a posterior to N(0, K) holds ``tr(K^-1 V)``, about ``var / lambda_min``
    per point: for a smooth kernel (RBF, rational quadratic, MacKay's periodic, a long
    lengthscale, a quasi-periodic product) ``lambda_min`` is 1e-8 to 1e-16 of the variance,
    so the KL is 1e4 to 1e13 per entry, set by the jitter (dense route) or the chain's floor
    (Markov route) rather than by the model, and outweighs the data. Checked on the distinct
    valid points of the first series (at most :data:`_SINGULAR_CHECK_POINTS`), every channel,
    in float64; the warning names the kernel and the posterior and recommends a rougher
    kernel or the structured posterior (which needs only the marginals: no such term).

    Args:
        prior: the GP prior.
        x: (B, N, d) index points.
        valid: (B, N) bool.
        family: the posterior family's name, for the message.

    Returns:
        Whether it warned.
    """
    kernels = prior.kernel_list
    if all(isinstance(k, White) for k in kernels) or not bool(valid[0].any()):
        return False
    with torch.no_grad():
        dtype = x.dtype if x.device.type == "mps" else torch.float64  # mps has no float64
        points = torch.unique(x[0][valid[0]].detach().to(dtype), dim=0)
        points = points[:_SINGULAR_CHECK_POINTS]
        if points.shape[0] < 2:
            return False
        K = prior.covariance(points[None])[0].cpu().double()  # (L, n, n)
        smallest = torch.linalg.eigvalsh(K)[:, 0]  # (L,)
        scale = K.diagonal(dim1=-2, dim2=-1).amax(-1)  # (L,)
        ratio = smallest / scale
    worst = int(ratio.argmin())
    if not float(ratio[worst]) < SINGULAR_PRIOR_RATIO:
        return False
    warnings.warn(
        f"kernel: the prior covariance of {_kernel_text(kernels[worst])} (channel {worst}) "
        f"is numerically singular on these times (smallest eigenvalue "
        f"{float(ratio[worst]):.1e} of its variance, below {SINGULAR_PRIOR_RATIO:g}), so "
        f"the KL of the {family} posterior, which gives every time step a variance of its "
        "own, is dominated by that eigenvalue and by the Cholesky jitter (about var / "
        "eigenvalue per entry) and outweighs the data; use a rougher kernel "
        "(kernel='matern52' or 'matern32'), a shorter lengthscale, or "
        "posterior='structured'",
        UserWarning,
        stacklevel=2,
    )
    return True


def dense_prior_cholesky(prior: GPPrior, x: Tensor, valid: Tensor) -> Tensor:
    """Lower Cholesky factor of every channel's prior covariance on the valid points.

    Rows and columns of padding hold the identity, so padding decouples exactly. The factor
    is of K itself; the prior's jitter is added (with the backend's retry rule) only when K is
    numerically singular.

    Args:
        prior: the GP prior.
        x: (B, N, d) index points.
        valid: (B, N) bool.

    Returns:
        (B, L, N, N) lower-triangular factors.
    """
    x_safe = torch.where(valid[..., None], x, torch.zeros_like(x))  # (B, N, d)
    K = prior.covariance(x_safe)  # (B, L, N, N)
    pair = (valid[:, :, None] & valid[:, None, :])[:, None]  # (B, 1, N, N)
    pad_eye = torch.diag_embed((~valid).to(K.dtype))[:, None]  # (B, 1, N, N)
    K = torch.where(pair, K, torch.zeros_like(K)) + pad_eye
    chol, info = torch.linalg.cholesky_ex(K)
    if bool(info.any()):
        chol = jittered_cholesky(K, prior.jitter, "prior covariance")
    return chol


def prior_log_prob(prior: GPPrior, x: Tensor, valid: Tensor, z: Tensor) -> Tensor:
    """log N(z | 0, K) of joint samples over the valid points, summed over channels.

    Uses the closed form for ``White`` kernels, the Markov route when
    :func:`use_markov_route` allows, else the dense route.

    Args:
        prior: the GP prior.
        x: (B, N, d) index points.
        valid: (B, N) bool.
        z: (S, B, N, L) samples.

    Returns:
        (S, B).
    """
    L = z.shape[-1]
    n_valid = valid.sum(-1).to(z.dtype)  # (B,)
    whites = [k for k in prior.kernel_list if isinstance(k, White)]
    if len(whites) == L:  # K = s2 I: independent points
        s2 = torch.stack([w.variance.reshape(()) for w in whites]).to(z.dtype)  # (L,)
        quad = torch.where(valid[..., None], z**2 / s2, torch.zeros_like(z)).sum((-2, -1))
        return -0.5 * (quad + n_valid * (L * _LOG_2PI + torch.log(s2).sum()))
    if use_markov_route(prior, x, valid):
        total = z.new_zeros(z.shape[:2])
        zero = torch.zeros_like(z[..., 0])
        for ch, kernel in enumerate(prior.kernel_list):
            terms = markov_chain_cross_entropy(kernel, x, valid, z[..., ch], zero, zero)
            total = total + terms.sum(-1)
        return total
    chol = dense_prior_cholesky(prior, x, valid)  # (B, L, N, N)
    zm = torch.where(valid[..., None], z, torch.zeros_like(z)).movedim(-1, -2)  # (S, B, L, N)
    w = torch.linalg.solve_triangular(chol, zm[..., None], upper=False)[..., 0]  # (S, B, L, N)
    log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (B, L)
    quad = (w**2).sum(-1)  # (S, B, L)
    return -0.5 * ((quad + log_det).sum(-1) + L * n_valid * _LOG_2PI)
