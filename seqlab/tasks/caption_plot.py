"""The attention of a caption, word by word: the image, then one panel per generated word
(and ``<eos>``) with its attention map alpha_t over the feature map, enlarged to the image's
size and laid over it (matplotlib, Agg backend; written atomically)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch


def plot_caption_attention(image: torch.Tensor, words: list[str], alphas: torch.Tensor, path: str | os.PathLike,
                           *, title: str | None = None) -> Path:
    """``image`` (3, S, S) in [0, 1], ``words`` (T,), ``alphas`` (T, H', W') -> a PNG at
    ``path`` with 1 + T panels (at most 8 per row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqlab.training.io import atomic_write_bytes

    if alphas.shape[0] != len(words):
        raise ValueError(f"alphas: expected one map per word ({len(words)}), received {alphas.shape[0]}")
    img = image.detach().cpu().numpy().transpose(1, 2, 0)  # (S, S, 3)
    S = img.shape[0]
    panels = 1 + len(words)
    cols = min(8, panels)
    rows = (panels + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 2.0 * rows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(img, interpolation="nearest")
    axes[0, 0].set_title("image", fontsize=8)
    for k, (w, a) in enumerate(zip(words, alphas), 1):
        ax = axes[k // cols, k % cols]
        a = a.detach().cpu().numpy()
        big = np.kron(a, np.ones((S // a.shape[0] + (S % a.shape[0] > 0),) * 2))[:S, :S]  # (S, S)
        ax.imshow(img * 0.45, interpolation="nearest")
        ax.imshow(big, cmap="inferno", alpha=0.6, vmin=0.0, vmax=max(float(a.max()), 1e-6),
                  interpolation="nearest")
        ax.set_title(f"{w}\nmax {a.max():.2f}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(Path(path), buf.getvalue())


__all__ = ["plot_caption_attention"]
