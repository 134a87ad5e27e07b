"""Compiled (numba) closed forms of the Matern-3/2 transition tables (m = 2).

:func:`matern32` computes, entry by entry in one loop over (K, G), exactly what
:func:`gpvae.gp._transitions._matern32_np` computes with numpy operations on (K, G) arrays:
the same expressions in the same order (no fused multiply-adds, no reassociation; numba
compiles without fast-math), so the same numbers bit for bit. At a training step's sizes
(K ~ 2 distinct steps, G ~ 16 channels) numpy's ~150 small operations cost about 0.3-0.4 ms;
the loop costs a few microseconds. ``exp`` stays with the caller (numpy's ``exp`` may round
differently from the C library's); ``sqrt`` and the divisions are correctly rounded in both.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

_jit = nb.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _put(M: Any, k: int, g: int, m00: float, m01: float, m10: float, m11: float) -> None:
    """Entry (k, g) of a (K, G, 2, 2) table: the 2 x 2 matrix [[m00, m01], [m10, m11]]."""
    M[k, g, 0, 0] = m00
    M[k, g, 0, 1] = m01
    M[k, g, 1, 0] = m10
    M[k, g, 1, 1] = m11


@_jit
def _put_sym(M: Any, k: int, g: int, m00: float, m01: float, m11: float) -> None:
    """Entry (k, g): the symmetric matrix [[m00, m01], [m01, m11]]."""
    _put(M, k, g, m00, m01, m01, m11)


@_jit
def _put_lower(M: Any, k: int, g: int, m00: float, m10: float, m11: float) -> None:
    """Entry (k, g): the lower-triangular factor [[m00, 0], [m10, m11]] (the upper entry
    is left as it is: zero in the tables it fills)."""
    M[k, g, 0, 0] = m00
    M[k, g, 1, 0] = m10
    M[k, g, 1, 1] = m11


@_jit
def matern32(lam: Any, s2: Any, dt: Any, decay: Any, jitter: float, tangents: bool) -> Any:
    """``(lam (G,), s2 (G,), dt (K, G), decay (K, G))`` -> the outputs and the tangents of
    :func:`gpvae.gp._transitions._matern32_np` (see there), and its two success flags."""
    K, G = dt.shape
    A = np.empty((K, G, 2, 2))
    Qn = np.empty((K, G, 2, 2))
    CQ = np.zeros((K, G, 2, 2))
    P = np.zeros((G, 2, 2))
    C0 = np.zeros((G, 2, 2))
    T = K if tangents else 0
    Gt = G if tangents else 0
    dA = np.empty((T, G, 2, 2))
    dQ_l = np.empty((T, G, 2, 2))
    dQ_s = np.empty((T, G, 2, 2))
    dCQ_l = np.zeros((T, G, 2, 2))
    dCQ_s = np.zeros((T, G, 2, 2))
    dP_l = np.zeros((Gt, 2, 2))
    dP_s = np.zeros((Gt, 2, 2))
    dC0_l = np.zeros((Gt, 2, 2))
    dC0_s = np.zeros((Gt, 2, 2))
    ok_q = True
    ok_0 = True
    for g in range(G):
        lam_g = lam[g]
        s2_g = s2[g]
        l2 = lam_g * lam_g
        rs2 = np.sqrt(s2_g)
        sl2 = s2_g * l2
        rl = np.sqrt(sl2)
        ok_0 = ok_0 and s2_g > 0 and sl2 > 0
        P[g, 0, 0] = s2_g
        P[g, 1, 1] = sl2
        C0[g, 0, 0] = rs2
        C0[g, 1, 1] = rl
        lam2 = 2.0 * lam_g
        half = 0.5 / rs2
        if tangents:
            dP_l[g, 1, 1] = s2_g * lam2
            dP_s[g, 0, 0] = 1.0
            dP_s[g, 1, 1] = l2
            dC0_l[g, 1, 1] = rs2
            dC0_s[g, 0, 0] = half
            dC0_s[g, 1, 1] = half * lam_g
        for k in range(K):
            t = dt[k, g]
            e = decay[k, g]
            x = lam_g * t
            dtl2 = l2 * t
            a00 = e * (1.0 + x)
            a01 = e * t
            a10 = e * -dtl2
            a11 = e * (1.0 - x)
            q00 = 1.0 - (a00 * a00 + a01 * a01 * l2)
            q01 = -(a00 * a10 + a01 * a11 * l2)
            q11 = l2 - (a10 * a10 + a11 * a11 * l2)
            s00 = q00 + jitter
            s11 = q11 + jitter * l2
            c00 = np.sqrt(s00)
            inv0 = 1.0 / c00
            c10 = q01 * inv0
            r11 = s11 - c10 * c10
            c11 = np.sqrt(r11)
            ok_q = ok_q and s00 > 0 and r11 > 0
            _put(A, k, g, a00, a01, a10, a11)
            _put_sym(Qn, k, g, s2_g * q00, s2_g * q01, s2_g * q11)
            _put_lower(CQ, k, g, rs2 * c00, rs2 * c10, rs2 * c11)
            if not tangents:
                continue
            e_dt = e * t
            d00 = -e_dt * x
            d01 = -e_dt * t
            d10 = e_dt * (dtl2 - 2.0 * lam_g)
            d11 = -e_dt * (2.0 - x)
            dq00 = -(2.0 * a00 * d00 + 2.0 * a01 * d01 * l2 + a01 * a01 * lam2)
            dq01 = -(d00 * a10 + a00 * d10 + (d01 * a11 + a01 * d11) * l2 + a01 * a11 * lam2)
            dq11 = lam2 - (2.0 * a10 * d10 + 2.0 * a11 * d11 * l2 + a11 * a11 * lam2)
            dc00 = 0.5 * dq00 * inv0
            dc10 = (dq01 - c10 * dc00) * inv0
            dc11 = 0.5 * (dq11 + jitter * lam2 - 2.0 * c10 * dc10) / c11
            _put(dA, k, g, d00, d01, d10, d11)
            _put_sym(dQ_l, k, g, s2_g * dq00, s2_g * dq01, s2_g * dq11)
            _put_sym(dQ_s, k, g, q00, q01, q11)
            _put_lower(dCQ_l, k, g, rs2 * dc00, rs2 * dc10, rs2 * dc11)
            _put_lower(dCQ_s, k, g, half * c00, half * c10, half * c11)
    outs = (A, Qn, P, CQ, C0)
    tang = (dA, dQ_l, dQ_s, dP_l, dP_s, dCQ_l, dCQ_s, dC0_l, dC0_s)
    return outs, tang, ok_q, ok_0
