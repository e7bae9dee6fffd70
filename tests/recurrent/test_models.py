"""Shapes, input validation, and learning for RNN, LSTM, GRU, SequenceNetwork, CharLM."""

import math

import pytest
import torch

from seqlab.recurrent import GRU, LSTM, RNN
from seqlab.llm.sampling import sample_next
from seqlab.recurrent.charlm import CharLM, CharLMConfig
from seqlab.recurrent.network import SequenceNetwork

STACKS = [RNN, LSTM, GRU]


@pytest.mark.parametrize("cls", STACKS)
@pytest.mark.parametrize("fused", [True, False])
def test_shapes(cls, fused):
    m = cls(input_size=3, hidden_size=5, num_layers=2, fused=fused)
    out, state = m(torch.randn(4, 7, 3), lengths=[7, 5, 2, 7])
    assert out.shape == (4, 7, 5)
    states = state if isinstance(state, tuple) else (state,)
    assert len(states) == (2 if cls is LSTM else 1)
    assert all(s.shape == (2, 4, 5) for s in states)


@pytest.mark.parametrize("cls", STACKS)
def test_initial_state_is_used(cls):
    torch.manual_seed(0)
    m = cls(input_size=2, hidden_size=3)
    x = torch.randn(1, 4, 2)
    s = torch.randn(1, 1, 3)
    state = (s, s) if cls is LSTM else s
    assert not torch.allclose(m(x)[0], m(x, state=state)[0])


@pytest.mark.parametrize("cls", STACKS)
class TestBadInput:
    def model(self, cls):
        return cls(input_size=3, hidden_size=4, num_layers=2)

    def test_wrong_rank(self, cls):
        with pytest.raises(ValueError, match=r"x: expected a 3-D tensor \(batch, time, features\), received shape \(7, 3\)"):
            self.model(cls)(torch.randn(7, 3))

    def test_wrong_feature_size(self, cls):
        with pytest.raises(ValueError, match=r"x: expected 3 features .* received shape \(2, 5, 4\)"):
            self.model(cls)(torch.randn(2, 5, 4))

    def test_empty_sequence(self, cls):
        with pytest.raises(ValueError, match=r"at least one item and one time step, received shape \(2, 0, 3\)"):
            self.model(cls)(torch.randn(2, 0, 3))

    def test_nan_input(self, cls):
        x = torch.randn(2, 5, 3)
        x[1, 2, 0] = float("nan")
        with pytest.raises(ValueError, match="x: expected finite values, received 1 NaN or infinite"):
            self.model(cls)(x)

    def test_integer_input(self, cls):
        with pytest.raises(ValueError, match="x: expected a floating-point tensor, received dtype torch.int64"):
            self.model(cls)(torch.ones(2, 5, 3, dtype=torch.long))

    def test_dtype_mismatch(self, cls):
        with pytest.raises(ValueError, match="x: expected dtype torch.float32 .* received dtype torch.float64"):
            self.model(cls)(torch.randn(2, 5, 3, dtype=torch.float64))

    def test_lengths_above_T(self, cls):
        with pytest.raises(ValueError, match=r"lengths: expected every length <= T = 5 .* received maximum 6"):
            self.model(cls)(torch.randn(2, 5, 3), lengths=[6, 2])

    def test_lengths_below_one(self, cls):
        with pytest.raises(ValueError, match="lengths: expected every length >= 1, received minimum 0"):
            self.model(cls)(torch.randn(2, 5, 3), lengths=[0, 2])

    def test_lengths_wrong_count(self, cls):
        with pytest.raises(ValueError, match=r"lengths: expected one length per item \(2\), received 3 lengths"):
            self.model(cls)(torch.randn(2, 5, 3), lengths=[1, 2, 3])

    def test_lengths_not_integers(self, cls):
        with pytest.raises(ValueError, match="lengths: expected a 1-D integer tensor"):
            self.model(cls)(torch.randn(2, 5, 3), lengths=torch.tensor([1.0, 2.0]))

    def test_state_wrong_shape(self, cls):
        s = torch.zeros(1, 2, 4)
        state = (s, s) if cls is LSTM else s
        with pytest.raises(ValueError, match=r"expected shape \(2, 2, 4\) = \(num_layers, batch, hidden\), received shape \(1, 2, 4\)"):
            self.model(cls)(torch.randn(2, 5, 3), state=state)

    def test_bad_config(self, cls):
        with pytest.raises(ValueError, match="hidden_size: expected an integer >= 1, received 0"):
            cls(input_size=3, hidden_size=0)
        with pytest.raises(ValueError, match="dropout: expected a number < 1.0, received 1.5"):
            cls(input_size=3, hidden_size=2, dropout=1.5)


def test_lstm_state_must_be_a_pair():
    with pytest.raises(ValueError, match=r"state: expected a pair \(h_0, c_0\)"):
        LSTM(input_size=1, hidden_size=2)(torch.randn(1, 2, 1), state=torch.zeros(1, 1, 2))


def test_lengths_tuple_passed_as_state_gives_clear_error():
    """PyTorch users write lstm(x, (h0, c0)); here the second argument is lengths."""
    h = torch.zeros(1, 1, 2)
    with pytest.raises(ValueError, match="lengths: expected integers"):
        LSTM(input_size=1, hidden_size=2)(torch.randn(1, 2, 1), (h, h))


def test_dropout_only_in_training():
    torch.manual_seed(0)
    m = LSTM(input_size=2, hidden_size=8, num_layers=2, dropout=0.5)
    x = torch.randn(3, 4, 2)
    m.eval()
    torch.testing.assert_close(m(x)[0], m(x)[0])
    m.train()
    assert not torch.allclose(m(x)[0], m(x)[0])


# ------------------------------------------------------------------- SequenceNetwork
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_sequence_network_output_last_taken_at_own_length(cell):
    torch.manual_seed(0)
    net = SequenceNetwork(cell=cell, input_size=2, hidden_size=4, output_size=3, output="last").double()
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    o = net(x, lengths=[6, 2, 4])
    assert o.shape == (3, 3)
    for i, t_i in enumerate([6, 2, 4]):
        torch.testing.assert_close(o[i], net(x[i : i + 1, :t_i])[0], atol=1e-12, rtol=0)


def test_sequence_network_sequence_output_shape_and_softmax():
    net = SequenceNetwork(cell="gru", input_size=2, hidden_size=4, output_size=5, output="sequence",
                          output_activation="softmax")
    o = net(torch.randn(2, 7, 2))
    assert o.shape == (2, 7, 5)
    torch.testing.assert_close(o.sum(-1), torch.ones(2, 7))


def test_sequence_network_bad_targets():
    net = SequenceNetwork(cell="rnn", input_size=2, hidden_size=4, output_size=3, output="last",
                          output_activation="softmax")
    with pytest.raises(ValueError, match=r"y: expected class indices of shape \(2,\), received shape \(2, 3\)"):
        net.loss((torch.randn(2, 5, 2), torch.zeros(2, 3, dtype=torch.long)))
    with pytest.raises(ValueError, match="output: expected one of 'last', 'sequence', received 'all'"):
        SequenceNetwork(cell="rnn", input_size=2, hidden_size=4, output_size=3, output="all")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_learns_to_sum_a_sequence(cell):
    """Learning: a regression the network must integrate over time (sum of inputs)."""
    torch.manual_seed(0)
    net = SequenceNetwork(cell=cell, input_size=1, hidden_size=16, output_size=1, output="last")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)

    def batch():
        lengths = torch.randint(1, 9, (64,), generator=gen)
        x = torch.rand(64, 8, 1, generator=gen) - 0.5
        x = x * (torch.arange(8)[None, :, None] < lengths[:, None, None])
        return x, x.sum(1), lengths

    x_val, y_val, l_val = batch()
    baseline = float(0.5 * ((y_val - y_val.mean()) ** 2).sum(-1).mean())
    for _ in range(300):
        loss, _ = net.loss(batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final, _ = net.loss((x_val, y_val, l_val))
    assert float(final) < 0.1 * baseline


# ------------------------------------------------------------------- CharLM
def test_charlm_overfits_one_batch():
    torch.manual_seed(0)
    text = "hello world, hello seqlab. " * 4
    chars = sorted(set(text))
    ids = torch.tensor([[chars.index(c) for c in text]])
    model = CharLM(cell="lstm", vocab_size=len(chars), hidden_size=32)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    x, y = ids[:, :-1], ids[:, 1:]
    start, _ = model.loss((x, y))
    assert abs(start.item() - math.log(len(chars))) < 0.3  # starts near uniform
    for _ in range(150):
        loss, metrics = model.loss((x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    assert metrics["bpc"] == pytest.approx(loss.item() / math.log(2))
    # greedy generation reproduces the memorised text
    out = model.generate([chars.index(c) for c in "hello "], 5, temperature=0)
    assert "".join(chars[i] for i in out) == "world"


def test_charlm_bad_input_and_sampling_arguments():
    model = CharLM(cell="gru", vocab_size=5, hidden_size=4)
    with pytest.raises(ValueError, match=r"ids: expected character ids in \[0, 4\], received values in \[0, 7\]"):
        model.loss((torch.tensor([[0, 7]]), torch.tensor([[1, 2]])))
    with pytest.raises(ValueError, match="prompt: expected at least one character, received an empty prompt"):
        model.generate([], 3)
    with pytest.raises(ValueError, match="temperature: expected a number >= 0.0, received -1.0"):
        model.generate([1], 3, temperature=-1)
    with pytest.raises(ValueError, match="top_k: expected an integer >= 1, received 0"):
        model.generate([1], 3, top_k=0)
    with pytest.raises(ValueError, match="preset: expected one of"):
        CharLMConfig.preset("huge")


def test_sample_next_top_k_and_seed():
    logits = torch.tensor([0.0, 5.0, 4.9, -1.0])
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, temperature=1.0, top_k=2, generator=g) for _ in range(200)}
    assert draws == {1, 2}
    a = [sample_next(logits, temperature=2.0, top_k=None, generator=torch.Generator().manual_seed(7)) for _ in range(1)]
    b = [sample_next(logits, temperature=2.0, top_k=None, generator=torch.Generator().manual_seed(7)) for _ in range(1)]
    assert a == b
    assert sample_next(logits, temperature=0, top_k=None, generator=None) == 1
