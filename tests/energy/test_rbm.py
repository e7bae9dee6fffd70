"""The Bernoulli RBM: the lecture's energy and its conditionals by enumeration, the free
energy, the hand-written CD/PCD gradient against autograd of the exact log-likelihood, the
pseudo-likelihood, parity with scikit-learn's BernoulliRBM, learning and bad input. Runs,
the command line and the evaluation: test_rbm_family.py and test_rbm_eval.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqlab.data.images import binary_digits, load_images
from seqlab.energy.rbm import PRESETS, RBM, RBMConfig, all_states, check_binary

f64 = torch.float64


def small_rbm(D=4, H=3, seed=0, scale=1.0, **kw) -> RBM:
    torch.manual_seed(seed)
    m = RBM(visible_size=D, hidden_size=H, **kw).double()
    with torch.no_grad():
        m.W.copy_(torch.randn(H, D, dtype=f64) * scale)
        m.b.copy_(torch.randn(D, dtype=f64) * 0.5)
        m.c.copy_(torch.randn(H, dtype=f64) * 0.5)
    return m


def joint(m: RBM):
    """All (v, h) pairs and their exact probabilities p(v, h) = exp(-E) / Z."""
    D, H = m.config.visible_size, m.config.hidden_size
    V, Hs = all_states(D), all_states(H)
    v = V.repeat_interleave(Hs.shape[0], 0)  # (2^D 2^H, D)
    h = Hs.repeat(V.shape[0], 1)  # (2^D 2^H, H)
    logp = -m.energy(v, h)
    return v, h, torch.softmax(logp, 0), torch.logsumexp(logp, 0)


# --------------------------------------------------------------------------- the math


def test_energy_is_the_lectures_formula():
    m = small_rbm()
    v = torch.tensor([[1.0, 0, 1, 1]], dtype=f64)
    h = torch.tensor([[0.0, 1, 1]], dtype=f64)
    expected = -(m.b @ v[0]) - (m.c @ h[0]) - sum(m.W[j, i] * h[0, j] * v[0, i] for j in range(3) for i in range(4))
    assert torch.allclose(m.energy(v, h), expected.reshape(1), atol=1e-12)


def test_conditionals_match_enumeration():
    m = small_rbm()
    v, h, p, _ = joint(m)
    V = all_states(4)
    ph = m.p_h(V)  # (16, 3)
    for r in range(V.shape[0]):
        rows = (v == V[r]).all(1)
        pv = p[rows].sum()
        exact = (p[rows, None] * h[rows]).sum(0) / pv  # E[h | v] = p(h_j = 1 | v)
        assert torch.allclose(ph[r], exact, atol=1e-12)
    Hs = all_states(3)
    pvh = m.p_v(Hs)
    for r in range(Hs.shape[0]):
        rows = (h == Hs[r]).all(1)
        exact = (p[rows, None] * v[rows]).sum(0) / p[rows].sum()
        assert torch.allclose(pvh[r], exact, atol=1e-12)


def test_free_energy_and_partition_function_match_enumeration():
    m = small_rbm()
    v, h, p, logZ = joint(m)
    V = all_states(4)
    for r in range(V.shape[0]):
        rows = (v == V[r]).all(1)
        exact = -torch.logsumexp(-m.energy(v[rows], h[rows]), 0)  # F(v) = -log sum_h exp(-E(v, h))
        assert torch.allclose(m.free_energy(V[r:r + 1]), exact.reshape(1), atol=1e-12)
    assert torch.allclose(m.log_partition(), logZ, atol=1e-12)
    # both enumeration branches (over h when H <= D, over v otherwise) give the same log Z
    wide = small_rbm(D=3, H=5, seed=1)
    _, _, _, logZ_wide = joint(wide)
    assert torch.allclose(wide.log_partition(), logZ_wide, atol=1e-12)
    assert torch.allclose(torch.exp(m.log_likelihood(V)).sum(), torch.tensor(1.0, dtype=f64), atol=1e-12)


def test_data_phase_and_model_phase_are_the_gradients_of_minus_F_and_log_Z():
    """The hand-written learning rule's two halves, exactly: <p(h|v) v^T>_data = d(-F)/dW and
    E_model[p(h|v) v^T] = d log Z / dW (and the same for b and c)."""
    m = small_rbm(D=5, H=3, seed=2)
    data = torch.tensor([[1.0, 0, 1, 1, 0], [0, 0, 1, 0, 1], [1, 1, 1, 0, 0]], dtype=f64)
    (-m.free_energy(data).mean()).backward()
    ph = m.p_h(data)
    assert torch.allclose(m.W.grad, ph.t() @ data / 3, atol=1e-12)
    assert torch.allclose(m.b.grad, data.mean(0), atol=1e-12)
    assert torch.allclose(m.c.grad, ph.mean(0), atol=1e-12)
    m.zero_grad()
    m.log_partition().backward()
    V = all_states(5)
    pv = torch.exp(m.log_likelihood(V)).detach()  # p(v) for every v
    phV = m.p_h(V).detach()
    assert torch.allclose(m.W.grad, (pv[:, None] * phV).t() @ V, atol=1e-12)
    assert torch.allclose(m.b.grad, pv @ V, atol=1e-12)
    assert torch.allclose(m.c.grad, pv @ phV, atol=1e-12)


def test_cd_update_estimates_the_exact_log_likelihood_gradient():
    """train_step with CD-k, k large and many chains: the update divided by lr is the exact
    gradient of the mean log-likelihood (autograd over the enumerated model) up to sampling
    noise. Each entry averages M = 20,000 chains of values in [0, 1], so its standard error is
    at most 0.5 / sqrt(M) = 0.0035; the tolerance is 0.02 (about 6 standard errors)."""
    m = small_rbm(D=4, H=3, seed=3, scale=0.7, persistent=False, k=50)
    data = torch.tensor([[1.0, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 1]], dtype=f64)
    m.log_likelihood(data).mean().backward()
    exact = [p.grad.clone() for p in (m.W, m.b, m.c)]
    before = [p.detach().clone() for p in (m.W, m.b, m.c)]
    M, lr = 20000, 1e-3
    batch = data.repeat(M // 4, 1)
    m.train_step(batch, lr=lr, generator=torch.Generator().manual_seed(0))
    for (name, g), p0, p1 in zip(zip("Wbc", exact), before, (m.W, m.b, m.c)):
        estimate = (p1.detach() - p0) / lr
        assert (estimate - g).abs().max() < 0.02, name
    assert float(sum(e.abs().sum() for e in exact)) > 0.5  # a gradient far from zero


@pytest.mark.parametrize("persistent, k", [(True, 1), (True, 3), (False, 1), (False, 2)])
def test_fused_update_agrees_with_the_readable_one(persistent, k):
    """fit(fused=True) and fit(fused=False) draw the same uniforms, so they must end with the
    same weights, biases and chains (float64; a last batch of 5 rows checks the resizing)."""
    x = binary_digits()[0][:205].double()
    models = []
    for fused in (True, False):
        torch.manual_seed(0)
        m = RBM(visible_size=64, hidden_size=30, persistent=persistent, k=k, n_chains=7).double()
        m.fit(x, epochs=2, batch_size=10, lr=0.05, weight_decay=0.01, generator=torch.Generator().manual_seed(1),
              fused=fused)
        models.append(m)
    for name, a in models[0].state_dict().items():
        b = models[1].state_dict()[name]
        assert torch.allclose(a, b, atol=1e-12, rtol=0), name
    start = RBM(visible_size=64, hidden_size=30).double()
    assert not torch.allclose(models[0].W, start.W)  # it did learn something


def test_pcd_chains_persist_and_cd_chains_do_not():
    m = RBM(visible_size=64, hidden_size=20, n_chains=7)
    assert m.h_chain.shape == (7, 20) and "h_chain" in m.state_dict()
    x = binary_digits()[0][:10]
    m.train_step(x, lr=0.05, generator=torch.Generator().manual_seed(0))
    assert m.h_chain.abs().sum() > 0  # the chains moved away from h = 0
    cd = RBM(visible_size=64, hidden_size=20, persistent=False)
    assert cd.h_chain.shape == (0, 20)
    cd.train_step(x, lr=0.05, generator=torch.Generator().manual_seed(0))


def test_pseudo_likelihood_exact_and_stochastic():
    m = small_rbm(D=6, H=4, seed=4)
    v = all_states(6)[[3, 17, 40, 63]]
    f = m.free_energy(v)
    brute = torch.zeros(4, dtype=f64)
    for i in range(6):
        flipped = v.clone()
        flipped[:, i] = 1 - flipped[:, i]
        brute += torch.nn.functional.logsigmoid(m.free_energy(flipped) - f)
    assert torch.allclose(m.pseudo_likelihood(v), brute, atol=1e-12)
    # exact conditionals: PL is the product of p(v_i | v_-i) computed from p(v)
    pv = torch.exp(m.log_likelihood(all_states(6))).detach()
    for r, row in enumerate(v):
        lp = 0.0
        for i in range(6):
            other = row.clone()
            other[i] = 1 - other[i]
            p_same = pv[int("".join(str(int(x)) for x in row.tolist()), 2)]
            p_other = pv[int("".join(str(int(x)) for x in other.tolist()), 2)]
            lp += math.log(p_same / (p_same + p_other))
        assert abs(lp - float(brute[r].detach())) < 1e-10
    # the one-bit estimate is unbiased: its mean over many draws approaches the exact value
    many = v.repeat(20000, 1)
    est = m.pseudo_likelihood(many, stochastic=True, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(est.reshape(20000, 4).mean(0), brute, atol=0.1)


def test_parity_with_scikit_learn_bernoulli_rbm():
    """Same weights in scikit-learn's BernoulliRBM: the same free energy, features and
    one-step Gibbs probabilities; its score_samples (a one-bit pseudo-likelihood estimate)
    averages to our exact pseudo-likelihood."""
    from scipy.special import expit
    from sklearn.neural_network import BernoulliRBM

    m = small_rbm(D=64, H=30, seed=5, scale=0.1)
    x = binary_digits()[0][:50].double()
    sk = BernoulliRBM(n_components=30)
    sk.components_ = m.W.detach().numpy().copy()
    sk.intercept_hidden_ = m.c.detach().numpy().copy()
    sk.intercept_visible_ = m.b.detach().numpy().copy()
    sk.h_samples_ = np.zeros((10, 30))
    xn = x.numpy()
    np.testing.assert_allclose(sk._free_energy(xn), m.free_energy(x).detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(sk.transform(xn), m.transform(x).numpy(), atol=1e-12)
    h = (m.transform(x) > 0.5).double()
    np.testing.assert_allclose(expit(h.numpy() @ sk.components_ + sk.intercept_visible_), m.p_v(h).detach().numpy(),
                               atol=1e-12)
    draws = []
    for seed in range(400):  # score_samples draws its bit from random_state, fixed per call
        sk.random_state = seed
        draws.append(sk.score_samples(xn))
    draws = np.stack(draws)  # (400, 50)
    exact = m.pseudo_likelihood(x).detach().numpy()
    # the mean of 400 one-bit estimates is within 5 standard errors of the exact value
    stderr = draws.std(0) / np.sqrt(400)
    assert (np.abs(draws.mean(0) - exact) < 5 * stderr + 1e-9).all()


# --------------------------------------------------------------------------- learning


def independent_pixels_log_likelihood(train: torch.Tensor, test: torch.Tensor) -> float:
    """Baseline: every pixel an independent Bernoulli with its training mean (its PL is its
    log-likelihood)."""
    p = train.mean(0).clamp(1e-3, 1 - 1e-3)
    return float((test * p.log() + (1 - test) * (1 - p).log()).sum(1).mean())


@torch.no_grad()
def test_pcd_learns_digits_beyond_the_independent_pixel_baseline():
    data = load_images("digits")
    tr, te = data.split("train").x, data.split("test").x
    torch.manual_seed(0)
    m = RBM(visible_size=64, hidden_size=50)
    start = float(m.pseudo_likelihood(te).mean())
    m.fit(tr, epochs=5, batch_size=10, lr=0.05, generator=torch.Generator().manual_seed(0))
    end = float(m.pseudo_likelihood(te).mean())
    base = independent_pixels_log_likelihood(tr, te)
    assert end > base + 3.0, (start, end, base)  # measured: about -20 against -31
    assert end > start + 15.0
    recon = float(((m.reconstruct(te) - te) ** 2).mean())
    assert recon < 0.1  # measured about 0.07; the mean image gives about 0.19


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad, message", [
    (torch.full((3, 64), 0.5), r"binary values in \{0, 1\}.*received 192 other value\(s\), e.g. 0.5"),
    (torch.tensor([[2.0] * 64]), r"received 64 other value\(s\), e.g. 2"),
    (torch.tensor([[float("nan")] * 64]), r"binary values"),
    (torch.ones(3, 10), r"64 units per row, received 10"),
    (torch.ones(64), r"a 2-D tensor \(batch, units\), received shape \(64\)"),
    (torch.ones(0, 64), r"at least one row"),
    ([[0, 1]], r"a torch.Tensor of 0s and 1s, received list"),
])
def test_non_binary_or_misshaped_data_is_refused(bad, message):
    m = RBM(visible_size=64, hidden_size=8)
    for call in (lambda: m.fit(bad, epochs=1), lambda: m.train_step(bad, lr=0.1), lambda: m.free_energy(bad),
                 lambda: m.transform(bad), lambda: m.pseudo_likelihood(bad)):
        with pytest.raises(ValueError, match=message):
            call()


def test_integer_binary_data_is_accepted():
    v = check_binary(torch.tensor([[0, 1, 1]]), "v", 3)
    assert v.dtype == torch.float32


@pytest.mark.parametrize("kwargs, message", [
    ({"hidden_size": 0}, r"hidden_size: expected an integer >= 1, received 0"),
    ({"visible_size": 0}, r"visible_size: expected an integer >= 1, received 0"),
    ({"k": 0}, r"k: expected an integer >= 1, received 0"),
    ({"n_chains": 0}, r"n_chains: expected an integer >= 1, received 0"),
    ({"persistent": "yes"}, r"persistent: expected True or False"),
    ({"init_std": -1.0}, r"init_std: expected a number >= 0.0"),
])
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RBMConfig(**kwargs)


def test_presets():
    assert set(PRESETS) >= {"cpu-tiny", "cpu-small"}
    assert RBMConfig.preset("cpu-small") == RBMConfig()  # cpu-small is the defaults
    tiny = RBMConfig.preset("cpu-tiny", visible_size=16)
    assert tiny.visible_size == 16 and tiny.hidden_size < RBMConfig().hidden_size
    assert RBM(tiny).W.shape == (tiny.hidden_size, 16)
    with pytest.raises(ValueError, match="preset: expected one of"):
        RBMConfig.preset("huge")


def test_bad_fit_settings_and_enumeration_limit():
    m = RBM(visible_size=64, hidden_size=30)
    x = torch.ones(4, 64)
    with pytest.raises(ValueError, match="epochs: expected an integer >= 1, received 0"):
        m.fit(x, epochs=0)
    with pytest.raises(ValueError, match="lr: expected a number > 0.0, received -0.1"):
        m.fit(x, epochs=1, lr=-0.1)
    with pytest.raises(ValueError, match="at most 20 visible or hidden units.*received 64 visible and 30 hidden"):
        m.log_partition()
    with pytest.raises(ValueError, match="steps: expected an integer >= 1, received 0"):
        m.sample(3, steps=0)


def test_cpu_threads_restores_the_setting():
    from seqlab.training.device import cpu_threads

    before = torch.get_num_threads()  # tests/conftest.py sets 1
    try:
        torch.set_num_threads(2)
        with cpu_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with cpu_threads(None):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
