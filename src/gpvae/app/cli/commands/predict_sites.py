"""``gpvae predict-sites``: predict every feature at new sites from a spatial model.

The model comes from ``gpvae fit ... --coord-cols lat,lon`` (or ``GPVAE.fit(df, id=...,
time=..., coords=[...])`` saved to MODEL_DIR/model). DATA holds the observed sites over the
period to predict (the fit's columns); SITES the id and coordinate columns of the new sites.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from gpvae.app.cli.errors import CLIError, as_cli, info
from gpvae.app.cli.model_dir import MODEL_SUBDIR, check_model_dir
from gpvae.app.cli.options import PLOT_FORMATS, Command, examples, interval_draws

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["predict_sites"]


@click.command("predict-sites", cls=Command)
@click.argument("model_dir", type=str)
@click.argument("data", type=str)
@click.argument("sites", type=str)
@click.option("-o", "--out", required=True, help="Output table (CSV or Parquet).")
@click.option("--num-samples", default=100, show_default=True, callback=interval_draws)
@click.option(
    "--plot",
    default=None,
    help=f"Also draw a map of the sites to this image file ({PLOT_FORMATS}).",
)
@click.option(
    "--series-plot",
    default=None,
    help=f"Also draw the first new site's series to this image file ({PLOT_FORMATS}).",
)
@click.option("--feature", default=None, help="Feature of the map (default: the first).")
@examples(
    "  gpvae predict-sites model/ neighbours.csv new_sites.csv -o predicted.csv \\\n"
    "      --plot map.png --series-plot series.png"
)
def predict_sites(
    model_dir: str,
    data: str,
    sites: str,
    out: str,
    num_samples: int,
    plot: str | None,
    series_plot: str | None,
    feature: str | None,
) -> None:
    """Predict every feature at the sites of SITES, at every time of DATA.

    The output is long: the id and time columns, then per feature its prediction and
    ``<feature>_lower`` / ``<feature>_upper`` (the 90% interval).
    """
    from gpvae.app.cli import shards
    from gpvae.app.cli.columns import check_site_times, parse_times
    from gpvae.app.cli.tables import (
        check_output,
        check_plot,
        read_table,
        warn_plot_only,
        write_table,
    )
    from gpvae.estimator import GPVAE

    shards.one_process(
        shards.job(),
        "for predict-sites: every new site is conditioned on all the sites of DATA at once, "
        "and each process would write OUT",
    )
    out_path = check_output(out)
    for what, given in (("DATA", data), ("SITES", sites)):
        if Path(given).resolve() == out_path.resolve():
            raise CLIError(
                f"OUT: expected a path other than {what}'s (writing it would replace the input "
                f"data), found {out!r}, which is {what} {given!r}"
            )
    map_path, series_path = check_plot(plot), check_plot(series_plot, "--series-plot")
    # before the work
    warn_plot_only(
        "--feature",
        feature,
        map_path,
        "the feature that --plot's map draws",
        "every feature is predicted",
    )
    both = map_path is not None and series_path is not None
    if both and map_path.resolve() == series_path.resolve():  # type: ignore[union-attr]
        raise CLIError(
            f"--series-plot: expected a path other than --plot's (the series would replace "
            f"the map), found {series_plot!r}"
        )
    folder = check_model_dir(model_dir)
    with as_cli("MODEL_DIR", {}):
        model = GPVAE.load(folder / MODEL_SUBDIR)
    spec = model.spatial_
    if spec is None:
        raise CLIError(
            "MODEL_DIR: expected a spatial model (gpvae fit ... --coord-cols), found a "
            "time-series model"
        )
    if feature is not None and feature not in spec.features:
        raise CLIError(f"--feature: expected one of {list(spec.features)}, found {feature!r}")
    raw = read_table(data, "DATA", text_col=spec.id)  # ids as written, as at fit (001)
    frame = raw
    if spec.time in frame.columns:  # dates written as text, as at fit
        frame = parse_times(frame, spec.time, "DATA")
    check_site_times(raw, frame, spec.id, spec.time, "DATA")
    new = read_table(sites, "SITES", text_col=spec.id)
    _check_columns(frame, spec, "DATA", data, features=True)
    _check_columns(new, spec, "SITES", sites, features=False)
    # the estimator's "time" is DATA's (SITES has no times), as in impute's messages
    with as_cli("DATA", {"coords": "SITES", "id": "SITES", "sites": "SITES", "time": "DATA"}):
        res = model.predict_sites(frame, new, num_samples=num_samples)
    table = res.mean.copy()
    for name in spec.features:
        table[f"{name}_lower"] = res.lower[name].to_numpy()
        table[f"{name}_upper"] = res.upper[name].to_numpy()
    write_table(table, out)
    count = res.mean[spec.id].nunique()
    info(f"predicted {len(spec.features)} features at {count} sites; wrote {out}")
    if map_path is not None or series_path is not None:
        _plots(frame, new, res, spec, feature, map_path, series_path)


def _check_columns(table: pd.DataFrame, spec: Any, what: str, path: str, *, features: bool) -> None:
    """Refuse ``table`` (DATA or SITES, read from ``path``) without a column of the fit: the
    estimator names its arguments (``coords``, ``id``), which the command read as SITES's,
    so a coordinate column missing from DATA was blamed on SITES. DATA needs the site id,
    time, coordinate and feature columns; SITES the site id and coordinates."""
    roles = [("site id", spec.id)]
    roles += [("time", spec.time)] if features else []
    roles += [("coordinate", c) for c in spec.projection.columns]
    roles += [("feature", f) for f in spec.features] if features else []
    available = [str(c) for c in table.columns]
    for role, col in roles:
        if str(col) not in available:
            raise CLIError(
                f"{what}: expected the {role} column {str(col)!r} of the model's fit in "
                f"{path!r}, found columns {available}"
            )


def _plots(frame, new, res, spec, feature, plot, series_plot) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    from gpvae.app.cli.tables import panels_drawn, save_figure
    from gpvae.app.plots import MAX_PANELS
    from gpvae.app.spatial_plots import plot_site_map, plot_site_series

    name = feature or spec.features[0]
    if name not in spec.features:
        raise CLIError(f"--feature: expected one of {list(spec.features)}, found {name!r}")
    cols = list(spec.projection.columns)
    observed = frame.groupby(spec.id, sort=False).agg({**{c: "first" for c in cols}, name: "mean"})
    predicted = res.mean.groupby(spec.id, sort=False)[name].mean()
    width = (res.upper[name] - res.lower[name]).groupby(res.mean[spec.id]).mean()
    new_sites = new.drop_duplicates(subset=[spec.id]).set_index(spec.id)
    coords = np.concatenate(
        [observed[cols].to_numpy(), new_sites.loc[predicted.index, cols].to_numpy()]
    )
    values = np.concatenate([observed[name].to_numpy(), predicted.to_numpy()])
    widths = np.concatenate([np.full(len(observed), np.nan), width.loc[predicted.index].to_numpy()])
    names = [str(s) for s in [*observed.index, *predicted.index]]
    held = list(range(len(observed), len(names)))
    lat = spec.projection.kind == "latlon"
    order = (1 - spec.projection.lat_index, spec.projection.lat_index) if lat else (0, 1)
    labels = ("longitude", "latitude") if lat else (cols[0], cols[1])
    if plot is not None:
        fig = plot_site_map(coords[:, order], values, widths, names, held, name, labels)
        save_figure(fig, plot)
    if series_plot is not None:
        first = predicted.index[0]
        rows = res.mean[spec.id] == first
        t = (
            pd.to_datetime(res.mean.loc[rows, spec.time])
            if spec.time_axis.datetime
            else res.mean.loc[rows, spec.time]
        )
        shown = panels_drawn(len(spec.features), MAX_PANELS, "features", "--series-plot")
        feats = list(spec.features)[:shown]
        fig = plot_site_series(
            t.to_numpy(),
            res.mean.loc[rows, feats].to_numpy(),
            res.lower.loc[rows, feats].to_numpy(),
            res.upper.loc[rows, feats].to_numpy(),
            feature_names=feats,
            title=str(first),
            time_label=spec.time,
        )
        save_figure(fig, series_plot, "--series-plot")
