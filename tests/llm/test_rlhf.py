"""RLHF (seqlab/llm/rlhf.py, seqlab/llm/rlhf_models.py, seqlab/llm/rlhf_family.py, seqlab/cli/rlhf.py):
the losses against their formulas and hand-computed cases (and DPO against Hugging Face trl's own loss), the
reward model and policies, the three families end to end, exact resume, and the command line."""

import json
import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import seqlab
from seqlab.data.text import load_corpus
from seqlab.cli import main
from seqlab.llm.gpt import GPT, GPTConfig
from seqlab.llm.preferences import corpus_prompts, label
from seqlab.llm.rlhf import (AdaptiveKLController, bradley_terry_loss, completion_positions, dpo_loss, gae,
                             gather_completion, gpt_states, kl_per_token, pad_sequences, ppo_clip_loss,
                             sequence_logprob, token_logprobs, token_rewards)
from seqlab.llm.rlhf_models import PPOModel, RewardModel
from seqlab.runs import get_family
from seqlab.testing import one_line_error
from seqlab.training.checkpoint import load_checkpoint
from seqlab.training.rundir import latest_checkpoint

D64 = torch.float64


# --------------------------------------------------------------------------- the losses


def test_bradley_terry_loss_is_the_formula():
    g = torch.Generator().manual_seed(0)
    rw, rl = torch.randn(7, generator=g, dtype=D64) * 5, torch.randn(7, generator=g, dtype=D64) * 5
    expected = sum(-math.log(1.0 / (1.0 + math.exp(-(a - b)))) for a, b in zip(rw.tolist(), rl.tolist())) / 7
    assert abs(float(bradley_terry_loss(rw, rl)) - expected) < 1e-12
    # equal rewards: log 2; a large margin either way stays finite
    assert abs(float(bradley_terry_loss(torch.zeros(3), torch.zeros(3))) - math.log(2)) < 1e-6
    assert float(bradley_terry_loss(torch.tensor([-200.0]), torch.tensor([200.0]))) == pytest.approx(400.0)


def test_dpo_loss_is_the_formula_of_the_paper():
    """Rafailov et al. 2023, eq. 7: -log sigma(beta log(pi(y_w)/ref(y_w)) - beta log(pi(y_l)/ref(y_l)))."""
    g = torch.Generator().manual_seed(1)
    pw, pl, rw, rl = (-torch.rand(9, generator=g, dtype=D64) * 40 for _ in range(4))
    beta = 0.3
    loss, cw, cl = dpo_loss(pw, pl, rw, rl, beta)
    per = [-math.log(1 / (1 + math.exp(-(beta * math.log(math.exp(a) / math.exp(c)) - beta * math.log(
        math.exp(b) / math.exp(d)))))) for a, b, c, d in zip(pw.tolist(), pl.tolist(), rw.tolist(), rl.tolist())]
    assert abs(float(loss) - sum(per) / 9) < 1e-10
    assert torch.allclose(cw, beta * (pw - rw)) and torch.allclose(cl, beta * (pl - rl))
    # the gradient: d C / d log pi(y_w) = -beta sigma(-h) / B
    pw = pw.clone().requires_grad_(True)
    dpo_loss(pw, pl, rw, rl, beta)[0].backward()
    h = beta * ((pw.detach() - rw) - (pl - rl))
    assert torch.allclose(pw.grad, -beta * torch.sigmoid(-h) / 9)


def _trl_dpo_loss(policy_tokens, ref_chosen, ref_rejected, completion_mask, beta):
    """Hugging Face trl's DPO loss on per-token log-probabilities. In trl 1.16 the loss is not a
    function of its own: it is computed inside ``DPOTrainer._compute_loss(self, model, inputs,
    return_outputs)``, which reads the policy's per-token log-probabilities from
    ``model(...).log_probs`` (0 at positions outside the completion, as its fused LM head gives
    with labels -100) and, with ``precompute_ref_log_probs``, the reference's sequence
    log-probabilities from the inputs. So it is called unbound, with a model that returns
    the given log-probabilities and a trainer whose settings are those of trl's default
    ``DPOConfig`` (beta and precompute_ref_log_probs set), copied as DPOTrainer.__init__ copies them."""
    trl_dpo = pytest.importorskip("trl.trainer.dpo_trainer", reason="trl is a test-only dependency "
                                  "(pip install -e '.[bench]')")
    import tempfile

    import trl

    if not callable(getattr(trl_dpo.DPOTrainer, "_compute_loss", None)):
        pytest.skip(f"trl {trl.__version__} has no DPOTrainer._compute_loss (this test calls trl 1.16's)")
    with tempfile.TemporaryDirectory() as tmp:
        args = trl_dpo.DPOConfig(output_dir=tmp, beta=beta, precompute_ref_log_probs=True, report_to=[],
                                   use_cpu=True, bf16=False)
    identity = lambda x: x  # noqa: E731 - one process: gathering is the identity
    trainer = SimpleNamespace(
        accelerator=SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=identity, gather=identity),
        model=SimpleNamespace(training=True), aux_loss_enabled=False, beta=args.beta,
        precompute_ref_logps=args.precompute_ref_log_probs, loss_types=args.loss_type,
        loss_weights=args.loss_weights or [1.0] * len(args.loss_type), ld_alpha=args.ld_alpha,
        f_divergence_type=args.f_divergence_type, f_alpha_divergence_coef=args.f_alpha_divergence_coef,
        label_smoothing=args.label_smoothing, use_weighting=args.use_weighting,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, _total_train_tokens=0, _tp_size=1)
    n2, T = completion_mask.shape

    def model(**kwargs):
        assert (kwargs["labels"][completion_mask == 0] == -100).all()
        zeros = torch.zeros(n2, T - 1, dtype=policy_tokens.dtype)
        return SimpleNamespace(log_probs=policy_tokens, entropy=zeros, mean_logits=zeros,
                               is_top1=torch.zeros(n2, T - 1, dtype=torch.bool))

    inputs = {"input_ids": torch.arange(n2 * T).reshape(n2, T) % 11, "attention_mask": torch.ones(n2, T),
              "completion_mask": completion_mask, "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected}
    loss = trl_dpo.DPOTrainer._compute_loss(trainer, model, inputs, False)
    return loss, trainer._metrics["train"]


def test_dpo_loss_matches_trl():
    g = torch.Generator().manual_seed(2)
    B, T, P = 5, 9, 3  # pairs, sequence length, prompt length
    completion_mask = torch.zeros(2 * B, T)
    completion_mask[:, P:] = 1
    # per-token log-probs of the tokens at positions 1..T-1 (the completion: P..T-1)
    per_token = -torch.rand(2 * B, T - 1, generator=g, dtype=D64) * 4 * completion_mask[:, 1:]
    ref = -torch.rand(2 * B, generator=g, dtype=D64) * 20
    beta = 0.2
    theirs, metrics = _trl_dpo_loss(per_token, ref[:B], ref[B:], completion_mask, beta)
    logp = per_token.sum(dim=1)
    ours, cw, cl = dpo_loss(logp[:B], logp[B:], ref[:B], ref[B:], beta)
    assert abs(float(ours) - float(theirs)) < 1e-12, (float(ours), float(theirs))
    assert metrics["rewards/chosen"][0] == pytest.approx(float(cw.mean()), abs=1e-12)
    assert metrics["rewards/rejected"][0] == pytest.approx(float(cl.mean()), abs=1e-12)


def test_ppo_clip_loss_hand_computed():
    # ratios 1.5, 0.7, 1.1 with advantages 1, -2, 3 and eps 0.2:
    # min(1.5, 1.2) = 1.2;  min(-1.4, 0.8 * -2 = -1.6) = -1.6;  min(3.3, 3.3) = 3.3  -> mean 2.9 / 3
    old = torch.log(torch.tensor([[0.4, 0.5, 0.2]], dtype=D64))
    new = old + torch.log(torch.tensor([[1.5, 0.7, 1.1]], dtype=D64))
    adv = torch.tensor([[1.0, -2.0, 3.0]], dtype=D64)
    loss, frac = ppo_clip_loss(new, old, adv, 0.2)
    assert float(loss) == pytest.approx(-2.9 / 3, abs=1e-12)
    assert float(frac) == pytest.approx(2 / 3)
    # masked: only the first two tokens count -> -(1.2 - 1.6) / 2
    loss, frac = ppo_clip_loss(new, old, adv, 0.2, mask=torch.tensor([[1.0, 1.0, 0.0]], dtype=D64))
    assert float(loss) == pytest.approx(0.2, abs=1e-12) and float(frac) == pytest.approx(1.0)
    # the two tokens whose clipped term is the minimum give no gradient; the third -A rho / n
    new = new.clone().requires_grad_(True)
    ppo_clip_loss(new, old, adv, 0.2)[0].backward()
    assert torch.allclose(new.grad, torch.tensor([[0.0, 0.0, -3 * 1.1 / 3]], dtype=D64))


def test_gae_hand_computed():
    r = torch.tensor([[0.0, 0.0, 1.0]], dtype=D64)
    v = torch.tensor([[0.5, 0.2, 0.4]], dtype=D64)
    adv, ret = gae(r, v, gamma=0.9, lam=0.8)
    # delta = (-0.32, 0.16, 0.6); A_2 = 0.6, A_1 = 0.16 + 0.72 * 0.6, A_0 = -0.32 + 0.72 * A_1
    a1 = 0.16 + 0.72 * 0.6
    expected = torch.tensor([[-0.32 + 0.72 * a1, a1, 0.6]], dtype=D64)
    assert torch.allclose(adv, expected, atol=1e-12) and torch.allclose(ret, expected + v, atol=1e-12)
    # gamma = lambda = 1: A_t = (sum of the rewards from t on) - V(s_t), the Monte Carlo advantage
    adv, _ = gae(torch.tensor([[1.0, 2.0, 3.0]], dtype=D64), v, 1.0, 1.0)
    assert torch.allclose(adv, torch.tensor([[6.0, 5.0, 3.0]], dtype=D64) - v)
    # a right-padded episode of 2 tokens = the same episode without the padding
    adv_m, ret_m = gae(torch.tensor([[0.0, 1.0, 7.0]], dtype=D64), v, 0.9, 0.8,
                       mask=torch.tensor([[1.0, 1.0, 0.0]], dtype=D64))
    adv_2, ret_2 = gae(torch.tensor([[0.0, 1.0]], dtype=D64), v[:, :2], 0.9, 0.8)
    assert torch.allclose(adv_m[:, :2], adv_2) and float(adv_m[0, 2]) == 0.0 and torch.allclose(ret_m[:, :2], ret_2)


def test_kl_penalty_and_token_rewards_hand_computed():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.25]], dtype=D64)
    ref = torch.tensor([[-1.5, -1.0], [-0.5, -1.25]], dtype=D64)
    assert torch.equal(kl_per_token(logp, ref), torch.tensor([[0.5, -1.0], [0.0, 1.0]], dtype=D64))
    r = token_rewards(torch.tensor([2.0, -1.0], dtype=D64), logp, ref, 0.1)
    # r_t = -0.1 k_t, plus R at the last token
    assert torch.allclose(r, torch.tensor([[-0.05, 0.1 + 2.0], [0.0, -0.1 - 1.0]], dtype=D64))
    # with a mask, R goes to the last real token
    r = token_rewards(torch.tensor([2.0, -1.0], dtype=D64), logp, ref, 0.1,
                      mask=torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=D64))
    assert torch.allclose(r, torch.tensor([[-0.05 + 2.0, 0.0], [0.0, -1.1]], dtype=D64))


def test_adaptive_kl_controller_hand_computed():
    # Ziegler et al. 2019: beta <- beta (1 + clip(KL / target - 1, -0.2, 0.2) n / horizon)
    c = AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert c.update(9.0, 16) == pytest.approx(0.1 * (1 + 0.2 * 0.16))  # e clipped at 0.2
    c = AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert c.update(6.6, 16) == pytest.approx(0.1 * (1 + 0.1 * 0.16))
    assert c.update(0.0, 16) == pytest.approx(0.1 * (1 + 0.1 * 0.16) * (1 - 0.2 * 0.16))
    assert AdaptiveKLController(0.1, target=None).update(100.0, 16) == 0.1  # fixed


def test_loss_inputs_are_checked():
    with pytest.raises(ValueError, match="r_rejected: expected the shape of r_chosen"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="beta: expected"):
        dpo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(2), 0.0)
    with pytest.raises(ValueError, match="logp: expected a 2-D tensor"):
        ppo_clip_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="gamma: expected"):
        gae(torch.zeros(1, 2), torch.zeros(1, 2), gamma=1.5)


# --------------------------------------------------------------------------- GPT pieces


def _gpt(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**dict(vocab_size=11, block_size=16, d_model=16, num_heads=2, num_layers=1), **kw})).eval()


def test_states_logprobs_and_padding():
    gpt = _gpt()
    ids = torch.randint(0, 11, (3, 10), generator=torch.Generator().manual_seed(0))
    logits, h = gpt_states(gpt, ids)
    assert torch.allclose(logits, gpt(ids), atol=1e-6) and h.shape == (3, 10, 16)
    # a sequence's log-probability = the sum of its completion tokens' log-softmax, alone or padded
    seqs = [ids[0, :7].tolist(), ids[1].tolist()]
    padded, lengths = pad_sequences(seqs)
    prompts = torch.tensor([3, 4])
    with torch.no_grad():
        got = sequence_logprob(gpt, padded, lengths, prompts)
    for i, s in enumerate(seqs):
        lp = F.log_softmax(gpt(torch.tensor([s]))[0], dim=-1).detach()
        want = sum(float(lp[t - 1, s[t]]) for t in range(int(prompts[i]), len(s)))
        assert float(got[i]) == pytest.approx(want, abs=1e-5)
    # the completion positions gather the same log-probs: the 3 tokens after the prompt of 3
    with torch.no_grad():
        pos = completion_positions(prompts, 3)
        lp = token_logprobs(gather_completion(gpt(padded), pos), padded[torch.arange(2)[:, None], pos + 1])
        three = sequence_logprob(gpt, padded[:1, :6], torch.tensor([6]), prompts[:1])
    assert float(lp[0].sum()) == pytest.approx(float(three), abs=1e-5)


def test_reward_model_reads_the_last_real_token():
    rm = RewardModel.from_gpt(_gpt()).eval().requires_grad_(False)
    ids = torch.randint(0, 11, (2, 9), generator=torch.Generator().manual_seed(3))
    r_full = rm(ids[:1, :5])
    r_padded = rm(ids, torch.tensor([5, 9]))
    assert float(r_padded[0]) == pytest.approx(float(r_full[0]), abs=1e-5)
    _, h = gpt_states(rm.gpt, ids)
    assert float(r_padded[1]) == pytest.approx(float(h[1, 8] @ rm.w_r + rm.b_r), abs=1e-5)
    with pytest.raises(ValueError, match="lengths: expected 2 lengths in"):
        rm(ids, torch.tensor([0, 9]))


def test_ppo_step_keeps_the_reference_out_of_the_state():
    """PPO's state is the policy, the value head and beta; the frozen reference and the judge
    are beside it, and follow it to the device."""
    from seqlab.llm.rlhf_models import PPOConfig
    from seqlab.llm.tokenizers import fit_tokenizer

    gpt = _gpt()
    model = PPOModel(PPOConfig(gpt=gpt.config, reference="unused", judge="vowels", new_tokens=4))
    model.policy.load_state_dict(gpt.state_dict())
    model.attach(reference=_gpt(), tokenizer=fit_tokenizer("char", "abcdefghij "))
    assert sorted(k for k in model.state_dict() if not k.startswith("policy.")) == ["b_v", "kl_coef", "w_v"]
    assert not any(p.requires_grad for p in model.frozen("reference").parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    prompts = pad_sequences([[1, 2, 3], [4, 5]])
    loss, metrics = model.train_step(prompts, lr=1e-3, optimizer=opt, generator=torch.Generator().manual_seed(0))
    assert math.isfinite(loss) and {"reward", "kl", "beta", "clip_frac", "score"} <= set(metrics)
    assert metrics["reward"] == metrics["score"]  # no reward model: the judge is the reward
    assert float(model.kl_coef) != 0.05 or metrics["kl"] == pytest.approx(6.0)  # the controller moved beta


# --------------------------------------------------------------------------- the families, end to end

TINY = dict(preset="cpu-tiny", block_size=32, d_model=32, num_heads=2, num_layers=1)
FAST = dict(batch_size=4, eval_batches=1, warmup_steps=0, log_every=1)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A 30-step tiny GPT, 40 prompts labelled by the vowels judge, and a 10-step reward model."""
    root = tmp_path_factory.mktemp("rlhf")
    base = seqlab.train("gpt", out=root / "gpt", progress=False, max_steps=30, eval_every=30, **TINY,
                        **{**FAST, "batch_size": 8}).run_dir
    gpt, run = seqlab.load(base)
    prefs = root / "prefs.jsonl"
    prompts = corpus_prompts(load_corpus("pydoc").text, chars=8, count=40)
    label(gpt, run.tokenizer, prompts, prefs, judge="vowels", length=12, run=str(base))
    rm = seqlab.train("reward-model", out=root / "rm", progress=False, base=str(base), prefs=str(prefs),
                      max_steps=10, eval_every=10, **FAST).run_dir
    return SimpleNamespace(root=root, base=base, prefs=prefs, rm=rm, prompts=prompts)


def test_reward_model_run(pipeline):
    model, run = seqlab.load(pipeline.rm)
    assert isinstance(model, RewardModel) and run.config.gpt == seqlab.load(pipeline.base)[0].config
    ev = seqlab.evaluate(pipeline.rm)
    saved = json.loads((pipeline.rm / "run.json").read_text())["data"]
    assert ev.pairs == saved["val_pairs"] >= 1 and 0.0 <= ev.accuracy <= 1.0
    assert saved["records"] == 40 and saved["pairs"] == saved["train_pairs"] + saved["val_pairs"]
    # answers added later do not change the run's data; answers changed do
    with open(pipeline.prefs, "a") as f:
        f.write(json.dumps({"key": "new/0", "prompt": "x", "a": "a", "b": "b", "choice": "a"}) + "\n")
    assert seqlab.evaluate(pipeline.rm).accuracy == ev.accuracy


def test_dpo_run_starts_from_the_base_and_samples(pipeline, tmp_path):
    result = seqlab.train("dpo", out=tmp_path / "dpo", progress=False, base=str(pipeline.base),
                          prefs=str(pipeline.prefs), max_steps=4, eval_every=4, beta=0.5, **FAST)
    model, run = seqlab.load(result.run_dir)
    config = json.loads((latest_checkpoint(result.run_dir) / "config.json").read_text())["config"]
    base_ckpt = seqlab.load(pipeline.base)[1].checkpoint
    assert config["reference"] == str(base_ckpt.resolve())  # the reference is named, not saved
    keys = load_checkpoint(latest_checkpoint(result.run_dir)).state_dict
    assert all(k.startswith("policy.") for k in keys)
    text = seqlab.sample(result.run_dir, prompt="The ", length=10, seed=0)
    assert len(text) == 10 and text == run.tokenizer.decode(model.policy.generate(run.tokenizer.encode("The "), 10,
                                                                                    seed=0, temperature=0.8))
    # at step 0 the policy is the reference: the DPO loss is log 2 on every pair
    fresh = model.__class__(model.config)
    fresh.policy.load_state_dict(seqlab.load(pipeline.base)[0].state_dict())
    batch = get_family("dpo").data_from_run(run, {}).dataset.get_batch("val", 3)
    with torch.no_grad():
        assert float(fresh.loss(batch)[0]) == pytest.approx(math.log(2), abs=1e-6)


def test_ppo_resume_is_exact(pipeline, tmp_path):
    """4 steps straight = 2 steps, then a resume for 2 more (the reward model and the
    reference reloaded from the paths in the config, beta from the checkpoint)."""
    opts = dict(base=str(pipeline.base), reward=str(pipeline.rm), judge="vowels", new_tokens=6, kl_horizon=20,
                eval_every=2, ppo_epochs=2, **FAST)
    a = seqlab.train("ppo", out=tmp_path / "a", progress=False, max_steps=4, **opts)
    b = seqlab.train("ppo", out=tmp_path / "b", progress=False, max_steps=4, max_seconds=1e-9, **opts)
    assert b.steps < 4
    seqlab.resume(b.run_dir, progress=False)
    wa = load_checkpoint(latest_checkpoint(a.run_dir)).state_dict
    wb = load_checkpoint(latest_checkpoint(b.run_dir)).state_dict
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert float(wa["kl_coef"]) != 0.05  # beta was adapted, and saved
    hist = [h for h in a.history if h["split"] == "train"]
    assert {"reward", "kl", "score", "beta"} <= set(hist[0])
    assert seqlab.sample(a.run_dir, prompt="The ", length=5, seed=1)


def test_ppo_judge_only_run(pipeline, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("The \nclass \ndef \n")
    r = seqlab.train("ppo", out=tmp_path / "j", progress=False, base=str(pipeline.base), judge="vowels",
                     prompts=str(prompts), new_tokens=4, max_steps=1, eval_every=1, **FAST)
    model, run = seqlab.load(r.run_dir)
    assert model.config.reward is None and json.loads(run.file("prompts.json")) == ["The ", "class ", "def "]


# --------------------------------------------------------------------------- command line


def test_cli_end_to_end(pipeline, tmp_path, capsys):
    out = tmp_path / "h.jsonl"
    prompts = tmp_path / "p.txt"
    prompts.write_text("The \nclass \n")
    assert main(["rlhf", "label", str(pipeline.base), "--prompts", str(prompts), "--out", str(out), "--judge",
                 "sentiment", "--pairs", "2", "--length", "8"]) == 0
    assert "4 answer(s) recorded" in capsys.readouterr().out
    assert main(["rlhf", "dpo", str(pipeline.base), "--prefs", str(pipeline.prefs), "--max-steps", "3",
                 "--eval-every", "2", "--batch-size", "2", "--eval-batches", "1", "--quiet", "--max-seconds",
                 "1e-9", "--out", str(tmp_path / "d")]) == 0
    printed = capsys.readouterr().out
    assert "validation loss (DPO)" in printed and "sample:" in printed
    assert main(["sample", str(tmp_path / "d"), "--prompt", "The ", "--length", "5"]) == 0
    assert main(["rlhf", "dpo", "--resume", str(tmp_path / "d"), "--quiet"]) == 0
    assert "3 steps" in capsys.readouterr().out
    assert main(["eval", str(pipeline.rm)]) == 0
    assert "reward-model accuracy" in capsys.readouterr().out


def test_cli_bad_inputs(pipeline, tmp_path, capsys):
    base, rm = str(pipeline.base), str(pipeline.rm)
    assert "expected an action" in one_line_error(capsys, ["rlhf"])
    assert "GPT_RUN: expected the GPT run" in one_line_error(capsys, ["rlhf", "reward", "--prefs", "x"])
    assert "prefs: expected a preferences file" in one_line_error(capsys, ["rlhf", "reward", base])
    err = one_line_error(capsys, ["rlhf", "dpo", base, "--prefs", str(tmp_path / "none.jsonl")])
    assert "prefs: expected an existing preferences file" in err
    assert "base: expected a gpt, ppo or dpo run" in one_line_error(capsys, ["rlhf", "dpo", rm, "--prefs", "x"])
    assert "received neither" in one_line_error(capsys, ["rlhf", "ppo", base])
    assert "reward: expected a reward-model run" in one_line_error(capsys, ["rlhf", "ppo", base, "--reward", base])
    assert "judge: expected one of vowels, sentiment" in one_line_error(capsys, ["rlhf", "ppo", base, "--judge", "x"])
    assert "new_tokens: expected" in one_line_error(capsys, ["rlhf", "ppo", base, "--judge", "vowels",
                                                             "--new-tokens", "32"])
    assert "expected nothing with --resume" in one_line_error(capsys, ["rlhf", "ppo", base, "--resume", rm])
    assert "--length: expected 1 to 31" in one_line_error(capsys, ["rlhf", "label", base, "--length", "40",
                                                                   "--judge", "vowels"])
    assert "RUN_DIR: expected a gpt, ppo or dpo run" in one_line_error(capsys, ["rlhf", "label", rm])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "k/0", "prompt": "a", "a": "b", "b": "c", "choice": "a"}\nnot json\n')
    err = one_line_error(capsys, ["rlhf", "reward", base, "--prefs", str(bad)])
    assert "line 2: expected one JSON object per line" in err
    few = tmp_path / "few.jsonl"
    few.write_text('{"key": "k/0", "prompt": "a", "a": "b", "b": "c", "choice": "tie"}\n')
    assert "at least 2 answers" in one_line_error(capsys, ["rlhf", "dpo", base, "--prefs", str(few)])
    unknown = tmp_path / "unk.jsonl"
    unknown.write_text("".join(json.dumps({"key": f"k/{i}", "prompt": "\u2603", "a": "b", "b": "c", "choice": "a"})
                               + "\n" for i in range(3)))
    assert "prompt: expected" in one_line_error(capsys, ["rlhf", "reward", base, "--prefs", str(unknown)])


def test_tour_section_quick(tmp_path):
    from seqlab.llm.rlhf_tour import rlhf
    from seqlab.tour.context import TourContext
    from seqlab.viz.report import Report, Section

    ctx = TourContext(out=tmp_path, quick=True, progress=False, report=Report("t"))
    sec = Section("RLHF")
    line = rlhf(ctx, sec)
    assert line.startswith("RLHF: reward model") and "PPO" in line and "DPO" in line
    kinds = [k for k, _ in sec.blocks]
    assert {"text", "equation", "table", "code"} <= set(kinds)
    assert (tmp_path / "rlhf-prefs.jsonl").is_file() and not ctx.cut_short
