"""RLHF's PPO under torchrun (``seqlab.llm.rlhf_models.PPOModel``): each rank samples and scores
its rows of the step's prompts (the sampler's random numbers drawn for the whole batch, each rank
keeping its rows), the rollout is gathered, each minibatch's gradient is split across the ranks
and averaged. Two processes with B/2 prompts each follow the one-process run with B prompts in
float64 to 1e-10 (training and validation records, weights, the value head, the KL coefficient,
Adam's state), every rank holds the same weights bit for bit, a run resumes under another number
of processes, the sampler's change leaves one-process sampling bit-identical to
``torch.multinomial``'s, and no family of seqlab is refused under torchrun any more.

The ranks are forked as in tests/training/test_distributed_own_step.py (whose helpers this uses)."""

from __future__ import annotations

import pytest
import torch

import seqlab
from seqlab import runs
from seqlab.llm.gpt import GPT, GPTConfig
from seqlab.llm.rlhf_models import sample_completions
from seqlab.training import distributed
from seqlab.training.checkpoint import load_checkpoint
from seqlab.training.rundir import latest_checkpoint
from distributed_helpers import assert_ranks_hold_the_same_weights, records, resume_in_one_process, single, stop_at
from test_distributed_own_step import run_ranks
from test_distributed_ppo import assert_same_run

B = 4  # prompts per step: 2 processes x 2
TRAIN = dict(max_steps=4, eval_every=2, log_every=1, eval_batches=1, device="cpu", batch_size=B)
# prompts of 2 to 6 characters (the sampler decodes each length's group together); 3 minibatches
# of the 4 rollouts (2, 1 and 1 rows) split 1+1, 1+0 and 1+0 over the ranks (an empty part);
# kl_horizon 8: beta moves at every step
PROMPTS = ["The ", "class ", "def ", "for ", "a ", "if ", "while ", "is ", "in ", "import ", "x ", "return "]
PPO = dict(new_tokens=4, minibatches=3, ppo_epochs=2, kl_horizon=8, lr=3e-3, judge="vowels")


@pytest.fixture(scope="module")
def rlhf(tmp_path_factory):
    """A base GPT (1 step), preferences labelled by the vowels judge, a reward model (1 step),
    a prompts file, and the one-process PPO run the tests compare with: all in float64."""
    from seqlab.llm.preferences import label

    root = tmp_path_factory.mktemp("rlhf")
    base = root / "gpt"
    single("gpt", base, dict(preset="cpu-tiny", block_size=16, batch_size=4, warmup_steps=0, max_steps=1,
                             eval_every=1, eval_batches=1, device="cpu"))
    gpt, run = seqlab.load(base)
    prefs = root / "prefs.jsonl"
    label(gpt, run.tokenizer, PROMPTS[:6], prefs, judge="vowels", length=4, run=str(base))
    rm = root / "rm"
    single("reward-model", rm, dict(base=str(base), prefs=str(prefs), batch_size=4, warmup_steps=0, max_steps=1,
                                    eval_every=1, eval_batches=1, device="cpu"))
    prompts = root / "prompts.txt"
    prompts.write_text("".join(p + "\n" for p in PROMPTS))
    options = dict(PPO, base=str(base), reward=str(rm), prompts=str(prompts), **TRAIN)
    one = root / "one"
    single("ppo", one, options)
    return options, one


def test_two_processes_with_half_the_prompts_each_equal_one_process(rlhf, tmp_path):
    options, one = rlhf
    assert run_ranks(2, "ppo", tmp_path / "two", options) == {0: None, 1: None}
    assert_same_run(one, tmp_path / "two", TRAIN["max_steps"])
    held = assert_ranks_hold_the_same_weights(tmp_path / "two")
    assert all(t.dtype == torch.float64 for t in held.values() if t.is_floating_point())
    train = [r for r in records(tmp_path / "two") if r["split"] == "train"]
    # the run moved: losses and beta change at every step; every step counts all B N tokens once
    assert len({r["loss"] for r in train}) == len({r["beta"] for r in train}) == TRAIN["max_steps"]
    assert float(held["kl_coef"]) != PPO.get("kl_coef", 0.05)
    assert {"reward", "kl", "score", "clip_frac"} <= set(train[0])
    assert all(r["tokens"] == B * PPO["new_tokens"] for r in train)  # the ranks' shares, summed


def test_a_two_process_run_resumes_in_one_process(rlhf, tmp_path, monkeypatch):
    """A checkpoint holds one policy, value head, beta and optimizer state: one process resumes
    a run two processes stopped after step 2, and the whole equals the one-process run."""
    options, one = rlhf
    stop_at(monkeypatch, 2)
    assert run_ranks(2, "ppo", tmp_path / "cut", options) == {0: None, 1: None}
    monkeypatch.undo()
    assert load_checkpoint(latest_checkpoint(tmp_path / "cut")).step == 2
    resume_in_one_process(tmp_path / "cut")
    # step 2 was evaluated on schedule before the stop, so no record is repeated
    assert_same_run(one, tmp_path / "cut", TRAIN["max_steps"])


# --------------------------------------------------------------------------- the sampler


def _gpt(vocab: int = 13) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, block_size=16, d_model=16, num_heads=2, num_layers=1)).eval()


@torch.no_grad()
def _multinomial_sampler(gpt: GPT, prompts, n: int, temperature: float, generator) -> torch.Tensor:
    """The sampler as it was before the split: each length's group decoded with the KV cache,
    one ``torch.multinomial`` draw per step."""
    out = torch.zeros(len(prompts), n, dtype=torch.long)
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(len(p), []).append(i)
    for _, rows in sorted(groups.items()):
        cache = gpt.new_cache()
        z = gpt(torch.tensor([prompts[i] for i in rows]), cache=cache)[:, -1]
        for t in range(n):
            y = torch.multinomial(torch.softmax(z.float() / temperature, dim=-1), 1, generator=generator)
            out[rows, t] = y[:, 0]
            if t + 1 < n:
                z = gpt(y, cache=cache)[:, -1]
    return out


PROMPT_IDS = [[1, 2, 3], [4, 5], [6], [7, 8], [9, 1, 2, 3], [4], [5, 6, 7], [2, 2]]  # lengths 1 to 4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_process_sampling_is_torch_multinomials(dtype):
    """The exponential race drawn for the whole batch gives, in one process, exactly the tokens
    torch.multinomial gave: one-process runs are unchanged."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        gpt = _gpt()
        for seed, tau in ((0, 1.0), (1, 0.7), (2, 1.5)):
            want = _multinomial_sampler(gpt, PROMPT_IDS, 6, tau, torch.Generator().manual_seed(seed))
            got = sample_completions(gpt, PROMPT_IDS, 6, temperature=tau, generator=torch.Generator().manual_seed(seed))
            assert torch.equal(got, want), seed
        assert len(set(map(tuple, got.tolist()))) > 1  # not a constant draw
    finally:
        torch.set_default_dtype(before)


@pytest.mark.parametrize("world", [2, 4])
def test_each_rank_samples_its_rows_of_the_one_process_draw(world):
    """Rank r of N keeps rows r B/N .. (r+1) B/N - 1 (``Group.rows``): its tokens are those rows
    of the one-process draw, with one generator for the batch and with one per prompt."""
    gpt = _gpt()
    whole = sample_completions(gpt, PROMPT_IDS, 5, generator=torch.Generator().manual_seed(3))
    per_row = [torch.Generator().manual_seed(10 + i) for i in range(len(PROMPT_IDS))]
    whole_rows = sample_completions(gpt, PROMPT_IDS, 5, generator=per_row)
    for rank in range(world):
        group = distributed.Group(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"),
                                  backend="gloo")
        rows = group.rows(len(PROMPT_IDS) // world)
        mine = sample_completions(gpt, PROMPT_IDS, 5, generator=torch.Generator().manual_seed(3), keep=rows)
        assert torch.equal(mine, whole[rows]), rank
        gens = [torch.Generator().manual_seed(10 + i) for i in range(len(PROMPT_IDS))]
        assert torch.equal(sample_completions(gpt, PROMPT_IDS, 5, generator=gens, keep=rows), whole_rows[rows])


# --------------------------------------------------------------------------- no family is refused


def test_no_family_of_seqlab_is_refused_under_torchrun():
    """Every family whose model has its own update rule splits it (its train_step takes group=);
    the refusal itself is tested with a tiny model in tests/training/test_distributed.py."""
    own = {name: fam.model_class for name, fam in runs.families().items()
           if callable(getattr(fam.model_class, "train_step", None))}
    assert {"ppo", "rbm", "gan", "control"} <= set(own)
    refused = [name for name, cls in own.items() if not distributed.splits_own_step(cls)]
    assert refused == []
