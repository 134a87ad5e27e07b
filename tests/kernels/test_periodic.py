"""Periodic kernels in state-space form: truncation error table, state-space consistency,
gradients, the markov backend on a periodic kernel alone, composite names and specs."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from gpvae import settings
from gpvae.errors import ShapeError, ValidationError
from gpvae.gp.dense import DenseGPPosterior
from gpvae.gp.markov import MarkovGPPosterior
from gpvae.kernels import (
    HarmonicPeriodic,
    Matern32,
    Matern52,
    Periodic,
    Product,
    Sum,
    build_kernel,
    get_kernel,
    kernel_from_spec,
    kernel_key,
    kernel_spec,
)
from gpvae.kernels.periodic import harmonic_weights

DTYPE = torch.float64

#: The table of the module docstring of gpvae.kernels.periodic: J -> max error per lengthscale.
LENGTHSCALES = (0.5, 0.75, 1.0, 1.5, 2.0)
TABLE = {
    3: (1.1e-1, 2.0e-2, 3.9e-3, 2.6e-4, 3.1e-5),
    5: (1.2e-2, 5.3e-4, 3.3e-5, 4.3e-7, 1.7e-8),
    7: (7.9e-4, 7.4e-6, 1.5e-7, 3.8e-10, 4.6e-12),
}


@pytest.fixture
def float64() -> Iterator[None]:
    """Kernels built in float64 (hyper-parameters exact to float64 rounding)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(DTYPE)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@pytest.mark.parametrize("J", sorted(TABLE))
@pytest.mark.usefixtures("float64")
def test_truncation_error_matches_the_documented_table(J: int) -> None:
    tau = torch.linspace(0.0, 1.0, 4001, dtype=DTYPE)[:, None]
    zero = torch.zeros(1, 1, dtype=DTYPE)
    for ell, documented in zip(LENGTHSCALES, TABLE[J]):
        k = HarmonicPeriodic(lengthscale=ell, period=1.0, num_harmonics=J)
        exact = Periodic(lengthscale=ell, period=1.0)
        with torch.no_grad():
            err = float((k(tau, zero) - exact(tau, zero)).abs().max())
        # two significant digits, as printed
        assert documented / 1.06 < err < documented * 1.06, (J, ell, err)


def test_weights_are_the_bessel_series() -> None:
    # e^-z I_0(z) and 2 e^-z I_1(z) from torch's scaled Bessel functions
    ell = torch.tensor(0.7, dtype=DTYPE)
    q = harmonic_weights(ell, 6, normalise=False)
    z = ell**-2
    torch.testing.assert_close(q[0], torch.special.i0e(z), rtol=1e-12, atol=0)
    torch.testing.assert_close(q[1], 2 * torch.special.i1e(z), rtol=1e-12, atol=0)
    # many harmonics sum to 1 (k(0) = s2 of MacKay's kernel)
    assert float(harmonic_weights(ell, 40, normalise=False).sum()) == pytest.approx(1.0, abs=1e-12)


def test_weights_gradient_matches_finite_differences() -> None:
    ell = torch.tensor(0.8, dtype=DTYPE, requires_grad=True)
    assert torch.autograd.gradcheck(lambda e: harmonic_weights(e, 5), (ell,))


KERNELS = {
    "periodic": lambda: HarmonicPeriodic(lengthscale=0.7, variance=1.7, period=3.0),
    "quasi-periodic": lambda: (
        HarmonicPeriodic(lengthscale=1.2, period=2.0, num_harmonics=4) * Matern32(lengthscale=5.0)
    ),
    "sum": lambda: Matern52(lengthscale=2.0) + HarmonicPeriodic(period=1.3, num_harmonics=3),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_state_space_reproduces_the_covariance(name: str) -> None:
    k = KERNELS[name]().to(DTYPE)
    assert k.has_state_space
    ss = k.state_space()
    tau = torch.tensor([0.0, 0.2, 0.9, 1.5, 3.3, 7.7], dtype=DTYPE)
    A, Q = k.transition(tau)  # (6, m, m)
    cov = (ss.H @ A @ ss.Pinf @ ss.H.T)[:, 0, 0]
    dense = k(tau[:, None], torch.zeros(1, 1, dtype=DTYPE))[:, 0]
    torch.testing.assert_close(cov, dense, rtol=1e-10, atol=1e-12)
    # closed-form transitions equal the matrix exponential; Q = Pinf - A Pinf A^T
    torch.testing.assert_close(
        A, torch.linalg.matrix_exp(ss.F * tau[:, None, None]), rtol=1e-10, atol=1e-12
    )
    torch.testing.assert_close(
        Q, ss.Pinf - A @ ss.Pinf @ A.transpose(-1, -2), rtol=1e-10, atol=1e-12
    )
    # the SDE is consistent with its stationary covariance: F Pinf + Pinf F^T + L Qc L^T = 0
    lyap = ss.F @ ss.Pinf + ss.Pinf @ ss.F.T + ss.L @ ss.Qc @ ss.L.T
    assert float(lyap.abs().max()) < 1e-10
    assert float(torch.linalg.eigvalsh(ss.Qc).min()) > -1e-10


def test_markov_equals_dense_on_a_periodic_kernel_alone() -> None:
    """The finite-rank periodic prior (Q = 0 in every step) through both markov methods."""
    gen = torch.Generator().manual_seed(0)
    B, N = 2, 40
    x = torch.sort(torch.rand(B, N, 1, generator=gen, dtype=DTYPE) * 12.0, dim=1).values
    mean = torch.randn(B, N, 1, generator=gen, dtype=DTYPE)
    var = 0.1 + torch.rand(B, N, 1, generator=gen, dtype=DTYPE)
    x_new = torch.tensor([[[-1.0], [5.5], [14.0]]] * B, dtype=DTYPE)
    results = {}
    for method in ("dense", "sequential", "parallel"):
        kernel = HarmonicPeriodic(lengthscale=0.6, variance=1.3, period=2.7).to(DTYPE)
        if method == "dense":
            post = DenseGPPosterior([kernel], x, mean, var)
        else:
            post = MarkovGPPosterior([kernel], x, mean, var, method=method)
        lm = post.log_marginal
        pm, pv = post.predict(x_new)
        (lm.sum() + pm.sum() + pv.sum()).backward()
        grads = [p.grad.clone() for p in kernel.parameters()]
        results[method] = (lm.detach(), pm.detach(), pv.detach(), grads)
    ref = results["dense"]
    for method in ("sequential", "parallel"):
        got = results[method]
        for a, b in zip(ref[:3], got[:3]):
            torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-9)
        for a, b in zip(ref[3], got[3]):
            torch.testing.assert_close(b, a, rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------- names and specs


def test_composite_names_normalise_and_build() -> None:
    assert kernel_key(" Matern32 + Periodic ") == "matern32+periodic"
    assert kernel_key("periodic*matern32+matern12") == "periodic*matern32+matern12"
    k = get_kernel("matern32+periodic*matern52", period=7.0)
    assert isinstance(k, Sum)
    assert isinstance(k.terms[1], Product)
    assert float(k.terms[1].terms[0].period) == pytest.approx(7.0)
    with pytest.raises(ValidationError, match=r"^kernel: expected one of .*'materm32'"):
        kernel_key("materm32+periodic")
    with pytest.raises(ValidationError, match=r"^kernel: expected kernel names around"):
        kernel_key("matern32++periodic")


def test_build_kernel_defaults_and_periods() -> None:
    k = build_kernel("matern32+periodic+periodic*matern32", lengthscale=4.0, period=[24.0, 168.0])
    assert isinstance(k, Sum)
    m32, per, quasi = k.terms
    assert float(m32.lengthscale) == pytest.approx(4.0)
    assert float(per.period) == pytest.approx(24.0)
    assert float(quasi.terms[0].period) == pytest.approx(168.0, rel=1e-5)
    # the lengthscale given starts the quasi-periodic decay too (it was replaced by 4 periods)
    assert float(quasi.terms[1].lengthscale) == pytest.approx(4.0, rel=1e-5)
    default = build_kernel("periodic*matern32", period=168.0)  # None: QUASI_PERIODIC_DECAY
    assert float(default.terms[1].lengthscale) == pytest.approx(
        settings.QUASI_PERIODIC_DECAY * 168.0, rel=1e-5
    )
    assert float(build_kernel("periodic*matern52", 7.0, 24.0).terms[1].lengthscale) == (
        pytest.approx(7.0)
    )
    assert not quasi.terms[1].raw_variance.requires_grad  # redundant in a product
    assert float(m32.variance) == pytest.approx(1 / 3, rel=1e-5)
    fixed = build_kernel("periodic", period=12.0, learn_period=False)
    assert not fixed.raw_period.requires_grad
    with pytest.raises(ValidationError, match=r"^period: expected the period"):
        build_kernel("matern32+periodic")
    for name in ("matern32+periodic", "periodic", "periodic_exact"):  # get_kernel agrees
        with pytest.raises(ValidationError, match=r"^period: expected the period"):
            get_kernel(name)  # (quietly built period=1)
    assert float(build_kernel("periodic", period=np.int64(24)).period) == pytest.approx(24.0)
    with pytest.raises(ValidationError, match=r"^period: expected 1 or 2 periods"):
        build_kernel("periodic+periodic", period=[1.0, 2.0, 3.0])


def test_specs_round_trip_sums_products_and_fixed_periods() -> None:
    k = build_kernel("matern32+periodic*matern52", period=12.0, learn_period=False)
    spec = kernel_spec(k)
    back = kernel_from_spec(spec)
    assert isinstance(back, Sum)
    assert kernel_spec(back) == spec
    assert not back.terms[1].terms[0].raw_period.requires_grad
    back.load_state_dict(k.state_dict())
    x = torch.linspace(0, 30, 7)[:, None]
    torch.testing.assert_close(back(x), k(x))
    assert spec["terms"][1]["terms"][0]["params"]["num_harmonics"] == settings.PERIODIC_HARMONICS


def test_a_lengthscale_of_several_values_is_refused() -> None:
    """HarmonicPeriodic(lengthscale=[1, 2]) was accepted and fit then raised a raw torch
    RuntimeError from the harmonic weights; a one-element sequence is one number."""
    with pytest.raises(ShapeError, match=r"^lengthscale: expected one number .*found 2 values"):
        HarmonicPeriodic(lengthscale=[1.0, 2.0], period=24.0)
    assert float(HarmonicPeriodic(lengthscale=[1.5], period=24.0).lengthscale) == pytest.approx(1.5)
