"""Kernel matrices against independent numpy/scipy formulas, structure and gradients."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from torch.func import functional_call

from gpvae.errors import InputTypeError, ShapeError
from gpvae.kernels import (
    RBF,
    Cauchy,
    Kernel,
    Matern12,
    Matern32,
    Matern52,
    Periodic,
    RationalQuadratic,
    White,
)

Array = np.ndarray


def _np(t: torch.Tensor) -> Array:
    return t.detach().cpu().numpy()


def _r2(k: Kernel, x1: Array, x2: Array) -> Array:
    ls = _np(k.lengthscale)
    return cdist(x1 / ls, x2 / ls, "sqeuclidean")


def _ref_rbf(k: Kernel, x1: Array, x2: Array) -> Array:
    return _np(k.variance) * np.exp(-0.5 * _r2(k, x1, x2))


def _ref_m12(k: Kernel, x1: Array, x2: Array) -> Array:
    r = np.sqrt(_r2(k, x1, x2))
    return _np(k.variance) * np.exp(-r)


def _ref_m32(k: Kernel, x1: Array, x2: Array) -> Array:
    r = np.sqrt(_r2(k, x1, x2))
    return _np(k.variance) * (1 + np.sqrt(3) * r) * np.exp(-np.sqrt(3) * r)


def _ref_m52(k: Kernel, x1: Array, x2: Array) -> Array:
    r = np.sqrt(_r2(k, x1, x2))
    return _np(k.variance) * (1 + np.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-np.sqrt(5) * r)


def _ref_cauchy(k: Kernel, x1: Array, x2: Array) -> Array:
    return _np(k.variance) / (1 + _r2(k, x1, x2))


def _ref_rq(k: Kernel, x1: Array, x2: Array) -> Array:
    a = _np(k.alpha)
    return _np(k.variance) * (1 + _r2(k, x1, x2) / (2 * a)) ** (-a)


def _ref_periodic(k: Kernel, x1: Array, x2: Array) -> Array:
    p = np.broadcast_to(_np(k.period), (x1.shape[1],))
    ls = np.broadcast_to(_np(k.lengthscale), (x1.shape[1],))
    total = np.zeros((len(x1), len(x2)))
    for j in range(x1.shape[1]):
        dist = cdist(x1[:, j : j + 1], x2[:, j : j + 1], "cityblock")
        total += np.sin(np.pi * dist / p[j]) ** 2 / ls[j] ** 2
    return _np(k.variance) * np.exp(-2.0 * total)


def _ref_white(k: Kernel, x1: Array, x2: Array) -> Array:
    return _np(k.variance) * (cdist(x1, x2, "chebyshev") == 0)


Reference = Callable[[Kernel, Array, Array], Array]
ARD = [0.6, 1.3, 2.1]

# (kernel factory, numpy reference, input dimension d)
CASES = [
    pytest.param(lambda: RBF(0.7, 1.4), _ref_rbf, 1, id="rbf"),
    pytest.param(lambda: RBF(ARD, 0.8), _ref_rbf, 3, id="rbf-ard3"),
    pytest.param(lambda: Matern12(0.7, 1.4), _ref_m12, 1, id="matern12"),
    pytest.param(lambda: Matern12(ARD, 0.8), _ref_m12, 3, id="matern12-ard3"),
    pytest.param(lambda: Matern32(0.7, 1.4), _ref_m32, 1, id="matern32"),
    pytest.param(lambda: Matern32(ARD, 0.8), _ref_m32, 3, id="matern32-ard3"),
    pytest.param(lambda: Matern52(0.7, 1.4), _ref_m52, 1, id="matern52"),
    pytest.param(lambda: Matern52(ARD, 0.8), _ref_m52, 3, id="matern52-ard3"),
    pytest.param(lambda: Matern52(1.1, 0.5), _ref_m52, 2, id="matern52-iso2"),
    pytest.param(lambda: Cauchy(0.7, 1.4), _ref_cauchy, 1, id="cauchy"),
    pytest.param(lambda: Cauchy(ARD, 0.8), _ref_cauchy, 3, id="cauchy-ard3"),
    pytest.param(lambda: RationalQuadratic(0.7, 1.4, alpha=0.3), _ref_rq, 1, id="rq"),
    pytest.param(lambda: RationalQuadratic(ARD, 0.8, alpha=2.5), _ref_rq, 3, id="rq-ard3"),
    pytest.param(lambda: Periodic(0.7, 1.4, period=1.7), _ref_periodic, 1, id="periodic"),
    pytest.param(
        lambda: Periodic(ARD, 0.8, period=[0.5, 1.0, 3.0]), _ref_periodic, 3, id="periodic-ard3"
    ),
    pytest.param(lambda: Periodic(0.9, 1.0, period=2.0), _ref_periodic, 2, id="periodic-iso2"),
    pytest.param(lambda: White(1.7), _ref_white, 2, id="white"),
]


def _points(n: int, d: int, seed: int, batch: tuple[int, ...] = ()) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(*batch, n, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize(("make", "ref", "d"), CASES)
def test_matches_numpy_reference(make: Callable[[], Kernel], ref: Reference, d: int) -> None:
    k = make().double()
    x1, x2 = _points(7, d, 0), _points(5, d, 1)
    x2[2] = x1[3]  # one pair at distance 0
    expected = ref(k, _np(x1), _np(x2))
    np.testing.assert_allclose(_np(k(x1, x2)), expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(_np(k(x1)), ref(k, _np(x1), _np(x1)), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("make", "ref", "d"), CASES)
def test_symmetric_positive_semidefinite(
    make: Callable[[], Kernel], ref: Reference, d: int
) -> None:
    k = make().double()
    x = _points(25, d, 2)
    K = k(x)
    assert K.shape == (25, 25)
    torch.testing.assert_close(K, K.T, rtol=0, atol=1e-14)
    eig = torch.linalg.eigvalsh(K)
    assert eig.min() >= -1e-9 * eig.max()


@pytest.mark.parametrize(("make", "ref", "d"), CASES)
def test_diag_equals_diagonal_of_matrix(make: Callable[[], Kernel], ref: Reference, d: int) -> None:
    k = make().double()
    x1, x2 = _points(2 * 6, d, 3, (2,)).split(6, dim=-2)
    x2 = x2.clone()
    x2[0, 1] = x1[0, 1]
    diag = k(x1, diag=True)
    assert diag.shape == (2, 6)
    torch.testing.assert_close(diag, torch.diagonal(k(x1), dim1=-2, dim2=-1), rtol=0, atol=0)
    pair = k(x1, x2, diag=True)
    torch.testing.assert_close(pair, torch.diagonal(k(x1, x2), dim1=-2, dim2=-1))


@pytest.mark.parametrize(("make", "ref", "d"), CASES)
def test_batched_equals_looped(make: Callable[[], Kernel], ref: Reference, d: int) -> None:
    k = make().double()
    x1 = _points(6, d, 4, (2, 3))  # (2, 3, 6, d)
    x2 = _points(4, d, 5, (3,))  # (3, 4, d) broadcasts against (2, 3)
    K = k(x1, x2)
    assert K.shape == (2, 3, 6, 4)
    Kself = k(x1)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(K[i, j], k(x1[i, j], x2[j]), rtol=1e-14, atol=1e-15)
            torch.testing.assert_close(Kself[i, j], k(x1[i, j]), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize(("make", "ref", "d"), CASES)
def test_dtype_follows_parameters_and_inputs(
    make: Callable[[], Kernel], ref: Reference, d: int
) -> None:
    k = make()
    x32 = _points(4, d, 6).float()
    assert k(x32).dtype == torch.float32
    assert k(x32, diag=True).dtype == torch.float32
    k64 = k.double()
    assert k64(x32).dtype == torch.float64
    assert k64(x32.double(), diag=True).dtype == torch.float64


@pytest.mark.parametrize(("make", "ref", "d"), CASES)
def test_gradcheck_inputs(make: Callable[[], Kernel], ref: Reference, d: int) -> None:
    k = make().double()
    x1 = _points(4, d, 7).requires_grad_()
    x2 = _points(3, d, 8).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: k(a, b), (x1, x2))


def _raw_parameters(k: Kernel) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone().requires_grad_() for n, p in k.named_parameters()}


@pytest.mark.parametrize(("make", "ref", "d"), CASES)
def test_gradcheck_hyperparameters(make: Callable[[], Kernel], ref: Reference, d: int) -> None:
    """Includes r = 0 (the diagonal of k(x) and a repeated point)."""
    k = make().double()
    x = _points(5, d, 9)
    x[4] = x[1]
    params = _raw_parameters(k)
    names = list(params)

    def full(*values: torch.Tensor) -> torch.Tensor:
        return functional_call(k, dict(zip(names, values)), (x,))

    def diag(*values: torch.Tensor) -> torch.Tensor:
        return functional_call(k, dict(zip(names, values)), (x,), {"diag": True})

    assert torch.autograd.gradcheck(full, tuple(params.values()))
    assert torch.autograd.gradcheck(diag, tuple(params.values()))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: Matern12(0.7), id="matern12"),
        pytest.param(lambda: Matern32(0.7), id="matern32"),
        pytest.param(lambda: Matern52(ARD), id="matern52-ard3"),
        pytest.param(lambda: RBF(ARD), id="rbf-ard3"),
    ],
)
def test_gradient_finite_at_zero_distance(make: Callable[[], Kernel]) -> None:
    k = make().double()
    d = 3 if k.lengthscale.numel() == 3 else 1
    x = _points(6, d, 10).requires_grad_()
    k(x, x).sum().backward()
    assert x.grad is not None
    assert bool(torch.isfinite(x.grad).all())
    (grad,) = torch.autograd.grad(k(x).sum(), k.raw_lengthscale)
    assert bool(torch.isfinite(grad).all())


def test_nan_input_propagates() -> None:
    x = torch.tensor([[0.0], [float("nan")]], dtype=torch.float64)
    for k in (Matern12(), Matern32(), RBF()):
        K = k.double()(x)
        assert bool(torch.isnan(K[0, 1])), type(k).__name__


def test_periodic_repeats_after_one_period() -> None:
    k = Periodic(lengthscale=0.8, variance=2.0, period=1.7).double()
    x = _points(5, 1, 11)
    period = k.period.detach()  # 1.7 up to the float32 storage before .double()
    torch.testing.assert_close(k(x, x + period), k(x, x), rtol=1e-10, atol=1e-12)


def test_rational_quadratic_tends_to_rbf() -> None:
    x = _points(8, 2, 12)
    rq = RationalQuadratic(lengthscale=1.3, variance=0.9, alpha=1e6).double()
    rbf = RBF(lengthscale=1.3, variance=0.9).double()
    torch.testing.assert_close(rq(x), rbf(x), rtol=1e-5, atol=1e-6)


def test_white_identity_and_exact_equality() -> None:
    k = White(variance=2.0).double()
    x = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    # x2 None: identity even with a repeated point
    torch.testing.assert_close(k(x), 2.0 * torch.eye(3, dtype=torch.float64))
    expected = 2.0 * torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(k(x, x), expected.double())
    near = x + torch.tensor([0.0, 1e-12], dtype=torch.float64)
    assert float(k(x, near).detach().abs().max()) == 0.0


# --------------------------------------------------------------------------------------
# input errors

BAD_INPUTS = [
    pytest.param(RBF(ARD), torch.zeros(4, 2), None, False, ShapeError, "x1", id="ard-size"),
    pytest.param(RBF(), torch.zeros(4), None, False, ShapeError, "x1", id="x1-1d"),
    pytest.param(RBF(), torch.zeros(4, 2), torch.zeros(3, 3), False, ShapeError, "x2", id="x2-d"),
    pytest.param(
        RBF(), torch.zeros(2, 4, 1), torch.zeros(3, 4, 1), False, ShapeError, "x2", id="batch"
    ),
    pytest.param(RBF(), torch.zeros(4, 1), torch.zeros(3, 1), True, ShapeError, "x2", id="diag-n"),
    pytest.param(RBF(), [[0.0], [1.0]], None, False, InputTypeError, "x1", id="not-tensor"),
    pytest.param(White(input_dim=2), torch.zeros(4, 3), None, False, ShapeError, "x1", id="white"),
    pytest.param(
        Periodic(period=[1.0, 2.0]), torch.zeros(4, 3), None, False, ShapeError, "x1", id="period"
    ),
]


@pytest.mark.parametrize(("k", "x1", "x2", "diag", "error", "name"), BAD_INPUTS)
def test_bad_inputs_raise(
    k: Kernel, x1: torch.Tensor, x2: torch.Tensor | None, diag: bool, error: type, name: str
) -> None:
    with pytest.raises(error, match=rf"^{name}: expected"):
        k(x1, x2, diag=diag)


def test_ard_error_message_names_expected_and_found() -> None:
    with pytest.raises(ShapeError, match=r"x1: expected last dimension d = 3 .* found d = 2"):
        Matern32(ARD)(torch.zeros(4, 2))
