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
so no per-chain pivoting breaks the vector loops. For m = 2 the biggest stages (predict,
smoother, their adjoints, the covariance-filter and RTS adjoints) have the 2 x 2 products
written out, each loop storing one row: fewer rows go through memory, with the same
operations in the same order (the same numbers as the generic loops). Blocks of chains laid
out contiguously were measured and do not pay: each statement loop and array view has a
fixed cost per step that outweighs what smaller working sets save.

For m = 2 and one draw (training's default) the forward pass goes further: each step of the
forward sweep is two loops over the chains (:func:`_filter_step21`), and each step of the
smoother with its draws and KL terms is one (:func:`_smooth_finish21`), the intermediates in
registers; they store fewer rows (the precision, standard deviation, gain, 1 / s and
filtered covariance are recomputed where read, :func:`_recompute21`), with the same
operations in the same order (the same numbers, bit for bit). Such a loop reads and writes
20-40 rows, so two things matter that the small loops did not need: (1) rows are padded to
an odd number of 64-byte cache lines (:func:`padded`; the padding lanes hold a chain without
data): rows a multiple of 4 KiB long (1,024 float32 chains) all map to the same set of the
8-way L1 cache, and a loop over more than eight of them evicts its own lines (the forward
pass ran 2.6 times slower); (2) LLVM vectorises a loop over many arrays only behind run-time
checks that they do not overlap, and by default gives up past 128 checks: the limit is
raised for the process when this module is imported (an LLVM option that only lets more
loops be vectorised; numbers do not change, no reduction is reordered). A row read and
written in the same loop made the filter's loop 2.5 times slower (measured): the fused loops
read and write different rows.

The backward pass's second sweep (backward in time) is likewise two loops over the chains per
step for m = 2 and one draw (:func:`_mean_bwd21`, :func:`_cov_bwd21`; the gain, 1 / s and
P_{n-1} recomputed in them): the rows they update go to other rows (carries ping-ponged), and
the float64 sums of the tables' gradients stay out of them (a float64 row in a loop made
LLVM vectorise it 4 wide instead of 8: ~0.25 ms slower per pass).

Float64, or float32 (numba compiles each dtype once; :mod:`gpvae.gp._fused` picks float32
only for float32 data that passes a conditioning check): every per-chain buffer takes the
data's dtype, the constants are float32 (:data:`_ZERO`, :data:`_ONE`, :data:`_HALF`,
:data:`_TWO`, exact in both dtypes, so a float64 loop computes the same numbers as with
float64 literals and a float32 loop is not widened to float64), and the sums of logarithms,
the KL and the gradients of the small tables are float64 in both. Shapes: N steps, B series,
G channels of the group, C = B * G chains (chain ``c`` = channel ``c % G`` of series
``c // G``), m state dimension (1, 2 or 3), S draws, S' = S + 1 data columns. Tables A, Q,
CQ (K, G, m, m) are read through ix (N, B) and gathered per step into (m, m, C) rows (once
while steps read the same entries). H (G, m); Pinf and chol0 (G, m, m); still (N, B); mean,
var, inc (N, C); eps (N, m, S, C) (step 0: the initial states' noise); e (N, S, C): the
layouts inside; :func:`forward` relays its data and noise to them from the caller's
(series first, chain before draw; see there) and its draws back, :func:`backward` the
gradients likewise, in the compiled pass (a numpy or torch copy per array costs more in
call overhead than the copy itself at these sizes).

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

import llvmlite.binding as _llvm

# the fused m = 2 loops need ~1,000 run-time alias checks to be vectorised (module docstring)
_llvm.set_option("", "-vectorize-memory-check-threshold=4000")

_jit = nb.njit(cache=True, nogil=True, error_model="numpy")

#: The loops' constants: float32, exact in float32 and float64 (see the module docstring).
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_HALF = np.float32(0.5)
_TWO = np.float32(2.0)


# Large buffers are carved from an arena (a 1-D array of the data's dtype reused across calls
# by the caller): fresh allocations of megabytes are fresh pages, and their page faults cost
# as much as the arithmetic at these sizes. ``pos`` (1,) int64 is the arena's fill mark.


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
    out[:] = _ZERO
    return out.reshape((a, b))


@_jit
def _z3(ar, pos, a, b, c):
    out = _take(ar, pos, a * b * c)
    out[:] = _ZERO
    return out.reshape((a, b, c))


@_jit
def _z4(ar, pos, a, b, c, d):
    out = _take(ar, pos, a * b * c * d)
    out[:] = _ZERO
    return out.reshape((a, b, c, d))


@_jit
def padded(C, itemsize):
    """The row length of C chains' buffers: C rounded up to whole 64-byte cache lines, an odd
    number of them. Rows of C entries a multiple of 4 KiB long (1,024 float32 chains) put
    every row of a loop in the same set of the 8-way L1 cache: a loop over more than eight
    rows (and the fused steps read or write 20-40) then evicts its own lines at every
    access. Rows an odd number of lines long start in different sets. The padding lanes
    hold a chain without data (see :func:`forward`)."""
    per = 64 // itemsize
    lines = (C + per - 1) // per
    if lines % 2 == 0:
        lines += 1
    return lines * per


def arena_sizes(N: int, m: int, S: int, C: int) -> tuple[int, int]:
    """Lengths of the forward arena (kept until the backward pass) and of the backward one
    (scratch) for :func:`forward` and :func:`backward` (float64 or float32: rows padded to
    :func:`padded` entries of either)."""
    C = max(padded(C, 4), padded(C, 8))
    S1 = S + 1
    fwd = N * C * (2 + 4 * m * m + m + 1 + m * S + 2 * m * S1 + S1 + 1 + 2 + m * S + S)
    bwd = N * C * (m * S1 + 4 * m * m + S + 2)
    return fwd, bwd


# ----------------------------------------------------------------------------- helpers


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
def _accumulate(src, acc, pend, ix, n, G, out):
    """Adds src (m, m, C) of step n into the table out (K, G, m, m) through ix[n], by way of
    acc (m, m, C), float64: the per-chain sum of the steps since the last flush, which all
    read the table entries of step ``pend[0]`` (-1: none). Scattered by :func:`_flush` only
    when a step reads other entries (and at the end): on a regular grid every step reads
    the same ones, and one scatter replaces one per step (a strided loop over the chains'
    entries, the table's G channels at stride m m; ~0.5 ms of the backward pass at N = 48,
    1,024 chains). The same sums in another order (per chain over steps, then over series,
    in float64 either way)."""
    p = pend[0]
    if p >= 0 and not _same_row(ix, n, p):
        _flush(acc, pend, ix, G, out)
    m, C = src.shape[0], src.shape[2]
    for i in range(m):
        for j in range(m):
            a, r = acc[i, j], src[i, j]
            for c in range(C):
                a[c] += r[c]
    pend[0] = n


@_jit
def _flush(acc, pend, ix, G, out):
    """Scatters acc into out through ix[pend[0]] and empties it (see :func:`_accumulate`)."""
    p = pend[0]
    if p < 0:
        return
    _scatter_step(acc, ix, p, G, out)
    acc[:] = 0.0
    pend[0] = -1


@_jit
def _time_first(x, out):
    """out (N, B * G) = x (B, N, G) relaid time first (chain b G + g), cast to out's dtype."""
    B, N, G = x.shape
    for b in range(B):
        for n in range(N):
            r, o = x[b, n], out[n]
            for g in range(G):
                o[b * G + g] = r[g]


@_jit
def _series_first(x, out):
    """out (B, N, G) = x (N, B * G) relaid series first (the inverse of :func:`_time_first`)."""
    B, N, G = out.shape
    for b in range(B):
        for n in range(N):
            r, o = x[n], out[b, n]
            for g in range(G):
                o[g] = r[b * G + g]


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
            if d[c] == _ZERO and not skip[c]:
                bad += 1
        for j in range(k):
            r, x = R[0, j], X[0, j]
            for c in range(C):
                x[c] = r[c] / d[c]
        return bad
    if m == 2:
        a, b, e, f = M[0, 0], M[0, 1], M[1, 0], M[1, 1]
        det = np.empty(C, M.dtype)
        for c in range(C):
            det[c] = a[c] * f[c] - b[c] * e[c]
        for c in range(C):
            if det[c] == _ZERO and not skip[c]:
                bad += 1
        for j in range(k):
            r0, r1, x0, x1 = R[0, j], R[1, j], X[0, j], X[1, j]
            for c in range(C):
                x0[c] = (f[c] * r0[c] - b[c] * r1[c]) / det[c]
                x1[c] = (a[c] * r1[c] - e[c] * r0[c]) / det[c]
        return bad
    # m == 3: M = L D L^T (unit lower L), from the lower triangle
    d0 = np.empty(C, M.dtype)
    d1 = np.empty(C, M.dtype)
    d2 = np.empty(C, M.dtype)
    l10 = np.empty(C, M.dtype)
    l20 = np.empty(C, M.dtype)
    l21 = np.empty(C, M.dtype)
    M00, M10, M11, M20, M21, M22 = M[0, 0], M[1, 0], M[1, 1], M[2, 0], M[2, 1], M[2, 2]
    for c in range(C):
        d0[c] = M00[c]
        l10[c] = M10[c] / d0[c]
        l20[c] = M20[c] / d0[c]
        d1[c] = M11[c] - l10[c] * M10[c]
        l21[c] = (M21[c] - l20[c] * M10[c]) / d1[c]
        d2[c] = M22[c] - l20[c] * M20[c] - l21[c] * l21[c] * d1[c]
    for c in range(C):
        if (d0[c] == _ZERO or d1[c] == _ZERO or d2[c] == _ZERO) and not skip[c]:
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
        s[c] = _ZERO
    for i in range(m):
        ui = u[i]
        for c in range(C):
            ui[c] = _ZERO
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
        out[c] = _ZERO
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
        p = prod[c] * ((_ONE + x[c]) if inc[c] else _ONE)
        prod[c] = p
        grown += p > _LOG_FLUSH
    if grown:
        for c in range(C):
            logs[c] += math.log(prod[c])
            prod[c] = _ONE


@_jit
def _same_row(ix, n, p):
    """Whether steps n and p read the same table entries (then their gathered rows agree)."""
    same = p >= 0
    b = 0
    while same and b < ix.shape[1]:
        same = ix[n, b] == ix[p, b]
        b += 1
    return same


@_jit
def _mm2(X, Y, out):
    """out = X Y per chain for m = 2, written out (one row stored per loop)."""
    C = out.shape[2]
    for i in range(2):
        for j in range(2):
            o, x0, y0, x1, y1 = out[i, j], X[i, 0], Y[0, j], X[i, 1], Y[1, j]
            for c in range(C):
                o[c] = x0[c] * y0[c] + x1[c] * y1[c]


@_jit
def _sym2(F, T, X, out):
    """out = (F + F^T + T X^T + X T^T) / 2 per chain for m = 2, written out: the symmetrised
    update of :func:`_predict` and :func:`_smooth_step` (lower triangle computed, mirrored)."""
    C = out.shape[2]
    for i in range(2):
        for j in range(i + 1):
            o, f1, f2 = out[i, j], F[i, j], F[j, i]
            t0, g0, u0, h0 = T[i, 0], X[j, 0], T[j, 0], X[i, 0]
            t1, g1, u1, h1 = T[i, 1], X[j, 1], T[j, 1], X[i, 1]
            for c in range(C):
                o[c] = (
                    ((f1[c] + f2[c]) + (t0[c] * g0[c] + u0[c] * h0[c]))
                    + (t1[c] * g1[c] + u1[c] * h1[c])
                ) * _HALF
    o, p = out[0, 1], out[1, 0]
    for c in range(C):
        o[c] = p[c]


@_jit
def _predict2(A, Pf, Qn, T, Pp):
    """:func:`_predict` for m = 2, the products written out (one row stored per loop; the same
    operations in the same order)."""
    _mm2(A, Pf, T)  # T = A P_{n-1}
    _sym2(Qn, T, A, Pp)


@_jit
def _smooth_step2(A, sg, mf, Pf, ms1, Ps1, Pp1, d, Dm, T, ms, Ps):
    """:func:`_smooth_step` for m = 2, the products written out (one row stored per loop; the
    same operations in the same order)."""
    S1, C = mf.shape[1], mf.shape[2]
    for i in range(2):  # d = m^s_{n+1} - A m_n
        for s in range(S1):
            o, a, x0, y0, x1, y1 = d[i, s], ms1[i, s], A[i, 0], mf[0, s], A[i, 1], mf[1, s]
            for c in range(C):
                o[c] = a[c] - (x0[c] * y0[c] + x1[c] * y1[c])
    for i in range(2):  # m^s_n = G d + m_n
        for s in range(S1):
            o, a, x0, y0, x1, y1 = ms[i, s], mf[i, s], sg[i, 0], d[0, s], sg[i, 1], d[1, s]
            for c in range(C):
                o[c] = (x0[c] * y0[c] + x1[c] * y1[c]) + a[c]
    for i in range(2):
        for j in range(2):
            o, a, b = Dm[i, j], Ps1[i, j], Pp1[i, j]
            for c in range(C):
                o[c] = a[c] - b[c]
    _mm2(sg, Dm, T)  # T = G (P^s_{n+1} - P^-_{n+1})
    _sym2(Pf, T, sg, Ps)


@_jit
def _predict(A, Pf, Qn, T, Pp):
    """T = A P_{n-1} and P^-_n = T A^T + Q_n (symmetrised) per chain."""
    m = A.shape[0]
    C = A.shape[2]
    if m == 2:
        _predict2(A, Pf, Qn, T, Pp)
        return
    _matmul(A, Pf, T)
    for i in range(m):
        for j in range(i + 1):
            o, qij, qji = Pp[i, j], Qn[i, j], Qn[j, i]
            for c in range(C):
                o[c] = qij[c] + qji[c]
            for k in range(m):
                t1, a1, t2, a2 = T[i, k], A[j, k], T[j, k], A[i, k]
                for c in range(C):
                    o[c] += t1[c] * a1[c] + t2[c] * a2[c]
            for c in range(C):
                o[c] *= _HALF
            if j < i:
                o2 = Pp[j, i]
                for c in range(C):
                    o2[c] = o[c]


@_jit
def _update(Pp, He, wn, incn, u, s, cc, ratio, isn, prod, logs, Pf):
    """The measurement update of step n: the gain u (m, C), 1 / s (isn), P_n (Pf) from
    P^-_n (Pp); the step's ``log1p(s_f / var)`` go to :func:`_log_terms`."""
    m = Pp.shape[0]
    C = Pp.shape[2]
    _project(Pp, He, u, s)  # u = P^- H^T for now
    for c in range(C):
        r = wn[c] * s[c]
        ratio[c] = r
        cc[c] = wn[c] / (_ONE + r)
        isn[c] = cc[c]
    _log_terms(ratio, incn, prod, logs)
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


@_jit
def _rts_gain(Pp, T, skip, X, sg):
    """The RTS gain G_{n-1} = P_{n-1} A_n^T (P^-_n)^{-1} (the identity where the series stands
    still): X = G^T solves P^-_n X = A_n P_{n-1} (= T). Returns the singular count of
    :func:`_solve`."""
    m = Pp.shape[0]
    C = Pp.shape[2]
    bad = _solve(Pp, T, X, skip)
    for i in range(m):
        for j in range(m):
            o, x = sg[i, j], X[j, i]
            one = _ONE if i == j else _ZERO
            for c in range(C):
                o[c] = one if skip[c] else x[c]
    return bad


@_jit
def _mean_step(A, He, u, Dn, mprev, mp, first, mf, vn):
    """Mean filter of step n for the S' data columns Dn (S', C): m^-_n = A_n m_{n-1} (0 at the
    first step), v_n = D_n - H m^-_n (vn), m_n = m^-_n + K_n v_n (mf)."""
    S1, C = Dn.shape
    m = He.shape[0]
    if not first:
        _matvec(A, mprev, mp)
    for s in range(S1):
        v, d = vn[s], Dn[s]
        for c in range(C):
            v[c] = d[c]
        for i in range(m):
            h, p = He[i], mp[i, s]
            for c in range(C):
                v[c] -= h[c] * p[c]
        for i in range(m):
            o, p, k = mf[i, s], mp[i, s], u[i]
            for c in range(C):
                o[c] = p[c] + k[c] * v[c]


@_jit
def _smooth_step(A, sg, mf, Pf, ms1, Ps1, Pp1, d, Dm, T, ms, Ps):
    """Smoothed mean m^s_n = m_n + G_n (m^s_{n+1} - A_{n+1} m_n) (ms) and covariance
    P^s_n = P_n + G_n (P^s_{n+1} - P^-_{n+1}) G_n^T (Ps, symmetrised); A = A_{n+1}."""
    m, S1, C = mf.shape
    if m == 2:
        _smooth_step2(A, sg, mf, Pf, ms1, Ps1, Pp1, d, Dm, T, ms, Ps)
        return
    _matvec(A, mf, d)
    for i in range(m):
        for s in range(S1):
            o, a = d[i, s], ms1[i, s]
            for c in range(C):
                o[c] = a[c] - o[c]
    _matvec(sg, d, ms)
    for i in range(m):
        for s in range(S1):
            o, a = ms[i, s], mf[i, s]
            for c in range(C):
                o[c] += a[c]
    for i in range(m):
        for j in range(m):
            o, a, b = Dm[i, j], Ps1[i, j], Pp1[i, j]
            for c in range(C):
                o[c] = a[c] - b[c]
    _matmul(sg, Dm, T)  # T = G (P^s_{n+1} - P^-_{n+1})
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
                o[c] *= _HALF
            if j < i:
                o2 = Ps[j, i]
                for c in range(C):
                    o2[c] = o[c]


@_jit
def _finish_step(He, incn, vn, yn, isn, v0, xn, ms, Ps, fm, pv, out, term):
    """Draws of step n ``H x_s + H m^s_{s+1}`` (out (S, C)) and each chain's KL term (term
    (C,), 0 where excluded). An included point adds ``E_q[log N(y | f, var)] - log N(v | 0,
    s)`` (innovation v, variance s); its ``log 2 pi`` and ``log var`` cancel, so the term is
    ``(log(s / var) + v^2 / s - ((y - m)^2 + p) / var) / 2`` (smoothed mean m and variance p
    of f); the filter summed the ``log(s / var)`` of each chain: no logarithm of var is
    taken."""
    m, S, C = xn.shape
    for s in range(S):
        o = out[s]
        for c in range(C):
            o[c] = _ZERO
        for i in range(m):
            h, x, mss = He[i], xn[i, s], ms[i, s + 1]
            for c in range(C):
                o[c] += x[c] * h[c] + mss[c] * h[c]
    _hdot(ms[:, 0], He, fm)
    _hph(Ps, He, pv)
    for c in range(C):
        r = yn[c] - fm[c]
        t = _HALF * (isn[c] * v0[c] * v0[c] - (r * r + pv[c]) / vn[c])
        term[c] = t if incn[c] else _ZERO


@_jit
def _filter_step21(A, Q, L, Pf0, x0, mprev, He, incn, vn, yn, skip, epsn, en, Pp, Pf, ratio, sg,
                   xn, mf, innov, term, kk):  # fmt: skip
    """One forward step n > 0 for m = 2 and one draw in two loops over the chains: the step's
    data, :func:`_predict2`, :func:`_update` without its log terms (ratio is returned for
    :func:`_log_terms`) and :func:`_rts_gain` of step n - 1 (:func:`_filter_cov21`); the
    prior draw, the synthetic data row and :func:`_mean_step` (:func:`_filter_mean21`). The
    intermediates stay in registers but for the gain and 1 / s, passed on in the scratch
    rows kk (3, C) (one loop doing it all was measured ~0.1 ms slower per pass at N = 48,
    1,024 chains). The same operations in the same order as those functions (the same
    numbers). Pf0, x0, mprev: P_{n-1}, s_{n-1}, m_{n-1}. Fewer rows are stored than by
    those: not the precision, the standard deviation, the gain and 1 / s (recomputed where
    needed, :func:`_recompute21`); P_n to ``Pf`` (the caller's choice: scratch, or the
    saved row at the last step); ``term`` gets ``v_0^2 / s`` of the KL term. Returns the
    singular count of :func:`_solve`."""
    bad = _filter_cov21(A, Q, Pf0, He, incn, vn, skip, Pp, Pf, ratio, sg, kk)
    _filter_mean21(A, L, x0, mprev, He, incn, vn, yn, epsn, en, xn, mf, innov, term, kk)
    return bad


@_jit
def _filter_cov21(A, Q, Pf0, He, incn, vn, skip, Pp, Pf, ratio, sg, kk):
    """The covariance part of :func:`_filter_step21`: P^-_n (Pp), P_n (Pf), the RTS gain of
    step n - 1 (sg), the ratios of the log terms; the gain and 1 / s into kk. P_{n-1} (Pf0)
    is read through its lower triangle (it is stored symmetric)."""
    C = Pp.shape[2]
    a00, a01, a10, a11 = A[0, 0], A[0, 1], A[1, 0], A[1, 1]
    Q00, Q01, Q10, Q11 = Q[0, 0], Q[0, 1], Q[1, 0], Q[1, 1]
    f00, f10, f11 = Pf0[0, 0], Pf0[1, 0], Pf0[1, 1]
    P00, P01, P10, P11 = Pp[0, 0], Pp[0, 1], Pp[1, 0], Pp[1, 1]
    F00, F01, F10, F11 = Pf[0, 0], Pf[0, 1], Pf[1, 0], Pf[1, 1]
    G00, G01, G10, G11 = sg[0, 0], sg[0, 1], sg[1, 0], sg[1, 1]
    h0, h1 = He[0], He[1]
    k0, k1, kc = kk[0], kk[1], kk[2]
    bad = 0
    for c in range(C):
        ok = incn[c]
        v = vn[c] if ok else _ONE
        w = (_ONE / v) if ok else _ZERO
        A00, A01, A10, A11 = a00[c], a01[c], a10[c], a11[c]
        p00, p10, p11 = f00[c], f10[c], f11[c]
        p01 = p10
        t00 = A00 * p00 + A01 * p10  # T = A P_{n-1}
        t01 = A00 * p01 + A01 * p11
        t10 = A10 * p00 + A11 * p10
        t11 = A10 * p01 + A11 * p11
        q00 = (((Q00[c] + Q00[c]) + (t00 * A00 + t00 * A00)) + (t01 * A01 + t01 * A01)) * _HALF
        q10 = (((Q10[c] + Q01[c]) + (t10 * A00 + t00 * A10)) + (t11 * A01 + t01 * A11)) * _HALF
        q11 = (((Q11[c] + Q11[c]) + (t10 * A10 + t10 * A10)) + (t11 * A11 + t11 * A11)) * _HALF
        P00[c] = q00
        P10[c] = q10
        P11[c] = q11
        P01[c] = q10
        H0, H1 = h0[c], h1[c]
        u0 = (_ZERO + q00 * H0) + q10 * H1  # u = P^- H^T, s = H u
        u1 = (_ZERO + q10 * H0) + q11 * H1
        s = (_ZERO + H0 * u0) + H1 * u1
        r = w * s
        ratio[c] = r
        cc = w / (_ONE + r)
        g10 = q10 - cc * u1 * u0
        F00[c] = q00 - cc * u0 * u0
        F10[c] = g10
        F11[c] = q11 - cc * u1 * u1
        F01[c] = g10
        k0[c] = u0 * cc
        k1[c] = u1 * cc
        kc[c] = cc
        det = q00 * q11 - q10 * q10  # the RTS gain of step n - 1 (_solve, m = 2)
        sk = skip[c]
        bad += (det == _ZERO) & (not sk)
        x00 = (q11 * t00 - q10 * t10) / det
        x10 = (q00 * t10 - q10 * t00) / det
        x01 = (q11 * t01 - q10 * t11) / det
        x11 = (q00 * t11 - q10 * t01) / det
        G00[c] = _ONE if sk else x00
        G01[c] = _ZERO if sk else x10
        G10[c] = _ZERO if sk else x01
        G11[c] = _ONE if sk else x11
    return bad


@_jit
def _filter_mean21(A, L, x0, mprev, He, incn, vn, yn, epsn, en, xn, mf, innov, term, kk):
    """The prior draw s_n (xn), the synthetic data row and the mean filter (mf, innov) of
    :func:`_filter_step21`, and the KL term's ``v_0^2 / s`` (term); kk from
    :func:`_filter_cov21`."""
    C = xn.shape[2]
    a00, a01, a10, a11 = A[0, 0], A[0, 1], A[1, 0], A[1, 1]
    L00, L01, L10, L11 = L[0, 0], L[0, 1], L[1, 0], L[1, 1]
    h0, h1 = He[0], He[1]
    s0, s1, e0, e1, z0, z1 = x0[0, 0], x0[1, 0], epsn[0, 0], epsn[1, 0], xn[0, 0], xn[1, 0]
    e = en[0]
    m00, m01, m10, m11 = mprev[0, 0], mprev[0, 1], mprev[1, 0], mprev[1, 1]
    o00, o01, o10, o11 = mf[0, 0], mf[0, 1], mf[1, 0], mf[1, 1]
    v0r, v1r = innov[0], innov[1]
    k0, k1, kc = kk[0], kk[1], kk[2]
    for c in range(C):
        ok = incn[c]
        v = vn[c] if ok else _ONE
        y = yn[c]
        sd = math.sqrt(v)
        A00, A01, A10, A11 = a00[c], a01[c], a10[c], a11[c]
        H0, H1 = h0[c], h1[c]
        K0, K1, cc = k0[c], k1[c], kc[c]
        S0, S1 = s0[c], s1[c]  # prior draw s_n = A_n s_{n-1} + CQ_n eps_n
        E0, E1 = e0[c], e1[c]
        n0 = A00 * S0 + A01 * S1 + (L00[c] * E0 + L01[c] * E1)
        n1 = A10 * S0 + A11 * S1 + (L10[c] * E0 + L11[c] * E1)
        z0[c] = n0
        z1[c] = n1
        fp = n0 * H0 + n1 * H1  # the synthetic data row D = (y, residual)
        rr = y - (fp + sd * e[c])
        d1 = rr if ok else _ZERO
        M00, M01, M10, M11 = m00[c], m01[c], m10[c], m11[c]  # mean filter
        mp00 = A00 * M00 + A01 * M10
        mp01 = A00 * M01 + A01 * M11
        mp10 = A10 * M00 + A11 * M10
        mp11 = A10 * M01 + A11 * M11
        v0 = (y - H0 * mp00) - H1 * mp10
        v1 = (d1 - H0 * mp01) - H1 * mp11
        v0r[c] = v0
        v1r[c] = v1
        term[c] = cc * v0 * v0
        o00[c] = mp00 + K0 * v0
        o01[c] = mp01 + K0 * v1
        o10[c] = mp10 + K1 * v0
        o11[c] = mp11 + K1 * v1


@_jit
def _smooth_finish21(A, sg, mf, Pp, ms1, Ps1, Pp1, He, incn, vn, yn, xn, ms, Ps, out, term):
    """:func:`_smooth_step2` and :func:`_finish_step` of step n < N - 1 for m = 2 and one draw,
    in one loop over the chains (the same operations in the same order: the same numbers;
    A = A_{n+1}, ms1, Ps1, Pp1 of step n + 1). P_n is recomputed from P^-_n (Pp) as the
    filter computed it; term holds ``v_0^2 / s`` (:func:`_filter_step21`)."""
    C = mf.shape[2]
    a00, a01, a10, a11 = A[0, 0], A[0, 1], A[1, 0], A[1, 1]
    G00, G01, G10, G11 = sg[0, 0], sg[0, 1], sg[1, 0], sg[1, 1]
    m00, m01, m10, m11 = mf[0, 0], mf[0, 1], mf[1, 0], mf[1, 1]
    f00, f10, f11 = Pp[0, 0], Pp[1, 0], Pp[1, 1]
    n00, n01, n10, n11 = ms1[0, 0], ms1[0, 1], ms1[1, 0], ms1[1, 1]
    S00, S01, S10, S11 = Ps1[0, 0], Ps1[0, 1], Ps1[1, 0], Ps1[1, 1]
    R00, R01, R10, R11 = Pp1[0, 0], Pp1[0, 1], Pp1[1, 0], Pp1[1, 1]
    o00, o01, o10, o11 = ms[0, 0], ms[0, 1], ms[1, 0], ms[1, 1]
    P00, P01, P10, P11 = Ps[0, 0], Ps[0, 1], Ps[1, 0], Ps[1, 1]
    h0, h1, x0, x1, out0 = He[0], He[1], xn[0, 0], xn[1, 0], out[0]
    for c in range(C):
        A00, A01, A10, A11 = a00[c], a01[c], a10[c], a11[c]
        g00, g01, g10, g11 = G00[c], G01[c], G10[c], G11[c]
        M00, M01, M10, M11 = m00[c], m01[c], m10[c], m11[c]
        d00 = n00[c] - (A00 * M00 + A01 * M10)  # d = m^s_{n+1} - A m_n
        d01 = n01[c] - (A00 * M01 + A01 * M11)
        d10 = n10[c] - (A10 * M00 + A11 * M10)
        d11 = n11[c] - (A10 * M01 + A11 * M11)
        w00 = (g00 * d00 + g01 * d10) + M00  # m^s_n = G d + m_n
        w01 = (g00 * d01 + g01 * d11) + M01
        w10 = (g10 * d00 + g11 * d10) + M10
        w11 = (g10 * d01 + g11 * d11) + M11
        o00[c] = w00
        o01[c] = w01
        o10[c] = w10
        o11[c] = w11
        D00 = S00[c] - R00[c]
        D01 = S01[c] - R01[c]
        D10 = S10[c] - R10[c]
        D11 = S11[c] - R11[c]
        t00 = g00 * D00 + g01 * D10  # T = G D
        t01 = g00 * D01 + g01 * D11
        t10 = g10 * D00 + g11 * D10
        t11 = g10 * D01 + g11 * D11
        H0, H1 = h0[c], h1[c]
        ok = incn[c]
        v = vn[c] if ok else _ONE
        w = (_ONE / v) if ok else _ZERO
        q00, q10, q11 = f00[c], f10[c], f11[c]  # P_n = P^-_n - K H P^-_n (_update)
        u0 = (_ZERO + q00 * H0) + q10 * H1
        u1 = (_ZERO + q10 * H0) + q11 * H1
        s = (_ZERO + H0 * u0) + H1 * u1
        cc = w / (_ONE + w * s)
        F00 = q00 - cc * u0 * u0
        F10 = q10 - cc * u1 * u0
        F01 = F10
        F11 = q11 - cc * u1 * u1
        p00 = (((F00 + F00) + (t00 * g00 + t00 * g00)) + (t01 * g01 + t01 * g01)) * _HALF
        p10 = (((F10 + F01) + (t10 * g00 + t00 * g10)) + (t11 * g01 + t01 * g11)) * _HALF
        p11 = (((F11 + F11) + (t10 * g10 + t10 * g10)) + (t11 * g11 + t11 * g11)) * _HALF
        P00[c] = p00
        P10[c] = p10
        P11[c] = p11
        P01[c] = p10
        out0[c] = (_ZERO + (x0[c] * H0 + w01 * H0)) + (x1[c] * H1 + w11 * H1)
        fm = w00 * H0 + w10 * H1
        pv = (((_ZERO + p00 * H0 * H0) + p10 * H0 * H1) + p10 * H1 * H0) + p11 * H1 * H1
        r = yn[c] - fm
        t = _HALF * (term[c] - (r * r + pv) / vn[c])
        term[c] = t if ok else _ZERO


@_jit
def _finish_last21(He, incn, vn, yn, xn, ms, Ps, out, term):
    """:func:`_finish_step` for m = 2 and one draw, term holding ``v_0^2 / s`` (the same
    numbers)."""
    C = out.shape[1]
    h0, h1, x0, x1, out0 = He[0], He[1], xn[0, 0], xn[1, 0], out[0]
    w00, w01, w10, w11 = ms[0, 0], ms[0, 1], ms[1, 0], ms[1, 1]
    p00, p01, p10, p11 = Ps[0, 0], Ps[0, 1], Ps[1, 0], Ps[1, 1]
    for c in range(C):
        H0, H1 = h0[c], h1[c]
        out0[c] = (_ZERO + (x0[c] * H0 + w01[c] * H0)) + (x1[c] * H1 + w11[c] * H1)
        fm = w00[c] * H0 + w10[c] * H1
        q00, q01, q10, q11 = p00[c], p01[c], p10[c], p11[c]
        pv = (((_ZERO + q00 * H0 * H0) + q01 * H0 * H1) + q10 * H1 * H0) + q11 * H1 * H1
        r = yn[c] - fm
        t = _HALF * (term[c] - (r * r + pv) / vn[c])
        term[c] = t if incn[c] else _ZERO


@_jit
def _recompute21(Pp, He, incn, vn, w, sd, gain, isn, Pf):
    """What :func:`_filter_step21` does not store, for the backward pass: the precision w,
    the standard deviation sd, the gain, 1 / s and P_n of a step from its P^-_n (Pp), as
    the forward pass computed them (the same operations: the same numbers)."""
    C = w.shape[0]
    h0, h1, k0, k1 = He[0], He[1], gain[0], gain[1]
    f00, f10, f11 = Pp[0, 0], Pp[1, 0], Pp[1, 1]
    F00, F01, F10, F11 = Pf[0, 0], Pf[0, 1], Pf[1, 0], Pf[1, 1]
    for c in range(C):
        ok = incn[c]
        v = vn[c] if ok else _ONE
        W = (_ONE / v) if ok else _ZERO
        w[c] = W
        sd[c] = math.sqrt(v)
        H0, H1 = h0[c], h1[c]
        q00, q10, q11 = f00[c], f10[c], f11[c]
        u0 = (_ZERO + q00 * H0) + q10 * H1
        u1 = (_ZERO + q10 * H0) + q11 * H1
        s = (_ZERO + H0 * u0) + H1 * u1
        cc = W / (_ONE + W * s)
        isn[c] = cc
        k0[c] = u0 * cc
        k1[c] = u1 * cc
        g10 = q10 - cc * u1 * u0
        F00[c] = q00 - cc * u0 * u0
        F10[c] = g10
        F11[c] = q11 - cc * u1 * u1
        F01[c] = g10


@_jit
def forward(A, Q, CQ, ix, Pinf, chol0, H, still, mean_in, var_in, inc_in, eps_in, e_in, ar):
    """The forward pass; returns (sample (S, B', N, G'), kl (C,), bad, saved) where ``saved``
    holds what :func:`backward` needs (views of the arena ``ar``, and the data time first).

    The data come in the caller's layouts and are relaid here, in the compiled pass (a
    torch or numpy copy per array costs more in call overhead than in copying): mean, var,
    inc (B', N, G') series first with B' G' = C (the caller's (B, N, G) channels, or (1, N,
    C) for data already time first), eps (N, C, m, S) and e (N, C, S) chain before draw;
    the draws go out series first likewise.

    Two sweeps over time, each doing every stage of a step while its rows are in cache (the
    pass is memory-bound at ~1,000 chains): forward in time the covariance filter with the
    RTS gain of the step before, the prior draws, the synthetic data (one row, not kept) and
    the mean filter; backward in time the smoother, the draws and the KL terms. Transitions
    are gathered from the tables per step (once while consecutive steps read the same
    entries, as on a regular grid)."""
    N, Cr, m, S = eps_in.shape
    C = padded(Cr, var_in.itemsize)  # rows of C entries, chains Cr.. padding (no data)
    S1 = S + 1
    G = H.shape[0]
    dt = var_in.dtype  # float64 or float32
    He = np.empty((m, C), dt)
    for i in range(m):
        for c in range(C):
            He[i, c] = H[c % G, i]
    pos = np.zeros(1, dtype=np.int64)
    mean = _e2(ar, pos, N, C)  # the data time first, chains last
    var = _e2(ar, pos, N, C)
    inc = np.empty((N, C), dtype=np.bool_)
    _time_first(mean_in, mean)
    _time_first(var_in, var)
    _time_first(inc_in, inc)
    eps = _e4(ar, pos, N, m, S, C)
    e = _e3(ar, pos, N, S, C)
    for n in range(N):
        for i in range(m):
            for s in range(S):
                o = eps[n, i, s]
                for c in range(Cr):
                    o[c] = eps_in[n, c, i, s]
                o[Cr:] = _ZERO
        for s in range(S):
            o = e[n, s]
            for c in range(Cr):
                o[c] = e_in[n, c, s]
            o[Cr:] = _ZERO
        # the padding lanes: a chain without data or noise, its transitions the identity
        # with no process noise (set below), so finite with a regular covariance throughout
        mean[n, Cr:] = _ZERO
        var[n, Cr:] = _ONE
        inc[n, Cr:] = False
        yr, ir = mean[n], inc[n]  # y = the mean where included, else 0 (in its rows)
        for c in range(Cr):
            yr[c] = yr[c] if ir[c] else _ZERO
    y = mean  # y = the mean where included, else 0: written over the mean's rows
    w = _e2(ar, pos, N, C)
    sd = _e2(ar, pos, N, C)
    P_pred = _e4(ar, pos, N, m, m, C)
    P_filt = _e4(ar, pos, N, m, m, C)
    gain = _e3(ar, pos, N, m, C)
    inv_s = _e2(ar, pos, N, C)
    sgain = _e4(ar, pos, max(N - 1, 0), m, m, C)
    states = _e4(ar, pos, N, m, S, C)
    m_filt = _e4(ar, pos, N, m, S1, C)
    innov = _e3(ar, pos, N, S1, C)
    m_smooth = _e4(ar, pos, N, m, S1, C)
    P_smooth = _e4(ar, pos, N, m, m, C)
    terms = _e2(ar, pos, N, C)
    An = np.zeros((m, m, C), dt)  # (the padding lanes: A = I, Q = CQ = 0, standing still)
    Qn = np.zeros((m, m, C), dt)
    Ln = np.zeros((m, m, C), dt)
    for i in range(m):
        An[i, i, Cr:] = _ONE
    T = np.empty((m, m, C), dt)
    X = np.empty((m, m, C), dt)
    skip = np.ones(C, dtype=np.bool_)
    s_ = np.empty(C, dt)
    cc = np.empty(C, dt)
    ratio = np.empty(C, dt)  # s_f / var of each chain at step n
    logs = np.zeros(C)  # the logarithms taken so far
    prod = np.ones(C)  # and the product of the factors 1 + x not yet taken
    tmp = np.empty((m, S, C), dt)
    fp = np.empty(C, dt)
    Dn = np.empty((S1, C), dt)  # row 0 the pseudo-observations, row s + 1 draw s's residual
    mp = np.zeros((m, S1, C), dt)
    Pfa = np.empty((m, m, C), dt)  # P_n of the fused steps (scratch, alternately)
    Pfb = np.empty((m, m, C), dt)
    kk = np.empty((3, C), dt)  # the gain and 1 / s of a fused step
    bad = 0
    last = -1  # the step whose table entries An, Qn, Ln hold
    fused = m == 2 and S == 1  # a step in two loops over the chains (_filter_step21)
    for n in range(N):
        incn, vn, mn, yn, wn, sdn = inc[n], var[n], mean[n], y[n], w[n], sd[n]
        if fused and n > 0:
            if not _same_row(ix, n, last):
                _gather_step(A, ix, n, G, An)
                _gather_step(Q, ix, n, G, Qn)
                _gather_step(CQ, ix, n, G, Ln)
                last = n
            _still_row(still, n, G, skip)
            Pf0 = P_filt[0] if n == 1 else (Pfa if n % 2 == 0 else Pfb)  # step n - 1's
            Pf1 = P_filt[n] if n == N - 1 else (Pfa if n % 2 == 1 else Pfb)
            bad += _filter_step21(
                An, Qn, Ln, Pf0, states[n - 1], m_filt[n - 1], He, incn, vn, yn, skip, eps[n],
                e[n], P_pred[n], Pf1, ratio, sgain[n - 1], states[n], m_filt[n], innov[n],
                terms[n], kk,
            )  # fmt: skip
            _log_terms(ratio, incn, prod, logs)
            continue
        # the step's data: precision 0 where excluded (exact no-ops; never read there)
        for c in range(C):
            ok = incn[c]
            v = vn[c] if ok else _ONE
            yn[c] = mn[c] if ok else _ZERO
            wn[c] = (_ONE / v) if ok else _ZERO
            sdn[c] = math.sqrt(v)
        # covariance filter, and the RTS gain of step n - 1
        Pp = P_pred[n]
        if n == 0:
            for c in range(C):
                g = c % G
                for i in range(m):
                    for j in range(m):
                        Pp[i, j, c] = _HALF * (Pinf[g, i, j] + Pinf[g, j, i])
        else:
            if not _same_row(ix, n, last):
                _gather_step(A, ix, n, G, An)
                _gather_step(Q, ix, n, G, Qn)
                _gather_step(CQ, ix, n, G, Ln)
                last = n
            _predict(An, P_filt[n - 1], Qn, T, Pp)
        _update(Pp, He, wn, incn, gain[n], s_, cc, ratio, inv_s[n], prod, logs, P_filt[n])
        if n > 0:
            _still_row(still, n, G, skip)
            bad += _rts_gain(Pp, T, skip, X, sgain[n - 1])
        # prior draws: s_0 = chol0 eps_0, s_n = A_n s_{n-1} + CQ_n eps_n
        xn = states[n]
        if n == 0:
            for c in range(C):
                g = c % G
                for i in range(m):
                    for s in range(S):
                        acc = _ZERO
                        for q in range(m):
                            acc += chol0[g, i, q] * eps[0, q, s, c]
                        xn[i, s, c] = acc
        else:
            _matvec(An, states[n - 1], xn)
            _matvec(Ln, eps[n], tmp)
            for i in range(m):
                for s in range(S):
                    o, t = xn[i, s], tmp[i, s]
                    for c in range(C):
                        o[c] += t[c]
        # synthetic data: the residual y - (H x_s + sd e_s) where included (else 0)
        d0 = Dn[0]
        for c in range(C):
            d0[c] = yn[c]
        for s in range(S):
            d, en = Dn[s + 1], e[n, s]
            _hdot(xn[:, s], He, fp)
            for c in range(C):
                r = yn[c] - (fp[c] + sdn[c] * en[c])
                d[c] = r if incn[c] else _ZERO
        # mean filter
        _mean_step(An, He, gain[n], Dn, m_filt[n - 1], mp, n == 0, m_filt[n], innov[n])
        if fused:  # the KL term's v_0^2 / s, as _filter_step21 stores it
            t, isn, v0 = terms[n], inv_s[n], innov[n, 0]
            for c in range(C):
                t[c] = isn[c] * v0[c] * v0[c]
    for c in range(C):
        logs[c] += math.log(prod[c])
    # smoother, draws and KL terms, backward in time
    m_smooth[N - 1] = m_filt[N - 1]
    for i in range(m):
        for j in range(m):
            o, a, b = P_smooth[N - 1, i, j], P_filt[N - 1, i, j], P_filt[N - 1, j, i]
            for c in range(C):
                o[c] = _HALF * (a[c] + b[c])
    sample = np.empty((N, S, C), dt)
    d = np.empty((m, S1, C), dt)
    Dm = np.empty((m, m, C), dt)
    fm = np.empty(C, dt)
    pv = np.empty(C, dt)
    for n in range(N - 1, -1, -1):
        if n < N - 1:
            if not _same_row(ix, n + 1, last):
                _gather_step(A, ix, n + 1, G, An)
                last = n + 1  # (only An is read from here on)
            if fused:
                _smooth_finish21(
                    An, sgain[n], m_filt[n], P_pred[n], m_smooth[n + 1], P_smooth[n + 1],
                    P_pred[n + 1], He, inc[n], var[n], y[n], states[n], m_smooth[n],
                    P_smooth[n], sample[n], terms[n],
                )  # fmt: skip
                continue
            _smooth_step(
                An, sgain[n], m_filt[n], P_filt[n], m_smooth[n + 1], P_smooth[n + 1],
                P_pred[n + 1], d, Dm, T, m_smooth[n], P_smooth[n],
            )  # fmt: skip
        elif fused:
            _finish_last21(
                He, inc[n], var[n], y[n], states[n], m_smooth[n], P_smooth[n], sample[n],
                terms[n],
            )  # fmt: skip
            continue
        _finish_step(
            He, inc[n], var[n], y[n], inv_s[n], innov[n, 0], states[n], m_smooth[n],
            P_smooth[n], fm, pv, sample[n], terms[n],
        )  # fmt: skip
    kl = np.empty(Cr)
    for c in range(Cr):
        kl[c] = _HALF * logs[c]
    for n in range(N):  # the terms summed in time order
        t = terms[n]
        for c in range(Cr):
            kl[c] += t[c]
    Bd, Gd = mean_in.shape[0], mean_in.shape[2]
    out = np.empty((S, Bd, N, Gd), dt)
    for s in range(S):
        _series_first(sample[:, s], out[s])
    saved = (He, y, w, sd, P_pred, P_filt, gain, inv_s, sgain, states, m_filt, innov,
             m_smooth, P_smooth, A, var, inc, eps, e)  # fmt: skip
    return out, kl, bad, saved


# ----------------------------------------------------------------------------- backward


@_jit
def _finish_bwd_step(He, incn, vn, yn, g_kl, gsn, ms, Ps, gmn, gvn, fm, pv, a_ms, b_pv, gms, gPs):
    """Adjoint of :func:`_finish_step` at step n: the adjoints of m^s_n (gms (m, S', C)) and
    of P^s_n (gPs (m, m, C)); adds into g_mean[n] (gmn) and g_var[n] (gvn). (The adjoints of
    the states, of 1 / s, of log s and of v_0 are formed where they are used.)"""
    m, S1, C = gms.shape
    for i in range(m):
        h = He[i]
        for s in range(S1 - 1):
            gs, o = gsn[s], gms[i, s + 1]
            for c in range(C):
                o[c] = h[c] * gs[c]
    if m == 2:  # _hdot and _hph written out (one loop each; the same numbers)
        x0, x1, h0, h1 = ms[0, 0], ms[1, 0], He[0], He[1]
        for c in range(C):
            fm[c] = x0[c] * h0[c] + x1[c] * h1[c]
        p00, p01, p10, p11 = Ps[0, 0], Ps[0, 1], Ps[1, 0], Ps[1, 1]
        for c in range(C):
            pv[c] = (
                ((_ZERO + p00[c] * h0[c] * h0[c]) + p01[c] * h0[c] * h1[c]) + p10[c] * h1[c] * h0[c]
            ) + p11[c] * h1[c] * h1[c]
    else:
        _hdot(ms[:, 0], He, fm)
        _hph(Ps, He, pv)
    for c in range(C):
        ok = incn[c]
        gk = g_kl[c] if ok else _ZERO
        v = vn[c] if ok else _ONE
        r = (yn[c] - fm[c]) if ok else _ZERO
        a_ms[c] = gk * r / v
        b_pv[c] = -_HALF * gk / v
        gmn[c] -= gk * r / v
        gvn[c] += (_HALF * gk * (r * r + pv[c]) / (v * v)) if ok else _ZERO
    for i in range(m):
        o, hi = gms[i, 0], He[i]
        for c in range(C):
            o[c] = a_ms[c] * hi[c]
        for j in range(m):
            o, hj = gPs[i, j], He[j]
            for c in range(C):
                o[c] = b_pv[c] * hi[c] * hj[c]


@_jit
def _smooth_bwd_step(
    A, sg, mf, ms1, Pp1, Ps1, gms1, gPs1, b, bc, bd, d, tmp, Dm, T, TD, bD, gs, ga, gmf, gfc, gp
):
    """Adjoint of :func:`_smooth_step` for step n (A = A_{n+1}; ms1, Pp1, Ps1 of step n + 1;
    gms1, gPs1 the adjoints of m^s_{n+1}, P^s_{n+1} from the draws and KL). b (m, S', C) and
    bc (m, m, C) carry the adjoints of m^s_n and P^s_n forward in time (bc kept exactly
    symmetric: only its symmetric part matters, P^s being symmetric). Writes the adjoints of
    G_n (gs), A_{n+1} (ga), m_n (gmf), P_n (gfc) and P^-_{n+1} (gp), first."""
    m, S1, C = mf.shape
    if m == 2:
        _smooth_bwd_step2(A, sg, mf, ms1, Pp1, Ps1, gms1, gPs1, b, bc, bd, d, Dm, T, bD, gs, ga,
                          gmf, gfc, gp)  # fmt: skip
        return
    # means
    _tmatvec(sg, b, bd)  # bd = G^T b
    _matvec(A, mf, d)
    for i in range(m):
        for s in range(S1):
            o, a = d[i, s], ms1[i, s]
            for c in range(C):
                o[c] = a[c] - o[c]
    for i in range(m):
        for j in range(m):
            o, o2 = gs[i, j], ga[i, j]
            for c in range(C):
                o[c] = _ZERO
                o2[c] = _ZERO
    _outer_add(b, d, gs, _ONE)
    _outer_add(bd, mf, ga, -_ONE)
    _tmatvec(A, bd, tmp)
    for i in range(m):
        for s in range(S1):
            o, bb, t, gn, bdd = gmf[i, s], b[i, s], tmp[i, s], gms1[i, s], bd[i, s]
            for c in range(C):
                o[c] = bb[c] - t[c]
                bb[c] = gn[c] + bdd[c]
    # covariances
    for i in range(m):
        for j in range(m):
            o, a, p = Dm[i, j], Ps1[i, j], Pp1[i, j]
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
                o[c] += _TWO * t[c]
    for i in range(m):
        for j in range(m):
            g, d1, d2, o, a, a2 = gp[i, j], bD[i, j], bD[j, i], bc[i, j], gPs1[i, j], gPs1[j, i]
            for c in range(C):
                sym = _HALF * (d1[c] + d2[c])
                g[c] = -sym
                o[c] = _HALF * (a[c] + a2[c]) + sym


@_jit
def _smooth_bwd_step2(
    A, sg, mf, ms1, Pp1, Ps1, gms1, gPs1, b, bc, bd, d, Dm, T, bD, gs, ga, gmf, gfc, gp
):  # fmt: skip
    """:func:`_smooth_bwd_step` for m = 2 with the 2 x 2 products written out: each loop
    stores one row and loads at most eight, so fewer rows go through memory (the same
    operations in the same order, so the same numbers)."""
    S1, C = mf.shape[1], mf.shape[2]
    for i in range(2):  # bd = G^T b
        for s in range(S1):
            o, x0, y0, x1, y1 = bd[i, s], sg[0, i], b[0, s], sg[1, i], b[1, s]
            for c in range(C):
                o[c] = x0[c] * y0[c] + x1[c] * y1[c]
    for i in range(2):  # d = m^s_{n+1} - A m_n
        for s in range(S1):
            o, a, x0, y0, x1, y1 = d[i, s], ms1[i, s], A[i, 0], mf[0, s], A[i, 1], mf[1, s]
            for c in range(C):
                o[c] = a[c] - (x0[c] * y0[c] + x1[c] * y1[c])
    for i in range(2):  # T = b G
        for j in range(2):
            o, x0, y0, x1, y1 = T[i, j], bc[i, 0], sg[0, j], bc[i, 1], sg[1, j]
            for c in range(C):
                o[c] = x0[c] * y0[c] + x1[c] * y1[c]
    for i in range(2):  # D = P^s_{n+1} - P^-_{n+1}
        for j in range(2):
            o, a, p = Dm[i, j], Ps1[i, j], Pp1[i, j]
            for c in range(C):
                o[c] = a[c] - p[c]
    for i in range(2):  # the adjoints of G (b d^T + 2 T D) and of A_{n+1} (-bd m_n^T)
        for j in range(2):
            o, t0, t1, e0, e1 = gs[i, j], T[i, 0], T[i, 1], Dm[0, j], Dm[1, j]
            if S1 == 2:  # one draw: the sums written out
                b0, d0, b1, d1 = b[i, 0], d[j, 0], b[i, 1], d[j, 1]
                for c in range(C):
                    o[c] = ((_ZERO + _ONE * (b0[c] * d0[c])) + _ONE * (b1[c] * d1[c])) + _TWO * (
                        t0[c] * e0[c] + t1[c] * e1[c]
                    )
                o, x0, y0, x1, y1 = ga[i, j], bd[i, 0], mf[j, 0], bd[i, 1], mf[j, 1]
                for c in range(C):
                    o[c] = (_ZERO + -_ONE * (x0[c] * y0[c])) + -_ONE * (x1[c] * y1[c])
                continue
            for c in range(C):
                o[c] = _ZERO
            for s in range(S1):
                x, y = b[i, s], d[j, s]
                for c in range(C):
                    o[c] += _ONE * (x[c] * y[c])
            for c in range(C):
                o[c] += _TWO * (t0[c] * e0[c] + t1[c] * e1[c])
            o = ga[i, j]
            for c in range(C):
                o[c] = _ZERO
            for s in range(S1):
                x, y = bd[i, s], mf[j, s]
                for c in range(C):
                    o[c] += -_ONE * (x[c] * y[c])
    for i in range(2):  # the adjoint of m_n: b - A^T bd
        for s in range(S1):
            o, bb, x0, y0, x1, y1 = gmf[i, s], b[i, s], A[0, i], bd[0, s], A[1, i], bd[1, s]
            for c in range(C):
                o[c] = bb[c] - (x0[c] * y0[c] + x1[c] * y1[c])
    for i in range(2):  # b becomes the adjoint of m^s_n
        for s in range(S1):
            o, gn, bdd = b[i, s], gms1[i, s], bd[i, s]
            for c in range(C):
                o[c] = gn[c] + bdd[c]
    for i in range(2):  # bD = G^T b G
        for j in range(2):
            o, x0, y0, x1, y1 = bD[i, j], sg[0, i], T[0, j], sg[1, i], T[1, j]
            for c in range(C):
                o[c] = x0[c] * y0[c] + x1[c] * y1[c]
    for i in range(2):
        for j in range(2):
            f, bb = gfc[i, j], bc[i, j]
            for c in range(C):
                f[c] = bb[c]
    for i in range(2):
        for j in range(2):
            g, d1, d2 = gp[i, j], bD[i, j], bD[j, i]
            for c in range(C):
                g[c] = -(_HALF * (d1[c] + d2[c]))
    for i in range(2):  # bc becomes the adjoint of P^s_n
        for j in range(2):
            o, d1, d2, a, a2 = bc[i, j], bD[i, j], bD[j, i], gPs1[i, j], gPs1[j, i]
            for c in range(C):
                o[c] = _HALF * (a[c] + a2[c]) + _HALF * (d1[c] + d2[c])


@_jit
def _mean_bwd_step(first, A, He, u, mprev, vn, gmf, gv0, carry, bm, bv, g_gain, ga):
    """Adjoint of :func:`_mean_step` at step n (the adjoint of the innovations is gv0 in row
    0, else 0): bv (S', C) becomes the adjoint of the data row D_n and g_gain (m, C) that of
    the gain; adds into ga (the adjoint of A_n) and carries the adjoint of m_{n-1} (carry,
    from the step after). ``first``: n = 0."""
    m, S1, C = bm.shape
    if m == 2 and S1 == 2:
        _mean_bwd_step22(first, A, He, u, mprev, vn, gmf, gv0, carry, bm, bv, g_gain, ga)
        return
    for i in range(m):
        for s in range(S1):
            o, a, b = bm[i, s], gmf[i, s], carry[i, s]
            for c in range(C):
                o[c] = a[c] + b[c]
    for s in range(S1):
        o = bv[s]
        if s == 0:
            for c in range(C):
                o[c] = gv0[c]
        else:
            for c in range(C):
                o[c] = _ZERO
        for i in range(m):
            k, b = u[i], bm[i, s]
            for c in range(C):
                o[c] += k[c] * b[c]
    for i in range(m):
        o = g_gain[i]
        for c in range(C):
            o[c] = _ZERO
        for s in range(S1):
            b, v = bm[i, s], vn[s]
            for c in range(C):
                o[c] += b[c] * v[c]
    if first:
        return
    for i in range(m):  # bm becomes the adjoint of m^-_n
        h = He[i]
        for s in range(S1):
            o, b = bm[i, s], bv[s]
            for c in range(C):
                o[c] -= h[c] * b[c]
    _outer_add(bm, mprev, ga, _ONE)
    _tmatvec(A, bm, carry)


@_jit
def _mean_bwd_step22(first, A, He, u, mprev, vn, gmf, gv0, carry, bm, bv, g_gain, ga):
    """:func:`_mean_bwd_step` for m = 2 and one draw (S' = 2), the sums written out: one
    row stored per loop, the same operations in the same order (the same numbers)."""
    C = bm.shape[2]
    for i in range(2):
        for s in range(2):
            o, a, b = bm[i, s], gmf[i, s], carry[i, s]
            for c in range(C):
                o[c] = a[c] + b[c]
    k0, k1 = u[0], u[1]
    o, x0, x1 = bv[0], bm[0, 0], bm[1, 0]
    for c in range(C):
        o[c] = (gv0[c] + k0[c] * x0[c]) + k1[c] * x1[c]
    o, x0, x1 = bv[1], bm[0, 1], bm[1, 1]
    for c in range(C):
        o[c] = (_ZERO + k0[c] * x0[c]) + k1[c] * x1[c]
    v0, v1 = vn[0], vn[1]
    for i in range(2):
        o, b0, b1 = g_gain[i], bm[i, 0], bm[i, 1]
        for c in range(C):
            o[c] = (_ZERO + b0[c] * v0[c]) + b1[c] * v1[c]
    if first:
        return
    for i in range(2):  # bm becomes the adjoint of m^-_n
        h = He[i]
        for s in range(2):
            o, b = bm[i, s], bv[s]
            for c in range(C):
                o[c] -= h[c] * b[c]
    for i in range(2):  # ga += bm mprev^T
        for j in range(2):
            o, x0, y0, x1, y1 = ga[i, j], bm[i, 0], mprev[j, 0], bm[i, 1], mprev[j, 1]
            for c in range(C):
                o[c] = (o[c] + _ONE * (x0[c] * y0[c])) + _ONE * (x1[c] * y1[c])
    for i in range(2):  # carry = A^T bm
        for s in range(2):
            o, x0, y0, x1, y1 = carry[i, s], A[0, i], bm[0, s], A[1, i], bm[1, s]
            for c in range(C):
                o[c] = x0[c] * y0[c] + x1[c] * y1[c]


@_jit
def _data_bwd_step(He, incn, sdn, en, g_D, gst, gmn, gvn, gm, bsd):
    """Adjoint of step n's synthetic data (g_D (S', C) the adjoint of the data row): into
    g_mean[n] (gmn), g_var[n] (gvn) and the adjoint of the states gst (m, S, C)."""
    m, S, C = gst.shape
    g0 = g_D[0]
    for c in range(C):
        gm[c] = g0[c]
        bsd[c] = _ZERO
    for s in range(S):
        b_r, es = g_D[s + 1], en[s]
        for c in range(C):
            gm[c] += b_r[c]
            bsd[c] -= b_r[c] * es[c]
        for i in range(m):
            o, h = gst[i, s], He[i]
            for c in range(C):
                o[c] -= (h[c] * b_r[c]) if incn[c] else _ZERO
    for c in range(C):
        gmn[c] += gm[c] if incn[c] else _ZERO
        gvn[c] += (bsd[c] * _HALF / sdn[c]) if incn[c] else _ZERO


@_jit
def _rts_bwd_step(Pp, skip, gsg, sg, Pf, A, Tt, R, gp, ga, gf):
    """Adjoint of :func:`_rts_gain` for G_{n-1} (gsg its adjoint; Pp = P^-_n, Pf = P_{n-1},
    A = A_n): X = G^T = (P^-_n)^{-1} R with R = A_n P_{n-1}; adds into the adjoints of P^-_n
    (gp), A_n (ga) and P_{n-1} (gf)."""
    m = Pp.shape[0]
    C = Pp.shape[2]
    if m == 2:
        _rts_bwd_step2(Pp, skip, gsg, sg, Pf, A, Tt[0, 0], R, gp, ga, gf)
        return
    for i in range(m):
        for j in range(m):
            o, a = Tt[i, j], gsg[j, i]
            for c in range(C):
                o[c] = a[c]
    _solve(Pp, Tt, R, skip)  # R = adjoint of the right-hand side
    for i in range(m):
        for j in range(m):
            r = R[i, j]
            for c in range(C):
                r[c] = _ZERO if skip[c] else r[c]
    for i in range(m):
        for j in range(m):
            o1, o2, o3 = gp[i, j], ga[i, j], gf[i, j]
            for k in range(m):
                r_ik, x_kj, p_jk, a_ki, r_kj = R[i, k], sg[k, j], Pf[j, k], A[k, i], R[k, j]
                for c in range(C):
                    o1[c] -= r_ik[c] * x_kj[c]
                    o2[c] += r_ik[c] * p_jk[c]
                    o3[c] += a_ki[c] * r_kj[c]


@_jit
def _rts_bwd_step2(Pp, skip, gsg, sg, Pf, A, det, R, gp, ga, gf):
    """:func:`_rts_bwd_step` for m = 2, the solve and the products written out (one row
    stored per loop; the same operations in the same order). det (C,) is scratch."""
    C = Pp.shape[2]
    a, b, e, f = Pp[0, 0], Pp[0, 1], Pp[1, 0], Pp[1, 1]
    for c in range(C):
        det[c] = a[c] * f[c] - b[c] * e[c]
    for j in range(2):  # R = (P^-_n)^{-1} gsg^T, 0 where skipped
        r0, r1, x0, x1 = gsg[j, 0], gsg[j, 1], R[0, j], R[1, j]
        for c in range(C):
            x0[c] = _ZERO if skip[c] else (f[c] * r0[c] - b[c] * r1[c]) / det[c]
        for c in range(C):
            x1[c] = _ZERO if skip[c] else (a[c] * r1[c] - e[c] * r0[c]) / det[c]
    for i in range(2):
        for j in range(2):
            o, r0, r1 = gp[i, j], R[i, 0], R[i, 1]
            y0, y1 = sg[0, j], sg[1, j]
            for c in range(C):
                o[c] = (o[c] - r0[c] * y0[c]) - r1[c] * y1[c]
            o, y0, y1 = ga[i, j], Pf[j, 0], Pf[j, 1]
            for c in range(C):
                o[c] = (o[c] + r0[c] * y0[c]) + r1[c] * y1[c]
            o, a0, a1, q0, q1 = gf[i, j], A[0, i], A[1, i], R[0, j], R[1, j]
            for c in range(C):
                o[c] = (o[c] + a0[c] * q0[c]) + a1[c] * q1[c]


@_jit
def _prior_cov_adjoint(bP, bu, He, gpn, n, G, bPm, g_Pinf):
    """bPm = bP + bu He^T + gpn, the adjoint of the step's predicted covariance; at step 0
    also adds its symmetric part into g_Pinf (Pinf enters there), and returns whether it
    did (the covariance filter adjoint of the step ends there)."""
    m, C = bP.shape[0], bP.shape[2]
    for i in range(m):
        for j in range(m):
            o, p, b, h, g = bPm[i, j], bP[i, j], bu[i], He[j], gpn[i, j]
            for c in range(C):
                o[c] = p[c] + b[c] * h[c] + g[c]
    if n != 0:
        return False
    for c in range(C):  # Pinf and Q enter through their symmetric parts
        g = c % G
        for i in range(m):
            for j in range(m):
                g_Pinf[g, i, j] += _HALF * (bPm[i, j, c] + bPm[j, i, c])
    return True


@_jit
def _cov_bwd_step2(
    n, A, Pp, Pf, He, wn, gis, gls, g_gain, gfn, gpn, gw, u, s, cc, b_c, b_s, bu, bP, bPm, T,
    gQ, tmp, carry, ga, ix, G, g_Q, g_Pinf, accQ, pendQ,
):  # fmt: skip
    """:func:`_cov_bwd_step` for m = 2 with the 2 x 2 algebra written out: one row stored
    per loop (the same operations in the same order, so the same numbers)."""
    C = Pp.shape[2]
    h0, h1 = He[0], He[1]
    for i in range(2):  # u = P H^T, s = H u
        o, p0, p1 = u[i], Pp[i, 0], Pp[i, 1]
        for c in range(C):
            o[c] = (_ZERO + p0[c] * h0[c]) + p1[c] * h1[c]
    u0, u1 = u[0], u[1]
    for c in range(C):
        s[c] = (_ZERO + h0[c] * u0[c]) + h1[c] * u1[c]
    for i in range(2):
        for j in range(2):
            o, a, b = bP[i, j], gfn[i, j], carry[i, j]
            for c in range(C):
                o[c] = a[c] + b[c]
    for c in range(C):
        cc[c] = wn[c] / (_ONE + wn[c] * s[c])
    g0, g1 = g_gain[0], g_gain[1]
    for c in range(C):
        b_c[c] = (gis[c] + g0[c] * u0[c]) + g1[c] * u1[c]
    p00, p01, p10, p11 = bP[0, 0], bP[0, 1], bP[1, 0], bP[1, 1]
    for c in range(C):
        b_c[c] = (
            ((b_c[c] - u0[c] * p00[c] * u0[c]) - u0[c] * p01[c] * u1[c]) - u1[c] * p10[c] * u0[c]
        ) - u1[c] * p11[c] * u1[c]
    for c in range(C):
        den = _ONE + wn[c] * s[c]
        gw[c] = (_ZERO + gls[c] * s[c] / den) + b_c[c] * (_ONE - cc[c] * s[c]) ** 2
    for c in range(C):
        b_s[c] = gls[c] * cc[c] - cc[c] * cc[c] * b_c[c]
    for i in range(2):
        o, gg, h = bu[i], g_gain[i], He[i]
        q0, r0, q1, r1 = bP[i, 0], bP[0, i], bP[i, 1], bP[1, i]
        for c in range(C):
            o[c] = ((cc[c] * gg[c] + b_s[c] * h[c]) - cc[c] * (q0[c] + r0[c]) * u0[c]) - cc[c] * (
                q1[c] + r1[c]
            ) * u1[c]
    if _prior_cov_adjoint(bP, bu, He, gpn, n, G, bPm, g_Pinf):
        return
    _mm2(A, Pf, T)  # T = A P_{n-1}
    for i in range(2):
        for j in range(2):
            o, p1, p2 = gQ[i, j], bPm[i, j], bPm[j, i]
            for c in range(C):
                o[c] = _HALF * (p1[c] + p2[c])
            o, q0, r0, q1, r1, t0, t1 = (
                ga[i, j],
                bPm[i, 0],
                bPm[0, i],
                bPm[i, 1],
                bPm[1, i],
                T[0, j],
                T[1, j],
            )
            for c in range(C):  # g_A += (bPm + bPm^T) T
                o[c] = (o[c] + (q0[c] + r0[c]) * t0[c]) + (q1[c] + r1[c]) * t1[c]
    _accumulate(gQ, accQ, pendQ, ix, n, G, g_Q)
    _mm2(bPm, A, tmp)  # carry = A^T bPm A
    for i in range(2):
        for j in range(2):
            o, x0, y0, x1, y1 = carry[i, j], A[0, i], tmp[0, j], A[1, i], tmp[1, j]
            for c in range(C):
                o[c] = x0[c] * y0[c] + x1[c] * y1[c]


@_jit
def _cov_bwd_step(
    n, A, Pp, Pf, He, wn, gis, gls, g_gain, gfn, gpn, gw, u, s, cc, b_c, b_s, bu, bP, bPm, T,
    gQ, tmp, carry, ga, ix, G, g_Q, g_Pinf, accQ, pendQ,
):  # fmt: skip
    """Adjoint of :func:`_update` and :func:`_predict` at step n (Pp = P^-_n, Pf = P_{n-1},
    A = A_n; gis, gls, g_gain, gfn, gpn the adjoints of 1 / s, log s, the gain, P_n and
    P^-_n): gw (C,) becomes the adjoint of the precision w_n; adds into ga (A_n) and the
    tables g_Q, g_Pinf; carry holds the adjoint of P_{n-1} that flows through the
    prediction (for the step before)."""
    m = Pp.shape[0]
    C = Pp.shape[2]
    if m == 2:
        _cov_bwd_step2(
            n, A, Pp, Pf, He, wn, gis, gls, g_gain, gfn, gpn, gw, u, s, cc, b_c, b_s, bu, bP,
            bPm, T, gQ, tmp, carry, ga, ix, G, g_Q, g_Pinf, accQ, pendQ,
        )  # fmt: skip
        return
    _project(Pp, He, u, s)
    for c in range(C):
        den = _ONE + wn[c] * s[c]
        cc[c] = wn[c] / den
        b_c[c] = gis[c]
        b_s[c] = gls[c] * cc[c]
        gw[c] = _ZERO
        gw[c] += gls[c] * s[c] / den
    for i in range(m):
        gg, ui = g_gain[i], u[i]
        for c in range(C):
            b_c[c] += gg[c] * ui[c]
    for i in range(m):
        for j in range(m):
            o, a, b = bP[i, j], gfn[i, j], carry[i, j]
            for c in range(C):
                o[c] = a[c] + b[c]
    for i in range(m):
        for j in range(m):
            p, ui, uj = bP[i, j], u[i], u[j]
            for c in range(C):
                b_c[c] -= ui[c] * p[c] * uj[c]
    for c in range(C):
        gw[c] += b_c[c] * (_ONE - cc[c] * s[c]) ** 2
        b_s[c] -= cc[c] * cc[c] * b_c[c]
    for i in range(m):
        o, gg, h = bu[i], g_gain[i], He[i]
        for c in range(C):
            o[c] = cc[c] * gg[c] + b_s[c] * h[c]
        for j in range(m):
            p1, p2, uj = bP[i, j], bP[j, i], u[j]
            for c in range(C):
                o[c] -= cc[c] * (p1[c] + p2[c]) * uj[c]
    if _prior_cov_adjoint(bP, bu, He, gpn, n, G, bPm, g_Pinf):
        return
    _matmul(A, Pf, T)  # T = A P_{n-1}
    for i in range(m):
        for j in range(m):
            o, p1, p2 = gQ[i, j], bPm[i, j], bPm[j, i]
            for c in range(C):
                o[c] = _HALF * (p1[c] + p2[c])
            o = ga[i, j]  # g_A += (bPm + bPm^T) T
            for k in range(m):
                p1, p2, t = bPm[i, k], bPm[k, i], T[k, j]
                for c in range(C):
                    o[c] += (p1[c] + p2[c]) * t[c]
    _accumulate(gQ, accQ, pendQ, ix, n, G, g_Q)
    _matmul(bPm, A, tmp)  # carry = A^T bPm A
    _tmatmul(A, tmp, carry)


@_jit
def _mean_bwd21(Pp, He, incn, vn, g_kl, innov, gsn, gmf, cm, mprev, A, en, st, epsn, tl, notlast,
                gAe, gmn, gvn, gg, cm2, tl2, gaP, gmP, gvP, gL):  # fmt: skip
    """Sweep 2 of :func:`backward` at a step 0 < n for m = 2 and one draw, first part, in one
    loop over the chains: the gain, 1 / s and sd recomputed (:func:`_recompute21`), the KL
    term's adjoint of v_0, :func:`_mean_bwd_step22`, :func:`_data_bwd_step`, the prior
    draws' adjoint (bl), its outer products into the adjoint of A_n and (gL) that of CQ_n
    (for :func:`_accumulate`), and tl = A_n^T bl. The same operations in the same order (the
    same numbers). Every row read and updated (the carries cm, tl, the adjoint of A_n gAe,
    g_mean gmn, g_var gvn) goes to another row (cm2, tl2, gaP, gmP, gvP; a row read and
    written in one loop was measured slower in the forward pass). gg gets the adjoint of the
    gain (for :func:`_cov_bwd21`)."""
    C = gsn.shape[0]
    h0, h1 = He[0], He[1]
    f00, f10, f11 = Pp[0, 0], Pp[1, 0], Pp[1, 1]
    v0r, v1r = innov[0], innov[1]
    m00, m01, m10, m11 = gmf[0, 0], gmf[0, 1], gmf[1, 0], gmf[1, 1]
    c00, c01, c10, c11 = cm[0, 0], cm[0, 1], cm[1, 0], cm[1, 1]
    p00, p01, p10, p11 = mprev[0, 0], mprev[0, 1], mprev[1, 0], mprev[1, 1]
    a00, a01, a10, a11 = A[0, 0], A[0, 1], A[1, 0], A[1, 1]
    e0, s0, s1, z0, z1 = en[0], st[0, 0], st[1, 0], epsn[0, 0], epsn[1, 0]
    t0, t1 = tl[0, 0], tl[1, 0]
    ga00, ga01, ga10, ga11 = gAe[0, 0], gAe[0, 1], gAe[1, 0], gAe[1, 1]
    gg0, gg1 = gg[0], gg[1]
    o00, o01, o10, o11 = cm2[0, 0], cm2[0, 1], cm2[1, 0], cm2[1, 1]
    u0r, u1r = tl2[0, 0], tl2[1, 0]
    q00, q01, q10, q11 = gaP[0, 0], gaP[0, 1], gaP[1, 0], gaP[1, 1]
    N00, N01, N10, N11 = gL[0, 0], gL[0, 1], gL[1, 0], gL[1, 1]
    for c in range(C):
        ok = incn[c]
        gk = g_kl[c] if ok else _ZERO
        v = vn[c] if ok else _ONE
        W = (_ONE / v) if ok else _ZERO
        sd = math.sqrt(v)
        H0, H1 = h0[c], h1[c]
        r00, r10, r11 = f00[c], f10[c], f11[c]  # the gain and 1 / s (_recompute21)
        u0 = (_ZERO + r00 * H0) + r10 * H1
        u1 = (_ZERO + r10 * H0) + r11 * H1
        s = (_ZERO + H0 * u0) + H1 * u1
        cc = W / (_ONE + W * s)
        K0 = u0 * cc
        K1 = u1 * cc
        V0, V1 = v0r[c], v1r[c]
        gv0 = gk * cc * V0
        gs = gsn[c]
        gst0 = H0 * gs
        gst1 = H1 * gs
        b00 = m00[c] + c00[c]  # _mean_bwd_step22
        b01 = m01[c] + c01[c]
        b10 = m10[c] + c10[c]
        b11 = m11[c] + c11[c]
        bv0 = (gv0 + K0 * b00) + K1 * b10
        bv1 = (_ZERO + K0 * b01) + K1 * b11
        gg0[c] = (_ZERO + b00 * V0) + b01 * V1
        gg1[c] = (_ZERO + b10 * V0) + b11 * V1
        b00 = b00 - H0 * bv0
        b01 = b01 - H0 * bv1
        b10 = b10 - H1 * bv0
        b11 = b11 - H1 * bv1
        M00, M01, M10, M11 = p00[c], p01[c], p10[c], p11[c]
        g00 = (ga00[c] + b00 * M00) + b01 * M01
        g01 = (ga01[c] + b00 * M10) + b01 * M11
        g10 = (ga10[c] + b10 * M00) + b11 * M01
        g11 = (ga11[c] + b10 * M10) + b11 * M11
        A00, A01, A10, A11 = a00[c], a01[c], a10[c], a11[c]
        o00[c] = A00 * b00 + A10 * b10
        o01[c] = A00 * b01 + A10 * b11
        o10[c] = A01 * b00 + A11 * b10
        o11[c] = A01 * b01 + A11 * b11
        gm = bv0 + bv1  # _data_bwd_step
        bsd = _ZERO - bv1 * e0[c]
        gst0 = gst0 - ((H0 * bv1) if ok else _ZERO)
        gst1 = gst1 - ((H1 * bv1) if ok else _ZERO)
        gmP[c] = gmn[c] + (gm if ok else _ZERO)
        gvP[c] = gvn[c] + ((bsd * _HALF / sd) if ok else _ZERO)
        bl0 = (gst0 + t0[c]) if notlast else gst0  # the adjoint of s_n
        bl1 = (gst1 + t1[c]) if notlast else gst1
        S0, S1 = s0[c], s1[c]
        q00[c] = g00 + bl0 * S0
        q01[c] = g01 + bl0 * S1
        q10[c] = g10 + bl1 * S0
        q11[c] = g11 + bl1 * S1
        E0, E1 = z0[c], z1[c]
        N00[c] = _ZERO + bl0 * E0
        N01[c] = _ZERO + bl0 * E1
        N10[c] = _ZERO + bl1 * E0
        N11[c] = _ZERO + bl1 * E1
        u0r[c] = A00 * bl0 + A10 * bl1
        u1r[c] = A01 * bl0 + A11 * bl1


@_jit
def _cov_bwd21(Pp, Pq, He, incn, vn, incq, vq, g_kl, innov0, gg, skip, gsg, sg, gp, gaP, gfq, gfn,
               cq, gvP, gmP, A, gAe, gfq2, cq2, gvn, gmn, gQ):  # fmt: skip
    """Sweep 2 of :func:`backward` at a step 0 < n for m = 2 and one draw, second part, in
    one loop over the chains: P_{n-1} recomputed from P^-_{n-1} (Pq; :func:`_recompute21`),
    :func:`_rts_bwd_step2`, :func:`_cov_bwd_step2` (its gQ, the adjoint of Q_n, for
    :func:`_accumulate`) and the precision's adjoint into g_var. The same operations in the
    same order (the same numbers). The rows read and updated go to other rows: the adjoints
    of A_n (gaP -> gAe), of P_{n-1} (gfq -> gfq2), the carry (cq -> cq2), g_var (gvP ->
    gvn), g_mean (gmP -> gmn); the adjoint of P^-_n (gp) is not stored back (nothing reads
    it after this step)."""
    C = gg.shape[1]
    h0, h1 = He[0], He[1]
    f00, f10, f11 = Pp[0, 0], Pp[1, 0], Pp[1, 1]
    e00, e10, e11 = Pq[0, 0], Pq[1, 0], Pq[1, 1]
    gg0, gg1 = gg[0], gg[1]
    x00, x01, x10, x11 = gsg[0, 0], gsg[0, 1], gsg[1, 0], gsg[1, 1]
    G00, G01, G10, G11 = sg[0, 0], sg[0, 1], sg[1, 0], sg[1, 1]
    d00, d01, d10, d11 = gp[0, 0], gp[0, 1], gp[1, 0], gp[1, 1]
    ga00, ga01, ga10, ga11 = gaP[0, 0], gaP[0, 1], gaP[1, 0], gaP[1, 1]
    y00, y01, y10, y11 = gfq[0, 0], gfq[0, 1], gfq[1, 0], gfq[1, 1]
    n00, n01, n10, n11 = gfn[0, 0], gfn[0, 1], gfn[1, 0], gfn[1, 1]
    c00, c01, c10, c11 = cq[0, 0], cq[0, 1], cq[1, 0], cq[1, 1]
    a00, a01, a10, a11 = A[0, 0], A[0, 1], A[1, 0], A[1, 1]
    o00, o01, o10, o11 = gAe[0, 0], gAe[0, 1], gAe[1, 0], gAe[1, 1]
    w00, w01, w10, w11 = gfq2[0, 0], gfq2[0, 1], gfq2[1, 0], gfq2[1, 1]
    k00, k01, k10, k11 = cq2[0, 0], cq2[0, 1], cq2[1, 0], cq2[1, 1]
    N00, N01, N10, N11 = gQ[0, 0], gQ[0, 1], gQ[1, 0], gQ[1, 1]
    for c in range(C):
        ok = incn[c]
        gk = g_kl[c] if ok else _ZERO
        v = vn[c] if ok else _ONE
        W = (_ONE / v) if ok else _ZERO
        H0, H1 = h0[c], h1[c]
        q00, q10, q11 = f00[c], f10[c], f11[c]
        u0 = (_ZERO + q00 * H0) + q10 * H1
        u1 = (_ZERO + q10 * H0) + q11 * H1
        s = (_ZERO + H0 * u0) + H1 * u1
        okq = incq[c]  # P_{n-1} (_recompute21)
        vv = vq[c] if okq else _ONE
        Wq = (_ONE / vv) if okq else _ZERO
        r00, r10, r11 = e00[c], e10[c], e11[c]
        z0 = (_ZERO + r00 * H0) + r10 * H1
        z1 = (_ZERO + r10 * H0) + r11 * H1
        sq = (_ZERO + H0 * z0) + H1 * z1
        cq_ = Wq / (_ONE + Wq * sq)
        F10 = r10 - cq_ * z1 * z0
        F00 = r00 - cq_ * z0 * z0
        F11 = r11 - cq_ * z1 * z1
        F01 = F10
        V0 = innov0[c]
        gls = _HALF * gk
        gis = _HALF * gk * V0 * V0
        det = q00 * q11 - q10 * q10  # _rts_bwd_step2 (P^-_n symmetric: [0, 1] = [1, 0])
        sk = skip[c]
        X00, X01, X10, X11 = x00[c], x01[c], x10[c], x11[c]
        R00 = _ZERO if sk else (q11 * X00 - q10 * X01) / det
        R10 = _ZERO if sk else (q00 * X01 - q10 * X00) / det
        R01 = _ZERO if sk else (q11 * X10 - q10 * X11) / det
        R11 = _ZERO if sk else (q00 * X11 - q10 * X10) / det
        S00, S01, S10, S11 = G00[c], G01[c], G10[c], G11[c]
        D00 = (d00[c] - R00 * S00) - R01 * S10
        D01 = (d01[c] - R00 * S01) - R01 * S11
        D10 = (d10[c] - R10 * S00) - R11 * S10
        D11 = (d11[c] - R10 * S01) - R11 * S11
        g00 = (ga00[c] + R00 * F00) + R01 * F01
        g01 = (ga01[c] + R00 * F10) + R01 * F11
        g10 = (ga10[c] + R10 * F00) + R11 * F01
        g11 = (ga11[c] + R10 * F10) + R11 * F11
        A00, A01, A10, A11 = a00[c], a01[c], a10[c], a11[c]
        w00[c] = (y00[c] + A00 * R00) + A10 * R10
        w01[c] = (y01[c] + A00 * R01) + A10 * R11
        w10[c] = (y10[c] + A01 * R00) + A11 * R10
        w11[c] = (y11[c] + A01 * R01) + A11 * R11
        p00 = n00[c] + c00[c]  # _cov_bwd_step2
        p01 = n01[c] + c01[c]
        p10 = n10[c] + c10[c]
        p11 = n11[c] + c11[c]
        cc = W / (_ONE + W * s)
        g0, g1 = gg0[c], gg1[c]
        b_c = (gis + g0 * u0) + g1 * u1
        b_c = (((b_c - u0 * p00 * u0) - u0 * p01 * u1) - u1 * p10 * u0) - u1 * p11 * u1
        den = _ONE + W * s
        gw = (_ZERO + gls * s / den) + b_c * (_ONE - cc * s) ** 2
        b_s = gls * cc - cc * cc * b_c
        bu0 = ((cc * g0 + b_s * H0) - cc * (p00 + p00) * u0) - cc * (p01 + p10) * u1
        bu1 = ((cc * g1 + b_s * H1) - cc * (p10 + p01) * u0) - cc * (p11 + p11) * u1
        B00 = (p00 + bu0 * H0) + D00
        B01 = (p01 + bu0 * H1) + D01
        B10 = (p10 + bu1 * H0) + D10
        B11 = (p11 + bu1 * H1) + D11
        T00 = A00 * F00 + A01 * F10  # T = A P_{n-1}
        T01 = A00 * F01 + A01 * F11
        T10 = A10 * F00 + A11 * F10
        T11 = A10 * F01 + A11 * F11
        N00[c] = _HALF * (B00 + B00)
        N01[c] = _HALF * (B01 + B10)
        N10[c] = _HALF * (B10 + B01)
        N11[c] = _HALF * (B11 + B11)
        o00[c] = (g00 + (B00 + B00) * T00) + (B01 + B10) * T10
        o01[c] = (g01 + (B00 + B00) * T01) + (B01 + B10) * T11
        o10[c] = (g10 + (B10 + B01) * T00) + (B11 + B11) * T10
        o11[c] = (g11 + (B10 + B01) * T01) + (B11 + B11) * T11
        m00 = B00 * A00 + B01 * A10  # carry = A^T bPm A
        m01 = B00 * A01 + B01 * A11
        m10 = B10 * A00 + B11 * A10
        m11 = B10 * A01 + B11 * A11
        k00[c] = A00 * m00 + A10 * m10
        k01[c] = A00 * m01 + A10 * m11
        k10[c] = A01 * m00 + A11 * m10
        k11[c] = A01 * m01 + A11 * m11
        gvn[c] = gvP[c] + ((-gw / (v * v)) if ok else _ZERO)
        gmn[c] = gmP[c]


@_jit
def backward(K, G, ix, still, g_kl_in, g_out, saved, ar):
    """The adjoint of :func:`forward` for K table entries and G channels, g_out (S, B', N,
    G') that of its draws (the layout of its output): returns the gradients of A, Q, CQ (K,
    G, m, m), Pinf, chol0 (G, m, m), mean and var (B', N, G') (the layout of its data).

    Two sweeps over time: forward in time the adjoints of the draws and KL terms and of the
    smoother (which runs backward in the forward pass); backward in time those of the mean
    filter, the synthetic data, the prior draws, the RTS gains and the covariance filter,
    each step's in one go."""
    He, y, w, sd, P_pred, P_filt, gain, inv_s, sgain, states, m_filt, innov = saved[:12]
    m_smooth, P_smooth, A = saved[12], saved[13], saved[14]
    var, inc, eps, e = saved[15], saved[16], saved[17], saved[18]
    N, m, S, C = eps.shape  # C padded (forward), the chains Cr.. its padding lanes
    Cr = g_kl_in.shape[0]
    S1 = S + 1
    dt = var.dtype  # float64 or float32
    pos = np.zeros(1, dtype=np.int64)
    g_kl = np.zeros(C, g_kl_in.dtype)  # the padding lanes' adjoints 0: so all of theirs
    g_kl[:Cr] = g_kl_in
    g_sample = _e3(ar, pos, N, S, C)  # g_out time first
    for s in range(S):
        _time_first(g_out[s], g_sample[:, s])
    g_sample[:, :, Cr:] = _ZERO
    g_mfilt = _e4(ar, pos, N, m, S1, C)
    g_sgain = _e4(ar, pos, max(N - 1, 0), m, m, C)
    g_filt = _e4(ar, pos, N, m, m, C)
    g_pred = _e4(ar, pos, N, m, m, C)
    g_Ae = _e4(ar, pos, N, m, m, C)  # the adjoint of A_n, per chain (entry 0 unused)
    g_mean = _z2(ar, pos, N, C)
    g_var = _z2(ar, pos, N, C)
    An = np.zeros((m, m, C), dt)  # (the padding lanes: A = I, as in the forward pass)
    for i in range(m):
        An[i, i, Cr:] = _ONE
    last = -1  # the step whose table entries An holds
    # -- forward in time: draws, KL terms and smoother
    fm = np.empty(C, dt)
    pv = np.empty(C, dt)
    a_ms = np.empty(C, dt)
    b_pv = np.empty(C, dt)
    b = np.empty((m, S1, C), dt)
    gms = np.empty((m, S1, C), dt)
    gPs = np.empty((m, m, C), dt)
    bc = np.empty((m, m, C), dt)
    _finish_bwd_step(
        He, inc[0], var[0], y[0], g_kl, g_sample[0], m_smooth[0], P_smooth[0], g_mean[0],
        g_var[0], fm, pv, a_ms, b_pv, b, gPs,
    )  # fmt: skip
    for i in range(m):
        for j in range(m):
            o, a, a2 = bc[i, j], gPs[i, j], gPs[j, i]
            for c in range(C):
                o[c] = _HALF * (a[c] + a2[c])
    g_pred[0] = _ZERO
    bd = np.empty((m, S1, C), dt)
    d = np.empty((m, S1, C), dt)
    tmp = np.empty((m, S1, C), dt)
    Dm = np.empty((m, m, C), dt)
    T = np.empty((m, m, C), dt)
    TD = np.empty((m, m, C), dt)
    bD = np.empty((m, m, C), dt)
    for n in range(N - 1):
        _finish_bwd_step(
            He, inc[n + 1], var[n + 1], y[n + 1], g_kl, g_sample[n + 1], m_smooth[n + 1],
            P_smooth[n + 1], g_mean[n + 1], g_var[n + 1], fm, pv, a_ms, b_pv, gms, gPs,
        )  # fmt: skip
        if not _same_row(ix, n + 1, last):
            _gather_step(A, ix, n + 1, G, An)
            last = n + 1
        _smooth_bwd_step(
            An, sgain[n], m_filt[n], m_smooth[n + 1], P_pred[n + 1], P_smooth[n + 1], gms, gPs,
            b, bc, bd, d, tmp, Dm, T, TD, bD, g_sgain[n], g_Ae[n + 1], g_mfilt[n], g_filt[n],
            g_pred[n + 1],
        )  # fmt: skip
    g_mfilt[N - 1] = b
    g_filt[N - 1] = bc
    # -- backward in time: mean filter, data, prior draws, RTS gains, covariance filter
    g_CQ = np.zeros((K, G, m, m))
    g_Q = np.zeros((K, G, m, m))
    g_Pinf = np.zeros((G, m, m))
    gls = np.empty(C, dt)  # adjoints of log s, 1 / s and v_0 (from the KL terms)
    gis = np.empty(C, dt)
    gv0 = np.empty(C, dt)
    carry_m = np.zeros((m, S1, C), dt)
    bm = np.empty((m, S1, C), dt)
    bv = np.empty((S1, C), dt)
    g_gain = np.empty((m, C), dt)
    gst = np.empty((m, S, C), dt)
    bl = np.empty((m, S, C), dt)
    tl = np.empty((m, S, C), dt)
    gL = np.empty((m, m, C), dt)
    gm = np.empty(C, dt)
    bsd = np.empty(C, dt)
    skip = np.ones(C, dtype=np.bool_)
    Tt = np.empty((m, m, C), dt)
    R = np.empty((m, m, C), dt)
    u = np.empty((m, C), dt)
    s_ = np.empty(C, dt)
    cc = np.empty(C, dt)
    b_c = np.empty(C, dt)
    b_s = np.empty(C, dt)
    gw = np.empty(C, dt)
    bu = np.empty((m, C), dt)
    bP = np.empty((m, m, C), dt)
    bPm = np.empty((m, m, C), dt)
    gQ = np.empty((m, m, C), dt)
    tmpc = np.empty((m, m, C), dt)
    carry_c = np.zeros((m, m, C), dt)
    accQ = np.zeros((m, m, C))  # the per-chain sums of the table gradients (_accumulate)
    accL = np.zeros((m, m, C))
    pendQ = np.full(1, -1, dtype=np.int64)
    pendL = np.full(1, -1, dtype=np.int64)
    fused = m == 2 and S == 1  # the forward pass stored no w, sd, gain, 1 / s, P_n (n > 0)
    top = N - 1  # the steps the generic loop below runs (fused: step 0 only)
    if fused and N > 1:  # steps N - 1 .. 1 in two loops each; updated rows ping-pong (k, 1 - k)
        cmA = np.zeros((2, m, S1, C), dt)  # carry_m
        tlA = np.zeros((2, m, S, C), dt)
        ccA = np.zeros((2, m, m, C), dt)  # carry_c
        gfA = np.empty((2, m, m, C), dt)  # the adjoint of P_{n-1} after the RTS adjoint
        gaP = np.empty((m, m, C), dt)
        gmP = np.empty(C, dt)
        gvP = np.empty(C, dt)
        k = 0
        for n in range(N - 1, 0, -1):
            k1 = 1 - k
            if not _same_row(ix, n, last):
                _gather_step(A, ix, n, G, An)
                last = n
            _mean_bwd21(
                P_pred[n], He, inc[n], var[n], g_kl, innov[n], g_sample[n, 0], g_mfilt[n],
                cmA[k], m_filt[n - 1], An, e[n], states[n - 1], eps[n], tlA[k], n < N - 1,
                g_Ae[n], g_mean[n], g_var[n], g_gain, cmA[k1], tlA[k1], gaP, gmP, gvP, gL,
            )  # fmt: skip
            _accumulate(gL, accL, pendL, ix, n, G, g_CQ)
            _still_row(still, n, G, skip)
            _cov_bwd21(
                P_pred[n], P_pred[n - 1], He, inc[n], var[n], inc[n - 1], var[n - 1], g_kl,
                innov[n, 0], g_gain, skip, g_sgain[n - 1], sgain[n - 1], g_pred[n], gaP,
                g_filt[n - 1], g_filt[n] if n == N - 1 else gfA[k], ccA[k], gvP, gmP, An,
                g_Ae[n], gfA[k1], ccA[k1], g_var[n], g_mean[n], gQ,
            )  # fmt: skip
            _accumulate(gQ, accQ, pendQ, ix, n, G, g_Q)
            k = k1
        carry_m[:] = cmA[k]  # the state for step 0
        tl[:] = tlA[k]
        carry_c[:] = ccA[k]
        g_filt[0] = gfA[k]
        top = 0
    Wr = np.empty((2, C), dt)  # step 0's, recomputed (_recompute21)
    SDr = np.empty((2, C), dt)
    Kr = np.empty((2, m, C), dt)
    ISr = np.empty((2, C), dt)
    PFr = np.empty((2, m, m, C), dt)
    if fused and N > 0:
        _recompute21(P_pred[0], He, inc[0], var[0], Wr[0], SDr[0], Kr[0], ISr[0], PFr[0])
    for n in range(top, -1, -1):
        if fused:  # (n = 0: P_{n-1} is not read)
            wn_, sdn_, gainn_, isn_, Pfm1 = Wr[0], SDr[0], Kr[0], ISr[0], PFr[1]
        else:
            wn_, sdn_, gainn_, isn_, Pfm1 = w[n], sd[n], gain[n], inv_s[n], P_filt[n - 1]
        if n > 0 and not _same_row(ix, n, last):
            _gather_step(A, ix, n, G, An)
            last = n
        incn, v0, isn, gsn = inc[n], innov[n, 0], isn_, g_sample[n]
        for c in range(C):
            gk = g_kl[c] if incn[c] else _ZERO
            gls[c] = _HALF * gk
            gis[c] = _HALF * gk * v0[c] * v0[c]
            gv0[c] = gk * isn[c] * v0[c]
        for i in range(m):
            h = He[i]
            for s in range(S):
                o, gs = gst[i, s], gsn[s]
                for c in range(C):
                    o[c] = h[c] * gs[c]
        _mean_bwd_step(
            n == 0, An, He, gainn_, m_filt[n - 1], innov[n], g_mfilt[n], gv0, carry_m, bm, bv,
            g_gain, g_Ae[n],
        )  # fmt: skip
        _data_bwd_step(He, incn, sdn_, e[n], bv, gst, g_mean[n], g_var[n], gm, bsd)
        # prior draws: bl the adjoint of s_n, tl = A_{n+1}^T (that of s_{n+1})
        for i in range(m):
            for s in range(S):
                o, a, t = bl[i, s], gst[i, s], tl[i, s]
                if n == N - 1:
                    for c in range(C):
                        o[c] = a[c]
                else:
                    for c in range(C):
                        o[c] = a[c] + t[c]
        if n > 0:
            _outer_add(bl, states[n - 1], g_Ae[n], _ONE)
            gL[:] = _ZERO
            _outer_add(bl, eps[n], gL, _ONE)
            _accumulate(gL, accL, pendL, ix, n, G, g_CQ)
            _tmatvec(An, bl, tl)
            _still_row(still, n, G, skip)
            _rts_bwd_step(
                P_pred[n], skip, g_sgain[n - 1], sgain[n - 1], Pfm1, An, Tt, R,
                g_pred[n], g_Ae[n], g_filt[n - 1],
            )  # fmt: skip
        _cov_bwd_step(
            n, An, P_pred[n], Pfm1, He, wn_, gis, gls, g_gain, g_filt[n], g_pred[n],
            gw, u, s_, cc, b_c, b_s, bu, bP, bPm, T, gQ, tmpc, carry_c, g_Ae[n], ix, G, g_Q,
            g_Pinf, accQ, pendQ,
        )  # fmt: skip
        vn, gvn = var[n], g_var[n]
        for c in range(C):
            v = vn[c] if incn[c] else _ONE
            gvn[c] += (-gw[c] / (v * v)) if incn[c] else _ZERO
    _flush(accQ, pendQ, ix, G, g_Q)
    _flush(accL, pendL, ix, G, g_CQ)
    g_chol0 = np.zeros((G, m, m))  # bl is now the adjoint of s_0 = chol0 eps_0
    for c in range(Cr):
        g = c % G
        for i in range(m):
            for j in range(m):
                acc = _ZERO
                for s in range(S):
                    acc += bl[i, s, c] * eps[0, j, s, c]
                g_chol0[g, i, j] += acc
    g_A = np.zeros((K, G, m, m))
    for n in range(1, N):
        _accumulate(g_Ae[n], accQ, pendQ, ix, n, G, g_A)
    _flush(accQ, pendQ, ix, G, g_A)
    out_mean = np.empty((g_out.shape[1], N, g_out.shape[3]), dt)
    out_var = np.empty((g_out.shape[1], N, g_out.shape[3]), dt)
    _series_first(g_mean, out_mean)
    _series_first(g_var, out_var)
    return g_A, g_Q, g_CQ, g_Pinf, g_chol0, out_mean, out_var
