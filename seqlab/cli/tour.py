"""``seqlab tour``: the main job (``seqlab.tour``)."""

from __future__ import annotations

import argparse

VERB = "tour"


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(VERB, help="walk through the lecture: train each model briefly, write report.html",
                       description="The main job: every section of the lecture that seqlab implements, on "
                       "embedded data; one line of result per step and an HTML report with the plots. "
                       "About 10 minutes on 2 idle CPU cores; --quick takes well under a minute.")
    p.add_argument("--out", default="tour", help="output folder (default ./tour)")
    p.add_argument("--quick", action="store_true", help="tiny settings (for tests and a first look)")
    p.add_argument("--only", nargs="+", metavar="WORD", help="run only the steps whose title contains WORD")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from seqlab.tour import run_tour

    result = run_tour(args.out, quick=args.quick, progress=not args.quiet, only=args.only)
    print(f"report: {result.report}  ({result.seconds:.0f} s, {result.failures} failed step(s))")
    return 1 if result.failures else 0
