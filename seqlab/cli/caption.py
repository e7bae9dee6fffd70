"""``seqlab caption RUN_DIR image.png [--png attention.png]``: the caption a caption run
(``seqlab train caption``) gives an image, and optionally its attention over the image for
each word."""

from __future__ import annotations

import argparse
import json

VERB = "caption"


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(VERB, help="caption an image with a caption run (show, attend and tell)",
                       description="Caption IMAGE (an RGB image file of the run's size, 48 x 48 for the scene set) "
                       "with the model of RUN_DIR (seqlab train caption) by greedy decoding, and print the "
                       "caption. With --png, also draw the attention alpha_t over the image for each word.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("image", metavar="IMAGE", help="an RGB image file (PNG, ...) of the run's image size")
    p.add_argument("--png", default=None, help="write the per-word attention maps to this PNG file")
    p.add_argument("--json", action="store_true", help="print the caption and attention maps as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import os

    from seqlab.cli.attention import load_view
    from seqlab.paths import output_file
    from seqlab.validation import fail

    # the inputs and the output first: a bad one is refused before the run is read
    if not os.path.isfile(args.image):
        why = "a folder" if os.path.isdir(args.image) else "no such file"
        fail("IMAGE", "an existing image file", f"{args.image!r} ({why})")
    if args.png is not None:
        output_file(args.png, "--png")
    model, record, family = load_view(args.run, VERB)
    out = family.caption(model, record, args.image)
    if args.json:
        print(json.dumps({"caption": out["caption"], "words": out["words"],
                          "alphas": [[[round(v, 5) for v in row] for row in a] for a in out["alphas"].tolist()]}))
    else:
        print(out["caption"])
    if args.png is not None:
        from seqlab.tasks.caption_plot import plot_caption_attention

        path = plot_caption_attention(out["image"], out["words"], out["alphas"], args.png,
                                      title=out["caption"] + ("" if out["attention"] else " (no attention: uniform)"))
        if not args.json:
            print(f"wrote {path}: attention over the image for each of {len(out['words'])} words")
    return 0
