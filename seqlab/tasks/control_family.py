"""Robot control (``seqlab.tasks.control``) as a family of the registry: ``seqlab train control
--env cartpole-masked [--policy lstm|gru|mlp] [--env-steps N]``, ``seqlab eval RUN`` (the mean
return of 100 deterministic episodes), ``seqlab play RUN --episodes 10 [--gif out.gif]``, and
the same from Python::

    result = seqlab.train("control", env="cartpole-masked", env_steps=60000)
    print(seqlab.evaluate(result.run_dir).table())
    from seqlab.tasks.control_family import play
    print(play(result.run_dir, episodes=10, gif="cartpole.gif"))

The registry's trainer runs it as a model with its own update rule (like RLHF's PPO): each
training step is one rollout of ``n_steps`` steps in each of ``batch_size`` environments
followed by the PPO update; each validation "batch" is ``batch_size`` deterministic episodes,
and the validation loss is minus their mean return (so the best checkpoint is the one with the
highest return). ``--env-steps N`` sets the run's length in environment steps:
max_steps = ceil(N / (batch_size x n_steps)) updates (it replaces --max-steps).

Seeds: training episodes start from seeds drawn from the run's seed; validation episodes from
a fixed set drawn at or above 10^9; ``play`` and ``eval`` use the seeds seed, seed + 1, ...
(default from 0), none of which a training or validation episode uses unless drawn by chance
(probability about 10^-9 per episode).

A checkpoint holds, beside the weights and the observation statistics, where the training
environments are (``ControlAgent.roll_*`` buffers: their simulator states, time-limit counts,
current observations, the recurrent states, reset counts), and actions are drawn from the
trainer's per-step generator, so a resumed run continues the same episodes: it equals the
uninterrupted run exactly (tests/tasks/test_control.py).

Under torchrun (``torchrun --nproc-per-node N -m seqlab train control --batch-size E``) each
process steps E/N of the environments and takes its share of each PPO minibatch; the run equals
the one-process run with E environments (docs/scaling.md; tests/training/test_distributed_ppo.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqlab.runs import Family, RunRecord, register
from seqlab.tasks.control import ControlAgent, ControlConfig
from seqlab.validation import check_int, fail

VAL_SEED_BASE = 10**9
# per environment: the PPO settings a run starts from (presets and options override them)
ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    "cartpole": dict(n_steps=32, chunk_len=16, epochs=20, minibatches=1, gamma=0.98, lam=0.8, reward_scale=0.1,
                     normalize_obs=True, vf_coef=1.0),
    "pendulum": dict(n_steps=256, chunk_len=16, epochs=10, minibatches=32, gamma=0.9, lam=0.95, reward_scale=0.1,
                     normalize_obs=True),
    "inverted-pendulum": dict(n_steps=32, chunk_len=16, epochs=10, minibatches=2, gamma=0.99, lam=0.9,
                              reward_scale=0.1, normalize_obs=True),
}


# per environment: training settings (TrainConfig) a run starts from, over the family's train_defaults
# (options override them)
ENV_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "pendulum": dict(lr=3e-3),
}


def env_defaults(env: str) -> dict[str, Any]:
    return dict(ENV_DEFAULTS[env.removesuffix("-masked")])


def env_train_defaults(env: str) -> dict[str, Any]:
    return dict(ENV_TRAIN_DEFAULTS.get(env.removesuffix("-masked"), {}))


@dataclass(frozen=True)
class ControlData:
    """The environment a control run trains in.

    Attributes:
        env: cartpole-masked (velocities hidden), pendulum-masked (angular velocity hidden), cartpole, pendulum (full observation); inverted-pendulum(-masked) where MuJoCo is installed
        env_steps: the run's length in environment steps (sets max_steps = ceil(env_steps / (batch_size x n_steps))); none: max_steps
    """

    env: str = "cartpole-masked"
    env_steps: int | None = None


@dataclass(frozen=True)
class ControlEvaluation:
    """Options of ``seqlab eval`` for a control run.

    Attributes:
        episodes: deterministic episodes to play
        seed: the first episode's seed (the others: seed + 1, ...)
    """

    episodes: int = 100
    seed: int = 0


@dataclass
class ControlResult:
    """Returns of deterministic episodes."""

    env: str
    policy: str
    returns: list[float]
    seed: int

    @property
    def mean(self) -> float:
        return sum(self.returns) / len(self.returns)

    @property
    def std(self) -> float:
        m = self.mean
        return math.sqrt(sum((r - m) ** 2 for r in self.returns) / len(self.returns))

    def table(self) -> str:
        return (f"{self.env} ({self.policy} policy): mean return {self.mean:.1f} +- {self.std:.1f} over "
                f"{len(self.returns)} deterministic episodes (seeds {self.seed}..{self.seed + len(self.returns) - 1}), "
                f"min {min(self.returns):.1f}, max {max(self.returns):.1f}")

    def to_json(self) -> dict:
        return {"env": self.env, "policy": self.policy, "episodes": len(self.returns), "seed": self.seed,
                "mean_return": self.mean, "std_return": self.std, "returns": self.returns}


class ControlRunData:
    """What the trainer draws from: the rollout environments (``get_batch("train")``) and the
    seeds of validation episodes (``get_batch("val", B)``: B seeds at or above 10^9)."""

    def __init__(self, env: str, env_steps: int | None, n_envs: int, seed: int) -> None:
        from seqlab.tasks.control_env import env_spec
        from seqlab.tasks.control_ppo import Runner

        self.env = env
        self.env_steps = env_steps
        self.spec = env_spec(env)
        self.runner = Runner(env, n_envs, seed)

    def get_batch(self, split: str, batch_size: int, generator=None):
        import torch

        if split == "train":
            return self.runner
        if split != "val":
            fail("split", "'train' or 'val'", repr(split))
        seeds = torch.randint(0, 2**31 - 1 - VAL_SEED_BASE, (batch_size,), generator=generator) + VAL_SEED_BASE
        return {"seeds": seeds}

    def shard_batch(self, batch, rank: int, world: int):
        """Under torchrun (the trainer's ``Group.shard``): the rollout environments whole (the
        model's ``train_step`` keeps its rank's, ``Runner.join``); rank r's share of the
        validation seeds, marked as a share (the model gathers the returns)."""
        if not isinstance(batch, dict):
            return batch
        seeds = batch["seeds"]
        n = len(seeds) // world
        return {"seeds": seeds[rank * n:(rank + 1) * n], "share": True}

    def info(self) -> dict:
        return {"env": self.env, "env_steps": self.env_steps}


def _check_env_steps(env_steps: Any) -> None:
    if env_steps is not None:
        check_int(env_steps, "env_steps", minimum=1, maximum=10**9)


class ControlFamily(Family):
    name = "control"
    description = "robot control: a recurrent actor-critic trained with PPO on partially observed gymnasium tasks"
    model_class = ControlAgent
    config_class = ControlConfig
    data_class = ControlData
    evaluate_class = ControlEvaluation
    presets = {
        "cpu-tiny": {"hidden_size": 16, "n_steps": 16, "chunk_len": 8, "epochs": 2, "minibatches": 1},
        "cpu-small": {"hidden_size": 64},
    }
    default_preset = "cpu-small"
    train_defaults = {"max_steps": 400, "batch_size": 8, "lr": 1e-3, "min_lr": 0.0, "warmup_steps": 0, "schedule": "cosine",
                      "beta2": 0.999, "clip_norm": 0.5, "eval_every": 20, "eval_batches": 1, "log_every": 5,
                      "diverge_factor": None, "keep_last": 1}
    data_fields = ("env", "obs_dim", "discrete", "action_dim", "action_low", "action_high", "n_envs")
    checkpoint = "best"
    metric = "validation return"
    views = ("play",)

    def make_data(self, options: ControlData, fields, train_config) -> ControlRunData:
        from seqlab.tasks.control_env import check_env_name

        check_env_name(options.env)
        _check_env_steps(options.env_steps)
        return ControlRunData(options.env, options.env_steps, train_config.batch_size, train_config.seed)

    def train_defaults_for(self, data: ControlRunData) -> dict:
        return env_train_defaults(data.spec.name)

    def train_config_for(self, data: ControlRunData, fields, train_config):
        if data.env_steps is None:
            return train_config
        n_steps = fields.get("n_steps", env_defaults(data.spec.name)["n_steps"])
        check_int(n_steps, "n_steps", minimum=1)
        # --env-steps decides the run's number of updates (run.json records it; a resume keeps it)
        updates = math.ceil(data.env_steps / (train_config.batch_size * n_steps))
        return dataclasses.replace(train_config, max_steps=max(1, updates))

    def data_from_run(self, run: RunRecord, options) -> ControlRunData:
        saved = run.saved_data()
        tc = run.train_config or {}
        return ControlRunData(saved.get("env", run.config.env), saved.get("env_steps"), int(tc.get("batch_size", 8)),
                              int(tc.get("seed", 1337)))

    def config_from_data(self, data: ControlRunData, train_config) -> dict:
        s = data.spec
        return {"env": s.name, "obs_dim": s.obs_dim, "discrete": s.discrete, "action_dim": s.action_dim,
                "action_low": s.action_low, "action_high": s.action_high, "n_envs": len(data.runner.env),
                **env_defaults(s.name)}

    def summary(self, result) -> str:
        if result.best_val_loss is None:
            return f"{result.steps} updates, no evaluation"
        return (f"validation return {-result.best_val_loss:.1f} (best), {result.steps} updates in "
                f"{result.seconds:.0f} s")

    def report(self, model: ControlAgent, run: RunRecord) -> list[str]:
        return [self.evaluate(model, run, ControlEvaluation(episodes=10)).table()]

    def evaluate(self, model: ControlAgent, run: RunRecord, options: ControlEvaluation) -> ControlResult:
        from seqlab.tasks.control import run_episodes

        check_int(options.episodes, "episodes", minimum=1, maximum=10000)
        check_int(options.seed, "seed", minimum=0, maximum=2**31 - 1 - 10000)
        returns, _ = run_episodes(model, list(range(options.seed, options.seed + options.episodes)))
        return ControlResult(model.config.env, model.config.policy, returns, options.seed)

    def play(self, model: ControlAgent, run: RunRecord, *, episodes: int = 10, seed: int = 0, gif: str | None = None,
             force: bool = False, frame_every: int = 2, width: int = 300) -> dict:
        """Deterministic episodes; with ``gif`` the first one, rendered offscreen, as an
        animated GIF (every ``frame_every``-th frame, ``width`` pixels wide)."""
        from seqlab.tasks.control import run_episodes

        check_int(episodes, "episodes", minimum=1, maximum=10000)
        check_int(seed, "seed", minimum=0, maximum=2**31 - 1 - 10000)
        check_int(frame_every, "frame_every", minimum=1, maximum=1000)
        path = _check_gif(gif, force) if gif is not None else None
        returns, frames = run_episodes(model, list(range(seed, seed + episodes)), render=path is not None,
                                       frame_every=frame_every)
        result = ControlResult(model.config.env, model.config.policy, returns, seed)
        out = {**result.to_json()}
        if path is not None:
            out["gif"], out["frames"] = str(path), write_gif(frames, path, width=width,
                                                               ms_per_frame=int(1000 * frame_every / 50))
        return out


def _check_gif(gif: Any, force: bool) -> Path:
    from seqlab.paths import output_file

    path = output_file(gif, "--gif")
    if path.suffix.lower() != ".gif":
        fail("--gif", "a file name ending in .gif", repr(str(path)))
    if path.exists() and not force:
        fail("--gif", "a file that does not exist yet (or --force to replace it)", f"{str(path)!r}, which exists")
    return path


def write_gif(frames: list, path: Path, *, width: int = 300, ms_per_frame: int = 40) -> int:
    """The rgb frames as an animated GIF at ``path`` (scaled to ``width`` pixels, written
    atomically); returns the number of frames."""
    import io

    import numpy as np
    from PIL import Image

    from seqlab.training.io import atomic_write_bytes

    if not frames:
        fail("frames", "at least one rendered frame", "none")
    images = []
    for f in frames:
        im = Image.fromarray(np.asarray(f, dtype=np.uint8))
        h = max(1, round(im.height * width / im.width))
        images.append(im.resize((width, h), Image.BILINEAR).convert("P", palette=Image.ADAPTIVE, colors=64))
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0,
                   optimize=True)
    atomic_write_bytes(path, buf.getvalue())
    return len(images)


def play(run_dir: str | Path, *, episodes: int = 10, seed: int = 0, gif: str | None = None, force: bool = False,
         frame_every: int = 2) -> dict:
    """``seqlab play`` from Python: the returns of deterministic episodes of a control run (and
    the GIF of the first one)."""
    from seqlab import runs

    check_int(episodes, "episodes", minimum=1, maximum=10000)
    if gif is not None:
        _check_gif(gif, force)
    model, record = runs.load(run_dir)
    if record.family != "control":
        fail("play", "a run of the 'control' family", f"a {record.family!r} run")
    return runs.get_family("control").play(model, record, episodes=episodes, seed=seed, gif=gif, force=force,
                                           frame_every=frame_every)


register(ControlFamily())
