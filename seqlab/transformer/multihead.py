r"""Multi-head attention: h parallel attention units over the same inputs.

Lecture, "Transformers": "There can be multiple parallel attention units called
multi-head attention." Head j has its own query, key and value units (rows
j*m .. (j+1)*m - 1 of w^(q), w^(k), w^(v), m = d_model / h); the heads' contexts are
put side by side and mixed by the output weights:

    a^(q)_s = w^(q) . a^(h)_s + b^(q)          (d_model,) = h heads of width m
    a^(k)_t = w^(k) . a^(h)_t + b^(k)          a^(h)_t: the keys' source (itself for self-attention)
    a^(v)_t = w^(v) . a^(h)_t + b^(v)
    c_(j,s) = sum_t g(a^(q)_(j,s) . a^(k)_(j,t) / sqrt(m)) a^(v)_(j,t)       head j
    o_s     = w^(o) . [c_(1,s), ..., c_(h,s)] + b^(o)

The lecture's projections have no bias; PyTorch's nn.MultiheadAttention has one
(``bias=True``, the default here too); ``bias=False`` gives the lecture's form.

Code names: ``w_q`` (D, D), ``w_k`` (D, kdim), ``w_v`` (D, vdim), ``w_o`` (D, D),
``b_q``, ``b_k``, ``b_v``, ``b_o`` (D,). PyTorch stacks w_q, w_k, w_v into
``in_proj_weight`` (3D, D) (or keeps ``q_proj_weight``, ... when kdim or vdim differ
from D) and keeps w_o in ``out_proj``.

Masks: True = may attend (see ``attention.py``), for ``attn_mask`` and for
``key_padding_mask`` alike -- the opposite of nn.MultiheadAttention's boolean masks.

Incremental decoding: a :class:`KVCache` keeps the keys and values of the positions
seen so far; each call appends the new ones, and the causal mask then lets the S new
queries (the last S of T positions) see every cached position and the new ones up to
their own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from seqlab.transformer.attention import attend, check_mask, combine_masks
from seqlab.transformer.rotary import apply_rotary, rms_normalise
from seqlab.validation import check_float, check_int, check_tensor, fail, resolve_config, shape_str


@dataclass(frozen=True)
class MultiHeadAttentionConfig:
    """d_model: width D of the queries and of the output; num_heads: h (D must be a
    multiple of h; each head has width m = D / h); bias: biases on the four projections;
    dropout: on the attention weights while training; kdim, vdim: widths of the key and
    value inputs (D if None; for cross-attention to a memory of another width);
    fused: use ``F.scaled_dot_product_attention`` (falls back to the explicit path for a
    call that asks for the weights) and, for self-attention, one (3D, D) product for the
    query, key and value projections; rotary: rotate each head's queries and keys by
    their positions (``rotary.py``; self-attention only, even head width); rope_base: the
    base of the rotary frequencies; qk_norm: RMS-normalise each head's queries and keys,
    with learned gains ``g_q``, ``g_k`` (m,) (``rotary.py``)."""

    d_model: int
    num_heads: int
    bias: bool = True
    dropout: float = 0.0
    kdim: int | None = None
    vdim: int | None = None
    fused: bool = False
    rotary: bool = False
    rope_base: float = 10000.0
    qk_norm: bool = False

    def __post_init__(self) -> None:
        check_int(self.d_model, "d_model", minimum=1)
        check_int(self.num_heads, "num_heads", minimum=1)
        if self.d_model % self.num_heads:
            fail("d_model", f"a multiple of num_heads = {self.num_heads}", f"d_model = {self.d_model}")
        check_float(self.rope_base, "rope_base", minimum=1.0, open_min=True, finite=True)
        if self.rotary is True and self.head_dim % 2:
            fail("rotary", "an even head width d_model / num_heads (rotations act on pairs of units)",
                 f"head width {self.head_dim}")
        for name in ("kdim", "vdim"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, minimum=1)
        check_float(self.dropout, "dropout", minimum=0.0, maximum=1.0, open_max=True)
        for name in ("bias", "fused", "rotary", "qk_norm"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "True or False", repr(getattr(self, name)))

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def key_dim(self) -> int:
        return self.d_model if self.kdim is None else self.kdim

    @property
    def value_dim(self) -> int:
        return self.d_model if self.vdim is None else self.vdim


class KVCache:
    """Keys and values of the positions already processed, for one attention layer.

    ``k``, ``v``: (B, h, T_past, m) or None while empty. ``append(k, v)`` adds the new
    positions' keys and values (B, h, S, m) and returns all of them, (B, h, T_past + S, m).
    The cache grows by concatenation; it is a plain object, not part of the model's state.
    """

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    @property
    def length(self) -> int:
        """T_past: how many positions the cache holds."""
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_tensor(k, "k", ndim=4, dims="(batch, heads, time, head_dim)")
        check_tensor(v, "v", ndim=4, dims="(batch, heads, time, head_dim)")
        if k.shape[:3] != v.shape[:3]:
            fail("v", f"the batch, heads and time of k {tuple(k.shape[:3])}", f"shape {shape_str(v)}")
        if self.k is not None:
            want_k = (*self.k.shape[:2], "T", self.k.shape[3])
            if k.shape[:2] != self.k.shape[:2] or k.shape[3] != self.k.shape[3]:
                fail("k", f"shape {want_k} (as the cached keys)", f"shape {shape_str(k)}")
            if v.shape[:2] != self.v.shape[:2] or v.shape[3] != self.v.shape[3]:
                fail("v", f"shape {(*self.v.shape[:2], 'T', self.v.shape[3])} (as the cached values)",
                     f"shape {shape_str(v)}")
            k = torch.cat([self.k, k], dim=2)  # (B, h, T_past + S, m)
            v = torch.cat([self.v, v], dim=2)  # (B, h, T_past + S, m_v)
        self.k, self.v = k, v
        return k, v

    def reset(self) -> None:
        self.k = self.v = None

    def __repr__(self) -> str:
        return f"KVCache(length={self.length})"


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention with h heads, ``forward(query, key=None, value=None, *,
    attn_mask=None, key_padding_mask=None, causal=False, need_weights=False,
    average_weights=True, cache=None) -> (output, weights)``."""

    def __init__(self, config: MultiHeadAttentionConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        config = resolve_config(config, kwargs, MultiHeadAttentionConfig, type(self).__name__)
        self.config = c = config
        D = c.d_model
        self.w_q = nn.Parameter(torch.empty(D, D))  # w^(q): (D, D)
        self.w_k = nn.Parameter(torch.empty(D, c.key_dim))  # w^(k): (D, kdim)
        self.w_v = nn.Parameter(torch.empty(D, c.value_dim))  # w^(v): (D, vdim)
        self.w_o = nn.Parameter(torch.empty(D, D))  # w^(o): (D, D)
        if c.bias:
            self.b_q, self.b_k, self.b_v, self.b_o = (nn.Parameter(torch.empty(D)) for _ in range(4))
        else:
            self.b_q = self.b_k = self.b_v = self.b_o = None
        if c.qk_norm:
            self.g_q = nn.Parameter(torch.ones(c.head_dim))  # g^(q): (m,)
            self.g_k = nn.Parameter(torch.ones(c.head_dim))  # g^(k): (m,)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights, zero biases (as nn.MultiheadAttention's projections)."""
        for w in (self.w_q, self.w_k, self.w_v, self.w_o):
            nn.init.xavier_uniform_(w)
        if self.config.bias:
            for b in (self.b_q, self.b_k, self.b_v, self.b_o):
                nn.init.zeros_(b)
        if self.config.qk_norm:
            nn.init.ones_(self.g_q)
            nn.init.ones_(self.g_k)

    # -- input checks --------------------------------------------------------------------
    def check_inputs(self, query, key, value, attn_mask, key_padding_mask, cache, *,
                     names=("query", "key", "value", "attn_mask", "key_padding_mask")):
        """Validate the inputs of :meth:`forward` (``names``: how the messages call them);
        returns (attn_mask, key_padding_mask) in the form :meth:`forward_unchecked` takes."""
        c = self.config
        n_q, n_k, n_v, n_am, n_kpm = names
        dims = "(batch, time, features)"
        query = check_tensor(query, n_q, ndim=3, dims=dims, floating=True, finite=True)
        B, S, D = query.shape
        if D != c.d_model:
            fail(n_q, f"d_model = {c.d_model} features in the last axis of {dims}", f"shape {shape_str(query)}")
        if S < 1 or B < 1:
            fail(n_q, "at least one item and one position", f"shape {shape_str(query)}")
        if query.dtype != self.w_q.dtype:
            fail(n_q, f"dtype {self.w_q.dtype} (the model's parameters)", f"dtype {query.dtype}")
        cross = key is not None
        if (key is None) != (value is None):
            fail(f"{n_k}, {n_v}", "both or neither (neither = self-attention)",
                 f"{n_k}={'a tensor' if key is not None else None}, {n_v}={'a tensor' if value is not None else None}")
        if cross and (c.rotary or c.qk_norm):
            fail(n_k, "None: rotary and qk_norm are for self-attention", "a tensor")
        if cross:
            for name, x, width, wname in ((n_k, key, c.key_dim, "kdim"), (n_v, value, c.value_dim, "vdim")):
                check_tensor(x, name, ndim=3, dims=dims, floating=True, finite=True)
                if x.shape[0] != B or x.shape[2] != width:
                    fail(name, f"shape ({B}, T, {width}) = (batch as {n_q}, time, {wname})", f"shape {shape_str(x)}")
                if x.dtype != query.dtype:
                    fail(name, f"dtype {query.dtype} (the dtype of {n_q})", f"dtype {x.dtype}")
            if key.shape[1] != value.shape[1]:
                fail(n_v, f"T = {key.shape[1]} positions (as {n_k})", f"shape {shape_str(value)}")
            if key.shape[1] < 1:
                fail(n_k, "at least one position", f"shape {shape_str(key)}")
        elif c.key_dim != c.d_model or c.value_dim != c.d_model:
            fail(f"{n_k}, {n_v}", f"tensors (kdim = {c.key_dim}, vdim = {c.value_dim} differ from d_model = "
                 f"{c.d_model}, so self-attention is not possible)", "None")
        if cache is not None:
            if not isinstance(cache, KVCache):
                fail("cache", "a KVCache", type(cache).__name__)
            if cross:
                fail("cache", "None for cross-attention (a KVCache holds self-attention keys and values)",
                     "a KVCache")
            if cache.k is not None and (cache.k.shape[0] != B or cache.k.shape[1] != c.num_heads
                                        or cache.k.shape[3] != c.head_dim):
                fail("cache", f"keys of shape ({B}, {c.num_heads}, T_past, {c.head_dim}) = "
                     f"(batch of {n_q}, heads, time, head_dim)", f"shape {shape_str(cache.k)}")
        T = (key.shape[1] if cross else S) + (cache.length if cache is not None else 0)
        h = c.num_heads
        if attn_mask is not None:
            attn_mask = self._check_attn_mask(attn_mask, B, h, S, T, query.dtype, n_am)
        if key_padding_mask is not None:
            key_padding_mask = check_mask(key_padding_mask, n_kpm, (B, T), "(batch, T keys)", query.dtype)
            if key_padding_mask.dim() != 2:
                fail(n_kpm, f"a 2-D tensor (batch, T keys) = ({B}, {T})", f"shape {shape_str(key_padding_mask)}")
        return attn_mask, key_padding_mask

    @staticmethod
    def _check_attn_mask(mask, B, h, S, T, dtype, name="attn_mask"):
        """(S, T), (B*h or B or 1, S, T) as PyTorch, or anything broadcastable to
        (B, h, S, T); returned with 4 dims."""
        what = f"(S, T) = ({S}, {T}), (B*h or B or 1, S, T) or a shape that broadcasts to (B, h, S, T) = ({B}, {h}, {S}, {T})"
        if not isinstance(mask, torch.Tensor):
            fail(name, "a torch.Tensor", type(mask).__name__)
        if mask.dim() == 3:
            if mask.shape[1:] != (S, T) or mask.shape[0] not in (1, B, B * h):
                fail(name, what, f"shape {shape_str(mask)}")
            n = mask.shape[0]
            # (B*h, S, T) -> (B, h, S, T); (B, S, T) -> (B, 1, S, T); (1, S, T) -> (1, 1, S, T)
            mask = mask.reshape(B, h, S, T) if n == B * h and h > 1 else mask.reshape(n, 1, S, T)
        if mask.dim() not in (2, 4):
            fail(name, what, f"shape {shape_str(mask)}")
        return check_mask(mask, name, (B, h, S, T), "(B, h, S, T)", dtype)

    # -- forward -------------------------------------------------------------------------
    def forward(self, query, key=None, value=None, *, attn_mask=None, key_padding_mask=None, causal=False,
                need_weights=False, average_weights=True, cache=None):
        """query: (B, S, D); key, value: (B, T, kdim), (B, T, vdim) for cross-attention,
        None for self-attention (keys and values from the query).

        attn_mask: bool (True = may attend) or float (added to the scores), (S, T),
        (B*h, S, T) or broadcastable to (B, h, S, T). key_padding_mask: (B, T), bool
        (True = a real key, False = padding) or float. causal: mask the future (query s
        sees keys t <= s + T_past). cache: a :class:`KVCache` (self-attention only); it
        grows by S, and T counts the cached positions too.

        Returns (output (B, S, D), weights): weights None unless ``need_weights``;
        then (B, S, T) averaged over heads, or (B, h, S, T) if not ``average_weights``.
        """
        attn_mask, key_padding_mask = self.check_inputs(query, key, value, attn_mask, key_padding_mask, cache)
        if not isinstance(causal, bool):
            fail("causal", "True or False", repr(causal))
        return self.forward_unchecked(query, key, value, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                      causal=causal, need_weights=need_weights, average_weights=average_weights,
                                      cache=cache)

    def forward_unchecked(self, query, key=None, value=None, *, attn_mask=None, key_padding_mask=None, causal=False,
                          need_weights=False, average_weights=True, cache=None):
        """:meth:`forward` without the input checks: the caller has checked the inputs (with
        :meth:`check_inputs`, which also puts the masks in (B, h, S, T)-broadcastable form)."""
        c = self.config
        h, m = c.num_heads, c.head_dim
        B, S, D = query.shape
        if key is None:
            key = value = query  # self-attention: a^(h)_t are the positions of the query
        T_new = key.shape[1]

        # a^(q)_s = w^(q) . a^(h)_s + b^(q);  a^(k)_t = w^(k) . a^(h)_t + b^(k);  a^(v)_t = w^(v) . a^(h)_t + b^(v)
        if c.fused and key is query and value is query and S > 1:
            # self-attention, fast path: the three projections as one product with [w^(q); w^(k); w^(v)] (3D, D)
            # (not for one new position, where copying the weights would cost as much as the products)
            w = torch.cat([self.w_q, self.w_k, self.w_v])  # (3D, D)
            b = None if self.b_q is None else torch.cat([self.b_q, self.b_k, self.b_v])  # (3D,)
            q, k, v = linear(query, w, b).split(D, dim=-1)  # (B, S, 3D) -> 3 x (B, S, D)
        else:
            q = linear(query, self.w_q, self.b_q)  # (B, S, D)
            k = linear(key, self.w_k, self.b_k)  # (B, T, D)
            v = linear(value, self.w_v, self.b_v)  # (B, T, D)
        # split the width into h heads of width m
        q = q.view(B, S, h, m).transpose(1, 2)  # (B, h, S, m)
        k = k.view(B, T_new, h, m).transpose(1, 2)  # (B, h, T, m)
        v = v.view(B, T_new, h, m).transpose(1, 2)  # (B, h, T, m)
        if c.qk_norm:
            # a^(q) <- g^(q) * a^(q) / RMS(a^(q)), the same for the keys (rotary.py)
            q, k = rms_normalise(q, self.g_q), rms_normalise(k, self.g_k)  # (B, h, S, m), (B, h, T, m)
        if c.rotary:
            # R_p a^(q)_p and R_p a^(k)_p at the positions p after the cached ones (rotary.py)
            past = 0 if cache is None else cache.length
            q, k = apply_rotary(q, past, c.rope_base), apply_rotary(k, past, c.rope_base)  # (B, h, S, m)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, h, T, m) with T = T_past + S

        kpm = None if key_padding_mask is None else key_padding_mask[:, None, None, :]  # (B, 1, 1, T)
        mask = combine_masks(attn_mask, kpm)  # broadcastable to (B, h, S, T)
        fused = c.fused and not need_weights
        out = attend(q, k, v, mask=mask, causal=causal, dropout_p=c.dropout, training=self.training,
                     return_weights=need_weights, fused=fused)
        context, weights = out if need_weights else (out, None)  # context: (B, h, S, m)

        # heads side by side: [c_(1,s), ..., c_(h,s)]
        context = context.transpose(1, 2).reshape(B, S, D)  # (B, h, S, m) -> (B, S, h, m) -> (B, S, D)
        # o_s = w^(o) . [c_(1,s), ..., c_(h,s)] + b^(o)
        output = linear(context, self.w_o, self.b_o)  # (B, S, D)
        if weights is not None and average_weights:
            weights = weights.mean(dim=1)  # (B, h, S, T) -> (B, S, T)
        return output, weights

    # -- PyTorch interop -----------------------------------------------------------------
    @staticmethod
    def map_from_torch(theirs: dict[str, torch.Tensor], config: MultiHeadAttentionConfig) -> dict[str, torch.Tensor]:
        """nn.MultiheadAttention state dict -> ours. Pure tensor ops (differentiable)."""
        ours = {}
        if "in_proj_weight" in theirs and theirs["in_proj_weight"] is not None:
            ours["w_q"], ours["w_k"], ours["w_v"] = theirs["in_proj_weight"].chunk(3)  # (3D, D) -> 3 x (D, D)
        else:
            for n in "qkv":
                ours[f"w_{n}"] = theirs[f"{n}_proj_weight"]
        ours["w_o"] = theirs["out_proj.weight"]
        if config.bias:
            ours["b_q"], ours["b_k"], ours["b_v"] = theirs["in_proj_bias"].chunk(3)  # (3D,) -> 3 x (D,)
            ours["b_o"] = theirs["out_proj.bias"]
        return ours

    @staticmethod
    def map_to_torch(ours: dict[str, torch.Tensor], config: MultiHeadAttentionConfig) -> dict[str, torch.Tensor]:
        theirs = {}
        if config.key_dim == config.d_model and config.value_dim == config.d_model:
            theirs["in_proj_weight"] = torch.cat([ours["w_q"], ours["w_k"], ours["w_v"]])  # (3D, D)
        else:
            for n in "qkv":
                theirs[f"{n}_proj_weight"] = ours[f"w_{n}"]
        theirs["out_proj.weight"] = ours["w_o"]
        if config.bias:
            theirs["in_proj_bias"] = torch.cat([ours["b_q"], ours["b_k"], ours["b_v"]])  # (3D,)
            theirs["out_proj.bias"] = ours["b_o"]
        return theirs

    @classmethod
    def config_from_torch(cls, module: nn.Module, **overrides) -> MultiHeadAttentionConfig:
        if not isinstance(module, nn.MultiheadAttention):
            fail("module", "a torch.nn.MultiheadAttention", type(module).__name__)
        if not module.batch_first:
            fail("module", "batch_first=True", "batch_first=False")
        if module.bias_k is not None or module.add_zero_attn:
            fail("module", "add_bias_kv=False and add_zero_attn=False (not in the lecture)",
                 f"add_bias_kv={module.bias_k is not None}, add_zero_attn={module.add_zero_attn}")
        fields = dict(d_model=module.embed_dim, num_heads=module.num_heads, bias=module.in_proj_bias is not None,
                      dropout=float(module.dropout),
                      kdim=None if module.kdim == module.embed_dim else module.kdim,
                      vdim=None if module.vdim == module.embed_dim else module.vdim)
        fields.update(overrides)
        return MultiHeadAttentionConfig(**fields)

    @classmethod
    def from_torch(cls, module: nn.Module, **config_overrides) -> "MultiHeadAttention":
        """The seqlab module computing what ``module`` (batch_first=True) computes; its
        boolean masks must then be inverted (seqlab: True = may attend)."""
        config = cls.config_from_torch(module, **config_overrides)
        ref = module.out_proj.weight
        ours = cls(config).to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            ours.load_state_dict(cls.map_from_torch({k: v.detach() for k, v in module.state_dict().items()}, config))
        return ours

    def to_torch(self) -> nn.MultiheadAttention:
        """The equivalent nn.MultiheadAttention (batch_first=True), weights copied."""
        c = self.config
        if c.rotary or c.qk_norm:
            fail("to_torch", "an attention without rotary or qk_norm (nn.MultiheadAttention has neither)",
                 f"rotary={c.rotary}, qk_norm={c.qk_norm}")
        module = nn.MultiheadAttention(c.d_model, c.num_heads, dropout=c.dropout, bias=c.bias, kdim=c.kdim,
                                       vdim=c.vdim, batch_first=True)
        module = module.to(device=self.w_q.device, dtype=self.w_q.dtype)
        with torch.no_grad():
            module.load_state_dict(self.map_to_torch({k: v.detach() for k, v in self.state_dict().items()}, c))
        return module

    def extra_repr(self) -> str:
        return ", ".join(f"{f.name}={getattr(self.config, f.name)!r}" for f in dataclasses.fields(self.config))


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """w . x_t + b for every position: x (B, T, I), w (O, I), b (O,) or None -> (B, T, O)
    (no input checks)."""
    y = x @ w.T
    return y if b is None else y + b


__all__ = ["MultiHeadAttentionConfig", "MultiHeadAttention", "KVCache", "linear"]
