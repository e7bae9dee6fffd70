"""``seqlab list``: the model families of the registry, their commands and presets."""

from __future__ import annotations

import argparse
import json

from seqlab import runs

VERB = "list"


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(VERB, help="list the model families, their commands and presets",
                       description="Every model family seqlab can train: the commands of `seqlab train`, the "
                       "presets, and the other commands that apply to its runs.")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    for name, fam in runs.families().items():
        views = [v for v in ("sample", "evaluate") if name in runs.families_with(v)] + list(fam.views)
        rows.append({"family": name, "commands": list(fam.commands()), "presets": list(fam.presets),
                     "default_preset": fam.default_preset if fam.presets else None,
                     "also": ["eval" if v == "evaluate" else v for v in views], "description": fam.description})
    if args.json:
        print(json.dumps(rows))
        return 0
    for r in rows:
        presets = ", ".join(p + ("*" if p == r["default_preset"] else "") for p in r["presets"]) or "-"
        print(f"{r['family']}: {r['description']}")
        print(f"    seqlab train {' | '.join(r['commands'])}; presets {presets}; also: {', '.join(r['also']) or '-'}")
    return 0
