"""Random generators of a run (seqlab.training.rng)."""

import random

import numpy as np
import pytest
import torch

from seqlab.training.rng import batch_seed, capture_rng_state, eval_seed, restore_rng_state, seed_everything


def draw():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_capture_and_restore_round_trip():
    seed_everything(3)
    state = capture_rng_state()
    a = draw()
    draw()
    restore_rng_state(state)
    assert draw() == a
    seed_everything(3)
    assert draw() == a
    with pytest.raises(ValueError, match=r"seed: expected an integer >= 0, received -1"):
        seed_everything(-1)


def test_batch_and_eval_seeds_are_fixed_and_distinct():
    assert batch_seed(1337, 5) == batch_seed(1337, 5)
    seeds = {batch_seed(1337, s) for s in range(1, 200)} | {batch_seed(1338, 1), eval_seed(1337), eval_seed(1338)}
    assert len(seeds) == 199 + 3
    assert all(0 <= s < 2**63 for s in seeds)  # fits torch.Generator.manual_seed
    assert eval_seed(1337) == eval_seed(1337)
