r"""Gradient clipping against exploding gradients, demonstrated (part of ``seqlab gradflow``).

Lecture, "Vanishing and Exploding Gradient": *if the weights are large, the gradient will
grow exponentially* (:mod:`seqlab.recurrent.gradflow` measures it).

Exploding gradients are what gradient-norm clipping is for: if ||g|| > c, use g c/||g||.
:func:`clipping_demo` trains a ReLU Elman RNN with w^(a) = 3 Q (a ReLU passes about half
the units, so a step multiplies a state, and the gradient, by about 3/sqrt(2) = 2.1: the
exploding regime) on the first-symbol task with T = 8 and 4 symbols, H = 32, batches of
32, plain SGD with learning rate 0.3, 300 steps, twice from the same weights on the same
batches: once as is, and once with ``torch.nn.utils.clip_grad_norm_`` at c = 1.  The
first gradient norm is 15 to a few hundred (a tanh RNN at scale 1 has ~0.3); the
unclipped run blows up -- its loss or gradient norm becomes infinite or NaN within a few
steps, or its loss jumps above 10x the first -- while the clipped run learns the task
(final loss below a tenth of the first and of chance, accuracy >= 0.95).  Verified for
seeds 0..23: 24 of 24 blow up unclipped, 24 of 24 learn clipped (and 12 of 12 for
seeds 0..11 at lr 0.4 and 0.5, and at T = 10).  Near the edge of these settings a clipped
run occasionally ends with every ReLU unit dead (loss stuck at chance, log 4): clipping
bounds each step but the exploding forward pass can still switch units off.  A ReLU is
used because its states are unbounded, so a blow-up shows in the loss; a tanh RNN with a
large scale has exploding gradients too, but its bounded states keep the loss finite: the
huge steps only saturate the units.

A run *diverged* if a loss or gradient norm is not finite (the run stops there) or a loss
exceeds ``blowup`` (10) times the first loss.  It *trained* if it did not diverge and its
final loss (mean of the last tenth of the steps) is below both its first loss and half
the loss of guessing uniformly, log(symbols) / 2.

Public names
------------
``clipping_demo(...) -> ClippingDemo`` (two ``ClipRun``s: without and with clipping),
``format_clipping(demo)`` (a few lines of text), ``to_json(demo)``.  The plot is
:func:`seqlab.viz.recurrent.plot_clipping`; the task and the scaled network come from
:mod:`seqlab.recurrent.gradflow`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from seqlab.recurrent.gradflow import MAX_HIDDEN, first_symbol_task, scaled_network
from seqlab.recurrent.gradflow_report import finite_or_none
from seqlab.recurrent.network import SequenceNetwork
from seqlab.training.device import cpu_threads
from seqlab.validation import check_choice, check_float, check_int, fail


@dataclass(frozen=True)
class ClipRun:
    """One training run.  losses, grad_norms (before clipping), accuracy: per step, up to
    the step where the run stopped.  diverged_at: first step (0-based) whose loss or
    gradient norm was not finite or whose loss exceeded the threshold; reason says which."""

    clip: float | None
    losses: list[float]
    grad_norms: list[float]
    accuracy: list[float]
    diverged: bool
    diverged_at: int | None
    reason: str
    stopped: bool
    chance_loss: float  # log(symbols): the cross-entropy of guessing uniformly

    @property
    def initial_loss(self) -> float:
        return self.losses[0] if self.losses else math.nan

    @property
    def final_loss(self) -> float:
        """Mean loss over the last tenth of the steps run (nan if the run stopped early)."""
        if self.stopped or not self.losses:
            return math.nan
        n = max(1, len(self.losses) // 10)
        return sum(self.losses[-n:]) / n

    @property
    def final_accuracy(self) -> float:
        if self.stopped or not self.accuracy:
            return math.nan
        n = max(1, len(self.accuracy) // 10)
        return sum(self.accuracy[-n:]) / n

    @property
    def trained(self) -> bool:
        """Did not diverge, and the final loss is below the first and below half the loss
        of guessing uniformly (log(symbols) / 2)."""
        return (not self.diverged) and self.final_loss < min(self.initial_loss, 0.5 * self.chance_loss)


@dataclass(frozen=True)
class ClippingDemo:
    """``clipping_demo``'s result: its settings and the two runs from the same weights on
    the same batches, without and with gradient-norm clipping."""

    settings: dict
    unclipped: ClipRun
    clipped: ClipRun


def _check_demo(demo: object) -> ClippingDemo:
    if not isinstance(demo, ClippingDemo):
        fail("demo", "a ClippingDemo", type(demo).__name__)
    return demo


def _train(net: SequenceNetwork, batches, *, lr: float, clip: float | None, blowup: float,
           chance_loss: float) -> ClipRun:
    """Plain SGD on ``batches``, clipping the gradient norm at ``clip`` (None: no clipping);
    stops at the first non-finite loss or gradient norm and flags a loss above ``blowup``
    times the first (see the module doc)."""
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    losses, norms, accs = [], [], []
    diverged_at, reason, stopped = None, "", False
    for step, (x, y) in enumerate(batches):
        loss, metrics = net.loss((x, y))
        value = float(loss.detach())
        if not math.isfinite(value):
            diverged_at, reason, stopped = step, f"loss is {value} at step {step}", True
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in net.parameters() if p.grad is not None]
        if clip is None:
            norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])))
        else:
            # if ||g|| > c: g <- g c / ||g||                       (gradient-norm clipping)
            norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        losses.append(value)
        accs.append(metrics["accuracy"])
        norms.append(norm if math.isfinite(norm) else math.inf)
        if not math.isfinite(norm):
            diverged_at, reason, stopped = step, f"gradient norm is {norm} at step {step}", True
            break
        if diverged_at is None and value > blowup * losses[0]:
            diverged_at, reason = step, f"loss {value:.3g} > {blowup:g} x the first loss {losses[0]:.3g} at step {step}"
        opt.step()
    return ClipRun(clip=clip, losses=losses, grad_norms=norms, accuracy=accs, diverged=diverged_at is not None,
                   diverged_at=diverged_at, reason=reason, stopped=stopped, chance_loss=chance_loss)


def clipping_demo(*, nonlinearity: str = "relu", scale: float = 3.0, length: int = 8, symbols: int = 4,
                  hidden_size: int = 32, batch_size: int = 32, lr: float = 0.3, clip: float = 1.0,
                  steps: int = 300, seed: int = 0, blowup: float = 10.0) -> ClippingDemo:
    """Train the Elman RNN in the exploding regime (w^(a) = scale x random orthogonal) on
    the first-symbol task with plain SGD, twice from the same weights on the same
    batches: without clipping and with ``clip_grad_norm_(params, clip)``.  The defaults
    are the settings of the module doc (the unclipped run blows up, the clipped one
    learns; verified for seeds 0..23).  Float32, fused path; about a second."""
    check_choice(nonlinearity, "nonlinearity", ("tanh", "relu"))
    scale = check_float(scale, "scale", minimum=0.0, open_min=True)
    check_int(length, "length", minimum=2)
    check_int(symbols, "symbols", minimum=2)
    check_int(hidden_size, "hidden_size", minimum=1, maximum=MAX_HIDDEN)
    check_int(batch_size, "batch_size", minimum=1)
    lr = check_float(lr, "lr", minimum=0.0, open_min=True)
    clip = check_float(clip, "clip", minimum=0.0, open_min=True)
    check_int(steps, "steps", minimum=1)
    check_int(seed, "seed", minimum=0)
    blowup = check_float(blowup, "blowup", minimum=1.0, open_min=True)
    for name, v in (("scale", scale), ("lr", lr), ("clip", clip), ("blowup", blowup)):
        if not math.isfinite(v):
            fail(name, "a finite number", v)

    net0 = scaled_network("rnn", scale=scale, hidden_size=hidden_size, symbols=symbols, seed=seed,
                          nonlinearity=nonlinearity, fused=True, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    batches = [first_symbol_task(batch_size, length, symbols, generator=g) for _ in range(steps)]
    runs = {}
    with cpu_threads(1):  # small operations: one thread is faster
        for c in (None, clip):
            runs[c] = _train(copy.deepcopy(net0), batches, lr=lr, clip=c, blowup=blowup,
                             chance_loss=math.log(symbols))
    settings = dict(cell="rnn", nonlinearity=nonlinearity, scale=scale, length=length, symbols=symbols,
                    hidden_size=hidden_size, batch_size=batch_size, optimizer="SGD", lr=lr, clip=clip,
                    steps=steps, seed=seed, blowup=blowup, task="first-symbol")
    return ClippingDemo(settings=settings, unclipped=runs[None], clipped=runs[clip])


def _run_line(name: str, run: ClipRun) -> str:
    if run.stopped:
        end = f"stopped: {run.reason}"
    else:
        end = f"final loss {run.final_loss:.3g}, accuracy {run.final_accuracy:.2f}"
        if run.diverged:
            end += f"; diverged: {run.reason}"
    return (f"{name:<22} first loss {run.initial_loss:.3g}, largest gradient norm "
            f"{max(run.grad_norms) if run.grad_norms else math.nan:.3g}; {end} -> "
            + ("DIVERGED" if run.diverged else "trained" if run.trained else "did not train"))


def format_clipping(demo: ClippingDemo) -> str:
    """A few lines: the settings and, per run, first/final loss and the outcome."""
    _check_demo(demo)
    s = demo.settings
    head = (f"gradient clipping: {s['nonlinearity']} RNN, w^(a) = {s['scale']:g} x orthogonal, first-symbol task "
            f"T = {s['length']}, {s['symbols']} symbols, H = {s['hidden_size']}, SGD lr {s['lr']:g}, "
            f"{s['steps']} steps of {s['batch_size']}, seed {s['seed']}")
    return "\n".join([head, _run_line("without clipping:", demo.unclipped),
                      _run_line(f"clip norm at {s['clip']:g}:", demo.clipped)])


def _run_json(run: ClipRun) -> dict:
    return {"clip": run.clip, "chance_loss": run.chance_loss, "losses": [finite_or_none(v) for v in run.losses],
            "grad_norms": [finite_or_none(v) for v in run.grad_norms], "accuracy": run.accuracy,
            "diverged": run.diverged, "diverged_at": run.diverged_at, "reason": run.reason, "stopped": run.stopped,
            "initial_loss": finite_or_none(run.initial_loss), "final_loss": finite_or_none(run.final_loss),
            "final_accuracy": finite_or_none(run.final_accuracy), "trained": run.trained}


def to_json(demo: ClippingDemo) -> dict:
    """A JSON-ready dict (non-finite numbers become null): the settings and both runs, per
    step and summarised."""
    _check_demo(demo)
    return {"settings": dict(demo.settings), "unclipped": _run_json(demo.unclipped),
            "clipped": _run_json(demo.clipped)}
