"""Tests of gpvae.app.spatial_plots: readable figures of predictions at sites."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import cbook
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection

from gpvae.app.spatial_plots import plot_site_map, plot_site_series
from gpvae.errors import ValidationError


def _label_gaps(ax: Axes) -> list[float]:
    """Pixels between neighbouring x tick labels (negative: they overlap)."""
    ax.figure.canvas.draw()  # type: ignore[union-attr]
    boxes = [lab.get_window_extent() for lab in ax.get_xticklabels() if lab.get_text()]
    return [b.x0 - a.x1 for a, b in itertools.pairwise(boxes)]


def test_site_series_dates_are_readable_and_the_time_axis_labelled() -> None:
    """Ten days of hours had full dates as tick labels, touching each other, and no x label."""
    t = pd.date_range("2013-03-01", periods=240, freq="h", tz="Asia/Shanghai")
    m = np.stack([np.sin(np.arange(240) / 10.0), np.cos(np.arange(240) / 10.0)], axis=1)
    fig = plot_site_series(t, m, m - 1, m + 1, feature_names=["PM2.5", "TEMP"], time_label="date")
    top, bottom = fig.axes
    assert bottom.get_xlabel() == "date"
    assert min(_label_gaps(bottom)) > 10.0
    assert not any(lab.get_visible() and lab.get_text() for lab in top.get_xticklabels())
    x0 = bottom.get_lines()[0].get_xdata()[0]
    assert x0 == np.datetime64("2013-03-01T00:00")  # the zone's wall clock, not UTC


def test_site_plots_check_save_and_make_its_folder(tmp_path: Path) -> None:
    t = np.arange(5.0)
    m = np.zeros((5, 1))
    with pytest.raises(ValidationError, match=r"^save: expected a file name ending in one of "):
        plot_site_series(t, m, m - 1, m + 1, save=tmp_path / "s.txt")
    plot_site_series(t, m, m - 1, m + 1, save=tmp_path / "new" / "s.png")
    assert (tmp_path / "new" / "s.png").is_file()
    xy = np.array([[0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(ValidationError, match=r"\(no extension\)$"):
        plot_site_map(xy, np.zeros(2), np.ones(2), ["a", "b"], save=tmp_path / "map")


def test_site_map_colours_a_single_width_by_its_value() -> None:
    """With one new site the width panel's colour bar came from an empty scatter and the
    star was painted the bar's lowest colour (vmin == vmax), reading as the bottom of it."""
    import matplotlib as mpl

    xy = np.array([[116.4, 39.98], [116.23, 40.22], [116.42, 39.93]])
    fig = plot_site_map(xy, [80.0, 90.0, 85.0], [np.nan, np.nan, 27.6], ["A", "B", "C"], [2])
    fig.canvas.draw()  # type: ignore[no-untyped-call]
    ax, bar = fig.axes[2], fig.axes[3]
    star = ax.collections[1]
    lo, hi = bar.get_ylim()
    assert lo < 27.6 < hi
    middle = mpl.colormaps["magma_r"](0.5)
    assert np.allclose(star.get_facecolors()[0], middle)
    values = fig.axes[0]
    assert values.collections[0].norm.vmin == 80.0
    assert values.collections[0].norm.vmax == 90.0


def test_site_and_feature_names_with_dollars_are_drawn_as_written(tmp_path: Path) -> None:
    """Site and feature names with ``$`` were read as mathtext ('$A$' drawn as italic A, a
    lone '$' in a pair of names failing when the figure was saved)."""
    xy = np.array([[0.0, 0.0], [1.0, 1.0]])
    fig = plot_site_map(xy, np.ones(2), np.ones(2), ["$A$", "B $x_"], feature="$ NO2 $")
    fig.savefig(tmp_path / "map.png")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert [_drawn(t) for t in texts] == ["$A$", "B $x_"]
    assert _drawn(fig.axes[0].get_title()) == "$ NO2 $ value"
    t = np.arange(5.0)
    m = np.zeros((5, 2))
    fig = plot_site_series(t, m, m - 1, m + 1, feature_names=["a$", "b$"], title="site $1$")
    fig.savefig(tmp_path / "series.png")
    assert [_drawn(ax.get_ylabel()) for ax in fig.axes] == ["a$", "b$"]
    assert _drawn(fig.get_suptitle()) == "site $1$"


def _drawn(text: str) -> str:
    """What matplotlib draws for a text: plain text (``\\$`` drawn as ``$``), not mathtext."""
    assert not cbook.is_math_text(text), f"{text!r} is drawn as mathtext"
    return text.replace(r"\$", "$")


def test_site_series_of_one_time_is_drawn_with_a_marker_and_a_bar() -> None:
    """A prediction at one time was a line through one point without a marker and a band of
    no width: nothing drawn."""
    fig = plot_site_series([0.0], [[2.0]], [[1.0]], [[3.0]], truth=[[2.5]])
    ax = fig.axes[0]
    assert all(ln.get_marker() == "o" for ln in ax.get_lines())
    bars = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert [seg[:, 1].tolist() for c in bars for seg in c.get_segments()] == [[1.0, 3.0]]


def test_site_series_refuses_more_panels_than_the_other_plots() -> None:
    """plot_site_series drew a panel per feature however many; the other plots refuse more
    than MAX_PANELS."""
    m = np.zeros((5, 13))
    with pytest.raises(ValidationError, match="expected at most 12 features"):
        plot_site_series(np.arange(5.0), m, m - 1, m + 1)


def test_site_series_legend_sits_above_the_panels() -> None:
    """The legend sat inside the top panel's upper right corner, over the series there."""
    m = np.stack([np.arange(30.0), np.arange(30.0)], axis=1)
    fig = plot_site_series(np.arange(30.0), m, m - 1, m + 1, title="site A")
    fig.canvas.draw()
    top = fig.axes[0]
    assert top.get_legend().get_window_extent().y0 >= top.get_window_extent().y1 - 0.5
    assert fig.get_suptitle() == "site A"


def test_site_names_stay_inside_the_map_and_clear_of_each_other(tmp_path: Path) -> None:
    """Names of sites near the right or top edge ran past the frame ('Shunyi', 'Huairou' cut
    by the colour bar), and the names of close sites ran into each other."""
    xy = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 0.5], [0.5, 1.0], [0.40, 0.3], [0.44, 0.3]])
    names = ["Gucheng", "Huairou_long_name", "Shunyi_long_name", "Dingling", "Guanyuan", "Dongsi"]
    fig = plot_site_map(xy, np.arange(6.0), np.full(6, np.nan), names, save=tmp_path / "m.png")
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for ax in fig.axes[::2]:
        frame = ax.get_window_extent(renderer)
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        assert sorted(t.get_text() for t in ax.texts) == sorted(names)
        for box in boxes:
            assert frame.x0 <= box.x0
            assert box.x1 <= frame.x1
            assert frame.y0 <= box.y0
            assert box.y1 <= frame.y1
        assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))


def test_a_crowded_map_leaves_out_the_names_that_would_overlap(tmp_path: Path) -> None:
    """With no free spot, a name was written over the others anyway: 40 sites in a small
    cluster gave a block of overlapping names over the markers. Names that fit are written,
    held-out sites' always, and a note says how many were left out."""
    rng = np.random.default_rng(0)
    xy = np.concatenate([rng.uniform(0, 0.05, (40, 2)), [[1.0, 1.0]]])
    names = [f"station_{k:02d}" for k in range(41)]
    held = [3, 40]
    fig = plot_site_map(
        xy, np.arange(41.0), np.full(41, np.nan), names, held_out=held, save=tmp_path / "m.png"
    )
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for ax in fig.axes[::2]:
        notes = [t for t in ax.texts if "left out" in t.get_text()]
        written = [t for t in ax.texts if t not in notes]
        shown = {t.get_text() for t in written}
        assert {"station_03", "station_40"} <= shown
        assert 2 < len(shown) < 41
        assert len(notes) == 1
        assert (
            notes[0].get_text()
            == f"{41 - len(shown)} of 41 site names left out where they would overlap"
        )
        boxes = [t.get_window_extent(renderer) for t in written]
        assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
