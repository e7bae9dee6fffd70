"""The VAE: shapes, the analytic KL, the ELBO written out by hand, the reparameterisation's
gradients, the importance-weighted bound, learning on the 8x8 digits, bad input, 28x28."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from seqlab.generative import vae as vae_module
from seqlab.generative.vae import VAE, PRESETS, VAEConfig


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def digits(grey_digits):
    return grey_digits  # train, test, test labels (tests/conftest.py)


@pytest.fixture(scope="module")
def trained(digits):
    """A default VAE after 300 Adam steps (batch 64, lr 3e-3) on the training digits, with the
    held-out -ELBO before and after (one fixed sample of z per image)."""
    xtr, xte, _ = digits
    torch.manual_seed(0)
    model = VAE()
    with torch.no_grad():
        start = float(model.loss(xte, generator=gen(5))[0])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = gen(1)
    for _ in range(300):
        loss, _ = model.loss(xtr[torch.randint(len(xtr), (64,), generator=g)], generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end, metrics = model.loss(xte, generator=gen(5))
    return model, start, float(end), metrics


# ---- 1. shapes and the KL


def test_shapes_and_config():
    model = VAE(latent_size=3)
    x = torch.rand(5, 1, 8, 8)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 3)
    z = model.reparameterize(mu, logvar, gen(0))
    assert z.shape == (5, 3)
    assert model.decode(z).shape == (5, 1, 8, 8)
    assert model.kl_divergence(mu, logvar).shape == (5,)
    loss, metrics = model.loss(x)
    assert loss.dim() == 0 and set(metrics) == {"recon", "kl"}
    assert all(isinstance(v, float) for v in metrics.values())
    assert model.elbo(x).shape == (5,)
    s = model.sample(7, generator=gen(1))
    assert s.shape == (7, 1, 8, 8) and 0 <= float(s.min()) and float(s.max()) <= 1
    assert torch.equal(s, model.sample(7, generator=gen(1)))
    assert model.reconstruct(x).shape == (5, 1, 8, 8)
    assert model.latent_means(x).shape == (5, 3)
    assert model.log_likelihood(x, 4, generator=gen(2)).shape == (5,)
    cfg = VAEConfig(latent_size=2, hidden_size=32)
    assert VAEConfig.from_dict(cfg.to_dict()) == cfg
    assert VAE(cfg).config is cfg
    assert VAEConfig.preset("gpu-baby").image_size == 28 and set(PRESETS) >= {"cpu-tiny", "cpu-small", "gpu-baby"}
    assert VAEConfig.preset("cpu-small") == VAEConfig()  # cpu-small is the defaults
    assert VAE(VAEConfig.preset("cpu-tiny")).encoder[0].out_features == VAEConfig.preset("cpu-tiny").hidden_size


def test_interpolate_and_decode_grid():
    model = VAE(latent_size=2)
    x = torch.rand(2, 1, 8, 8, generator=gen(0))
    path = model.interpolate(x[:1], x[1:], steps=5)
    assert path.shape == (5, 1, 8, 8)
    rec = model.reconstruct(x)
    torch.testing.assert_close(path[0], rec[0])
    torch.testing.assert_close(path[-1], rec[1])
    grid = model.decode_grid(n=4, span=2.0)
    assert grid.shape == (16, 1, 8, 8)
    # row-major, z_1 left to right from -span, z_2 top to bottom from +span
    with torch.no_grad():
        corners = torch.sigmoid(model.decode(torch.tensor([[-2.0, 2.0], [2.0, -2.0]])))
    torch.testing.assert_close(grid[0], corners[0])
    torch.testing.assert_close(grid[-1], corners[1])


def test_kl_matches_torch_and_monte_carlo():
    torch.manual_seed(0)
    model = VAE(latent_size=4).double()
    mu = torch.randn(3, 4, dtype=torch.float64)
    logvar = torch.randn(3, 4, dtype=torch.float64) * 0.7
    kl = model.kl_divergence(mu, logvar)  # (3,)
    q, p = Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)
    torch.testing.assert_close(kl, kl_divergence(q, p).sum(-1))
    # Monte Carlo: KL = E_q[log q(z|x) - log p(z)] from N samples; its standard error is the
    # sample std / sqrt(N), and we allow 4 standard errors (two-sided chance of failing < 1e-4).
    N = 200_000
    z = q.sample((N,))  # (N, 3, 4)
    d = (q.log_prob(z) - p.log_prob(z)).sum(-1)  # (N, 3)
    se = d.std(0) / math.sqrt(N)
    assert bool(((d.mean(0) - kl).abs() < 4 * se).all()), (d.mean(0), kl, se)
    zero = torch.zeros(2, 4, dtype=torch.float64)
    assert torch.equal(model.kl_divergence(zero, zero), torch.zeros(2, dtype=torch.float64))


# ---- 2. the ELBO by hand, the reparameterisation's gradients


def test_loss_is_recon_plus_kl_by_hand():
    torch.manual_seed(1)
    model = VAE(latent_size=3, hidden_size=16).double()
    x = torch.rand(6, 1, 8, 8, generator=gen(0), dtype=torch.float64)
    loss, metrics = model.loss(x, generator=gen(42))
    eps = torch.randn(6, 3, generator=gen(42), dtype=torch.float64)  # the same eps ~ N(0, I)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = model.decode(z).flatten(1)  # (6, 64)
    t = x.flatten(1)
    recon = -(t * F.logsigmoid(logits) + (1 - t) * F.logsigmoid(-logits)).sum(1)  # -log p(x|z), (6,)
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)
    torch.testing.assert_close(loss.detach(), (recon + kl).mean())
    assert metrics["recon"] == pytest.approx(float(recon.mean()), rel=1e-9)
    assert metrics["kl"] == pytest.approx(float(kl.mean()), rel=1e-9)
    torch.testing.assert_close(model.elbo(x, generator=gen(42)).detach(), -(recon + kl))
    loss.backward()
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters())


def test_reparameterize_gradients():
    model = VAE(latent_size=4).double()
    mu = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    z = model.reparameterize(mu, logvar, gen(3))
    (z * torch.arange(1.0, 5.0, dtype=torch.float64)).sum().backward()
    eps = torch.randn(3, 4, generator=gen(3), dtype=torch.float64)
    w = torch.arange(1.0, 5.0, dtype=torch.float64).expand(3, 4)
    # dz/dmu = 1, dz/dlogvar = eps * sigma / 2
    torch.testing.assert_close(mu.grad, w)
    torch.testing.assert_close(logvar.grad, w * eps * torch.exp(0.5 * logvar.detach()) / 2)


# ---- 3. the importance-weighted bound


def test_iwae_bound_against_elbo_and_k(trained, digits):
    model, *_ = trained
    xte = digits[1]  # 297 held-out images

    def se(d):  # standard error of the mean of per-image values
        return float(d.std() / math.sqrt(len(d)))

    with torch.no_grad():
        elbo = model.elbo(xte, generator=gen(7))
    iwae200 = model.log_likelihood(xte, 200, generator=gen(8))
    d = iwae200 - elbo  # measured: mean +0.36 nats, standard error 0.10
    assert float(d.mean()) >= -3 * se(d)  # "small tolerance": three standard errors of the mean
    ll = {k: model.log_likelihood(xte, k, generator=gen(10 + k)) for k in (1, 50, 500)}
    d1 = ll[50] - ll[1]  # measured: +0.33 nats, standard error 0.05
    assert float(d1.mean()) > 3 * se(d1)
    d2 = ll[500] - ll[50]  # measured: +0.003 nats, standard error 0.008 (nearly tight at k = 50)
    assert float(d2.mean()) >= -3 * se(d2)
    # k = 1 is the ELBO in expectation: log p(x|z) + log p(z) - log q(z|x) versus log p(x|z) - KL,
    # averaged over 10 independent draws per image; allow 4 standard errors (measured: -0.03, SE 0.034).
    xr = xte.repeat(10, 1, 1, 1)
    with torch.no_grad():
        d3 = model.log_likelihood(xr, 1, generator=gen(9)) - model.elbo(xr, generator=gen(10))
    assert abs(float(d3.mean())) < 4 * se(d3), (float(d3.mean()), se(d3))


def test_log_likelihood_chunks(monkeypatch):
    torch.manual_seed(0)
    model = VAE(latent_size=2, hidden_size=16)
    x = torch.rand(3, 1, 8, 8, generator=gen(0))
    whole = model.log_likelihood(x, 40, generator=gen(1))
    monkeypatch.setattr(vae_module, "CHUNK_ELEMENTS", 3 * 64 * 7)  # chunks of 7 samples
    torch.testing.assert_close(model.log_likelihood(x, 40, generator=gen(1)), whole)
    monkeypatch.setattr(vae_module, "CHUNK_ELEMENTS", 2 ** 22)
    big = model.log_likelihood(torch.rand(50, 1, 8, 8, generator=gen(2)), 1000, generator=gen(3))
    assert big.shape == (50,) and bool(torch.isfinite(big).all())


# ---- 4. learning


def test_learns_digits_beyond_the_mean_image(trained, digits):
    model, start, end, metrics = trained
    xtr, xte, _ = digits
    # baseline that ignores its input: every pixel Bernoulli with the training set's mean image
    p = xtr.mean(0, keepdim=True).clamp(1e-4, 1 - 1e-4).expand_as(xte)
    baseline = float(F.binary_cross_entropy(p, xte, reduction="none").flatten(1).sum(1).mean())
    # measured on the 297 held-out digits (nats per image): start 45.0, after 300 steps 24.8
    # (recon 22.0 + KL 2.8), IWAE(k=100) estimate -24.6, mean-image baseline 27.2; the floor of
    # any model's cross-entropy on these grey levels (their own entropy) is 13.6
    assert end < start - 15, (start, end)
    assert end < baseline - 1.5, (end, baseline)
    assert metrics["kl"] > 1.0  # the code carries information: no posterior collapse
    iwae = float(model.log_likelihood(xte, 100, generator=gen(4)).mean())
    assert -iwae < baseline - 1.5, (iwae, baseline)


# ---- 5. bad input


def test_bad_input():
    model = VAE()
    good = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"1 channel\(s\).*received 3"):
        model.loss(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="images of 8x8 pixels.*received 28x28"):
        model.encode(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="expected a 4-D tensor.*received shape \\(1, 8, 8\\)"):
        model.reconstruct(torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="pixel values in \\[0, 1\\].*received values from"):
        model.loss(good * 2)
    with pytest.raises(ValueError, match="pixel values in \\[0, 1\\]"):
        model.latent_means(good - 0.5)
    nan = good.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model.log_likelihood(nan)
    with pytest.raises(ValueError, match="^latent_size: expected an integer >= 1, received 0$"):
        VAEConfig(latent_size=0)
    with pytest.raises(ValueError, match="image_size: expected a multiple of 4.*received 10"):
        VAE(image_size=10)
    with pytest.raises(ValueError, match="decode_grid: expected a VAE with latent_size = 2, received latent_size = 8"):
        model.decode_grid()
    with pytest.raises(ValueError, match="k: expected an integer >= 1, received 0"):
        model.log_likelihood(good, k=0)
    with pytest.raises(ValueError, match="z: expected latent_size = 8 columns, received 3"):
        model.decode(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="logvar: expected the shape of mu \\(2, 8\\), received shape \\(1, 8\\)"):
        model.kl_divergence(torch.zeros(2, 8), torch.zeros(1, 8))
    with pytest.raises(ValueError, match="x_a: expected one image"):
        model.interpolate(good, good[:1])
    with pytest.raises(ValueError, match="likelihood: expected one of 'bernoulli'"):
        VAEConfig(likelihood="gaussian")
    with pytest.raises(ValueError, match="unknown fields \\['hiden'\\]"):
        VAEConfig.from_dict({"hiden": 3})
    with pytest.raises(ValueError, match="a config or keyword arguments, not both"):
        VAE(VAEConfig(), latent_size=2)
    with pytest.raises(ValueError, match="n: expected an integer >= 1, received 0"):
        model.sample(0)


# ---- 6. Fashion-MNIST size


def test_image_size_28():
    torch.manual_seed(0)
    model = VAE(image_size=28, latent_size=4)
    x = torch.rand(4, 1, 28, 28, generator=gen(0))
    mu, _ = model.encode(x)
    assert mu.shape == (4, 4)
    loss, metrics = model.loss(x, generator=gen(1))
    loss.backward()
    value = float(loss.detach())
    assert math.isfinite(value) and value == pytest.approx(metrics["recon"] + metrics["kl"], rel=1e-5)
    assert all(p.grad is not None for p in model.parameters())
    assert model.sample(3, generator=gen(2)).shape == (3, 1, 28, 28)
    assert model.log_likelihood(x, 5, generator=gen(3)).shape == (4,)
    assert VAE(image_size=28, latent_size=2).decode_grid(n=3).shape == (9, 1, 28, 28)
