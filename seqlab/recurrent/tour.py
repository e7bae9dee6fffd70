"""The recurrent section's steps of ``seqlab tour`` (lecture order)."""

from __future__ import annotations

import math

import torch
from torch import nn

import seqlab

from seqlab.tour.context import TourContext, num
from seqlab.viz.plots import plot_curves
from seqlab.viz.report import Section


def elman(ctx: TourContext, sec: Section) -> str:
    from seqlab.recurrent import RNN
    from seqlab.recurrent.network import SequenceNetwork
    from seqlab.testing import recurrent_parity

    torch.manual_seed(ctx.seed)
    theirs = nn.RNN(3, 8, 2, batch_first=True).double()
    ours = RNN.from_torch(theirs)
    x = torch.randn(4, 12, 3, dtype=torch.float64)
    parity = recurrent_parity(ours, theirs, x, lengths=[12, 7, 1, 9]).worst

    # a task with items of different lengths t_i and one output at each item's end:
    # o = w^(o) . a_{t_i} + b^(o) should be the sum of the item's inputs
    net = SequenceNetwork(cell="rnn", input_size=1, hidden_size=16, output_size=1, output="last")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(ctx.seed)
    T = 12

    def batch(n=64):
        lengths = torch.randint(1, T + 1, (n,), generator=gen)
        xb = (torch.rand(n, T, 1, generator=gen) - 0.5) * (torch.arange(T)[None, :, None] < lengths[:, None, None])
        return xb, xb.sum(1), lengths

    val = batch(512)
    baseline = float(0.5 * ((val[1] - val[1].mean()) ** 2).mean())
    steps = 60 if ctx.quick else 600
    curve = []
    for s in range(1, steps + 1):
        loss, _ = net.loss(batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if s % 10 == 0:
            with torch.no_grad():
                curve.append((s, net.loss(val)[0].item()))
    final = curve[-1][1]
    sec.text("The Elman network: the activation a_t carries what the network has read so far, and each step "
             "mixes it with the next input.")
    sec.equation(r"a_{t+1} = g\left(w^{(a)} \cdot a_{t} + w^{(x)} \cdot x_{t+1} + b^{(a)}\right)",
                 r"o = g\left(w^{(o)} \cdot a_{t_{i}} + b^{(o)}\right) \quad \mathrm{or} \quad "
                 r"o_{t} = g\left(w^{(o)} \cdot a_{t} + b^{(o)}\right)")
    sec.text(
        f"seqlab.recurrent.RNN computes it; against torch.nn.RNN (2 layers, float64, items of lengths 12, 7, 1, "
        f"9) outputs, final states and every gradient agree to {parity:.1e}.")
    sec.text(
        f"A one-output Elman network (output unit at each item's own end t_i) learns the sum of "
        f"a sequence of 1..{T} numbers: validation cost {final:.4f} after {steps} Adam steps, "
        f"against {baseline:.4f} for always predicting the mean.")
    plot_curves({"Elman RNN": ([s for s, _ in curve], [v for _, v in curve]),
                 "predict the mean": ([curve[0][0], curve[-1][0]], [baseline, baseline])},
                ctx.out / "elman_sum.png", title="sum of a variable-length sequence, output at t_i",
                ylabel="validation cost 1/2 (o - y)^2", logy=True)
    sec.figure(ctx.out / "elman_sum.png", "Elman RNN learning a sum over variable-length items")
    return f"parity with nn.RNN {parity:.0e}; learns a running sum: cost {final:.4f} vs {baseline:.4f} baseline"


def bptt(ctx: TourContext, sec: Section) -> str:
    from seqlab.recurrent.bptt import compare_with_autograd

    rows, worst = [], 0.0
    configs = [dict(output="last", loss="squared"), dict(output="sequence", loss="cross_entropy"),
               dict(output="sequence", loss="squared", hidden_sizes=[5, 4]),
               dict(output="last", loss="cross_entropy", truncate=3)]
    for i, cfg in enumerate(configs):
        d = compare_with_autograd(seed=ctx.seed + i, **cfg)
        worst = max(worst, d)
        rows.append([cfg["output"], cfg["loss"], str(cfg.get("hidden_sizes", "random")),
                     str(cfg.get("truncate", "-")), f"{d:.1e}"])
    sec.text(
        "seqlab.recurrent.bptt computes the Elman network's forward pass and the lecture's chain-rule sums in "
        "NumPy, without autograd. With one output at the end, for example:")
    sec.equation(r"\dfrac{\partial C_{i}}{\partial w^{(a)}} = \dfrac{\partial C_{i}}{\partial o_{i}} "
                 r"\dfrac{\partial o_{i}}{\partial a_{t_{i}}} \dfrac{\partial a_{t_{i}}}{\partial w^{(a)}}, \qquad "
                 r"\dfrac{\partial a_{t+1}}{\partial w^{(a)}} = g'\left(\cdot\right) \left(a_{t} + w^{(a)} "
                 r"\dfrac{\partial a_{t}}{\partial w^{(a)}}\right)")
    sec.text("The table compares its gradients with PyTorch autograd in float64 (truncate k: the sums stop k "
             "steps back).")
    sec.table(["output", "cost", "layers", "truncate k", "max |BPTT - autograd|"], rows)
    return f"NumPy BPTT matches autograd to {worst:.1e} on {len(configs)} random networks"


def unfolding(ctx: TourContext, sec: Section) -> str:
    from seqlab.recurrent import unfold as uf
    from seqlab.viz.recurrent import plot_unfold

    lines = []
    sec.text("Unrolled over T steps, the network holds one copy of each weight per step; the gradient of the "
             "cost with respect to a weight is the sum over the copies on a path from the weight to the "
             "cost. For T = 3, which copies does it use?")
    sec.equation(r"\dfrac{\partial C}{\partial w^{(x)}} = \sum_{t=1}^{T} \dfrac{\partial C}"
                 r"{\partial w^{(x)}_{t}}")
    for output in ("last", "sequence"):
        r = uf.unfold(3, output=output, wrt="w_x")
        sec.code(uf.render_text(r))
        lines.append(f"{output}: {len(r.used)}")
    r = uf.unfold(3, output="sequence", wrt="w_x")
    plot_unfold(r, ctx.out / "unfold.png")
    sec.figure(ctx.out / "unfold.png", "dC/dw_x, T = 3, output per step: used copies in red")
    return "dC/dw_x at T = 3 uses " + ", ".join(lines) + " weight copies (read off the unrolled graph)"


def gradient_flow(ctx: TourContext, sec: Section) -> str:
    from seqlab.recurrent import gradflow as gf
    from seqlab.recurrent.clipping import clipping_demo, format_clipping
    from seqlab.recurrent.gradflow_report import format_table
    from seqlab.viz.recurrent import plot_clipping, plot_gradflow

    kw = dict(length=101, hidden_size=8, batch_size=4, repeats=1, scales=(0.5, 1.0)) if ctx.quick else {}
    result = gf.gradflow(**kw)
    sec.text("Back-propagated through k steps, the gradient is multiplied by one Jacobian per step: with "
             "small recurrent weights the product shrinks exponentially (vanishing gradient), with large ones "
             "it grows (exploding gradient). The gates of the LSTM and GRU add a path along which it survives.")
    sec.equation(r"\dfrac{\partial C}{\partial a_{T-k}} = \dfrac{\partial C}{\partial a_{T}} "
                 r"\prod_{t=T-k+1}^{T} \dfrac{\partial a_{t}}{\partial a_{t-1}}")
    sec.code(format_table(result))
    plot_gradflow(result, ctx.out / "gradflow.png")
    sec.figure(ctx.out / "gradflow.png", "gradient norms against steps back from T")
    demo = clipping_demo(**({"steps": 60} if ctx.quick else {}))
    sec.text("Clipping rescales the gradient when its norm exceeds a threshold, which keeps an exploding "
             "network trainable:")
    sec.code(format_clipping(demo))
    plot_clipping(demo, ctx.out / "clipping.png")
    sec.figure(ctx.out / "clipping.png", "exploding setting: without and with gradient clipping")
    k = max(k for k in gf.STEPS_BACK if k < result.length)
    at = {c.cell: c.at("grad", k) for c in result.curves if c.scale == 1.0}
    clip = ("clipping: unclipped " + ("diverges" if demo.unclipped.diverged else "trains")
            + ", clipped " + ("trains" if demo.clipped.trained else "does not train"))
    return (f"||dC/da_t|| at T-{k}, scale 1: " + ", ".join(f"{c} {v:.1e}" for c, v in at.items())
            + f"; {clip}")


def gated(ctx: TourContext, sec: Section) -> str:
    from seqlab.recurrent import GRU, LSTM
    from seqlab.recurrent.charlm import LN2
    from seqlab.testing import recurrent_parity

    torch.manual_seed(ctx.seed)
    worst = 0.0
    for cls, mod in ((LSTM, nn.LSTM(3, 6, 2, batch_first=True)), (GRU, nn.GRU(3, 6, 2, batch_first=True))):
        mod = mod.double()
        x = torch.randn(4, 9, 3, dtype=torch.float64)
        worst = max(worst, recurrent_parity(cls.from_torch(mod), mod, x, lengths=[9, 3, 6, 1]).worst)
    sec.text("The LSTM keeps a cell unit a^(c), a long-term memory that gates write to and read from; the GRU "
             "merges it into the hidden state with an update gate a^(z) and a reset gate a^(r).")
    sec.equation(
        r"a^{(f)}_{t} = g\left(w^{(f)} \cdot x_{t} + w^{(F)} \cdot a^{(h)}_{t-1} + b^{(f)}\right)"
        r"\quad (\mathrm{likewise}\ a^{(i)}, a^{(o)};\ a^{(g)}\ \mathrm{with}\ \tanh)",
        r"a^{(c)}_{t} = a^{(f)}_{t} \times a^{(c)}_{t-1} + a^{(i)}_{t} \times a^{(g)}_{t}, \qquad "
        r"a^{(h)}_{t} = a^{(o)}_{t} \times g\left(a^{(c)}_{t}\right)",
        r"a^{(h)}_{t} = \left(1 - a^{(z)}_{t}\right) \times a^{(h)}_{t-1} + a^{(z)}_{t} \times a^{(g)}_{t}, "
        r"\quad a^{(g)}_{t} = g\left(w^{(g)} \cdot x_{t} + w^{(G)} \cdot \left(a^{(r)}_{t} \times "
        r"a^{(h)}_{t-1}\right) + b^{(g)}\right)")
    sec.text(
        f"LSTM and GRU (PyTorch's reset-after form) match nn.LSTM / nn.GRU to {worst:.1e} in float64 "
        "(outputs, states and every gradient, packed variable-length batch). The lecture's GRU "
        "(reset before w^(G)) is the default elsewhere.")

    if ctx.quick:
        options = dict(preset="cpu-tiny", block_size=32, max_steps=12, batch_size=8, eval_every=12, eval_batches=2,
                       warmup_steps=2, log_every=4)
        steps = {}
    else:
        # planned by steps: about 50 s (RNN) and 75 s (LSTM, GRU) on 2 idle CPU cores, so the
        # cosine schedule ends; the guard stops only a machine several times slower
        steps = {"rnn": 3600, "lstm": 1800, "gru": 2200}
        options = dict(preset="cpu-small", block_size=64, batch_size=32, lr=2e-2, eval_every=300,
                       eval_batches=10, warmup_steps=100, log_every=50)
    sec.text("Each cell then learns a character language model of Python's reference manual "
             "(pydoc_data.topics, held-out validation text), trained for the planned number of steps; "
             "samples at temperature 0.8:")
    curves, rows, results = {}, [], {}
    for cell in ("rnn", "lstm", "gru"):
        cell_options = {**options, **({"max_steps": steps[cell]} if cell in steps else {})}
        result = ctx.train(cell, guard=400, **cell_options)
        results[cell] = result
        val = [(r["step"], r["loss"] / LN2) for r in result.history if r.get("split") == "val"]
        curves[cell] = ([s for s, _ in val], [v for _, v in val])
        text = seqlab.sample(result.run_dir, length=160 if not ctx.quick else 40, temperature=0.8, seed=0)
        sec.code(f"{cell} sample:\n{text}")
        best = None if result.best_val_loss is None else result.best_val_loss / LN2
        rows.append([cell, f"{result.steps:,}", f"{result.seconds:.0f}", num(result.best_val_loss), num(best)])
    _, lstm_run = seqlab.load(ctx.run_dir("lstm"))
    uniform = math.log2(lstm_run.tokenizer.vocab_size)  # bits/char of a uniform guess
    sec.table(["cell", "steps", "seconds", "best val loss (nats)", "best val bits/char"], rows)
    plot_curves(curves, ctx.out / "charlm.png", title="character LM on pydoc_data.topics (validation)",
                ylabel="bits per character")
    sec.figure(ctx.out / "charlm.png", "validation bits per character")
    best = {c: num(None if r.best_val_loss is None else r.best_val_loss / LN2, ".2f") for c, r in results.items()}
    return ("char LM val bits/char: " + ", ".join(f"{c} {v}" for c, v in best.items())
            + f" (uniform {uniform:.2f}); parity with nn.LSTM/nn.GRU {worst:.0e}")
