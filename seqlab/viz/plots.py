"""Small matplotlib helpers (Agg canvas, no pyplot state, PNG written atomically)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(width: float = 6.4, height: float = 4.0) -> Figure:
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def check_output_path(path: object, what: str = "path") -> str:
    """A file name whose folder exists (FileNotFoundError otherwise); not a directory."""
    from seqlab.validation import fail

    if not isinstance(path, (str, os.PathLike)):
        fail(what, "a file name", type(path).__name__)
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{what}: expected an existing directory, received {parent!r}")
    if os.path.isdir(path):
        fail(what, "a file name", f"the directory {path!r}")
    return path


def save_png(fig: Figure, path: str | os.PathLike) -> Path:
    """Write the figure atomically: a temporary file in the same folder, then a rename, so
    a reader never sees half a PNG. The file gets the usual permissions (0666 & ~umask)."""
    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def plot_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | os.PathLike, *,
                title: str = "", xlabel: str = "step", ylabel: str = "loss", logy: bool = False) -> Path:
    """One line per named (xs, ys) curve."""
    fig = new_figure()
    ax = fig.add_subplot(1, 1, 1)
    for name, (xs, ys) in curves.items():
        ax.plot(list(xs), list(ys), label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    return save_png(fig, path)
