"""The checkpoint format: round trips, manifest checks, atomic directory writes."""

import json
import os
import random
from pathlib import Path

import pytest
import torch
from torch import nn

import seqlab.training.checkpoint as ck
from seqlab.training.checkpoint import load_checkpoint, read_checkpoint_header, save_checkpoint
from seqlab.training.rundir import checkpoint_name, latest_checkpoint, prune_checkpoints


def small_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(4, 3, generator=g),
        "b": torch.randn(3, generator=g, dtype=torch.float64),
        "idx": torch.arange(5),
        "flag": torch.tensor([True, False]),
    }


def save_small(path, **kw):
    kw.setdefault("family", "charlm")
    kw.setdefault("config", {"vocab_size": 3, "dims": [4, 3]})
    kw.setdefault("state_dict", small_state())
    return save_checkpoint(path, **kw)


def tree_bytes(root):
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- round trips


def test_round_trip_weights_config_and_files(tmp_path):
    sd = small_state()
    path = save_small(tmp_path / "ck", state_dict=sd, files={"tokenizer.json": '{"chars": ["a", "é"]}'})
    assert sorted(os.listdir(path)) == ["config.json", "model.safetensors", "tokenizer.json"]
    header = json.loads((path / "config.json").read_text())
    assert header["format"] == "seqlab-checkpoint" and header["version"] == 1
    assert header["family"] == "charlm" and header["seqlab_version"]
    assert set(header["manifest"]) == {"model.safetensors", "tokenizer.json"}
    assert header["manifest"]["model.safetensors"]["bytes"] == (path / "model.safetensors").stat().st_size

    loaded = load_checkpoint(path, family="charlm")
    assert loaded.family == "charlm" and loaded.config == {"vocab_size": 3, "dims": [4, 3]}
    assert set(loaded.state_dict) == set(sd)
    for k, v in sd.items():
        assert loaded.state_dict[k].dtype == v.dtype
        assert torch.equal(loaded.state_dict[k], v)
    assert loaded.files == {"tokenizer.json": '{"chars": ["a", "é"]}'}
    assert loaded.trainer_state is None and loaded.optimizer_state is None and loaded.step is None


def test_tied_and_noncontiguous_tensors_save(tmp_path):
    emb = nn.Embedding(5, 4)
    head = nn.Linear(4, 5, bias=False)
    head.weight = emb.weight  # tied weights share storage
    model = nn.ModuleDict({"emb": emb, "head": head})
    sd = model.state_dict()
    sd["t"] = torch.randn(3, 4).t()  # non-contiguous
    sd["slice"] = emb.weight.detach()[1:3]  # a view into the tied storage
    path = save_checkpoint(tmp_path / "ck", family="tied", config={}, state_dict=sd)
    loaded = load_checkpoint(path).state_dict
    for k, v in sd.items():
        assert torch.equal(loaded[k], v)
    fresh = nn.ModuleDict({"emb": nn.Embedding(5, 4), "head": nn.Linear(4, 5, bias=False)})
    fresh["head"].weight = fresh["emb"].weight
    fresh.load_state_dict({k: loaded[k] for k in ("emb.weight", "head.weight")})
    assert torch.equal(fresh["emb"].weight, emb.weight)


def test_adamw_state_round_trips_exactly(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    opt = torch.optim.AdamW(
        [{"params": [model[0].weight, model[2].weight], "weight_decay": 0.1},
         {"params": [model[0].bias, model[2].bias], "weight_decay": 0.0}], lr=1e-2, betas=(0.9, 0.99))
    x = torch.randn(8, 3)
    for _ in range(3):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    state = opt.state_dict()
    trainer_state = {"step": 3, "rng": random.getstate(), "best": float("inf"), "torch": torch.get_rng_state(),
                     "nested": {"pair": (1, 2.5), "none": None}}
    path = save_checkpoint(tmp_path / "ck", family="mlp", config={}, state_dict=model.state_dict(),
                           trainer_state=trainer_state, optimizer_state=state)
    assert sorted(os.listdir(path)) == ["config.json", "model.safetensors", "trainer.json", "trainer.safetensors"]
    loaded = load_checkpoint(path)
    got = loaded.optimizer_state
    assert got["param_groups"] == state["param_groups"]  # tuples (betas) preserved
    assert set(got["state"]) == set(state["state"]) == {0, 1, 2, 3}
    for pid, entry in state["state"].items():
        assert set(got["state"][pid]) == {"step", "exp_avg", "exp_avg_sq"}
        for name, value in entry.items():
            assert isinstance(got["state"][pid][name], torch.Tensor)
            assert got["state"][pid][name].dtype == value.dtype and got["state"][pid][name].shape == value.shape
            assert torch.equal(got["state"][pid][name], value)
    assert got["state"][0]["step"].dim() == 0  # scalar step tensors included
    ts = loaded.trainer_state
    assert ts["rng"] == trainer_state["rng"] and ts["best"] == float("inf") and loaded.step == 3
    assert ts["nested"] == {"pair": (1, 2.5), "none": None}
    assert torch.equal(ts["torch"], trainer_state["torch"]) and ts["torch"].dtype == torch.uint8
    # The tensors live in trainer.safetensors under flat keys, not in the JSON.
    from safetensors.torch import load_file

    keys = set(load_file(str(path / "trainer.safetensors")))
    assert "optim.state.3.exp_avg" in keys and "optim.state.0.step" in keys and "trainer.torch" in keys

    # A fresh optimizer loaded from the checkpoint takes the same next step as the original.
    model2 = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    model2.load_state_dict(loaded.state_dict)
    opt2 = torch.optim.AdamW(
        [{"params": [model2[0].weight, model2[2].weight], "weight_decay": 0.1},
         {"params": [model2[0].bias, model2[2].bias], "weight_decay": 0.0}], lr=1e-2, betas=(0.9, 0.99))
    opt2.load_state_dict(got)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).pow(2).mean().backward()
        o.step()
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)


def test_save_replaces_an_existing_checkpoint(tmp_path):
    path = save_small(tmp_path / "ck", config={"v": 1})
    save_small(path, config={"v": 2}, state_dict=small_state(1))
    loaded = load_checkpoint(path)
    assert loaded.config == {"v": 2} and torch.equal(loaded.state_dict["w"], small_state(1)["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temporary or old directories left


def test_load_with_map_location(tmp_path):
    path = save_small(tmp_path / "ck")
    assert load_checkpoint(path, map_location=torch.device("cpu")).state_dict["w"].device.type == "cpu"
    with pytest.raises(ValueError, match=r"map_location: expected a device.*received 'not-a-device'"):
        load_checkpoint(path, map_location="not-a-device")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_checkpoint_loads_on_cpu_and_back(tmp_path):
    model = nn.Linear(3, 2).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(4, 3, device="cuda")).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "ck", family="lin", config={}, state_dict=model.state_dict(),
                           optimizer_state=opt.state_dict(), trainer_state={"cuda": torch.cuda.get_rng_state_all()})
    cpu = load_checkpoint(path, map_location="cpu")
    assert all(t.device.type == "cpu" for t in cpu.state_dict.values())
    cpu_model = nn.Linear(3, 2)
    cpu_model.load_state_dict(cpu.state_dict)
    assert torch.equal(cpu_model.weight, model.weight.cpu())
    cpu_opt = torch.optim.AdamW(cpu_model.parameters(), lr=1e-2)
    cpu_opt.load_state_dict(cpu.optimizer_state)
    gpu = load_checkpoint(path, map_location="cuda")
    assert all(t.device.type == "cuda" for t in gpu.state_dict.values())


# --------------------------------------------------------------------------- input errors


def test_save_rejects_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match=r"family: expected a non-empty string, received ''"):
        save_small(tmp_path / "a", family="")
    with pytest.raises(ValueError, match=r"state_dict\['w'\]: expected a torch.Tensor, received list"):
        save_small(tmp_path / "a", state_dict={"w": [1, 2]})
    with pytest.raises(ValueError, match=r"config: expected JSON-serializable values"):
        save_small(tmp_path / "a", config={"f": object()})
    with pytest.raises(ValueError, match=r"files: expected plain file names.*received '../x.json'"):
        save_small(tmp_path / "a", files={"../x.json": "{}"})
    with pytest.raises(ValueError, match=r"files: expected names other than config.json.*received 'config.json'"):
        save_small(tmp_path / "a", files={"config.json": "{}"})
    with pytest.raises(ValueError, match=r"trainer_state: expected JSON values, tuples or tensors, received set"):
        save_small(tmp_path / "a", trainer_state={"s": {1, 2}})
    with pytest.raises(ValueError, match=r"optimizer_state: expected an optimizer state_dict"):
        save_small(tmp_path / "a", optimizer_state={"lr": 1})
    assert not (tmp_path / "a").exists() and list(tmp_path.iterdir()) == []


def test_load_missing_path_and_non_checkpoints(tmp_path):
    with pytest.raises(ValueError, match=r"checkpoint: expected an existing checkpoint directory, received .*nope.* \(no such path\)"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match=r"checkpoint: expected a checkpoint directory, received .*file.txt.* \(not a directory\)"):
        load_checkpoint(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"expected a directory holding config.json, received .*empty.*not a checkpoint"):
        load_checkpoint(tmp_path / "empty")


def test_read_checkpoint_header_reads_only_config_json(tmp_path):
    path = save_small(tmp_path / "ck", files={"tokenizer.json": "{}"})
    (path / "model.safetensors").unlink()  # the header alone is read: no weights needed
    header = read_checkpoint_header(str(path))
    assert header["format"] == "seqlab-checkpoint" and header["family"] == "charlm"
    assert header["config"] == {"vocab_size": 3, "dims": [4, 3]}
    assert set(header["manifest"]) == {"model.safetensors", "tokenizer.json"}
    with pytest.raises(ValueError, match=r"checkpoint: expected an existing checkpoint directory, received .*nope"):
        read_checkpoint_header(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"expected a directory holding config.json, received .*empty.*not a checkpoint"):
        read_checkpoint_header(tmp_path / "empty")


def test_load_bad_config_json(tmp_path):
    path = save_small(tmp_path / "ck")
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config.json: expected readable JSON, received an unreadable file"):
        load_checkpoint(path)
    (path / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match=r"config.json: expected format 'seqlab-checkpoint', received 'something-else'"):
        load_checkpoint(path)
    (path / "config.json").write_text(json.dumps({"format": "seqlab-checkpoint", "version": 99}))
    with pytest.raises(ValueError, match=r"config.json: expected version 1, received 99"):
        load_checkpoint(path)


def test_wrong_family(tmp_path):
    path = save_small(tmp_path / "ck", family="gpt")
    with pytest.raises(ValueError, match=r"checkpoint family: expected 'charlm', received 'gpt'"):
        load_checkpoint(path, family="charlm")
    with pytest.raises(ValueError, match=r"checkpoint family: expected one of 'lstm', 'gru', received 'gpt'"):
        load_checkpoint(path, family=["lstm", "gru"])
    assert load_checkpoint(path, family=("bert", "gpt")).family == "gpt"


def test_corrupted_model_file_is_caught_by_the_hash(tmp_path):
    path = save_small(tmp_path / "ck")
    f = path / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF  # flip bits in the last tensor's data: still parses, wrong values
    f.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model.safetensors: expected sha256 [0-9a-f]{64} \(manifest\), received sha256 [0-9a-f]{64}: the file is corrupted"):
        load_checkpoint(path)


def test_truncated_model_file_is_caught_by_the_size(tmp_path):
    path = save_small(tmp_path / "ck")
    f = path / "model.safetensors"
    size = f.stat().st_size
    f.write_bytes(f.read_bytes()[: size // 2])
    with pytest.raises(ValueError, match=rf"model.safetensors: expected {size} bytes \(manifest size\), received {size // 2} bytes: the file is truncated"):
        load_checkpoint(path)


def test_missing_listed_file(tmp_path):
    path = save_small(tmp_path / "ck", files={"tokenizer.json": "{}"})
    (path / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match=r"expected tokenizer.json \(listed in the manifest\), received no such file"):
        load_checkpoint(path)


def test_unparsable_safetensors_with_a_matching_manifest(tmp_path):
    path = save_small(tmp_path / "ck")
    garbage = b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json"
    (path / "model.safetensors").write_bytes(garbage)
    header = json.loads((path / "config.json").read_text())
    import hashlib

    header["manifest"]["model.safetensors"] = {"bytes": len(garbage), "sha256": hashlib.sha256(garbage).hexdigest()}
    (path / "config.json").write_text(json.dumps(header))
    with pytest.raises(ValueError, match=r"model.safetensors: expected a valid safetensors file, received one that could not be parsed"):
        load_checkpoint(path)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    path = save_small(tmp_path / "ck", optimizer_state=torch.optim.SGD([nn.Parameter(torch.ones(2))], lr=0.1).state_dict())

    def forbidden(*a, **k):
        raise AssertionError("torch.load / pickle must not be used")

    import pickle

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    assert load_checkpoint(path).optimizer_state["param_groups"][0]["lr"] == 0.1


# --------------------------------------------------------------------------- atomicity


def test_failed_write_leaves_no_directory_and_keeps_the_old_one(tmp_path, monkeypatch):
    run = tmp_path / "checkpoints"
    good = save_small(run / checkpoint_name(10), state_dict=small_state(0))
    before = tree_bytes(run)
    real = ck.write_bytes_synced
    calls = []

    def failing(path, data):
        calls.append(Path(path).name)
        if len(calls) == 2:  # fail in the middle of the checkpoint (second file)
            raise OSError("disk full")
        real(path, data)

    monkeypatch.setattr(ck, "write_bytes_synced", failing)
    with pytest.raises(OSError, match="disk full"):
        save_small(run / checkpoint_name(20), state_dict=small_state(1),
                   trainer_state={"step": 20}, optimizer_state={"state": {}, "param_groups": []})
    assert not (run / checkpoint_name(20)).exists()
    assert sorted(p.name for p in run.iterdir()) == [checkpoint_name(10)]  # temporary directory removed
    assert tree_bytes(run) == before
    assert torch.equal(load_checkpoint(good).state_dict["w"], small_state(0)["w"])

    # The same failure while replacing the checkpoint in place keeps the old one intact.
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        save_small(good, state_dict=small_state(1), files={"tokenizer.json": "{}"})
    assert tree_bytes(run) == before


def test_crash_mid_write_leaves_only_a_hidden_temporary(tmp_path, monkeypatch):
    """A hard crash runs no clean-up: simulate it by making both the write and rmtree fail."""
    run = tmp_path
    save_small(run / "checkpoints" / checkpoint_name(5))
    real = ck.write_bytes_synced

    def crash(path, data):
        if Path(path).name == "config.json":
            raise SystemExit("killed")
        real(path, data)

    monkeypatch.setattr(ck, "write_bytes_synced", crash)
    monkeypatch.setattr(ck.shutil, "rmtree", lambda *a, **k: None)
    with pytest.raises(SystemExit):
        save_small(run / "checkpoints" / checkpoint_name(6))
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert checkpoint_name(6) not in names
    assert any(n.startswith(".step-00000006.tmp-") for n in names)  # the half-written one is hidden
    assert latest_checkpoint(run).name == checkpoint_name(5)
    monkeypatch.undo()
    prune_checkpoints(run, keep_last=3)  # removes the leftover
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [checkpoint_name(5)]


def test_failed_rename_restores_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_small(tmp_path / "ck", config={"v": 1})
    before = tree_bytes(tmp_path)
    real = os.rename
    calls = []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # old moved aside; now the new one fails to move into place
            raise OSError("rename failed")
        real(src, dst)

    monkeypatch.setattr(ck.os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        save_small(path, config={"v": 2})
    monkeypatch.undo()
    assert tree_bytes(tmp_path) == before
    assert load_checkpoint(path).config == {"v": 1}


# --------------------------------------------------------------------------- durability, memory


def record_fsync_and_renames(monkeypatch):
    """Every fsync (as the path of the file or folder synced) and every rename/replace, in order."""
    events = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def rename(src, dst):
        events.append(("rename", os.fspath(src), os.fspath(dst)))
        return real_rename(src, dst)

    def replace(src, dst):
        events.append(("rename", os.fspath(src), os.fspath(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    return events


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd to name synced files")
def test_every_file_and_folder_is_synced_before_the_rename_that_publishes_it(tmp_path, monkeypatch):
    from seqlab.training.rundir import write_pointer

    events = record_fsync_and_renames(monkeypatch)
    run = tmp_path / "run"
    path = save_small(run / "checkpoints" / checkpoint_name(7), trainer_state={"step": 7},
                      files={"tokenizer.json": "{}"})
    write_pointer(run, "latest.json", step=7, path=path, val_loss=1.0)
    renames = [i for i, e in enumerate(events) if e[0] == "rename"]
    assert len(renames) == 2
    publish, pointer = (events[i] for i in renames)
    tmp = Path(publish[1])
    assert publish[2] == str(path) and tmp.name.startswith(".step-00000007.tmp-")
    synced_before = {e[1] for e in events[:renames[0]] if e[0] == "fsync"}
    names = {"config.json", "model.safetensors", "trainer.json", "trainer.safetensors", "tokenizer.json"}
    assert {str(tmp / n) for n in names} | {str(tmp)} <= synced_before  # every file, then the folder
    # the new folders (run/, run/checkpoints/) were made durable in their parents before that
    assert {str(tmp_path), str(run)} <= synced_before
    assert ("fsync", str(run / "checkpoints")) in events[renames[0] + 1:renames[1]]  # the rename itself
    # the pointer: its temporary file synced before it replaces latest.json, the folder after
    assert pointer[2] == str(run / "checkpoints" / "latest.json")
    assert ("fsync", pointer[1]) in events[renames[0] + 1:renames[1]]
    assert ("fsync", str(run / "checkpoints")) in events[renames[1] + 1:]


def test_a_file_of_the_wrong_size_is_refused_without_reading_it(tmp_path):
    import tracemalloc

    path = save_small(tmp_path / "ck")
    big = 256 * 2**20
    with open(path / "model.safetensors", "r+b") as f:
        f.truncate(big)  # sparse: 256 MiB that take no disk space
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=rf"model.safetensors: expected \d+ bytes \(manifest size\), "
                                             rf"received {big} bytes: the file is truncated or corrupted"):
            load_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20  # the file was not read


def test_a_huge_config_json_is_refused_without_reading_it(tmp_path, monkeypatch):
    path = save_small(tmp_path / "ck")
    with open(path / "config.json", "r+b") as f:
        f.truncate(ck.MAX_HEADER_BYTES + 1)

    def no_reading(self, *a, **k):
        raise AssertionError("the file must not be read")

    monkeypatch.setattr(Path, "read_text", no_reading)
    monkeypatch.setattr(Path, "read_bytes", no_reading)
    with pytest.raises(ValueError, match=rf"config.json: expected at most {ck.MAX_HEADER_BYTES} bytes, received "
                                         rf"{ck.MAX_HEADER_BYTES + 1} bytes"):
        load_checkpoint(path)
