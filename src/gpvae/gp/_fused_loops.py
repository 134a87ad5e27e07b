"""Compiled glue of the fused structured-posterior step (numba): what lies between the
recursions of :mod:`gpvae.gp._loops` when a training step asks for ``KL(q || p)`` and ``S``
joint draws, and its adjoint.

:mod:`gpvae.gp._fused` runs the compiled recursions (covariance filter, prior draws, mean
filter, the two smoothers) on float64 numpy buffers inside one autograd Function; these
loops do the elementwise work around them that the torch path does with a few dozen tensor
operations (each with its own pass over memory and autograd node): the pseudo-observations'
precisions, the synthetic data of the simulation smoother, the KL terms and the draws, and
the adjoints of each.

Shapes as in :mod:`gpvae.gp._loops`: N steps, C = B * G chains (chain ``c`` = channel
``c % G`` of series ``c // G``), m state dimension, S draws, S' = S + 1 data columns (the
pseudo-observations, then each draw's residuals); mean, var, inc (N, C).
"""

from __future__ import annotations

import math

import numba as nb

__all__ = [
    "data",
    "data_bwd",
    "finish",
    "finish_bwd",
    "precisions",
    "precisions_bwd",
    "start",
    "start_bwd",
]

_jit = nb.njit(cache=True, nogil=True, error_model="numpy")
_LOG_2PI = math.log(2.0 * math.pi)


@_jit
def precisions(mean, var, inc, y, w, lv, sd):
    """y = mean, w = 1 / var, lv = log var, sd = sqrt var where included; 0, 0, 0, 1
    elsewhere (precision 0: exact no-ops; excluded entries are never read)."""
    N, C = mean.shape
    for n in range(N):
        for c in range(C):
            if inc[n, c]:
                v = var[n, c]
                y[n, c] = mean[n, c]
                w[n, c] = 1.0 / v
                lv[n, c] = math.log(v)
                sd[n, c] = math.sqrt(v)
            else:
                y[n, c] = 0.0
                w[n, c] = 0.0
                lv[n, c] = 0.0
                sd[n, c] = 1.0


@_jit
def precisions_bwd(var, inc, g_w, g_lv, g_var):
    """Adds the adjoint of :func:`precisions`' w and lv into g_var."""
    N, C = var.shape
    for n in range(N):
        for c in range(C):
            if inc[n, c]:
                v = var[n, c]
                g_var[n, c] += -g_w[n, c] / (v * v) + g_lv[n, c] / v


@_jit
def start(chol0, eps0, state0):
    """state0 (C, m, S) = chol0 (G, m, m) @ eps0 (C, m, S) per chain."""
    C, m, S = eps0.shape
    G = chol0.shape[0]
    for c in range(C):
        g = c % G
        for i in range(m):
            for s in range(S):
                acc = 0.0
                for q in range(m):
                    acc += chol0[g, i, q] * eps0[c, q, s]
                state0[c, i, s] = acc


@_jit
def start_bwd(eps0, g_state0, g_chol0):
    """Adds the adjoint of :func:`start` into g_chol0."""
    C, m, S = eps0.shape
    G = g_chol0.shape[0]
    for c in range(C):
        g = c % G
        for i in range(m):
            for j in range(m):
                acc = 0.0
                for s in range(S):
                    acc += g_state0[c, i, s] * eps0[c, j, s]
                g_chol0[g, i, j] += acc


@_jit
def data(H, inc, y, sd, states, e, D):
    """D (N, C, S'): column 0 the pseudo-observations y; column s + 1 the residual
    ``y - (H x_s + sd e_s)`` of draw s's synthetic data, where included (else 0)."""
    N, C, m, S = states.shape
    G = H.shape[0]
    for n in range(N):
        for c in range(C):
            g = c % G
            D[n, c, 0] = y[n, c]
            for s in range(S):
                if inc[n, c]:
                    fp = 0.0
                    for i in range(m):
                        fp += states[n, c, i, s] * H[g, i]
                    D[n, c, s + 1] = y[n, c] - (fp + sd[n, c] * e[n, c, s])
                else:
                    D[n, c, s + 1] = 0.0


@_jit
def data_bwd(H, inc, sd, e, g_D, g_mean, g_var, g_states):
    """Adds the adjoint of :func:`data` (y = mean where included) into g_mean, g_var and
    g_states."""
    N, C, m, S = g_states.shape
    G = H.shape[0]
    for n in range(N):
        for c in range(C):
            if inc[n, c]:
                g = c % G
                gm = g_D[n, c, 0]
                bsd = 0.0
                for s in range(S):
                    b_r = g_D[n, c, s + 1]
                    gm += b_r
                    bsd -= b_r * e[n, c, s]
                    for i in range(m):
                        g_states[n, c, i, s] -= H[g, i] * b_r
                g_mean[n, c] += gm
                g_var[n, c] += bsd * 0.5 / sd[n, c]


@_jit
def finish(H, inc, var, y, lv, inv_s, log_s, innov, states, m_smooth, P_smooth, kl, sample):
    """The KL (C,) of every chain and the draws (N, C, S) ``H x_s + H m^s_{s+1}``.

    ``KL = sum_n E_q[log N(y_n | f_n, var_n)] - log Z`` over the included points, with
    ``log Z = sum_n -(log 2 pi + log s_n + v_n^2 / s_n) / 2`` (innovations v, variances s).
    """
    N, C, m, S = states.shape
    G = H.shape[0]
    for c in range(C):
        kl[c] = 0.0
    for n in range(N):
        for c in range(C):
            g = c % G
            for s in range(S):
                fp = 0.0
                fc = 0.0
                for i in range(m):
                    fp += states[n, c, i, s] * H[g, i]
                    fc += m_smooth[n, c, i, s + 1] * H[g, i]
                sample[n, c, s] = fp + fc
            if inc[n, c]:
                pv = 0.0
                fm = 0.0
                for i in range(m):
                    fm += m_smooth[n, c, i, 0] * H[g, i]
                    for j in range(m):
                        pv += P_smooth[n, c, i, j] * H[g, i] * H[g, j]
                r = y[n, c] - fm
                e_term = -0.5 * (_LOG_2PI + lv[n, c] + (r * r + pv) / var[n, c])
                v0 = innov[n, c, 0]
                z_term = -0.5 * (_LOG_2PI + log_s[n, c] + inv_s[n, c] * v0 * v0)
                kl[c] += e_term - z_term


@_jit
def finish_bwd(
    H, inc, var, y, inv_s, innov, states, m_smooth, P_smooth, g_kl, g_sample,
    g_mean, g_var, g_states, g_ms, g_Ps, g_inv_s, g_log_s, g_innov,
):  # fmt: skip
    """The adjoint of :func:`finish`: sets g_states, g_ms, g_Ps, g_inv_s, g_log_s and
    g_innov (every entry), adds into g_mean and g_var."""
    N, C, m, S = states.shape
    G = H.shape[0]
    for n in range(N):
        for c in range(C):
            g = c % G
            for s in range(S):
                gs = g_sample[n, c, s]
                for i in range(m):
                    g_states[n, c, i, s] = H[g, i] * gs
                    g_ms[n, c, i, s + 1] = H[g, i] * gs
            for s in range(S + 1):
                g_innov[n, c, s] = 0.0
            if not inc[n, c]:
                for i in range(m):
                    g_ms[n, c, i, 0] = 0.0
                    for j in range(m):
                        g_Ps[n, c, i, j] = 0.0
                g_inv_s[n, c] = 0.0
                g_log_s[n, c] = 0.0
                continue
            gk = g_kl[c]
            v = var[n, c]
            pv = 0.0
            fm = 0.0
            for i in range(m):
                fm += m_smooth[n, c, i, 0] * H[g, i]
                for j in range(m):
                    pv += P_smooth[n, c, i, j] * H[g, i] * H[g, j]
            r = y[n, c] - fm
            b_pv = -0.5 * gk / v
            for i in range(m):
                g_ms[n, c, i, 0] = gk * H[g, i] * r / v
                for j in range(m):
                    g_Ps[n, c, i, j] = b_pv * H[g, i] * H[g, j]
            g_mean[n, c] -= gk * r / v
            g_var[n, c] -= 0.5 * gk * (1.0 / v - (r * r + pv) / (v * v))
            v0 = innov[n, c, 0]
            g_log_s[n, c] = 0.5 * gk
            g_inv_s[n, c] = 0.5 * gk * v0 * v0
            g_innov[n, c, 0] = gk * inv_s[n, c] * v0
