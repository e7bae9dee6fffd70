"""``seqlab play RUN_DIR [--episodes 10] [--seed 0] [--gif out.gif [--force]]``: a control run
(``seqlab train control``) plays deterministic episodes (the most likely action, or the
Gaussian's mean); prints the mean and standard deviation of their returns, and writes the
first episode, rendered offscreen, as an animated GIF (atomically; an existing file only with
--force)."""

from __future__ import annotations

import argparse
import json

VERB = "play"


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(VERB, help="play episodes with a control run (mean return, GIF of the first)",
                       description="Play EPISODES deterministic episodes of the environment of the control run in "
                       "RUN_DIR (seeds SEED, SEED+1, ...) and print the mean and standard deviation of their "
                       "returns; with --gif, write the first episode, rendered offscreen, as an animated GIF.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--episodes", type=int, default=10, help="episodes to play (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode (default 0)")
    p.add_argument("--gif", metavar="OUT.gif", help="write the first episode as an animated GIF")
    p.add_argument("--force", action="store_true", help="replace OUT.gif if it exists")
    p.add_argument("--frame-every", type=int, default=2, help="keep every N-th frame in the GIF (default 2)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from seqlab.cli.attention import load_view
    from seqlab.tasks.control_family import _check_gif
    from seqlab.validation import check_int

    # the inputs first: a bad one is refused before the run is read
    check_int(args.episodes, "--episodes", minimum=1, maximum=10000)
    check_int(args.seed, "--seed", minimum=0, maximum=2**31 - 1 - 10000)
    check_int(args.frame_every, "--frame-every", minimum=1, maximum=1000)
    if args.gif is not None:
        _check_gif(args.gif, args.force)
    model, record, family = load_view(args.run, VERB)
    out = family.play(model, record, episodes=args.episodes, seed=args.seed, gif=args.gif, force=args.force,
                      frame_every=args.frame_every)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['env']} ({out['policy']} policy): mean return {out['mean_return']:.1f} +- {out['std_return']:.1f} "
          f"over {out['episodes']} episodes")
    if "gif" in out:
        print(f"wrote {out['gif']} ({out['frames']} frames of the first episode)")
    return 0
