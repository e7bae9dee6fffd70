"""Tokenizers for the language models: characters or byte-level BPE, with special tokens.

Every tokenizer has the same interface (``Tokenizer``):

    ids  = tok.encode(text)                 list[int]; unknown characters: ValueError naming them
    text = tok.decode(ids)                  list of ints or a 1-D integer tensor
    tok.vocab_size                          V, special tokens included
    tok.special_tokens                      e.g. ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    tok.pad_id, tok.unk_id, tok.cls_id,     the id of "[PAD]", "[UNK]", "[CLS]", "[SEP]",
    tok.sep_id, tok.mask_id, tok.eos_id     "[MASK]", "<|endoftext|>"; None where absent
    tok.to_json()  /  tokenizer_from_json(s) any kind back from its JSON

Special tokens in text. ``encode(text)`` treats every character of ``text`` as text: the
literal "[MASK]" is six characters (and an error if "[" is not in a character vocabulary).
``encode(text, specials=True)`` first cuts ``text`` at every literal occurrence of a special
token (the longest one where two overlap) and gives each its id, so that
``encode("the [MASK] sat", specials=True)`` holds ``mask_id``. ``decode`` writes a special
token as its literal text, so ``decode(encode(s, specials=True)) == s``.

Kinds:

- ``CharLevelTokenizer``: the characters of ``seqlab.data.text.CharTokenizer`` (ids 0..C-1,
  which it wraps) followed by the special tokens (ids C..C+S-1).
- ``BPETokenizer``: byte-level BPE trained with the Hugging Face ``tokenizers`` library
  (GPT-2's scheme). The text is read as UTF-8 bytes, each byte one of 256 base symbols, and
  training repeatedly merges the most frequent adjacent pair into a new symbol until the
  vocabulary has ``vocab_size`` entries. Every byte is in the vocabulary, so any text
  encodes (there is no unknown token) and ``decode(encode(s)) == s`` exactly. The special
  tokens take ids 0..S-1. Training is deterministic (the library breaks ties between
  equally frequent pairs by the pair itself), so it takes no seed.
"""

from __future__ import annotations

import itertools
import json
import re
from abc import ABC, abstractmethod
from typing import ClassVar, Iterable, Sequence

import torch

from seqlab.data.text import CharTokenizer
from seqlab.validation import check_int, fail

FORMAT = "seqlab-tokenizer"
VERSION = 1

PAD, UNK, CLS, SEP, MASK, EOS = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<|endoftext|>"
BERT_SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
GPT_SPECIAL_TOKENS = (EOS,)
BYTE_ALPHABET = 256  # the base symbols of byte-level BPE


def _check_special_tokens(special_tokens: object) -> tuple[str, ...]:
    if isinstance(special_tokens, str) or not isinstance(special_tokens, (list, tuple)):
        fail("special_tokens", "a list or tuple of strings", repr(special_tokens))
    bad = [t for t in special_tokens if not isinstance(t, str) or not t]
    if bad:
        fail("special_tokens", "non-empty strings", ", ".join(repr(t) for t in bad))
    seen: set[str] = set()
    dups = [t for t in special_tokens if t in seen or seen.add(t)]  # type: ignore[func-returns-value]
    if dups:
        fail("special_tokens", "distinct strings", "duplicates " + ", ".join(repr(t) for t in dict.fromkeys(dups)))
    return tuple(special_tokens)


def _id_list(ids: Iterable[int] | torch.Tensor, vocab_size: int) -> list[int]:
    """``ids`` as a list of ints in [0, vocab_size), or the standard ValueError."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() > 1 or ids.is_floating_point() or ids.dtype == torch.bool:
            fail("ids", "a 1-D integer tensor", f"shape {tuple(ids.shape)}, dtype {ids.dtype}")
        ids = ids.reshape(-1).tolist()
    if isinstance(ids, (str, bytes)):
        fail("ids", "a list of integer ids", type(ids).__name__)
    out = list(ids)
    for i in out:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab_size:
            fail("ids", f"integers in [0, {vocab_size - 1}]", repr(i))
    return out


class Tokenizer(ABC):
    """The interface of every tokenizer; subclasses implement ``_encode_pieces``, ``_decode``,
    ``vocab_size`` and ``_payload`` (their part of the JSON)."""

    kind: ClassVar[str]

    def __init__(self, special_tokens: tuple[str, ...], special_ids: Sequence[int]):
        self._specials = special_tokens
        self._special_ids = dict(zip(special_tokens, special_ids))
        self._special_of_id = {i: t for t, i in self._special_ids.items()}
        # longest first, so that the longer of two overlapping special tokens wins
        alternatives = "|".join(re.escape(t) for t in sorted(special_tokens, key=len, reverse=True))
        self._special_re = re.compile(f"({alternatives})") if special_tokens else None

    # ------------------------------------------------------------------ special tokens

    @property
    def special_tokens(self) -> tuple[str, ...]:
        return self._specials

    def token_id(self, token: str) -> int:
        """The id of special token ``token``."""
        if token not in self._special_ids:
            fail("special token", "one of " + (", ".join(repr(t) for t in self._specials) or "(none defined)"),
                 repr(token))
        return self._special_ids[token]

    @property
    def pad_id(self) -> int | None:
        return self._special_ids.get(PAD)

    @property
    def unk_id(self) -> int | None:
        return self._special_ids.get(UNK)

    @property
    def cls_id(self) -> int | None:
        return self._special_ids.get(CLS)

    @property
    def sep_id(self) -> int | None:
        return self._special_ids.get(SEP)

    @property
    def mask_id(self) -> int | None:
        return self._special_ids.get(MASK)

    @property
    def eos_id(self) -> int | None:
        return self._special_ids.get(EOS)

    @property
    def special_ids(self) -> dict[str, int]:
        return dict(self._special_ids)

    # ------------------------------------------------------------------ encode / decode

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, *, name: str = "text", specials: bool = False) -> list[int]:
        """Ids of ``text``. ``specials=True``: literal special tokens in ``text`` become their
        ids (see the module docstring). ``name`` says what the text is in error messages."""
        if not isinstance(text, str):
            fail(name, "a str", type(text).__name__)
        if not specials or self._special_re is None:
            return self._encode_pieces([text], name)[0]
        parts = self._special_re.split(text)  # text, special, text, special, ..., text
        plain, found = parts[0::2], parts[1::2]
        out: list[int] = []
        for k, ids in enumerate(self._encode_pieces(plain, name)):
            out.extend(ids)
            if k < len(found):
                out.append(self._special_ids[found[k]])
        return out

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """The text of ``ids`` (a list of ints or a 1-D integer tensor); special tokens are
        written as their literal text."""
        return self._decode(_id_list(ids, self.vocab_size))

    @abstractmethod
    def _encode_pieces(self, pieces: list[str], name: str) -> list[list[int]]:
        """The ids of each piece of plain text (no special-token handling)."""

    @abstractmethod
    def _decode(self, ids: list[int]) -> str:
        """The text of ids already checked to lie in [0, vocab_size)."""

    # ------------------------------------------------------------------ JSON

    @abstractmethod
    def _payload(self) -> dict: ...

    def to_json(self) -> str:
        """``{"format": "seqlab-tokenizer", "version": 1, "kind": ..., "special_tokens": [...], ...}``;
        ``tokenizer_from_json`` reads it back."""
        return json.dumps({"format": FORMAT, "version": VERSION, "kind": self.kind,
                           "special_tokens": list(self._specials), **self._payload()}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Tokenizer":
        tok = tokenizer_from_json(text)
        if not isinstance(tok, cls):
            fail("tokenizer JSON", f"kind {cls.kind!r}", repr(tok.kind))
        return tok

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_json() == self.to_json()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, special_tokens={self._specials})"


# --------------------------------------------------------------------------- characters


class CharLevelTokenizer(Tokenizer):
    """Characters (a ``seqlab.data.text.CharTokenizer``: ids 0..C-1) and special tokens
    after them (ids C..C+S-1)."""

    kind = "char"

    def __init__(self, chars: str | Sequence[str] | CharTokenizer, special_tokens: Sequence[str] = ()):
        self._chars_tok = chars if isinstance(chars, CharTokenizer) else CharTokenizer(chars)
        specials = _check_special_tokens(special_tokens)
        clash = [t for t in specials if t in self._chars_tok.chars]  # a 1-character token that is also a character
        if clash:
            fail("special_tokens", "tokens that are not also characters of the vocabulary",
                 ", ".join(repr(t) for t in clash))
        n = self._chars_tok.vocab_size
        super().__init__(specials, range(n, n + len(specials)))

    @classmethod
    def from_text(cls, text: str, special_tokens: Sequence[str] = ()) -> "CharLevelTokenizer":
        """The distinct characters of ``text``, sorted, then ``special_tokens``."""
        return cls(CharTokenizer.from_text(text), special_tokens)

    @property
    def char_tokenizer(self) -> CharTokenizer:
        """The wrapped character vocabulary (without the special tokens)."""
        return self._chars_tok

    @property
    def chars(self) -> str:
        return self._chars_tok.chars

    @property
    def vocab_size(self) -> int:
        return self._chars_tok.vocab_size + len(self._specials)

    def _encode_pieces(self, pieces: list[str], name: str) -> list[list[int]]:
        # one call for all pieces, so that an error lists every unknown character at once;
        # one id per character, so the pieces are cut back out by their lengths
        ids = self._chars_tok.encode("".join(pieces), name=name)
        bounds = list(itertools.accumulate(len(p) for p in pieces))
        return [ids[b - len(p):b] for p, b in zip(pieces, bounds)]

    def _decode(self, ids: list[int]) -> str:
        n = self._chars_tok.vocab_size
        out = []
        for is_special, run in itertools.groupby(ids, key=lambda i: i >= n):
            if is_special:
                out.extend(self._special_of_id[i] for i in run)
            else:
                out.append(self._chars_tok.decode(list(run)))
        return "".join(out)

    def _payload(self) -> dict:
        return {"chars": list(self._chars_tok.chars)}


# --------------------------------------------------------------------------- byte-level BPE


def _describe_hf(hf) -> str:
    def name(obj) -> str:
        return type(obj).__name__ if obj is not None else "none"

    return (f"model {name(hf.model)}, pre-tokenizer {name(hf.pre_tokenizer)}, "
            f"decoder {name(hf.decoder)}, normalizer {name(hf.normalizer)}")


class BPETokenizer(Tokenizer):
    """Byte-level BPE (a Hugging Face ``tokenizers.Tokenizer``); build one with ``train`` or
    ``from_json``. The special tokens are the library's special added tokens, ids 0..S-1."""

    kind = "bpe"

    def __init__(self, hf_tokenizer) -> None:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers

        if not isinstance(hf_tokenizer, HFTokenizer):
            fail("hf_tokenizer", "a tokenizers.Tokenizer", type(hf_tokenizer).__name__)
        hf = hf_tokenizer
        pre = hf.pre_tokenizer
        if not (isinstance(hf.model, models.BPE) and isinstance(pre, pre_tokenizers.ByteLevel)
                and not pre.add_prefix_space and isinstance(hf.decoder, decoders.ByteLevel)
                and hf.normalizer is None):
            fail("hf_tokenizer", "a byte-level BPE (model BPE, ByteLevel pre-tokenizer without prefix space, "
                 "ByteLevel decoder, no normalizer)", _describe_hf(hf))
        added = sorted(hf.get_added_tokens_decoder().items())
        plain = [t.content for _, t in added if not t.special]
        if plain:
            fail("hf_tokenizer", "special added tokens only", "non-special added tokens "
                 + ", ".join(repr(t) for t in plain))
        specials = _check_special_tokens([t.content for _, t in added])
        # our encode() finds the special tokens itself (only when asked to): the library must
        # treat their literal text as ordinary text
        hf.encode_special_tokens = True
        self._hf = hf
        super().__init__(specials, [i for i, _ in added])
        for t, i in self._special_ids.items():
            if hf.decode([i], skip_special_tokens=False) != t:
                fail("special_tokens", "tokens that decode to their own text",
                     f"{t!r} -> {hf.decode([i], skip_special_tokens=False)!r}")

    @classmethod
    def train(cls, text: str, *, vocab_size: int, special_tokens: Sequence[str] = (),
              min_frequency: int = 2) -> "BPETokenizer":
        """Train on ``text``: the 256 byte symbols and ``special_tokens``, then merges of the
        most frequent adjacent pairs (seen at least ``min_frequency`` times) until the
        vocabulary holds ``vocab_size`` entries. A corpus with too few frequent pairs gives a
        smaller vocabulary; ``.vocab_size`` is the size reached."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if not isinstance(text, str):
            fail("text", "a str", type(text).__name__)
        if not text:
            fail("text", "a non-empty string", "an empty string")
        specials = _check_special_tokens(special_tokens)
        check_int(vocab_size, "vocab_size", minimum=BYTE_ALPHABET + len(specials))
        check_int(min_frequency, "min_frequency", minimum=1)
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=list(specials), show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        hf.train_from_iterator([text], trainer)
        return cls(hf)

    @property
    def hf_tokenizer(self):
        """The underlying ``tokenizers.Tokenizer`` (do not modify it)."""
        return self._hf

    @property
    def vocab_size(self) -> int:
        return self._hf.get_vocab_size(with_added_tokens=True)

    def token_strings(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        """The vocabulary entry of each id (bytes shown in GPT-2's printable byte alphabet,
        e.g. "Ġthe" for " the"): what a student looks at to see the merges."""
        return [self._hf.id_to_token(i) for i in _id_list(ids, self.vocab_size)]

    def _encode_pieces(self, pieces: list[str], name: str) -> list[list[int]]:
        return [self._hf.encode(p, add_special_tokens=False).ids for p in pieces]

    def _decode(self, ids: list[int]) -> str:
        return self._hf.decode(ids, skip_special_tokens=False)

    def _payload(self) -> dict:
        return {"tokenizer": json.loads(self._hf.to_str())}


# --------------------------------------------------------------------------- JSON

KINDS = ("char", "bpe")


def tokenizer_from_json(text: str) -> Tokenizer:
    """A tokenizer from ``to_json``'s output, of the kind it names. Also reads the JSON of a
    plain ``seqlab.data.text.CharTokenizer`` (format "seqlab-char-tokenizer") as a
    ``CharLevelTokenizer`` without special tokens."""
    what = "tokenizer JSON"
    if not isinstance(text, str):
        fail(what, "a str", type(text).__name__)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        fail(what, "valid JSON", f"text that does not parse ({e})")
    if not isinstance(obj, dict):
        fail(what, "a JSON object", type(obj).__name__)
    if obj.get("format") == "seqlab-char-tokenizer":
        return CharLevelTokenizer(CharTokenizer.from_json(text))
    if obj.get("format") != FORMAT:
        fail(what, f"format {FORMAT!r} (or 'seqlab-char-tokenizer')", repr(obj.get("format")))
    if obj.get("version") != VERSION:
        fail(what, f"version {VERSION}", repr(obj.get("version")))
    kind = obj.get("kind")
    if kind not in KINDS:
        fail(what, "kind " + " or ".join(repr(k) for k in KINDS), repr(kind))
    specials = obj.get("special_tokens")
    if not isinstance(specials, list):
        fail(what, "a list of strings under 'special_tokens'", type(specials).__name__)
    if kind == "char":
        chars = obj.get("chars")
        if not isinstance(chars, list):
            fail(what, "a list of characters under 'chars'", type(chars).__name__)
        return CharLevelTokenizer(chars, specials)
    from tokenizers import Tokenizer as HFTokenizer

    inner = obj.get("tokenizer")
    if not isinstance(inner, dict):
        fail(what, "the Hugging Face tokenizer's JSON object under 'tokenizer'", type(inner).__name__)
    try:
        hf = HFTokenizer.from_str(json.dumps(inner))
    except Exception as e:  # the library raises a bare Exception
        fail(what, "a Hugging Face tokenizer under 'tokenizer'", f"one it cannot read ({e})")
    tok = BPETokenizer(hf)
    if list(tok.special_tokens) != specials:
        fail(what, f"special_tokens matching the BPE's own {list(tok.special_tokens)}", specials)
    return tok


__all__ = [
    "BERT_SPECIAL_TOKENS", "BPETokenizer", "CLS", "CharLevelTokenizer", "EOS", "GPT_SPECIAL_TOKENS", "MASK",
    "PAD", "SEP", "Tokenizer", "UNK", "tokenizer_from_json",
]
