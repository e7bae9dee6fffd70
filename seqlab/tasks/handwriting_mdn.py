r"""Handwriting generation: a recurrent mixture density network over pen offsets, unconditional
or conditioned on a text through a soft attention window (Graves 2013, "Generating Sequences
With Recurrent Neural Networks", sections 4 and 5).

The pen offsets x_t = (x1_t, x2_t, x3_t) = (dx, dy, e) (``seqlab.tasks.handwriting_data``); the
sequence starts with x_0 = (0, 0, 1), and the network predicts x_{t+1} from x_0..x_t.

**The network** (seqlab's own LSTM, the lecture's equations; shapes batch first):

    h1_t = LSTM_1([x_t ; w_{t-1}], h1_{t-1})           stepped by hand: the window needs h1_t   (B, H)
    (alpha^, beta^, kappa^)_t = w^(p) . h1_t + b^(p)    K Gaussians of the window        (eq. 48)  (B, 3K)
    alpha_t = exp(alpha^_t),  beta_t = exp(beta^_t)                                     (eqs. 49-50)
    kappa_t = kappa_{t-1} + exp(kappa^_t)               the window only moves forward    (eq. 51)
    phi(t, u) = sum_k alpha_t^k exp(-beta_t^k (kappa_t^k - u)^2)   u = 1..U             (eq. 46)  (B, U)
    w_t = sum_u phi(t, u) c_u                           c_u: one-hot of the u-th letter  (eq. 47)  (B, V)
    h2_t = LSTM_2..L([x_t ; h1_t ; w_t])                seqlab's LSTM stack over the whole sequence  (B, T, H)
    y^_t = (e^_t, {pi^_j, mu^_j, sigma^_j, rho^_j}_{j=1..M}) = w^(y) . [h1_t ; h2_t] + b^(y)   (eq. 17)

Without the text (``conditional=False``) there is no window: LSTM_1 reads x_t, the upper
layers [x_t ; h1_t].

**The mixture density output** (eqs. 18-22):

    e_t = 1 / (1 + exp(e^_t))        the probability that the pen is lifted after x_{t+1}   (18)
    pi_t^j = softmax_j(pi^_t)        mixture weights                                       (19)
    mu_t^j = mu^_t^j                 means                                                 (20)
    sigma_t^j = exp(sigma^_t^j)      standard deviations                                   (21)
    rho_t^j = tanh(rho^_t^j)         correlations                                          (22)

    Pr(x_{t+1} | y_t) = sum_j pi_t^j N(x1, x2 | mu_t^j, sigma_t^j, rho_t^j)
                         * (e_t if x3_{t+1} = 1 else 1 - e_t)                              (23)
    N(x | mu, sigma, rho) = 1 / (2 pi sigma1 sigma2 sqrt(1 - rho^2)) exp(-Z / (2 (1 - rho^2)))   (24)
    Z = (x1 - mu1)^2 / sigma1^2 + (x2 - mu2)^2 / sigma2^2 - 2 rho (x1 - mu1)(x2 - mu2) / (sigma1 sigma2)   (25)
    L(x) = sum_t -ln(sum_j pi_t^j N(x_{t+1} | ...)) - (ln e_t if x3_{t+1} = 1 else ln(1 - e_t))   (26)

(``loss`` divides L by the number of points and averages over the batch.)

**Sampling with a bias** b >= 0 (section 5.4): sigma_t^j = exp(sigma^_t^j - b) and
pi_t^j = softmax_j(pi^_t (1 + b)): b = 0 samples the model as trained, larger b writes more
neatly and more alike. A conditional sample stops when the window has passed the text: when
phi(t, U + 1) > phi(t, u) for every u <= U (section 5.3), or after ``max_points``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.recurrent.lstm import LSTM, LSTMConfig, LSTMLayer
from seqlab.tasks.handwriting import HandwritingConfig
from seqlab.validation import check_float, check_int, check_tensor, fail


def mixture_params(y_hat: torch.Tensor, M: int, bias: float = 0.0):
    """Eqs. 18-22 (with the sampling bias b of section 5.4) from y^ (..., 1 + 6M):
    returns (e^, log pi, mu (..., M, 2), log sigma (..., M, 2), rho (..., M))."""
    e_hat = y_hat[..., 0]
    pi_hat, mu, log_sigma, rho_hat = torch.split(y_hat[..., 1:], [M, 2 * M, 2 * M, M], dim=-1)
    # pi_t^j = softmax_j(pi^_t (1 + b))                                   (eq. 19, biased)
    log_pi = F.log_softmax(pi_hat * (1.0 + bias), dim=-1)
    # sigma_t^j = exp(sigma^_t^j - b)                                     (eq. 21, biased)
    log_sigma = log_sigma - bias
    # rho_t^j = tanh(rho^_t^j)                                            (eq. 22)
    rho = torch.tanh(rho_hat)
    shape = mu.shape[:-1] + (M, 2)
    return e_hat, log_pi, mu.reshape(shape), log_sigma.reshape(shape), rho


def mixture_nll(y_hat: torch.Tensor, target: torch.Tensor, M: int) -> torch.Tensor:
    """-ln Pr(x_{t+1} | y_t) per step (eqs. 23-26): y^ (..., 1 + 6M), target (..., 3) -> (...)."""
    e_hat, log_pi, mu, log_sigma, rho = mixture_params(y_hat, M)
    x = target[..., None, :2]  # (..., 1, 2)
    s = log_sigma.exp()
    d = (x - mu) / s  # ((x1 - mu1) / sigma1, (x2 - mu2) / sigma2)                 (..., M, 2)
    one_m_rho2 = (1.0 - rho * rho).clamp_min(1e-6)
    # Z = (x1-mu1)^2/sigma1^2 + (x2-mu2)^2/sigma2^2 - 2 rho (x1-mu1)(x2-mu2)/(sigma1 sigma2)   (eq. 25)
    z = d[..., 0] ** 2 + d[..., 1] ** 2 - 2.0 * rho * d[..., 0] * d[..., 1]
    # ln N = -ln(2 pi sigma1 sigma2 sqrt(1 - rho^2)) - Z / (2 (1 - rho^2))                     (eq. 24)
    log_n = (-math.log(2 * math.pi) - log_sigma.sum(-1) - 0.5 * torch.log(one_m_rho2) - z / (2.0 * one_m_rho2))
    # -ln sum_j pi_j N_j                                                                    (eq. 26, first term)
    nll_xy = -torch.logsumexp(log_pi + log_n, dim=-1)
    # e_t = 1 / (1 + exp(e^_t)): ln e_t = ln sigmoid(-e^_t), ln(1 - e_t) = ln sigmoid(e^_t)   (eqs. 18, 26)
    up = target[..., 2]
    nll_e = -(up * F.logsigmoid(-e_hat) + (1.0 - up) * F.logsigmoid(e_hat))
    return nll_xy + nll_e


def window_weights(h1: torch.Tensor, w_p: nn.Linear, kappa: torch.Tensor, U: int, char_mask: torch.Tensor,
                   *, extra: int = 0):
    """Eqs. 46-51: (phi (B, U + extra), kappa_t (B, K)) from h1_t (B, H) and kappa_{t-1}."""
    a_hat, b_hat, k_hat = w_p(h1).chunk(3, dim=-1)  # (B, K) each                  (eq. 48)
    alpha, beta = a_hat.exp(), b_hat.exp()  # (eqs. 49-50)
    # kappa_t = kappa_{t-1} + exp(kappa^_t)                                       (eq. 51)
    kappa = kappa + k_hat.exp()
    u = torch.arange(1, U + 1 + extra, device=h1.device, dtype=h1.dtype)  # (U',)
    # phi(t, u) = sum_k alpha^k exp(-beta^k (kappa^k - u)^2)                     (eq. 46)
    phi = (alpha[:, :, None] * torch.exp(-beta[:, :, None] * (kappa[:, :, None] - u) ** 2)).sum(1)  # (B, U')
    if extra == 0:
        phi = phi * char_mask
    return phi, kappa


class HandwritingGenerator(nn.Module):
    """``forward(x (B, T, 3), chars (B, U) or None, char_lengths) -> y^ (B, T, 1 + 6M)``;
    ``loss(batch)`` with batch ``(x, lengths, chars, char_lengths)`` (x without x_0: the targets);
    ``sample(chars, ...)`` writes."""

    family = "handwriting"

    def __init__(self, config: HandwritingConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        self.config = c = config if config is not None else HandwritingConfig(task="generate", **kwargs)
        H, V, K, M = c.hidden_size, c.vocab_size, c.window_mixtures, c.mixtures
        W = V if c.conditional else 0
        self.lstm_1 = LSTMLayer(3 + W, H, forget_bias=1.0)  # LSTM_1, stepped by hand
        if c.conditional:
            self.w_p = nn.Linear(H, 3 * K)  # w^(p), b^(p) of the window                (eq. 48)
            with torch.no_grad():  # the window starts by moving about a tenth of a letter a point
                self.w_p.weight.mul_(0.1)
                self.w_p.bias.zero_()
                self.w_p.bias[2 * K:].fill_(math.log(0.1))
        self.upper = LSTM(LSTMConfig(3 + H + W, H, c.num_layers - 1, forget_bias=1.0)) if c.num_layers > 1 else None
        self.w_y = nn.Linear(H * min(c.num_layers, 2), 1 + 6 * M)  # w^(y), b^(y)        (eq. 17)

    # ---- LSTM_1, one step, in the lecture's equations (the weights of seqlab's LSTMLayer)

    def _gates(self):
        l = self.lstm_1
        w_x = torch.cat([l.w_i, l.w_f, l.w_g, l.w_o])  # (4H, I)
        w_a = torch.cat([l.w_I, l.w_F, l.w_G, l.w_O])  # (4H, H)
        b = torch.cat([l.b_i, l.b_f, l.b_g, l.b_o])  # (4H,)
        return w_x, w_a, b

    @staticmethod
    def _step(pre: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_a: torch.Tensor):
        """One LSTM step from the input part ``pre`` = w^(.) . x_t + b^(.) of the four gates (B, 4H)."""
        i, f, g, o = (pre + h @ w_a.T).chunk(4, dim=-1)
        # a^(c)_t = a^(f)_t * a^(c)_{t-1} + a^(i)_t * a^(g)_t;  a^(h)_t = a^(o)_t * tanh(a^(c)_t)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def _check_chars(self, chars, char_lengths, B: int):
        if not self.config.conditional:
            return None, None
        if chars is None:
            fail("chars", "the text's letter ids (a conditional generator)", "None")
        check_tensor(chars, "chars", ndim=2, dims="(batch, letters)")
        if chars.shape[0] != B or chars.shape[1] < 1:
            fail("chars", f"({B}, U >= 1) letter ids", f"shape {tuple(chars.shape)}")
        if int(chars.min()) < 0 or int(chars.max()) >= self.config.vocab_size:
            fail("chars", f"ids in [0, {self.config.vocab_size - 1}]", f"[{int(chars.min())}, {int(chars.max())}]")
        if char_lengths is None:
            char_lengths = torch.full((B,), chars.shape[1], dtype=torch.long)
        char_lengths = torch.as_tensor(char_lengths, dtype=torch.long)
        if char_lengths.shape != (B,) or int(char_lengths.min()) < 1 or int(char_lengths.max()) > chars.shape[1]:
            fail("char_lengths", f"{B} lengths in [1, {chars.shape[1]}]", char_lengths.tolist())
        return chars, char_lengths

    def forward(self, x: torch.Tensor, chars: torch.Tensor | None = None, char_lengths: torch.Tensor | None = None,
                *, return_phi: bool = False):
        """y^_t for inputs x_0..x_{T-1} = ``x`` (B, T, 3) (x_0 = (0, 0, 1) first)."""
        c = self.config
        check_tensor(x, "pen offsets", ndim=3, dims="(batch, points, 3)", floating=True, finite=True)
        B, T, _ = x.shape
        chars, char_lengths = self._check_chars(chars, char_lengths, B)
        H = c.hidden_size
        w_x, w_a, b = self._gates()
        h = x.new_zeros(B, H)
        cell = x.new_zeros(B, H)
        # the input part of LSTM_1 from x_t, for every t at once                        (B, T, 4H)
        pre_x = x @ w_x[:, :3].T + b
        h1s, ws, phis = [], [], []
        if c.conditional:
            V, U = c.vocab_size, chars.shape[1]
            one_hot = F.one_hot(chars, V).to(x.dtype)  # c_u                            (B, U, V)
            char_mask = (torch.arange(U)[None, :] < char_lengths[:, None]).to(x.dtype)  # (B, U)
            w = x.new_zeros(B, V)  # w_0
            kappa = x.new_zeros(B, c.window_mixtures)
            w_w = w_x[:, 3:]  # the part of LSTM_1's input weights on w_{t-1}            (4H, V)
            for t in range(T):
                # h1_t = LSTM_1([x_t ; w_{t-1}], h1_{t-1})
                h, cell = self._step(pre_x[:, t] + w @ w_w.T, h, cell, w_a)
                phi, kappa = window_weights(h, self.w_p, kappa, U, char_mask)  # (B, U)
                # w_t = sum_u phi(t, u) c_u                                              (eq. 47)
                w = torch.einsum("bu,buv->bv", phi, one_hot)
                h1s.append(h)
                ws.append(w)
                if return_phi:
                    phis.append(phi)
            h1, wt = torch.stack(h1s, 1), torch.stack(ws, 1)  # (B, T, H), (B, T, V)
            upper_in = torch.cat([x, h1, wt], dim=-1)
        else:
            for t in range(T):
                h, cell = self._step(pre_x[:, t], h, cell, w_a)
                h1s.append(h)
            h1 = torch.stack(h1s, 1)
            upper_in = torch.cat([x, h1], dim=-1)
        if self.upper is not None:
            h2, _ = self.upper(upper_in)  # (B, T, H)
            y_hat = self.w_y(torch.cat([h1, h2], -1))  # (eq. 17)                  (B, T, 1 + 6M)
        else:
            y_hat = self.w_y(h1)
        return (y_hat, torch.stack(phis, 1)) if return_phi else y_hat

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """L(x) of eq. 26 per point, averaged over the batch's points."""
        x, lengths, chars, char_lengths = batch
        B, T, _ = x.shape
        start = x.new_zeros(B, 1, 3)
        start[:, :, 2] = 1.0  # x_0 = (0, 0, 1)
        inputs = torch.cat([start, x[:, :-1]], dim=1)  # x_0 .. x_{T-1}              (B, T, 3)
        y_hat = self(inputs, chars if self.config.conditional else None,
                     char_lengths if self.config.conditional else None)
        nll = mixture_nll(y_hat.float(), x.float(), self.config.mixtures)  # (B, T)
        mask = (torch.arange(T)[None, :] < lengths.cpu()[:, None]).to(nll.device, nll.dtype)
        loss = (nll * mask).sum() / mask.sum()
        return loss, {"points": int(mask.sum())}

    @torch.no_grad()
    def sample(self, chars: torch.Tensor | None = None, char_lengths: torch.Tensor | None = None, *,
               batch_size: int = 1, bias: float = 0.0, max_points: int | None = None,
               generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Pen offsets (T_b, 3) per item: of the texts ``chars`` (conditional) or ``batch_size``
        unconditional samples of ``max_points`` points (default 300)."""
        c = self.config
        check_float(bias, "bias", minimum=0.0, maximum=10.0)
        B = chars.shape[0] if c.conditional and chars is not None else batch_size
        chars, char_lengths = self._check_chars(chars, char_lengths, B)
        if max_points is None:
            max_points = int(40 * int(char_lengths.max())) if c.conditional else 300
        check_int(max_points, "max_points", minimum=1, maximum=100_000)
        self.eval()
        dev = next(self.parameters()).device
        H, M = c.hidden_size, c.mixtures
        w_x, w_a, b = self._gates()
        h, cell = torch.zeros(B, H, device=dev), torch.zeros(B, H, device=dev)
        state = None
        x = torch.zeros(B, 3, device=dev)
        x[:, 2] = 1.0  # x_0
        if c.conditional:
            V, U = c.vocab_size, chars.shape[1]
            chars, char_lengths = chars.to(dev), char_lengths.to(dev)
            one_hot = F.one_hot(chars, V).float()
            char_mask = (torch.arange(U, device=dev)[None, :] < char_lengths[:, None]).float()
            w = torch.zeros(B, V, device=dev)
            kappa = torch.zeros(B, c.window_mixtures, device=dev)
        out = torch.zeros(B, max_points, 3)
        n = torch.full((B,), max_points, dtype=torch.long)
        done = torch.zeros(B, dtype=torch.bool)
        for t in range(max_points):
            pre = x @ w_x[:, :3].T + b
            if c.conditional:
                h, cell = self._step(pre + w @ w_x[:, 3:].T, h, cell, w_a)
                phi, kappa = window_weights(h, self.w_p, kappa, U, char_mask, extra=1)  # (B, U + 1)
                # the window has passed the text: phi(t, U_b + 1) > phi(t, u) for all u <= U_b
                past = phi.gather(1, char_lengths[:, None])[:, 0] > (phi[:, :U] * char_mask).max(1).values
                phi = phi[:, :U] * char_mask
                w = torch.einsum("bu,buv->bv", phi, one_hot)
                upper_in = torch.cat([x, h, w], -1)
            else:
                h, cell = self._step(pre, h, cell, w_a)
                past = torch.zeros(B, dtype=torch.bool)
                upper_in = torch.cat([x, h], -1)
            if self.upper is not None:
                h2, state = self.upper(upper_in[:, None], state=state)
                y_hat = self.w_y(torch.cat([h, h2[:, 0]], -1))
            else:
                y_hat = self.w_y(h)
            e_hat, log_pi, mu, log_sigma, rho = mixture_params(y_hat, M, bias)
            j = torch.multinomial(log_pi.exp().cpu(), 1, generator=generator)[:, 0].to(dev)  # (B,)
            idx = torch.arange(B, device=dev)
            m, s, r = mu[idx, j], log_sigma[idx, j].exp(), rho[idx, j]  # (B, 2), (B, 2), (B,)
            z = torch.randn(B, 2, generator=generator).to(dev)
            # a correlated pair: x1 = mu1 + s1 z1, x2 = mu2 + s2 (rho z1 + sqrt(1 - rho^2) z2)
            dx = m[:, 0] + s[:, 0] * z[:, 0]
            dy = m[:, 1] + s[:, 1] * (r * z[:, 0] + torch.sqrt((1 - r * r).clamp_min(0)) * z[:, 1])
            # e_t = 1 / (1 + exp(e^_t))
            e = (torch.rand(B, generator=generator).to(dev) < torch.sigmoid(-e_hat)).float()
            x = torch.stack([dx, dy, e], -1)
            out[:, t] = x.cpu()
            newly = (past.cpu() | (t == max_points - 1)) & ~done
            n[newly] = t + 1
            done |= newly
            if bool(done.all()):
                break
        rows = []
        for i in range(B):
            r = out[i, : int(n[i])].clone()
            r[-1, 2] = 1.0  # the pen is lifted at the end
            rows.append(r)
        return rows


__all__ = ["HandwritingGenerator", "mixture_nll", "mixture_params", "window_weights"]
