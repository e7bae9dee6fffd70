"""The RBM's family (seqlab/energy/rbm_family.py): runs through the registry (train, resume,
load, sample), NaN weights never saved, the command line (train with --cd and the report,
sample, --help) and its bad-input paths, and seqlab 0.1's field names."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

import seqlab
from seqlab.cli import build_parser, main
from seqlab.cli.train import family_options
from seqlab.energy.rbm import RBM, RBMConfig
from seqlab.runs import get_family
from seqlab.testing import one_line_error, snapshot

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_runs"


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A 40-step cpu-tiny CD-2 RBM trained from the command line (its printed output kept)."""
    run = tmp_path_factory.mktemp("rbm") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", "rbm", "--preset", "cpu-tiny", "--cd", "--k", "2", "--max-steps", "40",
                     "--eval-every", "20", "--out", str(run), "--quiet"]) == 0
    return run, printed.getvalue()


def out_mean(run: Path, n: int, steps: int) -> str:
    """The mean pixel ``seqlab sample`` prints (the same draw from Python, without a file)."""
    return f"{float(seqlab.sample(run, n=n, steps=steps, png=None).mean()):.3f}"


def _help(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse's line wrapping undone


# --------------------------------------------------------------------------- runs and the trainer


def test_train_run_resume_is_exact(tmp_path, monkeypatch):
    opts = dict(hidden_size=16, max_steps=30, eval_every=10, eval_batches=2)
    full = seqlab.train("rbm", out=tmp_path / "full", progress=False, **opts)
    original = RBM.train_step
    calls = {"n": 0}

    def interrupted(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 17:
            raise KeyboardInterrupt
        return original(self, *a, **kw)

    monkeypatch.setattr(RBM, "train_step", interrupted)
    part = seqlab.train("rbm", out=tmp_path / "part", progress=False, **opts)
    run = part.run_dir
    assert part.stopped == "interrupted" and part.steps == 16 and run == tmp_path / "part"
    monkeypatch.setattr(RBM, "train_step", original)
    rest = seqlab.resume(run, progress=False)
    assert rest.steps == 30
    a, _ = seqlab.load(tmp_path / "full" / "checkpoints" / "step-00000030")
    b, record = seqlab.load(run / "checkpoints" / "step-00000030")
    assert record.family == "rbm" and record.step == 30 and record.config.hidden_size == 16
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # the interrupted invocation ended with an evaluation of its last step (16); the rest is equal
    assert [r["step"] for r in metrics if r["split"] == "val"] == [10, 16, 20, 30]
    assert [r["loss"] for r in metrics if r["split"] == "val" and r["step"] != 16] == [
        r["loss"] for r in full.history if r["split"] == "val"]


@pytest.mark.parametrize("steps, what", [(3, "training loss"), (1, "model parameters")])
def test_nan_weights_are_never_saved(tmp_path, monkeypatch, steps, what):
    """Weights that turn NaN at step 1 stop the run: at the next step through the training
    loss (computed before any update), or, when step 1 is the last, at the save."""
    from seqlab.training.loop import NonFiniteLossError

    original = RBM.train_step

    def poisoned(self, batch, **kw):
        out = original(self, batch, **kw)
        with torch.no_grad():
            self.W[0, 0] = float("nan")
        return out

    monkeypatch.setattr(RBM, "train_step", poisoned)
    with pytest.raises(NonFiniteLossError, match=what):
        seqlab.train("rbm", out=tmp_path, progress=False, hidden_size=8, max_steps=steps, eval_every=10,
                     eval_batches=1)
    assert not list(tmp_path.glob("checkpoints/step-*"))


def test_the_family():
    family = get_family("rbm")
    assert family.commands() == {"rbm": {}} and family.checkpoint == "best"
    assert family.model_options() == ("hidden_size", "k", "persistent", "n_chains", "init_std")
    assert family.data_options() == ("images",) and family.data_fields == ("visible_size",)
    assert family.presets["cpu-tiny"] == {"hidden_size": 32} and family.default_preset == "cpu-small"
    # scikit-learn's BernoulliRBM recipe: plain SGD at a constant lr 0.05, batches of 10
    assert {k: family.train_defaults[k] for k in ("lr", "batch_size", "schedule")} == {
        "lr": 0.05, "batch_size": 10, "schedule": "constant"}


# --------------------------------------------------------------------------- the command line


def test_cli_train_sample_and_errors(cli_run, tmp_path, capsys, monkeypatch):
    run, out = cli_run
    # the report: the evaluation's line and the pictures
    assert f"run {run}: validation -log pseudo-likelihood" in out and "40 steps" in out
    assert "pseudo-likelihood" in out and "logistic regression" in out
    for name in ("samples.png", "filters.png", "reconstructions.png"):
        assert (run / name).stat().st_size > 0, name
    cfg = json.loads((run / "run.json").read_text())["model_config"]
    # --preset cpu-tiny sets the size; --cd and --k reach the config; the data set visible_size
    assert cfg["hidden_size"] == 32 and cfg["persistent"] is False and cfg["k"] == 2 and cfg["visible_size"] == 64
    png = tmp_path / "grid.png"
    assert main(["sample", str(run), "--n", "8", "--steps", "5", "--png", str(png)]) == 0
    assert png.exists() and capsys.readouterr().out.strip() == (
        "8 samples after 5 Gibbs steps, mean pixel " + out_mean(run, 8, 5) + f"; wrote {png}")

    monkeypatch.chdir(tmp_path)
    good = snapshot(run)
    err = one_line_error(capsys, ["sample", str(run), "--prompt", "x"])  # a text model's option
    assert "--prompt x: expected options listed by seqlab sample RUN_DIR --help (a 'rbm' run)" in err
    # without abbreviations, --k is no lstm flag (argparse would read it as --keep-last)
    assert "--k 2: expected options listed by seqlab train lstm --help" in one_line_error(
        capsys, ["train", "lstm", "--k", "2", "--out", str(tmp_path / "lstm")])
    assert "--num-layers 2: expected options listed by seqlab train rbm --help" in one_line_error(
        capsys, ["train", "rbm", "--num-layers", "2", "--out", str(run)])
    assert "images: expected digits or fashion-mnist (binary units need a named set), received 'cifar'" in \
        one_line_error(capsys, ["train", "rbm", "--images", "cifar", "--out", str(run)])
    assert "k: expected an integer >= 1, received 0" in one_line_error(
        capsys, ["train", "rbm", "--k", "0", "--out", str(run)])
    assert "run_dir: expected a new or empty run directory" in one_line_error(
        capsys, ["train", "rbm", "--max-steps", "2", "--out", str(run)])
    assert "--n 5: expected options listed by seqlab eval RUN_DIR --help (a 'rbm' run)" in one_line_error(
        capsys, ["eval", str(run), "--n", "5"])  # an image model's evaluation option
    assert snapshot(run) == good and sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]


def test_sample_without_a_file(cli_run, tmp_path, capsys, monkeypatch):
    run, _ = cli_run
    monkeypatch.chdir(tmp_path)
    assert main(["sample", str(run), "--n", "3", "--steps", "2", "--png", "none"]) == 0
    assert "wrote" not in capsys.readouterr().out and list(tmp_path.iterdir()) == []
    pv = seqlab.sample(run, n=3, steps=2, seed=4, png=None)
    assert pv.shape == (3, 64) and torch.equal(pv, seqlab.sample(run, n=3, steps=2, seed=4, png=None))
    assert main(["sample", str(run), "--n", "3", "--steps", "2"]) == 0  # the default file
    assert capsys.readouterr().out.strip().endswith("; wrote samples.png") and (tmp_path / "samples.png").exists()
    with pytest.raises(ValueError, match="n: expected an integer >= 1, received 0"):
        seqlab.sample(run, n=0, png=str(tmp_path / "samples.png"))
    with pytest.raises(ValueError, match="rbm sample: expected options among n, steps, seed, png, received "
                                         "unknown method"):
        seqlab.sample(run, method="ddim")


def test_cd_is_no_persistent():
    def parsed(*flags):
        args = build_parser(["train", "rbm", *flags]).parse_args(["train", "rbm", *flags])
        return family_options(args, args.family, args.command)

    assert parsed("--cd") == parsed("--no-persistent") == {"persistent": False}
    assert parsed("--persistent") == {"persistent": True} and parsed() == {}


def test_help_lists_the_rbm_s_options(cli_run, capsys):
    out = _help(capsys, ["train", "rbm"])
    assert "--hidden-size HIDDEN_SIZE H, hidden units h (default: 100)" in out  # cpu-small's
    assert "--cd CD-k: each update's chains start at the data" in out  # (= --no-persistent), wrapped
    assert "--max-steps MAX_STEPS number of optimizer steps of the whole run (default: 2500)" in out
    assert "--lr LR peak learning rate, reached at the end of the warmup (default: 0.05)" in out
    assert "--visible-size" not in out and "--image-size" not in out  # the data decide visible_size
    run, _ = cli_run
    usage = _help(capsys, ["sample", str(run)]).split(" RUN_DIR ")[0]
    assert set(w for w in usage.split() if w.startswith("[--")) == {"[--n", "[--steps", "[--seed", "[--png"}
    usage = _help(capsys, ["eval", str(run)]).split(" RUN_DIR ")[0]
    assert set(w for w in usage.split() if w.startswith("[--")) == {"[--json]", "[--quiet]"}


def test_a_checkpoint_of_another_family_is_refused(tmp_path, capsys):
    # run.json says gan, the checkpoint in it is an RBM's
    mixed = tmp_path / "mixed"
    shutil.copytree(LEGACY / "rbm", mixed)
    saved = json.loads((mixed / "run.json").read_text())
    (mixed / "run.json").write_text(json.dumps({**saved, "family": "gan"}))
    with pytest.raises(ValueError, match=r"checkpoint family: expected 'gan', received 'rbm'"):
        seqlab.load(mixed)
    # an RBM's options for a run of another family
    err = one_line_error(capsys, ["sample", str(LEGACY / "lstm"), "--steps", "5"])
    assert "--steps 5: expected options listed by seqlab sample RUN_DIR --help (a 'charlm' run)" in err


# --------------------------------------------------------------------------- seqlab 0.1


def test_seqlab_0_1_field_names_are_upgraded(tmp_path):
    family = get_family("rbm")
    old = json.loads((LEGACY / "rbm" / "run.json").read_text())["model_config"]
    assert "n_visible" in old and "n_hidden" in old
    new = family.upgrade_config(old)
    assert new == {"visible_size": 64, "hidden_size": 8, "k": 1, "persistent": True, "n_chains": 4,
                   "init_std": 0.01}
    assert RBMConfig.from_dict(new) == RBMConfig(visible_size=64, hidden_size=8, n_chains=4)
    assert family.upgrade_config(new) == new and old["n_hidden"] == 8  # idempotent; the input is not changed
    # a checkpoint's config is upgraded; the RBM's weights kept their names
    from seqlab.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(LEGACY / "rbm" / "checkpoints" / "step-00000002", family="rbm")
    keys = set(ckpt.state_dict)
    up = family.upgrade_checkpoint(ckpt)
    assert up.config == new and set(up.state_dict) == keys == set(RBM(RBMConfig.from_dict(new)).state_dict())
    # a resume names what differs from the upgraded config, and writes nothing over the run
    run = tmp_path / "rbm"
    shutil.copytree(LEGACY / "rbm", run)
    good = {k: v for k, v in snapshot(run).items() if k != "run.json"}
    with pytest.raises(ValueError, match="model_config.hidden_size: saved 8, new 9"):
        seqlab.resume(run, progress=False, hidden_size=9)
    assert {k: v for k, v in snapshot(run).items() if k != "run.json"} == good
    assert json.loads((run / "run.json").read_text())["model_config"] == new  # today's names


def test_sample_refuses_more_gibbs_steps_than_its_documented_limit(cli_run, capsys):
    run, _ = cli_run
    one_line_error(capsys, ["sample", str(run), "--steps", "1000000000000", "--png", "none"])
    with pytest.raises(ValueError, match=r"^steps: expected an integer <= 1000000, received 1000000000000$"):
        seqlab.sample(run, steps=10 ** 12, png=None)
