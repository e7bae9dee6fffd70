"""Binary Hopfield network: the storage rules against their formulas, the energy, the
update rule (ties go to -1), properties from the math (async updates never raise E,
stored orthogonal patterns and their inverses are fixed points, a 3-pattern mixture is a
spurious minimum), capacity (pseudo-inverse and Storkey beat Hebbian), and validation."""

import numpy as np
import pytest
import torch

from seqlab.energy import HopfieldConfig, HopfieldNetwork, RecallResult, as_bipolar

f64 = torch.float64


def hadamard(n: int) -> torch.Tensor:
    """Sylvester Hadamard matrix (n, n), n a power of 2: rows are mutually orthogonal."""
    H = torch.ones(1, 1, dtype=f64)
    while H.shape[0] < n:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H


def random_patterns(P: int, N: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(P, N, generator=gen, dtype=f64) > 0.5, 1.0, -1.0).to(f64)


def flip(a: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(a.numel(), generator=gen)[:k]
    noisy = a.clone()
    noisy[idx] = -noisy[idx]
    return noisy


# -- as_bipolar ------------------------------------------------------------------------


def test_as_bipolar_keeps_bipolar_and_converts_binary():
    a = torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]])
    out = as_bipolar(a)
    assert out.dtype == f64 and torch.equal(out, a.to(f64))
    assert torch.equal(as_bipolar(np.array([0, 1, 1, 0])), torch.tensor([-1.0, 1.0, 1.0, -1.0], dtype=f64))
    assert torch.equal(as_bipolar([[0, 1], [1, 1]]), torch.tensor([[-1.0, 1.0], [1.0, 1.0]], dtype=f64))
    # the input is not modified
    b = torch.tensor([0.0, 1.0])
    as_bipolar(b)
    assert torch.equal(b, torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("bad, shown", [([1, -1, 2], "2"), ([0.5, 1.0, -1.0], "0.5"),
                                        ([[1, 3], [-2, 1]], "-2, 3")])
def test_as_bipolar_names_offending_values(bad, shown):
    with pytest.raises(ValueError, match=rf"patterns: expected values in \{{-1, \+1\}}.*received value\(s\) {shown}$"):
        as_bipolar(bad)


def test_as_bipolar_rejects_mix_shape_and_type():
    with pytest.raises(ValueError, match="not both"):
        as_bipolar([-1, 0, 1])
    with pytest.raises(ValueError, match=r"received shape \(2, 2, 2\)"):
        as_bipolar(torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match=r"received value\(s\) nan"):
        as_bipolar([1.0, float("nan")])
    with pytest.raises(ValueError, match="received str"):
        as_bipolar("1 -1")


# -- storage rules -----------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
def test_hebbian_is_sum_of_outer_products(normalize):
    X = random_patterns(3, 7, seed=0)
    net = HopfieldNetwork(n_units=7, normalize=normalize).store(X)
    expected = sum(torch.outer(x, x) for x in X)
    expected.fill_diagonal_(0.0)
    if normalize:
        expected = expected / 7
    torch.testing.assert_close(net.w, expected, rtol=0, atol=1e-15)


def test_pseudo_inverse_is_projection_with_zero_diagonal():
    X = random_patterns(5, 12, seed=1)
    net = HopfieldNetwork(n_units=12, rule="pseudo-inverse").store(X)
    expected = X.T @ torch.linalg.inv(X @ X.T) @ X
    expected.fill_diagonal_(0.0)
    torch.testing.assert_close(net.w, expected, rtol=0, atol=1e-12)


def test_storkey_matches_elementwise_formula():
    N, X = 6, random_patterns(4, 6, seed=2)
    w = np.zeros((N, N))
    for e in X.numpy():
        h = np.array([[sum(w[i, k] * e[k] for k in range(N) if k not in (i, j)) for j in range(N)]
                      for i in range(N)])
        new = w.copy()
        for i in range(N):
            for j in range(N):
                if i != j:
                    new[i, j] = w[i, j] + (e[i] * e[j] - e[i] * h[j, i] - h[i, j] * e[j]) / N
        w = new
    net = HopfieldNetwork(n_units=N, rule="storkey").store(X)
    torch.testing.assert_close(net.w, torch.from_numpy(w), rtol=0, atol=1e-12)


@pytest.mark.parametrize("rule", ["hebbian", "pseudo-inverse", "storkey"])
def test_weights_symmetric_zero_diagonal_and_store_replaces(rule):
    net = HopfieldNetwork(n_units=16, rule=rule)
    net.store(random_patterns(6, 16, seed=3))
    assert torch.equal(net.w, net.w.T)
    assert torch.equal(net.w.diagonal(), torch.zeros(16, dtype=f64))
    assert net.w.abs().sum() > 0
    X = random_patterns(2, 16, seed=4)
    fresh = HopfieldNetwork(n_units=16, rule=rule).store(X)
    torch.testing.assert_close(net.store(X).w, fresh.w, rtol=0, atol=0)


# -- energy and update rule ----------------------------------------------------------------


def test_energy_matches_double_sum_and_batches():
    N = 9
    bias = torch.linspace(-1, 1, N, dtype=f64)
    net = HopfieldNetwork(n_units=N, bias=bias).store(random_patterns(3, N, seed=5))
    A = random_patterns(4, N, seed=6)
    E = net.energy(A)
    assert E.shape == (4,)
    for a, e in zip(A, E):
        ref = -0.5 * sum(float(net.w[i, j] * a[i] * a[j]) for i in range(N) for j in range(N)) \
            - sum(float(bias[i] * a[i]) for i in range(N))
        assert abs(float(e) - ref) < 1e-12
        assert abs(float(net.energy(a)) - ref) < 1e-12


def test_tie_goes_to_minus_one():
    # zero weights and biases: every weighted sum is exactly 0, so every unit becomes -1
    net = HopfieldNetwork(n_units=4)
    res = net.recall(torch.ones(4), mode="sync")
    assert torch.equal(res.states[1], -torch.ones(4, dtype=f64))
    # w_12 = w_13 = 0 (the two patterns cancel), w_23 = 2: unit 1 always sees a tie
    net = HopfieldNetwork(n_units=3, normalize=False).store([[1, 1, 1], [1, -1, -1]])
    assert torch.equal(net.w, torch.tensor([[0.0, 0, 0], [0, 0, 2], [0, 2, 0]], dtype=f64))
    for mode in ("sync", "async"):
        res = net.recall([1, 1, 1], mode=mode, generator=torch.Generator().manual_seed(0))
        assert torch.equal(res.state, torch.tensor([-1.0, 1.0, 1.0], dtype=f64)), mode
        assert res.converged
    # a bias that exactly cancels the weighted sum is a tie too
    net = HopfieldNetwork(n_units=2, normalize=False, bias=[-1.0, 0.0]).store([1, 1])
    assert torch.equal(net.recall([1, 1], mode="sync").states[1], torch.tensor([-1.0, 1.0], dtype=f64))


def test_async_updates_never_raise_energy():
    moved = 0
    for seed in range(6):
        N = 24
        gen = torch.Generator().manual_seed(100 + seed)
        bias = 0.3 * torch.randn(N, generator=gen, dtype=f64)
        rule = ("hebbian", "storkey", "pseudo-inverse")[seed % 3]
        # overloaded (P = N/2) so the start state really moves through many updates
        net = HopfieldNetwork(n_units=N, rule=rule, bias=bias).store(random_patterns(N // 2, N, seed=seed))
        for start in range(3):
            a0 = random_patterns(1, N, seed=1000 * seed + start)[0]
            res = net.recall(a0, mode="async", generator=gen)
            assert res.converged and not res.cycle
            assert res.states.shape == (res.steps + 1, N) and res.energies.shape == (res.steps + 1,)
            assert torch.equal(res.states[0], a0) and torch.equal(res.states[-1], res.state)
            # the recorded energies are E of the recorded states
            torch.testing.assert_close(res.energies, net.energy(res.states), rtol=0, atol=1e-12)
            # one unit at a time, and E never goes up
            assert int((res.states[1:] != res.states[:-1]).sum(-1).max()) <= 1
            assert bool((res.energies[1:] <= res.energies[:-1] + 1e-12).all())
            moved += int((res.states[1:] != res.states[:-1]).any(-1).sum())
            # the final sweep changed nothing: the last N updates are the fixed point
            assert bool((res.states[-N:] == res.state).all())
    assert moved > 50  # the starts really moved: the property was exercised


def test_async_starts_that_move_lower_the_energy():
    N = 24
    net = HopfieldNetwork(n_units=N).store(random_patterns(3, N, seed=7))
    a0 = random_patterns(1, N, seed=8)[0]
    res = net.recall(a0, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(res.state, a0)
    assert float(res.energies[-1]) < float(res.energies[0])


# -- memories ------------------------------------------------------------------------------


N_H = 64
ROWS = [1, 2, 4, 8]  # Walsh functions of independent bits: orthogonal, and any three are
                     # "independent" (each sign triple occurs on N/8 units)


def test_orthogonal_patterns_and_their_inverses_are_fixed_points():
    X = hadamard(N_H)[ROWS]
    net = HopfieldNetwork(n_units=N_H).store(X)
    # W a = (N - P)/N a for orthogonal patterns
    torch.testing.assert_close(X @ net.w, X * (N_H - len(ROWS)) / N_H, rtol=0, atol=1e-12)
    assert bool(net.is_fixed_point(X).all()) and bool(net.is_fixed_point(-X).all())
    for a in torch.cat([X, -X]):
        for mode in ("async", "sync"):
            res = net.recall(a, mode=mode, generator=torch.Generator().manual_seed(0))
            assert res.converged and torch.equal(res.state, a)
            assert bool((res.states == a).all())  # nothing ever changed
    # a random state is not a fixed point (the check can fail)
    assert not bool(net.is_fixed_point(random_patterns(1, N_H, seed=9)[0]))


def test_noisy_pattern_is_recalled():
    X = hadamard(N_H)[ROWS]
    net = HopfieldNetwork(n_units=N_H).store(X)
    k = round(0.1 * N_H)  # 10% of the units flipped
    for p, a in enumerate(X):
        for trial in range(3):
            noisy = flip(a, k, seed=10 * p + trial)
            assert int((noisy != a).sum()) == k
            for mode in ("async", "sync"):
                res = net.recall(noisy, mode=mode, generator=torch.Generator().manual_seed(trial))
                assert res.converged and torch.equal(res.state, a), (p, trial, mode)
                assert float(res.energies[-1]) < float(res.energies[0])


def test_mixture_of_three_patterns_is_a_spurious_minimum():
    X = hadamard(N_H)[ROWS[:3]]
    net = HopfieldNetwork(n_units=N_H).store(X)
    mix = torch.where(X.sum(0) > 0, 1.0, -1.0).to(f64)  # sign(a1 + a2 + a3); the sum is odd, never 0
    # not a stored pattern nor an inverse: a spurious memory
    assert not any(torch.equal(mix, s * a) for a in X for s in (1, -1))
    assert all(int(mix @ a) == N_H // 2 for a in X)
    assert bool(net.is_fixed_point(mix))
    res = net.recall(mix, generator=torch.Generator().manual_seed(0))
    assert res.converged and torch.equal(res.state, mix)
    # a local minimum: every single-unit flip raises E
    flips = mix.repeat(N_H, 1)
    flips[torch.arange(N_H), torch.arange(N_H)] *= -1
    assert bool((net.energy(flips) > net.energy(mix)).all())
    # and a shallower one than the stored patterns
    assert bool((net.energy(X) < net.energy(mix)).all())


def test_pseudo_inverse_stores_half_n_where_hebbian_fails():
    N = 32
    X = random_patterns(N // 2, N, seed=0)
    pinv = HopfieldNetwork(n_units=N, rule="pseudo-inverse").store(X)
    hebb = HopfieldNetwork(n_units=N, rule="hebbian").store(X)
    assert bool(pinv.is_fixed_point(X).all())
    assert int(hebb.is_fixed_point(X).sum()) <= N // 8  # most patterns are lost
    for a in X[:4]:
        res = pinv.recall(a, mode="sync")
        assert res.converged and torch.equal(res.state, a) and res.steps == 1


def test_storkey_stores_more_than_hebbian():
    N, P = 64, 14  # P/N ~ 0.22, above Hebbian's ~0.14 (fixed seeds: Hebbian keeps 6-8 of 14)
    for seed in range(3):
        X = random_patterns(P, N, seed=seed)
        storkey = int(HopfieldNetwork(n_units=N, rule="storkey").store(X).is_fixed_point(X).sum())
        hebbian = int(HopfieldNetwork(n_units=N, rule="hebbian").store(X).is_fixed_point(X).sum())
        assert storkey == P, seed
        assert hebbian <= P - 5, seed


# -- dynamics ------------------------------------------------------------------------------


def test_sync_detects_two_cycle_async_converges():
    net = HopfieldNetwork(n_units=2, normalize=False).store([1, -1])  # w_12 = -1
    res = net.recall([1, 1], mode="sync")
    assert isinstance(res, RecallResult)
    assert res.cycle and not res.converged and res.steps == 2
    assert torch.equal(res.states, torch.tensor([[1.0, 1], [-1, -1], [1, 1]], dtype=f64))
    res = net.recall([1, 1], mode="async", generator=torch.Generator().manual_seed(0))
    assert res.converged and not res.cycle
    assert any(torch.equal(res.state, torch.tensor(s, dtype=f64)) for s in ([1.0, -1.0], [-1.0, 1.0]))


def test_max_steps_limits_recall():
    N = 24
    net = HopfieldNetwork(n_units=N).store(random_patterns(3, N, seed=7))
    a0 = random_patterns(1, N, seed=8)[0]
    res = net.recall(a0, max_steps=1, generator=torch.Generator().manual_seed(1))
    assert res.steps == 1 and res.states.shape == (2, N) and not res.converged
    res = net.recall(a0, mode="sync", max_steps=1)
    assert res.steps == 1 and res.states.shape == (2, N)


def test_generator_makes_async_reproducible():
    N = 24
    net = HopfieldNetwork(n_units=N).store(random_patterns(6, N, seed=11))
    a0 = random_patterns(1, N, seed=12)[0]
    r1 = net.recall(a0, generator=torch.Generator().manual_seed(5))
    r2 = net.recall(a0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(r1.states, r2.states)


# -- validation ----------------------------------------------------------------------------


def test_bad_pattern_values_and_lengths():
    net = HopfieldNetwork(n_units=8)
    with pytest.raises(ValueError, match=r"patterns: .*received value\(s\) 2$"):
        net.store([[1, -1, 2, 1, 1, 1, 1, 1]])
    with pytest.raises(ValueError, match=r"patterns: .*received value\(s\) 0.5$"):
        net.store([0.5] * 8)
    with pytest.raises(ValueError, match=r"patterns: expected length N = 8 .*received length 5 in shape \(2, 5\)"):
        net.store(torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"a0: expected length N = 8 .*received length 7"):
        net.recall(torch.ones(7))
    with pytest.raises(ValueError, match=r"a0: expected a state of shape \(N,\), received shape \(2, 8\)"):
        net.recall(torch.ones(2, 8))
    with pytest.raises(ValueError, match=r"a: expected length N = 8 .*received length 9"):
        net.energy(torch.ones(3, 9))
    with pytest.raises(ValueError, match=r"a0: .*received value\(s\) 3$"):
        net.recall([3] * 8)


def test_more_patterns_than_units_warns():
    with pytest.warns(UserWarning, match=r"P = 9 patterns in N = 8 units.*recall is expected to fail"):
        HopfieldNetwork(n_units=8).store(random_patterns(9, 8, seed=0))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HopfieldNetwork(n_units=8).store(random_patterns(8, 8, seed=0))  # P = N: no warning


def test_bad_arguments():
    net = HopfieldNetwork(n_units=4)
    with pytest.raises(ValueError, match=r"mode: expected one of 'async', 'sync', received 'parallel'"):
        net.recall(torch.ones(4), mode="parallel")
    for bad in (0, -3):
        with pytest.raises(ValueError, match=rf"max_steps: expected an integer >= 1, received {bad}"):
            net.recall(torch.ones(4), max_steps=bad)
    with pytest.raises(ValueError, match="max_steps: expected an integer, received 2.5"):
        net.recall(torch.ones(4), max_steps=2.5)
    with pytest.raises(ValueError, match="generator: expected a torch.Generator or None, received int"):
        net.recall(torch.ones(4), generator=0)
    with pytest.raises(ValueError, match="rule: expected one of 'hebbian', 'pseudo-inverse', 'storkey', received 'oja'"):
        HopfieldNetwork(n_units=4, rule="oja")
    with pytest.raises(ValueError, match="n_units: expected an integer >= 1, received 0"):
        HopfieldNetwork(n_units=0)
    with pytest.raises(ValueError, match="bias: expected length N = 4, received length 3"):
        HopfieldNetwork(n_units=4, bias=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="bias: expected finite values"):
        HopfieldNetwork(n_units=2, bias=[0.0, float("inf")])


def test_config_and_both_ways_to_build():
    cfg = HopfieldConfig(n_units=6, rule="storkey", normalize=False)
    a, b = HopfieldNetwork(cfg), HopfieldNetwork(n_units=6, rule="storkey", normalize=False)
    assert a.config == b.config == cfg
    assert (a.n_units, a.rule, a.normalize) == (6, "storkey", False)
    assert HopfieldConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict() == {"n_units": 6, "rule": "storkey", "normalize": False}
    X = random_patterns(2, 6, seed=3)
    assert torch.equal(a.store(X).w, b.store(X).w)
    # the bias is a tensor, kept outside the config
    c = HopfieldNetwork(cfg, bias=[0.5] * 6)
    assert torch.equal(c.b, torch.full((6,), 0.5, dtype=f64)) and c.config == cfg


def test_bad_configs():
    with pytest.raises(ValueError, match="normalize: expected a bool, received 1"):
        HopfieldConfig(n_units=4, normalize=1)
    with pytest.raises(ValueError, match="n_units: expected an integer, received 4.0"):
        HopfieldConfig(n_units=4.0)
    with pytest.raises(ValueError, match=r"HopfieldNetwork\(config, \*\*kwargs\): expected a config or keyword "
                                         r"arguments, not both, received \['rule'\]"):
        HopfieldNetwork(HopfieldConfig(n_units=4), rule="storkey")
    with pytest.raises(ValueError, match="config: expected a HopfieldConfig, received int"):
        HopfieldNetwork(4)
    with pytest.raises(ValueError, match=r"Hopfield config: expected fields among \['n_units', 'normalize', 'rule'\], "
                                         r"received unknown fields \['units'\]"):
        HopfieldConfig.from_dict({"units": 4})
