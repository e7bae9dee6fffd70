"""The RLHF part of the tour's "Large language models" section: a scripted preference labels
pairs of samples of a small GPT (the same file a person writes with ``seqlab rlhf label``),
a reward model learns it, and PPO and DPO move the GPT toward it under a KL leash.

The part pretrains a cpu-tiny GPT of its own (120 steps, about 2 s) rather than reusing the
GPT section's cpu-small run: measured on 2 shared cores with one torch thread, the cpu-small
run made every later step about three times dearer (15 s of CPU against 5 s for the whole
part) and moved less (reward model 0.57-0.74 on held-out pairs over three seeds, PPO +0.04 in
vowel score after 24 steps), where a small, little-trained GPT moves within a few steps.
"""

from __future__ import annotations

import torch

import seqlab
from seqlab.data.text import load_corpus
from seqlab.tour.context import TourContext, num
from seqlab.viz.report import Section

N = 24  # characters per sample
HELD_OUT = 64  # prompts the policies are compared on (a sample each)
# The steps of each part. Full: 5.4 s of CPU time with one torch thread on 2 shared cores (load
# average 5.5; not measured on an idle machine); over three seeds the reward model ranked 65-85%
# of about 60 held-out pairs as the judge did, and PPO and DPO raised the vowel score by
# 0.14-0.28. With torch's two threads on cores that other jobs keep busy (load average 6) the
# same part took 109 s: the threads wait on each other.
FULL = dict(gpt=120, pairs=320, rm=60, ppo=10, dpo=15)
QUICK = dict(gpt=10, pairs=24, rm=4, ppo=2, dpo=3)


@torch.no_grad()
def _measure(policy, reference, tok, prompts, judge, seed: int = 0) -> tuple[float, float, list[str], float]:
    """(mean scripted score, mean KL to the reference in nats per sample, samples, standard
    error of the mean score), one sample per prompt."""
    from seqlab.llm.rlhf import completion_positions, gather_completion, pad_sequences, token_logprobs
    from seqlab.llm.rlhf_models import sample_completions

    ids = [tok.encode(p)[-(policy.config.block_size - N):] for p in prompts]
    out = sample_completions(policy, ids, N, generator=torch.Generator().manual_seed(seed))
    seqs, _ = pad_sequences([a + out[i].tolist() for i, a in enumerate(ids)])
    pos = completion_positions(torch.tensor([len(a) for a in ids]), N)
    kl = (token_logprobs(gather_completion(policy(seqs), pos), out)
          - token_logprobs(gather_completion(reference(seqs), pos), out)).sum(1).mean()
    texts = [tok.decode(t) for t in out.tolist()]
    scores = torch.tensor([judge.score(t) for t in texts], dtype=torch.float64)
    se = float(scores.std() / len(texts) ** 0.5) if len(texts) > 1 else float("nan")
    return float(scores.mean()), float(kl), texts, se


def rlhf(ctx: TourContext, sec: Section) -> str:
    from seqlab.llm.preferences import corpus_prompts, get_judge, label, shown

    q = ctx.quick
    steps = QUICK if q else FULL
    base = ctx.train("gpt", name="rlhf-gpt", guard=60, preset="cpu-tiny", block_size=48, batch_size=16,
                     warmup_steps=2 if q else 20, lr=2e-3, min_lr=2e-4, max_steps=steps["gpt"],
                     eval_every=steps["gpt"], eval_batches=2 if q else 5, log_every=5).run_dir
    gpt, run = seqlab.load(base)
    tok = run.tokenizer
    judge = get_judge("vowels")
    prompts = corpus_prompts(load_corpus("pydoc").text, chars=12, count=steps["pairs"] + HELD_OUT)
    train_prompts, held_out = prompts[:steps["pairs"]], prompts[steps["pairs"]:steps["pairs"] + HELD_OUT]
    prefs = ctx.out / "rlhf-prefs.jsonl"
    if prefs.exists():
        prefs.unlink()  # the tour's own file from an earlier tour: a fresh set of answers
    label(gpt, tok, train_prompts, prefs, judge="vowels", length=N, run=str(base))
    small = dict(batch_size=4 if q else 16, eval_batches=1 if q else 2, log_every=1 if q else 5)
    rm_dir = ctx.train("reward-model", name="rlhf-rm", guard=60, base=str(base), prefs=str(prefs),
                       val_fraction=0.2, max_steps=steps["rm"], eval_every=steps["rm"], lr=1e-3, min_lr=1e-4,
                       warmup_steps=0 if q else 5, **small).run_dir
    acc = seqlab.evaluate(rm_dir)
    ppo_dir = ctx.train("ppo", name="rlhf-ppo", guard=90, base=str(base), reward=str(rm_dir), judge="vowels",
                        new_tokens=N, max_steps=steps["ppo"], eval_every=steps["ppo"], kl_coef=0.05,
                        **small).run_dir
    dpo_dir = ctx.train("dpo", name="rlhf-dpo", guard=60, base=str(base), prefs=str(prefs), max_steps=steps["dpo"],
                        eval_every=steps["dpo"], lr=3e-4, min_lr=3e-5, warmup_steps=0 if q else 3, **small).run_dir
    before = _measure(gpt, gpt, tok, held_out, judge)
    after_ppo = _measure(seqlab.load(ppo_dir)[0].policy, gpt, tok, held_out, judge)
    after_dpo = _measure(seqlab.load(dpo_dir)[0].policy, gpt, tok, held_out, judge)

    sec.text("RLHF uses reinforcement learning to update a model from human feedback in the form of rewards. A person "
             "compares two samples for the same prompt (seqlab rlhf label RUN --prompts FILE); here a scripted "
             "judge stands in (it prefers the sample whose letters hold more vowels) and writes the same JSON Lines "
             f"file, for two samples after each of {steps['pairs']} prompts. The GPT is a small one of this part's "
             f"own (cpu-tiny, {steps['gpt']} steps on the manual): so little trained, it moves within a few steps. "
             "A reward model (the GPT's body with a scalar head) learns the preferences with the Bradley-Terry "
             "loss:")
    sec.equation(r"C_{RM} = -\log \sigma\left(r(x, y_w) - r(x, y_l)\right)")
    sec.text("PPO then samples from the policy, scores each sample with the reward model, penalises each token by "
             "its log-ratio to the frozen starting policy, and takes clipped steps on the advantages (GAE); beta "
             "adapts to a KL target. DPO skips the reward model and the sampling: it fits the preferences "
             "directly, with the reference's log-probabilities inside its loss.")
    sec.equation(r"r_t = -\beta \log \frac{\pi(y_t \mid s_t)}{\pi_{ref}(y_t \mid s_t)} + [t = N]\, r(x, y), \qquad "
                 r"L^{clip} = \mathbb{E}_t \min\left(\rho_t A_t,\ \mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon) "
                 r"A_t\right)")
    sec.equation(r"C_{DPO} = -\log \sigma\left(\beta \log \frac{\pi(y_w \mid x)}{\pi_{ref}(y_w \mid x)} - \beta \log "
                 r"\frac{\pi(y_l \mid x)}{\pi_{ref}(y_l \mid x)}\right)")
    sec.table(["policy", "scripted score (vowel fraction) ± standard error", "KL to the start (nats / sample)"],
              [[name, f"{num(m[0])} ± {num(m[3])}", num(m[1], ".2f")]
               for name, m in (("base GPT", before), (f"PPO, {steps['ppo']} steps", after_ppo),
                               (f"DPO, {steps['dpo']} steps", after_dpo))])
    sec.text(f"The reward model ranks {acc.accuracy:.0%} of {acc.pairs} held-out pairs as the judge did (a coin: "
             f"50%), after {steps['rm']} steps on the other labelled pairs; the scores above are means over "
             f"{len(held_out)} held-out prompts, one sample each, with the standard error of each mean. These are "
             f"short runs with one seed (another seed gives other numbers); benchmarks/results/rlhf.md trains each "
             f"part several times longer, and shows that a KL coefficient near 0 lets PPO game the reward "
             f"(degenerate vowel strings with a high reward and a large KL).")
    rows = [f"{shown(p)!s:<14} | {shown(b)!s:<{N}} | {shown(a)!s:<{N}} | {shown(d)}"
            for p, b, a, d in zip(held_out[:4], before[2], after_ppo[2], after_dpo[2])]
    sec.code("prompt         | base GPT" + " " * (N - 8) + " | PPO" + " " * (N - 3) + " | DPO\n" + "\n".join(rows))
    return (f"RLHF: reward model {acc.accuracy:.2f} on held-out pairs; vowel score {before[0]:.2f} -> PPO "
            f"{after_ppo[0]:.2f} (KL {after_ppo[1]:.1f}), DPO {after_dpo[0]:.2f} (KL {after_dpo[1]:.1f})")
