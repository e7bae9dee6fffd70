r"""Transformer blocks and stacks: attention, a position-wise MLP, residuals, layer norm.

A block maps x (B, S, D) to x (B, S, D). Each sublayer F (self-attention, optional
cross-attention to a memory, the MLP) is wrapped in a residual connection and a layer
norm LN (``layernorm.py``), in one of two orders:

    pre-norm  (norm_first=True, default):  x <- x + F(LN(x))
    post-norm (norm_first=False):          x <- LN(x + F(x))        (the original Transformer)

The MLP is the lecture's non-recurrent layer a^(h)_t = g(w^(x) . x_t + b^(x)) applied
to every position, followed by an output layer back to width D:

    a^(h)_t = g(w^(1) . x_t + b^(1))        (d_ff,)    g = gelu (u * Phi(u)) or relu
    y_t     = w^(2) . a^(h)_t + b^(2)       (D,)

Two more choices of the MLP (``activation``), from the record-setting changes of the
public GPT-2 speedrun (modded-nanogpt) and from Shazeer 2020, "GLU Variants Improve
Transformer":

    relu2:   a^(h)_t = relu(w^(1) . x_t + b^(1))^2                       squared ReLU (So et al. 2021, Primer)
    swiglu:  a^(h)_t = silu(w^(1) . x_t + b^(1)) * (w^(3) . x_t + b^(3))  silu(u) = u sigma(u); a gate w^(3) (d_ff, D)

(SwiGLU has three matrices instead of two: with d_ff = 8D/3 it has the parameters of a
4D GELU MLP.)

Dropout, while training, sits where nn.TransformerEncoderLayer has it: on the attention
weights, after each sublayer F, and on a^(h)_t.

A decoder block has causal self-attention (position s sees t <= s) and cross-attention
whose queries come from x and whose keys and values come from ``memory`` (the encoder's
output). An encoder block with ``causal=True`` is a GPT block.

Code names: ``self_attn``, ``cross_attn`` (:class:`MultiHeadAttention`), ``norm_self``,
``norm_cross``, ``norm_mlp`` (:class:`LayerNorm`), ``w_1`` (d_ff, D), ``b_1`` (d_ff,),
``w_2`` (D, d_ff), ``b_2`` (D,), ``w_3`` (d_ff, D), ``b_3`` (d_ff,) (SwiGLU's gate). PyTorch's names: ``self_attn``, ``multihead_attn``,
``norm1``, ``norm2`` (``norm3``), ``linear1``, ``linear2``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.transformer.layernorm import LayerNorm
from seqlab.transformer.multihead import KVCache, MultiHeadAttention, MultiHeadAttentionConfig, linear
from seqlab.validation import check_choice, check_float, check_int, fail, resolve_config

ACTIVATIONS = ("gelu", "relu", "relu2", "swiglu")


@dataclass(frozen=True)
class BlockConfig:
    """d_model: width D; num_heads: h (D a multiple of h); d_ff: width of the MLP's
    hidden layer; dropout: see the module docstring; activation: "gelu", "relu",
    "relu2" or "swiglu" (the module docstring);
    norm_first: pre-norm (True) or post-norm; causal: causal self-attention;
    cross_attention: add cross-attention to a memory (decoder block); layer_norm_eps:
    eps of every LayerNorm; bias: biases in the projections, the MLP and the norms;
    fused: ``F.scaled_dot_product_attention`` for the attention, one product for the
    self-attention's q, k, v, and ``F.layer_norm`` for the norms; rotary, rope_base, qk_norm:
    of the self-attention (``MultiHeadAttentionConfig``)."""

    d_model: int
    num_heads: int
    d_ff: int
    dropout: float = 0.0
    activation: str = "gelu"
    norm_first: bool = True
    causal: bool = False
    cross_attention: bool = False
    layer_norm_eps: float = 1e-5
    bias: bool = True
    fused: bool = False
    rotary: bool = False
    rope_base: float = 10000.0
    qk_norm: bool = False

    def __post_init__(self) -> None:
        check_int(self.d_ff, "d_ff", minimum=1)
        check_choice(self.activation, "activation", ACTIVATIONS)
        check_float(self.layer_norm_eps, "layer_norm_eps", minimum=0.0, open_min=True)
        for name in ("norm_first", "causal", "cross_attention"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "True or False", repr(getattr(self, name)))
        self.attention_config(self_attention=True)  # checks d_model, num_heads, dropout, bias, fused, rotary, ...

    def attention_config(self, self_attention: bool = False) -> MultiHeadAttentionConfig:
        """The attention's settings; rotary and qk_norm only for the self-attention."""
        extra = dict(rotary=self.rotary, rope_base=self.rope_base, qk_norm=self.qk_norm) if self_attention else {}
        return MultiHeadAttentionConfig(d_model=self.d_model, num_heads=self.num_heads, bias=self.bias,
                                        dropout=self.dropout, fused=self.fused, **extra)


class TransformerBlock(nn.Module):
    """One block, ``forward(x, *, attn_mask=None, key_padding_mask=None, memory=None,
    memory_key_padding_mask=None, cache=None, need_weights=False)``."""

    def __init__(self, config: BlockConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        config = resolve_config(config, kwargs, BlockConfig, type(self).__name__)
        self.config = c = config
        D, eps = c.d_model, c.layer_norm_eps
        self.norm_self = LayerNorm(D, eps=eps, bias=c.bias, fused=c.fused)
        self.self_attn = MultiHeadAttention(c.attention_config(self_attention=True))
        if c.cross_attention:
            self.norm_cross = LayerNorm(D, eps=eps, bias=c.bias, fused=c.fused)
            self.cross_attn = MultiHeadAttention(c.attention_config())
        self.norm_mlp = LayerNorm(D, eps=eps, bias=c.bias, fused=c.fused)
        self.w_1 = nn.Parameter(torch.empty(c.d_ff, D))  # w^(1): (d_ff, D)
        self.w_2 = nn.Parameter(torch.empty(D, c.d_ff))  # w^(2): (D, d_ff)
        self.b_1 = nn.Parameter(torch.empty(c.d_ff)) if c.bias else None  # b^(1): (d_ff,)
        self.b_2 = nn.Parameter(torch.empty(D)) if c.bias else None  # b^(2): (D,)
        pairs = [(self.w_1, self.b_1), (self.w_2, self.b_2)]
        if c.activation == "swiglu":
            self.w_3 = nn.Parameter(torch.empty(c.d_ff, D))  # w^(3): (d_ff, D), the gate
            self.b_3 = nn.Parameter(torch.empty(c.d_ff)) if c.bias else None  # b^(3): (d_ff,)
            pairs.append((self.w_3, self.b_3))
        for w, b in pairs:
            # nn.Linear's initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            bound = 1.0 / math.sqrt(w.shape[1])
            nn.init.uniform_(w, -bound, bound)
            if b is not None:
                nn.init.uniform_(b, -bound, bound)

    # -- input checks --------------------------------------------------------------------
    def check_inputs(self, x, attn_mask, key_padding_mask, memory, memory_key_padding_mask, cache):
        """Validate the inputs of :meth:`forward`; returns the masks in the form
        :meth:`forward_unchecked` takes."""
        c = self.config
        if c.cross_attention and memory is None:
            fail("memory", "a (batch, time, d_model) tensor (cross_attention=True)", "None")
        if not c.cross_attention and (memory is not None or memory_key_padding_mask is not None):
            fail("memory", "None (this block has no cross-attention)", "a tensor")
        # x and the self-attention masks, as the self-attention sees them
        attn_mask, key_padding_mask = self.self_attn.check_inputs(
            x, None, None, attn_mask, key_padding_mask, cache,
            names=("x", "key", "value", "attn_mask", "key_padding_mask"))
        if c.cross_attention:
            _, memory_key_padding_mask = self.cross_attn.check_inputs(
                x, memory, memory, None, memory_key_padding_mask, None,
                names=("x", "memory", "memory", "memory_mask", "memory_key_padding_mask"))
        return attn_mask, key_padding_mask, memory_key_padding_mask

    # -- forward -------------------------------------------------------------------------
    def forward(self, x, *, attn_mask=None, key_padding_mask=None, memory=None, memory_key_padding_mask=None,
                cache=None, need_weights=False):
        """x: (B, S, D). attn_mask, key_padding_mask: for the self-attention, as in
        :meth:`MultiHeadAttention.forward` (True = may attend); with ``causal=True`` the
        causal mask is added to them. memory: (B, T_m, D) (cross-attention only), with
        memory_key_padding_mask (B, T_m). cache: a :class:`KVCache` for the self-attention.

        Returns x (B, S, D), or ``(x, weights)`` when ``need_weights``, weights a dict
        ``{"self": (B, h, S, T), "cross": (B, h, S, T_m)}`` of per-head attention weights.
        """
        masks = self.check_inputs(x, attn_mask, key_padding_mask, memory, memory_key_padding_mask, cache)
        return self.forward_unchecked(x, *masks, memory=memory, cache=cache, need_weights=need_weights)

    def forward_unchecked(self, x, attn_mask=None, key_padding_mask=None, memory_key_padding_mask=None, *,
                          memory=None, cache=None, need_weights=False):
        """:meth:`forward` without the input checks: the caller has checked the inputs (with
        :meth:`check_inputs`, whose masks it takes)."""
        c = self.config
        weights = {}

        def self_attention(u):
            out, weights["self"] = self.self_attn.forward_unchecked(
                u, attn_mask=attn_mask, key_padding_mask=key_padding_mask, causal=c.causal,
                need_weights=need_weights, average_weights=False, cache=cache)
            return out

        def cross_attention(u):
            out, weights["cross"] = self.cross_attn.forward_unchecked(
                u, memory, memory, key_padding_mask=memory_key_padding_mask,
                need_weights=need_weights, average_weights=False)
            return out

        x = self._residual(x, self.norm_self, self_attention)
        if c.cross_attention:
            x = self._residual(x, self.norm_cross, cross_attention)
        x = self._residual(x, self.norm_mlp, self.mlp)
        return (x, weights) if need_weights else x

    def _residual(self, x, norm: LayerNorm, sublayer):
        p = self.config.dropout if self.training else 0.0
        if self.config.norm_first:
            # pre-norm: x + F(LN(x))
            return x + F.dropout(sublayer(norm.forward_unchecked(x)), p, training=p > 0)
        # post-norm: LN(x + F(x))
        return norm.forward_unchecked(x + F.dropout(sublayer(x), p, training=p > 0))

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        """The position-wise MLP, (B, S, D) -> (B, S, D)."""
        c = self.config
        # a^(h)_t = g(w^(1) . x_t + b^(1))
        u = linear(x, self.w_1, self.b_1)  # (B, S, d_ff)
        if c.activation == "gelu":
            a = F.gelu(u)  # (B, S, d_ff)
        elif c.activation == "relu":
            a = torch.relu(u)
        elif c.activation == "relu2":
            a = torch.relu(u).square()  # relu(u)^2
        else:
            # swiglu: silu(u) * (w^(3) . x_t + b^(3))
            a = F.silu(u) * linear(x, self.w_3, self.b_3)  # (B, S, d_ff)
        p = c.dropout if self.training else 0.0
        a = F.dropout(a, p, training=p > 0)
        # y_t = w^(2) . a^(h)_t + b^(2)
        return linear(a, self.w_2, self.b_2)  # (B, S, D)

    # -- PyTorch interop -----------------------------------------------------------------
    @staticmethod
    def map_from_torch(theirs: dict[str, torch.Tensor], config: BlockConfig) -> dict[str, torch.Tensor]:
        """nn.TransformerEncoderLayer / nn.TransformerDecoderLayer state dict -> ours (pure)."""
        att = config.attention_config()
        ours = {}
        ours.update(_prefixed("self_attn.", MultiHeadAttention.map_from_torch(_sub(theirs, "self_attn."), att)))
        ours.update(_prefixed("norm_self.", LayerNorm.map_from_torch(_sub(theirs, "norm1."))))
        if config.cross_attention:
            ours.update(_prefixed("cross_attn.",
                                  MultiHeadAttention.map_from_torch(_sub(theirs, "multihead_attn."), att)))
            ours.update(_prefixed("norm_cross.", LayerNorm.map_from_torch(_sub(theirs, "norm2."))))
            ours.update(_prefixed("norm_mlp.", LayerNorm.map_from_torch(_sub(theirs, "norm3."))))
        else:
            ours.update(_prefixed("norm_mlp.", LayerNorm.map_from_torch(_sub(theirs, "norm2."))))
        ours["w_1"], ours["w_2"] = theirs["linear1.weight"], theirs["linear2.weight"]
        if config.bias:
            ours["b_1"], ours["b_2"] = theirs["linear1.bias"], theirs["linear2.bias"]
        return ours

    @staticmethod
    def map_to_torch(ours: dict[str, torch.Tensor], config: BlockConfig) -> dict[str, torch.Tensor]:
        att = config.attention_config()
        theirs = {}
        theirs.update(_prefixed("self_attn.", MultiHeadAttention.map_to_torch(_sub(ours, "self_attn."), att)))
        theirs.update(_prefixed("norm1.", LayerNorm.map_to_torch(_sub(ours, "norm_self."))))
        if config.cross_attention:
            theirs.update(_prefixed("multihead_attn.",
                                    MultiHeadAttention.map_to_torch(_sub(ours, "cross_attn."), att)))
            theirs.update(_prefixed("norm2.", LayerNorm.map_to_torch(_sub(ours, "norm_cross."))))
            theirs.update(_prefixed("norm3.", LayerNorm.map_to_torch(_sub(ours, "norm_mlp."))))
        else:
            theirs.update(_prefixed("norm2.", LayerNorm.map_to_torch(_sub(ours, "norm_mlp."))))
        theirs["linear1.weight"], theirs["linear2.weight"] = ours["w_1"], ours["w_2"]
        if config.bias:
            theirs["linear1.bias"], theirs["linear2.bias"] = ours["b_1"], ours["b_2"]
        return theirs

    @classmethod
    def config_from_torch(cls, module: nn.Module, **overrides) -> BlockConfig:
        if not isinstance(module, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
            fail("module", "a torch.nn.TransformerEncoderLayer or TransformerDecoderLayer", type(module).__name__)
        sa = module.self_attn
        if not sa.batch_first:
            fail("module", "batch_first=True", "batch_first=False")
        fields = dict(d_model=sa.embed_dim, num_heads=sa.num_heads, d_ff=module.linear1.out_features,
                      dropout=float(module.dropout.p), activation=_activation_name(module.activation),
                      norm_first=bool(module.norm_first), causal=False,
                      cross_attention=isinstance(module, nn.TransformerDecoderLayer),
                      layer_norm_eps=float(module.norm1.eps), bias=module.linear1.bias is not None)
        fields.update(overrides)
        return BlockConfig(**fields)

    @classmethod
    def from_torch(cls, module: nn.Module, **config_overrides) -> "TransformerBlock":
        """The block computing what ``module`` (an nn.TransformerEncoderLayer, or an
        nn.TransformerDecoderLayer, batch_first=True) computes. PyTorch's layers take
        the causal mask at call time; pass ``causal=True`` here to build it in."""
        config = cls.config_from_torch(module, **config_overrides)
        ref = module.linear1.weight
        ours = cls(config).to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            ours.load_state_dict(cls.map_from_torch({k: v.detach() for k, v in module.state_dict().items()}, config))
        return ours

    def to_torch(self) -> nn.Module:
        """The equivalent nn.TransformerEncoderLayer (nn.TransformerDecoderLayer with
        cross-attention), batch_first=True, weights copied. PyTorch's layer does not
        apply ``causal`` by itself: pass it a causal mask."""
        c = self.config
        if c.activation not in ("gelu", "relu") or c.rotary or c.qk_norm:
            fail("to_torch", "a block with gelu or relu and without rotary or qk_norm (PyTorch's layers have "
                 "no others)", f"activation={c.activation!r}, rotary={c.rotary}, qk_norm={c.qk_norm}")
        cls = nn.TransformerDecoderLayer if c.cross_attention else nn.TransformerEncoderLayer
        module = cls(c.d_model, c.num_heads, dim_feedforward=c.d_ff, dropout=c.dropout, activation=c.activation,
                     layer_norm_eps=c.layer_norm_eps, batch_first=True, norm_first=c.norm_first, bias=c.bias)
        module = module.to(device=self.w_1.device, dtype=self.w_1.dtype)
        with torch.no_grad():
            module.load_state_dict(self.map_to_torch({k: v.detach() for k, v in self.state_dict().items()}, c))
        return module

    def extra_repr(self) -> str:
        return ", ".join(f"{f.name}={getattr(self.config, f.name)!r}" for f in dataclasses.fields(self.config))


def _activation_name(act: object) -> str:
    if act is F.relu or isinstance(act, nn.ReLU):
        return "relu"
    if act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none"):
        return "gelu"
    fail("module.activation", "relu or (exact) gelu", repr(act))


def _sub(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}


# -- stacks ----------------------------------------------------------------------------


class _Stack(nn.Module):
    def __init__(self, *, num_layers: int, config: BlockConfig, final_norm: bool = True) -> None:
        super().__init__()
        check_int(num_layers, "num_layers", minimum=1)
        if not isinstance(config, BlockConfig):
            fail("config", "BlockConfig", type(config).__name__)
        if not isinstance(final_norm, bool):
            fail("final_norm", "True or False", repr(final_norm))
        self.config = config
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(num_layers))
        self.norm = LayerNorm(config.d_model, eps=config.layer_norm_eps, bias=config.bias,
                              fused=config.fused) if final_norm else None

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def new_cache(self) -> list[KVCache]:
        """One empty :class:`KVCache` per block, for incremental decoding."""
        return [KVCache() for _ in self.blocks]

    def _check_cache(self, cache) -> None:
        if cache is None:
            return
        if not isinstance(cache, (list, tuple)) or len(cache) != len(self.blocks) \
                or not all(isinstance(kv, KVCache) for kv in cache):
            got = f"{type(cache).__name__} of {len(cache)}" if isinstance(cache, (list, tuple)) else type(cache).__name__
            fail("cache", f"a list of {len(self.blocks)} KVCache (one per block; see new_cache())", got)
        if len({kv.length for kv in cache}) > 1:
            fail("cache", "every block's cache of the same length", [kv.length for kv in cache])

    def _run(self, x, attn_mask, key_padding_mask, memory, memory_key_padding_mask, cache, need_weights):
        self._check_cache(cache)
        first = None if cache is None else cache[0]
        masks = self.blocks[0].check_inputs(x, attn_mask, key_padding_mask, memory, memory_key_padding_mask, first)
        return self.run_unchecked(x, *masks, memory=memory, cache=cache, need_weights=need_weights)

    def run_unchecked(self, x, attn_mask=None, key_padding_mask=None, memory_key_padding_mask=None, *,
                      memory=None, cache=None, need_weights=False):
        """``forward`` without the input checks: for a caller that made x itself (a GPT's
        embeddings of checked ids) and checked the cache and the masks."""
        masks = (attn_mask, key_padding_mask, memory_key_padding_mask)
        all_weights = []
        for l, block in enumerate(self.blocks):
            out = block.forward_unchecked(x, *masks, memory=memory, cache=None if cache is None else cache[l],
                                          need_weights=need_weights)
            x, w = out if need_weights else (out, None)
            all_weights.append(w)
        if self.norm is not None:
            x = self.norm.forward_unchecked(x)  # (B, S, D)
        return (x, all_weights) if need_weights else x

    def extra_repr(self) -> str:
        return f"num_layers={len(self.blocks)}, final_norm={self.norm is not None}"


class Encoder(_Stack):
    """``Encoder(num_layers=..., config=BlockConfig(...), final_norm=True)``: a stack of
    blocks without cross-attention, then a final LayerNorm (needed after pre-norm
    blocks, whose output is not normalised). With ``config.causal`` it is a GPT-style
    decoder-only stack and takes a cache.

    ``forward(x, *, attn_mask=None, key_padding_mask=None, cache=None, need_weights=False,
    unchecked=False)`` returns x (B, S, D), or (x, [per-block weight dicts]) when
    ``need_weights``; ``unchecked=True`` skips the input checks (for a caller that made x and
    checked the cache itself, as a GPT does)."""

    def __init__(self, *, num_layers: int, config: BlockConfig, final_norm: bool = True) -> None:
        if isinstance(config, BlockConfig) and config.cross_attention:
            fail("config", "cross_attention=False in an Encoder (use a Decoder)", "cross_attention=True")
        super().__init__(num_layers=num_layers, config=config, final_norm=final_norm)

    def forward(self, x, *, attn_mask=None, key_padding_mask=None, cache=None, need_weights=False,
                unchecked=False):
        if unchecked:  # a caller that made x itself and checked the cache (a GPT): run_unchecked, hooks kept
            return self.run_unchecked(x, attn_mask, key_padding_mask, cache=cache, need_weights=need_weights)
        return self._run(x, attn_mask, key_padding_mask, None, None, cache, need_weights)


class Decoder(_Stack):
    """``Decoder(num_layers=..., config=BlockConfig(..., causal=True, cross_attention=True),
    final_norm=True)``: blocks with causal self-attention and cross-attention to the
    encoder's output ``memory``.

    ``forward(x, memory, *, attn_mask=None, key_padding_mask=None,
    memory_key_padding_mask=None, cache=None, need_weights=False)``."""

    def __init__(self, *, num_layers: int, config: BlockConfig, final_norm: bool = True) -> None:
        if isinstance(config, BlockConfig) and not (config.causal and config.cross_attention):
            fail("config", "causal=True and cross_attention=True in a Decoder",
                 f"causal={config.causal}, cross_attention={config.cross_attention}")
        super().__init__(num_layers=num_layers, config=config, final_norm=final_norm)

    def forward(self, x, memory, *, attn_mask=None, key_padding_mask=None, memory_key_padding_mask=None,
                cache=None, need_weights=False):
        return self._run(x, attn_mask, key_padding_mask, memory, memory_key_padding_mask, cache, need_weights)
