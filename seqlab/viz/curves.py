"""Training curves of one or several runs, read from their ``metrics.jsonl`` (``seqlab plot``):
one colour per run, validation solid with markers, training thin."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from seqlab.validation import check_choice, fail

SPLITS = ("val", "train", "both")
X_AXES = ("step", "time")


@dataclass
class RunCurves:
    """The records of one run's ``metrics.jsonl``: ``label`` names it in the legend."""

    run_dir: Path
    label: str
    family: str
    records: list[dict] = field(default_factory=list)

    def curve(self, split: str, metric: str, x: str = "step") -> tuple[list[float], list[float]]:
        pts = [(r[x], r[metric]) for r in self.records
               if r.get("split") == split and isinstance(r.get(metric), (int, float)) and x in r]
        return [p[0] for p in pts], [p[1] for p in pts]

    def metrics(self) -> set[str]:
        return {k for r in self.records for k, v in r.items()
                if isinstance(v, (int, float)) and k not in ("step", "time")}


def read_metrics(run_dir: str | os.PathLike) -> RunCurves:
    """A run directory's metrics (a torn last line, from a run killed while writing, is
    skipped); a path that is not a run directory is a ValueError naming it."""
    from seqlab.training.rundir import METRICS_FILE, RUN_FILE
    from seqlab.training.rundir import read_metrics as read_metrics_lines

    p = Path(run_dir)
    if not p.is_dir():
        fail("run", "a run directory (holding run.json and metrics.jsonl)",
             f"{str(p)!r} ({'not a directory' if p.exists() else 'no such path'})")
    metrics = p / METRICS_FILE
    if not metrics.is_file():
        fail("run", f"a run directory holding {METRICS_FILE}", f"{str(p)!r}, which holds none")
    family = "?"
    try:
        family = str(json.loads((p / RUN_FILE).read_text(encoding="utf-8")).get("family", "?"))
    except (OSError, ValueError, AttributeError):
        pass  # the curves do not need run.json; the legend just lacks the family
    records = [rec for _, rec in read_metrics_lines(p, strict=True)]
    return RunCurves(p, p.name, family, records)


def _labels(runs: list[RunCurves]) -> None:
    """Name each run by its folder, or by its path where folder names repeat."""
    names = [r.run_dir.name for r in runs]
    for r in runs:
        if names.count(r.run_dir.name) > 1:
            r.label = str(r.run_dir)


def plot_runs(run_dirs: Sequence[str | os.PathLike], path: str | os.PathLike, *, metric: str = "loss",
              split: str = "both", x: str = "step", logy: bool = False) -> tuple[Path, list[RunCurves]]:
    """Draw ``metric`` of each run against ``x`` (step or seconds of training) to a PNG:
    validation, training or both. Returns the PNG's path and the runs read."""
    from seqlab.viz.plots import check_output_path, new_figure, save_png

    check_choice(split, "split", SPLITS)
    check_choice(x, "x", X_AXES)
    if isinstance(run_dirs, (str, os.PathLike)) or not run_dirs:
        fail("runs", "one or more run directories", repr(run_dirs))
    path = check_output_path(path, "png")
    runs = [read_metrics(d) for d in run_dirs]
    _labels(runs)
    splits = ("val", "train") if split == "both" else (split,)
    if not any(r.curve(s, metric, x)[0] for r in runs for s in splits):
        have = sorted(set().union(*(r.metrics() for r in runs)))
        fail("metric", "a metric the runs recorded (" + (", ".join(have) or "none yet") + ")",
             f"{metric!r} with no {' or '.join(splits)} record")
    fig = new_figure(7.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    colours = [f"C{k % 10}" for k in range(len(runs))]
    for run, colour in zip(runs, colours):
        for s in splits:
            xs, ys = run.curve(s, metric, x)
            if not xs:
                continue
            style = dict(lw=1.8, marker="o", ms=3) if s == "val" else dict(lw=0.8, alpha=0.6)
            ax.plot(xs, ys, color=colour, label=f"{run.label} ({run.family}, {s})", **style)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("step" if x == "step" else "seconds of training")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} of {len(runs)} run(s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, path), runs


def summary_rows(runs: Sequence[RunCurves], metric: str = "loss") -> list[list[str]]:
    """One row per run: label, family, last step, best and last validation ``metric``."""
    rows = []
    for r in runs:
        steps = [rec["step"] for rec in r.records if isinstance(rec.get("step"), int)]
        _, val = r.curve("val", metric)
        rows.append([r.label, r.family, str(max(steps, default=0)),
                     f"{min(val):.4f}" if val else "-", f"{val[-1]:.4f}" if val else "-"])
    return rows
