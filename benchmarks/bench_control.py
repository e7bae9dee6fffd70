"""Robot control on partially observed gymnasium tasks (seqlab.tasks.control), against
sb3-contrib's RecurrentPPO, in the same run.

Agents, each for the same budget of environment steps and the same seeds:

- ours, LSTM: ``seqlab train control --env ENV --policy lstm --env-steps N --seed S`` (through
  ``seqlab.train``: the registry's trainer, checkpoints and all);
- ours, MLP: the same agent with ``--policy mlp`` (no memory);
- anchor: sb3-contrib's RecurrentPPO (MlpLstmPolicy) with RL Zoo's tuned settings for
  CartPoleNoVel-v1 and PendulumNoVel-v1 (``ppo_lstm``: VecNormalize of observations and
  rewards, LSTM of 64 units, separate critic LSTM), on the same masked environments
  (``seqlab.tasks.control_env``).

Every EVAL_EVERY environment steps, each agent plays 100 deterministic episodes (seeds
1000..1099, the same for all: the target's measure, a mean over 100 episodes); on CartPole the
step at which this mean first reaches 475 is
recorded (ours: from the checkpoints the run saved every EVAL_EVERY steps). At the end, the
final weights play 100 deterministic episodes (seeds 0..99: held out, no training or
evaluation episode uses them unless a random seed draw hits one). The jobs run in 2 worker
processes of 1 torch thread each, longest first.

    python benchmarks/bench_control.py                          # the reported setting
    python benchmarks/bench_control.py --seeds 1 --cartpole-steps 8192 --pendulum-steps 8192 --name control_smoke
    python benchmarks/bench_control.py --envs inverted-pendulum-masked --name control_inverted_pendulum

The MuJoCo task (InvertedPendulum-v5 with the velocities hidden) needs ``pip install
"gymnasium[mujoco]"``; RL Zoo has no ppo_lstm settings for it, so RecurrentPPO runs there with
its own defaults (8 environments, VecNormalize as on the others).

Writes benchmarks/results/NAME.md, .json and .png.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_recurrent_speed import machine_with_load as machine  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TARGET = 475.0  # masked CartPole: the target, a 100-episode mean of at least 475 (of 500)
# the return whose first step is recorded, per environment: 95% of the most an episode can score
# (Pendulum has none: its returns are costs)
THRESHOLDS = {"cartpole": TARGET, "inverted-pendulum": 950.0}


def threshold(env: str) -> float | None:
    return THRESHOLDS.get(env.removesuffix("-masked"))
EVAL_SEEDS = list(range(1000, 1100))  # 100 episodes at every checkpoint: the target's measure
FINAL_SEEDS = list(range(100))
AGENTS = ("ours-lstm", "ours-mlp", "RecurrentPPO")



# --------------------------------------------------------------------------- ours


def run_ours(env: str, policy: str, seed: int, steps: int, eval_every: int) -> dict:
    import seqlab
    from seqlab.tasks.control import run_episodes
    from seqlab.tasks.control_family import env_defaults
    from seqlab.training.rundir import CHECKPOINTS_DIR

    n_envs = 8
    per_update = n_envs * env_defaults(env)["n_steps"]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = seqlab.train("control", env=env, policy=policy, env_steps=steps, seed=seed, batch_size=n_envs,
                              eval_every=max(1, eval_every // per_update), keep_last=100000, out=Path(tmp) / "run",
                              progress=False)
        train_s = time.perf_counter() - t0
        curve = []
        final = best = None
        for ckpt in sorted(p for p in (Path(tmp) / "run" / CHECKPOINTS_DIR).iterdir() if p.is_dir()):
            model, run = seqlab.load(ckpt)
            returns, _ = run_episodes(model, EVAL_SEEDS)
            curve.append((run.step * per_update, float(np.mean(returns))))
            if best is None or curve[-1][1] > best[1]:
                best = (curve[-1][0], curve[-1][1], model)
            if run.step == result.steps:
                final = model
        final_returns, _ = run_episodes(final, FINAL_SEEDS)
        best_returns, _ = run_episodes(best[2], FINAL_SEEDS)
    return {"curve": curve, "final": final_returns, "best": best_returns, "best_step": best[0],
            "train_seconds": train_s, "env_steps": result.steps * per_update}


# --------------------------------------------------------------------------- RecurrentPPO


def sb3_settings(env: str) -> dict:
    """RL Zoo's tuned ppo_lstm settings (CartPoleNoVel-v1, PendulumNoVel-v1); on InvertedPendulum,
    which has no entry there, RecurrentPPO's own defaults (gamma 0.99) with 8 environments."""
    import torch

    kwargs = dict(ortho_init=False, activation_fn=torch.nn.ReLU, lstm_hidden_size=64, enable_critic_lstm=True,
                  net_arch=dict(pi=[64], vf=[64]))
    if env.startswith("inverted-pendulum"):  # no RL Zoo entry: sb3-contrib's defaults, 8 environments
        return dict(n_envs=8)
    if env.startswith("cartpole"):
        return dict(n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                    learning_rate=lambda f: 1e-3 * f, clip_range=lambda f: 0.2 * f, policy_kwargs=kwargs)
    return dict(n_envs=4, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0, learning_rate=1e-3,
                clip_range=0.2, use_sde=True, sde_sample_freq=4, policy_kwargs=kwargs)


def sb3_episodes(model, vecnorm, env: str, seeds: list[int]) -> list[float]:
    """Deterministic episodes of a RecurrentPPO model (observations normalised with the
    training statistics, frozen)."""
    from seqlab.tasks.control_env import VecEnv

    envs = VecEnv(env, len(seeds))
    try:
        obs = envs.reset(seeds)
        state, starts = None, np.ones(len(seeds), dtype=bool)
        returns: list[float | None] = [None] * len(seeds)
        running = np.zeros(len(seeds))
        while any(r is None for r in returns):
            a, state = model.predict(vecnorm.normalize_obs(obs), state=state, episode_start=starts,
                                     deterministic=True)
            obs, r, term, trunc, _, _ = envs.step(a)
            starts = term | trunc
            for i in range(len(seeds)):
                if returns[i] is None:
                    running[i] += r[i]
                    if starts[i]:
                        returns[i] = float(running[i])
        return [float(r) for r in returns]
    finally:
        envs.close()


def run_sb3(env: str, seed: int, steps: int, eval_every: int) -> dict:
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from seqlab.tasks.control_env import make_env

    s = sb3_settings(env)
    n_envs = s.pop("n_envs")
    venv = VecNormalize(DummyVecEnv([lambda: make_env(env) for _ in range(n_envs)]), norm_obs=True, norm_reward=True,
                        gamma=s.get("gamma", 0.99))  # 0.99: RecurrentPPO's default gamma
    venv.seed(seed)
    model = RecurrentPPO("MlpLstmPolicy", venv, seed=seed, verbose=0, device="cpu", **s)
    curve: list[tuple[int, float]] = []

    class Evaluate(BaseCallback):
        def __init__(self):
            super().__init__()
            self.next = eval_every

        def _on_step(self) -> bool:
            return True

        def _on_rollout_start(self) -> None:
            # the update of the last rollout is done: the policy has learned from num_timesteps steps
            if self.num_timesteps >= self.next:
                evaluate_now()
                while self.next <= self.num_timesteps:
                    self.next += eval_every

    best: dict = {}

    def evaluate_now() -> None:
        venv.training = False
        curve.append((model.num_timesteps, float(np.mean(sb3_episodes(model, venv, env, EVAL_SEEDS)))))
        venv.training = True
        if not best or curve[-1][1] > best["mean"]:  # the best evaluation's policy and observation statistics
            best.update(step=curve[-1][0], mean=curve[-1][1], obs_rms=copy.deepcopy(venv.obs_rms),
                        policy={k: v.clone() for k, v in model.policy.state_dict().items()})

    t0 = time.perf_counter()
    model.learn(steps, callback=Evaluate())
    train_s = time.perf_counter() - t0
    if not curve or curve[-1][0] != model.num_timesteps:
        evaluate_now()
    venv.training = False
    final = sb3_episodes(model, venv, env, FINAL_SEEDS)
    model.policy.load_state_dict(best["policy"])
    venv.obs_rms = best["obs_rms"]
    return {"curve": curve, "final": final, "best": sb3_episodes(model, venv, env, FINAL_SEEDS),
            "best_step": best["step"], "train_seconds": train_s, "env_steps": int(model.num_timesteps)}


# --------------------------------------------------------------------------- jobs


def job(spec: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    t0 = time.perf_counter()
    if spec["agent"] == "RecurrentPPO":
        out = run_sb3(spec["env"], spec["seed"], spec["steps"], spec["eval_every"])
    else:
        out = run_ours(spec["env"], spec["agent"].split("-")[1], spec["seed"], spec["steps"], spec["eval_every"])
    out.update(spec)
    out["seconds"] = time.perf_counter() - t0
    level = threshold(spec["env"])
    reached = [s for s, r in out["curve"] if level is not None and r >= level]
    out["threshold"], out["first_threshold"] = level, reached[0] if reached else None
    out["final_mean"] = float(np.mean(out["final"]))
    out["final_std"] = float(np.std(out["final"]))
    out["best_mean"] = float(np.mean(out["best"]))
    print(f"  {spec['env']:16s} {spec['agent']:13s} seed {spec['seed']}: final {out['final_mean']:8.1f} "
          f"+- {out['final_std']:6.1f}, first >= {level} at {out['first_threshold']}, {out['seconds']:.0f} s",
          flush=True)
    return out


def summarise(results: list[dict], envs: list[str]) -> dict:
    table = {}
    for env in envs:
        for agent in AGENTS:
            rs = [r for r in results if r["env"] == env and r["agent"] == agent]
            if not rs:
                continue
            firsts = [r["first_threshold"] for r in rs]
            # a run that never reached the threshold needed more than its budget: it sorts last
            known = sorted(f if f is not None else float("inf") for f in firsts)
            median = known[len(known) // 2] if len(known) % 2 else (known[len(known) // 2 - 1] + known[len(known) // 2]) / 2
            table[f"{env}/{agent}"] = {
                "env": env, "agent": agent, "seeds": [r["seed"] for r in rs],
                "final_means": [r["final_mean"] for r in rs],
                "final_mean": float(np.mean([r["final_mean"] for r in rs])),
                "best_means": [r["best_mean"] for r in rs], "best_steps": [r["best_step"] for r in rs],
                "best_mean": float(np.mean([r["best_mean"] for r in rs])),
                "threshold": threshold(env), "first_threshold": firsts,
                "median_first_threshold": None if median == float("inf") else median,
                "seconds": [r["seconds"] for r in rs], "env_steps": rs[0]["env_steps"]}
    return table


def plot(results: list[dict], envs: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(envs), figsize=(5.5 * len(envs), 3.8))
    axes = np.atleast_1d(axes)
    colours = {"ours-lstm": "C0", "ours-mlp": "C1", "RecurrentPPO": "C2"}
    for ax, env in zip(axes, envs):
        for agent in AGENTS:
            for i, r in enumerate(x for x in results if x["env"] == env and x["agent"] == agent):
                s, v = zip(*r["curve"]) if r["curve"] else ((), ())
                ax.plot(s, v, color=colours[agent], alpha=0.8, label=agent if i == 0 else None)
        if threshold(env) is not None:
            ax.axhline(threshold(env), color="grey", ls="--", lw=0.8)
        ax.set_title(env)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("mean return, 100 deterministic episodes")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0,
                   help="training seeds first-seed .. first-seed + seeds - 1 (another range: seeds no tuning saw)")
    p.add_argument("--cartpole-steps", type=int, default=49152)
    p.add_argument("--pendulum-steps", type=int, default=65536)
    p.add_argument("--inverted-pendulum-steps", type=int, default=32768)
    p.add_argument("--eval-every", type=int, default=4096, help="environment steps between evaluations")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--envs", default="cartpole-masked,pendulum-masked")
    p.add_argument("--agents", default=",".join(AGENTS))
    p.add_argument("--name", default="control")
    args = p.parse_args()
    load = os.getloadavg()
    envs = args.envs.split(",")
    agents = args.agents.split(",")
    try:
        import sb3_contrib  # noqa: F401
    except ImportError:
        print("sb3-contrib is not installed (pip install -e '.[bench]'): RecurrentPPO is skipped")
        agents = [a for a in agents if a != "RecurrentPPO"]
    cost = {"RecurrentPPO": 4.0, "ours-lstm": 1.5, "ours-mlp": 0.5}
    specs = []
    for env in envs:
        steps = {"cartpole": args.cartpole_steps, "pendulum": args.pendulum_steps,
                 "inverted-pendulum": args.inverted_pendulum_steps}[env.removesuffix("-masked")]
        for agent in agents:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                specs.append({"env": env, "agent": agent, "seed": seed, "steps": steps, "eval_every": args.eval_every,
                              "cost": cost[agent] * steps})
    specs.sort(key=lambda s: -s["cost"])
    print(f"{len(specs)} jobs in {args.workers} worker processes of 1 thread", flush=True)
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers, maxtasksperchild=1) as pool:
        results = pool.map(job, specs, chunksize=1)
    wall = time.perf_counter() - t0
    table = summarise(results, envs)
    out = {"command": command(args), "machine": machine(load), "wall_seconds": wall, "args": vars(args), "target": TARGET,
           "summary": table, "runs": results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=1))
    plot(results, envs, RESULTS / f"{args.name}.png")
    (RESULTS / f"{args.name}.md").write_text(report(out, args))
    print(report(out, args))


def command(args) -> str:
    return (f"python benchmarks/bench_control.py --seeds {args.seeds} "
            + (f"--first-seed {args.first_seed} " if args.first_seed else "")
            + f"--cartpole-steps {args.cartpole_steps} "
            f"--pendulum-steps {args.pendulum_steps} "
            + (f"--inverted-pendulum-steps {args.inverted_pendulum_steps} " if "inverted" in args.envs else "")
            + f"--eval-every {args.eval_every} --workers {args.workers} "
            f"--envs {args.envs} --agents {args.agents} --name {args.name}")


def report(out: dict, args) -> str:
    m = out["machine"]
    lines = [f"# Robot control: recurrent PPO on partially observed tasks vs RecurrentPPO ({args.name})", "",
             f"Command: `{command(args)}`", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; {args.workers} worker processes of 1 torch "
             f"thread; load average at start {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])} (other "
             f"work shared the machine, so times are slower than on an idle one). Wall time {out['wall_seconds']:.0f} s.",
             "", "Final: the last weights, 100 deterministic episodes (seeds 0..99, held out), mean over seeds. "
             "First >= threshold: the environment step at which the mean of 100 deterministic episodes (seeds "
             f"1000..1099), measured every {args.eval_every} steps, first reached the threshold, 95% of an episode's "
             "most (475 on CartPole, the target; 950 on InvertedPendulum; none on Pendulum, whose returns are costs; "
             "\"-\": not within the budget). Best "
             "checkpoint: the weights (and, for RecurrentPPO, the observation statistics) of the evaluation with the "
             "highest mean on seeds 1000..1099, played on the held-out seeds 0..99 (the same rule for both agents; "
             "`seqlab play` plays a run's best checkpoint, chosen by its own validation episodes).", "",
             "| env | agent | env steps | seeds | final return per seed | final (mean) | best checkpoint per seed (at step) | best (mean) | threshold | first >= threshold per seed | median first >= threshold | train s per seed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in out["summary"].values():
        firsts = ", ".join("-" if f is None else str(f) for f in row["first_threshold"])
        med = "-" if row["median_first_threshold"] is None else str(int(row["median_first_threshold"]))
        level = "n/a" if row["threshold"] is None else f"{row['threshold']:.0f}"
        if row["threshold"] is None:
            firsts, med = "n/a", "n/a"
        seeds = row["seeds"]
        lines.append(f"| {row['env']} | {row['agent']} | {row['env_steps']} | {len(seeds)} "
                     f"({seeds[0]}..{seeds[-1]}) | "
                     f"{', '.join(f'{v:.1f}' for v in row['final_means'])} | {row['final_mean']:.1f} | "
                     + ", ".join(f"{v:.1f} ({k})" for v, k in zip(row["best_means"], row["best_steps"]))
                     + f" | {row['best_mean']:.1f} | {level} | {firsts} | {med} | "
                     f"{', '.join(f'{s:.0f}' for s in row['seconds'])} |")
    lines += ["", "Learning curves: " + f"`benchmarks/results/{args.name}.png`.", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
