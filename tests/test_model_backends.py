"""GPVAEModel with the dense and the markov GP backend: the same model, the same bounds.

Each model is built twice with the same weights, once with ``GPPrior(..., backend="dense")``
and once with ``backend="markov"``, in float64, and run on a batch with padding, missing
entries, a time step with nothing observed in a series, and irregular times.

The KL(q || prior) part of ``model.elbo`` is deterministic: it must agree to 1e-9
(relative) for every posterior family, and so must its gradients with respect to the
encoder's, the decoder's (zero) and the kernels' parameters. The expected log-likelihood,
the ELBO and the IWAE bound (``iwae=8``) are Monte Carlo estimates: with the structured
family the two backends draw differently, and the estimates must agree within 5 standard
errors of their difference, estimated from the draws themselves; the banded and diagonal
families' q does not involve the backend (same seed, same draws), so there they must agree
to 1e-9.

The banded and diagonal families evaluate the prior density themselves: by the Markov route
(state-space recursion) when the kernels and index points allow it and the prior's backend
is not ``"dense"``, else by the dense route (Cholesky of K); so the two models compare the
two routes too.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from gpvae.batch import Batch
from gpvae.gp import GPPrior
from gpvae.kernels import Matern12, Matern32, Matern52
from gpvae.likelihoods import Gaussian
from gpvae.model import GPVAEModel
from gpvae.nets import MLPDecoder, MLPEncoder
from gpvae.posteriors import BandedPosterior, DiagonalPosterior, StructuredPosterior
from gpvae.posteriors.base import PosteriorFamily

DT = torch.float64
B, N, D, L = 4, 12, 3, 2
FAMILIES = ["structured", "banded", "diagonal"]
BACKENDS = ["dense", "markov"]

#: Tolerance of the deterministic parts (KL and its gradients).
RTOL = 1e-9
#: Monte Carlo parts: draws, and the bound in standard errors of the difference.
NUM_SAMPLES = 4_000
IWAE_GROUPS, IWAE_K = 1_000, 8
SIGMAS = 5.0


def _batch() -> Batch:
    """Irregular increasing times, ~40% of entries missing, trailing padding in series 1 and
    3, and a time step with nothing observed in series 0 and 2."""
    g = torch.Generator().manual_seed(0)
    gaps = 0.2 + torch.empty(B, N, dtype=DT).exponential_(1.0, generator=g)
    x = torch.cumsum(gaps, dim=1)[..., None]  # (B, N, 1)
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[1, 8:] = False
    valid[3, 10:] = False
    observed = (torch.rand(B, N, D, generator=g) < 0.6) & valid[..., None]
    observed[0, 4] = False  # nothing observed at this step
    observed[2, 0] = False
    y = torch.where(observed, torch.randn(B, N, D, generator=g, dtype=DT), 0.0)
    return Batch.from_tensors(y, observed=observed, x=x, valid=valid)


def _family(name: str) -> PosteriorFamily:
    return {
        "structured": StructuredPosterior,
        "banded": BandedPosterior,
        "diagonal": DiagonalPosterior,
    }[name]()


def _model(family: str, backend: str) -> GPVAEModel:
    torch.manual_seed(0)  # the same weights for every backend
    kernels = [
        Matern32(lengthscale=2.0, variance=1.0),
        Matern12(lengthscale=0.8, variance=0.5) + Matern52(lengthscale=3.0, variance=1.0),
    ]
    outputs = 3 if family == "banded" else 2
    model = GPVAEModel(
        MLPEncoder(D, L, hidden=(16,), num_outputs=outputs),
        _family(family),
        GPPrior(kernels, L, backend=backend),
        MLPDecoder(L, D, hidden=(16,)),
        Gaussian(D, variance=0.3),
    )
    return model.to(DT)


def _models(family: str) -> dict[str, GPVAEModel]:
    models = {backend: _model(family, backend) for backend in BACKENDS}
    models["markov"].load_state_dict(models["dense"].state_dict())
    return models


def _params(model: GPVAEModel) -> dict[str, list[Tensor]]:
    return {
        "encoder": list(model.encoder.parameters()),
        "decoder": list(model.decoder.parameters()),
        "kernels": list(model.prior.parameters()),
    }


# ----------------------------------------------------------------------------------------
# the KL part: deterministic


@pytest.mark.parametrize("family", FAMILIES)
def test_kl_and_its_gradients_agree(family: str) -> None:
    batch = _batch()
    kl: dict[str, Tensor] = {}
    grads: dict[str, dict[str, list[Tensor]]] = {}
    for backend, model in _models(family).items():
        out = model.elbo(batch, generator=torch.Generator().manual_seed(0))
        assert out.kl.shape == (B,)
        kl[backend] = out.kl
        grads[backend] = {}
        for part, params in _params(model).items():
            g = torch.autograd.grad(
                out.kl.sum(), params, retain_graph=True, allow_unused=True, materialize_grads=True
            )
            grads[backend][part] = list(g)
    torch.testing.assert_close(kl["markov"], kl["dense"], rtol=RTOL, atol=RTOL)
    for part in ("encoder", "decoder", "kernels"):
        for gm, gd in zip(grads["markov"][part], grads["dense"][part], strict=True):
            assert bool(torch.isfinite(gm).all()), part
            scale = max(float(gd.abs().max()), 1.0)
            torch.testing.assert_close(gm, gd, rtol=RTOL, atol=RTOL * 1e-2 * scale, msg=part)
    # the KL does not depend on the decoder; it does on the encoder and the kernels
    assert all(bool((g == 0).all()) for g in grads["dense"]["decoder"])
    for part in ("encoder", "kernels"):
        assert any(bool((g != 0).any()) for g in grads["dense"][part]), part


# ----------------------------------------------------------------------------------------
# Monte Carlo parts


def _per_sample(model: GPVAEModel, batch: Batch, num: int, iwae: int, seed: int) -> Tensor:
    """(num, B) the per-draw terms that model.elbo averages: log p(y_obs | z) for iwae = 1,
    else the per-group IWAE bounds, with the draws of the same seed."""
    q = model.encode(batch)
    z = q.rsample(num * iwae, torch.Generator().manual_seed(seed))
    ll = model.log_likelihood(model.decode(z), batch)  # (num iwae, B)
    if iwae == 1:
        return ll
    log_w = (ll + model.beta * q.log_ratio(z)).reshape(num, iwae, -1)
    return torch.logsumexp(log_w, dim=1) - math.log(iwae)


@pytest.mark.parametrize("family", FAMILIES)
def test_expected_loglik_elbo_and_iwae_agree(family: str) -> None:
    """Structured: q is the backend's posterior, so the two backends draw differently and the
    estimates must agree within SIGMAS standard errors of their difference (with NUM_SAMPLES
    draws that is below 0.01 nats per observed entry for the ELBO, 0.025 for the IWAE bound).
    Banded and diagonal: q does not involve the backend, so the same seed gives the same
    draws, and the estimates must agree to RTOL (only the prior density differs)."""
    batch = _batch()
    n_obs = batch.observed.sum((1, 2)).to(DT)  # (B,)
    exact = family != "structured"
    num, groups = (256, 64) if exact else (NUM_SAMPLES, IWAE_GROUPS)
    est: dict[str, dict[str, tuple[Tensor, Tensor]]] = {}
    with torch.no_grad():
        for backend, model in _models(family).items():
            out = model.elbo(batch, num, generator=torch.Generator().manual_seed(1))
            ll = _per_sample(model, batch, num, 1, seed=1)
            iw = model.elbo(batch, groups, IWAE_K, torch.Generator().manual_seed(2))
            bounds = _per_sample(model, batch, groups, IWAE_K, seed=2)
            # the per-draw terms are those elbo() averaged (same seed, same draws)
            torch.testing.assert_close(ll.mean(0), out.loglik, rtol=1e-12, atol=1e-10)
            assert iw.iwae is not None
            torch.testing.assert_close(bounds.mean(0), iw.iwae, rtol=1e-12, atol=1e-10)
            torch.testing.assert_close(out.elbo, out.loglik - model.beta * out.kl)
            se = ll.std(0) / math.sqrt(num)
            est[backend] = {
                "loglik": (out.loglik, se),
                "elbo": (out.elbo, se),
                "iwae": (iw.iwae, bounds.std(0) / math.sqrt(groups)),
            }
    for key, power in (("loglik", 0.01), ("elbo", 0.01), ("iwae", 0.025)):
        (a, se_a), (b, se_b) = est["dense"][key], est["markov"][key]
        if exact:
            torch.testing.assert_close(b, a, rtol=RTOL, atol=RTOL, msg=key)
            continue
        se = torch.sqrt(se_a**2 + se_b**2)  # of the difference of independent estimates
        assert float(((a - b).abs() / se).max()) <= SIGMAS, (key, a - b, se)
        assert float((SIGMAS * se / n_obs).max()) < power, (key, se)
