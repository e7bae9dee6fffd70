"""The training loop: the one generic trainer, ``train(model, data, cfg, run_dir, ...)``.

It knows nothing about the model except ``model.loss(batch) -> (loss, metrics)``, and nothing
about the data except ``data.get_batch(split, batch_size, generator) -> batch``.

What it does, step ``s = 1 .. max_steps``:

    lr(s)  = lr_at(s, cfg)                                            warmup + cosine (training.config)
    batch  = data.get_batch("train", B, Generator(seed, s))           same batches after a resume
    loss   = model.loss(batch)     (bf16 autocast on CUDA)            NaN/inf -> NonFiniteLossError
    g      = clip_by_norm(clip_by_value(grad loss))                   non-finite norm -> NonFiniteLossError
    theta  = AdamW(theta, g, lr(s))                                   weight decay on tensors with dim >= 2

A model with a training procedure of its own (an RBM's contrastive divergence, a GAN's
alternating updates) provides ``model.train_step(batch, lr=lr(s), weight_decay=...,
generator=...) -> (loss, metrics)``, which updates its parameters itself; the trainer then runs
no backward pass. If the model also has ``make_optimizer(cfg)``, the trainer creates that
optimizer, sets each group's lr to lr(s) times the group's ``lr_scale`` (default 1), passes it
as ``optimizer=`` and saves and restores its state; otherwise there is no optimizer. Everything
else (schedule, batches, evaluation with ``model.loss``, checkpoints, logging, resume) stays the
same. The step's generator is seeded from (seed, s), so a resumed run is exact.

Frozen parameters (``requires_grad=False``: a fine-tune's base weights) are left out of the
optimizer, so they get no update, no weight decay and no optimizer state. A checkpoint stores
``checkpoint.model_state(model)`` (the ``state_dict``, or only what a fine-tune trains) and a
resume loads it with ``load_model_state``.

Every ``eval_every`` steps (and at the last step) the mean validation loss over ``eval_batches``
fixed batches is computed; the run keeps the best one, stops early after ``patience``
evaluations without improvement, and saves a checkpoint (``seqlab.training.checkpoint``, in the
layout of ``seqlab.training.rundir``). Ctrl-C finishes the current step, saves and returns
``stopped="interrupted"``; a second Ctrl-C stops at once and saves the last completed step.

Every run evaluates at its last step, whatever stopped it (max_steps, max_seconds, Ctrl-C,
early stop), so every run has a validation figure. Where the stop step's evaluation was not
a scheduled one, this extra evaluation updates the best and last validation loss but does not
count toward ``patience``, and it draws nothing from the global random generators that the
next step would use: a resumed run stops and learns exactly like an uninterrupted one. A Ctrl-C
during it skips it; the checkpoint is still saved.

``resume=True`` continues from the newest checkpoint; on a CPU the resumed loss curve equals the
uninterrupted one exactly. Every start (new or resumed) first removes what a kill may have left in
``checkpoints/`` (``rundir.clean_checkpoints``), and a resume checks every field of the trainer
state it reads (``check_trainer_state``: a bad one is a one-line error naming the field).

A loss that rises far above where the run started stops it (``DivergenceError``, like the NaN
stop): with L1 the training loss of the run's first step (kept in the trainer state, so a resumed
run keeps it), a training or validation loss above L1 + diverge_factor * |L1| (see
``TrainConfig.diverge_factor``; 100 by default) is refused before anything of its step is saved.
Measured on every family at its cpu-tiny and default presets, the training losses never rose
above L1 + 0.9 |L1| (the RBM's noisy batches the most; a GAN's L_D by 0.2 |L1|).

Progress goes to stderr through ``seqlab.progress`` (a bar on a terminal, plain lines otherwise;
the time left capped by ``max_seconds``), after a first line naming the run directory. Where the
``tensorboard`` package is installed (``TrainConfig.tensorboard``), every metrics.jsonl record
also goes to RUN_DIR/tensorboard (train/loss, train/lr, train/tokens_per_s, val/loss, ...);
a resumed run purges the events after its step, so none is repeated.

Under ``torchrun`` (``seqlab.training.distributed``; nothing of it runs without torchrun's
environment) rank r of N takes rows r B/N .. (r+1) B/N - 1 of the step's batch, ``model.loss``
runs inside DistributedDataParallel (the gradients averaged over the ranks), the logged loss,
metrics and validation loss are the ranks' mean (so, for a loss that is a mean over equal items,
the single process's numbers), the ranks agree after every step whether to stop (a Ctrl-C or
``max_seconds`` on any of them), and rank 0 alone writes the run directory while the others wait
at a barrier. A model with its own ``train_step`` runs there only where that takes ``group=``
(the trainer passes its ``Group``; the model splits its own update, and the trainer averages
the loss and metrics it returns over the ranks); any other is refused.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from seqlab.progress import Progress
from seqlab.training import distributed
from seqlab.training.checkpoint import load_checkpoint, load_model_state, model_state, save_checkpoint
from seqlab.training.config import TrainConfig, lr_at
from seqlab.training.device import autocast_context, resolve_device, resolve_precision
from seqlab.training.io import atomic_write_text, mkdir_synced
from seqlab.training.rng import batch_seed, capture_rng_state, eval_seed, restore_rng_state, seed_everything
from seqlab.training.rundir import (
    BEST_FILE,
    CHECKPOINTS_DIR,
    LATEST_FILE,
    METRICS_FILE,
    checkpoint_name,
    clean_checkpoints,
    json_normal,
    latest_checkpoint,
    prune_checkpoints,
    read_metrics,
    read_run_json,
    resume_differences,
    truncate_metrics,
    write_pointer,
    write_run_json,
)
from seqlab.validation import fail

STOP_REASONS = ("max_steps", "max_seconds", "early_stop", "interrupted")
TENSORBOARD_DIR = "tensorboard"
_RESERVED_METRICS = ("step", "split", "loss", "lr", "time", "tokens_per_s", "steps_per_s", "grad_norm")

# --------------------------------------------------------------------------- results, errors


class NonFiniteLossError(ValueError):
    """The loss or the gradient norm became NaN or infinite; nothing was saved after it."""

    def __init__(self, what: str, step: int, value: float, checkpoint: Path | None):
        self.step = step
        self.value = value
        self.checkpoint = checkpoint
        where = f"last good checkpoint: {checkpoint}" if checkpoint else "no checkpoint was saved yet"
        super().__init__(
            f"{what} at step {step}: expected a finite value, received {value}; "
            f"the run stopped and nothing was saved after this step ({where})"
        )


class DivergenceError(ValueError):
    """The loss rose far above where the run started (``TrainConfig.diverge_factor``); nothing
    was saved after it."""

    def __init__(self, what: str, step: int, value: float, reference: float, factor: float,
                 checkpoint: Path | None):
        self.step = step
        self.value = value
        self.reference = reference
        self.checkpoint = checkpoint
        limit = divergence_limit(reference, factor)
        where = f"last good checkpoint: {checkpoint}" if checkpoint else "no checkpoint was saved yet"
        super().__init__(
            f"{what} at step {step}: expected at most {limit:.4g} (the first step's training loss {reference:.4g} "
            f"+ diverge_factor {factor:g} x its size), received {value:.4g}; the run diverged (a smaller lr or "
            f"clip_norm helps) and stopped, and nothing was saved after this step ({where})"
        )


def divergence_limit(reference: float, factor: float) -> float:
    """The highest loss a run may reach before it counts as diverged: L1 + factor * |L1|, with
    L1 the training loss of its first step (``TrainConfig.diverge_factor``). Relative to |L1|
    so that it holds for any scale of loss, and from L1 upwards so that a negative loss works."""
    return reference + factor * abs(reference)


def tensorboard_available() -> bool:
    """Whether the optional ``tensorboard`` package is installed (``pip install seqlab[tensorboard]``)."""
    import importlib.util

    try:
        return importlib.util.find_spec("tensorboard") is not None
    except (ImportError, ValueError):
        return False


def _use_tensorboard(cfg: TrainConfig) -> bool:
    """``cfg.tensorboard``, with ``None`` meaning "where the package is installed"; asking for
    it without the package is a one-line error."""
    if cfg.tensorboard is False:
        return False
    available = tensorboard_available()
    if cfg.tensorboard and not available:
        fail("tensorboard", "the tensorboard package (pip install seqlab[tensorboard]), or --no-tensorboard",
             "a Python without it")
    return available


@dataclass
class TrainResult:
    """What ``train`` returns. ``history`` holds the records of ``metrics.jsonl`` (of the whole
    run, also those written before a resume); ``checkpoint`` is the last saved checkpoint and
    ``run_dir`` the run directory. ``last_val_loss`` is the validation loss at ``steps`` (every
    run ends with an evaluation, unless a Ctrl-C cuts that one short); ``best_val_loss`` the
    best of the run's evaluations (NaN or inf only if the validation loss was not finite)."""

    steps: int
    best_val_loss: float | None
    last_val_loss: float | None
    stopped: str
    seconds: float
    history: list[dict] = field(default_factory=list)
    checkpoint: Path | None = None
    run_dir: Path | None = None


# --------------------------------------------------------------------------- gradients, optimizer


def _total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    if hasattr(torch.nn.utils, "get_total_norm"):
        return torch.nn.utils.get_total_norm(grads, 2.0)
    norms = [torch.linalg.vector_norm(g.detach(), 2.0) for g in grads]
    return torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]), 2.0)


def clip_gradients(
    parameters: Iterable[torch.Tensor], *, clip_value: float | None = None, clip_norm: float | None = None
) -> float:
    """Clip gradients in place: each entry to ``[-clip_value, clip_value]``, then the global
    L2 norm to ``clip_norm``. Returns the global norm *before* any clipping (NaN/inf when the
    gradient is not finite, in which case nothing is clipped)."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return 0.0
    grads = [p.grad for p in params]
    raw = _total_norm(grads)
    raw_value = float(raw)
    if not math.isfinite(raw_value):
        return raw_value
    if clip_value is not None:
        # g <- clamp(g, -c, c)
        torch.nn.utils.clip_grad_value_(params, clip_value)
    if clip_norm is not None:
        norm = _total_norm(grads) if clip_value is not None else raw
        # g <- g * min(1, clip_norm / (||g|| + 1e-6))
        coef = torch.clamp(clip_norm / (norm + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef.to(g.device))
    return raw_value


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on parameters of dim >= 2 (matrices, embeddings) only."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        fail("model", "trainable parameters", "none (every parameter has requires_grad=False)")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [g for g in ({"params": decay, "weight_decay": cfg.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    # issue 17: PyTorch's fused AdamW (the same update in one kernel per step; on the CPU the
    # default is a Python loop over the tensors, ~5% of a small GPT's step) where it exists
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params) or None
    return torch.optim.AdamW(groups, lr=lr_at(1, cfg), betas=(cfg.beta1, cfg.beta2), fused=fused)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch if batch.device == device else batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


# --------------------------------------------------------------------------- Ctrl-C


class _InterruptGuard:
    """While active (main thread only), the first Ctrl-C asks the loop to stop after the
    current step; a second one raises KeyboardInterrupt at once, except inside a critical
    section (optimizer update, checkpoint write), where it waits for the section to end."""

    def __init__(self) -> None:
        self.requested = False
        self._critical = 0
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> "_InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not signal.SIG_IGN:
                self._previous = previous
                signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested and self._critical == 0:
            raise KeyboardInterrupt
        if not self.requested and distributed.is_main():  # under torchrun, rank 0 says it once
            print("\nCtrl-C: finishing this step, then saving a checkpoint (press again to stop now)",
                  file=sys.stderr, flush=True)
        self.requested = True

    @contextlib.contextmanager
    def critical(self):
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1


# --------------------------------------------------------------------------- the trainer state


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: object, minimum: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


_MISSING = object()


def _shown(v: object) -> str:
    if v is _MISSING:
        return "nothing (the field is missing)"
    if isinstance(v, torch.Tensor):
        return f"a tensor of shape {tuple(v.shape)} and dtype {v.dtype}"
    text = repr(v)
    return text if len(text) <= 80 else f"{type(v).__name__} {text[:60]}..."


def check_trainer_state(ts: object, where: str) -> dict:
    """The fields of a checkpoint's trainer state that a resume reads, checked: a bad or missing
    one is a one-line ValueError that names the checkpoint (``where``), the field, what was
    expected and what was received. Fields that older runs lack take their defaults."""

    def bad(name: str, expected: str, value: object) -> None:
        fail(f"{where}: trainer.json field {name!r}", expected, _shown(value))

    missing = _MISSING
    if not isinstance(ts, Mapping):
        fail(f"{where}: trainer.json", "a trainer state (a JSON object)", _shown(ts))

    def get(name: str, check, expected: str, default: object = missing) -> Any:
        value = ts.get(name, missing)
        if value is missing:
            if default is missing:
                bad(name, expected, missing)
            return default
        if not check(value):
            bad(name, expected, value)
        return value

    maybe_loss = lambda v: v is None or _is_number(v)  # noqa: E731 - NaN and inf are values a loss can take
    out = {
        "step": get("step", lambda v: _is_int(v, 0), "an integer >= 0"),
        "best_val_loss": get("best_val_loss", maybe_loss, "a number or null", None),
        "best_step": get("best_step", lambda v: v is None or _is_int(v, 0), "an integer >= 0 or null", None),
        "last_val_loss": get("last_val_loss", maybe_loss, "a number or null", None),
        "bad_evals": get("bad_evals", lambda v: _is_int(v, 0), "an integer >= 0", 0),
        "last_eval_step": get("last_eval_step", lambda v: _is_int(v, -1), "an integer >= -1", -1),
        "elapsed": get("elapsed", lambda v: _is_number(v) and math.isfinite(v) and v >= 0,
                       "a finite number of seconds >= 0", 0.0),
        "diverge_reference": get("diverge_reference", lambda v: v is None or (_is_number(v) and math.isfinite(v)),
                                 "a finite number or null", None),
    }
    out["patience_best_val_loss"] = get("patience_best_val_loss", maybe_loss, "a number or null",
                                        out["best_val_loss"])
    window = get("window", lambda v: isinstance(v, Mapping), "an object {count, loss, metrics}", {})
    count, loss, metrics = window.get("count", 0), window.get("loss", 0.0), window.get("metrics", {})
    if not _is_int(count, 0):
        bad("window.count", "an integer >= 0", count)
    if not _is_number(loss):
        bad("window.loss", "a number", loss)
    if not isinstance(metrics, Mapping):
        bad("window.metrics", "an object of numbers", metrics)
    for k, v in metrics.items():
        if not _is_number(v):
            bad(f"window.metrics.{k}", "a number", v)
    out["window"] = {"count": count, "loss": float(loss), "metrics": {k: float(v) for k, v in metrics.items()}}
    out["rng"] = _check_rng(get("rng", lambda v: isinstance(v, Mapping), "an object of generator states"), bad)
    return out


def _check_rng(rng: Mapping, bad) -> dict:
    """The saved states of the global generators (``seqlab.training.rng.capture_rng_state``)."""
    python = rng.get("python", _MISSING)
    if not (isinstance(python, (list, tuple)) and len(python) == 3 and _is_int(python[0], 0)
            and isinstance(python[1], (list, tuple)) and all(_is_int(v, 0) for v in python[1])
            and (python[2] is None or _is_number(python[2]))):
        bad("rng.python", "Python's random state [version, [integers], gauss or null]", python)
    numpy_state = rng.get("numpy")
    if not isinstance(numpy_state, Mapping):
        bad("rng.numpy", "NumPy's random state {kind, keys, pos, has_gauss, cached_gaussian}", numpy_state)
    for key, check, expected in (("kind", lambda v: isinstance(v, str), "a string"),
                                 ("keys", lambda v: isinstance(v, list) and all(_is_int(k, 0) for k in v),
                                  "a list of integers"),
                                 ("pos", lambda v: _is_int(v, 0), "an integer >= 0"),
                                 ("has_gauss", lambda v: _is_int(v, 0), "an integer >= 0"),
                                 ("cached_gaussian", _is_number, "a number")):
        if not check(numpy_state.get(key)):
            bad(f"rng.numpy.{key}", expected, numpy_state.get(key, _MISSING))
    torch_state = rng.get("torch", _MISSING)
    if not (isinstance(torch_state, torch.Tensor) and torch_state.dim() == 1 and torch_state.dtype == torch.uint8):
        bad("rng.torch", "torch's CPU generator state (a 1-D uint8 tensor)", torch_state)
    cuda = rng.get("cuda", [])
    if not (isinstance(cuda, (list, tuple)) and all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8
                                                    for t in cuda)):
        bad("rng.cuda", "a list of CUDA generator states (uint8 tensors)", cuda)
    return {"python": python, "numpy": dict(numpy_state), "torch": torch_state, "cuda": list(cuda)}


# --------------------------------------------------------------------------- the loop


class _Run:
    """One invocation of ``train``: set-up (new or resumed), the steps, evaluations, saves."""

    def __init__(self, model, data, cfg, run_dir, family, model_config, files, progress, data_info, on_eval=None,
                 upgrade=None, group=None):
        self.model: nn.Module = model
        # torchrun (seqlab.training.distributed): this process's rank; None in a plain run
        self.group: distributed.Group | None = group
        self.main = group is None or group.main  # the process that writes the run directory
        self.ddp: nn.Module | None = None  # DistributedDataParallel around model.loss, under torchrun
        self.hard_stop = False  # a second Ctrl-C: no collective may follow
        self.on_eval = on_eval
        self.upgrade = upgrade
        self.data = data
        self.cfg: TrainConfig = cfg
        self.run_dir: Path = run_dir
        self.family = family
        self.model_config = model_config
        self.files = files
        self.progress = progress and self.main
        self.data_info = data_info
        self.device = resolve_device(cfg.device) if group is None else group.device
        self.precision = resolve_precision(self.device, cfg.precision)
        self.step = 0
        self.best_val: float | None = None
        self.best_step: int | None = None
        self.last_val: float | None = None
        # the best of the scheduled evaluations only: what patience compares with
        self.patience_best: float | None = None
        self.bad_evals = 0
        self.last_eval_step = -1
        self.elapsed_before = 0.0
        self.window = {"count": 0, "loss": 0.0, "metrics": {}}
        # the training loss of the run's first step: the divergence guard's reference
        self.diverge_ref: float | None = None
        self.last_saved_step: int | None = None
        self.last_checkpoint: Path | None = None
        self.history: list[dict] = []
        self.guard = _InterruptGuard()
        self.resumed = False
        self.writer: Any = None  # TensorBoard's SummaryWriter, where it is used

    # ---- set-up

    def setup(self, resume: bool) -> None:
        cfg = self.cfg
        self.model.to(self.device)
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # a model with its own update rule (train_step) brings its optimizer, if any
        self.own_step = callable(getattr(self.model, "train_step", None))
        if self.own_step:
            make = getattr(self.model, "make_optimizer", None)
            self.optimizer = make(cfg) if callable(make) else None
        else:
            self.optimizer = make_optimizer(self.model, cfg)
        if cfg.compile:  # --compile: in place, so the state dict keeps its names (seqlab.transformer.compile)
            from seqlab.transformer.compile import compile_in_place

            say = (lambda line: print(f"seqlab: {line}", file=sys.stderr, flush=True)) if self.main else None
            compile_in_place(self.model, on_fallback=say)
        if self.group is not None and self.own_step:  # torchrun, an own update rule: it takes group= (distributed.py)
            self.group.broadcast_([t.detach() for t in [*self.model.parameters(), *self.model.buffers()]])
        elif self.group is not None:  # torchrun: the gradients of model.loss averaged across the ranks
            self.ddp = self.group.wrap(self.model)
        seed_everything(cfg.seed)
        self.eval_seed = eval_seed(cfg.seed)
        self.tensorboard = _use_tensorboard(cfg) and self.main
        created = None
        self.resumed = resume
        # what a kill left behind: half-deleted or half-written checkpoint directories
        if self.main:
            clean_checkpoints(self.run_dir)
        if self.group is not None:
            self.group.barrier()  # the other ranks read the run directory once rank 0 has cleaned it
        if resume:
            created = read_run_json(self.run_dir).get("created")
            ckpt = load_checkpoint(latest_checkpoint(self.run_dir), family=self.family, map_location=self.device)
            self._restore(ckpt if self.upgrade is None else self.upgrade(ckpt))
            if self.main:
                self.history = truncate_metrics(self.run_dir, self.step)
        if self.main:
            mkdir_synced(self.run_dir)
            write_run_json(self.run_dir, family=self.family, model_config=self.model_config, train_config=cfg,
                           data=self.data_info, created=created)
            if not resume:
                atomic_write_text(self.run_dir / METRICS_FILE, "")
        if self.group is not None:
            self.group.barrier()
            if resume and not self.main:
                self.history = [rec for _, rec in read_metrics(self.run_dir)
                                if isinstance(rec.get("step"), int) and rec["step"] <= self.step]
        self.rng_snapshot = capture_rng_state()

    def _restore(self, ckpt) -> None:
        where = f"checkpoint {ckpt.path}"
        if ckpt.trainer_state is None or (self.optimizer is not None and ckpt.optimizer_state is None):
            fail(where, "a training checkpoint (with trainer state)", "weights only")
        ts = check_trainer_state(ckpt.trainer_state, where)
        try:
            load_model_state(self.model, ckpt.state_dict)
        except RuntimeError as e:
            fail(where, "weights that fit the model", str(e).splitlines()[0])
        try:
            if self.optimizer is not None:
                self.optimizer.load_state_dict(ckpt.optimizer_state)
        except (ValueError, KeyError, RuntimeError, TypeError) as e:
            fail(where, "an optimizer state that fits the model", str(e).splitlines()[0] if str(e) else repr(e))
        self.step = ts["step"]
        self.best_val = ts["best_val_loss"]
        self.best_step = ts["best_step"]
        self.last_val = ts["last_val_loss"]
        self.patience_best = ts["patience_best_val_loss"]
        self.bad_evals = ts["bad_evals"]
        self.last_eval_step = ts["last_eval_step"]
        self.elapsed_before = float(ts["elapsed"])
        self.window = ts["window"]
        self.diverge_ref = ts["diverge_reference"]
        try:
            restore_rng_state(ts["rng"])
        except (ValueError, TypeError, RuntimeError, OverflowError, IndexError) as e:
            fail(f"{where}: trainer.json field 'rng'", "the generator states seqlab saved",
                 str(e).splitlines()[0] if str(e) else repr(e))
        self.last_saved_step = self.step
        self.last_checkpoint = ckpt.path

    # ---- one step

    def _check_output(self, out: Any, training: bool) -> tuple[torch.Tensor, dict[str, float]]:
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], torch.Tensor)
                and isinstance(out[1], Mapping)):
            fail("model.loss(batch)", "a tuple (loss tensor, metrics dict)", type(out).__name__ if not
                 isinstance(out, tuple) else f"a tuple of {', '.join(type(v).__name__ for v in out)}")
        loss, metrics = out
        if loss.numel() != 1:
            fail("model.loss(batch) loss", "a scalar tensor", f"shape {tuple(loss.shape)}")
        if training and not loss.requires_grad:
            fail("model.loss(batch) loss", "a tensor that requires grad", "one that does not")
        values = {}
        for k, v in metrics.items():
            if not isinstance(k, str) or k in _RESERVED_METRICS:
                fail("model.loss(batch) metrics", "string names other than " + ", ".join(_RESERVED_METRICS), repr(k))
            try:
                values[k] = float(v)
            except (TypeError, ValueError, RuntimeError):
                fail(f"model.loss(batch) metrics[{k!r}]", "a number", type(v).__name__)
        return loss, values

    def _last_good(self) -> Path | None:
        return latest_checkpoint(self.run_dir)

    def _check_divergence(self, what: str, step: int, value: float) -> None:
        """The guard of ``TrainConfig.diverge_factor``: the first training loss of the run is
        the reference (kept in the trainer state, so a resumed run keeps it); a loss above
        ``divergence_limit`` stops the run before anything of this step is saved."""
        factor = self.cfg.diverge_factor
        if factor is None or not math.isfinite(value):
            return
        if self.diverge_ref is None:
            if what == "training loss":
                self.diverge_ref = value
            return
        if value > divergence_limit(self.diverge_ref, factor):
            raise DivergenceError(what, step, value, self.diverge_ref, factor, self._last_good())

    def train_step(self) -> None:
        cfg = self.cfg
        s = self.step + 1
        lr = lr_at(s, cfg)
        generator = torch.Generator().manual_seed(batch_seed(cfg.seed, s))
        batch = _to_device(self.data.get_batch("train", cfg.batch_size, generator), self.device)
        if self.group is not None:
            batch = self.group.shard(batch, cfg.batch_size, self.data)  # rank r's B/N items of the step's batch
        if self.own_step:
            self._own_step(s, lr, batch)
            return
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast_context(self.device, self.precision):
            out = self.model.loss(batch) if self.ddp is None else self.ddp(batch)
        loss, metrics = self._check_output(out, training=True)
        value = float(loss.detach().float())
        if self.group is not None:  # the whole batch's loss and metrics, the same on every rank
            (mean,), metrics = self.group.mean_of([float(loss.detach().double())], metrics)
            value = distributed.rounded(mean)
        if not math.isfinite(value):
            raise NonFiniteLossError("training loss", s, value, self._last_good())
        self._check_divergence("training loss", s, value)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(self.params, clip_value=cfg.clip_value, clip_norm=cfg.clip_norm)
        if not math.isfinite(grad_norm):
            raise NonFiniteLossError("gradient norm", s, grad_norm, self._last_good())
        metrics["grad_norm"] = grad_norm
        with self.guard.critical():
            self.optimizer.step()
            self._count(s, value, metrics)

    def _own_step(self, s: int, lr: float, batch: Any) -> None:
        """The model's own update rule (see the module docstring): it changes the weights
        itself, so a non-finite result is checked on the weights before anything is saved."""
        generator = torch.Generator(device=self.device).manual_seed(batch_seed(self.cfg.seed, s) + 1)
        kwargs: dict[str, Any] = dict(lr=lr, weight_decay=self.cfg.weight_decay, generator=generator)
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            kwargs["optimizer"] = self.optimizer
        if self.group is not None:  # torchrun: the model splits its update (distributed.splits_own_step)
            kwargs["group"] = self.group
        with self.guard.critical():
            out = self.model.train_step(batch, **kwargs)
            if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping)):
                fail("model.train_step(batch, ...)", "a tuple (loss, metrics dict)", type(out).__name__)
            value, metrics = float(out[0]), {}
            for k, v in out[1].items():
                if not isinstance(k, str) or k in _RESERVED_METRICS:
                    fail("model.train_step metrics", "string names other than " + ", ".join(_RESERVED_METRICS),
                         repr(k))
                metrics[k] = float(v)
            if self.group is not None:  # each rank's share's means -> the whole batch's, the same on every rank
                (value,), metrics = self.group.mean_of([value], metrics)
            if not math.isfinite(value):
                raise NonFiniteLossError("training loss", s, value, self._last_good())
            self._check_divergence("training loss", s, value)
            self._count(s, value, metrics)

    def _count(self, s: int, value: float, metrics: dict[str, float]) -> None:
        """Book-keeping after an update (called inside the critical section)."""
        self.step = s
        w = self.window
        w["count"] += 1
        w["loss"] += value
        for k, v in metrics.items():
            w["metrics"][k] = w["metrics"].get(k, 0.0) + v
        self.rate_tokens += metrics.get("tokens", 0.0)
        self.rate_steps += 1
        self.rng_snapshot = capture_rng_state()
        self.bar.update(1)

    # ---- logging, evaluation, saving

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.t0)

    def _write(self, record: dict) -> None:
        self.history.append(record)
        self.metrics_file.write(json.dumps(record) + "\n")
        self.metrics_file.flush()
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("step", "split", "time") and _is_number(value):
                    self.writer.add_scalar(f"{record['split']}/{key}", value, record["step"])

    def _open_tensorboard(self) -> None:
        """A SummaryWriter into RUN_DIR/tensorboard. A resumed run purges the events after its
        step that the interrupted invocation wrote (TensorBoard's ``purge_step``), so no step
        appears twice; a new run purges whatever an earlier attempt left there."""
        if not self.tensorboard:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.run_dir / TENSORBOARD_DIR),
                                    purge_step=self.step + 1 if self.resumed else 0)

    def log_train(self) -> None:
        w = self.window
        if w["count"] == 0:
            return
        now = time.perf_counter()
        dt = max(now - self.rate_t0, 1e-9)
        record = {"step": self.step, "split": "train", "loss": w["loss"] / w["count"], "lr": lr_at(self.step, self.cfg)}
        record.update({k: v / w["count"] for k, v in w["metrics"].items()})
        has_tokens = "tokens" in w["metrics"]
        if has_tokens:
            record["tokens_per_s"] = self.rate_tokens / dt
        record["steps_per_s"] = self.rate_steps / dt
        record["time"] = round(self._elapsed(), 3)
        self._write(record)
        speed = f"{record['tokens_per_s']:,.0f} tok/s" if has_tokens else f"{record['steps_per_s']:.2f} step/s"
        self.bar.set(loss=f"loss {record['loss']:.4f}", lr=f"lr {record['lr']:.2e}", speed=speed)
        self.window = {"count": 0, "loss": 0.0, "metrics": {}}
        self.rate_t0, self.rate_tokens, self.rate_steps = now, 0.0, 0

    def evaluate(self, *, scheduled: bool = True) -> bool:
        """Mean validation loss over the fixed eval batches; returns whether it improved on the
        best so far. Only a ``scheduled`` evaluation counts toward ``patience``."""
        cfg = self.cfg
        generator = torch.Generator().manual_seed(self.eval_seed)
        was_training = self.model.training
        self.model.eval()
        total, sums, shares = 0.0, {}, []
        try:
            with torch.no_grad():
                for _ in range(cfg.eval_batches):
                    batch = _to_device(self.data.get_batch("val", cfg.batch_size, generator), self.device)
                    if self.group is not None:
                        batch = self.group.shard(batch, cfg.batch_size, self.data)
                    with autocast_context(self.device, self.precision):
                        loss, metrics = self._check_output(self.model.loss(batch), training=False)
                    total += float(loss.detach().float())
                    shares.append(float(loss.detach().double()))
                    for k, v in metrics.items():
                        sums[k] = sums.get(k, 0.0) + v
        finally:
            self.model.train(was_training)
        if self.group is not None:  # the ranks' shares averaged: one process's numbers
            means, sums = self.group.mean_of(shares, sums)
            total = sum(distributed.rounded(v) for v in means)
        val = total / cfg.eval_batches
        self._check_divergence("validation loss", self.step, val)
        improved = math.isfinite(val) and (self.best_val is None or val < self.best_val)
        if improved:
            self.best_val, self.best_step = val, self.step
        if scheduled:
            if math.isfinite(val) and (self.patience_best is None or val < self.patience_best):
                self.patience_best, self.bad_evals = val, 0
            else:
                self.bad_evals += 1
        self.last_val, self.last_eval_step = val, self.step
        self.rng_snapshot = capture_rng_state()
        record = {"step": self.step, "split": "val", "loss": val}
        record.update({k: v / cfg.eval_batches for k, v in sums.items()})
        record["time"] = round(self._elapsed(), 3)
        self._write(record)
        self.bar.set(val=f"val {val:.4f}")
        return improved

    def trainer_state(self) -> dict:
        return {
            "step": self.step,
            "best_val_loss": self.best_val,
            "best_step": self.best_step,
            "last_val_loss": self.last_val,
            "patience_best_val_loss": self.patience_best,
            "bad_evals": self.bad_evals,
            "last_eval_step": self.last_eval_step,
            "elapsed": self._elapsed(),
            "lr": lr_at(self.step, self.cfg),
            "window": self.window,
            "diverge_reference": self.diverge_ref,
            "rng": self.rng_snapshot,
            "train_config": self.cfg.to_dict(),
        }

    def save(self, improved: bool) -> Path:
        with self.guard.critical():
            finite = torch.stack([torch.isfinite(p.detach()).all() for p in self.model.parameters()]).all()
            if not bool(finite):
                raise NonFiniteLossError("model parameters", self.step, float("nan"), self._last_good())
            path = self.run_dir / CHECKPOINTS_DIR / checkpoint_name(self.step)
            if self.main:  # under torchrun rank 0 writes, the others wait for it
                save_checkpoint(path, family=self.family, config=self.model_config,
                                state_dict=model_state(self.model), trainer_state=self.trainer_state(),
                                optimizer_state=None if self.optimizer is None else self.optimizer.state_dict(),
                                files=self.files)
                if improved:
                    write_pointer(self.run_dir, BEST_FILE, step=self.step, path=path, val_loss=self.best_val)
                write_pointer(self.run_dir, LATEST_FILE, step=self.step, path=path, val_loss=self.last_val)
                prune_checkpoints(self.run_dir, self.cfg.keep_last, keep=[path])
            if self.group is not None and not self.hard_stop:
                self.group.barrier()
            self.last_saved_step, self.last_checkpoint = self.step, path
            return path

    # ---- control

    def _eval_due(self, s: int) -> bool:
        return s % self.cfg.eval_every == 0 or s == self.cfg.max_steps

    def _save_due(self, s: int, evaluated: bool, improved: bool) -> bool:
        every = self.cfg.save_every
        return improved or (evaluated and every is None) or (every is not None and s % every == 0)

    def _stop_reason(self, *, budget: bool = True) -> str | None:
        """Why the run stops now, or None. ``budget=False`` (a resumed run, before its first
        step) ignores ``max_seconds``: every invocation makes at least one step."""
        cfg = self.cfg
        if cfg.patience is not None and self.bad_evals >= cfg.patience:
            return "early_stop"
        if self.step >= cfg.max_steps:
            return "max_steps"
        requested = self.guard.requested
        over = budget and cfg.max_seconds is not None and time.perf_counter() - self.t0 >= cfg.max_seconds
        if self.group is not None:  # a Ctrl-C or the clock on any rank stops them all after this step
            requested, over = self.group.any(requested, over)
        if requested:
            return "interrupted"
        if over:
            return "max_seconds"
        return None

    def _evaluate_and_hook(self, *, scheduled: bool = True) -> bool:
        """``evaluate``, then the ``on_eval(step)`` hook with the model in eval mode."""
        improved = self.evaluate(scheduled=scheduled)
        if self.on_eval is not None and self.main:
            was_training = self.model.training
            self.model.eval()
            try:
                self.on_eval(self.step)
            finally:
                self.model.train(was_training)
        return improved

    def after_step(self, *, log: bool, resumed: bool = False) -> str | None:
        """Logging, the scheduled evaluation and checkpoint of the step just made; returns why
        the run stops, or None. ``resumed``: called once before the first step of a resume."""
        s = self.step
        if log and s % self.cfg.log_every == 0:
            self.log_train()
        evaluated = improved = False
        started = time.perf_counter()
        if self._eval_due(s) and self.last_eval_step < s:
            improved = self._evaluate_and_hook()
            evaluated = True
        if self._save_due(s, evaluated, improved) and (evaluated or self.last_saved_step != s):
            self.save(improved)
        self.rate_t0 += time.perf_counter() - started  # throughput counts training time only
        return self._stop_reason(budget=not resumed)

    def final_evaluation(self) -> tuple[bool, bool]:
        """Evaluate the step the run stops at, unless it was evaluated already; returns
        (evaluated, improved). Where the step's evaluation is a scheduled one (an interruption
        cut it short), it is made as scheduled; otherwise it is an extra one, which does not
        count toward patience. Either way it starts from the global generators' state saved
        after the step (the interrupted step may have drawn from them), and an extra one
        leaves that state as it was, so a resumed run equals the uninterrupted one. A
        KeyboardInterrupt during it skips the rest of it."""
        s = self.step
        if self.last_eval_step >= s:
            return False, False
        scheduled = s > 0 and self._eval_due(s)
        before = self.rng_snapshot
        restore_rng_state(before)
        try:
            improved = self._evaluate_and_hook(scheduled=scheduled)
        except KeyboardInterrupt:
            evaluated = self.last_eval_step == s  # the hook was cut short, not the evaluation
            return evaluated, evaluated and self.best_step == s
        finally:
            self.model.train()
            if not scheduled:
                restore_rng_state(before)
                self.rng_snapshot = before
        return True, improved

    def run(self) -> TrainResult:
        cfg = self.cfg
        if self.progress:
            start = (f"resuming {self.family} in {self.run_dir} at step {self.step}" if self.resumed
                     else f"training {self.family} into {self.run_dir}")
            print(start, file=sys.stderr, flush=True)
        self.t0 = self.rate_t0 = time.perf_counter()
        self.rate_tokens, self.rate_steps = 0.0, 0
        stopped: str | None = None
        self.bar = Progress(cfg.max_steps, initial=self.step, desc=self.family, unit="step",
                            time_limit=cfg.max_seconds, enabled=self.progress)
        self.metrics_file = open(self.run_dir / METRICS_FILE if self.main else os.devnull, "a", encoding="utf-8")
        try:
            self._open_tensorboard()
            with self.guard:
                try:
                    # A resumed run: finish an evaluation that an interruption cut short.
                    if self.step > 0:
                        stopped = self.after_step(log=False, resumed=True)
                    while stopped is None:
                        self.train_step()
                        stopped = self.after_step(log=True)
                except KeyboardInterrupt:
                    stopped = "interrupted"
                    self.model.train()
                    # torchrun: the ranks may now be at different places; rank 0 saves alone
                    self.hard_stop = self.group is not None
                # every run ends with an evaluation of its last step, then a checkpoint
                evaluated, improved = (False, False) if self.hard_stop else self.final_evaluation()
                with self.guard.critical():
                    if evaluated or self.last_saved_step != self.step:
                        self.save(improved)
        finally:
            self.bar.close()
            self.metrics_file.close()
            if self.writer is not None:
                self.writer.close()
        return TrainResult(
            steps=self.step,
            best_val_loss=self.best_val,
            last_val_loss=self.last_val,
            stopped=stopped,
            seconds=time.perf_counter() - self.t0,
            history=self.history,
            checkpoint=self.last_checkpoint,
            run_dir=self.run_dir,
        )


def train(
    model: nn.Module,
    data: Any,
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    family: str,
    model_config: dict,
    files: Mapping[str, str] | None = None,
    resume: bool = False,
    progress: bool = True,
    data_info: dict | None = None,
    on_eval: Any = None,
    upgrade: Any = None,
) -> TrainResult:
    """Train ``model`` on ``data`` with ``cfg``, writing into ``run_dir`` (see the module
    docstring, and ``seqlab.training.rundir`` for the layout).

    ``family`` and ``model_config`` are stored with every checkpoint so that it can be loaded
    without the code that trained it; ``files`` are extra text files saved with each checkpoint
    (``{"tokenizer.json": ...}``); ``data_info`` describes the data in ``run.json``.
    ``on_eval(step)`` is called after every evaluation (also the final one), with the model in
    eval mode (to write sample grids, say); it must not draw from the global random generators,
    or a resumed run would no longer equal the uninterrupted one. ``upgrade(checkpoint) ->
    checkpoint`` translates a checkpoint written by an older seqlab before a resume reads it
    (``seqlab.runs.Family.upgrade_checkpoint``). ``progress``: the run directory, then a bar (or
    plain lines where stderr is not a terminal), on stderr (``seqlab.progress``).

    A new run into a directory that already holds checkpoints is a ValueError (pass
    ``resume=True``); so is ``resume=True`` without a checkpoint, or with settings that differ
    from the saved run's (``seqlab.training.rundir.resume_differences``: apart from device,
    precision, log_every and max_seconds, and data compared on their identity only)."""
    if not isinstance(model, nn.Module) or not callable(getattr(model, "loss", None)):
        fail("model", "a torch.nn.Module with a loss(batch) method", type(model).__name__)
    if not callable(getattr(data, "get_batch", None)):
        fail("data", "an object with get_batch(split, batch_size, generator)", type(data).__name__)
    if not isinstance(cfg, TrainConfig):
        fail("cfg", "a TrainConfig", type(cfg).__name__)
    if not isinstance(family, str) or not family:
        fail("family", "a non-empty string", repr(family))
    if not isinstance(model_config, Mapping):
        fail("model_config", "a dict", type(model_config).__name__)
    model_config = json_normal(dict(model_config), "model_config")
    if data_info is not None:
        if not isinstance(data_info, Mapping):
            fail("data_info", "a dict or None", type(data_info).__name__)
        data_info = json_normal(dict(data_info), "data_info")
    files = dict(files or {})
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        fail("run_dir", "a directory", f"{str(run_dir)!r} (a file)")
    # torchrun's environment: one process of N (seqlab.training.distributed); None: the only one
    group = distributed.join(cfg.device, batch_size=cfg.batch_size, model=model, family=family)
    if group is not None:
        run_dir = group.same_path(run_dir)  # rank 0's (a default name holds the time of day)

    existing = latest_checkpoint(run_dir)
    if not resume and existing is not None:
        fail("run_dir", "a new or empty run directory (pass --resume to continue this run, or choose another "
             "directory)", f"{str(run_dir)!r}, which already holds checkpoints (latest: {existing.name})")
    if resume:
        if existing is None:
            fail("resume", "a run directory holding a checkpoint",
                 f"{str(run_dir)!r}, which holds none (start a new run without --resume)")
        diffs = resume_differences(read_run_json(run_dir), family, model_config, cfg, data_info)
        if diffs:
            fail("resume", "the settings the run was started with (or a new run directory)",
                 "different ones: " + "; ".join(diffs))

    if on_eval is not None and not callable(on_eval):
        fail("on_eval", "a function of the step, or None", type(on_eval).__name__)
    if upgrade is not None and not callable(upgrade):
        fail("upgrade", "a function checkpoint -> checkpoint, or None", type(upgrade).__name__)
    run = _Run(model, data, cfg, run_dir, family, model_config, files, progress, data_info, on_eval, upgrade,
               group=group)
    run.setup(resume)
    return run.run()
