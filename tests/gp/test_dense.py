"""DenseGPPosterior: what is specific to the dense backend.

Its agreement with the textbook reference (log-marginal, marginals, KL, prediction, their
gradients, sample moments, seeding, reparameterisation) is the backend contract, in
test_backend_contract.py. Here: the placeholders on padding, the jitter retries of the
Cholesky factorisations, and error messages.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from gpvae.errors import GPVAEError, NumericalError, ShapeError
from gpvae.gp import DenseGPPosterior, GPPrior
from gpvae.gp.linalg import jittered_cholesky
from gpvae.kernels import RBF, Matern32

DT = torch.float64


def _problem(holes: bool) -> tuple[GPPrior, Tensor, Tensor, Tensor, Tensor]:
    """A dense prior, x (3, 7, 1), mean and var (3, 7, 2), valid (3, 7); with ``holes``, the
    last series ends in 2 padded points (NaN x and mean there) and some points are excluded."""
    g = torch.Generator().manual_seed(0)
    B, N, L = 3, 7, 2
    kernels = [Matern32(lengthscale=1.5, variance=0.8), RBF(lengthscale=2.0, variance=1.3)]
    prior = GPPrior(kernels, latent_dim=L, backend="dense").to(DT)
    x = torch.sort(torch.rand(B, N, 1, generator=g, dtype=DT) * 10.0, dim=1).values
    mean = torch.randn(B, N, L, generator=g, dtype=DT)
    var = 0.05 + torch.rand(B, N, L, generator=g, dtype=DT)
    valid = torch.ones(B, N, dtype=torch.bool)
    if holes:
        var = torch.where(torch.rand(B, N, L, generator=g) < 0.3, math.inf, var)
        valid[-1, N - 2 :] = False
        x[-1, N - 2 :] = math.nan
        mean[-1, N - 2 :] = math.nan
    return prior, x, mean, var, valid


def _posterior(holes: bool = False) -> DenseGPPosterior:
    prior, x, mean, var, valid = _problem(holes)
    post = prior.condition(x, mean, var, valid)
    assert isinstance(post, DenseGPPosterior)
    return post


def _new_points(x: Tensor) -> Tensor:
    """(B, 4, 1) points around each series."""
    return x[:, :1] + torch.tensor([-1.0, 0.3, 2.5, 12.0], dtype=DT)[None, :, None]


# ----------------------------------------------------------------------------------------
# placeholders on padding


def test_padding_gets_the_documented_marginals() -> None:
    post = _posterior(holes=True)
    pad = ~post.valid
    mean, var = post.marginals()
    assert bool((mean[pad] == 0).all())
    assert bool((var[pad] == 1).all())


def test_padding_gets_the_documented_samples() -> None:
    post = _posterior(holes=True)
    pad = ~post.valid
    with torch.no_grad():
        draws = post.sample(4_000, torch.Generator().manual_seed(0))[:, pad]  # (S, P, L)
    assert bool(torch.isfinite(draws).all())
    # independent standard normals: mean 0 and variance 1 within 5 standard errors
    assert float(draws.mean(0).abs().max()) < 5 / math.sqrt(4_000)
    assert float((draws.var(0) - 1).abs().max()) < 5 * math.sqrt(2 / 4_000)


# ----------------------------------------------------------------------------------------
# numerical failures and bad new points


def test_jittered_cholesky_retries_with_warning() -> None:
    cov = torch.tensor([[1.0, 1.0 + 1e-5], [1.0 + 1e-5, 1.0]], dtype=DT)  # eigenvalue -1e-5
    with pytest.warns(RuntimeWarning, match="jitter"):
        factor = jittered_cholesky(cov, 1e-6)
    assert bool(torch.isfinite(factor).all())


def test_jittered_cholesky_gives_up_with_numerical_error() -> None:
    cov = torch.tensor([[1.0, 3.0], [3.0, 1.0]], dtype=DT)  # eigenvalue -2
    with pytest.raises(NumericalError, match="jitter"):
        jittered_cholesky(cov, 1e-6)


def test_nan_hyper_parameter_raises_numerical_error() -> None:
    prior, x, mean, var, valid = _problem(holes=False)
    with torch.no_grad():
        prior.kernels[0].raw_lengthscale.fill_(math.nan)
    with pytest.raises(NumericalError, match="kernel"):
        prior.condition(x, mean, var, valid)


@pytest.mark.parametrize(
    ("x_new", "error"),
    [
        pytest.param(lambda x: x[:1], ShapeError, id="wrong-batch"),
        pytest.param(lambda x: torch.cat([x, x], dim=-1), ShapeError, id="wrong-d"),
        pytest.param(lambda x: x.float(), GPVAEError, id="wrong-dtype"),
        pytest.param(lambda x: torch.full_like(x, math.nan), GPVAEError, id="nan"),
    ],
)
def test_bad_x_new_raises(x_new: Callable[[Tensor], Tensor], error: type[Exception]) -> None:
    post = _posterior()
    bad = x_new(_new_points(post.x))
    with pytest.raises(error, match="x_new"):
        post.predict(bad)
    with pytest.raises(error, match="x_new"):
        post.sample_at(bad, 2)
