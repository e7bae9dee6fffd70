"""``seqlab eval RUN_DIR [options]``: the evaluation of the run's family (the generative
models' protocol: Frechet distance, coverage, confidence; an RBM's pseudo-likelihood and
features; a BERT's masked-token accuracy; a classifier's accuracy)."""

from __future__ import annotations

import argparse
import json

from seqlab import progress, runs
from seqlab.cli import options as opt
from seqlab.cli.sample import add_run_parser, option_names

VERB = "eval"


def add_parser(sub, argv: list[str]) -> None:
    p = add_run_parser(sub, argv, VERB, "evaluate_class", help="evaluate a trained model (" +
                       ", ".join(runs.families_with("evaluate")) + ")",
                       description="Evaluate the best checkpoint of RUN_DIR with its family's evaluation. "
                       "`seqlab eval RUN_DIR --help` lists the options of that run's family.")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress display (on stderr)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    model, record = runs.load(args.run)
    family = runs.get_family(record.family)
    if family.evaluate_class is None:
        raise ValueError(f"eval: expected a run of a family with an evaluation "
                         f"({', '.join(runs.families_with('evaluate'))}), received a {record.family!r} run")
    names = [n for n in option_names(args) if n != "quiet"]
    options = runs.make_options(family.evaluate_class, opt.given(args, names), f"{record.family} eval")
    with progress.enabled(not args.quiet):  # the family's evaluation shows its long parts
        ev = family.evaluate(model, record, options)
    print(json.dumps(ev.to_json()) if args.json else ev.table())
    return 0
