"""``seqlab bptt``: backpropagation through time by hand (NumPy) against autograd."""

from __future__ import annotations

import argparse

VERB = "bptt"
# the counts a check takes, as (least, most): the networks are small random ones (T < 7), so
# more would only take longer without checking anything new
LIMITS = {"trials": (1, 1000), "layers": (1, 16), "hidden_size": (1, 256), "seed": (0, 2**63 - 1)}


def check_counts(args: argparse.Namespace) -> None:
    for name, (least, most) in LIMITS.items():
        value = getattr(args, name)
        if not least <= value <= most:
            raise ValueError(f"--{name.replace('_', '-')}: expected an integer from {least} to {most}, "
                             f"received {value}")


def run(args: argparse.Namespace) -> int:
    from seqlab.recurrent.bptt import compare_with_autograd

    check_counts(args)
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
    p.add_argument("--layers", type=int, default=1, help="stacked recurrent layers, 1 to 16 (default 1)")
    p.add_argument("--hidden-size", type=int, default=5, help="units per layer, 1 to 256 (default 5)")
    p.add_argument("--truncate", type=int, default=None, help="truncated BPTT over k steps")
    p.add_argument("--trials", type=int, default=5, help="random networks to check, 1 to 1000 (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first network; trial i uses seed + i")
    p.set_defaults(handler=run)
