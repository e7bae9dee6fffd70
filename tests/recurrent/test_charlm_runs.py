"""Runs of the character model: its data (TokenDataset of a CharTokenizer), the Hugging Face
tokenizer.json it writes, and run directories of older versions (their tokenizer format and
data description)."""

import json
import shutil
from pathlib import Path

import pytest
import tokenizers

from seqlab.llm.tokenizers import CharTokenizer
from seqlab.recurrent import charlm_runs

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_runs"
TINY_TRAIN = dict(max_steps=2, eval_every=2, eval_batches=1, batch_size=4, warmup_steps=1, log_every=1)


def test_a_run_writes_a_hugging_face_tokenizer_and_describes_its_data(tmp_path):
    corpus = (LEGACY / "corpus.txt").read_text(encoding="utf-8")
    text = tmp_path / "corpus.txt"
    text.write_text(corpus, encoding="utf-8")
    _, run = charlm_runs.start("lstm", out=tmp_path / "run", progress=False, text=str(text), block_size=16,
                               model_options=dict(hidden_size=8), train_options=TINY_TRAIN)
    data = json.loads((run / "run.json").read_text())["data"]
    assert (data["tokenizer"], data["block_size"], data["val_fraction"]) == ("char", 16, 0.1)
    assert data["vocab_size"] == len(set(corpus)) and data["characters"] == len(corpus) == data["tokens"]
    assert len(data["sha256"]) == 64
    model, tok, _ = charlm_runs.load(run)
    assert tok == CharTokenizer.from_text(corpus) and model.config.vocab_size == tok.vocab_size
    hf = tokenizers.Tokenizer.from_file(str(run / "checkpoints" / "step-00000002" / "tokenizer.json"))
    assert hf.encode(corpus).ids == tok.encode(corpus) and hf.decode(tok.encode(corpus)) == corpus


def test_an_older_run_loads_and_samples():
    """The LSTM run of an older version: its tokenizer.json is {"format": "seqlab-char-tokenizer"}."""
    corpus = (LEGACY / "corpus.txt").read_text(encoding="utf-8")
    model, tok, _ = charlm_runs.load(LEGACY / "lstm")
    assert isinstance(tok, CharTokenizer) and tok.chars == "".join(sorted(set(corpus))) and tok.special_tokens == ()
    assert tok.decode(tok.encode(corpus)) == corpus
    assert model.config.vocab_size == tok.vocab_size
    text = charlm_runs.sample(LEGACY / "lstm", "The", length=20, seed=0)
    assert len(text) == 20 and set(text) <= set(tok.chars)
    assert charlm_runs.sample(LEGACY / "lstm", "The", length=20, seed=0) == text


def test_an_older_run_resumes(tmp_path):
    """Its run.json describes the data in the older layout (kind "characters"): resuming
    compares like with like."""
    run = tmp_path / "lstm"
    shutil.copytree(LEGACY / "lstm", run)
    shutil.copy(LEGACY / "corpus.txt", tmp_path / "corpus.txt")
    saved = json.loads((run / "run.json").read_text())
    saved["data"]["source"] = str(tmp_path / "corpus.txt")  # the run was made elsewhere
    (run / "run.json").write_text(json.dumps(saved))
    result, _ = charlm_runs.resume(run, progress=False, train_options=dict(max_seconds=60.0))
    assert result.steps == 2
    assert json.loads((run / "run.json").read_text())["data"] == saved["data"]
    _, tok, _ = charlm_runs.load(run)
    assert tok == CharTokenizer.from_text((tmp_path / "corpus.txt").read_text(encoding="utf-8"))
    # a changed corpus is still refused
    (tmp_path / "corpus.txt").write_text("something else entirely, " * 40, encoding="utf-8")
    with pytest.raises(ValueError, match=r"^resume: expected the settings the run was started with .*data\.sha256: "
                                         r".*data\.vocab_size: saved 62, new 14$"):
        charlm_runs.resume(run, progress=False)
