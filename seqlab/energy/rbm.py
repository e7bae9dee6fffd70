r"""Bernoulli restricted Boltzmann machine (RBM), trained by contrastive divergence.

Lecture, "Hopfield Networks": "Boltzmann machine is another energy-based model with a hidden
layer"; "Restricted Boltzmann machine does not have connections between units in the same
layer". Visible units v in {0, 1}^D, hidden units h in {0, 1}^H, weights W (H, D) between the
layers only, visible biases b (D,), hidden biases c (H,):

    E(v, h) = -b.v - c.h - h.W v                         energy (no v-v, no h-h weights)
    p(v, h) = exp(-E(v, h)) / Z
    p(h_j = 1 | v) = sigmoid(c_j + W_j . v)              hidden units independent given v
    p(v_i = 1 | h) = sigmoid(b_i + W[:, i] . h)          visible units independent given h
    F(v) = -log sum_h exp(-E(v, h))
         = -b.v - sum_j softplus(c_j + W_j . v)          free energy; p(v) = exp(-F(v)) / Z

Because the units of one layer do not talk to each other, Gibbs sampling updates a whole
layer at once: v -> h ~ p(h | v) -> v' ~ p(v | h) -> ...

Learning is gradient ascent on the mean log-likelihood of the data; its gradient is the
difference between data and model correlations (as for every Boltzmann machine):

    d log p(v) / dW = p(h | v) v^T - E_model[p(h | v') v'^T]
    d log p(v) / db = v - E_model[v']
    d log p(v) / dc = p(h | v) - E_model[p(h | v')]

The model expectation needs samples v' from p(v), which Gibbs chains give approximately:

    CD-k  (Hinton 2002)     a chain starts at each data vector and runs k Gibbs steps
    PCD-k (Tieleman 2008)   ``n_chains`` persistent chains continue from where the previous
                            update left them (their hidden state h is a buffer of the model,
                            so it is saved with the checkpoint, as in scikit-learn's
                            BernoulliRBM, whose PCD-1 this reproduces)

and the update is plain stochastic gradient ascent with learning rate lr (optionally with an
L2 penalty ``weight_decay`` on W). The data phase uses the probabilities p(h | v) and the
model phase the probabilities p(h | v_k) of the last visible sample (the usual
Rao-Blackwellised estimate). ``train_step`` is this hand-written update; a test checks it
against autograd (the data phase is -dF(v)/dtheta, the exact model phase d log Z / dtheta,
computed by enumeration on a small RBM).

Pseudo-likelihood (Besag 1975), the usual tractable score of an RBM:

    log PL(v) = sum_i log p(v_i | v_{-i}) = sum_i log sigmoid(F(v~i) - F(v))

where v~i is v with bit i flipped. ``pseudo_likelihood`` computes all D terms exactly;
``stochastic=True`` draws one bit i per row and returns D log sigmoid(F(v~i) - F(v)), the
unbiased one-bit estimate that scikit-learn's ``score_samples`` returns.

Shapes: a batch of visible vectors is (B, D), of hidden vectors (B, H); float32 by default.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.memory import check_batch_fits
from seqlab.training.device import cpu_threads
from seqlab.validation import (check_choice, check_float, check_int, check_unit_interval, fail, fields_from_dict,
                               resolve_config, shape_str)

MAX_ENUMERATE = 20  # exact log Z enumerates 2^min(D, H) states
SMALL_WORK = 2 ** 16  # fit runs on one CPU thread when (B + M)(D + H) is at most this

# Named sizes (visible_size comes from the data). cpu-small is the defaults, what `seqlab train rbm`
# uses (100 hidden units, as scikit-learn's BernoulliRBM).
PRESETS: dict[str, dict] = {
    "cpu-tiny": dict(hidden_size=32),
    "cpu-small": dict(hidden_size=100),
}


@dataclass(frozen=True)
class RBMConfig:
    """Settings of a Bernoulli RBM.

    Attributes:
        visible_size: D, visible units v (64 for the 8x8 digits; set from the data).
        hidden_size: H, hidden units h.
        k: Gibbs steps per update (CD-k / PCD-k).
        persistent: PCD, persistent chains (True), or CD-k, chains that start at the data (False).
        n_chains: (persistent) the number of persistent chains (default in a run: one per batch item, as in
            scikit-learn).
        init_std: standard deviation of the initial weights, W ~ N(0, init_std^2); b and c start
            at 0 (as in scikit-learn).
    """

    visible_size: int = 64
    hidden_size: int = 100
    k: int = 1
    persistent: bool = True
    n_chains: int = 10
    init_std: float = 0.01

    def __post_init__(self) -> None:
        check_int(self.visible_size, "visible_size", minimum=1)
        check_int(self.hidden_size, "hidden_size", minimum=1)
        check_int(self.k, "k", minimum=1)
        if not isinstance(self.persistent, bool):
            fail("persistent", "True or False", repr(self.persistent))
        check_int(self.n_chains, "n_chains", minimum=1)
        check_float(self.init_std, "init_std", minimum=0.0, finite=True)

    @classmethod
    def preset(cls, name: str, **overrides) -> "RBMConfig":
        check_choice(name, "preset", PRESETS)
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RBMConfig":
        return cls(**fields_from_dict(cls, d, "RBM config"))


def _rows(x: object, name: str, width: int | None, what: str) -> torch.Tensor:
    """``x`` as a real 2-D tensor (batch >= 1, ``width`` units), floating point."""
    if not isinstance(x, torch.Tensor):
        fail(name, f"a torch.Tensor of {what}", type(x).__name__)
    if x.dim() != 2:
        fail(name, "a 2-D tensor (batch, units)", f"shape {shape_str(x)}")
    if width is not None and x.shape[1] != width:
        fail(name, f"{width} units per row", f"{x.shape[1]} in shape {shape_str(x)}")
    if x.shape[0] == 0:
        fail(name, "at least one row", f"shape {shape_str(x)}")
    if x.is_complex():
        fail(name, f"a real tensor of {what}", f"dtype {x.dtype}")
    return x if x.is_floating_point() else x.float()


def check_binary(v: object, name: str, width: int | None = None) -> torch.Tensor:
    """``v`` as a 2-D floating tensor of 0s and 1s (``width`` columns), else a ValueError."""
    v = _rows(v, name, width, "0s and 1s")
    bad = v[(v != 0) & (v != 1)]
    if bad.numel():
        shown = ", ".join(f"{x:g}" for x in torch.unique(bad)[:5].tolist())
        fail(name, "binary values in {0, 1} (binarize the data first, e.g. x > 0.5)",
             f"{bad.numel()} other value(s), e.g. {shown}")
    return v


def check_units(x: object, name: str, width: int) -> torch.Tensor:
    """``x`` as a 2-D real tensor (batch, ``width``) of unit states or probabilities: finite
    values in [0, 1] (the conditionals also take mean-field probabilities)."""
    x = _rows(x, name, width, "unit states or probabilities in [0, 1]")
    check_unit_interval(x, name, "unit states or probabilities")
    return x


class RBM(nn.Module):
    """Bernoulli-Bernoulli RBM: ``RBM(RBMConfig(...))`` or ``RBM(visible_size=64, hidden_size=100)``."""

    def __init__(self, config: RBMConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        config = resolve_config(config, kwargs, RBMConfig, type(self).__name__)
        self.config = config
        D, H = config.visible_size, config.hidden_size
        self.W = nn.Parameter(torch.randn(H, D) * config.init_std)  # (H, D)
        self.b = nn.Parameter(torch.zeros(D))  # (D,) visible biases
        self.c = nn.Parameter(torch.zeros(H))  # (H,) hidden biases
        # the hidden state of the persistent chains (PCD); they start at h = 0, as in scikit-learn
        self.register_buffer("h_chain", torch.zeros(config.n_chains if config.persistent else 0, H))

    # ---- conditionals and sampling

    def p_h(self, v: torch.Tensor) -> torch.Tensor:
        """p(h_j = 1 | v) = sigmoid(c_j + W_j . v): (B, D) -> (B, H). ``v``: visible states, or
        probabilities in [0, 1] (mean field)."""
        return self._p_h(check_units(v, "v", self.config.visible_size).to(self.W))

    def p_v(self, h: torch.Tensor) -> torch.Tensor:
        """p(v_i = 1 | h) = sigmoid(b_i + W[:, i] . h): (B, H) -> (B, D). ``h``: hidden states, or
        probabilities in [0, 1] (mean field)."""
        return self._p_v(check_units(h, "h", self.config.hidden_size).to(self.W))

    def _p_h(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.addmm(self.c, v, self.W.t()))

    def _p_v(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.addmm(self.b, h, self.W))

    @staticmethod
    def _bernoulli(p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.bernoulli(p, generator=generator)

    @torch.no_grad()
    def gibbs(self, v: torch.Tensor, steps: int = 1, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``steps`` Gibbs steps v -> h ~ p(h|v) -> v ~ p(v|h) from ``v`` (B, D).

        Returns (v, p(v | h) of the last step), both (B, D)."""
        v = check_binary(v, "v", self.config.visible_size).to(self.W)
        check_int(steps, "steps", minimum=1)
        for _ in range(steps):
            h = self._bernoulli(self._p_h(v), generator)  # (B, H)
            pv = self._p_v(h)  # (B, D)
            v = self._bernoulli(pv, generator)
        return v, pv

    @torch.no_grad()
    def sample(self, n: int, *, steps: int = 1000, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` fresh chains started at uniform random v, run ``steps`` Gibbs steps.

        Returns (v samples, p(v | h) of the last step), both (n, D); plots show the
        probabilities, which are smoother to look at than the binary samples."""
        check_int(n, "n", minimum=1)
        cfg = self.config
        check_batch_fits("n", n, 3 * (cfg.visible_size + cfg.hidden_size) * self.W.element_size(), device=self.W.device)
        p = torch.full((n, cfg.visible_size), 0.5, dtype=self.W.dtype, device=self.W.device)
        return self.gibbs(self._bernoulli(p, generator), steps, generator)

    @torch.no_grad()
    def reconstruct(self, v: torch.Tensor) -> torch.Tensor:
        """Mean-field reconstruction p(v | h = p(h | v)): (B, D) -> (B, D)."""
        v = check_binary(v, "v", self.config.visible_size).to(self.W)
        return self._p_v(self._p_h(v))

    @torch.no_grad()
    def transform(self, v: torch.Tensor) -> torch.Tensor:
        """Hidden features p(h = 1 | v) for a downstream classifier: (B, D) -> (B, H)."""
        v = check_binary(v, "v", self.config.visible_size).to(self.W)
        return self._p_h(v)

    # ---- energies and scores

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """E(v, h) = -b.v - c.h - h.W v: (B, D), (B, H) -> (B,)."""
        v = check_binary(v, "v", self.config.visible_size).to(self.W)
        h = check_binary(h, "h", self.config.hidden_size).to(self.W)
        if h.shape[0] != v.shape[0]:
            fail("h", f"{v.shape[0]} rows (as many as v)", f"shape {shape_str(h)}")
        return -(v @ self.b) - (h @ self.c) - ((h @ self.W) * v).sum(-1)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = -b.v - sum_j softplus(c_j + W_j . v): (B, D) -> (B,)."""
        v = check_binary(v, "v", self.config.visible_size).to(self.W)
        return self._free_energy(v)

    def _free_energy(self, v: torch.Tensor) -> torch.Tensor:
        return -(v @ self.b) - F.softplus(torch.addmm(self.c, v, self.W.t())).sum(-1)

    def pseudo_likelihood(self, v: torch.Tensor, *, stochastic: bool = False,
                          generator: torch.Generator | None = None) -> torch.Tensor:
        """log PL(v) = sum_i log sigmoid(F(v~i) - F(v)) per row: (B, D) -> (B,).

        ``stochastic=True``: one bit i per row, drawn from ``generator``, times D (the
        estimate scikit-learn's ``BernoulliRBM.score_samples`` returns)."""
        v = check_binary(v, "v", self.config.visible_size).to(self.W)
        B, D = v.shape
        if stochastic:
            i = torch.randint(D, (B,), generator=generator, device=v.device)  # one bit per row
            return self._pl_bits(v, i)
        x = torch.addmm(self.c, v, self.W.t())  # (B, H): c + W v
        f = -(v @ self.b) - F.softplus(x).sum(-1)  # (B,) F(v)
        s = 1.0 - 2.0 * v  # (B, D): +1 where bit i would turn on, -1 where it would turn off
        x_flip = x[:, None, :] + s[:, :, None] * self.W.t()[None]  # (B, D, H): c + W v~i for every i
        f_flip = -(v @ self.b)[:, None] - s * self.b - F.softplus(x_flip).sum(-1)  # (B, D)
        return F.logsigmoid(f_flip - f[:, None]).sum(-1)

    def _pl_bits(self, v: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """D log sigmoid(F(v~i) - F(v)) per row, for the bit i (B,) of each row of v (B, D)."""
        B, D = v.shape
        x = torch.addmm(self.c, v, self.W.t())  # (B, H): c + W v
        f = -(v @ self.b) - F.softplus(x).sum(-1)  # (B,) F(v)
        rows = torch.arange(B, device=v.device)
        si = 1.0 - 2.0 * v[rows, i]  # (B,): +1 where bit i would turn on, -1 where it would turn off
        # flipping bit i adds s_i W[:, i] to c + W v and s_i b_i to b.v
        x_flip = x + si[:, None] * self.W.t()[i]  # (B, H)
        f_flip = -(v @ self.b + si * self.b[i]) - F.softplus(x_flip).sum(-1)
        return D * F.logsigmoid(f_flip - f)

    def log_partition(self) -> torch.Tensor:
        """log Z, exactly, by enumerating the smaller layer (at most 2^20 states).

        Summing out the other layer in closed form:
            log Z = logsumexp_h [c.h + sum_i softplus(b_i + W[:, i] . h)]   (enumerating h)
                  = logsumexp_v [-F(v)]                                      (enumerating v)"""
        D, H = self.config.visible_size, self.config.hidden_size
        if min(D, H) > MAX_ENUMERATE:
            fail("log_partition", f"an RBM with at most {MAX_ENUMERATE} visible or hidden units (exact "
                 "enumeration of 2^n states)", f"{D} visible and {H} hidden units")
        if H <= D:
            h = all_states(H).to(self.W)  # (2^H, H)
            return torch.logsumexp(h @ self.c + F.softplus(torch.addmm(self.b, h, self.W)).sum(-1), 0)
        return torch.logsumexp(-self._free_energy(all_states(D).to(self.W)), 0)

    def log_likelihood(self, v: torch.Tensor) -> torch.Tensor:
        """Exact log p(v) = -F(v) - log Z per row (small RBMs only, see ``log_partition``)."""
        return -self.free_energy(v) - self.log_partition()

    def loss(self, v: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Evaluation for the trainer: the mean negative log pseudo-likelihood per image (nats),
        with the reconstruction error (mean squared, per pixel) and the mean free energy."""
        v = check_binary(v, "v", self.config.visible_size).to(self.W)
        nll = -self.pseudo_likelihood(v).mean()
        recon = float(((self._p_v(self._p_h(v)) - v) ** 2).mean())
        return nll, {"recon_error": recon, "free_energy": float(self._free_energy(v).mean())}

    # ---- learning

    @torch.no_grad()
    def train_step(self, v0: torch.Tensor, *, lr: float, weight_decay: float = 0.0,
                   generator: torch.Generator | None = None, group=None) -> tuple[float, dict[str, float]]:
        """One CD-k / PCD-k update on the batch ``v0`` (B, D) (see the module docstring).

        Returns (the stochastic estimate of the mean negative log pseudo-likelihood of the
        batch before the update, {}), which the trainer logs as the training loss. When that
        is not finite (the weights hold NaN or inf) nothing is updated, and the trainer stops.

        ``group`` (``seqlab.training.distributed.Group``, under torchrun): ``v0`` is this rank's
        share of a global batch of N B rows; see ``_train_step_split``."""
        v0 = check_binary(v0, "batch", self.config.visible_size).to(self.W)
        if group is not None:
            return self._train_step_split(v0, lr, weight_decay, generator, group)
        nll = -float(self.pseudo_likelihood(v0, stochastic=True, generator=generator).mean())
        if math.isfinite(nll):
            u_v, u_h, u_start = self.uniforms(1, v0.shape[0], generator)
            self._update(v0, lr, weight_decay, u_v[0].unbind(0), u_h[0].unbind(0),
                         None if u_start is None else u_start[0])
        return nll, {}

    def _train_step_split(self, v0: torch.Tensor, lr: float, weight_decay: float,
                          generator: torch.Generator | None, group) -> tuple[float, dict[str, float]]:
        """``train_step`` on rank r of N, whose ``v0`` holds rows r B .. (r+1) B - 1 of the
        step's global batch of N B rows: the one-process update, split by rows.

        - Random numbers: every rank draws them for the whole batch, from the step's generator
          (the same on every rank, in the one-process order: the pseudo-likelihood's bits, then
          ``uniforms``), and keeps its rows; so each row gets the numbers it gets in one process.
        - Chains: CD's chains are the batch's rows, so rank r runs its B. PCD's M persistent
          chains (``h_chain``, M a multiple of N) are split the same way: rank r runs chains
          r M/N .. (r+1) M/N - 1, and the new states of all M are summed back (each rank adds
          its rows to zeros), so every rank holds all M and a checkpoint saves them whole.
        - Statistics: each rank's sums over its rows, divided by the global counts,

              S_W = sum_rows p(h|v0) v0^T / (N B) - sum_chains p(h|v_k) v_k^T / M    (H, D)
              S_b = sum_rows v0 / (N B) - sum_chains v_k / M                         (D,)
              S_c = sum_rows p(h|v0) / (N B) - sum_chains p(h|v_k) / M               (H,)

          are summed over the ranks in one all_reduce (with the chains and each rank's loss),
          so every rank applies W <- W (1 - lr wd) + lr S_W, b <- b + lr S_b, c <- c + lr S_c:
          the one-process update, up to the order of the floating-point sums."""
        cfg = self.config
        B, N = v0.shape[0], group.world_size
        M = cfg.n_chains if cfg.persistent else N * B
        if M % N:
            fail("n_chains under torchrun", f"a multiple of the number of processes ({N}), each running an equal "
                 "share of the persistent chains", str(M))
        rows, chains = group.rows(B), group.rows(M // N)
        W, b, c = self.W.data, self.b.data, self.c.data
        # the pseudo-likelihood's random bit of each row of the global batch; this rank keeps its rows
        bits = torch.randint(cfg.visible_size, (N * B,), generator=generator, device=v0.device)[rows]
        nll = -float(self._pl_bits(v0, bits).mean())
        u_v, u_h, u_start = self.uniforms(1, N * B, generator)  # (1, k, M, D), (1, k, M, H), (1, N B, H)
        ph0 = torch.sigmoid(torch.addmm(c, v0, W.t()))  # (B, H) p(h | v0)
        h = self.h_chain[chains] if cfg.persistent else (u_start[0, rows] < ph0).to(W.dtype)  # (M/N, H)
        for t in range(cfg.k):
            v = (u_v[0, t, chains] < torch.sigmoid(torch.addmm(b, h, W))).to(W.dtype)  # (M/N, D) v ~ p(v | h)
            ph = torch.sigmoid(torch.addmm(c, v, W.t()))  # (M/N, H) p(h | v)
            h = (u_h[0, t, chains] < ph).to(W.dtype)  # (M/N, H) h ~ p(h | v)
        S_W = torch.mm(ph0.t(), v0).div_(N * B).sub_(torch.mm(ph.t(), v).div_(M))  # (H, D)
        S_b = v0.sum(0).div_(N * B).sub_(v.sum(0).div_(M))  # (D,)
        S_c = ph0.sum(0).div_(N * B).sub_(ph.sum(0).div_(M))  # (H,)
        h_all = torch.zeros_like(self.h_chain)  # (M, H) for PCD: this rank's chains, zeros elsewhere
        if cfg.persistent:
            h_all[chains] = h
        loss = torch.tensor([nll], dtype=W.dtype, device=W.device)
        group.sum_([S_W, S_b, S_c, h_all, loss])
        if math.isfinite(float(loss)):  # the same decision on every rank
            if cfg.persistent:
                self.h_chain.copy_(h_all)
            if weight_decay:
                W.mul_(1.0 - lr * weight_decay)
            W.add_(S_W, alpha=lr)
            b.add_(S_b, alpha=lr)
            c.add_(S_c, alpha=lr)
        return nll, {}

    def uniforms(self, n: int, batch: int, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The uniform random numbers of ``n`` updates on batches of ``batch`` rows:
        u_v (n, k, M, D) and u_h (n, k, M, H) for the k Gibbs steps of the M chains (M =
        n_chains for PCD, else the batch size), and for CD u_start (n, B, H) for the chains'
        start h ~ p(h | v0) (None for PCD). A unit with probability p is sampled as 1[u < p]."""
        cfg = self.config
        M = cfg.n_chains if cfg.persistent else batch
        kw = dict(generator=generator, dtype=self.W.dtype, device=self.W.device)
        u_v = torch.rand(n, cfg.k, M, cfg.visible_size, **kw)
        u_h = torch.rand(n, cfg.k, M, cfg.hidden_size, **kw)
        return u_v, u_h, None if cfg.persistent else torch.rand(n, batch, cfg.hidden_size, **kw)

    def _update(self, v0: torch.Tensor, lr: float, weight_decay: float, u_v: Sequence[torch.Tensor],
                u_h: Sequence[torch.Tensor], u_start: torch.Tensor | None) -> None:
        """The update, as the equations read. The uniforms come from ``uniforms``: u_v[t]
        (M, D) and u_h[t] (M, H) for Gibbs step t, u_start (B, H) for CD (so that this and
        ``_update_fused`` can be fed the same randomness)."""
        cfg = self.config
        W, b, c = self.W.data, self.b.data, self.c.data
        # data phase: p(h | v0)
        ph0 = torch.sigmoid(torch.addmm(c, v0, W.t()))  # (B, H)
        # model phase: k Gibbs steps from the persistent chains (PCD) or from the data (CD)
        h = self.h_chain if cfg.persistent else (u_start < ph0).to(W.dtype)  # (M, H)
        for t in range(cfg.k):
            v = (u_v[t] < torch.sigmoid(torch.addmm(b, h, W))).to(W.dtype)  # (M, D) v ~ p(v | h)
            ph = torch.sigmoid(torch.addmm(c, v, W.t()))  # (M, H) p(h | v)
            h = (u_h[t] < ph).to(W.dtype)  # (M, H) h ~ p(h | v)
        if cfg.persistent:
            self.h_chain.copy_(h)
        B, M = v0.shape[0], v.shape[0]
        if weight_decay:
            W.mul_(1.0 - lr * weight_decay)
        # W <- W + lr (<p(h|v) v^T>_data - <p(h|v) v^T>_model)
        W.addmm_(ph0.t(), v0, alpha=lr / B).addmm_(ph.t(), v, alpha=-lr / M)
        # b <- b + lr (<v>_data - <v>_model);  c <- c + lr (<p(h|v)>_data - <p(h|v)>_model)
        b.add_(v0.sum(0), alpha=lr / B).add_(v.sum(0), alpha=-lr / M)
        c.add_(ph0.sum(0), alpha=lr / B).add_(ph.sum(0), alpha=-lr / M)

    def _fused_buffers(self, B: int) -> dict:
        """Work space of ``_update_fused`` for batches of B rows, with every view it uses made
        once (W's transpose stays valid: the updates are in place)."""
        cfg = self.config
        W = self.W.data
        M = cfg.n_chains if cfg.persistent else B
        V = W.new_empty(B + M, cfg.visible_size)  # [v0; v_k]
        PH = W.new_empty(B + M, cfg.hidden_size)  # [p(h | v0); p(h | v_k)]
        aPH = W.new_empty(B + M, cfg.hidden_size)
        a = torch.cat([W.new_full((B,), 1.0 / B), W.new_full((M,), -1.0 / M)])  # (B + M,)
        h = self.h_chain if cfg.persistent else W.new_empty(M, cfg.hidden_size)
        return dict(B=B, Wt=W.t(), V=V, V0=V[:B], Vk=V[B:], Vt=V.t(), PH=PH, PH0=PH[:B], PHk=PH[B:], PHt=PH.t(),
                    aPH=aPH, aPHt=aPH.t(), a=a, a_col=a[:, None], h=h, PV=W.new_empty(M, cfg.visible_size))

    def _update_fused(self, v0: torch.Tensor, lr: float, weight_decay: float, u_v: Sequence[torch.Tensor],
                      u_h: Sequence[torch.Tensor], u_start: torch.Tensor | None, buf: dict) -> None:
        """The same update as ``_update`` (a test checks they agree) with fewer tensor
        operations, for ``fit``'s small batches, where the cost of each call dominates:

            V  = [v0; v_k]  (B + M, D)      PH = [p(h|v0); p(h|v_k)]  (B + M, H)
            a  = [1/B, ..., 1/B, -1/M, ..., -1/M]  (B + M,)
            W <- W + lr (a * PH)^T V,  b <- b + lr V^T a,  c <- c + lr PH^T a

        which is the data-minus-model difference of ``_update`` written as one product each.
        Samples are written in place (into the rows of V and the chains' h); ``buf`` comes
        from ``_fused_buffers``."""
        W, b, c = self.W.data, self.b.data, self.c.data
        Wt, Vk, PHk, PV = buf["Wt"], buf["Vk"], buf["PHk"], buf["PV"]
        buf["V0"].copy_(v0)
        # (a product, then the bias added in place, is cheaper than addmm at these sizes)
        torch.mm(v0, Wt, out=buf["PH0"]).add_(c).sigmoid_()  # p(h | v0)
        h = buf["h"]
        if u_start is not None:  # CD: the chains start at h ~ p(h | v0)
            torch.lt(u_start, buf["PH0"], out=h)
        for t in range(self.config.k):
            torch.lt(u_v[t], torch.mm(h, W, out=PV).add_(b).sigmoid_(), out=Vk)  # v ~ p(v | h)
            torch.mm(Vk, Wt, out=PHk).add_(c).sigmoid_()  # p(h | v)
            torch.lt(u_h[t], PHk, out=h)  # h ~ p(h | v), into the persistent chains for PCD
        if weight_decay:
            W.mul_(1.0 - lr * weight_decay)
        torch.mul(buf["PH"], buf["a_col"], out=buf["aPH"])
        W.addmm_(buf["aPHt"], buf["V"], alpha=lr)
        b.addmv_(buf["Vt"], buf["a"], alpha=lr)
        c.addmv_(buf["PHt"], buf["a"], alpha=lr)

    @torch.no_grad()
    def fit(self, x: torch.Tensor, *, epochs: int, batch_size: int = 10, lr: float = 0.1,
            weight_decay: float = 0.0, shuffle: bool = True, generator: torch.Generator | None = None,
            fused: bool = True) -> "RBM":
        """Epochs of minibatch CD/PCD updates over the rows of ``x`` (N, D), like
        scikit-learn's ``BernoulliRBM.fit`` (which walks the rows in order; ``shuffle=True``
        draws a new order each epoch from ``generator``). Each epoch draws its uniforms in
        one call. ``fused=False`` runs the readable ``_update`` instead of ``_update_fused``
        (the same result). On a CPU, when a batch's products are small ((B + M)(D + H) <=
        2^16 entries) the loop runs on one intra-op thread, which is faster there. No
        checkpoints: for a run with checkpoints, logging and resume use ``seqlab train rbm``."""
        x = check_binary(x, "x", self.config.visible_size).to(self.W)
        check_int(epochs, "epochs", minimum=1)
        check_int(batch_size, "batch_size", minimum=1)
        lr = check_float(lr, "lr", minimum=0.0, open_min=True)
        weight_decay = check_float(weight_decay, "weight_decay", minimum=0.0)
        cfg = self.config
        M = cfg.n_chains if cfg.persistent else batch_size
        small = x.device.type == "cpu" and (batch_size + M) * (cfg.visible_size + cfg.hidden_size) <= SMALL_WORK
        with cpu_threads(1 if small else None):  # small products: one thread is faster
            self._fit(x, epochs, batch_size, lr, weight_decay, shuffle, generator, fused)
        return self

    def _fit(self, x, epochs, batch_size, lr, weight_decay, shuffle, generator, fused) -> None:
        n, k = x.shape[0], self.config.k
        n_batches = (n + batch_size - 1) // batch_size
        bufs: dict[int, dict] = {}
        for _ in range(epochs):
            xs = x[torch.randperm(n, generator=generator, device=x.device)] if shuffle else x
            u_v, u_h, u_start = self.uniforms(n_batches, batch_size, generator)
            # one list of (M, D) / (M, H) views per epoch: batch i uses items i k .. i k + k - 1
            u_v, u_h = u_v.flatten(0, 1).unbind(0), u_h.flatten(0, 1).unbind(0)
            starts = [None] * n_batches if u_start is None else u_start.unbind(0)
            for i, (v0, us) in enumerate(zip(xs.split(batch_size), starts)):
                B = v0.shape[0]
                uv, uh = u_v[i * k:i * k + k], u_h[i * k:i * k + k]
                if us is not None and B < batch_size:  # CD's chains are the batch: the last one is smaller
                    uv, uh, us = [u[:B] for u in uv], [u[:B] for u in uh], us[:B]
                if fused:
                    buf = bufs.get(B) or bufs.setdefault(B, self._fused_buffers(B))
                    self._update_fused(v0, lr, weight_decay, uv, uh, us, buf)
                else:
                    self._update(v0, lr, weight_decay, uv, uh, us)


def all_states(n: int) -> torch.Tensor:
    """All 2^n binary vectors of length n, (2^n, n) float64; row r holds the bits of r with
    the first unit as the most significant bit."""
    check_int(n, "n", minimum=0, maximum=MAX_ENUMERATE)
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)), dtype=torch.float64).reshape(2 ** n, n)
