"""TokenDataset: the nanoGPT split, windows y = x shifted by one, determinism, info, errors;
a character corpus (the recurrent character model's data)."""

import json

import pytest
import torch

from seqlab.data.tokens import TokenDataset
from seqlab.llm.tokenizers import BERT_SPECIAL_TOKENS, CharTokenizer


def test_split_sizes_and_contents():
    ids = list(range(100))
    ds = TokenDataset(ids, block_size=8, val_fraction=0.1)
    # n_train = int(n (1 - val_fraction)): the first 90 for training, the last 10 for validation
    assert ds.train_data.tolist() == list(range(90)) and ds.val_data.tolist() == list(range(90, 100))
    assert ds.n_tokens == 100 and ds.vocab_size == 100 and ds.block_size == 8
    assert ds.train_data.dtype == torch.int64
    odd = TokenDataset(torch.arange(37) % 5, block_size=3, val_fraction=0.3)
    assert odd.train_data.numel() == int(37 * 0.7) == 25 and odd.val_data.numel() == 12
    assert odd.vocab_size == 5  # max(ids) + 1
    assert torch.equal(odd.split("train"), odd.train_data) and torch.equal(odd.split("val"), odd.val_data)
    assert TokenDataset([0, 1, 2] * 10, 2, vocab_size=50).vocab_size == 50


def test_windows_are_shifted_by_one_and_come_from_their_split():
    ids = torch.arange(200)  # each id its own position: a window shows where it was cut
    ds = TokenDataset(ids, block_size=16, val_fraction=0.25)
    for split, lo, hi in (("train", 0, 150), ("val", 150, 200)):
        x, y = ds.get_batch(split, 64, torch.Generator().manual_seed(0))
        assert x.shape == y.shape == (64, 16) and x.dtype == y.dtype == torch.int64
        assert torch.equal(y[:, :-1], x[:, 1:])  # y_t = x_{t+1}
        assert torch.equal(y[:, -1], x[:, -1] + 1)
        assert torch.equal(x, x[:, :1] + torch.arange(16))  # contiguous windows
        # x = c[i : i+T], y = c[i+1 : i+T+1] inside the split
        assert int(x.min()) >= lo and int(y.max()) <= hi - 1
    # every start position can be drawn, including the last one that fits
    x, _ = ds.get_batch("val", 2000, torch.Generator().manual_seed(1))
    assert set(x[:, 0].tolist()) == set(range(150, 200 - 16))


def test_batches_are_deterministic_given_the_generator():
    ds = TokenDataset(torch.randint(7, (500,), generator=torch.Generator().manual_seed(0)), block_size=10)
    a = ds.get_batch("train", 8, torch.Generator().manual_seed(42))
    b = ds.get_batch("train", 8, torch.Generator().manual_seed(42))
    c = ds.get_batch("train", 8, torch.Generator().manual_seed(43))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    g = torch.Generator().manual_seed(42)
    first, second = ds.get_batch("train", 8, g), ds.get_batch("train", 8, g)
    assert torch.equal(first[0], a[0]) and not torch.equal(second[0], a[0])  # the generator advances


def test_from_text_and_info():
    text = "hello world, hello tokens. " * 20
    tok = CharTokenizer.from_text(text, BERT_SPECIAL_TOKENS)
    ds = TokenDataset.from_text(text, tok, block_size=12)
    assert ds.vocab_size == tok.vocab_size and ds.n_tokens == len(text)
    assert tok.decode(torch.cat([ds.train_data, ds.val_data])) == text
    info = ds.info()
    assert info == {"kind": "tokens", "tokenizer": "char", "tokens": len(text), "characters": len(text),
                    "sha256": ds.sha256, "vocab_size": tok.vocab_size, "block_size": 12, "val_fraction": 0.1,
                    "train_tokens": ds.train_data.numel(), "val_tokens": ds.val_data.numel()}
    json.dumps(info)
    assert len(ds.sha256) == 64 and ds.tokenizer is tok
    # literal special tokens become their ids only when asked
    marked = "ab[MASK]ab" * 10
    tok2 = CharTokenizer.from_text(marked, BERT_SPECIAL_TOKENS)
    plain = TokenDataset.from_text(marked, tok2, 4)
    special = TokenDataset.from_text(marked, tok2, 4, specials=True)
    assert plain.n_tokens == 100 and special.n_tokens == 50
    assert tok2.mask_id in special.train_data.tolist() and tok2.mask_id not in plain.train_data.tolist()
    # any tokenizer works (encode(text, name=...) and vocab_size); without a kind, its class name
    class Bytes:
        vocab_size = 256

        def encode(self, text, *, name="text"):
            return list(text.encode("utf-8"))

    assert TokenDataset.from_text(text, Bytes(), 8).info()["tokenizer"] == "Bytes"


@pytest.mark.parametrize("ids, kwargs, message", [
    ([], {}, r"ids: expected at least one token, received none"),
    ([0, -1, 2], {}, r"ids: expected token ids >= 0, received minimum -1"),
    ([0, 5] * 20, dict(vocab_size=5), r"ids: expected token ids in \[0, 4\] \(vocab_size 5\), received maximum 5"),
    (torch.zeros(2, 20, dtype=torch.long), {},
     r"ids: expected a 1-D integer tensor or a sequence of ints, received shape \(2, 20\), dtype torch.int64"),
    (torch.zeros(40), {},
     r"ids: expected a 1-D integer tensor or a sequence of ints, received shape \(40,\), dtype torch.float32"),
    ("abc", {}, r"ids: expected a 1-D integer tensor or a sequence of ints, received str"),
    ([0, 1.0, 2], {}, r"ids: expected integers, received 1.0"),
    ([0, True, 2], {}, r"ids: expected integers, received True"),
    (list(range(40)), dict(block_size=0), r"block_size: expected an integer >= 1, received 0"),
    (list(range(40)), dict(val_fraction=0.0), r"val_fraction: expected a number > 0.0, received 0.0"),
    (list(range(40)), dict(val_fraction=1.0), r"val_fraction: expected a number < 1.0, received 1.0"),
    (list(range(40)), dict(block_size=4),
     r"val split: expected at least block_size \+ 1 = 5 tokens, received 4 \(a corpus of 40 tokens with val_fraction 0.1\)"),
    (list(range(40)), dict(block_size=36, val_fraction=0.5),
     r"train split: expected at least block_size \+ 1 = 37 tokens, received 20"),
])
def test_bad_input(ids, kwargs, message):
    args = dict(block_size=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        TokenDataset(ids, **args)


def test_bad_batch_requests_and_text():
    ds = TokenDataset(list(range(50)), 4)
    with pytest.raises(ValueError, match=r"split: expected one of 'train', 'val', received 'test'"):
        ds.get_batch("test", 2)
    with pytest.raises(ValueError, match=r"batch_size: expected an integer >= 1, received 0"):
        ds.get_batch("train", 0)
    with pytest.raises(ValueError, match=r"generator: expected a torch.Generator or None, received int"):
        ds.get_batch("train", 2, 7)
    tok = CharTokenizer("ab")
    with pytest.raises(ValueError, match=r"text: expected a non-empty string, received an empty string"):
        TokenDataset.from_text("", tok, 2)
    with pytest.raises(ValueError, match=r"text: expected a str, received bytes"):
        TokenDataset.from_text(b"ab", tok, 2)
    with pytest.raises(ValueError, match=r"tokenizer: expected a tokenizer \(encode\(text\) and vocab_size\), "
                                         r"received str"):
        TokenDataset.from_text("abab", "ab", 2)
    with pytest.raises(ValueError, match=r"text: expected characters from the tokenizer's 2-character vocabulary, "
                                         r"received unknown characters 'c'"):
        TokenDataset.from_text("abcab" * 10, tok, 2)


# --------------------------------------------------------------------------- a character corpus


TEXT = "".join(chr(ord("a") + (i * 7) % 26) for i in range(1000))


def chars(text: str, block_size: int, **kwargs) -> TokenDataset:
    """``text`` as the character model reads it: its characters' ids."""
    return TokenDataset.from_text(text, CharTokenizer.from_text(text), block_size, **kwargs)


def test_character_corpus_ninety_ten_split_like_nanogpt():
    ds = chars(TEXT, block_size=8)
    ids = torch.tensor(ds.tokenizer.encode(TEXT))
    n = len(TEXT)
    assert torch.equal(ds.train_data, ids[: int(n * 0.9)]) and ds.train_data.numel() == 900
    assert torch.equal(ds.val_data, ids[int(n * 0.9):]) and ds.val_data.numel() == 100
    assert ds.vocab_size == 26 and ds.tokenizer == CharTokenizer.from_text(TEXT)
    info = ds.info()
    assert info["characters"] == 1000 and info["train_tokens"] == 900 and info["val_tokens"] == 100
    assert (info["tokenizer"], info["vocab_size"], info["block_size"], info["val_fraction"]) == ("char", 26, 8, 0.1)
    assert info["sha256"] == ds.sha256 and len(ds.sha256) == 64
    assert json.loads(json.dumps(info)) == info
    odd = chars("x" * 1001, block_size=4, val_fraction=0.25)
    assert odd.train_data.numel() == int(1001 * 0.75) and odd.val_data.numel() == 1001 - int(1001 * 0.75)


def test_character_windows_and_targets():
    ds = chars(TEXT, block_size=16)
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


def test_every_character_start_position_is_reachable():
    ds = chars("abcdefghijklmnopqrstuvwxyz" * 2, block_size=3, val_fraction=0.5)
    x, _ = ds.get_batch("train", 2000, torch.Generator().manual_seed(1))
    starts = {int(v) for v in x[:, 0]}
    assert starts == set(ds.train_data[: ds.train_data.numel() - 3].tolist())


def test_character_corpus_with_a_given_tokenizer():
    tok = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz!")
    ds = TokenDataset.from_text(TEXT, tok, 4)
    assert ds.vocab_size == 27 and ds.tokenizer is tok
    with pytest.raises(ValueError, match=r"text: expected characters from the tokenizer's 27-character vocabulary, received unknown characters 'Z'"):
        TokenDataset.from_text(TEXT + "Z", tok, 4)
    with pytest.raises(ValueError, match=r"tokenizer: expected a tokenizer \(encode\(text\) and vocab_size\), received str"):
        TokenDataset.from_text(TEXT, "abc", 4)


def test_character_corpus_errors():
    with pytest.raises(ValueError, match=r"text: expected a non-empty string, received an empty string"):
        TokenDataset.from_text("", CharTokenizer("ab"), 4)
    with pytest.raises(ValueError, match=r"block_size: expected an integer >= 1, received 0"):
        chars(TEXT, block_size=0)
    with pytest.raises(ValueError, match=r"val_fraction: expected a number < 1.0, received 1.0"):
        chars(TEXT, block_size=4, val_fraction=1.0)
    with pytest.raises(ValueError, match=r"val_fraction: expected a number > 0.0, received 0.0"):
        chars(TEXT, block_size=4, val_fraction=0.0)
    # 1000 characters: val holds 100, so block_size 100 needs 101.
    with pytest.raises(ValueError, match=r"val split: expected at least block_size \+ 1 = 101 tokens, received 100 \(a corpus of 1000 tokens with val_fraction 0.1\)"):
        chars(TEXT, block_size=100)
    assert chars(TEXT, block_size=99).val_data.numel() == 100
    with pytest.raises(ValueError, match=r"train split: expected at least block_size \+ 1 = 11 tokens, received 6 \(a corpus of 12 tokens"):
        chars("abcdefghijkl", block_size=10, val_fraction=0.5)
    ds = chars(TEXT, block_size=4)
    with pytest.raises(ValueError, match=r"split: expected one of 'train', 'val', received 'test'"):
        ds.get_batch("test", 2, torch.Generator())
    with pytest.raises(ValueError, match=r"batch_size: expected an integer >= 1, received 0"):
        ds.get_batch("train", 0, torch.Generator())
    with pytest.raises(ValueError, match=r"generator: expected a torch.Generator or None, received int"):
        ds.get_batch("train", 2, 42)
