"""``seqlab translate RUN_DIR TEXT [--beam 5] [--png alignment.png]``: the translation of TEXT
by a translate run (``seqlab train translate``), greedy or by beam search, and optionally the
attention alignment as a PNG."""

from __future__ import annotations

import argparse
import json

from seqlab.cli.attention import load_view
from seqlab.validation import check_float, check_int, fail

VERB = "translate"


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(VERB, help="translate a text with a translate run (greedy or beam search)",
                       description="Translate TEXT with the encoder-decoder of RUN_DIR (seqlab train translate): "
                       "greedy decoding, or beam search with --beam K (scores log p / |y|^alpha). Prints the "
                       "translation; --png draws the attention of each output piece over the source pieces.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("text", metavar="TEXT", help='the text to translate, e.g. "three hundred and twelve"')
    p.add_argument("--beam", type=int, default=1, help="beam width (default 1: greedy decoding)")
    p.add_argument("--length-alpha", type=float, default=0.6,
                   help="length normalisation of the beam's scores, log p / |y|^alpha (default 0.6; 0: none)")
    p.add_argument("--png", default=None, help="write the attention alignment to this PNG file")
    p.add_argument("--json", action="store_true", help="print the translation, pieces and attention as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from seqlab.paths import output_file
    from seqlab.tasks.translate_data import normalise

    # the inputs first: a bad one is refused before the run is read or a file is written
    check_int(args.beam, "--beam", minimum=1, maximum=100)
    check_float(args.length_alpha, "--length-alpha", minimum=0.0, maximum=5.0)
    if not normalise(args.text):
        fail("TEXT", "some text to translate", "an empty text" if not args.text else "only whitespace")
    if args.png is not None:
        output_file(args.png, "--png")
    model, record, family = load_view(args.run, VERB)
    out = family.translate(model, record, args.text, beam=args.beam, length_alpha=args.length_alpha)
    if args.json:
        print(json.dumps(out.to_json(), ensure_ascii=False))
    else:
        print(out.text)
    if args.png is not None:
        from seqlab.tasks.translate_plot import plot_alignment

        path = plot_alignment(out, args.png)
        if not args.json:
            print(f"wrote {path}: attention of {len(out.target_pieces)} output pieces over "
                  f"{len(out.source_pieces)} source pieces")
    return 0
