r"""The fused recurrent layers' loops over time on a GPU: each loop, forward or backward, of each
cell is one Triton kernel launch that runs all T steps, instead of a few kernel launches per
step from Python (launch-bound: 6x to 18x cuDNN's time measured that
way on an H200).

The kernels compute exactly what the Python loops of ``fused.py`` compute, into the same buffers
and layouts: ``LSTMFunction`` (``_lstm_pass``, ``_lstm_backward_loop``; batch first, gate order
(o, i, f, g)), ``ElmanFunction`` (tanh or ReLU), ``GRUFunction`` (the lecture's form, reset before
the product) and ``GRUResetAfterFunction`` (PyTorch's), the last three feature first. The input
products, w . x_t + b for every t, and the weight gradients, sums over t, stay single cuBLAS
products around them. The LSTM's step t, for the items b of one program:

    forward    z_t = (w . x_t + b) + W . a^(h)_{t-1}                         (4H gate rows)
               a^(o), a^(i), a^(f) = sigmoid(z),  a^(g) = tanh(z^(g))
               a^(c)_t = a^(f)_t * a^(c)_{t-1} + a^(i)_t * a^(g)_t,  a^(h)_t = a^(o)_t * tanh(a^(c)_t)
    backward   dC/da^(c)_t += dC/da^(h)_t * a^(o)_t * (1 - tanh^2(a^(c)_t))
               dC/dz_t  = (dC/da^(h) tanh(a^(c)), dC/da^(c) a^(g), dC/da^(c) a^(c)_{t-1}) * s (1 - s),
                          dC/da^(c) a^(i) (1 - a^(g)^2)
               dC/da^(c)_{t-1} = dC/da^(c)_t * a^(f)_t,   dC/da^(h)_{t-1} = dC/dz_t . W + dC/d output_{t-1}

(the other cells' equations are in their Functions' docstrings; each kernel's comments name the
terms it computes).

Why the batch, and not the units, is split across programs: step t needs all of a_{t-1}, so
programs that each own some units would have to wait for each other every step (a grid-wide
barrier, which Triton does not have); the items of a batch are independent, so each program owns
``BLOCK_B`` items for all T steps and needs only its own threads to agree: one ``debug_barrier``
(``__syncthreads``) after each phase of a step whose results other threads read (one a step
forward; two in the backward, three in the lecture's GRU, whose a^(r) * a_{t-1} and
w^(G)^T . dC/dz_g are dependent products). A product is made tile by tile (``BLOCK_B`` items x
``BLOCK_N`` units, sums over ``BLOCK_K``), the weights read from the L2 cache; a_{t-1} goes
through global memory (the program wrote it the step before), because a tile cannot be
reassembled in registers from the units' chunks. Backward, dC/da_t alternates between two
buffers by the parity of t.

Items that ended (``lengths``: step t runs item b only while t < t_b) keep their state; their
dC/dz is 0, their outputs 0, and the backward carries their state gradients through unchanged,
as the Python loops do.

float32 products use TF32 where PyTorch lets its own recurrent layers (cuDNN) use it,
``torch.backends.cudnn.allow_tf32`` (on by default: what nn.LSTM does on a GPU by default), and
IEEE float32 where it is off; float64 is float64 throughout. tanh(v) is computed as
2 sigmoid(2v) - 1.

Availability: ``usable(t)`` is true for float32 and float64 CUDA tensors on an NVIDIA GPU of
compute capability 8.0 or more (A100 and later) where triton 3 or later is installed (it comes
with PyTorch's CUDA wheels), unless ``SEQLAB_TRITON=0``, or until a kernel failed to compile here:
then one line says so and the callers in ``fused`` run the Python loops (each wrapper below
returns None instead of its result). The kernels also run on a CPU in Triton's interpreter
(``TRITON_INTERPRET=1`` set before triton is imported, and ``SEQLAB_TRITON=interpret``), which is
how the tests check them against the Python loops on a machine without a GPU: the interpreter
checks the arithmetic and the indexing, not the barriers (it runs the programs one after
another), and it is slow, so ``usable`` is false on a CPU otherwise. ``aot_compile`` compiles a
kernel for a GPU that need not be here (the tests check that every one compiles for an H100
without spilling registers).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import os
import sys

import torch

BLOCK_B = 16  # items per program: a Triton product needs at least 16 rows
KERNELS = ("lstm_forward", "lstm_backward", "elman_forward", "elman_backward", "gru_forward", "gru_backward",
           "gru_before_forward", "gru_before_backward")


@functools.cache
def available() -> bool:
    """Whether triton 3 or later is installed here (the kernels use its 3.x API: ``input_precision``
    and ``out_dtype`` in ``tl.dot``; PyTorch 2.3's CUDA wheels bring triton 2.3)."""
    if importlib.util.find_spec("triton") is None:
        return False
    try:
        return int(importlib.metadata.version("triton").split(".")[0]) >= 3
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False


# the first error of a kernel that does not compile here (for this GPU, this triton): from then
# on the fused layers run the Python loops. Empty: none so far
_FAILED: list[str] = []


class Unavailable(Exception):
    """A kernel did not compile here; the caller runs the Python loops instead."""


def usable(t: torch.Tensor) -> bool:
    """Whether the fused loops of tensors like ``t`` run as these kernels: float32 or float64 CUDA
    tensors on an NVIDIA GPU of compute capability 8.0 or more with triton 3 or later, unless
    ``SEQLAB_TRITON=0`` or a kernel failed to compile here. ``SEQLAB_TRITON=interpret`` also takes
    CPU tensors, in Triton's interpreter (``TRITON_INTERPRET=1``): for the tests only."""
    mode = os.environ.get("SEQLAB_TRITON", "1")
    if mode == "0" or _FAILED or t.dtype not in (torch.float32, torch.float64):
        return False
    if t.is_cuda:
        return _capable(t.device.index if t.device.index is not None else torch.cuda.current_device())
    return mode == "interpret" and t.device.type == "cpu" and interpreting() and available()


@functools.cache
def _capable(device: int) -> bool:
    """Whether GPU ``device`` runs the kernels: an NVIDIA GPU of compute capability 8.0 or more
    (A100 and later: the TF32 products and the settings were made for these) with triton here."""
    return torch.version.hip is None and torch.cuda.get_device_capability(device) >= (8, 0) and available()


def interpreting() -> bool:
    """Whether triton runs kernels in its interpreter here (on the CPU, for the tests)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _pow2(n: int, lo: int, hi: int) -> int:
    """The smallest power of two from ``lo`` that is at least ``n``, at most ``hi``: a tile's side."""
    p = lo
    while p < n and p < hi:
        p *= 2
    return p


# Tiles and launch settings: BLOCK_N units x sums over BLOCK_K, 8 warps, 2 pipeline stages. Chosen
# by compiling every kernel for sm_90 (``aot_compile``) and reading ptxas's report: with 64 x 64
# tiles, 4 warps and 3 stages (Triton's defaults) every kernel used 255 registers and spilled (up
# to 1.5 KB a thread) and the LSTM's forward took 136 KiB of shared memory; with these (shorter
# sums in TF32, whose operands take more registers) none spills and none takes more than 36 KiB
# (tests/recurrent/test_triton_loops.py checks it). For sm_80 (A100) ptxas keeps to 128 registers
# and three kernels spill a little (24 to 28 bytes a thread: lstm_backward in IEEE float32,
# gru_forward). Their speed is not measured yet.
TILES = {(torch.float32, "tf32"): (32, 32), (torch.float32, "ieee"): (32, 64), (torch.float64, "ieee"): (16, 32)}
LAUNCH = dict(num_warps=8, num_stages=2)


def _config(dtype: torch.dtype, H: int, K: int, prec: str | None = None) -> dict:
    """The kernels' compile-time settings for hidden size H and reduction length K: tiles, the
    products' precision (``precision``, unless ``prec`` names it), the element type."""
    import triton.language as tl

    f64 = dtype == torch.float64
    prec = prec or precision(dtype)
    n, k = TILES[(torch.float64 if f64 else torch.float32, prec)]
    return dict(BLOCK_B=BLOCK_B, BLOCK_N=_pow2(H, 16, n), BLOCK_K=_pow2(K, 16, k), PREC=prec,
                DT=tl.float64 if f64 else tl.float32)


def precision(dtype: torch.dtype) -> str:
    """The products' precision: float32 products in TF32 where PyTorch lets cuDNN's recurrent
    layers use it (``torch.backends.cudnn.allow_tf32``, on by default), as nn.LSTM does; else,
    and in float64, full precision ("ieee")."""
    return "tf32" if dtype == torch.float32 and torch.backends.cudnn.allow_tf32 else "ieee"


def _launch(name: str, B: int, like: torch.Tensor, H: int, K: int, *args) -> None:
    """Runs kernel ``name`` on ``args`` (tensors like ``like``): one program per BLOCK_B items, on
    the tensors' GPU (Triton launches on the current device, which may be another)."""
    grid = ((B + BLOCK_B - 1) // BLOCK_B,)
    try:
        with torch.cuda.device(like.device) if like.is_cuda else contextlib.nullcontext():
            _kernels()[name][grid](*args, **_config(like.dtype, H, K), **LAUNCH)
    except _compile_errors() as e:
        if interpreting():  # the tests: a kernel that fails must fail them, not fall back
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        _FAILED.append(first)
        print(f"seqlab: the recurrent layers' Triton kernels do not compile here ({name}: {first}); using "
              "PyTorch's operations (same results, slower on a GPU)", file=sys.stderr, flush=True)
        raise Unavailable(name) from e


def _compile_errors() -> tuple[type[BaseException], ...]:
    """What a kernel that does not compile for this GPU raises: Triton's compilation error, ptxas's
    error, and too little shared memory or too few registers on this GPU."""
    import triton.runtime.errors as runtime
    from triton.compiler.errors import CompilationError

    return (CompilationError, *(getattr(runtime, n) for n in ("OutOfResources", "PTXASError") if hasattr(runtime, n)))


def _or_none(fn):
    """``fn``, returning None where its kernel does not compile here (``Unavailable``)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Unavailable:
            return None

    return wrapper


# the reduction length of each kernel's recurrent product, in units of H (the rest: H)
REDUCTION = {"lstm_backward": 4, "gru_backward": 3, "gru_before_backward": 2}


def aot_compile(name: str, dtype: torch.dtype, H: int, arch: int = 90, relu: bool = False,
                prec: str | None = None):
    """Compiles kernel ``name`` for hidden size H and an NVIDIA GPU of compute capability ``arch``
    (90: H100/H200), which need not be on this machine (ptxas comes with triton); returns Triton's
    compiled kernel.
    For checks: that every kernel compiles, its registers, spills and shared memory (set
    TRITON_DUMP_PTXAS_LOG=1 and PTXAS_OPTIONS=-v to see ptxas's report). Needs triton 3.4 or later
    (its ahead-of-time API), imported without TRITON_INTERPRET. A bad argument gives a one-line error."""
    from seqlab.validation import check_choice, check_int, fail

    check_choice(name, "kernel", KERNELS)
    if dtype not in (torch.float32, torch.float64):
        fail("dtype", "torch.float32 or torch.float64", dtype)
    check_int(H, "H", minimum=1)
    check_int(arch, "arch", minimum=80)
    if prec is not None and (torch.float64 if dtype == torch.float64 else torch.float32, prec) not in TILES:
        fail("prec", "'tf32' or 'ieee' for float32, 'ieee' for float64 (or None)", f"{prec!r} for {dtype}")
    import inspect

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = _kernels()[name]
    element = "fp64" if dtype == torch.float64 else "fp32"
    constexprs = _config(dtype, H, REDUCTION.get(name, 1) * H, prec)  # prec: else cudnn.allow_tf32's
    signature = {}
    for p in inspect.signature(fn.fn).parameters:
        if p == "RELU":
            constexprs[p] = relu
        if p in constexprs:
            signature[p] = "constexpr"
        else:
            signature[p] = "i32" if p in ("T", "B", "H") else "*i32" if p == "LEN" else "*" + element
    return triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                          target=GPUTarget("cuda", arch, 32), options=dict(LAUNCH))


def _lengths(batch_sizes, B: int, T: int, device) -> torch.Tensor:
    """(B,) int32: t_b, the steps item b runs (batch_sizes[t] = how many items run at step t)."""
    if batch_sizes is None:
        return torch.full((B,), T, dtype=torch.int32, device=device)
    steps = torch.tensor(batch_sizes, dtype=torch.int64)
    return (steps[None, :] > torch.arange(B)[:, None]).sum(1).to(torch.int32).to(device)


@functools.cache
def _kernels():
    """The kernels (``_triton_kernels``, which imports triton), by name."""
    from seqlab.recurrent import _triton_kernels as k

    return {name: getattr(k, name) for name in KERNELS}


@_or_none
def lstm_forward(X, w_x, w_a, b, h0, c0, batch_sizes, T: int, B: int):
    """``fused._lstm_pass`` as one kernel: X (T B, I) rows (t, b); returns G (T, B, 4H) (the
    activations, 0 for items that ended), a^(h)_0..T and a^(c)_0..T (T+1, B, H), tanh(a^(c)_1..T)
    (T, B, H) and the output (B, T, H), 0 after an item's end."""
    H = w_a.shape[1]
    G = torch.addmm(b, X, w_x.t()).view(T, B, 4 * H)  # w . x_t + b for every t: one product
    hs, cs = X.new_empty(T + 1, B, H), X.new_empty(T + 1, B, H)
    hs[0], cs[0] = h0, c0
    tc, out = X.new_empty(T, B, H), X.new_empty(B, T, H)
    _launch("lstm_forward", B, X, H, H,
            G, w_a.t().contiguous(), hs, cs, tc, out, _lengths(batch_sizes, B, T, X.device), T, B, H)
    return G, hs, cs, tc, out


@_or_none
def lstm_backward(G, w_a, cs, tc, dO, dh, dc, batch_sizes):
    """``fused._lstm_backward_loop`` as one kernel: G (T, B, 4H), the activations, is overwritten
    with dC/dz_t; dc (B, H) becomes dC/da^(c)_0; returns dC/da^(h)_0. dh (B, H): dC/da^(h)_T, its
    output's gradient included; dO (T, B, H): dC/d output_t, 0 at padded positions."""
    T, B, H = tc.shape
    dhb = dh.new_empty(2, B, H)
    dhb[T % 2] = dh
    _launch("lstm_backward", B, G, H, 4 * H,
            G, w_a.contiguous(), cs, tc, dO.contiguous(), dc, dhb, _lengths(batch_sizes, B, T, G.device), T, B, H)
    return dhb[0]


@_or_none
def elman_forward(xp, w_a, hs, relu: bool, batch_sizes):
    """The Elman RNN's forward loop: xp (T, H, B) w_x . x_t + b_a; fills hs (H, T + 1, B) (a_0 in
    hs[:, 0]) with a_1..a_T (an ended item keeps its state) and returns it."""
    T, H, B = xp.shape
    _launch("elman_forward", B, xp, H, H,
            xp, w_a.t().contiguous(), hs, _lengths(batch_sizes, B, T, xp.device), T, B, H, relu)
    return hs


@_or_none
def elman_backward(w_a, hs, dO, da, relu: bool, batch_sizes):
    """The Elman RNN's backward loop: returns D (H, T, B), dC/dz_t (0 where padded), and dC/da_0
    (H, B). dO (T, H, B): dC/d output_t, 0 where padded; da (H, B): dC/da_T, dO[T - 1] included."""
    H, T1, B = hs.shape
    T = T1 - 1
    D, dab = hs.new_empty(H, T, B), hs.new_empty(2, H, B)
    dab[T % 2] = da
    _launch("elman_backward", B, hs, H, H,
            D, w_a.contiguous(), hs, dO, dab, _lengths(batch_sizes, B, T, hs.device), T, B, H, relu)
    return D, dab[0]


@_or_none
def gru_forward(Gs, w_a, b_G, hs, batch_sizes):
    """The GRU's forward loop (PyTorch's form, ``fused.GRUResetAfterFunction``): Gs (T, 3H, B),
    w . x_t + b, becomes the activations a^(g), a^(z), a^(r); fills hs (H, T + 1, B) (a^(h)_0 in
    hs[:, 0]) and returns HG (T, H, B) = w^(G) . a^(h)_{t-1} + b^(G)."""
    T, H3, B = Gs.shape
    H = H3 // 3
    HG = Gs.new_empty(T, H, B)
    _launch("gru_forward", B, Gs, H, H,
            Gs, w_a.t().contiguous(), b_G.contiguous(), HG, hs, _lengths(batch_sizes, B, T, Gs.device), T, B, H)
    return HG


@_or_none
def gru_backward(w_a, Gs, HG, hs, dO, dh, batch_sizes):
    """The GRU's backward loop: returns D (4H, T, B), dC/dz_t rows (g, z, r, G) (0 where padded),
    and dC/da^(h)_0 (H, B). dO (T, H, B), dh (H, B) as in ``elman_backward``."""
    H, T1, B = hs.shape
    T = T1 - 1
    D, dhb = hs.new_empty(4 * H, T, B), hs.new_empty(2, H, B)
    dhb[T % 2] = dh
    _launch("gru_backward", B, hs, H, 3 * H,
            D, w_a.contiguous(), Gs, HG, hs, dO, dhb, _lengths(batch_sizes, B, T, hs.device), T, B, H)
    return D, dhb[0]


@_or_none
def gru_before_forward(Gs, w_zr, w_G, hs, batch_sizes):
    """The lecture's GRU's forward loop (``fused.GRUFunction``): Gs (T, 3H, B), w . x_t + b, becomes
    the activations a^(g), a^(z), a^(r); fills hs (H, T + 1, B) (a^(h)_0 in hs[:, 0]) and returns
    a^(r)_t * a^(h)_{t-1} (H, T, B), 0 where padded."""
    T, H3, B = Gs.shape
    H = H3 // 3
    rh = Gs.new_empty(H, T, B)
    _launch("gru_before_forward", B, Gs, H, H,
            Gs, w_zr.t().contiguous(), w_G.t().contiguous(), rh, hs, _lengths(batch_sizes, B, T, Gs.device),
            T, B, H)
    return rh


@_or_none
def gru_before_backward(w_zr, w_G, Gs, hs, dO, dh, batch_sizes):
    """The lecture's GRU's backward loop: returns D (3H, T, B), dC/dz_t rows (g, z, r) (0 where
    padded), and dC/da^(h)_0 (H, B). dO (T, H, B), dh (H, B) as in ``elman_backward``."""
    H, T1, B = hs.shape
    T = T1 - 1
    D, dhb = hs.new_empty(3 * H, T, B), hs.new_empty(2, H, B)
    dhb[T % 2] = dh
    _launch("gru_before_backward", B, hs, H, 2 * H,
            D, w_zr.contiguous(), w_G.contiguous(), Gs, hs, dO, dhb, _lengths(batch_sizes, B, T, hs.device),
            T, B, H)
    return D, dhb[0]
