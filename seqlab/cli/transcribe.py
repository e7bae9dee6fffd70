"""``seqlab transcribe RUN_DIR file.wav [--beam N] [--lm]``: what a speech recogniser (``seqlab
train asr``) hears in a WAV file: greedy CTC decoding, or prefix beam search with the
character n-gram LM of its training transcripts."""

from __future__ import annotations

import argparse
import json

VERB = "transcribe"


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(VERB, help="transcribe a WAV file with a speech recogniser (asr run)",
                       description="Transcribe FILE.wav (mono or several channels, any sample rate of at least "
                       "16 kHz: it is resampled to 22,050 Hz) with the asr run of RUN_DIR: greedy CTC decoding "
                       "(collapse repeats, drop blanks), or with --beam N a prefix beam search, and with --lm "
                       "shallow fusion of a character n-gram LM fitted on the run's training transcripts.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("wav", metavar="FILE.wav")
    p.add_argument("--beam", type=int, default=0, help="beam width of the prefix beam search (default 0: greedy)")
    p.add_argument("--lm", action="store_true", help="add the character n-gram LM to the beam search")
    p.add_argument("--lm-weight", type=float, default=0.5, help="shallow-fusion weight alpha of the LM (default 0.5)")
    p.add_argument("--bonus", type=float, default=1.0, help="insertion bonus beta per character (default 1.0)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from seqlab.cli.attention import load_view
    from seqlab.data.speech import wav_info
    from seqlab.validation import check_float, check_int, fail

    # the inputs first: a bad one is refused before the run is read
    check_int(args.beam, "--beam", minimum=0, maximum=256)
    if args.lm and args.beam == 0:
        fail("--lm", "a beam width (--beam N) to search with the LM", "--lm without --beam")
    check_float(args.lm_weight, "--lm-weight", minimum=0.0, maximum=10.0)
    check_float(args.bonus, "--bonus", minimum=-10.0, maximum=10.0)
    wav_info(args.wav, "FILE.wav")
    model, record, family = load_view(args.run, VERB)
    out = family.transcribe(model, record, args.wav, beam=args.beam, lm=args.lm, lm_weight=args.lm_weight,
                            bonus=args.bonus)
    if args.json:
        print(json.dumps(out))
    else:
        print(out["text"])
    return 0
