"""The synthesiser's spectrogram beside eSpeak NG's, for one sentence (the tour and the benchmark)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_mel_pair(path: Path, ref: np.ndarray, ours: np.ndarray, text: str) -> None:
    """eSpeak's log-mel ``ref`` (T, n_mels) above ours (T', n_mels), on one colour scale from
    the silence floor, written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqlab.tasks.tts import MEL_FLOOR

    fig, axes = plt.subplots(2, 1, figsize=(9, 5.5))
    hi = max(float(ref.max()), float(ours.max()))
    for ax, x, title in ((axes[0], ref, "eSpeak NG"), (axes[1], ours, "seqlab tts, predicted durations")):
        ax.imshow(np.maximum(x, MEL_FLOOR).T, origin="lower", aspect="auto", cmap="magma", vmin=MEL_FLOOR, vmax=hi)
        ax.set_title(f"{title}: '{text}'", fontsize=9)
        ax.set_ylabel("mel band")
    axes[1].set_xlabel("frame (11.6 ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
