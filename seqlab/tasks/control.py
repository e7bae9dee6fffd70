r"""Robot control with a recurrent actor-critic trained by PPO (``seqlab.tasks.control_ppo``).

Lecture, "other similar sequential control or prediction problems": "Robot control (and
other dynamic control tasks)". The agent sees an observation o_t of the environment at every
step (``seqlab.tasks.control_env``: CartPole or Pendulum, with the velocities hidden) and
chooses an action a_t. The policy pi(a_t | o_1..o_t) and the value V(o_1..o_t) read one
recurrent state that summarises what was seen so far: seqlab's own LSTM (or GRU) layer,
stepped once per environment step (lecture, "Gated Recurrent Unit and Long Short Term
Memory"; ``seqlab.recurrent.lstm``):

    x_t      = clip((o_t - mu) / sqrt(sigma^2 + 1e-8), -10, 10)     running mean and variance of o (optional)
    a^(h)_t, a^(c)_t = LSTM(x_t, (1 - first_t) a^(h)_(t-1), (1 - first_t) a^(c)_(t-1))   reset at episode starts
    u_t      = tanh(w^(u) . a^(h)_t + b^(u))                        actor's hidden layer
    pi(a | .) = softmax(w^(pi) . u_t + b^(pi))                      discrete actions (CartPole)
    pi(a | .) = N(w^(mu) . u_t + b^(mu), diag(exp(2 log sigma)))    continuous actions (Pendulum); the
                                                                    action sent is clip(a, low, high)
    V(.)     = w^(V) . tanh(w^(z) . a^(h)_t + b^(z)) + b^(V)        critic

With ``separate_critic`` the critic reads a recurrent layer of its own, b^(h)_t = LSTM(x_t, ...)
with its own weights and state, instead of a^(h)_t (as RecurrentPPO's ``enable_critic_lstm``):
the value loss then shapes no weight of the policy's memory.

With ``policy="mlp"`` the recurrent layer is replaced by a two-layer perceptron of o_t alone,
a^(h)_t = tanh(w_2 . tanh(w_1 . x_t + b_1) + b_2): the same agent without memory, which
cannot tell a velocity from one observation. The Gaussian's log sigma is a parameter (it does
not depend on the state); the log-probability is that of the unclipped sample (the clip is the
environment's limit, applied outside the policy), as in Schulman et al. (2017)'s experiments.

Observation normalisation (``normalize_obs``) keeps a running mean mu and variance sigma^2 of
the raw observations, updated from every rollout step (Chan et al.'s parallel update); they
are buffers of the model, so they are saved in its checkpoints and used as they are when the
run is played.

``ControlAgent.train_step`` is what the registry's trainer calls (``seqlab.training.loop``: a
model with its own update rule): one rollout of n_steps steps in every environment, then
``epochs`` passes of the clipped PPO update over chunks of ``chunk_len`` steps. Its
``loss`` (the validation figure) is minus the mean return of deterministic episodes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from seqlab.recurrent.gru import GRULayer
from seqlab.recurrent.lstm import LSTMLayer
from seqlab.tasks import control_ppo as ppo
from seqlab.validation import check_choice, check_float, check_int, fail, fields_from_dict

POLICIES = ("lstm", "gru", "mlp")


@dataclass(frozen=True)
class ControlConfig:
    """A recurrent (or MLP) actor-critic and its PPO settings. A run takes n_steps, chunk_len,
    epochs, minibatches, gamma, lam, normalize_obs and reward_scale from its environment's
    defaults (``control_family.ENV_DEFAULTS``) unless they are given; the defaults below are
    the dataclass's own.

    Attributes:
        env: the environment the run trains on (set from the data)
        obs_dim: size of the observation (set from the environment)
        discrete: whether the actions are discrete (set from the environment)
        action_dim: number of discrete actions or size of the continuous action (set from the environment)
        action_low: lower bound of a continuous action (set from the environment)
        action_high: upper bound of a continuous action (set from the environment)
        n_envs: environments run together (set from the run's batch_size)
        policy: the policy's core: lstm or gru (seqlab's recurrent layers, with memory) or mlp (without)
        separate_critic: the critic has a core (recurrent layer or MLP) of its own, with its own state (True or False)
        hidden_size: H, units of the recurrent layer (or of each MLP layer) and of the heads
        n_steps: T, steps each environment runs per rollout (one PPO update per rollout) (set per environment unless given)
        chunk_len: L, steps of each truncated-BPTT chunk (a divisor of n_steps) (set per environment unless given)
        epochs: passes of the PPO update over each rollout (set per environment unless given)
        minibatches: minibatches (of chunks) per pass (set per environment unless given)
        gamma: discount gamma (set per environment unless given)
        lam: lambda of the generalised advantage estimates (set per environment unless given)
        clip_eps: epsilon of the clipped ratio
        clip_anneal: epsilon follows the learning rate's schedule, epsilon_k = epsilon lr_k / lr (True or False)
        vf_coef: c_V, weight of the value loss L_V = mean (V - R)^2 / 2 (1 is stable-baselines3's 0.5 on mean (V - R)^2) (set per environment unless given)
        ent_coef: c_H, weight of the entropy bonus
        normalize_obs: normalise observations with their running mean and variance (True or False) (set per environment unless given)
        reward_scale: rewards are multiplied by this before GAE (Pendulum's are large) (set per environment unless given)
        log_std_init: initial log sigma of the Gaussian policy (continuous actions)
    """

    env: str = "cartpole-masked"
    obs_dim: int = 2
    discrete: bool = True
    action_dim: int = 2
    action_low: float = 0.0
    action_high: float = 0.0
    n_envs: int = 8
    policy: str = "lstm"
    separate_critic: bool = False
    hidden_size: int = 64
    n_steps: int = 32
    chunk_len: int = 16
    epochs: int = 10
    minibatches: int = 4
    gamma: float = 0.98
    lam: float = 0.8
    clip_eps: float = 0.2
    clip_anneal: bool = False
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    normalize_obs: bool = False
    reward_scale: float = 1.0
    log_std_init: float = 0.0

    def __post_init__(self) -> None:
        from seqlab.tasks.control_env import ENVS

        check_choice(self.env, "env", ENVS)
        check_choice(self.policy, "policy", POLICIES)
        check_int(self.obs_dim, "obs_dim", minimum=1)
        check_int(self.action_dim, "action_dim", minimum=1)
        check_int(self.n_envs, "n_envs", minimum=1, maximum=100000)
        for name in ("discrete", "normalize_obs", "clip_anneal", "separate_critic"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "True or False", repr(getattr(self, name)))
        check_int(self.hidden_size, "hidden_size", minimum=1, maximum=4096)
        check_int(self.n_steps, "n_steps", minimum=1, maximum=100000)
        check_int(self.chunk_len, "chunk_len", minimum=1, maximum=self.n_steps)
        if self.n_steps % self.chunk_len:
            fail("chunk_len", f"a divisor of n_steps ({self.n_steps})", self.chunk_len)
        check_int(self.epochs, "epochs", minimum=1, maximum=1000)
        check_int(self.minibatches, "minibatches", minimum=1)
        check_float(self.gamma, "gamma", minimum=0.0, maximum=1.0)
        check_float(self.lam, "lam", minimum=0.0, maximum=1.0)
        check_float(self.clip_eps, "clip_eps", minimum=0.0, open_min=True, maximum=10.0)
        check_float(self.vf_coef, "vf_coef", minimum=0.0, maximum=1e6)
        check_float(self.ent_coef, "ent_coef", minimum=0.0, maximum=1e6)
        check_float(self.reward_scale, "reward_scale", minimum=0.0, open_min=True, maximum=1e6)
        check_float(self.log_std_init, "log_std_init", minimum=-20.0, maximum=5.0)
        check_float(self.action_low, "action_low", finite=True)
        check_float(self.action_high, "action_high", finite=True)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ControlConfig":
        return cls(**fields_from_dict(cls, d, "control config"))


def _linear(i: int, o: int, gain: float) -> nn.Linear:
    layer = nn.Linear(i, o)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class ControlAgent(nn.Module):
    """The actor-critic: ``act`` one step, ``unroll`` a chunk, ``train_step`` one PPO update."""

    family = "control"

    def __init__(self, config: ControlConfig) -> None:
        super().__init__()
        if not isinstance(config, ControlConfig):
            fail("config", "a ControlConfig", type(config).__name__)
        self.config = c = config
        H = c.hidden_size
        self.core = self._make_core()
        self.critic_core = self._make_core() if c.separate_critic else None  # b^(h): the critic's own
        self.actor = nn.Sequential(_linear(H, H, math.sqrt(2)), nn.Tanh(), _linear(H, c.action_dim, 0.01))
        self.critic = nn.Sequential(_linear(H, H, math.sqrt(2)), nn.Tanh(), _linear(H, 1, 1.0))
        if not c.discrete:
            self.log_std = nn.Parameter(torch.full((c.action_dim,), float(c.log_std_init)))  # log sigma: (A,)
        # running mean and variance of the raw observations (saved with the weights)
        self.register_buffer("obs_mean", torch.zeros(c.obs_dim))
        self.register_buffer("obs_var", torch.ones(c.obs_dim))
        self.register_buffer("obs_count", torch.tensor(1e-4, dtype=torch.float64))
        # where the training environments are (control_ppo.Runner.save): saved in every checkpoint,
        # so that a resumed run continues the same episodes
        from seqlab.tasks.control_env import SIM_SLOTS

        N = c.n_envs
        self.register_buffer("roll_started", torch.zeros((), dtype=torch.int64))
        self.register_buffer("roll_obs", torch.zeros(N, c.obs_dim))  # raw observations (N, D)
        self.register_buffer("roll_state", torch.zeros(max(1, self.n_states), N, H))  # (states, N, H)
        self.register_buffer("roll_first", torch.ones(N))  # (N,)
        self.register_buffer("roll_env", torch.zeros(N, SIM_SLOTS, dtype=torch.float64))  # VecEnv.get_state
        self.register_buffer("roll_counters", torch.zeros(3, dtype=torch.float64))  # env steps, recent return, has
        self.clip_norm: float | None = 0.5
        self.base_lr: float | None = None  # the run's lr (make_optimizer): clip_anneal's reference

    def _make_core(self) -> nn.Module:
        c, H = self.config, self.config.hidden_size
        if c.policy == "lstm":
            return LSTMLayer(c.obs_dim, H, forget_bias=1.0)
        if c.policy == "gru":
            return GRULayer(c.obs_dim, H, reset="after")
        return nn.Sequential(_linear(c.obs_dim, H, math.sqrt(2)), nn.Tanh(), _linear(H, H, math.sqrt(2)), nn.Tanh())

    # ---- observations and actions

    @property
    def states_per_core(self) -> int:
        return {"lstm": 2, "gru": 1, "mlp": 0}[self.config.policy]

    @property
    def n_states(self) -> int:
        """The state tensors the agent carries: the policy core's, then the critic core's."""
        return self.states_per_core * (2 if self.config.separate_critic else 1)

    def initial_state(self, n: int) -> tuple[torch.Tensor, ...]:
        """a^(h)_0 (and a^(c)_0) = 0: (n, H) each; none for the MLP."""
        return tuple(torch.zeros(n, self.config.hidden_size) for _ in range(self.n_states))

    @torch.no_grad()
    def normalize(self, obs: torch.Tensor, update: bool = False) -> torch.Tensor:
        """x = clip((o - mu) / sqrt(sigma^2 + 1e-8), -10, 10); with ``update`` mu and sigma^2
        first take in the batch ``obs`` (N, D). Without normalize_obs, x = o."""
        obs = obs.float()
        if not self.config.normalize_obs:
            return obs
        if update:
            n = obs.shape[0]
            b_mean, b_var = obs.mean(0), obs.var(0, unbiased=False)
            count = float(self.obs_count)
            total = count + n
            delta = b_mean - self.obs_mean
            # mu <- mu + delta n / (m + n);  sigma^2 <- (m sigma^2 + n s^2 + delta^2 m n / (m + n)) / (m + n)
            self.obs_mean += delta * n / total
            self.obs_var.copy_((self.obs_var * count + b_var * n + delta ** 2 * count * n / total) / total)
            self.obs_count.fill_(total)
        return ((obs - self.obs_mean) / torch.sqrt(self.obs_var + 1e-8)).clamp(-10.0, 10.0)

    def env_action(self, a: torch.Tensor) -> np.ndarray:
        """What the environments are given: the index (discrete), or clip(a, low, high)."""
        c = self.config
        if c.discrete:
            return a.numpy().astype(np.int64)
        return a.clamp(c.action_low, c.action_high).numpy().astype(np.float32)

    # ---- the policy

    def _step(self, core: nn.Module, x: torch.Tensor, state: tuple[torch.Tensor, ...], first: torch.Tensor):
        """One core's output (N, H) at x_t (N, D) and its new state, reset where ``first`` (N,) is 1."""
        if self.config.policy == "mlp":
            return core(x), ()
        keep = (1.0 - first.float())[:, None]  # (N, 1)
        # a_(t-1) <- (1 - first_t) a_(t-1)
        state = tuple(s * keep for s in state)
        out, new_state = core.reference(x[:, None], state, None)  # (N, 1, H)
        return out[:, 0], tuple(new_state)

    def _core_step(self, x: torch.Tensor, state: tuple[torch.Tensor, ...], first: torch.Tensor):
        """(a^(h)_t, what the critic reads: a^(h)_t or b^(h)_t) and the new state."""
        k = self.states_per_core
        h, new_state = self._step(self.core, x, state[:k], first)
        if self.critic_core is None:
            return (h, h), new_state
        hv, new_v = self._step(self.critic_core, x, state[k:], first)
        return (h, hv), new_state + new_v

    def _heads(self, h: tuple[torch.Tensor, torch.Tensor]):
        """The policy's distribution and V from (the actor's input, the critic's input), (..., H) each."""
        out = self.actor(h[0])  # (..., A)
        value = self.critic(h[1])[..., 0]  # (...,)
        if self.config.discrete:
            # pi(a|.) = softmax(w^(pi) . u_t + b^(pi))
            return torch.distributions.Categorical(logits=out), value
        # pi(a|.) = N(mu, sigma^2),  mu = w^(mu) . u_t + b^(mu)
        return torch.distributions.Normal(out, self.log_std.exp().expand_as(out)), value

    def act(self, x: torch.Tensor, state: tuple[torch.Tensor, ...], first: torch.Tensor):
        """One step for N environments: (the policy's distribution, V (N,), the new state)."""
        h, new_state = self._core_step(x, state, first)
        dist, value = self._heads(h)
        return dist, value, new_state

    def unroll(self, obs: torch.Tensor, state0: tuple[torch.Tensor, ...], first: torch.Tensor):
        """The policy over chunks: obs (B, L, D), first (B, L), state0 (B, H) each ->
        (distribution over (B, L) actions, V (B, L), final state)."""
        if self.config.policy == "mlp":
            h = self.core(obs)
            dist, value = self._heads((h, h if self.critic_core is None else self.critic_core(obs)))
            return dist, value, ()
        hs, vs, state = [], [], state0
        for t in range(obs.shape[1]):
            (h, hv), state = self._core_step(obs[:, t], state, first[:, t])
            hs.append(h)
            vs.append(hv)
        dist, value = self._heads((torch.stack(hs, dim=1), torch.stack(vs, dim=1)))  # (B, L, H) each -> heads
        return dist, value, state

    @torch.no_grad()
    def greedy(self, dist: torch.distributions.Distribution) -> torch.Tensor:
        """The deterministic action: the most likely class, or the Gaussian's mean."""
        return dist.probs.argmax(-1) if self.config.discrete else dist.mean

    # ---- the trainer's hooks

    def make_optimizer(self, cfg) -> torch.optim.Optimizer:
        self.clip_norm, self.base_lr = cfg.clip_norm, cfg.lr
        return torch.optim.Adam(self.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-5)

    def train_step(self, batch, *, lr: float, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                   weight_decay: float = 0.0, group=None) -> tuple[float, dict]:
        """One rollout of ``batch`` (the run's ``Runner``) and the PPO update on it.

        Under torchrun (``group``, ``seqlab.training.distributed``): rank r steps its E/N of the
        run's E environments (``Runner.join``), the rollout is gathered so every rank holds all
        of it (``control_ppo.collect``), and each minibatch's gradient is split across the ranks
        and averaged (``control_ppo.ppo_update``). The loss and metrics returned are the whole
        run's, the same on every rank, except ``tokens`` (this rank's environment steps, which
        the trainer sums)."""
        if not isinstance(batch, ppo.Runner):
            fail("control train_step batch", "the run's environments (a Runner)", type(batch).__name__)
        c = self.config
        batch.join(group)
        was_training = self.training
        self.eval()
        roll = ppo.collect(self, batch, c.n_steps, c.gamma, c.reward_scale, generator)
        self.train(was_training)
        # epsilon_k = epsilon lr_k / lr with clip_anneal (the ratio's trust region shrinks as the steps do)
        clip_eps = c.clip_eps * lr / self.base_lr if c.clip_anneal and self.base_lr else c.clip_eps
        out = ppo.ppo_update(self, roll, optimizer, epochs=c.epochs, minibatches=c.minibatches, chunk_len=c.chunk_len,
                             gamma=c.gamma, lam=c.lam, clip_eps=max(clip_eps, 1e-8), vf_coef=c.vf_coef, ent_coef=c.ent_coef,
                             clip_norm=self.clip_norm, generator=generator, group=group)
        if roll.returns:
            batch.recent = roll.returns
        batch.save(self)
        metrics = {k: v for k, v in out.items() if k != "loss"}
        metrics["return"] = float(np.mean(batch.recent)) if batch.recent else 0.0
        metrics["env_steps"] = float(batch.env_steps)
        # the trainer's throughput, environment steps per second (this rank's: the trainer sums them)
        metrics["tokens"] = float(c.n_steps * len(batch.env))
        return out.get("loss", float("nan")), metrics

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """The validation figure: minus the mean return of deterministic episodes, one per seed
        of ``batch["seeds"]`` (B,). Under torchrun each rank plays its share of the seeds
        (``batch["share"]``, ``ControlRunData.shard_batch``) and the returns are gathered, so
        every rank reports the one-process figures."""
        seeds = batch["seeds"].tolist() if isinstance(batch, dict) else None
        if not seeds:
            fail("control validation batch", "a dict with 'seeds'", type(batch).__name__)
        returns, _ = run_episodes(self, seeds)
        if batch.get("share"):
            from seqlab.training import distributed

            group = distributed.current()
            if group is None:
                fail("control validation batch", "a share of the seeds only under torchrun", "a share outside it")
            returns = group.gather_floats(returns)  # rank order = the seeds' order
        r = torch.tensor(returns, dtype=torch.float32)
        return -r.mean(), {"return": float(r.mean()), "return_std": float(r.std(unbiased=False))}


@torch.no_grad()
def run_episodes(model: ControlAgent, seeds: list[int], *, deterministic: bool = True, render: bool = False,
                 frame_every: int = 1, env: str | None = None) -> tuple[list[float], list[np.ndarray]]:
    """One episode per seed, all run together; returns their undiscounted returns and, with
    ``render``, the frames (rgb arrays, every ``frame_every``-th step) of the first episode."""
    from seqlab.tasks.control_env import VecEnv

    c = model.config
    n = len(seeds)
    envs = VecEnv(env or c.env, n, seed=0, render_first=render)
    try:
        obs = envs.reset(list(seeds))
        frames = [envs.render_first()] if render else []
        state = model.initial_state(n)
        first = torch.ones(n)
        returns: list[float | None] = [None] * n
        running = np.zeros(n)
        t = 0
        while any(r is None for r in returns):
            dist, _, state = model.act(model.normalize(torch.as_tensor(obs)), state, first)
            a = model.greedy(dist) if deterministic else dist.sample()
            obs, r, term, trunc, _, _ = envs.step(model.env_action(a))
            t += 1
            done = term | trunc
            for i in range(n):
                if returns[i] is None:
                    running[i] += r[i]
                    if done[i]:
                        returns[i] = float(running[i])
            if render and returns[0] is None and t % frame_every == 0:
                frames.append(envs.render_first())
            first = torch.as_tensor(done, dtype=torch.float32)
        return [float(r) for r in returns], frames
    finally:
        envs.close()


__all__ = ["ControlAgent", "ControlConfig", "POLICIES", "run_episodes"]
