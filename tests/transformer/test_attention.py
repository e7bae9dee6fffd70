"""Scaled dot-product attention and its masks: parity with F.scaled_dot_product_attention
(forward and gradients, float64, 1e-10), the fused path, causal and padding masks, fully
masked rows, and input validation."""

import math

import pytest
import torch
import torch.nn.functional as F

from seqlab.transformer import causal_mask, padding_mask, scaled_dot_product_attention

TOL = 1e-10
f64 = torch.float64


def _qkv(shape_q, T, d=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    *lead, S, m = shape_q
    d = m if d is None else d
    q = torch.randn(*lead, S, m, generator=gen, dtype=f64)
    k = torch.randn(*lead, T, m, generator=gen, dtype=f64)
    v = torch.randn(*lead, T, d, generator=gen, dtype=f64)
    return q, k, v


def _grads(fn, q, k, v, seed=1):
    """Output of fn(q, k, v) and its gradients for a fixed random cotangent."""
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out = fn(q, k, v)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    grads = torch.autograd.grad((out * g).sum(), (q, k, v))
    return out.detach(), grads


def _assert_same(a, b, tol=TOL):
    (out_a, grads_a), (out_b, grads_b) = a, b
    assert (out_a - out_b).abs().max() <= tol
    for name, ga, gb in zip("qkv", grads_a, grads_b):
        assert (ga - gb).abs().max() <= tol, name


def _random_bool_mask(S, T, lead=(), seed=2):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(*lead, S, T, generator=gen) < 0.6
    mask[..., 0] = True  # every query sees at least one key
    return mask


# -- parity with PyTorch ----------------------------------------------------------------

MASKS = ["none", "bool", "bool-broadcast", "float", "causal", "causal+bool"]


@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (3, 5, 4)], ids=["4d", "3d"])
def test_explicit_matches_torch_sdpa(kind, shape):
    T = 5  # S == T: PyTorch's is_causal agrees with ours
    q, k, v = _qkv(shape, T, d=6)
    lead, S = shape[:-2], shape[-2]
    mask, causal, their_mask, their_causal = None, False, None, False
    if kind == "bool":
        mask = their_mask = _random_bool_mask(S, T, lead)
    elif kind == "bool-broadcast":
        mask = their_mask = _random_bool_mask(S, T)  # (S, T) for every item and head
    elif kind == "float":
        mask = their_mask = torch.randn(S, T, dtype=f64, generator=torch.Generator().manual_seed(3))
    elif kind == "causal":
        causal = their_causal = True
    elif kind == "causal+bool":
        mask = _random_bool_mask(S, T, lead)
        causal = True
        their_mask = mask & torch.ones(S, T, dtype=torch.bool).tril()
    ours = _grads(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask=mask, causal=causal), q, k, v)
    theirs = _grads(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=their_mask,
                                                                   is_causal=their_causal), q, k, v)
    _assert_same(ours, theirs)


def test_causal_with_fewer_queries_is_aligned_to_the_last_keys():
    """S < T: the queries are the last S positions (lower-right alignment), which PyTorch
    gets from an explicit mask; its is_causal=True aligns to the upper left."""
    q, k, v = _qkv((2, 3, 4), T=7)
    ours = _grads(lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=True), q, k, v)
    mask = torch.ones(3, 7, dtype=torch.bool).tril(diagonal=7 - 3)
    theirs = _grads(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), q, k, v)
    _assert_same(ours, theirs)


def test_scale_argument():
    q, k, v = _qkv((2, 4, 3), T=5)
    ours = _grads(lambda q, k, v: scaled_dot_product_attention(q, k, v, scale=0.3), q, k, v)
    theirs = _grads(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=0.3), q, k, v)
    _assert_same(ours, theirs)


def test_lecture_formula_by_hand():
    """context_s = sum_t softmax_t(a^(q)_s . a^(k)_t / sqrt(m)) a^(v)_t, one query at a time."""
    q, k, v = _qkv((1, 3, 4), T=5, d=2)
    out, w = scaled_dot_product_attention(q, k, v, return_weights=True)
    for s in range(3):
        scores = [float(q[0, s] @ k[0, t]) / math.sqrt(4) for t in range(5)]
        e = [math.exp(x) for x in scores]
        weights = [x / sum(e) for x in e]
        context = sum(weights[t] * v[0, t] for t in range(5))
        assert torch.allclose(w[0, s], torch.tensor(weights, dtype=f64), atol=1e-14, rtol=0)
        assert torch.allclose(out[0, s], context, atol=1e-14, rtol=0)


@pytest.mark.parametrize("kind", ["none", "bool", "float", "causal", "causal-short"])
def test_fused_and_explicit_paths_agree(kind):
    S, T = (3, 6) if kind == "causal-short" else (5, 5)
    q, k, v = _qkv((2, 2, S, 4), T)
    mask = {"bool": _random_bool_mask(S, T, (2, 1)),
            "float": torch.randn(S, T, dtype=f64, generator=torch.Generator().manual_seed(4))}.get(kind)
    causal = kind.startswith("causal")
    runs = [_grads(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask=mask, causal=causal, fused=fused),
                   q, k, v) for fused in (False, True)]
    _assert_same(*runs)


def test_weights_are_returned_and_make_the_output():
    q, k, v = _qkv((2, 4, 3), T=6)
    mask = _random_bool_mask(4, 6, (2,))
    out, w = scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
    assert w.shape == (2, 4, 6)
    assert torch.allclose(w.sum(-1), torch.ones(2, 4, dtype=f64), atol=1e-14)
    assert bool((w[~mask] == 0).all())
    assert torch.allclose(out, w @ v, atol=1e-14)


def test_dropout_only_while_training():
    q, k, v = _qkv((2, 4, 3), T=6)
    plain = scaled_dot_product_attention(q, k, v)
    assert torch.equal(scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=False), plain)
    torch.manual_seed(0)
    out, w = scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=True, return_weights=True)
    assert not torch.allclose(out, plain)
    kept = w[w != 0]
    assert kept.numel() < w.numel()  # some weights dropped, the others scaled by 1/(1 - p)
    assert torch.allclose(out, w @ v, atol=1e-14)


# -- masks ---------------------------------------------------------------------------------


def test_causal_mask_values():
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    # two new queries after three cached positions: query s sees t <= s + 3
    assert torch.equal(causal_mask(2, 5), torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool))
    # offset 0: PyTorch's upper-left alignment
    assert torch.equal(causal_mask(2, 4, offset=0), torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0]], dtype=torch.bool))


def test_padding_mask_values():
    m = padding_mask([3, 1, 4], 4)
    assert torch.equal(m, torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool))
    assert torch.equal(padding_mask(torch.tensor([2]), 3), torch.tensor([[True, True, False]]))


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("mask_type", ["bool", "float"])
def test_causal_mask_never_lets_s_see_the_future(fused, mask_type):
    """d context_s / d (k_t, v_t) is exactly 0 for t > s, and not 0 for t <= s."""
    S = T = 5
    q, k, v = _qkv((1, 2, S, 3), T)
    for s in range(S):
        kk, vv = k.clone().requires_grad_(True), v.clone().requires_grad_(True)
        if mask_type == "bool":
            out = scaled_dot_product_attention(q, kk, vv, causal=True, fused=fused)
        else:
            additive = torch.zeros(S, T, dtype=f64).masked_fill(~causal_mask(S), float("-inf"))
            out = scaled_dot_product_attention(q, kk, vv, mask=additive, fused=fused)
        gk, gv = torch.autograd.grad(out[..., s, :].sum(), (kk, vv))
        assert bool((gk[..., s + 1 :, :] == 0).all()) and bool((gv[..., s + 1 :, :] == 0).all())
        assert bool((gv[..., : s + 1, :] != 0).all())


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("mask_type", ["bool", "float"])
def test_fully_masked_row_gives_zeros_not_nan(fused, mask_type):
    q, k, v = _qkv((2, 3, 4), T=5)
    keep = torch.ones(2, 3, 5, dtype=torch.bool)
    keep[0, 1] = False  # item 0, query 1 sees no key
    mask = keep if mask_type == "bool" else torch.zeros(2, 3, 5, dtype=f64).masked_fill(~keep, float("-inf"))
    q, k, v = (t.requires_grad_(True) for t in (q, k, v))
    out = scaled_dot_product_attention(q, k, v, mask=mask, fused=fused)
    assert bool((out[0, 1] == 0).all())
    assert bool(torch.isfinite(out).all())
    gq, gk, gv = torch.autograd.grad(out.sum(), (q, k, v))
    assert all(bool(torch.isfinite(g).all()) for g in (gq, gk, gv))
    assert bool((gq[0, 1] == 0).all())
    # the other rows are untouched
    ref = scaled_dot_product_attention(q[1:], k[1:], v[1:])
    assert torch.allclose(out[1:], ref, atol=1e-14)
    if not fused:
        _, w = scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
        assert bool((w[0, 1] == 0).all())


def test_empty_causal_rows_when_more_queries_than_keys():
    """S > T with the default alignment: the first S - T queries see nothing -> zeros."""
    q, k, v = _qkv((1, 4, 2), T=2)
    out = scaled_dot_product_attention(q, k, v, causal=True)
    assert bool((out[0, :2] == 0).all()) and bool((out[0, 2:] != 0).all())


# -- bad input ------------------------------------------------------------------------------


def test_bad_inputs_name_expected_and_received():
    q, k, v = _qkv((2, 3, 4), T=5)
    with pytest.raises(ValueError, match=r"k: expected last dim m = 4 .*received shape \(2, 5, 3\)"):
        scaled_dot_product_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match=r"v: expected T = 5 positions .*received shape \(2, 4, 4\)"):
        scaled_dot_product_attention(q, k, v[:, :4])
    with pytest.raises(ValueError, match=r"mask: expected a shape that broadcasts to \(\.\.\., S, T\) = "
                                         r"\(2, 3, 5\), received shape \(3, 4\)"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask: expected .*broadcasts.*received shape \(4, 2, 3, 5\)"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(4, 2, 3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask: expected a bool tensor .*received dtype torch.int64"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"mask: expected no NaN"):
        scaled_dot_product_attention(q, k, v, mask=torch.full((3, 5), float("nan"), dtype=f64))
    bad = q.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"q: expected finite values, received 1 NaN"):
        scaled_dot_product_attention(bad, k, v)
    with pytest.raises(ValueError, match=r"k: expected the leading dims of q \(2,\).*received shape \(5, 4\)"):
        scaled_dot_product_attention(q, k[0], v)
    with pytest.raises(ValueError, match=r"q: expected at least 2 dims.*received shape \(4\)"):
        scaled_dot_product_attention(q[0, 0], k[0, 0], v[0, 0])
    with pytest.raises(ValueError, match=r"k: expected dtype torch.float64.*received dtype torch.float32"):
        scaled_dot_product_attention(q, k.float(), v)
    with pytest.raises(ValueError, match=r"return_weights: expected False when fused=True.*received True"):
        scaled_dot_product_attention(q, k, v, fused=True, return_weights=True)
    with pytest.raises(ValueError, match=r"dropout_p: expected a number < 1.0, received 1.0"):
        scaled_dot_product_attention(q, k, v, dropout_p=1.0)


def test_bad_mask_helper_arguments():
    with pytest.raises(ValueError, match=r"S: expected an integer >= 1, received 0"):
        causal_mask(0)
    with pytest.raises(ValueError, match=r"lengths: expected every length <= T = 3, received maximum 4"):
        padding_mask([2, 4], 3)
    with pytest.raises(ValueError, match=r"lengths: expected every length >= 0, received minimum -1"):
        padding_mask([-1], 3)
    with pytest.raises(ValueError, match=r"lengths: expected a 1-D integer tensor.*received shape \(2\), "
                                         r"dtype torch.float32"):
        padding_mask(torch.tensor([1.0, 2.0]), 3)
