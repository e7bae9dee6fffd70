"""``seqlab unfold``: which weight copies one BPTT step uses for dC/dW (``seqlab.recurrent.unfold``)."""

from __future__ import annotations

import argparse
import json

VERB = "unfold"


def run(args: argparse.Namespace) -> int:
    from seqlab.paths import output_file
    from seqlab.recurrent import unfold as uf
    from seqlab.viz.recurrent import plot_unfold

    if args.png is not None:
        output_file(args.png, "--png")
    result = uf.unfold(args.length, output=args.output, layers=args.layers, wrt=args.wrt)
    if args.png is not None:
        plot_unfold(result, args.png)
    if args.json:
        print(json.dumps(uf.to_json(result)))
    else:
        print(uf.render_text(result))
        if args.png is not None:
            print(f"wrote {args.png}")
    return 0


def add_parser(sub, argv: list[str]) -> None:
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
    p.set_defaults(handler=run)
