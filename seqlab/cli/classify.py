"""``seqlab classify RUN_DIR --text TEXT``: class probabilities of a passage under a
fine-tuned classifier (``seqlab finetune``)."""

from __future__ import annotations

import argparse

from seqlab import runs
from seqlab.cli.attention import load_view

VERB = "classify"


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(VERB, help="classify a passage with a fine-tuned " + " or ".join(
                       runs.families_with(VERB)) + " run",
                       description="Print the class probabilities of TEXT under the classifier of RUN_DIR "
                       "(seqlab finetune); the text is cropped to the model's context.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--text", required=True)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    model, record, family = load_view(args.run, VERB)
    for label, p in family.classify(model, record, args.text):
        print(f"{label}\t{p:.3f}")
    return 0
