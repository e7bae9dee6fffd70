"""Families with their own update rule under torchrun (``seqlab.training.distributed``): a model
whose ``train_step`` takes ``group=`` splits its own update; 2 processes with B/2 items each
follow the one-process run with batch B in float64 to 1e-10 (the RBM's CD-k and PCD-k, the GAN
without BatchNorm); with BatchNorm the GAN's ranks hold identical weights and stay close to one
process; a model whose train_step takes no group= is refused in one line. (Control's PPO:
tests/training/test_distributed_ppo.py; RLHF's PPO: tests/training/test_distributed_rlhf.py.)

The ranks are forked from the test with the environment torchrun sets (gloo, the loopback
address), as in tests/training/test_distributed.py."""

from __future__ import annotations

import functools

import pytest
from torch import nn

from seqlab.training import distributed

import distributed_helpers as helpers
from distributed_helpers import assert_ranks_hold_the_same_weights, records, single, stop_at

B = 4  # the global batch: 2 processes x 2 items
TRAIN = dict(max_steps=4, eval_every=2, log_every=1, eval_batches=2, device="cpu", batch_size=B)
RBM = dict(preset="cpu-tiny", hidden_size=8, lr=0.1)
GAN = dict(preset="cpu-tiny", noise_size=4, hidden_size=4, lr=1e-3)


# every rank writes the weights it holds at the end (the tests compare them bit for bit)
run_ranks = functools.partial(helpers.run_ranks, keep_weights=True)
assert_same_run = functools.partial(helpers.assert_same_run, steps=TRAIN["max_steps"], float64=True)


@pytest.mark.parametrize("persistent", [True, False], ids=["pcd", "cd"])
def test_rbm_two_processes_with_half_the_batch_each_equal_one_process(persistent, tmp_path):
    """CD-1 and PCD-1 (n_chains = B: each rank runs half of the chains): the loss curve (the
    stochastic pseudo-likelihood), the validation figures, W, b, c and the chains' states."""
    options = dict(RBM, persistent=persistent, **TRAIN)
    single("rbm", tmp_path / "one", options)
    assert run_ranks(2, "rbm", tmp_path / "two", options) == {0: None, 1: None}
    assert_same_run(tmp_path / "one", tmp_path / "two")
    held = assert_ranks_hold_the_same_weights(tmp_path / "two")
    assert held["h_chain"].shape == ((B, 8) if persistent else (0, 8))
    # the run moved: the losses change from step to step
    assert len({r["loss"] for r in records(tmp_path / "two") if r["split"] == "train"}) == TRAIN["max_steps"]


def test_a_one_process_pcd_run_resumes_under_two_processes(tmp_path, monkeypatch):
    """The checkpoint holds all n_chains chains; two processes split them on resume and the run
    equals the uninterrupted one-process run."""
    options = dict(RBM, **TRAIN)
    single("rbm", tmp_path / "straight", options)
    stop_at(monkeypatch, 2)
    part = single("rbm", tmp_path / "cut", options)
    monkeypatch.undo()
    assert part.steps == 2 and part.stopped == "interrupted"
    assert run_ranks(2, "rbm", tmp_path / "cut", options, resume=True) == {0: None, 1: None}
    assert_same_run(tmp_path / "straight", tmp_path / "cut")


def _without_batch_norm(monkeypatch) -> None:
    """G's BatchNorm layers replaced by identities (in this process and the ranks forked from it)."""
    from seqlab.generative import gan

    real = gan.Generator.__init__

    def init(self, cfg):
        real(self, cfg)
        for i, layer in enumerate(self.net):
            if isinstance(layer, nn.BatchNorm2d):
                self.net[i] = nn.Identity()

    monkeypatch.setattr(gan.Generator, "__init__", init)


def test_gan_without_batch_norm_two_processes_equal_one_process(tmp_path, monkeypatch):
    """D's and G's gradients averaged after each backward pass, each rank its rows of the real
    batch and of every noise draw (training and validation): Adam's state and both networks
    equal one process's. G's BatchNorm is taken out: its batch statistics are per rank (below)."""
    _without_batch_norm(monkeypatch)
    options = dict(GAN, **TRAIN)
    single("gan", tmp_path / "one", options)
    assert run_ranks(2, "gan", tmp_path / "two", options) == {0: None, 1: None}
    assert_same_run(tmp_path / "one", tmp_path / "two")
    held = assert_ranks_hold_the_same_weights(tmp_path / "two")
    assert not any("running_mean" in k for k in held)


def test_gan_with_batch_norm_ranks_agree_and_stay_close_to_one_process(tmp_path):
    """With BatchNorm each rank normalises by its own B/2 items, so the run is not the
    one-process run: every rank holds the same weights and running statistics (bit for bit),
    and the logged losses stay near one process's."""
    options = dict(GAN, **TRAIN)
    single("gan", tmp_path / "one", options)
    assert run_ranks(2, "gan", tmp_path / "two", options) == {0: None, 1: None}
    held = assert_ranks_hold_the_same_weights(tmp_path / "two")
    assert any("running_mean" in k for k in held)
    one, two = records(tmp_path / "one"), records(tmp_path / "two")
    assert [(r["step"], r["split"]) for r in one] == [(r["step"], r["split"]) for r in two]
    for x, y in zip(one, two):
        assert y["loss"] == pytest.approx(x["loss"], rel=0.05), (x["step"], x["split"])
    # and not equal: the batch statistics do differ (this test would hide nothing if they did not)
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(one, two)) > 1e-10


def test_rbm_chains_that_do_not_split_evenly_are_refused_in_one_line(tmp_path):
    results = run_ranks(2, "rbm", tmp_path / "odd", dict(RBM, n_chains=3, **TRAIN))
    for rank in (0, 1):
        last = (results.get(rank) or "").strip().splitlines()[-1]
        assert "ValueError: n_chains under torchrun: expected a multiple of the number of processes (2)" in last


class _OwnStep(nn.Module):
    def train_step(self, batch, *, lr, generator=None):
        return 0.0, {}


class _SplitStep(_OwnStep):
    def train_step(self, batch, *, lr, generator=None, group=None):
        return 0.0, {}


def test_which_own_step_models_split():
    from seqlab.energy.rbm import RBM as RBMModel
    from seqlab.generative.gan import GAN as GANModel
    from seqlab.tasks.control import ControlAgent, ControlConfig

    assert distributed.splits_own_step(_SplitStep()) and not distributed.splits_own_step(_OwnStep())
    assert not distributed.splits_own_step(nn.Linear(2, 2))  # no train_step at all
    assert distributed.splits_own_step(RBMModel(visible_size=4, hidden_size=2))
    assert distributed.splits_own_step(GANModel(image_size=8))
    assert distributed.splits_own_step(ControlAgent(ControlConfig()))  # tests/training/test_distributed_ppo.py
    # (a train_step without group= refused under torchrun, in one line, by the API and the CLI:
    # tests/training/test_distributed.py)
    distributed.refuse_own_step(_SplitStep(), "split")  # no error
    distributed.refuse_own_step(nn.Linear(2, 2), "plain")  # no error: DDP's case
    with pytest.raises(ValueError) as e:
        distributed.refuse_own_step(_OwnStep(), "own")
    assert "\n" not in str(e.value) and str(e.value).startswith("own under torchrun: expected")
