"""The ``seqlab`` command: one entry point, one module per verb.

Each verb module (``seqlab/cli/<module>.py``, listed in ``VERBS``) defines ``VERB`` (its
name on the command line), ``add_parser(subparsers, argv)`` and ``run(args) -> exit status``.
``seqlab train`` makes one sub-command per model family from the registry
(``seqlab.runs``), with flags generated from the family's dataclasses (``options.py``).

Errors a user can cause (bad options, bad files, bad data) print one line,
``seqlab: error: ...``, and exit with status 2; nothing is written over good files.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn, Sequence

# verb modules, in the order `seqlab --help` lists them
VERBS = ("tour", "train", "finetune", "sample", "evaluate", "attention", "fill", "classify", "unfold", "bptt",
         "gradflow", "hopfield", "boltzmann", "families")


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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
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
    except (ValueError, FileNotFoundError) as exc:  # bad input: one line, no traceback
        print(f"seqlab: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `seqlab ... | head`: the reader has gone
        sys.stderr.close()
        return 0


__all__ = ["Parser", "VERBS", "build_parser", "main"]
