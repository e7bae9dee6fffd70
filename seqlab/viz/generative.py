"""The plots of the generative section: the diffusion model's denoising trajectory and the
VAE's latent map.

``plot_trajectory(snapshots, path, labels)``: rows = samples, columns = the snapshots
x_T .. x_0 of a reverse (denoising) run (``Diffusion.sample(..., trajectory=True)``).
``plot_latent_map(model, x, labels, path)``: the posterior means mu(x) of a VAE coloured by
label, and for a 2-D latent space the images decoded on a grid of z beside them. Each
writes a PNG atomically and returns its path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from seqlab.generative.common import check_images
from seqlab.generative.vae import VAE
from seqlab.validation import fail, shape_str
from seqlab.viz.plots import check_output_path, new_figure, save_png


# --------------------------------------------------------------------------- diffusion
def plot_trajectory(snapshots: Sequence[torch.Tensor], path: str | os.PathLike,
                    labels: Sequence[str] | None = None, *, title: str = "") -> Path:
    """Rows = samples, columns = the denoising snapshots x_T .. x_0, each (n, C, S, S) in [0, 1]
    with C = 1 (grey, dark = 1, like the other image plots) or 3 (RGB); ``labels``: one per column."""
    path = check_output_path(path, "path")
    if not isinstance(snapshots, (list, tuple)) or not snapshots:
        fail("snapshots", "a non-empty list of image tensors (n, C, S, S)", type(snapshots).__name__)
    first = snapshots[0]
    if not isinstance(first, torch.Tensor) or first.dim() != 4 or first.shape[1] not in (1, 3):
        fail("snapshots[0]", "a tensor (n, C, S, S) with C = 1 or 3",
             f"shape {shape_str(first)}" if isinstance(first, torch.Tensor) else type(first).__name__)
    n, C, S, _ = first.shape
    arrs = [check_images(x, C, S, f"snapshots[{k}]") for k, x in enumerate(snapshots)]
    for k, x in enumerate(arrs):
        if x.shape[0] != n:
            fail(f"snapshots[{k}]", f"{n} images (as snapshots[0])", f"shape {shape_str(x)}")
    K = len(arrs)
    if labels is not None and (isinstance(labels, str) or len(labels) != K):
        fail("labels", f"{K} column labels (one per snapshot)", repr(labels))
    gap = 1
    mosaic = np.ones((n * (S + gap) - gap, K * (S + gap) - gap, C))  # white gaps
    if C == 1:
        mosaic[:] = 0.0  # gray_r: 0 is white
    for k, x in enumerate(arrs):
        tiles = x.detach().cpu().double().permute(0, 2, 3, 1).numpy()  # (n, S, S, C)
        for r in range(n):
            mosaic[r * (S + gap):r * (S + gap) + S, k * (S + gap):k * (S + gap) + S] = tiles[r]
    fig = new_figure(0.5 * K + 0.4, 0.5 * n + (0.8 if title else 0.5))
    ax = fig.add_subplot(1, 1, 1)
    if C == 1:
        ax.imshow(mosaic[:, :, 0], cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(mosaic, interpolation="nearest")
    ax.xaxis.tick_top()
    if labels is not None:
        ax.set_xticks([k * (S + gap) + (S - 1) / 2 for k in range(K)])
        ax.set_xticklabels([str(lab) for lab in labels], fontsize=7)
    else:
        ax.set_xticks([])
    ax.set_yticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    return save_png(fig, path)


# --------------------------------------------------------------------------- VAE
def _mosaic(images: torch.Tensor, cols: int):
    """(n, C, S, S) -> an (rows T, cols T) or (rows T, cols T, 3) numpy array, T = S + 1
    (each tile gets a blank line below and to the right)."""
    n, C = images.shape[:2]
    rows = (n + cols - 1) // cols
    img = images.detach().cpu().float()
    img = img if C == 3 else img.mean(1, keepdim=True)  # RGB as is, anything else as grey
    img = F.pad(img, (0, 1, 0, 1))  # (n, c, T, T)
    S = img.shape[-1]
    pad = torch.zeros(rows * cols - n, img.shape[1], S, S)
    grid = torch.cat([img, pad]).view(rows, cols, -1, S, S).permute(0, 3, 1, 4, 2)  # (rows, S, cols, S, c)
    grid = grid.reshape(rows * S, cols * S, -1).numpy()
    return grid[..., 0] if grid.shape[-1] == 1 else grid


def plot_latent_map(model: VAE, x: torch.Tensor, labels, path: str | os.PathLike, *,
                    n: int = 15, span: float = 3.0) -> Path:
    """The posterior means mu(x) coloured by label, and for latent_size 2 the decoded grid
    (``decode_grid(n, span)``) beside it. For latent_size > 2 the means are projected to 2-D
    by PCA (an SVD of the centred means); for latent_size 1 they are plotted against the label."""
    if not isinstance(model, VAE):
        fail("model", "a VAE", type(model).__name__)
    path = check_output_path(path, "path")
    mu = model.latent_means(x).cpu().double()  # (B, L)
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    if y.shape[0] != mu.shape[0]:
        fail("labels", f"one label per image ({mu.shape[0]})", f"{y.shape[0]} labels")
    L = model.config.latent_size
    if L == 1:
        pts, axes, title = torch.stack([mu[:, 0], torch.as_tensor(y, dtype=torch.float64)], 1), ("z_1", "label"), \
            "posterior means mu(x)"
    elif L == 2:
        pts, axes, title = mu, ("z_1", "z_2"), "posterior means mu(x)"
    else:
        c = mu - mu.mean(0)  # (B, L) centred
        _, s, vh = torch.linalg.svd(c, full_matrices=False)
        pts = c @ vh[:2].T  # (B, 2) the two principal components
        share = float((s[:2] ** 2).sum() / (s ** 2).sum().clamp_min(1e-300))
        axes, title = ("PC 1", "PC 2"), f"PCA of the {L}-D posterior means ({share:.0%} of the variance)"
    grid = model.decode_grid(n, span) if L == 2 else None
    fig = new_figure(11.0 if grid is not None else 6.0, 5.0)
    ax = fig.add_subplot(1, 2 if grid is not None else 1, 1)
    sc = ax.scatter(pts[:, 0].numpy(), pts[:, 1].numpy(), c=y, cmap="tab10", s=6, alpha=0.8)
    fig.colorbar(sc, ax=ax, label="label")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title, fontsize=9)
    if grid is not None:
        ax2 = fig.add_subplot(1, 2, 2)
        mosaic = _mosaic(grid, n)
        ax2.imshow(mosaic, cmap="gray_r" if mosaic.ndim == 2 else None, vmin=0.0, vmax=1.0,
                   extent=(-span, span, -span, span), interpolation="nearest")
        ax2.set_xlabel("z_1")
        ax2.set_ylabel("z_2")
        ax2.set_title(f"decoded means on a {n}x{n} grid of z", fontsize=9)
    return save_png(fig, path)
