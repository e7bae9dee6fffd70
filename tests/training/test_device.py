"""Devices and precision (seqlab.training.device)."""

import pytest
import torch

from seqlab.training.device import autocast_context, available_devices, resolve_device, resolve_precision


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert str(resolve_device("auto")).split(":")[0] in {d.split(":")[0] for d in available_devices()}
    with pytest.raises(ValueError, match=r"device: expected one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps', received 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match=r"device: expected one of the devices available here: 'auto', 'cpu'.*, received 'cuda:99'"):
        resolve_device("cuda:99")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"devices available here: 'auto', 'cpu'.*received 'cuda'"):
            resolve_device("cuda")


def test_autocast_context_on_cpu():
    with pytest.raises(ValueError, match=r"precision: expected 'fp32' or 'auto' on a non-CUDA device.*received 'bf16' on device 'cpu'"):
        autocast_context("cpu", "bf16")
    with pytest.raises(ValueError, match=r"precision: expected one of 'auto', 'fp32', 'bf16', received 'half'"):
        autocast_context("cpu", "half")
    for precision in ("auto", "fp32"):
        assert resolve_precision("cpu", precision) == "fp32"
        with autocast_context(torch.device("cpu"), precision):
            y = torch.ones(2, 2) @ torch.ones(2, 2)
        assert y.dtype == torch.float32
