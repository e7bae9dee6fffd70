"""Small matplotlib helpers (Agg canvas, no pyplot state, PNG written atomically)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from seqlab.training.io import atomic_write_bytes


def new_figure(width: float = 6.4, height: float = 4.0) -> Figure:
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def check_output_path(path: object, what: str = "path") -> str:
    """A file name a plot may be written to (``seqlab.paths.output_file``: not a folder, in a
    writable folder that exists), as a string; a ValueError naming ``what`` otherwise."""
    from seqlab.paths import output_file

    return str(output_file(path, what))


def save_png(fig: Figure, path: str | os.PathLike) -> Path:
    """Render the figure to PNG bytes, then write them atomically (``atomic_write_bytes``: a
    temporary file in the same folder, fsync, rename), so a reader never sees half a PNG. The
    file gets the usual permissions (0666 & ~umask)."""
    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def curves_figure(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, title: str = "",
                  xlabel: str = "step", ylabel: str = "loss", logy: bool = False) -> Figure:
    """The figure of ``plot_curves``: one line per named (xs, ys) curve; a curve of a single
    point (a run evaluated once) is drawn as a marker, and a curve with no point is named in
    the legend as "(no points)"."""
    from seqlab.validation import fail

    fig = new_figure()
    ax = fig.add_subplot(1, 1, 1)
    for name, (xs, ys) in curves.items():
        xs, ys = list(xs), list(ys)
        if len(xs) != len(ys):
            fail(f"curve {name!r}", "as many x as y values", f"{len(xs)} x and {len(ys)} y")
        ax.plot(xs, ys, marker="o" if len(xs) == 1 else None, label=name if xs else f"{name} (no points)")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(curves) > 1 or any(not list(xs) for xs, _ in curves.values()):
        ax.legend()
    ax.grid(alpha=0.3)
    return fig


def plot_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | os.PathLike, *,
                title: str = "", xlabel: str = "step", ylabel: str = "loss", logy: bool = False) -> Path:
    """``curves_figure`` written to ``path`` as PNG."""
    return save_png(curves_figure(curves, title=title, xlabel=xlabel, ylabel=ylabel, logy=logy), path)


def plot_image_grid(images, path: str | os.PathLike, *, side: int, cols: int = 10, title: str = "",
                    cmap: str = "gray_r", vmin: float | None = 0.0, vmax: float | None = 1.0,
                    row_labels: Sequence[str] | None = None) -> Path:
    """A grid of square images: ``images`` (n, side * side) (tensor or array), ``cols`` per row,
    drawn as one mosaic (one image call, fast for many tiles). ``vmin = vmax = None`` scales
    each image to its own range (for weight filters); empty cells are left blank."""
    import numpy as np

    from seqlab.validation import check_int, fail

    path = check_output_path(path, "path")
    check_int(side, "side", minimum=1)
    check_int(cols, "cols", minimum=1)
    arr = images.detach().cpu().double().numpy() if hasattr(images, "detach") else np.asarray(images, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != side * side or arr.shape[0] == 0:
        fail("images", f"a 2-D array (n >= 1, {side * side})", f"shape {tuple(arr.shape)}")
    n = arr.shape[0]
    if vmin is None or vmax is None:  # each tile to [0, 1] on its own range
        lo, hi = arr.min(1, keepdims=True), arr.max(1, keepdims=True)
        arr = (arr - lo) / np.where(hi > lo, hi - lo, 1.0)
        vmin, vmax = 0.0, 1.0
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    gap = 1
    mosaic = np.full((rows * (side + gap) - gap, cols * (side + gap) - gap), np.nan)
    for k in range(n):
        r, c = divmod(k, cols)
        mosaic[r * (side + gap):r * (side + gap) + side, c * (side + gap):c * (side + gap) + side] = \
            arr[k].reshape(side, side)
    fig = new_figure(0.55 * cols + (0.8 if row_labels else 0.2), 0.55 * rows + (0.5 if title else 0.2))
    ax = fig.add_subplot(1, 1, 1)
    import matplotlib

    cm = matplotlib.colormaps[cmap].with_extremes(bad="white")
    ax.imshow(np.ma.masked_invalid(mosaic), cmap=cm, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    if row_labels:
        ax.set_yticks([r * (side + gap) + (side - 1) / 2 for r in range(min(rows, len(row_labels)))])
        ax.set_yticklabels(list(row_labels)[:rows], fontsize=8)
    else:
        ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    return save_png(fig, path)
