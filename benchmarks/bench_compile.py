"""What ``seqlab train --compile`` gains on a CPU: a GPT training step with and without
``torch.compile``, measured in the same process.

    python benchmarks/bench_compile.py               # nanoGPT's CPU recipe, ~3-5 minutes on 2 cores
    python benchmarks/bench_compile.py --quick       # a smaller GPT, a smoke test; writes to /tmp
    python benchmarks/bench_compile.py --threads 1 --out /tmp/compile_1thread

The model is nanoGPT's CPU recipe for tiny Shakespeare (4 layers, 4 heads, width 128, context
64, batch 12, V = 65; seqlab's preset cpu-small), random token batches (the speed does not
depend on the text). One step = forward, ``GPT.loss``, backward, AdamW step (the trainer's
``make_optimizer`` with ``seqlab train gpt``'s defaults), as in ``bench_transformer_speed.py``
section 3. Two copies start from the same weights: the plain model, and the same model
compiled in place by ``seqlab.transformer.compile.compile_in_place`` (what ``--compile`` does;
backend inductor). Their first-step losses are checked to agree.

Method. The compiled model's first step (tracing + code generation + the C++ build) is timed
on its own and reported as the compile time; then both make ``--warmup`` untimed steps, and
``--rounds`` rounds alternate between them (the order reversed on odd rounds), ``--reps`` timed
steps each; each figure is the median over all timed steps. Writes
``benchmarks/results/compile_cpu.{md,json}`` (``--out PREFIX`` elsewhere) with the machine,
the load average at the start, the date and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_recurrent_speed import machine_with_load  # noqa: E402
from bench_transformer_speed import alternate  # noqa: E402
from seqlab.llm.gpt import GPT, GPTConfig  # noqa: E402
from seqlab.runs import get_family  # noqa: E402
from seqlab.training.config import TrainConfig  # noqa: E402
from seqlab.training.io import atomic_write_text  # noqa: E402
from seqlab.training.loop import make_optimizer  # noqa: E402
from seqlab.transformer.compile import BACKEND, compile_in_place  # noqa: E402

VOCAB = 65
RECIPE = {"preset": "cpu-small", "batch": 12, "context": 64}  # nanoGPT's CPU recipe
QUICK = {"preset": "cpu-tiny", "batch": 4, "context": 32}


def bench(spec: dict, rounds: int, reps: int, warmup: int) -> dict:
    B, T = spec["batch"], spec["context"]
    torch.manual_seed(0)
    config = GPTConfig.preset(spec["preset"], vocab_size=VOCAB, block_size=T)
    plain = GPT(config)
    compiled = GPT(config)
    compiled.load_state_dict(plain.state_dict())
    fallbacks: list[str] = []
    note = compile_in_place(compiled, on_fallback=fallbacks.append)
    cfg = TrainConfig.from_dict(get_family("gpt").train_defaults)
    models = {"plain": plain, "compiled": compiled}
    optims = {name: make_optimizer(m.train(), cfg) for name, m in models.items()}
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, VOCAB, (B, T), generator=g)
    y = torch.randint(0, VOCAB, (B, T), generator=g)

    def runner(name):
        model, opt = models[name], optims[name]

        def step():
            opt.zero_grad(set_to_none=True)
            loss, _ = model.loss((x, y))
            loss.backward()
            opt.step()
            return loss.detach()
        return step

    steps = {name: runner(name) for name in models}
    t0 = time.perf_counter()
    first_plain = float(steps["plain"]())
    plain_first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    first_compiled = float(steps["compiled"]())
    compile_s = time.perf_counter() - t0
    if abs(first_compiled - first_plain) > 1e-4 * abs(first_plain):
        raise AssertionError(f"the compiled model's first loss {first_compiled} differs from the plain one's "
                             f"{first_plain}")
    t = alternate(steps, rounds, reps, warmup=warmup)
    ms = {name: r["median_s"] * 1e3 for name, r in t.items()}
    return {"preset": spec["preset"], "B": B, "T": T, "params": plain.num_parameters(), "backend": BACKEND,
            "note": note, "fallback": fallbacks, "first_loss_plain": first_plain, "first_loss_compiled": first_compiled,
            "first_step_s_plain": plain_first_s, "first_step_s_compiled": compile_s,
            "ms_plain": ms["plain"], "ms_compiled": ms["compiled"], "speedup": ms["plain"] / ms["compiled"],
            "tokens_per_s_plain": B * T / (ms["plain"] / 1e3), "tokens_per_s_compiled": B * T / (ms["compiled"] / 1e3),
            "timings": t}


def markdown(info: dict, command: str, date: str, r: dict, rounds: int, reps: int, warmup: int, threads: int,
             quick: bool) -> str:
    verdict = ("compiled" if not r["fallback"] else "**compilation failed, so both ran plain**: " + r["fallback"][0])
    L = [
        "# `seqlab train --compile` on a CPU: a GPT training step",
        "",
        (f"Machine: {info['cpu']}, {info['cores']} CPU cores, torch {info['torch']} with {threads} thread(s), "
         f"Python {info['python']}; load average at the start "
         f"{', '.join(f'{x:.2f}' for x in info['load_average_at_start'])}; measured {date}. "
         f"Command: `{command}`." + (" **Quick run: small sizes, not the recipe's figures.**" if quick else "")),
        "",
        (f"Preset {r['preset']} ({r['params']:,} parameters), V = {VOCAB}, batch {r['B']} x context {r['T']}; one "
         "step = forward, loss, backward, AdamW. `compile_in_place` (backend "
         f"{r['backend']}): {verdict}. Medians of {rounds} alternating rounds x {reps} steps after {warmup} "
         f"warm-up steps each. First losses: plain {r['first_loss_plain']:.6f}, compiled "
         f"{r['first_loss_compiled']:.6f}."),
        "",
        "| model | ms / step | tokens/s | speed-up |",
        "|---|---|---|---|",
        f"| plain | {r['ms_plain']:.1f} | {r['tokens_per_s_plain']:,.0f} | 1.00x |",
        f"| compiled | {r['ms_compiled']:.1f} | {r['tokens_per_s_compiled']:,.0f} | {r['speedup']:.2f}x |",
        "",
        (f"Compile time (the compiled model's first step, tracing and C++ build included): "
         f"{r['first_step_s_compiled']:.1f} s, against {r['first_step_s_plain'] * 1e3:.0f} ms for the plain "
         f"model's first step. "
         + (f"It pays for itself after about "
            f"{r['first_step_s_compiled'] / ((r['ms_plain'] - r['ms_compiled']) / 1e3):,.0f} steps."
            if r["ms_plain"] > r["ms_compiled"] else "It does not pay for itself here (no speed-up).")),
        "",
        ("Measured on a shared 2-core machine under the load above: ratios are noisy and must be re-measured on "
         "an idle machine." if info["load_average_at_start"][0] > 1.5 else ""),
    ]
    return "\n".join(L).rstrip() + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smaller GPT, few rounds; writes to /tmp unless --out")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 8; quick 2)")
    p.add_argument("--reps", type=int, default=None, help="timed steps per model per round (default 5; quick 2)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps of each model before timing (default 3)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the machine's cores)")
    p.add_argument("--out", default=None, help="output prefix: PREFIX.md and PREFIX.json (default "
                   "benchmarks/results/compile_cpu; with --quick /tmp/bench_compile_quick)")
    args = p.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 8)
    reps = args.reps if args.reps is not None else (2 if args.quick else 5)
    threads = args.threads if args.threads is not None else (os.cpu_count() or 1)
    if min(rounds, reps, threads) < 1 or args.warmup < 0:
        p.error("--rounds, --reps and --threads must be >= 1, --warmup >= 0")
    torch.set_num_threads(threads)
    out = Path(args.out) if args.out else (Path("/tmp/bench_compile_quick") if args.quick
                                           else ROOT / "benchmarks" / "results" / "compile_cpu")
    info = machine_with_load()
    date = time.strftime("%Y-%m-%d")
    command = " ".join(["python benchmarks/bench_compile.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, {threads} thread(s), "
          f"load {info['load_average_at_start']}", flush=True)
    t_start = time.perf_counter()
    r = bench(QUICK if args.quick else RECIPE, rounds, reps, args.warmup)
    elapsed = time.perf_counter() - t_start
    print(f"GPT {r['preset']} B={r['B']} T={r['T']}: plain {r['ms_plain']:.1f} ms/step, compiled "
          f"{r['ms_compiled']:.1f} ms/step, speed-up x{r['speedup']:.2f}; compile time "
          f"{r['first_step_s_compiled']:.1f} s{'; FALLBACK: ' + r['fallback'][0] if r['fallback'] else ''}; "
          f"total {elapsed:.0f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    md, js = Path(f"{out}.md"), Path(f"{out}.json")
    atomic_write_text(js, json.dumps({"machine": info, "date": date, "command": command, "quick": args.quick,
                                      "threads": threads, "rounds": rounds, "reps": reps, "warmup": args.warmup,
                                      "seconds": elapsed, **r}, indent=2))
    atomic_write_text(md, markdown(info, command, date, r, rounds, reps, args.warmup, threads, args.quick))
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
