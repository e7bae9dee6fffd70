"""A token corpus for language models: ids split like nanoGPT, batches of random windows.

``TokenDataset`` serves every language model (the recurrent character model, GPT, and
through ``MLMDataset`` BERT) with any tokenizer: the first 1 - val_fraction of the ids for
training, the rest for validation; ``get_batch(split, B, generator)`` returns B random
windows x = c[i : i+T] and their targets y = c[i+1 : i+T+1], two int64 tensors (B, T)
with T = block_size. It is what ``seqlab.training.loop`` asks of its data.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch

from seqlab.validation import check_choice, check_float, check_int, fail

SPLITS = ("train", "val")


def _as_ids(ids: object) -> torch.Tensor:
    """``ids`` (a sequence of ints or a 1-D integer tensor) as a CPU int64 tensor."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1 or ids.is_floating_point() or ids.dtype == torch.bool or ids.is_complex():
            fail("ids", "a 1-D integer tensor or a sequence of ints", f"shape {tuple(ids.shape)}, dtype {ids.dtype}")
        return ids.detach().to("cpu", torch.int64)
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        fail("ids", "a 1-D integer tensor or a sequence of ints", type(ids).__name__)
    bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int)]
    if bad:
        fail("ids", "integers", repr(bad[0]))
    return torch.tensor(list(ids), dtype=torch.int64)


class TokenDataset:
    """Token ids split into train (first 1 - val_fraction) and val (the rest).

    ``vocab_size``: V, the ids must lie in [0, V); None means max(ids) + 1 (``from_text``
    takes the tokenizer's). ``get_batch(split, B, generator)`` returns ``(x, y)``, two int64
    tensors ``(B, T)`` with ``T = block_size``: random windows of the split and the same
    windows shifted by one."""

    def __init__(self, ids: Sequence[int] | torch.Tensor, block_size: int, val_fraction: float = 0.1, *,
                 vocab_size: int | None = None):
        data = _as_ids(ids)
        n = data.numel()
        if n == 0:
            fail("ids", "at least one token", "none")
        check_int(block_size, "block_size", minimum=1)
        check_float(val_fraction, "val_fraction", minimum=0.0, maximum=1.0, open_min=True, open_max=True)
        lo, hi = int(data.min()), int(data.max())
        if lo < 0:
            fail("ids", "token ids >= 0", f"minimum {lo}")
        if vocab_size is None:
            vocab_size = hi + 1
        check_int(vocab_size, "vocab_size", minimum=1)
        if hi >= vocab_size:
            fail("ids", f"token ids in [0, {vocab_size - 1}] (vocab_size {vocab_size})", f"maximum {hi}")
        self.block_size = block_size
        self.val_fraction = float(val_fraction)
        self.vocab_size = vocab_size
        self.n_tokens = n
        n_train = int(n * (1 - self.val_fraction))
        self.train_data = data[:n_train]
        self.val_data = data[n_train:]
        for split, part in (("train", self.train_data), ("val", self.val_data)):
            if part.numel() < block_size + 1:
                fail(f"{split} split", f"at least block_size + 1 = {block_size + 1} tokens",
                     f"{part.numel()} (a corpus of {n} tokens with val_fraction {self.val_fraction})")
        # set by from_text
        self.tokenizer = None
        self.tokenizer_kind: str | None = None
        self.sha256: str | None = None
        self.n_chars: int | None = None

    @classmethod
    def from_text(cls, text: str, tokenizer, block_size: int, val_fraction: float = 0.1, *,
                  specials: bool = False) -> "TokenDataset":
        """``text`` encoded by ``tokenizer`` (anything with ``encode(text, name=...)`` and
        ``vocab_size``, e.g. a ``seqlab.llm.tokenizers.Tokenizer``);
        ``specials=True`` turns literal special tokens in the text into their ids."""
        if not isinstance(text, str):
            fail("text", "a str", type(text).__name__)
        if not text:
            fail("text", "a non-empty string", "an empty string")
        if not callable(getattr(tokenizer, "encode", None)) or not isinstance(getattr(tokenizer, "vocab_size", None), int):
            fail("tokenizer", "a tokenizer (encode(text) and vocab_size)", type(tokenizer).__name__)
        ids = tokenizer.encode(text, name="text", specials=True) if specials else tokenizer.encode(text, name="text")
        data = cls(ids, block_size, val_fraction, vocab_size=tokenizer.vocab_size)
        data.tokenizer = tokenizer
        data.tokenizer_kind = getattr(tokenizer, "kind", type(tokenizer).__name__)
        data.sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
        data.n_chars = len(text)
        return data

    def split(self, split: str) -> torch.Tensor:
        check_choice(split, "split", SPLITS)
        return self.train_data if split == "train" else self.val_data

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        data = self.split(split)
        check_int(batch_size, "batch_size", minimum=1)
        if generator is not None and not isinstance(generator, torch.Generator):
            fail("generator", "a torch.Generator or None", type(generator).__name__)
        T = self.block_size
        # i ~ U{0, ..., N - T - 1}: the window c[i : i+T+1] fits in the split
        ix = torch.randint(data.numel() - T, (batch_size,), generator=generator)
        windows = data.unfold(0, T + 1, 1)[ix]  # (B, T+1)
        x = windows[:, :-1].contiguous()  # (B, T)
        y = windows[:, 1:].contiguous()  # (B, T)
        return x, y

    def info(self) -> dict:
        """A JSON description for ``run.json``."""
        return {
            "kind": "tokens",
            "tokenizer": self.tokenizer_kind,
            "tokens": self.n_tokens,
            "characters": self.n_chars,
            "sha256": self.sha256,
            "vocab_size": self.vocab_size,
            "block_size": self.block_size,
            "val_fraction": self.val_fraction,
            "train_tokens": self.train_data.numel(),
            "val_tokens": self.val_data.numel(),
        }
