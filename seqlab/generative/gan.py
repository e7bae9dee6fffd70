r"""Generative adversarial network (GAN): a deconvolutional generator against a convolutional
discriminator, trained together in a zero-sum game.

Lecture, "Generative Adversarial Networks": "The generator (deconvolutional neural network):
input is noise, output is fake images (or text). The discriminator (convolutional neural network): input
the fake or real image, output is binary class whether the image is real. The two networks are
trained together, or competing in a zero-sum game: the generator tries to maximize the
discriminator loss, and the discriminator tries to minimize the same loss." The solution is the
Nash equilibrium min_{w^(G)} max_{w^(D)} C(w^(G), w^(D)).

Here (Goodfellow et al. 2014), with noise z ~ N(0, I) of ``noise_size`` units and D(x) the
discriminator's probability that x is real, D(x) = sigmoid(l(x)) of its logit l(x):

    V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))]         value of the game
    min_G max_D V(D, G)                                      zero-sum game (Nash equilibrium)

The discriminator's loss is -V, so "D minimizes its loss" is "D maximizes V", and "G maximizes
D's loss" is "G minimizes V": the lecture's C in min_G max_D C is V (the negative of D's loss).
From logits, with log sigmoid(l) = -softplus(-l) and log(1 - sigmoid(l)) = -softplus(l):

    L_D = -[mean log D(x) + mean log(1 - D(G(z)))]
        = mean softplus(-l(x)) + mean softplus(l(G(z)))        ``discriminator_loss``
    L_G = mean log(1 - D(G(z)))  = -mean softplus(l(G(z)))     ``loss="minimax"`` (the lecture's min over G)
    L_G = -mean log D(G(z))      =  mean softplus(-l(G(z)))    ``loss="non-saturating"`` (default)

Why non-saturating is the default: early in training the fakes are poor, D rejects them, and
D(G(z)) is near 0. There dL_G/dl = -D(G(z)) for minimax, which vanishes (the generator's
gradient saturates), while the non-saturating loss gives dL_G/dl = -(1 - D(G(z))), near -1:
the same direction, strong gradients. Both have the same fixed point (Goodfellow et al. 2014,
section 3); the minimax loss is the one the game writes.

Training alternates (``train_step``): ``d_steps`` updates of D on the real batch and fakes from
fresh noise (detached: G does not move), then one update of G on fresh noise (D does not move).

Networks (DCGAN-style, Radford et al. 2015), for images of s x s pixels, s a multiple of 4:

    G: z (B, Z) -> linear -> (B, 2g, s/4, s/4) -> BN, ReLU
       -> ConvTranspose2d stride 2 -> (B, g, s/2, s/2) -> BN, ReLU
       -> ConvTranspose2d stride 2 -> (B, C, s, s) -> tanh             pixels in [-1, 1]
    D: x (B, C, s, s) -> Conv2d stride 2 -> (B, d, s/2, s/2) -> LeakyReLU(0.2)
       -> Conv2d stride 2 -> (B, 2d, s/4, s/4) -> LeakyReLU(0.2) -> linear -> (B,) logit

D has no BatchNorm, so its output on one image does not depend on the rest of the batch.

Pixel ranges: every public image argument and result is (B, C, H, W) in [0, 1] (as for all of
seqlab's generative models); the networks work in [-1, 1] (``to_signed`` / ``from_signed``):
``self.generator(z)`` returns [-1, 1] images and ``self.discriminator`` reads them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.generative.common import check_image_config, check_images, check_network_input, from_signed, to_signed
from seqlab.memory import check_batch_fits
from seqlab.training import distributed
from seqlab.validation import check_choice, check_float, check_int, fail, fields_from_dict, resolve_config

LOSSES = ("non-saturating", "minimax")

# Named sizes (channels and image_size come from the data). cpu-small is the defaults, what
# `seqlab train gan` uses on the 8x8 digits.
PRESETS: dict[str, dict] = {
    "cpu-tiny": dict(noise_size=16, hidden_size=16),
    "cpu-small": dict(noise_size=32, hidden_size=32),
}


@dataclass(frozen=True)
class GANConfig:
    """Settings of a GAN.

    Attributes:
        channels: image channels C (1 for grey images).
        image_size: image height = width, a multiple of 4 (8 for the 8x8 digits, 28 for
            Fashion-MNIST); the generator starts at image_size // 4 and doubles it twice.
        noise_size: Z, units of the noise z ~ N(0, I).
        hidden_size: g, channels of the generator's last hidden layer (2g before it).
        d_hidden_size: d, channels of the discriminator's first layer (2d after it); None:
            the same as hidden_size.
        loss: the generator's loss, "non-saturating" (default) or "minimax".
        d_steps: discriminator updates per generator update.
        d_lr_scale, g_lr_scale: each network's learning rate is lr times its scale.
    """

    channels: int = 1
    image_size: int = 8
    noise_size: int = 32
    hidden_size: int = 32
    d_hidden_size: int | None = None
    loss: str = "non-saturating"
    d_steps: int = 1
    d_lr_scale: float = 1.0
    g_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        check_image_config(self.channels, self.image_size)
        check_int(self.noise_size, "noise_size", minimum=1)
        check_int(self.hidden_size, "hidden_size", minimum=1)
        if self.d_hidden_size is not None:
            check_int(self.d_hidden_size, "d_hidden_size", minimum=1)
        check_choice(self.loss, "loss", LOSSES)
        check_int(self.d_steps, "d_steps", minimum=1)
        check_float(self.d_lr_scale, "d_lr_scale", minimum=0.0, open_min=True, finite=True)
        check_float(self.g_lr_scale, "g_lr_scale", minimum=0.0, open_min=True, finite=True)

    @property
    def discriminator_size(self) -> int:
        """d, the discriminator's width: d_hidden_size, or hidden_size when that is None."""
        return self.hidden_size if self.d_hidden_size is None else self.d_hidden_size

    @classmethod
    def preset(cls, name: str, **overrides) -> "GANConfig":
        check_choice(name, "preset", PRESETS)
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GANConfig":
        return cls(**fields_from_dict(cls, d, "GAN config"))


class Generator(nn.Module):
    """G: noise z (B, Z) -> images (B, C, s, s) in [-1, 1], by two transposed convolutions."""

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        _check_cfg(cfg)
        self.config = cfg
        g, q = cfg.hidden_size, cfg.image_size // 4
        self.net = nn.Sequential(
            nn.Linear(cfg.noise_size, 2 * g * q * q, bias=False),  # (B, 2g q q)
            nn.Unflatten(1, (2 * g, q, q)),  # (B, 2g, q, q)
            nn.BatchNorm2d(2 * g), nn.ReLU(),
            nn.ConvTranspose2d(2 * g, g, 4, stride=2, padding=1, bias=False),  # (B, g, 2q, 2q)
            nn.BatchNorm2d(g), nn.ReLU(),
            nn.ConvTranspose2d(g, cfg.channels, 4, stride=2, padding=1),  # (B, C, 4q, 4q)
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, Z) -> G(z) (B, C, s, s) in [-1, 1]."""
        z = check_network_input(z, "z", (None, self.config.noise_size), "(batch, noise_size)", self.net[0].weight)
        return self.net(z)


class Discriminator(nn.Module):
    """D: images (B, C, s, s) in [-1, 1] -> logits l (B,), D(x) = sigmoid(l); no BatchNorm."""

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        _check_cfg(cfg)
        self.config = cfg
        d, q = cfg.discriminator_size, cfg.image_size // 4
        self.net = nn.Sequential(
            nn.Conv2d(cfg.channels, d, 4, stride=2, padding=1),  # (B, d, 2q, 2q)
            nn.LeakyReLU(0.2),
            nn.Conv2d(d, 2 * d, 4, stride=2, padding=1),  # (B, 2d, q, q)
            nn.LeakyReLU(0.2),
            nn.Flatten(),  # (B, 2d q q)
            nn.Linear(2 * d * q * q, 1),  # (B, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, s, s) in [-1, 1] (shape and dtype checked, not the values) -> logits l (B,)."""
        c = self.config
        x = check_network_input(x, "x", (None, c.channels, c.image_size, c.image_size), "(B, C, H, W)",
                                self.net[0].weight)
        return self.net(x).squeeze(1)  # (B,)


def _check_cfg(cfg: object) -> None:
    if not isinstance(cfg, GANConfig):
        fail("cfg", "a GANConfig", type(cfg).__name__)


# ---- the losses from D's logits (see the module docstring)

def d_loss_from_logits(l_real: torch.Tensor, l_fake: torch.Tensor) -> torch.Tensor:
    # L_D = -[mean log D(x) + mean log(1 - D(G(z)))] = mean softplus(-l(x)) + mean softplus(l(G(z)))
    return F.softplus(-l_real).mean() + F.softplus(l_fake).mean()


def g_loss_from_logits(l_fake: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "minimax":
        # L_G = mean log(1 - D(G(z))) = -mean softplus(l(G(z)))
        return -F.softplus(l_fake).mean()
    # L_G = -mean log D(G(z)) = mean softplus(-l(G(z)))
    return F.softplus(-l_fake).mean()


class GAN(nn.Module):
    """``GAN(GANConfig(...))`` or ``GAN(image_size=28, ...)``: submodules ``generator`` (G) and
    ``discriminator`` (D)."""

    def __init__(self, config: GANConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        config = resolve_config(config, kwargs, GANConfig, type(self).__name__)
        self.config = config
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)

    def _param(self) -> torch.Tensor:
        return next(self.discriminator.parameters())

    def _images(self, x: object, name: str) -> torch.Tensor:
        cfg, p = self.config, self._param()
        # check the values without the graph (fakes carry one); return x itself, so gradients flow
        check_images(x.detach() if isinstance(x, torch.Tensor) else x, cfg.channels, cfg.image_size, name)
        return x.to(device=p.device, dtype=p.dtype)

    def noise(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ N(0, I): (n, noise_size), on the model's device, drawn with ``generator``. ``n``
        images must fit in memory with the generator's activations (checked first)."""
        check_int(n, "n", minimum=1)
        p = self._param()
        check_batch_fits("n", n, self._bytes_per_image(), device=p.device)
        return torch.randn(n, self.config.noise_size, generator=generator, device=p.device, dtype=p.dtype)

    def _bytes_per_image(self) -> int:
        """About the bytes one image takes through G and D: the noise, each layer's output (with
        BatchNorm's and the activation's copies) and the image."""
        c = self.config
        q, g, d = c.image_size // 4, c.hidden_size, c.discriminator_size
        floats = (c.noise_size + 3 * 2 * g * q * q + 3 * g * (2 * q) ** 2 + 2 * c.channels * c.image_size ** 2
                  + 2 * d * (2 * q) ** 2 + 4 * d * q * q)
        return floats * self._param().element_size()

    def fake(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """G(z) for fresh noise, in [0, 1], with gradients (for ``generator_loss``): (n, C, H, W)."""
        return from_signed(self.generator(self.noise(n, generator=generator)))

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images G(z) in [0, 1]: (n, C, H, W). The generator runs in eval mode (BatchNorm's
        running statistics, so a sample does not depend on the others); its mode is restored."""
        z = self.noise(n, generator=generator)
        was_training = self.generator.training
        self.generator.eval()
        try:
            return from_signed(self.generator(z))
        finally:
            self.generator.train(was_training)

    def D(self, x: torch.Tensor) -> torch.Tensor:
        """D(x), the probability that each image is real: (B, C, H, W) in [0, 1] -> (B,)."""
        return torch.sigmoid(self.discriminator(to_signed(self._images(x, "x"))))

    def discriminator_loss(self, x_real: torch.Tensor, x_fake: torch.Tensor) -> torch.Tensor:
        """L_D = -[mean log D(x) + mean log(1 - D(G(z)))] (D minimizes it, i.e. maximizes V), for
        real and fake images (B, C, H, W) in [0, 1] (the batches may differ in size)."""
        l_real = self.discriminator(to_signed(self._images(x_real, "x_real")))  # (B,)
        l_fake = self.discriminator(to_signed(self._images(x_fake, "x_fake")))  # (B',)
        return d_loss_from_logits(l_real, l_fake)

    def generator_loss(self, x_fake: torch.Tensor) -> torch.Tensor:
        """L_G of ``config.loss`` on fake images G(z) (B, C, H, W) in [0, 1], e.g. ``fake(n)``:
        minimax mean log(1 - D(G(z))), non-saturating -mean log D(G(z)); G minimizes it."""
        l_fake = self.discriminator(to_signed(self._images(x_fake, "x_fake")))  # (B,)
        return g_loss_from_logits(l_fake, self.config.loss)

    def loss(self, x: torch.Tensor, *, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Evaluation, no update: L_D on the real batch x and as many fresh fakes, with metrics
        g_loss (L_G on those fakes), d_real (mean D(x)) and d_fake (mean D(G(z))). Under torchrun
        (``distributed.current()``) x is the rank's share of the batch and its noise is its rows
        of the whole batch's, so the ranks' mean is the one-process figure."""
        x = to_signed(self._images(x, "x"))  # (B, C, H, W) in [-1, 1]
        B, group = x.shape[0], distributed.current()
        # under torchrun x is this rank's share: its rows of noise drawn for the whole batch
        z = (self.noise(B, generator=generator) if group is None
             else self.noise(group.world_size * B, generator=generator)[group.rows(B)])
        x_fake = self.generator(z)  # (B, C, H, W)
        l_real, l_fake = self.discriminator(x), self.discriminator(x_fake)  # (B,), (B,)
        d_loss = d_loss_from_logits(l_real, l_fake)
        with torch.no_grad():
            metrics = {"g_loss": float(g_loss_from_logits(l_fake, self.config.loss)),
                       "d_real": float(torch.sigmoid(l_real).mean()), "d_fake": float(torch.sigmoid(l_fake).mean())}
        return d_loss, metrics

    # ---- learning

    def make_optimizer(self, cfg) -> torch.optim.Adam:
        """One Adam over two parameter groups, ``"discriminator"`` first and ``"generator"``
        second, each with its ``lr_scale`` (``d_lr_scale``, ``g_lr_scale``); lr ``cfg.lr`` times
        the scale, betas (``cfg.beta1``, ``cfg.beta2``), weight decay ``cfg.weight_decay`` (Adam's
        L2 penalty, on every parameter). Adam skips parameters whose .grad is None, which is how
        each phase of ``train_step`` leaves the other network alone."""
        groups = [{"params": list(net.parameters()), "name": name, "lr_scale": scale, "lr": cfg.lr * scale}
                  for name, net, scale in (("discriminator", self.discriminator, self.config.d_lr_scale),
                                           ("generator", self.generator, self.config.g_lr_scale))]
        return torch.optim.Adam(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)

    def train_step(self, x: torch.Tensor, *, lr: float, weight_decay: float = 0.0,
                   generator: torch.Generator | None = None,
                   optimizer: torch.optim.Optimizer | None = None, group=None) -> tuple[float, dict[str, float]]:
        """One round of the game on the real batch x (B, C, H, W) in [0, 1]: ``d_steps`` updates of
        D (each on x and B fakes from fresh noise, detached), then one update of G (B fresh fakes).

        ``optimizer`` comes from ``make_optimizer``; each group's lr is set to lr * its lr_scale
        (as the trainer does) and its weight decay to ``weight_decay``. All noise is drawn with
        ``generator``. Returns (L_D of the last D update, measured before it, metrics d_loss,
        g_loss, d_real = mean D(x), d_fake = mean D(G(z)) of that D update). A non-finite loss
        skips its update and is returned as the loss, so the trainer stops.

        ``group`` (``seqlab.training.distributed.Group``, under torchrun): x is rank r's share,
        rows r B .. (r+1) B - 1 of the step's global batch of N B images. Each noise draw is
        made for the whole batch (N B rows, from the step's generator, the same on every rank)
        and rank r keeps its rows; after each backward pass the network's gradients are
        averaged over the ranks (``Group.mean_grads_``), with the loss, so every rank applies the
        one-process update and takes the same decision on a non-finite loss. G's BatchNorm
        normalises with its rank's share's statistics, not the whole batch's (PyTorch's
        SyncBatchNorm runs on GPUs only): with it the run is close to, not equal to, the
        one-process run; at the end of the step its running means and variances are averaged
        over the ranks, so every rank holds the same buffers."""
        x = to_signed(self._images(x, "batch"))  # (B, C, H, W) in [-1, 1]
        lr = check_float(lr, "lr", minimum=0.0)
        weight_decay = check_float(weight_decay, "weight_decay", minimum=0.0)
        if not isinstance(optimizer, torch.optim.Optimizer):
            fail("optimizer", "the optimizer of model.make_optimizer(cfg)", type(optimizer).__name__)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
            g["weight_decay"] = weight_decay
        B, d_params, g_params = x.shape[0], list(self.discriminator.parameters()), list(self.generator.parameters())

        def noise() -> torch.Tensor:  # z (B, Z): this rank's rows of the whole batch's noise
            if group is None:
                return self.noise(B, generator=generator)
            return self.noise(group.world_size * B, generator=generator)[group.rows(B)]

        def average(params: list, value: float) -> float:  # the ranks' mean gradients and loss
            return value if group is None else group.mean_grads_(params, value)[0]

        for _ in range(self.config.d_steps):
            # D ascends V: fakes from fresh noise, detached so that G does not move
            with torch.no_grad():
                x_fake = self.generator(noise())  # (B, C, H, W)
            l_real, l_fake = self.discriminator(x), self.discriminator(x_fake)  # (B,), (B,)
            # L_D = -[mean log D(x) + mean log(1 - D(G(z)))]
            d_loss = d_loss_from_logits(l_real, l_fake)
            optimizer.zero_grad(set_to_none=True)
            d_loss.backward()  # grads on D only (x_fake carries no graph)
            if not math.isfinite(average(d_params, value := float(d_loss.detach()))):
                return value, {"d_loss": value}
            optimizer.step()

        # G descends L_G on fresh noise; D's gradients are dropped so that D does not move
        l_fake_g = self.discriminator(self.generator(noise()))  # (B,)
        g_loss = g_loss_from_logits(l_fake_g, self.config.loss)  # minimax or non-saturating L_G
        with torch.no_grad():
            metrics = {"d_loss": float(d_loss), "g_loss": float(g_loss),
                       "d_real": float(torch.sigmoid(l_real).mean()), "d_fake": float(torch.sigmoid(l_fake).mean())}
        optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        for p in d_params:
            p.grad = None
        if not math.isfinite(average(g_params, metrics["g_loss"])):
            return metrics["g_loss"], metrics
        assert all(p.grad is not None for p in g_params if p.requires_grad)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if group is not None:  # BatchNorm's running statistics: the ranks' mean on every rank
            group.mean_([t for t in self.generator.buffers() if t.is_floating_point()])
        return metrics["d_loss"], metrics


__all__ = ["GAN", "LOSSES", "PRESETS", "Discriminator", "GANConfig", "Generator"]
