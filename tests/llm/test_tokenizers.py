"""Tokenizers: characters with special tokens, byte-level BPE, JSON save and load (the
Hugging Face format, and the formats of older run directories)."""

import json
import random
from pathlib import Path

import pytest
import tokenizers
import torch

from seqlab.data.text import pydoc_text
from seqlab.llm.tokenizers import (
    BERT_SPECIAL_TOKENS,
    GPT_SPECIAL_TOKENS,
    BPETokenizer,
    CharTokenizer,
    DEFAULT_BPE_VOCAB,
    Tokenizer,
    fit_tokenizer,
    tokenizer_from_json,
)

LEGACY_RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_runs"

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
    tok = CharTokenizer.from_text("hello world", BERT_SPECIAL_TOKENS)
    assert isinstance(tok, Tokenizer) and tok.kind == "char"
    assert tok.chars == " dehlorw" and tok.vocab_size == 8 + 5 == len(tok)
    assert tok == CharTokenizer(" dehlorw", BERT_SPECIAL_TOKENS) and tok != CharTokenizer(" dehlorw")
    # specials come after the characters, in the order given
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (8, 9, 10, 11, 12)
    assert tok.eos_id is None
    assert tok.special_tokens == BERT_SPECIAL_TOKENS
    assert tok.special_ids == {"[PAD]": 8, "[UNK]": 9, "[CLS]": 10, "[SEP]": 11, "[MASK]": 12}
    assert tok.token_id("[MASK]") == 12
    # characters keep the ids they have without special tokens
    assert tok.encode("hello") == CharTokenizer(" dehlorw").encode("hello") == [3, 2, 4, 4, 5]
    ids = tok.encode("[CLS]hello [MASK] world[SEP][PAD]", specials=True)
    assert ids == [10, 3, 2, 4, 4, 5, 0, 12, 0, 7, 5, 6, 4, 1, 11, 8]
    assert tok.decode(ids) == "[CLS]hello [MASK] world[SEP][PAD]"
    assert tok.decode(torch.tensor(ids)) == "[CLS]hello [MASK] world[SEP][PAD]"
    assert tok.decode([12, 12]) == "[MASK][MASK]"
    assert tok.encode("[MASK][MASK]", specials=True) == [12, 12]
    assert tok.encode("", specials=True) == [] and tok.decode([]) == ""


def test_char_special_literal_is_text_unless_asked():
    tok = CharTokenizer.from_text("ab[MASK]", ["[MASK]"])
    # without specials=True the literal is six characters
    assert tok.encode("a[MASK]") == CharTokenizer(tok.chars).encode("a[MASK]")
    assert len(tok.encode("a[MASK]")) == 7
    assert tok.encode("a[MASK]", specials=True) == [CharTokenizer(tok.chars).encode("a")[0], tok.mask_id]
    # a special token in a tokenizer whose characters cannot spell it
    plain = CharTokenizer.from_text("hello ", ["[MASK]"])
    with pytest.raises(ValueError, match=r"^text: expected characters from the tokenizer's 5-character vocabulary, "
                                         r"received unknown characters '\[', 'M', 'A', 'S', 'K', '\]'$"):
        plain.encode("hello [MASK]")
    assert plain.encode("hello [MASK]", specials=True)[-1] == plain.mask_id


def test_char_longest_special_wins_and_unknowns_listed_across_pieces():
    tok = CharTokenizer.from_text("ab", ["<s>", "<s>>"])
    assert tok.encode("a<s>>b<s>", specials=True) == [0, tok.token_id("<s>>"), 1, tok.token_id("<s>")]
    with pytest.raises(ValueError, match=r"^prompt: expected characters .* received unknown characters 'x', 'y'$"):
        tok.encode("ax<s>by", name="prompt", specials=True)


def test_char_errors():
    tok = CharTokenizer.from_text("abc", ["[PAD]"])
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
        CharTokenizer("abc", ["[PAD]", "[CLS]", "[PAD]"])
    with pytest.raises(ValueError, match=r"^special_tokens: expected non-empty strings, received '', 3$"):
        CharTokenizer("abc", ["", 3])
    with pytest.raises(ValueError, match=r"^special_tokens: expected a list or tuple of strings, received '\[MASK\]'$"):
        CharTokenizer("abc", "[MASK]")
    with pytest.raises(ValueError, match=r"^special_tokens: expected tokens that are not also characters of the "
                                         r"vocabulary, received 'a'$"):
        CharTokenizer("abc", ["a"])
    with pytest.raises(ValueError, match=r"^text: expected a non-empty string, received an empty string$"):
        CharTokenizer.from_text("")


def test_char_vocabulary_and_round_trip_without_specials():
    tok = CharTokenizer.from_text("hello, world\n")
    assert tok.chars == "\n ,dehlorw" and tok.vocab_size == 10 and len(tok) == 10
    assert tok.special_tokens == () and tok.special_ids == {} and tok.mask_id is None
    ids = tok.encode("hello")
    assert ids == [5, 4, 6, 6, 7]
    assert tok.decode(ids) == "hello"
    assert tok.decode(torch.tensor(ids)) == "hello"
    assert tok.decode([]) == "" and tok.encode("") == []
    again = CharTokenizer.from_json(tok.to_json())
    assert again == tok and again.chars == tok.chars and hash(again) == hash(tok)
    unicode = CharTokenizer.from_text("naïve €5 — \t😀")
    assert CharTokenizer.from_json(unicode.to_json()).decode(unicode.encode("😀 naïve")) == "😀 naïve"
    # the characters keep the order given (from_text sorts them)
    assert CharTokenizer("cab").encode("abc") == [1, 2, 0] and CharTokenizer(["c", "a"]).chars == "ca"
    assert repr(tok) == "CharTokenizer(vocab_size=10, special_tokens=())"


def test_char_unknown_characters_are_listed():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"^prompt: expected characters from the tokenizer's 3-character vocabulary, received unknown characters 'é', '€'$"):
        tok.encode("abéc€é", name="prompt")
    with pytest.raises(ValueError, match=r"^text: expected characters from the tokenizer's 3-character vocabulary, received unknown characters 'd'$"):
        tok.encode("dad")
    with pytest.raises(ValueError, match=r"and 2 more"):
        tok.encode("0123456789xy")
    with pytest.raises(ValueError, match=r"text: expected a str, received list"):
        tok.encode(["a"])


def test_char_decode_errors():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"ids: expected integers in \[0, 2\], received 3"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match=r"ids: expected integers in \[0, 2\], received -1"):
        tok.decode([-1])
    with pytest.raises(ValueError, match=r"ids: expected integers in \[0, 2\], received 1.0"):
        tok.decode([1.0])
    with pytest.raises(ValueError, match=r"ids: expected a 1-D integer tensor, received shape \(2,\), dtype torch.float32"):
        tok.decode(torch.tensor([0.0, 1.0]))


def test_char_construction_errors():
    with pytest.raises(ValueError, match=r"chars: expected distinct characters, received duplicates 'a'"):
        CharTokenizer(["a", "b", "a"])
    with pytest.raises(ValueError, match=r"chars: expected single characters, received 'ab'"):
        CharTokenizer(["ab", "c"])
    with pytest.raises(ValueError, match=r"chars: expected at least one character, received an empty vocabulary"):
        CharTokenizer("")
    with pytest.raises(ValueError, match=r"^chars: expected a string or a list of single characters, received set$"):
        CharTokenizer({"a"})
    with pytest.raises(ValueError, match=r"text: expected a non-empty string, received an empty string"):
        CharTokenizer.from_text("")
    with pytest.raises(ValueError, match=r"^text: expected a str, received bytes$"):
        CharTokenizer.from_text(b"abc")


def test_char_json_round_trip_and_legacy_format():
    tok = CharTokenizer.from_text("naïve 😀 text\n", BERT_SPECIAL_TOKENS)
    again = tokenizer_from_json(tok.to_json())
    assert isinstance(again, CharTokenizer) and again == tok and hash(again) == hash(tok)
    s = "[CLS]naïve 😀 text[MASK]\n"
    assert again.encode(s, specials=True) == tok.encode(s, specials=True)
    assert again.decode(tok.encode(s, specials=True)) == s
    # the JSON is Hugging Face's: a WordLevel vocabulary of the characters then the special
    # tokens, the special tokens as special added tokens at the same ids
    obj = json.loads(tok.to_json())
    assert "format" not in obj and obj["model"]["type"] == "WordLevel"
    assert obj["model"]["vocab"] == {**{c: i for i, c in enumerate(tok.chars)}, **tok.special_ids}
    assert [(t["id"], t["content"], t["special"]) for t in obj["added_tokens"]] == \
        [(i, t, True) for t, i in tok.special_ids.items()]
    assert obj["pre_tokenizer"] == {"type": "Split", "pattern": {"Regex": r"[\s\S]"}, "behavior": "Isolated",
                                    "invert": False}
    assert obj["decoder"] == {"type": "Fuse"} and obj["normalizer"] is None and obj["post_processor"] is None
    assert CharTokenizer.from_json(tok.to_json()) == tok
    assert CharTokenizer.from_hf(tok.to_hf()) == tok
    # a char LM checkpoint's JSON of older runs reads as a tokenizer without special tokens
    legacy = tokenizer_from_json(json.dumps({"format": "seqlab-char-tokenizer", "version": 1, "chars": ["a", "b", "c"]}))
    assert isinstance(legacy, CharTokenizer) and legacy.special_tokens == () and legacy.encode("cab") == [2, 0, 1]
    assert legacy == CharTokenizer("abc")
    # and the GPT/BERT format of older runs, with its special tokens
    old = tokenizer_from_json(json.dumps({"format": "seqlab-tokenizer", "version": 1, "kind": "char",
                                          "special_tokens": list(BERT_SPECIAL_TOKENS), "chars": list(tok.chars)}))
    assert old == tok
    assert tok != CharTokenizer.from_text("naïve 😀 text\n")


# --------------------------------------------------------------------------- Hugging Face tokenizers

# plain text the library must split exactly as seqlab does: newlines (also several in a
# row), tabs, runs of spaces, "\r\n", non-ASCII letters, combining marks, emoji sequences
HF_TEXTS = [t for t in HARD_TEXTS if "[MASK]" not in t] + [
    "\n", "\n\n\n", " ", "a\r\n\r\nb", "e\u0301 vs \u00e9", "x\u2028y\u2029z\x85", pydoc_text()[:3000],
]


def _hf_from_file(tok: Tokenizer, path: Path) -> tokenizers.Tokenizer:
    path.write_text(tok.to_json(), encoding="utf-8")
    hf = tokenizers.Tokenizer.from_file(str(path))
    assert hf.to_str() == tokenizers.Tokenizer.from_str(tok.to_json()).to_str()
    return hf


def test_char_tokenizer_json_is_read_by_hugging_face_tokenizers(tmp_path):
    tok = CharTokenizer.from_text("".join(HF_TEXTS) + "[]", BERT_SPECIAL_TOKENS)
    hf = _hf_from_file(tok, tmp_path / "tokenizer.json")
    assert hf.get_vocab_size() == tok.vocab_size
    for text in HF_TEXTS:
        ids = tok.encode(text)
        assert hf.encode(text).ids == ids
        assert hf.decode(ids) == text
    # the library finds special tokens in text (seqlab does when asked: specials=True) and
    # keeps them when decoding if asked not to skip them
    s = "[CLS]naïve\n[MASK]\t text[SEP][PAD]"
    ids = tok.encode(s, specials=True)
    assert hf.encode(s).ids == ids and tok.mask_id in ids
    assert hf.decode(ids, skip_special_tokens=False) == tok.decode(ids) == s
    assert hf.decode(ids) == "naïve\n\t text"  # the library's default skips them
    assert [hf.id_to_token(i) for i in range(tok.vocab_size)] == list(tok.chars) + list(BERT_SPECIAL_TOKENS)
    # an unknown character: seqlab names it; the library maps it to [UNK] (its unk_token)
    assert hf.encode("a☃b").ids == [tok.encode("a")[0], tok.unk_id, tok.encode("b")[0]]
    # without [UNK] the library refuses an unknown character too
    plain = CharTokenizer.from_text("abc\n")
    hf_plain = tokenizers.Tokenizer.from_str(plain.to_json())
    assert hf_plain.encode("cab\n\n").ids == plain.encode("cab\n\n") == [3, 1, 2, 0, 0]
    with pytest.raises(Exception, match="Missing \\[UNK\\] token"):
        hf_plain.encode("abd")
    # the library's tokenizer read back is the same seqlab tokenizer
    assert CharTokenizer.from_hf(hf) == tok and tokenizer_from_json(hf.to_str()) == tok
    assert tokenizer_from_json(Path(tmp_path / "tokenizer.json").read_text(encoding="utf-8")) == tok


def test_bpe_tokenizer_json_is_read_by_hugging_face_tokenizers(bpe, tmp_path):
    hf = _hf_from_file(bpe, tmp_path / "tokenizer.json")
    assert hf.get_vocab_size() == bpe.vocab_size
    for text in HARD_TEXTS + HF_TEXTS:
        assert hf.encode(text).ids == bpe.encode(text, specials=True)
        assert hf.decode(bpe.encode(text, specials=True), skip_special_tokens=False) == text
        if not set(bpe.special_tokens) & set(hf.encode(text).tokens):
            assert hf.encode(text).ids == bpe.encode(text) and hf.decode(bpe.encode(text)) == text
    obj = json.loads(bpe.to_json())
    assert "format" not in obj and obj["model"]["type"] == "BPE"
    assert [(t["id"], t["content"], t["special"]) for t in obj["added_tokens"]] == \
        [(i, t, True) for t, i in bpe.special_ids.items()]
    again = tokenizer_from_json((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    assert isinstance(again, BPETokenizer) and again == bpe
    assert BPETokenizer(bpe.to_hf()) == bpe and bpe.to_hf() is not bpe.hf_tokenizer


# --------------------------------------------------------------------------- older run directories


def _legacy(run: str) -> str:
    return (LEGACY_RUNS / run / "checkpoints" / "step-00000002" / "tokenizer.json").read_text(encoding="utf-8")


@pytest.mark.parametrize("run, specials", [
    ("lstm", ()), ("gpt", ()), ("bert", BERT_SPECIAL_TOKENS), ("bert-classifier", BERT_SPECIAL_TOKENS),
])
def test_legacy_char_tokenizer_files(run, specials, tmp_path):
    corpus = (LEGACY_RUNS / "corpus.txt").read_text(encoding="utf-8")
    legacy = json.loads(_legacy(run))
    assert legacy["format"] == ("seqlab-char-tokenizer" if run == "lstm" else "seqlab-tokenizer")
    tok = tokenizer_from_json(_legacy(run))
    assert isinstance(tok, CharTokenizer) and tok.special_tokens == specials
    chars = "".join(sorted(set(corpus)))
    assert tok.chars == chars and tok.vocab_size == len(chars) + len(specials)
    ids = tok.encode(corpus)
    assert ids == [chars.index(c) for c in corpus] and tok.decode(ids) == corpus
    assert tok.special_ids == {t: len(chars) + k for k, t in enumerate(specials)}
    assert CharTokenizer.from_json(_legacy(run)) == tok
    # written again, it is a Hugging Face file with the same ids
    hf = _hf_from_file(tok, tmp_path / "tokenizer.json")
    assert hf.encode(corpus).ids == ids and hf.decode(ids) == corpus
    assert tokenizer_from_json(tok.to_json()) == tok


def test_legacy_bpe_tokenizer_file(tmp_path):
    corpus = (LEGACY_RUNS / "corpus.txt").read_text(encoding="utf-8")
    legacy = json.loads(_legacy("gpt-bpe"))
    assert (legacy["format"], legacy["kind"]) == ("seqlab-tokenizer", "bpe")
    tok = tokenizer_from_json(_legacy("gpt-bpe"))
    assert isinstance(tok, BPETokenizer) and tok.special_tokens == () and tok.vocab_size == 300
    ids = tok.encode(corpus)
    assert len(ids) < len(corpus.encode("utf-8")) and tok.decode(ids) == corpus
    assert BPETokenizer.from_json(_legacy("gpt-bpe")) == tok
    # the old file held the library's JSON under "tokenizer": the new file is that JSON
    assert json.loads(tok.to_json()) == legacy["tokenizer"]
    hf = _hf_from_file(tok, tmp_path / "tokenizer.json")
    assert hf.encode(corpus).ids == ids and hf.decode(ids) == corpus
    assert tokenizer_from_json(tok.to_json()) == tok


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
    assert obj["model"]["type"] == "BPE" and obj["pre_tokenizer"]["type"] == "ByteLevel"
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


def _json_with(obj: dict, **changes) -> str:
    """``obj`` (copied) with ``a__b=value`` setting obj["a"]["b"]."""
    obj = json.loads(json.dumps(obj))
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = obj
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value
    return json.dumps(obj)


def test_json_errors(bpe):
    char_json = json.loads(CharTokenizer.from_text("abc", ["[MASK]"]).to_json())
    bpe_json = json.loads(bpe.to_json())
    char_vocab = char_json["model"]["vocab"]
    cases = [
        ("{not json", r"^tokenizer JSON: expected valid JSON, received text that does not parse"),
        ("[1, 2]", r"^tokenizer JSON: expected a JSON object, received list$"),
        (json.dumps({**char_json, "format": "other"}),
         r"^tokenizer JSON: expected a Hugging Face tokenizer \(an object with a 'model'\), or the format "
         r"'seqlab-tokenizer' or 'seqlab-char-tokenizer' of older runs, received format 'other'$"),
        (json.dumps({k: v for k, v in char_json.items() if k != "model"}),
         r"^tokenizer JSON: expected a Hugging Face tokenizer .* received an object without 'model'$"),
        (_json_with(char_json, model__type="Unigram"),
         r"^tokenizer JSON: expected model type 'WordLevel' \(char\) or 'BPE' \(bpe\), received 'Unigram'$"),
        (_json_with(char_json, model__vocab="oops"),
         r"^tokenizer JSON: expected a Hugging Face tokenizer, received one it cannot read"),
        # a character tokenizer: the pieces to_json writes, and nothing else
        (_json_with(char_json, pre_tokenizer={"type": "Split", "pattern": {"Regex": "."}, "behavior": "Isolated",
                                              "invert": False}),
         r"^hf_tokenizer: expected a character tokenizer \(model WordLevel, Split pre-tokenizer on '\[\\\\s\\\\S\]' "
         r"isolated, Fuse decoder, no normalizer, no post-processor\), received model WordLevel, pre-tokenizer "
         r"Split, decoder Fuse, normalizer none$"),
        (_json_with(char_json, decoder=None), r"^hf_tokenizer: expected a character tokenizer .* decoder none, "),
        (_json_with(char_json, normalizer={"type": "Lowercase"}),
         r"^hf_tokenizer: expected a character tokenizer .* normalizer Lowercase$"),
        (_json_with(char_json, model__vocab={**char_vocab, "ab": 3, "[MASK]": 4}, added_tokens__0__id=4),
         r"^hf_tokenizer: expected single characters before the special tokens, received 'ab'$"),
        (_json_with(char_json, model__vocab={"[MASK]": 0, "a": 1, "b": 2, "c": 3}, added_tokens__0__id=0),
         r"^hf_tokenizer: expected the special tokens at the last ids of the vocabulary, received '\[MASK\]' at 0$"),
        (_json_with(char_json, model__vocab={"a": 0, "b": 1, "c": 5, "[MASK]": 3}, added_tokens__0__id=3),
         r"^hf_tokenizer: expected a WordLevel vocabulary with ids 0..3, received '\[MASK\]' at 3$"),
        (_json_with(char_json, added_tokens__0__special=False),
         r"^hf_tokenizer: expected special added tokens only, received non-special added tokens '\[MASK\]'$"),
        (_json_with(bpe_json, pre_tokenizer={"type": "Whitespace"}),
         r"^hf_tokenizer: expected a byte-level BPE .* received model BPE, pre-tokenizer Whitespace, "
         r"decoder ByteLevel, normalizer none$"),
    ]
    for text, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            tokenizer_from_json(text)
    with pytest.raises(ValueError, match=r"^tokenizer JSON: expected a str, received bytes$"):
        tokenizer_from_json(b"{}")
    with pytest.raises(ValueError, match=r"^tokenizer JSON: expected kind 'char', received 'bpe'$"):
        CharTokenizer.from_json(bpe.to_json())
    with pytest.raises(ValueError, match=r"^tokenizer JSON: expected kind 'bpe', received 'char'$"):
        BPETokenizer.from_json(json.dumps(char_json))
    with pytest.raises(ValueError, match=r"^hf_tokenizer: expected a tokenizers.Tokenizer, received str$"):
        CharTokenizer.from_hf("not a tokenizer")


def test_legacy_json_errors(bpe):
    """The formats of older run directories are checked as before."""
    legacy_char = {"format": "seqlab-tokenizer", "version": 1, "kind": "char", "special_tokens": ["[MASK]"],
                   "chars": ["a", "b", "c"]}
    legacy_bpe = {"format": "seqlab-tokenizer", "version": 1, "kind": "bpe",
                  "special_tokens": list(bpe.special_tokens), "tokenizer": json.loads(bpe.to_json())}
    assert tokenizer_from_json(json.dumps(legacy_char)) == CharTokenizer("abc", ["[MASK]"])
    assert tokenizer_from_json(json.dumps(legacy_bpe)) == bpe
    cases = [
        (json.dumps({**legacy_char, "version": 2}), r"^tokenizer JSON: expected version 1, received 2$"),
        (json.dumps({**legacy_char, "kind": "wordpiece"}),
         r"^tokenizer JSON: expected kind 'char' or 'bpe', received 'wordpiece'$"),
        (json.dumps({k: v for k, v in legacy_char.items() if k != "special_tokens"}),
         r"^tokenizer JSON: expected a list of strings under 'special_tokens', received NoneType$"),
        (json.dumps({k: v for k, v in legacy_char.items() if k != "chars"}),
         r"^tokenizer JSON: expected a list of characters under 'chars', received NoneType$"),
        (json.dumps({**legacy_char, "chars": ["a", "a"]}), r"^chars: expected distinct characters, received duplicates 'a'$"),
        (_json_with(legacy_bpe, tokenizer="oops"),
         r"^tokenizer JSON: expected the Hugging Face tokenizer's JSON object under 'tokenizer', received str$"),
        (_json_with(legacy_bpe, tokenizer__model={"type": "Nope"}),
         r"^tokenizer JSON: expected a Hugging Face tokenizer under 'tokenizer', received one it cannot read"),
        (_json_with(legacy_bpe, tokenizer__pre_tokenizer={"type": "Whitespace"}),
         r"^hf_tokenizer: expected a byte-level BPE .* received model BPE, pre-tokenizer Whitespace, "
         r"decoder ByteLevel, normalizer none$"),
        (_json_with(legacy_bpe, special_tokens=["[MASK]"]),
         r"^tokenizer JSON: expected special_tokens matching the BPE's own \['<\|endoftext\|>', '\[PAD\]', "
         r"'\[UNK\]', '\[CLS\]', '\[SEP\]', '\[MASK\]'\], received \['\[MASK\]'\]$"),
        # the recurrent character model's format
        (json.dumps({"format": "seqlab-char-tokenizer", "version": 2, "chars": ["a"]}),
         r"^tokenizer JSON: expected version 1, received 2$"),
        (json.dumps({"format": "seqlab-char-tokenizer", "version": 1, "chars": "ab"}),
         r"^tokenizer JSON: expected a list of characters under 'chars', received str$"),
        (json.dumps({"format": "seqlab-char-tokenizer", "version": 1, "chars": ["a", "a"]}),
         r"^chars: expected distinct characters, received duplicates 'a'$"),
        (json.dumps({"format": "bpe"}), r"^tokenizer JSON: expected a Hugging Face tokenizer .* received format 'bpe'$"),
    ]
    for text, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            tokenizer_from_json(text)
    with pytest.raises(ValueError, match=r"^tokenizer JSON: expected kind 'char', received 'bpe'$"):
        CharTokenizer.from_json(json.dumps(legacy_bpe))
    with pytest.raises(ValueError, match=r"^tokenizer JSON: expected kind 'bpe', received 'char'$"):
        BPETokenizer.from_json(json.dumps(legacy_char))


# --------------------------------------------------------------------------- fitting to a corpus


def test_fit_tokenizer():
    assert fit_tokenizer("char", "abca") == CharTokenizer.from_text("abca")
    bert = fit_tokenizer("char", "abca", special_tokens=BERT_SPECIAL_TOKENS)
    assert bert == CharTokenizer.from_text("abca", special_tokens=BERT_SPECIAL_TOKENS) and bert.mask_id is not None
    bpe = fit_tokenizer("bpe", CORPUS[:20000])
    assert isinstance(bpe, BPETokenizer) and DEFAULT_BPE_VOCAB == 512 == bpe.vocab_size
    small = fit_tokenizer("bpe", CORPUS[:5000], vocab_size=300, special_tokens=GPT_SPECIAL_TOKENS)
    assert small.vocab_size == 300 and small.special_tokens == GPT_SPECIAL_TOKENS


@pytest.mark.parametrize("kind, kwargs, message", [
    ("char", dict(vocab_size=100), r"^vocab_size: expected nothing with the char tokenizer \(its vocabulary is the "
                                   r"corpus's characters\), received 100$"),
    ("words", {}, r"^tokenizer: expected one of 'char', 'bpe', received 'words'$"),
    ("bpe", dict(vocab_size=100), r"^vocab_size: expected an integer >= 257, received 100$"),
    ("bpe", dict(vocab_size=300.0), r"^vocab_size: expected an integer, received 300.0$"),
])
def test_fit_tokenizer_errors(kind, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_tokenizer(kind, "abc", **kwargs)
