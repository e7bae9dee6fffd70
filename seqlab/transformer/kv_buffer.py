r"""A KV cache in a buffer allocated once, for generation.

``KVCache`` (``multihead.py``) grows by concatenation: appending one position to T_past
cached ones copies all T_past of them, so generating n tokens copies O(n^2) keys and values,
and allocates a new tensor at every step. ``KVBuffer`` allocates room for ``capacity``
positions at the first append (a GPT's ``block_size``) and writes each new position into
its slot; ``k`` and ``v`` are views of the filled part,

    k = buffer_k[:, :, :T_past + S]          (B, h, T_past + S, m)

so the attention reads exactly the values ``KVCache`` would hold (the same numbers, in a
strided view), and an append costs O(S) instead of O(T_past + S).

``select(rows)`` keeps some of the B sequences (batched generation drops the finished ones).
"""

from __future__ import annotations

import torch

from seqlab.transformer.multihead import KVCache
from seqlab.validation import check_int, check_tensor, fail, shape_str


class KVBuffer(KVCache):
    """``KVBuffer(capacity)``: a :class:`KVCache` with room for ``capacity`` positions,
    allocated at the first ``append`` with the dtype and device of the keys and values."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = check_int(capacity, "capacity", minimum=1)
        self._k: torch.Tensor | None = None  # (B, h, capacity, m)
        self._v: torch.Tensor | None = None  # (B, h, capacity, m_v)
        self._n = 0  # T_past

    @property
    def length(self) -> int:
        return self._n

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._k is None:
            check_tensor(k, "k", ndim=4, dims="(batch, heads, time, head_dim)")
            check_tensor(v, "v", ndim=4, dims="(batch, heads, time, head_dim)")
            if k.shape[:3] != v.shape[:3]:
                fail("v", f"the batch, heads and time of k {tuple(k.shape[:3])}", f"shape {shape_str(v)}")
            B, h, _, m = k.shape
            self._k = k.new_empty(B, h, self.capacity, m)  # (B, h, capacity, m)
            self._v = v.new_empty(B, h, self.capacity, v.shape[3])  # (B, h, capacity, m_v)
        elif k.shape[:2] != self._k.shape[:2] or k.shape[3] != self._k.shape[3] or v.shape[:3] != k.shape[:3] \
                or v.shape[3] != self._v.shape[3]:
            fail("k, v", f"shapes ({self._k.shape[0]}, {self._k.shape[1]}, S, {self._k.shape[3]}) and "
                 f"(..., {self._v.shape[3]}) (as the cached keys and values)",
                 f"shapes {shape_str(k)} and {shape_str(v)}")
        S = k.shape[2]
        n = self._n + S
        if n > self.capacity:
            fail("cache", f"at most capacity = {self.capacity} positions", f"{self._n} cached + {S} new")
        self._k[:, :, self._n:n] = k  # the new positions' slots
        self._v[:, :, self._n:n] = v
        self._n = n
        self.k, self.v = self._k[:, :, :n], self._v[:, :, :n]  # (B, h, T_past + S, m)
        return self.k, self.v

    def select(self, rows: torch.Tensor | list[int]) -> None:
        """Keep the sequences ``rows`` (indices into the batch, in this order)."""
        if self._k is None:
            return
        rows = torch.as_tensor(rows, dtype=torch.long, device=self._k.device)
        self._k, self._v = self._k[rows], self._v[rows]  # (B', h, capacity, m)
        self.k, self.v = self._k[:, :, :self._n], self._v[:, :, :self._n]

    def reset(self) -> None:
        self._n = 0
        self.k = self.v = None
        self._k = self._v = None

    def __repr__(self) -> str:
        return f"KVBuffer(length={self._n}, capacity={self.capacity})"


__all__ = ["KVBuffer"]
