r"""Backpropagation through time (BPTT) by hand, in NumPy.

This file is the lecture's "Recurrent Networks" and "Backpropogation Through Time"
sections written out with arrays, with no autograd anywhere: the forward pass keeps every
activation, and the backward pass is the lecture's chain-rule sum.

Model (lecture notation, time is 1-based)
----------------------------------------
Items i = 1..n; item i is a sequence x_{i,1}, ..., x_{i,t_i} of m features. A batch is
padded to T = max_i t_i and is given as ``x`` of shape (n, T, m) with ``lengths`` = (t_i).

An Elman network with L >= 1 stacked recurrent layers (layer l = 1..L is index l-1 of the
lists ``w_x``, ``w_a``, ``b_a``):

    a^(l)_0 = 0,        a^(0)_t = x_t
    a^(l)_t = g(w^(a)_l . a^(l)_{t-1} + w^(x)_l . a^(l-1)_t + b^(a)_l)       t = 1..t_i

(the lecture: a_{t+1} = g(w^(a) . a_t + w^(x) . x_{t+1} + b^(a)), and with several layers
a^(l)_{t+1} = g(w^(l) . a^(l)_t + w^(l-1) . a^(l-1)_{t+1} + b^(l))). Shapes:
w^(x)_l (H_l, I_l) with I_1 = m, I_l = H_{l-1}; w^(a)_l (H_l, H_l); b^(a)_l (H_l,).
The hidden activation g is "tanh" (default), "relu" or "sigmoid".

Padded steps t > t_i leave the state alone, a_t = a_{t-1}; they produce no output, no
cost and receive no gradient, so the values of x there never matter.

Output, either one unit at the end of each item or one per step:

    output="last":      o_i = g_o(w^(o) . a^(L)_{t_i} + b^(o))        (the item's OWN t_i)
    output="sequence":  o_t = g_o(w^(o) . a^(L)_t + b^(o))            t = 1..t_i

with w^(o) (O, H_L), b^(o) (O,).

Cost, per item, then the mean over items C = (1/n) sum_i C_i:

    loss="squared":        C_i = 1/2 sum_k (o_k - y_k)^2,   g_o in {identity, sigmoid, tanh}
    loss="cross_entropy":  C_i = -log o_{y},  g_o = softmax,  y an integer class index

For ``output="sequence"`` C_i is the sum over the item's steps t = 1..t_i.

Backpropagation through time (lecture, one output unit at the end)
------------------------------------------------------------------
    dC_i/dw^(o) = dC_i/do_i do_i/dw^(o)
    dC_i/dw^(a) = dC_i/do_i do_i/da_{t_i} da_{t_i}/dw^(a)
                + dC_i/do_i do_i/da_{t_i} da_{t_i}/da_{t_i-1} da_{t_i-1}/dw^(a)
                + ...
                + dC_i/do_i do_i/da_{t_i} da_{t_i}/da_{t_i-1} ... da_2/da_1 da_1/dw^(a)

and the same with w^(x) (and b^(a)) in place of w^(a). ``bptt_literal`` forms each term
of this sum explicitly (O(T^2) Jacobian products). ``bptt`` computes the same sum in O(T)
by collecting the common prefixes: the error dC/da_t is accumulated backwards,

    dC/da_{t-1} = dC/da_t da_t/da_{t-1}  (+ the direct term of a cost at t-1),
    da_t/da_{t-1} = diag(g'(z_t)) w^(a)        where z_t = w^(a) a_{t-1} + w^(x) a^(l-1)_t + b^(a)

and down through the layers, dC/da^(l-1)_t += dC/da^(l)_t da^(l)_t/da^(l-1)_t with
da^(l)_t/da^(l-1)_t = diag(g'(z^(l)_t)) w^(x)_l; every weight gradient is the sum over time
dC/dW = sum_t dC/da_t da_t/dW.

Truncated BPTT (``truncate=k``): the gradient of a cost term at time s flows back at most
k steps, i.e. only the terms dC_s/da_s da_s/da_{s-1} ... da_{t+1}/da_t da_t/dW with
s - t < k are kept (for output="last", s = t_i). This equals autograd on a network whose
state a_{s-k} is detached, summed over the cost terms s. k >= T is the full gradient; k = 1
keeps only the direct terms da_s/dW. The output weights w^(o), b^(o) are never truncated.

Only NumPy is used here (``compare_with_autograd`` imports PyTorch lazily, as the
reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from seqlab.validation import fail

ACTIVATIONS = ("tanh", "relu", "sigmoid")
OUTPUTS = ("last", "sequence")
LOSSES = ("squared", "cross_entropy")
SQUARED_OUTPUT_ACTIVATIONS = ("identity", "sigmoid", "tanh")


# ---------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------


@dataclass
class ElmanParams:
    """Weights of an L-layer Elman network; list index l-1 holds lecture layer l.

    w_x[l] (H_l, I_l), w_a[l] (H_l, H_l), b_a[l] (H_l,), w_o (O, H_L), b_o (O,).
    The same container holds gradients (``bptt`` returns one)."""

    w_x: list[np.ndarray]
    w_a: list[np.ndarray]
    b_a: list[np.ndarray]
    w_o: np.ndarray
    b_o: np.ndarray

    @property
    def num_layers(self) -> int:
        return len(self.w_a)

    @property
    def input_size(self) -> int:
        return int(self.w_x[0].shape[1])

    @property
    def hidden_sizes(self) -> list[int]:
        return [int(w.shape[0]) for w in self.w_a]

    @property
    def output_size(self) -> int:
        return int(self.w_o.shape[0])

    def arrays(self) -> list[tuple[str, np.ndarray]]:
        """(name, array) in a fixed order: layer by layer w_x, w_a, b_a, then w_o, b_o."""
        out: list[tuple[str, np.ndarray]] = []
        for l in range(self.num_layers):
            out += [(f"w_x[{l}]", self.w_x[l]), (f"w_a[{l}]", self.w_a[l]), (f"b_a[{l}]", self.b_a[l])]
        return out + [("w_o", self.w_o), ("b_o", self.b_o)]

    def copy(self) -> "ElmanParams":
        return ElmanParams(
            w_x=[w.copy() for w in self.w_x],
            w_a=[w.copy() for w in self.w_a],
            b_a=[b.copy() for b in self.b_a],
            w_o=self.w_o.copy(),
            b_o=self.b_o.copy(),
        )

    def zeros_like(self) -> "ElmanParams":
        return ElmanParams(
            w_x=[np.zeros_like(w) for w in self.w_x],
            w_a=[np.zeros_like(w) for w in self.w_a],
            b_a=[np.zeros_like(b) for b in self.b_a],
            w_o=np.zeros_like(self.w_o),
            b_o=np.zeros_like(self.b_o),
        )

    def flatten(self) -> np.ndarray:
        """All parameters as one 1-D vector, in the order of ``arrays()``."""
        return np.concatenate([a.ravel() for _, a in self.arrays()])

    def unflatten(self, vector: np.ndarray) -> "ElmanParams":
        """A new ElmanParams of this one's shapes holding the values of ``vector``."""
        vector = np.asarray(vector)
        size = sum(a.size for _, a in self.arrays())
        if vector.ndim != 1 or vector.size != size:
            fail("vector", f"a 1-D array of {size} values", f"shape {_shape(vector)}")
        out = self.zeros_like()
        start = 0
        for _, a in out.arrays():
            a[...] = vector[start : start + a.size].reshape(a.shape)
            start += a.size
        return out


def init_params(
    input_size: int,
    hidden_sizes: list[int],
    output_size: int,
    rng: np.random.Generator,
    scale: float | None = None,
) -> ElmanParams:
    """Random float64 weights, uniform in [-s, s] with s = ``scale``, or, when ``scale`` is
    None, s = 1/sqrt(H_l) for layer l and 1/sqrt(H_L) for the output (PyTorch's nn.RNN)."""
    for name, v in (("input_size", input_size), ("output_size", output_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            fail(name, "an integer >= 1", repr(v))
    if not isinstance(hidden_sizes, (list, tuple)) or not hidden_sizes:
        fail("hidden_sizes", "a non-empty list of integers >= 1", repr(hidden_sizes))
    for h in hidden_sizes:
        if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1:
            fail("hidden_sizes", "a non-empty list of integers >= 1", repr(hidden_sizes))
    if not isinstance(rng, np.random.Generator):
        fail("rng", "a numpy.random.Generator", type(rng).__name__)
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0):
        fail("scale", "a number > 0 or None", repr(scale))

    def uniform(shape: tuple[int, ...], fan: int) -> np.ndarray:
        s = float(scale) if scale is not None else 1.0 / np.sqrt(fan)
        return rng.uniform(-s, s, size=shape)

    w_x, w_a, b_a = [], [], []
    fan_in = int(input_size)
    for h in hidden_sizes:
        h = int(h)
        w_x.append(uniform((h, fan_in), h))
        w_a.append(uniform((h, h), h))
        b_a.append(uniform((h,), h))
        fan_in = h
    return ElmanParams(w_x, w_a, b_a, uniform((int(output_size), fan_in), fan_in), uniform((int(output_size),), fan_in))


# ---------------------------------------------------------------------------------------
# Activations and their derivatives
# ---------------------------------------------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-z)), written so that exp never overflows
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _g(name: str, z: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "sigmoid":
        return _sigmoid(z)
    assert name == "identity", name
    return z


def _g_prime(name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """g'(z) for a = g(z), elementwise."""
    if name == "tanh":
        return 1.0 - a * a
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "sigmoid":
        return a * (1.0 - a)
    assert name == "identity", name
    return np.ones_like(z)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# ---------------------------------------------------------------------------------------
# Input validation (the public boundary)
# ---------------------------------------------------------------------------------------


def _shape(a: np.ndarray) -> str:
    return str(tuple(int(s) for s in a.shape))


def _check_params(params: object) -> ElmanParams:
    if not isinstance(params, ElmanParams):
        fail("params", "an ElmanParams", type(params).__name__)
    lists = {"w_x": params.w_x, "w_a": params.w_a, "b_a": params.b_a}
    for name, v in lists.items():
        if not isinstance(v, (list, tuple)):
            fail(f"params.{name}", "a list with one array per layer", type(v).__name__)
    n_layers = len(params.w_a)
    if n_layers < 1:
        fail("params.w_a", "at least one layer", "0 layers")
    for name, v in lists.items():
        if len(v) != n_layers:
            fail(f"params.{name}", f"{n_layers} arrays (one per layer, as w_a)", f"{len(v)} arrays")
    for name, a in params.arrays():
        if not isinstance(a, np.ndarray) or not np.issubdtype(a.dtype, np.floating):
            fail(f"params.{name}", "a floating-point numpy array", type(a).__name__ if not isinstance(a, np.ndarray) else f"dtype {a.dtype}")
        if not np.all(np.isfinite(a)):
            fail(f"params.{name}", "finite values", f"{int((~np.isfinite(a)).sum())} NaN or infinite value(s)")
    if params.w_x[0].ndim != 2:
        fail("params.w_x[0]", "a 2-D array (H_1, m)", f"shape {_shape(params.w_x[0])}")
    below = params.w_x[0].shape[1]  # I_l: size of a^(l-1)
    for l in range(n_layers):
        h = params.w_a[l].shape[0] if params.w_a[l].ndim >= 1 else 0
        expected = {f"w_a[{l}]": (h, h), f"w_x[{l}]": (h, below), f"b_a[{l}]": (h,)}
        got = {f"w_a[{l}]": params.w_a[l], f"w_x[{l}]": params.w_x[l], f"b_a[{l}]": params.b_a[l]}
        for name, shape in expected.items():
            if got[name].shape != shape or h < 1:
                fail(f"params.{name}", f"shape {shape}", f"shape {_shape(got[name])}")
        below = h
    if params.w_o.ndim != 2 or params.w_o.shape[1] != below or params.w_o.shape[0] < 1:
        fail("params.w_o", f"a 2-D array (O, H_L = {below})", f"shape {_shape(params.w_o)}")
    if params.b_o.shape != (params.w_o.shape[0],):
        fail("params.b_o", f"shape ({params.w_o.shape[0]},)", f"shape {_shape(params.b_o)}")
    return params


def _check_x(x: object, params: ElmanParams) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        fail("x", "a numpy array (n, T, m)", type(x).__name__)
    if x.ndim != 3:
        fail("x", "a 3-D array (n, T, m)", f"shape {_shape(x)}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        fail("x", "a real-valued array", f"dtype {x.dtype}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        fail("x", "at least one item and one time step (n >= 1, T >= 1)", f"shape {_shape(x)}")
    if x.shape[2] != params.input_size:
        fail("x", f"m = {params.input_size} features (w_x[0].shape[1])", f"{x.shape[2]} in shape {_shape(x)}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        fail("x", "finite values", f"{int((~np.isfinite(x)).sum())} NaN or infinite value(s)")
    return x


def _check_lengths(lengths: object, n: int, T: int) -> np.ndarray:
    if lengths is None:
        return np.full(n, T, dtype=np.int64)
    arr = np.asarray(lengths)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        fail("lengths", "a 1-D array of integers t_i", f"shape {_shape(arr)}, dtype {arr.dtype}")
    if arr.size != n:
        fail("lengths", f"one length per item ({n})", f"{arr.size} lengths")
    if arr.min() < 1:
        fail("lengths", "every t_i >= 1", f"minimum {int(arr.min())}")
    if arr.max() > T:
        fail("lengths", f"every t_i <= T = {T} (x's time axis)", f"maximum {int(arr.max())}")
    return arr.astype(np.int64)


def _check_names(output: object, loss: object, activation: object, output_activation: object) -> str:
    """Check the names; returns the output activation g_o (defaults filled in)."""
    for name, value, choices in (("output", output, OUTPUTS), ("loss", loss, LOSSES), ("activation", activation, ACTIVATIONS)):
        if value not in choices:
            fail(name, "one of " + ", ".join(repr(c) for c in choices), repr(value))
    if loss == "squared":
        g_o = "identity" if output_activation is None else output_activation
        if g_o not in SQUARED_OUTPUT_ACTIVATIONS:
            fail(
                "output_activation",
                "one of " + ", ".join(repr(c) for c in SQUARED_OUTPUT_ACTIVATIONS) + " with loss='squared'"
                + (" (softmax goes with loss='cross_entropy')" if g_o == "softmax" else ""),
                repr(g_o),
            )
        return g_o
    if output_activation not in (None, "softmax"):
        fail("output_activation", "'softmax' (or None) with loss='cross_entropy'", repr(output_activation))
    return "softmax"


def _check_y(y: object, *, n: int, T: int, O: int, mask: np.ndarray, output: str, loss: str) -> np.ndarray:
    if not isinstance(y, np.ndarray):
        fail("y", "a numpy array", type(y).__name__)
    if loss == "squared":
        shape = (n, O) if output == "last" else (n, T, O)
        dims = "(n, O)" if output == "last" else "(n, T, O)"
        if y.shape != shape:
            fail("y", f"shape {dims} = {shape} for output={output!r}, loss='squared'", f"shape {_shape(y)}")
        if not (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer)):
            fail("y", "a real-valued array", f"dtype {y.dtype}")
        y = y.astype(np.float64)
        valid = y if output == "last" else y[mask]
        if not np.all(np.isfinite(valid)):
            fail("y", "finite targets", f"{int((~np.isfinite(valid)).sum())} NaN or infinite value(s)")
        return y
    shape = (n,) if output == "last" else (n, T)
    dims = "(n,)" if output == "last" else "(n, T)"
    if y.shape != shape:
        fail("y", f"shape {dims} = {shape} of class indices for output={output!r}, loss='cross_entropy'", f"shape {_shape(y)}")
    if not np.issubdtype(y.dtype, np.integer):
        fail("y", "integer class indices", f"dtype {y.dtype}")
    valid = y if output == "last" else y[mask]  # padded steps' targets are ignored
    if valid.size and (valid.min() < 0 or valid.max() >= O):
        bad = valid[(valid < 0) | (valid >= O)]
        fail("y", f"class indices in [0, {O - 1}] (O = {O} outputs)", f"index {int(bad[0])}")
    return np.where(mask if output == "sequence" else True, y, 0).astype(np.int64)


def _check_truncate(truncate: object) -> int | None:
    if truncate is None:
        return None
    if isinstance(truncate, bool) or not isinstance(truncate, (int, np.integer)) or truncate < 1:
        fail("truncate", "None or an integer k >= 1", repr(truncate))
    return int(truncate)


# ---------------------------------------------------------------------------------------
# Forward pass
# ---------------------------------------------------------------------------------------


@dataclass
class ElmanCache:
    """Every activation of a forward pass, indexed by the lecture's 1-based time.

    a[l] (n, T+1, H_l) for l = 0..L: a[0][:, t] = x_t, a[l][:, 0] = a^(l)_0 = 0;
    z[l] (n, T+1, H_l) for l = 1..L: pre-activations (z[0] is None; z[l][:, 0] = 0 and
    padded steps hold 0); mask (n, T+1): mask[i, t] = (1 <= t <= t_i);
    z_o, o: output pre-activation and output, (n, O) for "last", (n, T, O) for "sequence"
    (row t-1 is time t; padded rows hold 0)."""

    a: list[np.ndarray]
    z: list[np.ndarray | None]
    mask: np.ndarray
    lengths: np.ndarray
    z_o: np.ndarray
    o: np.ndarray
    output: str
    activation: str
    output_activation: str


def _forward(params: ElmanParams, x: np.ndarray, lengths: np.ndarray, output: str, activation: str, g_o: str) -> ElmanCache:
    n, T, _ = x.shape  # x (n, T, m)
    L = params.num_layers
    # mask[i, t] = 1 <= t <= t_i                                   (n, T+1)
    mask = np.arange(T + 1)[None, :] <= lengths[:, None]
    mask[:, 0] = False
    # a^(0)_t = x_t, stored at lecture index t                      (n, T+1, m)
    a: list[np.ndarray] = [np.concatenate([np.zeros((n, 1, x.shape[2])), x], axis=1)]
    z: list[np.ndarray | None] = [None]
    for l in range(1, L + 1):
        a.append(np.zeros((n, T + 1, params.hidden_sizes[l - 1])))  # a^(l)_0 = 0
        z.append(np.zeros((n, T + 1, params.hidden_sizes[l - 1])))
    for t in range(1, T + 1):
        real = mask[:, t, None]  # (n, 1)
        for l in range(1, L + 1):
            w_x, w_a, b_a = params.w_x[l - 1], params.w_a[l - 1], params.b_a[l - 1]
            # a^(l)_t = g(w^(a) . a^(l)_{t-1} + w^(x) . a^(l-1)_t + b^(a))    (n, H_l)
            z_t = a[l][:, t - 1] @ w_a.T + a[l - 1][:, t] @ w_x.T + b_a
            # padded steps t > t_i: a_t = a_{t-1}
            a[l][:, t] = np.where(real, _g(activation, z_t), a[l][:, t - 1])
            z[l][:, t] = np.where(real, z_t, 0.0)
    if output == "last":
        # o_i = g_o(w^(o) . a_{t_i} + b^(o)) at the item's own last step       (n, O)
        a_last = a[L][np.arange(n), lengths]  # (n, H_L)
        z_o = a_last @ params.w_o.T + params.b_o
    else:
        # o_t = g_o(w^(o) . a_t + b^(o)), t = 1..t_i                           (n, T, O)
        z_o = (a[L][:, 1:] @ params.w_o.T + params.b_o) * mask[:, 1:, None]
    o = np.exp(_log_softmax(z_o)) if g_o == "softmax" else _g(g_o, z_o)
    if output == "sequence":
        o = o * mask[:, 1:, None]
    return ElmanCache(a, z, mask, lengths, z_o, o, output, activation, g_o)


def forward(
    params: ElmanParams,
    x: np.ndarray,
    lengths: np.ndarray | list[int] | None = None,
    *,
    output: str = "last",
    activation: str = "tanh",
    output_activation: str = "identity",
) -> ElmanCache:
    """Run the Elman network on ``x`` (n, T, m) and keep every activation (see ElmanCache).
    ``output_activation`` is g_o: "identity", "sigmoid", "tanh" or "softmax"."""
    params = _check_params(params)
    x = _check_x(x, params)
    lengths = _check_lengths(lengths, x.shape[0], x.shape[1])
    for name, value, choices in (("output", output, OUTPUTS), ("activation", activation, ACTIVATIONS)):
        if value not in choices:
            fail(name, "one of " + ", ".join(repr(c) for c in choices), repr(value))
    g_o_choices = SQUARED_OUTPUT_ACTIVATIONS + ("softmax",)
    if output_activation not in g_o_choices:
        fail("output_activation", "one of " + ", ".join(repr(c) for c in g_o_choices), repr(output_activation))
    return _forward(params, x, lengths, output, activation, output_activation)


# ---------------------------------------------------------------------------------------
# Cost and the error at the output
# ---------------------------------------------------------------------------------------


def _cost_and_output_error(cache: ElmanCache, y: np.ndarray, loss: str) -> tuple[float, np.ndarray]:
    """C = (1/n) sum_i C_i and dC/dz_o, the error at the output pre-activation
    z_o = w^(o) . a + b^(o), i.e. dC/do do/dz_o (zero on padded steps)."""
    n = cache.lengths.shape[0]
    seq = cache.output == "sequence"
    valid = cache.mask[:, 1:, None] if seq else np.ones((n, 1), dtype=bool)  # broadcasts on z_o
    if loss == "squared":
        # C_i = 1/2 sum (o - y)^2;  dC_i/do = o - y
        diff = np.where(valid, cache.o - y, 0.0)
        cost = 0.5 * float((diff**2).sum()) / n
        # dC/dz_o = (1/n) dC_i/do g_o'(z_o)
        dz_o = diff * _g_prime(cache.output_activation, cache.z_o, cache.o) / n
        return cost, dz_o
    # C_i = -log o_y with o = softmax(z_o);  dC_i/dz_o = o - onehot(y)
    log_o = _log_softmax(cache.z_o)
    log_o_y = np.take_along_axis(log_o, y[..., None], axis=-1)[..., 0]  # (n,) or (n, T)
    cost = -float(np.where(valid[..., 0], log_o_y, 0.0).sum()) / n
    onehot = np.zeros_like(cache.z_o)
    np.put_along_axis(onehot, y[..., None], 1.0, axis=-1)
    dz_o = np.where(valid, np.exp(log_o) - onehot, 0.0) / n
    return cost, dz_o


def _prepare(params, x, y, lengths, output, loss, activation, output_activation, truncate):
    params = _check_params(params)
    g_o = _check_names(output, loss, activation, output_activation)
    x = _check_x(x, params)
    n, T, _ = x.shape
    lengths = _check_lengths(lengths, n, T)
    truncate = _check_truncate(truncate)
    mask = (np.arange(1, T + 1)[None, :] <= lengths[:, None])  # (n, T), row t-1 is time t
    y = _check_y(y, n=n, T=T, O=params.output_size, mask=mask, output=output, loss=loss)
    cache = _forward(params, x, lengths, output, activation, g_o)
    return params, cache, y, truncate


# ---------------------------------------------------------------------------------------
# BPTT: the lecture's sum with the common prefixes collected, O(T)
# ---------------------------------------------------------------------------------------


def bptt(
    params: ElmanParams,
    x: np.ndarray,
    y: np.ndarray,
    lengths: np.ndarray | list[int] | None = None,
    *,
    output: str = "last",
    loss: str = "squared",
    activation: str = "tanh",
    output_activation: str | None = None,
    truncate: int | None = None,
) -> tuple[float, ElmanParams]:
    """Cost C = (1/n) sum_i C_i and its gradient with respect to every parameter.

    x (n, T, m); y (n, O) / (n, T, O) of targets for loss="squared" with output="last" /
    "sequence", (n,) / (n, T) of class indices for loss="cross_entropy" (targets at padded
    steps are ignored); lengths (n,) t_i in [1, T] or None (all T). output_activation is
    g_o: None means "identity" for the squared loss and "softmax" for cross-entropy.
    truncate=k keeps only the chain-rule terms that go back fewer than k steps."""
    params, cache, y, truncate = _prepare(params, x, y, lengths, output, loss, activation, output_activation, truncate)
    a, z, mask = cache.a, cache.z, cache.mask
    n, T = mask.shape[0], mask.shape[1] - 1
    L = params.num_layers
    grads = params.zeros_like()

    cost, dz_o = _cost_and_output_error(cache, y, loss)  # (n, O) or (n, T, O)

    # dC/da^(L)_t coming directly from the output at time t, lecture index t  (n, T+1, H_L)
    from_output = np.zeros_like(a[L])
    if output == "last":
        a_last = a[L][np.arange(n), cache.lengths]  # a_{t_i}  (n, H_L)
        # dC/dw^(o) = dC/do do/dw^(o),  dC/db^(o) = dC/do do/db^(o)
        grads.w_o += dz_o.T @ a_last
        grads.b_o += dz_o.sum(axis=0)
        # dC/da_{t_i} = dC/do do/da_{t_i} = dC/dz_o w^(o)
        from_output[np.arange(n), cache.lengths] = dz_o @ params.w_o
    else:
        # dC/dw^(o) = sum_t dC/do_t do_t/dw^(o)
        grads.w_o += np.einsum("nto,nth->oh", dz_o, a[L][:, 1:])
        grads.b_o += dz_o.sum(axis=(0, 1))
        # dC/da_t (direct) = dC/do_t do_t/da_t = dC/dz_o,t w^(o)
        from_output[:, 1:] = dz_o @ params.w_o

    # Truncation keeps the error split by age j = s - t (how many steps back from the cost
    # term at time s it has flowed): delta[l] has shape (K, n, H_l). Without truncation
    # the ages need not be told apart and K = 1.
    truncated = truncate is not None and truncate < T
    K = truncate if truncated else 1
    # delta[l-1]: dC/da^(l)_t arriving from time t+1 through da_{t+1}/da_t   (K, n, H_l)
    delta = [np.zeros((K, n, h)) for h in params.hidden_sizes]

    for t in range(T, 0, -1):
        real = mask[:, t, None]  # (n, 1): t <= t_i
        from_above = None  # dC/da^(l)_t through layer l+1 at the same time    (K, n, H_l)
        for l in range(L, 0, -1):
            w_x, w_a = params.w_x[l - 1], params.w_a[l - 1]
            d = delta[l - 1]  # (K, n, H_l)
            if l == L:
                # the cost term at time t enters with age 0
                d[0] += from_output[:, t]
            else:
                # dC/da^(l)_t += dC/da^(l+1)_t da^(l+1)_t/da^(l)_t
                d += from_above
            # dC/dz_t = dC/da_t da_t/dz_t = dC/da_t * g'(z_t); padded steps: no gradient
            g_prime = _g_prime(activation, z[l][:, t], a[l][:, t]) * real  # (n, H_l)
            dz = d * g_prime  # (K, n, H_l)
            dz_all = dz.sum(axis=0)  # all kept ages together      (n, H_l)
            # dC/dw^(a) += dC/da_t da_t/dw^(a) = dC/dz_t a_{t-1}^T          (H_l, H_l)
            grads.w_a[l - 1] += dz_all.T @ a[l][:, t - 1]
            # dC/dw^(x) += dC/da_t da_t/dw^(x) = dC/dz_t (a^(l-1)_t)^T       (H_l, I_l)
            grads.w_x[l - 1] += dz_all.T @ a[l - 1][:, t]
            # dC/db^(a) += dC/da_t da_t/db^(a) = dC/dz_t                     (H_l,)
            grads.b_a[l - 1] += dz_all.sum(axis=0)
            if l > 1:
                # da^(l)_t/da^(l-1)_t = diag(g'(z_t)) w^(x): down to the layer below, same age
                from_above = dz @ w_x  # (K, n, H_{l-1})
            # dC/da_{t-1} = dC/da_t da_t/da_{t-1}, da_t/da_{t-1} = diag(g'(z_t)) w^(a);
            # on a padded step a_t = a_{t-1}, so da_t/da_{t-1} = I (and dC/da_t = 0 there)
            back = dz @ w_a + d * ~real  # (K, n, H_l)
            if truncated:
                # one step older: age j -> j+1; terms reaching age k are dropped (s - t < k)
                back = np.concatenate([np.zeros_like(back[:1]), back[:-1]], axis=0)
            delta[l - 1] = back
    return cost, grads


# ---------------------------------------------------------------------------------------
# BPTT literally: each term of the lecture's sum as a product of Jacobians, O(T^2)
# ---------------------------------------------------------------------------------------


def _output_jacobian(g_o: str, z_o: np.ndarray, o: np.ndarray) -> np.ndarray:
    """do/dz_o for one output vector, an (O, O) matrix."""
    if g_o == "softmax":
        return np.diag(o) - np.outer(o, o)
    return np.diag(_g_prime(g_o, z_o, o))


def bptt_literal(
    params: ElmanParams,
    x: np.ndarray,
    y: np.ndarray,
    lengths: np.ndarray | list[int] | None = None,
    *,
    loss: str = "squared",
    activation: str = "tanh",
    output_activation: str | None = None,
    truncate: int | None = None,
) -> tuple[float, ElmanParams]:
    """The teaching version of ``bptt`` for ONE layer and output="last": every term

        dC_i/do_i do_i/da_{t_i} da_{t_i}/da_{t_i-1} ... da_{t+1}/da_t da_t/dW

    of the lecture's sum is formed as an explicit product of Jacobians and added, for
    W = w^(a), w^(x), b^(a) (and dC_i/dw^(o) = dC_i/do_i do_i/dw^(o)). Arguments as in
    ``bptt``; ``truncate=k`` drops the terms with t_i - t >= k. O(T^2) products: for
    small examples only."""
    params, cache, y, truncate = _prepare(params, x, y, lengths, "last", loss, activation, output_activation, truncate)
    if params.num_layers != 1:
        fail("params", "one recurrent layer for bptt_literal (use bptt for several)", f"{params.num_layers} layers")
    n = cache.lengths.shape[0]
    a_x, a, z = cache.a[0], cache.a[1], cache.z[1]  # (n, T+1, m), (n, T+1, H), (n, T+1, H)
    w_a, w_o = params.w_a[0], params.w_o
    H, O = w_a.shape[0], w_o.shape[0]
    g_o = cache.output_activation
    grads = params.zeros_like()
    cost, _ = _cost_and_output_error(cache, y, loss)
    eye_h = np.eye(H)

    def g_prime(i: int, t: int) -> np.ndarray:  # g'(z_t) for item i  (H,)
        return _g_prime(activation, z[i, t], a[i, t])

    for i in range(n):
        t_i = int(cache.lengths[i])
        o_i, z_o_i = cache.o[i], cache.z_o[i]  # (O,)
        # dC/dC_i = 1/n (C is the mean over items); dC_i/do_i   (O,)
        if loss == "squared":
            dC_do = (o_i - y[i]) / n
        else:
            dC_do = np.zeros(O)
            dC_do[y[i]] = -1.0 / o_i[y[i]] / n
        # do_i/dz_o (O, O);  do_i/da_{t_i} = do_i/dz_o w^(o)   (O, H)
        do_dz = _output_jacobian(g_o, z_o_i, o_i)
        do_da = do_dz @ w_o
        # do_i/dw^(o)[k, p, q] = do_i[k]/dz_o[p] a_{t_i}[q]   (O, O, H);  do_i/db^(o) = do_dz
        do_dwo = np.einsum("kp,q->kpq", do_dz, a[i, t_i])
        # dC_i/dw^(o) = dC_i/do_i do_i/dw^(o)
        grads.w_o += np.einsum("k,kpq->pq", dC_do, do_dwo)
        grads.b_o += dC_do @ do_dz
        for t in range(t_i, 0, -1):
            if truncate is not None and t_i - t >= truncate:
                break
            # dC_i/do_i do_i/da_{t_i} da_{t_i}/da_{t_i-1} ... da_{t+1}/da_t     (H,)
            chain = dC_do @ do_da
            for s in range(t_i, t, -1):
                # da_s/da_{s-1} = diag(g'(z_s)) w^(a)                            (H, H)
                chain = chain @ (np.diag(g_prime(i, s)) @ w_a)
            gp = g_prime(i, t)
            # da_t/dw^(a)[h, p, q] = g'(z_t)[h] [h = p] a_{t-1}[q]                (H, H, H)
            da_dwa = np.einsum("hp,q->hpq", np.diag(gp), a[i, t - 1])
            # da_t/dw^(x)[h, p, q] = g'(z_t)[h] [h = p] x_t[q]                    (H, H, m)
            da_dwx = np.einsum("hp,q->hpq", np.diag(gp), a_x[i, t])
            # da_t/db^(a)[h, p] = g'(z_t)[h] [h = p]                              (H, H)
            da_db = np.diag(gp) @ eye_h
            # one term of the lecture's sum, for each W
            grads.w_a[0] += np.einsum("h,hpq->pq", chain, da_dwa)
            grads.w_x[0] += np.einsum("h,hpq->pq", chain, da_dwx)
            grads.b_a[0] += chain @ da_db
    return cost, grads


# ---------------------------------------------------------------------------------------
# Check against PyTorch autograd
# ---------------------------------------------------------------------------------------


def compare_with_autograd(
    seed: int = 0,
    *,
    hidden_sizes: list[int] | None = None,
    output: str = "sequence",
    loss: str = "squared",
    activation: str = "tanh",
    output_activation: str | None = None,
    truncate: int | None = None,
    variable_lengths: bool = True,
) -> float:
    """Max |bptt gradient - autograd gradient| over all parameters, on a random float64
    network and batch drawn from ``seed`` (sizes are random unless ``hidden_sizes`` is
    given). The PyTorch side is its own forward from the same equations; with
    ``truncate=k`` it sums, over the cost terms s, autograd of C_s on the network whose
    state a_{s-k} is detached."""
    import torch  # the reference only; bptt itself is NumPy

    rng = np.random.default_rng(seed)
    n, T, m, O = (int(v) for v in (rng.integers(2, 5), rng.integers(3, 7), rng.integers(2, 5), rng.integers(2, 5)))
    if hidden_sizes is None:
        hidden_sizes = [int(h) for h in rng.integers(2, 6, size=int(rng.integers(1, 3)))]
    params = init_params(m, list(hidden_sizes), O, rng, scale=0.8)
    x = rng.normal(size=(n, T, m))
    lengths = rng.integers(1, T + 1, size=n) if variable_lengths else np.full(n, T)
    lengths[0] = T
    if loss == "squared":
        y = rng.normal(size=(n, O) if output == "last" else (n, T, O))
    else:
        y = rng.integers(0, O, size=(n,) if output == "last" else (n, T))
    _, grads = bptt(params, x, y, lengths, output=output, loss=loss, activation=activation,
                    output_activation=output_activation, truncate=truncate)
    g_o = _check_names(output, loss, activation, output_activation)

    tp = params.copy()
    leaves = [torch.tensor(arr, dtype=torch.float64, requires_grad=True) for _, arr in tp.arrays()]
    L = len(hidden_sizes)
    w_x = [leaves[3 * l] for l in range(L)]
    w_a = [leaves[3 * l + 1] for l in range(L)]
    b_a = [leaves[3 * l + 2] for l in range(L)]
    w_o, b_o = leaves[-2], leaves[-1]
    xt = torch.tensor(x)
    lt = torch.tensor(lengths)
    g: Callable = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}[activation]

    def cost(source: int | None, cut: int | None) -> "torch.Tensor":
        """C, or with ``source`` = s only the cost terms at time s; the state a_cut is
        detached before step cut+1."""
        a = [torch.zeros(n, h, dtype=torch.float64) for h in hidden_sizes]
        total = torch.zeros((), dtype=torch.float64)
        for t in range(1, T + 1):
            real = (t <= lt)[:, None]
            if cut is not None and t - 1 == cut:
                a = [s.detach() for s in a]
            below = xt[:, t - 1]
            for l in range(L):
                new = g(a[l] @ w_a[l].T + below @ w_x[l].T + b_a[l])
                a[l] = torch.where(real, new, a[l])
                below = a[l]
            if output == "last":
                at_t = lt == t
            else:
                at_t = t <= lt
            if source is not None and t != source:
                continue
            zo = a[-1] @ w_o.T + b_o
            if loss == "squared":
                o = {"identity": lambda v: v, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[g_o](zo)
                target = torch.tensor(y if output == "last" else y[:, t - 1])
                c = 0.5 * ((o - target) ** 2).sum(dim=1)
            else:
                target = torch.tensor(y if output == "last" else y[:, t - 1])
                c = -torch.log_softmax(zo, dim=1).gather(1, target[:, None])[:, 0]
            total = total + torch.where(at_t, c, torch.zeros_like(c)).sum()
        return total / n

    if truncate is None or truncate >= T:
        cost(None, None).backward()
    else:
        for s in range(1, T + 1):
            c = cost(s, s - truncate)
            if c.requires_grad:
                c.backward()
    diff = 0.0
    for (_, mine), ref in zip(grads.arrays(), leaves):
        r = ref.grad.numpy() if ref.grad is not None else np.zeros_like(mine)
        diff = max(diff, float(np.abs(mine - r).max()))
    return diff
