"""The LSTM's element-wise work of one step as one compiled loop (the CPU's fast path).

``fused.LSTMFunction`` spends most of a step's time on a CPU not in its matrix product but
in a dozen small element-wise tensor operations, each with a fixed cost of a few
microseconds from Python. This module compiles, once per machine and cached by PyTorch's
extension builder (``torch.utils.cpp_extension.load_inline``, a C++ compiler needed), two
functions that do a step's element-wise work in one pass over the batch:

forward (after the gate product z = w . x_t + b + W . a^(h)_{t-1}, its g rows doubled):

    a^(o), a^(i), a^(f) = sigmoid(z_o), sigmoid(z_i), sigmoid(z_f)
    a^(g) = tanh(z_g) = 2 sigmoid(2 z_g) - 1
    a^(c)_t = a^(f) * a^(c)_{t-1} + a^(i) * a^(g)
    a^(h)_t = a^(o) * tanh(a^(c)_t)

backward (the lecture's chain rule through one step, given dC/da^(h)_t and dC/da^(c)_t):

    dC/da^(c)_t += dC/da^(h)_t * a^(o) * (1 - tanh^2(a^(c)_t))
    dC/dz_o = dC/da^(h)_t * tanh(a^(c)_t) * a^(o) (1 - a^(o))
    dC/dz_i = dC/da^(c)_t * a^(g) * a^(i) (1 - a^(i))
    dC/dz_f = dC/da^(c)_t * a^(c)_{t-1} * a^(f) (1 - a^(f))
    dC/dz_g = dC/da^(c)_t * a^(i) * (1 - a^(g)^2)
    dC/da^(c)_{t-1} = dC/da^(c)_t * a^(f)

and writes the step's dC/dz_t both as rows (for the product with W) and as columns of
D^T (4H, T B) (for the weight gradients, sums over t), by tiles that stay in cache.

The sigmoids and tanh(a^(c)) go through PyTorch's vectorised sigmoid (called from C++);
the rest is plain arithmetic the compiler vectorises. ``fused.py`` runs the same equations
with PyTorch operations where this module is not available (no compiler, another device,
``SEQLAB_NATIVE=0``); tests check the two against each other and with gradcheck.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from typing import Any

SOURCE = r"""
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>

// One row b of a step (H units): the loops are plain functions of raw pointers so that the
// compiler vectorises them.
template <typename T>
static void forward_cells(T* __restrict__ gi, T* __restrict__ gf, T* __restrict__ gg, const T* __restrict__ cp,
                          T* __restrict__ c, T* __restrict__ tc2, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T ag = T(2) * gg[j] - T(1);  // a^(g) = tanh(z_g) = 2 sigmoid(2 z_g) - 1
    gg[j] = ag;
    const T cv = gf[j] * cp[j] + gi[j] * ag;  // a^(c)_t = a^(f) a^(c)_{t-1} + a^(i) a^(g)
    c[j] = cv;
    tc2[j] = T(2) * cv;  // tanh(a^(c)) = 2 sigmoid(2 a^(c)) - 1: the sigmoid comes next
  }
}

template <typename T>
static void forward_hidden(const T* __restrict__ go, T* __restrict__ tc, T* __restrict__ h, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T t = T(2) * tc[j] - T(1);  // tanh(a^(c)_t)
    tc[j] = t;
    h[j] = go[j] * t;  // a^(h)_t = a^(o) tanh(a^(c)_t)
  }
}

template <typename T>
static void backward_cells(const T* __restrict__ go, const T* __restrict__ gi, const T* __restrict__ gf,
                           const T* __restrict__ gg, const T* __restrict__ tc, const T* __restrict__ cp,
                           const T* __restrict__ dh, T* __restrict__ dc, T* __restrict__ d_o, T* __restrict__ d_i,
                           T* __restrict__ d_f, T* __restrict__ d_g, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T o = go[j], i = gi[j], f = gf[j], ag = gg[j], t = tc[j], dhv = dh[j];
    const T dcv = dc[j] + dhv * o * (T(1) - t * t);  // dC/da^(c)_t
    d_o[j] = dhv * t * o * (T(1) - o);
    d_i[j] = dcv * ag * i * (T(1) - i);
    d_f[j] = dcv * cp[j] * f * (T(1) - f);
    d_g[j] = dcv * i * (T(1) - ag * ag);
    dc[j] = dcv * f;  // dC/da^(c)_{t-1}
  }
}

// dst[k * ld + b] = src[b * m + k] for b < n, k < m: a block of rows (n, m) written as columns, by
// tiles that stay in cache (the pre-activation gradients of a step, into D^T (4H, T B))
template <typename T>
static void transpose_into(const T* __restrict__ src, int64_t n, int64_t m, T* __restrict__ dst, int64_t ld) {
  constexpr int64_t TILE = 16;
  for (int64_t b0 = 0; b0 < n; b0 += TILE) {
    const int64_t b1 = std::min(n, b0 + TILE);
    for (int64_t k0 = 0; k0 < m; k0 += TILE) {
      const int64_t k1 = std::min(m, k0 + TILE);
      for (int64_t k = k0; k < k1; ++k)
        for (int64_t b = b0; b < b1; ++b) dst[k * ld + b] = src[b * m + k];
    }
  }
}

// g: (n, 4H) pre-activations, rows (o, i, f, g) with the g block doubled; in place -> activations
// c_prev, c, tc, h: (n, H) rows of contiguous (B, H) buffers
void lstm_cell_forward(at::Tensor g, const at::Tensor& c_prev, at::Tensor c, at::Tensor tc, at::Tensor h) {
  TORCH_CHECK(g.is_contiguous() && c_prev.is_contiguous() && c.is_contiguous() && tc.is_contiguous() &&
              h.is_contiguous(), "lstm_cell_forward: contiguous rows expected");
  g.sigmoid_();
  const int64_t n = g.size(0), H = c.size(1);
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "lstm_cell_forward", [&] {
    scalar_t* G = g.data_ptr<scalar_t>();
    for (int64_t b = 0; b < n; ++b) {
      scalar_t* row = G + b * 4 * H;
      forward_cells<scalar_t>(row + H, row + 2 * H, row + 3 * H, c_prev.data_ptr<scalar_t>() + b * H,
                              c.data_ptr<scalar_t>() + b * H, tc.data_ptr<scalar_t>() + b * H, H);
    }
  });
  tc.sigmoid_();
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "lstm_cell_forward_h", [&] {
    const scalar_t* G = g.data_ptr<scalar_t>();
    for (int64_t b = 0; b < n; ++b) {
      forward_hidden<scalar_t>(G + b * 4 * H, tc.data_ptr<scalar_t>() + b * H, h.data_ptr<scalar_t>() + b * H, H);
    }
  });
}

// g: (n, 4H) activations (o, i, f, a^(g)); tc, c_prev, dh: (n, H); dc: (n, H) in/out; d: (n, 4H) out,
// also written as columns col .. col+n-1 of dT (4H, T B)
void lstm_cell_backward(const at::Tensor& g, const at::Tensor& tc, const at::Tensor& c_prev,
                        const at::Tensor& dh, at::Tensor dc, at::Tensor d, at::Tensor dT, int64_t col) {
  TORCH_CHECK(g.is_contiguous() && tc.is_contiguous() && c_prev.is_contiguous() && dh.is_contiguous() &&
              dc.is_contiguous() && d.is_contiguous() && dT.is_contiguous(),
              "lstm_cell_backward: contiguous rows expected");
  TORCH_CHECK(dT.dim() == 2 && dT.size(0) == d.size(1) && col >= 0 && col + d.size(0) <= dT.size(1),
              "lstm_cell_backward: dT (4H, T B) with room for the step's columns expected");
  const int64_t n = g.size(0), H = tc.size(1);
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "lstm_cell_backward", [&] {
    const scalar_t* G = g.data_ptr<scalar_t>();
    scalar_t* Dp = d.data_ptr<scalar_t>();
    for (int64_t b = 0; b < n; ++b) {
      const scalar_t* row = G + b * 4 * H;
      scalar_t* drow = Dp + b * 4 * H;
      backward_cells<scalar_t>(row, row + H, row + 2 * H, row + 3 * H, tc.data_ptr<scalar_t>() + b * H,
                               c_prev.data_ptr<scalar_t>() + b * H, dh.data_ptr<scalar_t>() + b * H,
                               dc.data_ptr<scalar_t>() + b * H, drow, drow + H, drow + 2 * H, drow + 3 * H, H);
    }
    transpose_into<scalar_t>(Dp, n, 4 * H, dT.data_ptr<scalar_t>() + col, dT.size(1));
  });
}

TORCH_LIBRARY(NAMESPACE, m) {
  m.def("lstm_cell_forward(Tensor(a!) g, Tensor c_prev, Tensor(b!) c, Tensor(c!) tc, Tensor(d!) h) -> ()",
        &lstm_cell_forward);
  m.def("lstm_cell_backward(Tensor g, Tensor tc, Tensor c_prev, Tensor dh, Tensor(a!) dc, Tensor(b!) d, "
        "Tensor(c!) dT, int col) -> ()", &lstm_cell_backward);
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
            print("seqlab: compiling the LSTM's element-wise step once for this machine (about 20 s)...",
                  file=sys.stderr, flush=True)
        load_inline(NAME, cpp_sources=[SOURCE.replace("NAMESPACE", NAME)], is_python_module=False,
                    extra_cflags=CFLAGS, verbose=False)
        return getattr(torch.ops, NAME)
    except Exception as e:  # no compiler, no headers, a failed build: PyTorch's operations instead
        line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"seqlab: the LSTM's compiled step is not available here ({line[:160]}); using PyTorch's "
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
    """Whether the compiled step can run on tensors like ``t``: a CPU float32/float64 tensor
    and the ops built."""
    import torch

    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) and ops() is not None


__all__ = ["NAME", "SOURCE", "ops", "usable"]
