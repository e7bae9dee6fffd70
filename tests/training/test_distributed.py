"""Data-parallel training (``seqlab.training.distributed``): N processes with B/N items each follow
the single process's run with batch B (loss curve and weights to 1e-10 in float64), resume under
another number of processes, stop together on a Ctrl-C of one rank, end when one rank crashes
with the last checkpoint intact, and refuse what cannot be split.

The processes are forked from the test (gloo on the CPU, the environment torchrun would set, a
free port on the loopback address); the multi-node test runs two real ``torchrun`` "nodes"."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import seqlab
from seqlab.training import distributed, loop
from seqlab.training.checkpoint import load_checkpoint
from seqlab.training.rundir import checkpoint_complete, latest_checkpoint

import distributed_helpers as helpers
from distributed_helpers import free_port, records, resume_in_one_process, run_ranks, single, stop_at

ROOT = Path(__file__).resolve().parents[2]
B = 4  # the global batch: 2 processes x 2 items
TRAIN = dict(max_steps=6, eval_every=2, log_every=1, eval_batches=2, device="cpu", batch_size=B)
TEXT = dict(preset="cpu-tiny", block_size=16, warmup_steps=2)
FAMILIES = {"gpt": TEXT, "lstm": TEXT}


# the comparison of this file: float64 weights in both runs
assert_same_run = functools.partial(helpers.assert_same_run, float64=True)


@pytest.mark.parametrize("command", list(FAMILIES))
def test_two_processes_with_half_the_batch_each_equal_one_process(command, tmp_path):
    options = dict(FAMILIES[command], **TRAIN)
    one = single(command, tmp_path / "one", options)
    assert one.steps == 6
    results = run_ranks(2, command, tmp_path / "two", options)
    assert results == {0: None, 1: None}, results
    assert_same_run(tmp_path / "one", tmp_path / "two")
    # rank 0 alone wrote the run, one line per record; each rank took half of the batch, and the
    # logged token count is the global one (the sum of the ranks')
    train = [r for r in records(tmp_path / "two") if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert {r["tokens"] for r in train} == {B * TEXT["block_size"]}


def test_a_ctrl_c_on_one_rank_stops_all_after_the_same_step_and_resumes_in_one_process(tmp_path):
    """Rank 1 alone sees a Ctrl-C during step 3: both stop after step 3 (rank 0 would otherwise
    go on and wait for rank 1 in vain), evaluate it and rank 0 saves; one plain process resumes
    the run to step 6 and equals the uninterrupted run."""
    options = dict(TEXT, **TRAIN)
    single("gpt", tmp_path / "straight", options)
    results = run_ranks(2, "gpt", tmp_path / "cut", options, fault="ctrl-c:2:1")
    assert results == {0: None, 1: None}, results
    assert load_checkpoint(latest_checkpoint(tmp_path / "cut")).step == 3
    rest = resume_in_one_process(tmp_path / "cut")
    assert rest.steps == 6 and rest.stopped == "max_steps"
    # the interrupted invocation's extra evaluation of step 3 is the one record more
    assert_same_run(tmp_path / "straight", tmp_path / "cut", skip=((3, "val"),))


def test_a_single_process_run_resumes_under_two_processes(tmp_path, monkeypatch):
    options = dict(TEXT, **TRAIN)
    single("gpt", tmp_path / "straight", options)
    stop_at(monkeypatch, 3)
    part = single("gpt", tmp_path / "cut", options)
    monkeypatch.undo()
    assert part.steps == 3 and part.stopped == "interrupted"
    results = run_ranks(2, "gpt", tmp_path / "cut", options, resume=True)
    assert results == {0: None, 1: None}, results
    assert_same_run(tmp_path / "straight", tmp_path / "cut", skip=((3, "val"),))


def test_a_crash_of_one_rank_ends_the_job_with_the_last_checkpoint_intact(tmp_path):
    """Rank 1 raises before step 5; rank 0, waiting in a collective, does not hang (gloo reports
    the closed connection, or the timeout of 20 s ends the wait); step 4's checkpoint is whole."""
    options = dict(TEXT, **TRAIN)
    results = run_ranks(2, "gpt", tmp_path / "crash", options, fault="crash:4:1", timeout=90)
    assert "rank 1 crashed before step 5" in (results.get(1) or "")
    assert results.get(0) is not None  # rank 0 stopped with an error of its own, not a hang
    last = latest_checkpoint(tmp_path / "crash")
    assert last is not None and checkpoint_complete(last)
    ckpt = load_checkpoint(last)
    assert ckpt.step == 4 and ckpt.optimizer_state is not None


def torchrun_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in distributed.ENV}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)
    return env


class _OwnStepWithoutGroup(torch.nn.Module):
    """A model with its own update rule whose train_step takes no group= (as a family from outside seqlab might be)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))

    def loss(self, batch):
        return self.w.sum(), {}

    def train_step(self, batch, *, lr, generator=None):
        return 0.0, {}


class _Batches:
    def get_batch(self, split, batch_size, generator=None):
        return torch.zeros(batch_size, 2)


def test_families_with_their_own_update_rule_are_refused_in_one_line(monkeypatch, tmp_path):
    """A model with its own update rule whose train_step takes no group= (no family of seqlab
    any more; see tests/training/test_distributed_own_step.py, test_distributed_ppo.py and
    test_distributed_rlhf.py for the RBM, the GAN, control's PPO and RLHF's PPO, which split)
    under torchrun's environment is refused before any process group is made."""
    import torch.distributed as dist

    from seqlab.training.config import TrainConfig

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError) as e:
        loop.train(_OwnStepWithoutGroup(), _Batches(), TrainConfig(batch_size=2, max_steps=1, device="cpu"),
                   tmp_path / "c", family="own-step", model_config={}, progress=False)
    message = str(e.value)
    assert "\n" not in message and "own-step under torchrun" in message and "train_step" in message
    assert not dist.is_initialized() and distributed.current() is None
    assert not (tmp_path / "c").exists()


def test_a_batch_that_does_not_split_evenly_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match=r"batch_size: expected a multiple of the number of processes \(3\)"):
        seqlab.train("gpt", out=tmp_path / "r", progress=False, **dict(TEXT, **TRAIN))
    assert not (tmp_path / "r").exists()


# the control family with a train_step that takes no group= (what RLHF's PPO was before), then the CLI
_WITHOUT_GROUP = """
import sys
from seqlab.cli import main
from seqlab.tasks.control import ControlAgent
real = ControlAgent.train_step
def train_step(self, batch, *, lr, optimizer, generator, weight_decay=0.0):
    return real(self, batch, lr=lr, optimizer=optimizer, generator=generator, weight_decay=weight_decay)
ControlAgent.train_step = train_step
raise SystemExit(main(sys.argv[1:]))
"""


def test_the_cli_refuses_a_family_with_its_own_update_rule(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_GROUP, "train", "control", "--preset", "cpu-tiny",
                           "--max-steps", "1", "--batch-size", "2", "--out", str(tmp_path / "control"), "--quiet"],
                          env=torchrun_env(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                                           MASTER_PORT=str(free_port())),
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqlab: error: control under torchrun"), proc.stderr


def test_no_torchrun_environment_means_no_process_group(tmp_path):
    import torch.distributed as dist

    assert not distributed.launched() and distributed.is_main()
    seqlab.train("gpt", out=tmp_path / "plain", progress=False, **dict(TEXT, **dict(TRAIN, max_steps=1)))
    assert not dist.is_initialized()


def test_two_nodes_on_the_loopback_address(tmp_path):
    """``torchrun --nnodes 2 --node-rank R --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:PORT``
    twice, as the docs write it (docs/scaling.md): the job trains, rank 0 writes the run, and
    the loss curve is one process's (float32 here: to rounding)."""
    port = free_port()
    flags = ["gpt", "--preset", "cpu-tiny", "--block-size", "16", "--batch-size", str(B), "--warmup-steps", "2",
             "--max-steps", "4", "--eval-every", "2", "--log-every", "1", "--eval-batches", "2", "--device", "cpu",
             "--quiet"]
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(r),
                               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                               "--nproc-per-node", "1", "-m", "seqlab", "train", *flags, "--out",
                               str(tmp_path / "two")], env=torchrun_env(), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in (0, 1)]
    outputs = [n.communicate(timeout=300)[0] for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], outputs
    subprocess.run([sys.executable, "-m", "seqlab", "train", *flags, "--out", str(tmp_path / "one")],
                   env=torchrun_env(), cwd=tmp_path, check=True, capture_output=True, timeout=300)
    one, two = records(tmp_path / "one"), records(tmp_path / "two")
    assert [(r["step"], r["split"]) for r in one] == [(r["step"], r["split"]) for r in two]
    for x, y in zip(one, two):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5)
    assert load_checkpoint(latest_checkpoint(tmp_path / "two")).step == 4


@pytest.mark.slow
def test_ctrl_c_to_torchrun_stops_every_rank_after_the_same_step_and_saves_it(tmp_path):
    """SIGINT to torchrun (what Ctrl-C in its terminal sends): torchrun forwards it to each
    worker; they stop after the same step, evaluate it, rank 0 saves, and the run resumes."""
    import signal
    import time

    flags = ["gpt", "--preset", "cpu-tiny", "--block-size", "16", "--batch-size", str(B), "--max-steps", "100000",
             "--eval-every", "1000", "--log-every", "1", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]
    job = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                            "--master-port", str(free_port()), "-m", "seqlab", "train", *flags],
                           env=torchrun_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.2)
    job.send_signal(signal.SIGINT)
    output = job.communicate(timeout=120)[0]
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    last = records(tmp_path / "run")[-1]
    assert ckpt.step >= 3 and last == {**last, "step": ckpt.step, "split": "val"}, output
    assert "Ctrl-C" in output
