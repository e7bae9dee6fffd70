"""The plots of the recurrent section: gradient flow, gradient clipping, the unfolded network.

``plot_gradflow(result, path)``: ||dC/da_t|| and ||da_T/da_t|| against the steps back T - t
(a :class:`~seqlab.recurrent.gradflow.GradFlowResult`); ``plot_clipping(demo, path)``: loss
and gradient norm per SGD step with and without clipping (a
:class:`~seqlab.recurrent.clipping.ClippingDemo`); ``plot_unfold(result, path)``: the
network unrolled over T steps with the weight copies one BPTT step uses in red (an
:class:`~seqlab.recurrent.unfold.UnfoldResult`; ``unfold.render_text`` is the same drawing
as text).  Each writes a PNG atomically and returns its path.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from matplotlib.lines import Line2D

from seqlab.recurrent.clipping import ClippingDemo
from seqlab.recurrent.gradflow import QUANTITIES, QUANTITY_LABEL, GradFlowResult
from seqlab.recurrent.unfold import UnfoldResult, copy_name, output_times, shown_times
from seqlab.validation import fail
from seqlab.viz.plots import check_output_path, new_figure, save_png


# --------------------------------------------------------------------------- gradient flow
_COLOURS = {"rnn": "#1f77b4", "lstm": "#d62728", "gru": "#2ca02c"}
_STYLES = ("-", "--", ":", "-.")


def plot_gradflow(result: GradFlowResult, path: str | os.PathLike) -> Path:
    """Two panels, ||dC/da_t|| and ||da_T/da_t||, log scale against the steps back T - t;
    one line per cell (colour) and scale (line style).  PNG, Agg canvas, atomic write."""
    if not isinstance(result, GradFlowResult):
        fail("result", "a GradFlowResult", type(result).__name__)
    path = check_output_path(path)
    fig = new_figure(12, 4.6)
    T = result.length
    back = list(range(T - 1, -1, -1))  # steps back for t = 1..T
    for i, q in enumerate(QUANTITIES):
        ax = fig.add_subplot(1, 2, i + 1)
        for c in result.curves:
            ys = [v if v > 0 else math.nan for v in (c.grad if q == "grad" else c.jac)]
            ax.plot(back, ys, color=_COLOURS.get(c.cell, "black"),
                    linestyle=_STYLES[result.scales.index(c.scale) % len(_STYLES)], lw=1.6,
                    label=f"{c.cell.upper()} s={c.scale:g}  (x{c.rate(q):.3f}/step)")
        ax.set_yscale("log")
        ax.set_xlabel("steps back from T  (T - t)")
        ax.set_ylabel(QUANTITY_LABEL[q])
        ax.set_title(("gradient of the cost w.r.t. the state a_t" if q == "grad"
                      else f"Jacobian da_T/da_t ({result.norm} norm)"), fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    gates = "default gates" if result.forget_bias is None else f"forget bias {result.forget_bias:g}"
    fig.suptitle(f"Vanishing and exploding gradients: first-symbol task, T = {T}, H = {result.hidden_size}, "
                 f"{gates}", fontsize=11)
    return save_png(fig, path)


# --------------------------------------------------------------------------- clipping
def plot_clipping(demo: ClippingDemo, path: str | os.PathLike) -> Path:
    """Loss per step (log scale) of both runs, and their gradient norms before clipping
    with the clipping threshold; an x marks where a run diverged.  PNG, atomic write."""
    if not isinstance(demo, ClippingDemo):
        fail("demo", "a ClippingDemo", type(demo).__name__)
    path = check_output_path(path)
    fig = new_figure(12, 4.4)
    s = demo.settings
    runs = ((demo.unclipped, "without clipping", "#d62728"), (demo.clipped, f"clipped at {s['clip']:g}", "#1f77b4"))
    for i, (key, label) in enumerate((("losses", "loss (cross-entropy)"), ("grad_norms", "gradient norm ||g||"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for run, name, colour in runs:
            ys = [v if (math.isfinite(v) and v > 0) else math.nan for v in getattr(run, key)]
            ax.plot(range(len(ys)), ys, color=colour, lw=1.4, label=name + (" (diverged)" if run.diverged else ""))
            if run.diverged_at is not None and run.diverged_at < len(ys) and math.isfinite(ys[run.diverged_at]):
                ax.plot([run.diverged_at], [ys[run.diverged_at]], "x", color=colour, ms=10, mew=2)
            elif run.stopped and ys:
                last = max((j for j, v in enumerate(ys) if math.isfinite(v)), default=None)
                if last is not None:
                    ax.plot([last], [ys[last]], "x", color=colour, ms=10, mew=2)
        if key == "grad_norms":
            ax.axhline(s["clip"], color="grey", ls="--", lw=1, label=f"clip threshold {s['clip']:g}")
        ax.set_yscale("log")
        ax.set_xlabel("SGD step")
        ax.set_ylabel(label)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Gradient-norm clipping: {s['nonlinearity']} RNN, w^(a) = {s['scale']:g} x orthogonal, "
                 f"first-symbol task T = {s['length']}, SGD lr {s['lr']:g}", fontsize=11)
    return save_png(fig, path)


# --------------------------------------------------------------------------- unfolding
_USED_COLOUR = "#d62728"
_UNUSED_COLOUR = "#9a9a9a"


def plot_unfold(result: UnfoldResult, path: str | os.PathLike) -> Path:
    """Draw the unrolled network with matplotlib (Agg canvas, no pyplot state): nodes
    x_t, a^(l)_t, o_t; every edge labelled by its weight copy, each bias beside its node;
    used copies in red.  PNG, written atomically; returns its path."""
    if not isinstance(result, UnfoldResult):
        fail("result", "an UnfoldResult", type(result).__name__)
    path = check_output_path(path, "png")

    used = set(result.used)
    L, T = result.layers, result.length
    times = shown_times(T)
    outs = output_times(result)
    dx, dy = 2.2, 1.6
    xs = {t: (c + 1) * dx for c, t in enumerate(times) if t is not None}
    gaps = [(c + 1) * dx for c, t in enumerate(times) if t is None]

    fig = new_figure(1.9 * (len(times) + 1) + 1.0, 1.25 * (L + 2) + 1.4)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(-0.8, (len(times) + 0.9) * dx)
    ax.set_ylim(-0.6, (L + 1) * dy + 0.7)

    def colour(name: str) -> str:
        return _USED_COLOUR if name in used else _UNUSED_COLOUR

    def draw_node(x: float, y: float, label: str, face: str) -> None:
        ax.text(x, y, label, ha="center", va="center", fontsize=11, zorder=3,
                bbox=dict(boxstyle="circle,pad=0.3", fc=face, ec="#333333"))

    def draw_edge(x0: float, y0: float, x1: float, y1: float, name: str) -> None:
        c = colour(name)
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), zorder=1,
                    arrowprops=dict(arrowstyle="-|>", color=c, lw=2.4 if name in used else 1.0,
                                    shrinkA=14, shrinkB=14))
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, name, ha="center", va="center", fontsize=7,
                color=c, fontweight="bold" if name in used else "normal", zorder=2,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none"))

    def draw_bias(x: float, y: float, name: str) -> None:
        ax.text(x + 0.3, y + 0.38, "+" + name, ha="left", va="center", fontsize=7,
                color=colour(name), fontweight="bold" if name in used else "normal")

    top = (L + 1) * dy
    for t, x in xs.items():
        draw_node(x, 0.0, f"$x_{{{t}}}$", "#cfe2f3")
        for l in range(1, L + 1):
            label = f"$a_{{{t}}}$" if L == 1 else f"$a^{{({l})}}_{{{t}}}$"
            draw_node(x, l * dy, label, "#d9ead3")
            draw_edge(x, (l - 1) * dy, x, l * dy, copy_name("w_x", t, l, L))
            draw_bias(x, l * dy, copy_name("b_a", t, l, L))
            prev = xs.get(t - 1, 0.0 if t == 1 else x - dx)
            draw_edge(prev, l * dy, x, l * dy, copy_name("w_a", t, l, L))
        if t in outs:
            draw_node(x, top, "$o$" if result.output == "last" else f"$o_{{{t}}}$", "#fce5cd")
            draw_edge(x, L * dy, x, top, copy_name("w_o", t))
            draw_bias(x, top, copy_name("b_o", t))
    for l in range(1, L + 1):
        draw_node(0.0, l * dy, "$0$", "#eeeeee")
        for g in gaps:
            ax.text(g, l * dy, "...", ha="center", va="center", fontsize=14)
    ax.set_title(f"dC/d{result.wrt}: {len(result.used)} weight copies used "
                 f"(T = {T}, output = {result.output}, {L} layer{'s' if L > 1 else ''})",
                 fontsize=11)
    ax.legend(handles=[Line2D([], [], color=_USED_COLOUR, lw=2.4, label="used copy"),
                       Line2D([], [], color=_UNUSED_COLOUR, lw=1.0, label="not used")],
              loc="upper left", fontsize=8, frameon=False)

    return save_png(fig, path)
