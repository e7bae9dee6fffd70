"""GAN, VAE and diffusion model after a fixed CPU budget on the 8x8 digits, scored by one protocol.

    python benchmarks/bench_generative.py                 # 5 minutes per model, about 17 minutes
    python benchmarks/bench_generative.py --quick         # smoke test; writes to /tmp unless --out
    python benchmarks/bench_generative.py --images fashion-mnist --budget 1200 --out DIR

For each model (the default configuration of ``seqlab train gan|vae|diffusion``):
  1. the trainer's throughput is measured in a throw-away run of 20 s (the first fifth of it
     is warm-up and not counted); the run's max_steps is set to what fits in the budget, and
     the run always completes them, so that its learning-rate schedule ends where the
     trainer's configuration says (a wall-clock limit of 1.5 x budget guards against a
     throughput estimate far off; a run it stops is marked in the table). The table shows
     the seconds each run took: the throughput of a 2-core VM varies by 10-20% between runs;
  2. the trained model (best checkpoint by validation loss; the latest for the GAN) is
     sampled with seed 0 and scored by seqlab.generative.evaluate (Frechet distance on the
     reference classifier's features against half the real test split, next to the
     real-data floor; class coverage; share of samples classified with confidence >= 0.9);
  3. VAE: the importance-weighted negative log-likelihood (k = 1000) of the test images (at
     most the first 2000),
     in nats per image (pixels are grey levels in [0, 1] under a Bernoulli decoder, so this
     is a cross-entropy, not a likelihood of discrete data);
  4. diffusion: ancestral (DDPM, all T steps) against DDIM with 50 steps: images per second
     (256 images, after a warm-up) and the Frechet distance each reaches.
Writes benchmarks/results/generative[_IMAGES].{md,json}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_recurrent_speed import machine  # noqa: E402

import seqlab  # noqa: E402
from seqlab.data.images import saved_image_data  # noqa: E402
from seqlab.generative.evaluate import default_n, evaluate_samples  # noqa: E402

FAMILIES = ("gan", "vae", "diffusion")


def step_time(family: str, images: str, device: str, seconds: float = 20.0) -> float:
    """Seconds per training step: the trainer's own throughput (training time only) in a
    throw-away run of ``seconds``, leaving out its first fifth (warm-up)."""
    tmp = Path(tempfile.mkdtemp())
    try:
        result = seqlab.train(family, images=images, out=tmp / "r", progress=False, max_steps=10 ** 7,
                              max_seconds=seconds, eval_every=10 ** 7, eval_batches=1, log_every=10, device=device)
        rates = [r["steps_per_s"] for r in result.history if r["split"] == "train"]
        rates = rates[len(rates) // 5:]
        if not rates:
            raise RuntimeError(f"{family}: no throughput measured in {seconds} s")
        return sum(1.0 / r for r in rates) / len(rates)  # mean seconds per step over equal-sized windows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=300.0, help="seconds of training per model")
    ap.add_argument("--images", default="digits")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--device", default="cpu", help="cpu (the issue's setting) or cuda")
    args = ap.parse_args()
    if args.quick:
        args.budget = 10.0
    out = Path(args.out) if args.out else (Path("/tmp/seqlab_bench") if args.quick else ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_generative_"))
    suffix = ("" if args.images == "digits" else "_" + args.images.replace("-", "_")) + \
        ("" if args.device == "cpu" else "_" + args.device.split(":")[0])
    rows = {}
    for family in args.families.split(","):
        t_step = step_time(family, args.images, args.device, seconds=3.0 if args.quick else 20.0)
        max_steps = max(20, int(0.95 * args.budget / t_step))
        print(f"{family}: {t_step * 1000:.1f} ms/step -> max_steps {max_steps}", flush=True)
        options = {"max_steps": max_steps, "max_seconds": 1.5 * args.budget,
                   "eval_every": max(10, max_steps // 10), "device": args.device}
        result = seqlab.train(family, images=args.images, out=work / family, progress=False, **options)
        # the best checkpoint by validation loss; the latest for the GAN (its family says so)
        model, run = seqlab.load(result.run_dir, map_location=args.device)

        def gen(seed: int) -> torch.Generator:
            return torch.Generator(device=args.device).manual_seed(seed)

        data = saved_image_data(run.data)
        n = default_n(data)
        row = {"steps": result.steps, "max_steps": max_steps, "stopped": result.stopped,
               "seconds": result.seconds, "ms_per_step": t_step * 1000,
               "checkpoint_step": run.step, "best_val_loss": result.best_val_loss}
        with torch.no_grad():
            if family == "diffusion":
                row["timesteps"] = model.config.timesteps
                for method, steps in (("ddpm", None), ("ddim", 50)):
                    kw = {"method": method} if steps is None else {"method": method, "steps": steps}
                    model.sample(8, generator=gen(1), **kw)  # warm-up
                    t = time.perf_counter()
                    model.sample(256, generator=gen(1), **kw)
                    speed = 256 / (time.perf_counter() - t)
                    x = model.sample(n, generator=gen(0), **kw)
                    ev = evaluate_samples(x, data, seed=0, progress=True)
                    row[method] = {"images_per_s": speed, **ev.to_json()}
                    print(f"  {method}: {speed:.1f} images/s, FD {ev.frechet:.2f}", flush=True)
                ev_main = row["ddpm"]
            else:
                x = model.sample(n, generator=gen(0))
                ev = evaluate_samples(x, data, seed=0, progress=True)
                ev_main = ev.to_json()
                row["eval"] = ev_main
            if family == "vae":
                test = data.images("test")[:2000].to(args.device)  # all 359 digits; 2000 of Fashion's 14000
                nll = -model.log_likelihood(test, k=1000, generator=gen(0)).mean()
                row["iwae_nll_k1000"] = float(nll)
                row["neg_elbo_test"] = float(-model.elbo(test, generator=gen(0)).mean())
        rows[family] = row
        print(f"{family}: {result.steps} steps in {result.seconds:.0f} s; FD {ev_main['frechet']:.2f} "
              f"(floor {ev_main['floor']:.2f}), coverage {ev_main['coverage']}/{ev_main['classes']}, "
              f"confident {ev_main['confident']:.1%}", flush=True)
    shutil.rmtree(work, ignore_errors=True)

    info = machine()
    if args.device != "cpu":
        info["device"] = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    payload = {"machine": info, "device": args.device, "images": args.images, "budget_s": args.budget, "quick": args.quick, "models": rows}
    (out / f"generative{suffix}.json").write_text(json.dumps(payload, indent=2) + "\n")
    first = next(iter(rows.values()))
    ev0 = first.get("eval") or first.get("ddpm")
    md = [
        f"# GAN, VAE and diffusion after {args.budget:.0f} s of "
        f"{'CPU training' if args.device == 'cpu' else 'training on one GPU'} ({args.images})",
        "",
        f"Machine: {info.get('device', '')}{', ' if 'device' in info else ''}{info['cpu']}, {info['cores']} cores, "
        f"{info['threads']} threads, torch {info['torch']}, "
        f"Python {info['python']}; measured {time.strftime('%Y-%m-%d')}. Command: "
        f"`python benchmarks/bench_generative.py" + ("" if args.images == "digits" else f" --images {args.images}")
        + ("" if args.device == "cpu" else f" --device {args.device}")
        + (f" --budget {args.budget:.0f}" if args.budget != 300 else "") + "`.",
        "",
        f"Evaluation: {ev0['n']} samples (seed 0) against {ev0['n']} real test images; the reference classifier "
        f"{ev0['classifier']['sha256'][:12]} has test accuracy {ev0['classifier']['test_accuracy']:.3f}. "
        f"Real-data floor (two halves of the test split): Frechet distance {ev0['floor']:.2f}, coverage "
        f"{ev0['real_coverage']}/{ev0['classes']}, confident {ev0['real_confident']:.1%}.",
        "",
        "| model | steps | seconds | Frechet distance | floor | classes covered | confidence >= 0.9 |",
        "|---|---|---|---|---|---|---|",
    ]
    for family, row in rows.items():
        evs = [("diffusion (DDPM)", row["ddpm"]), ("diffusion (DDIM, 50 steps)", row["ddim"])] \
            if family == "diffusion" else [(family.upper(), row["eval"])]
        for name, e in evs:
            steps = str(row["steps"]) + ("" if row["stopped"] == "max_steps"
                                         else f" of {row['max_steps']} (stopped: {row['stopped']})")
            md.append(f"| {name} | {steps} | {row['seconds']:.0f} | {e['frechet']:.2f} | {e['floor']:.2f} | "
                      f"{e['coverage']}/{e['classes']} | {e['confident']:.1%} |")
    if "vae" in rows:
        md += ["", f"VAE: importance-weighted negative log-likelihood (k = 1000) of the test images (at most 2000) "
                   f"{rows['vae']['iwae_nll_k1000']:.2f} nats per image (negative ELBO "
                   f"{rows['vae']['neg_elbo_test']:.2f}); grey levels under a Bernoulli decoder, so these are "
                   f"cross-entropies."]
    if "diffusion" in rows:
        d = rows["diffusion"]
        md += ["", f"Sampling: DDPM (all {d['timesteps']} steps) {d['ddpm']['images_per_s']:.1f} images/s, "
                   f"DDIM (50 steps) {d['ddim']['images_per_s']:.1f} images/s "
                   f"({d['ddim']['images_per_s'] / d['ddpm']['images_per_s']:.1f}x)."]
    (out / f"generative{suffix}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
