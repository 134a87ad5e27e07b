"""Parallel (associative-scan) Kalman filter, RTS smoother and simulation smoother.

The same five operations as :mod:`gpvae.gp._kalman`, with the same signatures, shapes and
results, but every recursion over the N steps is an associative scan of batched tensor ops
over the time axis: O(N) work and O(log N) sequential steps (a Python loop over the
``2 log2 N`` levels, never over N). Gradients are plain autograd through the levels.

Shapes as in :mod:`gpvae.gp._kalman`: N steps, B series, G channels of a group, m state
dimension, S' data vectors; ``A``, ``Q`` (N, B, G, m, m) (entry 0 unused, the state at step 0
is N(0, Pinf)), ``Pinf`` (G, m, m), ``H`` (G, 1, m), ``w`` (N, B, G) precisions ``1 / var``
(0 where a point is excluded, an exact no-op).

- Filter covariances (Särkkä & García-Fernández 2021, parallel Kalman filter): element k is
  ``(A'_k, C_k, J_k)`` for ``p(s_k | s_{k-1}, y_k) = N(A'_k s_{k-1} + b_k, C_k)`` and the
  information form ``J_k`` of ``p(y_k | s_{k-1})``; with ``u = Q_k H^T``,
  ``c = w / (1 + w H u)``: ``A'_k = A_k - c u (H A_k)``, ``C_k = Q_k - c u u^T``,
  ``J_k = c (H A_k)^T (H A_k)``; element 0 uses ``A_0 = 0``, ``Q_0 = Pinf``. They combine as
  ``A_ij = A_j X^-1 A_i``, ``C_ij = A_j X^-1 C_i A_j^T + C_j``,
  ``J_ij = A_i^T X^-T J_j A_i + J_i`` with ``X = I + C_i J_j``; the prefix ``0..k`` holds
  the filtered covariance ``P_k`` in ``C``. Since ``C`` and ``J`` do not depend on the data,
  the mean parts ``(b, eta)`` of the paper's elements are replaced by one affine scan once the
  gains are known: ``m_k = (A_k - K_k H A_k) m_{k-1} + K_k y_k``.
- Smoother (ibid., parallel RTS smoother), with the RTS gains ``G_k``:
  ``m^s_k = G_k m^s_{k+1} + (m_k - G_k m^-_{k+1})`` and
  ``P^s_k = G_k P^s_{k+1} G_k^T + (P_k - G_k P^-_{k+1} G_k^T)`` are a reversed affine scan
  and a reversed congruence scan.
- Prior samples: ``s_k = A_k s_{k-1} + q_k``, an affine scan, drawing the same normal
  variates in the same order as :func:`gpvae.gp._kalman.prior_states` (same generator, same
  draws).

Steps with ``dt = 0`` (``A = I``, ``Q = 0``) and excluded points (``w = 0``) are exact, as in
the sequential path. The scan is the work-efficient odd/even recursion (pairs are combined,
the half-length sequence is scanned recursively, the even positions are filled in): about 2N
combinations in ``2 ceil(log2 N)`` levels.

References:
    S. Särkkä and Á. F. García-Fernández, "Temporal parallelization of Bayesian smoothers",
    IEEE Transactions on Automatic Control 66(1), 2021.
    G. E. Blelloch, "Prefix sums and their applications", CMU-CS-90-190, 1990.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gpvae.gp._kalman import Covariances, gains, prior_noise
from gpvae.gp.linalg import sym

__all__ = [
    "associative_scan",
    "filter_covariances",
    "filter_means",
    "prior_states",
    "smooth_covariances",
    "smooth_means",
]

Elements = tuple[Tensor, ...]
Combine = Callable[[Elements, Elements], Elements]


# --------------------------------------------------------------------------------------
# the scan


def associative_scan(elems: Elements, combine: Combine) -> Elements:
    """Inclusive prefix scan ``r_k = e_0 * e_1 * ... * e_k`` along axis 0.

    Work-efficient: about 2N calls' worth of batched combinations in ``2 ceil(log2 N)``
    levels (a Python recursion over the levels only).

    Args:
        elems: tensors with the N elements on axis 0 (N >= 1), any trailing shapes.
        combine: the associative operator, ``combine(earlier, later)`` on tuples of tensors
            whose axis 0 has the same length; it must be batched over axis 0.

    Returns:
        Tensors of the shapes of ``elems`` holding the prefixes.
    """
    n = elems[0].shape[0]
    if n < 2:
        return elems
    half = n // 2
    pairs = combine(
        tuple(e[0 : 2 * half : 2] for e in elems), tuple(e[1 : 2 * half : 2] for e in elems)
    )  # (half, ...): e_{2i} * e_{2i+1}
    odd = associative_scan(pairs, combine)  # prefixes ending at 1, 3, 5, ...
    num_even = (n - 1) // 2  # prefixes ending at 2, 4, ...: odd[i - 1] * e_{2i}
    even = combine(tuple(o[:num_even] for o in odd), tuple(e[2:n:2] for e in elems))
    out = []
    for e, o, ev in zip(elems, odd, even):
        evens = torch.cat([e[:1], ev])  # ((n + 1) // 2, ...): prefixes at 0, 2, 4, ...
        inter = torch.stack([evens[:half], o], dim=1).reshape(2 * half, *e.shape[1:])
        out.append(inter if n % 2 == 0 else torch.cat([inter, evens[half:]]))
    return tuple(out)


def _affine(earlier: Elements, later: Elements) -> Elements:
    """Compose affine maps ``s -> M s + c``: the later after the earlier."""
    Ma, ca = earlier
    Mb, cb = later
    m = Ma.shape[-1]
    prod = Mb @ torch.cat([Ma, ca], dim=-1)  # (n, ..., m, m + S')
    return prod[..., :m], prod[..., m:] + cb


def _congruence(earlier: Elements, later: Elements) -> Elements:
    """Compose maps ``P -> E P E^T + L``: the later after the earlier."""
    Ea, La = earlier
    Eb, Lb = later
    return Eb @ Ea, sym(Eb @ La @ Eb.transpose(-1, -2) + Lb)


def _affine_scan(M: Tensor, c: Tensor, reverse: bool = False) -> Tensor:
    """States of ``s_k = M_k s_{k-1} + c_k`` from ``s_{-1} = 0`` (reverse: from the end,
    ``s_k = M_k s_{k+1} + c_k``); M (N, ..., m, m), c (N, ..., m, S') -> (N, ..., m, S')."""
    if reverse:
        return _affine_scan(M.flip(0), c.flip(0)).flip(0)
    return associative_scan((M, c), _affine)[1]


def _filter_combine(earlier: Elements, later: Elements) -> Elements:
    """Combine filtering elements ``(A, C, J)`` (Särkkä & García-Fernández 2021)."""
    Ai, Ci, Ji = earlier
    Aj, Cj, Jj = later
    # Strided slices of the level's elements: copy the matrix-product operands once here,
    # rather than once per product inside matmul.
    Ai, Ci, Aj, Jj = Ai.contiguous(), Ci.contiguous(), Aj.contiguous(), Jj.contiguous()
    m = Ai.shape[-1]
    eye = torch.eye(m, dtype=Ai.dtype, device=Ai.device)
    X = eye + Ci @ Jj  # (n, ..., m, m), eigenvalues >= 1
    XAC = torch.linalg.solve(X, torch.cat([Ai, Ci], dim=-1))  # X^-1 [A_i, C_i]
    XJ = torch.linalg.solve(X.transpose(-1, -2), Jj)  # X^-T J_j = (I + J_j C_i)^-1 J_j
    A = Aj @ XAC[..., :m]
    C = sym(Aj @ XAC[..., m:] @ Aj.transpose(-1, -2) + Cj)
    J = sym(Ai.transpose(-1, -2) @ XJ @ Ai + Ji)
    return A, C, J


# --------------------------------------------------------------------------------------
# filter


def filter_covariances(
    A: Tensor, Q: Tensor, Pinf: Tensor, H: Tensor, w: Tensor, log_var: Tensor, still: Tensor
) -> Covariances:
    """Covariance part of the Kalman filter by a parallel scan, and the RTS gains.

    Same arguments and results as :func:`gpvae.gp._kalman.filter_covariances`.

    Args:
        A, Q: (N, B, G, m, m) transitions.
        Pinf: (G, m, m) stationary covariances (state covariance at step 0).
        H: (G, 1, m) measurement rows.
        w: (N, B, G) precisions, 0 where excluded.
        log_var: (N, B, G) ``log(var)`` where included, any finite value elsewhere.
        still: (N, B) bool, True where ``dt_n = 0``: the RTS gain there is exactly I.

    Returns:
        :class:`gpvae.gp._kalman.Covariances`.

    Raises:
        NumericalError: a predicted covariance is singular to working precision.
    """
    _, B, G, m, _ = A.shape
    Ht = H.transpose(-1, -2)  # (G, m, 1)
    Ae = torch.cat([torch.zeros_like(A[:1]), A[1:]])  # (N, B, G, m, m): A_0 = 0
    Qe = torch.cat([Pinf.expand(1, B, G, m, m), Q[1:]])  # Q_0 = Pinf
    u = Qe @ Ht  # (N, B, G, m, 1)
    wn = w[..., None, None]  # (N, B, G, 1, 1)
    c = wn / (1.0 + wn * (H @ u))  # (N, B, G, 1, 1)
    HA = H @ Ae  # (N, B, G, 1, m)
    elems = (
        Ae - (c * u) @ HA,  # (I - K H) A
        Qe - (c * u) @ u.transpose(-1, -2),  # (I - K H) Q
        c * HA.transpose(-1, -2) @ HA,  # A^T H^T S^-1 H A
    )
    P_filt = sym(associative_scan(elems, _filter_combine)[1])  # (N, B, G, m, m)
    P_pred = torch.cat(
        [Pinf.expand(1, B, G, m, m), A[1:] @ P_filt[:-1] @ A[1:].transpose(-1, -2) + Q[1:]]
    )
    return gains(A, H, P_filt=P_filt, P_pred=sym(P_pred), w=w, log_var=log_var, still=still)


def filter_means(A: Tensor, H: Tensor, gain: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean part of the Kalman filter for a batch of S' data vectors, by an affine scan.

    Args:
        A: (N, B, G, m, m) transitions.
        H: (G, 1, m) measurement rows.
        gain: (N, B, G, m, 1) Kalman gains (0 where excluded).
        y: (N, B, G, S') data (any finite value where excluded).

    Returns:
        Filtered means (N, B, G, m, S') and innovations ``y_n - H m_n^-`` (N, B, G, S').
    """
    Ae = torch.cat([torch.zeros_like(A[:1]), A[1:]])  # (N, B, G, m, m): m^-_0 = 0
    M = Ae - gain @ (H @ Ae)  # (I - K H) A
    m_filt = _affine_scan(M, gain @ y[..., None, :])  # (N, B, G, m, S')
    m_pred = Ae @ torch.cat([torch.zeros_like(m_filt[:1]), m_filt[:-1]])  # (N, B, G, m, S')
    innov = y - (H @ m_pred)[..., 0, :]  # (N, B, G, S')
    return m_filt, innov


# --------------------------------------------------------------------------------------
# smoother


def smooth_means(A: Tensor, smooth_gain: Tensor, m_filt: Tensor) -> Tensor:
    """RTS smoother means by a reversed affine scan.

    Args:
        A: (N, B, G, m, m) transitions.
        smooth_gain: (N - 1, B, G, m, m) RTS gains.
        m_filt: (N, B, G, m, S') filtered means.

    Returns:
        (N, B, G, m, S') smoothed means.
    """
    m_pred_next = A[1:] @ m_filt[:-1]  # (N-1, B, G, m, S')
    E = torch.cat([smooth_gain, torch.zeros_like(A[:1])])  # (N, B, G, m, m): E_{N-1} = 0
    g = torch.cat([m_filt[:-1] - smooth_gain @ m_pred_next, m_filt[-1:]])
    return _affine_scan(E, g, reverse=True)


def smooth_covariances(cov: Covariances) -> Tensor:
    """RTS smoother covariances by a reversed congruence scan.

    Args:
        cov: the filter's :class:`gpvae.gp._kalman.Covariances`.

    Returns:
        (N, B, G, m, m) smoothed covariances.
    """
    Gn, P_filt, P_pred = cov.smooth_gain, cov.P_filt, cov.P_pred
    E = torch.cat([Gn, torch.zeros_like(P_filt[:1])])  # (N, B, G, m, m)
    Lk = P_filt[:-1] - Gn @ P_pred[1:] @ Gn.transpose(-1, -2)  # (N-1, B, G, m, m)
    L = torch.cat([sym(Lk), P_filt[-1:]])
    return associative_scan((E.flip(0), L.flip(0)), _congruence)[1].flip(0)


# --------------------------------------------------------------------------------------
# prior samples


def prior_states(
    A: Tensor,
    Q: Tensor,
    Pinf: Tensor,
    num_samples: int,
    generator: torch.Generator | None = None,
    chol_q: Tensor | None = None,
    noise_dtype: torch.dtype | None = None,
) -> Tensor:
    """Joint samples of the prior state sequence by an affine scan, reparameterised.

    Same draws as :func:`gpvae.gp._kalman.prior_states` for the same generator state:
    ``s_0 = chol(Pinf) e_0``, ``s_n = A_n s_{n-1} + chol(Q_n + jitter) e_n`` with the same
    jitter ``eps^(3/4) diag(Pinf)``.

    Args:
        A, Q: (N, B, G, m, m) transitions.
        Pinf: (G, m, m) stationary covariances.
        num_samples: S.
        generator: random number generator, or None for the global one.
        chol_q: (N - 1, B, G, m, m) factors of ``Q[1:]`` when known, or None.
        noise_dtype: dtype of the normal draws (then cast to that of ``A``), None for that
            of ``A``: the same draws whatever dtype the recursion runs in.

    Returns:
        (N, B, G, m, S) states.

    Raises:
        NumericalError: a covariance could not be factorised.
    """
    state0, noise = prior_noise(A, Q, Pinf, num_samples, generator, chol_q, noise_dtype)
    M = torch.cat([torch.zeros_like(A[:1]), A[1:]])  # (N, B, G, m, m)
    return _affine_scan(M, torch.cat([state0[None], noise]))
