"""Optional ``torch.compile`` behind a flag.

``compile_in_place(model)`` is what ``seqlab train --compile`` does for every family: the
model's forward is compiled in place (``nn.Module.compile``), so its state dict keeps its
names and checkpoints load with or without compile; a model the compiler cannot handle falls
back to its plain forward and says why in one line. ``maybe_compile`` wraps a module in
``torch.compile`` (an ``OptimizedModule``, whose state dict keys carry ``_orig_mod.``).

The house rule for fast paths: they sit behind a flag, and a test shows that both paths
agree (``tests/transformer/test_block.py``: a compiled block against the plain one).

    block = maybe_compile(TransformerBlock(config), enabled=args.compile)

``torch.compile`` is lazy: the module is traced and compiled on its first call (tens of
seconds on a CPU, for each new input shape), and a missing C++ compiler shows only
then. The model's input checks run in Python and break the graph there; the math of
the block is compiled.
"""

from __future__ import annotations

import logging
from typing import Callable

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


# the backend of ``compile_in_place`` (tests may use "aot_eager": the same tracing, no C++ build)
BACKEND = "inductor"


def _compile_error(err: BaseException) -> bool:
    """Whether ``err`` comes from torch.compile itself (tracing, the backend, the C++ build)
    rather than from the model's own code, which raises the same error compiled or not."""
    try:
        from torch._dynamo.exc import TorchDynamoException, UserError
    except ImportError:  # pragma: no cover - a PyTorch without dynamo
        return False
    if isinstance(err, TorchDynamoException) and not isinstance(err, UserError):
        return True
    return type(err).__module__.startswith(("torch._inductor", "torch._dynamo"))


def compile_in_place(module: nn.Module, *, backend: str | None = None,
                     on_fallback: Callable[[str], None] | None = None) -> str:
    """Compile ``module``'s forward with ``torch.compile``, in place (``nn.Module.compile``):
    the module keeps its class, its methods and its state dict keys (no ``_orig_mod.``
    prefix), so checkpoints written while compiled load without compile and the reverse.
    Only calls of the module itself (``module(x)``, as ``loss`` makes them) are compiled.

    Compilation is lazy (at the first call, again for each new input shape or mode). Should
    it fail there (the model traces into something the compiler refuses, no C++ compiler...),
    the module falls back to its plain forward for good, ``on_fallback(line)`` is told why
    in one line, and the call is made again uncompiled. Returns a one-line note of what was
    done. ``backend``: ``BACKEND`` (inductor) unless given."""
    if not isinstance(module, nn.Module):
        fail("module", "a torch.nn.Module", type(module).__name__)
    compile_fn = getattr(torch, "compile", None)
    if not callable(compile_fn) or not callable(getattr(module, "compile", None)):
        line = f"not compiled: torch {torch.__version__} has no torch.compile"
        if on_fallback is not None:
            on_fallback(line)
        return line
    backend = BACKEND if backend is None else backend
    # the input checks read values (ids.min(), isfinite().all()): dynamo runs them uncompiled (a graph
    # break) and would print an 18-line warning about it on the first step; the break is by design
    logging.getLogger("torch._dynamo.variables.tensor").setLevel(logging.ERROR)
    module.compile(backend=backend)  # sets module._compiled_call_impl; the state dict is unchanged
    compiled = module._compiled_call_impl
    if compiled is None:  # pragma: no cover - nn.Module.compile changed
        return "not compiled: nn.Module.compile did not install a compiled forward"

    def call(*args, **kwargs):
        try:
            return compiled(*args, **kwargs)
        except Exception as err:
            if not _compile_error(err):
                raise
            module._compiled_call_impl = None  # plain forward from now on
            cause = getattr(err, "inner_exception", None) or err.__cause__ or err  # the backend's own error
            text = str(cause).strip()
            reason = f"{type(cause).__name__}: {text.splitlines()[0][:200]}" if text else type(cause).__name__
            if on_fallback is not None:
                on_fallback(f"torch.compile failed for {type(module).__name__} ({reason}); "
                            "training goes on uncompiled")
            return module._call_impl(*args, **kwargs)

    module._compiled_call_impl = call
    return f"compiled with torch.compile (backend {backend}) at the first step"


def is_compiled(module: nn.Module) -> bool:
    """Whether ``module``'s calls go through a compiled forward (``compile_in_place``)."""
    return getattr(module, "_compiled_call_impl", None) is not None


__all__ = ["BACKEND", "compile_in_place", "is_compiled", "maybe_compile"]
