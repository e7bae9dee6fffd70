"""Text corpora for the language models.

- ``"pydoc"`` (the default, no network): the topics of the Python reference manual that
  ship with CPython (``pydoc_data.topics``), joined in sorted key order;
- ``"code"`` (no network either): the source code of a few standard-library modules
  (``CODE_MODULES``, read with ``inspect.getsource``), the new text of the embedded
  fine-tuning example (a GPT pretrained on the manual, adapted to code);
- ``"shakespeare"``: tiny Shakespeare from a local file (``shakespeare_path()``);
- any UTF-8 text file.

The tokenizers are in ``seqlab.llm.tokenizers`` (``CharTokenizer``, ``BPETokenizer``) and the
dataset of random windows in ``seqlab.data.tokens`` (``TokenDataset``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqlab.validation import fail

SHAKESPEARE_ENV = "SEQLAB_SHAKESPEARE"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
_SHARED_RELATIVE = Path("..") / "shared" / "data" / "tinyshakespeare.txt"
_REPO_ROOT = Path(__file__).resolve().parents[2]


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


EMBEDDED = ("pydoc", "code", "shakespeare")  # corpora named rather than given as a file

# Standard-library modules whose source text is the "code" corpus (about 0.5 M characters,
# as long as the reference manual); in a fixed order so the corpus is the same every time.
CODE_MODULES = ("json.decoder", "json.encoder", "json.scanner", "string", "textwrap", "shlex", "bisect", "heapq",
                "fractions", "statistics", "calendar", "difflib", "dataclasses", "argparse")


def code_text() -> str:
    """The source of the modules in ``CODE_MODULES``, joined by blank lines."""
    import importlib
    import inspect

    sources = []
    for name in CODE_MODULES:
        try:
            sources.append(inspect.getsource(importlib.import_module(name)))
        except (OSError, TypeError) as e:  # a Python installed without its .py files
            fail(f"standard-library module {name}", "its source file (for the 'code' corpus)", f"none ({e})")
    return "\n\n".join(sources)


@dataclass(frozen=True)
class Corpus:
    """A corpus and how run.json names it: ``source`` is "pydoc", "shakespeare" or the file's
    absolute path; ``name`` a short label (the file's name)."""

    source: str
    name: str
    text: str

    def info(self) -> dict:
        return {"source": self.source, "name": self.name}


def load_corpus(source: str | os.PathLike | None = None) -> Corpus:
    """A corpus: ``None`` or ``"pydoc"`` (the embedded default), ``"code"``, ``"shakespeare"`` (see
    ``shakespeare_path``) or the path of a UTF-8 text file."""
    if source is None or source == "pydoc":
        return Corpus("pydoc", "pydoc", pydoc_text())
    if source == "code":
        return Corpus("code", "code", code_text())
    if source == "shakespeare":
        return Corpus("shakespeare", "shakespeare", read_text_file(shakespeare_path()))
    if not isinstance(source, (str, os.PathLike)):
        fail("text source", "None, 'pydoc', 'code', 'shakespeare' or a file path", type(source).__name__)
    path = Path(source).expanduser()
    return Corpus(str(path.resolve()), path.name, read_text_file(path))


def saved_corpus(saved: dict, text: str | os.PathLike | None = None) -> Corpus:
    """The corpus of a saved run (its run.json's data description): ``text`` if given again
    (a moved copy of the same file: resuming checks its sha256), else the saved source; a
    saved file that is gone is an error that says to pass --text."""
    source = text if text is not None else saved.get("source")
    if source is not None and source not in EMBEDDED and not Path(source).expanduser().exists():
        fail("run", f"its text file {str(source)!r}", "no such file (pass --text PATH)")
    return load_corpus(source)


@dataclass
class TextData:
    """A corpus and the dataset of windows made from it: what a language model's run trains on
    (``dataset`` has ``get_batch``, ``info()`` and the ``tokenizer``)."""

    corpus: Corpus
    dataset: Any

    @property
    def tokenizer(self) -> Any:
        return self.dataset.tokenizer

    def info(self) -> dict:
        return {**self.corpus.info(), **self.dataset.info()}
