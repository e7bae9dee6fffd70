"""The Transformers and Large Language Models sections' steps of ``seqlab tour``."""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from seqlab.tour import TourContext, section
from seqlab.viz.plots import plot_curves
from seqlab.viz.report import Section


@section(60, "Transformers: attention, masks, multi-head attention, layer norm, blocks")
def transformer_parts(ctx: TourContext, sec: Section) -> str:
    import torch.nn.functional as F

    from seqlab.testing import module_parity
    from seqlab.transformer import (LayerNorm, MultiHeadAttention, TransformerBlock, causal_mask,
                                    scaled_dot_product_attention)

    torch.manual_seed(ctx.seed)
    B, S, D, h = 3, 7, 16, 4
    x = torch.randn(B, S, D, dtype=torch.float64)
    mask = causal_mask(S)  # (S, S), True = may attend: t <= s

    # softmax(q . k / sqrt(m)) . v against PyTorch's kernel
    q, k, v = (torch.randn(B, h, S, D // h, dtype=torch.float64) for _ in range(3))
    ours = scaled_dot_product_attention(q, k, v, mask=mask)
    sdpa = (ours - F.scaled_dot_product_attention(q, k, v, attn_mask=mask)).abs().max().item()

    mha = nn.MultiheadAttention(D, h, batch_first=True).double()
    mha_diff = module_parity(
        MultiHeadAttention.from_torch(mha), mha, {"x": x},
        run_ours=lambda m, x: m(x, attn_mask=mask)[0],
        run_theirs=lambda m, x: m(x, x, x, attn_mask=~mask, need_weights=False)[0]).worst
    norm = nn.LayerNorm(D).double()
    ln_diff = module_parity(LayerNorm.from_torch(norm), norm, {"x": x}).worst
    rows, block_diff = [], 0.0
    for norm_first in (True, False):
        layer = nn.TransformerEncoderLayer(D, h, 32, dropout=0.0, batch_first=True, norm_first=norm_first).double()
        d = module_parity(TransformerBlock.from_torch(layer), layer, {"x": x}).worst
        block_diff = max(block_diff, d)
        rows.append([f"encoder block ({'pre' if norm_first else 'post'}-norm)", "nn.TransformerEncoderLayer",
                     f"{d:.1e}"])
    rows = [["attention softmax(q.k/sqrt(m)).v, causal", "F.scaled_dot_product_attention", f"{sdpa:.1e}"],
            ["multi-head attention, causal", "nn.MultiheadAttention", f"{mha_diff:.1e}"],
            ["layer norm", "nn.LayerNorm", f"{ln_diff:.1e}"], *rows]
    sec.tables.append((["seqlab", "PyTorch", "max |difference| (outputs and gradients, float64)"], rows))

    # the causal mask's orientation, printed: row s (query) may see columns t <= s
    sec.pre.append("causal mask (S = 5), True = may attend; row s = query, column t = key:\n"
                   + "\n".join(" ".join("1" if m else "." for m in row) for row in causal_mask(5).tolist()))
    worst = max(sdpa, mha_diff, ln_diff, block_diff)
    sec.paragraphs.append(
        "Every part is written from the lecture's equations and checked against PyTorch's built-in in "
        "float64, forward and every gradient. The fused path (F.scaled_dot_product_attention) is a "
        "flag on the same modules.")
    return f"parity with PyTorch (attention, multi-head, layer norm, encoder blocks): worst {worst:.0e}"


@section(70, "Large language models: GPT (next-token prediction, KV cache)")
def gpt(ctx: TourContext, sec: Section) -> str:
    from seqlab.llm import runs
    from seqlab.llm.gpt import LN2
    from seqlab.viz.attention import attention_maps, plot_attention_maps

    if ctx.quick:
        options = dict(preset="cpu-tiny", train_options=dict(
            max_steps=12, batch_size=8, eval_every=12, eval_batches=2, warmup_steps=2, log_every=4))
    else:
        # nanoGPT's CPU recipe (4 layers, 4 heads, width 128, context 64) on the embedded text,
        # 1,500 steps (about 90 s on 2 CPU cores); max_seconds caps a slower machine
        options = dict(preset="cpu-small", train_options=dict(
            max_steps=1500, max_seconds=180, eval_every=250, eval_batches=10, log_every=50))
    result, run_dir = runs.start_gpt(out=ctx.out / "runs" / "gpt", progress=ctx.progress, **options)
    model, tok, _ = runs.load_gpt(run_dir)
    val = [(r["step"], r["loss"] / LN2) for r in result.history if r.get("split") == "val"]
    plot_curves({"GPT": ([s for s, _ in val], [v for _, v in val])}, ctx.out / "gpt.png",
                title="GPT on pydoc_data.topics (validation)", ylabel="bits per character")
    sec.images.append((str(ctx.out / "gpt.png"), "validation bits per character"))

    prompt = "The "
    ids = tok.encode(prompt)
    sample = model.generate(ids, 40 if ctx.quick else 300, temperature=0.8, seed=0)
    sec.pre.append(f"GPT sample (temperature 0.8):\n{prompt}{tok.decode(sample)}")
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
    sec.paragraphs.append(
        f"{model.num_parameters():,} parameters; best validation loss {result.best_val_loss:.3f} nats/char "
        f"({result.best_val_loss / LN2:.2f} bits/char) after {result.steps} steps in {result.seconds:.0f} s. "
        f"Generating {n_new} characters (filling the {model.config.block_size}-character context) with the KV "
        f"cache took {timings[True]:.2f} s and without it {timings[False]:.2f} s ({speedup:.1f}x), and gave "
        f"{same}. The cache's gain grows with the context: 3.6x for 256 tokens after a 128-token prompt "
        f"(benchmarks/results/transformer_speed.md).")

    maps = attention_maps(model, tok, "def f(x):\n    return x")
    plot_attention_maps(maps, ctx.out / "gpt_attention.png", title="GPT attention on 'def f(x): return x'")
    sec.images.append((str(ctx.out / "gpt_attention.png"),
                       "attention weights of every layer and head (zero above the diagonal: the causal mask)"))
    uniform = math.log2(tok.vocab_size)
    return (f"GPT val {result.best_val_loss / LN2:.2f} bits/char (uniform {uniform:.2f}); "
            f"KV cache {speedup:.1f}x faster over {n_new} tokens, {same}")


@section(80, "Large language models: BERT (masked-language modelling, fill-in, fine-tuning)")
def bert(ctx: TourContext, sec: Section) -> str:
    from seqlab.llm import bert_runs

    if ctx.quick:
        options = dict(block_size=32, model_options=dict(num_layers=2, d_model=64), train_options=dict(
            max_steps=12, batch_size=8, eval_every=12, eval_batches=2, warmup_steps=2, log_every=4))
        ft = dict(max_steps=6, batch_size=8, eval_every=6, eval_batches=2, warmup_steps=1, log_every=2)
    else:
        # 4 layers, 4 heads, width 128, context 64, lr 2e-3 -> 2e-4 over 800 steps: about 2.5
        # minutes on 2 CPU cores (max_seconds caps a slower machine)
        options = dict(block_size=64, train_options=dict(max_steps=800, max_seconds=240, lr=2e-3, min_lr=2e-4,
                                                          eval_every=200, eval_batches=10, log_every=50))
        ft = dict(max_steps=100, max_seconds=60, eval_every=50, eval_batches=10, log_every=10)
    result, run_dir = bert_runs.start_bert(out=ctx.out / "runs" / "bert", progress=ctx.progress, **options)
    model, tok, _ = bert_runs.load_bert(run_dir)
    from seqlab.data.mlm import MLMDataset
    from seqlab.data.text import load_text

    data = MLMDataset.from_text(load_text(None)[1], tok, model.config.block_size)
    acc = bert_runs.masked_accuracy(model, data, batches=5 if ctx.quick else 50)
    demo = bert_runs.fill_demo(run_dir)
    sec.pre.append("fill-in, top 3 fillers per [MASK] with probabilities:\n" + demo)
    sec.paragraphs.append(
        f"BERT reads both directions (no causal mask) and is trained to recover 15% of the characters "
        f"(80% replaced by [MASK], 10% by a random character, 10% left). Held-out masked-character "
        f"accuracy {acc['accuracy']:.3f} against {acc['unigram_accuracy']:.3f} for always guessing the most "
        f"frequent character, after {result.steps} steps in {result.seconds:.0f} s.")

    ft_result, ft_dir, ft_acc = bert_runs.start_classifier(run_dir, out=ctx.out / "runs" / "bert-classifier",
                                                           progress=ctx.progress, train_options=ft)
    sec.paragraphs.append(
        f"Fine-tuning the whole encoder with a classification head on the [CLS] position to tell a passage of "
        f"Python's reference manual from standard-library source code: {ft_acc:.3f} accuracy over every "
        f"validation passage after {ft_result.steps} steps.")
    return (f"BERT masked-char accuracy {acc['accuracy']:.2f} (unigram {acc['unigram_accuracy']:.2f}); "
            f"manual-vs-code classifier {ft_acc:.2f}")
