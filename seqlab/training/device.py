"""Devices and precision: ``--device auto|cpu|cuda|cuda:N|mps`` and ``--precision auto|fp32|bf16``.

bf16 autocast is used only on CUDA; everywhere else the model runs in float32.
"""

from __future__ import annotations

import contextlib
import re
from typing import ContextManager

import torch

from seqlab.validation import check_choice, fail

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Device names usable on this machine, e.g. ``['cpu', 'cuda', 'cuda:0']``."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
        out.extend(f"cuda:{i}" for i in range(torch.cuda.device_count()))
    if _mps_available():
        out.append("mps")
    return out


def check_device_name(name: object) -> str:
    """Check the spelling of a device name (not its availability)."""
    if not isinstance(name, str) or not _DEVICE.match(name):
        fail("device", "one of " + ", ".join(repr(c) for c in DEVICE_CHOICES), repr(name))
    return name


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA if available, else MPS if available, else CPU; any other name must be
    available here, or it is a ValueError naming what was asked and what is available."""
    check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = available_devices()
    if name not in available:
        fail("device", "one of the devices available here: " + ", ".join(repr(a) for a in ["auto", *available]),
             repr(name))
    return torch.device(name)


def _as_device(device: torch.device | str) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if isinstance(device, str):
        try:
            return torch.device(device)
        except RuntimeError:
            pass
    fail("device", "a torch.device or a device name", repr(device))


def _bf16_supported(device: torch.device) -> bool:
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    try:
        return bool(torch.cuda.is_bf16_supported())
    except Exception:  # a driver that cannot answer: be conservative
        return False


def resolve_precision(device: torch.device | str, precision: str) -> str:
    """The precision that will actually be used: ``"bf16"`` or ``"fp32"``."""
    device = _as_device(device)
    check_choice(precision, "precision", PRECISIONS)
    if precision == "fp32":
        return "fp32"
    if precision == "bf16":
        if device.type != "cuda":
            fail("precision", "'fp32' or 'auto' on a non-CUDA device (bf16 autocast is CUDA-only)",
                 f"'bf16' on device {str(device)!r}")
        if not _bf16_supported(device):
            fail("precision", "'fp32' or 'auto' on a GPU without bf16 support", f"'bf16' on device {str(device)!r}")
        return "bf16"
    return "bf16" if _bf16_supported(device) else "fp32"


def autocast_context(device: torch.device | str, precision: str) -> ContextManager:
    """bf16 autocast on CUDA (``"auto"``: when the GPU supports it); a null context otherwise.
    ``"bf16"`` on a non-CUDA device is a ValueError."""
    device = _as_device(device)
    if resolve_precision(device, precision) == "bf16":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """Run the block with ``n`` intra-op CPU threads (``None``: leave the setting alone), then
    restore the previous count. For loops of many small tensor operations, where splitting
    each one across threads costs more in synchronisation than it saves (and far more on a
    machine whose other cores are busy)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
