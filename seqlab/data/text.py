"""Character-level text data: a tokenizer, corpora and a dataset of random windows.

Corpora:

- ``"pydoc"`` (the default, no network): the topics of the Python reference manual that
  ship with CPython (``pydoc_data.topics``), joined in sorted key order;
- ``"shakespeare"``: tiny Shakespeare from a local file (``shakespeare_path()``);
- any UTF-8 text file.

``CharDataset`` splits the text like nanoGPT: the first 90 % for training, the last 10 % for
validation; a batch is B random windows x = c[i : i+T] with targets y = c[i+1 : i+T+1].
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import torch

from seqlab.validation import check_choice, check_float, check_int, fail

SHAKESPEARE_ENV = "SEQLAB_SHAKESPEARE"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
_SHARED_RELATIVE = Path("..") / "shared" / "data" / "tinyshakespeare.txt"
_REPO_ROOT = Path(__file__).resolve().parents[2]
SPLITS = ("train", "val")


def _quote_chars(chars: Iterable[str], limit: int = 10) -> str:
    chars = list(chars)
    shown = ", ".join(repr(c) for c in chars[:limit])
    if len(chars) > limit:
        shown += f" and {len(chars) - limit} more"
    return shown


class CharTokenizer:
    """Characters <-> integer ids; id ``i`` is the ``i``-th character of ``chars``."""

    def __init__(self, chars: str | Sequence[str]):
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

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """The vocabulary of ``text``: its distinct characters, sorted."""
        if not isinstance(text, str):
            fail("text", "a str", type(text).__name__)
        if not text:
            fail("text", "a non-empty string", "an empty string")
        return cls(sorted(set(text)))

    @property
    def chars(self) -> str:
        return self._chars

    @property
    def vocab_size(self) -> int:
        return len(self._chars)

    def __len__(self) -> int:
        return len(self._chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and other._chars == self._chars

    def __hash__(self) -> int:
        return hash(self._chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"

    def encode(self, text: str, *, name: str = "text") -> list[int]:
        """Ids of the characters of ``text``; characters outside the vocabulary are a
        ValueError that lists them (``name`` says what the text is, e.g. ``"prompt"``)."""
        if not isinstance(text, str):
            fail(name, "a str", type(text).__name__)
        ids = self._ids
        try:
            return [ids[c] for c in text]
        except KeyError:
            unknown = dict.fromkeys(c for c in text if c not in ids)
            fail(name, f"characters from the tokenizer's {self.vocab_size}-character vocabulary",
                 f"unknown characters {_quote_chars(unknown)}")

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """The text of ``ids`` (a list of ints or a 1-D integer tensor)."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() > 1 or ids.is_floating_point() or ids.dtype == torch.bool:
                fail("ids", "a 1-D integer tensor", f"shape {tuple(ids.shape)}, dtype {ids.dtype}")
            ids = ids.reshape(-1).tolist()
        out = []
        n = self.vocab_size
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
                fail("ids", f"integers in [0, {n - 1}]", repr(i))
            out.append(self._chars[i])
        return "".join(out)

    def to_json(self) -> str:
        return json.dumps({"format": "seqlab-char-tokenizer", "version": 1, "chars": list(self._chars)},
                          ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "CharTokenizer":
        """Read ``to_json``'s output, checking its format."""
        if not isinstance(text, str):
            fail("tokenizer JSON", "a str", type(text).__name__)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            fail("tokenizer JSON", "valid JSON", f"text that does not parse ({e})")
        if not isinstance(obj, dict) or obj.get("format") != "seqlab-char-tokenizer":
            got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
            fail("tokenizer JSON", "format 'seqlab-char-tokenizer'", repr(got))
        if obj.get("version") != 1:
            fail("tokenizer JSON", "version 1", repr(obj.get("version")))
        chars = obj.get("chars")
        if not isinstance(chars, list):
            fail("tokenizer JSON", "a list of characters under 'chars'", type(chars).__name__)
        return cls(chars)


# --------------------------------------------------------------------------- corpora


def pydoc_text() -> str:
    """The Python reference manual's topics (``pydoc_data.topics``), in sorted key order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def shakespeare_path() -> Path:
    """Where tiny Shakespeare lies: ``$SEQLAB_SHAKESPEARE``, else
    ``../shared/data/tinyshakespeare.txt`` from the current directory or the repository root."""
    env = os.environ.get(SHAKESPEARE_ENV)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            fail(f"tiny Shakespeare (${SHAKESPEARE_ENV})", "an existing text file", f"{env!r} (no such file)")
        return p
    for base in (Path.cwd(), _REPO_ROOT):
        p = (base / _SHARED_RELATIVE).resolve()
        if p.is_file():
            return p
    fail("tiny Shakespeare", f"a file at ${SHAKESPEARE_ENV} or {_SHARED_RELATIVE}",
         f"none there; download tinyshakespeare input.txt ({SHAKESPEARE_URL}) and pass --text PATH")


def read_text_file(path: str | os.PathLike) -> str:
    """A UTF-8 text file's content (``\\r\\n`` -> ``\\n``, BOM removed); clear errors for a
    missing file, a directory, bytes that are not UTF-8 and an empty file."""
    p = Path(path).expanduser()
    if not p.exists():
        fail("text file", "an existing UTF-8 text file", f"{str(path)!r} (no such file)")
    if not p.is_file():
        fail("text file", "a UTF-8 text file", f"{str(path)!r} (not a file)")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        fail(f"text file {str(path)!r}", "UTF-8 text", f"bytes that are not UTF-8 at byte offset {e.start}")
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if not text:
        fail(f"text file {str(path)!r}", "some text", "an empty file")
    return text


def load_text(source: str | os.PathLike | None = None) -> tuple[str, str]:
    """(name, text) of a corpus: ``None`` or ``"pydoc"`` (embedded default), ``"shakespeare"``
    (see ``shakespeare_path``) or the path of a UTF-8 text file."""
    if source is None or source == "pydoc":
        return "pydoc", pydoc_text()
    if source == "shakespeare":
        return "shakespeare", read_text_file(shakespeare_path())
    if not isinstance(source, (str, os.PathLike)):
        fail("text source", "None, 'pydoc', 'shakespeare' or a file path", type(source).__name__)
    return Path(source).name, read_text_file(source)


def resume_text(saved_source: str | None, text: str | os.PathLike | None = None) -> str:
    """The corpus a resumed run reads: ``text`` if given, else the source saved in its
    run.json; a saved file that is gone is an error that says to pass --text."""
    source = text if text is not None else saved_source
    if source is not None and source not in ("pydoc", "shakespeare") and not Path(source).exists():
        fail("resume", f"the run's text file {str(source)!r}", "no such file (pass --text PATH)")
    return load_text(source)[1]


# --------------------------------------------------------------------------- dataset


class CharDataset:
    """A character corpus as ids, split into train (first 1 - val_fraction) and val (the rest).

    ``get_batch(split, B, generator)`` returns ``(x, y)``, two int64 tensors ``(B, T)`` with
    ``T = block_size``: random windows of the split and the same windows shifted by one."""

    def __init__(self, text: str, block_size: int, tokenizer: CharTokenizer | None = None, val_fraction: float = 0.1):
        if not isinstance(text, str):
            fail("text", "a str", type(text).__name__)
        if not text:
            fail("text", "a non-empty string", "an empty string")
        check_int(block_size, "block_size", minimum=1)
        check_float(val_fraction, "val_fraction", minimum=0.0, maximum=1.0, open_min=True, open_max=True)
        if tokenizer is None:
            tokenizer = CharTokenizer.from_text(text)
        elif not isinstance(tokenizer, CharTokenizer):
            fail("tokenizer", "a CharTokenizer or None", type(tokenizer).__name__)
        self.tokenizer = tokenizer
        self.block_size = block_size
        self.val_fraction = float(val_fraction)
        ids = torch.tensor(tokenizer.encode(text, name="text"), dtype=torch.int64)
        n = ids.numel()
        n_train = int(n * (1 - self.val_fraction))
        self.train_data = ids[:n_train]
        self.val_data = ids[n_train:]
        self.n_chars = n
        self.sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
        for split, part in (("train", self.train_data), ("val", self.val_data)):
            if part.numel() < block_size + 1:
                fail(f"{split} split", f"at least block_size + 1 = {block_size + 1} characters",
                     f"{part.numel()} (a text of {n} characters with val_fraction {self.val_fraction})")

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

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
            "kind": "characters",
            "characters": self.n_chars,
            "sha256": self.sha256,
            "vocab_size": self.vocab_size,
            "block_size": self.block_size,
            "val_fraction": self.val_fraction,
            "train_characters": self.train_data.numel(),
            "val_characters": self.val_data.numel(),
        }
