"""Held-out scores with the folds in runs of consecutive steps (``heldout_nlpd(block=B)``,
``entry_scores(block=B)``): a scored step's neighbours in its run are hidden with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.test_anomaly import fit_seasonal, seasonal

from gpvae import GPVAE
from gpvae.errors import ValidationError


@pytest.fixture(scope="module")
def fitted() -> GPVAE:
    return fit_seasonal(epochs=30)


def _scores(model: GPVAE, y: np.ndarray, block: int, folds: int = 5) -> np.ndarray:
    from gpvae.model.scoring import heldout_nlpd

    ctx = model._context("anomaly_scores")
    _, scaled = ctx.input(y[None], np.arange(len(y), dtype=np.float64)[None])
    batch = ctx.batch(scaled, np.arange(1))
    gen = [torch.Generator().manual_seed(3)]
    return heldout_nlpd(ctx.model, batch, gen, folds, 8, block=block)[0].numpy()


def test_block_one_is_the_interleaved_folds(fitted: GPVAE) -> None:
    from gpvae.model.scoring import heldout_nlpd

    y = seasonal(40, 3)
    ctx = fitted._context("anomaly_scores")
    _, scaled = ctx.input(y[None], np.arange(40.0)[None])
    batch = ctx.batch(scaled, np.arange(1))
    default = heldout_nlpd(ctx.model, batch, [torch.Generator().manual_seed(3)], 5, 8)
    np.testing.assert_array_equal(_scores(fitted, y, 1), default[0].numpy())


def test_a_steps_run_is_hidden_with_it(fitted: GPVAE) -> None:
    """Runs of 4 steps, 5 folds: steps 8-11 form one run (fold 2). Changing step 9 leaves
    the scores of steps 8, 10 and 11 exactly as they were (same draws: step 9 is hidden
    whenever they are scored), and moves the scores of the steps in other folds near it.
    With single-step folds, step 8's score sees step 9 and moves."""
    y = seasonal(40, 3)
    z = y.copy()
    z[9] += 4.0
    a, b = _scores(fitted, y, 4), _scores(fitted, z, 4)
    np.testing.assert_array_equal(a[[8, 10, 11]], b[[8, 10, 11]])
    assert np.abs(a[[6, 7, 12, 13]] - b[[6, 7, 12, 13]]).max() > 1e-3
    c, d = _scores(fitted, y, 1), _scores(fitted, z, 1)
    assert np.abs(c[8] - d[8]).max() > 1e-3
    assert np.isfinite(a).all()


def test_blocks_with_causal_folds_or_a_bad_block_raise(fitted: GPVAE) -> None:
    from gpvae.model.scoring import heldout_nlpd

    y = seasonal(40, 3)
    ctx = fitted._context("anomaly_scores")
    _, scaled = ctx.input(y[None], np.arange(40.0)[None])
    batch = ctx.batch(scaled, np.arange(1))
    gen = [torch.Generator().manual_seed(3)]
    with pytest.raises(ValidationError, match="block"):
        heldout_nlpd(ctx.model, batch, gen, 4, 8, causal=True, block=4)
    with pytest.raises(ValidationError, match="block"):
        heldout_nlpd(ctx.model, batch, gen, 4, 8, block=0)


def test_windowed_entry_scores_with_blocks(fitted: GPVAE) -> None:
    """Through the scoring windows: block 1 gives ``anomaly_scores``' entries exactly; runs
    of 8 steps other scores, finite everywhere, and a sustained shift's interior (whose
    neighbours are shifted too) scores higher than with single-step folds."""
    from gpvae.estimator.anomaly import entry_scores

    y = seasonal(300, 5)
    y[150:230, 0] += 1.5
    t = np.arange(300.0)
    ctx = fitted._context("anomaly_scores")
    _, scaled = ctx.input(y[None], t[None])
    one = entry_scores(ctx, scaled, 64, 5, 64)[0]
    ref = fitted.anomaly_scores(y[None], t[None], 64, 5, 64, 0.0).entry[0]
    np.testing.assert_array_equal(one, ref)
    eight = entry_scores(ctx, scaled, 64, 5, 64, block=8)[0]
    assert np.isfinite(eight).all()
    assert not np.allclose(one, eight)
    inner = slice(160, 220)
    assert np.nanmean(eight[inner, 0]) > np.nanmean(one[inner, 0])
