"""``seqlab tour``: the lecture, section by section, on embedded data.

``SECTIONS`` is the tour: an ordered list of (title, "module:function", seconds), the
seconds being what the section takes on 2 idle CPU cores (for the overall estimate). Each
function sits in its own section's ``tour.py`` next to the models it shows, and is called
as ``function(ctx, section) -> one line of result`` (``ctx`` a ``TourContext``, ``section``
the report's ``Section`` to fill with text, equations, tables and figures, in reading
order). The modules are imported only when their section runs, so this list imports none of
them: there is no import cycle, and a section that fails is reported while the tour goes on.

The sections plan their training by steps (``TourContext.train``); a wall-clock guard stops
only a much slower machine, and a run it cuts short is flagged in its section and in the
report's header. ``quick=True`` shrinks every section for tests.
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from seqlab.progress import enabled as progress_enabled
from seqlab.tour.context import CutShort, TourContext
from seqlab.viz.report import Report

SECTIONS: tuple[tuple[str, str, float], ...] = (
    # Recurrent Networks, Backpropagation Through Time, Vanishing and Exploding Gradient, GRU and LSTM
    ("Recurrent networks: the Elman RNN", "seqlab.recurrent.tour:elman", 3),
    ("Backpropagation through time, by hand", "seqlab.recurrent.tour:bptt", 1),
    ("Unfolding: which weight copies does one BPTT step use?", "seqlab.recurrent.tour:unfolding", 1),
    ("Vanishing and exploding gradients", "seqlab.recurrent.tour:gradient_flow", 8),
    ("LSTM and GRU: parity and a character language model", "seqlab.recurrent.tour:gated", 220),
    # Hopfield Networks (and Boltzmann machines)
    ("Hopfield networks: energy, recall of a noisy digit, capacity", "seqlab.energy.tour:hopfield", 4),
    ("Boltzmann machines: hidden units (3-bit parity, exact), RBM on digits, samples, features",
     "seqlab.energy.tour:rbm", 6),
    # Generative Adversarial Networks (GANs, VAEs, diffusion)
    ("Generative models: GAN, VAE, diffusion (DDPM, DDIM) on the digits, one evaluation",
     "seqlab.generative.tour:generative", 110),
    # Transformers
    ("Transformers: attention, masks, multi-head attention, layer norm, blocks",
     "seqlab.transformer.tour:transformer_parts", 1),
    # Large Language Models
    ("Large language models: GPT (next-token prediction, KV cache)", "seqlab.llm.tour:gpt", 55),
    ("Large language models: BERT (masked-language modelling, fill-in, fine-tuning)", "seqlab.llm.tour:bert", 85),
    ("Large language models: fine-tuning, prompting, RLHF, prompt injection", "seqlab.llm.tour:techniques", 140),
    # Applications
    ("Applications: machine translation, image captioning, speech recognition, text to speech",
     "seqlab.tasks.tour:applications", 90),
    ("Applications: time series and stock prices, online handwriting, robot control",
     "seqlab.tasks.tour:prediction_and_control", 45),
)
RUNS_MARK = ".seqlab-tour"

# The pages of `seqlab explore` that show a section interactively: "module:function" ->
# ((link text, widget, query string), ...), the query being what the widget's mount() reads
# (static/<widget>.js). run=NAME is a run the section trains into out/runs/NAME; a link to a
# run the tour did not make (a section not run, or failed) is left out. The report links to
# EXPLORE_URL, where `seqlab explore OUT/runs` listens by default.
EXPLORE_URL = "http://127.0.0.1:8000"
EXPLORE_HOW = "start `seqlab explore OUT/runs` (OUT: this report's folder), then follow the links"
EXPLORE: dict[str, tuple[tuple[str, str, str], ...]] = {
    "seqlab.recurrent.tour:elman": (("Unfold", "unfold", "T=5&output=last&wrt=w_x"),),
    "seqlab.recurrent.tour:bptt": (("Unfold", "unfold", "T=3&output=last&wrt=w_a"),),
    "seqlab.recurrent.tour:unfolding": (("Unfold: output per step", "unfold", "T=3&output=sequence&wrt=w_x"),
                                        ("Unfold: one output at T", "unfold", "T=3&output=last&wrt=w_x")),
    "seqlab.recurrent.tour:gradient_flow": (("Gradient flow: RNN", "gradflow", "cell=rnn&scale=1&T=200"),
                                            ("Gradient flow: LSTM", "gradflow", "cell=lstm&scale=1&T=200"),
                                            ("Gradient flow: clipping", "gradflow", "cell=rnn&scale=1.5&T=200&clip=1")),
    "seqlab.recurrent.tour:gated": (("Sampling: RNN", "sampling", "run=rnn"),
                                    ("Sampling: LSTM", "sampling", "run=lstm"),
                                    ("Sampling: GRU", "sampling", "run=gru"),
                                    ("Gradient flow: GRU", "gradflow", "cell=gru&scale=1&T=200"),
                                    ("Runs", "runs", "run=lstm")),
    "seqlab.energy.tour:hopfield": (("Hopfield: pseudo-inverse rule", "hopfield", "rule=pseudo-inverse&digit=3&seed=0"),
                                    ("Hopfield: Hebbian rule", "hopfield", "rule=hebbian&digit=3&seed=0")),
    "seqlab.energy.tour:rbm": (("Runs", "runs", "run=rbm"),),
    "seqlab.generative.tour:generative": (("Diffusion", "generative", "run=diffusion"),
                                          ("VAE", "generative", "run=vae"), ("GAN", "generative", "run=gan"),
                                          ("Runs", "runs", "run=diffusion")),
    "seqlab.transformer.tour:transformer_parts": (("Attention of the tour's GPT", "attention", "run=gpt"),),
    "seqlab.llm.tour:gpt": (("Attention", "attention", "run=gpt"), ("Sampling", "sampling", "run=gpt"),
                            ("Runs", "runs", "run=gpt")),
    "seqlab.llm.tour:bert": (("Attention", "attention", "run=bert"), ("Runs", "runs", "run=bert")),
    "seqlab.llm.tour:techniques": (("Sampling: LoRA", "sampling", "run=ft-lora"),
                                   ("Sampling: PPO", "sampling", "run=rlhf-ppo"),
                                   ("Sampling: DPO", "sampling", "run=rlhf-dpo"), ("Runs", "runs", "run=ft-lora")),
    "seqlab.tasks.tour:applications": (("Runs", "runs", "run=translate-transformer"),),
    "seqlab.tasks.tour:prediction_and_control": (("Runs", "runs", "run=forecast"),),
}


@dataclass
class TourResult:
    lines: list[str] = field(default_factory=list)
    report: Path | None = None
    failures: int = 0
    seconds: float = 0.0
    cut_short: list[CutShort] = field(default_factory=list)
    interrupted: bool = False


def section_function(target: str) -> Callable:
    """The function named by "package.module:function"."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def explore_links(target: str, runs: Path) -> list[tuple[str, str]]:
    """(text, address) of the explorer's pages for the section ``target`` ("module:function"),
    those naming a run kept only where ``runs/NAME`` is a run directory."""
    from urllib.parse import parse_qs

    links = []
    for text, widget, query in EXPLORE.get(target, ()):
        run = parse_qs(query).get("run")
        if run and not (runs / run[0] / "run.json").is_file():
            continue
        links.append((text, f"{EXPLORE_URL}/w/{widget}" + (f"?{query}" if query else "")))
    return links


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


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def revision() -> str:
    """seqlab's version, and the git commit of the checkout it runs from, if it is one."""
    import seqlab

    text = f"seqlab {seqlab.__version__}"
    root = Path(seqlab.__file__).resolve().parent.parent
    if (root / ".git").exists() and shutil.which("git"):
        try:
            out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True,
                                 text=True, timeout=10, check=True).stdout.strip()
            text += f", git {out}"
        except (OSError, subprocess.SubprocessError):
            pass
    return text


def machine_facts() -> list[tuple[str, str]]:
    """The facts a reader needs to judge the numbers: machine, cores, versions."""
    import torch

    cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return [("machine", f"{_cpu_name()} ({platform.system()} {platform.release()}, {platform.python_implementation()} "
                        f"{platform.python_version()})"),
            ("cores", f"{os.cpu_count()} logical CPU(s), PyTorch uses {torch.get_num_threads()} thread(s); GPU: {cuda}"),
            ("torch", torch.__version__),
            ("seqlab", revision())]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def run_tour(out: str | Path = "tour", *, quick: bool = False, progress: bool = True, only: list[str] | None = None,
             echo: Callable[[str], None] = print) -> TourResult:
    """Run the sections (those whose title contains a word of ``only``, if given), echo one
    line per section (and, before it, "[k/n] title" with an estimate of the time left), and
    write ``out/report.html``. A Ctrl-C stops the tour after writing the report of the
    sections run so far (``interrupted``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _fresh_runs(out / "runs")
    report = Report("seqlab tour" + (" (quick)" if quick else ""))
    facts = machine_facts()
    ctx = TourContext(out=out, quick=quick, progress=progress, report=report)
    result = TourResult()
    t0 = time.perf_counter()
    sections = [s for s in SECTIONS if not only or any(o.lower() in s[0].lower() for o in only)]
    planned_total = sum(s[2] for s in sections)
    planned_done = 0.0
    try:
        for k, (title, target, planned) in enumerate(sections, 1):
            elapsed = time.perf_counter() - t0
            # time left: the remaining sections' planned seconds, scaled by how this machine
            # has done so far against the plan (once a minute of plan is done: before, a
            # few short sections say little about the long ones)
            pace = elapsed / planned_done if planned_done >= 60 else 1.0
            left = "" if quick else f" (tour: about {_minutes(pace * (planned_total - planned_done))} left)"
            echo(f"[{k}/{len(sections)}] {title}{left}")
            sec = report.section(title)
            ctx.section = sec
            t = time.perf_counter()
            try:
                with progress_enabled(progress):  # evaluations and measurements show theirs too
                    line = section_function(target)(ctx, sec)
            except KeyboardInterrupt:
                sec.summary = "interrupted (Ctrl-C)"
                result.interrupted = True
                echo(f"{title}: interrupted")
                break
            except Exception as e:  # a failing section is reported, the tour goes on
                result.failures += 1
                line = f"FAILED: {type(e).__name__}: {e}"
                sec.failed = True
                sec.code(traceback.format_exc())
            sec.summary = line
            for text, url in explore_links(target, out / "runs"):
                sec.link(text, url)
            planned_done += planned
            line = f"{title}: {line}  [{time.perf_counter() - t:.0f} s]"
            if sec.warnings:
                line += " (CUT SHORT: " + "; ".join(c.run for c in ctx.cut_short if c.section == title) + ")"
            result.lines.append(line)
            echo(line)
    finally:
        result.seconds = time.perf_counter() - t0
        result.cut_short = list(ctx.cut_short)
        cut = ", ".join(f"{c.run} in '{c.section}' ({c.steps:,} of {c.planned:,} steps)" for c in ctx.cut_short)
        report.header = facts + [
            ("total time", f"{result.seconds:.0f} s ({len(result.lines)} of {len(sections)} sections run"
                           + (", interrupted" if result.interrupted else "") + ")"),
            ("cut short", cut or "none: every run made its planned steps"),
            ("failed sections", str(result.failures)),
        ] + ([("explore", EXPLORE_HOW)] if any(s.links for s in report.sections) else [])
        result.report = report.write(out / "report.html")
    return result


__all__ = ["EXPLORE", "SECTIONS", "CutShort", "TourContext", "TourResult", "machine_facts", "explore_links", "run_tour",
           "section_function"]
