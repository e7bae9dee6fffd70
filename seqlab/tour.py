"""``seqlab tour``: the lecture, section by section, on embedded data.

Each section of the package registers its tour steps with :func:`section`; the tour runs
them in lecture order, prints one line of result per step and writes ``report.html``
(with the plots) into the output folder. ``quick=True`` shrinks every step for tests.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from seqlab.viz.report import Report, Section


@dataclass
class TourContext:
    out: Path
    quick: bool
    progress: bool
    report: Report
    seed: int = 0


@dataclass
class TourStep:
    order: int
    title: str
    run: Callable[[TourContext, Section], str]


@dataclass
class TourResult:
    lines: list[str] = field(default_factory=list)
    report: Path | None = None
    failures: int = 0
    seconds: float = 0.0


STEPS: list[TourStep] = []


def section(order: int, title: str):
    """Register a tour step; ``fn(ctx, report_section) -> one line of result``."""

    def register(fn):
        STEPS.append(TourStep(order, title, fn))
        return fn

    return register


def _load_sections() -> None:
    # importing a section's tour module registers its steps
    import seqlab.energy.tour  # noqa: F401
    import seqlab.generative.tour  # noqa: F401
    import seqlab.recurrent.tour  # noqa: F401
    import seqlab.transformer.tour  # noqa: F401


RUNS_MARK = ".seqlab-tour"


def _fresh_runs(runs: Path) -> None:
    """The steps train into ``out/runs/NAME``; a new tour into the same folder replaces the
    run directories of the previous one (marked by a file), and never touches a ``runs``
    folder the tour did not make."""
    import shutil

    if runs.exists():
        if not (runs / RUNS_MARK).exists():
            raise ValueError(f"out: expected a folder whose runs/ was made by seqlab tour (or none), received "
                             f"{str(runs.parent)!r}, whose runs/ holds other files; choose another --out")
        shutil.rmtree(runs)
    runs.mkdir(parents=True)
    (runs / RUNS_MARK).write_text("run directories of seqlab tour; replaced by the next tour into this folder\n")


def run_tour(out: str | Path = "tour", *, quick: bool = False, progress: bool = True, only: list[str] | None = None,
             echo: Callable[[str], None] = print) -> TourResult:
    _load_sections()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _fresh_runs(out / "runs")
    report = Report("seqlab tour" + (" (quick)" if quick else ""))
    ctx = TourContext(out=out, quick=quick, progress=progress, report=report)
    result = TourResult()
    t0 = time.perf_counter()
    steps = sorted(STEPS, key=lambda s: s.order)
    if only:
        steps = [s for s in steps if any(o.lower() in s.title.lower() for o in only)]
    for step in steps:
        sec = report.section(step.title)
        t = time.perf_counter()
        try:
            line = step.run(ctx, sec)
        except Exception as e:  # a failing step is reported, the tour goes on
            result.failures += 1
            line = f"FAILED: {type(e).__name__}: {e}"
            sec.pre.append(traceback.format_exc())
        sec.summary = line
        line = f"{step.title}: {line}  [{time.perf_counter() - t:.0f} s]"
        result.lines.append(line)
        echo(line)
    result.seconds = time.perf_counter() - t0
    result.report = report.write(out / "report.html")
    return result
