"""The GP-VAE model: encoder -> posterior family -> decoder, and its variational bounds.

For a series with index points x, values y and mask ``observed``, with latent z (N, L),

    ELBO = E_q[log p(y_obs | z)] - beta * KL(q(z | y) || p(z)),

where p(z) is the GP prior of every latent channel over x and the expected log-likelihood
covers the observed entries only. With ``iwae = K > 1`` the importance-weighted bound
(Burda et al. 2016, "Importance weighted autoencoders")

    IWAE_K = E[log (1/K) sum_k p(y_obs | z_k) (p(z_k) / q(z_k))^beta],   z_k ~ q,

is also returned; for beta = 1 it is a lower bound on log p(y_obs) that increases with K.
Every expectation is estimated with reparameterised samples.

The predictive maths that the estimator's imputation, forecasts and anomaly scores rest on
lives here too: :meth:`GPVAEModel.predictive_draws` (posterior-predictive draws of every
entry, each series' noise from its own generator), :meth:`GPVAEModel.forecast_draws`
(draws at new index points) and :meth:`GPVAEModel.sample_series` in :mod:`.core`; the scores
of observed entries in :mod:`.scoring` (:func:`~gpvae.model.scoring.heldout_nlpd`, the
negative log predictive density of each entry with its step hidden, and
:func:`~gpvae.model.scoring.prior_nlpd`, under the prior alone); counts, chunks and
quantiles of draws in :mod:`.sampling`.
"""

from gpvae.model.core import ELBOResult, GPVAEModel
from gpvae.model.sampling import sample_chunks, sorted_quantiles

__all__ = ["ELBOResult", "GPVAEModel", "sample_chunks", "sorted_quantiles"]
