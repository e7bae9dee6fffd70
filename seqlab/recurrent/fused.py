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
   the incoming gradient are computed for all t at once before the loop where that
   saves per-step operations (Elman, GRU); the LSTM forms them inside the loop in small
   scratch buffers that are reused every step (measured faster on a CPU than its
   several large temporaries, which cost memory traffic and page faults).

Layout. The feature axis comes before the batch: a state is ``(H, B)``. Per-step
buffers are ``(T, features, B)`` (gates, cells), so a step's gates are a contiguous block
of rows (one ``sigmoid_`` covers every sigmoid gate); hidden states and the
pre-activation gradients D are ``(features, T, B)``, so that ``(features, T*B)`` is a view
and each sum over t is one matrix product without a copy.

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


def _steps(buffer: torch.Tensor, rows: slice = slice(None)) -> tuple[torch.Tensor, ...]:
    """Per-step views buffer[t, rows] of a (T, rows, B) buffer, made in one call: slicing
    inside the loop costs microseconds per view, comparable to a step's arithmetic."""
    return buffer[:, rows].unbind(0)


def _cols(v: torch.Tensor, n: int, B: int) -> torch.Tensor:
    """The first n columns (the items still running at this step)."""
    return v if n == B else v[..., :n]


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


def _weight_grads(ctx, D: torch.Tensor, x: torch.Tensor, w_x: torch.Tensor, d_state, rec,
                  x_rows: slice = slice(None)) -> tuple:
    """dC/dx, dC/dw_x, dC/dw_a..., dC/db, dC/da_0 from the per-step pre-activation
    gradients D (G, T, B); each sum over t is one matrix product.

    rec: [(rows of D for this recurrent matrix, its right operand (H_in, T, B))];
    x_rows: the rows of D that belong to the input side (w_x and b)."""
    G, T, B = D.shape
    need = ctx.needs_input_grad
    Dx = D[x_rows].reshape(-1, T * B)  # (G_x, T*B), columns ordered (t, b)
    dx = dw_x = db = None
    if need[0]:
        # dC/dx_t = w_x^T . dC/dz_t, as (T*B, I) rows (t, b) -> (B, T, I)
        dx = torch.mm(Dx.t(), w_x).view(T, B, -1).transpose(0, 1)
    if need[1]:
        # dC/dw_x = sum_t dC/dz_t . x_t^T
        dw_x = torch.mm(Dx, _inputs_by_time(x))
    rec_grads = []
    for k, (rows, right) in enumerate(rec):
        if need[2 + k]:
            # dC/dw_a = sum_t dC/dz_t . a_{t-1}^T
            rec_grads.append(torch.mm(D[rows].reshape(-1, T * B), right.reshape(right.shape[0], T * B).t()))
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
        xp = _input_projection(x, w_x, b_a)  # (T, H, B)
        hs = x.new_empty(H, T + 1, B)  # a_0 .. a_T
        hs[:, 0] = a0.t()
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
        a = hs[:, 1:]  # (H, T, B)
        # g'(z_t) for every t at once: tanh' = 1 - a_t^2, relu' = [a_t > 0]
        gprime = (a > 0).to(hs.dtype) if ctx.relu else _tanh_grad(a)
        da = _grad_state(d_aT, H, B, hs)
        da.add_(dO[T - 1])  # dC/da_T
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
class LSTMFunction(torch.autograd.Function):
    """The lecture's LSTM; stacked gate rows in the order (o, i, f, g):

        a^(o), a^(i), a^(f) = sigmoid(w . x_t + W . a^(h)_{t-1} + b)
        a^(g)               = tanh(w^(g) . x_t + w^(G) . a^(h)_{t-1} + b^(g))
        a^(c)_t = a^(f)_t * a^(c)_{t-1} + a^(i)_t * a^(g)_t
        a^(h)_t = a^(o)_t * tanh(a^(c)_t)

    (o, i, f, g) puts the three sigmoid gates next to each other.
    """

    @staticmethod
    @_custom_fwd
    def forward(ctx, x, w_x, w_a, b, h0, c0, batch_sizes):
        B, T, _ = x.shape
        H = w_a.shape[1]
        Gs = _input_projection(x, w_x, b)  # (T, 4H, B): w . x_t + b, then the gates in place
        hs = x.new_empty(H, T + 1, B)  # a^(h)_0 .. a^(h)_T
        cs = x.new_empty(T + 1, H, B)  # a^(c)_0 .. a^(c)_T
        tc = x.new_empty(T, H, B)  # tanh(a^(c)_t)
        hs[:, 0] = h0.t()
        cs[0] = c0.t()
        G_, S_, g_ = _steps(Gs), _steps(Gs, slice(0, 3 * H)), _steps(Gs, slice(3 * H, None))
        o_, i_, f_ = _steps(Gs, slice(0, H)), _steps(Gs, slice(H, 2 * H)), _steps(Gs, slice(2 * H, 3 * H))
        h_, c_, tc_ = hs.unbind(1), cs.unbind(0), tc.unbind(0)
        for t in range(T):
            n = B if batch_sizes is None else batch_sizes[t]
            if n < B:  # items that ended keep their state
                hs[:, t + 1, n:] = hs[:, t, n:]
                cs[t + 1, :, n:] = cs[t, :, n:]
            col = lambda v: _cols(v, n, B)  # noqa: E731
            c, tct = col(c_[t + 1]), col(tc_[t])
            g = col(G_[t])
            torch.addmm(g, w_a, col(h_[t]), out=g)  # + W . a^(h)_{t-1}
            col(S_[t]).sigmoid_()  # a^(o), a^(i), a^(f)
            col(g_[t]).tanh_()  # a^(g)
            # a^(c)_t = a^(f)_t * a^(c)_{t-1} + a^(i)_t * a^(g)_t
            torch.mul(col(f_[t]), col(c_[t]), out=c)
            c.addcmul_(col(i_[t]), col(g_[t]))
            # a^(h)_t = a^(o)_t * tanh(a^(c)_t)
            torch.tanh(c, out=tct)
            torch.mul(col(o_[t]), tct, out=col(h_[t + 1]))
        ctx.batch_sizes = batch_sizes
        ctx.save_for_backward(x, w_x, w_a, Gs, hs, cs, tc)
        return _outputs(hs, batch_sizes), hs[:, T].t().contiguous(), cs[T].t().contiguous()

    @staticmethod
    @_custom_bwd
    def backward(ctx, d_out, d_hT, d_cT):
        x, w_x, w_a, Gs, hs, cs, tc = ctx.saved_tensors
        H, T1, B = hs.shape
        T = T1 - 1
        bs = ctx.batch_sizes
        dO = _grad_outputs(d_out, T, H, B, hs, bs)
        dh = _grad_state(d_hT, H, B, hs)  # dC/da^(h)_t
        dc = _grad_state(d_cT, H, B, hs)  # dC/da^(c)_t
        dh.add_(dO[T - 1])
        D = hs.new_zeros(4 * H, T, B) if bs is not None else hs.new_empty(4 * H, T, B)  # dC/dz_t
        S = hs.new_empty(3 * H, B)  # sigmoid'(z) of o, i, f
        u = hs.new_empty(H, B)
        wT = w_a.t()
        S_, o_, i_, f_, g_ = (_steps(Gs, r) for r in (slice(0, 3 * H), slice(0, H), slice(H, 2 * H),
                                                         slice(2 * H, 3 * H), slice(3 * H, None)))
        tc_, c_ = tc.unbind(0), cs.unbind(0)
        d_, do_, di_, df_, dg_ = (D[r].unbind(1) for r in (slice(None), slice(0, H), slice(H, 2 * H),
                                                           slice(2 * H, 3 * H), slice(3 * H, None)))
        dS_ = D[: 3 * H].unbind(1)
        for t in range(T - 1, -1, -1):
            n = B if bs is None else bs[t]
            col = lambda v: _cols(v, n, B)  # noqa: E731
            dh_n, dc_n, u_n, S_n = col(dh), col(dc), col(u), col(S)
            o, i, f, gg, tct = col(o_[t]), col(i_[t]), col(f_[t]), col(g_[t]), col(tc_[t])
            # dC/da^(c)_t += dC/da^(h)_t * a^(o)_t * (1 - tanh^2(a^(c)_t))
            torch.mul(tct, tct, out=u_n)
            torch.addcmul(o, o, u_n, value=-1, out=u_n)
            dc_n.addcmul_(dh_n, u_n)
            # gradients of the gates after their activation ...
            torch.mul(dh_n, tct, out=col(do_[t]))  # dC/da^(o) = dC/da^(h) * tanh(a^(c))
            torch.mul(dc_n, gg, out=col(di_[t]))  # dC/da^(i) = dC/da^(c) * a^(g)
            torch.mul(dc_n, col(c_[t]), out=col(df_[t]))  # dC/da^(f) = dC/da^(c) * a^(c)_{t-1}
            # ... and before it: sigmoid' = s (1 - s)
            s3 = col(S_[t])
            torch.addcmul(s3, s3, s3, value=-1, out=S_n)
            col(dS_[t]).mul_(S_n)
            # dC/dz_g = dC/da^(c) * a^(i) * (1 - a^(g)^2)
            torch.mul(gg, gg, out=u_n)
            torch.addcmul(i, i, u_n, value=-1, out=u_n)
            torch.mul(dc_n, u_n, out=col(dg_[t]))
            # dC/da^(c)_{t-1} = dC/da^(c)_t * a^(f)_t
            dc_n.mul_(f)
            # dC/da^(h)_{t-1} = W^T . dC/dz_t (+ dC/d output_{t-1})
            dh = _recurrent_grad(dh, dO, wT, col(d_[t]), t, n, B)
        return _weight_grads(ctx, D, x, w_x, (dh, dc), rec=[(slice(None), hs[:, :T])]) + (None,)


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
        xp = _input_projection(x, w_x, b)  # (T, 3H, B) rows (g, z, r)
        Gs = x.new_empty(T, 3 * H, B)  # a^(g), a^(z), a^(r) per step
        hs = x.new_empty(H, T + 1, B)
        # a^(r)_t * a^(h)_{t-1}; zeros at padded steps, which enter the sum for dC/dw^(G)
        rh = x.new_zeros(H, T, B) if batch_sizes is not None else x.new_empty(H, T, B)
        tmp = x.new_empty(H, B)
        hs[:, 0] = h0.t()
        for t in range(T):
            n = B if batch_sizes is None else batch_sizes[t]
            g, h = Gs[t, :, :n], hs[:, t, :n]
            gg, z, r = g[:H], g[H : 2 * H], g[2 * H :]
            # a^(z), a^(r) = sigmoid(w . x_t + W . a^(h)_{t-1} + b)
            torch.addmm(xp[t, H:, :n], w_zr, h, out=g[H:])
            g[H:].sigmoid_()
            # a^(g)_t = tanh(w^(g) . x_t + w^(G) . (a^(r)_t * a^(h)_{t-1}) + b^(g))
            torch.mul(r, h, out=rh[:, t, :n])
            torch.addmm(xp[t, :H, :n], w_G, rh[:, t, :n], out=gg)
            gg.tanh_()
            # a^(h)_t = (1 - a^(z)) * a^(h)_{t-1} + a^(z) * a^(g)  =  a_{t-1} + a^(z) (a^(g) - a_{t-1})
            torch.sub(gg, h, out=tmp[:, :n])
            torch.addcmul(h, z, tmp[:, :n], out=hs[:, t + 1, :n])
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
        gg, z, r = Gs[:, :H], Gs[:, H : 2 * H], Gs[:, 2 * H :]
        h_prev = hs[:, :T].transpose(0, 1)  # (T, H, B) view
        # Factors for all t at once (a^(h)_t = a_{t-1} + a^(z) (a^(g) - a_{t-1})):
        #   dC/dz_g = dC/da_t * a^(z) * (1 - a^(g)^2)          = dh * P_g
        #   dC/dz_z = dC/da_t * (a^(g) - a_{t-1}) * sigmoid'(z_z) = dh * P_z
        #   dC/dz_r = [w^(G)^T . dC/dz_g] * a_{t-1} * sigmoid'(z_r) = v * P_r
        P_gz = torch.cat([z * _tanh_grad(gg), (gg - h_prev) * _sigmoid_grad(z)], dim=1).view(T, 2, H, B)
        P_r = h_prev * _sigmoid_grad(r)
        keep = 1 - z  # da_t/da_{t-1} directly: 1 - a^(z)
        dh = _grad_state(d_hT, H, B, hs)
        dh.add_(dO[T - 1])
        v = hs.new_empty(H, B)
        D = hs.new_zeros(3 * H, T, B) if bs is not None else hs.new_empty(3 * H, T, B)
        wGT, wzrT = w_G.t(), w_zr.t()
        for t in range(T - 1, -1, -1):
            n = B if bs is None else bs[t]
            dh_n, d, v_n = dh[:, :n], D[:, t, :n], v[:, :n]
            torch.mul(dh_n, P_gz[t, :, :, :n], out=d[: 2 * H].view(2, H, n))
            # dC/d(a^(r) * a_{t-1}) = w^(G)^T . dC/dz_g
            torch.mm(wGT, d[:H], out=v_n)
            torch.mul(v_n, P_r[t, :, :n], out=d[2 * H :])
            # dC/da_{t-1} = W_zr^T . dC/dz_zr + v * a^(r) + dC/da_t * (1 - a^(z)) (+ dC/do_{t-1})
            new = _recurrent_grad(dh, dO, wzrT, d[H:], t, n, B)
            new[:, :n].addcmul_(v_n, r[t, :, :n])
            new[:, :n].addcmul_(dh_n, keep[t, :, :n])
            dh = new
        return _weight_grads(
            ctx, D, x, w_x, dh, rec=[(slice(H, 3 * H), hs[:, :T]), (slice(0, H), rh)]
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
        xp = _input_projection(x, w_x, b)  # (T, 3H, B) rows (g, z, r)
        Gs = x.new_empty(T, 3 * H, B)  # rows (g, z, r) after activation
        HP = x.new_empty(T, 3 * H, B)  # W . a_{t-1} (+ b^(G) on the G rows), rows (z, r, G)
        hs = x.new_empty(H, T + 1, B)
        tmp = x.new_empty(H, B)
        bias_h = torch.cat([b_G.new_zeros(2 * H), b_G])[:, None]
        hs[:, 0] = h0.t()
        for t in range(T):
            n = B if batch_sizes is None else batch_sizes[t]
            g, hp, h = Gs[t, :, :n], HP[t, :, :n], hs[:, t, :n]
            gg, z, r = g[:H], g[H : 2 * H], g[2 * H :]
            torch.addmm(bias_h, w_a, h, out=hp)
            torch.add(xp[t, H:, :n], hp[: 2 * H], out=g[H:])
            g[H:].sigmoid_()
            torch.mul(r, hp[2 * H :], out=gg)
            gg.add_(xp[t, :H, :n])
            gg.tanh_()
            torch.sub(gg, h, out=tmp[:, :n])
            torch.addcmul(h, z, tmp[:, :n], out=hs[:, t + 1, :n])
            if n < B:
                hs[:, t + 1, n:] = hs[:, t, n:]
        ctx.batch_sizes = batch_sizes
        ctx.save_for_backward(x, w_x, w_a, Gs, HP, hs)
        return _outputs(hs, batch_sizes), hs[:, T].t().contiguous()

    @staticmethod
    @_custom_bwd
    def backward(ctx, d_out, d_hT):
        x, w_x, w_a, Gs, HP, hs = ctx.saved_tensors
        H, T1, B = hs.shape
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
        h_prev = hs[:, :T].transpose(0, 1)  # (T, H, B) view
        P = torch.cat([P_g, (gg - h_prev) * _sigmoid_grad(z), P_g * hp_G * _sigmoid_grad(r), P_g * r], dim=1)
        P = P.view(T, 4, H, B)
        keep = 1 - z
        dh = _grad_state(d_hT, H, B, hs)
        dh.add_(dO[T - 1])
        D = hs.new_zeros(4 * H, T, B) if bs is not None else hs.new_empty(4 * H, T, B)
        wT = w_a.t()
        for t in range(T - 1, -1, -1):
            n = B if bs is None else bs[t]
            dh_n, d = dh[:, :n], D[:, t, :n]
            torch.mul(dh_n, P[t, :, :, :n], out=d.view(4, H, n))
            # dC/da_{t-1} = W^T . dC/dz_(z, r, G) + dC/da_t * (1 - a^(z)) (+ dC/do_{t-1})
            new = _recurrent_grad(dh, dO, wT, d[H:], t, n, B)
            new[:, :n].addcmul_(dh_n, keep[t, :, :n])
            dh = new
        d_bG = D[3 * H :].sum((1, 2)) if ctx.needs_input_grad[4] else None  # dC/db^(G)
        grads = _weight_grads(ctx, D, x, w_x, dh, rec=[(slice(H, 4 * H), hs[:, :T])], x_rows=slice(0, 3 * H))
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
