"""The run directory (seqlab.training.rundir): checkpoints of a run, pointers, pruning,
run.json, the family of a run, and what a resume may change."""

import json
import re
import shutil

import pytest
import torch

from seqlab.training.checkpoint import load_checkpoint, save_checkpoint
from seqlab.training.config import TrainConfig
from seqlab.training.rundir import (
    DATA_IDENTITY_KEYS,
    best_checkpoint,
    checkpoint_name,
    default_run_dir,
    find_run_dir,
    latest_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    read_run,
    read_run_json,
    resolve_checkpoint,
    resume_differences,
    run_family,
    truncate_metrics,
    write_pointer,
    write_run_json,
)


def save_small(path, **kw):
    kw.setdefault("family", "charlm")
    kw.setdefault("config", {"vocab_size": 3, "dims": [4, 3]})
    kw.setdefault("state_dict", {"w": torch.arange(6.0).reshape(2, 3)})
    return save_checkpoint(path, **kw)


# --------------------------------------------------------------------------- checkpoints of a run


def make_run(tmp_path, steps=(100, 200, 300, 400), best=200):
    run = tmp_path / "run"
    for s in steps:
        save_small(run / "checkpoints" / checkpoint_name(s), trainer_state={"step": s})
    if best is not None:
        write_pointer(run, "best.json", step=best, path=run / "checkpoints" / checkpoint_name(best), val_loss=1.5)
    write_pointer(run, "latest.json", step=steps[-1], path=run / "checkpoints" / checkpoint_name(steps[-1]),
                  val_loss=None)
    return run


def test_latest_best_and_resolve(tmp_path):
    run = make_run(tmp_path)
    assert latest_checkpoint(run).name == "step-00000400"
    assert best_checkpoint(run).name == "step-00000200"
    assert json.loads((run / "checkpoints" / "best.json").read_text()) == {
        "step": 200, "path": "step-00000200", "val_loss": 1.5}
    assert [s for s, _ in list_checkpoints(run)] == [100, 200, 300, 400]
    assert resolve_checkpoint(run).name == "step-00000200"  # a run directory -> its best
    assert resolve_checkpoint(run / "checkpoints" / "step-00000300").name == "step-00000300"
    (run / "checkpoints" / "best.json").unlink()
    assert best_checkpoint(run) is None
    assert resolve_checkpoint(run).name == "step-00000400"  # no best -> the latest
    assert latest_checkpoint(tmp_path / "nothing") is None and best_checkpoint(tmp_path / "nothing") is None


def test_resolve_errors(tmp_path):
    with pytest.raises(ValueError, match=r"checkpoint: expected a checkpoint directory or a run directory, received .*missing.*no such path"):
        resolve_checkpoint(tmp_path / "missing")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(ValueError, match=r"checkpoint: expected a checkpoint directory \(with config.json\) or a run directory with checkpoints, received .*empty_run.*which holds neither"):
        resolve_checkpoint(tmp_path / "empty_run")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match=r"not a directory"):
        resolve_checkpoint(tmp_path / "f")


def test_best_pointer_to_a_missing_directory_is_ignored(tmp_path):
    run = make_run(tmp_path)
    shutil.rmtree(run / "checkpoints" / "step-00000200")
    assert best_checkpoint(run) is None
    (run / "checkpoints" / "best.json").write_text("{torn")
    assert best_checkpoint(run) is None


def test_prune_keeps_the_newest_and_the_best(tmp_path):
    run = make_run(tmp_path, steps=(100, 200, 300, 400, 500), best=200)
    removed = prune_checkpoints(run, keep_last=2)
    assert sorted(p.name for p in removed) == ["step-00000100", "step-00000300"]
    assert [s for s, _ in list_checkpoints(run)] == [200, 400, 500]
    with pytest.raises(ValueError, match=r"keep_last: expected an integer >= 1, received 0"):
        prune_checkpoints(run, keep_last=0)


def test_write_pointer_errors(tmp_path):
    with pytest.raises(ValueError, match=r"pointer: expected 'latest.json' or 'best.json', received 'other.json'"):
        write_pointer(tmp_path, "other.json", step=1, path="x", val_loss=None)


# --------------------------------------------------------------------------- run.json, family


def test_run_json_round_trip_and_family_checks(tmp_path):
    cfg = TrainConfig(max_steps=7)
    write_run_json(tmp_path, family="gpt", model_config={"dims": (4, 3)}, train_config=cfg,
                   data={"sha256": "ab", "source": "x.txt"})
    saved = read_run_json(tmp_path)
    assert saved["format"] == "seqlab-run" and saved["family"] == "gpt" and saved["model_config"] == {"dims": [4, 3]}
    assert TrainConfig.from_dict(saved["train_config"]) == cfg and saved["data"]["sha256"] == "ab"
    created = saved["created"]
    write_run_json(tmp_path, family="gpt", model_config={}, train_config=cfg, data=None, created=created)
    assert read_run_json(tmp_path)["created"] == created and read_run_json(tmp_path)["data"] is None
    assert read_run(tmp_path, "gpt")["family"] == "gpt" and read_run(tmp_path, ("bert", "gpt"))["family"] == "gpt"
    with pytest.raises(ValueError, match=r"run family: expected 'charlm', received 'gpt'"):
        read_run(tmp_path, "charlm")
    with pytest.raises(ValueError, match=r"resume: expected a run directory holding run.json, received .*nothing"):
        read_run(tmp_path / "nothing", "gpt")
    (tmp_path / "run.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match=r"run file .*run.json: expected format 'seqlab-run', received 'other'"):
        read_run_json(tmp_path)
    (tmp_path / "run.json").write_text("{torn")
    with pytest.raises(ValueError, match=r"run file .*run.json: expected readable JSON"):
        read_run_json(tmp_path)


def test_run_family_of_a_run_or_a_checkpoint_directory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_run_json(run, family="charlm", model_config={}, train_config=TrainConfig(), data=None)
    assert run_family(run) == "charlm"  # from run.json, with or without checkpoints
    ckpt = save_small(run / "checkpoints" / checkpoint_name(3), family="charlm")
    assert run_family(ckpt) == "charlm" and run_family(str(run)) == "charlm"
    other = save_small(tmp_path / "loose" / "ck", family="rbm")  # a checkpoint outside any run
    assert run_family(other) == "rbm"

    with pytest.raises(ValueError, match=r"^run: expected a run directory \(holding run.json\) or a checkpoint "
                                         r"directory \(holding config.json\), received .*missing.* \(no such path\)$"):
        run_family(tmp_path / "missing")
    (run / "run.json").unlink()  # checkpoints alone do not say it is a run
    with pytest.raises(ValueError, match=r"received .*run' \(neither run.json nor config.json there\)$"):
        run_family(run)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match=r"\(not a directory\)$"):
        run_family(tmp_path / "f")
    (ckpt / "config.json").write_text('{"format": "seqlab-checkpoint", "version": 99}')
    with pytest.raises(ValueError, match=r"checkpoint file .*config.json: expected version 1, received 99"):
        run_family(ckpt)


def test_find_run_dir_and_default_run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_run_json(run, family="vae", model_config={}, train_config=TrainConfig(), data=None)
    ckpt = save_small(run / "checkpoints" / checkpoint_name(1))
    assert find_run_dir(run) == run and find_run_dir(ckpt) == run
    with pytest.raises(ValueError, match=r"run: expected a run directory \(holding run.json\) or a checkpoint "
                                         r"inside one"):
        find_run_dir(tmp_path / "elsewhere")
    name = default_run_dir("gpt")
    assert name.parent.name == "runs" and re.fullmatch(r"gpt-\d{8}-\d{6}", name.name)


def test_truncate_metrics_keeps_the_records_up_to_a_step(tmp_path):
    lines = [{"step": 1, "split": "train"}, {"step": 2, "split": "val"}, {"step": 3, "split": "train"}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 4, "spl')
    assert truncate_metrics(tmp_path, 2) == lines[:2]
    assert (tmp_path / "metrics.jsonl").read_text() == "".join(json.dumps(r) + "\n" for r in lines[:2])
    assert truncate_metrics(tmp_path / "none", 5) == []


# --------------------------------------------------------------------------- resuming


def saved_run(data):
    return {"family": "charlm", "model_config": {"hidden": 8}, "train_config": TrainConfig(lr=0.1).to_dict(),
            "data": data}


def test_resume_compares_the_data_by_identity_only():
    saved = saved_run({"source": "/old/text.txt", "name": "text.txt", "kind": "characters", "characters": 800,
                       "sha256": "a" * 64, "block_size": 64, "val_fraction": 0.1, "vocab_size": 50})
    # a moved copy of the same file: another path and name, the same content
    moved = {**saved["data"], "source": "/new/copy.txt", "name": "copy.txt", "kind": "text", "characters": 801}
    assert resume_differences(saved, "charlm", {"hidden": 8}, TrainConfig(lr=0.1), moved) == []
    # a key that only one side has is not compared (older runs describe less)
    assert resume_differences(saved, "charlm", {"hidden": 8}, TrainConfig(lr=0.1),
                              {"sha256": "a" * 64, "tokenizer": "char"}) == []
    other = {**moved, "sha256": "b" * 64, "block_size": 32}
    assert resume_differences(saved, "charlm", {"hidden": 8}, TrainConfig(lr=0.1), other) == [
        f"data.sha256: saved {'a' * 64!r}, new {'b' * 64!r}", "data.block_size: saved 64, new 32"]
    assert set(DATA_IDENTITY_KEYS) == {"sha256", "block_size", "val_fraction", "vocab_size", "tokenizer",
                                       "split_seed", "side", "channels"}


def test_resume_differences_in_family_model_and_training():
    saved = saved_run(None)
    new = TrainConfig(lr=0.2, device="cpu", precision="fp32", log_every=1, max_seconds=5.0)
    assert resume_differences(saved, "gpt", {"hidden": 16}, new, {"sha256": "x"}) == [
        "family: saved 'charlm', new 'gpt'", "model_config.hidden: saved 8, new 16", "lr: saved 0.1, new 0.2"]
    assert resume_differences(saved, "charlm", {"hidden": 8}, TrainConfig(lr=0.1, device="cpu", log_every=3),
                              None) == []  # device, precision, log_every, max_seconds may change
    with pytest.raises(ValueError, match=r"run file run.json: expected a valid train config"):
        resume_differences({**saved, "train_config": {"speed": 1}}, "charlm", {"hidden": 8}, TrainConfig(), None)


# --------------------------------------------------------------------------- kills while writing or deleting


def test_a_half_deleted_or_truncated_checkpoint_does_not_count(tmp_path):
    run = make_run(tmp_path, best=None)
    ckdir = run / "checkpoints"
    (ckdir / "step-00000400" / "model.safetensors").unlink()  # a deletion killed half way
    assert (ckdir / "step-00000400" / "config.json").is_file()
    assert (ckdir / "step-00000400" / "trainer.json").is_file()
    with open(ckdir / "step-00000300" / "trainer.safetensors", "r+b") as f:
        f.truncate(3)  # a file of the wrong size
    assert [s for s, _ in list_checkpoints(run)] == [100, 200]
    assert latest_checkpoint(run).name == "step-00000200"
    (ckdir / "step-00000200" / "config.json").write_text("{")  # an unreadable header
    assert [s for s, _ in list_checkpoints(run)] == [100]
    # the best one, damaged after it was written, is what loading it says, not silently another one
    write_pointer(run, "best.json", step=400, path=ckdir / "step-00000400", val_loss=1.0)
    assert best_checkpoint(run).name == "step-00000400"
    with pytest.raises(ValueError, match=r"expected model.safetensors \(listed in the manifest\), received no such"):
        load_checkpoint(resolve_checkpoint(run))


def test_prune_hides_a_checkpoint_before_deleting_it(tmp_path, monkeypatch):
    import seqlab.training.rundir as rundir

    run = make_run(tmp_path, best=None)
    seen = []
    original = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        # what a kill at this moment would leave: the checkpoint is gone from its own name
        seen.append((path.name, sorted(p.name for p in (run / "checkpoints").iterdir())))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(rundir.shutil, "rmtree", rmtree)
    removed = prune_checkpoints(run, 2)
    assert [p.name for p in removed] == ["step-00000100", "step-00000200"]
    assert len(seen) == 2
    for (hidden, listing), old in zip(seen, ("step-00000100", "step-00000200")):
        assert re.fullmatch(rf"\.{old}\.del-\d+-[0-9a-f]{{8}}", hidden)
        assert old not in listing
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest.json", "step-00000300",
                                                                      "step-00000400"]


def test_clean_checkpoints_removes_what_a_kill_left(tmp_path):
    from seqlab.training.rundir import clean_checkpoints

    run = make_run(tmp_path, best=None)
    ckdir = run / "checkpoints"
    (ckdir / "step-00000400" / "model.safetensors").unlink()  # half deleted
    shutil.copytree(ckdir / "step-00000100", ckdir / ".step-00000500.tmp-1-abcdef01")  # a write cut short
    shutil.copytree(ckdir / "step-00000100", ckdir / ".step-00000100.del-1-abcdef02")  # a deletion cut short
    (ckdir / ".latest.json.tmp-1-abcdef03").write_text("{")  # a pointer write cut short
    # a replacement cut between its two renames: the old checkpoint is back under its own name
    shutil.move(ckdir / "step-00000300", ckdir / ".step-00000300.old-1-abcdef04")
    (ckdir / "notes.txt").write_text("mine")  # anything else is left alone
    removed = clean_checkpoints(run)
    assert sorted(p.name for p in removed) == [".latest.json.tmp-1-abcdef03", ".step-00000100.del-1-abcdef02",
                                               ".step-00000500.tmp-1-abcdef01", "step-00000400"]
    assert sorted(p.name for p in ckdir.iterdir()) == ["latest.json", "notes.txt", "step-00000100",
                                                      "step-00000200", "step-00000300"]
    assert [s for s, _ in list_checkpoints(run)] == [100, 200, 300]
    assert clean_checkpoints(run) == [] and clean_checkpoints(tmp_path / "none") == []
