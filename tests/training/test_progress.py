"""Progress (seqlab.progress): plain lines where stderr is not a terminal, a bar where it is, the
time left under a wall-clock budget, and off when asked."""

import io
import re

import pytest

from seqlab import progress
from seqlab.progress import Progress, estimate_remaining, format_duration


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_the_time_left_is_capped_by_the_budget():
    # 100 of 1800 steps in 60 s: 17 minutes more by the pace, but a 3-minute cap leaves 2
    assert estimate_remaining(100, 1800, 60.0) == pytest.approx(1020.0)
    assert estimate_remaining(100, 1800, 60.0, time_left=120.0) == 120.0
    assert estimate_remaining(1700, 1800, 60.0, time_left=120.0) == pytest.approx(60 / 1700 * 100)
    assert estimate_remaining(0, 1800, 0.0) is None  # nothing to go by yet
    assert estimate_remaining(0, 1800, 0.0, time_left=30.0) == 30.0
    assert estimate_remaining(10, None, 5.0) is None
    assert estimate_remaining(10, 20, 5.0, time_left=-1.0) == 0.0  # past the budget: the last step
    assert [format_duration(s) for s in (0.4, 45, 99, 170, 1620, 3900)] == ["0 s", "45 s", "99 s", "3 min",
                                                                          "27 min", "1 h 05 min"]


def test_plain_lines_when_the_output_is_not_a_terminal():
    out, clock = io.StringIO(), Clock()
    bar = Progress(1800, desc="lstm", time_limit=180.0, interval=20.0, file=out, clock=clock, enabled=True)
    assert out.getvalue() == ""
    for step in range(1, 301):
        clock.t += 0.25  # 300 steps in 75 s
        bar.update()
        if step == 100:
            bar.set(loss="loss 2.10")
    bar.close()
    bar.close()  # once only
    assert "\r" not in out.getvalue()
    # one line every 20 s, not one per step, and one at the end; the time left is the 3-minute
    # budget's (160, 140, 120 s), not the pace's (430, 410, 390 s)
    assert out.getvalue().splitlines() == [
        "lstm: step 80/1800 (4%), 20 s elapsed, about 3 min left",
        "lstm: step 160/1800 (9%), loss 2.10, 40 s elapsed, about 2 min left",
        "lstm: step 240/1800 (13%), loss 2.10, 60 s elapsed, about 2 min left",
        "lstm: step 300/1800 (17%), loss 2.10, 75 s elapsed",
    ]


def test_a_resumed_job_counts_its_pace_from_where_it_started():
    out, clock = io.StringIO(), Clock()
    bar = Progress(1000, desc="gpt", initial=900, file=out, clock=clock, enabled=True)
    clock.t += 10.0
    bar.update(10)  # 10 steps in 10 s, 90 to go
    assert bar.remaining() == pytest.approx(90.0)
    assert bar.status() == "gpt: step 910/1000 (91%), 10 s elapsed, about 90 s left"
    bar.close()


def test_stages_show_at_once_as_they_start():
    out, clock = io.StringIO(), Clock()
    with progress.stages(["a", "b"], desc="rbm eval", progress=True, file=out) as bar:
        bar.clock = clock
        bar.begin("pseudo-likelihood")
        clock.t += 5
        bar.update()
        bar.begin("logistic regression on the pixels")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("rbm eval: stage 0/2 (0%), pseudo-likelihood, ")
    assert lines[1].startswith("rbm eval: stage 1/2 (50%), logistic regression on the pixels, ")
    assert lines[2].startswith("rbm eval: stage 1/2 (50%), ") and "logistic" not in lines[2]


def test_a_bar_on_a_terminal_with_the_capped_time_left():
    out, clock = io.StringIO(), Clock()
    bar = Progress(10000, desc="lstm", time_limit=180.0, file=out, tty=True, clock=clock, enabled=True)
    clock.t += 10.0
    bar.update(100)  # the pace says 990 s more; 170 s are left of the budget
    bar.set(loss="loss 2.10")
    bar.update(1)
    bar.refresh()
    text = out.getvalue()
    assert "\r" in text and "101/10000" in text
    assert text.rstrip().endswith("101/10000 [00:00, loss 2.10, about 3 min left]")
    bar.close()
    # the bar stays, without the estimate
    assert out.getvalue().rstrip().endswith("101/10000 [00:00, loss 2.10]")


def test_off_shows_nothing_and_the_default_follows_enabled_blocks():
    out = io.StringIO()
    bar = Progress(10, desc="x", file=out, enabled=False)
    bar.update(5)
    bar.begin("stage")
    bar.write("message")
    bar.close()
    assert out.getvalue() == ""
    assert not progress.default_enabled() and not Progress(3, desc="y", file=out).enabled  # a library call
    with progress.enabled(True):
        assert Progress(3, desc="y", file=out).enabled
        with progress.enabled(False):
            assert not Progress(3, desc="y", file=out).enabled
            assert Progress(3, desc="y", file=out, enabled=True).enabled  # an explicit flag wins
        assert progress.default_enabled()
    assert not progress.default_enabled()
    with pytest.raises(ValueError, match=r"progress: expected True or False, received 'yes'"):
        with progress.enabled("yes"):
            pass
    with pytest.raises(ValueError, match=r"total: expected an integer >= 0 or None, received -1"):
        Progress(-1, desc="z")


def test_write_goes_around_the_bar():
    out = io.StringIO()
    bar = Progress(4, desc="x", file=out, enabled=True, tty=False)
    bar.write("wrote samples.png")
    bar.close()
    assert re.fullmatch(r"wrote samples.png\nx: step 0/4 \(0%\), 0 s elapsed\n", out.getvalue())


# --------------------------------------------------------------------------- the long jobs that use it


def test_gradflow_shows_its_progress_unless_quiet(tmp_path, capfd):
    from seqlab.cli import main

    argv = ["gradflow", "--cells", "rnn,gru", "--scales", "1", "--length", "6", "--hidden-size", "4", "--repeats",
            "1", "--batch-size", "2", "--no-clipping", "--out", str(tmp_path)]
    assert main(argv) == 0
    err = capfd.readouterr().err.splitlines()
    assert err[0] == "gradflow: network 0/2 (0%), rnn at scale 1, 0 s elapsed"
    assert err[1].startswith("gradflow: network 1/2 (50%), gru at scale 1, ")
    assert re.fullmatch(r"gradflow: network 2/2 \(100%\), \d+ s elapsed", err[-1])
    assert main([*argv, "--quiet"]) == 0
    assert capfd.readouterr().err == ""


def test_seqlab_eval_shows_the_stages_of_an_rbm_evaluation_unless_quiet(tmp_path, capfd, monkeypatch):
    import seqlab
    import seqlab.energy.rbm_eval as rbm_eval
    from seqlab.cli import main

    seqlab.train("rbm", out=tmp_path / "rbm", progress=False, preset="cpu-tiny", hidden_size=8, max_steps=2,
                 eval_every=2, eval_batches=1, tensorboard=False)
    monkeypatch.setattr(rbm_eval, "feature_accuracy", lambda *a, **k: 0.5)  # the slow part, skipped
    capfd.readouterr()
    assert main(["eval", str(tmp_path / "rbm")]) == 0
    out, err = capfd.readouterr()
    assert "logistic regression on the 359 test images: 0.500" in out
    lines = err.splitlines()
    assert lines[0].startswith("rbm eval: stage 0/3 (0%), pseudo-likelihood, reconstructions, hidden features, ")
    assert lines[1].startswith("rbm eval: stage 1/3 (33%), logistic regression on the hidden features of 1438 ")
    assert lines[2].startswith("rbm eval: stage 2/3 (67%), logistic regression on the pixels of 1438 images, ")
    assert re.fullmatch(r"rbm eval: stage 3/3 \(100%\), \d+ s elapsed", lines[3]) and len(lines) == 4
    assert "left" not in err  # stages of unequal length: no estimate
    assert main(["eval", str(tmp_path / "rbm"), "--quiet"]) == 0
    assert capfd.readouterr().err == ""
    seqlab.evaluate(tmp_path / "rbm")  # a library call: quiet unless asked
    assert capfd.readouterr().err == ""


def test_sampling_progress_counts_the_timesteps_and_changes_no_sample(capfd):
    import torch

    from seqlab.generative.diffusion import Diffusion
    from seqlab.generative.imagefamily import sampling_progress

    torch.manual_seed(0)
    model = Diffusion(timesteps=6, base_channels=4, channel_mults=(1, 2), time_dim=8).eval()
    plain = model.sample(3, generator=torch.Generator().manual_seed(1))
    with sampling_progress(model, "diffusion eval", {"method": "ddpm"}, progress=True) as bar:
        watched = model.sample(3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(plain, watched)
    assert bar.n == bar.total == 6
    assert re.fullmatch(r"diffusion eval: step 6/6 \(100%\), \d+ s elapsed\n", capfd.readouterr().err)
    with sampling_progress(model, "ddim", {"method": "ddim", "steps": 3}, progress=True) as bar:
        model.sample(3, generator=torch.Generator().manual_seed(1), method="ddim", steps=3)
    assert bar.n == bar.total == 3
    assert not model._forward_hooks and not model.net._forward_hooks  # the counting hooks are gone
