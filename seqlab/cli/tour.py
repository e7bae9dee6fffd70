"""``seqlab tour``: the main job (``seqlab.tour``)."""

from __future__ import annotations

import argparse
import sys

VERB = "tour"


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(VERB, help="walk through the lecture: train each model briefly, write report.html",
                       description="The main job: every section of the lecture that seqlab implements, on "
                       "embedded data; one line of result per step and an HTML report with the plots. "
                       "The runs are planned by steps (a time guard stops only a much slower machine, and the report flags "
                       "what it cut short); about 12 minutes on 2 idle CPU cores; --quick takes well under a minute.")
    p.add_argument("--out", default="tour", help="output folder (default ./tour)")
    p.add_argument("--quick", action="store_true", help="tiny settings (for tests and a first look)")
    p.add_argument("--only", nargs="+", metavar="WORD", help="run only the steps whose title contains WORD")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from seqlab.paths import output_dir
    from seqlab.tour import SECTIONS, run_tour

    output_dir(args.out, "--out")  # before ten minutes of training, not after
    for word in args.only or ():
        if not any(word.lower() in section[0].lower() for section in SECTIONS):
            raise ValueError("--only: expected a word of a section's title (" + "; ".join(
                section[0] for section in SECTIONS) + f"), received {word!r}, which is in none")
    result = run_tour(args.out, quick=args.quick, progress=not args.quiet, only=args.only)
    cut = f", {len(result.cut_short)} run(s) cut short by the time guard" if result.cut_short else ""
    print(f"report: {result.report}  ({result.seconds:.0f} s, {result.failures} failed section(s){cut})")
    if result.interrupted:
        print("seqlab: interrupted (Ctrl-C); the report holds the sections run so far", file=sys.stderr)
        return 130
    return 1 if result.failures else 0
