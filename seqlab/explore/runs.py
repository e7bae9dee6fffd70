"""The runs widget's endpoints: the run directories under RUNS_DIR, each with its family, steps
and last losses; one run's training curves (its ``metrics.jsonl``, as ``seqlab plot`` reads
it) and configuration (its ``run.json``); and the tour's report where RUNS_DIR holds one.

- ``GET /api/runs/list``: ``{"runs": [{name, family, steps, train_loss, val_loss, created,
  error}], "report": "/api/runs/report" or null}``;
- ``GET /api/runs/run?run=NAME&points=N``: ``{name, family, config, config_error, metrics,
  curves: {metric: {split: {"x": steps, "y": values}}}, metrics_error}``;
- ``GET /api/runs/report``: the tour's ``report.html`` (one self-contained file), or a 404.

A run whose ``run.json`` or ``metrics.jsonl`` cannot be read is still listed, with one line
saying what is wrong (``error``); nothing here is a 500.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from seqlab.explore.common import BadRequest, list_run_dirs, run_name, run_path, runs_dir

router = APIRouter()

METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"
REPORT_FILE = "report.html"
MAX_POINTS = 2000  # points per curve sent to the browser (longer curves are thinned evenly)
LIST_DEPTH = 3  # tour/runs/NAME: `seqlab explore .` beside a tour's folder lists its runs
NOT_CURVES = ("step", "time", "split")  # record keys that are not a metric to draw


def _read_config(path: Path, name: str) -> tuple[dict | None, str | None]:
    """(run.json as a dict, None), or (None, one line saying why it cannot be read)."""
    try:
        obj = json.loads((path / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        return None, f"{name}/{RUN_FILE}: cannot be read ({e.__class__.__name__})"
    except json.JSONDecodeError as e:
        return None, f"{name}/{RUN_FILE}: expected JSON, got an error at line {e.lineno} column {e.colno} ({e.msg})"
    if not isinstance(obj, dict):
        return None, f"{name}/{RUN_FILE}: expected a JSON object, got {type(obj).__name__}"
    return obj, None


def _read_records(path: Path, name: str) -> tuple[list[dict], str | None]:
    """The records of metrics.jsonl, and one line naming the first malformed line (if any).

    As in ``seqlab.training.rundir.read_metrics``, a torn last line (a run killed while
    writing) is skipped silently; another line that is not a JSON object with an integer
    ``step`` and a ``split`` is skipped and named in the message."""
    f = path / METRICS_FILE
    if not f.is_file():
        return [], None
    try:
        lines = f.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        return [], f"{name}/{METRICS_FILE}: cannot be read ({e.__class__.__name__})"
    records, bad = [], []
    for k, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        ok = (isinstance(rec, dict) and isinstance(rec.get("step"), int) and not isinstance(rec["step"], bool)
              and isinstance(rec.get("split"), str))
        if ok:
            records.append(rec)
        elif k < len(lines):
            bad.append((k, line))
    error = None
    if bad:
        k, line = bad[0]
        more = f" (and {len(bad) - 1} more line(s))" if len(bad) > 1 else ""
        error = (f"{name}/{METRICS_FILE}: expected one JSON object with 'step' and 'split' per line, got line {k}: "
                 f"{line[:60]!r}{more}; those lines are left out")
    return records, error


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _last(records: list[dict], split: str, key: str = "loss") -> float | None:
    for rec in reversed(records):
        if rec.get("split") == split and _number(rec.get(key)):
            return float(rec[key])
    return None


def _summary(request: Request, path: Path) -> dict:
    name = run_name(request, path)
    return _describe(name, *_read_config(path, name), *_read_records(path, name))


def _describe(name: str, config: dict | None, config_error: str | None, records: list[dict],
              metrics_error: str | None) -> dict:
    family = config.get("family") if config else None
    return {
        "name": name,
        "family": family if isinstance(family, str) else None,
        "steps": max((r["step"] for r in records), default=0),
        "train_loss": _last(records, "train"),
        "val_loss": _last(records, "val"),
        "created": config.get("created") if config and isinstance(config.get("created"), str) else None,
        "error": "; ".join(e for e in (config_error, metrics_error) if e) or None,
    }


def tour_report(root: Path) -> Path | None:
    """The tour's report that goes with RUNS_DIR ``root``, if any: ``seqlab tour --out DIR``
    writes DIR/report.html and its runs to DIR/runs, so RUNS_DIR may be DIR
    (DIR/report.html), DIR/runs (its parent's report.html) or DIR's parent with the default
    name (tour/report.html)."""
    candidates = [root / REPORT_FILE, root / "tour" / REPORT_FILE]
    if root.name == "runs":
        candidates.append(root.parent / REPORT_FILE)
    for c in candidates:
        if c.is_file():
            return c
    return None


def _thin(xs: list, ys: list, points: int) -> tuple[list, list]:
    """At most ``points`` evenly spaced points of a curve, the last one always kept."""
    n = len(xs)
    if n <= points:
        return xs, ys
    keep = sorted({round(i * (n - 1) / (points - 1)) for i in range(points)})
    return [xs[i] for i in keep], [ys[i] for i in keep]


@router.get("/list")
def list_runs(request: Request) -> dict:
    """Every run directory under RUNS_DIR, with its family, steps and last losses."""
    root = runs_dir(request)
    return {"runs": [_summary(request, p) for p in list_run_dirs(root, depth=LIST_DEPTH)],
            "report": "/api/runs/report" if tour_report(root) else None}


@router.get("/run")
def one_run(request: Request, run: str = Query(..., max_length=200),
            points: int = Query(MAX_POINTS, ge=2, le=MAX_POINTS)) -> dict:
    """One run's configuration and its curves: for each metric, for each split, the steps
    and values (at most ``points`` per curve)."""
    path = run_path(request, run)
    name = run_name(request, path)
    config, config_error = _read_config(path, name)
    records, metrics_error = _read_records(path, name)
    curves: dict[str, dict[str, dict[str, list]]] = {}
    for rec in records:
        for key, value in rec.items():
            if key in NOT_CURVES or not _number(value):
                continue
            c = curves.setdefault(key, {}).setdefault(rec["split"], {"x": [], "y": []})
            c["x"].append(rec["step"])
            c["y"].append(float(value))
    for by_split in curves.values():
        for c in by_split.values():
            c["x"], c["y"] = _thin(c["x"], c["y"], points)
    family = config.get("family") if config else None
    order = sorted(curves, key=lambda k: (k != "loss", k))  # the loss first
    return {"name": name, "family": family if isinstance(family, str) else None, "config": config,
            "config_error": config_error, "metrics": order, "curves": {k: curves[k] for k in order},
            "metrics_error": metrics_error, "summary": _describe(name, config, config_error, records, metrics_error)}


@router.get("/report", response_class=HTMLResponse)
def report(request: Request) -> HTMLResponse:
    """The tour's report.html (only that file), or a 404 saying where it was looked for."""
    found = tour_report(runs_dir(request))
    if found is None:
        raise BadRequest("report: no tour report found (expected report.html in RUNS_DIR, in RUNS_DIR/tour, or "
                         "beside a RUNS_DIR named 'runs', as `seqlab tour --out DIR` writes it)", 404)
    try:
        return HTMLResponse(found.read_text(encoding="utf-8", errors="replace"))
    except OSError as e:
        raise BadRequest(f"report: cannot read the tour report ({e.__class__.__name__})", 404) from None
