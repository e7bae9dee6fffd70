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
    a resumed run continues the same episodes.

    Under torchrun (``join``) the runner of rank r of N steps environments r E/N .. (r+1) E/N - 1
    of the run's E (each seeded by its global index, as in one process); ``obs``, ``state`` and
    ``first`` are then that rank's rows, and ``save`` gathers every rank's into the buffers, so
    that every rank holds (and rank 0 saves) all E environments."""

    def __init__(self, env_name: str, n_envs: int, seed: int) -> None:
        from seqlab.tasks.control_env import VecEnv

        self.env = VecEnv(env_name, n_envs, seed=seed)
        self.n_total = n_envs  # E: the run's environments, over all processes
        self.group = None  # this process's distributed.Group under torchrun (join)
        self.obs: np.ndarray | None = None
        self.state: tuple[torch.Tensor, ...] | None = None
        self.first: torch.Tensor | None = None
        self.env_steps = 0
        self.recent: list[float] = []  # returns of the episodes that ended in the last rollout that ended any

    def join(self, group) -> None:
        """Keep only this rank's E/N environments (once, before the first rollout): rank r's are
        r E/N .. (r+1) E/N - 1, seeded by their global index. E % N != 0 was refused before any
        work (the batch size is E: ``distributed.check_batch_size``)."""
        from seqlab.tasks.control_env import VecEnv

        if group is None or self.group is not None:
            return
        if self.obs is not None:
            fail("control runner under torchrun", "a runner that has not run yet", "one that has")
        if self.n_total % group.world_size:
            fail("n_envs under torchrun", f"a multiple of the number of processes ({group.world_size})",
                 self.n_total)
        n = self.n_total // group.world_size
        name, seed = self.env.name, self.env.seed
        self.env.close()
        self.env = VecEnv(name, n, seed=seed, first=group.rank * n)
        self.group = group

    def gather(self, t: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Every rank's rows of ``t`` along the environments' dimension ``dim`` (t itself in one process)."""
        return t if self.group is None else self.group.gather(t, dim)

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
        """Copy the runner into the model's buffers (called after every rollout; under torchrun
        every rank's environments, gathered)."""
        n = self.n_total
        if model.roll_obs.shape[0] != n:
            fail("control runner", f"{model.roll_obs.shape[0]} environments (the model's n_envs)", n)
        model.roll_obs.copy_(self.gather(torch.as_tensor(self.obs)))  # (E, D)
        for k, s in enumerate(self.state):
            model.roll_state[k].copy_(self.gather(s))  # (E, H)
        model.roll_first.copy_(self.gather(self.first))
        model.roll_env.copy_(self.gather(torch.as_tensor(self.env.get_state())))  # (E, SIM_SLOTS)
        recent = float(np.mean(self.recent)) if self.recent else 0.0
        model.roll_counters.copy_(torch.tensor([float(self.env_steps), recent, float(bool(self.recent))],
                                               dtype=torch.float64))
        model.roll_started.fill_(1)

    def restore(self, model) -> None:
        """Put this runner's environments (all E, or a rank's rows) where the buffers hold them:
        a run saved by any number of processes resumes under any other that divides E."""
        n = len(self.env)
        rows = slice(0, n) if self.group is None else self.group.rows(n)
        self.obs = model.roll_obs[rows].numpy().copy()
        self.state = tuple(model.roll_state[k, rows].clone() for k in range(model.n_states))
        self.first = model.roll_first[rows].clone()
        self.env.set_state(model.roll_env[rows].numpy())
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
           generator: torch.Generator | None = None, group=None) -> torch.Tensor:
    """a ~ pi(. | s) from ``generator`` (a class index (N,), or a Gaussian vector (N, A)).

    Under torchrun (``group``: this rank holds rows ``group.rows(N)`` of the run's
    N x world_size environments) the noise is drawn for all of them, from the same generator
    on every rank, and each rank keeps its rows: every environment gets the numbers it gets
    in one process."""
    n = dist.mean.shape[0] if not discrete else dist.probs.shape[0]
    world = 1 if group is None else group.world_size
    rows = slice(0, n) if group is None else group.rows(n)
    if discrete:
        p = dist.probs  # (N, A)
        # a = argmax_k p_k / q_k,  q_k ~ Exp(1): a sample of p (the exponential race, which is how
        # torch.multinomial draws one sample: the same numbers from the same generator)
        q = torch.empty((n * world, p.shape[1]), dtype=p.dtype).exponential_(generator=generator)
        return (p / q[rows]).argmax(-1)
    # a = mu + sigma * eps,  eps ~ N(0, 1)
    eps = torch.randn((n * world, *dist.mean.shape[1:]), generator=generator)
    return dist.mean + dist.stddev * eps[rows]


@torch.no_grad()
def collect(model, runner: Runner, n_steps: int, gamma: float, reward_scale: float,
            generator: torch.Generator | None = None) -> Rollout:
    """Run the sampling policy for ``n_steps`` steps in every environment of ``runner``
    (actions drawn from ``generator``).

    Under torchrun (``runner.group``) each rank steps its N = E/world_size environments: the
    raw observations of all E are gathered at every step (the running mean and variance take
    in all of them, as in one process; x_t is then the rank's rows), actions are drawn as in
    ``sample``, and the finished rollout is gathered, so every rank returns the one-process
    rollout of all E environments."""
    runner.start(model)
    N = len(runner.env)
    group = runner.group
    rows = slice(0, N) if group is None else group.rows(N)
    obs_l, act_l, logp_l, val_l, rew_l, done_l, first_l = [], [], [], [], [], [], []
    states_l: list[tuple[torch.Tensor, ...]] = []
    returns: list[float] = []
    state, first = runner.state, runner.first
    for _ in range(n_steps):
        x_all = model.normalize(runner.gather(torch.as_tensor(runner.obs)), update=True)  # (E, D)
        x = x_all[rows]  # (N, D): this rank's environments
        states_l.append(state)
        dist, value, new_state = model.act(x, state, first)
        a = sample(dist, model.config.discrete, generator, group)
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
        obs_l.append(x_all)
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
    runner.env_steps += n_steps * runner.n_total
    # (T, N, ...) per rank -> (T, E, ...): every rank's environments (nothing to do in one process)
    stack_states = tuple(runner.gather(torch.stack([s[k] for s in states_l]), 1) for k in range(len(state)))
    steps = [runner.gather(torch.stack(x), 1) for x in (act_l, logp_l, val_l, rew_l, done_l, first_l)]
    if group is not None:
        returns = group.gather_floats(returns)  # rank 0's episodes, then rank 1's, ...
    return Rollout(torch.stack(obs_l), *steps, stack_states, runner.gather(last_values), returns)


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
               clip_norm: float | None, generator: torch.Generator, group=None) -> dict[str, Any]:
    """``epochs`` passes of minibatch updates of C_PPO over the chunks of ``roll``.

    Under torchrun (``group``) every rank holds the whole rollout (``collect``) and draws the
    same minibatches; rank r takes its part ``group.part(M)`` of each minibatch's M chunks
    (the advantages whitened over all M first), and its loss is weighted by w_r = N M_r / M,
    so that the ranks' mean gradient (``group.mean_grads_``) is the gradient of the whole
    minibatch's C_PPO (a mean over its M L equal-weight items). Clipping and Adam's step then
    run on the same gradient on every rank: equal to one process up to summation order."""
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
            if group is not None:
                want_gap = epoch == 0 and first_ratio_gap is None
                parts, gap = _split_minibatch_step(model, optimizer, group, mb, obs, actions, first, logp_old, adv_c,
                                                   ret_c, state0, clip_eps, vf_coef, ent_coef, gap=want_gap)
                if not math.isfinite(parts["loss"]):  # the ranks' mean: all return here together
                    return {"loss": parts["loss"]}
                if gap is not None:
                    first_ratio_gap = gap
            else:
                dist, values, _ = model.unroll(obs[mb], tuple(s[mb] for s in state0), first[mb])  # (B, L, ...)
                logp = log_prob_of(dist, actions[mb], model.config.discrete)  # (B, L)
                if epoch == 0 and first_ratio_gap is None:
                    first_ratio_gap = float((logp.detach() - logp_old[mb]).abs().max())
                # advantages normalised per minibatch
                a = whiten(adv_c[mb])
                loss, parts = ppo_loss(logp, logp_old[mb], a, values, ret_c[mb],
                                       entropy_of(dist, model.config.discrete), clip_eps, vf_coef, ent_coef)
                if not math.isfinite(float(loss.detach())):
                    return {"loss": float(loss.detach())}
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                parts["loss"] = float(loss.detach())
            if clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            optimizer.step()
            for k, v in parts.items():
                stats.setdefault(k, []).append(v)
    out = {k: sum(v) / len(v) for k, v in stats.items()}
    out["first_ratio_gap"] = first_ratio_gap or 0.0
    # explained variance of the value targets by V_old
    var = float(returns.var())
    out["explained_var"] = 1.0 - float((returns - roll.values).var()) / var if var > 0 else 0.0
    return out


def _split_minibatch_step(model, optimizer, group, mb, obs, actions, first, logp_old, adv_c, ret_c, state0,
                          clip_eps, vf_coef, ent_coef, gap: bool):
    """Rank r's part of one minibatch ``mb`` (M chunk indices): the gradient of w_r C_PPO(its
    M_r chunks), w_r = N M_r / M, averaged over the ranks with the weighted loss and its parts
    (so every rank gets the whole minibatch's gradient, loss and parts); with ``gap`` also the
    ranks' largest |log pi - log pi_old| (the first minibatch's check that rho = 1).
    Returns (parts with "loss", gap or None), the same on every rank."""
    M, N = len(mb), group.world_size
    part = group.part(M)
    mine = mb[part]  # (M_r,) this rank's chunks
    w = N * len(mine) / M
    # advantages normalised over the whole minibatch, then this rank's rows
    a = whiten(adv_c[mb])[part]
    params = list(model.parameters())
    optimizer.zero_grad(set_to_none=True)
    names = ("pg_loss", "value_loss", "entropy", "clip_frac")
    if len(mine):
        dist, values, _ = model.unroll(obs[mine], tuple(s[mine] for s in state0), first[mine])  # (M_r, L, ...)
        logp = log_prob_of(dist, actions[mine], model.config.discrete)  # (M_r, L)
        loss, parts = ppo_loss(logp, logp_old[mine], a, values, ret_c[mine], entropy_of(dist, model.config.discrete),
                               clip_eps, vf_coef, ent_coef)
        (loss * w).backward()
        here = [float(loss.detach()) * w, *(parts[k] * w for k in names)]
        ratio_gap = float((logp.detach() - logp_old[mine]).abs().max())
    else:  # fewer chunks than processes: this rank adds nothing
        here, ratio_gap = [0.0] * (1 + len(names)), 0.0
    for p in params:  # every rank reduces the same list of gradients
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    means = group.mean_grads_(params, *here)
    out = {"loss": means[0], **dict(zip(names, means[1:]))}
    if not gap:
        return out, None
    biggest = torch.tensor([ratio_gap], dtype=torch.float64)
    group.max_([biggest])
    return out, float(biggest)


__all__ = ["Rollout", "Runner", "chunk_states", "collect", "entropy_of", "gae", "log_prob_of", "ppo_loss",
           "ppo_update", "sample", "to_chunks"]
