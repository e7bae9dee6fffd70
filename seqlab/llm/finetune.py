r"""A pretrained GPT fine-tuned on a new text, with frozen layers or LoRA (``seqlab.llm.adapt``),
and how much of its old task it forgets.

Lecture, "Large Language Models": fine-tuning "freezes a subset of the weights (usually in
earlier layers) and updates the other weights (usually the later layers) based on new
datasets". Here the new dataset is a new corpus, and the task stays next-token prediction:

    C_new = -(1/T) sum_t log o_t[x_(t+1)]          on windows of the new text
    theta_frozen = theta_base                       w^(x), p and blocks 1..K (--freeze K), or
    W' = W + (alpha/r) B A,  W = W_base             every projection, only A and B learn (--lora-rank r)

Forgetting is the validation loss on the base corpus, before (the base model) and after (the
fine-tuned one): ``forgetting(...)`` measures both tasks on the same fixed batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from seqlab.llm.adapt import Adaptable, Adaptation, LoRA, is_lora_key, plain_name
from seqlab.llm.gpt import GPT, GPTConfig
from seqlab.validation import check_int, fail, fields_from_dict


@dataclass(frozen=True)
class GPTFineTuneConfig(Adaptation):
    """Settings of a GPT fine-tuned from a base run.

    Attributes:
        gpt: the base GPT's config (a GPTConfig).

    and the :class:`Adaptation` fields (freeze, lora_rank, lora_alpha, and the base run's
    base_checkpoint and base_sha256, set from the base run).
    """

    gpt: GPTConfig = GPTConfig()

    def __post_init__(self) -> None:
        if not isinstance(self.gpt, GPTConfig):
            fail("gpt", "a GPTConfig", type(self.gpt).__name__)
        self.check_adaptation(self.gpt.num_layers)

    def to_dict(self) -> dict:
        return {"gpt": self.gpt.to_dict(), **self.adaptation_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GPTFineTuneConfig":
        fields = fields_from_dict(cls, d, "GPT fine-tune config")
        if "gpt" in fields:
            fields["gpt"] = GPTConfig.from_dict(fields["gpt"])
        return cls(**fields)


class FineTunedGPT(Adaptable, GPT):
    """A ``GPT`` (same forward, loss, generation, attention maps) whose base weights are
    frozen as its ``GPTFineTuneConfig`` says; ``self.config`` is the GPT's config and
    ``self.finetune_config`` the whole one."""

    base_family = "gpt"

    def __init__(self, config: GPTFineTuneConfig) -> None:
        if not isinstance(config, GPTFineTuneConfig):
            fail("config", "a GPTFineTuneConfig", type(config).__name__)
        GPT.__init__(self, config.gpt)
        self.finetune_config = config
        self.adapt(Adaptation.of(config))

    @staticmethod
    def activation_bytes(config: GPTFineTuneConfig, batch_size: int) -> int:
        """The GPT's estimate (``GPT.activation_bytes``) of its base config."""
        return GPT.activation_bytes(config.gpt, batch_size)

    def adaptation_parts(self) -> tuple[list[nn.Parameter], list[nn.Module], list[nn.Parameter]]:
        # w^(x) (and with it the tied w^(o)) and the learned positions p; the blocks in order
        return [self.w_x, *self.pos.parameters()], list(self.blocks.blocks), []

    def merged(self) -> GPT:
        """A plain ``GPT`` with this model's weights, LoRA folded in: W + (alpha/r) B A."""
        gpt = GPT(self.config).to(device=self.w_x.device, dtype=self.w_x.dtype)
        gpt.load_state_dict(merged_state(self))
        return gpt.train(self.training)


def merged_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict under the plain names, each LoRA-adapted weight replaced by
    W + (alpha/r) B A (the model itself is unchanged)."""
    state = {}
    for key, value in model.state_dict().items():
        if is_lora_key(key):
            continue  # LoRA's A and B: folded in below
        state[plain_name(key)] = value
    with torch.no_grad():
        for prefix, module in model.named_modules():
            if parametrize.is_parametrized(module):
                for name in module.parametrizations.keys():
                    if any(isinstance(p, LoRA) for p in module.parametrizations[name]):
                        state[f"{prefix}.{name}" if prefix else name] = getattr(module, name).detach().clone()
    return state


@torch.no_grad()
def mean_loss(model: nn.Module, dataset: Any, *, split: str = "val", batches: int = 20, batch_size: int = 12,
              seed: int = 1234) -> float:
    """The mean of ``model.loss`` over ``batches`` windows drawn from ``dataset`` with ``seed``
    (the same windows for every model given the same seed)."""
    check_int(batches, "batches", minimum=1, maximum=100_000)
    check_int(batch_size, "batch_size", minimum=1, maximum=4096)
    was_training = model.training
    model.eval()
    try:
        g = torch.Generator().manual_seed(seed)
        device = next(model.parameters()).device
        total = 0.0
        for _ in range(batches):
            x, y = dataset.get_batch(split, batch_size, g)
            total += float(model.loss((x.to(device), y.to(device)))[0])
        return total / batches
    finally:
        model.train(was_training)


@dataclass
class Forgetting:
    """Validation losses (nats per token) of the base and the fine-tuned model on the new text
    and on the base corpus."""

    new_before: float
    new_after: float
    old_before: float
    old_after: float
    trainable: int
    total: int

    @property
    def forgotten(self) -> float:
        """How much worse the old task got: old_after - old_before (nats per token)."""
        return self.old_after - self.old_before

    def table(self) -> str:
        return "\n".join([
            f"trainable parameters {self.trainable:,} of {self.total:,} ({100 * self.trainable / self.total:.1f}%)",
            "validation loss (nats/token)   base model   fine-tuned",
            f"  new text                       {self.new_before:10.4f}   {self.new_after:10.4f}",
            f"  base corpus (forgetting)       {self.old_before:10.4f}   {self.old_after:10.4f}"
            f"   ({self.forgotten:+.4f})",
        ])

    def to_json(self) -> dict:
        return {"new_before": self.new_before, "new_after": self.new_after, "old_before": self.old_before,
                "old_after": self.old_after, "forgotten": self.forgotten, "trainable": self.trainable,
                "total": self.total}


def forgetting(base: GPT, tuned: nn.Module, new_data: Any, old_data: Any, *, batches: int = 20,
               batch_size: int = 12, seed: int = 1234) -> Forgetting:
    """Both models on both tasks' validation windows (the same windows for both)."""
    kw = dict(batches=batches, batch_size=batch_size, seed=seed)
    trainable = sum(p.numel() for p in tuned.parameters() if p.requires_grad)
    total = sum(p.numel() for p in base.parameters())
    return Forgetting(new_before=mean_loss(base, new_data, **kw), new_after=mean_loss(tuned, new_data, **kw),
                      old_before=mean_loss(base, old_data, **kw), old_after=mean_loss(tuned, old_data, **kw),
                      trainable=trainable, total=total)


__all__ = ["FineTunedGPT", "Forgetting", "GPTFineTuneConfig", "forgetting", "mean_loss", "merged_state"]
