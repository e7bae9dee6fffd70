"""The LSTM character model's training loop: seqlab's LSTM against torch.nn.LSTM, step time.

    python benchmarks/bench_charlm_loop.py            # ~2 minutes
    python benchmarks/bench_charlm_loop.py --quick    # a smoke test; writes to /tmp unless --out

The same character model as ``bench_charlm_quality.py`` (one-hot input, one LSTM layer of
256 units, softmax output; windows of 64 characters, batches of 32, tiny Shakespeare), once
with seqlab's LSTM and once with nn.LSTM as its core. Two measures, each a ratio of times
(seqlab / nn.LSTM), from runs that alternate between the two models so that a change of the
machine's speed hits both alike:

- loop: tokens per second of the trainer's own loop (``seqlab.training.loop.train``: batch,
  forward, loss, backward, clipping, AdamW, logging), over several short runs of each model,
  the median of the runs' rates after their first logging window;
- parts: the median time of one step of each part, measured apart: the recurrent layer
  alone (forward and backward of its outputs, the microbenchmark's measure at this size), and
  the whole step (forward, loss, backward, clipping, AdamW); their difference is what the
  rest of the loop costs, the same code for both models.

So the table says whether the loop loses anything the layer's microbenchmark does not.
Writes ``benchmarks/results/charlm_loop.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_charlm_quality import build  # noqa: E402
from bench_recurrent_speed import machine_with_load  # noqa: E402
from seqlab.data.text import read_text_file, shakespeare_path  # noqa: E402
from seqlab.data.tokens import TokenDataset  # noqa: E402
from seqlab.llm.tokenizers import CharTokenizer  # noqa: E402
from seqlab.training.config import TrainConfig  # noqa: E402
from seqlab.training.loop import train  # noqa: E402

MODELS = ("torch-lstm", "lstm")  # the reference first


def model_args(hidden: int):
    return argparse.Namespace(hidden_size=hidden, num_layers=1, dropout=0.0, forget_bias=1.0)


def loop_rate(name: str, data: TokenDataset, steps: int, hidden: int, batch: int) -> float:
    """Tokens per second of the trainer's loop over ``steps`` steps (the mean of its logged
    rates after the first logging window, where the allocator settles)."""
    torch.manual_seed(0)
    model = build(name, data.vocab_size, model_args(hidden))
    log_every = max(1, steps // 10)
    cfg = TrainConfig(max_steps=steps, batch_size=batch, lr=2e-2, warmup_steps=10, clip_norm=1.0,
                      eval_every=steps, eval_batches=1, seed=0, device="cpu", log_every=log_every)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(model, data, cfg, Path(tmp) / "run", family=f"bench-{name}",
                       model_config={"name": name}, progress=False)
    rates = [r["tokens_per_s"] for r in result.history if r.get("split") == "train" and "tokens_per_s" in r]
    rates = rates[1:] or rates
    return sum(rates) / len(rates)


def part_times(data: TokenDataset, rounds: int, reps: int, hidden: int, batch: int) -> dict:
    """Median milliseconds of the layer alone and of the whole step, per model, interleaved."""
    built = {}
    g = torch.Generator().manual_seed(0)
    x, y = data.get_batch("train", batch, g)
    for name in MODELS:
        torch.manual_seed(0)
        model = build(name, data.vocab_size, model_args(hidden))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        one_hot = torch.nn.functional.one_hot(x, data.vocab_size).float()
        grad = torch.randn(batch, x.shape[1], hidden, generator=g)

        def layer(model=model, one_hot=one_hot, grad=grad):
            out, _ = model.core(one_hot)
            out.backward(grad)

        def whole(model=model, opt=opt):
            loss, _ = model.loss((x, y))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        built[name] = {"layer": layer, "step": whole}
    times = {name: {part: [] for part in ("layer", "step")} for name in MODELS}
    for name in MODELS:  # warm-up
        for part in ("layer", "step"):
            for _ in range(3):
                built[name][part]()
    for r in range(rounds):
        for name in (MODELS if r % 2 == 0 else MODELS[::-1]):
            for part in ("layer", "step"):
                for _ in range(reps):
                    t0 = time.perf_counter()
                    built[name][part]()
                    times[name][part].append(time.perf_counter() - t0)
    return {name: {part: statistics.median(v) * 1e3 for part, v in parts.items()} for name, parts in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny settings; writes to /tmp/bench_charlm_loop unless --out")
    p.add_argument("--runs", type=int, default=4, help="short training runs per model, alternated")
    p.add_argument("--steps", type=int, default=150, help="steps per run")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    info = machine_with_load()
    t_start = time.perf_counter()
    hidden, batch, block = (32, 8, 16) if args.quick else (256, 32, 64)
    runs, steps = (2, 12) if args.quick else (args.runs, args.steps)
    path = str(shakespeare_path())
    text = read_text_file(path)
    if args.quick:
        text = text[:50_000]
    data = TokenDataset.from_text(text, CharTokenizer.from_text(text), block)

    rates: dict[str, list[float]] = {name: [] for name in MODELS}
    for r in range(runs):
        for name in (MODELS if r % 2 == 0 else MODELS[::-1]):
            rates[name].append(loop_rate(name, data, steps, hidden, batch))
            print(f"run {r + 1}/{runs} {name:10s} {rates[name][-1]:,.0f} tokens/s", flush=True)
    rate = {name: statistics.median(v) for name, v in rates.items()}
    parts = part_times(data, 2 if args.quick else 8, 2 if args.quick else 5, hidden, batch)
    ref, ours = parts["torch-lstm"], parts["lstm"]
    result = {
        "command": "python benchmarks/bench_charlm_loop.py" + (" --quick" if args.quick else ""),
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": info, "load_average_at_end": list(os.getloadavg()),
        "settings": {"hidden_size": hidden, "batch_size": batch, "block_size": block, "runs": runs, "steps": steps,
                     "vocab_size": data.vocab_size},
        "tokens_per_s": rate, "tokens_per_s_runs": rates,
        "loop_time_ratio": rate["torch-lstm"] / rate["lstm"],
        "ms": parts,
        "layer_ratio": ours["layer"] / ref["layer"], "step_ratio": ours["step"] / ref["step"],
        "rest_ms": {name: parts[name]["step"] - parts[name]["layer"] for name in MODELS},
        "seconds": time.perf_counter() - t_start,
    }
    out = Path(args.out) if args.out else (Path("/tmp/bench_charlm_loop/charlm_loop") if args.quick
                                           else ROOT / "benchmarks" / "results" / "charlm_loop")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    load = ", ".join(f"{v:.2f}" for v in info["load_average_at_start"])
    lines = [
        "# The LSTM character model's training loop: seqlab's LSTM vs nn.LSTM",
        "",
        f"`{result['command']}` — {result['date']}, {info['cpu']}, {info['cores']} cores, torch {info['torch']}; "
        f"load average {load} at the start; {result['seconds']:.0f} s.",
        f"One-hot input, one LSTM layer of {hidden} units, softmax output; windows of {block} characters, batches "
        f"of {batch}, tiny Shakespeare. Ratios are seqlab's time over nn.LSTM's (issue 17 target: <= 1.0).",
        "",
        "| measure | nn.LSTM | seqlab | time ratio |",
        "|---|---|---|---|",
        f"| the trainer's loop, tokens/s (median of {runs} runs of {steps} steps, alternated) | "
        f"{rate['torch-lstm']:,.0f} | {rate['lstm']:,.0f} | {result['loop_time_ratio']:.2f} |",
        f"| the recurrent layer alone, forward + backward (ms) | {ref['layer']:.2f} | {ours['layer']:.2f} | "
        f"{result['layer_ratio']:.2f} |",
        f"| a whole step: forward, loss, backward, clipping, AdamW (ms) | {ref['step']:.2f} | {ours['step']:.2f} | "
        f"{result['step_ratio']:.2f} |",
        f"| the rest of the step (whole step - layer, ms) | {result['rest_ms']['torch-lstm']:.2f} | "
        f"{result['rest_ms']['lstm']:.2f} | |",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
