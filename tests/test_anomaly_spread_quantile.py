"""The spread alarm's quantile (``spread_quantile``): the trailing spread is that quantile
of the recent summed scores less their median (against a loop in test_anomaly_causal.py),
the normal data's likewise; it is stored with the profile (profiles saved before it keep
0.9) and set by ``fit_threshold``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tests.test_anomaly import fit_seasonal, seasonal

from gpvae import settings
from gpvae.errors import ModelFileError, ValidationError
from gpvae.estimator.anomaly import (
    AnomalyProfile,
    _summed,
    alarm_scores,
    profile_from_entries,
    step_scores,
)


def test_the_alarm_divides_by_the_quantiles_spread() -> None:
    """With spread_quantile q the normal data's spread is its summed score's q quantile less
    its median, and the alarm is the rise over the trailing median divided by the trailing
    q spread (built by hand here); the step score, which ranks the steps, does not change."""
    rng = np.random.default_rng(3)
    normal = rng.exponential(size=(1500, 4))
    new = 1.5 * rng.exponential(size=(1200, 4))
    new[700:720] += 10.0
    profs = {}
    for q in (0.9, 0.95):
        prof = profile_from_entries([normal], 0.01, 4, 5, 128, 1, True, 256, 1, True,
                                    feature_scale="tail", combine="max", novelty="cap",
                                    spread_quantile=q)  # fmt: skip
        summed = _summed(normal, prof)
        assert prof.spread_quantile == q
        assert prof.level_spread == pytest.approx(np.quantile(summed, q) - np.median(summed))
        raw = _summed(new, prof, alarm=True)
        padded = pd.Series(np.concatenate([np.full(256, prof.level), raw]))
        med = padded.rolling(256, min_periods=1).median().to_numpy()[255 : 255 + len(raw)]
        prev = pd.Series(np.concatenate([[np.nan], raw[:-1]])).rolling(256, min_periods=1)
        sp = (prev.quantile(q) - prev.median()).to_numpy()
        sp = np.where(prev.count().to_numpy() >= 64, sp, prof.level_spread)
        sp = np.maximum(sp, settings.ANOMALY_MIN_SPREAD * prof.level_spread)
        np.testing.assert_allclose(alarm_scores(new, prof), (raw - med) / sp)
        profs[q] = prof
    a, b = profs[0.9], profs[0.95]
    assert b.level_spread > a.level_spread
    assert b.threshold != a.threshold
    np.testing.assert_array_equal(step_scores(new, a), step_scores(new, b))
    # the burst's start is flagged either way; as it fills more than 5% of the window, the
    # 95% quantile's spread grows sooner than the 90%'s (fewer of its later steps flagged)
    flags = {q: alarm_scores(new, p)[700:720] > p.threshold for q, p in profs.items()}
    for f in flags.values():
        assert f[:10].all()
    assert flags[0.95].sum() <= flags[0.9].sum()


def test_the_quantile_round_trips_and_older_profiles_keep_0_9() -> None:
    normal = np.random.default_rng(2).exponential(size=(500, 3))
    prof = profile_from_entries([normal], 0.02, 4, 5, 128, 1, True, 128, 1, True,
                                spread_quantile=0.97)  # fmt: skip
    data = prof.to_json()
    assert data["spread_quantile"] == 0.97
    assert AnomalyProfile.from_json(data, 3).spread_quantile == 0.97
    for broken in (0.5, 1.0, 1.2, "high"):
        with pytest.raises(ModelFileError, match="spread_quantile"):
            AnomalyProfile.from_json({**data, "spread_quantile": broken}, 3)
    data.pop("spread_quantile")  # a profile saved before the option: the 90% quantile
    assert AnomalyProfile.from_json(data, 3).spread_quantile == 0.9
    for bad in (0.5, 1.0, -1.0):
        with pytest.raises(ValidationError, match="spread_quantile"):
            profile_from_entries([normal], 0.02, 4, 5, 128, 1, spread_quantile=bad)


def test_fit_threshold_takes_the_quantile_from_settings_unless_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    est = fit_seasonal()
    monkeypatch.setattr(settings, "ANOMALY_SPREAD_QUANTILE", 0.8)
    est.fit_threshold([seasonal(400, 21)], num_samples=4)
    assert est.anomaly_profile_ is not None
    assert est.anomaly_profile_.spread_quantile == 0.8
    est.fit_threshold([seasonal(400, 21)], num_samples=4, spread_quantile=0.97)
    assert est.anomaly_profile_.spread_quantile == 0.97
    with pytest.raises(ValidationError, match="spread_quantile"):
        est.fit_threshold([seasonal(400, 21)], num_samples=4, spread_quantile=1.5)


def test_the_default_quantile_is_0_95() -> None:
    """The session-13 default (settings.ANOMALY_SPREAD_QUANTILE), which fit_threshold and
    gpvae fit store unless given."""
    assert settings.ANOMALY_SPREAD_QUANTILE == 0.95
    est = fit_seasonal()
    est.fit_threshold([seasonal(400, 21)], num_samples=4)
    assert est.anomaly_profile_ is not None
    assert est.anomaly_profile_.spread_quantile == 0.95
