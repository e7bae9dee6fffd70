r"""The Elman recurrent network, exactly as the lecture writes it.

Lecture, "Recurrent Networks" (item i, time t = 1..t_i, feature j = 1..m):

    a_{t+1} = g(w^(a) . a_t + w^(x) . x_{t+1} + b^(a))                       (1)

with a_0 = 0 and g = tanh (or relu). Several layers: layer l reads layer l-1's
activations in place of x,

    a^(l)_{t+1} = g(w^(a)[l] . a^(l)_t + w^(x)[l] . a^(l-1)_{t+1} + b^(a)[l])    (2)

Outputs (see :class:`seqlab.recurrent.network.SequenceNetwork`): one output unit at the
end of each item, o = g(w^(o) . a_{t_i} + b^(o)), or one per step,
o_t = g(w^(o) . a_t + b^(o)).

Code names: ``w_x`` (H, I), ``w_a`` (H, H), ``b_a`` (H,) per layer; PyTorch's nn.RNN has two
biases whose sum is b^(a) (``from_torch`` adds them; ``to_torch`` puts b^(a) in
``bias_ih`` and zeros in ``bias_hh``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seqlab.recurrent import fused
from seqlab.recurrent._stack import (RecurrentStack, alive_mask, check_layer_sizes, keep_ended, uniform_,
                                    validate_stack_config)
from seqlab.validation import check_choice


@dataclass(frozen=True)
class RNNConfig:
    """Elman RNN stack.

    input_size: features m of x_t.  hidden_size: units H of a_t.  num_layers: L.
    nonlinearity: g, "tanh" or "relu".  dropout: on the outputs of every layer but the
    last, in training (as nn.RNN).  fused: the fast path (``fused.py``); False runs the
    readable per-step code below (same numbers, slower).
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    nonlinearity: str = "tanh"
    dropout: float = 0.0
    fused: bool = True

    def __post_init__(self) -> None:
        validate_stack_config(self)
        check_choice(self.nonlinearity, "nonlinearity", ("tanh", "relu"))


class ElmanLayer(nn.Module):
    """One recurrent layer: parameters w^(x), w^(a), b^(a) of equation (1)."""

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str) -> None:
        super().__init__()
        check_layer_sizes(input_size, hidden_size)
        check_choice(nonlinearity, "nonlinearity", ("tanh", "relu"))
        self.w_x = nn.Parameter(torch.empty(hidden_size, input_size))  # w^(x): (H, I)
        self.w_a = nn.Parameter(torch.empty(hidden_size, hidden_size))  # w^(a): (H, H)
        self.b_a = nn.Parameter(torch.empty(hidden_size))  # b^(a):  (H,)
        self.nonlinearity = nonlinearity
        uniform_(self, hidden_size)

    def reference(self, x, state, lengths):
        """The readable path: equation (1) step by step. x: (B, T, I)."""
        (a,) = state  # a_0: (B, H)
        g = torch.tanh if self.nonlinearity == "tanh" else torch.relu
        alive = alive_mask(lengths, x.shape[1], x.device)
        outputs = []
        for t in range(x.shape[1]):
            # a_{t+1} = g(w^(a) . a_t + w^(x) . x_{t+1} + b^(a))                  (B, H)
            a_next = g(a @ self.w_a.T + x[:, t] @ self.w_x.T + self.b_a)
            a, out = keep_ended(a_next, a, alive, t)
            outputs.append(out)
        return torch.stack(outputs, dim=1), (a,)  # (B, T, H), ((B, H),)

    def fused(self, x, state, lengths):
        relu = self.nonlinearity == "relu"
        return fused.run(fused.ElmanFunction, x, (self.w_x, self.w_a, self.b_a), state, lengths, relu)


class RNN(RecurrentStack):
    """Elman RNN stack, ``forward(x, lengths=None, *, state=None) -> (outputs, a_T)``.

    >>> rnn = RNN(input_size=3, hidden_size=5, num_layers=2)
    >>> out, a = rnn(torch.randn(4, 7, 3), lengths=[7, 5, 2, 7])
    >>> out.shape, a.shape
    (torch.Size([4, 7, 5]), torch.Size([2, 4, 5]))
    """

    config_class = RNNConfig
    family = "rnn"
    torch_class = nn.RNN

    def _make_layer(self, input_size: int) -> nn.Module:
        return ElmanLayer(input_size, self.config.hidden_size, self.config.nonlinearity)

    @classmethod
    def _config_from_torch(cls, module, **overrides):
        overrides.setdefault("nonlinearity", module.nonlinearity)
        return super()._config_from_torch(module, **overrides)

    @staticmethod
    def map_from_torch(theirs, config):
        ours = {}
        for l in range(config.num_layers):
            ours[f"layers.{l}.w_x"] = theirs[f"weight_ih_l{l}"]
            ours[f"layers.{l}.w_a"] = theirs[f"weight_hh_l{l}"]
            # b^(a) = b_ih + b_hh
            ours[f"layers.{l}.b_a"] = theirs[f"bias_ih_l{l}"] + theirs[f"bias_hh_l{l}"]
        return ours

    @staticmethod
    def map_to_torch(ours, config):
        theirs = {}
        for l in range(config.num_layers):
            theirs[f"weight_ih_l{l}"] = ours[f"layers.{l}.w_x"]
            theirs[f"weight_hh_l{l}"] = ours[f"layers.{l}.w_a"]
            theirs[f"bias_ih_l{l}"] = ours[f"layers.{l}.b_a"]
            theirs[f"bias_hh_l{l}"] = torch.zeros_like(ours[f"layers.{l}.b_a"])
        return theirs

    def _new_torch_module(self):
        c = self.config
        return nn.RNN(c.input_size, c.hidden_size, c.num_layers, nonlinearity=c.nonlinearity,
                      batch_first=True, dropout=c.dropout)
