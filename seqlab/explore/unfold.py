"""The unfold widget's endpoint: which weight copies one BPTT step uses for dC/dW.

``GET /api/unfold?T=5&output=sequence&layers=1&wrt=w_x`` unrolls the Elman network over T
steps and reads the answer off the autograd graph with ``seqlab.recurrent.unfold.unfold``,
the same call as ``seqlab unfold -T 5 --output sequence --wrt w_x`` (its ``--json`` output is
the answer's ``json``). Beside the copies it sends the lecture's chain-rule sum for dC/dW as
lines of TeX (each short enough for ``/api/equation.svg``), which the page typesets.

The lecture's notation: a_t (a^(l)_t with several layers), o / o_t, w^(x), w^(a), b^(a),
w^(o), b^(o); a weight of layer l is written w^(x)[l] like the copy names ``w_x[l]@t``.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query

from seqlab.recurrent import unfold as uf

router = APIRouter()

MAX_T = 20  # the lecture's slider; the drawing shows every step
MAX_LAYERS = 3
SHOWN_TERMS = 4  # a written-out sum with more terms shows the first ones, \cdots, the last

_SYMBOL = {"w_x": "w^{(x)}", "w_a": "w^{(a)}", "b_a": "b^{(a)}", "w_o": "w^{(o)}", "b_o": "b^{(o)}"}


def weight_tex(wrt: str) -> str:
    """``w_x`` -> ``w^{(x)}``; ``w_a[2]`` -> ``w^{(a)}[2]``."""
    name, _, layer = wrt.partition("[")
    return _SYMBOL[name] + (f"[{layer}" if layer else "")


def _d(num: str, den: str) -> str:
    return rf"\frac{{\partial {num}}}{{\partial {den}}}"


def _abbreviate(items: list[str], keep: int = SHOWN_TERMS) -> list[str]:
    """All of ``items`` when there are at most ``keep``; else the first keep-1, \\cdots, the last."""
    if len(items) <= keep:
        return items
    return items[: keep - 1] + [r"\cdots"] + items[-1:]


def _jacobians(s: int, t: int) -> str:
    """da_s/da_{s-1} ... da_{t+1}/da_t written out (at most three factors, else with \\cdots)."""
    factors = [_d(f"a_{{{k}}}", f"a_{{{k - 1}}}") for k in range(s, t, -1)]
    if len(factors) > 3:
        factors = [factors[0], r"\cdots", factors[-1]]
    return " ".join(factors)


def _lines(first: str, terms: list[str]) -> list[str]:
    """``first = terms[0]``, then one line ``+ term`` per further term."""
    return [f"{first} = {terms[0]}"] + [f"+ {t}" for t in terms[1:]]


def chain_rule_tex(result: uf.UnfoldResult) -> dict:
    """The lecture's chain-rule sum for dC/dW of ``result``'s network: ``general`` (the sum in
    closed form, with the recursion for the gradient of a state when there are several
    layers), ``written`` (the sum written out term by term for one layer, as the lecture
    writes it; long sums abbreviated with \\cdots) and ``terms`` (how many products the sum
    has; None with several layers, where the paths branch between the layers)."""
    T, L, seq = result.length, result.layers, result.output == "sequence"
    name, _, layer = result.wrt.partition("[")
    W = weight_tex(result.wrt)
    lhs = _d("C", W)
    if name in ("w_o", "b_o"):
        if not seq:
            return {"general": [f"{lhs} = {_d('C', 'o')} {_d('o', W)}"], "written": [], "terms": 1}
        general = [rf"{lhs} = \sum_{{t=1}}^{{T}} {_d('C_t', 'o_t')} {_d('o_t', W)}"]
        terms = [f"{_d(f'C_{{{t}}}', f'o_{{{t}}}')} {_d(f'o_{{{t}}}', W)}" for t in range(1, T + 1)]
        return {"general": general, "written": _lines(lhs, _abbreviate(terms)), "terms": T}
    if L > 1:
        l = int(layer.rstrip("]"))
        a = lambda t, k=l: f"a^{{({k})}}_{{{t}}}"  # noqa: E731
        general = [rf"{lhs} = \sum_{{t=1}}^{{T}} {_d('C', a('t'))} {_d(a('t'), W)}"]
        if l < L:  # the gradient of a state comes along the layer and from the layer above
            ks = ", ".join(str(k) for k in range(l, L))
            general.append(f"{_d('C', a('t', 'k'))} = {_d('C', a('t+1', 'k'))} {_d(a('t+1', 'k'), a('t', 'k'))} + "
                           f"{_d('C', a('t', 'k+1'))} {_d(a('t', 'k+1'), a('t', 'k'))},"
                           rf"\quad k = {ks}")
        top = lambda t: a(t, L)  # noqa: E731
        if seq:
            general.append(f"{_d('C', top('t'))} = {_d('C', top('t+1'))} {_d(top('t+1'), top('t'))} + "
                           f"{_d('C_t', 'o_t')} {_d('o_t', top('t'))}")
        else:
            general.append(f"{_d('C', top('T'))} = {_d('C', 'o')} {_d('o', top('T'))},"
                           rf"\quad {_d('C', top('t'))} = {_d('C', top('t+1'))} {_d(top('t+1'), top('t'))}"
                           r"\quad (t < T)")
        general.append(rf"{_d('C', a('T+1', 'k'))} = 0")
        return {"general": general, "written": [], "terms": None}
    if not seq:
        general = [rf"{lhs} = \sum_{{t=1}}^{{T}} {_d('C', 'o')} {_d('o', 'a_T')} "
                   rf"\prod_{{k=t+1}}^{{T}} {_d('a_k', 'a_{k-1}')} {_d('a_t', W)}"]
        terms = [f"{_d('C', 'o')} {_d('o', f'a_{{{T}}}')} {_jacobians(T, t)} {_d(f'a_{{{t}}}', W)}"
                 .replace("  ", " ") for t in range(T, 0, -1)]
        return {"general": general, "written": _lines(lhs, _abbreviate(terms)), "terms": T}
    general = [rf"{lhs} = \sum_{{s=1}}^{{T}} {_d('C_s', 'o_s')} {_d('o_s', 'a_s')} \sum_{{t=1}}^{{s}} "
               rf"\prod_{{k=t+1}}^{{s}} {_d('a_k', 'a_{k-1}')} {_d('a_t', W)}"]
    groups = []
    for s in range(1, T + 1):
        inner = [f"{_jacobians(s, t)} {_d(f'a_{{{t}}}', W)}".strip() for t in range(s, 0, -1)]
        inner = _abbreviate(inner, 3)
        body = inner[0] if len(inner) == 1 else r"\left(" + " + ".join(inner) + r"\right)"
        groups.append(f"{_d(f'C_{{{s}}}', f'o_{{{s}}}')} {_d(f'o_{{{s}}}', f'a_{{{s}}}')} {body}")
    return {"general": general, "written": _lines(lhs, _abbreviate(groups)), "terms": T * (T + 1) // 2}


@router.get("")
def unfold(
    T: int = Query(5, ge=1, le=MAX_T, description="sequence length T"),
    output: Literal["last", "sequence"] = Query("sequence", description="one output at T, or one per step"),
    layers: int = Query(1, ge=1, le=MAX_LAYERS),
    wrt: str = Query("w_x", min_length=1, max_length=12, description="the weight W of dC/dW"),
) -> dict:
    """The copies dC/dW uses (``seqlab unfold``'s answer), every copy of the network, the
    choices of W for this many layers, and the chain-rule sum as TeX lines."""
    result = uf.unfold(T, output=output, layers=layers, wrt=wrt)  # a bad wrt is a one-line ValueError (400)
    return {
        "length": result.length, "output": result.output, "layers": result.layers, "wrt": result.wrt,
        "count": len(result.used), "used": result.used, "receives": result.receives,
        "multiplies": result.multiplies, "copies": result.copies,
        "valid_wrt": uf.valid_wrt(layers),
        "json": uf.to_json(result),  # what `seqlab unfold --json` prints
        "command": f"seqlab unfold -T {T} --output {output} --layers {layers} --wrt '{result.wrt}' --json",
        "chain_rule": chain_rule_tex(result),
    }
