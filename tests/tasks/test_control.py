"""Robot control: the masking wrapper, GAE, the clipped objective, the recurrent state reset,
truncated BPTT, learning, the command line and bad input (seqlab.tasks.control*)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import seqlab
from seqlab.cli import main
from seqlab.tasks import control_ppo as ppo
from seqlab.tasks.control import ControlAgent, ControlConfig, run_episodes
from seqlab.tasks.control_env import VecEnv, env_spec, make_env
from seqlab.testing import one_line_error
from seqlab.training.config import TrainConfig

TINY = dict(preset="cpu-tiny", env="cartpole-masked", env_steps=256, batch_size=4, eval_every=2, log_every=1)


def agent(env="cartpole-masked", policy="lstm", **kw) -> ControlAgent:
    s = env_spec(env)
    torch.manual_seed(0)
    return ControlAgent(ControlConfig(env=env, obs_dim=s.obs_dim, discrete=s.discrete, action_dim=s.action_dim,
                                      action_low=s.action_low, action_high=s.action_high, policy=policy, **kw))


# --------------------------------------------------------------------------- environments


@pytest.mark.parametrize("name, full, keep", [("cartpole-masked", "CartPole-v1", [0, 2]),
                                              ("pendulum-masked", "Pendulum-v1", [0, 1])])
def test_masking_hides_exactly_the_velocities(name, full, keep):
    import gymnasium as gym

    masked, ref = make_env(name), gym.make(full)
    assert masked.observation_space.shape == (len(keep),)
    np.testing.assert_array_equal(masked.observation_space.low, ref.observation_space.low[keep])
    o, _ = masked.reset(seed=3)
    r, _ = ref.reset(seed=3)
    np.testing.assert_array_equal(o, r[keep])
    for t in range(30):
        # a pole that stays up: push toward where it falls (read from the full observation)
        a = np.array([np.sin(t)], dtype=np.float32) if full == "Pendulum-v1" else int(r[2] + 0.5 * r[3] > 0)
        o, ro, term, *_ = masked.step(a)
        r, rr, *_ = ref.step(a)
        np.testing.assert_array_equal(o, r[keep])  # what is kept is the same ...
        assert ro == rr and not term
    hidden = [i for i in range(ref.observation_space.shape[0]) if i not in keep]
    assert np.abs(r[hidden]).max() > 0  # ... and what is hidden was there to hide
    assert env_spec(name).obs_dim == len(keep)


def test_full_observation_envs_and_vec_env_reset_on_done():
    assert env_spec("cartpole").obs_dim == 4 and env_spec("pendulum").obs_dim == 3
    s = env_spec("pendulum-masked")
    assert not s.discrete and s.action_dim == 1 and (s.action_low, s.action_high) == (-2.0, 2.0)
    v = VecEnv("cartpole", 3, seed=0)
    obs = v.reset([1, 2, 3])
    assert obs.shape == (3, 4)
    ended = []
    for _ in range(60):  # always pushing right: every episode ends within a few dozen steps
        obs, r, term, trunc, final, returns = v.step(np.ones(3, dtype=np.int64))
        ended += returns
        for i in np.nonzero(term)[0]:
            assert abs(final[i][2]) > 0.2 or abs(final[i][0]) > 2.4  # the ended episode's last state
            assert abs(obs[i][2]) < 0.06  # a fresh episode's first observation
    assert ended and all(r == int(r) for r in ended)


# --------------------------------------------------------------------------- equations


def test_gae_by_hand_with_an_episode_end_in_the_middle():
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[0.5], [0.4], [0.3]])
    d = torch.tensor([[0.0], [1.0], [0.0]])
    adv, ret = ppo.gae(r, v, d, torch.tensor([0.2]), gamma=0.9, lam=0.8)
    # t=2: 3 + .9*.2 - .3 = 2.88; t=1 ends its episode: 2 - .4 = 1.6; t=0: (1 + .9*.4 - .5) + .9*.8*1.6
    expected = torch.tensor([[0.86 + 0.72 * 1.6], [1.6], [2.88]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + v)
    # without the episode end, A_0 and A_1 see the later rewards
    adv2, _ = ppo.gae(r, v, torch.zeros_like(d), torch.tensor([0.2]), gamma=0.9, lam=0.8)
    assert adv2[1, 0] > adv[1, 0] + 1.0


def test_clipped_objective_by_hand():
    logp_old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    values, returns = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[2.0, 2.0, 1.0]])
    entropy = torch.tensor([[0.6, 0.6, 0.6]])
    loss, parts = ppo.ppo_loss(logp, logp_old, adv, values, returns, entropy, clip_eps=0.2, vf_coef=0.5,
                               ent_coef=0.01)
    # min(1.5*1, 1.2*1) = 1.2; min(0.5*-1, 0.8*-1) = -0.8; min(2.2, 2.2) = 2.2
    l_clip = (1.2 - 0.8 + 2.2) / 3
    l_v = 0.5 * (1.0 + 0.0 + 4.0) / 3
    assert parts["pg_loss"] == pytest.approx(-l_clip, abs=1e-6)
    assert parts["value_loss"] == pytest.approx(l_v, abs=1e-6)
    assert parts["clip_frac"] == pytest.approx(2 / 3)
    assert float(loss) == pytest.approx(-l_clip + 0.5 * l_v - 0.01 * 0.6, abs=1e-6)


def test_observation_normaliser_is_the_running_mean_and_variance():
    m = agent("pendulum-masked", normalize_obs=True)
    rng = np.random.default_rng(0)
    batches = [torch.tensor(rng.normal(3.0, 2.0, size=(5, 2)), dtype=torch.float32) for _ in range(7)]
    for b in batches:
        m.normalize(b, update=True)
    allx = torch.cat(batches).double()
    torch.testing.assert_close(m.obs_mean.double(), allx.mean(0), atol=1e-4, rtol=0)
    torch.testing.assert_close(m.obs_var.double(), allx.var(0, unbiased=False), atol=1e-3, rtol=1e-3)
    x = m.normalize(allx.float())
    assert x.mean(0).abs().max() < 1e-3 and (x.std(0, unbiased=False) - 1).abs().max() < 1e-3
    assert torch.equal(agent("pendulum-masked").normalize(batches[0], update=True), batches[0])  # off: identity


# --------------------------------------------------------------------------- recurrent state


@pytest.mark.parametrize("separate", [False, True], ids=["shared", "separate-critic"])
@pytest.mark.parametrize("policy", ["lstm", "gru"])
def test_recurrent_state_is_reset_at_episode_starts(policy, separate):
    m = agent(policy=policy, separate_critic=separate)
    assert m.n_states == {"lstm": 2, "gru": 1}[policy] * (2 if separate else 1)
    x = torch.randn(3, 2)
    warm = tuple(torch.randn(3, 64) for _ in range(m.n_states))
    zero = m.initial_state(3)
    d_reset, v_reset, s_reset = m.act(x, warm, torch.ones(3))
    d_zero, v_zero, s_zero = m.act(x, zero, torch.zeros(3))
    torch.testing.assert_close(d_reset.logits, d_zero.logits, atol=0, rtol=0)
    torch.testing.assert_close(v_reset, v_zero, atol=0, rtol=0)
    d_keep, v_keep, _ = m.act(x, warm, torch.zeros(3))
    assert (v_keep - v_zero).abs().max() > 1e-4  # the carried state matters when not reset
    # a mixed mask resets only its rows
    _, v_mixed, _ = m.act(x, warm, torch.tensor([1.0, 0.0, 1.0]))
    assert torch.equal(v_mixed[[0, 2]], v_zero[[0, 2]]) and torch.equal(v_mixed[1], v_keep[1])


@pytest.mark.parametrize("policy", ["lstm", "mlp"])
def test_separate_critic_keeps_the_value_loss_out_of_the_policy(policy):
    m = agent(policy=policy, hidden_size=16, separate_critic=True)
    obs, first = torch.randn(3, 5, 2), torch.zeros(3, 5)
    dist, value, _ = m.unroll(obs, m.initial_state(3), first)
    value.sum().backward()  # V depends on the critic's core and head only
    assert all(p.grad is None for p in [*m.core.parameters(), *m.actor.parameters()])
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in m.critic_core.parameters())
    m.zero_grad(set_to_none=True)
    dist, value, _ = m.unroll(obs, m.initial_state(3), first)
    dist.logits.sum().backward()  # pi depends on the policy's core and head only
    assert all(p.grad is None for p in [*m.critic_core.parameters(), *m.critic.parameters()])
    assert any(p.grad.abs().max() > 0 for p in m.core.parameters())


def test_clip_anneal_follows_the_learning_rate(monkeypatch):
    m = agent(hidden_size=8, n_steps=8, chunk_len=8, n_envs=2, clip_anneal=True)
    cfg = TrainConfig(lr=1e-3, max_steps=10)
    opt = m.make_optimizer(cfg)
    seen = []
    monkeypatch.setattr(ppo, "ppo_update", lambda *a, **k: seen.append(k["clip_eps"]) or {"loss": 0.0})
    runner = ppo.Runner("cartpole-masked", 2, seed=0)
    for lr in (1e-3, 2.5e-4):
        m.train_step(runner, lr=lr, optimizer=opt, generator=torch.Generator().manual_seed(0))
    assert seen == pytest.approx([0.2, 0.05])
    m2 = agent(hidden_size=8, n_steps=8, chunk_len=8, n_envs=2)  # off: epsilon stays
    opt2 = m2.make_optimizer(cfg)
    m2.train_step(ppo.Runner("cartpole-masked", 2, seed=0), lr=2.5e-4, optimizer=opt2,
                  generator=torch.Generator().manual_seed(0))
    assert seen[-1] == pytest.approx(0.2)


def test_mlp_policy_has_no_state():
    m = agent(policy="mlp")
    assert m.initial_state(4) == ()
    d, v, s = m.act(torch.randn(4, 2), (), torch.zeros(4))
    assert s == () and v.shape == (4,) and d.logits.shape == (4, 2)


# --------------------------------------------------------------------------- truncated BPTT


def test_to_chunks_layout():
    x = torch.arange(2 * 8).reshape(8, 2)  # (T=8, N=2): x[t, n] = 2 t + n
    c = ppo.to_chunks(x, 4)
    assert c.tolist() == [[0, 2, 4, 6], [8, 10, 12, 14], [1, 3, 5, 7], [9, 11, 13, 15]]
    with pytest.raises(ValueError, match="divisor"):
        ppo.to_chunks(x, 3)


@pytest.mark.parametrize("policy, separate", [("lstm", False), ("gru", False), ("lstm", True)])
def test_bptt_chunks_reproduce_the_rollout_log_probs(policy, separate):
    torch.manual_seed(1)
    m = agent(policy=policy, hidden_size=16, separate_critic=separate)
    runner = ppo.Runner("cartpole-masked", 4, seed=0)
    ppo.collect(m, runner, 8, 0.98, 0.1)  # a rollout first: the next one starts mid-episode (a carried state)
    roll = ppo.collect(m, runner, 48, 0.98, 0.1)
    L = 8
    first = ppo.to_chunks(roll.first, L)
    assert first[:, 1:].sum() > 0  # episodes start inside chunks: the in-chunk reset is exercised
    state0 = ppo.chunk_states(roll.states, L)
    assert state0[0].abs().max() > 0  # some chunks start from a carried state
    with torch.no_grad():
        dist, values, _ = m.unroll(ppo.to_chunks(roll.obs, L), state0, first)
        logp = ppo.log_prob_of(dist, ppo.to_chunks(roll.actions, L), True)
        ratio = torch.exp(logp - ppo.to_chunks(roll.logp, L))
    assert (logp - ppo.to_chunks(roll.logp, L)).abs().max() <= 1e-6
    assert (ratio - 1).abs().max() <= 1e-6
    torch.testing.assert_close(values, ppo.to_chunks(roll.values, L), atol=1e-6, rtol=0)
    # starting each chunk from zeros instead of its stored state does not reproduce them
    with torch.no_grad():
        dist0, _, _ = m.unroll(ppo.to_chunks(roll.obs, L), tuple(torch.zeros_like(s) for s in state0), first)
        logp0 = ppo.log_prob_of(dist0, ppo.to_chunks(roll.actions, L), True)
    assert (logp0 - ppo.to_chunks(roll.logp, L)).abs().max() > 1e-5


def test_ppo_update_first_epoch_ratio_is_one_and_weights_change():
    m = agent(hidden_size=16, n_steps=16, chunk_len=8)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    runner = ppo.Runner("cartpole-masked", 4, seed=0)
    roll = ppo.collect(m, runner, 16, 0.98, 0.1)
    before = [p.detach().clone() for p in m.parameters()]
    out = ppo.ppo_update(m, roll, opt, epochs=3, minibatches=2, chunk_len=8, gamma=0.98, lam=0.8, clip_eps=0.2,
                         vf_coef=0.5, ent_coef=0.0, clip_norm=0.5, generator=torch.Generator().manual_seed(0))
    assert out["first_ratio_gap"] <= 1e-6
    assert all(math.isfinite(v) for v in out.values())
    assert any((p - b).abs().max() > 0 for p, b in zip(m.parameters(), before))


def test_gaussian_policy_clips_the_action_it_sends():
    m = agent("pendulum-masked")
    a = torch.tensor([[-5.0], [0.5], [3.0]])
    np.testing.assert_array_equal(m.env_action(a), np.array([[-2.0], [0.5], [2.0]], dtype=np.float32))
    dist, v, _ = m.act(torch.randn(3, 2), m.initial_state(3), torch.ones(3))
    assert dist.mean.shape == (3, 1) and torch.allclose(dist.stddev, torch.ones(3, 1))


# --------------------------------------------------------------------------- learning


def test_learning_cartpole_full_observation_beats_random(tmp_path):
    """A short run on CartPole (full observation): the deterministic return is far above a
    random policy's (about 22)."""
    from seqlab.training.device import cpu_threads

    with cpu_threads(1):
        result = seqlab.train("control", env="cartpole", env_steps=12288, batch_size=8, eval_every=100, seed=0,
                              out=tmp_path / "run", progress=False)
        ev = seqlab.evaluate(result.run_dir, episodes=20)
    rng = np.random.default_rng(0)
    env = make_env("cartpole")
    random_returns = []
    for i in range(20):
        env.reset(seed=i)
        done, total = False, 0.0
        while not done:
            _, r, term, trunc, _ = env.step(int(rng.integers(2)))
            total, done = total + r, term or trunc
        random_returns.append(total)
    assert ev.mean > 3 * np.mean(random_returns) and ev.mean >= 100, (ev.mean, np.mean(random_returns))


# --------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("control") / "run"
    seqlab.train("control", out=out, progress=False, **TINY)
    return out


def test_train_tiny_save_load_and_eval(tiny_run):
    model, run = seqlab.load(tiny_run)
    assert run.family == "control" and model.config.env == "cartpole-masked" and model.config.hidden_size == 16
    saved = json.loads((tiny_run / "run.json").read_text())
    assert saved["train_config"]["max_steps"] == 4  # env_steps 256 / (4 envs x 16 steps)
    assert saved["data"] == {"env": "cartpole-masked", "env_steps": 256}
    ev = seqlab.evaluate(tiny_run, episodes=3, seed=5)
    assert len(ev.returns) == 3 and ev.to_json()["seed"] == 5
    returns, _ = run_episodes(model, [5, 6, 7])
    assert returns == ev.returns  # deterministic
    res = seqlab.resume(tiny_run, progress=False)  # a finished run: resumed, it stops where it was
    assert res.steps == 4 and res.stopped == "max_steps"


def test_environment_defaults_of_the_model_and_of_training(tmp_path):
    """Pendulum's PPO settings (256-step rollouts, 32 minibatches) and its learning rate (3e-3,
    through Family.train_defaults_for) are a run's defaults there; options and presets override
    them, CartPole keeps the family's 1e-3, and a resume keeps what run.json recorded."""
    def saved(name, **kw):
        seqlab.train("control", out=tmp_path / name, progress=False, max_steps=1, batch_size=2, **kw)
        j = json.loads((tmp_path / name / "run.json").read_text())
        return j["train_config"]["lr"], j["model_config"]["n_steps"], j["model_config"]["minibatches"]

    assert saved("p", env="pendulum-masked") == (3e-3, 256, 32)
    assert saved("p_given", env="pendulum-masked", lr=5e-4, n_steps=64, minibatches=2) == (5e-4, 64, 2)
    assert saved("p_tiny", env="pendulum", preset="cpu-tiny") == (3e-3, 16, 1)
    assert saved("c", env="cartpole-masked", preset="cpu-tiny") == (1e-3, 16, 1)
    assert seqlab.resume(tmp_path / "p", progress=False).steps == 1


def test_vec_env_state_round_trip():
    """A VecEnv's saved state put into fresh environments continues the same episodes."""
    for name in ("cartpole-masked", "pendulum-masked"):
        a = VecEnv(name, 3, seed=4)
        a.reset()
        act = (lambda t: np.full(3, t % 2)) if name.startswith("cart") else (lambda t: np.full((3, 1), np.sin(t),
                                                                                               dtype=np.float32))
        for t in range(25):
            a.step(act(t))
        b = VecEnv(name, 3, seed=4)
        b.reset()
        b.set_state(a.get_state())
        for t in range(25, 80):
            ra, rb = a.step(act(t)), b.step(act(t))
            for x, y in zip(ra, rb):
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_cli_train_and_play_with_gif(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "control", "--env", "pendulum-masked", "--policy", "gru", "--preset", "cpu-tiny",
                 "--env-steps", "128", "--batch-size", "2", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    gif = tmp_path / "ep.gif"
    assert main(["play", str(out), "--episodes", "2", "--gif", str(gif), "--frame-every", "10"]) == 0
    text = capsys.readouterr().out
    assert "pendulum-masked (gru policy): mean return" in text and "over 2 episodes" in text
    from PIL import Image

    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 20  # the first observation, then every 10th of 199 steps
    assert main(["play", str(out), "--episodes", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 1
    before = gif.read_bytes()
    assert "--force" in one_line_error(capsys, ["play", str(out), "--gif", str(gif)])
    assert gif.read_bytes() == before
    assert main(["play", str(out), "--episodes", "1", "--gif", str(gif), "--force", "--frame-every", "50"]) == 0
    assert gif.read_bytes() != before


def test_bad_inputs_are_one_line_and_write_nothing(tiny_run, tmp_path, capsys):
    out = tmp_path / "bad"
    err = one_line_error(capsys, ["train", "control", "--env", "mountaincar", "--out", str(out)])
    assert "cartpole-masked" in err and "pendulum-masked" in err and "'mountaincar'" in err
    assert "env_steps" in one_line_error(capsys, ["train", "control", "--env-steps", "0", "--out", str(out)])
    assert "env_steps" in one_line_error(capsys, ["train", "control", "--env-steps", "-3", "--out", str(out)])
    with pytest.raises(SystemExit) as e:  # argparse's own one line
        main(["train", "control", "--env-steps", "many", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "\n" not in err and "--env-steps" in err and "'many'" in err
    assert "policy" in one_line_error(capsys, ["train", "control", "--policy", "transformer", "--out", str(out)])
    assert "chunk_len" in one_line_error(capsys, ["train", "control", "--n-steps", "32", "--chunk-len", "5",
                                                  "--env-steps", "100", "--out", str(out)])
    assert not out.exists()
    assert "--episodes" in one_line_error(capsys, ["play", str(tiny_run), "--episodes", "0"])
    assert "--episodes" in one_line_error(capsys, ["play", str(tiny_run), "--episodes", "-2"])
    assert "no folder" in one_line_error(capsys, ["play", str(tiny_run), "--gif", str(tmp_path / "no" / "x.gif")])
    assert ".gif" in one_line_error(capsys, ["play", str(tiny_run), "--gif", str(tmp_path / "x.png")])
    assert "a file name" in one_line_error(capsys, ["play", str(tiny_run), "--gif", str(tmp_path)])
    assert "no such path" in one_line_error(capsys, ["play", str(tmp_path / "norun")])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="env: expected one of"):
        make_env("Acrobot-v1")


def test_play_refuses_another_family(tmp_path, capsys):
    gpt = tmp_path / "gpt"
    assert main(["train", "gpt", "--preset", "cpu-tiny", "--max-steps", "1", "--eval-every", "1", "--eval-batches",
                 "1", "--batch-size", "2", "--block-size", "16", "--quiet", "--out", str(gpt)]) == 0
    capsys.readouterr()
    err = one_line_error(capsys, ["play", str(gpt), "--gif", str(tmp_path / "x.gif")])
    assert "control" in err and "'gpt' run" in err
    assert not (tmp_path / "x.gif").exists()
    from seqlab.tasks.control_family import play

    with pytest.raises(ValueError, match="'gpt' run"):
        play(gpt)


def test_tour_part_quick(tmp_path):
    from seqlab.tasks.control_tour import control
    from seqlab.tour.context import TourContext
    from seqlab.viz.report import Report

    ctx = TourContext(out=tmp_path, quick=True, progress=False, report=Report("t"))
    sec = ctx.report.section("Robot control")
    line = control(ctx, sec)
    assert line.startswith("control: masked CartPole")
    assert {"table", "equation", "code", "figure"} <= set(sec.kinds())
