r"""The control tasks: gymnasium environments, partially observed through a masking wrapper.

Lecture, "other similar sequential control or prediction problems": "Robot control (and
other dynamic control tasks)". A controller that sees only positions, not velocities, must
estimate the velocities from the positions it saw before: the task needs a memory, which is
what the recurrent units are for. The environments (gymnasium 1.x):

    cartpole          CartPole-v1, o_t = (x, x', theta, theta')         2 actions (push left/right)
    cartpole-masked   CartPole-v1, o_t = (x, theta)                      velocities hidden
    pendulum          Pendulum-v1, o_t = (cos phi, sin phi, phi')        torque in [-2, 2]
    pendulum-masked   Pendulum-v1, o_t = (cos phi, sin phi)              angular velocity hidden

(and ``inverted-pendulum`` / ``inverted-pendulum-masked``, MuJoCo's InvertedPendulum-v5 with
o_t = (x, theta) and the velocities hidden, where ``gymnasium[mujoco]`` is installed).

``MaskObservation`` keeps the named entries of the observation vector and nothing else;
``VecEnv`` steps a list of environments together (each reset, with a seed drawn from the
run's generator, as soon as its episode ends) and reports ``terminated`` (a real end: the
pole fell) apart from ``truncated`` (the time limit: 500 steps for CartPole, 200 for
Pendulum), which PPO bootstraps from the value of the last observation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from seqlab.validation import fail

# name -> (gymnasium id, kept observation entries or None for all, what is hidden)
ENVS: dict[str, tuple[str, tuple[int, ...] | None, str]] = {
    "cartpole": ("CartPole-v1", None, "nothing"),
    "cartpole-masked": ("CartPole-v1", (0, 2), "the cart velocity and the pole's angular velocity"),
    "pendulum": ("Pendulum-v1", None, "nothing"),
    "pendulum-masked": ("Pendulum-v1", (0, 1), "the angular velocity"),
    "inverted-pendulum": ("InvertedPendulum-v5", None, "nothing"),
    "inverted-pendulum-masked": ("InvertedPendulum-v5", (0, 1), "the cart velocity and the pole's angular velocity"),
}
MUJOCO = ("inverted-pendulum", "inverted-pendulum-masked")


def mujoco_available() -> bool:
    try:
        import mujoco  # noqa: F401
    except ImportError:
        return False
    return True


def known_envs() -> tuple[str, ...]:
    """The environment names this installation can make (MuJoCo's only where it is installed)."""
    return tuple(n for n in ENVS if n not in MUJOCO or mujoco_available())


def check_env_name(name: object) -> str:
    """``name`` if it is a known environment, else the one-line error listing the known ones."""
    if not isinstance(name, str) or name not in known_envs():
        hint = ""
        if isinstance(name, str) and name in MUJOCO:
            hint = " (MuJoCo is not installed: pip install 'gymnasium[mujoco]')"
        fail("env", "one of " + ", ".join(known_envs()), repr(name) + hint)
    return name


def _masking_wrapper():
    import gymnasium as gym

    class MaskObservation(gym.ObservationWrapper):
        """An environment whose observation keeps only the entries ``keep`` of the wrapped one's."""

        def __init__(self, env, keep: tuple[int, ...]) -> None:
            super().__init__(env)
            self.keep = np.asarray(keep, dtype=np.int64)
            box = env.observation_space
            self.observation_space = gym.spaces.Box(box.low[self.keep], box.high[self.keep], dtype=box.dtype)

        def observation(self, observation):
            return np.asarray(observation)[self.keep]

    return MaskObservation


def MaskObservation(env, keep: tuple[int, ...]):
    """``env`` seen through the entries ``keep`` of its observation vector only."""
    return _masking_wrapper()(env, keep)


def make_env(name: str, render_mode: str | None = None):
    """A gymnasium environment of ``name`` (see ``ENVS``), masked where the name says so."""
    check_env_name(name)
    import gymnasium as gym

    if render_mode is not None:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame (classic control) without a display
        os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo's offscreen OpenGL (GLFW needs a display)
    env_id, keep, _ = ENVS[name]
    env = gym.make(env_id, render_mode=render_mode)
    return env if keep is None else MaskObservation(env, keep)


@dataclass(frozen=True)
class EnvSpec:
    """What the agent needs to know of an environment: observation size, and either the number
    of discrete actions or the size and bounds of a continuous action."""

    name: str
    obs_dim: int
    discrete: bool
    action_dim: int  # number of actions (discrete) or size of the action vector (continuous)
    action_low: float
    action_high: float
    max_episode_steps: int

    @property
    def hidden(self) -> str:
        return ENVS[self.name][2]


def env_spec(name: str) -> EnvSpec:
    import gymnasium as gym

    env = make_env(name)
    try:
        obs_dim = int(np.prod(env.observation_space.shape))
        space = env.action_space
        steps = int(env.spec.max_episode_steps) if env.spec is not None and env.spec.max_episode_steps else 1000
        if isinstance(space, gym.spaces.Discrete):
            return EnvSpec(name, obs_dim, True, int(space.n), 0.0, 0.0, steps)
        return EnvSpec(name, obs_dim, False, int(np.prod(space.shape)), float(np.min(space.low)),
                       float(np.max(space.high)), steps)
    finally:
        env.close()


SIM_SLOTS = 16  # numbers per environment in a saved VecEnv state (see VecEnv.get_state)


class VecEnv:
    """``n`` environments of ``name`` stepped together (a plain list: gymnasium's SyncVectorEnv
    resets inside ``step`` with its own generator; here the k-th reset of environment i takes
    the seed SeedSequence([seed, first + i, k]) (``first``: the global index of environment 0,
    0 but in a process of a torchrun job), so a run is reproducible from its seed, and its state
    can be saved and restored exactly: ``get_state``/``set_state``).

    ``reset() -> obs (n, D)``; ``step(actions) -> (obs (n, D), reward (n,), terminated (n,),
    truncated (n,), final_obs (n, D), returns)``: an environment whose episode ended is reset
    at once, ``obs`` is then its new episode's first observation and ``final_obs`` the last one
    of the ended episode (the value PPO bootstraps from at a time limit); ``returns`` lists the
    undiscounted returns of the episodes that ended in this step."""

    def __init__(self, name: str, n: int, seed: int = 0, render_first: bool = False, first: int = 0) -> None:
        self.name = name
        self.envs = [make_env(name, render_mode="rgb_array" if (render_first and i == 0) else None)
                     for i in range(n)]
        self.seed = int(seed)
        # the global index of environment 0: a process of a torchrun job steps environments
        # first .. first + n - 1 of the run's, each seeded by its global index
        self.first = int(first)
        self.episodes = np.zeros(n, dtype=np.int64)  # resets so far, per environment
        self.running = np.zeros(n)
        self.lengths = np.zeros(n, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.envs)

    def _seed(self, i: int) -> int:
        seed = int(np.random.SeedSequence([self.seed, self.first + i, int(self.episodes[i])]).generate_state(1)[0])
        self.episodes[i] += 1
        return seed

    def reset(self, seeds: list[int] | None = None) -> np.ndarray:
        seeds = seeds if seeds is not None else [self._seed(i) for i in range(len(self.envs))]
        obs = [env.reset(seed=int(s))[0] for env, s in zip(self.envs, seeds)]
        self.running[:] = 0.0
        self.lengths[:] = 0
        return np.stack(obs).astype(np.float32)

    def step(self, actions: np.ndarray):
        obs, rewards, terminated, truncated, final, returns = [], [], [], [], [], []
        for i, (env, a) in enumerate(zip(self.envs, actions)):
            o, r, term, trunc, _ = env.step(a)
            self.running[i] += float(r)
            self.lengths[i] += 1
            final.append(o)
            if term or trunc:
                returns.append(float(self.running[i]))
                self.running[i] = 0.0
                self.lengths[i] = 0
                o, _ = env.reset(seed=self._seed(i))
            obs.append(o)
            rewards.append(float(r))
            terminated.append(bool(term))
            truncated.append(bool(trunc and not term))
        return (np.stack(obs).astype(np.float32), np.asarray(rewards, dtype=np.float32), np.asarray(terminated),
                np.asarray(truncated), np.stack(final).astype(np.float32), returns)

    def get_state(self) -> np.ndarray:
        """(n, SIM_SLOTS) float64: per environment [resets so far, steps into the episode (the
        time limit's count), running return, number k of simulator numbers, the k numbers]
        (classic control: its ``state``; MuJoCo: qpos and qvel)."""
        out = np.zeros((len(self.envs), SIM_SLOTS))
        for i, env in enumerate(self.envs):
            sim = _sim_state(env)
            if len(sim) > SIM_SLOTS - 4:
                fail("environment state", f"at most {SIM_SLOTS - 4} numbers", len(sim))
            out[i, :4] = (self.episodes[i], env.get_wrapper_attr("_elapsed_steps"), self.running[i], len(sim))
            out[i, 4:4 + len(sim)] = sim
        return out

    def set_state(self, state: np.ndarray) -> None:
        """Put the environments (already reset once) where ``get_state`` found them."""
        for i, env in enumerate(self.envs):
            episodes, elapsed, running, k = state[i, :4]
            self.episodes[i] = int(episodes)
            self.running[i] = float(running)
            self.lengths[i] = int(elapsed)
            env.set_wrapper_attr("_elapsed_steps", int(elapsed))
            _set_sim_state(env, state[i, 4:4 + int(k)])

    def render_first(self):
        return self.envs[0].render()

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _sim_state(env) -> np.ndarray:
    u = env.unwrapped
    if hasattr(u, "data") and hasattr(u, "set_state"):  # MuJoCo
        return np.concatenate([np.asarray(u.data.qpos, dtype=np.float64), np.asarray(u.data.qvel, dtype=np.float64)])
    return np.asarray(u.state, dtype=np.float64)


def _set_sim_state(env, values: np.ndarray) -> None:
    u = env.unwrapped
    if hasattr(u, "data") and hasattr(u, "set_state"):
        nq = u.model.nq
        u.set_state(values[:nq].copy(), values[nq:].copy())
    else:
        u.state = np.asarray(values, dtype=np.float64).copy()


__all__ = ["ENVS", "EnvSpec", "MaskObservation", "VecEnv", "check_env_name", "env_spec", "known_envs", "make_env"]
