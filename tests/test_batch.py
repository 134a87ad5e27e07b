"""Batch.validate's rules and messages, and the fast finite / any checks behind them."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpvae.batch import Batch, all_finite, any_along, any_true, where_zero
from gpvae.errors import ValidationError


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_all_finite_is_isfinite_all(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    t = (torch.randn(4, 7, 5, generator=g) * 1e4).to(dtype)
    assert all_finite(t)
    assert all_finite(t[:, ::2].transpose(0, 2))  # strided
    assert all_finite(torch.empty(0, 3, dtype=dtype))
    big = torch.full((3, 3), torch.finfo(dtype).max, dtype=dtype)  # a sum would overflow
    assert all_finite(big)
    for bad in (math.nan, math.inf, -math.inf):
        u = t.clone()
        u[3, 6, 4] = bad
        assert not all_finite(u)
        assert all_finite(u[:3])
    w = torch.randn(5, requires_grad=True)
    assert all_finite(w)


def test_any_true_is_any() -> None:
    m = torch.zeros(3, 4, 5, dtype=torch.bool)
    assert not any_true(m)
    assert not any_true(torch.zeros(0, dtype=torch.bool))
    m[2, 3, 4] = True
    assert any_true(m)
    assert any_true(m.transpose(0, 2))
    assert not any_true(m[:2])
    assert not any_true(m[:, :, ::2][..., :2])


def _batch(padding: bool) -> Batch:
    g = torch.Generator().manual_seed(1)
    y = torch.randn(3, 6, 4, generator=g)
    observed = torch.rand(3, 6, 4, generator=g) < 0.7
    valid = torch.ones(3, 6, dtype=torch.bool)
    if padding:
        valid[1, 4:] = False
        observed[1, 4:] = False
    y = torch.where(observed, y, 0.0)
    x = torch.arange(6.0).expand(3, 6)[..., None].clone()
    return Batch(x=x, y=y, observed=observed, valid=valid)


@pytest.mark.parametrize("padding", [False, True])
def test_validate_names_each_bad_field(padding: bool) -> None:
    batch = _batch(padding)
    batch.validate()
    for bad in (math.nan, math.inf):
        y = batch.y.clone()
        y[2, 1, 3] = bad
        with pytest.raises(ValidationError, match=r"^y: expected finite values"):
            Batch(batch.x, y, batch.observed, batch.valid).validate()
        x = batch.x.clone()
        x[0, 5, 0] = bad  # a valid point
        with pytest.raises(ValidationError, match=r"^x: expected finite index points"):
            Batch(x, batch.y, batch.observed, batch.valid).validate()
    obs = batch.observed.clone()
    obs[1, 5, 0] = True
    if padding:  # observed on padding
        with pytest.raises(ValidationError, match=r"^observed: expected no observed entry"):
            Batch(batch.x, batch.y, obs, batch.valid).validate()
    else:
        Batch(batch.x, batch.y, obs, batch.valid).validate()


def test_validate_accepts_any_index_point_on_padding() -> None:
    batch = _batch(padding=True)
    x = batch.x.clone()
    x[1, 4, 0], x[1, 5, 0] = math.nan, math.inf
    Batch(x, batch.y, batch.observed, batch.valid).validate()


def test_any_along_is_any_along_an_axis() -> None:
    g = torch.Generator().manual_seed(2)
    m = torch.rand(4, 6, 5, generator=g) < 0.15
    m[1, 2] = False  # a row with no True
    for dim in (0, 1, -1):
        for keepdim in (False, True):
            got = any_along(m, dim, keepdim)
            assert got.dtype == torch.bool
            assert torch.equal(got, m.any(dim=dim, keepdim=keepdim))
    t = m.transpose(0, 2)  # strided
    assert torch.equal(any_along(t, -1), t.any(dim=-1))
    assert not any_along(m, -1)[1, 2]


def _where_inputs(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """t (2, 3, 6, 4) with NaN, +-Inf and -0.0 on both sides of a mask (3, 6, 4)."""
    g = torch.Generator().manual_seed(2)
    t = torch.randn(2, 3, 6, 4, generator=g, dtype=torch.float64)
    mask = torch.rand(3, 6, 4, generator=g) < 0.6
    mask[0, :3, :2] = torch.tensor([True, False])
    t[:, 0, 0, :2] = math.nan
    t[:, 0, 1, :2] = -math.inf
    t[:, 0, 2, :2] = -0.0
    return t.to(dtype), mask


def _bits(t: torch.Tensor) -> torch.Tensor:
    itype = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.contiguous().view(itype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_where_zero_is_torch_where_bit_for_bit(dtype: torch.dtype) -> None:
    t, mask = _where_inputs(dtype)
    for tt, mm in [
        (t, mask),  # mask broadcast over the leading axis
        (t[0], mask),
        (t.transpose(1, 2)[..., ::2], mask.transpose(0, 1)[..., ::2]),  # strided
        (t, mask[:, :1]),  # a mask broadcast inside
    ]:
        ref = torch.where(mm, tt, torch.zeros_like(tt))
        out = where_zero(mm, tt)
        assert out.dtype == ref.dtype
        assert out.shape == ref.shape
        assert torch.equal(_bits(out), _bits(ref))
    # fallbacks: a mask wider than t, integer data
    wide = where_zero(mask, t[0, 0, 0])
    assert torch.equal(_bits(wide), _bits(torch.where(mask, t[0, 0, 0], 0.0).to(dtype)))
    ints = torch.arange(24).reshape(6, 4)
    assert torch.equal(where_zero(mask[0], ints), torch.where(mask[0], ints, 0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_where_zero_gradients_are_torch_wheres(dtype: torch.dtype) -> None:
    t, mask = _where_inputs(dtype)
    t = torch.where(torch.isfinite(t), t, 0.5)  # finite: gradients through a loss
    g = torch.Generator().manual_seed(3)
    w = torch.randn(t.shape, generator=g, dtype=dtype)
    grads = []
    for fn in (where_zero, lambda m, x: torch.where(m, x, torch.zeros_like(x))):
        x = t.clone().requires_grad_(True)
        out = fn(mask, x)
        # an expanded gradient (sum's) and a dense one (the product's), and a second order
        (g1,) = torch.autograd.grad((out**2 * w).sum() - out.sum(), x, create_graph=True)
        (g2,) = torch.autograd.grad((g1 * w).sum(), x)
        grads.append((out.detach(), g1.detach(), g2))
    for a, b in zip(*grads):
        assert torch.equal(_bits(a), _bits(b))
    assert not where_zero(mask, t).requires_grad
    with torch.no_grad():
        assert not where_zero(mask, t.clone().requires_grad_(True)).requires_grad


def test_where_zero_broadcast_check_and_fresh_process_cost() -> None:
    """The shape check is torch's broadcasting rule onto t's own shape, without
    ``torch.broadcast_shapes`` (whose first call imports ~500 modules: seconds of a fresh
    process's first training step)."""
    from gpvae.batch import _broadcasts_to

    for shape, target in [((3, 1), (2, 3, 4)), ((4,), (2, 3, 4)), ((), (2,)), ((2, 3), (2, 3))]:
        assert _broadcasts_to(shape, target)
        assert torch.broadcast_shapes(shape, target) == target
    for shape, target in [((3, 2), (2, 3, 4)), ((5, 2, 3, 4), (2, 3, 4)), ((2,), (1,))]:
        assert not _broadcasts_to(shape, target)
    code = (
        "import sys, torch; from gpvae.batch import where_zero; n = len(sys.modules); "
        "t = torch.ones(2, 3, requires_grad=True); where_zero(t > 0, t).sum().backward(); "
        "print(len(sys.modules) - n)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) < 20  # broadcast_shapes' first call: ~490
