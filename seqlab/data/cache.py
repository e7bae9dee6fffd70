"""Where generated corpora are kept: a user cache folder, rebuilt when missing.

``cache_dir(name)`` is ``$SEQLAB_CACHE/<name>`` when ``SEQLAB_CACHE`` is set, else
``$XDG_CACHE_HOME/seqlab/<name>`` (``~/.cache/seqlab/<name>`` by default). A corpus is
written into a temporary folder beside its final place and renamed into place when whole
(``build_once``), so a build that is interrupted leaves no half corpus that a later run
would read; a corpus whose folder is there is used as it is.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from seqlab.validation import fail

__all__ = ["build_once", "cache_dir", "cache_root"]


def cache_root() -> Path:
    """The folder every generated corpus lives under."""
    env = os.environ.get("SEQLAB_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "seqlab"


def cache_dir(name: str) -> Path:
    """The cache folder of the corpus ``name`` (a plain folder name), not created."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        fail("cache name", "a plain folder name", repr(name))
    return cache_root() / name


def build_once(name: str, build: Callable[[Path], None]) -> Path:
    """The cache folder ``name``, built by ``build(tmp_folder)`` when it is missing: ``build``
    fills a fresh temporary folder, which is then renamed into place in one step. Two
    processes that build at once both succeed; the first rename wins and the other's copy is
    removed."""
    final = cache_dir(name)
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=final.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
