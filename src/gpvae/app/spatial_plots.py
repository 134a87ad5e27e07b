"""Pictures of predictions at sites: a map and the series at one site.

Both take plain arrays, draw on a :class:`~matplotlib.figure.Figure` with the ``Agg`` canvas
(no pyplot, no window), return the figure and write it to ``save`` when given (format from
the extension).

Shapes: S sites, T times.

Example::

    res = model.predict_sites(neighbours, new_site)
    plot_site_map(xy, values, widths, names, held_out=[11], save="map.png")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from gpvae.app.plots import (
    MAX_PANELS,
    _band,
    _concise_dates,
    _legend_above,
    _lone,
    _plain,
    _save_path,
    _times,
    _write,
)
from gpvae.errors import ShapeError, ValidationError

__all__ = ["plot_site_map", "plot_site_series"]


def _finish(fig: Figure, path: Path | None) -> Figure:
    _concise_dates(fig)
    fig.tight_layout()
    return _write(fig, path)


def _colour_scale(values: np.ndarray) -> Normalize:
    """The colour scale of a panel's values: their range; a single value (one new site's
    interval width, say) gets a range of 10% about it, so its colour is the middle of the
    bar, which reads the value (with vmin == vmax it was painted the bottom colour)."""
    if values.size == 0:
        return Normalize(0.0, 1.0)
    lo, hi = float(values.min()), float(values.max())
    if hi > lo:
        return Normalize(lo, hi)
    pad = 0.05 * abs(lo) if lo != 0 else 0.5
    return Normalize(lo - pad, hi + pad)


def plot_site_map(
    coords: Any,
    value: Any,
    width: Any,
    names: Sequence[str],
    held_out: Sequence[int] = (),
    feature: str = "",
    axis_labels: tuple[str, str] = ("longitude", "latitude"),
    save: str | os.PathLike[str] | None = None,
) -> Figure:
    """Two maps of the sites: coloured by the predicted (or observed) value, and by the width
    of the prediction interval; held-out sites are drawn as stars with their names in bold.

    Args:
        coords: (S, 2) horizontal and vertical coordinates (e.g. longitude, latitude).
        value: (S,) value per site (e.g. the mean over a period).
        width: (S,) interval width per site (NaN where there is none, e.g. observed sites).
        names: S site names.
        held_out: indices of the predicted (held-out) sites.
        feature: the feature's name, for the titles.
        axis_labels: labels of the two axes.
        save: where to write the figure.
    """
    path = _save_path(save)
    xy = np.asarray(coords, dtype=float)
    v = np.asarray(value, dtype=float)
    w = np.asarray(width, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2 or v.shape != (len(xy),) or w.shape != (len(xy),):
        raise ShapeError(
            f"coords, value, width: expected (S, 2), (S,), (S,), found {xy.shape}, {v.shape}, "
            f"{w.shape}"
        )
    fig = Figure(figsize=(11.0, 4.8))
    canvas = FigureCanvasAgg(fig)
    held = np.zeros(len(xy), dtype=bool)
    held[list(held_out)] = True
    for k, (data, title, cmap) in enumerate(
        ((v, f"{feature} value", "viridis"), (w, f"{feature} 90% interval width", "magma_r"))
    ):
        ax = fig.add_subplot(1, 2, k + 1)
        ok = ~np.isnan(data)
        norm = _colour_scale(data[ok])
        ax.scatter(
            xy[ok & ~held, 0],
            xy[ok & ~held, 1],
            c=data[ok & ~held],
            cmap=cmap,
            s=90,
            edgecolors="k",
            norm=norm,
        )
        ax.scatter(
            xy[ok & held, 0],
            xy[ok & held, 1],
            c=data[ok & held],
            cmap=cmap,
            s=320,
            marker="*",
            edgecolors="red",
            linewidths=1.5,
            norm=norm,
        )
        ax.scatter(xy[~ok, 0], xy[~ok, 1], facecolors="none", edgecolors="grey", s=90)
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax)  # not from one scatter
        ax.set_title(_plain(title) + ("  (star: held out)" if held.any() else ""))
        ax.set_xlabel(_plain(axis_labels[0]))
        ax.set_ylabel(_plain(axis_labels[1]))
        ax.margins(0.08)
    fig.tight_layout()  # the axes' final size, in which the names are placed
    for ax in fig.axes[::2]:  # the maps (each followed by its colour bar)
        _name_sites(ax, xy, [str(n) for n in names], held, canvas.get_renderer())
    return _finish(fig, path)


#: Where a site's name goes from its marker, in points, best first: above right, above left,
#: below right, below left (with the text's alignment).
_NAME_SPOTS = ((4, 4, "left", "bottom"), (-4, 4, "right", "bottom"),
               (4, -4, "left", "top"), (-4, -4, "right", "top"))  # fmt: skip


def _name_sites(
    ax: Axes, xy: np.ndarray, names: list[str], held: np.ndarray, renderer: Any
) -> None:
    """Write each site's name by its marker on ``ax``, at the first spot of
    :data:`_NAME_SPOTS` where it stays inside the axes and clear of the names placed before
    (names ran past the frame at its right edge, and those of close sites ran into each
    other). A name with no such spot is left out, and a note in the map's corner says how
    many were (a crowded map's names covered each other and the markers); a held-out
    site's name is always written, held-out sites first: at the first spot that stays
    inside, else the first, clipped to the axes."""
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    left_out = 0
    for i in sorted(range(len(names)), key=lambda k: not held[k]):  # held-out sites first
        name = names[i]
        chosen = None
        for dx, dy, ha, va in _NAME_SPOTS:
            text = ax.annotate(
                _plain(name),
                xy[i],
                fontsize=7,
                xytext=(dx, dy),
                textcoords="offset points",
                ha=ha,
                va=va,
                fontweight="bold" if held[i] else "normal",
            )
            box = text.get_window_extent(renderer)
            inside = (
                box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0
                and box.y1 <= frame.y1
            )  # fmt: skip
            free = not any(box.overlaps(other) for other in placed)
            rank = 0 if inside and free else 1 if inside else 2
            if chosen is None or rank < chosen[0]:
                if chosen is not None:
                    chosen[1].remove()
                chosen = (rank, text, box)
            else:
                text.remove()
            if rank == 0:
                break
        assert chosen is not None
        rank, text, box = chosen
        if rank > 0 and not held[i]:  # no free spot inside: left out, counted
            text.remove()
            left_out += 1
            continue
        text.set_clip_on(rank == 2)  # a name that fits nowhere is cut at the frame
        placed.append(box)
    if left_out:
        ax.text(
            0.01,
            0.01,
            f"{left_out} of {len(names)} site names left out where they would overlap",
            transform=ax.transAxes,
            fontsize=6,
            color="dimgrey",
            ha="left",
            va="bottom",
        )


def plot_site_series(
    times: Any,
    mean: Any,
    lower: Any,
    upper: Any,
    truth: Any | None = None,
    feature_names: Sequence[str] | None = None,
    title: str = "",
    save: str | os.PathLike[str] | None = None,
    time_label: str = "time",
) -> Figure:
    """The predicted series of one site with its intervals (and the truth when known): one
    panel per feature (at most :data:`~gpvae.app.plots.MAX_PANELS`), sharing the time axis.

    Args:
        times: (T,) times (numbers or datetimes; zone-aware ones in their wall clock).
        mean, lower, upper: (T, D) prediction and interval.
        truth: (T, D) held-out values (NaN where missing), or None.
        feature_names: D names.
        title: the figure's title (e.g. the site).
        save: where to write the figure.
        time_label: the time axis' label.
    """
    path = _save_path(save)
    m = np.asarray(mean, dtype=float)
    lo, hi = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    if m.ndim == 1:
        m, lo, hi = m[:, None], lo[:, None], hi[:, None]
    T, D = m.shape
    t = _times(times, "times")
    if len(t) != T or lo.shape != m.shape or hi.shape != m.shape:
        raise ShapeError(f"times, mean, lower, upper: expected ({T},) and ({T}, {D}) each")
    names = list(feature_names) if feature_names is not None else [f"f{j}" for j in range(D)]
    if D > MAX_PANELS:
        raise ValidationError(
            f"mean: expected at most {MAX_PANELS} features (one panel each), found {D}; plot "
            "a subset of the features"
        )
    fig = Figure(figsize=(10.0, 1.9 * D + 0.9))
    FigureCanvasAgg(fig)
    axes = fig.subplots(D, 1, sharex=True, squeeze=False)[:, 0]
    for j, ax in enumerate(axes):
        _band(ax, t, lo[:, j], hi[:, j], color="C0", alpha=0.25, label="90% interval")
        ax.plot(t, m[:, j], color="C0", lw=1.2, label="prediction", **_lone(T))
        if truth is not None:
            tv = np.asarray(truth, dtype=float).reshape(T, -1)[:, j]
            ax.plot(t, tv, color="k", lw=0.8, label="held-out truth", **_lone(T))
        ax.set_ylabel(_plain(names[j]), fontsize=8)
        if j == 0:
            _legend_above(ax, fontsize=7)
            if title:
                fig.suptitle(_plain(title))
    axes[-1].set_xlabel(_plain(time_label))
    return _finish(fig, path)
