"""The fast path: one recurrent layer as one autograd node, with BPTT written by hand.

The readable path in ``rnn.py``/``lstm.py``/``gru.py`` computes each step with autograd
recording every small operation. This module computes the *same* equations, arranged so
that a step costs as few tensor operations as possible (on a CPU each operation has a
fixed cost of several microseconds, comparable to its arithmetic at these sizes):

1. The input half of every gate, w . x_t + b for all t, is one matrix product before
   the loop (it does not depend on the recurrence).
2. All gates of a step come from one matrix product (their weights are stacked), and the
   loop runs without autograd, writing into preallocated buffers.
3. Backpropagation through time is written out by hand (the lecture's chain-rule sums;
   ``seqlab.recurrent.bptt`` has the NumPy version). Every factor of the backward
   recursion that does not depend on the incoming gradient -- the activation derivatives
   g'(z_t) and the products they form with saved activations -- is computed for all t at
   once before the loop, so a backward step is a handful of operations. The weight
   gradients, sums over t, become single matrix products after the loop.

Layout. Inside this module the feature axis comes before the batch: a state is ``(H, B)``
and per-step buffers are ``(T, features, B)``, so a step's gates are a contiguous block of
rows (one ``sigmoid_`` covers every sigmoid gate) and the small matrix products run on
contiguous operands.

Variable lengths use a shrinking batch, as ``nn.utils.rnn.pack_padded_sequence`` does:
items are sorted by length t_i (longest first) and step t updates only the first
``batch_sizes[t]`` columns; the others keep their state, so their a_{t_i} is final,
padded outputs are 0, and padded positions receive no gradient.

Every function here is checked against the readable path and with
``torch.autograd.gradcheck`` in ``tests/recurrent/test_fused.py``.
"""

from __future__ import annotations

from typing import Sequence

import torch

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


def _input_projection(x: torch.Tensor, w_x: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w . x_t + b for every t at once. x: (B, T, I) -> X: (T*B, I), xp: (G, T, B)."""
    B, T, I = x.shape
    X = x.transpose(0, 1).reshape(T * B, I)  # (T*B, I), rows ordered (t, b)
    xp = torch.addmm(b[:, None], w_x, X.t())  # (G, T*B)
    return X, xp.view(-1, T, B)


def _outputs(hs: torch.Tensor, batch_sizes) -> torch.Tensor:
    """hs: (T+1, H, B) -> outputs (B, T, H), zero at padded positions."""
    out = hs[1:].permute(2, 0, 1).contiguous()  # (B, T, H)
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


def _recurrent_grad(dh: torch.Tensor, dO: torch.Tensor, wT: torch.Tensor, d: torch.Tensor, t: int, n: int, B: int,
                    out: torch.Tensor | None = None) -> torch.Tensor:
    """dC/da_{t-1} = W^T . dC/dz_t (+ dC/d output_{t-1}), for the n active columns; the
    columns of items that ended before t pass their gradient through unchanged."""
    out = dh if out is None else out
    if t == 0:
        torch.mm(wT, d, out=out[:, :n])
    else:
        torch.addmm(dO[t - 1, :, :n], wT, d, out=out[:, :n])
    if n < B:
        if out is not dh:
            out[:, n:] = dh[:, n:]
        if t > 0:
            out[:, n:].add_(dO[t - 1, :, n:])
    return out


def _weight_grads(ctx, D: torch.Tensor, X: torch.Tensor, w_x: torch.Tensor, d_state, rec,
                  x_rows: slice = slice(None)) -> tuple:
    """dC/dx, dC/dw_x, dC/dw_a..., dC/db, dC/da_0 from the per-step pre-activation
    gradients D (T, G, B); each sum over t is one matrix product.

    rec: [(rows of D for this recurrent matrix, its right operand (T, H_in, B))];
    x_rows: the rows of D that belong to the input side (w_x and b)."""
    T, G, B = D.shape
    need = ctx.needs_input_grad
    Dm = D.permute(1, 0, 2).reshape(G, T * B)  # (G, T*B), columns ordered (t, b)
    Dx = Dm[x_rows]
    dx = dw_x = db = None
    if need[0]:
        # dC/dx_t = w_x^T . dC/dz_t                                    (I, T*B) -> (B, T, I)
        dx = torch.mm(w_x.t(), Dx).view(-1, T, B).permute(2, 1, 0)
    if need[1]:
        # dC/dw_x = sum_t dC/dz_t . x_t^T
        dw_x = torch.mm(Dx, X)
    rec_grads = []
    for k, (rows, right) in enumerate(rec):
        if need[2 + k]:
            # dC/dw_a = sum_t dC/dz_t . a_{t-1}^T
            Hin = right.shape[1]
            rec_grads.append(torch.mm(Dm[rows], right.permute(1, 0, 2).reshape(Hin, T * B).t()))
        else:
            rec_grads.append(None)
    if need[2 + len(rec)]:
        db = Dx.sum(1)  # dC/db = sum_t dC/dz_t
    states = d_state if isinstance(d_state, tuple) else (d_state,)
    # dC/da_0: what is left of the backward recursion, back to (B, H)
    return (dx, dw_x, *rec_grads, db) + tuple(s.t() for s in states)


# ----------------------------------------------------------------------------- Elman RNN
class ElmanFunction(torch.autograd.Function):
    """a_t = g(w_x . x_t + w_a . a_{t-1} + b_a), g = tanh or relu, for t = 1..T."""

    @staticmethod
    @_custom_fwd
    def forward(ctx, x, w_x, w_a, b_a, a0, relu: bool, batch_sizes):
        B, T, _ = x.shape
        H = w_a.shape[0]
        X, xp = _input_projection(x, w_x, b_a)  # xp: (H, T, B)
        hs = x.new_empty(T + 1, H, B)  # a_0 .. a_T
        hs[0] = a0.t()
        for t in range(T):
            n = B if batch_sizes is None else batch_sizes[t]
            a = hs[t + 1, :, :n]
            # a_t = g(w_a . a_{t-1} + [w_x . x_t + b_a])
            torch.addmm(xp[:, t, :n], w_a, hs[t, :, :n], out=a)
            a.relu_() if relu else a.tanh_()
            if n < B:
                hs[t + 1, :, n:] = hs[t, :, n:]
        ctx.relu = relu
        ctx.batch_sizes = batch_sizes
        ctx.save_for_backward(X, w_x, w_a, hs)
        return _outputs(hs, batch_sizes), hs[T].t().contiguous()

    @staticmethod
    @_custom_bwd
    def backward(ctx, d_out, d_aT):
        X, w_x, w_a, hs = ctx.saved_tensors
        T1, H, B = hs.shape
        T = T1 - 1
        bs = ctx.batch_sizes
        dO = _grad_outputs(d_out, T, H, B, hs, bs)  # (T, H, B)
        # g'(z_t) for every t at once: tanh' = 1 - a_t^2, relu' = [a_t > 0]
        gprime = (hs[1:] > 0).to(hs.dtype) if ctx.relu else _tanh_grad(hs[1:])
        da = _grad_state(d_aT, H, B, hs)
        da.add_(dO[T - 1])  # dC/da_T
        D = hs.new_zeros(T, H, B) if bs is not None else hs.new_empty(T, H, B)  # dC/dz_t
        wT = w_a.t()
        for t in range(T - 1, -1, -1):
            n = B if bs is None else bs[t]
            # dC/dz_t = dC/da_t * g'(z_t)
            torch.mul(da[:, :n], gprime[t, :, :n], out=D[t, :, :n])
            # dC/da_{t-1} = w_a^T . dC/dz_t + dC/do_{t-1}     (the factor da_t/da_{t-1})
            _recurrent_grad(da, dO, wT, D[t, :, :n], t, n, B)
        return _weight_grads(ctx, D, X, w_x, da, rec=[(slice(None), hs[:T])]) + (None, None)


# ----------------------------------------------------------------------------- LSTM
class LSTMFunction(torch.autograd.Function):
    """The lecture's LSTM; stacked gate rows in the order (o, i, f, g):

        a^(o), a^(i), a^(f) = sigmoid(w . x_t + W . a^(h)_{t-1} + b)
        a^(g)               = tanh(w^(g) . x_t + w^(G) . a^(h)_{t-1} + b^(g))
        a^(c)_t = a^(f)_t * a^(c)_{t-1} + a^(i)_t * a^(g)_t
        a^(h)_t = a^(o)_t * tanh(a^(c)_t)

    (o, i, f, g): the three sigmoid gates are adjacent for the forward pass, and the three
    gates whose gradient is dC/da^(c) times a saved factor (i, f, g) for the backward pass.
    """

    @staticmethod
    @_custom_fwd
    def forward(ctx, x, w_x, w_a, b, h0, c0, batch_sizes):
        B, T, _ = x.shape
        H = w_a.shape[1]
        X, xp = _input_projection(x, w_x, b)  # xp: (4H, T, B)
        Gs = x.new_empty(T, 4 * H, B)  # activated gates per step
        hs = x.new_empty(T + 1, H, B)  # a^(h)_0 .. a^(h)_T
        cs = x.new_empty(T + 1, H, B)  # a^(c)_0 .. a^(c)_T
        tc = x.new_empty(T, H, B)  # tanh(a^(c)_t)
        hs[0] = h0.t()
        cs[0] = c0.t()
        for t in range(T):
            n = B if batch_sizes is None else batch_sizes[t]
            g = Gs[t, :, :n]  # (4H, n)
            torch.addmm(xp[:, t, :n], w_a, hs[t, :, :n], out=g)
            g[: 3 * H].sigmoid_()  # a^(o), a^(i), a^(f)
            g[3 * H :].tanh_()  # a^(g)
            o, i, f, gg = g[:H], g[H : 2 * H], g[2 * H : 3 * H], g[3 * H :]
            c = cs[t + 1, :, :n]
            # a^(c)_t = a^(f)_t * a^(c)_{t-1} + a^(i)_t * a^(g)_t
            torch.mul(f, cs[t, :, :n], out=c)
            c.addcmul_(i, gg)
            # a^(h)_t = a^(o)_t * tanh(a^(c)_t)
            torch.tanh(c, out=tc[t, :, :n])
            torch.mul(o, tc[t, :, :n], out=hs[t + 1, :, :n])
            if n < B:
                hs[t + 1, :, n:] = hs[t, :, n:]
                cs[t + 1, :, n:] = cs[t, :, n:]
        ctx.batch_sizes = batch_sizes
        ctx.save_for_backward(X, w_x, w_a, Gs, hs, cs, tc)
        return _outputs(hs, batch_sizes), hs[T].t().contiguous(), cs[T].t().contiguous()

    @staticmethod
    @_custom_bwd
    def backward(ctx, d_out, d_hT, d_cT):
        X, w_x, w_a, Gs, hs, cs, tc = ctx.saved_tensors
        T1, H, B = hs.shape
        T = T1 - 1
        bs = ctx.batch_sizes
        dO = _grad_outputs(d_out, T, H, B, hs, bs)
        o, i, f, gg = Gs[:, :H], Gs[:, H : 2 * H], Gs[:, 2 * H : 3 * H], Gs[:, 3 * H :]
        # Factors of the backward recursion, for all t at once (each (T, H, B)):
        #   dC/dz_o = dC/da^(h) * tanh(a^(c)) * sigmoid'(z_o)                     = dh * P_o
        #   dC/da^(c) += dC/da^(h) * a^(o) * (1 - tanh^2(a^(c)))                  = dh * Q
        #   dC/dz_i = dC/da^(c) * a^(g) * sigmoid'(z_i)
        #   dC/dz_f = dC/da^(c) * a^(c)_{t-1} * sigmoid'(z_f)                     = dc * P_ifg
        #   dC/dz_g = dC/da^(c) * a^(i) * (1 - a^(g)^2)
        P_o = tc * _sigmoid_grad(o)
        Q = o * _tanh_grad(tc)
        P_ifg = torch.cat([gg * _sigmoid_grad(i), cs[:T] * _sigmoid_grad(f), i * _tanh_grad(gg)], dim=1)
        P_ifg = P_ifg.view(T, 3, H, B)
        dh = _grad_state(d_hT, H, B, hs)  # dC/da^(h)_t
        dc = _grad_state(d_cT, H, B, hs)  # dC/da^(c)_t
        dh.add_(dO[T - 1])
        D = hs.new_zeros(T, 4 * H, B) if bs is not None else hs.new_empty(T, 4 * H, B)  # dC/dz_t
        wT = w_a.t()
        for t in range(T - 1, -1, -1):
            n = B if bs is None else bs[t]
            dh_n, dc_n, d = dh[:, :n], dc[:, :n], D[t, :, :n]
            dc_n.addcmul_(dh_n, Q[t, :, :n])
            torch.mul(dh_n, P_o[t, :, :n], out=d[:H])
            torch.mul(dc_n, P_ifg[t, :, :, :n], out=d[H:].view(3, H, n))
            # dC/da^(c)_{t-1} = dC/da^(c)_t * a^(f)_t
            dc_n.mul_(f[t, :, :n])
            # dC/da^(h)_{t-1} = W^T . dC/dz_t (+ dC/d output_{t-1})
            _recurrent_grad(dh, dO, wT, d, t, n, B)
        return _weight_grads(ctx, D, X, w_x, (dh, dc), rec=[(slice(None), hs[:T])]) + (None,)


# ----------------------------------------------------------------------------- GRU
class GRUFunction(torch.autograd.Function):
    """The lecture's GRU (reset before the recurrent product), gate rows (g, z, r):

        a^(z), a^(r) = sigmoid(w . x_t + W . a^(h)_{t-1} + b)
        a^(g)_t = tanh(w^(g) . x_t + w^(G) . (a^(r)_t * a^(h)_{t-1}) + b^(g))
        a^(h)_t = (1 - a^(z)_t) * a^(h)_{t-1} + a^(z)_t * a^(g)_t

    ``w_zr`` stacks (w^(Z); w^(R)); ``w_G`` multiplies the reset state.
    """

    @staticmethod
    @_custom_fwd
    def forward(ctx, x, w_x, w_zr, w_G, b, h0, batch_sizes):
        B, T, _ = x.shape
        H = w_G.shape[0]
        X, xp = _input_projection(x, w_x, b)  # xp: (3H, T, B) rows (g, z, r)
        Gs = x.new_empty(T, 3 * H, B)  # a^(g), a^(z), a^(r) per step
        hs = x.new_empty(T + 1, H, B)
        # a^(r)_t * a^(h)_{t-1}; zeros at padded steps, which enter the sum for dC/dw^(G)
        rh = x.new_zeros(T, H, B) if batch_sizes is not None else x.new_empty(T, H, B)
        tmp = x.new_empty(H, B)
        hs[0] = h0.t()
        for t in range(T):
            n = B if batch_sizes is None else batch_sizes[t]
            g, h = Gs[t, :, :n], hs[t, :, :n]
            gg, z, r = g[:H], g[H : 2 * H], g[2 * H :]
            # a^(z), a^(r) = sigmoid(w . x_t + W . a^(h)_{t-1} + b)
            torch.addmm(xp[H:, t, :n], w_zr, h, out=g[H:])
            g[H:].sigmoid_()
            # a^(g)_t = tanh(w^(g) . x_t + w^(G) . (a^(r)_t * a^(h)_{t-1}) + b^(g))
            torch.mul(r, h, out=rh[t, :, :n])
            torch.addmm(xp[:H, t, :n], w_G, rh[t, :, :n], out=gg)
            gg.tanh_()
            # a^(h)_t = (1 - a^(z)) * a^(h)_{t-1} + a^(z) * a^(g)  =  a_{t-1} + a^(z) (a^(g) - a_{t-1})
            torch.sub(gg, h, out=tmp[:, :n])
            torch.addcmul(h, z, tmp[:, :n], out=hs[t + 1, :, :n])
            if n < B:
                hs[t + 1, :, n:] = hs[t, :, n:]
        ctx.batch_sizes = batch_sizes
        ctx.save_for_backward(X, w_x, w_zr, w_G, Gs, hs, rh)
        return _outputs(hs, batch_sizes), hs[T].t().contiguous()

    @staticmethod
    @_custom_bwd
    def backward(ctx, d_out, d_hT):
        X, w_x, w_zr, w_G, Gs, hs, rh = ctx.saved_tensors
        T1, H, B = hs.shape
        T = T1 - 1
        bs = ctx.batch_sizes
        dO = _grad_outputs(d_out, T, H, B, hs, bs)
        gg, z, r = Gs[:, :H], Gs[:, H : 2 * H], Gs[:, 2 * H :]
        h_prev = hs[:T]
        # Factors for all t at once (a^(h)_t = a_{t-1} + a^(z) (a^(g) - a_{t-1})):
        #   dC/dz_g = dC/da_t * a^(z) * (1 - a^(g)^2)          = dh * P_g
        #   dC/dz_z = dC/da_t * (a^(g) - a_{t-1}) * sigmoid'(z_z) = dh * P_z
        #   dC/dz_r = [w^(G)^T . dC/dz_g] * a_{t-1} * sigmoid'(z_r) = v * P_r
        P_gz = torch.cat([z * _tanh_grad(gg), (gg - h_prev) * _sigmoid_grad(z)], dim=1).view(T, 2, H, B)
        P_r = h_prev * _sigmoid_grad(r)
        keep = 1 - z  # da_t/da_{t-1} directly: 1 - a^(z)
        dh = _grad_state(d_hT, H, B, hs)
        dh.add_(dO[T - 1])
        new = torch.empty_like(dh)
        v = hs.new_empty(H, B)
        D = hs.new_zeros(T, 3 * H, B) if bs is not None else hs.new_empty(T, 3 * H, B)
        wGT, wzrT = w_G.t(), w_zr.t()
        for t in range(T - 1, -1, -1):
            n = B if bs is None else bs[t]
            dh_n, d, v_n = dh[:, :n], D[t, :, :n], v[:, :n]
            torch.mul(dh_n, P_gz[t, :, :, :n], out=d[: 2 * H].view(2, H, n))
            # dC/d(a^(r) * a_{t-1}) = w^(G)^T . dC/dz_g
            torch.mm(wGT, d[:H], out=v_n)
            torch.mul(v_n, P_r[t, :, :n], out=d[2 * H :])
            # dC/da_{t-1} = W_zr^T . dC/dz_zr + v * a^(r) + dC/da_t * (1 - a^(z)) (+ dC/do_{t-1})
            _recurrent_grad(dh, dO, wzrT, d[H:], t, n, B, out=new)
            new[:, :n].addcmul_(v_n, r[t, :, :n])
            new[:, :n].addcmul_(dh_n, keep[t, :, :n])
            dh, new = new, dh
        return _weight_grads(
            ctx, D, X, w_x, dh, rec=[(slice(H, 3 * H), h_prev), (slice(0, H), rh)]
        ) + (None,)


class GRUResetAfterFunction(torch.autograd.Function):
    """PyTorch's GRU form (reset applied after the recurrent product), written with the
    lecture's update gate (keep 1 - a^(z) of the old state). Rows: x side (g, z, r),
    recurrent side (z, r, G):

        a^(z), a^(r) = sigmoid(w . x_t + b + W . a^(h)_{t-1})
        a^(g)_t = tanh(w^(g) . x_t + b^(g) + a^(r)_t * (w^(G) . a^(h)_{t-1} + b^(G)))
        a^(h)_t = (1 - a^(z)_t) * a^(h)_{t-1} + a^(z)_t * a^(g)_t
    """

    @staticmethod
    @_custom_fwd
    def forward(ctx, x, w_x, w_a, b, b_G, h0, batch_sizes):
        B, T, _ = x.shape
        H = w_a.shape[1]
        X, xp = _input_projection(x, w_x, b)  # (3H, T, B) rows (g, z, r)
        Gs = x.new_empty(T, 3 * H, B)  # rows (g, z, r) after activation
        HP = x.new_empty(T, 3 * H, B)  # W . a_{t-1} (+ b^(G) on the G rows), rows (z, r, G)
        hs = x.new_empty(T + 1, H, B)
        tmp = x.new_empty(H, B)
        bias_h = torch.cat([b_G.new_zeros(2 * H), b_G])[:, None]
        hs[0] = h0.t()
        for t in range(T):
            n = B if batch_sizes is None else batch_sizes[t]
            g, hp, h = Gs[t, :, :n], HP[t, :, :n], hs[t, :, :n]
            gg, z, r = g[:H], g[H : 2 * H], g[2 * H :]
            torch.addmm(bias_h, w_a, h, out=hp)
            torch.add(xp[H:, t, :n], hp[: 2 * H], out=g[H:])
            g[H:].sigmoid_()
            torch.mul(r, hp[2 * H :], out=gg)
            gg.add_(xp[:H, t, :n])
            gg.tanh_()
            torch.sub(gg, h, out=tmp[:, :n])
            torch.addcmul(h, z, tmp[:, :n], out=hs[t + 1, :, :n])
            if n < B:
                hs[t + 1, :, n:] = hs[t, :, n:]
        ctx.batch_sizes = batch_sizes
        ctx.save_for_backward(X, w_x, w_a, Gs, HP, hs)
        return _outputs(hs, batch_sizes), hs[T].t().contiguous()

    @staticmethod
    @_custom_bwd
    def backward(ctx, d_out, d_hT):
        X, w_x, w_a, Gs, HP, hs = ctx.saved_tensors
        T1, H, B = hs.shape
        T = T1 - 1
        bs = ctx.batch_sizes
        dO = _grad_outputs(d_out, T, H, B, hs, bs)
        gg, z, r = Gs[:, :H], Gs[:, H : 2 * H], Gs[:, 2 * H :]
        hp_G = HP[:, 2 * H :]
        # Every pre-activation gradient is dC/da_t times a factor known from the forward
        # pass; D rows (g, z, r, G): x side uses rows 0:3H, the recurrent side rows H:4H.
        #   dC/dz_g = dh * a^(z) (1 - a^(g)^2)                        = dh * P_g
        #   dC/dz_z = dh * (a^(g) - a_{t-1}) sigmoid'(z_z)
        #   dC/dz_r = dC/dz_g * (w^(G) a + b^(G)) sigmoid'(z_r)
        #   dC/d(w^(G) a + b^(G)) = dC/dz_g * a^(r)
        P_g = z * _tanh_grad(gg)
        P = torch.cat([P_g, (gg - hs[:T]) * _sigmoid_grad(z), P_g * hp_G * _sigmoid_grad(r), P_g * r], dim=1)
        P = P.view(T, 4, H, B)
        keep = 1 - z
        dh = _grad_state(d_hT, H, B, hs)
        dh.add_(dO[T - 1])
        new = torch.empty_like(dh)
        D = hs.new_zeros(T, 4 * H, B) if bs is not None else hs.new_empty(T, 4 * H, B)
        wT = w_a.t()
        for t in range(T - 1, -1, -1):
            n = B if bs is None else bs[t]
            dh_n, d = dh[:, :n], D[t, :, :n]
            torch.mul(dh_n, P[t, :, :, :n], out=d.view(4, H, n))
            # dC/da_{t-1} = W^T . dC/dz_(z, r, G) + dC/da_t * (1 - a^(z)) (+ dC/do_{t-1})
            _recurrent_grad(dh, dO, wT, d[H:], t, n, B, out=new)
            new[:, :n].addcmul_(dh_n, keep[t, :, :n])
            dh, new = new, dh
        d_bG = D[:, 3 * H :].sum((0, 2)) if ctx.needs_input_grad[4] else None  # dC/db^(G)
        grads = _weight_grads(ctx, D, X, w_x, dh, rec=[(slice(H, 4 * H), hs[:T])], x_rows=slice(0, 3 * H))
        # grads = (dx, dw_x, dw_a, db, dh0): insert dC/db^(G) before dh0
        return grads[:4] + (d_bG,) + grads[4:] + (None,)


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
