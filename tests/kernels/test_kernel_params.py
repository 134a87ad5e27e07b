"""Positive hyper-parameters: softplus storage, setters, freezing and validation."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from gpvae.errors import InputTypeError, ShapeError, ValidationError
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
    inv_softplus,
)

# (kernel class, its positive hyper-parameters)
KERNELS = [
    pytest.param(RBF, ("lengthscale", "variance"), id="rbf"),
    pytest.param(Matern12, ("lengthscale", "variance"), id="matern12"),
    pytest.param(Matern32, ("lengthscale", "variance"), id="matern32"),
    pytest.param(Matern52, ("lengthscale", "variance"), id="matern52"),
    pytest.param(Cauchy, ("lengthscale", "variance"), id="cauchy"),
    pytest.param(RationalQuadratic, ("lengthscale", "variance", "alpha"), id="rq"),
    pytest.param(Periodic, ("lengthscale", "variance", "period"), id="periodic"),
    pytest.param(White, ("variance",), id="white"),
]

BAD_VALUES = [
    pytest.param(0.0, id="zero"),
    pytest.param(-1.0, id="negative"),
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
]


@pytest.mark.parametrize(("cls", "names"), KERNELS)
def test_softplus_storage(cls: Callable[..., Kernel], names: tuple[str, ...]) -> None:
    values = {name: 0.3 + i for i, name in enumerate(names)}
    k = cls(**values)
    assert sorted(n for n, _ in k.named_parameters()) == sorted(f"raw_{n}" for n in names)
    for name, value in values.items():
        raw = getattr(k, f"raw_{name}")
        assert isinstance(raw, torch.nn.Parameter)
        torch.testing.assert_close(raw.detach(), inv_softplus(torch.tensor(value)))
        torch.testing.assert_close(getattr(k, name), torch.nn.functional.softplus(raw))
        torch.testing.assert_close(getattr(k, name).detach(), torch.tensor(value))


@pytest.mark.parametrize(("cls", "names"), KERNELS)
def test_setters_keep_the_parameter_object(
    cls: Callable[..., Kernel], names: tuple[str, ...]
) -> None:
    k = cls().double()
    for name in names:
        raw = getattr(k, f"raw_{name}")
        setattr(k, name, 2.5)
        assert getattr(k, f"raw_{name}") is raw
        torch.testing.assert_close(getattr(k, name).detach(), torch.tensor(2.5, dtype=F64))
        setattr(k, name, torch.tensor(1e-4))  # small values survive the round trip
        torch.testing.assert_close(
            getattr(k, name).detach(), torch.tensor(1e-4, dtype=F64), rtol=1e-6, atol=0
        )
        setattr(k, name, 50.0)  # large values use the linear branch of inv_softplus
        torch.testing.assert_close(getattr(k, name).detach(), torch.tensor(50.0, dtype=F64))


F64 = torch.float64


@pytest.mark.parametrize(("cls", "names"), KERNELS)
@pytest.mark.parametrize("value", BAD_VALUES)
def test_bad_constructor_values_raise(
    cls: Callable[..., Kernel], names: tuple[str, ...], value: float
) -> None:
    for name in names:
        with pytest.raises(ValidationError, match=rf"^{name}: expected finite positive values"):
            cls(**{name: value})


@pytest.mark.parametrize(("cls", "names"), KERNELS)
@pytest.mark.parametrize("value", BAD_VALUES)
def test_bad_setter_values_raise(
    cls: Callable[..., Kernel], names: tuple[str, ...], value: float
) -> None:
    k = cls()
    for name in names:
        before = getattr(k, name).detach().clone()
        with pytest.raises(ValidationError, match=rf"^{name}: expected finite positive values"):
            setattr(k, name, value)
        torch.testing.assert_close(getattr(k, name).detach(), before)


def test_bad_types_and_shapes_raise() -> None:
    with pytest.raises(InputTypeError, match=r"^lengthscale: expected"):
        RBF(lengthscale="long")  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match=r"^lengthscale: expected"):
        RBF(lengthscale=[[1.0, 2.0]])
    with pytest.raises(ShapeError, match=r"^variance: expected a single positive number"):
        RBF(variance=[1.0, 2.0])  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match=r"^alpha: expected a single positive number"):
        RationalQuadratic(alpha=[1.0, 2.0])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"^lengthscale: expected"):
        RBF(lengthscale=[1.0, -2.0])
    with pytest.raises(ShapeError, match=r"^period: expected a scalar or 2 values"):
        Periodic(lengthscale=[1.0, 2.0], period=[1.0, 2.0, 3.0])
    k = RBF(lengthscale=[1.0, 2.0, 3.0])
    with pytest.raises(ShapeError, match=r"^lengthscale: expected a scalar or shape \(3,\)"):
        k.lengthscale = [1.0, 2.0]
    with pytest.raises(InputTypeError, match=r"^variance: expected"):
        k.variance = "big"  # type: ignore[assignment]


def test_ard_setter_broadcasts_scalar() -> None:
    k = Matern52(lengthscale=[1.0, 2.0, 3.0])
    k.lengthscale = 0.5
    torch.testing.assert_close(k.lengthscale.detach(), torch.full((3,), 0.5))
    k.lengthscale = torch.tensor([0.1, 0.2, 0.3])
    torch.testing.assert_close(k.lengthscale.detach(), torch.tensor([0.1, 0.2, 0.3]))


@pytest.mark.parametrize(
    ("make", "shape", "input_dim"),
    [
        pytest.param(lambda: RBF(), (), None, id="scalar"),
        pytest.param(lambda: RBF(input_dim=3), (3,), 3, id="input-dim-3"),
        pytest.param(lambda: RBF([1.0, 2.0]), (2,), 2, id="ard-2"),
        pytest.param(lambda: RBF([1.0, 2.0], input_dim=2), (2,), 2, id="ard-2-input-dim-2"),
        pytest.param(lambda: Periodic(period=[1.0, 2.0]), (), 2, id="periodic-period-ard"),
        pytest.param(lambda: White(input_dim=4), None, 4, id="white-input-dim"),
    ],
)
def test_input_dim(
    make: Callable[[], Kernel], shape: tuple[int, ...] | None, input_dim: int
) -> None:
    k = make()
    assert getattr(k, "input_dim") == input_dim  # noqa: B009
    if shape is not None:
        assert tuple(k.raw_lengthscale.shape) == shape


def test_bad_input_dim_raises() -> None:
    with pytest.raises(ShapeError, match=r"^lengthscale: expected a scalar or 3 values"):
        RBF(lengthscale=[1.0, 2.0], input_dim=3)
    with pytest.raises(ValidationError, match=r"^input_dim: expected an int >= 1"):
        Matern32(input_dim=0)
    with pytest.raises(InputTypeError, match=r"^input_dim: expected an int >= 1"):
        Matern32(input_dim=1.5)  # type: ignore[arg-type]


def test_freeze_and_unfreeze() -> None:
    k = Periodic(lengthscale=0.7, variance=1.2, period=2.0).double()
    x = torch.linspace(0, 3, 7, dtype=F64)[:, None]
    assert k.freeze("lengthscale", "period") is k
    k(x).sum().backward()
    assert k.raw_lengthscale.grad is None
    assert k.raw_period.grad is None
    assert k.raw_variance.grad is not None
    k.zero_grad(set_to_none=True)
    k.unfreeze("lengthscale")
    k(x).sum().backward()
    assert k.raw_lengthscale.grad is not None
    assert k.raw_period.grad is None
    k.freeze()
    assert not any(p.requires_grad for p in k.parameters())
    k.unfreeze()
    assert all(p.requires_grad for p in k.parameters())
    with pytest.raises(ValidationError, match=r"^names: expected .* found 'alpha'"):
        k.freeze("alpha")


def test_state_dict_round_trip() -> None:
    k = RationalQuadratic(lengthscale=[0.5, 2.0], variance=3.0, alpha=0.2)
    fresh = RationalQuadratic(lengthscale=[1.0, 1.0])
    fresh.load_state_dict(k.state_dict())
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(fresh(x), k(x))


def test_repr_shows_values() -> None:
    assert repr(Matern32(lengthscale=2.0, variance=0.5)) == (
        "Matern32(lengthscale=2, variance=0.5)"
    )
    assert "period=[1, 2]" in repr(Periodic(lengthscale=[1.0, 1.0], period=[1.0, 2.0]))
