"""``gpvae sample``: draw new series from a fitted model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
import numpy as np

from gpvae.app.cli.errors import as_cli, info
from gpvae.app.cli.model_dir import load_model
from gpvae.app.cli.options import PLOT_FORMATS, Command, examples, positive_int
from gpvae.arguments import check_memory

if TYPE_CHECKING:
    from gpvae.app.cli.columns import ColumnSpec

__all__ = ["sample"]


@click.command(cls=Command)
@click.argument("model_dir", type=str)
@click.option(
    "--length",
    "length",
    required=True,
    callback=positive_int,
    type=int,
    help="Number of time steps of each sample.",
)
@click.option(
    "-n",
    "--num-samples",
    default=1,
    show_default=True,
    callback=positive_int,
    help="Number of series to draw.",
)
@click.option("-o", "--out", required=True, help="Output .csv or .parquet file.")
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0, max=2**63 - 1),
    help="Seed of the draws: the same seed gives the same series, another seed others.",
)
@click.option(
    "--noise/--no-noise",
    default=True,
    show_default=True,
    help="--no-noise: the smooth signal of each series (the decoder's mean along its latent "
    "path), without the observation noise that every step draws on its own.",
)
@click.option(
    "--plot",
    default=None,
    help="Also draw the first samples (their first 12 features) to this image file "
    f"({PLOT_FORMATS}).",
)
@examples("  gpvae sample model/ --length 365 -n 5 -o samples.csv --plot samples.png")
def sample(
    model_dir: str,
    length: int,
    num_samples: int,
    out: str,
    seed: int,
    noise: bool,
    plot: str | None,
) -> None:
    """Draw new series from the fitted model (GP prior latents through the decoder).

    OUT is a long table: an id column (0..n-1, named as the training data's, else
    'sample', or 'sample_id', 'sample_id_2', ... when the data have a column 'sample'), the
    time column (steps of the training data's median spacing, from its first time) and the
    features.
    """
    import pandas as pd

    from gpvae.app.cli.columns import as_durations
    from gpvae.app.cli.offsets import recorded_changes, steps_shown
    from gpvae.app.cli.shards import check_not_training_data
    from gpvae.app.cli.tables import (
        check_output,
        check_plot,
        panels_drawn,
        save_figure,
        write_table,
    )
    from gpvae.data.calendar import calendar_steps, calendar_times, zoned

    out_path = check_output(out)
    plot_path = check_plot(plot)
    model, spec = load_model(model_dir)
    check_not_training_data(out_path, out, spec.data_path)
    with as_cli("--length", {"times": "--length"}):
        check_memory("times", 16.0 * length, f"{length} steps")  # before allocating them
    steps = np.arange(length, dtype=np.float64) * spec.time_step
    with as_cli("MODEL_DIR", {"times": "--length"}):
        draws = np.asarray(
            model.sample(steps, num_samples=num_samples, noise=noise, seed=seed), dtype=np.float64
        )
    axis: Any = None  # the plot's time axis (None: the times written)
    if spec.time_type == "datetime":
        start = pd.Timestamp(str(spec.time_start))
        # the start on its own clock (its offset): the grid in UTC put month starts at 23:00
        # of the day before, without the offset
        wall = start.tz_localize(None) if start.tz is not None else start
        # CSV text with offsets that differ (read in UTC): the offsets it used, else None
        changes = recorded_changes(spec.time_offsets)
        if spec.time_freq is not None:  # months, business days, ...: steps of the calendar
            # series each on a day of their own ('MS+*'): a step's fraction is its day, so
            # the draws take the first time's (whole steps are month starts at midnight)
            own = calendar_steps(np.array([wall.to_datetime64()]), wall, spec.time_freq)[0]
            shown: Any = pd.DatetimeIndex(calendar_times(steps + own, wall, spec.time_freq))
            if changes is not None:  # the calendar of the UTC times; each with its offset
                shown = steps_shown(shown.to_numpy(), wall.to_datetime64(), changes, True)
            elif spec.time_zone is not None:  # the zone's own midnight, summer and winter
                shown = pd.DatetimeIndex(zoned(shown.to_numpy(), spec.time_zone, wall=True))
            elif start.tz is not None:
                shown = shown.tz_localize(start.tz)
        else:  # the median step in whole milliseconds: no 21:19:59.999999998
            step_ms = round(spec.time_step * 3_600_000)
            ahead = pd.to_timedelta(np.arange(length) * step_ms, unit="ms")
            if changes is not None:  # whole days step on the data's clock, hours in UTC;
                # each with the offset the data used then (as forecast writes its dates)
                shown = steps_shown((wall + ahead).to_numpy(), wall.to_datetime64(), changes)
            elif spec.time_zone is not None and step_ms % 86_400_000 == 0:
                # whole days step on the zone's clock (midnight stays midnight across a
                # clock change), as horizon forecasts of such data do
                days = (wall + ahead).to_numpy()
                shown = pd.DatetimeIndex(zoned(days, spec.time_zone, wall=True))
            elif spec.time_zone is not None:  # hours count in UTC; shown on the zone's clock
                shown = (start + ahead).tz_convert(spec.time_zone)
            else:
                shown = start + ahead
        if changes is not None:  # offsets that differ: the plot on the data's wall clock
            axis = np.array([t.tz_localize(None).to_datetime64() for t in shown])
    elif spec.time_type == "duration":  # elapsed times: durations, as DATA held them
        axis = float(spec.time_start) + steps  # (the plot in hours)
        # the median step in whole milliseconds, as for dates
        step_ms = round(spec.time_step * 3_600_000)
        start_d = as_durations([float(spec.time_start)]).iloc[0]
        shown = start_d + pd.to_timedelta(np.arange(length) * step_ms, unit="ms")
    else:
        shown = float(spec.time_start) + steps
    id_name = spec.id_col if spec.id_col is not None else _draw_id_name(spec)
    rows = {
        id_name: np.repeat(np.arange(num_samples), length),
        spec.time_col: np.tile(np.asarray(shown), num_samples),
    }
    for j, f in enumerate(spec.features):
        rows[f] = draws[:, :, j].reshape(-1)
    table = pd.DataFrame(rows)
    write_table(table, out_path)
    info(f"drew {num_samples} series of {length} steps; wrote {out_path}")
    if plot_path is not None:
        from gpvae.app.cli.columns import time_label
        from gpvae.app.plots import MAX_PANELS, plot_samples

        drawn = panels_drawn(len(spec.features), MAX_PANELS, "features")
        fig = plot_samples(
            np.asarray(shown) if axis is None else axis,
            draws[:, :, :drawn],
            feature_names=spec.features[:drawn],
            time_label=time_label(spec),
        )
        save_figure(fig, plot_path)


def _draw_id_name(spec: ColumnSpec) -> str:
    """The name of the draws' id column of a model fitted without --id-col: 'sample', or
    when the time column or a feature is named so (it overwrote the ids, and the draws
    could not be told apart), the first free one of 'sample_id', 'sample_id_2', ...
    (saying so)."""
    taken = {spec.time_col, *spec.features}
    if "sample" not in taken:
        return "sample"
    name, k = "sample_id", 2
    while name in taken:
        name, k = f"sample_id_{k}", k + 1
    info(f"the draws' id column is named {name!r} ('sample' is a column of the data)")
    return name
