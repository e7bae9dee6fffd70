"""The Large Language Models section of ``seqlab tour``: GPT (next-token prediction, the KV
cache, attention maps) and BERT (masked-language modelling, fill-in, fine-tuning a
classifier), each trained on the embedded text through the family registry."""

from __future__ import annotations

import math
import time

import seqlab
from seqlab.runs import get_family
from seqlab.tour.context import TourContext, num
from seqlab.viz.plots import plot_curves
from seqlab.viz.report import Section


def gpt(ctx: TourContext, sec: Section) -> str:
    from seqlab.llm.gpt import LN2
    from seqlab.viz.attention import attention_maps, plot_attention_maps

    if ctx.quick:
        options = dict(preset="cpu-tiny", max_steps=12, batch_size=8, eval_every=12, eval_batches=2, warmup_steps=2,
                       log_every=4)
    else:
        # nanoGPT's CPU recipe (4 layers, 4 heads, width 128, context 64) on the embedded text,
        # 1,500 steps (about 60 s on 2 idle CPU cores); the guard stops only a much slower machine
        options = dict(preset="cpu-small", max_steps=1500, eval_every=250, eval_batches=10, log_every=50)
    result = ctx.train("gpt", guard=400, **options)
    model, run = seqlab.load(result.run_dir)
    tok = run.tokenizer
    sec.text("GPT is a stack of Transformer decoder blocks (causal self-attention) trained to predict each next "
             "character: the cost is the cross-entropy of the next token under the softmax of the last layer's "
             "activation times the token embedding w^(x) (tied output weights).")
    sec.equation(r"p\left(x_{t+1} \mid x_{1}, \ldots, x_{t}\right) = g\left(w^{(x)} \cdot a^{(L)}_{t}\right), \qquad "
                 r"C = -\dfrac{1}{T} \sum_{t} \log p\left(x_{t+1} \mid x_{1}, \ldots, x_{t}\right)")
    val = [(r["step"], r["loss"] / LN2) for r in result.history if r.get("split") == "val"]
    plot_curves({"GPT": ([s for s, _ in val], [v for _, v in val])}, ctx.out / "gpt.png",
                title="GPT on pydoc_data.topics (validation)", ylabel="bits per character")
    sec.figure(ctx.out / "gpt.png", "validation bits per character")

    prompt = "The "
    ids = tok.encode(prompt)
    sample = model.generate(ids, 40 if ctx.quick else 300, temperature=0.8, seed=0)
    sec.code(f"GPT sample (temperature 0.8):\n{prompt}{tok.decode(sample)}")
    # the KV cache within one context window (past it, each step re-reads the window:
    # the learned positions shift, so the cached keys are void)
    n_new = model.config.block_size - len(ids)
    timings, outputs = {}, {}
    for use_cache in (True, False):
        t = time.perf_counter()
        outputs[use_cache] = model.generate(ids, n_new, temperature=0.8, seed=1, use_cache=use_cache)
        timings[use_cache] = time.perf_counter() - t
    same = "the same tokens" if outputs[True] == outputs[False] else "DIFFERENT tokens"
    speedup = timings[False] / max(timings[True], 1e-9)
    best_bits = None if result.best_val_loss is None else result.best_val_loss / LN2
    sec.text(
        f"{model.num_parameters():,} parameters; best validation loss {num(result.best_val_loss)} nats/char "
        f"({num(best_bits, '.2f')} bits/char) after {result.steps:,} steps in {result.seconds:.0f} s. "
        f"Generating {n_new} characters (filling the {model.config.block_size}-character context) with the KV "
        f"cache took {timings[True]:.2f} s and without it {timings[False]:.2f} s ({speedup:.1f}x), and gave "
        f"{same}. The cache's gain grows with the context: 3.6x for 256 tokens after a 128-token prompt "
        f"(benchmarks/results/transformer_speed.md).")

    maps = attention_maps(model, tok, "def f(x):\n    return x")
    plot_attention_maps(maps, ctx.out / "gpt_attention.png", title="GPT attention on 'def f(x): return x'")
    sec.figure(ctx.out / "gpt_attention.png",
               "attention weights of every layer and head (zero above the diagonal: the causal mask)")
    uniform = math.log2(tok.vocab_size)
    return (f"GPT val {num(best_bits, '.2f')} bits/char (uniform {uniform:.2f}); "
            f"KV cache {speedup:.1f}x faster over {n_new} tokens, {same}")


def bert(ctx: TourContext, sec: Section) -> str:
    from seqlab.llm.bert_family import MaskedEvaluation

    if ctx.quick:
        options = dict(block_size=32, num_layers=2, d_model=64, max_steps=12, batch_size=8, eval_every=12,
                       eval_batches=2, warmup_steps=2, log_every=4)
        ft = dict(max_steps=6, batch_size=8, eval_every=6, eval_batches=2, warmup_steps=1, log_every=2)
    else:
        # 4 layers, 4 heads, width 128, context 64, lr 2e-3 -> 2e-4 over 800 steps: about 85 s
        # on 2 idle CPU cores (the guards stop only a much slower machine)
        options = dict(block_size=64, max_steps=800, lr=2e-3, min_lr=2e-4, eval_every=200, eval_batches=10,
                       log_every=50)
        ft = dict(max_steps=100, eval_every=50, eval_batches=10, log_every=10)
    result = ctx.train("bert", guard=600, **options)
    model, run = seqlab.load(result.run_dir)
    family = get_family("bert")
    acc = family.evaluate(model, run, MaskedEvaluation(batches=5 if ctx.quick else 50))
    demo = "\n".join(family.report(model, run))
    sec.text(
        f"BERT reads both directions (no causal mask) and is trained to recover 15% of the characters "
        f"(80% replaced by [MASK], 10% by a random character, 10% left). Held-out masked-character "
        f"accuracy {acc.accuracy:.3f} against {acc.unigram_accuracy:.3f} for always guessing the most "
        f"frequent character, after {result.steps:,} steps in {result.seconds:.0f} s.")
    sec.equation(r"u_{t} = \mathrm{LN}\left(g\left(w^{(m)} \cdot a^{(L)}_{t} + b^{(m)}\right)\right), \qquad "
                 r"p\left(x_{t} \mid x_{\setminus \mathrm{masked}}\right) = g\left(w^{(x)} \cdot u_{t} + "
                 r"b^{(o)}\right)")
    sec.code("fill-in, top 3 fillers per [MASK] with probabilities:\n" + demo)

    ft_result = ctx.train("bert-classifier", guard=240, base=str(result.run_dir), **ft)
    ft_acc = seqlab.evaluate(ft_result.run_dir).accuracy
    sec.text(
        f"Fine-tuning the whole encoder with a classification head on the [CLS] position to tell a passage of "
        f"Python's reference manual from standard-library source code: {ft_acc:.3f} accuracy over every "
        f"validation passage after {ft_result.steps} steps.")
    sec.equation(r"p(k \mid x) = g\left(w^{(c)} \cdot a^{(L)}_{\mathrm{[CLS]}} + b^{(c)}\right)")
    return (f"BERT masked-char accuracy {acc.accuracy:.2f} (unigram {acc.unigram_accuracy:.2f}); "
            f"manual-vs-code classifier {ft_acc:.2f}")
