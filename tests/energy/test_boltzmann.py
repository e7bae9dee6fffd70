"""General Boltzmann machine: the hand-written gradient against autograd and finite
differences, the Gibbs sampler against the exact distribution (free and clamped), sampled
statistics against exact ones, learning 3-bit parity (impossible without hidden units),
the energy and the enumeration order, and every input check."""

import itertools
import math
import re

import numpy as np
import pytest
import torch
from torch.func import functional_call

from seqlab.energy.boltzmann import (
    MAX_ENUMERATED_UNITS,
    BoltzmannConfig,
    BoltzmannMachine,
    FitResult,
    PhaseStatistics,
    binary_states,
)
from seqlab.energy.parity_demo import parity_problem

f64 = torch.float64
LOG2 = math.log(2.0)


def machine(visible_size=3, hidden_size=2, *, std=1.0, seed=0, bias_std=1.0):
    """A machine with non-trivial weights and biases (far from the uniform distribution)."""
    gen = torch.Generator().manual_seed(seed)
    m = BoltzmannMachine(visible_size=visible_size, hidden_size=hidden_size, init_std=std, generator=gen)
    with torch.no_grad():
        m.b.copy_(torch.randn(m.n_units, dtype=f64, generator=gen) * bias_std)
    return m


DATA = torch.tensor([[1, 0, 1], [1, 0, 1], [0, 1, 1], [0, 0, 0], [1, 1, 0]], dtype=f64)  # a duplicate row


def tv(p, q):
    return 0.5 * float((p - q).abs().sum())


def histogram(rows, k):
    """Empirical distribution of binary rows (N, k) over binary_states(k) order."""
    place = 2 ** torch.arange(k - 1, -1, -1)
    idx = (rows.to(torch.int64) * place).sum(1)
    return torch.bincount(idx, minlength=2 ** k).to(f64) / rows.shape[0]


# -- 1. the gradient ------------------------------------------------------------------------


def test_exact_gradient_equals_autograd():
    m = machine(3, 2, seed=1)
    ll = m.log_likelihood(DATA)
    g_w, g_b = torch.autograd.grad(ll, [m.w, m.b])
    grad_w, grad_b = m.gradient(DATA, method="exact")
    torch.testing.assert_close(grad_b, g_b, rtol=0, atol=1e-10)
    # The stored (n, n) tensor holds the one parameter w_ij = w_ji twice, and E contains
    # -1/2 (w[i, j] + w[j, i]) s_i s_j. Autograd differentiates each entry on its own, so
    # g[i, j] is half the derivative with respect to the shared parameter; moving the
    # shared parameter moves both entries, so its derivative is g[i, j] + g[j, i].
    # ((g + g.T) / 2 would be the Frobenius projection onto symmetric matrices, half the
    # learning rule's value.) The diagonal is not a parameter (w_ii = 0): the rule gives 0.
    off = ~torch.eye(m.n_units, dtype=torch.bool)
    torch.testing.assert_close(grad_w[off], (g_w + g_w.T)[off], rtol=0, atol=1e-10)
    assert torch.equal(grad_w.diagonal(), torch.zeros(m.n_units, dtype=f64))
    assert torch.equal(grad_w, grad_w.T)


def test_exact_gradient_equals_autograd_on_upper_triangle():
    # The same check with the weights parametrized by their upper triangle theta_ij (i < j):
    # W = U + U^T, so autograd's d/dtheta_ij is the derivative the learning rule means.
    m = machine(3, 2, seed=2)
    n = m.n_units
    iu = torch.triu_indices(n, n, offset=1)
    theta = m.w.detach()[iu[0], iu[1]].clone().requires_grad_(True)  # (n (n - 1) / 2,)
    b = m.b.detach().clone().requires_grad_(True)
    U = torch.zeros(n, n, dtype=f64).index_put((iu[0], iu[1]), theta)
    log_p = functional_call(m, {"w": U + U.T, "b": b}, (DATA,))  # (B,) exact log p(v)
    g_theta, g_b = torch.autograd.grad(log_p.mean(), [theta, b])
    grad_w, grad_b = m.gradient(DATA)
    torch.testing.assert_close(grad_w[iu[0], iu[1]], g_theta, rtol=0, atol=1e-10)
    torch.testing.assert_close(grad_b, g_b, rtol=0, atol=1e-10)


def test_exact_gradient_matches_finite_differences():
    m = machine(3, 2, seed=3)
    grad_w, grad_b = m.gradient(DATA)
    eps = 1e-5  # central differences: truncation O(eps^2) ~ 1e-10, round-off ~ 1e-16 / eps ~ 1e-11

    def ll_with(i, j, delta):
        with torch.no_grad():
            m.w[i, j] += delta
            if i != j:
                m.w[j, i] += delta  # the one shared parameter w_ij = w_ji
            value = float(m.log_likelihood(DATA))
            m.w[i, j] -= delta
            if i != j:
                m.w[j, i] -= delta
        return value

    for i, j in [(0, 1), (1, 4), (3, 4)]:  # visible-visible, visible-hidden, hidden-hidden
        fd = (ll_with(i, j, eps) - ll_with(i, j, -eps)) / (2 * eps)
        assert abs(fd - float(grad_w[i, j])) < 1e-8, (i, j, fd, float(grad_w[i, j]))
    with torch.no_grad():
        m.b[2] += eps
        up = float(m.log_likelihood(DATA))
        m.b[2] -= 2 * eps
        down = float(m.log_likelihood(DATA))
        m.b[2] += eps
    assert abs((up - down) / (2 * eps) - float(grad_b[2])) < 1e-8


# -- 2. the Gibbs sampler against the exact distribution --------------------------------------


def test_gibbs_stationary_distribution_matches_exact():
    m = machine(3, 2, seed=4)
    p_v = m.exact_marginal()  # (8,)
    p_vh = m._joint_log_prob().detach().exp().reshape(-1)  # (32,)
    assert tv(p_v, torch.full((8,), 1 / 8, dtype=f64)) > 0.15  # far from uniform: the test can fail
    N = 20000
    gen = torch.Generator().manual_seed(0)
    v0 = (torch.rand(N, 3, generator=gen) < 0.5).to(f64)
    h0 = (torch.rand(N, 2, generator=gen) < 0.5).to(f64)
    v0_copy, h0_copy = v0.clone(), h0.clone()
    v, h = m.gibbs(v0, h0, sweeps=50, generator=gen)
    assert torch.equal(v0, v0_copy) and torch.equal(h0, h0_copy)  # the inputs are not modified
    # N independent chains, one sample each. For an empirical distribution of N samples over
    # K states, E|p_hat_k - p_k| <= sqrt(p_k / N) * sqrt(2 / pi) asymptotically, so by
    # Cauchy-Schwarz E[TV] <= 1/2 sqrt(2 K / (pi N)): 0.008 for K = 8, 0.016 for K = 32.
    # The thresholds are about 2.2 times these bounds on the mean.
    assert tv(histogram(v, 3), p_v) < 0.018
    assert tv(histogram(torch.cat([v, h], 1), 5), p_vh) < 0.035
    assert v.shape == (N, 3) and h.shape == (N, 2)


def test_gibbs_clamped_phase_matches_conditional():
    m = machine(3, 2, seed=5)
    per = 4000
    vs = binary_states(3).repeat_interleave(per, 0)  # (8 * per, 3), every visible vector
    gen = torch.Generator().manual_seed(1)
    h0 = (torch.rand(vs.shape[0], 2, generator=gen) < 0.5).to(f64)
    v, h = m.gibbs(vs, h0, sweeps=30, clamp_visible=True, generator=gen)
    assert torch.equal(v, vs)  # clamped units never move
    exact = m.exact_conditional(binary_states(3))  # (8, 4) p(h | v)
    torch.testing.assert_close(exact.sum(1), torch.ones(8, dtype=f64))
    # per visible vector, K = 4 hidden states and N = 4000 samples: E[TV] <= 0.0126
    for k in range(8):
        assert tv(histogram(h[k * per:(k + 1) * per], 2), exact[k]) < 0.03, k


# -- 3. sampled statistics against exact ones -------------------------------------------------


def test_sampled_statistics_converge_to_exact():
    m = machine(3, 2, seed=6)
    exact = m.exact_statistics(DATA)
    assert isinstance(exact, PhaseStatistics)
    gen = torch.Generator().manual_seed(2)
    sampled = m.sampled_statistics(DATA, sweeps=10, chains=10000, burn_in=30, generator=gen)
    # Every estimate averages, over >= 10000 independent chains, a per-chain time average of
    # values in [0, 1] (variance <= 1/4), so its standard error is <= 0.5 / sqrt(10000) =
    # 0.005; 0.025 is five standard errors (about 6e-7 two-sided per entry).
    for name, e, s in zip(PhaseStatistics._fields, exact, sampled):
        assert s.shape == e.shape
        err = float((s - e).abs().max())
        assert err < 0.025, (name, err)
    # and the clamped and free phases differ by more than that, so the gradient is not noise
    assert float((exact.data_corr - exact.model_corr).abs().max()) > 0.1


def test_gibbs_gradient_is_close_to_exact_gradient():
    m = machine(3, 2, seed=7)
    gw, gb = m.gradient(DATA)
    sw, sb = m.gradient(DATA, method="gibbs", sweeps=10, chains=10000, burn_in=30,
                        generator=torch.Generator().manual_seed(3))
    assert torch.equal(sw, sw.T) and torch.equal(sw.diagonal(), torch.zeros(5, dtype=f64))
    # a difference of two estimates, each within 0.025 (five standard errors)
    assert float((sw - gw).abs().max()) < 0.05
    assert float((sb - gb).abs().max()) < 0.05


# -- 4. learning 3-bit parity ------------------------------------------------------------------


def test_visible_only_machine_cannot_beat_log2_on_parity():
    # Any pairwise machine: KL >= log 2 (parity's pairwise statistics are those of the
    # uniform distribution, which is the best pairwise fit); a few random machines.
    data = parity_problem(3)
    for seed in range(5):
        assert machine(3, 0, seed=seed).kl_divergence(data) >= LOG2 - 1e-12


def test_exact_learning_parity_needs_hidden_units():
    data = parity_problem(3)
    results = {}
    for k, epochs in ((0, 300), (4, 800)):
        m = BoltzmannMachine(visible_size=3, hidden_size=k, init_std=1.0, generator=torch.Generator().manual_seed(0))
        r = m.fit(data, epochs=epochs, lr=0.2, momentum=0.9, method="exact")
        assert isinstance(r, FitResult) and len(r.kl) == len(r.log_likelihood) == epochs + 1
        assert torch.equal(m.w, m.w.T) and torch.equal(m.w.diagonal(), torch.zeros(3 + k, dtype=f64))
        # KL = -H(data) - mean log p(v), H(data) = log 4
        assert abs(r.kl[-1] - (-math.log(4) - r.log_likelihood[-1])) < 1e-12
        results[k] = r.kl[-1]
    # measured: 0.693147 (k = 0); 0.0135 (k = 4, 800 epochs; 0.0125 to 0.0157 over seeds 0 to 4)
    assert LOG2 - 1e-12 <= results[0] < LOG2 + 1e-4
    assert results[4] < 0.02


def test_gibbs_learning_parity():
    data = parity_problem(3)
    gen = torch.Generator().manual_seed(0)
    m = BoltzmannMachine(visible_size=3, hidden_size=4, init_std=1.0, generator=gen)
    r = m.fit(data, epochs=300, lr=1.0, method="gibbs", generator=gen, chains=250, sweeps=5, burn_in=5)
    assert r.method == "gibbs" and len(r.kl) == 301
    assert torch.equal(m.w, m.w.T) and torch.equal(m.w.diagonal(), torch.zeros(7, dtype=f64))
    # measured: 1.356 -> 0.212 (seed 0; 0.12 to 0.26 over seeds 0 to 4). Below half the
    # start, and below half of log 2, the best any machine without hidden units can do.
    assert r.kl[-1] < 0.5 * r.kl[0]
    assert r.kl[-1] < 0.5 * LOG2


# -- 5. energy, distribution, enumeration order ----------------------------------------------


def test_energy_by_hand_and_batch():
    m = BoltzmannMachine(visible_size=2, hidden_size=1)
    with torch.no_grad():
        m.w.copy_(torch.tensor([[0.0, 0.5, -1.0], [0.5, 0.0, 2.0], [-1.0, 2.0, 0.0]], dtype=f64))
        m.b.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=f64))
    v = torch.tensor([[1, 1], [1, 0], [0, 0]], dtype=f64)
    h = torch.tensor([[1], [1], [0]], dtype=f64)
    # E = -(sum_{i<j} w_ij s_i s_j) - sum_i b_i s_i
    expected = torch.tensor([-(0.5 - 1.0 + 2.0) - (0.1 - 0.2 + 0.3), 1.0 - (0.1 + 0.3), 0.0], dtype=f64)
    torch.testing.assert_close(m.energy(v, h), expected, rtol=0, atol=1e-15)
    assert m.energy(v, h).shape == (3,)
    m0 = BoltzmannMachine(visible_size=2, hidden_size=0)
    assert m0.energy(v, None).shape == (3,)


def test_enumeration_order_and_marginal_by_brute_force():
    assert torch.equal(binary_states(2), torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=f64))
    assert binary_states(0).shape == (1, 0)
    m = machine(3, 2, seed=8)
    assert torch.equal(m.exact_states(), binary_states(3))
    p = m.exact_marginal()
    assert p.dtype == f64 and p.shape == (8,)
    torch.testing.assert_close(p.sum(), torch.tensor(1.0, dtype=f64), rtol=0, atol=1e-14)
    # p(v) = sum_h exp(-E(v, h)) / Z, by explicit loops over the states
    weights = {}
    for bits in itertools.product([0, 1], repeat=5):
        s = torch.tensor([bits], dtype=f64)
        weights[bits] = math.exp(-float(m.energy(s[:, :3], s[:, 3:]).detach()))
    Z = sum(weights.values())
    brute = [sum(weights[tuple(v) + hh] for hh in itertools.product([0, 1], repeat=2)) / Z
             for v in itertools.product([0, 1], repeat=3)]  # itertools order = binary_states order
    torch.testing.assert_close(p, torch.tensor(brute, dtype=f64), rtol=1e-12, atol=0)
    # the four statistics by explicit sums: free phase over p(v, h), clamped phase over the
    # data rows with p(h | v) = p(v, h) / p(v)
    stats = m.exact_statistics(DATA)
    model_corr = sum(w * torch.outer(torch.tensor(s, dtype=f64), torch.tensor(s, dtype=f64))
                     for s, w in weights.items()) / Z
    data_corr = torch.zeros(5, 5, dtype=f64)
    for row in DATA.tolist():
        v = tuple(int(x) for x in row)
        pv = sum(weights[v + hh] for hh in itertools.product([0, 1], repeat=2))
        for hh in itertools.product([0, 1], repeat=2):
            s = torch.tensor(v + hh, dtype=f64)
            data_corr += weights[v + hh] / pv * torch.outer(s, s) / DATA.shape[0]
    torch.testing.assert_close(stats.model_corr, model_corr, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(stats.data_corr, data_corr, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(stats.model_mean, model_corr.diagonal(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(stats.data_mean, data_corr.diagonal(), rtol=1e-12, atol=1e-14)
    # log_likelihood and forward
    torch.testing.assert_close(m(DATA), p[[5, 5, 3, 0, 6]].log())
    torch.testing.assert_close(m.log_likelihood(DATA), p[[5, 5, 3, 0, 6]].log().mean())
    # KL from the empirical distribution (duplicates count)
    q = torch.tensor([1, 0, 0, 1, 0, 2, 1, 0], dtype=f64) / 5
    seen = q > 0
    kl = float((q[seen] * (q[seen] / p[seen]).log()).sum())
    assert abs(m.kl_divergence(DATA) - kl) < 1e-12


def test_init_symmetric_zero_diagonal_and_parameters():
    m = BoltzmannMachine(visible_size=4, hidden_size=3, generator=torch.Generator().manual_seed(0))
    assert isinstance(m.w, torch.nn.Parameter) and isinstance(m.b, torch.nn.Parameter)
    assert m.w.dtype == f64 and m.w.shape == (7, 7) and m.b.shape == (7,)
    assert torch.equal(m.w, m.w.T) and torch.equal(m.w.diagonal(), torch.zeros(7, dtype=f64))
    assert torch.equal(m.b, torch.zeros(7, dtype=f64)) and float(m.w.detach().abs().max()) > 0
    assert m.config.visible_size == 4 and m.config.hidden_size == 3


def test_config_and_both_ways_to_build():
    cfg = BoltzmannConfig(visible_size=3, hidden_size=2, init_std=0.5)
    a = BoltzmannMachine(cfg, generator=torch.Generator().manual_seed(4))
    b = BoltzmannMachine(visible_size=3, hidden_size=2, init_std=0.5, generator=torch.Generator().manual_seed(4))
    assert a.config == b.config == cfg and (a.visible_size, a.hidden_size, a.n_units) == (3, 2, 5)
    assert torch.equal(a.w, b.w)  # the same draw from the same generator
    assert BoltzmannConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict() == {"visible_size": 3, "hidden_size": 2, "init_std": 0.5}
    assert BoltzmannMachine(visible_size=2, hidden_size=0).config.init_std == 0.1  # the class default


def test_bad_configs():
    with pytest.raises(ValueError, match=r"BoltzmannMachine\(config, \*\*kwargs\): expected a config or keyword "
                                         r"arguments, not both, received \['hidden_size'\]"):
        BoltzmannMachine(BoltzmannConfig(visible_size=3, hidden_size=1), hidden_size=2)
    with pytest.raises(ValueError, match="config: expected a BoltzmannConfig, received int"):
        BoltzmannMachine(3)
    with pytest.raises(TypeError):
        BoltzmannMachine(3, 1)  # the sizes are keywords (or a config)
    with pytest.raises(ValueError, match=r"Boltzmann config: expected fields among \['hidden_size', 'init_std', "
                                         r"'visible_size'\], received unknown fields \['n_visible'\]"):
        BoltzmannConfig.from_dict({"n_visible": 3, "hidden_size": 1})
    with pytest.raises(ValueError, match="init_std: expected a finite number >= 0, received inf"):
        BoltzmannConfig(visible_size=3, hidden_size=1, init_std=float("inf"))
    with pytest.raises(ValueError, match=r"init_std: expected a number >= 0.0, received -1.0"):
        BoltzmannConfig(visible_size=3, hidden_size=1, init_std=-1.0)


def test_accepts_numpy_lists_and_large_machines_for_sampling():
    m = machine(3, 0, seed=9)
    a = m.kl_divergence(DATA)
    assert m.kl_divergence(DATA.numpy().astype(np.int64)) == a
    assert m.kl_divergence(DATA.tolist()) == a
    big = BoltzmannMachine(visible_size=15, hidden_size=10)  # beyond enumeration, but Gibbs sampling works
    v, h = big.gibbs(torch.zeros(2, 15), torch.zeros(2, 10), sweeps=1)
    assert v.shape == (2, 15) and h.shape == (2, 10)


# -- 6. input checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("data, message", [
    ([[0, 0.5, 1], [2, 1, 0]], r"data: expected values in \{0, 1\}, received 0.5, 2$"),
    ([[0, float("nan"), 1]], r"data: expected values in \{0, 1\}, received nan$"),
    (torch.zeros(4, 2), r"data: expected visible_size = 3 columns, received 2 columns in shape \(4, 2\)"),
    (torch.zeros(0, 3), r"data: expected at least one row, received shape \(0, 3\)"),
    (torch.zeros(3), r"data: expected a 2-D tensor \(rows, visible_size\), received shape \(3\)"),
    ("0 1 1", r"data: expected a 2-D tensor or array .* received str"),
])
def test_bad_data(data, message):
    m = BoltzmannMachine(visible_size=3, hidden_size=1)
    for call in (m.kl_divergence, m.log_likelihood, m.exact_statistics, m.gradient,
                 lambda d: m.fit(d, epochs=1, lr=0.1), lambda d: m.sampled_statistics(d, sweeps=1, chains=1)):
        with pytest.raises(ValueError, match=message):
            call(data)


def test_too_many_units_for_enumeration():
    m = BoltzmannMachine(visible_size=15, hidden_size=6)
    msg = rf"enumeration: expected at most {MAX_ENUMERATED_UNITS} units .*received 21 units"
    for call in (m.exact_marginal, lambda: m.kl_divergence(torch.zeros(1, 15)),
                 lambda: m.exact_statistics(torch.zeros(1, 15)),
                 lambda: m.fit(torch.zeros(1, 15), epochs=1, lr=0.1, method="gibbs")):
        with pytest.raises(ValueError, match=msg):
            call()
    with pytest.raises(ValueError, match="received 21 units"):
        binary_states(21)


@pytest.mark.parametrize("args, message", [
    ((0, 1), r"visible_size: expected an integer >= 1, received 0"),
    ((2.0, 1), r"visible_size: expected an integer, received 2.0"),
    ((3, -1), r"hidden_size: expected an integer >= 0, received -1"),
    ((3, True), r"hidden_size: expected an integer, received True"),
])
def test_bad_sizes(args, message):
    with pytest.raises(ValueError, match=message):
        BoltzmannMachine(visible_size=args[0], hidden_size=args[1])


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0.0}, r"lr: expected a number > 0.0, received 0.0"),
    ({"lr": -1}, r"lr: expected a number > 0.0, received -1.0"),
    ({"lr": float("nan")}, r"lr: expected a number, received nan"),
    ({"lr": float("inf")}, r"lr: expected a finite number > 0, received inf"),
    ({"epochs": 0}, r"epochs: expected an integer >= 1, received 0"),
    ({"method": "cd"}, r"method: expected one of 'exact', 'gibbs', received 'cd'"),
    ({"momentum": 1.0}, r"momentum: expected a number < 1.0, received 1.0"),
    ({"sweeps": 0, "method": "gibbs"}, r"sweeps: expected an integer >= 1, received 0"),
    ({"chains": 0, "method": "gibbs"}, r"chains: expected an integer >= 1, received 0"),
])
def test_bad_fit_options(kwargs, message):
    options = {"epochs": 1, "lr": 0.1} | kwargs
    m = BoltzmannMachine(visible_size=3, hidden_size=1)
    w = m.w.detach().clone()
    with pytest.raises(ValueError, match=message):
        m.fit(DATA, **options)
    assert torch.equal(m.w, w)  # nothing trained


def test_bad_gibbs_inputs():
    m = BoltzmannMachine(visible_size=3, hidden_size=2)
    v, h = torch.zeros(4, 3), torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"sweeps: expected an integer >= 1, received 0"):
        m.gibbs(v, h, sweeps=0)
    with pytest.raises(ValueError, match=r"h: expected hidden_size = 2 columns, received 3 columns"):
        m.gibbs(v, torch.zeros(4, 3), sweeps=1)
    with pytest.raises(ValueError, match=r"h: expected 4 rows \(as many as v\), received 3 rows"):
        m.gibbs(v, torch.zeros(3, 2), sweeps=1)
    with pytest.raises(ValueError, match=r"h: expected a \(B, hidden_size = 2\) tensor, received None"):
        m.energy(v, None)
    with pytest.raises(ValueError, match=r"h: expected values in \{0, 1\}, received -1"):
        m.gibbs(v, -torch.ones(4, 2), sweeps=1)
    with pytest.raises(ValueError, match="generator: expected a torch.Generator or None, received int"):
        m.gibbs(v, h, sweeps=1, generator=0)
    with pytest.raises(ValueError, match=r"burn_in: expected an integer >= 0, received -1"):
        m.sampled_statistics(DATA, burn_in=-1)


# -- 7. overflow ---------------------------------------------------------------------------------


def test_a_learning_rate_or_initial_scale_past_the_bound_is_refused():
    from seqlab.energy.boltzmann import MAX_INIT_STD, MAX_LR

    m = BoltzmannMachine(visible_size=3, hidden_size=1)
    w = m.w.detach().clone()
    for lr in (1e308, MAX_LR * 1.01):
        pattern = (r"^lr: expected a number <= 1000 \(a gradient is at most 1 per weight: larger steps only overflow "
                   rf"the energies\), received {re.escape(str(lr))}$")
        with pytest.raises(ValueError, match=pattern):
            m.fit(DATA, epochs=1, lr=lr)
    assert torch.equal(m.w, w)
    m.fit(DATA, epochs=1, lr=MAX_LR)  # the bound itself is allowed, and stays finite
    assert torch.isfinite(m.w).all()
    with pytest.raises(ValueError, match=r"^init_std: expected a number <= 1000 \(larger weights only overflow the "
                                         r"energies\), received 1e\+308$"):
        BoltzmannConfig(visible_size=3, hidden_size=1, init_std=1e308)
    assert BoltzmannConfig(visible_size=3, hidden_size=1, init_std=MAX_INIT_STD).init_std == MAX_INIT_STD


def test_an_update_that_overflows_stops_the_fit_and_keeps_the_last_good_weights(monkeypatch):
    m = BoltzmannMachine(visible_size=3, hidden_size=1, generator=torch.Generator().manual_seed(0))
    real_rule = BoltzmannMachine._rule
    calls = []

    def rule(stats):
        g_w, g_b = real_rule(stats)
        calls.append(1)
        return (g_w * 1e308, g_b) if len(calls) == 3 else (g_w, g_b)  # finite, but lr * u overflows

    monkeypatch.setattr(BoltzmannMachine, "_rule", staticmethod(rule))
    with pytest.raises(FloatingPointError, match=r"^fit: weights overflowed at epoch 3 \(lr 10\); weights left as "
                                                 r"after epoch 2$"):
        m.fit(DATA, epochs=5, lr=10.0)
    w2, b2 = m.w.detach().clone(), m.b.detach().clone()
    assert torch.isfinite(w2).all() and torch.isfinite(b2).all()
    monkeypatch.setattr(BoltzmannMachine, "_rule", staticmethod(real_rule))
    again = BoltzmannMachine(visible_size=3, hidden_size=1, generator=torch.Generator().manual_seed(0))
    again.fit(DATA, epochs=2, lr=10.0)
    assert torch.equal(again.w, w2) and torch.equal(again.b, b2)  # exactly the weights after epoch 2
