r"""Variational auto-encoder (Kingma & Welling 2014) for small images.

Lecture, "Generative Adversarial Networks" (GANs, VAEs and diffusion models). An image x
(C x H x W pixels in [0, 1], flattened to D = C H W values) is explained by a latent code
z in R^L (L = ``latent_size``):

    p(z) = N(z; 0, I)                                     prior
    p(x|z) = prod_d Bernoulli(x_d; sigmoid(f_d(z)))        decoder (f: an MLP, logits)
    q(z|x) = N(z; mu(x), diag sigma^2(x))                  encoder (an MLP gives mu, log sigma^2)

Training maximises the evidence lower bound (ELBO) on log p(x):

    log p(x) >= ELBO(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z))

with the reparameterisation trick, so that the sample is a differentiable function of mu
and sigma:

    z = mu + sigma * eps,  eps ~ N(0, I)                  (one sample per image)
    log p(x|z) = sum_d [x_d log y_d + (1 - x_d) log(1 - y_d)],  y = sigmoid(f(z))
               = -BCE_with_logits(f(z), x) summed over the D pixels
    KL(q(z|x) || N(0, I)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)   (analytic)

``loss`` is the mean over the batch of -ELBO = recon + KL in nats per image, where
recon = -log p(x|z) for the one sample z. For binary images this is a true negative
log-likelihood bound. The 8x8 digits are grey levels in [0, 1]; BCE accepts them as soft
targets, and then recon (and every number below) is a cross-entropy between the pixel
intensities and the decoder's Bernoulli means, not the log-likelihood of discrete data; it
is still the right quantity to compare models with, since the data entropy term is the
same for all of them.

The importance-weighted estimate (Burda, Grosse & Salakhutdinov 2016):

    log p(x) ~= log 1/k sum_{i=1..k} p(x|z_i) p(z_i) / q(z_i|x),   z_i ~ q(z|x)
              = logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k

is a lower bound in expectation that tightens as k grows (k = 1 is the ELBO in expectation,
k -> infinity gives log p(x)). ``log_likelihood`` decodes the k samples in chunks, so
k = 1000 fits in memory.

Shapes: images (B, C, H, W), flattened (B, D); codes z, mu, log sigma^2 (B, L); the k
importance samples (k, B, L). Randomness comes from an optional ``torch.Generator``
(on the CPU or on the model's device).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.generative.common import check_image_config, check_images
from seqlab.memory import check_batch_fits
from seqlab.validation import (
    check_choice,
    check_float,
    check_int,
    check_tensor,
    fail,
    fields_from_dict,
    resolve_config,
    shape_str,
)

LIKELIHOODS = ("bernoulli",)
LOG_2PI = math.log(2.0 * math.pi)
CHUNK_ELEMENTS = 2 ** 22  # decoder outputs per chunk of importance samples (k_chunk * B * D)

# Named sizes: cpu-small (the defaults) for the 8x8 digits (one hidden layer, as in Kingma &
# Welling), cpu-tiny for tests and quick looks, gpu-baby for Fashion-MNIST.
PRESETS: dict[str, dict] = {
    "cpu-tiny": dict(hidden_size=64, depth=1, latent_size=8),
    "cpu-small": dict(hidden_size=256, depth=1, latent_size=8),
    "gpu-baby": dict(image_size=28, hidden_size=512, depth=2, latent_size=16),
}


@dataclass(frozen=True)
class VAEConfig:
    """Settings of the VAE.

    Attributes:
        channels: C, colour channels of the images (1 for the digits and Fashion-MNIST).
        image_size: H = W, a multiple of 4 (8 for the digits, 28 for Fashion-MNIST).
        latent_size: L, dimension of z (2 gives a latent map one can draw directly).
        hidden_size: width of the encoder's and the decoder's hidden layers.
        depth: number of hidden layers (ReLU) in the encoder and in the decoder.
        likelihood: the decoder's p(x|z), "bernoulli" (logits, binary cross-entropy).
    """

    channels: int = 1
    image_size: int = 8
    latent_size: int = 8
    hidden_size: int = 256
    depth: int = 1
    likelihood: str = "bernoulli"

    def __post_init__(self) -> None:
        check_image_config(self.channels, self.image_size)
        check_int(self.latent_size, "latent_size", minimum=1)
        check_int(self.hidden_size, "hidden_size", minimum=1)
        check_int(self.depth, "depth", minimum=1)
        check_choice(self.likelihood, "likelihood", LIKELIHOODS)

    @property
    def pixels(self) -> int:
        """D = C H W."""
        return self.channels * self.image_size * self.image_size

    @classmethod
    def preset(cls, name: str, **overrides) -> VAEConfig:
        check_choice(name, "preset", PRESETS)
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VAEConfig:
        return cls(**fields_from_dict(cls, d, "VAE config"))


def _mlp(n_in: int, hidden_size: int, depth: int, n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(n_in if i == 0 else hidden_size, hidden_size), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden_size, n_out))


class VAE(nn.Module):
    """``VAE(VAEConfig(...))`` or ``VAE(latent_size=2, image_size=28)``; MLP encoder and decoder."""

    def __init__(self, config: VAEConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        config = resolve_config(config, kwargs, VAEConfig, type(self).__name__)
        self.config = config
        D, L = config.pixels, config.latent_size
        self.encoder = _mlp(D, config.hidden_size, config.depth, 2 * L)  # x (B, D) -> [mu, log sigma^2] (B, 2L)
        self.decoder = _mlp(L, config.hidden_size, config.depth, D)  # z (B, L) -> logits f(z) (B, D)

    # ---- helpers at the boundary

    def _param(self) -> torch.Tensor:
        return self.decoder[-1].weight

    def _images(self, x: object, name: str = "images") -> torch.Tensor:
        cfg = self.config
        return check_images(x, cfg.channels, cfg.image_size, name).to(self._param())

    def _codes(self, z: object, name: str) -> torch.Tensor:
        z = check_tensor(z, name, ndim=2, dims="(B, latent_size)", floating=True)
        if z.shape[1] != self.config.latent_size:
            fail(name, f"latent_size = {self.config.latent_size} columns", f"{z.shape[1]} in shape {shape_str(z)}")
        if z.shape[0] < 1:
            fail(name, "at least one row", f"shape {shape_str(z)}")
        return check_tensor(z, name, finite=True)

    def _posterior(self, mu: object, logvar: object) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self._codes(mu, "mu"), self._codes(logvar, "logvar")
        if mu.shape != logvar.shape:
            fail("logvar", f"the shape of mu {shape_str(mu)}", f"shape {shape_str(logvar)}")
        return mu, logvar

    def _randn(self, shape: Sequence[int], generator: torch.Generator | None) -> torch.Tensor:
        """eps ~ N(0, I) drawn from ``generator`` (CPU or on the model's device)."""
        p = self._param()
        if generator is None or generator.device == p.device:
            return torch.randn(*shape, generator=generator, dtype=p.dtype, device=p.device)
        return torch.randn(*shape, generator=generator, dtype=p.dtype, device=generator.device).to(p.device)

    # ---- the model

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) = N(mu, diag sigma^2): images (B, C, H, W) -> (mu, log sigma^2), each (B, L)."""
        x = self._images(x)
        h = self.encoder(x.flatten(1))  # (B, 2L)
        mu, logvar = h.chunk(2, dim=1)  # (B, L) each
        return mu, logvar

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I), sigma = exp(log sigma^2 / 2): (B, L) -> (B, L)."""
        mu, logvar = self._posterior(mu, logvar)
        eps = self._randn(mu.shape, generator)  # (B, L)
        # z = mu + sigma * eps
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits f(z) of p(x|z): codes (B, L) -> (B, C, H, W); the pixel means are sigmoid(f(z))."""
        z = self._codes(z, "z").to(self._param())
        cfg = self.config
        return self.decoder(z).view(-1, cfg.channels, cfg.image_size, cfg.image_size)

    def kl_divergence(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || N(0, I)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2): (B, L) -> (B,)."""
        mu, logvar = self._posterior(mu, logvar)
        # 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)

    def _recon(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) = BCE_with_logits(f(z), x) summed over the pixels: (..., C, H, W) -> (...)."""
        return F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").flatten(-3).sum(-1)

    def _terms(self, x: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)  # (B, L) each
        z = self.reparameterize(mu, logvar, generator)  # (B, L), one sample per image
        recon = self._recon(self.decode(z), x)  # (B,)  -log p(x|z)
        return recon, self.kl_divergence(mu, logvar)  # (B,), (B,)

    def elbo(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """ELBO(x) = log p(x|z) - KL(q(z|x) || p(z)), one z per image: (B, C, H, W) -> (B,) nats."""
        x = self._images(x)
        recon, kl = self._terms(x, generator)
        return -(recon + kl)

    def loss(self, x: torch.Tensor, *, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """For the trainer: mean over the batch of -ELBO = recon + KL (nats per image), with
        metrics {"recon": mean -log p(x|z), "kl": mean KL} as floats."""
        x = self._images(x)
        recon, kl = self._terms(x, generator)
        # -ELBO = -log p(x|z) + KL(q(z|x) || p(z)), averaged over the batch
        loss = (recon + kl).mean()
        return loss, {"recon": float(recon.detach().mean()), "kl": float(kl.detach().mean())}

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, k: int = 100, *,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Importance-weighted estimate of log p(x) with k samples of q(z|x): (B, C, H, W) -> (B,).

        All k B eps are drawn at once ((k, B, L), small) and decoded in chunks of at most
        ``CHUNK_ELEMENTS`` pixels, so the result does not depend on the chunk size."""
        x = self._images(x)
        check_int(k, "k", minimum=1)
        mu, logvar = self.encode(x)  # (B, L) each
        sigma = torch.exp(0.5 * logvar)
        B, L = mu.shape
        eps = self._randn((k, B, L), generator)  # (k, B, L)
        chunk = max(1, CHUNK_ELEMENTS // (B * self.config.pixels))
        parts = []
        for e in eps.split(chunk):  # (kc, B, L)
            z = mu + sigma * e  # (kc, B, L), z_i ~ q(z|x)
            logits = self.decode(z.flatten(0, 1)).unflatten(0, e.shape[:2])  # (kc, B, C, H, W)
            log_px_z = -self._recon(logits, x)  # (kc, B)  log p(x|z_i)
            log_pz = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)  # (kc, B)  log N(z_i; 0, I)
            log_qz = -0.5 * (e.pow(2) + logvar + LOG_2PI).sum(-1)  # (kc, B)  log N(z_i; mu, sigma^2)
            parts.append(torch.logsumexp(log_px_z + log_pz - log_qz, 0))  # (B,)
        # logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k
        return torch.logsumexp(torch.stack(parts), 0) - math.log(k)

    # ---- samples, reconstructions, the latent space

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Bernoulli means sigmoid(f(z)) of z ~ N(0, I): (n, C, H, W) in [0, 1]."""
        check_int(n, "n", minimum=1)
        c = self.config
        per_image = (c.latent_size + 2 * c.hidden_size * c.depth + 2 * c.pixels) * self._param().element_size()
        check_batch_fits("n", n, per_image, device=self._param().device)
        return torch.sigmoid(self.decode(self._randn((n, self.config.latent_size), generator)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """sigmoid(f(mu(x))): the means decoded from the posterior means, (B, C, H, W)."""
        mu, _ = self.encode(x)
        return torch.sigmoid(self.decode(mu))

    @torch.no_grad()
    def latent_means(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior means mu(x): (B, C, H, W) -> (B, L)."""
        return self.encode(x)[0]

    @torch.no_grad()
    def interpolate(self, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8) -> torch.Tensor:
        """Decoded means along z = (1 - t) mu(x_a) + t mu(x_b), t = 0 .. 1 in ``steps`` steps.

        ``x_a``, ``x_b``: one image each, (1, C, H, W); returns (steps, C, H, W)."""
        check_int(steps, "steps", minimum=2)
        for x, name in ((x_a, "x_a"), (x_b, "x_b")):
            check_images(x, self.config.channels, self.config.image_size, name)
            if x.shape[0] != 1:
                fail(name, "one image, shape (1, C, H, W)", f"shape {shape_str(x)}")
        mu_a, mu_b = self.latent_means(x_a), self.latent_means(x_b)  # (1, L) each
        t = torch.linspace(0.0, 1.0, steps, dtype=mu_a.dtype, device=mu_a.device)[:, None]  # (steps, 1)
        return torch.sigmoid(self.decode((1.0 - t) * mu_a + t * mu_b))

    @torch.no_grad()
    def decode_grid(self, n: int = 15, span: float = 3.0) -> torch.Tensor:
        """Decoded means on an n x n grid of z in [-span, span]^2 (latent_size 2 only):
        (n * n, C, H, W), row-major; z_1 grows left to right, z_2 top to bottom goes from
        +span to -span (as on a plot with z_2 upwards)."""
        if self.config.latent_size != 2:
            fail("decode_grid", "a VAE with latent_size = 2", f"latent_size = {self.config.latent_size}")
        check_int(n, "n", minimum=1)
        check_float(span, "span", minimum=0.0, open_min=True)
        p = self._param()
        v = torch.linspace(-span, span, n, dtype=p.dtype, device=p.device)
        z2, z1 = torch.meshgrid(v.flip(0), v, indexing="ij")  # (n, n) each
        return torch.sigmoid(self.decode(torch.stack([z1, z2], -1).reshape(n * n, 2)))


__all__ = ["VAE", "PRESETS", "VAEConfig"]
