"""Random generators of a run: seeding, saving and restoring the global ones, and the seeds
of the per-step batch generator and of the fixed evaluation batches.

Step ``s`` of a run draws its batch from ``Generator(batch_seed(seed, s))``, so a resumed run
sees the same batches as an uninterrupted one; the global generators (dropout, sampling inside
a model) are saved with every checkpoint and restored on resume.
"""

from __future__ import annotations

import random
from typing import Mapping

import numpy as np
import torch

from seqlab.validation import check_int


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's (CPU and CUDA) global generators."""
    check_int(seed, "seed", minimum=0, maximum=2**32 - 1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng_state() -> dict:
    """The global generators' states: Python, NumPy, torch CPU, torch CUDA (if initialised)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": str(kind), "keys": [int(k) for k in keys], "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: Mapping) -> None:
    """Undo ``capture_rng_state`` (CUDA states only where the same number of GPUs is present)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].to("cpu", torch.uint8))
    cuda = list(state.get("cuda") or [])
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all([t.to("cpu", torch.uint8) for t in cuda])


def batch_seed(seed: int, step: int) -> int:
    """A well-mixed 63-bit seed from (seed, step): step ``step`` sees the same batch in every run."""
    a, b = np.random.SeedSequence([seed, 0x5E91AB, step]).generate_state(2, dtype=np.uint32)
    return (int(a) << 31) ^ int(b)


def eval_seed(seed: int) -> int:
    """The seed of the evaluation batches: the same fixed batches at every evaluation of a run."""
    a, b = np.random.SeedSequence([seed, 0xE7A1]).generate_state(2, dtype=np.uint32)
    return (int(a) << 31) ^ int(b)
