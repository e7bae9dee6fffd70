"""``seqlab sample RUN_DIR [options]``: the sampler of the run's family. The options are
those of the family's ``sample_class`` (text: --prompt, --temperature, --top-k, ...; images:
--n, --png, ...), so ``seqlab sample RUN_DIR --help`` lists exactly what applies."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from seqlab import runs
from seqlab.cli import options as opt

VERB = "sample"


def family_of(argv: list[str], verb: str) -> runs.Family | None:
    """The family of the run named right after ``verb`` on the command line (None if there is
    none or it cannot be read: running the command then says what is wrong)."""
    from seqlab.training.rundir import run_family

    if verb not in argv:
        return None
    rest = argv[argv.index(verb) + 1:]
    if not rest or rest[0].startswith("-"):
        return None
    try:
        return runs.get_family(run_family(rest[0]))
    except ValueError:
        return None


def add_run_parser(sub, argv: list[str], verb: str, attribute: str, **kwargs) -> argparse.ArgumentParser:
    """A parser for ``verb RUN_DIR [options]`` whose options are the fields of the run's
    family's ``attribute`` dataclass (``sample_class``, ``evaluate_class``); without a
    readable run, those of every family, each marked with the families it applies to."""
    family = family_of(argv, verb)
    p = sub.add_parser(verb, **kwargs)
    p.add_argument("run", metavar="RUN_DIR", help="a run directory (its best checkpoint, or the latest where the "
                   "family ranks none, as a GAN) or a checkpoint directory")
    p.set_defaults(hint=f"seqlab {verb} RUN_DIR --help" + (f" (a {family.name!r} run)" if family else ""))
    if family is not None:
        cls = getattr(family, attribute)
        if cls is not None:
            opt.add_fields(p.add_argument_group(f"{family.name} options"), cls, runs.field_names(cls))
        else:  # the verb does not apply to this run: its handler says so before any option is refused
            p.set_defaults(complete=False)
        return p
    # every family's options, once each; where families differ, the help says how
    per_field: dict[str, dict[str, tuple[type, str, object]]] = {}
    for name, fam in runs.families().items():
        cls = getattr(fam, attribute)
        if cls is None:
            continue
        docs = opt.field_docs(cls)
        for f in dataclasses.fields(cls):
            per_field.setdefault(f.name, {})[name] = (cls, opt.first_sentence(docs.get(f.name, "")), f.default)
    g = p.add_argument_group("options (which apply depends on the run's family; RUN_DIR --help lists them)")
    for f, owners in per_field.items():
        cls = next(iter(owners.values()))[0]
        by_text: dict[str, list[str]] = {}
        for name, (_, text, _) in owners.items():
            by_text.setdefault(text, []).append(name)
        text = "; ".join(f"{t} ({', '.join(names)})" for t, names in by_text.items())
        defaults = {repr(d) for _, _, d in owners.values()}
        opt.add_fields(g, cls, [f], docs={f: text}, defaults={} if len(defaults) == 1 else {f: "per family"})
    return p


def option_names(args: argparse.Namespace) -> list[str]:
    """The options on ``args`` (everything but the run, the verb, the handler, --json and the
    parser's own marks)."""
    return [k for k in vars(args) if k not in ("run", "verb", "handler", "json", "hint", "complete")]


def add_parser(sub, argv: list[str]) -> None:
    p = add_run_parser(sub, argv, VERB, "sample_class", help="generate text or images from a trained model",
                       description="Sample from the best checkpoint of RUN_DIR (or a checkpoint directory) with "
                       "the sampler of its family. `seqlab sample RUN_DIR --help` lists the options of that "
                       "run's family.")
    p.set_defaults(handler=run)


def check_outputs(cls: type, options: object) -> None:
    """The files the options name for writing (``opt.file_outputs``) must be writable, before
    any work starts; ``none`` (None) writes nothing."""
    from seqlab.paths import output_file

    for name in opt.file_outputs(cls):
        value = getattr(options, name)
        if value is not None:
            output_file(value, "--" + name.replace("_", "-"))


def _accepts(fn, keyword: str) -> bool:
    import inspect

    try:
        return keyword in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
        return False


class _Printer:
    """Text printed to stdout as it comes, flushed piece by piece, after ``prefix`` (written
    with the first piece, so that a refused command prints nothing)."""

    def __init__(self, prefix: str) -> None:
        self.prefix, self.text = prefix, ""

    def __call__(self, piece: str) -> None:
        if not self.text:
            piece = self.prefix + piece
        sys.stdout.write(piece)
        sys.stdout.flush()
        self.text += piece


def run(args: argparse.Namespace) -> int:
    model, record = runs.load(args.run)
    family = runs.get_family(record.family)
    if family.sample_class is None:
        hint = f" (use seqlab fill for a {record.family!r} run)" if "fill" in family.views else ""
        raise ValueError(f"sample: expected a run of a family that samples ({', '.join(runs.families_with('sample'))})"
                         f", received a {record.family!r} run{hint}")
    options = runs.make_options(family.sample_class, opt.given(args, option_names(args)), f"{record.family} sample")
    check_outputs(family.sample_class, options)
    prompts = getattr(options, "prompts", ())
    if prompts:  # several prompts as one batch: the texts, each after its prompt, printed when all are done
        texts = family.sample(model, record, options)
        for i, (prompt, text) in enumerate(zip(prompts, texts)):
            one = dataclasses.replace(options, prompt=prompt, prompts=())
            print(f"--- prompt {i + 1} of {len(prompts)} (seed {options.seed + i})")
            print(family.format_sample(text, one))
        return 0
    if not _accepts(family.sample, "on_text"):
        result = family.sample(model, record, options)
        print(family.format_sample(result, options))
        return 0
    # text: printed as it is generated (what ``format_sample`` puts before the result first);
    # Ctrl-C keeps what was printed, ends the line, and main reports the interruption
    printer = _Printer(family.format_sample("", options))
    try:
        result = family.sample(model, record, options, on_text=printer)
    except KeyboardInterrupt:
        if printer.text and not printer.text.endswith("\n"):
            sys.stdout.write("\n")
        raise
    full = family.format_sample(result, options)
    rest = full[len(printer.text):] if full.startswith(printer.text) else "\n" + full
    print(rest)
    return 0
