"""The Transformers section of ``seqlab tour``: every part checked against PyTorch."""

from __future__ import annotations

import torch
from torch import nn

from seqlab.tour.context import TourContext
from seqlab.viz.report import Section


def transformer_parts(ctx: TourContext, sec: Section) -> str:
    import torch.nn.functional as F

    from seqlab.testing import module_parity
    from seqlab.transformer import (LayerNorm, MultiHeadAttention, TransformerBlock, causal_mask,
                                    scaled_dot_product_attention)

    torch.manual_seed(ctx.seed)
    B, S, D, h = 3, 7, 16, 4
    x = torch.randn(B, S, D, dtype=torch.float64)
    mask = causal_mask(S)  # (S, S), True = may attend: t <= s

    # softmax(q . k / sqrt(m)) . v against PyTorch's kernel
    q, k, v = (torch.randn(B, h, S, D // h, dtype=torch.float64) for _ in range(3))
    ours = scaled_dot_product_attention(q, k, v, mask=mask)
    sdpa = (ours - F.scaled_dot_product_attention(q, k, v, attn_mask=mask)).abs().max().item()

    mha = nn.MultiheadAttention(D, h, batch_first=True).double()
    mha_diff = module_parity(
        MultiHeadAttention.from_torch(mha), mha, {"x": x},
        run_ours=lambda m, x: m(x, attn_mask=mask)[0],
        run_theirs=lambda m, x: m(x, x, x, attn_mask=~mask, need_weights=False)[0]).worst
    norm = nn.LayerNorm(D).double()
    ln_diff = module_parity(LayerNorm.from_torch(norm), norm, {"x": x}).worst
    rows, block_diff = [], 0.0
    for norm_first in (True, False):
        layer = nn.TransformerEncoderLayer(D, h, 32, dropout=0.0, batch_first=True, norm_first=norm_first).double()
        d = module_parity(TransformerBlock.from_torch(layer), layer, {"x": x}).worst
        block_diff = max(block_diff, d)
        rows.append([f"encoder block ({'pre' if norm_first else 'post'}-norm)", "nn.TransformerEncoderLayer",
                     f"{d:.1e}"])
    rows = [["attention softmax(q.k/sqrt(m)).v, causal", "F.scaled_dot_product_attention", f"{sdpa:.1e}"],
            ["multi-head attention, causal", "nn.MultiheadAttention", f"{mha_diff:.1e}"],
            ["layer norm", "nn.LayerNorm", f"{ln_diff:.1e}"], *rows]
    sec.text("Attention: each position s sends a query, every position t a key and a value; the context of s "
             "is the values weighted by the softmax g of the scaled query-key products. A causal mask sets the "
             "products with later positions to minus infinity.")
    sec.equation(r"a^{(q)}_{t} = w^{(q)} \cdot a^{(h)}_{t}, \quad a^{(k)}_{t} = w^{(k)} \cdot a^{(h)}_{t}, \quad "
                 r"a^{(v)}_{t} = w^{(v)} \cdot a^{(h)}_{t}",
                 r"\mathrm{context}_{s} = \sum_{t} g\left(\dfrac{a^{(q)}_{s} \cdot a^{(k)}_{t}}{\sqrt{m}}\right) "
                 r"a^{(v)}_{t}, \qquad a^{(q)}_{s} \cdot a^{(k)}_{t} = -\infty\ \mathrm{for}\ t > s\ "
                 r"\mathrm{(causal)}",
                 r"\mathrm{LN}(a) = \gamma \odot \dfrac{a - \mu}{\sqrt{\sigma^{2} + \epsilon}} + \beta, \qquad "
                 r"\mathrm{block:}\ a \leftarrow a + \mathrm{MHA}(\mathrm{LN}(a)),\ "
                 r"a \leftarrow a + \mathrm{MLP}(\mathrm{LN}(a))\ \mathrm{(pre\!-\!norm)}")
    # the causal mask's orientation, printed: row s (query) may see columns t <= s
    sec.code("causal mask (S = 5), True = may attend; row s = query, column t = key:\n"
             + "\n".join(" ".join("1" if m else "." for m in row) for row in causal_mask(5).tolist()))
    worst = max(sdpa, mha_diff, ln_diff, block_diff)
    sec.text(
        "Every part is written from the lecture's equations and checked against PyTorch's built-in in "
        "float64, forward and every gradient. The fused path (F.scaled_dot_product_attention) is a "
        "flag on the same modules.")
    sec.table(["seqlab", "PyTorch", "max |difference| (outputs and gradients, float64)"], rows)
    return f"parity with PyTorch (attention, multi-head, layer norm, encoder blocks): worst {worst:.0e}"
