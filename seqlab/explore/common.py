"""What every widget's endpoints share: the app's RUNS_DIR, run directories resolved safely
below it, loaded models kept in a small cache, and one-line errors.

A request names a run by its path relative to RUNS_DIR (``gpt`` or ``lab/gpt``). The name is
checked part by part (letters, digits, ``.``, ``_``, ``-``; no ``..``, no absolute path, no
link leading out), so no request reads outside RUNS_DIR. Models load through
``seqlab.runs.load`` (safetensors and JSON: nothing is unpickled).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request

MAX_RUN_NAME = 200
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
CACHED_MODELS = 4  # loaded runs kept in memory (the explorer shows one or two at a time)


class BadRequest(HTTPException):
    """A request the server refuses: status 400 (or the one given) with one line of text."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(status_code=status_code, detail=message)


def runs_dir(request: Request) -> Path:
    return request.app.state.runs_dir


def run_path(request: Request, name: object) -> Path:
    """The run directory ``name`` (relative to RUNS_DIR), or a 400/404 with one line."""
    root = runs_dir(request)
    if not isinstance(name, str) or not name or len(name) > MAX_RUN_NAME:
        raise BadRequest(f"run: expected a run directory name relative to RUNS_DIR (1 to {MAX_RUN_NAME} "
                         f"characters), got {str(name)[:80]!r}")
    parts = name.split("/")
    if not all(_PART.fullmatch(p) for p in parts):
        raise BadRequest(f"run: expected a path below RUNS_DIR made of names of letters, digits, '.', '_' "
                         f"and '-', got {name[:80]!r}")
    path = root.joinpath(*parts)
    try:
        resolved = path.resolve()
    except OSError as e:
        raise BadRequest(f"run: cannot read {name!r} ({e.strerror})", 404) from None
    if resolved != root and root not in resolved.parents:
        raise BadRequest(f"run: expected a run directory below RUNS_DIR, got {name!r}, which leads outside it")
    if not (resolved / "run.json").is_file():
        raise BadRequest(f"run: expected a run directory (with run.json) below RUNS_DIR, got {name!r}", 404)
    return resolved


def list_run_dirs(root: Path, depth: int = 2) -> list[Path]:
    """The run directories (those holding run.json) under ``root``, at most ``depth`` levels
    down, sorted by name; links leading outside ``root`` are skipped."""
    found: list[Path] = []

    def walk(folder: Path, level: int) -> None:
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            return
        for child in children:
            try:
                real = child.resolve()
            except OSError:
                continue
            if real != root and root not in real.parents:
                continue
            if (child / "run.json").is_file():
                found.append(child)
            elif level < depth:
                walk(child, level + 1)

    walk(root, 1)
    return found


def run_name(request: Request, path: Path) -> str:
    return path.relative_to(runs_dir(request)).as_posix()


class ModelCache:
    """The last few loaded runs, keyed by directory and the newest checkpoint's modification
    time (a run that goes on training is reloaded), each with a lock: one request at a time
    uses a model (they are small; PyTorch modules are not safe to share between threads while
    hooks or caches are set)."""

    def __init__(self, size: int = CACHED_MODELS) -> None:
        self.size = size
        self._items: OrderedDict[tuple, tuple[Any, Any, threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> tuple[Any, Any, threading.Lock]:
        """(model, RunRecord, lock) of the run at ``path``; a run that cannot be loaded is a 400."""
        from seqlab import runs
        from seqlab.training.rundir import latest_checkpoint

        try:
            ckpt = latest_checkpoint(path)
        except (OSError, ValueError) as e:
            raise BadRequest(f"run: {e}") from None
        key = (str(path), str(ckpt), ckpt.stat().st_mtime_ns if ckpt is not None and ckpt.exists() else 0)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        try:
            model, record = runs.load(path)
        except (OSError, ValueError, KeyError) as e:
            raise BadRequest(f"run: cannot load {path.name!r}: {e}") from None
        model.eval()
        item = (model, record, threading.Lock())
        with self._lock:
            self._items[key] = item
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return item


def models(request: Request) -> ModelCache:
    return request.app.state.models


def run_json(request: Request, path: Path) -> dict:
    """The run.json of the run at ``path`` (``seqlab.training.rundir.read_run_json``: a seqlab
    run file), with a string ``family``; anything else is a 400 with one line."""
    from seqlab.training.rundir import read_run_json

    try:
        meta = read_run_json(path)
    except ValueError as e:
        raise BadRequest(f"run: cannot read {run_name(request, path)}/run.json ({e})") from None
    if not isinstance(meta.get("family"), str):
        raise BadRequest(f"run: expected a 'family' in {run_name(request, path)}/run.json, got {meta.get('family')!r}")
    return meta


def family_of(request: Request, path: Path) -> str:
    """The family name of the run at ``path`` (from run.json, without loading the model)."""
    return run_json(request, path)["family"]


def runs_of(request: Request, families) -> list[tuple[Path, str, dict]]:
    """(path, name, run.json) of the runs below RUNS_DIR whose family is in ``families``; runs
    whose run.json cannot be read are left out (the runs widget says why)."""
    wanted, out = set(families), []
    for path in list_run_dirs(runs_dir(request)):
        try:
            meta = run_json(request, path)
        except BadRequest:
            continue
        if meta["family"] in wanted:
            out.append((path, run_name(request, path), meta))
    return out
