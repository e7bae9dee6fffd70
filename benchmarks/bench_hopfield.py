"""Hopfield network: measured critical load against theory, and recall throughput.

    python benchmarks/bench_hopfield.py            # full run, about 1 minute on 2 cores
    python benchmarks/bench_hopfield.py --quick    # smoke test; writes to /tmp unless --out

Part 1. Critical load (seqlab.energy.capacity.measure_capacity: start at each stored
pattern, asynchronous sweeps, critical load = largest P/N with mean overlap >= 0.95 before
the first below) for N = 100, 200, 500 and the rules hebbian, pseudo-inverse, storkey,
against alpha_c = 0.138 (Amit-Gutfreund-Sompolinsky, Hebbian rule, N -> infinity).

Part 2. Recall throughput (patterns per second) for N = 1000 units, 50 stored patterns
(Hebbian), start states with 10 % of the units flipped:
  async (HopfieldNetwork.recall)      one pattern at a time, seqlab's recall (records the
                                      trajectory and its energies)
  sync  (HopfieldNetwork.recall)      one pattern at a time, mode="sync"
  async (batched, capacity.py)        all patterns at once, async_sweeps
  sync  (batched matrix product)      all patterns at once, a <- sign(a W + b) to a fixed point
float64, CPU. Writes benchmarks/results/hopfield.{md,json} (or --out DIR).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_recurrent_speed import machine  # noqa: E402

from seqlab.energy import HopfieldNetwork  # noqa: E402
from seqlab.energy.capacity import ALPHA_C, async_sweeps, measure_capacity  # noqa: E402

RULES = ("hebbian", "pseudo-inverse", "storkey")
LOADS = (0.04, 0.06, 0.08, 0.10, 0.12, 0.14, 0.16, 0.18, 0.20, 0.25, 0.30, 0.40, 0.50, 0.60, 0.80)


def capacity_part(units, loads, trials, seed):
    rows = []
    for rule in RULES:
        t = time.perf_counter()
        r = measure_capacity(units, loads, rule=rule, trials=trials, generator=torch.Generator().manual_seed(seed))
        dt = time.perf_counter() - t
        for N in units:
            rows.append({"rule": rule, "N": N, "critical_load": r.critical[N], "censored": r.censored[N],
                         "overlap": dict(zip(map(str, r.loads), r.overlap[N])), "seconds_all_N": round(dt, 2)})
    return rows


def throughput_part(N, P, n_recall, flip, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randint(0, 2, (P, N), generator=g).to(torch.float64) * 2 - 1
    net = HopfieldNetwork(n_units=N).store(X)
    noisy = X.clone()
    k = round(flip * N)
    for p in range(P):
        noisy[p, torch.randperm(N, generator=g)[:k]] *= -1
    rows = []

    def overlap(states):
        return float(((states * X[: len(states)]).sum(1) / N).mean())

    for mode in ("async", "sync"):
        t = time.perf_counter()
        finals = [net.recall(noisy[p], mode=mode, generator=g).state for p in range(n_recall)]
        dt = time.perf_counter() - t
        rows.append({"method": f"{mode} (HopfieldNetwork.recall)", "patterns": n_recall, "seconds": dt,
                     "patterns_per_s": n_recall / dt, "mean_overlap": overlap(torch.stack(finals))})
    w, b = net.w.numpy(), net.b.numpy()
    t = time.perf_counter()
    a, _ = async_sweeps(w, b, noisy.numpy().copy(), max_sweeps=100, rng=np.random.default_rng(seed))
    dt = time.perf_counter() - t
    rows.append({"method": "async (batched, capacity.async_sweeps)", "patterns": P, "seconds": dt,
                 "patterns_per_s": P / dt, "mean_overlap": overlap(torch.from_numpy(a))})
    t = time.perf_counter()
    a = noisy.clone()
    for _ in range(100):
        new = torch.where(a @ net.w + net.b > 0, 1.0, -1.0).to(torch.float64)
        if torch.equal(new, a):
            break
        a = new
    dt = time.perf_counter() - t
    rows.append({"method": "sync (batched matrix product)", "patterns": P, "seconds": dt,
                 "patterns_per_s": P / dt, "mean_overlap": overlap(a)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, writes to /tmp/seqlab_bench unless --out")
    ap.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.quick:
        units, loads, trials, n_recall = [100, 200], LOADS[::2], 1, 3
        out = Path(args.out or "/tmp/seqlab_bench")
    else:
        units, loads, trials, n_recall = [100, 200, 500], LOADS, 3, 50
        out = Path(args.out or ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cap = capacity_part(units, loads, trials, args.seed)
    thr = throughput_part(1000, 50, n_recall, 0.1, args.seed)
    total = time.perf_counter() - t0
    info = machine()
    payload = {"machine": info, "quick": args.quick, "theory_alpha_c": ALPHA_C, "trials": trials,
               "loads": list(loads), "capacity": cap, "throughput": thr, "total_seconds": round(total, 1)}
    (out / "hopfield.json").write_text(json.dumps(payload, indent=2) + "\n")
    md = ["# Hopfield network: capacity and recall throughput", "",
          f"Machine: {info['cpu']}, {info['cores']} cores, {info['threads']} threads, torch {info['torch']}, "
          f"Python {info['python']}. Total {total:.0f} s{' (--quick)' if args.quick else ''}.", "",
          f"## Critical load (mean overlap >= 0.95; {trials} trial(s); start at the stored pattern)", "",
          "| rule | N | critical load measured | theory (Hebbian) |", "|---|---:|---:|---:|"]
    for r in cap:
        c = r["critical_load"]
        cs = "< min" if c is None else (f">= {c:g}" if r["censored"] else f"{c:g}")
        md.append(f"| {r['rule']} | {r['N']} | {cs} | {ALPHA_C} |")
    md += ["", "## Recall throughput, N = 1000, 50 stored patterns (Hebbian), 10 % flipped", "",
           "| method | patterns | seconds | patterns / s | mean final overlap |", "|---|---:|---:|---:|---:|"]
    for r in thr:
        md.append(f"| {r['method']} | {r['patterns']} | {r['seconds']:.3f} | {r['patterns_per_s']:.1f} | "
                  f"{r['mean_overlap']:.3f} |")
    (out / "hopfield.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"wrote {out / 'hopfield.md'}, {out / 'hopfield.json'}")


if __name__ == "__main__":
    main()
