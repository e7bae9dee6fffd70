"""The settings of a training run (``TrainConfig``) and its learning-rate schedule (``lr_at``).

    lr(s) = lr * s / warmup_steps                                    s <= warmup_steps
          = min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2,          p = (s - warmup) / (max_steps - warmup)

Every field is checked when the config is made; a bad value is a ValueError that names the
field, what it expects and what it received. The command line makes its ``--flag`` help from
the ``Attributes:`` section of ``TrainConfig``'s docstring (one ``name: help`` entry per field).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from seqlab.training.device import PRECISIONS, check_device_name
from seqlab.validation import check_choice, check_float, check_int, fail

SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run. Every field is checked; a bad value is a ValueError.

    Attributes:
        max_steps: number of optimizer steps of the whole run.
        max_seconds: wall-clock budget of one invocation in seconds (``None``: no limit). The
            run stops after the step that exceeds it (each invocation makes at least one step),
            evaluates that step and saves a checkpoint.
        batch_size: items per batch (passed to ``data.get_batch``).
        lr: peak learning rate, reached at the end of the warmup.
        min_lr: learning rate at ``max_steps`` for the cosine schedule (``None``: ``lr / 10``).
        warmup_steps: steps of linear warmup from 0 to ``lr``.
        schedule: ``"cosine"`` (decay to ``min_lr`` at ``max_steps``) or ``"constant"``.
        weight_decay: AdamW weight decay, applied to parameters with ``dim >= 2`` only.
        beta1, beta2: AdamW's moving-average coefficients.
        clip_norm: clip the gradient's global L2 norm to this value (0 or ``None``: off).
            A 0 is stored as ``None``.
        clip_value: clip each gradient entry to ``[-clip_value, clip_value]`` first (0 or
            ``None``: off). A 0 is stored as ``None``.
        eval_every: steps between evaluations on the validation split. The step a run stops
            at is evaluated too, whatever stopped it.
        eval_batches: validation batches per evaluation (the same batches every time).
        patience: stop after this many evaluations without a better validation loss
            (``None``: never stop early). The extra evaluation at an early stop (Ctrl-C,
            ``max_seconds``) does not count.
        save_every: steps between checkpoints (``None``: at every evaluation). A checkpoint is
            also written whenever the validation loss improves, at the end and on Ctrl-C.
        keep_last: number of newest checkpoints kept (the best one is always kept too).
        seed: seed of Python's, NumPy's and PyTorch's generators and of the batch order.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"`` (CUDA only). ``"auto"`` is bf16
            autocast on a CUDA GPU that supports it, else fp32.
        log_every: steps between lines of training metrics in ``metrics.jsonl``. Each line
            holds the mean over the steps since the previous line.
        diverge_factor: stop when a loss exceeds L1 + diverge_factor * |L1| (none: never). L1 is
            the training loss of the run's first step (kept in the trainer state). Every step's
            training loss and every validation loss is checked before anything is saved, so the
            last checkpoint is one from before the divergence.
        tensorboard: write the curves to RUN_DIR/tensorboard (default: on where installed). On
            where the tensorboard package is installed (``pip install seqlab[tensorboard]``);
            asking for it without the package is an error.
        compile: compile the model's forward with torch.compile, in place. Checkpoints keep their weight
            names, so they load, sample and resume without it. A model that cannot be compiled runs
            uncompiled, and ``seqlab train`` says why in one line.
    """

    max_steps: int = 1000
    max_seconds: float | None = None
    batch_size: int = 32
    lr: float = 3e-3
    min_lr: float | None = None
    warmup_steps: int = 50
    schedule: str = "cosine"
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.99
    clip_norm: float | None = 1.0
    clip_value: float | None = None
    eval_every: int = 100
    eval_batches: int = 10
    patience: int | None = None
    save_every: int | None = None
    keep_last: int = 2
    seed: int = 1337
    device: str = "auto"
    precision: str = "auto"
    log_every: int = 10
    diverge_factor: float | None = 100.0
    tensorboard: bool | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        check_int(self.max_steps, "max_steps", minimum=1)
        if self.max_seconds is not None:
            _check_positive_finite(self.max_seconds, "max_seconds")
        check_int(self.batch_size, "batch_size", minimum=1)
        _check_positive_finite(self.lr, "lr")
        if self.min_lr is not None:
            check_float(self.min_lr, "min_lr", minimum=0.0, maximum=float(self.lr))
        check_int(self.warmup_steps, "warmup_steps", minimum=0)
        check_choice(self.schedule, "schedule", SCHEDULES)
        check_float(self.weight_decay, "weight_decay", minimum=0.0)
        _check_finite(self.weight_decay, "weight_decay")
        check_float(self.beta1, "beta1", minimum=0.0, maximum=1.0, open_max=True)
        check_float(self.beta2, "beta2", minimum=0.0, maximum=1.0, open_max=True)
        for name in ("clip_norm", "clip_value"):
            value = getattr(self, name)
            if _is_zero(value):
                object.__setattr__(self, name, None)  # 0 means off
            elif value is not None:
                _check_positive_finite(value, name)
        check_int(self.eval_every, "eval_every", minimum=1)
        check_int(self.eval_batches, "eval_batches", minimum=1)
        if self.patience is not None:
            check_int(self.patience, "patience", minimum=1)
        if self.save_every is not None:
            check_int(self.save_every, "save_every", minimum=1)
        check_int(self.keep_last, "keep_last", minimum=1)
        check_int(self.seed, "seed", minimum=0, maximum=2**32 - 1)
        check_device_name(self.device)
        check_choice(self.precision, "precision", PRECISIONS)
        check_int(self.log_every, "log_every", minimum=1)
        if self.diverge_factor is not None:
            _check_positive_finite(self.diverge_factor, "diverge_factor")
        if self.tensorboard is not None and not isinstance(self.tensorboard, bool):
            fail("tensorboard", "True, False or None (on where the package is installed)", repr(self.tensorboard))
        if not isinstance(self.compile, bool):
            fail("compile", "True or False", repr(self.compile))

    @property
    def final_lr(self) -> float:
        """The learning rate the cosine schedule ends at (``min_lr``, or ``lr / 10``)."""
        return self.lr / 10 if self.min_lr is None else float(self.min_lr)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        """Build from a dict; missing fields take their defaults, unknown ones are an error."""
        if not isinstance(d, Mapping):
            fail("train config", "a dict", type(d).__name__)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            fail("train config", "fields among " + ", ".join(names), "unknown field(s) " + ", ".join(map(repr, unknown)))
        return cls(**dict(d))


def _is_zero(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value == 0


def _check_positive_finite(value: object, name: str) -> None:
    check_float(value, name, minimum=0.0, open_min=True)
    _check_finite(value, name)


def _check_finite(value: object, name: str) -> None:
    if not math.isfinite(float(value)):  # type: ignore[arg-type]
        fail(name, "a finite number", value)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (1-based; ``lr_at(0) = 0`` when warming up).

    Linear warmup from 0 to ``cfg.lr`` over ``warmup_steps``, then (cosine schedule) a
    half-cosine from ``cfg.lr`` to ``final_lr`` at ``max_steps``, constant after that."""
    check_int(step, "step", minimum=0)
    if step < cfg.warmup_steps:
        # lr(s) = lr * s / warmup
        return cfg.lr * step / cfg.warmup_steps
    if cfg.schedule == "constant" or cfg.max_steps <= cfg.warmup_steps:
        return cfg.lr
    # lr(s) = min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2,   p = (s - warmup) / (max_steps - warmup)
    p = min(1.0, (step - cfg.warmup_steps) / (cfg.max_steps - cfg.warmup_steps))
    lo = cfg.final_lr
    return lo + (cfg.lr - lo) * 0.5 * (1.0 + math.cos(math.pi * p))
