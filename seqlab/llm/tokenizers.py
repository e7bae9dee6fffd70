r"""Tokenizers for the language models: characters or byte-level BPE, with special tokens.

Every tokenizer has the same interface (``Tokenizer``):

    ids  = tok.encode(text)                 list[int]; unknown characters: ValueError naming them
    text = tok.decode(ids)                  list of ints or a 1-D integer tensor
    tok.vocab_size                          V, special tokens included
    tok.special_tokens                      e.g. ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    tok.pad_id, tok.unk_id, tok.cls_id,     the id of "[PAD]", "[UNK]", "[CLS]", "[SEP]",
    tok.sep_id, tok.mask_id, tok.eos_id     "[MASK]", "<|endoftext|>"; None where absent
    tok.to_json()  /  tokenizer_from_json(s) a Hugging Face tokenizer.json, and any kind back from it
    tok.to_hf()                             the same tokenizer as a Hugging Face ``tokenizers.Tokenizer``

Special tokens in text. ``encode(text)`` treats every character of ``text`` as text: the
literal "[MASK]" is six characters (and an error if "[" is not in a character vocabulary).
``encode(text, specials=True)`` first cuts ``text`` at every literal occurrence of a special
token (the longest one where two overlap) and gives each its id, so that
``encode("the [MASK] sat", specials=True)`` holds ``mask_id``. ``decode`` writes a special
token as its literal text, so ``decode(encode(s, specials=True)) == s``.

Kinds:

- ``CharTokenizer``: one id per character (ids 0..C-1; ``from_text`` takes the distinct
  characters of a text, sorted) followed by the special tokens (ids C..C+S-1). It serves the
  recurrent character model (no special tokens), GPT and BERT alike.
- ``BPETokenizer``: byte-level BPE trained with the Hugging Face ``tokenizers`` library
  (GPT-2's scheme). The text is read as UTF-8 bytes, each byte one of 256 base symbols, and
  training repeatedly merges the most frequent adjacent pair into a new symbol until the
  vocabulary has ``vocab_size`` entries. Every byte is in the vocabulary, so any text
  encodes (there is no unknown token) and ``decode(encode(s)) == s`` exactly. The special
  tokens take ids 0..S-1. Training is deterministic (the library breaks ties between
  equally frequent pairs by the pair itself), so it takes no seed.

The JSON (``tokenizer.json`` in every checkpoint) is the Hugging Face ``tokenizers``
library's own serialisation, so ``tokenizers.Tokenizer.from_file("tokenizer.json")`` reads
it and gives the same ids as ``encode(text, specials=True)`` (the library finds special
tokens in the text by default). A character tokenizer is written as the library's pieces:

- model ``WordLevel``: the vocabulary, each character (ids 0..C-1) then each special token
  (ids C..C+S-1), so that the ids are the vocabulary's own;
- pre-tokenizer ``Split`` on the regex ``[\s\S]`` with behaviour "isolated": every
  character its own piece, newlines included (the library's regex engine, Oniguruma, has no
  ``(?s)`` flag and its ``.`` skips "\n", which "isolated" would then keep as runs such as
  "\n\n", not one piece per character);
- the special tokens as special added tokens at their ids;
- decoder ``Fuse``: the pieces joined without spaces.

Text outside the vocabulary is an error in both (seqlab names the characters); where the
tokenizer has "[UNK]", the library's ``WordLevel`` maps an unknown character to it instead
(its ``unk_token``), as a Hugging Face BERT tokenizer does. ``tokenizer_from_json`` also
reads the two formats of older run directories (``{"format": "seqlab-tokenizer", ...}`` and
``{"format": "seqlab-char-tokenizer", ...}``).
"""

from __future__ import annotations

import itertools
import json
import re
from abc import ABC, abstractmethod
from typing import ClassVar, Iterable, Sequence

import torch

from seqlab.validation import check_int, fail

# the formats of older run directories, read by tokenizer_from_json
LEGACY_FORMAT = "seqlab-tokenizer"  # {"format", "version": 1, "kind": "char"|"bpe", "special_tokens", ...}
LEGACY_CHAR_FORMAT = "seqlab-char-tokenizer"  # {"format", "version": 1, "chars"}: the recurrent model's
LEGACY_VERSION = 1
# one match per character, "\n" included (Oniguruma: no (?s), and "." skips "\n")
CHAR_PATTERN = r"[\s\S]"

PAD, UNK, CLS, SEP, MASK, EOS = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<|endoftext|>"
BERT_SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
GPT_SPECIAL_TOKENS = (EOS,)
BYTE_ALPHABET = 256  # the base symbols of byte-level BPE


def _quote_chars(chars: Iterable[str], limit: int = 10) -> str:
    chars = list(chars)
    shown = ", ".join(repr(c) for c in chars[:limit])
    if len(chars) > limit:
        shown += f" and {len(chars) - limit} more"
    return shown


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
    ``vocab_size`` and ``to_hf``."""

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
    def to_hf(self):
        """This tokenizer as a new Hugging Face ``tokenizers.Tokenizer`` (same ids)."""

    def to_json(self) -> str:
        """The Hugging Face tokenizer JSON (``tokenizers.Tokenizer.to_str()``):
        ``tokenizers.Tokenizer.from_str`` and ``tokenizer_from_json`` read it back."""
        return self.to_hf().to_str()

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


class CharTokenizer(Tokenizer):
    """Characters <-> ids: id ``i`` is the ``i``-th character of ``chars`` (ids 0..C-1), then
    the special tokens in the order given (ids C..C+S-1)."""

    kind = "char"

    def __init__(self, chars: str | Sequence[str], special_tokens: Sequence[str] = ()):
        if isinstance(chars, str):
            chars = list(chars)
        if not isinstance(chars, (list, tuple)):
            fail("chars", "a string or a list of single characters", type(chars).__name__)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            fail("chars", "single characters", _quote_chars(bad))
        if not chars:
            fail("chars", "at least one character", "an empty vocabulary")
        seen: set[str] = set()
        dups = [c for c in chars if c in seen or seen.add(c)]  # type: ignore[func-returns-value]
        if dups:
            fail("chars", "distinct characters", "duplicates " + _quote_chars(dict.fromkeys(dups)))
        self._chars = "".join(chars)
        self._ids = {c: i for i, c in enumerate(self._chars)}
        specials = _check_special_tokens(special_tokens)
        clash = [t for t in specials if t in self._ids]  # a 1-character token that is also a character
        if clash:
            fail("special_tokens", "tokens that are not also characters of the vocabulary",
                 ", ".join(repr(t) for t in clash))
        n = len(self._chars)
        super().__init__(specials, range(n, n + len(specials)))

    @classmethod
    def from_text(cls, text: str, special_tokens: Sequence[str] = ()) -> "CharTokenizer":
        """The distinct characters of ``text``, sorted, then ``special_tokens``."""
        if not isinstance(text, str):
            fail("text", "a str", type(text).__name__)
        if not text:
            fail("text", "a non-empty string", "an empty string")
        return cls(sorted(set(text)), special_tokens)

    @property
    def chars(self) -> str:
        """The characters, in id order (without the special tokens)."""
        return self._chars

    @property
    def vocab_size(self) -> int:
        return len(self._chars) + len(self._specials)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and (other._chars, other._specials) == (self._chars, self._specials)  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((self._chars, self._specials))

    def _encode_pieces(self, pieces: list[str], name: str) -> list[list[int]]:
        # one lookup for all pieces, so that an error lists every unknown character at once;
        # one id per character, so the pieces are cut back out by their lengths
        text = pieces[0] if len(pieces) == 1 else "".join(pieces)
        ids = self._ids
        try:
            out = [ids[c] for c in text]
        except KeyError:
            unknown = dict.fromkeys(c for c in text if c not in ids)
            fail(name, f"characters from the tokenizer's {len(self._chars)}-character vocabulary",
                 f"unknown characters {_quote_chars(unknown)}")
        if len(pieces) == 1:
            return [out]
        bounds = list(itertools.accumulate(len(p) for p in pieces))
        return [out[b - len(p):b] for p, b in zip(pieces, bounds)]

    def _decode(self, ids: list[int]) -> str:
        chars, special = self._chars, self._special_of_id
        return "".join(chars[i] if i < len(chars) else special[i] for i in ids)

    def to_hf(self):
        """A Hugging Face tokenizer of the same ids: a ``WordLevel`` vocabulary (characters,
        then special tokens), a ``Split`` pre-tokenizer that isolates every character, the
        special tokens as special added tokens, a ``Fuse`` decoder (see the module docstring)."""
        from tokenizers import AddedToken, Regex
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers

        vocab = {**self._ids, **self._special_ids}
        model = models.WordLevel(vocab, unk_token=UNK) if UNK in self._special_ids else models.WordLevel(vocab)
        hf = HFTokenizer(model)
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(CHAR_PATTERN), behavior="isolated")
        hf.decoder = decoders.Fuse()
        hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in self._specials])
        return hf

    @classmethod
    def from_hf(cls, hf_tokenizer) -> "CharTokenizer":
        """The character tokenizer that ``to_hf`` wrote: a ``WordLevel`` vocabulary of single
        characters followed by the special added tokens, the ``Split`` pre-tokenizer on
        ``[\\s\\S]`` (isolated), a ``Fuse`` decoder, no normalizer and no post-processor."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import models

        if not isinstance(hf_tokenizer, HFTokenizer):
            fail("hf_tokenizer", "a tokenizers.Tokenizer", type(hf_tokenizer).__name__)
        hf = hf_tokenizer
        obj = json.loads(hf.to_str())
        pre = obj.get("pre_tokenizer") or {}
        if not (isinstance(hf.model, models.WordLevel) and pre.get("type") == "Split"
                and pre.get("pattern") == {"Regex": CHAR_PATTERN} and pre.get("behavior") == "Isolated"
                and not pre.get("invert") and (obj.get("decoder") or {}).get("type") == "Fuse"
                and obj.get("normalizer") is None and obj.get("post_processor") is None):
            fail("hf_tokenizer", f"a character tokenizer (model WordLevel, Split pre-tokenizer on {CHAR_PATTERN!r} "
                 "isolated, Fuse decoder, no normalizer, no post-processor)", _describe_hf(hf))
        added = _special_added_tokens(hf)
        vocab = hf.get_vocab(with_added_tokens=False)
        tokens = sorted(vocab, key=vocab.__getitem__)  # in id order
        gaps = [(t, vocab[t]) for k, t in enumerate(tokens) if vocab[t] != k]
        if gaps:
            fail("hf_tokenizer", f"a WordLevel vocabulary with ids 0..{len(tokens) - 1}",
                 f"{gaps[0][0]!r} at {gaps[0][1]}")
        specials = [t.content for _, t in added]
        n = len(tokens) - len(specials)
        if [(i, t.content) for i, t in added] != list(enumerate(tokens))[n:]:
            fail("hf_tokenizer", "the special tokens at the last ids of the vocabulary",
                 ", ".join(f"{t.content!r} at {i}" for i, t in added))
        long = [t for t in tokens[:n] if len(t) != 1]
        if long:
            fail("hf_tokenizer", "single characters before the special tokens", _quote_chars(long))
        return cls(tokens[:n], specials)


# --------------------------------------------------------------------------- byte-level BPE


def _special_added_tokens(hf) -> list:
    """A Hugging Face tokenizer's added tokens as (id, AddedToken), by id; every one must be a
    special token (seqlab's tokenizers add no others)."""
    added = sorted(hf.get_added_tokens_decoder().items())
    plain = [t.content for _, t in added if not t.special]
    if plain:
        fail("hf_tokenizer", "special added tokens only", "non-special added tokens " + ", ".join(repr(t) for t in plain))
    return added


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
        added = _special_added_tokens(hf)
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

    def to_hf(self):
        """A copy of the underlying ``tokenizers.Tokenizer`` (it finds special tokens in text,
        the library's default)."""
        from tokenizers import Tokenizer as HFTokenizer

        return HFTokenizer.from_str(self.to_json())

    def to_json(self) -> str:
        return self._hf.to_str()


# --------------------------------------------------------------------------- JSON

KINDS = ("char", "bpe")
_HF_MODELS = {"WordLevel": "char", "BPE": "bpe"}
_WHAT = "tokenizer JSON"


def tokenizer_from_json(text: str) -> Tokenizer:
    """The tokenizer of a Hugging Face tokenizer JSON written by ``to_json``: a ``WordLevel``
    model is a ``CharTokenizer``, a ``BPE`` model a ``BPETokenizer``; the special tokens are the
    special added tokens. Also reads the formats of older run directories:
    ``{"format": "seqlab-tokenizer", "version": 1, "kind": "char"|"bpe", ...}`` and
    ``{"format": "seqlab-char-tokenizer", "version": 1, "chars": [...]}`` (a character
    tokenizer without special tokens)."""
    what = _WHAT
    if not isinstance(text, str):
        fail(what, "a str", type(text).__name__)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        fail(what, "valid JSON", f"text that does not parse ({e})")
    if not isinstance(obj, dict):
        fail(what, "a JSON object", type(obj).__name__)
    fmt = obj.get("format")
    if fmt == LEGACY_CHAR_FORMAT:
        _check_legacy_version(obj)
        return CharTokenizer(_legacy_chars(obj))
    if fmt == LEGACY_FORMAT:
        return _from_legacy(obj)
    model = obj.get("model")
    if fmt is not None or not isinstance(model, dict):
        fail(what, f"a Hugging Face tokenizer (an object with a 'model'), or the format {LEGACY_FORMAT!r} or "
             f"{LEGACY_CHAR_FORMAT!r} of older runs",
             f"format {fmt!r}" if fmt is not None else "an object without 'model'")
    kind = _HF_MODELS.get(model.get("type"))
    if kind is None:
        fail(what, "model type " + " or ".join(f"{m!r} ({k})" for m, k in _HF_MODELS.items()),
             repr(model.get("type")))
    hf = _hf_from_str(text, "a Hugging Face tokenizer")
    return CharTokenizer.from_hf(hf) if kind == "char" else BPETokenizer(hf)


def _hf_from_str(text: str, expected: str):
    from tokenizers import Tokenizer as HFTokenizer

    try:
        return HFTokenizer.from_str(text)
    except Exception as e:  # the library raises a bare Exception
        fail(_WHAT, expected, f"one it cannot read ({e})")


def _check_legacy_version(obj: dict) -> None:
    if obj.get("version") != LEGACY_VERSION:
        fail(_WHAT, f"version {LEGACY_VERSION}", repr(obj.get("version")))


def _legacy_chars(obj: dict) -> list:
    chars = obj.get("chars")
    if not isinstance(chars, list):
        fail(_WHAT, "a list of characters under 'chars'", type(chars).__name__)
    return chars


def _from_legacy(obj: dict) -> Tokenizer:
    """``{"format": "seqlab-tokenizer", "version": 1, "kind", "special_tokens", "chars" | "tokenizer"}``."""
    what = _WHAT
    _check_legacy_version(obj)
    kind = obj.get("kind")
    if kind not in KINDS:
        fail(what, "kind " + " or ".join(repr(k) for k in KINDS), repr(kind))
    specials = obj.get("special_tokens")
    if not isinstance(specials, list):
        fail(what, "a list of strings under 'special_tokens'", type(specials).__name__)
    if kind == "char":
        return CharTokenizer(_legacy_chars(obj), specials)
    inner = obj.get("tokenizer")
    if not isinstance(inner, dict):
        fail(what, "the Hugging Face tokenizer's JSON object under 'tokenizer'", type(inner).__name__)
    tok = BPETokenizer(_hf_from_str(json.dumps(inner), "a Hugging Face tokenizer under 'tokenizer'"))
    if list(tok.special_tokens) != specials:
        fail(what, f"special_tokens matching the BPE's own {list(tok.special_tokens)}", specials)
    return tok


TOKENIZERS = ("char", "bpe")
DEFAULT_BPE_VOCAB = 512


def fit_tokenizer(kind: str, corpus: str, *, vocab_size: int | None = None,
                  special_tokens: Sequence[str] = ()) -> Tokenizer:
    """A tokenizer fitted to ``corpus``: its characters ("char"), or byte-level BPE ("bpe")
    with ``vocab_size`` entries (default 512); ``special_tokens`` after the characters, or
    first in the BPE vocabulary."""
    if kind not in TOKENIZERS:
        fail("tokenizer", "one of " + ", ".join(repr(k) for k in TOKENIZERS), repr(kind))
    if kind == "char":
        if vocab_size is not None:
            fail("vocab_size", "nothing with the char tokenizer (its vocabulary is the corpus's characters)",
                 vocab_size)
        return CharTokenizer.from_text(corpus, special_tokens=special_tokens)
    vocab_size = DEFAULT_BPE_VOCAB if vocab_size is None else check_int(vocab_size, "vocab_size", minimum=257)
    return BPETokenizer.train(corpus, vocab_size=vocab_size, special_tokens=special_tokens)


__all__ = [
    "BERT_SPECIAL_TOKENS", "BPETokenizer", "CLS", "CharTokenizer", "DEFAULT_BPE_VOCAB", "EOS", "GPT_SPECIAL_TOKENS",
    "MASK", "PAD", "SEP", "TOKENIZERS", "Tokenizer", "UNK", "fit_tokenizer", "tokenizer_from_json",
]
