"""The control family's PPO under torchrun (``seqlab.tasks.control_ppo``): rank r of N steps
environments r E/N .. (r+1) E/N - 1 of the run's E, the rollout is gathered, each minibatch's
gradient is split across the ranks and averaged. Two processes with E/2 environments each
follow the one-process run with E environments in float64 to 1e-10 (discrete and continuous
actions, an episode's time limit, minibatches that do not split evenly), every rank holds the
same weights, a run resumes under another number of processes, and E % N != 0 is refused in
one line.

The ranks are forked as in tests/training/test_distributed_own_step.py (whose helpers this uses)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seqlab.tasks import control_ppo
from seqlab.training import distributed
from seqlab.training.checkpoint import load_checkpoint
from seqlab.training.rundir import latest_checkpoint
import distributed_helpers as helpers
from distributed_helpers import assert_ranks_hold_the_same_weights, records, resume_in_one_process, single, stop_at
from test_distributed_own_step import run_ranks

E = 4  # environments: 2 processes x 2
TRAIN = dict(max_steps=4, eval_every=2, log_every=1, eval_batches=1, device="cpu", batch_size=E)
# cartpole: discrete actions, an LSTM policy, observations normalised; minibatches=3 cuts the
# 8 chunks (E T / L = 4 x 16 / 8) into 3, 3 and 2, which split 2+1, 2+1 and 1+1 over the ranks
CARTPOLE = dict(preset="cpu-tiny", env="cartpole-masked", minibatches=3, lr=3e-3)
# pendulum: Gaussian actions, a GRU with a critic of its own; 4 rollouts of 64 steps pass the
# 200-step time limit (the value bootstrapped at truncation)
PENDULUM = dict(preset="cpu-tiny", env="pendulum-masked", policy="gru", separate_critic=True, n_steps=64,
                chunk_len=16, minibatches=2, lr=3e-3)


def assert_same_run(a: Path, b: Path, steps: int, tol: float = 1e-10) -> None:
    """The same records and the same last checkpoint (weights, buffers: the environments'
    states, Adam's state), to ``tol``."""
    helpers.assert_same_run(a, b, steps=steps, tol=tol)


@pytest.mark.parametrize("options", [CARTPOLE, PENDULUM], ids=["cartpole-lstm", "pendulum-gru"])
def test_two_processes_with_half_the_environments_each_equal_one_process(options, tmp_path):
    single("control", tmp_path / "one", dict(options, **TRAIN))
    assert run_ranks(2, "control", tmp_path / "two", dict(options, **TRAIN)) == {0: None, 1: None}
    assert_same_run(tmp_path / "one", tmp_path / "two", TRAIN["max_steps"])
    held = assert_ranks_hold_the_same_weights(tmp_path / "two")
    assert held["roll_env"].shape[0] == E and held["roll_env"].dtype == torch.float64
    train = [r for r in records(tmp_path / "two") if r["split"] == "train"]
    assert len({r["loss"] for r in train}) == TRAIN["max_steps"]  # the run moved
    assert train[-1]["env_steps"] == TRAIN["max_steps"] * E * (options.get("n_steps") or 16)
    if options is PENDULUM:  # the time limit was reached: episodes ended, their returns logged
        assert held["roll_env"][:, 0].min() >= 2 and train[-1]["return"] < 0
    # every float the ranks computed is in float64 (the test would compare float32 roundings otherwise)
    assert all(t.dtype == torch.float64 for k, t in held.items() if k.startswith(("core", "actor")))


def test_a_two_process_run_resumes_in_one_process(tmp_path, monkeypatch):
    """The checkpoint holds all E environments (gathered from the ranks): one process resumes
    a run two processes stopped, and the whole equals the uninterrupted one-process run."""
    options = dict(CARTPOLE, **TRAIN)
    single("control", tmp_path / "straight", options)
    stop_at(monkeypatch, 2)
    assert run_ranks(2, "control", tmp_path / "cut", options) == {0: None, 1: None}
    monkeypatch.undo()
    assert load_checkpoint(latest_checkpoint(tmp_path / "cut")).step == 2
    resume_in_one_process(tmp_path / "cut")
    assert_same_run(tmp_path / "straight", tmp_path / "cut", TRAIN["max_steps"])


def test_environments_that_do_not_split_evenly_are_refused_in_one_line(tmp_path):
    results = run_ranks(2, "control", tmp_path / "odd", dict(CARTPOLE, **dict(TRAIN, batch_size=3)))
    for rank in (0, 1):
        last = (results.get(rank) or "").strip().splitlines()[-1]
        assert "ValueError: batch_size: expected a multiple of the number of processes (2)" in last
    assert not (tmp_path / "odd").exists()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sampling_draws_what_torch_draws(dtype):
    """``sample`` (the noise for the whole batch, each rank keeping its rows) gives, in one
    process, exactly torch.multinomial's and torch.randn's draws: one-process runs are unchanged."""
    logits = torch.randn(64, 5, dtype=dtype)
    dist = torch.distributions.Categorical(logits=logits)
    for seed in range(5):
        want = torch.multinomial(dist.probs, 1, generator=torch.Generator().manual_seed(seed))[:, 0]
        got = control_ppo.sample(dist, True, torch.Generator().manual_seed(seed))
        assert torch.equal(got, want)
    gauss = torch.distributions.Normal(logits, torch.full_like(logits, 0.5))
    g = torch.Generator().manual_seed(3)
    want = logits + 0.5 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(control_ppo.sample(gauss, False, g), want, rtol=0, atol=0)


def test_sampling_keeps_each_ranks_rows_of_the_whole_batchs_draw():
    """Rank r of 2, holding rows r N .. (r+1) N - 1: its actions are those rows of the
    one-process draw (the groups here are stand-ins: ``sample`` needs only rows and world_size)."""
    logits = torch.randn(8, 3, dtype=torch.float64)
    whole = control_ppo.sample(torch.distributions.Categorical(logits=logits), True, torch.Generator().manual_seed(1))
    gauss = torch.distributions.Normal(logits, torch.ones_like(logits))
    whole_g = control_ppo.sample(gauss, False, torch.Generator().manual_seed(1))
    for rank in (0, 1):
        group = distributed.Group(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"), backend="gloo")
        rows = group.rows(4)
        mine = control_ppo.sample(torch.distributions.Categorical(logits=logits[rows]), True,
                                  torch.Generator().manual_seed(1), group)
        assert torch.equal(mine, whole[rows])
        mine_g = control_ppo.sample(torch.distributions.Normal(logits[rows], torch.ones_like(logits[rows])), False,
                                    torch.Generator().manual_seed(1), group)
        torch.testing.assert_close(mine_g, whole_g[rows], rtol=0, atol=0)


def test_group_part_splits_like_tensor_split():
    for n in range(0, 9):
        for world in (1, 2, 3, 4):
            pieces = torch.arange(n).tensor_split(world)
            for rank in range(world):
                group = distributed.Group(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"),
                                          backend="gloo")
                assert torch.equal(torch.arange(n)[group.part(n)], pieces[rank]), (n, world, rank)
