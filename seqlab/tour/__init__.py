"""``seqlab tour``: the lecture, section by section, on embedded data.

``SECTIONS`` is the tour: an ordered list of (title, "module:function"). Each function sits
in its own section's ``tour.py`` next to the models it shows, and is called as
``function(ctx, section) -> one line of result`` (``ctx`` a ``TourContext``, ``section`` the
report's ``Section`` to fill with text, tables and figures). The modules are imported only
when their section runs, so this list imports none of them: there is no import cycle, and
a section that fails is reported while the tour goes on. ``quick=True`` shrinks every
section for tests.
"""

from __future__ import annotations

import importlib
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from seqlab.tour.context import TourContext
from seqlab.viz.report import Report

SECTIONS: tuple[tuple[str, str], ...] = (
    # Recurrent Networks, Backpropagation Through Time, Vanishing and Exploding Gradient, GRU and LSTM
    ("Recurrent networks: the Elman RNN", "seqlab.recurrent.tour:elman"),
    ("Backpropagation through time, by hand", "seqlab.recurrent.tour:bptt"),
    ("Unfolding: which weight copies does one BPTT step use?", "seqlab.recurrent.tour:unfolding"),
    ("Vanishing and exploding gradients", "seqlab.recurrent.tour:gradient_flow"),
    ("LSTM and GRU: parity and a character language model", "seqlab.recurrent.tour:gated"),
    # Hopfield Networks (and Boltzmann machines)
    ("Hopfield networks: energy, recall of a noisy digit, capacity", "seqlab.energy.tour:hopfield"),
    ("Boltzmann machines: hidden units (3-bit parity, exact), RBM on digits, samples, features",
     "seqlab.energy.tour:rbm"),
    # Generative Adversarial Networks (GANs, VAEs, diffusion)
    ("Generative models: GAN, VAE, diffusion (DDPM, DDIM) on the digits, one evaluation",
     "seqlab.generative.tour:generative"),
    # Transformers
    ("Transformers: attention, masks, multi-head attention, layer norm, blocks",
     "seqlab.transformer.tour:transformer_parts"),
    # Large Language Models
    ("Large language models: GPT (next-token prediction, KV cache)", "seqlab.llm.tour:gpt"),
    ("Large language models: BERT (masked-language modelling, fill-in, fine-tuning)", "seqlab.llm.tour:bert"),
    # next: the lecture's LLM techniques (fine-tuning with frozen layers, prompting, RLHF,
    # prompt injection), then its Applications (seqlab/tasks/)
)
RUNS_MARK = ".seqlab-tour"


@dataclass
class TourResult:
    lines: list[str] = field(default_factory=list)
    report: Path | None = None
    failures: int = 0
    seconds: float = 0.0


def section_function(target: str) -> Callable:
    """The function named by "package.module:function"."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _fresh_runs(runs: Path) -> None:
    """The sections train into ``out/runs/NAME``; a new tour into the same folder replaces the
    run directories of the previous one (marked by a file), and never touches a ``runs``
    folder the tour did not make."""
    if runs.exists():
        if not (runs / RUNS_MARK).exists():
            raise ValueError(f"out: expected a folder whose runs/ was made by seqlab tour (or none), received "
                             f"{str(runs.parent)!r}, whose runs/ holds other files; choose another --out")
        shutil.rmtree(runs)
    runs.mkdir(parents=True)
    (runs / RUNS_MARK).write_text("run directories of seqlab tour; replaced by the next tour into this folder\n")


def run_tour(out: str | Path = "tour", *, quick: bool = False, progress: bool = True, only: list[str] | None = None,
             echo: Callable[[str], None] = print) -> TourResult:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _fresh_runs(out / "runs")
    report = Report("seqlab tour" + (" (quick)" if quick else ""))
    ctx = TourContext(out=out, quick=quick, progress=progress, report=report)
    result = TourResult()
    t0 = time.perf_counter()
    sections = [s for s in SECTIONS if not only or any(o.lower() in s[0].lower() for o in only)]
    for title, target in sections:
        sec = report.section(title)
        t = time.perf_counter()
        try:
            line = section_function(target)(ctx, sec)
        except Exception as e:  # a failing section is reported, the tour goes on
            result.failures += 1
            line = f"FAILED: {type(e).__name__}: {e}"
            sec.pre.append(traceback.format_exc())
        sec.summary = line
        line = f"{title}: {line}  [{time.perf_counter() - t:.0f} s]"
        result.lines.append(line)
        echo(line)
    result.seconds = time.perf_counter() - t0
    result.report = report.write(out / "report.html")
    return result


__all__ = ["SECTIONS", "TourContext", "TourResult", "run_tour", "section_function"]
