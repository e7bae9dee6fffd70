"""Command-line flags made from dataclasses, declared once.

Every option of ``seqlab train FAMILY`` (and of ``sample`` and ``eval``) is a field of a
dataclass: the family's model config, its data options, ``TrainConfig``. The flag is the
field's name with dashes (``hidden_size`` -> ``--hidden-size``), its type the field's type,
its help the field's line in the class's "Attributes:" docstring section, and the default
shown is what a run of that family really starts from (its preset, its training defaults).

A help line may start with the variants it applies to, ``nonlinearity: (rnn) tanh or
relu``: the flag then appears only under those commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from typing import Any, Iterable, Mapping

from seqlab.validation import fail

_ENTRY = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*(?:\s*,\s*[A-Za-z_][A-Za-z0-9_]*)*)\s*:\s*(.*)$")
_ONLY = re.compile(r"^\(([a-z0-9_, -]+)\)\s*")


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> help text, from the "Attributes:" sections of ``cls`` and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        docs.update(_parse_attributes(klass.__dict__.get("__doc__") or ""))
    return docs


def _parse_attributes(doc: str) -> dict[str, str]:
    lines = doc.expandtabs().splitlines()
    out: dict[str, str] = {}
    start = next((i for i, line in enumerate(lines) if line.strip() == "Attributes:"), None)
    if start is None:
        return out
    head = len(lines[start]) - len(lines[start].lstrip())
    entry_indent, names = None, []
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= head:
            break
        m = _ENTRY.match(line)
        if m and (entry_indent is None or indent == entry_indent):
            entry_indent = indent
            names = [n.strip() for n in m.group(2).split(",")]
            for n in names:
                out[n] = m.group(3).strip()
        elif names:
            for n in names:
                out[n] = (out[n] + " " + line.strip()).strip()
    return out


def first_sentence(text: str) -> str:
    """The help a flag shows: the entry's first sentence, without reST markup."""
    text = text.replace("``", "")
    return re.split(r"\.\s+(?=[A-Z(])", text, maxsplit=1)[0].rstrip(".")


def applies_to(help_text: str, command: str | None, variants: Iterable[str] = ()) -> tuple[bool, str]:
    """(whether the option applies to ``command``, the help without its variant tag). A tag is
    a parenthesised list of the family's ``variants`` at the start of the help; anything else
    in parentheses is part of the help."""
    m = _ONLY.match(help_text)
    if not m:
        return True, help_text
    tags = {v.strip() for v in m.group(1).split(",")}
    if not tags <= set(variants):
        return True, help_text
    return command is None or command in tags, help_text[m.end():]


def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # pragma: no cover - an annotation that cannot be evaluated
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else str), True
    return tp, False


def _number(kind: type, optional: bool):
    word = {int: "an integer", float: "a number"}.get(kind, "a value")

    def parse(text: str):
        if optional and text.strip().lower() == "none":
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {word}{' or none' if optional else ''}, "
                                             f"received {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def _text(optional: bool):
    def parse(text: str):
        return None if optional and text.strip().lower() == "none" else text

    parse.__name__ = "str"
    return parse


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, received {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, received {text!r}")
    return values


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def add_fields(group, cls: type, names: Iterable[str], *, defaults: Mapping[str, Any] | None = None,
               command: str | None = None, variants: Iterable[str] = (),
               docs: Mapping[str, str] | None = None) -> list[str]:
    """Add a flag for each field of ``cls`` in ``names`` (in the class's order) that applies to
    ``command`` (one of the family's ``variants``); ``defaults`` overrides the defaults shown. Returns the names added. An option
    not given is absent from the parsed namespace (argparse.SUPPRESS), so only the options
    given on the command line are used, and ``--png none`` can say None."""
    hints = _type_hints(cls)
    docs = field_docs(cls) if docs is None else docs
    wanted = set(names)
    defaults = dict(defaults or {})
    added = []
    for f in dataclasses.fields(cls):
        if f.name not in wanted:
            continue
        text = docs.get(f.name)
        if text is None:
            fail(f"{cls.__name__}.{f.name}", "a line in the class's Attributes: docstring (the flag's help)", "none")
        ok, text = applies_to(text, command, variants)
        if not ok:
            continue
        if f.name in defaults:
            default = defaults[f.name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = dataclasses.MISSING
        text = first_sentence(text)
        shown = "" if default is dataclasses.MISSING or "default" in text else f" (default: {show(default)})"
        help_text = text + shown
        tp, optional = _unwrap_optional(hints.get(f.name, str))
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text.replace("%", "%%")}
        origin = typing.get_origin(tp)
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin is tuple and typing.get_args(tp)[:1] == (int,):
            kwargs.update(type=_int_tuple, metavar="N,N,...")
        elif origin in (tuple, list):
            kwargs.update(action="append", metavar=f.name.upper())
        elif tp in (int, float):
            kwargs.update(type=_number(tp, optional), metavar=f.name.upper())
        else:
            kwargs.update(type=_text(optional), metavar=f.name.upper())
        group.add_argument(flag(f.name), dest=f.name, **kwargs)
        added.append(f.name)
    return added


_WRITES = re.compile(r"\bPNG\b|\bfile to write\b")


def file_outputs(cls: type) -> list[str]:
    """The fields of ``cls`` that name a file the command writes: text options whose help line
    (in the "Attributes:" docstring) names a PNG or says "file to write" (``png: the PNG grid
    to write``, ``trajectory: ... to this PNG``). ``seqlab sample`` and ``seqlab eval`` check
    them before they start (``paths.output_file``)."""
    docs = field_docs(cls)
    hints = _type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp, _ = _unwrap_optional(hints.get(f.name, str))
        if tp is str and _WRITES.search(docs.get(f.name, "")):
            out.append(f.name)
    return out


def given(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The options among ``names`` that the command line gave."""
    out = {}
    for n in names:
        if hasattr(args, n):
            v = getattr(args, n)
            out[n] = tuple(v) if isinstance(v, list) else v
    return out


def read_config_file(path: str) -> dict[str, Any]:
    """A TOML file of option names, flat or under [model], [data], [train]."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    if not str(path).strip():
        fail("--config", "a TOML file", "an empty path")
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        fail("--config", "an existing TOML file", f"{path!r} (no such file)")
    except IsADirectoryError:
        fail("--config", "a TOML file", f"{path!r} (a directory)")
    except tomllib.TOMLDecodeError as e:
        fail("--config", "valid TOML", f"{path!r} ({e})")
    except UnicodeDecodeError as e:
        fail("--config", "a UTF-8 TOML file", f"{path!r} (bytes that are not UTF-8 at offset {e.start})")
    except OSError as e:
        fail("--config", "a readable TOML file", f"{path!r} ({(e.strerror or type(e).__name__).lower()})")
    flat: dict[str, Any] = {}
    for k, v in raw.items():
        if isinstance(v, dict) and k in ("model", "train", "data"):
            flat.update({kk.replace("-", "_"): vv for kk, vv in v.items()})
        else:
            flat[k.replace("-", "_")] = v
    return {k: tuple(v) if isinstance(v, list) else v for k, v in flat.items()}


def number_list(text: str, name: str, kind: type) -> list:
    """``"1,2,4"`` -> [1, 2, 4] (``kind`` int or float); anything else is a one-line error."""
    want = "comma-separated integers" if kind is int else "comma-separated numbers"
    try:
        vals = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name}: expected {want}, received {text!r}") from None
    if not vals:
        raise ValueError(f"{name}: expected {want}, received {text!r}")
    return vals
