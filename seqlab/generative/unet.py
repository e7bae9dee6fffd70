r"""The small U-Net that predicts the noise of a diffusion model, eps_theta(x_t, t).

Ho et al. (2020) use a PixelCNN++-like U-Net: a sinusoidal embedding of the timestep t (as
for the positions of a Transformer) goes through an MLP and is added inside every residual
block; the image is halved on the way down and doubled on the way up, and every level of
the way up also sees the feature map of its level on the way down (the skip connections).
This one has one residual block per level and no attention (the images are 8x8 or 28x28):

    e(t)_i        = sin(t / 10000^(2i/d)),  e(t)_{d/2+i} = cos(t / 10000^(2i/d))   (i < d/2)
    emb           = W_2 SiLU(W_1 e(t))                          time embedding (B, d)
    ResBlock(h)   = skip(h) + conv(SiLU(GN(conv(SiLU(GN(h))) + W_e SiLU(emb))))

    level l = 0 .. L-1, C_l = base_channels * channel_mults[l], resolution image_size / 2^l:
    down:  h_l = ResBlock_l(h), then a stride-2 3x3 conv halves the image (except at l = L-1)
    mid:   h = ResBlock(h)
    up:    h = ResBlock'_l(concat(h, h_l)), then nearest-neighbour x2 (except at l = 0)
    out:   eps_theta = conv(SiLU(GN(h)))      initialised at zero, so eps_theta starts at 0

GN is GroupNorm with gcd(8, C) groups. With channel_mults = (1, 2) an 8x8 image goes
8 -> 4 -> 8 and a 28x28 image 28 -> 14 -> 28; (1, 2, 2) gives 28 -> 14 -> 7 -> 14 -> 28.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.generative.common import check_network_input
from seqlab.validation import check_int, fail, shape_str


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the timesteps t (B,) (integers or floats) -> (B, dim)."""
    half = dim // 2
    # 1 / 10000^(2i/d), i = 0 .. d/2 - 1
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]  # (B, d/2)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)  # (B, 2 * (d/2))
    return F.pad(emb, (0, dim - 2 * half))  # (B, d), a zero column when d is odd


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU; the time embedding is added between them."""

    def __init__(self, c_in: int, c_out: int, time_dim: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(time_dim, c_out)
        self.norm2, self.conv2 = group_norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # h (B, C_in, H, W), emb (B, time_dim) -> (B, C_out, H, W)
        a = self.conv1(F.silu(self.norm1(h)))
        a = a + self.time(F.silu(emb))[:, :, None, None]  # (B, C_out, 1, 1) broadcast over pixels
        a = self.conv2(F.silu(self.norm2(a)))
        return self.skip(h) + a


class UNet(nn.Module):
    """eps_theta(x_t, t): (B, C, S, S) and (B,) timesteps -> (B, C, S, S)."""

    def __init__(self, channels: int, base_channels: int, channel_mults: Sequence[int], time_dim: int) -> None:
        super().__init__()
        check_int(channels, "channels", minimum=1)
        check_int(base_channels, "base_channels", minimum=1)
        if (not isinstance(channel_mults, (list, tuple)) or not channel_mults
                or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in channel_mults)):
            fail("channel_mults", "a non-empty list of positive integers, one per level, e.g. (1, 2)",
                 repr(channel_mults))
        check_int(time_dim, "time_dim", minimum=2)
        self.channels, self.levels = channels, len(channel_mults)
        self.time_dim = time_dim
        widths = [base_channels * m for m in channel_mults]  # C_l
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.conv_in = nn.Conv2d(channels, base_channels, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c = base_channels
        for l, w in enumerate(widths):
            self.down.append(ResBlock(c, w, time_dim))
            if l < len(widths) - 1:
                self.downsample.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
            c = w
        self.mid = ResBlock(c, c, time_dim)
        self.up = nn.ModuleList()
        for l in reversed(range(len(widths))):  # built top-down, from the coarsest level
            self.up.append(ResBlock(c + widths[l], widths[l], time_dim))
            c = widths[l]
        self.norm_out = group_norm(c)
        self.conv_out = nn.Conv2d(c, channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W), H and W multiples of 2^(levels - 1), at least 2^levels; t (B,) integer or
        float timesteps.
        Shapes and dtypes are checked, not the values (no host sync in a training step)."""
        x = check_network_input(x, "x", (None, self.channels, None, None), "(B, C, H, W)", self.conv_in.weight)
        unit = 2 ** (self.levels - 1)  # the image is halved levels - 1 times, then doubled back
        if x.shape[2] % unit or x.shape[3] % unit or min(x.shape[2], x.shape[3]) < 2 * unit:
            fail("x", f"height and width multiples of {unit}, at least {2 * unit} (the U-Net halves them "
                 f"{self.levels - 1} time(s), to maps of at least 2 x 2 for its group norms)", f"shape {shape_str(x)}")
        if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.shape[0] != x.shape[0] or t.is_complex() \
                or t.dtype == torch.bool:
            got = f"shape {shape_str(t)}, dtype {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            fail("t", f"a real tensor of {x.shape[0]} timesteps (B,)", got)
        emb = self.time_mlp(timestep_embedding(t, self.time_dim).to(self.conv_in.weight.dtype))  # (B, time_dim)
        h = self.conv_in(x)  # (B, C_0, S, S)
        skips = []
        for l, block in enumerate(self.down):
            h = block(h, emb)  # (B, C_l, S / 2^l, S / 2^l)
            skips.append(h)
            if l < len(self.downsample):
                h = self.downsample[l](h)  # (B, C_l, S / 2^(l+1), S / 2^(l+1))
        h = self.mid(h, emb)
        for k, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)  # (B, C_l, S / 2^l, S / 2^l)
            if k < len(self.up) - 1:
                # nearest-neighbour x 2; the next block's convolutions smooth it (no extra conv: CPU time)
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")  # (B, C_l, S / 2^(l-1), S / 2^(l-1))
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C, S, S)
