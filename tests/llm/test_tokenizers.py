"""Tokenizers: characters with special tokens, byte-level BPE, JSON save and load."""

import json
import random

import pytest
import torch

from seqlab.data.text import CharTokenizer, pydoc_text
from seqlab.llm.tokenizers import (
    BERT_SPECIAL_TOKENS,
    GPT_SPECIAL_TOKENS,
    BPETokenizer,
    CharLevelTokenizer,
    Tokenizer,
    tokenizer_from_json,
)

CORPUS = pydoc_text()[:50000]
HARD_TEXTS = [
    "",
    "hello world",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew\r\nlines\n\n\n",
    "naïve café, Straße, Œuvre — “quotes” … ½ €5",
    "日本語のテキストと中文",
    "emoji 😀👍🏽 and a family 👨‍👩‍👧 and flags 🇩🇪",
    "\x00\x01\x7f control bytes \u200b zero width",
    "[MASK] and <|endoftext|> as plain text",
]


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(CORPUS, vocab_size=600, special_tokens=GPT_SPECIAL_TOKENS + BERT_SPECIAL_TOKENS)


# --------------------------------------------------------------------------- characters


def test_char_tokenizer_layout_and_round_trip():
    tok = CharLevelTokenizer.from_text("hello world", BERT_SPECIAL_TOKENS)
    assert isinstance(tok, Tokenizer) and tok.kind == "char"
    assert tok.chars == " dehlorw" and tok.vocab_size == 8 + 5 == len(tok)
    assert tok.char_tokenizer == CharTokenizer(" dehlorw")
    # specials come after the characters, in the order given
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (8, 9, 10, 11, 12)
    assert tok.eos_id is None
    assert tok.special_tokens == BERT_SPECIAL_TOKENS
    assert tok.special_ids == {"[PAD]": 8, "[UNK]": 9, "[CLS]": 10, "[SEP]": 11, "[MASK]": 12}
    assert tok.token_id("[MASK]") == 12
    # characters keep CharTokenizer's ids
    assert tok.encode("hello") == CharTokenizer(" dehlorw").encode("hello") == [3, 2, 4, 4, 5]
    ids = tok.encode("[CLS]hello [MASK] world[SEP][PAD]", specials=True)
    assert ids == [10, 3, 2, 4, 4, 5, 0, 12, 0, 7, 5, 6, 4, 1, 11, 8]
    assert tok.decode(ids) == "[CLS]hello [MASK] world[SEP][PAD]"
    assert tok.decode(torch.tensor(ids)) == "[CLS]hello [MASK] world[SEP][PAD]"
    assert tok.decode([12, 12]) == "[MASK][MASK]"
    assert tok.encode("[MASK][MASK]", specials=True) == [12, 12]
    assert tok.encode("", specials=True) == [] and tok.decode([]) == ""


def test_char_special_literal_is_text_unless_asked():
    tok = CharLevelTokenizer.from_text("ab[MASK]", ["[MASK]"])
    # without specials=True the literal is six characters
    assert tok.encode("a[MASK]") == tok.char_tokenizer.encode("a[MASK]")
    assert len(tok.encode("a[MASK]")) == 7
    assert tok.encode("a[MASK]", specials=True) == [tok.char_tokenizer.encode("a")[0], tok.mask_id]
    # a special token in a tokenizer whose characters cannot spell it
    plain = CharLevelTokenizer.from_text("hello ", ["[MASK]"])
    with pytest.raises(ValueError, match=r"^text: expected characters from the tokenizer's 5-character vocabulary, "
                                         r"received unknown characters '\[', 'M', 'A', 'S', 'K', '\]'$"):
        plain.encode("hello [MASK]")
    assert plain.encode("hello [MASK]", specials=True)[-1] == plain.mask_id


def test_char_longest_special_wins_and_unknowns_listed_across_pieces():
    tok = CharLevelTokenizer.from_text("ab", ["<s>", "<s>>"])
    assert tok.encode("a<s>>b<s>", specials=True) == [0, tok.token_id("<s>>"), 1, tok.token_id("<s>")]
    with pytest.raises(ValueError, match=r"^prompt: expected characters .* received unknown characters 'x', 'y'$"):
        tok.encode("ax<s>by", name="prompt", specials=True)


def test_char_errors():
    tok = CharLevelTokenizer.from_text("abc", ["[PAD]"])
    with pytest.raises(ValueError, match=r"^text: expected characters from the tokenizer's 3-character vocabulary, "
                                         r"received unknown characters 'd'$"):
        tok.encode("abd")
    with pytest.raises(ValueError, match=r"^text: expected a str, received list$"):
        tok.encode(["a"])
    with pytest.raises(ValueError, match=r"^ids: expected integers in \[0, 3\], received 4$"):
        tok.decode([0, 3, 4])
    with pytest.raises(ValueError, match=r"^ids: expected integers in \[0, 3\], received -1$"):
        tok.decode([-1])
    with pytest.raises(ValueError, match=r"^ids: expected integers in \[0, 3\], received True$"):
        tok.decode([True])
    with pytest.raises(ValueError, match=r"^ids: expected a 1-D integer tensor, received shape \(1, 2\)"):
        tok.decode(torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match=r"^ids: expected a list of integer ids, received str$"):
        tok.decode("ab")
    with pytest.raises(ValueError, match=r"^special token: expected one of '\[PAD\]', received '\[MASK\]'$"):
        tok.token_id("[MASK]")
    with pytest.raises(ValueError, match=r"^special_tokens: expected distinct strings, received duplicates '\[PAD\]'$"):
        CharLevelTokenizer("abc", ["[PAD]", "[CLS]", "[PAD]"])
    with pytest.raises(ValueError, match=r"^special_tokens: expected non-empty strings, received '', 3$"):
        CharLevelTokenizer("abc", ["", 3])
    with pytest.raises(ValueError, match=r"^special_tokens: expected a list or tuple of strings, received '\[MASK\]'$"):
        CharLevelTokenizer("abc", "[MASK]")
    with pytest.raises(ValueError, match=r"^special_tokens: expected tokens that are not also characters of the "
                                         r"vocabulary, received 'a'$"):
        CharLevelTokenizer("abc", ["a"])
    with pytest.raises(ValueError, match=r"^text: expected a non-empty string, received an empty string$"):
        CharLevelTokenizer.from_text("")


def test_char_json_round_trip_and_legacy_format():
    tok = CharLevelTokenizer.from_text("naïve 😀 text\n", BERT_SPECIAL_TOKENS)
    again = tokenizer_from_json(tok.to_json())
    assert isinstance(again, CharLevelTokenizer) and again == tok and hash(again) == hash(tok)
    s = "[CLS]naïve 😀 text[MASK]\n"
    assert again.encode(s, specials=True) == tok.encode(s, specials=True)
    assert again.decode(tok.encode(s, specials=True)) == s
    obj = json.loads(tok.to_json())
    assert (obj["format"], obj["version"], obj["kind"]) == ("seqlab-tokenizer", 1, "char")
    assert obj["special_tokens"] == list(BERT_SPECIAL_TOKENS)
    assert CharLevelTokenizer.from_json(tok.to_json()) == tok
    # a char LM checkpoint's CharTokenizer JSON reads as a tokenizer without special tokens
    legacy = tokenizer_from_json(CharTokenizer("abc").to_json())
    assert isinstance(legacy, CharLevelTokenizer) and legacy.special_tokens == () and legacy.encode("cab") == [2, 0, 1]
    assert tok != CharLevelTokenizer.from_text("naïve 😀 text\n")


# --------------------------------------------------------------------------- byte-level BPE


def test_bpe_vocabulary(bpe):
    assert isinstance(bpe, Tokenizer) and bpe.kind == "bpe"
    assert bpe.vocab_size == 600 == len(bpe)
    # special tokens first, then the 256 bytes, then the merges
    assert bpe.special_tokens == GPT_SPECIAL_TOKENS + BERT_SPECIAL_TOKENS
    assert (bpe.eos_id, bpe.pad_id, bpe.unk_id, bpe.cls_id, bpe.sep_id, bpe.mask_id) == (0, 1, 2, 3, 4, 5)
    # frequent words of the corpus became single tokens (GPT-2's "Ġ" is the space byte)
    assert bpe.token_strings(bpe.encode(" the def return")) == ["Ġthe", "Ġdef", "Ġreturn"]
    # compression: fewer tokens than bytes, on the training text and on text it has not seen
    assert len(bpe.encode(CORPUS)) < 0.45 * len(CORPUS.encode("utf-8"))
    held_out = pydoc_text()[50000:60000]
    assert len(bpe.encode(held_out)) < 0.55 * len(held_out.encode("utf-8"))


@pytest.mark.parametrize("text", HARD_TEXTS)
def test_bpe_round_trip_any_text(bpe, text):
    ids = bpe.encode(text)
    assert all(isinstance(i, int) and 0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids) == text
    assert bpe.decode(bpe.encode(text, specials=True)) == text


def test_bpe_round_trip_random_unicode(bpe):
    rng = random.Random(0)
    alphabet = [chr(c) for c in range(0x20, 0x3000) if not 0xD800 <= c <= 0xDFFF] + ["😀", "🎉", "\n", "\t"]
    for _ in range(50):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        assert bpe.decode(bpe.encode(s)) == s


def test_bpe_special_tokens(bpe):
    s = "<|endoftext|>first [MASK] doc<|endoftext|>"
    ids = bpe.encode(s, specials=True)
    assert ids[0] == bpe.eos_id and ids[-1] == bpe.eos_id and bpe.mask_id in ids
    assert bpe.decode(ids) == s
    # without specials=True the literals are ordinary text: no special id appears
    plain = bpe.encode(s)
    assert not set(plain) & set(bpe.special_ids.values())
    assert bpe.decode(plain) == s and len(plain) > len(ids)


def test_bpe_json_round_trip_and_determinism(bpe):
    again = tokenizer_from_json(bpe.to_json())
    assert isinstance(again, BPETokenizer) and again == bpe
    for text in HARD_TEXTS + [pydoc_text()[60000:62000]]:
        assert again.encode(text) == bpe.encode(text)
        assert again.encode(text, specials=True) == bpe.encode(text, specials=True)
    assert again.special_ids == bpe.special_ids
    obj = json.loads(bpe.to_json())
    assert obj["kind"] == "bpe" and obj["tokenizer"]["model"]["type"] == "BPE"
    # training twice gives the same tokenizer
    assert BPETokenizer.train(CORPUS, vocab_size=600, special_tokens=GPT_SPECIAL_TOKENS + BERT_SPECIAL_TOKENS) == bpe
    assert BPETokenizer.from_json(bpe.to_json()) == bpe


def test_bpe_small_corpus_and_min_frequency():
    text = "abab abab abab xyz"
    tok = BPETokenizer.train(text, vocab_size=1000)
    assert tok.special_tokens == () and tok.mask_id is None
    assert 256 < tok.vocab_size < 1000  # only a few pairs occur twice
    assert tok.decode(tok.encode(text)) == text
    # min_frequency above every pair count: no merges, one token per byte
    bytes_only = BPETokenizer.train(text, vocab_size=1000, min_frequency=100)
    assert bytes_only.vocab_size == 256
    assert len(bytes_only.encode("héllo")) == len("héllo".encode("utf-8")) == 6
    assert len(tok.encode("abab")) < 4


def test_bpe_errors(bpe):
    with pytest.raises(ValueError, match=r"^vocab_size: expected an integer >= 258, received 257$"):
        BPETokenizer.train(CORPUS, vocab_size=257, special_tokens=["[PAD]", "[MASK]"])
    with pytest.raises(ValueError, match=r"^vocab_size: expected an integer >= 256, received 100$"):
        BPETokenizer.train(CORPUS, vocab_size=100)
    with pytest.raises(ValueError, match=r"^text: expected a non-empty string, received an empty string$"):
        BPETokenizer.train("", vocab_size=300)
    with pytest.raises(ValueError, match=r"^text: expected a str, received list$"):
        BPETokenizer.train(["abc"], vocab_size=300)
    with pytest.raises(ValueError, match=r"^min_frequency: expected an integer >= 1, received 0$"):
        BPETokenizer.train(CORPUS, vocab_size=300, min_frequency=0)
    with pytest.raises(ValueError, match=r"^special_tokens: expected distinct strings"):
        BPETokenizer.train(CORPUS, vocab_size=300, special_tokens=["[PAD]", "[PAD]"])
    with pytest.raises(ValueError, match=r"^ids: expected integers in \[0, 599\], received 600$"):
        bpe.decode([1, 600])
    with pytest.raises(ValueError, match=r"^prompt: expected a str, received bytes$"):
        bpe.encode(b"abc", name="prompt")
    with pytest.raises(ValueError, match=r"^hf_tokenizer: expected a tokenizers.Tokenizer, received str$"):
        BPETokenizer("not a tokenizer")


# --------------------------------------------------------------------------- JSON errors


def _bpe_json_with(bpe, **changes) -> str:
    obj = json.loads(bpe.to_json())
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = obj
        for p in parents:
            node = node[p]
        node[last] = value
    return json.dumps(obj)


def test_json_errors(bpe):
    char_json = json.loads(CharLevelTokenizer.from_text("abc", ["[MASK]"]).to_json())
    cases = [
        ("{not json", r"^tokenizer JSON: expected valid JSON, received text that does not parse"),
        ("[1, 2]", r"^tokenizer JSON: expected a JSON object, received list$"),
        (json.dumps({**char_json, "format": "other"}),
         r"^tokenizer JSON: expected format 'seqlab-tokenizer' \(or 'seqlab-char-tokenizer'\), received 'other'$"),
        (json.dumps({**char_json, "version": 2}), r"^tokenizer JSON: expected version 1, received 2$"),
        (json.dumps({**char_json, "kind": "wordpiece"}),
         r"^tokenizer JSON: expected kind 'char' or 'bpe', received 'wordpiece'$"),
        (json.dumps({k: v for k, v in char_json.items() if k != "special_tokens"}),
         r"^tokenizer JSON: expected a list of strings under 'special_tokens', received NoneType$"),
        (json.dumps({k: v for k, v in char_json.items() if k != "chars"}),
         r"^tokenizer JSON: expected a list of characters under 'chars', received NoneType$"),
        (json.dumps({**char_json, "chars": ["a", "a"]}), r"^chars: expected distinct characters, received duplicates 'a'$"),
        (_bpe_json_with(bpe, tokenizer="oops"),
         r"^tokenizer JSON: expected the Hugging Face tokenizer's JSON object under 'tokenizer', received str$"),
        (_bpe_json_with(bpe, tokenizer__model={"type": "Nope"}),
         r"^tokenizer JSON: expected a Hugging Face tokenizer under 'tokenizer', received one it cannot read"),
        (_bpe_json_with(bpe, tokenizer__pre_tokenizer={"type": "Whitespace"}),
         r"^hf_tokenizer: expected a byte-level BPE .* received model BPE, pre-tokenizer Whitespace, "
         r"decoder ByteLevel, normalizer none$"),
        (_bpe_json_with(bpe, special_tokens=["[MASK]"]),
         r"^tokenizer JSON: expected special_tokens matching the BPE's own \['<\|endoftext\|>', '\[PAD\]', "
         r"'\[UNK\]', '\[CLS\]', '\[SEP\]', '\[MASK\]'\], received \['\[MASK\]'\]$"),
    ]
    for text, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            tokenizer_from_json(text)
    with pytest.raises(ValueError, match=r"^tokenizer JSON: expected a str, received bytes$"):
        tokenizer_from_json(b"{}")
    with pytest.raises(ValueError, match=r"^tokenizer JSON: expected kind 'char', received 'bpe'$"):
        CharLevelTokenizer.from_json(bpe.to_json())
    with pytest.raises(ValueError, match=r"^tokenizer JSON: expected kind 'bpe', received 'char'$"):
        BPETokenizer.from_json(json.dumps(char_json))
