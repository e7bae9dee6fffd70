"""The recurrent Triton kernels' tile and launch settings, timed on a GPU: for each cell at the two
sizes of the speed benchmark, a training step (forward and backward of all outputs) of seqlab's
fused layer under each candidate setting, against cuDNN's in the same rounds.

``seqlab/recurrent/triton_loops.py`` chose its settings (``TILES``, ``LAUNCH``) from ptxas's
report alone (no spills, little shared memory), with no GPU to time them on; this script is
what a lent GPU runs to choose among them by time (``benchmarks/gpu_check.sh`` runs it last).

    python benchmarks/bench_triton_tiles.py                 # a CUDA GPU: writes OUT.md / OUT.json
    python benchmarks/bench_triton_tiles.py --quick         # tiny sizes, two settings (any GPU)

Without a GPU it says so in one line and exits 2 (``--quick`` also runs on a CPU in Triton's
interpreter, TRITON_INTERPRET=1 SEQLAB_TRITON=interpret: a check of the script, not a timing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_recurrent_speed import SIZES, build, machine, step  # noqa: E402

from seqlab.recurrent import triton_loops  # noqa: E402

# candidate settings: (float32 IEEE tile (BLOCK_N, BLOCK_K), TF32 tile, num_warps, num_stages);
# the first is the one in use
CANDIDATES = [((32, 64), (32, 32), 8, 2), ((64, 64), (64, 32), 8, 2), ((32, 32), (32, 32), 4, 2),
              ((16, 64), (16, 64), 4, 2), ((32, 64), (32, 32), 8, 1)]


def _apply(candidate) -> None:
    ieee, tf32, warps, stages = candidate
    triton_loops.TILES[(torch.float32, "ieee")] = ieee
    triton_loops.TILES[(torch.float32, "tf32")] = tf32
    triton_loops.LAUNCH.update(num_warps=warps, num_stages=stages)


def _time(built, reps: int) -> float:
    for _ in range(2):  # compiles the kernels of this setting
        step(*built)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step(*built)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes and two settings")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--out", default=None, help="output prefix (default benchmarks/results/triton_tiles)")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not triton_loops.usable(torch.zeros(1, device=device)):
        print("bench_triton_tiles: expected a CUDA GPU where seqlab's Triton kernels run (compute capability "
              f"8.0 or more, triton 3 or later), received {device} without them", file=sys.stderr)
        return 2
    if device == "cpu" and not args.quick:
        print("bench_triton_tiles: expected a CUDA GPU (on a CPU only --quick, in the interpreter), received cpu",
              file=sys.stderr)
        return 2
    sizes = [(4, 3, 5, 20)] if args.quick else SIZES
    candidates = CANDIDATES[:2] if args.quick else CANDIDATES
    reps = 1 if args.quick else args.reps
    saved = dict(triton_loops.TILES), dict(triton_loops.LAUNCH)
    rows = []
    try:
        for size in sizes:
            for cell in ("rnn", "lstm", "gru"):
                torch_ms = _time(build(cell, "torch", *size, device=device), reps) if device == "cuda" else None
                for k, candidate in enumerate(candidates):
                    _apply(candidate)
                    ms = _time(build(cell, "seqlab", *size, device=device), reps)
                    rows.append({"cell": cell, "size": list(size), "candidate": k, "setting": candidate, "ms": ms,
                                 "ms_torch": torch_ms, "ratio": None if torch_ms is None else ms / torch_ms})
                    ratio = "" if torch_ms is None else f" ({ms / torch_ms:.2f}x cuDNN's {torch_ms:.2f} ms)"
                    print(f"{cell:4} B,T,I,H={size}: setting {k} {candidate}: {ms:.2f} ms{ratio}", flush=True)
    finally:
        triton_loops.TILES.clear()
        triton_loops.TILES.update(saved[0])
        triton_loops.LAUNCH.clear()
        triton_loops.LAUNCH.update(saved[1])
    out = Path(args.out) if args.out else (Path("/tmp/triton_tiles_quick") if args.quick
                                           else ROOT / "benchmarks" / "results" / "triton_tiles")
    out.parent.mkdir(parents=True, exist_ok=True)
    info = {**machine(), "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (interpreter)",
            "precision_float32": triton_loops.precision(torch.float32)}
    out.with_suffix(".json").write_text(json.dumps({"machine": info, "candidates": candidates, "rows": rows},
                                                   indent=2))
    lines = [f"# Recurrent Triton kernels: settings timed ({info['device']}, float32 products "
             f"{info['precision_float32']})", "", "| cell | B, T, I, H | setting (ieee tile, tf32 tile, warps, stages) "
             "| ms | x cuDNN |", "|---|---|---|---|---|"]
    lines += [f"| {r['cell']} | {r['size']} | {r['candidate']}: {r['setting']} | {r['ms']:.2f} | "
              f"{'n/a' if r['ratio'] is None else format(r['ratio'], '.2f')} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
