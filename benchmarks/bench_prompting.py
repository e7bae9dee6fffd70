"""In-context learning of seqlab's GPT: exact-match accuracy on held-out task instances against
the number of demonstrations in the prompt, with the weights fixed, and the induction score of
its best head over pretraining beside the in-context accuracy.

    python benchmarks/bench_prompting.py                         # about 3 minutes on 2 shared CPU cores
    python benchmarks/bench_prompting.py --max-steps 200 --out /tmp/p    # smoke test

Pretraining: ``seqlab train icl`` (2 layers, 4 heads, width 64, context 128, the inputs of
the two previous tokens added at every position; the family's default mixture of sorting,
reversal, a per-sequence substitution cipher of single symbols and 25% repeated random
tokens; batch 32; AdamW, cosine schedule) for ``--max-steps`` steps, stopped by ``--seconds``
of wall clock if the machine is slower; the run measures its held-out accuracy and both
induction scores at every evaluation (``icl.jsonl``). Then, on ``--n`` fresh held-out prompts
per cell (a seed the run never evaluated with): accuracy per task at 0, 1, 2, 4, 8 shots,
with examples only and with the task's name first (with 0 shots: the zero-shot instruction
prompt).

Reference measured in the same run: the cipher queried for a symbol that no demonstration
shows (the answer cannot be read from the prompt: at best a guess among the symbols whose
image is not shown, 1 / (n - d) for d distinct demonstrated symbols); and chance itself.
Writes ``benchmarks/results/prompting.{md,json,png}`` and ``prompting_head.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from bench_recurrent_speed import machine  # noqa: E402

import seqlab  # noqa: E402
from seqlab.llm.icl_family import EVAL_SHOTS, measure, read_icl_metrics  # noqa: E402
from seqlab.llm.prompting import (ARROW, SYMBOLS, chance_accuracy, cipher_prompts, cipher_targets,  # noqa: E402
                                  exact_matches, head_attention,
                                  make_sequence, plot_head_attention)


def undemonstrated_accuracy(model, tok, shots: int, n: int, seed: int, symbols: int) -> tuple[float, float]:
    """(accuracy, chance) on held-out cipher prompts whose query symbol no demonstration shows:
    chance is the mean of 1 / (n_symbols - d), d the distinct demonstrated symbols (a guess
    among the images not shown)."""
    rng = random.Random(f"undemonstrated-{seed}-{shots}")
    seqs, chance = [], 0.0
    while len(seqs) < n:
        seq = make_sequence("cipher", shots, rng, symbols=symbols, split="val")
        shown = {x[0] for x, _ in seq.demos}
        unseen = [c for c in range(symbols) if c not in shown]
        if not unseen:
            continue
        c = unseen[rng.randrange(len(unseen))]
        prompt = seq.prompt[:-2] + SYMBOLS[c] + ARROW  # the query line "c>" replaced
        seqs.append(dataclasses.replace(seq, prompt=prompt, answer=SYMBOLS[seq.cipher[c]], query=(c,), spans=()))
        chance += 1.0 / len(unseen)
    hits = exact_matches(model, tok, seqs)
    return sum(hits) / n, chance / n


def plot(records, final, path) -> None:
    from seqlab.viz.plots import new_figure, save_png
    from seqlab.viz.prompting import draw_training

    tasks = list(final["fewshot"])
    fig = new_figure(width=13.0, height=3.6)
    ax = fig.add_subplot(1, 3, 1)
    for i, t in enumerate(tasks):
        for mode, style in (("fewshot", "-"), ("instruction", "--")):
            row = final[mode][t]
            ks = sorted(int(k) for k in row)
            ax.plot(ks, [row[str(k)] for k in ks], style, marker="o", color=f"C{i}",
                    label=f"{t}, {'examples only' if mode == 'fewshot' else 'name + examples'}")
    ax.set_xscale("symlog", base=2, linthresh=1)
    ax.set_xticks(list(EVAL_SHOTS))
    ax.set_xticklabels([str(k) for k in EVAL_SHOTS])
    ax.set_xlabel("demonstrations in the prompt (shots)")
    ax.set_ylabel("held-out exact match")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=6)
    ax.set_title("accuracy against shots (weights fixed)", fontsize=9)
    draw_training(fig.add_subplot(1, 3, 2), fig.add_subplot(1, 3, 3), records, tasks)
    save_png(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-steps", type=int, default=2000, help="pretraining steps (the cosine schedule's length)")
    p.add_argument("--seconds", type=float, default=420.0, help="wall-clock cap on pretraining")
    p.add_argument("--eval-every", type=int, default=100, help="steps between the curves' points")
    p.add_argument("--n", type=int, default=200, help="held-out prompts per task and number of shots")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: steadier on a machine shared with other work)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "prompting"))
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path("/tmp") / f"seqlab-bench-icl-{stamp}"
    t0 = time.perf_counter()
    result = seqlab.train("icl", out=run_dir, progress=sys.stderr.isatty(), max_steps=args.max_steps,
                          max_seconds=args.seconds, eval_every=args.eval_every, eval_batches=4, log_every=50)
    train_s = time.perf_counter() - t0
    model, run = seqlab.load(run_dir, map_location="cpu")
    data = run.saved_data()
    tok, length, symbols = run.tokenizer, tuple(data["length"]), data["symbols"]
    records = read_icl_metrics(run_dir)
    final = measure(model, tok, tasks=data["tasks"], max_shots=data["max_shots"], length=length, symbols=symbols,
                    n=args.n, seed=12345)
    if "cipher_induction" in final:  # uniform causal attention's score on the same prompts
        prompts = [cipher_targets(q) for q in cipher_prompts(final["icl_shots"], args.n, 12345, symbols=symbols)]
        final["cipher_induction_uniform"] = sum(len(t) / (q + 1) for q, t in prompts) / len(prompts)
    unshown = {k: undemonstrated_accuracy(model, tok, k, args.n, 12345, symbols)
               for k in (1, 2, 4) if k <= data["max_shots"] and "cipher" in data["tasks"]}
    chance = chance_accuracy("cipher", 0, symbols=symbols)
    ind = final["induction"]
    head = final.get("cipher_induction", ind)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(records, final, f"{out}.png")
    example = make_sequence("cipher" if "cipher" in data["tasks"] else data["tasks"][0], min(4, data["max_shots"]),
                            random.Random("bench-example"), length=length, symbols=symbols, split="val")
    greedy = seqlab.llm.prompting.answer(model, tok, example.prompt)
    w, tokens = head_attention(model, tok, example.prompt + greedy, head["layer"], head["head"])
    head_png = plot_head_attention(w, tokens, f"{out}_head.png",
                                   title=f"layer {head['layer'] + 1}, head {head['head'] + 1} (induction score "
                                   f"{head['score']:.2f} on cipher prompts) on a {example.task} prompt and the "
                                   f"model's answer")
    report = {
        "command": "python benchmarks/bench_prompting.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "load_average_at_start": load,
        "model": model.config.to_dict(), "data": data, "train_config": run.train_config,
        "steps": result.steps, "train_seconds": round(train_s, 1), "stopped": result.stopped,
        "best_val_loss": result.best_val_loss, "n": args.n, "final": final, "curves": records,
        "undemonstrated_cipher": {str(k): {"accuracy": a, "chance": c} for k, (a, c) in unshown.items()},
        "cipher_zero_shot_chance": chance,
        "example": {"prompt": example.prompt, "model": greedy, "expected": example.answer},
    }
    Path(f"{out}.json").write_text(json.dumps(report, indent=2) + "\n")

    m = report["machine"]
    n_ind = min(model.config.vocab_size, model.config.block_size // 2)
    uniform = sum(1 / (s + 1) for s in range(n_ind, 2 * n_ind)) / n_ind
    shots = [k for k in EVAL_SHOTS if k <= data["max_shots"]]
    lengths = str(length[0]) if length[0] == length[1] else f"{length[0]}-{length[1]}"
    lines = [
        "# In-context learning: a GPT prompted with k demonstrations, weights fixed", "",
        f"`{report['command'].strip()}` — {report['date']}, {m['cpu']}, {m['cores']} cores, torch {m['torch']}, "
        f"{args.threads} torch thread(s); load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
        f"(the machine was shared with other work: times are slower than on an idle machine).", "",
        f"Model: {model.config.num_layers} layers, {model.config.num_heads} heads, width {model.config.d_model}, "
        f"context {model.config.block_size}, {model.num_parameters():,} parameters. Pretraining: {result.steps:,} "
        f"steps of {run.train_config['batch_size']} sequences in {train_s:.0f} s ({result.stopped}); mixture "
        f"{', '.join(data['tasks'])} (sort and reverse on lists of {lengths} of {symbols} symbols, the cipher on "
        f"single symbols), 0-{data['max_shots']} demonstrations, {data['instruction']:.0%} of the sequences named "
        f"by the task's word, and {data.get('copy', 0):.0%} repeated random tokens; {model.config.shifts} previous tokens' "
        f"embeddings added to each position's input (ICLConfig.shifts).", "",
        f"Held-out exact match ({args.n} prompts per cell, seed 12345; lists and ciphers never seen in "
        f"pretraining):", "",
        "| task | prompt | " + " | ".join(f"{k} shots" for k in shots) + " |",
        "|---|---|" + "---|" * len(shots),
    ]
    for t in data["tasks"]:
        for mode, label in (("fewshot", "examples only"), ("instruction", "task name + examples")):
            row = final[mode][t]
            lines.append(f"| {t} | {label} | " + " | ".join(f"{row[str(k)]:.3f}" if str(k) in row else "-"
                                                           for k in shots) + " |")
    lines += ["", f"The zero-shot instruction prompt is the '0 shots' cell of 'task name + examples' ('sort:' "
              f"then the query). For the cipher it cannot work by construction: the mapping is drawn per sequence, "
              f"so no name can tell it; chance for a guess of one of {symbols} symbols is {chance:.3f}. With k >= 1 "
              f"the cipher's query asks for a symbol that a demonstration shows (drawn among them).", ""]
    if unshown:
        lines += ["Reference, same run: the cipher queried for a symbol that no demonstration shows (nothing in the "
                  "prompt tells its image; the best guess picks among the images not shown).", "",
                  "| shots | accuracy | guess among the images not shown |", "|---|---|---|"]
        lines += [f"| {k} | {a:.3f} | {c:.3f} |" for k, (a, c) in unshown.items()]
        lines += [""]
    lines += [f"Induction score at the end: {ind['score']:.3f} (layer {ind['layer'] + 1}, head {ind['head'] + 1}; "
              f"mean attention from a token to the token after its previous occurrence on 16 sequences of "
              f"{n_ind} random distinct tokens repeated twice; uniform causal attention would give {uniform:.3f})."]
    if "cipher_induction" in final:
        ci = final["cipher_induction"]
        lines += [f"On {args.n} held-out {final['icl_shots']}-shot cipher prompts: {ci['score']:.3f} (layer "
                  f"{ci['layer'] + 1}, head {ci['head'] + 1}; attention from the query's '>' to the answers of the "
                  f"demonstrations of its symbol, summed, the tokens after the earlier occurrences of 'c>'; uniform "
                  f"causal attention would give {final['cipher_induction_uniform']:.3f})."]
    lines += ["", f"Over pretraining (held-out, {data['eval_prompts']} prompts per cell, at "
              f"{records[-1]['icl_shots']} shots, examples only; induction scores: best head, (layer, head)):", "",
              "| step | " + " | ".join(data["tasks"]) + " | induction score, random tokens | on cipher prompts |",
              "|---|" + "---|" * len(data["tasks"]) + "---|---|"]
    k = records[-1]["icl_shots"]
    for r in records:
        ir, ci = r["induction"], r.get("cipher_induction")
        cell = f"{ci['score']:.3f} ({ci['layer'] + 1}, {ci['head'] + 1})" if ci else "-"
        lines.append(f"| {r['step']} | " + " | ".join(f"{r['fewshot'][t][str(k)]:.2f}" for t in data["tasks"])
                     + f" | {ir['score']:.3f} ({ir['layer'] + 1}, {ir['head'] + 1}) | {cell} |")
    lines += ["", f"Example ({example.task}, {example.shots} shots):", "", "```", example.prompt + greedy,
              "```", f"expected {example.answer!r}, the model answered {greedy!r}.", "",
              f"![accuracy and induction score]({Path(f'{out}.png').name})", "",
              f"![the best induction head's attention]({Path(head_png).name})", ""]
    Path(f"{out}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
