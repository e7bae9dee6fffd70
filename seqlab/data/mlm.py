r"""Data for BERT: masked-language-model batches and passage classification.

Masking (BERT's pretraining corruption, ``mask_tokens``). Of a row of token ids
x_1 .. x_T, each position that does not hold a special token is *selected* independently
with probability p = 0.15, the set M of selected positions being what the model must
predict. Of the selected positions:

    80 %  x_t <- [MASK]
    10 %  x_t <- a token drawn uniformly from the non-special ids (it may equal x_t)
    10 %  x_t unchanged

and the targets are y_t = x_t (the original id) for t in M, y_t = -100 elsewhere (the
``ignore_index`` of ``F.cross_entropy``: no cost there). The random and unchanged 20 %
keep the model from learning that only [MASK] positions matter, since [MASK] never appears
when the model is used.

At least one position per row: a row that has a maskable position but whose draws selected
none gets one, chosen uniformly among its maskable positions, so that every row carries a
cost. For a row of T maskable positions this happens with probability (1 - p)^T (2.7e-9
for T = 127), so it only changes the statistics of very short rows. A row of special tokens
only is left alone (no target).

Every draw comes from the ``generator`` and the number of draws depends only on the shape,
so the masks are a function of (ids, generator state): the trainer's per-step generators
make a resumed run see exactly the batches of an uninterrupted one.

``MLMDataset`` wraps a ``TokenDataset``: ``get_batch(split, B, generator)`` draws B random
windows of the split, puts [CLS] in front of each (by default; the window then holds
block_size - 1 tokens, so that rows have block_size positions), and masks them with the
same generator. It returns ``(inputs, targets)``, two int64 tensors (B, block_size).

``PassageClassificationDataset`` cuts labelled corpora into passages for sequence
classification (which corpus does a passage come from?); ``default_classification_corpora``
gives two from the Python standard library: the reference manual and source code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import torch

from seqlab.data.text import CODE_MODULES, code_text, pydoc_text
from seqlab.data.tokens import SPLITS, TokenDataset
from seqlab.validation import (
    check_choice,
    check_float,
    check_int,
    check_tensor,
    fail,
    shape_str,
)

IGNORE_INDEX = -100  # target of a position that is not predicted (F.cross_entropy's ignore_index)
MASK_PROB = 0.15  # p: probability that a maskable position is selected
MASK_FRACTION = 0.8  # of the selected: replaced by [MASK]
RANDOM_FRACTION = 0.1  # of the selected: replaced by a random non-special token (the rest stays)

def _check_generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        fail("generator", "a torch.Generator or None", type(generator).__name__)


def _check_id(value: object, name: str, vocab_size: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab_size:
        fail(name, f"a token id in [0, {vocab_size - 1}] (vocab_size {vocab_size})", repr(value))
    return value


def _check_special_ids(special_ids: object, vocab_size: int) -> tuple[int, ...]:
    if isinstance(special_ids, (str, bytes, torch.Tensor)) or not isinstance(special_ids, Iterable):
        fail("special_ids", "a sequence of token ids", type(special_ids).__name__)
    return tuple(_check_id(i, "special_ids", vocab_size) for i in special_ids)


# --------------------------------------------------------------------------- masking


def mask_tokens(ids: torch.Tensor, *, mask_id: int, vocab_size: int, generator: torch.Generator | None = None,
                mask_prob: float = MASK_PROB, special_ids: Iterable[int] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption of ``ids`` (B, T) or (T,) (see the module docstring).

    ``special_ids`` (and ``mask_id`` itself) are never selected and never drawn as random
    replacements. Returns ``(inputs, targets)`` of the shape of ``ids``: inputs with
    [MASK] / random / unchanged tokens at the selected positions, targets the original id
    there and -100 elsewhere. Deterministic given the generator's state.
    """
    check_tensor(ids, "ids", ndim=(1, 2), dims="(batch, time) or (time,)")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        fail("ids", "an integer tensor of token ids", f"dtype {ids.dtype}")
    if ids.shape[-1] < 1:
        fail("ids", "at least one position", f"shape {shape_str(ids)}")
    check_int(vocab_size, "vocab_size", minimum=1)
    _check_id(mask_id, "mask_id", vocab_size)
    special = set(_check_special_ids(special_ids, vocab_size)) | {mask_id}
    mask_prob = check_float(mask_prob, "mask_prob", minimum=0.0, maximum=1.0, open_min=True)
    _check_generator(generator)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        fail("ids", f"token ids in [0, {vocab_size - 1}] (vocab_size {vocab_size})",
             f"values in [{int(ids.min())}, {int(ids.max())}]")
    # the tokens a random replacement is drawn from: the non-special ids
    ordinary = torch.ones(vocab_size, dtype=torch.bool)  # (V,)
    ordinary[sorted(special)] = False
    candidates = ordinary.nonzero().reshape(-1)  # (K,) the non-special ids
    if candidates.numel() == 0:
        fail("special_ids", f"at least one of the {vocab_size} ids left as an ordinary token",
             "every id special (with mask_id)")

    row = ids.dim() == 1
    x = ids.reshape(1, -1) if row else ids  # (B, T)
    B, T = x.shape
    # all draws up front, of fixed shapes: the generator advances by the same amount every call
    where = generator.device if generator is not None else torch.device("cpu")
    u_select = torch.rand(B, T, generator=generator, device=where).to(x.device)  # (B, T)
    u_force = torch.rand(B, T, generator=generator, device=where).to(x.device)  # (B, T)
    u_kind = torch.rand(B, T, generator=generator, device=where).to(x.device)  # (B, T)
    r_token = torch.randint(candidates.numel(), (B, T), generator=generator, device=where).to(x.device)  # (B, T)

    maskable = ~torch.isin(x, torch.tensor(sorted(special), dtype=x.dtype, device=x.device))  # (B, T)
    # t in M with probability p, for the maskable positions
    selected = (u_select < mask_prob) & maskable  # (B, T)
    # at least one selected position per row that has a maskable one: uniform among them
    empty = maskable.any(dim=1) & ~selected.any(dim=1)  # (B,)
    forced = torch.where(maskable, u_force, torch.full_like(u_force, -1.0)).argmax(dim=1)  # (B,)
    selected[empty, forced[empty]] = True

    to_mask = selected & (u_kind < MASK_FRACTION)  # 80 %: [MASK]
    to_random = selected & (u_kind >= MASK_FRACTION) & (u_kind < MASK_FRACTION + RANDOM_FRACTION)  # 10 %
    inputs = x.clone()
    inputs[to_mask] = mask_id
    inputs[to_random] = candidates.to(x.device)[r_token[to_random]].to(x.dtype)
    # y_t = x_t on M, -100 elsewhere
    targets = torch.where(selected, x, torch.full_like(x, IGNORE_INDEX))  # (B, T)
    if row:
        return inputs.reshape(-1), targets.reshape(-1)
    return inputs, targets


# --------------------------------------------------------------------------- MLM dataset


def _tokenizer_special(tokenizer: object, attr: str, what: str) -> int:
    value = getattr(tokenizer, attr, None)
    if not isinstance(value, int):
        fail("tokenizer", f"a tokenizer with a {what} token (seqlab.llm.tokenizers, special_tokens including "
             f"{what})", f"{type(tokenizer).__name__} without one")
    return value


def _check_tokenizer(tokenizer: object) -> None:
    if not callable(getattr(tokenizer, "encode", None)) or not isinstance(getattr(tokenizer, "vocab_size", None), int):
        fail("tokenizer", "a tokenizer (encode(text) and vocab_size)", type(tokenizer).__name__)


def _check_split_args(split: object, batch_size: object, generator: object) -> None:
    check_choice(split, "split", SPLITS)
    check_int(batch_size, "batch_size", minimum=1)
    _check_generator(generator)


class MLMDataset:
    """Masked-language-model batches from a ``TokenDataset``.

    ``MLMDataset(data, *, mask_id, special_ids=(), cls_id=None, mask_prob=0.15)``: rows of
    ``data.block_size`` positions; with ``cls_id`` each row is [CLS] followed by a window
    of block_size - 1 tokens, without it a window of block_size tokens. ``special_ids``
    (with ``mask_id`` and ``cls_id``) are never masked. ``from_text`` builds one from a
    text and a tokenizer with special tokens; for ids already encoded, wrap
    ``TokenDataset(ids, block_size, vocab_size=V)``."""

    def __init__(self, data: TokenDataset, *, mask_id: int, special_ids: Iterable[int] = (),
                 cls_id: int | None = None, mask_prob: float = MASK_PROB):
        if not isinstance(data, TokenDataset):
            fail("data", "a seqlab.data.tokens.TokenDataset", type(data).__name__)
        V = data.vocab_size
        self.data = data
        self.vocab_size = V
        self.block_size = data.block_size
        self.mask_id = _check_id(mask_id, "mask_id", V)
        self.cls_id = None if cls_id is None else _check_id(cls_id, "cls_id", V)
        specials = set(_check_special_ids(special_ids, V)) | {self.mask_id}
        if self.cls_id is not None:
            specials.add(self.cls_id)
            if self.block_size < 2:
                fail("block_size", "at least 2 with [CLS] in front (one position for [CLS], one for a token)",
                     self.block_size)
        self.special_ids = tuple(sorted(specials))
        self.mask_prob = check_float(mask_prob, "mask_prob", minimum=0.0, maximum=1.0, open_min=True)
        # tokens per window
        self.window = self.block_size - (1 if self.cls_id is not None else 0)
        self.tokenizer = data.tokenizer

    @classmethod
    def from_text(cls, text: str, tokenizer, block_size: int, val_fraction: float = 0.1, *,
                  mask_prob: float = MASK_PROB, cls_token: bool = True) -> "MLMDataset":
        """``text`` (plain text: a literal "[MASK]" in it is characters, not the token) encoded
        by ``tokenizer``, which must have a [MASK] token (and [CLS] when ``cls_token``); all its
        special tokens are never masked."""
        _check_tokenizer(tokenizer)
        mask_id = _tokenizer_special(tokenizer, "mask_id", "[MASK]")
        cls_id = _tokenizer_special(tokenizer, "cls_id", "[CLS]") if cls_token else None
        specials = getattr(tokenizer, "special_ids", {})
        data = TokenDataset.from_text(text, tokenizer, block_size, val_fraction)
        return cls(data, mask_id=mask_id, special_ids=specials.values(), cls_id=cls_id, mask_prob=mask_prob)

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, int64 (B, block_size): random windows of ``split``, [CLS] in
        front if the dataset has one, masked by ``mask_tokens``; one generator for all draws."""
        _check_split_args(split, batch_size, generator)
        data = self.data.split(split)
        L = self.window
        # i ~ U{0, ..., N - L}: the window c[i : i+L] fits in the split
        ix = torch.randint(data.numel() - L + 1, (batch_size,), generator=generator)  # (B,)
        x = data.unfold(0, L, 1)[ix]  # (B, L)
        if self.cls_id is not None:
            x = torch.cat([torch.full((batch_size, 1), self.cls_id, dtype=x.dtype), x], dim=1)  # (B, block_size)
        return mask_tokens(x, mask_id=self.mask_id, vocab_size=self.vocab_size, generator=generator,
                           mask_prob=self.mask_prob, special_ids=self.special_ids)

    def info(self) -> dict:
        """A JSON description for ``run.json``."""
        return {**self.data.info(), "kind": "mlm", "mask_prob": self.mask_prob, "mask_id": self.mask_id,
                "cls_id": self.cls_id, "special_ids": list(self.special_ids)}


# --------------------------------------------------------------------------- classification


class PassageClassificationDataset:
    """Passages of labelled corpora: which corpus does a passage come from?

    ``texts`` maps label names (in order: label k is the k-th key) to corpus texts. Each
    text is encoded by ``tokenizer``; its first 1 - val_fraction of the tokens feed the
    train split and the rest the val split, and each part is cut into consecutive,
    non-overlapping passages of block_size - 1 tokens (a remainder shorter than that is
    dropped); [CLS] is put in front of each (``cls_token=False``: passages of block_size
    tokens, nothing in front).

    ``get_batch(split, B, generator)`` returns ``(ids (B, block_size), labels (B,))``: a
    balanced batch (every label B // K or B // K + 1 times, which ones get the extra drawn
    at random, order shuffled), each item a passage of its label drawn uniformly.
    ``passages(split)`` gives every passage of a split in order, for evaluation."""

    def __init__(self, texts: Mapping[str, str], tokenizer, block_size: int, val_fraction: float = 0.1, *,
                 cls_token: bool = True):
        if not isinstance(texts, Mapping):
            fail("texts", "a dict label name -> corpus text", type(texts).__name__)
        if len(texts) < 2:
            fail("texts", "at least 2 labelled corpora", f"{len(texts)}")
        for label, text in texts.items():
            if not isinstance(label, str) or not label:
                fail("texts", "non-empty label names (str)", repr(label))
            if not isinstance(text, str) or not text:
                fail(f"texts[{label!r}]", "a non-empty str", repr(text) if isinstance(text, str) else type(text).__name__)
        _check_tokenizer(tokenizer)
        check_int(block_size, "block_size", minimum=2 if cls_token else 1)
        self.val_fraction = check_float(val_fraction, "val_fraction", minimum=0.0, maximum=1.0,
                                        open_min=True, open_max=True)
        self.tokenizer = tokenizer
        self.block_size = block_size
        self.vocab_size = tokenizer.vocab_size
        self.cls_id = _tokenizer_special(tokenizer, "cls_id", "[CLS]") if cls_token else None
        self._labels = tuple(texts)
        L = block_size - (1 if cls_token else 0)
        self.passage_length = L
        # per split: all passages (N, L) class by class, their labels (N,), and each class's
        # first row and count, for sampling
        self._ids: dict[str, torch.Tensor] = {}
        self._y: dict[str, torch.Tensor] = {}
        self._start: dict[str, torch.Tensor] = {}
        self._count: dict[str, torch.Tensor] = {}
        parts: dict[str, list[torch.Tensor]] = {s: [] for s in SPLITS}
        digest = hashlib.sha256()
        self.n_tokens: dict[str, int] = {}
        for label, text in texts.items():
            digest.update(label.encode("utf-8") + b"\0" + text.encode("utf-8") + b"\0")
            ids = torch.tensor(tokenizer.encode(text, name=f"texts[{label!r}]"), dtype=torch.int64)  # (n,)
            n = ids.numel()
            self.n_tokens[label] = n
            n_train = int(n * (1 - self.val_fraction))
            for split, part in (("train", ids[:n_train]), ("val", ids[n_train:])):
                P = part.numel() // L
                if P < 1:
                    fail(f"texts[{label!r}] {split} split", f"at least one passage of {L} tokens",
                         f"{part.numel()} tokens (a corpus of {n} tokens with val_fraction {self.val_fraction})")
                parts[split].append(part[: P * L].view(P, L))  # (P, L)
        self.sha256 = digest.hexdigest()
        for split in SPLITS:
            counts = torch.tensor([p.shape[0] for p in parts[split]], dtype=torch.int64)  # (K,)
            self._count[split] = counts
            self._start[split] = torch.cumsum(counts, 0) - counts  # (K,)
            self._ids[split] = torch.cat(parts[split], dim=0)  # (N, L)
            self._y[split] = torch.repeat_interleave(torch.arange(len(self._labels)), counts)  # (N,)

    @property
    def labels(self) -> tuple[str, ...]:
        """The label names; label k is ``labels[k]``."""
        return self._labels

    @property
    def num_classes(self) -> int:
        return len(self._labels)

    def _with_cls(self, x: torch.Tensor) -> torch.Tensor:
        if self.cls_id is None:
            return x
        return torch.cat([torch.full((x.shape[0], 1), self.cls_id, dtype=x.dtype), x], dim=1)  # (N, block_size)

    def num_passages(self, split: str) -> int:
        check_choice(split, "split", SPLITS)
        return self._ids[split].shape[0]

    def passages(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Every passage of ``split``, label by label in text order: (ids (N, block_size), labels (N,))."""
        check_choice(split, "split", SPLITS)
        return self._with_cls(self._ids[split]), self._y[split].clone()

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_split_args(split, batch_size, generator)
        K = self.num_classes
        # balanced labels: 0..K-1 repeated, shifted by a random offset, in random order
        offset = torch.randint(K, (1,), generator=generator)  # (1,)
        y = (torch.randperm(batch_size, generator=generator) + offset) % K  # (B,)
        # a passage of label y_b, uniform among that label's passages
        u = torch.rand(batch_size, generator=generator)  # (B,)
        count = self._count[split][y]  # (B,)
        j = torch.minimum((u * count).long(), count - 1)  # (B,)
        x = self._ids[split][self._start[split][y] + j]  # (B, L)
        return self._with_cls(x), y

    def info(self) -> dict:
        """A JSON description for ``run.json``."""
        return {
            "kind": "passages",
            "labels": list(self._labels),
            "tokens": dict(self.n_tokens),
            "sha256": self.sha256,
            "vocab_size": self.vocab_size,
            "block_size": self.block_size,
            "val_fraction": self.val_fraction,
            "train_passages": self.num_passages("train"),
            "val_passages": self.num_passages("val"),
        }


def default_classification_corpora(max_chars: int | None = None) -> dict[str, str]:
    """Two corpora from the Python standard library, no network: ``"manual"``, the reference
    manual's topics (``seqlab.data.text.pydoc_text``), and ``"code"``, the source text of the
    modules in ``CODE_MODULES`` (``seqlab.data.text.code_text``). ``max_chars`` keeps the
    first ``max_chars`` characters of each."""
    if max_chars is not None:
        check_int(max_chars, "max_chars", minimum=1)
    corpora = {"manual": pydoc_text(), "code": code_text()}
    if max_chars is not None:
        corpora = {k: v[:max_chars] for k, v in corpora.items()}
    return corpora


__all__ = [
    "CODE_MODULES",
    "IGNORE_INDEX",
    "MASK_FRACTION",
    "MASK_PROB",
    "RANDOM_FRACTION",
    "MLMDataset",
    "PassageClassificationDataset",
    "default_classification_corpora",
    "mask_tokens",
]
