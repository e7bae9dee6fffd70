"""The fast path's hand-written BPTT: gradcheck, and equality with the readable path."""

import pytest
import torch

from seqlab.recurrent import GRU, LSTM, RNN
from seqlab.recurrent import fused

B, T, I, H = 3, 5, 2, 3


def _inputs(n_gate_rows, *, recurrent_shapes, n_states, extra_bias=False, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return (0.5 * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_(True)

    x = r(B, T, I)
    w_x = r(n_gate_rows * H, I)
    rec = [r(*s) for s in recurrent_shapes]
    b = r(n_gate_rows * H)
    tensors = [x, w_x, *rec, b]
    if extra_bias:
        tensors.append(r(H))
    states = [r(B, H) for _ in range(n_states)]
    return tensors + states


FUNCTIONS = {
    "elman-tanh": (fused.ElmanFunction, dict(n_gate_rows=1, recurrent_shapes=[(H, H)], n_states=1), (False,)),
    "elman-relu": (fused.ElmanFunction, dict(n_gate_rows=1, recurrent_shapes=[(H, H)], n_states=1), (True,)),
    "lstm": (fused.LSTMFunction, dict(n_gate_rows=4, recurrent_shapes=[(4 * H, H)], n_states=2), ()),
    "gru": (fused.GRUFunction, dict(n_gate_rows=3, recurrent_shapes=[(2 * H, H), (H, H)], n_states=1), ()),
    "gru-reset-after": (
        fused.GRUResetAfterFunction,
        dict(n_gate_rows=3, recurrent_shapes=[(3 * H, H)], n_states=1, extra_bias=True),
        (),
    ),
}


@pytest.mark.parametrize("name", list(FUNCTIONS))
@pytest.mark.parametrize("batch_sizes", [None, (3, 3, 2, 1, 1), (3, 2, 2, 0, 0)], ids=["full", "var", "var-tail"])
def test_gradcheck(name, batch_sizes):
    fn, spec, extra = FUNCTIONS[name]
    inputs = _inputs(**spec, seed=len(name))
    if name.startswith("elman-relu"):
        # keep pre-activations away from relu's kink, where finite differences are meaningless
        with torch.no_grad():
            inputs[3].add_(2.0)
    n_weights = 2 + len(spec["recurrent_shapes"]) + 1 + spec.get("extra_bias", False)
    weights, states = inputs[1:n_weights], inputs[n_weights:]

    def f(*args):
        return fn.apply(args[0], *args[1:n_weights], *args[n_weights:], *extra, batch_sizes)

    assert torch.autograd.gradcheck(f, (inputs[0], *weights, *states), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls,kw", [(RNN, {}), (RNN, {"nonlinearity": "relu"}), (LSTM, {}), (GRU, {}),
                                    (GRU, {"reset": "after"})])
@pytest.mark.parametrize("lengths", [None, [6, 2, 5, 1]])
def test_fused_equals_reference(cls, kw, lengths):
    torch.manual_seed(0)
    a = cls(input_size=3, hidden_size=4, num_layers=2, fused=True, **kw).double()
    b = cls(input_size=3, hidden_size=4, num_layers=2, fused=False, **kw).double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 6, 3, dtype=torch.float64, requires_grad=True)
    xb = x.detach().clone().requires_grad_(True)
    oa, sa = a(x, lengths)
    ob, sb = b(xb, lengths)
    torch.testing.assert_close(oa, ob, atol=1e-12, rtol=0)
    g = torch.randn_like(oa)
    (oa * g).sum().backward()
    (ob * g).sum().backward()
    torch.testing.assert_close(x.grad, xb.grad, atol=1e-12, rtol=0)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-12, rtol=0, msg=na)


def test_padded_positions_get_no_gradient_and_do_not_matter():
    torch.manual_seed(1)
    for fused_flag in (True, False):
        m = LSTM(input_size=2, hidden_size=3, fused=fused_flag).double()
        x = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
        out, (h, c) = m(x, [5, 2])
        (out.sum() + h.sum() + c.sum()).backward()
        assert torch.all(x.grad[1, 2:] == 0)
        assert torch.all(out[1, 2:] == 0)
        x2 = x.detach().clone()
        x2[1, 2:] = 1e3  # garbage in the padding
        out2, (h2, _) = m(x2, [5, 2])
        torch.testing.assert_close(out2, out.detach(), atol=0, rtol=0)
        torch.testing.assert_close(h2, h.detach(), atol=0, rtol=0)


def test_final_state_is_taken_at_each_items_own_length():
    torch.manual_seed(2)
    m = GRU(input_size=2, hidden_size=3).double()
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    _, h = m(x, [6, 3, 1])
    for i, t_i in enumerate([6, 3, 1]):
        _, h_i = m(x[i : i + 1, :t_i])
        torch.testing.assert_close(h[:, i], h_i[:, 0], atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["gru", "gru-reset-after"])
@pytest.mark.parametrize("batch_sizes", [None, (3, 3, 2, 1, 1), (3, 2, 2, 0, 0)], ids=["full", "var", "var-tail"])
@pytest.mark.parametrize("block", [1, 2, 4])
def test_gru_backward_in_blocks_of_steps(monkeypatch, name, batch_sizes, block):
    """The GRU's backward pass holds its buffers for GRU_BLOCK steps at a time: blocks that do
    not divide T (5), and blocks of one step, give the gradients gradcheck expects."""
    monkeypatch.setattr(fused, "GRU_BLOCK", block)
    test_gradcheck(name, batch_sizes)


@pytest.mark.parametrize("reset", ["before", "after"])
@pytest.mark.parametrize("lengths", [None, [6, 2, 5, 1]])
def test_gru_blocked_backward_equals_reference(monkeypatch, reset, lengths):
    monkeypatch.setattr(fused, "GRU_BLOCK", 4)  # T = 6: a block of 4 steps, then one of 2
    test_fused_equals_reference(GRU, {"reset": reset}, lengths)


def _lstm_grads(model, x, lengths):
    x = x.detach().clone().requires_grad_(True)
    out, (h, c) = model(x, lengths)
    g = torch.linspace(-1, 1, out.numel()).view_as(out)
    ((out * g).sum() + h.sum() + 2 * c.sum()).backward()
    grads = [x.grad] + [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return [out, h, c] + grads


@pytest.mark.parametrize("lengths", [None, [7, 3, 7, 1, 5]])
def test_lstm_onednn_products_equal_the_plain_ones(monkeypatch, lengths):
    """float32 on the CPU, the Python loops (where the compiled ones are not available): the
    LSTM's products through oneDNN, and the weight-gradient sums after the loop (_row_sums),
    give torch.mm's results."""
    from seqlab.recurrent import native

    monkeypatch.setattr(native, "ops", lambda: None)
    torch.manual_seed(0)
    model = LSTM(input_size=6, hidden_size=16, num_layers=2, fused=True)
    x = torch.randn(5, 7, 6)
    lengths = None if lengths is None else torch.tensor(lengths)
    monkeypatch.setattr(fused, "_ONEDNN", False)
    plain = _lstm_grads(model, x, lengths)
    monkeypatch.setattr(fused, "_ONEDNN", None)  # decided again, as on first use
    if not fused._onednn_usable():
        pytest.skip("no oneDNN products on this machine")
    # this small model's products would stay with torch.mm: lower the sizes where oneDNN starts
    monkeypatch.setattr(fused._Linear, "MIN_WEIGHTS", 0)
    monkeypatch.setattr(fused._Linear, "MIN_STEPS", 0)
    monkeypatch.setattr(fused, "MM_MIN_MACS", 0)
    assert fused._Linear(torch.randn(64, 16), 5, 7).packed is not None
    fast = _lstm_grads(model, x, lengths)
    for a, b in zip(fast, plain):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("lengths", [None, [19, 4, 19, 1, 12, 19, 7, 2, 19, 9, 1]], ids=["full", "var"])
@pytest.mark.parametrize("slices,sum_rows", [(1, 1024), (2, 33), (3, 33), (3, 1)])
def test_lstm_compiled_loops_equal_the_python_loops(monkeypatch, dtype, lengths, slices, sum_rows):
    """The compiled loops, their units cut into 1 to 3 slices (more slices than this machine may
    have threads: a thread then runs several), with their own product (float32: weights laid out
    in panels, tiles of rows and their remainder, columns padded: H = 130, I = 13, B = 11) or
    at::mm (float64), and the weight-gradient sums made block by block (blocks of 3 steps that do
    not divide T = 19, or of one step), give the Python loops' outputs and gradients, with items
    of different lengths too; a stack of two layers, so the input's gradient is checked as well."""
    _native_or_skip()
    monkeypatch.setattr(fused, "LSTM_SLICES", slices)
    monkeypatch.setattr(fused, "SUM_ROWS", sum_rows)
    torch.manual_seed(0)
    model = LSTM(input_size=13, hidden_size=130, num_layers=2, fused=True).to(dtype)
    x = torch.randn(11, 19, 13, dtype=dtype)
    lengths = None if lengths is None else torch.tensor(lengths)
    assert fused._lays_out(x, 11, 19) == (dtype == torch.float32)
    _assert_compiled_equals_python_loops(monkeypatch, model, x, lengths, 1e-12 if dtype == torch.float64 else 2e-5)


def _assert_compiled_equals_python_loops(monkeypatch, model, x, lengths, tol):
    from seqlab.recurrent import native

    assert fused._compiled(x) is not None  # not fallen back to the Python loops (they passed their check)
    compiled = _lstm_grads(model, x, lengths)
    monkeypatch.setattr(native, "ops", lambda: None)
    plain = _lstm_grads(model, x, lengths)
    for a, b in zip(compiled, plain):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)


@pytest.mark.parametrize("slices", [1, 2, 3])
def test_lstm_compiled_loops_raise_an_error_from_their_threads(slices):
    """An error inside the threads of a pass (here: an input of another dtype, read in the step's
    product) ends every thread at the same barrier and is raised to Python, from one thread or
    several (no thread left waiting at a barrier); the loops work again afterwards."""
    native = _native_or_skip()
    ops = native.ops()
    T, B, I, H = 4, 3, 5, 128
    g = torch.Generator().manual_seed(0)
    w_x, W, b = torch.randn(4 * H, I, generator=g), torch.randn(4 * H, H, generator=g), torch.zeros(4 * H)

    def run(X):
        G, tc, out = torch.empty(T, B, 4 * H), torch.empty(T, B, H), torch.empty(B, T, H)
        hs, cs = torch.zeros(T + 1, B, H), torch.zeros(T + 1, B, H)
        ops.lstm_forward(X, w_x, W, b, True, G, hs, cs, tc, out, [], slices)
        return out

    X = torch.randn(T * B, I, generator=g)
    with pytest.raises(RuntimeError, match="Float|Double|float|double"):
        run(X.double())
    out = run(X)
    assert torch.isfinite(out).all() and out.abs().max() > 0


def test_lstm_compiled_loops_lay_out_their_weights_for_passes_of_several_steps():
    """The compiled loops' own product needs the weights laid out once per pass: a single step
    (generation) and passes of few rows in all keep at::mm, and so does float64."""
    x = torch.zeros(1)
    assert not fused._lays_out(x, 64, 1)
    assert not fused._lays_out(x, 1, 3) and not fused._lays_out(x, 2, 2)
    assert fused._lays_out(x, 1, 8) and fused._lays_out(x, 4, 2) and fused._lays_out(x, 32, 64)
    assert not fused._lays_out(x.double(), 32, 64)


def test_onednn_is_used_where_pytorch_has_it(monkeypatch):
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64") or not torch.backends.mkldnn.is_available():
        pytest.skip("oneDNN's products are used on x86-64 CPUs only")
    monkeypatch.setattr(fused, "_ONEDNN", None)
    monkeypatch.delenv("SEQLAB_ONEDNN", raising=False)
    assert fused._onednn_usable()
    monkeypatch.setattr(fused, "_ONEDNN", None)
    monkeypatch.setenv("SEQLAB_ONEDNN", "0")
    assert not fused._onednn_usable()
    assert fused._Linear(torch.randn(4, 3), 2, 100).packed is None


def test_lstm_packs_its_weights_for_long_sequences_only(monkeypatch):
    """Packing W for oneDNN costs as much as several steps' products: a pass of fewer than
    MIN_STEPS steps (generation feeds one step a call), or of a single row, keeps torch.mm."""
    monkeypatch.setattr(fused, "_ONEDNN", None)
    monkeypatch.delenv("SEQLAB_ONEDNN", raising=False)
    if not fused._onednn_usable():
        pytest.skip("no oneDNN products on this machine")
    w = torch.randn(4 * 128, 128)
    assert fused._Linear(w, 4, 1).packed is None
    assert fused._Linear(w, 4, fused._Linear.MIN_STEPS - 1).packed is None
    assert fused._Linear(w, 4, fused._Linear.MIN_STEPS).packed is not None
    assert fused._Linear(w, 1, 100).packed is None


@pytest.mark.parametrize("path", ["compiled", "pytorch-ops", "float32"])
def test_lstm_backward_twice_through_one_graph(monkeypatch, path):
    """The LSTM's backward overwrites the gate activations it kept with dC/dz; a second backward
    through the same graph (retain_graph) recomputes them and gives the same gradients."""
    from seqlab.recurrent import native

    if path == "pytorch-ops":
        monkeypatch.setattr(native, "ops", lambda: None)
    dtype = torch.float64
    if path == "float32":  # the compiled loops' own product and block sums (blocks of 2 steps)
        monkeypatch.setattr(fused, "SUM_ROWS", 10)
        dtype = torch.float32
    torch.manual_seed(0)
    model = LSTM(input_size=6, hidden_size=16, fused=True).to(dtype)
    x = torch.randn(5, 7, 6, dtype=dtype, requires_grad=True)
    out, (h, c) = model(x, torch.tensor([7, 3, 7, 1, 5]))
    loss = (out * torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out)).sum() + h.sum() + c.sum()
    grads = []
    for retain in (True, False):
        loss.backward(retain_graph=retain)
        grads.append([x.grad.clone()] + [p.grad.clone() for p in model.parameters()])
        x.grad = None
        model.zero_grad(set_to_none=True)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def _native_or_skip():
    from seqlab.recurrent import native

    if native.ops() is None:
        pytest.skip("the LSTM's compiled loops are not available here (no C++ compiler?)")
    return native


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("lengths", [None, [7, 3, 7, 1, 5]])
def test_lstm_compiled_step_equals_pytorch_operations(monkeypatch, dtype, lengths):
    """The LSTM's loops compiled (seqlab.recurrent.native) give what the same
    equations give as PyTorch operations: outputs, final states and every gradient."""
    _native_or_skip()
    torch.manual_seed(0)
    model = LSTM(input_size=6, hidden_size=16, num_layers=2, fused=True).to(dtype)
    x = torch.randn(5, 7, 6, dtype=dtype)
    lengths = None if lengths is None else torch.tensor(lengths)
    _assert_compiled_equals_python_loops(monkeypatch, model, x, lengths, 1e-12 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("batch_sizes", [None, (3, 3, 2, 1, 1), (3, 2, 2, 0, 0)], ids=["full", "var", "var-tail"])
def test_lstm_gradcheck_without_the_compiled_step(monkeypatch, batch_sizes):
    """gradcheck of the LSTM's PyTorch-operations path (the default gradcheck above runs the
    compiled loops where they are available)."""
    from seqlab.recurrent import native

    monkeypatch.setattr(native, "ops", lambda: None)
    test_gradcheck("lstm", batch_sizes)


def test_lstm_compiled_step_off_or_unbuildable_falls_back(monkeypatch, capsys):
    """SEQLAB_NATIVE=0 turns the compiled loops off; a failed build says so once, in one line, and
    the LSTM runs on PyTorch's operations."""
    from seqlab.recurrent import native

    monkeypatch.setattr(native, "_OPS", None)
    monkeypatch.setenv("SEQLAB_NATIVE", "0")
    assert native.ops() is None and not native.usable(torch.zeros(1))
    monkeypatch.setattr(native, "_OPS", None)
    monkeypatch.delenv("SEQLAB_NATIVE")
    import torch.utils.cpp_extension as ext

    def broken(*args, **kwargs):
        raise RuntimeError("Error building extension 'x': no compiler\nmore lines")

    monkeypatch.setattr(ext, "load_inline", broken)
    assert native.ops() is None and native.ops() is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if "not available here" in line]) == 1
    assert "no compiler" in err[-1] and "more lines" not in err[-1]
    model = LSTM(input_size=3, hidden_size=4)
    out, _ = model(torch.randn(2, 3, 3))
    assert out.shape == (2, 3, 4)


def test_lstm_compiled_sigmoid_is_as_accurate_as_pytorchs():
    """The compiled loops' own float32 sigmoid (range reduction and a polynomial, vectorised with
    the rest of the step): within float32's rounding of the exact value, as torch.sigmoid is;
    NaN stays NaN, sigmoid(-inf) = 0 and sigmoid(inf) = 1."""
    native = _native_or_skip()
    ops = native.ops()
    x = torch.linspace(-87, 100, 400_001)
    exact = torch.sigmoid(x.double())
    ours, theirs = ops.step_sigmoid(x).double(), torch.sigmoid(x).double()
    rel = lambda y: ((y - exact).abs() / exact).max().item()  # noqa: E731
    assert rel(ours) <= 2e-7 and rel(ours) <= 1.5 * rel(theirs)
    tail = torch.linspace(-200, -87, 1001)
    assert (ops.step_sigmoid(tail).double() - torch.sigmoid(tail.double())).abs().max().item() < 1e-38
    special = ops.step_sigmoid(torch.tensor([float("nan"), -float("inf"), float("inf"), 0.0]))
    assert special[0].isnan() and special[1:].tolist() == [0.0, 1.0, 0.5]
    xd = torch.linspace(-40, 40, 10_001, dtype=torch.float64)
    torch.testing.assert_close(ops.step_sigmoid(xd), torch.sigmoid(xd), atol=1e-15, rtol=1e-15)


def test_lstm_compiled_loops_that_fail_their_check_are_not_used(monkeypatch, capsys):
    """The compiled loops are checked once per process against the Python loops; loops that raise
    (an ATen call another PyTorch does not have) or compute something else are not
    used: one line says so, and the LSTM gives the Python loops' results."""
    from seqlab.recurrent import native

    real = _native_or_skip().ops()

    class Broken:
        def __init__(self, fail):
            self.fail = fail

        def lstm_forward(self, *args):
            if self.fail == "raise":
                raise RuntimeError("Tried to access or call an operator with a wrong signature\nmore")
            real.lstm_forward(*args)
            args[5].mul_(1.5)  # wrong activations (G)

        def lstm_backward(self, *args):
            return real.lstm_backward(*args)

    torch.manual_seed(0)
    model = LSTM(input_size=6, hidden_size=16, fused=True)
    x = torch.randn(5, 7, 6)
    monkeypatch.setattr(fused, "_VERIFIED", {})
    monkeypatch.setattr(native, "ops", lambda: None)
    plain = _lstm_grads(model, x, None)
    for fail, said in (("raise", "wrong signature"), ("wrong", "results differ")):
        broken = Broken(fail)
        monkeypatch.setattr(native, "ops", lambda: broken)
        got = _lstm_grads(model, x, None)
        assert fused._VERIFIED == {id(broken): False}
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "fail their check" in err[0] and said in err[0] and "more" not in err[0]
        for a, b in zip(got, plain):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
        fused._VERIFIED.clear()


def test_lstm_compiled_loops_pass_their_check_here():
    """Where the compiled loops build, they pass their check against the Python loops (a failed
    check would fall back silently to the slower loops, and every equality test above would
    still pass)."""
    _native_or_skip()
    assert fused._compiled(torch.zeros(1)) is not None
    assert fused._compiled(torch.zeros(1, dtype=torch.float64)) is not None


@pytest.mark.parametrize("layout", ["expanded", "time-major", "batch-major"])
@pytest.mark.parametrize("lengths", [None, [7, 3, 7, 1, 5]])
def test_lstm_compiled_backward_reads_output_gradients_of_any_layout(monkeypatch, layout, lengths):
    """The compiled backward reads dC/d output batch first, row by row, without a copy where the
    rows are contiguous (a time-major gradient's view) and with one where they are not (the
    expanded gradient of out.sum()): the PyTorch-operations loop's gradients either way, also
    with items of different lengths (their padded positions' gradients ignored)."""
    from seqlab.recurrent import native

    _native_or_skip()
    torch.manual_seed(0)
    model = LSTM(input_size=6, hidden_size=16, fused=True).double()
    x = torch.randn(5, 7, 6, dtype=torch.float64)
    lengths = None if lengths is None else torch.tensor(lengths)
    g = torch.randn(7, 5, 16, dtype=torch.float64)

    def grads():
        xx = x.clone().requires_grad_(True)
        out, _ = model(xx, lengths)
        if layout == "expanded":
            out.sum().backward()
        else:
            w = g.transpose(0, 1) if layout == "time-major" else g.transpose(0, 1).contiguous()
            (out * w).sum().backward()
        result = [xx.grad] + [p.grad.clone() for p in model.parameters()]
        model.zero_grad(set_to_none=True)
        return result

    compiled = grads()
    monkeypatch.setattr(native, "ops", lambda: None)
    for a, b in zip(compiled, grads()):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_lstm_compiled_loops_first_used_by_several_threads_at_once(monkeypatch):
    """One thread runs the compiled loops' check; the others wait for its verdict (none uses the
    loops before it), and all get the same outputs."""
    import threading

    _native_or_skip()
    monkeypatch.setattr(fused, "_VERIFIED", {})
    torch.manual_seed(0)
    model = LSTM(input_size=6, hidden_size=16, fused=True)
    x = torch.randn(3, 5, 6)
    outs = []

    def run():
        outs.append(model(x)[0])

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outs) == 4 and list(fused._VERIFIED.values()) == [True]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=0, rtol=0)
