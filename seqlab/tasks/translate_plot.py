"""The attention alignment of a translation: one row per output piece (</s> last), one column
per source piece, the weights alpha_(t,s) as a heat map (each row sums to 1). matplotlib with
the Agg backend; the PNG is written atomically (a temporary name, then renamed)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from seqlab.validation import fail


def plot_alignment(translation, path: str | os.PathLike, *, title: str = "") -> Path:
    """Draw ``translation.attention`` (a ``seqlab.tasks.translate.Translation``) into the PNG
    file ``path``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqlab.training.io import atomic_write_bytes

    w = translation.attention.detach().float().cpu()  # (T, S)
    rows, cols = translation.target_pieces, translation.source_pieces
    if w.dim() != 2 or w.shape != (len(rows), len(cols)):
        fail("attention", f"a ({len(rows)}, {len(cols)}) matrix (target pieces x source pieces)",
             f"shape {tuple(w.shape)}")
    fig, ax = plt.subplots(figsize=(1.2 + 0.42 * max(len(cols), 3), 1.2 + 0.36 * max(len(rows), 3)), dpi=110)
    try:
        im = ax.imshow(w.numpy(), cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_xlabel("source")
        ax.set_ylabel("translation")
        ax.set_title(title or f"{translation.source[:40]!r} -> {translation.text[:40]!r}", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.04, label="attention weight")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return atomic_write_bytes(Path(path), buf.getvalue())


__all__ = ["plot_alignment"]
