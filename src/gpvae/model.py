"""The GP-VAE model: encoder -> posterior family -> decoder, and its variational bounds.

For a series with index points x, values y and mask ``observed``, with latent z (N, L),

    ELBO = E_q[log p(y_obs | z)] - beta * KL(q(z | y) || p(z)),

where p(z) is the GP prior of every latent channel over x and the expected log-likelihood
covers the observed entries only. With ``iwae = K > 1`` the importance-weighted bound
(Burda et al. 2016, "Importance weighted autoencoders")

    IWAE_K = E[log (1/K) sum_k p(y_obs | z_k) (p(z_k) / q(z_k))^beta],   z_k ~ q,

is also returned; for beta = 1 it is a lower bound on log p(y_obs) that increases with K.
Every expectation is estimated with reparameterised samples.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from gpvae.batch import Batch
from gpvae.errors import InputTypeError, invalid
from gpvae.gp.prior import GPPrior
from gpvae.likelihoods.base import Likelihood, Params
from gpvae.posteriors.base import PosteriorFamily, VariationalPosterior

__all__ = ["ELBOResult", "GPVAEModel"]


class ELBOResult(NamedTuple):
    """Per-series bounds and their parts, each (B,).

    Attributes:
        elbo: ``loglik - beta * kl``.
        loglik: expected log-likelihood of the observed entries (Monte Carlo over samples).
        kl: KL(q || GP prior), summed over channels and valid points (closed form).
        iwae: the importance-weighted bound when ``iwae > 1``, else None.
    """

    elbo: Tensor
    loglik: Tensor
    kl: Tensor
    iwae: Tensor | None = None

    @property
    def bound(self) -> Tensor:
        """(B,) the bound to maximise: ``iwae`` when computed, else ``elbo``."""
        return self.elbo if self.iwae is None else self.iwae


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{name}: expected a positive int, found {type(value).__name__}")
    if value < 1:
        raise invalid(name, "a positive int", value)
    return value


class GPVAEModel(nn.Module):
    """Gaussian-process-prior VAE.

    Args:
        encoder: ``encoder(y (B, N, D), observed (B, N, D))`` -> tuple of (B, N, L) tensors
            (``posterior.num_encoder_outputs`` of them), e.g. :class:`gpvae.nets.MLPEncoder`.
        posterior: a :class:`~gpvae.posteriors.base.PosteriorFamily` (structured, banded,
            diagonal).
        prior: the :class:`~gpvae.gp.prior.GPPrior` over the L latent channels.
        decoder: ``decoder(z (S, B, N, L))`` -> likelihood parameters (S, B, N, D) (one
            tensor, or a tuple of ``likelihood.num_params``), e.g. :class:`gpvae.nets.MLPDecoder`.
        likelihood: a :class:`~gpvae.likelihoods.base.Likelihood`.
        beta: weight of the KL term (1 gives the ELBO).

    Example:
        >>> model = GPVAEModel(MLPEncoder(D, L), StructuredPosterior(),
        ...                    GPPrior(Matern32(), L), MLPDecoder(L, D), Gaussian(D))
        >>> loss = -model.elbo(batch).elbo.sum() / batch.observed.sum()
    """

    def __init__(
        self,
        encoder: nn.Module,
        posterior: PosteriorFamily,
        prior: GPPrior,
        decoder: nn.Module,
        likelihood: Likelihood,
        beta: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value, kind in [
            ("encoder", encoder, nn.Module),
            ("posterior", posterior, PosteriorFamily),
            ("prior", prior, GPPrior),
            ("decoder", decoder, nn.Module),
            ("likelihood", likelihood, Likelihood),
        ]:
            if not isinstance(value, kind):
                raise InputTypeError(
                    f"{name}: expected a {kind.__name__}, found {type(value).__name__}"
                )
        self.encoder = encoder
        self.posterior = posterior
        self.prior = prior
        self.decoder = decoder
        self.likelihood = likelihood
        self.beta = beta

    @property
    def beta(self) -> float:
        """Weight of the KL term."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        try:
            v = float(value)
        except (TypeError, ValueError) as exc:
            raise InputTypeError(f"beta: expected a number, found {value!r}") from exc
        if not math.isfinite(v) or v < 0:
            raise invalid("beta", "a finite number >= 0", value)
        self._beta = v

    @property
    def latent_dim(self) -> int:
        """L, the number of latent channels."""
        return self.prior.latent_dim

    @property
    def num_features(self) -> int | None:
        """D, when the likelihood or the encoder declares it."""
        if self.likelihood.num_features is not None:
            return self.likelihood.num_features
        d = getattr(self.encoder, "num_features", None)
        return d if isinstance(d, int) else None

    def check_batch(self, batch: Batch) -> None:
        """Raise a :class:`~gpvae.errors.GPVAEError` naming the bad field of ``batch``."""
        if not isinstance(batch, Batch):
            raise InputTypeError(
                f"batch: expected a gpvae.batch.Batch, found {type(batch).__name__}"
            )
        batch.validate(num_features=self.num_features)
        param = next(self.parameters(), None)
        if param is not None and batch.y.dtype != param.dtype:
            raise InputTypeError(
                f"y: expected dtype {param.dtype} (that of the model's parameters), "
                f"found {batch.y.dtype}"
            )
        if batch.x.dtype != batch.y.dtype:
            raise InputTypeError(
                f"x: expected dtype {batch.y.dtype} (that of y), found {batch.x.dtype}"
            )

    def encode(self, batch: Batch) -> VariationalPosterior:
        """q(z | y) for a checked batch (see :mod:`gpvae.posteriors`)."""
        self.check_batch(batch)
        y = torch.where(batch.observed, batch.y, torch.zeros_like(batch.y))
        out = self.encoder(y, batch.observed)
        if isinstance(out, Tensor):
            raise InputTypeError(
                "encoder: expected a tuple of (B, N, L) tensors (mean, var, ...), found a "
                "single tensor"
            )
        return self.posterior(tuple(out), batch, self.prior)

    def decode(self, z: Tensor) -> Params:
        """Likelihood parameters for latents z (..., N, L): (..., N, D) tensor(s)."""
        return self.decoder(z)

    def elbo(
        self,
        batch: Batch,
        num_samples: int = 1,
        iwae: int = 1,
        generator: torch.Generator | None = None,
    ) -> ELBOResult:
        """Per-series ELBO and its parts, and the IWAE bound when ``iwae > 1``.

        Args:
            batch: x (B, N, d), y (B, N, D), observed (B, N, D), valid (B, N).
            num_samples: S, Monte Carlo samples (for the IWAE bound: independent groups).
            iwae: K, importance samples per group; ``S * K`` samples are drawn in all and the
                ELBO's expected log-likelihood averages over all of them.
            generator: source of randomness, or None for the global one.

        Returns:
            :class:`ELBOResult` with (B,) tensors.
        """
        S = _check_count("num_samples", num_samples)
        K = _check_count("iwae", iwae)
        q = self.encode(batch)
        B = batch.y.shape[0]
        z = q.rsample(S * K, generator)  # (S K, B, N, L)
        ll = self.log_likelihood(self.decode(z), batch)  # (S K, B)
        kl = q.kl()  # (B,)
        loglik = ll.mean(0)  # (B,)
        elbo = loglik - self.beta * kl
        bound = None
        if K > 1:
            log_w = ll + self.beta * q.log_ratio(z)  # (S K, B)
            log_w = log_w.reshape(S, K, B)
            bound = (torch.logsumexp(log_w, dim=1) - math.log(K)).mean(0)  # (B,)
        return ELBOResult(elbo=elbo, loglik=loglik, kl=kl, iwae=bound)

    def log_likelihood(self, params: Params, batch: Batch) -> Tensor:
        """log p(y_obs | z) of the batch's observed entries for decoded params (..., B).

        Likelihoods whose noise is correlated along the index (``needs_index``, e.g.
        :class:`~gpvae.likelihoods.gp_noise.GPNoiseGaussian`) also get the index points and
        the padding mask.
        """
        if getattr(self.likelihood, "needs_index", False):
            return self.likelihood.log_prob(  # type: ignore[call-arg]
                params, batch.y, batch.observed, index=batch.x, valid=batch.valid
            )
        return self.likelihood.log_prob(params, batch.y, batch.observed)

    def predictive(self, params: Params, batch: Batch) -> tuple[Tensor, Tensor]:
        """Mean and variance of every entry of y given z and the batch's observed entries.

        For likelihoods with independent entries this is ``likelihood.mean`` and
        ``likelihood.variance``; a likelihood with a ``conditional`` method (noise correlated
        along the index) conditions on the observed entries.

        Returns:
            (mean, var), each shaped like the decoder output (..., B, N, D).
        """
        conditional = getattr(self.likelihood, "conditional", None)
        if conditional is not None:
            mean, var = conditional(params, batch.y, batch.observed, batch.x, batch.valid)
            return mean, var
        return self.likelihood.mean(params), self.likelihood.variance(params)

    def forward(
        self,
        batch: Batch,
        num_samples: int = 1,
        iwae: int = 1,
        generator: torch.Generator | None = None,
    ) -> ELBOResult:
        """Same as :meth:`elbo`."""
        return self.elbo(batch, num_samples=num_samples, iwae=iwae, generator=generator)

    @torch.no_grad()
    def reconstruct(
        self, batch: Batch, num_samples: int = 1, generator: torch.Generator | None = None
    ) -> Tensor:
        """Posterior-predictive mean of y at every entry, ``E_q[E[y | z]]``: (B, N, D).

        Averages the likelihood's mean over ``num_samples`` joint samples of q (the exact
        expectation needs samples because the decoder is nonlinear).
        """
        S = _check_count("num_samples", num_samples)
        q = self.encode(batch)
        z = q.rsample(S, generator)  # (S, B, N, L)
        return self.predictive(self.decode(z), batch)[0].mean(0)

    def extra_repr(self) -> str:
        return f"beta={self._beta:g}"
