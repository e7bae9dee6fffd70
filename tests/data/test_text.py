"""Corpora: the embedded default, user files, tiny Shakespeare. (The character tokenizer is
tested in tests/llm/test_tokenizers.py, the dataset of windows in tests/data/test_tokens.py.)"""

from pathlib import Path

import pytest

import seqlab.data.text as text_mod
from seqlab.data.text import load_text, pydoc_text, read_text_file, shakespeare_path

# --------------------------------------------------------------------------- corpora


def test_default_corpus_is_pydoc_topics():
    from pydoc_data.topics import topics

    name, text = load_text(None)
    assert name == "pydoc"
    assert text == "\n\n".join(topics[k] for k in sorted(topics))
    assert load_text("pydoc") == (name, text) and pydoc_text() == text
    assert len(text) > 100_000


def test_user_text_file(tmp_path):
    f = tmp_path / "poem.txt"
    f.write_bytes("\ufeffline one\r\nline twö\n".encode("utf-8"))
    assert load_text(str(f)) == ("poem.txt", "line one\nline twö\n")
    assert load_text(f) == ("poem.txt", "line one\nline twö\n")
    assert read_text_file(f) == "line one\nline twö\n"


def test_text_file_errors(tmp_path):
    with pytest.raises(ValueError, match=r"text file: expected an existing UTF-8 text file, received .*missing.txt.* \(no such file\)"):
        load_text(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match=r"text file: expected a UTF-8 text file, received .* \(not a file\)"):
        load_text(str(tmp_path))
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt': expected UTF-8 text, received bytes that are not UTF-8 at byte offset 3"):
        load_text(str(latin))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.txt': expected some text, received an empty file"):
        load_text(str(empty))
    with pytest.raises(ValueError, match=r"text source: expected None, 'pydoc', 'shakespeare' or a file path, received int"):
        load_text(3)


def test_shakespeare_path_from_the_environment(tmp_path, monkeypatch):
    f = tmp_path / "input.txt"
    f.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    monkeypatch.setenv("SEQLAB_SHAKESPEARE", str(f))
    assert shakespeare_path() == f
    assert load_text("shakespeare") == ("shakespeare", f.read_text())
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

    name, text = load_text(shakespeare_path)
    assert name == "tinyshakespeare.txt" and text.startswith("First Citizen:")
    assert hashlib.sha256(Path(shakespeare_path).read_bytes()).hexdigest() == text_mod.SHAKESPEARE_SHA256
