"""Speed and memory of a training step (forward + backward): seqlab's RNN, LSTM and GRU
against torch.nn.RNN, nn.LSTM and nn.GRU, measured in the same process.

    python benchmarks/bench_recurrent_speed.py            # both sizes of the issue, ~3 minutes
    python benchmarks/bench_recurrent_speed.py --quick    # smaller, for a smoke test; writes to /tmp unless --out

Method. Each model gets the same input and the same output gradient; one training step
is ``out, _ = model(x); out.backward(g)``. Rounds alternate between the implementations
(reference, seqlab fused, seqlab readable per-step loop), so a slow-down of the machine
hits all of them alike; the figure is the median over all rounds. float32, CPU,
``torch.set_num_threads`` = the machine's cores.

Peak memory of a step, two measures. Each (model, size) runs in a fresh subprocess, after
a first step has allocated the weights' gradients:
- allocated (the ratio the issue's target is judged on): the largest total of tensor bytes
  the CPU allocator held during the step above what it held before it, from the profiler's
  memory events (``torch.profiler`` with ``profile_memory``), the CPU counterpart of CUDA's
  ``max_memory_allocated``;
- resident: the growth of the process's resident set during the step, sampled every
  0.2 ms. This one depends on the C allocator as much as on the model: many small
  tensors (nn.GRU's per-step temporaries) reuse the heap pages the previous step freed and
  add nothing, while a few large buffers (seqlab's, whole sequences at once) are fresh
  pages mapped on every step, so it can rank two models the other way round from what
  they hold.
On CUDA: torch.cuda.max_memory_allocated.
Writes ``benchmarks/results/recurrent_speed.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seqlab.recurrent import GRU, LSTM, RNN  # noqa: E402

SIZES = [(64, 100, 64, 128), (32, 200, 128, 256)]  # (B, T, I, H), from the issue
CELLS = {"rnn": (RNN, nn.RNN), "lstm": (LSTM, nn.LSTM), "gru": (GRU, nn.GRU)}
IMPLS = ("torch", "seqlab", "seqlab-readable")


def build(cell: str, impl: str, B: int, T: int, I: int, H: int, seed: int = 0, device: str = "cpu"):
    torch.manual_seed(seed)
    ours_cls, torch_cls = CELLS[cell]
    ref = torch_cls(I, H, batch_first=True).to(device)
    if impl == "torch":
        model = ref
    else:
        model = ours_cls.from_torch(ref, fused=(impl == "seqlab"), **({"reset": "after"} if cell == "gru" else {}))
    x = torch.randn(B, T, I, device=device, requires_grad=True)
    g = torch.randn(B, T, H, device=device)
    return model, x, g


def step(model, x, g) -> None:
    out, _ = model(x)
    out.backward(g)
    if x.is_cuda:
        torch.cuda.synchronize()


def forward_only(model, x, g) -> None:
    """The forward pass alone, without autograd (inference)."""
    with torch.no_grad():
        model(x)
    if x.is_cuda:
        torch.cuda.synchronize()


def _fmt(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def machine_with_load(load=None) -> dict:
    """``machine()`` and the load average at the start (``os.getloadavg()`` unless given): the
    benchmarks that run on a shared machine record it beside their times."""
    return {**machine(), "load_average_at_start": list(os.getloadavg() if load is None else load)}


def _rss_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def _allocated_peak_mib(model, x, g) -> float:
    """The largest total of bytes held by the CPU allocator during one step, above what it
    held before it (the profiler's memory events, in the order they happened)."""
    import tempfile

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(model, x, g)
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    memory = sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"])
    if not memory:
        return 0.0
    totals = [e["args"]["Total Allocated"] for e in memory]
    before = totals[0] - memory[0]["args"]["Bytes"]
    return max(0, max(totals) - before) / 2**20


def memory_child(cell: str, impl: str, size: tuple) -> None:
    """Run in a subprocess: print the growth (MiB) of the resident set during one training
    step above what the process held just before it (sampled every 0.2 ms by a thread), and
    the allocator's peak during another step."""
    import threading

    torch.set_num_threads(os.cpu_count() or 1)
    model, x, g = build(cell, impl, *size)
    step(model, x, g)  # the first step allocates the gradients; measure the second
    model.zero_grad(set_to_none=False)
    x.grad = None
    before = _rss_kb()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kb())
            time.sleep(0.0002)

    thread = threading.Thread(target=sample)
    thread.start()
    step(model, x, g)
    done.set()
    thread.join()
    model.zero_grad(set_to_none=False)
    x.grad = None
    allocated = _allocated_peak_mib(model, x, g)
    print(json.dumps({"rss_mib": max(0, peak[0] - before) / 1024, "allocated_mib": allocated}))


def peak_memory(cell: str, impl: str, size: tuple) -> dict[str, float]:
    """{"allocated_mib", "rss_mib"} of one step, measured in a fresh subprocess."""
    cmd = [sys.executable, __file__, "--memory-child", cell, impl, ",".join(map(str, size))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return json.loads(out)


def cuda_peak_memory(cell: str, impl: str, size: tuple) -> float:
    """Peak CUDA memory (MiB) allocated during one step, above what was held before it."""
    model, x, g = build(cell, impl, *size, device="cuda")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step(model, x, g)
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def time_cell(cell: str, size: tuple, rounds: int, reps: int, readable: bool, device: str = "cpu") -> dict[str, float]:
    impls = [i for i in IMPLS if readable or i != "seqlab-readable"]
    built = {impl: build(cell, impl, *size, device=device) for impl in impls}
    for impl in impls:  # warm-up
        for _ in range(2):
            step(*built[impl])
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    fwd = ("torch", "seqlab")  # also the forward pass alone (inference), fused path against torch.nn
    times.update({f"fwd_{impl}": [] for impl in fwd})
    for r in range(rounds):
        order = impls if r % 2 == 0 else impls[::-1]
        for impl in order:
            for _ in range(reps if impl != "seqlab-readable" else max(1, reps // 3)):
                t0 = time.perf_counter()
                step(*built[impl])
                times[impl].append(time.perf_counter() - t0)
        for impl in (fwd if r % 2 == 0 else fwd[::-1]):
            for _ in range(reps):
                t0 = time.perf_counter()
                forward_only(*built[impl])
                times[f"fwd_{impl}"].append(time.perf_counter() - t0)
    return {impl: statistics.median(v) * 1e3 for impl, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small sizes, few rounds; writes to /tmp/bench_recurrent_quick unless --out")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--cells", default="rnn,lstm,gru")
    p.add_argument("--no-readable", action="store_true", help="skip the per-step readable path")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--out", default=None, help="output prefix: writes PREFIX.md and PREFIX.json (default "
                   "benchmarks/results/recurrent_speed)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        cell, impl, size = args.memory_child
        memory_child(cell, impl, tuple(int(v) for v in size.split(",")))
        return 0

    torch.set_num_threads(os.cpu_count() or 1)
    sizes = [(16, 30, 16, 32)] if args.quick else SIZES
    rounds, reps = (2, 2) if args.quick else (args.rounds, args.reps)
    cells = [c for c in args.cells.split(",") if c]
    info = machine()
    if args.device == "cuda":
        from seqlab.recurrent import triton_loops

        info["gpu"] = torch.cuda.get_device_name()
        # seqlab's fused path on CUDA: the Triton kernels (one per loop over time), else Python loops
        info["fused_cuda"] = "python loops"
        if triton_loops.usable(torch.zeros(1, device="cuda")):
            import triton

            info["fused_cuda"] = f"triton {triton.__version__}"
    rows = []
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}")
    for size in sizes:
        for cell in cells:
            t = time_cell(cell, size, rounds, reps, readable=not args.no_readable, device=args.device)
            row = {"cell": cell, "B": size[0], "T": size[1], "I": size[2], "H": size[3],
                   **{f"ms_{k}": v for k, v in t.items()}, "ratio": t["seqlab"] / t["torch"],
                   "ratio_fwd": t["fwd_seqlab"] / t["fwd_torch"]}
            if "seqlab-readable" in t:
                row["ratio_readable"] = t["seqlab-readable"] / t["torch"]
            if not args.no_memory:
                for impl in ("torch", "seqlab"):
                    if args.device == "cuda":
                        row[f"mib_{impl}"] = cuda_peak_memory(cell, impl, size)
                    else:
                        m = peak_memory(cell, impl, size)
                        row[f"mib_{impl}"], row[f"rss_mib_{impl}"] = m["allocated_mib"], m["rss_mib"]
                row["memory_ratio"] = row["mib_seqlab"] / max(row["mib_torch"], 1e-9)
            rows.append(row)
            mem = (f"  peak MiB torch {row['mib_torch']:.0f} seqlab {row['mib_seqlab']:.0f}"
                   if "mib_torch" in row else "")
            if "rss_mib_torch" in row:
                mem += f" (resident growth torch {row['rss_mib_torch']:.0f} seqlab {row['rss_mib_seqlab']:.0f})"
            readable = f"  readable {row['ms_seqlab-readable']:.1f} ms" if "ms_seqlab-readable" in row else ""
            print(f"{cell:4} B={size[0]} T={size[1]} I={size[2]} H={size[3]}: torch {row['ms_torch']:.1f} ms, "
                  f"seqlab {row['ms_seqlab']:.1f} ms (x{row['ratio']:.2f}){readable}; forward alone torch "
                  f"{row['ms_fwd_torch']:.1f} ms, seqlab {row['ms_fwd_seqlab']:.1f} ms (x{row['ratio_fwd']:.2f}){mem}",
                  flush=True)

    out = Path(args.out) if args.out else (Path("/tmp/bench_recurrent_quick/recurrent_speed") if args.quick
                                           else ROOT / "benchmarks" / "results" / "recurrent_speed")
    out.parent.mkdir(parents=True, exist_ok=True)
    # the exact command, with the C allocator's settings where they were changed (they move both sides)
    tunables = os.environ.get("GLIBC_TUNABLES")
    command = ((f"GLIBC_TUNABLES={tunables} " if tunables else "") + "python benchmarks/bench_recurrent_speed.py "
               + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    out.with_suffix(".json").write_text(json.dumps({"machine": info, "rows": rows, "command": command,
                                                    "date": time.strftime("%Y-%m-%d")}, indent=2))
    lines = [
        "# Recurrent layers: training-step time, forward time and peak memory against torch.nn",
        "",
        f"Machine: {info.get('gpu', info['cpu'])}, {info['cores']} CPU cores, {info['threads']} threads, "
        f"torch {info['torch']}, Python {info['python']}; measured {time.strftime('%Y-%m-%d')}. float32, "
        f"{args.device}, one step = forward + "
        f"backward of all outputs; median of alternating rounds. Command: `{command}`.",
        "",
        "| cell | B | T | I | H | torch.nn (ms) | seqlab fused (ms) | ratio | seqlab readable (ms) | ratio |"
        " forward alone: torch.nn (ms) | seqlab fused (ms) | ratio |"
        " peak MiB torch | peak MiB seqlab | memory ratio | resident MiB torch | resident MiB seqlab |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['B']} | {r['T']} | {r['I']} | {r['H']} | {r['ms_torch']:.1f} | {r['ms_seqlab']:.1f} | "
            f"{r['ratio']:.2f} | {_fmt(r.get('ms_seqlab-readable'), 1)} | {_fmt(r.get('ratio_readable'), 2)} | "
            f"{r['ms_fwd_torch']:.1f} | {r['ms_fwd_seqlab']:.1f} | {r['ratio_fwd']:.2f} | "
            f"{r.get('mib_torch', float('nan')):.0f} | {r.get('mib_seqlab', float('nan')):.0f} | "
            f"{_fmt(r.get('memory_ratio'), 2)} | {_fmt(r.get('rss_mib_torch'), 0)} | "
            f"{_fmt(r.get('rss_mib_seqlab'), 0)} |")
    lines += ["", "Forward alone: the forward pass under torch.no_grad() (inference), timed in the same "
              "alternating rounds.", "", "Peak MiB: the most tensor memory the allocator held during a step, above what it held "
              "before (the profiler's memory events; torch.cuda.max_memory_allocated on CUDA); memory ratio = "
              "seqlab / torch.nn of it. Resident MiB: the growth of the process's resident set during a step, "
              "which counts fresh pages only (small temporaries that reuse freed heap pages add nothing to it; "
              "large buffers are new pages each step), so it is shown, not compared.",
              *(["", "seqlab fused on CUDA: " + ("the Triton kernels of seqlab/recurrent/triton_loops.py, one per loop "
                     f"over time ({info['fused_cuda']})" if info["fused_cuda"].startswith("triton") else
                     "the per-step Python loops (triton not available here, or SEQLAB_TRITON=0)") + "."]
                if "fused_cuda" in info else []),
              "", "GRU: seqlab runs PyTorch's reset-after form here (the same function as nn.GRU); the "
              "lecture's reset-before form costs one more small matrix product per step."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
