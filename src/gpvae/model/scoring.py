"""Scores of observed entries under the model: with their steps hidden
(:func:`heldout_nlpd`, in folds) and under the GP prior alone (:func:`prior_nlpd`); the
anomaly scores of :mod:`gpvae.estimator.anomaly` rest on them. ``GPVAEModel.heldout_nlpd``
and ``GPVAEModel.prior_nlpd`` call these. :func:`latent_nlpd` scores the encoded latent
path itself under the prior's dynamics (how surprising each step of it is given the steps
before)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from gpvae.batch import Batch
from gpvae.errors import ValidationError, invalid
from gpvae.model.sampling import check_count, sample_chunks
from gpvae.posteriors.structured import StructuredQ
from gpvae.rng import per_series_normal

if TYPE_CHECKING:
    from gpvae.model.core import GPVAEModel

__all__ = ["entry_nlpd", "heldout_nlpd", "latent_nlpd", "prior_nlpd"]


@torch.no_grad()
def heldout_nlpd(
    model: GPVAEModel,
    batch: Batch,
    generators: Sequence[torch.Generator],
    num_folds: int,
    num_samples: int,
    causal: bool = False,
    block: int = 1,
    causal_block: int | None = None,
    block_generators: Callable[[int], Sequence[torch.Generator]] | None = None,
) -> Tensor:
    """Negative log predictive density of every observed entry with its step hidden.

    The steps are split into ``num_folds`` interleaved folds (step n in fold
    ``n % num_folds``; with ``block`` B > 1, runs of B consecutive steps interleave: step n
    in fold ``(n // B) % num_folds``, so a scored step's neighbours up to B - 1 steps away
    can be hidden with it and its prediction rests on the prior's conditional from
    farther away); for each fold, every entry at its steps is hidden from the
    encoder and each observed entry there is scored by
    ``-log (1/S) sum_s p(y | z_s, other folds)``, ``z_s ~ q(z | other folds)``.
    ``num_folds = 1`` hides nothing: every observed entry is scored under
    ``q(z | all observed entries)`` (a reconstruction score, one conditioning).

    With ``causal`` the folds are consecutive blocks, and each block is scored given the
    steps **before** it only (``z_s ~ q(z | steps before the block)``): a forecast of the
    block from its past (a filtering score, for streams). The first block is scored under
    the prior (it has no past in the batch). With ``causal_block`` C the blocks are runs of
    C steps (step n in block ``n // C``) and block k's draws come from
    ``block_generators(k)`` (one generator per series, which the caller seeds from what
    comes before the block), laid out for C steps whatever the block's length: then no
    score depends on a later step or on the series' length. Without it, series b's steps
    form ``num_folds`` blocks of its own length T_b (step n in block
    ``n * num_folds // T_b``), drawn from ``generators``.

    Returns:
        (B, N, D) float64 on the CPU, NaN where not observed.
    """
    K = check_count("num_folds", num_folds)
    S = check_count("num_samples", num_samples)
    run = check_count("block", block)
    if causal and run > 1:
        raise invalid("block", "1 with causal folds (blocks already)", run)
    B, N, D = batch.y.shape
    if K == 1 and not causal:
        return entry_nlpd(model, batch, batch.observed, generators, S)
    n = torch.arange(N, device=batch.y.device)
    count = K
    if not causal:
        fold_of = ((n // run) % K)[None].expand(B, N)  # (B, N)
    elif causal_block is not None:
        C = check_count("causal_block", causal_block)
        fold_of = (n // C)[None].expand(B, N)
        count = -(-N // C)
    else:  # each series' own length (padding after its last block)
        length = batch.valid.sum(dim=1).clamp_min(1)  # (B,)
        fold_of = (n[None] * K) // length[:, None]
    score = torch.full((B, N, D), float("nan"), dtype=torch.float64)
    for k in range(count):
        in_k = fold_of == k  # (B, N)
        # causal: the block and every step after it are hidden; else the fold's steps
        hide = (fold_of >= k) if causal else in_k
        steps = torch.nonzero(in_k.any(dim=0)).squeeze(1)  # (N_k,)
        if steps.numel() == 0:
            continue
        # with interp_skip the fusion needs every step's neighbours: decode them all
        only = steps if model.interp_fusion is None else None
        gens, noise = generators, None
        if causal:  # each series' noise laid out for its own block
            noise = []
            for b in range(B):
                mine = torch.nonzero(in_k[b]).squeeze(1)  # in steps, which is sorted
                where = mine if only is None else torch.searchsorted(steps, mine)
                noise.append((len(mine) if causal_block is None else causal_block, where))
            if causal_block is not None and block_generators is not None:
                gens = block_generators(k)
        vis = batch.observed & ~hide[..., None]
        part = entry_nlpd(model, batch, vis, gens, S, only, block_noise=noise)
        target = (batch.observed & in_k[..., None]).cpu()
        score = torch.where(target, part, score)
    return score


@torch.no_grad()
def prior_nlpd(
    model: GPVAEModel,
    batch: Batch,
    generators: Sequence[torch.Generator],
    num_samples: int,
    causal_block: int | None = None,
    block_generators: Callable[[int], Sequence[torch.Generator]] | None = None,
) -> Tensor:
    """Negative log density of every observed entry under the prior alone:
    ``-log (1/S) sum_s p(y | z_s)``, ``z_s`` from the GP prior's marginal at the entry's
    step (nothing is conditioned on; how far the value lies from what the model calls
    normal anywhere, where :func:`heldout_nlpd` asks how far it lies from its
    neighbours). Needs a likelihood whose entries are independent given z. With
    ``causal_block`` and ``block_generators``, the draws of each run of that many steps
    come from its own generators, as :func:`heldout_nlpd`'s causal blocks do.

    Returns:
        (B, N, D) float64 on the CPU, NaN where not observed.
    """
    S = check_count("num_samples", num_samples)
    if model.likelihood.needs_index:
        raise ValidationError(
            f"likelihood: prior scores need entries independent given z, found "
            f"{type(model.likelihood).__name__}"
        )
    hidden = torch.zeros_like(batch.observed)
    if causal_block is None or block_generators is None:
        return entry_nlpd(model, batch, hidden, generators, S, prior=True)
    C = check_count("causal_block", causal_block)
    N = batch.y.shape[1]
    score = torch.full(batch.y.shape, float("nan"), dtype=torch.float64)
    for k in range(-(-N // C)):
        steps = torch.arange(k * C, min((k + 1) * C, N), device=batch.y.device)
        noise = [(C, torch.arange(len(steps)))] * batch.y.shape[0]
        part = entry_nlpd(
            model, batch, hidden, block_generators(k), S, steps, True, block_noise=noise
        )
        score[:, steps.cpu()] = part[:, steps.cpu()]
    return score


@torch.no_grad()
def latent_nlpd(model: GPVAEModel, batch: Batch, lags: int) -> Tensor:
    """One-step-ahead surprise of the encoded latent path under the GP prior, per step and
    latent channel.

    The encoder's per-step Gaussian ``(m_n, v_n)`` of channel l (the structured posterior's
    pseudo-observations; for other posteriors q's marginals) are read as noisy
    observations ``m_n = z_n + e_n``, ``e_n ~ N(0, v_n)``, of a path z drawn from the
    prior. Step n scores ``-log N(m_n | mu_n, s_n)``, the prior's predictive of ``m_n``
    given the ``lags`` previous steps' observations (dense conditioning under the
    channel's kernel at the steps' index points): the innovation of a Kalman filter run
    over the last ``lags`` steps. It is large where the latent path moves in a way the
    learned dynamics call unlikely (a jump, a changed rhythm) or leaves the prior's range,
    even when the decoder reconstructs the data there well. ``lags = 0``: the prior's
    marginal ``N(0, k_l(x_n, x_n) + v_n)`` (no dynamics; what an N(0, I) prior offers).
    Steps without an observed feature (and padding) give no observation: NaN there, and
    they are skipped in the conditioning.

    Returns:
        (B, N, L) float64 on the CPU.
    """
    if isinstance(lags, bool) or not isinstance(lags, int) or lags < 0:
        raise invalid("lags", "an int >= 0", repr(lags))
    q = model.encode(batch)
    B, N, _ = batch.y.shape
    has_obs = (batch.observed.any(-1) & batch.valid)[..., None]  # (B, N, 1)
    if isinstance(q, StructuredQ):
        m, v, inc = q.gp.mean, q.gp.var, q.gp.included & has_obs
    else:
        m, v = q.marginals()
        inc = has_obs.expand_as(m)
    m = torch.where(inc, m, torch.zeros_like(m)).double()  # (B, N, L)
    v = torch.where(inc, v, torch.ones_like(v)).double()
    L, P = m.shape[-1], lags
    x = batch.x.double()  # (B, N, d)
    out = torch.full((B, N, L), float("nan"), dtype=torch.float64)
    # P excluded steps in front (index points one apart before the first step), so that
    # every step has a window of P + 1 points: the P before it and its own
    before = x[:, :1] - torch.arange(P, 0, -1, dtype=x.dtype)[None, :, None]  # (B, P, d)
    xp = torch.cat([before, x], 1)  # (B, P + N, d)
    mp = torch.cat([m.new_zeros(B, P, L), m], 1)  # (B, P + N, L)
    vp = torch.cat([v.new_ones(B, P, L), v], 1)
    ip = torch.cat([inc.new_zeros(B, P, L), inc], 1)
    chunk = max(1, 2**16 // (P + 1) ** 2)
    for start in range(0, N, chunk):
        n = torch.arange(start, min(start + chunk, N))
        idx = n[:, None] + torch.arange(P + 1)[None, :]  # (C, P + 1) into the padded steps
        xw = xp[:, idx].reshape(B * len(n), P + 1, -1)  # (B C, P + 1, d)
        cov = model.prior.covariance(xw).reshape(B, len(n), L, P + 1, P + 1)
        mw = mp[:, idx].permute(0, 1, 3, 2)  # (B, C, L, P + 1)
        vw = vp[:, idx].permute(0, 1, 3, 2)
        iw = ip[:, idx].permute(0, 1, 3, 2)
        kss = cov[..., P, P]
        s, mu = kss + vw[..., P], torch.zeros_like(kss)
        if P:
            use = iw[..., :P]  # (B, C, L, P)
            both = use[..., :, None] & use[..., None, :]
            eye = torch.eye(P, dtype=cov.dtype)
            A = torch.where(both, cov[..., :P, :P], 0.0) + torch.diag_embed(
                torch.where(use, vw[..., :P], 1.0)
            )
            A = A + 1e-9 * kss[..., None, None] * eye
            c = torch.where(use, cov[..., :P, P], 0.0)[..., None]  # (B, C, L, P, 1)
            chol = torch.linalg.cholesky(A)
            w = torch.cholesky_solve(c, chol)[..., 0]  # (B, C, L, P)
            mu = (w * torch.where(use, mw[..., :P], 0.0)).sum(-1)
            s = s - (w * c[..., 0]).sum(-1)
        nlpd = 0.5 * (math.log(2 * math.pi) + torch.log(s) + (mw[..., P] - mu) ** 2 / s)
        out[:, n] = torch.where(iw[..., P], nlpd, float("nan")).cpu()
    return out


def entry_nlpd(
    model: GPVAEModel,
    batch: Batch,
    visible: Tensor,
    generators: Sequence[torch.Generator],
    S: int,
    steps: Tensor | None = None,
    prior: bool = False,
    block_noise: Sequence[tuple[int, Tensor]] | None = None,
) -> Tensor:
    """``-log (1/S) sum_s p(y | z_s, visible)``, ``z_s ~ q(z | visible entries)``, for
    every entry: (B, N, D) float64 on the CPU, NaN where not observed.

    ``block_noise`` (per series: C_b, positions): series b's noise is drawn for C_b steps
    from ``generators[b]`` and its first ones go to ``positions`` of the decoded steps
    (zeros elsewhere), so a step's draws depend neither on how many steps follow it nor on
    the other series of the batch (causal blocks).

    When the likelihood's entries are independent given z, the density of entry
    (n, d) depends on z at step n only, so the draws come from the marginals of q
    (``z_n = mean_n + sd_n * eps``, series b's ``eps`` from ``generators[b]``): the same
    Monte Carlo estimate of each entry as joint draws, without sampling whole paths;
    and only the ``steps`` (positions (N_k,); None: all) are decoded and scored (NaN
    elsewhere).
    """
    B, N, D = batch.y.shape
    lik = model.likelihood
    sub, vis = batch, visible
    draw: Callable[[int], Tensor]
    if prior:  # the prior's marginals (mean 0), nothing conditioned on
        var = model.prior.marginal_variance(batch.x).to(batch.y.dtype)  # (B, N, L)
        mean = torch.zeros_like(var)
    else:
        q = model.encode(Batch(batch.x, batch.y, visible, batch.valid))
    if lik.needs_index and not prior:
        draw = q.series_sampler(generators).draw
    else:
        if not prior:
            mean, var = q.marginals()  # (B, N, L) each
        if steps is not None:
            mean, var, vis = mean[:, steps], var[:, steps], visible[:, steps]
            sub = Batch(batch.x[:, steps], batch.y[:, steps], batch.observed[:, steps],
                        batch.valid[:, steps])  # fmt: skip
        sd = var.clamp_min(0.0).sqrt()
        # series b's noise covers its own steps only (valid is a prefix), never the
        # padding: its scores do not depend on the other series of the call
        lengths = [int(n) for n in sub.valid.sum(dim=1).tolist()]

        def marginal_draw(s: int) -> Tensor:
            if block_noise is not None:
                eps = mean.new_zeros((s, *mean.shape))
                for b, (gen, (width, where)) in enumerate(zip(generators, block_noise)):
                    e = torch.randn(
                        (s, width, mean.shape[2]), generator=gen, dtype=mean.dtype,
                        device=mean.device,
                    )  # fmt: skip
                    eps[:, b, where.to(mean.device)] = e[:, : len(where)]
                return mean + sd * eps
            eps = per_series_normal(
                generators, lengths, s, mean.shape[1], (mean.shape[2],), mean
            )  # (s, B, N_k, L)
            return mean + sd * eps

        draw = marginal_draw

    parts = []
    for s in sample_chunks(S):
        params = model.decode(draw(s), Batch(sub.x, sub.y, vis, sub.valid))  # (s, B, N_k, L)
        lp = lik.log_predictive_entries(params, sub.y, vis, sub.x, sub.valid)  # (s, B, N_k, D)
        parts.append(torch.logsumexp(lp.double(), dim=0))  # (B, N_k, D)
    lpd = torch.logsumexp(torch.stack(parts), dim=0) - math.log(S)
    score = torch.where(sub.observed.cpu(), -lpd.cpu(), float("nan"))
    if steps is None or sub is batch:
        return score
    full = torch.full((B, N, D), float("nan"), dtype=torch.float64)
    full[:, steps.cpu()] = score
    return full
