"""Unfolding a recurrent network in time, and the lecture's BPTT discussion question.

Lecture, "Recurrent Networks" and "Backpropogation Through Time": *Which weights
(including copies of the same weight) are used in one backpropagation through time
gradient descent step when computing dC/dw^(x)?  Use the slider to unfold the network
given an input sequence* (input length T; "output is also a sequence": yes / no).

The network (lecture notation, 1-based time t = 1..T and layers l = 1..L)::

    a^(l)_t = g(w^(a)[l] . a^(l)_{t-1} + w^(x)[l] . a^(l-1)_t + b^(a)[l])
              with a^(0)_t = x_t and a^(l)_0 = 0
    output "last":     o   = g(w^(o) . a^(L)_T + b^(o)),            C = C(o)
    output "sequence": o_t = g(w^(o) . a^(L)_t + b^(o)), t = 1..T,  C = sum_t C_t

Unfolding turns every use of a shared weight at time t into a separate *copy*, named
``NAME@t`` with one layer (``w_x@1``, ``w_a@3``, ``b_o@3``) and ``NAME[l]@t`` with
several (``w_x[2]@1``; ``w_o`` and ``b_o`` are never layer-indexed).  The product
``w_a@1 . a_0`` belongs to the graph although a_0 = 0: the last term of the lecture's sum
for dC/dw^(a) contains da_1/dw^(a).

The answer ("used" copies) for a weight W is

* the copies of W that **receive gradient**: there is a path from C to them in the
  backward graph, and
* every weight copy that **multiplies** along some backward path from C to a copy of W.
  Going backward through a product u = A . v from u to the activation v multiplies the
  gradient by the copy A; going from u to A itself (that multiplies by v), through a bias
  addition, or through g' multiplies by no weight copy.

How the answer is found -- no formula, the graph itself
-------------------------------------------------------
:func:`unroll` builds the unrolled network in PyTorch (float64, small random sizes), with
one separate leaf tensor per weight copy, and computes C.  :func:`unfold` then walks the
autograd graph from ``C.grad_fn`` through ``next_functions``:

1. every backward node reachable from C is collected (iterative depth-first search, so a
   long sequence cannot hit Python's recursion limit);
2. a node *reaches W* when it is the ``AccumulateGrad`` node of a copy of W, or one of its
   children reaches W (computed in post-order on the DAG);
3. the copies of W whose ``AccumulateGrad`` node was reached **receive gradient**;
4. for each matrix-vector product node (``MvBackward0``, from ``torch.mv(A, v)``) and each
   of its two operand edges j that reaches W, the backward formula multiplies the
   incoming gradient by the *other* operand (d(A v)/dv = A, d(A v)/dA = v^T).  That other
   operand is read from the tensor the node saved for backward (``_saved_self`` for the
   matrix, ``_saved_vec`` for the vector) and identified by its storage: every weight copy
   is a separate leaf with its own storage, so the storage pointer names the copy.  If it
   is a weight copy, that copy **multiplies** along a path from C to W.  As a cross-check
   the other operand's own edge must lead to the ``AccumulateGrad`` node of the same copy.

Every edge walked in step 4 lies on a path from C (all collected nodes are reachable from
C) to a copy of W (its child reaches W), so the set is exactly "the weight copies
multiplied along some backward path".  Reading the saved tensors rather than trusting the
operand order of the forward code is what makes the walk robust: it uses what the
backward pass itself will multiply by.  A guard raises if a weight copy is saved by any
other kind of node (say the network were changed to use ``torch.mm`` or ``*``), so a
change that this walk does not understand fails loudly instead of answering wrongly.

Sorted names
------------
Every list of copy names is in *natural order*: by the weight's position in
:data:`WEIGHTS` (``w_x, w_a, b_a, w_o, b_o``), then the layer, then the time step as a
number, so ``w_a@2`` comes before ``w_a@10``.

Limits: 1 <= T <= :data:`MAX_LENGTH` and 1 <= L <= :data:`MAX_LAYERS`, so the unrolled
graph stays small (at most a few ten thousand nodes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from seqlab.validation import check_choice, check_int, fail

WEIGHTS = ("w_x", "w_a", "b_a", "w_o", "b_o")
LAYERED = ("w_x", "w_a", "b_a")  # one per recurrent layer; w_o and b_o belong to the output
OUTPUTS = ("last", "sequence")
MAX_LENGTH = 200
MAX_LAYERS = 8
MAX_DRAWN = 8  # render_text and the PNG (seqlab.viz.recurrent.plot_unfold) draw every step up to this T

_NAME = re.compile(r"(w_x|w_a|b_a|w_o|b_o)(?:\[([1-9][0-9]*)\])?@([1-9][0-9]*)")


# --------------------------------------------------------------------------- names
def copy_name(weight: str, t: int, layer: int = 1, layers: int = 1) -> str:
    """Name of the copy of ``weight`` used at time ``t`` (in ``layer`` of ``layers``)."""
    if weight in LAYERED and layers > 1:
        return f"{weight}[{layer}]@{t}"
    return f"{weight}@{t}"


def parse_copy(name: str) -> tuple[str, int, int]:
    """``"w_x[2]@5"`` -> ``("w_x", 2, 5)``; a name without a layer has layer 1 (w_o, b_o: 0)."""
    m = _NAME.fullmatch(name)
    if m is None:
        fail("copy name", "NAME@t or NAME[l]@t with NAME in " + ", ".join(WEIGHTS), repr(name))
    weight, layer, t = m.group(1), m.group(2), int(m.group(3))
    return weight, (int(layer) if layer else (1 if weight in LAYERED else 0)), t


def sort_key(name: str) -> tuple[int, int, int]:
    """Natural order: (position in WEIGHTS, layer, time as a number)."""
    weight, layer, t = parse_copy(name)
    return WEIGHTS.index(weight), layer, t


def sorted_names(names) -> list[str]:
    return sorted(set(names), key=sort_key)


def valid_wrt(layers: int) -> list[str]:
    """The weights W one may ask about in a network of ``layers`` layers."""
    if layers == 1:
        return list(WEIGHTS)
    return [f"{w}[{l}]" for w in LAYERED for l in range(1, layers + 1)] + ["w_o", "b_o"]


def _parse_wrt(wrt: object, layers: int) -> tuple[str, int]:
    """Return (weight, layer) of W; layer 0 for w_o / b_o."""
    expected = "one of " + ", ".join(valid_wrt(layers)) + f" (the network has {layers} layer"
    expected += "s)" if layers > 1 else "; w_x[1] etc. also accepted)"
    if not isinstance(wrt, str):
        fail("wrt", expected, repr(wrt))
    m = re.fullmatch(r"(w_x|w_a|b_a|w_o|b_o)(?:\[([1-9][0-9]*)\])?", wrt)
    if m is None:
        fail("wrt", expected, repr(wrt))
    weight, layer = m.group(1), m.group(2)
    if weight not in LAYERED:
        if layer is not None:  # the output weights are never layer-indexed
            fail("wrt", expected, repr(wrt))
        return weight, 0
    if layer is None:
        if layers > 1:  # a bare w_x is ambiguous with several layers
            fail("wrt", expected, repr(wrt))
        return weight, 1
    if int(layer) > layers:
        fail("wrt", expected, repr(wrt))
    return weight, int(layer)


# --------------------------------------------------------------------------- the network
@dataclass
class UnrolledNetwork:
    """The unrolled network: the cost C and one leaf tensor per weight copy (name -> leaf)."""

    cost: torch.Tensor
    copies: dict[str, torch.Tensor]


def unroll(length: int, *, output: str = "sequence", layers: int = 1, seed: int = 0) -> UnrolledNetwork:
    """Build the Elman RNN unrolled over ``length`` steps, one leaf per weight copy.

    Sizes (input m, hidden h, output k, each 2..4) and values are random from ``seed``;
    float64.  g is tanh in the recurrent layers and the logistic function at the output;
    C_t = 1/2 ||o_t - y_t||^2 with random targets y_t.
    """
    length = check_int(length, "length", minimum=1, maximum=MAX_LENGTH)
    layers = check_int(layers, "layers", minimum=1, maximum=MAX_LAYERS)
    output = check_choice(output, "output", OUTPUTS)
    gen = torch.Generator().manual_seed(seed)
    m, h, k = (int(s) for s in torch.randint(2, 5, (3,), generator=gen))

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    copies: dict[str, torch.Tensor] = {}

    def leaf(weight: str, t: int, layer: int, *shape: int) -> torch.Tensor:
        name = copy_name(weight, t, layer, layers)
        copies[name] = (0.5 * rand(*shape)).requires_grad_()
        return copies[name]

    # a^(l)_0 = 0 for every layer (a constant: it needs no gradient)
    a = [torch.zeros(h, dtype=torch.float64) for _ in range(layers)]
    costs = []
    for t in range(1, length + 1):
        below = rand(m)  # a^(0)_t = x_t  (shape (m,))
        for l in range(1, layers + 1):
            w_a = leaf("w_a", t, l, h, h)
            w_x = leaf("w_x", t, l, h, below.shape[0])
            b_a = leaf("b_a", t, l, h)
            # a^(l)_t = g(w^(a) . a^(l)_{t-1} + w^(x) . a^(l-1)_t + b^(a))   (shape (h,))
            a[l - 1] = torch.tanh(torch.mv(w_a, a[l - 1]) + torch.mv(w_x, below) + b_a)
            below = a[l - 1]
        if output == "sequence" or t == length:
            w_o = leaf("w_o", t, 0, k, h)
            b_o = leaf("b_o", t, 0, k)
            # o_t = g(w^(o) . a_t + b^(o))                                     (shape (k,))
            o = torch.sigmoid(torch.mv(w_o, below) + b_o)
            # C_t = 1/2 ||o_t - y_t||^2
            costs.append(0.5 * (o - rand(k)).pow(2).sum())
    # C = sum_t C_t  (one term when the output is "last")
    cost = torch.stack(costs).sum()
    return UnrolledNetwork(cost=cost, copies=copies)


# --------------------------------------------------------------------------- graph walk
# backward node of a product -> the attribute holding the tensor saved for each operand
_PRODUCTS = {"MvBackward0": ("_saved_self", "_saved_vec")}


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def _trace(net: UnrolledNetwork, targets: set[str]) -> tuple[set[str], set[str]]:
    """Walk C's backward graph; return (copies in ``targets`` receiving gradient, weight
    copies multiplied along a backward path from C to a target)."""
    by_storage = {_storage(v): name for name, v in net.copies.items()}
    assert len(by_storage) == len(net.copies), "weight copies must not share storage"

    def leaf_name(node) -> str | None:
        if type(node).__name__ != "AccumulateGrad":
            return None
        name = by_storage.get(_storage(node.variable))
        assert name is not None, "a leaf of the graph is not a weight copy"
        return name

    def children(node) -> list:
        return [c for c, _ in node.next_functions]  # None where the operand needs no grad

    # 1.+2. iterative post-order DFS from C: reaches[n] = n leads to a copy of W
    root = net.cost.grad_fn
    reaches: dict = {}
    nodes: list = []  # keeps the node wrappers alive, so identities stay valid
    stack = [(root, iter(children(root)))]
    reaches[root] = None  # None = visiting
    while stack:
        node, it = stack[-1]
        for child in it:
            if child is not None and child not in reaches:
                reaches[child] = None
                stack.append((child, iter(children(child))))
                break
        else:
            stack.pop()
            nodes.append(node)
            name = leaf_name(node)
            reaches[node] = (name in targets) or any(
                reaches[c] for c in children(node) if c is not None
            )

    # 3. copies of W whose AccumulateGrad node is reachable from C
    receives = {n for n in map(leaf_name, nodes) if n is not None and n in targets}

    # 4. products on a path C -> W: the step into operand j multiplies by the other operand
    multiplies: set[str] = set()
    for node in nodes:
        kind = type(node).__name__
        if kind not in _PRODUCTS:
            _check_no_weight_saved(node, by_storage)
            continue
        edges = children(node)
        for j, child in enumerate(edges):
            if child is None or not reaches[child]:
                continue
            other = getattr(node, _PRODUCTS[kind][1 - j])
            name = by_storage.get(_storage(other))
            if name is not None:
                # cross-check: the other operand's own edge is that copy's AccumulateGrad
                assert edges[1 - j] is not None and leaf_name(edges[1 - j]) == name
                multiplies.add(name)
    return receives, multiplies


def _check_no_weight_saved(node, by_storage: dict[int, str]) -> None:
    """Guard: only the product nodes known to the walk may multiply by a weight copy."""
    for attr in dir(node):
        if not attr.startswith("_saved_"):
            continue
        value = getattr(node, attr)
        if isinstance(value, torch.Tensor) and value.numel() and _storage(value) in by_storage:
            raise AssertionError(
                f"backward node {type(node).__name__} saved weight copy "
                f"{by_storage[_storage(value)]}; teach the walk this product before using it"
            )


# --------------------------------------------------------------------------- the answer
@dataclass(frozen=True)
class UnfoldResult:
    """Answer for one (T, output, L, W).  Every list is in natural order (see module doc).

    used:        the answer: receives | multiplies
    receives:    the copies of W that receive gradient (a path from C to them)
    multiplies:  weight copies multiplied along some backward path from C to a copy of W
    copies:      every weight copy in the unrolled network
    """

    length: int
    output: str
    layers: int
    wrt: str
    used: list[str]
    receives: list[str]
    multiplies: list[str]
    copies: list[str]


def unfold(length: int, *, output: str = "sequence", layers: int = 1, wrt: str = "w_x",
           seed: int = 0) -> UnfoldResult:
    """Unroll the network over ``length`` steps and read off which weight copies one BPTT
    step uses for dC/dW, W = ``wrt``.

    ``wrt``: with one layer one of :data:`WEIGHTS` (``w_x[1]`` etc. also accepted); with
    several, ``w_x[l]``, ``w_a[l]``, ``b_a[l]`` (l = 1..L), ``w_o`` or ``b_o``.  The
    result's ``wrt`` is the canonical name (``w_x[1]`` becomes ``w_x`` with one layer).
    ``seed`` only picks the random sizes and values; the answer does not depend on it.
    """
    length = check_int(length, "length", minimum=1, maximum=MAX_LENGTH)
    layers = check_int(layers, "layers", minimum=1, maximum=MAX_LAYERS)
    output = check_choice(output, "output", OUTPUTS)
    weight, layer = _parse_wrt(wrt, layers)
    canonical = weight if (layer == 0 or layers == 1) else f"{weight}[{layer}]"

    net = unroll(length, output=output, layers=layers, seed=seed)
    targets = {n for n in net.copies if parse_copy(n)[:2] == (weight, layer or 0)}
    receives, multiplies = _trace(net, targets)
    return UnfoldResult(
        length=length,
        output=output,
        layers=layers,
        wrt=canonical,
        used=sorted_names(receives | multiplies),
        receives=sorted_names(receives),
        multiplies=sorted_names(multiplies),
        copies=sorted_names(net.copies),
    )


def to_json(result: UnfoldResult) -> dict:
    """``{"length": T, "output": ..., "wrt": ..., "used": [sorted names]}``."""
    return {"length": result.length, "output": result.output, "wrt": result.wrt,
            "used": list(result.used)}


# --------------------------------------------------------------------------- drawings
def shown_times(length: int) -> list[int | None]:
    """Time steps drawn (in the text and in the PNG); ``None`` is the gap that abbreviates
    the middle of a long sequence."""
    if length <= MAX_DRAWN:
        return list(range(1, length + 1))
    return [1, 2, 3, None, length - 2, length - 1, length]


def output_times(result: UnfoldResult) -> set[int]:
    """The time steps that have an output unit: every t (output "sequence") or T alone."""
    return set(range(1, result.length + 1)) if result.output == "sequence" else {result.length}


def _name_list(names: list[str], abbreviate: bool) -> str:
    """Names separated by spaces; with ``abbreviate`` runs of >= 3 steps become NAME@a..b."""
    if not abbreviate:
        return " ".join(names)
    parts: list[str] = []
    i = 0
    while i < len(names):
        w, l, t = parse_copy(names[i])
        j = i
        while j + 1 < len(names) and parse_copy(names[j + 1]) == (w, l, t + (j + 1 - i)):
            j += 1
        if j - i >= 2:
            parts.append(f"{names[i]}..{t + j - i}")
        else:
            parts.extend(names[i:j + 1])
        i = j + 1
    return " ".join(parts)


def render_text(result: UnfoldResult) -> str:
    """Draw the unrolled network: columns are time steps; rows, top to bottom, the output,
    layers L..1 and the input.  Each node a_t carries its bias (``+ b_a@t``) on the line
    below and its input edge (``^ w_x@t``, from the node under it) below that; the edge
    ``-w_a@t->`` enters from the left (from a_0 = 0 at t = 1).  Used copies are written
    ``*name*``; the last line lists them with their count.  Beyond :data:`MAX_DRAWN` steps
    only t = 1..3 and T-2..T are drawn (``...`` between), and the lists shorten runs of
    consecutive steps to ``NAME@a..b``."""
    used = set(result.used)
    L, T = result.layers, result.length
    times = shown_times(T)
    outs = output_times(result)
    abbreviated = None in times

    def mark(name: str) -> str:
        return f"*{name}*" if name in used else f" {name} "

    def node(l: int, t: int) -> str:
        return f"a_{t}" if L == 1 else f"a^({l})_{t}"

    # each row: (label, start, [(edge, node) per shown column], is a row of nodes);
    # start = the a_0 column; a gap column (t is None) shows "..." on rows of nodes that
    # exist at every step
    rows: list[tuple[str, str, list[tuple[str, str]], bool]] = []

    def row(label: str, start: str, cell, gap: bool = False, nodes: bool = False) -> None:
        blank = ("", "...") if gap else ("", "")
        rows.append((label, start, [blank if t is None else cell(t) for t in times], nodes))

    row("", "", lambda t: ("", f"t={t}"), gap=True, nodes=True)
    o_name = (lambda t: f"o_{t}") if result.output == "sequence" else (lambda t: "o")
    row("output", "", lambda t: ("", o_name(t) if t in outs else ""),
        gap=result.output == "sequence", nodes=True)
    row("", "", lambda t: ("", f"+ {mark(copy_name('b_o', t))}" if t in outs else ""))
    row("", "", lambda t: ("", f"^ {mark(copy_name('w_o', t))}" if t in outs else ""))
    for l in range(L, 0, -1):
        row(f"layer {l}", "0",
            lambda t, l=l: (f"-{mark(copy_name('w_a', t, l, L))}-> ", node(l, t)),
            gap=True, nodes=True)
        row("", "", lambda t, l=l: ("", f"+ {mark(copy_name('b_a', t, l, L))}"))
        row("", "", lambda t, l=l: ("", f"^ {mark(copy_name('w_x', t, l, L))}"))
    row("input", "", lambda t: ("", f"x_{t}"), gap=True, nodes=True)

    # Column c = an edge part (the w_a arrow, only on rows of nodes) then the node part.
    # A text under a node (bias, input edge) may run on under the next column's edge part,
    # which is empty on those rows; it must end before the next column's node.
    n = len(times)
    label_w = max(len(r[0]) for r in rows) + 2
    start_w = max(len(r[1]) for r in rows) + 1
    edge_w = [max(len(r[2][c][0]) for r in rows) for c in range(n)]
    width = []
    for c in range(n):
        on_nodes = max(len(r[2][c][1]) for r in rows if r[3])
        under = max(len(r[2][c][1]) for r in rows if not r[3])
        spill = edge_w[c + 1] if c + 1 < n else 0
        width.append(edge_w[c] + max(on_nodes + 1, under + 1 - spill))

    lines = [
        f"dC/d{result.wrt} in one BPTT step: the network unfolded over T = {T} step"
        f"{'s' if T > 1 else ''}, output: {result.output}, {L} layer{'s' if L > 1 else ''}"
        + (" (middle steps not drawn)" if abbreviated else "")
    ]
    for label, start, cells, _ in rows:
        buf = list(label.ljust(label_w) + start.ljust(start_w) + " " * (sum(width) + 40))
        x = label_w + start_w
        for c, (edge, nd) in enumerate(cells):
            for i, ch in enumerate(edge + " " * (edge_w[c] - len(edge)) + nd):
                assert buf[x + i] == " " or ch == " ", "text overlaps in the drawing"
                buf[x + i] = ch if ch != " " else buf[x + i]
            x += width[c]
        lines.append("".join(buf).rstrip())
    lines.append(
        f"legend: *name* = copy used for dC/d{result.wrt} (receives gradient, or multiplies "
        f"along a backward path from C to {result.wrt}); plain name = not used; 0 = a_0"
    )
    lines.append(f"receive gradient ({len(result.receives)}): "
                 + _name_list(result.receives, abbreviated))
    lines.append(f"multiplied along the paths ({len(result.multiplies)}): "
                 + (_name_list(result.multiplies, abbreviated) or "none"))
    lines.append(f"used ({len(result.used)}): " + _name_list(result.used, abbreviated))
    return "\n".join(lines)
