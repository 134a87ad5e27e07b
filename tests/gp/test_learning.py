"""Hyper-parameters are learnable: maximising log_marginal recovers a known lengthscale."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from gpvae.gp import GPPrior
from gpvae.kernels import Matern32

DT = torch.float64
TRUE_LENGTHSCALE = 3.0
NOISE_VAR = 0.1


def _data(B: int = 8, N: int = 200, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Irregular times (gaps ~ Exp(1)), f ~ GP(0, Matern32(3)), mean = f + N(0, 0.1)."""
    g = torch.Generator().manual_seed(seed)
    gaps = -torch.log(torch.rand(B, N, generator=g, dtype=DT))  # Exp(1) gaps
    x = torch.cumsum(gaps, dim=1)[..., None]  # (B, N, 1), span ~ N
    kernel = Matern32(lengthscale=TRUE_LENGTHSCALE, variance=1.0).to(DT)
    with torch.no_grad():
        chol = torch.linalg.cholesky(kernel(x) + 1e-9 * torch.eye(N, dtype=DT))  # (B, N, N)
        f = chol @ torch.randn(B, N, 1, generator=g, dtype=DT)  # (B, N, 1)
        mean = f + NOISE_VAR**0.5 * torch.randn(B, N, 1, generator=g, dtype=DT)
    return x, mean, torch.full_like(mean, NOISE_VAR)


@pytest.mark.parametrize("backend", ["dense", "markov"])
def test_max_log_marginal_recovers_lengthscale(backend: str) -> None:
    x, mean, var = _data()
    prior = GPPrior(Matern32(lengthscale=1.0, variance=0.5), latent_dim=1, backend=backend)
    prior = prior.to(DT)
    optimiser = torch.optim.Adam(prior.parameters(), lr=0.15)
    for _ in range(40):
        optimiser.zero_grad()
        loss = -prior.condition(x, mean, var).log_marginal.sum() / x.shape[:2].numel()
        loss.backward()
        optimiser.step()
    learned = float(prior.kernels[0].lengthscale.detach())  # type: ignore[operator]
    assert learned == pytest.approx(TRUE_LENGTHSCALE, rel=0.2), f"learned lengthscale {learned}"
