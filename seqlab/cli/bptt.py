"""``seqlab bptt``: backpropagation through time by hand (NumPy) against autograd."""

from __future__ import annotations

import argparse

VERB = "bptt"


def run(args: argparse.Namespace) -> int:
    from seqlab.recurrent.bptt import compare_with_autograd

    worst = 0.0
    print("NumPy BPTT (the lecture's chain-rule sums) against PyTorch autograd, float64")
    print(f"{'seed':>4}  {'output':8}  {'cost':13}  {'layers':>6}  {'truncate':>8}  max |difference|")
    for seed in range(args.seed, args.seed + args.trials):
        hidden = [args.hidden_size] * args.layers
        d = compare_with_autograd(seed, hidden_sizes=hidden, output=args.output, loss=args.loss,
                                  truncate=args.truncate)
        worst = max(worst, d)
        print(f"{seed:>4}  {args.output:8}  {args.loss:13}  {args.layers:>6}  {str(args.truncate or '-'):>8}  {d:.2e}")
    print(f"worst: {worst:.2e}")
    return 0 if worst < 1e-9 else 1


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser("bptt", help="check the NumPy BPTT against autograd",
                       description="Run backpropagation through time written by hand in NumPy on random Elman "
                       "networks and compare every gradient with PyTorch autograd (float64).")
    p.add_argument("--output", choices=["last", "sequence"], default="sequence")
    p.add_argument("--loss", choices=["squared", "cross_entropy"], default="squared")
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--hidden-size", type=int, default=5)
    p.add_argument("--truncate", type=int, default=None, help="truncated BPTT over k steps")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=run)
