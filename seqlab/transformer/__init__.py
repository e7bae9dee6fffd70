"""The lecture's Transformers section: scaled dot-product attention and its masks,
multi-head attention with a KV cache, positional encodings, layer norm, blocks.

    from seqlab.transformer import MultiHeadAttention, TransformerBlock, Encoder, Decoder

Boolean masks say True = may attend, everywhere in seqlab (as
``F.scaled_dot_product_attention``; the opposite of ``nn.MultiheadAttention``).
"""

from seqlab.transformer.attention import causal_mask, padding_mask, scaled_dot_product_attention
from seqlab.transformer.block import BlockConfig, Decoder, Encoder, TransformerBlock
from seqlab.transformer.compile import maybe_compile
from seqlab.transformer.layernorm import LayerNorm
from seqlab.transformer.multihead import KVCache, MultiHeadAttention, MultiHeadAttentionConfig
from seqlab.transformer.position import LearnedPositionalEncoding, SinusoidalPositionalEncoding, sinusoidal_table

__all__ = [
    "scaled_dot_product_attention", "causal_mask", "padding_mask",
    "MultiHeadAttention", "MultiHeadAttentionConfig", "KVCache",
    "SinusoidalPositionalEncoding", "LearnedPositionalEncoding", "sinusoidal_table",
    "LayerNorm",
    "BlockConfig", "TransformerBlock", "Encoder", "Decoder",
    "maybe_compile",
]
