"""What the generative models share: the image checks at the boundary and the pixel ranges.

Images are (B, C, H, W) float tensors with pixel values in [0, 1]. The GAN and the diffusion
model work in [-1, 1] (``to_signed`` / ``from_signed``); the VAE's Bernoulli decoder works
in [0, 1].
"""

from __future__ import annotations

import torch

from seqlab.validation import check_int, fail, shape_str


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
    if not bool(torch.isfinite(x).all()):
        fail(name, "finite values in [0, 1]", f"{int((~torch.isfinite(x)).sum())} NaN or infinite value(s)")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        fail(name, "pixel values in [0, 1]", f"values from {lo:g} to {hi:g}")
    return x


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2.0 - 1.0


def from_signed(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)
