"""``gpvae detect``: score every time step and entry of a data file for anomalies and flag
the steps above a threshold."""

from __future__ import annotations

import math
from typing import Any

import click
import numpy as np
import pandas as pd

from gpvae.app.cli import shards
from gpvae.app.cli.columns import (
    ColumnSpec,
    merge_back,
    parse_times,
    series_frame,
    series_set,
    time_axis,
)
from gpvae.app.cli.errors import CLIError, as_cli, info
from gpvae.app.cli.model_dir import load_model
from gpvae.app.cli.options import examples, num_samples_option, series_option
from gpvae.app.cli.tables import check_plot, save_figure

__all__ = ["anomaly_table", "detect"]


@click.command()
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
@num_samples_option
@click.option("--plot", default=None, help="Also draw the score timeline of one series (.png).")
@series_option
@examples("  gpvae detect model/ weather.csv -o anomalies.csv --plot anomalies.png")
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
    run = shards.job()
    out_path = shards.check_output_path(out, run)
    plot_path = check_plot(plot)
    if threshold is not None and quantile is not None:
        raise CLIError("--quantile: expected either --threshold or --quantile, found both")
    if quantile is not None and not 0.0 < quantile < 1.0:
        raise CLIError(f"--quantile: expected a number in (0, 1), found {quantile}")
    if threshold is not None and not math.isfinite(threshold):
        raise CLIError(f"--threshold: expected a finite number, found {threshold}")
    model, spec = load_model(model_dir)
    data_in = shards.read_input(data, spec.id_col, run, share=True)
    frame = table = data_in.frame
    scores = pd.DataFrame({"score": np.zeros(0)})
    with run.together(), as_cli("DATA"):
        if frame.shape[0]:  # a process may have no series (fewer series than processes)
            ss = series_set(frame, spec, "DATA")
            scores = anomaly_table(model.anomaly_scores(ss, num_samples=num_samples), spec)
    step = scores["score"].to_numpy(dtype=np.float64)
    if quantile is not None:
        thr = float(np.nanquantile(shards.gather_values(step, run), quantile))
        source = f"the {quantile:g} quantile of these scores"
    elif threshold is not None:
        thr, source = float(threshold), "--threshold"
    elif spec.threshold is not None:
        thr = spec.threshold
        source = f"the {spec.threshold_quantile:g} quantile of the training scores"
    else:
        thr = float(np.nanquantile(shards.gather_values(step, run), 0.99))
        source = "the 0.99 quantile of these scores"
    scores["anomaly"] = np.nan_to_num(step, nan=-np.inf) > thr
    if frame.shape[0]:
        table = merge_back(frame, scores, spec)
    shards.write_output(table, out_path, run, ordered=data_in.ordered)
    flagged, steps = run.sums([int(scores["anomaly"].sum()), len(step)])
    info(
        f"flagged {int(flagged)} of {int(steps)} steps above {thr:.4g} ({source}); wrote {out_path}"
    )
    if plot_path is not None and shards.plot_owner(table, spec.id_col, series, run):
        from gpvae.app.plots import plot_anomalies

        part = parse_times(series_frame(table, spec, series), spec.time_col, "DATA")
        part = part.sort_values(spec.time_col)
        fig = plot_anomalies(
            time_axis(part[spec.time_col]),
            part["score"].to_numpy(dtype=np.float64),
            thr,
            values=part[spec.features].to_numpy(dtype=np.float64),
            feature_names=spec.features,
            time_label=spec.time_col,
        )
        save_figure(fig, plot_path)


def anomaly_table(res: Any, spec: ColumnSpec) -> pd.DataFrame:
    """Per-row score columns (score, <feature>_score) in the order of DATA's rows.

    ``res`` is the estimator's AnomalyResult for a DataFrame input: ``entry`` a copy of
    the frame with the feature columns replaced by scores, ``step`` a Series on its rows.
    """
    entry: pd.DataFrame = res.entry
    cols = {"score": np.asarray(res.step, dtype=np.float64)}
    for f in spec.features:
        cols[f"{f}_score"] = entry[f].to_numpy(dtype=np.float64)
    return pd.DataFrame(cols)
