r"""PPO for a recurrent actor-critic: rollouts from vectorised environments, GAE, and the
clipped update with truncated backpropagation through time.

Proximal policy optimisation (Schulman et al. 2017, "Proximal Policy Optimization
Algorithms", eq. 7 and 9) with generalised advantage estimation (Schulman et al. 2016,
"High-Dimensional Continuous Control Using Generalized Advantage Estimation", eq. 16). N
environments run T steps each with the sampling policy pi_old; d_t = 1 where an episode ended
at step t (the next observation starts a new one), and the recurrent state is reset to 0
before the first observation of every episode:

    a^(h)_(t-1) <- (1 - first_t) a^(h)_(t-1)                        reset at episode starts
    delta_t  = r_t + gamma (1 - d_t) V(s_(t+1)) - V(s_t)            TD residual
    A_t      = delta_t + gamma lambda (1 - d_t) A_(t+1)             GAE, A_T = 0, V(s_T) bootstrapped
    R_t      = A_t + V_old(s_t)                                     the value target
    rho_t    = pi(a_t | s_t) / pi_old(a_t | s_t)                    probability ratio
    L_clip   = mean_t min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t)    maximised
    L_V      = mean_t (V(s_t) - R_t)^2 / 2                                  minimised
    H        = mean_t entropy(pi(. | s_t))                                  maximised
    C_PPO    = -L_clip + c_V L_V - c_H H

At a time limit (truncation, not a real end), the episode's last reward gets
gamma V(s_last) added (the value of its final observation, with the state that saw it),
so that the limit does not look like a failure (Pardo et al. 2018, "Time Limits in
Reinforcement Learning").

Truncated BPTT: the rollout of T steps is cut into chunks of L steps per environment; a
minibatch is a set of chunks, and the policy is run again over each chunk from the state
stored at the chunk's start (detached: gradients flow back at most L steps), resetting the
state inside the chunk wherever an episode starts, exactly as during the rollout. At the first
epoch, before any update, the re-run gives the rollout's log-probabilities exactly (rho = 1).

The clipped objective is ``seqlab.llm.rlhf.ppo_clip_loss`` (RLHF's PPO, the same equation);
GAE here differs from RLHF's ``gae`` in that episodes end anywhere inside a rollout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from seqlab.llm.rlhf import ppo_clip_loss, whiten
from seqlab.validation import check_float, check_tensor, fail, shape_str


def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_values: torch.Tensor,
        gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates A_t and value targets R_t = A_t + V(s_t), (T, N) each,
    from rewards, values and episode ends d_t (T, N) and the bootstrap values V(s_T) (N,)."""
    check_tensor(rewards, "rewards", ndim=2, dims="(T, N)", floating=True)
    for name, x in (("values", values), ("dones", dones)):
        if x.shape != rewards.shape:
            fail(name, f"the shape of rewards {shape_str(rewards)}", f"shape {shape_str(x)}")
    if last_values.shape != rewards.shape[1:]:
        fail("last_values", f"shape ({rewards.shape[1]},)", f"shape {shape_str(last_values)}")
    check_float(gamma, "gamma", minimum=0.0, maximum=1.0)
    check_float(lam, "lam", minimum=0.0, maximum=1.0)
    T = rewards.shape[0]
    notdone = 1.0 - dones.to(rewards.dtype)
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(last_values)
    next_value = last_values
    for t in range(T - 1, -1, -1):
        # delta_t = r_t + gamma (1 - d_t) V(s_(t+1)) - V(s_t)
        delta = rewards[t] + gamma * notdone[t] * next_value - values[t]
        # A_t = delta_t + gamma lambda (1 - d_t) A_(t+1)
        running = delta + gamma * lam * notdone[t] * running
        adv[t] = running
        next_value = values[t]
    # R_t = A_t + V_old(s_t)
    return adv, adv + values


def entropy_of(dist: torch.distributions.Distribution, discrete: bool) -> torch.Tensor:
    e = dist.entropy()
    return e if discrete else e.sum(-1)


def log_prob_of(dist: torch.distributions.Distribution, actions: torch.Tensor, discrete: bool) -> torch.Tensor:
    lp = dist.log_prob(actions)
    return lp if discrete else lp.sum(-1)


def ppo_loss(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, values: torch.Tensor,
             returns: torch.Tensor, entropy: torch.Tensor, clip_eps: float, vf_coef: float, ent_coef: float
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """C_PPO = -L_clip + c_V L_V - c_H H over (B, L) tensors; returns it and its parts."""
    pg, clip_frac = ppo_clip_loss(logp, logp_old, advantages, clip_eps)  # -L_clip
    # L_V = mean (V(s_t) - R_t)^2 / 2
    v_loss = 0.5 * ((values - returns) ** 2).mean()
    # H = mean entropy(pi(.|s_t))
    ent = entropy.mean()
    # C_PPO = -L_clip + c_V L_V - c_H H
    loss = pg + vf_coef * v_loss - ent_coef * ent
    return loss, {"pg_loss": float(pg.detach()), "value_loss": float(v_loss.detach()),
                  "entropy": float(ent.detach()), "clip_frac": float(clip_frac)}


# --------------------------------------------------------------------------- rollouts


class Runner:
    """The environments of a run and where their episodes are: the current observations, the
    policy's recurrent state and which environments start a new episode (``first``), carried
    from one rollout to the next. ``save``/``restore`` copy all of it (with the simulators'
    states) into and out of the model's ``roll_*`` buffers, so that a checkpoint holds it and
    a resumed run continues the same episodes."""

    def __init__(self, env_name: str, n_envs: int, seed: int) -> None:
        from seqlab.tasks.control_env import VecEnv

        self.env = VecEnv(env_name, n_envs, seed=seed)
        self.obs: np.ndarray | None = None
        self.state: tuple[torch.Tensor, ...] | None = None
        self.first: torch.Tensor | None = None
        self.env_steps = 0
        self.recent: list[float] = []  # returns of the episodes that ended in the last rollout that ended any

    def start(self, model) -> None:
        """Reset the environments, or, where the model's buffers hold a saved runner (a resumed
        run), put everything back where it was."""
        if self.obs is not None:
            return
        self.obs = self.env.reset()
        self.state = model.initial_state(len(self.env))
        self.first = torch.ones(len(self.env))
        if int(model.roll_started) == 1:
            self.restore(model)

    def save(self, model) -> None:
        """Copy the runner into the model's buffers (called after every rollout)."""
        n = len(self.env)
        if model.roll_obs.shape[0] != n:
            fail("control runner", f"{model.roll_obs.shape[0]} environments (the model's n_envs)", n)
        model.roll_obs.copy_(torch.as_tensor(self.obs))
        for k, s in enumerate(self.state):
            model.roll_state[k].copy_(s)
        model.roll_first.copy_(self.first)
        model.roll_env.copy_(torch.as_tensor(self.env.get_state()))
        recent = float(np.mean(self.recent)) if self.recent else 0.0
        model.roll_counters.copy_(torch.tensor([float(self.env_steps), recent, float(bool(self.recent))],
                                               dtype=torch.float64))
        model.roll_started.fill_(1)

    def restore(self, model) -> None:
        self.obs = model.roll_obs.numpy().copy()
        self.state = tuple(model.roll_state[k].clone() for k in range(model.n_states))
        self.first = model.roll_first.clone()
        self.env.set_state(model.roll_env.numpy())
        steps, recent, has = model.roll_counters.tolist()
        self.env_steps = int(steps)
        self.recent = [recent] if has else []


@dataclass
class Rollout:
    """T steps of N environments (all detached). ``states`` are the recurrent states before each
    step, before the reset mask is applied; ``first`` marks observations that start an episode."""

    obs: torch.Tensor  # (T, N, D) normalised observations, as the policy saw them
    actions: torch.Tensor  # (T, N) discrete or (T, N, A) continuous
    logp: torch.Tensor  # (T, N) log pi_old(a_t | s_t)
    values: torch.Tensor  # (T, N) V_old(s_t)
    rewards: torch.Tensor  # (T, N) scaled rewards (+ gamma V at time limits)
    dones: torch.Tensor  # (T, N) d_t
    first: torch.Tensor  # (T, N)
    states: tuple[torch.Tensor, ...]  # each (T, N, H)
    last_values: torch.Tensor  # (N,) V(s_T)
    returns: list[float]  # undiscounted returns of the episodes that ended


def sample(dist: torch.distributions.Distribution, discrete: bool,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """a ~ pi(. | s) from ``generator`` (a class index (N,), or a Gaussian vector (N, A))."""
    if discrete:
        return torch.multinomial(dist.probs, 1, generator=generator)[:, 0]
    # a = mu + sigma * eps,  eps ~ N(0, 1)
    return dist.mean + dist.stddev * torch.randn(dist.mean.shape, generator=generator)


@torch.no_grad()
def collect(model, runner: Runner, n_steps: int, gamma: float, reward_scale: float,
            generator: torch.Generator | None = None) -> Rollout:
    """Run the sampling policy for ``n_steps`` steps in every environment of ``runner``
    (actions drawn from ``generator``)."""
    runner.start(model)
    N = len(runner.env)
    obs_l, act_l, logp_l, val_l, rew_l, done_l, first_l = [], [], [], [], [], [], []
    states_l: list[tuple[torch.Tensor, ...]] = []
    returns: list[float] = []
    state, first = runner.state, runner.first
    for _ in range(n_steps):
        x = model.normalize(torch.as_tensor(runner.obs), update=True)  # (N, D)
        states_l.append(state)
        dist, value, new_state = model.act(x, state, first)
        a = sample(dist, model.config.discrete, generator)
        logp = log_prob_of(dist, a, model.config.discrete)
        obs, r, term, trunc, final, ended = runner.env.step(model.env_action(a))
        r = torch.as_tensor(r) * reward_scale
        if trunc.any():
            # r_last += gamma V(s_last) at a time limit (the state that saw the final observation)
            idx = torch.as_tensor(np.nonzero(trunc)[0])
            xf = model.normalize(torch.as_tensor(final[idx.numpy()]), update=False)
            sub = tuple(s[idx] for s in new_state)
            _, v_final, _ = model.act(xf, sub, torch.zeros(len(idx)))
            r[idx] += gamma * v_final
        done = torch.as_tensor(term | trunc, dtype=torch.float32)
        obs_l.append(x)
        act_l.append(a)
        logp_l.append(logp)
        val_l.append(value)
        rew_l.append(r)
        done_l.append(done)
        first_l.append(first)
        returns.extend(ended)
        runner.obs, state, first = obs, new_state, done
    x = model.normalize(torch.as_tensor(runner.obs), update=False)
    _, last_values, _ = model.act(x, state, first)
    runner.state, runner.first = state, first
    runner.env_steps += n_steps * N
    stack_states = tuple(torch.stack([s[k] for s in states_l]) for k in range(len(state)))
    return Rollout(torch.stack(obs_l), torch.stack(act_l), torch.stack(logp_l), torch.stack(val_l),
                   torch.stack(rew_l), torch.stack(done_l), torch.stack(first_l), stack_states, last_values, returns)


def to_chunks(x: torch.Tensor, L: int) -> torch.Tensor:
    """(T, N, ...) -> (N * T / L, L, ...): each environment's steps cut into chunks of L."""
    T, N = x.shape[:2]
    if T % L:
        fail("chunk_len", f"a divisor of the rollout length {T}", L)
    # (T, N, ...) -> (N, T, ...) -> (N, T/L, L, ...) -> (N T/L, L, ...)
    y = x.transpose(0, 1)
    return y.reshape(N * (T // L), L, *x.shape[2:])


def chunk_states(states: tuple[torch.Tensor, ...], L: int) -> tuple[torch.Tensor, ...]:
    """The stored states at each chunk's start, (N * T / L, H) each."""
    return tuple(to_chunks(s, L)[:, 0] for s in states)


def ppo_update(model, roll: Rollout, optimizer: torch.optim.Optimizer, *, epochs: int, minibatches: int,
               chunk_len: int, gamma: float, lam: float, clip_eps: float, vf_coef: float, ent_coef: float,
               clip_norm: float | None, generator: torch.Generator) -> dict[str, Any]:
    """``epochs`` passes of minibatch updates of C_PPO over the chunks of ``roll``."""
    adv, returns = gae(roll.rewards, roll.values, roll.dones, roll.last_values, gamma, lam)
    L = chunk_len
    obs, actions, first = to_chunks(roll.obs, L), to_chunks(roll.actions, L), to_chunks(roll.first, L)
    logp_old, adv_c, ret_c = to_chunks(roll.logp, L), to_chunks(adv, L), to_chunks(returns, L)
    state0 = chunk_states(roll.states, L)
    C = obs.shape[0]
    stats: dict[str, list[float]] = {}
    first_ratio_gap = None
    for epoch in range(epochs):
        order = torch.randperm(C, generator=generator)
        for mb in order.chunk(min(minibatches, C)):
            dist, values, _ = model.unroll(obs[mb], tuple(s[mb] for s in state0), first[mb])  # (B, L, ...)
            logp = log_prob_of(dist, actions[mb], model.config.discrete)  # (B, L)
            if epoch == 0 and first_ratio_gap is None:
                first_ratio_gap = float((logp.detach() - logp_old[mb]).abs().max())
            # advantages normalised per minibatch
            a = whiten(adv_c[mb])
            loss, parts = ppo_loss(logp, logp_old[mb], a, values, ret_c[mb], entropy_of(dist, model.config.discrete),
                                   clip_eps, vf_coef, ent_coef)
            if not math.isfinite(float(loss.detach())):
                return {"loss": float(loss.detach())}
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            optimizer.step()
            parts["loss"] = float(loss.detach())
            for k, v in parts.items():
                stats.setdefault(k, []).append(v)
    out = {k: sum(v) / len(v) for k, v in stats.items()}
    out["first_ratio_gap"] = first_ratio_gap or 0.0
    # explained variance of the value targets by V_old
    var = float(returns.var())
    out["explained_var"] = 1.0 - float((returns - roll.values).var()) / var if var > 0 else 0.0
    return out


__all__ = ["Rollout", "Runner", "chunk_states", "collect", "entropy_of", "gae", "log_prob_of", "ppo_loss",
           "ppo_update", "sample", "to_chunks"]
