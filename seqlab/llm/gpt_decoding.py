r"""Incremental decoding of a GPT: the context window, the KV cache, several sequences at once.

``GPTDecoder`` is what ``GPT.next_logits_fn`` returns. Called with new token ids of one
sequence it returns the logits (V,) of the token that follows everything fed so far (the
protocol of ``seqlab.llm.sampling.generate``); ``feed`` does the same for B sequences at
once, each given the same number of new tokens, and returns (B, V) (the protocol of
``seqlab.llm.sampling.generate_batch``); ``keep(rows)`` drops the sequences that finished.

The context holds at most ``block_size`` positions. While it fits, the keys and values of
the positions already seen are kept (a ``KVBuffer`` per block, allocated once with room for
``block_size`` positions: each new token costs one position of work and one slot written);
once the window is full, every step re-reads the last ``block_size`` tokens without a cache
(the learned positions move, so cached keys are no longer valid). Without ``use_cache`` every
step re-reads the window. The sampled tokens are the same either way.

One intra-op thread for the cached steps. A cached step of one position is some hundred tensor
operations on vectors of a few hundred numbers; splitting each across CPU threads costs more in
synchronisation than it saves (several times more on a machine whose other cores are busy:
``benchmarks/bench_transformer_speed.py`` section 4 measures both settings), so on the CPU the
cached steps of at most ``SMALL_STEP`` positions per sequence run with one thread
(``seqlab.training.device.cpu_threads``); the prompt and the uncached steps keep the thread
count that was set. ``threads=None`` leaves the setting alone everywhere. The setting is
process-wide, so it is changed only from the main thread: a generation running in another
thread (the explorer serves several at once) keeps the process's count.
"""

from __future__ import annotations

import contextlib
import threading

import torch
from torch import nn

from seqlab.training.device import cpu_threads
from seqlab.transformer.kv_buffer import KVBuffer
from seqlab.validation import fail

SMALL_STEP = 4  # new positions per sequence up to which a cached CPU step runs on one thread


class GPTDecoder:
    """``GPTDecoder(model, use_cache=True, threads=1)``: the context and KV cache of B
    sequences of ``model`` (a GPT or a subclass), fed token by token.

    ``decoder(new_ids) -> (V,)`` for one sequence; ``decoder.feed(rows) -> (B, V)`` for B
    sequences (``rows``: one list of new token ids per sequence, all of the same length);
    ``decoder.keep(indices)`` keeps only those sequences, in that order. ``threads``: the
    intra-op threads of the cached CPU steps (None: unchanged)."""

    def __init__(self, model: nn.Module, *, use_cache: bool = True, threads: int | None = 1) -> None:
        if not isinstance(use_cache, bool):
            fail("use_cache", "True or False", repr(use_cache))
        self.model = model
        self.use_cache = use_cache
        self.threads = threads
        self.T_max = model.config.block_size
        self.contexts: list[list[int]] | None = None  # the tokens of each sequence so far
        self.cache: list[KVBuffer] | None = None

    @property
    def batch_size(self) -> int:
        return 0 if self.contexts is None else len(self.contexts)

    def __call__(self, new_ids: list[int]) -> torch.Tensor:
        return self.feed([list(new_ids)])[0]  # (V,)

    def feed(self, rows: list[list[int]]) -> torch.Tensor:
        """Append ``rows[b]`` to sequence b; returns the next-token logits (B, V)."""
        if not isinstance(rows, (list, tuple)) or not rows:
            fail("rows", "a non-empty list of token-id lists, one per sequence", repr(rows))
        S = len(rows[0])
        if S < 1 or any(len(r) != S for r in rows):
            fail("rows", "the same number (>= 1) of new tokens for every sequence", [len(r) for r in rows])
        if self.contexts is None:
            self.contexts = [[] for _ in rows]
        elif len(rows) != len(self.contexts):
            fail("rows", f"{len(self.contexts)} sequences (as fed before)", len(rows))
        for context, new in zip(self.contexts, rows):
            context.extend(new)
        T, T_max = len(self.contexts[0]), self.T_max
        if self.use_cache and self.cache is not None and self.cache[0].length + S <= T_max:
            return self._run(rows, self.cache)  # the cached positions plus the new ones
        if self.use_cache and T <= T_max:
            self.cache = self.new_cache()
            return self._run(self.contexts, self.cache)
        # no cache, or the window slides: positions shift and the cache is void; read the last T_max
        self.cache = None
        return self._run([c[-T_max:] for c in self.contexts], None)

    def new_cache(self) -> list[KVBuffer]:
        """One empty KVBuffer per block, with room for ``block_size`` positions."""
        return [KVBuffer(self.T_max) for _ in self.model.new_cache()]

    def keep(self, indices: list[int]) -> None:
        """Keep the sequences ``indices`` (into the current batch), in that order."""
        if self.contexts is None:
            return
        self.contexts = [self.contexts[i] for i in indices]
        if self.cache is not None:
            for kv in self.cache:
                kv.select(indices)

    def _run(self, ids: list[list[int]], cache: list[KVBuffer] | None) -> torch.Tensor:
        device = self.model.w_x.device
        x = torch.tensor(ids, device=device)  # (B, S)
        # only on the main thread: the thread count is process-wide, and threads that narrow and
        # restore it at once (generations served side by side) could leave the process on one
        small = (cache is not None and cache[0].length > 0 and x.shape[1] <= SMALL_STEP and device.type == "cpu"
                 and threading.current_thread() is threading.main_thread())
        with cpu_threads(self.threads) if small else contextlib.nullcontext():
            return self.model(x, cache=cache)[:, -1]  # (B, V): the logits after the last position


__all__ = ["GPTDecoder", "SMALL_STEP"]
