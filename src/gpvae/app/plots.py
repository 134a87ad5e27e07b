"""Pictures of what a GP-VAE did: imputations, forecasts, anomaly scores, latents, kernels.

Every function takes plain arrays (numpy, or anything :func:`numpy.asarray` accepts), draws
on a :class:`~matplotlib.figure.Figure` with the non-interactive ``Agg`` canvas (pyplot and
its global figure list are not used, so nothing opens a window, figures need no closing and
the user's matplotlib backend is left alone), returns the figure and, when ``save`` is
given, also writes it there (the format follows the extension, e.g. ``.png`` or ``.pdf``;
``save`` is checked, and its folder created, before anything is drawn).

Shapes: T time steps, D features, H forecast steps, L latent channels, S samples.
Times are numbers or datetimes: datetime64, or zone-aware datetimes (such as the index that
the estimator returns for zone-aware input), drawn in their zone's wall clock. Names,
titles and labels are drawn as written (:func:`_plain`: a ``$`` is not matplotlib's mathtext).
:func:`plot_kernels` also takes a fitted GPVAE, whose kernels it draws in the data's time
units (its ``kernel_summary``) rather than in training steps.

Example::

    res = model.impute(X[:1])
    fig = plot_imputation(times, X[0], res.mean[0], res.lower[0], res.upper[0],
                          feature_names=model.feature_names_, save="imputation.png")
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gpvae.errors import ShapeError, ValidationError
from gpvae.estimator.anomaly import runs_of, time_gaps
from gpvae.estimator.backtest import BacktestResult
from gpvae.kernels import Product, Sum

if TYPE_CHECKING:
    from gpvae.estimator import GPVAE
    from gpvae.estimator.kernel_report import TimeUnit

__all__ = [
    "plot_anomalies",
    "plot_backtest",
    "plot_forecast",
    "plot_history",
    "plot_imputation",
    "plot_kernels",
    "plot_latents",
    "plot_samples",
]

_OBSERVED = "#1f1f1f"
_MODEL = "#1f77b4"
_TRUTH = "#d62728"
_FLAG = "#d62728"
#: At most this many stacked panels in one figure (features, channels or origins).
MAX_PANELS = 12


def _as_2d(a: Any, name: str, rows: int | None = None) -> np.ndarray:
    """A float64 (T, D) array; a (T,) array becomes (T, 1)."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ShapeError(f"{name}: expected shape (T, D) or (T,), found {arr.shape}")
    if rows is not None and arr.shape[0] != rows:
        raise ShapeError(f"{name}: expected {rows} rows (time steps), found shape {arr.shape}")
    return arr


def _times(t: Any, name: str) -> np.ndarray:
    """A (T,) time axis: numbers or datetimes, kept as given for matplotlib.

    Zone-aware datetimes (a pandas index or column with a time zone, as the estimator
    returns for zone-aware input, or an array of :class:`datetime.datetime`) are drawn in
    their own zone's wall clock, as datetime64[ns] without the zone (matplotlib would draw
    them in UTC).
    """
    return _times_and_elapsed(t, name)[0]


def _times_and_elapsed(t: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_times` and the same times as elapsed time, in which to measure the spacing:
    the UTC of zone-aware datetimes (their wall clock jumps at a clock change: an hour of
    15-minute steps that is not there), else the axis itself."""
    arr = np.asarray(t)
    if arr.ndim != 1:
        raise ShapeError(f"{name}: expected a 1-D array of times (T,), found shape {arr.shape}")
    elapsed = None
    if arr.dtype.kind == "O" and all(isinstance(v, datetime.datetime) for v in arr):
        try:
            stamps = pd.DatetimeIndex(arr)
        except (TypeError, ValueError) as err:  # several zones, or zones and none
            raise ValidationError(
                f"{name}: expected datetimes all in one time zone or all without one, found "
                f"a mix ({err})"
            ) from None
        if stamps.tz is not None:
            elapsed = stamps.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[ns]")
            stamps = stamps.tz_localize(None)  # the wall clock of the zone
        arr = stamps.to_numpy(dtype="datetime64[ns]")
    if arr.dtype.kind not in "biufM":
        raise ValidationError(
            f"{name}: expected numeric or datetime times (datetime64, or datetimes with a "
            f"time zone), found {arr.dtype}"
        )
    return arr, arr if elapsed is None else elapsed


def _axis_and_elapsed(
    t: Any, name: str, given: Any, given_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_times_and_elapsed` of ``t``, with the elapsed times replaced by ``given``
    (the argument ``given_name``, of ``t``'s shape) when it is not None."""
    axis, elapsed = _times_and_elapsed(t, name)
    if given is not None:
        elapsed = _times(given, given_name)
        if elapsed.shape != axis.shape:
            raise ShapeError(
                f"{given_name}: expected shape {axis.shape} like {name}, found {elapsed.shape}"
            )
    return axis, elapsed


def _run_extent(
    t: np.ndarray, first: int, last: int, gaps: np.ndarray | None = None
) -> tuple[Any, Any]:
    """The stretch of time that the steps ``first..last`` (inclusive) of ``t`` cover, to shade
    a run of flagged or labelled steps: from half a step before the first to half a step
    after the last, a half-step being half the spacing to the neighbouring time on that side
    (at either end of the series, the spacing to the one neighbour there). A run of one step
    is as wide as the step; a series of one time gets a unit step (1, or a day for dates).
    Across a gap (``gaps``, :func:`gpvae.estimator.anomaly.time_gaps`) the half-step is half
    the median spacing: a band does not cover rows missing from the data."""
    if t.dtype.kind == "M":
        t = t.astype("datetime64[ns]")  # halving whole days would round to nothing
        unit: Any = np.timedelta64(1, "D")
    else:
        t = t.astype(np.float64)
        unit = 1.0
    if len(t) == 1:
        return t[0] - unit / 2, t[0] + unit / 2
    spacing = np.diff(t)
    if gaps is not None and gaps.any():
        median = np.median(spacing.astype(np.float64 if unit == 1.0 else np.int64))
        spacing = np.where(gaps, np.asarray(median).astype(spacing.dtype), spacing)
    before = spacing[first - 1] if first > 0 else spacing[0]
    after = spacing[last] if last < len(t) - 1 else spacing[-1]
    return t[first] - before / 2, t[last] + after / 2


def _check_same(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ShapeError(f"{name_b}: expected shape {a.shape} like {name_a}, found {b.shape}")


def _names(names: Sequence[str] | None, count: int, prefix: str) -> list[str]:
    if names is None:
        return [f"{prefix} {j}" for j in range(count)]
    out = [str(n) for n in names]
    if len(out) != count:
        raise ShapeError(f"feature_names: expected {count} names, found {len(out)}")
    return out


def _plain(text: str) -> str:
    """``text`` (a feature, series or site name, a title or label given) to be drawn as
    written: each ``$`` escaped, which matplotlib would otherwise read as the start or end of
    mathtext (``NO$_2$`` drawn as a subscript; a lone ``$`` or ``$x_$`` failed when the
    figure was drawn)."""
    return str(text).replace("$", r"\$")


def _lone(count: int) -> dict[str, Any]:
    """The options of a line through ``count`` points: a marker when there is one point (a
    line through one point has no length, and is not drawn)."""
    return {"marker": "o", "ms": 4} if count == 1 else {}


def _band(ax: Axes, t: np.ndarray, lower: Any, upper: Any, **style: Any) -> None:
    """An interval band between ``lower`` and ``upper`` over the times ``t``; at one time, also
    a bar from ``lower`` to ``upper`` (a band over one time has no width, and is not drawn)."""
    ax.fill_between(t, lower, upper, **style)
    if len(t) == 1:
        ax.vlines(t, lower, upper, color=style.get("color"), alpha=style.get("alpha"), lw=6)


def _legend_above(ax: Axes, fontsize: Any = "small") -> None:
    """The legend of ``ax`` in one row above it, off the data: at a fixed corner inside it hid
    the data there (a detector's highest alarm, the last observed values), and matplotlib's
    ``loc="best"`` searches every point for a free spot (slow over 1e5 steps, and there may
    be none)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            handles,
            labels,
            loc="lower left",
            bbox_to_anchor=(0.0, 1.0),
            ncol=len(handles),
            fontsize=fontsize,
            frameon=False,
            borderaxespad=0.2,
        )


def _figure(width: float, height: float) -> Figure:
    """A new figure on an Agg canvas (not registered with pyplot)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _panels(
    count: int,
    title: str | None,
    what: str,
    noun: str = "feature",
    *,
    above: int = 0,
    advice: str | None = None,
    width: float = 10.0,
) -> tuple[Figure, list[Axes]]:
    """A figure of stacked panels sharing the x axis: ``above`` panels, then one per ``noun``
    of the argument ``what`` (``count`` of them; at most :data:`MAX_PANELS` in all).

    ``advice`` ends the error for too many panels (default: plot a subset of the nouns).
    """
    most = MAX_PANELS - above
    if count + above < 1:
        raise ShapeError(f"{what}: expected at least one {noun} to plot, found none")
    if count > most:
        advice = advice or f"plot a subset of the {noun}s"
        raise ValidationError(
            f"{what}: expected at most {most} {noun}s (one panel each), found {count}; {advice}"
        )
    fig = _figure(width, 1.0 + 2.1 * (count + above))
    axes = fig.subplots(count + above, 1, sharex=True, squeeze=False)
    if title:
        fig.suptitle(_plain(title))
    return fig, [ax for row in axes for ax in row]


def _concise_dates(fig: Figure) -> None:
    """Give the date axes of ``fig`` matplotlib's concise tick labels (``Mar 02``, ``06:00``,
    the year or day once at the end): the default full dates run into each other on a
    panel of a few hundred hours."""
    for ax in fig.axes:
        if isinstance(ax.xaxis.get_major_formatter(), mdates.AutoDateFormatter):
            locator = ax.xaxis.get_major_locator()
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


#: The extensions ``save`` may end in: the formats matplotlib writes from the Agg canvas.
SAVE_FORMATS = tuple(sorted(FigureCanvasAgg.get_supported_filetypes()))


def _save_path(save: str | os.PathLike[str] | None) -> Path | None:
    """``save`` checked before anything is drawn (None: no file): a file name whose
    extension is one of :data:`SAVE_FORMATS` (matplotlib would otherwise fail after
    drawing, or write ``name`` without one to ``name.png``), in a folder that exists or is
    created now."""
    if save is None:
        return None
    path = Path(os.fspath(save))
    ext = path.suffix.lower().lstrip(".")
    if ext not in SAVE_FORMATS:
        shown = ", ".join(f".{f}" for f in SAVE_FORMATS)
        raise ValidationError(
            f"save: expected a file name ending in one of {shown}, found {str(path)!r} "
            f"({'no extension' if not ext else f'unknown extension .{ext}'})"
        )
    if path.is_dir():
        raise ValidationError(f"save: expected a file name, found the directory {str(path)!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValidationError(
            f"save: expected a file in a folder that exists or can be created, found "
            f"{str(path)!r} ({err.strerror or err})"
        ) from None
    return path


def _write(fig: Figure, path: Path | None) -> Figure:
    """Write ``fig`` to ``path`` (from :func:`_save_path`; None: nowhere)."""
    if path is not None:
        try:
            fig.savefig(path, dpi=110)
        except OSError as err:
            raise ValidationError(
                f"save: expected a file that can be written, found {str(path)!r} "
                f"({err.strerror or err})"
            ) from None
    return fig


def _finish(fig: Figure, path: Path | None) -> Figure:
    _concise_dates(fig)
    fig.align_ylabels()
    return _write(fig, path)


def plot_imputation(
    times: Any,
    values: Any,
    mean: Any,
    lower: Any,
    upper: Any,
    *,
    truth: Any | None = None,
    feature_names: Sequence[str] | None = None,
    level: float | None = 0.9,
    title: str | None = "Imputation",
    time_label: str = "time",
    save: str | os.PathLike[str] | None = None,
) -> Figure:
    """One series: the imputed mean with its interval band over the observed points.

    Args:
        times: (T,) times (numbers or datetimes).
        values: (T, D) the input, NaN where missing (drawn as points).
        mean: (T, D) imputed mean (equal to ``values`` where observed).
        lower: (T, D) lower interval bound.
        upper: (T, D) upper interval bound.
        truth: optional (T, D) true values of entries hidden on purpose (NaN elsewhere),
            drawn as red crosses, e.g. to check an imputation in a benchmark.
        feature_names: D names for the panel labels.
        level: the interval's probability, for the legend (None: unnamed).
        title: figure title.
        time_label: x-axis label.
        save: optional path to write the figure to.

    Returns:
        The figure: one panel per feature.
    """
    path = _save_path(save)
    t = _times(times, "times")
    y = _as_2d(values, "values", len(t))
    m = _as_2d(mean, "mean", len(t))
    lo = _as_2d(lower, "lower", len(t))
    up = _as_2d(upper, "upper", len(t))
    for arr, nm in ((m, "mean"), (lo, "lower"), (up, "upper")):
        _check_same(y, arr, "values", nm)
    tr = None if truth is None else _as_2d(truth, "truth", len(t))
    if tr is not None:
        _check_same(y, tr, "values", "truth")
    names = _names(feature_names, y.shape[1], "feature")
    band = "interval" if level is None else f"{level:.0%} interval"
    fig, axes = _panels(y.shape[1], title, "values")
    for j, ax in enumerate(axes):
        _band(ax, t, lo[:, j], up[:, j], color=_MODEL, alpha=0.25, lw=0, label=band)
        ax.plot(t, m[:, j], color=_MODEL, lw=1.2, label="imputed mean", **_lone(len(t)))
        obs = ~np.isnan(y[:, j])
        ax.plot(t[obs], y[obs, j], ".", color=_OBSERVED, ms=3, label="observed")
        if tr is not None:
            hid = ~np.isnan(tr[:, j])
            ax.plot(t[hid], tr[hid, j], "x", color=_TRUTH, ms=3.5, mew=1.0, label="hidden truth")
        ax.set_ylabel(_plain(names[j]))
        ax.grid(alpha=0.3)
    _legend_above(axes[0])
    axes[-1].set_xlabel(_plain(time_label))
    return _finish(fig, path)


def plot_forecast(
    history_times: Any,
    history: Any,
    future_times: Any,
    mean: Any,
    lower: Any,
    upper: Any,
    *,
    levels: Sequence[float] | None = None,
    truth: Any | None = None,
    feature_names: Sequence[str] | None = None,
    title: str | None = "Forecast",
    time_label: str = "time",
    save: str | os.PathLike[str] | None = None,
    context: int | None = None,
    history_elapsed: Any | None = None,
) -> Figure:
    """A fan chart: the history (its line broken where values are missing and across gaps
    in its times), then the forecast mean with nested interval bands.

    Args:
        history_times: (T,) times of the history.
        history: (T, D) observed history, NaN where missing (or (T,) for one feature).
        future_times: (H,) forecast times.
        mean: (H, D) forecast mean, or (H,) for one feature.
        lower: (H, D) lower bound, or (K, H, D) for K nested bands (widest first looks best);
            (H,) when ``mean`` is.
        upper: same shape as ``lower``.
        levels: K probabilities of the bands, for the legend.
        truth: optional (H, D) true future values, drawn as red points.
        feature_names: D names.
        title: figure title.
        time_label: x-axis label.
        save: optional path to write the figure to.
        context: draw only the last ``context`` steps of the history (None: all of it; a
            long history leaves the forecast a few pixels at the right edge).
        history_elapsed: (T,) the history's times as elapsed time (numbers or datetimes,
            e.g. UTC), in which its gaps are found, for ``history_times`` on a clock that
            jumps at clock changes (a wall clock: 15-minute steps from 01:45 to 03:00 when
            the clocks go forward are no gap). None: ``history_times``, or their UTC when
            zone-aware.

    Returns:
        The figure: one panel per feature.
    """
    path = _save_path(save)
    whole = isinstance(context, (int, np.integer)) and not isinstance(context, bool)
    if context is not None and (not whole or context < 1):
        raise ValidationError(
            f"context: expected a positive whole number of steps or None, found {context!r}"
        )
    th, elapsed = _axis_and_elapsed(
        history_times, "history_times", history_elapsed, "history_elapsed"
    )
    tf = _times(future_times, "future_times")
    y = _as_2d(history, "history", len(th))
    m = _as_2d(mean, "mean", len(tf))
    lo = np.asarray(lower, dtype=np.float64)
    up = np.asarray(upper, dtype=np.float64)
    if np.ndim(mean) == 1 and lo.ndim == 1 and up.ndim == 1:  # one feature, like mean
        lo, up = lo[:, None], up[:, None]
    if lo.ndim == 2:
        lo, up = lo[None], up[None]
    if lo.ndim != 3 or lo.shape[1:] != m.shape:
        raise ShapeError(f"lower: expected shape {m.shape} or (K, *{m.shape}), found {lo.shape}")
    _check_same(lo, up, "lower", "upper")
    if m.shape[1] != y.shape[1]:
        raise ShapeError(f"mean: expected {y.shape[1]} features like history, found {m.shape}")
    if levels is not None and len(levels) != lo.shape[0]:
        raise ShapeError(f"levels: expected {lo.shape[0]} levels (one per band), found {levels}")
    tr = None if truth is None else _as_2d(truth, "truth", len(tf))
    if tr is not None:
        _check_same(m, tr, "mean", "truth")
    names = _names(feature_names, y.shape[1], "feature")
    if context is not None:
        th, y, elapsed = th[-context:], y[-context:], elapsed[-context:]
    th, y = _broken(th, y, elapsed)
    fig, axes = _panels(y.shape[1], title, "history")
    for j, ax in enumerate(axes):
        # NaN breaks the line: a missing stretch is not drawn as observed data
        ax.plot(th, y[:, j], ".-", color=_OBSERVED, ms=3, lw=0.6, label="history")
        for k in range(lo.shape[0]):
            label = None
            if levels is not None:
                label = f"{levels[k]:.0%} interval"
            elif k == 0:
                label = "interval"
            alpha = 0.18 + 0.2 * k / max(1, lo.shape[0] - 1)
            _band(ax, tf, lo[k, :, j], up[k, :, j], color=_MODEL, alpha=alpha, lw=0, label=label)
        ax.plot(tf, m[:, j], color=_MODEL, lw=1.5, label="forecast mean", **_lone(len(tf)))
        if tr is not None:
            ax.plot(tf, tr[:, j], "o", color=_TRUTH, ms=3, label="truth")
        if len(th) and len(tf):
            ax.axvline(tf[0], color="grey", ls=":", lw=1)
        ax.set_ylabel(_plain(names[j]))
        ax.grid(alpha=0.3)
    _legend_above(axes[0])
    axes[-1].set_xlabel(_plain(time_label))
    return _finish(fig, path)


def _broken(
    t: np.ndarray, y: np.ndarray, elapsed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``t`` and the rows ``y`` with a row of NaN halfway through each gap of the times (in a
    regularly sampled series, a spacing over twice the median spacing,
    :func:`gpvae.estimator.anomaly.time_gaps`: rows missing; an irregular series has none),
    so that a line through them is broken there, not drawn straight across as if observed.

    ``elapsed``: the same times as elapsed time, in which the spacing is measured (default
    ``t``): a wall clock's jump at a clock change is no gap."""
    dated = t.dtype.kind == "M"
    tt = t.astype("datetime64[ns]") if dated else t.astype(np.float64)
    gaps = np.flatnonzero(time_gaps(tt if elapsed is None else elapsed))
    if not len(gaps):
        return t, y
    step = np.diff(tt)
    mid = tt[gaps] + step[gaps] / 2
    return np.insert(tt, gaps + 1, mid), np.insert(y, gaps + 1, np.nan, axis=0)


def plot_anomalies(
    times: Any,
    scores: Any,
    threshold: float | None,
    *,
    flagged: Any | None = None,
    values: Any | None = None,
    feature_names: Sequence[str] | None = None,
    labels: Any | None = None,
    title: str | None = "Anomaly scores",
    time_label: str = "time",
    score_label: str = "score",
    save: str | os.PathLike[str] | None = None,
    times_elapsed: Any | None = None,
) -> Figure:
    """The anomaly-score timeline with the threshold, the flagged intervals (red bands on
    the score panel) and, when given, the labelled anomalies (orange bands on every panel).
    A band covers its run of steps: from half a step before the first to half a step after
    the last (so a run of one step is as wide as a step). A gap in the times (in a regularly
    sampled series, a spacing over twice the median, :func:`gpvae.estimator.anomaly.time_gaps`:
    rows missing; an irregular series has none) breaks the lines and ends a run, as in
    :func:`gpvae.estimator.anomaly.flagged_intervals`: no band is drawn over missing rows.

    Args:
        times: (T,) times.
        scores: (T,) score per step (higher = more anomalous; NaN where nothing observed).
        threshold: steps with a score above it are flagged (red); None: no threshold line
            (``flagged`` is then required).
        flagged: optional (T,) flagged steps, when they are not the steps whose score is
            above ``threshold`` (e.g. ``gpvae detect``'s alarm with the threshold stored by
            fit compares another score with it).
        values: optional (T, D) data; one extra panel per feature marks the flagged steps.
        feature_names: D names for the value panels.
        labels: optional (T,) known anomalies (true / 1 inside a labelled anomaly).
        title: figure title.
        time_label: x-axis label.
        score_label: the legend's name of the curve (``gpvae detect`` draws its ``alarm``),
            also the score axis' label (for "score": "anomaly score").
        save: optional path to write the figure to.
        times_elapsed: (T,) the times as elapsed time, in which the gaps are found, for
            ``times`` on a clock that jumps at clock changes (as ``plot_forecast``'s
            ``history_elapsed``). None: ``times``, or their UTC when zone-aware.

    Returns:
        The figure: the score panel on top, then the value panels.
    """
    path = _save_path(save)
    t, elapsed = _axis_and_elapsed(times, "times", times_elapsed, "times_elapsed")
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != t.shape:
        raise ShapeError(f"scores: expected shape {t.shape} like times, found {s.shape}")
    y = None if values is None else _as_2d(values, "values", len(t))
    D = 0 if y is None else y.shape[1]
    names = _names(feature_names, D, "feature") if y is not None else []
    if flagged is not None:
        flagged = np.asarray(flagged).astype(bool)
        if flagged.shape != t.shape:
            raise ShapeError(f"flagged: expected shape {t.shape} like times, found {flagged.shape}")
    elif threshold is not None:
        flagged = np.nan_to_num(s, nan=-np.inf) > threshold
    else:
        raise ValidationError("threshold: expected a number when flagged is not given, found None")
    known = None
    if labels is not None:
        known = np.asarray(labels).astype(bool)
        if known.shape != t.shape:
            raise ShapeError(f"labels: expected shape {t.shape} like times, found {known.shape}")
    gaps = time_gaps(elapsed)
    fig, axes = _panels(D, title, "values", above=1)
    ax = axes[0]
    for a, b in runs_of(flagged, gaps):
        ax.axvspan(*_run_extent(t, a, b, gaps), color=_FLAG, alpha=0.15, lw=0)
    if known is not None:
        for k, (a, b) in enumerate(runs_of(known, gaps)):
            for axis in axes:
                axis.axvspan(
                    *_run_extent(t, a, b, gaps),
                    color="orange",
                    alpha=0.2,
                    lw=0,
                    label="labelled anomaly" if k == 0 and axis is ax else None,
                )
    tb, sb = _broken(t, s[:, None], elapsed)  # NaN across gaps: the line breaks there
    ax.plot(tb, sb[:, 0], color=_MODEL, lw=0.9, label=score_label, **_lone(len(t)))
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax.plot(t[flagged], s[flagged], "o", color=_FLAG, ms=4, label=f"flagged ({flagged.sum()})")
    # the axis names the curve drawn, as the legend does ("alarm": gpvae detect's)
    ax.set_ylabel("anomaly score" if score_label == "score" else _plain(score_label))
    ax.grid(alpha=0.3)
    _legend_above(ax)
    if y is not None:
        yb = _broken(t, y, elapsed)[1]
        for j in range(D):
            ax = axes[1 + j]
            ax.plot(tb, yb[:, j], ".-", color=_OBSERVED, ms=2, lw=0.5, label="data")
            ax.plot(
                t[flagged], y[flagged, j], "o", color=_FLAG, ms=4, mfc="none", label="flagged step"
            )
            ax.set_ylabel(_plain(names[j]))
            ax.grid(alpha=0.3)
        _legend_above(axes[1])
    axes[-1].set_xlabel(_plain(time_label))
    return _finish(fig, path)


def plot_latents(
    times: Any,
    mean: Any,
    var: Any,
    *,
    title: str | None = "Latent paths (posterior mean ± 2 sd)",
    time_label: str = "time",
    save: str | os.PathLike[str] | None = None,
) -> Figure:
    """Posterior latent paths of one series: mean ± 2 standard deviations per channel.

    Args:
        times: (T,) times.
        mean: (T, L) posterior mean of the latent channels.
        var: (T, L) posterior marginal variance.
        title: figure title.
        time_label: x-axis label.
        save: optional path to write the figure to.

    Returns:
        The figure: one panel per latent channel.
    """
    path = _save_path(save)
    t = _times(times, "times")
    m = _as_2d(mean, "mean", len(t))
    v = _as_2d(var, "var", len(t))
    _check_same(m, v, "mean", "var")
    if (v < 0).any():
        raise ValidationError("var: expected non-negative variances, found negative values")
    sd = np.sqrt(v)
    fig, axes = _panels(m.shape[1], title, "mean", "latent channel", width=9.0)
    for j, ax in enumerate(axes):
        _band(
            ax,
            t,
            m[:, j] - 2 * sd[:, j],
            m[:, j] + 2 * sd[:, j],
            color=_MODEL,
            alpha=0.25,
            lw=0,
            label="± 2 sd",
        )
        ax.plot(t, m[:, j], color=_MODEL, lw=1.1, label="posterior mean", **_lone(len(t)))
        ax.set_ylabel(f"z{j}")
        ax.grid(alpha=0.3)
    _legend_above(axes[0])
    axes[-1].set_xlabel(_plain(time_label))
    return _finish(fig, path)


def plot_kernels(
    kernels: Sequence[torch.nn.Module] | GPVAE,
    max_lag: float | None = None,
    *,
    num_points: int = 200,
    title: str | None = "Learned kernels k(τ)",
    lag_label: str | None = None,
    save: str | os.PathLike[str] | None = None,
) -> Figure:
    """The learned covariance k(τ) = k(0, τ) of each latent channel's 1-D kernel.

    Args:
        kernels: L kernels (``model.prior.kernels``), each callable as ``k(x1, x2)`` on
            (N, 1) and (M, 1) tensors, returning (N, M), drawn in the model's time units
            (training steps); or a fitted :class:`~gpvae.GPVAE`, whose latent channels'
            kernels are drawn in the data's time units: the lag axis, and the legend's
            lengthscales and periods as :meth:`~gpvae.GPVAE.kernel_summary` gives them, each
            with its unit (hours for dates and durations, days when the lags shown reach 48
            hours; steps of the grid for calendar data; the time column's own units for
            numbers). A periodic kernel's lengthscale, relative to its period, has no unit.
        max_lag: largest lag τ to draw, in the model's time units for kernels, in the
            data's (hours for dates and durations) for a GPVAE (None: one that shows the
            longest period and lengthscale of the kernels, see :func:`_lag_shown`).
        num_points: grid size over [0, max_lag].
        title: figure title.
        lag_label: x-axis label (default ``lag τ``, with its unit for a GPVAE:
            ``lag τ (days)``).
        save: optional path to write the figure to.

    Returns:
        The figure: one curve per channel, labelled with its kernel term by term
        (``Matern32 (ℓ=2.9) + Periodic (ℓ=0.8, p=365)``), and k(τ)/k(0) (the correlation)
        on the right.

    Raises:
        ValidationError: a GPVAE fitted on sites (its kernels act on space and time), or
            a bad ``max_lag``.
    """
    from gpvae.estimator import GPVAE
    from gpvae.estimator.kernel_report import TimeUnit

    path = _save_path(save)
    unit = TimeUnit(1.0, "")  # the axis's units per model step, and their name
    rows: list[list[list[dict[str, Any]]]] | None = None  # channel, leaf: kernel_summary's
    if isinstance(kernels, GPVAE):
        ks, unit, rows = _in_data_units(kernels)
    elif isinstance(kernels, Iterable):
        ks = list(kernels)
    else:
        hint = ": draw a member's, e.g. best_member()'s" if hasattr(kernels, "members_") else ""
        raise ValidationError(
            f"kernels: expected kernels or a fitted GPVAE, found {type(kernels).__name__}{hint}"
        )
    if not ks:
        raise ShapeError("kernels: expected at least one kernel, found none")
    if max_lag is None:
        max_lag = _lag_shown(ks) * unit.factor
    if not (isinstance(max_lag, (int, float)) and math.isfinite(max_lag) and max_lag > 0):
        raise ValidationError(f"max_lag: expected a positive finite number, found {max_lag!r}")
    steps = float(max_lag) / unit.factor  # the largest lag in the model's time units
    shown = unit
    if unit.name == "hours" and max_lag >= 48.0:  # as kernel_summary's lines read them
        shown = TimeUnit(unit.factor / 24.0, "days")
    first = next(iter(ks[0].parameters()), None)
    dtype = first.dtype if first is not None else torch.float32
    device = first.device if first is not None else torch.device("cpu")
    tau = torch.linspace(0.0, steps, num_points, dtype=dtype, device=device)[:, None]
    zero = torch.zeros(1, 1, dtype=dtype, device=device)
    columns = 1 if len(ks) <= 3 else 2
    fig = _figure(11.0, 4.2 + 0.2 * math.ceil(len(ks) / columns))  # and the legend's rows
    ax_k, ax_r = fig.subplots(1, 2)
    if title:
        fig.suptitle(_plain(title))
    x = tau[:, 0].cpu().double().numpy() * shown.factor
    if lag_label is None:
        lag_label = f"lag τ ({shown.name})" if shown.name else "lag τ"
    cmap = matplotlib.colormaps["tab10" if len(ks) <= 10 else "tab20"]
    with torch.no_grad():
        for j, k in enumerate(ks):
            cov = k(tau, zero)[:, 0].detach().cpu().double().numpy()  # (num_points,)
            color = cmap(j % cmap.N)
            values = None if rows is None else iter(rows[j])
            label = _kernel_label(k, values, unit, shown)
            ax_k.plot(x, cov, color=color, lw=1.3, label=f"z{j}: {label}")
            ax_r.plot(x, cov / cov[0] if cov[0] > 0 else cov, color=color, lw=1.3)
    ax_k.set_xlabel(_plain(lag_label))
    ax_k.set_ylabel("k(τ)")
    ax_k.set_title("covariance")
    ax_r.set_xlabel(_plain(lag_label))
    ax_r.set_ylabel("k(τ) / k(0)")
    ax_r.set_title("correlation")
    ax_r.set_ylim(min(-0.05, ax_r.get_ylim()[0]), 1.05)
    for ax in (ax_k, ax_r):
        ax.grid(alpha=0.3)
    # below both panels: inside the covariance's, the labels of a sum of kernels ran out of
    # the figure on the left and over the curves (8 channels in 2 columns)
    handles, labels = ax_k.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=columns, fontsize="small")
    return _finish(fig, path)


def _in_data_units(
    model: GPVAE,
) -> tuple[list[torch.nn.Module], TimeUnit, list[list[list[dict[str, Any]]]]]:
    """A fitted model's latent kernels, the data's unit of one model step
    (:func:`~gpvae.estimator.kernel_report.time_unit`) and, per channel and leaf kernel (in
    the order of :func:`_leaves`), the rows of its :meth:`~gpvae.GPVAE.kernel_summary`."""
    from gpvae.estimator.kernel_report import time_unit

    if model.spatial_ is not None:
        raise ValidationError(
            "kernels: expected kernels or a GPVAE fitted on time series, found one fitted on "
            "sites (fit(..., coords=...)), whose kernels act on space and time"
        )
    kernels: list[torch.nn.Module] = list(model.model_.prior.kernel_list)
    table = model.kernel_summary().to_dict("records")
    rows: list[list[list[dict[str, Any]]]] = []
    for j in range(len(kernels)):
        terms: dict[str, list[dict[str, Any]]] = {}
        for row in table:
            if row["source"] == f"latent {j}":
                terms.setdefault(row["term"], []).append(row)
        rows.append(list(terms.values()))
    return kernels, time_unit(model.scaler_, None), rows


def _kernel_label(
    kernel: torch.nn.Module,
    rows: Iterator[list[dict[str, Any]]] | None = None,
    unit: TimeUnit | None = None,
    shown: TimeUnit | None = None,
) -> str:
    """``Matern32 (ℓ=2.9)``: the class and, when scalar, the lengthscale and period; a sum or
    product term by term, as ``gpvae fit`` lists the kernels (``Matern32 (ℓ=2.9) + Periodic
    (ℓ=0.8, p=365)``, not ``Sum``).

    With ``rows`` (each leaf kernel's rows of :meth:`~gpvae.GPVAE.kernel_summary`, in the
    order of :func:`_leaves`) the values are the table's, in the data's units: one in
    ``unit`` (the table's time unit, e.g. hours) is given in ``shown`` (the lag axis's
    unit, e.g. days) and names it (``ℓ=2.5 days``); one without a unit as it is.
    """
    if isinstance(kernel, Sum | Product):
        sign = " + " if isinstance(kernel, Sum) else " × "
        terms = [_kernel_label(k, rows, unit, shown) for k in kernel.terms]
        if isinstance(kernel, Product):  # a sum inside a product in brackets
            terms = [f"({t})" if isinstance(k, Sum) else t for t, k in zip(terms, kernel.terms)]
        return sign.join(terms)
    parts = []
    found = {r["parameter"]: r for r in next(rows)} if rows is not None else {}
    for name, symbol in (("lengthscale", "ℓ"), ("period", "p")):
        row = found.get(name)  # an ARD one has rows name[0], name[1], ...: not shown
        if row is not None and unit is not None and shown is not None and row["unit"]:
            value = row["value"] * shown.factor / unit.factor
            parts.append(f"{symbol}={value:.3g} {shown.name}")
        elif row is not None:
            parts.append(f"{symbol}={row['value']:.3g}")
        elif rows is None:
            value = getattr(kernel, name, None)
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                parts.append(f"{symbol}={float(value):.3g}")
    return type(kernel).__name__ + (f" ({', '.join(parts)})" if parts else "")


def _lag_shown(kernels: Sequence[torch.nn.Module]) -> float:
    """A largest lag that shows every kernel's longest scale: 1.5 periods of its longest
    period and 3 of its longest lengthscale (where a Matérn or RBF correlation has fallen to
    a few percent; a periodic kernel's lengthscale is relative to its period, not a lag), at
    least 1."""
    longest = 1.0
    for kernel in kernels:
        for leaf in _leaves(kernel):
            period = getattr(leaf, "period", None)
            if isinstance(period, torch.Tensor):
                longest = max(longest, 1.5 * float(period.detach().max()))
                continue
            scale = getattr(leaf, "lengthscale", None)
            if isinstance(scale, torch.Tensor):
                longest = max(longest, 3.0 * float(scale.detach().max()))
    return longest


def _leaves(kernel: torch.nn.Module) -> list[torch.nn.Module]:
    """The kernels that a sum or product of kernels is made of (``kernel`` itself if none)."""
    if isinstance(kernel, Sum | Product):
        return [leaf for k in kernel.terms for leaf in _leaves(k)]
    return [kernel]


def plot_samples(
    times: Any,
    samples: Any,
    *,
    feature_names: Sequence[str] | None = None,
    max_samples: int = 5,
    title: str | None = "Samples from the model",
    time_label: str = "time",
    save: str | os.PathLike[str] | None = None,
) -> Figure:
    """Series drawn from the generative model (prior latents through the decoder).

    Args:
        times: (T,) times.
        samples: (S, T, D) sampled series.
        feature_names: D names.
        max_samples: draw at most this many samples.
        title: figure title.
        time_label: x-axis label.
        save: optional path to write the figure to.

    Returns:
        The figure: one panel per feature, one line per sample.
    """
    path = _save_path(save)
    whole = isinstance(max_samples, (int, np.integer)) and not isinstance(max_samples, bool)
    if not whole or max_samples < 1:
        raise ValidationError(f"max_samples: expected a positive integer, found {max_samples!r}")
    t = _times(times, "times")
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim != 3 or s.shape[1] != len(t):
        raise ShapeError(f"samples: expected shape (S, {len(t)}, D), found {s.shape}")
    names = _names(feature_names, s.shape[2], "feature")
    fig, axes = _panels(s.shape[2], title, "samples")
    shown = min(max_samples, s.shape[0])
    cmap = matplotlib.colormaps["tab10"]
    for j, ax in enumerate(axes):
        for i in range(shown):
            ax.plot(
                t,
                s[i, :, j],
                color=cmap(i % 10),
                lw=0.9,
                alpha=0.85,
                label=f"sample {i}",
                **_lone(len(t)),
            )
        ax.set_ylabel(_plain(names[j]))
        ax.grid(alpha=0.3)
    _legend_above(axes[0])
    axes[-1].set_xlabel(_plain(time_label))
    return _finish(fig, path)


def plot_history(
    history: Sequence[dict[str, float]],
    *,
    keys: Sequence[str] = ("loss", "val_score"),
    title: str | None = "Training",
    save: str | os.PathLike[str] | None = None,
) -> Figure:
    """Training curves: selected per-epoch values against the epoch.

    Args:
        history: one mapping per finished epoch (``model.history_``), e.g.
            ``{"loss": 1.2, "val_score": 1.3, ...}``.
        keys: the entries to draw (those missing from ``history`` are skipped, and so is
            ``val_score`` of a fit without validation: it is the training loss again).
        title: figure title.
        save: optional path to write the figure to.

    Returns:
        The figure: one line per key.
    """
    path = _save_path(save)
    rows = list(history)
    drawn = [k for k in keys if rows and all(k in r for r in rows)]
    if "val_score" in drawn and "loss" in drawn and not any(_validated(r) for r in rows):
        drawn.remove("val_score")
    if not drawn:
        raise ValidationError(
            f"history: expected per-epoch mappings with one of the keys {list(keys)}, found "
            f"{sorted(rows[0]) if rows else 'no epochs'}"
        )
    fig = _figure(7.0, 4.0)
    ax = fig.subplots()
    if title:
        ax.set_title(_plain(title))
    epochs = np.arange(1, len(rows) + 1)
    for key in drawn:
        ax.plot(epochs, [float(r[key]) for r in rows], marker=".", lw=1.2, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss / validation score" if "val_score" in drawn else "loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _finish(fig, path)


def _validated(record: Mapping[str, float]) -> bool:
    """Whether a history record's ``val_score`` is a validation score: its ``validated``
    marker, or in histories written before the marker was kept, a score that differs from
    the epoch's training loss (without validation the loop records the loss again)."""
    if "validated" in record:
        return bool(record["validated"])
    score, loss = float(record["val_score"]), float(record["loss"])
    return not (score == loss or (math.isnan(score) and math.isnan(loss)))


def plot_backtest(
    result: BacktestResult,
    feature: int | str = 0,
    series: int = 0,
    context: int | None = None,
    title: str | None = None,
    save: str | os.PathLike[str] | None = None,
    *,
    origins: Sequence[int] | None = None,
    time_label: str = "time",
) -> Figure:
    """Fan charts of a rolling-origin backtest, one panel per origin, for one feature.

    Each panel shows the ``context`` steps of history before the origin (None: three
    horizons), the forecast mean, the 10-90% band, the 90% interval (5-95%) and the truth.

    Args:
        result: a :class:`~gpvae.estimator.backtest.BacktestResult`.
        feature: index or name of the feature.
        series: index of the series.
        context: steps of history drawn before each origin.
        title: figure title (None: the feature, the series when there are several, and
            that series' scores over every origin).
        save: optional path to write the figure to.
        origins: the origins to draw, as positions 0..n_origins-1 (None: every origin);
            at most 12.
        time_label: x-axis label.
    """
    path = _save_path(save)
    names = list(result.feature_names)
    if isinstance(feature, str):
        if feature not in names:
            raise ValidationError(f"feature: expected one of {names}, found {feature!r}")
        j = names.index(feature)
    else:
        j = int(feature)
        if not 0 <= j < len(names):
            raise ValidationError(f"feature: expected 0..{len(names) - 1}, found {feature}")
    n_org, H = result.mean.shape[1], result.mean.shape[2]
    if origins is None:
        drawn = list(range(n_org))
    else:
        drawn = [int(k) for k in origins]
        if not drawn or not all(0 <= k < n_org for k in drawn):
            raise ValidationError(
                f"origins: expected positions in 0..{n_org - 1} (one per origin), found "
                f"{list(origins)}"
            )
    ctx = 3 * H if context is None else int(context)
    hist_t = result.history_times[series]
    hist = result.history[series][:, j]
    q = result.quantiles[:, series, :, :, j]  # (K, n_org, H)
    if title is None:
        mase = np.nanmean(result.scores["scaled_error"][series, :, :, j])
        cov = np.nanmean(result.scores["covered"][series, :, :, j])
        n_series = result.mean.shape[0]  # the scores are the drawn series' (audit, session 47)
        which = names[j] if n_series == 1 else f"{names[j]} of series {series} of {n_series}"
        title = f"{which}: backtest over {n_org} origins (MASE {mase:.2f}, 90% coverage {cov:.0%})"
    fig, axes = _panels(
        len(drawn),
        title,
        "origins" if origins is not None else "result",
        "origin",
        advice=f"choose at most {MAX_PANELS} of the {n_org} origins with origins=[...]",
    )
    for k, ax in zip(drawn, axes):
        start = int(result.origins[series, k])
        lo_i = max(0, start - ctx)
        past_t = _times(hist_t[lo_i:start], "history_times")
        tf = _times(result.times[series, k], "times")
        ax.plot(past_t, hist[lo_i:start], ".-", color=_OBSERVED, ms=2, lw=0.6, label="history")
        _band(
            ax,
            tf,
            result.lower[series, k, :, j],
            result.upper[series, k, :, j],
            color=_MODEL,
            alpha=0.18,
            lw=0,
            label="90% interval",
        )
        _band(ax, tf, q[0, k], q[-1, k], color=_MODEL, alpha=0.3, lw=0, label="80% interval")
        mean = result.mean[series, k, :, j]
        ax.plot(tf, mean, color=_MODEL, lw=1.5, label="forecast mean", **_lone(len(tf)))
        ax.plot(tf, result.truth[series, k, :, j], "o", color=_TRUTH, ms=2.5, label="truth")
        ax.axvline(tf[0], color="grey", ls=":", lw=1)
        ax.set_ylabel(f"origin {k + 1}")
        ax.grid(alpha=0.3)
    _legend_above(axes[0])
    axes[-1].set_xlabel(_plain(time_label))
    return _finish(fig, path)
