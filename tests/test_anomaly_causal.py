"""Causal (forecast) anomaly scores and the baseline's trailing spread: no score depends on
a later step, the spread keeps the false-alarm rate when new normal scores vary more or less
than the normal data's, and both round-trip through the stored profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.test_anomaly import fit_seasonal, seasonal

from gpvae import GPVAE, settings
from gpvae.errors import ValidationError
from gpvae.estimator.anomaly import (
    AnomalyProfile,
    _trailing_spread,
    alarm_scores,
    profile_from_entries,
)


@pytest.fixture(scope="module")
def fitted() -> GPVAE:
    return fit_seasonal(epochs=30)


def _batch_scores(model: GPVAE, y: np.ndarray, causal: bool) -> np.ndarray:
    from gpvae.model.scoring import heldout_nlpd

    ctx = model._context("anomaly_scores")
    _, scaled = ctx.input(y[None], np.arange(len(y), dtype=np.float64)[None])
    batch = ctx.batch(scaled, np.arange(1))
    gen = [torch.Generator().manual_seed(3)]
    return heldout_nlpd(ctx.model, batch, gen, 4, 8, causal=causal)[0].numpy()


def test_a_causal_block_does_not_see_its_own_or_later_steps(fitted: GPVAE) -> None:
    """Blocks of 10 steps: a change from step 25 on leaves the scores of the blocks before
    it exactly as they were (same draws), and moves the non-causal scores there."""
    y = seasonal(40, 3)
    z = y.copy()
    z[25:] += 3.0
    a, b = _batch_scores(fitted, y, True), _batch_scores(fitted, z, True)
    np.testing.assert_array_equal(a[:20], b[:20])
    assert not np.allclose(a[25:], b[25:])
    # the block holding step 25 (steps 20-29) is scored from steps 0-19 only
    np.testing.assert_array_equal(a[20:25], b[20:25])
    c, d = _batch_scores(fitted, y, False), _batch_scores(fitted, z, False)
    assert np.abs(c[20:25] - d[20:25]).max() > 0.1


def test_causal_scores_of_a_long_series_depend_on_the_past_only(fitted: GPVAE) -> None:
    """In windows no causal score depends on a later step: neither on its value (a large
    change from step 150 on leaves every earlier entry score and flag exactly as it was)
    nor on whether it exists yet (scoring the first 150 steps of a stream gives the same
    scores). Before, the draws were seeded by a whole window's content and the blocks cut
    by its length, so earlier scores moved and flags flipped."""
    y = seasonal(240, 4)
    z = y.copy()
    z[150:] += 4.0
    fitted.fit_threshold([seasonal(400, 13)], false_alarm_rate=0.05, num_samples=16,
                         window=40, causal=True)  # fmt: skip
    try:
        for pw in (0.0, 0.5):  # the held-out part alone, and with the prior's
            kw = {"num_samples": 16, "window": 40, "prior_weight": pw}
            a = fitted.anomaly_scores(y[None], **kw)
            b = fitted.anomaly_scores(z[None], **kw)
            early = fitted.anomaly_scores(y[None, :150], **kw)
            assert np.isfinite(a.entry[0]).all()
            np.testing.assert_array_equal(a.entry[0, :150], b.entry[0, :150])
            np.testing.assert_array_equal(a.flagged[0, :150], b.flagged[0, :150])
            # the same up to round-off (other windows share its batch)
            np.testing.assert_allclose(early.entry[0], a.entry[0, :150], rtol=1e-12, atol=0)
            np.testing.assert_array_equal(early.flagged[0], a.flagged[0, :150])
            # the change itself is surprising to the forecast
            assert np.nanmean(b.entry[0, 150:160]) > np.nanmean(a.entry[0, 150:160]) + 2.0
        kw = {"num_samples": 16, "window": 40, "prior_weight": 0.0, "causal": False}
        c = fitted.anomaly_scores(y[None], **kw).entry[0]
        d = fitted.anomaly_scores(z[None], **kw).entry[0]
        assert np.abs(c[140:150] - d[140:150]).max() > 0.5  # the interleaved folds look ahead
    finally:
        fitted.anomaly_profile_ = None


def test_whole_series_causal_blocks_follow_each_series_own_length(fitted: GPVAE) -> None:
    """Without a window the blocks were cut by the batch's longest series, so a series'
    scores depended on the other series of the call."""
    short, long = seasonal(60, 5), seasonal(200, 6)
    kw = {"num_samples": 8, "window": None, "causal": True, "prior_weight": 0.0}
    alone = fitted.anomaly_scores(short[None], **kw).entry[0]
    together = fitted.anomaly_scores([short, long], **kw).entry[0]
    np.testing.assert_allclose(alone, together, rtol=1e-12, atol=0)


def test_causal_scores_rank_a_level_shift(fitted: GPVAE) -> None:
    """A sustained shift: the forecast from the normal past flags its start strongly."""
    y = seasonal(300, 5)
    y[200:260, 0] += 2.0
    step = fitted.anomaly_scores(y[None], causal=True, num_samples=16, prior_weight=0.0).step[0]
    assert step[200:216].mean() > np.quantile(step[:200], 0.99)


def test_the_profile_stores_causal_and_spread(fitted: GPVAE, tmp_path: Path) -> None:
    fitted.fit_threshold([seasonal(300, 6)], false_alarm_rate=0.02, num_samples=4,
                         causal=True, spread=True, baseline=64)  # fmt: skip
    try:
        prof = fitted.anomaly_profile_
        assert prof is not None
        assert prof.causal
        assert prof.spread
        assert prof.num_folds == settings.ANOMALY_CAUSAL_BLOCKS
        fitted.save(tmp_path / "m")
        loaded = GPVAE.load(tmp_path / "m")
        assert loaded.anomaly_profile_ is not None
        assert loaded.anomaly_profile_.to_json() == prof.to_json()
        y = seasonal(150, 7)
        ra, rb = fitted.anomaly_scores(y[None]), loaded.anomaly_scores(y[None])
        np.testing.assert_array_equal(ra.step, rb.step)
        # the stored profile's causal setting is the default of a call
        forced = fitted.anomaly_scores(y[None], causal=True)
        np.testing.assert_array_equal(forced.entry, ra.entry)
    finally:
        fitted.anomaly_profile_ = None


def test_profile_saved_before_causal_and_spread_keeps_its_meaning() -> None:
    data = AnomalyProfile(64, 5, 4, 3, np.zeros(2), np.ones(2), 1.0, 0.01, 10).to_json()
    for key in ("causal", "spread", "level_spread"):
        del data[key]
    prof = AnomalyProfile.from_json(data, 2)
    assert not prof.causal
    assert not prof.spread


@pytest.mark.parametrize("quantile", [0.9, 0.95, 0.99])
def test_trailing_spread_matches_a_loop(quantile: float) -> None:
    """The trailing spread (``quantile`` less median, ``spread_quantile``) against a loop."""
    rng = np.random.default_rng(5)
    s = rng.exponential(size=80)
    s[[3, 40, 41]] = np.nan
    w, level_spread = 16, 0.7
    ref = np.empty(80)
    for t in range(80):
        prev = s[max(0, t - w) : t]
        prev = prev[np.isfinite(prev)]
        sp = np.quantile(prev, quantile) - np.median(prev) if len(prev) >= w // 4 else level_spread
        ref[t] = max(sp, settings.ANOMALY_MIN_SPREAD * level_spread)
    np.testing.assert_allclose(_trailing_spread(s, w, level_spread, quantile), ref)
    if quantile == 0.9:  # the default of the function (profiles saved before the option)
        np.testing.assert_allclose(_trailing_spread(s, w, level_spread), ref)


def test_spread_keeps_the_false_alarm_rate_when_normal_scores_vary_more_or_less() -> None:
    """New normal scores twice (or half) as variable as the normal data's: the threshold
    flags far too many (too few) steps unless the trailing spread rescales them; a burst
    is still flagged."""
    rng = np.random.default_rng(9)
    normal = rng.exponential(size=(3000, 2))
    for factor in (2.0, 0.5):
        new = factor * rng.exponential(size=(8000, 2))
        new[5000:5010] += 15.0 * factor
        labels = np.zeros(8000, dtype=bool)
        labels[5000:5010] = True
        rates = {}
        for spread in (False, True):
            prof = profile_from_entries([normal], 0.02, 4, 5, 128, 1, False, 512, 1, spread)
            flags = alarm_scores(new, prof) > prof.threshold
            rates[spread] = float(flags[~labels].mean())
            if spread:
                assert flags[labels].mean() > 0.8
        assert 0.01 <= rates[True] <= 0.04, (factor, rates)
        assert not 0.01 <= rates[False] <= 0.04, (factor, rates)


def test_bad_causal_and_spread_name_themselves(fitted: GPVAE) -> None:
    y = seasonal(50, 8)
    with pytest.raises(ValidationError, match="causal"):
        fitted.anomaly_scores([y], causal="yes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="spread"):
        fitted.fit_threshold([y], spread="yes")  # type: ignore[arg-type]
