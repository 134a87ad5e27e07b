"""Files of the command line: reading and writing tables (CSV or Parquet, chosen by
extension), checking output and plot paths before any work is done, and saving figures.

Every failure raises :class:`~gpvae.app.cli.errors.CLIError` naming the argument or option
(``DATA``, ``OUT``, ``--plot``).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpvae.app.cli.errors import CLIError, info, one_line
from gpvae.app.cli.options import PLOT_FORMATS, PLOT_SUFFIXES
from gpvae.data.parquet import plain_index

__all__ = [
    "PLOT_FORMATS",
    "check_output",
    "check_parquet_engine",
    "check_plot",
    "file_format",
    "inexact_whole_number",
    "make_folder",
    "panels_drawn",
    "read_table",
    "save_figure",
    "write_table",
]

_CSV = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz")
_PARQUET = (".parquet", ".pq")
_PLOT = PLOT_SUFFIXES


def file_format(path: Path, what: str) -> str:
    """``"csv"`` or ``"parquet"`` by the extension of ``path``, or an error naming ``what``."""
    name = path.name.lower()
    if name.endswith(_CSV):
        return "csv"
    if name.endswith(_PARQUET):
        return "parquet"
    raise CLIError(
        f"{what}: expected a .csv or .parquet file, found {str(path)!r} (unknown extension "
        f"{path.suffix or 'none'!r})"
    )


def read_table(
    path: str | os.PathLike[str], what: str = "DATA", text_col: str | None = None
) -> pd.DataFrame:
    """Read a CSV or Parquet file (by extension) into a DataFrame.

    Args:
        path: the file.
        what: the argument name for error messages.
        text_col: a CSV column read as the text written (an id column: ``001`` stays
            ``001``, not 1, and ``NA`` is an id, not a missing one); only an empty cell
            is missing there.

    Returns:
        The table, with the file's columns and a plain 0..n-1 index (an index that pandas
        stored in a Parquet file, such as a ``date`` index, is a column, as in the same
        frame written to CSV).

    Raises:
        click.ClickException: unknown extension, missing or unreadable file, no rows.
    """
    p = Path(path)
    fmt = file_format(p, what)
    if not p.exists():
        raise CLIError(f"{what}: file not found: {str(p)!r}")
    if p.is_dir():
        raise CLIError(f"{what}: expected a file, found the directory {str(p)!r}")
    try:
        frame = _read_csv(p, text_col) if fmt == "csv" else plain_index(pd.read_parquet(p))
    except pd.errors.ParserWarning as err:
        _check_header(p, what)  # a file separated by semicolons, say
        raise CLIError(
            f"{what}: expected at most as many fields per row as the header of {str(p)!r} has "
            "columns, found rows with more (check the delimiter and the quoting)"
        ) from err
    except Exception as err:  # pandas/pyarrow raise many types for unreadable files
        if fmt == "csv":  # a file separated by semicolons with decimal commas, say: its
            _check_header(p, what)  # rows have more comma-separated fields than its header
        raise CLIError(
            f"{what}: could not read {str(p)!r} as {fmt.upper()}: {one_line(str(err))}"
        ) from err
    if frame.shape[0] == 0:
        raise CLIError(f"{what}: expected at least one row, found none in {str(p)!r}")
    if fmt == "csv":
        _check_header(p, what)
        frame = _keep_whole_numbers(frame, p)
    return frame


#: The whole numbers beyond which a float64 no longer holds every one (2**53).
_EXACT_LIMIT = 2.0**53


def _keep_whole_numbers(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``frame`` with a CSV column that pandas read as floats (a column of whole numbers
    with empty cells) in which a whole number beyond 2**53 lost digits
    (``9007199254740993`` read as ``9007199254740992.0``) read as its text instead, empty
    cells missing: OUT writes it back as DATA wrote it (a column that no command uses, a
    code or an id), and the feature checks refuse it as a feature
    (:func:`inexact_whole_number`). A column of whole numbers without empty cells is read
    as integers, exactly."""
    floats = frame.select_dtypes(include="float64")
    big = [c for c in floats.columns if (floats[c].abs() >= _EXACT_LIMIT).any()]
    if not big:
        return frame
    try:  # the columns as written
        text = pd.read_csv(path, index_col=False, dtype=str, keep_default_na=False)[big]
    except (ValueError, KeyError, pd.errors.ParserError):
        return frame
    for col in big:
        rows = np.flatnonzero((floats[col].abs() >= _EXACT_LIMIT).to_numpy())
        written = text[col].astype(str).str.strip()
        if any(
            re.fullmatch(r"[+-]?\d+", written.iloc[row])
            and int(written.iloc[row]) != int(floats[col].iloc[row])
            for row in rows
        ):
            frame = frame.copy()
            frame[col] = text[col].astype(object).where(floats[col].notna().to_numpy(), np.nan)
    return frame


def inexact_whole_number(column: pd.Series) -> tuple[int, str] | None:
    """(row, text) of the first whole number beyond 2**53 in a column that
    :func:`read_table` read as text because a float cannot hold it exactly (a CSV column of
    whole numbers with empty cells), or None for any other column."""
    if column.dtype != object:
        return None
    present = column.dropna()
    if present.empty or not all(isinstance(v, str) for v in present):
        return None
    written = present.astype(str).str.strip()
    if not written.str.fullmatch(r"[+-]?\d+").all():
        return None
    for row, value in written.items():
        if abs(int(value)) >= _EXACT_LIMIT and float(int(value)) != int(value):
            return int(np.flatnonzero(column.index == row)[0]), value
    return None


def _check_header(path: Path, what: str) -> None:
    """Refuse a CSV header that pandas reads into something else than it says: a repeated
    name (pandas renames the second ``x`` to ``x.1``), or one column whose name holds
    semicolons or tabs (a file separated by them, read as one column)."""
    try:  # the header row as written (pandas decompresses .csv.gz and the like)
        first = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError):
        return
    header = [str(v) for v in first.iloc[0].tolist()] if len(first) else []
    seen = [name for i, name in enumerate(header) if name in header[:i] and name != ""]
    if seen:
        raise CLIError(
            f"{what}: expected distinct column names in the header of {str(path)!r}, found "
            f"{seen[0]!r} more than once"
        )
    if len(header) == 1:
        name = header[0]
        for sep, label, code in ((";", "semicolons", ";"), ("\t", "tabs", "\\t")):
            if sep in name:
                raise CLIError(
                    f"{what}: expected comma-separated columns, found one column named "
                    f"{name[:60]!r} in {str(path)!r}: the file looks separated by {label}; "
                    "write it with commas and '.' as the decimal point (the command reads no "
                    "other form), e.g. in Python: pd.read_csv(FILE, sep="
                    f"'{code}'{_decimal_comma(path, sep)}).to_csv(NEW_FILE, index=False)"
                )


def _decimal_comma(path: Path, sep: str) -> str:
    """``", decimal=','"`` when the first rows of a file separated by ``sep`` hold numbers
    written with a decimal comma (``0,97``), else ``""``: the conversion's pandas options."""
    try:
        rows = pd.read_csv(path, sep=sep, nrows=100, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError):
        return ""
    cells = pd.Series(rows.to_numpy().ravel(), dtype=object).astype(str).str.strip()
    return ", decimal=','" if cells.str.fullmatch(r"[-+]?\d+,\d+").any() else ""


#: The cells pandas reads as missing by default (its ``na_values``), for the other columns
#: when one column is read as text.
_MISSING_MARKERS = (
    *("", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "NULL", "null", "None", "<NA>"),
    *("#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN"),
)


def _read_csv(path: Path, text_col: str | None = None) -> pd.DataFrame:
    """A CSV file whose columns are exactly its header's (``text_col``: see read_table).

    pandas would silently turn extra leading fields into an index (shifting every value to
    the wrong column, e.g. for rows with one field more than the header); here a trailing
    delimiter on every line is ignored, and rows with more fields than the header raise.
    """
    options: dict[str, Any] = {}
    if text_col is not None:
        header = [str(c) for c in pd.read_csv(path, nrows=0, index_col=False).columns]
        if text_col in header:  # (an unknown column is reported by the command)
            na = {c: [""] if c == text_col else list(_MISSING_MARKERS) for c in header}
            options = {"dtype": {text_col: str}, "keep_default_na": False, "na_values": na}
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return pd.read_csv(path, index_col=False, **options)


def check_output(path: str | os.PathLike[str], what: str = "OUT") -> Path:
    """Check an output path before any work is done: its extension, that it is not a
    folder, its folder (created when missing) and, for a Parquet file, that pandas has a
    Parquet engine (:func:`check_parquet_engine`)."""
    p = Path(path)
    fmt = file_format(p, what)
    if p.is_dir():
        raise CLIError(f"{what}: expected a file name, found the directory {str(p)!r}")
    make_folder(p.parent, what)  # now, not when the results are written after the work
    if fmt == "parquet":
        check_parquet_engine(what, "a Parquet file")
    return p


def check_parquet_engine(what: str, written: str) -> None:
    """Raise naming ``what`` when pandas has no Parquet engine to write ``written`` (``"a
    Parquet file"``) with: pyarrow or fastparquet, as ``DataFrame.to_parquet`` looks for
    them. Checked before the work: :func:`write_table` failed only after it."""
    try:
        from pandas.io.parquet import get_engine
    except ImportError:  # (another pandas) write_table says it, after the work
        return
    try:
        get_engine("auto")
    except ImportError as err:
        raise CLIError(
            f"{what}: writing {written} needs pyarrow or fastparquet, neither of which "
            f"imports ({one_line(str(err))}): install pyarrow (pip install pyarrow), or "
            f"give {what} a .csv file name"
        ) from err


def make_folder(path: Path, what: str) -> None:
    """Create the folder ``path`` (and its parents), or raise naming ``what``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # mkdir's "File exists" said nothing here
        raise CLIError(
            f"{what}: expected a folder that can be created, found {str(path)!r} (a file of "
            "that name, or of one of its parent folders, is in the way)"
        ) from None
    except OSError as err:
        raise CLIError(
            f"{what}: expected a folder that can be created, found {str(path)!r} "
            f"({err.strerror or err})"
        ) from None


def warn_plot_only(option: str, given: object, plot: Path | None, chooses: str, done: str) -> None:
    """Warn before any work that ``option`` (given: not None) is ignored without ``--plot``
    (``plot`` None): it ``chooses`` what ``--plot`` draws, and ``done`` says what the command
    does instead (a user could read the option as a filter)."""
    if given is None or plot is not None:
        return
    warnings.warn(
        f"{option}: expected with --plot (it chooses {chooses}), found no --plot; it is "
        f"ignored: {done}",
        UserWarning,
        stacklevel=3,
    )


def check_plot(path: str | None, what: str = "--plot") -> Path | None:
    """Check a ``--plot`` file name before any work (None: no plot): its extension, that it
    is not a folder, and its folder, created when missing (it failed only when the figure
    was written, after all the work), and that matplotlib imports; ``what`` names the
    option."""
    if path is None:
        return None
    p = Path(path)
    if p.suffix.lower() not in _PLOT:
        raise CLIError(f"{what}: expected a {PLOT_FORMATS} file name, found {str(p)!r}")
    if p.is_dir():
        raise CLIError(f"{what}: expected a file name, found the directory {str(p)!r}")
    make_folder(p.parent, what)
    if not os.access(p.parent, os.W_OK):
        raise CLIError(
            f"{what}: expected a file in a folder that can be written, found {str(p)!r} (the "
            f"folder {str(p.parent)!r} is read-only)"
        )
    try:  # what the plots are drawn with: it failed after the work, the table written
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as err:
        raise CLIError(
            f"{what}: drawing the plot needs matplotlib, which does not import "
            f"({one_line(str(err))}): install matplotlib (pip install matplotlib), or leave "
            f"out {what}"
        ) from err
    return p


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str], what: str = "OUT") -> None:
    """Write a DataFrame as CSV or Parquet (by extension), creating the folder if needed.

    Args:
        frame: the table (its index is not written).
        path: the file.
        what: the argument name for error messages.
    """
    p = Path(path)
    fmt = file_format(p, what)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            frame.to_csv(p, index=False)
        else:
            frame.to_parquet(p, index=False)
    except OSError as err:
        raise CLIError(f"{what}: could not write {str(p)!r}: {err.strerror or err}") from err
    except ImportError as err:  # no Parquet engine installed
        raise CLIError(f"{what}: could not write {str(p)!r}: {one_line(str(err))}") from err


def panels_drawn(count: int, most: int, noun: str, what: str = "--plot") -> int:
    """How many of ``count`` features (or origins, ...: ``noun``) a plot draws, one panel
    each: the first ``most``, saying so when some are left out (a figure of more panels is
    unreadable, and the plot functions refuse it)."""
    if count > most:
        info(f"{what}: drawing the first {most} of the {count} {noun} (one panel each)")
    return min(count, most)


def save_figure(fig: Any, path: Path, what: str = "--plot") -> None:
    """Write a matplotlib figure to ``path`` (the file of the option ``what``) and say so."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    except OSError as err:
        raise CLIError(f"{what}: could not write {str(path)!r}: {err.strerror or err}") from err
    info(f"wrote plot {path}")
