"""Training throughput of ``seqlab train gpt`` in one process and under ``torchrun`` (gloo, CPU).

    python benchmarks/bench_ddp.py                        # writes results/ddp_cpu.{md,json}
    python benchmarks/bench_ddp.py --rounds 1 --steps 20 --out /tmp/ddp   # smoke test

The recipe is the default GPT (nanoGPT's CPU recipe: 4 layers, 4 heads, width 128, context 64)
with a global batch of 12, on the embedded text. Each round runs, one after the other, as
separate commands (the order rotating between rounds):

- ``1 process, 1 thread``:  ``OMP_NUM_THREADS=1 seqlab train gpt ...``
- ``1 process, 2 threads``: ``OMP_NUM_THREADS=2 seqlab train gpt ...``
- ``torchrun 1 x 1 thread``: ``torchrun --nproc-per-node 1 -m seqlab train gpt ...`` (DDP's cost
  with nothing to share: the gradient all-reduce, the loss and stop-flag all-reduces, the
  unused-parameter search)
- ``torchrun 2 x 1 thread``: ``torchrun --nproc-per-node 2 -m seqlab train gpt ...`` (6 items a rank)

The figure is the trainer's own ``tokens_per_s`` of the logged training windows (global
tokens, training time only: start-up and evaluations are left out), the median over the
windows after the first (warm-up). Reported: the median over rounds of each, and each one's
ratio to ``1 process, 2 threads`` (the same two cores), above 1 faster. On a shared machine
these numbers drift with the other processes' load (recorded at the start): re-measure on an
idle machine before reading much into them.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_recurrent_speed import machine_with_load  # noqa: E402

CONFIGS = {
    "1 process, 1 thread": (None, 1),
    "1 process, 2 threads": (None, 2),
    "torchrun 1 x 1 thread": (1, 1),
    "torchrun 2 x 1 thread": (2, 1),
}
BASELINE = "1 process, 2 threads"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(nproc: int | None, steps: int, log_every: int, out: Path) -> list[str]:
    flags = ["train", "gpt", "--batch-size", "12", "--max-steps", str(steps), "--eval-every", str(10 * steps),
             "--log-every", str(log_every), "--device", "cpu", "--no-tensorboard", "--quiet", "--out", str(out)]
    if nproc is None:
        return [sys.executable, "-m", "seqlab", *flags]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port",
            str(free_port()), "-m", "seqlab", *flags]


def throughput(run_dir: Path) -> float:
    """Median tokens/s of the logged training windows after the first."""
    rates = [r["tokens_per_s"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
             if r.get("split") == "train" and "tokens_per_s" in r]
    if len(rates) < 2:
        raise SystemExit(f"bench_ddp: {run_dir} logged {len(rates)} training windows; give more --steps")
    return statistics.median(rates[1:])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ddp_cpu"),
                   help="path of the results without extension (.md and .json are written)")
    args = p.parse_args(argv)
    machine = machine_with_load()
    started = time.perf_counter()
    rates: dict[str, list[float]] = {name: [] for name in CONFIGS}
    names = list(CONFIGS)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                          "MASTER_PORT")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        for r in range(args.rounds):
            for i in range(len(names)):
                name = names[(i + r) % len(names)]
                nproc, threads = CONFIGS[name]
                out = Path(tmp) / f"{r}-{i}"
                subprocess.run(command(nproc, args.steps, args.log_every, out), check=True, cwd=tmp,
                               env={**env, "OMP_NUM_THREADS": str(threads)}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                rates[name].append(throughput(out))
                print(f"round {r + 1}: {name}: {rates[name][-1]:,.0f} tok/s", file=sys.stderr, flush=True)
    base = statistics.median(rates[BASELINE])
    rows = [{"config": name, "tokens_per_s": statistics.median(v), "rounds": v,
             "ratio_to_baseline": statistics.median(v) / base} for name, v in rates.items()]
    wall = time.perf_counter() - started
    reproduce = "python benchmarks/bench_ddp.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"benchmark": "ddp_cpu", "command": reproduce.strip(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": machine, "steps": args.steps,
              "rounds": args.rounds, "global_batch": 12, "baseline": BASELINE, "wall_seconds": round(wall, 1),
              "results": rows}
    lines = ["# Data-parallel training on the CPU (gloo): GPT throughput", "",
             f"`{result['command']}`, {args.rounds} rounds of {args.steps} steps, global batch 12, "
             f"nanoGPT's CPU recipe (default `seqlab train gpt`); {wall:.0f} s in all.", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, Python "
             f"{machine['python']}; load average at the start "
             + ", ".join(f"{x:.2f}" for x in machine["load_average_at_start"]) + ".", "",
             "| configuration | tokens/s (median) | ratio to 1 process, 2 threads | rounds |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['config']} | {row['tokens_per_s']:,.0f} | {row['ratio_to_baseline']:.2f}x | "
                     + ", ".join(f"{v:,.0f}" for v in row["rounds"]) + " |")
    lines += ["", "tokens/s is the trainer's own (global tokens, training time only); above 1 is faster. Measured on "
              "a shared machine (load average above): re-measure on an idle one."]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from seqlab.training.io import atomic_write_text

    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
