r"""Positional encodings.

Lecture, "Transformers": "Positional encoding are used so that features contain
information about the word token and its position." Attention alone does not see the
order of the positions (permuting the keys permutes nothing in the context), so a
vector that depends on the position is added to each input x_t:

    sinusoidal (fixed):  PE(pos, 2i)   = sin(pos / 10000^(2i / D))
                         PE(pos, 2i+1) = cos(pos / 10000^(2i / D))
    learned:             PE(pos, :)    = p_pos, one trained vector per position

``forward(x, offset=0)`` returns x_t + PE(offset + t) for t = 0..T-1; ``offset`` is the
number of positions already processed (a KV cache's ``length``).
"""

from __future__ import annotations

import torch
from torch import nn

from seqlab.validation import check_int, check_tensor, fail, shape_str


def sinusoidal_table(max_len: int, d_model: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(max_len, d_model): PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(...)."""
    check_int(max_len, "max_len", minimum=1)
    check_int(d_model, "d_model", minimum=1)
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)[None, :]  # (1, ceil(D/2)): 2i
    # pos / 10000^(2i/D)
    angle = pos / torch.pow(10000.0, two_i / d_model)  # (max_len, ceil(D/2))
    pe = torch.empty(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)  # PE(pos, 2i)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])  # PE(pos, 2i+1)
    return pe.to(dtype)


class _PositionalEncoding(nn.Module):
    max_len: int
    d_model: int

    def _check(self, x: torch.Tensor, offset: int) -> None:
        dims = "(batch, time, features)"
        check_tensor(x, "x", ndim=3, dims=dims, floating=True, finite=True)
        if x.shape[2] != self.d_model:
            fail("x", f"d_model = {self.d_model} features in the last axis of {dims}", f"shape {shape_str(x)}")
        check_int(offset, "offset", minimum=0)
        last = offset + x.shape[1] - 1
        if last >= self.max_len:
            fail("positions", f"positions < max_len = {self.max_len}",
                 f"positions {offset}..{last} (offset {offset} + {x.shape[1]} steps)")

    def table(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """x: (B, T, D) -> x + PE(offset .. offset + T - 1), (B, T, D)."""
        self._check(x, offset)
        return self.forward_unchecked(x, offset)

    def forward_unchecked(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """:meth:`forward` without the input checks: the caller has checked the inputs."""
        T = x.shape[1]
        pe = self.table()[offset : offset + T].to(dtype=x.dtype)  # (T, D)
        # x_t + PE(offset + t)
        return x + pe[None]  # (B, T, D) + (1, T, D)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"


class SinusoidalPositionalEncoding(_PositionalEncoding):
    """Fixed sine/cosine encoding, ``SinusoidalPositionalEncoding(d_model=..., max_len=...)``.
    The table is a non-persistent buffer (recomputed, never stored in checkpoints), kept
    in float64 until the module is cast."""

    def __init__(self, *, d_model: int, max_len: int) -> None:
        super().__init__()
        self.d_model = check_int(d_model, "d_model", minimum=1)
        self.max_len = check_int(max_len, "max_len", minimum=1)
        self.register_buffer("pe", sinusoidal_table(max_len, d_model), persistent=False)  # (max_len, D)

    def table(self) -> torch.Tensor:
        return self.pe


class LearnedPositionalEncoding(_PositionalEncoding):
    """One trained vector per position, ``LearnedPositionalEncoding(max_len=..., d_model=...)``;
    ``p`` (max_len, D), initialised N(0, 0.02^2)."""

    def __init__(self, *, max_len: int, d_model: int) -> None:
        super().__init__()
        self.d_model = check_int(d_model, "d_model", minimum=1)
        self.max_len = check_int(max_len, "max_len", minimum=1)
        self.p = nn.Parameter(torch.empty(max_len, d_model))  # p_pos: (max_len, D)
        nn.init.normal_(self.p, std=0.02)

    def table(self) -> torch.Tensor:
        return self.p


class NoPositionalEncoding(nn.Module):
    """No table, x_t unchanged: for a model whose attention sees the positions itself (rotary
    queries and keys, ``rotary.py``). ``forward(x, offset)`` checks as the others do and
    returns x."""

    def __init__(self, *, max_len: int, d_model: int) -> None:
        super().__init__()
        self.d_model = check_int(d_model, "d_model", minimum=1)
        self.max_len = check_int(max_len, "max_len", minimum=1)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _PositionalEncoding._check(self, x, offset)
        return x

    def forward_unchecked(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"
