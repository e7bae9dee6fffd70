"""Image captioning on held-out combinations, measured (seqlab.tasks.caption).

Trains "show, attend and tell" (``seqlab train caption``) and its non-attentive anchor (the same
encoder and decoder, the mean-pooled feature map in place of the attended context:
``--no-attention``) side by side, with the same size, steps, batches and seed, and measures both
on the same scenes: the held-out test split (every scene holds a (colour, kind) pair no
training scene has, drawn with digit pictures no training scene uses) and, for comparison,
test scenes of seen pairs. Scores: BLEU-4 and CIDEr (pycocoevalcap's pure-Python scorers), the
fraction of captions fully correct, and the accuracy of each attribute and relation named in
the caption. Target (issue 14): >= 90% of held-out captions fully correct.

    python benchmarks/bench_caption.py                                   # the reported setting
    python benchmarks/bench_caption.py --steps 100 --name caption_smoke  # a smoke run

Writes benchmarks/results/NAME.md, .json and .png (the attention of one held-out caption).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_recurrent_speed import machine_with_load as machine  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODELS = {"attention": True, "mean-pooled (no attention)": False}
COLUMNS = ("bleu4", "cider", "fully_correct", "size", "colour", "kind", "object", "relation", "count",
           "held_out_pair")



def train_and_measure(label: str, args: dict, tmp: str) -> dict:
    """Train one model and measure it on the held-out and the seen test scenes (in a worker)."""
    torch.set_num_threads(args["threads"])
    import seqlab
    from seqlab.tasks.caption_family import CaptionEvaluation, caption_image, evaluate_captions

    t0 = time.perf_counter()
    steps, lr = args["steps"], args["lr"]
    out = Path(tmp) / ("attention" if MODELS[label] else "mean")
    result = seqlab.train("caption", out=out, progress=False, preset=args["preset"], attention=MODELS[label],
                          max_steps=steps, batch_size=args["batch_size"], lr=lr, min_lr=lr / 10,
                          warmup_steps=min(50, steps // 10 + 1), eval_every=max(1, steps // 5), eval_batches=8,
                          scenes=args["scenes"], seed=args["seed"], log_every=50, max_seconds=args["guard"])
    train_s = time.perf_counter() - t0
    model, run = seqlab.load(result.run_dir)
    t1 = time.perf_counter()
    r = {"train_seconds": train_s, "steps": result.steps, "stopped": result.stopped,
         "best_val_loss": result.best_val_loss, "parameters": sum(x.numel() for x in model.parameters())}
    for split, n in (("test", args["test"]), ("test_seen", args["seen"])):
        ev = evaluate_captions(model, run.tokenizer, CaptionEvaluation(split=split, n=n), run.saved_data())
        r[split] = ev.to_json()
    r["eval_seconds"] = time.perf_counter() - t1
    if MODELS[label]:
        from seqlab.tasks.caption_data import make_scenes, write_image
        from seqlab.tasks.caption_plot import plot_caption_attention

        scene = make_scenes("test", 1)
        png = Path(tmp) / "scene.png"
        write_image(png, scene.images([0])[0])
        c = caption_image(model, run, png)
        plot_caption_attention(c["image"], c["words"], c["alphas"], Path(args["png"]),
                               title=f"held-out scene: {c['caption']!r} (true: {scene.captions[0]!r})")
        r["example"] = {"reference": scene.captions[0], "caption": c["caption"]}
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=7000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--scenes", type=int, default=0, help="training scenes (0: a stream of new scenes at every batch)")
    p.add_argument("--test", type=int, default=1000, help="held-out test scenes")
    p.add_argument("--seen", type=int, default=500, help="test scenes of seen pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guard", type=float, default=560.0, help="wall-clock cap of each training (seconds)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    p.add_argument("--jobs", type=int, default=2, help="models trained at the same time (processes)")
    p.add_argument("--name", default="caption")
    args = p.parse_args()
    info = machine()
    command = "python benchmarks/bench_caption.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = {**vars(args), "png": str(RESULTS / f"{args.name}.png")}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
            futures = {m: pool.submit(train_and_measure, m, settings, tmp) for m in MODELS}
            rows = {}
            for m in MODELS:
                rows[m] = r = futures[m].result()
                print(f"{m}: held-out fully correct {r['test']['fully_correct']:.3f}, BLEU-4 {r['test']['bleu4']:.3f}, "
                      f"CIDEr {r['test']['cider']:.3f} ({r['steps']} steps, {r['train_seconds']:.0f} s)", flush=True)
    total = time.perf_counter() - t_all
    out = {"command": command, "machine": info, "total_seconds": total, "settings": vars(args), "results": rows}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=1) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(out))
    print(f"wrote {RESULTS / args.name}.md, .json, .png in {total:.0f} s")


def markdown(out: dict) -> str:
    from seqlab.tasks.caption_data import HELD_OUT

    m, s, rows = out["machine"], out["settings"], out["results"]
    att = rows["attention"]["test"]["fully_correct"]
    lines = [
        "# Image captioning: show, attend and tell on held-out combinations",
        "",
        f"Reproduce: `{out['command'].strip()}` ({out['total_seconds']:.0f} s in all).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({s['jobs']} models trained at a time, "
        f"{s['threads']} thread each), Python {m['python']}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['load_average_at_start'])} (the machine is shared with other "
        "workers: times are slower than on an idle machine).",
        "",
        f"Both models: preset {s['preset']}, {s['steps']} planned steps of batch {s['batch_size']} (a wall-clock "
        f"guard of {s['guard']:.0f} s each), AdamW lr {s['lr']} (cosine to lr/10), seed {s['seed']}, "
        + (f"{s['scenes']} generated training scenes" if s['scenes'] else
           "a stream of generated training scenes (new ones at every batch)")
        + " (48 x 48 RGB, 2-3 objects). The anchor is the same encoder and "
        "decoder with the mean-pooled feature map as its context at every step (no attention).",
        "",
        f"Held-out test: {s['test']} scenes, each holding at least one of the {len(HELD_OUT)} (colour, kind) pairs "
        "no training scene has (" + ", ".join(f"{c} {k}" for c, k in sorted(HELD_OUT, key=lambda x: x[1])) + "), "
        f"drawn with digit pictures no training scene uses. Seen test: {s['seen']} scenes of seen pairs (the "
        "same new digit pictures). Greedy decoding.",
        "",
        f"**Target: >= 90% of held-out captions fully correct. Measured: {att:.1%} (attention) -> "
        f"{'met' if att >= 0.9 else 'NOT met'}.**",
        "",
        "| model | split | BLEU-4 | CIDEr | fully correct | size | colour | kind | object | relation | count "
        "| held-out pair | steps | training s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        for split, label in (("test", "held-out"), ("test_seen", "seen")):
            t = r[split]
            cells = ["n/a" if t.get(k) is None else f"{t[k]:.3f}" for k in COLUMNS]
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + f" | {r['steps']} | {r['train_seconds']:.0f} |")
    cut = [f"{name} at step {r['steps']} of {s['steps']}" for name, r in rows.items() if r["stopped"] != "max_steps"]
    if cut:
        lines += ["", "Stopped by the wall-clock guard before the planned steps: " + "; ".join(cut) + " (its "
                  "learning rate had not quite reached the end of its cosine)."]
    ex = rows["attention"].get("example")
    lines += ["", "Columns: BLEU-4 (corpus, one reference each) and CIDEr-D from `pycocoevalcap` "
              "(`pycocoevalcap.bleu.bleu.Bleu`, `pycocoevalcap.cider.cider.Cider`, no tokenizer: the captions are "
              "lowercase words); \"fully correct\": the caption equal to the reference; size, colour, kind: the "
              "j-th object of the caption read back (`parse_caption`) against the j-th of the reference; object: "
              "all three; relation: the j-th relation; count: as many objects as the reference; held-out pair: the "
              "objects of a held-out (colour, kind) pair named with both right."]
    if ex:
        lines += ["", f"{Path(s.get('name', 'caption')).name}.png: the attention alpha_t over the image for each "
                  f"word of a held-out scene, captioned {ex['caption']!r} (true: {ex['reference']!r})."]
    for name, r in rows.items():
        bad = [e for e in r["test"]["examples"] if e["reference"] != e["caption"]][:3]
        if bad:
            lines += ["", f"{name}, held-out captions that were wrong (of the first 10):", ""]
            lines += [f"- {e['caption']!r} (true: {e['reference']!r})" for e in bad]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
