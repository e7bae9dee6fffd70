"""``seqlab read RUN_DIR strokes.json [--beam N] [--json]``: what a handwriting recogniser
(``seqlab train handwriting``) reads in a file of pen strokes: the text, or for a shapes run
(``--task shapes``) the LASA shape."""

from __future__ import annotations

import argparse
import json

VERB = "read"


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(VERB, help="read a strokes JSON file with a handwriting recogniser (handwriting run)",
                       description="Read FILE.json, a JSON object {\"strokes\": [[[x, y], ...], ...]} (y up, any "
                       "unit; optional \"y_axis\": \"down\" for screen coordinates), with the handwriting run of "
                       "RUN_DIR: a recognize run prints the text (greedy CTC decoding, or prefix beam search with "
                       "--beam N), a shapes run the LASA shape. See docs/handwriting.md for the format.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("strokes", metavar="FILE.json")
    p.add_argument("--beam", type=int, default=0, help="beam width of the prefix beam search (default 0: greedy)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from seqlab.cli.attention import load_view
    from seqlab.tasks.handwriting_data import load_strokes_json
    from seqlab.validation import check_int

    # the inputs first: a bad one is refused before the run is read
    check_int(args.beam, "--beam", minimum=0, maximum=256)
    load_strokes_json(args.strokes, "FILE.json")
    model, record, family = load_view(args.run, VERB)
    out = family.read(model, record, args.strokes, beam=args.beam)
    if args.json:
        print(json.dumps(out))
    else:
        print(out.get("text", out.get("shape")))
    return 0
