r"""GPT: a decoder-only transformer language model.

Lecture, "Large Language Models": a GPT is a stack of transformer blocks whose
self-attention is causal, trained to predict the next token. With the notation of the
Transformers section (a query at position s sees keys t <= s):

    a^(0)_t  = w^(x) . x_t + p_t                       x_t one-hot: the x_t-th row of ``w_x``
                                                       (V, D), plus the position p_t   (D,)
    a^(l)    = Block_l(a^(l-1))                        L pre-norm blocks, causal       (T, D)
    o_t      = softmax(w^(o) . LN(a^(L)_t))            weight tying: w^(o) = w^(x), the output
                                                       layer is the embedding matrix   (V,)
    C        = -(1/T) sum_t log o_t[x_(t+1)]           next-token cross entropy

Generation feeds the sampled token back in. The keys and values of the positions already
seen do not change when a token is appended (the mask hides the future), so a KV cache
(``seqlab.transformer.KVCache``) keeps them and each new token costs one position of work
instead of the whole context. The context holds at most ``block_size`` positions: a prompt
longer than that is cropped from the left (its last ``block_size`` tokens are used), and
once the window is full each step re-reads the last ``block_size`` tokens (the learned
positions move, so the cached keys are no longer valid); cached and uncached generation
give exactly the same tokens.

Code names: ``w_x`` (V, D) the token embedding w^(x) (as in BERT), ``pos`` the positional
encoding, ``blocks`` the ``Encoder`` (causal blocks + final LayerNorm), ``w_o`` (V, D) the
output weights w^(o), only when the weights are not tied (tied: w^(o) is ``w_x``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.llm.gpt_decoding import GPTDecoder
from seqlab.llm.sampling import generate as _generate
from seqlab.llm.sampling import generate_batch as _generate_batch
from seqlab.transformer.block import BlockConfig, Encoder
from seqlab.transformer.position import (LearnedPositionalEncoding, NoPositionalEncoding,
                                       SinusoidalPositionalEncoding)
from seqlab.validation import (check_choice, check_int, check_token_ids, fail, fields_from_dict, resolve_config,
                               shape_str)

LN2 = math.log(2.0)
POSITIONS = ("learned", "sinusoidal", "rotary")
MLPS = ("gelu", "relu2", "swiglu")
INITS = ("gpt2", "zero-out")

# Named sizes. cpu-small is nanoGPT's CPU recipe for tiny Shakespeare (4 layers, 4 heads,
# width 128, context 64, no dropout, no biases); gpu-baby is its "baby GPT" on a GPU
# (6 layers, 6 heads, width 384, context 256, dropout 0.2).
PRESETS: dict[str, dict] = {
    "cpu-tiny": dict(num_layers=2, num_heads=4, d_model=64, block_size=64),
    "cpu-small": dict(num_layers=4, num_heads=4, d_model=128, block_size=64),
    "cpu-medium": dict(num_layers=6, num_heads=6, d_model=192, block_size=128, dropout=0.1),
    "gpu-baby": dict(num_layers=6, num_heads=6, d_model=384, block_size=256, dropout=0.2),
    # cpu-small with the changes that pay at this size (benchmarks/bench_gpt_quality.py,
    # benchmarks/results/gpt_quality_ablation.md): rotary positions, QK-norm, a squared-ReLU
    # MLP, an untied output layer, zero-initialised residual projections
    "cpu-small-plus": dict(num_layers=4, num_heads=4, d_model=128, block_size=64, position="rotary",
                           qk_norm=True, mlp="relu2", tie_weights=False, init="zero-out"),
}


@dataclass(frozen=True)
class GPTConfig:
    """Settings of a GPT.

    Attributes:
        vocab_size: V, tokens in the vocabulary (the tokenizer's).
        block_size: the context, the most positions T a sequence may have.
        d_model: D, width of the token embeddings and of every block.
        num_heads: h, attention heads per block (d_model must be a multiple of h).
        num_layers: L, transformer blocks.
        d_ff: width of the blocks' MLP hidden layer (None: 4 D).
        dropout: dropout probability on the embeddings and inside the blocks while training.
        bias: biases in the projections, the MLPs and the layer norms (True or False).
        tie_weights: output weights = token embedding, w^(o) = w^(x) (True or False).
        position: the positional encoding, "learned", "sinusoidal" or "rotary" (no table: queries and keys rotated by their position)
        fused: the fast paths in the blocks (scaled_dot_product_attention, one q/k/v product, F.layer_norm) or the explicit form
        qk_norm: RMS-normalise each head's queries and keys, with learned gains (QK-norm)
        mlp: the blocks' MLP, "gelu", "relu2" (squared ReLU) or "swiglu" (d_ff None: 8 D / 3)
        init: "gpt2" (N(0, 0.02^2), residual projections / sqrt(2 L)) or "zero-out" (residual projections and untied w^(o) start at 0)
        rope_base: the base of the rotary frequencies, theta_i = rope_base^(-2i/m)

    The equations of the options are in ``seqlab.transformer.rotary`` (rotary, QK-norm) and
    ``seqlab.transformer.block`` (the MLPs); ``init`` in :meth:`GPT.reset_parameters`.
    """

    vocab_size: int = 65
    block_size: int = 64
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 4
    d_ff: int | None = None
    dropout: float = 0.0
    bias: bool = False
    tie_weights: bool = True
    position: str = "learned"
    fused: bool = True
    qk_norm: bool = False
    mlp: str = "gelu"
    init: str = "gpt2"
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        check_int(self.vocab_size, "vocab_size", minimum=1)
        check_int(self.block_size, "block_size", minimum=1)
        check_int(self.num_layers, "num_layers", minimum=1)
        check_int(self.d_model, "d_model", minimum=1)  # before d_ff = 4 d_model is made of it
        check_choice(self.position, "position", POSITIONS)
        check_choice(self.mlp, "mlp", MLPS)
        check_choice(self.init, "init", INITS)
        for name in ("bias", "tie_weights", "fused", "qk_norm"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "True or False", repr(getattr(self, name)))
        self.block_config()  # checks d_model, num_heads, d_ff, dropout

    def block_config(self) -> BlockConfig:
        return BlockConfig(d_model=self.d_model, num_heads=self.num_heads, d_ff=self.mlp_width,
                           dropout=self.dropout, activation=self.mlp, norm_first=True, causal=True,
                           bias=self.bias, fused=self.fused, rotary=self.position == "rotary",
                           rope_base=self.rope_base, qk_norm=self.qk_norm)

    @property
    def mlp_width(self) -> int:
        """d_ff, or when None: 4 D, and 8 D / 3 for SwiGLU (its three matrices then hold the
        parameters of two of width 4 D). 0 is refused, not read as None."""
        if self.d_ff is not None:
            return self.d_ff
        return 8 * self.d_model // 3 if self.mlp == "swiglu" else 4 * self.d_model

    @classmethod
    def preset(cls, name: str, **overrides) -> "GPTConfig":
        check_choice(name, "preset", PRESETS)
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        return cls(**fields_from_dict(cls, d, "GPT config"))


class GPT(nn.Module):
    """``forward(ids, *, cache=None, need_weights=False)`` -> logits (B, T, V);
    ``loss((x, y))`` for the trainer; ``generate(prompt_ids, max_new_tokens, ...)``."""

    family = "gpt"

    def __init__(self, config: GPTConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        config = resolve_config(config, kwargs, GPTConfig, type(self).__name__)
        self.config = c = config
        self.w_x = nn.Parameter(torch.empty(c.vocab_size, c.d_model))  # w^(x): row i = embedding of token i, (V, D)
        if c.position == "learned":
            self.pos = LearnedPositionalEncoding(max_len=c.block_size, d_model=c.d_model)
        elif c.position == "sinusoidal":
            self.pos = SinusoidalPositionalEncoding(d_model=c.d_model, max_len=c.block_size)
        else:  # rotary: no table, the positions enter the attention's queries and keys
            self.pos = NoPositionalEncoding(max_len=c.block_size, d_model=c.d_model)
        self.blocks = Encoder(num_layers=c.num_layers, config=c.block_config(), final_norm=True)
        # w^(o): (V, D), only when not tied (tied: w^(o) = w^(x))
        self.w_o = None if c.tie_weights else nn.Parameter(torch.empty(c.vocab_size, c.d_model))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``init="gpt2"``, GPT-2's initialisation: weights N(0, 0.02^2), biases 0, and the
        projections that write into the residual stream (w^(o) of the attention, w^(2) of the
        MLP) scaled by 1 / sqrt(2 L) so that the residual's variance does not grow with depth.

        ``init="zero-out"`` (as the GPT-2 speedrun; also Fixup / ReZero's idea): those residual
        projections and an untied w^(o) start at 0, so every block starts as the identity
        x + 0 and the first logits are 0 (uniform predictions); the gradient still reaches
        them (d C / d w^(2) = delta a^(h)T is not 0)."""
        std = 0.02
        zero = self.config.init == "zero-out"
        nn.init.normal_(self.w_x, std=std)
        if self.w_o is not None:
            nn.init.zeros_(self.w_o) if zero else nn.init.normal_(self.w_o, std=std)
        residual_std = std / math.sqrt(2 * self.config.num_layers)
        for block in self.blocks.blocks:
            att = block.self_attn
            for w in (att.w_q, att.w_k, att.w_v, block.w_1, getattr(block, "w_3", None)):
                if w is not None:
                    nn.init.normal_(w, std=std)
            for w in (att.w_o, block.w_2):
                nn.init.zeros_(w) if zero else nn.init.normal_(w, std=residual_std)
            for b in (att.b_q, att.b_k, att.b_v, att.b_o, block.b_1, block.b_2, getattr(block, "b_3", None)):
                if b is not None:
                    nn.init.zeros_(b)

    @staticmethod
    def activation_bytes(config: GPTConfig, batch_size: int) -> int:
        """About the bytes a training step on ``batch_size`` windows of block_size tokens keeps
        for the backward pass (float32): per token and block, the attention's projections,
        norms and residuals (~12 D) and the MLP (2 d_ff), the attention weights (h T per
        token, unless fused), and the logits with their softmax and gradient (3 V)."""
        c = config
        T, D, L = c.block_size, c.d_model, c.num_layers
        d_ff = c.mlp_width * (2 if c.mlp == "swiglu" else 1)  # SwiGLU keeps its gate too
        per_token = L * (12 * D + 2 * d_ff + (0 if c.fused else 2 * c.num_heads * T)) + 3 * c.vocab_size
        return 4 * batch_size * T * per_token

    def num_parameters(self, *, embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if not embeddings and isinstance(self.pos, LearnedPositionalEncoding):  # rotary: no table
            n -= self.pos.p.numel()
        return n

    # -- forward -------------------------------------------------------------------------
    def check_ids(self, ids: object, *, offset: int = 0) -> torch.Tensor:
        """ids (B, T) as int64: integer token ids in [0, V), 1 <= T <= block_size - offset."""
        return check_token_ids(ids, "ids", self.config.vocab_size, max_len=self.config.block_size, offset=offset)

    def embed(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """a^(0), the blocks' input (B, T, D), of checked ids (B, T) at positions offset ..
        offset + T - 1. A GPT with more in its input (a segment embedding, the previous
        tokens' embeddings) overrides this, and takes its extra inputs as keywords of
        ``forward``."""
        # a^(0)_t = w^(x) . x_t + p_t   (x_t one-hot: the x_t-th row of w^(x))
        x = F.embedding(ids, self.w_x)  # (B, T, D)
        return self.pos.forward_unchecked(x, offset)  # (B, T, D) (rotary: x, the positions enter the blocks)

    def forward(self, ids: torch.Tensor, *, cache=None, need_weights: bool = False, **inputs):
        """ids: (B, T) token ids. cache: ``self.new_cache()`` to decode incrementally (the ids
        then continue the cached positions). Returns logits (B, T, V), or (logits, weights)
        with ``need_weights``: a list over layers of (B, h, T, T_total) attention weights.
        ``inputs``: what ``embed`` of a subclass takes besides the ids (none for a GPT)."""
        self.blocks._check_cache(cache)
        offset = 0 if cache is None else cache[0].length
        ids = self.check_ids(ids, offset=offset)
        x = self.embed(ids, offset, **inputs)  # a^(0): (B, T, D)
        x = F.dropout(x, self.config.dropout, training=self.training and self.config.dropout > 0)
        # x is made here from checked ids: the stack's input checks are not needed (called as a
        # module, so hooks on self.blocks still run)
        out = self.blocks(x, cache=cache, need_weights=need_weights, unchecked=True)  # LN(a^(L)): (B, T, D)
        h, weights = out if need_weights else (out, None)
        # o_t = w^(o) . LN(a^(L)_t), w^(o) = w^(x) when tied  (logits; the softmax is in the loss and the sampler)
        logits = h @ (self.w_x if self.w_o is None else self.w_o).T  # (B, T, V)
        return (logits, [w["self"] for w in weights]) if need_weights else logits

    def new_cache(self):
        """One empty KV cache per block."""
        return self.blocks.new_cache()

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """batch = (x, y), (B, T) each, y the next tokens: C = -(1/(B T)) sum log o_t[y_t]."""
        x, y = batch
        logits = self(x)
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            fail("y", f"next-token ids of shape {tuple(x.shape)}", f"shape {shape_str(y)}"
                 if isinstance(y, torch.Tensor) else type(y).__name__)
        y = check_token_ids(y, "y", self.config.vocab_size)
        # the loss in at least float32 (logits may be bf16 under autocast)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        return loss, {"bits": loss.item() / LN2, "tokens": y.numel()}

    # -- generation ----------------------------------------------------------------------
    def next_logits_fn(self, *, use_cache: bool = True) -> GPTDecoder:
        """The ``next_logits(new_ids) -> (V,)`` callable that ``seqlab.llm.sampling.generate``
        drives (and, for several sequences at once, ``generate_batch``): a ``GPTDecoder``
        (``gpt_decoding.py``) that keeps the context (the last ``block_size`` tokens) and,
        with ``use_cache``, the KV cache in a buffer allocated once."""
        return GPTDecoder(self, use_cache=use_cache)

    @torch.no_grad()
    def generate(self, prompt_ids, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, generator: torch.Generator | None = None,
                 stop_ids: Iterable[int] | None = None, stop_strings=None, decode=None,
                 use_cache: bool = True) -> list[int]:
        """Token ids sampled after ``prompt_ids`` (the prompt not included); see
        ``seqlab.llm.sampling.generate`` for the sampling options. A prompt longer than
        ``block_size`` is cropped from the left."""
        if isinstance(prompt_ids, torch.Tensor) and prompt_ids.dim() == 1:
            prompt_ids = prompt_ids.tolist()
        if isinstance(prompt_ids, (list, tuple)):
            V = self.config.vocab_size
            bad = [i for i in prompt_ids if isinstance(i, int) and not 0 <= i < V]
            if bad:
                fail("prompt_ids", f"token ids in [0, {V - 1}]", f"{bad[0]}")
        was_training = self.training
        self.eval()
        try:
            return _generate(self.next_logits_fn(use_cache=use_cache), prompt_ids, max_new_tokens,
                             temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, generator=generator,
                             stop_ids=stop_ids, stop_strings=stop_strings, decode=decode)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def generate_batch(self, prompts, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
                       top_p: float | None = None, seeds=None, stop_ids: Iterable[int] | None = None,
                       stop_strings=None, decode=None, use_cache: bool = True) -> list[list[int]]:
        """The token ids sampled after each of ``prompts`` (lists of ids, of any lengths), as
        one batch: entry i equals ``generate(prompts[i], ..., seed=seeds[i])``, each prompt
        with its own stopping (``seqlab.llm.sampling.generate_batch``)."""
        if isinstance(prompts, (list, tuple)):
            V = self.config.vocab_size
            for j, p in enumerate(prompts):
                p = p.tolist() if isinstance(p, torch.Tensor) and p.dim() == 1 else p
                bad = [i for i in p if isinstance(i, int) and not 0 <= i < V] if isinstance(p, (list, tuple)) else []
                if bad:
                    fail(f"prompts[{j}]", f"token ids in [0, {V - 1}]", f"{bad[0]}")
        was_training = self.training
        self.eval()
        try:
            return _generate_batch(self.next_logits_fn(use_cache=use_cache), prompts, max_new_tokens,
                                   temperature=temperature, top_k=top_k, top_p=top_p, seeds=seeds,
                                   stop_ids=stop_ids, stop_strings=stop_strings, decode=decode)
        finally:
            self.train(was_training)


def previous_token_embeddings(ids: torch.Tensor, w_shift: torch.Tensor) -> torch.Tensor:
    """sum_{j=1..S} w^(j) . x_(t-j), (B, T, D), of ids (B, T) and w_shift (S, V, D): the
    embeddings of the previous S tokens at each position (nothing before the start), a
    fixed-width causal convolution of the input that a GPT variant adds to a^(0) so that a
    single attention layer can match "the token after x" (an induction head: the ``icl``
    and ``instruct`` families)."""
    B, T = ids.shape
    out = torch.zeros(B, T, w_shift.shape[-1], dtype=w_shift.dtype, device=ids.device)  # (B, T, D)
    for j in range(1, min(w_shift.shape[0], T - 1) + 1):
        prev = F.embedding(ids[:, :-j], w_shift[j - 1])  # (B, T-j, D): x_(t-j) for t = j .. T-1
        out[:, j:] += prev
    return out


__all__ = ["GPT", "GPTConfig", "PRESETS", "previous_token_embeddings"]
