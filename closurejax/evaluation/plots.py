"""Figures (matplotlib, headless Agg backend); every figure is written atomically."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from closurejax import atomic  # noqa: E402


def save_figure(fig: plt.Figure, path: str | os.PathLike, dpi: int = 120) -> None:
    """Renders `fig` to PNG in memory, writes it atomically to `path`, and closes it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
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
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), squeeze=False)
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
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
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
