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
    if finite and x.is_floating_point() and x.numel() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        fail(name, "finite values", f"{bad} NaN or infinite value(s)")
    return x


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
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(name, "a number", repr(value))
    value = float(value)
    if math.isnan(value):
        fail(name, "a number", "nan")
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
