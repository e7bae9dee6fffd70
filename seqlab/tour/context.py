"""What every section of ``seqlab tour`` is given: where to write, how small to be, the
report section to fill (text, equations, tables, figures), and ``train``, which runs a
model for the number of steps the section planned and flags a run that a slow or busy
machine cut short."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqlab.viz.report import Report, Section


@dataclass
class CutShort:
    """A training run of the tour that stopped before its planned steps."""

    section: str
    run: str
    steps: int
    planned: int
    reason: str  # "max_seconds" (the time guard) or "interrupted"

    def line(self) -> str:
        why = "by the time guard (a slow or busy machine)" if self.reason == "max_seconds" else "by Ctrl-C"
        return (f"{self.run}: cut short at {self.steps:,} of {self.planned:,} steps {why}: the numbers below are "
                f"not representative")


@dataclass
class TourContext:
    """``out``: the tour's folder (runs go to ``out/runs/NAME``); ``quick``: tiny settings for
    tests; ``progress``: progress display; ``report``: the HTML report; ``seed``: every
    section's seed; ``section``: the report section being filled (set by ``run_tour``);
    ``cut_short``: the runs that stopped before their planned steps."""

    out: Path
    quick: bool
    progress: bool
    report: Report
    seed: int = 0
    section: Section | None = None
    cut_short: list[CutShort] = field(default_factory=list)

    def run_dir(self, name: str) -> Path:
        """Where a section trains its run called ``name``."""
        return self.out / "runs" / name

    def train(self, command: str, *, name: str | None = None, guard: float | None = None, **options: Any):
        """``seqlab.train(command, **options)`` into ``run_dir(name or command)``.

        The tour plans its runs by steps (``max_steps`` in ``options``, else the family's
        default), so what it shows does not depend on the machine's speed. ``guard`` (seconds)
        is a wall-clock cap that only a much slower or busy machine reaches; a run it stops
        before the planned steps is recorded in ``cut_short`` and flagged at the top of the
        section. A run stopped by Ctrl-C is flagged too, and the tour then stops
        (KeyboardInterrupt), with the report written."""
        import seqlab
        from seqlab.training.rundir import read_run_json

        if guard is not None and not self.quick:
            options["max_seconds"] = guard
        result = seqlab.train(command, out=self.run_dir(name or command), progress=self.progress, **options)
        planned = int(read_run_json(result.run_dir)["train_config"]["max_steps"])
        if result.steps < planned and result.stopped in ("max_seconds", "interrupted"):
            cut = CutShort(self.section.title if self.section else "", name or command, result.steps, planned,
                           result.stopped)
            self.cut_short.append(cut)
            if self.section is not None:
                self.section.warn(cut.line())
            if result.stopped == "interrupted":
                raise KeyboardInterrupt
        return result


def num(value: float | None, spec: str = ".3f") -> str:
    """``value`` formatted with ``spec``, or "n/a" where a run has no such figure (None, NaN):
    a section says what it lacks instead of failing on it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def run_parts(ctx: TourContext, sec: Section, parts: tuple[tuple[str, str], ...]) -> str:
    """A section made of parts, each ``(title, "package.module:function")`` under its own
    heading, each called as ``function(ctx, sec) -> one line``. A part that fails is reported
    in its place and the others still run; the section then fails, naming it."""
    import importlib
    import traceback

    lines, failed = [], []
    for title, target in parts:
        sec.heading(title)
        module, _, function = target.partition(":")
        try:
            lines.append(getattr(importlib.import_module(module), function)(ctx, sec))
        except KeyboardInterrupt:
            raise
        except Exception as e:  # the next part still runs
            sec.warn(f"{title}: failed: {type(e).__name__}: {e}")
            sec.code(traceback.format_exc())
            failed.append(title)
    if failed:
        raise RuntimeError("failed parts: " + "; ".join(failed) + " (the others: " + "; ".join(lines) + ")")
    return "; ".join(lines)


def quoted_benchmark(sec: Section, name: str, what: str = "") -> dict | None:
    """The results a benchmark saved (``benchmarks/results/NAME.json``), in a source checkout,
    introduced in ``sec`` as quoted, not rerun by the tour (``what``: a few words after the
    file's name); None where the file is not there (an installed package)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / f"{name}.json"
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    sec.text(f"From {path.name} (written by `{saved['command'].strip()}`, not rerun here){what}:")
    return saved
