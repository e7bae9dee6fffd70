"""``seqlab finetune BERT_RUN [options]``: a classifier fine-tuned from a pretrained BERT run
(the family ``bert-classifier``; the same as ``seqlab train bert-classifier --base BERT_RUN``)."""

from __future__ import annotations

import argparse

from seqlab import runs
from seqlab.cli.train import add_family_flags, check_resume_family, check_run_dir, family_options, report_result

VERB = "finetune"
FAMILY = "bert-classifier"


def add_parser(sub, argv: list[str]) -> None:
    family = runs.get_family(FAMILY)
    p = sub.add_parser(VERB, help="fine-tune a bert run as a passage classifier",
                       description="Add a classification head to the pretrained BERT of RUN_DIR and fine-tune "
                       "all its weights to tell which corpus a passage comes from. Default corpora (embedded): "
                       "Python's reference manual ('manual') against standard-library source code ('code').")
    p.add_argument("base", metavar="RUN_DIR", help="a bert run (seqlab train bert)")
    add_family_flags(p, family, FAMILY, exclude=("base",))
    p.set_defaults(handler=run, family=family, hint=f"seqlab {VERB} --help")


def run(args: argparse.Namespace) -> int:
    family = args.family
    options = family_options(args, family, FAMILY)
    options.pop("preset", None)
    options.pop("base", None)  # the positional RUN_DIR
    if args.resume:
        check_resume_family(family, args.resume)
        check_run_dir(args, FAMILY)
        result = runs.resume(args.resume, progress=not args.quiet, **options)
    else:
        check_run_dir(args, FAMILY)
        result = runs.train(FAMILY, out=args.out, progress=not args.quiet, base=args.base, **options)
    return report_result(family, result)
