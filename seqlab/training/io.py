"""Atomic file writes: a reader sees the old file or the new one, never half of either.

A file is written under a hidden temporary name in the same folder, flushed and fsync'ed,
renamed over the final name with ``os.replace`` (atomic on POSIX and Windows), and the folder
is fsync'ed so that the rename survives a power cut (``mkdir_synced`` does the same for new
folders). The new file gets the usual permissions
of a newly created file (0666 & ~umask). Checkpoints (``seqlab.training.checkpoint``), pointer
files, run.json, metrics, PNGs (``seqlab.viz.plots.save_png``) and reports all write this way.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from seqlab.validation import fail

PathLike = str | os.PathLike


def fsync_dir(path: PathLike) -> None:
    """fsync a directory so that a rename inside it is durable (no-op where unsupported)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def mkdir_synced(path: PathLike) -> Path:
    """Create the directory ``path`` and any missing parents (like ``mkdir -p``), fsync'ing the
    folder that holds each new one, so that the new directories survive a power cut too."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for p in reversed(missing):
        fsync_dir(p.parent)
    return path


def write_bytes_synced(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` (created 0666 & ~umask, or truncated), flush and fsync it."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def temporary_name(name: str, tag: str = "tmp") -> str:
    """A hidden sibling name for ``name`` that no other writer uses: ``.NAME.TAG-PID-RANDOM``."""
    return f".{name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file in the same directory,
    fsync, ``os.replace``, fsync of the directory. Readers see the old or the new file."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        fail("data", "bytes", type(data).__name__)
    path = Path(path)
    tmp = path.parent / temporary_name(path.name)
    try:
        write_bytes_synced(tmp, bytes(data))
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see ``atomic_write_bytes``)."""
    if not isinstance(text, str):
        fail("text", "a str", type(text).__name__)
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; non-JSON values are a ValueError."""
    try:
        text = json.dumps(obj, indent=indent, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        fail(f"JSON for {Path(path).name}", "JSON-serializable values (finite numbers)", str(e))
    return atomic_write_text(path, text)
