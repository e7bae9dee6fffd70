"""The plots of the Hopfield Networks section: capacity, recall, Boltzmann machines on parity.

``plot_capacity(results, path)``: mean final overlap against the load P/N, one curve per
(rule, N), with the theoretical 0.138 (:mod:`seqlab.energy.capacity`).
``plot_recall(result, path)``: the state along a recall trajectory as images over the energy
after every update (:mod:`seqlab.energy.images`). ``plot_parity_demo(result, path)``: the
exact KL(data || p(v)) per epoch for each number of hidden units
(:mod:`seqlab.energy.parity_demo`). Each writes a PNG atomically and returns its path.
``plot_rbm_pictures(model, data, out)``: an RBM's samples, filters and reconstructions, three
PNGs in a folder (their paths by name).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from seqlab.data.images import ImageData
from seqlab.energy.capacity import ALPHA_C, CapacityResult
from seqlab.energy.hopfield import RecallResult, as_bipolar
from seqlab.energy.images import SIZE, ImageRecall, check_image_shape
from seqlab.energy.parity_demo import DemoResult
from seqlab.energy.rbm import RBM
from seqlab.validation import check_int, fail
from seqlab.viz.plots import check_output_path, new_figure, plot_image_grid, save_png


def plot_capacity(results: CapacityResult | Sequence[CapacityResult], path: str | os.PathLike) -> Path:
    """Mean overlap against P/N, one curve per (rule, N), a vertical line at 0.138."""
    if isinstance(results, CapacityResult):
        results = [results]
    if isinstance(results, (str, bytes)) or not isinstance(results, Sequence) or not results \
            or not all(isinstance(r, CapacityResult) for r in results):
        fail("results", "a CapacityResult or a non-empty list of them", type(results).__name__)
    path = check_output_path(path, "path")
    fig = new_figure()
    ax = fig.add_subplot(1, 1, 1)
    styles = ["-", "--", ":", "-."]
    for r_i, res in enumerate(results):
        for N in res.n_units:
            label = f"N = {N}" if len(results) == 1 else f"{res.rule}, N = {N}"
            ax.plot(res.loads, res.overlap[N], styles[r_i % len(styles)], marker="o", ms=3, label=label)
    ax.axvline(ALPHA_C, color="k", lw=0.8, ls="--", label=r"$\alpha_c \approx 0.138$")
    ax.axhline(results[0].threshold, color="gray", lw=0.6, ls=":")
    ax.set_xlabel("load P / N")
    ax.set_ylabel("mean final overlap m")
    ax.set_title("Hopfield capacity" + (f" ({results[0].rule})" if len(results) == 1 else ""))
    ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_png(fig, path)


def plot_recall(result: RecallResult | ImageRecall, path: str | os.PathLike, *,
                shape: tuple[int, int] | None = None, stored: object = None, snapshots: int = 3) -> Path:
    """PNG: the state at the start, ``snapshots`` intermediate updates, the final state and
    (if given, or taken from an ``ImageRecall``) the stored target, over the energy E
    against the update number."""
    if isinstance(result, ImageRecall):
        stored = result.target if stored is None else stored
        shape = result.shape if shape is None else shape
        result = result.result
    shape = (SIZE, SIZE) if shape is None else shape
    if not isinstance(result, RecallResult):
        fail("result", "a RecallResult or ImageRecall", type(result).__name__)
    path = check_output_path(path, "path")
    snapshots = check_int(snapshots, "snapshots", minimum=0)
    states, energies = result.states, result.energies.detach().cpu().numpy()
    T = states.shape[0] - 1
    H, W = check_image_shape(tuple(shape) if isinstance(shape, list) else shape, states.shape[1])
    idx = sorted({0, *np.linspace(0, T, snapshots + 2).round().astype(int).tolist(), T})
    panels = [("start (t=0)" if t == 0 else (f"final (t={t})" if t == T else f"t={t}"), states[t]) for t in idx]
    if stored is not None:
        s = as_bipolar(stored)
        if s.shape != states.shape[1:]:
            fail("stored", f"shape ({states.shape[1]},)", f"shape {tuple(s.shape)}")
        panels.append(("stored", s))
    n = len(panels)
    fig = new_figure(max(6.4, 1.5 * n), 5.0)
    gs = fig.add_gridspec(2, n, height_ratios=[1.0, 1.1])
    for k, (title, s) in enumerate(panels):
        ax = fig.add_subplot(gs[0, k])
        ax.imshow(s.detach().cpu().numpy().reshape(H, W), cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = fig.add_subplot(gs[1, :])
    ax.plot(np.arange(T + 1), energies, lw=1.5)
    ax.set_xlabel("update")
    ax.set_ylabel("energy E")
    ax.grid(alpha=0.3)
    return save_png(fig, path)


def plot_parity_demo(result: DemoResult, path: str | os.PathLike) -> Path:
    """KL(data || p(v)) against epoch, one line per number of hidden units, with log 2
    marked (the best a machine without hidden units can do). PNG, atomic write."""
    if not isinstance(result, DemoResult):
        fail("result", "a DemoResult", type(result).__name__)
    path = check_output_path(path)
    fig = new_figure(6.4, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for k in result.hidden_sizes:
        ys = [max(y, 1e-6) for y in result.kl[k]]
        ax.plot(range(len(ys)), ys, lw=1.6, label=f"{k} hidden (final {result.final_kl[k]:.3g})")
    ax.axhline(result.log2, color="grey", ls="--", lw=1, label="log 2 (best without hidden units)")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("KL(data || p(v))  [nats]")
    ax.set_title(f"Boltzmann machine on {result.n_bits}-bit parity ({result.method}, lr = {result.lr:g}, "
                 f"momentum = {result.momentum:g})",
                 fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, path)


def plot_rbm_pictures(model: RBM, data: ImageData, out: str | os.PathLike, *, n: int = 40, steps: int = 1000,
                      seed: int = 0) -> dict[str, Path]:
    """samples.png (Gibbs chains from random starts), filters.png (the first hidden units'
    weights), reconstructions.png (test digits over their reconstructions), in the folder
    ``out`` (made if missing); returns their paths by name."""
    if not isinstance(model, RBM):
        fail("model", "an RBM", type(model).__name__)
    check_int(n, "n", minimum=1)
    check_int(steps, "steps", minimum=1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    side = data.side
    gen = torch.Generator(device=model.W.device).manual_seed(seed)
    _, pv = model.sample(n, steps=steps, generator=gen)
    paths = {"samples": plot_image_grid(pv, out / "samples.png", side=side,
                                        title=f"RBM samples: p(v | h) after {steps} Gibbs steps from random v")}
    k = min(40, model.config.hidden_size)
    paths["filters"] = plot_image_grid(model.W.detach()[:k], out / "filters.png", side=side, vmin=None, vmax=None,
                                       cmap="RdBu_r", title=f"weights W_j of the first {k} hidden units")
    te = data.split("test").x[:10].to(model.W)
    paths["reconstructions"] = plot_image_grid(torch.cat([te, model.reconstruct(te)]), out / "reconstructions.png",
                                               side=side, row_labels=["data", "recon."],
                                               title="test digits and their reconstructions p(v | p(h | v))")
    return paths
