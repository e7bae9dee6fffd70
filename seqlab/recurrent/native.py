"""The LSTM's time loops, forward and backward, compiled (the CPU's fast path).

``fused.LSTMFunction`` runs T steps one after the other; from Python, each step's dozen small
tensor operations and two matrix products cost a fixed few microseconds each, as much as the
work itself at the benchmark sizes. This module compiles, once per machine and cached by
PyTorch's extension builder (``torch.utils.cpp_extension.load_inline``, a C++ compiler needed),
the two loops of ``fused.py`` (``_lstm_pass``, ``_lstm_backward_loop``) in C++: each step's
product a^(h)_{t-1} . W^T goes to PyTorch's oneDNN kernel (``mkldnn::_linear_pointwise``, W
packed once per pass) or ``at::mm``, and its element-wise work is one pass over the batch, which
also adds the step's input product w . x_t + b (forward) or its output's gradient (backward):

forward (after the gate product z = w . x_t + b + W . a^(h)_{t-1}):

    a^(o), a^(i), a^(f) = sigmoid(z_o), sigmoid(z_i), sigmoid(z_f)
    a^(g) = tanh(z_g) = 2 sigmoid(2 z_g) - 1
    a^(c)_t = a^(f) * a^(c)_{t-1} + a^(i) * a^(g)
    a^(h)_t = a^(o) * tanh(a^(c)_t)              (tanh(v) = 2 sigmoid(2 v) - 1)

backward (the lecture's chain rule through one step, given dC/da^(h)_t and dC/da^(c)_t):

    dC/da^(c)_t += dC/da^(h)_t * a^(o) * (1 - tanh^2(a^(c)_t))
    dC/dz_o = dC/da^(h)_t * tanh(a^(c)_t) * a^(o) (1 - a^(o))
    dC/dz_i = dC/da^(c)_t * a^(g) * a^(i) (1 - a^(i))
    dC/dz_f = dC/da^(c)_t * a^(c)_{t-1} * a^(f) (1 - a^(f))
    dC/dz_g = dC/da^(c)_t * a^(i) * (1 - a^(g)^2)
    dC/da^(c)_{t-1} = dC/da^(c)_t * a^(f)

The forward writes a step's activations into the step's rows of one (T, B, 4H) buffer (where its
input projection w . x_t + b was), and the backward overwrites them in place with dC/dz_t: the
pass needs no second buffer of that size. With oneDNN, the backward also sums the weight
gradients, sum_t dC/dz_t^T . a^(h)_{t-1} and sum_t dC/dz_t^T . x_t, block by block of steps
while each block is in cache (PyTorch's ``mkldnn_linear_backward_weights``).

The float32 sigmoid is written here (range reduction and a polynomial, as accurate as
torch.sigmoid; ``step_sigmoid`` exposes it to the tests), so that the compiler vectorises a
step's whole element-wise work. ``fused.py`` runs the same loops with PyTorch operations where
this module is not available (no compiler, another device, ``SEQLAB_NATIVE=0``); tests check
the two against each other and with gradcheck.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from typing import Any

SOURCE = r"""
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

// sigmoid(x) = 1 / (1 + e^-x). float: e^-x by range reduction, e^v = 2^n e^r with n = round(v / ln 2)
// and |r| <= ln(2)/2, e^r by its Taylor series to r^7 (relative error under 1e-8, below float's
// 6e-8), 2^n put in the exponent bits: plain arithmetic that the compiler vectorises, so a whole
// step's gates run in one pass. A NaN stays NaN (the comparisons below are false for it).
static inline float sigmoid(float x) {
  float v = -x;
  v = v > 88.0f ? 88.0f : (v < -88.0f ? -88.0f : v);  // e^88 < float's max; e^-88 adds nothing to 1
  const float n = __builtin_rintf((v == v ? v : 0.0f) * 1.44269504f);  // a NaN's n is 0: the int below is defined
  const float r = (v - n * 0.693145752f) - n * 1.42860677e-6f;  // ln 2 in two parts: r exact enough (NaN stays)
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-127, 127]
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const float y = 1.0f / (1.0f + p * scale);
  return x < -88.0f ? 0.0f : y;  // sigmoid(x) < 6e-39 there: 0 (sigmoid(-inf) = 0 exactly)
}

static inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// One row b of a step (H units), one pass: from the recurrent product z = W . a^(h)_{t-1} (4H: o, i, f,
// g) and the input product w . x_t + b held in a (4H), the pre-activations, then the activations
// (written over a), a^(c)_t, tanh(a^(c)_t) and a^(h)_t. A plain function of raw pointers, so that the
// compiler vectorises it.
template <typename T>
static void forward_row(const T* __restrict__ z, T* __restrict__ a, const T* __restrict__ cp, T* __restrict__ c,
                        T* __restrict__ tc, T* __restrict__ h, T* __restrict__ y, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T o = sigmoid(z[j] + a[j]), i = sigmoid(z[H + j] + a[H + j]), f = sigmoid(z[2 * H + j] + a[2 * H + j]);
    const T ag = T(2) * sigmoid(T(2) * (z[3 * H + j] + a[3 * H + j])) - T(1);  // a^(g) = tanh(z_g) = 2 sigmoid(2 z_g) - 1
    const T cv = f * cp[j] + i * ag;                   // a^(c)_t = a^(f) a^(c)_{t-1} + a^(i) a^(g)
    const T t = T(2) * sigmoid(T(2) * cv) - T(1);      // tanh(a^(c)_t)
    a[j] = o;
    a[H + j] = i;
    a[2 * H + j] = f;
    a[3 * H + j] = ag;
    c[j] = cv;
    tc[j] = t;
    const T hv = o * t;  // a^(h)_t = a^(o) tanh(a^(c)_t)
    h[j] = hv;
    y[j] = hv;  // the layer's output, batch first
  }
}

// One row of a step, in place: r holds the activations a^(o), a^(i), a^(f), a^(g) (4 H) and
// receives dC/dz_o, dC/dz_i, dC/dz_f, dC/dz_g; each unit reads its four values before writing them.
template <typename T>
static void backward_cells(T* __restrict__ r, const T* __restrict__ tc, const T* __restrict__ cp,
                           const T* __restrict__ dh, const T* __restrict__ dy, T* __restrict__ dc, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    // dC/da^(h)_t: through the next step, and through the output y_t = a^(h)_t
    const T o = r[j], i = r[H + j], f = r[2 * H + j], ag = r[3 * H + j], t = tc[j], dhv = dh[j] + dy[j];
    const T dcv = dc[j] + dhv * o * (T(1) - t * t);  // dC/da^(c)_t
    r[j] = dhv * t * o * (T(1) - o);
    r[H + j] = dcv * ag * i * (T(1) - i);
    r[2 * H + j] = dcv * cp[j] * f * (T(1) - f);
    r[3 * H + j] = dcv * i * (T(1) - ag * ag);
    dc[j] = dcv * f;  // dC/da^(c)_{t-1}
  }
}

// the least rows a thread takes of a step's element-wise loops: about 2,048 units (B=32, H=256 on two
// threads: 6 instead of 10 microseconds a step; much fewer units and starting the threads costs more)
static int64_t grain(int64_t H) { return std::max<int64_t>(1, 2048 / H); }

static bool overlap(const at::Tensor& a, const at::Tensor& b) {
  const char* a0 = static_cast<const char*>(a.data_ptr());
  const char* b0 = static_cast<const char*>(b.data_ptr());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// z: (n, 4H) recurrent products W . a^(h)_{t-1}, rows (o, i, f, g); out: (n, 4H), not overlapping z, holds
// the input products w . x_t + b and receives the activations a^(o), a^(i), a^(f), a^(g); c_prev, c, tc, h:
// (n, H) rows of contiguous
// (B, H) buffers; y: (n, H) rows of a^(h)_t again, each row contiguous (the output (B, T, H) at t)
static void lstm_cell_forward(const at::Tensor& z, const at::Tensor& out, const at::Tensor& c_prev,
                              const at::Tensor& c, const at::Tensor& tc, const at::Tensor& h, const at::Tensor& y) {
  TORCH_CHECK(z.is_contiguous() && out.is_contiguous() && c_prev.is_contiguous() && c.is_contiguous() &&
              tc.is_contiguous() && h.is_contiguous() && y.stride(1) == 1, "lstm_cell_forward: contiguous rows expected");
  TORCH_CHECK(out.sizes() == z.sizes() && !overlap(z, out), "lstm_cell_forward: out (n, 4H) apart from z expected");
  const int64_t n = z.size(0), H = c.size(1);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "lstm_cell_forward", [&] {
    const scalar_t* Z = z.data_ptr<scalar_t>();
    scalar_t* A = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, grain(H), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        forward_row<scalar_t>(Z + b * 4 * H, A + b * 4 * H, c_prev.data_ptr<scalar_t>() + b * H,
                              c.data_ptr<scalar_t>() + b * H, tc.data_ptr<scalar_t>() + b * H,
                              h.data_ptr<scalar_t>() + b * H, y.data_ptr<scalar_t>() + b * y.stride(0), H);
      }
    });
  });
}

// gd: (n, 4H) activations (o, i, f, a^(g)) in, dC/dz_t out (in place); tc, c_prev: (n, H); dh, dy: (n, H)
// dC/da^(h)_t through the next step and through the output (dy: rows of stride dy.stride(0)); dc: (n, H), dC/da^(c)_t in, dC/da^(c)_{t-1} out
static void lstm_cell_backward(const at::Tensor& gd, const at::Tensor& tc, const at::Tensor& c_prev,
                               const at::Tensor& dh, const at::Tensor& dy, const at::Tensor& dc) {
  TORCH_CHECK(gd.is_contiguous() && tc.is_contiguous() && c_prev.is_contiguous() && dh.is_contiguous() &&
              dy.stride(1) == 1 && dc.is_contiguous(), "lstm_cell_backward: contiguous rows expected");
  const int64_t n = gd.size(0), H = tc.size(1);
  AT_DISPATCH_FLOATING_TYPES(gd.scalar_type(), "lstm_cell_backward", [&] {
    scalar_t* Gd = gd.data_ptr<scalar_t>();
    at::parallel_for(0, n, grain(H), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        backward_cells<scalar_t>(Gd + b * 4 * H, tc.data_ptr<scalar_t>() + b * H,
                                 c_prev.data_ptr<scalar_t>() + b * H, dh.data_ptr<scalar_t>() + b * H,
                                 dy.data_ptr<scalar_t>() + b * dy.stride(0), dc.data_ptr<scalar_t>() + b * H, H);
      }
    });
  });
}


// a . w^T, (n, K) x (N, K) -> (n, N): through PyTorch's oneDNN kernel (mkldnn::_linear_pointwise) with the
// weights packed once per pass where `packed` is given, else at::mm. (What is added to it, the step's
// input product or output gradient, is added in the element-wise pass: cheaper than oneDNN's add.)
static at::Tensor product(const at::Tensor& a, const at::Tensor& w, const std::optional<at::Tensor>& packed) {
  if (packed.has_value()) {
    using Sig = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, c10::string_view,
                           c10::List<std::optional<at::Scalar>>, std::optional<c10::string_view>);
    static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "").typed<Sig>();
    return op.call(a, *packed, std::nullopt, "none", c10::List<std::optional<at::Scalar>>(), std::nullopt);
  }
  return at::mm(a, w.t());
}

static int64_t rows_at(c10::IntArrayRef sizes, int64_t t, int64_t B) { return sizes.empty() ? B : sizes[t]; }

// the first n rows of v (v itself when that is all of them: one view fewer a step)
static at::Tensor first_rows(const at::Tensor& v, int64_t n) { return n == v.size(0) ? v : v.narrow(0, 0, n); }

// The forward loop. G: (T, B, 4H) input projections w . x_t + b, overwritten step by step with the
// activations; W: (4H, H) recurrent weights, `packed` its oneDNN form;
// hs, cs: (T+1, B, H) with a^(h)_0, a^(c)_0 set; tc: (T, B, H); out: (B, T, H), the output a^(h)_t batch
// first (0 after an item's end); sizes: the batch size of each step (items sorted by length, longest
// first), or empty for all B.
void lstm_forward(at::Tensor G, const at::Tensor& W, const std::optional<at::Tensor>& packed, at::Tensor hs,
                  at::Tensor cs, at::Tensor tc, at::Tensor out, c10::IntArrayRef sizes) {
  const int64_t T = G.size(0), B = G.size(1);
  TORCH_CHECK(G.is_contiguous() && hs.is_contiguous() && cs.is_contiguous() && tc.is_contiguous() &&
              out.is_contiguous() && hs.size(0) == T + 1 && out.size(0) == B && out.size(1) == T &&
              (sizes.empty() || static_cast<int64_t>(sizes.size()) == T),
              "lstm_forward: contiguous G (T, B, 4H), hs, cs (T+1, B, H), tc (T, B, H), out (B, T, H) expected");
  for (int64_t t = 0; t < T; ++t) {
    const int64_t n = rows_at(sizes, t, B);
    const at::Tensor gt = G.select(0, t), h = hs.select(0, t), c = cs.select(0, t);
    const at::Tensor h1 = hs.select(0, t + 1), c1 = cs.select(0, t + 1);
    if (n > 0) {  // a^(h)_{t-1} . W^T, + (w . x_t + b) in the pass that makes the gates, a^(c)_t and a^(h)_t
      const at::Tensor g = first_rows(gt, n);
      const at::Tensor z = product(first_rows(h, n), W, packed);
      lstm_cell_forward(z, g, first_rows(c, n), first_rows(c1, n), first_rows(tc.select(0, t), n), first_rows(h1, n),
                        first_rows(out.select(1, t), n));
    }
    if (n < B) {  // items that ended keep their state, output 0; their rows of G become dC/dz = 0
      h1.narrow(0, n, B - n).copy_(h.narrow(0, n, B - n));
      c1.narrow(0, n, B - n).copy_(c.narrow(0, n, B - n));
      gt.narrow(0, n, B - n).zero_();
      out.select(1, t).narrow(0, n, B - n).zero_();
    }
  }
}

// Sums over the rows of D = dC/dz of steps [t0, t1) (rows (t, b) of G): dwa += D^T . a^(h)_{t-1},
// dwx += D^T . x_t, db += D's column sums (= with first), each where its accumulator is not empty. oneDNN's
// inner-product weight gradient (PyTorch's mkldnn_linear_backward_weights) takes D by rows, converted
// to its tensor type while the block is still in cache.
static void add_row_sums(const at::Tensor& G, const at::Tensor& hs, const at::Tensor& X, int64_t t0, int64_t t1,
                         bool first, at::Tensor& dwx, at::Tensor& dwa, at::Tensor& db) {
  const int64_t B = G.size(1), rows = (t1 - t0) * B;
  const at::Tensor D = G.view({-1, G.size(2)}).narrow(0, t0 * B, rows);
  const at::Tensor Dk = D.to_mkldnn();
  bool bias = db.numel() > 0;
  auto put = [first](at::Tensor& acc, const at::Tensor& v) { first ? acc.copy_(v) : acc.add_(v); };
  auto sums = [&](at::Tensor& acc, const at::Tensor& V) {
    auto r = at::mkldnn_linear_backward_weights(Dk, V.narrow(0, t0 * B, rows).to_mkldnn(), acc, bias);
    put(acc, std::get<0>(r));
    if (bias) put(db, std::get<1>(r));
    bias = false;
  };
  if (dwa.numel() > 0) sums(dwa, hs.view({-1, hs.size(2)}));
  if (dwx.numel() > 0) sums(dwx, X);
  if (bias) put(db, D.sum(0));
}

// The backward loop. G: (T, B, 4H) activations, overwritten with dC/dz_t; WT: (H, 4H) = W^T, `packedT`
// its oneDNN form; hs, cs (T+1, B, H), tc (T, B, H) from the forward; dy: (B, T, H) dC/d output_t, batch
// first, each row contiguous (rows of items that ended are not read); dh: (B, H) dC/da^(h)_T from the
// final state only; dc: (B, H) dC/da^(c)_T, in place -> dC/da^(c)_0.
// With block > 0, also the weight gradients' sums over t, every `block` steps (see add_row_sums), into
// dwx, dwa, db (X: (T B, I) the inputs, rows (t, b)). Returns dC/da^(h)_0.
at::Tensor lstm_backward(at::Tensor G, const at::Tensor& WT, const std::optional<at::Tensor>& packedT,
                         const at::Tensor& hs, const at::Tensor& cs, const at::Tensor& tc, const at::Tensor& dy,
                         at::Tensor dh, at::Tensor dc, c10::IntArrayRef sizes, const at::Tensor& X, at::Tensor dwx,
                         at::Tensor dwa, at::Tensor db, int64_t block) {
  const int64_t T = G.size(0), B = G.size(1), H = tc.size(2);
  TORCH_CHECK(G.is_contiguous() && hs.is_contiguous() && cs.is_contiguous() && tc.is_contiguous() &&
              dy.dim() == 3 && dy.size(0) == B && dy.size(1) == T && dy.stride(2) == 1 && dh.is_contiguous() &&
              dc.is_contiguous() && X.is_contiguous() && (sizes.empty() || static_cast<int64_t>(sizes.size()) == T),
              "lstm_backward: contiguous G, hs, cs, tc, dh, dc, X and dy (B, T, H) with contiguous rows expected");
  int64_t t1 = T;  // steps [t + 1, t1) wait for their weight-gradient sums
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t n = rows_at(sizes, t, B);
    at::Tensor back;
    if (n > 0) {
      const at::Tensor g = first_rows(G.select(0, t), n);
      // dC/dz_t over the activations (dC/d output_t added to dh there), dC/da^(c)_{t-1} over dC/da^(c)_t
      lstm_cell_backward(g, first_rows(tc.select(0, t), n), first_rows(cs.select(0, t), n), first_rows(dh, n),
                         first_rows(dy.select(1, t), n), first_rows(dc, n));
      back = product(g, WT, packedT);  // dC/da^(h)_{t-1} through step t = dC/dz_t . W
    }
    if (n == B) {
      dh = back;
    } else if (n > 0) {  // items that ended before t: their dC/da^(h) passes on (their outputs there are 0)
      dh = at::cat({back, dh.narrow(0, n, B - n)});
    }
    if (block > 0 && (t1 - t == block || t == 0)) {
      add_row_sums(G, hs, X, t, t1, t1 == T, dwx, dwa, db);
      t1 = t;
    }
  }
  return dh;
}

// The step's sigmoid on a whole contiguous tensor (for the tests: its accuracy against torch.sigmoid)
at::Tensor step_sigmoid(const at::Tensor& x) {
  at::Tensor y = x.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "step_sigmoid", [&] {
    scalar_t* p = y.data_ptr<scalar_t>();
    for (int64_t k = 0; k < y.numel(); ++k) p[k] = sigmoid(p[k]);
  });
  return y;
}

TORCH_LIBRARY(NAMESPACE, m) {
  m.def("step_sigmoid(Tensor x) -> Tensor", &step_sigmoid);
  m.def("lstm_forward(Tensor(a!) G, Tensor W, Tensor? packed, Tensor(b!) hs, Tensor(c!) cs, Tensor(d!) tc, "
        "Tensor(e!) out, int[] sizes) -> ()", &lstm_forward);
  m.def("lstm_backward(Tensor(a!) G, Tensor WT, Tensor? packedT, Tensor hs, Tensor cs, Tensor tc, Tensor dy, "
        "Tensor dh, Tensor(b!) dc, int[] sizes, Tensor X, Tensor(c!) dwx, Tensor(d!) dwa, Tensor(e!) db, "
        "int block) -> Tensor", &lstm_backward);
}
"""

_LOCK = threading.Lock()
_OPS: Any = None  # the loaded ops, False once they could not be built here


def _cpu_flags() -> str:
    """The CPU's instruction-set flags (Linux), so that a library built with -march=native for one
    CPU is never loaded on another (a shared home directory): they are part of its name."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    import platform

    return platform.machine() + platform.processor()


# -march=native: the element-wise loops vectorised for this CPU (x86-64 and arm64 compilers take it)
CFLAGS = ["-O3", "-march=native"]
# at::parallel_for runs the step's element-wise work on PyTorch's threads only where the code is
# compiled with OpenMP, PyTorch's own CPU threading on Linux (the GNU runtime, libgomp, it loads)
if sys.platform.startswith("linux"):
    CFLAGS.append("-fopenmp")
NAME = "seqlab_lstm_" + hashlib.sha256((SOURCE + " ".join(CFLAGS) + _cpu_flags()).encode()).hexdigest()[:12]


def ops() -> Any:
    """The compiled ``torch.ops.<NAME>`` namespace, or None where it cannot be had here
    (``SEQLAB_NATIVE=0``, no C++ compiler, a failed build). Built on first use (about 20 s on
    two cores, once per machine: PyTorch caches it under ``TORCH_EXTENSIONS_DIR``, by default
    ~/.cache/torch_extensions) and said on standard error; a failure is said once, and the
    PyTorch operations are used instead."""
    global _OPS
    if _OPS is None:
        with _LOCK:
            if _OPS is None:
                _OPS = _build() or False
    return _OPS or None


def _build() -> Any:
    if os.environ.get("SEQLAB_NATIVE", "1") == "0":
        return None
    import torch

    try:
        from torch.utils.cpp_extension import load_inline

        if not _built():
            print("seqlab: compiling the LSTM's loops once for this machine (about 20 s)...",
                  file=sys.stderr, flush=True)
        load_inline(NAME, cpp_sources=[SOURCE.replace("NAMESPACE", NAME)], is_python_module=False,
                    extra_cflags=CFLAGS, extra_ldflags=[f for f in CFLAGS if f == "-fopenmp"], verbose=False)
        return getattr(torch.ops, NAME)
    except Exception as e:  # no compiler, no headers, a failed build: PyTorch's operations instead
        line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"seqlab: the LSTM's compiled loops are not available here ({line[:160]}); using PyTorch's "
              "operations (same results, slower on a CPU)", file=sys.stderr, flush=True)
        return None


def _built() -> bool:
    """Whether PyTorch's extension cache already holds the compiled library (only for the note)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        return os.path.exists(os.path.join(_get_build_directory(NAME, verbose=False), f"{NAME}.so"))
    except Exception:  # a private helper of PyTorch's: without it, say nothing
        return True


def usable(t) -> bool:
    """Whether the compiled loops can run on tensors like ``t``: a CPU float32/float64 tensor
    and the ops built."""
    import torch

    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) and ops() is not None


__all__ = ["NAME", "SOURCE", "ops", "usable"]
