"""The LSTM's time loops, forward and backward, compiled (the CPU's fast path).

``fused.LSTMFunction`` runs T steps one after the other; from Python, each step's dozen small
tensor operations and two matrix products cost a fixed few microseconds each, as much as the
work itself at the benchmark sizes. This module compiles, once per machine and cached by
PyTorch's extension builder (``torch.utils.cpp_extension.load_inline``, a C++ compiler needed),
the two loops of ``fused.py`` (``_lstm_pass``, ``_lstm_backward_loop``) in C++.

Threads. A pass cuts its H units into slices (at least 64 units each), one per thread, and runs
all its steps in one OpenMP parallel region: each thread makes its slice's share of a step's
product, then the slice's element-wise work while that is in cache, then waits at one barrier
(the next step's product reads all of a^(h)_t; the backward's reads all of dC/dz_t). A library
call a step would cost a fork and join of the threads, and about 9 us of set-up (dispatch,
primitive look-up, allocation): a third of the product's time at B = 32, H = 256.

Products. A step's product (float32) is written here: z = w . x_t + W . a^(h)_{t-1} in one
(x_t and a^(h)_{t-1} side by side, the bias added in the element-wise pass), and the backward's
dC/dz_t . W. The weights are laid out once per pass in panels of 2 vectors' width; each tile of
MR rows x 2 vectors keeps its sums in vector registers over the whole k loop. On one core of the
project's machine (AVX-512), a (32 x 256) . (256 x 512) product takes 32 us this way (266
GFLOP/s) and 45 us through PyTorch's oneDNN call with its weights packed (186 GFLOP/s). Passes of
a single step or of few rows, and float64, use at::mm.

Element-wise work, one vectorised pass over a row of a slice:
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

The forward writes a step's activations into the step's rows of one (T, B, 4H) buffer, and the
backward overwrites them in place with dC/dz_t: the pass needs no second buffer of that size.
With float32, the backward also sums the weight gradients, sum_t dC/dz_t^T . a^(h)_{t-1},
sum_t dC/dz_t^T . x_t and sum_t dC/dz_t, block by block of steps while each block is in cache,
each thread the rows of its own slice (whose columns of dC/dz it wrote itself).

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
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <mutex>
#include <type_traits>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

// kept out of line: inlined into the step loops, the element-wise loops below lose their vectorisation
// (the compiler no longer sees their pointers as apart)
#if defined(_MSC_VER)
#define NOINLINE __declspec(noinline)
#else
#define NOINLINE __attribute__((noinline))
#endif

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

// One row of a step, one pass over the units j of a slice: from the gate products z = w . x_t + W . a^(h)_{t-1}
// (gates o, i, f, g at z + q zs) and the biases (at u + q us), the activations (to a + q as), a^(c)_t,
// tanh(a^(c)_t) and a^(h)_t (to h and to the output y). Plain loops over raw pointers, one for each
// gate's values, so that the compiler vectorises them.
template <typename T>
NOINLINE static void forward_units(const T* __restrict__ zo, const T* __restrict__ zi, const T* __restrict__ zf,
                                   const T* __restrict__ zg, const T* __restrict__ uo, const T* __restrict__ ui,
                                   const T* __restrict__ uf, const T* __restrict__ ug, T* __restrict__ ao,
                                   T* __restrict__ ai, T* __restrict__ af, T* __restrict__ ag, const T* __restrict__ cp,
                                   T* __restrict__ c, T* __restrict__ tc, T* __restrict__ h, T* __restrict__ y,
                                   int64_t units) {
  for (int64_t j = 0; j < units; ++j) {
    const T o = sigmoid(zo[j] + uo[j]), i = sigmoid(zi[j] + ui[j]), f = sigmoid(zf[j] + uf[j]);
    const T g = T(2) * sigmoid(T(2) * (zg[j] + ug[j])) - T(1);  // a^(g) = tanh(z_g) = 2 sigmoid(2 z_g) - 1
    const T cv = f * cp[j] + i * g;                   // a^(c)_t = a^(f) a^(c)_{t-1} + a^(i) a^(g)
    const T t = T(2) * sigmoid(T(2) * cv) - T(1);     // tanh(a^(c)_t)
    ao[j] = o;
    ai[j] = i;
    af[j] = f;
    ag[j] = g;
    c[j] = cv;
    tc[j] = t;
    const T hv = o * t;  // a^(h)_t = a^(o) tanh(a^(c)_t)
    h[j] = hv;
    y[j] = hv;  // the layer's output, batch first
  }
}

template <typename T>
static void forward_row(const T* z, int64_t zs, const T* u, int64_t us, T* a, int64_t as, const T* cp, T* c, T* tc,
                        T* h, T* y, int64_t units) {
  forward_units<T>(z, z + zs, z + 2 * zs, z + 3 * zs, u, u + us, u + 2 * us, u + 3 * us, a, a + as, a + 2 * as,
                   a + 3 * as, cp, c, tc, h, y, units);
}

// One row of a step's slice of units, in place: the activations a^(o), a^(i), a^(f), a^(g) in ro, ri, rf, rg
// are replaced by dC/dz_o, dC/dz_i, dC/dz_f, dC/dz_g; each unit reads its four values before writing them.
template <typename T>
NOINLINE static void backward_units(T* __restrict__ ro, T* __restrict__ ri, T* __restrict__ rf, T* __restrict__ rg,
                                    const T* __restrict__ tc, const T* __restrict__ cp, const T* __restrict__ dh,
                                    const T* __restrict__ dy, T* __restrict__ dc, int64_t units) {
  for (int64_t j = 0; j < units; ++j) {
    // dC/da^(h)_t: through the next step, and through the output y_t = a^(h)_t
    const T o = ro[j], i = ri[j], f = rf[j], g = rg[j], t = tc[j], dhv = dh[j] + dy[j];
    const T dcv = dc[j] + dhv * o * (T(1) - t * t);  // dC/da^(c)_t
    ro[j] = dhv * t * o * (T(1) - o);
    ri[j] = dcv * g * i * (T(1) - i);
    rf[j] = dcv * cp[j] * f * (T(1) - f);
    rg[j] = dcv * i * (T(1) - g * g);
    dc[j] = dcv * f;  // dC/da^(c)_{t-1}
  }
}

template <typename T>
static void backward_row(T* r, int64_t rs, const T* tc, const T* cp, const T* dh, const T* dy, T* dc, int64_t units) {
  backward_units<T>(r, r + rs, r + 2 * rs, r + 3 * rs, tc, cp, dh, dy, dc, units);
}

// ---- the threads of a pass. The H units are cut into slices (at least MIN_UNITS each, at most one per
// thread); one parallel region runs all steps, each thread its slices: a step's product for the slice's
// rows of W (the product below, or at::mm: no fork and join a call), then the slice's element-wise
// work while the product is in cache, then one barrier (the next step's product reads all of a^(h)_t, or
// the backward's all of dC/dz_t). Without OpenMP the region is one thread.
static constexpr int64_t MIN_UNITS = 64;

#ifdef _OPENMP
static int team_size() { return omp_get_num_threads(); }
static int team_rank() { return omp_get_thread_num(); }
static void barrier() {
#pragma omp barrier
}
#else
static int team_size() { return 1; }
static int team_rank() { return 0; }
static void barrier() {}
#endif

struct Slice {
  int64_t j0, n;  // units j0 .. j0 + n - 1
};

// slice k of P: multiples of 16 units (whole vectors) where H allows
static Slice slice(int64_t H, int64_t k, int64_t P) {
  const int64_t chunk = (H + P - 1) / P, step = chunk >= 16 ? (chunk + 15) / 16 * 16 : chunk;
  const int64_t j0 = std::min(H, k * step);
  return {j0, std::min(H, j0 + step) - j0};
}

// how many slices a pass cuts its units into: one where the products are at::mm's (it uses the threads
// itself), or where `slices` > 0 says so (tests: several slices on any number of threads)
static int64_t slices(int64_t H, bool pack, int64_t slices) {
  if (slices > 0) return std::min(slices, H);
#ifdef _OPENMP
  return pack ? std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), H / MIN_UNITS)) : 1;
#else
  return 1;  // no threads of its own here
#endif
}

// Runs body(phase, slice index) for phases 0 .. phases - 1 on a team of up to P threads (no more than
// PyTorch's), each thread its slices k = rank, rank + team, ..., with a barrier before each phase. An
// exception stops every thread at the same barrier (the phase it failed in is recorded before that
// barrier) and is rethrown here.
template <typename F>
static void in_team(int64_t P, int64_t phases, const F& body) {
  std::atomic<int64_t> failed{phases};  // the first phase that failed
  std::exception_ptr error;
  std::mutex lock;
  const int64_t threads = std::min<int64_t>(P, at::get_num_threads());
  if (threads <= 1) {  // in the caller's thread, where the operations it calls (at::mm) can use all threads
    for (int64_t phase = 0; phase < phases; ++phase) {
      for (int64_t k = 0; k < P; ++k) body(phase, k);
    }
    return;
  }
  const at::ThreadLocalState state;  // grad mode, dispatch keys, ...: the caller's, in every thread
#pragma omp parallel num_threads(static_cast<int>(threads))
  {
    const at::ThreadLocalStateGuard guard(state);
    const int rank = team_rank(), team = team_size();
    for (int64_t phase = 0; phase < phases; ++phase) {
      if (phase > 0) barrier();
      if (failed.load() < phase) break;  // set before this barrier: every thread sees it here
      try {
        for (int64_t k = rank; k < P; k += team) body(phase, k);
      } catch (...) {
        std::lock_guard<std::mutex> g(lock);
        if (!error) error = std::current_exception();
        int64_t f = failed.load();
        while (phase < f && !failed.compare_exchange_weak(f, phase)) {
        }
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

// ---- a step's product, z = a . w^T for one slice: a (n, K) rows of a^(h)_{t-1} (forward) or of dC/dz_t
// (backward), w (N, K) the slice's weights. float32 with `pack`: the register-tiled product below, w laid out
// once per pass in panels of NR columns, each panel (K, NR) read once per MR rows of a, the MR x NR
// results held in vector registers across k; a call costs no allocation, no dispatch and no thread start,
// where PyTorch's oneDNN call spends about 9 of its 45 us on those at B = 32 and 512 columns. Else
// (float64, passes of a single step or of few rows) at::mm.
#if defined(__AVX512F__)
static constexpr int VL = 16, MR = 8;  // 2 x 8 accumulators of 16 floats: 16 of the 32 vector registers
#elif defined(__AVX__)
static constexpr int VL = 8, MR = 6;  // 12 of 16 registers
#else
static constexpr int VL = 4, MR = 6;
#endif
static constexpr int NR = 2 * VL;  // columns of a panel
typedef float vfloat __attribute__((vector_size(VL * sizeof(float))));

static inline vfloat load(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

static inline void store(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }

// C[r][0, NR) = sum_k a[r][k] panel[k][0, NR), r < R, over k < K1 from a1 and then K2 more from a2 (rows of a1 at
// a1 + r lda1, of a2 at a2 + r lda2; the panel's K1 + K2 rows NR apart; rows of C at c + r ldc)
struct Operands {
  const float* a1;
  int64_t lda1, K1;
  const float* a2;
  int64_t lda2, K2;

  Operands rows_from(int64_t r) const { return {a1 + r * lda1, lda1, K1, a2 + r * lda2, lda2, K2}; }
};

template <int R>
static void tile(const Operands& x, const float* __restrict__ panel, float* __restrict__ c, int64_t ldc) {
  vfloat lo[R], hi[R];
  for (int r = 0; r < R; ++r) lo[r] = hi[r] = vfloat{};
  auto accumulate = [&](const float* __restrict__ a, int64_t lda, const float* __restrict__ w, int64_t K) {
    for (int64_t k = 0; k < K; ++k) {
      const vfloat b0 = load(w + k * NR), b1 = load(w + k * NR + VL);
      for (int r = 0; r < R; ++r) {
        const float v = a[r * lda + k];
        lo[r] += v * b0;
        hi[r] += v * b1;
      }
    }
  };
  accumulate(x.a1, x.lda1, panel, x.K1);
  accumulate(x.a2, x.lda2, panel + x.K1 * NR, x.K2);
  for (int r = 0; r < R; ++r) {
    store(c + r * ldc, lo[r]);
    store(c + r * ldc + VL, hi[r]);
  }
}

template <int R>
static void rest_rows(int64_t m, const Operands& x, const float* panel, float* c, int64_t ldc) {
  if constexpr (R > 0) {
    if (m == R) return tile<R>(x, panel, c, ldc);
    rest_rows<R - 1>(m, x, panel, c, ldc);
  }
}

// rows [0, n) of c (ldc >= the panels' columns) = a1 . w1^T + a2 . w2^T, the weights laid out in the panels
static void panel_product(const Operands& x, int64_t n, const at::Tensor& panels, float* c, int64_t ldc) {
  const int64_t P = panels.size(0), K = panels.size(1);
  const float* w = panels.data_ptr<float>();
  for (int64_t p = 0; p < P; ++p) {
    int64_t r = 0;
    for (; r + MR <= n; r += MR) tile<MR>(x.rows_from(r), w + p * K * NR, c + r * ldc + p * NR, ldc);
    if (r < n) rest_rows<MR - 1>(n - r, x.rows_from(r), w + p * K * NR, c + r * ldc + p * NR, ldc);
  }
}

// ---- the weight gradients' sums over a block of steps, c (+)= a^T . v: a (K, rows) columns of dC/dz (row k
// at a + k lda, the rows of c), v (K, cols) the operands a^(h)_{t-1} or x_t (row k at v + k ldv); with add
// false (the first block) c is written, not added to
template <int R>
static void tile_tn(const float* __restrict__ a, int64_t lda, const float* __restrict__ v, int64_t ldv, int64_t K,
                    float* __restrict__ c, int64_t ldc, bool add) {
  vfloat lo[R], hi[R];
  for (int r = 0; r < R; ++r) lo[r] = hi[r] = vfloat{};
  for (int64_t k = 0; k < K; ++k) {
    const vfloat b0 = load(v + k * ldv), b1 = load(v + k * ldv + VL);
    const float* ak = a + k * lda;
    for (int r = 0; r < R; ++r) {
      lo[r] += ak[r] * b0;
      hi[r] += ak[r] * b1;
    }
  }
  for (int r = 0; r < R; ++r) {
    store(c + r * ldc, add ? load(c + r * ldc) + lo[r] : lo[r]);
    store(c + r * ldc + VL, add ? load(c + r * ldc + VL) + hi[r] : hi[r]);
  }
}

template <int R>
static void rest_rows_tn(int64_t m, const float* a, int64_t lda, const float* v, int64_t ldv, int64_t K, float* c,
                         int64_t ldc, bool add) {
  if constexpr (R > 0) {
    if (m == R) return tile_tn<R>(a, lda, v, ldv, K, c, ldc, add);
    rest_rows_tn<R - 1>(m, a, lda, v, ldv, K, c, ldc, add);
  }
}

// MR x NR tiles over rows [0, rows) of c and columns [0, cols): the last columns (fewer than NR) through a copy
// of theirs padded with zeros (`spare`) and a tile of their own
static void tn_product(const float* a, int64_t rows, int64_t lda, const float* v, int64_t cols, int64_t ldv, int64_t K,
                       float* c, int64_t ldc, bool add, std::vector<float>& spare) {
  auto over_rows = [&](const float* vp, int64_t ld, float* cp, int64_t ldcp, bool to) {
    int64_t r = 0;
    for (; r + MR <= rows; r += MR) tile_tn<MR>(a + r, lda, vp, ld, K, cp + r * ldcp, ldcp, to);
    if (r < rows) rest_rows_tn<MR - 1>(rows - r, a + r, lda, vp, ld, K, cp + r * ldcp, ldcp, to);
  };
  int64_t j = 0;
  for (; j + NR <= cols; j += NR) over_rows(v + j, ldv, c + j, ldc, add);
  if (j < cols) {
    const int64_t w = cols - j;
    spare.assign(K * NR + rows * NR, 0.0f);
    float *vp = spare.data(), *cp = vp + K * NR;
    for (int64_t k = 0; k < K; ++k) std::copy(v + k * ldv + j, v + k * ldv + cols, vp + k * NR);
    over_rows(vp, NR, cp, NR, false);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t q = 0; q < w; ++q) c[r * ldc + j + q] = (add ? c[r * ldc + j + q] : 0.0f) + cp[r * NR + q];
    }
  }
}

// The panels (ceil(N / NR), K, NR) of the weights [w1 w2] (N, K = K1 + K2), given as blocks of rows, each
// block its columns from w1 and from w2 (strided views): the columns past N zero
static at::Tensor panels_of(const std::vector<std::array<at::Tensor, 2>>& blocks) {
  int64_t N = 0;
  for (const auto& b : blocks) N += b[0].size(0);
  const int64_t K1 = blocks[0][0].size(1), K2 = blocks[0][1].defined() ? blocks[0][1].size(1) : 0, K = K1 + K2;
  at::Tensor panels = at::empty({(N + NR - 1) / NR, K, NR}, blocks[0][0].options());
  float* out = panels.data_ptr<float>();
  if (N % NR) panels.select(0, N / NR).narrow(1, N % NR, NR - N % NR).zero_();  // the last panel's columns past N
  int64_t n0 = 0;  // the block's first row
  for (const auto& b : blocks) {
    for (int64_t part = 0; part < 2; ++part) {
      const at::Tensor& w = b[part];
      if (!w.defined()) continue;
      const float* src = w.data_ptr<float>();
      const int64_t rows = w.size(0), cols = w.size(1), s0 = w.stride(0), s1 = w.stride(1), k0 = part ? K1 : 0;
      // row n = n0 + i, column k: panel n / NR, its row k0 + k, column n % NR; read along the shorter stride
      auto to = [&](int64_t i, int64_t k) -> float& { return out[((n0 + i) / NR * K + k0 + k) * NR + (n0 + i) % NR]; };
      if (s0 <= s1) {
        for (int64_t k = 0; k < cols; ++k) {
          for (int64_t i = 0; i < rows; ++i) to(i, k) = src[i * s0 + k * s1];
        }
      } else {
        for (int64_t i = 0; i < rows; ++i) {
          for (int64_t k = 0; k < cols; ++k) to(i, k) = src[i * s0 + k * s1];
        }
      }
    }
    n0 += b[0].size(0);
  }
  return panels;
}

// One slice's product of a pass, z = a1 . w1^T (+ a2 . w2^T): its weights given as blocks of rows (each with
// its w1 and w2 columns), laid out in panels for the product above (float32 with pack; else kept for
// at::mm), and Z (B, ldz), whose rows 0 .. n - 1 receive each step's product (rows past n keep theirs)
struct SliceProduct {
  at::Tensor w1, w2, panels, Z;

  SliceProduct() = default;
  SliceProduct(const std::vector<std::array<at::Tensor, 2>>& blocks, bool pack, int64_t B) {
    const at::Tensor& first = blocks[0][0];
    if (pack && first.scalar_type() == at::kFloat) {
      panels = panels_of(blocks);
      Z = at::empty({B, panels.size(0) * NR}, first.options());
      return;
    }
    std::vector<at::Tensor> parts1, parts2;
    for (const auto& b : blocks) {
      parts1.push_back(b[0]);
      if (b[1].defined()) parts2.push_back(b[1]);
    }
    auto joined = [](const std::vector<at::Tensor>& v) { return v.size() == 1 ? v[0] : at::cat(v); };
    w1 = joined(parts1);
    if (!parts2.empty()) w2 = joined(parts2);
    Z = at::empty({B, w1.size(0)}, first.options());
  }

  // rows [0, n) of Z = a1 . w1^T (+ a2 . w2^T), a1 = rows r .. r + n - 1 of the matrix m1 (K1 columns), a2 the
  // same rows of m2 (K2 columns, or none); each row contiguous. (No tensor views made on the fast path.)
  void run(const at::Tensor& m1, const at::Tensor& m2, int64_t r, int64_t n) {
    const bool two = m2.defined();
    if (panels.defined()) {
      const Operands x{m1.data_ptr<float>() + r * m1.stride(0), m1.stride(0), m1.size(1),
                       two ? m2.data_ptr<float>() + r * m2.stride(0) : nullptr, two ? m2.stride(0) : 0,
                       two ? m2.size(1) : 0};
      panel_product(x, n, panels, Z.data_ptr<float>(), Z.stride(0));
    } else {
      at::Tensor out = Z.narrow(0, 0, n);
      at::mm_out(out, m1.narrow(0, r, n), w1.t());
      if (two) out.addmm_(m2.narrow(0, r, n), w2.t());
    }
  }
};

static int64_t rows_at(c10::IntArrayRef sizes, int64_t t, int64_t B) { return sizes.empty() ? B : sizes[t]; }

// The forward loop. X: (T B, I) the inputs x_t, rows (t, b); w_x (4H, I), W (4H, H), b (4H): the weights,
// rows of gates o, i, f, g (laid out for the product, slice by slice, where `pack`); G: (T, B, 4H), receives
// the gates' activations of every step (0 for items that ended); hs, cs: (T+1, B, H) with a^(h)_0, a^(c)_0
// set; tc: (T, B, H); out: (B, T, H), the output a^(h)_t batch first (0 after an item's end); sizes: the
// batch size of each step (items sorted by length, longest first), or empty for all B. A step's product
// takes x_t and a^(h)_{t-1} together: z = w . x_t + W . a^(h)_{t-1}.
template <typename S>
static void forward_loop(const at::Tensor& X, const at::Tensor& w_x, const at::Tensor& W, const at::Tensor& bias,
                         bool pack, const at::Tensor& G, const at::Tensor& hs, const at::Tensor& cs,
                         const at::Tensor& tc, const at::Tensor& out, c10::IntArrayRef sizes, int64_t n_slices) {
  const int64_t T = G.size(0), B = G.size(1), H = tc.size(2);
  const int64_t P = slices(H, pack && G.scalar_type() == at::kFloat, n_slices);
  std::vector<SliceProduct> z(P);  // slice k: the rows of gates o, i, f, g of its units j0 .. j0 + n - 1 (4 n)
  S *g = G.data_ptr<S>(), *h = hs.data_ptr<S>(), *c = cs.data_ptr<S>(), *th = tc.data_ptr<S>(), *y = out.data_ptr<S>();
  const S* u = bias.data_ptr<S>();
  const at::Tensor hrows = hs.view({-1, H});  // a^(h)_{t-1} of row b at row t B + b
  in_team(P, T + 1, [&](int64_t phase, int64_t k) {
    const Slice s = slice(H, k, P);
    if (s.n == 0) return;
    if (phase == 0) {  // this slice's weights, laid out by its own thread
      std::vector<std::array<at::Tensor, 2>> rows;
      if (s.n == H) rows.push_back({W, w_x});  // one slice: the weights as they are
      for (int64_t q = 0; q < 4 && s.n < H; ++q) {
        rows.push_back({W.narrow(0, q * H + s.j0, s.n), w_x.narrow(0, q * H + s.j0, s.n)});
      }
      z[k] = SliceProduct(rows, pack, B);
      return;
    }
    const int64_t t = phase - 1, n = rows_at(sizes, t, B);
    S *gt = g + t * B * 4 * H + s.j0, *hp = h + t * B * H + s.j0, *cp = c + t * B * H + s.j0;
    S *hn = hp + B * H, *cn = cp + B * H, *tt = th + t * B * H + s.j0, *yt = y + t * H + s.j0;
    if (n > 0) {  // w . x_t + W . a^(h)_{t-1} for this slice, then a^(c)_t and a^(h)_t
      z[k].run(hrows, X, t * B, n);  // rows of (n, 4 s.n), gates s.n apart
      const S* zp = z[k].Z.template data_ptr<S>();
      const int64_t ldz = z[k].Z.stride(0);
      for (int64_t b = 0; b < n; ++b) {
        forward_row<S>(zp + b * ldz, s.n, u + s.j0, H, gt + b * 4 * H, H, cp + b * H, cn + b * H, tt + b * H,
                       hn + b * H, yt + b * T * H, s.n);
      }
    }
    for (int64_t b = n; b < B; ++b) {  // items that ended keep their state, output 0; rows of G -> dC/dz = 0
      std::copy(hp + b * H, hp + b * H + s.n, hn + b * H);
      std::copy(cp + b * H, cp + b * H + s.n, cn + b * H);
      for (int64_t q = 0; q < 4; ++q) std::fill(gt + b * 4 * H + q * H, gt + b * 4 * H + q * H + s.n, S(0));
      std::fill(yt + b * T * H, yt + b * T * H + s.n, S(0));
    }
  });
}

void lstm_forward(const at::Tensor& X, const at::Tensor& w_x, const at::Tensor& W, const at::Tensor& b, bool pack,
                  at::Tensor G, at::Tensor hs, at::Tensor cs, at::Tensor tc, at::Tensor out, c10::IntArrayRef sizes,
                  int64_t slices) {
  const int64_t T = G.size(0), B = G.size(1), H = tc.size(2);
  TORCH_CHECK(X.is_contiguous() && b.is_contiguous() && G.is_contiguous() && hs.is_contiguous() &&
              cs.is_contiguous() && tc.is_contiguous() && out.is_contiguous() && X.size(0) == T * B &&
              w_x.size(0) == 4 * H && w_x.size(1) == X.size(1) && W.size(0) == 4 * H && W.size(1) == H &&
              b.numel() == 4 * H && G.size(2) == 4 * H && hs.size(0) == T + 1 && out.size(0) == B &&
              out.size(1) == T && (sizes.empty() || static_cast<int64_t>(sizes.size()) == T),
              "lstm_forward: contiguous X (T B, I), b (4H), G (T, B, 4H), hs, cs (T+1, B, H), tc (T, B, H), "
              "out (B, T, H); w_x (4H, I), W (4H, H) expected");
  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "lstm_forward",
                             [&] { forward_loop<scalar_t>(X, w_x, W, b, pack, G, hs, cs, tc, out, sizes, slices); });
}

// The weight gradients' rows of one slice's units (of each gate q: rows q H + j0 ..), summed over the rows
// (t, b) of steps [t0, t1): dwa (+)= D^T . a^(h)_{t-1}, dwx (+)= D^T . x_t, db (+)= sum of D's rows, where
// D = dC/dz_t (those columns of G), each where its accumulator is not empty: added to with add, else
// written (the first block). The slice's columns of D were written by the same thread, and the block
// is still in cache.
static void sum_block(const at::Tensor& G, const at::Tensor& hs, const at::Tensor& X, int64_t t0, int64_t t1,
                      const Slice& s, bool add, at::Tensor& dwx, at::Tensor& dwa, at::Tensor& db) {
  const int64_t B = G.size(1), H4 = G.size(2), H = H4 / 4, I = X.size(1), K = (t1 - t0) * B;
  std::vector<float> spare;
  for (int64_t q = 0; q < 4; ++q) {
    const int64_t col = q * H + s.j0;
    const float* a = G.data_ptr<float>() + t0 * B * H4 + col;  // D's columns col .., rows (t, b)
    if (dwa.numel() > 0) {
      tn_product(a, s.n, H4, hs.data_ptr<float>() + t0 * B * H, H, H, K, dwa.data_ptr<float>() + col * H, H, add,
                 spare);
    }
    if (dwx.numel() > 0) {
      tn_product(a, s.n, H4, X.data_ptr<float>() + t0 * B * I, I, I, K, dwx.data_ptr<float>() + col * I, I, add,
                 spare);
    }
    if (db.numel() > 0) {
      float* d = db.data_ptr<float>() + col;
      if (!add) std::fill(d, d + s.n, 0.0f);
      for (int64_t k = 0; k < K; ++k) {
        for (int64_t j = 0; j < s.n; ++j) d[j] += a[k * H4 + j];
      }
    }
  }
}

// The backward loop. G: (T, B, 4H) activations, overwritten with dC/dz_t; W: (4H, H) (laid out for the
// product, slice by slice, where `pack`); hs, cs (T+1, B, H), tc (T, B, H) from the forward; dy: (B, T, H)
// dC/d output_t, batch first, each row contiguous (rows of items that ended are not read); dh: (B, H)
// dC/da^(h)_T from the final state only; dc: (B, H) dC/da^(c)_T, in place -> dC/da^(c)_0.
// With block > 0 (float32), also the weight gradients' sums over t, every `block` steps, each thread
// those of its slices' rows (sum_block), into dwx, dwa, db (X: (T B, I) the inputs, rows (t, b)).
// Returns dC/da^(h)_0.
template <typename S>
static at::Tensor backward_loop(const at::Tensor& G, const at::Tensor& W, bool pack, const at::Tensor& hs,
                                const at::Tensor& cs, const at::Tensor& tc, const at::Tensor& dy, const at::Tensor& dh0,
                                const at::Tensor& dc, c10::IntArrayRef sizes, const at::Tensor& X, at::Tensor& dwx,
                                at::Tensor& dwa, at::Tensor& db, int64_t block, int64_t n_slices) {
  const int64_t T = G.size(0), B = G.size(1), H = tc.size(2);
  const int64_t P = slices(H, pack && G.scalar_type() == at::kFloat, n_slices);
  // slice k: W's columns of its units as an (n, 4H) weight; its Z holds dC/da^(h) of the units (B, n)
  std::vector<SliceProduct> dh(P);
  S *g = G.data_ptr<S>(), *c = cs.data_ptr<S>(), *th = tc.data_ptr<S>(), *dcp = dc.data_ptr<S>();
  const S* yp = dy.data_ptr<S>();
  const int64_t ys0 = dy.stride(0), ys1 = dy.stride(1);
  const at::Tensor grows = G.view({-1, 4 * H});  // dC/dz_t of row b at row t B + b
  for (int64_t t1 = T; t1 > 0;) {  // steps t1 - 1 down to t0, then their weight-gradient sums
    const int64_t t0 = block > 0 ? std::max<int64_t>(0, t1 - block) : 0, first = t1 == T;
    // phases: (the slices' set-up,) then the element-wise work of step t1 - 1, then for each step t the
    // product of step t (it reads all slices of dC/dz_t: after the barrier) and the element-wise work of
    // step t - 1 (it reads only its own slice of dC/da^(h)_{t-1}): one barrier a step
    const int64_t steps = t1 - t0;
    in_team(P, first + steps + 1, [&](int64_t phase, int64_t k) {
      const Slice s = slice(H, k, P);
      if (s.n == 0) return;
      if (first && phase == 0) {
        dh[k] = SliceProduct({{W.narrow(1, s.j0, s.n).t(), at::Tensor()}}, pack, B);
        dh[k].Z.narrow(1, 0, s.n).copy_(dh0.narrow(1, s.j0, s.n));
        return;
      }
      const int64_t i = phase - first;
      if (i > 0) {  // dC/da^(h)_{t-1} of the slice's units through step t = dC/dz_t . W[:, slice]
        const int64_t t = t1 - i, n = rows_at(sizes, t, B);
        // (rows of items that ended before t keep their dC/da^(h): their outputs there are 0)
        if (n > 0) dh[k].run(grows, at::Tensor(), t * B, n);
      }
      if (i < steps) {  // step t: dC/dz_t over the activations (dC/d output_t added to dh), dC/da^(c)_{t-1}
        const int64_t t = t1 - 1 - i, n = rows_at(sizes, t, B);
        S *gt = g + t * B * 4 * H + s.j0, *tt = th + t * B * H + s.j0, *cp = c + t * B * H + s.j0;
        const S* d = dh[k].Z.template data_ptr<S>();
        const int64_t ldd = dh[k].Z.stride(0);
        for (int64_t b = 0; b < n; ++b) {
          backward_row<S>(gt + b * 4 * H, H, tt + b * H, cp + b * H, d + b * ldd, yp + b * ys0 + t * ys1 + s.j0,
                          dcp + b * H + s.j0, s.n);
        }
      }
      if constexpr (std::is_same<S, float>::value) {
        if (i == steps && block > 0) sum_block(G, hs, X, t0, t1, s, !first, dwx, dwa, db);
      }
    });
    t1 = t0;
  }
  std::vector<at::Tensor> parts;
  for (int64_t k = 0; k < P; ++k) {
    if (slice(H, k, P).n > 0) parts.push_back(dh[k].Z.narrow(1, 0, slice(H, k, P).n));
  }
  return at::cat(parts, 1);
}

at::Tensor lstm_backward(at::Tensor G, const at::Tensor& W, bool pack, const at::Tensor& hs, const at::Tensor& cs,
                         const at::Tensor& tc, const at::Tensor& dy, const at::Tensor& dh, at::Tensor dc,
                         c10::IntArrayRef sizes, const at::Tensor& X, at::Tensor dwx, at::Tensor dwa, at::Tensor db,
                         int64_t block, int64_t slices) {
  const int64_t T = G.size(0), B = G.size(1), H = tc.size(2);
  TORCH_CHECK(block == 0 || (G.scalar_type() == at::kFloat && dwx.is_contiguous() && dwa.is_contiguous() &&
                              db.is_contiguous()), "lstm_backward: the weight gradients' block sums are float32");
  TORCH_CHECK(G.is_contiguous() && hs.is_contiguous() && cs.is_contiguous() && tc.is_contiguous() &&
              G.size(2) == 4 * H && W.size(0) == 4 * H && W.size(1) == H && dy.dim() == 3 && dy.size(0) == B &&
              dy.size(1) == T && dy.stride(2) == 1 && dh.size(0) == B && dc.is_contiguous() && X.is_contiguous() &&
              (sizes.empty() || static_cast<int64_t>(sizes.size()) == T),
              "lstm_backward: contiguous G, hs, cs, tc, dc, X, W (4H, H) and dy (B, T, H) with contiguous rows "
              "expected");
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "lstm_backward", [&] {
    out = backward_loop<scalar_t>(G, W, pack, hs, cs, tc, dy, dh, dc, sizes, X, dwx, dwa, db, block, slices);
  });
  return out;
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
  m.def("lstm_forward(Tensor X, Tensor w_x, Tensor W, Tensor b, bool pack, Tensor(a!) G, Tensor(b!) hs, "
        "Tensor(c!) cs, Tensor(d!) tc, Tensor(e!) out, int[] sizes, int slices) -> ()", &lstm_forward);
  m.def("lstm_backward(Tensor(a!) G, Tensor W, bool pack, Tensor hs, Tensor cs, Tensor tc, Tensor dy, "
        "Tensor dh, Tensor(b!) dc, int[] sizes, Tensor X, Tensor(c!) dwx, Tensor(d!) dwa, Tensor(e!) db, "
        "int block, int slices) -> Tensor", &lstm_backward);
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
