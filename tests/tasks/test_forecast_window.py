"""The window scaling of the forecasters (seqlab/tasks/forecast_data.py ``Scaler``, reversible
instance normalisation): every window at its own mean and sd, the round trip, invariance to the
series' level and amplitude, the floor on a flat window, monotone inverse, and a tiny run that
saves, reloads and forecasts with it from the command line."""

import json

import numpy as np
import pytest

import seqlab
from seqlab.cli import main
from seqlab.tasks.forecast_data import WINDOW_FLOOR, Scaler, window_origins, windows_at


def _cycles(n=200, seed=0):
    """A cyclic series whose level and amplitude grow over time (the shift the scaling is for)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (1 + t / 50) * (40 + 30 * np.sin(2 * np.pi * t / 11)) + rng.normal(size=n)


def test_each_window_at_its_own_mean_and_sd_and_the_round_trip():
    y = _cycles()
    sc = Scaler.fit(y[:120], "window", period=11)
    origins = window_origins(0, len(y), 16, 12)
    w, before, _, fut = windows_at(y, origins, 16, 12)
    x = sc.inputs(w, before)
    np.testing.assert_allclose(x.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(x.std(axis=1), 1.0, rtol=1e-12)
    # targets: z = (y - m_w) / s_w with the input window's own m_w, s_w
    m, s = w.mean(axis=1, keepdims=True), w.std(axis=1, keepdims=True)
    z = sc.targets(w, fut)
    np.testing.assert_allclose(z, (fut - m) / s, rtol=1e-12)
    np.testing.assert_allclose(sc.invert(w, z), fut, rtol=1e-12)
    back = Scaler.from_dict(json.loads(json.dumps(sc.to_dict())))
    assert back == sc and back.mode == "window"


def test_a_shifted_and_stretched_series_gives_the_same_network_inputs_and_targets():
    """What the network sees does not depend on the level or amplitude: y and 7 + 3 y give the same
    inputs and targets; the forecasts map back to the shifted and stretched units."""
    y = _cycles()
    w, before, _, fut = windows_at(y, window_origins(0, len(y), 16, 12), 16, 12)
    a, b = Scaler.fit(y[:120], "window"), Scaler.fit(7 + 3 * y[:120], "window")
    np.testing.assert_allclose(a.inputs(w, before), b.inputs(7 + 3 * w, 7 + 3 * before), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.targets(w, fut), b.targets(7 + 3 * w, 7 + 3 * fut), rtol=1e-10, atol=1e-12)
    z = a.targets(w, fut)
    np.testing.assert_allclose(b.invert(7 + 3 * w, z), 7 + 3 * fut, rtol=1e-10)


def test_a_flat_window_is_not_blown_up_and_bounds_stay_in_order():
    sc = Scaler.fit(_cycles()[:120], "window")
    flat = np.full((1, 16), 5.0)
    x = sc.inputs(flat)
    assert np.isfinite(x).all() and (x == 0).all()
    z = sc.targets(flat, np.full((1, 3), 5.0 + sc.scale))  # one training sd above a flat window
    np.testing.assert_allclose(z, 1.0 / WINDOW_FLOOR)  # divided by the floor, not by 0
    zs = np.linspace(-4, 4, 81)[None, :]
    v = sc.invert(np.tile(_cycles()[:16], (1, 1)), zs)
    assert (np.diff(v[0]) > 0).all()  # monotone: quantiles stay quantiles


def test_cli_window_scaling_trains_saves_and_forecasts(tmp_path, capsys):
    csv = tmp_path / "cycles.csv"
    csv.write_text("t,y\n" + "".join(f"{i},{v}\n" for i, v in enumerate(_cycles(160))))
    out = tmp_path / "run"
    assert main(["train", "forecast", "--csv", str(csv), "--column", "y", "--scaling", "window", "--period", "11",
                 "--horizon", "6", "--window", "16", "--test-size", "24", "--val-size", "12", "--preset", "cpu-tiny",
                 "--max-steps", "3", "--eval-every", "3", "--eval-batches", "1", "--batch-size", "4",
                 "--warmup-steps", "1", "--out", str(out), "--quiet"]) == 0
    saved = json.loads(next(out.rglob("forecast_scaler.json")).read_text())
    assert saved["mode"] == "window"
    model, run = seqlab.load(out)
    assert run.extras["scaler"].mode == "window"
    from seqlab.tasks.forecast_family import forecast

    f = forecast(out, horizon=6)
    assert len(f["mean"]) == 6 and all(lo <= m <= hi for lo, m, hi in zip(f["lower"], f["mean"], f["upper"]))
    capsys.readouterr()


def test_window_scaling_is_listed_in_the_one_line_refusal(tmp_path, capsys):
    from seqlab.testing import one_line_error

    err = one_line_error(capsys, ["train", "forecast", "--scaling", "per-window", "--quiet", "--out",
                                  str(tmp_path / "run")])
    assert "window" in err and "per-window" in err
    with pytest.raises(ValueError, match="scaling"):
        Scaler.fit(np.arange(10.0), "per-window")
