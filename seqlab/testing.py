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


# -- any module with a torch.nn twin ---------------------------------------------------


@dataclass
class ModuleParityReport:
    """Largest absolute differences per quantity (``diffs``: "output[i]", "grad_input[name]",
    "grad[param]" in PyTorch's names) and the largest magnitude of PyTorch's value of each
    (``scales``)."""

    diffs: dict[str, float] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)

    @property
    def worst(self) -> float:
        return max(self.diffs.values(), default=0.0)

    def as_dict(self) -> dict[str, float]:
        return dict(self.diffs)

    def check(self, atol: float, rtol: float = 0.0) -> None:
        """Raise AssertionError naming every quantity k whose difference exceeds
        atol + rtol * max|torch's value of k|."""
        bad = {}
        for k, v in self.diffs.items():
            tol = atol + rtol * self.scales.get(k, 0.0)
            if not v <= tol:
                bad[k] = f"{v:.3g} > {tol:.3g}"
        if bad:
            raise AssertionError(f"parity differences above atol={atol:g}, rtol={rtol:g}: {bad}")


def _flat_outputs(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def module_parity(ours: nn.Module, theirs: nn.Module, inputs: dict[str, torch.Tensor], *,
                  map_from_torch=None, run_ours=None, run_theirs=None, seed: int = 0) -> ModuleParityReport:
    """Compare a seqlab module with its torch.nn twin, forward and backward.

    inputs: the differentiable inputs by name; each module gets its own copies, which
    require gradients. run_ours(module, **inputs), run_theirs(module, **inputs): how to
    call each module (masks and other non-differentiable arguments go in these closures);
    by default ``module(*inputs.values())``. Each returns a tensor or a tuple of tensors
    (None entries must be None on both sides).

    map_from_torch: the pure function PyTorch state dict -> our state dict (default
    ``type(ours).map_from_torch(state, ours.config)``); its adjoint maps our parameter
    gradients to the gradients PyTorch's parameters must have. Every parameter of ours
    must come out of the mapping.
    """
    gen = torch.Generator().manual_seed(seed)
    if map_from_torch is None:
        def map_from_torch(state):
            return type(ours).map_from_torch(state, getattr(ours, "config", None))
    run_ours = run_ours or (lambda m, **kw: m(*kw.values()))
    run_theirs = run_theirs or (lambda m, **kw: m(*kw.values()))
    x1 = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
    x2 = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
    out1 = _flat_outputs(run_ours(ours, **x1))
    out2 = _flat_outputs(run_theirs(theirs, **x2))
    if len(out1) != len(out2):
        raise AssertionError(f"number of outputs differs: {len(out1)} vs {len(out2)}")

    report = ModuleParityReport()
    loss1 = loss2 = 0.0
    for i, (a, b) in enumerate(zip(out1, out2)):
        if a is None or b is None:
            if (a is None) != (b is None):
                raise AssertionError(f"output[{i}]: one module returned None, the other a tensor")
            continue
        report.diffs[f"output[{i}]"] = _maxdiff(a, b)
        report.scales[f"output[{i}]"] = _scale(b)
        if a.requires_grad or b.requires_grad:
            # the same random cotangent for both
            g = torch.randn(a.shape, generator=gen, dtype=a.dtype).to(a.device)
            loss1 = loss1 + (a * g).sum()
            loss2 = loss2 + (b * g).sum()

    p1 = dict(ours.named_parameters())
    p2 = dict(theirs.named_parameters())
    grads1 = torch.autograd.grad(loss1, [*x1.values(), *p1.values()], allow_unused=True)
    grads2 = torch.autograd.grad(loss2, [*x2.values(), *p2.values()], allow_unused=True)
    n = len(x1)
    for (k, v), g1, g2 in zip(x1.items(), grads1[:n], grads2[:n]):
        g1 = torch.zeros_like(v) if g1 is None else g1
        g2 = torch.zeros_like(v) if g2 is None else g2
        report.diffs[f"grad_input[{k}]"] = _maxdiff(g1, g2)
        report.scales[f"grad_input[{k}]"] = _scale(g2)
    our_grads = dict(zip(p1.keys(), grads1[n:]))
    their_grads = dict(zip(p2.keys(), grads2[n:]))

    # expected PyTorch gradients = adjoint of map_from_torch applied to our gradients
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in theirs.state_dict().items()
             if v.is_floating_point()}
    mapped = map_from_torch(theta)
    if set(mapped) != set(p1):
        raise AssertionError(f"map_from_torch gives {sorted(mapped)}, the module has {sorted(p1)}")
    names = [k for k in mapped if our_grads.get(k) is not None]
    expected = torch.autograd.grad([mapped[k] for k in names], list(theta.values()),
                                   grad_outputs=[our_grads[k] for k in names], allow_unused=True)
    for (k, t), e in zip(theta.items(), expected):
        if k not in p2:
            continue  # a buffer
        got = their_grads.get(k)
        e = torch.zeros_like(t) if e is None else e
        got = torch.zeros_like(t) if got is None else got
        report.diffs[f"grad[{k}]"] = _maxdiff(e, got)
        report.scales[f"grad[{k}]"] = _scale(got)
    return report


def snapshot(folder) -> dict[str, str]:
    """Every file under ``folder`` -> the sha256 of its bytes (to check that a refused command
    wrote nothing over good files)."""
    import hashlib
    from pathlib import Path

    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys, argv) -> str:
    """Run ``seqlab ARGV``; it must exit with status 2 and one line ``seqlab: error: ...`` on
    stderr, which is returned."""
    from seqlab.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("seqlab: error: ") and "\n" not in err, err
    return err


def one_line_answer(response, status: int) -> str:
    """An explorer API answer that must have ``status`` and a one-line ``{"error": ...}`` (no
    traceback); the line is returned."""
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert message and "\n" not in message and "Traceback" not in message, message
    return message


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG file whose header claims ``width`` x ``height`` grey pixels, with almost no
    pixel data: a decompression bomb's header, to test that a reader checks the size first."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))
