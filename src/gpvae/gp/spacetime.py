"""Spatio-temporal GP backends: exact Kalman over time (``spacetime``) and inducing sites
(``sparse``).

Both read the index points ``x`` (B, N, d) of a series as (site, time) pairs: with a
:class:`~gpvae.kernels.SpaceTime` kernel the first d - 1 columns are the site and the last one
the time; with any other kernel every column is spatial and there is one time. The points
of a batch are put on a grid: the S distinct sites of the batch x the sorted distinct times
of each series (T, padded by repeating the last time). Any set of points fits (a grid cell
may hold several points or none), so both backends are exact for every input, and cheap when
the points really are a grid (S sites observed at the same T times).

- ``spacetime`` (:class:`SpaceTimeGPPosterior` with ``inducing=None``): the state at time t
  is the S sites' temporal states, whitened by the Cholesky factor of the sites' spatial
  covariance; Kalman filter + RTS smoother along time: O(T (S m)^3) instead of O((T S)^3).
- ``sparse`` (``inducing`` Z, M x (d - 1) learnable sites): the GP is projected on the M
  inducing sites (``f(p, t) = K_pZ K_ZZ^-1 u(t)`` + an independent residual); q(u) is the
  prior conditioned on the pseudo-observations through the projection (the Titsias / SVGP
  optimum given them), ``kl()`` is KL(q(u) || p(u)) (= KL(q(f) || p(f))), and the marginals of
  f add the residual variance ``(k_s(p, p) - Q_pp) k_t(0)``. Cost O(T M^3 m^3 + T S M^2):
  linear in the number of sites. With inducing sites that contain every site it equals the
  exact posterior.

Prediction at new sites uses the separability of the kernel: given the state at time t, a
new site's value is ``K_*Z K_ZZ^-1 u(t)`` plus a residual independent of the data, so only
the smoothed state at the new times is needed (new times are added to the grid). Samples use
Matheron's rule (a prior draw of the state corrected by the smoother's mean of the residual
data). The sparse ``sample`` draws the residual independently per point (its marginals are
exact; the likelihood factorises over points, so the ELBO is unchanged); ``sample_at`` draws
it jointly.

Shapes: B series, N points, d index dimension, L channels, S sites (or samples where said),
T times, M inducing sites, m temporal state dimension, K = M m.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from gpvae import settings
from gpvae.errors import ShapeError, ValidationError, invalid
from gpvae.gp._stkalman import (
    SmootherResult,
    StateModel,
    factor,
    log_two_pi,
    run_filter_smoother,
    sample_prior_states,
    smoothed_means,
)
from gpvae.gp.base import GPPosterior
from gpvae.gp.checks import check_condition_inputs, check_index_points, check_num_samples
from gpvae.gp.linalg import jittered_cholesky, sym, unique_rows
from gpvae.kernels.base import Kernel
from gpvae.kernels.spacetime import split_space_time

__all__ = ["SpaceTimeGPPosterior", "spacetime_supported"]

#: Elements of the largest temporary tensor when forming per-step statistics.
_CHUNK_ELEMENTS = 1 << 24


def spacetime_supported(kernels: Sequence[Kernel], d: int) -> bool:
    """True when the kernels fit these backends on d-dimensional index points: every
    temporal part (if any) has a state-space form, and all channels agree on whether there
    is a time column."""
    parts = [split_space_time(k) for k in kernels]
    has_time = {t is not None for _, t in parts}
    if len(has_time) != 1:
        return False
    if has_time.pop():
        return d >= 2 and all(t is not None and t.has_state_space for _, t in parts)
    return True


@dataclass
class _Solved:
    """The filter and smoother on one time grid."""

    tgrid: Tensor  # (B, T)
    time_idx: Tensor  # (B, N) long, the data points' steps
    model: StateModel
    J: Tensor  # (B, L, T, M, M)
    res: SmootherResult


class SpaceTimeGPPosterior(GPPosterior):
    """GP over (site, time) conditioned on pseudo-observations, by Kalman filtering in time.

    Args:
        kernels: L kernels; :class:`~gpvae.kernels.SpaceTime` kernels with temporal parts that
            have a state-space form, or purely spatial kernels (one time).
        x: (B, N, d) index points (sites in the first d - 1 columns and time last, or sites
            only).
        mean: (B, N, L) pseudo-observation means.
        var: (B, N, L) pseudo-observation variances (> 0, or +inf to exclude a point).
        valid: (B, N) bool, False for padding, or None.
        inducing: (M, d_s) inducing sites for the sparse backend, or None for the exact one
            (the state holds every site of the batch).
        jitter: diagonal jitter used only if a factorisation fails without it, and for
            sampling (None: :data:`gpvae.settings.JITTER`).
    """

    def __init__(
        self,
        kernels: Sequence[Kernel],
        x: Tensor,
        mean: Tensor,
        var: Tensor,
        valid: Tensor | None = None,
        inducing: Tensor | None = None,
        jitter: float | None = None,
    ) -> None:
        self.kernels = list(kernels)
        if not self.kernels:
            raise invalid("kernels", "one kernel per latent channel", "an empty sequence")
        self.jitter = settings.JITTER if jitter is None else float(jitter)
        x, valid = check_condition_inputs(x, mean, var, valid, len(self.kernels))
        d = int(x.shape[-1])
        if not spacetime_supported(self.kernels, d):
            raise ValidationError(
                "kernel: the spacetime and sparse backends need SpaceTime kernels whose "
                "temporal part has a state-space form (Matern12/32/52, Trend, HarmonicPeriodic, "
                "and sums and products of them) on "
                f"d >= 2 index points, or purely spatial kernels, for every channel; found "
                f"{[type(k).__name__ for k in self.kernels]} on d = {d}"
            )
        parts = [split_space_time(k) for k in self.kernels]
        self._spatial = [s for s, _ in parts]
        self._temporal = [t for _, t in parts]
        self._has_time = self._temporal[0] is not None
        self._ds = d - 1 if self._has_time else d
        included = torch.isfinite(var) & valid[..., None]  # (B, N, L)
        mean = torch.where(included, mean, torch.zeros_like(mean))
        self.x, self.mean, self.var, self.valid = x, mean, var, valid
        safe_var = torch.where(included, var, torch.ones_like(var))
        self._w = torch.where(included, 1.0 / safe_var, torch.zeros_like(var))  # (B, N, L)
        self._log_v = torch.where(included, torch.log(safe_var), torch.zeros_like(var)).sum(1)
        self._num = included.sum(1).to(var.dtype)  # (B, L)

        # sites of the batch and the spatial projection
        x_safe = torch.where(valid[..., None], x, torch.zeros_like(x))
        self._x_safe = x_safe
        sites = x_safe[..., : self._ds]  # (B, N, ds)
        if bool(valid.any()):
            self.sites, inv = unique_rows(sites[valid])
        else:
            self.sites, inv = sites[:1, :1].reshape(1, self._ds), torch.zeros(0, dtype=torch.long)
        self._site_idx = torch.zeros(valid.shape, dtype=torch.long, device=x.device)
        self._site_idx[valid] = inv
        if inducing is not None:
            if inducing.ndim != 2 or inducing.shape[-1] != self._ds:
                raise ShapeError(
                    f"inducing: expected (M, {self._ds}) inducing sites (the spatial columns "
                    f"of x), found shape {tuple(inducing.shape)}"
                )
            self.inducing: Tensor = inducing.to(x.dtype)
        else:
            self.inducing = self.sites
        self._sparse = inducing is not None
        self._chol_z = [
            factor(k(self.inducing), self.jitter, "spatial covariance of the inducing sites")
            for k in self._spatial
        ]
        self._G, self._resid = self._projection(self.sites)  # (L, S, M), (L, S)

        # temporal state spaces
        self._tspace = [_state_space(t, x.dtype) for t in self._temporal]
        self._kt0 = torch.stack(
            [(h @ p @ h.T).reshape(()) for h, p, _ in self._tspace]
        )  # (L,) k_t(0)
        self._solved = self._solve(self._data_grid())

    # ------------------------------------------------------------------------------------
    # building blocks
    def _projection(self, sites: Tensor) -> tuple[Tensor, Tensor]:
        """``G = K_pZ chol(K_ZZ)^-T`` (L, P, M) and residual variances ``k_s(p, p) - |G_p|^2``
        (L, P) at sites (P, ds); exact zeros when the sites are the state's own sites."""
        if not self._sparse and sites is self.sites:
            G = torch.stack(self._chol_z)
            return G, torch.zeros(G.shape[:2], dtype=G.dtype, device=G.device)
        gs, rs = [], []
        for k, chol in zip(self._spatial, self._chol_z):
            cross = k(sites, self.inducing).to(sites.dtype)  # (P, M)
            g = torch.linalg.solve_triangular(chol, cross.T, upper=False).T  # (P, M)
            diag = k(sites, diag=True).to(sites.dtype)  # (P,)
            gs.append(g)
            rs.append((diag - (g**2).sum(-1)).clamp_min(0.0))
        return torch.stack(gs), torch.stack(rs)

    def _data_grid(self) -> Tensor:
        """(B, T) sorted distinct data times of each series, padded with the last one."""
        if not self._has_time:
            return torch.zeros(self.x.shape[0], 1, dtype=self.x.dtype, device=self.x.device)
        t = self._x_safe[..., -1]
        return _pad_rows([torch.unique(t[b, self.valid[b]]) for b in range(t.shape[0])], t)

    def _solve(self, tgrid: Tensor) -> _Solved:
        """Filter and smoother of the data on the time grid ``tgrid`` (B, T)."""
        B, T = tgrid.shape
        if self._has_time:
            time_idx = _search(tgrid, self._x_safe[..., -1])
        else:
            time_idx = torch.zeros_like(self._site_idx)
        w = self._w
        wm = w * self.mean
        cells = self._scatter(torch.cat([w, wm], dim=-1), time_idx, T)  # (B, 2L, T, S)
        L = len(self.kernels)
        W, Wm = cells[:, :L], cells[:, L:]
        c = (wm * self.mean).sum(1)  # (B, L): sum w m^2 (all steps together)
        c_steps = torch.zeros(B, L, T, dtype=w.dtype, device=w.device)
        c_steps[..., 0] = c
        J = _gram(self._G, W)  # (B, L, T, M, M)
        hvec = Wm @ self._G[None]  # (B, L, T, M)
        model = self._state_model(tgrid)
        res = run_filter_smoother(model, J, hvec, c_steps, self.jitter)
        return _Solved(tgrid, time_idx, model, J, res)

    def _scatter(self, values: Tensor, time_idx: Tensor, T: int) -> Tensor:
        """Sum point values (..., B, N, C) into grid cells: (..., B, C, T, S)."""
        S = int(self.sites.shape[0])
        flat = (time_idx * S + self._site_idx).expand(values.shape[:-1])  # (..., B, N)
        out = values.new_zeros((*values.shape[:-2], T * S, values.shape[-1]))
        out = out.scatter_add(-2, flat[..., None].expand(values.shape), values)
        return out.unflatten(-2, (T, S)).movedim(-1, -3)

    def _state_model(self, tgrid: Tensor) -> StateModel:
        """The temporal state spaces of every channel on the grid ``tgrid`` (B, T)."""
        B, T = tgrid.shape
        m = max(h.shape[-1] for h, _, _ in self._tspace)
        dtype, device = tgrid.dtype, tgrid.device
        dt = (tgrid[:, 1:] - tgrid[:, :-1]).clamp_min(0.0)  # (B, T-1)
        hs, pinfs, As, Qs = [], [], [], []
        for h, pinf, kernel in self._tspace:
            k = h.shape[-1]
            hs.append(torch.nn.functional.pad(h[0], (0, m - k)))
            pinfs.append(_pad_block(pinf, m))
            A = torch.eye(m, dtype=dtype, device=device).expand(B, T, m, m).clone()
            Q = torch.zeros(B, T, m, m, dtype=dtype, device=device)
            if kernel is not None and T > 1:
                a, q = kernel.transition(dt)  # (B, T-1, k, k)
                A = torch.cat([A[:, :1], _pad_block(a.to(dtype), m, fill=0.0)], dim=1)
                Q = torch.cat([Q[:, :1], _pad_block(q.to(dtype), m)], dim=1)
            As.append(A)
            Qs.append(Q)
        M = int(self._G.shape[-1])
        return StateModel(
            torch.stack(hs), torch.stack(pinfs), torch.stack(As, 1), torch.stack(Qs, 1), M
        )

    def _grid_moments(self, solved: _Solved, G: Tensor) -> tuple[Tensor, Tensor]:
        """Projected mean and variance (no residual) at every step and the sites of ``G``
        (L, P, M): two (B, L, T, P)."""
        fmean = solved.model.hx(solved.res.mean, steps=True)  # (B, L, T, M)
        mean = fmean @ G.transpose(-1, -2)[None]  # (B, L, T, P)
        var = _quad_diag(G, solved.res.fcov)  # (B, L, T, P)
        return mean, var.clamp_min(0.0)

    def _gather(self, grid: Tensor, time_idx: Tensor, site_idx: Tensor, S: int) -> Tensor:
        """Values at points: grid (..., B, L, T, S), indices (B, N) -> (..., B, N, L)."""
        flat = (time_idx * S + site_idx)[:, None, :]  # (B, 1, N)
        g = grid.flatten(-2)  # (..., B, L, T S)
        out = torch.gather(g, -1, flat.expand(*g.shape[:-1], flat.shape[-1]))
        return out.transpose(-1, -2)

    # ------------------------------------------------------------------------------------
    # the GPPosterior interface
    @property
    def log_marginal(self) -> Tensor:
        """(B, L) log N(mean | 0, K + diag(var)) (the DTC marginal for the sparse backend)."""
        return self._solved.res.log_lik - 0.5 * (self._log_v + self._num * log_two_pi())

    def _mask_padding(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        pad = ~self.valid[..., None]
        return (
            torch.where(pad, torch.zeros_like(mean), mean),
            torch.where(pad, torch.ones_like(var), var),
        )

    def marginals(self) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of f at ``x``: two (B, N, L); (0, 1) on padding."""
        gm, gv = self._grid_moments(self._solved, self._G)
        S = int(self.sites.shape[0])
        mean = self._gather(gm, self._solved.time_idx, self._site_idx, S)
        var = self._gather(gv, self._solved.time_idx, self._site_idx, S)
        resid = (self._resid * self._kt0[:, None]).T[self._site_idx]  # (B, N, L)
        return self._mask_padding(mean, var + resid)

    def kl(self) -> Tensor:
        """(B, L) KL(q || p); for the sparse backend KL(q(u) || p(u)).

        ``E_q[sum_n log N(mean_n | (Gu)_n, var_n)] - log_marginal``, with the projected
        marginals (the pseudo-observations see f through the projection only).
        """
        gm, gv = self._grid_moments(self._solved, self._G)
        S = int(self.sites.shape[0])
        mu = self._gather(gm, self._solved.time_idx, self._site_idx, S)  # (B, N, L)
        sv = self._gather(gv, self._solved.time_idx, self._site_idx, S)
        sq = self._w * ((self.mean - mu) ** 2 + sv)  # 0 where not included
        expected = -0.5 * (self._num * log_two_pi() + self._log_v + sq.sum(1))
        return expected - self.log_marginal

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Joint posterior samples of f at ``x`` (S, B, N, L); N(0, 1) placeholders on padding."""
        check_num_samples(num_samples)
        fgrid = self._matheron(self._solved, num_samples, generator)  # (S, B, L, T, M)
        grid = fgrid @ self._G.transpose(-1, -2)[None, None]  # (S, B, L, T, S_sites)
        S = int(self.sites.shape[0])
        f = self._gather(grid, self._solved.time_idx, self._site_idx, S)  # (S, B, N, L)
        noise = torch.randn(f.shape, generator=generator, dtype=f.dtype, device=f.device)
        if self._sparse:
            f = f + self._resid_sd()[self._site_idx] * noise
        return torch.where(self.valid[..., None], f, noise)

    def predict(self, x_new: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of f at ``x_new`` (B, M, d): two (B, M, L)."""
        x_new = self._check_new(x_new)
        solved, t_idx, G, resid, s_idx = self._at_new(x_new)
        gm, gv = self._grid_moments(solved, G)
        P = int(G.shape[1])
        mean = self._gather(gm, t_idx, s_idx, P)
        var = self._gather(gv, t_idx, s_idx, P) + (resid * self._kt0[:, None]).T[s_idx]
        return mean, var

    def sample_at(
        self, x_new: Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Joint posterior samples of f at ``x_new`` (B, M, d): (S, B, M, L)."""
        check_num_samples(num_samples)
        x_new = self._check_new(x_new)
        solved, t_idx, G, resid, s_idx = self._at_new(x_new)
        fgrid = self._matheron(solved, num_samples, generator)  # (S, B, L, T, M)
        grid = fgrid @ G.transpose(-1, -2)[None, None]  # (S, B, L, T, P)
        f = self._gather(grid, t_idx, s_idx, int(G.shape[1]))  # (S, B, Mn, L)
        if bool((resid * self._kt0[:, None] > self.jitter).any()):
            f = f + self._joint_residual(x_new, G[:, s_idx], num_samples, generator)
        return f

    def _resid_sd(self) -> Tensor:
        """(S, L) residual standard deviations at the sites; 0 where the residual is round-off
        (below 100 eps of the prior variance), so that no infinite gradient of a square root
        at 0 reaches the hyper-parameters."""
        var = (self._resid * self._kt0[:, None]).T  # (S, L)
        prior = torch.stack([k(self.sites, diag=True) for k in self._spatial], -1) * self._kt0
        real = var > 100.0 * torch.finfo(var.dtype).eps * prior.to(var.dtype)
        return torch.where(real, torch.where(real, var, torch.ones_like(var)).sqrt(), 0.0)

    # ------------------------------------------------------------------------------------
    # prediction helpers
    def _check_new(self, x_new: Tensor) -> Tensor:
        x_new, _ = check_index_points(x_new, None, "x_new")
        B, _, d = self.x.shape
        if x_new.shape[0] != B or x_new.shape[2] != d:
            raise ShapeError(
                f"x_new: expected shape ({B}, M, {d}) to match x, found {tuple(x_new.shape)}"
            )
        return x_new.to(self.x.dtype)

    def _at_new(self, x_new: Tensor) -> tuple[_Solved, Tensor, Tensor, Tensor, Tensor]:
        """The solved grid holding the new times, their steps (B, Mn), the projection of the
        new sites (L, P, M), their residual variances (L, P) and site indices (B, Mn)."""
        sites, s_idx = unique_rows(x_new[..., : self._ds].reshape(-1, self._ds))
        s_idx = s_idx.reshape(x_new.shape[:2])
        G, resid = self._projection(sites)
        solved = self._solved
        if self._has_time:
            t_new = x_new[..., -1]
            t_idx = _search(solved.tgrid, t_new)
            hit = torch.gather(solved.tgrid, 1, t_idx.clamp_max(solved.tgrid.shape[1] - 1))
            if not bool((hit == t_new).all()):
                union = _pad_rows(
                    [
                        torch.unique(torch.cat([solved.tgrid[b], t_new[b]]))
                        for b in range(t_new.shape[0])
                    ],
                    t_new,
                )
                solved = self._solve(union)
                t_idx = _search(union, t_new)
        else:
            t_idx = torch.zeros_like(s_idx)
        return solved, t_idx, G, resid, s_idx

    def _matheron(
        self, solved: _Solved, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        """Posterior draws of the f-part of the state at every step: (S, B, L, T, M)."""
        model = solved.model
        states = sample_prior_states(model, num_samples, generator, self.jitter)
        fprior = model.hx(states, steps=True)  # (S, B, L, T, M)
        S = int(self.sites.shape[0])
        grid = fprior @ self._G.transpose(-1, -2)[None, None]  # (S, B, L, T, S_sites)
        at_data = self._gather(grid, solved.time_idx, self._site_idx, S)  # (S, B, N, L)
        noise = torch.randn(
            at_data.shape, generator=generator, dtype=at_data.dtype, device=at_data.device
        )
        resid = self._w * (self.mean - at_data) - self._w.sqrt() * noise  # w (m - f - e)
        cells = self._scatter(resid, solved.time_idx, solved.tgrid.shape[1])  # (S,B,L,T,S)
        hvec = cells @ self._G[None, None]  # (S, B, L, T, M)
        correction = smoothed_means(model, solved.res, solved.J, hvec)  # (S, B, L, T, K)
        return fprior + model.hx(correction, steps=True)

    def _joint_residual(
        self, x_new: Tensor, g_pts: Tensor, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        """Joint draws of the residuals at new points (S, B, Mn, L); g_pts (L, B, Mn, M)."""
        out = []
        for ell, (ks, kt) in enumerate(zip(self._spatial, self._temporal)):
            s = x_new[..., : self._ds]
            cov = ks(s).to(x_new.dtype) - g_pts[ell] @ g_pts[ell].transpose(-1, -2)
            if kt is not None:
                cov = cov * kt(x_new[..., -1:]).to(x_new.dtype)
            chol = jittered_cholesky(sym(cov), self.jitter, "residual covariance at x_new")
            eps = torch.randn(
                (num_samples, *cov.shape[:-1], 1),
                generator=generator,
                dtype=cov.dtype,
                device=cov.device,
            )
            out.append((chol @ eps).squeeze(-1))  # (S, B, Mn)
        return torch.stack(out, dim=-1)


# ----------------------------------------------------------------------------------------
# helpers


def _state_space(kernel: Kernel | None, dtype: torch.dtype) -> tuple[Tensor, Tensor, Kernel | None]:
    """``(H (1, m), Pinf (m, m), kernel)``; a constant (m = 1) when there is no time."""
    if kernel is None:
        one = torch.ones(1, 1, dtype=dtype)
        return one, one, None
    ss = kernel.state_space()
    return ss.H.to(dtype), ss.Pinf.to(dtype), kernel


def _pad_block(mat: Tensor, m: int, fill: float = 1.0) -> Tensor:
    """Pad (..., k, k) to (..., m, m) with ``fill`` on the new diagonal entries."""
    k = mat.shape[-1]
    if k == m:
        return mat
    out = torch.nn.functional.pad(mat, (0, m - k, 0, m - k))
    diag = torch.cat([torch.zeros(k), torch.full((m - k,), fill)]).to(mat)
    return out + torch.diag_embed(diag)


def _pad_rows(rows: list[Tensor], like: Tensor) -> Tensor:
    """Stack sorted 1-D rows, padding each with its last value (0 for an empty row)."""
    T = max(1, max(len(r) for r in rows))
    out = torch.zeros(len(rows), T, dtype=like.dtype, device=like.device)
    for b, r in enumerate(rows):
        if len(r):
            out[b, : len(r)] = r
            out[b, len(r) :] = r[-1]
    return out


def _search(tgrid: Tensor, t: Tensor) -> Tensor:
    """Index of each t (B, N) in its series' sorted grid (B, T) (first match)."""
    return torch.searchsorted(tgrid.contiguous(), t.contiguous()).clamp_max(tgrid.shape[1] - 1)


def _gram(G: Tensor, W: Tensor) -> Tensor:
    """``G^T diag(W_t) G`` for G (L, S, M), W (B, L, T, S): (B, L, T, M, M), in chunks."""
    B, L, _, S = W.shape
    step = max(1, _CHUNK_ELEMENTS // max(1, B * L * S * G.shape[-1]))
    return _over_steps(_gram_chunk, G, W, step)


def _gram_chunk(G: Tensor, W: Tensor) -> Tensor:
    return (G.transpose(-1, -2)[None, :, None] * W[..., None, :]) @ G[None, :, None]


def _quad_diag(G: Tensor, C: Tensor) -> Tensor:
    """``diag(G C_t G^T)`` for G (L, P, M), C (B, L, T, M, M): (B, L, T, P), in chunks."""
    B, L, _, M, _ = C.shape
    step = max(1, _CHUNK_ELEMENTS // max(1, B * L * G.shape[1] * M))
    return _over_steps(_quad_diag_chunk, G, C, step)


def _quad_diag_chunk(G: Tensor, C: Tensor) -> Tensor:
    return ((G[None, :, None] @ C) * G[None, :, None]).sum(-1)


def _over_steps(fn: Callable[[Tensor, Tensor], Tensor], G: Tensor, X: Tensor, step: int) -> Tensor:
    """``fn(G, X[:, :, chunk])`` over chunks of ``step`` time steps, joined along time.

    When gradients are recorded each chunk is checkpointed: its (chunk, S, M) intermediates,
    which would otherwise be kept for the backward pass of every chunk (O(T S M) memory,
    gigabytes at S = 10,000 sites), are recomputed chunk by chunk during backward instead.
    """
    T = X.shape[2]
    keep = torch.is_grad_enabled() and (G.requires_grad or X.requires_grad)
    parts = []
    for i in range(0, T, step):
        chunk = X[:, :, i : i + step]
        if keep and step < T:
            parts.append(checkpoint(fn, G, chunk, use_reentrant=False))
        else:
            parts.append(fn(G, chunk))
    return torch.cat(parts, dim=2)
