r"""Fine-tuning a pretrained Transformer: frozen layers, and LoRA.

Lecture, "Large Language Models": fine-tuning "freezes a subset of the weights (usually in
earlier layers) and updates the other weights (usually the later layers) based on new
datasets".

**Freezing K.** The token embedding w^(x), the positional encoding p and the first K of the
L blocks stop learning (``requires_grad=False``): they get no gradient and no optimiser
state (the trainer's AdamW takes only the parameters that require a gradient, and weight
decay is part of its update), so after training they are bit-identical to the base run's.
With tied output weights (GPT: w^(o) = w^(x)) the output layer is frozen with the
embedding. K = 0 freezes the embeddings only; ``freeze=None`` is full fine-tuning.

**LoRA** (Hu et al., 2021, "Low-rank adaptation"). Every projection W (out, in) of the
attention (w^(q), w^(k), w^(v), w^(o)) and of the MLP (w^(1), w^(2)) becomes

    W' = W + (alpha / r) . B . A          A (r, in), B (out, r), r << min(out, in)

with W frozen and only A and B trained: A starts Kaiming-uniform (as Hugging Face
``peft``), B starts at zero, so W' = W and the adapted model equals the base one at step 0.
Every other weight of the base model is frozen too (a new head, a classifier's w^(c),
trains). ``merge_lora`` folds the product into the matrix, W <- W + (alpha/r) B A, so the
merged model costs nothing extra at inference.

The product is applied with ``torch.nn.utils.parametrize``: ``block.self_attn.w_q`` is
computed as W + (alpha/r) B A each time the module reads it, so the model code is unchanged.

**What a checkpoint stores.** Only the parameters training changes (those that require a
gradient: the unfrozen layers, or A and B and the head), plus, in the model's config, the
base run's checkpoint directory and the sha256 of its weights. Loading reads the base's
weights (checking that sha256, so a base run changed since cannot be mixed in silently)
and puts the stored changes on top: the whole model is rebuilt. A model with nothing
frozen stores all its weights, as before.

A model class that can be adapted inherits ``Adaptable`` and says where its parts are
(``adaptation_parts``) and under which prefix the base model's weights sit
(``base_prefix``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from seqlab.validation import check_float, check_int, fail

# the projections LoRA adapts: the attention's w^(q), w^(k), w^(v), w^(o) and the MLP's w^(1), w^(2)
LORA_TARGETS = ("w_q", "w_k", "w_v", "w_o", "w_1", "w_2")
MAX_LORA_RANK = 4096


@dataclass(frozen=True, kw_only=True)
class Adaptation:
    """How a pretrained model is fine-tuned. The model configs that fine-tune a base run
    (``GPTFineTuneConfig``, ``BERTClassifierConfig``) are Adaptations with their own fields
    added (these five are keyword-only, so they come after any field of the subclass).

    Attributes:
        freeze: K, freeze the token/position embeddings and the first K blocks (default: nothing
            frozen, full fine-tuning; 0: the embeddings only).
        lora_rank: r, LoRA on every attention and MLP projection, W + (alpha/r) B A (0: no LoRA).
        lora_alpha: alpha, LoRA's scale is alpha/r (default: alpha = r, a scale of 1).
        base_checkpoint: the base run's checkpoint directory, where the frozen weights are read
            (set from the base run).
        base_sha256: the sha256 of that checkpoint's weights, model.safetensors (set from the base run).
    """

    freeze: int | None = None
    lora_rank: int = 0
    lora_alpha: float | None = None
    base_checkpoint: str | None = None
    base_sha256: str | None = None

    @property
    def adapted(self) -> bool:
        """True when some base weights are frozen (the checkpoint then stores only the changes)."""
        return self.freeze is not None or self.lora_rank > 0

    def check_adaptation(self, num_layers: int) -> None:
        """One-line errors for adaptation settings the config cannot have (``check_adaptation``)."""
        check_adaptation(self.freeze, self.lora_rank, self.lora_alpha, num_layers, self.base_checkpoint,
                         self.base_sha256)

    def adaptation_dict(self) -> dict:
        """The five fields, for a config's ``to_dict``."""
        return {name: getattr(self, name) for name in ADAPTATION_FIELDS}

    @classmethod
    def of(cls, config: Any) -> "Adaptation":
        """The adaptation fields of a model config (a GPT fine-tune's, a BERT classifier's)."""
        return cls(**{name: getattr(config, name) for name in ADAPTATION_FIELDS})


ADAPTATION_FIELDS = ("freeze", "lora_rank", "lora_alpha", "base_checkpoint", "base_sha256")


def check_adaptation(freeze: object, lora_rank: object, lora_alpha: object, num_layers: int,
                     base_checkpoint: object = None, base_sha256: object = None) -> None:
    """One-line errors for adaptation settings a config cannot have."""
    if freeze is not None:
        check_int(freeze, "freeze", minimum=0, maximum=num_layers)
    check_int(lora_rank, "lora_rank", minimum=0, maximum=MAX_LORA_RANK)
    if lora_alpha is not None:
        check_float(lora_alpha, "lora_alpha", minimum=0.0, open_min=True, finite=True)
        if lora_rank == 0:
            fail("lora_alpha", "no value without --lora-rank (LoRA's scale is alpha / r)", repr(lora_alpha))
    if freeze is not None and lora_rank:
        fail("fine-tuning", "--freeze K or --lora-rank r, not both (LoRA freezes every base weight)",
             f"freeze={freeze}, lora_rank={lora_rank}")
    for name, value in (("base_checkpoint", base_checkpoint), ("base_sha256", base_sha256)):
        if value is not None and (not isinstance(value, str) or not value):
            fail(name, "a non-empty string or None", repr(value))
    if (freeze is not None or lora_rank) and (base_checkpoint is None or base_sha256 is None):
        fail("fine-tuning", "the base run's checkpoint and its sha256 (set from the base run)",
             f"base_checkpoint={base_checkpoint!r}, base_sha256={base_sha256!r}")


def load_base(path: str | None, family: str, what: str) -> tuple[nn.Module, Any]:
    """(model, RunRecord) of the pretrained run a fine-tune starts from: ``path`` must name a
    run (or checkpoint) of ``family``; ``what`` names it in the error ("a pretrained GPT")."""
    from seqlab.runs import load

    if path is None:
        fail("base", f"the run directory of {what} (seqlab train {family})", "nothing")
    model, run = load(path)
    if run.family != family:
        fail("base", f"a {family} run (seqlab train {family})", f"a {run.family!r} run")
    return model, run


def base_fields(checkpoint: str | Path) -> dict[str, str]:
    """The config fields that name a fine-tune's base: the checkpoint directory (absolute) and
    the sha256 of its weights, from the checkpoint's manifest."""
    from seqlab.training.checkpoint import read_checkpoint_header

    where = Path(checkpoint).resolve()
    return {"base_checkpoint": str(where),
            "base_sha256": read_checkpoint_header(where)["manifest"]["model.safetensors"]["sha256"]}


class LoRA(nn.Module):
    r"""The parametrization W -> W' = W + (alpha / r) B A of one weight W (out, in)."""

    def __init__(self, weight: torch.Tensor, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        if weight.dim() != 2:
            fail("LoRA weight", "a matrix (out, in)", f"a tensor of shape {tuple(weight.shape)}")
        check_int(rank, "lora_rank", minimum=1, maximum=MAX_LORA_RANK)
        out_features, in_features = weight.shape
        self.rank = rank
        self.alpha = float(rank if alpha is None else alpha)
        self.scaling = self.alpha / rank
        kw = dict(device=weight.device, dtype=weight.dtype)
        self.A = nn.Parameter(torch.empty(rank, in_features, **kw))  # A: (r, in)
        self.B = nn.Parameter(torch.zeros(out_features, rank, **kw))  # B: (out, r), zero: W' = W at first
        # A ~ U(-1/sqrt(in), 1/sqrt(in)): Kaiming-uniform with a = sqrt(5), peft's initialisation of lora_A
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def forward(self, W: torch.Tensor) -> torch.Tensor:
        # W' = W + (alpha / r) B A                                       (out, in)
        return W + self.scaling * (self.B @ self.A)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, A={tuple(self.A.shape)}, B={tuple(self.B.shape)}"


def add_lora(module: nn.Module, name: str, rank: int, alpha: float | None = None) -> LoRA:
    """Adapt the weight ``module.<name>`` (out, in) with LoRA; the weight itself is frozen."""
    weight = getattr(module, name, None)
    if not isinstance(weight, nn.Parameter):
        fail("LoRA target", f"a weight matrix named {name!r}", type(weight).__name__)
    lora = LoRA(weight.detach(), rank, alpha)
    parametrize.register_parametrization(module, name, lora)
    module.parametrizations[name].original.requires_grad_(False)
    return lora


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA of ``model`` into its weight, W <- W + (alpha/r) B A (in place); the
    number of weights merged."""
    merged = 0
    for module in list(model.modules()):
        if not parametrize.is_parametrized(module):
            continue
        for name in list(module.parametrizations.keys()):
            if any(isinstance(p, LoRA) for p in module.parametrizations[name]):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
                merged += 1
    return merged


def plain_name(key: str) -> str:
    """A state-dict key without the parametrization: ``a.parametrizations.w_q.original`` ->
    ``a.w_q``."""
    head, sep, tail = key.partition("parametrizations.")
    if not sep:
        return key
    name, _, rest = tail.partition(".")
    return head + name if rest == "original" else key


def is_lora_key(key: str) -> bool:
    """A state-dict key of a parametrization's own weights (LoRA's A and B), not of the weight it adapts."""
    return ".parametrizations." in key and plain_name(key) == key


class Adaptable:
    """What a model needs to be fine-tuned with frozen layers or LoRA (mixed into ``nn.Module``
    subclasses: ``FineTunedGPT``, ``BERTClassifier``)."""

    adaptation: Adaptation = Adaptation()
    base_prefix: str = ""  # where the base model's weights sit in this model ("bert." in a classifier)
    base_family: str = ""  # the family of the base run

    def adaptation_parts(self) -> tuple[list[nn.Parameter], list[nn.Module], list[nn.Parameter]]:
        """(the embeddings, the blocks in order, base weights no task of this model uses)."""
        raise NotImplementedError

    def base_parameters(self) -> Iterable[tuple[str, nn.Parameter]]:
        """The parameters that come from the base model (named as in this model)."""
        return ((n, p) for n, p in self.named_parameters() if n.startswith(self.base_prefix))

    def adapt(self, adaptation: Adaptation) -> None:
        """Freeze or add LoRA as ``adaptation`` says (once, right after construction)."""
        self.adaptation = adaptation
        embeddings, blocks, unused = self.adaptation_parts()
        if adaptation.freeze is not None:
            # the token and position embeddings, then blocks 1..K, stop learning
            for p in [*embeddings, *unused, *(p for b in blocks[: adaptation.freeze] for p in b.parameters())]:
                p.requires_grad_(False)
        if adaptation.lora_rank:
            for _, p in self.base_parameters():
                p.requires_grad_(False)
            for block in blocks:
                for module in block.modules():
                    for name in LORA_TARGETS:
                        if isinstance(module._parameters.get(name), nn.Parameter):
                            add_lora(module, name, adaptation.lora_rank, adaptation.lora_alpha)

    def merge_lora(self) -> int:
        """Fold LoRA's B A into the weights (for inference); the number of weights merged."""
        return merge_lora(self)

    def trainable_names(self) -> list[str]:
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ---- checkpoints: only what changed, plus the base run's reference

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores: every weight, or, when base weights are frozen, only the
        ones training changes."""
        state = self.state_dict()
        if not self.adaptation.adapted:
            return state
        keep = set(self.trainable_names())
        return {k: v for k, v in state.items() if k in keep}

    def base_state(self) -> dict[str, torch.Tensor]:
        """The base run's weights, read from its checkpoint after checking their sha256."""
        from seqlab.training.checkpoint import load_checkpoint, read_checkpoint_header

        a = self.adaptation
        where = Path(a.base_checkpoint)
        if not where.is_dir():
            fail("base run", f"the checkpoint this fine-tune adapts, {str(where)!r}",
                 "no such directory (the base run was moved or deleted)")
        got = read_checkpoint_header(where)["manifest"].get("model.safetensors", {}).get("sha256")
        if got != a.base_sha256:
            fail(f"base checkpoint {where}", f"the weights this fine-tune adapts (sha256 {a.base_sha256[:16]}...)",
                 f"other weights (sha256 {str(got)[:16]}...: the base run changed since)")
        return load_checkpoint(where, family=self.base_family or None).state_dict

    def load_base_state(self, base: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor] | None = None
                        ) -> None:
        """Load the base model's weights ``base`` (named as in the base model) and, on top,
        ``state`` (this model's trained weights, named as in ``checkpoint_state``)."""
        state = dict(state or {})
        full: dict[str, torch.Tensor] = {}
        missing = []
        for key in self.state_dict():
            if key in state:
                full[key] = state[key]
                continue
            plain = plain_name(key)
            if plain.startswith(self.base_prefix) and plain[len(self.base_prefix):] in base:
                full[key] = base[plain[len(self.base_prefix):]]
            else:
                missing.append(key)
        if missing:
            fail("fine-tuned weights", "every weight from the base run or the checkpoint",
                 f"{len(missing)} missing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
        try:
            self.load_state_dict(full, strict=True)
        except RuntimeError as e:
            fail("fine-tuned weights", "tensors that fit the model", str(e).splitlines()[0])

    def start_from(self, base: Mapping[str, torch.Tensor]) -> None:
        """A new fine-tune: the base model's weights ``base``, with LoRA's A and B as initialised."""
        self.load_base_state(base, {k: v for k, v in self.state_dict().items() if is_lora_key(k)})

    def load_checkpoint_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load what ``checkpoint_state`` stored (reading the frozen weights from the base run)."""
        if not self.adaptation.adapted:
            try:
                self.load_state_dict(dict(state), strict=True)
            except RuntimeError as e:
                fail("checkpoint", "weights matching its config", f"a mismatch ({str(e).splitlines()[0]})")
            return
        expected, given = set(self.trainable_names()), set(state)
        if expected != given:
            diff = sorted(expected ^ given)
            fail("fine-tuned checkpoint", f"the {len(expected)} weights training changes",
                 f"{len(given)} weights ({len(diff)} differ, e.g. {diff[0]!r})")
        self.load_base_state(self.base_state(), state)


__all__ = ["ADAPTATION_FIELDS", "Adaptable", "Adaptation", "LORA_TARGETS", "LoRA", "add_lora", "check_adaptation",
           "base_fields", "is_lora_key", "load_base", "merge_lora", "plain_name"]
