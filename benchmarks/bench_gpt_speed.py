"""Training-step time of seqlab's GPT against a nanoGPT-style reference, in one process.

    python benchmarks/bench_gpt_speed.py                  # 2 threads and 1 thread, writes results/gpt_speed_cpu.{md,json}
    python benchmarks/bench_gpt_speed.py --rounds 3 --steps 5 --threads 1 --out /tmp/s   # smoke test
    python benchmarks/bench_gpt_speed.py --profile        # where seqlab's step spends its time (torch.profiler)
    python benchmarks/bench_gpt_speed.py --recipe baby --device cuda --rounds 10 --steps 10 --threads 1
                                                          # nanoGPT's "baby GPT" on a GPU, bf16 (gpu_check.sh)

The recipe (``--recipe cpu``, the default) is nanoGPT's CPU recipe for tiny Shakespeare
(characters): 4 layers, 4 heads, width 128, context 64, batch 12, dropout 0, no biases, output
tied to the token embedding (804,096 parameters with the 65 characters), AdamW (lr 1e-3, beta2
0.99, weight decay 0.1 on matrices), gradient norm clipped at 1. ``--recipe baby`` is nanoGPT's
"baby GPT" for the same data on a GPU: 6 layers, 6 heads, width 384, context 256, batch 64,
dropout 0.2, the same optimizer, in bf16 autocast on CUDA (``--precision``), without
torch.compile on either side.

The reference (``NanoGPTRef``) is a small re-implementation, from torch.nn, of the design
nanoGPT's README and model describe (nanoGPT is not a dependency and none of its code is
copied): token + learned position embeddings; pre-LayerNorm blocks x + Attn(LN(x)),
x + MLP(LN(x)); one (3D, D) query/key/value projection; causal attention through
``F.scaled_dot_product_attention(is_causal=True)``; a GELU MLP of width 4D; no biases;
a final LayerNorm and an output layer tied to the token embedding; AdamW, fused where the
build has it for the device (on the CPU nanoGPT uses the default, foreach).

A *training step* is the whole update both ways: forward and loss, backward, gradient
clipping, optimizer step. seqlab's step is the trainer's (``GPT.loss``, ``make_optimizer``,
``clip_gradients`` from ``seqlab.training.loop``); the reference's is nanoGPT's
(``clip_grad_norm_``, ``AdamW``), measured twice: with nanoGPT's optimizer rule (fused
AdamW on CUDA only; on the CPU PyTorch's default) and with fused AdamW (what seqlab's trainer
uses wherever PyTorch has it). All three see the same precomputed batches.
Timing is interleaved: each round times ``--steps`` steps of one model, then of the other
(the order alternating between rounds). Reported: the median over rounds of each model's
per-step time, their ratio, and the median over rounds of the per-round ratio (the two
halves of a round run seconds apart, so on a shared machine whose load drifts this is the
steadier estimate); ratios are seqlab / reference (below 1: seqlab is faster).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_recurrent_speed import machine_with_load  # noqa: E402

from seqlab.llm.gpt import GPT, GPTConfig  # noqa: E402
from seqlab.training.io import atomic_write_text  # noqa: E402
from seqlab.training.device import autocast_context  # noqa: E402
from seqlab.training.loop import TrainConfig, clip_gradients, make_optimizer  # noqa: E402

RECIPES = {
    "cpu": dict(num_layers=4, num_heads=4, d_model=128, block_size=64, batch_size=12, lr=1e-3, beta2=0.99,
                weight_decay=0.1, clip_norm=1.0, dropout=0.0),
    "baby": dict(num_layers=6, num_heads=6, d_model=384, block_size=256, batch_size=64, lr=1e-3, beta2=0.99,
                 weight_decay=0.1, clip_norm=1.0, dropout=0.2),
}
RECIPE = RECIPES["cpu"]


# -- the reference -------------------------------------------------------------------------


class _RefBlock(nn.Module):
    """x <- x + drop(W_o SDPA(split(W_qkv LN(x))));  x <- x + drop(W_2 gelu(W_1 LN(x)))."""

    def __init__(self, d: int, h: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.h = h
        self.dropout = dropout
        self.drop = nn.Dropout(dropout)
        self.ln_1 = nn.LayerNorm(d, bias=False)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.ln_2 = nn.LayerNorm(d, bias=False)
        self.fc = nn.Linear(d, 4 * d, bias=False)
        self.fc_out = nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(D, dim=2)  # 3 x (B, T, D)
        q, k, v = (t.view(B, T, self.h, D // self.h).transpose(1, 2) for t in (q, k, v))  # (B, h, T, m)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, h, T, m)
        x = x + self.drop(self.proj(y.transpose(1, 2).contiguous().view(B, T, D)))
        return x + self.drop(self.fc_out(F.gelu(self.fc(self.ln_2(x)))))


class NanoGPTRef(nn.Module):
    """nanoGPT's GPT as its public description gives it (see the module docstring)."""

    def __init__(self, vocab_size: int, block_size: int, d: int, h: int, layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab_size, d)
        self.wpe = nn.Embedding(block_size, d)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_RefBlock(d, h, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d, bias=False)
        self.head = nn.Linear(d, vocab_size, bias=False)
        self.head.weight = self.wte.weight  # tied
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight", "fc_out.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T, device=idx.device)))  # (B, T, D)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))  # (B, T, V)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def ref_optimizer(model: nn.Module, lr: float, beta2: float, weight_decay: float,
                  fused: bool | None = None) -> torch.optim.AdamW:
    """nanoGPT's: decay the >= 2-D tensors; fused AdamW on CUDA only (``fused=None``: its rule;
    True: fused on this device too, the stricter comparison)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if fused is None:
        fused = params[0].device.type == "cuda"  # nanoGPT's rule
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, beta2), fused=fused or None)


# -- the training steps --------------------------------------------------------------------


def make_steps(vocab_size: int, seed: int = 0, recipe: dict | None = None, device: str = "cpu",
               precision: str = "auto") -> dict:
    """{name: (model, step(x, y) -> loss)}: seqlab, the reference with nanoGPT's optimizer
    rule, and the reference with fused AdamW; on ``device``, the forward passes in the
    trainer's autocast (bf16 on a CUDA GPU that has it, ``precision``)."""
    r = recipe or RECIPE
    torch.manual_seed(seed)
    ours = GPT(GPTConfig(vocab_size=vocab_size, block_size=r["block_size"], d_model=r["d_model"],
                         num_heads=r["num_heads"], num_layers=r["num_layers"], dropout=r["dropout"])).to(device)
    cfg = TrainConfig(lr=r["lr"], beta2=r["beta2"], weight_decay=r["weight_decay"], clip_norm=r["clip_norm"])
    opt_ours = make_optimizer(ours, cfg)  # the trainer's
    params_ours = [p for p in ours.parameters() if p.requires_grad]

    def autocast():
        return autocast_context(torch.device(device), precision)

    def step_ours(x, y):
        with autocast():
            loss, _ = ours.loss((x, y))
        value = float(loss.detach())  # the trainer reads the loss every step
        opt_ours.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(params_ours, clip_norm=r["clip_norm"])
        opt_ours.step()
        return value

    def reference(fused):
        torch.manual_seed(seed)
        ref = NanoGPTRef(vocab_size, r["block_size"], r["d_model"], r["num_heads"], r["num_layers"],
                         r["dropout"]).to(device)
        opt = ref_optimizer(ref, r["lr"], r["beta2"], r["weight_decay"], fused=fused)

        def step_ref(x, y):
            with autocast():
                loss = ref(x, y)
            value = float(loss.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ref.parameters(), r["clip_norm"])
            opt.step()
            return value

        return ref, step_ref

    return {"seqlab": (ours, step_ours), "reference": reference(None), "reference_fused": reference(True)}


def load_batches(n: int, seed: int = 0, recipe: dict | None = None, device: str = "cpu"):
    from seqlab.data.text import load_corpus
    from seqlab.data.tokens import TokenDataset
    from seqlab.llm.tokenizers import CharTokenizer

    r = recipe or RECIPE
    text = load_corpus("shakespeare").text
    tok = CharTokenizer.from_text(text)
    data = TokenDataset.from_text(text, tok, r["block_size"])
    g = torch.Generator().manual_seed(seed)
    batches = [data.get_batch("train", r["batch_size"], g) for _ in range(n)]
    return tok.vocab_size, [(x.to(device), y.to(device)) for x, y in batches]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(step, batches, device: str = "cpu") -> float:
    _sync(device)
    t0 = time.perf_counter()
    for x, y in batches:
        step(x, y)
    _sync(device)  # the GPU's queue drained: the steps' own time
    return (time.perf_counter() - t0) / len(batches)


def measure(threads: int, rounds: int, steps: int, warmup: int, recipe: dict | None = None, device: str = "cpu",
            precision: str = "auto") -> dict:
    torch.set_num_threads(threads)
    vocab, batches = load_batches(steps, recipe=recipe, device=device)
    contenders = make_steps(vocab, recipe=recipe, device=device, precision=precision)
    params = {k: sum(p.numel() for p in m.parameters()) for k, (m, _) in contenders.items()}
    for _ in range(warmup):
        for x, y in batches[:2]:
            for _, step in contenders.values():
                step(x, y)
    times: dict[str, list[float]] = {k: [] for k in contenders}
    names = list(contenders)
    for i in range(rounds):
        for k in (names if i % 2 == 0 else names[::-1]):
            times[k].append(time_steps(contenders[k][1], batches, device))
    out = {"threads": threads, "rounds": rounds, "steps_per_round": steps, "parameters": params,
           "ms": {k: 1e3 * statistics.median(v) for k, v in times.items()},
           "ms_all": {k: [round(1e3 * t, 3) for t in v] for k, v in times.items()}}
    for ref in ("reference", "reference_fused"):
        pair = [a / b for a, b in zip(times["seqlab"], times[ref])]
        out[f"ratio_{ref}"] = statistics.median(times["seqlab"]) / statistics.median(times[ref])
        out[f"ratio_{ref}_median_of_rounds"] = statistics.median(pair)
        out[f"ratio_{ref}_quartiles_of_rounds"] = statistics.quantiles(pair, n=4) if rounds > 1 else pair
    return out


def profile(threads: int, steps: int) -> str:
    from torch.profiler import ProfilerActivity, profile as tprofile

    torch.set_num_threads(threads)
    vocab, batches = load_batches(steps)
    out = []
    for name, (_, step) in make_steps(vocab).items():
        for x, y in batches[:3]:
            step(x, y)
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            for x, y in batches:
                step(x, y)
        out.append(f"== {name}\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="torch thread counts to measure")
    p.add_argument("--rounds", type=int, default=40, help="interleaved rounds per thread count")
    p.add_argument("--steps", type=int, default=5, help="training steps per model per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps (pairs of batches)")
    p.add_argument("--profile", action="store_true", help="print torch.profiler tables instead of timing")
    p.add_argument("--recipe", choices=sorted(RECIPES), default="cpu",
                   help="cpu: nanoGPT's CPU recipe (default); baby: its baby GPT, for a GPU")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="the trainer's rule: auto = bf16 autocast on a CUDA GPU that has it, else float32")
    p.add_argument("--out", default=None, help="output prefix (.md and .json; default "
                   "benchmarks/results/gpt_speed_cpu, or gpt_speed_DEVICE_RECIPE for another recipe or device)")
    args = p.parse_args(argv)
    recipe = RECIPES[args.recipe]
    if args.out is None:
        name = "gpt_speed_cpu" if (args.recipe, args.device) == ("cpu", "cpu") else \
            f"gpt_speed_{args.device.split(':')[0]}_{args.recipe}"
        args.out = str(ROOT / "benchmarks" / "results" / name)
    if args.profile:
        print(profile(args.threads[0], args.steps))
        return 0
    mach = machine_with_load()
    t0 = time.perf_counter()
    rows = [measure(t, args.rounds, args.steps, args.warmup, recipe, args.device, args.precision)
            for t in args.threads]
    wall = time.perf_counter() - t0
    command = "python benchmarks/bench_gpt_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"command": command.strip(), "date": time.strftime("%Y-%m-%d %H:%M"), "machine": mach,
              "load_average_at_end": list(__import__("os").getloadavg()), "recipe": recipe,
              "recipe_name": args.recipe, "device": args.device, "precision": args.precision,
              "wall_seconds": round(wall, 1), "results": rows}
    if args.device.startswith("cuda"):
        mach["gpu"] = torch.cuda.get_device_name()
    where = mach.get("gpu", mach["cpu"])
    lines = [
        f"# GPT training step on {'a GPU' if 'gpu' in mach else 'the CPU'}: seqlab vs a nanoGPT-style reference", "",
        f"`{report['command']}` — {report['date']}, {where}, {mach['cores']} CPU cores, torch {mach['torch']}; "
        f"load average {mach['load_average_at_start'][0]:.2f} at the start, "
        f"{report['load_average_at_end'][0]:.2f} at the end; {wall:.0f} s.", "",
        ("nanoGPT's CPU recipe (4 layers, 4 heads, width 128, context 64, batch 12, tiny Shakespeare characters). "
         if args.recipe == "cpu" else
         "nanoGPT's baby GPT (6 layers, 6 heads, width 384, context 256, batch 64, dropout 0.2, tiny Shakespeare "
         f"characters), precision {args.precision}, no torch.compile. ") +
        "A step = forward + loss, backward, gradient clipping, AdamW step. Median over "
        "interleaved rounds of the per-step time; ratio = seqlab / reference (issue 17 target: <= 1.0).", "",
        "| threads | reference's AdamW | parameters (seqlab / reference) | seqlab ms/step | reference ms/step "
        "| ratio of medians | median of per-round ratios (quartiles) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for ref, opt in (("reference", "nanoGPT's rule (not fused on the CPU)"), ("reference_fused", "fused")):
            q = r[f"ratio_{ref}_quartiles_of_rounds"]
            lines.append(f"| {r['threads']} | {opt} | {r['parameters']['seqlab']:,} / {r['parameters'][ref]:,} | "
                         f"{r['ms']['seqlab']:.2f} | {r['ms'][ref]:.2f} | {r[f'ratio_{ref}']:.3f} | "
                         f"**{r[f'ratio_{ref}_median_of_rounds']:.3f}** ({q[0]:.3f}-{q[-1]:.3f}) |")
    busy = mach["load_average_at_start"][0] > 0.5 * (mach["cores"] or 1)
    lines += ["", "Other work was running on the machine (see the load average): re-measure on an idle one." if busy
              else "", ""]
    atomic_write_text(Path(f"{args.out}.json"), json.dumps(report, indent=2) + "\n")
    atomic_write_text(Path(f"{args.out}.md"), "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
