"""Transformer blocks and stacks, positional encodings, the fused path and torch.compile.

- TransformerBlock against nn.TransformerEncoderLayer and nn.TransformerDecoderLayer
  (batch_first, dropout 0, pre- and post-norm, relu and gelu): output and every
  gradient, float64, 1e-10, with and without padding masks and with a causal mask
  (ours: ``causal=True`` in the config; PyTorch's: a mask passed at call time).
- Encoder / Decoder stacks against L PyTorch layers in sequence plus a final LayerNorm
  (weights mapped block by block); the stacks' KV cache against the full pass; the
  per-block, per-head attention weights.
- Positional encodings: the sinusoidal table against the formula, offsets, max_len,
  the learned table's gradient.
- The fused path (F.scaled_dot_product_attention) against the explicit one, and
  torch.compile (slow) against the plain module.

Masks: seqlab's boolean masks say True = may attend, PyTorch's layers' say True = masked,
so every boolean mask is inverted on PyTorch's side."""

import copy
import dataclasses
import math
import time

import pytest
import torch
from torch import nn

from seqlab.testing import module_parity
from seqlab.transformer import (
    BlockConfig,
    Decoder,
    Encoder,
    KVCache,
    LayerNorm,
    LearnedPositionalEncoding,
    SinusoidalPositionalEncoding,
    TransformerBlock,
    causal_mask,
    padding_mask,
    sinusoidal_table,
)
from seqlab.transformer.compile import maybe_compile

TOL = 1e-10
f64 = torch.float64
B, S, T_M, D, H, D_FF = 3, 5, 6, 8, 2, 16  # batch, positions, memory positions, d_model, heads, MLP width
LENGTHS = [5, 2, 4]  # lengths of the three items of x
MEMORY_LENGTHS = [6, 3, 1]  # lengths of the three items of the memory


def _randomize(module: nn.Module, seed: int, scale: float = 0.4) -> nn.Module:
    """Every parameter (biases and LayerNorm gains included) drawn at random, so that a
    parameter mapped to the wrong place, or left at its initial zeros or ones, shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def _identity(state):
    """map_from_torch between two seqlab modules of the same class."""
    return dict(state)


def _rand(*shape, seed, dtype=f64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _torch_layer(kind, *, norm_first, activation, seed, bias=True):
    cls = nn.TransformerDecoderLayer if kind == "decoder" else nn.TransformerEncoderLayer
    layer = cls(D, H, dim_feedforward=D_FF, dropout=0.0, activation=activation, batch_first=True,
                norm_first=norm_first, bias=bias).to(f64)
    return _randomize(layer, seed)


def _their_masks(causal, padded, n=S, lengths=LENGTHS):
    """PyTorch's form (True = masked) of a causal mask and a key padding mask."""
    attn = ~causal_mask(n) if causal else None
    kpm = ~padding_mask(lengths, n) if padded else None
    return attn, kpm


# -- one block against PyTorch's layers ----------------------------------------------------

ENCODER_MASKS = ["none", "padding", "causal", "causal+padding", "attn-mask"]


@pytest.mark.parametrize("masks", ENCODER_MASKS)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_encoder_layer_parity(norm_first, activation, masks):
    theirs = _torch_layer("encoder", norm_first=norm_first, activation=activation, seed=1)
    causal, padded = masks.startswith("causal"), "padding" in masks
    ours = TransformerBlock.from_torch(theirs, causal=causal)
    assert ours.config.causal == causal and ours.config.norm_first == norm_first
    their_attn, their_kpm = _their_masks(causal or masks == "attn-mask", padded)
    our_attn = causal_mask(S) if masks == "attn-mask" else None  # the same mask, given at call time
    our_kpm = padding_mask(LENGTHS, S) if padded else None

    report = module_parity(
        ours, theirs, {"x": _rand(B, S, D, seed=2)},
        run_ours=lambda m, x: m(x, attn_mask=our_attn, key_padding_mask=our_kpm),
        run_theirs=lambda m, x: m(x, src_mask=their_attn, src_key_padding_mask=their_kpm,
                                  is_causal=their_attn is not None))
    report.check(TOL)
    assert {f"grad[{k}]" for k, _ in theirs.named_parameters()} | {"output[0]", "grad_input[x]"} == set(report.diffs)


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_decoder_layer_parity(norm_first, activation, padded):
    """Causal self-attention (PyTorch: tgt_mask), cross-attention to a memory."""
    theirs = _torch_layer("decoder", norm_first=norm_first, activation=activation, seed=3)
    ours = TransformerBlock.from_torch(theirs, causal=True)
    assert ours.config.cross_attention
    their_attn, their_kpm = _their_masks(True, padded)
    their_mkpm = ~padding_mask(MEMORY_LENGTHS, T_M) if padded else None
    our_kpm = padding_mask(LENGTHS, S) if padded else None
    our_mkpm = padding_mask(MEMORY_LENGTHS, T_M) if padded else None

    report = module_parity(
        ours, theirs, {"x": _rand(B, S, D, seed=4), "memory": _rand(B, T_M, D, seed=5)},
        run_ours=lambda m, x, memory: m(x, memory=memory, key_padding_mask=our_kpm,
                                        memory_key_padding_mask=our_mkpm),
        run_theirs=lambda m, x, memory: m(x, memory, tgt_mask=their_attn, tgt_key_padding_mask=their_kpm,
                                          memory_key_padding_mask=their_mkpm, tgt_is_causal=True))
    report.check(TOL)
    assert {"grad_input[x]", "grad_input[memory]"} <= set(report.diffs)
    assert {f"grad[{k}]" for k, _ in theirs.named_parameters()} <= set(report.diffs)


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_block_without_bias(kind):
    theirs = _torch_layer(kind, norm_first=True, activation="gelu", seed=6, bias=False)
    ours = TransformerBlock.from_torch(theirs, causal=True)
    assert not ours.config.bias and ours.b_1 is None and ours.norm_mlp.beta is None
    inputs = {"x": _rand(B, S, D, seed=7)}
    if kind == "decoder":
        inputs["memory"] = _rand(B, T_M, D, seed=8)
    mask = ~causal_mask(S)

    def run_theirs(m, x, memory=None):
        return m(x, memory, tgt_mask=mask) if kind == "decoder" else m(x, src_mask=mask)

    module_parity(ours, theirs, inputs, run_ours=lambda m, x, memory=None: m(x, memory=memory),
                  run_theirs=run_theirs).check(TOL)


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_block_to_torch_round_trip(kind):
    theirs = _torch_layer(kind, norm_first=False, activation="relu", seed=9)
    ours = TransformerBlock.from_torch(theirs)
    back = ours.to_torch()
    assert type(back) is type(theirs) and back.norm_first is False and back.self_attn.batch_first
    assert back.state_dict().keys() == theirs.state_dict().keys()
    for k, v in theirs.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    # a block built by seqlab maps to PyTorch too
    fresh = _randomize(TransformerBlock(ours.config).to(f64), seed=10)
    inputs = {"x": _rand(B, S, D, seed=11)}
    if kind == "decoder":
        inputs["memory"] = _rand(B, T_M, D, seed=12)
    module_parity(fresh, fresh.to_torch(), inputs, run_ours=lambda m, x, memory=None: m(x, memory=memory),
                  run_theirs=lambda m, x, memory=None: m(x, memory) if memory is not None else m(x)).check(TOL)


def test_block_from_torch_rejects_what_it_cannot_map():
    with pytest.raises(ValueError, match=r"module: expected batch_first=True, received batch_first=False"):
        TransformerBlock.from_torch(nn.TransformerEncoderLayer(D, H))
    with pytest.raises(ValueError, match=r"module.activation: expected relu or \(exact\) gelu, received"):
        TransformerBlock.from_torch(nn.TransformerEncoderLayer(D, H, activation=nn.Tanh(), batch_first=True))
    with pytest.raises(ValueError, match=r"module: expected a torch.nn.TransformerEncoderLayer or "
                                         r"TransformerDecoderLayer, received Linear"):
        TransformerBlock.from_torch(nn.Linear(D, D))


def test_block_bad_inputs():
    block = TransformerBlock(d_model=D, num_heads=H, d_ff=D_FF).to(f64)
    x = _rand(B, S, D, seed=13)
    with pytest.raises(ValueError, match=r"x: expected d_model = 8 features in the last axis of "
                                         r"\(batch, time, features\), received shape \(3, 5, 6\)"):
        block(x[..., :6])
    with pytest.raises(ValueError, match=r"memory: expected None \(this block has no cross-attention\)"):
        block(x, memory=x)
    with pytest.raises(ValueError, match=r"key_padding_mask: expected a shape that broadcasts to "
                                         r"\(batch, T keys\) = \(3, 5\), received shape \(3, 4\)"):
        block(x, key_padding_mask=torch.ones(B, S - 1, dtype=torch.bool))
    decoder_block = TransformerBlock(d_model=D, num_heads=H, d_ff=D_FF, causal=True, cross_attention=True).to(f64)
    with pytest.raises(ValueError, match=r"memory: expected a \(batch, time, d_model\) tensor "
                                         r"\(cross_attention=True\), received None"):
        decoder_block(x)
    with pytest.raises(ValueError, match=r"memory: expected shape \(3, T, 8\) = \(batch as x, time, kdim\), "
                                         r"received shape \(3, 6, 7\)"):
        decoder_block(x, memory=_rand(B, T_M, 7, seed=14))
    with pytest.raises(ValueError, match=r"memory_key_padding_mask: expected a shape that broadcasts to "
                                         r"\(batch, T keys\) = \(3, 6\), received shape \(3, 5\)"):
        decoder_block(x, memory=_rand(B, T_M, D, seed=14), memory_key_padding_mask=torch.ones(B, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"d_model: expected a multiple of num_heads = 3, received d_model = 8"):
        BlockConfig(d_model=8, num_heads=3, d_ff=16)
    with pytest.raises(ValueError, match=r"activation: expected one of 'gelu', 'relu', 'relu2', 'swiglu', received 'tanh'"):
        BlockConfig(d_model=8, num_heads=2, d_ff=16, activation="tanh")


# -- stacks against L PyTorch layers in sequence ---------------------------------------------


def _torch_stack(kind, L, *, norm_first, seed):
    """nn.TransformerEncoder / nn.TransformerDecoder of L layers with a final
    nn.LayerNorm; every layer gets weights of its own (PyTorch deep-copies the first)."""
    layer = _torch_layer(kind, norm_first=norm_first, activation="gelu", seed=0)
    if kind == "decoder":
        stack = nn.TransformerDecoder(layer, L, norm=nn.LayerNorm(D))
    else:
        stack = nn.TransformerEncoder(layer, L, norm=nn.LayerNorm(D), enable_nested_tensor=False)
    return _randomize(stack.to(f64), seed)


def _map_stack(config, L):
    """PyTorch's stack state dict ("layers.l.*", "norm.*") -> ours ("blocks.l.*", "norm.*"),
    block by block."""
    def sub(state, prefix):
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    def mapping(state):
        ours = {}
        for l in range(L):
            block = TransformerBlock.map_from_torch(sub(state, f"layers.{l}."), config)
            ours.update({f"blocks.{l}.{k}": v for k, v in block.items()})
        ours.update({f"norm.{k}": v for k, v in LayerNorm.map_from_torch(sub(state, "norm.")).items()})
        return ours

    return mapping


def _our_stack(theirs, kind, L, **overrides):
    config = TransformerBlock.config_from_torch(theirs.layers[0], **overrides)
    mapping = _map_stack(config, L)
    cls = Decoder if kind == "decoder" else Encoder
    ours = cls(num_layers=L, config=config).to(f64)
    ours.load_state_dict(mapping({k: v.detach() for k, v in theirs.state_dict().items()}))  # strict: every key
    return ours, mapping


@pytest.mark.parametrize("call", ["layer-by-layer", "torch-stack"])
@pytest.mark.parametrize("masks", ["none", "padding", "causal+padding"])
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_encoder_stack_parity(norm_first, masks, call):
    L = 3
    theirs = _torch_stack("encoder", L, norm_first=norm_first, seed=20)
    causal, padded = masks.startswith("causal"), "padding" in masks
    ours, mapping = _our_stack(theirs, "encoder", L, causal=causal)
    their_attn, their_kpm = _their_masks(causal, padded)
    our_kpm = padding_mask(LENGTHS, S) if padded else None

    def run_theirs(m, x):
        if call == "torch-stack":
            return m(x, mask=their_attn, src_key_padding_mask=their_kpm, is_causal=causal)
        for layer in m.layers:  # L PyTorch layers in sequence, then the final LayerNorm
            x = layer(x, src_mask=their_attn, src_key_padding_mask=their_kpm)
        return m.norm(x)

    report = module_parity(ours, theirs, {"x": _rand(B, S, D, seed=21)}, map_from_torch=mapping,
                           run_ours=lambda m, x: m(x, key_padding_mask=our_kpm), run_theirs=run_theirs)
    report.check(TOL)
    assert {f"grad[{k}]" for k, _ in theirs.named_parameters()} <= set(report.diffs)


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_decoder_stack_parity(norm_first, padded):
    L = 2
    theirs = _torch_stack("decoder", L, norm_first=norm_first, seed=22)
    ours, mapping = _our_stack(theirs, "decoder", L, causal=True)
    their_attn, their_kpm = _their_masks(True, padded)
    their_mkpm = ~padding_mask(MEMORY_LENGTHS, T_M) if padded else None
    our_kpm = padding_mask(LENGTHS, S) if padded else None
    our_mkpm = padding_mask(MEMORY_LENGTHS, T_M) if padded else None

    def run_theirs(m, x, memory):
        for layer in m.layers:
            x = layer(x, memory, tgt_mask=their_attn, tgt_key_padding_mask=their_kpm,
                      memory_key_padding_mask=their_mkpm)
        return m.norm(x)

    report = module_parity(
        ours, theirs, {"x": _rand(B, S, D, seed=23), "memory": _rand(B, T_M, D, seed=24)}, map_from_torch=mapping,
        run_ours=lambda m, x, memory: m(x, memory, key_padding_mask=our_kpm, memory_key_padding_mask=our_mkpm),
        run_theirs=run_theirs)
    report.check(TOL)
    assert {f"grad[{k}]" for k, _ in theirs.named_parameters()} <= set(report.diffs)


def test_stack_without_final_norm():
    theirs = _torch_stack("encoder", 2, norm_first=False, seed=25)
    config = TransformerBlock.config_from_torch(theirs.layers[0])
    ours = Encoder(num_layers=2, config=config, final_norm=False).to(f64)
    full = _map_stack(config, 2)

    def mapping(state):
        return {k: v for k, v in full(state).items() if not k.startswith("norm.")}

    ours.load_state_dict(mapping({k: v.detach() for k, v in theirs.state_dict().items()}))

    def run_theirs(m, x):
        for layer in m.layers:
            x = layer(x)
        return x

    module_parity(ours, theirs, {"x": _rand(B, S, D, seed=26)}, map_from_torch=mapping,
                  run_theirs=run_theirs).check(TOL)


# -- the stacks' KV cache ----------------------------------------------------------------------

CHUNKS = {"steps": [1] * S, "2-3": [2, 3], "1-3-1": [1, 3, 1]}


def _incremental(stack, x, chunks, memory=None, key_padding_mask=None):
    """Feed x (B, S, D) in chunks through ``stack.new_cache()``; the outputs, concatenated."""
    cache, outs, start = stack.new_cache(), [], 0
    for n in chunks:
        kpm = None if key_padding_mask is None else key_padding_mask[:, : start + n]  # cached + new keys
        args = (x[:, start : start + n],) if memory is None else (x[:, start : start + n], memory)
        outs.append(stack(*args, cache=cache, key_padding_mask=kpm))
        start += n
        assert [kv.length for kv in cache] == [start] * stack.num_layers
    return torch.cat(outs, dim=1)  # (B, S, D)


def _causal_encoder(seed, *, fused=False, norm_first=True, L=3):
    config = BlockConfig(d_model=D, num_heads=H, d_ff=D_FF, causal=True, norm_first=norm_first, fused=fused)
    return _randomize(Encoder(num_layers=L, config=config).to(f64), seed)


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("chunks", list(CHUNKS))
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_encoder_kv_cache_equals_full_pass(norm_first, chunks, padded):
    """Output and every gradient (input, parameters), 1e-10."""
    ours = _causal_encoder(30, norm_first=norm_first)
    kpm = padding_mask(LENGTHS, S) if padded else None
    report = module_parity(ours, copy.deepcopy(ours), {"x": _rand(B, S, D, seed=31)}, map_from_torch=_identity,
                           run_ours=lambda m, x: _incremental(m, x, CHUNKS[chunks], key_padding_mask=kpm),
                           run_theirs=lambda m, x: m(x, key_padding_mask=kpm))
    report.check(TOL)


@pytest.mark.parametrize("chunks", ["steps", "2-3"])
def test_decoder_kv_cache_equals_full_pass(chunks):
    config = BlockConfig(d_model=D, num_heads=H, d_ff=D_FF, causal=True, cross_attention=True)
    ours = _randomize(Decoder(num_layers=2, config=config).to(f64), 32)
    inputs = {"x": _rand(B, S, D, seed=33), "memory": _rand(B, T_M, D, seed=34)}
    report = module_parity(ours, copy.deepcopy(ours), inputs, map_from_torch=_identity,
                           run_ours=lambda m, x, memory: _incremental(m, x, CHUNKS[chunks], memory=memory),
                           run_theirs=lambda m, x, memory: m(x, memory))
    report.check(TOL)


def test_stack_cache_bad_use():
    ours = _causal_encoder(35, L=2)
    x = _rand(B, S, D, seed=36)
    with pytest.raises(ValueError, match=r"cache: expected a list of 2 KVCache \(one per block; see new_cache\(\)\), "
                                         r"received list of 3"):
        ours(x, cache=[*ours.new_cache(), *ours.new_cache()][:3])
    cache = ours.new_cache()
    ours(x[:, :2], cache=cache)
    cache[1].reset()
    with pytest.raises(ValueError, match=r"cache: expected every block's cache of the same length, received \[2, 0\]"):
        ours(x[:, 2:3], cache=cache)


# -- attention weights ----------------------------------------------------------------------


def _check_weights(w, allowed):
    """w (B, h, S, T): rows sum to 1, exactly 0 on the keys a query may not see, > 0 on
    the others. allowed: broadcastable to w, True = may attend."""
    allowed = allowed.expand_as(w)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1], dtype=w.dtype), atol=1e-14, rtol=0)
    assert bool((w.masked_select(~allowed) == 0).all())
    assert bool((w.masked_select(allowed) > 0).all())


@pytest.mark.parametrize("fused", [False, True], ids=["explicit", "fused"])
def test_encoder_need_weights(fused):
    ours = _causal_encoder(40, fused=fused)
    x = _rand(B, S, D, seed=41)
    keep = padding_mask(LENGTHS, S)
    out, weights = ours(x, key_padding_mask=keep, need_weights=True)
    # asking for the weights changes nothing in the output (the fused module falls back to
    # the explicit path for this call)
    torch.testing.assert_close(out, ours(x, key_padding_mask=keep), atol=TOL, rtol=0)
    assert len(weights) == 3
    allowed = (causal_mask(S)[None] & keep[:, None, :])[:, None]  # (B, 1, S, S): past and real keys
    for w in weights:
        assert set(w) == {"self"} and w["self"].shape == (B, H, S, S)
        _check_weights(w["self"], allowed)
    # they are the weights the blocks use: block 0's equal its attention's, recomputed
    u = ours.blocks[0].norm_self(x)
    _, w0 = ours.blocks[0].self_attn(u, causal=True, key_padding_mask=keep, need_weights=True, average_weights=False)
    torch.testing.assert_close(weights[0]["self"], w0, atol=TOL, rtol=0)


def test_decoder_need_weights():
    config = BlockConfig(d_model=D, num_heads=H, d_ff=D_FF, causal=True, cross_attention=True)
    ours = _randomize(Decoder(num_layers=2, config=config).to(f64), 42)
    x, memory = _rand(B, S, D, seed=43), _rand(B, T_M, D, seed=44)
    keep, keep_m = padding_mask(LENGTHS, S), padding_mask(MEMORY_LENGTHS, T_M)
    out, weights = ours(x, memory, key_padding_mask=keep, memory_key_padding_mask=keep_m, need_weights=True)
    torch.testing.assert_close(out, ours(x, memory, key_padding_mask=keep, memory_key_padding_mask=keep_m),
                               atol=TOL, rtol=0)
    for w in weights:
        assert w["self"].shape == (B, H, S, S) and w["cross"].shape == (B, H, S, T_M)
        _check_weights(w["self"], (causal_mask(S)[None] & keep[:, None, :])[:, None])
        _check_weights(w["cross"], keep_m[:, None, None, :])


def test_block_need_weights_with_cache():
    """With a cache, the new queries' weights cover every cached key (B, h, S_new, T)."""
    ours = _causal_encoder(45, L=1).blocks[0]
    x = _rand(B, S, D, seed=46)
    _, full = ours(x, need_weights=True)
    kv = KVCache()  # the block's self-attention cache
    ours(x[:, :3], cache=kv)
    _, w = ours(x[:, 3:], cache=kv, need_weights=True)
    assert w["self"].shape == (B, H, 2, S)
    torch.testing.assert_close(w["self"], full["self"][:, :, 3:], atol=TOL, rtol=0)


# -- the fused path --------------------------------------------------------------------------


def _fused_twin(module):
    """The same module (same weights) with ``fused=True`` in its config."""
    config = dataclasses.replace(module.config, fused=True)
    if isinstance(module, TransformerBlock):
        twin = TransformerBlock(config)
    else:
        twin = type(module)(num_layers=module.num_layers, config=config, final_norm=module.norm is not None)
    twin = twin.to(f64)
    twin.load_state_dict(module.state_dict())
    assert twin.config.fused and not module.config.fused
    return twin


@pytest.mark.parametrize("masks", ["none", "causal", "padding", "causal+padding"])
def test_fused_block_agrees_with_explicit(masks):
    causal, padded = masks.startswith("causal"), "padding" in masks
    explicit = _randomize(TransformerBlock(d_model=D, num_heads=H, d_ff=D_FF, causal=causal).to(f64), 50)
    fused = _fused_twin(explicit)
    kpm = padding_mask(LENGTHS, S) if padded else None
    run = lambda m, x: m(x, key_padding_mask=kpm)
    module_parity(fused, explicit, {"x": _rand(B, S, D, seed=51)}, map_from_torch=_identity,
                  run_ours=run, run_theirs=run).check(TOL)


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
def test_fused_decoder_block_agrees_with_explicit(padded):
    explicit = _randomize(TransformerBlock(d_model=D, num_heads=H, d_ff=D_FF, causal=True,
                                           cross_attention=True).to(f64), 52)
    fused = _fused_twin(explicit)
    kpm = padding_mask(LENGTHS, S) if padded else None
    mkpm = padding_mask(MEMORY_LENGTHS, T_M) if padded else None
    run = lambda m, x, memory: m(x, memory=memory, key_padding_mask=kpm, memory_key_padding_mask=mkpm)
    module_parity(fused, explicit, {"x": _rand(B, S, D, seed=53), "memory": _rand(B, T_M, D, seed=54)},
                  map_from_torch=_identity, run_ours=run, run_theirs=run).check(TOL)


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("chunks", ["steps", "1-3-1"])
def test_fused_kv_cache_agrees_with_explicit_full_pass(chunks, padded):
    """causal + KV cache on the fused path == the explicit full causal pass."""
    explicit = _causal_encoder(55)
    fused = _fused_twin(explicit)
    kpm = padding_mask(LENGTHS, S) if padded else None
    module_parity(fused, explicit, {"x": _rand(B, S, D, seed=56)}, map_from_torch=_identity,
                  run_ours=lambda m, x: _incremental(m, x, CHUNKS[chunks], key_padding_mask=kpm),
                  run_theirs=lambda m, x: m(x, key_padding_mask=kpm)).check(TOL)


def test_fused_block_matches_torch_layer():
    theirs = _torch_layer("encoder", norm_first=True, activation="gelu", seed=57)
    ours = TransformerBlock.from_torch(theirs, causal=True, fused=True)
    assert ours.config.fused and ours.self_attn.config.fused
    module_parity(ours, theirs, {"x": _rand(B, S, D, seed=58)},
                  run_theirs=lambda m, x: m(x, src_mask=~causal_mask(S), is_causal=True)).check(TOL)


# -- positional encodings ------------------------------------------------------------------------


@pytest.mark.parametrize("d_model", [6, 7])
def test_sinusoidal_table_is_the_formula(d_model):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)),
    written out one entry at a time."""
    max_len = 40
    table = sinusoidal_table(max_len, d_model)
    assert table.shape == (max_len, d_model) and table.dtype == f64
    for pos in range(max_len):
        for j in range(d_model):
            i = j // 2
            angle = pos / 10000 ** (2 * i / d_model)
            want = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert abs(float(table[pos, j]) - want) <= 1e-12, (pos, j)
    assert sinusoidal_table(max_len, d_model, dtype=torch.float32).dtype == torch.float32


def test_sinusoidal_encoding_adds_the_table_and_honours_the_offset():
    pe = SinusoidalPositionalEncoding(d_model=D, max_len=12)
    assert pe.state_dict() == {}  # the table is recomputed, never stored
    x = _rand(B, 10, D, seed=60)
    full = pe(x)
    torch.testing.assert_close(full, x + sinusoidal_table(12, D)[None, :10], atol=0, rtol=0)
    for k, n in ((0, 3), (4, 1), (7, 3), (2, 8)):
        torch.testing.assert_close(pe(x[:, k : k + n], offset=k), full[:, k : k + n], atol=0, rtol=0)
    assert pe(x.float()).dtype == torch.float32


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEncoding])
def test_positional_encoding_bad_input(cls):
    pe = cls(d_model=D, max_len=12)
    x = torch.randn(B, 5, D)
    with pytest.raises(ValueError, match=r"positions: expected positions < max_len = 12, "
                                         r"received positions 8\.\.12 \(offset 8 \+ 5 steps\)"):
        pe(x, offset=8)
    with pytest.raises(ValueError, match=r"positions: expected positions < max_len = 12, "
                                         r"received positions 0\.\.12 \(offset 0 \+ 13 steps\)"):
        pe(torch.randn(B, 13, D))
    pe(x, offset=7)  # positions 7..11: the last ones there are
    with pytest.raises(ValueError, match=r"offset: expected an integer >= 0, received -1"):
        pe(x, offset=-1)
    with pytest.raises(ValueError, match=r"x: expected d_model = 8 features in the last axis of "
                                         r"\(batch, time, features\), received shape \(3, 5, 4\)"):
        pe(x[..., :4])
    with pytest.raises(ValueError, match=r"x: expected a 3-D tensor \(batch, time, features\), "
                                         r"received shape \(5, 8\)"):
        pe(x[0])


def test_learned_encoding_has_gradients_on_the_positions_it_used():
    pe = LearnedPositionalEncoding(max_len=12, d_model=D).to(f64)
    x = _rand(B, 4, D, seed=61)
    out = pe(x, offset=3)
    torch.testing.assert_close(out, x + pe.p[3:7][None], atol=0, rtol=0)
    g = _rand(B, 4, D, seed=62)
    (out * g).sum().backward()
    torch.testing.assert_close(pe.p.grad[3:7], g.sum(0), atol=1e-14, rtol=0)
    assert bool((pe.p.grad[:3] == 0).all()) and bool((pe.p.grad[7:] == 0).all())


def test_learned_encoding_trains():
    """A few steps of gradient descent move the table to a target encoding."""
    torch.manual_seed(0)
    pe = LearnedPositionalEncoding(max_len=6, d_model=D)
    target = torch.randn(6, D)
    x = torch.randn(16, 6, D)
    opt = torch.optim.SGD(pe.parameters(), lr=1.0)
    losses = []
    for _ in range(20):
        loss = ((pe(x) - (x + target)) ** 2).sum(-1).mean()  # squared distance per position, averaged
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 1e-3 * losses[0]


# -- torch.compile behind a flag -----------------------------------------------------------------


def test_maybe_compile_disabled_returns_the_module():
    block = TransformerBlock(d_model=D, num_heads=H, d_ff=D_FF)
    assert maybe_compile(block, False) is block


def test_maybe_compile_bad_input(monkeypatch):
    block = TransformerBlock(d_model=D, num_heads=H, d_ff=D_FF)
    with pytest.raises(ValueError, match=r"enabled: expected True or False, received 1"):
        maybe_compile(block, 1)
    with pytest.raises(ValueError, match=r"module: expected a torch.nn.Module, received function"):
        maybe_compile(lambda x: x, True)
    monkeypatch.delattr(torch, "compile")
    with pytest.raises(ValueError, match=r"torch.compile: expected a PyTorch that has torch.compile .*"
                                         r"received torch .* without it"):
        maybe_compile(block, True)
    assert maybe_compile(block, False) is block  # without torch.compile, the flag off still works


@pytest.mark.slow
def test_compiled_block_agrees_with_plain_float32():
    """torch.compile (inductor: C++ code for the CPU) against the plain module, float32,
    outputs and every gradient within 1e-5. About 45 s on a 2-core CPU with a cold inductor
    cache, about 10 s with a warm one."""
    torch.manual_seed(70)
    block = TransformerBlock(d_model=16, num_heads=4, d_ff=32, causal=True)
    compiled = maybe_compile(block, True)
    assert compiled is not block
    keep = padding_mask([6, 3], 6)
    run = lambda m, x: m(x, key_padding_mask=keep)
    start = time.perf_counter()
    report = module_parity(compiled, block, {"x": torch.randn(2, 6, 16)},
                           map_from_torch=lambda s: {f"_orig_mod.{k}": v for k, v in s.items()},
                           run_ours=run, run_theirs=run)
    print(f"compile + forward + backward: {time.perf_counter() - start:.1f} s")
    report.check(1e-5)
    assert {f"grad[{k}]" for k, _ in block.named_parameters()} <= set(report.diffs)
