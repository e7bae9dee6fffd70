"""``seqlab boltzmann``: a Boltzmann machine with hidden units on n-bit parity, checked exactly
(``seqlab.energy.parity_demo``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seqlab.cli import options as opt

VERB = "boltzmann"


MAX_EPOCHS = 100_000  # about 100 s per machine of 3 bits and 4 hidden units; the curves flatten long before


def run(args: argparse.Namespace) -> int:
    from seqlab.paths import output_dir
    from seqlab.energy import parity_demo
    from seqlab.training.io import atomic_write_json
    from seqlab.viz.energy import plot_parity_demo

    hidden = opt.number_list(args.hidden, "--hidden", int)
    if not 1 <= args.epochs <= MAX_EPOCHS:
        raise ValueError(f"--epochs: expected an integer from 1 to {MAX_EPOCHS}, received {args.epochs}")
    output_dir(args.out, "--out")  # before the work, not after it
    try:
        result = parity_demo.demo(hidden, epochs=args.epochs, lr=args.lr, momentum=args.momentum,
                                  init_std=args.init_std, seed=args.seed, method=args.method, n_bits=args.bits)
    except FloatingPointError as e:  # the fit diverged: nothing is written
        raise ValueError(f"--lr {args.lr:g}, --init-std {args.init_std:g}: expected settings whose weights stay "
                         f"finite (smaller ones), received a fit that overflowed ({e})") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_parity_demo(result, out / "boltzmann.png")
    payload = parity_demo.to_json(result)
    atomic_write_json(out / "boltzmann.json", payload)
    if args.json:
        print(json.dumps({k: v for k, v in payload.items() if k != "kl"}))
        return 0
    print(f"{result.n_bits}-bit parity, {result.method} gradient, {result.epochs} epochs, lr {result.lr:g}, "
          f"momentum {result.momentum:g} ({result.seconds:.1f} s)")
    print(f"KL(data || p(v)) at the end; without hidden units the best possible is log 2 = {result.log2:.4f}")
    for k in result.hidden_sizes:
        print(f"  {k:2d} hidden units: {result.final_kl[k]:.4f}")
    print(f"wrote {out / 'boltzmann.png'}, {out / 'boltzmann.json'}")
    return 0


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser("boltzmann", help="Boltzmann machine with hidden units on n-bit parity, checked exactly",
                       description="Fit fully connected Boltzmann machines (visible and hidden units, Gibbs "
                       "sampling or exact enumeration for the model statistics) to the uniform distribution on "
                       "even-parity vectors, and report the exact KL(data || p(v)) for each number of hidden "
                       "units: without hidden units it cannot go below log 2.")
    p.add_argument("--hidden", default="0,1,2,4", help="comma-separated numbers of hidden units (default 0,1,2,4)")
    p.add_argument("--bits", type=int, default=3, help="parity of this many visible bits (default 3)")
    p.add_argument("--method", default="exact", help="exact (enumeration) or gibbs (sampled statistics)")
    p.add_argument("--epochs", type=int, default=1000, help="full-batch gradient steps, at most 100000 (default 1000)")
    p.add_argument("--lr", type=float, default=0.2, help="learning rate, at most 1000 (default 0.2)")
    p.add_argument("--momentum", type=float, default=0.9, help="momentum (default 0.9; use 0 with gibbs)")
    p.add_argument("--init-std", type=float, default=1.0, help="standard deviation of the initial weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="boltzmann", help="output folder (default ./boltzmann)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=run)
