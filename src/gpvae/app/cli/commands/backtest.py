"""``gpvae backtest``: rolling-origin backtest of a model's configuration on a data file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from gpvae.app.cli.errors import CLIError, as_cli, cli_remedies, cli_warning_words, info
from gpvae.app.cli.model_dir import load_model
from gpvae.app.cli.options import (
    Command,
    examples,
    interval_draws,
    merge_option,
    positive_int,
)

if TYPE_CHECKING:
    from gpvae.estimator.backtest import BacktestResult

__all__ = ["backtest"]


@click.command(cls=Command)
@click.argument("model_dir", type=str)
@click.argument("data", type=str)
@click.option("--horizon", required=True, callback=positive_int, type=int, help="Steps ahead.")
@click.option(
    "--origins",
    default=5,
    show_default=True,
    callback=positive_int,
    type=int,
    help="Forecast origins per series (the last ones, --step steps apart).",
)
@click.option(
    "--step",
    default=None,
    type=int,
    callback=positive_int,
    help="Steps between consecutive origins (default: the horizon).",
)
@click.option(
    "--season",
    default=1,
    show_default=True,
    callback=positive_int,
    type=int,
    help="Season m of the MASE scale (in-sample MAE of the forecast y[t - m]; 1: naive).",
)
@click.option(
    "--refit",
    type=click.Choice(["once", "each"]),
    default="once",
    show_default=True,
    help="Fit once before the earliest origin, or afresh before each origin.",
)
@click.option(
    "--num-samples",
    default=100,
    show_default=True,
    callback=interval_draws,
    help="Joint forecast paths per origin for the CRPS (at least 2).",
)
@click.option("-o", "--out", required=True, help="Output .json file with the scores.")
@click.option(
    "--plot-dir",
    default=None,
    help="Also draw the fan chart of every origin (the first 12), one .png per feature of the "
    "first series.",
)
@merge_option
@examples(
    "  gpvae backtest model/ weather.csv --horizon 28 --origins 5 --season 365 \\\n"
    "      -o backtest.json --plot-dir fans/"
)
def backtest(
    model_dir: str,
    data: str,
    horizon: int,
    origins: int,
    step: int | None,
    season: int,
    refit: str,
    num_samples: int,
    out: str,
    plot_dir: str | None,
    merge_duplicates: bool,
) -> None:
    """Backtest the configuration saved in MODEL_DIR on DATA at rolling origins.

    A fresh model of the same configuration is fitted on the data before the earliest
    origin (or before each, with --refit each) and forecasts --horizon steps from each
    origin. OUT holds MAE, MASE, CRPS (scaled, from the quantiles 0.1..0.9) and 90%
    coverage, overall, per step ahead and per feature, and the epochs run.
    """
    from gpvae.app.cli.columns import series_set
    from gpvae.app.cli.offsets import recorded_changes
    from gpvae.app.cli.tables import make_folder, panels_drawn, read_table

    out_path = Path(out)
    if out_path.suffix.lower() != ".json" or out_path.is_dir():
        raise CLIError(f"--out: expected a .json file name, found {out!r}")
    make_folder(out_path.parent, "--out")  # before the work, as the folder of the fan charts
    if plot_dir is not None:
        make_folder(Path(plot_dir), "--plot-dir")
    model, spec = load_model(model_dir, forecasts_only_ok=True)
    model.progress = False
    frame = read_table(data, text_col=spec.id_col)
    column = frame.get(spec.time_col)
    ss = series_set(frame, spec, "DATA", merge=merge_duplicates, model=model)
    names = {"num_origins": "--origins", "step": "--step", "season": "--season"}
    # the refits' training advice names the options of gpvae fit, which set the model's
    training = ("batch_size", "patience", "window", "epochs", "lr")
    names = {**{n: "--" + n.replace("_", "-") for n in training}, **names}
    with as_cli("DATA", names), cli_warning_words(names), cli_remedies():
        res = model.backtest(
            ss,
            horizon=horizon,
            num_origins=origins,
            step=step,
            season=season,
            refit=refit,
            num_samples=num_samples,
        )
    ids = ss.layout.series_ids
    changes = recorded_changes(spec.time_offsets, column)
    report = {
        "horizon": horizon,
        "origins": res.origins.tolist(),
        "origin_times": _origin_times(res.times[:, :, 0], changes, spec.time_type == "duration"),
        "series": None if ids is None else [_id_json(i) for i in ids],
        "season": season,
        "refit": refit,
        "epochs": res.epochs,
        "summary": res.summary(),
        "by_horizon": res.by_horizon(),
        "by_feature": res.by_feature(),
    }
    out_path.write_text(json.dumps(_finite(report), indent=2, allow_nan=False))
    s = report["summary"]
    info(
        f"backtest of {origins} origins x {horizon} steps: MAE {s['mae']:.4g}, MASE "
        f"{s['mase']:.3f}, CRPS {s['crps']:.3f}, 90% coverage {s['coverage90']:.1%}; wrote "
        f"{out_path}"
    )
    if plot_dir is not None:
        from gpvae.app.cli.columns import time_label
        from gpvae.app.plots import MAX_PANELS, plot_backtest

        folder = Path(plot_dir)
        drawn = range(panels_drawn(res.mean.shape[1], MAX_PANELS, "origins", "--plot-dir"))
        drawn_res = _on_data_clock(res, changes)
        for j, file_name in enumerate(_chart_names(res.feature_names)):
            title = None
            if ids is not None and len(ids) > 1:  # the first series: named by its id
                title = _fan_title(res, j, f"{spec.id_col} {ids[0]}")
            plot_backtest(
                drawn_res,
                feature=j,
                save=folder / file_name,
                origins=drawn,
                time_label=time_label(spec),
                title=title,
            )
        info(f"wrote {len(res.feature_names)} fan charts to {folder}")


def _fan_title(res: Any, j: int, series: str) -> str:
    """The fan chart's title of feature ``j`` of the first series of a long file, named
    ``series`` (its id), with that series' scores: the title gave the feature and scores
    without saying whose they were, beside the report's scores over every series."""
    mase = np.nanmean(res.scores["scaled_error"][0, :, :, j])
    cov = np.nanmean(res.scores["covered"][0, :, :, j])
    return (
        f"{res.feature_names[j]} of {series}: backtest over {res.mean.shape[1]} origins "
        f"(MASE {mase:.2f}, 90% coverage {cov:.0%})"
    )


def _origin_times(
    times: np.ndarray, changes: list[str] | None, durations: bool = False
) -> list[list[Any]]:
    """The origins' times (n, origins) as JSON; with ``changes`` (``cli.json``'s
    ``time_offsets``: DATA's text of differing offsets, read in UTC) on the data's clock,
    each with the offset DATA wrote it with, as ``gpvae forecast`` and ``sample`` write
    their dates. ``durations``: the times are hours of a column of durations (``cli.json``'s
    ``time_type``), written as ISO durations (``P1DT2H0M0S``)."""
    import pandas as pd

    from gpvae.app.cli.columns import as_durations
    from gpvae.app.cli.offsets import hours_shown

    if durations:
        flat = as_durations(np.asarray(times, dtype=np.float64).ravel())
        return [[_time_json(t) for t in row] for row in flat.to_numpy().reshape(times.shape)]

    if changes is not None and all(isinstance(t, pd.Timestamp) for t in times.flat):
        utc = pd.DatetimeIndex(times.ravel())
        utc = utc.tz_convert("UTC").tz_localize(None) if utc.tz is not None else utc
        shown = hours_shown(utc.to_numpy(), changes).reshape(times.shape)
        return [[t.isoformat() for t in row] for row in shown]
    return [[_time_json(t) for t in row] for row in times]


def _chart_names(features: list[str]) -> list[str]:
    """The fan charts' file names, one per feature: ``backtest_<feature>.png``, the name's
    characters other than letters, digits, ``-``, ``_`` and ``.`` written ``_``; a name that
    an earlier feature's took (``NO2 (Dongsi)`` and ``NO2 [Dongsi]``; letter case ignored, as
    some file systems do) gets a number, ``backtest_NO2__Dongsi__2.png``, so no chart is
    written over another."""
    taken: set[str] = set()
    names = []
    for feature in features:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in feature)
        name, k = f"backtest_{safe}", 1
        while name.casefold() in taken:
            k += 1
            name = f"backtest_{safe}_{k}"
        taken.add(name.casefold())
        names.append(f"{name}.png")
    return names


def _on_data_clock(res: BacktestResult, changes: list[str] | None) -> BacktestResult:
    """``res`` for the fan charts: with ``changes`` (``cli.json``'s ``time_offsets``: DATA's
    text of differing offsets, read in UTC) its times on the data's clock (naive wall-clock
    datetimes, each in the offset DATA used then), as ``origin_times`` writes them."""
    import dataclasses

    import pandas as pd

    from gpvae.app.cli.offsets import hours_shown

    if changes is None:
        return res

    def wall(times: Any) -> Any:
        arr = np.asarray(times)
        if arr.size == 0 or not all(isinstance(t, pd.Timestamp) for t in arr.flat):
            return times
        utc = pd.DatetimeIndex(arr.ravel())
        utc = utc.tz_convert("UTC").tz_localize(None) if utc.tz is not None else utc
        shown = hours_shown(utc.to_numpy(), changes)
        clock = [t.tz_localize(None).to_datetime64() for t in shown]
        return np.array(clock, dtype="datetime64[ns]").reshape(arr.shape)

    return dataclasses.replace(
        res, times=wall(res.times), history_times=[wall(t) for t in res.history_times]
    )


def _time_json(value: Any) -> Any:
    """An origin's time as DATA gives it: a date or duration as ISO text, a number as such."""
    import pandas as pd

    from gpvae.io import json_number

    if isinstance(value, (np.datetime64, pd.Timestamp)):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, (np.timedelta64, pd.Timedelta)):
        return pd.Timedelta(value).isoformat()
    return json_number(value)


def _id_json(value: Any) -> Any:
    """A series id as JSON: whole numbers as numbers, anything else as its text."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return str(value)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (null), so that OUT is strict JSON."""
    from gpvae.io import json_number

    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return json_number(value)
