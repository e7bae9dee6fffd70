"""What RNN, LSTM and GRU share: input checks, lengths, stacking layers, the state.

A stack of L layers: layer l reads the outputs a^(l-1)_t of the layer below in place
of x_t (lecture: "the previous layer activation a^(l-1)_t can be used in place of x_t").
Shapes follow PyTorch's ``batch_first=True`` modules: x (B, T, I), outputs (B, T, H),
final state (L, B, H) (an LSTM returns the pair (h, c)).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqlab.validation import check_float, check_int, check_lengths, check_tensor, fail, resolve_config, shape_str


def validate_stack_config(cfg: Any) -> None:
    """Shared checks of the fields every recurrent config has."""
    check_int(cfg.input_size, "input_size", minimum=1)
    check_int(cfg.hidden_size, "hidden_size", minimum=1)
    check_int(cfg.num_layers, "num_layers", minimum=1)
    check_float(cfg.dropout, "dropout", minimum=0.0, maximum=1.0, open_max=True)
    if not isinstance(cfg.fused, bool):
        fail("fused", "True or False", repr(cfg.fused))


def check_layer_sizes(input_size: object, hidden_size: object) -> None:
    """The sizes of one recurrent layer (a layer built outside a stack is checked too)."""
    check_int(input_size, "input_size", minimum=1)
    check_int(hidden_size, "hidden_size", minimum=1)


def alive_mask(lengths: torch.Tensor | None, T: int, device: torch.device) -> torch.Tensor | None:
    """(B, T) bool: True where t < t_i, i.e. the step belongs to item i."""
    if lengths is None:
        return None
    return (torch.arange(T)[None, :] < lengths[:, None]).to(device)


def keep_ended(new: torch.Tensor, old: torch.Tensor, alive: torch.Tensor | None, t: int):
    """An item whose sequence ended (t >= t_i) keeps its state, and its output is 0.

    Returns (state, output). ``torch.where`` sends no gradient to the branch it did not
    take, so padded steps affect neither outputs nor gradients."""
    if alive is None:
        return new, new
    m = alive[:, t, None]  # (B, 1)
    return torch.where(m, new, old), torch.where(m, new, torch.zeros_like(new))


def _autocast_on(device: torch.device) -> bool:
    try:
        return torch.is_autocast_enabled(device.type)
    except TypeError:  # pragma: no cover - torch < 2.4
        return torch.is_autocast_enabled() if device.type == "cuda" else torch.is_autocast_cpu_enabled()


def uniform_(module: nn.Module, hidden_size: int) -> None:
    """PyTorch's initialisation for its recurrent modules: U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(hidden_size)
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)


class RecurrentStack(nn.Module):
    """Base class of :class:`RNN`, :class:`LSTM` and :class:`GRU`.

    Subclasses set ``config_class``, ``n_states`` (1, or 2 for the LSTM's (h, c)) and
    ``family``, and build ``self.layers`` (each with ``reference`` and ``fused``
    methods that take ``(x, state_tuple, lengths)`` and return ``(outputs, state_tuple)``).
    """

    config_class: ClassVar[type]
    family: ClassVar[str]
    n_states: ClassVar[int] = 1

    def __init__(self, config: Any = None, /, **kwargs: Any) -> None:
        super().__init__()
        config = resolve_config(config, kwargs, self.config_class, type(self).__name__)
        self.config = config
        self.layers = nn.ModuleList(
            self._make_layer(config.input_size if l == 0 else config.hidden_size) for l in range(config.num_layers)
        )

    @classmethod
    def from_config(cls, config: Any):
        return cls(config)

    # -- shape shortcuts ---------------------------------------------------------------
    @property
    def input_size(self) -> int:
        return self.config.input_size

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    def _make_layer(self, input_size: int) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- input checks --------------------------------------------------------------------
    def _check_x(self, x: object) -> torch.Tensor:
        x = check_tensor(x, "x", ndim=3, dims="(batch, time, features)", floating=True)
        B, T, I = x.shape
        if I != self.input_size:
            fail("x", f"{self.input_size} features in the last axis of (batch, time, features)", f"shape {shape_str(x)}")
        if T < 1 or B < 1:
            fail("x", "at least one item and one time step", f"shape {shape_str(x)}")
        param = next(self.parameters())
        if x.dtype != param.dtype and not _autocast_on(x.device):
            fail("x", f"dtype {param.dtype} (the model's parameters)", f"dtype {x.dtype}")
        check_tensor(x, "x", finite=True)
        return x

    def _check_state(self, state: object, x: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """The initial state, per layer, as tuples of (B, H) tensors (zeros if None)."""
        B = x.shape[0]
        L, H = self.num_layers, self.hidden_size
        if state is None:
            zeros = x.new_zeros(B, H)
            return [tuple(zeros for _ in range(self.n_states)) for _ in range(L)]
        if self.n_states == 1:
            tensors = (state,)
            names = ("state",)
        else:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                fail("state", "a pair (h_0, c_0) of (num_layers, batch, hidden) tensors", type(state).__name__)
            tensors = tuple(state)
            names = ("state h_0", "state c_0")
        for name, s in zip(names, tensors):
            check_tensor(s, name, ndim=3, dims="(num_layers, batch, hidden)", floating=True, finite=True)
            if tuple(s.shape) != (L, B, H):
                fail(name, f"shape ({L}, {B}, {H}) = (num_layers, batch, hidden)", f"shape {shape_str(s)}")
        return [tuple(s[l] for s in tensors) for l in range(L)]

    # -- forward -----------------------------------------------------------------------
    def forward(self, x, lengths=None, *, state=None):
        """Run the stack over a batch.

        x: (B, T, I) float tensor, or a ``PackedSequence`` (batch_first or not).
        lengths: t_i per item, (B,) ints in [1, T], or None when every item has T steps.
        state: initial state, (L, B, H) (LSTM: a pair), zeros if None.

        Returns ``(outputs, state)``: outputs (B, T, H) are the top layer's activations
        a^(L)_t (0 at padded steps; a ``PackedSequence`` if x was one); state holds every
        layer's activation at each item's own last step t_i, (L, B, H).
        """
        packed = isinstance(x, PackedSequence)
        if packed:
            if lengths is not None:
                fail("lengths", "None when x is a PackedSequence (it carries the lengths)", "a lengths argument")
            x, lengths = pad_packed_sequence(x, batch_first=True)
        x = self._check_x(x)
        B, T, _ = x.shape
        if lengths is not None:
            lengths = check_lengths(lengths, B, T)
        states = self._check_state(state, x)
        # all items full length: no masking needed
        run_lengths = None if lengths is None or bool((lengths == T).all()) else lengths
        out = x
        finals = []
        for l, layer in enumerate(self.layers):
            if l > 0 and self.config.dropout > 0 and self.training:
                out = F.dropout(out, self.config.dropout, training=True)
            step = layer.fused if self.config.fused else layer.reference
            out, final = step(out, states[l], run_lengths)
            finals.append(final)
        final_state = tuple(torch.stack([f[k] for f in finals]) for k in range(self.n_states))  # (L, B, H)
        if packed:
            out = pack_padded_sequence(out, lengths, batch_first=True, enforce_sorted=False)
        return out, (final_state if self.n_states > 1 else final_state[0])

    # -- PyTorch interop -------------------------------------------------------------------
    torch_class: ClassVar[type]

    @classmethod
    def _config_from_torch(cls, module: nn.Module, **overrides: Any) -> Any:
        if not isinstance(module, cls.torch_class):
            fail("module", f"a torch.nn.{cls.torch_class.__name__}", type(module).__name__)
        if module.bidirectional:
            fail("module", "a unidirectional module", "bidirectional=True")
        if getattr(module, "proj_size", 0):
            fail("module", "proj_size=0", f"proj_size={module.proj_size}")
        fields = dict(input_size=module.input_size, hidden_size=module.hidden_size,
                      num_layers=module.num_layers, dropout=float(module.dropout))
        fields.update(overrides)
        return cls.config_class(**fields)

    @classmethod
    def from_torch(cls, module: nn.Module, **config_overrides: Any):
        """A seqlab model computing exactly what ``module`` computes (weights mapped)."""
        config = cls._config_from_torch(module, **config_overrides)
        ref = next(module.parameters())
        model = cls(config).to(device=ref.device, dtype=ref.dtype)
        theirs = {k: v.detach() for k, v in module.state_dict().items()}
        if not module.bias:
            for l in range(config.num_layers):
                for kind in ("ih", "hh"):
                    theirs[f"bias_{kind}_l{l}"] = ref.new_zeros(module.weight_hh_l0.shape[0])
        with torch.no_grad():
            model.load_state_dict(cls.map_from_torch(theirs, config))
        return model

    def to_torch(self) -> nn.Module:
        """The equivalent ``torch.nn`` module (batch_first=True), weights mapped."""
        c = self.config
        module = self._new_torch_module()
        ref = next(self.parameters())
        module = module.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            module.load_state_dict(self.map_to_torch({k: v.detach() for k, v in self.state_dict().items()}, c))
        return module

    @staticmethod
    def map_from_torch(theirs: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:  # pragma: no cover
        """PyTorch state dict -> seqlab state dict. Pure tensor ops, so differentiable: the
        parity tests use its adjoint to map gradients."""
        raise NotImplementedError

    @staticmethod
    def map_to_torch(ours: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def _new_torch_module(self) -> nn.Module:  # pragma: no cover
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ", ".join(f"{f.name}={getattr(self.config, f.name)!r}" for f in dataclasses.fields(self.config))
