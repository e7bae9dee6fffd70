r"""Long short-term memory, in the lecture's equations.

Lecture, "Gated Recurrent Unit and Long Short Term Memory" (g is the sigmoid for the
gates f, i, o and tanh for the candidate values a^(g) and the cell read-out):

    a^(f)_t = g(w^(f) . x_t + w^(F) . a^(h)_{t-1} + b^(f))       forget gate
    a^(i)_t = g(w^(i) . x_t + w^(I) . a^(h)_{t-1} + b^(i))       input gate
    a^(g)_t = g(w^(g) . x_t + w^(G) . a^(h)_{t-1} + b^(g))       new values for the memory
    a^(o)_t = g(w^(o) . x_t + w^(O) . a^(h)_{t-1} + b^(o))       output gate
    a^(c)_t = a^(f)_t * a^(c)_{t-1} + a^(i)_t * a^(g)_t           cell (long-term memory)
    a^(h)_t = a^(o)_t * g(a^(c)_t)                                hidden state

The cell is updated by addition, so its gradient through time is multiplied by a^(f)_t
(close to 1 when the gate is open) instead of by w^(a) and g' as in the Elman RNN: this
is why the LSTM's gradients vanish far more slowly (``seqlab gradflow`` measures it).

Code names per layer: ``w_f`` (H, I), ``w_F`` (H, H), ``b_f`` (H,), and the same for i, g, o.
PyTorch's nn.LSTM stacks the gates in the order (i, f, g, o) and has two biases whose
sum is ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seqlab.recurrent import fused
from seqlab.recurrent._stack import (RecurrentStack, alive_mask, check_layer_sizes, keep_ended, uniform_,
                                    validate_stack_config)
from seqlab.validation import check_float

GATES = ("i", "f", "g", "o")  # PyTorch's order of the stacked gate rows


@dataclass(frozen=True)
class LSTMConfig:
    """LSTM stack. input_size, hidden_size, num_layers, dropout and fused as in
    :class:`RNNConfig`; forget_bias: initial value of b^(f) (0 as PyTorch; 1 is a common
    choice that keeps the memory at the start of training)."""

    input_size: int
    hidden_size: int
    num_layers: int = 1
    dropout: float = 0.0
    fused: bool = True
    forget_bias: float = 0.0

    def __post_init__(self) -> None:
        validate_stack_config(self)
        check_float(self.forget_bias, "forget_bias", finite=True)


class LSTMLayer(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 0.0) -> None:
        super().__init__()
        check_layer_sizes(input_size, hidden_size)
        forget_bias = check_float(forget_bias, "forget_bias", finite=True)
        H, I = hidden_size, input_size
        for gate in GATES:
            setattr(self, f"w_{gate}", nn.Parameter(torch.empty(H, I)))  # w^(gate): (H, I)
            setattr(self, f"w_{gate.upper()}", nn.Parameter(torch.empty(H, H)))  # w^(GATE): (H, H)
            setattr(self, f"b_{gate}", nn.Parameter(torch.empty(H)))  # b^(gate): (H,)
        uniform_(self, hidden_size)
        if forget_bias:
            with torch.no_grad():
                self.b_f.fill_(forget_bias)

    def reference(self, x, state, lengths):
        """The readable path: the lecture's equations step by step. x: (B, T, I)."""
        h, c = state  # a^(h)_0, a^(c)_0: (B, H)
        alive = alive_mask(lengths, x.shape[1], x.device)
        outputs = []
        for t in range(x.shape[1]):
            x_t = x[:, t]  # (B, I)
            # a^(f)_t = g(w^(f) . x_t + w^(F) . a^(h)_{t-1} + b^(f))
            f = torch.sigmoid(x_t @ self.w_f.T + h @ self.w_F.T + self.b_f)
            # a^(i)_t = g(w^(i) . x_t + w^(I) . a^(h)_{t-1} + b^(i))
            i = torch.sigmoid(x_t @ self.w_i.T + h @ self.w_I.T + self.b_i)
            # a^(g)_t = g(w^(g) . x_t + w^(G) . a^(h)_{t-1} + b^(g))
            g = torch.tanh(x_t @ self.w_g.T + h @ self.w_G.T + self.b_g)
            # a^(o)_t = g(w^(o) . x_t + w^(O) . a^(h)_{t-1} + b^(o))
            o = torch.sigmoid(x_t @ self.w_o.T + h @ self.w_O.T + self.b_o)
            # a^(c)_t = a^(f)_t * a^(c)_{t-1} + a^(i)_t * a^(g)_t
            c_next = f * c + i * g
            # a^(h)_t = a^(o)_t * g(a^(c)_t)
            h_next = o * torch.tanh(c_next)
            c, _ = keep_ended(c_next, c, alive, t)
            h, out = keep_ended(h_next, h, alive, t)
            outputs.append(out)
        return torch.stack(outputs, dim=1), (h, c)  # (B, T, H), ((B, H), (B, H))

    def fused(self, x, state, lengths):
        # the fast path stacks the rows as (o, i, f, g): see fused.LSTMFunction
        w_x = torch.cat([self.w_o, self.w_i, self.w_f, self.w_g])  # (4H, I)
        w_a = torch.cat([self.w_O, self.w_I, self.w_F, self.w_G])  # (4H, H)
        b = torch.cat([self.b_o, self.b_i, self.b_f, self.b_g])  # (4H,)
        return fused.run(fused.LSTMFunction, x, (w_x, w_a, b), state, lengths)


class LSTM(RecurrentStack):
    """LSTM stack, ``forward(x, lengths=None, *, state=None) -> (outputs, (h_T, c_T))``."""

    config_class = LSTMConfig
    family = "lstm"
    torch_class = nn.LSTM
    n_states = 2

    def _make_layer(self, input_size: int) -> nn.Module:
        return LSTMLayer(input_size, self.config.hidden_size, self.config.forget_bias)

    @staticmethod
    def map_from_torch(theirs, config):
        ours = {}
        for l in range(config.num_layers):
            w_ih = theirs[f"weight_ih_l{l}"].chunk(4)
            w_hh = theirs[f"weight_hh_l{l}"].chunk(4)
            b = (theirs[f"bias_ih_l{l}"] + theirs[f"bias_hh_l{l}"]).chunk(4)
            for k, gate in enumerate(GATES):
                ours[f"layers.{l}.w_{gate}"] = w_ih[k]
                ours[f"layers.{l}.w_{gate.upper()}"] = w_hh[k]
                ours[f"layers.{l}.b_{gate}"] = b[k]
        return ours

    @staticmethod
    def map_to_torch(ours, config):
        theirs = {}
        for l in range(config.num_layers):
            p = f"layers.{l}."
            theirs[f"weight_ih_l{l}"] = torch.cat([ours[p + f"w_{g}"] for g in GATES])
            theirs[f"weight_hh_l{l}"] = torch.cat([ours[p + f"w_{g.upper()}"] for g in GATES])
            theirs[f"bias_ih_l{l}"] = torch.cat([ours[p + f"b_{g}"] for g in GATES])
            theirs[f"bias_hh_l{l}"] = torch.zeros_like(theirs[f"bias_ih_l{l}"])
        return theirs

    def _new_torch_module(self):
        c = self.config
        return nn.LSTM(c.input_size, c.hidden_size, c.num_layers, batch_first=True, dropout=c.dropout)
