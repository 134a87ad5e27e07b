"""Calendar-aware time: frequencies inferred from dates, steps, periods, future timestamps;
and the periodogram that initialises periods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gpvae.data import to_series_set
from gpvae.data.calendar import calendar_steps, infer_calendar, period_in_units
from gpvae.data.spectrum import dominant_periods
from gpvae.errors import InputTypeError, ValidationError
from gpvae.estimator.results import resolve_future_times, times_out


def _frame(index: pd.DatetimeIndex) -> pd.DataFrame:
    return pd.DataFrame({"a": np.arange(len(index), dtype=float)}, index=index)


def test_monthly_dates_are_counted_in_months_and_forecast_on_month_starts() -> None:
    ss = to_series_set(_frame(pd.date_range("2000-01-01", periods=48, freq="MS")))
    assert ss.layout.time_unit == "steps"
    assert ss.layout.freq == "MS"
    np.testing.assert_array_equal(ss.times[0], np.arange(48.0))
    future = resolve_future_times(ss, 24, None)
    np.testing.assert_array_equal(future[0], np.arange(48.0, 72.0))
    dates = pd.DatetimeIndex(times_out(ss, future)[0])
    expected = pd.date_range("2004-01-01", periods=24, freq="MS")
    assert dates.equals(expected)  # not 744-hour steps drifting off the month starts


@pytest.mark.parametrize(
    ("index", "freq"),
    [
        (pd.date_range("2001-03-31", periods=20, freq="ME"), "ME"),
        (pd.date_range("2001-01-01", periods=20, freq="QS"), "QS-JAN"),
        (pd.date_range("1990-01-01", periods=20, freq="YS"), "YS-JAN"),
        (pd.bdate_range("2024-01-01", periods=30), "B"),
    ],
)
def test_calendar_frequencies_are_inferred(index: pd.DatetimeIndex, freq: str) -> None:
    ss = to_series_set(_frame(index))
    assert ss.layout.freq == freq
    np.testing.assert_array_equal(ss.times[0], np.arange(len(index), dtype=float))


def test_gaps_keep_the_calendar_and_fixed_steps_stay_in_hours() -> None:
    index = pd.date_range("2001-01-01", periods=30, freq="QS").delete([5, 6, 20])
    ss = to_series_set(_frame(index))
    assert ss.layout.freq == "QS-JAN"
    assert ss.times[0][5] == 7.0
    daily = to_series_set(_frame(pd.date_range("2020-01-01", periods=10, freq="D")))
    assert daily.layout.time_unit == "hours"
    assert daily.layout.freq is None
    np.testing.assert_array_equal(daily.times[0][:3], [0.0, 24.0, 48.0])
    irregular = pd.DatetimeIndex(["2020-01-01", "2020-01-05", "2020-02-11", "2020-05-02"])
    assert infer_calendar([irregular.to_numpy()]) is None


def test_business_days_with_holidays_missing_are_counted_in_business_days() -> None:
    """Business days with a few holidays missing (every exchange's record) were read as
    days, in hours (their first three dates, Wednesday to Friday, are daily): forecasts fell
    on Saturdays and Sundays. Daily data, weekly data on one weekday, and weekdays of a
    stretch shorter than two weekends read as before."""
    full = pd.bdate_range("2019-01-02", periods=130)
    holidays = full.drop(pd.to_datetime(["2019-01-21", "2019-02-18", "2019-05-27"]))
    for index in (holidays, holidays + pd.Timedelta("9h30min")):
        ss = to_series_set(_frame(index))
        assert (ss.layout.time_unit, ss.layout.freq) == ("steps", "B")
        assert ss.times[0][13] == 14.0  # Tuesday 2019-01-22: the holiday Monday is a step
        dates = pd.DatetimeIndex(times_out(ss, resolve_future_times(ss, 6, None))[0])
        expected = pd.bdate_range("2019-07-03", periods=6) + (index[0] - index[0].normalize())
        assert dates.equals(expected)  # Wednesday to Wednesday, no weekend
    assert infer_calendar([full[::2].to_numpy()]) is None  # every other business day
    mondays = pd.date_range("2019-01-07", periods=30, freq="W-MON").delete([3, 9])
    assert infer_calendar([mondays.to_numpy()]) == "W-MON"
    short = pd.bdate_range("2019-01-14", periods=10).drop(pd.Timestamp("2019-01-21"))
    assert infer_calendar([short.to_numpy()]) is None  # one weekend passed over: as before
    daily = pd.date_range("2019-01-02", periods=60, freq="D").delete([10, 11, 30])
    assert infer_calendar([daily.to_numpy()]) is None


def test_semi_monthly_grids_are_named() -> None:
    """The semi-monthly grids that gpvae reads in hours are named for a warning; month
    grids and days are not semi-monthly."""
    from gpvae.data.calendar import semi_monthly

    for freq in ("SMS", "SME"):
        index = pd.date_range("2019-01-01 09:00", periods=30, freq=freq).delete([4, 5])
        assert semi_monthly([index[:3].to_numpy(), index[3:].to_numpy()]) == freq
    days15 = pd.date_range("2019-01-01", periods=30, freq="MS") + pd.Timedelta(days=14)
    assert semi_monthly([days15.to_numpy()]) is None  # the 15th only: a month grid
    assert semi_monthly([pd.date_range("2019-01-01", periods=30).to_numpy()]) is None
    odd = pd.DatetimeIndex(["2019-01-01", "2019-01-15 06:00", "2019-02-01"])
    assert semi_monthly([odd.to_numpy()]) is None  # two times of day


def test_periods_in_calendar_terms() -> None:
    assert period_in_units("12MS", "steps", "MS") == 12.0
    assert period_in_units("1YS", "steps", "MS") == 12.0
    assert period_in_units("1YS", "steps", "QS-JAN") == 4.0
    assert period_in_units("7D", "steps", "B") == pytest.approx(5.0)
    assert period_in_units("365.25D", "hours", None) == 8766.0
    assert period_in_units("24h", "hours", None) == 24.0
    assert period_in_units(7.5, None, None) == 7.5
    with pytest.raises(InputTypeError, match=r"^period: expected a number"):
        period_in_units("24h", None, None)
    with pytest.raises(ValidationError, match=r"^period: expected a number, a positive"):
        period_in_units("fortnightly", "hours", None)
    with pytest.raises(ValidationError, match=r"^period: expected one duration per period"):
        period_in_units("24h,7D", "hours", None)  # pandas summed them: one 8-day period


def test_months_dated_mid_month_are_counted_in_months_and_forecast_on_that_day() -> None:
    """Monthly data dated the 15th were read in hours (steps of 672-744 h): forecast dates
    drifted off the 15th and a yearly period was not 12 steps."""
    index = pd.date_range("2000-01-01", periods=40, freq="MS") + pd.Timedelta(days=14, hours=9)
    ss = to_series_set(_frame(index.delete([3, 17])))  # gaps keep the grid
    assert ss.layout.time_unit == "steps"
    assert ss.layout.freq == "MS+345h"
    assert ss.times[0][3] == 4.0
    future = resolve_future_times(ss, 14, None)
    dates = pd.DatetimeIndex(times_out(ss, future)[0])
    expected = pd.date_range("2003-05-01", periods=14, freq="MS") + pd.Timedelta(days=14, hours=9)
    assert dates.equals(expected)
    assert period_in_units("1YS", "steps", ss.layout.freq) == 12.0
    with pytest.raises(ValidationError, match=r"frequency 'MS\+345h' from 2000-01-15 09:00:00"):
        calendar_steps(np.array(["2000-03-16T09:00"], dtype="datetime64[ns]"),
                       index[0], ss.layout.freq, "X")  # fmt: skip
    quarters = pd.date_range("2001-02-01", periods=12, freq="QS-FEB") + pd.Timedelta(days=9)
    assert infer_calendar([quarters.to_numpy()]) == "QS-FEB+9D"
    exact = to_series_set(_frame(index + pd.Timedelta(milliseconds=1)))  # a shift to the ns
    assert exact.layout.freq == "MS+1242000001000000ns"
    np.testing.assert_array_equal(exact.times[0], np.arange(40.0))
    # not one day of the month: hours as before
    mixed = pd.DatetimeIndex(["2020-01-15", "2020-02-16", "2020-03-15", "2020-04-15"])
    assert infer_calendar([mixed.to_numpy()]) is None


def _on_day(starts: pd.DatetimeIndex, day: int) -> pd.DatetimeIndex:
    """``starts`` moved to ``day`` of their month, or the month's last day when shorter."""
    return pd.DatetimeIndex([d.replace(day=min(day, d.days_in_month)) for d in starts])


def test_months_dated_on_the_29th_to_31st_are_counted_in_months_and_keep_their_day() -> None:
    """Monthly data on the 30th (February's 28th or 29th) were read in hours and forecast
    dates drifted (2019-03-30, then 2019-04-29); each month is now its day, clipped."""
    index = _on_day(pd.date_range("2018-01-01", periods=23, freq="MS"), 30)
    ss = to_series_set(_frame(index.delete([5])))  # a gap keeps the grid
    assert (ss.layout.time_unit, ss.layout.freq) == ("steps", "MS+29D")
    np.testing.assert_array_equal(ss.times[0][4:6], [4.0, 6.0])
    dates = pd.DatetimeIndex(times_out(ss, resolve_future_times(ss, 5, None))[0])
    expected = ["2019-12-30", "2020-01-30", "2020-02-29", "2020-03-30", "2020-04-30"]
    assert dates.equals(pd.DatetimeIndex(expected))
    assert period_in_units("1YS", "steps", ss.layout.freq) == 12.0
    off_day = r"'MS\+29D' from 2018-01-30 00:00:00\), found 2018-03-29"
    with pytest.raises(ValidationError, match=off_day):
        calendar_steps(np.array(["2018-03-29"], dtype="datetime64[ns]"), index[0], "MS+29D", "X")
    # the 29th (February's 28th in 2019), a short series on the grid, quarters on the 30th
    late = _on_day(pd.date_range("2018-11-01", periods=6, freq="MS"), 29)
    assert infer_calendar([late.to_numpy(), late[3:4].to_numpy()]) == "MS+28D"
    quarters = _on_day(pd.date_range("2019-02-01", periods=8, freq="QS-FEB"), 30)
    assert infer_calendar([quarters.to_numpy()]) == "QS-FEB+29D"
    # a later day in a long month: not one day of the month
    off = pd.DatetimeIndex(["2019-01-30", "2019-02-28", "2019-03-31", "2019-04-30"])
    assert infer_calendar([off.to_numpy()]) is None


def test_series_on_days_of_their_own_are_counted_in_months_and_keep_their_days() -> None:
    """Series of one DataFrame on different days of the month (the 15th, the 20th) were
    read in hours, though each alone is monthly: forecast dates drifted (03-18 after 02-15).
    Each series now keeps its day (``"MS+*"``): its month's step plus its day's shift."""
    ms = pd.date_range("2015-01-01", periods=24, freq="MS")
    parts = {
        "A": ms + pd.Timedelta(days=14),
        "B": ms + pd.Timedelta(days=19, hours=6),
        "C": _on_day(ms, 31).delete([4]),  # month ends (pandas' 'ME'), with a gap
        "D": ms[22:] + pd.Timedelta(days=9),  # too short to show a grid: on it
    }
    frame = pd.concat(
        [pd.DataFrame({"id": k, "time": v, "y": 1.0}) for k, v in parts.items()],
        ignore_index=True,
    )
    ss = to_series_set(frame, id_col="id", time_col="time")
    assert (ss.layout.time_unit, ss.layout.freq) == ("steps", "MS+*")
    np.testing.assert_allclose(ss.times[0], np.arange(24.0) + 14 / 31)
    np.testing.assert_allclose(np.diff(ss.times[2]), [1, 1, 1, 2] + [1] * 18)
    assert period_in_units("1YS", "steps", ss.layout.freq) == 12.0
    dates = pd.DatetimeIndex(times_out(ss, resolve_future_times(ss, 3, None)).ravel())
    expected = ["2017-01-15", "2017-02-15", "2017-03-15", "2017-01-20 06:00",
                "2017-02-20 06:00", "2017-03-20 06:00", "2017-01-31", "2017-02-28",
                "2017-03-31", "2017-01-10", "2017-02-10", "2017-03-10"]  # fmt: skip
    assert dates.equals(pd.DatetimeIndex(expected))
    # dates given are read (and given back) on their own day
    given = resolve_future_times(ss, None, ["2017-02-03", "2017-03-03"])
    assert pd.DatetimeIndex(times_out(ss, given)[1]).equals(
        pd.DatetimeIndex(["2017-02-03", "2017-03-03"])
    )
    # new data in the fitted form: a series on another day, not one on two days
    form = ("steps", "MS+*")
    new = to_series_set(_frame(ms[:5] + pd.Timedelta(days=4)), time_form=form)
    np.testing.assert_allclose(new.times[0], np.arange(5.0) + 4 / 31)
    two_days = ms[:4] + pd.to_timedelta([14, 14, 15, 14], unit="D")
    with pytest.raises(ValidationError, match=r"on one day of the month .* found 2015-01-15 00"):
        to_series_set(_frame(two_days), time_form=form)
    # quarters alike; a monthly and a quarterly series share no step: hours as before
    quarterly = pd.date_range("2015-01-01", periods=8, freq="QS") + pd.Timedelta(days=3)
    ends = _on_day(pd.date_range("2015-04-01", periods=8, freq="QS"), 31)
    assert infer_calendar([quarterly.to_numpy(), ends.to_numpy()]) == "QS-JAN+*"
    assert infer_calendar([parts["A"].to_numpy(), quarterly.to_numpy()]) is None


def test_dates_off_the_calendar_grid_are_named() -> None:
    with pytest.raises(ValidationError, match=r"^future_times: expected times on the data's"):
        calendar_steps(
            np.array(["2000-02-15"], dtype="datetime64[ns]"), "2000-01-01", "MS", "future_times"
        )
    # an origin off the grid is the time named, not also the grid's start: the message read
    # "(frequency 'MS+14D' from 2018-01-15 01:00:00), found 2018-01-15 01:00:00"
    off = np.array(["2018-01-15T01:00", "2018-02-15T01:00"], dtype="datetime64[ns]")
    with pytest.raises(ValidationError) as err:
        calendar_steps(off, off[0], "MS+14D", "X")
    assert str(err.value).endswith("(frequency 'MS+14D'), found 2018-01-15 01:00:00")


def test_dominant_periods_find_the_seasons() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(3000.0)
    y = (
        np.sin(2 * np.pi * t / 24.0)
        + 0.6 * np.sin(2 * np.pi * t / 168.0)
        + 0.3 * rng.standard_normal(3000)
    )
    y[rng.random(3000) < 0.1] = np.nan
    found = dominant_periods([y[:, None]], [t], 2)
    assert found[0] == pytest.approx(24.0, rel=0.01)
    assert found[1] == pytest.approx(168.0, rel=0.03)
