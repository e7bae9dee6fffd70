r"""Scaled dot-product attention and its masks, in the lecture's equations.

Lecture, "Transformers" (a^(h)_t = g(w^(x) . x_t + b^(x)) is not recurrent; g in the
attention is the softmax, taken over the keys t):

    a^(v)_t = w^(v) . a^(h)_t                 value units
    a^(k)_t = w^(k) . a^(h)_t                 key units
    a^(q)_t = w^(q) . a^(h)_t                 query units
    context_s = sum_t g(a^(q)_s . a^(k)_t / sqrt(m)) a^(v)_t     m = width of a query / key

This file takes q, k, v already projected (``multihead.py`` does the projections):
q (..., S, m), k (..., T, m), v (..., T, d); the context has shape (..., S, d).

Masks. Every boolean mask in seqlab says **True = may attend** (the convention of
``torch.nn.functional.scaled_dot_product_attention``; note that ``nn.MultiheadAttention``
uses the opposite, True = masked, for its ``attn_mask`` and ``key_padding_mask``). A
floating mask is added to the scores (0 = keep, -inf = masked, anything else a bias).
A masked score is set to -inf before the softmax, so its weight e^(-inf) = 0.

Causal mask. The lecture writes the masked condition as "s >= t"; seqlab reads it as the
text around it means it: a query at position s sees the keys t <= s, itself included,
and the scores with t > s are masked. With S queries and T >= S keys (a KV cache holds
T - S earlier positions) the queries are the last S positions: query s sees
t <= s + (T - S). This alignment is the lower-right one; PyTorch's ``is_causal=True``
aligns to the upper left instead (query s sees t <= s). Both agree when S == T.

A query that may see no key at all (a fully masked row) has no softmax: seqlab defines
its weights as 0 and its context as 0 (not NaN), and sends no gradient through it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from seqlab.validation import check_float, check_int, check_tensor, fail, shape_str

NEG_INF = float("-inf")


# -- masks ---------------------------------------------------------------------------


def causal_mask(S: int, T: int | None = None, *, offset: int | None = None,
                device: torch.device | str | None = None) -> torch.Tensor:
    """(S, T) bool, True where query s may see key t: t <= s + offset.

    T defaults to S; offset defaults to T - S (the S queries are the last S of T
    positions, as with a KV cache holding T - S earlier ones). offset = 0 gives
    PyTorch's upper-left ``is_causal`` alignment.
    """
    check_int(S, "S", minimum=1)
    T = S if T is None else check_int(T, "T", minimum=1)
    offset = T - S if offset is None else check_int(offset, "offset")
    s = torch.arange(S, device=device)[:, None]  # (S, 1)
    t = torch.arange(T, device=device)[None, :]  # (1, T)
    # lecture: the score of (s, t) is masked when the key t lies in the future of s
    return t <= s + offset  # (S, T)


def padding_mask(lengths: object, T: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """(B, T) bool, True where key t is part of item b (t < lengths[b]), False on padding.

    Use ``[:, None, :]`` to broadcast over S queries of (B, S, T) scores, and
    ``[:, None, None, :]`` over heads as well; ``MultiHeadAttention`` takes the (B, T)
    mask directly as ``key_padding_mask``.
    """
    check_int(T, "T", minimum=1)
    if isinstance(lengths, (list, tuple)):
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in lengths):
            fail("lengths", "integers", [type(n).__name__ for n in lengths])
        lengths = torch.tensor(list(lengths), dtype=torch.int64)
    if not isinstance(lengths, torch.Tensor) or lengths.dim() != 1 or lengths.is_floating_point() \
            or lengths.dtype == torch.bool:
        got = f"shape {shape_str(lengths)}, dtype {lengths.dtype}" if isinstance(lengths, torch.Tensor) \
            else type(lengths).__name__
        fail("lengths", "a 1-D integer tensor or a list of ints", got)
    if lengths.numel() and int(lengths.min()) < 0:
        fail("lengths", "every length >= 0", f"minimum {int(lengths.min())}")
    if lengths.numel() and int(lengths.max()) > T:
        fail("lengths", f"every length <= T = {T}", f"maximum {int(lengths.max())}")
    device = lengths.device if device is None else device
    t = torch.arange(T, device=device)[None, :]  # (1, T)
    return t < lengths.to(device)[:, None]  # (B, T)


def check_mask(mask: object, name: str, shape: tuple[int, ...], dims: str, dtype: torch.dtype) -> torch.Tensor:
    """A boolean or floating mask whose shape broadcasts to ``shape`` (``dims`` names the
    axes in the message). A floating mask is cast to ``dtype`` and may hold -inf but no
    NaN or +inf. Returns the mask."""
    if not isinstance(mask, torch.Tensor):
        fail(name, "a torch.Tensor (bool: True = may attend; float: added to the scores)", type(mask).__name__)
    if mask.dtype != torch.bool and not mask.is_floating_point():
        fail(name, "a bool tensor (True = may attend) or a floating tensor (added to the scores)",
             f"dtype {mask.dtype}")
    want = "(" + ", ".join(str(s) for s in shape) + ")"
    ok = mask.dim() <= len(shape)
    if ok:
        try:
            ok = torch.broadcast_shapes(mask.shape, shape) == torch.Size(shape)
        except RuntimeError:
            ok = False
    if not ok:
        fail(name, f"a shape that broadcasts to {dims} = {want}", f"shape {shape_str(mask)}")
    if mask.is_floating_point():
        if mask.numel() and bool((torch.isnan(mask) | (mask == float("inf"))).any()):
            fail(name, "no NaN or +inf (use -inf to mask a score)", "NaN or +inf values")
        mask = mask.to(dtype)
    return mask


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """One mask from several (None entries are skipped), by broadcasting: booleans are
    combined with AND; if any mask is floating, booleans become 0 / -inf and all are added."""
    masks = [m for m in masks if m is not None]
    if not masks:
        return None
    floats = [m for m in masks if m.is_floating_point()]
    if not floats:
        out = masks[0]
        for m in masks[1:]:
            out = out & m
        return out
    dtype = floats[0].dtype
    out = None
    for m in masks:
        add = m if m.is_floating_point() else torch.zeros((), dtype=dtype, device=m.device).masked_fill(~m, NEG_INF)
        out = add if out is None else out + add
    return out


def _dead_rows(mask: torch.Tensor) -> torch.Tensor:
    """(..., S, 1) bool: the queries that may see no key at all."""
    if mask.is_floating_point():
        return (mask == NEG_INF).all(-1, keepdim=True)
    return ~mask.any(-1, keepdim=True)


# -- attention -----------------------------------------------------------------------


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                                 mask: torch.Tensor | None = None, causal: bool = False,
                                 scale: float | None = None, dropout_p: float = 0.0,
                                 training: bool = False, return_weights: bool = False,
                                 fused: bool = False):
    """Attention context of the queries q over the keys k and values v.

    q: (..., S, m), k: (..., T, m), v: (..., T, d), the same leading dims and dtype.
    mask: bool (True = may attend) or float (added to the scores), broadcastable to
    (..., S, T). causal: also mask t > s + (T - S) (see :func:`causal_mask`).
    scale: multiplies the scores, 1 / sqrt(m) by default. dropout_p: dropout on the
    weights when ``training``.

    Returns the context (..., S, d), or ``(context, weights)`` with weights (..., S, T)
    when ``return_weights`` (the weights actually applied, after dropout). A fully
    masked query row gets weights 0 and context 0.

    ``fused=True`` calls ``torch.nn.functional.scaled_dot_product_attention`` (same
    result, faster, less memory); it does not form the weights, so ``return_weights``
    must then be False (``MultiHeadAttention`` falls back to this explicit path when
    weights are asked for).
    """
    q = check_tensor(q, "q", floating=True, finite=True)
    k = check_tensor(k, "k", floating=True, finite=True)
    v = check_tensor(v, "v", floating=True, finite=True)
    if q.dim() < 2:
        fail("q", "at least 2 dims (..., S, m)", f"shape {shape_str(q)}")
    for name, x in (("k", k), ("v", v)):
        if x.dim() != q.dim() or x.shape[:-2] != q.shape[:-2]:
            fail(name, f"the leading dims of q {tuple(q.shape[:-2])} and then (T, features)", f"shape {shape_str(x)}")
        if x.dtype != q.dtype:
            fail(name, f"dtype {q.dtype} (the dtype of q)", f"dtype {x.dtype}")
    if k.shape[-1] != q.shape[-1]:
        fail("k", f"last dim m = {q.shape[-1]} (the width of q)", f"shape {shape_str(k)}")
    if v.shape[-2] != k.shape[-2]:
        fail("v", f"T = {k.shape[-2]} positions (as k)", f"shape {shape_str(v)}")
    S, T = q.shape[-2], k.shape[-2]
    if S < 1 or T < 1:
        fail("q, k", "at least one query and one key", f"S = {S}, T = {T}")
    if mask is not None:
        mask = check_mask(mask, "mask", (*q.shape[:-2], S, T), "(..., S, T)", q.dtype)
    if not isinstance(causal, bool):
        fail("causal", "True or False", repr(causal))
    if scale is not None:
        scale = check_float(scale, "scale", finite=True)
    dropout_p = check_float(dropout_p, "dropout_p", minimum=0.0, maximum=1.0, open_max=True)
    if fused and return_weights:
        fail("return_weights", "False when fused=True (the fused kernel does not form the weights; "
             "use fused=False to get them)", True)
    return attend(q, k, v, mask=mask, causal=causal, scale=scale, dropout_p=dropout_p, training=training,
                  return_weights=return_weights, fused=fused)


def attend(q, k, v, *, mask=None, causal=False, scale=None, dropout_p=0.0, training=False,
           return_weights=False, fused=False):
    """:func:`scaled_dot_product_attention` without the input checks (for callers that
    have checked their inputs already, such as ``MultiHeadAttention``)."""
    S, T, m = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = 1.0 / math.sqrt(m) if scale is None else scale
    p = dropout_p if training else 0.0
    # with the causal mask alone (T >= S) every query sees at least one key: no empty rows
    causal_only = causal and mask is None and T >= S
    if causal_only and S == 1:
        causal = False  # one new query after T - 1 cached positions sees every key
    if fused and causal_only and S == T:
        # causal only: the kernel builds the mask itself (and may pick a flash kernel)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True, scale=scale)
    if causal:
        mask = combine_masks(mask, causal_mask(S, T, device=q.device))  # (..., S, T)
    if fused:
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, scale=scale)
        if mask is not None and not causal_only:
            # a fully masked row: context 0 (PyTorch >= 2.5 does the same; older kernels give NaN)
            context = context.masked_fill(_dead_rows(mask), 0.0)
        return context
    return _explicit(q, k, v, mask, scale, p, return_weights, may_have_empty_rows=not causal_only)


def _explicit(q, k, v, mask, scale, p, return_weights, may_have_empty_rows=True):
    # a^(q)_s . a^(k)_t / sqrt(m), for every query s and key t
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., S, m) @ (..., m, T) -> (..., S, T)
    dead = None
    if mask is not None:
        if mask.is_floating_point():
            scores = scores + mask  # (..., S, T)
        else:
            # masked scores = -inf, so that e^(score) = 0
            scores = scores.masked_fill(~mask, NEG_INF)  # (..., S, T)
        if may_have_empty_rows:
            dead = _dead_rows(mask)  # (..., S, 1)
            # a row with no visible key: softmax of zeros here, weights set to 0 below
            scores = scores.masked_fill(dead, 0.0)
    # g = softmax over the keys t
    weights = torch.softmax(scores, dim=-1)  # (..., S, T)
    if dead is not None:
        weights = weights.masked_fill(dead, 0.0)
    if p > 0.0:
        weights = F.dropout(weights, p, training=True)
    # context_s = sum_t weight_(s, t) a^(v)_t
    context = weights @ v  # (..., S, T) @ (..., T, d) -> (..., S, d)
    return (context, weights) if return_weights else context
