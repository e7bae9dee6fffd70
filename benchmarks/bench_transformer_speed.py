"""Speed of seqlab's transformer against PyTorch's built-ins, measured in the same process:
attention, an encoder block, a GPT training step, and generation with and without the
KV cache.

    python benchmarks/bench_transformer_speed.py            # the issue's sizes, ~3-4 minutes on 2 cores
    python benchmarks/bench_transformer_speed.py --quick    # smaller, a smoke test; writes to /tmp
    python benchmarks/bench_transformer_speed.py --rounds 12 --out /tmp/transformer_speed
    python benchmarks/bench_transformer_speed.py --only generate   # section 4 alone

What is timed (float32, CPU, ``torch.set_num_threads`` = the machine's cores):

1. Attention, forward + backward of causal self-attention on q, k, v (B, h, T, m):
   ``F.scaled_dot_product_attention(q, k, v, is_causal=True)`` against seqlab's
   ``scaled_dot_product_attention(q, k, v, causal=True, fused=False)`` (the explicit
   lecture path: scores, mask, softmax, weights @ v) and ``fused=True`` (which calls the
   PyTorch kernel after seqlab's input checks). Sizes (12, 4, 64, 32), nanoGPT's CPU recipe,
   and (8, 6, 256, 64), its "baby GPT".
2. Encoder block, forward + backward: ``nn.TransformerEncoderLayer(D, h, 4 D, dropout=0,
   batch_first=True, norm_first=True, activation="gelu")`` against
   ``TransformerBlock.from_torch(layer, fused=False / True)`` (the same weights). Both in
   training mode with gradients on, so PyTorch's inference-only "fast path" is not taken.
   Sizes (B, T, D, h) = (12, 64, 128, 4) and (8, 256, 384, 6).
3. GPT training throughput, tokens per second of one full step (forward, loss, backward,
   AdamW step; no gradient clipping, no schedule), batch 12 x context 64: seqlab's GPT
   (preset cpu-small, V = 65, fused=True and fused=False; the loss is ``GPT.loss``, as the
   trainer calls it) against :class:`TorchGPT`, the same model from PyTorch built-ins
   (nn.Embedding, learned positions, nn.TransformerEncoder of pre-norm bias-free layers with
   a causal mask, final LayerNorm, tied output head) holding seqlab's weights: the
   parameter counts are asserted equal and the logits checked to agree. Both use the
   trainer's optimizer (``make_optimizer``: AdamW, weight decay on matrices only).
4. Generation: tokens per second of ``GPT.generate`` for 256 new tokens after a 128-token
   prompt, temperature 1, fixed seed, with and without the KV cache, for a GPT of the
   cpu-small widths with block_size 512 (random weights), and with the decoder as it was
   before issue 17 (``ConcatDecoder``: the cache grown by ``torch.cat``, the thread count left
   alone). All must give the same tokens. Then 8 such prompts (seeds 0..7) one at a time
   against ``GPT.generate_batch`` (the same tokens, asserted). Measured at 1 torch thread and
   at the machine's cores (``--gen-threads``). Issue 17's target: the cache at least 5x faster
   than no cache. ``--only generate`` runs this section alone (written to
   ``benchmarks/results/transformer_generation.{md,json}`` unless ``--out``).

Method. Rounds alternate between the implementations (the reference first on even rounds,
last on odd ones), so a slow-down of the machine hits all of them alike; each figure is
the median over all timed steps of all rounds, after warm-up steps. Ratios are times,
seqlab / torch (> 1: seqlab slower). Writes ``benchmarks/results/transformer_speed.{md,json}``
(``--out PREFIX`` elsewhere; ``--quick`` writes to /tmp/bench_transformer_quick unless
``--out`` is given), with the machine, the date and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_recurrent_speed import machine_with_load  # noqa: E402
from seqlab.llm.gpt import GPT, GPTConfig  # noqa: E402
from seqlab.llm.gpt_decoding import GPTDecoder  # noqa: E402
from seqlab.llm.sampling import generate  # noqa: E402
from seqlab.runs import get_family  # noqa: E402
from seqlab.training.config import TrainConfig  # noqa: E402
from seqlab.training.io import atomic_write_text  # noqa: E402
from seqlab.training.loop import make_optimizer  # noqa: E402
from seqlab.transformer.attention import scaled_dot_product_attention  # noqa: E402
from seqlab.transformer.block import TransformerBlock  # noqa: E402

ATTN_SIZES = [(12, 4, 64, 32), (8, 6, 256, 64)]  # (B, h, T, m)
BLOCK_SIZES = [(12, 64, 128, 4), (8, 256, 384, 6)]  # (B, T, D, h)
GPT_TRAIN = {"preset": "cpu-small", "batch": 12, "context": 64}
GPT_GEN = {"preset": "cpu-small", "block_size": 512, "prompt": 128, "new": 256, "batch": 8}
QUICK_ATTN = [(4, 2, 32, 16)]
QUICK_BLOCK = [(4, 32, 64, 4)]
QUICK_TRAIN = {"preset": "cpu-tiny", "batch": 4, "context": 32}
QUICK_GEN = {"preset": "cpu-tiny", "block_size": 128, "prompt": 32, "new": 32, "batch": 3}
VOCAB = 65  # tiny Shakespeare's characters
CACHE_TARGET = 5.0  # issue 17 (it was 3x before)


# -- timing ----------------------------------------------------------------------------


def alternate(steps: dict[str, Callable[[], object]], rounds: int, reps: int, warmup: int = 2) -> dict[str, dict]:
    """Median seconds of each step over ``rounds`` alternating rounds of ``reps`` steps each
    (the order reversed on odd rounds), after ``warmup`` untimed steps of each."""
    names = list(steps)
    for name in names:
        for _ in range(warmup):
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            for _ in range(reps):
                t0 = time.perf_counter()
                steps[name]()
                times[name].append(time.perf_counter() - t0)
    out = {}
    for name, v in times.items():
        q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0]] * 3
        out[name] = {"median_s": statistics.median(v), "q1_s": q[0], "q3_s": q[2], "n": len(v)}
    return out


# -- 1. attention ----------------------------------------------------------------------


def bench_attention(size: tuple, rounds: int, reps: int) -> dict:
    B, h, T, m = size
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, h, T, m, requires_grad=True) for _ in range(3))
    g = torch.randn(B, h, T, m)

    def runner(fn):
        def step():
            for t in (q, k, v):
                t.grad = None
            fn().backward(g)
        return step

    impls = {
        "torch": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "seqlab": lambda: scaled_dot_product_attention(q, k, v, causal=True, fused=False),
        "seqlab-fused": lambda: scaled_dot_product_attention(q, k, v, causal=True, fused=True),
    }
    with torch.no_grad():  # same function first
        ref = impls["torch"]()
        for name in ("seqlab", "seqlab-fused"):
            torch.testing.assert_close(impls[name](), ref, rtol=1e-4, atol=1e-5, msg=f"attention {name} differs")
    t = alternate({name: runner(fn) for name, fn in impls.items()}, rounds, reps)
    ms = {name: r["median_s"] * 1e3 for name, r in t.items()}
    return {"B": B, "h": h, "T": T, "m": m, **{f"ms_{n}": v for n, v in ms.items()},
            "ratio": ms["seqlab"] / ms["torch"], "ratio_fused": ms["seqlab-fused"] / ms["torch"], "timings": t}


# -- 2. encoder block ------------------------------------------------------------------


def bench_block(size: tuple, rounds: int, reps: int) -> dict:
    B, T, D, h = size
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(D, h, 4 * D, dropout=0.0, batch_first=True, norm_first=True,
                                       activation="gelu")
    models = {"torch": layer,
              "seqlab": TransformerBlock.from_torch(layer, fused=False),
              "seqlab-fused": TransformerBlock.from_torch(layer, fused=True)}
    for model in models.values():
        model.train()
    x = torch.randn(B, T, D, requires_grad=True)
    g = torch.randn(B, T, D)
    with torch.no_grad():
        ref = layer(x)
        for name in ("seqlab", "seqlab-fused"):
            torch.testing.assert_close(models[name](x), ref, rtol=1e-4, atol=1e-5, msg=f"block {name} differs")

    def runner(model):
        def step():
            model.zero_grad(set_to_none=True)
            x.grad = None
            model(x).backward(g)
        return step

    t = alternate({name: runner(model) for name, model in models.items()}, rounds, reps)
    ms = {name: r["median_s"] * 1e3 for name, r in t.items()}
    return {"B": B, "T": T, "D": D, "h": h, **{f"ms_{n}": v for n, v in ms.items()},
            "ratio": ms["seqlab"] / ms["torch"], "ratio_fused": ms["seqlab-fused"] / ms["torch"], "timings": t}


# -- 3. GPT training -------------------------------------------------------------------


class TorchGPT(nn.Module):
    """seqlab's GPT (learned positions, pre-norm causal blocks without biases, final
    LayerNorm, output tied to the token embedding) from PyTorch's built-in modules."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        c = config
        if c.bias or not c.tie_weights or c.position != "learned":
            raise ValueError("TorchGPT mirrors bias=False, tie_weights=True, position='learned'")
        self.tok = nn.Embedding(c.vocab_size, c.d_model)  # (V, D), also the output layer
        self.pos = nn.Parameter(torch.zeros(c.block_size, c.d_model))  # (block_size, D)
        layer = nn.TransformerEncoderLayer(c.d_model, c.num_heads, c.d_ff or 4 * c.d_model, dropout=c.dropout,
                                           activation="gelu", batch_first=True, norm_first=True, bias=False)
        self.encoder = nn.TransformerEncoder(layer, c.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.d_model, bias=False)
        self._masks: dict[int, torch.Tensor] = {}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        T = ids.shape[1]
        if T not in self._masks:
            self._masks[T] = nn.Transformer.generate_square_subsequent_mask(T)  # float, -inf above the diagonal
        x = self.tok(ids) + self.pos[:T]  # (B, T, D)
        x = self.encoder(x, mask=self._masks[T], is_causal=True)  # (B, T, D)
        return self.norm(x) @ self.tok.weight.T  # (B, T, V)

    @classmethod
    def from_seqlab(cls, gpt: GPT) -> TorchGPT:
        ref = cls(gpt.config)
        with torch.no_grad():
            ref.tok.weight.copy_(gpt.w_x)
            ref.pos.copy_(gpt.pos.p)
            for layer, block in zip(ref.encoder.layers, gpt.blocks.blocks):
                layer.load_state_dict(TransformerBlock.map_to_torch(block.state_dict(), block.config))
            ref.norm.weight.copy_(gpt.blocks.norm.gamma)
        return ref


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bench_gpt_train(spec: dict, rounds: int, reps: int) -> dict:
    B, T = spec["batch"], spec["context"]
    models = {}
    for name, fused in (("seqlab", True), ("seqlab-explicit", False)):
        torch.manual_seed(0)  # the same initial weights for both
        models[name] = GPT(GPTConfig.preset(spec["preset"], vocab_size=VOCAB, fused=fused))
    ours = models["seqlab"]
    models = {"torch": TorchGPT.from_seqlab(ours), **models}
    n_ours, n_ref = ours.num_parameters(), num_params(models["torch"])
    assert n_ref == n_ours, f"TorchGPT has {n_ref} parameters, seqlab's GPT {n_ours}"
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, VOCAB, (B, T), generator=g)
    y = torch.randint(0, VOCAB, (B, T), generator=g)
    with torch.no_grad():
        ref = models["torch"](x)
        for name in ("seqlab", "seqlab-explicit"):
            torch.testing.assert_close(models[name](x), ref, rtol=1e-4, atol=1e-5, msg=f"GPT {name} differs")

    cfg = TrainConfig.from_dict(get_family("gpt").train_defaults)  # what `seqlab train gpt` starts from
    for model in models.values():
        model.train()
    optims = {name: make_optimizer(model, cfg) for name, model in models.items()}

    def runner(name):
        model, opt = models[name], optims[name]

        def step():
            opt.zero_grad(set_to_none=True)
            if name == "torch":
                logits = model(x)
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            else:
                loss, _ = model.loss((x, y))
            loss.backward()
            opt.step()
        return step

    t = alternate({name: runner(name) for name in models}, rounds, reps)
    tps = {name: B * T / r["median_s"] for name, r in t.items()}
    return {"preset": spec["preset"], "B": B, "T": T, "params": n_ours,
            **{f"tokens_per_s_{n}": v for n, v in tps.items()},
            **{f"ms_{n}": r["median_s"] * 1e3 for n, r in t.items()},
            "ratio": tps["torch"] / tps["seqlab"], "ratio_explicit": tps["torch"] / tps["seqlab-explicit"],
            "timings": t}


# -- 4. generation ---------------------------------------------------------------------


class ConcatDecoder(GPTDecoder):
    """The decoder as it was before issue 17: the KV cache grows by concatenation
    (``KVCache``) and the cached steps keep the thread count that was set. The reference
    "before" row of section 4, measured in the same run."""

    def __init__(self, model: GPT) -> None:
        super().__init__(model, use_cache=True, threads=None)

    def new_cache(self):
        return self.model.new_cache()  # one KVCache per block: torch.cat at every step


def bench_generate(spec: dict, rounds: int, threads: list[int]) -> dict:
    """Section 4 at each thread count in ``threads``: one prompt with the cache (seqlab's
    decoder), with the cache as before issue 17 (``ConcatDecoder``) and without the cache;
    then ``spec["batch"]`` prompts one after the other against one batch."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset(spec["preset"], vocab_size=VOCAB, block_size=spec["block_size"]))
    model.eval()
    g = torch.Generator().manual_seed(2)
    prompt = torch.randint(0, VOCAB, (spec["prompt"],), generator=g).tolist()
    n = spec["new"]
    prompts = [torch.randint(0, VOCAB, (spec["prompt"],), generator=g).tolist() for _ in range(spec["batch"])]
    seeds = list(range(spec["batch"]))

    def gen(use_cache: bool) -> list[int]:
        return model.generate(prompt, n, temperature=1.0, seed=0, use_cache=use_cache)

    @torch.no_grad()
    def gen_before() -> list[int]:
        return generate(ConcatDecoder(model), prompt, n, temperature=1.0, seed=0)

    def one_by_one() -> list[list[int]]:
        return [model.generate(p, n, temperature=1.0, seed=s) for p, s in zip(prompts, seeds)]

    def batched() -> list[list[int]]:
        return model.generate_batch(prompts, n, temperature=1.0, seeds=seeds)

    before_threads = torch.get_num_threads()
    rows = []
    try:
        for t in threads:
            torch.set_num_threads(t)
            cached, uncached, before = gen(True), gen(False), gen_before()  # also the warm-up
            assert len(cached) == n, f"generated {len(cached)} tokens, asked {n}"
            for name, other in (("without the KV cache", uncached), ("with the concatenating cache", before)):
                if cached != other:
                    i = next(j for j, (a, b) in enumerate(zip(cached, other)) if a != b)
                    raise AssertionError(f"generation with the KV cache and {name} gave different tokens: first at "
                                         f"new token {i} ({cached[i]} and {other[i]})")
            singles, batch = one_by_one(), batched()
            assert batch == singles, "batched generation differs from one prompt at a time"
            tm = alternate({"cache": lambda: gen(True), "cache-before": gen_before, "no-cache": lambda: gen(False)},
                           rounds, 1, warmup=0)
            tb = alternate({"one-by-one": one_by_one, "batched": batched}, rounds, 1, warmup=0)
            tps = {name: n / r["median_s"] for name, r in tm.items()}
            tps.update({name: n * len(prompts) / r["median_s"] for name, r in tb.items()})
            rows.append({"threads": t, **{f"tokens_per_s_{k.replace('-', '_')}": v for k, v in tps.items()},
                         "speedup": tps["cache"] / tps["no-cache"],
                         "speedup_before": tps["cache-before"] / tps["no-cache"],
                         "batch_speedup": tps["batched"] / tps["one-by-one"], "timings": {**tm, **tb}})
    finally:
        torch.set_num_threads(before_threads)
    return {"preset": spec["preset"], "block_size": spec["block_size"], "prompt": spec["prompt"], "new": n,
            "batch": spec["batch"], "params": model.num_parameters(), "same_tokens": True, "rows": rows,
            "target": CACHE_TARGET}


def markdown_generate(r: dict, quick: bool, load: float | None = None, cores: int = 1) -> list[str]:
    note = " (quick sizes; the target is for the full run)" if quick else ""
    L = [
        "## 4. Generation with and without the KV cache",
        "",
        (f"{r['new']} new tokens after a {r['prompt']}-token prompt, temperature 1, seed 0; preset {r['preset']} "
         f"widths with block_size {r['block_size']} ({r['params']:,} parameters, random weights). seqlab's "
         "decoder (a KV buffer allocated once; the cached one-position steps on one intra-op thread) against the "
         "decoder before issue 17 (the cache grown by concatenation, the thread count left alone) and against "
         "no cache. All three give the same tokens (asserted). Batched: "
         f"{r['batch']} prompts of {r['prompt']} tokens, seeds 0..{r['batch'] - 1}, one at a time with the cache "
         "against one batch (the same tokens, asserted); tokens/s counts every prompt's new tokens."),
        "",
        "| torch threads | cache (tokens/s) | cache before (tokens/s) | no cache (tokens/s) | speed-up | "
        "speed-up before | one prompt at a time (tokens/s) | batched (tokens/s) | batch speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        L.append(f"| {row['threads']} | {row['tokens_per_s_cache']:,.0f} | {row['tokens_per_s_cache_before']:,.0f} | "
                 f"{row['tokens_per_s_no_cache']:,.0f} | {row['speedup']:.2f}x | {row['speedup_before']:.2f}x | "
                 f"{row['tokens_per_s_one_by_one']:,.0f} | {row['tokens_per_s_batched']:,.0f} | "
                 f"{row['batch_speedup']:.2f}x |")
    L.append("")
    if load is not None and load > cores:
        L += [f"The load average ({load:.1f}) exceeded the {cores} cores: every operation split across threads "
              "waited for a busy core, which slows the uncached path (large operations on 2 threads) far more than "
              "an idle machine would, and inflates the 2-thread speed-ups. Re-measure on an idle machine; the "
              "1-thread row is the robust one.", ""]
    for row in r["rows"]:
        verdict = "meets" if row["speedup"] >= r["target"] else "**misses**"
        L.append(f"- {row['threads']} thread(s): the cache's speed-up is {row['speedup']:.2f}x ({verdict} the "
                 f"issue's target of {r['target']:.0f}x){note}; before issue 17, in the same run, "
                 f"{row['speedup_before']:.2f}x.")
    return L


# -- report ----------------------------------------------------------------------------


def markdown(info: dict, command: str, date: str, res: dict, quick: bool) -> str:
    only_generate = not res["attention"]
    L = [
        "# GPT generation: the KV cache and batched prompts" if only_generate
        else "# Transformer: seqlab against PyTorch's built-ins",
        "",
        f"Machine: {info['cpu']}, {info['cores']} CPU cores, {info['threads']} threads, torch {info['torch']}, "
        f"Python {info['python']}; load average at the start "
        f"{', '.join(f'{x:.2f}' for x in info['load_average_at_start'])}; measured {date}. "
        "float32, CPU; each figure is the median of alternating "
        + (f"rounds ({res['gen_rounds']} round(s) x 1 call). " if only_generate else
           f"rounds ({res['rounds']} rounds x {res['reps']} steps; generation {res['gen_rounds']} round(s) x 1 call). "
           "Ratios are times, seqlab / torch (> 1: seqlab slower). ")
        + f"Command: `{command}`."
        + (" **Quick run: small sizes, not the issue's figures.**" if quick else ""),
        "",
    ]
    if res["attention"]:
        L += _markdown_training(res) + [""]
    if "generate" in res:
        L += markdown_generate(res["generate"], quick, info.get("load_average_at_start", [None])[0], info["cores"])
    return "\n".join(L) + "\n"


def _markdown_training(res: dict) -> list[str]:
    L = [
        "## 1. Causal attention, forward + backward",
        "",
        ("torch = `F.scaled_dot_product_attention(q, k, v, is_causal=True)`; seqlab = "
         "`scaled_dot_product_attention(q, k, v, causal=True, fused=False)` (explicit scores, mask, softmax); "
         "seqlab fused = the same with `fused=True`."),
        "",
        "| B | h | T | m | torch (ms) | seqlab explicit (ms) | ratio | seqlab fused (ms) | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["attention"]:
        L.append(f"| {r['B']} | {r['h']} | {r['T']} | {r['m']} | {r['ms_torch']:.2f} | {r['ms_seqlab']:.2f} | "
                 f"{r['ratio']:.2f} | {r['ms_seqlab-fused']:.2f} | {r['ratio_fused']:.2f} |")
    L += [
        "",
        "## 2. Encoder block, forward + backward (training mode)",
        "",
        ("torch = `nn.TransformerEncoderLayer(D, h, 4D, dropout=0, batch_first=True, norm_first=True, "
         "activation=\"gelu\")`; seqlab = `TransformerBlock.from_torch(layer, fused=...)`, the same weights."),
        "",
        "| B | T | D | h | torch (ms) | seqlab explicit (ms) | ratio | seqlab fused (ms) | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["block"]:
        L.append(f"| {r['B']} | {r['T']} | {r['D']} | {r['h']} | {r['ms_torch']:.2f} | {r['ms_seqlab']:.2f} | "
                 f"{r['ratio']:.2f} | {r['ms_seqlab-fused']:.2f} | {r['ratio_fused']:.2f} |")
    r = res["gpt_train"]
    L += [
        "",
        "## 3. GPT training step (forward, loss, backward, AdamW)",
        "",
        (f"Preset {r['preset']}, V = {VOCAB}, {r['params']:,} parameters (the PyTorch reference: the same count "
         f"and the same weights), batch {r['B']} x context {r['T']}."),
        "",
        "| model | tokens/s | ms / step | time ratio vs torch |",
        "|---|---|---|---|",
        f"| torch built-ins (TorchGPT) | {r['tokens_per_s_torch']:,.0f} | {r['ms_torch']:.1f} | 1.00 |",
        f"| seqlab GPT, fused=True | {r['tokens_per_s_seqlab']:,.0f} | {r['ms_seqlab']:.1f} | {r['ratio']:.2f} |",
        (f"| seqlab GPT, fused=False | {r['tokens_per_s_seqlab-explicit']:,.0f} | {r['ms_seqlab-explicit']:.1f} | "
         f"{r['ratio_explicit']:.2f} |"),
    ]
    return L


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, few rounds; writes to /tmp unless --out")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 8; quick 2)")
    p.add_argument("--reps", type=int, default=None, help="timed steps per implementation per round (default 3)")
    p.add_argument("--out", default=None, help="output prefix: writes PREFIX.md and PREFIX.json (default "
                   "benchmarks/results/transformer_speed, with --only generate transformer_generation; with "
                   "--quick /tmp/bench_transformer_quick)")
    p.add_argument("--only", choices=["generate"], default=None, help="only section 4 (generation)")
    p.add_argument("--gen-threads", default=None, help="comma-separated torch thread counts of section 4 "
                   "(default: 1 and the machine's cores)")
    args = p.parse_args(argv)

    torch.set_num_threads(os.cpu_count() or 1)
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 8)
    reps = args.reps if args.reps is not None else (2 if args.quick else 3)
    if rounds < 1 or reps < 1:
        p.error("--rounds and --reps must be >= 1")
    gen_rounds = max(1, rounds // 2)  # one generation call is seconds long
    default_name = "transformer_generation" if args.only else "transformer_speed"
    out = Path(args.out) if args.out else (Path("/tmp/bench_transformer_quick") if args.quick
                                           else ROOT / "benchmarks" / "results" / default_name)
    cores = os.cpu_count() or 1
    gen_threads = sorted({1, cores}) if args.gen_threads is None else [int(t) for t in args.gen_threads.split(",")]
    attn_sizes, block_sizes = (QUICK_ATTN, QUICK_BLOCK) if args.quick else (ATTN_SIZES, BLOCK_SIZES)
    train_spec, gen_spec = (QUICK_TRAIN, QUICK_GEN) if args.quick else (GPT_TRAIN, GPT_GEN)
    info = machine_with_load()
    date = time.strftime("%Y-%m-%d")
    command = " ".join(["python benchmarks/bench_transformer_speed.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['threads']} threads, torch {info['torch']}")
    t_start = time.perf_counter()
    res: dict = {"rounds": rounds, "reps": reps, "gen_rounds": gen_rounds, "attention": [], "block": []}

    for size in ([] if args.only else attn_sizes):
        r = bench_attention(size, rounds, reps)
        res["attention"].append(r)
        print(f"attention B={r['B']} h={r['h']} T={r['T']} m={r['m']}: torch {r['ms_torch']:.2f} ms, "
              f"seqlab explicit {r['ms_seqlab']:.2f} ms (x{r['ratio']:.2f}), "
              f"seqlab fused {r['ms_seqlab-fused']:.2f} ms (x{r['ratio_fused']:.2f})", flush=True)
    for size in ([] if args.only else block_sizes):
        r = bench_block(size, rounds, reps)
        res["block"].append(r)
        print(f"block B={r['B']} T={r['T']} D={r['D']} h={r['h']}: torch {r['ms_torch']:.2f} ms, "
              f"seqlab explicit {r['ms_seqlab']:.2f} ms (x{r['ratio']:.2f}), "
              f"seqlab fused {r['ms_seqlab-fused']:.2f} ms (x{r['ratio_fused']:.2f})", flush=True)
    if not args.only:
        r = res["gpt_train"] = bench_gpt_train(train_spec, rounds, reps)
        print(f"GPT train {r['preset']} ({r['params']:,} params) B={r['B']} T={r['T']}: "
              f"torch {r['tokens_per_s_torch']:,.0f} tok/s, seqlab fused {r['tokens_per_s_seqlab']:,.0f} tok/s "
              f"(time x{r['ratio']:.2f}), seqlab explicit {r['tokens_per_s_seqlab-explicit']:,.0f} tok/s "
              f"(time x{r['ratio_explicit']:.2f})", flush=True)
    r = res["generate"] = bench_generate(gen_spec, gen_rounds, gen_threads)
    for row in r["rows"]:
        print(f"generate {r['new']} after {r['prompt']} (block_size {r['block_size']}), {row['threads']} thread(s): "
              f"cache {row['tokens_per_s_cache']:,.0f} tok/s (before {row['tokens_per_s_cache_before']:,.0f}), "
              f"no cache {row['tokens_per_s_no_cache']:,.0f} tok/s, speed-up x{row['speedup']:.2f} "
              f"(before x{row['speedup_before']:.2f}; target x{r['target']:.0f}); {r['batch']} prompts batched "
              f"x{row['batch_speedup']:.2f} faster than one by one; same tokens", flush=True)
    elapsed = time.perf_counter() - t_start
    print(f"total {elapsed:.0f} s")

    out.parent.mkdir(parents=True, exist_ok=True)
    md, js = Path(f"{out}.md"), Path(f"{out}.json")
    atomic_write_text(js, json.dumps({"machine": info, "date": date, "command": command, "quick": args.quick,
                                      "seconds": elapsed, **res}, indent=2))
    atomic_write_text(md, markdown(info, command, date, res, args.quick))
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
