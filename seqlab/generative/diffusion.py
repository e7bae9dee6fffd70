r"""Denoising diffusion probabilistic model (DDPM, Ho et al. 2020) with the DDIM sampler
(Song et al. 2021).

Forward (noising) process: T steps with a variance schedule beta_1 < ... < beta_T,

    q(x_t | x_{t-1}) = N(x_t; sqrt(alpha_t) x_{t-1}, beta_t I),     alpha_t = 1 - beta_t
    alpha_bar_t      = prod_{s=1..t} alpha_s                          (alpha_bar_0 = 1)
    q(x_t | x_0)     = N(x_t; sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), so in one step
    x_t              = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,   eps ~ N(0, I)   (q_sample)

Training: a network eps_theta(x_t, t) (a small U-Net, ``seqlab.generative.unet``) learns to
predict the noise; Ho et al.'s simplified objective is

    L_simple = E_{t ~ U{1..T}, x_0, eps} || eps - eps_theta(x_t, t) ||^2     (mean over pixels)

Reverse (denoising) process. The posterior of one forward step is Gaussian,

    q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I),   beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t
    mu~_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
            + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t

and with x_0 = (x_t - sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_bar_t) put in, ancestral
sampling (``p_sample``) starts at x_T ~ N(0, I) and steps t = T, ..., 1:

    x_{t-1} = 1 / sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) + sigma_t z,  z ~ N(0, I)

We take sigma_t^2 = beta~_t, the posterior variance (Ho et al. report beta_t and beta~_t
sample alike). beta~_1 = 0, so the last step adds no noise (and draws none).

DDIM (``method="ddim"``) visits only S timesteps tau_S = T > ... > tau_1 >= 1 (evenly
spaced, round(linspace(T, 1, S))), then tau_0 = 0. From x_t to x_s (s the next, smaller one):

    x0_hat    = (x_t - sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) / sqrt(alpha_bar_t)
    sigma(eta) = eta sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_s)
    x_s       = sqrt(alpha_bar_s) x0_hat + sqrt(1 - alpha_bar_s - sigma^2) eps_theta(x_t, t) + sigma z

eta = 0 is deterministic given x_T; eta = 1 on all T timesteps is the ancestral sampler above.
x0_hat is not clipped (as in Song et al.'s code); only the returned images are clamped to [0, 1].

Noise schedules (``beta_schedule``):
    "linear"  beta_t evenly spaced from beta_1 = 1e-4 (1000 / T) to beta_T = 0.02 (1000 / T): Ho et
              al.'s 1e-4 .. 0.02 for T = 1000, scaled as improved DDPM (Nichol & Dhariwal 2021)
              does for other T so that alpha_bar_T stays near 0 (T = 200: 5e-4 .. 0.1,
              alpha_bar_T = 3e-5); each beta_t capped at 0.999 (which matters for T < 50).
    "cosine"  alpha_bar_t = f(t) / f(0), f(t) = cos^2(pi/2 (t/T + s) / (1 + s)), s = 0.008
              (Nichol & Dhariwal), beta_t = 1 - alpha_bar_t / alpha_bar_{t-1} capped at 0.999.

Spaces: ``loss`` and ``sample`` take and return images (B, C, H, W) in [0, 1]; everything
else (q_sample, eps_theta, p_sample, ddim_step) works on x in [-1, 1] (``to_signed``), where
x_0 lies in [-1, 1] and x_t, t > 0, is unbounded. Timesteps t are integers 1..T as in the
paper; the schedule buffers (betas, alphas, alpha_bars, sqrt_alphas, sqrt_alpha_bars,
sqrt_one_minus_alpha_bars, posterior_variance) have T + 1 entries, index t = 0..T, entry 0
being t = 0 (beta_0 = 0, alpha_bar_0 = 1). They are float64 (1 - alpha_bar_t near t = 1 needs
the digits; ``.to(device)`` keeps that, ``.float()`` would round them) and each coefficient is
cast to the dtype of x where it is used. All randomness comes from an optional
torch.Generator, on the CPU or on the model's device (noise is drawn on the generator's
device, then moved).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.generative.common import check_image_config, check_images, from_signed, to_signed
from seqlab.generative.unet import UNet
from seqlab.memory import check_batch_fits
from seqlab.validation import check_choice, check_float, check_int, fail, fields_from_dict, resolve_config, shape_str

SCHEDULES = ("linear", "cosine")
METHODS = ("ddpm", "ddim")
MAX_BETA = 0.999
DDIM_DEFAULT_STEPS = 50
MAX_TIMESTEPS = 10_000  # T: DDPM uses 1,000; each sample walks all T steps

# Named sizes. cpu-small (the defaults) trains a step on 64 8x8 digits in tens of ms on one CPU
# core; cpu-tiny is half as wide, for tests and quick looks; gpu-baby is for 28x28
# Fashion-MNIST (28 -> 14 -> 7 -> 14 -> 28).
PRESETS: dict[str, dict] = {
    "cpu-tiny": dict(base_channels=8, channel_mults=(1, 2), time_dim=32),
    "cpu-small": dict(base_channels=16, channel_mults=(1, 2), time_dim=64),
    "gpu-baby": dict(base_channels=64, channel_mults=(1, 2, 2), time_dim=256),
}


@dataclass(frozen=True)
class DiffusionConfig:
    """Settings of a diffusion model (DDPM) and its U-Net.

    Attributes:
        channels: C, colour channels of the (B, C, S, S) images (1 for grey images).
        image_size: S = height = width, a multiple of 4 (8 for the digits, 28 for Fashion-MNIST).
        timesteps: T, noising steps of the forward process (1 to 10,000).
        beta_schedule: the noise schedule beta_1 .. beta_T, "linear" or "cosine".
        base_channels: C_0, channels of the U-Net's first level.
        channel_mults: one multiplier per U-Net level, 1 to 3 levels (C_l = C_0 channel_mults[l];
            the image is halved between levels).
        time_dim: size of the timestep embedding (>= 2).
    """

    channels: int = 1
    image_size: int = 8
    timesteps: int = 200
    beta_schedule: str = "linear"
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2)
    time_dim: int = 64

    def __post_init__(self) -> None:
        check_image_config(self.channels, self.image_size)
        check_int(self.timesteps, "timesteps", minimum=1, maximum=MAX_TIMESTEPS)
        check_choice(self.beta_schedule, "beta_schedule", SCHEDULES)
        check_int(self.base_channels, "base_channels", minimum=1)
        mults = tuple(self.channel_mults) if isinstance(self.channel_mults, (list, tuple)) else None
        if (mults is None or not 1 <= len(mults) <= 3
                or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in mults)):
            fail("channel_mults", "1 to 3 positive integers, one per level (the image is halved at most "
                 "twice), e.g. (1, 2)", repr(self.channel_mults))
        object.__setattr__(self, "channel_mults", mults)  # a JSON list becomes a tuple
        check_int(self.time_dim, "time_dim", minimum=2)

    @classmethod
    def preset(cls, name: str, **overrides) -> "DiffusionConfig":
        check_choice(name, "preset", PRESETS)
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DiffusionConfig":
        return cls(**fields_from_dict(cls, d, "Diffusion config"))


def beta_schedule(name: str, timesteps: int) -> torch.Tensor:
    """beta_1 .. beta_T of the named schedule, (T,) float64 (see the module docstring)."""
    check_choice(name, "beta_schedule", SCHEDULES)
    T = check_int(timesteps, "timesteps", minimum=1)
    if name == "linear":
        scale = 1000.0 / T
        betas = torch.linspace(1e-4 * scale, 0.02 * scale, T, dtype=torch.float64)
    else:
        s = 0.008
        t = torch.arange(T + 1, dtype=torch.float64)
        f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # f(0) .. f(T)
        alpha_bar = f / f[0]
        betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=MAX_BETA)


class Diffusion(nn.Module):
    """DDPM with a U-Net noise predictor: ``Diffusion(DiffusionConfig(...))`` or ``Diffusion(timesteps=100)``."""

    def __init__(self, config: DiffusionConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        config = resolve_config(config, kwargs, DiffusionConfig, type(self).__name__)
        self.config = config
        self.T = config.timesteps
        self.net = UNet(config.channels, config.base_channels, config.channel_mults, config.time_dim)

        # the schedule in float64, index t = 0..T (t = 0: beta_0 = 0, alpha_bar_0 = 1)
        betas = torch.cat([torch.zeros(1, dtype=torch.float64), beta_schedule(config.beta_schedule, self.T)])
        alphas = 1 - betas  # alpha_t = 1 - beta_t
        alpha_bars = torch.cumprod(alphas, 0)  # alpha_bar_t = prod_{s<=t} alpha_s
        # beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t, beta~_0 = 0
        posterior_variance = torch.zeros_like(betas)
        posterior_variance[1:] = (1 - alpha_bars[:-1]) / (1 - alpha_bars[1:]) * betas[1:]
        buffers = dict(betas=betas, alphas=alphas, alpha_bars=alpha_bars, sqrt_alphas=alphas.sqrt(),
                       sqrt_alpha_bars=alpha_bars.sqrt(), sqrt_one_minus_alpha_bars=(1 - alpha_bars).sqrt(),
                       posterior_variance=posterior_variance)
        # (T + 1,) each, kept in float64 (1 - alpha_bar_t near t = 1 needs it): every coefficient is
        # computed in float64 and only then cast to the dtype of x. Rebuilt from the config, so not saved.
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)

    # ---- checks and noise

    def _check_x(self, x: object, name: str) -> torch.Tensor:
        """x in [-1, 1] space: a floating (B, C, S, S) tensor (values not checked: no host sync)."""
        C, S = self.config.channels, self.config.image_size
        if not isinstance(x, torch.Tensor):
            fail(name, f"a torch.Tensor (B, {C}, {S}, {S})", type(x).__name__)
        if x.dim() != 4 or x.shape[0] == 0 or tuple(x.shape[1:]) != (C, S, S):
            fail(name, f"a tensor (B, {C}, {S}, {S}), B >= 1", f"shape {shape_str(x)}")
        if not x.is_floating_point():
            fail(name, "a floating-point tensor", f"dtype {x.dtype}")
        return x

    def _timesteps(self, t: object, batch: int) -> torch.Tensor:
        """t as a (B,) int64 tensor on the model's device: an int in 1..T, or an integer tensor
        (B,) with values in 1..T (checked on the CPU only: on a GPU that would cost a host sync
        in every training step)."""
        if isinstance(t, torch.Tensor):
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool or t.dim() != 1 \
                    or t.shape[0] != batch:
                fail("t", f"an int in [1, {self.T}] or an integer tensor of shape ({batch},)",
                     f"shape {shape_str(t)}, dtype {t.dtype}")
            if t.device.type == "cpu" and batch and (int(t.min()) < 1 or int(t.max()) > self.T):
                fail("t", f"timesteps in [1, {self.T}]", f"values in [{int(t.min())}, {int(t.max())}]")
            return t.to(self.betas.device, torch.int64)
        check_int(t, "t", minimum=1, maximum=self.T)
        return torch.full((batch,), t, dtype=torch.int64, device=self.betas.device)

    def _randn(self, shape: Sequence[int], generator: torch.Generator | None) -> torch.Tensor:
        dtype = self.net.conv_in.weight.dtype
        if _check_generator(generator) is None:
            return torch.randn(*shape, device=self.betas.device, dtype=dtype)
        # torch.randn needs the generator on the device it draws on
        z = torch.randn(*shape, generator=generator, device=generator.device, dtype=dtype)
        return z.to(self.betas.device)

    @staticmethod
    def _at(coef: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A float64 buffer at timesteps t (B,) in the dtype of x: (B, 1, 1, 1), broadcast over pixels."""
        return coef[t].view(-1, 1, 1, 1).to(x.dtype)

    # ---- forward process, noise predictor, loss

    def q_sample(self, x0: torch.Tensor, t: int | torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps; x_0 (B, C, S, S) in [-1, 1]."""
        x0 = self._check_x(x0, "x0")
        eps = self._check_x(eps, "eps")
        if eps.shape != x0.shape:
            fail("eps", f"the shape of x0 {shape_str(x0)}", f"shape {shape_str(eps)}")
        t = self._timesteps(t, x0.shape[0])
        # x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps
        return self._at(self.sqrt_alpha_bars, t, x0) * x0 + self._at(self.sqrt_one_minus_alpha_bars, t, x0) * eps

    def eps_theta(self, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """The predicted noise: x_t (B, C, S, S) in [-1, 1] space, t an int or (B,) -> (B, C, S, S)."""
        x_t = self._check_x(x_t, "x_t")
        return self.net(x_t, self._timesteps(t, x_t.shape[0]))

    def loss(self, x: torch.Tensor, *, t: int | torch.Tensor | None = None, eps: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """L_simple on images x (B, C, S, S) in [0, 1]; t ~ U{1..T} and eps ~ N(0, I) unless given."""
        x = check_images(x, self.config.channels, self.config.image_size, "x")
        x0 = to_signed(x).to(self.net.conv_in.weight.dtype)  # (B, C, S, S) in [-1, 1]
        B = x0.shape[0]
        if t is None:  # t ~ U{1..T}
            device = x0.device if _check_generator(generator) is None else generator.device
            t = torch.randint(1, self.T + 1, (B,), generator=generator, device=device)
        t = self._timesteps(t, B)
        eps = self._randn(x0.shape, generator) if eps is None else self._check_x(eps, "eps")
        x_t = self.q_sample(x0, t, eps)
        # L_simple = || eps - eps_theta(x_t, t) ||^2, averaged over batch and pixels
        return F.mse_loss(self.eps_theta(x_t, t), eps), {}

    # ---- reverse process

    @torch.no_grad()
    def p_sample(self, x_t: torch.Tensor, t: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """One ancestral step x_t -> x_{t-1} (both (B, C, S, S), [-1, 1] space), t in 1..T."""
        x_t = self._check_x(x_t, "x_t")
        check_int(t, "t", minimum=1, maximum=self.T)
        eps = self.eps_theta(x_t, t)
        c = lambda v: v.to(x_t.dtype)  # a coefficient, computed in float64, in the dtype of x_t
        # mu_theta = 1 / sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(x_t, t))
        mean = (x_t - c(self.betas[t] / self.sqrt_one_minus_alpha_bars[t]) * eps) / c(self.sqrt_alphas[t])
        if t == 1:  # sigma_1 = 0: no noise at the last step
            return mean
        # x_{t-1} = mu_theta + sigma_t z, sigma_t^2 = beta~_t
        return mean + c(self.posterior_variance[t].sqrt()) * self._randn(x_t.shape, generator)

    @torch.no_grad()
    def ddim_step(self, x_t: torch.Tensor, t: int, s: int, eta: float = 0.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """One DDIM step x_t -> x_s, 0 <= s < t <= T (both (B, C, S, S), [-1, 1] space)."""
        x_t = self._check_x(x_t, "x_t")
        check_int(t, "t", minimum=1, maximum=self.T)
        check_int(s, "s", minimum=0, maximum=t - 1)
        eta = check_float(eta, "eta", minimum=0.0, maximum=1.0)
        ab_t, ab_s = self.alpha_bars[t], self.alpha_bars[s]  # float64 scalars
        c = lambda v: v.to(x_t.dtype)
        eps = self.eps_theta(x_t, t)
        # x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_bar_t)
        x0_hat = (x_t - c((1 - ab_t).sqrt()) * eps) / c(ab_t.sqrt())
        # sigma = eta sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_s)
        sigma = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).sqrt()
        # x_s = sqrt(alpha_bar_s) x0_hat + sqrt(1 - alpha_bar_s - sigma^2) eps_theta + sigma z
        x_s = c(ab_s.sqrt()) * x0_hat + c((1 - ab_s - sigma ** 2).clamp(min=0).sqrt()) * eps
        if eta > 0 and s > 0:  # sigma = 0 at s = 0: no noise drawn there
            x_s = x_s + c(sigma) * self._randn(x_t.shape, generator)
        return x_s

    def _bytes_per_image(self, snapshots: int = 0) -> int:
        """About the bytes one sample takes: the U-Net's activations, the image and its snapshots."""
        c = self.config
        floats = _unet_floats(c) + (max(snapshots, 0) + 2) * c.channels * c.image_size ** 2
        return floats * self.net.conv_in.weight.element_size()

    def timestep_sequence(self, method: str = "ddpm", steps: int | None = None) -> list[int]:
        """The timesteps a sampler visits, T first: T, T-1, .., 1 for "ddpm"; for "ddim" the
        ``steps`` (default min(50, T)) evenly spaced round(linspace(T, 1, steps))."""
        check_choice(method, "method", METHODS)
        if steps is None:
            steps = self.T if method == "ddpm" else min(DDIM_DEFAULT_STEPS, self.T)
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= self.T:
            fail("steps", f"an integer in [1, {self.T}] (the model's training timesteps)", repr(steps))
        if method == "ddpm" and steps != self.T:
            fail("steps", f"None or {self.T} for method 'ddpm' (ancestral sampling visits every timestep; "
                 "use method='ddim' for fewer)", steps)
        # spacing (T - 1) / (steps - 1) >= 1, so the rounded timesteps are distinct
        return [int(v) for v in torch.linspace(self.T, 1, steps, dtype=torch.float64).round()]

    def trajectory_timesteps(self, method: str = "ddpm", steps: int | None = None, snapshots: int = 8) -> list[int]:
        """The t of each snapshot that ``sample(..., trajectory=True)`` returns: T first, 0 last."""
        states = self.timestep_sequence(method, steps) + [0]  # x_T, ..., x_0
        return [states[i] for i in _snapshot_indices(len(states), snapshots)]

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, method: str = "ddpm",
               steps: int | None = None, eta: float = 0.0, trajectory: bool = False, snapshots: int = 8,
               ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """n images (n, C, S, S) in [0, 1], from x_T ~ N(0, I) by ancestral sampling ("ddpm", all T
        steps) or DDIM ("ddim", ``steps`` timesteps, noise scale ``eta``: 0 is deterministic).
        With ``trajectory=True`` also the list of ``snapshots`` intermediate x_t in [0, 1] (clamped),
        evenly spaced over the steps, from the pure noise x_T to the result x_0."""
        check_int(n, "n", minimum=1)
        check_batch_fits("n", n, self._bytes_per_image(snapshots if trajectory is True else 0),
                         device=self.betas.device)
        taus = self.timestep_sequence(method, steps)  # T = tau_S > ... > tau_1
        eta = check_float(eta, "eta", minimum=0.0, maximum=1.0)
        if not isinstance(trajectory, bool):
            fail("trajectory", "True or False", repr(trajectory))
        keep = set(_snapshot_indices(len(taus) + 1, snapshots)) if trajectory else set()  # states 0 (x_T) .. S (x_0)
        C, S = self.config.channels, self.config.image_size
        x = self._randn((n, C, S, S), generator)  # x_T ~ N(0, I), (n, C, S, S)
        states = [from_signed(x)] if 0 in keep else []
        for i, t in enumerate(taus):
            s = taus[i + 1] if i + 1 < len(taus) else 0
            x = self.p_sample(x, t, generator) if method == "ddpm" else self.ddim_step(x, t, s, eta, generator)
            if i + 1 in keep:
                states.append(from_signed(x))
        images = from_signed(x)  # (n, C, S, S) in [0, 1]
        return (images, states) if trajectory else images


def _unet_floats(config: DiffusionConfig) -> int:
    """About the floats one image's pass through the U-Net holds at once: at every level, on
    the way down and up, a residual block's maps (norms, activations, convolutions, the skip)."""
    S, total = config.image_size, 0
    for l, m in enumerate(config.channel_mults):
        total += 2 * 8 * config.base_channels * m * (S // 2 ** l) ** 2
    return total + 4 * config.channels * S * S


def _check_generator(generator: object) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        fail("generator", "a torch.Generator or None", type(generator).__name__)
    return generator


def _snapshot_indices(count: int, snapshots: int) -> list[int]:
    """min(snapshots, count) indices evenly spaced over 0..count-1, both ends included."""
    check_int(snapshots, "snapshots", minimum=2)
    k = min(snapshots, count)  # count >= 2: x_T and x_0
    return [int(v) for v in torch.linspace(0, count - 1, k, dtype=torch.float64).round()]
