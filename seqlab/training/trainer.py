"""The one generic trainer.

It knows nothing about the model except ``model.loss(batch) -> (loss, metrics)``, and nothing
about the data except ``data.get_batch(split, batch_size, generator) -> batch``.

What it does, step ``s = 1 .. max_steps``:

    lr(s)  = lr * s / warmup_steps                                    s <= warmup_steps
           = min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2,          p = (s - warmup) / (max_steps - warmup)
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

Every ``eval_every`` steps (and at the last step) the mean validation loss over ``eval_batches``
fixed batches is computed; the run keeps the best one, stops early after ``patience``
evaluations without improvement, and saves a checkpoint (``seqlab.training.checkpoint``).
Ctrl-C finishes the current step, saves and returns ``stopped="interrupted"``; a second
Ctrl-C stops at once and saves the last completed step. ``resume=True`` continues from the
newest checkpoint; on a CPU the resumed loss curve equals the uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from seqlab.training.checkpoint import (
    BEST_FILE,
    CHECKPOINTS_DIR,
    LATEST_FILE,
    atomic_write_json,
    atomic_write_text,
    checkpoint_name,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    write_pointer,
)
from seqlab.training.device import PRECISIONS, autocast_context, check_device_name, resolve_device, resolve_precision
from seqlab.validation import check_choice, check_float, check_int, fail

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
SCHEDULES = ("cosine", "constant")
STOP_REASONS = ("max_steps", "max_seconds", "early_stop", "interrupted")
# Fields that do not change a run's trajectory: they may differ when resuming.
RESUMABLE_CHANGES = ("device", "precision", "log_every", "max_seconds")
_RESERVED_METRICS = ("step", "split", "loss", "lr", "time", "tokens_per_s", "steps_per_s", "grad_norm")


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run. Every field is checked; a bad value is a ValueError.

    Attributes:
        max_steps: number of optimizer steps of the whole run.
        max_seconds: wall-clock budget of one invocation in seconds (``None``: no limit); the
            run stops after the step that exceeds it and saves a checkpoint.
        batch_size: items per batch (passed to ``data.get_batch``).
        lr: peak learning rate, reached at the end of the warmup.
        min_lr: learning rate at ``max_steps`` for the cosine schedule (``None``: ``lr / 10``).
        warmup_steps: steps of linear warmup from 0 to ``lr``.
        schedule: ``"cosine"`` (decay to ``min_lr`` at ``max_steps``) or ``"constant"``.
        weight_decay: AdamW weight decay, applied to parameters with ``dim >= 2`` only.
        beta1, beta2: AdamW's moving-average coefficients.
        clip_norm: clip the gradient's global L2 norm to this value (``None``: off).
        clip_value: clip each gradient entry to ``[-clip_value, clip_value]`` first (``None``: off).
        eval_every: steps between evaluations on the validation split (also at the last step).
        eval_batches: validation batches per evaluation (the same batches every time).
        patience: stop after this many evaluations without a better validation loss
            (``None``: never stop early).
        save_every: steps between checkpoints (``None``: at every evaluation). A checkpoint is
            also written whenever the validation loss improves, at the end and on Ctrl-C.
        keep_last: number of newest checkpoints kept (the best one is always kept too).
        seed: seed of Python's, NumPy's and PyTorch's generators and of the batch order.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        precision: ``"auto"`` (bf16 autocast on a CUDA GPU that supports it, else fp32),
            ``"fp32"`` or ``"bf16"`` (CUDA only).
        log_every: steps between lines of training metrics in ``metrics.jsonl`` (each line
            holds the mean over the steps since the previous line).
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
        if self.clip_norm is not None:
            _check_positive_finite(self.clip_norm, "clip_norm")
        if self.clip_value is not None:
            _check_positive_finite(self.clip_value, "clip_value")
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


@dataclass
class TrainResult:
    """What ``train`` returns. ``history`` holds the records of ``metrics.jsonl`` (of the whole
    run, also those written before a resume); ``checkpoint`` is the last saved checkpoint."""

    steps: int
    best_val_loss: float | None
    last_val_loss: float | None
    stopped: str
    seconds: float
    history: list[dict] = field(default_factory=list)
    checkpoint: Path | None = None


# --------------------------------------------------------------------------- RNG, gradients


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


def _batch_seed(seed: int, step: int) -> int:
    # A well-mixed 63-bit seed from (seed, step): step s sees the same batch in every run.
    a, b = np.random.SeedSequence([seed, 0x5E91AB, step]).generate_state(2, dtype=np.uint32)
    return (int(a) << 31) ^ int(b)


def _eval_seed(seed: int) -> int:
    a, b = np.random.SeedSequence([seed, 0xE7A1]).generate_state(2, dtype=np.uint32)
    return (int(a) << 31) ^ int(b)


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
    return torch.optim.AdamW(groups, lr=lr_at(1, cfg), betas=(cfg.beta1, cfg.beta2))


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
        if not self.requested:
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


# --------------------------------------------------------------------------- run directory


def _json_normal(obj: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError) as e:
        fail(what, "JSON-serializable values", str(e))


def _diff(prefix: str, saved: Any, new: Any, out: list[str]) -> None:
    if isinstance(saved, dict) and isinstance(new, dict):
        for k in sorted(set(saved) | set(new), key=str):
            _diff(f"{prefix}.{k}", saved.get(k, "(missing)"), new.get(k, "(missing)"), out)
    elif saved != new:
        out.append(f"{prefix}: saved {saved!r}, new {new!r}")


def _read_run_json(run_dir: Path) -> dict:
    f = run_dir / RUN_FILE
    try:
        obj = json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fail("resume", f"the run's {RUN_FILE} in {str(run_dir)!r}", "no such file")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"run file {f}", "readable JSON", f"an unreadable file ({e})")
    if not isinstance(obj, dict) or obj.get("format") != "seqlab-run":
        fail(f"run file {f}", "format 'seqlab-run'", repr(obj.get("format") if isinstance(obj, dict) else obj))
    return obj


def default_run_dir(family: str) -> Path:
    """``runs/FAMILY-DATE-TIME``: where a run goes when no ``--out`` is given."""
    return Path("runs") / f"{family}-{time.strftime('%Y%m%d-%H%M%S')}"


def find_run_dir(path: str | Path) -> Path:
    """The run directory of ``path``: itself, or for a checkpoint (RUN/checkpoints/step-N) the
    run two levels up."""
    path = Path(path)
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / RUN_FILE).exists():
            return candidate
    fail("run", "a run directory (holding run.json) or a checkpoint inside one", f"{str(path)!r}")


def read_run(run_dir: str | Path, family: str | tuple[str, ...]) -> dict:
    """The ``run.json`` of a run directory, checked to be a run of ``family`` (a name or
    several)."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file():
        fail("resume", f"a run directory holding {RUN_FILE}", f"{str(run_dir)!r} (no {RUN_FILE} there)")
    saved = _read_run_json(run_dir)
    families = (family,) if isinstance(family, str) else tuple(family)
    if saved.get("family") not in families:
        fail("run family", " or ".join(map(repr, families)), repr(saved.get("family")))
    return saved


def _resume_differences(saved: dict, family: str, model_config: dict, cfg: TrainConfig,
                        data_info: dict | None) -> list[str]:
    diffs: list[str] = []
    if saved.get("family") != family:
        diffs.append(f"family: saved {saved.get('family')!r}, new {family!r}")
    _diff("model_config", saved.get("model_config"), _json_normal(model_config, "model_config"), diffs)
    try:
        old = TrainConfig.from_dict(saved.get("train_config") or {})
    except (ValueError, TypeError) as e:
        fail(f"run file {RUN_FILE}", "a valid train config", str(e))
    for f in dataclasses.fields(TrainConfig):
        if f.name in RESUMABLE_CHANGES:
            continue
        a, b = getattr(old, f.name), getattr(cfg, f.name)
        if a != b:
            diffs.append(f"{f.name}: saved {a!r}, new {b!r}")
    if data_info is not None and saved.get("data") is not None:
        _diff("data", saved["data"], _json_normal(data_info, "data_info"), diffs)
    return diffs


def _truncate_metrics(path: Path, step: int) -> list[dict]:
    """Keep the records of steps <= ``step`` (and drop a torn last line); return them."""
    if not path.exists():
        return []
    kept: list[str] = []
    history: list[dict] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= step:
            kept.append(line)
            history.append(rec)
    atomic_write_text(path, "".join(line + "\n" for line in kept))
    return history


# --------------------------------------------------------------------------- the loop


class _Run:
    def __init__(self, model, data, cfg, run_dir, family, model_config, files, progress, data_info, on_eval=None):
        self.model: nn.Module = model
        self.on_eval = on_eval
        self.data = data
        self.cfg: TrainConfig = cfg
        self.run_dir: Path = run_dir
        self.family = family
        self.model_config = model_config
        self.files = files
        self.progress = progress
        self.data_info = data_info
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(self.device, cfg.precision)
        self.step = 0
        self.best_val: float | None = None
        self.best_step: int | None = None
        self.last_val: float | None = None
        self.bad_evals = 0
        self.last_eval_step = -1
        self.elapsed_before = 0.0
        self.window = {"count": 0, "loss": 0.0, "metrics": {}}
        self.last_saved_step: int | None = None
        self.last_checkpoint: Path | None = None
        self.history: list[dict] = []
        self.guard = _InterruptGuard()

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
        seed_everything(cfg.seed)
        self.eval_seed = _eval_seed(cfg.seed)
        metrics_path = self.run_dir / METRICS_FILE
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if resume:
            saved = _read_run_json(self.run_dir)
            created = saved.get("created", created)
            self._restore(load_checkpoint(latest_checkpoint(self.run_dir), family=self.family,
                                          map_location=self.device))
            self.history = _truncate_metrics(metrics_path, self.step)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        from seqlab import __version__

        atomic_write_json(self.run_dir / RUN_FILE, {
            "format": "seqlab-run",
            "version": 1,
            "family": self.family,
            "model_config": self.model_config,
            "train_config": cfg.to_dict(),
            "data": self.data_info,
            "seqlab_version": __version__,
            "created": created,
        })
        if not resume:
            atomic_write_text(metrics_path, "")
        self.rng_snapshot = capture_rng_state()

    def _restore(self, ckpt) -> None:
        ts = ckpt.trainer_state
        if ts is None or (self.optimizer is not None and ckpt.optimizer_state is None):
            fail(f"checkpoint {ckpt.path}", "a training checkpoint (with trainer state)", "weights only")
        try:
            self.model.load_state_dict(ckpt.state_dict, strict=True)
        except RuntimeError as e:
            fail(f"checkpoint {ckpt.path}", "weights that fit the model", str(e).splitlines()[0])
        try:
            if self.optimizer is not None:
                self.optimizer.load_state_dict(ckpt.optimizer_state)
        except (ValueError, KeyError, RuntimeError) as e:
            fail(f"checkpoint {ckpt.path}", "an optimizer state that fits the model", str(e))
        self.step = int(ts["step"])
        self.best_val = ts.get("best_val_loss")
        self.best_step = ts.get("best_step")
        self.last_val = ts.get("last_val_loss")
        self.bad_evals = int(ts.get("bad_evals", 0))
        self.last_eval_step = int(ts.get("last_eval_step", -1))
        self.elapsed_before = float(ts.get("elapsed", 0.0))
        window = ts.get("window") or {}
        self.window = {"count": int(window.get("count", 0)), "loss": float(window.get("loss", 0.0)),
                       "metrics": dict(window.get("metrics", {}))}
        restore_rng_state(ts["rng"])
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

    def train_step(self) -> None:
        cfg = self.cfg
        s = self.step + 1
        lr = lr_at(s, cfg)
        generator = torch.Generator().manual_seed(_batch_seed(cfg.seed, s))
        batch = _to_device(self.data.get_batch("train", cfg.batch_size, generator), self.device)
        if self.own_step:
            self._own_step(s, lr, batch)
            return
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast_context(self.device, self.precision):
            out = self.model.loss(batch)
        loss, metrics = self._check_output(out, training=True)
        value = float(loss.detach().float())
        if not math.isfinite(value):
            raise NonFiniteLossError("training loss", s, value, self._last_good())
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
        generator = torch.Generator(device=self.device).manual_seed(_batch_seed(self.cfg.seed, s) + 1)
        kwargs: dict[str, Any] = dict(lr=lr, weight_decay=self.cfg.weight_decay, generator=generator)
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            kwargs["optimizer"] = self.optimizer
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
            if not math.isfinite(value):
                raise NonFiniteLossError("training loss", s, value, self._last_good())
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
        self.postfix["loss"] = f"loss {record['loss']:.4f}"
        self.postfix["lr"] = f"lr {record['lr']:.2e}"
        self.postfix["speed"] = speed
        self.bar.set_postfix_str("  ".join(self.postfix.values()), refresh=False)
        self.window = {"count": 0, "loss": 0.0, "metrics": {}}
        self.rate_t0, self.rate_tokens, self.rate_steps = now, 0.0, 0

    def evaluate(self) -> bool:
        """Mean validation loss over the fixed eval batches; returns whether it improved."""
        cfg = self.cfg
        generator = torch.Generator().manual_seed(self.eval_seed)
        was_training = self.model.training
        self.model.eval()
        total, sums = 0.0, {}
        try:
            with torch.no_grad():
                for _ in range(cfg.eval_batches):
                    batch = _to_device(self.data.get_batch("val", cfg.batch_size, generator), self.device)
                    with autocast_context(self.device, self.precision):
                        loss, metrics = self._check_output(self.model.loss(batch), training=False)
                    total += float(loss.detach().float())
                    for k, v in metrics.items():
                        sums[k] = sums.get(k, 0.0) + v
        finally:
            self.model.train(was_training)
        val = total / cfg.eval_batches
        improved = math.isfinite(val) and (self.best_val is None or val < self.best_val)
        if improved:
            self.best_val, self.best_step, self.bad_evals = val, self.step, 0
        else:
            self.bad_evals += 1
        self.last_val, self.last_eval_step = val, self.step
        self.rng_snapshot = capture_rng_state()
        record = {"step": self.step, "split": "val", "loss": val}
        record.update({k: v / cfg.eval_batches for k, v in sums.items()})
        record["time"] = round(self._elapsed(), 3)
        self._write(record)
        self.postfix["val"] = f"val {val:.4f}"
        self.bar.set_postfix_str("  ".join(self.postfix.values()), refresh=False)
        return improved

    def trainer_state(self) -> dict:
        return {
            "step": self.step,
            "best_val_loss": self.best_val,
            "best_step": self.best_step,
            "last_val_loss": self.last_val,
            "bad_evals": self.bad_evals,
            "last_eval_step": self.last_eval_step,
            "elapsed": self._elapsed(),
            "lr": lr_at(self.step, self.cfg),
            "window": self.window,
            "rng": self.rng_snapshot,
            "train_config": self.cfg.to_dict(),
        }

    def save(self, improved: bool) -> Path:
        with self.guard.critical():
            finite = torch.stack([torch.isfinite(p.detach()).all() for p in self.model.parameters()]).all()
            if not bool(finite):
                raise NonFiniteLossError("model parameters", self.step, float("nan"), self._last_good())
            path = self.run_dir / CHECKPOINTS_DIR / checkpoint_name(self.step)
            save_checkpoint(path, family=self.family, config=self.model_config, state_dict=self.model.state_dict(),
                            trainer_state=self.trainer_state(),
                            optimizer_state=None if self.optimizer is None else self.optimizer.state_dict(),
                            files=self.files)
            if improved:
                write_pointer(self.run_dir, BEST_FILE, step=self.step, path=path, val_loss=self.best_val)
            write_pointer(self.run_dir, LATEST_FILE, step=self.step, path=path, val_loss=self.last_val)
            prune_checkpoints(self.run_dir, self.cfg.keep_last, keep=[path])
            self.last_saved_step, self.last_checkpoint = self.step, path
            return path

    # ---- control

    def _eval_due(self, s: int) -> bool:
        return s % self.cfg.eval_every == 0 or s == self.cfg.max_steps

    def _save_due(self, s: int, evaluated: bool, improved: bool) -> bool:
        every = self.cfg.save_every
        return improved or (evaluated and every is None) or (every is not None and s % every == 0)

    def _stop_reason(self) -> str | None:
        cfg = self.cfg
        if cfg.patience is not None and self.bad_evals >= cfg.patience:
            return "early_stop"
        if self.step >= cfg.max_steps:
            return "max_steps"
        if self.guard.requested:
            return "interrupted"
        if cfg.max_seconds is not None and time.perf_counter() - self.t0 >= cfg.max_seconds:
            return "max_seconds"
        return None

    def after_step(self, *, log: bool) -> str | None:
        s = self.step
        if log and s % self.cfg.log_every == 0:
            self.log_train()
        evaluated = improved = False
        started = time.perf_counter()
        if self._eval_due(s) and self.last_eval_step < s:
            improved = self.evaluate()
            evaluated = True
            if self.on_eval is not None:
                was_training = self.model.training
                self.model.eval()
                try:
                    self.on_eval(s)
                finally:
                    self.model.train(was_training)
        if self._save_due(s, evaluated, improved) and (evaluated or self.last_saved_step != s):
            self.save(improved)
        self.rate_t0 += time.perf_counter() - started  # throughput counts training time only
        return self._stop_reason()

    def run(self) -> TrainResult:
        from tqdm import tqdm

        cfg = self.cfg
        self.t0 = self.rate_t0 = time.perf_counter()
        self.rate_tokens, self.rate_steps = 0.0, 0
        self.postfix: dict[str, str] = {}
        stopped: str | None = None
        self.bar = tqdm(total=cfg.max_steps, initial=self.step, desc=self.family, unit="step", file=sys.stderr,
                        disable=not self.progress, dynamic_ncols=True, leave=True)
        self.metrics_file = open(self.run_dir / METRICS_FILE, "a", encoding="utf-8")
        try:
            with self.guard:
                try:
                    # A resumed run: finish an evaluation that an interruption cut short.
                    if self.step > 0:
                        stopped = self.after_step(log=False)
                    while stopped is None:
                        self.train_step()
                        stopped = self.after_step(log=True)
                except KeyboardInterrupt:
                    stopped = "interrupted"
                    self.model.train()
                if self.last_saved_step != self.step:
                    self.save(improved=False)
        finally:
            self.bar.close()
            self.metrics_file.close()
        return TrainResult(
            steps=self.step,
            best_val_loss=self.best_val,
            last_val_loss=self.last_val,
            stopped=stopped,
            seconds=time.perf_counter() - self.t0,
            history=self.history,
            checkpoint=self.last_checkpoint,
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
) -> TrainResult:
    """Train ``model`` on ``data`` with ``cfg``, writing into ``run_dir`` (see the module
    docstring and ``seqlab.training.checkpoint`` for the layout).

    ``family`` and ``model_config`` are stored with every checkpoint so that it can be loaded
    without the code that trained it; ``files`` are extra text files saved with each checkpoint
    (``{"tokenizer.json": ...}``); ``data_info`` describes the data in ``run.json``.
    ``on_eval(step)`` is called after every evaluation, with the model in eval mode (to write
    sample grids, say); it must not draw from the global random generators, or a resumed run
    would no longer equal the uninterrupted one.

    A new run into a directory that already holds checkpoints is a ValueError (pass
    ``resume=True``); so is ``resume=True`` without a checkpoint, or with settings that differ
    from the saved run's (apart from device, precision, log_every and max_seconds)."""
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
    model_config = _json_normal(dict(model_config), "model_config")
    if data_info is not None:
        if not isinstance(data_info, Mapping):
            fail("data_info", "a dict or None", type(data_info).__name__)
        data_info = _json_normal(dict(data_info), "data_info")
    files = dict(files or {})
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        fail("run_dir", "a directory", f"{str(run_dir)!r} (a file)")

    existing = latest_checkpoint(run_dir)
    if not resume and existing is not None:
        fail("run_dir", "a new or empty run directory (pass --resume to continue this run, or choose another "
             "directory)", f"{str(run_dir)!r}, which already holds checkpoints (latest: {existing.name})")
    if resume:
        if existing is None:
            fail("resume", "a run directory holding a checkpoint",
                 f"{str(run_dir)!r}, which holds none (start a new run without --resume)")
        diffs = _resume_differences(_read_run_json(run_dir), family, model_config, cfg, data_info)
        if diffs:
            fail("resume", "the settings the run was started with (or a new run directory)",
                 "different ones: " + "; ".join(diffs))

    if on_eval is not None and not callable(on_eval):
        fail("on_eval", "a function of the step, or None", type(on_eval).__name__)
    run = _Run(model, data, cfg, run_dir, family, model_config, files, progress, data_info, on_eval)
    run.setup(resume)
    return run.run()
