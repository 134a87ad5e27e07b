"""``gpvae detect``: score every time step and entry of a data file for anomalies, flag the
steps above a threshold and report the flagged intervals."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from gpvae.app.cli.errors import CLIError, as_cli, cli_remedies, info
from gpvae.app.cli.model_dir import load_model
from gpvae.app.cli.options import (
    PLOT_FORMATS,
    Command,
    FiniteFloat,
    examples,
    merge_option,
    out_option,
    quiet_option,
    series_option,
)

#: The start of the stored threshold's warning on data with more gaps than its normal data
#: (:func:`gpvae.estimator.anomaly.missing_share`), not said with --threshold or --quantile.
GAPS_WARNING = r"X: [0-9.]+% of the entries are missing"

if TYPE_CHECKING:
    import pandas as pd

    from gpvae.app.cli.columns import ColumnSpec
    from gpvae.estimator.anomaly import AnomalyProfile

__all__ = [
    "anomaly_table",
    "describe_intervals",
    "detect",
    "interval_table",
    "label_column",
    "label_summary",
    "step_labels",
]


@click.command(cls=Command)
@click.argument("model_dir", type=str)
@click.argument("data", type=str)
@out_option
@click.option(
    "--threshold",
    default=None,
    type=FiniteFloat,
    help="Flag steps whose score is above this. Default: the threshold stored by fit "
    "(from the training data's scores, for its --false-alarm-rate).",
)
@click.option(
    "--quantile",
    default=None,
    type=FiniteFloat,
    help="Instead of --threshold: flag the steps above this quantile of DATA's own "
    "scores (e.g. 0.99).",
)
@click.option(
    "--intervals",
    "intervals_out",
    default=None,
    help="Also write the flagged intervals (start, end, peak time and score, steps, "
    "top features) to this .csv or .parquet file. One process only (refused under "
    "torchrun).",
)
@click.option(
    "--labels",
    "labels_col",
    default=None,
    help="A column of DATA marking known anomalies (1/true): shaded on the plot, and the "
    "share of labelled and of unlabelled steps flagged is reported. One process only "
    "(refused under torchrun).",
)
@click.option(
    "--num-samples",
    default=None,
    type=click.IntRange(min=1),
    help="Monte Carlo draws per step (default: the model's, 16; with a stored threshold, "
    "another count warns: the threshold was learned from scores of its own count).",
)
@click.option(
    "--plot",
    default=None,
    help="Also draw one series' timeline to this image file "
    f"({PLOT_FORMATS}): with the stored rank alarm (the default) its score column with the "
    "flagged steps and no threshold line; else its alarm column with the threshold line.",
)
@series_option
@merge_option
@quiet_option
@examples(
    "  gpvae detect model/ new_week.csv -o scores.csv --intervals alarms.csv\n"
    "  gpvae detect model/ history.csv -o scores.csv --labels incident --plot scores.png"
)
def detect(
    model_dir: str,
    data: str,
    out: str,
    threshold: float | None,
    quantile: float | None,
    intervals_out: str | None,
    labels_col: str | None,
    num_samples: int | None,
    plot: str | None,
    series: str | None,
    merge_duplicates: bool,
    quiet: bool,
) -> None:
    """Score every time step and entry of DATA for anomalies and flag the intervals above
    the threshold (the model is not refitted: DATA may be new data).

    A score is the negative log-likelihood of the observed values under the model given
    the neighbouring steps (higher = more surprising); with the threshold stored by fit,
    each feature's scores are first put on the scale of its training scores. OUT has the
    rows and columns of DATA plus: score (per step; empty where nothing is observed),
    <feature>_score (per entry, empty where missing), alarm (the score compared with the
    threshold: with the threshold stored by fit, by default the rank of the step's score
    among those of the previous steps, a share from 0 to 1, see 'gpvae fit --rank-window'
    (default 256); with a model fitted with --rank-window 0, the step's score relative to
    its recent level, see 'gpvae fit --spread-baseline'; with --threshold or --quantile,
    score itself) and anomaly (true where alarm is above the threshold: the plot flags the
    same steps).
    --intervals' peak_time and peak_score are those of each interval's highest alarm.
    With --merge-duplicate-times the rows of a series that share a time are scored as one
    step (the mean of each feature) and each of them gets that step's scores and flag.
    """
    import pandas as pd

    from gpvae.app.cli import shards
    from gpvae.app.cli.columns import (
        check_no_clash,
        first_rows,
        merge_back,
        merged_rows,
        parse_times,
        series_frame,
        series_set,
        time_axis,
    )
    from gpvae.app.cli.tables import (
        check_output,
        check_plot,
        panels_drawn,
        save_figure,
        warn_plot_only,
        write_table,
    )

    run = shards.job()
    out_path = shards.check_output_path(out, run, data)
    if run.world > 1 and (intervals_out is not None or labels_col is not None):
        opt = "--intervals" if intervals_out is not None else "--labels"
        raise shards.everywhere(
            CLIError(f"{opt}: expected one process, found {run.world} (torchrun)"), run
        )
    iv_path = None if intervals_out is None else check_output(intervals_out, "--intervals")
    for what, given in (("OUT", out), ("DATA", data)):
        if iv_path is not None and iv_path.resolve() == Path(given).resolve():
            raise CLIError(
                f"--intervals: expected a path other than {what}'s (the intervals would "
                f"replace it), found {intervals_out!r}, which is {what} {given!r}"
            )
    plot_path = check_plot(plot)
    # before the work
    warn_plot_only(
        "--series", series, plot_path, "the series that --plot draws", "every series is scored"
    )
    if threshold is not None and quantile is not None:
        raise CLIError("--quantile: expected either --threshold or --quantile, found both")
    if quantile is not None and not 0.0 < quantile < 1.0:
        raise CLIError(f"--quantile: expected a number in (0, 1), found {quantile}")
    if threshold is not None and not math.isfinite(threshold):
        raise CLIError(f"--threshold: expected a finite number, found {threshold}")
    model, spec = load_model(model_dir)
    shards.check_not_training_data(out_path, out, spec.data_path)
    model.progress = not quiet  # a progress bar for long work, as fit's
    data_in = shards.read_input(data, spec.id_col, run, share=True)
    shards.check_series(data_in.frame, spec.id_col, series, run)
    frame = table = data_in.frame
    added = ["score", *(f"{f}_score" for f in spec.features), "alarm", "anomaly"]
    with run.together():
        check_no_clash(frame, spec, added, "DATA")
    labels = None  # checked before the scoring, which can take long
    if labels_col is not None and frame.shape[0]:
        labels = label_column(frame, labels_col, spec)
    scores = pd.DataFrame({"score": np.zeros(0)})
    alarm = np.zeros(0)  # the stored profile's alarm scores
    flags = np.zeros(0, dtype=bool)  # and its flags (alarm above its threshold)
    with run.together(), as_cli("DATA"):
        if frame.shape[0]:  # a process may have no series (fewer series than processes)
            ss = series_set(frame, spec, "DATA", loose=True, merge=merge_duplicates, model=model)
            with cli_remedies(), warnings.catch_warnings():  # remedies: 'gpvae fit'
                if threshold is not None or quantile is not None:
                    # the stored threshold is not used: its warning on gaps does not apply
                    warnings.filterwarnings("ignore", message=GAPS_WARNING, category=UserWarning)
                res = model.anomaly_scores(ss, num_samples=num_samples)
            scores = anomaly_table(res, spec)
            if res.flagged is not None:
                alarm = np.asarray(res.alarm, dtype=np.float64)
                flags = np.asarray(res.flagged, dtype=bool)
    # with merged rows: the steps are the merged rows; OUT repeats a step's row for each
    # row of DATA that it merged, and the intervals and the plot read each step's first row
    rows = merged_rows(frame, spec, "DATA") if merge_duplicates and frame.shape[0] else None
    firsts = None if rows is None else first_rows(rows)
    step = scores["score"].to_numpy(dtype=np.float64)
    profile = model.anomaly_profile_
    # the threshold stored by fit: the profile compares the step's alarm score with it
    stored = quantile is None and threshold is None and profile is not None
    if quantile is not None:
        thr = float(np.nanquantile(shards.gather_values(step, run), quantile))
        source = f"the {quantile:g} quantile of these scores"
    elif threshold is not None:
        thr, source = float(threshold), "--threshold"
    elif profile is not None:
        thr = profile.threshold
        source = (
            f"stored by fit for a false-alarm rate of {profile.false_alarm_rate:g} on the "
            "training data"
        )
    elif spec.threshold is not None:  # a model folder written before profiles existed
        thr = spec.threshold
        source = f"the {spec.threshold_quantile:g} quantile of the training scores"
    else:
        thr = float(np.nanquantile(shards.gather_values(step, run), 0.99))
        source = "the 0.99 quantile of these scores"
    # 'alarm': the score compared with the threshold (the stored profile's alarm, else the
    # step score itself); 'anomaly': alarm above it
    if stored:
        scores["alarm"], scores["anomaly"] = alarm, flags
    else:
        scores["alarm"] = step
        scores["anomaly"] = np.nan_to_num(step, nan=-np.inf) > thr
    if frame.shape[0]:
        per_row = scores if rows is None else scores.iloc[rows].reset_index(drop=True)
        table = merge_back(frame, per_row, spec)
    shards.write_output(table, out_path, run, ordered=data_in.ordered)
    # the shares are out of the scored steps: a step with nothing observed has no score
    # and is never flagged
    scored = np.isfinite(step)
    flagged, steps, n_scored = run.sums(
        [int(scores["anomaly"].sum()), len(step), int(scored.sum())]
    )
    steps_table = table if firsts is None else table.iloc[firsts]
    intervals = interval_table(steps_table, spec, thr, profile) if run.world == 1 else None
    n_iv = "" if intervals is None else f" in {len(intervals)} intervals"
    unscored = int(steps) - int(n_scored)
    info(
        f"flagged {int(flagged)} of {int(n_scored)} scored steps"
        f"{f' ({flagged / n_scored:.2%})' if n_scored else ''}{n_iv} whose alarm (OUT's "
        f"alarm column{'' if stored else ': the score'}) is above {thr:.4g} ({source}); "
        f"{_steps(unscored)} of {int(steps)} had no score (nothing observed); wrote "
        f"{out_path}" + ("" if iv_path is None else f" and {iv_path}")
    )
    if intervals is not None:
        if iv_path is not None:
            write_table(intervals, iv_path, "--intervals")
        for line in describe_intervals(intervals, spec):
            info(line)
    if labels is not None and labels_col is not None:
        info(label_summary(labels_col, labels, scores, rows))
    if plot_path is not None and shards.plot_owner(table, spec.id_col, series, run):
        from gpvae.app.cli.columns import elapsed_axis, time_label
        from gpvae.app.plots import plot_anomalies

        if labels is not None:
            # a merged step is labelled when any of its rows is
            table["__labels__"] = labels if rows is None else step_labels(labels, rows)[rows]
        shown_rows = table if firsts is None else table.iloc[firsts]
        raw = series_frame(shown_rows, spec, series)
        part = parse_times(raw, spec.time_col, "DATA").assign(
            __written__=raw[spec.time_col].to_numpy()
        )
        part = part.sort_values(spec.time_col, kind="stable")
        shown = spec.features[: panels_drawn(len(spec.features), PLOT_MAX_FEATURES, "features")]
        title = "Anomaly scores"  # naming the series drawn, of a long file
        if spec.id_col is not None:
            title += f" of {spec.id_col} {raw[spec.id_col].iloc[0]}"
        # the alarm: the score the threshold is compared with (score itself without a
        # stored threshold), so the line and the red bands agree; a rank alarm, a share of
        # the recent steps, fills a band from 0 to 1 that says little drawn: the score then,
        # with the flagged steps and no line
        ranked = stored and profile is not None and profile.rank_window > 0
        fig = plot_anomalies(
            time_axis(part[spec.time_col], part["__written__"]),  # on the data's clock
            part["score" if ranked else "alarm"].to_numpy(dtype=np.float64),
            None if ranked else thr,
            flagged=part["anomaly"].to_numpy(dtype=bool),
            values=part[shown].to_numpy(dtype=np.float64),
            feature_names=shown,
            labels=None if labels is None else part["__labels__"].to_numpy(),
            title=title,
            time_label=time_label(spec),
            score_label="score" if ranked else "alarm",
            # its gaps in elapsed time: the wall clock jumps at a clock change
            times_elapsed=elapsed_axis(part[spec.time_col]),
        )
        save_figure(fig, plot_path)


#: Feature panels drawn under the score timeline at most (the first ones).
PLOT_MAX_FEATURES = 8


def step_labels(labels: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """The labels of DATA's rows per step: with merged rows (``rows``, the step of each
    row) a step is labelled when any of its rows is."""
    if rows is None:
        return labels
    per_step = np.zeros(rows.max() + 1, dtype=bool)
    np.logical_or.at(per_step, rows, labels)
    return per_step


def label_summary(
    col: str, labels: np.ndarray, scores: pd.DataFrame, rows: np.ndarray | None
) -> str:
    """The --labels line: the share of the scored labelled and of the scored unlabelled
    steps that are flagged (per step: merged rows count once; a step with no score is
    never flagged and is left out of the shares, and counted apart)."""
    known = step_labels(labels, rows)
    hit = scores["anomaly"].to_numpy(dtype=bool)
    scored = np.isfinite(scores["score"].to_numpy(dtype=np.float64))
    parts = []
    for name, mask in (("labelled", known), ("unlabelled", ~known)):
        n = int((mask & scored).sum())
        share = hit[mask & scored].mean() if n else 0.0
        parts.append(
            f"{share:.2%} of {n} scored {name} steps ({int((mask & ~scored).sum())} unscored)"
        )
    return f"labels {col!r}: flagged {parts[0]} and {parts[1]}"


def label_column(frame: pd.DataFrame, col: str, spec: ColumnSpec) -> np.ndarray:
    """The --labels column of DATA as booleans (1 / true inside a known anomaly)."""
    import pandas as pd

    from gpvae.data._parse import plain

    if col not in [str(c) for c in frame.columns]:
        raise CLIError(
            f"--labels: unknown column {col!r} in DATA; columns are {list(map(str, frame.columns))}"
        )
    if col in spec.features:
        raise CLIError(f"--labels: expected a column that is not a model feature, found {col!r}")
    raw = frame[next(c for c in frame.columns if str(c) == col)]
    if raw.dtype == bool:
        return raw.to_numpy()
    values = pd.to_numeric(raw, errors="coerce")
    empty = raw.isna().to_numpy()
    if empty.any():  # rows counted from 0 after the header, as in DATA's other errors
        rows = np.flatnonzero(empty)
        shown = ", ".join(str(r) for r in rows[:5]) + (", ..." if rows.size > 5 else "")
        raise CLIError(
            f"--labels: expected a label on every row of column {col!r} (1/true inside a "
            f"known anomaly, 0/false elsewhere), found {rows.size} empty cell(s) (row "
            f"{shown}; rows counted from 0 after the header)"
        )
    bad = ~values.isin([0, 1]).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise CLIError(
            f"--labels: expected 0/1 or true/false in column {col!r} (1/true inside a known "
            f"anomaly, 0/false elsewhere), found other values such as {plain(raw.iloc[row])!r} "
            f"(row {row}; rows counted from 0 after the header)"
        )
    return values.to_numpy() == 1


def interval_table(
    table: pd.DataFrame, spec: ColumnSpec, threshold: float, profile: AnomalyProfile | None
) -> pd.DataFrame:
    """The flagged intervals of every series, with DATA's own time values (as read; an
    interval ends where rows are missing from the series: in a regularly sampled series, a
    spacing over twice its median, :func:`gpvae.estimator.anomaly.time_gaps`); an
    interval's peak_time and peak_score are those of its highest ``alarm`` (the score that
    the threshold is compared with), its max_score the highest ``score`` (which ranks
    anomalies: the alarm is a rank near 1 at the peak of most intervals)."""
    import pandas as pd

    from gpvae.app.cli.columns import elapsed_axis, parse_times, time_axis
    from gpvae.estimator.anomaly import flagged_intervals

    rows = []
    groups = (
        [(None, table)] if spec.id_col is None else list(table.groupby(spec.id_col, sort=False))
    )
    for key, part in groups:
        parsed = parse_times(part, spec.time_col, "DATA")
        axis = time_axis(parsed[spec.time_col])
        order = np.argsort(axis, kind="stable")
        part = part.iloc[order]
        # elapsed time, in which an interval ends at a gap (rows missing from the data)
        elapsed = elapsed_axis(parsed[spec.time_col])
        clock = (axis if elapsed is None else elapsed)[order]
        if clock.dtype.kind == "M":  # nanoseconds: flagged_intervals reads numbers
            clock = clock.astype("datetime64[ns]").astype(np.int64).astype(np.float64)
        # the interval's peak: its highest alarm (the score the threshold is compared with)
        step = part["alarm"].to_numpy(dtype=np.float64)
        entry = part[[f"{f}_score" for f in spec.features]].to_numpy(dtype=np.float64)
        stamps = part[spec.time_col].to_numpy()
        flags = part["anomaly"].to_numpy(dtype=bool)
        score = part["score"].to_numpy(dtype=np.float64)
        for iv in flagged_intervals(
            step,
            entry,
            clock,
            threshold,
            spec.features,
            profile,
            flags=flags,
            scores=score,
        ):
            row = {} if spec.id_col is None else {spec.id_col: key}
            row.update(
                start=stamps[iv["start"]],
                end=stamps[iv["end"]],
                peak_time=stamps[iv["peak"]],
                peak_score=iv["peak_score"],
                max_score=iv["max_score"],
                steps=iv["steps"],
                features=";".join(iv["features"]),
            )
            rows.append(row)
    cols = ([] if spec.id_col is None else [spec.id_col]) + [
        "start",
        "end",
        "peak_time",
        "peak_score",
        "max_score",
        "steps",
        "features",
    ]
    return pd.DataFrame(rows, columns=cols)


def _steps(n: int) -> str:
    """``"1 step"``, ``"3 steps"``."""
    return f"{n} step" if n == 1 else f"{n} steps"


def describe_intervals(intervals: pd.DataFrame, spec: ColumnSpec, top: int = 5) -> list[str]:
    """One line per interval with the highest scores (at most ``top``; ties: the highest
    peak alarm)."""
    best = intervals.sort_values(["max_score", "peak_score"], ascending=False).head(top)
    lines = []
    for _, r in best.iterrows():
        where = "" if spec.id_col is None else f"{spec.id_col} {r[spec.id_col]}: "
        lines.append(
            f"  {where}{r['start']} .. {r['end']} ({_steps(int(r['steps']))}), highest score "
            f"{r['max_score']:.4g}, peak alarm {r['peak_score']:.4g} "
            f"at {r['peak_time']}; features {r['features'] or '-'}"
        )
    if len(intervals) > top:
        lines.append(f"  ... and {len(intervals) - top} more")
    return lines


def anomaly_table(res: Any, spec: ColumnSpec) -> pd.DataFrame:
    """Per-row score columns (score, <feature>_score) in the order of DATA's rows.

    ``res`` is the estimator's AnomalyResult for a DataFrame input: ``entry`` a copy of
    the frame with the feature columns replaced by scores, ``step`` a Series on its rows.
    """
    import pandas as pd

    entry: pd.DataFrame = res.entry
    cols = {"score": np.asarray(res.step, dtype=np.float64)}
    for f in spec.features:
        cols[f"{f}_score"] = entry[f].to_numpy(dtype=np.float64)
    return pd.DataFrame(cols)
