"""The family registry (seqlab.runs): a family defined in one file inside the tests plugs
into training, resuming, loading, sampling and the command line by itself; bad input is one
line; run directories written by seqlab 0.1 still load (and resume)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import seqlab
from seqlab import runs
from seqlab.cli import main

import toy_family  # noqa: F401  (registers the family "toy-counter")

LEGACY = Path(__file__).parent / "fixtures" / "legacy_runs"


# --------------------------------------------------------------------------- a family from outside


def test_toy_family_through_the_command_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "toy-counter" in out and "lstm" in out
    with pytest.raises(SystemExit):
        main(["train", "toy-counter", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help to the terminal
    assert "--modulus MODULUS" in out and "(default: 10)" in out
    assert "--hidden-size HIDDEN_SIZE" in out and "(default: 8)" in out  # the default preset's value
    assert "--max-steps MAX_STEPS" in out and "(default: 60)" in out  # the family's training default
    assert "--modulus-of-data" in out
    assert "--nonlinearity" not in out and "--latent-size" not in out

    run_dir = tmp_path / "counter"
    # a run cut short by its wall-clock budget after one step, then resumed to its 120 steps
    assert main(["train", "toy-counter", "--out", str(run_dir), "--max-steps", "120", "--max-seconds", "1e-9",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"run {run_dir}" in out and " 1 steps" in out
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert "120 steps" in capsys.readouterr().out
    assert main(["sample", str(run_dir), "--start", "3", "--length", "4"]) == 0
    assert capsys.readouterr().out.strip() == "4 5 6 7"
    model, record = seqlab.load(run_dir)
    assert record.family == "toy-counter" and record.config.modulus == 10 and record.step == 120
    assert record.dir == run_dir and record.data == {"kind": "counting", "modulus": 10}
    assert not model.training


def test_toy_family_from_python(tmp_path):
    result = seqlab.train("toy-counter", out=tmp_path / "a", progress=False, preset="cpu-tiny", modulus=7,
                          max_steps=120, max_seconds=1e-9)
    assert result.run_dir == tmp_path / "a" and result.steps == 1 and result.last_val_loss is not None
    model, record = seqlab.load(result.run_dir)
    assert record.config.hidden_size == 4 and record.config.modulus == 7
    again = seqlab.resume(result.run_dir, progress=False)
    assert again.steps == 120 and again.best_val_loss < result.best_val_loss
    assert seqlab.sample(result.run_dir, start=5, length=3) == [6, 0, 1]


def test_resume_equals_an_uninterrupted_run(tmp_path):
    whole = seqlab.train("toy-counter", out=tmp_path / "whole", progress=False, max_steps=60)
    half = seqlab.train("toy-counter", out=tmp_path / "half", progress=False, max_steps=60, max_seconds=1e-9)
    assert half.steps < 60
    rest = seqlab.resume(tmp_path / "half", progress=False)
    assert rest.steps == 60
    train = [(r["step"], r["loss"]) for r in rest.history if r["split"] == "train"]
    assert train == [(r["step"], r["loss"]) for r in whole.history if r["split"] == "train"]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, message", [
    (lambda: seqlab.train("no-such-family"), "family: expected one of"),
    (lambda: seqlab.train("toy-counter", no_such_option=1), "unknown no_such_option"),
    (lambda: seqlab.train("lstm", cell="gru"), "cell fixed by 'lstm'"),
    (lambda: seqlab.train("toy-counter", preset="gpu-huge"), "preset: expected one of"),
    (lambda: seqlab.train("toy-counter", modulus=1), "modulus: expected an integer >= 2"),
    (lambda: seqlab.train("toy-counter", max_steps=0), "max_steps"),
    (lambda: seqlab.sample(LEGACY / "bert"), "expected a run of a family that samples"),
    (lambda: seqlab.evaluate(LEGACY / "lstm"), "expected a run of a family with an evaluation"),
    (lambda: seqlab.load(LEGACY / "no-such-run"), "no such path"),
])
def test_bad_input_is_one_clear_line(call, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as e:
        call()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_registering_a_clash_is_refused():
    class Clash(toy_family.CounterFamily):
        name = "toy-clash"
        variants = {"lstm": {}}

    with pytest.raises(ValueError, match="a name no other family uses"):
        runs.register(Clash())

    class Collide(toy_family.CounterFamily):
        name = "toy-collide"

        @property
        def data_class(self):  # a data option named like a training option
            from dataclasses import make_dataclass

            return make_dataclass("D", [("lr", float, 0.1)], frozen=True)

    with pytest.raises(ValueError, match="distinct names"):
        runs.register(Collide())


def test_cli_bad_options_are_one_line(tmp_path, capsys):
    assert main(["train", "lstm", "--latent-size", "2"]) == 2  # a VAE's option
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("seqlab: error: --latent-size 2: expected options listed by "
                                                    "seqlab train lstm --help, received unrecognized argument(s)")
    with pytest.raises(SystemExit) as e:
        main(["train", "lstm", "--lr", "fast"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "expected a number, received 'fast'" in err and err.count("\n") == 0


# --------------------------------------------------------------------------- seqlab 0.1 run directories


FAMILIES = ["lstm", "gpt", "gpt-bpe", "bert", "bert-classifier", "rbm", "gan", "vae", "diffusion"]


@pytest.mark.parametrize("name", FAMILIES)
def test_legacy_run_directories_load(name):
    model, record = seqlab.load(LEGACY / name)
    assert record.step == 2 and record.dir == LEGACY / name
    saved = json.loads((LEGACY / name / "run.json").read_text())
    assert record.family == saved["family"]
    assert isinstance(model, torch.nn.Module) and not model.training


def test_legacy_text_runs_sample_and_encode_the_corpus():
    corpus = (LEGACY / "corpus.txt").read_text(encoding="utf-8")
    for name in ("lstm", "gpt", "gpt-bpe"):
        _, record = seqlab.load(LEGACY / name)
        assert record.tokenizer.decode(record.tokenizer.encode(corpus)) == corpus
        text = seqlab.sample(LEGACY / name, prompt="The ", length=20, seed=1)
        assert isinstance(text, str) and text == seqlab.sample(LEGACY / name, prompt="The ", length=20, seed=1)
    model, record = seqlab.load(LEGACY / "gpt")
    assert "w_x" in dict(model.named_parameters())  # seqlab 0.1 called it w_e


def test_legacy_runs_resume(tmp_path):
    for name in ("lstm", "gpt", "rbm", "vae", "gan", "diffusion"):
        run_dir = tmp_path / name
        shutil.copytree(LEGACY / name, run_dir)
        text = {"text": str(LEGACY / "corpus.txt")} if name in ("lstm", "gpt") else {}
        result = seqlab.resume(run_dir, progress=False, max_steps=4, **text)
        assert result.steps == 4 and result.last_val_loss is not None, name
        seqlab.load(run_dir)


def test_legacy_classifier_classifies_but_does_not_resume(tmp_path, capsys):
    assert main(["classify", str(LEGACY / "bert-classifier"), "--text", "def f(x): return x"]) == 0
    labels = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert sorted(labels) == ["code", "manual"]
    run_dir = tmp_path / "clf"
    shutil.copytree(LEGACY / "bert-classifier", run_dir)
    assert main(["train", "--resume", str(run_dir), "--max-steps", "3", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "seqlab 0.1 run" in err and err.count("\n") == 0


# the families that renamed config fields or weights since seqlab 0.1 (each family's own names: next to its tests)
RENAMING = [name for name, fam in runs.families().items() if fam.legacy_fields or fam.legacy_weights]


@pytest.mark.parametrize("name", sorted(runs.families()))
def test_legacy_names_point_at_today_s_fields(name):
    family = runs.get_family(name)
    fields = runs.field_names(family.config_class)
    for old, new in family.legacy_fields.items():
        assert new in fields and old not in fields, (old, new)  # an old name must not shadow a field of today
    assert not set(family.legacy_weights) & set(family.legacy_weights.values())


@pytest.mark.parametrize("name", RENAMING)
def test_upgrade_config_renames_the_legacy_fields_only(name):
    family = runs.get_family(name)
    old = {**{o: f"value of {o}" for o in family.legacy_fields}, "kept": 1}
    new = family.upgrade_config(old)
    assert new == {**{n: f"value of {o}" for o, n in family.legacy_fields.items()}, "kept": 1}
    assert family.upgrade_config(new) == new  # today's names pass unchanged
    assert set(family.legacy_fields) <= set(old)  # the dict given is not changed
    # a config with both names keeps today's value (and the old name, for the config to refuse)
    both = {**{o: "old" for o in family.legacy_fields}, **{n: "new" for n in family.legacy_fields.values()}}
    assert family.upgrade_config(both) == both


@pytest.mark.parametrize("name", RENAMING)
def test_upgrade_checkpoint_renames_the_legacy_weights(name):
    from seqlab.training.checkpoint import Checkpoint

    family = runs.get_family(name)
    tensors = {}
    for k, old in enumerate(family.legacy_weights):
        tensors[old] = torch.full((2,), float(k))  # a parameter of the model itself
        tensors[f"blocks.0.{old}"] = torch.full((3,), float(k))  # and of a submodule
    tensors["head.bias"] = torch.zeros(1)
    ckpt = Checkpoint(path=Path("nowhere"), family=name, config={o: 1 for o in family.legacy_fields},
                      state_dict=dict(tensors))
    up = family.upgrade_checkpoint(ckpt)
    renamed = {**{n: tensors[o] for o, n in family.legacy_weights.items()},
               **{f"blocks.0.{n}": tensors[f"blocks.0.{o}"] for o, n in family.legacy_weights.items()},
               "head.bias": tensors["head.bias"]}
    assert up.state_dict.keys() == renamed.keys()
    assert all(up.state_dict[k] is v for k, v in renamed.items())  # the same tensors, renamed
    assert up.config == {n: 1 for n in family.legacy_fields.values()}


def test_a_checkpoint_outside_its_run_loads_but_names_no_data(tmp_path):
    """A checkpoint directory copied out of its run loads and samples; what needs the run's
    data (evaluation, a VAE's pictures of test images) is refused in one line, never read from
    a default data set instead."""
    for name, call in (("vae", lambda p: seqlab.evaluate(p, n=10)),
                       ("vae", lambda p: seqlab.sample(p, n=2, png=None, reconstruct=str(tmp_path / "r.png"))),
                       ("rbm", lambda p: seqlab.evaluate(p)),
                       ("lstm", lambda p: seqlab.resume(p))):
        ckpt = tmp_path / f"{name}-step-2"
        if not ckpt.exists():
            shutil.copytree(LEGACY / name / "checkpoints" / "step-00000002", ckpt)
        model, record = seqlab.load(ckpt)
        assert record.dir is None and record.data is None and record.step == 2
        with pytest.raises(ValueError) as e:
            call(ckpt)
        assert "\n" not in str(e.value)
        assert not (tmp_path / "r.png").exists()
    with pytest.raises(ValueError, match="outside one"):
        seqlab.evaluate(tmp_path / "vae-step-2", n=10)


def test_a_missing_checkpoint_file_is_one_line():
    run = runs.RunRecord(family="gpt", config=None, checkpoint=Path("runs/x/checkpoints/step-00000001"), step=1)
    with pytest.raises(ValueError) as e:
        run.file("tokenizer.json")
    assert str(e.value) == ("checkpoint runs/x/checkpoints/step-00000001: expected a tokenizer.json file, "
                            "received none")

