"""Compiled loops of the sequential Kalman recursions (numba), forward and adjoint.

The loops of :mod:`gpvae.gp._kalman`, written once more as plain loops over steps, chains
and state entries, and compiled by numba (``cache=True``: compiled once per machine and
dtype, then loaded from the cache). The Python-level loop over the N steps of the torch
reference costs a dozen tiny batched operations per step whose fixed overhead, not the
arithmetic, dominates on short series; here a step of one chain is a few dozen flops.

Everything works on numpy arrays with the chains flattened: C = B * G chains, chain ``c``
belonging to channel ``g = c % G`` of series ``b = c // G``. The transitions, process noise
and its factors are tables over the K distinct steps of the batch, A, Q (K, G, m, m), read
through ``ix`` (N, B) (step n of series b uses entry ``ix[n, b]``), and their gradients are
accumulated into tables of the same shape. Shapes: P (N, C, m, m);
w, log_var, inv_s, log_s (N, C); gains (N, C, m); RTS gains (N - 1, C, m, m); H (G, m);
Pinf (G, m, m); still (N, B); data (N, C, S) and means (N, C, m, S). Scalars accumulate in
float64 whatever the arrays' dtype.

The adjoints are those of :mod:`gpvae.gp._kalman` (see the docstrings there), with the RTS
gain solve ``G_n^T = (P^-_{n+1})^{-1} A_{n+1} P_n`` and the gain terms folded into the
covariance filter. Each ``*_bwd`` function *adds* into its gradient arrays.
"""

from __future__ import annotations

import math
from functools import cache
from types import SimpleNamespace

import numba as nb
import numpy as np

__all__ = ["loops"]

# Helpers called from the loops live at module level with m as an argument: a compiled
# function held in a closure cell is pickled into numba's cache key differently in every
# process, so the loops calling it would be compiled afresh in every process.
_jit = nb.njit(cache=True, nogil=True)


@_jit
def _solve(
    M: np.ndarray, R: np.ndarray, X: np.ndarray, LU: np.ndarray, piv: np.ndarray, m: int
) -> bool:
    """X = M^{-1} R for one m x m matrix M and m x k right-hand sides (partial pivoting).

    Uses LU (m, m) and piv (m,) as scratch. Returns False when a pivot is exactly zero (for
    m <= 2, solved in closed form: when the determinant is exactly zero).
    """
    k = R.shape[1]
    if m == 1:
        d = M[0, 0]
        if d == 0.0:
            return False
        for j in range(k):
            X[0, j] = R[0, j] / d
        return True
    if m == 2:  # the inverse by its adjugate: a fifth of the elimination's time
        m00, m01, m10, m11 = M[0, 0], M[0, 1], M[1, 0], M[1, 1]
        det = m00 * m11 - m01 * m10
        if det == 0.0:
            return False
        for j in range(k):
            r0, r1 = R[0, j], R[1, j]
            X[0, j] = (m11 * r0 - m01 * r1) / det
            X[1, j] = (m00 * r1 - m10 * r0) / det
        return True
    for i in range(m):
        piv[i] = i
        for j in range(m):
            LU[i, j] = M[i, j]
        for j in range(k):
            X[i, j] = R[i, j]
    for col in range(m):
        best = col
        for i in range(col + 1, m):
            if abs(LU[i, col]) > abs(LU[best, col]):
                best = i
        if LU[best, col] == 0.0:
            return False
        if best != col:
            for j in range(m):
                LU[col, j], LU[best, j] = LU[best, j], LU[col, j]
            for j in range(k):
                X[col, j], X[best, j] = X[best, j], X[col, j]
        for i in range(col + 1, m):
            f = LU[i, col] / LU[col, col]
            for j in range(col + 1, m):
                LU[i, j] -= f * LU[col, j]
            for j in range(k):
                X[i, j] -= f * X[col, j]
    for i in range(m - 1, -1, -1):
        for j in range(k):
            acc = X[i, j]
            for t in range(i + 1, m):
                acc -= LU[i, t] * X[t, j]
            X[i, j] = acc / LU[i, i]
    return True


@_jit
def _rts_gains(A, ix, P_pred, P_filt, still, G, sgain, m):
    """RTS gains G_n = P_n A_{n+1}^T (P^-_{n+1})^{-1} (I where dt_{n+1} = 0)."""
    N, C = P_pred.shape[0], P_pred.shape[1]
    R = np.empty((m, m))
    X = np.empty((m, m))
    LU = np.empty((m, m))
    piv = np.empty(m, dtype=np.int64)
    bad = 0
    for n in range(N - 1):
        for c in range(C):
            k1 = ix[n + 1, c // G]  # the table entry of step n + 1
            gc = c % G
            if still[n + 1, c // G]:
                for i in range(m):
                    for j in range(m):
                        sgain[n, c, i, j] = 1.0 if i == j else 0.0
                continue
            for i in range(m):  # R = A_{n+1} P_n
                for j in range(m):
                    acc = 0.0
                    for k in range(m):
                        acc += A[k1, gc, i, k] * P_filt[n, c, k, j]
                    R[i, j] = acc
            if not _solve(P_pred[n + 1, c], R, X, LU, piv, m):
                bad += 1
            for i in range(m):
                for j in range(m):
                    sgain[n, c, i, j] = X[j, i]
    return bad


def _build(m_fixed: int) -> SimpleNamespace:
    """The loops for state dimension ``m_fixed`` (a compile-time constant of every loop over
    m), or for any m read from the arrays when ``m_fixed`` is 0."""

    # --------------------------------------------------------------------------------------
    # covariance filter and gains

    @_jit
    def cov_filter_fwd(
        A, Q, ix, Pinf, H, w, log_var, still, P_pred, P_filt, gain, inv_s, log_s, sgain
    ):
        """Filter covariances (symmetrised at every step), gains and RTS gains; returns the
        number of singular predicted covariances met by the RTS solves."""
        N, C = w.shape[0], w.shape[1]
        m = m_fixed if m_fixed > 0 else A.shape[2]
        G = H.shape[0]
        T = np.empty((m, m))
        for n in range(N):
            for c in range(C):
                k0 = ix[n, c // G]  # the table entry of step n
                gc = c % G
                g = c % G
                if n == 0:
                    for i in range(m):
                        for j in range(m):
                            P_pred[0, c, i, j] = 0.5 * (Pinf[g, i, j] + Pinf[g, j, i])
                else:
                    for i in range(m):  # T = A P_{n-1}
                        for j in range(m):
                            acc = 0.0
                            for k in range(m):
                                acc += A[k0, gc, i, k] * P_filt[n - 1, c, k, j]
                            T[i, j] = acc
                    for i in range(m):  # P^- = T A^T + Q, symmetrised
                        for j in range(i + 1):
                            a1 = 0.0
                            a2 = 0.0
                            for k in range(m):
                                a1 += T[i, k] * A[k0, gc, j, k]
                                a2 += T[j, k] * A[k0, gc, i, k]
                            v = 0.5 * (a1 + Q[k0, gc, i, j] + a2 + Q[k0, gc, j, i])
                            P_pred[n, c, i, j] = v
                            P_pred[n, c, j, i] = v
                s = 0.0
                for i in range(m):
                    acc = 0.0
                    for j in range(m):
                        acc += P_pred[n, c, i, j] * H[g, j]
                    gain[n, c, i] = acc  # u = P^- H^T for now
                    s += H[g, i] * acc
                wn = w[n, c]
                cc = wn / (1.0 + wn * s)
                inv_s[n, c] = cc
                log_s[n, c] = log_var[n, c] + math.log1p(wn * s)
                for i in range(m):
                    for j in range(i + 1):
                        v = P_pred[n, c, i, j] - cc * gain[n, c, i] * gain[n, c, j]
                        P_filt[n, c, i, j] = v
                        P_filt[n, c, j, i] = v
                for i in range(m):
                    gain[n, c, i] *= cc
        return _rts_gains(A, ix, P_pred, P_filt, still, G, sgain, m)

    @_jit
    def cov_filter_bwd(
        A, ix, H, w, still, P_pred, P_filt, sgain,
        g_pred, g_filt, g_gain, g_inv_s, g_log_s, g_sgain,
        g_A, g_Q, g_Pinf, g_H, g_w, g_log_var,
    ):  # fmt: skip
        """Adjoint of :func:`cov_filter_fwd`. ``g_pred`` and ``g_filt`` are overwritten (they
        accumulate the adjoints of the covariances); the ``g_*`` outputs are added to."""
        N, C = w.shape[0], w.shape[1]
        m = m_fixed if m_fixed > 0 else A.shape[2]
        G = H.shape[0]
        u = np.empty(m)
        bu = np.empty(m)
        R = np.empty((m, m))
        X = np.empty((m, m))
        LU = np.empty((m, m))
        piv = np.empty(m, dtype=np.int64)
        T = np.empty((m, m))
        bPm = np.empty((m, m))
        carry = np.zeros((C, m, m))
        # RTS gains: X = G_n^T = (P^-_{n+1})^{-1} R, R = A_{n+1} P_n.
        for n in range(N - 1):
            for c in range(C):
                k1 = ix[n + 1, c // G]  # the table entry of step n + 1
                gc = c % G
                if still[n + 1, c // G]:
                    continue
                for i in range(m):
                    for j in range(m):
                        T[i, j] = g_sgain[n, c, j, i]  # adjoint of X
                if not _solve(P_pred[n + 1, c], T, R, LU, piv, m):  # R = adjoint of the RHS
                    continue
                for i in range(m):
                    for j in range(m):
                        X[i, j] = sgain[n, c, j, i]
                for i in range(m):
                    for j in range(m):
                        a_p = 0.0  # -(bR X^T)_ij
                        a_a = 0.0  # (bR P_n^T)_ij
                        a_f = 0.0  # (A^T bR)_ij
                        for k in range(m):
                            a_p -= R[i, k] * X[j, k]
                            a_a += R[i, k] * P_filt[n, c, j, k]
                            a_f += A[k1, gc, k, i] * R[k, j]
                        g_pred[n + 1, c, i, j] += a_p
                        g_A[k1, gc, i, j] += a_a
                        g_filt[n, c, i, j] += a_f
        for n in range(N - 1, -1, -1):
            for c in range(C):
                k0 = ix[n, c // G]  # the table entry of step n
                gc = c % G
                g = c % G
                s = 0.0
                for i in range(m):
                    acc = 0.0
                    for j in range(m):
                        acc += P_pred[n, c, i, j] * H[g, j]
                    u[i] = acc
                    s += H[g, i] * acc
                wn = w[n, c]
                cc = wn / (1.0 + wn * s)
                # gain = c u, inv_s = c, log_s = log_var + log1p(w s)
                b_c = g_inv_s[n, c]
                for i in range(m):
                    b_c += g_gain[n, c, i] * u[i]
                b_s = g_log_s[n, c] * cc
                g_w[n, c] += g_log_s[n, c] * s / (1.0 + wn * s)
                g_log_var[n, c] += g_log_s[n, c]
                # the covariance update P = P^- - c u u^T, with the carried adjoint of P
                quad = 0.0
                for i in range(m):
                    acc = 0.0
                    for j in range(m):
                        acc += (g_filt[n, c, i, j] + carry[c, i, j]) * u[j]
                    quad += u[i] * acc
                b_c -= quad
                # c = w / (1 + w s): dc/dw = (1 - c s)^2, dc/ds = -c^2
                g_w[n, c] += b_c * (1.0 - cc * s) ** 2
                b_s -= cc * cc * b_c
                for i in range(m):
                    acc = 0.0
                    for j in range(m):
                        bP_ij = g_filt[n, c, i, j] + carry[c, i, j]
                        bP_ji = g_filt[n, c, j, i] + carry[c, j, i]
                        acc += (bP_ij + bP_ji) * u[j]
                    # u enters through gain = c u, through c u u^T and through s = H u
                    bu[i] = cc * g_gain[n, c, i] - cc * acc + b_s * H[g, i]
                for j in range(m):
                    acc = b_s * u[j]
                    for i in range(m):
                        acc += bu[i] * P_pred[n, c, i, j]
                    g_H[g, j] += acc
                for i in range(m):
                    for j in range(m):
                        bPm[i, j] = (
                            g_filt[n, c, i, j]
                            + carry[c, i, j]
                            + bu[i] * H[g, j]
                            + g_pred[n, c, i, j]
                        )
                if n == 0:  # Pinf and Q enter through their symmetric parts
                    for i in range(m):
                        for j in range(m):
                            g_Pinf[g, i, j] += 0.5 * (bPm[i, j] + bPm[j, i])
                    continue
                for i in range(m):  # T = A P_{n-1}
                    for j in range(m):
                        acc = 0.0
                        for k in range(m):
                            acc += A[k0, gc, i, k] * P_filt[n - 1, c, k, j]
                        T[i, j] = acc
                for i in range(m):
                    for j in range(m):
                        g_Q[k0, gc, i, j] += 0.5 * (bPm[i, j] + bPm[j, i])
                        # g_A = bPm A P^T + bPm^T A P = (bPm + bPm^T) T (P symmetric)
                        acc = 0.0
                        for k in range(m):
                            acc += (bPm[i, k] + bPm[k, i]) * T[k, j]
                        g_A[k0, gc, i, j] += acc
                for i in range(m):  # carry = A^T bPm A
                    for j in range(m):
                        acc = 0.0
                        for k in range(m):
                            acc += bPm[i, k] * A[k0, gc, k, j]
                        T[i, j] = acc
                for i in range(m):
                    for j in range(m):
                        acc = 0.0
                        for k in range(m):
                            acc += A[k0, gc, k, i] * T[k, j]
                        carry[c, i, j] = acc

    # --------------------------------------------------------------------------------------
    # mean filter

    @_jit
    def mean_filter_fwd(A, ix, H, gain, y, m_filt, innov):
        """m^-_n = A_n m_{n-1}, v_n = y_n - H m^-_n, m_n = m^-_n + K_n v_n (m^-_0 = 0)."""
        N, C, S = m_filt.shape[0], m_filt.shape[1], m_filt.shape[3]
        m = m_fixed if m_fixed > 0 else m_filt.shape[2]
        G = H.shape[0]
        mp = np.empty((m, S))
        for n in range(N):
            for c in range(C):
                k0 = ix[n, c // G]  # the table entry of step n
                gc = c % G
                g = c % G
                for i in range(m):
                    for s in range(S):
                        acc = 0.0
                        if n > 0:
                            for k in range(m):
                                acc += A[k0, gc, i, k] * m_filt[n - 1, c, k, s]
                        mp[i, s] = acc
                for s in range(S):
                    acc = y[n, c, s]
                    for i in range(m):
                        acc -= H[g, i] * mp[i, s]
                    innov[n, c, s] = acc
                    for i in range(m):
                        m_filt[n, c, i, s] = mp[i, s] + gain[n, c, i] * acc

    @_jit
    def mean_filter_bwd(A, ix, H, gain, m_filt, innov, g_mean, g_innov, g_A, g_H, g_gain, g_y):
        """Adjoint of :func:`mean_filter_fwd` (adds into g_A, g_H, g_gain, g_y)."""
        N, C, S = m_filt.shape[0], m_filt.shape[1], m_filt.shape[3]
        m = m_fixed if m_fixed > 0 else m_filt.shape[2]
        G = H.shape[0]
        carry = np.zeros((C, m, S))
        bm = np.empty((m, S))
        bv = np.empty(S)
        for n in range(N - 1, -1, -1):
            for c in range(C):
                k0 = ix[n, c // G]  # the table entry of step n
                gc = c % G
                g = c % G
                for i in range(m):
                    for s in range(S):
                        bm[i, s] = g_mean[n, c, i, s] + carry[c, i, s]
                for s in range(S):
                    acc = g_innov[n, c, s]
                    for i in range(m):
                        acc += gain[n, c, i] * bm[i, s]
                    bv[s] = acc
                    g_y[n, c, s] += acc
                for i in range(m):
                    acc = 0.0
                    for s in range(S):
                        acc += bm[i, s] * innov[n, c, s]
                    g_gain[n, c, i] += acc
                if n == 0:
                    continue
                for i in range(m):  # bm becomes the adjoint of m^-_n
                    for s in range(S):
                        bm[i, s] -= H[g, i] * bv[s]
                for i in range(m):
                    for j in range(m):
                        acc = 0.0
                        for s in range(S):
                            acc += bm[i, s] * m_filt[n - 1, c, j, s]
                        g_A[k0, gc, i, j] += acc
                for j in range(m):  # g_H -= bv (A m_{n-1})^T
                    acc = 0.0
                    for s in range(S):
                        mpj = 0.0
                        for k in range(m):
                            mpj += A[k0, gc, j, k] * m_filt[n - 1, c, k, s]
                        acc += bv[s] * mpj
                    g_H[g, j] -= acc
                for i in range(m):
                    for s in range(S):
                        acc = 0.0
                        for k in range(m):
                            acc += A[k0, gc, k, i] * bm[k, s]
                        carry[c, i, s] = acc

    # --------------------------------------------------------------------------------------
    # RTS smoother

    @_jit
    def smooth_mean_fwd(A, ix, sgain, m_filt, m_smooth):
        """m^s_{N-1} = m_{N-1}, m^s_n = m_n + G_n (m^s_{n+1} - A_{n+1} m_n)."""
        N, C, S = m_filt.shape[0], m_filt.shape[1], m_filt.shape[3]
        G = A.shape[1]
        m = m_fixed if m_fixed > 0 else m_filt.shape[2]
        d = np.empty((m, S))
        for c in range(C):
            for i in range(m):
                for s in range(S):
                    m_smooth[N - 1, c, i, s] = m_filt[N - 1, c, i, s]
        for n in range(N - 2, -1, -1):
            for c in range(C):
                k1 = ix[n + 1, c // G]  # the table entry of step n + 1
                gc = c % G
                for i in range(m):
                    for s in range(S):
                        acc = m_smooth[n + 1, c, i, s]
                        for k in range(m):
                            acc -= A[k1, gc, i, k] * m_filt[n, c, k, s]
                        d[i, s] = acc
                for i in range(m):
                    for s in range(S):
                        acc = m_filt[n, c, i, s]
                        for k in range(m):
                            acc += sgain[n, c, i, k] * d[k, s]
                        m_smooth[n, c, i, s] = acc

    @_jit
    def smooth_mean_bwd(A, ix, sgain, m_filt, m_smooth, g_smooth, g_A, g_sgain, g_filt):
        """Adjoint of :func:`smooth_mean_fwd` (adds into g_A, g_sgain, g_filt)."""
        N, C, S = m_filt.shape[0], m_filt.shape[1], m_filt.shape[3]
        G = A.shape[1]
        m = m_fixed if m_fixed > 0 else m_filt.shape[2]
        b = np.empty((C, m, S))  # adjoint of m^s_n, carried forward in n
        bd = np.empty((m, S))
        d = np.empty((m, S))
        for c in range(C):
            for i in range(m):
                for s in range(S):
                    b[c, i, s] = g_smooth[0, c, i, s]
        for n in range(N - 1):
            for c in range(C):
                k1 = ix[n + 1, c // G]  # the table entry of step n + 1
                gc = c % G
                for i in range(m):
                    for s in range(S):
                        g_filt[n, c, i, s] += b[c, i, s]
                        acc = 0.0
                        for k in range(m):
                            acc += sgain[n, c, k, i] * b[c, k, s]
                        bd[i, s] = acc
                        dd = m_smooth[n + 1, c, i, s]
                        for k in range(m):
                            dd -= A[k1, gc, i, k] * m_filt[n, c, k, s]
                        d[i, s] = dd
                for i in range(m):
                    for j in range(m):
                        acc = 0.0
                        acc2 = 0.0
                        for s in range(S):
                            acc += b[c, i, s] * d[j, s]
                            acc2 += bd[i, s] * m_filt[n, c, j, s]
                        g_sgain[n, c, i, j] += acc
                        g_A[k1, gc, i, j] -= acc2
                for i in range(m):
                    for s in range(S):
                        acc = 0.0
                        for k in range(m):
                            acc += A[k1, gc, k, i] * bd[k, s]
                        g_filt[n, c, i, s] -= acc
                        b[c, i, s] = g_smooth[n + 1, c, i, s] + bd[i, s]
        for c in range(C):
            for i in range(m):
                for s in range(S):
                    g_filt[N - 1, c, i, s] += b[c, i, s]

    @_jit
    def smooth_cov_fwd(sgain, P_filt, P_pred, P_smooth):
        """P^s_{N-1} = P_{N-1}, P^s_n = P_n + G_n (P^s_{n+1} - P^-_{n+1}) G_n^T, symmetrised."""
        N, C = P_filt.shape[0], P_filt.shape[1]
        m = m_fixed if m_fixed > 0 else P_filt.shape[2]
        T = np.empty((m, m))
        for c in range(C):
            for i in range(m):
                for j in range(m):
                    P_smooth[N - 1, c, i, j] = 0.5 * (
                        P_filt[N - 1, c, i, j] + P_filt[N - 1, c, j, i]
                    )
        for n in range(N - 2, -1, -1):
            for c in range(C):
                for i in range(m):  # T = G (P^s_{n+1} - P^-_{n+1})
                    for j in range(m):
                        acc = 0.0
                        for k in range(m):
                            acc += sgain[n, c, i, k] * (
                                P_smooth[n + 1, c, k, j] - P_pred[n + 1, c, k, j]
                            )
                        T[i, j] = acc
                for i in range(m):
                    for j in range(i + 1):
                        a1 = 0.0
                        a2 = 0.0
                        for k in range(m):
                            a1 += T[i, k] * sgain[n, c, j, k]
                            a2 += T[j, k] * sgain[n, c, i, k]
                        v = 0.5 * (P_filt[n, c, i, j] + P_filt[n, c, j, i] + a1 + a2)
                        P_smooth[n, c, i, j] = v
                        P_smooth[n, c, j, i] = v

    @_jit
    def smooth_cov_bwd(sgain, P_smooth, P_pred, g_smooth, g_sgain, g_filt, g_pred):
        """Adjoint of :func:`smooth_cov_fwd` (adds into g_sgain, g_filt, g_pred)."""
        N, C = P_smooth.shape[0], P_smooth.shape[1]
        m = m_fixed if m_fixed > 0 else P_smooth.shape[2]
        b = np.empty((C, m, m))
        T = np.empty((m, m))
        U = np.empty((m, m))
        bD = np.empty((m, m))
        D = np.empty((m, m))
        for c in range(C):  # the output is symmetric: only sym(g) matters
            for i in range(m):
                for j in range(m):
                    b[c, i, j] = 0.5 * (g_smooth[0, c, i, j] + g_smooth[0, c, j, i])
        for n in range(N - 1):
            for c in range(C):
                for i in range(m):
                    for j in range(m):
                        g_filt[n, c, i, j] += b[c, i, j]
                        D[i, j] = P_smooth[n + 1, c, i, j] - P_pred[n + 1, c, i, j]
                for i in range(m):  # T = b G
                    for j in range(m):
                        acc = 0.0
                        for k in range(m):
                            acc += b[c, i, k] * sgain[n, c, k, j]
                        T[i, j] = acc
                for i in range(m):  # bD = G^T b G
                    for j in range(m):
                        acc = 0.0
                        for k in range(m):
                            acc += sgain[n, c, k, i] * T[k, j]
                        bD[i, j] = acc
                for i in range(m):  # U = b^T G
                    for j in range(m):
                        acc = 0.0
                        for k in range(m):
                            acc += b[c, k, i] * sgain[n, c, k, j]
                        U[i, j] = acc
                for i in range(m):  # g_G = b G D^T + b^T G D
                    for j in range(m):
                        acc = 0.0
                        for k in range(m):
                            acc += T[i, k] * D[j, k] + U[i, k] * D[k, j]
                        g_sgain[n, c, i, j] += acc
                for i in range(m):
                    for j in range(m):
                        g_pred[n + 1, c, i, j] -= bD[i, j]
                        b[c, i, j] = (
                            0.5 * (g_smooth[n + 1, c, i, j] + g_smooth[n + 1, c, j, i]) + bD[i, j]
                        )
        for c in range(C):
            for i in range(m):
                for j in range(m):
                    g_filt[N - 1, c, i, j] += b[c, i, j]

    # --------------------------------------------------------------------------------------
    # prior states

    @_jit
    def linear_fwd(A, chol_q, ix, state0, eps, states):
        """s_0 = state0, s_n = A_n s_{n-1} + chol_q_{n-1} eps_{n-1} (eps: (N - 1, C, m, S))."""
        N, C, S = states.shape[0], states.shape[1], states.shape[3]
        G = A.shape[1]
        m = m_fixed if m_fixed > 0 else states.shape[2]
        for c in range(C):
            for i in range(m):
                for s in range(S):
                    states[0, c, i, s] = state0[c, i, s]
        for n in range(1, N):
            for c in range(C):
                k0 = ix[n, c // G]  # the table entry of step n
                gc = c % G
                for i in range(m):
                    for s in range(S):
                        acc = 0.0
                        for k in range(m):
                            acc += A[k0, gc, i, k] * states[n - 1, c, k, s]
                            acc += chol_q[k0, gc, i, k] * eps[n - 1, c, k, s]
                        states[n, c, i, s] = acc

    @_jit
    def linear_bwd(A, ix, eps, states, g_states, g_A, g_chol, g_state0):
        """Adjoint of :func:`linear_fwd` (adds into g_A, g_chol, g_state0)."""
        N, C, S = states.shape[0], states.shape[1], states.shape[3]
        G = A.shape[1]
        m = m_fixed if m_fixed > 0 else states.shape[2]
        b = np.empty((C, m, S))
        for c in range(C):
            for i in range(m):
                for s in range(S):
                    b[c, i, s] = g_states[N - 1, c, i, s]
        tmp = np.empty((m, S))
        for n in range(N - 1, 0, -1):
            for c in range(C):
                k0 = ix[n, c // G]  # the table entry of step n
                gc = c % G
                for i in range(m):
                    for j in range(m):
                        a1 = 0.0
                        a2 = 0.0
                        for s in range(S):
                            a1 += b[c, i, s] * states[n - 1, c, j, s]
                            a2 += b[c, i, s] * eps[n - 1, c, j, s]
                        g_A[k0, gc, i, j] += a1
                        g_chol[k0, gc, i, j] += a2
                for i in range(m):
                    for s in range(S):
                        acc = g_states[n - 1, c, i, s]
                        for k in range(m):
                            acc += A[k0, gc, k, i] * b[c, k, s]
                        tmp[i, s] = acc
                for i in range(m):
                    for s in range(S):
                        b[c, i, s] = tmp[i, s]
        for c in range(C):
            for i in range(m):
                for s in range(S):
                    g_state0[c, i, s] += b[c, i, s]

    return SimpleNamespace(
        cov_filter_bwd=cov_filter_bwd,
        cov_filter_fwd=cov_filter_fwd,
        linear_bwd=linear_bwd,
        linear_fwd=linear_fwd,
        mean_filter_bwd=mean_filter_bwd,
        mean_filter_fwd=mean_filter_fwd,
        smooth_cov_bwd=smooth_cov_bwd,
        smooth_cov_fwd=smooth_cov_fwd,
        smooth_mean_bwd=smooth_mean_bwd,
        smooth_mean_fwd=smooth_mean_fwd,
    )


#: State dimensions with loops of their own (Matern-1/2, 3/2, 5/2), unrolled by the compiler;
#: other dimensions share loops that read m from the arrays.
SPECIALISED = (1, 2, 3)


def loops(m: int) -> SimpleNamespace:
    """The compiled loops for state dimension ``m`` (compiled on first use, then cached on
    disk by numba; float64 arrays)."""
    return _loops_for(m if m in SPECIALISED else 0)


@cache
def _loops_for(m_fixed: int) -> SimpleNamespace:
    return _build(m_fixed)
