"""Where seqlab writes, checked before any work starts: the one check of output locations,
for the command line and for the library's plots (``seqlab.viz.plots.check_output_path``).

A command that computes for minutes and then finds that its output folder is a file, or
read-only, has wasted the minutes; one that made half of its output first has left debris.
So every verb checks its output locations (``--out``, ``--png``, a run directory to resume)
before it loads, trains or samples anything, and refuses a bad one in one line:

    --out: expected a folder to write in, received '/data/x' (a file)

``output_dir`` is for a folder the command creates (or writes into), ``output_file`` for a
file it writes (in a folder that exists: the plots are not written into folders made up on
the way). Both need the nearest existing folder on the way to be one the process may create
files in (``why_not_writable``): ``os.access`` answers that for a normal user, but not for
root, who passes every permission check yet still cannot create files on a read-only mount
or under ``/sys``; so a hidden file is also created and removed there. What slips through
anyway (a disk that fills up, a folder made read-only meanwhile) is caught by
``seqlab.cli.main``'s fallback, which turns any ``OSError`` into one line naming the path
(``describe_os_error``).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from seqlab.validation import fail

__all__ = ["describe_os_error", "output_dir", "output_file", "why_not_writable"]


def _nonempty(path: object, flag: str) -> Path:
    if not isinstance(path, (str, os.PathLike)) or str(path).strip() == "":
        fail(flag, "a path", repr(path) if not isinstance(path, str) else "an empty path")
    return Path(path)


def _existing_ancestor(path: Path) -> Path:
    """The nearest path on the way to ``path`` (itself included) that exists."""
    p = path
    while not p.exists() and not p.is_symlink():
        if p.parent == p:
            break
        p = p.parent
    return p


def why_not_writable(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (None if one can): ``os.access``, then a hidden
    file created there and removed at once (root passes ``os.access`` everywhere)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "read-only"
    try:
        fd, name = tempfile.mkstemp(prefix=".seqlab-write-check-", dir=folder)
    except OSError as e:
        return (e.strerror or type(e).__name__).lower()
    os.close(fd)
    try:
        os.unlink(name)
    except OSError:
        pass
    return None


def _writable_folder_on_the_way(path: Path, flag: str, target: Path) -> None:
    """The nearest existing folder on the way to ``path`` must be a folder one can create files
    in (``target`` is the path the message names)."""
    base = _existing_ancestor(path)
    if not base.is_dir():
        fail(flag, "a path through folders", f"{str(target)!r} ({str(base)!r} is a file)")
    why = why_not_writable(base)
    if why is not None:
        where = why if base == target else f"{str(base)!r}: {why}"
        fail(flag, "a location where files can be written", f"{str(target)!r} ({where})")


def output_dir(path: object, flag: str) -> Path:
    """``path`` as a folder the command may create or write into: not an existing file, and
    the nearest existing folder on the way writable. Nothing is created."""
    p = _nonempty(path, flag)
    if p.exists() and not p.is_dir():
        fail(flag, "a folder to write in", f"{str(p)!r} (a file)")
    _writable_folder_on_the_way(p, flag, p)
    return p


def output_file(path: object, flag: str) -> Path:
    """``path`` as a file the command may write (replacing it if it exists): not a folder, in
    a folder that exists and is writable. Nothing is created."""
    p = _nonempty(path, flag)
    if p.is_dir():
        fail(flag, "a file name", f"{str(p)!r} (a folder)")
    if str(path).endswith(("/", os.sep)):
        fail(flag, "a file name", f"{str(path)!r} (a folder name)")
    folder = p.parent
    if not folder.is_dir() and _existing_ancestor(folder).is_dir():  # (a file on the way: said below)
        fail(flag, "a file in an existing folder", f"{str(p)!r} (no folder {str(folder)!r})")
    _writable_folder_on_the_way(folder, flag, p)
    return p


# what each errno means a path should have been
_EXPECTED = {
    errno.EACCES: "a location where files can be written (and read)",
    errno.EPERM: "a location where files can be written",
    errno.EROFS: "a location on a writable file system",
    errno.ENOTDIR: "a path through folders",
    errno.EISDIR: "a file, not a folder",
    errno.EEXIST: "a path that is free (or a folder)",
    errno.ENOSPC: "free space on the disk",
    errno.EDQUOT: "free space within the disk quota",
    errno.ENOENT: "an existing path",
    errno.ENAMETOOLONG: "a shorter path",
    errno.EBUSY: "a path that is not in use (a file name, not a mount point or '.')",
    errno.ELOOP: "a path without a loop of symbolic links",
}


def describe_os_error(exc: OSError) -> str:
    """One line for an ``OSError`` that reached the command line: the path, what it should
    have been, and what the system said (``PATH: expected ..., received ...``)."""
    path = exc.filename
    if getattr(exc, "filename2", None) is not None and exc.errno in (errno.EBUSY, errno.EEXIST):
        path = exc.filename2
    if exc.errno is None and not exc.filename:  # raised with a message of its own
        return str(exc) or type(exc).__name__
    what = repr(str(path)) if path is not None else "a file operation"
    expected = _EXPECTED.get(exc.errno, "a usable path")
    reason = exc.strerror or os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    return f"{what}: expected {expected}, received {str(reason).lower()}"
