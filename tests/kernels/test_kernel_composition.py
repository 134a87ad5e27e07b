"""Sum and Product kernels: flattening and values."""

from __future__ import annotations

import pytest
import torch

from gpvae.errors import ValidationError
from gpvae.kernels import RBF, Matern12, Matern32, Periodic, Product, Sum, White

F64 = torch.float64


def _kernels() -> tuple[RBF, Matern32, Periodic]:
    return (
        RBF(0.8, 1.5).double(),
        Matern32(2.0, 0.5).double(),
        Periodic(1.0, 0.7, period=1.3).double(),
    )


def test_sum_flattens() -> None:
    k1, k2, k3 = _kernels()
    for k in ((k1 + k2) + k3, k1 + (k2 + k3), Sum(k1, Sum(k2, k3))):
        assert isinstance(k, Sum)
        assert k.terms == [k1, k2, k3]
    assert len(list(((k1 + k2) + k3).parameters())) == 7


def test_product_flattens() -> None:
    k1, k2, k3 = _kernels()
    for k in ((k1 * k2) * k3, k1 * (k2 * k3)):
        assert isinstance(k, Product)
        assert k.terms == [k1, k2, k3]


def test_mixed_composition_keeps_structure() -> None:
    k1, k2, k3 = _kernels()
    k = (k1 + k2) * k3
    assert isinstance(k, Product)
    assert len(k.terms) == 2
    assert isinstance(k.terms[0], Sum)


@pytest.mark.parametrize("diag", [False, True], ids=["full", "diag"])
def test_values_are_sum_and_product(diag: bool) -> None:
    k1, k2, k3 = _kernels()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 1, generator=g, dtype=F64)
    parts = [k(x, diag=diag) for k in (k1, k2, k3)]
    torch.testing.assert_close(((k1 + k2) + k3)(x, diag=diag), parts[0] + parts[1] + parts[2])
    torch.testing.assert_close(((k1 * k2) * k3)(x, diag=diag), parts[0] * parts[1] * parts[2])
    x2 = torch.randn(2, 4, 1, generator=g, dtype=F64)
    torch.testing.assert_close((k1 * k2 + k3)(x, x2), k1(x, x2) * k2(x, x2) + k3(x, x2))


def test_sum_with_white_is_positive_definite() -> None:
    k = Matern12(1.0).double() + White(1e-2).double()
    x = torch.linspace(0, 1, 20, dtype=F64)[:, None]
    assert float(torch.linalg.eigvalsh(k(x).detach()).min()) >= 1e-2 - 1e-10


def test_bad_compositions_raise() -> None:
    with pytest.raises(TypeError):
        _ = RBF() + 1.0  # type: ignore[operator]
    with pytest.raises(ValidationError, match=r"^kernels: expected at least one kernel"):
        Sum()
    with pytest.raises(TypeError, match=r"^kernels: expected Kernel instances"):
        Product(RBF(), "rbf")  # type: ignore[arg-type]
