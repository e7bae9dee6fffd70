"""``seqlab attention RUN_DIR --text TEXT``: the attention maps of every layer and head of a
run whose family has them (GPT, BERT)."""

from __future__ import annotations

import argparse
import json

import torch

from seqlab import runs

VERB = "attention"


def names(items: list[str]) -> str:
    """``["a", "b", "c"]`` -> "a, b or c"."""
    return " or ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + " or " + items[-1]


def load_view(path: str, view: str) -> tuple[torch.nn.Module, runs.RunRecord, runs.Family]:
    """The model, record and family of a run whose family offers ``view``; another family is
    a one-line error that names the families that do."""
    model, record = runs.load(path)
    family = runs.get_family(record.family)
    if view not in family.views:
        raise ValueError(f"{view}: expected a run of {names(runs.families_with(view))}, received a "
                         f"{record.family!r} run")
    return model, record, family


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(VERB, help="draw the attention maps of a " + names(runs.families_with(VERB)) + " run",
                       description="Run the model of RUN_DIR on TEXT and draw the attention weights of every "
                       "layer and head as heat maps (queries down, keys across) in one PNG. A GPT's maps are "
                       "zero above the diagonal (the causal mask); a BERT's are not.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--text", required=True, help="the text to read (at most the model's context in tokens)")
    p.add_argument("--out", default="attention.png", help="PNG file to write (default attention.png)")
    p.add_argument("--json", action="store_true", help="print the tokens and weights as JSON instead")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from seqlab.paths import output_file
    from seqlab.viz.attention import attention_maps, plot_attention_maps

    model, record, _ = load_view(args.run, VERB)
    if not args.json:
        output_file(args.out, "--out")
    tok = record.tokenizer
    maps = attention_maps(model, tok, args.text, specials=bool(tok.special_tokens))
    if args.json:
        print(json.dumps(maps.to_json()))
        return 0
    path = plot_attention_maps(maps, args.out, title=f"{record.family} attention on {args.text[:40]!r}")
    L, h = maps.num_layers, maps.num_heads
    print(f"wrote {path}: {L} layers x {h} heads over {len(maps.tokens)} tokens")
    S = len(maps.tokens)
    pos = torch.arange(S, dtype=maps.weights.dtype)
    for layer in range(L):
        # where each head looks most, averaged over the queries: the mean distance |s - t|
        dist = (maps.weights[layer] * (pos[:, None] - pos[None, :]).abs()).sum(-1).mean(-1)  # (h,)
        print(f"layer {layer + 1}: mean |s - t| per head " + " ".join(f"{d:.1f}" for d in dist.tolist()))
    return 0
