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
