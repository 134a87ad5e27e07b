"""The fused structured-posterior step on struct-of-arrays buffers (numba), forward and adjoint.

The maths of :mod:`gpvae.gp._loops` and :mod:`gpvae.gp._fused_loops` (covariance filter with
its gains and RTS gains, prior draws, synthetic data, mean filter, the two smoothers, KL and
draws), laid out with the chain index *last*: a state covariance is stored as (N, m, m, C),
so entry (i, j) of every chain at step n is one contiguous row of C numbers. Every statement
of the small-matrix algebra is then a loop over the C chains with unit stride, which LLVM
vectorises, instead of a loop over chains around tiny m x m loops (the layout of
:mod:`gpvae.gp._loops`, which stays the reference and the path for other state dimensions).
The RTS gain solves are closed forms for m = 1, 2 (the adjugate, as the reference) and an
LDL^T factorisation for m = 3 (the predicted covariances are symmetric positive definite),
so no per-chain pivoting breaks the vector loops.

Everything is float64. Shapes: N steps, B series, G channels of the group, C = B * G chains
(chain ``c`` = channel ``c % G`` of series ``c // G``), m state dimension (1, 2 or 3), S
draws, S' = S + 1 data columns. Tables A, Q, CQ (K, G, m, m) are read through ix (N, B);
the transitions are expanded once to Ae (N, m, m, C) (step 0 unused). H (G, m); Pinf and
chol0 (G, m, m); still (N, B); mean, var, inc (N, C); eps (N, m, S, C) (step 0: the initial
states' noise); e (N, S, C).

Two entry points, :func:`forward` and :func:`backward` (each a single compiled call: numba
loads one cached function per entry point, a fixed cost per process).

This file is longer than the project's ~600 lines on purpose: numba's on-disk cache of a
compiled function is invalidated only by changes to the file that defines it, so a loop
calling helpers from another file would keep running stale copies of them after an edit.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = ["backward", "forward"]

_jit = nb.njit(cache=True, nogil=True, error_model="numpy")


# Large buffers are carved from an arena (a 1-D float64 array reused across calls by the
# caller): fresh allocations of megabytes are fresh pages, and their page faults cost as much
# as the arithmetic at these sizes. ``pos`` (1,) int64 is the arena's fill mark.


@_jit
def _take(ar, pos, size):
    start = pos[0]
    pos[0] = start + size
    return ar[start : start + size]


@_jit
def _e2(ar, pos, a, b):
    return _take(ar, pos, a * b).reshape((a, b))


@_jit
def _e3(ar, pos, a, b, c):
    return _take(ar, pos, a * b * c).reshape((a, b, c))


@_jit
def _e4(ar, pos, a, b, c, d):
    return _take(ar, pos, a * b * c * d).reshape((a, b, c, d))


@_jit
def _z2(ar, pos, a, b):
    out = _take(ar, pos, a * b)
    out[:] = 0.0
    return out.reshape((a, b))


@_jit
def _z3(ar, pos, a, b, c):
    out = _take(ar, pos, a * b * c)
    out[:] = 0.0
    return out.reshape((a, b, c))


@_jit
def _z4(ar, pos, a, b, c, d):
    out = _take(ar, pos, a * b * c * d)
    out[:] = 0.0
    return out.reshape((a, b, c, d))


def arena_sizes(N: int, m: int, S: int, C: int) -> tuple[int, int]:
    """Lengths of the forward arena (kept until the backward pass) and of the backward one
    (scratch) for :func:`forward` and :func:`backward`."""
    S1 = S + 1
    fwd = N * C * (3 + 4 * m * m + m + 1 + m * S + S1 + 2 * m * S1 + S1 + m * m)
    bwd = N * C * (m * S + m * S1 + m * m + 3 + 4 * m * m + m * S1 + m + S1 + 1)
    return fwd, bwd


# ----------------------------------------------------------------------------- helpers


@_jit
def _expand(T, ix, G, N, ar, pos):
    """(N, m, m, C) with entry [n, :, :, c] = T[ix[n, c // G], c % G] for n >= 1 (0 at n = 0)."""
    m = T.shape[2]
    B = ix.shape[1]
    C = B * G
    out = _z4(ar, pos, N, m, m, C)
    for n in range(1, N):
        _gather_step(T, ix, n, G, out[n])
    return out


@_jit
def _gather_step(T, ix, n, G, out):
    """out (m, m, C) = T[ix[n, c // G], c % G] for every chain c."""
    m = T.shape[2]
    B = ix.shape[1]
    for i in range(m):
        for j in range(m):
            o = out[i, j]
            for b in range(B):
                t = T[ix[n, b], :, i, j]
                for g in range(G):
                    o[b * G + g] = t[g]


@_jit
def _scatter_step(src, ix, n, G, out):
    """Adds src (m, m, C) into the table out (K, G, m, m) through ix[n] (the adjoint of
    :func:`_gather_step`)."""
    m = out.shape[2]
    B = ix.shape[1]
    for i in range(m):
        for j in range(m):
            r = src[i, j]
            for b in range(B):
                o = out[ix[n, b], :, i, j]
                for g in range(G):
                    o[g] += r[b * G + g]


@_jit
def _still_row(still, n, G, out):
    """out (C,) = still[n, c // G] (without a division per chain)."""
    B = still.shape[1]
    for b in range(B):
        v = still[n, b]
        for g in range(G):
            out[b * G + g] = v


@_jit
def _matmul(X, Y, out):
    """out[i, j] = sum_k X[i, k] Y[k, j] per chain; X, Y, out (m, m, C)."""
    m, _, C = X.shape
    for i in range(m):
        for j in range(m):
            o = out[i, j]
            x, y = X[i, 0], Y[0, j]
            for c in range(C):
                o[c] = x[c] * y[c]
            for k in range(1, m):
                x, y = X[i, k], Y[k, j]
                for c in range(C):
                    o[c] += x[c] * y[c]


@_jit
def _tmatmul(X, Y, out):
    """out[i, j] = sum_k X[k, i] Y[k, j] per chain (X transposed); X, Y, out (m, m, C)."""
    m, _, C = X.shape
    for i in range(m):
        for j in range(m):
            o = out[i, j]
            x, y = X[0, i], Y[0, j]
            for c in range(C):
                o[c] = x[c] * y[c]
            for k in range(1, m):
                x, y = X[k, i], Y[k, j]
                for c in range(C):
                    o[c] += x[c] * y[c]


@_jit
def _matvec(M, v, out):
    """out[i, s] = sum_k M[i, k] v[k, s] per chain; M (m, m, C), v and out (m, S, C)."""
    m, S, C = v.shape
    for i in range(m):
        for s in range(S):
            o = out[i, s]
            x, y = M[i, 0], v[0, s]
            for c in range(C):
                o[c] = x[c] * y[c]
            for k in range(1, m):
                x, y = M[i, k], v[k, s]
                for c in range(C):
                    o[c] += x[c] * y[c]


@_jit
def _tmatvec(M, v, out):
    """out[i, s] = sum_k M[k, i] v[k, s] per chain (M transposed)."""
    m, S, C = v.shape
    for i in range(m):
        for s in range(S):
            o = out[i, s]
            x, y = M[0, i], v[0, s]
            for c in range(C):
                o[c] = x[c] * y[c]
            for k in range(1, m):
                x, y = M[k, i], v[k, s]
                for c in range(C):
                    o[c] += x[c] * y[c]


@_jit
def _outer_add(X, Y, out, sign):
    """out[i, j] += sign * sum_s X[i, s] Y[j, s] per chain; X, Y (m, S, C), out (m, m, C)."""
    m, S, C = X.shape
    for i in range(m):
        for j in range(m):
            o = out[i, j]
            for s in range(S):
                x, y = X[i, s], Y[j, s]
                for c in range(C):
                    o[c] += sign * (x[c] * y[c])


@_jit
def _solve(M, R, X, skip):
    """X = M^{-1} R per chain for symmetric positive definite M (m, m, C) and R, X (m, k, C);
    returns how many chains not skipped have an exactly singular M (a zero determinant for
    m <= 2, a zero pivot of LDL^T for m = 3)."""
    m, k, C = R.shape
    bad = 0
    if m == 1:
        d = M[0, 0]
        for c in range(C):
            if d[c] == 0.0 and not skip[c]:
                bad += 1
        for j in range(k):
            r, x = R[0, j], X[0, j]
            for c in range(C):
                x[c] = r[c] / d[c]
        return bad
    if m == 2:
        a, b, e, f = M[0, 0], M[0, 1], M[1, 0], M[1, 1]
        det = np.empty(C)
        for c in range(C):
            det[c] = a[c] * f[c] - b[c] * e[c]
        for c in range(C):
            if det[c] == 0.0 and not skip[c]:
                bad += 1
        for j in range(k):
            r0, r1, x0, x1 = R[0, j], R[1, j], X[0, j], X[1, j]
            for c in range(C):
                x0[c] = (f[c] * r0[c] - b[c] * r1[c]) / det[c]
                x1[c] = (a[c] * r1[c] - e[c] * r0[c]) / det[c]
        return bad
    # m == 3: M = L D L^T (unit lower L), from the lower triangle
    d0 = np.empty(C)
    d1 = np.empty(C)
    d2 = np.empty(C)
    l10 = np.empty(C)
    l20 = np.empty(C)
    l21 = np.empty(C)
    M00, M10, M11, M20, M21, M22 = M[0, 0], M[1, 0], M[1, 1], M[2, 0], M[2, 1], M[2, 2]
    for c in range(C):
        d0[c] = M00[c]
        l10[c] = M10[c] / d0[c]
        l20[c] = M20[c] / d0[c]
        d1[c] = M11[c] - l10[c] * M10[c]
        l21[c] = (M21[c] - l20[c] * M10[c]) / d1[c]
        d2[c] = M22[c] - l20[c] * M20[c] - l21[c] * l21[c] * d1[c]
    for c in range(C):
        if (d0[c] == 0.0 or d1[c] == 0.0 or d2[c] == 0.0) and not skip[c]:
            bad += 1
    for j in range(k):
        r0, r1, r2 = R[0, j], R[1, j], R[2, j]
        x0, x1, x2 = X[0, j], X[1, j], X[2, j]
        for c in range(C):
            z0 = r0[c]
            z1 = r1[c] - l10[c] * z0
            z2 = r2[c] - l20[c] * z0 - l21[c] * z1
            y2 = z2 / d2[c]
            y1 = z1 / d1[c] - l21[c] * y2
            x2[c] = y2
            x1[c] = y1
            x0[c] = z0 / d0[c] - l10[c] * y1 - l20[c] * y2
    return bad


@_jit
def _project(P, He, u, s):
    """u = P H^T (m, C) and s = H u (C,) per chain, for P (m, m, C), He (m, C)."""
    m, _, C = P.shape
    for c in range(C):
        s[c] = 0.0
    for i in range(m):
        ui = u[i]
        for c in range(C):
            ui[c] = 0.0
        for j in range(m):
            p, h = P[i, j], He[j]
            for c in range(C):
                ui[c] += p[c] * h[c]
        h = He[i]
        for c in range(C):
            s[c] += h[c] * ui[c]


@_jit
def _hdot(X, He, out):
    """out = H x per chain for X (m, C)."""
    m, C = X.shape
    x, h = X[0], He[0]
    for c in range(C):
        out[c] = x[c] * h[c]
    for i in range(1, m):
        x, h = X[i], He[i]
        for c in range(C):
            out[c] += x[c] * h[c]


@_jit
def _hph(P, He, out):
    """out = H P H^T per chain for P (m, m, C)."""
    m, _, C = P.shape
    for c in range(C):
        out[c] = 0.0
    for i in range(m):
        for j in range(m):
            p, hi, hj = P[i, j], He[i], He[j]
            for c in range(C):
                out[c] += p[c] * hi[c] * hj[c]


# ----------------------------------------------------------------------------- forward


#: Products of the factors ``1 + x`` (each >= 1) are logged before they exceed this (2^400):
#: a product below it times a factor below it stays finite.
_LOG_FLUSH = 2.0**400


@_jit
def _log_terms(x, inc, prod, logs):
    """Adds ``log1p(x)`` of the included chains (x >= 0) to ``logs`` (C,) through the running
    products ``prod`` (C,) of the factors ``1 + x``: one logarithm per chain at the end (and
    whenever a product grows past :data:`_LOG_FLUSH`) instead of one per point (a call of
    the C library per point, which does not vectorise: about 0.4 ms of the ~4 ms forward
    pass at N = 48 with 1,024 chains; the products vectorise). The same sum up to the
    rounding of the factors (an absolute error of about 1e-16 per point); a step with a
    factor past the bound takes ``log1p`` at once."""
    C = x.shape[0]
    big = 0
    for c in range(C):
        big += x[c] > _LOG_FLUSH
    if big:
        for c in range(C):
            if inc[c]:
                logs[c] += math.log1p(x[c])
        return
    grown = 0
    for c in range(C):
        p = prod[c] * ((1.0 + x[c]) if inc[c] else 1.0)
        prod[c] = p
        grown += p > _LOG_FLUSH
    if grown:
        for c in range(C):
            logs[c] += math.log(prod[c])
            prod[c] = 1.0


@_jit
def _cov_filter(Ae, Q, ix, Pinf, He, w, inc, still, G, ar, pos):
    """Predicted and filtered covariances (symmetrised), gains, 1 / s of the innovations,
    RTS gains; the sum over included points of ``log(s / var)`` per chain (``log1p(s_f /
    var)``, with s_f the predicted variance of f; see :func:`_log_terms`); and the number of
    singular predicted covariances met."""
    N, m, _, C = Ae.shape
    P_pred = _e4(ar, pos, N, m, m, C)
    P_filt = _e4(ar, pos, N, m, m, C)
    gain = _e3(ar, pos, N, m, C)
    inv_s = _e2(ar, pos, N, C)
    sgain = _e4(ar, pos, max(N - 1, 0), m, m, C)
    T = np.empty((m, m, C))
    Qn = np.empty((m, m, C))
    s = np.empty(C)
    cc = np.empty(C)
    ratio = np.empty(C)  # s_f / var of each chain at step n
    logs = np.zeros(C)  # the logarithms taken so far
    prod = np.ones(C)  # and the product of the factors 1 + x not yet taken
    for n in range(N):
        Pp = P_pred[n]
        if n == 0:
            for c in range(C):
                g = c % G
                for i in range(m):
                    for j in range(m):
                        Pp[i, j, c] = 0.5 * (Pinf[g, i, j] + Pinf[g, j, i])
        else:
            A = Ae[n]
            _gather_step(Q, ix, n, G, Qn)
            _matmul(A, P_filt[n - 1], T)  # T = A P_{n-1}
            for i in range(m):  # P^- = T A^T + Q, symmetrised
                for j in range(i + 1):
                    o, qij, qji = Pp[i, j], Qn[i, j], Qn[j, i]
                    for c in range(C):
                        o[c] = qij[c] + qji[c]
                    for k in range(m):
                        t1, a1, t2, a2 = T[i, k], A[j, k], T[j, k], A[i, k]
                        for c in range(C):
                            o[c] += t1[c] * a1[c] + t2[c] * a2[c]
                    for c in range(C):
                        o[c] *= 0.5
                    if j < i:
                        o2 = Pp[j, i]
                        for c in range(C):
                            o2[c] = o[c]
        u = gain[n]  # u = P^- H^T for now
        _project(Pp, He, u, s)
        wn, isn = w[n], inv_s[n]
        for c in range(C):
            r = wn[c] * s[c]
            ratio[c] = r
            cc[c] = wn[c] / (1.0 + r)
            isn[c] = cc[c]
        _log_terms(ratio, inc[n], prod, logs)
        Pf = P_filt[n]
        for i in range(m):
            for j in range(i + 1):
                o, p, ui, uj = Pf[i, j], Pp[i, j], u[i], u[j]
                for c in range(C):
                    o[c] = p[c] - cc[c] * ui[c] * uj[c]
                if j < i:
                    o2 = Pf[j, i]
                    for c in range(C):
                        o2[c] = o[c]
        for i in range(m):
            ui = u[i]
            for c in range(C):
                ui[c] *= cc[c]
    # RTS gains G_n = P_n A_{n+1}^T (P^-_{n+1})^{-1}: X = G_n^T solves P^-_{n+1} X = A_{n+1} P_n
    X = np.empty((m, m, C))
    skip = np.empty(C, dtype=np.bool_)
    bad = 0
    for n in range(N - 1):
        _still_row(still, n + 1, G, skip)
        _matmul(Ae[n + 1], P_filt[n], T)
        bad += _solve(P_pred[n + 1], T, X, skip)
        sg = sgain[n]
        for i in range(m):
            for j in range(m):
                o, x = sg[i, j], X[j, i]
                one = 1.0 if i == j else 0.0
                for c in range(C):
                    o[c] = one if skip[c] else x[c]
    for c in range(C):
        logs[c] += math.log(prod[c])
    return P_pred, P_filt, gain, inv_s, logs, sgain, bad


@_jit
def _linear(Ae, CQ, ix, chol0, eps, G, ar, pos):
    """Prior draws: s_0 = chol0 eps_0, s_n = A_n s_{n-1} + CQ_n eps_n; (N, m, S, C)."""
    N, m, S, C = eps.shape
    states = _e4(ar, pos, N, m, S, C)
    for c in range(C):
        g = c % G
        for i in range(m):
            for s in range(S):
                acc = 0.0
                for q in range(m):
                    acc += chol0[g, i, q] * eps[0, q, s, c]
                states[0, i, s, c] = acc
    L = np.empty((m, m, C))
    tmp = np.empty((m, S, C))
    for n in range(1, N):
        _gather_step(CQ, ix, n, G, L)
        _matvec(Ae[n], states[n - 1], states[n])
        _matvec(L, eps[n], tmp)
        o_n = states[n]
        for i in range(m):
            for s in range(S):
                o, t = o_n[i, s], tmp[i, s]
                for c in range(C):
                    o[c] += t[c]
    return states


@_jit
def _data(He, inc, y, sd, states, e, ar, pos):
    """D (N, S', C): row 0 the pseudo-observations, row s + 1 the residual of draw s's
    synthetic data ``y - (H x_s + sd e_s)`` where included (else 0)."""
    N, _, S, C = states.shape
    D = _e3(ar, pos, N, S + 1, C)
    fp = np.empty(C)
    for n in range(N):
        yn, sdn, incn = y[n], sd[n], inc[n]
        d0 = D[n, 0]
        for c in range(C):
            d0[c] = yn[c]
        for s in range(S):
            d, en = D[n, s + 1], e[n, s]
            _hdot(states[n, :, s], He, fp)
            for c in range(C):
                r = yn[c] - (fp[c] + sdn[c] * en[c])
                d[c] = r if incn[c] else 0.0
    return D


@_jit
def _mean_filter(Ae, He, gain, D, ar, pos):
    """m^-_n = A_n m_{n-1}, v_n = D_n - H m^-_n, m_n = m^-_n + K_n v_n (m^-_0 = 0)."""
    N, S1, C = D.shape
    m = He.shape[0]
    m_filt = _e4(ar, pos, N, m, S1, C)
    innov = _e3(ar, pos, N, S1, C)
    mp = np.zeros((m, S1, C))
    for n in range(N):
        if n > 0:
            _matvec(Ae[n], m_filt[n - 1], mp)
        for s in range(S1):
            v, d = innov[n, s], D[n, s]
            for c in range(C):
                v[c] = d[c]
            for i in range(m):
                h, p = He[i], mp[i, s]
                for c in range(C):
                    v[c] -= h[c] * p[c]
            for i in range(m):
                o, p, k = m_filt[n, i, s], mp[i, s], gain[n, i]
                for c in range(C):
                    o[c] = p[c] + k[c] * v[c]
    return m_filt, innov


@_jit
def _smooth(Ae, sgain, m_filt, P_filt, P_pred, ar, pos):
    """Smoothed means m^s_n = m_n + G_n (m^s_{n+1} - A_{n+1} m_n) and covariances
    P^s_n = P_n + G_n (P^s_{n+1} - P^-_{n+1}) G_n^T (symmetrised)."""
    N, m, S1, C = m_filt.shape
    m_smooth = _e4(ar, pos, N, m, S1, C)
    P_smooth = _e4(ar, pos, N, m, m, C)
    m_smooth[N - 1] = m_filt[N - 1]
    for i in range(m):
        for j in range(m):
            o, a, b = P_smooth[N - 1, i, j], P_filt[N - 1, i, j], P_filt[N - 1, j, i]
            for c in range(C):
                o[c] = 0.5 * (a[c] + b[c])
    d = np.empty((m, S1, C))
    Dm = np.empty((m, m, C))
    T = np.empty((m, m, C))
    for n in range(N - 2, -1, -1):
        sg = sgain[n]
        _matvec(Ae[n + 1], m_filt[n], d)
        for i in range(m):
            for s in range(S1):
                o, a = d[i, s], m_smooth[n + 1, i, s]
                for c in range(C):
                    o[c] = a[c] - o[c]
        _matvec(sg, d, m_smooth[n])
        for i in range(m):
            for s in range(S1):
                o, a = m_smooth[n, i, s], m_filt[n, i, s]
                for c in range(C):
                    o[c] += a[c]
        for i in range(m):
            for j in range(m):
                o, a, b = Dm[i, j], P_smooth[n + 1, i, j], P_pred[n + 1, i, j]
                for c in range(C):
                    o[c] = a[c] - b[c]
        _matmul(sg, Dm, T)  # T = G (P^s_{n+1} - P^-_{n+1})
        Ps, Pf = P_smooth[n], P_filt[n]
        for i in range(m):
            for j in range(i + 1):
                o, f1, f2 = Ps[i, j], Pf[i, j], Pf[j, i]
                for c in range(C):
                    o[c] = f1[c] + f2[c]
                for k in range(m):
                    t1, g1, t2, g2 = T[i, k], sg[j, k], T[j, k], sg[i, k]
                    for c in range(C):
                        o[c] += t1[c] * g1[c] + t2[c] * g2[c]
                for c in range(C):
                    o[c] *= 0.5
                if j < i:
                    o2 = Ps[j, i]
                    for c in range(C):
                        o2[c] = o[c]
    return m_smooth, P_smooth


@_jit
def _finish(He, inc, var, y, inv_s, logs, innov, states, m_smooth, P_smooth):
    """KL (C,) and draws (N, S, C) ``H x_s + H m^s_{s+1}`` (see :func:`gpvae.gp._fused_loops.
    finish`). Each included point adds ``E_q[log N(y | f, var)] - log N(v | 0, s)`` (innovation
    v, variance s); its ``log 2 pi`` and ``log var`` cancel, so the term is
    ``(log(s / var) + v^2 / s - ((y - m)^2 + p) / var) / 2`` (smoothed mean m and variance
    p of f); the filter summed the ``log(s / var)`` of each chain (``logs``): no logarithm of
    var is taken."""
    N, m, S, C = states.shape
    kl = np.empty(C)
    for c in range(C):
        kl[c] = 0.5 * logs[c]
    sample = np.empty((N, S, C))
    fm = np.empty(C)
    pv = np.empty(C)
    for n in range(N):
        for s in range(S):
            o = sample[n, s]
            for c in range(C):
                o[c] = 0.0
            for i in range(m):
                h, x, ms = He[i], states[n, i, s], m_smooth[n, i, s + 1]
                for c in range(C):
                    o[c] += x[c] * h[c] + ms[c] * h[c]
        incn, vn, yn, isn, v0 = inc[n], var[n], y[n], inv_s[n], innov[n, 0]
        _hdot(m_smooth[n, :, 0], He, fm)
        _hph(P_smooth[n], He, pv)
        for c in range(C):
            r = yn[c] - fm[c]
            term = 0.5 * (isn[c] * v0[c] * v0[c] - (r * r + pv[c]) / vn[c])
            kl[c] += term if incn[c] else 0.0
    return kl, sample


@_jit
def forward(A, Q, CQ, ix, Pinf, chol0, H, still, mean, var, inc, eps, e, ar):
    """The forward pass; returns (sample (N, S, C), kl (C,), bad, saved) where ``saved`` holds
    what :func:`backward` needs."""
    N, m, _, C = eps.shape
    G = H.shape[0]
    He = np.empty((m, C))
    for i in range(m):
        for c in range(C):
            He[i, c] = H[c % G, i]
    pos = np.zeros(1, dtype=np.int64)
    y = _e2(ar, pos, N, C)
    w = _e2(ar, pos, N, C)
    sd = _e2(ar, pos, N, C)
    for n in range(N):  # precision 0 where excluded: exact no-ops (never read there)
        incn, vn, mn, yn, wn, sdn = inc[n], var[n], mean[n], y[n], w[n], sd[n]
        for c in range(C):
            ok = incn[c]
            v = vn[c] if ok else 1.0
            yn[c] = mn[c] if ok else 0.0
            wn[c] = (1.0 / v) if ok else 0.0
            sdn[c] = math.sqrt(v)
    Ae = _expand(A, ix, G, N, ar, pos)
    P_pred, P_filt, gain, inv_s, logs, sgain, bad = _cov_filter(
        Ae, Q, ix, Pinf, He, w, inc, still, G, ar, pos
    )
    states = _linear(Ae, CQ, ix, chol0, eps, G, ar, pos)
    D = _data(He, inc, y, sd, states, e, ar, pos)
    m_filt, innov = _mean_filter(Ae, He, gain, D, ar, pos)
    m_smooth, P_smooth = _smooth(Ae, sgain, m_filt, P_filt, P_pred, ar, pos)
    kl, sample = _finish(He, inc, var, y, inv_s, logs, innov, states, m_smooth, P_smooth)
    saved = (He, y, w, sd, Ae, P_pred, P_filt, gain, inv_s, sgain, states, m_filt, innov,
             m_smooth, P_smooth)  # fmt: skip
    return sample, kl, bad, saved


# ----------------------------------------------------------------------------- backward


@_jit
def _finish_bwd(
    He, inc, var, y, inv_s, innov, m_smooth, P_smooth, g_kl, g_sample, g_mean, g_var, ar, pos
):
    """Adjoint of :func:`_finish`: returns g_states, g_ms, g_Ps, g_inv_s, g_log_s, g_innov
    (row 0; the other rows are 0) and adds into g_mean and g_var."""
    N, S, C = g_sample.shape
    m = He.shape[0]
    g_states = _e4(ar, pos, N, m, S, C)
    g_ms = _e4(ar, pos, N, m, S + 1, C)
    g_Ps = _e4(ar, pos, N, m, m, C)
    g_inv_s = _e2(ar, pos, N, C)
    g_log_s = _e2(ar, pos, N, C)
    g_v0 = _e2(ar, pos, N, C)
    fm = np.empty(C)
    pv = np.empty(C)
    a_ms = np.empty(C)
    b_pv = np.empty(C)
    for n in range(N):
        for i in range(m):
            h = He[i]
            for s in range(S):
                gs, o1, o2 = g_sample[n, s], g_states[n, i, s], g_ms[n, i, s + 1]
                for c in range(C):
                    o1[c] = h[c] * gs[c]
                    o2[c] = h[c] * gs[c]
        _hdot(m_smooth[n, :, 0], He, fm)
        _hph(P_smooth[n], He, pv)
        incn, vn, yn, gmn, gvn = inc[n], var[n], y[n], g_mean[n], g_var[n]
        v0, isn, glsn, gisn, gv0n = innov[n, 0], inv_s[n], g_log_s[n], g_inv_s[n], g_v0[n]
        for c in range(C):
            ok = incn[c]
            gk = g_kl[c] if ok else 0.0
            v = vn[c] if ok else 1.0
            r = (yn[c] - fm[c]) if ok else 0.0
            a_ms[c] = gk * r / v
            b_pv[c] = -0.5 * gk / v
            gmn[c] -= gk * r / v
            gvn[c] += (0.5 * gk * (r * r + pv[c]) / (v * v)) if ok else 0.0
            glsn[c] = 0.5 * gk
            gisn[c] = 0.5 * gk * v0[c] * v0[c]
            gv0n[c] = gk * isn[c] * v0[c]
        for i in range(m):
            o, hi = g_ms[n, i, 0], He[i]
            for c in range(C):
                o[c] = a_ms[c] * hi[c]
            for j in range(m):
                o, hj = g_Ps[n, i, j], He[j]
                for c in range(C):
                    o[c] = b_pv[c] * hi[c] * hj[c]
    return g_states, g_ms, g_Ps, g_inv_s, g_log_s, g_v0


@_jit
def _smooth_bwd(Ae, sgain, m_filt, m_smooth, P_pred, P_smooth, g_ms, g_Ps, ar, pos):
    """Adjoint of :func:`_smooth`, means and covariances in one sweep forward in time:
    returns g_mfilt, g_sgain, g_filt, g_pred and g_Ae (N, m, m, C; entry 0 unused), each
    written here first (the later adjoints add into g_filt, g_pred and g_Ae)."""
    N, m, S1, C = m_filt.shape
    g_mfilt = _e4(ar, pos, N, m, S1, C)
    g_sgain = _e4(ar, pos, max(N - 1, 0), m, m, C)
    g_filt = _e4(ar, pos, N, m, m, C)
    g_pred = _e4(ar, pos, N, m, m, C)
    g_Ae = _e4(ar, pos, N, m, m, C)
    g_pred[0] = 0.0
    # b = adjoint of m^s_n and bc = adjoint of P^s_n, carried forward in n (bc kept exactly
    # symmetric: only its symmetric part matters, P^s being symmetric)
    b = g_ms[0].copy()
    bc = np.empty((m, m, C))
    for i in range(m):
        for j in range(m):
            o, a, a2 = bc[i, j], g_Ps[0, i, j], g_Ps[0, j, i]
            for c in range(C):
                o[c] = 0.5 * (a[c] + a2[c])
    bd = np.empty((m, S1, C))
    d = np.empty((m, S1, C))
    tmp = np.empty((m, S1, C))
    Dm = np.empty((m, m, C))
    T = np.empty((m, m, C))
    TD = np.empty((m, m, C))
    bD = np.empty((m, m, C))
    for n in range(N - 1):
        A, sg, mf = Ae[n + 1], sgain[n], m_filt[n]
        # means
        _tmatvec(sg, b, bd)  # bd = G^T b
        _matvec(A, mf, d)
        for i in range(m):
            for s in range(S1):
                o, a = d[i, s], m_smooth[n + 1, i, s]
                for c in range(C):
                    o[c] = a[c] - o[c]
        gs, ga = g_sgain[n], g_Ae[n + 1]
        for i in range(m):
            for j in range(m):
                o, o2 = gs[i, j], ga[i, j]
                for c in range(C):
                    o[c] = 0.0
                    o2[c] = 0.0
        _outer_add(b, d, gs, 1.0)
        _outer_add(bd, mf, ga, -1.0)
        _tmatvec(A, bd, tmp)
        gf = g_mfilt[n]
        for i in range(m):
            for s in range(S1):
                o, bb, t, gn, bdd = gf[i, s], b[i, s], tmp[i, s], g_ms[n + 1, i, s], bd[i, s]
                for c in range(C):
                    o[c] = bb[c] - t[c]
                    bb[c] = gn[c] + bdd[c]
        # covariances
        gfc = g_filt[n]
        for i in range(m):
            for j in range(m):
                o, a, p = Dm[i, j], P_smooth[n + 1, i, j], P_pred[n + 1, i, j]
                f, bb = gfc[i, j], bc[i, j]
                for c in range(C):
                    o[c] = a[c] - p[c]
                    f[c] = bb[c]
        _matmul(bc, sg, T)  # T = b G (= b^T G: b is kept symmetric)
        _tmatmul(sg, T, bD)  # bD = G^T b G
        _matmul(T, Dm, TD)  # the adjoint of G: T D^T + b^T G D = 2 T D (D symmetric)
        for i in range(m):
            for j in range(m):
                o, t = gs[i, j], TD[i, j]
                for c in range(C):
                    o[c] += 2.0 * t[c]
        for i in range(m):
            for j in range(m):
                gp, d1, d2, o, a, a2 = (
                    g_pred[n + 1, i, j],
                    bD[i, j],
                    bD[j, i],
                    bc[i, j],
                    g_Ps[n + 1, i, j],
                    g_Ps[n + 1, j, i],
                )
                for c in range(C):
                    sym = 0.5 * (d1[c] + d2[c])
                    gp[c] = -sym
                    o[c] = 0.5 * (a[c] + a2[c]) + sym
    g_mfilt[N - 1] = b
    g_filt[N - 1] = bc
    return g_mfilt, g_sgain, g_filt, g_pred, g_Ae


@_jit
def _mean_filter_bwd(Ae, He, gain, m_filt, innov, g_mfilt, g_v0, g_Ae, ar, pos):
    """Adjoint of :func:`_mean_filter` (g_innov = g_v0 in row 0, else 0): returns g_gain and
    g_D; adds into g_Ae."""
    N, m, S1, C = m_filt.shape
    g_gain = _z3(ar, pos, N, m, C)
    g_D = _e3(ar, pos, N, S1, C)
    carry = np.zeros((m, S1, C))
    bm = np.empty((m, S1, C))
    bv = np.empty((S1, C))
    for n in range(N - 1, -1, -1):
        for i in range(m):
            for s in range(S1):
                o, a, b = bm[i, s], g_mfilt[n, i, s], carry[i, s]
                for c in range(C):
                    o[c] = a[c] + b[c]
        for s in range(S1):
            o = bv[s]
            if s == 0:
                a = g_v0[n]
                for c in range(C):
                    o[c] = a[c]
            else:
                for c in range(C):
                    o[c] = 0.0
            for i in range(m):
                k, b = gain[n, i], bm[i, s]
                for c in range(C):
                    o[c] += k[c] * b[c]
            gd = g_D[n, s]
            for c in range(C):
                gd[c] = o[c]
        for i in range(m):
            o = g_gain[n, i]
            for s in range(S1):
                b, v = bm[i, s], innov[n, s]
                for c in range(C):
                    o[c] += b[c] * v[c]
        if n == 0:
            continue
        for i in range(m):  # bm becomes the adjoint of m^-_n
            h = He[i]
            for s in range(S1):
                o, b = bm[i, s], bv[s]
                for c in range(C):
                    o[c] -= h[c] * b[c]
        _outer_add(bm, m_filt[n - 1], g_Ae[n], 1.0)
        _tmatvec(Ae[n], bm, carry)
    return g_gain, g_D


@_jit
def _data_linear_bwd(
    Ae, ix, He, inc, sd, eps, e, states, g_D, g_states, g_mean, g_var, g_CQ, g_Ae, G
):
    """Adjoints of :func:`_data` (into g_mean, g_var, g_states) and of :func:`_linear` (into
    g_Ae and the table g_CQ); returns g_state0 (m, S, C)."""
    N, m, S, C = states.shape
    gm = np.empty(C)
    bsd = np.empty(C)
    for n in range(N):
        incn, gmn, gvn, sdn = inc[n], g_mean[n], g_var[n], sd[n]
        g0 = g_D[n, 0]
        for c in range(C):
            gm[c] = g0[c]
            bsd[c] = 0.0
        for s in range(S):
            b_r, en = g_D[n, s + 1], e[n, s]
            for c in range(C):
                gm[c] += b_r[c]
                bsd[c] -= b_r[c] * en[c]
            for i in range(m):
                o, h = g_states[n, i, s], He[i]
                for c in range(C):
                    o[c] -= (h[c] * b_r[c]) if incn[c] else 0.0
        for c in range(C):
            gmn[c] += gm[c] if incn[c] else 0.0
            gvn[c] += (bsd[c] * 0.5 / sdn[c]) if incn[c] else 0.0
    b = g_states[N - 1].copy()
    gL = np.zeros((m, m, C))
    tmp = np.empty((m, S, C))
    for n in range(N - 1, 0, -1):
        _outer_add(b, states[n - 1], g_Ae[n], 1.0)
        for i in range(m):
            for j in range(m):
                gL[i, j] = 0.0
        _outer_add(b, eps[n], gL, 1.0)
        _scatter_step(gL, ix, n, G, g_CQ)
        _tmatvec(Ae[n], b, tmp)
        for i in range(m):
            for s in range(S):
                o, t, gsn = b[i, s], tmp[i, s], g_states[n - 1, i, s]
                for c in range(C):
                    o[c] = gsn[c] + t[c]
    return b


@_jit
def _cov_filter_bwd(
    Ae,
    ix,
    He,
    w,
    still,
    P_pred,
    P_filt,
    sgain,
    g_pred,
    g_filt,
    g_gain,
    g_inv_s,
    g_log_s,
    g_sgain,
    g_Ae,
    g_Q,
    g_Pinf,
    G,
    ar,
    pos,
):
    """Adjoint of :func:`_cov_filter` (adds into g_pred and g_filt as scratch, into g_Ae and
    the tables g_Q, g_Pinf); returns g_w (N, C)."""
    N, m, _, C = P_pred.shape
    g_w = _z2(ar, pos, N, C)
    # RTS gains: X = G_n^T = (P^-_{n+1})^{-1} R, R = A_{n+1} P_n
    Tt = np.empty((m, m, C))
    R = np.empty((m, m, C))
    skip = np.empty(C, dtype=np.bool_)
    for n in range(N - 1):
        _still_row(still, n + 1, G, skip)
        gsg = g_sgain[n]
        for i in range(m):
            for j in range(m):
                o, a = Tt[i, j], gsg[j, i]
                for c in range(C):
                    o[c] = a[c]
        _solve(P_pred[n + 1], Tt, R, skip)  # R = adjoint of the right-hand side
        for i in range(m):
            for j in range(m):
                r = R[i, j]
                for c in range(C):
                    r[c] = 0.0 if skip[c] else r[c]
        A, sg, Pf = Ae[n + 1], sgain[n], P_filt[n]
        gp, ga, gf = g_pred[n + 1], g_Ae[n + 1], g_filt[n]
        for i in range(m):
            for j in range(m):
                o1, o2, o3 = gp[i, j], ga[i, j], gf[i, j]
                for k in range(m):
                    r_ik, x_kj, p_jk, a_ki, r_kj = R[i, k], sg[k, j], Pf[j, k], A[k, i], R[k, j]
                    for c in range(C):
                        o1[c] -= r_ik[c] * x_kj[c]
                        o2[c] += r_ik[c] * p_jk[c]
                        o3[c] += a_ki[c] * r_kj[c]
    u = np.empty((m, C))
    s = np.empty(C)
    cc = np.empty(C)
    b_c = np.empty(C)
    b_s = np.empty(C)
    bu = np.empty((m, C))
    bP = np.empty((m, m, C))
    bPm = np.empty((m, m, C))
    T = np.empty((m, m, C))
    gQ = np.empty((m, m, C))
    tmp = np.empty((m, m, C))
    carry = np.zeros((m, m, C))
    for n in range(N - 1, -1, -1):
        _project(P_pred[n], He, u, s)
        wn, gis, gls, gw = w[n], g_inv_s[n], g_log_s[n], g_w[n]
        for c in range(C):
            den = 1.0 + wn[c] * s[c]
            cc[c] = wn[c] / den
            b_c[c] = gis[c]
            b_s[c] = gls[c] * cc[c]
            gw[c] += gls[c] * s[c] / den
        for i in range(m):
            gg, ui = g_gain[n, i], u[i]
            for c in range(C):
                b_c[c] += gg[c] * ui[c]
        for i in range(m):
            for j in range(m):
                o, a, b = bP[i, j], g_filt[n, i, j], carry[i, j]
                for c in range(C):
                    o[c] = a[c] + b[c]
        for i in range(m):
            for j in range(m):
                p, ui, uj = bP[i, j], u[i], u[j]
                for c in range(C):
                    b_c[c] -= ui[c] * p[c] * uj[c]
        for c in range(C):
            gw[c] += b_c[c] * (1.0 - cc[c] * s[c]) ** 2
            b_s[c] -= cc[c] * cc[c] * b_c[c]
        for i in range(m):
            o, gg, h = bu[i], g_gain[n, i], He[i]
            for c in range(C):
                o[c] = cc[c] * gg[c] + b_s[c] * h[c]
            for j in range(m):
                p1, p2, uj = bP[i, j], bP[j, i], u[j]
                for c in range(C):
                    o[c] -= cc[c] * (p1[c] + p2[c]) * uj[c]
        for i in range(m):
            for j in range(m):
                o, p, b, h, gp = bPm[i, j], bP[i, j], bu[i], He[j], g_pred[n, i, j]
                for c in range(C):
                    o[c] = p[c] + b[c] * h[c] + gp[c]
        if n == 0:  # Pinf and Q enter through their symmetric parts
            for c in range(C):
                g = c % G
                for i in range(m):
                    for j in range(m):
                        g_Pinf[g, i, j] += 0.5 * (bPm[i, j, c] + bPm[j, i, c])
            continue
        A = Ae[n]
        _matmul(A, P_filt[n - 1], T)  # T = A P_{n-1}
        ga = g_Ae[n]
        for i in range(m):
            for j in range(m):
                o, p1, p2 = gQ[i, j], bPm[i, j], bPm[j, i]
                for c in range(C):
                    o[c] = 0.5 * (p1[c] + p2[c])
                o = ga[i, j]  # g_A += (bPm + bPm^T) T
                for k in range(m):
                    p1, p2, t = bPm[i, k], bPm[k, i], T[k, j]
                    for c in range(C):
                        o[c] += (p1[c] + p2[c]) * t[c]
        _scatter_step(gQ, ix, n, G, g_Q)
        _matmul(bPm, A, tmp)  # carry = A^T bPm A
        for i in range(m):
            for j in range(m):
                o = carry[i, j]
                a, t = A[0, i], tmp[0, j]
                for c in range(C):
                    o[c] = a[c] * t[c]
                for k in range(1, m):
                    a, t = A[k, i], tmp[k, j]
                    for c in range(C):
                        o[c] += a[c] * t[c]
    return g_w


@_jit
def backward(K, G, ix, still, inc, var, eps, e, g_kl, g_sample, saved, ar):
    """The adjoint of :func:`forward` for K table entries and G channels: returns the
    gradients of A, Q, CQ (K, G, m, m), Pinf, chol0 (G, m, m), mean and var (N, C)."""
    He, y, w, sd, Ae, P_pred, P_filt, gain, inv_s, sgain, states, m_filt, innov = saved[:13]
    m_smooth, P_smooth = saved[13], saved[14]
    N, m, S, C = eps.shape
    pos = np.zeros(1, dtype=np.int64)
    g_mean = np.zeros((N, C))
    g_var = np.zeros((N, C))
    g_states, g_ms, g_Ps, g_inv_s, g_log_s, g_v0 = _finish_bwd(
        He, inc, var, y, inv_s, innov, m_smooth, P_smooth, g_kl, g_sample, g_mean, g_var, ar, pos
    )
    g_mfilt, g_sgain, g_filt, g_pred, g_Ae = _smooth_bwd(
        Ae, sgain, m_filt, m_smooth, P_pred, P_smooth, g_ms, g_Ps, ar, pos
    )
    g_gain, g_D = _mean_filter_bwd(Ae, He, gain, m_filt, innov, g_mfilt, g_v0, g_Ae, ar, pos)
    g_CQ = np.zeros((K, G, m, m))
    g_state0 = _data_linear_bwd(
        Ae, ix, He, inc, sd, eps, e, states, g_D, g_states, g_mean, g_var, g_CQ, g_Ae, G
    )
    g_chol0 = np.zeros((G, m, m))
    for c in range(C):
        g = c % G
        for i in range(m):
            for j in range(m):
                acc = 0.0
                for s in range(S):
                    acc += g_state0[i, s, c] * eps[0, j, s, c]
                g_chol0[g, i, j] += acc
    g_Q = np.zeros((K, G, m, m))
    g_Pinf = np.zeros((G, m, m))
    g_w = _cov_filter_bwd(
        Ae, ix, He, w, still, P_pred, P_filt, sgain, g_pred, g_filt, g_gain, g_inv_s,
        g_log_s, g_sgain, g_Ae, g_Q, g_Pinf, G, ar, pos,
    )  # fmt: skip
    for n in range(N):
        incn, vn, gvn, gwn = inc[n], var[n], g_var[n], g_w[n]
        for c in range(C):
            v = vn[c] if incn[c] else 1.0
            gvn[c] += (-gwn[c] / (v * v)) if incn[c] else 0.0
    g_A = np.zeros((K, G, m, m))
    for n in range(1, N):
        _scatter_step(g_Ae[n], ix, n, G, g_A)
    return g_A, g_Q, g_CQ, g_Pinf, g_chol0, g_mean, g_var
