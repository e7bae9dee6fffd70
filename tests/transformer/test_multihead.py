"""Multi-head attention: parity with nn.MultiheadAttention (batch_first=True) -- output,
attention weights (averaged and per head), gradients w.r.t. the inputs and every
parameter, float64, 1e-10 -- for self- and cross-attention, causal, per-head, float and
key-padding masks, kdim / vdim != d_model, bias=False and several head counts; the
to_torch round trip; the KV cache (one position at a time and in chunks equals the full
causal pass); the fused path (F.scaled_dot_product_attention) against the explicit one;
and input validation.

Masks: seqlab's boolean masks say True = may attend, nn.MultiheadAttention's say
True = masked, so every boolean mask is inverted on PyTorch's side."""

import copy
import dataclasses

import pytest
import torch
from torch import nn

from seqlab.testing import module_parity
from seqlab.transformer import (
    KVCache,
    MultiHeadAttention,
    MultiHeadAttentionConfig,
    causal_mask,
    padding_mask,
)

TOL = 1e-10
f64 = torch.float64
B, S, T, D = 3, 5, 7, 8  # batch, queries, keys (cross-attention), d_model
LENGTHS = [5, 2, 4]  # key lengths of the three items (self-attention, S keys)
MEMORY_LENGTHS = [7, 3, 6]  # key lengths for cross-attention (T keys)


def _randomize(module: nn.Module, seed: int, scale: float = 0.5) -> nn.Module:
    """Every parameter (biases and norms included) drawn at random, so that a parameter
    mapped to the wrong place, or left at its zero / one initialisation, shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def _identity(state):
    """map_from_torch between two seqlab modules of the same class."""
    return dict(state)


def _rand(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=f64)


def _pair(h, *, bias=True, kdim=None, vdim=None, seed=0, **overrides):
    theirs = nn.MultiheadAttention(D, h, bias=bias, kdim=kdim, vdim=vdim, batch_first=True).to(f64)
    _randomize(theirs, seed)
    return MultiHeadAttention.from_torch(theirs, **overrides), theirs


def _random_keep(shape, seed):
    """A random boolean 'may attend' mask in which every query row sees key 0."""
    keep = torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < 0.6
    keep[..., 0] = True
    return keep


# -- parity with nn.MultiheadAttention ---------------------------------------------------

# each case: (cross-attention?, module kwargs, a function h -> (our call kwargs, their call kwargs))
CASES = {
    "self": (False, {}, lambda h: ({}, {})),
    "causal-mask": (False, {}, lambda h: ({"attn_mask": causal_mask(S)}, {"attn_mask": ~causal_mask(S)})),
    "causal-flag": (False, {}, lambda h: ({"causal": True}, {"attn_mask": ~causal_mask(S), "is_causal": True})),
    "float-mask": (False, {}, lambda h: ({"attn_mask": _rand(S, S, seed=11)}, {"attn_mask": _rand(S, S, seed=11)})),
    "per-head-mask": (False, {}, lambda h: ({"attn_mask": _random_keep((B * h, S, S), 12)},
                                            {"attn_mask": ~_random_keep((B * h, S, S), 12)})),
    "padding": (False, {}, lambda h: ({"key_padding_mask": padding_mask(LENGTHS, S)},
                                      {"key_padding_mask": ~padding_mask(LENGTHS, S)})),
    "float-padding": (False, {}, lambda h: (
        {"key_padding_mask": torch.zeros(B, S, dtype=f64).masked_fill(~padding_mask(LENGTHS, S), float("-inf"))},
        {"key_padding_mask": torch.zeros(B, S, dtype=f64).masked_fill(~padding_mask(LENGTHS, S), float("-inf"))})),
    "causal+padding": (False, {}, lambda h: (
        {"causal": True, "key_padding_mask": padding_mask(LENGTHS, S)},
        {"attn_mask": ~causal_mask(S), "key_padding_mask": ~padding_mask(LENGTHS, S)})),
    "cross": (True, {}, lambda h: ({}, {})),
    "cross+padding": (True, {}, lambda h: ({"key_padding_mask": padding_mask(MEMORY_LENGTHS, T)},
                                           {"key_padding_mask": ~padding_mask(MEMORY_LENGTHS, T)})),
    "cross-kdim-vdim": (True, {"kdim": 3, "vdim": 5}, lambda h: (
        {"key_padding_mask": padding_mask(MEMORY_LENGTHS, T)},
        {"key_padding_mask": ~padding_mask(MEMORY_LENGTHS, T)})),
    "no-bias": (False, {"bias": False}, lambda h: ({"attn_mask": causal_mask(S)}, {"attn_mask": ~causal_mask(S)})),
    "cross-no-bias-kdim": (True, {"bias": False, "kdim": 6, "vdim": 6}, lambda h: ({}, {})),
}


def _parity(ours, theirs, cross, ours_kw, theirs_kw, *, need_weights=True, average=True, seed=0):
    kdim, vdim = ours.config.key_dim, ours.config.value_dim
    inputs = {"query": _rand(B, S, D, seed=seed + 1)}
    if cross:
        inputs["key"] = _rand(B, T, kdim, seed=seed + 2)
        inputs["value"] = _rand(B, T, vdim, seed=seed + 3)

    def run_ours(m, query, key=None, value=None):
        return m(query, key, value, need_weights=need_weights, average_weights=average, **ours_kw)

    def run_theirs(m, query, key=None, value=None):
        key = query if key is None else key
        value = query if value is None else value
        return m(query, key, value, need_weights=need_weights, average_attn_weights=average, **theirs_kw)

    return module_parity(ours, theirs, inputs, run_ours=run_ours, run_theirs=run_theirs, seed=seed)


@pytest.mark.parametrize("average", [True, False], ids=["averaged", "per-head"])
@pytest.mark.parametrize("h", [1, 2, 4])
@pytest.mark.parametrize("case", list(CASES))
def test_parity_with_torch(case, h, average):
    cross, module_kw, make_kw = CASES[case]
    ours, theirs = _pair(h, seed=h, **module_kw)
    ours_kw, theirs_kw = make_kw(h)
    report = _parity(ours, theirs, cross, ours_kw, theirs_kw, average=average, seed=h)
    report.check(TOL)
    # the report covers the output, the weights, every input and every PyTorch parameter
    assert {"output[0]", "output[1]", "grad_input[query]"} <= set(report.diffs)
    assert {f"grad[{k}]" for k, _ in theirs.named_parameters()} <= set(report.diffs)


@pytest.mark.parametrize("case", ["self", "causal+padding", "cross-kdim-vdim"])
def test_parity_without_weights(case):
    """need_weights=False: both return (output, None); PyTorch then runs its fused kernel."""
    cross, module_kw, make_kw = CASES[case]
    ours, theirs = _pair(2, seed=5, **module_kw)
    ours_kw, theirs_kw = make_kw(2)
    report = _parity(ours, theirs, cross, ours_kw, theirs_kw, need_weights=False, seed=5)
    report.check(TOL)
    assert "output[1]" not in report.diffs


def test_weights_shapes_and_rows():
    ours, _ = _pair(4, seed=3)
    x = _rand(B, S, D, seed=4)
    keep = padding_mask(LENGTHS, S)
    _, avg = ours(x, key_padding_mask=keep, causal=True, need_weights=True)
    _, per_head = ours(x, key_padding_mask=keep, causal=True, need_weights=True, average_weights=False)
    assert avg.shape == (B, S, S) and per_head.shape == (B, 4, S, S)
    torch.testing.assert_close(per_head.mean(1), avg, atol=1e-15, rtol=0)
    torch.testing.assert_close(per_head.sum(-1), torch.ones(B, 4, S, dtype=f64), atol=1e-14, rtol=0)
    allowed = (causal_mask(S)[None] & keep[:, None, :])[:, None]  # (B, 1, S, S)
    assert bool((per_head.masked_select(~allowed) == 0).all())
    assert bool((per_head.masked_select(allowed.expand_as(per_head)) > 0).all())


# -- from_torch / to_torch ---------------------------------------------------------------


@pytest.mark.parametrize("module_kw", [{}, {"bias": False}, {"kdim": 3, "vdim": 5}], ids=["bias", "no-bias", "kdim"])
def test_to_torch_round_trip(module_kw):
    ours, theirs = _pair(2, seed=7, **module_kw)
    back = ours.to_torch()
    assert isinstance(back, nn.MultiheadAttention) and back.batch_first
    assert back.state_dict().keys() == theirs.state_dict().keys()
    for k, v in theirs.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    cross = "kdim" in module_kw
    # and a module built by seqlab maps to PyTorch too
    fresh = _randomize(MultiHeadAttention(ours.config).to(f64), seed=8)
    _parity(fresh, fresh.to_torch(), cross, {}, {}, seed=8).check(TOL)


def test_from_torch_config():
    theirs = nn.MultiheadAttention(12, 3, kdim=4, vdim=5, bias=False, dropout=0.25, batch_first=True)
    c = MultiHeadAttention.from_torch(theirs).config
    assert (c.d_model, c.num_heads, c.head_dim, c.kdim, c.vdim, c.bias, c.dropout) == (12, 3, 4, 4, 5, False, 0.25)
    assert MultiHeadAttention.from_torch(theirs, fused=True).config.fused


def test_from_torch_rejects_what_it_cannot_map():
    with pytest.raises(ValueError, match=r"module: expected batch_first=True, received batch_first=False"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2))
    with pytest.raises(ValueError, match=r"module: expected add_bias_kv=False and add_zero_attn=False.*"
                                         r"received add_bias_kv=True"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, add_bias_kv=True, batch_first=True))
    with pytest.raises(ValueError, match=r"module: expected a torch.nn.MultiheadAttention, received Linear"):
        MultiHeadAttention.from_torch(nn.Linear(8, 8))


# -- KV cache -----------------------------------------------------------------------------


def _run_incremental(m, x, chunks, key_padding_mask=None, **kw):
    """Feed x (B, T, D) through a KVCache in chunks of the given sizes; returns the
    concatenated outputs (B, T, D)."""
    cache, outs, start = KVCache(), [], 0
    for n in chunks:
        kpm = None if key_padding_mask is None else key_padding_mask[:, : start + n]  # the T_past + S keys
        out, _ = m(x[:, start : start + n], causal=True, cache=cache, key_padding_mask=kpm, **kw)
        outs.append(out)
        start += n
        assert cache.length == start
    assert start == x.shape[1]
    return torch.cat(outs, dim=1)  # (B, T, D)


@pytest.mark.parametrize("fused", [False, True], ids=["explicit", "fused"])
@pytest.mark.parametrize("padding", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("chunks", [[1] * 7, [3, 1, 3], [2, 5], [7]], ids=["steps", "3-1-3", "2-5", "whole"])
def test_kv_cache_equals_full_causal_pass(chunks, padding, fused):
    """Outputs and the gradients w.r.t. the input and every parameter, 1e-10."""
    ours, _ = _pair(2, seed=20, fused=fused)
    kpm = padding_mask(MEMORY_LENGTHS, T) if padding else None
    report = module_parity(
        ours, copy.deepcopy(ours), {"x": _rand(B, T, D, seed=21)}, map_from_torch=_identity,
        run_ours=lambda m, x: _run_incremental(m, x, chunks, kpm),
        run_theirs=lambda m, x: m(x, causal=True, key_padding_mask=kpm)[0])
    report.check(TOL)


def test_kv_cache_weights_cover_the_cached_keys():
    ours, _ = _pair(2, seed=22)
    x = _rand(B, T, D, seed=23)
    _, full = ours(x, causal=True, need_weights=True, average_weights=False)  # (B, h, T, T)
    cache = KVCache()
    ours(x[:, :4], causal=True, cache=cache)
    _, w = ours(x[:, 4:], causal=True, cache=cache, need_weights=True, average_weights=False)
    assert w.shape == (B, 2, 3, T)
    torch.testing.assert_close(w, full[:, :, 4:], atol=TOL, rtol=0)
    cache.reset()
    assert cache.length == 0 and cache.k is None


def test_kv_cache_bad_use():
    ours, _ = _pair(2, seed=24)
    x = _rand(B, T, D, seed=25)
    cache = KVCache()
    ours(x[:, :2], causal=True, cache=cache)
    with pytest.raises(ValueError, match=r"cache: expected keys of shape \(2, 2, T_past, 4\).*"
                                         r"received shape \(3, 2, 2, 4\)"):
        ours(x[:2, 2:3], causal=True, cache=cache)  # another batch size
    with pytest.raises(ValueError, match=r"cache: expected None for cross-attention"):
        ours(x, x, x, cache=cache)
    with pytest.raises(ValueError, match=r"cache: expected a KVCache, received dict"):
        ours(x, cache={})
    # with 2 cached positions and 1 new query there are T = 3 keys
    with pytest.raises(ValueError, match=r"key_padding_mask: expected a shape that broadcasts to "
                                         r"\(batch, T keys\) = \(3, 3\), received shape \(3, 2\)"):
        ours(x[:, 2:3], causal=True, cache=cache, key_padding_mask=torch.ones(3, 2, dtype=torch.bool))


# -- the fused path ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["none", "causal", "padding", "causal+padding", "float-mask", "cross"])
def test_fused_and_explicit_paths_agree(kind):
    explicit = _randomize(MultiHeadAttention(d_model=D, num_heads=2).to(f64), seed=30)
    fused = MultiHeadAttention(dataclasses.replace(explicit.config, fused=True)).to(f64)
    fused.load_state_dict(explicit.state_dict())
    kw = {"causal": kind.startswith("causal")}
    if "padding" in kind:
        kw["key_padding_mask"] = padding_mask(LENGTHS, S)
    if kind == "float-mask":
        kw["attn_mask"] = _rand(B, 1, S, S, seed=31)
    inputs = {"x": _rand(B, S, D, seed=32)}
    if kind == "cross":
        inputs["memory"] = _rand(B, T, D, seed=33)
        kw["key_padding_mask"] = padding_mask(MEMORY_LENGTHS, T)

    def run(m, x, memory=None):
        return m(x, memory, memory, **kw)

    report = module_parity(fused, explicit, inputs, map_from_torch=_identity, run_ours=run, run_theirs=run)
    report.check(TOL)


def test_fused_flag_routes_to_torch_sdpa(monkeypatch):
    """fused=True calls F.scaled_dot_product_attention, except for a call that asks for
    the weights; fused=False never calls it."""
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    explicit, _ = _pair(2, seed=35)
    fused, _ = _pair(2, seed=35, fused=True)
    x = _rand(B, S, D, seed=36)
    fused(x, causal=True)
    assert len(calls) == 1
    _, w = fused(x, causal=True, need_weights=True)
    assert len(calls) == 1 and w.shape == (B, S, S)
    explicit(x, causal=True)
    assert len(calls) == 1


def test_fused_falls_back_to_explicit_for_weights():
    """need_weights with fused=True: the weights come from the explicit path and agree
    with those of the explicit module and of PyTorch."""
    ours, theirs = _pair(2, seed=34, fused=True)
    assert ours.config.fused
    report = _parity(ours, theirs, False, {"causal": True, "key_padding_mask": padding_mask(LENGTHS, S)},
                     {"attn_mask": ~causal_mask(S), "key_padding_mask": ~padding_mask(LENGTHS, S)},
                     average=False, seed=34)
    report.check(TOL)
    assert "output[1]" in report.diffs


# -- bad input -------------------------------------------------------------------------------


def test_d_model_not_divisible_by_num_heads():
    with pytest.raises(ValueError, match=r"d_model: expected a multiple of num_heads = 3, received d_model = 10"):
        MultiHeadAttentionConfig(d_model=10, num_heads=3)
    with pytest.raises(ValueError, match=r"d_model: expected a multiple of num_heads = 4, received d_model = 6"):
        MultiHeadAttention(d_model=6, num_heads=4)


def test_bad_inputs_name_expected_and_received():
    ours, _ = _pair(2, seed=40)
    x = _rand(B, S, D, seed=41)
    with pytest.raises(ValueError, match=r"attn_mask: expected a shape that broadcasts to \(B, h, S, T\) = "
                                         r"\(3, 2, 5, 5\), received shape \(5, 4\)"):
        ours(x, attn_mask=torch.ones(S, S - 1, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"attn_mask: expected \(S, T\) = \(5, 5\).*received shape \(4, 5, 5\)"):
        ours(x, attn_mask=torch.ones(4, S, S, dtype=torch.bool))  # neither B*h = 6 nor B = 3 nor 1
    with pytest.raises(ValueError, match=r"attn_mask: expected .*received shape \(3, 3, 5, 5\)"):
        ours(x, attn_mask=torch.ones(B, 3, S, S, dtype=torch.bool))  # 3 heads, the module has 2
    with pytest.raises(ValueError, match=r"key_padding_mask: expected a shape that broadcasts to "
                                         r"\(batch, T keys\) = \(3, 5\), received shape \(3, 6\)"):
        ours(x, key_padding_mask=torch.ones(B, S + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"key_padding_mask: expected a 2-D tensor \(batch, T keys\) = \(3, 5\), "
                                         r"received shape \(5\)"):
        ours(x, key_padding_mask=torch.ones(S, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"key_padding_mask: expected a bool tensor .*received dtype torch.int64"):
        ours(x, key_padding_mask=torch.ones(B, S, dtype=torch.long))
    with pytest.raises(ValueError, match=r"query: expected d_model = 8 features in the last axis of "
                                         r"\(batch, time, features\), received shape \(3, 5, 7\)"):
        ours(x[..., :7])
    with pytest.raises(ValueError, match=r"query: expected a 3-D tensor \(batch, time, features\), "
                                         r"received shape \(5, 8\)"):
        ours(x[0])
    with pytest.raises(ValueError, match=r"query: expected dtype torch.float64 \(the model's parameters\), "
                                         r"received dtype torch.float32"):
        ours(x.float())
    mem = _rand(B, T, D, seed=42)
    with pytest.raises(ValueError, match=r"key: expected shape \(3, T, 8\) = \(batch as query, time, kdim\), "
                                         r"received shape \(2, 7, 8\)"):
        ours(x, mem[:2], mem[:2])
    with pytest.raises(ValueError, match=r"value: expected T = 7 positions \(as key\), received shape \(3, 6, 8\)"):
        ours(x, mem, mem[:, :6])
    with pytest.raises(ValueError, match=r"key, value: expected both or neither"):
        ours(x, mem)
    with pytest.raises(ValueError, match=r"causal: expected True or False, received 1"):
        ours(x, causal=1)
