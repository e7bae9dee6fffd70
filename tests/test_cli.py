"""The command line end to end for the character models, on tiny settings and the embedded
default text: train, sample, resume, --config, Ctrl-C, a NaN loss, bad options, the
generated --help, tour --quick, and the unfold/bptt/gradflow commands."""

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import seqlab
from seqlab.cli import main
from seqlab.recurrent.charlm import CharLM

TINY = ["--preset", "cpu-tiny", "--block-size", "16", "--batch-size", "4", "--eval-every", "4",
        "--eval-batches", "2", "--warmup-steps", "1", "--log-every", "2", "--quiet"]
LEGACY = Path(__file__).parent / "fixtures" / "legacy_runs"


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


def _help(capsys, argv) -> str:
    """What ``seqlab ARGV --help`` prints, with argparse's line wrapping undone."""
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 8-step LSTM run on the embedded default text (shared: tests that change it
    use a copy, ``run``)."""
    out = tmp_path_factory.mktemp("lstm") / "run"
    assert main(["train", "lstm", "--max-steps", "8", "--out", str(out), *TINY]) == 0
    return out


@pytest.fixture
def run(finished, tmp_path):
    """A copy of the finished run that a test may change."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def test_train_writes_a_run_directory(finished):
    run = finished
    assert (run / "run.json").is_file()
    saved = json.loads((run / "run.json").read_text())
    assert saved["family"] == "charlm" and saved["model_config"]["cell"] == "lstm"
    assert saved["model_config"]["hidden_size"] == 64  # the cpu-tiny preset
    assert saved["data"]["source"] == "pydoc" and saved["data"]["block_size"] == 16
    ckpt = run / "checkpoints" / "step-00000008"
    assert {"config.json", "model.safetensors", "trainer.json", "tokenizer.json"} <= {p.name for p in ckpt.iterdir()}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r["split"] == "val"]
    assert [r["step"] for r in val] == [4, 8]
    assert all(r["bpc"] == pytest.approx(r["loss"] / math.log(2)) for r in val)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_train_other_cells(tmp_path, cell, capsys):
    out = tmp_path / cell
    assert main(["train", cell, "--max-steps", "4", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert f"run {out}: validation loss" in printed and "bits/char" in printed
    assert "\nsample: " in printed  # train ends with a 200-character sample of the best checkpoint
    assert json.loads((out / "run.json").read_text())["model_config"]["cell"] == cell


def test_train_help_shows_what_applies_to_the_variant(capsys):
    out = _help(capsys, ["train", "lstm"])
    assert "--hidden-size HIDDEN_SIZE H, hidden units a^(h)_t per layer (default: 256)" in out  # cpu-small
    assert "--max-steps MAX_STEPS number of optimizer steps of the whole run (default: 3000)" in out
    assert "(default: 0.02)" in out and "--forget-bias" in out and "--text TEXT" in out
    assert "(default: cpu-small)" in out and "--resume RUN_DIR" in out and "--config FILE" in out
    for absent in ("--d-model", "--latent-size", "--nonlinearity", "--reset", "--cell", "--vocab-size",
                   "--tokenizer", "--sample-length"):
        assert absent not in out, absent
    gru = _help(capsys, ["train", "gru"])
    assert "--reset RESET where the reset gate acts" in gru and "(cell=gru)" in gru
    assert "--forget-bias" not in gru and "--nonlinearity" not in gru
    rnn = _help(capsys, ["train", "rnn"])
    assert "--nonlinearity NONLINEARITY the activation g of the Elman cell" in rnn
    assert "--reset" not in rnn and "--forget-bias" not in rnn


def test_sample_is_reproducible_and_uses_the_prompt(finished, capsys):
    run = finished
    capsys.readouterr()
    assert main(["sample", str(run), "--prompt", "def ", "--length", "40", "--seed", "3"]) == 0
    a = capsys.readouterr().out
    assert main(["sample", str(run), "--prompt", "def ", "--length", "40", "--seed", "3"]) == 0
    b = capsys.readouterr().out
    assert a == b and a.startswith("def ") and a.endswith("\n") and len(a) == 44 + 1
    assert a[:-1] == "def " + seqlab.sample(run, prompt="def ", length=40, seed=3)
    assert main(["sample", str(run), "--prompt", "def ", "--length", "40", "--temperature", "0"]) == 0
    greedy = capsys.readouterr().out
    model, record = seqlab.load(run)
    tok = record.tokenizer
    assert greedy == "def " + tok.decode(model.generate(tok.encode("def "), 40, temperature=0)) + "\n"


def test_sample_top_p_and_stop(finished, capsys):
    run = finished
    assert main(["sample", str(run), "--prompt", "def ", "--length", "60", "--top-p", "0.5", "--seed", "1"]) == 0
    nucleus = capsys.readouterr().out
    assert nucleus[:-1] == "def " + seqlab.sample(run, prompt="def ", length=60, top_p=0.5, seed=1)
    full = seqlab.sample(run, prompt="def ", length=60, seed=1)
    stop = next(ch for ch in full[5:] if ch not in full[:5])  # a character first drawn after the 5th
    assert main(["sample", str(run), "--prompt", "def ", "--length", "60", "--seed", "1", "--stop", stop]) == 0
    assert capsys.readouterr().out == "def " + full[:full.index(stop)] + "\n"


def test_sample_help_lists_the_options_of_the_runs_family(finished, capsys):
    out = _help(capsys, ["sample", str(finished)])
    assert "charlm options" in out and "--top-p TOP_P" in out and "--stop STOP" in out and "(default: 300)" in out
    assert "--cache" not in out and "--n N" not in out and "--method" not in out


def test_sample_options_of_another_family_are_refused(finished, capsys):
    assert main(["sample", str(finished), "--no-cache"]) == 2
    _one_line_error(capsys, "--no-cache: expected options listed by seqlab sample RUN_DIR --help (a 'charlm' run)",
                    "unrecognized")
    assert main(["sample", str(finished), "--n", "4"]) == 2
    _one_line_error(capsys, "--n 4: expected options listed by seqlab sample RUN_DIR --help (a 'charlm' run)")


def test_sample_prompt_outside_vocabulary(finished, capsys):
    assert main(["sample", str(finished), "--prompt", "naïve €"]) == 2
    _one_line_error(capsys, "prompt: expected characters from the tokenizer's", "'€'")


def test_sample_bad_arguments(finished, capsys):
    assert main(["sample", str(finished), "--prompt", "a", "--temperature", "-1"]) == 2
    _one_line_error(capsys, "temperature: expected a number >= 0.0, received -1.0")
    assert main(["sample", str(finished), "--prompt", ""]) == 2
    _one_line_error(capsys, "prompt: expected at least one character")
    assert main(["sample", str(finished), "--top-p", "1.5"]) == 2
    _one_line_error(capsys, "top_p: expected a number <= 1.0, received 1.5")


def test_views_of_other_families_are_refused(finished, capsys):
    """eval, fill, classify and attention on a character run: one line naming the families
    that have them."""
    assert main(["eval", str(finished)]) == 2
    _one_line_error(capsys, "eval: expected a run of a family with an evaluation (", "bert, bert-classifier",
                    "received a 'charlm' run")
    assert main(["fill", str(finished), "a[MASK]"]) == 2
    _one_line_error(capsys, "fill: expected a run of bert, received a 'charlm' run")
    assert main(["classify", str(finished), "--text", "a"]) == 2
    _one_line_error(capsys, "classify: expected a run of bert-classifier, received a 'charlm' run")
    assert main(["attention", str(finished), "--text", "a"]) == 2
    _one_line_error(capsys, "attention: expected a run of bert, gpt, gpt-finetune or icl, received a 'charlm' run")


def test_resume_continues_and_matches_an_uninterrupted_run(tmp_path, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", "gru", "--max-steps", "8", "--out", str(straight), *TINY]) == 0
    # the same run, stopped after 4 steps by a wall-clock budget of ~0 s, then resumed
    assert main(["train", "gru", "--max-steps", "8", "--max-seconds", "1e-9", "--out", str(split), *TINY]) == 0
    assert json.loads((split / "checkpoints" / "latest.json").read_text())["step"] < 8
    assert main(["train", "--resume", str(split), "--quiet"]) == 0  # no family: the run's own

    def losses(folder):
        return [(r["step"], r["loss"]) for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
                if r["split"] == "train"]

    assert losses(split) == losses(straight)
    a = seqlab.load(straight)[0].state_dict()
    b = seqlab.load(split)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_a_moved_copy_of_the_text(tmp_path, capsys):
    """The text is recognised by its sha256, not by its path: a moved copy resumes."""
    from seqlab.data.text import pydoc_text

    original = tmp_path / "a" / "corpus.txt"
    original.parent.mkdir()
    original.write_text(pydoc_text()[:20000], encoding="utf-8")
    run, resume = tmp_path / "run", ["train", "--resume", str(tmp_path / "run"), "--quiet"]
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
    _one_line_error(capsys, "model_config.cell: saved 'lstm', new 'gru'")
    assert main(["train", "--resume", str(run), "--hidden-size", "8", "--quiet"]) == 2
    _one_line_error(capsys, "model_config.hidden_size: saved 64, new 8")
    assert main(["train", "--resume", str(run), "--preset", "cpu-small"]) == 2
    _one_line_error(capsys, "--preset: expected nothing with --resume (the run's sizes are kept), received "
                            "'cpu-small'")
    assert main(["train", "--resume", str(run), "--out", str(run.parent / "elsewhere")]) == 2
    _one_line_error(capsys, "--out: expected nothing with --resume (the run goes on in RUN_DIR)")
    assert main(["train", "--resume", str(run), "--block-size", "32"]) == 2
    _one_line_error(capsys, "resume: expected no data options but text (the run's data are kept), "
                            "received block_size")
    assert _files(run) == before and not (run.parent / "elsewhere").exists()


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
    saved["family"] = "gpt"
    cfg.write_text(json.dumps(saved))
    # the run says charlm (run.json), its checkpoint says otherwise
    assert main(["sample", str(run), "--prompt", "a"]) == 2
    _one_line_error(capsys, "checkpoint family: expected 'charlm', received 'gpt'")
    with pytest.raises(ValueError, match="checkpoint family: expected 'charlm', received 'gpt'"):
        seqlab.load(run)
    # a run, or a checkpoint directory, of a family that does not sample
    for path in (LEGACY / "bert", LEGACY / "bert" / "checkpoints" / "step-00000002"):
        assert main(["sample", str(path), "--prompt", "a"]) == 2
        err = _one_line_error(capsys, "sample: expected a run of a family that samples (",
                              "received a 'bert' run (use seqlab fill for a 'bert' run)")
        assert {"charlm", "gpt", "vae"} <= set(err.split("(")[1].split(")")[0].split(", ")), err
    # a run of a family no one registered
    run_json = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**run_json, "family": "hopfield"}))
    assert main(["sample", str(run), "--prompt", "a"]) == 2
    _one_line_error(capsys, "family: expected one of ", "charlm", "received 'hopfield'")


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
    for argv in (["train"], ["train", "--quiet"]):  # no family: say so (not that --quiet is unknown)
        assert main(argv) == 2
        err = _one_line_error(capsys, "train: expected a family (", ") or --resume RUN_DIR, received none")
        assert {"rnn", "lstm", "gru", "gpt", "bert", "vae"} <= set(err.split("(")[1].split(")")[0].split(", ")), err
    assert main(["train", "--resume", str(tmp_path / "nope"), "--quiet"]) == 2
    _one_line_error(capsys, "run: expected a run directory (holding run.json)", "(no such path)")
    assert main(["train", "lstm", "--d-model", "8"]) == 2  # an option of another family
    _one_line_error(capsys, "--d-model 8: expected options listed by seqlab train lstm --help, received "
                            "unrecognized argument(s)")
    assert main(["train", "lstm", "--sample-length", "0"]) == 2  # removed: train prints a 200-token sample
    _one_line_error(capsys, "--sample-length 0: expected options listed by seqlab train lstm --help")
    with pytest.raises(SystemExit) as e:
        main(["train", "lstm", "--preset", "gpu-huge"])
    assert e.value.code == 2 and "invalid choice: 'gpu-huge'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", "lstm", "--device", "cuda", "--out", str(tmp_path / "b"), *TINY]) == 2
        _one_line_error(capsys, "cuda")


def test_config_file(tmp_path, capsys):
    cfg = tmp_path / "opts.toml"
    cfg.write_text('[model]\nhidden_size = 24\n[data]\nblock-size = 12\n[train]\nmax_steps = 2\nlr = 0.01\n'
                   'batch_size = 8\n')
    out = tmp_path / "run"
    assert TINY[2:4] == ["--block-size", "16"]
    tiny = TINY[:2] + TINY[4:]  # the block size from the file; flags given win over the file's (--batch-size 4)
    assert main(["train", "rnn", "--config", str(cfg), "--out", str(out), *tiny]) == 0
    saved = json.loads((out / "run.json").read_text())
    assert saved["model_config"]["hidden_size"] == 24 and saved["train_config"]["lr"] == 0.01
    assert saved["data"]["block_size"] == 12 and saved["train_config"]["batch_size"] == 4
    bad = tmp_path / "bad.toml"
    bad.write_text("hiden_size = 3\n")
    assert main(["train", "rnn", "--config", str(bad), "--out", str(tmp_path / "x"), *TINY]) == 2
    _one_line_error(capsys, "rnn options: expected names among", "received unknown hiden_size")
    fixed = tmp_path / "fixed.toml"  # the variant fixes its cell
    fixed.write_text('cell = "gru"\n')
    assert main(["train", "rnn", "--config", str(fixed), "--out", str(tmp_path / "y"), *TINY]) == 2
    _one_line_error(capsys, "unknown cell (cell fixed by 'rnn')")
    assert main(["train", "rnn", "--config", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "z")]) == 2
    _one_line_error(capsys, "--config: expected an existing TOML file", "(no such file)")
    assert not any((tmp_path / d).exists() for d in "xyz")


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
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
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
    assert "gradflow: network 6/6 (100%)" in capsys.readouterr().err  # its progress, on stderr
    assert main(["gradflow", "--length", "1", "--out", str(out)]) == 2
    _one_line_error(capsys, "length")


def test_tour_quick(tmp_path, capsys):
    assert main(["tour", "--quick", "--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "]" in line]
    assert len(lines) >= 5 and not any("FAILED" in line for line in lines)
    html = (tmp_path / "report.html").read_text()
    assert "Backpropagation through time" in html and "data:image/png;base64," in html
