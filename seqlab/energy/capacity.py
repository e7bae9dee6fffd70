r"""Storage capacity of the binary Hopfield network, measured.

For each network size N and load alpha = P/N: store P = round(alpha N) random +-1
patterns (``HopfieldNetwork.store`` with the chosen rule), start the dynamics at every
stored pattern (optionally with a fraction ``flip`` of its units flipped), run
asynchronous sweeps until a sweep changes nothing or ``max_sweeps`` sweeps are done, and
record the overlap with the pattern started from,

    m = a . xi / N          (1 = perfect recall, ~0 = unrelated state)

averaged over the P patterns and ``trials`` independent draws of the patterns.

The sweeps are the lecture's update a_i <- +1 if sum_j w_ij a_j + b_i > 0 else -1, one
unit at a time in a fresh random order per sweep, batched over the patterns: for each
unit i of the order, unit i of all P states is updated at once (the states do not
interact, so this equals P separate asynchronous runs that share the unit order). It
reads the network's ``w`` and ``b`` buffers and skips ``recall``'s per-step trajectory
and energy bookkeeping, which dominates for large N.

Critical load. With the loads sorted increasingly, the critical load is the largest load
whose mean overlap is >= ``threshold`` (0.95) *before* the first load whose mean overlap
falls below it; later loads that recover (noise at small N) do not count. If even the
smallest load fails it is ``None``; if no load fails it is the largest load measured and
``censored`` is True (the true value lies above the range).

Theory (Amit, Gutfreund & Sompolinsky 1985/1987, Hebbian rule, N -> infinity): the
retrieval states near the patterns exist up to alpha_c ~= 0.138, where their overlap is
still about 0.97; above it they vanish and the overlap drops to far lower values. At
finite N the jump is smoothed out and the measured value scatters around 0.138 (typically
0.1-0.2 for N of a few hundred). The projection (pseudo-inverse) rule makes every
pattern an exact fixed point for P < N, and Storkey's rule lies in between.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from seqlab.energy.hopfield import RULES, HopfieldNetwork
from seqlab.memory import check_fits
from seqlab.validation import check_choice, check_float, check_int, fail

ALPHA_C = 0.138  # Amit-Gutfreund-Sompolinsky, Hebbian rule, N -> infinity
THRESHOLD = 0.95
DEFAULT_LOADS = (0.02, 0.04, 0.06, 0.08, 0.10, 0.12, 0.14, 0.16, 0.18, 0.20, 0.25, 0.30, 0.40, 0.50,
                 0.60, 0.80)
MAX_LOAD = 1.5


@dataclass
class CapacityResult:
    """What ``measure_capacity`` returns.

    n_units    the sizes N, as given
    loads      the loads alpha = P/N, sorted increasingly
    rule       the storage rule
    overlap    overlap[N][k]: mean final overlap m at loads[k]
    perfect    perfect[N][k]: fraction of patterns recalled exactly (m == 1)
    sweeps     sweeps[N][k]: mean number of asynchronous sweeps run
    patterns   patterns[N][k]: P = round(alpha N) used
    critical   critical[N]: the critical load (see the module docstring), or None
    censored   censored[N]: True when no load failed (critical is a lower bound)
    """

    n_units: list[int]
    loads: list[float]
    rule: str
    trials: int
    flip: float
    max_sweeps: int
    threshold: float
    overlap: dict[int, list[float]] = field(default_factory=dict)
    perfect: dict[int, list[float]] = field(default_factory=dict)
    sweeps: dict[int, list[float]] = field(default_factory=dict)
    patterns: dict[int, list[int]] = field(default_factory=dict)
    critical: dict[int, float | None] = field(default_factory=dict)
    censored: dict[int, bool] = field(default_factory=dict)


def _check_units(n_units: object) -> list[int]:
    if isinstance(n_units, (str, bytes)) or not isinstance(n_units, Sequence) or len(n_units) == 0:
        fail("units", "a non-empty list of integers >= 2", repr(n_units))
    out = []
    for n in n_units:
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            fail("units", "integers >= 2 (number of units N)", repr(n))
        out.append(n)
    if len(set(out)) != len(out):
        fail("units", "each size once", repr(list(n_units)))
    return out


def _check_loads(loads: object) -> list[float]:
    if isinstance(loads, (str, bytes)) or not isinstance(loads, Sequence) or len(loads) == 0:
        fail("loads", f"a non-empty list of numbers in (0, {MAX_LOAD}]", repr(loads))
    out = []
    for v in loads:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or not 0 < v <= MAX_LOAD:
            fail("loads", f"numbers in (0, {MAX_LOAD}] (load P/N)", repr(v))
        out.append(float(v))
    if len(set(out)) != len(out):
        fail("loads", "each load once", repr(list(loads)))
    return sorted(out)


# float64 copies of the N x N weights that storing patterns holds at once (the weights and the
# temporaries of the rule: the product, its scaled copy, the symmetrised sum...), and of the
# (P, N) patterns (integer draw, float copy, start states)
WEIGHT_COPIES = {"hebbian": 4, "pseudo-inverse": 5, "storkey": 6}
PATTERN_COPIES = 4


def capacity_bytes(n: int, patterns: int, rule: str = "hebbian") -> int:
    """Bytes ``measure_capacity`` needs at once for one network of ``n`` units storing
    ``patterns`` patterns: float64 weights and their temporaries, and the patterns."""
    return 8 * (WEIGHT_COPIES[rule] * n * n + PATTERN_COPIES * patterns * n)


def check_capacity_memory(units: Sequence[int], loads: Sequence[float], rule: str) -> None:
    """Refuse sizes whose weights and patterns do not fit in memory, before allocating any."""
    for n in sorted(units, reverse=True):
        needed = capacity_bytes(n, max(1, round(max(loads) * n)), rule)
        check_fits(f"units={n}", needed, thing="a network", purpose=f"its {n} x {n} weights and its patterns "
                   f"(load up to {max(loads):g})")


def async_sweeps(w: np.ndarray, b: np.ndarray, states: np.ndarray, *, max_sweeps: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Asynchronous updates of the states (B, N) in place, batched over B.

    Each sweep visits every unit once in a fresh random order; unit i of all B states is
    updated at once: a_i <- +1 if sum_j w_ij a_j + b_i > 0 else -1 (ties to -1, w_ii = 0).
    Stops after a sweep that changes nothing or after ``max_sweeps`` sweeps. Returns the
    states and the number of sweeps run.
    """
    N = w.shape[0]
    done = 0
    for _ in range(max_sweeps):
        done += 1
        changed = False
        for i in rng.permutation(N):
            h = states @ w[i] + b[i]  # (B,); W symmetric, so row i = column i
            new = np.where(h > 0, 1.0, -1.0)
            if not changed and not np.array_equal(new, states[:, i]):
                changed = True
            states[:, i] = new
        if not changed:
            break
    return states, done


def critical_load(loads: Sequence[float], overlaps: Sequence[float],
                  threshold: float = THRESHOLD) -> tuple[float | None, bool]:
    """(critical load, censored): the largest load with overlap >= threshold before the
    first load below it; None if the first load already fails; censored if none fails."""
    crit = None
    for load, m in sorted(zip(loads, overlaps)):
        if m < threshold:
            return crit, False
        crit = load
    return crit, True


def measure_capacity(n_units: Sequence[int], loads: Sequence[float] = DEFAULT_LOADS, *, rule: str = "hebbian",
                     trials: int = 3, generator: torch.Generator | None = None, max_sweeps: int = 20,
                     flip: float = 0.0, threshold: float = THRESHOLD) -> CapacityResult:
    """Mean final overlap against load for each N; see the module docstring."""
    units = _check_units(n_units)
    loads = _check_loads(loads)
    rule = check_choice(rule, "rule", RULES)
    check_int(trials, "trials", minimum=1)
    check_int(max_sweeps, "max_sweeps", minimum=1)
    flip = check_float(flip, "flip", minimum=0.0, maximum=0.5)
    threshold = check_float(threshold, "threshold", minimum=0.0, maximum=1.0)
    if generator is not None and not isinstance(generator, torch.Generator):
        fail("generator", "a torch.Generator or None", type(generator).__name__)
    check_capacity_memory(units, loads, rule)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    # NumPy stream for the sweep orders and the flips, seeded from the torch generator
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))

    res = CapacityResult(n_units=units, loads=loads, rule=rule, trials=trials, flip=flip,
                         max_sweeps=max_sweeps, threshold=threshold)
    for N in units:
        ov, pf, sw, ps = [], [], [], []
        for load in loads:
            P = max(1, round(load * N))
            m_sum, perfect, sweeps = 0.0, 0, 0
            for _ in range(trials):
                X = torch.randint(0, 2, (P, N), generator=generator).to(torch.float64) * 2 - 1  # (P, N)
                net = HopfieldNetwork(n_units=N, rule=rule)
                if P > N:
                    import warnings
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)
                        net.store(X)
                else:
                    net.store(X)
                xi = X.numpy()
                a = xi.copy()
                if flip > 0:
                    k = round(flip * N)
                    for p in range(P):
                        idx = rng.choice(N, size=k, replace=False)
                        a[p, idx] *= -1
                a, n_sw = async_sweeps(net.w.numpy(), net.b.numpy(), a, max_sweeps=max_sweeps, rng=rng)
                m = (a * xi).sum(1) / N  # (P,) overlap m = a . xi / N
                m_sum += float(m.sum())
                perfect += int((m == 1.0).sum())
                sweeps += n_sw
            ov.append(m_sum / (P * trials))
            pf.append(perfect / (P * trials))
            sw.append(sweeps / trials)
            ps.append(P)
        res.overlap[N], res.perfect[N], res.sweeps[N], res.patterns[N] = ov, pf, sw, ps
        res.critical[N], res.censored[N] = critical_load(loads, ov, threshold)
    return res


def _crit_str(res: CapacityResult, N: int) -> str:
    c = res.critical[N]
    if c is None:
        return f"< {res.loads[0]:g}"
    return f">= {c:g}" if res.censored[N] else f"{c:g}"


def format_table(results: CapacityResult | Sequence[CapacityResult]) -> str:
    """N, rule, measured critical load, theory (0.138, Hebbian rule)."""
    if isinstance(results, CapacityResult):
        results = [results]
    lines = [f"{'N':>6}  {'rule':15}  {'critical load (measured)':>24}  {'theory (Hebbian)':>16}"]
    for res in results:
        for N in res.n_units:
            lines.append(f"{N:>6}  {res.rule:15}  {_crit_str(res, N):>24}  {ALPHA_C:>16}")
    r0 = results[0]
    lines.append(f"critical load: largest P/N with mean overlap >= {r0.threshold} before the first one below; "
                 f"{r0.trials} trial(s), flip {r0.flip:g}, <= {r0.max_sweeps} async sweeps")
    return "\n".join(lines)


def to_json(res: CapacityResult) -> dict:
    return {
        "rule": res.rule, "n_units": res.n_units, "loads": res.loads, "trials": res.trials, "flip": res.flip,
        "max_sweeps": res.max_sweeps, "threshold": res.threshold, "theory_alpha_c": ALPHA_C,
        "per_n": {str(N): {"overlap": res.overlap[N], "perfect": res.perfect[N], "sweeps": res.sweeps[N],
                           "patterns": res.patterns[N], "critical_load": res.critical[N],
                           "censored": res.censored[N]} for N in res.n_units},
    }
