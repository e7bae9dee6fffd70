"""Drawing pen trajectories (``seqlab.tasks.handwriting_data``: strokes, y up) to PNG files with
matplotlib: one stroke per line, the pen's samples as small dots, and optional titles."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def draw_strokes(ax, strokes, *, dots: bool = True, color: str = "k") -> None:
    """Draw ``strokes`` (a list of (N, 2) arrays) into the matplotlib axes ``ax``."""
    for st in strokes:
        ax.plot(st[:, 0], st[:, 1], "-", color=color, lw=1.6, solid_capstyle="round")
        if dots:
            ax.plot(st[:, 0], st[:, 1], ".", color="tab:red", ms=2)
    ax.set_aspect("equal")
    ax.axis("off")


def plot_strokes(path: str | Path, items: Sequence[tuple], *, columns: int = 1, dots: bool = True,
                 dpi: int = 110) -> Path:
    """Draw ``items`` ((strokes, title) pairs) in a grid of ``columns`` and save a PNG at
    ``path`` (written to a temporary name and renamed into place)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqlab.training.io import temporary_name

    n = max(len(items), 1)
    rows = (n + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 1.5 * rows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (strokes, title) in zip(axes.flat, items):
        draw_strokes(ax, strokes, dots=dots)
        if title:
            ax.set_title(title, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(temporary_name(path.name, "png"))
    fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


__all__ = ["draw_strokes", "plot_strokes"]
