r"""General (fully connected) Boltzmann machine with visible and hidden units, trained by
Boltzmann learning, checked exactly by enumerating every state.

Lecture, "Hopfield Networks": "Boltzmann machine is another energy-based model with a
hidden layer". It keeps the Hopfield network's energy -- symmetric weights w_ij = w_ji,
no self-connections (w_ii = 0), biases b_i -- and changes two things:

* the units are stochastic: instead of the Hopfield rule "s_i <- 1 if the weighted sum
  plus bias is > 0", a unit turns on with probability sigmoid(weighted sum plus bias), so
  the network samples the Boltzmann distribution p ~ exp(-E) (the Hopfield update is the
  zero-temperature limit, where the sigmoid becomes a step);
* some units are hidden: the data fix only the visible units v; the hidden units h are
  free to build features, which lets the machine express dependencies of order higher
  than two (3-bit parity) that pairwise weights between visible units cannot.

With hidden_size = 0 the machine is a stochastic Hopfield network. Its weights are learned
from data instead of stored by the Hebbian rule, and the biases are learned too (the
lecture's Hopfield biases are not).

Units are binary, s_i in {0, 1}, as in Hinton & Sejnowski. The Hopfield module uses the
bipolar {-1, +1}; a = 2 s - 1 maps one to the other and only changes the biases and a
constant in E. The state is s = [v; h], n = visible_size + hidden_size units:

    E(v, h) = -1/2 sum_ij w_ij s_i s_j - sum_i b_i s_i          energy
    p(v, h) = exp(-E(v, h)) / Z,   Z = sum_{v, h} exp(-E(v, h))   Boltzmann distribution
    p(v)    = sum_h p(v, h)                                      the model of the data
    p(s_i = 1 | rest) = sigmoid(sum_{j != i} w_ij s_j + b_i)     Gibbs update of one unit

Learning (Hinton & Sejnowski; Ackley, Hinton & Sejnowski 1985): the gradient of the
mean log-likelihood of the data rows,

    d<log p(v)>/dw_ij = <s_i s_j>_data - <s_i s_j>_model         (i != j)
    d<log p(v)>/db_i  = <s_i>_data     - <s_i>_model

"data" is the clamped phase: v fixed to a data row, h distributed as p(h | v), averaged
over the rows; "model" is the free-running phase, (v, h) ~ p(v, h). w_ij and w_ji are one
parameter (the matrix is symmetric), and the derivative above is the derivative with
respect to that one parameter; the stored (n, n) tensor ``w`` holds it twice, so
autograd's derivative with respect to the single entry w[i, j] is half of it.

Two ways to get the statistics:

    exact   enumerate all 2^n states (n <= 20), weights p(v, h) and p(h | v) exactly
    gibbs   Gibbs sampling: sequential sweeps in the fixed unit order 0, 1, ..., n-1
            (visible units first, then hidden; clamped chains update only the hidden ones),
            batched over independent chains

``fit`` climbs the gradient, one full-batch step per epoch, with optional momentum. It
records the exact KL(data distribution || p(v)) after every epoch. The experiment in
``seqlab.energy.parity_demo`` (``seqlab boltzmann``) shows on 3-bit parity that hidden
units are needed: without them the best KL is log 2.

The model is built as ``BoltzmannMachine(BoltzmannConfig(visible_size=3, hidden_size=4))``
or ``BoltzmannMachine(visible_size=3, hidden_size=4)``.

Enumeration order (``binary_states``, ``exact_states``, ``exact_marginal``): row r holds
the binary digits of r with unit 0 as the most significant bit, so the rows run 0..0,
0..01, 0..10, ... (lexicographic). The joint states [v; h] follow the same rule over all n
units, so joint row r = (index of v) * 2^hidden_size + (index of h).

Shapes: a batch of visible vectors is (B, visible_size), of hidden vectors (B, hidden_size);
everything is float64.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from seqlab.validation import (
    check_choice,
    check_float,
    check_int,
    fail,
    fields_from_dict,
    resolve_config,
    shape_str,
)

__all__ = [
    "MAX_ENUMERATED_UNITS",
    "MAX_INIT_STD",
    "MAX_LR",
    "BoltzmannConfig",
    "BoltzmannMachine",
    "FitResult",
    "PhaseStatistics",
    "binary_states",
]

f64 = torch.float64
MAX_ENUMERATED_UNITS = 20  # 2^20 joint states: about 170 MB for the (2^n, n) float64 table
METHODS = ("exact", "gibbs")
# Each weight's gradient <s_i s_j>_data - <s_i s_j>_model is a difference of two averages of
# {0, 1} values, at most 1 in size, so a step lr * u moves a weight by at most lr / (1 - momentum):
# past these bounds the energies only grow towards float overflow (lr 1e308 gave inf at the
# first epoch), and no fit gets better.
MAX_LR = 1000.0
MAX_INIT_STD = 1000.0


# --------------------------------------------------------------------------- helpers
def _check_enumerable(n: int, what: str) -> None:
    if n > MAX_ENUMERATED_UNITS:
        fail("enumeration", f"at most {MAX_ENUMERATED_UNITS} units (2^{MAX_ENUMERATED_UNITS} states)",
             f"{n} units ({what})")


def binary_states(k: int) -> torch.Tensor:
    """All 2^k binary vectors (2^k, k), float64; row r is r in binary, unit 0 the most
    significant bit (lexicographic order). k = 0 gives one empty row (1, 0)."""
    check_int(k, "k", minimum=0)
    _check_enumerable(k, "k")
    return _table(k, torch.device("cpu")).clone()


def _table(k: int, device: torch.device) -> torch.Tensor:
    """``binary_states(k)`` on ``device``; cached up to k = 16 (8 MB): callers must not
    modify it."""
    return _cached_table(k, device) if k <= 16 else _build_table(k, device)


@functools.lru_cache(maxsize=16)
def _cached_table(k: int, device: torch.device) -> torch.Tensor:
    return _build_table(k, device)


def _build_table(k: int, device: torch.device) -> torch.Tensor:
    r = torch.arange(2 ** k, dtype=torch.int64, device=device)[:, None]  # (2^k, 1)
    shifts = torch.arange(k - 1, -1, -1, dtype=torch.int64, device=device)  # (k,): k-1, ..., 0
    return ((r >> shifts) & 1).to(f64)  # (2^k, k)


def _as_binary(x: object, name: str, width: int, meaning: str) -> torch.Tensor:
    """``x`` as a (B, width) float64 tensor of 0s and 1s, B >= 1; ValueError otherwise."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, (np.ndarray, list, tuple)):
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError):
            fail(name, "numbers in {0, 1}", repr(x))
    else:
        fail(name, f"a 2-D tensor or array (rows, {meaning}) of 0s and 1s", type(x).__name__)
    if t.dim() != 2:
        fail(name, f"a 2-D tensor (rows, {meaning})", f"shape {shape_str(t)}")
    if t.shape[1] != width:
        fail(name, f"{meaning} = {width} columns", f"{t.shape[1]} columns in shape {shape_str(t)}")
    if t.shape[0] < 1:
        fail(name, "at least one row", f"shape {shape_str(t)}")
    if t.is_complex():
        fail(name, "real values in {0, 1}", f"a complex tensor ({t.dtype})")
    t = t.to(f64)
    values = torch.unique(t)  # sorted; NaN is kept (it is unequal to everything)
    bad = values[(values != 0) & (values != 1)]
    if bad.numel():
        shown = ", ".join(f"{v:g}" for v in bad[:10].tolist()) + (", ..." if bad.numel() > 10 else "")
        fail(name, "values in {0, 1}", shown)
    return t.clone()


def _check_generator(generator: object) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        fail("generator", "a torch.Generator or None", type(generator).__name__)
    return generator


class PhaseStatistics(NamedTuple):
    """The four averages of Boltzmann learning (unpacks as four tensors).

    data_corr   (n, n)  <s_i s_j>_data   clamped phase (diagonal: <s_i>, since s_i^2 = s_i)
    data_mean   (n,)    <s_i>_data
    model_corr  (n, n)  <s_i s_j>_model  free-running phase
    model_mean  (n,)    <s_i>_model
    """

    data_corr: torch.Tensor
    data_mean: torch.Tensor
    model_corr: torch.Tensor
    model_mean: torch.Tensor


@dataclass(frozen=True)
class BoltzmannConfig:
    """Settings of a fully connected Boltzmann machine.

    Attributes:
        visible_size: visible units (the data's columns), >= 1.
        hidden_size: hidden units, >= 0 (0: a stochastic Hopfield network with learned biases).
        init_std: standard deviation of the initial weights w_ij = w_ji ~ N(0, init_std^2); biases start at 0.
    """

    visible_size: int
    hidden_size: int
    init_std: float = 0.1

    def __post_init__(self) -> None:
        check_int(self.visible_size, "visible_size", minimum=1)
        check_int(self.hidden_size, "hidden_size", minimum=0)
        init_std = check_float(self.init_std, "init_std", minimum=0.0)
        if math.isinf(init_std):
            fail("init_std", "a finite number >= 0", init_std)
        if init_std > MAX_INIT_STD:
            fail("init_std", f"a number <= {MAX_INIT_STD:g} (larger weights only overflow the energies)", init_std)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BoltzmannConfig":
        return cls(**fields_from_dict(cls, d, "Boltzmann config"))


@dataclass(frozen=True)
class FitResult:
    """What ``BoltzmannMachine.fit`` returns.

    kl              (epochs + 1) exact KL(data distribution || p(v)): before training, then
                    after each epoch
    log_likelihood  (epochs + 1) exact mean log p(v) over the data rows, same epochs
    method, lr, momentum, epochs, seconds: the run's settings and its wall-clock time
    """

    kl: list[float]
    log_likelihood: list[float]
    method: str
    lr: float
    momentum: float
    epochs: int
    seconds: float


# --------------------------------------------------------------------------- the model
class BoltzmannMachine(nn.Module):
    """visible_size visible and hidden_size hidden binary units, all connected to each other:
    ``BoltzmannMachine(BoltzmannConfig(...))`` or ``BoltzmannMachine(visible_size=3, hidden_size=4)``.

    Parameters: ``w`` (n, n) symmetric with zero diagonal, ``b`` (n,); both are
    ``nn.Parameter`` so that autograd can check the hand-written gradient, but training
    (``fit``) uses the hand-written Boltzmann learning rule, not autograd.
    ``forward(v)`` is the exact log p(v) of each row (B,). ``generator`` draws the initial
    weights (it is not part of the config).
    """

    def __init__(self, config: BoltzmannConfig | None = None, /, *,
                 generator: torch.Generator | None = None, **kwargs) -> None:
        super().__init__()
        self.config = resolve_config(config, kwargs, BoltzmannConfig, type(self).__name__)
        _check_generator(generator)
        n = self.n_units
        # w_ij = w_ji ~ N(0, init_std^2) for i != j, w_ii = 0; b_i = 0
        a = torch.randn(n, n, dtype=f64, generator=generator) * self.config.init_std  # (n, n)
        w = torch.triu(a, diagonal=1)
        w = w + w.T
        self.w = nn.Parameter(w)  # (n, n)
        self.b = nn.Parameter(torch.zeros(n, dtype=f64))  # (n,)

    @property
    def visible_size(self) -> int:
        return self.config.visible_size

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def n_units(self) -> int:
        return self.visible_size + self.hidden_size

    def extra_repr(self) -> str:
        return f"visible_size={self.visible_size}, hidden_size={self.hidden_size}"

    # -- inputs --------------------------------------------------------------------------
    def _data(self, data: object, name: str = "data") -> torch.Tensor:
        return _as_binary(data, name, self.visible_size, "visible_size").to(self.w.device)  # (B, visible_size)

    def _hidden(self, h: object, rows: int, name: str = "h") -> torch.Tensor:
        if h is None:
            if self.hidden_size:
                fail(name, f"a (B, hidden_size = {self.hidden_size}) tensor", "None")
            return torch.zeros(rows, 0, dtype=f64, device=self.w.device)
        h = _as_binary(h, name, self.hidden_size, "hidden_size").to(self.w.device)  # (B, hidden_size)
        if h.shape[0] != rows:
            fail(name, f"{rows} rows (as many as v)", f"{h.shape[0]} rows")
        return h

    # -- energy and exact distribution ---------------------------------------------------
    def _energy(self, s: torch.Tensor) -> torch.Tensor:
        # E = -1/2 sum_ij w_ij s_i s_j - sum_i b_i s_i              (Boltzmann energy)
        return -0.5 * ((s @ self.w) * s).sum(-1) - s @ self.b  # (B, n) -> (B,)

    def energy(self, v: object, h: object = None) -> torch.Tensor:
        """E(v, h) for a batch: v (B, visible_size), h (B, hidden_size) -> (B,). ``h`` may be None
        when there are no hidden units."""
        v = self._data(v, "v")
        h = self._hidden(h, v.shape[0])
        return self._energy(torch.cat([v, h], 1))  # s = [v; h] (B, n)

    def _joint_log_prob(self) -> torch.Tensor:
        """log p(v, h) for every joint state, (2^visible_size, 2^hidden_size); differentiable."""
        _check_enumerable(self.n_units, f"visible_size = {self.visible_size} + hidden_size = {self.hidden_size}")
        S = _table(self.n_units, self.w.device)  # (2^n, n), row = v_idx * 2^nh + h_idx
        neg_e = -self._energy(S)  # (2^n,)
        # log p(v, h) = -E(v, h) - log Z,  log Z = logsumexp over all states
        log_p = neg_e - torch.logsumexp(neg_e, 0)
        return log_p.reshape(2 ** self.visible_size, 2 ** self.hidden_size)  # (2^nv, 2^nh)

    def _visible_index(self, v: torch.Tensor) -> torch.Tensor:
        """Row of each v (B, visible_size) in ``exact_states()``, (B,) int64."""
        place = 2 ** torch.arange(self.visible_size - 1, -1, -1, device=v.device)  # (nv,)
        return (v.to(torch.int64) * place).sum(1)

    def exact_states(self) -> torch.Tensor:
        """All 2^visible_size visible vectors (2^visible_size, visible_size) in the module's order
        (unit 0 the most significant bit)."""
        _check_enumerable(self.visible_size, f"visible_size = {self.visible_size}")
        return _table(self.visible_size, self.w.device).clone()

    def exact_log_marginal(self) -> torch.Tensor:
        """log p(v) for every row of ``exact_states()``, (2^visible_size,); differentiable."""
        # log p(v) = logsumexp_h log p(v, h)
        return torch.logsumexp(self._joint_log_prob(), 1)

    def exact_marginal(self) -> torch.Tensor:
        """p(v) for every row of ``exact_states()``, (2^visible_size,), float64, sums to 1."""
        with torch.no_grad():
            return self.exact_log_marginal().exp()

    def exact_conditional(self, v: object) -> torch.Tensor:
        """p(h | v) for each row of v (B, visible_size), over the 2^hidden_size hidden vectors in
        ``binary_states(hidden_size)`` order: (B, 2^hidden_size), rows sum to 1."""
        v = self._data(v, "v")
        with torch.no_grad():
            log_joint = self._joint_log_prob()[self._visible_index(v)]  # (B, 2^nh)
            # p(h | v) = p(v, h) / p(v)
            return torch.softmax(log_joint, 1)

    def forward(self, v: object) -> torch.Tensor:
        """Exact log p(v) of each row of v (B, visible_size) -> (B,); differentiable in w, b."""
        v = self._data(v, "v")
        return self.exact_log_marginal()[self._visible_index(v)]

    def log_likelihood(self, data: object) -> torch.Tensor:
        """Exact mean log p(v) over the data rows (B, visible_size) -> scalar; differentiable."""
        v = self._data(data)
        return self.exact_log_marginal()[self._visible_index(v)].mean()

    def _empirical(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row indices (B,) of the checked data v and their empirical distribution q(v)
        over ``exact_states()`` (2^visible_size,)."""
        idx = self._visible_index(v)
        return idx, torch.bincount(idx, minlength=2 ** self.visible_size).to(f64) / v.shape[0]

    def _kl_and_ll(self, idx: torch.Tensor, q: torch.Tensor) -> tuple[float, float]:
        with torch.no_grad():
            log_p = self.exact_log_marginal()  # (2^nv,)
            seen = q > 0
            # KL(q || p) = sum_v q(v) (log q(v) - log p(v))
            kl = float((q[seen] * (q[seen].log() - log_p[seen])).sum())
            return kl, float(log_p[idx].mean())

    def kl_divergence(self, data: object) -> float:
        """Exact KL(q || p) = sum_v q(v) log(q(v) / p(v)), q the empirical distribution of
        the data rows (duplicates count), p the model's p(v)."""
        return self._kl_and_ll(*self._empirical(self._data(data)))[0]

    # -- exact statistics --------------------------------------------------------------
    def exact_statistics(self, data: object) -> PhaseStatistics:
        """The four averages of the learning rule, exactly, by enumeration.

        Clamped phase: each data row v contributes sum_h p(h | v) s s^T with s = [v; h],
        averaged over the rows. Free phase: sum_{v, h} p(v, h) s s^T."""
        return self._exact(self._empirical(self._data(data))[1])

    def _exact(self, q: torch.Tensor) -> PhaseStatistics:
        with torch.no_grad():
            log_joint = self._joint_log_prob()  # (2^nv, 2^nh)
            S = _table(self.n_units, self.w.device)  # (2^n, n)
            # clamped weights: q(v) p(h | v), (2^nv, 2^nh) -> (2^n,)
            clamped = (q[:, None] * torch.softmax(log_joint, 1)).reshape(-1)
            free = log_joint.exp().reshape(-1)  # p(v, h), (2^n,)
            # <s_i s_j> = sum_s weight(s) s_i s_j ;  <s_i> = sum_s weight(s) s_i
            data_corr = S.T @ (clamped[:, None] * S)  # (n, n)
            model_corr = S.T @ (free[:, None] * S)  # (n, n)
            return PhaseStatistics((data_corr + data_corr.T) / 2, clamped @ S,
                                   (model_corr + model_corr.T) / 2, free @ S)

    # -- Gibbs sampling ----------------------------------------------------------------
    def _sweep(self, s: torch.Tensor, first: int, generator: torch.Generator | None) -> None:
        """One sequential sweep, in place, over units first..n-1 of s (B, n) in index order."""
        u = torch.rand(s.shape[0], self.n_units - first, dtype=f64, device=s.device, generator=generator)
        w, b = self.w.detach(), self.b.detach()
        for k, i in enumerate(range(first, self.n_units)):
            # p(s_i = 1 | rest) = sigmoid(sum_{j != i} w_ij s_j + b_i)      (w_ii = 0)
            p_on = torch.sigmoid(s @ w[:, i] + b[i])  # (B,)
            s[:, i] = (u[:, k] < p_on).to(f64)

    def gibbs(self, v: object, h: object, *, sweeps: int, clamp_visible: bool = False,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``sweeps`` sequential Gibbs sweeps on B chains started at (v, h).

        One sweep visits every free unit once in the fixed order 0, 1, ..., n-1 (visible
        units, then hidden), each unit drawn from p(s_i = 1 | rest) given the current
        values of all others. Every single-unit update leaves p(v, h) invariant, so the
        sweep does too; since every conditional lies strictly in (0, 1), the chain reaches
        every state and converges to p(v, h). With ``clamp_visible`` only the hidden units
        are updated, and the chain converges to p(h | v) for the fixed v.

        v (B, visible_size), h (B, hidden_size) (None if hidden_size = 0) -> new (v, h); the inputs
        are not modified."""
        v = self._data(v, "v")
        h = self._hidden(h, v.shape[0])
        check_int(sweeps, "sweeps", minimum=1)
        if not isinstance(clamp_visible, bool):
            fail("clamp_visible", "a bool", repr(clamp_visible))
        _check_generator(generator)
        s = torch.cat([v, h], 1)  # (B, n)
        first = self.visible_size if clamp_visible else 0
        for _ in range(sweeps):
            self._sweep(s, first, generator)
        return s[:, : self.visible_size].clone(), s[:, self.visible_size:].clone()

    def _random_states(self, rows: int, generator: torch.Generator | None) -> torch.Tensor:
        """Uniformly random binary states (rows, n): each unit on with probability 1/2."""
        u = torch.rand(rows, self.n_units, dtype=f64, device=self.w.device, generator=generator)
        return (u < 0.5).to(f64)

    def _run_phase(self, s: torch.Tensor, first: int, burn_in: int, sweeps: int,
                   generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """burn_in sweeps, then ``sweeps`` sweeps each followed by a sample of every chain;
        returns the averages <s s^T> (n, n) and <s> (n,) over chains and samples."""
        for _ in range(burn_in):
            self._sweep(s, first, generator)
        corr = torch.zeros(self.n_units, self.n_units, dtype=f64, device=s.device)
        mean = torch.zeros(self.n_units, dtype=f64, device=s.device)
        for _ in range(sweeps):
            self._sweep(s, first, generator)
            corr += s.T @ s  # (n, B) @ (B, n)
            mean += s.sum(0)
        count = sweeps * s.shape[0]
        corr = corr / count
        return (corr + corr.T) / 2, mean / count

    def _sampled(self, v: torch.Tensor, sweeps: int, chains: int, burn_in: int,
                 generator: torch.Generator | None, free: torch.Tensor | None,
                 free_burn_in: int) -> tuple[PhaseStatistics, torch.Tensor]:
        # clamped phase: ceil(chains / rows) chains per data row, so each row weighs the same
        reps = max(1, -(-chains // v.shape[0]))
        clamped = self._random_states(v.shape[0] * reps, generator)  # (rows * reps, n)
        clamped[:, : self.visible_size] = v.repeat(reps, 1)
        data_corr, data_mean = self._run_phase(clamped, self.visible_size, burn_in, sweeps, generator)
        # free phase: ``chains`` chains over all units
        if free is None:
            free = self._random_states(chains, generator)  # (chains, n)
        model_corr, model_mean = self._run_phase(free, 0, free_burn_in, sweeps, generator)
        return PhaseStatistics(data_corr, data_mean, model_corr, model_mean), free

    def sampled_statistics(self, data: object, *, sweeps: int = 20, chains: int = 1000,
                           burn_in: int = 50, generator: torch.Generator | None = None) -> PhaseStatistics:
        """The four averages of the learning rule, estimated by Gibbs sampling.

        Clamped phase: ceil(chains / rows) chains per data row (so every row has the same
        weight), v fixed to the row, h started uniformly at random. Free phase: ``chains``
        chains started uniformly at random (restarted on every call; ``fit`` can keep them,
        see there). Each phase runs ``burn_in`` sweeps, then ``sweeps`` sweeps, sampling
        every chain after each; the averages are over chains and samples."""
        v = self._data(data)
        check_int(sweeps, "sweeps", minimum=1)
        check_int(chains, "chains", minimum=1)
        check_int(burn_in, "burn_in", minimum=0)
        _check_generator(generator)
        stats, _ = self._sampled(v, sweeps, chains, burn_in, generator, None, burn_in)
        return stats

    # -- learning ------------------------------------------------------------------------
    @staticmethod
    def _rule(stats: PhaseStatistics) -> tuple[torch.Tensor, torch.Tensor]:
        # dL/dw_ij = <s_i s_j>_data - <s_i s_j>_model   (i != j; w_ii stays 0)
        grad_w = stats.data_corr - stats.model_corr  # (n, n)
        grad_w.fill_diagonal_(0.0)
        # dL/db_i = <s_i>_data - <s_i>_model
        grad_b = stats.data_mean - stats.model_mean  # (n,)
        return grad_w, grad_b

    def gradient(self, data: object, *, method: str = "exact", sweeps: int = 20, chains: int = 1000,
                 burn_in: int = 50, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Boltzmann learning's gradient of the mean log-likelihood, (grad_w (n, n), grad_b
        (n,)), from ``exact_statistics`` or ``sampled_statistics`` (hand-written, no
        autograd). grad_w[i, j] is the derivative with respect to the shared parameter
        w_ij = w_ji; its diagonal is 0."""
        method = check_choice(method, "method", METHODS)
        if method == "exact":
            stats = self.exact_statistics(data)
        else:
            stats = self.sampled_statistics(data, sweeps=sweeps, chains=chains, burn_in=burn_in,
                                            generator=generator)
        return self._rule(stats)

    def fit(self, data: object, *, epochs: int, lr: float, method: str = "exact",
            momentum: float = 0.0, generator: torch.Generator | None = None, sweeps: int = 5,
            chains: int = 500, burn_in: int = 20, persistent: bool = True) -> FitResult:
        """Gradient ascent on the mean log-likelihood with Boltzmann learning's gradient,
        one full-batch step per epoch:

            g_w = <s_i s_j>_data - <s_i s_j>_model,   g_b = <s_i>_data - <s_i>_model
            u <- momentum u + g                       (u = 0 at the start)
            w <- w + lr u_w,   b <- b + lr u_b

        ``momentum`` = 0 is plain gradient ascent, w_ij <- w_ij + lr g_w; w stays symmetric
        with zero diagonal.

        ``method`` "exact" uses the enumerated statistics; "gibbs" samples them
        (``sweeps``, ``chains``, ``burn_in`` as in ``sampled_statistics``). With
        ``persistent`` the free chains are kept from one epoch to the next (persistent
        chains, Tieleman 2008) and burned in only at the first epoch; otherwise they
        restart at random every epoch. Clamped chains restart at every epoch. The exact KL
        and log-likelihood are recorded before training and after every epoch, so the
        machine must be small enough to enumerate (n <= 20).

        ``lr`` is at most ``MAX_LR`` (1000); a gradient or an update that is not finite
        stops the fit with ``FloatingPointError``, the weights left as after the last good
        epoch."""
        v = self._data(data)
        check_int(epochs, "epochs", minimum=1)
        lr = check_float(lr, "lr", minimum=0.0, open_min=True)
        if math.isinf(lr):
            fail("lr", "a finite number > 0", lr)
        if lr > MAX_LR:
            fail("lr", f"a number <= {MAX_LR:g} (a gradient is at most 1 per weight: larger steps only overflow "
                 "the energies)", lr)
        method = check_choice(method, "method", METHODS)
        check_int(sweeps, "sweeps", minimum=1)
        check_int(chains, "chains", minimum=1)
        check_int(burn_in, "burn_in", minimum=0)
        momentum = check_float(momentum, "momentum", minimum=0.0, maximum=1.0, open_max=True)
        if not isinstance(persistent, bool):
            fail("persistent", "a bool", repr(persistent))
        _check_generator(generator)
        _check_enumerable(self.n_units, f"visible_size = {self.visible_size} + hidden_size = {self.hidden_size}"
                          " (fit records the exact KL)")

        start = time.perf_counter()
        idx, q = self._empirical(v)
        kl0, ll0 = self._kl_and_ll(idx, q)
        kl, ll = [kl0], [ll0]
        free = None
        u_w, u_b = torch.zeros_like(self.w.detach()), torch.zeros_like(self.b.detach())
        for epoch in range(1, epochs + 1):
            if method == "exact":
                stats = self._exact(q)
            else:
                stats, last = self._sampled(v, sweeps, chains, burn_in, generator, free,
                                            burn_in if free is None else 0)
                free = last if persistent else None
            grad_w, grad_b = self._rule(stats)
            if not (torch.isfinite(grad_w).all() and torch.isfinite(grad_b).all()):
                raise FloatingPointError(f"fit: non-finite gradient at epoch {epoch}; weights left as after "
                                         f"epoch {epoch - 1}")
            # u <- momentum u + g
            u_w, u_b = momentum * u_w + grad_w, momentum * u_b + grad_b
            with torch.no_grad():
                # w_ij <- w_ij + lr u_ij ;  b_i <- b_i + lr u_i
                w = self.w + lr * u_w
                w = (w + w.T) / 2  # exact symmetry against round-off
                w.fill_diagonal_(0.0)  # w_ii = 0
                b = self.b + lr * u_b
                if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
                    raise FloatingPointError(f"fit: weights overflowed at epoch {epoch} (lr {lr:g}); weights left "
                                             f"as after epoch {epoch - 1}")
                self.w.copy_(w)
                self.b.copy_(b)
            kl_e, ll_e = self._kl_and_ll(idx, q)
            kl.append(kl_e)
            ll.append(ll_e)
        return FitResult(kl=kl, log_likelihood=ll, method=method, lr=lr, momentum=momentum, epochs=epochs,
                         seconds=time.perf_counter() - start)
