"""Tests of seqlab.recurrent.bptt: hand-written BPTT against PyTorch autograd.

The reference below is written from the lecture's equations independently of bptt.py:
it runs each item on its own t_i steps (no padding, no masks), so it also checks that
padded steps change nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqlab.recurrent.bptt import (
    ElmanCache,
    ElmanParams,
    bptt,
    bptt_literal,
    compare_with_autograd,
    forward,
    init_params,
)

TOL = 1e-9  # float64 agreement with autograd (absolute)

G = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}
G_O = {"identity": lambda v: v, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


# ---------------------------------------------------------------------------------------
# Helpers: random cases and the autograd reference
# ---------------------------------------------------------------------------------------


def make_case(seed, hidden, output, loss, *, n=4, T=6, m=3, O=3, variable=True, scale=0.8):
    rng = np.random.default_rng(seed)
    params = init_params(m, hidden, O, rng, scale=scale)
    x = rng.normal(size=(n, T, m))
    if variable:
        lengths = rng.integers(1, T + 1, size=n)
        lengths[0], lengths[-1] = T, 1  # the longest item and a length-1 item
    else:
        lengths = np.full(n, T)
    if loss == "squared":
        y = rng.normal(size=(n, O) if output == "last" else (n, T, O))
    else:
        y = rng.integers(0, O, size=(n,) if output == "last" else (n, T))
    return params, x, y, lengths


def reference(params, x, y, lengths, *, output, loss, activation="tanh", output_activation=None,
              truncate=None, detach_every_step=False):
    """(C, {name: grad}) by autograd. Each item i runs only its own steps t = 1..t_i:

        a^(l)_t = g(w_a[l] a^(l)_{t-1} + w_x[l] a^(l-1)_t + b_a[l]),  a^(0)_t = x_t,
        o = g_o(w_o a^(L) + b_o),  C = (1/n) sum_i C_i.

    truncate=k: for output="last", the state a_{t_i-k} is detached; for "sequence", the
    cost is the sum over s of C_s, each on a run whose state a_{s-k} is detached.
    detach_every_step: the recurrent input a_{t-1} is detached at every step."""
    names = [name for name, _ in params.arrays()]
    leaf = {name: torch.tensor(arr, dtype=torch.float64, requires_grad=True) for name, arr in params.arrays()}
    L = params.num_layers
    g = G[activation]
    g_o = output_activation or ("identity" if loss == "squared" else "softmax")

    def step_cost(a_top, target):
        z_o = leaf["w_o"] @ a_top + leaf["b_o"]
        if loss == "squared":
            return 0.5 * ((G_O[g_o](z_o) - torch.as_tensor(target)) ** 2).sum()
        return -torch.log_softmax(z_o, dim=0)[int(target)]

    def run(i, *, cut=None, source=None):
        """Cost of item i (only the term at time ``source`` if given); a_cut detached."""
        a = [torch.zeros(params.hidden_sizes[l], dtype=torch.float64) for l in range(L)]
        cost = torch.zeros((), dtype=torch.float64)
        for t in range(1, int(lengths[i]) + 1):
            if detach_every_step or (cut is not None and t - 1 == cut):
                a = [s.detach() for s in a]
            below = torch.as_tensor(x[i, t - 1])
            for l in range(L):
                a[l] = g(leaf[f"w_a[{l}]"] @ a[l] + leaf[f"w_x[{l}]"] @ below + leaf[f"b_a[{l}]"])
                below = a[l]
            if output == "sequence" and (source is None or source == t):
                cost = cost + step_cost(a[-1], y[i, t - 1])
        if output == "last":
            cost = cost + step_cost(a[-1], y[i])
        return cost

    n = x.shape[0]
    total = torch.zeros((), dtype=torch.float64)
    for i in range(n):
        t_i = int(lengths[i])
        if truncate is None:
            total = total + run(i)
        elif output == "last":
            total = total + run(i, cut=t_i - truncate)
        else:
            for s in range(1, t_i + 1):
                total = total + run(i, cut=s - truncate, source=s)
    total = total / n
    total.backward()
    grads = {k: (v.grad.numpy() if v.grad is not None else np.zeros(v.shape)) for k, v in leaf.items()}
    return total.item(), {k: grads[k] for k in names}


def assert_grads_equal(grads: ElmanParams, ref: dict, tol=TOL):
    for name, mine in grads.arrays():
        np.testing.assert_allclose(mine, ref[name], rtol=0, atol=tol, err_msg=name)


# ---------------------------------------------------------------------------------------
# BPTT against autograd
# ---------------------------------------------------------------------------------------

CASES = [
    # hidden, output, loss, activation, output_activation, variable lengths
    ([4], "last", "squared", "tanh", None, False),
    ([4], "last", "squared", "relu", "sigmoid", True),
    ([5], "last", "cross_entropy", "sigmoid", None, True),
    ([3], "sequence", "squared", "tanh", "tanh", True),
    ([4], "sequence", "cross_entropy", "relu", None, False),
    ([4, 3], "last", "squared", "tanh", None, True),
    ([2, 5], "last", "cross_entropy", "relu", "softmax", True),
    ([3, 4], "sequence", "squared", "sigmoid", "identity", True),
    ([4, 3, 2], "sequence", "cross_entropy", "tanh", None, True),
    ([3, 3, 3], "last", "squared", "sigmoid", "tanh", False),
    ([4, 2], "sequence", "squared", "relu", "sigmoid", True),
    ([5], "sequence", "cross_entropy", "sigmoid", None, True),
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("hidden,output,loss,activation,g_o,variable", CASES)
def test_bptt_matches_autograd(seed, hidden, output, loss, activation, g_o, variable):
    params, x, y, lengths = make_case(seed, hidden, output, loss, variable=variable)
    cost, grads = bptt(params, x, y, lengths, output=output, loss=loss, activation=activation, output_activation=g_o)
    ref_cost, ref = reference(params, x, y, lengths, output=output, loss=loss, activation=activation,
                              output_activation=g_o)
    assert cost == pytest.approx(ref_cost, rel=1e-12, abs=1e-12)
    assert_grads_equal(grads, ref)
    # the gradient is not trivially zero anywhere
    for name, g in grads.arrays():
        assert np.abs(g).max() > 0, name


def test_gradient_is_wrong_if_a_term_is_missing():
    """The comparison can fail: dropping the recurrent path (k=1) differs from autograd."""
    params, x, y, lengths = make_case(3, [4], "last", "squared", variable=False)
    _, grads = bptt(params, x, y, lengths, truncate=1)
    _, ref = reference(params, x, y, lengths, output="last", loss="squared")
    assert np.abs(grads.w_a[0] - ref["w_a[0]"]).max() > 1e-4


@pytest.mark.parametrize("output,loss", [("last", "squared"), ("sequence", "cross_entropy"), ("sequence", "squared")])
def test_padded_values_change_nothing(output, loss):
    params, x, y, lengths = make_case(5, [4, 3], output, loss)
    assert lengths.min() < x.shape[1]
    cost, grads = bptt(params, x, y, lengths, output=output, loss=loss)
    x2 = x.copy()
    pad = np.arange(x.shape[1])[None, :] >= lengths[:, None]  # (n, T): t > t_i
    x2[pad] = np.random.default_rng(9).normal(scale=100.0, size=(int(pad.sum()), x.shape[2]))
    y2 = y.copy()
    if output == "sequence":
        # targets at padded steps are ignored as well
        y2[pad] = 0 if loss == "cross_entropy" else 1e3
    cost2, grads2 = bptt(params, x2, y2, lengths, output=output, loss=loss)
    assert cost2 == cost
    np.testing.assert_array_equal(grads2.flatten(), grads.flatten())
    # ...while a change at a real step does change the gradient
    x3 = x.copy()
    x3[0, 0] += 1.0
    _, grads3 = bptt(params, x3, y, lengths, output=output, loss=loss)
    assert np.abs(grads3.flatten() - grads.flatten()).max() > 1e-6


def test_lengths_none_means_all_T():
    params, x, y, _ = make_case(2, [3, 2], "sequence", "squared")
    full = np.full(x.shape[0], x.shape[1])
    c1, g1 = bptt(params, x, y, None, output="sequence")
    c2, g2 = bptt(params, x, y, full, output="sequence")
    assert c1 == c2
    np.testing.assert_array_equal(g1.flatten(), g2.flatten())


def test_last_output_is_taken_at_each_items_own_last_step():
    params, x, y, lengths = make_case(4, [3], "last", "squared")
    cache = forward(params, x, lengths, output="last")
    for i, t_i in enumerate(lengths):
        a_ti = cache.a[1][i, t_i]
        np.testing.assert_allclose(cache.o[i], params.w_o @ a_ti + params.b_o, rtol=0, atol=1e-14)
        # the state is not updated on padded steps
        np.testing.assert_array_equal(cache.a[1][i, t_i:], np.broadcast_to(a_ti, cache.a[1][i, t_i:].shape))


# ---------------------------------------------------------------------------------------
# The literal O(T^2) sum
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "loss,activation,g_o",
    [("squared", "tanh", None), ("squared", "relu", "tanh"), ("squared", "sigmoid", "sigmoid"),
     ("cross_entropy", "tanh", None), ("cross_entropy", "sigmoid", "softmax")],
)
def test_literal_equals_bptt_and_autograd(loss, activation, g_o):
    params, x, y, lengths = make_case(7, [4], "last", loss, T=5)
    c1, g1 = bptt_literal(params, x, y, lengths, loss=loss, activation=activation, output_activation=g_o)
    c2, g2 = bptt(params, x, y, lengths, loss=loss, activation=activation, output_activation=g_o)
    assert c1 == c2
    np.testing.assert_allclose(g1.flatten(), g2.flatten(), rtol=0, atol=1e-12)
    _, ref = reference(params, x, y, lengths, output="last", loss=loss, activation=activation, output_activation=g_o)
    assert_grads_equal(g1, ref)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_literal_truncated_equals_bptt_truncated(k):
    params, x, y, lengths = make_case(8, [3], "last", "squared", T=5)
    _, g1 = bptt_literal(params, x, y, lengths, truncate=k)
    _, g2 = bptt(params, x, y, lengths, truncate=k)
    np.testing.assert_allclose(g1.flatten(), g2.flatten(), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------
# Truncated BPTT
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("output,loss", [("last", "squared"), ("sequence", "cross_entropy")])
def test_truncate_at_least_T_is_full(output, loss):
    params, x, y, lengths = make_case(10, [3, 4], output, loss)
    T = x.shape[1]
    _, full = bptt(params, x, y, lengths, output=output, loss=loss)
    for k in (T, T + 3):
        _, g = bptt(params, x, y, lengths, output=output, loss=loss, truncate=k)
        np.testing.assert_array_equal(g.flatten(), full.flatten())
    # and k = T-1 is not the full gradient (the longest item has t_i = T)
    _, g = bptt(params, x, y, lengths, output=output, loss=loss, truncate=T - 1)
    assert np.abs(g.flatten() - full.flatten()).max() > 1e-8


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("hidden,activation", [([4], "tanh"), ([3, 4], "sigmoid"), ([4, 2, 3], "relu")])
def test_truncate_last_equals_detached_state(k, hidden, activation):
    """output="last": truncate=k == autograd with a_{t_i-k} detached before step t_i-k+1."""
    params, x, y, lengths = make_case(11, hidden, "last", "squared")
    cost, g = bptt(params, x, y, lengths, truncate=k, activation=activation)
    ref_cost, ref = reference(params, x, y, lengths, output="last", loss="squared", activation=activation, truncate=k)
    assert cost == pytest.approx(ref_cost, rel=1e-12)
    assert_grads_equal(g, ref)


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("hidden,loss", [([4], "squared"), ([3, 4], "cross_entropy"), ([2, 3, 3], "squared")])
def test_truncate_sequence_equals_sum_of_detached_costs(k, hidden, loss):
    """output="sequence": truncate=k == sum over s of autograd of C_s with a_{s-k} detached."""
    params, x, y, lengths = make_case(12, hidden, "sequence", loss)
    _, g = bptt(params, x, y, lengths, output="sequence", loss=loss, truncate=k)
    _, ref = reference(params, x, y, lengths, output="sequence", loss=loss, truncate=k)
    assert_grads_equal(g, ref)


@pytest.mark.parametrize("output", ["last", "sequence"])
def test_truncate_one_keeps_only_direct_terms(output):
    params, x, y, lengths = make_case(13, [3, 4], output, "squared")
    _, g = bptt(params, x, y, lengths, output=output, truncate=1)
    _, ref = reference(params, x, y, lengths, output=output, loss="squared", detach_every_step=True)
    assert_grads_equal(g, ref)
    # one layer, output="last", by hand: dC/dw_a = (1/n) sum_i dC_i/dz_{t_i} a_{t_i-1}^T
    params, x, y, lengths = make_case(13, [3], "last", "squared")
    _, g = bptt(params, x, y, lengths, truncate=1)
    c = forward(params, x, lengths, output="last")
    n = x.shape[0]
    rows = np.arange(n)
    dz_o = (c.o - y) / n  # (n, O)
    dz = (dz_o @ params.w_o) * (1 - c.a[1][rows, lengths] ** 2)  # (n, H)
    np.testing.assert_allclose(g.w_a[0], dz.T @ c.a[1][rows, lengths - 1], rtol=0, atol=1e-14)
    np.testing.assert_allclose(g.w_x[0], dz.T @ x[rows, lengths - 1], rtol=0, atol=1e-14)
    np.testing.assert_allclose(g.b_a[0], dz.sum(0), rtol=0, atol=1e-14)


def test_truncation_does_not_touch_output_weights():
    params, x, y, lengths = make_case(14, [3, 3], "sequence", "squared")
    _, full = bptt(params, x, y, lengths, output="sequence")
    _, g = bptt(params, x, y, lengths, output="sequence", truncate=1)
    np.testing.assert_array_equal(g.w_o, full.w_o)
    np.testing.assert_array_equal(g.b_o, full.b_o)


# ---------------------------------------------------------------------------------------
# Finite differences, containers, the tour's helper
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("output,loss,activation", [("last", "squared", "tanh"), ("sequence", "cross_entropy", "sigmoid")])
def test_finite_differences(output, loss, activation):
    params, x, y, lengths = make_case(15, [3, 2], output, loss, n=3, T=4, m=2, O=2)
    _, grads = bptt(params, x, y, lengths, output=output, loss=loss, activation=activation)
    theta = params.flatten()
    eps = 1e-6
    numeric = np.zeros_like(theta)
    for j in range(theta.size):
        plus, minus = theta.copy(), theta.copy()
        plus[j] += eps
        minus[j] -= eps
        c_plus, _ = bptt(params.unflatten(plus), x, y, lengths, output=output, loss=loss, activation=activation)
        c_minus, _ = bptt(params.unflatten(minus), x, y, lengths, output=output, loss=loss, activation=activation)
        numeric[j] = (c_plus - c_minus) / (2 * eps)
    np.testing.assert_allclose(grads.flatten(), numeric, rtol=1e-6, atol=1e-8)


def test_params_container():
    rng = np.random.default_rng(0)
    p = init_params(3, [4, 5], 2, rng)
    assert [w.shape for w in p.w_x] == [(4, 3), (5, 4)]
    assert [w.shape for w in p.w_a] == [(4, 4), (5, 5)]
    assert [b.shape for b in p.b_a] == [(4,), (5,)]
    assert p.w_o.shape == (2, 5) and p.b_o.shape == (2,)
    assert p.num_layers == 2 and p.hidden_sizes == [4, 5] and p.input_size == 3 and p.output_size == 2
    assert np.abs(p.w_a[0]).max() <= 0.5  # default scale 1/sqrt(H_1)
    theta = p.flatten()
    assert theta.shape == (4 * 3 + 16 + 4 + 5 * 4 + 25 + 5 + 2 * 5 + 2,)
    np.testing.assert_array_equal(p.unflatten(theta).flatten(), theta)
    q = p.copy()
    q.w_a[0][0, 0] += 1.0
    assert q.w_a[0][0, 0] != p.w_a[0][0, 0]
    assert np.abs(init_params(3, [4], 2, rng, scale=0.1).w_x[0]).max() <= 0.1


def test_forward_cache_shapes():
    params, x, y, lengths = make_case(16, [4, 3], "sequence", "squared")
    c = forward(params, x, lengths, output="sequence")
    n, T, m = x.shape
    assert isinstance(c, ElmanCache)
    assert [a.shape for a in c.a] == [(n, T + 1, m), (n, T + 1, 4), (n, T + 1, 3)]
    assert c.o.shape == (n, T, 3) and c.mask.shape == (n, T + 1)
    np.testing.assert_array_equal(c.a[1][:, 0], 0.0)
    pad = np.arange(1, T + 1)[None, :] > lengths[:, None]
    assert np.all(c.o[pad] == 0.0)


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(output="last", loss="cross_entropy", activation="relu"),
     dict(hidden_sizes=[3, 4], truncate=2), dict(output="last", truncate=1, activation="sigmoid")],
)
def test_compare_with_autograd(kwargs):
    assert compare_with_autograd(0, **kwargs) < TOL


# ---------------------------------------------------------------------------------------
# Input validation: one test per error path
# ---------------------------------------------------------------------------------------


@pytest.fixture
def case():
    return make_case(20, [4, 3], "last", "squared")


def test_x_not_3d(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"x: expected a 3-D array \(n, T, m\), received shape \(4, 6\)"):
        bptt(params, x[:, :, 0], y, lengths)


def test_x_not_numpy(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"x: expected a numpy array .*, received Tensor"):
        bptt(params, torch.tensor(x), y, lengths)


def test_x_wrong_feature_size(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"x: expected m = 3 features .*, received 5 in shape \(4, 6, 5\)"):
        bptt(params, np.zeros((4, 6, 5)), y, lengths)


def test_x_empty_sequence(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"x: expected at least one item and one time step .*, received shape \(4, 0, 3\)"):
        bptt(params, x[:, :0], y, None)


def test_x_nan(case):
    params, x, y, lengths = case
    x = x.copy()
    x[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"x: expected finite values, received 1 NaN or infinite"):
        bptt(params, x, y, lengths)


def test_lengths_below_one(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"lengths: expected every t_i >= 1, received minimum 0"):
        bptt(params, x, y, [6, 0, 2, 1])


def test_lengths_above_T(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"lengths: expected every t_i <= T = 6 .*, received maximum 7"):
        bptt(params, x, y, [6, 7, 2, 1])


def test_lengths_wrong_count(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"lengths: expected one length per item \(4\), received 3 lengths"):
        bptt(params, x, y, [6, 2, 1])


def test_lengths_not_integers(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"lengths: expected a 1-D array of integers t_i, received shape \(4,\), dtype float64"):
        bptt(params, x, y, [6.0, 2.0, 1.0, 3.0])


def test_y_wrong_shape_squared_last(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"y: expected shape \(n, O\) = \(4, 3\) .*, received shape \(4, 2\)"):
        bptt(params, x, y[:, :2], lengths)


def test_y_wrong_shape_squared_sequence(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"y: expected shape \(n, T, O\) = \(4, 6, 3\) .*, received shape \(4, 3\)"):
        bptt(params, x, y, lengths, output="sequence")


def test_y_nan(case):
    params, x, y, lengths = case
    y = y.copy()
    y[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"y: expected finite targets, received 1 NaN or infinite"):
        bptt(params, x, y, lengths)


def test_y_wrong_shape_cross_entropy(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"y: expected shape \(n, T\) = \(4, 6\) of class indices.*, received shape \(4,\)"):
        bptt(params, x, np.zeros(4, dtype=int), lengths, output="sequence", loss="cross_entropy")


def test_y_class_indices_not_integers(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"y: expected integer class indices, received dtype float64"):
        bptt(params, x, np.zeros(4), lengths, loss="cross_entropy")


@pytest.mark.parametrize("bad", [3, -1])
def test_y_class_index_out_of_range(case, bad):
    params, x, y, lengths = case
    labels = np.array([0, 1, bad, 2])
    with pytest.raises(ValueError, match=rf"y: expected class indices in \[0, 2\] \(O = 3 outputs\), received index {bad}"):
        bptt(params, x, labels, lengths, loss="cross_entropy")


def test_y_padded_class_index_is_ignored(case):
    params, x, y, lengths = case
    labels = np.zeros((4, 6), dtype=int)
    labels[lengths < 6, -1] = -100  # padded steps: ignored
    assert (labels == -100).any()
    bptt(params, x, labels, lengths, output="sequence", loss="cross_entropy")
    labels[0, -1] = -100  # item 0 has t_0 = T: a real step
    with pytest.raises(ValueError, match=r"received index -100"):
        bptt(params, x, labels, lengths, output="sequence", loss="cross_entropy")


@pytest.mark.parametrize(
    "kwargs,what,received",
    [(dict(activation="softplus"), "activation", "'softplus'"),
     (dict(output="all"), "output", "'all'"),
     (dict(loss="hinge"), "loss", "'hinge'")],
)
def test_unknown_names(case, kwargs, what, received):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=rf"{what}: expected one of .*, received {received}"):
        bptt(params, x, y, lengths, **kwargs)


def test_softmax_with_squared_loss(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"output_activation: expected .*softmax goes with loss='cross_entropy'.*, received 'softmax'"):
        bptt(params, x, y, lengths, output_activation="softmax")


def test_cross_entropy_without_softmax(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"output_activation: expected 'softmax' \(or None\) with loss='cross_entropy', received 'sigmoid'"):
        bptt(params, x, np.zeros(4, dtype=int), lengths, loss="cross_entropy", output_activation="sigmoid")


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_truncate_invalid(case, bad):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=rf"truncate: expected None or an integer k >= 1, received {bad!r}"):
        bptt(params, x, y, lengths, truncate=bad)


def test_params_not_elman(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"params: expected an ElmanParams, received dict"):
        bptt({"w_x": params.w_x}, x, y, lengths)


def test_params_recurrent_weight_shape(case):
    params, x, y, lengths = case
    bad = params.copy()
    bad.w_a[1] = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"params.w_a\[1\]: expected shape \(3, 3\), received shape \(3, 4\)"):
        bptt(bad, x, y, lengths)


def test_params_layer_input_shape(case):
    params, x, y, lengths = case
    bad = params.copy()
    bad.w_x[1] = np.zeros((3, 5))
    with pytest.raises(ValueError, match=r"params.w_x\[1\]: expected shape \(3, 4\), received shape \(3, 5\)"):
        bptt(bad, x, y, lengths)


def test_params_bias_shape(case):
    params, x, y, lengths = case
    bad = params.copy()
    bad.b_a[0] = np.zeros(5)
    with pytest.raises(ValueError, match=r"params.b_a\[0\]: expected shape \(4,\), received shape \(5,\)"):
        bptt(bad, x, y, lengths)


def test_params_output_weight_shape(case):
    params, x, y, lengths = case
    bad = params.copy()
    bad.w_o = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"params.w_o: expected a 2-D array \(O, H_L = 3\), received shape \(3, 4\)"):
        bptt(bad, x, y, lengths)


def test_params_output_bias_shape(case):
    params, x, y, lengths = case
    bad = params.copy()
    bad.b_o = np.zeros(2)
    with pytest.raises(ValueError, match=r"params.b_o: expected shape \(3,\), received shape \(2,\)"):
        bptt(bad, x, y, lengths)


def test_params_layer_count_mismatch(case):
    params, x, y, lengths = case
    bad = params.copy()
    bad.b_a = bad.b_a[:1]
    with pytest.raises(ValueError, match=r"params.b_a: expected 2 arrays \(one per layer, as w_a\), received 1 arrays"):
        bptt(bad, x, y, lengths)


def test_params_nan(case):
    params, x, y, lengths = case
    bad = params.copy()
    bad.w_a[0][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"params.w_a\[0\]: expected finite values, received 1 NaN or infinite"):
        bptt(bad, x, y, lengths)


def test_literal_needs_one_layer(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"params: expected one recurrent layer for bptt_literal .*, received 2 layers"):
        bptt_literal(params, x, y, lengths)


def test_forward_unknown_output_activation(case):
    params, x, y, lengths = case
    with pytest.raises(ValueError, match=r"output_activation: expected one of .*'softmax', received 'gelu'"):
        forward(params, x, lengths, output_activation="gelu")


@pytest.mark.parametrize(
    "args,what,received",
    [((0, [3], 2), "input_size", "0"), ((2, [], 2), "hidden_sizes", r"\[\]"),
     ((2, [3, 0], 2), "hidden_sizes", r"\[3, 0\]"), ((2, [3], -1), "output_size", "-1")],
)
def test_init_params_invalid_sizes(args, what, received):
    with pytest.raises(ValueError, match=rf"{what}: expected .*, received {received}"):
        init_params(*args, np.random.default_rng(0))


def test_init_params_needs_generator():
    with pytest.raises(ValueError, match=r"rng: expected a numpy.random.Generator, received int"):
        init_params(2, [3], 2, 0)


def test_unflatten_wrong_size(case):
    params = case[0]
    with pytest.raises(ValueError, match=r"vector: expected a 1-D array of \d+ values, received shape \(3,\)"):
        params.unflatten(np.zeros(3))
