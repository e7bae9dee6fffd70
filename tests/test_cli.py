"""The command line end to end, on tiny settings and the embedded default text."""

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from seqlab.cli import main
from seqlab.recurrent import charlm_runs
from seqlab.recurrent.charlm import CharLM

TINY = ["--preset", "cpu-tiny", "--block-size", "16", "--batch-size", "4", "--eval-every", "4",
        "--eval-batches", "2", "--warmup-steps", "1", "--log-every", "2", "--quiet", "--sample-length", "0"]


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys, *expected):
    err = capsys.readouterr().err.strip()
    assert err.startswith("seqlab: error:"), err
    assert len(err.splitlines()) == 1, err
    for e in expected:
        assert e in err, err
    return err


@pytest.fixture
def run(tmp_path):
    """A finished 8-step LSTM run on the embedded default text."""
    out = tmp_path / "run"
    assert main(["train", "lstm", "--max-steps", "8", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_a_run_directory(run, capsys):
    assert (run / "run.json").is_file()
    saved = json.loads((run / "run.json").read_text())
    assert saved["family"] == "charlm" and saved["model_config"]["cell"] == "lstm"
    assert saved["data"]["source"] == "pydoc"
    ckpt = run / "checkpoints" / "step-00000008"
    assert {"config.json", "model.safetensors", "trainer.json", "tokenizer.json"} <= {p.name for p in ckpt.iterdir()}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r["split"] == "val"]
    assert [r["step"] for r in val] == [4, 8]
    assert all(r["bpc"] == pytest.approx(r["loss"] / math.log(2)) for r in val)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_train_other_cells(tmp_path, cell, capsys):
    assert main(["train", cell, "--max-steps", "4", "--out", str(tmp_path / cell), *TINY]) == 0
    assert "validation loss" in capsys.readouterr().out


def test_sample_is_reproducible_and_uses_the_prompt(run, capsys):
    capsys.readouterr()
    assert main(["sample", str(run), "--prompt", "def ", "--length", "40", "--seed", "3"]) == 0
    a = capsys.readouterr().out
    assert main(["sample", str(run), "--prompt", "def ", "--length", "40", "--seed", "3"]) == 0
    b = capsys.readouterr().out
    assert a == b and a.startswith("def ") and len(a.rstrip("\n")) == 44
    assert main(["sample", str(run), "--prompt", "def ", "--length", "40", "--temperature", "0"]) == 0


def test_sample_prompt_outside_vocabulary(run, capsys):
    assert main(["sample", str(run), "--prompt", "naïve €"]) == 2
    _one_line_error(capsys, "prompt: expected characters from the tokenizer's", "'€'")


def test_sample_bad_arguments(run, capsys):
    assert main(["sample", str(run), "--prompt", "a", "--temperature", "-1"]) == 2
    _one_line_error(capsys, "temperature: expected a number >= 0.0, received -1.0")
    assert main(["sample", str(run), "--prompt", ""]) == 2
    _one_line_error(capsys, "prompt: expected at least one character")


def test_resume_continues_and_matches_an_uninterrupted_run(tmp_path, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", "gru", "--max-steps", "8", "--out", str(straight), *TINY]) == 0
    # the same run, stopped after 4 steps by a wall-clock budget of ~0 s, then resumed
    assert main(["train", "gru", "--max-steps", "8", "--max-seconds", "1e-9", "--out", str(split), *TINY]) == 0
    assert json.loads((split / "checkpoints" / "latest.json").read_text())["step"] < 8
    assert main(["train", "--resume", str(split), "--quiet", "--sample-length", "0"]) == 0

    def losses(folder):
        return [(r["step"], r["loss"]) for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
                if r["split"] == "train"]

    assert losses(split) == losses(straight)
    a = charlm_runs.load(straight)[0].state_dict()
    b = charlm_runs.load(split)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_a_moved_copy_of_the_text(tmp_path, capsys):
    """The text is recognised by its sha256, not by its path: a moved copy resumes."""
    from seqlab.data.text import pydoc_text

    original = tmp_path / "a" / "corpus.txt"
    original.parent.mkdir()
    original.write_text(pydoc_text()[:20000], encoding="utf-8")
    run, resume = tmp_path / "run", ["train", "--resume", str(tmp_path / "run"), "--quiet", "--sample-length", "0"]
    assert main(["train", "gru", "--text", str(original), "--max-steps", "6", "--max-seconds", "1e-9",
                 "--out", str(run), *TINY]) == 0
    first = json.loads((run / "run.json").read_text())["data"]
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] < 6
    moved = tmp_path / "b" / "copy.txt"
    moved.parent.mkdir()
    original.rename(moved)
    assert main(resume) == 2  # the saved path is gone
    _one_line_error(capsys, "pass --text PATH")
    assert main([*resume, "--text", str(moved)]) == 0
    data = json.loads((run / "run.json").read_text())["data"]
    assert data["source"] == str(moved.resolve()) != first["source"] and data["sha256"] == first["sha256"]
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 6
    other = tmp_path / "other.txt"  # the same characters in another order: another text
    other.write_text(pydoc_text()[:20000][::-1], encoding="utf-8")
    assert main([*resume, "--text", str(other)]) == 2
    _one_line_error(capsys, "resume: expected the settings the run was started with", "data.sha256: saved")


def test_zero_clipping_is_off(tmp_path):
    """--clip-norm 0 and --clip-value 0 (also in a --config file) mean no clipping: TrainConfig
    stores them as None, so run.json says "off" one way."""
    config = tmp_path / "c.toml"
    config.write_text("[train]\nclip_value = 0\n")
    out = tmp_path / "run"
    assert main(["train", "rnn", "--max-steps", "2", "--clip-norm", "0", "--config", str(config), "--out", str(out),
                 *TINY]) == 0
    saved = json.loads((out / "run.json").read_text())["train_config"]
    assert saved["clip_norm"] is None and saved["clip_value"] is None


def test_resume_with_changed_config_is_refused_and_changes_nothing(run, capsys):
    before = _files(run)
    assert main(["train", "--resume", str(run), "--lr", "0.5", "--quiet"]) == 2
    _one_line_error(capsys, "resume: expected the settings the run was started with", "lr: saved 0.02, new 0.5")
    assert main(["train", "gru", "--resume", str(run), "--quiet"]) == 2
    _one_line_error(capsys, "cell")
    assert _files(run) == before


def test_new_run_into_a_used_directory_is_refused(run, capsys):
    before = _files(run)
    assert main(["train", "lstm", "--max-steps", "2", "--out", str(run), *TINY]) == 2
    _one_line_error(capsys, "pass --resume")
    assert _files(run) == before


def test_corrupt_and_truncated_checkpoints(run, capsys):
    ckpt = run / "checkpoints" / "step-00000008" / "model.safetensors"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    assert main(["sample", str(run), "--prompt", "a"]) == 2
    _one_line_error(capsys, "model.safetensors")
    ckpt.write_bytes(data[:-8] + b"\x00" * 8)
    assert main(["sample", str(run), "--prompt", "a"]) == 2
    _one_line_error(capsys, "model.safetensors")


def test_checkpoint_of_another_family(run, capsys):
    cfg = run / "checkpoints" / "step-00000008" / "config.json"
    saved = json.loads(cfg.read_text())
    saved["family"] = "hopfield"
    cfg.write_text(json.dumps(saved))
    # the run says charlm (run.json), its checkpoint says otherwise
    assert main(["sample", str(run), "--prompt", "a"]) == 2
    _one_line_error(capsys, "checkpoint family: expected 'charlm', received 'hopfield'")
    from seqlab.recurrent import charlm_runs

    with pytest.raises(ValueError, match="checkpoint family: expected 'charlm', received 'hopfield'"):
        charlm_runs.load(run)
    # a checkpoint directory, or a run, of a family that cannot sample
    assert main(["sample", str(cfg.parent), "--prompt", "a"]) == 2
    _one_line_error(capsys, "sample: expected a run of a generative model (gpt, rnn, lstm, gru, rbm, gan, vae, diffusion), "
                            "received a 'hopfield' run")
    run_json = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**run_json, "family": "hopfield"}))
    assert main(["sample", str(run), "--prompt", "a"]) == 2
    _one_line_error(capsys, "sample: expected a run of a generative model (gpt, rnn, lstm, gru, rbm, gan, vae, diffusion), "
                            "received a 'hopfield' run")


def test_text_errors(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["train", "lstm", "--text", str(empty), "--out", str(tmp_path / "a"), *TINY]) == 2
    _one_line_error(capsys, "an empty file")
    short = tmp_path / "short.txt"
    short.write_text("to be or not to be")
    assert main(["train", "lstm", "--text", str(short), "--out", str(tmp_path / "b"), *TINY]) == 2
    _one_line_error(capsys, "at least block_size + 1 = 17 tokens")
    assert main(["train", "lstm", "--text", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "c"), *TINY]) == 2
    _one_line_error(capsys, "no such file")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_bad_training_options(tmp_path, capsys):
    assert main(["train", "lstm", "--hidden-size", "0", "--out", str(tmp_path / "a"), *TINY]) == 2
    _one_line_error(capsys, "hidden_size: expected an integer >= 1, received 0")
    assert main(["train", "--quiet"]) == 2
    _one_line_error(capsys, "model: expected one of rnn, lstm, gru")
    if not torch.cuda.is_available():
        assert main(["train", "lstm", "--device", "cuda", "--out", str(tmp_path / "b"), *TINY]) == 2
        _one_line_error(capsys, "cuda")


def test_config_file(tmp_path, capsys):
    cfg = tmp_path / "opts.toml"
    cfg.write_text('[model]\nhidden_size = 24\n[train]\nmax_steps = 2\nlr = 0.01\n')
    out = tmp_path / "run"
    assert main(["train", "rnn", "--config", str(cfg), "--out", str(out), *TINY]) == 0
    saved = json.loads((out / "run.json").read_text())
    assert saved["model_config"]["hidden_size"] == 24 and saved["train_config"]["lr"] == 0.01
    bad = tmp_path / "bad.toml"
    bad.write_text("hiden_size = 3\n")
    assert main(["train", "rnn", "--config", str(bad), "--out", str(tmp_path / "x"), *TINY]) == 2
    _one_line_error(capsys, "hiden_size")


def test_ctrl_c_saves_and_resumes(tmp_path, capsys, monkeypatch):
    calls = {"n": 0}
    original = CharLM.loss

    def interrupting(self, batch):
        calls["n"] += 1
        if calls["n"] == 3 and self.training:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(CharLM, "loss", interrupting)
    out = tmp_path / "run"
    assert main(["train", "lstm", "--max-steps", "6", "--out", str(out), *TINY]) == 130
    printed = capsys.readouterr().out
    assert "interrupted at step 2" in printed and f"seqlab train --resume {out}" in printed
    monkeypatch.setattr(CharLM, "loss", original)
    assert main(["train", "--resume", str(out), "--quiet", "--sample-length", "0"]) == 0
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["step"] == 6


def test_nan_loss_stops_without_overwriting(tmp_path, capsys, monkeypatch):
    original = CharLM.loss
    state = {"step": 0}

    def poisoned(self, batch):
        loss, metrics = original(self, batch)
        if self.training:
            state["step"] += 1
            if state["step"] == 6:
                return loss * float("nan"), metrics
        return loss, metrics

    monkeypatch.setattr(CharLM, "loss", poisoned)
    out = tmp_path / "run"
    assert main(["train", "lstm", "--max-steps", "10", "--out", str(out), *TINY]) == 2
    err = _one_line_error(capsys, "training loss at step 6", "step-00000004")
    assert "nan" in err
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["step"] == 4


def test_unfold_bptt_gradflow_commands(tmp_path, capsys):
    assert main(["unfold", "--length", "2", "--output", "last", "--wrt", "w_a", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["used"] == ["w_a@1", "w_a@2", "w_o@2"]
    assert main(["unfold", "--length", "0", "--wrt", "w_x"]) == 2
    _one_line_error(capsys, "length", "received 0")
    assert main(["unfold", "--length", "3", "--wrt", "w_q"]) == 2
    _one_line_error(capsys, "wrt", "'w_q'")
    assert main(["bptt", "--trials", "2", "--layers", "2"]) == 0
    assert "worst:" in capsys.readouterr().out
    out = tmp_path / "gf"
    assert main(["gradflow", "--length", "12", "--hidden-size", "4", "--batch-size", "2", "--repeats", "1",
                 "--scales", "0.5,1.5", "--out", str(out)]) == 0
    assert {"gradflow.png", "gradflow.txt", "gradflow.json", "clipping.png"} <= {p.name for p in out.iterdir()}
    assert main(["gradflow", "--length", "1", "--out", str(out)]) == 2
    _one_line_error(capsys, "length")


def test_tour_quick(tmp_path, capsys):
    assert main(["tour", "--quick", "--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "]" in line]
    assert len(lines) >= 5 and not any("FAILED" in line for line in lines)
    html = (tmp_path / "report.html").read_text()
    assert "Backpropagation through time" in html and "data:image/png;base64," in html
