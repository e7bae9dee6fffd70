"""`seqlab unfold`: which weight copies one BPTT step uses for dC/dW.

The module reads its answer off the autograd graph of an actually unrolled network.  Here
the expected answers are written down independently, from the lecture's chain-rule sums
("Backpropogation Through Time"), as explicit sets.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from seqlab.cli import main
from seqlab.recurrent import unfold as uf
from seqlab.recurrent.unfold import WEIGHTS, render_text, to_json, unfold

OUTPUTS = ("last", "sequence")


# --------------------------------------------------------------------------- expected sets
def copies(weight: str, times, layer: int | None = None) -> set[str]:
    """{weight@t for t in times}, or {weight[layer]@t ...} when a layer is given."""
    tag = weight if layer is None else f"{weight}[{layer}]"
    return {f"{tag}@{t}" for t in times}


def output_times(T: int, output: str) -> range:
    # "last": one output o = g(w_o . a_T + b_o), so the only output copies are w_o@T, b_o@T.
    # "sequence": o_t = g(w_o . a_t + b_o) for every t, so copies w_o@1..T, b_o@1..T.
    return range(1, T + 1) if output == "sequence" else range(T, T + 1)


def expected_one_layer(T: int, output: str, W: str) -> tuple[set[str], set[str]]:
    """(receives, multiplies) for one layer, from the lecture's sums.

    Lecture, output "last":
      dC/dw_x = sum_{t=1..T} dC/do do/da_T da_T/da_{T-1} ... da_{t+1}/da_t da_t/dw_x
    * the term for t ends in da_t/dw_x: the copy w_x@t receives gradient, t = 1..T;
    * do/da_T = g' w_o@T: the output weight copy multiplies;
    * da_{s}/da_{s-1} = g' w_a@s multiplies, for s = t+1..T; over all terms s = 2..T
      (w_a@1 multiplies a_0 = 0, which leads to no copy of W: it is not on a path);
    * the bias additions and g' multiply by no weight.
    Output "sequence", C = sum_s C_s: the same sum for each o_s, so every w_o@s multiplies
    (a_s always leads to w_x@s); the w_a copies are again w_a@2..T.
    """
    outs = output_times(T, output)
    w_o_path = copies("w_o", outs)
    through_time = copies("w_a", range(2, T + 1))
    if W in ("w_x", "w_a", "b_a"):
        # dC/dW = sum_t (... da_{t+1}/da_t) da_t/dW: W@t receives for t = 1..T -- for w_a
        # this includes w_a@1 (the last term of the lecture's sum, da_1/dw_a, with a_0 = 0);
        # multiplied: w_o on the way down from the outputs, w_a@2..T on the way back in time.
        return copies(W, range(1, T + 1)), w_o_path | through_time
    # W = w_o or b_o: dC/dw_o = dC/do do/dw_o; the path C -> o -> w_o goes through g' only
    # (do/dw_o multiplies by a_T, an activation), so only the copies of W receive, nothing
    # multiplies.
    return copies(W, outs), set()


def expected_layers(T: int, output: str, L: int, W: str) -> tuple[set[str], set[str]]:
    """(receives, multiplies) for L stacked layers, from the chain rule.

    a^(k)_t = g(w_a[k]@t . a^(k)_{t-1} + w_x[k]@t . a^(k-1)_t + b_a[k]@t), a^(0)_t = x_t.
    Backward paths go from an output o_s down to a^(L)_s (multiplying w_o@s), back in time
    within a layer (a^(k)_t -> a^(k)_{t-1} multiplies w_a[k]@t) and down a layer at the same
    step (a^(k)_t -> a^(k-1)_t multiplies w_x[k]@t).  Every a^(k)_t is reached from C.
    For W = w_x[l], w_a[l] or b_a[l] (its copy at step s feeds a^(l)_s):
    * a^(k)_t leads to a copy of W  iff  k >= l and t >= 1 (not a^(k)_0 = 0, not x_t);
    * so w_a[k]@t multiplies iff k >= l and t - 1 >= 1: k = l..L, t = 2..T;
    * w_x[k]@t multiplies iff k - 1 >= l: k = l+1..L, t = 1..T;
    * w_o@s multiplies for every output s (a^(L)_s leads to W@1 at least);
    * W@1..T receive gradient.
    For W = w_o or b_o only their copies receive, nothing multiplies (as with one layer).
    """
    outs = output_times(T, output)
    m = re.fullmatch(r"(w_x|w_a|b_a)\[(\d)\]", W)
    if m is None:
        return copies(W, outs), set()
    weight, l = m.group(1), int(m.group(2))
    multiplies = copies("w_o", outs)
    for k in range(l, L + 1):
        multiplies |= copies("w_a", range(2, T + 1), k)
    for k in range(l + 1, L + 1):
        multiplies |= copies("w_x", range(1, T + 1), k)
    return copies(weight, range(1, T + 1), l), multiplies


# --------------------------------------------------------------------------- one layer
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("W", WEIGHTS)
@pytest.mark.parametrize("T", range(1, 7))
def test_one_layer_matches_the_lectures_sums(T, output, W):
    res = unfold(T, output=output, wrt=W)
    receives, multiplies = expected_one_layer(T, output, W)
    assert set(res.receives) == receives
    assert set(res.multiplies) == multiplies
    assert set(res.used) == receives | multiplies
    assert len(res.used) == len(set(res.used))
    # every copy of the unrolled network: w_x, w_a, b_a at each step; w_o, b_o per output
    outs = output_times(T, output)
    assert set(res.copies) == (copies("w_x", range(1, T + 1)) | copies("w_a", range(1, T + 1))
                               | copies("b_a", range(1, T + 1)) | copies("w_o", outs)
                               | copies("b_o", outs))
    assert set(res.used) <= set(res.copies)
    assert (res.length, res.output, res.layers, res.wrt) == (T, output, 1, W)


def test_literal_answers_of_the_discussion_question():
    # T = 3, one output at the end: dC/dw_x = dC/do do/da_3 [da_3/dw_x + da_3/da_2 da_2/dw_x
    # + da_3/da_2 da_2/da_1 da_1/dw_x]: w_x@1,2,3 receive; w_o@3, w_a@3, w_a@2 multiply.
    res = unfold(3, output="last", wrt="w_x")
    assert res.used == ["w_x@1", "w_x@2", "w_x@3", "w_a@2", "w_a@3", "w_o@3"]
    # T = 2, output a sequence: C = C_1 + C_2; dC/dw_x = dC_1/do_1 do_1/da_1 da_1/dw_x
    # + dC_2/do_2 do_2/da_2 [da_2/dw_x + da_2/da_1 da_1/dw_x]
    res = unfold(2, output="sequence", wrt="w_x")
    assert res.used == ["w_x@1", "w_x@2", "w_a@2", "w_o@1", "w_o@2"]
    # T = 2, dC/dw_a: w_a@1 receives (da_1/dw_a = g' a_0) and w_a@2 both receives and
    # multiplies (da_2/da_1)
    res = unfold(2, output="last", wrt="w_a")
    assert res.receives == ["w_a@1", "w_a@2"]
    assert res.multiplies == ["w_a@2", "w_o@2"]
    assert res.used == ["w_a@1", "w_a@2", "w_o@2"]
    # output weights: nothing but their own copies
    assert unfold(4, output="sequence", wrt="b_o").used == ["b_o@1", "b_o@2", "b_o@3", "b_o@4"]
    assert unfold(4, output="last", wrt="w_o").used == ["w_o@4"]
    # one layer: w_x[1] is the same as w_x, reported by its canonical name
    res = unfold(3, output="last", wrt="w_x[1]")
    assert res.wrt == "w_x" and res.used == unfold(3, output="last", wrt="w_x").used


# --------------------------------------------------------------------------- layers
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("L", [2, 3])
@pytest.mark.parametrize("T", range(1, 5))
def test_stacked_layers_match_the_chain_rule(T, L, output):
    for W in uf.valid_wrt(L):
        res = unfold(T, output=output, layers=L, wrt=W)
        receives, multiplies = expected_layers(T, output, L, W)
        assert set(res.receives) == receives, W
        assert set(res.multiplies) == multiplies, W
        assert set(res.used) == receives | multiplies, W
        assert len(res.copies) == 3 * L * T + 2 * len(output_times(T, output))


def test_literal_answer_with_two_layers():
    # T = 2, L = 2, one output: paths from o go down to a^(2)_2, back to a^(2)_1 (w_a[2]@2)
    # and down to layer 1 (w_x[2]@2, w_x[2]@1), back in layer 1 (w_a[1]@2).
    res = unfold(2, output="last", layers=2, wrt="w_x[1]")
    assert res.used == ["w_x[1]@1", "w_x[1]@2", "w_x[2]@1", "w_x[2]@2",
                        "w_a[1]@2", "w_a[2]@2", "w_o@2"]
    # W in the top layer: layer 1 leads to no copy of W, so no layer-1 weight multiplies
    res = unfold(2, output="last", layers=2, wrt="b_a[2]")
    assert res.used == ["w_a[2]@2", "b_a[2]@1", "b_a[2]@2", "w_o@2"]


# --------------------------------------------------------------------------- the graph itself
@pytest.mark.parametrize("output", OUTPUTS)
def test_receives_agrees_with_autograd_gradients(output):
    """A copy receives gradient exactly when torch.autograd.grad returns a tensor for it."""
    net = uf.unroll(4, output=output, layers=2, seed=3)
    names = list(net.copies)
    grads = torch.autograd.grad(net.cost, [net.copies[n] for n in names], allow_unused=True)
    has_grad = {n for n, g in zip(names, grads) if g is not None}
    received = set()
    for W in uf.valid_wrt(2):
        received |= set(unfold(4, output=output, layers=2, wrt=W, seed=3).receives)
    assert received == has_grad == set(names)
    # the product w_a@1 . a_0 is in the graph; its gradient is zero because a_0 = 0
    g = dict(zip(names, grads))
    assert torch.count_nonzero(g["w_a[1]@1"]) == 0
    assert torch.count_nonzero(g["w_a[1]@2"]) > 0


def test_answer_does_not_depend_on_sizes_or_values():
    for seed in (0, 1, 7):
        assert unfold(5, output="sequence", layers=2, wrt="w_a[1]", seed=seed).used == \
            unfold(5, output="sequence", layers=2, wrt="w_a[1]").used


def test_unrolled_network_has_one_leaf_per_copy():
    net = uf.unroll(3, output="last", layers=1)
    assert net.cost.dtype == torch.float64 and net.cost.dim() == 0
    assert all(v.is_leaf and v.requires_grad for v in net.copies.values())
    ptrs = {v.untyped_storage().data_ptr() for v in net.copies.values()}
    assert len(ptrs) == len(net.copies) == 3 * 3 + 2


def test_walk_refuses_a_product_it_does_not_know():
    # a weight copy saved by an elementwise product (MulBackward0) is not understood by the
    # walk: it must fail loudly instead of silently ignoring the multiplication
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    v = torch.randn(3, dtype=torch.float64, requires_grad=True)
    cost = (w * v).sum()
    net = uf.UnrolledNetwork(cost=cost, copies={"w_a@1": w, "w_x@1": v})
    with pytest.raises(AssertionError, match=r"MulBackward0 saved weight copy w_(a|x)@1"):
        uf._trace(net, {"w_a@1"})


def test_natural_sort_order():
    res = unfold(12, output="last", wrt="w_a")
    assert res.used[:3] == ["w_a@1", "w_a@2", "w_a@3"]
    assert res.used.index("w_a@2") < res.used.index("w_a@10")
    assert res.used[-1] == "w_o@12"
    names = ["w_o@1", "b_a[2]@1", "w_x[2]@10", "w_x[1]@2", "w_x[2]@9", "b_o@1", "w_a[1]@1"]
    assert uf.sorted_names(names) == ["w_x[1]@2", "w_x[2]@9", "w_x[2]@10", "w_a[1]@1",
                                      "b_a[2]@1", "w_o@1", "b_o@1"]


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(length=0), "length: expected an integer >= 1, received 0"),
        (dict(length=201), "length: expected an integer <= 200, received 201"),
        (dict(length=2.0), "length: expected an integer, received 2.0"),
        (dict(length=3, layers=0), "layers: expected an integer >= 1, received 0"),
        (dict(length=3, layers=9), "layers: expected an integer <= 8, received 9"),
        (dict(length=3, output="all"), "output: expected one of 'last', 'sequence', received 'all'"),
        (dict(length=3, wrt="w_q"), "received 'w_q'"),
        (dict(length=3, wrt="w_x[2]"), "received 'w_x[2]'"),
        (dict(length=3, wrt="w_o[1]"), "received 'w_o[1]'"),
        (dict(length=3, wrt=None), "received None"),
        (dict(length=3, layers=2, wrt="w_x"), "received 'w_x'"),
        (dict(length=3, layers=2, wrt="b_a[3]"), "received 'b_a[3]'"),
        (dict(length=3, layers=2, wrt="w_a[0]"), "received 'w_a[0]'"),
    ],
)
def test_bad_input_raises_value_error_naming_expected_and_received(kwargs, fragment):
    with pytest.raises(ValueError) as info:
        unfold(**kwargs)
    msg = str(info.value)
    assert fragment in msg and "expected" in msg and "\n" not in msg


def test_bare_weight_with_layers_lists_the_valid_names():
    with pytest.raises(ValueError) as info:
        unfold(3, layers=2, wrt="w_x")
    msg = str(info.value)
    for name in ("w_x[1]", "w_x[2]", "w_a[1]", "w_a[2]", "b_a[1]", "b_a[2]", "w_o", "b_o"):
        assert name in msg
    assert "2 layers" in msg


def test_largest_allowed_network_is_answered():
    res = unfold(200, output="last", layers=2, wrt="w_x[2]")
    assert len(res.receives) == 200 and "w_a[2]@200" in res.used and "w_a[1]@2" not in res.used


# --------------------------------------------------------------------------- output formats
def test_to_json_format():
    res = unfold(3, output="last", wrt="w_x")
    out = to_json(res)
    assert out == {"length": 3, "output": "last", "wrt": "w_x",
                   "used": ["w_x@1", "w_x@2", "w_x@3", "w_a@2", "w_a@3", "w_o@3"]}
    assert json.loads(json.dumps(out)) == out


_TOKEN = re.compile(r"\*?(?:w_x|w_a|b_a|w_o|b_o)(?:\[\d+\])?@\d+\*?")


def _drawing(text: str) -> list[str]:
    lines = text.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("legend:"))
    return lines[1:end]


@pytest.mark.parametrize(
    "T, output, L, W",
    [(1, "last", 1, "w_x"), (3, "last", 1, "w_x"), (5, "sequence", 1, "w_a"),
     (8, "sequence", 1, "b_a"), (2, "sequence", 1, "w_o"), (4, "last", 2, "w_x[1]"),
     (3, "sequence", 3, "w_a[2]"), (8, "last", 2, "b_o")],
)
def test_render_text_marks_exactly_the_used_copies(T, output, L, W):
    res = unfold(T, output=output, layers=L, wrt=W)
    text = render_text(res)
    tokens = [tok for line in _drawing(text) for tok in _TOKEN.findall(line)]
    marked = [tok.strip("*") for tok in tokens if tok.startswith("*")]
    plain = [tok for tok in tokens if "*" not in tok]
    assert all(tok.startswith("*") == tok.endswith("*") for tok in tokens)
    assert sorted(marked) == sorted(res.used)          # each used copy drawn once, marked
    assert set(marked) | set(plain) == set(res.copies)  # every copy drawn
    assert len(tokens) == len(res.copies)
    assert not set(marked) & set(plain)
    assert any(line.startswith("legend:") for line in text.splitlines())
    assert text.splitlines()[-1] == f"used ({len(res.used)}): " + " ".join(res.used)
    # columns are the time steps; rows the output, the layers and the input
    header = _drawing(text)[0]
    assert [int(t) for t in re.findall(r"t=(\d+)", header)] == list(range(1, T + 1))
    labels = [line.split()[0] for line in _drawing(text) if line and not line.startswith(" ")]
    assert labels == ["output"] + ["layer"] * L + ["input"]


def test_render_text_abbreviates_long_sequences():
    res = unfold(12, output="sequence", wrt="w_a")
    text = render_text(res)
    header = _drawing(text)[0]
    assert re.findall(r"t=(\d+)", header) == ["1", "2", "3", "10", "11", "12"]
    assert "..." in header
    assert text.splitlines()[-1] == "used (24): w_a@1..12 w_o@1..12"


# --------------------------------------------------------------------------- command line
def test_cli_text(capsys):
    assert main(["unfold", "--length", "3", "--output", "last", "--wrt", "w_x"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "used (6): w_x@1 w_x@2 w_x@3 w_a@2 w_a@3 w_o@3"
    assert "*w_a@2*" in out and " w_a@1 " in out


def test_cli_json(capsys):
    assert main(["unfold", "-T", "2", "--wrt", "w_a", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == {"length": 2, "output": "sequence", "wrt": "w_a",
                               "used": ["w_a@1", "w_a@2", "w_o@1", "w_o@2"]}


def test_cli_layers_json(capsys):
    assert main(["unfold", "-T", "2", "--layers", "2", "--wrt", "w_x[1]", "--output", "last",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["used"] == unfold(
        2, output="last", layers=2, wrt="w_x[1]").used


def test_cli_png(capsys, tmp_path):
    path = tmp_path / "u.png"
    assert main(["unfold", "-T", "4", "--wrt", "b_a", "--png", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"wrote {path}"
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--length", "0"], "length: expected an integer >= 1, received 0"),
        (["--length", "3", "--wrt", "w_z"], "received 'w_z'"),
        (["--length", "3", "--layers", "2", "--wrt", "w_x"], "received 'w_x'"),
        (["--length", "3", "--layers", "0"], "layers: expected an integer >= 1, received 0"),
    ],
)
def test_cli_errors(capsys, argv, fragment):
    assert main(["unfold", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.splitlines()
    assert len(err) == 1 and err[0].startswith("seqlab: error: ")
    assert fragment in err[0] and "expected" in err[0]


def test_cli_error_lists_the_valid_names_with_layers(capsys):
    assert main(["unfold", "--length", "3", "--layers", "2", "--wrt", "w_x"]) == 2
    err = capsys.readouterr().err
    assert "w_x[1]" in err and "w_x[2]" in err and "received 'w_x'" in err
