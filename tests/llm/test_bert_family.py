"""BERT's family (seqlab/llm/bert_family.py) through the registry and the command line:
train, fill, attention, eval, resume, and its error paths. (The classifier fine-tuned from a
BERT run: tests/llm/test_bert_classifier_family.py; the shared run: tests/llm/conftest.py.)"""

import json
from pathlib import Path

import pytest
import torch

import seqlab
from seqlab.cli import main
from seqlab.llm.bert import masked_accuracy
from seqlab.llm.bert_family import FILL_EXAMPLES, MaskedAccuracy, MaskedEvaluation, format_fill
from seqlab.llm.tokenizers import BERT_SPECIAL_TOKENS
from seqlab.runs import get_family
from seqlab.testing import one_line_error

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_runs"
SMALL = ["--block-size", "32", "--num-layers", "2", "--d-model", "32", "--num-heads", "4", "--batch-size", "8",
         "--eval-batches", "2", "--quiet"]  # as the shared run's (tests/llm/conftest.py)


def test_train_writes_a_bert_run_with_its_tokenizer(bert_run_printed, capsys):
    bert_run, printed = bert_run_printed
    saved = json.loads((bert_run / "run.json").read_text())
    assert saved["family"] == "bert" and saved["model_config"]["block_size"] == 32
    assert f"run {bert_run}: validation loss" in printed and "masked-token accuracy" in printed
    assert repr(FILL_EXAMPLES[0]) + "\n  [MASK] 1: " in printed  # the report: fillers of the examples
    model, record = seqlab.load(bert_run)
    tok = record.tokenizer
    assert tok.mask_id == model.config.mask_id and tok.special_tokens[:5] == BERT_SPECIAL_TOKENS
    assert (model.config.pad_id, model.config.cls_id) == (tok.pad_id, tok.cls_id)
    # resume to the same step count: nothing to do
    before = sorted(p.name for p in (bert_run / "checkpoints").iterdir())
    assert main(["train", "--resume", str(bert_run), "--quiet"]) == 0
    assert "validation loss" in capsys.readouterr().out
    assert sorted(p.name for p in (bert_run / "checkpoints").iterdir()) == before


def test_the_family():
    family = get_family("bert")
    assert family.sample_class is None and family.evaluate_class is MaskedEvaluation
    assert family.views == ("attention", "fill") and family.commands() == {"bert": {}}
    assert set(family.data_fields) == {"vocab_size", "mask_id", "pad_id", "cls_id"}
    assert not set(family.data_fields) & set(family.model_options())


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
    model, record = seqlab.load(bert_run)
    fill = get_family("bert").fill(model, record, "a[MASK]c", 5)
    assert out == format_fill("a[MASK]c", fill) + "\n"


def test_bert_attention_is_bidirectional(bert_run, capsys):
    assert main(["attention", str(bert_run), "--text", "abc", "--json"]) == 0
    maps = json.loads(capsys.readouterr().out)
    w = torch.tensor(maps["weights"])  # (L, h, S, S); [CLS] is put in front
    assert maps["tokens"][0] == "[CLS]" and w.shape == (2, 4, 4, 4)
    assert torch.all(w[..., 0, 1:] > 0)  # the first position sees later ones: no causal mask
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 4))


def test_eval_is_the_masked_accuracy(bert_run, capsys):
    assert main(["eval", str(bert_run), "--batches", "3", "--batch-size", "4", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    result = seqlab.evaluate(bert_run, batches=3, batch_size=4)
    assert isinstance(result, MaskedAccuracy) and printed == result.to_json()
    model, record = seqlab.load(bert_run)
    data = get_family("bert").data_from_run(record, {})
    assert printed == masked_accuracy(model, data.dataset, batches=3, batch_size=4, seed=1234)
    assert 0 < printed["masked"] and 0.0 <= printed["accuracy"] <= 1.0
    assert main(["eval", str(bert_run), "--batches", "3", "--batch-size", "4"]) == 0
    assert capsys.readouterr().out.startswith(f"masked-token accuracy {result.accuracy:.3f} over ")
    with pytest.raises(SystemExit):
        main(["eval", str(bert_run), "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "bert options" in out and "--batches BATCHES held-out batches of masked windows (1 to 100,000) (default: 50)" in out


def test_bad_inputs(bert_run, tmp_path, capsys):
    def err(argv):
        return one_line_error(capsys, argv)

    assert "text: expected at least one [MASK] token" in err(["fill", str(bert_run), "no mask here"])
    assert "received unknown characters '☃'" in err(["fill", str(bert_run), "☃[MASK]"])
    assert "at most block_size = 32 tokens with [CLS], received 41 tokens" in err(
        ["fill", str(bert_run), "a" * 39 + "[MASK]"])
    assert "top_k: expected an integer >= 1, received 0" in err(["fill", str(bert_run), "a[MASK]", "--top-k", "0"])
    assert "received a 'bert' run (use seqlab fill for a 'bert' run)" in err(["sample", str(bert_run)])
    # an option given to a run that cannot sample: the reason comes first, not the option
    assert "sample: expected a run of a family that samples" in err(["sample", str(bert_run), "--prompt", "a"])
    assert "batches: expected an integer >= 1, received 0" in err(["eval", str(bert_run), "--batches", "0"])
    assert "--split val: expected options listed by seqlab eval RUN_DIR --help (a 'bert' run)" in err(
        ["eval", str(bert_run), "--split", "val"])  # a classifier's option
    assert "num_heads = 3" in err(["train", "bert", "--num-heads", "3", "--out", str(tmp_path / "x")])
    gpt = LEGACY / "gpt"  # a run of another family
    assert "fill: expected a run of bert, received a 'gpt' run" in err(["fill", str(gpt), "a[MASK]"])
    assert "run family: expected 'bert', received 'gpt'" in err(["train", "bert", "--resume", str(gpt)])
    # a run whose text file is gone: resuming says to pass --text
    moved = tmp_path / "corpus.txt"
    moved.write_text("some text for a tiny model, long enough to split into windows. " * 40)
    run = tmp_path / "bert_file"
    assert main(["train", "bert", *SMALL, "--max-steps", "2", "--eval-every", "2", "--text", str(moved),
                 "--out", str(run)]) == 0
    capsys.readouterr()
    moved.unlink()
    assert "run: expected its text file" in err(["train", "--resume", str(run), "--max-steps", "4"])
    assert "(pass --text PATH)" in err(["eval", str(run)])
    assert not (tmp_path / "x").exists()
