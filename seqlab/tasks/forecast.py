r"""Multi-step forecasters from seqlab's own LSTM, GRU and Transformer encoder, with a Gaussian
or Laplace head: a direct forecast of the whole horizon at once, with a centre and a variance per
step.

Lecture, "Other similar sequential control or prediction problems": "Time series prediction
(for example, stock price prediction)". The recurrent encoder reads the window x_1..x_W
(lecture: a^(h)_t = f(x_t, a^(h)_{t-1}), an LSTM or GRU of ``seqlab.recurrent``); the
Transformer reads it with self-attention (``seqlab.transformer.Encoder`` over
u_t = w^(in) x_t + p_t, p_t a learned position embedding). Either way the last state a_W
(B, D) is mapped to 2H numbers (direct multi-output forecasting, Taieb et al. 2012):

    mu_h      = w^(mu)_h . a_W + b^(mu)_h                 h = 1..H   (the scaled forecast)
    log s2_h  = w^(s)_h  . a_W + b^(s)_h                             (its log variance)

trained by the Gaussian negative log-likelihood of the scaled targets z_h (Nix & Weigend 1994),
weighted per point by stop-grad(s2_h)^beta, the beta-NLL of Seitzer et al. (2022) (beta = 0:
the plain NLL; beta = 1: the mean's gradient of the squared error):

    L = mean_{b,h} sg(s2_h)^beta [ 1/2 log(2 pi s2_h) + (z_h - mu_h)^2 / (2 s2_h) ]

With ``head="laplace"`` the same two outputs are a Laplace distribution's centre (its median)
and variance s2 = 2 b^2 (scale b = sqrt(s2 / 2)), trained by its negative log-likelihood,
weighted by stop-grad(b)^beta (beta = 1: the centre's gradient of the absolute error, the error
that MASE and sMAPE count):

    L = mean_{b,h} sg(b_h)^beta [ log(2 b_h) + |z_h - mu_h| / b_h ]

An ensemble of K members (``members``; Lakshminarayanan et al. 2017) is K networks of the same
form with their own initial weights, trained on the same batches (the loss is their sum, so their
gradients do not mix). The forecast is the mixture's mean and variance:

    mu = 1/K sum_k mu_k,    s2 = 1/K sum_k (s2_k + mu_k^2) - mu^2

Intervals: mu +- q s in the scaled space, mapped back by the series' scaling
(``forecast_data.Scaler.invert``: monotone, so the bounds stay bounds); q = z_{1-a/2} for the
Gaussian head, and ln(1/a) / sqrt(2) for the Laplace head (the central 1 - a interval of a
Laplace distribution of that variance; for K > 1 the mixture is approximated by it).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.validation import check_choice, check_float, check_int, check_tensor, fail, fields_from_dict

ARCHS = ("lstm", "gru", "transformer")
HEADS = ("gaussian", "laplace")
LOG_VAR_RANGE = (-12.0, 8.0)  # log s2 is clamped here (variances of z from 6e-6 to 3e3)


@dataclass(frozen=True)
class ForecastConfig:
    """A forecaster (direct multi-step, Gaussian or Laplace head, ensemble of ``members``).

    Attributes:
        arch: the encoder: lstm or gru (seqlab.recurrent) or transformer (seqlab.transformer)
        hidden_size: width D of the encoder (hidden units of the LSTM/GRU, d_model of the Transformer)
        num_layers: stacked recurrent layers or Transformer blocks
        num_heads: attention heads of the Transformer (D a multiple of it)
        d_ff: width of the Transformer blocks' MLP
        dropout: dropout of the encoder (between recurrent layers; in the Transformer blocks)
        members: ensemble size K (networks with their own initial weights, trained side by side)
        head: the forecast distribution: gaussian (trained by its NLL: squared errors) or laplace
            (its NLL: absolute errors; the centre is a median)
        nll_beta: beta of the beta-NLL (0: the plain NLL; 1: the centre learns as with the squared
            error, Gaussian, or the absolute error, Laplace)
        window: input steps W (set from the data)
        horizon: forecast steps H (set from the data)
        input_size: input features per step (set from the data)
    """

    arch: str = "gru"
    hidden_size: int = 32
    num_layers: int = 1
    num_heads: int = 4
    d_ff: int = 96
    dropout: float = 0.0
    members: int = 5
    head: str = "gaussian"
    nll_beta: float = 1.0
    window: int = 24
    horizon: int = 12
    input_size: int = 1

    def __post_init__(self) -> None:
        check_choice(self.arch, "arch", ARCHS)
        check_int(self.hidden_size, "hidden_size", minimum=1, maximum=4096)
        check_int(self.num_layers, "num_layers", minimum=1, maximum=16)
        check_int(self.num_heads, "num_heads", minimum=1)
        check_int(self.d_ff, "d_ff", minimum=1)
        check_float(self.dropout, "dropout", minimum=0.0, maximum=1.0, open_max=True)
        check_int(self.members, "members", minimum=1, maximum=32)
        check_choice(self.head, "head", HEADS)
        check_float(self.nll_beta, "nll_beta", minimum=0.0, maximum=1.0)
        check_int(self.window, "window", minimum=2, maximum=10_000)
        check_int(self.horizon, "horizon", minimum=1, maximum=1000)
        check_int(self.input_size, "input_size", minimum=1, maximum=64)
        if self.arch == "transformer" and self.hidden_size % self.num_heads:
            fail("hidden_size", f"a multiple of num_heads={self.num_heads} for the transformer", self.hidden_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ForecastConfig":
        return cls(**fields_from_dict(cls, d, "forecast config"))


class Member(nn.Module):
    """One network: encoder over the window, then the head (mu, log s2) of H steps (a Gaussian's or a
    Laplace distribution's centre and log variance)."""

    def __init__(self, c: ForecastConfig) -> None:
        super().__init__()
        self.arch = c.arch
        D = c.hidden_size
        if c.arch in ("lstm", "gru"):
            from seqlab.recurrent.gru import GRU, GRUConfig
            from seqlab.recurrent.lstm import LSTM, LSTMConfig

            if c.arch == "lstm":
                self.encoder = LSTM(LSTMConfig(input_size=c.input_size, hidden_size=D, num_layers=c.num_layers,
                                               dropout=c.dropout, forget_bias=1.0))
            else:
                self.encoder = GRU(GRUConfig(input_size=c.input_size, hidden_size=D, num_layers=c.num_layers,
                                             dropout=c.dropout))
        else:
            from seqlab.transformer import BlockConfig, Encoder, LearnedPositionalEncoding

            self.w_in = nn.Linear(c.input_size, D)
            self.position = LearnedPositionalEncoding(max_len=c.window, d_model=D)
            self.encoder = Encoder(num_layers=c.num_layers, config=BlockConfig(
                d_model=D, num_heads=c.num_heads, d_ff=c.d_ff, dropout=c.dropout))
        self.w_mu = nn.Linear(D, c.horizon)
        self.w_s = nn.Linear(D, c.horizon)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, W, I) -> mu (B, H), log s2 (B, H)."""
        if self.arch == "transformer":
            # u_t = w^(in) x_t + p_t
            u = self.position(self.w_in(x))  # (B, W, D)
            a = self.encoder(u)[:, -1]  # (B, D): the last position, which attends to the whole window
        else:
            out, _ = self.encoder(x)  # (B, W, D)
            a = out[:, -1]  # a^(h)_W: (B, D)
        # mu_h = w^(mu)_h . a_W + b^(mu)_h ;  log s2_h = w^(s)_h . a_W + b^(s)_h
        return self.w_mu(a), self.w_s(a).clamp(*LOG_VAR_RANGE)


class Forecaster(nn.Module):
    """``forward(x) -> (mu (K, B, H), log s2 (K, B, H))`` per member; ``predict(x) -> (mean, sd)``
    of the mixture; ``loss(batch)`` the beta-NLL of the head's distribution summed over members
    (the generic trainer's interface: batch {"x": (B, W, I), "y": (B, H)})."""

    def __init__(self, config: ForecastConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        self.config = c = config if config is not None else ForecastConfig(**kwargs)
        self.members = nn.ModuleList(Member(c) for _ in range(c.members))

    def _check(self, x: torch.Tensor) -> None:
        c = self.config
        check_tensor(x, "x", ndim=3, dims="(batch, window, features)", floating=True, finite=True)
        if x.shape[1] != c.window or x.shape[2] != c.input_size:
            fail("x", f"windows of shape (B, {c.window}, {c.input_size})", f"shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(x)
        outs = [m(x) for m in self.members]
        return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])  # (K, B, H) each

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        x, z = batch["x"], batch["y"]  # (B, W, I), (B, H)
        mu, log_s2 = self(x)  # (K, B, H)
        if self.config.head == "laplace":
            # b = sqrt(s2 / 2);  L = sg(b)^beta [log(2 b) + |z - mu| / b]
            log_b = 0.5 * (log_s2 - math.log(2.0))
            b = log_b.exp()
            nll = math.log(2.0) + log_b + (z[None] - mu).abs() / b
            weight = b.detach() ** self.config.nll_beta
        else:
            s2 = log_s2.exp()
            # L = sg(s2)^beta [1/2 log(2 pi s2) + (z - mu)^2 / (2 s2)]
            nll = 0.5 * (math.log(2 * math.pi) + log_s2 + (z[None] - mu) ** 2 / s2)
            weight = s2.detach() ** self.config.nll_beta
        loss = (weight * nll).mean(dim=(1, 2)).sum()
        with torch.no_grad():
            mean = mu.mean(0)
            metrics = {"nll": float(nll.mean()), "mse": float(F.mse_loss(mean, z))}
        return loss, metrics

    def interval_factor(self, level: float) -> float:
        """q of the central interval mu +- q sd of coverage ``level`` (0 < level < 1): the
        standard normal quantile z_{(1+level)/2} (Gaussian head), or ln(1 / (1 - level)) / sqrt(2)
        (Laplace head: its quantile in units of its standard deviation sqrt(2) b)."""
        check_float(level, "level", minimum=0.0, maximum=1.0, open_min=True, open_max=True)
        if self.config.head == "laplace":
            return math.log(1.0 / (1.0 - level)) / math.sqrt(2.0)
        return statistics.NormalDist().inv_cdf(0.5 + level / 2)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixture's mean and standard deviation (B, H), in the scaled space."""
        mu, log_s2 = self(x)
        # mu = 1/K sum_k mu_k ;  s2 = 1/K sum_k (s2_k + mu_k^2) - mu^2
        mean = mu.mean(0)
        var = (log_s2.exp() + mu ** 2).mean(0) - mean ** 2
        return mean, var.clamp_min(1e-12).sqrt()


__all__ = ["ARCHS", "HEADS", "ForecastConfig", "Forecaster", "Member"]
