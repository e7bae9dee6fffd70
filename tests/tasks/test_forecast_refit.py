"""The refit of a forecaster (``ForecastData(refit=True)``, ``seqlab train forecast --refit``): the
number of steps chosen with the validation block held out, then a fresh network trained on the
values before the held-out tail with the validation block included. The windows and the scaler of
the final fit, the first pass being the same run as one without --refit, the saved run's length
and checkpoint, evaluation and resume of a refit run, Ctrl-C in the first pass, and bad input."""

import json

import numpy as np
import pytest

import seqlab
import seqlab.runs
from seqlab.cli import main
from seqlab.tasks.forecast_data import SERIES, Scaler, WindowData, load_series, make_frame
from seqlab.testing import one_line_error, snapshot

SMALL = dict(series="sunspots", arch="gru", preset="cpu-tiny", max_steps=8, eval_every=2, eval_batches=1,
             batch_size=8, warmup_steps=1, log_every=1, progress=False)


def _frame():
    spec = SERIES["sunspots"]
    return make_frame(load_series("sunspots"), period=spec.period, horizon=12, test_size=spec.test_size)


def test_the_final_fit_trains_on_the_validation_block_and_nothing_after_the_first_origin():
    frame = _frame()
    o1, val_size, W, H = frame.first_origin, 24, 16, 12
    held = WindowData(frame, window=W, scaling="standard", val_size=val_size)
    refit = WindowData(frame, window=W, scaling="standard", val_size=val_size, refit=True)
    assert held.train_end == o1 - val_size and refit.train_end == o1
    # the training windows of the final fit: those of the first pass, and those whose targets
    # reach into the validation block; no target at or after the first origin
    t0, t1 = held.origins["train"], refit.origins["train"]
    assert np.array_equal(t1[: len(t0)], t0) and len(t1) == len(t0) + val_size
    assert t1.max() + H == o1 and (t1 - W >= 0).all()
    # the val split is the same block either way
    assert np.array_equal(held.origins["val"], refit.origins["val"])
    # the scaler of the final fit: fitted on every value before the first origin
    y = frame.y
    assert refit.scaler == Scaler.fit(y[:o1], "standard", frame.period)
    assert refit.scaler.loc == pytest.approx(y[:o1].mean()) and held.scaler.loc == pytest.approx(y[: o1 - val_size].mean())
    # the scaled training tensors are the raw windows through that scaler
    x, z = refit.tensors["train"]
    last = t1[-1]
    np.testing.assert_allclose(x[-1, :, 0].numpy(), (y[last - W:last] - refit.scaler.loc) / refit.scaler.scale,
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(z[-1].numpy(), (y[last:last + H] - refit.scaler.loc) / refit.scaler.scale,
                               rtol=1e-6, atol=1e-6)


def test_a_refit_run_is_the_first_pass_then_a_fresh_network_for_its_best_step(tmp_path):
    first = seqlab.train("forecast", out=tmp_path / "held", **SMALL)
    vals = [(r["loss"], r["step"]) for r in first.history if r.get("split") == "val" and r["step"] > 0]
    best_loss, best_step = min(vals)
    r = seqlab.train("forecast", out=tmp_path / "refit", refit=True, **SMALL)
    saved = json.loads((tmp_path / "refit" / "run.json").read_text())
    # the first pass is the run without --refit (the same preset, options, seed and batches)
    assert saved["data"]["refit"] is True
    assert saved["data"]["validation_pass"] == {"step": best_step, "val_loss": best_loss, "steps": 8}
    # the final fit runs for the first pass's best step and saves once, at its end
    assert r.steps == best_step and saved["train_config"]["max_steps"] == best_step
    assert saved["train_config"]["eval_every"] == best_step
    model, run = seqlab.load(tmp_path / "refit")
    assert run.step == best_step
    fam = seqlab.runs.get_family("forecast")
    # its scaler is the one fitted on all the values before the first origin
    data = fam._data(run)
    frame = data.frame
    assert data.windows.scaler == Scaler.fit(frame.y[: frame.first_origin], "standard", frame.period)
    # evaluation reads the refit run like any other
    res = seqlab.evaluate(tmp_path / "refit", baselines=False)
    assert res.origins == 49 and np.isfinite(res.scores["gru (seqlab, K=1)"]["h12"]["mase"])


def test_the_cli_flag_resume_and_one_line_refusals(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "forecast", "--series", "sunspots", "--refit", "--out", str(out), "--quiet",
                 "--preset", "cpu-tiny", "--max-steps", "4", "--eval-every", "2", "--eval-batches", "1",
                 "--batch-size", "4", "--warmup-steps", "1"]) == 0
    saved = json.loads((out / "run.json").read_text())
    step = saved["data"]["validation_pass"]["step"]
    assert saved["data"]["refit"] is True and step in (2, 4)
    # a resume keeps the refit: its data (the validation block in the training split) and its length
    r = seqlab.resume(out, progress=False)
    assert r.steps == step
    fam = seqlab.runs.get_family("forecast")
    _, run = seqlab.load(out)
    assert fam._data(run).windows.train_end == fam._data(run).frame.first_origin
    capsys.readouterr()
    before = snapshot(tmp_path)
    err = one_line_error(capsys, ["train", "forecast", "--refit", "yes", "--out", str(tmp_path / "bad"), "--quiet"])
    assert "yes" in err
    with pytest.raises(ValueError, match="refit: expected True or False, received 'yes'"):
        seqlab.train("forecast", out=tmp_path / "bad", refit="yes", **SMALL)
    assert snapshot(tmp_path) == before and not (tmp_path / "bad").exists()


def test_ctrl_c_in_the_first_pass_ends_the_run_before_anything_is_written(tmp_path, monkeypatch):
    real = seqlab.runs.train

    def interrupted(*args, **kwargs):
        r = real(*args, **kwargs)
        r.stopped = "interrupted"  # as if Ctrl-C had ended the first pass
        return r

    monkeypatch.setattr(seqlab.runs, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        real("forecast", out=tmp_path / "run", refit=True, **SMALL)
    assert not (tmp_path / "run").exists()
