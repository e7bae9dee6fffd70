"""GPT's family (seqlab/llm/gpt_family.py): runs through the registry (train, load, sample,
resume), its tokenizers, and the command line (train, sample, attention, --help)."""

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

import seqlab
from seqlab.cli import main
from seqlab.data.text import load_corpus
from seqlab.data.tokens import TokenDataset
from seqlab.llm.gpt import GPT
from seqlab.llm.gpt_family import GPTSampleOptions
from seqlab.runs import get_family

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_runs"
TRAIN = dict(max_steps=30, eval_every=15, eval_batches=2, batch_size=8, warmup_steps=5, log_every=5)


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    """A 20-step cpu-tiny GPT trained from the command line (its printed output kept)."""
    run = tmp_path_factory.mktemp("gpt") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", "gpt", "--preset", "cpu-tiny", "--max-steps", "20", "--eval-every", "10",
                     "--eval-batches", "2", "--batch-size", "4", "--quiet", "--out", str(run)]) == 0
    return run, printed.getvalue()


def _help(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse's line wrapping undone


def test_short_run_beats_the_unigram_baseline(tmp_path):
    result = seqlab.train("gpt", out=tmp_path / "r", progress=False, preset="cpu-tiny", block_size=32,
                          **{**TRAIN, "max_steps": 150, "eval_every": 150, "lr": 3e-3})
    # the unigram entropy of the training split's characters
    model, record = seqlab.load(result.run_dir)
    tok = record.tokenizer
    assert isinstance(model, GPT) and record.config.block_size == 32 and record.step == 150
    data = TokenDataset.from_text(load_corpus(None).text, tok, 32)
    counts = torch.bincount(data.train_data, minlength=tok.vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    unigram = float(-(p * p.log()).sum())
    assert result.best_val_loss < unigram - 0.3, (result.best_val_loss, unigram)


def test_bpe_run_saves_its_tokenizer_and_samples(tmp_path):
    corpus = LEGACY / "corpus.txt"
    result = seqlab.train("gpt", out=tmp_path / "r", progress=False, preset="cpu-tiny", tokenizer="bpe",
                          vocab_size=300, text=str(corpus), block_size=16, max_seconds=1e-9, **TRAIN)
    assert result.steps < 30
    first = seqlab.load(result.run_dir)[1].tokenizer
    # resuming fits no new tokenizer: the run's own reads the corpus again
    assert seqlab.resume(result.run_dir, progress=False).steps == 30
    model, record = seqlab.load(result.run_dir)
    tok = record.tokenizer
    assert type(tok).__name__ == "BPETokenizer" and tok.vocab_size == 300 == model.config.vocab_size and tok == first
    data = json.loads((result.run_dir / "run.json").read_text())["data"]
    assert data["tokenizer"] == "bpe" and data["vocab_size"] == 300 and data["name"] == "corpus.txt"
    text = seqlab.sample(result.run_dir, prompt="The ", length=20, seed=0)
    ids = model.generate(tok.encode("The "), 20, seed=0, temperature=0.8)
    assert len(ids) == 20 and tok.decode(ids) == text
    assert seqlab.sample(result.run_dir, prompt="The ", length=20, seed=0) == text  # the seed fixes the draw
    assert seqlab.sample(result.run_dir, prompt="The ", length=20, seed=0, cache=False) == text


def test_the_family():
    family = get_family("gpt")
    assert family.commands() == {"gpt": {}} and family.views == ("attention",)
    assert family.sample_class is GPTSampleOptions and GPTSampleOptions().cache is True
    assert family.data_options() == ("text", "tokenizer", "vocab_size")
    assert "vocab_size" not in family.model_options() and "block_size" in family.model_options()
    assert family.train_defaults["max_steps"] == 2000 and family.presets["cpu-small"]["d_model"] == 128
    assert family.legacy_weights == {"w_e": "w_x", "w_out": "w_o"}


def test_train_help_shows_only_gpt_options(capsys):
    out = _help(capsys, ["train", "gpt"])
    assert "--d-model D_MODEL D, width of the token embeddings and of every block (default: 128)" in out
    assert "--max-steps MAX_STEPS number of optimizer steps of the whole run (default: 2000)" in out
    assert "--tokenizer TOKENIZER char (the corpus's characters) or bpe" in out and "(default: char)" in out
    assert "--vocab-size VOCAB_SIZE with bpe, the vocabulary size to reach (default 512)" in out
    assert "(default: 0.001)" in out and "--no-tie-weights" in out and "(default: cpu-small)" in out
    for absent in ("--hidden-size", "--latent-size", "--cell", "--forget-bias", "--mask-id", "--cache"):
        assert absent not in out, absent


def test_cli_train_sample_attention_resume(gpt_run, tmp_path, capsys):
    run, printed = gpt_run
    assert f"run {run}: validation loss" in printed and "bits/token" in printed and "\nsample: " in printed
    assert json.loads((run / "run.json").read_text())["family"] == "gpt"

    assert main(["sample", str(run), "--prompt", "The", "--length", "30", "--top-p", "0.9", "--seed", "2"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("The")
    assert main(["sample", str(run), "--prompt", "The", "--length", "30", "--top-p", "0.9", "--seed", "2",
                 "--no-cache"]) == 0
    assert capsys.readouterr().out == first  # the cache changes nothing
    assert main(["sample", str(run), "--prompt", "The", "--length", "200", "--temperature", "0",
                 "--stop", "e"]) == 0
    assert "e" not in capsys.readouterr().out[len("The"):]  # stopped before the first "e"

    png = tmp_path / "att.png"
    assert main(["attention", str(run), "--text", "def f(x):", "--out", str(png)]) == 0
    assert png.stat().st_size > 1000 and "2 layers x 4 heads over 9 tokens" in capsys.readouterr().out
    assert main(["attention", str(run), "--text", "ab", "--json"]) == 0
    maps = json.loads(capsys.readouterr().out)
    w = torch.tensor(maps["weights"])  # (L, h, S, S)
    assert w.shape == (2, 4, 2, 2) and torch.all(w[..., 0, 1] == 0)  # causal: 0 above the diagonal
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 2))

    # resume to the same step count: nothing to do, the run is complete
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "20 steps" in capsys.readouterr().out
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before


def test_sample_help_lists_the_cache(gpt_run, capsys):
    out = _help(capsys, ["sample", str(gpt_run[0])])
    assert "gpt options" in out and "--cache, --no-cache keep the keys and values of the context" in out
    assert "--top-p TOP_P" in out and "--n N" not in out


def test_cli_bad_inputs(gpt_run, tmp_path, capsys):
    run, _ = gpt_run
    capsys.readouterr()
    before = sorted(p.name for p in (run / "checkpoints").iterdir())

    def err(argv):
        assert main(argv) == 2
        message = capsys.readouterr().err.strip()
        assert message.startswith("seqlab: error: ") and "\n" not in message, message
        return message

    assert "num_heads = 3" in err(["train", "gpt", "--num-heads", "3", "--out", str(tmp_path / "x")])
    assert "prompt: expected at least one character" in err(["sample", str(run), "--prompt", ""])
    assert "received unknown characters '☃'" in err(["sample", str(run), "--prompt", "☃"])
    assert "top_p: expected a number <= 1.0, received 1.5" in err(["sample", str(run), "--top-p", "1.5"])
    assert "top_p: expected a number > 0.0, received 0.0" in err(["sample", str(run), "--top-p", "0"])
    assert "temperature: expected a number >= 0.0, received -1.0" in err(["sample", str(run), "--temperature", "-1"])
    assert "text: expected a non-empty string" in err(["attention", str(run), "--text", ""])
    assert "expected at most block_size = 64 tokens, received 65" in err(["attention", str(run), "--text", "a" * 65])
    assert "--tokenizer bpe: expected options listed by seqlab train lstm --help" in err(
        ["train", "lstm", "--tokenizer", "bpe"])
    assert "--hidden-size 8: expected options listed by seqlab train gpt --help" in err(
        ["train", "gpt", "--hidden-size", "8"])
    assert "--n 4: expected options listed by seqlab sample RUN_DIR --help (a 'gpt' run)" in err(
        ["sample", str(run), "--n", "4"])
    assert "tokenizer: expected one of 'char', 'bpe', received 'words'" in err(
        ["train", "gpt", "--tokenizer", "words", "--out", str(tmp_path / "y")])
    assert "vocab_size: expected nothing with the char tokenizer" in err(
        ["train", "gpt", "--vocab-size", "300", "--out", str(tmp_path / "z")])
    assert "resume: expected no data options but text (the run's data are kept), received tokenizer" in err(
        ["train", "--resume", str(run), "--tokenizer", "bpe"])
    assert "model_config.block_size: saved 64, new 32" in err(["train", "--resume", str(run), "--block-size", "32"])
    # a run of another family
    lstm = LEGACY / "lstm"
    assert "attention: expected a run of bert, gpt, gpt-finetune or icl, received a 'charlm' run" in err(
        ["attention", str(lstm), "--text", "a"])
    assert "run family: expected 'gpt', received 'charlm'" in err(["train", "gpt", "--resume", str(lstm)])
    # nothing was written
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    assert not any((tmp_path / d).exists() for d in "xyz")
