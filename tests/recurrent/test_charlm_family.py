"""The character model's family (seqlab/recurrent/charlm_family.py): its data (TokenDataset of a
CharTokenizer), the Hugging Face tokenizer.json it writes, sampling through the registry, and
run directories of seqlab 0.1 (their tokenizer format and data description)."""

import json
import shutil
from pathlib import Path

import pytest
import tokenizers

import seqlab
from seqlab.llm.tokenizers import CharTokenizer
from seqlab.recurrent.charlm import CharLM
from seqlab.recurrent.charlm_family import CharLMData
from seqlab.runs import get_family

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_runs"
TINY_TRAIN = dict(max_steps=2, eval_every=2, eval_batches=1, batch_size=4, warmup_steps=1, log_every=1)


def test_a_run_writes_a_hugging_face_tokenizer_and_describes_its_data(tmp_path):
    corpus = (LEGACY / "corpus.txt").read_text(encoding="utf-8")
    text = tmp_path / "corpus.txt"
    text.write_text(corpus, encoding="utf-8")
    result = seqlab.train("lstm", out=tmp_path / "run", progress=False, text=str(text), block_size=16,
                          hidden_size=8, **TINY_TRAIN)
    run = result.run_dir
    assert run == tmp_path / "run" and result.steps == 2
    data = json.loads((run / "run.json").read_text())["data"]
    assert (data["source"], data["name"]) == (str(text.resolve()), "corpus.txt")
    assert (data["tokenizer"], data["block_size"], data["val_fraction"]) == ("char", 16, 0.1)
    assert data["vocab_size"] == len(set(corpus)) and data["characters"] == len(corpus) == data["tokens"]
    assert len(data["sha256"]) == 64
    model, record = seqlab.load(run)
    tok = record.tokenizer
    assert isinstance(model, CharLM) and record.family == "charlm" and record.config.cell == "lstm"
    assert record.config.hidden_size == 8 and record.data == data
    assert tok == CharTokenizer.from_text(corpus) and model.config.vocab_size == tok.vocab_size
    assert record.checkpoint == run / "checkpoints" / "step-00000002"
    hf = tokenizers.Tokenizer.from_file(str(run / "checkpoints" / "step-00000002" / "tokenizer.json"))
    assert hf.encode(corpus).ids == tok.encode(corpus) and hf.decode(tok.encode(corpus)) == corpus


def test_the_family_and_its_variants():
    family = get_family("lstm")
    assert family is get_family("charlm") is get_family("gru") is get_family("rnn")
    assert family.commands() == {"rnn": {"cell": "rnn"}, "lstm": {"cell": "lstm"}, "gru": {"cell": "gru"}}
    assert family.variant_of({"cell": "gru", "hidden_size": 3}) == "gru"
    assert "cell" not in family.model_options("lstm") and "cell" in family.model_options()
    assert "vocab_size" not in family.model_options()  # set from the data
    assert family.data_options() == ("text", "block_size") and CharLMData() == CharLMData("pydoc", 64)
    assert family.train_defaults["max_steps"] == 3000 and family.default_preset == "cpu-small"


def test_an_older_run_loads_and_samples():
    """The LSTM run of seqlab 0.1: its tokenizer.json is {"format": "seqlab-char-tokenizer"}."""
    corpus = (LEGACY / "corpus.txt").read_text(encoding="utf-8")
    model, record = seqlab.load(LEGACY / "lstm")
    tok = record.tokenizer
    assert isinstance(tok, CharTokenizer) and tok.chars == "".join(sorted(set(corpus))) and tok.special_tokens == ()
    assert tok.decode(tok.encode(corpus)) == corpus
    assert model.config.vocab_size == tok.vocab_size
    text = seqlab.sample(LEGACY / "lstm", prompt="The", length=20, seed=0)
    assert len(text) == 20 and set(text) <= set(tok.chars)
    assert seqlab.sample(LEGACY / "lstm", prompt="The", length=20, seed=0) == text
    # what the sampler draws is CharLM.generate's, with the seed's generator
    ids = model.generate(tok.encode("The"), 20, temperature=0.8, seed=0)
    assert tok.decode(ids) == text


def test_an_older_run_resumes(tmp_path):
    """Its run.json describes the data in the older layout (kind "characters"): resuming
    compares the keys that say which data (sha256, vocabulary, windows) and writes today's
    description of the same data."""
    run = tmp_path / "lstm"
    shutil.copytree(LEGACY / "lstm", run)
    shutil.copy(LEGACY / "corpus.txt", tmp_path / "corpus.txt")
    saved = json.loads((run / "run.json").read_text())
    saved["data"]["source"] = str(tmp_path / "corpus.txt")  # the run was made elsewhere
    (run / "run.json").write_text(json.dumps(saved))
    result = seqlab.resume(run, progress=False, max_seconds=60.0)
    assert result.steps == 4  # the fixture was interrupted at step 2 of 4
    data = json.loads((run / "run.json").read_text())["data"]
    for key in ("source", "name", "sha256", "vocab_size", "block_size", "val_fraction", "characters"):
        assert data[key] == saved["data"][key], key
    assert data["kind"] == "tokens" and data["tokenizer"] == "char"
    _, record = seqlab.load(run)
    assert record.tokenizer == CharTokenizer.from_text((tmp_path / "corpus.txt").read_text(encoding="utf-8"))
    # a changed corpus is still refused (it is read with the run's own tokenizer: same vocabulary)
    (tmp_path / "corpus.txt").write_text("something else entirely, " * 40, encoding="utf-8")
    with pytest.raises(ValueError, match=r"^resume: expected the settings the run was started with .*received "
                                         r"different ones: data\.sha256: saved '[0-9a-f]{64}', new '[0-9a-f]{64}'$"):
        seqlab.resume(run, progress=False)
