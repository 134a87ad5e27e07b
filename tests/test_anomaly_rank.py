"""The trailing-rank alarm (``rank_window``): each step's summed score ranked among those of
the previous steps, as a continuous share (against a loop over the definition); the
threshold from it flags the target share of the normal data itself; it keeps the rate where
the spread alarm does not (new data whose normal scores change shape); it is stored with the
profile (profiles saved before it keep the spread alarm) and set by ``fit_threshold``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tests.test_anomaly import fit_seasonal, seasonal

from gpvae import settings
from gpvae.errors import InputTypeError, ModelFileError, ValidationError
from gpvae.estimator import anomaly
from gpvae.estimator.anomaly import (
    AnomalyProfile,
    _summed,
    alarm_scores,
    profile_from_entries,
    step_scores,
    trailing_ranks,
)


def _rank_by_hand(s: float, before: np.ndarray, scale: float) -> float:
    """The definition, one step: mid-rank at a value of the window, linear between two,
    0 below them all, ``1 - 1 / (1 + excess / scale)`` of the top's half-share above them."""
    v = np.sort(before[np.isfinite(before)])
    n = len(v)
    below, equal = int((v < s).sum()), int((v == s).sum())
    if equal:
        return (below + equal / 2) / n
    if below == 0:
        return 0.0
    lo = v[below - 1]
    lo_ties = int((v == lo).sum())
    if below == n:
        return (n - lo_ties / 2 / (1 + (s - lo) / scale)) / n
    hi = v[below]
    hi_ties = int((v == hi).sum())
    return (below - lo_ties / 2 + (s - lo) / (hi - lo) * (lo_ties + hi_ties) / 2) / n


def _ranks_by_hand(raw: np.ndarray, width: int, ref: np.ndarray, scale: float) -> np.ndarray:
    padded = np.concatenate([ref, raw])
    out = np.full(len(raw), np.nan)
    for t, s in enumerate(raw):
        if np.isnan(s):
            continue
        before = padded[t : t + width]
        if np.isfinite(before).sum() < max(2, width // 4):
            before = ref
        out[t] = _rank_by_hand(s, before, scale)
    return out


def test_ranks_follow_the_definition_with_ties_gaps_and_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Against a loop, on scores with ties (rounded), NaN steps, a stretch with too few
    finite scores before it (ranked among the reference) and values beyond the window at
    both ends; chunk boundaries (made small here) change nothing."""
    monkeypatch.setattr(anomaly, "RANK_CHUNK", 37 * 64)  # 37 steps of the window of 64
    rng = np.random.default_rng(4)
    raw = np.round(rng.standard_normal(700), 1)
    raw[rng.random(700) < 0.1] = np.nan
    raw[300:380] = np.nan  # after it fewer than 64 / 4 finite scores
    raw[[100, 450]] = [9.0, -9.0]
    ref = np.sort(np.round(rng.standard_normal(64), 1))
    got = trailing_ranks(raw, 64, ref, 0.7)
    np.testing.assert_allclose(got, _ranks_by_hand(raw, 64, ref, 0.7), rtol=0, atol=1e-12)
    assert np.isnan(got[np.isnan(raw)]).all()
    assert np.nanmin(got) >= 0.0
    assert np.nanmax(got) < 1.0
    assert got[450] == 0.0
    assert got[100] > 1 - 0.5 / 64


def test_infinite_scores_and_scores_near_the_float_limits() -> None:
    """Infinite scores before a step count as missing ones (the window's ranks stay in
    [0, 1) among its finite scores); a step's own +inf ranks 1, -inf 0; scores near the
    float limits do not overflow the interpolation."""
    ref = np.array([0.0, 1.0, 2.0, 3.0])
    raw = np.array([0.5, np.inf, 2.0, np.inf, 2.5, -np.inf])
    got = trailing_ranks(raw, 4, ref, 1.0)
    clean = np.where(np.isfinite(raw), raw, np.nan)
    want = _ranks_by_hand(clean, 4, ref, 1.0)
    finite = np.isfinite(raw)
    np.testing.assert_allclose(got[finite], want[finite], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got[~finite], [1.0, 1.0, 0.0])
    huge = np.array([-1e308, 1e308, 0.0])
    assert 0.0 < trailing_ranks(huge, 2, np.array([-1e308, 1e308]), 1.0)[2] < 1.0


def test_large_excesses_stay_below_1_so_the_threshold_can_be_exceeded() -> None:
    """Normal data with isolated spikes far above their windows, more of them than the
    rate: their ranks stay apart and below 1 (an exponential tail rounded them to 1, the
    threshold became 1, and nothing could be flagged, not even a far larger anomaly)."""
    rng = np.random.default_rng(3)
    normal = rng.normal(size=(6000, 1)) ** 2
    normal[::300] += 1e3 * (1.0 + rng.random((20, 1)))
    prof = profile_from_entries([normal], 0.001, 4, 5, 128, 1, False, 512, 1, True,
                                feature_scale="spread", rank_window=256)  # fmt: skip
    assert prof.threshold < 1.0
    new = rng.normal(size=(3000, 1)) ** 2
    new[1500] += 1e6
    assert (alarm_scores(new, prof) > prof.threshold)[1500]


def test_ranks_are_continuous_in_the_score() -> None:
    """A score swept across the window's values changes its rank without a jump (at a
    value, between two, across the largest), and the rank never decreases."""
    before = np.array([0.0, 1.0, 1.0, 2.0, 5.0])
    ref = np.sort(before)
    grid = np.linspace(-1.0, 8.0, 9001)
    ranks = np.array([trailing_ranks(np.array([s]), 5, ref, 1.0)[0] for s in grid])
    assert (np.diff(ranks) >= 0).all()
    assert np.abs(np.diff(ranks[grid > 0.0])).max() < 1e-3  # 0 itself: the jump from 0
    assert ranks[grid == 1.0][0] == pytest.approx(0.4)  # two of five tied: 1 + 2 / 2
    assert ranks[-1] < 1.0


def test_the_threshold_flags_the_target_share_of_the_normal_data() -> None:
    """The ``1 - rate`` quantile of continuous ranks flags ``rate`` of the normal steps the
    threshold was learned from, for a window of 256 steps: whole ranks (k / 256) put that
    quantile on an atom, and ``> threshold`` flagged 0.4-0.8% there for 1%."""
    rng = np.random.default_rng(0)
    for seed in range(3):
        normal = rng.exponential(size=(6000, 3))
        prof = profile_from_entries([normal], 0.01, 4, 5, 128, 1, True, 512, 1, True,
                                    feature_scale="tail", combine="max", novelty="cap",
                                    rank_window=256)  # fmt: skip
        share = float((alarm_scores(normal, prof) > prof.threshold).mean())
        assert 0.009 <= share <= 0.011, (seed, share)


def test_the_rank_keeps_the_rate_where_the_spread_alarm_does_not() -> None:
    """New normal data whose scores have a heavier upper tail than the training data's at
    the same median and spread: the spread alarm flags several times the target, the rank
    alarm about the target; a burst in it is flagged at its start by both."""
    rng = np.random.default_rng(1)
    normal = rng.normal(size=(4000, 1)) ** 2
    new = rng.standard_t(2, size=(6000, 1)) ** 2
    new[3000:3010] += 1e4
    rates = {}
    for rank in (0, 256):
        prof = profile_from_entries([normal], 0.01, 4, 5, 128, 1, False, 512, 1, True,
                                    rank_window=rank)  # fmt: skip
        flags = alarm_scores(new, prof) > prof.threshold
        rates[rank] = float(np.delete(flags, np.s_[3000:3010]).mean())
        assert flags[3000]
    assert rates[0] > 0.03
    assert 0.005 <= rates[256] <= 0.02


def test_the_rank_changes_the_alarm_only() -> None:
    """The step score (what ranks the steps) is the same with and without the rank, and
    the reference is the normal data's summed alarm scores at evenly spaced quantiles."""
    rng = np.random.default_rng(5)
    normal, new = rng.exponential(size=(900, 3)), rng.exponential(size=(700, 3))
    a = profile_from_entries([normal], 0.02, 4, 5, 128, 4, True, 128, 1, True, rank_window=0)
    b = profile_from_entries([normal], 0.02, 4, 5, 128, 4, True, 128, 1, True, rank_window=100)
    np.testing.assert_array_equal(step_scores(new, a), step_scores(new, b))
    assert a.rank_window == 0
    assert a.rank_reference is None
    summed = _summed(normal, b, alarm=True)
    np.testing.assert_allclose(b.rank_reference, np.quantile(summed, (np.arange(100) + 0.5) / 100))
    np.testing.assert_allclose(
        alarm_scores(new, b),
        trailing_ranks(_summed(new, b, alarm=True), 100, b.rank_reference, b.level_spread),
    )


def test_the_rank_round_trips_and_older_profiles_keep_the_spread_alarm() -> None:
    normal = np.random.default_rng(2).exponential(size=(500, 3))
    prof = profile_from_entries([normal], 0.02, 4, 5, 128, 1, True, 128, 1, True,
                                rank_window=64)  # fmt: skip
    data = prof.to_json()
    back = AnomalyProfile.from_json(data, 3)
    assert back.rank_window == 64
    np.testing.assert_array_equal(back.rank_reference, prof.rank_reference)
    np.testing.assert_array_equal(alarm_scores(normal, back), alarm_scores(normal, prof))
    for broken in (
        {"rank_window": 32},  # the reference has 64 scores
        {"rank_reference": None},
        {"rank_reference": prof.rank_reference[::-1].tolist()},
        {"rank_window": 0},
    ):
        with pytest.raises(ModelFileError):
            AnomalyProfile.from_json({**data, **broken}, 3)
    older = {k: v for k, v in data.items() if k not in ("rank_window", "rank_reference")}
    old = AnomalyProfile.from_json(older, 3)
    assert old.rank_window == 0
    assert old.rank_reference is None
    top = settings.ANOMALY_RANK_WINDOW_MAX
    for bad, error in (
        (1, ValidationError),
        (-2, ValidationError),
        (top + 1, ValidationError),
        (2.5, InputTypeError),
    ):
        with pytest.raises(error, match="rank_window"):
            profile_from_entries([normal], 0.02, 4, 5, 128, 1, rank_window=bad)
    with pytest.raises(ValidationError, match="reference: expected 64 finite scores"):
        trailing_ranks(normal[:, 0], 64, prof.rank_reference[:32], 1.0)


@pytest.fixture(scope="module")
def fitted_rank() -> Any:
    est = fit_seasonal()
    est.fit_threshold([seasonal(400, 21)], num_samples=4, rank_window=64)
    return est


def test_fit_threshold_takes_the_window_from_settings_unless_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    est = fit_seasonal()
    assert settings.ANOMALY_RANK_WINDOW == 256  # the session-44 default
    est.fit_threshold([seasonal(400, 21)], num_samples=4)
    assert est.anomaly_profile_ is not None
    assert est.anomaly_profile_.rank_window == 256
    monkeypatch.setattr(settings, "ANOMALY_RANK_WINDOW", 0)
    est.fit_threshold([seasonal(400, 21)], num_samples=4)
    assert est.anomaly_profile_.rank_window == 0
    est.fit_threshold([seasonal(400, 21)], num_samples=4, rank_window=50)
    assert est.anomaly_profile_.rank_window == 50
    res = est.anomaly_scores([seasonal(300, 22)])
    assert res.alarm is not None
    assert res.flagged is not None
    alarm = np.asarray(res.alarm[0])
    assert np.nanmax(alarm) < 1.0
    assert np.nanmin(alarm) >= 0.0
    np.testing.assert_array_equal(np.asarray(res.flagged[0]), alarm > res.threshold)
    with pytest.raises(ValidationError, match="rank_window"):
        est.fit_threshold([seasonal(400, 21)], num_samples=4, rank_window=1)


def test_a_refused_rank_window_says_every_window_allowed(fitted_rank: Any) -> None:
    """fit_threshold(rank_window=-5) said "expected an integer >= 0", yet 1 is refused too:
    every refused window says what the command line does (0, or 2 to the maximum)."""
    top = settings.ANOMALY_RANK_WINDOW_MAX
    said = f"rank_window: expected 0 (no rank) or an integer of 2 to {top} steps to rank among"
    for bad, error in ((-5, ValidationError), (1, ValidationError), (top + 1, ValidationError),
                       (2.5, InputTypeError), (True, InputTypeError)):  # fmt: skip
        with pytest.raises(error) as caught:
            fitted_rank.fit_threshold([seasonal(50, 21)], num_samples=4, rank_window=bad)
        assert said in str(caught.value)
        assert f"found {bad!r}" in str(caught.value)
    assert fitted_rank.anomaly_profile_.rank_window == 64  # the stored profile is kept


def test_intervals_give_their_highest_step_score(fitted_rank: Any) -> None:
    """With the rank alarm every interval peaks near 1, so each also gives ``max_score``:
    the highest step score inside it (which ranks anomalies); the peak stays the alarm's."""
    new = seasonal(300, 23)
    new[100:104] += 4.0
    new[200] -= 6.0
    res = fitted_rank.anomaly_scores([new])
    assert res.intervals is not None
    assert res.alarm is not None
    step, alarm = np.asarray(res.step[0]), np.asarray(res.alarm[0])
    assert len(res.intervals[0]) >= 2
    for iv in res.intervals[0]:
        inside = slice(iv["start"], iv["end"] + 1)
        assert iv["max_score"] == pytest.approx(float(np.nanmax(step[inside])), rel=1e-12)
        assert iv["peak_score"] == pytest.approx(float(np.nanmax(alarm[inside])), rel=1e-12)
    best = max(res.intervals[0], key=lambda iv: iv["max_score"])
    assert any(best["start"] <= k <= best["end"] for k in (100, 101, 102, 103, 200))
