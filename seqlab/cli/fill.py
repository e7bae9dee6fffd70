"""``seqlab fill RUN_DIR TEXT``: the most likely fillers of every [MASK] in TEXT, for a run
whose family fills in masks (BERT)."""

from __future__ import annotations

import argparse
import json

from seqlab import runs
from seqlab.cli.attention import load_view

VERB = "fill"


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(VERB, help="fill in the [MASK] tokens of a text with a " + " or ".join(
                       runs.families_with(VERB)) + " run",
                       description="Print, for each [MASK] in TEXT, the top-k tokens the model of RUN_DIR "
                       "predicts there, with their probabilities.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("text", metavar="TEXT", help='text with one or more [MASK], e.g. "def f(x): ret[MASK]rn x"')
    p.add_argument("--top-k", type=int, default=5, help="fillers per mask (default 5)")
    p.add_argument("--json", action="store_true", help="print the fillers as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from seqlab.llm.bert_family import format_fill

    model, record, family = load_view(args.run, VERB)
    fillers = family.fill(model, record, args.text, args.top_k)
    if args.json:
        print(json.dumps([[{"token": t, "probability": p} for t, p in options] for options in fillers]))
    else:
        print(format_fill(args.text, fillers))
    return 0
