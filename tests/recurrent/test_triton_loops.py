"""The recurrent layers' loops as Triton kernels (seqlab/recurrent/triton_loops.py), against the
loops in PyTorch operations: values and every gradient, float64 and float32, variable lengths,
more items than one program takes, hidden sizes that are not a multiple of a tile.

On a machine without a GPU the kernels run in Triton's interpreter on the CPU (tests/conftest.py
sets TRITON_INTERPRET=1 before triton is imported); on a GPU they are compiled and compared
with the CPU path (benchmarks/gpu_check.sh runs this file there). Skipped where triton is not
installed."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install triton, or the dev extra)")

from seqlab.recurrent import GRU, LSTM, RNN, fused, triton_loops  # noqa: E402

SHAPES = [  # B, T, I, H, lengths
    (5, 6, 3, 20, None),
    (18, 4, 7, 33, [4, 1, 3, 2, 4, 4, 1, 2, 3, 4, 4, 4, 2, 1, 1, 3, 4, 2]),  # two programs, ragged
    (3, 1, 2, 16, None),  # one step
]
KERNELS = [f"{k}_{d}" for k in ("lstm", "elman", "gru", "gru_before") for d in ("forward", "backward")]
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}  # relative to the largest value of each tensor


@pytest.fixture
def device(monkeypatch) -> str:
    """Where the kernels run: the GPU (compiled), else the CPU in the interpreter."""
    if torch.cuda.is_available() and not triton_loops.interpreting():
        monkeypatch.setenv("SEQLAB_TRITON", "1")
        if not triton_loops.usable(torch.zeros(1, device="cuda")):
            pytest.skip("the kernels run on NVIDIA GPUs of compute capability 8.0 or more (A100 and later)")
        return "cuda"
    if not triton_loops.interpreting():
        pytest.skip("no GPU, and triton was imported without TRITON_INTERPRET=1")
    monkeypatch.setenv("SEQLAB_TRITON", "interpret")
    return "cpu"


def _cell(name: str, H: int, I: int, dtype, g: torch.Generator):
    """(Function, weights, extra arguments, number of states) of a cell with random weights."""
    def p(*shape, s=0.3):
        return (s * torch.randn(*shape, dtype=dtype, generator=g)).requires_grad_()

    if name == "lstm":
        return fused.LSTMFunction, (p(4 * H, I), p(4 * H, H), p(4 * H, s=0.1)), (), 2
    if name == "gru":  # PyTorch's form
        return fused.GRUResetAfterFunction, (p(3 * H, I), p(3 * H, H), p(3 * H, s=0.1), p(H, s=0.1)), (), 1
    if name == "gru-before":  # the lecture's
        return fused.GRUFunction, (p(3 * H, I), p(2 * H, H), p(H, H), p(3 * H, s=0.1)), (), 1
    return fused.ElmanFunction, (p(H, I), p(H, H), p(H, s=0.1)), (name == "rnn-relu",), 1


def _run(fn, x, weights, state, lengths, extra, seed: int = 1, retain: bool = False):
    """Outputs, final states and the gradients of a fixed random loss of every input."""
    out, fin = fused.run(fn, x, weights, state, lengths, *extra)
    g = torch.Generator().manual_seed(seed)
    loss = (out * torch.randn(out.shape, dtype=out.dtype, generator=g).to(out.device)).sum()
    loss = loss + sum((f * torch.randn(f.shape, dtype=f.dtype, generator=g).to(f.device)).sum() for f in fin)
    grads = torch.autograd.grad(loss, (x, *weights, *state), retain_graph=retain)
    if retain:  # a second backward through the same graph (the LSTM's recomputes its gates)
        again = torch.autograd.grad(loss, (x, *weights, *state))
        assert all(torch.equal(a, b) for a, b in zip(grads, again))
    return [out, *fin, *grads]


def _close(ours, ref, tol: float, what: str) -> None:
    for k, (a, b) in enumerate(zip(ours, ref)):
        a = a.detach().cpu()
        scale = max(1.0, b.abs().max().item())
        err = (a - b).abs().max().item()
        assert err <= tol * scale, f"{what}: tensor {k} differs by {err:.2e} (scale {scale:.2f})"


@pytest.mark.parametrize("name", ["lstm", "gru", "gru-before", "rnn-tanh", "rnn-relu"])
@pytest.mark.parametrize("dtype,tf32", [(torch.float64, False), (torch.float32, False), (torch.float32, True)],
                         ids=["f64", "f32", "f32-tf32"])
@pytest.mark.parametrize("shape", SHAPES, ids=["small", "ragged-two-programs", "one-step"])
def test_kernels_equal_the_loops(device, monkeypatch, name, dtype, tf32, shape):
    """float32 with TF32 allowed (cudnn.allow_tf32, the default) takes other tiles; the
    interpreter multiplies in float32 whatever the precision, a GPU in TF32 (10-bit mantissas)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    B, T, I, H, lengths = shape
    g = torch.Generator().manual_seed(0)
    fn, weights, extra, n_states = _cell(name, H, I, dtype, g)
    x = torch.randn(B, T, I, dtype=dtype, generator=g).requires_grad_()
    state = [torch.randn(B, H, dtype=dtype, generator=g).requires_grad_() for _ in range(n_states)]
    L = None if lengths is None else torch.tensor(lengths)
    with monkeypatch.context() as m:  # the reference: the loops in PyTorch operations, on the CPU
        m.setenv("SEQLAB_TRITON", "0")
        ref = [t.detach() for t in _run(fn, x, weights, state, L, extra)]

    def there(t):
        return t.detach().to(device).requires_grad_()

    called = []
    for f in KERNELS:
        original = getattr(triton_loops, f)
        monkeypatch.setattr(triton_loops, f, lambda *a, _f=original, _n=f, **k: (called.append(_n), _f(*a, **k))[1])
    ours = _run(fn, there(x), [there(w) for w in weights], [there(s) for s in state], L, extra,
                retain=name == "lstm")
    kind = {"lstm": "lstm", "gru": "gru", "gru-before": "gru_before"}.get(name, "elman")
    assert called == [f"{kind}_forward", f"{kind}_backward"] * (2 if name == "lstm" else 1)  # not the loops
    tol = 2e-2 if tf32 and device == "cuda" else TOL[dtype]
    _close(ours, ref, tol, f"{name} {dtype} tf32={tf32} {shape[:4]}")


@pytest.mark.parametrize("name", ["lstm", "gru", "gru-before", "rnn-tanh"])
def test_gradcheck_through_the_kernels(device, name):
    """The hand-written backward kernels against finite differences (float64, fast mode: random
    directions, so that the interpreter's few evaluations stay quick)."""
    B, T, I, H = 3, 3, 2, 16
    g = torch.Generator().manual_seed(2)
    fn, weights, extra, n_states = _cell(name, H, I, torch.float64, g)
    weights = [w.detach().to(device).requires_grad_() for w in weights]
    x = torch.randn(B, T, I, dtype=torch.float64, generator=g).to(device).requires_grad_()
    state = [torch.randn(B, H, dtype=torch.float64, generator=g).to(device).requires_grad_() for _ in range(n_states)]

    def f(x, *args):
        out, fin = fused.run(fn, x, args[: len(weights)], args[len(weights):], torch.tensor([3, 2, 3]), *extra)
        return (out, *fin)

    assert torch.autograd.gradcheck(f, (x, *weights, *state), fast_mode=True, atol=1e-8)


def test_the_layers_use_the_kernels(device, monkeypatch):
    """seqlab's RNN, LSTM and GRU modules (fused) take the kernels where they are usable."""
    called = []
    for f in ("lstm_forward", "elman_forward", "gru_forward", "gru_before_forward"):
        original = getattr(triton_loops, f)
        monkeypatch.setattr(triton_loops, f, lambda *a, _f=original, _n=f, **k: (called.append(_n), _f(*a, **k))[1])
    torch.manual_seed(0)
    x = torch.randn(2, 5, 4, device=device)
    kw = dict(input_size=4, hidden_size=16, fused=True)
    for layer in (RNN(**kw), LSTM(**kw), GRU(**kw, reset="after"), GRU(**kw, reset="before")):
        layer.to(device)(x)[0].sum().backward()
    assert called == ["elman_forward", "lstm_forward", "gru_forward", "gru_before_forward"]


def test_usable_where(monkeypatch):
    """On the CPU only in interpret mode; never for other dtypes; never with SEQLAB_TRITON=0."""
    t = torch.zeros(2)
    monkeypatch.setenv("SEQLAB_TRITON", "1")
    assert not triton_loops.usable(t)  # a CPU tensor: the CPU loops (the interpreter is for checking)
    monkeypatch.setenv("SEQLAB_TRITON", "interpret")
    assert triton_loops.usable(t) == triton_loops.interpreting()
    assert not triton_loops.usable(t.half())
    monkeypatch.setenv("SEQLAB_TRITON", "0")
    assert not triton_loops.usable(t)


COMPILE = """
import torch
from seqlab.recurrent import triton_loops
for name in triton_loops.KERNELS:
    for dtype, prec in ((torch.float32, "tf32"), (torch.float32, "ieee"), (torch.float64, "ieee")):
        k = triton_loops.aot_compile(name, dtype, H=256, arch=90, prec=prec)
        print("KERNEL", name, dtype, prec, k.metadata.shared, flush=True)
"""


def test_every_kernel_compiles_for_an_h100_without_spilling():
    """Compiled for sm_90 (H100/H200) on this machine, GPU or not (ptxas comes with triton): every
    kernel compiles in float32 (TF32 and IEEE products) and float64 at H = 256, ptxas reports no
    register spills, and
    shared memory stays within what every GPU since the A100 gives a program by default (48 KiB).
    The interpreter does not compile, so this is what catches a kernel that only it accepts."""
    import importlib.metadata
    import os
    import re
    import subprocess
    import sys

    version = importlib.metadata.version("triton")
    if tuple(int(v) for v in re.findall(r"\d+", version)[:2]) < (3, 4):
        pytest.skip(f"the compile check uses triton 3.4's ahead-of-time API (ASTSource by names); "
                    f"triton {version} here")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_DUMP_PTXAS_LOG="1", PTXAS_OPTIONS="-v", TRITON_ALWAYS_COMPILE="1")
    done = subprocess.run([sys.executable, "-c", COMPILE], env=env, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    kernels = re.findall(r"^KERNEL (\w+) (\S+) (\w+) (\d+)$", done.stdout, re.M)
    assert len(kernels) == 3 * len(triton_loops.KERNELS), log[-3000:]
    spills = [int(n) for n in re.findall(r"(\d+) bytes spill stores", log)]
    if not spills:
        pytest.skip(f"triton {version} does not print ptxas's report (TRITON_DUMP_PTXAS_LOG): every kernel compiled")
    assert len(spills) >= len(kernels) and not any(spills), log[-3000:]  # ptxas reported on every one
    assert max(int(k[-1]) for k in kernels) <= 48 * 1024, kernels


@pytest.mark.parametrize("failing", KERNELS)
def test_a_kernel_that_does_not_compile_falls_back_to_the_loops(device, monkeypatch, capsys, failing):
    """A GPU or triton on which a kernel does not compile (an old triton's API, too little shared
    memory): one line on stderr, once; that call and every later one run the Python loops, with
    the same results, forward and backward, also where the forward pass ran as a kernel and its
    backward falls back. (Faked: kernel ``failing`` raises what a compile failure raises.)"""
    if device != "cpu":
        pytest.skip("faked in the interpreter")
    real = triton_loops._kernels()

    class Failing:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                raise RuntimeError("ptxas fatal: no such instruction on this GPU\nmore lines")
            return launch

    def run_layers():
        torch.manual_seed(0)
        x = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
        kw = dict(input_size=4, hidden_size=16, fused=True)
        results = []
        for layer in (RNN(**kw), LSTM(**kw), GRU(**kw, reset="after"), GRU(**kw, reset="before")):
            layer = layer.double()
            out = layer(x, lengths=torch.tensor([5, 2, 4]))[0]
            results += [out.detach(), *torch.autograd.grad(out.square().sum(), (x, *layer.parameters()))]
        return results

    monkeypatch.setenv("SEQLAB_TRITON", "0")
    ref = run_layers()
    monkeypatch.setenv("SEQLAB_TRITON", "interpret")
    monkeypatch.setattr(triton_loops, "_FAILED", [])
    monkeypatch.setattr(triton_loops, "interpreting", lambda: False)  # failures handled as when compiled
    monkeypatch.setattr(triton_loops, "usable", lambda t: not triton_loops._FAILED)
    monkeypatch.setattr(triton_loops, "_kernels", lambda: {**real, failing: Failing()})
    monkeypatch.setattr(triton_loops, "_compile_errors", lambda: (RuntimeError,))
    got = run_layers()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"Triton kernels do not compile here ({failing}: ptxas fatal" in err
    assert "more lines" not in err and triton_loops._FAILED
    for a, b in zip(got, ref):
        assert (a - b).abs().max().item() <= 1e-10 * max(1.0, b.abs().max().item())


def test_the_tile_benchmark_runs_and_puts_the_settings_back(device, tmp_path, capsys):
    """benchmarks/bench_triton_tiles.py (what a lent GPU runs to time the candidate settings): its
    --quick run here (the interpreter on a CPU: a check of the script, not a timing) writes a row
    per cell and setting and leaves triton_loops' settings as they were; without --quick a CPU is
    refused in one line."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import bench_triton_tiles

    before = dict(triton_loops.TILES), dict(triton_loops.LAUNCH)
    assert bench_triton_tiles.main(["--quick", "--out", str(tmp_path / "tiles")]) == 0
    assert (dict(triton_loops.TILES), dict(triton_loops.LAUNCH)) == before
    rows = json.loads((tmp_path / "tiles.json").read_text())["rows"]
    assert len(rows) == 3 * 2 and {r["cell"] for r in rows} == {"rnn", "lstm", "gru"}
    assert all(r["ms"] > 0 for r in rows)
    if device == "cpu":
        capsys.readouterr()
        assert bench_triton_tiles.main([]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "expected a CUDA GPU" in err and "received cpu" in err


@pytest.mark.parametrize("args,match", [
    (("lstm_sideways", torch.float32, 64), "kernel: expected one of"),
    (("lstm_forward", torch.float16, 64), "dtype: expected torch.float32 or torch.float64"),
    (("lstm_forward", torch.float32, 0), "H: expected an integer >= 1"),
    (("lstm_forward", torch.float32, 64, 75), "arch: expected an integer >= 80"),
    (("lstm_forward", torch.float64, 64, 90, False, "tf32"), "prec: expected"),
])
def test_aot_compile_refuses_bad_arguments_in_one_line(args, match):
    with pytest.raises(ValueError, match=match) as e:
        triton_loops.aot_compile(*args)
    assert "\n" not in str(e.value)
