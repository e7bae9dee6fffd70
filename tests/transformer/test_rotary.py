"""Rotary positions, QK-norm, the MLP variants and the fast paths of the blocks (issue 17)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seqlab.transformer import BlockConfig, LayerNorm, MultiHeadAttention, TransformerBlock
from seqlab.transformer.rotary import apply_rotary, rms_normalise, rotary, rotary_angles

f64 = torch.float64


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=f64)


# -- rotary ------------------------------------------------------------------------------


def test_rotary_by_hand():
    """R_p [u_i, u_(i+m/2)] = [u_i cos(p theta_i) - u_(i+m/2) sin, u_i sin + u_(i+m/2) cos]."""
    m, base, offset = 6, 100.0, 3
    x = _rand(1, 4, m, seed=1)
    y = rotary(x, offset=offset, base=base)
    for t in range(4):
        p = offset + t
        for i in range(m // 2):
            theta = base ** (-2 * i / m)
            a, b = float(x[0, t, i]), float(x[0, t, i + m // 2])
            assert abs(float(y[0, t, i]) - (a * math.cos(p * theta) - b * math.sin(p * theta))) < 1e-12
            assert abs(float(y[0, t, i + m // 2]) - (a * math.sin(p * theta) + b * math.cos(p * theta))) < 1e-12


def test_rotary_scores_depend_only_on_relative_position():
    """(R_s q) . (R_t k) = q . R_(t-s) k: shifting both positions by any amount keeps the score."""
    m = 8
    q, k = _rand(m, seed=2), _rand(m, seed=3)

    def score(s, t):
        rq = apply_rotary(q.expand(s + 1, m).clone(), 0)[s]  # R_s q
        rk = apply_rotary(k.expand(t + 1, m).clone(), 0)[t]  # R_t k
        return float(rq @ rk)

    for s, t in ((0, 0), (2, 5), (7, 3)):
        for shift in (1, 4, 11):
            assert abs(score(s, t) - score(s + shift, t + shift)) < 1e-12
    assert abs(score(2, 5) - score(2, 6)) > 1e-6  # the distance itself matters
    # a rotation keeps the norm
    x = _rand(5, m, seed=4)
    assert torch.allclose(apply_rotary(x, 9).norm(dim=-1), x.norm(dim=-1), atol=1e-12, rtol=0)


def test_rotary_angles_and_bad_input():
    cos, sin = rotary_angles(torch.arange(3, dtype=f64), 4, base=10000.0)
    assert cos.shape == (3, 2) and torch.allclose(cos ** 2 + sin ** 2, torch.ones(3, 2, dtype=f64))
    with pytest.raises(ValueError, match=r"x: expected \(\.\.\., T, m\) with an even m"):
        rotary(_rand(2, 3))
    with pytest.raises(ValueError, match=r"offset"):
        rotary(_rand(2, 4), offset=-1)
    with pytest.raises(ValueError, match=r"rotary: expected an even head width"):
        MultiHeadAttention(d_model=6, num_heads=2, rotary=True)


# -- QK-norm -----------------------------------------------------------------------------


def test_rms_normalise_by_hand():
    x, g = _rand(3, 5, seed=5), _rand(5, seed=6)
    y = rms_normalise(x, g, eps=1e-6)
    for r in range(3):
        rms = math.sqrt(sum(float(v) ** 2 for v in x[r]) / 5 + 1e-6)
        for j in range(5):
            assert abs(float(y[r, j]) - float(g[j]) * float(x[r, j]) / rms) < 1e-12


def _attention_by_hand(att: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """The attention with rotary and QK-norm written out head by head, causal."""
    c = att.config
    B, T, D = x.shape
    h, m = c.num_heads, c.head_dim
    q, k, v = x @ att.w_q.T, x @ att.w_k.T, x @ att.w_v.T  # (B, T, D)
    out = torch.zeros(B, T, D, dtype=x.dtype)
    for j in range(h):
        qj, kj, vj = (z[..., j * m:(j + 1) * m] for z in (q, k, v))  # (B, T, m)
        if c.qk_norm:
            qj = att.g_q * qj / torch.sqrt(qj.pow(2).mean(-1, keepdim=True) + 1e-6)
            kj = att.g_k * kj / torch.sqrt(kj.pow(2).mean(-1, keepdim=True) + 1e-6)
        if c.rotary:
            qj, kj = apply_rotary(qj, 0, c.rope_base), apply_rotary(kj, 0, c.rope_base)
        scores = qj @ kj.transpose(1, 2) / math.sqrt(m)  # (B, T, T)
        scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
        out[..., j * m:(j + 1) * m] = torch.softmax(scores, -1) @ vj
    return out @ att.w_o.T


@pytest.mark.parametrize("fused", [False, True], ids=["explicit", "fused"])
@pytest.mark.parametrize("rotary_on, qk_norm", [(True, False), (False, True), (True, True)])
def test_attention_with_rotary_and_qk_norm_against_hand_computation(fused, rotary_on, qk_norm):
    torch.manual_seed(0)
    att = MultiHeadAttention(d_model=8, num_heads=2, bias=False, fused=fused, rotary=rotary_on,
                             qk_norm=qk_norm).to(f64)
    if qk_norm:
        with torch.no_grad():
            att.g_q.copy_(1 + 0.3 * _rand(4, seed=7))
            att.g_k.copy_(1 + 0.3 * _rand(4, seed=8))
    x = _rand(2, 5, 8, seed=9)
    out, _ = att(x, causal=True)
    assert torch.allclose(out, _attention_by_hand(att, x), atol=1e-12, rtol=0)


def test_rotary_kv_cache_gives_the_full_pass():
    """Keys are rotated at their own positions before they are cached: decoding one position
    at a time gives what the whole sequence gives."""
    torch.manual_seed(1)
    att = MultiHeadAttention(d_model=8, num_heads=2, fused=True, rotary=True, qk_norm=True).to(f64)
    x = _rand(2, 6, 8, seed=10)
    full, _ = att(x, causal=True)
    from seqlab.transformer import KVCache
    cache = KVCache()
    steps = [att(x[:, :3], causal=True, cache=cache)[0]] + [att(x[:, t:t + 1], causal=True, cache=cache)[0]
                                                            for t in range(3, 6)]
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-12, rtol=0)


def test_rotary_and_qk_norm_refuse_cross_attention_and_to_torch():
    att = MultiHeadAttention(d_model=8, num_heads=2, rotary=True)
    with pytest.raises(ValueError, match=r"key: expected None: rotary and qk_norm are for self-attention"):
        att(torch.zeros(1, 2, 8), torch.zeros(1, 3, 8), torch.zeros(1, 3, 8))
    with pytest.raises(ValueError, match=r"to_torch: expected an attention without rotary or qk_norm"):
        att.to_torch()


# -- the MLP variants --------------------------------------------------------------------


def _block(activation, seed=0, **kw):
    torch.manual_seed(seed)
    return TransformerBlock(BlockConfig(d_model=6, num_heads=2, d_ff=5, activation=activation, **kw)).to(f64)


def test_relu2_mlp_by_hand():
    block = _block("relu2")
    x = _rand(2, 3, 6, seed=11)
    u = x @ block.w_1.T + block.b_1
    want = torch.where(u > 0, u * u, torch.zeros_like(u)) @ block.w_2.T + block.b_2
    assert torch.allclose(block.mlp(x), want, atol=1e-12, rtol=0)


def test_swiglu_mlp_by_hand():
    block = _block("swiglu")
    assert block.w_3.shape == (5, 6) and block.b_3.shape == (5,)
    x = _rand(2, 3, 6, seed=12)
    u = x @ block.w_1.T + block.b_1
    gate = x @ block.w_3.T + block.b_3
    want = (u / (1 + torch.exp(-u)) * gate) @ block.w_2.T + block.b_2  # silu(u) = u sigma(u)
    assert torch.allclose(block.mlp(x), want, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match=r"to_torch: expected a block with gelu or relu"):
        block.to_torch()


# -- the fast paths agree with the explicit ones -----------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_fused_layer_norm_agrees(bias):
    explicit, fused = LayerNorm(7, bias=bias).to(f64), LayerNorm(7, bias=bias, fused=True).to(f64)
    with torch.no_grad():
        for ln in (explicit, fused):
            ln.gamma.copy_(_rand(7, seed=13))
            if bias:
                ln.beta.copy_(_rand(7, seed=14))
    x = (3 + 2 * _rand(4, 7, seed=15)).requires_grad_()
    y1, y2 = explicit(x), fused(x)
    assert torch.allclose(y1, y2, atol=1e-12, rtol=0)
    g1 = torch.autograd.grad(y1.sin().sum(), [x, explicit.gamma])
    g2 = torch.autograd.grad(y2.sin().sum(), [x, fused.gamma])
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_fused_block_agrees_with_explicit_block(bias):
    """fused=True (one q/k/v product, SDPA, F.layer_norm) against fused=False, forward and gradients."""
    explicit = _block("gelu", seed=3, bias=bias, causal=True)
    fused = _block("gelu", seed=3, bias=bias, causal=True, fused=True)
    fused.load_state_dict(explicit.state_dict())
    x = _rand(2, 5, 6, seed=16).requires_grad_()
    y1, y2 = explicit(x), fused(x)
    assert torch.allclose(y1, y2, atol=1e-12, rtol=0)
    g1 = torch.autograd.grad(y1.sin().sum(), [x, *explicit.parameters()])
    g2 = torch.autograd.grad(y2.sin().sum(), [x, *fused.parameters()])
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)

