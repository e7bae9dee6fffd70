"""One parity helper for every model that has a PyTorch built-in twin.

``recurrent_parity(ours, theirs, x, lengths=..., state=...)`` runs both modules on the
same input, backpropagates the same random output gradient through both, and returns the
largest differences of outputs, final states, input gradients, initial-state gradients
and parameter gradients. Parameter gradients are compared in PyTorch's layout: seqlab's
``map_from_torch`` (PyTorch weights -> ours) is a pure tensor function, so its adjoint
(obtained with autograd) maps our gradients to the gradients PyTorch must have.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass
class ParityReport:
    """Largest absolute differences per quantity, and the largest magnitude of PyTorch's
    value of each (``scales``), so a check can be absolute, relative or both."""

    outputs: float = 0.0
    state: float = 0.0
    grad_x: float = 0.0
    grad_state: float = 0.0
    grad_params: dict[str, float] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)

    @property
    def worst(self) -> float:
        return max(self.as_dict().values())

    def check(self, atol: float, rtol: float = 0.0) -> None:
        """Raise AssertionError naming every quantity k whose difference exceeds
        atol + rtol * max|torch's value of k|."""
        bad = {}
        for k, v in self.as_dict().items():
            tol = atol + rtol * self.scales.get(k, 0.0)
            if not v <= tol:
                bad[k] = f"{v:.3g} > {tol:.3g}"
        if bad:
            raise AssertionError(f"parity differences above atol={atol:g}, rtol={rtol:g}: {bad}")

    def as_dict(self) -> dict[str, float]:
        d = {"outputs": self.outputs, "state": self.state, "grad_x": self.grad_x, "grad_state": self.grad_state}
        d.update({f"grad[{k}]": v for k, v in self.grad_params.items()})
        return d


def _as_tuple(s):
    return s if isinstance(s, tuple) else (s,)


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise AssertionError(f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a.detach() - b.detach()).abs().max()) if a.numel() else 0.0


def _scale(*ts: torch.Tensor) -> float:
    return max((float(t.detach().abs().max()) for t in ts if t is not None and t.numel()), default=0.0)


def recurrent_parity(ours: nn.Module, theirs: nn.Module, x: torch.Tensor, *, lengths=None,
                     state=None, seed: int = 0) -> ParityReport:
    """Compare a seqlab recurrent stack with its torch.nn twin (batch_first), forward and
    backward. ``state``: optional initial state ((L, B, H), or a pair for the LSTM)."""
    if not getattr(theirs, "batch_first", False):
        raise ValueError("theirs: expected a batch_first=True module")
    gen = torch.Generator().manual_seed(seed)
    T = x.shape[1]
    x1 = x.detach().clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    s1 = s2 = None
    if state is not None:
        s1 = tuple(s.detach().clone().requires_grad_(True) for s in _as_tuple(state))
        s2 = tuple(s.detach().clone().requires_grad_(True) for s in _as_tuple(state))

    out1, fin1 = ours(x1, lengths, state=None if s1 is None else (s1 if len(s1) > 1 else s1[0]))
    if lengths is None:
        out2, fin2 = theirs(x2, None if s2 is None else (s2 if len(s2) > 1 else s2[0]))
    else:
        packed = pack_padded_sequence(x2, torch.as_tensor(lengths), batch_first=True, enforce_sorted=False)
        out2, fin2 = theirs(packed, None if s2 is None else (s2 if len(s2) > 1 else s2[0]))
        out2, _ = pad_packed_sequence(out2, batch_first=True, total_length=T)
    fin1, fin2 = _as_tuple(fin1), _as_tuple(fin2)

    report = ParityReport()
    report.outputs = _maxdiff(out1, out2)
    report.state = max(_maxdiff(a, b) for a, b in zip(fin1, fin2))
    report.scales["outputs"], report.scales["state"] = _scale(out2), _scale(*fin2)

    # the same random cotangent for outputs and final states
    g_out = torch.randn(out1.shape, generator=gen, dtype=out1.dtype).to(out1.device)
    g_fin = [torch.randn(f.shape, generator=gen, dtype=f.dtype).to(f.device) for f in fin1]
    loss1 = (out1 * g_out).sum() + sum((f * g).sum() for f, g in zip(fin1, g_fin))
    loss2 = (out2 * g_out).sum() + sum((f * g).sum() for f, g in zip(fin2, g_fin))
    p1 = dict(ours.named_parameters())
    p2 = dict(theirs.named_parameters())
    inputs1 = [x1, *(s1 or ()), *p1.values()]
    inputs2 = [x2, *(s2 or ()), *p2.values()]
    grads1 = torch.autograd.grad(loss1, inputs1, allow_unused=True)
    grads2 = torch.autograd.grad(loss2, inputs2, allow_unused=True)
    n_s = len(s1 or ())
    report.grad_x = _maxdiff(grads1[0], grads2[0])
    report.scales["grad_x"] = _scale(grads2[0])
    if n_s:
        report.grad_state = max(_maxdiff(a, b) for a, b in zip(grads1[1 : 1 + n_s], grads2[1 : 1 + n_s]))
        report.scales["grad_state"] = _scale(*grads2[1 : 1 + n_s])
    our_param_grads = dict(zip(p1.keys(), grads1[1 + n_s :]))
    their_param_grads = dict(zip(p2.keys(), grads2[1 + n_s :]))

    # expected PyTorch gradients = adjoint of map_from_torch applied to our gradients
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in theirs.state_dict().items()}
    mapped = type(ours).map_from_torch(theta, ours.config)
    names = [k for k in mapped if our_param_grads.get(k) is not None]
    expected = torch.autograd.grad(
        [mapped[k] for k in names], list(theta.values()),
        grad_outputs=[our_param_grads[k] for k in names], allow_unused=True,
    )
    for (k, _), e in zip(theta.items(), expected):
        got = their_param_grads.get(k)
        if got is None and e is None:
            continue
        e = torch.zeros_like(theta[k]) if e is None else e
        got = torch.zeros_like(theta[k]) if got is None else got
        report.grad_params[k] = _maxdiff(e, got)
        report.scales[f"grad[{k}]"] = _scale(got)
    return report
