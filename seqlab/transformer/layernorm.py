r"""Layer normalization, written by hand.

Lecture, "Transformers": "Layer normalization trick is used so that means and variances
of the units between attention layers and fully connected layers stay the same."
Each position's D units are standardised over the units (not over the batch), then
scaled and shifted by learned gamma and beta:

    mu_t      = (1/D) sum_j a_(t,j)
    sigma^2_t = (1/D) sum_j (a_(t,j) - mu_t)^2            biased variance, as nn.LayerNorm
    y_(t,j)   = (a_(t,j) - mu_t) / sqrt(sigma^2_t + eps) * gamma_j + beta_j

Code names: ``gamma`` (D,) (PyTorch's ``weight``), ``beta`` (D,) (PyTorch's ``bias``).

``fused=True`` computes the same equation with ``torch.nn.functional.layer_norm`` (one
kernel forward and one backward instead of a handful of elementwise ones; a test checks
that both paths agree).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.validation import check_float, check_int, check_tensor, fail, shape_str


class LayerNorm(nn.Module):
    """``LayerNorm(d, *, eps=1e-5, bias=True, fused=False)``; ``forward(x)`` normalises the
    last axis of x (..., d)."""

    def __init__(self, d: int, *, eps: float = 1e-5, bias: bool = True, fused: bool = False) -> None:
        super().__init__()
        self.d = check_int(d, "d", minimum=1)
        self.eps = check_float(eps, "eps", minimum=0.0, open_min=True)
        for name, value in (("bias", bias), ("fused", fused)):
            if not isinstance(value, bool):
                fail(name, "True or False", repr(value))
        self.fused = fused
        self.gamma = nn.Parameter(torch.ones(d))  # gamma: (D,)
        self.beta = nn.Parameter(torch.zeros(d)) if bias else None  # beta: (D,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x", floating=True, finite=True)
        if x.dim() < 1 or x.shape[-1] != self.d:
            fail("x", f"d = {self.d} features in the last axis", f"shape {shape_str(x)}")
        return self.forward_unchecked(x)

    def forward_unchecked(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without the input checks: the caller has checked the inputs."""
        if self.fused:
            return F.layer_norm(x, (self.d,), self.gamma, self.beta, self.eps)
        # mu_t = (1/D) sum_j a_(t,j)
        mu = x.mean(dim=-1, keepdim=True)  # (..., 1)
        # sigma^2_t = (1/D) sum_j (a_(t,j) - mu_t)^2
        centred = x - mu  # (..., D)
        var = (centred * centred).mean(dim=-1, keepdim=True)  # (..., 1)
        # y = (a - mu) / sqrt(sigma^2 + eps) * gamma + beta
        y = centred * torch.rsqrt(var + self.eps) * self.gamma  # (..., D)
        return y if self.beta is None else y + self.beta

    # -- PyTorch interop -----------------------------------------------------------------
    @staticmethod
    def map_from_torch(theirs: dict[str, torch.Tensor], config: object = None) -> dict[str, torch.Tensor]:
        """nn.LayerNorm state dict -> ours (pure)."""
        ours = {"gamma": theirs["weight"]}
        if theirs.get("bias") is not None:
            ours["beta"] = theirs["bias"]
        return ours

    @staticmethod
    def map_to_torch(ours: dict[str, torch.Tensor], config: object = None) -> dict[str, torch.Tensor]:
        theirs = {"weight": ours["gamma"]}
        if ours.get("beta") is not None:
            theirs["bias"] = ours["beta"]
        return theirs

    @classmethod
    def from_torch(cls, module: nn.Module) -> "LayerNorm":
        if not isinstance(module, nn.LayerNorm):
            fail("module", "a torch.nn.LayerNorm", type(module).__name__)
        if len(module.normalized_shape) != 1:
            fail("module", "normalized_shape of one axis (d,)", f"normalized_shape {tuple(module.normalized_shape)}")
        if not module.elementwise_affine:
            fail("module", "elementwise_affine=True", "elementwise_affine=False")
        ours = cls(module.normalized_shape[0], eps=module.eps, bias=module.bias is not None)
        ours = ours.to(device=module.weight.device, dtype=module.weight.dtype)
        with torch.no_grad():
            ours.load_state_dict(cls.map_from_torch({k: v.detach() for k, v in module.state_dict().items()}))
        return ours

    def to_torch(self) -> nn.LayerNorm:
        module = nn.LayerNorm(self.d, eps=self.eps, bias=self.beta is not None)
        module = module.to(device=self.gamma.device, dtype=self.gamma.dtype)
        with torch.no_grad():
            module.load_state_dict(self.map_to_torch({k: v.detach() for k, v in self.state_dict().items()}))
        return module

    def extra_repr(self) -> str:
        return f"d={self.d}, eps={self.eps}, bias={self.beta is not None}, fused={self.fused}"
