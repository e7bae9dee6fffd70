r"""Binary Hopfield network, in the lecture's equations.

Lecture, "Hopfield Networks": N units with activations a_i in {-1, +1}, symmetric
weights w_ij = w_ji, no self-connections (w_ii = 0), biases b_i.

    E = -1/2 sum_ij w_ij a_i a_j - sum_i b_i a_i             energy
    a_i <- +1 if sum_{j != i} w_ij a_j + b_i > 0, else -1     update of one unit

A tie (weighted sum plus bias exactly 0) goes to -1, as the lecture's "otherwise" says.
Because w_ii = 0 and W is symmetric, flipping unit i changes the energy by
dE = -(a_i_new - a_i_old) (sum_j w_ij a_j + b_i) <= 0, so asynchronous updates (one unit
at a time) never raise E; synchronous updates (all units at once) may cycle with period 2.

Storage ("training"), for P patterns a^(p) stacked as the rows of X (P, N):

    hebbian        w_ij = sum_p a^(p)_i a^(p)_j  (i != j)   lecture: "w_ij = a_i a_j, or the
                   sum of these products"; ``normalize=True`` divides by N (the usual 1/N,
                   which changes nothing when b = 0 and keeps the fields O(1) otherwise)
    pseudo-inverse W = X^T (X X^T)^-1 X, then w_ii = 0       projection rule (Personnaz et
                   al. 1985); computed as pinv(X) X, which is the same projection and also
                   defined when the patterns are linearly dependent
    storkey        W <- W + 1/N (e e^T - e h^T - h e^T)     incremental rule (Storkey 1997),
                   one pattern e = a^(p) at a time, with the local field
                   h_ij = sum_{k != i, j} w_ik e_k, then w_ii = 0

``normalize`` applies to the Hebbian rule only: the 1/N is part of Storkey's rule, and
the projection rule has no free scale. The biases are never trained (lecture: "the biases
are not updated"); they are set in the constructor and kept.

Shapes: a single state is (N,), a batch of states (B, N); ``energy`` takes both,
``recall`` runs one state (N,).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from seqlab.memory import check_fits
from seqlab.validation import (
    check_choice,
    check_int,
    check_tensor,
    fail,
    fields_from_dict,
    resolve_config,
    shape_str,
)

f64 = torch.float64
RULES = ("hebbian", "pseudo-inverse", "storkey")
MODES = ("async", "sync")


def as_bipolar(patterns: object) -> torch.Tensor:
    """Return ``patterns`` (P, N) or (N,) as a float64 tensor of -1 and +1.

    Accepts a tensor, a NumPy array or a (nested) list. Values already in {-1, +1} are
    kept. Values in {0, 1} are read as binary units and mapped to bipolar ones with
    a = 2 x - 1 (0 -> -1, 1 -> +1); the choice is made for the whole input, so a mix of
    -1 and 0 is refused. Anything else fails with a ``ValueError`` naming the values.
    """
    if isinstance(patterns, torch.Tensor):
        if patterns.is_complex():
            fail("patterns", "real values in {-1, +1} or {0, 1}", f"dtype {patterns.dtype}")
        x = patterns.detach()
    elif isinstance(patterns, (np.ndarray, list, tuple)):
        try:
            x = torch.as_tensor(np.asarray(patterns, dtype=np.float64))
        except (TypeError, ValueError):
            fail("patterns", "numbers in {-1, +1} or {0, 1}", repr(patterns))
    else:
        fail("patterns", "a tensor, NumPy array or list of shape (P, N) or (N,)", type(patterns).__name__)
    x = x.to(f64)
    if x.dim() not in (1, 2):
        fail("patterns", "a 1-D (N,) or 2-D (P, N) tensor", f"shape {shape_str(x)}")
    if x.numel() == 0:
        fail("patterns", "at least one unit and one pattern", f"shape {shape_str(x)}")
    values = torch.unique(x)  # sorted; NaN compares unequal to everything, so it is kept
    allowed = torch.tensor([-1.0, 0.0, 1.0], dtype=f64, device=x.device)
    bad = values[~torch.isin(values, allowed)]
    if bad.numel():
        shown = ", ".join(f"{v:g}" for v in bad[:10].tolist()) + (", ..." if bad.numel() > 10 else "")
        fail("patterns", "values in {-1, +1} (or binary {0, 1})", f"value(s) {shown}")
    has_minus, has_zero = bool((values == -1).any()), bool((values == 0).any())
    if has_minus and has_zero:
        fail("patterns", "values in {-1, +1} or in {0, 1}, not both", "a mix of -1, 0 (and +1)")
    if has_zero:
        # a = 2 x - 1: binary {0, 1} -> bipolar {-1, +1}
        x = 2.0 * x - 1.0
    return x.clone()


@dataclass(frozen=True)
class RecallResult:
    """What ``HopfieldNetwork.recall`` returns.

    state      (N,)          the final state
    converged  bool          the final state is a fixed point (no unit would change)
    cycle      bool          sync mode only: stopped on a 2-cycle (a[t+1] == a[t-1])
    steps      int           updates performed: single units (async) or whole-state (sync)
    states     (steps+1, N)  the start state, then the state after every update
    energies   (steps+1,)    E of each row of ``states``
    """

    state: torch.Tensor
    converged: bool
    cycle: bool
    steps: int
    states: torch.Tensor
    energies: torch.Tensor


@dataclass(frozen=True)
class HopfieldConfig:
    """Settings of a binary Hopfield network.

    Attributes:
        n_units: N, the number of units (64 for the 8x8 digits).
        rule: the storage rule, "hebbian", "pseudo-inverse" or "storkey" (see the module doc).
        normalize: Hebbian rule only: divide the summed outer products by N.
    """

    n_units: int
    rule: str = "hebbian"
    normalize: bool = True

    def __post_init__(self) -> None:
        check_int(self.n_units, "n_units", minimum=1)
        check_choice(self.rule, "rule", RULES)
        if not isinstance(self.normalize, bool):
            fail("normalize", "a bool", repr(self.normalize))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HopfieldConfig":
        return cls(**fields_from_dict(cls, d, "Hopfield config"))


class HopfieldNetwork(nn.Module):
    """N binary units with symmetric weights ``w`` (N, N), zero diagonal, and biases ``b`` (N,):
    ``HopfieldNetwork(HopfieldConfig(...))`` or ``HopfieldNetwork(n_units=64, rule="hebbian")``.

    ``bias`` (N,) (default 0) is a tensor, so it is a keyword of its own, not part of the
    config; it is set here and never trained. ``store(patterns)`` sets the weights from the
    patterns by ``rule`` (replacing what was stored before); ``recall(a0)`` runs the updates
    from a start state; ``energy(a)`` is the lecture's E.
    """

    def __init__(self, config: HopfieldConfig | None = None, /, *, bias: object = None, **kwargs) -> None:
        super().__init__()
        self.config = resolve_config(config, kwargs, HopfieldConfig, type(self).__name__)
        N = self.n_units
        # the N x N float64 weights, and a copy of them while storing: refused before allocating
        check_fits(f"n_units={N}", 2 * 8 * N * N, thing="a network", purpose=f"its {N} x {N} weights")
        if bias is None:
            b = torch.zeros(N, dtype=f64)
        else:
            b = bias if isinstance(bias, torch.Tensor) else torch.as_tensor(np.asarray(bias, dtype=np.float64))
            b = check_tensor(b, "bias", ndim=1, dims="(N,)")
            if b.is_complex() or b.dtype == torch.bool:
                fail("bias", "real numbers", f"dtype {b.dtype}")
            b = b.to(f64)
            check_tensor(b, "bias", finite=True)
            if b.shape[0] != N:
                fail("bias", f"length N = {N}", f"length {b.shape[0]}")
        self.register_buffer("w", torch.zeros(N, N, dtype=f64))  # (N, N)
        self.register_buffer("b", b.clone())  # (N,)

    @property
    def n_units(self) -> int:
        return self.config.n_units

    @property
    def rule(self) -> str:
        return self.config.rule

    @property
    def normalize(self) -> bool:
        return self.config.normalize

    # -- input checks ----------------------------------------------------------------

    def _states(self, a: object, name: str, ndim: tuple[int, ...] = (1, 2)) -> torch.Tensor:
        """Bipolar float64 states on the weights' device, with length N checked."""
        try:
            x = as_bipolar(a)
        except ValueError as e:  # rename "patterns" to the caller's argument
            raise ValueError(str(e).replace("patterns:", f"{name}:", 1)) from None
        if x.dim() not in ndim:
            want = " or ".join({1: "(N,)", 2: "(B, N)"}[d] for d in ndim)
            fail(name, f"a state of shape {want}", f"shape {shape_str(x)}")
        if x.shape[-1] != self.n_units:
            fail(name, f"length N = {self.n_units} (number of units)",
                 f"length {x.shape[-1]} in shape {shape_str(x)}")
        return x.to(self.w.device)

    # -- storage -----------------------------------------------------------------------

    def store(self, patterns: object) -> "HopfieldNetwork":
        """Set the weights from ``patterns`` (P, N) or (N,) by the network's rule.

        Warns (UserWarning) when P > N: more patterns than units cannot all be recalled.
        Returns the network, so ``HopfieldNetwork(n_units=N).store(X)`` reads naturally.
        """
        X = self._states(patterns, "patterns")
        if X.dim() == 1:
            X = X[None, :]  # (1, N)
        P, N = X.shape
        if P > N:
            warnings.warn(
                f"storing P = {P} patterns in N = {N} units: more patterns than units, "
                f"recall is expected to fail", UserWarning, stacklevel=2)
        if self.rule == "hebbian":
            # w_ij = sum_p a^(p)_i a^(p)_j                      (lecture: Hopfield training)
            w = X.T @ X  # (N, N)
            if self.normalize:
                w = w / N
        elif self.rule == "pseudo-inverse":
            # W = X^T (X X^T)^-1 X = pinv(X) X                  (projection rule)
            w = torch.linalg.pinv(X) @ X  # (N, P) @ (P, N) -> (N, N)
            w = (w + w.T) / 2  # exact symmetry against round-off
        else:
            w = torch.zeros(N, N, dtype=f64, device=X.device)
            for e in X:  # e (N,), one pattern at a time
                # h_ij = sum_{k != i, j} w_ik e_k = (W e)_i - w_ij e_j   (w_ii = 0)
                h = (w @ e)[:, None] - w * e[None, :]  # (N, N)
                # w_ij += 1/N (e_i e_j - e_i h_ji - h_ij e_j)    (Storkey 1997)
                u = e[:, None] * h.T  # (N, N): e_i h_ji; its transpose is h_ij e_j
                w = w + (torch.outer(e, e) - (u + u.T)) / N  # u + u^T: exactly symmetric
                w.fill_diagonal_(0.0)
        # w_ii = 0: no self-connections
        w = w.clone()
        w.fill_diagonal_(0.0)
        self.w.copy_(w)
        return self

    # -- energy and updates ------------------------------------------------------------

    def energy(self, a: object) -> torch.Tensor:
        """E = -1/2 a^T W a - b^T a, for a (N,) -> scalar, or (B, N) -> (B,)."""
        a = self._states(a, "a")
        # E = -1/2 sum_ij w_ij a_i a_j - sum_i b_i a_i      (lecture: Hopfield energy)
        return -0.5 * ((a @ self.w) * a).sum(-1) - a @ self.b

    def is_fixed_point(self, a: object) -> torch.Tensor:
        """True where no unit of ``a`` would change under the update rule: (N,) -> scalar
        bool, (B, N) -> (B,) bool."""
        a = self._states(a, "a")
        return (self._update_all(a) == a).all(-1)

    def _update_all(self, a: torch.Tensor) -> torch.Tensor:
        # a_i <- +1 if sum_j w_ij a_j + b_i > 0 else -1   (w_ii = 0; ties go to -1)
        field = a @ self.w + self.b  # (..., N); W symmetric, so a W = (W a)^T
        return torch.where(field > 0, 1.0, -1.0).to(f64)

    def recall(self, a0: object, *, mode: str = "async", max_steps: int | None = None,
               generator: torch.Generator | None = None) -> RecallResult:
        """Run the updates from the start state ``a0`` (N,).

        async  one unit at a time, in sweeps: each sweep visits every unit once in a random
               order (drawn from ``generator``); stops after a sweep that changes nothing
               (a fixed point) or after ``max_steps`` single-unit updates (default 100 N).
        sync   all units at once; stops at a fixed point, at a 2-cycle, or after
               ``max_steps`` updates (default 100).

        Every update performed is recorded, including those of the final sweep (or final
        synchronous step) that change nothing and confirm the fixed point.
        """
        a = self._states(a0, "a0", ndim=(1,))
        mode = check_choice(mode, "mode", MODES)
        N = self.n_units
        if max_steps is None:
            max_steps = 100 * N if mode == "async" else 100
        check_int(max_steps, "max_steps", minimum=1)
        if generator is not None and not isinstance(generator, torch.Generator):
            fail("generator", "a torch.Generator or None", type(generator).__name__)

        states = [a.clone()]
        cycle = False
        if mode == "async":
            a = a.clone()
            steps = 0
            while steps < max_steps:
                order = torch.randperm(N, generator=generator).tolist()
                changed, complete = False, True
                for i in order:
                    if steps == max_steps:
                        complete = False
                        break
                    # a_i <- +1 if sum_{j != i} w_ij a_j + b_i > 0 else -1   (lecture)
                    new = 1.0 if float(self.w[i] @ a + self.b[i]) > 0 else -1.0
                    if new != float(a[i]):
                        a[i] = new
                        changed = True
                    steps += 1
                    states.append(a.clone())
                if complete and not changed:
                    break  # a full sweep changed nothing: fixed point
        else:
            steps = 0
            while steps < max_steps:
                new = self._update_all(a)  # (N,)
                steps += 1
                states.append(new)
                if torch.equal(new, a):
                    break  # fixed point
                if len(states) >= 3 and torch.equal(new, states[-3]):
                    cycle = True  # a[t+1] == a[t-1]: period-2 oscillation
                    a = new
                    break
                a = new
        trajectory = torch.stack(states)  # (steps+1, N)
        return RecallResult(
            state=a.clone(),
            converged=bool(self.is_fixed_point(a)),
            cycle=cycle,
            steps=steps,
            states=trajectory,
            energies=self.energy(trajectory),  # (steps+1,)
        )

    def extra_repr(self) -> str:
        return f"n_units={self.n_units}, rule={self.rule!r}, normalize={self.normalize}"
