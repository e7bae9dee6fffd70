r"""Character language model: the lecture's sequence-output RNN, LSTM or GRU on text.

Each character x_t is a one-hot vector of the vocabulary size V (so w^(x) . x_t is simply
the column of w^(x) for that character); the network has one output per step,

    o_t = softmax(w^(o) . a^(L)_t + b^(o))       the distribution of the next character,

and the cost is the cross-entropy -log o_t[x_{t+1}] averaged over all positions.
Validation loss is reported in nats per character and in bits per character
(bpc = loss / ln 2).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.llm.sampling import generate
from seqlab.recurrent.network import CELLS, build_stack, stack_fields
from seqlab.validation import (check_choice, check_int, check_token_ids, fail, fields_from_dict, resolve_config,
                               shape_str)

LN2 = math.log(2.0)

# Named sizes. cpu-small is what the benchmarks and the default `seqlab train` use;
# forget_bias (the LSTM's initial b^(f)) is ignored by the RNN and the GRU.
PRESETS: dict[str, dict] = {
    "cpu-tiny": dict(hidden_size=64, num_layers=1),
    "cpu-small": dict(hidden_size=256, num_layers=1, forget_bias=1.0),
    "cpu-medium": dict(hidden_size=384, num_layers=2, dropout=0.1, forget_bias=1.0),
    "gpu-baby": dict(hidden_size=512, num_layers=3, dropout=0.2, forget_bias=1.0),
}


@dataclass(frozen=True)
class CharLMConfig:
    """Settings of a character language model.

    Attributes:
        cell: the recurrent cell, "rnn" (Elman), "lstm" or "gru".
        vocab_size: V, characters in the vocabulary (the tokenizer's).
        hidden_size: H, hidden units a^(h)_t per layer.
        num_layers: L, stacked recurrent layers.
        dropout: dropout probability between the layers while training.
        nonlinearity: (rnn) the activation g of the Elman cell, "tanh" or "relu".
        reset: (gru) where the reset gate acts, "before" the recurrent product (the lecture's)
            or "after" it (PyTorch's).
        forget_bias: (lstm) the initial forget-gate bias b^(f) (> 0 keeps more of a^(c) at first).
        fused: the fast path of the recurrent layers (True) or the readable per-step code.
    """

    cell: str = "lstm"
    vocab_size: int = 65
    hidden_size: int = 256
    num_layers: int = 1
    dropout: float = 0.0
    nonlinearity: str = "tanh"
    reset: str = "before"
    forget_bias: float = 0.0
    fused: bool = True

    def __post_init__(self) -> None:
        check_choice(self.cell, "cell", CELLS)
        check_int(self.vocab_size, "vocab_size", minimum=1)
        # the stack's own config checks the rest (sizes, dropout, the cell's option)
        CELLS[self.cell][1](**stack_fields(self.cell, input_size=self.vocab_size, hidden_size=self.hidden_size,
                                           num_layers=self.num_layers, dropout=self.dropout, fused=self.fused,
                                           nonlinearity=self.nonlinearity, reset=self.reset,
                                           forget_bias=self.forget_bias))

    @classmethod
    def preset(cls, name: str, **overrides) -> "CharLMConfig":
        check_choice(name, "preset", PRESETS)
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CharLMConfig":
        return cls(**fields_from_dict(cls, d, "CharLM config"))


class CharLM(nn.Module):
    """``loss((x, y))`` for the trainer, ``generate(...)`` for sampling.

    x, y: (B, T) int64 character ids, y the next characters."""

    family = "charlm"

    def __init__(self, config: CharLMConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        self.config = resolve_config(config, kwargs, CharLMConfig, type(self).__name__)
        c = self.config
        self.core = build_stack(c.cell, input_size=c.vocab_size, hidden_size=c.hidden_size,
                                num_layers=c.num_layers, dropout=c.dropout, fused=c.fused,
                                nonlinearity=c.nonlinearity, reset=c.reset, forget_bias=c.forget_bias)
        self.w_o = nn.Parameter(torch.empty(c.vocab_size, c.hidden_size))  # w^(o): (V, H)
        self.b_o = nn.Parameter(torch.zeros(c.vocab_size))  # b^(o): (V,)
        nn.init.uniform_(self.w_o, -c.hidden_size**-0.5, c.hidden_size**-0.5)

    def _one_hot(self, ids: torch.Tensor) -> torch.Tensor:
        V = self.config.vocab_size
        ids = check_token_ids(ids, "ids", V, what="character ids")
        return F.one_hot(ids, V).to(self.w_o.dtype)  # x_t as one-hot: (B, T, V)

    def forward(self, ids: torch.Tensor, *, state=None):
        """ids: (B, T) -> (logits (B, T, V) = w^(o) . a_t + b^(o), final state)."""
        a, state = self.core(self._one_hot(ids), state=state)  # a: (B, T, H)
        return a @ self.w_o.T + self.b_o, state

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        x, y = batch
        logits, _ = self(x)
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            fail("y", f"next-character ids of shape {tuple(x.shape)}",
                 f"shape {shape_str(y)}" if isinstance(y, torch.Tensor) else type(y).__name__)
        y = check_token_ids(y, "y", self.config.vocab_size, what="character ids")
        # C = -1/(B T) sum log o_t[x_{t+1}]
        # in at least float32 (bf16 logits under autocast), in float64 for a float64 model
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        # the trainer records the loss itself; metrics add bits per character and the token count
        return loss, {"bpc": loss.item() / LN2, "tokens": y.numel()}

    def next_logits_fn(self):
        """The ``next_logits(new_ids) -> (V,)`` callable that ``seqlab.llm.sampling.generate``
        drives: the recurrent state a_t carries everything read so far."""
        device = self.w_o.device
        state = {"a": None}

        def next_logits(new_ids: list[int]) -> torch.Tensor:
            logits, state["a"] = self(torch.tensor([new_ids], device=device), state=state["a"])
            return logits[0, -1]  # (V,)

        return next_logits

    @torch.no_grad()
    def generate(self, prompt: list[int], length: int, *, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, generator: torch.Generator | None = None,
                 stop_strings=None, decode=None) -> list[int]:
        """Sample at most ``length`` characters after ``prompt`` (ids); temperature 0 = greedy.
        The options are ``seqlab.llm.sampling.generate``'s (top-k, top-p, a seed or a
        generator, stop strings with ``decode``)."""
        if not prompt:
            fail("prompt", "at least one character", "an empty prompt")
        was_training = self.training
        self.eval()
        try:
            return generate(self.next_logits_fn(), prompt, length, temperature=temperature, top_k=top_k, top_p=top_p,
                            seed=seed, generator=generator, stop_strings=stop_strings, decode=decode)
        finally:
            self.train(was_training)
