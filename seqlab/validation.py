"""Checks for public inputs. Every failure raises ``ValueError`` whose message names
what was expected and what was received, e.g.

    x: expected a 3-D tensor (batch, time, features), received shape (5, 7)

``assert`` stays for internal invariants; these helpers are for the boundary.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch


def fail(what: str, expected: str, received: object) -> None:
    """Raise the project's standard ``ValueError``."""
    raise ValueError(f"{what}: expected {expected}, received {received}")


def resolve_config(config: object, kwargs: dict, config_class: type, owner: str) -> object:
    """The config of a model built as ``Model(config)`` or ``Model(**kwargs)``: builds
    ``config_class(**kwargs)`` when no config is given, and refuses both at once or a config
    of another class."""
    if config is None:
        return config_class(**kwargs)
    if kwargs:
        fail(f"{owner}(config, **kwargs)", "a config or keyword arguments, not both", sorted(kwargs))
    if not isinstance(config, config_class):
        fail("config", f"a {config_class.__name__}", type(config).__name__)
    return config


def shape_str(x: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in x.shape) + ")"


def _all_finite(x: torch.Tensor) -> bool:
    """Whether every value of the floating tensor x is finite. A NaN or an infinity makes the
    sum NaN or infinite, so a finite sum (one fast reduction) settles it; a sum that is not
    finite may be an overflow of finite values, and only then is every value checked."""
    with torch.no_grad():
        if bool(torch.isfinite(x.sum())):
            return True
        return bool(torch.isfinite(x).all())


def check_tensor(
    x: object,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    dims: str = "",
    floating: bool = False,
    finite: bool = False,
) -> torch.Tensor:
    """Check that ``x`` is a tensor of the given rank (``dims`` describes the axes in the
    message), of floating dtype if asked, and free of NaN/inf if asked."""
    if not isinstance(x, torch.Tensor):
        fail(name, "a torch.Tensor", type(x).__name__)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            ranks = " or ".join(f"{r}-D" for r in allowed)
            desc = f" {dims}" if dims else ""
            fail(name, f"a {ranks} tensor{desc}", f"shape {shape_str(x)}")
    if floating and not x.is_floating_point():
        fail(name, "a floating-point tensor", f"dtype {x.dtype}")
    if finite and x.is_floating_point() and x.numel() and not _all_finite(x):
        bad = int((~torch.isfinite(x)).sum())
        fail(name, "finite values", f"{bad} NaN or infinite value(s)")
    return x


def check_token_ids(
    ids: object,
    name: str,
    vocab_size: int,
    *,
    what: str = "token ids",
    max_len: int | None = None,
    offset: int = 0,
    note: str = "",
    integer: str | None = None,
    max_len_note: str = "",
) -> torch.Tensor:
    """Token ids at a model's boundary: a (batch, time) tensor of an integer dtype (not bool,
    float or complex), at least one row and one position, at most ``max_len`` positions after
    ``offset`` cached ones, values in [0, ``vocab_size``). ``what`` names the ids in the
    messages ("character ids"); ``note`` follows the range, ``max_len_note`` the length limit,
    ``integer`` replaces "integer <what>" as what the dtype error expects. Returns them as int64
    (an embedding lookup takes int64 and int32 only, and indexing with uint8 would read them as
    a mask)."""
    check_tensor(ids, name, ndim=2, dims="(batch, time)")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        fail(name, integer or f"integer {what}", f"dtype {ids.dtype}")
    B, T = ids.shape
    if B < 1 or T < 1:
        fail(name, "at least one sequence and one position", f"shape {shape_str(ids)}")
    if max_len is not None and offset + T > max_len:
        got = f"{T} positions" if offset == 0 else f"{offset} cached + {T} new positions"
        fail(name, f"at most block_size = {max_len} positions{max_len_note}",
             got + (f", shape {shape_str(ids)}" if max_len_note else ""))
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab_size:
        fail(name, f"{what} in [0, {vocab_size - 1}]{note}", f"values in [{lo}, {hi}]")
    return ids if ids.dtype == torch.int64 else ids.long()


def check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        fail(name, "True or False", repr(value))
    return value


def check_size(x: torch.Tensor, name: str, dim: int, size: int, meaning: str) -> None:
    if x.shape[dim] != size:
        fail(name, f"{meaning} = {size} (size of dim {dim})", f"{x.shape[dim]} in shape {shape_str(x)}")


def check_lengths(lengths: object, batch: int, time: int) -> torch.Tensor:
    """Sequence lengths t_i: a 1-D integer tensor (or list) of ``batch`` values in [1, time].

    Returns them as a CPU ``int64`` tensor."""
    if isinstance(lengths, (list, tuple)):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in lengths):
            fail("lengths", "integers", [type(v).__name__ for v in lengths])
        lengths = torch.tensor(list(lengths), dtype=torch.int64)
    if not isinstance(lengths, torch.Tensor):
        fail("lengths", "a 1-D integer tensor or a list of ints", type(lengths).__name__)
    if lengths.dim() != 1 or lengths.is_floating_point() or lengths.dtype == torch.bool:
        fail("lengths", "a 1-D integer tensor", f"shape {shape_str(lengths)}, dtype {lengths.dtype}")
    if lengths.numel() != batch:
        fail("lengths", f"one length per item ({batch})", f"{lengths.numel()} lengths")
    lengths = lengths.to("cpu", torch.int64)
    if batch and int(lengths.min()) < 1:
        fail("lengths", "every length >= 1", f"minimum {int(lengths.min())}")
    if batch and int(lengths.max()) > time:
        fail("lengths", f"every length <= T = {time} (the tensor's time axis)", f"maximum {int(lengths.max())}")
    return lengths


def check_int(value: object, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(name, "an integer", repr(value))
    if minimum is not None and value < minimum:
        fail(name, f"an integer >= {minimum}", value)
    if maximum is not None and value > maximum:
        fail(name, f"an integer <= {maximum}", value)
    return value


def check_float(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    open_min: bool = False,
    open_max: bool = False,
    finite: bool = False,
) -> float:
    """``value`` as a float: a number (not a bool, not NaN) within the bounds; ``finite``
    also refuses +-inf."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(name, "a number", repr(value))
    try:
        value = float(value)
    except OverflowError:  # an int too large for a float
        fail(name, "a finite number" if finite else "a number", repr(value))
    if math.isnan(value):
        fail(name, "a number", "nan")
    if finite and math.isinf(value):
        fail(name, "a finite number", value)
    if minimum is not None and (value <= minimum if open_min else value < minimum):
        fail(name, f"a number {'>' if open_min else '>='} {minimum}", value)
    if maximum is not None and (value >= maximum if open_max else value > maximum):
        fail(name, f"a number {'<' if open_max else '<='} {maximum}", value)
    return value


def fields_from_dict(cls, d: object, what: str) -> dict:
    """The fields of dataclass ``cls`` from the mapping ``d`` (e.g. a checkpoint's
    config.json), refusing anything that is not a mapping or names an unknown field."""
    import dataclasses
    from collections.abc import Mapping

    if not isinstance(d, Mapping):
        fail(what, "a dict", type(d).__name__)
    known = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(d) - set(known))
    if unknown:
        fail(what, f"fields among {known}", f"unknown fields {unknown}")
    return dict(d)


def check_choice(value: object, name: str, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        fail(name, "one of " + ", ".join(repr(c) for c in choices), repr(value))
    return value  # type: ignore[return-value]


def check_unit_interval(x: torch.Tensor, name: str, meaning: str) -> None:
    """Every value of ``x`` finite and in [0, 1] (``meaning`` says what the values are, e.g.
    "pixel values"), else a ValueError that counts the non-finite ones or gives the range."""
    values = x.detach()
    if not bool(torch.isfinite(values).all()):
        fail(name, "finite values in [0, 1]", f"{int((~torch.isfinite(values)).sum())} NaN or infinite value(s)")
    lo, hi = float(values.min()), float(values.max())
    if lo < 0.0 or hi > 1.0:
        fail(name, f"{meaning} in [0, 1]", f"values from {lo:g} to {hi:g}")
