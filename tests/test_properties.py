"""Property-based tests of every public model constructor and forward (hypothesis).

Each test draws constructor arguments and inputs, some valid and some not (zero, negative,
float, bool, None, string sizes; tensors of the wrong rank, width or dtype, complex, bool and
float token ids, empty batches, out-of-range ids, NaN), and knows which ones it made invalid.
The property: with every argument valid the call returns a result of the right shape, finite;
with some invalid it raises a ``ValueError`` in the project's format ("what: expected X,
received Y") whose "what" names one of the invalid arguments -- never an error from deep
inside torch (a shape mismatch in a matrix product, an IndexError from an embedding).

Sizes stay small so that valid draws are cheap; sizes too large for memory are refused by
``seqlab.memory`` (tests/test_memory.py). The number of examples comes from the hypothesis
profile (tests/conftest.py): "fast" in ``make test``, "slow" in ``make test-slow``.
"""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

# --------------------------------------------------------------------------- helpers

NOT_INTS = [None, "3", 2.5, 3.0, True, False, float("nan"), [2]]
NOT_NUMBERS = [None, "0.1", True, [0.1], float("nan")]


def bad_int(minimum: int = 1):
    """Values an integer argument >= ``minimum`` must refuse."""
    return st.one_of(st.sampled_from(NOT_INTS), st.integers(minimum - 100, minimum - 1))


def arg(valid, invalid, name: str):
    """(value, name if invalid else None): valid about three times in four."""
    return st.one_of(valid.map(lambda v: (v, None)), valid.map(lambda v: (v, None)), valid.map(lambda v: (v, None)),
                     invalid.map(lambda v: (v, name)))


@st.composite
def some_invalid(draw, spec, *, invalid=True):
    """Fields from ``spec`` [(name, valid strategy, invalid strategy)]: all valid in about half
    the draws (always if not ``invalid``), else one invalid field (now and then two). Returns
    (fields, invalid names)."""
    names = [name for name, *_ in spec]
    bad = set()
    if invalid and draw(st.booleans()):
        bad.add(draw(st.sampled_from(names)))
        if draw(st.integers(0, 3)) == 0:
            bad.add(draw(st.sampled_from(names)))
    fields = {name: draw(invalid if name in bad else valid) for name, valid, invalid in spec}
    return fields, sorted(bad)


def named(msg: str) -> list[str]:
    """The names a message of the project's format leads with: "a, b: expected ..." -> [a, b];
    "hidden_size=5: ..." -> [hidden_size]."""
    head = msg.split(": expected", 1)[0]
    return [re.split(r"[=\[( ]", part.strip(), maxsplit=1)[0] for part in head.split(",")]


def expect(call, bad, also: dict[str, tuple[str, ...]] | None = None):
    """Run ``call``. ``bad``: the names of the invalid arguments (None entries ignored). All valid:
    return the result. Some invalid: it must raise a ValueError "what: expected X, received Y"
    whose "what" is one of them (``also`` maps an argument to other names its message may use)."""
    bad = {b for b in bad if b}
    if not bad:
        return call()
    with pytest.raises(ValueError) as info:
        call()
    msg = str(info.value)
    assert ": expected " in msg and ", received " in msg, msg
    allowed = set(bad)
    for b in bad:
        allowed.update((also or {}).get(b, ()))
    assert set(named(msg)) & allowed, f"{msg!r} names none of {sorted(allowed)}"
    return None


def finite(*ts: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in ts)


seeds = st.integers(0, 2**16)


def _randn(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    if dtype.is_complex:
        return torch.randn(*shape, dtype=dtype, generator=g)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


# kinds of input an argument of a given shape may be drawn as; "good" is the valid one
FLOAT_KINDS = ("rank+", "rank-", "width", "int", "bool", "complex", "nan", "inf", "empty", "list", "none")


@st.composite
def float_input(draw, shape, *, kinds=FLOAT_KINDS, dtype=torch.float32, width_axis=-1, batch_axis=0,
                low=None, high=None):
    """(tensor or other value, kind): a floating tensor of ``shape`` ("good"), or one of ``kinds``
    (wrong rank, width, dtype, NaN, an empty batch, a list, None). ``low``/``high``: clamp the
    good values into a range (images in [0, 1])."""
    kind = draw(st.one_of(st.just("good"), st.just("good"), st.sampled_from(kinds))) if kinds else "good"
    seed = draw(seeds)
    shape = list(shape)
    if kind == "rank+":
        shape = [2] + shape
    elif kind == "rank-":
        shape = shape[1:]
    elif kind == "width":
        shape[width_axis] += draw(st.sampled_from([1, 2] if shape[width_axis] <= 1 else [-1, 1]))
    elif kind == "empty":
        shape[batch_axis] = 0
    x = _randn(shape, dtype, seed)
    if low is not None:
        x = x.sigmoid() * (high - low) + low
    if kind == "int":
        x = (x * 3).round().to(torch.int64)
    elif kind == "bool":
        x = x > 0
    elif kind == "complex":
        x = torch.complex(x, x)
    elif kind in ("nan", "inf"):
        x = x.clone()
        x.view(-1)[draw(st.integers(0, max(0, x.numel() - 1)))] = float("nan") if kind == "nan" else float("inf")
    elif kind == "float64":
        x = x.double()
    elif kind == "list":
        return x.tolist(), kind
    elif kind == "none":
        return None, kind
    return x, kind


ID_KINDS = ("float", "bool", "complex", "high", "negative", "rank+", "rank-", "empty", "empty-time", "list")


@st.composite
def token_ids(draw, batch, time, vocab, *, kinds=ID_KINDS):
    """(ids, kind): (batch, time) int64 ids in [0, vocab) ("good"; int32 and uint8 too), or a
    bad kind: float, bool or complex ids, ids >= vocab or < 0, wrong rank, empty."""
    kind = draw(st.one_of(st.just("good"), st.just("good"), st.sampled_from(kinds)))
    g = torch.Generator().manual_seed(draw(seeds))
    shape = [batch, time]
    if kind == "rank+":
        shape = [2, batch, time]
    elif kind == "rank-":
        shape = [time]
    elif kind == "empty":
        shape = [0, time]
    elif kind == "empty-time":
        shape = [batch, 0]
    ids = torch.randint(0, vocab, shape, generator=g)
    if kind == "good":
        ids = ids.to(draw(st.sampled_from([torch.int64, torch.int64, torch.int32] + ([torch.uint8] if vocab <= 256
                                                                                     else []))))
    elif kind == "float":
        ids = ids.float()
    elif kind == "bool":
        ids = ids > 0
    elif kind == "complex":
        ids = torch.complex(ids.float(), torch.zeros_like(ids, dtype=torch.float32))
    elif kind == "high" and ids.numel():
        ids.view(-1)[0] = vocab + draw(st.integers(0, 5))
    elif kind == "negative" and ids.numel():
        ids.view(-1)[-1] = -draw(st.integers(1, 5))
    elif kind == "list":
        return ids.tolist(), kind
    return ids, kind


# --------------------------------------------------------------------------- recurrent

from seqlab.recurrent import GRU, LSTM, RNN  # noqa: E402
from seqlab.recurrent.charlm import CharLM, CharLMConfig  # noqa: E402
from seqlab.recurrent.gru import GRUConfig, GRULayer  # noqa: E402
from seqlab.recurrent.lstm import LSTMConfig, LSTMLayer  # noqa: E402
from seqlab.recurrent.network import SequenceNetwork  # noqa: E402
from seqlab.recurrent.rnn import ElmanLayer, RNNConfig  # noqa: E402

STACKS = {"rnn": (RNN, RNNConfig), "lstm": (LSTM, LSTMConfig), "gru": (GRU, GRUConfig)}
small = st.integers(1, 5)
probability = st.floats(0.0, 0.9)
bad_probability = st.sampled_from([-0.1, 1.0, 1.5, float("inf"), *NOT_NUMBERS])
bad_bool = st.sampled_from([None, 0, 1, "True", 1.0])


@st.composite
def stack_config(draw, cell):
    """Fields of an RNN/LSTM/GRU config, some invalid: (fields, names of the invalid ones)."""
    extra = {"rnn": ("nonlinearity", st.sampled_from(["tanh", "relu"]), st.sampled_from(["sigmoid", None, 1, ""])),
             "lstm": ("forget_bias", st.floats(-3, 3), st.sampled_from([float("nan"), float("inf"), None, "1"])),
             "gru": ("reset", st.sampled_from(["before", "after"]), st.sampled_from(["both", None, True]))}[cell]
    return draw(some_invalid([("input_size", small, bad_int(1)), ("hidden_size", small, bad_int(1)),
                              ("num_layers", st.integers(1, 3), bad_int(1)),
                              ("dropout", probability, bad_probability), ("fused", st.booleans(), bad_bool), extra]))


@pytest.mark.parametrize("cell", STACKS)
@given(data=st.data())
def test_recurrent_stack(cell, data):
    cls, config_cls = STACKS[cell]
    fields, bad = data.draw(stack_config(cell))
    model = expect(lambda: cls(**fields), bad)
    cfg = expect(lambda: config_cls(**fields), bad)
    if model is None:
        return
    assert cfg == model.config
    c = model.config
    B, T = data.draw(small), data.draw(small)
    x, kind = data.draw(float_input((B, T, c.input_size), kinds=FLOAT_KINDS + ("float64",)))
    if kind == "float64":
        x = x.double() if isinstance(x, torch.Tensor) else x
    lengths, lengths_bad = data.draw(arg(st.lists(st.integers(1, T), min_size=B, max_size=B),
                                         st.one_of(st.lists(st.integers(T + 1, T + 3), min_size=B, max_size=B),
                                                   st.lists(st.integers(-2, 0), min_size=B, max_size=B),
                                                   st.lists(st.integers(1, T), min_size=B + 1, max_size=B + 2),
                                                   st.just([1.5] * B), st.just("3")), "lengths"))
    if not data.draw(st.booleans()):
        lengths, lengths_bad = None, None
    bad_x = "x" if kind != "good" else None
    if bad_x:
        lengths, lengths_bad = None, None  # one problem at a time: which one is reported first is not specified
    out = expect(lambda: model(x, lengths), [bad_x, lengths_bad])
    if out is None:
        return
    outputs, state = out
    assert outputs.shape == (B, T, c.hidden_size)
    states = state if isinstance(state, tuple) else (state,)
    assert all(s.shape == (c.num_layers, B, c.hidden_size) for s in states)
    assert finite(outputs, *states)


@pytest.mark.parametrize("cell", STACKS)
@given(data=st.data())
def test_recurrent_initial_state(cell, data):
    cls, _ = STACKS[cell]
    H, L, B = data.draw(small), data.draw(st.integers(1, 2)), data.draw(small)
    model = cls(input_size=2, hidden_size=H, num_layers=L)
    one, kind = data.draw(float_input((L, B, H), width_axis=-1, batch_axis=1))
    state = (one, one) if cell == "lstm" and kind != "none" else one
    out = expect(lambda: model(torch.randn(B, 3, 2), state=state),
                 ["state" if kind not in ("good", "none") else None], also={"state": ("state h_0",)})
    if out is not None:
        assert out[0].shape == (B, 3, H) and finite(out[0])


LAYERS = {"rnn": (ElmanLayer, ("tanh",)), "lstm": (LSTMLayer, (0.0,)), "gru": (GRULayer, ("before",))}


@pytest.mark.parametrize("cell", LAYERS)
@given(data=st.data())
def test_recurrent_layer(cell, data):
    """The layers (one recurrent layer of a stack): sizes checked by the constructor, and the
    readable and the fused path give the same (B, T, H) outputs and (B, H) final state."""
    layer_cls, extra = LAYERS[cell]
    I, ib = data.draw(arg(small, bad_int(1), "input_size"))
    H, hb = data.draw(arg(small, bad_int(1), "hidden_size"))
    layer = expect(lambda: layer_cls(I, H, *extra), [ib, hb])
    if layer is None:
        return
    B, T = data.draw(small), data.draw(small)
    x = torch.randn(B, T, I)
    zeros = torch.zeros(B, H)
    state = (zeros, zeros) if cell == "lstm" else (zeros,)
    with torch.no_grad():
        out_r, final_r = layer.reference(x, state, None)
        out_f, final_f = layer.fused(x, state, None)
    assert out_r.shape == out_f.shape == (B, T, H)
    torch.testing.assert_close(out_r, out_f, atol=1e-5, rtol=1e-4)
    for a, b in zip(final_r, final_f):
        assert a.shape == (B, H)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@given(data=st.data())
def test_sequence_network(data):
    fields, bad = data.draw(some_invalid([
        ("cell", st.sampled_from(list(STACKS)), st.sampled_from(["transformer", None])),
        ("input_size", small, bad_int(1)), ("hidden_size", small, bad_int(1)), ("output_size", small, bad_int(1)),
        ("output", st.sampled_from(["last", "sequence"]), st.sampled_from(["all", None])),
        ("output_activation", st.sampled_from(["identity", "sigmoid", "tanh", "softmax"]),
         st.sampled_from(["relu", None]))]))
    net = expect(lambda: SequenceNetwork(**fields), bad)
    if net is None:
        return
    c = net.config
    B, T = data.draw(small), data.draw(small)
    x, kind = data.draw(float_input((B, T, c.input_size)))
    lengths = data.draw(st.one_of(st.none(), st.lists(st.integers(1, T), min_size=B, max_size=B)))
    o = expect(lambda: net(x, lengths), ["x" if kind != "good" else None])
    if o is not None:
        assert o.shape == ((B, c.output_size) if c.output == "last" else (B, T, c.output_size))
        assert finite(o)


@given(data=st.data())
def test_charlm(data):
    fields, bad = data.draw(some_invalid([
        ("cell", st.sampled_from(list(STACKS)), st.sampled_from(["transformer", None])),
        ("vocab_size", st.integers(2, 12), bad_int(1)), ("hidden_size", small, bad_int(1)),
        ("num_layers", st.integers(1, 2), bad_int(1)), ("dropout", probability, bad_probability),
        ("fused", st.booleans(), bad_bool)]))
    model = expect(lambda: CharLM(**fields), bad)
    cfg = expect(lambda: CharLMConfig(**fields), bad)
    if model is None:
        return
    assert cfg == model.config
    B, T, V = data.draw(small), data.draw(small), model.config.vocab_size
    ids, kind = data.draw(token_ids(B, T, V))
    out = expect(lambda: model(ids), ["ids" if kind != "good" else None])
    if out is not None:
        logits, _ = out
        assert logits.shape == (B, T, V) and finite(logits)


# --------------------------------------------------------------------------- energy

from seqlab.energy import (BoltzmannConfig, BoltzmannMachine, HopfieldConfig, HopfieldNetwork,  # noqa: E402
                           ModernHopfield, RBM, RBMConfig, capacity_curve, lse)

BIPOLAR_KINDS = ("rank+", "width", "values", "complex", "nan", "empty", "none", "string")


@st.composite
def bipolar_input(draw, shape, *, binary=False, kinds=BIPOLAR_KINDS, forms=("float64", "float32", "list", "bool")):
    """(states, kind): +-1 states (or 0/1 with ``binary``; bool too) of ``shape`` in one of
    ``forms``, or a bad kind ("half": a value 0.5, valid where probabilities are)."""
    kind = draw(st.one_of(st.just("good"), st.just("good"), st.sampled_from(kinds)))
    g = torch.Generator().manual_seed(draw(seeds))
    shape = list(shape)
    if kind == "rank+":
        shape = [2, 2, *shape[-1:]]
    elif kind == "width":
        shape[-1] += 1
    elif kind == "empty":
        shape[0] = 0
    x = torch.randint(0, 2, shape, generator=g).double()
    if not binary:
        x = 2 * x - 1
    if kind == "good":
        as_ = draw(st.sampled_from([f for f in forms if binary or f != "bool"]))
        x = x.tolist() if as_ == "list" else (x > 0) if as_ == "bool" else x.to(getattr(torch, as_))
    elif kind in ("values", "nan") and x.numel() == 0:
        kind = "good"  # nothing to change in an empty tensor of the right shape
    elif kind == "values":
        x.view(-1)[0] = value = draw(st.sampled_from([0.5, 2.0, -3.0]))
        kind = "half" if value == 0.5 else kind
    elif kind == "complex":
        x = torch.complex(x, torch.zeros_like(x))
    elif kind == "nan":
        x.view(-1)[-1] = float("nan")
    elif kind == "none":
        x = None
    elif kind == "string":
        x = "1, -1"
    return x, kind


@pytest.mark.filterwarnings("ignore:storing P = .* patterns in N = .* units")
@given(data=st.data())
def test_hopfield_network(data):
    N, nb = data.draw(arg(st.integers(1, 8), bad_int(1), "n_units"))
    rule, rb = data.draw(arg(st.sampled_from(["hebbian", "pseudo-inverse", "storkey"]),
                             st.sampled_from(["oja", None, 1]), "rule"))
    normalize, zb = data.draw(arg(st.booleans(), bad_bool, "normalize"))
    n = N if not nb else 4
    bias, bias_kind = data.draw(float_input((n,), kinds=("rank+", "width", "complex", "nan", "inf", "string"),
                                            dtype=torch.float64))
    if bias_kind == "string":
        bias = "0"
    if data.draw(st.booleans()):
        bias, bias_kind = None, "good"
    bad = [nb, rb, zb, "bias" if bias_kind != "good" and not nb else None]
    net = expect(lambda: HopfieldNetwork(n_units=N, rule=rule, normalize=normalize, bias=bias), bad)
    expect(lambda: HopfieldConfig(n_units=N, rule=rule, normalize=normalize), [nb, rb, zb])
    if net is None:
        return
    P = data.draw(st.integers(1, 4))
    patterns, kind = data.draw(bipolar_input((P, N), binary=data.draw(st.booleans())))
    stored = expect(lambda: net.store(patterns), ["patterns" if kind != "good" else None])
    if stored is None:
        return
    assert finite(net.w) and net.w.shape == (N, N) and bool((net.w == net.w.T).all())
    B = data.draw(small)
    a, kind = data.draw(bipolar_input((B, N)))
    e = expect(lambda: net.energy(a), ["a" if kind != "good" else None])
    if e is not None:
        assert e.shape == (B,) and finite(e)
    a0, kind = data.draw(bipolar_input((N,), kinds=("width", "values", "complex", "nan", "none")))
    mode = data.draw(st.sampled_from(["async", "sync"]))
    res = expect(lambda: net.recall(a0, mode=mode, generator=torch.Generator().manual_seed(0)),
                 ["a0" if kind != "good" else None])
    if res is not None:
        assert res.state.shape == (N,) and bool((res.state.abs() == 1).all())
        assert res.energies.shape == (res.steps + 1,) and finite(res.energies)


@given(data=st.data())
def test_modern_hopfield(data):
    N, d = data.draw(small), data.draw(small)
    patterns, pk = data.draw(float_input((N, d), kinds=("rank+", "rank-", "int", "bool", "complex", "nan", "inf",
                                                        "empty", "list")))
    beta, bb = data.draw(arg(st.floats(1e-3, 1e3), st.sampled_from([0, -1.0, float("inf"), *NOT_NUMBERS]), "beta"))
    net = expect(lambda: ModernHopfield(patterns, beta), ["patterns" if pk != "good" else None, bb])
    if net is None:
        return
    B = data.draw(small)
    xi, kind = data.draw(float_input(data.draw(st.sampled_from([(d,), (B, d)])),
                                     kinds=("rank+", "width", "int", "bool", "complex", "nan", "list", "float64")))
    if kind == "float64":
        xi = xi.double()
    if kind == "rank+" and xi.dim() == 2:
        kind = "good"  # (d,) with a batch axis in front is (B, d): valid
    for method in (net, net.update, net.energy, lambda x: net.retrieve(x, steps=2)):
        out = expect(lambda: method(xi), ["xi" if kind != "good" else None])
        if out is not None:
            assert out.shape in (xi.shape, xi.shape[:-1]) and finite(out)
    z, kind = data.draw(float_input((B, N), kinds=("int", "bool", "complex", "nan", "list")))
    out = expect(lambda: lse(beta if not bb else 1.0, z), ["z" if kind != "good" else None])
    if out is not None:
        assert out.shape == (B,) and finite(out)


@given(data=st.data())
def test_modern_hopfield_capacity_curve(data):
    d, db = data.draw(arg(st.integers(1, 6), bad_int(1), "d"))
    counts, cb = data.draw(arg(st.lists(st.integers(1, 4), min_size=1, max_size=3),
                               st.sampled_from([[], [0], [2.5], "3", None, [True]]), "counts"))
    flip, fb = data.draw(arg(st.floats(0, 1), st.sampled_from([-0.1, 1.5, *NOT_NUMBERS]), "flip"))
    trials, tb = data.draw(arg(st.integers(1, 2), bad_int(1), "trials"))
    out = expect(lambda: capacity_curve(d, counts, 5.0, flip, trials, generator=torch.Generator().manual_seed(0)),
                 [db, cb, fb, tb])
    if out is not None:
        assert out.shape == (len(counts),) and bool(((out >= 0) & (out <= 1)).all())


@given(data=st.data())
def test_boltzmann_machine(data):
    V, vb = data.draw(arg(st.integers(1, 4), bad_int(1), "visible_size"))
    H, hb = data.draw(arg(st.integers(0, 3), bad_int(0), "hidden_size"))
    std, sb = data.draw(arg(st.floats(0, 1), st.sampled_from([-0.1, float("inf"), *NOT_NUMBERS]), "init_std"))
    expect(lambda: BoltzmannConfig(visible_size=V, hidden_size=H, init_std=std), [vb, hb, sb])
    bm = expect(lambda: BoltzmannMachine(visible_size=V, hidden_size=H, init_std=std), [vb, hb, sb])
    if bm is None:
        return
    B = data.draw(small)
    # (complex states: see test_boltzmann_machine_refuses_complex_states below)
    v, kind = data.draw(bipolar_input((B, V), binary=True, kinds=tuple(k for k in BIPOLAR_KINDS if k != "complex")))
    logp = expect(lambda: bm(v), ["v" if kind != "good" else None], also={"v": ("data",)})
    if logp is not None:
        assert logp.shape == (B,) and finite(logp) and bool((logp <= 0).all())
    v = torch.randint(0, 2, (B, V)).double()
    h, kind = data.draw(bipolar_input((B, H), binary=True, kinds=("width", "values", "nan", "string")))
    if H == 0 and kind == "good":
        h = data.draw(st.sampled_from([None, torch.zeros(B, 0)]))
    e = expect(lambda: bm.energy(v, h), ["h" if kind != "good" else None])
    if e is not None:
        assert e.shape == (B,) and finite(e)


def test_boltzmann_machine_refuses_complex_states():
    bm = BoltzmannMachine(visible_size=2, hidden_size=1)
    with pytest.raises(ValueError, match=r"^v: expected"):
        bm(torch.tensor([[1.0, 0.0]], dtype=torch.complex128))
    with pytest.raises(ValueError, match=r"^h: expected real values in \{0, 1\}, received a complex tensor"):
        bm.energy(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0]], dtype=torch.complex64))


@st.composite
def rbm_config(draw):
    return draw(some_invalid([("visible_size", st.integers(1, 6), bad_int(1)),
                              ("hidden_size", st.integers(1, 6), bad_int(1)),
                              ("k", st.integers(1, 3), bad_int(1)), ("persistent", st.booleans(), bad_bool),
                              ("n_chains", st.integers(1, 4), bad_int(1)),
                              ("init_std", st.floats(0, 1), st.sampled_from([-0.1, float("inf"), *NOT_NUMBERS]))]))


@given(data=st.data())
def test_rbm(data):
    fields, bad = data.draw(rbm_config())
    expect(lambda: RBMConfig(**fields), bad)
    rbm = expect(lambda: RBM(**fields), bad)
    if rbm is None:
        return
    D, H, B = rbm.config.visible_size, rbm.config.hidden_size, data.draw(small)
    units = ("rank+", "width", "values", "complex", "nan", "empty", "none", "string")
    forms = ("float64", "float32", "bool")
    v, kind = data.draw(bipolar_input((B, D), binary=True, kinds=units, forms=forms))
    v_bad = ["v" if kind != "good" else None]
    for method, shape in ((rbm.p_h, (B, H)), (rbm.free_energy, (B,)), (rbm.transform, (B, H)),
                          (rbm.reconstruct, (B, D)), (rbm.pseudo_likelihood, (B,))):
        # the conditionals also take probabilities (mean field); the rest binary states only
        out = expect(lambda: method(v), [] if kind == "half" and method == rbm.p_h else v_bad)
        if out is not None:
            assert out.shape == shape and finite(out)
    out = expect(lambda: rbm.gibbs(v, steps=2, generator=torch.Generator().manual_seed(0)), v_bad)
    if out is not None:
        assert out[0].shape == out[1].shape == (B, D) and finite(*out)
    h, kind = data.draw(bipolar_input((B, H), binary=True, kinds=units + ("rows",), forms=forms))
    if kind == "rows":
        h = torch.zeros(B + 1, H)
    h_bad = ["h" if kind != "good" else None]
    out = expect(lambda: rbm.p_v(h), h_bad if kind not in ("rows", "half") else [])
    if out is not None:
        assert out.shape == (h.shape[0] if kind == "rows" else B, D) and finite(out)
    v = torch.randint(0, 2, (B, D)).float()
    out = expect(lambda: rbm.energy(v, h), h_bad)
    if out is not None:
        assert out.shape == (B,) and finite(out)
    # probabilities (mean-field values in [0, 1]) are valid inputs of the conditionals
    p = torch.rand(B, D)
    assert rbm.p_h(p).shape == (B, H) and rbm.p_v(rbm.p_h(p)).shape == (B, D)
    n, nb = data.draw(arg(small, bad_int(1), "n"))
    steps, sb = data.draw(arg(st.integers(1, 3), bad_int(1), "steps"))
    out = expect(lambda: rbm.sample(n, steps=steps, generator=torch.Generator().manual_seed(0)), [nb, sb])
    if out is not None:
        assert out[0].shape == (n, D) and bool(((out[0] == 0) | (out[0] == 1)).all())


# --------------------------------------------------------------------------- generative

from seqlab.generative.diffusion import Diffusion, DiffusionConfig  # noqa: E402
from seqlab.generative.gan import GAN, Discriminator, GANConfig, Generator  # noqa: E402
from seqlab.generative.unet import UNet  # noqa: E402
from seqlab.generative.vae import VAE, VAEConfig  # noqa: E402

image_sizes = st.sampled_from([8, 12])
bad_image_size = st.one_of(bad_int(8), st.sampled_from([4, 9, 10, 14.0, True]))
IMAGE_KINDS = ("rank+", "rank-", "width", "int", "bool", "complex", "nan", "empty", "list", "none", "range")


@st.composite
def images(draw, shape, *, low=0.0, high=1.0, kinds=IMAGE_KINDS):
    """(images (B, C, S, S) in [low, high], kind); "width" changes the height, "range" puts a
    value outside [low, high]."""
    kind = draw(st.one_of(st.just("good"), st.just("good"), st.sampled_from(kinds)))
    if kind == "range":
        x, _ = draw(float_input(shape, kinds=(), low=low, high=high))
        x = x.clone()
        x.view(-1)[0] = high + 0.5
        return x, kind
    return draw(float_input(shape, kinds=(kind,) if kind != "good" else (), width_axis=2, low=low, high=high))


@st.composite
def image_config(draw, extra):
    return draw(some_invalid([("channels", st.integers(1, 2), bad_int(1)), ("image_size", image_sizes, bad_image_size),
                              *extra]))


@given(data=st.data())
def test_gan(data):
    fields, bad = data.draw(image_config((
        ("noise_size", small, bad_int(1)), ("hidden_size", st.integers(1, 4), bad_int(1)),
        ("d_hidden_size", st.one_of(st.none(), st.integers(1, 4)), bad_int(1).filter(lambda v: v is not None)),
        ("loss", st.sampled_from(["non-saturating", "minimax"]), st.sampled_from(["wasserstein", None])),
        ("d_steps", st.integers(1, 2), bad_int(1)),
        ("d_lr_scale", st.floats(0.1, 2), st.sampled_from([0, -1.0, float("inf"), *NOT_NUMBERS])))))
    expect(lambda: GANConfig(**fields), bad)
    gan = expect(lambda: GAN(**fields), bad)
    if gan is None:
        return
    c, B = gan.config, data.draw(st.integers(2, 4))
    z, kind = data.draw(float_input((B, c.noise_size), kinds=("rank+", "rank-", "width", "int", "bool", "complex",
                                                               "empty", "list", "none")))
    x = expect(lambda: gan.generator(z), ["z" if kind != "good" else None])
    if x is not None:
        assert x.shape == (B, c.channels, c.image_size, c.image_size) and finite(x)
        assert bool((x.abs() <= 1).all())
    shape = (B, c.channels, c.image_size, c.image_size)
    x, kind = data.draw(images(shape, low=-1.0, kinds=("rank+", "rank-", "width", "int", "bool", "complex", "empty",
                                                       "list", "none")))
    logits = expect(lambda: gan.discriminator(x), ["x" if kind != "good" else None])
    if logits is not None:
        assert logits.shape == (B,) and finite(logits)
    x, kind = data.draw(images(shape))
    d = expect(lambda: gan.D(x), ["x" if kind != "good" else None])
    if d is not None:
        assert d.shape == (B,) and bool(((d >= 0) & (d <= 1)).all())
    n, nb = data.draw(arg(small, bad_int(1), "n"))
    out = expect(lambda: gan.sample(n, generator=torch.Generator().manual_seed(0)), [nb])
    if out is not None:
        assert out.shape == (n, *shape[1:]) and bool(((out >= 0) & (out <= 1)).all())


@given(data=st.data())
def test_gan_networks_alone(data):
    """Generator(cfg) and Discriminator(cfg) take only a GANConfig."""
    cfg, kind = data.draw(st.sampled_from([(GANConfig(noise_size=3, hidden_size=2), "good"), ({"noise_size": 3}, "bad"),
                                           (None, "bad"), (VAEConfig(), "bad")]))
    for cls in (Generator, Discriminator):
        net = expect(lambda: cls(cfg), ["cfg" if kind == "bad" else None], also={"cfg": ("config",)})
        assert (net is None) == (kind == "bad")


@given(data=st.data())
def test_vae(data):
    fields, bad = data.draw(image_config((
        ("latent_size", small, bad_int(1)), ("hidden_size", st.integers(1, 8), bad_int(1)),
        ("depth", st.integers(1, 2), bad_int(1)),
        ("likelihood", st.just("bernoulli"), st.sampled_from(["gauss", None])))))
    expect(lambda: VAEConfig(**fields), bad)
    vae = expect(lambda: VAE(**fields), bad)
    if vae is None:
        return
    c, B = vae.config, data.draw(small)
    shape = (B, c.channels, c.image_size, c.image_size)
    x, kind = data.draw(images(shape))
    x_bad = ["x" if kind != "good" else None]
    for method, out_shape in ((lambda x: vae.encode(x)[0], (B, c.latent_size)), (vae.reconstruct, shape),
                              (lambda x: vae.elbo(x, generator=torch.Generator().manual_seed(0)), (B,)),
                              (lambda x: vae.loss(x)[0], ())):
        out = expect(lambda: method(x), x_bad, also={"x": ("images",)})
        if out is not None:
            assert out.shape == out_shape and finite(out)
    z, kind = data.draw(float_input((B, c.latent_size)))
    out = expect(lambda: vae.decode(z), ["z" if kind != "good" else None])
    if out is not None:
        assert out.shape == shape and finite(out)
    mu, kind_mu = data.draw(float_input((B, c.latent_size)))
    out = expect(lambda: vae.reparameterize(mu, torch.zeros(B, c.latent_size)), ["mu" if kind_mu != "good" else None])
    if out is not None:
        assert out.shape == (B, c.latent_size) and finite(out)
    n, nb = data.draw(arg(small, bad_int(1), "n"))
    out = expect(lambda: vae.sample(n), [nb])
    if out is not None:
        assert out.shape == (n, *shape[1:])


mults = st.lists(st.integers(1, 2), min_size=1, max_size=3).map(tuple)
bad_mults = st.sampled_from([(), (1, 2, 2, 2), (0,), (1, -1), (1.5,), "12", None, (True,)])


@given(data=st.data())
def test_diffusion(data):
    fields, bad = data.draw(image_config((
        ("timesteps", st.integers(1, 20), bad_int(1)),
        ("beta_schedule", st.sampled_from(["linear", "cosine"]), st.sampled_from(["quadratic", None])),
        ("base_channels", st.integers(1, 4), bad_int(1)), ("channel_mults", mults, bad_mults),
        ("time_dim", st.integers(2, 8), bad_int(2)))))
    expect(lambda: DiffusionConfig(**fields), bad)
    model = expect(lambda: Diffusion(**fields), bad)
    if model is None:
        return
    c, B = model.config, data.draw(small)
    shape = (B, c.channels, c.image_size, c.image_size)
    x, kind = data.draw(images(shape))
    out = expect(lambda: model.loss(x, generator=torch.Generator().manual_seed(0))[0],
                 ["x" if kind != "good" else None])
    if out is not None:
        assert out.shape == () and finite(out)
    x_t, kind = data.draw(images(shape, low=-3.0, high=3.0, kinds=("rank+", "rank-", "width", "int", "bool", "complex",
                                                                   "empty", "list", "none")))
    t, t_bad = data.draw(arg(st.one_of(st.integers(1, c.timesteps),
                                       st.lists(st.integers(1, c.timesteps), min_size=B, max_size=B).map(torch.tensor)),
                             st.one_of(st.sampled_from([0, c.timesteps + 1, -1, 1.5, None, True, "1"]),
                                       st.just(torch.full((B,), c.timesteps + 1)), st.just(torch.zeros(B).long()),
                                       st.just(torch.ones(B + 1).long()), st.just(torch.ones(B))), "t"))
    if kind != "good":
        t, t_bad = 1, None  # one problem at a time
    eps = expect(lambda: model.eps_theta(x_t, t), ["x_t" if kind != "good" else None, t_bad])
    if eps is not None:
        assert eps.shape == shape and finite(eps)
    xs = expect(lambda: model.q_sample(x_t.clamp(-1, 1), t, torch.randn(shape)), [t_bad]) if kind == "good" else None
    if xs is not None:
        assert xs.shape == shape and finite(xs)


@given(data=st.data())
def test_unet(data):
    C, cb = data.draw(arg(st.integers(1, 2), bad_int(1), "channels"))
    base, bb = data.draw(arg(st.integers(1, 4), bad_int(1), "base_channels"))
    m, mb = data.draw(arg(mults, bad_mults.filter(lambda v: v != (1, 2, 2, 2)), "channel_mults"))
    time_dim, tb = data.draw(arg(st.integers(2, 8), bad_int(2), "time_dim"))
    net = expect(lambda: UNet(C, base, m, time_dim), [cb, bb, mb, tb])
    if net is None:
        return
    B, S = data.draw(small), data.draw(st.sampled_from([4, 8, 12, 6, 7]))
    unit = 2 ** (len(m) - 1)  # the image is halved len(m) - 1 times, down to a map of at least 2 x 2
    x, kind = data.draw(float_input((B, C, S, S), kinds=("rank+", "rank-", "width", "int", "bool", "complex", "empty",
                                                          "list", "none"), width_axis=1))
    if kind == "good" and (S % unit or S < 2 * unit):
        kind = "size"
    # (the values of t are not checked: no host sync in a training step)
    t, t_kind = data.draw(float_input((B,), kinds=("rank+", "width", "bool", "complex", "list")))
    if t_kind == "good":
        t = (t.abs() * 10).round().long() if data.draw(st.booleans()) else t.abs() * 10
    if kind != "good":
        t, t_kind = torch.ones(B).long(), "good"
    out = expect(lambda: net(x, t), ["x" if kind != "good" else None, "t" if t_kind != "good" else None])
    if out is not None:
        assert out.shape == (B, C, S, S) and finite(out)


# --------------------------------------------------------------------------- transformer

from seqlab.transformer import (BlockConfig, Decoder, Encoder, KVCache, LayerNorm,  # noqa: E402
                                LearnedPositionalEncoding, MultiHeadAttention, MultiHeadAttentionConfig,
                                SinusoidalPositionalEncoding, TransformerBlock, causal_mask, padding_mask,
                                scaled_dot_product_attention, sinusoidal_table)

ATTN_KINDS = ("rank-", "width", "int", "bool", "complex", "nan", "inf", "list", "none", "float64")


@given(data=st.data())
def test_scaled_dot_product_attention(data):
    B, S, T, m, d = (data.draw(small) for _ in range(5))
    q, qk = data.draw(float_input((B, S, m), kinds=ATTN_KINDS))
    k, kk = data.draw(float_input((B, T, m), kinds=ATTN_KINDS))
    v, vk = data.draw(float_input((B, T, d), kinds=ATTN_KINDS))
    q, k, v = (x.double() if kind == "float64" else x for x, kind in ((q, qk), (k, kk), (v, vk)))
    if vk == "width":
        vk, d = "good", v.shape[-1]  # v may have any width d
    if qk == kk == "width" and q.shape[-1] == k.shape[-1]:
        qk = kk = "good"  # q and k changed alike: still of one width m
    if qk == kk == vk and qk in ("float64", "rank-"):
        qk = kk = vk = "good"  # all float64, or all without the batch axis: valid
    bad = {"q": qk != "good", "k": kk != "good", "v": vk != "good"}
    mask, mb = data.draw(arg(st.sampled_from(["bool", "float", "none"]),
                             st.sampled_from(["shape", "int", "nan", "list"]), "mask"))
    mask = {"bool": torch.rand(S, T) > 0.3, "float": torch.zeros(B, 1, S, T).masked_fill(torch.rand(B, 1, S, T) > .5,
                                                                                         float("-inf"))[:, 0],
            "none": None, "shape": torch.ones(S + 1, T, dtype=torch.bool), "int": torch.ones(S, T, dtype=torch.long),
            "nan": torch.full((S, T), float("nan")), "list": [[True] * T] * S}[mask]
    if isinstance(mask, torch.Tensor) and mask.dim() == 3 and isinstance(q, torch.Tensor) and q.dim() == 2:
        mask = mask[0]  # unbatched q, k, v: a (S, T) mask
    causal, cb = data.draw(arg(st.booleans(), bad_bool, "causal"))
    scale, sb = data.draw(arg(st.one_of(st.none(), st.floats(0.01, 10)),
                              st.sampled_from([float("inf"), float("nan"), "1", True]), "scale"))
    fused = data.draw(st.booleans())
    if any(bad.values()):
        mb = cb = sb = None  # one problem at a time
        mask, causal, scale = None, False, None
    out = expect(lambda: scaled_dot_product_attention(q, k, v, mask=mask, causal=causal, scale=scale, fused=fused),
                 [n for n, b in bad.items() if b] + [mb, cb, sb],
                 # k and v are checked against q: a bad q (rank, width, dtype) may be reported on them
                 also={"q": ("k", "v"), "k": ("v",)})
    if out is not None:
        assert out.shape == (*q.shape[:-1], d) and finite(out)


@given(data=st.data())
def test_masks(data):
    S, sb = data.draw(arg(small, bad_int(1), "S"))
    T, tb = data.draw(arg(st.one_of(st.none(), small), bad_int(1).filter(lambda v: v is not None), "T"))
    offset, ob = data.draw(arg(st.one_of(st.none(), st.integers(-3, 3)), st.sampled_from([1.5, "1", True]), "offset"))
    m = expect(lambda: causal_mask(S, T, offset=offset), [sb, tb, ob])
    if m is not None:
        assert m.shape == (S, S if T is None else T) and m.dtype == torch.bool
    T = data.draw(small)
    lengths, lb = data.draw(arg(st.lists(st.integers(0, T), min_size=1, max_size=4),
                                st.sampled_from([[T + 1], [-1], [1.5], "3", None, [True], torch.ones(2, 2).long(),
                                                 torch.tensor([1.0])]), "lengths"))
    m = expect(lambda: padding_mask(lengths, T), [lb])
    if m is not None:
        assert m.shape == (len(lengths), T) and m.sum(1).tolist() == list(lengths)


@given(data=st.data())
def test_positional_encodings(data):
    cls = data.draw(st.sampled_from([SinusoidalPositionalEncoding, LearnedPositionalEncoding]))
    D, db = data.draw(arg(small, bad_int(1), "d_model"))
    L, lb = data.draw(arg(st.integers(1, 8), bad_int(1), "max_len"))
    expect(lambda: sinusoidal_table(L, D), [lb, db])
    pe = expect(lambda: cls(d_model=D, max_len=L), [db, lb])
    if pe is None:
        return
    B, T = data.draw(small), data.draw(st.integers(1, L))
    x, kind = data.draw(float_input((B, T, D), kinds=("rank+", "rank-", "width", "int", "bool", "complex", "nan",
                                                       "list", "none")))
    offset, ob = data.draw(arg(st.integers(0, L - T), st.sampled_from([L - T + 1, -1, 1.5, None, True]), "offset"))
    if kind != "good":
        offset, ob = 0, None
    y = expect(lambda: pe(x, offset), ["x" if kind != "good" else None, ob], also={"offset": ("positions",)})
    if y is not None:
        assert y.shape == (B, T, D) and finite(y)


@given(data=st.data())
def test_layer_norm(data):
    d, db = data.draw(arg(small, bad_int(1), "d"))
    eps, eb = data.draw(arg(st.floats(1e-8, 1.0), st.sampled_from([0, -1e-5, 10 ** 400, *NOT_NUMBERS]), "eps"))
    bias, bb = data.draw(arg(st.booleans(), bad_bool, "bias"))
    ln = expect(lambda: LayerNorm(d, eps=eps, bias=bias), [db, eb, bb])
    if ln is None:
        return
    shape = data.draw(st.lists(small, min_size=0, max_size=2)) + [d]
    x, kind = data.draw(float_input(shape, kinds=("width", "int", "bool", "complex", "nan", "inf", "list", "none")))
    y = expect(lambda: ln(x), ["x" if kind != "good" else None])
    if y is not None:
        assert y.shape == x.shape and finite(y)


@st.composite
def attention_sizes(draw):
    """(d_model, num_heads, their bad names): d_model a multiple of num_heads when both are valid."""
    h, hb = draw(arg(st.integers(1, 3), bad_int(1), "num_heads"))
    m = draw(st.integers(1, 3))
    D, db = draw(arg(st.just(h * m if not hb else 4), st.one_of(bad_int(1), st.just(h * m + 1) if not hb and h > 1
                                                                else bad_int(1)), "d_model"))
    return D, h, [hb, db]


@given(data=st.data())
def test_multi_head_attention(data):
    D, h, bad = data.draw(attention_sizes())
    dropout, pb = data.draw(arg(probability, bad_probability, "dropout"))
    kdim, kb = data.draw(arg(st.one_of(st.none(), small), bad_int(1).filter(lambda v: v is not None), "kdim"))
    fields = dict(d_model=D, num_heads=h, dropout=dropout, kdim=kdim, vdim=kdim,
                  bias=data.draw(st.booleans()), fused=data.draw(st.booleans()))
    expect(lambda: MultiHeadAttentionConfig(**fields), bad + [pb, kb])
    mha = expect(lambda: MultiHeadAttention(**fields).eval(), bad + [pb, kb])
    if mha is None:
        return
    B, S, T = data.draw(small), data.draw(small), data.draw(small)
    query, qk = data.draw(float_input((B, S, D), kinds=ATTN_KINDS + ("empty", "rank+")))
    cross = kdim is not None or data.draw(st.booleans())
    W = mha.config.key_dim
    key, kk = data.draw(float_input((B, T, W), kinds=ATTN_KINDS)) if cross else (None, "good")
    value = key if kk == "good" and cross else (torch.randn(B, T, W) if cross else None)
    if qk != "good":
        key, value, kk = (torch.randn(B, T, W),) * 2 + ("good",) if cross else (None, None, "good")
    kpm, kpm_bad = data.draw(arg(st.just(torch.rand(B, T if cross else S) > 0.2),
                                 st.sampled_from([torch.ones(B, 1 + (T if cross else S), dtype=torch.bool),
                                                  torch.ones(B, T if cross else S).long(), "mask"]),
                                 "key_padding_mask"))
    if qk != "good" or kk != "good":
        kpm, kpm_bad = None, None
    out = expect(lambda: mha(query, key, value, key_padding_mask=kpm, need_weights=True),
                 ["query" if qk != "good" else None, "key" if kk != "good" else None, kpm_bad])
    if out is not None:
        o, w = out
        assert o.shape == (B, S, D) and finite(o) and w.shape == (B, S, T if cross else S)


@given(data=st.data())
def test_transformer_blocks_and_stacks(data):
    D, h, bad = data.draw(attention_sizes())
    fields, more = data.draw(some_invalid([
        ("d_ff", small, bad_int(1)), ("activation", st.sampled_from(["gelu", "relu"]), st.sampled_from(["tanh", None])),
        ("layer_norm_eps", st.floats(1e-6, 1e-2), st.sampled_from([0, -1.0, *NOT_NUMBERS])),
        *((name, st.booleans(), bad_bool) for name in ("norm_first", "causal", "cross_attention", "bias", "fused"))]))
    fields.update(d_model=D, num_heads=h)
    bad += more
    config = expect(lambda: BlockConfig(**fields), bad)
    block = expect(lambda: TransformerBlock(**fields), bad)
    if block is None:
        return
    n, nb = data.draw(arg(st.integers(1, 2), bad_int(1), "num_layers"))
    c = config
    stack_bad = {"config": c.cross_attention, "num_layers": bool(nb)}
    encoder = expect(lambda: Encoder(num_layers=n, config=c), [k for k, b in stack_bad.items() if b])
    stack_bad["config"] = not (c.causal and c.cross_attention)
    decoder = expect(lambda: Decoder(num_layers=n, config=c), [k for k, b in stack_bad.items() if b])
    B, S, T = data.draw(small), data.draw(small), data.draw(small)
    x, xk = data.draw(float_input((B, S, D), kinds=ATTN_KINDS + ("empty", "rank+")))
    memory, mk = data.draw(float_input((B, T, D), kinds=("rank-", "width", "int", "complex", "nan", "list")))
    if xk != "good":
        memory, mk = torch.randn(B, T, D), "good"
    if not c.cross_attention:
        memory, mk = (None, "good") if data.draw(st.booleans()) else (memory, "given")
    for module in (block, decoder if c.cross_attention else encoder):
        if module is None:
            continue
        call = {block: lambda: block(x, memory=memory), decoder: lambda: decoder(x, memory),
                encoder: lambda: encoder(x)}[module]
        x_bad = ["x" if xk != "good" else None, "memory" if mk != "good" and module is not encoder else None]
        y = expect(call, x_bad)
        if y is not None:
            assert y.shape == (B, S, D) and finite(y)
    cache = data.draw(st.sampled_from([None, "fresh", "not a cache", KVCache()]))
    if encoder is not None and c.causal and xk == "good":
        cache = encoder.new_cache() if cache == "fresh" else cache
        y = expect(lambda: encoder(x, cache=cache), ["cache" if cache is not None and not isinstance(cache, list)
                                                     else None])
        if y is not None:
            assert y.shape == (B, S, D) and finite(y)


# --------------------------------------------------------------------------- llm

from seqlab.llm.bert import BERT, BERTClassifier, BERTConfig  # noqa: E402
from seqlab.llm.gpt import GPT, GPTConfig  # noqa: E402


@st.composite
def lm_fields(draw, min_vocab):
    """Fields of a GPT or BERT config shared by both, some invalid: (fields, bad names)."""
    D, h, bad = draw(attention_sizes())
    fields, more = draw(some_invalid([("vocab_size", st.integers(min_vocab, 20), bad_int(min_vocab)),
                                      ("block_size", st.integers(1, 8), bad_int(1)),
                                      ("num_layers", st.integers(1, 2), bad_int(1)),
                                      ("d_ff", st.one_of(st.none(), small), bad_int(1).filter(lambda v: v is not None)),
                                      ("dropout", probability, bad_probability), ("fused", st.booleans(), bad_bool)]))
    fields.update(d_model=D, num_heads=h)
    return fields, bad + more


@given(data=st.data())
def test_gpt(data):
    fields, bad = data.draw(lm_fields(1))
    more, bad_more = data.draw(some_invalid([
        ("bias", st.booleans(), bad_bool), ("tie_weights", st.booleans(), bad_bool),
        ("position", st.sampled_from(["learned", "sinusoidal"]), st.sampled_from(["rotary", None]))],
        invalid=not bad))
    fields.update(more)
    bad += bad_more
    expect(lambda: GPTConfig(**fields), bad)
    gpt = expect(lambda: GPT(**fields).eval(), bad)
    if gpt is None:
        return
    c, B = gpt.config, data.draw(small)
    T = data.draw(st.integers(1, c.block_size + 1))
    ids, kind = data.draw(token_ids(B, T, c.vocab_size))
    bad_ids = kind != "good" or T > c.block_size
    logits = expect(lambda: gpt(ids), ["ids" if bad_ids else None])
    if logits is not None:
        assert logits.shape == (B, T, c.vocab_size) and finite(logits)
    cache = data.draw(st.sampled_from(["fresh", "not a cache", "one short", "kv"]))
    cache = {"fresh": gpt.new_cache(), "one short": gpt.new_cache()[1:], "kv": KVCache()}.get(cache, cache)
    if not bad_ids:
        out = expect(lambda: gpt(ids, cache=cache), ["cache" if not isinstance(cache, list) or
                                                     len(cache) != c.num_layers else None])
        if out is not None:
            torch.testing.assert_close(out, logits, atol=1e-5, rtol=1e-4)


@st.composite
def bert_fields(draw):
    fields, bad = draw(lm_fields(2))
    if "vocab_size" in bad:  # the token ids cannot be judged against it: valid for any vocabulary
        V, ids = 2, {name: st.just(0) for name in ("mask_id", "pad_id", "cls_id")}
    else:
        V = fields["vocab_size"]
        ids = {name: st.integers(0, V - 1) for name in ("mask_id", "pad_id", "cls_id")}
        ids["pad_id"], ids["cls_id"] = (st.one_of(st.none(), ids[n]) for n in ("pad_id", "cls_id"))
    spec = [(name, ids[name], st.sampled_from([V, -1, 1.5, True, "1"] + ([None] if name == "mask_id" else [])))
            for name in ("mask_id", "pad_id", "cls_id")]
    more, bad_more = draw(some_invalid(spec + [("norm_first", st.booleans(), bad_bool)], invalid=not bad))
    fields.update(more)
    return fields, bad + bad_more


@given(data=st.data())
def test_bert(data):
    fields, bad = data.draw(bert_fields())
    expect(lambda: BERTConfig(**fields), bad, also={"vocab_size": ("mask_id", "pad_id", "cls_id")})
    bert = expect(lambda: BERT(**fields).eval(), bad, also={"vocab_size": ("mask_id", "pad_id", "cls_id")})
    if bert is None:
        return
    c, B = bert.config, data.draw(small)
    T = data.draw(st.integers(1, c.block_size + 1))
    ids, kind = data.draw(token_ids(B, T, c.vocab_size))
    bad_ids = kind != "good" or T > c.block_size
    kpm, kb = data.draw(arg(st.sampled_from(["none", "bool"]), st.sampled_from(["short", "int", "list"]),
                            "key_padding_mask"))
    kpm = {"none": None, "bool": torch.arange(T)[None].expand(B, T) < torch.randint(1, T + 1, (B, 1)),
           "short": torch.ones(B, T + 1, dtype=torch.bool), "int": torch.ones(B, T).long(),
           "list": [[True] * T] * B}[kpm]
    if bad_ids:
        kpm, kb = None, None
    logits = expect(lambda: bert(ids, key_padding_mask=kpm), ["ids" if bad_ids else None, kb])
    if logits is not None:
        assert logits.shape == (B, T, c.vocab_size) and finite(logits)
    K, kb = data.draw(arg(st.integers(2, 4), bad_int(2), "num_classes"))
    pooling, pb = data.draw(arg(st.sampled_from(["cls", "mean"]), st.sampled_from(["max", None]), "pooling"))
    if pooling == "cls" and c.cls_id is None and not pb:
        pooling, pb = "cls", "pooling"  # [CLS] pooling needs a [CLS] token
    dropout, db = data.draw(arg(probability, bad_probability, "dropout"))
    clf = expect(lambda: BERTClassifier(bert, num_classes=K, pooling=pooling, dropout=dropout).eval(), [kb, pb, db])
    if clf is None or bad_ids:
        return
    if pooling == "cls" and data.draw(st.booleans()):
        ids = ids.clone()
        ids[:, 0] = c.cls_id
    cls_missing = pooling == "cls" and bool((ids[:, 0] != c.cls_id).any())
    z = expect(lambda: clf(ids), ["ids" if cls_missing else None])
    if z is not None:
        assert z.shape == (B, K) and finite(z)


@given(data=st.data())
def test_language_model_losses(data):
    """loss((x, y)) of the GPT and the char LM: y must be next-token ids of x's shape."""
    V, B, T = data.draw(st.integers(2, 9)), data.draw(small), data.draw(st.integers(1, 4))
    model = data.draw(st.sampled_from(["gpt", "charlm"]))
    model = (GPT(vocab_size=V, block_size=4, d_model=4, num_heads=2, num_layers=1) if model == "gpt"
             else CharLM(vocab_size=V, hidden_size=3))
    x = torch.randint(0, V, (B, T))
    y, kind = data.draw(token_ids(B, T, V, kinds=("float", "bool", "complex", "high", "negative", "rank+", "rank-",
                                                  "list")))
    out = expect(lambda: model.loss((x, y)), ["y" if kind != "good" else None])
    if out is not None:
        loss, metrics = out
        assert loss.shape == () and finite(loss) and metrics["tokens"] == B * T
