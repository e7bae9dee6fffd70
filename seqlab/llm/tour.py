"""The Large Language Models section of ``seqlab tour``: GPT (next-token prediction, the KV
cache, attention maps) and BERT (masked-language modelling, fill-in, fine-tuning a
classifier), each trained on the embedded text through the family registry."""

from __future__ import annotations

import math
import time

import seqlab
from seqlab.runs import get_family
from seqlab.tour.context import TourContext, num, run_parts
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


def finetuning(ctx: TourContext, sec: Section) -> str:
    """Fine-tuning the tour's GPT (pretrained on the manual) on standard-library code: every
    weight, the last block only (--freeze), or LoRA; what each trains and forgets."""
    from seqlab.llm.finetune import forgetting

    base_dir = ctx.run_dir("gpt")
    if not (base_dir / "run.json").is_file():  # the GPT section did not run (or failed): a small base of its own
        base_dir = ctx.train("gpt", name="gpt-base", guard=300, preset="cpu-tiny", max_steps=12 if ctx.quick else 600,
                             batch_size=8 if ctx.quick else 12, eval_every=12 if ctx.quick else 300, eval_batches=2,
                             warmup_steps=2).run_dir
    base, base_run = seqlab.load(base_dir)
    L = base.config.num_layers
    steps = 6 if ctx.quick else 150
    common = dict(max_steps=steps, eval_every=steps, eval_batches=2 if ctx.quick else 10, log_every=max(steps // 5, 1),
                  batch_size=4 if ctx.quick else 12, warmup_steps=2 if ctx.quick else 15)
    settings = [("every weight", "ft-full", {}), (f"--freeze {L - 1} (last block)", "ft-freeze", dict(freeze=L - 1)),
                ("--lora-rank 4", "ft-lora", dict(lora_rank=4, lr=2e-3, min_lr=2e-4))]
    old = get_family("gpt").data_from_run(base_run, {}).dataset
    rows, tables = [], {}
    for label, name, adapt in settings:
        result = ctx.train("gpt-finetune", name=name, guard=120, base=str(base_dir), text="code",
                           **{**common, **adapt})
        model, run = seqlab.load(result.run_dir)
        new = get_family("gpt-finetune").data_from_run(run, {}).dataset
        f = forgetting(base, model, new, old, batches=2 if ctx.quick else 10, batch_size=12)
        kib = (result.checkpoint / "model.safetensors").stat().st_size / 1024
        rows.append([label, f"{f.trainable:,} ({100 * f.trainable / f.total:.1f}%)", f"{kib:.0f} KiB",
                     f"{f.new_before:.3f} -> {f.new_after:.3f}", f"{f.old_before:.3f} -> {f.old_after:.3f}"])
        tables[label] = f
    sec.text("Fine-tuning \"freezes a subset of the weights (usually in earlier layers) and updates the other weights "
             "(usually the later layers) based on new datasets\". The GPT of the section above (pretrained on "
             f"Python's reference manual) is trained {steps} more steps on standard-library source code, three "
             "ways: every weight; the embeddings and the first blocks frozen; or LoRA, which freezes every weight "
             "and learns a low-rank change of each attention and MLP projection. A run with frozen weights stores "
             "only what it trained, with a reference to the base run (its path and the sha256 of its weights).")
    sec.equation(r"W' = W + \dfrac{\alpha}{r} B A, \qquad A \in \mathbb{R}^{r \times n}, \; "
                 r"B \in \mathbb{R}^{m \times r}, \; B_{0} = 0")
    sec.table(["fine-tuned", "trainable parameters", "checkpoint", "code val loss (nats/char)",
               "manual val loss: forgetting"], rows)
    full, lora = tables["every weight"], tables["--lora-rank 4"]
    return (f"fine-tuning on code: all weights {full.new_after:.2f} (forgets {full.forgotten:+.2f}), "
            f"LoRA r=4 {lora.new_after:.2f} (forgets {lora.forgotten:+.2f}) nats/char")


# the parts of the section "Large language models: fine-tuning, prompting, RLHF, prompt injection"
TECHNIQUES = (
    ("Fine-tuning with frozen layers, and LoRA", "seqlab.llm.tour:finetuning"),
    ("Prompting: learning from context, without changing a weight", "seqlab.llm.prompting_tour:prompting"),
    ("RLHF: a reward model, PPO and DPO", "seqlab.llm.rlhf_tour:rlhf"),
    ("Prompt injection: attack and defence", "seqlab.llm.injection_tour:injection"),
)


def techniques(ctx: TourContext, sec: Section) -> str:
    """The lecture's four LLM techniques, each under its own heading (``run_parts``)."""
    return run_parts(ctx, sec, TECHNIQUES)
