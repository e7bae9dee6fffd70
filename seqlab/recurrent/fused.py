"""The fast path: one recurrent layer as one autograd node, with BPTT written by hand.

The readable path in ``rnn.py``/``lstm.py``/``gru.py`` computes each step with autograd
recording every small operation. This module computes the *same* equations, arranged so
that a step costs as few tensor operations as possible (on a CPU each operation has a
fixed cost of several microseconds, comparable to its arithmetic at these sizes):

1. The input half of every gate, w . x_t + b for all t, is one batched matrix product
   before the loop (it does not depend on the recurrence); the loop then adds W . a_{t-1}
   in place into the same buffer, which becomes the gates.
2. All gates of a step come from one matrix product (their weights are stacked), and the
   loop runs without autograd, writing into preallocated buffers; the per-step views of
   the buffers are made once, before the loop.
3. Backpropagation through time is written out by hand (the lecture's chain-rule sums;
   ``seqlab.recurrent.bptt`` has the NumPy version): a backward loop carries dC/da_t
   (and the LSTM's dC/da^(c)_t), accumulating W^T . dC/dz_t in place into the buffer of
   the incoming output gradients; the weight gradients, sums over t, become single
   matrix products after the loop. Activation-derivative factors that do not depend on
   the incoming gradient are computed for many steps at once where that saves per-step
   operations: all T for the Elman RNN, blocks of ``GRU_BLOCK`` steps for the GRU, whose
   backward pass also sums its weight gradients block by block, so that its buffers do
   not grow with T (its peak of allocated memory is about nn.GRU's); the LSTM forms them inside the
   loop in small scratch buffers that are reused every step (measured faster on a CPU).
4. On a CPU the LSTM's two loops are compiled C++ (``seqlab.recurrent.native``: one thread
   per slice of the units, its own register-tiled products in float32, the input product
   x_t taken into each step's product). Where they are not available, the Python loops
   below run, and in float32 their products go through PyTorch's oneDNN matrix product
   (``_Linear``, with the recurrent weights packed once per pass), which on the project's
   AMD CPU runs at about twice the speed of torch.mm (MKL) at these sizes; and
   tanh(z) = 2 sigmoid(2 z) - 1 replaces PyTorch's CPU tanh, which costs about 8 times its
   sigmoid there.

5. On a GPU the loops over time of every cell are Triton kernels (``triton_loops``: one
   program per 16 items, for all T steps); a Python loop there is launch-bound. They write
   the same buffers as the loops here, so the products before and after them are shared.

Layout. The Elman RNN and the GRU put the feature axis before the batch: a state is
``(H, B)``. Per-step buffers are ``(T, features, B)`` (gates, cells), so a step's gates are
a contiguous block of rows (one ``sigmoid_`` covers every sigmoid gate); hidden states and
the pre-activation gradients D are ``(features, T, B)``, so that ``(features, T*B)`` is a
view and each sum over t is one matrix product without a copy. The LSTM keeps the batch
first, ``(B, features)``: a step's rows of items are contiguous (see ``LSTMFunction``).

Variable lengths use a shrinking batch, as ``nn.utils.rnn.pack_padded_sequence`` does:
items are sorted by length t_i (longest first) and step t updates only the first
``batch_sizes[t]`` columns; the others keep their state, so their a_{t_i} is final,
padded outputs are 0, and padded positions receive no gradient.

Every function here is checked against the readable path and with
``torch.autograd.gradcheck`` in ``tests/recurrent/test_fused.py``.
"""

from __future__ import annotations

import threading
from typing import Sequence

import torch

from seqlab.recurrent import native, triton_loops

try:  # torch >= 2.4
    _custom_fwd = torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    _custom_bwd = torch.amp.custom_bwd(device_type="cuda")
except AttributeError:  # pragma: no cover - torch 2.3
    _custom_fwd = torch.cuda.amp.custom_fwd(cast_inputs=torch.float32)
    _custom_bwd = torch.cuda.amp.custom_bwd


# ----------------------------------------------------------------------------- helpers
def _batch_sizes(lengths: torch.Tensor, T: int) -> tuple[int, ...]:
    """batch_sizes[t] = number of items whose length t_i is > t (lengths sorted)."""
    steps = torch.arange(T)
    return tuple((lengths[None, :] > steps[:, None]).sum(1).tolist())


def _input_projection(x: torch.Tensor, w_x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """w . x_t + b for every t at once: x (B, T, I) -> xp (T, G, B), one batched product."""
    B, T, I = x.shape
    return torch.baddbmm(b[None, :, None], w_x.expand(T, *w_x.shape), x.permute(1, 2, 0))


def _inputs_by_time(x: torch.Tensor) -> torch.Tensor:
    """x (B, T, I) -> X (T*B, I), rows ordered (t, b) like the columns of D (G, T*B)."""
    B, T, I = x.shape
    return x.transpose(0, 1).reshape(T * B, I)


def _outputs(hs: torch.Tensor, batch_sizes) -> torch.Tensor:
    """hs: (H, T+1, B) -> outputs (B, T, H), zero at padded positions."""
    out = hs[:, 1:].permute(2, 1, 0).contiguous()  # (B, T, H)
    if batch_sizes is not None:
        for t, n in enumerate(batch_sizes):
            if n < out.shape[0]:
                out[n:, t] = 0
    return out


def _grad_outputs(d_out: torch.Tensor | None, T: int, H: int, B: int, like: torch.Tensor, batch_sizes) -> torch.Tensor:
    """d_out: (B, T, H) -> dC/d(output_t) as (T, H, B), zero at padded positions (whose
    outputs are the constant 0), zeros if the outputs were unused."""
    if d_out is None:
        return like.new_zeros(T, H, B)
    dO = d_out.permute(1, 2, 0).contiguous()  # (T, H, B)
    if batch_sizes is not None:
        for t, n in enumerate(batch_sizes):
            if n < B:
                dO[t, :, n:] = 0
    return dO


def _grad_state(d: torch.Tensor | None, H: int, B: int, like: torch.Tensor) -> torch.Tensor:
    """Incoming dC/da_T: (B, H) -> (H, B) contiguous, zeros if unused."""
    if d is None:
        return like.new_zeros(H, B)
    return d.t().contiguous()


def _sigmoid_grad(s: torch.Tensor) -> torch.Tensor:
    """sigmoid'(z) from s = sigmoid(z): s (1 - s)."""
    return s - s * s


def _tanh_grad(a: torch.Tensor) -> torch.Tensor:
    """tanh'(z) from a = tanh(z): 1 - a^2."""
    return 1 - a * a


def _recurrent_grad(dh: torch.Tensor, dO: torch.Tensor, wT: torch.Tensor, d: torch.Tensor, t: int, n: int,
                    B: int) -> torch.Tensor:
    """dC/da_{t-1} = W^T . dC/dz_t + dC/d output_{t-1} for the n active columns; the
    columns of items that ended before t pass dC/da_t through unchanged. Accumulates in
    place into dO[t-1] (our own buffer) and returns it: no copy per step."""
    if t == 0:  # dC/da_0: no output at t = 0
        out = torch.empty_like(dh)
        torch.mm(wT, d, out=out[:, :n])
    else:
        out = dO[t - 1]
        o = out[:, :n]
        torch.addmm(o, wT, d, out=o)  # (measured faster than the in-place o.addmm_)
    if n < B:
        if t == 0:
            out[:, n:] = dh[:, n:]
        else:
            out[:, n:].add_(dh[:, n:])
    return out


class _WeightGrads:
    """dC/dx, dC/dw_x, dC/dw_a..., dC/db accumulated from blocks of time steps of the
    pre-activation gradients D (G, k, B) (steps t0..t1-1); each sum over t is one matrix
    product per block. A backward pass may give every step at once (one block), or blocks of
    a few steps as it goes, so that it never holds D for all T steps (the GRU does).

    rec: [(rows of D for this recurrent matrix, its right operand (H_in, T, B))];
    x_rows: the rows of D that belong to the input side (w_x and b)."""

    def __init__(self, ctx, x: torch.Tensor, w_x: torch.Tensor, rec, x_rows: slice = slice(None)) -> None:
        self.need, self.x, self.w_x, self.rec, self.x_rows = ctx.needs_input_grad, x, w_x, rec, x_rows
        self.dx = self.dw_x = self.db = None
        self.rec_grads: list = [None] * len(rec)

    @staticmethod
    def _acc(total, part):
        return part if total is None else total.add_(part)

    def add(self, D: torch.Tensor, t0: int, t1: int) -> None:
        G, k, B = D.shape
        T = self.x.shape[1]
        need = self.need
        Dx = D[self.x_rows].reshape(-1, k * B)  # (G_x, k*B), columns ordered (t, b)
        if need[0]:
            # dC/dx_t = w_x^T . dC/dz_t, as (k*B, I) rows (t, b)
            part = torch.mm(Dx.t(), self.w_x)
            if k == T:
                self.dx = part.view(T, B, -1)
            else:
                if self.dx is None:
                    self.dx = part.new_empty(T, B, part.shape[1])
                self.dx[t0:t1] = part.view(k, B, -1)
        if need[1]:
            # dC/dw_x = sum_t dC/dz_t . x_t^T
            self.dw_x = self._acc(self.dw_x, torch.mm(Dx, _inputs_by_time(self.x[:, t0:t1])))
        for j, (rows, right) in enumerate(self.rec):
            if need[2 + j]:
                # dC/dw_a = sum_t dC/dz_t . a_{t-1}^T
                r = right[:, t0:t1]
                self.rec_grads[j] = self._acc(self.rec_grads[j],
                                              torch.mm(D[rows].reshape(-1, k * B), r.reshape(r.shape[0], k * B).t()))
        if need[2 + len(self.rec)]:
            self.db = self._acc(self.db, Dx.sum(1))  # dC/db = sum_t dC/dz_t

    def result(self, d_state) -> tuple:
        """(dx (B, T, I), dw_x, dw_a..., db, dC/da_0 (B, H)...): what is left of the backward
        recursion is dC/da_0."""
        dx = None if self.dx is None else self.dx.transpose(0, 1)
        states = d_state if isinstance(d_state, tuple) else (d_state,)
        return (dx, self.dw_x, *self.rec_grads, self.db) + tuple(s.t() for s in states)


def _weight_grads(ctx, D: torch.Tensor, x: torch.Tensor, w_x: torch.Tensor, d_state, rec,
                  x_rows: slice = slice(None)) -> tuple:
    """The weight gradients from the pre-activation gradients of every step, D (G, T, B)."""
    grads = _WeightGrads(ctx, x, w_x, rec, x_rows)
    grads.add(D, 0, D.shape[1])
    return grads.result(d_state)


def _blocks(T: int, k: int):
    """Blocks of time steps (t0, t1) from the last to the first, k steps each (the first
    block may be shorter): the order of a backward pass."""
    for t1 in range(T, 0, -k):
        yield max(0, t1 - k), t1


# steps per block of the GRU's backward pass: its buffers hold this many steps, not T
GRU_BLOCK = 32


# ----------------------------------------------------------------------------- Elman RNN
class ElmanFunction(torch.autograd.Function):
    """a_t = g(w_x . x_t + w_a . a_{t-1} + b_a), g = tanh or relu, for t = 1..T."""

    @staticmethod
    @_custom_fwd
    def forward(ctx, x, w_x, w_a, b_a, a0, relu: bool, batch_sizes):
        B, T, _ = x.shape
        H = w_a.shape[0]
        xp = _input_projection(x, w_x, b_a)  # (T, H, B)
        hs = x.new_empty(H, T + 1, B)  # a_0 .. a_T
        hs[:, 0] = a0.t()
        # a GPU: the loop below as one Triton kernel (None: it does not compile here)
        if not (triton_loops.usable(hs) and triton_loops.elman_forward(xp, w_a, hs, relu, batch_sizes) is not None):
            for t in range(T):
                n = B if batch_sizes is None else batch_sizes[t]
                a = hs[:, t + 1, :n]
                # a_t = g(w_a . a_{t-1} + [w_x . x_t + b_a])
                torch.addmm(xp[t, :, :n], w_a, hs[:, t, :n], out=a)
                a.relu_() if relu else a.tanh_()
                if n < B:
                    hs[:, t + 1, n:] = hs[:, t, n:]
        ctx.relu = relu
        ctx.batch_sizes = batch_sizes
        ctx.save_for_backward(x, w_x, w_a, hs)
        return _outputs(hs, batch_sizes), hs[:, T].t().contiguous()

    @staticmethod
    @_custom_bwd
    def backward(ctx, d_out, d_aT):
        x, w_x, w_a, hs = ctx.saved_tensors
        H, T1, B = hs.shape
        T = T1 - 1
        bs = ctx.batch_sizes
        dO = _grad_outputs(d_out, T, H, B, hs, bs)  # (T, H, B)
        da = _grad_state(d_aT, H, B, hs)
        da.add_(dO[T - 1])  # dC/da_T
        done = triton_loops.elman_backward(w_a, hs, dO, da, ctx.relu, bs) if triton_loops.usable(hs) else None
        if done is not None:  # a GPU: the loop below as one Triton kernel
            D, da = done
            return _weight_grads(ctx, D, x, w_x, da, rec=[(slice(None), hs[:, :T])]) + (None, None)
        a = hs[:, 1:]  # (H, T, B)
        # g'(z_t) for every t at once: tanh' = 1 - a_t^2, relu' = [a_t > 0]
        gprime = (a > 0).to(hs.dtype) if ctx.relu else _tanh_grad(a)
        D = hs.new_zeros(H, T, B) if bs is not None else hs.new_empty(H, T, B)  # dC/dz_t
        wT = w_a.t()
        for t in range(T - 1, -1, -1):
            n = B if bs is None else bs[t]
            # dC/dz_t = dC/da_t * g'(z_t)
            torch.mul(da[:, :n], gprime[:, t, :n], out=D[:, t, :n])
            # dC/da_{t-1} = w_a^T . dC/dz_t + dC/do_{t-1}     (the factor da_t/da_{t-1})
            da = _recurrent_grad(da, dO, wT, D[:, t, :n], t, n, B)
        return _weight_grads(ctx, D, x, w_x, da, rec=[(slice(None), hs[:, :T])]) + (None, None)


# ----------------------------------------------------------------------------- LSTM
_ONEDNN: bool | None = None  # whether PyTorch's oneDNN linear runs here: decided once, on first use


def _onednn_usable() -> bool:
    """PyTorch's oneDNN (mkldnn) matrix product, ``torch.ops.mkldnn._linear_pointwise``, on an
    x86-64 CPU, checked once against ``torch.mm``; ``SEQLAB_ONEDNN=0`` turns it off."""
    global _ONEDNN
    if _ONEDNN is None:
        import os
        import platform

        ok = (os.environ.get("SEQLAB_ONEDNN", "1") != "0" and torch.backends.mkldnn.is_available()
              and platform.machine().lower() in ("x86_64", "amd64") and hasattr(torch.ops.mkldnn, "_linear_pointwise"))
        if ok:
            try:
                g = torch.Generator().manual_seed(0)
                a, w, c = (torch.randn(*s, generator=g) for s in ((5, 7), (3, 7), (5, 3)))
                packed = torch.ops.mkldnn._reorder_linear_weight(w, 5)
                y = torch.ops.mkldnn._linear_pointwise.binary(a, c, packed, None, "add")
                ok = bool(torch.allclose(y, torch.addmm(c, a, w.t()), atol=1e-5))
                wt = torch.randn(7, 3, generator=g)  # a weight given as a transposed view (W^T of the LSTM)
                yt = torch.ops.mkldnn._linear_pointwise.binary(a, c, torch.ops.mkldnn._reorder_linear_weight(wt.t(), 5),
                                                               None, "add")
                ok = ok and bool(torch.allclose(yt, torch.addmm(c, a, wt), atol=1e-5))
                gw, gb = _onednn_tn(a.to_mkldnn(), c, True)
                ok = ok and bool(torch.allclose(gw, a.t() @ c, atol=1e-5) and torch.allclose(gb, a.sum(0), atol=1e-5))
            except Exception:  # an op missing or refused in this build: the plain products
                ok = False
        _ONEDNN = ok
    return _ONEDNN


class _Linear:
    """y = a . w^T (+ add): the recurrent products of the LSTM's Python loops. A float32 CPU tensor
    goes through PyTorch's oneDNN kernel with ``w`` packed once per pass: torch.mm runs MKL,
    which on the project's AMD CPU reaches about half of oneDNN's speed at these sizes
    (``benchmarks/bench_recurrent_speed.py``); anything else (float64, CUDA) uses torch.mm."""

    # below this many weights (4H x H with H < 128) a oneDNN call's fixed cost (tens of
    # microseconds) exceeds what it saves on the product: torch.mm is faster there
    MIN_WEIGHTS = 4 * 128 * 128
    # packing w costs as much as several steps' products: shorter passes (generation feeds one
    # step a call) keep torch.mm, and so does a single row, where torch.mm's matrix-vector
    # product is the faster one (a training step of H=256 at B=1: 2.9 ms against 4.5 packed)
    MIN_STEPS = 16
    MIN_ROWS = 2

    def __init__(self, w: torch.Tensor, rows: int, steps: int) -> None:
        self.w = w
        self.packed = None
        if (w.numel() >= self.MIN_WEIGHTS and steps >= self.MIN_STEPS and rows >= self.MIN_ROWS
                and _fast_cpu_float(w)):
            self.packed = torch.ops.mkldnn._reorder_linear_weight(w, rows)  # w may be a transposed view

    def __call__(self, a: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        if self.packed is not None:
            if add is None:
                return torch.ops.mkldnn._linear_pointwise(a, self.packed, None, "none", [], "")
            return torch.ops.mkldnn._linear_pointwise.binary(a, add, self.packed, None, "add")
        return torch.mm(a, self.w.t()) if add is None else torch.addmm(add, a, self.w.t())


# products smaller than this many multiply-adds stay with torch.mm (oneDNN's fixed cost)
MM_MIN_MACS = 2**21
# the LSTM's compiled backward sums its weight gradients over blocks of about this many rows (t, b),
# each block while it is in cache (128 to 512 measured alike at B = 32, H = 256; 1,024 slower)
SUM_ROWS = 256


# the compiled LSTM loops cut a pass's H units into slices, one per thread (each at least 64 units); a
# positive number here sets how many (the tests: several slices on any number of threads)
LSTM_SLICES = 0
# the compiled LSTM loops lay the weights out for their own product once per pass (about 40 us at
# H = 256) where a pass has at least 2 steps and 8 rows (t, b) in all: at B = 1, T = 64, 1.4 ms a
# training step against 2.6 with at::mm; a single step (generation) keeps at::mm (0.10 against 0.14 ms)
LAYOUT_MIN_STEPS = 2
LAYOUT_MIN_ROWS = 8


def _lays_out(t: torch.Tensor, rows: int, steps: int) -> bool:
    """Whether the compiled LSTM loops use their own product (float32, passes of at least
    LAYOUT_MIN_STEPS steps and LAYOUT_MIN_ROWS rows in all); else at::mm."""
    return t.dtype == torch.float32 and steps >= LAYOUT_MIN_STEPS and rows * steps >= LAYOUT_MIN_ROWS


def _fast_cpu_float(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype == torch.float32 and _onednn_usable()


def _mm_nt(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a . b^T (+ bias, added to each row) for one large product (contiguous a (M, K), b (N, K)),
    through oneDNN where :class:`_Linear` would use it (and the product is not tiny)."""
    if a.shape[0] * b.shape[0] * a.shape[1] >= MM_MIN_MACS and _fast_cpu_float(a):
        return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")
    return torch.mm(a, b.t()) if bias is None else torch.addmm(bias, a, b.t())


def _onednn_tn(a: torch.Tensor, b: torch.Tensor, bias: bool = False):
    # oneDNN's inner-product weight gradient, a^T . b (and a's column sums with bias=True): it
    # takes both operands by rows, in its own tensor type (a given as one, b converted: a copy);
    # the third argument only gives the results' dtype
    return torch.ops.aten.mkldnn_linear_backward_weights(a, b.to_mkldnn(), b.new_empty(0), bias)


def _row_sums(a: torch.Tensor, others: Sequence[torch.Tensor | None], bias: bool):
    """[a^T . b for b in others] (None where b is None) and a's column sums (None unless bias),
    each a sum over the rows of contiguous a (M, N) and b (M, K): the weight gradients' sums over
    the time steps, sum_t dC/dz_t^T . v_t and sum_t dC/dz_t, where the compiled backward did not
    make them. Through oneDNN where :func:`_mm_nt` would use it (a converted once, no transposed
    copies), else torch.mm on the transposed view."""
    todo = [b for b in others if b is not None]
    if todo and a.shape[0] * a.shape[1] * todo[0].shape[1] >= MM_MIN_MACS and _fast_cpu_float(a):
        ak = a.contiguous().to_mkldnn()
        grads = [None if b is None else _onednn_tn(ak, b.contiguous())[0] for b in others]
    else:
        grads = [None if b is None else torch.mm(a.t(), b) for b in others]
    return grads, (a.sum(0) if bias else None)


def _lstm_cell_forward(g, c_prev, c, tc, h, H: int) -> None:
    """A step's element-wise work after the gate product, with PyTorch operations (what
    ``native``'s compiled forward loop does in one pass). g: (n, 4H) pre-activations, rows
    (o, i, f, g), the g block doubled, turned in place into a^(o), a^(i), a^(f), a^(g);
    writes a^(c)_t into c, tanh(a^(c)_t) into tc and a^(h)_t into h, each (n, H)."""
    g.sigmoid_()  # a^(o), a^(i), a^(f); sigmoid(2 z_g)
    o, i, f, gg = g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H], g[:, 3 * H :]
    gg.mul_(2).sub_(1)  # a^(g) = tanh(z_g) = 2 sigmoid(2 z_g) - 1
    # a^(c)_t = a^(f)_t * a^(c)_{t-1} + a^(i)_t * a^(g)_t
    torch.mul(f, c_prev, out=c)
    c.addcmul_(i, gg)
    # a^(h)_t = a^(o)_t * tanh(a^(c)_t)
    torch.mul(c, 2, out=tc).sigmoid_().mul_(2).sub_(1)
    torch.mul(o, tc, out=h)


def _lstm_cell_backward(g, tc, c_prev, dh, dc, d, u, S, H: int) -> None:
    """One step back through the element-wise work, with PyTorch operations (what
    ``native``'s compiled backward loop does in one pass): from the activations g (n, 4H),
    tanh(a^(c)_t) and a^(c)_{t-1} (n, H), dC/da^(h)_t (dh) and dC/da^(c)_t (dc, in place ->
    dC/da^(c)_{t-1}), writes dC/dz_t (n, 4H) into d; u (n, H) and S (n, 3H) are scratch."""
    o, i, f, gg = g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H], g[:, 3 * H :]
    # dC/da^(c)_t += dC/da^(h)_t * a^(o)_t * (1 - tanh^2(a^(c)_t))
    torch.mul(tc, tc, out=u)
    torch.addcmul(o, o, u, value=-1, out=u)
    dc.addcmul_(dh, u)
    # gradients of the gates after their activation ...
    torch.mul(dh, tc, out=d[:, :H])  # dC/da^(o) = dC/da^(h) * tanh(a^(c))
    torch.mul(dc, gg, out=d[:, H : 2 * H])  # dC/da^(i) = dC/da^(c) * a^(g)
    torch.mul(dc, c_prev, out=d[:, 2 * H : 3 * H])  # dC/da^(f) = dC/da^(c) * a^(c)_{t-1}
    # ... and before it: sigmoid' = s (1 - s)
    s3 = g[:, : 3 * H]
    torch.addcmul(s3, s3, s3, value=-1, out=S)
    d[:, : 3 * H].mul_(S)
    # dC/dz_g = dC/da^(c) * a^(i) * (1 - a^(g)^2)
    torch.mul(gg, gg, out=u)
    torch.addcmul(i, i, u, value=-1, out=u)
    torch.mul(dc, u, out=d[:, 3 * H :])
    # dC/da^(c)_{t-1} = dC/da^(c)_t * a^(f)_t (items that ended carry theirs unchanged)
    dc.mul_(f)


_VERIFIED: dict[int, bool] = {}  # id(compiled ops) -> whether they passed _verify_compiled here
_VERIFY_LOCK = threading.Lock()  # one thread checks; others wait for its verdict
# .python_loops: this thread's LSTM runs the Python loops (the check's reference);
# .verifying: this thread is running the check (whose own calls use the compiled loops)
_LOCAL = threading.local()


def _compiled(t: torch.Tensor):
    """``seqlab.recurrent.native``'s compiled loops for tensors like ``t``, or None: not built
    here, or they failed their check. The check runs once per process (``_verify_compiled``):
    the C++ is built against this PyTorch's ATen and compiled for this machine's vector
    instructions and OpenMP, and a fault there (another PyTorch's API, a compiler's mistake)
    must show here, not in a user's training."""
    ops = native.ops() if native.usable(t) and not getattr(_LOCAL, "python_loops", False) else None
    if ops is None:
        return None
    ok = _VERIFIED.get(id(ops))
    if ok is None:
        if getattr(_LOCAL, "verifying", False):  # the check's own calls
            return ops
        with _VERIFY_LOCK:
            if id(ops) not in _VERIFIED:
                _LOCAL.verifying = True
                try:
                    _VERIFIED[id(ops)] = _verify_compiled()
                finally:
                    _LOCAL.verifying = False
        ok = _VERIFIED[id(ops)]
    return ops if ok else None


def _verify_compiled() -> bool:
    """A small LSTM (float32, items of different lengths, large enough for the compiled loops'
    own product, with a full tile of rows and a remainder, and for two slices of units) through
    the compiled loops and through the Python loops: the same outputs and gradients, or the
    compiled loops are not used (said once)."""
    import sys

    B, T, I, H = 9, 16, 8, 128
    sizes = tuple(B - B * t // T for t in range(T))  # 9, 9, 8, 7, ..., 1
    results = []
    try:
        # called from inside a forward (no grad there), maybe under inference_mode: a graph of its own
        with torch.inference_mode(False), torch.enable_grad():
            gen = torch.Generator().manual_seed(0)
            shapes = ((B, T, I), (4 * H, I), (4 * H, H), (4 * H,), (B, H), (B, H))
            args = [torch.randn(*s, generator=gen) * 0.2 for s in shapes]
            for python_loops in (False, True):
                leaves = [a.clone().requires_grad_() for a in args]
                _LOCAL.python_loops = python_loops
                try:
                    out, h, c = LSTMFunction.apply(*leaves, sizes)
                    ((out * out).sum() + h.sum() + c.sum()).backward()
                finally:
                    _LOCAL.python_loops = False
                results.append([out, h, c] + [leaf.grad for leaf in leaves])
        if all(torch.allclose(a, b, atol=1e-4, rtol=1e-4) for a, b in zip(*results)):
            return True
        problem = "results differ from the PyTorch operations'"
    except Exception as e:  # an ATen call or kernel this PyTorch does not have
        problem = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    print(f"seqlab: the LSTM's compiled loops fail their check here ({problem}); using PyTorch's operations "
          "(same results, slower on a CPU)", file=sys.stderr, flush=True)
    return False


def _lstm_pass(X, w_x, w_a, b, h0, c0, batch_sizes, T: int, B: int):
    """The LSTM's forward loop over X (T B, I), rows (t, b): returns G (T, B, 4H), the gates'
    activations a^(o), a^(i), a^(f), a^(g) of every step (zero for items that ended),
    a^(h)_0..T, a^(c)_0..T (T+1, B, H), tanh(a^(c)_1..T) (T, B, H) and the output (B, T, H),
    a^(h)_1..T batch first, 0 after an item's end."""
    done = triton_loops.lstm_forward(X, w_x, w_a, b, h0, c0, batch_sizes, T, B) if triton_loops.usable(X) else None
    if done is not None:  # a GPU: the loop below as one Triton kernel
        return done
    H = w_a.shape[1]
    hs = X.new_empty(T + 1, B, H)  # a^(h)_0 .. a^(h)_T
    cs = X.new_empty(T + 1, B, H)  # a^(c)_0 .. a^(c)_T
    tc = X.new_empty(T, B, H)  # tanh(a^(c)_t)
    hs[0], cs[0] = h0, c0
    cell = _compiled(X)
    if cell is not None:  # the loop below, compiled (seqlab.recurrent.native): tanh without doubled g rows
        G, out = X.new_empty(T, B, 4 * H), X.new_empty(B, T, H)  # a step's product takes x_t and a^(h)_{t-1}
        cell.lstm_forward(X, w_x, w_a, b.contiguous(), _lays_out(X, B, T), G, hs, cs, tc, out,
                          list(batch_sizes or ()), LSTM_SLICES)
        return G, hs, cs, tc, out

    # tanh(z) = 2 sigmoid(2 z) - 1: PyTorch's CPU tanh costs about 8 times its sigmoid
    # here, so the g gate goes through the one sigmoid of all four gates, with its
    # pre-activation doubled (its rows of w, W and b), and is mapped back
    def doubled_g(v: torch.Tensor) -> torch.Tensor:
        return torch.cat([v[: 3 * H], 2 * v[3 * H :]])

    # w . x_t + b for every t at once: (T, B, 4H), the g rows doubled. Step t overwrites its
    # rows with the gates' activations a^(o), a^(i), a^(f), a^(g) (what the backward needs)
    G = _mm_nt(X, doubled_g(w_x), doubled_g(b)).view(T, B, 4 * H)
    W = _Linear(doubled_g(w_a), B, T)
    h_, c_, tc_, g_ = hs.unbind(0), cs.unbind(0), tc.unbind(0), G.unbind(0)  # per-step views, made once
    for t in range(T):
        n = B if batch_sizes is None else batch_sizes[t]
        views = (h_[t], c_[t], c_[t + 1], tc_[t], h_[t + 1], g_[t])
        h, c_prev, c, tct, h_next, gt = views if n == B else tuple(v[:n] for v in views)
        z = W(h, gt)  # w . x_t + b + W . a^(h)_{t-1} (g rows doubled): (n, 4H), a new tensor
        _lstm_cell_forward(z, c_prev, c, tct, h_next, H)
        gt.copy_(z)
        if n < B:  # items that ended keep their state; their rows of G become dC/dz = 0
            hs[t + 1, n:] = hs[t, n:]
            cs[t + 1, n:] = cs[t, n:]
            G[t, n:] = 0
    out = hs[1:].transpose(0, 1).contiguous()  # (B, T, H)
    if batch_sizes is not None:
        for t, n in enumerate(batch_sizes):
            if n < B:
                out[n:, t] = 0
    return G, hs, cs, tc, out


def _lstm_backward_loop(G, W_T, cs, tc, dO, dh, dc, bs):
    """The LSTM's backward loop (what ``native.lstm_backward`` does compiled): G (T, B, 4H), the
    activations, is overwritten with dC/dz_t; dc (B, H) becomes dC/da^(c)_0; returns dC/da^(h)_0.
    dh (B, H): dC/da^(h)_T, its output's gradient included; dO (T, B, H): dC/d output_t."""
    T, B, H = tc.shape
    u, S, d = dh.new_empty(B, H), dh.new_empty(B, 3 * H), dh.new_empty(B, 4 * H)  # scratch
    c_, tc_, g_, dO_ = cs.unbind(0), tc.unbind(0), G.unbind(0), dO.unbind(0)  # per-step views, made once
    for t in range(T - 1, -1, -1):
        n = B if bs is None else bs[t]
        tct, c_prev, gt, dh_n, dc_n = ((tc_[t], c_[t], g_[t], dh, dc) if n == B else
                                       (tc_[t][:n], c_[t][:n], g_[t][:n], dh[:n], dc[:n]))
        # dC/dz_t of the four gates over their activations, and dC/da^(c)_{t-1} in place of dC/da^(c)_t
        _lstm_cell_backward(gt, tct, c_prev, dh_n, dc_n, d[:n], u[:n], S[:n], H)
        gt.copy_(d[:n])
        # dC/da^(h)_{t-1} = dC/dz_t . W (+ dC/d output_{t-1})
        back = W_T(gt) if t == 0 else W_T(gt, dO_[t - 1] if n == B else dO_[t - 1][:n])
        if n == B:
            dh = back
        else:
            rest = dh[n:] if t == 0 else dh[n:] + dO[t - 1, n:]
            dh = torch.cat([back, rest])
    return dh


class LSTMFunction(torch.autograd.Function):
    """The lecture's LSTM; stacked gate rows in the order (o, i, f, g):

        a^(o), a^(i), a^(f) = sigmoid(w . x_t + W . a^(h)_{t-1} + b)
        a^(g)               = tanh(w^(g) . x_t + w^(G) . a^(h)_{t-1} + b^(g))
        a^(c)_t = a^(f)_t * a^(c)_{t-1} + a^(i)_t * a^(g)_t
        a^(h)_t = a^(o)_t * tanh(a^(c)_t)

    (o, i, f, g) puts the three sigmoid gates next to each other. Unlike the other cells
    here, the LSTM keeps the batch first, (B, features): a step's gates are one product
    a^(h)_{t-1} . W^T + (w . x_t + b), (B, 4H), and the items still running at step t are
    the first rows. The loops over t are ``_lstm_pass`` and ``_lstm_backward_loop`` (the
    element-wise work of a step in ``_lstm_cell_forward`` / ``_lstm_cell_backward``; the
    products through oneDNN with the add fused, see :class:`_Linear`), or the same loops
    compiled where ``seqlab.recurrent.native`` is available (which also takes x_t into each
    step's product).
    """

    @staticmethod
    @_custom_fwd
    def forward(ctx, x, w_x, w_a, b, h0, c0, batch_sizes):
        B, T, I = x.shape
        X = x.transpose(0, 1).reshape(T * B, I).contiguous()  # x_t stacked by time: rows (t, b)
        G, hs, cs, tc, out = _lstm_pass(X, w_x, w_a, b, h0, c0, batch_sizes, T, B)
        # G is overwritten by the backward pass (kept on ctx, not saved: this Function has no
        # double backward); a second backward through the same graph recomputes it
        ctx.G, ctx.batch_sizes, ctx.G_used = G, batch_sizes, False
        ctx.save_for_backward(X, w_x, w_a, b, hs, cs, tc)
        return out, hs[T].clone(), cs[T].clone()

    @staticmethod
    @_custom_bwd
    def backward(ctx, d_out, d_hT, d_cT):
        X, w_x, w_a, b, hs, cs, tc = ctx.saved_tensors
        bs = ctx.batch_sizes
        T1, B, H = hs.shape
        T = T1 - 1
        if ctx.G_used:  # a second backward (retain_graph): the first one overwrote G
            ctx.G = _lstm_pass(X, w_x, w_a, b, hs[0], cs[0], bs, T, B)[0]
        G, ctx.G_used = ctx.G, True
        need = ctx.needs_input_grad
        cell = None if triton_loops.usable(hs) else _compiled(hs)
        keep = torch.contiguous_format
        dh = hs.new_zeros(B, H) if d_hT is None else d_hT.clone(memory_format=keep)  # dC/da^(h)_T, final state
        dc = hs.new_zeros(B, H) if d_cT is None else d_cT.clone(memory_format=keep)  # dC/da^(c)_T
        # D = dC/dz_t (T, B, 4H) takes the place of the activations in G, step by step backwards
        D = G.view(T * B, 4 * H)  # dC/dz_t, rows (t, b), once the loop below is done
        Hp = hs[:T].view(T * B, H)  # a^(h)_{t-1}, rows (t, b)
        block = 0
        if cell is not None:  # _lstm_backward_loop, compiled (seqlab.recurrent.native)
            # in float32, the weight gradients' sums over t are made in the loop, every block of steps
            # (about SUM_ROWS rows of D), while the block is in cache; in float64 by _row_sums after it
            block = max(1, SUM_ROWS // B) if D.dtype == torch.float32 else 0
            dwx, dwa, dbb = (v.new_empty(v.shape) if block and need[k] else hs.new_empty(0)
                             for k, v in ((1, w_x), (2, w_a), (3, b)))
            # dC/d output_t read batch first, by rows (only those of items still running at t are read)
            dy = hs.new_zeros(B, T, H) if d_out is None else d_out if d_out.stride(2) == 1 else d_out.contiguous()
            # dC/da^(h)_{t-1} = dC/dz_t . W
            dh = cell.lstm_backward(G, w_a, _lays_out(G, B, T), hs, cs, tc, dy, dh, dc, list(bs or ()), X, dwx,
                                    dwa, dbb, block, LSTM_SLICES)
            dw_x, dw_a, db = (v if need[k] else None for k, v in ((1, dwx), (2, dwa), (3, dbb)))
        else:
            # dC/d(output_t): (T, B, H), zero at padded positions (their outputs are the constant 0)
            dO = hs.new_zeros(T, B, H) if d_out is None else d_out.transpose(0, 1).contiguous()
            if bs is not None and d_out is not None:
                for t, n in enumerate(bs):
                    if n < B:
                        dO[t, n:] = 0
            dh.add_(dO[T - 1])
            # a GPU: _lstm_backward_loop as one Triton kernel (None: it does not compile here)
            done = triton_loops.lstm_backward(G, w_a, cs, tc, dO, dh, dc, bs) if triton_loops.usable(hs) else None
            if done is not None:
                dh = done
            else:
                W_T = _Linear(w_a.t(), B, T)  # dC/da^(h)_{t-1} = dC/dz_t . W
                dh = _lstm_backward_loop(G, W_T, cs, tc, dO, dh, dc, bs)
        if not block:
            # dC/dw_x = sum_t dC/dz_t^T . x_t, dC/dw_a = sum_t dC/dz_t^T . a^(h)_{t-1}, dC/db = sum_t dC/dz_t
            (dw_x, dw_a), db = _row_sums(D, [X if need[1] else None, Hp if need[2] else None], bias=need[3])
        dx = None
        if need[0]:  # dC/dx_t = dC/dz_t . w_x
            dx = _mm_nt(D, w_x.t().contiguous()).view(T, B, -1).transpose(0, 1)
        ctx.G = None  # dC/dz now: not kept with the graph (a second backward recomputes it)
        return dx, dw_x, dw_a, db, dh, dc, None


# ----------------------------------------------------------------------------- GRU
def _gru_block_factors(Gs, hs, t0: int, t1: int, P_g, P_z, keep):
    """The factors both GRU forms share, for the steps t0..t1-1 of a backward block
    (a^(h)_t = a_{t-1} + a^(z) (a^(g) - a_{t-1})), each (k, H, B):

        P_g = a^(z) (1 - a^(g)^2)              dC/dz_g = dC/da_t * P_g
        P_z = (a^(g) - a_{t-1}) sigmoid'(z_z)  dC/dz_z = dC/da_t * P_z
        keep = 1 - a^(z)                       da_t/da_{t-1}, directly

    Returns the block's a^(r) and a_{t-1} for the factors that differ."""
    H = hs.shape[0]
    gg, z, r = Gs[t0:t1, :H], Gs[t0:t1, H : 2 * H], Gs[t0:t1, 2 * H :]  # (k, H, B)
    h_prev = hs[:, t0:t1].transpose(0, 1)  # a_{t-1}: (k, H, B)
    torch.mul(z, _tanh_grad(gg), out=P_g)
    torch.mul(gg - h_prev, _sigmoid_grad(z), out=P_z)
    torch.sub(1, z, out=keep)
    return r, h_prev


class GRUFunction(torch.autograd.Function):
    """The lecture's GRU (reset before the recurrent product), gate rows (g, z, r):

        a^(z), a^(r) = sigmoid(w . x_t + W . a^(h)_{t-1} + b)
        a^(g)_t = tanh(w^(g) . x_t + w^(G) . (a^(r)_t * a^(h)_{t-1}) + b^(g))
        a^(h)_t = (1 - a^(z)_t) * a^(h)_{t-1} + a^(z)_t * a^(g)_t

    ``w_zr`` stacks (w^(Z); w^(R)); ``w_G`` multiplies the reset state. Memory as
    :class:`GRUResetAfterFunction`: the gates, a^(r) * a^(h)_{t-1} and the states are kept;
    the backward pass works through blocks of ``GRU_BLOCK`` steps.
    """

    @staticmethod
    @_custom_fwd
    def forward(ctx, x, w_x, w_zr, w_G, b, h0, batch_sizes):
        B, T, _ = x.shape
        H = w_G.shape[0]
        Gs = _input_projection(x, w_x, b)  # (T, 3H, B) rows (g, z, r): w . x_t + b, then the gates in place
        hs = x.new_empty(H, T + 1, B)
        hs[:, 0] = h0.t()
        # a GPU: the loop below as one Triton kernel (None: it does not compile here)
        rh = triton_loops.gru_before_forward(Gs, w_zr, w_G, hs, batch_sizes) if triton_loops.usable(hs) else None
        if rh is None:
            # a^(r)_t * a^(h)_{t-1}; zeros at padded steps, which enter the sum for dC/dw^(G)
            rh = x.new_zeros(H, T, B) if batch_sizes is not None else x.new_empty(H, T, B)
            tmp = x.new_empty(H, B)
            for t in range(T):
                n = B if batch_sizes is None else batch_sizes[t]
                g, h = Gs[t, :, :n], hs[:, t, :n]
                gg, zr = g[:H], g[H:]
                # a^(z), a^(r) = sigmoid(w . x_t + W . a^(h)_{t-1} + b)
                torch.addmm(zr, w_zr, h, out=zr)
                zr.sigmoid_()
                # a^(g)_t = tanh(w^(g) . x_t + w^(G) . (a^(r)_t * a^(h)_{t-1}) + b^(g))
                torch.mul(zr[H:], h, out=rh[:, t, :n])
                torch.addmm(gg, w_G, rh[:, t, :n], out=gg)
                gg.tanh_()
                # a^(h)_t = (1 - a^(z)) * a^(h)_{t-1} + a^(z) * a^(g)  =  a_{t-1} + a^(z) (a^(g) - a_{t-1})
                torch.sub(gg, h, out=tmp[:, :n])
                torch.addcmul(h, zr[:H], tmp[:, :n], out=hs[:, t + 1, :n])
                if n < B:
                    hs[:, t + 1, n:] = hs[:, t, n:]
        ctx.batch_sizes = batch_sizes
        ctx.save_for_backward(x, w_x, w_zr, w_G, Gs, hs, rh)
        return _outputs(hs, batch_sizes), hs[:, T].t().contiguous()

    @staticmethod
    @_custom_bwd
    def backward(ctx, d_out, d_hT):
        x, w_x, w_zr, w_G, Gs, hs, rh = ctx.saved_tensors
        H, T1, B = hs.shape
        T = T1 - 1
        bs = ctx.batch_sizes
        dO = _grad_outputs(d_out, T, H, B, hs, bs)
        dh = _grad_state(d_hT, H, B, hs)
        dh.add_(dO[T - 1])
        rec = [(slice(H, 3 * H), hs[:, :T]), (slice(0, H), rh)]
        done = triton_loops.gru_before_backward(w_zr, w_G, Gs, hs, dO, dh, bs) if triton_loops.usable(hs) else None
        if done is not None:  # a GPU: the loop below as one Triton kernel, D for all T steps
            D, dh = done
            return _weight_grads(ctx, D, x, w_x, dh, rec) + (None,)
        K = min(T, GRU_BLOCK)
        # Factors for a block of steps at once (a^(h)_t = a_{t-1} + a^(z) (a^(g) - a_{t-1})):
        #   dC/dz_g = dC/da_t * a^(z) * (1 - a^(g)^2)          = dh * P_g
        #   dC/dz_z = dC/da_t * (a^(g) - a_{t-1}) * sigmoid'(z_z) = dh * P_z
        #   dC/dz_r = [w^(G)^T . dC/dz_g] * a_{t-1} * sigmoid'(z_r) = v * P_r
        #   da_t/da_{t-1} directly = 1 - a^(z)                      (P row 3)
        D = hs.new_empty(3 * H, K, B)  # dC/dz_t, rows (g, z, r)
        P = hs.new_empty(K, 4, H, B)
        v = hs.new_empty(H, B)
        grads = _WeightGrads(ctx, x, w_x, rec=rec)
        wGT, wzrT = w_G.t(), w_zr.t()
        for t0, t1 in _blocks(T, K):
            k = t1 - t0
            P_g, P_z, P_r, keep = P[:k].unbind(1)
            r, h_prev = _gru_block_factors(Gs, hs, t0, t1, P_g, P_z, keep)
            torch.mul(h_prev, _sigmoid_grad(r), out=P_r)
            Dk = D[:, :k]
            if bs is not None:
                Dk.zero_()  # padded positions contribute nothing to the weight gradients
            for t in range(t1 - 1, t0 - 1, -1):
                n = B if bs is None else bs[t]
                j = t - t0
                dh_n, d, v_n = dh[:, :n], Dk[:, j, :n], v[:, :n]
                torch.mul(dh_n, P[j, :2, :, :n], out=d[: 2 * H].view(2, H, n))
                # dC/d(a^(r) * a_{t-1}) = w^(G)^T . dC/dz_g
                torch.mm(wGT, d[:H], out=v_n)
                torch.mul(v_n, P[j, 2, :, :n], out=d[2 * H :])
                # dC/da_{t-1} = W_zr^T . dC/dz_zr + v * a^(r) + dC/da_t * (1 - a^(z)) (+ dC/do_{t-1})
                new = _recurrent_grad(dh, dO, wzrT, d[H:], t, n, B)
                new[:, :n].addcmul_(v_n, r[j, :, :n])
                new[:, :n].addcmul_(dh_n, P[j, 3, :, :n])
                dh = new
            grads.add(Dk, t0, t1)
        return grads.result(dh) + (None,)


class GRUResetAfterFunction(torch.autograd.Function):
    """PyTorch's GRU form (reset applied after the recurrent product), written with the
    lecture's update gate (keep 1 - a^(z) of the old state). Rows: x side (g, z, r),
    recurrent side (z, r, G):

        a^(z), a^(r) = sigmoid(w . x_t + b + W . a^(h)_{t-1})
        a^(g)_t = tanh(w^(g) . x_t + b^(g) + a^(r)_t * (w^(G) . a^(h)_{t-1} + b^(G)))
        a^(h)_t = (1 - a^(z)_t) * a^(h)_{t-1} + a^(z)_t * a^(g)_t

    Memory: the forward pass keeps the gates (T, 3H, B), w^(G) . a^(h)_{t-1} + b^(G)
    (T, H, B) and the states; the backward pass works through blocks of ``GRU_BLOCK``
    steps, so its own buffers do not grow with T.
    """

    @staticmethod
    @_custom_fwd
    def forward(ctx, x, w_x, w_a, b, b_G, h0, batch_sizes):
        B, T, _ = x.shape
        H = w_a.shape[1]
        Gs = _input_projection(x, w_x, b)  # (T, 3H, B) rows (g, z, r): w . x_t + b, then the gates in place
        hs = x.new_empty(H, T + 1, B)
        hs[:, 0] = h0.t()
        # w^(G) . a^(h)_{t-1} + b^(G); a GPU: the loop below as one Triton kernel (None: it does not compile here)
        HG = triton_loops.gru_forward(Gs, w_a, b_G, hs, batch_sizes) if triton_loops.usable(hs) else None
        if HG is None:
            HG = x.new_empty(T, H, B)
            tmp = x.new_empty(H, B)
            w_zr, w_G, bG = w_a[: 2 * H], w_a[2 * H :], b_G[:, None]
            for t in range(T):
                n = B if batch_sizes is None else batch_sizes[t]
                g, hg, h = Gs[t, :, :n], HG[t, :, :n], hs[:, t, :n]
                gg, zr = g[:H], g[H:]
                # a^(z), a^(r) = sigmoid(w . x_t + b + W . a^(h)_{t-1})
                torch.addmm(zr, w_zr, h, out=zr)
                zr.sigmoid_()
                # a^(g)_t = tanh(w^(g) . x_t + b^(g) + a^(r)_t * (w^(G) . a^(h)_{t-1} + b^(G)))
                torch.addmm(bG, w_G, h, out=hg)
                gg.addcmul_(zr[H:], hg)
                gg.tanh_()
                # a^(h)_t = a_{t-1} + a^(z) (a^(g) - a_{t-1})
                torch.sub(gg, h, out=tmp[:, :n])
                torch.addcmul(h, zr[:H], tmp[:, :n], out=hs[:, t + 1, :n])
                if n < B:
                    hs[:, t + 1, n:] = hs[:, t, n:]
        ctx.batch_sizes = batch_sizes
        ctx.save_for_backward(x, w_x, w_a, Gs, HG, hs)
        return _outputs(hs, batch_sizes), hs[:, T].t().contiguous()

    @staticmethod
    @_custom_bwd
    def backward(ctx, d_out, d_hT):
        x, w_x, w_a, Gs, HG, hs = ctx.saved_tensors
        H, T1, B = hs.shape
        T = T1 - 1
        bs = ctx.batch_sizes
        dO = _grad_outputs(d_out, T, H, B, hs, bs)
        dh = _grad_state(d_hT, H, B, hs)
        dh.add_(dO[T - 1])
        grads = _WeightGrads(ctx, x, w_x, rec=[(slice(H, 4 * H), hs[:, :T])], x_rows=slice(0, 3 * H))
        d_bG = None
        done = triton_loops.gru_backward(w_a, Gs, HG, hs, dO, dh, bs) if triton_loops.usable(hs) else None
        if done is not None:  # a GPU: the loop below as one Triton kernel, D for all T steps
            D, dh = done
            grads.add(D, 0, T)
            if ctx.needs_input_grad[4]:  # dC/db^(G)
                d_bG = D[3 * H :].sum((1, 2))
        else:
            K = min(T, GRU_BLOCK)
            # D: dC/dz_t for a block of steps, rows (g, z, r, G): the x side uses rows 0:3H, the
            # recurrent side rows H:4H. Every row is dC/da_t times a factor P known from the
            # forward pass, computed for a whole block at once:
            #   dC/dz_g = dh * a^(z) (1 - a^(g)^2)                        = dh * P_g
            #   dC/dz_z = dh * (a^(g) - a_{t-1}) sigmoid'(z_z)
            #   dC/dz_r = dC/dz_g * (w^(G) a + b^(G)) sigmoid'(z_r)
            #   dC/d(w^(G) a + b^(G)) = dC/dz_g * a^(r)
            # and da_t/da_{t-1} directly = 1 - a^(z)                      (P row 4)
            D = hs.new_empty(4 * H, K, B)
            P = hs.new_empty(K, 5, H, B)
            wT = w_a.t()
            for t0, t1 in _blocks(T, K):
                k = t1 - t0
                P_g, P_z, P_r, P_G, keep = P[:k].unbind(1)
                r, _ = _gru_block_factors(Gs, hs, t0, t1, P_g, P_z, keep)
                torch.mul(P_g * HG[t0:t1], _sigmoid_grad(r), out=P_r)
                torch.mul(P_g, r, out=P_G)
                Dk = D[:, :k]
                if bs is not None:
                    Dk.zero_()  # padded positions contribute nothing to the weight gradients
                for t in range(t1 - 1, t0 - 1, -1):
                    n = B if bs is None else bs[t]
                    j = t - t0
                    dh_n, d = dh[:, :n], Dk[:, j, :n]
                    torch.mul(dh_n, P[j, :4, :, :n], out=d.view(4, H, n))
                    # dC/da_{t-1} = W^T . dC/dz_(z, r, G) + dC/da_t * (1 - a^(z)) (+ dC/do_{t-1})
                    new = _recurrent_grad(dh, dO, wT, d[H:], t, n, B)
                    new[:, :n].addcmul_(dh_n, P[j, 4, :, :n])
                    dh = new
                grads.add(Dk, t0, t1)
                if ctx.needs_input_grad[4]:  # dC/db^(G)
                    d_bG = _WeightGrads._acc(d_bG, Dk[3 * H :].sum((1, 2)))
        out = grads.result(dh)  # (dx, dw_x, dw_a, db, dh0): dC/db^(G) goes before dh0
        return out[:4] + (d_bG,) + out[4:] + (None,)


# ----------------------------------------------------------------------------- driver
def run(fn, x: torch.Tensor, weights: Sequence[torch.Tensor], state: Sequence[torch.Tensor],
        lengths: torch.Tensor | None, *extra):
    """Run one layer through a fused Function, sorting the batch by length if needed.

    x: (B, T, I); state: tensors (B, H); lengths: CPU int64 (B,) or None.
    Returns (outputs (B, T, H), final states tuple, each (B, H)), in the input order."""
    if lengths is None:
        out, *fin = fn.apply(x, *weights, *state, *extra, None)
        return out, tuple(fin)
    T = x.shape[1]
    order = torch.argsort(lengths, descending=True, stable=True)
    inverse = torch.argsort(order)
    bs = _batch_sizes(lengths[order], T)
    order_d, inverse_d = order.to(x.device), inverse.to(x.device)
    xs = x.index_select(0, order_d)
    st = [s.index_select(0, order_d) for s in state]
    out, *fin = fn.apply(xs, *weights, *st, *extra, bs)
    return out.index_select(0, inverse_d), tuple(f.index_select(0, inverse_d) for f in fin)
