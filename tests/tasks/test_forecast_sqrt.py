"""The sqrt scaling of the forecasters (seqlab/tasks/forecast_data.py ``Scaler``): the round trip,
what it does to the training part, its inverse on any scaled value (clipped at 0, monotone, so
bounds stay bounds), the refusal of negative values (Python and the command line), ARIMA on the
square root, and a tiny run that saves, reloads and forecasts non-negative values."""

import json

import numpy as np
import pytest

import seqlab
from seqlab.tasks.forecast_data import (Frame, Scaler, Series, WindowData, arima_forecasts, make_frame, window_origins,
                                        windows_at)
from seqlab.testing import one_line_error, snapshot


def _counts(n=240, seed=0):
    """A non-negative cyclic series with zeros, whose spread grows with its level (like sunspots)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    level = 40 * (1 + np.sin(2 * np.pi * t / 11)) ** 2
    return np.maximum(level + np.sqrt(level + 1) * rng.normal(size=n), 0.0)


def test_sqrt_round_trip_and_training_part_standardised():
    y = _counts()
    assert (y == 0).any()
    sc = Scaler.fit(y[:150], "sqrt", period=11)
    # z_t = (sqrt(y_t) - mu) / s with mu, s the mean and sd of sqrt(y) on the training part
    r = np.sqrt(y[:150])
    assert sc.loc == pytest.approx(r.mean()) and sc.scale == pytest.approx(r.std())
    x = sc.inputs(y[None, :150])[0]
    np.testing.assert_allclose(x, (r - r.mean()) / r.std(), rtol=1e-12, atol=1e-12)
    origins = window_origins(0, len(y), 16, 12)
    w, before, _, fut = windows_at(y, origins, 16, 12)
    z = sc.targets(w, fut)
    np.testing.assert_allclose(z, (np.sqrt(fut) - sc.loc) / sc.scale, rtol=1e-12)
    np.testing.assert_allclose(sc.invert(w, z), fut, rtol=1e-10, atol=1e-9)
    back = Scaler.from_dict(json.loads(json.dumps(sc.to_dict())))
    assert back == sc and back.mode == "sqrt"


def test_sqrt_inverse_clips_at_zero_and_keeps_bounds_in_order():
    sc = Scaler("sqrt", loc=3.0, scale=2.0)
    w = np.ones((1, 4))
    # u = 3 + 2 z: z = -3 -> u = -3 (no square root gives it) -> 0, not 9
    got = sc.invert(w, np.array([[-3.0, -1.5, 0.0, 1.0]]))
    np.testing.assert_allclose(got, [[0.0, 0.0, 9.0, 25.0]])
    zs = np.linspace(-4, 4, 81)[None, :]
    v = sc.invert(np.ones((1, 81)), zs)
    assert (v >= 0).all() and (np.diff(v[0]) >= 0).all()  # monotone: quantiles stay quantiles


def test_sqrt_refuses_negative_values_anywhere_in_the_series():
    with pytest.raises(ValueError, match=r"^scaling sqrt: expected non-negative values \(it takes square roots\), "
                                         r"received a minimum of -0.5$"):
        Scaler.fit(np.array([1.0, 4.0, -0.5, 9.0]), "sqrt")
    # a negative value after the training part (in the held-out tail) is refused as well
    y = _counts()
    y[-3] = -1.0
    frame = make_frame(Series("c", y), period=11, horizon=12, test_size=40)
    with pytest.raises(ValueError, match="scaling sqrt: expected non-negative values"):
        WindowData(frame, window=16, scaling="sqrt", val_size=24)
    with pytest.raises(ValueError, match="scaling sqrt: expected non-negative values"):
        arima_forecasts(frame, seconds=0.0, sqrt=True)


def test_cli_sqrt_scaling_of_a_negative_value_is_one_line(tmp_path, capsys):
    y = _counts(120)
    y[100] = -2.0
    csv = tmp_path / "neg.csv"
    csv.write_text("y\n" + "".join(f"{v}\n" for v in y))
    before = snapshot(tmp_path)
    err = one_line_error(capsys, ["train", "forecast", "--csv", str(csv), "--column", "y", "--scaling", "sqrt",
                                  "--out", str(tmp_path / "run"), "--quiet"])
    assert "scaling sqrt: expected non-negative values" in err and "-2.0" in err
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()
    assert "scaling" in one_line_error(capsys, ["train", "forecast", "--scaling", "cube-root", "--quiet",
                                                "--out", str(tmp_path / "run")])


def test_arima_on_sqrt_maps_back_non_negative():
    y = _counts(200)
    frame = Frame(Series("c", y), period=1, horizon=6, first_origin=170, origins=np.arange(170, 195, 6))
    f, info = arima_forecasts(frame, seconds=0.0)
    fs, infos = arima_forecasts(frame, seconds=0.0, sqrt=True)
    assert fs.shape == f.shape and (fs >= 0).all() and np.isfinite(fs).all()
    assert not np.allclose(fs, f)
    assert infos["fits"] >= 1


def test_tiny_sqrt_run_saves_reloads_and_forecasts_non_negative(tmp_path):
    csv = tmp_path / "counts.csv"
    csv.write_text("t,y\n" + "".join(f"{i},{v}\n" for i, v in enumerate(_counts(160))))
    r = seqlab.train("forecast", csv=str(csv), column="y", scaling="sqrt", period=11, horizon=6, window=16,
                     test_size=24, val_size=12, arch="gru", preset="cpu-tiny", max_steps=3, eval_every=3,
                     eval_batches=1, batch_size=4, warmup_steps=1, out=tmp_path / "run", progress=False)
    saved = json.loads((next(r.run_dir.rglob("forecast_scaler.json"))).read_text())
    assert saved["mode"] == "sqrt"
    model, run = seqlab.load(r.run_dir)
    assert run.extras["scaler"].mode == "sqrt"
    from seqlab.tasks.forecast_family import forecast

    out = forecast(r.run_dir, horizon=6)
    assert len(out["mean"]) == 6
    for lo, m, hi in zip(out["lower"], out["mean"], out["upper"]):
        assert 0.0 <= lo <= m <= hi
    res = seqlab.evaluate(r.run_dir, baselines=False).to_json()
    assert np.isfinite(res["scores"]["gru (seqlab, K=1)"]["h6"]["mase"])
