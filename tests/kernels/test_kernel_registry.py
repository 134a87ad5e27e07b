"""Kernel registry: names, aliases, instances and the error for unknown names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpvae.errors import InputTypeError, ValidationError
from gpvae.kernels import (
    RBF,
    Cauchy,
    HarmonicPeriodic,
    Kernel,
    Matern12,
    Matern32,
    Matern52,
    Periodic,
    RationalQuadratic,
    White,
    available_kernels,
    get_kernel,
    register_kernel,
    registry,
)

NAMES = [
    ("rbf", RBF),
    ("se", RBF),
    ("RBF", RBF),
    ("matern12", Matern12),
    ("exponential", Matern12),
    ("matern32", Matern32),
    ("Matern32", Matern32),
    ("matern52", Matern52),
    ("cauchy", Cauchy),
    ("rq", RationalQuadratic),
    ("rational_quadratic", RationalQuadratic),
    ("Rational-Quadratic", RationalQuadratic),
    ("periodic", HarmonicPeriodic),
    ("periodic_exact", Periodic),
    ("white", White),
    (" White ", White),
]


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A private copy of the registry, so registrations do not leak into other tests."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


@pytest.mark.parametrize(("name", "cls"), NAMES, ids=[n.strip() for n, _ in NAMES])
def test_names_give_kernels(name: str, cls: type[Kernel]) -> None:
    k = get_kernel(name, period=24.0) if "periodic" in name else get_kernel(name)
    assert type(k) is cls


def test_keywords_reach_the_constructor() -> None:
    k = get_kernel("periodic_exact", lengthscale=0.5, variance=2.0, period=3.0)
    assert isinstance(k, Periodic)
    assert abs(float(k.period.detach()) - 3.0) < 1e-5
    assert abs(float(k.lengthscale.detach()) - 0.5) < 1e-6
    assert get_kernel("rq", alpha=0.25).alpha.item() == pytest.approx(0.25)
    assert get_kernel("matern32", input_dim=2).lengthscale.shape == (2,)


def test_each_call_builds_a_new_kernel() -> None:
    assert get_kernel("matern32") is not get_kernel("matern32")


def test_instance_passes_through() -> None:
    k = Matern52()
    assert get_kernel(k) is k
    with pytest.raises(ValidationError, match=r"^kernel: expected no keyword arguments"):
        get_kernel(k, lengthscale=2.0)


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ValidationError) as info:
        get_kernel("matern72")
    message = str(info.value)
    assert message.startswith("kernel: expected one of ")
    for name in ("rbf", "matern12", "matern32", "matern52", "cauchy", "rq", "periodic", "white"):
        assert name in message
    assert "found 'matern72'" in message
    assert "did you mean" in message


def test_wrong_type_raises() -> None:
    with pytest.raises(InputTypeError, match=r"^kernel: expected a kernel name or a Kernel"):
        get_kernel(3)  # type: ignore[arg-type]


def test_available_kernels() -> None:
    names = available_kernels()
    assert names == sorted(names)
    expected = {"rbf", "se", "matern12", "exponential", "matern32", "matern52", "cauchy", "rq"}
    assert expected | {"rational_quadratic", "periodic", "white"} <= set(names)


@pytest.mark.usefixtures("fresh_registry")
def test_register_kernel() -> None:
    register_kernel("Smooth", lambda **kw: Matern52(**kw) + RBF())
    assert "smooth" in available_kernels()
    k = get_kernel("SMOOTH", lengthscale=2.0)
    assert len(k.terms) == 2  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match=r"^name: expected a name not yet registered"):
        register_kernel("smooth", RBF)
    register_kernel("smooth", RBF, overwrite=True)
    assert type(get_kernel("smooth")) is RBF


@pytest.mark.usefixtures("fresh_registry")
def test_register_kernel_bad_arguments() -> None:
    with pytest.raises(ValidationError, match=r"^name: expected a non-empty"):
        register_kernel("  ", RBF)
    with pytest.raises(InputTypeError, match=r"^factory: expected a callable"):
        register_kernel("x", "rbf")  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match=r"^name: expected a string"):
        register_kernel(1, RBF)  # type: ignore[arg-type]
    register_kernel("broken", lambda: "not a kernel")  # type: ignore[arg-type,return-value]
    with pytest.raises(InputTypeError, match=r"^kernel: expected the factory"):
        get_kernel("broken")


def test_registry_not_changed_by_other_tests() -> None:
    assert "smooth" not in available_kernels()
    assert "broken" not in available_kernels()


def test_build_kernel_takes_one_lengthscale_per_channel() -> None:
    """A sequence of lengthscales gives one kernel per channel, each starting at its own
    value: a name is repeated (its periodic factors keep the given period), a per-channel
    list of names takes them in order; a count that does not match is refused."""
    from gpvae.kernels import HarmonicPeriodic, Matern52, Sum, build_kernel

    same = build_kernel("matern32", [2.0, 7.0])
    assert [type(k) for k in same] == [Matern32, Matern32]
    assert [float(k.lengthscale.detach()) for k in same] == pytest.approx([2.0, 7.0])
    mixed = build_kernel(["matern32", "matern52"], (2.0, 7.0))
    assert [type(k) for k in mixed] == [Matern32, Matern52]
    assert [float(k.lengthscale.detach()) for k in mixed] == pytest.approx([2.0, 7.0])
    seasonal = build_kernel("matern32+periodic", [2.0, 7.0], period=12.0)
    for k, ell in zip(seasonal, [2.0, 7.0]):
        assert isinstance(k, Sum)
        smooth, periodic = k.kernels
        assert float(smooth.lengthscale.detach()) == pytest.approx(ell)
        assert isinstance(periodic, HarmonicPeriodic)
        assert float(periodic.period.detach()) == pytest.approx(12.0)
    with pytest.raises(ValidationError, match=r"lengthscale: expected one number or one per"):
        build_kernel(["matern32", "matern52"], [2.0, 7.0, 1.0])
    one = build_kernel("matern32", np.float32(4.0))  # a numpy scalar is one number
    assert float(one.lengthscale.detach()) == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("spec", "finite"),
    [
        ("periodic", True),
        ("periodic+periodic", True),
        ("periodic*periodic", True),
        ("matern32+periodic", False),
        ("periodic*matern52", False),
        ("periodic_exact", False),
        ("rbf", False),
        ("white", False),
        (HarmonicPeriodic(period=24.0), True),
        (HarmonicPeriodic(period=24.0) + HarmonicPeriodic(period=12.0), True),
        (HarmonicPeriodic(period=24.0) * HarmonicPeriodic(period=12.0), True),
        (HarmonicPeriodic(period=24.0) * Matern32(), False),
        (Matern32() + HarmonicPeriodic(period=24.0), False),
        (["matern32", "periodic"], True),
        (["matern32", Matern52()], False),
    ],
    ids=str,
)
def test_has_finite_rank_matches_the_rank_of_the_covariance(spec: object, finite: bool) -> None:
    """The resonator kernel has rank 2J + 1; sums and products made only of such kernels stay
    of finite rank; one full-rank term or factor makes the covariance positive definite."""
    assert registry.has_finite_rank(spec) is finite  # type: ignore[arg-type]
    if finite:  # numerically singular too, on more points than the rank
        kernels = spec if isinstance(spec, list) else [spec]
        built = [registry.build_kernel(k, period=24.0) for k in kernels]
        x = torch.arange(200, dtype=torch.float64)[:, None]
        with torch.no_grad():
            ratios = [eigvals_ratio(k.double()(x)) for k in built]
        assert min(ratios) < 1e-12


def eigvals_ratio(K: torch.Tensor) -> float:
    """The smallest eigenvalue of K relative to its largest variance."""
    return float(torch.linalg.eigvalsh(K)[0] / K.diagonal().max())
