"""The UTC offsets of CSV times written with differing offsets, and times shown with them.

A zone-aware time column written to CSV (pandas writes Europe/Berlin dates as
``2021-03-28 00:00:00+01:00`` and then ``2021-03-29 00:00:00+02:00``) carries offsets but no
zone name: :func:`~gpvae.app.cli.columns.parse_times` reads such a column in UTC. ``gpvae
fit`` records, with :func:`offset_changes`, the first time and each time at which the
data's offset changes (in ``cli.json``'s ``time_offsets``), and ``gpvae sample``, ``gpvae
forecast`` and ``gpvae backtest`` write their dates with them (:func:`steps_shown`, which
picks :func:`hours_shown` or :func:`days_shown`): on the data's own clock, with the offset the
data used at that time. Offsets alone carry no zone rules: before the data's
first time the first offset holds, after its last time the last one.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import numpy as np
import pandas as pd

from gpvae.app.cli.errors import CLIError

__all__ = [
    "OFFSET",
    "days_shown",
    "hours_shown",
    "offset_changes",
    "parse_changes",
    "recorded_changes",
    "steps_shown",
]

#: The UTC offset at the end of a time's text: "Z", "+01:00", "-0530".
OFFSET = re.compile(r"(?:Z|[+-]\d\d:?\d\d)\s*$")


def _minutes_of(text: str) -> int:
    """The UTC offset that ends ``text`` (matched by ``OFFSET``), in minutes."""
    found = OFFSET.search(text)
    code = found.group(0).strip() if found is not None else "Z"
    if code == "Z":
        return 0
    sign = -1 if code[0] == "-" else 1
    digits = code[1:].replace(":", "")
    return sign * (60 * int(digits[:2]) + int(digits[2:]))


def offset_changes(times: pd.Series, ids: pd.Series | None = None) -> list[str] | None:
    """The first time and every time at which the UTC offset of ``times`` changes, as ISO
    text with its offset (``["2021-03-20T00:00:00+01:00", "2021-03-29T00:00:00+02:00"]``).

    Args:
        times: a time column as read (text); only text whose every time ends with a UTC
            offset, the offsets differing, gives changes.
        ids: the series id of each row (a long file), or None. When two series write one
            instant with different offsets (they are on different clocks), the series of
            the earliest time alone gives the changes.

    Returns:
        The changes in time order, or None when the column is not such text (no offsets,
        one offset: the zone of the parsed column then says it all).
    """
    if pd.api.types.is_datetime64_any_dtype(times.dtype):
        return None
    present = times.notna()
    text = times[present].astype(str)
    if text.empty or not text.str.contains(OFFSET).all():
        return None
    try:
        instants = pd.to_datetime(text, format="ISO8601", utc=True)
    except (ValueError, TypeError):
        return None
    offsets = text.map(_minutes_of)
    if offsets.nunique() < 2:
        return None
    table = pd.DataFrame({"t": instants.to_numpy(), "off": offsets.to_numpy()})
    if ids is not None:
        table["id"] = ids[present].to_numpy()
        clash = table.groupby("t")["off"].nunique() > 1
        if clash.any():  # series on different clocks: the clock of the earliest series
            first = table["id"].iloc[int(np.argmin(table["t"].to_numpy()))]
            table = table[table["id"] == first]
    table = table.sort_values("t", kind="stable").drop_duplicates("t")
    off = table["off"].to_numpy()
    change = np.ones(len(table), dtype=bool)
    change[1:] = off[1:] != off[:-1]
    return [
        pd.Timestamp(t).tz_convert(dt.timezone(dt.timedelta(minutes=int(o)))).isoformat()
        for t, o in zip(table["t"][change], off[change])
    ]


def parse_changes(changes: list[str]) -> tuple[np.ndarray, np.ndarray, list[dt.timezone]]:
    """``cli.json``'s ``time_offsets`` as the changes' UTC instants and wall-clock times
    (naive datetime64[ns], both in time order) and their fixed zones."""
    stamps = [pd.Timestamp(c) for c in changes]
    zones = [dt.timezone(s.utcoffset() or dt.timedelta(0)) for s in stamps]
    utc = np.array([s.tz_convert("UTC").tz_localize(None).to_datetime64() for s in stamps])
    wall = np.array([s.tz_localize(None).to_datetime64() for s in stamps])
    return utc.astype("datetime64[ns]"), wall.astype("datetime64[ns]"), zones


def _shown(utc: np.ndarray, index: np.ndarray, zones: list[dt.timezone]) -> np.ndarray:
    """UTC instants (naive datetime64) as timestamps with the zone of ``index`` each."""
    out = np.empty(len(utc), dtype=object)
    for k, (t, i) in enumerate(zip(utc, index)):
        out[k] = pd.Timestamp(t).tz_localize("UTC").tz_convert(zones[i])
    return out


def hours_shown(utc: np.ndarray, changes: list[str]) -> np.ndarray:
    """Instants ``utc`` (naive datetime64, UTC) as timestamps with the offset the data used
    at each (the last change at or before it; the first offset before the first change)."""
    at, _, zones = parse_changes(changes)
    t = np.asarray(utc, dtype="datetime64[ns]")
    index = np.clip(np.searchsorted(at, t, side="right") - 1, 0, None)
    return _shown(t, index, zones)


def days_shown(wall: np.ndarray, changes: list[str]) -> np.ndarray:
    """Wall-clock times ``wall`` (naive datetime64 on the data's clock: whole days step on
    it, midnight stays midnight across a clock change) as timestamps with the offset the
    data used at each (the last change whose wall-clock time is at or before it)."""
    _, at, zones = parse_changes(changes)
    w = np.asarray(wall, dtype="datetime64[ns]")
    index = np.clip(np.searchsorted(at, w, side="right") - 1, 0, None)
    shifts = np.array([zones[i].utcoffset(None) for i in index], dtype="timedelta64[ns]")
    return _shown(w - shifts, index, zones)


def steps_shown(
    utc: np.ndarray, origin: np.datetime64, changes: list[str], calendar: bool = False
) -> np.ndarray:
    """Times ``utc`` (naive datetime64, UTC) that step on from ``origin`` (a time of the data,
    naive UTC: the first sampled time, a series' last time before its forecast) as
    timestamps on the data's clock, as ``sample``, ``forecast`` and ``backtest`` write them:
    times whole days after ``origin`` step whole days on the data's clock (midnight stays
    midnight across its clock change: :func:`days_shown`); other steps, and steps of a
    calendar (``calendar``: the grid of the UTC times), count in UTC, each time with the
    offset the data used then (:func:`hours_shown`)."""
    t = np.asarray(utc, dtype="datetime64[ns]")
    start = np.asarray(origin).astype("datetime64[ns]")
    ahead = t - start
    if calendar or (ahead % np.timedelta64(1, "D") != np.timedelta64(0, "ns")).any():
        return hours_shown(t, changes)
    wall = hours_shown(np.array([start]), changes)[0].tz_localize(None).to_datetime64()
    return days_shown(wall + ahead, changes)


def recorded_changes(changes: Any, column: pd.Series | None = None) -> list[str] | None:
    """``cli.json``'s ``time_offsets`` (``ColumnSpec.time_offsets``: the data's UTC offsets
    and when they change), checked,
    or None (times without offsets, or with one, or a folder written before they were kept:
    the dates then stay in the recorded zone, UTC for offsets that differ). ``column``: the
    time column of new data (forecast's, backtest's DATA), which the offsets are for when it
    is text (CSV) as fit's data was; None for dates with a zone of their own (Parquet)."""
    if changes is None:
        return None
    if column is not None and pd.api.types.is_datetime64_any_dtype(column.dtype):
        return None
    try:
        if not changes or not all(isinstance(c, str) for c in changes):
            raise ValueError
        parse_changes(changes)
    except (ValueError, TypeError) as err:
        raise CLIError(
            f"MODEL_DIR: malformed cli.json: time_offsets: expected ISO times with a UTC "
            f"offset, found {changes!r}"
        ) from err
    return changes
