"""``gpvae forecast``: forecast every series of a data file past its end."""

from __future__ import annotations

import datetime
import warnings
from typing import TYPE_CHECKING

import click
import numpy as np

from gpvae.app.cli.errors import as_cli, cli_remedies, info
from gpvae.app.cli.model_dir import load_model
from gpvae.app.cli.options import (
    PLOT_FORMATS,
    Command,
    examples,
    interval,
    level_option,
    merge_option,
    num_samples_option,
    out_option,
    positive_int,
    quiet_option,
    series_option,
)

if TYPE_CHECKING:
    import pandas as pd

    from gpvae.app.cli.columns import ColumnSpec

__all__ = ["forecast"]


@click.command(cls=Command)
@click.argument("model_dir", type=str)
@click.argument("data", type=str)
@click.option(
    "--horizon",
    required=True,
    callback=positive_int,
    type=int,
    help="Number of future steps: each series' median time step apart, or steps of the "
    "calendar frequency for dates on a calendar grid (months, quarters, years, business days).",
)
@out_option
@num_samples_option
@level_option
@click.option(
    "--plot",
    default=None,
    help="Also draw a fan chart of one series (its first 12 features) to this image "
    f"file ({PLOT_FORMATS}).",
)
@series_option
@merge_option
@quiet_option
@examples("  gpvae forecast model/ weather.csv --horizon 28 -o forecast.csv --plot fan.png")
def forecast(
    model_dir: str,
    data: str,
    horizon: int,
    out: str,
    num_samples: int,
    level: float,
    plot: str | None,
    series: str | None,
    merge_duplicates: bool,
    quiet: bool,
) -> None:
    """Forecast every series of DATA --horizon steps past its end.

    OUT has one row per series and future step: the id column (long files), the time
    column, the forecast mean of every feature and <feature>_lower / <feature>_upper.
    """
    from gpvae.app.cli import shards
    from gpvae.app.cli.columns import (
        as_durations,
        elapsed_axis,
        parse_times,
        series_frame,
        series_set,
        time_axis,
    )
    from gpvae.app.cli.offsets import recorded_changes
    from gpvae.app.cli.tables import check_plot, panels_drawn, save_figure, warn_plot_only

    run = shards.job()
    out_path = shards.check_output_path(out, run, data)
    plot_path = check_plot(plot)
    # before the work
    warn_plot_only(
        "--series", series, plot_path, "the series that --plot draws", "every series is forecast"
    )
    model, spec = load_model(model_dir, forecasts_only_ok=True)
    shards.check_not_training_data(out_path, out, spec.data_path)
    model.progress = not quiet  # a progress bar for long work, as fit's
    source = shards.read_input(data, spec.id_col, run, share=True)
    shards.check_series(source.frame, spec.id_col, series, run)
    frame = source.frame
    table, n_series = frame.iloc[:0], 0
    with run.together(), as_cli("DATA"):
        if frame.shape[0]:  # a process may have no series (fewer series than processes)
            ss = series_set(frame, spec, "DATA", loose=True, merge=merge_duplicates, model=model)
            with cli_remedies():
                res = model.forecast(
                    ss, horizon=horizon, num_samples=num_samples, quantiles=interval(level)
                )
            table, n_series = res.to_frame(), ss.num_series
    changes = recorded_changes(spec.time_offsets, frame.get(spec.time_col))
    shown = table if changes is None else _on_data_clock(table, frame, spec, changes)
    dated = _dates_like(shown, frame, spec.time_col, changes)
    if spec.time_type == "duration" and not table.empty:  # hours back to durations
        dated = dated.assign(**{spec.time_col: as_durations(dated[spec.time_col])})
    shards.write_output(dated, out_path, run, ordered=False)
    info(f"forecast {horizon} steps of {int(run.total(n_series))} series; wrote {out_path}")
    if plot_path is not None and shards.plot_owner(frame, spec.id_col, series, run):
        from gpvae.app.cli.columns import time_label
        from gpvae.app.plots import MAX_PANELS, plot_forecast

        feats = spec.features[: panels_drawn(len(spec.features), MAX_PANELS, "features")]
        raw = series_frame(frame, spec, series)
        hist = parse_times(raw, spec.time_col, "DATA").assign(
            __written__=raw[spec.time_col].to_numpy()
        )
        hist = hist.sort_values(spec.time_col)
        fut = parse_times(series_frame(table, spec, series), spec.time_col, "OUT")
        title = "Forecast"  # naming the series drawn, of a long file
        if spec.id_col is not None:
            title += f" of {spec.id_col} {raw[spec.id_col].iloc[0]}"
        fig = plot_forecast(
            # on the data's clock, as DATA and OUT write the times
            time_axis(hist[spec.time_col], hist["__written__"]),
            hist[feats].to_numpy(dtype=np.float64),
            time_axis(fut[spec.time_col], series_frame(dated, spec, series)[spec.time_col]),
            fut[feats].to_numpy(dtype=np.float64),
            fut[[f"{f}_lower" for f in feats]].to_numpy(dtype=np.float64),
            fut[[f"{f}_upper" for f in feats]].to_numpy(dtype=np.float64),
            levels=[level],
            feature_names=feats,
            title=title,
            time_label=time_label(spec),
            # three horizons of history, as backtest's fan charts, and at least 30 steps
            context=max(3 * horizon, 30),
            # its gaps in elapsed time: the wall clock jumps at a clock change
            history_elapsed=elapsed_axis(hist[spec.time_col]),
        )
        save_figure(fig, plot_path)


def _on_data_clock(
    table: pd.DataFrame, frame: pd.DataFrame, spec: ColumnSpec, changes: list[str]
) -> pd.DataFrame:
    """The forecast's times (UTC: DATA's text of differing offsets is read in UTC) on the
    data's clock, each with the offset the data used then, as ``gpvae sample`` writes its
    dates (:func:`~gpvae.app.cli.offsets.steps_shown`): whole days past each series' last
    time step whole days on its clock (midnight stays midnight across a clock change)."""
    import pandas as pd

    from gpvae.app.cli.columns import parse_times
    from gpvae.app.cli.offsets import steps_shown

    time_col = spec.time_col
    if table.empty or time_col not in table.columns:
        return table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parse_times said its warnings for DATA already
        parsed = parse_times(frame, time_col, "DATA")
    if not pd.api.types.is_datetime64_any_dtype(parsed[time_col].dtype):
        return table
    last_of = _naive_utc(parsed[time_col])
    times = _naive_utc(table[time_col])
    shown = np.empty(len(table), dtype=object)
    if spec.id_col is not None and spec.id_col in table.columns:
        last = last_of.groupby(parsed[spec.id_col].to_numpy()).max()
        groups = table.groupby(spec.id_col, sort=False).indices.items()
    else:
        last = pd.Series([last_of.max()], index=[None])
        groups = [(None, np.arange(len(table)))]
    calendar = spec.time_freq is not None
    for key, rows in groups:
        origin = last.get(key, times.iloc[rows].min())
        utc = times.iloc[rows].to_numpy()
        shown[rows] = steps_shown(utc, np.datetime64(origin, "ns"), changes, calendar)
    return table.assign(**{time_col: shown})


def _naive_utc(times: pd.Series) -> pd.Series:
    """Zone-aware datetimes as naive UTC ones (naive ones as they are)."""
    import pandas as pd

    dated = pd.to_datetime(times)
    return dated.dt.tz_convert("UTC").dt.tz_localize(None) if dated.dt.tz else dated


def _dates_like(
    table: pd.DataFrame, frame: pd.DataFrame, time_col: str, changes: list[str] | None = None
) -> pd.DataFrame:
    """The forecast's times in the form of DATA's, as impute keeps DATA's own column: text
    dates in DATA's format (:func:`~gpvae.app.cli.columns.times_as_written`: ``29/07/2021``
    stays day-first, not ``2021-07-29``; with ``changes``, ``cli.json``'s ``time_offsets``,
    the times are already on the data's clock, each with its offset); dates without a time
    of day (a Parquet date32 column reads as ``datetime.date`` objects) stay dates, not
    timestamps at midnight."""
    import pandas as pd

    from gpvae.app.cli.columns import times_as_written

    column = frame[time_col].dropna()
    if table.empty or column.empty:
        return table
    written = times_as_written(table[time_col], frame[time_col], changes)
    if written is not None:
        return table.assign(**{time_col: written})
    if column.dtype != object:
        return table
    if not all(type(v) is datetime.date for v in column.iloc[:100]):
        return table
    times = pd.to_datetime(table[time_col])
    if (times != times.dt.normalize()).any():  # (forecast steps are whole days here)
        return table
    return table.assign(**{time_col: times.dt.date})
