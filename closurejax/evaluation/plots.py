"""Figures (matplotlib); every figure is written atomically.

Figures are built as `matplotlib.figure.Figure` objects and rendered with the Agg canvas directly,
never through pyplot's global state: importing this module does not change the backend of a
notebook or an interactive session (inline plots keep working), and no figure is left open.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import ticker as mpl_ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from closurejax import atomic


def _figure(figsize: tuple[float, float]) -> Figure:
    """A pyplot-free figure on an Agg canvas."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> None:
    """Renders `fig` to PNG in memory and writes it atomically to `path`."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    atomic.write_bytes(path, buffer.getvalue())


def field_panels(
    fields: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    title: str = "",
    symmetric: Sequence[bool] | None = None,
    cmap: str = "RdBu_r",
) -> None:
    """One row of image panels `[n, n]`, each with its colour bar; symmetric colour limits by
    default (vorticity and closure terms are signed)."""
    names = list(fields)
    symmetric = [True] * len(names) if symmetric is None else list(symmetric)
    fig = _figure((3.2 * len(names), 3.0))
    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, name, sym in zip(axes[0], names, symmetric, strict=True):
        data = np.asarray(fields[name], np.float64)
        limit = float(np.abs(data).max()) or 1.0
        image = ax.imshow(
            data.T,
            origin="lower",
            cmap=cmap if sym else "viridis",
            vmin=-limit if sym else None,
            vmax=limit if sym else None,
            extent=(0, 1, 0, 1),
        )
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


def spectra(
    curves: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    title: str = "energy spectrum",
    reference_slope: float | None = -3.0,
) -> None:
    """Log–log energy spectra E(k) `[n/2+1]` (k = 0 skipped), with a k^slope guide line."""
    fig = _figure((4.5, 3.5))
    ax = fig.subplots()
    for name, curve in curves.items():
        curve = np.asarray(curve, np.float64)
        k = np.arange(len(curve))
        ax.loglog(k[1:], curve[1:], label=name)
    if reference_slope is not None and curves:
        first = np.asarray(next(iter(curves.values())), np.float64)
        k = np.arange(2, len(first))
        ax.loglog(
            k,
            first[2] * (k / 2.0) ** reference_slope,
            "k--",
            lw=0.8,
            label=f"k^{reference_slope:g}",
        )
    ax.set_xlabel("k")
    ax.set_ylabel("E(k)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def curves(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | os.PathLike,
    xlabel: str = "t",
    ylabel: str = "",
    title: str = "",
    logy: bool = False,
    styles: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Line plot of named curves `{label: (x [T], y [T])}` (e.g. error against time).

    `logy`: a log y axis, on which values ≤ 0 (e.g. a zero error at the start) are left out;
    `styles`: matplotlib line settings per label (e.g. `{"a": {"color": "C0", "ls": "--"}}`).
    """
    save_figure(curves_figure(series, xlabel, ylabel, title, logy, styles), path)


def curves_figure(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    xlabel: str = "t",
    ylabel: str = "",
    title: str = "",
    logy: bool = False,
    styles: Mapping[str, Mapping[str, Any]] | None = None,
) -> Figure:
    """The figure `curves` writes (same arguments, no path)."""
    fig = _figure((5.0, 3.5))
    ax = fig.subplots()
    for label, (x, y) in series.items():
        y = np.asarray(y, np.float64)
        if logy:
            y = np.where(y > 0, y, np.nan)
        ax.plot(np.asarray(x, np.float64), y, label=label, **dict((styles or {}).get(label, {})))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if series:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def field_grid(
    rows: Mapping[str, Sequence[np.ndarray]],
    column_titles: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
    cmap: str = "RdBu_r",
) -> None:
    """A grid of fields `[n, n]`: one row per name (e.g. reference / with closure / without),
    one column per title (e.g. a time); each column shares symmetric colour limits taken from
    the first row, so the rows compare directly."""
    names = list(rows)
    cols = len(column_titles)
    if any(len(rows[name]) != cols for name in names):
        raise ValueError(f"every row needs {cols} fields (one per column title)")
    fig = _figure((2.6 * cols, 2.5 * len(names)))
    axes = fig.subplots(len(names), cols, squeeze=False)
    for j in range(cols):
        limit = float(np.abs(np.asarray(rows[names[0]][j])).max()) or 1.0
        for i, name in enumerate(names):
            ax = axes[i, j]
            ax.imshow(
                np.asarray(rows[name][j], np.float64).T,
                origin="lower",
                cmap=cmap,
                vmin=-limit,
                vmax=limit,
                extent=(0, 1, 0, 1),
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(column_titles[j], fontsize=10)
            if j == 0:
                ax.set_ylabel(name, fontsize=10)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


def animation(
    frames: Mapping[str, np.ndarray],
    times: Sequence[float],
    path: str | os.PathLike,
    fps: int = 8,
    cmap: str = "RdBu_r",
) -> None:
    """An animated GIF of side-by-side fields `{name: [T, n, n]}` over `times` `[T]` (colour
    limits of the first field), written atomically (temp file + rename)."""
    from matplotlib import animation as mpl_animation

    names = list(frames)
    data = {name: np.asarray(frames[name], np.float64) for name in names}
    count = len(times)
    if any(v.shape[0] != count for v in data.values()):
        raise ValueError(f"every frame stack needs {count} frames (one per time)")
    limit = float(np.abs(data[names[0]]).max()) or 1.0
    fig = _figure((2.8 * len(names), 3.0))
    axes = fig.subplots(1, len(names), squeeze=False)
    images = []
    for ax, name in zip(axes[0], names, strict=True):
        images.append(
            ax.imshow(
                data[name][0].T,
                origin="lower",
                cmap=cmap,
                vmin=-limit,
                vmax=limit,
                extent=(0, 1, 0, 1),
            )
        )
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    label = fig.suptitle(f"t = {times[0]:.2f}")

    def draw(i: int) -> list:
        for image, name in zip(images, names, strict=True):
            image.set_data(data[name][i].T)
        label.set_text(f"t = {times[i]:.2f}")
        return images

    anim = mpl_animation.FuncAnimation(fig, draw, frames=count, blit=False)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp.gif")
    try:
        anim.save(tmp, writer=mpl_animation.PillowWriter(fps=fps))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


_SAMPLER_LABELS = {
    "euler_maruyama": "EM",
    "dpm_solver": "DPM",
    "heun_ode": "Heun",
    "predictor_corrector": "PC",
}
"""Short sampler names of the cost–accuracy figure's point labels."""


def cost_accuracy(
    entries: Sequence[Mapping], cost: str, path: str | os.PathLike, title: str = ""
) -> None:
    """Error against cost of closure models × samplers (`closurejax.evaluation.frontier`): one
    marker per model, each point labelled by sampler and NFE, the frontier (entries with
    "pareto" true) drawn as a dashed line. `entries`: dicts with "model", "sampler", "nfe",
    "ensemble_mean", "pareto" and the `cost` key (seconds per sample, log axis)."""
    fig = _figure((6.5, 4.2))
    ax = fig.subplots()
    models = list(dict.fromkeys(e["model"] for e in entries))
    markers = "os^vD<>ph*"
    for i, name in enumerate(models):
        mine = [e for e in entries if e["model"] == name]
        ax.scatter(
            [e[cost] for e in mine],
            [e["ensemble_mean"] for e in mine],
            marker=markers[i % len(markers)],
            label=name,
        )
        for e in mine:
            ax.annotate(
                f"{_SAMPLER_LABELS.get(e['sampler'], e['sampler'])} {e['nfe']}",
                (e[cost], e["ensemble_mean"]),
                fontsize=6,
                xytext=(3, 2),
                textcoords="offset points",
            )
    front = sorted((e[cost], e["ensemble_mean"]) for e in entries if e["pareto"])
    if front:
        ax.plot(*zip(*front, strict=True), "k--", lw=0.8, label="frontier")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(mpl_ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(mpl_ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(mpl_ticker.NullFormatter())
    ax.set_xlabel(f"seconds per closure sample ({cost})")
    ax.set_ylabel("relative error of the ensemble mean")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)
