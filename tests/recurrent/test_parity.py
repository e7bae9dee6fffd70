"""Parity with PyTorch's built-ins: outputs, final states and every gradient.

float64: |ours - torch| <= 1e-10. float32: |ours - torch| <= 1e-5 (1 + max|torch|) per
quantity -- 1e-5 absolute for values of order one, 1e-5 relative for large sums such as
bias gradients over many steps (float32 cannot do better than ~1e-7 relative, and a
different summation order changes the last bits). One and several layers, full-length
and packed variable-length batches, both the readable and the fused path."""

import zlib

import pytest
import torch
from torch import nn

from seqlab.recurrent import GRU, LSTM, RNN
from seqlab.testing import recurrent_parity

CASES = [
    ("rnn-tanh", RNN, lambda I, H, L: nn.RNN(I, H, L, batch_first=True)),
    ("rnn-relu", RNN, lambda I, H, L: nn.RNN(I, H, L, batch_first=True, nonlinearity="relu")),
    ("lstm", LSTM, lambda I, H, L: nn.LSTM(I, H, L, batch_first=True)),
    ("gru", GRU, lambda I, H, L: nn.GRU(I, H, L, batch_first=True)),
]
TOL = {torch.float64: (1e-10, 0.0), torch.float32: (1e-5, 1e-5)}  # (atol, rtol)


def _state(cls, L, B, H, dtype, gen):
    s = torch.randn(L, B, H, generator=gen, dtype=dtype)
    return (s, torch.randn(L, B, H, generator=gen, dtype=dtype)) if cls is LSTM else s


@pytest.mark.parametrize("name,cls,make", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("variable", [False, True], ids=["full", "packed"])
def test_parity_with_torch(name, cls, make, dtype, layers, fused, variable):
    seed = zlib.crc32(f"{name}-{layers}-{variable}".encode())  # stable across processes
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    B, T, I, H = 5, 9, 4, 6
    theirs = make(I, H, layers).to(dtype)
    ours = cls.from_torch(theirs, fused=fused)
    x = torch.randn(B, T, I, generator=gen, dtype=dtype)
    lengths = torch.tensor([9, 4, 1, 7, 9]) if variable else None
    report = recurrent_parity(ours, theirs, x, lengths=lengths, state=_state(cls, layers, B, H, dtype, gen))
    report.check(*TOL[dtype])
    # the report covers every PyTorch parameter
    assert set(report.grad_params) == {k for k, _ in theirs.named_parameters()}


@pytest.mark.parametrize("name,cls,make", CASES, ids=[c[0] for c in CASES])
def test_parity_longer_sequences_float32(name, cls, make):
    """Realistic sizes in float32 (the precision people train in)."""
    torch.manual_seed(1)
    theirs = make(16, 32, 2)
    ours = cls.from_torch(theirs)
    x = torch.randn(8, 60, 16)
    recurrent_parity(ours, theirs, x, lengths=torch.randint(1, 61, (8,))).check(*TOL[torch.float32])


@pytest.mark.parametrize("name,cls,make", CASES, ids=[c[0] for c in CASES])
def test_to_torch_round_trip(name, cls, make):
    torch.manual_seed(2)
    theirs = make(3, 5, 2).double()
    ours = cls.from_torch(theirs)
    back = ours.to_torch()
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    o1, _ = theirs(x)
    o2, _ = back(x)
    torch.testing.assert_close(o1, o2, atol=1e-12, rtol=0)
    recurrent_parity(ours, back, x).check(atol=1e-10)


def test_packed_sequence_input_returns_packed_output():
    torch.manual_seed(3)
    theirs = nn.LSTM(3, 4, batch_first=True)
    ours = LSTM.from_torch(theirs)
    x = torch.randn(3, 5, 3)
    packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor([5, 2, 3]), batch_first=True, enforce_sorted=False)
    o1, (h1, c1) = ours(packed)
    o2, (h2, c2) = theirs(packed)
    assert isinstance(o1, nn.utils.rnn.PackedSequence)
    torch.testing.assert_close(o1.data, o2.data, atol=1e-6, rtol=0)
    torch.testing.assert_close(h1, h2, atol=1e-6, rtol=0)
    torch.testing.assert_close(c1, c2, atol=1e-6, rtol=0)


def test_gru_lecture_form_differs_from_pytorch_form():
    """The lecture's reset-before GRU is a different function from nn.GRU's reset-after."""
    torch.manual_seed(4)
    after = GRU(input_size=3, hidden_size=4, reset="after").double()
    before = GRU(input_size=3, hidden_size=4, reset="before").double()
    sd = {k: v for k, v in after.state_dict().items() if k in before.state_dict()}
    before.load_state_dict(sd)
    with torch.no_grad():
        for layer in after.layers:
            layer.b_G.zero_()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    assert (after(x)[0] - before(x)[0]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="reset='after'.*received reset='before'"):
        before.to_torch()


def test_from_torch_rejects_unsupported_modules():
    with pytest.raises(ValueError, match="expected a torch.nn.LSTM, received GRU"):
        LSTM.from_torch(nn.GRU(2, 3))
    with pytest.raises(ValueError, match="unidirectional.*bidirectional=True"):
        RNN.from_torch(nn.RNN(2, 3, bidirectional=True))
    with pytest.raises(ValueError, match="proj_size=0.*proj_size=2"):
        LSTM.from_torch(nn.LSTM(2, 3, proj_size=2))
    with pytest.raises(ValueError, match="reset"):
        GRU.from_torch(nn.GRU(2, 3), reset="before")


def test_from_torch_without_bias():
    torch.manual_seed(5)
    theirs = nn.LSTM(3, 4, batch_first=True, bias=False).double()
    ours = LSTM.from_torch(theirs)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], atol=1e-12, rtol=0)
