"""``seqlab plot RUN [RUN ...] --png curves.png``: compare the training curves of runs from their
``metrics.jsonl`` (``seqlab.viz.curves``)."""

from __future__ import annotations

import argparse

VERB = "plot"


def add_parser(sub, argv: list[str]) -> None:
    from seqlab.viz.curves import SPLITS, X_AXES

    p = sub.add_parser(VERB, help="compare the training curves of runs (from their metrics.jsonl)",
                       description="Draw the loss (or another recorded metric) of one or more run directories "
                       "against the step, one colour per run, and print a table of their best and last "
                       "validation values. The runs may be of different families.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories")
    p.add_argument("--png", default="curves.png", metavar="FILE", help="the PNG to write (default curves.png)")
    p.add_argument("--metric", default="loss", help="a metric of metrics.jsonl: loss (default), bpc, accuracy, ...")
    p.add_argument("--split", choices=SPLITS, default="both", help="validation, training or both (default)")
    p.add_argument("--x", choices=X_AXES, default="step", help="x axis: step (default) or seconds of training")
    p.add_argument("--logy", action="store_true", help="logarithmic y axis")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from seqlab.viz.curves import plot_runs, summary_rows

    path, runs = plot_runs(args.runs, args.png, metric=args.metric, split=args.split, x=args.x, logy=args.logy)
    header = ["run", "family", "last step", f"best val {args.metric}", f"last val {args.metric}"]
    rows = [header] + summary_rows(runs, args.metric)
    widths = [max(len(r[k]) for r in rows) for k in range(len(header))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"wrote {path}")
    return 0
