"""Masked-token accuracy of seqlab's BERT on held-out tiny Shakespeare, against the
unigram-frequency baseline (always guess the training split's most frequent character).

    python benchmarks/bench_bert_mlm.py                   # 5 minutes of pretraining, then the score
    python benchmarks/bench_bert_mlm.py --seconds 20 --out /tmp/b    # smoke test

Pretraining: ``seqlab train bert`` on tiny Shakespeare (characters; 4 layers, 4 heads,
width 128, context 64; batch 32; AdamW lr 2e-3 cosine-decayed to 2e-4 over 1,400 steps; 15% of the positions selected, of those 80% [MASK], 10%
a random character, 10% unchanged) for ``--seconds`` of wall-clock time. Score: the
validation split (the last 10% of the text, never trained on), ``--batches`` batches of
random windows masked with a fixed seed; accuracy of the argmax over the selected
positions, and of the unigram guess on the same positions. Also fine-tunes a passage
classifier (tiny Shakespeare against Python's reference manual) for ``--ft-steps`` and
reports its accuracy over every validation passage.
Writes ``benchmarks/results/bert_mlm.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_recurrent_speed import machine  # noqa: E402

import seqlab  # noqa: E402
from seqlab.data.mlm import MLMDataset  # noqa: E402
from seqlab.data.text import load_corpus, pydoc_text, shakespeare_path  # noqa: E402
from seqlab.llm.bert import masked_accuracy  # noqa: E402
from seqlab.llm.bert_family import format_fill  # noqa: E402
from seqlab.runs import get_family  # noqa: E402


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=300.0, help="pretraining budget (wall clock)")
    p.add_argument("--max-steps", type=int, default=1400,
                   help="steps of the cosine schedule (sized to end inside the budget on 2 cores)")
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine-decayed to a tenth)")
    p.add_argument("--batches", type=int, default=200, help="validation batches of 32 for the score")
    p.add_argument("--ft-steps", type=int, default=150, help="fine-tuning steps of the classifier")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bert_mlm"))
    args = p.parse_args(argv)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path("/tmp") / f"seqlab-bench-bert-{stamp}"
    # fused=True: F.scaled_dot_product_attention, as `seqlab train bert` used by default when
    # this benchmark was recorded (BERTConfig's own default is the explicit form)
    result = seqlab.train("bert", out=run_dir, progress=sys.stderr.isatty(), text="shakespeare",
                          block_size=args.block_size, fused=True, max_steps=args.max_steps, max_seconds=args.seconds,
                          lr=args.lr, eval_every=250, eval_batches=20, log_every=50)
    run_dir = result.run_dir
    model, run = seqlab.load(run_dir)
    data = MLMDataset.from_text(load_corpus("shakespeare").text, run.tokenizer, model.config.block_size)
    acc = masked_accuracy(model, data, batches=args.batches)
    examples = ("ROMEO: Wh[MASK]refore art thou", "To be, or not to b[MASK]", "KING H[MASK]NRY")
    bert = get_family("bert")
    fills = "\n".join(format_fill(t, bert.fill(model, run, t, 3)) for t in examples)

    # fine-tuning: which corpus a passage comes from (Shakespeare or Python's manual)
    manual = Path("/tmp") / f"seqlab-bench-manual-{stamp}.txt"  # the embedded manual, as a file
    manual.write_text(pydoc_text(), encoding="utf-8")
    ft_texts = {"shakespeare": str(shakespeare_path()), "python-manual": str(manual)}
    ft_result = seqlab.train("bert-classifier", base=str(run_dir),
                             text=tuple(f"{label}={path}" for label, path in ft_texts.items()),
                             out=Path("/tmp") / f"seqlab-bench-bert-clf-{stamp}", progress=False,
                             max_steps=args.ft_steps, eval_every=50, eval_batches=10)
    ft_acc = seqlab.evaluate(ft_result.run_dir).accuracy  # the best checkpoint, every validation passage

    report = {
        "command": "python benchmarks/bench_bert_mlm.py " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "model": model.config.to_dict(),
        "steps": result.steps, "train_seconds": round(result.seconds, 1), "stopped": result.stopped,
        "masked_accuracy": acc["accuracy"], "unigram_accuracy": acc["unigram_accuracy"], "masked_positions": acc["masked"],
        "best_val_loss": result.best_val_loss, "classifier_accuracy": ft_acc, "classifier_steps": ft_result.steps,
        "fill_examples": fills,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    lines = [
        "# seqlab BERT on tiny Shakespeare: masked-character accuracy", "",
        f"`{report['command']}` — {report['date']}, {m['cpu']}, {m['cores']} cores, torch {m['torch']}.", "",
        "| quantity | value |", "|---|---|",
        f"| model | {model.config.num_layers} layers, {model.config.num_heads} heads, width {model.config.d_model}, "
        f"context {model.config.block_size} |",
        f"| pretraining | {result.steps} steps of batch 32, lr {args.lr:g}, in {result.seconds:.0f} s "
        f"({result.stopped}) |",
        f"| held-out masked-character accuracy ({acc['masked']:,} positions) | **{acc['accuracy']:.4f}** |",
        f"| unigram baseline (always the most frequent character) | {acc['unigram_accuracy']:.4f} |",
        f"| best validation MLM loss (nats) | {_fmt(result.best_val_loss)} |",
        f"| fine-tuned classifier, Shakespeare vs Python manual, {ft_result.steps} steps: accuracy over every "
        f"validation passage | {ft_acc:.4f} |", "",
        "Fill-in (top 3 per [MASK]):", "", "```", fills, "```", "",
    ]
    Path(f"{args.out}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
