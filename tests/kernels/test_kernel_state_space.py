"""State-space forms of the Matern kernels (and sums) against the dense kernel."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from gpvae.errors import GPVAEError
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

F64 = torch.float64

MARKOV = [
    pytest.param(lambda: Matern12(lengthscale=0.7, variance=1.4), 1, id="matern12"),
    pytest.param(lambda: Matern32(lengthscale=0.7, variance=1.4), 2, id="matern32"),
    pytest.param(lambda: Matern52(lengthscale=0.7, variance=1.4), 3, id="matern52"),
    pytest.param(lambda: Matern52(lengthscale=[2.5], variance=0.3), 3, id="matern52-ls-1d"),
    pytest.param(lambda: Matern32(input_dim=1), 2, id="matern32-input-dim-1"),
    pytest.param(
        lambda: Matern12(lengthscale=3.0, variance=0.5) + Matern52(lengthscale=0.4, variance=2.0),
        4,
        id="sum-m12-m52",
    ),
    pytest.param(
        lambda: Matern32(0.5) + Matern32(2.0, 0.3) + Matern52(1.0, 0.7), 7, id="sum-m32-m32-m52"
    ),
]


def _times(n: int, seed: int) -> torch.Tensor:
    """Irregular sorted times with a repeated time, (n,)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.cumsum(torch.rand(n, generator=g, dtype=F64) * 0.6, 0)
    t[5] = t[4]
    return t


def _steps(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    dt = 3.0 * torch.rand(2, 3, generator=g, dtype=F64)
    dt[0, 0] = 0.0
    dt[1, 2] = 25.0
    return dt


@pytest.mark.parametrize(("make", "m"), MARKOV)
def test_shapes_and_state_dim(make: Callable[[], Kernel], m: int) -> None:
    k = make().double()
    assert k.has_state_space
    assert k.state_dim == m
    ss = k.state_space()
    shapes = [tuple(a.shape) for a in ss]
    assert shapes == [(m, m), (m, ss.L.shape[1]), (ss.L.shape[1],) * 2, (1, m), (m, m)]
    A, Q = k.transition(_steps(0))
    assert A.shape == Q.shape == (2, 3, m, m)


@pytest.mark.parametrize(("make", "m"), MARKOV)
def test_transition_equals_matrix_exponential(make: Callable[[], Kernel], m: int) -> None:
    k = make().double()
    ss = k.state_space()
    dt = _steps(1)
    A, Q = k.transition(dt)
    A_ref = torch.linalg.matrix_exp(ss.F * dt[..., None, None])
    torch.testing.assert_close(A, A_ref, rtol=1e-10, atol=1e-12)
    Q_ref = ss.Pinf - A_ref @ ss.Pinf @ A_ref.transpose(-1, -2)
    torch.testing.assert_close(Q, Q_ref, rtol=1e-9, atol=1e-10)
    # the base class's generic (matrix_exp) transition agrees too
    A_gen, Q_gen = Kernel.transition(k, dt)
    torch.testing.assert_close(A, A_gen, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(Q, Q_gen, rtol=1e-9, atol=1e-10)
    # dt = 0: identity and no noise
    A0, Q0 = k.transition(torch.zeros((), dtype=F64))
    torch.testing.assert_close(A0, torch.eye(m, dtype=F64))
    torch.testing.assert_close(Q0, torch.zeros(m, m, dtype=F64), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("make", "m"), MARKOV)
def test_pinf_solves_lyapunov_equation(make: Callable[[], Kernel], m: int) -> None:
    ss = make().double().state_space()
    residual = ss.F @ ss.Pinf + ss.Pinf @ ss.F.T + ss.L @ ss.Qc @ ss.L.T
    scale = float((ss.L @ ss.Qc @ ss.L.T).detach().abs().max())
    assert float(residual.detach().abs().max()) <= 1e-12 * scale
    torch.testing.assert_close(ss.Pinf, ss.Pinf.T)
    assert float(torch.linalg.eigvalsh(ss.Pinf.detach()).min()) > 0


@pytest.mark.parametrize(("make", "m"), MARKOV)
def test_state_space_reproduces_dense_kernel(make: Callable[[], Kernel], m: int) -> None:
    """Cov(f(t_i), f(t_j)) = H A(t_j - t_i) Pinf H^T for t_j >= t_i equals k(t_i, t_j)."""
    k = make().double()
    t = _times(40, 2)
    ss = k.state_space()
    dt = (t[None, :] - t[:, None]).clamp(min=0.0)  # (N, N), t_j - t_i on and above the diagonal
    A, _ = k.transition(dt)  # (N, N, m, m)
    cov = (ss.H @ A @ ss.Pinf @ ss.H.T)[..., 0, 0]  # (N, N)
    upper = torch.triu(torch.ones(40, 40, dtype=torch.bool))
    K = k(t[:, None])
    torch.testing.assert_close(cov[upper], K[upper], rtol=0, atol=1e-10)


@pytest.mark.parametrize(("make", "m"), MARKOV)
def test_state_space_is_differentiable(make: Callable[[], Kernel], m: int) -> None:
    k = make().double()
    ss = k.state_space()
    A, Q = k.transition(_steps(3))
    total = sum(a.sum() for a in ss) + A.sum() + Q.sum()
    grads = torch.autograd.grad(total, list(k.parameters()))
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: Matern12(0.7, 1.4), id="matern12"),
        pytest.param(lambda: Matern32(0.7, 1.4), id="matern32"),
        pytest.param(lambda: Matern52(0.7, 1.4), id="matern52"),
    ],
)
def test_transition_gradcheck(make: Callable[[], Kernel]) -> None:
    class Transition(torch.nn.Module):
        def __init__(self, kernel: Kernel) -> None:
            super().__init__()
            self.kernel = kernel

        def forward(self, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.kernel.transition(dt)

    module = Transition(make().double())
    names = [n for n, _ in module.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_() for p in module.parameters())
    dt = _steps(4)

    def transition(*raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.func.functional_call(module, dict(zip(names, raw)), (dt,))

    assert torch.autograd.gradcheck(transition, values)


@pytest.mark.parametrize(("make", "m"), MARKOV)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_dtype_follows_parameters(make: Callable[[], Kernel], m: int, dtype: torch.dtype) -> None:
    k = make().to(dtype)
    assert all(a.dtype == dtype for a in k.state_space())
    A, Q = k.transition(torch.tensor([0.1, 1.0], dtype=dtype))
    assert A.dtype == Q.dtype == dtype
    A_int, _ = k.transition(torch.tensor([1, 2]))  # integer steps take the parameters' dtype
    assert A_int.dtype == dtype
    torch.testing.assert_close(A_int[0], A[1])


def test_float32_close_to_float64() -> None:
    k = Matern52(lengthscale=0.7, variance=1.4)
    dt = torch.linspace(0.0, 5.0, 11)
    A32, Q32 = k.transition(dt)
    A64, Q64 = k.double().transition(dt.double())
    torch.testing.assert_close(A32.double(), A64, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(Q32.double(), Q64, rtol=1e-4, atol=1e-5)


def test_sum_state_space_is_block_diagonal() -> None:
    k1, k2 = Matern12(0.5, 2.0).double(), Matern32(1.5, 0.5).double()
    ss, s1, s2 = (k1 + k2).state_space(), k1.state_space(), k2.state_space()
    torch.testing.assert_close(ss.F, torch.block_diag(s1.F, s2.F))
    torch.testing.assert_close(ss.Pinf, torch.block_diag(s1.Pinf, s2.Pinf))
    torch.testing.assert_close(ss.H, torch.cat([s1.H, s2.H], dim=-1))
    A, _ = (k1 + k2).transition(torch.tensor([0.3, 2.0], dtype=F64))
    A1, _ = k1.transition(torch.tensor([0.3, 2.0], dtype=F64))
    torch.testing.assert_close(A[:, :1, :1], A1)
    assert float(A[:, :1, 1:].detach().abs().max()) == 0.0


NO_STATE_SPACE = [
    pytest.param(lambda: RBF(), id="rbf"),
    pytest.param(lambda: Periodic(), id="periodic"),
    pytest.param(lambda: Cauchy(), id="cauchy"),
    pytest.param(lambda: RationalQuadratic(), id="rq"),
    pytest.param(lambda: White(), id="white"),
    pytest.param(lambda: Matern32(lengthscale=[1.0, 2.0]), id="matern32-ard2"),
    pytest.param(lambda: Matern12(input_dim=3), id="matern12-input-dim-3"),
    pytest.param(lambda: Matern32() * RBF(), id="product-with-rbf"),
    pytest.param(lambda: Matern32() + RBF(), id="sum-with-rbf"),
    pytest.param(lambda: Matern32() + Periodic() * Matern12(), id="sum-with-product"),
]


@pytest.mark.parametrize("make", NO_STATE_SPACE)
def test_kernels_without_state_space_raise(make: Callable[[], Kernel]) -> None:
    k = make()
    assert not k.has_state_space
    with pytest.raises(GPVAEError, match=r"^kernel: expected"):
        k.state_space()
    with pytest.raises(GPVAEError, match=r"^kernel: expected"):
        k.transition(torch.ones(3))
    with pytest.raises(GPVAEError, match=r"^kernel: expected"):
        _ = k.state_dim
