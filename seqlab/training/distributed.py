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

A family whose model updates its own weights (``model.train_step``) has no single loss whose
gradient DDP could average; it runs under torchrun when its ``train_step`` takes ``group=``
(``splits_own_step``): the trainer then builds no DDP, broadcasts rank 0's parameters and
buffers once, passes its ``Group`` at every step, and averages the loss and metrics the step
returns (each a mean over the rank's share) over the ranks. The model splits its own update
with the ``Group``'s few collectives, all ``torch.distributed`` calls: ``rows(n)`` (rank r's rows
of a tensor drawn for the whole batch: random numbers are drawn for all N n items from the
step's generator, the same on every rank, and each rank keeps its own, so each item gets the
numbers it gets in one process), ``sum_``/``mean_`` (tensors flattened into one all_reduce:
statistics, chain states, buffers), ``mean_grads_`` (a parameter list's gradients averaged
after a backward pass, with the loss, in one all_reduce), ``part(n)`` (rank r's part of n items
split as evenly as possible), ``gather``/``gather_floats`` (every rank's tensor or numbers, in
rank order) and ``max_``. ``current()`` gives the group to the
model's code the trainer calls without one (the GAN's validation noise).

- RBM (CD-k, PCD-k): the data and model phases' statistics are summed over the ranks; PCD's
  persistent chains are split by rows like the batch (n_chains a multiple of N) and their new
  states summed back, so every rank holds all of them. Equal to one process to rounding.
- GAN: D's and G's gradients averaged after each of their backward passes. Equal to one
  process without BatchNorm; G's BatchNorm normalises by the rank's share (SyncBatchNorm is
  GPU-only in PyTorch), so with it the run is close, the ranks identical (running statistics
  averaged at the end of each step).
- Control's PPO (``seqlab.tasks.control_ppo``): rank r steps environments r E/N .. (r+1) E/N - 1
  of the run's E (each seeded by its global index; E % N != 0 is the batch size's refusal); each
  rollout step gathers the raw observations (the running normalisation takes in all E), each
  rank acts on its rows with noise drawn for all E and kept by rows, and the finished rollout is
  gathered, so every rank holds all of it; each minibatch's chunks are split by ``part(M)``
  (uneven parts weighted N M_r / M), the gradients averaged by ``mean_grads_``. The runner's
  state is gathered into the model's buffers, so a checkpoint resumes under any N dividing E.
  Equal to one process to rounding.
- RLHF's PPO (``seqlab.llm.rlhf_models.PPOModel``): the step's B prompts are gathered (a small
  all_gather of the padded ids), rank r samples and scores its rows ``rows(B/N)`` with the
  sampler's noise drawn for all B and kept by rows (the exponential race that is
  ``torch.multinomial``'s one-sample draw, per group of prompts of one length), and the rollout
  is gathered, so every rank holds all of it, computes the rewards, GAE and whitening on all of
  it and draws the same minibatches; each minibatch of M rows is split by ``part(M)``, rank r's
  loss weighted N M_r / M, the gradients averaged by ``mean_grads_``; the KL controller moves
  beta with the whole batch's KL. Validation gathers the prompts (its seed is theirs) and the
  rollout the same way (``current()``). Equal to one process to rounding without dropout (the
  update's dropout masks are each process's own).

No family of seqlab is refused any more; a model whose ``train_step`` takes no ``group=`` (a
family from outside seqlab, say) still is, in one line before any process group is made.
"""

from __future__ import annotations

import atexit
import datetime
import inspect
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

    # ---- what a model with its own update rule needs (``train_step(..., group=group)``)

    def rows(self, n: int) -> slice:
        """Rank r's rows of a global tensor whose N equal shares hold ``n`` rows each:
        rows r n .. (r+1) n - 1. Random numbers are drawn for the whole batch (N n rows, from
        the step's generator, the same on every rank) and each rank keeps its rows, so rank r's
        items get exactly the numbers the one-process run gives them."""
        return slice(self.rank * n, (self.rank + 1) * n)

    @staticmethod
    def _reduce_(tensors: Sequence[torch.Tensor], op: str) -> None:
        """In place, one ``all_reduce`` (op "SUM" or "MAX") of the tensors flattened into one buffer."""
        import torch.distributed as dist

        if not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat, op=getattr(dist.ReduceOp, op))
        for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
            t.copy_(part.view_as(t))

    def sum_(self, tensors: Sequence[torch.Tensor]) -> None:
        """In place, each tensor becomes the sum of its values over the ranks: the tensors are
        flattened into one buffer and summed by one ``all_reduce``."""
        self._reduce_(tensors, "SUM")

    def mean_(self, tensors: Sequence[torch.Tensor]) -> None:
        """In place, each tensor becomes the mean of its values over the ranks (one all_reduce)."""
        self.sum_(tensors)
        for t in tensors:
            t.div_(self.world_size)

    def mean_grads_(self, params: Sequence[nn.Parameter], *values: float) -> list[float]:
        """After a backward pass on rank r's share: every ``p.grad`` becomes the ranks' mean,
        g = 1/N sum_r grad L_r (what DDP does, for a parameter list of one's choosing), in one
        all_reduce that also carries ``values`` (losses, say); returns the ranks' mean of each
        value, the same on every rank (so all take the same decision on a non-finite one).
        Parameters without a gradient must be the same on every rank (they are skipped)."""
        grads = [p.grad for p in params if p.grad is not None]
        extra = torch.tensor([float(v) for v in values], dtype=grads[0].dtype if grads else torch.float64,
                             device=self.device)
        self.mean_([*grads, extra])
        return extra.tolist()

    def broadcast_(self, tensors: Sequence[torch.Tensor]) -> None:
        """In place, rank 0's values in every rank's tensors (a model's starting weights and
        buffers, where no DDP broadcasts them)."""
        import torch.distributed as dist

        for t in tensors:
            dist.broadcast(t, src=0)

    def part(self, n: int) -> slice:
        """Rank r's part of ``n`` items split as evenly as N parts can be (``tensor_split``'s
        split: the first n mod N ranks take one more; a part may be empty where n < N)."""
        size, extra = divmod(n, self.world_size)
        lo = self.rank * size + min(self.rank, extra)
        return slice(lo, lo + size + (1 if self.rank < extra else 0))

    def max_(self, tensors: Sequence[torch.Tensor]) -> None:
        """In place, each tensor becomes the elementwise maximum of its values over the ranks."""
        self._reduce_(tensors, "MAX")

    def gather(self, t: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Every rank's ``t`` (the same shape on all), concatenated along ``dim`` in rank order:
        the one-process tensor when each rank holds its rows ``rows(n)`` of it (an all_gather)."""
        import torch.distributed as dist

        t = t.contiguous()
        parts = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(parts, t)
        return torch.cat(parts, dim=dim)

    def gather_floats(self, values: Sequence[float]) -> list[float]:
        """Every rank's list of numbers (lists of any lengths), concatenated in rank order."""
        counts = self.gather(torch.tensor([len(values)], dtype=torch.int64, device=self.device)).tolist()
        if max(counts) == 0:
            return []
        padded = torch.zeros(max(counts), dtype=torch.float64, device=self.device)
        padded[:len(values)] = torch.tensor(list(values), dtype=torch.float64)
        every = self.gather(padded[None], dim=0)  # (N, longest)
        return [v for r, k in enumerate(counts) for v in every[r, :k].tolist()]

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



def splits_own_step(model: nn.Module) -> bool:
    """Whether a model with its own update rule declares how it splits across processes: its
    ``train_step`` takes a ``group`` keyword (this process's ``Group``, or None in one process)."""
    step = getattr(model, "train_step", None)
    if not callable(step):
        return False
    try:
        return "group" in inspect.signature(step).parameters
    except (TypeError, ValueError):  # a builtin without a signature: it cannot take one
        return False


def refuse_own_step(model: nn.Module, family: str) -> None:
    """A model with its own update rule that does not take a ``group`` (see ``splits_own_step``)
    cannot be split: a one-line ValueError."""
    if callable(getattr(model, "train_step", None)) and not splits_own_step(model):
        fail(f"{family} under torchrun",
             "a family trained by gradient steps of model.loss, which DistributedDataParallel averages "
             "across processes, or one whose model.train_step takes group= and splits its own update",
             f"{family}, whose model.train_step updates its own weights and does not split across processes; "
             "train it in one process (seqlab train, without torchrun)")


def current() -> Group | None:
    """This process's ``Group`` while ``train`` runs under torchrun (set by ``join``), else None:
    for a model's code that the trainer calls without a group (a GAN's validation ``loss``
    drawing its noise for the whole batch and keeping its rows)."""
    return _CURRENT


_CURRENT: Group | None = None


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
    global _CURRENT
    _CURRENT = None
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
    _CURRENT = group
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
