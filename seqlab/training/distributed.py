"""Data-parallel training on ``torchrun``: PyTorch's DistributedDataParallel, nothing home-made.

``torchrun --nproc-per-node N -m seqlab train FAMILY ...`` starts N copies of the command; each
finds its place in the job from the environment torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). Without those variables nothing here runs and
``torch.distributed`` is never initialised: a plain ``seqlab train`` is one process, as before.

With N processes of ranks r = 0 .. N-1, step s of a run with global batch B is

    batch     = data.get_batch("train", B, Generator(seed, s))   the single process's batch
    batch_r   = batch[r B/N : (r+1) B/N]                          rank r's share (B % N == 0)
    L_r       = model.loss(batch_r)                               the mean over rank r's items
    g         = 1/N sum_r grad L_r                                DDP's all-reduce of the gradients
    theta     = AdamW(theta, clip(g), lr(s))                      the same update on every rank

so where the loss is a mean over items of equal weight (fixed-length blocks of tokens: GPT,
BERT, the recurrent language models), g is the gradient of the single process's loss over B
and N processes follow the single process's run (to rounding; the test checks 1e-10 in
float64). The logged loss and metrics are the mean of the ranks' values (``tokens``, a count,
is their sum); evaluation splits each validation batch the same way and averages, so it gives
the single process's numbers. Rank 0 alone writes the run directory (run.json, metrics.jsonl,
TensorBoard, checkpoints, the pointers, ``on_eval``'s files); the others wait at a barrier
while it writes. A checkpoint holds one model and one optimizer state, so a run resumes under
any number of processes, or none.

The backend follows the device the run trains on: NCCL for CUDA (rank r on ``cuda:LOCAL_RANK``),
gloo for the CPU. Every collective has a timeout (``SEQLAB_DIST_TIMEOUT`` seconds, default 600),
so a rank whose peer died raises instead of waiting forever; torchrun itself stops every worker
of a job when one fails, and forwards Ctrl-C (SIGINT) to each: the ranks agree at every step
whether one of them was asked to stop (or ran out of ``max_seconds``), so all stop after the
same step, evaluate it and rank 0 saves it.

A family whose model updates its own weights (``model.train_step``: the RBM's contrastive
divergence, the GAN's alternating updates, PPO and the control family's policy gradient) is not
a loss whose gradient DDP could average: it is refused under torchrun, in one line that names it.
"""

from __future__ import annotations

import atexit
import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from seqlab.training.device import resolve_device
from seqlab.validation import fail

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT_ENV = "SEQLAB_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
# metrics that count things: the ranks' values are summed, every other one is averaged
SUMMED_METRICS = ("tokens",)


def rounded(loss: float) -> float:
    """A loss as the trainer logs it, rounded to float32 (``float(loss.float())``): the ranks
    average their losses in float64 and round the mean, as one process rounds its loss."""
    return float(torch.tensor(loss, dtype=torch.float64).float())


def launched() -> bool:
    """Whether this process is one of a torchrun job (its environment variables are set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _env_int(name: str, minimum: int) -> int:
    text = os.environ.get(name)
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = None
    if value is None or value < minimum:
        fail(f"environment variable {name}", f"an integer >= {minimum} (torchrun sets it)", repr(text))
    return value


def timeout() -> datetime.timedelta:
    """The collectives' timeout: ``SEQLAB_DIST_TIMEOUT`` seconds (default 600)."""
    text = os.environ.get(TIMEOUT_ENV)
    if text is None:
        return datetime.timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        fail(f"environment variable {TIMEOUT_ENV}", "a number of seconds > 0", repr(text))
    return datetime.timedelta(seconds=seconds)


class _LossForward(nn.Module):
    """``model.loss`` as a ``forward``: DDP prepares its gradient all-reduce in ``forward``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> Any:
        return self.model.loss(batch)


@dataclass(frozen=True)
class Group:
    """This process's place in a torchrun job: ``rank`` of ``world_size``, on ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the run directory and shows progress."""
        return self.rank == 0

    # ---- collectives

    def barrier(self) -> None:
        """Wait for every rank (rank 0 writing a checkpoint, say)."""
        import torch.distributed as dist

        if self.backend == "nccl":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def same_path(self, path: Path) -> Path:
        """Rank 0's path on every rank (a default run directory holds the time of day)."""
        import torch.distributed as dist

        box = [str(path)]
        dist.broadcast_object_list(box, src=0)
        return Path(box[0])

    def any(self, *flags: bool) -> list[bool]:
        """Each flag, true where it is true on any rank (all ranks stop after the same step)."""
        import torch.distributed as dist

        t = torch.tensor([float(f) for f in flags], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v > 0) for v in t.tolist()]

    def mean_of(self, losses: Sequence[float], metrics: Mapping[str, float]
                ) -> tuple[list[float], dict[str, float]]:
        """The ranks' mean of each loss (one per batch) and of each metric (``SUMMED_METRICS``
        summed), in one all-reduce: what one process computing on the whole batch reports, since
        each rank's values are means over its equal share of it. Every rank gets the same
        numbers, so all take the same decisions (a NaN, a divergence) at the same step."""
        import torch.distributed as dist

        names = sorted(metrics)
        t = torch.tensor([*losses, *(metrics[k] for k in names)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        values = t.tolist()
        n, k = self.world_size, len(losses)
        out = {name: v if name in SUMMED_METRICS else v / n for name, v in zip(names, values[k:])}
        return [v / n for v in values[:k]], out

    # ---- data, model

    def shard(self, batch: Any, batch_size: int, data: Any = None) -> Any:
        """Rank r's share of a batch of ``batch_size`` items: ``data.shard_batch(batch, r, N)``
        where the data have that method (a batch padded to its longest item that the model
        wants padded to the share's longest, say); otherwise rows r B/N .. (r+1) B/N - 1 of
        every tensor whose first dimension is B (in tuples, lists, dicts and named tuples), with
        anything else (scalars, tensors of other sizes) kept whole. A batch with no such tensor
        is a ValueError."""
        own = getattr(data, "shard_batch", None)
        if callable(own):
            return own(batch, self.rank, self.world_size)
        share = batch_size // self.world_size
        lo, hi = self.rank * share, (self.rank + 1) * share
        found = []

        def cut(b: Any) -> Any:
            if isinstance(b, torch.Tensor):
                if b.dim() >= 1 and b.shape[0] == batch_size:
                    found.append(True)
                    return b[lo:hi]
                return b
            if isinstance(b, Mapping):
                return {k: cut(v) for k, v in b.items()}
            if isinstance(b, tuple) and hasattr(b, "_fields"):
                return type(b)(*(cut(v) for v in b))
            if isinstance(b, (list, tuple)):
                return type(b)(cut(v) for v in b)
            return b

        out = cut(batch)
        if not found:
            fail("batch under torchrun", f"tensors whose first dimension is the batch size {batch_size} "
                 f"(in tuples, lists or dicts), to split across {self.world_size} processes",
                 type(batch).__name__)
        return out

    def wrap(self, model: nn.Module) -> nn.Module:
        """``DistributedDataParallel`` around ``model.loss``: calling it returns ``model.loss(batch)``,
        and the backward pass averages the gradients over the ranks. The parameters are the
        model's own (a checkpoint still saves ``model``)."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # find_unused_parameters: a family may leave some parameters out of a step's loss
        return DistributedDataParallel(_LossForward(model), device_ids=ids, output_device=None if ids is None
                                       else ids[0], find_unused_parameters=True)



def refuse_own_step(model: nn.Module, family: str) -> None:
    """A model with its own update rule cannot be split by DDP: a one-line ValueError."""
    if callable(getattr(model, "train_step", None)):
        fail(f"{family} under torchrun",
             "a family trained by gradient steps of model.loss, which DistributedDataParallel averages "
             "across processes", f"{family}, whose model.train_step updates its own weights (not a gradient "
             "DDP could average); train it in one process (seqlab train, without torchrun)")


def check_batch_size(batch_size: int, world_size: int) -> None:
    """The global batch is split into equal shares: B must be a multiple of N."""
    if batch_size % world_size:
        fail("batch_size", f"a multiple of the number of processes ({world_size}), each taking an equal "
             "share of the global batch", f"{batch_size}")


def join(device_name: str, *, batch_size: int, model: nn.Module, family: str) -> Group | None:
    """This process's ``Group`` in a torchrun job, or None outside one (nothing initialised).
    Checks what a distributed run needs (a gradient-step family, B % N == 0, a CPU or CUDA
    device), then initialises the default process group once per process (gloo for the CPU,
    NCCL for CUDA, with ``timeout()``), destroyed at exit."""
    if not launched():
        return None
    rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    local = _env_int("LOCAL_RANK", 0) if "LOCAL_RANK" in os.environ else rank
    if rank >= world:
        fail("environment variable RANK", f"a rank below WORLD_SIZE={world}", str(rank))
    refuse_own_step(model, family)
    check_batch_size(batch_size, world)
    device = resolve_device(device_name)
    if device.type == "cuda":
        if device.index is None:
            if local >= torch.cuda.device_count():
                fail("device under torchrun", f"one GPU per process (LOCAL_RANK < {torch.cuda.device_count()} "
                     "GPUs here)", f"LOCAL_RANK={local}")
            device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        fail("device under torchrun", "'cpu' (gloo) or 'cuda' (NCCL)", repr(str(device)))
    import torch.distributed as dist

    if not dist.is_initialized():
        for name in ENV[3:]:
            if name not in os.environ:
                fail(f"environment variable {name}", "the rendezvous address torchrun sets", "nothing")
        dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timeout(),
                                **({"device_id": device} if backend == "nccl" else {}))
        atexit.register(_destroy)
    elif dist.get_backend() != backend:
        fail("device under torchrun", f"the {dist.get_backend()} backend's device", f"{device} ({backend})")
    group = Group(rank=rank, world_size=world, local_rank=local, device=device, backend=backend)
    return group


def _destroy() -> None:
    import torch.distributed as dist

    try:
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # a peer already gone: nothing left to close cleanly
        pass


def is_main() -> bool:
    """Whether this process writes and reports: rank 0 of a torchrun job, or a plain process."""
    return not launched() or os.environ.get("RANK") == "0"
