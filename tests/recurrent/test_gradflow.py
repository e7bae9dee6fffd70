"""`seqlab gradflow`: vanishing and exploding gradients, measured.

The expected values come from the math, not from the code under test: the bound
||da_T/da_t||_2 <= s^(T-t) for a tanh RNN whose w^(a) has spectral norm s, the exact
power law s^(T-t) of a ReLU RNN that stays in its linear region, the chain rule
dC/da_t = dC/da_T . da_T/da_t, and an end-to-end autograd Jacobian of the unrolled map
a_t -> a_T.

The text, JSON and plot of the result are tested in test_gradflow_report.py and
tests/viz/test_recurrent_plots.py; the clipping demonstration in test_clipping.py.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from seqlab.recurrent import gradflow as gf
from seqlab.recurrent.network import SequenceNetwork

CELLS = ("rnn", "lstm", "gru")


def _unroll(net, x, t, a_t):
    """a_T as a function of a_t, by stepping the layer's readable path from t to T."""
    step, _, _ = gf.state_step(net)
    a = a_t[None]
    for u in range(t, x.shape[1]):
        a = step(a, x[:1, u])
    return a[0]


# --------------------------------------------------------------------------- the math
@pytest.mark.parametrize("scale", [0.5, 0.9])
def test_rnn_below_one_vanishes_geometrically(scale):
    # tanh' <= 1 and ||w_a||_2 = s, so every per-step Jacobian diag(g') w_a has norm <= s
    # and ||da_T/da_t||_2 <= s^(T-t): a bound every sequence must satisfy, not a fit.
    T = 101
    net = gf.scaled_network("rnn", scale=scale, hidden_size=8, symbols=4, seed=3)
    x, _ = gf.first_symbol_task(4, T, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    logs = gf.jacobian_log_norms(net, x)  # (B, T), index t-1
    k = torch.arange(T - 1, -1, -1, dtype=torch.float64)  # steps back T - t
    assert bool((logs <= k * math.log10(scale) + 1e-9).all())
    assert torch.allclose(logs[:, T - 1], torch.zeros(4, dtype=torch.float64))  # da_T/da_T = I

    r = gf.gradflow(cells=("rnn",), scales=(scale,), length=T, hidden_size=8, batch_size=4, repeats=1, seed=3)
    c = r.curve("rnn", scale)
    for q in ("grad", "jac"):
        assert c.slope(q) < 0
        assert c.slope(q) <= math.log10(scale) + 1e-9  # no slower than s per step
        assert c.at(q, 50) / c.at(q, 0) <= scale**50
        assert r.summary[("grad", "jac").index(q)]["verdict"] == "vanishes"


@pytest.mark.parametrize("scale", [1.5, 2.0])
def test_relu_rnn_in_its_linear_region_explodes_exactly(scale):
    # A ReLU is the identity on positive inputs.  With w_a = s x (a permutation matrix),
    # w_x >= 0 and b_a > 0, every pre-activation w_a a + w_x x + b_a is > 0 (a, x >= 0), so
    # da_t/da_{t-1} = w_a exactly and da_T/da_t = w_a^(T-t), an orthogonal matrix times
    # s^(T-t): the norm is s^(T-t) and the fitted slope is log10(s).  (With tanh the growth
    # is NOT a property: saturation makes g' -> 0 and can cancel the s^(T-t) growth.)
    T, H = 110, 6
    net = gf.scaled_network("rnn", scale=scale, hidden_size=H, symbols=3, seed=1, nonlinearity="relu")
    layer = net.core.layers[0]
    perm = torch.eye(H, dtype=torch.float64)[torch.randperm(H, generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        layer.w_a.copy_(scale * perm)
        layer.w_x.abs_()
        layer.b_a.abs_().add_(0.01)
    x, _ = gf.first_symbol_task(3, T, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    logs = gf.jacobian_log_norms(net, x)
    k = torch.arange(T - 1, -1, -1, dtype=torch.float64)
    assert torch.allclose(logs, (k * math.log10(scale)).expand_as(logs), rtol=0, atol=1e-9)
    curve = (10.0 ** logs.mean(0)).tolist()
    assert gf.fit_slope(curve) == pytest.approx(math.log10(scale), abs=1e-9)
    assert gf.fit_slope(curve) > 0


def test_lstm_and_gru_keep_the_gradient_the_rnn_loses():
    # Fair setting: every recurrent matrix has spectral norm 1 (s = 1, the RNN's best: below
    # it vanishes, above it explodes); the gated cells start with the memory path open
    # (forget bias 4: a^(f), 1 - a^(z) ~ 0.98).  At t = T - 100 the gated cells' gradient
    # is orders of magnitude above the RNN's.
    r = gf.gradflow(cells=CELLS, scales=(1.0,), length=101, hidden_size=16, batch_size=8, repeats=1)
    for q in ("grad", "jac"):
        rnn = r.curve("rnn", 1.0).at(q, 100)
        assert rnn < 1e-3
        for cell in ("lstm", "gru"):
            assert r.curve(cell, 1.0).at(q, 100) >= 100 * rnn, (cell, q)


def test_half_open_gates_do_not_help():
    # The models' default gate biases (~0: gates about half open) multiply the memory by
    # ~0.5 per step: then the gated cells' gradients vanish at least as fast as the RNN's.
    # The additive path only keeps the gradient when the gate keeps the memory.
    r = gf.gradflow(cells=CELLS, scales=(1.0,), length=101, hidden_size=16, batch_size=8, repeats=1,
                    forget_bias=None)
    assert r.forget_bias is None
    for q in ("grad", "jac"):
        rnn = r.curve("rnn", 1.0).at(q, 100)
        for cell in ("lstm", "gru"):
            assert r.curve(cell, 1.0).at(q, 100) <= rnn, (cell, q)


@pytest.mark.parametrize("cell", CELLS)
def test_jacobian_product_matches_end_to_end_autograd(cell):
    T = 6
    net = gf.scaled_network(cell, scale=1.3, hidden_size=3, symbols=4, seed=5)
    x, y = gf.first_symbol_task(2, T, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    tr = gf.trace(net, x, y)
    P = gf.state_jacobians(net, x, tr.states)  # (B, T, D, D)
    D = 6 if cell == "lstm" else 3
    assert P.shape == (2, T, D, D)
    for i in range(2):
        for t in range(1, T + 1):
            xi = x[i:i + 1]
            ref = torch.autograd.functional.jacobian(lambda a: _unroll(net, xi, t, a), tr.states[i, t])
            assert torch.allclose(P[i, t - 1], ref, rtol=1e-12, atol=1e-14), (i, t)
    # the rescaled log-norm walk gives the spectral norm of the same products
    logs = gf.jacobian_log_norms(net, x, tr.states)
    assert torch.allclose(10.0**logs, torch.linalg.matrix_norm(P, ord=2), rtol=1e-10, atol=0)
    # and recomputing the states gives the same
    assert torch.allclose(gf.jacobian_log_norms(net, x), logs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_state_gradient_is_the_chain_rule_through_the_jacobian(cell):
    # dC/da_t (autograd w.r.t. the per-step states, every path) = dC/da_T . da_T/da_t;
    # and the step-by-step cost equals the network's own loss (a mean over the batch).
    T, B = 9, 3
    net = gf.scaled_network(cell, scale=0.8, hidden_size=4, symbols=5, seed=2)
    x, y = gf.first_symbol_task(B, T, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    tr = gf.trace(net, x, y)
    D = 8 if cell == "lstm" else 4
    assert tr.grads.shape == (B, T, D) and tr.states.shape == (B, T + 1, D)
    P = gf.state_jacobians(net, x, tr.states)
    chain = torch.einsum("bd,btde->bte", tr.grads[:, T - 1], P)
    assert torch.allclose(tr.grads, chain, rtol=1e-10, atol=1e-15)
    loss, _ = net.loss((x, y))
    assert tr.cost == pytest.approx(B * float(loss.detach()), rel=1e-12)
    fused = SequenceNetwork(dataclasses.replace(net.config, fused=True)).double()
    fused.load_state_dict(net.state_dict())
    assert tr.cost == pytest.approx(B * float(fused.loss((x, y))[0].detach()), rel=1e-10)
    if cell == "lstm":  # the output reads a^(h)_T only: dC/da^(c)_T = 0, but earlier cells matter
        assert float(tr.grads[:, T - 1, 4:].abs().max()) == 0.0
        assert float(tr.grads[:, 0, 4:].abs().max()) > 0.0


def test_curves_are_geometric_means_over_sequences_and_draws():
    # gradflow averages log10 of the per-sequence norms over batch_size x repeats
    # sequences (draw r uses seed + r for the weights and the batch)
    r = gf.gradflow(cells=("gru",), scales=(0.7,), length=10, hidden_size=4, batch_size=3, repeats=2, seed=4)
    grad_logs, jac_logs = [], []
    for seed in (4, 5):
        net = gf.scaled_network("gru", scale=0.7, hidden_size=4, symbols=8, seed=seed)
        x, y = gf.first_symbol_task(3, 10, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        tr = gf.trace(net, x, y)
        grad_logs.append(torch.log10(tr.grads.norm(dim=2)))
        jac_logs.append(torch.log10(torch.linalg.matrix_norm(gf.state_jacobians(net, x), ord=2)))
    c = r.curve("gru", 0.7)
    assert c.grad == pytest.approx((10 ** torch.cat(grad_logs).mean(0)).tolist(), rel=1e-10)
    assert c.jac == pytest.approx((10 ** torch.cat(jac_logs).mean(0)).tolist(), rel=1e-10)
    assert c.grad_slope == pytest.approx(gf.fit_slope(c.grad))


def test_scale_sets_every_singular_value():
    for cell, names in gf.RECURRENT.items():
        net = gf.scaled_network(cell, scale=1.7, hidden_size=5, symbols=3, seed=0)
        layer = net.core.layers[0]
        for name in names:
            sv = torch.linalg.svdvals(getattr(layer, name).detach())
            assert torch.allclose(sv, torch.full_like(sv, 1.7), atol=1e-12), (cell, name)
    lstm = gf.scaled_network("lstm", scale=1.0, hidden_size=5, symbols=3, forget_bias=2.5)
    gru = gf.scaled_network("gru", scale=1.0, hidden_size=5, symbols=3, forget_bias=2.5)
    assert bool((lstm.core.layers[0].b_f == 2.5).all()) and bool((gru.core.layers[0].b_z == -2.5).all())
    # deterministic in the seed, and the global random state is untouched
    state = torch.random.get_rng_state()
    a = gf.scaled_network("gru", scale=1.0, hidden_size=4, symbols=3, seed=9)
    b = gf.scaled_network("gru", scale=1.0, hidden_size=4, symbols=3, seed=9)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_fit_slope():
    T = 30
    curve = [0.8 ** (T - t) * 3.0 for t in range(1, T + 1)]  # index t-1, norm 3 * 0.8^(T-t)
    assert gf.fit_slope(curve) == pytest.approx(math.log10(0.8), abs=1e-12)
    assert gf.fit_slope([0.0] * 5 + curve[5:]) == pytest.approx(math.log10(0.8), abs=1e-12)  # zeros left out
    assert math.isnan(gf.fit_slope([0.0, 0.0, 1.0]))
    assert gf.verdict(0.9) == "vanishes" and gf.verdict(1.03) == "explodes" and gf.verdict(1.0) == "kept"


def test_first_symbol_task():
    x, y = gf.first_symbol_task(5, 7, 3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 7, 3) and y.shape == (5,)
    assert torch.equal(x.sum(-1), torch.ones(5, 7))  # one-hot
    assert torch.equal(x[:, 0].argmax(-1), y)  # the target is the symbol at t = 1


# --------------------------------------------------------------------------- the result
@pytest.fixture(scope="module")
def small_result():
    return gf.gradflow(cells=CELLS, scales=(0.5, 1.5), length=12, hidden_size=4, batch_size=2, repeats=2, seed=1)


def test_result_shape(small_result):
    r = small_result
    assert [(c.cell, c.scale) for c in r.curves] == [(c, s) for c in CELLS for s in (0.5, 1.5)]
    for c in r.curves:
        assert len(c.grad) == len(c.jac) == 12
        assert c.jac[-1] == pytest.approx(1.0)  # ||da_T/da_T|| = ||I||
        assert all(v > 0 and math.isfinite(v) for v in c.grad + c.jac)
    assert len(r.summary) == 2 * len(r.curves)
    assert set(r.summary[0]["at"]) == {0, 10}  # T-50, T-100 do not exist for T = 12


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, match", [
    (dict(cells=("lstn",)), "cell: expected one of 'rnn', 'lstm', 'gru'"),
    (dict(cells=()), "cells: expected a non-empty list"),
    (dict(cells=("rnn", "rnn")), "cells: expected each cell once"),
    (dict(scales=(0.0,)), r"scale: expected a number > 0.0, received 0.0"),
    (dict(scales=(-1.0,)), r"scale: expected a number > 0.0, received -1.0"),
    (dict(scales=(float("nan"),)), "scale: expected a number, received nan"),
    (dict(scales=(float("inf"),)), "scale: expected a finite number > 0"),
    (dict(scales=()), "scales: expected a non-empty list"),
    (dict(scales=(1.0, 1.0)), "scales: expected each scale once"),
    (dict(scales=("big",)), "scale: expected a number"),
    (dict(length=1), "length: expected an integer >= 2, received 1"),
    (dict(length=2.5), "length: expected an integer"),
    (dict(hidden_size=0), "hidden_size: expected an integer >= 1, received 0"),
    (dict(hidden_size=gf.MAX_HIDDEN + 1), f"hidden_size: expected an integer <= {gf.MAX_HIDDEN}"),
    (dict(batch_size=0), "batch_size: expected an integer >= 1"),
    (dict(repeats=0), "repeats: expected an integer >= 1"),
    (dict(symbols=1), "symbols: expected an integer >= 2"),
    (dict(seed=-1), "seed: expected an integer >= 0"),
    (dict(forget_bias=float("nan")), "forget_bias: expected a number, received nan"),
    (dict(forget_bias=float("inf")), "forget_bias: expected a finite number or None"),
    (dict(nonlinearity="sigmoid"), "nonlinearity: expected one of 'tanh', 'relu'"),
])
def test_gradflow_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gf.gradflow(**kwargs)


def _net(**kw):
    return gf.scaled_network(kw.pop("cell", "rnn"), scale=1.0, hidden_size=3, symbols=4, **kw)


def test_measurement_rejects_two_layers():
    net = SequenceNetwork(cell="rnn", input_size=4, hidden_size=3, output_size=4, num_layers=2,
                          output_activation="softmax").double()
    x, y = gf.first_symbol_task(2, 5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="model: expected one recurrent layer"):
        gf.trace(net, x, y)
    with pytest.raises(ValueError, match="model: expected one recurrent layer"):
        gf.jacobian_log_norms(net.core, x)


@pytest.mark.parametrize("x, match", [
    (torch.zeros(2, 5, dtype=torch.float64), r"x: expected a 3-D tensor \(batch, time, features\)"),
    (torch.zeros(2, 5, 3, dtype=torch.float64), "x: expected 4 features in the last axis"),
    (torch.zeros(2, 5, 4), "x: expected dtype torch.float64"),
    (torch.zeros(2, 0, 4, dtype=torch.float64), "x: expected at least one sequence and one step"),
    (torch.full((2, 5, 4), float("nan"), dtype=torch.float64), "x: expected finite values"),
])
def test_measurement_rejects_bad_x(x, match):
    with pytest.raises(ValueError, match=match):
        gf.jacobian_log_norms(_net(), x)


def test_trace_rejects_bad_targets_and_networks():
    net = _net()
    x, y = gf.first_symbol_task(2, 5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="y: expected 2 class indices"):
        gf.trace(net, x, y.double())
    with pytest.raises(ValueError, match="y: expected 2 class indices"):
        gf.trace(net, x, y[:1])
    with pytest.raises(ValueError, match=r"y: expected class indices in \[0, 3\], received values in \[0, 4\]"):
        gf.trace(net, x, torch.tensor([0, 4]))
    seq = SequenceNetwork(cell="rnn", input_size=4, hidden_size=3, output_size=4, output="sequence",
                          output_activation="softmax").double()
    with pytest.raises(ValueError, match="network: expected output='last' with a softmax output"):
        gf.trace(seq, x, y)
    with pytest.raises(ValueError, match="network: expected a SequenceNetwork"):
        gf.trace(net.core, x, y)
    with pytest.raises(ValueError, match="model: expected a SequenceNetwork or an RNN/LSTM/GRU stack"):
        gf.jacobian_log_norms(torch.nn.Linear(2, 2), x)


def test_states_shape_is_checked():
    net = _net()
    x, _ = gf.first_symbol_task(2, 5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"states: expected shape \(2, 6, 3\)"):
        gf.state_jacobians(net, x, torch.zeros(2, 5, 3, dtype=torch.float64))
