"""Issue 17's table, assembled from the benchmarks' result files: speed, memory and quality
against the references, each row with the file, the date and the machine it was measured on.

    make bench-speed                   # runs every benchmark below, in one run, then this script
    python benchmarks/speed_table.py   # the table from the result files as they are

Rows whose result file is missing say so; the GPU rows name the last CUDA measurement, which
this script does not rerun (``benchmarks/gpu_check.sh`` does, on a CUDA machine).
Writes ``benchmarks/results/speed_table.md``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load_from(name: str, results: Path) -> dict | None:
    path = results / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _when(d: dict) -> str:
    m = d.get("machine", {})
    load = m.get("load_average_at_start")
    load = f", load {load[0]:.2f}" if isinstance(load, list) and load else ""
    return f"{d.get('date', '?')}, {m.get('cpu', '?')} {m.get('cores', '?')} cores{load}"


def _met(value: float | None, target: float, lower_is_better: bool = True) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= target if lower_is_better else value >= target) else "NOT met"


def rows(results: Path = RESULTS) -> list[tuple[str, str, str, str, str, str, str]]:
    """(measure, seqlab, reference, ratio, target, status, source), from the files in ``results``."""
    out = []

    def load(name: str) -> dict | None:
        return _load_from(name, results)

    rs = load("recurrent_speed")
    if rs is not None:
        for cell in ("lstm", "gru"):
            for r in (r for r in rs["rows"] if r["cell"] == cell):
                size = f"B{r['B']} T{r['T']} I{r['I']} H{r['H']}"
                if cell == "lstm":
                    out.append((f"LSTM training step vs nn.LSTM, CPU ({size})", f"{r['ms_seqlab']:.1f} ms",
                                f"{r['ms_torch']:.1f} ms", f"{r['ratio']:.2f}x", "<= 1.0x", _met(r["ratio"], 1.0),
                                f"recurrent_speed ({_when(rs)})"))
                    if "ratio_fwd" in r:
                        out.append(("  the same size's forward pass alone (inference)", f"{r['ms_fwd_seqlab']:.1f} ms",
                                    f"{r['ms_fwd_torch']:.1f} ms", f"{r['ratio_fwd']:.2f}x", "", "",
                                    f"recurrent_speed ({_when(rs)})"))
                elif "mib_seqlab" in r:
                    rss = (f"; resident growth {r['rss_mib_seqlab']:.0f} vs {r['rss_mib_torch']:.0f} MiB"
                           if "rss_mib_seqlab" in r else "")
                    out.append((f"GRU peak memory of a step, CPU ({size})", f"{r['mib_seqlab']:.0f} MiB",
                                f"{r['mib_torch']:.0f} MiB", f"{r['memory_ratio']:.2f}x{rss}", "<= 2x",
                                _met(r["memory_ratio"], 2.0), f"recurrent_speed ({_when(rs)})"))
    else:
        out.append(("recurrent layers vs torch.nn, CPU", "", "", "", "", "not measured", "recurrent_speed missing"))
    cl = load("charlm_loop")
    if cl is not None:
        t = cl["tokens_per_s"]
        out.append(("LSTM char LM in the trainer's loop (H256 T64 B32), tokens/s", f"{t['lstm']:,.0f}",
                    f"{t['torch-lstm']:,.0f}", f"{cl['loop_time_ratio']:.2f}x time", "<= 1.0x",
                    _met(cl["loop_time_ratio"], 1.0), f"charlm_loop ({_when(cl)})"))
        out.append(("  the same step's LSTM layer alone / the rest of the step", f"{cl['ms']['lstm']['layer']:.1f} / "
                    f"{cl['rest_ms']['lstm']:.1f} ms", f"{cl['ms']['torch-lstm']['layer']:.1f} / "
                    f"{cl['rest_ms']['torch-lstm']:.1f} ms", f"{cl['layer_ratio']:.2f}x (layer)", "", "",
                    f"charlm_loop ({_when(cl)})"))
    gs = load("gpt_speed_cpu")
    if gs is not None:
        r = next((r for r in gs["results"] if r["threads"] == gs["machine"]["cores"]), gs["results"][0])
        out.append((f"GPT training step, nanoGPT's CPU recipe, {r['threads']} threads", f"{r['ms']['seqlab']:.1f} ms",
                    f"{r['ms']['reference']:.1f} ms", f"{r['ratio_reference']:.3f}x", "<= 1.0x",
                    _met(r["ratio_reference"], 1.0), f"gpt_speed_cpu ({_when(gs)})"))
    nq = load("gpt_quality_nanogpt")
    if nq is not None:
        out.append(("nanoGPT's CPU recipe, 2,000 steps with evaluation: wall, validation loss",
                    f"{nq['wall_seconds']:.0f} s, {nq['val_loss_random_windows']:.3f}", "nanoGPT README 1.88", "",
                    "", "", f"gpt_quality_nanogpt ({_when(nq)})"))
    pq = load("gpt_quality_plus")
    if pq is not None:
        v = pq["val_loss_random_windows"]
        seed = pq.get("train", {}).get("seed", "?")
        out.append((f"GPT quality at nanoGPT's CPU budget, preset cpu-small-plus (seed {seed})",
                    f"{v:.3f}", "nanoGPT README 1.88", "", "<= 1.80", _met(v, 1.80), f"gpt_quality_plus ({_when(pq)})"))
    ab = load("gpt_quality_ablation")
    if ab is not None and "plus" in ab.get("rows", {}):
        vals = list(ab["rows"]["plus"]["val_loss_random_windows"].values())
        out.append(("  the same preset over three seeds (ablation)", f"{min(vals):.3f}-{max(vals):.3f}", "", "",
                    "<= 1.80", _met(max(vals), 1.80), "gpt_quality_ablation (its own run)"))
    tg = load("transformer_generation")
    if tg is not None and tg.get("generate"):
        for r in tg["generate"]["rows"]:
            out.append((f"KV-cache speed-up, 256 tokens after a 128-token prompt, {r['threads']} thread(s)",
                        f"{r['tokens_per_s_cache']:,.0f} tokens/s", f"{r['tokens_per_s_no_cache']:,.0f} (no cache)",
                        f"{r['speedup']:.1f}x", ">= 5x", _met(r["speedup"], 5.0, lower_is_better=False),
                        f"transformer_generation ({_when(tg)})"))
    cc = load("compile_cpu")
    if cc is not None:
        out.append(("torch.compile speed-up of a GPT step, CPU", f"{cc['ms_compiled']:.1f} ms",
                    f"{cc['ms_plain']:.1f} ms", f"{cc['speedup']:.2f}x", "measure", "", f"compile_cpu ({_when(cc)})"))
    dd = load("ddp_cpu")
    if dd is not None:
        res = {r["config"]: r for r in dd["results"]}
        two, one = res.get("torchrun 2 x 1 thread"), res.get("1 process, 2 threads")
        if two and one:
            out.append(("torchrun 2 processes x 1 thread vs 1 process x 2 threads, GPT tokens/s",
                        f"{two['tokens_per_s']:,.0f}", f"{one['tokens_per_s']:,.0f}",
                        f"{two['tokens_per_s'] / one['tokens_per_s']:.2f}x throughput", "measure", "",
                        f"ddp_cpu ({_when(dd)})"))
    out.append(("baby GPT, one H200 (6L/6H/384, 5,000 steps, bf16)", "", "", "", "<= 1.0x", "not run here (no GPU)",
                "gpu_check_h200.log (the last CUDA run)"))
    out.append(("RNN/LSTM/GRU training step vs cuDNN, H200", "", "", "", "<= 2x",
                "not run here (no GPU); the Triton kernels (triton_loops.py) are not measured yet",
                "recurrent_speed_cuda.md (the last CUDA run: Python loops, 6-18x)"))
    return out


def main(argv=None) -> int:
    table = rows()
    lines = ["# Issue 17: speed, memory and quality against the references", "",
             "Assembled by `python benchmarks/speed_table.py` from the result files named in the last column "
             "(`make bench-speed` reruns all of them in one run, then this). Ratios are seqlab over the "
             "reference (time or memory: below 1 is better, except the speed-ups).", "",
             "| measure | seqlab | reference | ratio | target | status | measured in |",
             "|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    out = RESULTS / "speed_table.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
