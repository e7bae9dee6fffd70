"""Corpora: the embedded default, user files, tiny Shakespeare. (The character tokenizer is
tested in tests/llm/test_tokenizers.py, the dataset of windows in tests/data/test_tokens.py.)"""

from pathlib import Path

import pytest

import seqlab.data.text as text_mod
from seqlab.data.text import Corpus, TextData, load_corpus, pydoc_text, read_text_file, saved_corpus, shakespeare_path

# --------------------------------------------------------------------------- corpora


def test_default_corpus_is_pydoc_topics():
    from pydoc_data.topics import topics

    corpus = load_corpus(None)
    assert (corpus.source, corpus.name) == ("pydoc", "pydoc")
    text = corpus.text
    assert text == "\n\n".join(topics[k] for k in sorted(topics))
    assert load_corpus("pydoc") == corpus and pydoc_text() == text
    assert len(text) > 100_000
    assert corpus.info() == {"source": "pydoc", "name": "pydoc"}  # run.json names it, not its text


def test_code_corpus_is_the_source_of_the_standard_library_modules():
    import importlib
    import inspect

    from seqlab.data.text import CODE_MODULES

    corpus = load_corpus("code")
    assert (corpus.source, corpus.name) == ("code", "code")
    first = inspect.getsource(importlib.import_module(CODE_MODULES[0]))
    last = inspect.getsource(importlib.import_module(CODE_MODULES[-1]))
    assert corpus.text.startswith(first) and corpus.text.endswith(last)
    assert "def " in corpus.text and len(corpus.text) > 100_000


def test_user_text_file(tmp_path):
    f = tmp_path / "poem.txt"
    f.write_bytes("\ufeffline one\r\nline twö\n".encode("utf-8"))
    expected = Corpus(str(f.resolve()), "poem.txt", "line one\nline twö\n")
    assert load_corpus(str(f)) == expected
    assert load_corpus(f) == expected
    assert expected.info() == {"source": str(f.resolve()), "name": "poem.txt"}
    assert read_text_file(f) == "line one\nline twö\n"


def test_user_text_file_source_is_absolute(tmp_path, monkeypatch):
    """A relative path is saved as the absolute path, so a resume from elsewhere finds it."""
    (tmp_path / "poem.txt").write_text("abc\n")
    monkeypatch.chdir(tmp_path)
    corpus = load_corpus("poem.txt")
    assert corpus.source == str(tmp_path.resolve() / "poem.txt") and corpus.name == "poem.txt"


def test_text_file_errors(tmp_path):
    with pytest.raises(ValueError, match=r"text file: expected an existing UTF-8 text file, received .*missing.txt.* \(no such file\)"):
        load_corpus(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match=r"text file: expected a UTF-8 text file, received .* \(not a file\)"):
        load_corpus(str(tmp_path))
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt': expected UTF-8 text, received bytes that are not UTF-8 at byte offset 3"):
        load_corpus(str(latin))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.txt': expected some text, received an empty file"):
        load_corpus(str(empty))
    with pytest.raises(ValueError, match=r"text source: expected None, 'pydoc', 'code', 'shakespeare' or a file path, received int"):
        load_corpus(3)


def test_shakespeare_path_from_the_environment(tmp_path, monkeypatch):
    f = tmp_path / "input.txt"
    f.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    monkeypatch.setenv("SEQLAB_SHAKESPEARE", str(f))
    assert shakespeare_path() == f
    assert load_corpus("shakespeare") == Corpus("shakespeare", "shakespeare", f.read_text())
    monkeypatch.setenv("SEQLAB_SHAKESPEARE", str(tmp_path / "nope.txt"))
    with pytest.raises(ValueError, match=r"tiny Shakespeare \(\$SEQLAB_SHAKESPEARE\): expected an existing text file, received .*nope.txt.* \(no such file\)"):
        shakespeare_path()


def test_shakespeare_path_relative_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("SEQLAB_SHAKESPEARE", raising=False)
    monkeypatch.setattr(text_mod, "_REPO_ROOT", tmp_path / "elsewhere")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    target = tmp_path / "shared" / "data" / "tinyshakespeare.txt"
    target.write_text("ROMEO:\n")
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert shakespeare_path() == target.resolve()


def test_missing_shakespeare_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("SEQLAB_SHAKESPEARE", raising=False)
    monkeypatch.setattr(text_mod, "_REPO_ROOT", tmp_path / "repo")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as err:
        shakespeare_path()
    message = str(err.value)
    assert "\n" not in message
    assert "tinyshakespeare input.txt" in message and "--text PATH" in message and "SEQLAB_SHAKESPEARE" in message


def test_shared_shakespeare_if_present(shakespeare_path):
    import hashlib

    corpus = load_corpus(shakespeare_path)
    assert corpus.name == "tinyshakespeare.txt" and corpus.text.startswith("First Citizen:")
    assert hashlib.sha256(Path(shakespeare_path).read_bytes()).hexdigest() == text_mod.SHAKESPEARE_SHA256


# --------------------------------------------------------------------------- saved runs' corpora


def test_saved_corpus_reads_the_source_run_json_names(tmp_path):
    f = tmp_path / "corpus.txt"
    f.write_text("some text\n", encoding="utf-8")
    saved = load_corpus(f).info()
    assert saved_corpus(saved) == load_corpus(f)
    assert saved_corpus({"source": "pydoc", "name": "pydoc"}) == load_corpus("pydoc")
    assert saved_corpus({}).source == "pydoc"  # a description without a source: the embedded default


def test_saved_corpus_takes_a_moved_copy(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("some text\n", encoding="utf-8")
    saved = load_corpus(f).info()
    moved = tmp_path / "b.txt"
    f.rename(moved)
    with pytest.raises(ValueError, match=r"^run: expected its text file '.*a\.txt', received no such file "
                                         r"\(pass --text PATH\)$"):
        saved_corpus(saved)
    assert saved_corpus(saved, str(moved)) == Corpus(str(moved.resolve()), "b.txt", "some text\n")
    assert saved_corpus(saved, moved).text == "some text\n"  # a Path too
    with pytest.raises(ValueError, match=r"^run: expected its text file '.*c\.txt', received no such file"):
        saved_corpus(saved, str(tmp_path / "c.txt"))


def test_text_data_describes_corpus_and_windows():
    from seqlab.data.tokens import TokenDataset
    from seqlab.llm.tokenizers import CharTokenizer

    corpus = Corpus("pydoc", "pydoc", pydoc_text()[:2000])
    tok = CharTokenizer.from_text(corpus.text)
    data = TextData(corpus, TokenDataset.from_text(corpus.text, tok, 8))
    assert data.tokenizer is data.dataset.tokenizer and data.tokenizer == tok
    info = data.info()
    assert info == {"source": "pydoc", "name": "pydoc", **data.dataset.info()}
    assert info["block_size"] == 8 and info["characters"] == 2000 and info["tokenizer"] == "char"
