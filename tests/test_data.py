"""Tests for gpvae.data: input normalisation, batching, scaling and outputs in the user's form."""

from __future__ import annotations

import json
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpvae.batch import Batch
from gpvae.data import (
    Scaler,
    SeriesSet,
    batch_indices,
    from_padded,
    make_batches,
    merge_duplicate_times,
    to_series_set,
    unpad,
)
from gpvae.errors import GPVAEError, InputTypeError, ShapeError, ValidationError

# ---------------------------------------------------------------- helpers


def _through_batches(ss: SeriesSet, batch_size: int = 3, seed: int = 0) -> np.ndarray:
    """Send every series through shuffled batches and collect y back as (n, N_max, D)."""
    out = np.full((ss.num_series, ss.max_length, ss.num_features), -1.0)
    for idx in batch_indices(ss.num_series, batch_size, shuffle=True, seed=seed):
        b = ss.to_batch(idx, dtype=torch.float64)
        y = torch.where(b.observed, b.y, torch.nan).numpy()
        N = y.shape[1]
        out[idx, :N] = y
    return out


def _ragged(rng: np.random.Generator, lengths: list[int], D: int) -> list[np.ndarray]:
    xs = []
    for T in lengths:
        x = rng.normal(size=(T, D))
        x[rng.random((T, D)) < 0.3] = np.nan
        x[0, 0] = 1.5  # at least one observed entry
        xs.append(x)
    return xs


def _irregular_unsorted(rng: np.random.Generator, T: int) -> np.ndarray:
    t = np.cumsum(rng.exponential(1.0, size=T)) + 0.1
    return t[rng.permutation(T)]


# ---------------------------------------------------------------- round trips


def test_array_round_trip_keeps_values_nan_and_dtype() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 12, 3)).astype(np.float32)
    X[rng.random(X.shape) < 0.4] = np.nan
    X[:, 0, 0] = 1.0
    ss = to_series_set(X)
    assert ss.layout.kind == "array"
    np.testing.assert_array_equal(ss.times[3], np.arange(12.0))
    out = from_padded(ss, _through_batches(ss))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, X)  # NaN positions compare equal


def test_array_unsorted_times_are_sorted_and_restored() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4, 9, 2))
    times = np.stack([_irregular_unsorted(rng, 9) for _ in range(4)])
    ss = to_series_set(X, times)
    for i in range(4):
        assert np.all(np.diff(ss.times[i]) > 0)
        order = np.argsort(times[i])
        np.testing.assert_array_equal(ss.values[i], X[i][order])
    b = ss.to_batch()
    assert torch.all(b.x[..., 0].diff(dim=1) > 0)
    np.testing.assert_array_equal(from_padded(ss, _through_batches(ss)), X)
    # The times of the outputs follow the input order too.
    t_back = from_padded(ss, ss.padded()[1][..., None].repeat(2, axis=2))
    np.testing.assert_array_equal(t_back[..., 0], times)


def test_shared_times_and_time_list_for_array() -> None:
    X = np.ones((3, 5, 1))
    t = np.array([0.0, 0.5, 1.5, 2.0, 4.0])
    a = to_series_set(X, t)
    b = to_series_set(X, [t, t, t])
    for i in range(3):
        np.testing.assert_array_equal(a.times[i], t)
        np.testing.assert_array_equal(b.times[i], t)


def test_ragged_lengths_5_to_200_round_trip_and_padding() -> None:
    rng = np.random.default_rng(2)
    lengths = [5, 200, 17, 64, 5, 131, 99]
    X = _ragged(rng, lengths, D=3)
    times = [_irregular_unsorted(rng, T) for T in lengths]
    ss = to_series_set(X, times)
    assert ss.layout.kind == "ragged"
    np.testing.assert_array_equal(ss.lengths, lengths)
    out = from_padded(ss, _through_batches(ss, batch_size=3))
    assert isinstance(out, list)
    for a, b in zip(out, X):
        np.testing.assert_array_equal(a, b)
    b = ss.to_batch([0, 1])  # lengths 5 and 200
    assert b.y.shape == (2, 200, 3)
    assert b.valid[0].sum() == 5
    assert not b.valid[0, 5:].any()
    assert not b.observed[0, 5:].any()
    assert torch.all(b.y[0, 5:] == 0)
    last = torch.tensor(np.sort(times[0])[-1], dtype=torch.float32)
    assert torch.all(b.x[0, 5:, 0] == last)
    # Missing entries: zero value, not observed.
    nan_mask = np.isnan(ss.values[0])
    assert not b.observed[0, :5].numpy()[nan_mask].any()
    assert torch.all(b.y[0, :5][torch.from_numpy(nan_mask)] == 0)


def test_ragged_default_times() -> None:
    X = [np.ones((3, 2)), np.ones((6, 2))]
    ss = to_series_set(X)
    np.testing.assert_array_equal(ss.times[1], np.arange(6.0))


def test_from_padded_accepts_tensor_and_list_and_mapping() -> None:
    rng = np.random.default_rng(3)
    X = _ragged(rng, [4, 6], D=2)
    times = [_irregular_unsorted(rng, 4), _irregular_unsorted(rng, 6)]
    ss = to_series_set(X, times)
    vals = ss.padded()[0]
    from_tensor = from_padded(ss, torch.from_numpy(vals))
    from_list = from_padded(ss, list(ss.values))
    for a, b, c in zip(from_tensor, from_list, X):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)
    both = from_padded(ss, {"mean": vals, "lower": vals - 1})
    assert set(both) == {"mean", "lower"}
    np.testing.assert_array_equal(both["lower"][1], X[1] - 1)
    per_point = from_padded(ss, ss.padded()[1])  # (n, N) per-point scalars
    np.testing.assert_array_equal(per_point[0], times[0])
    with pytest.raises(ShapeError, match="values"):
        from_padded(ss, vals[:, :3])


def test_long_dataframe_round_trip_same_rows_order_columns() -> None:
    rng = np.random.default_rng(4)
    rows = []
    for sid, T in [("b", 6), ("a", 4), ("c", 9)]:
        t = _irregular_unsorted(rng, T)
        for k in range(T):
            rows.append({"id": sid, "time": t[k], "hr": rng.normal(), "sbp": rng.normal()})
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # interleave series, shuffle rows
    df.loc[df.index[:5], "hr"] = np.nan
    df["note"] = "x"
    ss = to_series_set(df, feature_cols=["hr", "sbp"])
    assert ss.layout.kind == "dataframe_long"
    assert ss.layout.series_ids == tuple(pd.unique(df["id"]))
    assert ss.feature_names == ("hr", "sbp")
    out = from_padded(ss, _through_batches(ss, batch_size=2))
    pd.testing.assert_frame_equal(out, df)
    vals = ss.padded()[0]
    both = from_padded(ss, {"mean": vals, "lower": vals - 1, "upper": vals + 1})
    assert list(both.columns) == [*df.columns, "hr_lower", "sbp_lower", "hr_upper", "sbp_upper"]
    np.testing.assert_array_equal(both["sbp_upper"].to_numpy(), df["sbp"].to_numpy() + 1)
    pd.testing.assert_index_equal(both.index, df.index)
    score = from_padded(ss, ss.padded()[1], name="score")  # per point -> Series on the rows
    assert isinstance(score, pd.Series)
    np.testing.assert_array_equal(score.to_numpy(), df["time"].to_numpy())


def test_long_dataframe_infers_columns_and_datetime_hours() -> None:
    start = pd.Timestamp("2024-03-01 08:00")
    df = pd.DataFrame(
        {
            "series_id": [1, 1, 2, 2, 2],
            "timestamp": [start + pd.Timedelta(hours=h) for h in (2, 0, 5, 3, 4.5)],
            "v": [1.0, 2.0, 3.0, np.nan, 5.0],
        }
    )
    ss = to_series_set(df)
    assert ss.layout.id_col == "series_id"
    assert ss.layout.time_col == "timestamp"
    assert ss.layout.time_unit == "hours"
    assert pd.Timestamp(ss.layout.time_origin) == start
    np.testing.assert_allclose(ss.times[0], [0.0, 2.0])
    np.testing.assert_allclose(ss.times[1], [3.0, 4.5, 5.0])
    pd.testing.assert_frame_equal(from_padded(ss, ss.padded()[0]), df)


def test_wide_dataframe_datetime_index_unsorted() -> None:
    idx = pd.to_datetime(["2020-01-01 02:00", "2020-01-01 00:00", "2020-01-01 00:30"])
    df = pd.DataFrame({"a": [1.0, np.nan, 3.0], "b": [4, 5, 6]}, index=idx)
    ss = to_series_set(df)
    assert ss.layout.kind == "dataframe_wide"
    np.testing.assert_allclose(ss.times[0], [0.0, 0.5, 2.0])
    np.testing.assert_array_equal(ss.values[0], [[np.nan, 5.0], [3.0, 6.0], [1.0, 4.0]])
    out = from_padded(ss, _through_batches(ss))
    pd.testing.assert_frame_equal(out, df.astype({"b": np.float64}))


def test_wide_dataframe_period_index_is_read_as_the_periods_start() -> None:
    """Audit A1 #7: a PeriodIndex (monthly data) was refused, with advice (pd.to_datetime)
    that fails on periods; periods are read at their start, the frame keeps its index."""
    X = np.arange(12.0).reshape(6, 2)
    X[2, 1] = np.nan
    months = pd.DataFrame(
        X, columns=["a", "b"], index=pd.period_range("2000-01", periods=6, freq="M")
    )
    stamps = months.set_axis(months.index.to_timestamp())
    ss, expected = to_series_set(months), to_series_set(stamps)
    np.testing.assert_array_equal(ss.times[0], expected.times[0])
    np.testing.assert_array_equal(ss.values[0], X)
    assert (ss.layout.time_unit, ss.layout.freq) == ("steps", "MS")
    assert ss.layout.time_origin == expected.layout.time_origin
    back = from_padded(ss, ss.padded()[0])
    assert isinstance(back.index, pd.PeriodIndex)
    assert back.index.equals(months.index)
    column = months.reset_index(names="date")  # periods in a time column
    np.testing.assert_array_equal(to_series_set(column).times[0], expected.times[0])
    mixed = pd.DataFrame(  # periods of two frequencies: object dtype, told what works
        {"time": [pd.Period("2000-01", "M"), pd.Period("2000Q2", "Q")], "a": [1.0, 2.0]}
    )
    with pytest.raises(InputTypeError, match=r"to_timestamp\(\)"):
        to_series_set(mixed)


def test_series_is_read_as_its_one_column_frame() -> None:
    """Audit A1 #12: a pandas Series (one series, dates in its index) was refused as a 1-D
    array, with advice (X.reshape(1, -1, 1)) that drops the dates."""
    days = pd.date_range("2021-01-01", periods=5, freq="D")[[0, 1, 2, 4, 3]]
    s = pd.Series([1.0, np.nan, 3.0, 5.0, 4.0], index=days, name="temp")
    ss, expected = to_series_set(s), to_series_set(s.to_frame())
    assert ss.layout.kind == "dataframe_wide"
    assert ss.feature_names == ("temp",)
    np.testing.assert_array_equal(ss.times[0], [0.0, 24.0, 48.0, 72.0, 96.0])
    np.testing.assert_array_equal(ss.values[0], expected.values[0])
    assert ss.layout.time_origin == expected.layout.time_origin
    back = from_padded(ss, ss.padded()[0])
    pd.testing.assert_frame_equal(back, s.to_frame())  # rows in the input's order
    with pytest.raises(ShapeError, match="X: expected 2 features"):
        to_series_set(s, num_features=2)


def test_list_of_frames_is_refused_saying_what_to_pass() -> None:
    """Audit A1 #2: a list of DataFrames was read as bare arrays: each frame's dates and
    column names were dropped, and a frame with its columns in another order was mixed up
    without a word."""
    day = pd.DataFrame(
        {"a": [1.0, 2.0, 3.0], "b": [4.0, np.nan, 6.0]},
        index=pd.date_range("2021-01-01", periods=3, freq="D"),
    )
    hour = day[["b", "a"]].set_axis(pd.date_range("2021-03-01", periods=3, freq="h"))
    frames = [day, hour]
    for X, name in ((frames, "X"), ([day.to_numpy(), day["a"]], "X"), ({"X": frames}, "X['X']")):
        with pytest.raises(InputTypeError, match=re.escape(f"{name}[") + r".*pd\.concat"):
            to_series_set(X)
    # the advice works: dates kept, columns matched by name
    long = pd.concat(frames, keys=range(len(frames)), names=["id", "time"]).reset_index()
    ss = to_series_set(long)
    assert ss.feature_names == ("a", "b")
    np.testing.assert_array_equal(ss.values[1], day.to_numpy())
    np.testing.assert_array_equal(ss.times[1] - ss.times[1][0], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(ss.times[0], [0.0, 24.0, 48.0])


def test_wide_dataframe_time_column_and_tz_aware_index() -> None:
    df = pd.DataFrame({"time": [0.0, 2.0, 1.0], "a": [1.0, 2.0, 3.0]})
    with pytest.warns(UserWarning, match=r"time_col: took X\['time'\] .* out of order"):
        ss = to_series_set(df)  # time column inferred (RangeIndex)
    np.testing.assert_array_equal(ss.times[0], [0.0, 1.0, 2.0])
    pd.testing.assert_frame_equal(from_padded(ss, ss.padded()[0]), df)
    tz = pd.DataFrame({"a": [1.0, 2.0]}, index=pd.date_range("2021-06-01", periods=2, freq="15min"))
    tz.index = tz.index.tz_localize("Europe/Berlin")
    np.testing.assert_allclose(to_series_set(tz).times[0], [0.0, 0.25])


def test_wide_dataframe_filtered_rows_keep_their_time_column() -> None:
    # after a row filter the index is no longer a RangeIndex: its labels are still row
    # labels, not times (they were taken as the times and "time" became a feature)
    df = pd.DataFrame({"time": [0.0, 1.5, 4.0, 5.0], "a": [1.0, np.nan, 3.0, 4.0]})
    for frame in (df, df.dropna(), df.iloc[[0, 2, 3]], df.sort_values("time")):
        ss = to_series_set(frame)
        assert list(ss.feature_names) == ["a"]
        np.testing.assert_array_equal(ss.times[0], frame["time"].to_numpy())
    # an index of dates is the time (a numeric column named like a time is then a feature)
    dated = df.set_index(pd.date_range("2021-01-01", periods=4, freq="h"))
    assert list(to_series_set(dated).feature_names) == ["time", "a"]
    # a named index of row numbers: the column named like a time wins, else the index
    numbered = df.set_index(pd.Index([0, 1, 2, 3], name="step"))
    assert list(to_series_set(numbered).feature_names) == ["a"]
    np.testing.assert_array_equal(to_series_set(numbered).times[0], df["time"].to_numpy())
    # a named index of other integers beside a column named like a time: which is unsaid
    named = df.set_index(pd.Index([0, 2, 3, 5], name="step"))
    with pytest.raises(ValidationError, match=r"time_col: .* index 'step' \(not row numbers"):
        to_series_set(named)
    assert list(to_series_set(named, time_col="time").feature_names) == ["a"]
    no_time = named.rename(columns={"time": "b"})
    np.testing.assert_array_equal(to_series_set(no_time).times[0], [0.0, 2.0, 3.0, 5.0])
    # no time column: the row labels are the times (a dropped row leaves a gap)
    only = pd.DataFrame({"a": [1.0, 2.0, 3.0]}, index=[0, 2, 3])
    np.testing.assert_array_equal(to_series_set(only).times[0], [0.0, 2.0, 3.0])


def test_named_row_index_beside_a_time_column_is_row_labels() -> None:
    # a database table's 'row_id' index: the index was taken as the time axis and the real,
    # irregular 'time' column fitted as a feature, without a word (audit S #3)
    times = np.array([0.0, 1.25, 4.0, 9.5, 10.0])
    df = pd.DataFrame({"time": times, "a": [1.0, np.nan, 3.0, 4.0, 5.0]})
    for first in (0, 1):  # row numbers 0..n-1 or 1..n
        df.index = pd.Index(np.arange(first, first + 5), name="row_id")
        ss = to_series_set(df)
        assert list(ss.feature_names) == ["a"]
        np.testing.assert_array_equal(ss.times[0], times)
        pd.testing.assert_frame_equal(from_padded(ss, ss.padded()[0]), df)
    # an index named like a time beside a column named like one: which is meant is unsaid
    both = df.rename_axis("t")
    with pytest.raises(
        ValidationError, match=r"time_col: .* index 't' \(named like a time\) and the column 'time'"
    ):
        to_series_set(both)
    assert list(to_series_set(both, time_col="time").feature_names) == ["a"]


def test_named_time_index_beside_a_feature_named_like_a_time_is_ambiguous() -> None:
    """A wide frame whose time axis is its named float index ('hours', every half hour) with
    a feature 't' (a temperature): 't' became the time axis without a word (audit U #2)."""
    n = 8
    hours = np.arange(n) * 0.5
    df = pd.DataFrame(
        {"t": 15 + np.linspace(0, 6, n), "rh": 60 + 5 * np.sin(hours)},
        index=pd.Index(hours, name="hours"),
    )
    with pytest.raises(
        ValidationError,
        match=r"time_col: .* index 'hours' \(not row numbers 0..n-1 or 1..n\) and the "
        r"column 't' named like a time; pass time_col='t' .* time_col='hours'",
    ):
        to_series_set(df)
    # irregular integer labels (a database's row_id after deletions) too
    with pytest.raises(ValidationError, match=r"time_col: .* index 'row_id'"):
        to_series_set(df.set_axis(pd.Index(np.arange(1000, 1000 + n), name="row_id")))
    # an index of dates still wins (the column named like a time is a feature)
    dated = df.set_axis(pd.date_range("2024-01-01", periods=n, freq="30min", name="hours"))
    assert list(to_series_set(dated).feature_names) == ["t", "rh"]
    # named, the time is clear
    ss = to_series_set(df.reset_index(), time_col="hours")
    assert list(ss.feature_names) == ["t", "rh"]
    np.testing.assert_array_equal(ss.times[0], hours)


@pytest.mark.filterwarnings("ignore:time_col. took")  # (the time column is out of order)
def test_duplicate_times_of_stacked_series_say_to_name_the_id_column() -> None:
    """A long frame whose id column is not named like one ('patient') gave 'duplicate time
    ... merge_duplicate_times', and merging averaged the patients into one series, their
    id a feature (audit S #4). The error now says first that X looks like several series
    and names the column; merging second."""
    t = np.arange(6.0)
    stacked = pd.DataFrame(
        {"patient": np.repeat([101, 202, 303], 6), "time": np.tile(t, 3),
         "hr": np.arange(18.0)}
    )  # fmt: skip
    with pytest.raises(ValidationError) as err:
        to_series_set(stacked)
    message = str(err.value)
    assert "X looks like several series stacked (the column 'patient' changes where" in message
    assert message.index("id_col='patient'") < message.index("merge_duplicate_times")
    # text ids in rows sorted by time, not by series
    by_time = stacked.assign(patient=stacked["patient"].map("P{}".format)).sort_values("time")
    with pytest.raises(ValidationError, match=r"'patient' has distinct times, .*id_col='patient'"):
        to_series_set(by_time, time_col="time", feature_cols=["hr"])
    # no column tells the series apart: still said, with the times that restart
    with pytest.raises(ValidationError, match=r"times restart 2 time\(s\) .* id_col=\.\.\."):
        to_series_set(stacked.drop(columns="patient"), time_col="time")
    # one series with a time logged twice: merging is the advice, as before (a 0/1
    # feature that differs there is no id)
    once = pd.DataFrame(
        {"time": [0.0, 1.0, 1.0, 2.0, 3.0], "hr": [1.0, 2, 3, 4, 5], "flag": [0, 0, 1, 1, 0]}
    )
    with pytest.raises(ValidationError, match=r"in X \(gpvae.data.merge_duplicate_times"):
        to_series_set(once)
    # one sensor read twice a minute (every time repeated) with a 0/1 feature that differs
    # within each pair: it was named as the id (audit U #7); two series sorted by series,
    # whose times restart, still name theirs
    minutes = pd.date_range("2024-05-01 08:00", periods=20, freq="min").repeat(2)
    twice = pd.DataFrame({"time": minutes, "temp": np.arange(40.0), "door": np.tile([0, 1], 20)})
    with pytest.raises(ValidationError) as err:
        to_series_set(twice)
    assert "several series" not in str(err.value)
    assert "door" not in str(err.value)
    assert "merge_duplicate_times" in str(err.value)
    two = stacked[stacked["patient"] < 300].assign(patient=lambda f: f["patient"] // 202)
    with pytest.raises(ValidationError, match=r"'patient' changes where the times restart"):
        to_series_set(two)
    # merging what looks like several series warns that it averages them into one
    with pytest.warns(UserWarning, match=r"id_col: X looks like several .* id_col='patient'"):
        merge_duplicate_times(stacked)


def test_stacked_series_with_a_genuinely_repeated_time_still_name_their_id() -> None:
    """Five stays in a long frame whose id column is 'patient', one stay with a time
    logged twice: that one repeat disqualified 'patient' as the id, so the error gave only
    the merging advice and merging averaged rows of different patients into one series
    without a word (audit M #1). A column that explains most repeated times is the id."""
    t = np.arange(8.0)
    stacked = pd.DataFrame(
        {"patient": np.repeat([101, 202, 303, 404, 505], 8), "time": np.tile(t, 5),
         "hr": np.arange(40.0)}
    )  # fmt: skip
    dup = pd.concat([stacked, stacked.iloc[[3]]], ignore_index=True)  # a stay repeats t=3
    with pytest.raises(ValidationError) as err:
        to_series_set(dup, time_col="time")
    message = str(err.value)
    assert "X looks like several series stacked (the column 'patient' changes where" in message
    assert message.index("id_col='patient'") < message.index("merge_duplicate_times")
    with pytest.warns(UserWarning, match=r"id_col: X looks like several .* id_col='patient'"):
        merge_duplicate_times(dup, time_col="time")
    # rows sorted by time, text ids: the column names the stays but for the one repeat
    by_time = dup.assign(patient=dup["patient"].map("P{}".format)).sort_values("time")
    with pytest.raises(
        ValidationError, match=r"'patient' has distinct times but on 1 row\(s\), .*id_col='patient'"
    ):
        to_series_set(by_time, time_col="time", feature_cols=["hr"])
    # one series read twice a time, a whole-number feature that differs in most pairs but
    # not nearly all (equal in 3 of 10): a feature, not an id
    twice = pd.DataFrame({"time": np.repeat(np.arange(10.0), 2), "level": np.arange(20) % 7})
    twice.loc[[3, 9, 19], "level"] = twice.loc[[2, 8, 18], "level"].to_numpy()
    with pytest.raises(ValidationError) as err:
        to_series_set(twice, time_col="time")
    assert "several series" not in str(err.value)


def test_stacked_series_name_the_column_that_explains_the_repeats_best() -> None:
    """A per-stay column before the id ('unit' 1, 2, 3, 1: constant in each stay, one value
    recurring) changes where the times restart as well, and leaves the repeats of the two
    stays that share a unit unexplained; the first such column was named (review N #1),
    though 'patient' explains every repeat."""
    parts = [
        pd.DataFrame({"time": np.arange(10.0), "unit": u, "patient": p, "hr": 80.0 + p % 7})
        for u, p in zip([1, 2, 3, 1], [101, 102, 103, 104], strict=True)
    ]
    stacked = pd.concat(parts, ignore_index=True)
    with pytest.raises(ValidationError) as err:
        to_series_set(stacked, time_col="time")
    assert "(the column 'patient' changes where the times restart" in str(err.value)
    assert "id_col='unit'" not in str(err.value)
    with pytest.warns(UserWarning, match=r"id_col='patient'"):
        merge_duplicate_times(stacked, time_col="time")


def test_stacked_series_that_share_no_time_are_warned_of() -> None:
    """Audit (session 45): stays stacked in one frame without an id column, whose times
    never repeat (hours since admission at different minutes, or dates), were read as one
    series, the stays' rows interleaved by time, without a word (stays whose times repeat
    raise the duplicate-time error). A column whose values each fill one run of rows, with
    the times going back only where it changes, is now named as their likely id; a file
    sorted newest first and a feature whose values recur are not."""
    rng = np.random.default_rng(0)
    parts = [
        pd.DataFrame(
            {
                "patient": 100 + p,
                "time": np.sort(rng.uniform(0, 48, 12)).round(3) + 1e-3 * p,
                "hr": rng.normal(80, 5, 12),
            }
        )
        for p in range(4)
    ]
    stacked = pd.concat(parts, ignore_index=True)
    assert not stacked["time"].duplicated().any()
    said = r"X looks like several series stacked \(each of the 4 values of the column 'patient'"
    with pytest.warns(UserWarning, match=said + r".*name the id column with id_col='patient'"):
        ss = to_series_set(stacked, time_col="time")
    assert ss.num_series == 1  # still read as asked
    dated = stacked.assign(time=pd.Timestamp("2024-01-01") + pd.to_timedelta(stacked["time"], "h"))
    with pytest.warns(UserWarning, match=said):
        to_series_set(dated, time_col="time")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert to_series_set(stacked, id_col="patient", time_col="time").num_series == 4
        # one series, newest row first, with a feature of few values that recur
        t = np.arange(48.0)
        newest_first = pd.DataFrame({"time": t, "shift": (t // 8) % 3, "hr": np.sin(t)})[::-1]
        assert to_series_set(newest_first, time_col="time").num_series == 1
        # a feature in runs that change where the times go back, one of its values recurring
        recurs = stacked.assign(unit=np.repeat([1, 2, 1, 3], 12))
        to_series_set(recurs.drop(columns="patient"), time_col="time")


def test_stacked_series_advice_says_where_id_col_is_given() -> None:
    """Audit (session 47) #3: BeijingAir's own 'station' column (text) beside the features
    was refused with "drop this one", which only led to the duplicate-time error, and that
    error said "id_col='station'" while GPVAE.fit takes no id_col. The advice on a text
    column names id_col, and the stacked-series messages say where it is given."""
    times = np.tile(np.arange(5.0), 2)
    text = pd.DataFrame({"station": np.repeat(["A", "B"], 5), "time": times, "pm": 1.0})
    with pytest.raises(InputTypeError, match=r"X\['station'\].*named there with id_col=\.\.\."):
        to_series_set(text)
    coded = text.assign(station=np.repeat([1, 2], 5))
    where = r"id_col='station' \(gpvae\.data\.to_series_set\(X, id_col=\.\.\., time_col=\.\.\.\)"
    with pytest.raises(ValidationError, match=where):
        to_series_set(coded)
    assert to_series_set(text, id_col="station").num_series == 2  # following it


def test_a_multiindex_frame_is_advised_reset_index() -> None:
    """Audit (session 47) #4: a frame indexed by (id, time), a common pandas layout, was
    read as a wide frame whose index tuples were times: "expected numeric or datetime
    times, found ... (1, 0.0) (parse dates with pd.to_datetime)". It is refused by its
    MultiIndex, with reset_index() as the advice, which works."""
    frame = pd.DataFrame(
        {"id": np.repeat([1, 2], 4), "time": np.tile(np.arange(4.0), 2), "a": np.arange(8.0)}
    )
    with pytest.raises(InputTypeError, match=r"^X\.index: .*MultiIndex of levels \['id', 'time'\]"):
        to_series_set(frame.set_index(["id", "time"]))
    assert to_series_set(frame.set_index(["id", "time"]).reset_index()).num_series == 2


def test_the_result_of_merge_duplicate_times_is_read_as_its_data() -> None:
    """Audit (session 47) #5: passing merge_duplicate_times's result itself (not its .X)
    raised a numeric-values error that pasted the whole frame's repr. It is read as its
    data (frames; arrays with their times), and times given twice are refused."""
    frame = pd.DataFrame({"id": [1] * 5, "time": [0, 1, 1, 2, 3.0], "a": [1, 2, 3, 4, 5.0]})
    with pytest.warns(UserWarning, match="merged"):
        merged = merge_duplicate_times(frame)
    ss = to_series_set(merged)
    np.testing.assert_array_equal(ss.values[0][:, 0], [1.0, 2.5, 4.0, 5.0])
    with pytest.warns(UserWarning, match="merged"):
        arrays = merge_duplicate_times([np.arange(4.0)[:, None]], times=[np.array([0, 1, 1, 2.0])])
    np.testing.assert_array_equal(to_series_set(arrays).times[0], [0.0, 1.0, 2.0])
    with pytest.raises(ValidationError, match=r"^times: expected None for X from merge_dup"):
        to_series_set(arrays, times=[np.arange(3.0)])
    from gpvae import GPVAE  # the estimator reads it so too, fitting and predicting

    model = GPVAE(latent_dim=1, epochs=1, progress=False, calibrate=False).fit(merged)
    out = model.impute(merged).to_frame()
    np.testing.assert_array_equal(out["a"], merged.X["a"])


def test_a_column_whose_values_recur_is_not_named_as_the_id() -> None:
    """Audit (session 47, CLI #2): BeijingAir's raw file with the hour as the time was
    advised "id_col='day'": the day of the month changes where the hours restart, but each
    day recurs every month, so following the advice merged months together. A column in
    runs is an id only when each of its values fills one run."""
    months = [  # days 1-5 of one month, 1-2 of the next: 'day' explains most repeats
        pd.DataFrame({"month": m, "day": d, "hour": np.arange(4.0), "pm": 1.0})
        for m, days in ((1, range(1, 6)), (2, range(1, 3)))
        for d in days
    ]
    frame = pd.concat(months, ignore_index=True)
    with pytest.raises(ValidationError, match="looks like several series stacked") as err:
        to_series_set(frame, time_col="hour")
    assert "id_col='day'" not in str(err.value)
    assert "id_col=..." in str(err.value)


def test_a_flat_list_of_times_is_the_times_every_series_shares() -> None:
    """Audit (session 47) #9: times=[0, 1, ..., 29] for 5 series of 30 steps was refused
    with "found a list of 30" (read as one array per series), where np.arange(30) was
    accepted; with as many series as steps, as series' arrays of shape ()."""
    for n, T in ((5, 30), (5, 5)):
        ss = to_series_set(np.zeros((n, T, 1)), list(range(T)))
        for t in ss.times:
            np.testing.assert_array_equal(t, np.arange(T, dtype=float))
    ragged = to_series_set([np.zeros((3, 1)), np.zeros((2, 1))], [[0, 1, 2], [5, 6]])
    np.testing.assert_array_equal(ragged.times[1], [5.0, 6.0])
    with pytest.raises(
        ShapeError, match=r"^times: expected None, an \(2, T\) array .*found shape \(2,\)"
    ):
        to_series_set(np.zeros((2, 3, 1)), [0, 1])


def test_elapsed_text_times_are_advised_pd_to_timedelta() -> None:
    """A DataFrame of HH:MM text times since admission ('00:17', '47:59') was refused with
    '(parse dates with pd.to_datetime)', which reads 00:17 as today's clock time and fails
    on 47:59 (audit M #6). The advice is pd.to_timedelta, and it works."""
    frame = pd.DataFrame({"time": ["00:17", "02:17", "47:59"], "hr": [80.0, 82.0, 90.0]})
    with pytest.raises(
        InputTypeError,
        match=r"X\['time'\]: expected numeric or datetime times, found dtype .* value '00:17' "
        r"\(elapsed times, hours:minutes since a start: parse them with "
        r"pd.to_timedelta\(X\['time'\] \+ ':00'\)",
    ):
        to_series_set(frame)
    frame["time"] = pd.to_timedelta(frame["time"] + ":00")
    np.testing.assert_allclose(to_series_set(frame).times[0], [17 / 60, 2 + 17 / 60, 47 + 59 / 60])
    # other text times: dates or durations
    with pytest.raises(InputTypeError, match=r"pd.to_datetime, durations with pd.to_timedelta"):
        to_series_set(frame.assign(time=["Mon", "Tue", "Wed"]))


def test_duplicate_zone_aware_times_are_shown_in_their_zone() -> None:
    """The duplicate-time error showed zone-aware times as naive UTC ('2024-03-29
    23:00:00' for '2024-03-30 00:00:00+01:00') (audit U #8)."""
    t = pd.date_range("2024-03-30", periods=4, freq="h", tz="Europe/Paris")
    frame = pd.DataFrame({"time": t.repeat(2), "v": np.arange(8.0)})
    with pytest.raises(ValidationError, match=r"duplicate time 2024-03-30 00:00:00\+01:00 in X"):
        to_series_set(frame)


def test_column_errors_say_where_columns_are_named() -> None:
    two = pd.DataFrame({"time": [0.0, 1.0], "date": [0.0, 1.0], "a": [1.0, 2.0]})
    with pytest.raises(
        ValidationError,
        match=r"candidates \['time', 'date'\]; name the "
        r"columns with gpvae.data.to_series_set\(X, id_col=..., time_col=",
    ):
        to_series_set(two)


def test_dict_input_pypots_style() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3, 5, 2))
    t = np.stack([_irregular_unsorted(rng, 5) for _ in range(3)])
    ss = to_series_set({"X": X, "times": t})
    assert ss.layout.kind == "dict"
    assert ss.layout.output_kind == "array"
    np.testing.assert_array_equal(from_padded(ss, _through_batches(ss)), X)
    with pytest.raises(ValidationError, match="times"):
        to_series_set({"X": X, "times": t}, t)


def test_dict_missing_mask_marks_zero_filled_entries_missing() -> None:
    # PyPOTS hands X zero-filled with missing_mask (1 = observed): the zeros it marks 0
    # are missing, not data (they were kept as observed zeros)
    rng = np.random.default_rng(6)
    X = rng.normal(size=(3, 5, 2))
    X[rng.random(X.shape) < 0.3] = np.nan
    mask = ~np.isnan(X)
    expected = from_padded(to_series_set(X), _through_batches(to_series_set(X)))
    for m in (mask.astype(np.float32), mask, torch.as_tensor(mask), list(mask.astype(int))):
        ss = to_series_set({"X": np.nan_to_num(X), "missing_mask": m})
        np.testing.assert_array_equal(from_padded(ss, _through_batches(ss)), expected)
    ragged = [X[0], X[1][:3]]
    ss = to_series_set(
        {"X": [np.nan_to_num(x) for x in ragged], "missing_mask": [mask[0], mask[1][:3]]}
    )
    for got, want in zip(ss.values, ragged):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("mask", "needle"),
    [
        (np.full((3, 5, 2), 2.0), "expected 0 (missing) or 1 (observed) entries, found 2.0"),
        (np.ones((3, 5, 2)), "expected 1 only at entries of X_val['X'] that hold a value"),
        (np.ones((1, 5, 2)), "expected shape (3, 5, 2) like X_val['X'], found shape (1, 5, 2)"),
        ([np.ones((5, 2))] * 2, "expected 3 masks, one per series of X_val['X'], found 2"),
        # a masked entry was read as NaN: "found nan", which the caller never wrote
        (
            np.ma.masked_array(np.ones((3, 5, 2)), mask=np.arange(30).reshape(3, 5, 2) < 2),
            "X_val['missing_mask']: expected 0 (missing) or 1 (observed) entries, found a "
            "masked array with 2 masked",
        ),
        (
            [
                np.ones((5, 2)),
                np.ma.masked_array(np.zeros((5, 2)), mask=[[1, 0]] * 5),
                np.ones((5, 2)),
            ],
            "X_val['missing_mask'][1]: expected 0 (missing) or 1 (observed) "
            "entries, found a masked array with 5 masked",
        ),
    ],
    ids=["not-0/1", "observed-NaN", "shape", "list-length", "masked", "masked-in-list"],
)
def test_dict_missing_mask_errors(mask: Any, needle: str) -> None:
    X = np.zeros((3, 5, 2))
    X[0, 0, 0] = np.nan
    with pytest.raises(GPVAEError) as info:
        to_series_set({"X": X, "missing_mask": mask}, name="X_val")
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("key", "advice"),
    [
        ("X_ori", "X_val_target=d['X_ori']"),
        ("X_intact", "X_val_target=d['X_intact']"),
        ("X_pred", "forecast(d['X'], horizon=...)"),
        ("indicating_mask", "drop the key"),
        ("y", "gpvae uses no labels"),
        ("extra", "drop it"),
    ],
)
def test_dict_unknown_key_is_refused_naming_it(key: str, advice: str) -> None:
    # such keys were ignored without a word: an X_ori in X_val did not reach validation
    X = np.zeros((2, 4, 1))
    with pytest.raises(ValidationError) as info:
        to_series_set({"X": X, key: X}, name="X_val")
    message = str(info.value)
    assert message.startswith("X_val: expected a PyPOTS-style dict with only the keys")
    assert f"found the key {key!r}" in message
    assert advice in message


def test_dict_x_ori_advice_keeps_the_missing_mask() -> None:
    # audit R2 #5: the advice said X_val=d['X'], which drops the mask of a zero-filled X
    X = np.zeros((2, 4, 1))
    with pytest.raises(ValidationError) as info:
        to_series_set({"X": X, "missing_mask": np.ones_like(X), "X_ori": X}, name="X_val")
    assert "X_val={'X': d['X'], 'missing_mask': d['missing_mask']}" in str(info.value)
    assert "X_val_target=d['X_ori']" in str(info.value)


@pytest.mark.parametrize(
    ("X", "dtype"),
    [
        (np.ones((2, 3, 1), dtype=bool), np.float64),
        (np.arange(12).reshape(2, 3, 2), np.float64),
        (np.array([[["1.5"], ["nan"], ["2"]]]), np.float64),
        (torch.ones(2, 3, 1, dtype=torch.float32), np.float32),
    ],
    ids=["bool", "int", "numeric-strings", "torch-float32"],
)
def test_convertible_dtypes(X: Any, dtype: type) -> None:
    ss = to_series_set(X)
    assert ss.values[0].dtype == np.float64
    assert ss.layout.dtype == dtype


def test_masked_arrays_make_their_masked_entries_missing() -> None:
    """Audit A1 #1: a numpy masked array's mask was ignored, its fill values (-999) read as
    observed values (and given back as such by impute)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2, 4, 3)).astype(np.float32)
    mask = rng.random(X.shape) < 0.4
    mask[:, 0] = False  # every series keeps an observed entry
    with_nan = np.where(mask, np.nan, X)
    masked = np.ma.masked_array(np.where(mask, -999.0, X).astype(np.float32), mask=mask)
    expected = np.stack(to_series_set(with_nan).values)
    for form in (masked, list(masked), {"X": masked}):  # (a list: ragged; a dict's X)
        np.testing.assert_array_equal(np.stack(to_series_set(form).values), expected)
    text = np.ma.masked_array(masked.data.astype(str), mask=mask)  # masked "-999.0"
    np.testing.assert_allclose(np.stack(to_series_set(text).values), expected, rtol=1e-6)
    ints = np.ma.masked_array(np.where(mask, -1, 1), mask=mask)
    np.testing.assert_array_equal(np.stack(to_series_set(ints).values), np.where(mask, np.nan, 1))
    assert to_series_set(masked).layout.dtype == np.float32  # results in the input's dtype
    bad = np.ma.masked_array(np.array([["1", "x"], ["2", "3"]]), mask=[[0, 1], [0, 0]])
    np.testing.assert_array_equal(to_series_set([bad]).values[0], [[1.0, np.nan], [2.0, 3.0]])
    times = np.ma.masked_array(np.arange(4.0) * 10, mask=[0, 0, 1, 0])
    with pytest.raises(
        ValidationError, match=r"times: expected finite times, found nan .*\(step 2\)$"
    ):
        to_series_set(with_nan, times)
    days = np.ma.masked_array(np.arange(4) * np.timedelta64(1, "D") + np.datetime64("2021-01-01"))
    days[1] = np.ma.masked
    with pytest.raises(
        ValidationError, match=r"times: expected finite times, found NaT .*\(step 1\)$"
    ):
        to_series_set(with_nan, days)
    # a frame's missing time names its row, as a text value does (audit, session 47 CLI #7)
    frame = pd.DataFrame(
        {"id": [1, 1, 2, 2], "time": [0, 1, np.nan, 2], "a": 1.0}, index=list("pqrs")
    )
    with pytest.raises(ValidationError, match=r"found nan in series 2 \(row 'r'\)$"):
        to_series_set(frame)


def test_timedelta_times_become_hours() -> None:
    t = pd.to_timedelta(["00:00:00", "01:30:00", "00:45:00"]).to_numpy()
    ss = to_series_set([np.ones((3, 1))], [t])
    np.testing.assert_allclose(ss.times[0], [0.0, 0.75, 1.5])
    assert ss.layout.time_unit == "hours"


def test_series_set_is_read_only_and_passes_through() -> None:
    ss = to_series_set(np.ones((2, 3, 1)))
    with pytest.raises(ValueError, match="read-only"):
        ss.values[0][0, 0] = 2.0
    assert to_series_set(ss) is ss
    with pytest.raises(ShapeError, match="X_val"):
        to_series_set(ss, num_features=2, name="X_val")


def test_hold_out_hides_observed_entries_reproducibly() -> None:
    rng = np.random.default_rng(10)
    X = _ragged(rng, [3, 40, 25], D=2)
    ss = to_series_set(X)
    kept, held = ss.hold_out(0.3, seed=1)
    kept2, _ = ss.hold_out(0.3, generator=torch.Generator().manual_seed(1))
    n_held = 0
    for v, k, h, k2 in zip(ss.values, kept.values, held.values, kept2.values):
        np.testing.assert_array_equal(k, k2)
        both = ~np.isnan(k) & ~np.isnan(h)
        assert not both.any()  # disjoint
        merged = np.where(np.isnan(k), h, k)
        np.testing.assert_array_equal(merged, v)  # together they are the original
        assert (~np.isnan(k)).any()  # every series keeps an observed entry
        n_held += int((~np.isnan(h)).sum())
    assert 0.15 < n_held / ss.num_observed < 0.45
    with pytest.raises(ValidationError, match="fraction"):
        ss.hold_out(1.0)


def test_allow_flags() -> None:
    X = np.full((1, 1, 2), np.nan)
    ss = to_series_set(X, allow_single_step=True, allow_empty_series=True)
    assert ss.lengths.tolist() == [1]
    b = ss.to_batch()
    assert not b.observed.any()


def test_refused_short_or_empty_series_name_the_flag_that_accepts_them() -> None:
    """GPVAE.fit accepts a series of one step and one with nothing observed; to_series_set,
    which every column-choice error recommends, refused the same frame without saying
    that allow_single_step / allow_empty_series accept them (audit S #8)."""
    df = pd.DataFrame(
        {"stay": ["a"] * 4 + ["b"] + ["c"] * 2, "hours": [0.0, 1, 2, 3, 4, 1, 2],
         "hr": [70.0, 71, 72, 73, 80, np.nan, np.nan]}
    )  # fmt: skip
    cols = {"id_col": "stay", "time_col": "hours", "feature_cols": ["hr"]}
    with pytest.raises(ValidationError, match=r"series 'b' \(to_series_set\(\.\.\., allow_single"):
        to_series_set(df, **cols)
    with pytest.raises(ValidationError, match=r"series 'c' \(to_series_set\(\.\.\., allow_empty"):
        to_series_set(df, allow_single_step=True, **cols)
    ss = to_series_set(df, allow_single_step=True, allow_empty_series=True, **cols)
    assert ss.lengths.tolist() == [4, 1, 2]


# ---------------------------------------------------------------- bad input


def _long_frame(**changes: Any) -> pd.DataFrame:
    df = pd.DataFrame({"id": [1, 1, 2, 2], "time": [0.0, 1.0, 0.0, 1.0], "v": [1.0, 2, 3, 4]})
    for k, v in changes.items():
        df[k] = v
    return df


_T3 = np.zeros((2, 3, 1))
BAD_INPUTS: list[tuple[str, Any, Any, dict[str, Any], type[GPVAEError], str]] = [
    ("2d-array", np.zeros((5, 2)), None, {}, ShapeError, "X"),
    ("1d-array", np.zeros(5), None, {}, ShapeError, "X"),
    ("4d-array", np.zeros((2, 3, 4, 5)), None, {}, ShapeError, "X"),
    ("object-dtype", np.array([[[1.0], ["abc"]]], dtype=object), None, {}, InputTypeError, "X"),
    ("str-dtype", np.array([[["a"], ["b"]]]), None, {}, InputTypeError, "X"),
    ("complex-dtype", np.ones((1, 2, 1), dtype=complex), None, {}, InputTypeError, "X"),
    ("inf", np.array([[[1.0], [np.inf]]]), None, {}, ValidationError, "use NaN"),
    (
        "neg-inf-ragged",
        [np.ones((3, 1)), np.array([[1.0], [-np.inf]])],
        None,
        {},
        ValidationError,
        "X[1]",
    ),
    ("nan-time", _T3, np.array([[0, 1, np.nan]] * 2), {}, ValidationError, "times"),
    ("inf-time", _T3, np.array([[0, 1, np.inf]] * 2), {}, ValidationError, "times"),
    (
        "nat-time",
        [np.ones((2, 1))],
        [np.array(["2020-01-01", "NaT"], dtype="datetime64[ns]")],
        {},
        ValidationError,
        "times",
    ),
    ("duplicate-time", _T3, np.array([[0, 1, 1], [0, 1, 2]]), {}, ValidationError, "times"),
    ("times-wrong-T", _T3, np.zeros((2, 4)), {}, ShapeError, "times"),
    ("times-wrong-n", _T3, np.zeros((3, 3)), {}, ShapeError, "times"),
    ("times-list-len", [np.ones((3, 1))], [np.arange(3), np.arange(3)], {}, ShapeError, "times"),
    ("times-list-shape", [np.ones((3, 1))], [np.arange(4)], {}, ShapeError, "times[0]"),
    ("times-strings", _T3, np.array([["a", "b", "c"]] * 2), {}, InputTypeError, "times"),
    (
        "all-missing-series",
        np.array([[[1.0], [2.0]], [[np.nan], [np.nan]]]),
        None,
        {},
        ValidationError,
        "X[1]",
    ),
    ("single-step", np.ones((2, 1, 3)), None, {}, ValidationError, "X"),
    ("ragged-feature-mismatch", [np.ones((3, 2)), np.ones((4, 3))], None, {}, ShapeError, "X[1]"),
    ("ragged-1d-element", [np.ones(3)], None, {}, ShapeError, "X[0]"),
    ("ragged-empty-element", [np.ones((3, 2)), np.ones((0, 2))], None, {}, ShapeError, "X[1]"),
    ("empty-list", [], None, {}, ShapeError, "X"),
    ("empty-array", np.zeros((0, 3, 2)), None, {}, ShapeError, "X"),
    ("zero-features", np.zeros((2, 3, 0)), None, {}, ShapeError, "X"),
    ("num-features", np.ones((2, 3, 2)), None, {"num_features": 3}, ShapeError, "X"),
    ("df-string-column", _long_frame(v=["1", "2", "x", "4"]), None, {}, InputTypeError, "X['v']"),
    (
        "df-duplicate-time",
        _long_frame(time=[0.0, 0.0, 0.0, 1.0]),
        None,
        {},
        ValidationError,
        "X['time']",
    ),
    ("df-unknown-id-col", _long_frame(), None, {"id_col": "patient"}, ValidationError, "id_col"),
    (
        "df-unknown-feature",
        _long_frame(),
        None,
        {"feature_cols": ["w"]},
        ValidationError,
        "feature_cols",
    ),
    ("df-times-given", _long_frame(), np.arange(4), {}, ValidationError, "times"),
    ("df-missing-id", _long_frame(id=[1, None, 2, 2]), None, {}, ValidationError, "X['id']"),
    (
        "df-long-no-time",
        _long_frame().rename(columns={"time": "when"}),
        None,
        {},
        ValidationError,
        "time_col",
    ),
    ("df-ambiguous-id", _long_frame(series=[1, 1, 2, 2]), None, {}, ValidationError, "id_col"),
    ("df-empty", _long_frame().iloc[:0], None, {}, ShapeError, "X"),
    ("df-inf", _long_frame(v=[1.0, np.inf, 2.0, 3.0]), None, {}, ValidationError, "use NaN"),
    ("dict-without-X", {"data": _T3}, None, {}, ValidationError, "X"),
]


@pytest.mark.parametrize(
    ("X", "times", "kwargs", "error", "needle"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_raises_named_error(
    X: Any, times: Any, kwargs: dict[str, Any], error: type[GPVAEError], needle: str
) -> None:
    with pytest.raises(error) as info:
        to_series_set(X, times, **kwargs)
    assert isinstance(info.value, GPVAEError)
    assert needle in str(info.value)
    assert "expected" in str(info.value)


def test_error_messages_use_given_argument_names() -> None:
    with pytest.raises(ValidationError, match="times_val"):
        to_series_set(_T3, np.array([[0, 1, 1]] * 2), name="X_val", times_name="times_val")
    with pytest.raises(ShapeError, match="X_val"):
        to_series_set(np.zeros(3), name="X_val")


# ---------------------------------------------------------------- batches


def test_make_batches_shapes_and_determinism() -> None:
    rng = np.random.default_rng(6)
    ss = to_series_set(_ragged(rng, [5, 8, 3, 12, 7], D=2))
    batches = list(make_batches(ss, 2, shuffle=True, seed=3, dtype=torch.float64))
    again = list(make_batches(ss, 2, shuffle=True, seed=3, dtype=torch.float64))
    assert [b.y.shape[0] for b in batches] == [2, 2, 1]
    for a, b in zip(batches, again):
        assert isinstance(a, Batch)
        assert a.y.dtype == torch.float64
        assert a.x.shape == (*a.y.shape[:2], 1)
        assert torch.equal(a.y, b.y)
        assert torch.equal(a.valid.sum(1), b.valid.sum(1))
        assert a.y.shape[1] == int(a.valid.sum(1).max())  # padded to the batch's longest
    gen = torch.Generator().manual_seed(3)
    with_gen = list(make_batches(ss, 2, shuffle=True, generator=gen, dtype=torch.float64))
    assert all(torch.equal(a.y, b.y) for a, b in zip(batches, with_gen))
    assert len(list(make_batches(ss, 2, drop_last=True))) == 2
    plain = list(batch_indices(5, 2))
    assert [p.tolist() for p in plain] == [[0, 1], [2, 3], [4]]


def test_batch_indices_by_length_put_series_of_one_length_together() -> None:
    # ragged predictions: a batch of mixed lengths costs padding and one posterior
    # factorisation per length; with lengths, the longest go first, ties in their order
    lengths = [3, 5, 3, 1, 5, 4, 3]
    got = [p.tolist() for p in batch_indices(7, 3, lengths=lengths)]
    assert got == [[1, 4, 5], [0, 2, 6], [3]]
    as_array = batch_indices(7, 3, lengths=np.array(lengths, dtype=np.int32), drop_last=True)
    assert [p.tolist() for p in as_array] == [[1, 4, 5], [0, 2, 6]]
    assert all(p.dtype == np.int64 for p in batch_indices(7, 3, lengths=lengths))
    assert list(batch_indices(0, 3, lengths=[])) == []


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ([3, 5], r"lengths: expected \(3,\) integer series lengths, found shape \(2,\)"),
        ([3.0, 5.0, 1.0], "found shape \\(3,\\) of float64"),
        ([True, False, True], "of bool"),
        ([3, -1, 2], "non-negative series lengths, found -1"),
    ],
    ids=["count", "float", "bool", "negative"],
)
def test_batch_indices_rejects_bad_lengths(bad: Any, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        batch_indices(3, 2, lengths=bad)
    with pytest.raises(ValidationError, match="lengths: expected None when shuffle is on"):
        batch_indices(3, 2, shuffle=True, seed=0, lengths=[1, 2, 3])


@pytest.mark.parametrize("bad", [0, -1, 1.5, True], ids=["zero", "negative", "float", "bool"])
def test_make_batches_rejects_bad_batch_size_at_call(bad: Any) -> None:
    ss = to_series_set(np.ones((2, 3, 1)))
    with pytest.raises(GPVAEError, match="batch_size"):
        make_batches(ss, bad)


def test_time_shift_and_scale_keep_float32_precision() -> None:
    t0 = 1.7e9  # Unix seconds: float32 cannot tell t0 from t0 + 1
    times = np.array([[t0, t0 + 1.0, t0 + 3.0]])
    ss = to_series_set(np.ones((1, 3, 1)), times)
    sc = Scaler().fit(ss)
    assert sc.time_origin_ == t0
    assert sc.time_step_ == 1.5
    b = ss.to_batch(time_shift=sc.time_origin_, time_scale=sc.time_step_)
    torch.testing.assert_close(b.x[0, :, 0], torch.tensor([0.0, 2 / 3, 2.0]))
    shifted = next(make_batches(ss, 1, time_shift=t0))
    torch.testing.assert_close(shifted.x[0, :, 0], torch.tensor([0.0, 1.0, 3.0]))
    with pytest.raises(ValidationError, match="time_scale"):
        make_batches(ss, 1, time_scale=0.0)
    with pytest.raises(ValidationError, match="time_shift"):
        ss.to_batch(time_shift=float("nan"))


def test_nullable_pandas_dtypes() -> None:
    df = pd.DataFrame(
        {
            "id": ["a", "a", "b", "b"],
            "time": [0, 1, 0, 1],
            "n": pd.array([1, None, 3, 4], dtype="Int64"),
            "f": pd.array([0.5, 1.5, None, 2.0], dtype="Float64"),
            "flag": [True, False, True, True],
        }
    )
    ss = to_series_set(df)
    np.testing.assert_array_equal(ss.values[0], [[1.0, 0.5, 1.0], [np.nan, 1.5, 0.0]])


def test_frame_results_keep_each_float_column_s_dtype() -> None:
    """Every feature came back float64: a float32 column lost its dtype."""
    df = pd.DataFrame(
        {
            "time": [0.0, 1.0, 2.0],
            "f32": np.array([0.1, np.nan, 0.3], dtype=np.float32),
            "n": pd.array([1, None, 3], dtype="Int64"),
            "flag": [True, False, True],
        }
    )
    ss = to_series_set(df)
    out = from_padded(ss, np.array([[[0.1, 1.0, 1.0], [0.25, 2.0, 0.5], [0.3, 3.0, 1.0]]]))
    assert out["f32"].dtype == np.float32
    assert out["f32"].iloc[0] == df["f32"].iloc[0]  # the observed value, bit for bit
    assert out["n"].dtype == np.float64  # imputations of whole numbers need not be whole
    assert out["flag"].dtype == np.float64
    half = df.assign(f32=df["f32"].astype(np.float16))  # float16 could hold no wide interval
    assert from_padded(to_series_set(half), np.full((1, 3, 3), 7e4))["f32"].dtype == np.float64
    # one frame of several results (an imputation's mean, lower, upper): each result's
    # columns keep their feature's dtype too (they all came back float64)
    values = np.array([[[0.1, 1.0, 1.0], [0.25, 2.0, 0.5], [0.3, 3.0, 1.0]]])
    both = from_padded(ss, {"mean": values, "lower": values - 1.0})
    assert both["f32"].dtype == both["f32_lower"].dtype == np.float32
    assert both["n"].dtype == both["n_lower"].dtype == np.float64
    assert ss.layout.dtype == np.float64  # not every feature is float32
    only32 = to_series_set(df[["time", "f32"]])
    assert only32.layout.dtype == np.float32


def test_to_batch_rejects_bad_indices() -> None:
    ss = to_series_set(np.ones((2, 3, 1)))
    with pytest.raises(ValidationError, match="indices"):
        ss.to_batch([0, 5])
    with pytest.raises(ValidationError, match="indices"):
        ss.to_batch([])


# ---------------------------------------------------------------- scaler


def test_scaler_statistics_from_observed_entries_only() -> None:
    rng = np.random.default_rng(7)
    X = _ragged(rng, [10, 30, 4], D=3)
    full = np.concatenate(X)
    ss = to_series_set(X)
    sc = Scaler().fit(ss)
    np.testing.assert_allclose(sc.mean_, np.nanmean(full, axis=0), rtol=1e-12)
    np.testing.assert_allclose(sc.std_, np.nanstd(full, axis=0), rtol=1e-12)
    # Adding fully missing rows leaves the statistics unchanged.
    padded = [np.vstack([x, np.full((5, 3), np.nan)]) for x in X]
    sc2 = Scaler().fit(to_series_set(padded))
    np.testing.assert_allclose(sc2.mean_, sc.mean_)
    np.testing.assert_allclose(sc2.std_, sc.std_)


def test_scaler_round_trips() -> None:
    rng = np.random.default_rng(8)
    X = rng.normal(5.0, 3.0, size=(4, 20, 2))
    X[rng.random(X.shape) < 0.2] = np.nan
    X[:, 0] = 1.0
    ss = to_series_set(X)
    sc = Scaler().fit(ss)
    z = sc.transform(ss)
    zall = np.concatenate(z.values)
    np.testing.assert_allclose(np.nanmean(zall, axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.nanstd(zall, axis=0), 1.0, rtol=1e-12)
    back = sc.inverse_transform(z)
    for a, b in zip(back.values, ss.values):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    arr = rng.normal(size=(3, 7, 2))
    np.testing.assert_allclose(sc.inverse_transform(sc.transform(arr)), arr, rtol=1e-12)
    t = torch.randn(3, 7, 2, dtype=torch.float32)
    torch.testing.assert_close(sc.inverse_transform(sc.transform(t)), t)
    var = np.ones((2, 2))
    np.testing.assert_allclose(sc.inverse_transform_variance(var), np.tile(sc.std_**2, (2, 1)))
    np.testing.assert_allclose(sc.transform_variance(sc.inverse_transform_variance(var)), var)
    np.testing.assert_allclose(sc.inverse_transform_scale(var), np.tile(sc.std_, (2, 1)))


def test_scaler_constant_feature_and_time_step() -> None:
    X = [np.array([[2.0, 1.0], [2.0, 3.0], [2.0, np.nan]])]
    times = [np.array([0.0, 0.5, 2.0])]
    sc = Scaler().fit(to_series_set(X, times))
    assert sc.std_[0] == 2.0  # a constant is scaled by its own size (std 1 ignored its units)
    assert sc.mean_[0] == 2.0
    assert sc.time_step_ == pytest.approx(1.0)  # median of [0.5, 1.5]
    for c in (1e-3, -5.0, 1e6):  # equivariant to the units: std is |c|
        assert Scaler().fit(to_series_set([np.full((3, 1), c)])).std_[0] == abs(c)
    assert Scaler().fit(to_series_set([np.zeros((3, 1))])).std_[0] == 1.0
    extreme = Scaler().fit(to_series_set(np.array([[[1e300], [-1e300]]])))
    assert np.isfinite(extreme.std_).all()
    assert extreme.std_[0] == pytest.approx(1e300)


def test_scaler_check_range_names_the_first_bad_series_in_order() -> None:
    """check_range checks everything at once and, on a failure, names the first series (in
    order) with a value or time that does not fit in float32, like a check per series."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 5, 2))
    times = np.tile(np.arange(5.0), (6, 1))
    sc = Scaler().fit(to_series_set(X, times))
    sc.check_range(to_series_set(X, times))  # in range: no error
    bad_x, bad_t = X.copy(), times.copy()
    bad_x[4, 2, 1] = 1e300
    with pytest.raises(ValidationError, match=r"X: .* feature 'feature_1' of X\[4\]"):
        sc.check_range(to_series_set(bad_x, times))
    bad_t[2, 3:] = [1e300, 2e300]
    with pytest.raises(ValidationError, match=r"times: .*1e\+300 in X\[2\]"):
        sc.check_range(to_series_set(bad_x, bad_t))  # series 2's time before series 4's value
    with pytest.raises(ValidationError, match=r"times: .*1e\+300 in X\[2\]"):
        sc.check_range(to_series_set(X, bad_t))  # the times alone


def test_scaler_check_range_refuses_times_float32_cannot_resolve() -> None:
    """Audit B3 #1: a series of two bursts of 1-step points 2**25 steps apart (1-s data two
    years apart in bug1.py) kept its later times far above 2**24 in its batch row, which
    starts only its first time in [0, 1): float32 merged them (a quarter of the distinct
    positions here, as in bug1.py) and the posterior of the second burst changed by about
    its own size, without a word. check_range now refuses it, naming the times and the
    remedy; the same bursts closer, a regular series of 10**6 steps and an irregular one
    pass."""
    n = 200
    burst = np.arange(float(n))
    far = np.concatenate([burst, 2.0**25 + burst])  # steps of 1 (the training spacing)
    sc = Scaler().fit(to_series_set([np.ones((n, 1))], [burst]))
    ss = to_series_set([np.ones((2 * n, 1))], [far])
    row = ss.to_batch(shift_rows=True).x[0, n:, 0]
    assert len(torch.unique(row)) == n // 4 + 1  # why: float32 holds every 4th step there
    with pytest.raises(
        ValidationError,
        match=r"times: expected times that float32 .* resolves, found X\[0\] spanning "
        r"3\.355e\+07 time steps .* moves its times by up to 2 steps, more than 0\.25 of its "
        r"median spacing 1 .* split the series at its long gaps \(its longest: 3\.355e\+07 "
        r"steps, after its time number 199, .* under ~8\.39e\+06 steps each, each part a "
        r"series of its own",
    ):
        sc.check_range(ss)
    many = [burst] * 5 + [far] + [burst]  # found all at once, named by the loop
    with pytest.raises(ValidationError, match=r"found X\[5\] spanning"):
        sc.check_range(to_series_set([np.ones((len(t), 1)) for t in many], many))
    df = pd.DataFrame({"a": np.ones(2 * n)}, index=pd.Index(far * 3600.0, name="t"))
    with pytest.raises(ValidationError, match=r"^X\.index: expected times that float32"):
        Scaler().fit(to_series_set(df)).check_range(to_series_set(df))
    rng = np.random.default_rng(0)
    fine = [
        np.concatenate([burst, 2.0**22 + burst]),  # float32 moves none of these
        np.arange(1e6),  # regular: whole steps, exact below 2**24
        np.cumsum(rng.uniform(0.5, 1.5, 10**6)),  # irregular: moves of up to 2**-5 steps
        np.append(np.arange(1e6), 1e6 - 1 + 1e-3),  # a close pair: its median spacing counts
        2.0**30 + 0.5 + burst,  # far from the origin, short: its row starts at 0.5
    ]
    sc.check_range(to_series_set([np.ones((len(t), 1)) for t in fine], fine))
    for t in fine:  # and one by one (no fast path across series)
        sc.check_range(to_series_set([np.ones((len(t), 1))], [t]))


def test_scaler_feature_never_observed_names_it() -> None:
    df = pd.DataFrame({"time": [0.0, 1.0], "hr": [1.0, 2.0], "lactate": [np.nan, np.nan]})
    with pytest.raises(ValidationError, match="lactate") as info:
        Scaler().fit(to_series_set(df))
    assert "X" in str(info.value)


def test_scaler_state_dict_is_json_and_round_trips() -> None:
    rng = np.random.default_rng(9)
    ss = to_series_set(rng.normal(size=(2, 6, 3)))
    sc = Scaler().fit(ss)
    state = json.loads(json.dumps(sc.state_dict()))
    sc2 = Scaler.from_state_dict(state)
    np.testing.assert_array_equal(sc2.mean_, sc.mean_)
    np.testing.assert_array_equal(sc2.std_, sc.std_)
    assert sc2.time_step_ == sc.time_step_
    assert sc2.feature_names_ == sc.feature_names_
    with pytest.raises(ValidationError, match="state"):
        Scaler.from_state_dict({**state, "std": [1.0, -1.0, 1.0]})
    with pytest.raises(ValidationError, match="state"):
        Scaler.from_state_dict({"version": 1})


def _far_time_warnings(sc: Scaler, ss: SeriesSet) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sc.warn_far_times(ss)
    return [str(w.message) for w in caught]


def test_scaler_warns_on_a_time_unit_squeezed_into_the_training_range() -> None:
    """Audit A1 #4: a model trained on seconds (step 60) given the same series in minutes
    or hours (inside the training range) warned nothing, though its imputations moved by
    0.46 sd; only series ending outside the range had their spacing checked."""
    X = np.ones((3, 60, 1))
    secs = np.tile(np.arange(60) * 60.0, (3, 1))
    sc = Scaler().fit(to_series_set(X, secs))
    assert sc.time_spacing_ == (60.0, 60.0)
    assert _far_time_warnings(sc, to_series_set(X, secs)) == []
    assert _far_time_warnings(sc, to_series_set(X[:1], secs[:1] + 600.0)) == []  # later
    for unit in (60.0, 3600.0):  # minutes, hours
        said = _far_time_warnings(sc, to_series_set(X, secs / unit))
        assert len(said) == 1
        assert said[0].startswith("X: 3 series have a time spacing far from the training")
        assert "within a factor of 10 of the training series' (60; time step 60)" in said[0]
        assert f"found {60 / unit:.6g} in series 0" in said[0]
        assert "check the time unit" in said[0]
    # ten times too wide, inside the range (two points): also a unit mistake
    assert len(_far_time_warnings(sc, to_series_set(X[:1, :2], [[0.0, 3000.0]]))) == 1
    # ending outside the range: the rule that was (one warning, not two)
    said = _far_time_warnings(sc, to_series_set(X, secs * 1000))
    assert len(said) == 1
    assert "end far outside the training range" in said[0]
    # saved without the spacings (older model files): no new warning, and a round trip
    state = json.loads(json.dumps(sc.state_dict()))
    assert Scaler.from_state_dict(state).time_spacing_ == (60.0, 60.0)
    del state["time_spacing"]
    old = Scaler.from_state_dict(state)
    assert old.time_spacing_ is None
    assert _far_time_warnings(old, to_series_set(X, secs / 60)) == []
    with pytest.raises(ValidationError, match=r"state\['time_spacing'\]"):
        Scaler.from_state_dict({**state, "time_spacing": [60.0, "x"]})


def test_scaler_spacing_rule_keeps_training_rates_and_irregular_times_quiet() -> None:
    """Training series of other sampling rates (one-minute and three-hourly sensors in
    one table) and irregular times are never flagged: every spacing between the training
    series' own (within a factor of 10) is expected."""
    rng = np.random.default_rng(4)
    minute = np.arange(1440.0) / 60.0  # hours
    slow = np.arange(8) * 3.0
    irregular = np.cumsum(rng.exponential(0.5, size=50))
    train = to_series_set(
        [np.ones((len(t), 1)) for t in (minute, slow, irregular)], [minute, slow, irregular]
    )
    sc = Scaler().fit(train)
    assert sc.time_spacing_ is not None
    assert sc.time_spacing_[0] == pytest.approx(1 / 60)
    assert sc.time_spacing_[1] == pytest.approx(3.0)
    assert _far_time_warnings(sc, train) == []
    # irregular series inside the training range's band, spaced 0.01 to 10 hours
    others = [s * (np.arange(30) + rng.uniform(0, 0.5, 30)) for s in (0.01, 0.2, 5.0, 10.0)]
    ss = to_series_set([np.ones((30, 1))] * 4, others)
    assert _far_time_warnings(sc, ss) == []
    squeezed = to_series_set([np.ones((30, 1))], [np.arange(30.0) / 3600])  # seconds
    assert len(_far_time_warnings(sc, squeezed)) == 1


def test_median_spacings_of_many_series_equal_those_of_each_series() -> None:
    """The spacings of warn_far_times and fit (time_spacing_) go one length at a time
    through np.median along rows: the values of the per-series median bit for bit, with
    repeated times (ignored), decreasing times, single points and empty series."""
    from gpvae.data.scaler import _median_spacing, _median_spacings

    rng = np.random.default_rng(7)
    times = []
    for _ in range(3000):
        T = int(rng.integers(0, 12))
        t = np.cumsum(rng.choice([0.0, 0.5, 1.0, 1 / 3, 7.25], size=T) * rng.exponential(1.0))
        times.append(t[::-1].copy() if rng.random() < 0.05 else t)
    want = [_median_spacing(t) for t in times]
    got = _median_spacings(times)
    assert np.array_equal(got, [np.nan if s is None else s for s in want], equal_nan=True)
    assert any(s is None for s in want)
    assert any(0.0 in np.diff(t) for t in times)
    assert _median_spacings([]).shape == (0,)


def test_scaler_checks_features_at_transform() -> None:
    sc = Scaler().fit(to_series_set(np.ones((2, 3, 2))))
    with pytest.raises(ShapeError, match="X"):
        sc.transform(to_series_set(np.ones((2, 3, 3))))
    with pytest.raises(ShapeError, match="X"):
        sc.transform(np.ones((4, 3)))
    df1 = pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 3.0]})
    df2 = pd.DataFrame({"b": [1.0, 2.0], "a": [1.0, 3.0]})
    sc_df = Scaler().fit(to_series_set(df1))
    with pytest.raises(ValidationError, match="features"):
        sc_df.transform(to_series_set(df2))


# ---------------------------------------------------------------- property-based


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(2, 30), min_size=1, max_size=6),
    D=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
    batch_size=st.integers(1, 4),
)
def test_round_trip_property(lengths: list[int], D: int, seed: int, batch_size: int) -> None:
    rng = np.random.default_rng(seed)
    X = _ragged(rng, lengths, D)
    times = [_irregular_unsorted(rng, T) for T in lengths]
    ss = to_series_set(X, times)
    for a, b in zip(from_padded(ss, _through_batches(ss, batch_size, seed)), X):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(unpad(ss, ss.padded(length=ss.max_length + 3)[1]), times):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- fuzzing


_VALUE_FILLS = [0.0, np.nan, np.inf, -np.inf, 1e-30, 1e30, -1e300, 7.0]


@st.composite
def _messy_inputs(draw: st.DrawFn) -> tuple[Any, Any]:
    """Random X / times in every accepted form, often broken on purpose."""
    rare_zero = st.integers(0, 19).map(lambda k: k == 0)  # True one time in 20
    n = 0 if draw(rare_zero) else draw(st.integers(1, 4))
    D = 0 if draw(rare_zero) else draw(st.integers(1, 3))

    def length() -> int:
        return 0 if draw(rare_zero) else draw(st.integers(1, 8))

    ragged = draw(st.booleans())
    lengths = [length() for _ in range(n)] if ragged else [length()] * n
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    xs = []
    for T in lengths:
        x = rng.normal(size=(T, D)) * 10.0 ** draw(st.integers(-30, 30))
        for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
            if x.size:
                x.flat[rng.integers(x.size)] = draw(st.sampled_from(_VALUE_FILLS))
        if draw(st.booleans()) and T:
            x[rng.integers(T)] = np.nan  # an all-missing time step
        xs.append(x)
    dtype = draw(st.sampled_from(["float64", "float32", "int", "bool", "object", "str"]))

    def cast(x: np.ndarray) -> np.ndarray:
        if dtype in ("int", "bool"):
            return np.clip(np.nan_to_num(x, posinf=0, neginf=0), -1e6, 1e6).astype(dtype)
        if dtype == "str":
            return x.astype(str)
        with np.errstate(over="ignore"):  # 1e300 -> inf in float32: the user's problem
            return x.astype(dtype)

    times_kind = draw(
        st.sampled_from(["none", "sorted", "unsorted", "unsorted", "dup", "nan", "inf", "short"])
    )

    def make_t(T: int) -> np.ndarray | None:
        t = np.cumsum(rng.exponential(size=T))
        if times_kind == "unsorted":
            t = t[rng.permutation(T)]
        elif times_kind == "dup" and T > 1:
            t[-1] = t[0]
        elif times_kind in ("nan", "inf") and T:
            t[rng.integers(T)] = np.nan if times_kind == "nan" else np.inf
        elif times_kind == "short":
            t = t[:-1]
        return t

    times = None if times_kind == "none" else [make_t(T) for T in lengths]
    form = draw(st.sampled_from(["list", "array", "dict", "frame"]))
    if form == "list" or (ragged and form == "array"):
        return [cast(x) for x in xs], times
    if form == "dict":
        return {"X": [cast(x) for x in xs]}, times
    if form == "frame":
        rows = [
            {"id": i, "time": (times[i][k] if times else k), **{f"f{j}": x[k, j] for j in range(D)}}
            for i, x in enumerate(xs)
            for k in range(min(len(x), len(times[i]) if times else len(x)))
        ]
        return pd.DataFrame(rows, columns=["id", "time", *[f"f{j}" for j in range(D)]]), None
    arr = np.stack(xs) if xs else np.zeros((0, lengths[0] if lengths else 0, D))
    return cast(arr), None if times is None else np.stack(times) if times else np.zeros((0, 0))


def _check_messy(X: Any, times: Any) -> None:
    try:
        ss = to_series_set(X, times)
    except GPVAEError as err:
        message = str(err)
        assert "expected" in message
        assert any(arg in message for arg in ("X", "times", "time_col", "id_col")), message
        return
    for v, t in zip(ss.values, ss.times):
        assert v.dtype == np.float64
        assert not np.isinf(v).any()
        assert (~np.isnan(v)).any()
        assert len(t) >= 2
        assert np.all(np.isfinite(t))
        assert np.all(np.diff(t) > 0)
    ss.to_batch(dtype=torch.float64).validate()
    back = from_padded(ss, ss.padded()[0])
    if isinstance(X, np.ndarray):
        np.testing.assert_array_equal(back, X.astype(np.float64).astype(back.dtype))


@settings(max_examples=150, deadline=None)
@given(_messy_inputs())
def test_fuzz_inputs_work_or_raise_named_errors(case: tuple[Any, Any]) -> None:
    _check_messy(*case)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(_messy_inputs())
def test_fuzz_inputs_many(case: tuple[Any, Any]) -> None:
    _check_messy(*case)


def test_shift_rows_moves_each_row_by_its_own_whole_steps() -> None:
    """Audit T #1: with one shift, the times of a series 3.15e7 steps after it lost float32
    resolution (101 of 200 distinct); each row now starts in [0, 1) when ``shift_rows``."""
    year = 365 * 24 * 3600.0
    times = [np.arange(200.0), year + 0.5 + np.arange(200.0), 7.25 + 2.0 * np.arange(50)]
    ss = to_series_set([np.ones((len(t), 1)) for t in times], times)
    np.testing.assert_array_equal(ss.row_shifts(time_shift=0.0), [0.0, year, 7.0])
    np.testing.assert_array_equal(
        ss.row_shifts([2, 1], time_shift=-1.0, time_scale=2.0), [4.0, (year + 1.5) // 2]
    )
    plain = ss.to_batch()
    b = ss.to_batch(shift_rows=True)
    assert len(torch.unique(plain.x[1, :, 0])) < 200  # the old reading of the far series
    torch.testing.assert_close(b.x[1, :, 0], torch.arange(200.0) + 0.5, rtol=0, atol=0)
    assert torch.equal(b.x[0], plain.x[0])  # a row starting at the shift: bit for bit
    torch.testing.assert_close(b.x[2, :50, 0], plain.x[2, :50, 0] - 7.0, rtol=0, atol=0)
    assert torch.all(b.x[2, 50:, 0] == b.x[2, 49, 0])  # padding repeats the last valid time
    again = next(make_batches(ss, 3, shift_rows=True))
    assert torch.equal(again.x, b.x)


# ---------------------------------------------------------------- spatial tables


def test_site_table_names_the_argument_at_fault() -> None:
    """Audit A1 #9: ``predict_sites(X, sites)`` with ``sites`` as a Series (one site's row)
    or a list blamed ``X``; a table of new sites is ``sites``, the field ``X``."""
    from gpvae.data.spatial import field_from_frame, site_table

    frame = pd.DataFrame({"station": ["a", "b"], "lat": [39.9, 40.0], "lon": [116.3, 116.4]})
    with pytest.raises(InputTypeError, match=r"^sites: .*found Series.*to_frame\(\)\.T"):
        site_table(frame.iloc[0], "station", ["lat", "lon"], min_sites=1)
    with pytest.raises(InputTypeError, match=r"^sites: .*found list"):
        site_table([["a", 39.9, 116.3]], "station", ["lat", "lon"], min_sites=1)
    ids, xy = site_table(frame.iloc[0].to_frame().T, "station", ["lat", "lon"], min_sites=1)
    assert ids == ("a",)
    np.testing.assert_array_equal(xy, [[39.9, 116.3]])
    with pytest.raises(InputTypeError, match=r"^X: expected a long pandas DataFrame"):
        field_from_frame(frame.to_numpy(), "station", "time", ["lat", "lon"])  # type: ignore[arg-type]


def test_dates_at_another_rate_are_no_unit_mistake() -> None:
    """Audit R #5: a model of hourly dates given the same station's daily means warned
    "check the time unit" (the spacing rule for series inside the training range): dates
    carry their unit, so only numbers are checked so."""
    hours = pd.date_range("2021-01-01", periods=24 * 60, freq="h")
    frame = pd.DataFrame({"a": np.sin(np.arange(len(hours)) / 24.0)}, index=hours)
    scaler = Scaler().fit(to_series_set(frame))
    daily = frame.resample("D").mean()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scaler.warn_far_times(to_series_set(daily))
    numbers = to_series_set(np.sin(np.arange(60.0))[None, :, None], times=np.arange(60.0))
    fitted = Scaler().fit(to_series_set(np.zeros((1, 200, 1)), times=np.arange(200.0) * 24))
    with pytest.warns(UserWarning, match="check the time unit"):
        fitted.warn_far_times(numbers)  # numbers 24 times closer: still said


def test_messages_show_row_labels_and_values_as_plain_python() -> None:
    """Review N #6-#8: a filtered frame's junk cell was reported at 'row np.int64(2)', a
    list of H:MM times as "value np.str_('00:17')" with advice that fails on a list
    (pd.to_timedelta(times[0] + ':00')), and a categorical column in a merge as "0 text
    value(s) such as np.int64(1)"."""
    frame = pd.DataFrame({"time": [0.0, 1, 2, 3], "hr": [80, 81, "error", 83]}).iloc[1:]
    with pytest.raises(InputTypeError) as err:
        to_series_set(frame, time_col="time")
    assert "such as 'error' (row 2)" in str(err.value)
    assert "np." not in str(err.value)
    times = ["00:17", "01:30", "47:59"]
    with pytest.raises(InputTypeError) as err:
        to_series_set([np.zeros((3, 1))], times=[times])
    message = str(err.value)
    assert "value '00:17'" in message
    parse = re.search(r"parse them with (pd\.to_timedelta\(.*?\));", message)
    assert parse is not None
    assert parse.group(1) == "pd.to_timedelta([t + ':00' for t in times[0]])"
    advised = eval(parse.group(1), {"pd": pd, "times": [times]})  # the advice works
    assert list(advised.total_seconds() / 3600) == pytest.approx([17 / 60, 1.5, 47 + 59 / 60])
    base = pd.DataFrame({"time": [0.0, 1, 1, 2], "hr": [80.0, 81, 83, 82]})
    with pytest.raises(InputTypeError, match=r"X\['x'\]: .*found a categorical column"):
        merge_duplicate_times(base.assign(x=pd.Categorical([1, 2, 1, 2])), time_col="time")
    with pytest.raises(InputTypeError) as err:
        merge_duplicate_times(base.assign(x=["a", "b", "c", "d"]).iloc[1:], time_col="time")
    assert "such as 'b' (row 1, ...)" in str(err.value)
