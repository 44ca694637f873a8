"""Figures: every function writes its file atomically and leaves matplotlib's global state alone."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from closurejax.evaluation import plots


def test_log_curves_leave_out_values_at_or_below_zero_and_take_line_styles() -> None:
    """An error that starts at 0 (the online error at t0) on a log axis: that point is left out,
    the rest drawn as given; `styles` sets each line's look."""
    y = np.array([0.0, 1e-3, 2e-2, 0.5])
    styles = {"b": {"color": "C3", "ls": "--"}}
    fig = plots.curves_figure(
        {"a": (np.arange(4), y), "b": (np.arange(4), -y)}, logy=True, styles=styles
    )
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    a, b = ax.get_lines()
    np.testing.assert_array_equal(a.get_ydata(), [np.nan, 1e-3, 2e-2, 0.5])
    assert np.isnan(b.get_ydata()).all() and b.get_linestyle() == "--"
    assert b.get_color() == "C3" and a.get_color() != "C3"
    linear = plots.curves_figure({"a": (np.arange(4), y)}).axes[0]
    assert linear.get_yscale() == "linear" and linear.get_lines()[0].get_ydata()[0] == 0.0


def test_every_figure_is_written(tmp_path) -> None:
    x = np.random.default_rng(0).normal(size=(5, 16, 16))
    plots.field_panels({"a": x[0], "b": x[1]}, tmp_path / "panels.png")
    plots.spectra({"a": np.abs(x[0, 0]) + 1e-3}, tmp_path / "spectra.png")
    plots.curves({"a": (np.arange(5), np.array([1.0, None, 2, 3, 4], float))}, tmp_path / "c.png")
    plots.field_grid({"r": list(x[:2]), "s": list(x[2:4])}, ["t1", "t2"], tmp_path / "grid.png")
    plots.animation({"r": x, "s": -x}, np.arange(5.0), tmp_path / "movie.gif")
    for name in ("panels.png", "spectra.png", "c.png", "grid.png"):
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and min(image.size) > 100, name
    with Image.open(tmp_path / "movie.gif") as movie:
        assert movie.n_frames == 5
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["panels.png", "spectra.png", "c.png", "grid.png", "movie.gif"]
    )  # no temp files left behind


def test_bad_shapes_are_refused(tmp_path) -> None:
    x = np.zeros((3, 8, 8))
    with pytest.raises(ValueError, match="every row needs 2 fields"):
        plots.field_grid({"r": list(x[:2]), "s": list(x[:1])}, ["a", "b"], tmp_path / "g.png")
    with pytest.raises(ValueError, match="needs 4 frames"):
        plots.animation({"r": x}, np.arange(4.0), tmp_path / "m.gif")
    assert not list(tmp_path.iterdir())


def test_import_keeps_the_backend_of_the_session() -> None:
    """A notebook's inline backend must survive `import closurejax.evaluation.plots`."""
    code = (
        "import matplotlib; matplotlib.use('svg'); "
        "from closurejax.evaluation import plots; "
        "import matplotlib.pyplot as plt; print(matplotlib.get_backend(), len(plt.get_fignums()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["svg", "0"]
