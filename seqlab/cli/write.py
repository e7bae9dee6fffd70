"""``seqlab write RUN_DIR "hello" --png out.png [--json out.json] [--bias B] [--seed S] [--force]``:
a text written by a handwriting generator (``seqlab train handwriting --task generate``),
drawn as a picture and/or saved as a strokes JSON file (atomically; an existing file only with
--force). An unconditional generator writes what it likes: leave TEXT out."""

from __future__ import annotations

import argparse

VERB = "write"


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(VERB, help="write a text with a handwriting generator (handwriting generate run)",
                       description="Write TEXT with the generate run of RUN_DIR (a recurrent mixture density "
                       "network that reads TEXT through a soft attention window; Graves 2013) and draw it into "
                       "--png and/or save its strokes to --json. --bias b >= 0 samples more neatly: sigma scaled by "
                       "exp(-b), mixture weights softmax(logits (1 + b)). Without --png or --json the strokes JSON "
                       "is printed.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("text", metavar="TEXT", nargs="?", default=None)
    p.add_argument("--png", default=None, help="PNG file to draw the handwriting into")
    p.add_argument("--json", default=None, help="JSON file to save the strokes into (the format seqlab read takes)")
    p.add_argument("--bias", type=float, default=0.0, help="sampling bias b >= 0 (default 0: the model as trained)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler (default 0)")
    p.add_argument("--force", action="store_true", help="replace --png / --json files that exist")
    p.set_defaults(handler=run)


def _check_out(path: str | None, flag: str, suffix: str, force: bool):
    from seqlab.paths import output_file
    from seqlab.validation import fail

    if path is None:
        return None
    p = output_file(path, flag)
    if p.suffix.lower() != suffix:
        fail(flag, f"a file name ending in {suffix}", repr(str(p)))
    if p.exists() and not force:
        fail(flag, "a file that does not exist yet (or --force to replace it)", f"{str(p)!r}, which exists")
    return p


def run(args: argparse.Namespace) -> int:
    from seqlab.cli.attention import load_view
    from seqlab.validation import check_float, check_int, fail

    # the inputs first: a bad one is refused before the run is read
    if args.text is not None and not args.text.strip():
        fail("TEXT", "a non-empty text", repr(args.text))
    check_float(args.bias, "--bias", minimum=0.0, maximum=10.0)
    check_int(args.seed, "--seed", minimum=0, maximum=2**63 - 1)
    png = _check_out(args.png, "--png", ".png", args.force)
    out_json = _check_out(args.json, "--json", ".json", args.force)
    if png is not None and out_json is not None and png.resolve() == out_json.resolve():
        fail("--json", "another file than --png", repr(args.json))
    model, record, family = load_view(args.run, VERB)
    family.check_text(record, args.text)
    out = family.write(model, record, args.text, bias=args.bias, seed=args.seed)
    from seqlab.tasks.handwriting_data import save_strokes_json, strokes_json

    if png is None and out_json is None:
        print(strokes_json(out["strokes"], args.text))
        return 0
    if out_json is not None:
        save_strokes_json(out_json, out["strokes"], args.text)
    if png is not None:
        from seqlab.tasks.handwriting_plot import plot_strokes

        title = f"{args.text!r}, bias {args.bias:g}, seed {args.seed}" if args.text else f"bias {args.bias:g}"
        plot_strokes(png, [(out["strokes"], title)], dots=False)
    wrote = ", ".join(str(p) for p in (png, out_json) if p is not None)
    print(f"wrote {wrote} ({out['points']} points, {len(out['strokes'])} strokes)")
    return 0
