"""RLHF end to end on the embedded text, with a scripted preference standing in for a person.

    python benchmarks/bench_rlhf.py                      # about 6-8 minutes on 2 shared CPU cores
    python benchmarks/bench_rlhf.py --quick --out /tmp/r # smoke test (a minute)

1. Pretrain a cpu-tiny GPT (2 layers, width 64, context 64) on Python's reference manual.
2. Label --pairs prompts (line beginnings of the manual) with the ``vowels`` judge through
   the same code as ``seqlab rlhf label RUN --judge vowels``: two 24-character samples each,
   the one with the larger fraction of vowels preferred.
3. Reward model (Bradley-Terry) on those pairs; accuracy on the held-out pairs, against the
   0.5 of a coin and against the judge itself (1.0 by construction).
4. PPO against the reward model (adaptive KL controller) and DPO on the pairs: the scripted
   score of the policy's samples and their KL to the reference on held-out prompts, as a
   curve over training (PPO: the on-policy batches; DPO: every saved checkpoint).
5. The KL coefficient: PPO with a fixed beta of 0, 0.05 and 0.5 against the same reward model.
6. Samples before and after, side by side.

Writes ``benchmarks/results/rlhf.{md,json,png}``. Plans by steps; the machine and its load
at the start are recorded, since the numbers of other workers' jobs share its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from bench_recurrent_speed import machine  # noqa: E402

import seqlab  # noqa: E402
from seqlab.data.text import load_corpus  # noqa: E402
from seqlab.llm.preferences import corpus_prompts, get_judge, label, shown  # noqa: E402
from seqlab.llm.rlhf import completion_positions, gather_completion, pad_sequences, token_logprobs  # noqa: E402
from seqlab.llm.rlhf_models import sample_completions  # noqa: E402
from seqlab.training.checkpoint import load_checkpoint  # noqa: E402
from seqlab.training.rundir import CHECKPOINTS_DIR  # noqa: E402

N = 24  # tokens per sample


def cell(text: str) -> str:
    """A sample in a Markdown table cell: one line, '|' escaped."""
    return "`" + shown(text).replace("|", "\\|") + "`"


@torch.no_grad()
def measure(policy, reference, tok, prompts: list[str], judge, seed: int = 0, rm=None) -> dict:
    """Mean scripted score, mean KL(pi || pi_ref) estimate (sum over the tokens of log pi -
    log pi_ref on the policy's own samples) and, with ``rm``, the learned reward, over one
    sample per prompt."""
    policy.eval()
    ids = [tok.encode(p)[-(policy.config.block_size - N):] for p in prompts]
    gen = torch.Generator().manual_seed(seed)
    out = sample_completions(policy, ids, N, generator=gen)
    seqs, lengths = pad_sequences([a + out[i].tolist() for i, a in enumerate(ids)])
    pos = completion_positions(torch.tensor([len(a) for a in ids]), N)
    lp = token_logprobs(gather_completion(policy(seqs), pos), out)
    lr = token_logprobs(gather_completion(reference(seqs), pos), out)
    texts = [tok.decode(t) for t in out.tolist()]
    res = {"score": sum(judge.score(t) for t in texts) / len(texts), "kl": float((lp - lr).sum(1).mean()),
           "samples": texts}
    if rm is not None:
        res["reward"] = float(rm(seqs, lengths).mean())
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny settings (a smoke test)")
    p.add_argument("--pairs", type=int, default=800)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rlhf"))
    args = p.parse_args(argv)
    q = args.quick
    load = os.getloadavg()
    t_all = time.time()
    work = Path("/tmp") / f"seqlab-bench-rlhf-{time.strftime('%Y%m%d-%H%M%S')}"
    steps = dict(gpt=40 if q else 600, rm=20 if q else 400, ppo=6 if q else 60, dpo=10 if q else 150,
                 sweep=4 if q else 40)
    pairs = 60 if q else args.pairs
    log: dict = {"machine": machine(), "load_average_at_start": load, "steps": steps, "pairs": pairs,
                 "command": "python benchmarks/bench_rlhf.py" + (" --quick" if q else "")}

    # 1. the base GPT
    t = time.time()
    base_result = seqlab.train("gpt", out=work / "gpt", progress=False, preset="cpu-tiny", max_steps=steps["gpt"],
                        batch_size=16, lr=2e-3, min_lr=2e-4, warmup_steps=20, eval_every=steps["gpt"],
                        eval_batches=10)
    base = base_result.run_dir
    gpt, run = seqlab.load(base)
    tok = run.tokenizer
    log["gpt"] = {"seconds": time.time() - t, "best_val_loss": base_result.best_val_loss}
    judge = get_judge("vowels")

    # 2. labels, through the same code as `seqlab rlhf label --judge vowels`
    prompts = corpus_prompts(load_corpus("pydoc").text, chars=12, count=pairs + 64)
    train_prompts, held_out = prompts[:pairs], prompts[pairs:pairs + 64]
    prefs = work / "prefs.jsonl"
    t = time.time()
    res = label(gpt, tok, train_prompts, prefs, judge="vowels", length=N, run=str(base))
    log["labels"] = {"seconds": time.time() - t, "counts": res.counts}

    # 3. the reward model
    t = time.time()
    rm_run = seqlab.train("reward-model", out=work / "rm", progress=False, base=str(base), prefs=str(prefs),
                          max_steps=steps["rm"], eval_every=max(1, steps["rm"] // 4), lr=1e-3, min_lr=1e-4,
                          batch_size=32).run_dir
    acc = seqlab.evaluate(rm_run)
    rm = seqlab.load(rm_run)[0]
    log["reward_model"] = {"seconds": time.time() - t, "held_out_accuracy": acc.accuracy, "held_out_pairs": acc.pairs,
                           "train_accuracy": seqlab.evaluate(rm_run, split="train").accuracy}

    before = measure(gpt, gpt, tok, held_out, judge, rm=rm)
    log["before"] = {k: v for k, v in before.items() if k != "samples"}

    # 4a. PPO against the reward model, adaptive KL
    common = dict(base=str(base), reward=str(rm_run), judge="vowels", new_tokens=N, batch_size=16, log_every=2,
                  lr=1e-4 if not q else 1e-4, eval_batches=2)
    t = time.time()
    ppo = seqlab.train("ppo", out=work / "ppo", progress=False, max_steps=steps["ppo"],
                       eval_every=steps["ppo"], kl_coef=0.05, kl_target=6.0, kl_horizon=500, **common)
    ppo_model = seqlab.load(ppo.run_dir)[0]
    after_ppo = measure(ppo_model.policy, gpt, tok, held_out, judge, rm=rm)
    curve_ppo = [(h["step"], h["kl"], h["score"], h["reward"], h["beta"]) for h in ppo.history
                 if h["split"] == "train"]
    log["ppo"] = {"seconds": time.time() - t, "after": {k: v for k, v in after_ppo.items() if k != "samples"},
                  "curve": curve_ppo}

    # 4b. DPO on the pairs, every checkpoint measured
    t = time.time()
    dpo = seqlab.train("dpo", out=work / "dpo", progress=False, base=str(base), prefs=str(prefs),
                       max_steps=steps["dpo"], eval_every=max(1, steps["dpo"] // 5), keep_last=10, beta=0.1,
                       lr=3e-4, min_lr=3e-5, batch_size=16)
    dpo_model, _ = seqlab.load(dpo.run_dir)
    curve_dpo = [(0, before["kl"], before["score"])]
    for ck in sorted(c for c in (dpo.run_dir / CHECKPOINTS_DIR).iterdir() if c.is_dir() and c.name.startswith("step-")):
        c = load_checkpoint(ck)
        dpo_model.load_state_dict(c.state_dict)
        m = measure(dpo_model.policy, gpt, tok, held_out, judge)
        curve_dpo.append((c.step, m["kl"], m["score"]))
    after_dpo = measure(dpo_model.policy, gpt, tok, held_out, judge, rm=rm)
    log["dpo"] = {"seconds": time.time() - t, "after": {k: v for k, v in after_dpo.items() if k != "samples"},
                  "curve": curve_dpo, "val_accuracy": [h.get("accuracy") for h in dpo.history if h["split"] == "val"]}

    # 5. the KL coefficient, fixed
    sweep = {}
    for beta in (0.0, 0.05, 0.5):
        t = time.time()
        r = seqlab.train("ppo", out=work / f"ppo-beta{beta}", progress=False, max_steps=steps["sweep"],
                         eval_every=steps["sweep"], kl_coef=beta, kl_target=None, **common)
        m = measure(seqlab.load(r.run_dir)[0].policy, gpt, tok, held_out, judge, rm=rm)
        sweep[beta] = {"seconds": time.time() - t, **m}
    log["sweep"] = {str(b): {k: v for k, v in m.items() if k != "samples"} for b, m in sweep.items()}
    log["seconds"] = time.time() - t_all

    # the figure: scripted score against KL
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot([c[1] for c in curve_ppo], [c[2] for c in curve_ppo], "o-", ms=3, label="PPO (training batches)")
    ax.plot([c[1] for c in curve_dpo], [c[2] for c in curve_dpo], "s-", ms=4, label="DPO (checkpoints)")
    for b, m in sweep.items():
        ax.scatter([m["kl"]], [m["score"]], marker="*", s=120, zorder=3, label=f"PPO, fixed beta={b:g} (end)")
    ax.scatter([before["kl"]], [before["score"]], c="k", zorder=4, label="base GPT")
    ax.set_xlabel("KL(pi || pi_ref), nats per sample (24 characters)")
    ax.set_ylabel("scripted score (fraction of vowels)")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.legend(fontsize=7)
    ax.set_title("RLHF on pydoc: scripted score against KL to the reference")
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out.with_suffix(".png"), dpi=120)

    m = log["machine"]
    lines = [
        "# RLHF on the embedded text: reward model, PPO, DPO, and the KL coefficient", "",
        f"`{log['command']}` — {time.strftime('%Y-%m-%d %H:%M')}, {m['cpu']}, {m['cores']} cores, torch "
        f"{m['torch']}; load average at the start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (other workers' "
        f"jobs share these cores, so times are slower than on an idle machine); {log['seconds']:.0f} s in all.", "",
        f"A scripted preference stands in for a person: of two {N}-character samples after a prompt (a line "
        f"beginning of Python's reference manual), the `vowels` judge prefers the one whose letters hold more "
        f"vowels. Its answers go through the same code as `seqlab rlhf label RUN --judge vowels` (the same JSONL "
        f"file). Base policy: a cpu-tiny GPT (2 layers, width 64, context 64) pretrained {steps['gpt']} steps. "
        f"Every figure below is measured on {len(held_out)} held-out prompts (one sample each, seed 0); KL is "
        f"the mean over samples of sum_t log pi(y_t) - log pi_ref(y_t) on the policy's own samples.", "",
        "| quantity | value |", "|---|---|",
        f"| preference pairs labelled ({pairs} prompts) | a {res.counts['a']}, b {res.counts['b']}, tie "
        f"{res.counts['tie']} ({log['labels']['seconds']:.0f} s) |",
        f"| reward model ({steps['rm']} steps): accuracy on {acc.pairs} held-out pairs | **{acc.accuracy:.3f}** "
        f"(coin: 0.5; the judge itself: 1.0; train pairs {log['reward_model']['train_accuracy']:.3f}) |",
        f"| base GPT: scripted score / KL / learned reward | {before['score']:.3f} / 0 / {before['reward']:.3f} |",
        f"| PPO ({steps['ppo']} steps, adaptive beta from 0.05, target 6 nats): score / KL / reward | "
        f"**{after_ppo['score']:.3f}** / {after_ppo['kl']:.2f} / {after_ppo['reward']:.3f} |",
        f"| DPO ({steps['dpo']} steps, beta 0.1): score / KL / reward | **{after_dpo['score']:.3f}** / "
        f"{after_dpo['kl']:.2f} / {after_dpo['reward']:.3f} |",
        "", f"## The KL coefficient (PPO, beta fixed, {steps['sweep']} steps each)", "",
        "| beta | scripted score | learned reward | KL (nats/sample) | first held-out sample |", "|---|---|---|---|---|",
    ]
    for b, mm in sweep.items():
        lines.append(f"| {b:g} | {mm['score']:.3f} | {mm['reward']:.3f} | {mm['kl']:.2f} | "
                     f"{cell(held_out[0] + mm['samples'][0])} |")
    lines += ["", "## Samples before and after (held-out prompts, seed 0)", "",
              "| prompt | base GPT | PPO | DPO |", "|---|---|---|---|"]
    for i in range(6):
        lines.append(f"| {cell(held_out[i])} | {cell(before['samples'][i])} | {cell(after_ppo['samples'][i])} "
                     f"| {cell(after_dpo['samples'][i])} |")
    lines += ["", "![score against KL](rlhf.png)", "",
              "PPO curve: the training batches' mean scripted score and KL (every 2 steps; beta adapted: "
              + ", ".join(f"{c[4]:.3f}" for c in curve_ppo[::max(1, len(curve_ppo) // 5)]) + "). DPO curve: "
              "every saved checkpoint measured on the held-out prompts.", ""]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    log["samples"] = {"prompts": held_out[:6], "before": before["samples"][:6], "ppo": after_ppo["samples"][:6],
                      "dpo": after_dpo["samples"][:6], "sweep": {str(b): mm["samples"][:6] for b, mm in sweep.items()}}
    out.with_suffix(".json").write_text(json.dumps(log, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
