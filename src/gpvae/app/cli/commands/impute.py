"""``gpvae impute``: fill the missing values of a data file, with intervals."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from gpvae.app.cli.errors import CLIError, as_cli, info
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
    quiet_option,
    series_option,
)

if TYPE_CHECKING:
    import pandas as pd

    from gpvae.app.cli import shards
    from gpvae.app.cli.columns import ColumnSpec

__all__ = ["impute", "keep_observed"]


@click.command(cls=Command)
@click.argument("model_dir", type=str)
@click.argument("data", type=str)
@out_option
@num_samples_option
@level_option
@click.option(
    "--plot",
    default=None,
    help=f"Also draw one series (its first 12 features) to this image file ({PLOT_FORMATS}).",
)
@series_option
@merge_option
@quiet_option
@examples("  gpvae impute model/ weather.csv -o imputed.csv --plot imputed.png")
def impute(
    model_dir: str,
    data: str,
    out: str,
    num_samples: int,
    level: float,
    plot: str | None,
    series: str | None,
    merge_duplicates: bool,
    quiet: bool,
) -> None:
    """Fill the missing values of DATA, with intervals.

    OUT has the rows and columns of DATA, the missing feature values filled with the
    imputed mean (observed values unchanged), and <feature>_lower / <feature>_upper
    columns with the --level interval (equal to the value where observed). With
    --merge-duplicate-times the rows of a series that share a time are imputed as one
    (the mean of each feature) and each of them gets that row's values, its own observed
    values kept.

    With a spatial model (fit --coord-cols), DATA is long with the fit's site id, time,
    coordinate and feature columns (one row per site and time), and every gap is filled
    from the site's own record and from the other sites of DATA at the same times (one
    process; --series names the site to plot; no --merge-duplicate-times). New sites
    without any row are predicted by 'gpvae predict-sites'.
    """
    from gpvae.app.cli import shards
    from gpvae.app.cli.columns import (
        check_no_clash,
        check_site_times,
        merge_back,
        merged_rows,
        parse_times,
        series_frame,
        series_set,
        time_axis,
    )
    from gpvae.app.cli.tables import check_plot, panels_drawn, save_figure, warn_plot_only

    run = shards.job()
    out_path = shards.check_output_path(out, run, data)
    plot_path = check_plot(plot)
    # before the work
    warn_plot_only(
        "--series", series, plot_path, "the series that --plot draws", "every series is imputed"
    )
    model, spec = load_model(model_dir, spatial_ok=True)
    shards.check_not_training_data(out_path, out, spec.data_path)
    model.progress = not quiet  # a progress bar for long work, as fit's
    sites = model.spatial_ is not None
    if sites:  # before DATA is read, on every process
        _check_sites_options(run, merge_duplicates)
    source = shards.read_input(data, spec.id_col, run, share=True)
    shards.check_series(source.frame, spec.id_col, series, run)
    frame = table = source.frame
    ends = [f"{f}_{end}" for end in ("lower", "upper") for f in spec.features]
    with run.together():
        check_no_clash(frame, spec, ends, "DATA")
    with run.together(), as_cli("DATA", SITES_NAMES if sites else None):
        if frame.shape[0] and sites:  # the long frame itself: its coordinate columns too
            parsed = parse_times(frame, spec.time_col, "DATA")  # dates written as text
            check_site_times(frame, parsed, str(spec.id_col), spec.time_col, "DATA")
            res = model.impute(parsed, num_samples=num_samples, quantiles=interval(level))
            table = merge_back(frame, res.to_frame(), spec)
        elif frame.shape[0]:  # a process may have no series (fewer series than processes)
            ss = series_set(frame, spec, "DATA", loose=True, merge=merge_duplicates, model=model)
            res = model.impute(ss, num_samples=num_samples, quantiles=interval(level))
            filled = res.to_frame()
            if merge_duplicates:  # one row per row of DATA again
                filled = filled.iloc[merged_rows(frame, spec, "DATA")].reset_index(drop=True)
                filled = keep_observed(filled, frame, spec)
            table = merge_back(frame, filled, spec)
    # the features with a missing entry in DATA, every process's rows counted: one process's
    # own rows gave its part DATA's type (bool, int) and another's floats, so that a Parquet
    # OUT file failed after the work, a folder's parts had types that cannot be read together
    # and a CSV OUT wrote one column's observed cells two ways
    gaps = run.sums([float(f in frame.columns and frame[f].isna().any()) for f in spec.features])
    gappy = {f for f, count in zip(spec.features, gaps) if count}
    if frame.shape[0]:
        table = keep_whole_numbers(table, frame, spec, gappy)
        if not source.folder and not shards.is_folder(out):
            table = keep_truth_values(table, frame, spec, data, out_path, gappy)
    shards.write_output(table, out_path, run, ordered=source.ordered)
    missing = run.total(int(frame[spec.features].isna().sum().sum()) if frame.shape[0] else 0)
    info(f"imputed {int(missing)} missing values; wrote {out_path}")
    if plot_path is not None and shards.plot_owner(table, spec.id_col, series, run):
        from gpvae.app.cli.columns import time_label
        from gpvae.app.plots import MAX_PANELS, plot_imputation

        part = series_frame(table, spec, series)
        raw = series_frame(frame, spec, series)
        parsed = parse_times(part, spec.time_col, "DATA")[spec.time_col]
        order = np.argsort(time_axis(parsed))
        t = time_axis(parsed, part[spec.time_col])[order]  # on the data's clock, as OUT
        feats = spec.features[: panels_drawn(len(spec.features), MAX_PANELS, "features")]
        title = "Imputation"  # naming the series drawn, of a long file
        if spec.id_col is not None:
            title += f" of {spec.id_col} {part[spec.id_col].iloc[0]}"
        fig = plot_imputation(
            t,
            raw[feats].to_numpy(dtype=np.float64)[order],
            part[feats].to_numpy(dtype=np.float64)[order],
            part[[f"{f}_lower" for f in feats]].to_numpy(dtype=np.float64)[order],
            part[[f"{f}_upper" for f in feats]].to_numpy(dtype=np.float64)[order],
            feature_names=feats,
            level=level,
            title=title,
            time_label=time_label(spec),
        )
        save_figure(fig, plot_path)


#: The spatial estimator's argument names -> impute's (the site id, time, coordinate and
#: feature columns are DATA's; ``quantiles`` come from --level).
SITES_NAMES = {
    "id": "DATA",
    "time": "DATA",
    "coords": "DATA",
    "features": "DATA",
    "quantiles": "--level",
}


def _check_sites_options(run: shards.Job, merge_duplicates: bool) -> None:
    """Refuse, on every process, what a spatial model's imputation cannot do."""
    from gpvae.app.cli import shards

    shards.one_process(
        run,
        "for a spatial model (fitted with --coord-cols): each of its windows is conditioned "
        "on every site at once, so the sites cannot be shared out between processes",
    )
    if merge_duplicates:
        raise CLIError(
            "--merge-duplicate-times: merges the rows of a series that share a time, which a "
            "spatial model (fitted with --coord-cols: one row per site and time) does not "
            "do; leave it out"
        )


def keep_whole_numbers(
    table: pd.DataFrame, frame: pd.DataFrame, spec: ColumnSpec, gappy: Collection[str]
) -> pd.DataFrame:
    """``table`` (OUT) with DATA's own values in the feature columns of whole numbers or
    True/False without a missing entry (integer or bool columns) and their interval's
    ends: the results are floats (``4`` was written ``4.0``, and whole numbers beyond 2**53
    changed: ``9007199254740993`` became ``9007199254740992.0``), where every entry of such
    a column is observed, so equal to DATA's. pandas' nullable integer and boolean columns
    (``Int64``, ``boolean``, from Parquet) can have missing entries: such a column keeps
    the imputation (floats). ``gappy``: the features with a missing entry in DATA (in any
    process's rows under torchrun), which keep the imputation in every process's rows."""
    out = table
    for f in spec.features:
        if frame[f].dtype.kind in "biu" and f not in gappy and not frame[f].isna().any():
            if out is table:
                out = table.copy()
            for col in (f, f"{f}_lower", f"{f}_upper"):
                out[col] = frame[f].to_numpy()
    return out


def keep_truth_values(
    table: pd.DataFrame,
    frame: pd.DataFrame,
    spec: ColumnSpec,
    data: str,
    out: Path,
    gappy: Collection[str],
) -> pd.DataFrame:
    """``table`` (OUT, a CSV file) with the observed cells of DATA's CSV feature columns of
    TRUE/FALSE with empty cells (pandas reads True/False and NaN) written as DATA wrote them
    (``TRUE``), in the column and its interval's ends; they came back as ``1.0`` / ``0.0``.
    The imputed cells stay numbers (a Parquet OUT, whose column holds one type, keeps them
    all as floats, as a Parquet DATA's nullable boolean column does). ``gappy``: the
    features with an empty cell in DATA (under torchrun, a process's rows may have none)."""
    import pandas as pd

    from gpvae.app.cli.tables import file_format

    if file_format(Path(data), "DATA") != "csv" or file_format(out, "OUT") != "csv":
        return table
    cols = []
    for f in spec.features:
        present = frame[f].dropna()
        gaps = frame[f].dtype == object and len(present) and f in gappy
        if gaps and all(isinstance(v, (bool, np.bool_)) for v in present):
            cols.append(f)
    if not cols:
        return table
    try:  # the cells as written (frame's index: DATA's rows, counted from 0)
        text = pd.read_csv(data, usecols=cols, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError):
        return table
    out_table = table.copy()
    for f in cols:
        seen = frame[f].notna().to_numpy()
        written = text[f].reindex(frame.index).to_numpy(dtype=object)
        for col in (f, f"{f}_lower", f"{f}_upper"):
            values = out_table[col].to_numpy(dtype=object)
            values[seen] = written[seen]
            out_table[col] = values
    return out_table


def keep_observed(filled: pd.DataFrame, frame: pd.DataFrame, spec: ColumnSpec) -> pd.DataFrame:
    """``filled`` (one row per row of ``frame``, from the merged rows) with every value that
    ``frame`` observed put back, in the feature column and its interval's ends: a row
    merged with others keeps its own observation, not their mean."""
    import pandas as pd

    out = filled.copy()
    for f in spec.features:
        own = pd.to_numeric(frame[f], errors="coerce").to_numpy(dtype=np.float64)
        seen = ~np.isnan(own)
        for col in (f, f"{f}_lower", f"{f}_upper"):
            out[col] = np.where(seen, own, out[col].to_numpy(dtype=np.float64))
    return out
