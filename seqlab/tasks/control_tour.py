"""The robot-control part of the tour's Applications section: a small recurrent actor-critic
trained with PPO on CartPole with the velocities hidden, beside the same agent with an MLP
policy (no memory), both playing held-out episodes; the benchmark's numbers quoted."""

from __future__ import annotations

import json
from pathlib import Path

import seqlab
from seqlab.tour.context import TourContext, quoted_benchmark
from seqlab.training.device import cpu_threads
from seqlab.viz.report import Section


def _plot(path: Path, curves: dict[str, list[tuple[int, float]]], frames: list, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(6, len(frames))
    fig = plt.figure(figsize=(10, 4.2))
    ax = fig.add_subplot(2, 1, 1)
    for name, curve in curves.items():
        if curve:
            s, r = zip(*curve)
            ax.plot(s, r, marker="o", ms=3, label=name)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("validation return")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    picks = [round(i * (len(frames) - 1) / max(1, n - 1)) for i in range(n)]
    for k, i in enumerate(picks):
        a = fig.add_subplot(2, n, n + k + 1)
        a.imshow(frames[i])
        a.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _curve(run_dir: Path, per_update: int) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"] * per_update, r["return"]) for r in rows if r.get("split") == "val" and "return" in r]


def control(ctx: TourContext, sec: Section) -> str:
    from seqlab.tasks.control import run_episodes

    env = "cartpole-masked"
    if ctx.quick:
        opts = dict(preset="cpu-tiny", env_steps=256, batch_size=4, eval_every=2, log_every=1)
        episodes = 3
    else:
        # 16,384 environment steps each (64 PPO updates of 8 environments x 32 steps): the
        # benchmark gives each agent 49,152 and compares with RecurrentPPO
        opts = dict(env_steps=16384, batch_size=8, eval_every=8, log_every=8)
        episodes = 20
    seeds = list(range(episodes))
    results = {}
    with cpu_threads(1):
        for policy in ("lstm", "mlp"):
            result = ctx.train("control", name=f"control-{policy}", guard=25, env=env, policy=policy, seed=0, **opts)
            model, run = seqlab.load(result.run_dir)
            returns, frames = run_episodes(model, seeds, render=(policy == "lstm"), frame_every=5)
            per_update = opts["batch_size"] * model.config.n_steps
            results[policy] = (result, returns, frames, _curve(result.run_dir, per_update), per_update)
    mean = {p: sum(r[1]) / len(r[1]) for p, r in results.items()}

    sec.text("\"Robot control (and other dynamic control tasks).\" A controller acts at every step from what it "
             "observes. Here it balances a pole on a cart (gymnasium's CartPole-v1: +1 per step upright, at most "
             "500 steps) but observes only the cart's position x and the pole's angle theta: the velocities are "
             "hidden, so a policy that sees only the present observation cannot tell a pole that is falling from "
             "one that is rising. A recurrent state can: the actor-critic reads the observations through seqlab's "
             "LSTM layer, one step per environment step, its state reset to 0 when an episode starts.")
    sec.equation(r"a^{(h)}_t = \mathrm{LSTM}(x_t, (1 - \mathrm{first}_t)\, a^{(h)}_{t-1}), \quad "
                 r"\pi(a_t \mid o_{\leq t}) = \mathrm{softmax}(w^{(\pi)} u_t), \quad V(o_{\leq t}) = w^{(V)} z_t")
    sec.text("It is trained with PPO (Schulman et al., 2017) from its equations: generalised advantage estimates "
             "(Schulman et al., 2016) with the episode ends inside a rollout, the clipped probability ratio, a value "
             "loss and an entropy bonus; the policy is run again over chunks of 16 steps from the recurrent state "
             "stored at each chunk's start (truncated backpropagation through time).")
    sec.equation(r"A_t = \delta_t + \gamma\lambda(1-d_t)A_{t+1},\ \ \delta_t = r_t + \gamma(1-d_t)V_{t+1} - V_t,"
                 r"\ \ L^{clip} = \mathbb{E}_t\,\min(\rho_t A_t, \mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon) A_t)")
    sec.code(f"seqlab train control --env {env} --env-steps {opts['env_steps']}            # LSTM policy\n"
             f"seqlab train control --env {env} --env-steps {opts['env_steps']} --policy mlp\n"
             "seqlab play RUN --episodes 10 --gif cartpole.gif")
    rows = [[p.upper(), f"{results[p][0].steps} updates ({results[p][0].steps * results[p][4]:,} environment steps)",
             f"{mean[p]:.1f}", f"{min(results[p][1]):.0f}", f"{max(results[p][1]):.0f}"] for p in results]
    sec.table(["policy", "trained", f"mean return ({episodes} held-out episodes)", "min", "max"], rows)
    png = ctx.out / "control.png"
    _plot(png, {p.upper(): results[p][3] for p in results}, results["lstm"][2],
          "masked CartPole: validation return during training (8 deterministic episodes)")
    sec.figure(png, "Top: the validation return while training, LSTM and MLP policies. Bottom: frames of the LSTM "
               "policy's first held-out episode (rendered offscreen with gymnasium's rgb_array mode).")
    sec.text(f"This run is small ({opts['env_steps']:,} environment steps per agent, well under a minute). The "
             "benchmark (benchmarks/bench_control.py) trains both for longer, on masked Pendulum too, with several "
             "seeds, against sb3-contrib's RecurrentPPO.")
    saved = quoted_benchmark(sec, "control")
    if saved is not None:
        table = []
        for row in saved["summary"].values():
            med = row.get("median_first_threshold")
            best = row.get("best_mean")
            table.append([row["env"], row["agent"], str(row["env_steps"]), f"{row['final_mean']:.1f}",
                          "-" if best is None else f"{best:.1f}",
                          "n/a" if not row["env"].startswith("cartpole") else ("-" if med is None else str(int(med)))])
        sec.table(["env", "agent", "env steps", "last weights (100 held-out episodes, mean over seeds)",
                   "best checkpoint (same)", "median step where the 100-episode mean reaches 475"], table)
    return (f"control: masked CartPole, {episodes} held-out episodes, LSTM policy return {mean['lstm']:.1f}, MLP "
            f"{mean['mlp']:.1f} ({opts['env_steps']:,} environment steps each)")
