"""Memory: how much is available, and how much a model or a result will need, known before
anything is allocated.

A size given by the user (``--hidden-size 10000000``, ``--units 1000000``, a run's
config.json edited to ``block_size = 1000000000``) would otherwise make PyTorch try to
allocate petabytes, and fail after a long swap storm, or be killed, instead of saying why.
Every place that builds a model from a user's config, or allocates a result whose size the
user chose, asks here first and refuses in one line with the estimate:

    hidden_size=10000000: expected a model that fits in memory (about 4.0 GB available),
    received one needing about 1.6 PB for its parameters

Available memory: on the CPU, Linux's MemAvailable (``/proc/meminfo``), bounded by the
control group's limit where there is one (a container), else ``os.sysconf``'s available
pages; on a CUDA device, ``torch.cuda.mem_get_info``. A model's size: it is built on the
``meta`` device (shapes only, no storage: milliseconds for a normal model, the same for an
absurd one), and its parameters and buffers are summed, numel x element size. Training
adds a gradient and AdamW's two moment estimates per parameter.

Sizes are decimal (1 GB = 10^9 bytes).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from seqlab.validation import fail

UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
# per parameter when training: the weight, its gradient and AdamW's two moments
TRAINING_COPIES = 4
# what any machine seqlab runs on has free: smaller requests are not checked
ALWAYS_FITS = 2 ** 26


def format_bytes(n: float) -> str:
    """``1.6e15`` -> "1.6 PB" (decimal units; "512 B" below a kilobyte)."""
    n = float(n)
    for unit in UNITS:
        if abs(n) < 1000 or unit == UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available(root: str = "/sys/fs/cgroup") -> int | None:
    """What the control group (cgroup v2) still lets this process allocate, or None."""
    try:
        limit = Path(root, "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int(Path(root, "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def _sysconf_available() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def available_bytes(device: torch.device | str | None = None) -> int | None:
    """Bytes that can still be allocated on ``device`` (default the CPU), or None when it
    cannot be told. CUDA: the device's free memory. CPU and MPS (which shares the machine's
    memory): MemAvailable, bounded by a cgroup limit, else the available pages."""
    device = torch.device("cpu" if device is None else device)
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            return int(free)
        except (RuntimeError, AssertionError, ValueError):  # no CUDA here: not this check's business
            return None
    found = [n for n in (_meminfo_available(), _cgroup_available()) if n is not None]
    if found:
        return min(found)
    return _sysconf_available()


@dataclass(frozen=True)
class ModelSize:
    """Bytes of a model's parameters and of its buffers (each tensor counted once)."""

    parameters: int
    buffers: int

    def needed(self, training: bool) -> int:
        """Bytes to hold the model, and when ``training`` its gradients and AdamW's state."""
        return self.parameters * (TRAINING_COPIES if training else 1) + self.buffers


def _tensor_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


# in-place operations that only change values; on the meta device (no values) they are skipped:
# some have no compiled meta kernel, and their Python fallback imports torch._dynamo (~1.5 s)
_VALUE_OPS = frozenset({"normal_", "uniform_", "erfinv_", "clamp_", "clamp_min_", "clamp_max_", "exponential_",
                        "bernoulli_", "random_", "log_normal_", "cauchy_", "geometric_", "trunc_normal_"})


# elementwise operations (one output of the broadcast shape of the tensor arguments) and
# scans (the shape of their input), answered on the meta device without running them (their
# meta kernels are Python decompositions, whose first use imports torch._dynamo)
_ELEMENTWISE = frozenset({
    "add", "sub", "mul", "div", "true_divide", "pow", "rsub", "clamp", "clamp_min", "clamp_max", "sqrt", "rsqrt",
    "exp", "log", "sin", "cos", "neg", "abs", "square", "sigmoid", "tanh", "__add__", "__radd__", "__sub__",
    "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__", "__pow__", "__rpow__", "__neg__"})
_SCANS = frozenset({"cumprod", "cumsum"})


class _ShapesOnly(TorchFunctionMode):
    """Under ``torch.device("meta")``: skips value-only in-place operations and answers
    elementwise ones with an empty meta tensor of the right shape and dtype."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _VALUE_OPS:
            t = args[0] if args else kwargs.get("tensor", kwargs.get("input"))  # nn.init passes tensor=
            if isinstance(t, torch.Tensor) and t.is_meta:
                return t
        elif name in ("arange", "linspace") and not any(isinstance(a, torch.Tensor) for a in args) \
                and kwargs.get("device") in (None, "meta") and "out" not in kwargs:
            return _range(name, args, kwargs)
        elif name in ("randn", "rand") and kwargs.get("device") in (None, "meta") and "out" not in kwargs:
            size = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else args
            return torch.empty(*size, dtype=kwargs.get("dtype"), device="meta")
        elif name in ("zeros_like", "ones_like", "empty_like") and args and isinstance(args[0], torch.Tensor) \
                and args[0].is_meta and kwargs.get("device") in (None, "meta"):
            return torch.empty(args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype, device="meta")
        elif name == "cat" and "out" not in kwargs:
            parts = args[0] if args else kwargs.get("tensors")
            dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
            if isinstance(parts, (list, tuple)) and parts and all(isinstance(p, torch.Tensor) and p.is_meta
                                                                  and p.dim() == parts[0].dim() for p in parts):
                shape = list(parts[0].shape)
                shape[dim] = sum(p.shape[dim] for p in parts)
                dtype = parts[0].dtype
                for p in parts[1:]:
                    dtype = torch.promote_types(dtype, p.dtype)
                return torch.empty(shape, dtype=dtype, device="meta")
        elif name in _ELEMENTWISE or name in _SCANS:
            operands = [*args, *(v for k, v in kwargs.items() if k in ("other", "exponent", "min", "max"))]
            tensors = [a for a in operands if isinstance(a, torch.Tensor)]
            numbers = all(isinstance(a, (torch.Tensor, int, float)) or a is None for a in operands)
            if tensors and numbers and all(t.is_meta for t in tensors) and "out" not in kwargs:
                if name in _SCANS:
                    t = tensors[0]
                    return torch.empty(t.shape, dtype=kwargs.get("dtype") or t.dtype, device="meta")
                dtype = tensors[0].dtype
                for a in operands[1:] if name not in ("clamp", "clamp_min", "clamp_max") else ():
                    if a is not None:
                        dtype = torch.promote_types(dtype, a.dtype) if isinstance(a, torch.Tensor) \
                            else torch.result_type(torch.empty((), dtype=dtype, device="meta"), a)
                if operands and not isinstance(operands[0], torch.Tensor):  # 1 - t, 10000.0 ** t
                    dtype = torch.result_type(operands[0], tensors[0])
                if name in ("div", "true_divide", "__truediv__", "__rtruediv__", "sqrt", "rsqrt", "exp", "log", "sin",
                            "cos", "sigmoid", "tanh") and not dtype.is_floating_point:
                    dtype = torch.get_default_dtype()
                shape = _broadcast(t.shape for t in tensors)
                return torch.empty(shape, dtype=dtype, device="meta")
        return func(*args, **kwargs)


def _broadcast(shapes) -> list[int]:
    """The broadcast of several shapes (``torch.broadcast_shapes`` imports sympy on first use)."""
    out: list[int] = []
    for shape in shapes:
        shape = list(shape)
        if len(shape) > len(out):
            out = [1] * (len(shape) - len(out)) + out
        shape = [1] * (len(out) - len(shape)) + shape
        for i, (a, b) in enumerate(zip(out, shape)):
            if a != b and 1 not in (a, b):
                raise ValueError(f"shapes cannot be broadcast: {out} and {shape}")
            out[i] = b if a == 1 else a
    return out


def _range(name: str, args: tuple, kwargs: dict) -> torch.Tensor:
    """An empty meta tensor of the length ``torch.arange`` / ``torch.linspace`` would have."""
    if name == "linspace":
        steps = args[2] if len(args) > 2 else kwargs["steps"]
        return torch.empty(int(steps), dtype=kwargs.get("dtype") or torch.get_default_dtype(), device="meta")
    bounds = list(args) + [kwargs[k] for k in ("start", "end", "step") if k in kwargs]
    start, end, step = (0, bounds[0], 1) if len(bounds) == 1 else (*bounds[:2], bounds[2] if len(bounds) > 2 else 1)
    n = max(0, math.ceil((end - start) / step))
    integral = all(isinstance(b, int) for b in (start, end, step))
    dtype = kwargs.get("dtype") or (torch.int64 if integral else torch.get_default_dtype())
    return torch.empty(n, dtype=dtype, device="meta")


def model_size(build: Callable[[], nn.Module]) -> ModelSize:
    """The size of the model ``build()`` makes, built on the meta device: no storage is
    allocated, so this is as cheap for a model of petabytes as for a small one. Errors of
    ``build`` (a ValueError from a config check) propagate."""
    with torch.device("meta"), _ShapesOnly():
        model = build()
    return ModelSize(_tensor_bytes(model.parameters()), _tensor_bytes(model.buffers()))


def purpose(training: bool) -> str:
    return "its parameters, gradients and optimizer state" if training else "its parameters"


def check_fits(what: str, needed: int, *, device: torch.device | str | None = None, thing: str = "a model",
               purpose: str = "its parameters", available: int | None = None) -> None:
    """Refuse ``needed`` bytes on ``device`` when more than is available:
    "WHAT: expected THING that fits in memory (about X available), received one needing
    about Y for PURPOSE". Nothing is refused when the available memory cannot be told, nor
    below ``ALWAYS_FITS`` bytes (no need to ask the system: a training step may call this)."""
    if needed <= ALWAYS_FITS and available is None:
        return
    avail = available_bytes(device) if available is None else available
    if avail is None or needed <= avail:
        return
    device = torch.device("cpu" if device is None else device)
    where = "" if device.type == "cpu" else f" on {device}"
    fail(what, f"{thing} that fits in memory (about {format_bytes(avail)} available{where})",
         f"one needing about {format_bytes(needed)} for {purpose}")


def check_batch_fits(name: str, n: int, per_item: int, *, device: torch.device | str | None = None,
                     purpose: str = "the results and the network's activations") -> None:
    """Refuse ``n`` items (samples to draw, say) of about ``per_item`` bytes each, when they
    do not fit: "n=10000000000: expected a batch that fits in memory ...". ``n`` is a checked int."""
    check_fits(f"{name}={n}", n * per_item, device=device, thing="a batch", purpose=purpose)


def check_model_fits(make: Callable[[Any], nn.Module], config: Any, *, training: bool = False,
                     device: torch.device | str | None = None, what: str | None = None,
                     activations: Callable[[Any], int] | None = None, batch: str = "batch") -> ModelSize:
    """Refuse the model ``make(config)`` before it is built when it does not fit: on the CPU,
    where it is built, its parameters and buffers; on ``device`` (the CPU by default) also,
    when ``training``, its gradients, AdamW's state and ``activations(config)`` bytes (a
    training step's, where the model class can tell them). The message names ``what``, else
    ``batch`` (e.g. "batch_size=64") when the model alone would fit, else the field of the
    dataclass ``config`` that makes the model large (``culprit``). Returns the model's size."""
    size = model_size(lambda: make(config))
    device = torch.device("cpu" if device is None else device)
    checks = [(torch.device("cpu"), training and device.type == "cpu")]
    if device.type != "cpu":
        checks.append((device, training))

    def needed(c: Any, s: ModelSize, train_here: bool) -> int:
        return s.needed(train_here) + (activations(c) if train_here and activations is not None else 0)

    for where, train_here in checks:
        total, avail = needed(config, size, train_here), available_bytes(where)
        if avail is not None and total > avail:
            name = what or (batch if size.needed(train_here) <= avail else
                            culprit(config, lambda c: needed(c, model_size(lambda: make(c)), train_here)))
            extra = ", and a training step's activations" if train_here and activations is not None else ""
            check_fits(name, total, device=where, purpose=purpose(train_here) + extra, available=avail)
    return size


def culprit(config: Any, estimate: Callable[[Any], int]) -> str:
    """"field=value" for the integer field of the dataclass ``config`` (or of a dataclass
    inside it: "bert.block_size=...") that, put back to its default, shrinks ``estimate``
    the most; "model config" when no field does."""
    best, name = None, "model config"
    for path, value, default in _int_fields(config):
        try:
            smaller = estimate(_replace(config, path, default))
        except Exception:  # noqa: BLE001 - a combination the config refuses: not this field
            continue
        if best is None or smaller < best:
            best, name = smaller, f"{'.'.join(path)}={value}"
    return name


def _int_fields(config: Any, prefix: tuple[str, ...] = ()):
    """(path, value, default) of the int fields larger than their int default."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from _int_fields(value, prefix + (f.name,))
        elif (isinstance(value, int) and not isinstance(value, bool) and isinstance(f.default, int)
              and not isinstance(f.default, bool) and value > f.default):
            yield prefix + (f.name,), value, f.default


def _replace(config: Any, path: tuple[str, ...], value: Any) -> Any:
    if len(path) == 1:
        return dataclasses.replace(config, **{path[0]: value})
    return dataclasses.replace(config, **{path[0]: _replace(getattr(config, path[0]), path[1:], value)})


__all__ = ["ModelSize", "available_bytes", "check_batch_fits", "check_fits", "check_model_fits", "culprit",
           "format_bytes",
           "model_size"]
