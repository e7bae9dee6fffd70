"""``seqlab train FAMILY [options]``: one sub-command per family of the registry, with flags
made from the family's config, its data options and ``TrainConfig`` (``options.py``), and
``seqlab train [FAMILY] --resume RUN_DIR [options]`` to continue a run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from seqlab import runs
from seqlab.cli import options as opt
from seqlab.training.config import TrainConfig

VERB = "train"


def add_family_flags(p: argparse.ArgumentParser, family: runs.Family, command: str, *,
                     exclude: tuple[str, ...] = ()) -> None:
    """The flags of one family's command: model, data, training, and the run's own options."""
    fixed = family.commands().get(command, {})
    preset = {**family.config_defaults, **family.presets.get(family.default_preset, {})}
    g = p.add_argument_group(f"model ({family.config_class.__name__})")
    opt.add_fields(g, family.config_class, family.model_options(command), defaults={**preset, **fixed},
                   command=command, variants=family.commands())
    for alias, (dest, value, help_text) in family.flag_aliases.items():
        g.add_argument(opt.flag(alias), dest=dest, action="store_const", const=value, default=argparse.SUPPRESS,
                       help=help_text)
    if family.presets:
        g.add_argument("--preset", choices=list(family.presets), default=None,
                       help=f"named size, the fields it sets overridden by the flags above "
                            f"(default: {family.default_preset})")
    names = [n for n in family.data_options() if n not in exclude]
    if names:
        opt.add_fields(p.add_argument_group("data"), family.data_class, names, command=command)
    opt.add_fields(p.add_argument_group("training (TrainConfig)"), TrainConfig, runs.TRAIN_FIELDS,
                   defaults=family.train_defaults, command=command)
    g = p.add_argument_group("run")
    g.add_argument("--out", metavar="RUN_DIR", help=f"run directory (default: runs/{command}-DATE-TIME)")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue the run saved in RUN_DIR (options given must "
                   "equal its own, but device, precision, log_every, max_seconds)")
    g.add_argument("--config", metavar="FILE", help="TOML file of options (flags given here win)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def family_options(args: argparse.Namespace, family: runs.Family, command: str) -> dict[str, Any]:
    """The options given for one family: the TOML file's, then the flags'."""
    out = opt.read_config_file(args.config) if getattr(args, "config", None) is not None else {}
    names = list(family.model_options(command)) + list(family.data_options()) + list(runs.TRAIN_FIELDS)
    out.update(opt.given(args, names))
    if getattr(args, "preset", None) is not None:
        out["preset"] = args.preset
    return out


def prepare_argv(argv: list[str]) -> list[str]:
    """``seqlab train --resume RUN_DIR ...`` (no family named): insert the run's command."""
    if not argv or argv[0] != VERB or "--resume" not in argv or (len(argv) > 1 and not argv[1].startswith("-")):
        return argv
    i = argv.index("--resume")
    if i + 1 >= len(argv):
        return argv
    from seqlab.training.rundir import read_run_json, run_family

    family = runs.get_family(run_family(argv[i + 1]))
    command = family.variant_of(family.upgrade_config(read_run_json(Path(argv[i + 1])).get("model_config") or {}))
    return [VERB, command, *argv[1:]]


def add_parser(sub, argv: list[str]) -> None:
    commands = runs.commands()
    p = sub.add_parser(VERB, help="train a model: " + ", ".join(commands),
                       description="Train a model of one family on its embedded default data (or the data you "
                       "name), writing a run directory with checkpoints and metrics.jsonl; Ctrl-C saves; "
                       "--resume RUN_DIR continues. `seqlab train FAMILY --help` lists that family's options.")

    def no_family(args: argparse.Namespace) -> int:
        raise ValueError(f"train: expected a family ({', '.join(commands)}) or --resume RUN_DIR, received none "
                         f"(see seqlab train --help)")

    # without a family, the flags of `seqlab train FAMILY` are not known: say what is missing
    # rather than that they are unrecognized (``complete=False``: main calls the handler first,
    # and it raises)
    p.set_defaults(handler=no_family, complete=False)
    fams = p.add_subparsers(dest="command", metavar="FAMILY", parser_class=type(p))
    for command, (family, fixed) in commands.items():
        what = family.description + (f" ({', '.join(f'{k}={v}' for k, v in fixed.items())})" if fixed else "")
        fp = fams.add_parser(command, help=what, description=what,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        add_family_flags(fp, family, command)
        fp.set_defaults(handler=run, family=family, hint=f"seqlab train {command} --help", complete=True)


def check_resume_family(family: runs.Family, run_dir: str) -> None:
    """``seqlab train FAMILY --resume RUN_DIR``: RUN_DIR must be a run of FAMILY (the options
    were parsed as FAMILY's)."""
    from seqlab.training.rundir import run_family

    saved = run_family(run_dir)
    if saved != family.name:
        raise ValueError(f"run family: expected {family.name!r}, received {saved!r} (seqlab train --resume "
                         f"{run_dir} continues it)")


def check_run_dir(args: argparse.Namespace, command: str) -> None:
    """Before anything is loaded or trained: the run directory must be a folder the run can be
    written in (``--resume RUN_DIR``: the run's own; otherwise ``--out`` or the default
    ``runs/COMMAND-DATE-TIME``)."""
    from seqlab.paths import output_dir
    from seqlab.training.rundir import default_run_dir

    if args.resume:
        output_dir(args.resume, "--resume")
    else:
        output_dir(args.out if args.out is not None else default_run_dir(command), "--out")


def report_result(family: runs.Family, result) -> int:
    """Print what a training run did (and the family's report); the exit status."""
    print(f"run {result.run_dir}: {family.summary(result)}")
    if result.stopped == "interrupted":
        print(f"interrupted at step {result.steps}; saved {result.checkpoint}; "
              f"continue with: seqlab train --resume {result.run_dir}")
        return 130
    if result.checkpoint is not None:
        model, record = runs.load(result.run_dir)
        for line in family.report(model, record):
            print(line)
    return 0


def run(args: argparse.Namespace) -> int:
    family, command = args.family, args.command
    options = family_options(args, family, command)
    preset = options.pop("preset", None)
    progress = not args.quiet
    if args.resume:
        if preset is not None:
            raise ValueError(f"--preset: expected nothing with --resume (the run's sizes are kept), "
                             f"received {preset!r}")
        if args.out is not None:
            raise ValueError(f"--out: expected nothing with --resume (the run goes on in RUN_DIR), "
                             f"received {args.out!r}")
        check_resume_family(family, args.resume)
        check_run_dir(args, command)
        fixed = family.commands().get(command, {})
        result = runs.resume(args.resume, progress=progress, **fixed, **options)
    else:
        check_run_dir(args, command)
        result = runs.train(command, preset=preset, out=args.out, progress=progress, **options)
    from seqlab.training import distributed

    if not distributed.is_main():  # under torchrun, rank 0 alone reports (the others trained with it)
        return 130 if result.stopped == "interrupted" else 0
    from seqlab.progress import enabled

    with enabled(progress):  # the report's evaluation (the RBM's, say) shows its progress too
        return report_result(family, result)
