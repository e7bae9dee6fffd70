"""The gradient-flow widget's endpoint: ||dC/da_t|| over t for one cell and weight scale, and
what gradient clipping does to it.

``GET /api/gradflow?cell=rnn&scale=1&T=50&hidden=16&batch=8&seed=0&clipping=true&clip=1``

The curve is the ``grad`` curve of ``seqlab.recurrent.gradflow.gradflow([cell], [scale], T,
hidden, batch, seed, repeats=1)`` (computed from the same task, network and ``trace``, without
the Jacobian norms the widget does not draw), the measurement of ``seqlab gradflow --cells CELL
--scales S -T T --hidden-size H --batch-size B --repeats 1`` (the first-symbol task; the recurrent matrices are s times random
orthogonal matrices; the gated cells' memory path open, forget_bias 4, as the command's
default): the geometric mean over the B sequences of ||dC_i/da_{i,t}||, and its fitted factor
per step back.

Gradient clipping (lecture: exploding gradients; ``seqlab.recurrent.clipping``) acts on the
*parameter* gradient g = dC/dθ = Σ_t dC/da_t · ∂a_t/∂θ, never on the states: if ||g|| > c,
g <- g c/||g||. The endpoint computes g on the same network and batch (C = Σ_i C_i, the cost
whose dC/da_t is plotted), clips it with ``torch.nn.utils.clip_grad_norm_`` as the trainer and
the clipping demonstration do, and reports ||g|| before and after. Each term of the sum is
scaled by the same factor, so the clipped curve is the measured one times that factor: the
same slope, lower by a constant when ||g|| > c, and unchanged when ||g|| <= c.

Sizes are capped (T <= 200, H <= 32, B <= 16) so that a request takes well under a second.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from fastapi import APIRouter, Query

from seqlab.recurrent import gradflow as gf
from seqlab.recurrent.gradflow_report import finite_or_none
from seqlab.training.device import cpu_threads

router = APIRouter()

MAX_T = 200
MAX_HIDDEN = 32
MAX_BATCH = 16
SYMBOLS = 8  # the first-symbol task's kinds of symbol (seqlab gradflow's)
FORGET_BIAS = 4.0  # seqlab gradflow's default: the gated cells keep most of their memory
STEPS_BACK = gf.STEPS_BACK  # the table's columns, t = T - k (as the command's table)


def grad_norms(cell: str, scale: float, length: int, hidden: int, batch: int, seed: int) -> list[float]:
    """||dC/da_t|| for t = 1..T, the geometric mean over the batch: the ``grad`` curve of
    ``gradflow([cell], [scale], length, hidden, batch, seed, repeats=1)``, from the same
    building blocks (task, network, ``trace``) without its Jacobian norms, which the widget
    does not draw and which cost most of the time."""
    x, y = gf.first_symbol_task(batch, length, SYMBOLS, generator=torch.Generator().manual_seed(seed),
                                dtype=torch.float64)
    net = gf.scaled_network(cell, scale=scale, hidden_size=hidden, symbols=SYMBOLS, seed=seed,
                            forget_bias=FORGET_BIAS)
    tr = gf.trace(net, x, y)  # tr.grads: (B, T, D) dC/da_t
    return (10.0 ** torch.log10(tr.grads.norm(dim=2)).mean(0)).tolist()


def parameter_gradient(cell: str, scale: float, length: int, hidden: int, batch: int, seed: int,
                       clip: float | None) -> tuple[float, float]:
    """||g|| before and after clipping, g = dC/dθ for the network and batch that
    ``gradflow(..., repeats=1)`` measures (C = Σ_i C_i, the sum of the cross-entropies at the
    end); ``clip`` None: no clipping (after = before)."""
    net = gf.scaled_network(cell, scale=scale, hidden_size=hidden, symbols=SYMBOLS, seed=seed,
                            forget_bias=FORGET_BIAS)
    x, y = gf.first_symbol_task(batch, length, SYMBOLS, generator=torch.Generator().manual_seed(seed),
                                dtype=torch.float64)
    z, _ = net.pre_activation(x)  # w^(o) . a_T + b^(o): (B, K)
    # C = Σ_i -log o_i[y_i]
    cost = F.cross_entropy(z, y, reduction="sum")
    params = [p for p in net.parameters()]
    cost.backward()
    if clip is None:
        before = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
    else:
        # if ||g|| > c: g <- g c / ||g||                       (gradient-norm clipping)
        before = float(torch.nn.utils.clip_grad_norm_(params, clip))
    after = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
    return before, after


@router.get("")
def gradflow(
    cell: Literal["rnn", "lstm", "gru"] = Query("rnn"),
    scale: float = Query(1.0, gt=0.0, le=4.0, description="spectral norm s of every recurrent matrix"),
    T: int = Query(50, ge=2, le=MAX_T, description="sequence length T"),
    hidden: int = Query(16, ge=1, le=MAX_HIDDEN, description="hidden size H"),
    batch: int = Query(8, ge=1, le=MAX_BATCH, description="sequences B (geometric mean over them)"),
    seed: int = Query(0, ge=0, le=1_000_000),
    clipping: bool = Query(False, description="clip the parameter gradient's norm at clip"),
    clip: float = Query(1.0, gt=0.0, le=1e6, description="the clipping threshold c"),
) -> dict:
    """||dC/da_t|| for t = 1..T, the fitted factor per step back, the
    values at t = T - k as the command's table, and the parameter gradient's norm before and
    after clipping with the clipped curve."""
    with cpu_threads(1):
        grad = grad_norms(cell, scale, T, hidden, batch, seed)
        before, after = parameter_gradient(cell, scale, T, hidden, batch, seed, clip if clipping else None)
    slope = gf.fit_slope(grad)
    rate = 10.0**slope if math.isfinite(slope) else math.nan
    factor = after / before if before > 0 else 1.0
    return {
        "settings": {"cell": cell, "scale": scale, "length": T, "hidden_size": hidden, "batch_size": batch,
                     "seed": seed, "repeats": 1, "symbols": SYMBOLS, "forget_bias": FORGET_BIAS,
                     "task": "first-symbol"},
        "command": (f"seqlab gradflow --cells {cell} --scales {scale:g} -T {T} --hidden-size {hidden} "
                    f"--batch-size {batch} --repeats 1 --seed {seed} --json"),
        "t": list(range(1, T + 1)),
        "grad_norm": [finite_or_none(v) for v in grad],
        "at_steps_back": {str(k): finite_or_none(grad[T - 1 - k]) for k in STEPS_BACK if k < T},
        "slope": finite_or_none(slope),
        "rate": finite_or_none(rate),
        "verdict": gf.verdict(rate),
        "clipping": {
            "on": clipping, "threshold": clip if clipping else None,
            "param_grad_norm": finite_or_none(before), "param_grad_norm_after": finite_or_none(after),
            "factor": finite_or_none(factor),
            "clipped": bool(clipping and after < before),
            "grad_norm": [finite_or_none(v * factor) for v in grad] if clipping else None,
        },
    }
