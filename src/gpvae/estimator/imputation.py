"""Imputation of the estimator: predictive draws per series, intervals, observed values kept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gpvae import settings
from gpvae.arguments import bool_arg, interval_draws_arg, warn_few_draws
from gpvae.data import from_padded
from gpvae.estimator.blending import blend_mean
from gpvae.estimator.context import PredictContext
from gpvae.estimator.results import ImputationResult, mask_form, samples_form
from gpvae.model import sorted_quantiles

__all__ = ["impute_series"]


def impute_series(
    ctx: PredictContext,
    X: Any,
    times: Any,
    num_samples: int,
    quantiles: Sequence[float],
    return_samples: bool,
) -> ImputationResult:
    """:meth:`GPVAE.impute` (see there); observed entries are returned bit for bit."""
    model, scaler = ctx.model, ctx.scaler
    S, q_lo, q_hi = interval_draws_arg(num_samples, quantiles)
    return_samples = bool_arg("return_samples", return_samples)
    ss, scaled = ctx.input(X, times)
    T_max = max(len(t) for t in ss.times)
    returned = sum(len(t) for t in ss.times) if return_samples else 0
    names = "num_samples, return_samples" if return_samples else "num_samples"
    ctx.check_draws(names, S, ss.num_series, T_max, returned=returned)
    warn_few_draws(S, q_lo, q_hi)  # the inputs are checked: no warning before an error
    means: list[np.ndarray] = [np.empty(0)] * ss.num_series
    lowers, uppers = list(means), list(means)
    draws: list[np.ndarray] = list(means)
    spread = ctx.interval_scale
    model.eval()
    # a failed allocation names num_samples, with the remedies of check_draws
    # the bar ticks after every chunk of draws: one long series shows its progress too
    progress = ctx.draw_progress(ss.num_series, S, "impute")
    with ctx.allocating(names, S, ss.num_series, T_max, returned=returned), progress as tick:
        # ragged series batched by length: one dense factorisation per batch, not per series
        for idx in ctx.batches(ss.num_series, lengths=[len(t) for t in ss.times]):
            batch = ctx.batch(scaled, idx)
            gens = ctx.series_generators(ss, idx, 1)
            mean, y = model.predictive_draws(batch, gens, S, on_chunk=tick)
            # the draws are moved in place (the same values as blend_draws' and a new tensor's):
            # every copy of them costs 4 bytes per draw and entry
            if ctx.blend_weight is not None:  # the draws with their mean (blend_draws)
                blended = blend_mean(ctx.blend_weight, batch, mean)
                y += blended - mean
                mean = blended
            if (spread != 1).any():  # spread recalibrated about the mean: mean + f (y - mean)
                factor = torch.as_tensor(spread, dtype=y.dtype, device=y.device)
                y.sub_(mean).mul_(factor).add_(mean)
            # quantiles only where they are reported: the missing entries of the series' steps
            need = batch.valid[..., None] & ~batch.observed  # (B, N, D)
            # observed entries and padding: replaced below (contiguous: written through views)
            lo, hi = (mean.clone(memory_format=torch.contiguous_format) for _ in range(2))
            _missing_quantiles(y, need, q_lo, q_hi, lo, hi)
            parts = [scaler.inverse_transform(t.double().cpu().numpy()) for t in (mean, lo, hi)]
            for b, i in enumerate(idx):
                orig = ss.values[i]  # (T_i, D) float64 in sorted time order
                obs = ~np.isnan(orig)
                T = orig.shape[0]
                means[i], lowers[i], uppers[i] = (np.where(obs, orig, p[b, :T]) for p in parts)
                if return_samples:  # float64 copies of one series at a time, not of the batch
                    d = scaler.inverse_transform(y[:, b, :T].double().cpu().numpy())
                    np.copyto(d, orig, where=obs)  # observed entries as given
                    draws[i] = d  # (S, T_i, D)
            del y
        observed = [~np.isnan(v) for v in ss.values]
        frame = None
        if ss.layout.output_kind not in ("array", "ragged"):
            frame = from_padded(ss, {"mean": means, "lower": lowers, "upper": uppers})
        result = ImputationResult(
            mean=from_padded(ss, means, name="mean"),
            lower=from_padded(ss, lowers, name="lower"),
            upper=from_padded(ss, uppers, name="upper"),
            samples=samples_form(ss, draws) if return_samples else None,
            observed=mask_form(ss, observed),
            quantiles=(q_lo, q_hi),
            frame=frame,
        )
    return result


def _missing_quantiles(
    y: torch.Tensor,
    need: torch.Tensor,
    q_lo: float,
    q_hi: float,
    lo: torch.Tensor,
    hi: torch.Tensor,
) -> None:
    """Write into ``lo`` and ``hi`` (B, N, D) the interval's quantiles of the draws ``y``
    (S, B, N, D) at the entries where ``need`` (B, N, D) is true.

    The entries go in blocks of about :data:`gpvae.settings.QUANTILE_BLOCK` draw values:
    the quantiles copy, transpose and partially sort the draws they read, three copies that
    for all the entries at once cost up to 12 bytes per draw and entry (float32). Each
    entry's quantiles are those of all entries at once bit for bit (every entry is sorted
    on its own).
    """
    where = need.reshape(-1).nonzero()[:, 0]  # the entries, in row-major order
    if not len(where):
        return
    S = y.shape[0]
    flat, lo_flat, hi_flat = y.reshape(S, -1), lo.view(-1), hi.view(-1)
    step = max(1, settings.QUANTILE_BLOCK // S)
    for start in range(0, len(where), step):
        at = where[start : start + step]
        # predictive positions: the coverage does not depend on S (nor on S at calibration)
        lo_flat[at], hi_flat[at] = sorted_quantiles(flat[:, at], (q_lo, q_hi), "predictive")
