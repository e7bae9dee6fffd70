r"""Gated recurrent unit, in the lecture's equations.

Lecture, "Gated Recurrent Unit and Long Short Term Memory" (g = sigmoid for the gates,
tanh for the candidate a^(g)):

    a^(z)_t = g(w^(z) . x_t + w^(Z) . a^(h)_{t-1} + b^(z))                  update gate
    a^(r)_t = g(w^(r) . x_t + w^(R) . a^(h)_{t-1} + b^(r))                  reset gate
    a^(g)_t = g(w^(g) . x_t + w^(G) . (a^(r)_t * a^(h)_{t-1}) + b^(g))      candidate
    a^(h)_t = (1 - a^(z)_t) * a^(h)_{t-1} + a^(z)_t * a^(g)_t

Two differences from PyTorch's nn.GRU, which computes

    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))              reset AFTER w^(G)
    h_t = (1 - z'_t) * n_t + z'_t * h_{t-1}                                 keeps z' of the old state

1. Where the reset gate acts. The lecture's form (``reset="before"``, the default) resets
   the state before the product with w^(G); PyTorch's (``reset="after"``) resets the product
   w^(G) . a^(h)_{t-1} + b^(G), which needs a separate recurrent bias b^(G). The two are
   different functions; ``GRU(reset="after")`` computes PyTorch's exactly.
2. Which share of the old state is kept: 1 - a^(z) here, z' in PyTorch. The mapping is
   exact because sigmoid(-u) = 1 - sigmoid(u): a^(z) = 1 - z' when w^(z) = -W_iz,
   w^(Z) = -W_hz, b^(z) = -(b_iz + b_hz). ``from_torch`` / ``to_torch`` apply it.

Code names per layer: ``w_z``, ``w_Z``, ``b_z``, ``w_r``, ``w_R``, ``b_r``, ``w_g``, ``w_G``,
``b_g`` (and ``b_G`` when reset="after").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seqlab.recurrent import fused
from seqlab.recurrent._stack import (RecurrentStack, alive_mask, check_layer_sizes, keep_ended, uniform_,
                                    validate_stack_config)
from seqlab.validation import check_choice, fail


@dataclass(frozen=True)
class GRUConfig:
    """GRU stack. reset: "before" (the lecture's equations, default) or "after"
    (PyTorch's nn.GRU form). Other fields as in :class:`RNNConfig`."""

    input_size: int
    hidden_size: int
    num_layers: int = 1
    dropout: float = 0.0
    fused: bool = True
    reset: str = "before"

    def __post_init__(self) -> None:
        validate_stack_config(self)
        check_choice(self.reset, "reset", ("before", "after"))


class GRULayer(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, reset: str) -> None:
        super().__init__()
        check_layer_sizes(input_size, hidden_size)
        check_choice(reset, "reset", ("before", "after"))
        H, I = hidden_size, input_size
        for gate in ("z", "r", "g"):
            setattr(self, f"w_{gate}", nn.Parameter(torch.empty(H, I)))  # (H, I)
            setattr(self, f"w_{gate.upper()}", nn.Parameter(torch.empty(H, H)))  # (H, H)
            setattr(self, f"b_{gate}", nn.Parameter(torch.empty(H)))  # (H,)
        self.reset = reset
        if reset == "after":
            self.b_G = nn.Parameter(torch.empty(H))  # b^(G): bias inside the reset product
        uniform_(self, hidden_size)

    def reference(self, x, state, lengths):
        """The readable path, step by step. x: (B, T, I)."""
        (h,) = state  # a^(h)_0: (B, H)
        alive = alive_mask(lengths, x.shape[1], x.device)
        outputs = []
        for t in range(x.shape[1]):
            x_t = x[:, t]
            # a^(z)_t = g(w^(z) . x_t + w^(Z) . a^(h)_{t-1} + b^(z))
            z = torch.sigmoid(x_t @ self.w_z.T + h @ self.w_Z.T + self.b_z)
            # a^(r)_t = g(w^(r) . x_t + w^(R) . a^(h)_{t-1} + b^(r))
            r = torch.sigmoid(x_t @ self.w_r.T + h @ self.w_R.T + self.b_r)
            if self.reset == "before":
                # a^(g)_t = g(w^(g) . x_t + w^(G) . (a^(r)_t * a^(h)_{t-1}) + b^(g))
                g = torch.tanh(x_t @ self.w_g.T + (r * h) @ self.w_G.T + self.b_g)
            else:
                # PyTorch's form: a^(g)_t = g(w^(g) . x_t + b^(g) + a^(r)_t * (w^(G) . a^(h)_{t-1} + b^(G)))
                g = torch.tanh(x_t @ self.w_g.T + self.b_g + r * (h @ self.w_G.T + self.b_G))
            # a^(h)_t = (1 - a^(z)_t) * a^(h)_{t-1} + a^(z)_t * a^(g)_t
            h_next = (1 - z) * h + z * g
            h, out = keep_ended(h_next, h, alive, t)
            outputs.append(out)
        return torch.stack(outputs, dim=1), (h,)

    def fused(self, x, state, lengths):
        if self.reset == "before":
            w_x = torch.cat([self.w_g, self.w_z, self.w_r])  # (3H, I) rows (g, z, r)
            w_zr = torch.cat([self.w_Z, self.w_R])  # (2H, H)
            b = torch.cat([self.b_g, self.b_z, self.b_r])
            return fused.run(fused.GRUFunction, x, (w_x, w_zr, self.w_G, b), state, lengths)
        w_x = torch.cat([self.w_g, self.w_z, self.w_r])  # (3H, I) rows (g, z, r)
        w_a = torch.cat([self.w_Z, self.w_R, self.w_G])  # (3H, H) rows (z, r, G)
        b = torch.cat([self.b_g, self.b_z, self.b_r])
        return fused.run(fused.GRUResetAfterFunction, x, (w_x, w_a, b, self.b_G), state, lengths)


class GRU(RecurrentStack):
    """GRU stack, ``forward(x, lengths=None, *, state=None) -> (outputs, h_T)``.

    ``GRU.from_torch(nn.GRU(...))`` returns a ``reset="after"`` GRU computing exactly what
    the PyTorch module computes; ``to_torch()`` exists only for that form (nn.GRU cannot
    compute the lecture's reset-before GRU)."""

    config_class = GRUConfig
    family = "gru"
    torch_class = nn.GRU

    def _make_layer(self, input_size: int) -> nn.Module:
        return GRULayer(input_size, self.config.hidden_size, self.config.reset)

    @classmethod
    def _config_from_torch(cls, module, **overrides):
        if overrides.get("reset", "after") != "after":
            fail("reset", "'after' (nn.GRU applies the reset gate after w^(G))", repr(overrides["reset"]))
        overrides["reset"] = "after"
        return super()._config_from_torch(module, **overrides)

    @staticmethod
    def map_from_torch(theirs, config):
        ours = {}
        for l in range(config.num_layers):
            W_ir, W_iz, W_in = theirs[f"weight_ih_l{l}"].chunk(3)  # PyTorch's order (r, z, n)
            W_hr, W_hz, W_hn = theirs[f"weight_hh_l{l}"].chunk(3)
            b_ir, b_iz, b_in = theirs[f"bias_ih_l{l}"].chunk(3)
            b_hr, b_hz, b_hn = theirs[f"bias_hh_l{l}"].chunk(3)
            p = f"layers.{l}."
            # a^(z) = 1 - z' = sigmoid(-(W_iz x + b_iz + W_hz h + b_hz))
            ours[p + "w_z"], ours[p + "w_Z"], ours[p + "b_z"] = -W_iz, -W_hz, -(b_iz + b_hz)
            ours[p + "w_r"], ours[p + "w_R"], ours[p + "b_r"] = W_ir, W_hr, b_ir + b_hr
            ours[p + "w_g"], ours[p + "w_G"], ours[p + "b_g"] = W_in, W_hn, b_in
            ours[p + "b_G"] = b_hn
        return ours

    @staticmethod
    def map_to_torch(ours, config):
        theirs = {}
        for l in range(config.num_layers):
            p = f"layers.{l}."
            zero = torch.zeros_like(ours[p + "b_r"])
            theirs[f"weight_ih_l{l}"] = torch.cat([ours[p + "w_r"], -ours[p + "w_z"], ours[p + "w_g"]])
            theirs[f"weight_hh_l{l}"] = torch.cat([ours[p + "w_R"], -ours[p + "w_Z"], ours[p + "w_G"]])
            theirs[f"bias_ih_l{l}"] = torch.cat([ours[p + "b_r"], -ours[p + "b_z"], ours[p + "b_g"]])
            theirs[f"bias_hh_l{l}"] = torch.cat([zero, zero, ours[p + "b_G"]])
        return theirs

    def to_torch(self) -> nn.Module:
        if self.config.reset != "after":
            fail(
                "GRU.to_torch",
                "a GRU with reset='after' (nn.GRU computes only PyTorch's reset-after form)",
                "reset='before' (the lecture's form)",
            )
        return super().to_torch()

    def _new_torch_module(self):
        c = self.config
        return nn.GRU(c.input_size, c.hidden_size, c.num_layers, batch_first=True, dropout=c.dropout)
