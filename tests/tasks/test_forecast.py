"""Forecasting (seqlab/tasks/forecast.py, forecast_data.py, forecast_family.py, seqlab forecast):
the bundled series, the scalings' round trip, windows and rolling origins that never look past
their origin, MASE / sMAPE / Diebold-Mariano on hand-computed cases, a tiny learning run on a sine
wave, the command line end to end, and bad inputs."""

import json
import math

import numpy as np
import pytest
import torch

import seqlab
from seqlab.cli import main
from seqlab.tasks.forecast import ForecastConfig, Forecaster
from seqlab.tasks.forecast_data import (SCALINGS, SERIES, Scaler, Series, WindowData, diebold_mariano, load_series,
                                        make_frame, mase, mase_scale, naive_forecasts, network_forecasts,
                                        seasonal_naive_forecasts, smape, window_origins, windows_at)
from seqlab.testing import one_line_error, snapshot

TINY = dict(preset="cpu-tiny", max_steps=3, eval_every=3, eval_batches=1, batch_size=4, warmup_steps=1, log_every=1)

# --------------------------------------------------------------------------- data


@pytest.mark.parametrize("name,n", [("sunspots", 309), ("sunspots-monthly", 3126), ("co2", 526), ("sp500", 5031),
                                    ("sp500-returns", 5030)])
def test_bundled_series_load(name, n):
    s = load_series(name)
    assert s.values.shape == (n,) and s.values.dtype == np.float64
    assert np.isfinite(s.values).all() and len(s.dates) == n
    assert s.dates == sorted(s.dates)
    if name != "sp500-returns":
        assert (s.values >= 0).all()
    if name == "co2":
        assert s.dates[0] == "1958-03-01" and s.dates[-1] == "2001-12-01"
        assert 310 < s.values.min() and s.values.max() < 375
    if name == "sunspots-monthly":
        assert s.dates[0] == "1749-01-01" and s.dates[-1] == "2009-06-01" and s.values[0] == 58.0
    assert SERIES[name].test_size < n


@pytest.mark.parametrize("mode", SCALINGS)
def test_scaling_round_trip(mode):
    rng = np.random.default_rng(0)
    y = 50 + np.cumsum(rng.normal(0.3, 1.0, 200))  # positive, trending
    sc = Scaler.fit(y[:120], mode, period=12)
    origins = window_origins(0, 200, 24, 6)
    w, before, _, fut = windows_at(y, origins, 24, 6)
    z = sc.targets(w, fut)
    np.testing.assert_allclose(sc.invert(w, z), fut, rtol=1e-10, atol=1e-9)
    x = sc.inputs(w, before)
    assert x.shape == (len(origins), 24) and np.isfinite(x).all()
    back = Scaler.from_dict(json.loads(json.dumps(sc.to_dict())))
    np.testing.assert_allclose(back.targets(w, fut), z)
    if mode == "standard":  # the training part is standardised exactly
        np.testing.assert_allclose(sc.inputs(y[None, :120])[0].mean(), 0, atol=1e-12)
        np.testing.assert_allclose(sc.inputs(y[None, :120])[0].std(), 1, atol=1e-12)


def test_scaler_refuses_log_of_nonpositive_and_constant():
    with pytest.raises(ValueError, match="positive values"):
        Scaler.fit(np.array([1.0, 0.0, 2.0]), "log-relative")
    with pytest.raises(ValueError, match="constant series"):
        Scaler.fit(np.ones(20), "standard")


def _sine_series(n=400, period=20, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return Series("sine", 10 + np.sin(2 * np.pi * t / period) + noise * rng.normal(size=n))


def test_windows_never_cross_the_origin():
    y = _sine_series()
    frame = make_frame(y, period=20, horizon=6, test_size=80, stride=1)
    data = WindowData(frame, window=30, scaling="relative", val_size=40)
    tr, va = data.origins["train"], data.origins["val"]
    assert tr.max() + 6 <= data.train_end == frame.first_origin - 40
    assert va.min() >= data.train_end and va.max() + 6 <= frame.first_origin
    assert tr.min() - 30 - 1 >= 0
    # changing every value from the end of the training part on changes no training tensor
    # and not the scaler; changing values from the first test origin on changes no val tensor
    y2 = Series("sine", y.values.copy())
    y2.values[data.train_end:] += 100.0
    d2 = WindowData(make_frame(y2, period=20, horizon=6, test_size=80), window=30, scaling="relative", val_size=40)
    assert d2.scaler == data.scaler
    for a, b in zip(data.tensors["train"], d2.tensors["train"]):
        assert torch.equal(a, b)
    y3 = Series("sine", y.values.copy())
    y3.values[frame.first_origin:] *= 3.0
    d3 = WindowData(make_frame(y3, period=20, horizon=6, test_size=80), window=30, scaling="relative", val_size=40)
    for a, b in zip(data.tensors["val"], d3.tensors["val"]):
        assert torch.equal(a, b)


def test_rolling_forecasts_use_only_values_before_each_origin():
    y = _sine_series()
    frame = make_frame(y, period=20, horizon=6, test_size=60, stride=5)
    data = WindowData(frame, window=30, scaling="standard", val_size=30)
    torch.manual_seed(0)
    model = Forecaster(ForecastConfig(arch="gru", hidden_size=8, members=2, window=30, horizon=6)).eval()
    base = network_forecasts(model, data, frame.origins)
    k = 4
    o = int(frame.origins[k])
    y.values[o:] = -50.0  # the future of origin k (and of the earlier ones' targets) changed
    after = network_forecasts(model, data, frame.origins)
    for key in ("mean", "lower", "upper"):
        np.testing.assert_array_equal(base[key][: k + 1], after[key][: k + 1])
    assert not np.allclose(base["mean"][k + 1:], after["mean"][k + 1:])
    assert (base["lower"] <= base["mean"]).all() and (base["mean"] <= base["upper"]).all()


def test_baseline_forecasts_by_hand():
    y = Series("s", np.arange(30, dtype=float) ** 1.5)
    frame = make_frame(y, period=4, horizon=6, test_size=10, stride=2)
    o = frame.origins
    assert o.tolist() == [20, 22, 24]
    np.testing.assert_array_equal(naive_forecasts(frame)[:, 3], y.values[o - 1])
    sn = seasonal_naive_forecasts(frame)
    # h = 1..6 with m = 4: y[o-4], y[o-3], y[o-2], y[o-1], then y[o-4], y[o-3] again
    np.testing.assert_array_equal(sn[0], y.values[[16, 17, 18, 19, 16, 17]])


# --------------------------------------------------------------------------- metrics


def test_mase_and_smape_by_hand():
    y_train = np.array([1.0, 3.0, 2.0, 5.0])
    assert mase_scale(y_train, 1) == 2.0  # mean(|2|, |1|, |3|)
    assert mase_scale(y_train, 2) == 1.5  # mean(|2-1|, |5-3|)
    assert mase([4.0, 6.0], [5.0, 3.0], 2.0) == 1.0  # mean(1, 3) / 2
    assert math.isclose(mase([4.0, 6.0], [5.0, 3.0], 1.5), 4 / 3)
    # 200 * 1/9 and 200 * 3/9
    assert math.isclose(smape([4.0, 6.0], [5.0, 3.0]), (200 / 9 + 600 / 9) / 2)
    assert smape([0.0, 2.0], [0.0, 2.0]) == 0.0  # y = f = 0 counts 0
    assert smape([1.0], [-1.0]) == 200.0
    with pytest.raises(ValueError, match="scale 0"):
        mase_scale(np.array([2.0, 2.0, 2.0]), 1)


def test_diebold_mariano_by_hand():
    from scipy import stats

    e1 = np.array([1.0, -1.0, 2.0, 0.0, 1.0])
    e2 = np.array([0.0, 1.0, 1.0, 1.0, -1.0])
    # d = e1^2 - e2^2 = [1, 0, 3, -1, 0], dbar = 0.6, gamma_0 = 9.2 / 5 = 1.84
    r = diebold_mariano(e1, e2, h=1)
    dm = 0.6 / math.sqrt(1.84 / 5)
    assert math.isclose(r["mean_d"], 0.6) and math.isclose(r["dm"], dm)
    assert math.isclose(r["dm_hln"], dm * math.sqrt(4 / 5))  # (n + 1 - 2h + h(h-1)/n) / n = 4/5
    assert math.isclose(r["p_value"], 2 * stats.t.sf(dm * math.sqrt(0.8), 4))
    # h = 2: gamma_1 = (0.4*-0.6 - 0.6*2.4 - 2.4*1.6 + 1.6*0.6) / 5 = -0.912, V = 1.84 - 1.824 = 0.016
    r2 = diebold_mariano(e1, e2, h=2)
    dm2 = 0.6 / math.sqrt(0.016 / 5)
    assert math.isclose(r2["dm"], dm2, rel_tol=1e-9)
    assert math.isclose(r2["dm_hln"], dm2 * math.sqrt((5 + 1 - 4 + 2 / 5) / 5), rel_tol=1e-9)
    # an alternating differential makes V negative at h = 2: the test falls back to gamma_0
    a, b = np.array([2.0, 0, 2, 0, 2, 0]), np.array([0.0, 1, 0, 1, 0, 1])
    # d = [4, -1, 4, -1, 4, -1], dbar = 1.5, gamma_0 = 6.25, gamma_1 = -6.25 * 5/6: V = 6.25 - 10.42 < 0
    assert math.isclose(diebold_mariano(a, b, h=2)["dm"], 1.5 / math.sqrt(6.25 / 6))
    # symmetric, and equal forecasts are not different
    assert math.isclose(diebold_mariano(e2, e1, h=1)["dm"], -dm)
    assert diebold_mariano(e1, e1)["p_value"] == 1.0
    with pytest.raises(ValueError, match="1-D error arrays"):
        diebold_mariano(e1, e2[:4])


# --------------------------------------------------------------------------- model


def test_forecaster_shapes_and_mixture():
    torch.manual_seed(0)
    for arch in ("lstm", "gru", "transformer"):
        m = Forecaster(ForecastConfig(arch=arch, hidden_size=8, num_heads=2, d_ff=8, members=3, window=10, horizon=4))
        x = torch.randn(5, 10, 1)
        mu, log_s2 = m(x)
        assert mu.shape == log_s2.shape == (3, 5, 4)
        mean, sd = m.predict(x)
        # the mixture's variance: mean of (s2_k + mu_k^2) minus the squared mean
        var = (log_s2.exp() + mu ** 2).mean(0) - mu.mean(0) ** 2
        torch.testing.assert_close(mean, mu.mean(0))
        torch.testing.assert_close(sd ** 2, var)
        loss, metrics = m.loss({"x": x, "y": torch.randn(5, 4)})
        assert loss.ndim == 0 and math.isfinite(loss.item()) and "mse" in metrics
    with pytest.raises(ValueError, match=r"windows of shape \(B, 10, 1\)"):
        m(torch.randn(2, 9, 1))
    with pytest.raises(ValueError, match="arch"):
        ForecastConfig(arch="rnn")


def test_learns_a_sine_far_better_than_naive(tmp_path):
    csv = tmp_path / "sine.csv"
    s = _sine_series(n=360)
    csv.write_text("t,y\n" + "".join(f"{i},{v}\n" for i, v in enumerate(s.values)))
    r = seqlab.train("forecast", csv=str(csv), column="y", period=20, horizon=6, window=30, test_size=60,
                     val_size=40, arch="gru", hidden_size=16, members=1, max_steps=250, batch_size=32, lr=1e-2,
                     eval_every=250, eval_batches=1, warmup_steps=10, out=tmp_path / "run", progress=False)
    res = seqlab.evaluate(r.run_dir, baselines=False).to_json()
    net = res["scores"]["gru (seqlab, K=1)"]
    model, run = seqlab.load(r.run_dir)
    data = seqlab.runs.get_family("forecast").data_from_run(run, {})
    from seqlab.tasks.forecast_data import score

    naive = score(data.frame, naive_forecasts(data.frame))
    assert net["h6"]["mase"] < 0.25 * naive["h6"]["mase"], (net, naive)
    assert net["h1"]["mase"] < 0.5 * naive["h1"]["mase"], (net, naive)


# --------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fc") / "run"
    assert main(["train", "forecast", "--series", "sunspots", "--arch", "gru", "--out", str(out), "--quiet",
                 "--preset", "cpu-tiny", "--max-steps", "3", "--eval-every", "3", "--eval-batches", "1",
                 "--batch-size", "4", "--warmup-steps", "1"]) == 0
    return out


def test_cli_forecast_and_eval(tiny_run, tmp_path, capsys):
    capsys.readouterr()
    png = tmp_path / "f.png"
    assert main(["forecast", str(tiny_run), "--horizon", "5", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "5-step forecast (gru) after 2008-07-01" in out and "2013-07-01" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["forecast", str(tiny_run), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert len(js["mean"]) == 12 and all(lo <= m <= hi for lo, m, hi in zip(js["lower"], js["mean"], js["upper"]))
    assert main(["eval", str(tiny_run), "--arima-seconds", "0", "--quiet"]) == 0
    table = capsys.readouterr().out
    for row in ("gru (seqlab, K=1)", "naive", "seasonal naive (m=11)", "ARIMA (AIC)", "ETS (AIC)", "Diebold-Mariano"):
        assert row in table
    assert "MASE@12" in table and "49 rolling origins from 1949-07-01" in table


def test_cli_bad_horizon_and_other_family(tiny_run, tmp_path, capsys):
    before = snapshot(tiny_run)
    png = tmp_path / "keep.png"
    png.write_bytes(b"good")
    assert "trained horizon" in one_line_error(capsys, ["forecast", str(tiny_run), "--horizon", "13", "--png",
                                                        str(png)])
    assert "--horizon" in one_line_error(capsys, ["forecast", str(tiny_run), "--horizon", "0"])
    assert png.read_bytes() == b"good" and snapshot(tiny_run) == before
    other = tmp_path / "lm"
    assert main(["train", "lstm", "--preset", "cpu-tiny", "--max-steps", "1", "--eval-every", "1",
                 "--eval-batches", "1", "--batch-size", "2", "--out", str(other), "--quiet"]) == 0
    capsys.readouterr()
    err = one_line_error(capsys, ["forecast", str(other)])
    assert "forecast" in err and "'charlm' run" in err


def _csv(tmp_path, text, name="d.csv"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_cli_bad_inputs(tmp_path, capsys):
    good = "date,y\n" + "".join(f"2000-01-{1 + i % 28:02d},{i}\n" for i in range(5))
    cases = [
        (["--series", "moon"], "series"),
        (["--csv", str(tmp_path / "none.csv"), "--column", "y"], "no such file"),
        (["--csv", str(tmp_path), "--column", "y"], "not a file"),
        (["--csv", _csv(tmp_path, "a,b\n1,2\n" * 100, "ab.csv"), "--column", "y"], "--column: expected a column"),
        (["--csv", _csv(tmp_path, "y\n1\n2\nabc\n" + "3\n" * 100, "nn.csv"), "--column", "y"], "numeric values"),
        (["--csv", _csv(tmp_path, "x,y\n1,1\n2,\n" + "3,3\n" * 100, "gap.csv"), "--column", "y"], "empty cell"),
        (["--csv", _csv(tmp_path, "y\n" + "1.5\n" * 20, "short.csv"), "--column", "y"], "at least"),
        (["--csv", _csv(tmp_path, good, "g.csv"), "--column", "y", "--date", "when"], "--date"),
        (["--csv", _csv(tmp_path, "", "empty.csv"), "--column", "y"], "a readable CSV file"),
        (["--horizon", "0"], "horizon"),
        (["--column", "y"], "--csv"),
    ]
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81y\n\x80\x81\n")
    cases.append((["--csv", str(tmp_path / "bin.csv"), "--column", "y"], "--csv"))
    before = snapshot(tmp_path)
    for extra, expect in cases:
        err = one_line_error(capsys, ["train", "forecast", "--out", str(tmp_path / "run"), "--quiet", *extra])
        assert expect in err, (extra, err)
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()


def test_tour_part_quick(tmp_path):
    from seqlab.tasks.forecast_tour import forecast
    from seqlab.tour.context import TourContext
    from seqlab.viz.report import Report

    ctx = TourContext(out=tmp_path, quick=True, progress=False, report=Report("t"))
    sec = ctx.report.section("Time series")
    line = forecast(ctx, sec)
    assert line.startswith("forecast: sunspots MASE@12:") and "ARIMA" in line
    assert {"table", "equation", "code", "figure"} <= set(sec.kinds())
    assert (tmp_path / "forecast_sunspots.png").is_file() and (tmp_path / "runs" / "forecast" / "run.json").is_file()
