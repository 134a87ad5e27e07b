"""The ``gpvae`` command line: demo, fit, impute, forecast, detect, sample.

Data files are CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``), chosen by
extension, in one of two layouts:

- **long**: one row per (series, time): an id column, a time column, feature columns;
- **wide**: one series: a time column and feature columns.

``gpvae fit`` writes the model and ``cli.json`` (which columns are the time, the id and the
features, and the time step) into MODEL_DIR, so that the other commands read files of the
same layout without repeating the column options. Every error (missing or unreadable file,
unknown column, bad option, bad data) ends the command with exit code 1 (2 for usage errors)
and one line ``error: ...`` on stderr; the global ``--debug`` option shows the traceback.

Run ``gpvae --help`` or ``gpvae COMMAND --help``; docs/cli.md has worked examples.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import numpy as np
import pandas as pd

from gpvae import __version__
from gpvae.errors import GPVAEError

if TYPE_CHECKING:
    from gpvae.data import SeriesSet
    from gpvae.estimator import GPVAE

__all__ = ["CLI_FILE", "ColumnSpec", "main", "read_table", "write_table"]

#: Name of the file in MODEL_DIR that records the data layout used at fit.
CLI_FILE = "cli.json"
_CLI_FORMAT = 1
_CSV = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz")
_PARQUET = (".parquet", ".pq")
_F = TypeVar("_F", bound=Callable[..., Any])


# ---------------------------------------------------------------- errors and output


class CLIError(click.ClickException):
    """A user error found by the command line itself (exit code 1)."""


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


#: The estimator's argument names -> the command line's, for errors raised by the estimator.
_CLI_NAMES = {
    "X": "DATA",
    "times": "DATA",
    "resume": "--resume",
    "horizon": "--horizon",
    "num_samples": "--num-samples",
}


def _cli_message(message: str, default: str, names: dict[str, str] | None = None) -> str:
    """An estimator error message with the argument it names replaced by the command line's
    (``X[3]: ...`` -> ``DATA: ... (series 3)``); other messages are prefixed by ``default``."""
    names = {**_CLI_NAMES, **(names or {})}
    match = re.match(r"([A-Za-z_]\w*(?:, [A-Za-z_]\w*)*)(\[[^\]]*\])?: (.*)", message, re.S)
    args = [] if match is None else match.group(1).split(", ")
    if match is None or not all(a in names for a in args):
        return f"{default}: {message}"
    _, index, rest = match.groups()
    shown = ", ".join(dict.fromkeys(names[a] for a in args))  # "num_samples, horizon"
    if index is not None and not index[1:-1].isdigit():  # a column: DATA['t']
        return f"{shown}{index}: {rest}"
    where = f" (series {index[1:-1]})" if index else ""
    return f"{shown}: {rest}{where}"


@contextlib.contextmanager
def _as_cli(default: str, names: dict[str, str] | None = None) -> Iterator[None]:
    """Re-raise a GPVAEError from the estimator as one naming the command line's argument or
    option (the estimator names its own arguments, X, times, ...; ``names`` adds to
    :data:`_CLI_NAMES`)."""
    try:
        yield
    except GPVAEError as err:
        raise CLIError(_cli_message(_one_line(str(err)), default, names)) from err


def _info(message: str) -> None:
    click.echo(message)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Print warnings as one line ``warning: ...`` on stderr (no source excerpt)."""
    click.echo(f"warning: {_one_line(str(message))}", err=True)


# ---------------------------------------------------------------- files


def _file_format(path: Path, what: str) -> str:
    name = path.name.lower()
    if name.endswith(_CSV):
        return "csv"
    if name.endswith(_PARQUET):
        return "parquet"
    raise CLIError(
        f"{what}: expected a .csv or .parquet file, found {str(path)!r} (unknown extension "
        f"{path.suffix or 'none'!r})"
    )


def read_table(path: str | os.PathLike[str], what: str = "DATA") -> pd.DataFrame:
    """Read a CSV or Parquet file (by extension) into a DataFrame.

    Args:
        path: the file.
        what: the argument name for error messages.

    Returns:
        The table, with the file's columns.

    Raises:
        click.ClickException: unknown extension, missing or unreadable file, no rows.
    """
    p = Path(path)
    fmt = _file_format(p, what)
    if not p.exists():
        raise CLIError(f"{what}: file not found: {str(p)!r}")
    if p.is_dir():
        raise CLIError(f"{what}: expected a file, found the directory {str(p)!r}")
    try:
        frame = _read_csv(p) if fmt == "csv" else pd.read_parquet(p)
    except pd.errors.ParserWarning as err:
        raise CLIError(
            f"{what}: expected at most as many fields per row as the header of {str(p)!r} has "
            "columns, found rows with more (check the delimiter and the quoting)"
        ) from err
    except Exception as err:  # pandas/pyarrow raise many types for unreadable files
        raise CLIError(
            f"{what}: could not read {str(p)!r} as {fmt.upper()}: {_one_line(str(err))}"
        ) from err
    if frame.shape[0] == 0:
        raise CLIError(f"{what}: expected at least one row, found none in {str(p)!r}")
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV file whose columns are exactly its header's.

    pandas would silently turn extra leading fields into an index (shifting every value to
    the wrong column, e.g. for rows with one field more than the header); here a trailing
    delimiter on every line is ignored, and rows with more fields than the header raise.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return pd.read_csv(path, index_col=False)


def _check_output(path: str | os.PathLike[str], what: str = "OUT") -> Path:
    """Check an output path's extension (before any work is done) and make its folder."""
    p = Path(path)
    _file_format(p, what)
    if p.is_dir():
        raise CLIError(f"{what}: expected a file name, found the directory {str(p)!r}")
    return p


def _check_plot(path: str | None) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if p.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        raise CLIError(f"--plot: expected a .png, .pdf, .svg or .jpg file name, found {str(p)!r}")
    return p


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str], what: str = "OUT") -> None:
    """Write a DataFrame as CSV or Parquet (by extension), creating the folder if needed.

    Args:
        frame: the table (its index is not written).
        path: the file.
        what: the argument name for error messages.
    """
    p = Path(path)
    fmt = _file_format(p, what)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            frame.to_csv(p, index=False)
        else:
            frame.to_parquet(p, index=False)
    except OSError as err:
        raise CLIError(f"{what}: could not write {str(p)!r}: {err.strerror or err}") from err
    except ImportError as err:  # no Parquet engine installed
        raise CLIError(f"{what}: could not write {str(p)!r}: {_one_line(str(err))}") from err


def _save_figure(fig: Any, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    except OSError as err:
        raise CLIError(f"--plot: could not write {str(path)!r}: {err.strerror or err}") from err
    _info(f"wrote plot {path}")


# ---------------------------------------------------------------- column layout


@dataclass
class ColumnSpec:
    """Which columns of a data file hold what; stored as ``cli.json`` in MODEL_DIR.

    Attributes:
        time_col: the time column.
        id_col: the series id column of a long file, None for a wide file (one series).
        features: the feature columns, in the model's order.
        time_type: "datetime" (dates, converted by gpvae to hours) or "numeric".
        time_step: median spacing of the training times, in the model's time units (hours
            for dates), used by ``sample`` (and shown by ``forecast``).
        time_start: the earliest training time (ISO string for dates, a number otherwise).
        threshold: default anomaly threshold for ``detect`` (a high quantile of the
            training data's per-step scores), or None.
        threshold_quantile: the quantile that gave ``threshold``.
    """

    time_col: str
    id_col: str | None
    features: list[str]
    time_type: str = "numeric"
    time_step: float = 1.0
    time_start: str | float = 0.0
    threshold: float | None = None
    threshold_quantile: float | None = None

    def save(self, model_dir: Path) -> None:
        """Write ``cli.json`` into ``model_dir``."""
        from gpvae.io import atomic_write_bytes

        data = {"format_version": _CLI_FORMAT, "gpvae_version": __version__, **asdict(self)}
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


def _parse_times(frame: pd.DataFrame, time_col: str, what: str) -> pd.DataFrame:
    """Parse a text time column (e.g. dates in a CSV) into datetimes, in place of the column."""
    col = frame[time_col]
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return frame
    if pd.api.types.is_datetime64_any_dtype(col.dtype) or pd.api.types.is_timedelta64_dtype(
        col.dtype
    ):
        return frame
    try:
        parsed = pd.to_datetime(col, format="ISO8601")
    except (ValueError, TypeError):
        try:
            parsed = pd.to_datetime(col, format="mixed")
        except (ValueError, TypeError) as err:
            raise CLIError(
                f"{what}: time column {time_col!r}: expected numbers or dates, found values "
                f"such as {col.iloc[0]!r} ({_one_line(str(err))})"
            ) from err
    frame = frame.copy()
    frame[time_col] = parsed
    return frame


def _check_columns(frame: pd.DataFrame, spec: ColumnSpec, what: str) -> None:
    available = [str(c) for c in frame.columns]
    for option, col in (("--time-col", spec.time_col), ("--id-col", spec.id_col)):
        if col is not None and col not in available:
            raise CLIError(f"{option}: unknown column {col!r} in {what}; columns are {available}")
    for col in spec.features:
        if col not in available:
            raise CLIError(f"--features: unknown column {col!r} in {what}; columns are {available}")
        if col in (spec.time_col, spec.id_col):
            raise CLIError(f"--features: {col!r} is the time or id column, not a feature")
    if spec.id_col is not None and spec.id_col == spec.time_col:
        raise CLIError(f"--id-col: expected a column other than the time column {spec.time_col!r}")
    if not spec.features:
        raise CLIError(f"--features: expected at least one feature column in {what}, found none")


def _series_set(frame: pd.DataFrame, spec: ColumnSpec, what: str) -> SeriesSet:
    """The model's view of a data file: validated series in the file's layout."""
    from gpvae.data import to_series_set

    _check_columns(frame, spec, what)
    # Only the id, time and feature columns take part (no column-name guessing on the
    # rest); outputs re-attach the other columns (see _merge_back).
    sub = _parse_times(frame[spec.columns], spec.time_col, what)
    sub.columns = pd.Index([str(c) for c in sub.columns])
    return to_series_set(
        sub, id_col=spec.id_col, time_col=spec.time_col, feature_cols=spec.features, name=what
    )


def _merge_back(original: pd.DataFrame, result: pd.DataFrame, spec: ColumnSpec) -> pd.DataFrame:
    """The original rows and columns, with result columns replacing or added after them.

    The id and time columns are kept exactly as read (e.g. dates keep their text format).
    """
    out = original.copy()
    out.columns = pd.Index([str(c) for c in out.columns])
    res = result.set_axis(out.index, axis=0)
    for col in res.columns:
        if str(col) not in (spec.time_col, spec.id_col):
            out[str(col)] = res[col].to_numpy()
    return out


def _spec_from_fit(
    frame: pd.DataFrame, time_col: str, id_col: str | None, features: str | None
) -> ColumnSpec:
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
        numeric = [c for c in feats if pd.api.types.is_numeric_dtype(frame[c].dtype)]
        for c in feats:
            if c not in numeric:
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
    _check_columns(frame, spec, "DATA")
    return spec


def _check_not_mostly_numeric(col: pd.Series, name: str) -> None:
    """Raise for a text column whose values are mostly numbers: a numeric feature with a
    stray entry (e.g. "n.a."), which would otherwise be left out of the default features."""
    present = col.dropna()
    if present.empty or pd.api.types.is_datetime64_any_dtype(col.dtype):
        return
    parsed = pd.to_numeric(present.astype(str).str.strip(), errors="coerce")
    if parsed.notna().mean() >= 0.5:
        bad = present[parsed.isna()]
        raise CLIError(
            f"--features: expected numeric values in column {name!r}, found mostly numbers "
            f"and {len(bad)} other value(s) such as {bad.iloc[0]!r} (row {bad.index[0]}); "
            "leave missing values empty, or list the feature columns with --features"
        )


def _series_frame(frame: pd.DataFrame, spec: ColumnSpec, series: str | None) -> pd.DataFrame:
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


def _time_axis(col: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return np.asarray(pd.to_datetime(col).dt.tz_localize(None), dtype="datetime64[ns]")
    return np.asarray(col, dtype=np.float64)


def _quantiles(level: float) -> tuple[float, float]:
    return (0.5 - level / 2.0, 0.5 + level / 2.0)


# ---------------------------------------------------------------- model loading


def _model_dir(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise CLIError(f"MODEL_DIR: not found: {str(p)!r} (create it with 'gpvae fit')")
    if not p.is_dir():
        raise CLIError(f"MODEL_DIR: expected a directory written by 'gpvae fit', found a file {p}")
    return p


def _load(model_dir: Path) -> tuple[GPVAE, ColumnSpec]:
    from gpvae.estimator import GPVAE

    spec = ColumnSpec.load(model_dir)
    with _as_cli("MODEL_DIR"):
        model = GPVAE.load(model_dir / "model")
    return model, spec


# ---------------------------------------------------------------- click plumbing


def _examples(text: str) -> Callable[[_F], _F]:
    """Append an example block to a command's help (shown verbatim by click)."""

    def wrap(func: _F) -> _F:
        func.__doc__ = inspect.cleandoc(func.__doc__ or "") + "\n\n\b\nExample:\n" + text
        return func

    return wrap


def _positive_int(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise click.BadParameter(f"expected a positive integer, found {value}")
    return value


def _positive_float(
    ctx: click.Context, param: click.Parameter, value: float | None
) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"expected a positive number, found {value}")
    return value


def _level(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not 0.0 < value < 1.0:
        raise click.BadParameter(f"expected a probability in (0, 1), found {value}")
    return value


def _hidden(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, found {value!r}") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"expected comma-separated positive integers, found {value!r}")
    return sizes


_num_samples = click.option(
    "--num-samples",
    default=100,
    show_default=True,
    callback=_positive_int,
    help="Monte Carlo samples for the mean and the intervals.",
)
_level_opt = click.option(
    "--level",
    default=0.9,
    show_default=True,
    callback=_level,
    help="Probability of the interval [lower, upper].",
)
_series_opt = click.option(
    "--series", default=None, help="Series id to plot (long files); default the first one."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="gpvae")
@click.option("--debug", is_flag=True, help="Show the full traceback when a command fails.")
@click.option(
    "--threads",
    default=None,
    type=click.IntRange(min=1),
    help="CPU threads for torch (default: torch's choice; the demo uses 1). Small models "
    "often run fastest on 1 thread, especially on a busy machine.",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, threads: int | None) -> None:
    """gpvae: fill gaps in multivariate time series with calibrated intervals, forecast,
    score anomalies and sample, with a Gaussian-process-prior VAE.

    \b
    Start with the demo on real data (Seattle weather, no download):
      gpvae demo --out gpvae-demo
    Then on your own CSV or Parquet file:
      gpvae fit data.csv --time-col date -o model/
      gpvae impute model/ data.csv -o imputed.csv --plot imputed.png
    """
    ctx.obj = {"threads": threads}
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


# ---------------------------------------------------------------- demo


@cli.command()
@click.option(
    "--out",
    "out",
    default="gpvae-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the CSVs, metrics.json and the PNG plots.",
)
@click.option(
    "--epochs",
    default=None,
    callback=_positive_int,
    type=int,
    help="Training epochs (default: the tuned setting).",
)
@click.option("--quick", is_flag=True, help="A ~30 s version (fewer epochs, shorter data).")
@click.option(
    "--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_examples("  gpvae demo --out gpvae-demo\n  gpvae demo --quick --out /tmp/demo")
@click.pass_context
def demo(
    ctx: click.Context, out: str, epochs: int | None, quick: bool, seed: int, quiet: bool
) -> None:
    """Run the whole job on real data: 4 years of daily Seattle weather.

    Hides 20% of the entries and three 30-day gaps, fits a GP-VAE, imputes with 90%
    intervals, forecasts the last 4 weeks (held out), scores anomalies, prints the MAE on
    the hidden entries against mean, LOCF and linear interpolation, and writes
    imputed.csv, forecast.csv, anomalies.csv, metrics.json and PNG plots into --out.
    """
    import torch

    from gpvae.app.demo import run_demo

    if ctx.obj.get("threads") is None:
        torch.set_num_threads(1)  # the demo's small networks run fastest on one thread
    run_demo(out, epochs=epochs, quick=quick, seed=seed, progress=not quiet, echo=_info)


# ---------------------------------------------------------------- fit


@cli.command()
@click.argument("data", type=str)
@click.option("--time-col", required=True, help="Name of the time column (numbers or dates).")
@click.option("--id-col", default=None, help="Series id column (long files); omit for one series.")
@click.option(
    "--features",
    default=None,
    help="Comma-separated feature columns (default: all other numeric columns).",
)
@click.option(
    "-o",
    "--out",
    "model_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder to write the model into (created if needed).",
)
@click.option("--epochs", default=100, show_default=True, callback=_positive_int)
@click.option("--latent-dim", default=8, show_default=True, callback=_positive_int)
@click.option(
    "--kernel",
    default="matern32",
    show_default=True,
    help="GP kernel of every latent channel: matern12/32/52, rbf, cauchy, rq, periodic.",
)
@click.option(
    "--encoder",
    default="mlp",
    show_default=True,
    type=click.Choice(["mlp", "partial", "conv"], case_sensitive=False),
    help="Encoder network ('partial' combines per-feature evidence).",
)
@click.option(
    "--likelihood",
    default="gaussian",
    show_default=True,
    type=click.Choice(
        ["gaussian", "gaussian_gp", "gaussian_hetero", "student_t", "bernoulli"],
        case_sensitive=False,
    ),
    help="Observation model ('gaussian_gp': each feature's own deviations form a GP in time).",
)
@click.option(
    "--hidden",
    default="128,128",
    show_default=True,
    callback=_hidden,
    help="Hidden layer widths of encoder and decoder.",
)
@click.option("--lr", default=1e-3, show_default=True, callback=_positive_float)
@click.option("--batch-size", default=32, show_default=True, callback=_positive_int)
@click.option(
    "--patience",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="Stop after this many epochs without improvement (0: never).",
)
@click.option(
    "--window",
    default=None,
    callback=_positive_int,
    type=int,
    help="Cut long series into overlapping windows of this many steps for training "
    "(half-overlapping); helps a single long series.",
)
@click.option(
    "--calibrate/--no-calibrate",
    default=True,
    show_default=True,
    help="Rescale the imputation intervals per feature to cover held-out entries.",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--resume", is_flag=True, help="Continue an interrupted fit from MODEL_DIR's checkpoint."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_examples(
    "  gpvae fit weather.csv --time-col date -o model/ --epochs 50\n"
    "  gpvae fit sensors.parquet --time-col time --id-col station \\\n"
    "      --features temp,humidity -o model/"
)
def fit(
    data: str,
    time_col: str,
    id_col: str | None,
    features: str | None,
    model_dir: str,
    epochs: int,
    latent_dim: int,
    kernel: str,
    encoder: str,
    likelihood: str,
    hidden: tuple[int, ...],
    lr: float,
    batch_size: int,
    patience: int,
    window: int | None,
    calibrate: bool,
    seed: int,
    resume: bool,
    quiet: bool,
) -> None:
    """Fit a GP-VAE to a CSV or Parquet file (NaN or empty cells are missing values).

    DATA is long (--id-col: one row per series and time) or wide (one series). The model
    and the column layout (cli.json) are written to MODEL_DIR for impute, forecast, detect
    and sample.
    """
    from gpvae.estimator import GPVAE

    out = Path(model_dir)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out: expected a folder for the model, found the file {str(out)!r}")
    model = GPVAE(  # checks the model options before any data is read
        latent_dim=latent_dim,
        kernel=kernel,
        encoder=encoder,
        likelihood=likelihood.lower(),
        hidden=hidden,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        patience=patience if patience > 0 else None,
        calibrate=calibrate,
        seed=seed,
        progress=not quiet,
        checkpoint_dir=str(out / "checkpoints"),
    )
    frame = read_table(data)
    spec = _spec_from_fit(frame, time_col, id_col, features)
    series = _series_set(frame, spec, "DATA")
    for j, feature in enumerate(spec.features):
        if all(np.isnan(v[:, j]).all() for v in series.values):
            raise CLIError(
                f"DATA: expected at least one value in every feature column, found none in "
                f"{feature!r} (leave it out of --features)"
            )
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported by fit
        steps = np.concatenate([np.diff(t) for t in series.times])
    spec.time_step = float(np.median(steps)) if steps.size else 1.0
    tcol = _parse_times(frame[[time_col]], time_col, "DATA")[time_col]
    if pd.api.types.is_datetime64_any_dtype(tcol.dtype):
        spec.time_type = "datetime"
        spec.time_start = pd.Timestamp(tcol.min()).isoformat()
    elif pd.api.types.is_numeric_dtype(tcol.dtype):
        spec.time_start = float(tcol.min())
    else:
        raise CLIError(f"--time-col: expected numbers or dates in {time_col!r}, found {tcol.dtype}")
    out.mkdir(parents=True, exist_ok=True)
    train_values, train_times = _training_series(series, window)
    with _as_cli("DATA"):
        model.fit(train_values, train_times, resume=resume)
        res = model.anomaly_scores(list(series.values), list(series.times), num_samples=50)
    spec.threshold_quantile = 0.99
    scores = res.step
    flat = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in scores])
    flat = flat[np.isfinite(flat)]
    spec.threshold = float(np.quantile(flat, 0.99)) if flat.size else None
    # Everything is computed before anything is written: an error leaves MODEL_DIR as it was.
    model.save(out / "model")
    spec.save(out)
    hist = getattr(model, "history_", None) or []
    last = f" after {len(hist)} epochs" if hist else ""
    _info(
        f"fitted on {series.num_series} series, {series.num_features} features "
        f"({', '.join(spec.features)}){last}; wrote {out}"
    )


def _training_series(
    series: SeriesSet, window: int | None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The training series: as given, or cut into half-overlapping windows."""
    values = [np.asarray(v) for v in series.values]
    times = [np.asarray(t) for t in series.times]
    if window is None:
        return values, times
    if window < 2:
        raise CLIError(f"--window: expected at least 2 steps, found {window}")
    out_v: list[np.ndarray] = []
    out_t: list[np.ndarray] = []
    for v, t in zip(values, times):
        for start in _window_starts(len(t), window):
            piece = v[start : start + window]
            if np.isnan(piece).all():
                continue
            out_v.append(piece)
            out_t.append(t[start : start + window])
    return out_v, out_t


def _window_starts(length: int, window: int) -> list[int]:
    """Starts of half-overlapping windows covering 0..length-1 (the last one flush right)."""
    if length <= window:
        return [0]
    stride = max(1, window // 2)
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


# ---------------------------------------------------------------- impute


@cli.command()
@click.argument("model_dir", type=str)
@click.argument("data", type=str)
@click.option("-o", "--out", required=True, help="Output .csv or .parquet file.")
@_num_samples
@_level_opt
@click.option("--plot", default=None, help="Also draw one series to this .png file.")
@_series_opt
@_examples("  gpvae impute model/ weather.csv -o imputed.csv --plot imputed.png")
def impute(
    model_dir: str,
    data: str,
    out: str,
    num_samples: int,
    level: float,
    plot: str | None,
    series: str | None,
) -> None:
    """Fill the missing values of DATA, with intervals.

    OUT has the rows and columns of DATA, the missing feature values filled with the
    imputed mean (observed values unchanged), and <feature>_lower / <feature>_upper
    columns with the --level interval (equal to the value where observed).
    """
    out_path = _check_output(out)
    plot_path = _check_plot(plot)
    model, spec = _load(_model_dir(model_dir))
    frame = read_table(data)
    ss = _series_set(frame, spec, "DATA")
    with _as_cli("DATA"):
        res = model.impute(ss, num_samples=num_samples, quantiles=_quantiles(level))
    table = _merge_back(frame, res.to_frame(), spec)
    write_table(table, out_path)
    _info(
        f"imputed {int(frame[spec.features].isna().sum().sum())} missing values; wrote {out_path}"
    )
    if plot_path is not None:
        from gpvae.plots import plot_imputation

        part = _series_frame(table, spec, series)
        raw = _series_frame(frame, spec, series)
        t_all = _time_axis(_parse_times(part, spec.time_col, "DATA")[spec.time_col])
        order = np.argsort(t_all)
        t = t_all[order]
        feats = spec.features
        fig = plot_imputation(
            t,
            raw[feats].to_numpy(dtype=np.float64)[order],
            part[feats].to_numpy(dtype=np.float64)[order],
            part[[f"{f}_lower" for f in feats]].to_numpy(dtype=np.float64)[order],
            part[[f"{f}_upper" for f in feats]].to_numpy(dtype=np.float64)[order],
            feature_names=feats,
            level=level,
            time_label=spec.time_col,
        )
        _save_figure(fig, plot_path)


# ---------------------------------------------------------------- forecast


@cli.command()
@click.argument("model_dir", type=str)
@click.argument("data", type=str)
@click.option(
    "--horizon",
    required=True,
    callback=_positive_int,
    type=int,
    help="Number of future steps (spaced by each series' median step).",
)
@click.option("-o", "--out", required=True, help="Output .csv or .parquet file.")
@_num_samples
@_level_opt
@click.option("--plot", default=None, help="Also draw a fan chart of one series to this .png.")
@_series_opt
@_examples("  gpvae forecast model/ weather.csv --horizon 28 -o forecast.csv --plot fan.png")
def forecast(
    model_dir: str,
    data: str,
    horizon: int,
    out: str,
    num_samples: int,
    level: float,
    plot: str | None,
    series: str | None,
) -> None:
    """Forecast every series of DATA --horizon steps past its end.

    OUT has one row per series and future step: the id column (long files), the time
    column, the forecast mean of every feature and <feature>_lower / <feature>_upper.
    """
    out_path = _check_output(out)
    plot_path = _check_plot(plot)
    model, spec = _load(_model_dir(model_dir))
    frame = read_table(data)
    ss = _series_set(frame, spec, "DATA")
    with _as_cli("DATA"):
        res = model.forecast(
            ss, horizon=horizon, num_samples=num_samples, quantiles=_quantiles(level)
        )
    table = res.to_frame()
    write_table(table, out_path)
    _info(f"forecast {horizon} steps of {ss.num_series} series; wrote {out_path}")
    if plot_path is not None:
        from gpvae.plots import plot_forecast

        feats = spec.features
        hist = _parse_times(_series_frame(frame, spec, series), spec.time_col, "DATA")
        hist = hist.sort_values(spec.time_col)
        fut = _parse_times(_series_frame(table, spec, series), spec.time_col, "OUT")
        fig = plot_forecast(
            _time_axis(hist[spec.time_col]),
            hist[feats].to_numpy(dtype=np.float64),
            _time_axis(fut[spec.time_col]),
            fut[feats].to_numpy(dtype=np.float64),
            fut[[f"{f}_lower" for f in feats]].to_numpy(dtype=np.float64),
            fut[[f"{f}_upper" for f in feats]].to_numpy(dtype=np.float64),
            levels=[level],
            feature_names=feats,
            time_label=spec.time_col,
        )
        _save_figure(fig, plot_path)


# ---------------------------------------------------------------- detect


@cli.command()
@click.argument("model_dir", type=str)
@click.argument("data", type=str)
@click.option("-o", "--out", required=True, help="Output .csv or .parquet file.")
@click.option(
    "--threshold",
    default=None,
    type=float,
    help="Flag steps whose score is above this. Default: the 99% quantile of the "
    "training data's step scores (stored by fit).",
)
@click.option(
    "--quantile",
    default=None,
    type=float,
    help="Instead of --threshold: flag the steps above this quantile of DATA's own "
    "scores (e.g. 0.99).",
)
@_num_samples
@click.option("--plot", default=None, help="Also draw the score timeline of one series (.png).")
@_series_opt
@_examples("  gpvae detect model/ weather.csv -o anomalies.csv --plot anomalies.png")
def detect(
    model_dir: str,
    data: str,
    out: str,
    threshold: float | None,
    quantile: float | None,
    num_samples: int,
    plot: str | None,
    series: str | None,
) -> None:
    """Score every time step and entry of DATA for anomalies and flag the highest.

    A score is the negative log-likelihood of the observed values under the model given
    the rest of the series (higher = more surprising). OUT has the rows and columns of
    DATA plus: score (per step), <feature>_score (per entry, empty where missing) and
    anomaly (true where score > threshold).
    """
    out_path = _check_output(out)
    plot_path = _check_plot(plot)
    if threshold is not None and quantile is not None:
        raise CLIError("--quantile: expected either --threshold or --quantile, found both")
    if quantile is not None and not 0.0 < quantile < 1.0:
        raise CLIError(f"--quantile: expected a number in (0, 1), found {quantile}")
    if threshold is not None and not math.isfinite(threshold):
        raise CLIError(f"--threshold: expected a finite number, found {threshold}")
    model, spec = _load(_model_dir(model_dir))
    frame = read_table(data)
    ss = _series_set(frame, spec, "DATA")
    with _as_cli("DATA"):
        scores = _anomaly_table(model.anomaly_scores(ss, num_samples=num_samples), spec)
    step = scores["score"].to_numpy(dtype=np.float64)
    if quantile is not None:
        thr = float(np.nanquantile(step, quantile))
        source = f"the {quantile:g} quantile of these scores"
    elif threshold is not None:
        thr, source = float(threshold), "--threshold"
    elif spec.threshold is not None:
        thr = spec.threshold
        source = f"the {spec.threshold_quantile:g} quantile of the training scores"
    else:
        thr = float(np.nanquantile(step, 0.99))
        source = "the 0.99 quantile of these scores"
    scores["anomaly"] = np.nan_to_num(step, nan=-np.inf) > thr
    table = _merge_back(frame, scores, spec)
    write_table(table, out_path)
    _info(
        f"flagged {int(scores['anomaly'].sum())} of {len(step)} steps above {thr:.4g} "
        f"({source}); wrote {out_path}"
    )
    if plot_path is not None:
        from gpvae.plots import plot_anomalies

        part = _parse_times(_series_frame(table, spec, series), spec.time_col, "DATA")
        part = part.sort_values(spec.time_col)
        fig = plot_anomalies(
            _time_axis(part[spec.time_col]),
            part["score"].to_numpy(dtype=np.float64),
            thr,
            values=part[spec.features].to_numpy(dtype=np.float64),
            feature_names=spec.features,
            time_label=spec.time_col,
        )
        _save_figure(fig, plot_path)


def _anomaly_table(res: Any, spec: ColumnSpec) -> pd.DataFrame:
    """Per-row score columns (score, <feature>_score) in the order of DATA's rows.

    ``res`` is the estimator's AnomalyResult for a DataFrame input: ``entry`` a copy of
    the frame with the feature columns replaced by scores, ``step`` a Series on its rows.
    """
    entry: pd.DataFrame = res.entry
    cols = {"score": np.asarray(res.step, dtype=np.float64)}
    for f in spec.features:
        cols[f"{f}_score"] = entry[f].to_numpy(dtype=np.float64)
    return pd.DataFrame(cols)


# ---------------------------------------------------------------- sample


@cli.command()
@click.argument("model_dir", type=str)
@click.option(
    "--length",
    "length",
    required=True,
    callback=_positive_int,
    type=int,
    help="Number of time steps of each sample.",
)
@click.option(
    "-n",
    "--num-samples",
    default=1,
    show_default=True,
    callback=_positive_int,
    help="Number of series to draw.",
)
@click.option("-o", "--out", required=True, help="Output .csv or .parquet file.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--plot", default=None, help="Also draw the first samples to this .png.")
@_examples("  gpvae sample model/ --length 365 -n 5 -o samples.csv --plot samples.png")
def sample(
    model_dir: str, length: int, num_samples: int, out: str, seed: int, plot: str | None
) -> None:
    """Draw new series from the fitted model (GP prior latents through the decoder).

    OUT is a long table: a 'sample' column (0..n-1) as the id, the time column (steps of
    the training data's median spacing, from its first time) and the features.
    """
    out_path = _check_output(out)
    plot_path = _check_plot(plot)
    model, spec = _load(_model_dir(model_dir))
    from gpvae.builders import check_memory

    with _as_cli("--length", {"times": "--length"}):
        check_memory("times", 16.0 * length, f"{length} steps")  # before allocating them
    steps = np.arange(length, dtype=np.float64) * spec.time_step
    model.seed = seed  # the estimator draws from generators seeded with its seed
    with _as_cli("--length", {"times": "--length"}):
        draws = np.asarray(model.sample(steps, num_samples=num_samples), dtype=np.float64)
    if spec.time_type == "datetime":
        start = pd.Timestamp(str(spec.time_start))
        shown: Any = start + pd.to_timedelta(steps, unit="h")
    else:
        shown = float(spec.time_start) + steps
    id_name = spec.id_col if spec.id_col is not None else "sample"
    rows = {
        id_name: np.repeat(np.arange(num_samples), length),
        spec.time_col: np.tile(np.asarray(shown), num_samples),
    }
    for j, f in enumerate(spec.features):
        rows[f] = draws[:, :, j].reshape(-1)
    table = pd.DataFrame(rows)
    write_table(table, out_path)
    _info(f"drew {num_samples} series of {length} steps; wrote {out_path}")
    if plot_path is not None:
        from gpvae.plots import plot_samples

        fig = plot_samples(
            np.asarray(shown), draws, feature_names=spec.features, time_label=spec.time_col
        )
        _save_figure(fig, plot_path)


# ---------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns (and, as a script, exits with) the exit code.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        0 on success, 1 for errors, 2 for usage errors, 130 when interrupted.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args[: args.index("--")] if "--" in args else "--debug" in args
    debug = debug or os.environ.get("GPVAE_DEBUG", "") not in ("", "0")
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
        try:
            result = cli.main(args=args, prog_name="gpvae", standalone_mode=False)
        except click.exceptions.Exit as done:
            return int(done.exit_code)
        except click.ClickException as err:
            if debug:
                traceback.print_exc()
            hint = ""
            if isinstance(err, click.UsageError) and err.ctx is not None:
                hint = f" (see '{err.ctx.command_path} --help')"
            click.echo(f"error: {_one_line(err.format_message())}{hint}", err=True)
            return int(err.exit_code)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            return 130
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            return 130
        except GPVAEError as err:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {_one_line(str(err))}", err=True)
            return 1
        except Exception as err:
            if debug:
                traceback.print_exc()
            click.echo(
                f"error: {type(err).__name__}: {_one_line(str(err))} (run 'gpvae --debug ...' "
                "for the traceback)",
                err=True,
            )
            return 1
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
