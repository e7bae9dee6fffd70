"""The ``seqlab`` command: one entry point, one module per verb.

Each verb module (``seqlab/cli/<module>.py``, listed in ``VERBS``) defines ``VERB`` (its
name on the command line), ``add_parser(subparsers, argv)`` and ``run(args) -> exit status``.
``seqlab train`` makes one sub-command per model family from the registry
(``seqlab.runs``), with flags generated from the family's dataclasses (``options.py``).

Errors a user can cause (bad options, bad files, bad data) print one line,
``seqlab: error: ...``, and exit with status 2; nothing is written over good files. Each verb
checks its output locations before it starts (``paths.py``); an ``OSError`` that gets through
anyway (a read-only folder, a full disk), and a request for more memory than there is, are
reported the same way. Ctrl-C, at any moment, prints ``seqlab: interrupted`` and exits with
status 130 (a training run first saves a checkpoint: ``seqlab.training.loop``).

This module is imported before ``main`` runs (by the ``seqlab`` script and ``python -m
seqlab``), so it imports nothing heavy: a Ctrl-C while PyTorch loads is inside ``main``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from typing import Callable, Iterator, NoReturn, Sequence

INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it

# verb modules, in the order `seqlab --help` lists them
VERBS = ("tour", "train", "finetune", "sample", "evaluate", "attention", "fill", "classify", "prompt", "rlhf",
         "inject", "translate", "caption", "transcribe", "speak", "read", "write", "play", "forecast", "unfold", "bptt",
         "gradflow", "hopfield", "boltzmann", "plot", "explore", "families")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``seqlab train lstm: error: ...``, with a
    pointer to ``--help``) and exit status 2. Flags are not abbreviated: with flags made from
    each family's options, a prefix would silently mean another family's flag (``--n`` of the
    image samplers read as a GPT's ``--no-cache``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def verb_modules():
    return [importlib.import_module(f"seqlab.cli.{name}") for name in VERBS]


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The whole parser. ``argv`` lets a verb tailor its options to what it is given (the
    sample options of the run named on the command line)."""
    from seqlab import __version__

    parser = Parser(prog="seqlab", description="Sequence and generative neural networks from the lecture's "
                    "equations.")
    parser.add_argument("--version", action="version", version=f"seqlab {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for module in verb_modules():
        module.add_parser(sub, list(argv))
    return parser


# --------------------------------------------------------------------------- Ctrl-C
#
# A KeyboardInterrupt raised inside an import does harm (seen with PyTorch 2.x, SciPy and
# Python 3.11, sending SIGINT at every 10 ms of a command): PyTorch swallows one raised while it
# imports NumPy and goes on without NumPy (the command did not stop); a C extension turned one
# into "ImportError: initialization failed" (a traceback); others aborted the process (exit
# status -6) or, escaping code run by ``exec`` of a string (as dataclasses are made), marked the
# interpreter so that it killed itself with SIGINT at exit (-2) whatever main returned. So a
# Ctrl-C that comes while a module is imported, or while seqlab starts (``_ctrl_c_held``), is
# noted and raised as soon as the import is over; and after one, seqlab ends with os._exit.

_MAIN_THREAD = threading.main_thread().ident
_exiting = False  # a Ctrl-C was caught by main: further ones are ignored while seqlab exits
_held = False  # seqlab is starting: a Ctrl-C is noted (``_pending``) and raised at the end
_importing = 0  # imports under way in the main thread (nested)
_pending = False
_real_import = None  # builtins.__import__ while ``main`` runs with ``_import_holding_ctrl_c``


def _on_sigint(signum: int, frame: object) -> None:
    """Ctrl-C raises KeyboardInterrupt, as Python's own handler does, except while seqlab
    starts or a module is imported (noted, raised right after), and once ``main`` has caught
    one (ignored, so that the exit stays one line). Not ignored from the first one on: code
    that swallows a KeyboardInterrupt would leave the command deaf to Ctrl-C."""
    global _pending
    if _exiting:
        return
    if _held or _importing:
        _pending = True
        return
    raise KeyboardInterrupt


def _raise_pending() -> None:
    global _pending
    if _pending and not _held and not _importing:
        _pending = False
        raise KeyboardInterrupt


def _import_holding_ctrl_c(name, globals=None, locals=None, fromlist=(), level=0):
    """``builtins.__import__`` with Ctrl-C held back while the import runs (main thread)."""
    global _importing
    if threading.get_ident() != _MAIN_THREAD:
        return _real_import(name, globals, locals, fromlist, level)
    _importing += 1
    try:
        return _real_import(name, globals, locals, fromlist, level)
    finally:
        _importing -= 1
        _raise_pending()


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Ctrl-C held back while seqlab starts (PyTorch and the verbs are imported, the command
    line is parsed: a second or two), then acted on."""
    global _held
    outer, _held = _held, True
    try:
        yield
    finally:
        _held = outer
    _raise_pending()


def _catch_ctrl_c() -> Callable[[], None] | None:
    """Install ``_on_sigint`` and the import hook (main thread only, and only over Python's
    default handler: a process started with Ctrl-C ignored keeps ignoring it); returns what
    puts the previous handler and ``__import__`` back, or None if nothing was installed."""
    global _exiting, _pending, _real_import
    import builtins

    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler or builtins.__import__ is _import_holding_ctrl_c:
        return None
    _exiting = _pending = False
    _real_import = builtins.__import__
    builtins.__import__ = _import_holding_ctrl_c
    signal.signal(signal.SIGINT, _on_sigint)

    def restore() -> None:
        if builtins.__import__ is _import_holding_ctrl_c:
            builtins.__import__ = _real_import
        signal.signal(signal.SIGINT, previous)

    return restore


def _report_interrupt(program: bool) -> int:
    """After a Ctrl-C: say so in one line; exit status 130. When seqlab is the program, any
    further Ctrl-C is ignored, and the process ends at once (``os._exit``, after flushing
    stdout and stderr): Python's own shutdown would run no code of seqlab's, and it can turn
    the exit status into a kill by SIGINT (see above)."""
    global _exiting
    _exiting = True
    if program:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    print("seqlab: interrupted", file=sys.stderr, flush=True)
    if program:
        os._exit(INTERRUPTED)
    return INTERRUPTED


def _memory_error(exc: BaseException) -> str | None:
    """The one-line message for a failed allocation (PyTorch's and NumPy's included), or None
    if ``exc`` is not one."""
    text = str(exc)
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or (
            isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())):
        import re

        m = re.search(r"allocate (?:memory: you tried to allocate )?([0-9.]+ ?[KMGTPE]?i?B|\d+ bytes)", text)
        need = f"a request for {m.group(1)}" if m else "an allocation that failed"
        return (f"memory: expected sizes whose tensors fit in this machine's memory (make the model, batch or "
                f"count smaller), received {need}")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``seqlab ARGV`` (default: the command line); returns the exit status: 0, 2 for bad
    input (one line on stderr), 130 after Ctrl-C. The first thing it does is take over Ctrl-C,
    so that even one pressed while PyTorch is being imported ends in one line."""
    global _exiting
    restore = _catch_ctrl_c()
    # without ``argv`` main is the program (the ``seqlab`` script, ``python -m seqlab``): after
    # a Ctrl-C it exits at once, and when it is done a late Ctrl-C is ignored; a caller that
    # passes ``argv`` (a test, a notebook) gets its handler back in every case
    program = argv is None and restore is not None
    try:
        try:
            with _ctrl_c_held():
                import numpy  # noqa: F401  (before PyTorch, which imports it in its C initialisation)
                import torch  # noqa: F401
            return _main(argv)
        except KeyboardInterrupt:
            return _report_interrupt(program)
    except KeyboardInterrupt:  # a second Ctrl-C in the instant before the first was reported
        return _report_interrupt(program)
    finally:
        if restore is not None:
            restore()  # the previous handler and __import__
            if program:  # seqlab is done: a Ctrl-C while Python shuts down changes nothing
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            _exiting = False


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with _ctrl_c_held():
            for module in verb_modules():
                prepare = getattr(module, "prepare_argv", None)
                if prepare is not None:
                    argv = prepare(argv)
            args, extra = build_parser(argv).parse_known_args(argv)
        # a command that cannot run as given (``complete=False``: no family named, a run whose
        # family lacks the verb) has its handler say why, rather than refuse the options after it
        if extra and getattr(args, "complete", True):
            hint = getattr(args, "hint", None) or f"seqlab {args.verb} --help"
            raise ValueError(f"{' '.join(extra)}: expected options listed by {hint}, received unrecognized "
                             f"argument(s)")
        return args.handler(args)
    except ValueError as exc:  # bad input: one line, no traceback
        return _error(str(exc))
    except BrokenPipeError:  # `seqlab ... | head`: the reader has gone
        sys.stderr.close()
        return 0
    except OSError as exc:  # a path that cannot be read or written (checked early where possible)
        from seqlab.paths import describe_os_error

        return _error(describe_os_error(exc))
    except (MemoryError, RuntimeError) as exc:
        message = _memory_error(exc)
        if message is None:
            raise
        return _error(message)


def _error(message: str) -> int:
    if "\n" in message:  # one line, whatever the message held
        message = " ".join(line.strip() for line in message.splitlines() if line.strip())
    print(f"seqlab: error: {message}", file=sys.stderr)
    return 2


__all__ = ["INTERRUPTED", "Parser", "VERBS", "build_parser", "main"]
