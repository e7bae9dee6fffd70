"""The ``seqlab`` command: one entry point, one subcommand per job.

Errors a user can cause (bad options, bad files, bad data) print one line,
``seqlab: error: ...``, and exit with status 2; nothing is written over good files.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn

    return register


# --------------------------------------------------------------------------- unfold
@command("unfold")
def _unfold(args: argparse.Namespace) -> int:
    from seqlab.recurrent import unfold as uf

    result = uf.unfold(args.length, output=args.output, layers=args.layers, wrt=args.wrt)
    if args.png:
        uf.render_png(result, args.png)
    if args.json:
        print(json.dumps(uf.to_json(result)))
    else:
        print(uf.render_text(result))
        if args.png:
            print(f"wrote {args.png}")
    return 0


def _add_unfold(sub) -> None:
    p = sub.add_parser(
        "unfold",
        help="which weight copies one BPTT step uses for dC/dW",
        description="Unroll an Elman RNN over T steps and answer the lecture's question: which "
        "weights, including copies of the same weight, are used in one BPTT gradient step "
        "when computing dC/dW? The answer is read off the computation graph of the unrolled "
        "network.",
    )
    p.add_argument("--length", "-T", type=int, required=True, help="sequence length T (>= 1)")
    p.add_argument("--output", choices=["last", "sequence"], default="sequence",
                   help="one output at the end of the item, or one per step (default)")
    p.add_argument("--layers", type=int, default=1, help="stacked recurrent layers (default 1)")
    p.add_argument("--wrt", default="w_x",
                   help="the weight W: w_x, w_a, b_a, w_o or b_o (with several layers w_x[l] ...)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.add_argument("--png", metavar="FILE", help="also draw the unrolled network to a PNG")


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqlab",
        description="Sequence and generative neural networks from the lecture's equations.",
    )
    from seqlab import __version__

    parser.add_argument("--version", action="version", version=f"seqlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_unfold(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ValueError as exc:  # bad input: one line, no traceback
        print(f"seqlab: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"seqlab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
