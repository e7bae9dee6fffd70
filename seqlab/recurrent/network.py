r"""A whole recurrent network: a stack of recurrent layers plus the lecture's output units.

Lecture, "Recurrent Networks": "There can be either one output unit at the end of each
item

    o = g(w^(o) . a_{t_i} + b^(o)),

or t_i output units one for each activation unit

    o_t = g(w^(o) . a_t + b^(o))."

``output="last"`` takes a^(L)_{t_i} at each item's own length t_i; ``output="sequence"``
gives one output per step (padded steps are 0). The output activation g is "identity",
"sigmoid", "tanh" or "softmax"; :meth:`SequenceNetwork.loss` pairs it with its cost:
squared error for identity/tanh, binary cross-entropy for sigmoid, cross-entropy for
softmax (computed from the pre-activations, which is the numerically stable form).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.recurrent.gru import GRU, GRUConfig
from seqlab.recurrent.lstm import LSTM, LSTMConfig
from seqlab.recurrent.rnn import RNN, RNNConfig
from seqlab.validation import check_choice, check_int, check_tensor, fail, resolve_config, shape_str

CELLS = {"rnn": (RNN, RNNConfig), "lstm": (LSTM, LSTMConfig), "gru": (GRU, GRUConfig)}
OUTPUTS = ("last", "sequence")
ACTIVATIONS = ("identity", "sigmoid", "tanh", "softmax")


def stack_fields(cell: str, *, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 fused: bool = True, nonlinearity: str = "tanh", reset: str = "before", forget_bias: float = 0.0
                 ) -> dict:
    """The config fields of the ``cell``'s stack from one set of options (options of other cells
    are dropped)."""
    check_choice(cell, "cell", CELLS)
    common = dict(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, dropout=dropout, fused=fused)
    return {**common, **{"rnn": {"nonlinearity": nonlinearity}, "lstm": {"forget_bias": forget_bias},
                         "gru": {"reset": reset}}[cell]}


def build_stack(cell: str, **options):
    """RNN, LSTM or GRU from one set of options (options of other cells are ignored)."""
    fields = stack_fields(cell, **options)
    cls, config_cls = CELLS[cell]
    return cls(config_cls(**fields))


@dataclass(frozen=True)
class SequenceNetworkConfig:
    """cell: "rnn" | "lstm" | "gru"; input_size m; hidden_size H; output_size O;
    num_layers L; output: "last" | "sequence"; output_activation: g at the output units;
    nonlinearity (rnn), reset (gru), forget_bias (lstm), dropout, fused: see the cells."""

    cell: str
    input_size: int
    hidden_size: int
    output_size: int
    num_layers: int = 1
    output: str = "last"
    output_activation: str = "identity"
    nonlinearity: str = "tanh"
    reset: str = "before"
    forget_bias: float = 0.0
    dropout: float = 0.0
    fused: bool = True

    def __post_init__(self) -> None:
        check_choice(self.cell, "cell", CELLS)
        CELLS[self.cell][1](**stack_fields(self.cell, **self.stack_options()))  # the stack's own checks
        check_int(self.output_size, "output_size", minimum=1)
        check_choice(self.output, "output", OUTPUTS)
        check_choice(self.output_activation, "output_activation", ACTIVATIONS)

    def stack_options(self) -> dict:
        d = asdict(self)
        for k in ("cell", "output_size", "output", "output_activation"):
            d.pop(k)
        return d


class SequenceNetwork(nn.Module):
    """Recurrent layers + output units. ``forward(x, lengths=None)`` returns o: (B, O) for
    output="last", (B, T, O) for output="sequence"."""

    family = "sequence"

    def __init__(self, config: SequenceNetworkConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        self.config = resolve_config(config, kwargs, SequenceNetworkConfig, type(self).__name__)
        c = self.config
        self.core = build_stack(c.cell, **c.stack_options())
        self.w_o = nn.Parameter(torch.empty(c.output_size, c.hidden_size))  # w^(o): (O, H)
        self.b_o = nn.Parameter(torch.zeros(c.output_size))  # b^(o): (O,)
        nn.init.uniform_(self.w_o, -c.hidden_size**-0.5, c.hidden_size**-0.5)

    def pre_activation(self, x: torch.Tensor, lengths=None, *, state=None):
        """w^(o) . a + b^(o) at the output units, and the recurrent state."""
        a, state = self.core(x, lengths, state=state)  # a: (B, T, H)
        if self.config.output == "last":
            if lengths is None:
                a = a[:, -1]  # a_{t_i} with t_i = T: (B, H)
            else:
                idx = torch.as_tensor(lengths, device=a.device).long() - 1
                a = a[torch.arange(a.shape[0], device=a.device), idx]  # a_{t_i}: (B, H)
        # w^(o) . a_t + b^(o)
        return a @ self.w_o.T + self.b_o, state

    def forward(self, x: torch.Tensor, lengths=None, *, state=None) -> torch.Tensor:
        z, _ = self.pre_activation(x, lengths, state=state)
        # o = g(w^(o) . a + b^(o))
        g = self.config.output_activation
        if g == "identity":
            return z
        if g == "softmax":
            return torch.softmax(z, dim=-1)
        return torch.sigmoid(z) if g == "sigmoid" else torch.tanh(z)

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """batch = (x, y) or (x, y, lengths). y: class indices for softmax ((B,) or (B, T)),
        targets of o's shape otherwise. Padded steps (sequence output) carry no cost."""
        x, y, *rest = batch
        lengths = rest[0] if rest else None
        z, _ = self.pre_activation(x, lengths)
        c = self.config
        mask = None
        if c.output == "sequence" and lengths is not None:
            T = x.shape[1]
            mask = torch.arange(T, device=z.device)[None, :] < torch.as_tensor(lengths, device=z.device)[:, None]
        if c.output_activation == "softmax":
            if y.shape != z.shape[:-1]:
                fail("y", f"class indices of shape {tuple(z.shape[:-1])}", f"shape {shape_str(y)}")
            per = F.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1).long(), reduction="none").view(y.shape)
        else:
            check_tensor(y, "y", floating=True)
            if y.shape != z.shape:
                fail("y", f"targets of shape {tuple(z.shape)}", f"shape {shape_str(y)}")
            if c.output_activation == "sigmoid":
                per = F.binary_cross_entropy_with_logits(z, y, reduction="none").sum(-1)
            else:
                o = z if c.output_activation == "identity" else torch.tanh(z)
                per = 0.5 * ((o - y) ** 2).sum(-1)  # C = 1/2 sum (o - y)^2
        if mask is not None:
            loss = (per * mask).sum() / mask.sum()
        else:
            loss = per.mean()
        metrics = {}
        if c.output_activation == "softmax":
            pred = z.argmax(-1)
            correct = (pred == y) if mask is None else (pred == y) & mask
            total = y.numel() if mask is None else int(mask.sum())
            metrics["accuracy"] = float(correct.sum()) / max(total, 1)
        return loss, metrics
