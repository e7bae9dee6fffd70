r"""The instruction-following GPT of the prompt-injection study (``seqlab.llm.injection``):
seqlab's GPT whose input, with the segment defence, also marks the untrusted data, and with
``shifts`` S > 0 also holds the embeddings of the S previous tokens,

    a^(0)_t = w^(x) . x_t + p_t + s^(z_t) + sum_{j=1..S} w^(j) . x_(t-j)
                                                      z_t = 1 on the data's tokens, else 0

and whose cost is the next-token cross entropy on the answer's tokens only,

    C = -(1/|A|) sum_{t in A} log o_t[x_(t+1)]         A: the positions that predict the answer

It is fine-tuned from a pretrained GPT (``start_from_gpt``): s and w^(j) start at zero, so
at step 0 the model computes what the base GPT computes. The previous tokens' embeddings are
what the ``icl`` family adds for the same reason: the tasks copy the data's items in order
or in reverse, which takes an induction head (find the item just written, read its
neighbour); with them one attention layer can do it, and the instruction model learns in
minutes what the plain GPT had not learned in 2,000 steps (docs/llm-injection.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.llm.gpt import GPT, GPTConfig, previous_token_embeddings
from seqlab.llm.injection import ALPHABET, DEFENSES, IGNORE, SPECIAL_TOKENS, defense_flags
from seqlab.validation import check_choice, check_int, fail, fields_from_dict


@dataclass(frozen=True)
class InstructConfig(GPTConfig):
    """Settings of an instruction-following GPT: those of ``GPTConfig``, and

    Attributes:
        defense: none, delimiters, segment, adversarial, delimiters+adversarial or segment+adversarial
        shifts: how many previous tokens' embeddings are added to each position's input (0: a plain GPT's input)
        base_checkpoint: the checkpoint of the pretrained GPT the run was fine-tuned from (None: from scratch)
        base_sha256: the sha256 of that checkpoint's weights (a record: the run stores all its weights)
    """

    vocab_size: int = len(ALPHABET) + len(SPECIAL_TOKENS)
    block_size: int = 160
    d_model: int = 96
    num_heads: int = 4
    num_layers: int = 2
    defense: str = "none"
    shifts: int = 0
    base_checkpoint: str | None = None
    base_sha256: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.defense, "defense", DEFENSES)
        check_int(self.shifts, "shifts", minimum=0, maximum=8)
        for name in ("base_checkpoint", "base_sha256"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                fail(name, "a non-empty string or None", repr(value))

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
    """seqlab's GPT with, when ``config.segment``, a segment embedding ``w_s`` (2, D), and with
    ``config.shifts`` S > 0 the previous tokens' embeddings ``w_shift`` (S, V, D):

        a^(0)_t = w^(x) . x_t + p_t + s^(z_t) + sum_{j=1..S} w^(j) . x_(t-j)

    (a model with S > 0 has no KV cache: it reads the whole context at every step.)

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
        # w^(1) .. w^(S): embeddings of the previous tokens x_(t-1) .. x_(t-S), (S, V, D), zero at the start
        self.w_shift = nn.Parameter(torch.zeros(config.shifts, config.vocab_size, config.d_model)) \
            if config.shifts else None

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
        if self.w_shift is not None:
            if offset:
                fail("cache", "None (this model reads the previous tokens at every position: no KV cache)",
                     "a cache")
            # + sum_j w^(j) . x_(t-j)
            x = x + previous_token_embeddings(ids, self.w_shift)  # (B, T, D)
        return x

    @torch.no_grad()
    def start_from_gpt(self, gpt: GPT, gpt_chars: str, chars: str) -> int:
        """Fine-tuning starts here: the weights of a pretrained GPT of the same size. The blocks
        and the positions are copied as they are. The token embedding w^(x) (and an untied
        w^(o)) is copied row by row by character: the row of a character of ``chars`` (this
        model's alphabet, ids 0..) is the base's row of the same character of ``gpt_chars``;
        the reserved tokens and the characters the base never saw keep their fresh rows, and
        the segment embedding its zeros. Returns how many characters were copied."""
        base = gpt.state_dict()
        own = self.state_dict()
        base_id = {c: i for i, c in enumerate(gpt_chars)}
        pairs = [(i, base_id[c]) for i, c in enumerate(chars) if c in base_id]  # (own id, base id)
        mine = torch.tensor([i for i, _ in pairs], dtype=torch.long)
        theirs = torch.tensor([j for _, j in pairs], dtype=torch.long)
        for key, value in own.items():
            if key in ("w_s", "w_shift"):  # what the base has not: they start at zero
                continue
            if key not in base:
                fail("base GPT", f"a GPT of this model's structure (weight {key!r})", "a GPT without it")
            if key in ("w_x", "w_o"):  # (V, D): by character
                value[mine] = base[key][theirs].to(value.dtype)
            elif base[key].shape != value.shape:
                fail(f"base GPT's {key}", f"shape {tuple(value.shape)}", f"shape {tuple(base[key].shape)}")
            else:
                value.copy_(base[key])
        self.load_state_dict(own)
        return len(pairs)

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
