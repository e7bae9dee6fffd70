"""The classifier fine-tuned from a BERT run (seqlab/llm/bert_classifier_family.py):
``seqlab finetune``, ``seqlab classify``, ``seqlab eval``, the registry, and the error paths.
(The BERT run it starts from: tests/llm/conftest.py.)"""

import json
from pathlib import Path

import pytest

import seqlab
from seqlab.cli import main
from seqlab.llm.bert import BERTClassifier
from seqlab.llm.bert_classifier_family import Accuracy, corpora, label_files
from seqlab.llm.tokenizers import CharTokenizer
from seqlab.runs import get_family
from seqlab.testing import one_line_error

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_runs"


@pytest.fixture(scope="module")
def default_classifier(bert_run, tmp_path_factory):
    """A 4-step classifier on the default corpora (the manual against standard-library code)."""
    result = seqlab.train("bert-classifier", base=str(bert_run), out=tmp_path_factory.mktemp("clf") / "run",
                          progress=False, max_steps=4, batch_size=4, eval_every=4, eval_batches=1, warmup_steps=1)
    return result


def test_finetune_and_classify(bert_run, tmp_path, capsys):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("aaaa abab aaa " * 200)
    b.write_text("cccc cdcd ccc " * 200)
    out = tmp_path / "clf"
    assert main(["finetune", str(bert_run), "--text", f"as={a}", "--text", f"cs={b}", "--max-steps", "30",
                 "--eval-every", "30", "--batch-size", "8", "--eval-batches", "2", "--lr", "3e-3", "--quiet",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"run {out}: validation loss (cross-entropy)" in printed
    assert "accuracy 1.000 over every val passage (" in printed and "(best checkpoint)" in printed
    assert main(["classify", str(out), "--text", "aaab abab"]) == 0
    rows = [r.split("\t") for r in capsys.readouterr().out.split("\n") if r]
    assert rows[0][0] == "as" and float(rows[0][1]) > 0.5 and {r[0] for r in rows} == {"as", "cs"}
    saved = json.loads((out / "run.json").read_text())["data"]
    assert saved["labels"] == ["as", "cs"] and saved["texts"] == {"as": str(a.resolve()), "cs": str(b.resolve())}
    assert saved["pretrained"].startswith(str(bert_run))
    assert main(["eval", str(out), "--split", "train", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == seqlab.evaluate(out, split="train").to_json()


def test_default_corpora_finetune_runs(default_classifier):
    result = default_classifier
    model, run = seqlab.load(result.run_dir)
    assert isinstance(model, BERTClassifier) and result.steps == 4
    assert run.extras["labels"] == ["manual", "code"] and run.config.num_classes == 2
    acc = seqlab.evaluate(result.run_dir)
    assert isinstance(acc, Accuracy) and acc.split == "val" and 0.0 <= acc.accuracy <= 1.0 and acc.passages > 0
    assert acc.table() == f"accuracy {acc.accuracy:.3f} over every val passage ({acc.passages})"
    assert json.loads((result.run_dir / "run.json").read_text())["data"]["texts"] is None  # the embedded corpora


def test_classify_bad_text(default_classifier):
    model, run = seqlab.load(default_classifier.run_dir)
    family = get_family("bert-classifier")
    probs = family.classify(model, run, "def f(x):\n    return x")
    assert [label for label, _ in probs] in (["manual", "code"], ["code", "manual"])
    assert sum(p for _, p in probs) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"text: expected a non-empty string, received ''"):
        family.classify(model, run, "")
    with pytest.raises(ValueError, match=r"received unknown characters '☃'"):
        family.classify(model, run, "a☃")


def test_the_family():
    family = get_family("bert-classifier")
    assert family.presets == {} and family.commands() == {"bert-classifier": {}}
    assert family.views == ("classify",) and family.sample_class is None
    assert family.data_options() == ("base", "text")


def test_label_files_and_corpora(tmp_path):
    assert label_files(()) is None
    assert label_files(["a=x.txt", "b=y.txt"]) == {"a": str((Path.cwd() / "x.txt").resolve()),
                                                 "b": str((Path.cwd() / "y.txt").resolve())}
    for items, message in [(["x"], r"^text: expected LABEL=PATH, received 'x'$"),
                           (["=x"], r"^text: expected LABEL=PATH, received '=x'$"),
                           (["a="], r"^text: expected LABEL=PATH, received 'a='$"),
                           (["a=x"], r"^text: expected at least two LABEL=PATH corpora, received 1$"),
                           (["a=x", "a=y"], r"^text: expected each label once, received 'a' twice$")]:
        with pytest.raises(ValueError, match=message):
            label_files(items)
    a = tmp_path / "a.txt"
    a.write_text("abc☃d")
    # a character tokenizer drops what its vocabulary lacks
    assert corpora({"a": str(a)}, CharTokenizer.from_text("abcd")) == {"a": "abcd"}


def test_bad_inputs(bert_run, tmp_path, capsys):
    def err(argv):
        return one_line_error(capsys, argv)

    assert "text: expected LABEL=PATH, received 'x'" in err(["finetune", str(bert_run), "--text", "x"])
    assert "text: expected at least two LABEL=PATH corpora, received 1" in err(
        ["finetune", str(bert_run), "--text", "x=y"])
    assert "expected an existing UTF-8 text file, received" in err(
        ["finetune", str(bert_run), "--text", f"a={tmp_path / 'missing.txt'}", "--text", f"b={tmp_path / 'b.txt'}"])
    assert "text: expected each label once, received 'a' twice" in err(
        ["finetune", str(bert_run), "--text", "a=x", "--text", "a=y"])
    assert "base: expected the run directory of a pretrained BERT (seqlab train bert), received nothing" in err(
        ["train", "bert-classifier", "--out", str(tmp_path / "x")])
    assert "--preset cpu-tiny: expected options listed by seqlab finetune --help" in err(
        ["finetune", str(bert_run), "--preset", "cpu-tiny"])  # a classifier's size is its base's
    gpt = LEGACY / "gpt"  # runs of other families
    assert "base: expected a bert run (seqlab train bert), received a 'gpt' run" in err(["train", "bert-classifier", "--base", str(gpt)])
    # (seqlab finetune on a gpt run is a gpt-finetune: tests/llm/test_adapt.py)
    assert "classify: expected a run of bert-classifier, received a 'gpt' run" in err(
        ["classify", str(gpt), "--text", "a"])
    assert "run family: expected 'bert-classifier', received 'gpt'" in err(
        ["finetune", str(bert_run), "--resume", str(gpt)])
    assert not (tmp_path / "x").exists()
