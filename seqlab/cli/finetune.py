"""``seqlab finetune RUN_DIR [options]``: fine-tune a pretrained run. The run's family decides
what is trained:

- a ``gpt`` run: continued language modelling on a new text (the family ``gpt-finetune``; the
  same as ``seqlab train gpt-finetune --base RUN_DIR``);
- a ``bert`` run: a passage classifier (the family ``bert-classifier``; the same as ``seqlab
  train bert-classifier --base RUN_DIR``).

Both take ``--freeze K`` (the embeddings and the first K blocks frozen) or ``--lora-rank r
[--lora-alpha a]`` (``seqlab.llm.adapt``); without either, every weight is fine-tuned. The
flags shown by ``--help`` are those of the family RUN_DIR's family selects (BERT's when no
readable run is named)."""

from __future__ import annotations

import argparse

from seqlab import runs
from seqlab.cli.train import add_family_flags, check_resume_family, check_run_dir, family_options, report_result

VERB = "finetune"
TARGETS = {"gpt": "gpt-finetune", "bert": "bert-classifier"}  # the base run's family -> the fine-tune's
DEFAULT = "bert-classifier"


def _family_of(path: str) -> str | None:
    """The family of a run or checkpoint directory; None for anything else."""
    from seqlab.training.rundir import run_family

    try:
        return run_family(path)
    except (ValueError, OSError):
        return None


def target(argv: list[str]) -> str:
    """The fine-tune family of ``seqlab finetune ... RUN_DIR ...``: from the first argument that
    is a run directory (a ``--resume`` run's own family), else the default."""
    if VERB not in argv:
        return DEFAULT
    for arg in argv[argv.index(VERB) + 1:]:
        if arg.startswith("-"):
            continue
        family = _family_of(arg)
        if family in TARGETS:
            return TARGETS[family]
        if family in TARGETS.values():
            return family
    return DEFAULT


def add_parser(sub, argv: list[str]) -> None:
    command = target(argv)
    family = runs.get_family(command)
    p = sub.add_parser(VERB, help="fine-tune a gpt run on a new text, or a bert run as a passage classifier "
                       "(all weights, --freeze K, or --lora-rank r)",
                       description="Fine-tune the pretrained run in RUN_DIR. A gpt run continues language modelling "
                       "on a new text (--text; default: standard-library source code, embedded); a bert run gets a "
                       "classification head and learns which corpus a passage comes from (default corpora: Python's "
                       "reference manual against standard-library source code). --freeze K freezes the token and "
                       "position embeddings and the first K blocks; --lora-rank r adapts every attention and MLP "
                       "projection as W + (alpha/r) B A with W frozen. A run with frozen weights stores only what "
                       f"it trains and a reference to RUN_DIR's checkpoint. Flags below: {command} (from RUN_DIR's "
                       "family).")
    p.add_argument("base", metavar="RUN_DIR", help="a gpt or bert run (seqlab train gpt|bert)")
    add_family_flags(p, family, command, exclude=("base",))
    p.set_defaults(handler=run, family=family, command=command, hint=f"seqlab {VERB} --help")


def run(args: argparse.Namespace) -> int:
    family, command = args.family, args.command
    base_family = _family_of(args.base)
    if not args.resume and TARGETS.get(base_family) != command:
        from seqlab.training.rundir import run_family

        got = run_family(args.base)  # a path that is no run: its own one-line error
        raise ValueError(f"RUN_DIR: expected a gpt or bert run, received a {got!r} run")
    options = family_options(args, family, command)
    options.pop("preset", None)
    options.pop("base", None)  # the positional RUN_DIR
    if args.resume:
        check_resume_family(family, args.resume)
        check_run_dir(args, command)
        result = runs.resume(args.resume, progress=not args.quiet, **options)
    else:
        check_run_dir(args, command)
        result = runs.train(command, out=args.out, progress=not args.quiet, base=args.base, **options)
    return report_result(family, result)
