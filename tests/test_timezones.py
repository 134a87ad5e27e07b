"""Zone-aware datetimes come back in their zone, on their own calendar.

A zone-aware index was turned into naive UTC and never back: forecasts came back as naive UTC
stamps, and a monthly series in Europe/Berlin (month starts at 23:00 UTC) was not seen as a
monthly calendar, so its forecast dates were not month starts and drifted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gpvae import GPVAE
from gpvae.errors import InputTypeError

KW = {"latent_dim": 2, "epochs": 2, "progress": False, "hidden": (8,), "seed": 0}


def _frame(index: pd.DatetimeIndex) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = len(index)
    return pd.DataFrame({"a": rng.normal(size=n).cumsum(), "b": rng.normal(size=n)}, index=index)


def test_monthly_zoned_forecast_is_the_naive_forecast_in_its_zone() -> None:
    zoned = _frame(pd.date_range("2015-01-01", periods=48, freq="MS", tz="Europe/Berlin"))
    plain = zoned.tz_localize(None)
    fz = GPVAE(**KW).fit(zoned).forecast(zoned, horizon=3).to_frame()
    fp = GPVAE(**KW).fit(plain).forecast(plain, horizon=3).to_frame()
    assert str(fz.index.tz) == "Europe/Berlin"
    assert list(fz.index.tz_localize(None)) == list(fp.index)  # month starts, no drift
    assert list(fp.index.strftime("%Y-%m-%d")) == ["2019-01-01", "2019-02-01", "2019-03-01"]
    np.testing.assert_allclose(fz.to_numpy(), fp.to_numpy())


def test_hourly_zoned_forecast_counts_in_utc_and_answers_in_the_zone() -> None:
    # across the clock change of 2015-03-29 02:00 in Berlin: hours are counted in UTC
    zoned = _frame(pd.date_range("2015-03-27", periods=120, freq="h", tz="Europe/Berlin"))
    utc = zoned.tz_convert("UTC").tz_localize(None)
    fz = GPVAE(**KW).fit(zoned).forecast(zoned, horizon=4)
    fu = GPVAE(**KW).fit(utc).forecast(utc, horizon=4)
    frame = fz.to_frame()
    assert str(frame.index.tz) == "Europe/Berlin"
    expected = zoned.index[-1] + pd.to_timedelta(np.arange(1, 5), "h")
    assert list(frame.index) == list(expected)
    np.testing.assert_allclose(fz.mean, fu.mean)
    assert [pd.Timestamp(t).tz_localize(None) for t in frame.index.tz_convert("UTC")] == list(
        fu.to_frame().index
    )


def test_daily_zoned_forecast_keeps_the_time_of_day_across_a_clock_change() -> None:
    """Daily midnights were counted as 24 UTC hours: after the clock change of 2000-03-26
    the forecast dates came out at 01:00."""
    zoned = _frame(pd.date_range("2000-01-20", periods=60, freq="D", tz="Europe/Berlin"))
    plain = zoned.tz_localize(None)
    model = GPVAE(**KW).fit(zoned)
    assert model.scaler_.time_form_ == ("hours", None)  # counted in hours, stepped in days
    fz = model.forecast(zoned, horizon=10).to_frame()
    expected = pd.date_range("2000-03-20", periods=10, freq="D", tz="Europe/Berlin")
    assert list(fz.index) == list(expected)  # midnights, +01:00 then +02:00
    fp = GPVAE(**KW).fit(plain).forecast(plain, horizon=10).to_frame()
    # before the change the steps are the naive data's 24 hours: the same forecast
    np.testing.assert_allclose(fz.to_numpy()[:7], fp.to_numpy()[:7], rtol=1e-5, atol=1e-6)
    # readings at other times of day, and new data off midnight, are taken as before
    mixed = _frame(pd.date_range("2000-01-20 09:00", periods=60, freq="D", tz="Europe/Berlin"))
    both = pd.concat([zoned.assign(id="a"), mixed.assign(id="b")]).rename_axis("t").reset_index()
    from gpvae.data import to_series_set

    assert to_series_set(both, id_col="id", time_col="t").layout.time_unit == "hours"
    model.impute(zoned.iloc[:5].set_axis(zoned.index[:5] + pd.Timedelta(hours=6)))
    # a daily time skipped by the clock change is given as the first time after the gap
    early = _frame(pd.date_range("2000-01-20 02:30", periods=60, freq="D", tz="Europe/Berlin"))
    dates = GPVAE(**KW).fit(early).forecast(early, horizon=10).to_frame().index
    assert str(dates[6]) == "2000-03-26 03:00:00+02:00"
    assert str(dates[7]) == "2000-03-27 02:30:00+02:00"


def test_future_times_in_any_zone_or_naive_wall_clock() -> None:
    zoned = _frame(pd.date_range("2020-01-01", periods=60, freq="h", tz="Asia/Shanghai"))
    model = GPVAE(**KW).fit(zoned)
    ahead = model.forecast(zoned, horizon=3)
    future = zoned.index[-1] + pd.to_timedelta(np.arange(1, 4), "h")
    for given in (future, future.tz_convert("UTC"), future.tz_localize(None)):
        # as an index, or as a list of pd.Timestamp or datetime.datetime (refused before)
        for form in (given, list(given), list(given.to_pydatetime())):
            again = model.forecast(zoned, future_times=form)
            assert list(again.to_frame().index) == list(future)
            np.testing.assert_allclose(again.mean, ahead.mean)
    mixed = [future[0], future[1].tz_localize(None), future[2]]
    with pytest.raises(InputTypeError, match=r"^future_times: expected datetimes .*all without"):
        model.forecast(zoned, future_times=mixed)


def test_zoned_backtest_and_anomaly_intervals_keep_the_zone() -> None:
    zoned = _frame(pd.date_range("2020-01-01", periods=80, freq="h", tz="America/New_York"))
    model = GPVAE(**KW).fit(zoned)
    bt = model.backtest(zoned, horizon=4, num_origins=2, season=24)
    assert np.isfinite(bt.summary()["mase"])
    model.fit_threshold(zoned, false_alarm_rate=0.2)
    spiked = zoned.copy()
    spiked.iloc[40, 0] += 50.0
    found = model.anomaly_scores(spiked).intervals
    times = [iv["start_time"] for ivs in found for iv in ivs]
    assert times
    assert all(pd.Timestamp(t).tz is not None for t in times)
    assert any(pd.Timestamp(t) == zoned.index[40] for t in times)


@pytest.mark.parametrize("tz", ["UTC", "+08:00"])
def test_fixed_zones(tz: str) -> None:
    index = pd.date_range("2013-03-01", periods=50, freq="h", tz="UTC").tz_convert(
        tz if tz == "UTC" else "Etc/GMT-8"
    )
    frame = _frame(index)
    out = GPVAE(**KW).fit(frame).forecast(frame, horizon=2).to_frame()
    assert out.index[0] == index[-1] + pd.Timedelta(hours=1)
    assert out.index.tz is not None
