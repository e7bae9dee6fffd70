r"""The data of the machine-translation family (``seqlab.tasks.translate``).

Two sources of sentence pairs (source -> target):

- **Number phrases, generated** with ``num2words`` over a range of integers [low, high]
  (``number_pairs``): a *direction* names the source and the target language among
  ``digits`` ("312"), ``en`` ("three hundred and twelve"), ``fr`` ("trois cent douze") and
  ``de`` ("dreihundertzwölf"), e.g. ``en-fr`` or ``digits-en``. The split is **by number**
  (``split_numbers``): a seeded permutation of the range puts ``test_fraction`` of the
  numbers in the test split and ``val_fraction`` in the validation split, so no test number
  is ever seen in training. The corpus is built once and cached (``seqlab.data.cache``).
- **Any tab-separated file** of pairs, ``source<TAB>target`` per line (``read_pairs``),
  split by distinct source sentence the same seeded way (a test source is never a
  training source).

Tokenisation (``Vocab``): ``words`` or ``chars``. In ``words`` mode a text is cut into
digits (one token each), runs of letters and single other characters (hyphens, commas);
a piece that follows a space carries the mark "▁" (the text is read as if it started with
one), so decoding is exact: "quatre-vingt-un" -> ▁quatre - vingt - un. ``chars`` mode
takes every character (spaces included) as a token. ``auto`` (the default) is ``chars``
when one side is German (which writes numbers below a million as one word, so a held-out
number would be an unseen word) and ``words`` otherwise. Texts are normalised first
(Unicode NFC, runs of whitespace -> one space, stripped). Each vocabulary holds the four
special tokens <pad> <s> </s> <unk> (ids 0-3) and the pieces of the training split, in
sorted order; the run directory keeps both as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch

from seqlab.validation import fail

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
SPACE = "\u2581"  # "▁": the piece follows a space
LANGUAGES = ("digits", "en", "fr", "de")
DIRECTIONS = tuple(f"{a}-{b}" for a in LANGUAGES for b in LANGUAGES if a != b)
TOKENS = ("auto", "words", "chars")
MAX_RANGE = 1_000_000  # numbers in one generated corpus
MAX_NUMBER = 10**12 - 1
MAX_PAIRS = 2_000_000
MAX_LINE = 2000  # characters per side of a pair
_PIECE = re.compile(r"(\s*)(\d|[^\W\d_]+|\S)")


def normalise(text: str) -> str:
    """Unicode NFC, runs of whitespace -> one space, no leading or trailing space."""
    return " ".join(unicodedata.normalize("NFC", text).split())


# --------------------------------------------------------------------------- vocabulary


class Vocab:
    """Pieces <-> ids for one language of a run: ids 0-3 the special tokens, then the pieces.

    ``pieces(text)`` cuts a (normalised) text; ``encode(text, strict=...)`` gives the ids (an
    unknown piece is <unk>, or with ``strict`` a one-line error listing every unknown piece);
    ``decode(ids)`` the text (special tokens dropped)."""

    def __init__(self, mode: str, pieces: Sequence[str]):
        if mode not in ("words", "chars"):
            fail("vocabulary mode", "'words' or 'chars'", repr(mode))
        pieces = list(pieces)
        if any(not isinstance(p, str) or not p or p in SPECIALS for p in pieces) or len(set(pieces)) != len(pieces):
            fail("vocabulary", "distinct non-empty pieces, none a special token", "a bad piece list")
        self.mode = mode
        self.itos = list(SPECIALS) + pieces
        self.stoi = {p: i for i, p in enumerate(self.itos)}

    @classmethod
    def build(cls, mode: str, texts: Iterable[str]) -> "Vocab":
        """The vocabulary of ``texts`` (a training split's sentences of one language)."""
        seen: set[str] = set()
        for t in texts:
            seen.update(cls.cut(mode, t))
        return cls(mode, sorted(seen))

    @staticmethod
    def cut(mode: str, text: str) -> list[str]:
        text = normalise(text)
        if mode == "chars":
            return list(text)
        # every piece of the text, "▁" before one that follows a space (or starts the text)
        return [(SPACE if (sp or m.start() == 0) else "") + p for m in _PIECE.finditer(text)
                for sp, p in [m.groups()]]

    def pieces(self, text: str) -> list[str]:
        return self.cut(self.mode, text)

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and (self.mode, self.itos) == (other.mode, other.itos)

    def unknown(self, text: str) -> list[str]:
        """The pieces of ``text`` not in the vocabulary (in order, once each)."""
        return list(dict.fromkeys(p for p in self.pieces(text) if p not in self.stoi))

    def encode(self, text: str, *, strict: bool = False, name: str = "text") -> list[int]:
        if strict:
            bad = self.unknown(text)
            if bad:
                kind = "characters" if self.mode == "chars" else "words"
                shown = ", ".join(repr(b.replace(SPACE, "")) for b in bad[:10]) + (" ..." if len(bad) > 10 else "")
                fail(name, f"{kind} of the run's source vocabulary ({len(self) - len(SPECIALS)} pieces)",
                     f"unknown {kind} {shown}")
        return [self.stoi.get(p, UNK) for p in self.pieces(text)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.join(self.itos[i] for i in ids if i >= len(SPECIALS) or i == UNK)

    def join(self, pieces: Iterable[str]) -> str:
        text = "".join(pieces)
        return text if self.mode == "chars" else text.replace(SPACE, " ").strip()

    def show(self, i: int) -> str:
        """Piece ``i`` as a plot label (the space mark shown as nothing)."""
        p = self.itos[i]
        return p.replace(SPACE, "") if self.mode == "words" else ("␣" if p == " " else p)

    def to_json(self) -> str:
        return json.dumps({"mode": self.mode, "pieces": self.itos[len(SPECIALS):]}, ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str, name: str = "vocabulary") -> "Vocab":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            fail(name, "a JSON vocabulary", f"invalid JSON ({e.msg} at line {e.lineno})")
        if not isinstance(d, dict) or not isinstance(d.get("pieces"), list) or d.get("mode") not in ("words", "chars"):
            fail(name, "an object with 'mode' (words or chars) and 'pieces' (a list)", "another JSON value")
        return cls(d["mode"], d["pieces"])


# --------------------------------------------------------------------------- number phrases


def check_direction(direction: str) -> tuple[str, str]:
    if direction not in DIRECTIONS:
        fail("direction", "SOURCE-TARGET with two of " + ", ".join(LANGUAGES) + " (e.g. en-fr, digits-en)",
             repr(direction))
    src, tgt = direction.split("-")
    return src, tgt


def say(n: int, language: str) -> str:
    """The number ``n`` in ``language``: its digits, or num2words' words."""
    if language == "digits":
        return str(n)
    from num2words import num2words

    return normalise(num2words(n, lang=language))


def check_range(low: object, high: object) -> None:
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_NUMBER:
            fail(name, f"an integer in [0, {MAX_NUMBER}]", repr(v))
    if high < low:
        fail("number range", "low <= high", f"low {low}, high {high}")
    if high - low + 1 > MAX_RANGE:
        fail("number range", f"at most {MAX_RANGE} numbers", f"{high - low + 1} (low {low}, high {high})")
    if high - low + 1 < 3:
        fail("number range", "at least 3 numbers (training, validation and test)", f"{high - low + 1}")


def number_pairs(direction: str, low: int, high: int) -> list[tuple[int, str, str]]:
    """(n, source, target) for n = low .. high, in the direction's two languages. Built once
    and cached under the user cache folder (``seqlab.data.cache``), rebuilt when missing."""
    from importlib.metadata import version

    from seqlab.data.cache import build_once

    src, tgt = check_direction(direction)
    check_range(low, high)
    name = f"translate-numbers-{direction}-{low}-{high}-num2words{version('num2words')}"

    def build(folder: Path) -> None:
        lines = [f"{n}\t{say(n, src)}\t{say(n, tgt)}" for n in range(low, high + 1)]
        (folder / "pairs.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    text = (build_once(name, build) / "pairs.tsv").read_text(encoding="utf-8")
    out = []
    for line in text.splitlines():
        n, s, t = line.split("\t")
        out.append((int(n), s, t))
    if len(out) != high - low + 1:  # a damaged cache: say where it is
        fail("number corpus cache", f"{high - low + 1} pairs", f"{len(out)} in {name}")
    return out


def split_items(items: Sequence, test_fraction: float, val_fraction: float, seed: int
                ) -> tuple[list, list, list]:
    """(train, val, test) of ``items`` (distinct keys: numbers or source sentences): a seeded
    permutation (``random.Random(seed)``, the same on every machine), the first
    ``round(test_fraction * N)`` (at least 1) for test, the next ``round(val_fraction * N)``
    (at least 1) for validation, the rest (at least 1) for training; each part sorted back
    into the items' order."""
    n = len(items)
    n_test = max(1, round(test_fraction * n))
    n_val = max(1, round(val_fraction * n))
    if n - n_test - n_val < 1:
        fail("split", "at least one item left for training", f"{n} items, {n_test} test and {n_val} validation")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    test, val, train = sorted(order[:n_test]), sorted(order[n_test:n_test + n_val]), sorted(order[n_test + n_val:])
    return [items[i] for i in train], [items[i] for i in val], [items[i] for i in test]


def split_numbers(low: int, high: int, test_fraction: float, val_fraction: float, seed: int
                  ) -> tuple[list[int], list[int], list[int]]:
    """The numbers of [low, high] in (train, val, test), disjoint (see ``split_items``)."""
    return split_items(range(low, high + 1), test_fraction, val_fraction, seed)


# --------------------------------------------------------------------------- a TSV file of pairs


def read_pairs(path: str | os.PathLike, name: str = "--pairs") -> tuple[list[tuple[str, str]], str]:
    """The pairs of a UTF-8 file with one ``source<TAB>target`` per line (blank lines and lines
    starting with "#" skipped), and the file's sha256. Missing, unreadable, empty and malformed
    files are one-line errors naming the file (and the line)."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        fail(name, "the path of a tab-separated file of sentence pairs", repr(path))
    p = Path(path).expanduser()
    if not p.exists():
        fail(name, "an existing tab-separated file of sentence pairs", f"{str(path)!r} (no such file)")
    if not p.is_file():
        fail(name, "a tab-separated file of sentence pairs", f"{str(path)!r} (not a file)")
    try:
        data = p.read_bytes()
    except OSError as e:
        fail(name, "a readable file", f"{str(path)!r} ({(e.strerror or str(e)).lower()})")
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        fail(f"{name} {str(path)!r}", "UTF-8 text", f"bytes that are not UTF-8 at byte offset {e.start}")
    pairs = []
    for i, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            fail(f"{name} {str(path)!r} line {i}", "source<TAB>target (exactly one tab)",
                 f"{len(parts) - 1} tabs in {line[:60]!r}")
        src, tgt = normalise(parts[0]), normalise(parts[1])
        if not src or not tgt:
            fail(f"{name} {str(path)!r} line {i}", "a non-empty source and target", f"{line[:60]!r}")
        if len(src) > MAX_LINE or len(tgt) > MAX_LINE:
            fail(f"{name} {str(path)!r} line {i}", f"sentences of at most {MAX_LINE} characters",
                 f"{max(len(src), len(tgt))} characters")
        pairs.append((src, tgt))
        if len(pairs) > MAX_PAIRS:
            fail(f"{name} {str(path)!r}", f"at most {MAX_PAIRS} pairs", "more")
    if not pairs:
        fail(f"{name} {str(path)!r}", "at least one source<TAB>target line", "an empty file (no pairs)")
    return pairs, digest


def split_pairs(pairs: Sequence[tuple[str, str]], test_fraction: float, val_fraction: float, seed: int
                ) -> tuple[list, list, list]:
    """(train, val, test) pairs, split by distinct source sentence (``split_items``): every
    pair of a source goes to the same split."""
    sources = list(dict.fromkeys(s for s, _ in pairs))
    if len(sources) < 3:
        fail("pairs", "at least 3 distinct source sentences (training, validation and test)", f"{len(sources)}")
    train, val, test = split_items(sources, test_fraction, val_fraction, seed)
    where = {s: k for k, part in enumerate((train, val, test)) for s in part}
    parts: tuple[list, list, list] = ([], [], [])
    for s, t in pairs:
        parts[where[s]].append((s, t))
    return parts


# --------------------------------------------------------------------------- the run's data


def resolve_tokens(tokens: str, direction: str | None) -> str:
    """``auto`` -> chars when a side is German (compound number words), else words."""
    if tokens not in TOKENS:
        fail("tokens", "one of " + ", ".join(TOKENS), repr(tokens))
    if tokens != "auto":
        return tokens
    return "chars" if direction is not None and "de" in direction.split("-") else "words"


@dataclass
class TranslationData:
    """The pairs of a run in three splits, the two vocabularies (from the training split) and
    the batches the trainer draws: ``get_batch(split, B, generator) -> (src, src_len, y_in,
    y_out)`` with src (B, S) source ids padded with <pad>, src_len (B,), y_in (B, T) the
    target after <s> (teacher forcing's inputs), y_out (B, T) the target then </s> (padded
    with <pad>, which the loss ignores)."""

    train: list[tuple[str, str]]
    val: list[tuple[str, str]]
    test: list[tuple[str, str]]
    source_vocab: Vocab
    target_vocab: Vocab
    description: dict
    _encoded: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_splits(cls, train, val, test, tokens: str, description: dict) -> "TranslationData":
        src_vocab = Vocab.build(tokens, (s for s, _ in train))
        tgt_vocab = Vocab.build(tokens, (t for _, t in train))
        return cls(list(train), list(val), list(test), src_vocab, tgt_vocab, description)

    def info(self) -> dict:
        return dict(self.description)

    def split(self, name: str) -> list[tuple[str, str]]:
        if name not in ("train", "val", "test"):
            fail("split", "'train', 'val' or 'test'", repr(name))
        return getattr(self, name)

    def longest(self) -> tuple[int, int]:
        """The longest source and target of all splits, in pieces."""
        every = self.train + self.val + self.test
        return (max(len(self.source_vocab.pieces(s)) for s, _ in every),
                max(len(self.target_vocab.pieces(t)) for _, t in every))

    def encoded(self, split: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if split not in self._encoded:
            pairs = self.split(split)
            self._encoded[split] = ([torch.tensor(self.source_vocab.encode(s)) for s, _ in pairs],
                                    [torch.tensor(self.target_vocab.encode(t)) for _, t in pairs])
        return self._encoded[split]

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator):
        src, tgt = self.encoded(split)
        idx = torch.randint(len(src), (batch_size,), generator=generator).tolist()
        return collate([src[i] for i in idx], [tgt[i] for i in idx])


def collate(sources: Sequence[torch.Tensor], targets: Sequence[torch.Tensor] | None = None):
    """Pad a batch: (src (B, S), src_len (B,)) and, with targets, (y_in (B, T), y_out (B, T))."""
    B = len(sources)
    src_len = torch.tensor([len(s) for s in sources])
    src = torch.full((B, int(src_len.max())), PAD, dtype=torch.long)  # (B, S)
    for i, s in enumerate(sources):
        src[i, :len(s)] = s
    if targets is None:
        return src, src_len
    T = max(len(t) for t in targets) + 1
    y_in = torch.full((B, T), PAD, dtype=torch.long)  # (B, T): <s> y_1 .. y_n
    y_out = torch.full((B, T), PAD, dtype=torch.long)  # (B, T): y_1 .. y_n </s>
    for i, t in enumerate(targets):
        y_in[i, 0] = BOS
        y_in[i, 1:len(t) + 1] = t
        y_out[i, :len(t)] = t
        y_out[i, len(t)] = EOS
    return src, src_len, y_in, y_out


def check_fractions(test_fraction: float, val_fraction: float) -> None:
    from seqlab.validation import check_float

    check_float(test_fraction, "test_fraction", minimum=0.0, maximum=0.5, open_min=True)
    check_float(val_fraction, "val_fraction", minimum=0.0, maximum=0.5, open_min=True)


def make_translation_data(*, direction: str = "en-fr", low: int = 0, high: int = 9999, pairs: str | None = None,
                          tokens: str = "auto", test_fraction: float = 0.1, val_fraction: float = 0.05,
                          split_seed: int = 0, sha256: str | None = None) -> TranslationData:
    """A run's data: the number phrases of ``direction`` over [low, high], or the pairs of the
    file ``pairs`` (``sha256``, when given, must match: a resumed or evaluated run reads the
    same file)."""
    from seqlab.validation import check_int

    check_fractions(test_fraction, val_fraction)
    check_int(split_seed, "split_seed")
    common = dict(tokens=tokens, test_fraction=test_fraction, val_fraction=val_fraction, split_seed=split_seed)
    if pairs is not None:
        mode = resolve_tokens(tokens, None)
        all_pairs, digest = read_pairs(pairs)
        if sha256 is not None and digest != sha256:
            fail(f"--pairs {str(pairs)!r}", f"the file the run was trained on (sha256 {sha256[:12]}...)",
                 f"another file (sha256 {digest[:12]}...)")
        train, val, test = split_pairs(all_pairs, test_fraction, val_fraction, split_seed)
        desc = {"kind": "pairs", "pairs": str(Path(pairs).expanduser().resolve()), "sha256": digest,
                "n_pairs": len(all_pairs), **common}
        return TranslationData.from_splits(train, val, test, mode, desc)
    check_direction(direction)
    check_range(low, high)
    mode = resolve_tokens(tokens, direction)
    rows = number_pairs(direction, low, high)
    by_n = {n: (s, t) for n, s, t in rows}
    parts = split_numbers(low, high, test_fraction, val_fraction, split_seed)
    desc = {"kind": "numbers", "direction": direction, "low": low, "high": high, **common}
    return TranslationData.from_splits(*([by_n[n] for n in part] for part in parts), mode, desc)


__all__ = ["BOS", "DIRECTIONS", "EOS", "LANGUAGES", "PAD", "SPECIALS", "TOKENS", "TranslationData", "UNK", "Vocab",
           "collate", "make_translation_data", "normalise", "number_pairs", "read_pairs", "resolve_tokens", "say",
           "split_items", "split_numbers", "split_pairs"]
