r"""Rotary position embeddings and QK-norm: two changes to the queries and keys of attention.

Rotary position embeddings (RoPE; Su et al. 2021, "RoFormer"). Instead of adding a
position vector to the input, each head's query and key at position p are rotated by an
angle proportional to p, in m/2 planes of their own frequency. With the half-split
pairing (coordinate i is paired with i + m/2):

    theta_i = base^(-2i / m)                                   i = 0 .. m/2 - 1
    R_p [u_i, u_(i+m/2)] = [u_i cos(p theta_i) - u_(i+m/2) sin(p theta_i),
                            u_i sin(p theta_i) + u_(i+m/2) cos(p theta_i)]
    score(s, t) = (R_s a^(q)_s) . (R_t a^(k)_t) = a^(q)_s . R_(t-s) a^(k)_t

A rotation is orthogonal and R_s^T R_t = R_(t-s), so the score depends on the positions
only through their difference t - s (the relative-position property): attention sees
relative positions, there is no position table to learn, and a KV cache keeps the keys
already rotated at their own positions.

QK-norm (Henry et al. 2020, "Query-Key Normalization for Transformers"; Dehghani et al.
2023, ViT-22B). Each head's query and key are RMS-normalised, then scaled by a learned gain
per unit (g^(q), g^(k), (m,), initialised to 1), so that the scores cannot grow without
bound as the projections grow (the logits of the softmax stay tame at higher learning
rates):

    RMS(u)  = sqrt((1/m) sum_j u_j^2 + eps)
    a^(q)  <- g^(q) * a^(q) / RMS(a^(q))      a^(k) <- g^(k) * a^(k) / RMS(a^(k))
"""

from __future__ import annotations

import torch

from seqlab.validation import check_float, check_int, check_tensor, fail, shape_str


def rotary_angles(positions: torch.Tensor, m: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of p theta_i for the given positions (T,): two (T, m/2) tables, in float32
    or better (float64 when ``positions`` is float64)."""
    dtype = torch.float64 if positions.dtype == torch.float64 else torch.float32
    # theta_i = base^(-2i/m)
    inv_freq = base ** (-torch.arange(0, m, 2, dtype=dtype, device=positions.device) / m)  # (m/2,)
    angle = positions.to(dtype)[:, None] * inv_freq[None, :]  # (T, m/2): p theta_i
    return angle.cos(), angle.sin()


def apply_rotary(x: torch.Tensor, offset: int = 0, base: float = 10000.0) -> torch.Tensor:
    """R_p x for x (..., T, m) at positions p = offset .. offset + T - 1 (no input checks;
    m even). Returns (..., T, m) in x's dtype."""
    T, m = x.shape[-2], x.shape[-1]
    positions = torch.arange(offset, offset + T, device=x.device,
                             dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)
    cos, sin = rotary_angles(positions, m, base)  # (T, m/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    u1, u2 = x[..., : m // 2], x[..., m // 2:]  # (..., T, m/2): u_i and u_(i+m/2)
    # [u_i cos - u_(i+m/2) sin, u_i sin + u_(i+m/2) cos]
    return torch.cat([u1 * cos - u2 * sin, u1 * sin + u2 * cos], dim=-1)  # (..., T, m)


def rotary(x: torch.Tensor, offset: int = 0, base: float = 10000.0) -> torch.Tensor:
    """:func:`apply_rotary` with its inputs checked: x (..., T, m) floating, m even."""
    x = check_tensor(x, "x", floating=True)
    if x.dim() < 2 or x.shape[-1] % 2:
        fail("x", "(..., T, m) with an even m (rotations act on pairs of units)", f"shape {shape_str(x)}")
    check_int(offset, "offset", minimum=0)
    check_float(base, "base", minimum=1.0, open_min=True, finite=True)
    return apply_rotary(x, offset, base)


def rms_normalise(x: torch.Tensor, gain: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """g * x / sqrt(mean(x^2) + eps) over the last axis of x (..., m); gain (m,) or None."""
    # RMS(u) = sqrt((1/m) sum_j u_j^2 + eps)
    y = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)  # (..., m)
    return y if gain is None else y * gain


__all__ = ["rotary_angles", "apply_rotary", "rotary", "rms_normalise"]
