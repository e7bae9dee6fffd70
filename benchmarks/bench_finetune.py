"""Fine-tuning with frozen layers and LoRA: what each setting trains, costs, learns and forgets.

    python benchmarks/bench_finetune.py gpt      # GPT pretrained on the embedded manual, adapted to tiny Shakespeare
    python benchmarks/bench_finetune.py bert     # BERT pretrained on the manual, classifying code vs prose
    python benchmarks/bench_finetune.py gpt --quick --out /tmp/ft     # smoke test (seconds)

Each case pretrains its base once, then fine-tunes it with every setting for the same steps,
batch and seed: --freeze K for K = 0 .. L (the embeddings and the first K blocks frozen),
full fine-tuning (nothing frozen), and LoRA of rank 1, 4 and 16 (alpha = r, every attention
and MLP projection). Full and frozen runs use the family's learning rate; LoRA, whose
factors start at zero, uses --lora-lr (a common choice, not tuned here). Recorded for each:

- trainable parameters;
- time per training step: forward, backward and AdamW over the trainable parameters, on the
  same batch, median of 50 steps per setting taken in alternating rounds after the runs;
- the new task's validation figure: GPT, loss in nats per character on tiny Shakespeare's
  held-out last 10%; BERT, classification accuracy over every held-out passage;
- forgetting: the old task's validation loss before (the base model) and after, on the same
  fixed batches: GPT, next-character loss on the manual's held-out 10%; BERT, the masked-token
  loss of the fine-tuned encoder with the base's (unchanged) MLM head.

Writes benchmarks/results/finetune_{gpt,bert}.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_recurrent_speed import machine  # noqa: E402

import torch  # noqa: E402

import seqlab  # noqa: E402
from seqlab.llm.adapt import is_lora_key  # noqa: E402
from seqlab.llm.bert_classifier_family import ClassifierEvaluation  # noqa: E402
from seqlab.llm.finetune import mean_loss  # noqa: E402
from seqlab.runs import get_family  # noqa: E402

CASES = {
    # base pretraining, then the fine-tune's steps; the tour's sizes
    "gpt": dict(base="gpt", base_options=dict(preset="cpu-small", max_steps=1500, eval_every=500, eval_batches=10),
                tune="gpt-finetune", tune_options=dict(text="shakespeare", max_steps=300, eval_every=300,
                                                       eval_batches=20, log_every=25)),
    "bert": dict(base="bert", base_options=dict(preset="cpu-small", max_steps=800, eval_every=400, eval_batches=10),
                 tune="bert-classifier", tune_options=dict(max_steps=150, eval_every=150, eval_batches=10,
                                                           log_every=15)),
}
QUICK = dict(base_options=dict(preset="cpu-tiny", max_steps=20, eval_every=20, eval_batches=2, batch_size=8),
             tune_options=dict(max_steps=10, eval_every=10, eval_batches=2, log_every=5, batch_size=8))


def settings(num_layers: int) -> list[tuple[str, dict]]:
    out = [(f"freeze {k}", dict(freeze=k)) for k in range(num_layers + 1)]
    out.append(("full", {}))
    out += [(f"LoRA r={r}", dict(lora_rank=r)) for r in (1, 4, 16)]
    return out


def step_seconds(models: dict[str, torch.nn.Module], batch, rounds: int, steps: int) -> dict[str, float]:
    """The median seconds of a training step (forward, backward, AdamW over the trainable
    parameters) of each model on the same batch, measured in alternating rounds so that a
    change in the machine's load reaches every setting alike."""
    opts = {k: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-6) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for r in range(rounds + 1):  # round 0 warms up
        for k, m in models.items():
            m.train()
            for _ in range(steps):
                t = time.perf_counter()
                loss = m.loss(batch)[0]
                loss.backward()
                opts[k].step()
                opts[k].zero_grad(set_to_none=True)
                if r:
                    times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def old_task(case: str, base_run, tuned, base_model):
    """(old-task data, the fine-tuned model's network for it, the base's)."""
    if case == "gpt":
        data = get_family("gpt").data_from_run(base_run, {}).dataset
        return data, tuned, base_model
    data = get_family("bert").data_from_run(base_run, {}).dataset  # masked windows of the manual
    return data, tuned.bert, base_model


def run_case(case: str, out: Path, quick: bool, lora_lr: float, seed: int) -> dict:
    spec = CASES[case]
    base_opts = {**spec["base_options"], **(QUICK["base_options"] if quick else {})}
    tune_opts = {**spec["tune_options"], **(QUICK["tune_options"] if quick else {})}
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"seqlab-bench-finetune-{case}-{time.strftime('%Y%m%d-%H%M%S')}"
    t0 = time.perf_counter()
    base = seqlab.train(spec["base"], out=work / "base", seed=seed, progress=False, **base_opts)
    base_seconds = time.perf_counter() - t0
    base_model, base_run = seqlab.load(base.run_dir)
    L = base_model.config.num_layers
    rows, models = [], {}
    for label, adapt in settings(L):
        opts = dict(tune_opts)
        if "lora_rank" in adapt:
            opts["lr"], opts["min_lr"] = lora_lr, lora_lr / 10
        t = time.perf_counter()
        result = seqlab.train(spec["tune"], base=str(base.run_dir), out=work / label.replace(" ", "-"), seed=seed,
                              progress=False, **adapt, **opts)
        wall = time.perf_counter() - t
        model, run = seqlab.load(result.run_dir)
        old_data, old_net, old_base = old_task(case, base_run, model, base_model)
        kw = dict(batches=2 if quick else 20, batch_size=8 if quick else 32, seed=1234)
        old_before, old_after = mean_loss(old_base, old_data, **kw), mean_loss(old_net, old_data, **kw)
        if case == "gpt":
            new_data = get_family("gpt-finetune").data_from_run(run, {}).dataset
            new_figure = mean_loss(model, new_data, **kw)
            new_base = mean_loss(base_model, new_data, **kw)
        else:
            new_figure = get_family("bert-classifier").evaluate(model, run, ClassifierEvaluation()).accuracy
            new_base = None
        ckpt_bytes = (result.checkpoint / "model.safetensors").stat().st_size
        models[label] = model
        rows.append(dict(setting=label, trainable=model.num_trainable(),
                         total=sum(p.numel() for n, p in model.named_parameters() if not is_lora_key(n)),
                         wall_s=wall, new=new_figure, new_base=new_base, old_before=old_before, old_after=old_after,
                         forgotten=old_after - old_before, checkpoint_bytes=ckpt_bytes, steps=result.steps))
        print(f"{case} {label}: {rows[-1]}", flush=True)
    # time per step, every setting on one batch of the new task, in alternating rounds
    data = get_family(spec["tune"]).data_from_run(run, {}).dataset
    batch = data.get_batch("train", tune_opts.get("batch_size", get_family(spec["tune"]).train_defaults["batch_size"]),
                           torch.Generator().manual_seed(seed))
    timing = step_seconds(models, batch, rounds=2 if quick else 5, steps=2 if quick else 10)
    for row in rows:
        row["step_s"] = timing[row["setting"]]
    return dict(case=case, base_steps=base.steps, base_seconds=base_seconds, base_val=base.best_val_loss,
                num_layers=L, tune_options=tune_opts, lora_lr=lora_lr, seed=seed, rows=rows,
                seconds=time.perf_counter() - t0, quick=quick)


def table(res: dict) -> str:
    gpt = res["case"] == "gpt"
    new = "Shakespeare val loss (nats/char)" if gpt else "code-vs-prose val accuracy"
    old = "manual val loss" if gpt else "manual masked-token loss"
    lines = [f"| setting | trainable parameters | checkpoint | s/step | {new} | {old} before | after | forgotten |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        share = 100 * r["trainable"] / r["total"]
        lines.append(f"| {r['setting']} | {r['trainable']:,} ({share:.1f}%) | {r['checkpoint_bytes'] / 1024:.0f} KiB "
                     f"| {r['step_s'] * 1000:.0f} ms | {r['new']:.4f} | {r['old_before']:.4f} | {r['old_after']:.4f} "
                     f"| {r['forgotten']:+.4f} |")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gpt = res["case"] == "gpt"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in res["rows"]:
        color = "tab:orange" if r["setting"].startswith("LoRA") else "tab:red" if r["setting"] == "full" \
            else "tab:blue"
        ax.scatter(r["forgotten"], r["new"], s=30 + 170 * r["trainable"] / r["total"], color=color, alpha=0.8)
        ax.annotate(r["setting"], (r["forgotten"], r["new"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("forgetting: old task's validation loss after - before (nats)")
    ax.set_ylabel("Shakespeare validation loss (nats/char, lower is better)" if gpt
                  else "code-vs-prose validation accuracy (higher is better)")
    ax.set_title(("GPT: manual -> tiny Shakespeare" if gpt else "BERT: manual MLM -> code-vs-prose classifier")
                 + "\n(marker area: share of trainable parameters)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("case", choices=sorted(CASES))
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    p.add_argument("--lora-lr", type=float, default=2e-3, help="LoRA's peak learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    res = run_case(args.case, out, args.quick, args.lora_lr, args.seed)
    res["machine"] = machine()
    res["load_average_at_start"] = load
    stem = out / f"finetune_{args.case}"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=2))
    plot(res, stem.with_suffix(".png"))
    m = res["machine"]
    what = ("GPT (4 layers, width 128, characters) pretrained on Python's reference manual (embedded), fine-tuned on "
            "tiny Shakespeare" if args.case == "gpt" else
            "BERT (4 layers, width 128, characters) pretrained by masked-language modelling on the manual, fine-tuned "
            "as a classifier of standard-library code vs manual paragraphs")
    md = [f"# Fine-tuning with frozen layers and LoRA: {args.case}", "",
          f"{what}. Base: {res['base_steps']} steps ({res['base_seconds']:.0f} s), best validation loss "
          f"{res['base_val']:.4f}. Each setting: {res['tune_options']['max_steps']} steps, same batch and seed; "
          f"full and frozen at the family's learning rate, LoRA (alpha = r) at {args.lora_lr:g}.", "",
          table(res), "",
          f"![trade-off](finetune_{args.case}.png)", "",
          f"Machine: {m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')}, Python {m.get('python')}; load "
          f"average {load:.1f} at the start (other jobs shared the machine when it was above 2). Whole run "
          f"{res['seconds']:.0f} s.", "",
          f"Reproduce: `python benchmarks/bench_finetune.py {args.case}{' --quick' if args.quick else ''}`"]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
