r"""The RLHF models, built from the equations of ``seqlab.llm.rlhf``: a reward model, and
a policy (a GPT) trained with DPO or PPO beside a frozen reference pi_ref (the starting
policy).

Reward model (Christiano et al. 2017; Ziegler et al. 2019): a GPT body with a scalar head on
the state of the last token, trained on preference pairs (x, y_w preferred, y_l rejected)
with the Bradley-Terry loss:

    r(x, y)  = w^(r) . a^(L)_T + b^(r)                   a^(L)_T the last token's state  (D,)
    C_RM     = -log sigma(r(x, y_w) - r(x, y_l))         mean over pairs

DPO (Rafailov et al. 2023, eq. 7): the policy's and the reference's log-probabilities
log pi(y | x) = sum_t log pi(y_t | x, y_<t) of both completions of each pair, then

    h        = beta [(log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))]
    C_DPO    = -log sigma(h)                              mean over pairs

PPO (Schulman et al. 2017; Ziegler et al. 2019): a value head on the policy's own states,

    V(s_t)   = w^(v) . a^(L)_t + b^(v)

and each training step samples N tokens y after every prompt x of its batch (the rollout:
log pi_old, log pi_ref, V_old, and R = r(x, y) or a scripted judge's score), forms the
per-token rewards r_t = -beta k_t + [t = N] R and the advantages A_t (GAE), makes
``ppo_epochs`` passes of ``minibatches`` updates on

    C_PPO    = -L_clip + c_V L_V

and then moves beta with the adaptive KL controller, beta <- beta (1 + K_beta e).

Code names: ``w_r``, ``b_r`` the reward head w^(r), b^(r); ``w_v``, ``b_v`` the value head
on the policy's own states; ``kl_coef`` beta (a buffer: it is saved with the weights, so a
resumed run goes on with the adapted value); the frozen reference (and PPO's reward model)
are kept out of the module's state and reloaded from the run paths recorded in the config.

Under torchrun PPO splits its own step (``train_step(..., group=)``): each process samples and
scores its rows of the batch's prompts with the one-process random numbers, the rollout is
gathered, and each minibatch's gradient is averaged over the processes (``PPOModel.train_step``,
docs/scaling.md). The reward model and DPO are plain losses, which DDP averages.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.llm.gpt import GPT, GPTConfig
from seqlab.llm.rlhf import (AdaptiveKLController, at_least_float32, bradley_terry_loss, completion_positions,
                             dpo_loss, gae, gather_completion, gpt_states, pad_sequences, ppo_clip_loss,
                             sequence_logprob, token_logprobs, token_rewards, whiten)
from seqlab.validation import check_float, check_int, fail, fields_from_dict

# --------------------------------------------------------------------------- sampling and preference pairs


@torch.no_grad()
def sample_completions(gpt: GPT, prompts: Sequence[Sequence[int]], n: int, *, temperature: float = 1.0,
                       generator: torch.Generator | Sequence[torch.Generator] | None = None,
                       keep: slice | None = None) -> torch.Tensor:
    """n tokens sampled from softmax(z / tau) after each prompt, (B, n): prompts of one length
    are decoded together with the KV cache. Each prompt plus n must fit in the context.

    ``generator``: one for the whole batch, or one per prompt (a list): each row then draws
    with its own generator by the Gumbel-max rule, y = argmax_i (z_i / tau + G_i) with
    G_i = -log(-log u_i), u_i ~ U(0, 1), which samples softmax(z / tau) exactly, so a row's
    tokens do not depend on the other rows of its batch.

    With one generator, each step of a group of b prompts of one length draws y by the
    exponential race, y = argmax_i p_i / q_i with q_i ~ Exp(1) drawn for all b rows (b, V):
    exactly the numbers and the token ``torch.multinomial(p, 1)`` draws.

    ``keep`` (a slice of the B prompts, a rank's rows under torchrun: ``Group.rows``): decode
    only those rows, (len(keep), n). The random numbers are still drawn for every row of the
    batch, in the same order, so each kept prompt gets the tokens it gets in one process."""
    check_int(n, "n", minimum=1)
    check_float(temperature, "temperature", minimum=0.0, open_min=True)
    per_row = isinstance(generator, (list, tuple))
    if per_row and len(generator) != len(prompts):
        fail("generator", f"one generator per prompt ({len(prompts)})", f"{len(generator)}")
    kept = range(len(prompts))[keep] if keep is not None else range(len(prompts))
    device = gpt.w_x.device
    out = torch.zeros(len(prompts), n, dtype=torch.long, device=device)
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        if not 1 <= len(p) <= gpt.config.block_size - n:
            fail("prompt", f"1 to {gpt.config.block_size - n} tokens (the context {gpt.config.block_size} minus "
                 f"{n} new ones)", f"{len(p)} tokens")
        groups.setdefault(len(p), []).append(i)
    was_training = gpt.training
    gpt.eval()
    try:
        for _, rows in sorted(groups.items()):
            # mine: the positions (in the group) of the kept rows
            mine = [k for k, i in enumerate(rows) if i in kept]
            decoded = [rows[k] for k in mine]
            if per_row:  # a row's draws are its own generator's: nothing to draw for the rows not kept
                if not decoded:
                    continue
                rows, mine = decoded, list(range(len(decoded)))
            if decoded:
                ids = torch.tensor([list(prompts[i]) for i in decoded], dtype=torch.long, device=device)  # (b, P)
                cache = gpt.new_cache()
                z = gpt(ids, cache=cache)[:, -1]  # (b, V)
            V = gpt.config.vocab_size
            for t in range(n):
                if per_row:
                    u = torch.stack([torch.rand(V, generator=generator[i], device=generator[i].device)
                                     for i in rows]).to(device)  # (b, V)
                    # y = argmax_i (z_i / tau - log(-log u_i))
                    g = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))
                    y = (z.float() / temperature + g).argmax(dim=-1, keepdim=True)  # (b, 1)
                else:
                    # q ~ Exp(1) for every row of the group, (b_all, V): torch.multinomial's draw
                    q = torch.empty(len(rows), V, dtype=torch.float32, device=device).exponential_(
                        generator=generator)
                    if not decoded:
                        continue
                    p = torch.softmax(z.float() / temperature, dim=-1)  # (b, V)
                    # y = argmax_i p_i / q_i   (the exponential race: a sample of p)
                    y = (p / q[mine]).argmax(dim=-1, keepdim=True)  # (b, 1)
                out[decoded, t] = y[:, 0]
                if t + 1 < n:
                    z = gpt(y, cache=cache)[:, -1]
    finally:
        gpt.train(was_training)
    return out[list(kept)] if keep is not None else out


class PairBatch(NamedTuple):
    """A batch of preference pairs: token ids (B, T) of prompt + preferred / rejected
    completion (right-padded), their lengths and prompt lengths (B,)."""

    chosen: torch.Tensor
    chosen_len: torch.Tensor
    chosen_prompt: torch.Tensor
    rejected: torch.Tensor
    rejected_len: torch.Tensor
    rejected_prompt: torch.Tensor


def _check_pair_batch(batch: object, vocab_size: int) -> PairBatch:
    if not (isinstance(batch, tuple) and len(batch) == 6):
        fail("batch", "a PairBatch (chosen, chosen_len, chosen_prompt, rejected, rejected_len, rejected_prompt)",
             type(batch).__name__)
    return PairBatch(*batch)


def _both(batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chosen and rejected in one right-padded batch (2B, T): one forward for both."""
    T = max(batch.chosen.shape[1], batch.rejected.shape[1])
    c = F.pad(batch.chosen, (0, T - batch.chosen.shape[1]))
    r = F.pad(batch.rejected, (0, T - batch.rejected.shape[1]))
    return (torch.cat([c, r]), torch.cat([batch.chosen_len, batch.rejected_len]),
            torch.cat([batch.chosen_prompt, batch.rejected_prompt]))


# --------------------------------------------------------------------------- the reward model


@dataclass(frozen=True)
class RewardModelConfig:
    """Settings of a reward model: a GPT body with a scalar head.

    Attributes:
        gpt: the body's config (the base GPT run's).
    """

    gpt: GPTConfig

    def __post_init__(self) -> None:
        if not isinstance(self.gpt, GPTConfig):
            fail("gpt", "a GPTConfig", type(self.gpt).__name__)

    def to_dict(self) -> dict:
        return {"gpt": self.gpt.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "RewardModelConfig":
        fields = fields_from_dict(cls, d, "reward model config")
        if "gpt" in fields:
            fields["gpt"] = GPTConfig.from_dict(fields["gpt"])
        return cls(**fields)


class RewardModel(nn.Module):
    """``RewardModel(config)`` or ``RewardModel.from_gpt(gpt)``: r(x, y) = w^(r) . a^(L)_T + b^(r).
    ``forward(ids, lengths)`` -> r (B,); ``loss(PairBatch)`` is C_RM for the trainer."""

    family = "reward-model"

    def __init__(self, config: RewardModelConfig) -> None:
        super().__init__()
        if not isinstance(config, RewardModelConfig):
            fail("config", "a RewardModelConfig", type(config).__name__)
        self.config = config
        self.gpt = GPT(config.gpt)
        D = config.gpt.d_model
        self.w_r = nn.Parameter(torch.zeros(D))  # w^(r): (D,)
        self.b_r = nn.Parameter(torch.zeros(()))  # b^(r)
        nn.init.normal_(self.w_r, std=1.0 / math.sqrt(D))

    @classmethod
    def from_gpt(cls, gpt: GPT) -> "RewardModel":
        """A reward model whose body starts from ``gpt``'s weights (a fresh head)."""
        model = cls(RewardModelConfig(gpt=gpt.config))
        model.gpt.load_state_dict(gpt.state_dict())
        return model

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, T) right-padded, lengths (B,) (None: all T) -> r (B,)."""
        _, h = gpt_states(self.gpt, ids)  # (B, T, D)
        B, T = ids.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=ids.device)
        if lengths.shape != (B,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
            fail("lengths", f"{B} lengths in [1, {T}]", f"{lengths.tolist()}")
        last = h[torch.arange(B, device=ids.device), lengths.long() - 1]  # a^(L)_T: (B, D)
        # r(x, y) = w^(r) . a^(L)_T + b^(r)       (float32 at least: float64 stays float64)
        return at_least_float32(last) @ at_least_float32(self.w_r) + at_least_float32(self.b_r)

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        b = _check_pair_batch(batch, self.config.gpt.vocab_size)
        ids, lengths, _ = _both(b)
        r = self(ids, lengths)  # (2B,)
        r_w, r_l = r.chunk(2)
        loss = bradley_terry_loss(r_w, r_l)
        return loss, {"accuracy": float((r_w > r_l).float().mean()), "margin": float((r_w - r_l).detach().mean())}


# --------------------------------------------------------------------------- policies with a frozen reference


class _WithFrozen(nn.Module):
    """A policy ``self.policy`` (a GPT) with frozen models beside it that are not part of its
    state (not saved in checkpoints): ``attach(name=module)`` or a loader ``load_frozen(name)``
    that the subclass defines (reloading from the paths in its config). They follow the
    policy's device."""

    def __init__(self) -> None:
        super().__init__()
        self.__dict__["_frozen"] = {}

    def attach(self, **modules: Any) -> None:
        for name, m in modules.items():
            if isinstance(m, nn.Module):
                m = m.to(self.policy.w_x.device).eval()
                for p in m.parameters():
                    p.requires_grad_(False)
            self._frozen[name] = m

    def frozen(self, name: str) -> Any:
        if name not in self._frozen:
            self.attach(**{name: self.load_frozen(name)})
        return self._frozen[name]

    def load_frozen(self, name: str) -> Any:
        fail(name, "a frozen model attached with attach()", "none")

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        for m in self._frozen.values():
            if isinstance(m, nn.Module):
                m._apply(fn, *args, **kwargs)
        return out


def _load_gpt(path: str, what: str) -> tuple[GPT, Any]:
    """The GPT policy of a run or checkpoint (a gpt run, or the policy of a ppo/dpo run)."""
    from seqlab.runs import load

    model, run = load(path)
    gpt = getattr(model, "policy", model)
    if not isinstance(gpt, GPT):
        fail(what, "a gpt, ppo or dpo run", f"a {run.family!r} run")
    return gpt, run


@dataclass(frozen=True)
class DPOConfig:
    """Settings of DPO.

    Attributes:
        gpt: the policy's config (the base GPT run's).
        reference: the checkpoint of the frozen reference (the base run's, recorded when the run starts).
        beta: DPO's beta: how far the policy may move from the reference (larger: closer).
    """

    gpt: GPTConfig
    reference: str
    beta: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.gpt, GPTConfig):
            fail("gpt", "a GPTConfig", type(self.gpt).__name__)
        if not isinstance(self.reference, str):
            fail("reference", "a checkpoint path", repr(self.reference))
        check_float(self.beta, "beta", minimum=0.0, open_min=True)
        if not math.isfinite(self.beta):
            fail("beta", "a finite number", self.beta)

    def to_dict(self) -> dict:
        return {**asdict(self), "gpt": self.gpt.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "DPOConfig":
        fields = fields_from_dict(cls, d, "DPO config")
        if "gpt" in fields:
            fields["gpt"] = GPTConfig.from_dict(fields["gpt"])
        return cls(**fields)


class DPOModel(_WithFrozen):
    """The policy trained with DPO: ``loss(PairBatch)`` is C_DPO for the generic trainer."""

    family = "dpo"

    def __init__(self, config: DPOConfig) -> None:
        super().__init__()
        if not isinstance(config, DPOConfig):
            fail("config", "a DPOConfig", type(config).__name__)
        self.config = config
        self.policy = GPT(config.gpt)

    def load_frozen(self, name: str) -> Any:
        if name != "reference":
            return super().load_frozen(name)
        return _load_gpt(self.config.reference, "reference")[0]

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        b = _check_pair_batch(batch, self.config.gpt.vocab_size)
        ids, lengths, prompts = _both(b)
        logp = sequence_logprob(self.policy, ids, lengths, prompts)  # (2B,)
        with torch.no_grad():
            ref = sequence_logprob(self.frozen("reference"), ids, lengths, prompts)  # (2B,)
        pc, pr = logp.chunk(2)
        rc, rr = ref.chunk(2)
        loss, chosen, rejected = dpo_loss(pc, pr, rc, rr, self.config.beta)
        return loss, {"accuracy": float((chosen > rejected).float().mean()),
                      "margin": float((chosen - rejected).mean()), "reward_chosen": float(chosen.mean()),
                      "reward_rejected": float(rejected.mean())}


@dataclass(frozen=True)
class PPOConfig:
    """Settings of PPO against a reward (a reward-model run, or a scripted judge).

    Attributes:
        gpt: the policy's config (the base GPT run's).
        reference: the checkpoint of the frozen reference (the base run's, recorded when the run starts).
        reward: the reward model's checkpoint (recorded when the run starts), or none: the judge is the reward.
        judge: a scripted judge: the reward when there is no reward model, else a score that is only measured.
        new_tokens: N, tokens sampled after each prompt.
        temperature: tau, the policy is softmax(z / tau) (sampling and log-probabilities alike).
        kl_coef: beta, the KL penalty's coefficient at the start (also the one the validation objective uses).
        kl_target: the adaptive controller's KL target in nats per sequence (none: beta stays fixed).
        kl_horizon: the adaptive controller's horizon in samples (K_beta = batch size / horizon).
        clip_eps: epsilon of the clipped ratio.
        gamma: discount gamma of the per-token rewards.
        lam: lambda of the generalised advantage estimates.
        vf_coef: c_V, the weight of the value loss.
        ppo_epochs: passes over each batch of samples.
        minibatches: minibatches per pass.
        whiten: normalise the advantages of each batch to mean 0 and variance 1 (True or False).
    """

    gpt: GPTConfig
    reference: str
    reward: str | None = None
    judge: str | None = None
    new_tokens: int = 32
    temperature: float = 1.0
    kl_coef: float = 0.05
    kl_target: float | None = 6.0
    kl_horizon: int = 500
    clip_eps: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    vf_coef: float = 0.1
    ppo_epochs: int = 4
    minibatches: int = 1
    whiten: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.gpt, GPTConfig):
            fail("gpt", "a GPTConfig", type(self.gpt).__name__)
        if not isinstance(self.reference, str):
            fail("reference", "a checkpoint path", repr(self.reference))
        if self.reward is None and self.judge is None:
            fail("reward", "a reward model's run or a scripted judge", "neither")
        check_int(self.new_tokens, "new_tokens", minimum=1, maximum=self.gpt.block_size - 1)
        check_float(self.temperature, "temperature", minimum=0.0, open_min=True)
        check_float(self.kl_coef, "kl_coef", minimum=0.0)
        if self.kl_target is not None:
            check_float(self.kl_target, "kl_target", minimum=0.0, open_min=True)
        check_int(self.kl_horizon, "kl_horizon", minimum=1)
        check_float(self.clip_eps, "clip_eps", minimum=0.0, open_min=True)
        check_float(self.gamma, "gamma", minimum=0.0, maximum=1.0)
        check_float(self.lam, "lam", minimum=0.0, maximum=1.0)
        check_float(self.vf_coef, "vf_coef", minimum=0.0)
        check_int(self.ppo_epochs, "ppo_epochs", minimum=1)
        check_int(self.minibatches, "minibatches", minimum=1)
        if not isinstance(self.whiten, bool):
            fail("whiten", "True or False", repr(self.whiten))
        for name in ("temperature", "kl_coef", "kl_target", "vf_coef", "clip_eps"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                fail(name, "a finite number", v)

    def to_dict(self) -> dict:
        return {**asdict(self), "gpt": self.gpt.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "PPOConfig":
        fields = fields_from_dict(cls, d, "PPO config")
        if "gpt" in fields:
            fields["gpt"] = GPTConfig.from_dict(fields["gpt"])
        return cls(**fields)


@dataclass
class Rollout:
    """One batch of samples and what PPO needs of them (all detached)."""

    ids: torch.Tensor  # (B, T) prompt + completion, right-padded
    lengths: torch.Tensor  # (B,)
    positions: torch.Tensor  # (B, N): where the logits of the completion tokens are
    tokens: torch.Tensor  # (B, N) the completions
    logp: torch.Tensor  # (B, N) log pi_old
    logp_ref: torch.Tensor  # (B, N) log pi_ref
    values: torch.Tensor  # (B, N) V_old(s_t)
    reward: torch.Tensor  # (B,) R
    score: torch.Tensor | None  # (B,) the scripted judge's score, where there is one

    @property
    def kl(self) -> torch.Tensor:
        """sum_t k_t per sequence, (B,)."""
        return (self.logp - self.logp_ref).sum(dim=1)

    def gathered(self, group) -> "Rollout":
        """Every rank's rows, in rank order (one all_gather per field): the whole batch's
        rollout on every rank, when each rank holds its rows ``group.rows(B / N)`` of it."""
        return Rollout(*(None if t is None else group.gather(t)
                         for t in (getattr(self, f.name) for f in dataclasses.fields(self))))


def unpad_prompts(batch, group=None) -> list[list[int]]:
    """(ids (B, P) right-padded, lengths (B,)) -> token lists. Under torchrun (``group``: the
    batch is rank r's share of the step's batch, every share padded to the same P) every
    rank's share is gathered first: the whole batch's prompts, in order, on every rank."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        fail("batch", "(prompt ids (B, P), lengths (B,))", type(batch).__name__)
    ids, lengths = batch
    if group is not None:
        ids, lengths = group.gather(ids), group.gather(lengths)  # (B, P), (B,)
    return [ids[i, :int(lengths[i])].tolist() for i in range(ids.shape[0])]


class PPOModel(_WithFrozen):
    """The policy (a GPT) with a value head w^(v) . a^(L)_t + b^(v) on its own states, trained
    by ``train_step`` (sample, score, GAE, clipped-ratio updates, KL controller)."""

    family = "ppo"

    def __init__(self, config: PPOConfig) -> None:
        super().__init__()
        if not isinstance(config, PPOConfig):
            fail("config", "a PPOConfig", type(config).__name__)
        self.config = config
        self.policy = GPT(config.gpt)
        self.w_v = nn.Parameter(torch.zeros(config.gpt.d_model))  # w^(v): (D,)
        self.b_v = nn.Parameter(torch.zeros(()))  # b^(v)
        self.register_buffer("kl_coef", torch.tensor(float(config.kl_coef), dtype=torch.float64))  # beta
        self.clip_norm: float | None = 1.0

    # ---- the frozen models: reference, reward model, judge (text scorer) and tokenizer

    def load_frozen(self, name: str) -> Any:
        c = self.config
        if name == "reference":
            gpt, run = _load_gpt(c.reference, "reference")
            self._frozen.setdefault("tokenizer", run.tokenizer)
            return gpt
        if name == "tokenizer":
            return _load_gpt(c.reference, "reference")[1].tokenizer
        if name == "reward_model":
            from seqlab.runs import load

            model, run = load(c.reward)
            if not isinstance(model, RewardModel):
                fail("reward", "a reward-model run", f"a {run.family!r} run")
            if run.tokenizer != self.frozen("tokenizer"):
                fail("reward", "a reward model with the policy's tokenizer", "another tokenizer")
            return model
        if name == "judge":
            from seqlab.llm.preferences import get_judge

            return get_judge(c.judge)
        return super().load_frozen(name)

    # ---- one batch of samples

    def states(self, ids: torch.Tensor, positions: torch.Tensor, tokens: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log pi(y_t|s_t), V(s_t)), (B, N) each, at the completion tokens."""
        logits, h = gpt_states(self.policy, ids)  # (B, T, V), (B, T, D)
        logp = token_logprobs(gather_completion(logits, positions), tokens, self.config.temperature)  # (B, N)
        # V(s_t) = w^(v) . a^(L)_t + b^(v)
        values = (at_least_float32(gather_completion(h, positions)) @ at_least_float32(self.w_v)
                  + at_least_float32(self.b_v))  # (B, N)
        return logp, values

    @torch.no_grad()
    def rollout(self, prompts: Sequence[Sequence[int]], generator: torch.Generator | None = None,
                group=None) -> Rollout:
        """Sample N tokens after each prompt and score them: log pi_old, log pi_ref, V_old, R.

        Under torchrun (``group``: ``prompts`` are the whole batch's B, a multiple of the N
        processes) rank r samples and scores its rows ``group.rows(B / N)`` only: the sampler's
        random numbers are drawn for all B and each rank keeps its rows (``sample_completions``'s
        ``keep``), the sequences are padded to the whole batch's longest, and the rollout is
        gathered, so every rank returns the one-process rollout of all B prompts."""
        c = self.config
        device = self.policy.w_x.device
        B = len(prompts)
        keep = None
        if group is not None:
            if B % group.world_size:
                fail("prompts under torchrun", f"a multiple of the number of processes ({group.world_size})", B)
            keep = group.rows(B // group.world_size)
        mine = list(prompts) if keep is None else list(prompts)[keep]  # this rank's prompts: (B_r,)
        was_training = self.training
        self.eval()
        try:
            tokens = sample_completions(self.policy, prompts, c.new_tokens, temperature=c.temperature,
                                        generator=generator, keep=keep)  # (B_r, N)
            seqs = [list(p) + tokens[i].tolist() for i, p in enumerate(mine)]
            ids, lengths = pad_sequences(seqs, device)  # (B_r, T_r), (B_r,)
            T = max(len(p) for p in prompts) + c.new_tokens  # the whole batch's longest
            ids = F.pad(ids, (0, T - ids.shape[1]))  # (B_r, T)
            prompt_lengths = torch.tensor([len(p) for p in mine], device=device)
            positions = completion_positions(prompt_lengths, c.new_tokens)  # (B_r, N)
            logp, values = self.states(ids, positions, tokens)
            ref_logits = gpt_states(self.frozen("reference"), ids)[0]
            logp_ref = token_logprobs(gather_completion(ref_logits, positions), tokens, c.temperature)
            score = None
            if c.judge is not None:
                decode = self.frozen("tokenizer").decode
                judge = self.frozen("judge")
                score = torch.tensor([judge.score(decode(t)) for t in tokens.tolist()], dtype=values.dtype,
                                     device=device)
            reward = self.frozen("reward_model")(ids, lengths) if c.reward is not None else score
        finally:
            self.train(was_training)
        roll = Rollout(ids, lengths, positions, tokens, logp, logp_ref, values, reward.to(values.dtype), score)
        return roll if group is None else roll.gathered(group)

    # ---- the trainer's hooks

    def make_optimizer(self, cfg) -> torch.optim.Optimizer:
        from seqlab.training.loop import make_optimizer

        self.clip_norm = cfg.clip_norm
        return make_optimizer(self, cfg)

    def train_step(self, batch, *, lr: float, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                   weight_decay: float = 0.0, group=None) -> tuple[float, dict]:
        """One PPO step on the prompts of ``batch``: a rollout, GAE, ``ppo_epochs`` passes of
        ``minibatches`` clipped-ratio updates, then the KL controller.

        Under torchrun (``group``, ``seqlab.training.distributed.Group``; ``batch`` rank r's
        share of the step's prompts) the step is the one-process step on the whole batch: the
        prompts are gathered, each rank samples and scores its rows and the rollout is gathered
        (``rollout``), so every rank holds all of it, whitens the advantages over all of it and
        draws the same minibatches; each minibatch is split by ``group.part`` and its gradient
        averaged over the ranks (``_split_minibatch``); beta moves with the whole batch's KL."""
        c = self.config
        prompts = unpad_prompts(batch, group)  # the whole batch's B prompts (gathered under torchrun)
        sample_gen = generator if generator.device.type == self.policy.w_x.device.type else None
        roll = self.rollout(prompts, sample_gen, group)
        beta = float(self.kl_coef)
        # r_t = -beta k_t + [t = N] R
        rewards = token_rewards(roll.reward, roll.logp, roll.logp_ref, beta)
        adv, returns = gae(rewards, roll.values, c.gamma, c.lam)
        if c.whiten:
            adv = whiten(adv)
        B = len(prompts)
        order_gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator,
                                                                    device=generator.device)))
        pg_losses, v_losses, clip_fracs = [], [], []
        for _ in range(c.ppo_epochs):
            order = torch.randperm(B, generator=order_gen).to(roll.ids.device)
            for mb in order.chunk(min(c.minibatches, B)):
                if group is None:
                    optimizer.zero_grad(set_to_none=True)
                    pg, v_loss, clip_frac = self._minibatch_loss(roll, adv, returns, mb)
                    # C_PPO = -L_clip + c_V L_V
                    (pg + c.vf_coef * v_loss).backward()
                    pg, v_loss, clip_frac = float(pg.detach()), float(v_loss.detach()), float(clip_frac)
                else:
                    pg, v_loss, clip_frac = self._split_minibatch(roll, adv, returns, mb, optimizer, group)
                if self.clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_([p for p in self.parameters() if p.grad is not None],
                                                   self.clip_norm)
                optimizer.step()
                pg_losses.append(pg)
                v_losses.append(v_loss)
                clip_fracs.append(clip_frac)
        kl = float(roll.kl.mean())
        controller = AdaptiveKLController(beta, c.kl_target, c.kl_horizon)
        self.kl_coef.fill_(controller.update(kl, B))
        # tokens: this rank's share (the trainer sums the ranks' counts); the rest: the whole batch's
        share = B if group is None else B // group.world_size
        metrics = {"reward": float(roll.reward.mean()), "kl": kl, "beta": beta,
                   "objective": float(roll.reward.mean()) - beta * kl, "pg_loss": sum(pg_losses) / len(pg_losses),
                   "value_loss": sum(v_losses) / len(v_losses), "clip_frac": sum(clip_fracs) / len(clip_fracs),
                   "tokens": float(share * c.new_tokens)}
        if roll.score is not None:
            metrics["score"] = float(roll.score.mean())
        return metrics["pg_loss"] + c.vf_coef * metrics["value_loss"], metrics

    def _minibatch_loss(self, roll: Rollout, adv: torch.Tensor, returns: torch.Tensor, mb: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(-L_clip, L_V, clip fraction) of the rollout's rows ``mb`` (means over their tokens)."""
        logp, values = self.states(roll.ids[mb], roll.positions[mb], roll.tokens[mb])
        pg, clip_frac = ppo_clip_loss(logp, roll.logp[mb], adv[mb], self.config.clip_eps)
        # L_V = (V(s_t) - (A_t + V_old(s_t)))^2 / 2
        v_loss = 0.5 * ((values - returns[mb]) ** 2).mean()
        return pg, v_loss, clip_frac

    def _split_minibatch(self, roll: Rollout, adv: torch.Tensor, returns: torch.Tensor, mb: torch.Tensor,
                         optimizer: torch.optim.Optimizer, group) -> tuple[float, float, float]:
        """Rank r's part of the minibatch ``mb`` (M rows of the gathered rollout): its M_r rows
        ``group.part(M)``, whose C_PPO (a mean over their M_r N equal-weight tokens) is weighted
        by w_r = n_proc M_r / M, so that the ranks' mean gradient (``group.mean_grads_``) is the
        gradient of the whole minibatch's C_PPO; a rank with no rows (M < n_proc) adds zeros.
        Returns the whole minibatch's (-L_clip, L_V, clip fraction), the same on every rank."""
        M = len(mb)
        mine = mb[group.part(M)]  # (M_r,)
        w = group.world_size * len(mine) / M
        optimizer.zero_grad(set_to_none=True)
        if len(mine):
            pg, v_loss, clip_frac = self._minibatch_loss(roll, adv, returns, mine)
            # w_r C_PPO(rank r's rows),  C_PPO = -L_clip + c_V L_V
            (w * (pg + self.config.vf_coef * v_loss)).backward()
            here = [w * float(pg.detach()), w * float(v_loss.detach()), w * float(clip_frac)]
        else:
            here = [0.0, 0.0, 0.0]
        params = [p for p in self.parameters() if p.requires_grad]
        for p in params:  # every rank reduces the same list of gradients
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        pg, v_loss, clip_frac = group.mean_grads_(params, *here)
        return pg, v_loss, clip_frac

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """The validation figure: -(mean R - beta_0 mean KL) on the prompts of ``batch``, sampled
        with a generator seeded from the prompts (the same draws for the same weights), beta_0
        the initial ``kl_coef`` (so that evaluations compare across steps).

        Under torchrun (``distributed.current()``: the trainer calls this without a group, with
        rank r's share of the validation batch) the prompts are gathered (the seed is the whole
        batch's), each rank samples its rows and the rollout is gathered, so every rank returns
        the one-process figure of the whole batch."""
        from seqlab.training import distributed

        group = distributed.current()
        prompts = unpad_prompts(batch, group)
        seed = sum((i + 1) * t for p in prompts for i, t in enumerate(p)) % (2**31 - 1)
        gen = torch.Generator(device=self.policy.w_x.device).manual_seed(seed)
        roll = self.rollout(prompts, gen, group)
        kl = roll.kl.mean()
        objective = roll.reward.mean() - self.config.kl_coef * kl
        metrics = {"reward": float(roll.reward.mean()), "kl": float(kl)}
        if roll.score is not None:
            metrics["score"] = float(roll.score.mean())
        return -objective, metrics


__all__ = ["DPOConfig", "DPOModel", "PPOConfig", "PPOModel", "PairBatch", "RewardModel", "RewardModelConfig", "Rollout",
           "sample_completions", "unpad_prompts"]
