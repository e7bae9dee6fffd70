"""The run directory: where a run's files live, how they are found, and what a resume may change.

Layout of a run directory (written by ``seqlab.training.loop.train``)::

    run/
      run.json             family, model config, train config, data description
      metrics.jsonl        one JSON object per line (train and val metrics)
      checkpoints/
        step-00001000/     checkpoint directories (``seqlab.training.checkpoint``)
        latest.json        {"step", "path", "val_loss"} of the newest checkpoint
        best.json          same, for the checkpoint with the best validation loss

Checkpoints are written atomically, so the complete ``step-NNNNNNNN`` directories are the
ground truth; the pointer files mirror them for people and other tools. ``run_family`` is the
one way to learn which model family a run directory or a checkpoint directory holds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import stat
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from seqlab.training.checkpoint import CONFIG_FILE, read_checkpoint_header
from seqlab.training.config import TrainConfig
from seqlab.training.io import atomic_write_json, atomic_write_text, fsync_dir, temporary_name
from seqlab.validation import fail

PathLike = str | os.PathLike

RUN_FILE = "run.json"
RUN_FORMAT = "seqlab-run"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest.json"
BEST_FILE = "best.json"
# Train settings that do not change a run's trajectory: they may differ when resuming.
RESUMABLE_CHANGES = ("device", "precision", "log_every", "max_seconds", "tensorboard", "compile")
# Keys of the data description that say *which* data a run trains on; the others (source
# path, name, kind, counts) only describe it, and may differ when resuming (a moved copy of
# the same file has the same sha256).
DATA_IDENTITY_KEYS = ("sha256", "block_size", "val_fraction", "vocab_size", "tokenizer", "split_seed", "side",
                      "channels")
_STEP_DIR = re.compile(r"^step-(\d{8,})$")
_LEFTOVER = re.compile(r"^\.(step-\d{8,}|latest\.json|best\.json)\.(tmp|old|del)-\d+-[0-9a-f]{8}$")


# --------------------------------------------------------------------------- checkpoints of a run


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint at ``step``: ``step-00001000``."""
    return f"step-{step:08d}"


def checkpoint_complete(path: PathLike) -> bool:
    """Whether ``path`` is a complete checkpoint directory: its config.json is readable and
    every file of its manifest is there with the manifest's size. Only ``stat`` is used: the
    contents are verified (sha256) when the checkpoint is loaded."""
    path = Path(path)
    try:
        manifest = read_checkpoint_header(path)["manifest"]
    except (ValueError, OSError):
        return False
    for name, entry in manifest.items():
        if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
            return False
        if not isinstance(entry, Mapping) or isinstance(entry.get("bytes"), bool) \
                or not isinstance(entry.get("bytes"), int):
            return False
        try:
            st = (path / name).stat()
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry["bytes"]:
            return False
    return True


def list_checkpoints(run_dir: PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run directory as (step, path), oldest first. Only directories
    named ``step-NNNNNNNN`` that are complete (``checkpoint_complete``) count; temporary and
    half-deleted ones are hidden or incomplete."""
    ckdir = Path(run_dir) / CHECKPOINTS_DIR
    if not ckdir.is_dir():
        return []
    out = []
    for p in ckdir.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir() and not p.is_symlink() and checkpoint_complete(p):
            out.append((int(m.group(1)), p))
    return sorted(out)


def read_pointer(run_dir: PathLike, which: str) -> dict | None:
    """The content of ``checkpoints/latest.json`` or ``best.json``, or ``None`` when it is
    missing or unreadable (a pointer only mirrors the checkpoint directories)."""
    f = Path(run_dir) / CHECKPOINTS_DIR / which
    try:
        obj = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("path"), str) or "/" in obj["path"] or "\\" in obj["path"]:
        return None
    return obj


def write_pointer(run_dir: PathLike, which: str, *, step: int, path: PathLike, val_loss: float | None) -> Path:
    """Write ``checkpoints/latest.json`` or ``best.json`` atomically."""
    if which not in (LATEST_FILE, BEST_FILE):
        fail("pointer", f"{LATEST_FILE!r} or {BEST_FILE!r}", repr(which))
    if val_loss is not None and not math.isfinite(val_loss):
        val_loss = None
    obj = {"step": int(step), "path": Path(path).name, "val_loss": val_loss}
    return atomic_write_json(Path(run_dir) / CHECKPOINTS_DIR / which, obj)


def latest_checkpoint(run_dir: PathLike) -> Path | None:
    """The newest complete checkpoint of a run directory (highest step), or ``None``.
    Checkpoints are written atomically, so the directory names are the ground truth;
    ``latest.json`` mirrors the answer for people and other tools."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def best_checkpoint(run_dir: PathLike) -> Path | None:
    """The checkpoint named by ``checkpoints/best.json`` if it exists, else ``None``."""
    ptr = read_pointer(run_dir, BEST_FILE)
    if ptr is None:
        return None
    p = Path(run_dir) / CHECKPOINTS_DIR / ptr["path"]
    # not checked further: a best checkpoint that was damaged after it was written is an error
    # when it is loaded, not a reason to load another one silently (pruning never deletes it)
    return p if (p / CONFIG_FILE).is_file() else None


def resolve_checkpoint(path: PathLike) -> Path:
    """A checkpoint directory from a checkpoint directory or a run directory (its best
    checkpoint, else its latest). Anything else is a ValueError."""
    p = Path(path)
    if not p.exists():
        fail("checkpoint", "a checkpoint directory or a run directory", f"{str(p)!r} (no such path)")
    if not p.is_dir():
        fail("checkpoint", "a checkpoint directory or a run directory", f"{str(p)!r} (not a directory)")
    if (p / CONFIG_FILE).is_file():
        return p
    found = best_checkpoint(p) or latest_checkpoint(p)
    if found is None:
        fail("checkpoint", "a checkpoint directory (with config.json) or a run directory with checkpoints",
             f"{str(p)!r}, which holds neither")
    return found


def remove_checkpoint_dir(path: PathLike) -> None:
    """Delete a checkpoint directory so that a kill at any moment leaves either the complete
    checkpoint or a hidden leftover (``.step-N.del-PID-X``), never a half-deleted folder under
    the checkpoint's name: it is renamed first (and the rename made durable), then deleted."""
    path = Path(path)
    hidden = path.parent / temporary_name(path.name, "del")
    try:
        os.rename(path, hidden)
    except FileNotFoundError:
        return
    fsync_dir(path.parent)
    shutil.rmtree(hidden, ignore_errors=True)


def _is_leftover(name: str) -> bool:
    """A hidden name of ``seqlab.training.io.temporary_name`` in ``checkpoints/``:
    ``.step-N.tmp-*`` (a checkpoint write cut short), ``.step-N.old-*`` (a replaced one),
    ``.step-N.del-*`` (a deletion), ``.latest.json.tmp-*`` (a pointer write)."""
    return _LEFTOVER.match(name) is not None


def _remove_leftover(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def clean_checkpoints(run_dir: PathLike) -> list[Path]:
    """Tidy ``checkpoints/`` after a kill: remove incomplete ``step-N`` directories (see
    ``checkpoint_complete``) and hidden temporary or half-deleted ones. A complete checkpoint
    that a kill left under its hidden ``.old`` name while it was being replaced, with nothing
    under its own name, is put back. Called when a run starts (new or resumed), when no other
    process writes there. Returns what was removed."""
    ckdir = Path(run_dir) / CHECKPOINTS_DIR
    if not ckdir.is_dir():
        return []
    removed = []
    for p in sorted(ckdir.iterdir()):
        if _STEP_DIR.match(p.name) and p.is_dir() and not p.is_symlink() and not checkpoint_complete(p):
            remove_checkpoint_dir(p)
            removed.append(p)
    for p in sorted(ckdir.iterdir()):
        if not _is_leftover(p.name):
            continue
        name = p.name[1:].split(".")[0]  # .step-N.old-PID-X -> step-N
        if ".old-" in p.name and _STEP_DIR.match(name) and not (ckdir / name).exists() \
                and checkpoint_complete(p):
            os.rename(p, ckdir / name)
            fsync_dir(ckdir)
            continue
        _remove_leftover(p)
        removed.append(p)
    return removed


def prune_checkpoints(run_dir: PathLike, keep_last: int, *, keep: Sequence[PathLike] = ()) -> list[Path]:
    """Delete old checkpoints, keeping the ``keep_last`` newest, the best one (best.json) and
    any in ``keep``; also removes hidden leftovers of interrupted writes. Each one is renamed
    to a hidden name before it is deleted (``remove_checkpoint_dir``). Returns what was deleted."""
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
        fail("keep_last", "an integer >= 1", repr(keep_last))
    found = list_checkpoints(run_dir)
    protected = {p.resolve() for _, p in found[-keep_last:]}
    best = best_checkpoint(run_dir)
    if best is not None:
        protected.add(best.resolve())
    protected.update(Path(k).resolve() for k in keep)
    removed = []
    for _, p in found:
        if p.resolve() not in protected:
            remove_checkpoint_dir(p)
            removed.append(p)
    ckdir = Path(run_dir) / CHECKPOINTS_DIR
    for p in ckdir.iterdir() if ckdir.is_dir() else ():
        if _is_leftover(p.name):
            _remove_leftover(p)
    return removed


# --------------------------------------------------------------------------- run.json


def json_normal(obj: Any, what: str) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists); non-JSON values are a ValueError."""
    try:
        return json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError) as e:
        fail(what, "JSON-serializable values", str(e))


def read_run_json(run_dir: PathLike) -> dict:
    """The ``run.json`` of ``run_dir``, checked to be a seqlab run file (not its family)."""
    run_dir = Path(run_dir)
    f = run_dir / RUN_FILE
    try:
        obj = json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fail("resume", f"the run's {RUN_FILE} in {str(run_dir)!r}", "no such file")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"run file {f}", "readable JSON", f"an unreadable file ({e})")
    if not isinstance(obj, dict) or obj.get("format") != RUN_FORMAT:
        fail(f"run file {f}", f"format {RUN_FORMAT!r}", repr(obj.get("format") if isinstance(obj, dict) else obj))
    return obj


def write_run_json(run_dir: PathLike, *, family: str, model_config: Mapping, train_config: TrainConfig,
                   data: Mapping | None, created: str | None = None) -> Path:
    """Write ``run.json`` atomically: what a resume or a load needs to rebuild the run.
    ``created`` (ISO time) defaults to now; a resumed run keeps its first one."""
    from seqlab import __version__

    if created is None:
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return atomic_write_json(Path(run_dir) / RUN_FILE, {
        "format": RUN_FORMAT,
        "version": 1,
        "family": family,
        "model_config": json_normal(dict(model_config), "model_config"),
        "train_config": train_config.to_dict(),
        "data": None if data is None else json_normal(dict(data), "data_info"),
        "seqlab_version": __version__,
        "created": created,
    })


def default_run_dir(family: str) -> Path:
    """``runs/FAMILY-DATE-TIME``: where a run goes when no ``--out`` is given."""
    return Path("runs") / f"{family}-{time.strftime('%Y%m%d-%H%M%S')}"


def find_run_dir(path: PathLike) -> Path:
    """The run directory of ``path``: itself, or for a checkpoint (RUN/checkpoints/step-N) the
    run two levels up."""
    path = Path(path)
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / RUN_FILE).exists():
            return candidate
    fail("run", "a run directory (holding run.json) or a checkpoint inside one", f"{str(path)!r}")


def read_run(run_dir: PathLike, family: str | tuple[str, ...]) -> dict:
    """The ``run.json`` of a run directory, checked to be a run of ``family`` (a name or
    several)."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file():
        fail("resume", f"a run directory holding {RUN_FILE}", f"{str(run_dir)!r} (no {RUN_FILE} there)")
    saved = read_run_json(run_dir)
    families = (family,) if isinstance(family, str) else tuple(family)
    if saved.get("family") not in families:
        fail("run family", " or ".join(map(repr, families)), repr(saved.get("family")))
    return saved


def run_family(path: PathLike) -> str:
    """The model family ("charlm", "gpt", "rbm", ...) of a run directory (from its run.json)
    or of a checkpoint directory (from its config.json). Anything else is a ValueError."""
    p = Path(path)
    if (p / RUN_FILE).is_file():
        family = read_run_json(p).get("family")
        if not isinstance(family, str) or not family:
            fail(f"run file {p / RUN_FILE}", "a family name", repr(family))
        return family
    if (p / CONFIG_FILE).is_file():
        return read_checkpoint_header(p)["family"]
    why = "no such path" if not p.exists() else "not a directory" if not p.is_dir() else \
        f"neither {RUN_FILE} nor {CONFIG_FILE} there"
    fail("run", f"a run directory (holding {RUN_FILE}) or a checkpoint directory (holding {CONFIG_FILE})",
         f"{str(p)!r} ({why})")


# --------------------------------------------------------------------------- resuming


def read_metrics(run_dir: PathLike, *, strict: bool = False) -> list[tuple[str, dict]]:
    """The records of ``metrics.jsonl`` as (line, record), in order; none if the file is
    missing. A torn last line (a run killed while writing) is skipped; another line that is not
    a JSON object is skipped too, or, with ``strict``, a ValueError naming it."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    out = []
    for k, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        if isinstance(rec, dict):
            out.append((line, rec))
        elif strict and k < len(lines):
            fail(f"metrics file {path}", "one JSON object per line", f"line {k}: {line[:60]!r}")
    return out


def truncate_metrics(run_dir: PathLike, step: int) -> list[dict]:
    """Keep the records of ``metrics.jsonl`` of steps <= ``step`` (and drop a torn last line);
    return them. A resumed run continues the file from its checkpoint's step."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    kept = [(line, rec) for line, rec in read_metrics(run_dir)
            if isinstance(rec.get("step"), int) and rec["step"] <= step]
    atomic_write_text(path, "".join(line + "\n" for line, _ in kept))
    return [rec for _, rec in kept]


def _diff(prefix: str, saved: Any, new: Any, out: list[str]) -> None:
    if isinstance(saved, dict) and isinstance(new, dict):
        for k in sorted(set(saved) | set(new), key=str):
            _diff(f"{prefix}.{k}", saved.get(k, "(missing)"), new.get(k, "(missing)"), out)
    elif saved != new:
        out.append(f"{prefix}: saved {saved!r}, new {new!r}")


def resume_differences(saved: Mapping, family: str, model_config: Mapping, cfg: TrainConfig,
                       data_info: Mapping | None) -> list[str]:
    """What a resume would change of the saved run (``run.json`` as ``saved``), one
    ``"name: saved X, new Y"`` per difference; empty when the run may continue.

    The train settings in ``RESUMABLE_CHANGES`` may differ; the data are compared on the
    ``DATA_IDENTITY_KEYS`` present in both descriptions only, so a moved copy of the same
    file (same sha256, another path) is the same data."""
    diffs: list[str] = []
    if saved.get("family") != family:
        diffs.append(f"family: saved {saved.get('family')!r}, new {family!r}")
    _diff("model_config", saved.get("model_config"), json_normal(dict(model_config), "model_config"), diffs)
    try:
        old = TrainConfig.from_dict(saved.get("train_config") or {})
    except (ValueError, TypeError) as e:
        fail(f"run file {RUN_FILE}", "a valid train config", str(e))
    for f in dataclasses.fields(TrainConfig):
        if f.name in RESUMABLE_CHANGES:
            continue
        a, b = getattr(old, f.name), getattr(cfg, f.name)
        if a != b:
            diffs.append(f"{f.name}: saved {a!r}, new {b!r}")
    saved_data = saved.get("data")
    if data_info is not None and isinstance(saved_data, Mapping):
        new_data = json_normal(dict(data_info), "data_info")
        for k in DATA_IDENTITY_KEYS:
            if k in saved_data and k in new_data:
                _diff(f"data.{k}", saved_data[k], new_data[k], diffs)
    return diffs
