"""Anomaly scores in windows, the threshold profile learned from normal data, flagged
intervals, and the profile's round trip through the model folder."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpvae import GPVAE, settings
from gpvae.errors import ModelFileError, ValidationError
from gpvae.estimator.anomaly import (
    AnomalyProfile,
    _trailing_mean,
    _trailing_median,
    alarm_scores,
    flagged_intervals,
    profile_from_entries,
    runs_of,
    score_settings,
    step_scores,
    time_gaps,
)

FAST = {
    "latent_dim": 2,
    "hidden": (32,),
    "epochs": 40,
    "batch_size": 16,
    "lr": 1e-2,
    "progress": False,
}


def seasonal(T: int, seed: int, period: float = 12.0) -> np.ndarray:
    """(T, 2) two noisy seasonal features."""
    rng = np.random.default_rng(seed)
    t = np.arange(T, dtype=np.float64)
    x = np.stack([np.sin(2 * np.pi * t / period), np.cos(2 * np.pi * t / period)], -1)
    return x + 0.1 * rng.standard_normal((T, 2))


def fit_seasonal(**overrides: object) -> GPVAE:
    """A small model (``FAST`` with ``overrides``) fitted on 48-step windows of 400 steps of
    :func:`seasonal` (the anomaly tests' shared normal data)."""
    train = seasonal(400, 0)
    starts = range(0, 400 - 48 + 1, 8)
    return GPVAE(**{**FAST, **overrides}, seed=1, calibrate=False).fit(
        [train[s : s + 48] for s in starts], [np.arange(s, s + 48.0) for s in starts]
    )


@pytest.fixture(scope="module")
def fitted() -> GPVAE:
    return fit_seasonal()


def _auc(score: np.ndarray, labels: np.ndarray) -> float:
    """AUC-ROC by the rank-sum formula (ties get their mean rank)."""
    from scipy.stats import rankdata

    r = rankdata(score)
    pos = labels.astype(bool)
    n1, n0 = pos.sum(), (~pos).sum()
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def test_windowed_scores_equal_the_window_scored_alone(fitted: GPVAE) -> None:
    """Stitching: a step takes the score of the window where it is farthest from the edges,
    which is exactly that window scored as a series of its own."""
    y = seasonal(100, 5)
    res = fitted.anomaly_scores(y[None], num_samples=4, window=40)
    # windows start at 0, 20, 40, 60; step 50 is deepest in the window starting at 40
    alone = fitted.anomaly_scores(y[None, 40:80], np.arange(40.0, 80.0)[None], num_samples=4,
                                  window=None)  # fmt: skip
    np.testing.assert_allclose(res.entry[0, 50], alone.entry[0, 10], rtol=1e-6)
    assert res.window == 40
    assert np.isfinite(res.step).all()


def test_window_longer_than_the_series_is_the_whole_series(fitted: GPVAE) -> None:
    y = seasonal(30, 6)
    a = fitted.anomaly_scores(y[None], num_samples=4, window=64).entry
    b = fitted.anomaly_scores(y[None], num_samples=4, window=None).entry
    np.testing.assert_array_equal(a, b)


def test_scores_rank_changed_dynamics_above_a_rolling_z_score(fitted: GPVAE) -> None:
    """A stretch at twice the normal frequency (same range of values) is invisible to a
    rolling z-score but not to the model of the normal pattern."""
    y = seasonal(300, 7)
    labels = np.zeros(300, dtype=bool)
    labels[150:200] = True
    y[150:200] = seasonal(50, 8, period=5.0)
    step = fitted.anomaly_scores(y[None], num_samples=8).step[0]
    ours = _auc(step, labels)
    w = 12
    z = np.zeros(300)
    for t in range(w, 300):
        past = y[t - w : t]
        z[t] = np.max(np.abs(y[t] - past.mean(0)) / past.std(0))
    base = _auc(z, labels)
    assert ours > 0.85, ours
    assert ours > base + 0.2, (ours, base)


def test_threshold_from_normal_data_keeps_its_false_alarm_rate(fitted: GPVAE) -> None:
    fitted.fit_threshold([seasonal(600, 11)], false_alarm_rate=0.05, num_samples=8)
    try:
        prof = fitted.anomaly_profile_
        assert prof is not None
        assert prof.num_steps == 600
        res = fitted.anomaly_scores([seasonal(1200, 12)])
        rate = float(np.mean(res.flagged[0]))
        assert 0.025 <= rate <= 0.1, rate  # within a factor 2 of the target on new data
        assert res.threshold == prof.threshold
        # the flags are the alarm scores above the threshold (not the step scores: the plot
        # of an example drew the threshold over those, and they disagreed on 1,100 steps)
        assert res.alarm is not None
        np.testing.assert_array_equal(res.flagged[0], res.alarm[0] > res.threshold)
        assert fitted.anomaly_scores([seasonal(50, 12)]).alarm[0].shape == (50,)
    finally:
        fitted.anomaly_profile_ = None


def test_flagged_intervals_cover_an_injected_shift(fitted: GPVAE) -> None:
    fitted.fit_threshold([seasonal(400, 13)], false_alarm_rate=0.01, num_samples=8, smooth=3)
    try:
        y = seasonal(300, 14)
        y[100:130, 0] += 2.5
        res = fitted.anomaly_scores(y[None])
        ivs = res.intervals[0]
        hit = [iv for iv in ivs if iv["start"] <= 129 and iv["end"] >= 100]
        assert hit, ivs
        best = max(hit, key=lambda iv: iv["peak_score"])
        assert 100 <= best["peak"] <= 132
        assert best["features"][0] == "feature_0"
        assert sum(iv["steps"] for iv in ivs) < 90
    finally:
        fitted.anomaly_profile_ = None


def test_scoring_a_series_shorter_than_the_alarms_window_warns(fitted: GPVAE) -> None:
    """New data scored in short pieces flagged more normal steps than the target rate (1.73%
    in chunks of 24 steps against 1.13% whole, one NAB model), without a word: a series
    shorter than the alarm's trailing window (the rank window) now warns."""
    fitted.fit_threshold([seasonal(400, 13)], num_samples=4)
    try:
        width = fitted.anomaly_profile_.rank_window
        assert width == settings.ANOMALY_RANK_WINDOW
        with pytest.warns(UserWarning, match=rf"^X: expected series of at least {width} steps "
                          r"\(the alarm's trailing window\), found 1 of 2 shorter \(the "
                          r"shortest 100 steps\)"):  # fmt: skip
            fitted.anomaly_scores([seasonal(100, 3), seasonal(width, 4)])
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*alarm's trailing window")
            fitted.anomaly_scores([seasonal(width, 4)])
    finally:
        fitted.anomaly_profile_ = None


def test_steps_with_nothing_observed_get_no_smoothed_score_and_no_flag(fitted: GPVAE) -> None:
    """With smooth and alarm_smooth > 1, a step with no observed entry is NaN in the step
    and alarm scores and never flagged (the trailing mean of the steps before it scored it,
    flagged it after an anomaly, and could make it an interval's peak)."""
    rng = np.random.default_rng(4)
    prof = profile_from_entries([rng.exponential(size=(3000, 2))], 0.01, 4, 5, None, 6,
                                alarm_smooth=6, feature_scale="tail")  # fmt: skip
    new = rng.exponential(size=(400, 2))
    new[200:203] += 30.0  # a 3-step anomaly, then the sensor goes silent
    new[203:240] = np.nan
    for scores in (step_scores(new, prof), alarm_scores(new, prof)):
        assert np.isnan(scores[203:240]).all()
        assert np.isfinite(scores[:203]).all()
        assert np.isfinite(scores[240:]).all()
    flags = np.nan_to_num(alarm_scores(new, prof), nan=-np.inf) > prof.threshold
    ivs = flagged_intervals(step_scores(new, prof), new, np.arange(400.0), prof.threshold,
                            ["a", "b"], prof, flags=flags)  # fmt: skip
    assert [iv for iv in ivs if iv["start"] <= 202 and iv["end"] >= 200], ivs
    assert all(iv["end"] < 203 or iv["start"] >= 240 for iv in ivs), ivs
    # the estimator: the same through anomaly_scores (flags, steps)
    fitted.fit_threshold([seasonal(400, 13)], num_samples=4, smooth=6, alarm_smooth=6)
    try:
        y = seasonal(300, 14)
        y[100:103, 0] += 6.0
        y[103:140] = np.nan
        res = fitted.anomaly_scores(y[None])
        assert np.isnan(res.step[0, 103:140]).all()
        assert np.isnan(res.alarm[0, 103:140]).all()
        assert not res.flagged[0, 103:140].any()
        assert all(not 103 <= iv["peak"] < 140 for iv in res.intervals[0])
    finally:
        fitted.anomaly_profile_ = None


def test_a_series_with_nothing_observed_is_said_to_have_nothing_to_score(fitted: GPVAE) -> None:
    # anomaly_scores warned with impute's words ("their values come from the model's
    # prior"), though scoring produces no values: the series simply gets no score
    y = [seasonal(60, 15), np.full((60, 2), np.nan)]
    with pytest.warns(UserWarning, match=r"X: 1 series with no observed entry") as caught:
        res = fitted.anomaly_scores(y, num_samples=4)
    said = " ".join(str(w.message) for w in caught)
    assert "nothing to score: their scores are NaN" in said
    assert "prior" not in said
    assert np.isnan(res.step[1]).all()
    assert np.isnan(res.entry[1]).all()
    assert np.isfinite(res.step[0]).all()
    with pytest.warns(UserWarning, match=r"their values come from the model's prior"):
        fitted.impute(y, num_samples=20)  # impute keeps its own words


def test_fit_threshold_says_a_series_with_nothing_observed_is_left_out(fitted: GPVAE) -> None:
    # fit_threshold warned with impute's words ("their values come from the model's
    # prior"), though it produces no values: such a series has no score, and the threshold
    # is the one learned without it
    y = [seasonal(60, 15), np.full((60, 2), np.nan)]
    try:
        with pytest.warns(UserWarning, match=r"X: 1 series with no observed entry") as caught:
            with_empty = fitted.fit_threshold(y, num_samples=4).anomaly_profile_
        said = " ".join(str(w.message) for w in caught)
        assert "nothing to score and are left out of the threshold" in said
        assert "prior" not in said
        alone = fitted.fit_threshold(y[:1], num_samples=4).anomaly_profile_
        assert with_empty is not None
        assert alone is not None
        assert with_empty.threshold == alone.threshold
    finally:
        fitted.anomaly_profile_ = None


def test_interval_peaks_are_the_highest_alarm(fitted: GPVAE) -> None:
    """The library took an interval's peak from the step score while its flags compare the
    alarm with the threshold (gpvae detect takes the alarm): a peak_score could lie below
    the threshold of the interval it peaks."""
    fitted.fit_threshold([seasonal(400, 13)], num_samples=4, smooth=2, alarm_smooth=8)
    try:
        y = seasonal(300, 14)
        y[100:104, 0] += 5.0
        res = fitted.anomaly_scores(y[None])
        ivs = res.intervals[0]
        assert ivs
        for iv in ivs:
            alarms = res.alarm[0, iv["start"] : iv["end"] + 1]
            assert iv["peak_score"] == pytest.approx(float(np.nanmax(alarms)))
            assert iv["peak_score"] > res.threshold
    finally:
        fitted.anomaly_profile_ = None


def test_intervals_give_times_in_the_inputs_own_form(fitted: GPVAE) -> None:
    """With datetime times (regular: calendar steps; irregular: hours) an interval's start,
    end and peak come back as the user's timestamps (not the model's own time axis); with
    numbers, as the numbers given."""
    fitted.fit_threshold([seasonal(400, 13)], false_alarm_rate=0.01, num_samples=8, smooth=3)
    try:
        y = seasonal(300, 14)
        y[100:130, 0] += 2.5
        stamps = np.datetime64("2024-03-01T00:00") + np.arange(300) * np.timedelta64(1, "h")
        gaps = np.random.default_rng(3).choice([50, 60, 70], size=300)  # minutes: irregular
        uneven = np.datetime64("2024-03-01T00:00") + np.cumsum(gaps) * np.timedelta64(1, "m")
        for times in (stamps, uneven, np.arange(300) + 1000.0):
            ivs = fitted.anomaly_scores(y[None], times[None]).intervals[0]
            assert ivs
            for iv in ivs:
                for key, pos in (("start_time", "start"), ("end_time", "end"),
                                 ("peak_time", "peak")):  # fmt: skip
                    assert iv[key] == times[iv[pos]], (key, iv)
                    # one type for datetimes, naive or zone-aware: pd.Timestamp
                    assert isinstance(iv[key], pd.Timestamp) == (times.dtype.kind == "M")
        # a frame's datetimes, naive or zone-aware: pd.Timestamp both (naive ones came
        # back as np.datetime64); positions count the series' time-sorted steps
        index = pd.date_range("2024-03-01", periods=300, freq="h")
        for tz in (None, "Europe/Berlin"):
            frame = pd.DataFrame(y, columns=["a", "b"], index=index.tz_localize(tz))
            res = fitted.anomaly_scores(frame.iloc[::-1])  # rows in reverse time order
            ivs = res.intervals[0]
            assert ivs
            for iv in ivs:
                for key, pos in (("start_time", "start"), ("peak_time", "peak")):
                    assert type(iv[key]) is pd.Timestamp, (tz, type(iv[key]))
                    assert iv[key] == frame.index[iv[pos]]
                    assert (iv[key].tz is None) == (tz is None)
    finally:
        fitted.anomaly_profile_ = None


def test_frames_get_boolean_flags_and_intervals_by_series_id(fitted: GPVAE) -> None:
    """A DataFrame's flags came back as 0.0 / 1.0 (``df[res.flagged]`` then read them as
    column labels), and a long frame's intervals had no series id to go by."""
    import pandas as pd

    fitted.fit_threshold([seasonal(400, 13)], false_alarm_rate=0.01, num_samples=8, smooth=3)
    try:
        ys = [seasonal(200, 20 + k) for k in range(2)]
        ys[1][100:130, 0] += 2.5
        rows = [
            pd.DataFrame({"id": name, "t": np.arange(200.0), "a": y[:, 0], "b": y[:, 1]})
            for name, y in zip(["calm", "shifted"], ys)
        ]
        long = pd.concat(rows[::-1], ignore_index=True)  # "shifted" appears first
        res = fitted.anomaly_scores(long, num_samples=8)
        assert res.flagged.dtype == bool
        assert len(long[res.flagged]) == int(res.flagged.sum())
        assert res.series_ids == ("shifted", "calm")
        assert res.intervals[0]
        wide = rows[0].drop(columns="id").set_index("t")
        assert fitted.anomaly_scores(wide, num_samples=8).flagged.dtype == bool
        assert fitted.anomaly_scores(np.stack(ys), num_samples=8).flagged.dtype == bool
    finally:
        fitted.anomaly_profile_ = None


def test_profile_round_trips_through_save_and_load(fitted: GPVAE, tmp_path: Path) -> None:
    fitted.fit_threshold([seasonal(200, 15)], false_alarm_rate=0.02, num_samples=4, smooth=2)
    try:
        fitted.save(tmp_path / "m")
        loaded = GPVAE.load(tmp_path / "m")
        a, b = fitted.anomaly_profile_, loaded.anomaly_profile_
        assert a is not None
        assert b is not None
        assert a.to_json() == b.to_json()
        y = seasonal(150, 16)
        ra, rb = fitted.anomaly_scores(y[None]), loaded.anomaly_scores(y[None])
        np.testing.assert_array_equal(ra.step, rb.step)
        np.testing.assert_array_equal(ra.flagged, rb.flagged)
        # a corrupted profile names itself
        cfg_path = tmp_path / "m" / "config.json"
        cfg = json.loads(cfg_path.read_text())
        key = next(k for k in cfg if isinstance(cfg[k], dict) and "anomaly_profile" in cfg[k])
        cfg[key]["anomaly_profile"]["scale"] = [-1.0, 1.0]
        cfg_path.write_text(json.dumps(cfg))
        with pytest.raises(ModelFileError, match="anomaly_profile"):
            GPVAE.load(tmp_path / "m")
    finally:
        fitted.anomaly_profile_ = None


def test_scoring_data_with_many_more_gaps_than_the_normal_data_warns(
    fitted: GPVAE, tmp_path: Path
) -> None:
    """fit_threshold records the normal data's share of missing entries with the profile
    (saved with the model); scoring data that misses a much larger share warns, naming both
    shares and the remedy (a threshold from complete normal data flagged 3-4 times its 1%
    target on normal data with 30% of its entries missing, silently). A few more gaps, causal
    scores (whose rate did not move with the share), a threshold learned from data with
    gaps like these, and a profile saved before the share was recorded do not warn."""
    rng = np.random.default_rng(21)

    def holes(y: np.ndarray, share: float) -> np.ndarray:
        y = y.copy()
        y[rng.random(y.shape) < share] = np.nan
        return y

    y = seasonal(300, 22)
    gappy = holes(y, 0.3)
    fitted.fit_threshold([seasonal(400, 23)], num_samples=4)
    try:
        prof = fitted.anomaly_profile_
        assert prof is not None
        assert prof.missing_share == 0.0
        part = np.isnan(gappy)[~np.isnan(gappy).all(axis=1)]  # steps with an observed entry
        share = float(part.mean())
        with pytest.warns(UserWarning, match="missing") as caught:
            fitted.anomaly_scores(gappy[None])
        text = str(caught[0].message)
        assert (
            f"{share:.1%} of the entries are missing (at the steps with an observed one), "
            "against 0.0% in the normal data"
        ) in text
        assert "call fit_threshold with normal data that has gaps like this data's" in text
        # the rise was measured on short simulated series, not on long real ones: it said
        # "2.5 to 5 times as many" as a rule (session 45: no rise on SMAP/MSL A-1 and C-1)
        assert "may flag more normal steps" in text
        assert "on simulated series of 200 steps (shorter than the rank window)" in text
        assert "flagged no more than on complete data" in text
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fitted.anomaly_scores(y[None])
            fitted.anomaly_scores(holes(y, 0.02)[None])
            outage = y.copy()
            outage[100:190] = np.nan  # whole steps: a gap in time, scored by neither side
            fitted.anomaly_scores(outage[None])
        fitted.save(tmp_path / "m")
        assert GPVAE.load(tmp_path / "m").anomaly_profile_.missing_share == 0.0
        # a profile saved before the share was recorded: unknown, nothing warns
        old = prof.to_json()
        del old["missing_share"]
        fitted.anomaly_profile_ = AnomalyProfile.from_json(old, 2)
        assert fitted.anomaly_profile_.missing_share is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fitted.anomaly_scores(gappy[None])
        # causal scores (forecasts) kept their rate with gaps: nothing warns
        fitted.fit_threshold([seasonal(400, 23)], num_samples=4, causal=True)
        assert fitted.anomaly_profile_.missing_share == 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fitted.anomaly_scores(gappy[None])
        # the remedy: a threshold from normal data with gaps like the scored data's
        normal = holes(seasonal(400, 23), 0.3)
        fitted.fit_threshold([normal], num_samples=4)
        part = np.isnan(normal)[~np.isnan(normal).all(axis=1)]
        assert fitted.anomaly_profile_.missing_share == pytest.approx(part.mean())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fitted.anomaly_scores(gappy[None])
    finally:
        fitted.anomaly_profile_ = None


def test_the_missing_share_counts_the_profiled_features_only() -> None:
    """A feature never observed in the normal data is left out of the alarm, and out of the
    missing share: the share is that of the features the alarm uses, at the steps where
    one of them is observed."""
    rng = np.random.default_rng(5)
    normal = rng.exponential(size=(400, 3))
    normal[:, 2] = np.nan
    normal[:40, 0] = np.nan
    normal[300:350, :2] = np.nan  # steps with nothing observed do not count
    with pytest.warns(UserWarning, match="found none of feature 2"):
        prof = profile_from_entries([normal], 0.01, 4, 5, None, 1, feature_scale="tail")
    assert prof.missing_share == pytest.approx(40 / 700)
    with pytest.raises(ModelFileError, match="missing_share"):
        AnomalyProfile.from_json({**prof.to_json(), "missing_share": 1.5}, 3)


def test_profile_saved_before_the_baseline_keeps_its_meaning() -> None:
    """A profile without baseline / level / alarm_smooth (older model folders): no baseline,
    and the threshold is compared with the smoothed step score, as when it was saved."""
    data = AnomalyProfile(64, 5, 4, 3, np.zeros(2), np.ones(2), 1.0, 0.01, 10).to_json()
    for key in ("baseline", "level", "alarm_smooth"):
        del data[key]
    prof = AnomalyProfile.from_json(data, 2)
    assert prof.baseline == 0
    assert prof.alarm_width == 3


def test_trailing_median_matches_a_loop() -> None:
    rng = np.random.default_rng(3)
    s = rng.standard_normal(60)
    s[[5, 6, 30]] = np.nan
    w, level = 7, 0.25
    padded = np.concatenate([np.full(w, level), s])
    ref = np.array([np.nanmedian(padded[t : t + w]) for t in range(60)])
    np.testing.assert_allclose(_trailing_median(s, w, level), ref)


def test_baseline_keeps_the_false_alarm_rate_when_the_scores_drift() -> None:
    """Normal scores whose level drifts slowly upwards (new data moving away from the normal
    part): the threshold from the normal part flags far too many steps unless the recent
    level is subtracted; a short burst on top of the drift is still flagged."""
    rng = np.random.default_rng(8)
    normal = rng.exponential(size=(3000, 2))
    drift = np.linspace(0.0, 3.0, 8000)[:, None]
    new = rng.exponential(size=(8000, 2)) + drift
    new[5000:5010] += 8.0
    labels = np.zeros(8000, dtype=bool)
    labels[5000:5010] = True
    rates = {}
    for base in (0, 512):
        prof = profile_from_entries([normal], 0.02, 4, 5, 128, 1, True, base)
        flags = alarm_scores(new, prof) > prof.threshold
        rates[base] = float(flags[~labels].mean())
        if base:
            assert flags[labels].mean() > 0.8
    assert 0.01 <= rates[512] <= 0.04, rates  # within a factor 2 of the target
    assert rates[0] > 0.2, rates  # without the baseline


def test_alarm_on_the_step_score_keeps_its_rate_where_a_long_mean_does_not(
    fitted: GPVAE,
) -> None:
    """The upper quantile of a 16-step mean rests on a few independent stretches of 400
    normal steps: its rate on new normal data scatters beyond a factor 2 of the target from
    one normal stretch to the next; the step's own score (alarm_smooth=1) keeps it."""
    y = seasonal(3000, 12)
    rates: dict[int, list[float]] = {1: [], 16: []}
    try:
        for seed in (11, 21, 31, 41, 51):
            for alarm in (1, 16):
                fitted.fit_threshold([seasonal(400, seed)], false_alarm_rate=0.02,
                                     num_samples=8, smooth=16, alarm_smooth=alarm)  # fmt: skip
                rates[alarm].append(float(np.mean(fitted.anomaly_scores([y]).flagged[0])))
    finally:
        fitted.anomaly_profile_ = None
    assert all(0.01 <= r <= 0.04 for r in rates[1]), rates
    assert not all(0.01 <= r <= 0.04 for r in rates[16]), rates


def test_bad_arguments_name_themselves(fitted: GPVAE) -> None:
    y = seasonal(50, 17)
    with pytest.raises(ValidationError, match="false_alarm_rate"):
        fitted.fit_threshold([y], false_alarm_rate=1.5)
    with pytest.raises(ValidationError, match="window"):
        fitted.anomaly_scores([y], window=1)
    with pytest.raises(ValidationError, match="window"):
        fitted.anomaly_scores([y], window="long")


def test_trailing_mean_matches_a_loop() -> None:
    rng = np.random.default_rng(0)
    s = rng.standard_normal(50)
    s[[3, 4, 20]] = np.nan
    w = 4
    ref = np.array([np.nanmean(s[max(0, t - w + 1) : t + 1]) for t in range(50)])
    np.testing.assert_allclose(_trailing_mean(s, w), ref)


def test_flagged_intervals_by_hand() -> None:
    step = np.array([0.0, 5.0, 6.0, 0.0, np.nan, 7.0, 0.0])
    entry = np.array([[0, 0], [1, 4], [1, 5], [0, 0], [np.nan, np.nan], [6, 1], [0, 0]], float)
    prof = AnomalyProfile(None, 5, 4, 1, np.zeros(2), np.ones(2), 1.0, 0.01, 10)
    ivs = flagged_intervals(step, entry, np.arange(7) * 10.0, 1.0, ["a", "b"], prof)
    # given flags (another score above the threshold) decide the runs; the peak is the step's
    given = np.array([False, False, True, True, False, False, False])
    ivg = flagged_intervals(step, entry, np.arange(7) * 10.0, 1.0, ["a", "b"], prof, flags=given)
    assert [(iv["start"], iv["end"], iv["peak"]) for iv in ivg] == [(2, 3, 2)]
    assert [(iv["start"], iv["end"], iv["peak"]) for iv in ivs] == [(1, 2, 2), (5, 5, 5)]
    assert ivs[0]["features"] == ["b", "a"]
    assert ivs[1]["features"] == ["a", "b"]
    assert ivs[0]["start_time"] == 10.0
    assert ivs[0]["peak_score"] == 6.0
    assert settings.ANOMALY_WINDOW >= 2


def test_an_interval_of_a_univariate_series_names_its_feature() -> None:
    """An alarm (here a rank alarm's flags, passed as the step score) can flag a run whose
    one feature sums to no positive normalised score over it: the interval listed no
    feature, though nothing else can have raised the alarm."""
    step = np.array([0.0, 2.0, 2.5, 0.0])
    entry = np.array([[0.0], [-0.5], [-0.6], [0.0]])  # below the normal median
    prof = AnomalyProfile(None, 5, 4, 1, np.zeros(1), np.ones(1), 1.0, 0.01, 10)
    ivs = flagged_intervals(step, entry, np.arange(4.0), 1.0, ["value"], prof)
    assert [iv["features"] for iv in ivs] == [["value"]]
    two = np.hstack([entry, -entry])
    ivs = flagged_intervals(step, two, np.arange(4.0), 1.0, ["a", "b"], prof)
    assert [iv["features"] for iv in ivs] == [["b"]]  # a sums below 0: not material


def test_scores_with_other_settings_than_the_thresholds_warn() -> None:
    """``gpvae detect --num-samples 1`` scored with 1 draw against a threshold learned from
    16, without a word: -log of a mean over fewer draws is larger on average, so more normal
    steps cross it. Any setting other than the stored one now warns, naming it."""
    prof = AnomalyProfile(None, 5, 4, 1, np.zeros(1), np.ones(1), 1.0, 0.01, 10)
    with pytest.warns(UserWarning, match=r"^num_samples: expected the settings the stored "
                      r"threshold was learned with, found num_samples=1 \(the threshold's: "
                      r"4\): these scores are on another scale"):  # fmt: skip
        assert score_settings(prof, 1, None, "default")[0] == 1
    with pytest.warns(UserWarning, match=r"^num_folds, causal: .* num_folds=3 \(the "
                      r"threshold's: 5\), causal=True \(the threshold's: False\)"):  # fmt: skip
        score_settings(prof, None, 3, None, causal=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert score_settings(prof, 4, 5, None, 0.0, False) == (4, 5, None, 0.0, False)
        assert score_settings(prof, None, None, "default") == (4, 5, None, 0.0, False)
        score_settings(None, 1, 3, 50)  # no stored threshold: any settings


def test_flagged_intervals_end_at_gaps_in_time() -> None:
    """Two flagged steps either side of rows missing from a regular series were one
    interval (an hourly NAB interval ran over 31 hours, 29 of them without rows, with
    steps=2); the same gap as steps with nothing observed gave two. A spacing over twice
    the median ends a run (time_gaps, the rule the plots break their lines by); a spacing
    of twice the median (one irregular step) does not."""
    times = np.array([0.0, 1, 2, 3, 4, 33, 34, 35, 37, 38])  # 29 missing rows after 4
    step = np.zeros(len(times))
    step[[3, 4, 5, 7, 8]] = 9.0  # runs across the gap (4 | 33) and a spacing of 2 (35, 37)
    entry = np.zeros((len(times), 1))
    ivs = flagged_intervals(step, entry, times, 1.0, ["a"])
    got = [(iv["start_time"], iv["end_time"], iv["steps"]) for iv in ivs]
    assert got == [(3.0, 4.0, 2), (33.0, 33.0, 1), (35.0, 37.0, 2)]
    np.testing.assert_array_equal(time_gaps(times), np.diff(times) > 2.0)
    hours = np.datetime64("2014-03-02T00:00") + np.array(times * 60, dtype="timedelta64[m]")
    np.testing.assert_array_equal(time_gaps(hours), time_gaps(times))
    assert runs_of(np.ones(len(times), dtype=bool), time_gaps(times)) == [(0, 4), (5, 9)]
    assert not time_gaps(np.array([0.0, 5.0])).any()  # too few times to tell


def test_an_irregular_series_has_no_gaps_and_a_jittered_regular_one_does() -> None:
    """On a Poisson-sampled series a quarter of the spacings were over twice the median and
    counted as gaps (24% of NAB TravelTime_451's), so a run of consecutive flagged rows was
    split into many intervals and detect --plot's lines broken hundreds of times. Gaps are
    only found in a regularly sampled series (half of its spacings within 10% of the
    median): an irregular one has none and its flagged run is one interval, while a series
    every 5 minutes give or take 10 s with an hour of rows missing still breaks there."""
    rng = np.random.default_rng(0)
    poisson = np.cumsum(rng.exponential(1.0, 2000))
    assert not time_gaps(poisson).any()
    step = np.zeros(len(poisson))
    step[100:130] = 9.0
    ivs = flagged_intervals(step, np.zeros((len(poisson), 1)), poisson, 1.0, ["a"])
    assert [(iv["start"], iv["end"]) for iv in ivs] == [(100, 129)]
    # every 5 minutes, jittered by up to 10 s, with the hour after row 99 missing
    minutes = np.arange(300) * 5.0 + rng.uniform(-10 / 60, 10 / 60, 300)
    minutes[100:] += 60.0
    stamps = np.datetime64("2024-01-01T00:00") + (minutes * 60e9).astype("timedelta64[ns]")
    for t in (minutes, stamps):
        np.testing.assert_array_equal(np.flatnonzero(time_gaps(t)), [99])
    assert runs_of(np.ones(300, dtype=bool), time_gaps(minutes)) == [(0, 99), (100, 299)]


def test_a_false_alarm_rate_finer_than_the_normal_data_warns(fitted: GPVAE) -> None:
    """fit_threshold(false_alarm_rate=1e-5) on 600 normal steps stored, silently, a threshold
    at their largest alarm score, which flags far more than 1e-5 of new normal data (0.1% on
    the audit's NAB data, 100 times the target): it warns, naming false_alarm_rate, the
    steps it had and the steps the rate needs. Half a step in the steps it has does not warn."""
    try:
        with pytest.warns(UserWarning, match="false_alarm_rate") as caught:
            fitted.fit_threshold([seasonal(600, 31)], num_samples=4, false_alarm_rate=1e-5)
        text = str(caught[0].message)
        assert caught[0].filename == __file__  # said at the caller's line
        prof = fitted.anomaly_profile_
        assert prof is not None
        n = prof.num_steps
        assert n == 600
        assert f"below 1 / (2 x {n})" in text
        assert "more than twice the target rate" in text
        assert "needs at least 50000 scored normal steps" in text
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fitted.fit_threshold([seasonal(600, 31)], num_samples=4, false_alarm_rate=1 / 1200)
    finally:
        fitted.anomaly_profile_ = None


def test_the_false_alarm_warning_says_what_the_threshold_flags_in_sample() -> None:
    """The warning fired for every rate below 1 / n and said the threshold was the largest
    normal alarm score and the rate could not be met; with np.quantile's interpolation the
    threshold lies between the two largest scores and flags 1 of the n normal steps, within
    a factor 2 of any rate from 1 / (2 n). It warns only below 1 / (2 n), saying the share
    the stored threshold flags of the normal data and the steps the rate needs, which is
    where the warning stops."""
    rng = np.random.default_rng(3)
    normal = rng.exponential(size=(400, 2))
    n = len(normal)

    def fit(rows: np.ndarray, rate: float) -> AnomalyProfile:
        return profile_from_entries([rows], rate, 4, 5, None, 1)

    def flagged(rows: np.ndarray, prof: AnomalyProfile) -> int:
        return int((np.nan_to_num(alarm_scores(rows, prof), nan=-np.inf) > prof.threshold).sum())

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for rate in (1 / (2 * n), 0.0013, 1 / n):  # at and just above 1 / (2 n): no warning
            prof = fit(normal, rate)
            assert flagged(normal, prof) == 1
            assert 1 / n <= 2 * rate
    with pytest.warns(UserWarning, match="false_alarm_rate") as caught:
        prof = fit(normal, 0.0012)  # just below 1 / (2 n) = 0.00125
    text = str(caught[0].message)
    assert prof.num_steps == n
    assert flagged(normal, prof) == 1
    assert f"below 1 / (2 x {n}): the threshold flags 1 of the {n} scored steps" in text
    assert f"(1/{n} = 0.25%), more than twice the target rate" in text
    assert "needs at least 417 scored normal steps" in text
    more = np.vstack([normal, rng.exponential(size=(17, 2))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(more, 0.0012)  # 417 steps: the number it named
    with pytest.warns(UserWarning, match="needs at least 417"):
        fit(more[:416], 0.0012)


def test_runs_of_finds_every_run_including_at_the_ends() -> None:
    mask = np.array([1, 1, 0, 1, 0, 0, 1], dtype=bool)
    assert runs_of(mask) == [(0, 1), (3, 3), (6, 6)]
    assert runs_of(np.zeros(4, dtype=bool)) == []
    assert runs_of(np.ones(3, dtype=bool)) == [(0, 2)]
    assert runs_of(np.array([0, 2, 2, 0])) == [(1, 2)]  # non-zero counts as True


def test_marginal_draws_agree_with_joint_path_draws(fitted: GPVAE) -> None:
    """The held-out score draws z at each step from q's marginals; the reference draws
    whole paths from q (the sampler that imputation uses): the same Monte Carlo estimate."""
    import math

    import torch

    from gpvae.batch import Batch
    from gpvae.model import sample_chunks
    from gpvae.model.scoring import heldout_nlpd

    model = fitted.model_
    y = fitted.scaler_.transform(seasonal(40, 21))
    batch = Batch(
        torch.arange(40.0)[None, :, None],
        torch.tensor(y[None], dtype=torch.float32),
        torch.ones(1, 40, 2, dtype=torch.bool),
        torch.ones(1, 40, dtype=torch.bool),
    )
    S = 2048
    ours = heldout_nlpd(model, batch, [torch.Generator().manual_seed(0)], 1, S)[0]
    sampler = model.encode(batch).series_sampler([torch.Generator().manual_seed(1)])
    parts = []
    with torch.no_grad():
        for s in sample_chunks(S):
            lp = model.likelihood.log_predictive_entries(
                model.decode(sampler.draw(s)), batch.y, batch.observed, batch.x, batch.valid
            )
            parts.append(torch.logsumexp(lp.double(), 0))
    ref = -(torch.logsumexp(torch.stack(parts), 0) - math.log(S))[0]
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=0.05)


def test_one_fold_hides_nothing(fitted: GPVAE) -> None:
    """num_folds=1 scores each entry with its own value seen by the encoder (a
    reconstruction score): a spike is less surprising than with its step hidden."""
    y = seasonal(120, 22)
    y[60, 0] += 4.0
    held = fitted.anomaly_scores(y[None], num_samples=16, num_folds=5).entry[0]
    seen = fitted.anomaly_scores(y[None], num_samples=16, num_folds=1).entry[0]
    assert np.isfinite(seen).all()
    assert held[60, 0] > seen[60, 0]
    assert fitted.anomaly_scores(y[None], num_folds=1).num_folds == 1


@pytest.mark.parametrize("window", [None, 16])
def test_a_series_scores_do_not_depend_on_the_other_series_of_the_call(
    fitted: GPVAE, window: int | None
) -> None:
    """Series of different lengths scored in one call, in two calls and one at a time get
    the same scores: a series' draws never depend on the padding to the call's longest
    series (two processes of a torchrun fit each score their own block of series)."""
    ys = [seasonal(T, 30 + i) for i, T in enumerate([20, 33, 27, 41, 15])]
    ts = [np.arange(len(y), dtype=np.float64) for y in ys]
    kw = {"num_samples": 8, "window": window}
    together = fitted.anomaly_scores(ys, ts, **kw).entry
    split = [*fitted.anomaly_scores(ys[:2], ts[:2], **kw).entry,
             *fitted.anomaly_scores(ys[2:], ts[2:], **kw).entry]  # fmt: skip
    for i, y in enumerate(ys):
        alone = fitted.anomaly_scores(ys[i : i + 1], ts[i : i + 1], **kw).entry[0]
        assert np.isfinite(alone).all()
        np.testing.assert_allclose(together[i][: len(y)], alone, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(split[i][: len(y)], alone, rtol=1e-9, atol=1e-9)


def test_a_fill_value_far_beyond_float32_gets_a_finite_score() -> None:
    """A value such as 1e20 in data of unit scale scores about 1e41: a float32 frame's
    scores were cast to float32 as inf, with an overflow warning (test_fuzz_predict_many
    found it); they are now held at float32's largest value, finite, the far value the
    highest."""
    import pandas as pd

    from gpvae import GPVAE

    rng = np.random.default_rng(0)
    X = np.sin(np.arange(40) / 4.0)[None, :, None] + 0.1 * rng.standard_normal((6, 40, 2))
    model = GPVAE(latent_dim=2, hidden=(8,), epochs=2, progress=False, calibrate=False).fit(X)
    new = X[:1].copy()
    new[0, 20, 1] = 1e20
    scores = model.anomaly_scores(new, num_samples=4)
    entry = np.asarray(scores.entry)[0]
    assert np.isfinite(entry).all()
    assert np.unravel_index(np.argmax(entry), entry.shape) == (20, 1)
    frame = pd.DataFrame(new[0].astype(np.float32), columns=["a", "b"])
    frame.iloc[20, 1] = np.float32(-2e19)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow in a cast
        out = model.anomaly_scores(frame, num_samples=4).entry
    assert out.dtypes.tolist() == [np.float32, np.float32]
    assert np.isfinite(out.to_numpy()).all()
    assert out.iloc[20, 1] == np.finfo(np.float32).max
