r"""The Hopfield widget's endpoints: asynchronous recall one update at a time, with its energy.

The server keeps no state between requests: each one carries the stored patterns (digit
prototypes of ``seqlab.energy.images.digit_patterns`` and/or patterns drawn on the grid),
the storage rule, the current state and where the update order stands (its seed, how many
random orders the corruption drew before it, and the number of updates done so far). The
order is ``HopfieldNetwork.recall``'s: sweeps over the N units, each a ``torch.randperm(N)``
drawn from ``torch.Generator().manual_seed(seed)``; so the states and energies are those of
the Python API (and of ``seqlab hopfield recall`` for the same digit, noise and seed).

- ``GET /api/hopfield/patterns?digits=0,1,2``: the prototypes (8 x 8, +1/-1);
- ``POST /api/hopfield/start``: a corrupted copy of a pattern (``images.corrupt``: noise
  flips round(noise N) units, occlude blanks half), the start of a recall;
- ``POST /api/hopfield/step``: ``steps`` more single-unit updates (or up to the first fixed
  point), with E after each;
- ``POST /api/hopfield/compare``: recall from one start state under every storage rule.

E = -1/2 sum_ij w_ij a_i a_j - sum_i b_i a_i (``HopfieldNetwork.energy``; b = 0 here).
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from seqlab.energy import images as im
from seqlab.energy.hopfield import RULES, HopfieldNetwork, as_bipolar
from seqlab.explore.common import BadRequest

router = APIRouter()

MIN_SIDE, MAX_SIDE = 2, 16  # the grid is side x side units
MAX_PATTERNS = 20  # stored patterns (digits and drawn ones together)
MAX_STEPS = 5000  # single-unit updates per request
MAX_POSITION = 100_000  # updates already done (the order is replayed up to here)
MAX_SEED = 2**31 - 1

Rule = Literal["hebbian", "pseudo-inverse", "storkey"]


class Stored(BaseModel):
    """What the network stores: ``side`` x ``side`` units, the prototypes of ``digits``
    (8 x 8 only) and the drawn ``patterns``, under ``rule``."""

    side: int = Field(8, ge=MIN_SIDE, le=MAX_SIDE)
    digits: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], max_length=10)
    patterns: list[list[int]] = Field(default_factory=list, max_length=MAX_PATTERNS)
    rule: Rule = "pseudo-inverse"


class StepRequest(Stored):
    state: list[int] = Field(..., max_length=MAX_SIDE**2)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    offset: int = Field(0, ge=0, le=1)  # random orders drawn before the first sweep (the corruption's)
    position: int = Field(0, ge=0, le=MAX_POSITION)
    steps: int = Field(1, ge=0, le=MAX_STEPS)  # 0: just E and the overlaps of ``state``
    until_fixed: bool = False


class StartRequest(BaseModel):
    side: int = Field(8, ge=MIN_SIDE, le=MAX_SIDE)
    pattern: list[int] = Field(..., max_length=MAX_SIDE**2)
    noise: float = Field(0.0, ge=0.0, le=1.0)
    occlude: Optional[Literal["top", "bottom", "left", "right"]] = None
    seed: int = Field(0, ge=0, le=MAX_SEED)


class CompareRequest(Stored):
    state: list[int] = Field(..., max_length=MAX_SIDE**2)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    offset: int = Field(0, ge=0, le=1)


def _grid(values: list[int], side: int, what: str) -> torch.Tensor:
    """``values`` as a bipolar (N,) tensor: N = side^2 values, all in {-1, +1} or all in {0, 1}."""
    n = side * side
    if len(values) != n:
        raise BadRequest(f"{what}: expected {n} values (a {side} x {side} grid), got {len(values)}")
    seen = set(values)
    if not (seen <= {-1, 1} or seen <= {0, 1}):
        raise BadRequest(f"{what}: expected values in {{-1, +1}} or in {{0, 1}}, got {sorted(seen)[:6]}")
    return as_bipolar([float(v) for v in values])


def _stored(req: Stored) -> tuple[torch.Tensor, list[str]]:
    """The stored patterns (P, N) and a label for each ("digit 3", "drawn 1")."""
    rows, labels = [], []
    if req.digits:
        if req.side != im.SIZE:
            raise BadRequest(f"digits: the digit prototypes are {im.SIZE} x {im.SIZE}, got side {req.side}; "
                             f"store drawn patterns only on other grids")
        rows.extend(im.digit_patterns(req.digits))  # ValueError (a 400) for a bad digit
        labels.extend(f"digit {d}" for d in req.digits)
    for k, p in enumerate(req.patterns, 1):
        rows.append(_grid(p, req.side, f"patterns[{k - 1}]"))
        labels.append(f"drawn {k}")
    if not rows:
        raise BadRequest("patterns: expected at least one stored pattern (a digit or a drawn one), got none")
    if len(rows) > MAX_PATTERNS:
        raise BadRequest(f"patterns: expected at most {MAX_PATTERNS} stored patterns, got {len(rows)}")
    return torch.stack(rows), labels


def _network(X: torch.Tensor, rule: str) -> HopfieldNetwork:
    return HopfieldNetwork(n_units=X.shape[1], rule=rule).store(X)


def _overlaps(state: torch.Tensor, X: torch.Tensor) -> list[float]:
    return [float(m) for m in im.overlaps(state, X)]


@router.get("/patterns")
def patterns(digits: str = Query("0,1,2,3,4,5,6,7,8,9", max_length=40)) -> dict:
    """The 8 x 8 digit prototypes (+1 ink, -1 background), row-major."""
    try:
        ds = [int(d) for d in digits.split(",") if d.strip()]
    except ValueError:
        raise BadRequest(f"digits: expected comma-separated digits 0-9, got {digits!r}") from None
    X = im.digit_patterns(ds)
    return {"side": im.SIZE, "digits": ds, "patterns": [[int(v) for v in row] for row in X.tolist()]}


@router.post("/start")
def start(req: StartRequest) -> dict:
    """A corrupted copy of ``pattern``: half blanked (occlude), then round(noise N) units
    flipped with ``torch.Generator().manual_seed(seed)``, as ``seqlab hopfield recall`` does.
    ``offset`` says how many random orders the corruption drew (0 or 1): pass it to /step
    with the same seed to continue the generator as the command line does."""
    a = _grid(req.pattern, req.side, "pattern")
    gen = torch.Generator().manual_seed(req.seed)
    state = im.corrupt(a, noise=req.noise, occlude=req.occlude, shape=(req.side, req.side), generator=gen)
    flips = round(req.noise * req.side * req.side)
    return {"state": [int(v) for v in state.tolist()], "offset": 1 if flips else 0, "flipped": flips}


@router.post("/step")
def step(req: StepRequest) -> dict:
    """``steps`` single-unit updates from ``state``, continuing the update order at
    ``position`` (or fewer: up to the first fixed point with ``until_fixed``)."""
    X, labels = _stored(req)
    net = _network(X, req.rule)
    a = _grid(req.state, req.side, "state")
    N = a.shape[0]
    gen = torch.Generator().manual_seed(req.seed)
    for _ in range(req.offset):
        torch.randperm(N, generator=gen)  # the order the corruption drew
    for _ in range(req.position // N):
        torch.randperm(N, generator=gen)  # the sweeps already done
    order = torch.randperm(N, generator=gen).tolist()
    at = req.position % N
    states, units, changes = [a.clone()], [], []
    position = req.position
    fixed = bool(net.is_fixed_point(a))
    w, b = net.w, net.b
    for _ in range(req.steps):
        if req.until_fixed and fixed:
            break
        if at == N:  # a new sweep: a new random order, as HopfieldNetwork.recall draws it
            order, at = torch.randperm(N, generator=gen).tolist(), 0
        i = order[at]
        # a_i <- +1 if sum_{j != i} w_ij a_j + b_i > 0, else -1     (lecture; w_ii = 0)
        new = 1.0 if float(w[i] @ a + b[i]) > 0 else -1.0
        if new != float(a[i]):
            a[i] = new
            changes.append([position, i, int(new)])
            fixed = bool(net.is_fixed_point(a))
        at += 1
        position += 1
        units.append(i)
        states.append(a.clone())
    energies = net.energy(torch.stack(states))  # (steps + 1,): E before, then after each update
    return {"state": [int(v) for v in a.tolist()], "position": position, "units": units, "changes": changes,
            "energies": [float(e) for e in energies], "fixed_point": fixed,
            "overlaps": dict(zip(labels, _overlaps(a, X)))}


@router.post("/compare")
def compare(req: CompareRequest) -> dict:
    """Recall from ``state`` under each storage rule (``HopfieldNetwork.recall``, async, the
    same seed): the final state, its energy, steps, and the stored pattern it is closest to."""
    X, labels = _stored(req)
    a = _grid(req.state, req.side, "state")
    out = []
    for rule in RULES:
        net = _network(X, rule)
        gen = torch.Generator().manual_seed(req.seed)
        for _ in range(req.offset):
            torch.randperm(a.shape[0], generator=gen)
        res = net.recall(a, generator=gen)
        m = _overlaps(res.state, X)
        best = max(range(len(m)), key=lambda k: m[k])
        out.append({"rule": rule, "state": [int(v) for v in res.state.tolist()], "steps": res.steps,
                    "converged": res.converged, "energy_start": float(res.energies[0]),
                    "energy_end": float(res.energies[-1]), "match": labels[best], "overlap": m[best],
                    "exact": bool(torch.equal(res.state, X[best]))})
    return {"rules": out}
