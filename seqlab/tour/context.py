"""What every section of ``seqlab tour`` is given: where to write, how small to be, and the
report section to fill (text, tables, figures)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seqlab.viz.report import Report


@dataclass
class TourContext:
    """``out``: the tour's folder (runs go to ``out/runs/NAME``); ``quick``: tiny settings for
    tests; ``progress``: progress bars; ``report``: the HTML report; ``seed``: every
    section's seed."""

    out: Path
    quick: bool
    progress: bool
    report: Report
    seed: int = 0

    def run_dir(self, name: str) -> Path:
        """Where a section trains its run called ``name``."""
        return self.out / "runs" / name
