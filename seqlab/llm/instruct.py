r"""The instruction-following GPT of the prompt-injection study (``seqlab.llm.injection``):
seqlab's GPT whose input, with the segment defence, also marks the untrusted data,

    a^(0)_t = w^(x) . x_t + p_t + s^(z_t)            z_t = 1 on the data's tokens, else 0

and whose cost is the next-token cross entropy on the answer's tokens only,

    C = -(1/|A|) sum_{t in A} log o_t[x_(t+1)]         A: the positions that predict the answer
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.llm.gpt import GPT, GPTConfig
from seqlab.llm.injection import ALPHABET, DEFENSES, IGNORE, SPECIAL_TOKENS, defense_flags
from seqlab.validation import check_choice, fail, fields_from_dict


@dataclass(frozen=True)
class InstructConfig(GPTConfig):
    """Settings of an instruction-following GPT: those of ``GPTConfig``, and

    Attributes:
        defense: none, delimiters, segment, adversarial, delimiters+adversarial or segment+adversarial
    """

    vocab_size: int = len(ALPHABET) + len(SPECIAL_TOKENS)
    block_size: int = 160
    d_model: int = 96
    num_heads: int = 4
    num_layers: int = 2
    defense: str = "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.defense, "defense", DEFENSES)

    @property
    def segment(self) -> bool:
        return defense_flags(self.defense)[1]

    @property
    def delimiters(self) -> bool:
        return defense_flags(self.defense)[0]

    @classmethod
    def from_dict(cls, d: dict) -> "InstructConfig":
        return cls(**fields_from_dict(cls, d, "instruct config"))


class InstructGPT(GPT):
    """seqlab's GPT with, when ``config.segment``, a segment embedding ``w_s`` (2, D):

        a^(0)_t = w^(x) . x_t + p_t + s^(z_t)

    ``forward(ids, segments=None, cache=None)`` -> logits (B, T, V); ``loss((x, y, z))``:
    cross entropy on the positions whose target is not ``IGNORE`` (the answer)."""

    family = "instruct"

    def __init__(self, config: InstructConfig | None = None, /, **kwargs) -> None:
        if config is None:
            config = InstructConfig(**kwargs)
        elif not isinstance(config, InstructConfig):
            fail("config", "an InstructConfig", type(config).__name__)
        super().__init__(config)
        # s^(0), s^(1): (2, D), zero at the start (the model starts as a plain GPT)
        self.w_s = nn.Parameter(torch.zeros(2, config.d_model)) if config.segment else None

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None, *, cache=None,
                need_weights: bool = False):
        """ids, segments: (B, T). Segments are required by a model with the segment
        embedding (0 trusted, 1 data) and ignored by one without."""
        return super().forward(ids, cache=cache, need_weights=need_weights, segments=segments)

    def embed(self, ids: torch.Tensor, offset: int = 0, segments: torch.Tensor | None = None) -> torch.Tensor:
        # a^(0)_t = w^(x) . x_t + p_t
        x = super().embed(ids, offset)  # (B, T, D)
        if self.w_s is not None:
            if not isinstance(segments, torch.Tensor) or segments.shape != ids.shape:
                fail("segments", f"segment ids of shape {tuple(ids.shape)} (0 trusted, 1 data)",
                     "none" if segments is None else f"shape {tuple(getattr(segments, 'shape', ()))}")
            if segments.is_floating_point() or bool(((segments != 0) & (segments != 1)).any()):
                fail("segments", "0 (trusted) or 1 (data)", segments.unique().tolist())
            # + s^(z_t)   (the segment embedding: which tokens are untrusted data)
            x = x + F.embedding(segments.to(ids.device, torch.long), self.w_s)  # (B, T, D)
        return x

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """batch = (x, y, z): C = -(1/|A|) sum_{t in A} log o_t[y_t], A the positions with
        y_t != IGNORE (those that predict the answer and its end)."""
        x, y, z = batch
        logits = self(x, z)  # (B, T, V)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)
        n = int((y != IGNORE).sum())
        return loss, {"bits": loss.item() / 0.6931471805599453, "tokens": x.numel(), "answer_tokens": n}


__all__ = ["InstructConfig", "InstructGPT"]
