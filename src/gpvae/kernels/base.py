"""Kernel base class, positive hyper-parameters, state-space forms and Sum/Product kernels.

A kernel is an ``nn.Module`` whose ``forward(x1, x2=None, diag=False)`` maps index points
``x1`` (..., N, d) and ``x2`` (..., M, d) to the covariance matrix (..., N, M), or to its
diagonal (..., N) when ``diag=True`` (``x2`` must then be omitted or equal ``x1``).

Positive hyper-parameters (variance, lengthscale, period, ...) are stored as raw,
unconstrained ``nn.Parameter`` ``raw_<name>`` and read through ``softplus`` by the
:class:`Positive` descriptor, so ``kernel.lengthscale`` is always positive, ``kernel.lengthscale
= 2.0`` sets it, and ``kernel.freeze("lengthscale")`` stops it from being learned.

Kernels with a Markovian (state-space) representation -- the Matern family (``Trend``
included), the resonator form of the periodic kernel (``HarmonicPeriodic``), and sums and
products of such kernels -- also return :class:`StateSpace` ``(F, L, Qc, H, Pinf)``
describing the linear SDE ``ds/dt = F s + L w``, ``w`` white noise with spectral density
``Qc``, ``f = H s``, with stationary state covariance ``Pinf``; :meth:`Kernel.transition`
gives the discrete transition ``A = expm(F dt)`` and process noise
``Q = Pinf - A Pinf A^T`` for steps ``dt`` (Särkkä & Solin, "Applied Stochastic
Differential Equations", 2019, ch. 12).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.functional import softplus

from gpvae.errors import InputTypeError, ShapeError, ValidationError, invalid

__all__ = [
    "Kernel",
    "Positive",
    "Product",
    "StateSpace",
    "Sum",
    "inv_softplus",
]


def inv_softplus(y: Tensor) -> Tensor:
    """Inverse of ``softplus``: ``log(expm1(y))``, computed stably for large ``y``."""
    return torch.where(y > 20.0, y, torch.log(torch.expm1(torch.clamp(y, max=20.0))))


class Positive:
    """Descriptor for a positive hyper-parameter stored raw as ``raw_<name>``.

    Reading gives ``softplus(raw_<name>)``; assigning a number or tensor stores its inverse
    softplus in place (the parameter object, and so the optimiser's reference, is kept).
    """

    def __init__(self, doc: str = "") -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.raw_name = f"raw_{name}"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return softplus(getattr(obj, self.raw_name))

    def __set__(self, obj: Any, value: float | Tensor) -> None:
        raw = getattr(obj, self.raw_name)
        try:
            new = torch.as_tensor(value, dtype=raw.dtype, device=raw.device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InputTypeError(
                f"{self.name}: expected a positive number or tensor, found {value!r}"
            ) from exc
        if new.numel() == 1:
            new = new.reshape(())
        elif new.shape != raw.shape:
            raise ShapeError(
                f"{self.name}: expected a scalar or shape {tuple(raw.shape)}, "
                f"found shape {tuple(new.shape)}"
            )
        if not bool(torch.isfinite(new).all()) or not bool((new > 0).all()):
            raise invalid(self.name, "finite positive values", new.tolist())
        with torch.no_grad():
            raw.copy_(inv_softplus(new).expand_as(raw))


def _as_positive_raw(name: str, value: float | Tensor | Iterable[float]) -> nn.Parameter:
    """Validate an initial positive value and wrap its inverse softplus as a parameter."""
    try:
        t = torch.as_tensor(value, dtype=torch.get_default_dtype())
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputTypeError(
            f"{name}: expected a positive number or sequence, found {value!r}"
        ) from exc
    if t.ndim > 1:
        raise ShapeError(
            f"{name}: expected a scalar or a 1-D sequence, found shape {tuple(t.shape)}"
        )
    if t.numel() == 0 or not bool(torch.isfinite(t).all()) or not bool((t > 0).all()):
        raise invalid(name, "finite positive values", t.tolist())
    return nn.Parameter(inv_softplus(t.clone()))


class StateSpace(NamedTuple):
    """State-space form of a stationary 1-D kernel (state dimension m, noise dimension s).

    F (m, m) feedback matrix; L (m, s) noise effect; Qc (s, s) white-noise spectral density;
    H (1, m) measurement row (f = H s); Pinf (m, m) stationary state covariance, so that
    ``k(tau) = H expm(F |tau|) Pinf H^T``.
    """

    F: Tensor
    L: Tensor
    Qc: Tensor
    H: Tensor
    Pinf: Tensor


class Kernel(nn.Module):
    """Base class of covariance functions.

    Subclasses implement :meth:`forward`. Kernels with a state-space form set
    ``has_state_space = True`` and implement :meth:`state_space` (and may override
    :meth:`transition` with a closed form).
    """

    #: True when :meth:`state_space` is available (1-D inputs only).
    has_state_space: bool = False

    def __getattr__(self, name: str) -> Any:
        # a channel kernel packed by gpvae.kernels.packing reads its raw hyper-parameters
        # as entries of the (L,) tensors of all channels (Module.__getattr__ is only asked
        # for names that are not plain attributes)
        packed = self.__dict__.get("_packed")
        if packed is not None and name in packed.params:
            return packed.params[name][packed.channel]
        return super().__getattr__(name)

    def raw_parameters(self) -> dict[str, Tensor]:
        """The kernel's own raw positive hyper-parameters by name (``raw_<name>``): its
        parameters, or for a channel kernel packed with the others of a prior
        (:mod:`gpvae.kernels.packing`) its entries of their (L,) tensors."""
        out: dict[str, Tensor] = {
            n: p for n, p in self.named_parameters(recurse=False) if n.startswith("raw_")
        }
        packed = self.__dict__.get("_packed")
        if packed is not None:
            out.update({n: p[packed.channel] for n, p in packed.params.items()})
        return out

    def forward(self, x1: Tensor, x2: Tensor | None = None, diag: bool = False) -> Tensor:
        """Covariance between index points.

        Args:
            x1: (..., N, d) index points.
            x2: (..., M, d) index points, or None for ``x1``.
            diag: return only the diagonal ``k(x1_i, x1_i)`` (..., N); needs ``x2`` None.

        Returns:
            (..., N, M) covariance matrix, or (..., N) when ``diag``.
        """
        raise NotImplementedError

    # ----------------------------------------------------------------------------------
    # composition
    def __add__(self, other: Kernel) -> Sum:
        if not isinstance(other, Kernel):
            return NotImplemented
        return Sum(self, other)

    def __mul__(self, other: Kernel) -> Product:
        if not isinstance(other, Kernel):
            return NotImplemented
        return Product(self, other)

    # ----------------------------------------------------------------------------------
    # hyper-parameters
    def freeze(self, *names: str) -> Kernel:
        """Stop learning the named positive hyper-parameters (all of them if none named)."""
        self._set_trainable(names, False)
        return self

    def unfreeze(self, *names: str) -> Kernel:
        """Learn the named positive hyper-parameters again (all of them if none named)."""
        self._set_trainable(names, True)
        return self

    def _set_trainable(self, names: tuple[str, ...], flag: bool) -> None:
        packed = self.__dict__.get("_packed")
        if packed is not None and (not names or {f"raw_{n}" for n in names} & set(packed.params)):
            shared = [n[len("raw_") :] for n in packed.params]
            raise ValidationError(
                f"names: the hyper-parameters {', '.join(shared)} of this "
                f"{type(self).__name__} are held with the other channels' as one tensor each "
                f"by its GPPrior (channel {packed.channel}), so they cannot be frozen for one "
                "channel; freeze them on the kernel given to GPPrior (every channel), or "
                "build the prior with pack_kernels=False"
            )
        own = {n[len("raw_") :]: p for n, p in self.named_parameters() if n.startswith("raw_")}
        if not names:
            for p in self.parameters():
                p.requires_grad_(flag)
            return
        for name in names:
            if name not in own:
                raise ValidationError(
                    f"names: expected hyper-parameters of {type(self).__name__} "
                    f"({', '.join(sorted(own)) or 'none'}), found {name!r}"
                )
            own[name].requires_grad_(flag)

    # ----------------------------------------------------------------------------------
    # state-space form
    @property
    def state_dim(self) -> int:
        """Dimension m of the state-space form (raises like :meth:`state_space` if none)."""
        return int(self.state_space().F.shape[-1])

    def state_space(self) -> StateSpace:
        """The kernel's state-space form; see :class:`StateSpace`."""
        raise ValidationError(
            f"kernel: expected a kernel with a state-space form (Matern12/32/52, Trend, "
            f"HarmonicPeriodic, and sums and products of them) for the markov backend, "
            f"found {type(self).__name__}"
        )

    def transition(self, dt: Tensor) -> tuple[Tensor, Tensor]:
        """Discrete-time transition over steps ``dt`` >= 0.

        Args:
            dt: (...,) non-negative time steps.

        Returns:
            ``A`` (..., m, m) = expm(F dt) and ``Q`` (..., m, m) = Pinf - A Pinf A^T.
        """
        ss = self.state_space()
        dt = torch.as_tensor(dt, device=ss.F.device)
        dtype = torch.promote_types(dt.dtype, ss.F.dtype)
        F, Pinf = ss.F.to(dtype), ss.Pinf.to(dtype)
        A = torch.linalg.matrix_exp(F * dt.to(dtype)[..., None, None])  # (..., m, m)
        Q = Pinf - A @ Pinf @ A.transpose(-1, -2)  # (..., m, m)
        return A, 0.5 * (Q + Q.transpose(-1, -2))


def _flatten(kind: type, kernels: Iterable[Kernel]) -> list[Kernel]:
    out: list[Kernel] = []
    kernels = list(kernels)
    if not kernels:
        raise ValidationError(f"kernels: expected at least one kernel for {kind.__name__}, found 0")
    for k in kernels:
        if not isinstance(k, Kernel):
            raise InputTypeError(f"kernels: expected Kernel instances, found {type(k).__name__}")
        out.extend(k.terms if isinstance(k, (Sum, Product)) and type(k) is kind else [k])
    return out


class Sum(Kernel):
    """Sum of kernels, flattened: ``(k1 + k2) + k3`` holds ``[k1, k2, k3]``.

    Has a state-space form when every term has one: block-diagonal ``F, L, Qc, Pinf`` and
    concatenated ``H``.
    """

    def __init__(self, *kernels: Kernel) -> None:
        super().__init__()
        self.kernels = nn.ModuleList(_flatten(Sum, kernels))

    @property
    def terms(self) -> list[Kernel]:
        """The flattened list of summed kernels."""
        return [k for k in self.kernels if isinstance(k, Kernel)]

    @property
    def has_state_space(self) -> bool:  # type: ignore[override]
        return all(k.has_state_space for k in self.terms)

    def forward(self, x1: Tensor, x2: Tensor | None = None, diag: bool = False) -> Tensor:
        terms = self.terms
        out = terms[0](x1, x2, diag=diag)
        for k in terms[1:]:
            out = out + k(x1, x2, diag=diag)
        return out

    @property
    def state_dim(self) -> int:
        return sum(k.state_dim for k in self.terms)

    def state_space(self) -> StateSpace:
        if not self.has_state_space:
            return super().state_space()
        parts = [k.state_space() for k in self.terms]
        return StateSpace(
            F=torch.block_diag(*[p.F for p in parts]),
            L=torch.block_diag(*[p.L for p in parts]),
            Qc=torch.block_diag(*[p.Qc for p in parts]),
            H=torch.cat([p.H for p in parts], dim=-1),
            Pinf=torch.block_diag(*[p.Pinf for p in parts]),
        )

    def transition(self, dt: Tensor) -> tuple[Tensor, Tensor]:
        """Block-diagonal transition built from each term's (possibly closed-form) one."""
        if not self.has_state_space:
            self.state_space()  # raises the standard error
        blocks = [k.transition(dt) for k in self.terms]
        return _block_diag_batched([b[0] for b in blocks]), _block_diag_batched(
            [b[1] for b in blocks]
        )


class Product(Kernel):
    """Product of kernels, flattened: ``(k1 * k2) * k3`` holds ``[k1, k2, k3]``.

    Has a state-space form when every factor has one (e.g. a quasi-periodic kernel, periodic
    times Matern): the Kronecker product of the factors' forms (Solin & Särkkä 2014), with
    ``F = F1 (x) I + I (x) F2``, ``H = H1 (x) H2``, ``Pinf = Pinf1 (x) Pinf2``, transition
    ``A = A1 (x) A2`` and ``Q = Pinf - A Pinf A^T``; ``L = I`` and ``Qc = -(F Pinf + Pinf
    F^T)``. The state dimension is the product of the factors'.
    """

    def __init__(self, *kernels: Kernel) -> None:
        super().__init__()
        self.kernels = nn.ModuleList(_flatten(Product, kernels))

    @property
    def terms(self) -> list[Kernel]:
        """The flattened list of multiplied kernels."""
        return [k for k in self.kernels if isinstance(k, Kernel)]

    def forward(self, x1: Tensor, x2: Tensor | None = None, diag: bool = False) -> Tensor:
        terms = self.terms
        out = terms[0](x1, x2, diag=diag)
        for k in terms[1:]:
            out = out * k(x1, x2, diag=diag)
        return out

    @property
    def has_state_space(self) -> bool:  # type: ignore[override]
        return all(k.has_state_space for k in self.terms)

    @property
    def state_dim(self) -> int:
        out = 1
        for k in self.terms:
            out *= k.state_dim
        return out

    def state_space(self) -> StateSpace:
        if not self.has_state_space:
            return super().state_space()
        parts = [k.state_space() for k in self.terms]
        F, H, Pinf = parts[0].F, parts[0].H, parts[0].Pinf
        for p in parts[1:]:
            eye_a = torch.eye(F.shape[-1], dtype=F.dtype, device=F.device)
            eye_b = torch.eye(p.F.shape[-1], dtype=F.dtype, device=F.device)
            F = torch.kron(F, eye_b) + torch.kron(eye_a, p.F)
            H = torch.kron(H, p.H)
            Pinf = torch.kron(Pinf, p.Pinf)
        Qc = -(F @ Pinf + Pinf @ F.transpose(-1, -2))
        eye = torch.eye(F.shape[-1], dtype=F.dtype, device=F.device)
        return StateSpace(F=F, L=eye, Qc=0.5 * (Qc + Qc.transpose(-1, -2)), H=H, Pinf=Pinf)

    def transition(self, dt: Tensor) -> tuple[Tensor, Tensor]:
        """Kronecker product of the factors' (closed-form) transitions; ``Q`` from ``Pinf``."""
        if not self.has_state_space:
            self.state_space()  # raises the standard error
        terms = self.terms
        A = terms[0].transition(dt)[0]  # (..., m1, m1)
        for k in terms[1:]:
            A = _kron_batched(A, k.transition(dt)[0])
        Pinf = self.state_space().Pinf.to(A.dtype)
        Q = Pinf - A @ Pinf @ A.transpose(-1, -2)  # (..., m, m)
        return A, 0.5 * (Q + Q.transpose(-1, -2))


def _kron_batched(a: Tensor, b: Tensor) -> Tensor:
    """Kronecker product of batched matrices (..., p, q) and (..., r, s) -> (..., p r, q s)."""
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    p, q = a.shape[-2:]
    r, s = b.shape[-2:]
    out = a[..., :, None, :, None] * b[..., None, :, None, :]  # (..., p, r, q, s)
    return out.expand(*batch, p, r, q, s).reshape(*batch, p * r, q * s)


def _block_diag_batched(mats: list[Tensor]) -> Tensor:
    """Block-diagonal matrix of batched square blocks (..., m_i, m_i) -> (..., m, m)."""
    batch = torch.broadcast_shapes(*[m.shape[:-2] for m in mats])
    size = sum(m.shape[-1] for m in mats)
    out = mats[0].new_zeros(*batch, size, size)
    i = 0
    for m in mats:
        j = i + m.shape[-1]
        out[..., i:j, i:j] = m
        i = j
    return out
