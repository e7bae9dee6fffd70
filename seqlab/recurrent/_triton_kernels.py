"""The Triton kernels of ``triton_loops`` (see its docstring): one per loop over time, forward
and backward, of each fused recurrent cell. A module of its own so that triton is imported only
where the kernels are used (``triton_loops._kernels``), and so that the kernels' names (``tl``)
are module globals, which Triton's compiler resolves."""

import triton
import triton.language as tl


@triton.jit
def _add_product(acc, X, row0, S, t, B, b, live, M, j, cols, K, H,
                 BLOCK_K: tl.constexpr, PREC: tl.constexpr, DT: tl.constexpr):
    # acc + sum_{k < K} X[row0 + k, t, b] M[k, j]: the product of the items' rows b of a
    # feature-major X (rows, S, B) at step t with a row-major M (K, H), units j; in tiles of BLOCK_K
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        kk = ks.to(tl.int64)
        x = tl.load(X + ((row0 + kk)[None, :] * S + t) * B + b, mask=live[:, None] & (ks < K)[None, :], other=0.0)
        w = tl.load(M + kk[:, None] * H + j, mask=(ks < K)[:, None] & (cols < H)[None, :], other=0.0)
        acc += tl.dot(x, w, input_precision=PREC, out_dtype=DT)
    return acc


@triton.jit
def lstm_forward(G, WT, HS, CS, TC, OUT, LEN, T, B, H,
                 BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                 PREC: tl.constexpr, DT: tl.constexpr):
    # G (T, B, 4H): w . x_t + b in, a^(o), a^(i), a^(f), a^(g) out; WT (H, 4H) = W^T;
    # HS, CS (T + 1, B, H) with a^(h)_0, a^(c)_0 filled in; TC (T, B, H); OUT (B, T, H)
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)  # (BLOCK_B,) items
    live = rows < B
    steps = tl.load(LEN + rows, mask=live, other=0)
    H4 = 4 * H
    for t in range(T):
        active = ((t < steps) & live)[:, None]  # (BLOCK_B, 1)
        at_g = (t * B + rows).to(tl.int64)[:, None] * H4  # row (t, b) of G
        at_t = (t * B + rows).to(tl.int64)[:, None] * H  # row (t, b) of HS, CS, TC
        at_t1 = ((t + 1) * B + rows).to(tl.int64)[:, None] * H  # row (t + 1, b)
        at_out = (rows.to(tl.int64) * T + t)[:, None] * H  # row (b, t) of OUT
        for j0 in range(0, H, BLOCK_N):
            cols = j0 + tl.arange(0, BLOCK_N)  # (BLOCK_N,) units j
            m = live[:, None] & (cols < H)[None, :]
            j = cols[None, :]
            # z = w . x_t + b + W . a^(h)_{t-1}, the four gates' columns j: (BLOCK_B, BLOCK_N) each
            zo = tl.load(G + at_g + j, mask=m, other=0.0)
            zi = tl.load(G + at_g + H + j, mask=m, other=0.0)
            zf = tl.load(G + at_g + 2 * H + j, mask=m, other=0.0)
            zg = tl.load(G + at_g + 3 * H + j, mask=m, other=0.0)
            for k0 in range(0, H, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                a = tl.load(HS + at_t + ks[None, :], mask=live[:, None] & (ks < H)[None, :], other=0.0)
                w = WT + ks.to(tl.int64)[:, None] * H4 + j  # (BLOCK_K, BLOCK_N) of W^T, gate o
                wm = (ks < H)[:, None] & (cols < H)[None, :]
                zo += tl.dot(a, tl.load(w, mask=wm, other=0.0), input_precision=PREC, out_dtype=DT)
                zi += tl.dot(a, tl.load(w + H, mask=wm, other=0.0), input_precision=PREC, out_dtype=DT)
                zf += tl.dot(a, tl.load(w + 2 * H, mask=wm, other=0.0), input_precision=PREC, out_dtype=DT)
                zg += tl.dot(a, tl.load(w + 3 * H, mask=wm, other=0.0), input_precision=PREC, out_dtype=DT)
            o = tl.sigmoid(zo)
            i = tl.sigmoid(zi)
            f = tl.sigmoid(zf)
            g = 2 * tl.sigmoid(2 * zg) - 1  # tanh
            c_prev = tl.load(CS + at_t + j, mask=m, other=0.0)
            h_prev = tl.load(HS + at_t + j, mask=m, other=0.0)
            c = f * c_prev + i * g  # a^(c)_t
            tc = 2 * tl.sigmoid(2 * c) - 1  # tanh(a^(c)_t)
            h = o * tc  # a^(h)_t
            tl.store(CS + at_t1 + j, tl.where(active, c, c_prev), mask=m)
            tl.store(HS + at_t1 + j, tl.where(active, h, h_prev), mask=m)
            tl.store(TC + at_t + j, tc, mask=m)
            tl.store(G + at_g + j, tl.where(active, o, 0.0), mask=m)
            tl.store(G + at_g + H + j, tl.where(active, i, 0.0), mask=m)
            tl.store(G + at_g + 2 * H + j, tl.where(active, f, 0.0), mask=m)
            tl.store(G + at_g + 3 * H + j, tl.where(active, g, 0.0), mask=m)
            tl.store(OUT + at_out + j, tl.where(active, h, 0.0), mask=m)
        tl.debug_barrier()  # a^(h)_t written by all the program's threads before step t + 1 reads it


@triton.jit
def lstm_backward(G, W, CS, TC, DO, DC, DHB, LEN, T, B, H,
                  BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  PREC: tl.constexpr, DT: tl.constexpr):
    # G (T, B, 4H): activations in, dC/dz_t out; W (4H, H); CS (T + 1, B, H); TC (T, B, H);
    # DO (T, B, H) dC/d output_t (0 where padded); DC (B, H): dC/da^(c)_T in, dC/da^(c)_0 out;
    # DHB (2, B, H): dC/da^(h)_t in DHB[t % 2] (DHB[T % 2] filled in), dC/da^(h)_0 out in DHB[0]
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    live = rows < B
    steps = tl.load(LEN + rows, mask=live, other=0)
    H4 = 4 * H
    at_b = rows.to(tl.int64)[:, None] * H  # row b of DC, DHB[.]
    BH = B * H  # one of the two buffers of DHB
    for s in range(T):
        t = T - 1 - s
        active = ((t < steps) & live)[:, None]
        at_g = (t * B + rows).to(tl.int64)[:, None] * H4
        at_t = (t * B + rows).to(tl.int64)[:, None] * H
        dh_in = DHB + ((t + 1) % 2) * BH + at_b  # dC/da^(h)_t
        dh_out = DHB + (t % 2) * BH + at_b  # dC/da^(h)_{t-1}
        at_prev_out = ((t - 1) * B + rows).to(tl.int64)[:, None] * H  # row (t - 1, b) of DO
        after_first = (rows * 0 + t > 0)[:, None]  # t > 0, as a tensor (the interpreter's t is an int)
        # the element-wise work of step t: dC/dz_t into G, dC/da^(c)_{t-1} into DC
        for j0 in range(0, H, BLOCK_N):
            cols = j0 + tl.arange(0, BLOCK_N)
            m = live[:, None] & (cols < H)[None, :]
            j = cols[None, :]
            dh = tl.load(dh_in + j, mask=m, other=0.0)
            dc = tl.load(DC + at_b + j, mask=m, other=0.0)
            o = tl.load(G + at_g + j, mask=m, other=0.0)
            i = tl.load(G + at_g + H + j, mask=m, other=0.0)
            f = tl.load(G + at_g + 2 * H + j, mask=m, other=0.0)
            g = tl.load(G + at_g + 3 * H + j, mask=m, other=0.0)
            tc = tl.load(TC + at_t + j, mask=m, other=0.0)
            c_prev = tl.load(CS + at_t + j, mask=m, other=0.0)  # a^(c)_{t-1}
            dct = dc + dh * o * (1 - tc * tc)  # dC/da^(c)_t
            tl.store(G + at_g + j, tl.where(active, dh * tc * (o - o * o), 0.0), mask=m)
            tl.store(G + at_g + H + j, tl.where(active, dct * g * (i - i * i), 0.0), mask=m)
            tl.store(G + at_g + 2 * H + j, tl.where(active, dct * c_prev * (f - f * f), 0.0), mask=m)
            tl.store(G + at_g + 3 * H + j, tl.where(active, dct * i * (1 - g * g), 0.0), mask=m)
            tl.store(DC + at_b + j, tl.where(active, dct * f, dc), mask=m)
            # what dC/da^(h)_{t-1} has besides dC/dz_t . W: dC/d output_{t-1}, and an ended item's own
            d_out = tl.load(DO + at_prev_out + j, mask=m & after_first, other=0.0)
            tl.store(dh_out + j, tl.where(active, 0.0, dh) + d_out, mask=m)
        tl.debug_barrier()  # every column of dC/dz_t written before the product reads them
        # dC/da^(h)_{t-1} += dC/dz_t . W, columns j
        for j0 in range(0, H, BLOCK_N):
            cols = j0 + tl.arange(0, BLOCK_N)
            m = live[:, None] & (cols < H)[None, :]
            j = cols[None, :]
            acc = tl.load(dh_out + j, mask=m, other=0.0)
            for k0 in range(0, H4, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                d = tl.load(G + at_g + ks[None, :], mask=live[:, None] & (ks < H4)[None, :], other=0.0)
                w = tl.load(W + ks.to(tl.int64)[:, None] * H + j, mask=(ks < H4)[:, None] & (cols < H)[None, :],
                            other=0.0)
                acc += tl.dot(d, w, input_precision=PREC, out_dtype=DT)
            tl.store(dh_out + j, acc, mask=m)
        tl.debug_barrier()  # dC/da^(h)_{t-1} complete before step t - 1 reads it


# The Elman RNN and the GRU keep the feature axis first (fused.py's layout): XP, Gs (T, rows, B),
# HS (H, T + 1, B), D (rows, T, B); a tile (BLOCK_B items, BLOCK_N units) is read with the items
# contiguous.
@triton.jit
def elman_forward(XP, WT, HS, LEN, T, B, H, RELU: tl.constexpr,
                  BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  PREC: tl.constexpr, DT: tl.constexpr):
    # XP (T, H, B): w_x . x_t + b_a; WT (H, H) = w_a^T; HS (H, T + 1, B) with a_0 filled in
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    live = rows < B
    steps = tl.load(LEN + rows, mask=live, other=0)
    b = rows.to(tl.int64)[:, None]
    for t in range(T):
        active = ((t < steps) & live)[:, None]
        for j0 in range(0, H, BLOCK_N):
            cols = j0 + tl.arange(0, BLOCK_N)
            m = live[:, None] & (cols < H)[None, :]
            j = cols.to(tl.int64)[None, :]
            # z_t = w_a . a_{t-1} + (w_x . x_t + b_a), units j
            z = tl.load(XP + (t * H + j) * B + b, mask=m, other=0.0)
            z = _add_product(z, HS, 0, T + 1, t, B, b, live, WT, j, cols, H, H, BLOCK_K, PREC, DT)
            if RELU:
                a_t = tl.maximum(z, 0.0)
            else:
                a_t = 2 * tl.sigmoid(2 * z) - 1  # tanh
            a_prev = tl.load(HS + (j * (T + 1) + t) * B + b, mask=m, other=0.0)
            tl.store(HS + (j * (T + 1) + t + 1) * B + b, tl.where(active, a_t, a_prev), mask=m)
        tl.debug_barrier()


@triton.jit
def elman_backward(D, W, HS, DO, DAB, LEN, T, B, H, RELU: tl.constexpr,
                   BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                   PREC: tl.constexpr, DT: tl.constexpr):
    # D (H, T, B): dC/dz_t out; W (H, H) = w_a; DO (T, H, B) (0 where padded);
    # DAB (2, H, B): dC/da_t in DAB[t % 2] (DAB[T % 2] filled in), dC/da_0 out in DAB[0]
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    live = rows < B
    steps = tl.load(LEN + rows, mask=live, other=0)
    b = rows.to(tl.int64)[:, None]
    for s in range(T):
        t = T - 1 - s
        active = ((t < steps) & live)[:, None]
        after_first = (rows * 0 + t > 0)[:, None]
        da_in = DAB + ((t + 1) % 2) * H * B + b
        da_out = DAB + (t % 2) * H * B + b
        for j0 in range(0, H, BLOCK_N):
            cols = j0 + tl.arange(0, BLOCK_N)
            m = live[:, None] & (cols < H)[None, :]
            j = cols.to(tl.int64)[None, :]
            da = tl.load(da_in + j * B, mask=m, other=0.0)
            a_t = tl.load(HS + (j * (T + 1) + t + 1) * B + b, mask=m, other=0.0)
            if RELU:
                gprime = tl.where(a_t > 0, 1.0, 0.0)
            else:
                gprime = 1 - a_t * a_t
            # dC/dz_t = dC/da_t * g'(z_t)
            tl.store(D + (j * T + t) * B + b, tl.where(active, da * gprime, 0.0), mask=m)
            d_out = tl.load(DO + ((t - 1) * H + j) * B + b, mask=m & after_first, other=0.0)
            tl.store(da_out + j * B, tl.where(active, 0.0, da) + d_out, mask=m)
        tl.debug_barrier()
        # dC/da_{t-1} += w_a^T . dC/dz_t
        for j0 in range(0, H, BLOCK_N):
            cols = j0 + tl.arange(0, BLOCK_N)
            m = live[:, None] & (cols < H)[None, :]
            j = cols.to(tl.int64)[None, :]
            acc = tl.load(da_out + j * B, mask=m, other=0.0)
            acc = _add_product(acc, D, 0, T, t, B, b, live, W, j, cols, H, H, BLOCK_K, PREC, DT)
            tl.store(da_out + j * B, acc, mask=m)
        tl.debug_barrier()


@triton.jit
def gru_forward(GS, WT, BG, HG, HS, LEN, T, B, H,
                BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                PREC: tl.constexpr, DT: tl.constexpr):
    # PyTorch's form (reset after the product). GS (T, 3H, B): w . x_t + b in, rows (g, z, r),
    # a^(g), a^(z), a^(r) out; WT (H, 3H) = W^T, W's rows (z, r, G); BG (H,) b^(G);
    # HG (T, H, B): w^(G) . a^(h)_{t-1} + b^(G) out; HS (H, T + 1, B) with a^(h)_0 filled in
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    live = rows < B
    steps = tl.load(LEN + rows, mask=live, other=0)
    b = rows.to(tl.int64)[:, None]
    H3 = 3 * H
    for t in range(T):
        active = ((t < steps) & live)[:, None]
        for j0 in range(0, H, BLOCK_N):
            cols = j0 + tl.arange(0, BLOCK_N)
            m = live[:, None] & (cols < H)[None, :]
            j = cols.to(tl.int64)[None, :]
            at_g = (t * H3 + j) * B + b  # row g, unit j of GS[t]
            zz = tl.load(GS + at_g + H * B, mask=m, other=0.0)
            zr = tl.load(GS + at_g + 2 * H * B, mask=m, other=0.0)
            hg = tl.load(BG + j + b * 0, mask=m, other=0.0)
            for k0 in range(0, H, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                a = tl.load(HS + (ks.to(tl.int64)[None, :] * (T + 1) + t) * B + b,
                            mask=live[:, None] & (ks < H)[None, :], other=0.0)
                w = WT + ks.to(tl.int64)[:, None] * H3 + j
                wm = (ks < H)[:, None] & (cols < H)[None, :]
                zz += tl.dot(a, tl.load(w, mask=wm, other=0.0), input_precision=PREC, out_dtype=DT)
                zr += tl.dot(a, tl.load(w + H, mask=wm, other=0.0), input_precision=PREC, out_dtype=DT)
                hg += tl.dot(a, tl.load(w + 2 * H, mask=wm, other=0.0), input_precision=PREC, out_dtype=DT)
            z = tl.sigmoid(zz)
            r = tl.sigmoid(zr)
            g = 2 * tl.sigmoid(2 * (tl.load(GS + at_g, mask=m, other=0.0) + r * hg)) - 1  # tanh
            h_prev = tl.load(HS + (j * (T + 1) + t) * B + b, mask=m, other=0.0)
            h = h_prev + z * (g - h_prev)  # (1 - a^(z)) a_{t-1} + a^(z) a^(g)
            tl.store(GS + at_g, g, mask=m)
            tl.store(GS + at_g + H * B, z, mask=m)
            tl.store(GS + at_g + 2 * H * B, r, mask=m)
            tl.store(HG + (t * H + j) * B + b, hg, mask=m)
            tl.store(HS + (j * (T + 1) + t + 1) * B + b, tl.where(active, h, h_prev), mask=m)
        tl.debug_barrier()


@triton.jit
def gru_backward(D, W, GS, HG, HS, DO, DHB, LEN, T, B, H,
                 BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                 PREC: tl.constexpr, DT: tl.constexpr):
    # D (4H, T, B): dC/dz_t out, rows (g, z, r, G); W (3H, H), rows (z, r, G); GS (T, 3H, B) the
    # activations (g, z, r); HG (T, H, B); DO (T, H, B); DHB (2, H, B) as in elman_backward
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    live = rows < B
    steps = tl.load(LEN + rows, mask=live, other=0)
    b = rows.to(tl.int64)[:, None]
    TB = b * 0 + T * B  # T B as int64 (BLOCK_B, 1): the offsets of D's row blocks do not overflow
    H3 = 3 * H
    for s in range(T):
        t = T - 1 - s
        active = ((t < steps) & live)[:, None]
        after_first = (rows * 0 + t > 0)[:, None]
        dh_in = DHB + ((t + 1) % 2) * H * B + b
        dh_out = DHB + (t % 2) * H * B + b
        for j0 in range(0, H, BLOCK_N):
            cols = j0 + tl.arange(0, BLOCK_N)
            m = live[:, None] & (cols < H)[None, :]
            j = cols.to(tl.int64)[None, :]
            at_g = (t * H3 + j) * B + b
            dh = tl.load(dh_in + j * B, mask=m, other=0.0)
            g = tl.load(GS + at_g, mask=m, other=0.0)
            z = tl.load(GS + at_g + H * B, mask=m, other=0.0)
            r = tl.load(GS + at_g + 2 * H * B, mask=m, other=0.0)
            hg = tl.load(HG + (t * H + j) * B + b, mask=m, other=0.0)
            h_prev = tl.load(HS + (j * (T + 1) + t) * B + b, mask=m, other=0.0)
            dzg = dh * z * (1 - g * g)
            at_d = (j * T + t) * B + b  # row g, unit j of D[:, t]
            tl.store(D + at_d, tl.where(active, dzg, 0.0), mask=m)
            tl.store(D + at_d + H * TB, tl.where(active, dh * (g - h_prev) * (z - z * z), 0.0), mask=m)
            tl.store(D + at_d + 2 * H * TB, tl.where(active, dzg * hg * (r - r * r), 0.0), mask=m)
            tl.store(D + at_d + 3 * H * TB, tl.where(active, dzg * r, 0.0), mask=m)
            d_out = tl.load(DO + ((t - 1) * H + j) * B + b, mask=m & after_first, other=0.0)
            # da_t/da_{t-1} directly: 1 - a^(z) (an ended item: 1)
            tl.store(dh_out + j * B, tl.where(active, dh * (1 - z), dh) + d_out, mask=m)
        tl.debug_barrier()
        # dC/da_{t-1} += W^T . dC/dz_(z, r, G)
        for j0 in range(0, H, BLOCK_N):
            cols = j0 + tl.arange(0, BLOCK_N)
            m = live[:, None] & (cols < H)[None, :]
            j = cols.to(tl.int64)[None, :]
            acc = tl.load(dh_out + j * B, mask=m, other=0.0)
            acc = _add_product(acc, D, H, T, t, B, b, live, W, j, cols, H3, H, BLOCK_K, PREC, DT)
            tl.store(dh_out + j * B, acc, mask=m)
        tl.debug_barrier()


@triton.jit
def gru_before_forward(GS, WZRT, WGT, RH, HS, LEN, T, B, H,
                       BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                       PREC: tl.constexpr, DT: tl.constexpr):
    # The lecture's form (reset before the product). GS (T, 3H, B): w . x_t + b in, rows (g, z, r),
    # a^(g), a^(z), a^(r) out; WZRT (H, 2H) = (w^(Z); w^(R))^T; WGT (H, H) = w^(G)^T;
    # RH (H, T, B): a^(r)_t * a^(h)_{t-1} out (0 where padded); HS (H, T + 1, B) with a^(h)_0 filled in
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    live = rows < B
    steps = tl.load(LEN + rows, mask=live, other=0)
    b = rows.to(tl.int64)[:, None]
    H2 = 2 * H
    H3 = 3 * H
    for t in range(T):
        active = ((t < steps) & live)[:, None]
        # a^(z), a^(r) = sigmoid(w . x_t + b + W . a^(h)_{t-1}), and a^(r)_t * a^(h)_{t-1}
        for j0 in range(0, H, BLOCK_N):
            cols = j0 + tl.arange(0, BLOCK_N)
            m = live[:, None] & (cols < H)[None, :]
            j = cols.to(tl.int64)[None, :]
            at_g = (t * H3 + j) * B + b
            zz = tl.load(GS + at_g + H * B, mask=m, other=0.0)
            zr = tl.load(GS + at_g + 2 * H * B, mask=m, other=0.0)
            for k0 in range(0, H, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                a = tl.load(HS + (ks.to(tl.int64)[None, :] * (T + 1) + t) * B + b,
                            mask=live[:, None] & (ks < H)[None, :], other=0.0)
                w = WZRT + ks.to(tl.int64)[:, None] * H2 + j
                wm = (ks < H)[:, None] & (cols < H)[None, :]
                zz += tl.dot(a, tl.load(w, mask=wm, other=0.0), input_precision=PREC, out_dtype=DT)
                zr += tl.dot(a, tl.load(w + H, mask=wm, other=0.0), input_precision=PREC, out_dtype=DT)
            r = tl.sigmoid(zr)
            h_prev = tl.load(HS + (j * (T + 1) + t) * B + b, mask=m, other=0.0)
            tl.store(GS + at_g + H * B, tl.sigmoid(zz), mask=m)
            tl.store(GS + at_g + 2 * H * B, r, mask=m)
            tl.store(RH + (j * T + t) * B + b, tl.where(active, r * h_prev, 0.0), mask=m)
        tl.debug_barrier()  # all of a^(r)_t * a^(h)_{t-1} before the product reads it
        # a^(g)_t = tanh(w^(g) . x_t + b^(g) + w^(G) . (a^(r)_t * a^(h)_{t-1})), then a^(h)_t
        for j0 in range(0, H, BLOCK_N):
            cols = j0 + tl.arange(0, BLOCK_N)
            m = live[:, None] & (cols < H)[None, :]
            j = cols.to(tl.int64)[None, :]
            at_g = (t * H3 + j) * B + b
            zg = tl.load(GS + at_g, mask=m, other=0.0)
            zg = _add_product(zg, RH, 0, T, t, B, b, live, WGT, j, cols, H, H, BLOCK_K, PREC, DT)
            g = 2 * tl.sigmoid(2 * zg) - 1  # tanh
            z = tl.load(GS + at_g + H * B, mask=m, other=0.0)
            h_prev = tl.load(HS + (j * (T + 1) + t) * B + b, mask=m, other=0.0)
            tl.store(GS + at_g, g, mask=m)
            tl.store(HS + (j * (T + 1) + t + 1) * B + b, tl.where(active, h_prev + z * (g - h_prev), h_prev),
                     mask=m)
        tl.debug_barrier()


@triton.jit
def gru_before_backward(D, WZR, WG, GS, HS, DO, DHB, LEN, T, B, H,
                        BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                        PREC: tl.constexpr, DT: tl.constexpr):
    # D (3H, T, B): dC/dz_t out, rows (g, z, r); WZR (2H, H) = (w^(Z); w^(R)); WG (H, H) = w^(G);
    # GS (T, 3H, B) the activations; DO (T, H, B); DHB (2, H, B) as in elman_backward
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    live = rows < B
    steps = tl.load(LEN + rows, mask=live, other=0)
    b = rows.to(tl.int64)[:, None]
    TB = b * 0 + T * B  # T B as int64 (BLOCK_B, 1): the offsets of D's row blocks do not overflow
    H2 = 2 * H
    H3 = 3 * H
    for s in range(T):
        t = T - 1 - s
        active = ((t < steps) & live)[:, None]
        after_first = (rows * 0 + t > 0)[:, None]
        dh_in = DHB + ((t + 1) % 2) * H * B + b
        dh_out = DHB + (t % 2) * H * B + b
        # dC/dz_g = dh a^(z) (1 - a^(g)^2), dC/dz_z = dh (a^(g) - a_{t-1}) sigmoid'(z_z); dh (1 - a^(z))
        for j0 in range(0, H, BLOCK_N):
            cols = j0 + tl.arange(0, BLOCK_N)
            m = live[:, None] & (cols < H)[None, :]
            j = cols.to(tl.int64)[None, :]
            at_g = (t * H3 + j) * B + b
            at_d = (j * T + t) * B + b
            dh = tl.load(dh_in + j * B, mask=m, other=0.0)
            g = tl.load(GS + at_g, mask=m, other=0.0)
            z = tl.load(GS + at_g + H * B, mask=m, other=0.0)
            h_prev = tl.load(HS + (j * (T + 1) + t) * B + b, mask=m, other=0.0)
            tl.store(D + at_d, tl.where(active, dh * z * (1 - g * g), 0.0), mask=m)
            tl.store(D + at_d + H * TB, tl.where(active, dh * (g - h_prev) * (z - z * z), 0.0), mask=m)
            d_out = tl.load(DO + ((t - 1) * H + j) * B + b, mask=m & after_first, other=0.0)
            tl.store(dh_out + j * B, tl.where(active, dh * (1 - z), dh) + d_out, mask=m)
        tl.debug_barrier()
        # v = w^(G)^T . dC/dz_g = dC/d(a^(r) * a_{t-1});  dC/dz_r = v a_{t-1} sigmoid'(z_r);  dh += v a^(r)
        for j0 in range(0, H, BLOCK_N):
            cols = j0 + tl.arange(0, BLOCK_N)
            m = live[:, None] & (cols < H)[None, :]
            j = cols.to(tl.int64)[None, :]
            v = tl.zeros((BLOCK_B, BLOCK_N), dtype=DT)
            v = _add_product(v, D, 0, T, t, B, b, live, WG, j, cols, H, H, BLOCK_K, PREC, DT)
            r = tl.load(GS + (t * H3 + j) * B + b + 2 * H * B, mask=m, other=0.0)
            h_prev = tl.load(HS + (j * (T + 1) + t) * B + b, mask=m, other=0.0)
            tl.store(D + (j * T + t) * B + b + 2 * H * TB, tl.where(active, v * h_prev * (r - r * r), 0.0),
                     mask=m)
            acc = tl.load(dh_out + j * B, mask=m, other=0.0)
            tl.store(dh_out + j * B, acc + tl.where(active, v * r, 0.0), mask=m)
        tl.debug_barrier()
        # dh_{t-1} += (w^(Z); w^(R))^T . dC/dz_(z, r)
        for j0 in range(0, H, BLOCK_N):
            cols = j0 + tl.arange(0, BLOCK_N)
            m = live[:, None] & (cols < H)[None, :]
            j = cols.to(tl.int64)[None, :]
            acc = tl.load(dh_out + j * B, mask=m, other=0.0)
            acc = _add_product(acc, D, H, T, t, B, b, live, WZR, j, cols, H2, H, BLOCK_K, PREC, DT)
            tl.store(dh_out + j * B, acc, mask=m)
        tl.debug_barrier()
