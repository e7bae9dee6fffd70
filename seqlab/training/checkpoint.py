"""The checkpoint format: a directory of JSON and safetensors files, never a pickle.

Layout of one checkpoint directory::

    step-00001000/
      config.json          {"format": "seqlab-checkpoint", "version": 1, "family", "config",
                            "seqlab_version", "manifest": {file: {"bytes", "sha256"}}}
      model.safetensors    the model's state dict (CPU, contiguous)
      trainer.json         step, RNG states, counters, optimizer param_groups (JSON)
      trainer.safetensors  optimizer state tensors ("optim.state.3.exp_avg"), torch RNG states
      tokenizer.json ...   any extra text files the family needs

Loading reads only JSON and safetensors, so it never executes code; every file is checked
against the manifest before it is parsed: its size (from ``stat``, before reading it) and its
sha256.

Writes are atomic: everything goes into a hidden temporary sibling directory, each file and
the directory are fsync'ed, then the directory is renamed into place (and the folder holding
it fsync'ed, as is any folder created for it). A crash at any point
leaves either the previous checkpoint or the new one under the final name, never a mix.

The run directory around the checkpoints is ``seqlab.training.rundir``; the fsync and
temporary-name helpers come from ``seqlab.training.io``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from seqlab.training.io import fsync_dir, mkdir_synced, temporary_name, write_bytes_synced
from seqlab.validation import fail

FORMAT = "seqlab-checkpoint"
VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
TRAINER_JSON = "trainer.json"
TRAINER_TENSORS = "trainer.safetensors"
RESERVED_FILES = (CONFIG_FILE, MODEL_FILE, TRAINER_JSON, TRAINER_TENSORS)
MAX_HEADER_BYTES = 64 * 2**20  # config.json: the model config and the manifest
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

PathLike = str | os.PathLike


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``trainer_state`` and ``optimizer_state`` are ``None`` when the
    checkpoint holds only weights; ``files`` maps extra file names to their text."""

    path: Path
    family: str
    config: dict
    state_dict: dict[str, torch.Tensor]
    trainer_state: dict | None = None
    optimizer_state: dict | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def step(self) -> int | None:
        """The training step stored in ``trainer_state`` (``None`` if absent)."""
        if self.trainer_state is None:
            return None
        return self.trainer_state.get("step")


# --------------------------------------------------------------------------- encoding
#
# trainer.json holds everything JSON-able; tensors found anywhere in the trainer state or the
# optimizer state go to trainer.safetensors, and JSON keeps {"__tensor__": key} in their place.
# Tuples and non-finite floats are tagged so that they round-trip exactly.


def _encode(obj: Any, key: str, tensors: dict[str, torch.Tensor], what: str) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach()
        return {"__tensor__": key}
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if hasattr(obj, "item") and hasattr(obj, "dtype") and getattr(obj, "shape", None) == ():
        return _encode(obj.item(), key, tensors, what)  # numpy scalar
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{key}.{i}", tensors, what) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}.{i}", tensors, what) for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                fail(what, "string keys", f"key {k!r} ({type(k).__name__}) at {key!r}")
            if k.startswith("__") and k.endswith("__"):
                fail(what, "keys that are not dunder names", f"key {k!r} at {key!r}")
            out[k] = _encode(v, f"{key}.{k}", tensors, what)
        return out
    fail(what, "JSON values, tuples or tensors", f"{type(obj).__name__} at {key!r}")


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor], where: str) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, where) for v in obj]
    if isinstance(obj, dict):
        if len(obj) == 1:
            ((tag, value),) = obj.items()
            if tag == "__tensor__":
                if value not in tensors:
                    fail(where, f"tensor {value!r} in {TRAINER_TENSORS}", "no such tensor")
                return tensors[value]
            if tag == "__tuple__":
                return tuple(_decode(v, tensors, where) for v in value)
            if tag == "__float__":
                return float(value)
        return {k: _decode(v, tensors, where) for k, v in obj.items()}
    return obj


def _encode_optimizer(state: Mapping, tensors: dict[str, torch.Tensor]) -> dict:
    """torch optimizer state dict -> JSON; its per-parameter keys are ints (or str)."""
    if not isinstance(state, Mapping) or "state" not in state or "param_groups" not in state:
        fail("optimizer_state", "an optimizer state_dict with 'state' and 'param_groups'",
             type(state).__name__ if not isinstance(state, Mapping) else sorted(state))
    per_param = {}
    key_types = {}
    for pid, entry in state["state"].items():
        if isinstance(pid, bool) or not isinstance(pid, (int, str)):
            fail("optimizer_state", "int or str parameter ids", repr(pid))
        per_param[str(pid)] = _encode(entry, f"optim.state.{pid}", tensors, "optimizer_state")
        key_types[str(pid)] = "int" if isinstance(pid, int) else "str"
    groups = _encode(list(state["param_groups"]), "optim.param_groups", tensors, "optimizer_state")
    extra = {k: v for k, v in state.items() if k not in ("state", "param_groups")}
    return {
        "state": per_param,
        "key_types": key_types,
        "param_groups": groups,
        "extra": _encode(extra, "optim.extra", tensors, "optimizer_state"),
    }


def _decode_optimizer(obj: Mapping, tensors: Mapping[str, torch.Tensor], where: str) -> dict:
    key_types = obj.get("key_types", {})
    state = {}
    for pid, entry in obj["state"].items():
        key = int(pid) if key_types.get(pid, "int") == "int" else pid
        state[key] = _decode(entry, tensors, where)
    out = {"state": state, "param_groups": _decode(obj["param_groups"], tensors, where)}
    out.update(_decode(obj.get("extra", {}), tensors, where))
    return out


def _cpu_tensors(tensors: Mapping[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies; tensors sharing storage (tied weights) are cloned so
    that safetensors accepts them."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, str]] = set()
    for name, t in tensors.items():
        if not isinstance(name, str):
            fail(what, "string keys", repr(name))
        if not isinstance(t, torch.Tensor):
            fail(f"{what}[{name!r}]", "a torch.Tensor", type(t).__name__)
        if t.layout != torch.strided:
            fail(f"{what}[{name!r}]", "a dense (strided) tensor", f"layout {t.layout}")
        c = t.detach().to("cpu").contiguous()
        ptr = (c.untyped_storage().data_ptr(), str(c.device))
        if c.numel() and ptr in seen:
            c = c.clone()
        elif c.numel():
            seen.add(ptr)
        out[name] = c
    return out


# --------------------------------------------------------------------------- save / load


def _check_file_name(name: object) -> str:
    if not isinstance(name, str) or not _FILE_NAME.match(name):
        fail("files", "plain file names (letters, digits, '.', '_', '-'; no path)", repr(name))
    if name in RESERVED_FILES:
        fail("files", f"names other than {', '.join(RESERVED_FILES)}", repr(name))
    return name


def _json_bytes(obj: Any, what: str) -> bytes:
    try:
        return (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode("utf-8")
    except (TypeError, ValueError) as e:
        fail(what, "JSON-serializable values (dicts, lists, str, finite numbers, bool, None)", str(e))


def save_checkpoint(
    path: PathLike,
    *,
    family: str,
    config: dict,
    state_dict: Mapping[str, torch.Tensor],
    trainer_state: dict | None = None,
    optimizer_state: dict | None = None,
    files: Mapping[str, str] | None = None,
) -> Path:
    """Write a checkpoint directory at ``path`` atomically and return its path.

    ``config`` is the model's JSON config; ``state_dict`` its tensors (moved to CPU);
    ``trainer_state`` any JSON-able dict that may also hold tensors and tuples (RNG states);
    ``optimizer_state`` a torch ``optimizer.state_dict()``; ``files`` extra text files
    (``{"tokenizer.json": text}``). An existing checkpoint at ``path`` is replaced."""
    from seqlab import __version__

    path = Path(path)
    if not isinstance(family, str) or not family:
        fail("family", "a non-empty string", repr(family))
    if not isinstance(config, Mapping):
        fail("config", "a dict", type(config).__name__)
    if not isinstance(state_dict, Mapping):
        fail("state_dict", "a dict of tensors", type(state_dict).__name__)
    if trainer_state is not None and not isinstance(trainer_state, Mapping):
        fail("trainer_state", "a dict or None", type(trainer_state).__name__)
    files = dict(files or {})
    for name, text in files.items():
        _check_file_name(name)
        if not isinstance(text, str):
            fail(f"files[{name!r}]", "a str", type(text).__name__)

    # Serialise everything in memory first, so a bad input fails before touching the disk.
    contents: dict[str, bytes] = {}
    try:
        contents[MODEL_FILE] = st_save(_cpu_tensors(state_dict, "state_dict"), metadata={"format": "pt"})
    except (SafetensorError, RuntimeError) as e:
        fail("state_dict", "tensors that safetensors can store", str(e))
    if trainer_state is not None or optimizer_state is not None:
        tensors: dict[str, torch.Tensor] = {}
        doc: dict[str, Any] = {"format": "seqlab-trainer-state", "version": VERSION}
        doc["trainer"] = None if trainer_state is None else _encode(trainer_state, "trainer", tensors, "trainer_state")
        doc["optimizer"] = None if optimizer_state is None else _encode_optimizer(optimizer_state, tensors)
        contents[TRAINER_JSON] = _json_bytes(doc, "trainer_state")
        contents[TRAINER_TENSORS] = st_save(_cpu_tensors(tensors, "trainer_state"), metadata={"format": "pt"})
    for name, text in files.items():
        contents[name] = text.encode("utf-8")
    manifest = {
        name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in contents.items()
    }
    header = {
        "format": FORMAT,
        "version": VERSION,
        "family": family,
        "config": config,
        "seqlab_version": __version__,
        "manifest": manifest,
    }
    contents[CONFIG_FILE] = _json_bytes(header, "config")

    mkdir_synced(path.parent)
    tmp = path.parent / temporary_name(path.name, "tmp")
    old: Path | None = None
    try:
        tmp.mkdir()
        # config.json (with the manifest) goes last: a directory without it is not a checkpoint.
        for name in [n for n in contents if n != CONFIG_FILE] + [CONFIG_FILE]:
            write_bytes_synced(tmp / name, contents[name])
        fsync_dir(tmp)
        if path.exists() or path.is_symlink():
            old = path.parent / temporary_name(path.name, "old")
            os.rename(path, old)
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(old, path)  # put the previous checkpoint back
                old = None
                raise
        else:
            os.rename(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _read_verified(path: Path, name: str, manifest: Mapping) -> bytes:
    """The bytes of ``path / name`` after checking them against the manifest: the size first,
    from ``stat`` (a file of the wrong size is refused without being read: a huge or sparse
    file costs no memory), then the sha256."""
    entry = manifest.get(name)
    if not isinstance(entry, Mapping) or "bytes" not in entry or "sha256" not in entry:
        fail(f"checkpoint {path}", f"a manifest entry for {name}", repr(entry))
    size = entry["bytes"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        fail(f"checkpoint file {path / CONFIG_FILE}", f"a size in bytes for {name} in the manifest", repr(size))
    f = path / name
    if not f.is_file():
        fail(f"checkpoint {path}", f"{name} (listed in the manifest)", "no such file")
    actual = f.stat().st_size
    if actual != size:
        fail(f"checkpoint file {f}", f"{size} bytes (manifest size)",
             f"{actual} bytes: the file is truncated or corrupted")
    with open(f, "rb") as fh:
        data = fh.read(size + 1)  # one byte more: a file that grew since the stat is caught too
    if len(data) != size:
        fail(f"checkpoint file {f}", f"{size} bytes (manifest size)",
             f"{len(data)} bytes: the file is truncated or corrupted")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        fail(f"checkpoint file {f}", f"sha256 {entry['sha256']} (manifest)",
             f"sha256 {digest}: the file is corrupted")
    return data


def _parse_safetensors(data: bytes, f: Path) -> dict[str, torch.Tensor]:
    try:
        return st_load(data)
    except (SafetensorError, RuntimeError, ValueError) as e:
        fail(f"checkpoint file {f}", "a valid safetensors file", f"one that could not be parsed ({e})")


def _map_location(map_location: Any) -> torch.device:
    try:
        return torch.device(map_location)
    except (RuntimeError, TypeError) as e:
        fail("map_location", "a device such as 'cpu' or 'cuda:0'", f"{map_location!r} ({e})")


def _to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if t.device == device:
        return t
    try:
        return t.to(device)
    except (RuntimeError, AssertionError) as e:
        fail("map_location", "an available device", f"{str(device)!r} ({e})")


def read_checkpoint_header(path: PathLike) -> dict:
    """The checked header (config.json) of a checkpoint directory: format, version, family,
    model config and manifest. Reads nothing else; anything else is a one-line ValueError."""
    path = Path(path)
    if not path.exists():
        fail("checkpoint", "an existing checkpoint directory", f"{str(path)!r} (no such path)")
    if not path.is_dir():
        fail("checkpoint", "a checkpoint directory", f"{str(path)!r} (not a directory)")
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        fail("checkpoint", f"a directory holding {CONFIG_FILE}", f"{str(path)!r} (no {CONFIG_FILE}: not a checkpoint)")
    size = cfg_file.stat().st_size
    if size > MAX_HEADER_BYTES:  # refused before reading: a header is a few kilobytes
        fail(f"checkpoint file {cfg_file}", f"at most {MAX_HEADER_BYTES} bytes", f"{size} bytes")
    try:
        header = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"checkpoint file {cfg_file}", "readable JSON", f"an unreadable file ({e})")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        got = header.get("format") if isinstance(header, dict) else type(header).__name__
        fail(f"checkpoint file {cfg_file}", f"format {FORMAT!r}", repr(got))
    if header.get("version") != VERSION:
        fail(f"checkpoint file {cfg_file}", f"version {VERSION}", repr(header.get("version")))
    for key, typ in (("family", str), ("config", dict), ("manifest", dict)):
        if not isinstance(header.get(key), typ):
            fail(f"checkpoint file {cfg_file}", f"a {typ.__name__} under {key!r}", repr(header.get(key)))
    if MODEL_FILE not in header["manifest"]:
        fail(f"checkpoint file {cfg_file}", f"{MODEL_FILE} in the manifest", sorted(header["manifest"]))
    return header


def load_checkpoint(
    path: PathLike,
    *,
    family: str | Sequence[str] | None = None,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Load a checkpoint directory written by ``save_checkpoint``.

    ``family`` (a name or a list of names) is checked against the stored family.
    Tensors are placed on ``map_location`` (a GPU checkpoint loads on a CPU). Every file is
    checked against the manifest before parsing; nothing is unpickled."""
    path = Path(path)
    device = _map_location(map_location)
    header = read_checkpoint_header(path)
    stored = header["family"]
    if family is not None:
        allowed = (family,) if isinstance(family, str) else tuple(family)
        if stored not in allowed:
            exp = repr(allowed[0]) if len(allowed) == 1 else "one of " + ", ".join(repr(a) for a in allowed)
            fail("checkpoint family", exp, repr(stored))
    manifest = header["manifest"]
    for name in manifest:
        if name != MODEL_FILE and name not in RESERVED_FILES and not _FILE_NAME.match(str(name)):
            fail(f"checkpoint file {path / CONFIG_FILE}", "plain file names in the manifest", repr(name))
    # Verify every listed file before parsing any of them.
    raw = {name: _read_verified(path, name, manifest) for name in manifest}

    state_dict = {k: _to(v, device) for k, v in _parse_safetensors(raw[MODEL_FILE], path / MODEL_FILE).items()}
    trainer_state = optimizer_state = None
    if TRAINER_JSON in raw:
        where = f"checkpoint file {path / TRAINER_JSON}"
        try:
            doc = json.loads(raw[TRAINER_JSON].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            fail(where, "readable JSON", f"an unreadable file ({e})")
        if not isinstance(doc, dict) or doc.get("format") != "seqlab-trainer-state":
            fail(where, "format 'seqlab-trainer-state'", repr(doc.get("format") if isinstance(doc, dict) else doc))
        tensors: dict[str, torch.Tensor] = {}
        if TRAINER_TENSORS in raw:
            tensors = _parse_safetensors(raw[TRAINER_TENSORS], path / TRAINER_TENSORS)
        # RNG states stay on the CPU (torch.set_rng_state needs CPU uint8 tensors);
        # optimizer state follows map_location.
        if doc.get("trainer") is not None:
            trainer_state = _decode(doc["trainer"], tensors, where)
        if doc.get("optimizer") is not None:
            optim_tensors = {k: (_to(v, device) if k.startswith("optim.") else v) for k, v in tensors.items()}
            optimizer_state = _decode_optimizer(doc["optimizer"], optim_tensors, where)
    files = {}
    for name, data in raw.items():
        if name in RESERVED_FILES:
            continue
        try:
            files[name] = data.decode("utf-8")
        except UnicodeDecodeError as e:
            fail(f"checkpoint file {path / name}", "UTF-8 text", f"bytes that are not UTF-8 ({e})")
    return Checkpoint(
        path=path,
        family=stored,
        config=header["config"],
        state_dict=state_dict,
        trainer_state=trainer_state,
        optimizer_state=optimizer_state,
        files=files,
    )


def model_state(model) -> dict[str, torch.Tensor]:
    """What a checkpoint stores of ``model``: its ``state_dict``, or, for a model that defines
    ``checkpoint_state()`` (a fine-tune with frozen base weights, ``seqlab.llm.adapt``), only
    what that returns."""
    own = getattr(model, "checkpoint_state", None)
    return own() if callable(own) else model.state_dict()


def load_model_state(model, state: Mapping[str, torch.Tensor]) -> None:
    """Load what ``model_state`` stored: ``model.load_checkpoint_state(state)`` where the model
    defines it (it rebuilds the frozen part itself), else ``load_state_dict(state, strict=True)``
    (a mismatch raises RuntimeError)."""
    own = getattr(model, "load_checkpoint_state", None)
    if callable(own):
        own(state)
    else:
        model.load_state_dict(dict(state), strict=True)


def load_weights(model, ckpt: Checkpoint) -> None:
    """Load ``ckpt``'s weights into ``model`` (built from the checkpoint's config); a
    mismatch is a ValueError naming the checkpoint."""
    try:
        load_model_state(model, ckpt.state_dict)
    except RuntimeError as e:
        fail(f"checkpoint {ckpt.path}", "weights matching its config", f"a mismatch ({str(e).splitlines()[0]})")


def checkpoint_file(ckpt: Checkpoint, name: str) -> str:
    """The text of the file ``name`` saved with ``ckpt`` (e.g. tokenizer.json)."""
    if name not in ckpt.files:
        fail(f"checkpoint {ckpt.path}", f"a {name} file", "none")
    return ckpt.files[name]
