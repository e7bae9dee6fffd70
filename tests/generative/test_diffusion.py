"""DDPM and DDIM: the forward process in closed form against step-by-step noising, the
schedules, the reverse steps with a perfect noise predictor, L_simple written out, learning
on the 8x8 digits against a per-pixel Gaussian denoiser, sampling, 28x28 images, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from seqlab.generative.common import from_signed
from seqlab.generative.diffusion import PRESETS, Diffusion, DiffusionConfig, beta_schedule

f64 = torch.float64


def randomized(model: Diffusion, seed: int = 0) -> Diffusion:
    """The U-Net's output conv starts at zero (eps_theta = 0); give it weights, so eps_theta
    depends on x_t and t and the tests see its coefficients."""
    torch.manual_seed(seed)
    nn.init.normal_(model.net.conv_out.weight, std=0.1)
    nn.init.normal_(model.net.conv_out.bias, std=0.1)
    return model


def x0_signed(n: int = 4, size: int = 8, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g, dtype=dtype) * 2 - 1  # (n, 1, S, S) in [-1, 1]


def perfect_eps(model: Diffusion, x0: torch.Tensor):
    """eps_theta that returns the true noise of x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps."""
    def eps_theta(x_t, t):
        t = torch.full((x_t.shape[0],), t) if isinstance(t, int) else t
        ab = model.alpha_bars[t].view(-1, 1, 1, 1)  # float64
        return ((x_t - ab.sqrt() * x0) / (1 - ab).sqrt()).to(x_t.dtype)
    return eps_theta


# ---- 1. the forward process


def test_closed_form_forward_process_matches_step_by_step_noising():
    m = Diffusion()
    N = 10_000  # chains per pixel
    g = torch.Generator().manual_seed(0)
    x0 = x0_signed(1, size=4, dtype=f64)[0]  # (1, 4, 4): P = 16 pixels of one fixed x_0
    P = x0.numel()
    x = x0.expand(N, 1, 4, 4).clone()  # (N, 1, 4, 4)
    checkpoints = {1, 10, 50, 200}
    for s in range(1, m.T + 1):
        # x_s = sqrt(alpha_s) x_{s-1} + sqrt(beta_s) eps_s
        x = m.alphas[s].sqrt() * x + m.betas[s].sqrt() * torch.randn(x.shape, generator=g, dtype=f64)
        if s in checkpoints:
            ab = float(m.alpha_bars[s])
            mean, var = x.mean(0), x.var(0)  # (1, 8, 8) each, over the N chains
            # q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I). Standard errors: the
            # mean sqrt(v / N), the sample variance v sqrt(2 / (N - 1)) (Gaussian). 5 standard
            # errors on each of 4 x 16 checks: a chance failure has probability ~ 64 * 6e-7.
            se_mean, se_var = math.sqrt((1 - ab) / N), (1 - ab) * math.sqrt(2 / (N - 1))
            assert (mean - math.sqrt(ab) * x0).abs().max() < 5 * se_mean, s
            assert (var - (1 - ab)).abs().max() < 5 * se_var, s
            # averaged over the P independent pixels, the errors shrink by sqrt(P)
            assert abs(float((mean - math.sqrt(ab) * x0).mean())) < 5 * se_mean / math.sqrt(P), s
            assert abs(float(var.mean()) - (1 - ab)) < 5 * se_var / math.sqrt(P), s


def test_q_sample_is_the_closed_form_for_a_given_eps():
    m = Diffusion()
    x0, eps = x0_signed(3), torch.randn(3, 1, 8, 8)
    t = torch.tensor([1, 57, 200])
    # alpha_bar_t from the paper's linear schedule, rescaled to T = 200, in float64
    ab = torch.cumprod(1 - torch.linspace(1e-4 * 5, 0.02 * 5, 200, dtype=f64), 0)[t - 1].view(-1, 1, 1, 1)
    expected = ab.sqrt() * x0.double() + (1 - ab).sqrt() * eps.double()
    # float32 x_t: rounding ~ 6e-8 |x_t| <= 3e-7 for |x_t| <= 5
    torch.testing.assert_close(m.q_sample(x0, t, eps).double(), expected, rtol=0, atol=1e-6)
    # an int t is the same t for the whole batch
    torch.testing.assert_close(m.q_sample(x0, 57, eps), m.q_sample(x0, torch.tensor([57] * 3), eps))
    # alpha_bar_t = prod_{s <= t} alpha_s, alpha_t = 1 - beta_t
    torch.testing.assert_close(m.alpha_bars, torch.cumprod(m.alphas, 0))
    torch.testing.assert_close(m.alphas, 1 - m.betas)


# ---- 2. schedules and the reverse steps


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("T", [1, 10, 200, 1000])
def test_schedules(schedule, T):
    m = Diffusion(beta_schedule=schedule, timesteps=T)
    betas, ab = m.betas[1:], m.alpha_bars
    assert m.betas.shape == (T + 1,) and float(m.betas[0]) == 0.0 and float(ab[0]) == 1.0
    assert bool(((betas > 0) & (betas < 1)).all())
    assert bool(((ab[1:] > 0) & (ab[1:] < 1)).all()) and bool((ab[1:] < ab[:-1]).all())  # decreasing
    # posterior variance: beta~_1 = 0 (no noise at the last step), 0 < beta~_t <= beta_t after
    assert float(m.posterior_variance[1]) == 0.0
    assert bool((m.posterior_variance[2:] > 0).all() and (m.posterior_variance[1:] <= betas + 1e-9).all())
    if T >= 200:
        assert float(ab[-1]) < 1e-3  # x_T is (nearly) pure noise


def test_linear_schedule_is_hos_rescaled_and_cosine_follows_its_formula():
    b = beta_schedule("linear", 1000)
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)  # Ho et al.
    b = beta_schedule("linear", 200)  # both ends x 1000 / T
    assert b[0].item() == pytest.approx(5e-4) and b[-1].item() == pytest.approx(0.1)
    T, s = 100, 0.008
    ab = torch.cumprod(1 - beta_schedule("cosine", T), 0)
    t = torch.arange(1, T + 1, dtype=f64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
    torch.testing.assert_close(ab[:-1], f[:-1])  # the last beta is capped at 0.999


def test_one_ancestral_step_from_x1_with_a_perfect_predictor_returns_x0(monkeypatch):
    m = Diffusion()
    x0, eps = x0_signed(), torch.randn(4, 1, 8, 8)
    monkeypatch.setattr(m, "eps_theta", perfect_eps(m, x0))
    x1 = m.q_sample(x0, 1, eps)
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(m.p_sample(x1, 1, g), x0, rtol=0, atol=1e-5)
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(0).get_state())  # no noise drawn at t = 1


@pytest.mark.parametrize("t", [2, 30, 200])
def test_ancestral_step_is_the_posterior_mean_plus_its_noise(t, monkeypatch):
    # with the true eps, mu_theta = mu~_t(x_t, x_0) = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
    #   + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t, and the noise is sqrt(beta~_t) z
    m = Diffusion().double()
    x0 = x0_signed(dtype=f64)
    x_t = m.q_sample(x0, t, torch.randn(4, 1, 8, 8, dtype=f64))
    monkeypatch.setattr(m, "eps_theta", perfect_eps(m, x0))
    ab_t, ab_prev, beta, alpha = m.alpha_bars[t], m.alpha_bars[t - 1], m.betas[t], m.alphas[t]
    mu = ab_prev.sqrt() * beta / (1 - ab_t) * x0 + alpha.sqrt() * (1 - ab_prev) / (1 - ab_t) * x_t
    beta_tilde = (1 - ab_prev) / (1 - ab_t) * beta
    z = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=f64)
    got = m.p_sample(x_t, t, torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, mu + beta_tilde.sqrt() * z, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method, steps", [("ddim", 1), ("ddim", 3), ("ddim", 17), ("ddim", 200), ("ddpm", None)])
def test_sampling_with_a_perfect_predictor_returns_x0(method, steps, monkeypatch):
    m = Diffusion().double()
    x0 = x0_signed(dtype=f64)
    monkeypatch.setattr(m, "eps_theta", perfect_eps(m, x0))
    out = m.sample(4, method=method, steps=steps, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, from_signed(x0), rtol=0, atol=1e-6)


def test_ddim_with_eta_1_on_every_timestep_is_ancestral_sampling():
    # the U-Net's initial weights fixed, not left to the tests run before in the same process: from
    # some states (1 of 30 seeds tried) both samplers saturate every pixel alike
    torch.manual_seed(0)
    m = randomized(Diffusion(timesteps=20))
    a = m.sample(3, method="ddpm", generator=torch.Generator().manual_seed(5))
    b = m.sample(3, method="ddim", steps=20, eta=1.0, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    c = m.sample(3, method="ddim", steps=20, eta=0.0, generator=torch.Generator().manual_seed(5))
    assert (a - c).abs().max() > 1e-2  # eta = 0 is another sampler


# ---- 3. the loss


def test_loss_is_l_simple_written_out(monkeypatch):
    m = randomized(Diffusion())
    x = torch.rand(5, 1, 8, 8)
    t, eps = torch.tensor([1, 2, 50, 199, 200]), torch.randn(5, 1, 8, 8)
    loss, metrics = m.loss(x, t=t, eps=eps)
    ab = m.alpha_bars[t].view(-1, 1, 1, 1)  # float64
    x_t = (ab.sqrt() * (2 * x - 1) + (1 - ab).sqrt() * eps).float()  # x_0 = 2 x - 1 in [-1, 1]
    expected = ((eps - m.net(x_t, t)) ** 2).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)
    assert isinstance(metrics, dict) and all(isinstance(v, float) for v in metrics.values())
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())
    # drawn t and eps: reproducible with a generator, t ~ U{1..T}
    m10 = Diffusion(timesteps=10)
    seen, eps_theta = [], m10.eps_theta

    def recording(x_t, t):
        seen.append(t)
        return eps_theta(x_t, t)

    monkeypatch.setattr(m10, "eps_theta", recording)
    x = torch.rand(2000, 1, 8, 8)
    l1, _ = m10.loss(x, generator=torch.Generator().manual_seed(0))
    l2, _ = m10.loss(x, generator=torch.Generator().manual_seed(0))
    assert l1.item() == l2.item()
    assert sorted(torch.unique(seen[0]).tolist()) == list(range(1, 11))


# ---- 4. learning


def test_a_short_run_beats_the_per_pixel_gaussian_denoiser():
    from sklearn.datasets import load_digits

    X = torch.tensor(load_digits().data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    train, held = X[:-256], X[-256:]
    torch.manual_seed(0)
    m = Diffusion()
    g = torch.Generator().manual_seed(0)
    t_ev = torch.randint(1, m.T + 1, (256,), generator=g)
    eps_ev = torch.randn(256, 1, 8, 8, generator=g)

    # Baseline: the best denoiser if the pixels were independent Gaussians with the training
    # data's mean mu and variance v (in [-1, 1]): E[eps | x_t] = b (x_t - a mu) / (a^2 v + b^2),
    # a = sqrt(alpha_bar_t), b = sqrt(1 - alpha_bar_t) (0.14 - 0.17 here, depending on the t drawn).
    x0 = 2 * held - 1
    mu, v = (2 * train - 1).mean(0), (2 * train - 1).var(0)
    a, b = m.sqrt_alpha_bars[t_ev].view(-1, 1, 1, 1), m.sqrt_one_minus_alpha_bars[t_ev].view(-1, 1, 1, 1)
    x_t = a * x0 + b * eps_ev
    baseline = float(((b * (x_t - a * mu) / (a * a * v + b * b) - eps_ev) ** 2).mean())

    def held_out_loss() -> float:
        with torch.no_grad():
            return m.loss(held, t=t_ev, eps=eps_ev)[0].item()

    start = held_out_loss()  # ~1.0: eps_theta starts at 0
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    for _ in range(200):
        loss, _ = m.loss(train[torch.randint(0, len(train), (32,), generator=g)], generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = held_out_loss()
    # measured, seed 0: start 1.01, end 0.120, baseline 0.142; seeds 0-4: end / baseline 0.82 - 0.86
    assert 0.9 < start < 1.1
    assert end < 0.2 * start
    assert end < 0.93 * baseline, (end, baseline)
    s = m.sample(8, method="ddim", steps=10, generator=g)
    assert s.shape == (8, 1, 8, 8) and float(s.min()) >= 0 and float(s.max()) <= 1


# ---- 5. sampling


@pytest.mark.parametrize("method, steps", [("ddpm", None), ("ddim", 10), ("ddim", None)])
def test_sample_shapes_and_range(method, steps):
    m = randomized(Diffusion(timesteps=50))  # ddpm: 50 network calls
    out = m.sample(3, method=method, steps=steps, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 1, 8, 8) and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1 and not bool(torch.isnan(out).any())


def test_ddim_with_eta_0_is_deterministic_given_the_start_noise():
    m = randomized(Diffusion())
    a = m.sample(3, method="ddim", steps=10, generator=torch.Generator().manual_seed(7))
    b = m.sample(3, method="ddim", steps=10, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    c = m.sample(3, method="ddim", steps=10, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(a, c)
    # eta > 0 also draws noise at every step: the same x_T, another result
    d = m.sample(3, method="ddim", steps=10, eta=1.0, generator=torch.Generator().manual_seed(7))
    assert not torch.equal(a, d)


def test_timestep_sequences():
    m = Diffusion()
    assert m.timestep_sequence() == list(range(200, 0, -1))
    assert m.timestep_sequence("ddim", 1) == [200]
    assert m.timestep_sequence("ddim", 200) == list(range(200, 0, -1))
    for steps in (2, 7, 50, 199):
        seq = m.timestep_sequence("ddim", steps)
        assert len(seq) == steps and seq[0] == 200 and seq[-1] == 1 and all(a > b for a, b in zip(seq, seq[1:]))
    assert len(m.timestep_sequence("ddim")) == 50 and len(Diffusion(timesteps=20).timestep_sequence("ddim")) == 20


@pytest.mark.parametrize("method, steps, snapshots, count", [("ddpm", None, 8, 8), ("ddim", 10, 5, 5),
                                                              ("ddim", 3, 8, 4)])
def test_trajectory(method, steps, snapshots, count):
    m = randomized(Diffusion(timesteps=50))
    images, snaps = m.sample(2, method=method, steps=steps, trajectory=True, snapshots=snapshots,
                             generator=torch.Generator().manual_seed(0))
    assert len(snaps) == count and all(s.shape == (2, 1, 8, 8) for s in snaps)
    assert all(float(s.min()) >= 0 and float(s.max()) <= 1 for s in snaps)
    x_T = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(snaps[0], from_signed(x_T))  # the pure-noise start
    assert torch.equal(snaps[-1], images)  # the end
    ts = m.trajectory_timesteps(method, steps, snapshots)
    assert len(ts) == count and ts[0] == 50 and ts[-1] == 0  # the plot: tests/viz/test_generative_plots.py


# ---- 6. configuration and bad input


def test_config_round_trip_presets_and_state_dict():
    c = DiffusionConfig(beta_schedule="cosine", channel_mults=[1, 2, 2], image_size=28)
    assert c.channel_mults == (1, 2, 2)
    assert DiffusionConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert set(PRESETS) >= {"cpu-tiny", "cpu-small", "gpu-baby"}
    tiny = Diffusion(DiffusionConfig.preset("cpu-tiny", timesteps=10))
    assert tiny.eps_theta(torch.randn(2, 1, 8, 8), 3).shape == (2, 1, 8, 8)
    assert DiffusionConfig.preset("cpu-small") == DiffusionConfig()
    m = randomized(Diffusion(timesteps=10))
    assert all(k.startswith("net.") for k in m.state_dict())  # the schedule is rebuilt from the config
    m2 = Diffusion(m.config)
    m2.load_state_dict(m.state_dict())
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(m2.eps_theta(x, 3), m.eps_theta(x, 3))


@pytest.mark.parametrize("x, match", [
    (torch.rand(2, 3, 8, 8), "1 channel"),
    (torch.rand(2, 1, 7, 7), "8x8"),
    (torch.rand(1, 8, 8), "4-D"),
    (torch.rand(2, 1, 8, 8) + 1.0, r"\[0, 1\]"),
    (torch.full((2, 1, 8, 8), float("nan")), "NaN"),
    (torch.zeros(0, 1, 8, 8), "at least one"),
    (torch.ones(2, 1, 8, 8, dtype=torch.int64), "floating"),
])
def test_loss_rejects_bad_images(x, match):
    with pytest.raises(ValueError, match=match):
        Diffusion().loss(x)


@pytest.mark.parametrize("kwargs, message", [
    (dict(timesteps=0), "timesteps: expected an integer >= 1, received 0"),
    (dict(beta_schedule="quadratic"), "beta_schedule: expected one of 'linear', 'cosine'"),
    (dict(image_size=10), "image_size: expected a multiple of 4"),
    (dict(channels=0), "channels: expected an integer >= 1"),
    (dict(channel_mults=()), "channel_mults: expected 1 to 3 positive integers"),
    (dict(channel_mults=(1, 2, 2, 2)), "channel_mults: expected 1 to 3"),
    (dict(channel_mults=(1, 0)), "channel_mults"),
    (dict(base_channels=0), "base_channels"),
])
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        DiffusionConfig(**kwargs)
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        Diffusion(**kwargs)


def test_bad_sampling_and_step_arguments():
    m = Diffusion()
    with pytest.raises(ValueError, match=r"^steps: expected an integer in \[1, 200\] \(the model's training "
                                         r"timesteps\), received 500$"):
        m.sample(2, method="ddim", steps=500)
    with pytest.raises(ValueError, match=r"steps: expected an integer in \[1, 200\].*received 0"):
        m.sample(2, method="ddim", steps=0)
    with pytest.raises(ValueError, match="steps: expected None or 200 for method 'ddpm'"):
        m.sample(2, method="ddpm", steps=10)
    with pytest.raises(ValueError, match="method: expected one of 'ddpm', 'ddim', received 'euler'"):
        m.sample(2, method="euler")
    with pytest.raises(ValueError, match="eta"):
        m.sample(2, method="ddim", steps=5, eta=1.5)
    with pytest.raises(ValueError, match="n: expected an integer >= 1"):
        m.sample(0)
    with pytest.raises(ValueError, match="snapshots"):
        m.sample(1, method="ddim", steps=2, trajectory=True, snapshots=1)
    with pytest.raises(ValueError, match="generator: expected a torch.Generator or None"):
        m.sample(1, method="ddim", steps=2, generator=0)
    with pytest.raises(ValueError, match="generator: expected a torch.Generator or None"):
        m.loss(torch.rand(2, 1, 8, 8), generator=0)
    with pytest.raises(ValueError, match="a config or keyword arguments, not both"):
        Diffusion(DiffusionConfig(), timesteps=3)
    with pytest.raises(ValueError, match="unknown fields"):
        DiffusionConfig.from_dict({"timesteps": 5, "beta": 1})
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"t: expected an integer <= 200"):
        m.p_sample(x, 201)
    with pytest.raises(ValueError, match=r"t: expected an integer >= 1"):
        m.q_sample(x, 0, x)
    with pytest.raises(ValueError, match=r"t: expected an int in \[1, 200\] or an integer tensor"):
        m.eps_theta(x, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"eps: expected the shape of x0"):
        m.q_sample(x, 3, torch.randn(3, 1, 8, 8))
    with pytest.raises(ValueError, match=r"x_t: expected a tensor \(B, 1, 8, 8\)"):
        m.eps_theta(torch.randn(2, 1, 4, 4), 3)
    with pytest.raises(ValueError, match=r"s: expected an integer <= 4"):
        m.ddim_step(x, 5, 5)


# ---- 7. Fashion-MNIST-sized images


@pytest.mark.parametrize("mults", [(1, 2), (1, 2, 2)])
def test_28x28_images(mults):
    m = randomized(Diffusion(image_size=28, channel_mults=mults))
    x = torch.rand(2, 1, 28, 28)
    assert m.eps_theta(2 * x - 1, 5).shape == (2, 1, 28, 28)
    loss, _ = m.loss(x, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert math.isfinite(loss.item()) and m.net.conv_in.weight.grad is not None
    out = m.sample(2, method="ddim", steps=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 28, 28) and float(out.min()) >= 0 and float(out.max()) <= 1
