r"""RLHF: a reward model learned from human preferences, and a policy (a GPT) optimised
against it with PPO, or directly from the preferences with DPO.

Lecture, "Large Language Models": reinforcement learning from human feedback "uses
reinforcement learning techniques to update the model based on human feedback (in the
form of rewards ...)". A person compares two samples y_a, y_b for the same prompt x and
says which is better; the three pieces below turn such comparisons into a better policy.

Reward model (Christiano et al. 2017; Ziegler et al. 2019). A GPT body with a scalar head
on the state of the last token, trained on pairs (x, y_w preferred, y_l rejected) with the
Bradley-Terry model P(y_w > y_l) = sigma(r(x, y_w) - r(x, y_l)):

    r(x, y)  = w^(r) . a^(L)_T + b^(r)                   a^(L)_T the last token's state  (D,)
    C_RM     = -log sigma(r(x, y_w) - r(x, y_l))         mean over pairs

PPO (Schulman et al. 2017) with the per-token KL penalty of Ziegler et al. (2019). The
policy pi samples y = (y_1 .. y_N) after x; the frozen reference pi_ref is the starting
policy. With R = r(x, y) (or a scripted judge's score) and beta the KL coefficient:

    k_t      = log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)      per-token KL estimate
    r_t      = -beta k_t + [t = N] R                                   per-token reward
    delta_t  = r_t + gamma V(s_(t+1)) - V(s_t),  V(s_(N+1)) = 0         TD residual (value head V)
    A_t      = sum_(l >= 0) (gamma lambda)^l delta_(t+l)               GAE (Schulman et al. 2016)
    rho_t    = pi(y_t | s_t) / pi_old(y_t | s_t)                       probability ratio
    L_clip   = mean_t min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t)  maximised
    L_V      = mean_t (V(s_t) - (A_t + V_old(s_t)))^2 / 2               minimised
    C_PPO    = -L_clip + c_V L_V

The adaptive KL controller (Ziegler et al. 2019, section 2.2) moves beta toward a KL target
KL_targ after every batch of n samples with KL = mean over the batch of sum_t k_t:

    e        = clip(KL / KL_targ - 1, -0.2, 0.2)
    beta    <- beta (1 + K_beta e),   K_beta = n / horizon

DPO (Rafailov et al. 2023, eq. 7) needs no reward model and no sampling: with
log pi(y | x) = sum_t log pi(y_t | x, y_<t) over the completion,

    h        = beta [(log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))]
    C_DPO    = -log sigma(h)                              mean over pairs

and beta (log pi(y|x) - log pi_ref(y|x)) is the "implicit reward" of a completion.

The functions below compute these equations (each line of code under a comment quoting its
equation); the models that use them (``RewardModel``, ``DPOModel``, ``PPOModel``, with their configs) are in
``seqlab.llm.rlhf_models``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from seqlab.llm.gpt import GPT
from seqlab.validation import check_float, check_int, check_tensor, fail, shape_str

# --------------------------------------------------------------------------- the losses


def _same_shape(name: str, x: torch.Tensor, ref: torch.Tensor, ref_name: str) -> None:
    check_tensor(x, name, floating=True)
    if x.shape != ref.shape:
        fail(name, f"the shape of {ref_name} {shape_str(ref)}", f"shape {shape_str(x)}")


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """C_RM = mean of -log sigma(r(x, y_w) - r(x, y_l)); r_chosen, r_rejected: (B,)."""
    check_tensor(r_chosen, "r_chosen", ndim=1, dims="(pairs,)", floating=True)
    _same_shape("r_rejected", r_rejected, r_chosen, "r_chosen")
    # -log sigma(r_w - r_l)   (logsigmoid: exact for large differences of either sign)
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO's loss (Rafailov et al. 2023, eq. 7) from sequence log-probabilities (B,) each.
    Returns (mean loss, implicit reward of y_w, implicit reward of y_l), the rewards (B,)
    detached."""
    check_tensor(policy_chosen, "policy_chosen", ndim=1, dims="(pairs,)", floating=True)
    for name, t in (("policy_rejected", policy_rejected), ("ref_chosen", ref_chosen),
                    ("ref_rejected", ref_rejected)):
        _same_shape(name, t, policy_chosen, "policy_chosen")
    check_float(beta, "beta", minimum=0.0, open_min=True)
    # beta (log pi(y|x) - log pi_ref(y|x))   the implicit rewards
    chosen = beta * (policy_chosen - ref_chosen)
    rejected = beta * (policy_rejected - ref_rejected)
    # C_DPO = -log sigma(h),  h = beta [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))]
    loss = -F.logsigmoid(chosen - rejected).mean()
    return loss, chosen.detach(), rejected.detach()


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum().clamp(min=1)


def _check_mask(mask: torch.Tensor | None, ref: torch.Tensor) -> torch.Tensor | None:
    if mask is None:
        return None
    check_tensor(mask, "mask")
    if mask.shape != ref.shape:
        fail("mask", f"shape {shape_str(ref)}", f"shape {shape_str(mask)}")
    return mask.to(ref.dtype)


def ppo_clip_loss(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, clip_eps: float = 0.2,
                  mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """-L_clip (to minimise) and the fraction of tokens whose ratio was clipped, from
    per-token log-probabilities under the current and the sampling policy and the advantages
    (B, N) each (``mask``: 1 at the tokens that count)."""
    check_tensor(logp, "logp", ndim=2, dims="(batch, tokens)", floating=True)
    _same_shape("logp_old", logp_old, logp, "logp")
    _same_shape("advantages", advantages, logp, "logp")
    check_float(clip_eps, "clip_eps", minimum=0.0, open_min=True)
    mask = _check_mask(mask, logp)
    # rho_t = pi(y_t|s_t) / pi_old(y_t|s_t)
    rho = torch.exp(logp - logp_old)
    # L_clip = min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t)
    surrogate = torch.minimum(rho * advantages, rho.clamp(1.0 - clip_eps, 1.0 + clip_eps) * advantages)
    clipped = ((rho - 1.0).abs() > clip_eps).to(logp.dtype)
    return -_masked_mean(surrogate, mask), _masked_mean(clipped, mask).detach()


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float = 1.0, lam: float = 0.95,
        mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates A_t and returns A_t + V(s_t), (B, N) each, for episodes
    that end after their last token (``mask``: 1 at the real tokens, a right-padded tail of
    0s; V beyond the end is 0)."""
    check_tensor(rewards, "rewards", ndim=2, dims="(batch, tokens)", floating=True)
    _same_shape("values", values, rewards, "rewards")
    check_float(gamma, "gamma", minimum=0.0, maximum=1.0)
    check_float(lam, "lam", minimum=0.0, maximum=1.0)
    mask = torch.ones_like(rewards) if mask is None else _check_mask(mask, rewards)
    B, N = rewards.shape
    values = values * mask
    # V(s_(t+1)), 0 after the last token
    next_values = torch.cat([values[:, 1:], values.new_zeros(B, 1)], dim=1)  # (B, N)
    # delta_t = r_t + gamma V(s_(t+1)) - V(s_t)
    delta = (rewards + gamma * next_values - values) * mask
    adv = torch.zeros_like(rewards)
    running = rewards.new_zeros(B)
    for t in range(N - 1, -1, -1):
        # A_t = delta_t + gamma lambda A_(t+1)
        running = delta[:, t] + gamma * lam * running * (mask[:, t + 1] if t + 1 < N else 0.0)
        adv[:, t] = running
    return adv, (adv + values) * mask


def kl_per_token(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """k_t = log pi(y_t|s_t) - log pi_ref(y_t|s_t), (B, N): an unbiased estimate of the KL of
    each token's distribution when y_t is drawn from pi (Ziegler et al. 2019)."""
    check_tensor(logp, "logp", ndim=2, dims="(batch, tokens)", floating=True)
    _same_shape("logp_ref", logp_ref, logp, "logp")
    return logp - logp_ref


def token_rewards(score: torch.Tensor, logp: torch.Tensor, logp_ref: torch.Tensor, beta: float | torch.Tensor,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """r_t = -beta k_t + [t = last token] R, (B, N), from the sequence scores R (B,)."""
    k = kl_per_token(logp, logp_ref)
    check_tensor(score, "score", ndim=1, dims="(batch,)", floating=True)
    if score.shape[0] != logp.shape[0]:
        fail("score", f"one score per sequence ({logp.shape[0]})", f"shape {shape_str(score)}")
    mask = torch.ones_like(logp) if mask is None else _check_mask(mask, logp)
    # r_t = -beta k_t
    rewards = -beta * k * mask
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)  # (B,) the last real token
    # r_N += R
    rewards[torch.arange(logp.shape[0], device=logp.device), last] += score
    return rewards


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries (advantage normalisation)."""
    mean = _masked_mean(x, mask)
    var = _masked_mean((x - mean) ** 2, mask)
    return (x - mean) / torch.sqrt(var + eps)


class AdaptiveKLController:
    """beta <- beta (1 + clip(KL / KL_targ - 1, -0.2, 0.2) n / horizon)  (Ziegler et al. 2019);
    with ``target=None`` beta stays fixed."""

    def __init__(self, init: float, target: float | None = None, horizon: int = 10000) -> None:
        check_float(init, "kl_coef", minimum=0.0)
        if target is not None:
            check_float(target, "kl_target", minimum=0.0, open_min=True)
        check_int(horizon, "kl_horizon", minimum=1)
        self.value = float(init)
        self.target = target
        self.horizon = horizon

    def update(self, kl: float, n: int) -> float:
        """beta after a batch of ``n`` samples whose mean KL (nats per sequence) was ``kl``."""
        if self.target is None:
            return self.value
        # e = clip(KL / KL_targ - 1, -0.2, 0.2)
        e = min(max(kl / self.target - 1.0, -0.2), 0.2)
        # beta <- beta (1 + K_beta e),  K_beta = n / horizon
        self.value *= 1.0 + e * n / self.horizon
        return self.value


# --------------------------------------------------------------------------- GPT pieces


def gpt_states(gpt: GPT, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, T, V), the last block's normalised states LN(a^(L)) (B, T, D)): GPT's
    forward, keeping the states a reward or value head reads."""
    ids = gpt.check_ids(ids)
    # a^(0)_t = w^(x) . x_t + p_t
    x = F.embedding(ids, gpt.w_x)  # (B, T, D)
    x = gpt.pos.forward_unchecked(x, 0)  # (B, T, D)
    x = F.dropout(x, gpt.config.dropout, training=gpt.training and gpt.config.dropout > 0)
    h = gpt.blocks(x)  # LN(a^(L)): (B, T, D)
    # o_t = w^(o) . LN(a^(L)_t)
    logits = h @ (gpt.w_x if gpt.w_o is None else gpt.w_o).T  # (B, T, V)
    return logits, h


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """x in float32 where it is narrower (bfloat16, float16), else as it is (float32, float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def completion_positions(prompt_lengths: torch.Tensor, n: int) -> torch.Tensor:
    """(B, n) positions whose logits predict the n completion tokens: P_i - 1 + t."""
    return (prompt_lengths.long() - 1)[:, None] + torch.arange(n, device=prompt_lengths.device)[None, :]


def gather_completion(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x (B, T, ...) at ``positions`` (B, n) -> (B, n, ...)."""
    rows = torch.arange(x.shape[0], device=x.device)[:, None]
    return x[rows, positions]


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(z / tau)[token], logits (B, n, V), tokens (B, n) -> (B, n), in float32 or
    the logits' wider type (float64 stays float64)."""
    logp = F.log_softmax(at_least_float32(logits) / temperature, dim=-1)
    return logp.gather(-1, tokens[..., None].long())[..., 0]


def pad_sequences(seqs: Sequence[Sequence[int]], device: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids (B, T_max) right-padded with 0, lengths (B,)). Padding after a
    sequence never changes what a causal model computes at its real positions."""
    T = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(list(s), dtype=torch.long)
    return ids.to(device), torch.tensor([len(s) for s in seqs], dtype=torch.long, device=device)


def sequence_logprob(gpt: GPT, ids: torch.Tensor, lengths: torch.Tensor, prompt_lengths: torch.Tensor,
                     temperature: float = 1.0) -> torch.Tensor:
    """log pi(y|x) = sum over the completion tokens y_t (positions prompt_length .. length - 1)
    of log pi(y_t | x, y_<t), (B,), for right-padded ids (B, T)."""
    logits = gpt(ids)  # (B, T, V)
    logp = token_logprobs(logits[:, :-1], ids[:, 1:], temperature)  # (B, T-1): the token at t+1
    pos = torch.arange(1, ids.shape[1], device=ids.device)[None, :]  # (1, T-1)
    mask = (pos >= prompt_lengths[:, None]) & (pos < lengths[:, None])  # (B, T-1)
    return (logp * mask).sum(dim=1)


__all__ = ["AdaptiveKLController", "at_least_float32", "bradley_terry_loss", "completion_positions", "dpo_loss", "gae",
           "gather_completion", "gpt_states", "kl_per_token", "pad_sequences", "ppo_clip_loss", "sequence_logprob",
           "token_logprobs", "token_rewards", "whiten"]
