"""The fast path: one recurrent layer as one autograd node, with BPTT written by hand.

The readable path in ``rnn.py``/``lstm.py``/``gru.py`` computes each step with autograd
tracking every small operation. This module computes the *same* equations with three
changes that make it about as fast as PyTorch's built-in (oneDNN) kernels on a CPU:

1. The input half of every gate, w . x_t + b for all t, is one matrix product
   before the loop (it does not depend on the recurrence).
2. The gates of a step are one matrix product (their weights are stacked), and the
   whole step runs without autograd, writing into preallocated buffers.
3. Backpropagation through time is written out by hand (the lecture's chain-rule sums,
   see ``seqlab.recurrent.bptt`` for the NumPy version): a backward loop carries
   dC/da_t, and the weight gradients, sums over t, become single matrix products
   after the loop.

Layout. Inside this module the feature axis comes first: a state is ``(H, B)`` and the
buffers are ``(features, T, B)``. A step's gates are then a contiguous block of rows,
so one ``sigmoid_`` covers every sigmoid gate, and the sums over t of the weight
gradients are products of ``(4H, T*B)`` matrices without copies.

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
    """hs: (H, T+1, B) -> outputs (B, T, H), zero at padded positions."""
    out = hs[:, 1:].permute(2, 1, 0).contiguous()  # (B, T, H)
    if batch_sizes is not None:
        for t, n in enumerate(batch_sizes):
            if n < out.shape[0]:
                out[n:, t] = 0
    return out


def _grad_outputs(d_out: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """d_out: (B, T, H) -> (H, T, B) contiguous (zeros if the outputs were unused)."""
    if d_out is None:
        return like.new_zeros(like.shape[2], like.shape[1], like.shape[0])
    return d_out.permute(2, 1, 0).contiguous()


def _grad_state(d: torch.Tensor | None, H: int, B: int, like: torch.Tensor) -> torch.Tensor:
    """Incoming dC/da_T: (B, H) -> (H, B) contiguous, zeros if unused."""
    if d is None:
        return like.new_zeros(H, B)
    return d.t().contiguous()


# ----------------------------------------------------------------------------- Elman RNN
class ElmanFunction(torch.autograd.Function):
    """a_t = g(w_x . x_t + w_a . a_{t-1} + b_a), g = tanh or relu, for t = 1..T."""

    @staticmethod
    @_custom_fwd
    def forward(ctx, x, w_x, w_a, b_a, a0, relu: bool, batch_sizes):
        B, T, _ = x.shape
        H = w_a.shape[0]
        X, xp = _input_projection(x, w_x, b_a)  # xp: (H, T, B)
        hs = x.new_empty(H, T + 1, B)  # a_0 .. a_T
        hs[:, 0] = a0.t()
        for t in range(T):
            n = B if batch_sizes is None else batch_sizes[t]
            a = hs[:, t + 1, :n]
            # a_t = g(w_a . a_{t-1} + [w_x . x_t + b_a])
            torch.addmm(xp[:, t, :n], w_a, hs[:, t, :n], out=a)
            a.relu_() if relu else a.tanh_()
            if n < B:
                hs[:, t + 1, n:] = hs[:, t, n:]
        ctx.relu = relu
        ctx.batch_sizes = batch_sizes
        ctx.save_for_backward(X, w_x, w_a, hs)
        return _outputs(hs, batch_sizes), hs[:, T].t().contiguous()

    @staticmethod
    @_custom_bwd
    def backward(ctx, d_out, d_aT):
        X, w_x, w_a, hs = ctx.saved_tensors
        H, T1, B = hs.shape
        T = T1 - 1
        bs = ctx.batch_sizes
        dO = _grad_outputs(d_out, hs[:, 1:].transpose(0, 2))  # (H, T, B)
        da = _grad_state(d_aT, H, B, hs)  # dC/da_t, (H, B)
        D = hs.new_zeros(H, T, B) if bs is not None else hs.new_empty(H, T, B)  # dC/dz_t
        tmp = hs.new_empty(H, B)
        for t in range(T - 1, -1, -1):
            n = B if bs is None else bs[t]
            da_n, d, a = da[:, :n], D[:, t, :n], hs[:, t + 1, :n]
            da_n.add_(dO[:, t, :n])
            # dC/dz_t = dC/da_t * g'(z_t);  tanh' = 1 - a_t^2,  relu' = [a_t > 0]
            if ctx.relu:
                torch.mul(da_n, torch.sign(a), out=d)
            else:
                torch.mul(a, a, out=tmp[:, :n])
                torch.mul(da_n, tmp[:, :n], out=d)
                torch.sub(da_n, d, out=d)
            # dC/da_{t-1} = w_a^T . dC/dz_t    (the factor da_t/da_{t-1})
            torch.mm(w_a.t(), d, out=tmp[:, :n])
            da_n.copy_(tmp[:, :n])
        return _weight_grads(ctx, D, X, w_x, da, rec=[(w_a, D, hs[:, :T])]) + (None, None)


def _weight_grads(ctx, D, X, w_x, d_state, rec):
    """dC/dx, dC/dw_x, dC/dw_a..., dC/db, dC/da_0 from the per-step pre-activation
    gradients D (G, T, B): the sums over t become one matrix product each."""
    G, T, B = D.shape
    need = ctx.needs_input_grad
    Dm = D.reshape(G, T * B)
    dx = dw_x = db = None
    if need[0]:
        # dC/dx_t = w_x^T . dC/dz_t                                  (T*B, I) -> (B, T, I)
        dx = torch.mm(Dm.t(), w_x).view(T, B, -1).transpose(0, 1)
    if need[1]:
        # dC/dw_x = sum_t dC/dz_t . x_t^T
        dw_x = torch.mm(Dm, X)
    rec_grads = []
    for k, (_, Dk, right) in enumerate(rec):
        if need[2 + k]:
            # dC/dw_a = sum_t dC/dz_t . a_{t-1}^T  (right: (H_in, T, B))
            rec_grads.append(torch.mm(Dk.reshape(Dk.shape[0], T * B), right.reshape(right.shape[0], T * B).t()))
        else:
            rec_grads.append(None)
    if need[2 + len(rec)]:
        db = Dm.sum(1)  # dC/db = sum_t dC/dz_t
    states = d_state if isinstance(d_state, tuple) else (d_state,)
    # dC/da_0: what is left of the backward recursion, back to (B, H)
    return (dx, dw_x, *rec_grads, db) + tuple(s.t() for s in states)


# ----------------------------------------------------------------------------- LSTM
class LSTMFunction(torch.autograd.Function):
    """The lecture's LSTM; stacked gate rows in the order (i, f, o, g):

        a^(i), a^(f), a^(o) = sigmoid(w . x_t + W . a^(h)_{t-1} + b)
        a^(g)               = tanh(w^(g) . x_t + w^(G) . a^(h)_{t-1} + b^(g))
        a^(c)_t = a^(f)_t * a^(c)_{t-1} + a^(i)_t * a^(g)_t
        a^(h)_t = a^(o)_t * tanh(a^(c)_t)
    """

    @staticmethod
    @_custom_fwd
    def forward(ctx, x, w_x, w_a, b, h0, c0, batch_sizes):
        B, T, _ = x.shape
        H = w_a.shape[1]
        X, xp = _input_projection(x, w_x, b)  # xp: (4H, T, B)
        Gs = x.new_empty(4 * H, T, B)  # activated gates per step
        hs = x.new_empty(H, T + 1, B)  # a^(h)_0 .. a^(h)_T
        cs = x.new_empty(H, T + 1, B)  # a^(c)_0 .. a^(c)_T
        tc = x.new_empty(H, T, B)  # tanh(a^(c)_t)
        hs[:, 0] = h0.t()
        cs[:, 0] = c0.t()
        for t in range(T):
            n = B if batch_sizes is None else batch_sizes[t]
            g = Gs[:, t, :n]  # (4H, n)
            torch.addmm(xp[:, t, :n], w_a, hs[:, t, :n], out=g)
            g[: 3 * H].sigmoid_()  # a^(i), a^(f), a^(o)
            g[3 * H :].tanh_()  # a^(g)
            i, f, o, gg = g[:H], g[H : 2 * H], g[2 * H : 3 * H], g[3 * H :]
            c = cs[:, t + 1, :n]
            # a^(c)_t = a^(f)_t * a^(c)_{t-1} + a^(i)_t * a^(g)_t
            torch.mul(f, cs[:, t, :n], out=c)
            c.addcmul_(i, gg)
            # a^(h)_t = a^(o)_t * tanh(a^(c)_t)
            torch.tanh(c, out=tc[:, t, :n])
            torch.mul(o, tc[:, t, :n], out=hs[:, t + 1, :n])
            if n < B:
                hs[:, t + 1, n:] = hs[:, t, n:]
                cs[:, t + 1, n:] = cs[:, t, n:]
        ctx.batch_sizes = batch_sizes
        ctx.save_for_backward(X, w_x, w_a, Gs, hs, cs, tc)
        return _outputs(hs, batch_sizes), hs[:, T].t().contiguous(), cs[:, T].t().contiguous()

    @staticmethod
    @_custom_bwd
    def backward(ctx, d_out, d_hT, d_cT):
        X, w_x, w_a, Gs, hs, cs, tc = ctx.saved_tensors
        H, T1, B = hs.shape
        T = T1 - 1
        bs = ctx.batch_sizes
        dO = _grad_outputs(d_out, tc.transpose(0, 2))
        dh = _grad_state(d_hT, H, B, hs)  # dC/da^(h)_t
        dc = _grad_state(d_cT, H, B, hs)  # dC/da^(c)_t
        D = hs.new_zeros(4 * H, T, B) if bs is not None else hs.new_empty(4 * H, T, B)
        tmp = hs.new_empty(H, B)
        tmp3 = hs.new_empty(3 * H, B)
        wT = w_a.t()
        for t in range(T - 1, -1, -1):
            n = B if bs is None else bs[t]
            dh_n, dc_n, u = dh[:, :n], dc[:, :n], tmp[:, :n]
            g, d, tct = Gs[:, t, :n], D[:, t, :n], tc[:, t, :n]
            i, f, o, gg = g[:H], g[H : 2 * H], g[2 * H : 3 * H], g[3 * H :]
            di, df, do, dg = d[:H], d[H : 2 * H], d[2 * H : 3 * H], d[3 * H :]
            dh_n.add_(dO[:, t, :n])
            # dC/da^(c)_t += dC/da^(h)_t * a^(o)_t * (1 - tanh^2(a^(c)_t))
            torch.mul(dh_n, o, out=u)
            dc_n.add_(u)
            u.mul_(tct)
            dc_n.addcmul_(u, tct, value=-1)
            # gradients of the gates (after their activation)
            torch.mul(dh_n, tct, out=do)  # dC/da^(o) = dC/da^(h) * tanh(a^(c))
            torch.mul(dc_n, gg, out=di)  # dC/da^(i) = dC/da^(c) * a^(g)
            torch.mul(dc_n, cs[:, t, :n], out=df)  # dC/da^(f) = dC/da^(c) * a^(c)_{t-1}
            torch.mul(dc_n, i, out=dg)  # dC/da^(g) = dC/da^(c) * a^(i)
            # through the activations: sigmoid' = s (1 - s), tanh' = 1 - a^2
            s, v = g[: 3 * H], tmp3[:, :n]
            torch.mul(s, s, out=v)
            torch.sub(s, v, out=v)
            d[: 3 * H].mul_(v)
            torch.mul(gg, gg, out=u)
            dg.addcmul_(dg, u, value=-1)
            # dC/da^(c)_{t-1} = dC/da^(c)_t * a^(f)_t
            dc_n.mul_(f)
            # dC/da^(h)_{t-1} = W^T . dC/dz_t  (all four gates' recurrent weights)
            torch.mm(wT, d, out=u)
            dh_n.copy_(u)
        return _weight_grads(ctx, D, X, w_x, (dh, dc), rec=[(w_a, D, hs[:, :T])]) + (None,)


# ----------------------------------------------------------------------------- GRU
class GRUFunction(torch.autograd.Function):
    """The lecture's GRU (reset before the recurrent product), gate rows (z, r, g):

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
        X, xp = _input_projection(x, w_x, b)  # xp: (3H, T, B) rows (z, r, g)
        Gs = x.new_empty(3 * H, T, B)  # a^(z), a^(r), a^(g) per step
        hs = x.new_empty(H, T + 1, B)
        rh = x.new_empty(H, T, B)  # a^(r)_t * a^(h)_{t-1}
        tmp = x.new_empty(H, B)
        hs[:, 0] = h0.t()
        for t in range(T):
            n = B if batch_sizes is None else batch_sizes[t]
            g, h = Gs[:, t, :n], hs[:, t, :n]
            z, r, gg = g[:H], g[H : 2 * H], g[2 * H :]
            # a^(z), a^(r) = sigmoid(w . x_t + W . a^(h)_{t-1} + b)
            torch.addmm(xp[: 2 * H, t, :n], w_zr, h, out=g[: 2 * H])
            g[: 2 * H].sigmoid_()
            # a^(g)_t = tanh(w^(g) . x_t + w^(G) . (a^(r)_t * a^(h)_{t-1}) + b^(g))
            torch.mul(r, h, out=rh[:, t, :n])
            torch.addmm(xp[2 * H :, t, :n], w_G, rh[:, t, :n], out=gg)
            gg.tanh_()
            # a^(h)_t = (1 - a^(z)) * a^(h)_{t-1} + a^(z) * a^(g)  =  a_{t-1} + a^(z) (a^(g) - a_{t-1})
            torch.sub(gg, h, out=tmp[:, :n])
            torch.addcmul(h, z, tmp[:, :n], out=hs[:, t + 1, :n])
            if n < B:
                hs[:, t + 1, n:] = hs[:, t, n:]
        ctx.batch_sizes = batch_sizes
        ctx.save_for_backward(X, w_x, w_zr, w_G, Gs, hs, rh)
        return _outputs(hs, batch_sizes), hs[:, T].t().contiguous()

    @staticmethod
    @_custom_bwd
    def backward(ctx, d_out, d_hT):
        X, w_x, w_zr, w_G, Gs, hs, rh = ctx.saved_tensors
        H, T1, B = hs.shape
        T = T1 - 1
        bs = ctx.batch_sizes
        dO = _grad_outputs(d_out, rh.transpose(0, 2))
        dh = _grad_state(d_hT, H, B, hs)
        D = hs.new_zeros(3 * H, T, B) if bs is not None else hs.new_empty(3 * H, T, B)
        tmp, drh = hs.new_empty(H, B), hs.new_empty(H, B)
        tmp2 = hs.new_empty(2 * H, B)
        for t in range(T - 1, -1, -1):
            n = B if bs is None else bs[t]
            dh_n, u, v = dh[:, :n], tmp[:, :n], drh[:, :n]
            g, d, h = Gs[:, t, :n], D[:, t, :n], hs[:, t, :n]
            z, r, gg = g[:H], g[H : 2 * H], g[2 * H :]
            dz, dr, dg = d[:H], d[H : 2 * H], d[2 * H :]
            dh_n.add_(dO[:, t, :n])
            # dC/dz_g = dC/da_t * a^(z) * (1 - a^(g)^2)
            torch.mul(dh_n, z, out=dg)
            torch.mul(gg, gg, out=u)
            dg.addcmul_(dg, u, value=-1)
            # dC/da^(z) = dC/da_t * (a^(g) - a_{t-1})
            torch.sub(gg, h, out=dz)
            dz.mul_(dh_n)
            # dC/d(a^(r) * a_{t-1}) = w^(G)^T . dC/dz_g ;  dC/da^(r) = that * a_{t-1}
            torch.mm(w_G.t(), dg, out=v)
            torch.mul(v, h, out=dr)
            # through the sigmoids of z and r
            s, q = g[: 2 * H], tmp2[:, :n]
            torch.mul(s, s, out=q)
            torch.sub(s, q, out=q)
            d[: 2 * H].mul_(q)
            # dC/da_{t-1} = dC/da_t * (1 - a^(z)) + (w^(G)^T dC/dz_g) * a^(r) + W_zr^T . dC/dz_zr
            torch.mul(dh_n, z, out=u)
            dh_n.sub_(u)
            dh_n.addcmul_(v, r)
            dh_n.addmm_(w_zr.t(), d[: 2 * H])
        return _weight_grads(
            ctx, D, X, w_x, dh, rec=[(w_zr, D[: 2 * H], hs[:, :T]), (w_G, D[2 * H :], rh)]
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
        Gs = x.new_empty(3 * H, T, B)  # rows (g, z, r) after activation
        HP = x.new_empty(3 * H, T, B)  # W . a_{t-1} (+ b^(G) on the G rows), rows (z, r, G)
        hs = x.new_empty(H, T + 1, B)
        tmp = x.new_empty(H, B)
        bias_h = torch.cat([b_G.new_zeros(2 * H), b_G])[:, None]
        hs[:, 0] = h0.t()
        for t in range(T):
            n = B if batch_sizes is None else batch_sizes[t]
            g, hp, h = Gs[:, t, :n], HP[:, t, :n], hs[:, t, :n]
            gg, z, r = g[:H], g[H : 2 * H], g[2 * H :]
            torch.addmm(bias_h, w_a, h, out=hp)
            torch.add(xp[H:, t, :n], hp[: 2 * H], out=g[H:])
            g[H:].sigmoid_()
            torch.mul(r, hp[2 * H :], out=gg)
            gg.add_(xp[:H, t, :n])
            gg.tanh_()
            torch.sub(gg, h, out=tmp[:, :n])
            torch.addcmul(h, z, tmp[:, :n], out=hs[:, t + 1, :n])
            if n < B:
                hs[:, t + 1, n:] = hs[:, t, n:]
        ctx.batch_sizes = batch_sizes
        ctx.save_for_backward(X, w_x, w_a, Gs, HP, hs)
        return _outputs(hs, batch_sizes), hs[:, T].t().contiguous()

    @staticmethod
    @_custom_bwd
    def backward(ctx, d_out, d_hT):
        X, w_x, w_a, Gs, HP, hs = ctx.saved_tensors
        H, T1, B = hs.shape
        T = T1 - 1
        bs = ctx.batch_sizes
        dO = _grad_outputs(d_out, HP[:H].transpose(0, 2))
        dh = _grad_state(d_hT, H, B, hs)
        # D rows: (dz_g, dz_z, dz_r, d hp_G): x side uses rows 0:3H, recurrent side H:4H
        D = hs.new_zeros(4 * H, T, B) if bs is not None else hs.new_empty(4 * H, T, B)
        tmp = hs.new_empty(H, B)
        tmp2 = hs.new_empty(2 * H, B)
        wT = w_a.t()
        for t in range(T - 1, -1, -1):
            n = B if bs is None else bs[t]
            dh_n, u = dh[:, :n], tmp[:, :n]
            g, hp, d, h = Gs[:, t, :n], HP[:, t, :n], D[:, t, :n], hs[:, t, :n]
            gg, z, r = g[:H], g[H : 2 * H], g[2 * H :]
            dg, dz, dr, dhp = d[:H], d[H : 2 * H], d[2 * H : 3 * H], d[3 * H :]
            dh_n.add_(dO[:, t, :n])
            torch.mul(dh_n, z, out=dg)
            torch.mul(gg, gg, out=u)
            dg.addcmul_(dg, u, value=-1)  # dC/dz_g
            torch.sub(gg, h, out=dz)
            dz.mul_(dh_n)  # dC/da^(z)
            torch.mul(dg, hp[2 * H :], out=dr)  # dC/da^(r) = dC/dz_g * (w^(G) a + b^(G))
            torch.mul(dg, r, out=dhp)  # dC/d(w^(G) a + b^(G)) = dC/dz_g * a^(r)
            s, q = g[H:], tmp2[:, :n]
            torch.mul(s, s, out=q)
            torch.sub(s, q, out=q)
            d[H : 3 * H].mul_(q)
            torch.mul(dh_n, z, out=u)
            dh_n.sub_(u)
            dh_n.addmm_(wT, d[H:])
        need_bG = ctx.needs_input_grad[4]
        d_bG = D[3 * H :].reshape(H, T * B).sum(1) if need_bG else None
        grads = _weight_grads(ctx, D[: 3 * H], X, w_x, dh, rec=[(w_a, D[H:], hs[:, :T])])
        # grads = (dx, dw_x, dw_a, db, dh0): insert d b^(G) before dh0
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
