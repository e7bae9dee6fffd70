"""Character tokenizer, corpora and the character dataset."""

import json
from pathlib import Path

import pytest
import torch

import seqlab.data.text as text_mod
from seqlab.data.text import CharDataset, CharTokenizer, load_text, pydoc_text, read_text_file, shakespeare_path

# --------------------------------------------------------------------------- tokenizer


def test_tokenizer_vocabulary_and_round_trip():
    tok = CharTokenizer.from_text("hello, world\n")
    assert tok.chars == "\n ,dehlorw" and tok.vocab_size == 10 and len(tok) == 10
    ids = tok.encode("hello")
    assert ids == [5, 4, 6, 6, 7]
    assert tok.decode(ids) == "hello"
    assert tok.decode(torch.tensor(ids)) == "hello"
    assert tok.decode([]) == "" and tok.encode("") == []
    again = CharTokenizer.from_json(tok.to_json())
    assert again == tok and again.chars == tok.chars and hash(again) == hash(tok)
    unicode = CharTokenizer.from_text("naïve €5 — \t😀")
    assert CharTokenizer.from_json(unicode.to_json()).decode(unicode.encode("😀 naïve")) == "😀 naïve"


def test_unknown_characters_are_listed():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"^prompt: expected characters from the tokenizer's 3-character vocabulary, received unknown characters 'é', '€'$"):
        tok.encode("abéc€é", name="prompt")
    with pytest.raises(ValueError, match=r"^text: expected characters from the tokenizer's 3-character vocabulary, received unknown characters 'd'$"):
        tok.encode("dad")
    with pytest.raises(ValueError, match=r"and 2 more"):
        tok.encode("0123456789xy")
    with pytest.raises(ValueError, match=r"text: expected a str, received list"):
        tok.encode(["a"])


def test_decode_errors():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"ids: expected integers in \[0, 2\], received 3"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match=r"ids: expected integers in \[0, 2\], received -1"):
        tok.decode([-1])
    with pytest.raises(ValueError, match=r"ids: expected integers in \[0, 2\], received 1.0"):
        tok.decode([1.0])
    with pytest.raises(ValueError, match=r"ids: expected a 1-D integer tensor, received shape \(2,\), dtype torch.float32"):
        tok.decode(torch.tensor([0.0, 1.0]))


def test_tokenizer_construction_errors():
    with pytest.raises(ValueError, match=r"chars: expected distinct characters, received duplicates 'a'"):
        CharTokenizer(["a", "b", "a"])
    with pytest.raises(ValueError, match=r"chars: expected single characters, received 'ab'"):
        CharTokenizer(["ab", "c"])
    with pytest.raises(ValueError, match=r"chars: expected at least one character, received an empty vocabulary"):
        CharTokenizer("")
    with pytest.raises(ValueError, match=r"text: expected a non-empty string, received an empty string"):
        CharTokenizer.from_text("")


@pytest.mark.parametrize(
    "payload, message",
    [
        ("{not json", r"tokenizer JSON: expected valid JSON, received text that does not parse"),
        (json.dumps([1, 2]), r"tokenizer JSON: expected format 'seqlab-char-tokenizer', received 'list'"),
        (json.dumps({"format": "bpe"}), r"tokenizer JSON: expected format 'seqlab-char-tokenizer', received 'bpe'"),
        (json.dumps({"format": "seqlab-char-tokenizer", "version": 2, "chars": ["a"]}),
         r"tokenizer JSON: expected version 1, received 2"),
        (json.dumps({"format": "seqlab-char-tokenizer", "version": 1, "chars": "ab"}),
         r"tokenizer JSON: expected a list of characters under 'chars', received str"),
        (json.dumps({"format": "seqlab-char-tokenizer", "version": 1, "chars": ["a", "a"]}),
         r"chars: expected distinct characters, received duplicates 'a'"),
    ],
)
def test_tokenizer_from_json_validates(payload, message):
    with pytest.raises(ValueError, match=message):
        CharTokenizer.from_json(payload)


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


# --------------------------------------------------------------------------- dataset


TEXT = "".join(chr(ord("a") + (i * 7) % 26) for i in range(1000))


def test_ninety_ten_split_like_nanogpt():
    ds = CharDataset(TEXT, block_size=8)
    ids = torch.tensor(ds.tokenizer.encode(TEXT))
    n = len(TEXT)
    assert torch.equal(ds.train_data, ids[: int(n * 0.9)]) and ds.train_data.numel() == 900
    assert torch.equal(ds.val_data, ids[int(n * 0.9):]) and ds.val_data.numel() == 100
    assert ds.vocab_size == 26 and ds.tokenizer == CharTokenizer.from_text(TEXT)
    info = ds.info()
    assert info["characters"] == 1000 and info["train_characters"] == 900 and info["val_characters"] == 100
    assert json.loads(json.dumps(info)) == info
    odd = CharDataset("x" * 1001, block_size=4, val_fraction=0.25)
    assert odd.train_data.numel() == int(1001 * 0.75) and odd.val_data.numel() == 1001 - int(1001 * 0.75)


def test_get_batch_windows_and_targets():
    ds = CharDataset(TEXT, block_size=16)
    g = torch.Generator().manual_seed(0)
    for split, data in (("train", ds.train_data), ("val", ds.val_data)):
        x, y = ds.get_batch(split, 32, g)
        assert x.shape == y.shape == (32, 16) and x.dtype == y.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
        windows = data.unfold(0, 17, 1)
        for row_x, row_y in zip(x, y):
            full = torch.cat([row_x, row_y[-1:]])
            assert (windows == full).all(dim=1).any()  # a real window of this split
    a = ds.get_batch("train", 4, torch.Generator().manual_seed(5))
    b = ds.get_batch("train", 4, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_every_start_position_is_reachable():
    ds = CharDataset("abcdefghijklmnopqrstuvwxyz" * 2, block_size=3, val_fraction=0.5)
    x, _ = ds.get_batch("train", 2000, torch.Generator().manual_seed(1))
    starts = {int(v) for v in x[:, 0]}
    assert starts == set(ds.train_data[: ds.train_data.numel() - 3].tolist())


def test_dataset_with_a_given_tokenizer():
    tok = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz!")
    ds = CharDataset(TEXT, block_size=4, tokenizer=tok)
    assert ds.vocab_size == 27 and ds.tokenizer is tok
    with pytest.raises(ValueError, match=r"text: expected characters from the tokenizer's 27-character vocabulary, received unknown characters 'Z'"):
        CharDataset(TEXT + "Z", block_size=4, tokenizer=tok)
    with pytest.raises(ValueError, match=r"tokenizer: expected a CharTokenizer or None, received str"):
        CharDataset(TEXT, block_size=4, tokenizer="abc")


def test_dataset_errors():
    with pytest.raises(ValueError, match=r"text: expected a non-empty string, received an empty string"):
        CharDataset("", block_size=4)
    with pytest.raises(ValueError, match=r"block_size: expected an integer >= 1, received 0"):
        CharDataset(TEXT, block_size=0)
    with pytest.raises(ValueError, match=r"val_fraction: expected a number < 1.0, received 1.0"):
        CharDataset(TEXT, block_size=4, val_fraction=1.0)
    with pytest.raises(ValueError, match=r"val_fraction: expected a number > 0.0, received 0.0"):
        CharDataset(TEXT, block_size=4, val_fraction=0.0)
    # 1000 characters: val holds 100, so block_size 100 needs 101.
    with pytest.raises(ValueError, match=r"val split: expected at least block_size \+ 1 = 101 characters, received 100 \(a text of 1000 characters with val_fraction 0.1\)"):
        CharDataset(TEXT, block_size=100)
    assert CharDataset(TEXT, block_size=99).val_data.numel() == 100
    with pytest.raises(ValueError, match=r"train split: expected at least block_size \+ 1 = 11 characters, received 6 \(a text of 12 characters"):
        CharDataset("abcdefghijkl", block_size=10, val_fraction=0.5)
    ds = CharDataset(TEXT, block_size=4)
    with pytest.raises(ValueError, match=r"split: expected one of 'train', 'val', received 'test'"):
        ds.get_batch("test", 2, torch.Generator())
    with pytest.raises(ValueError, match=r"batch_size: expected an integer >= 1, received 0"):
        ds.get_batch("train", 0, torch.Generator())
    with pytest.raises(ValueError, match=r"generator: expected a torch.Generator or None, received int"):
        ds.get_batch("train", 2, 42)
