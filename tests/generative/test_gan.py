"""GAN: shapes, the losses as written, the alternating updates, learning on the 8x8 digits,
and input validation."""

import math
from types import SimpleNamespace

import pytest
import torch

from seqlab.generative.common import to_signed
from seqlab.generative.gan import GAN, PRESETS, GANConfig, g_loss_from_logits


def adam_cfg(lr=1e-3, weight_decay=0.0):
    """The fields of the trainer's TrainConfig that make_optimizer reads."""
    return SimpleNamespace(lr=lr, beta1=0.5, beta2=0.999, weight_decay=weight_decay)


def images(n, size=8, channels=1, seed=0):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(module, before):
    return [not torch.equal(p, q) for p, q in zip(module.parameters(), before)]


# ---- 1. shapes


@pytest.mark.parametrize("size,channels", [(8, 1), (28, 1), (12, 3)])
def test_shapes(size, channels):
    torch.manual_seed(0)
    gan = GAN(image_size=size, channels=channels, noise_size=5, hidden_size=4, d_hidden_size=4)
    z = gan.noise(6, generator=torch.Generator().manual_seed(1))
    assert z.shape == (6, 5)
    x = gan.generator(z)
    assert x.shape == (6, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1 and x.min() < 0 < x.max()  # tanh: [-1, 1]
    s = gan.sample(3, generator=torch.Generator().manual_seed(2))
    assert s.shape == (3, channels, size, size) and s.min() >= 0 and s.max() <= 1
    assert not s.requires_grad
    logits = gan.discriminator(x)
    assert logits.shape == (6,)
    assert gan.D(s).shape == (3,) and bool(((gan.D(s) > 0) & (gan.D(s) < 1)).all())
    assert gan.fake(2).shape == (2, channels, size, size) and gan.fake(2).requires_grad


def test_widths_and_presets():
    """hidden_size is the generator's width g, d_hidden_size the discriminator's d (None: g)."""
    gan = GAN(hidden_size=6, d_hidden_size=5)
    assert gan.generator.net[4].out_channels == 6 and gan.discriminator.net[0].out_channels == 5
    same = GAN(hidden_size=6)
    assert same.config.d_hidden_size is None and same.discriminator.net[0].out_channels == 6
    assert GANConfig.preset("cpu-small") == GANConfig()  # cpu-small is the defaults
    assert GANConfig.preset("cpu-tiny", noise_size=3).noise_size == 3
    assert set(PRESETS) >= {"cpu-tiny", "cpu-small"}
    for name in PRESETS:
        GAN(GANConfig.preset(name)).sample(2)
    with pytest.raises(ValueError, match="preset: expected one of"):
        GANConfig.preset("huge")


def test_sample_restores_mode_and_is_reproducible():
    gan = GAN(hidden_size=4, d_hidden_size=4)
    gan.train()
    a = gan.sample(4, generator=torch.Generator().manual_seed(3))
    assert gan.generator.training
    gan.eval()
    b = gan.sample(4, generator=torch.Generator().manual_seed(3))
    assert not gan.generator.training
    torch.testing.assert_close(a, b)
    # eval mode: one sample does not depend on the others drawn with it
    torch.testing.assert_close(gan.sample(1, generator=torch.Generator().manual_seed(3)), a[:1])


def test_discriminator_output_does_not_depend_on_the_batch():
    torch.manual_seed(0)
    gan = GAN(hidden_size=4, d_hidden_size=4).train()
    x = to_signed(images(5))
    torch.testing.assert_close(gan.discriminator(x)[:1], gan.discriminator(x[:1]))


def test_config_round_trip_and_kwargs():
    cfg = GANConfig(image_size=28, noise_size=7, loss="minimax", d_steps=2, d_lr_scale=0.5)
    assert GANConfig.from_dict(cfg.to_dict()) == cfg
    assert GAN(cfg).config == GAN(image_size=28, noise_size=7, loss="minimax", d_steps=2, d_lr_scale=0.5).config
    assert GANConfig().loss == "non-saturating"


# ---- 2. the losses are the ones written


def test_losses_match_the_formulas():
    torch.manual_seed(0)
    ns = GAN(hidden_size=4, d_hidden_size=4, loss="non-saturating").double()
    mm = GAN(hidden_size=4, d_hidden_size=4, loss="minimax").double()
    mm.load_state_dict(ns.state_dict())
    x_real, x_fake = images(7, seed=1).double(), images(5, seed=2).double()
    with torch.no_grad():
        d_real = torch.sigmoid(ns.discriminator(x_real * 2 - 1))  # D(x)
        d_fake = torch.sigmoid(ns.discriminator(x_fake * 2 - 1))  # D(G(z))
    # -[mean log D(x) + mean log(1 - D(G(z)))]
    want_d = -(torch.log(d_real).mean() + torch.log(1 - d_fake).mean())
    torch.testing.assert_close(ns.discriminator_loss(x_real, x_fake), want_d, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mm.discriminator_loss(x_real, x_fake), want_d, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mm.generator_loss(x_fake), torch.log(1 - d_fake).mean(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ns.generator_loss(x_fake), -torch.log(d_fake).mean(), rtol=1e-12, atol=1e-12)
    # D's probabilities equal the public D(x)
    torch.testing.assert_close(ns.D(x_real), d_real, rtol=1e-12, atol=1e-12)


def test_losses_are_stable_for_confident_logits():
    logits = torch.tensor([-200.0, 200.0], dtype=torch.float64)
    for loss in ("minimax", "non-saturating"):
        assert torch.isfinite(g_loss_from_logits(logits, loss))


def test_generator_gradients_same_sign_and_non_saturating_is_stronger_when_d_rejects():
    """dL_G/dl on D's logit for fakes: minimax -D(G(z)), non-saturating -(1 - D(G(z))); with
    D(G(z)) near 0 (D rejects the fakes, early training) the minimax gradient vanishes."""
    logits = torch.tensor([-9.0, -4.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)
    (g_mm,) = torch.autograd.grad(g_loss_from_logits(logits, "minimax"), logits)
    (g_ns,) = torch.autograd.grad(g_loss_from_logits(logits, "non-saturating"), logits)
    p = torch.sigmoid(logits.detach())
    torch.testing.assert_close(g_mm, -p / 4, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(g_ns, -(1 - p) / 4, rtol=1e-12, atol=1e-15)
    assert bool((torch.sign(g_mm) == torch.sign(g_ns)).all())
    assert bool((g_ns[:2].abs() > 50 * g_mm[:2].abs()).all())

    # the same through the model: gradient w.r.t. G's weights when D rejects every fake
    grads = {}
    for loss in ("minimax", "non-saturating"):
        torch.manual_seed(0)
        gan = GAN(hidden_size=4, d_hidden_size=4, loss=loss).double()
        with torch.no_grad():
            gan.discriminator.net[-1].bias.fill_(-10.0)  # D(G(z)) ~ 5e-5
        gan.generator_loss(gan.fake(16, generator=torch.Generator().manual_seed(1))).backward()
        grads[loss] = torch.cat([p.grad.flatten() for p in gan.generator.parameters()])
    cos = torch.nn.functional.cosine_similarity(grads["minimax"], grads["non-saturating"], dim=0)
    assert cos > 0.99  # same direction
    assert grads["non-saturating"].norm() > 1000 * grads["minimax"].norm()


# ---- 3. train_step


def test_make_optimizer_groups():
    gan = GAN(hidden_size=4, d_hidden_size=4, d_lr_scale=0.5, g_lr_scale=2.0)
    opt = gan.make_optimizer(adam_cfg(lr=1e-3, weight_decay=0.01))
    assert isinstance(opt, torch.optim.Adam)
    d, g = opt.param_groups
    assert (d["name"], g["name"]) == ("discriminator", "generator")
    assert (d["lr_scale"], g["lr_scale"]) == (0.5, 2.0)
    assert d["lr"] == pytest.approx(5e-4) and g["lr"] == pytest.approx(2e-3)
    assert d["betas"] == (0.5, 0.999) and d["weight_decay"] == 0.01
    assert {id(p) for p in d["params"]} == {id(p) for p in gan.discriminator.parameters()}
    assert {id(p) for p in g["params"]} == {id(p) for p in gan.generator.parameters()}


@pytest.mark.parametrize("loss", ["non-saturating", "minimax"])
def test_each_phase_moves_only_its_network(loss):
    torch.manual_seed(0)
    gan = GAN(hidden_size=4, d_hidden_size=4, d_steps=3, loss=loss)
    opt = gan.make_optimizer(adam_cfg(weight_decay=0.1))  # weight decay must not move the other net
    moved = []  # after each optimizer.step(): (D changed?, G changed?)
    state = {}

    def before(optimizer, args, kwargs):
        state["d"], state["g"] = snapshot(gan.discriminator), snapshot(gan.generator)

    def after(optimizer, args, kwargs):
        moved.append((any(changed(gan.discriminator, state["d"])), any(changed(gan.generator, state["g"]))))

    opt.register_step_pre_hook(before)
    opt.register_step_post_hook(after)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):  # the second round runs with Adam's moments of both networks set
        loss_value, metrics = gan.train_step(images(8), lr=1e-3, weight_decay=0.1, generator=gen, optimizer=opt)
    assert moved == [(True, False)] * 3 + [(False, True)] + [(True, False)] * 3 + [(False, True)]
    assert set(metrics) >= {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(isinstance(v, float) for v in metrics.values())
    assert loss_value == metrics["d_loss"]
    assert 0 < metrics["d_real"] < 1 and 0 < metrics["d_fake"] < 1


def test_lr_scale_is_honoured():
    """Adam's first step moves every parameter with a non-zero gradient by lr: here each
    network by the trainer's lr times its group's lr_scale."""
    torch.manual_seed(0)
    gan = GAN(hidden_size=4, d_hidden_size=4, d_lr_scale=0.25, g_lr_scale=4.0)
    opt = gan.make_optimizer(adam_cfg(lr=1.0))
    lr = 1e-3
    for group in opt.param_groups:  # as the trainer does
        group["lr"] = lr * group.get("lr_scale", 1.0)
    d0, g0 = snapshot(gan.discriminator), snapshot(gan.generator)
    gan.train_step(images(8), lr=lr, generator=torch.Generator().manual_seed(1), optimizer=opt)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2.5e-4, 4e-3])
    d_step = max(float((p.detach() - q).abs().max()) for p, q in zip(gan.discriminator.parameters(), d0))
    g_step = max(float((p.detach() - q).abs().max()) for p, q in zip(gan.generator.parameters(), g0))
    assert d_step == pytest.approx(2.5e-4, rel=1e-3)
    assert g_step == pytest.approx(4e-3, rel=1e-3)


def test_train_step_is_reproducible_with_a_generator():
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        gan = GAN(hidden_size=4, d_hidden_size=4)
        opt = gan.make_optimizer(adam_cfg())
        gen = torch.Generator().manual_seed(5)
        results.append([gan.train_step(images(8), lr=1e-3, generator=gen, optimizer=opt) for _ in range(2)])
    assert results[0] == results[1]


def test_non_finite_loss_skips_the_update():
    torch.manual_seed(0)
    gan = GAN(hidden_size=4, d_hidden_size=4)
    opt = gan.make_optimizer(adam_cfg())
    with torch.no_grad():
        gan.discriminator.net[-1].bias.fill_(float("nan"))
    d0, g0 = snapshot(gan.discriminator), snapshot(gan.generator)
    loss, _ = gan.train_step(images(4), lr=1e-3, optimizer=opt)
    assert math.isnan(loss)  # NaN, which the trainer turns into a stop
    for p, q in zip(list(gan.discriminator.parameters()) + list(gan.generator.parameters()), d0 + g0):
        torch.testing.assert_close(p, q, equal_nan=True)


def test_eval_loss():
    torch.manual_seed(0)
    gan = GAN(hidden_size=4, d_hidden_size=4).eval()
    x = images(6)
    loss, metrics = gan.loss(x, generator=torch.Generator().manual_seed(1))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert set(metrics) == {"g_loss", "d_real", "d_fake"} and all(isinstance(v, float) for v in metrics.values())
    again, _ = gan.loss(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, loss)
    # it is L_D on x and the fakes G(z) of the same noise
    z = gan.noise(6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fakes = (gan.generator(z) + 1) / 2
    torch.testing.assert_close(loss, gan.discriminator_loss(x, fakes.clamp(0, 1)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_train_step_with_a_cuda_generator():
    gan = GAN(hidden_size=4, d_hidden_size=4).cuda()
    opt = gan.make_optimizer(adam_cfg())
    gen = torch.Generator(device="cuda").manual_seed(0)
    loss, _ = gan.train_step(images(8).cuda(), lr=1e-3, generator=gen, optimizer=opt)
    assert math.isfinite(loss) and gan.sample(2, generator=gen).device.type == "cuda"


# ---- 4. learning


def test_learns_the_digits():
    """200 alternating updates on scikit-learn's 8x8 digits, against the same model untrained:
    the generated images' mean pixel, mean image and distance to the nearest training digit
    move towards the data, and D tells held-out digits from the untrained generator's output."""
    from sklearn.datasets import load_digits

    data = torch.tensor(load_digits().data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16
    train, held = data[:1500], data[1500:]
    torch.manual_seed(0)
    gan = GAN(hidden_size=16, d_hidden_size=16, noise_size=16)
    opt = gan.make_optimizer(SimpleNamespace(lr=4e-3, beta1=0.5, beta2=0.999, weight_decay=0.0))

    def stats(s):
        return {"mean_gap": abs(float(s.mean()) - float(data.mean())),
                "mean_image": float(((s.mean(0) - data.mean(0)) ** 2).mean().sqrt()),
                "nearest": float(torch.cdist(s.flatten(1), train.flatten(1)).min(1).values.mean()) / 8}

    def d_accuracy(fakes):
        with torch.no_grad():
            return (float((gan.D(held) > 0.5).float().mean()) + float((gan.D(fakes) < 0.5).float().mean())) / 2

    s_before = gan.sample(500, generator=torch.Generator().manual_seed(99))
    before, acc_before = stats(s_before), d_accuracy(s_before)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        gan.train_step(train[torch.randint(len(train), (32,), generator=gen)], lr=4e-3, generator=gen, optimizer=opt)
    after = stats(gan.sample(500, generator=torch.Generator().manual_seed(99)))
    acc_after = d_accuracy(s_before)
    # measured (seed 0): mean gap 0.11 -> 0.03, mean image RMSE 0.28 -> 0.20, nearest 0.34 -> 0.28,
    # D accuracy 0.43 -> 0.94 (seeds 0-5: 0.15-0.20, 0.22-0.28, 0.82-0.94 after)
    assert after["mean_gap"] < 0.5 * before["mean_gap"]
    assert after["mean_image"] < 0.75 * before["mean_image"]
    # better than the best constant image (RMSE of the data's mean image about its mean: 0.26)
    const = float((data.mean(0) - data.mean()).pow(2).mean().sqrt())
    assert after["mean_image"] < 0.9 * const
    assert after["nearest"] < 0.85 * before["nearest"]
    assert acc_after > 0.75 and acc_after > acc_before + 0.2


# ---- 5. bad input


@pytest.mark.parametrize("kwargs,match", [
    (dict(noise_size=0), "noise_size"),
    (dict(loss="wasserstein"), "loss"),
    (dict(d_steps=0), "d_steps"),
    (dict(image_size=10), "multiple of 4"),
    (dict(image_size=4), "image_size"),
    (dict(channels=0), "channels"),
    (dict(hidden_size=0), "hidden_size"),
    (dict(d_hidden_size=0), "d_hidden_size"),
    (dict(d_lr_scale=0.0), "d_lr_scale"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GANConfig(**kwargs)


def test_bad_constructor_and_dict():
    with pytest.raises(ValueError, match="not both"):
        GAN(GANConfig(), noise_size=3)
    with pytest.raises(ValueError, match="GANConfig"):
        GAN({"noise_size": 3})
    with pytest.raises(ValueError, match="unknown fields"):
        GANConfig.from_dict({"noise_size": 3, "hidden": 2})


@pytest.mark.parametrize("x,match", [
    (torch.rand(2, 3, 8, 8), "channel"),
    (torch.rand(2, 1, 7, 7), "8x8"),
    (torch.rand(1, 8, 8), "4-D"),
    (torch.rand(2, 1, 8, 8) * 2, r"\[0, 1\]"),
    (torch.rand(2, 1, 8, 8) - 1, r"\[0, 1\]"),
    (torch.full((2, 1, 8, 8), float("nan")), "NaN"),
    (torch.ones(2, 1, 8, 8, dtype=torch.long), "floating"),
    (torch.rand(0, 1, 8, 8), "at least one"),
    ([[0.5]], "torch.Tensor"),
])
def test_bad_images(x, match):
    gan = GAN(hidden_size=4, d_hidden_size=4)
    opt = gan.make_optimizer(adam_cfg())
    good = images(2)
    with pytest.raises(ValueError, match=match):
        gan.train_step(x, lr=1e-3, optimizer=opt)
    with pytest.raises(ValueError, match=match):
        gan.loss(x)
    with pytest.raises(ValueError, match=match):
        gan.discriminator_loss(x, good)
    with pytest.raises(ValueError, match=match):
        gan.discriminator_loss(good, x)
    with pytest.raises(ValueError, match=match):
        gan.generator_loss(x)


def test_bad_arguments():
    gan = GAN(hidden_size=4, d_hidden_size=4)
    opt = gan.make_optimizer(adam_cfg())
    with pytest.raises(ValueError, match="n"):
        gan.sample(0)
    with pytest.raises(ValueError, match="optimizer"):
        gan.train_step(images(2), lr=1e-3)
    with pytest.raises(ValueError, match="lr"):
        gan.train_step(images(2), lr=-1.0, optimizer=opt)
    with pytest.raises(ValueError, match="weight_decay"):
        gan.train_step(images(2), lr=1e-3, weight_decay=-0.1, optimizer=opt)
