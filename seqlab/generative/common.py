"""What the generative models share: the image checks at the boundary and the pixel ranges.

Images are (B, C, H, W) float tensors with pixel values in [0, 1]. The GAN and the diffusion
model work in [-1, 1] (``to_signed`` / ``from_signed``); the VAE's Bernoulli decoder works
in [0, 1].
"""

from __future__ import annotations

import torch

from seqlab.validation import check_int, check_unit_interval, fail, shape_str


def check_image_config(channels: object, image_size: object) -> None:
    """``channels`` >= 1 and ``image_size`` a multiple of 4, >= 8 (the models halve it twice)."""
    check_int(channels, "channels", minimum=1)
    check_int(image_size, "image_size", minimum=8)
    if image_size % 4:
        fail("image_size", "a multiple of 4 (the networks halve the image twice), e.g. 8 or 28", image_size)


def check_images(x: object, channels: int, image_size: int, name: str = "images") -> torch.Tensor:
    """``x`` as a floating (B, C, H, W) tensor with C = ``channels``, H = W = ``image_size``,
    finite values in [0, 1]; otherwise a ValueError naming what was expected and received."""
    if not isinstance(x, torch.Tensor):
        fail(name, "a torch.Tensor (B, C, H, W) with values in [0, 1]", type(x).__name__)
    if x.dim() != 4:
        fail(name, f"a 4-D tensor (B, C, H, W) = (B, {channels}, {image_size}, {image_size})",
             f"shape {shape_str(x)}")
    if x.shape[0] == 0:
        fail(name, "at least one image", f"shape {shape_str(x)}")
    if x.shape[1] != channels:
        fail(name, f"{channels} channel(s) (dim 1)", f"{x.shape[1]} in shape {shape_str(x)}")
    if x.shape[2] != image_size or x.shape[3] != image_size:
        fail(name, f"images of {image_size}x{image_size} pixels", f"{x.shape[2]}x{x.shape[3]} in shape {shape_str(x)}")
    if not x.is_floating_point():
        fail(name, "a floating-point tensor with values in [0, 1]", f"dtype {x.dtype}")
    check_unit_interval(x, name, "pixel values")
    return x


def check_network_input(x: object, name: str, shape: tuple, dims: str, param: torch.Tensor) -> torch.Tensor:
    """The input of one of the networks (a generator's noise, a discriminator's or a U-Net's
    images): a floating tensor of ``shape`` (None entries: any size >= 1, e.g. the batch;
    ``dims`` names the axes in the message), cast to the dtype of ``param`` (kept as it is
    under autocast). Only the shape and dtype are checked, not the values: no host sync in
    a training step."""
    if not isinstance(x, torch.Tensor):
        fail(name, f"a torch.Tensor {dims}", type(x).__name__)
    want = "(" + ", ".join("B" if s is None else str(s) for s in shape) + ")"
    if x.dim() != len(shape) or any(s is not None and x.shape[i] != s for i, s in enumerate(shape)):
        fail(name, f"a tensor {dims} = {want}", f"shape {shape_str(x)}")
    if any(x.shape[i] < 1 for i, s in enumerate(shape) if s is None):
        fail(name, f"a tensor {dims} = {want} with at least one item", f"shape {shape_str(x)}")
    if not x.is_floating_point():
        fail(name, "a floating-point tensor", f"dtype {x.dtype}")
    if x.dtype != param.dtype and not _autocast_on(x.device):
        x = x.to(param.dtype)
    return x


def _autocast_on(device: torch.device) -> bool:
    try:
        return torch.is_autocast_enabled(device.type)
    except TypeError:  # pragma: no cover - torch < 2.4
        return torch.is_autocast_enabled()


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2.0 - 1.0


def from_signed(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)
