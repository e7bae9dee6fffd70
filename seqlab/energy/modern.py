r"""Modern continuous Hopfield network (Ramsauer et al. 2020, "Hopfield Networks is All
You Need"), from the paper's equations.

Orientation. The paper stacks the N stored patterns x_1 .. x_N in R^d as the *columns*
of X = (x_1, ..., x_N), a (d, N) matrix. seqlab stores them as the *rows* of ``X``, an
(N, d) tensor (batch first, like keys and values in ``seqlab.transformer``). So the
paper's X^T xi (the N similarities) is ``X @ xi`` here, and the paper's X p (a mix of
patterns) is ``p @ X``.

Equations (paper's notation, state xi in R^d, beta > 0):

    lse(beta, z) = beta^-1 log sum_i exp(beta z_i)                     log-sum-exp
    E(xi)   = -lse(beta, X^T xi) + 1/2 xi^T xi + beta^-1 log N + 1/2 M^2   energy
              M = max_i ||x_i||                                         (paper eq. 4)
    xi_new  = X softmax(beta X^T xi)                                    update (eq. 3)

The update is the concave-convex procedure on E, so E(xi_new) <= E(xi) (the paper's
Theorem 1 and 2). Read with queries xi, keys and values X, the update is one step of
scaled dot-product attention with scale beta:

    xi_new = softmax(beta xi X^T) X  =  attention(q = xi, k = X, v = X, scale = beta)

which is how the paper ties Hopfield networks to the Transformer's attention
(``seqlab.transformer.scaled_dot_product_attention``).

Regimes. A large beta * (separation of the patterns) retrieves a single stored pattern
in one update (exponentially small error, paper Theorem 4); a small beta makes the
softmax nearly uniform, and every state goes to the metastable average (1/N) sum_i x_i.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from seqlab.validation import check_float, check_int, check_tensor, fail, shape_str

__all__ = ["ModernHopfield", "capacity_curve", "lse"]


def _check_beta(beta: object) -> float:
    beta = check_float(beta, "beta", minimum=0.0, open_min=True)
    if math.isinf(beta):
        fail("beta", "a finite number > 0", beta)
    return beta


def lse(beta: float, z: torch.Tensor) -> torch.Tensor:
    """lse(beta, z) = beta^-1 log sum_i exp(beta z_i), over the last dim of z (..., N) -> (...)."""
    beta = _check_beta(beta)
    z = check_tensor(z, "z", floating=True, finite=True)
    if z.dim() < 1 or z.shape[-1] < 1:
        fail("z", "at least one value on the last dim (..., N)", f"shape {shape_str(z)}")
    return torch.logsumexp(beta * z, dim=-1) / beta  # (...)


class ModernHopfield(nn.Module):
    """Modern continuous Hopfield network with stored patterns ``X`` and inverse
    temperature ``beta``.

    patterns: (N, d) floating tensor, finite, one stored pattern x_i per **row** (the
    paper's X has them as columns; see the module docstring). beta: a finite number > 0.
    The patterns are kept as the buffer ``X`` (N, d); nothing is trained.
    """

    def __init__(self, patterns: torch.Tensor, beta: float):
        super().__init__()
        X = check_tensor(patterns, "patterns", ndim=2, dims="(N, d): one stored pattern per row",
                         floating=True, finite=True)
        if X.shape[0] < 1 or X.shape[1] < 1:
            fail("patterns", "at least one pattern of at least one value, shape (N, d)", f"shape {shape_str(X)}")
        self.beta = _check_beta(beta)
        self.register_buffer("X", X.detach().clone())  # (N, d)

    @property
    def N(self) -> int:
        """Number of stored patterns."""
        return self.X.shape[0]

    @property
    def d(self) -> int:
        """Width of a pattern and of the state xi."""
        return self.X.shape[1]

    @property
    def M(self) -> torch.Tensor:
        """M = max_i ||x_i||, the largest norm of a stored pattern (0-D tensor)."""
        return self.X.norm(dim=-1).max()

    def extra_repr(self) -> str:
        return f"N={self.N}, d={self.d}, beta={self.beta}"

    def _check_state(self, xi: object) -> torch.Tensor:
        xi = check_tensor(xi, "xi", ndim=(1, 2), dims="(d,) or (B, d)", floating=True, finite=True)
        if xi.shape[-1] != self.d:
            fail("xi", f"last dim d = {self.d} (the width of the stored patterns), shape (d,) or (B, d)",
                 f"shape {shape_str(xi)}")
        if xi.dtype != self.X.dtype:
            fail("xi", f"dtype {self.X.dtype} (the dtype of the patterns)", f"dtype {xi.dtype}")
        return xi

    def _update(self, xi: torch.Tensor) -> torch.Tensor:
        # beta X^T xi (paper): the similarity of the state to every stored pattern
        z = self.beta * (xi @ self.X.T)  # (..., d) @ (d, N) -> (..., N)
        p = torch.softmax(z, dim=-1)  # (..., N)
        # xi_new = X softmax(beta X^T xi)                    (paper eq. 3)
        return p @ self.X  # (..., N) @ (N, d) -> (..., d)

    def update(self, xi: torch.Tensor) -> torch.Tensor:
        """One update xi_new = X softmax(beta X^T xi). xi: (d,) or (B, d); returns the same shape."""
        return self._update(self._check_state(xi))

    def forward(self, xi: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`update`."""
        return self.update(xi)

    def retrieve(self, xi: torch.Tensor, steps: int = 1) -> torch.Tensor:
        """Apply the update ``steps`` >= 1 times. xi: (d,) or (B, d); returns the same shape."""
        xi = self._check_state(xi)
        steps = check_int(steps, "steps", minimum=1)
        for _ in range(steps):
            xi = self._update(xi)  # (..., d)
        return xi

    def energy(self, xi: torch.Tensor) -> torch.Tensor:
        """E(xi) = -lse(beta, X^T xi) + 1/2 xi^T xi + beta^-1 log N + 1/2 M^2.

        xi: (d,) or (B, d); returns a 0-D tensor or (B,). E >= 0 (paper, Lemma A1 bounds).
        """
        xi = self._check_state(xi)
        z = xi @ self.X.T  # X^T xi: (..., d) @ (d, N) -> (..., N)
        # E = -lse(beta, X^T xi) + 1/2 xi^T xi + beta^-1 log N + 1/2 M^2   (paper eq. 4)
        return (-lse(self.beta, z) + 0.5 * (xi * xi).sum(-1)
                + math.log(self.N) / self.beta + 0.5 * self.M ** 2)  # (...)


def capacity_curve(d: int, counts: Sequence[int], beta: float, flip: float = 0.2, trials: int = 1,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Fraction of patterns retrieved in one update, for each number of patterns in ``counts``.

    For each N in ``counts`` and each of ``trials`` draws: store N random +-1 patterns of
    width d (float64), flip round(flip * d) randomly chosen entries of *every* pattern,
    apply one update to all N corrupted states (one batch), and count pattern i as
    retrieved when sign(xi_new) equals x_i in every entry (a 0 entry counts as wrong).

    Returns a float64 tensor (len(counts),): retrieved / (N * trials) for each N.
    The classical Hebbian Hopfield network stores about 0.138 d such patterns.
    """
    d = check_int(d, "d", minimum=1)
    if isinstance(counts, (str, bytes)) or not isinstance(counts, Sequence) or len(counts) == 0:
        fail("counts", "a non-empty sequence of pattern counts N >= 1", repr(counts))
    counts = [check_int(n, "counts", minimum=1) for n in counts]
    beta = _check_beta(beta)
    flip = check_float(flip, "flip", minimum=0.0, maximum=1.0)
    trials = check_int(trials, "trials", minimum=1)
    n_flip = round(flip * d)
    out = torch.empty(len(counts), dtype=torch.float64)
    for j, N in enumerate(counts):
        hits = 0
        for _ in range(trials):
            X = torch.randint(0, 2, (N, d), generator=generator).to(torch.float64) * 2 - 1  # (N, d)
            # n_flip distinct positions per pattern: the first n_flip of a random permutation
            order = torch.rand(N, d, generator=generator).argsort(dim=-1)  # (N, d)
            sign = torch.ones(N, d, dtype=torch.float64)
            sign.scatter_(1, order[:, :n_flip], -1.0)
            xi = X * sign  # (N, d): corrupted copy of every pattern
            new = ModernHopfield(X, beta).update(xi)  # (N, d)
            hits += int((torch.sign(new) == X).all(dim=-1).sum())
        out[j] = hits / (N * trials)
    return out
