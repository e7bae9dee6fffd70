"""BERT runs from the command line: train, fill, attention, finetune, classify, resume."""

import json

import pytest
import torch

from seqlab.cli import main
from seqlab.llm import bert_runs

SMALL = ["--block-size", "32", "--num-layers", "2", "--d-model", "32", "--num-heads", "4", "--batch-size", "8",
         "--eval-batches", "2", "--quiet"]


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("bert") / "run"
    assert main(["train", "bert", *SMALL, "--max-steps", "40", "--eval-every", "20", "--out", str(run)]) == 0
    return run


def test_train_writes_a_bert_run_with_its_tokenizer(bert_run, capsys):
    saved = json.loads((bert_run / "run.json").read_text())
    assert saved["family"] == "bert" and saved["model_config"]["block_size"] == 32
    model, tok, _ = bert_runs.load_bert(bert_run)
    assert tok.mask_id == model.config.mask_id and tok.special_tokens[:5] == bert_runs.SPECIAL_TOKENS
    # resume to the same step count: nothing to do
    assert main(["train", "--resume", str(bert_run), "--quiet"]) == 0
    assert "validation loss" in capsys.readouterr().out


def test_fill_prints_top_k_with_probabilities(bert_run, capsys):
    assert main(["fill", str(bert_run), "The [MASK]ython [MASK]anguage", "--top-k", "4", "--json"]) == 0
    fillers = json.loads(capsys.readouterr().out)
    assert len(fillers) == 2 and all(len(f) == 4 for f in fillers)
    for options in fillers:
        probs = [o["probability"] for o in options]
        assert probs == sorted(probs, reverse=True) and 0 < probs[-1] and sum(probs) <= 1 + 1e-6
    assert main(["fill", str(bert_run), "a[MASK]c"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("'a[MASK]c'\n  [MASK] 1: ") and out.count("  ") >= 5


def test_bert_attention_is_bidirectional(bert_run, capsys):
    assert main(["attention", str(bert_run), "--text", "abc", "--json"]) == 0
    maps = json.loads(capsys.readouterr().out)
    w = torch.tensor(maps["weights"])  # (L, h, S, S); [CLS] is put in front
    assert maps["tokens"][0] == "[CLS]" and w.shape == (2, 4, 4, 4)
    assert torch.all(w[..., 0, 1:] > 0)  # the first position sees later ones: no causal mask
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 4))


def test_finetune_and_classify(bert_run, tmp_path, capsys):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("aaaa abab aaa " * 200)
    b.write_text("cccc cdcd ccc " * 200)
    out = tmp_path / "clf"
    assert main(["finetune", str(bert_run), "--text", f"as={a}", "--text", f"cs={b}", "--max-steps", "30",
                 "--eval-every", "30", "--batch-size", "8", "--eval-batches", "2", "--lr", "3e-3", "--quiet",
                 "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert "accuracy over every validation passage (best checkpoint) 1.000" in line
    assert main(["classify", str(out), "--text", "aaab abab"]) == 0
    rows = [r.split("\t") for r in capsys.readouterr().out.split("\n") if r]
    assert rows[0][0] == "as" and float(rows[0][1]) > 0.5 and {r[0] for r in rows} == {"as", "cs"}


def test_classify_bad_text(bert_run, tmp_path):
    _, run_dir, _ = bert_runs.start_classifier(
        bert_run, out=tmp_path / "clf", progress=False,
        train_options=dict(max_steps=1, batch_size=2, eval_every=1, eval_batches=1, warmup_steps=0))
    with pytest.raises(ValueError, match=r"text: expected a non-empty string, received ''"):
        bert_runs.classify(run_dir, "")
    with pytest.raises(ValueError, match=r"received unknown characters '☃'"):
        bert_runs.classify(run_dir, "a☃")


def test_default_corpora_finetune_runs(bert_run, tmp_path):
    result, run_dir, acc = bert_runs.start_classifier(
        bert_run, out=tmp_path / "clf", progress=False,
        train_options=dict(max_steps=4, batch_size=4, eval_every=4, eval_batches=1, warmup_steps=1))
    model, tok, labels = bert_runs.load_classifier(run_dir)
    assert labels == ["manual", "code"] and 0.0 <= acc <= 1.0 and result.steps == 4


def test_bad_inputs(bert_run, tmp_path, capsys):
    def err(argv):
        assert main(argv) == 2
        return capsys.readouterr().err

    assert "text: expected at least one [MASK] token" in err(["fill", str(bert_run), "no mask here"])
    assert "received unknown characters '☃'" in err(["fill", str(bert_run), "☃[MASK]"])
    assert "at most block_size = 32 tokens with [CLS], received 41 tokens" in err(
        ["fill", str(bert_run), "a" * 39 + "[MASK]"])
    assert "top_k: expected an integer >= 1, received 0" in err(["fill", str(bert_run), "a[MASK]", "--top-k", "0"])
    assert "received a 'bert' run (use seqlab fill for a bert run)" in err(["sample", str(bert_run)])
    assert "--text: expected LABEL=PATH, received 'x'" in err(["finetune", str(bert_run), "--text", "x"])
    assert "--text: expected at least two LABEL=PATH corpora, received 1" in err(
        ["finetune", str(bert_run), "--text", "x=y"])
    assert "num_heads = 3" in err(["train", "bert", "--num-heads", "3", "--out", str(tmp_path / "x")])
    assert "expected an existing UTF-8 text file, received" in err(
        ["finetune", str(bert_run), "--text", f"a={tmp_path / 'missing.txt'}", "--text", f"b={tmp_path / 'b.txt'}"])
    assert "--text: expected each label once, received 'a' twice" in err(
        ["finetune", str(bert_run), "--text", "a=x", "--text", "a=y"])
    gpt = tmp_path / "gpt"
    assert main(["train", "gpt", "--preset", "cpu-tiny", "--max-steps", "2", "--eval-every", "2", "--eval-batches",
                 "1", "--batch-size", "2", "--quiet", "--out", str(gpt), "--sample-length", "0"]) == 0
    capsys.readouterr()
    assert "checkpoint family: expected 'bert', received 'gpt'" in err(["fill", str(gpt), "a[MASK]"])
    assert "checkpoint family: expected 'bert', received 'gpt'" in err(["finetune", str(gpt)])
    assert "checkpoint family: expected 'bert-classifier', received 'gpt'" in err(["classify", str(gpt), "--text", "a"])
    # a run whose text file is gone: resuming says to pass --text
    moved = tmp_path / "corpus.txt"
    moved.write_text("some text for a tiny model, long enough to split into windows. " * 40)
    run = tmp_path / "bert_file"
    assert main(["train", "bert", *SMALL, "--max-steps", "2", "--eval-every", "2", "--text", str(moved),
                 "--out", str(run)]) == 0
    capsys.readouterr()
    moved.unlink()
    assert "resume: expected the run's text file" in err(["train", "--resume", str(run), "--max-steps", "4"])
    assert "run family: expected 'bert', received 'gpt'" in err(["train", "bert", "--resume", str(gpt)])
