"""``seqlab hopfield capacity|recall``: binary Hopfield network experiments
(``seqlab.energy.capacity``, ``seqlab.energy.images``)."""

from __future__ import annotations

import argparse
import json

from seqlab.cli import options as opt

VERB = "hopfield"
# the options of one action only, with their defaults (the parser's default is None, so that
# an option given to the other action is refused rather than silently unused)
ONLY = {"capacity": {"units": None, "loads": None, "trials": 3, "flip": 0.0, "max_sweeps": 20},
        "recall": {"digit": 3, "digits": "0,1,2,3,4", "noise": 0.2, "occlude": None, "mode": "async",
                   "images": "digits"}}
MAX_TRIALS = 1000  # pattern draws per point: beyond this the table does not change, the wait does


def _action_options(args: argparse.Namespace) -> None:
    """Refuse the options of the other action; fill in this action's defaults."""
    for action, names in ONLY.items():
        for name, default in names.items():
            if action != args.action and getattr(args, name) is not None:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag}: expected an option of 'hopfield {args.action}' (it applies to "
                                 f"'hopfield {action}'), received {flag} {getattr(args, name)}")
            if action == args.action and getattr(args, name) is None:
                setattr(args, name, default)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from seqlab.paths import output_dir

    _action_options(args)
    output_dir(args.out, "--out")  # before the work, not after it
    if args.action == "recall":
        return _hopfield_recall(args)

    import torch

    from seqlab.energy import capacity as cap
    from seqlab.energy.hopfield import RULES
    from seqlab.training.io import atomic_write_json
    from seqlab.viz.energy import plot_capacity

    if args.units is None:
        raise ValueError("--units: expected comma-separated network sizes N (>= 2) for 'capacity', received nothing")
    if args.rule is None:
        args.rule = "hebbian"
    if not 1 <= args.trials <= MAX_TRIALS:
        raise ValueError(f"--trials: expected an integer from 1 to {MAX_TRIALS} (pattern draws per point), "
                         f"received {args.trials}")
    units = opt.number_list(args.units, "--units", int)
    loads = opt.number_list(args.loads, "--loads", float) if args.loads else list(cap.DEFAULT_LOADS)
    if args.rule not in RULES + ("all",):
        raise ValueError(f"--rule: expected one of {', '.join(RULES + ('all',))}, received {args.rule!r}")
    rules = list(RULES) if args.rule == "all" else [args.rule]
    results = []
    for rule in rules:
        gen = torch.Generator().manual_seed(args.seed)
        results.append(cap.measure_capacity(units, loads, rule=rule, trials=args.trials, generator=gen,
                                            max_sweeps=args.max_sweeps, flip=args.flip))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_capacity(results, out / "capacity.png")
    payload = {"theory_alpha_c": cap.ALPHA_C, "results": [cap.to_json(r) for r in results]}
    atomic_write_json(out / "capacity.json", payload)
    if args.json:
        print(json.dumps(payload))
        return 0
    print(cap.format_table(results))
    print(f"wrote {out / 'capacity.png'}, {out / 'capacity.json'}")
    return 0


def _hopfield_recall(args: argparse.Namespace) -> int:
    from pathlib import Path

    from seqlab.energy import images as im
    from seqlab.energy.hopfield import RULES
    from seqlab.viz.energy import plot_recall

    digits = opt.number_list(args.digits, "--digits", int)
    for d in digits:
        if not 0 <= d <= 9:
            raise ValueError(f"--digits: expected digits in 0-9, received {d}")
    if args.digit not in digits:
        raise ValueError(f"--digit: expected one of the stored digits {args.digits}, received {args.digit}")
    if not 0.0 <= args.noise <= 1.0:
        raise ValueError(f"--noise: expected a fraction in [0, 1], received {args.noise:g}")
    if args.occlude is not None and args.occlude not in im.SIDES:
        raise ValueError(f"--occlude: expected one of {', '.join(im.SIDES)}, received {args.occlude!r}")
    rule = "pseudo-inverse" if args.rule is None else args.rule
    if rule not in RULES:
        raise ValueError(f"--rule: expected one of {', '.join(RULES)}, received {rule!r}")
    if args.mode not in ("async", "sync"):
        raise ValueError(f"--mode: expected async or sync, received {args.mode!r}")
    rec = im.recall_images(args.digit, digits=digits, noise=args.noise, occlude=args.occlude, rule=rule,
                           mode=args.mode, seed=args.seed, images=args.images)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_recall(rec, out / "recall.png")
    res = rec.result
    e0, e1 = float(res.energies[0]), float(res.energies[-1])
    payload = {"images": args.images, "digit": args.digit, "digits": list(rec.labels), "rule": rule,
               "mode": args.mode,
               "noise": args.noise, "occlude": args.occlude, "seed": args.seed, "match": rec.match,
               "exact": rec.exact, "overlaps": {str(d): float(m) for d, m in zip(rec.labels, rec.overlaps)},
               "converged": res.converged, "cycle": res.cycle, "steps": res.steps,
               "energy_start": e0, "energy_end": e1, "png": str(png)}
    if args.json:
        print(json.dumps(payload))
        return 0
    corruption = f"noise {args.noise:g}" + (f", occluded {args.occlude}" if args.occlude else "")
    print(f"digit {args.digit} ({corruption}), stored {','.join(map(str, rec.labels))}, rule {rule}, "
          f"mode {args.mode}, seed {args.seed}")
    print("overlap with stored: " + "  ".join(f"{d}: {float(m):+.3f}" for d, m in zip(rec.labels, rec.overlaps)))
    state = "converged (fixed point)" if res.converged else ("2-cycle" if res.cycle else "not converged")
    print(f"final state matches digit {rec.match}" + (" exactly" if rec.exact else "")
          + f"; {state} after {res.steps} steps")
    print(f"energy: start {e0:.4f}, end {e1:.4f}")
    print(f"wrote {png}")
    return 0


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser("hopfield", help="binary Hopfield network experiments (capacity, recall)",
                       description="Binary Hopfield network experiments. 'capacity': store P = load * N random "
                       "patterns, start asynchronous recall at each, and report the mean final overlap against "
                       "P/N and the critical load (theory, Hebbian rule: 0.138). 'recall': store 8x8 digit prototypes "
                       "(scikit-learn's load_digits), corrupt one, recall it and write recall.png.")
    p.add_argument("action", choices=["capacity", "recall"], help="what to run")
    p.add_argument("--units", default=None,
                   help="capacity: comma-separated network sizes N (>= 2), e.g. 100,200,500 (required)")
    p.add_argument("--rule", default=None, help="hebbian, pseudo-inverse, storkey or (capacity only) all "
                   "(default: hebbian for capacity, pseudo-inverse for recall)")
    p.add_argument("--loads", default=None,
                   help="capacity: comma-separated loads P/N in (0, 1.5] (default 0.02 ... 0.8)")
    p.add_argument("--trials", type=int, default=None,
                   help="capacity: independent pattern draws per point, 1 to 1000 (default 3)")
    p.add_argument("--flip", type=float, default=None,
                   help="capacity: fraction of units flipped in the start state (default 0)")
    p.add_argument("--max-sweeps", type=int, default=None, help="capacity: asynchronous sweeps at most (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--digit", type=int, default=None, help="recall: the stored digit to corrupt and recall (default 3)")
    p.add_argument("--digits", default=None,
                   help="recall: comma-separated digits whose prototypes are stored (default 0,1,2,3,4)")
    p.add_argument("--noise", type=float, default=None, help="recall: fraction of units flipped (default 0.2)")
    p.add_argument("--occlude", default=None, help="recall: set half the image to -1: top, bottom, left or right")
    p.add_argument("--mode", default=None, help="recall: async or sync updates (default async)")
    p.add_argument("--images", default=None,
                   help="recall: digits (8x8, the default) or fashion-mnist (28x28, classes 0-9; needs Debian's "
                   "dataset-fashion-mnist)")
    p.add_argument("--out", default="hopfield", help="output folder (default ./hopfield)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=run)
