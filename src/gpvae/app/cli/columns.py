"""Column layout of the command line's data files, and the way between tables and series.

Data files come in one of two layouts:

- **long**: one row per (series, time): an id column, a time column, feature columns;
- **wide**: one series: a time column and feature columns.

``gpvae fit`` records which columns are the time, the id and the features, and the time
step, as :class:`ColumnSpec` in ``cli.json`` in MODEL_DIR, so that the other commands read
files of the same layout without repeating the column options. This module also parses
time columns, turns a table into the model's :class:`~gpvae.data.SeriesSet` and merges
results back into the rows and columns of the table.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from gpvae.app.cli.errors import CLIError, info, one_line
from gpvae.app.cli.offsets import OFFSET, _minutes_of, hours_shown, offset_changes
from gpvae.version import __version__

if TYPE_CHECKING:
    from gpvae.data import SeriesSet

__all__ = [
    "CLI_FILE",
    "ColumnSpec",
    "as_durations",
    "check_columns",
    "check_site_times",
    "elapsed_axis",
    "merge_back",
    "parse_times",
    "record_times",
    "series_frame",
    "series_set",
    "spec_from_fit",
    "time_axis",
    "time_label",
    "times_as_written",
]

#: Name of the file in MODEL_DIR that records the data layout used at fit.
CLI_FILE = "cli.json"
_CLI_FORMAT = 1


@dataclass
class ColumnSpec:
    """Which columns of a data file hold what; stored as ``cli.json`` in MODEL_DIR.

    Attributes:
        time_col: the time column.
        id_col: the series id column of a long file, None for a wide file (one series).
        features: the feature columns, in the model's order.
        time_type: "datetime" (dates, converted by gpvae to hours), "duration" (elapsed
            times: ``47:59``, ``1 days 02:00:00`` or a Parquet duration column, read as
            numbers of hours; ``forecast`` and ``sample`` write their times back as
            durations, and fit names the lengthscales' unit hours) or "numeric". Folders
            written before durations were told apart say "numeric" for them, and keep
            numbers of hours in their outputs.
        time_step: median spacing of the training times, in the model's time units (hours
            for dates and durations), used by ``sample`` (and shown by ``forecast``).
        time_start: the earliest training time (ISO string for dates, a number otherwise:
            hours for durations).
        time_freq: the calendar frequency of dates on a calendar grid (months, business
            days, ...: the model then counts time in steps of it), else None.
        time_zone: the time zone of zone-aware dates (a Parquet column with a zone, or CSV
            text with a UTC offset: ``"UTC+01:00"``), whose clock ``sample`` writes its dates
            on; None otherwise (and in folders written before it was kept: the first date's
            UTC offset then stands for it). Written to ``cli.json`` only when set.
        time_offsets: for CSV text whose UTC offsets differ (a zone's clock changes; the
            times are then read in UTC and ``time_zone`` is ``"UTC"``), the first time and
            each time at which the offset changes, as ISO text with its offset
            (:func:`gpvae.app.cli.offsets.offset_changes`), with which ``sample`` writes its
            dates; None otherwise. Written to ``cli.json`` only when set.
        threshold: the anomaly threshold written by fits before the model stored its
            anomaly profile (a high quantile of the training data's per-step scores), which
            ``detect`` uses for such folders; None in folders written since (``detect``
            uses the profile's threshold).
        threshold_quantile: the quantile that gave ``threshold``.
        data_path: DATA's absolute path at fit: no command writes its OUT over it (``sample``,
            which reads no DATA, replaced the training file without a word). None in folders
            written before it was kept; written to ``cli.json`` only when set.
    """

    time_col: str
    id_col: str | None
    features: list[str]
    time_type: str = "numeric"
    time_step: float = 1.0
    time_start: str | float = 0.0
    time_freq: str | None = None
    time_zone: str | None = None
    time_offsets: list[str] | None = None
    threshold: float | None = None
    threshold_quantile: float | None = None
    data_path: str | None = None

    def save(self, model_dir: Path) -> None:
        """Write ``cli.json`` into ``model_dir``."""
        from gpvae.io import atomic_write_bytes

        data = {"format_version": _CLI_FORMAT, "gpvae_version": __version__, **asdict(self)}
        for key in ("time_zone", "time_offsets", "data_path"):  # left out when unset: such
            if data[key] is None:  # folders stay readable by versions before the key was kept
                del data[key]
        atomic_write_bytes(model_dir / CLI_FILE, (json.dumps(data, indent=2) + "\n").encode())

    @classmethod
    def load(cls, model_dir: Path) -> ColumnSpec:
        """Read ``cli.json`` from ``model_dir``."""
        path = model_dir / CLI_FILE
        if not path.is_file():
            raise CLIError(
                f"MODEL_DIR: expected {CLI_FILE} written by 'gpvae fit' in {str(model_dir)!r}, "
                "found none (fit the model with 'gpvae fit')"
            )
        try:
            data = json.loads(path.read_text())
            data.pop("gpvae_version", None)
            version = data.pop("format_version")
            if version != _CLI_FORMAT:
                raise CLIError(
                    f"MODEL_DIR: expected {CLI_FILE} format {_CLI_FORMAT}, found {version}"
                )
            return cls(**data)
        except (ValueError, KeyError, TypeError) as err:
            raise CLIError(f"MODEL_DIR: malformed {str(path)!r}: {err}") from err

    @property
    def columns(self) -> list[str]:
        """The id (if any), time and feature columns."""
        return ([self.id_col] if self.id_col is not None else []) + [
            self.time_col,
            *self.features,
        ]


def parse_times(frame: pd.DataFrame, time_col: str, what: str) -> pd.DataFrame:
    """Parse a text time column (e.g. dates in a CSV) into datetimes, in place of the column.

    Elapsed times, text without a date such as ``47:59`` (H:MM or HH:MM, optionally :SS:
    PhysioNet's time since admission) or pandas' ``1 days 02:00:00``, and a duration column
    (Parquet), become numbers of hours (``47:59`` is 47.983): they were read as clock times
    of the day the command ran, and failed past ``23:59``."""
    col = frame[time_col]
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return frame
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return frame
    hours = _elapsed_hours(col)
    if hours is not None:
        frame = frame.copy()
        frame[time_col] = hours
        return frame
    try:
        parsed = pd.to_datetime(col, format="ISO8601")
    except (ValueError, TypeError):
        parsed = _offset_times(col)
    if parsed is None:
        month_first, day_first = (_one_format(col, dayfirst) for dayfirst in (False, True))
        if month_first is not None and day_first is not None and not month_first.equals(day_first):
            warnings.warn(
                f"{what}: time column {time_col!r}: dates such as {col.dropna().iloc[0]!r} read "
                "both month-first and day-first; they were read month-first (MM/DD). Write ISO "
                "dates (YYYY-MM-DD) to be sure",
                UserWarning,
                stacklevel=2,
            )
        parsed = month_first if month_first is not None else day_first
        if parsed is None:  # no one format fits every value: each value read on its own
            try:
                parsed = pd.to_datetime(col, format="mixed")
            except (ValueError, TypeError) as err:
                if "ixed timezones" in str(err):  # pandas' advice (utc=True) is not ours
                    raise CLIError(
                        f"{what}: time column {time_col!r}: expected every time with a UTC "
                        f"offset (e.g. +01:00) or none with one, found both"
                    ) from err
                raise CLIError(
                    f"{what}: time column {time_col!r}: expected numbers or dates, found values "
                    f"such as {_unparsed(col)!r} ({one_line(str(err))})"
                ) from err
            if _day_first(col, time_col, what):  # read such dates again, day-first
                dmy = col.astype("string").str.extract(_NUMERIC_DMY)[0].notna()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # pandas' per-value advice
                    again = pd.to_datetime(col[dmy], format="mixed", dayfirst=True)
                parsed = parsed.copy()
                parsed[dmy] = again  # (ISO dates stay as read: dayfirst would swap them)
    frame = frame.copy()
    frame[time_col] = parsed
    return frame


#: Elapsed time without a date: hours (any number of digits), minutes, optional seconds.
_CLOCK = r"(\d+):([0-5]\d)(?::([0-5]\d(?:\.\d+)?))?"

#: pandas' text of a duration (``str(pd.Timedelta)``): ``1 days 02:00:00``, ``0 days``.
_DAYS = r"\d+ days?(?: \d\d:\d\d:\d\d(?:\.\d+)?)?"

_NS_PER_HOUR = 3.6e12


def _elapsed_hours(col: pd.Series) -> pd.Series | None:
    """A time column of durations (a timedelta column, or text of elapsed times: every
    value H:MM / HH:MM(:SS), or every value pandas' ``1 days 02:00:00``) as float hours,
    NaN where missing; None for any other column."""
    if pd.api.types.is_timedelta64_dtype(col.dtype):
        return col.astype("timedelta64[ns]").astype("int64").where(col.notna()) / _NS_PER_HOUR
    text = col.dropna()
    if text.empty or not all(isinstance(v, str) for v in text):
        return None
    text = text.str.strip()
    parts = text.str.fullmatch(_CLOCK)
    if parts.all():
        split = text.str.extract(f"^{_CLOCK}$").astype(float).fillna(0.0)
        hours = split[0] + split[1] / 60 + split[2] / 3600
    elif text.str.fullmatch(_DAYS).all():
        hours = pd.to_timedelta(text).astype("timedelta64[ns]").astype("int64") / _NS_PER_HOUR
    else:
        return None
    return hours.reindex(col.index).astype(np.float64)


def as_durations(hours: Any) -> pd.Series:
    """Times in hours (a model's, of a column of durations) as durations, to the nearest
    nanosecond (pandas' ``1 days 02:00:00`` in a CSV, a duration column in Parquet), as
    :func:`parse_times` reads them back; missing stays missing."""
    values = pd.Series(hours, dtype=np.float64)
    present = values.notna()
    ns = np.zeros(len(values), dtype=np.int64)
    ns[present.to_numpy()] = np.round(values[present].to_numpy() * _NS_PER_HOUR)
    out = pd.Series(ns.astype("timedelta64[ns]"), index=values.index)
    return out.where(present, pd.NaT)


#: How many of DATA's times a date format must write back exactly (:func:`times_as_written`).
_FORMAT_CHECKED = 200


def times_as_written(
    times: pd.Series, raw: pd.Series, changes: list[str] | None = None
) -> pd.Series | None:
    """New datetimes ``times`` (a forecast's) written as DATA's text time column ``raw``
    writes its dates (day-first ``29/07/2021``, ``2021-07-29T10:00:00+01:00``, ...), for
    OUT to keep DATA's form as impute's OUT does (it keeps DATA's own column); None when
    ``raw`` is not text, or no one format writes its first 200 dates back exactly from
    their parsed values (OUT then has pandas' ISO form). ``changes``: ``cli.json``'s
    ``time_offsets`` when ``raw``'s offsets differ (it is read in UTC); ``times`` are then
    timestamps each with its own offset (:func:`~gpvae.app.cli.offsets.steps_shown`), and
    DATA's times are compared on its clock (:func:`~gpvae.app.cli.offsets.hours_shown`)."""
    text = raw.dropna()
    if text.empty or not all(isinstance(v, str) for v in text.iloc[:_FORMAT_CHECKED]):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parse_times said its warnings for DATA already
        parsed = parse_times(raw.to_frame("t"), "t", "DATA")["t"]
        shown = text.iloc[:_FORMAT_CHECKED].str.strip()
        first = parsed.loc[shown.index]
        formats = [guess_datetime_format(shown.iloc[0], dayfirst=d) for d in (False, True)]
    if not pd.api.types.is_datetime64_any_dtype(parsed.dtype):
        return None
    if changes is not None:  # DATA's times with the offsets it wrote them with
        utc = first.dt.tz_convert("UTC").dt.tz_localize(None) if first.dt.tz else first
        first = pd.Series(hours_shown(utc.to_numpy(), changes), index=first.index)
    for fmt in dict.fromkeys(f for f in formats if f is not None):
        for colon in (True, False) if "%z" in fmt else (False,):
            if (_written(first, fmt, colon).to_numpy(object) == shown.to_numpy(object)).all():
                return _written(times, fmt, colon)
    return None


def _written(times: pd.Series, fmt: str, colon: bool) -> pd.Series:
    """``times`` as text in ``fmt``; ``colon``: the UTC offset as ``+01:00`` (``%z`` writes
    ``+0100``). Timestamps of differing offsets (an object column) each keep their own."""
    if times.dtype == object:
        out = times.map(lambda t: pd.Timestamp(t).strftime(fmt))
    else:
        out = pd.to_datetime(times).dt.strftime(fmt)
    return out.str.replace(r"([+-]\d\d)(\d\d)$", r"\1:\2", regex=True) if colon else out


def check_site_times(
    raw: pd.DataFrame, parsed: pd.DataFrame, id_col: str, time_col: str, what: str
) -> None:
    """Raise naming ``what`` when a site has two rows at one time (the times compared after
    parsing, ``parsed``), with the time as ``raw`` (DATA as read) writes it: the spatial
    commands (impute of a spatial model, predict-sites) give the one message, where the
    estimator's named the parsed time (``2013-03-01 07:00:00`` for ``2013-03-01 07:00``).
    Rows without an id or a time are left to the estimator's own checks."""
    if id_col not in parsed.columns or time_col not in parsed.columns:
        return  # the estimator names the missing column
    keys = parsed[[id_col, time_col]]
    known = keys.notna().all(axis=1).to_numpy()
    dup = np.zeros(len(keys), dtype=bool)
    dup[known] = keys[known].duplicated().to_numpy()
    if dup.any():
        row = int(np.argmax(dup))
        raise CLIError(
            f"{what}: expected one row per site and time, found site "
            f"{parsed[id_col].iloc[row]!r} twice at {raw[time_col].iloc[row]} in column "
            f"{time_col!r}"
        )


def _offset_times(col: pd.Series) -> pd.Series | None:
    """ISO times that all carry a UTC offset, the offsets differing (a zone's clock change:
    pandas writes Europe/Berlin times as +01:00 and then +02:00), as UTC times; None when
    some time has no offset (which would otherwise be read as UTC) or they do not parse."""
    text = col.dropna().astype(str)
    if text.empty or not text.str.contains(OFFSET).all():
        return None
    try:
        return pd.to_datetime(col, format="ISO8601", utc=True)
    except (ValueError, TypeError):
        return None


def _one_format(col: pd.Series, dayfirst: bool) -> pd.Series | None:
    """``col`` parsed with the one date format pandas infers from its first value (month-first
    or day-first where a date could be either), or None when some value does not fit it.

    One format for the whole column: read value by value, "01/03/2021" and "13/03/2021"
    would be 3 January and 13 March.
    """
    with warnings.catch_warnings(record=True) as caught:
        # recorded, not raised: pandas warns from compiled code too ("Parsing dates in
        # %d/%m/%Y format when dayfirst=False"), where a raised warning is printed with a
        # traceback ("Exception ignored in ...") and the parse goes on
        warnings.simplefilter("always")
        try:
            parsed = pd.to_datetime(col, dayfirst=dayfirst)
        except (ValueError, TypeError, OverflowError):
            return None
    # "Could not infer format" (and any other but the day-first note): not one format
    for w in caught:
        if issubclass(w.category, UserWarning) and not str(w.message).startswith(_DAYFIRST_NOTE):
            return None
    return parsed


#: The start of pandas' note that it read dates day-first (or month-first) against the
#: ``dayfirst`` asked for: the dates were read in one format, the one their values show.
_DAYFIRST_NOTE = "Parsing dates in"


#: A date written day and month first, in either order (``03/01/2021``, ``13.01.2021``).
_NUMERIC_DMY = r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-]\d{2,4}(?!\d)"


def _day_first(col: pd.Series, time_col: str, what: str) -> bool:
    """Whether the dates of a column that no one format reads (read value by value) that are
    written day and month first (``03/01/2021``) are day-first: decided for the whole column
    by the values whose first (or second) number is above 12, as one format would be.

    Refuses a column whose values say both (``13/01/2021`` and ``01/13/2021``), and one that
    mixes such dates, none above 12, with dates in other formats (ISO ``2021-01-02`` between
    ``01/01/2021`` and ``03/01/2021``, a spreadsheet's export: read value by value they were
    read month-first without a word, 3 January becoming 1 March). Other mixes read as they
    did (midnight without a time, seconds on some rows, ``Jan`` beside ``February``, ISO with
    and without times)."""
    text = col.dropna()
    if text.empty or not all(isinstance(v, str) for v in text):
        return False
    parts = text.str.extract(_NUMERIC_DMY)
    has = parts[0].notna()
    if not has.any():
        return False  # no date written day and month first: nothing to decide
    first, second = parts.loc[has, 0].astype(int), parts.loc[has, 1].astype(int)
    day, month = first > 12, second > 12
    rows = (
        " (rows counted from 0 after the header): write every date in one format, ISO "
        "YYYY-MM-DD to be sure"
    )
    if day.any() and month.any():
        a, b = day.idxmax(), month.idxmax()
        raise CLIError(
            f"{what}: time column {time_col!r}: expected dates with the day and month in one "
            f"order for the whole column, found {text[a]!r} (row {a}, day first) and "
            f"{text[b]!r} (row {b}, month first){rows}"
        )
    if not day.any() and not month.any() and not has.all():
        a, b = has.idxmax(), (~has).idxmax()
        raise CLIError(
            f"{what}: time column {time_col!r}: expected dates written in one format for the "
            f"whole column, found {text[a]!r} (row {a}), whose day and month could be in "
            f"either order, beside {text[b]!r} (row {b}) written otherwise{rows}"
        )
    return bool(day.any())


def _unparsed(col: pd.Series) -> object:
    """The first value of a time column that does not parse as a date (else the first)."""
    try:
        bad = col[pd.to_datetime(col, format="mixed", errors="coerce").isna() & col.notna()]
    except (ValueError, TypeError):
        return col.iloc[0]
    return bad.iloc[0] if len(bad) else col.iloc[0]


def check_columns(frame: pd.DataFrame, spec: ColumnSpec, what: str) -> None:
    """Raise naming the option when a column of ``spec`` is not in ``frame`` or is misused."""
    available = [str(c) for c in frame.columns]
    for option, col in (("--time-col", spec.time_col), ("--id-col", spec.id_col)):
        if col is not None and col not in available:
            raise CLIError(f"{option}: unknown column {col!r} in {what}; columns are {available}")
    for col in spec.features:
        if col not in available:
            raise CLIError(f"--features: unknown column {col!r} in {what}; columns are {available}")
        if col in (spec.time_col, spec.id_col):
            raise CLIError(f"--features: {col!r} is the time or id column, not a feature")
        _check_exact_feature(frame, col, what)
    if spec.id_col is not None and spec.id_col == spec.time_col:
        raise CLIError(f"--id-col: expected a column other than the time column {spec.time_col!r}")
    if spec.id_col is None:  # the data layer would take such a column as the series id
        from gpvae.data.frames import ID_NAMES

        named = [c for c in spec.features if c.lower() in ID_NAMES]
        if named:
            col = named[0]
            others = [f for f in spec.features if f != col]
            leave_out = (
                f"--features {','.join(others)} to leave it out"
                if others
                else "rename the column if it is a feature"
            )
            values = frame[col]
            if frame.shape[0] > 1 and values.notna().all() and values.is_unique:
                raise CLIError(
                    f"--id-col: expected --id-col for {what}'s column {col!r}, named like a "
                    f"series id (a long file: one row per series and time), found none; its "
                    f"{frame.shape[0]} rows have each their own value, so it looks like row "
                    f"numbers rather than series ids (as --id-col every row would be a series "
                    f"of its own): give {leave_out}"
                )
            raise CLIError(
                f"--id-col: expected --id-col for {what}'s column {col!r}, named like a "
                f"series id (a long file: one row per series and time), found none: give "
                f"--id-col {col}, or {leave_out}"
            )
    if not spec.features:
        raise CLIError(f"--features: expected at least one feature column in {what}, found none")


def _check_exact_feature(frame: pd.DataFrame, col: str, what: str) -> None:
    """Refuse as a feature a CSV column of whole numbers with empty cells that holds one
    beyond 2**53 (read as text, see :func:`gpvae.app.cli.tables.read_table`)."""
    from gpvae.app.cli.tables import inexact_whole_number

    found = inexact_whole_number(frame[col])
    if found is not None:
        row, value = found
        raise CLIError(
            f"--features: expected numbers that a float holds exactly in {what}'s column "
            f"{col!r}, found the whole number {value} (row {row}), beyond 2**53, in a column "
            "with empty cells: whole numbers beyond 2**53 with empty cells cannot be held "
            "exactly as floats (the column is read as text and written to OUT as it is); "
            "leave it out of --features, or fill its empty cells (whole numbers without any "
            "are read exactly)"
        )


def check_recorded_columns(frame: pd.DataFrame, spec: ColumnSpec, what: str) -> None:
    """Raise naming ``what`` when a column of the layout that fit recorded is not in
    ``frame`` (impute, forecast, detect, backtest take no --time-col, --id-col or --features;
    fit's own options are checked before, by :func:`spec_from_fit`)."""
    available = [str(c) for c in frame.columns]
    roles = [("time", spec.time_col), ("id", spec.id_col)]
    for role, col in [*roles, *(("feature", f) for f in spec.features)]:
        if col is not None and col not in available:
            raise CLIError(
                f"{what}: expected the {role} column {col!r} recorded by 'gpvae fit' in "
                f"MODEL_DIR/{CLI_FILE}, found columns {available}"
            )


#: Where the command line's feature columns come from (the other commands use fit's).
FEATURES_OPTION = "the features ('gpvae fit --features')"

#: The option of fit, forecast, backtest, impute and detect that merges the rows sharing a
#: time.
MERGE_OPTION = "--merge-duplicate-times"


def fitted_time_form(model: Any) -> tuple[str | None, str | None] | None:
    """How a fitted model (an ensemble: its first member) counted its data's times
    (:attr:`gpvae.data.Scaler.time_form_`); None for no model."""
    members = getattr(model, "members_", None)
    fitted = members[0] if members else model
    scaler = getattr(fitted, "scaler_", None)
    return None if scaler is None else scaler.time_form_


def series_set(
    frame: pd.DataFrame,
    spec: ColumnSpec,
    what: str,
    *,
    loose: bool = False,
    merge: bool | None = None,
    model: Any = None,
    id_option: bool = False,
) -> SeriesSet:
    """The model's view of a data file: validated series in the file's layout. ``loose``
    (impute, forecast, detect) accepts, as the estimator's predictions do, series of a
    single row and series with nothing observed. ``model``: the fitted model whose data
    DATA joins: its dates are read as the model's were (in hours, or in steps of its
    calendar), not as DATA's own would be inferred (a few rows, some of the series, or a
    model saved before a calendar was recognised).

    ``merge``: True merges the rows of a series that share a time into one (the mean of
    each feature, :func:`gpvae.data.merge_duplicate_times`) and says which rows it merged
    (a command that writes one row per row of DATA maps its results back with
    :func:`merged_rows`); False (the command has ``--merge-duplicate-times``, not given)
    and None (the command cannot merge) choose the advice of the error on repeated
    times. ``id_option``: the command has ``--id-col`` (fit); the other commands read the
    layout that fit recorded, so DATA that looks like several series stacked for a model
    of one series is advised a refit with ``--id-col`` (they have no such option)."""
    from gpvae.data import merge_duplicate_times, to_series_set
    from gpvae.data.convert import DUPLICATE_ADVICE, STACKED_WARNING
    from gpvae.data.frames import DEFAULT_FEATURE_ADVICE, LISTED_FEATURE_ADVICE
    from gpvae.errors import InputTypeError, ValidationError

    check_recorded_columns(frame, spec, what)
    check_columns(frame, spec, what)
    # Only the id, time and feature columns take part (no column-name guessing on the
    # rest); outputs re-attach the other columns (see merge_back).
    sub = parse_times(frame[spec.columns], spec.time_col, what)
    sub.columns = pd.Index([str(c) for c in sub.columns])
    if merge:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # reported below, in the CLI's words
            try:
                done = merge_duplicate_times(sub, id_col=spec.id_col, time_col=spec.time_col)
            except InputTypeError as err:  # a text value in a feature (no feature_cols there)
                message = str(err)
                if DEFAULT_FEATURE_ADVICE not in message:
                    raise
                advice = f"leave missing values empty, or leave the column out of {FEATURES_OPTION}"
                raise InputTypeError(message.replace(DEFAULT_FEATURE_ADVICE, advice)) from err
        if done.merged and spec.id_col is None:
            _warn_stacked(frame, sub, spec, what, id_option)
        sub = done.X
        _report_merged(done.merged, spec, what, frame[spec.time_col])
    rows = sub  # DATA's rows (before a merge), for the check of series stacked
    try:
        with warnings.catch_warnings():
            # said below in the command line's words, of DATA's other columns too
            warnings.filterwarnings("ignore", f".*{re.escape(STACKED_WARNING)}", UserWarning)
            data = to_series_set(
                sub,
                id_col=spec.id_col,
                time_col=spec.time_col,
                feature_cols=spec.features,
                name=what,
                allow_single_step=loose,
                allow_empty_series=loose,
                time_form=fitted_time_form(model),
            )
    except InputTypeError as err:  # a text value in a feature: the data layer's advice
        message = str(err)  # names its own argument, feature_cols
        if LISTED_FEATURE_ADVICE not in message:
            raise
        advice = f"leave missing values empty, or leave the column out of {FEATURES_OPTION}"
        raise InputTypeError(message.replace(LISTED_FEATURE_ADVICE, advice)) from err
    except ValidationError as err:
        message = str(err)
        if DUPLICATE_ADVICE not in message:
            raise
        if hasattr(err, "duplicate_time"):  # DATA's own text of the time (its UTC offset)
            message = _written_time(message, err.duplicate_time, frame, sub, spec)
        if hasattr(err, "id_column"):  # DATA looks like several series stacked
            message = _id_option(message, err.id_column, frame, sub, spec, id_option)
        elif spec.id_col is None:  # their id may be among DATA's other columns (text)
            message = _stacked_by_others(message, frame, rows, spec, what, id_option)
        advice = (
            f"({MERGE_OPTION} merges the rows of a series that share a time into one, the mean "
            "of each feature, and says which)"
            if merge is not None
            else "(this command writes one row per row of DATA: merge the rows that share a "
            "time in DATA first)"
        )
        raise ValidationError(message.replace(DUPLICATE_ADVICE, advice)) from err
    if spec.id_col is None and merge is not True:  # a merge has warned of stacked series
        _warn_stacked(frame, rows, spec, what, id_option, merged=False)
    return data


def _written_time(
    message: str,
    duplicate: tuple[str, Any],
    frame: pd.DataFrame,
    sub: pd.DataFrame,
    spec: ColumnSpec,
) -> str:
    """``message`` showing the repeated time as DATA wrote it (``2024-03-30T00:00:00+01:00``,
    not its UTC ``2024-03-29 23:00:00+00:00``; ``07:17``, not its hours
    ``7.283333333333333``) when DATA's times are text; ``duplicate``: the time as shown in
    ``message`` and as parsed (UTC for zone-aware dates, hours for elapsed times)."""
    shown, value = duplicate
    written, parsed = frame[spec.time_col], sub[spec.time_col]
    if not pd.api.types.is_string_dtype(written.dtype):
        return message
    if pd.api.types.is_datetime64_any_dtype(parsed.dtype):
        utc = parsed.dt.tz_convert("UTC").dt.tz_localize(None) if parsed.dt.tz else parsed
        rows = np.flatnonzero(utc.to_numpy() == np.datetime64(value))
    elif pd.api.types.is_float_dtype(parsed.dtype):  # elapsed times (07:17) as hours
        rows = np.flatnonzero(parsed.to_numpy() == float(value))
    else:
        return message
    if rows.size == 0 or len(sub) != len(frame):
        return message
    return message.replace(f"duplicate time {shown}", f"duplicate time {written.iloc[rows[0]]}")


def _warn_stacked(
    frame: pd.DataFrame,
    sub: pd.DataFrame,
    spec: ColumnSpec,
    what: str,
    id_option: bool,
    merged: bool = True,
) -> None:
    """Warn when a wide DATA looks like several series stacked: ``merged``, when
    ``--merge-duplicate-times`` merged its rows (the merge averages them into one series,
    :func:`gpvae.data.convert.stacked_series`); else when their times are never shared and
    it is read as one series (:func:`gpvae.data.convert.stacked_runs`). Any column of DATA
    but the time may be the id; ``sub``: DATA's id, time and feature columns, times parsed;
    ``id_option``: the command has ``--id-col`` (see :func:`series_set`)."""
    from gpvae.data._parse import pandas_times
    from gpvae.data.convert import stacked_runs, stacked_series

    times = pandas_times(sub[spec.time_col], what)
    if not merged and not (times[1:] < times[:-1]).any():
        return  # times in order: nothing stacked to find (no copy of DATA's columns made)
    others = _other_columns(frame, spec)
    if merged:
        stacked = stacked_series(others, times, set())
    else:
        found = stacked_runs(others, times, set())
        stacked = found and (
            f"each of the {found[1]} values of the column {found[0]!r} fills one run of rows, "
            "and the times go back only where it changes, as an id column does",
            found[0],
        )
    if not stacked:
        return
    why, col = stacked
    option = f"--id-col {'COLUMN' if col is None else col}"
    advice = f"name the id column with {option}" if id_option else _refit_advice(option)
    said = f"{what} looks like several series stacked ({why})"
    warnings.warn(
        f"{MERGE_OPTION}: {said}, which the merge averages into one series; if so, {advice} instead"
        if merged
        else f"{said}; it is read as one series: {advice}",
        UserWarning,
        stacklevel=2,
    )


def _other_columns(frame: pd.DataFrame, spec: ColumnSpec) -> pd.DataFrame:
    """DATA's columns but the time: those a stacked-series check may take for the id."""
    return frame.drop(columns=[c for c in frame.columns if str(c) == spec.time_col])


def _stacked_by_others(
    message: str,
    frame: pd.DataFrame,
    rows: pd.DataFrame,
    spec: ColumnSpec,
    what: str,
    id_option: bool,
) -> str:
    """The duplicate-times error on a wide DATA whose id, time and feature columns do not
    look like several series stacked, naming a column among DATA's others that does (a
    text id such as BeijingAir's 'station', no default feature, in a file sorted by time:
    the error offered only --merge-duplicate-times, which averages the stations into one
    series, and the merge then warned of the id); else ``message`` as it is."""
    from gpvae.data._parse import pandas_times
    from gpvae.data.convert import DUPLICATE_ADVICE, stacked_series

    times = pandas_times(rows[spec.time_col], what)
    others = _other_columns(frame, spec)
    stacked = stacked_series(others, times, set())
    if stacked is None or stacked[1] is None:
        return message
    why, col = stacked
    option = f"--id-col {col}"
    advice = f"name the id column with {option}" if id_option else _refit_advice(option)
    return message.replace(
        f" {DUPLICATE_ADVICE}",
        f": {what} looks like several series stacked ({why}): {advice}; if it is one series "
        f"whose rows share times, merge them {DUPLICATE_ADVICE}",
        1,
    )


def _refit_advice(option: str) -> str:
    """The advice, for a command that reads fit's layout (no ``--id-col``), on DATA that
    looks like several series stacked for a model of one series."""
    return (
        f"refit the model with 'gpvae fit ... {option}' (this command reads the layout "
        f"recorded by 'gpvae fit' in MODEL_DIR/{CLI_FILE}: one series, no id column), or give "
        "it one series (a wide file)"
    )


def _id_option(
    message: str,
    column: Any,
    frame: pd.DataFrame,
    sub: pd.DataFrame,
    spec: ColumnSpec,
    id_option: bool = True,
) -> str:
    """The duplicate-times error on DATA that looks like several series stacked, naming
    ``--id-col`` (the data layer names its argument ``id_col``) and the column that looks
    like their id: ``column``, found among the id, time and feature columns, else one of
    DATA's other columns (text ids are no default feature). ``id_option``: the command has
    ``--id-col`` (fit); the others are advised a refit with it (:func:`series_set`)."""
    from gpvae.data._parse import pandas_times
    from gpvae.data.convert import ID_ADVICE, ID_WHERE, stacked_series

    found = "..." if column is None else repr(column)
    if column is None:  # another column of DATA, by the times as parsed
        times = pandas_times(sub[spec.time_col], "DATA")
        others = _other_columns(frame, spec)
        stacked = stacked_series(others, times, set())
        if stacked is not None and stacked[1] is not None:
            column, why = stacked[1], f"stacked ({stacked[0]}): name the id"
            message = re.sub(r"stacked \(.*?\): name the id", lambda _: why, message, count=1)
    option = "--id-col COLUMN" if column is None else f"--id-col {column}"
    advice = f"name the id column with {option}" if id_option else _refit_advice(option)
    return message.replace(ID_ADVICE.format(col=found) + ID_WHERE, advice)


def merged_rows(frame: pd.DataFrame, spec: ColumnSpec, what: str) -> np.ndarray:
    """For every row of ``frame``, the row of the table that :func:`series_set` with
    ``merge=True`` builds from it: the number of its (series, time) group in the order of
    first appearance, the order in which :func:`gpvae.data.merge_duplicate_times` writes
    the merged rows (times compared after parsing, as there). ``result.iloc[rows]`` then
    gives a result of the merged table one row per row of ``frame``."""
    sub = parse_times(frame[spec.columns], spec.time_col, what)
    sub.columns = pd.Index([str(c) for c in sub.columns])
    keys = [k for k in (spec.id_col, spec.time_col) if k is not None]
    return sub.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()


def first_rows(rows: np.ndarray) -> np.ndarray:
    """The positions of the first row of every merged group (``rows`` from
    :func:`merged_rows`), in the order of the groups."""
    return np.unique(rows, return_index=True)[1]


def _report_merged(
    merged: list[dict[str, Any]], spec: ColumnSpec, what: str, written: pd.Series
) -> None:
    """Say which rows of ``what`` were merged (as :func:`gpvae.data.merge_duplicate_times`
    does in ``.merged``); ``written``: DATA's time column as read (text times are shown as
    written, ``07:17`` rather than its hours)."""
    if not merged:
        info(f"{MERGE_OPTION}: no rows of {what} share a time within a series; none merged")
        return
    rows = sum(len(m["rows"]) for m in merged)
    info(
        f"{MERGE_OPTION}: merged {rows} rows of {what} into {len(merged)} (same series and "
        "time; rows counted from 0 after the header):"
    )
    for m in merged[:_MERGED_SHOWN]:
        where = f"series {m['series']!r}, " if spec.id_col is not None else ""
        listed = ", ".join(str(r) for r in m["rows"])
        info(f"  rows {listed} ({where}time {_shown_time(m['time'], m['rows'], written)})")
    if len(merged) > _MERGED_SHOWN:
        info(f"  ... and {len(merged) - _MERGED_SHOWN} more groups")


#: How many merged groups ``--merge-duplicate-times`` lists.
_MERGED_SHOWN = 20


def _shown_time(value: object, rows: list[Any], written: pd.Series) -> str:
    """A merged group's time (``value``, as parsed) as DATA wrote it at its first row when
    DATA's times are text, else as parsed."""
    if pd.api.types.is_string_dtype(written.dtype) and rows and rows[0] in written.index:
        return str(written.loc[rows[0]])
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return str(pd.Timestamp(value))
    return str(value)


def check_no_clash(frame: pd.DataFrame, spec: ColumnSpec, added: list[str], what: str) -> None:
    """Refuse DATA with a column (other than a feature) named like one the command adds to
    OUT (``added``): it was replaced without a word (a label column named ``anomaly``
    came back holding detect's flags). Called before the work."""
    taken = {str(c) for c in frame.columns} - set(spec.features) - {spec.time_col, spec.id_col}
    clash = [c for c in added if c in taken]
    if clash:
        raise CLIError(
            f"{what}: expected no column named like the output's own {clash} (other columns "
            f"are carried through to OUT unchanged; these would be overwritten), found "
            f"{clash[0]!r}: rename or drop it"
        )


def merge_back(original: pd.DataFrame, result: pd.DataFrame, spec: ColumnSpec) -> pd.DataFrame:
    """The original rows and columns, with result columns replacing or added after them.

    The id and time columns are kept exactly as read (e.g. dates keep their text format).
    """
    out = original.copy()
    out.columns = pd.Index([str(c) for c in out.columns])
    res = result.set_axis(out.index, axis=0)
    res.columns = pd.Index([str(c) for c in res.columns])
    res = res[[c for c in res.columns if c not in (spec.time_col, spec.id_col)]]
    replaced = [c for c in res.columns if c in out.columns]
    for col in replaced:
        out[col] = res[col].to_numpy()
    added = res[[c for c in res.columns if c not in out.columns]]
    # in one step: a column at a time fragmented the frame (1,568 pandas warnings for 784
    # pixel features)
    return pd.concat([out, added], axis=1) if added.shape[1] else out


def spec_from_fit(
    frame: pd.DataFrame, time_col: str, id_col: str | None, features: str | None
) -> ColumnSpec:
    """The layout given to ``gpvae fit``: its column options checked against ``frame``
    (features: the comma-separated ``--features``, or every other numeric column)."""
    available = [str(c) for c in frame.columns]
    if time_col not in available:
        raise CLIError(f"--time-col: unknown column {time_col!r} in DATA; columns are {available}")
    if id_col is not None and id_col not in available:
        raise CLIError(f"--id-col: unknown column {id_col!r} in DATA; columns are {available}")
    if features is None:
        feats = [c for c in available if c not in (time_col, id_col)]
        # an empty column that pandas named for an empty header cell (a delimiter ending
        # every line) is not a feature
        feats = [c for c in feats if not (c.startswith("Unnamed: ") and frame[c].isna().all())]
        feats = [c for c in feats if not _row_numbers(frame, c)]
        numeric = [c for c in feats if pd.api.types.is_numeric_dtype(frame[c].dtype)]
        for c in feats:
            if c not in numeric:
                _check_exact_feature(frame, c, "DATA")
                _check_not_mostly_numeric(frame[c], c)
        if not numeric:
            raise CLIError(
                f"--features: expected numeric feature columns in DATA, found none among {feats}"
            )
        feats = numeric
    else:
        feats = [f.strip() for f in features.split(",") if f.strip()]
        if len(set(feats)) != len(feats):
            raise CLIError(f"--features: expected distinct column names, found {features!r}")
    spec = ColumnSpec(time_col=time_col, id_col=id_col, features=feats)
    check_columns(frame, spec, "DATA")
    return spec


def _row_numbers(frame: pd.DataFrame, col: str) -> bool:
    """Whether ``col`` is the row numbers that ``df.to_csv()`` writes as its first column,
    without a name (pandas reads it as ``Unnamed: 0``): distinct whole numbers, none
    missing. Such a column is not a default feature (a Parquet file's unnamed row numbers
    are dropped on reading, :func:`gpvae.data.parquet.plain_index`); saying so."""
    values = frame[col]
    if col != "Unnamed: 0" or str(frame.columns[0]) != col:
        return False
    if not pd.api.types.is_integer_dtype(values.dtype) or not values.is_unique:
        return False
    info(
        f"--features: column {col!r} of DATA (unnamed, holding distinct whole numbers: the "
        "row numbers that df.to_csv() writes) is not taken as a feature (list it in "
        "--features to fit it); it is carried to OUT as it is"
    )
    return True


#: Cell texts read as a written-out missing value by the check of the default features.
MISSING_WORDS = frozenset({"na", "n.a.", "n/a", "nan", "null", "none", "missing", "-", "?"})


def _check_not_mostly_numeric(col: pd.Series, name: str) -> None:
    """Raise for a text column whose values are mostly numbers: a numeric feature with a
    stray entry (e.g. "n.a."), which would otherwise be left out of the default features
    (no --features given: the error names DATA, not the option)."""
    present = col.dropna()
    if present.empty or pd.api.types.is_datetime64_any_dtype(col.dtype):
        return
    text = present.astype(str).str.strip()
    parsed = pd.to_numeric(text, errors="coerce")
    comma = text.str.fullmatch(r"[-+]?\d+,\d+")  # "0,969": a decimal comma
    if comma.mean() >= 0.5:
        raise CLIError(
            f"DATA: expected numeric values in column {name!r}, found numbers written "
            f"with a decimal comma such as {present[comma].iloc[0]!r}: write them with a "
            "decimal point, or leave the column out with --features"
        )
    truth = text.str.lower().isin(("true", "false"))  # a 0/1 column with an empty cell
    # a written-out missing value ("n.a.") counts with the numbers: a column of them and
    # empty cells is a numeric feature with nothing observed, not a text column
    numberish = parsed.notna() | text.str.lower().isin(MISSING_WORDS) | truth
    if truth.all():
        raise CLIError(
            f"DATA: expected numeric values in column {name!r}, found True/False with "
            "empty cells (read as text): write them as 1/0, or leave the column out with "
            "--features"
        )
    if numberish.mean() >= 0.5:
        bad = present[parsed.isna()]
        raise CLIError(
            f"DATA: expected numeric values in column {name!r}, found mostly numbers "
            f"and {len(bad)} other value(s) such as {bad.iloc[0]!r} (row {bad.index[0]}); "
            "leave missing values empty, or list the feature columns with --features"
        )


def _zone_name(tz: Any) -> str | None:
    """A time zone's name that pandas reads back (``"Europe/Berlin"``, ``"UTC+01:00"``),
    None for none or a zone pandas cannot read back by name."""
    if tz is None:
        return None
    name = str(tz)
    try:
        pd.Timestamp(0, tz="UTC").tz_convert(name)
    except (ValueError, TypeError, KeyError):
        return None
    return name


def record_times(spec: ColumnSpec, frame: pd.DataFrame, series: SeriesSet) -> None:
    """Record in ``spec`` the training data's time type, first time and median time step
    (in the model's time units), which ``gpvae sample`` uses to lay out new series."""
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported by fit
        steps = np.concatenate([np.diff(t) for t in series.times])
    spec.time_step = float(np.median(steps)) if steps.size else 1.0
    spec.time_freq = series.layout.freq
    spec.time_zone = _zone_name(series.layout.tz)
    time_col = spec.time_col
    ids = frame[spec.id_col] if spec.id_col is not None else None
    spec.time_offsets = offset_changes(frame[time_col], ids)
    tcol = parse_times(frame[[time_col]], time_col, "DATA")[time_col]
    if pd.api.types.is_datetime64_any_dtype(tcol.dtype):
        spec.time_type = "datetime"
        spec.time_start = pd.Timestamp(tcol.min()).isoformat()
    elif pd.api.types.is_numeric_dtype(tcol.dtype):
        spec.time_type = "duration" if _elapsed_hours(frame[time_col]) is not None else "numeric"
        spec.time_start = float(tcol.min())
    else:
        raise CLIError(f"--time-col: expected numbers or dates in {time_col!r}, found {tcol.dtype}")


def series_frame(frame: pd.DataFrame, spec: ColumnSpec, series: str | None) -> pd.DataFrame:
    """The rows of one series (for plots): ``series`` or the first id in the file."""
    if spec.id_col is None:
        return frame
    ids = frame[spec.id_col]
    if series is None:
        return frame[ids == ids.iloc[0]]
    mask = ids.astype(str) == str(series)
    if not mask.any():
        raise CLIError(f"--series: unknown id {series!r}; ids are e.g. {list(ids.unique()[:5])}")
    return frame[mask]


def time_axis(col: pd.Series, written: pd.Series | None = None) -> np.ndarray:
    """A time column as a plot axis: datetime64[ns] (time zone dropped) or float64.

    ``written``: the same rows' times as DATA wrote them, in the same order, to draw each
    time on the data's own clock as the CSV outputs keep it: text whose every time ends with
    a UTC offset (``2021-03-28T00:00:00+01:00``, then ``+02:00``; :func:`parse_times` reads
    differing offsets in UTC) is drawn in the wall clock of its own offset. Without
    ``written`` (or for other times) the zone's wall clock, UTC for such text: sort by
    that axis, the wall clock of a clock change going back repeats an hour."""
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        dated = pd.to_datetime(col)
        wall = np.asarray(dated.dt.tz_localize(None), dtype="datetime64[ns]")
        if written is None or dated.dt.tz is None or len(written) != len(col):
            return wall
        text = written.astype("string")
        present = text.notna().to_numpy()
        if pd.api.types.is_datetime64_any_dtype(written.dtype) or not present.any():
            return wall
        if not text[present].str.contains(OFFSET).all():
            return wall
        utc = np.asarray(dated.dt.tz_convert("UTC").dt.tz_localize(None), dtype="datetime64[ns]")
        minutes = np.zeros(len(text), dtype=np.int64)
        minutes[present] = [_minutes_of(str(v)) for v in text[present]]
        return utc + minutes.astype("timedelta64[m]").astype("timedelta64[ns]")
    return np.asarray(col, dtype=np.float64)


def time_label(spec: ColumnSpec) -> str:
    """The plots' time axis label: the time column's name, with its unit for a column of
    durations, which the plots draw as numbers of hours."""
    return f"{spec.time_col} (hours)" if spec.time_type == "duration" else spec.time_col


def elapsed_axis(col: pd.Series) -> np.ndarray | None:
    """A zone-aware time column's times in UTC (datetime64[ns]): elapsed time, in which a
    plot finds the gaps of a series whose :func:`time_axis` is a wall clock (15-minute
    steps from 01:45 to 03:00 when the clocks go forward are no gap); None for other
    columns, whose axis is elapsed time already."""
    if not isinstance(col.dtype, pd.DatetimeTZDtype):
        return None
    return np.asarray(col.dt.tz_convert("UTC").dt.tz_localize(None), dtype="datetime64[ns]")
