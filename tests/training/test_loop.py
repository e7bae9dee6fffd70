"""The training loop (seqlab.training.loop), on a tiny character model with dropout (so the
RNG state matters)."""

import hashlib
import json
import math
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqlab.data.text import load_corpus
from seqlab.training.checkpoint import load_checkpoint
from seqlab.training.config import TrainConfig, lr_at
from seqlab.training.device import autocast_context, resolve_device, resolve_precision
from seqlab.training.loop import (DivergenceError, NonFiniteLossError, clip_gradients, make_optimizer,
                                  tensorboard_available, train)
from seqlab.training.rundir import best_checkpoint, latest_checkpoint, list_checkpoints

TEXT = load_corpus(None).text[:8000]


class CharData:
    """What the loop asks of data, and nothing more: the characters of a text as ids, the
    first 90% for training, the rest for validation, batches of random windows (x, y)."""

    def __init__(self, text, block_size):
        chars = sorted(set(text))
        index = {c: i for i, c in enumerate(chars)}
        ids = torch.tensor([index[c] for c in text], dtype=torch.int64)
        n_train = int(len(ids) * 0.9)
        self.splits = {"train": ids[:n_train], "val": ids[n_train:]}
        self.block_size, self.vocab_size = block_size, len(chars)
        self.tokenizer_json = json.dumps(chars)
        self.description = {"kind": "characters", "characters": len(text), "vocab_size": len(chars),
                            "block_size": block_size, "val_fraction": 0.1,
                            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}

    def get_batch(self, split, batch_size, generator):
        data, T = self.splits[split], self.block_size
        ix = torch.randint(data.numel() - T, (batch_size,), generator=generator)
        windows = data.unfold(0, T + 1, 1)[ix]  # (B, T+1)
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()  # x, y: (B, T)

    def info(self):
        return dict(self.description)


@pytest.fixture(scope="module")
def ds():
    return CharData(TEXT, block_size=8)


class ToyLM(nn.Module):
    """Embedding -> dropout -> linear: a bigram model. ``actions[k]`` runs at the k-th
    training call (= training step k of a fresh run) after the forward pass."""

    def __init__(self, vocab, dim=16, p=0.3, actions=None, scale=1.0, eval_loss=None, sleep=0.0):
        super().__init__()
        self.vocab = vocab
        self.emb = nn.Embedding(vocab, dim)
        self.drop = nn.Dropout(p)
        self.head = nn.Linear(dim, vocab)
        self.actions = actions or {}
        self.scale = scale
        self.eval_loss = eval_loss
        self.sleep = sleep
        self.calls = 0
        self.losses = []  # training losses, one per completed forward pass

    def loss(self, batch):
        x, y = batch
        logits = self.head(self.drop(self.emb(x)))  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, self.vocab), y.reshape(-1)) * self.scale
        metrics = {"tokens": y.numel(), "acc": (logits.argmax(-1) == y).float().mean()}
        if not self.training:
            if self.eval_loss is not None:
                loss = torch.tensor(self.eval_loss)
            return loss, metrics
        self.calls += 1
        if self.sleep:
            time.sleep(self.sleep)
        action = self.actions.get(self.calls)
        if action is not None:
            loss = action(self, loss)
        self.losses.append(loss.item())
        return loss, metrics


def interrupt(model, loss):
    raise KeyboardInterrupt


def make_nan(model, loss):
    return loss * float("nan")


def make_inf_grad(model, loss):
    # sqrt(0 * b) is 0 in the forward pass, but its gradient is inf * 0 = NaN.
    return loss + (model.head.bias * 0).sqrt().sum()


def make_model(vocab, seed=0, **kw):
    torch.manual_seed(seed)
    return ToyLM(vocab, **kw)


def config(**kw):
    base = dict(max_steps=20, eval_every=5, eval_batches=2, batch_size=8, lr=1e-2, warmup_steps=3, log_every=1,
                weight_decay=0.1, clip_norm=0.5, device="cpu", keep_last=2)
    base.update(kw)
    return TrainConfig(**base)


def run(model, ds, cfg, run_dir, **kw):
    kw.setdefault("family", "toy")
    if "model_config" not in kw:
        kw["model_config"] = {"vocab": ds.vocab_size, "dim": 16}
    if "data_info" not in kw:
        kw["data_info"] = ds.info()
    kw.setdefault("progress", False)
    return train(model, ds, cfg, run_dir, **kw)


def metrics(run_dir, split=None):
    lines = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if split is None or r["split"] == split]


def tree_bytes(root):
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def strip_timing(records):
    return [{k: v for k, v in r.items() if k not in ("time", "tokens_per_s", "steps_per_s")} for r in records]


# --------------------------------------------------------------------------- optimizer


def test_weight_decay_only_on_matrices(ds):
    model = make_model(ds.vocab_size)
    opt = make_optimizer(model, config(weight_decay=0.25))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.25 and all(p.dim() >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert opt.param_groups[0]["betas"] == (0.9, 0.99)


# --------------------------------------------------------------------------- clipping


def test_clip_gradients_by_norm_and_by_value():
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    assert clip_gradients([p], clip_norm=1.0) == pytest.approx(5.0)
    assert torch.allclose(p.grad, torch.tensor([0.6, 0.8]), atol=1e-6)

    p.grad = torch.tensor([3.0, -4.0])
    raw = clip_gradients([p], clip_value=2.0, clip_norm=1.0)  # value first: (2, -2), then norm 1
    assert raw == pytest.approx(5.0)
    assert torch.allclose(p.grad, torch.tensor([1.0, -1.0]) / math.sqrt(2), atol=1e-6)

    p.grad = torch.tensor([0.1, -0.2])
    assert clip_gradients([p], clip_value=1.0, clip_norm=1.0) == pytest.approx(math.sqrt(0.05))
    assert torch.equal(p.grad, torch.tensor([0.1, -0.2]))  # below both limits: untouched

    p.grad = torch.tensor([float("inf"), 1.0])
    assert not math.isfinite(clip_gradients([p], clip_value=1.0, clip_norm=1.0))


def spy_on_adamw(monkeypatch):
    seen = []
    original = torch.optim.AdamW.step

    def step(self, *a, **k):
        seen.append([p.grad.detach().clone() for g in self.param_groups for p in g["params"] if p.grad is not None])
        return original(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    return seen


def test_clipping_is_applied_before_the_update(ds, tmp_path, monkeypatch):
    seen = spy_on_adamw(monkeypatch)
    run(make_model(ds.vocab_size, scale=100.0), ds, config(max_steps=5, clip_norm=0.1), tmp_path / "norm")
    raw = [r["grad_norm"] for r in metrics(tmp_path / "norm", "train")]
    assert len(seen) == 5 and min(raw) > 1.0  # the raw gradient is far above the limit ...
    for grads in seen:  # ... and what AdamW receives has norm 0.1
        assert torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item() == pytest.approx(0.1, rel=1e-4)

    seen.clear()
    run(make_model(ds.vocab_size, scale=100.0), ds, config(max_steps=5, clip_norm=None, clip_value=1e-3),
        tmp_path / "value")
    assert len(seen) == 5
    for grads in seen:
        biggest = max(g.abs().max().item() for g in grads)
        assert biggest == pytest.approx(1e-3)  # entries were clamped to the bound


# --------------------------------------------------------------------------- resume, Ctrl-C


def test_resume_reproduces_the_uninterrupted_run_exactly(ds, tmp_path):
    cfg = config(log_every=3)
    straight = make_model(ds.vocab_size, seed=0)
    full = run(straight, ds, cfg, tmp_path / "a")
    assert full.stopped == "max_steps" and full.steps == 20

    first = make_model(ds.vocab_size, seed=0, actions={14: interrupt})  # interrupted mid-step 14
    part = run(first, ds, cfg, tmp_path / "b")
    assert part.stopped == "interrupted" and part.steps == 13
    assert latest_checkpoint(tmp_path / "b").name == "step-00000013"
    second = make_model(ds.vocab_size, seed=123)  # different initial weights: they must be restored
    rest = run(second, ds, cfg, tmp_path / "b", resume=True)
    assert rest.stopped == "max_steps" and rest.steps == 20

    assert len(straight.losses) == 20
    assert first.losses[:13] + second.losses == straight.losses  # every step's loss, exactly
    # the interrupted invocation ended with an evaluation of step 13; everything else is equal
    extra = metrics(tmp_path / "b", "val")[2]
    assert extra["step"] == 13 and part.last_val_loss == extra["loss"]
    assert strip_timing([r for r in metrics(tmp_path / "b") if r != extra]) == strip_timing(metrics(tmp_path / "a"))
    assert [r["step"] for r in metrics(tmp_path / "a", "train")] == [3, 6, 9, 12, 15, 18]
    for (name, p), q in zip(straight.named_parameters(), second.parameters()):
        assert torch.equal(p, q), name
    assert rest.last_val_loss == full.last_val_loss
    assert rest.best_val_loss == min(full.best_val_loss, extra["loss"])
    assert strip_timing([r for r in rest.history if r != extra]) == strip_timing(full.history)
    a = load_checkpoint(latest_checkpoint(tmp_path / "a"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "b"))
    for k in a.state_dict:
        assert torch.equal(a.state_dict[k], b.state_dict[k])
    for pid in a.optimizer_state["state"]:
        for name, value in a.optimizer_state["state"][pid].items():
            assert torch.equal(value, b.optimizer_state["state"][pid][name])


def test_ctrl_c_saves_the_last_completed_step(ds, tmp_path):
    model = make_model(ds.vocab_size, actions={7: interrupt})
    result = run(model, ds, config(), tmp_path)
    assert result.stopped == "interrupted" and result.steps == 6
    assert result.checkpoint == tmp_path / "checkpoints" / "step-00000006"
    assert [s for s, _ in list_checkpoints(tmp_path)] == [5, 6]
    ck = load_checkpoint(result.checkpoint, family="toy")
    assert ck.trainer_state["step"] == 6 and ck.files == {}
    for name, p in model.named_parameters():
        assert torch.equal(ck.state_dict[name], p)
    assert max(r["step"] for r in metrics(tmp_path)) == 6
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["path"] == "step-00000006"

    resumed = run(make_model(ds.vocab_size, seed=5), ds, config(), tmp_path, resume=True)
    assert resumed.stopped == "max_steps" and resumed.steps == 20
    assert [r["step"] for r in metrics(tmp_path, "train")] == list(range(1, 21))


def test_interrupt_at_the_first_step_saves_step_zero(ds, tmp_path):
    model = make_model(ds.vocab_size, actions={1: interrupt})
    result = run(model, ds, config(max_steps=3), tmp_path)
    assert result.stopped == "interrupted" and result.steps == 0
    assert latest_checkpoint(tmp_path).name == "step-00000000"
    resumed = run(make_model(ds.vocab_size), ds, config(max_steps=3), tmp_path, resume=True)
    assert resumed.steps == 3 and resumed.stopped == "max_steps"


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="POSIX signals")
def test_real_sigint_finishes_the_step_then_saves(ds, tmp_path, capsys):
    before = signal.getsignal(signal.SIGINT)

    def sigint(model, loss):
        os.kill(os.getpid(), signal.SIGINT)
        return loss

    result = run(make_model(ds.vocab_size, actions={7: sigint}), ds, config(), tmp_path / "once")
    assert result.stopped == "interrupted" and result.steps == 7  # step 7 was finished
    assert latest_checkpoint(tmp_path / "once").name == "step-00000007"
    assert "Ctrl-C" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before  # the handler is restored

    def sigint_twice(model, loss):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the second one stops at once
        return loss

    result = run(make_model(ds.vocab_size, actions={7: sigint_twice}), ds, config(), tmp_path / "twice")
    assert result.stopped == "interrupted" and result.steps == 6
    assert load_checkpoint(latest_checkpoint(tmp_path / "twice")).trainer_state["step"] == 6
    assert signal.getsignal(signal.SIGINT) is before


# --------------------------------------------------------------------------- non-finite values


def test_nan_loss_stops_without_touching_checkpoints(ds, tmp_path):
    snapshot = {}

    def nan_after_snapshot(model, loss):
        snapshot.update(tree_bytes(tmp_path / "checkpoints"))
        return make_nan(model, loss)

    with pytest.raises(NonFiniteLossError) as err:
        run(make_model(ds.vocab_size, actions={8: nan_after_snapshot}), ds, config(), tmp_path)
    good = tmp_path / "checkpoints" / "step-00000005"
    message = str(err.value)
    assert "training loss at step 8: expected a finite value, received nan" in message
    assert f"last good checkpoint: {good}" in message
    assert isinstance(err.value, ValueError) and err.value.step == 8 and err.value.checkpoint == good
    assert snapshot and tree_bytes(tmp_path / "checkpoints") == snapshot  # not one byte changed
    assert max(r["step"] for r in metrics(tmp_path)) == 7


def test_nan_at_the_first_step_says_nothing_was_saved(ds, tmp_path):
    with pytest.raises(ValueError, match=r"training loss at step 1: expected a finite value, received nan; .*no checkpoint was saved yet"):
        run(make_model(ds.vocab_size, actions={1: make_nan}), ds, config(), tmp_path)
    assert latest_checkpoint(tmp_path) is None


def test_non_finite_gradient_norm_stops(ds, tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"gradient norm at step 3: expected a finite value, received nan"):
        run(make_model(ds.vocab_size, actions={3: make_inf_grad}), ds, config(eval_every=2), tmp_path)
    assert latest_checkpoint(tmp_path).name == "step-00000002"


# --------------------------------------------------------------------------- run directory rules


def test_new_run_into_a_used_directory_is_refused(ds, tmp_path):
    run(make_model(ds.vocab_size), ds, config(max_steps=5), tmp_path)
    before = tree_bytes(tmp_path)
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    with pytest.raises(ValueError, match=r"run_dir: expected a new or empty run directory \(pass --resume to continue this run, or choose another directory\), received .*already holds checkpoints \(latest: step-00000005\)"):
        run(make_model(ds.vocab_size), ds, config(max_steps=5), tmp_path)
    assert tree_bytes(tmp_path) == before
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == mtimes


def test_resume_without_a_checkpoint_is_refused(ds, tmp_path):
    with pytest.raises(ValueError, match=r"resume: expected a run directory holding a checkpoint, received .*which holds none \(start a new run without --resume\)"):
        run(make_model(ds.vocab_size), ds, config(), tmp_path / "new", resume=True)
    assert not (tmp_path / "new").exists()
    run(make_model(ds.vocab_size, actions={3: interrupt}), ds, config(), tmp_path / "old")
    (tmp_path / "old" / "run.json").unlink()
    with pytest.raises(ValueError, match=r"resume: expected the run's run.json in .*old.*, received no such file"):
        run(make_model(ds.vocab_size), ds, config(), tmp_path / "old", resume=True)


def test_resume_with_changed_settings_lists_every_difference(ds, tmp_path):
    run(make_model(ds.vocab_size, actions={4: interrupt}), ds, config(), tmp_path)
    before = tree_bytes(tmp_path)
    with pytest.raises(ValueError, match=r"resume: expected the settings the run was started with .*received different ones: model_config.dim: saved 16, new 32; lr: saved 0.01, new 0.02; seed: saved 1337, new 1"):
        run(make_model(ds.vocab_size), ds, config(lr=0.02, seed=1), tmp_path, resume=True,
            model_config={"vocab": ds.vocab_size, "dim": 32})
    with pytest.raises(ValueError, match=r"family: saved 'toy', new 'other'"):
        run(make_model(ds.vocab_size), ds, config(), tmp_path, resume=True, family="other")
    with pytest.raises(ValueError, match=r"data.sha256: saved '[0-9a-f]{64}', new '[0-9a-f]{64}'"):
        run(make_model(ds.vocab_size), ds, config(), tmp_path, resume=True,
            data_info=CharData(TEXT[:4000], block_size=8).info())
    assert tree_bytes(tmp_path) == before
    # device, precision, log_every and max_seconds do not change the trajectory: allowed.
    result = run(make_model(ds.vocab_size), ds, config(device="auto" if resolve_device("auto").type == "cpu" else "cpu",
                                                       precision="fp32", log_every=5, max_seconds=60.0),
                 tmp_path, resume=True)
    assert result.steps == 20 and result.stopped == "max_steps"


def test_resume_with_a_moved_copy_of_the_same_data(ds, tmp_path):
    info = {**ds.info(), "source": "/old/place/text.txt", "name": "text.txt"}
    run(make_model(ds.vocab_size, actions={4: interrupt}), ds, config(), tmp_path, data_info=info)
    moved = {**info, "source": "/new/place/copy.txt", "name": "copy.txt", "kind": "text"}
    result = run(make_model(ds.vocab_size), ds, config(), tmp_path, resume=True, data_info=moved)
    assert result.steps == 20 and result.stopped == "max_steps"
    assert json.loads((tmp_path / "run.json").read_text())["data"] == moved  # where the data are now
    before = tree_bytes(tmp_path)
    with pytest.raises(ValueError, match=r"resume: expected the settings .*received different ones: "
                                         r"data.sha256: saved '[0-9a-f]{64}', new '0{64}'$"):
        run(make_model(ds.vocab_size), ds, config(), tmp_path, resume=True, data_info={**moved, "sha256": "0" * 64})
    assert tree_bytes(tmp_path) == before


def test_resume_of_a_finished_run_does_nothing(ds, tmp_path):
    first = run(make_model(ds.vocab_size), ds, config(max_steps=5), tmp_path)
    before = tree_bytes(tmp_path / "checkpoints")
    again = run(make_model(ds.vocab_size, seed=3), ds, config(max_steps=5), tmp_path, resume=True)
    assert again.steps == 5 and again.stopped == "max_steps" and again.checkpoint == first.checkpoint
    assert tree_bytes(tmp_path / "checkpoints") == before


def test_bad_arguments(ds, tmp_path):
    with pytest.raises(ValueError, match=r"model: expected a torch.nn.Module with a loss\(batch\) method, received Linear"):
        run(nn.Linear(2, 2), ds, config(), tmp_path)
    with pytest.raises(ValueError, match=r"data: expected an object with get_batch\(split, batch_size, generator\), received str"):
        run(make_model(ds.vocab_size), "text", config(), tmp_path, model_config={}, data_info=None)
    with pytest.raises(ValueError, match=r"cfg: expected a TrainConfig, received dict"):
        run(make_model(ds.vocab_size), ds, {"max_steps": 3}, tmp_path)
    with pytest.raises(ValueError, match=r"model_config: expected JSON-serializable values"):
        run(make_model(ds.vocab_size), ds, config(), tmp_path, model_config={"x": object()})
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"run_dir: expected a directory, received .*file.* \(a file\)"):
        run(make_model(ds.vocab_size), ds, config(), tmp_path / "file")

    class NoTuple(ToyLM):
        def loss(self, batch):
            return super().loss(batch)[0]

    with pytest.raises(ValueError, match=r"model.loss\(batch\): expected a tuple \(loss tensor, metrics dict\), received Tensor"):
        run(NoTuple(ds.vocab_size), ds, config(), tmp_path / "r1")

    class Reserved(ToyLM):
        def loss(self, batch):
            loss, m = super().loss(batch)
            return loss, {**m, "lr": 1.0}

    with pytest.raises(ValueError, match=r"model.loss\(batch\) metrics: expected string names other than .*received 'lr'"):
        run(Reserved(ds.vocab_size), ds, config(), tmp_path / "r2")


# --------------------------------------------------------------------------- stopping, metrics


def test_early_stopping(ds, tmp_path):
    model = make_model(ds.vocab_size, eval_loss=1.0)  # the validation loss never improves
    result = run(model, ds, config(max_steps=100, eval_every=2, patience=2), tmp_path)
    assert result.stopped == "early_stop" and result.steps == 6  # evals at 2 (best), 4, 6
    assert result.best_val_loss == 1.0 and result.last_val_loss == 1.0
    assert best_checkpoint(tmp_path).name == "step-00000002"
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 4, 6]  # keep_last=2 plus the best
    assert load_checkpoint(result.checkpoint).trainer_state["bad_evals"] == 2
    again = run(make_model(ds.vocab_size, eval_loss=1.0), ds, config(max_steps=100, eval_every=2, patience=2),
                tmp_path, resume=True)
    assert again.stopped == "early_stop" and again.steps == 6


def test_max_seconds(ds, tmp_path):
    model = make_model(ds.vocab_size, sleep=0.02)
    result = run(model, ds, config(max_steps=10_000, eval_every=1000, max_seconds=0.3), tmp_path)
    assert result.stopped == "max_seconds"
    assert 1 <= result.steps < 100
    assert result.checkpoint == latest_checkpoint(tmp_path)
    assert load_checkpoint(result.checkpoint).trainer_state["step"] == result.steps


def test_metrics_jsonl_and_run_json(ds, tmp_path):
    cfg = config(max_steps=12, log_every=4, eval_every=6, eval_batches=3)
    model = make_model(ds.vocab_size)
    result = run(model, ds, cfg, tmp_path)
    records = metrics(tmp_path)
    assert strip_timing(records) == strip_timing(result.history)
    assert [(r["step"], r["split"]) for r in records] == [(4, "train"), (6, "val"), (8, "train"), (12, "train"),
                                                         (12, "val")]
    train_lines = metrics(tmp_path, "train")
    for r in train_lines:
        assert set(r) == {"step", "split", "loss", "lr", "tokens", "acc", "grad_norm", "tokens_per_s",
                          "steps_per_s", "time"}
        assert r["lr"] == lr_at(r["step"], cfg)
        window = model.losses[r["step"] - 4: r["step"]]
        assert r["loss"] == pytest.approx(sum(window) / 4, rel=1e-12)  # mean over the steps since the last line
        assert r["tokens"] == 8 * 8 and r["tokens_per_s"] > 0 and r["time"] >= 0
    val = metrics(tmp_path, "val")
    assert set(val[0]) == {"step", "split", "loss", "tokens", "acc", "time"}
    assert result.last_val_loss == val[-1]["loss"]
    assert result.best_val_loss == min(r["loss"] for r in val)
    assert load_checkpoint(best_checkpoint(tmp_path)).trainer_state["best_val_loss"] == result.best_val_loss
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["family"] == "toy" and info["model_config"] == {"vocab": ds.vocab_size, "dim": 16}
    assert info["train_config"] == cfg.to_dict() and info["data"] == ds.info()


def test_eval_batches_are_the_same_every_time(ds, tmp_path):
    seen = []

    class Recording(ToyLM):
        def loss(self, batch):
            if not self.training:
                seen.append(batch[0].clone())
            return super().loss(batch)

    run(Recording(ds.vocab_size), ds, config(max_steps=4, eval_every=2, eval_batches=2), tmp_path)
    assert len(seen) == 4 and torch.equal(seen[0], seen[2]) and torch.equal(seen[1], seen[3])
    assert not torch.equal(seen[0], seen[1])


def test_short_run_learns(ds, tmp_path):
    cfg = config(max_steps=80, eval_every=40, batch_size=16, lr=3e-2, clip_norm=1.0)
    result = run(make_model(ds.vocab_size, p=0.0), ds, cfg, tmp_path)
    uniform = math.log(ds.vocab_size)  # the loss of a model that knows nothing
    assert result.last_val_loss < uniform - 0.8


def test_files_are_saved_with_every_checkpoint(ds, tmp_path):
    run(make_model(ds.vocab_size), ds, config(max_steps=5), tmp_path, files={"tokenizer.json": ds.tokenizer_json})
    ck = load_checkpoint(latest_checkpoint(tmp_path))
    assert ck.files == {"tokenizer.json": ds.tokenizer_json}


def test_progress_bar_goes_to_stderr(ds, tmp_path, capfd):
    run(make_model(ds.vocab_size), ds, config(max_steps=5, log_every=1), tmp_path, progress=True)
    out, err = capfd.readouterr()
    assert out == ""
    assert "5/5" in err and "loss" in err and "tok/s" in err


# --------------------------------------------------------------------------- the final evaluation


def sigint(model, loss):
    os.kill(os.getpid(), signal.SIGINT)  # a first Ctrl-C: finish this step, then stop
    return loss


class EvalNoise(ToyLM):
    """Its evaluation draws from the global generator (as a model that samples might)."""

    def loss(self, batch):
        if not self.training:
            torch.rand(3)
        return super().loss(batch)


def test_a_run_cut_by_max_seconds_before_its_first_evaluation_has_a_validation_loss(ds, tmp_path):
    seen = []
    result = run(make_model(ds.vocab_size), ds, config(max_steps=100, eval_every=50, max_seconds=1e-9), tmp_path,
                 on_eval=seen.append)
    assert result.stopped == "max_seconds" and result.steps == 1 and result.run_dir == tmp_path
    val = metrics(tmp_path, "val")
    assert [r["step"] for r in val] == [1] and set(val[0]) == {"step", "split", "loss", "tokens", "acc", "time"}
    assert math.isfinite(val[0]["loss"])
    assert result.last_val_loss == result.best_val_loss == val[0]["loss"]
    assert seen == [1]  # the on_eval hook runs for it too
    assert strip_timing(result.history) == strip_timing(metrics(tmp_path))
    state = load_checkpoint(result.checkpoint).trainer_state
    assert state["step"] == 1 and state["last_val_loss"] == result.last_val_loss and state["bad_evals"] == 0
    assert json.loads((tmp_path / "checkpoints" / "best.json").read_text())["path"] == "step-00000001"


@pytest.mark.parametrize("press", ["first", "second"])
def test_ctrl_c_before_the_first_evaluation_still_evaluates(ds, tmp_path, press):
    if press == "first" and (not hasattr(signal, "SIGINT") or sys.platform == "win32"):
        pytest.skip("POSIX signals")
    seen = []
    # a first Ctrl-C during step 3 finishes it; a second one (KeyboardInterrupt) drops it
    action, step = (sigint, 3) if press == "first" else (interrupt, 2)
    result = run(make_model(ds.vocab_size, actions={3: action}), ds, config(eval_every=10), tmp_path,
                 on_eval=seen.append)
    assert result.stopped == "interrupted" and result.steps == step
    assert [r["step"] for r in metrics(tmp_path, "val")] == [step] and seen == [step]
    assert result.last_val_loss == metrics(tmp_path, "val")[0]["loss"] == result.best_val_loss
    assert result.checkpoint.name == f"step-{step:08d}"
    assert load_checkpoint(result.checkpoint).trainer_state["last_val_loss"] == result.last_val_loss


def test_ctrl_c_during_the_final_evaluation_skips_it_and_still_saves(ds, tmp_path):
    class EvalInterrupted(ToyLM):
        stop_eval = False

        def loss(self, batch):
            if not self.training and self.stop_eval:
                raise KeyboardInterrupt  # a third press, during the final evaluation
            return super().loss(batch)

    def stop(model, loss):
        model.stop_eval = True
        raise KeyboardInterrupt

    torch.manual_seed(0)
    result = run(EvalInterrupted(ds.vocab_size, actions={3: stop}), ds, config(eval_every=10), tmp_path)
    assert result.stopped == "interrupted" and result.steps == 2 and result.last_val_loss is None
    assert result.checkpoint == tmp_path / "checkpoints" / "step-00000002"
    assert load_checkpoint(result.checkpoint).trainer_state["step"] == 2 and metrics(tmp_path, "val") == []
    resumed = run(make_model(ds.vocab_size), ds, config(eval_every=10), tmp_path, resume=True)
    assert resumed.steps == 20 and [r["step"] for r in metrics(tmp_path, "val")] == [10, 20]

    # cut short in the on_eval hook: the evaluation itself was made and counts
    def hook(step):
        raise KeyboardInterrupt

    result = run(make_model(ds.vocab_size, actions={3: interrupt}), ds, config(eval_every=10), tmp_path / "hook",
                 on_eval=hook)
    assert result.steps == 2 and [r["step"] for r in metrics(tmp_path / "hook", "val")] == [2]
    assert result.last_val_loss is not None and result.checkpoint.name == "step-00000002"
    assert load_checkpoint(result.checkpoint).trainer_state["last_eval_step"] == 2


def test_the_final_evaluation_does_not_count_toward_patience(ds, tmp_path):
    cfg = config(max_steps=100, eval_every=2, patience=2)
    straight = run(make_model(ds.vocab_size, eval_loss=1.0), ds, cfg, tmp_path / "a")
    assert straight.stopped == "early_stop" and straight.steps == 6  # evals at 2 (best), 4, 6

    # Interrupted after step 3: its evaluation, no better than step 2's, is not a bad one ...
    part = run(make_model(ds.vocab_size, eval_loss=1.0, actions={4: interrupt}), ds, cfg, tmp_path / "b")
    assert part.steps == 3 and part.last_val_loss == 1.0
    assert [r["step"] for r in metrics(tmp_path / "b", "val")] == [2, 3]
    assert load_checkpoint(part.checkpoint).trainer_state["bad_evals"] == 0
    rest = run(make_model(ds.vocab_size, eval_loss=1.0), ds, cfg, tmp_path / "b", resume=True)
    assert rest.stopped == "early_stop" and rest.steps == 6

    # ... and one that is better (after step 5) does not reset the count either.
    def better_then_interrupt(model, loss):
        model.eval_loss = 0.5
        raise KeyboardInterrupt

    part = run(make_model(ds.vocab_size, eval_loss=1.0, actions={6: better_then_interrupt}), ds, cfg, tmp_path / "c")
    assert part.steps == 5 and part.best_val_loss == part.last_val_loss == 0.5
    assert best_checkpoint(tmp_path / "c").name == "step-00000005"  # the best pointer follows it
    assert load_checkpoint(part.checkpoint).trainer_state["bad_evals"] == 1  # the evaluation at step 4
    rest = run(make_model(ds.vocab_size, eval_loss=1.0), ds, cfg, tmp_path / "c", resume=True)
    assert rest.stopped == "early_stop" and rest.steps == 6
    assert rest.best_val_loss == 0.5 and rest.last_val_loss == 1.0
    assert best_checkpoint(tmp_path / "c").name == "step-00000005"


def test_resume_after_max_seconds_cuts_equals_the_uninterrupted_run(ds, tmp_path):
    cfg = config(max_steps=8, eval_every=4, log_every=1)
    torch.manual_seed(0)
    straight = EvalNoise(ds.vocab_size)
    full = run(straight, ds, cfg, tmp_path / "a")

    cut = config(max_steps=8, eval_every=4, log_every=1, max_seconds=1e-9)  # stops after every step
    torch.manual_seed(0)
    models = [EvalNoise(ds.vocab_size)]
    result = run(models[0], ds, cut, tmp_path / "b")
    while result.stopped == "max_seconds" and len(models) < 20:
        assert result.last_val_loss is not None and metrics(tmp_path / "b", "val")[-1]["step"] == result.steps
        models.append(EvalNoise(ds.vocab_size, p=0.3))
        result = run(models[-1], ds, cut, tmp_path / "b", resume=True)
    assert result.stopped == "max_steps" and len(models) == 8  # one step per invocation
    assert [loss for m in models for loss in m.losses] == straight.losses  # every step's loss, exactly
    assert strip_timing(metrics(tmp_path / "b", "train")) == strip_timing(metrics(tmp_path / "a", "train"))
    val = [r for r in metrics(tmp_path / "b", "val") if r["step"] in (4, 8)]
    assert strip_timing(val) == strip_timing(metrics(tmp_path / "a", "val"))
    assert [r["step"] for r in metrics(tmp_path / "b", "val")] == list(range(1, 9))
    for (name, p), q in zip(straight.named_parameters(), models[-1].parameters()):
        assert torch.equal(p, q), name
    assert result.last_val_loss == full.last_val_loss


def test_a_scheduled_evaluation_cut_short_is_made_in_full_at_the_end(ds, tmp_path):
    cfg = config(max_steps=8, eval_every=4, log_every=1, eval_batches=2)
    torch.manual_seed(0)
    straight = EvalNoise(ds.vocab_size)
    run(straight, ds, cfg, tmp_path / "a")

    class CutEval(EvalNoise):
        eval_calls = 0

        def loss(self, batch):
            if not self.training:
                self.eval_calls += 1
                if self.eval_calls == 2:  # a second Ctrl-C half way through the evaluation of step 4
                    raise KeyboardInterrupt
            return super().loss(batch)

    torch.manual_seed(0)
    first = CutEval(ds.vocab_size)
    part = run(first, ds, cfg, tmp_path / "b")
    assert part.stopped == "interrupted" and part.steps == 4
    assert [r["step"] for r in metrics(tmp_path / "b", "val")] == [4]
    second = EvalNoise(ds.vocab_size)
    run(second, ds, cfg, tmp_path / "b", resume=True)
    assert first.losses + second.losses == straight.losses
    assert strip_timing(metrics(tmp_path / "b")) == strip_timing(metrics(tmp_path / "a"))  # no extra record


# --------------------------------------------------------------------------- devices


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_autocast_and_gpu_run_resumes_on_cpu(ds, tmp_path):
    assert resolve_precision("cuda", "auto") == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    with autocast_context("cuda", "bf16"):
        y = torch.ones(4, 4, device="cuda") @ torch.ones(4, 4, device="cuda")
    assert y.dtype == torch.bfloat16
    with autocast_context("cuda", "fp32"):
        y = torch.ones(4, 4, device="cuda") @ torch.ones(4, 4, device="cuda")
    assert y.dtype == torch.float32
    cfg = config(device="cuda", precision="bf16")
    part = run(make_model(ds.vocab_size, actions={8: interrupt}), ds, cfg, tmp_path)
    assert part.steps == 7
    ck = load_checkpoint(part.checkpoint, map_location="cpu")
    assert all(t.device.type == "cpu" for t in ck.state_dict.values())
    rest = run(make_model(ds.vocab_size), ds, config(device="cpu", precision="fp32"), tmp_path, resume=True)
    assert rest.steps == 20 and rest.stopped == "max_steps"


# --------------------------------------------------------------------------- a checkpoint's trainer state


def rewrite_trainer_state(ckpt_dir, edit):
    """Change trainer.json of a checkpoint (and its manifest entry, so only the content is wrong)."""
    f = Path(ckpt_dir) / "trainer.json"
    doc = json.loads(f.read_text())
    edit(doc["trainer"])
    data = (json.dumps(doc, indent=2) + "\n").encode()
    f.write_bytes(data)
    header = json.loads((Path(ckpt_dir) / "config.json").read_text())
    header["manifest"]["trainer.json"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (Path(ckpt_dir) / "config.json").write_text(json.dumps(header))


def _set(key, value):
    def edit(state):
        parent = state
        *path, last = key.split(".")
        for k in path:
            parent = parent[k]
        parent[last] = value
    return edit


def _drop(key):
    return lambda state: state.pop(key)


@pytest.mark.parametrize("edit, field, expected, received", [
    (_set("step", "abc"), "step", "an integer >= 0", "'abc'"),
    (_set("step", -1), "step", "an integer >= 0", "-1"),
    (_drop("step"), "step", "an integer >= 0", "nothing (the field is missing)"),
    (_set("best_val_loss", "low"), "best_val_loss", "a number or null", "'low'"),
    (_set("best_step", 1.5), "best_step", "an integer >= 0 or null", "1.5"),
    (_set("last_val_loss", [1]), "last_val_loss", "a number or null", "[1]"),
    (_set("patience_best_val_loss", True), "patience_best_val_loss", "a number or null", "True"),
    (_set("bad_evals", "2"), "bad_evals", "an integer >= 0", "'2'"),
    (_set("last_eval_step", -2), "last_eval_step", "an integer >= -1", "-2"),
    (_set("elapsed", -3.0), "elapsed", "a finite number of seconds >= 0", "-3.0"),
    (_set("window", []), "window", "an object {count, loss, metrics}", "[]"),
    (_set("window.count", "x"), "window.count", "an integer >= 0", "'x'"),
    (_set("window.metrics", {"acc": "high"}), "window.metrics.acc", "a number", "'high'"),
    (_set("diverge_reference", "x"), "diverge_reference", "a finite number or null", "'x'"),
    (_set("rng", {}), "rng.python", "Python's random state", "nothing (the field is missing)"),
    (_drop("rng"), "rng", "an object of generator states", "nothing (the field is missing)"),
    (_set("rng.numpy.keys", "k"), "rng.numpy.keys", "a list of integers", "'k'"),
    (_set("rng.torch", [1, 2]), "rng.torch", "torch's CPU generator state", "[1, 2]"),
    (_set("rng.python", {"__tuple__": [3, [1, 2], None]}), "rng", "the generator states seqlab saved",
     "state vector is the wrong size"),
])
def test_a_bad_trainer_state_is_refused_in_one_line_naming_the_field(ds, tmp_path, edit, field, expected, received):
    run(make_model(ds.vocab_size, actions={4: interrupt}), ds, config(), tmp_path)
    ckpt = latest_checkpoint(tmp_path)
    rewrite_trainer_state(ckpt, edit)
    with pytest.raises(ValueError) as err:
        run(make_model(ds.vocab_size), ds, config(), tmp_path, resume=True)
    message = str(err.value)
    assert message.startswith(f"checkpoint {ckpt}: trainer.json field {field!r}: expected {expected}")
    assert f"received {received}" in message and "\n" not in message


def test_a_trainer_state_of_seqlab_0_1_without_the_newer_fields_resumes(ds, tmp_path):
    run(make_model(ds.vocab_size, actions={4: interrupt}), ds, config(), tmp_path)

    def old(state):
        for key in ("patience_best_val_loss", "diverge_reference"):
            state.pop(key)

    rewrite_trainer_state(latest_checkpoint(tmp_path), old)
    assert run(make_model(ds.vocab_size), ds, config(), tmp_path, resume=True).steps == 20


# --------------------------------------------------------------------------- divergence


def blow_up_at(step, factor=1e6):
    """Scales every weight by ``factor`` at ``step``'s forward pass: the next steps' losses explode."""

    def action(model, loss):
        for p in model.parameters():
            p.data.mul_(factor)  # .data: not an in-place change that autograd would refuse
        return loss

    return {step: action}


def test_a_diverging_loss_stops_the_run_and_keeps_the_last_good_checkpoint(ds, tmp_path):
    snapshot = {}

    def snap_then_blow_up(model, loss):
        snapshot.update(tree_bytes(tmp_path / "checkpoints"))
        return blow_up_at(7)[7](model, loss)

    cfg = config(eval_every=5, clip_norm=None)
    model = make_model(ds.vocab_size, p=0.0, actions={7: snap_then_blow_up})
    with pytest.raises(DivergenceError) as err:
        run(model, ds, cfg, tmp_path)
    good = tmp_path / "checkpoints" / "step-00000005"
    reference = model.losses[0]
    message = str(err.value)
    assert isinstance(err.value, ValueError) and "\n" not in message
    assert err.value.step == 8 and err.value.checkpoint == good and err.value.reference == reference
    assert message.startswith(f"training loss at step 8: expected at most {reference + 100 * reference:.4g} "
                              f"(the first step's training loss {reference:.4g} + diverge_factor 100 x its size), "
                              f"received ")
    assert f"last good checkpoint: {good}" in message
    assert model.losses[7] > 1000 * reference
    assert snapshot and tree_bytes(tmp_path / "checkpoints") == snapshot  # nothing saved after the divergence
    assert load_checkpoint(good).trainer_state["diverge_reference"] == reference

    # the guard off: the run goes on (its losses are finite, only huge)
    again = run(make_model(ds.vocab_size, p=0.0, actions=blow_up_at(7)), ds, config(eval_every=5, clip_norm=None,
                                                                                    diverge_factor=None),
                tmp_path / "off")
    assert again.steps == 20 and again.last_val_loss > 100 * reference


def test_a_diverged_validation_loss_is_not_saved(ds, tmp_path):
    # the weights blow up during the update of step 5: its evaluation sees them first
    class LateBlowUp(ToyLM):
        def loss(self, batch):
            if not self.training and self.calls == 5:
                for p in self.parameters():
                    p.data.mul_(1e6)
            return super().loss(batch)

    torch.manual_seed(0)
    with pytest.raises(DivergenceError, match=r"^validation loss at step 5: expected at most .*last good checkpoint: "
                                              r".*step-00000004\)$"):
        run(LateBlowUp(ds.vocab_size, p=0.0), ds, config(eval_every=1, clip_norm=None), tmp_path)
    assert latest_checkpoint(tmp_path).name == "step-00000004"
    assert max(r["step"] for r in metrics(tmp_path, "val")) == 4


def test_the_divergence_reference_survives_a_resume(ds, tmp_path):
    # interrupted after step 3; the resumed run diverges at step 9 against step 1's loss
    cfg = config(clip_norm=None)
    first = make_model(ds.vocab_size, p=0.0, actions={4: interrupt})
    run(first, ds, cfg, tmp_path)
    assert load_checkpoint(latest_checkpoint(tmp_path)).trainer_state["diverge_reference"] == first.losses[0]
    second = make_model(ds.vocab_size, p=0.0, actions=blow_up_at(5))  # its 5th call is step 8
    with pytest.raises(DivergenceError) as err:
        run(second, ds, cfg, tmp_path, resume=True)
    assert err.value.step == 9 and err.value.reference == first.losses[0]


def test_diverge_factor_is_checked():
    with pytest.raises(ValueError, match=r"diverge_factor: expected a number > 0.0, received 0"):
        config(diverge_factor=0)
    assert config(diverge_factor=None).diverge_factor is None


# --------------------------------------------------------------------------- what a run shows


def test_the_run_directory_is_named_when_training_starts(ds, tmp_path, capfd):
    class Peek(ToyLM):
        def loss(self, batch):
            if self.training and self.calls == 0:
                print("first step", file=sys.stderr, flush=True)
            return super().loss(batch)

    torch.manual_seed(0)
    run(Peek(ds.vocab_size, actions={3: interrupt}), ds, config(), tmp_path, progress=True)
    err = capfd.readouterr().err
    assert err.splitlines()[0] == f"training toy into {tmp_path}"
    assert err.index(f"training toy into {tmp_path}") < err.index("first step")
    run(make_model(ds.vocab_size), ds, config(), tmp_path, resume=True, progress=True)
    assert capfd.readouterr().err.splitlines()[0] == f"resuming toy in {tmp_path} at step 2"
    run(make_model(ds.vocab_size), ds, config(), tmp_path / "quiet", progress=False)
    assert capfd.readouterr().err == ""


def test_progress_into_a_file_is_plain_lines(ds, tmp_path, capfd):
    run(make_model(ds.vocab_size), ds, config(max_steps=5, log_every=1), tmp_path, progress=True)
    err = capfd.readouterr().err
    assert "\r" not in err and "\x1b" not in err  # no frames of a bar
    lines = err.splitlines()
    assert lines[0] == f"training toy into {tmp_path}"
    assert re.fullmatch(r"toy: step 5/5 \(100%\), loss \d+\.\d{4}, lr \S+, [\d,]+ tok/s, val \d+\.\d{4}, "
                        r"\d+ s elapsed", lines[-1])


# --------------------------------------------------------------------------- starting over what a kill left


def test_a_run_cleans_up_what_a_kill_left_in_its_checkpoints(ds, tmp_path):
    run(make_model(ds.vocab_size, actions={8: interrupt}), ds, config(), tmp_path)
    ckdir = tmp_path / "checkpoints"
    assert [s for s, _ in list_checkpoints(tmp_path)] == [5, 7]
    (ckdir / "step-00000007" / "model.safetensors").unlink()  # killed while pruning it
    (ckdir / ".step-00000009.tmp-1-0123abcd").mkdir()  # killed while writing
    (ckdir / ".step-00000009.tmp-1-0123abcd" / "model.safetensors").write_bytes(b"x")
    result = run(make_model(ds.vocab_size), ds, config(), tmp_path, resume=True)
    assert result.steps == 20
    assert not (ckdir / ".step-00000009.tmp-1-0123abcd").exists()
    assert sorted(p.name for p in ckdir.iterdir() if not p.name.endswith(".json")) == ["step-00000015",
                                                                                        "step-00000020"]

    # a new run into a folder where a killed run left only incomplete checkpoints
    fresh = tmp_path / "fresh" / "checkpoints"
    (fresh / "step-00000005").mkdir(parents=True)
    (fresh / "step-00000005" / "config.json").write_text("{}")
    assert run(make_model(ds.vocab_size), ds, config(max_steps=5), tmp_path / "fresh").steps == 5
    assert [s for s, _ in list_checkpoints(tmp_path / "fresh")] == [5]
    assert load_checkpoint(fresh / "step-00000005").trainer_state["step"] == 5


# --------------------------------------------------------------------------- TensorBoard


def scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(run_dir) / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.skipif(not tensorboard_available(), reason="needs the tensorboard package")
def test_tensorboard_gets_the_curves_and_a_resume_does_not_repeat_steps(ds, tmp_path):
    cfg = config(max_steps=10, log_every=2, eval_every=5)
    result = run(make_model(ds.vocab_size), ds, cfg, tmp_path / "a")
    curves = scalars(tmp_path / "a")
    for tag in ("train/loss", "train/lr", "train/tokens_per_s", "train/steps_per_s", "train/grad_norm",
                "train/acc", "val/loss", "val/acc"):
        assert tag in curves, tag
    train = [r for r in result.history if r["split"] == "train"]
    assert curves["train/loss"] == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in train]
    assert [s for s, _ in curves["val/loss"]] == [5, 10]
    assert curves["val/loss"][-1][1] == pytest.approx(result.last_val_loss, rel=1e-6)

    # interrupted after step 7 (evaluated there), resumed: every step once, as in the straight run
    run(make_model(ds.vocab_size, actions={8: interrupt}), ds, cfg, tmp_path / "b")
    run(make_model(ds.vocab_size), ds, cfg, tmp_path / "b", resume=True)
    resumed = scalars(tmp_path / "b")
    assert [s for s, _ in resumed["train/loss"]] == [2, 4, 6, 8, 10]
    assert [v for _, v in resumed["train/loss"]] == [v for _, v in curves["train/loss"]]
    assert [s for s, _ in resumed["val/loss"]] == [5, 7, 10]


def test_tensorboard_can_be_turned_off_and_asking_for_it_without_the_package_is_an_error(ds, tmp_path,
                                                                                         monkeypatch):
    import seqlab.training.loop as loop_mod

    run(make_model(ds.vocab_size, actions={2: interrupt}), ds, config(max_steps=3, tensorboard=False),
        tmp_path / "off")
    assert not (tmp_path / "off" / "tensorboard").exists()
    # a setting of this invocation only: a resume may change it
    assert run(make_model(ds.vocab_size), ds, config(max_steps=3), tmp_path / "off", resume=True).steps == 3
    monkeypatch.setattr(loop_mod, "tensorboard_available", lambda: False)
    with pytest.raises(ValueError, match=r"^tensorboard: expected the tensorboard package \(pip install "
                                         r"seqlab\[tensorboard\]\), or --no-tensorboard, received a Python "
                                         r"without it$"):
        run(make_model(ds.vocab_size), ds, config(max_steps=3, tensorboard=True), tmp_path / "on")
    assert not (tmp_path / "on").exists()
    run(make_model(ds.vocab_size), ds, config(max_steps=3), tmp_path / "auto")  # default: on where installed
    assert not (tmp_path / "auto" / "tensorboard").exists()


@pytest.mark.skipif(not tensorboard_available(), reason="needs the tensorboard package")
def test_tensorboard_is_closed_when_a_run_fails(ds, tmp_path, monkeypatch):
    from torch.utils.tensorboard import SummaryWriter

    closed = []
    real_close = SummaryWriter.close
    monkeypatch.setattr(SummaryWriter, "close", lambda self: (closed.append(self), real_close(self)))
    with pytest.raises(NonFiniteLossError):
        run(make_model(ds.vocab_size, actions={4: make_nan}), ds, config(log_every=1), tmp_path)
    assert len(closed) == 1
    assert [s for s, _ in scalars(tmp_path)["train/loss"]] == [1, 2, 3]  # written before the error
