"""The alarm's treatment of a new value of a feature that is constant in the normal data
(``novelty="cap"``, :func:`gpvae.estimator.anomaly.novelty_caps`) and the alarm's defaults."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from tests.test_anomaly import fit_seasonal, seasonal

from gpvae import settings
from gpvae.errors import ModelFileError, ValidationError
from gpvae.estimator.anomaly import (
    AnomalyProfile,
    alarm_scores,
    novelty_caps,
    profile_from_entries,
    step_scores,
    tail_fit,
)

CONSTANT = -0.37  # a feature's entry score when its value is the one it always has


def _drifting_constant_feature() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Entry scores of 40 features: normal (3,000 steps) and new (4,000). Feature 1 is
    constant through the normal data; in the new data, from step 1,000 on, it leaves that
    value on 40% of the steps (normal steps: a regime the training data never showed).
    Steps 2,500-2,549 are a real shift of feature 0 (its score 12 above usual)."""
    rng = np.random.default_rng(7)

    def scores(T: int) -> np.ndarray:
        e = rng.exponential(size=(T, 40))
        e[:, 1] = CONSTANT
        return e

    normal, new = scores(3000), scores(4000)
    drift = np.zeros(4000, dtype=bool)
    drift[1000:] = rng.random(3000) < 0.4
    new[drift, 1] = CONSTANT + rng.uniform(0.5, 8.0, int(drift.sum()))
    shift = np.zeros(4000, dtype=bool)
    shift[2500:2550] = True
    new[shift, 0] += 12.0
    return normal, new, drift & ~shift, shift


def _flagged(entry: np.ndarray, prof: AnomalyProfile) -> np.ndarray:
    return np.nan_to_num(alarm_scores(entry, prof), nan=-np.inf) > prof.threshold


@pytest.mark.parametrize("spread", [False, True])
def test_a_constant_feature_that_changes_later_no_longer_holds_the_alarm(spread: bool) -> None:
    """Extrapolated, the drifting constant feature is flagged on nearly every step where it
    left its value (without the spread) or, with the spread, inflates the alarm's spread so
    that the real shift is missed. Capped, it is flagged on under 2% of them, the other
    normal steps keep about the 1% target, and the shift is caught either way. The step
    score (the ranking) is the same."""
    normal, new, drift, shift = _drifting_constant_feature()
    common = dict(feature_scale="tail", combine="max")
    old = profile_from_entries([normal], 0.01, 4, 5, 128, 1, True, 512, 1, spread,
                               novelty="extrapolate", **common)  # fmt: skip
    cap = profile_from_entries([normal], 0.01, 4, 5, 128, 1, True, 512, 1, spread,
                               novelty="cap", **common)  # fmt: skip
    f_old, f_cap = _flagged(new, old), _flagged(new, cap)
    quiet = ~drift & ~shift
    if spread:
        assert f_old[shift].mean() < 0.5
    else:
        assert f_old[drift].mean() > 0.5
    assert f_cap[drift].mean() < 0.02
    assert f_cap[shift].mean() > 0.9
    assert 0.004 <= f_cap[quiet].mean() <= 0.02
    np.testing.assert_array_equal(step_scores(new, old), step_scores(new, cap))
    # only the constant feature is capped, at log(n + 1) for its n normal steps
    assert cap.alarm_cap is not None
    np.testing.assert_allclose(cap.alarm_cap[1], math.log(3001))
    assert np.isinf(np.delete(cap.alarm_cap, 1)).all()
    assert old.alarm_cap is None


def test_novelty_caps_by_hand() -> None:
    """A feature is capped when its normal scores span less than ANOMALY_MIN_SCALE from
    their minimum to their top ANOMALY_TAIL_SHARE quantile and their mean excess beyond it
    is at the floor; n counts its observed steps."""
    rng = np.random.default_rng(3)
    normal = np.stack(
        [
            np.full(1000, 2.0),  # constant
            2.0 + 0.05 * rng.random(1000),  # nearly: spans 0.05 < 0.1
            rng.exponential(size=1000),  # a tail of its own
            np.zeros(1000),  # a 0/1 flag set on 3% of the steps: its top 1% is the set value
            np.zeros(1000),  # a flag set on 0.5%: its top 1% is 0, its mean excess 50
        ],
        axis=1,
    )
    normal[::33, 3] = 50.0
    normal[::200, 4] = 50.0
    normal[:400, 0] = np.nan  # 600 observed steps
    _, q, beta = tail_fit([normal])
    assert q[-1, 4] - q[0, 4] == 0.0
    caps = novelty_caps([normal], q, beta)
    np.testing.assert_allclose(caps[:2], [math.log(601), math.log(1001)])
    assert np.isinf(caps[2:]).all()
    # a feature scored nowhere is not capped
    empty = normal.copy()
    empty[:, 1] = np.nan
    assert np.isinf(novelty_caps([empty], *tail_fit([empty])[1:])[1])


def test_the_cap_round_trips_and_a_broken_one_names_itself() -> None:
    normal = np.random.default_rng(2).exponential(size=(500, 3))
    normal[:, 2] = 1.0
    prof = profile_from_entries([normal], 0.02, 4, 5, 128, 1, feature_scale="tail",
                                combine="max", novelty="cap")  # fmt: skip
    data = prof.to_json()
    assert data["alarm_cap"] == [None, None, pytest.approx(math.log(501))]
    back = AnomalyProfile.from_json(data, 3)
    assert back.alarm_cap is not None
    np.testing.assert_array_equal(back.alarm_cap, prof.alarm_cap)
    for broken in ([None, None, -1.0], [None, 2.0]):
        with pytest.raises(ModelFileError, match="anomaly_profile"):
            AnomalyProfile.from_json({**data, "alarm_cap": broken}, 3)
    with pytest.raises(ModelFileError, match="anomaly_profile"):  # a cap needs the tail scale
        AnomalyProfile.from_json({**data, "feature_scale": "spread"}, 3)
    # profiles saved before the cap: none
    data.pop("alarm_cap")
    assert AnomalyProfile.from_json(data, 3).alarm_cap is None
    # the spread scale caps nothing; a bad name names itself
    assert profile_from_entries([normal], 0.02, 4, 5, 128, 1, novelty="cap").alarm_cap is None
    with pytest.raises(ValidationError, match="novelty"):
        profile_from_entries([normal], 0.02, 4, 5, 128, 1, novelty="clip")


def test_fit_threshold_defaults_to_the_spread_alarm_and_the_cap() -> None:
    """fit_threshold takes ``spread`` and ``novelty`` from settings unless given."""
    assert settings.ANOMALY_SPREAD is True
    assert settings.ANOMALY_NOVELTY == "cap"
    est = fit_seasonal()
    est.fit_threshold([seasonal(400, 21)], num_samples=4)
    prof = est.anomaly_profile_
    assert prof is not None
    assert prof.spread is True
    assert prof.alarm_cap is not None
    est.fit_threshold([seasonal(400, 21)], num_samples=4, spread=False, novelty="extrapolate")
    prof = est.anomaly_profile_
    assert prof is not None
    assert prof.spread is False
    assert prof.alarm_cap is None
    with pytest.raises(ValidationError, match="novelty"):
        est.fit_threshold([seasonal(400, 21)], num_samples=4, novelty="none")


def test_the_estimators_flags_use_the_capped_alarm() -> None:
    """``anomaly_scores``' flagged steps are the capped alarm above the threshold, and its
    step score is the uncapped one (a cap low enough to bind on feature 0)."""
    est = fit_seasonal()
    est.fit_threshold([seasonal(400, 21)], num_samples=4, spread=False, novelty="extrapolate")
    prof = est.anomaly_profile_
    assert prof is not None
    y = seasonal(600, 5)
    y[300:310, 0] += 3.0
    plain = est.anomaly_scores([y])
    prof.alarm_cap = np.array([1.0, math.inf])
    capped = est.anomaly_scores([y])
    entry = np.asarray(capped.entry[0], dtype=np.float64)
    want = np.nan_to_num(alarm_scores(entry, prof), nan=-np.inf) > prof.threshold
    np.testing.assert_array_equal(np.asarray(capped.flagged[0], dtype=bool), want)
    assert np.asarray(plain.flagged[0], dtype=bool)[300:310].any()
    assert not np.array_equal(np.asarray(plain.flagged[0]), np.asarray(capped.flagged[0]))
    np.testing.assert_array_equal(np.asarray(plain.step[0]), np.asarray(capped.step[0]))


def test_a_feature_never_observed_in_the_normal_data_is_left_out_of_the_alarm() -> None:
    """A feature with no value in the normal data (a sensor offline) has no normal scores:
    the profile says so (a warning naming it), leaves it out of the step score and the
    alarm, and keeps that through JSON; its values on new normal data raise no alarms (a
    placeholder tail of 0s counted each of them far out on the tail)."""
    rng = np.random.default_rng(3)
    normal = rng.exponential(size=(4000, 3))
    normal[:, 2] = np.nan
    with pytest.warns(UserWarning, match="found none of 'c'"):
        prof = profile_from_entries([normal], 0.01, 4, 5, None, 1, feature_scale="tail",
                                    combine="max", feature_names=["a", "b", "c"])  # fmt: skip
    assert prof.unprofiled is not None
    assert prof.unprofiled.tolist() == [False, False, True]
    new = rng.exponential(size=(4000, 3))  # normal again, feature 2 back on
    without = new.copy()
    without[:, 2] = np.nan
    np.testing.assert_array_equal(alarm_scores(new, prof), alarm_scores(without, prof))
    np.testing.assert_array_equal(step_scores(new, prof), step_scores(without, prof))
    assert abs(_flagged(new, prof).mean() - 0.01) < 0.006
    back = AnomalyProfile.from_json(prof.to_json(), 3)
    assert back.unprofiled is not None
    assert back.unprofiled.tolist() == [False, False, True]
    # every feature observed: nothing marked, no warning, and the JSON keeps no such field
    full = rng.exponential(size=(4000, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = profile_from_entries([full], 0.01, 4, 5, None, 1, feature_scale="tail")
    assert plain.unprofiled is None
    assert AnomalyProfile.from_json(plain.to_json(), 3).unprofiled is None
    broken = prof.to_json()
    broken["unprofiled"] = [False, True]
    with pytest.raises(ModelFileError, match="unprofiled"):
        AnomalyProfile.from_json(broken, 3)


def test_fit_threshold_warns_of_an_unobserved_feature_and_scoring_leaves_it_out() -> None:
    """The estimator: fit_threshold on data without feature 1 warns naming it; scores of
    data with it warn again and their steps and flags ignore its entries (reported)."""
    est = fit_seasonal()
    normal = seasonal(400, 21)
    normal[:, 1] = np.nan
    with pytest.warns(UserWarning, match="feature_1") as caught:
        est.fit_threshold([normal], num_samples=4)
    # pointing at the caller's line, not into gpvae
    assert [w.filename for w in caught if "feature_1" in str(w.message)] == [__file__]
    prof = est.anomaly_profile_
    assert prof is not None
    y = seasonal(300, 5)
    with pytest.warns(UserWarning, match="'feature_1' had no observed value"):
        res = est.anomaly_scores([y])
    entry = np.asarray(res.entry[0], dtype=np.float64)
    assert np.isfinite(entry[:, 1]).all()  # still reported
    kept = entry.copy()
    kept[:, 1] = np.nan
    np.testing.assert_array_equal(np.asarray(res.step[0]), step_scores(kept, prof))
    want = np.nan_to_num(alarm_scores(kept, prof), nan=-np.inf) > prof.threshold
    np.testing.assert_array_equal(np.asarray(res.flagged[0], dtype=bool), want)
