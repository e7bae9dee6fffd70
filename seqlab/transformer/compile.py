"""Optional ``torch.compile`` behind a flag.

The house rule for fast paths: they sit behind a flag, and a test shows that both paths
agree (``tests/transformer/test_block.py``: a compiled block against the plain one).

    block = maybe_compile(TransformerBlock(config), enabled=args.compile)

``torch.compile`` is lazy: the module is traced and compiled on its first call (tens of
seconds on a CPU, for each new input shape), and a missing C++ compiler shows only
then. The model's input checks run in Python and break the graph there; the math of
the block is compiled.
"""

from __future__ import annotations

import torch
from torch import nn

from seqlab.validation import fail


def maybe_compile(module: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile(module)`` when ``enabled``, else ``module`` itself, unchanged.

    The compiled module shares the parameters of ``module`` (its state dict keys carry
    the prefix ``_orig_mod.``). Raises ``ValueError`` when ``enabled`` and this PyTorch
    has no ``torch.compile``."""
    if not isinstance(module, nn.Module):
        fail("module", "a torch.nn.Module", type(module).__name__)
    if not isinstance(enabled, bool):
        fail("enabled", "True or False", repr(enabled))
    if not enabled:
        return module
    compile_fn = getattr(torch, "compile", None)
    if not callable(compile_fn):
        fail("torch.compile", "a PyTorch that has torch.compile (>= 2.0; or pass enabled=False)",
             f"torch {torch.__version__} without it")
    try:
        return compile_fn(module)
    except RuntimeError as err:  # e.g. "Dynamo is not supported on Python 3.x+" in older releases
        fail("torch.compile", "a platform where torch.compile works (or pass enabled=False)", str(err))


__all__ = ["maybe_compile"]
