r"""Vanishing and exploding gradients, measured (``seqlab gradflow``).

Lecture, "Vanishing and Exploding Gradient": *if the weights are small, the gradient
through many layers will shrink exponentially to 0; if the weights are large, the
gradient will grow exponentially; in recurrent networks, if the sequences are long, the
gradients can easily vanish or explode.*  And "Gated Recurrent Unit and Long Short Term
Memory": *adding small weights will not lead to vanishing gradient like multiplying small
weights.*  This module measures both statements on the seqlab RNN, LSTM and GRU.

What is measured
----------------
BPTT (lecture, one output unit at the end) multiplies the error by one Jacobian per step::

    dC/da_t = dC/da_T . da_T/da_{T-1} . ... . da_{t+1}/da_t = dC/da_T . da_T/da_t

For every step t = 1..T this module reports

* ``||dC/da_t||``: the gradient of the cost with respect to the recurrent state a_t (the
  *total* derivative: every path from a_t to C, i.e. through a_{t+1}, ..., a_T).  It is
  computed with autograd on the readable one-step path (:func:`trace`): the network is
  stepped one time step at a time, each state a_t stays a tensor of the graph, and
  ``torch.autograd.grad(C, [a_1, ..., a_T])`` returns dC/da_t for all t.  (The fused path
  returns only the outputs; the gradient with respect to output t is *not* dC/da_t,
  because a_t also feeds a_{t+1}.)  The Euclidean norm per sequence.
* ``||da_T/da_t||``: the **spectral norm** (largest singular value) of the Jacobian of the
  last state with respect to the state at t, computed exactly as the product of the
  per-step Jacobians, ``da_T/da_t = J_T J_{T-1} ... J_{t+1}`` with J_k = da_k/da_{k-1}
  (:func:`state_jacobians`, :func:`jacobian_log_norms`).  Each J_k is obtained with
  autograd by back-propagating the D unit vectors e_1..e_D through one step (the batch is
  repeated D times, so one backward pass gives all D rows).  The running product is
  rescaled at every step and its scale kept as a logarithm, so norms far below float64's
  range (1e-308) are still exact.  ||P||_2 = sqrt(largest eigenvalue of P^T P).

The recurrent state a_t is what the cell carries from one step to the next: a^(h)_t for
the RNN and the GRU (D = H numbers), and the pair (a^(h)_t, a^(c)_t) for the LSTM
(D = 2H), because the LSTM's memory a^(c) is part of its state: only with both does the
product of per-step Jacobians hold, and the cell path is exactly the additive path the
lecture credits.  The output reads a^(h)_T only, so dC/da^(c)_T = 0.

Averages.  Each quantity is computed per sequence and averaged as a *geometric* mean
(the mean of log10 of the norm) over ``batch_size`` sequences times ``repeats``
independent draws of the weights and the batch: the norms span dozens of orders of
magnitude, and the geometric mean is the typical value on the log scale of the plot.
A norm that is exactly 0 (a dead ReLU state, say) makes the mean 0.

Decay/growth rate.  ``slope`` is the least-squares slope of log10(norm) against the
number of steps back k = T - t, over every k = 0..T-1 where the norm is not 0; the
norm is multiplied by ``rate = 10**slope`` per step back (rate < 1: vanishing, > 1:
exploding).  The table's verdict compares rate**100 with 1/10 and 10.

The task: remember the first symbol
-----------------------------------
Sequences of T random one-hot symbols (``symbols`` = 8 kinds); the target, given at the
end (``output="last"``, softmax output, cross-entropy cost), is the symbol at t = 1.
It is the purest long dependency: the only information that matters is T - 1 steps
back, so the cost can only be lowered through dC/da_1, the gradient that has travelled
through all T - 1 Jacobians (an adding or copy problem would mix in shorter
dependencies).  The network is not trained: the measurement is at initialisation, where
the scale of the recurrent weights is set exactly.

What "scale" s means
--------------------
Each recurrent matrix is set to s times a random orthogonal matrix (Haar, from the QR
factorisation of a Gaussian matrix), so all its singular values, and hence its spectral
radius and its spectral norm, are exactly s:

* RNN: w^(a) = s Q.  With tanh or relu, |g'| <= 1, so ||J_k|| <= ||w^(a)|| = s and
  ||da_T/da_t|| <= s^(T-t): below 1 the gradient *must* vanish geometrically.
* LSTM: w^(F), w^(I), w^(G), w^(O) = s Q_F, s Q_I, s Q_G, s Q_O (independent Q's).
* GRU: w^(Z), w^(R), w^(G) = s Q_Z, s Q_R, s Q_G.

All other weights keep the models' default initialisation, U(-1/sqrt(H), 1/sqrt(H)), except
the gate bias that opens the memory path, ``forget_bias`` (default 4):

* LSTM: b^(f) = forget_bias, so a^(f) ~ sigmoid(4) = 0.98 of the cell is kept per step;
* GRU: b^(z) = -forget_bias, so 1 - a^(z) ~ sigmoid(4) = 0.98 of the old state is kept
  (the lecture's GRU keeps 1 - a^(z); sigmoid(-u) = 1 - sigmoid(u)).

``forget_bias=None`` keeps the models' default gate biases (near 0, so the gates are
about half open).  Measured, and checked by the tests: with half-open gates the gated
cells' gradients vanish *as fast as or faster than* the RNN's at the same scale
(a factor ~0.5 per step through the cell), so the lecture's "adding instead of
multiplying" only pays when the gate keeps most of the memory -- which training learns,
and which the forget-gate bias initialisation (Gers et al. 2000; Jozefowicz et al. 2015)
starts from.  The default table therefore shows the gated cells with open gates, and says
so in its header.

Measured with the defaults (T = 200, H = 32, 2 x 16 sequences, seed 0), ||dC/da_t|| at
t = T - 100: the RNN's is 5e-32 at s = 0.5 (a factor 0.49 per step: s, times tanh' < 1),
2e-5 at s = 1 (0.91 per step: at the edge, tanh' < 1 still makes it vanish) and 30 at
s = 1.5 (1.04 per step: exploding); the LSTM keeps 0.03 to 0.09 and the GRU 0.1 to 0.2 at
every scale.  The default call takes about 20 s on one CPU core.

Where the rest lives
--------------------
This module is the measurement.  The text table, the tour's summary line and the JSON are
in :mod:`seqlab.recurrent.gradflow_report`; the plot is
:func:`seqlab.viz.recurrent.plot_gradflow`; the gradient-clipping demonstration (training
in the exploding regime, with and without clipping) is :mod:`seqlab.recurrent.clipping`.

Public functions
----------------
``gradflow(...) -> GradFlowResult`` and ``verdict(rate)``; the building blocks
``first_symbol_task``, ``random_orthogonal``, ``scaled_network``, ``state_step``,
``trace``, ``state_jacobians``, ``jacobian_log_norms``, ``fit_slope``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F

from seqlab.progress import Progress
from seqlab.recurrent.network import CELLS, SequenceNetwork
from seqlab.training.device import cpu_threads
from seqlab.validation import (
    check_choice,
    check_float,
    check_int,
    check_tensor,
    fail,
    shape_str,
)

# the recurrent matrices that "scale" multiplies, per cell (the lecture's names)
RECURRENT = {"rnn": ("w_a",), "lstm": ("w_F", "w_I", "w_G", "w_O"), "gru": ("w_Z", "w_R", "w_G")}
STEPS_BACK = (0, 10, 50, 100)  # the table's columns: t = T, T-10, T-50, T-100
QUANTITIES = ("grad", "jac")
QUANTITY_LABEL = {"grad": "||dC/da_t||", "jac": "||da_T/da_t||"}
MAX_HIDDEN = 256  # the exact Jacobian costs O(B H^3) per step
MAX_LENGTH = 10_000  # steps back-propagated through: the Jacobian trace is O(T H^2) per network
MAX_BATCH = 4096
VERDICT_STEPS = 100  # the verdict looks at the fitted change over this many steps


# --------------------------------------------------------------------------- the task
def first_symbol_task(batch_size: int, length: int, symbols: int, *, generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Remember the first symbol: x (B, T, symbols) random one-hot symbols, y (B,) the
    index of the symbol at t = 1 (the target given at the end of the sequence)."""
    check_int(batch_size, "batch_size", minimum=1, maximum=MAX_BATCH)
    check_int(length, "length", minimum=2, maximum=MAX_LENGTH)
    check_int(symbols, "symbols", minimum=2)
    s = torch.randint(0, symbols, (batch_size, length), generator=generator)  # (B, T)
    x = F.one_hot(s, symbols).to(dtype)  # (B, T, K)
    return x, s[:, 0]


def random_orthogonal(n: int, generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A Haar-random orthogonal (n, n) matrix: Q of the QR factorisation of a Gaussian
    matrix, with the signs fixed by diag(R) > 0."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).to(dtype)  # (n, n)


def scaled_network(cell: str, *, scale: float, hidden_size: int, symbols: int, seed: int = 0,
                   forget_bias: float | None = 4.0, nonlinearity: str = "tanh", fused: bool = False,
                   dtype: torch.dtype = torch.float64) -> SequenceNetwork:
    """One-layer ``SequenceNetwork`` (softmax output at the end) whose recurrent matrices
    are ``scale`` times random orthogonal matrices (see the module doc); ``forget_bias``
    sets the LSTM's b^(f) (the GRU's b^(z) to minus it; None keeps the default init).
    Deterministic in ``seed``; the global random state is left as it was."""
    check_choice(cell, "cell", CELLS)
    scale = check_float(scale, "scale", minimum=0.0, open_min=True)
    if not math.isfinite(scale):
        fail("scale", "a finite number > 0", scale)
    check_int(hidden_size, "hidden_size", minimum=1, maximum=MAX_HIDDEN)
    check_int(symbols, "symbols", minimum=2)
    check_int(seed, "seed", minimum=0)
    check_choice(nonlinearity, "nonlinearity", ("tanh", "relu"))
    if forget_bias is not None:
        forget_bias = check_float(forget_bias, "forget_bias")
        if not math.isfinite(forget_bias):
            fail("forget_bias", "a finite number or None", forget_bias)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SequenceNetwork(cell=cell, input_size=symbols, hidden_size=hidden_size, output_size=symbols,
                              output="last", output_activation="softmax", nonlinearity=nonlinearity,
                              fused=fused).to(dtype)
    g = torch.Generator().manual_seed(seed + 7919)
    layer = net.core.layers[0]
    with torch.no_grad():
        for name in RECURRENT[cell]:
            # w = s Q: every singular value of w is s
            getattr(layer, name).copy_(scale * random_orthogonal(hidden_size, g, dtype))
        if forget_bias is not None and cell == "lstm":
            layer.b_f.fill_(forget_bias)  # a^(f) ~ sigmoid(forget_bias)
        if forget_bias is not None and cell == "gru":
            layer.b_z.fill_(-forget_bias)  # 1 - a^(z) ~ sigmoid(forget_bias)
    return net


# --------------------------------------------------------------------------- one step
def _core(model):
    """The one recurrent layer of a SequenceNetwork or a RecurrentStack, and its family."""
    core = model.core if isinstance(model, SequenceNetwork) else model
    if not hasattr(core, "layers") or not hasattr(core, "family"):
        fail("model", "a SequenceNetwork or an RNN/LSTM/GRU stack", type(model).__name__)
    if len(core.layers) != 1:
        fail("model", "one recurrent layer (the state a_t of a single layer is measured)",
             f"{len(core.layers)} layers")
    return core.layers[0], core.family, core.hidden_size


class StateStep(NamedTuple):
    """``step(a_{t-1}, x_t) -> a_t`` on flat states (B, D) through the layer's readable
    path; ``state_size`` D (2 H for the LSTM, whose state is (a^(h), a^(c))); ``hidden_size`` H."""

    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    state_size: int
    hidden_size: int


def state_step(model) -> StateStep:
    """One time step of the single recurrent layer of ``model`` (a SequenceNetwork or an
    RNN/LSTM/GRU stack) as a function of the flat state: the LSTM's state is the pair
    (a^(h), a^(c)) concatenated, D = 2H."""
    layer, family, H = _core(model)

    def step(a: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        state = (a[:, :H], a[:, H:]) if family == "lstm" else (a,)
        _, new = layer.reference(x_t[:, None], state, None)  # x_t (B, I) -> (B, 1, I)
        return torch.cat(new, dim=1)  # (B, D)

    return StateStep(step, 2 * H if family == "lstm" else H, H)


def _check_x(model, x: object) -> torch.Tensor:
    x = check_tensor(x, "x", ndim=3, dims="(batch, time, features)", floating=True, finite=True)
    _core(model)  # one recurrent layer
    core = model.core if isinstance(model, SequenceNetwork) else model
    if x.shape[2] != core.input_size:
        fail("x", f"{core.input_size} features in the last axis", f"shape {shape_str(x)}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        fail("x", "at least one sequence and one step", f"shape {shape_str(x)}")
    dtype = next(model.parameters()).dtype
    if x.dtype != dtype:
        fail("x", f"dtype {dtype} (the model's parameters)", f"dtype {x.dtype}")
    return x


class StateTrace(NamedTuple):
    """states: (B, T+1, D) a_0..a_T (detached); grads: (B, T, D) dC/da_t for t = 1..T,
    where C = sum over the sequences of the cross-entropy at the end; cost: C."""

    states: torch.Tensor
    grads: torch.Tensor
    cost: float


def trace(network: SequenceNetwork, x: torch.Tensor, y: torch.Tensor) -> StateTrace:
    """Run ``network`` (one layer, output="last", softmax) one step at a time and return
    every state a_t and the total gradient dC/da_t (autograd with respect to the per-step
    states), C = sum_i C_i, so row i of dC/da_t is dC_i/da_{i,t}."""
    if not isinstance(network, SequenceNetwork):
        fail("network", "a SequenceNetwork", type(network).__name__)
    c = network.config
    if c.output != "last" or c.output_activation != "softmax":
        fail("network", "output='last' with a softmax output (the first-symbol task)",
             f"output={c.output!r}, output_activation={c.output_activation!r}")
    x = _check_x(network, x)
    y = check_tensor(y, "y", ndim=1, dims="(batch,)")
    if y.shape[0] != x.shape[0] or y.is_floating_point() or y.dtype == torch.bool:
        fail("y", f"{x.shape[0]} class indices (integers)", f"shape {shape_str(y)}, dtype {y.dtype}")
    K = c.output_size
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= K):
        fail("y", f"class indices in [0, {K - 1}]", f"values in [{int(y.min())}, {int(y.max())}]")
    step, D, H = state_step(network)
    B, T, _ = x.shape
    a = x.new_zeros(B, D)  # a_0 = 0
    states = []
    with torch.enable_grad():
        for t in range(T):
            # a_{t+1} = step(a_t, x_{t+1})                                    (B, D)
            a = step(a, x[:, t])
            states.append(a)
        # o = g(w^(o) . a^(h)_T + b^(o)), C = sum_i -log o_i[y_i]
        z = states[-1][:, :H] @ network.w_o.T + network.b_o  # (B, K)
        cost = F.cross_entropy(z, y.long(), reduction="sum")
        grads = torch.autograd.grad(cost, states)  # dC/da_t, every path from a_t to C
    all_states = torch.stack([x.new_zeros(B, D)] + [s.detach() for s in states], dim=1)  # (B, T+1, D)
    return StateTrace(all_states, torch.stack(grads, dim=1), float(cost.detach()))


def _states_for(model, x: torch.Tensor, states: torch.Tensor | None) -> torch.Tensor:
    step, D, _ = state_step(model)
    B, T, _ = x.shape
    if states is None:
        with torch.no_grad():
            a = x.new_zeros(B, D)
            out = [a]
            for t in range(T):
                a = step(a, x[:, t])
                out.append(a)
        return torch.stack(out, dim=1)  # (B, T+1, D)
    check_tensor(states, "states", ndim=3, dims="(batch, time + 1, state)", floating=True)
    if tuple(states.shape) != (B, T + 1, D):
        fail("states", f"shape ({B}, {T + 1}, {D}) = (batch, T + 1, state)", f"shape {shape_str(states)}")
    return states.detach()


def _step_jacobian(step, a_prev: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
    """J = da_t/da_{t-1} per sequence, (B, D, D), J[i, k, :] = row k.

    The batch is repeated D times and copy k back-propagates the unit vector e_k:
    e_k^T J is row k of J."""
    B, D = a_prev.shape
    with torch.enable_grad():
        a_rep = a_prev.detach().repeat_interleave(D, dim=0).requires_grad_()  # (B*D, D)
        out = step(a_rep, x_t.repeat_interleave(D, dim=0))  # (B*D, D)
        e = torch.eye(D, dtype=out.dtype, device=out.device).repeat(B, 1)  # (B*D, D): e_k for copy k
        (rows,) = torch.autograd.grad(out, a_rep, e)
    return rows.view(B, D, D)


def state_jacobians(model, x: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
    """da_T/da_t for t = 1..T, (B, T, D, D), as the product J_T ... J_{t+1} of the
    per-step Jacobians (index t-1 holds t; t = T is the identity).  For small cases: it
    keeps every product and does not rescale (use :func:`jacobian_log_norms` for long
    sequences).  ``states`` (B, T+1, D) saves the forward pass if given."""
    x = _check_x(model, x)
    states = _states_for(model, x, states)
    step, D, _ = state_step(model)
    B, T, _ = x.shape
    P = torch.eye(D, dtype=x.dtype).expand(B, D, D).clone()  # da_T/da_T = I
    out = [P]
    for t in range(T - 1, 0, -1):
        # da_T/da_t = da_T/da_{t+1} . da_{t+1}/da_t,  J_{t+1} at (a_t, x_{t+1})
        P = P @ _step_jacobian(step, states[:, t], x[:, t])
        out.append(P)
    return torch.stack(out[::-1], dim=1)


def jacobian_log_norms(model, x: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
    """log10 ||da_T/da_t||_2 for t = 1..T, (B, T) (index t-1 holds t; -inf where the
    Jacobian is exactly 0).  Same product as :func:`state_jacobians`, rescaled at every
    step with the scale kept as a logarithm, so it never under- or overflows."""
    x = _check_x(model, x)
    states = _states_for(model, x, states)
    step, D, _ = state_step(model)
    B, T, _ = x.shape
    out = x.new_zeros(B, T)  # log10 ||I|| = 0 at t = T
    P = torch.eye(D, dtype=x.dtype).expand(B, D, D).clone()
    log_scale = x.new_zeros(B)  # da_T/da_t = 10**log_scale * P
    for t in range(T - 1, 0, -1):
        P = P @ _step_jacobian(step, states[:, t], x[:, t])
        m = P.abs().amax(dim=(1, 2))  # (B,)
        P = P / torch.where(m > 0, m, torch.ones_like(m))[:, None, None]
        log_scale = log_scale + torch.log10(m)
        # ||P||_2 = sqrt(largest eigenvalue of P^T P)
        top = torch.linalg.eigvalsh(P.mT @ P)[:, -1].clamp_min(0.0).sqrt()
        out[:, t - 1] = log_scale + torch.log10(top)
    return out


def fit_slope(norms: Sequence[float]) -> float:
    """Least-squares slope of log10(norm) against the steps back k = T - t, where
    ``norms[t-1]`` belongs to t = 1..T; zero norms are left out; nan if fewer than two
    are left."""
    T = len(norms)
    ks, ys = [], []
    for i, v in enumerate(norms):
        if v > 0 and math.isfinite(v):
            ks.append(float(T - 1 - i))
            ys.append(math.log10(v))
    if len(ks) < 2:
        return math.nan
    mk, my = sum(ks) / len(ks), sum(ys) / len(ys)
    var = sum((k - mk) ** 2 for k in ks)
    return sum((k - mk) * (v - my) for k, v in zip(ks, ys)) / var if var > 0 else math.nan


# --------------------------------------------------------------------------- the experiment
@dataclass(frozen=True)
class FlowCurve:
    """One cell at one scale.  ``grad[t-1]`` = ||dC/da_t||, ``jac[t-1]`` = ||da_T/da_t||_2
    for t = 1..T (geometric means); slopes in log10 per step back (see the module doc)."""

    cell: str
    scale: float
    grad: list[float]
    jac: list[float]
    grad_slope: float
    jac_slope: float

    def at(self, quantity: str, steps_back: int) -> float | None:
        """The value at t = T - steps_back (None when the sequence is shorter)."""
        curve = self.grad if quantity == "grad" else self.jac
        T = len(curve)
        return curve[T - 1 - steps_back] if 0 <= steps_back < T else None

    def slope(self, quantity: str) -> float:
        return self.grad_slope if quantity == "grad" else self.jac_slope

    def rate(self, quantity: str) -> float:
        """Factor per step back, 10**slope."""
        s = self.slope(quantity)
        return 10.0**s if math.isfinite(s) else math.nan


@dataclass(frozen=True)
class GradFlowResult:
    """Settings and one :class:`FlowCurve` per (cell, scale), in the order asked for."""

    cells: tuple[str, ...]
    scales: tuple[float, ...]
    length: int
    hidden_size: int
    batch_size: int
    repeats: int
    symbols: int
    seed: int
    forget_bias: float | None
    nonlinearity: str
    curves: list[FlowCurve] = field(default_factory=list)
    norm: str = "spectral"
    task: str = "first-symbol"

    def curve(self, cell: str, scale: float) -> FlowCurve:
        for c in self.curves:
            if c.cell == cell and c.scale == float(scale):
                return c
        fail("curve", f"one of {[(c.cell, c.scale) for c in self.curves]}", (cell, scale))

    @property
    def summary(self) -> list[dict]:
        """One row per (cell, scale, quantity): values at t = T - k for k in STEPS_BACK,
        slope (log10 per step back), rate (factor per step back) and the verdict."""
        rows = []
        for c in self.curves:
            for q in QUANTITIES:
                rows.append({
                    "cell": c.cell, "scale": c.scale, "quantity": q,
                    "at": {k: c.at(q, k) for k in STEPS_BACK if k < self.length},
                    "slope": c.slope(q), "rate": c.rate(q), "verdict": verdict(c.rate(q)),
                })
        return rows


def verdict(rate: float) -> str:
    """"vanishes" when the fitted rate shrinks the norm by more than 10x over 100 steps
    (rate**100 < 0.1), "explodes" when it grows it by more than 10x, "kept" otherwise."""
    if not math.isfinite(rate):
        return "-"
    change = VERDICT_STEPS * math.log10(rate) if rate > 0 else -math.inf
    return "vanishes" if change < -1 else "explodes" if change > 1 else "kept"


def _check_cells(cells: object) -> tuple[str, ...]:
    if isinstance(cells, str):
        cells = (cells,)
    if not isinstance(cells, (list, tuple)) or not cells:
        fail("cells", "a non-empty list of 'rnn', 'lstm', 'gru'", repr(cells))
    for c in cells:
        check_choice(c, "cell", CELLS)
    if len(set(cells)) != len(cells):
        fail("cells", "each cell once", repr(tuple(cells)))
    return tuple(cells)


def _check_scales(scales: object) -> tuple[float, ...]:
    if isinstance(scales, (int, float)) and not isinstance(scales, bool):
        scales = (scales,)
    if not isinstance(scales, (list, tuple)) or not scales:
        fail("scales", "a non-empty list of numbers > 0", repr(scales))
    out = []
    for s in scales:
        s = check_float(s, "scale", minimum=0.0, open_min=True)
        if not math.isfinite(s):
            fail("scale", "a finite number > 0", s)
        out.append(s)
    if len(set(out)) != len(out):
        fail("scales", "each scale once", repr(tuple(scales)))
    return tuple(out)


def gradflow(cells: Sequence[str] = ("rnn", "lstm", "gru"), scales: Sequence[float] = (0.5, 1.0, 1.5),
             length: int = 200, hidden_size: int = 32, batch_size: int = 16, seed: int = 0, *,
             repeats: int = 2, symbols: int = 8, forget_bias: float | None = 4.0,
             nonlinearity: str = "tanh", progress: bool | None = None) -> GradFlowResult:
    """Measure ||dC/da_t|| and ||da_T/da_t||_2 against t for every cell and scale on the
    first-symbol task (see the module doc).  ``repeats`` independent draws of weights and
    batch (seeds seed, seed+1, ...) of ``batch_size`` sequences each are averaged
    (geometric mean).  ``forget_bias``: the LSTM's b^(f), minus the GRU's b^(z); None keeps
    the default gates.  ``nonlinearity``: the RNN's g.  Float64 on the CPU.  ``progress``: show
    how far the measurement is, one unit per (cell, scale, draw) (``seqlab.progress``; ``None``:
    as the caller's ``progress.enabled`` block says, off outside one)."""
    cells = _check_cells(cells)
    scales = _check_scales(scales)
    check_int(length, "length", minimum=2, maximum=MAX_LENGTH)
    check_int(hidden_size, "hidden_size", minimum=1, maximum=MAX_HIDDEN)
    check_int(batch_size, "batch_size", minimum=1, maximum=MAX_BATCH)
    check_int(seed, "seed", minimum=0)
    check_int(repeats, "repeats", minimum=1)
    check_int(symbols, "symbols", minimum=2)
    check_choice(nonlinearity, "nonlinearity", ("tanh", "relu"))
    if forget_bias is not None:
        forget_bias = check_float(forget_bias, "forget_bias")
        if not math.isfinite(forget_bias):
            fail("forget_bias", "a finite number or None", forget_bias)

    curves = []
    # thousands of small operations: one intra-op thread (on a shared CPU extra threads only
    # spin at barriers; measured: a 30x slow-down with 2 threads while another process used
    # one of 2 cores)
    settings = [(c, s) for c in cells for s in scales]
    with cpu_threads(1), Progress(len(settings) * repeats, desc="gradflow", unit="network", enabled=progress) as bar:
        for cell, scale in settings:
            bar.begin(f"{cell} at scale {scale:g}")
            grad_logs, jac_logs = [], []
            for r in range(repeats):
                g = torch.Generator().manual_seed(seed + r)
                x, y = first_symbol_task(batch_size, length, symbols, generator=g, dtype=torch.float64)
                net = scaled_network(cell, scale=scale, hidden_size=hidden_size, symbols=symbols, seed=seed + r,
                                     forget_bias=forget_bias, nonlinearity=nonlinearity)
                tr = trace(net, x, y)
                grad_logs.append(torch.log10(tr.grads.norm(dim=2)))  # (B, T)
                jac_logs.append(jacobian_log_norms(net, x, tr.states))  # (B, T)
                bar.update()
            # geometric mean over sequences and repeats
            grad = (10.0 ** torch.cat(grad_logs).mean(0)).tolist()
            jac = (10.0 ** torch.cat(jac_logs).mean(0)).tolist()
            curves.append(FlowCurve(cell=cell, scale=scale, grad=grad, jac=jac,
                                    grad_slope=fit_slope(grad), jac_slope=fit_slope(jac)))
    return GradFlowResult(cells=cells, scales=scales, length=length, hidden_size=hidden_size,
                          batch_size=batch_size, repeats=repeats, symbols=symbols, seed=seed,
                          forget_bias=forget_bias, nonlinearity=nonlinearity, curves=curves)
