"""The tail scale of the features' anomaly scores (``feature_scale="tail"``) and the
largest-feature combination (``combine="max"``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from tests.test_anomaly import _auc, fit_seasonal, seasonal

from gpvae import GPVAE, settings
from gpvae.errors import ModelFileError, ValidationError
from gpvae.estimator.anomaly import (
    AnomalyProfile,
    alarm_scores,
    profile_from_entries,
    step_scores,
    tail_fit,
    tail_scores,
)


def test_tail_scores_match_the_empirical_tail_probability() -> None:
    """Inside the stored quantiles the score is -log of the share of normal scores at least
    as large (to the grid's resolution); beyond them, the exponential tail by hand."""
    rng = np.random.default_rng(0)
    normal = rng.standard_normal((20000, 2)) * np.array([1.0, 5.0]) + np.array([0.0, 3.0])
    logp, q, beta = tail_fit([normal[:12000], normal[12000:]])
    L = settings.ANOMALY_TAIL_LEVELS
    assert logp.shape == (L,)
    assert q.shape == (L, 2)
    np.testing.assert_allclose(logp[-1], -math.log(settings.ANOMALY_TAIL_SHARE))
    probe = np.stack([np.linspace(-0.5, 2.2, 40), 3.0 + 5.0 * np.linspace(-0.5, 2.2, 40)], -1)
    got = tail_scores(probe, logp, q, beta)
    for d in range(2):
        share = (normal[:, d][None, :] >= probe[:, d][:, None]).mean(axis=1)
        # the grid's steps in -log p are 4.6 / 32 = 0.14; linear between them
        np.testing.assert_allclose(got[:, d], -np.log(share), atol=0.02)
    # beyond the last quantile: exponential with the mean excess over it
    top = q[-1, 0]
    excess = normal[:, 0][normal[:, 0] > top] - top
    np.testing.assert_allclose(beta[0], excess.mean())
    far = np.array([[top + 3.0, np.nan]])
    out = tail_scores(far, logp, q, beta)
    np.testing.assert_allclose(out[0, 0], logp[-1] + 3.0 / beta[0])
    assert np.isnan(out[0, 1])
    # below the normal minimum: 0
    assert tail_scores(np.array([[-50.0, -50.0]]), logp, q, beta).tolist() == [[0.0, 0.0]]


def test_a_tied_normal_value_takes_the_share_at_least_as_large() -> None:
    """A 0/1 flag set on 2% of the normal steps: its set value scores -log 0.02, its usual
    value 0; a constant feature's tail has the smallest spread, so any change is far out."""
    normal = np.zeros((5000, 2))
    normal[::50, 0] = 1000.0  # the flag's score when set (2% of the steps)
    logp, q, beta = tail_fit([normal])
    got = tail_scores(np.array([[1000.0, 0.0], [0.0, 1.0]]), logp, q, beta)
    # to the grid's resolution (the first stored level at or beyond the tie)
    step = logp[1] - logp[0]
    assert -math.log(0.02) <= got[0, 0] <= -math.log(0.02) + step
    assert got[0, 1] == 0.0
    assert got[1, 0] == 0.0
    assert beta[1] == settings.ANOMALY_MIN_SCALE
    np.testing.assert_allclose(got[1, 1], logp[-1] + 1.0 / settings.ANOMALY_MIN_SCALE)


def test_a_rare_normal_flag_does_not_drown_a_shift_in_another_feature() -> None:
    """Entry scores of 20 features: 19 flags that are rarely set (their set value scores
    ~1000, in the normal data too) and one continuous feature whose values shift in the
    labelled stretch. Scaled by the spread and summed, every step with a flag set (44% of
    them) outranks the shift (an AUC near 0.75 at best); on the tail scale (summed or the
    largest) the shift ranks first."""
    rng = np.random.default_rng(4)

    def scores(T: int) -> np.ndarray:
        e = np.abs(rng.standard_normal((T, 20)))
        e[:, 1:] *= 0.01
        e[:, 1:][rng.random((T, 19)) < 0.03] = 1000.0
        return e

    normal, new = scores(6000), scores(3000)
    labels = np.zeros(3000, dtype=bool)
    labels[1000:1100] = True
    new[labels, 0] += 4.0
    auc = {}
    for scale, combine in (("spread", "sum"), ("tail", "sum"), ("tail", "max")):
        prof = profile_from_entries([normal], 0.01, 4, 5, 128, 1, True, 0, 1,
                                    feature_scale=scale, combine=combine)  # fmt: skip
        auc[scale, combine] = _auc(step_scores(new, prof), labels)
    assert auc["spread", "sum"] < 0.8, auc
    assert auc["tail", "sum"] > 0.95, auc
    assert auc["tail", "max"] > 0.95, auc


def test_max_combines_the_largest_scaled_feature() -> None:
    rng = np.random.default_rng(1)
    normal = rng.exponential(size=(2000, 3))
    new = rng.exponential(size=(50, 3))
    new[7] = np.nan
    new[9, 1] = np.nan
    prof = profile_from_entries([normal], 0.05, 4, 5, 128, 1, True, 0, 1,
                                feature_scale="tail", combine="max")  # fmt: skip
    assert prof.tail_logp is not None
    assert prof.tail_quantiles is not None
    assert prof.tail_beta is not None
    z = tail_scores(new, prof.tail_logp, prof.tail_quantiles, prof.tail_beta)
    ref = np.array([np.nan if np.isnan(r).all() else np.nanmax(r) for r in z])
    np.testing.assert_allclose(step_scores(new, prof), ref)
    # the threshold is the normal data's quantile of the same score
    normal_alarm = alarm_scores(normal, prof)
    assert np.mean(normal_alarm > prof.threshold) == pytest.approx(0.05, abs=0.005)
    # spread-scaled, summed profiles do not store a tail
    plain = profile_from_entries([normal], 0.05, 4, 5, 128, 1)
    assert plain.tail_quantiles is None
    assert plain.feature_scale == "spread"
    assert plain.combine == "sum"


def test_tail_profile_round_trips_and_keeps_its_rate(tmp_path: Path) -> None:
    est = fit_seasonal()
    est.fit_threshold([seasonal(400, 21)], false_alarm_rate=0.02, num_samples=8,
                      feature_scale="tail", combine="max")  # fmt: skip
    prof = est.anomaly_profile_
    assert prof is not None
    assert prof.feature_scale == "tail"
    assert prof.combine == "max"
    y = seasonal(3000, 12)
    rate = float(np.mean(est.anomaly_scores([y]).flagged[0]))
    assert 0.01 <= rate <= 0.04, rate
    est.save(tmp_path / "m")
    loaded = GPVAE.load(tmp_path / "m")
    assert loaded.anomaly_profile_ is not None
    assert loaded.anomaly_profile_.to_json() == prof.to_json()
    np.testing.assert_array_equal(
        est.anomaly_scores([y[:300]]).step, loaded.anomaly_scores([y[:300]]).step
    )
    # a tail profile whose quantiles are missing or out of order names itself
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    key = next(k for k in cfg if isinstance(cfg[k], dict) and "anomaly_profile" in cfg[k])
    bad = dict(cfg[key]["anomaly_profile"])
    bad["tail_quantiles"] = bad["tail_quantiles"][::-1]
    for broken in (bad, {**cfg[key]["anomaly_profile"], "combine": "mean"}):
        cfg[key] = {**cfg[key], "anomaly_profile": broken}
        cfg_path.write_text(json.dumps(cfg))
        with pytest.raises(ModelFileError, match="anomaly_profile"):
            GPVAE.load(tmp_path / "m")


def test_profiles_saved_before_the_tail_scale_keep_their_meaning() -> None:
    data = AnomalyProfile(64, 5, 4, 3, np.zeros(2), np.ones(2), 1.0, 0.01, 10).to_json()
    for key in ("feature_scale", "combine", "tail_logp", "tail_quantiles", "tail_beta"):
        data.pop(key, None)
    prof = AnomalyProfile.from_json(data, 2)
    assert prof.feature_scale == "spread"
    assert prof.combine == "sum"


def test_bad_scale_and_combine_name_themselves() -> None:
    normal = np.ones((20, 2))
    with pytest.raises(ValidationError, match="feature_scale"):
        profile_from_entries([normal], 0.05, 4, 5, 128, 1, feature_scale="rank")
    with pytest.raises(ValidationError, match="combine"):
        profile_from_entries([normal], 0.05, 4, 5, 128, 1, combine="mean")


def test_intervals_list_only_the_features_rare_on_their_own() -> None:
    """On the tail scale every score is >= 0, so "a positive sum over the interval" listed
    every feature; an interval lists those whose value at one of its steps is as rare, on
    its own, as the profile's false-alarm rate (-log rate), most contributing first."""
    from gpvae.estimator.anomaly import flagged_intervals

    rng = np.random.default_rng(5)
    prof = profile_from_entries([rng.exponential(size=(5000, 3))], 0.01, 4, 5, None, 1,
                                feature_scale="tail", combine="max")  # fmt: skip
    new = rng.exponential(size=(300, 3))
    new[100:106, 0] += 12.0  # feature a: far beyond its normal scores
    new[100:106, 1] = 1.0  # b: ordinary (its normal median is log 2)
    new[100:106, 2] = 3.0  # c: rarer than usual (about 5% of normal), not 1%
    flags = np.zeros(300, dtype=bool)
    flags[100:106] = True
    names = ["a", "b", "c"]
    (iv,) = flagged_intervals(step_scores(new, prof), new, np.arange(300.0), prof.threshold,
                              names, prof, flags=flags)  # fmt: skip
    assert iv["features"] == ["a"]
    new[103, 2] = 8.0  # now c is, at one step, rarer than 1 in 100 normal steps
    (iv,) = flagged_intervals(step_scores(new, prof), new, np.arange(300.0), prof.threshold,
                              names, prof, flags=flags)  # fmt: skip
    assert iv["features"] == ["a", "c"]
