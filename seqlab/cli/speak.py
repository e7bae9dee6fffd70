"""``seqlab speak RUN_DIR "text" OUT.wav [--force]``: a text spoken by a synthesiser (``seqlab
train tts``): its log-mel spectrogram, turned into a 22,050 Hz waveform with Griffin-Lim and
written as a 16-bit WAV file (atomically; an existing file only with --force)."""

from __future__ import annotations

import argparse
import json

VERB = "speak"


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(VERB, help="speak a text with a synthesiser (tts run) into a WAV file",
                       description="Synthesise TEXT with the tts run of RUN_DIR (characters -> durations -> "
                       "log-mel frames) and write it to OUT.wav (22,050 Hz, 16-bit, mono; Griffin-Lim turns the "
                       "spectrogram into a waveform). TEXT is lower-cased; it may use only the characters the run "
                       "learnt. An existing OUT.wav is replaced only with --force.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("text", metavar="TEXT")
    p.add_argument("out", metavar="OUT.wav")
    p.add_argument("--force", action="store_true", help="replace OUT.wav if it exists")
    p.add_argument("--iterations", type=int, default=32, help="Griffin-Lim iterations (default 32)")
    p.add_argument("--speed", type=float, default=1.0, help="speaking rate factor: durations divided by it (default 1)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from seqlab.cli.attention import load_view
    from seqlab.paths import output_file
    from seqlab.validation import check_float, check_int, fail

    # the inputs first: a bad one is refused before the run is read
    if not args.text.strip():
        fail("TEXT", "a non-empty text", repr(args.text))
    check_int(args.iterations, "--iterations", minimum=1, maximum=1000)
    check_float(args.speed, "--speed", minimum=0.25, maximum=4.0)
    path = output_file(args.out, "OUT.wav")
    if path.exists() and not args.force:
        fail("OUT.wav", "a file that does not exist yet (or --force to replace it)", f"{str(path)!r}, which exists")
    if path.suffix.lower() != ".wav":
        fail("OUT.wav", "a file name ending in .wav", repr(str(path)))
    model, record, family = load_view(args.run, VERB)
    out = family.speak(model, record, args.text, str(path), force=args.force, n_iter=args.iterations,
                       speed=args.speed)
    print(json.dumps(out) if args.json else f"wrote {out['file']} ({out['seconds']:.2f} s, {out['frames']} frames)")
    return 0
