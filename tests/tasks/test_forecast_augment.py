"""Augmenting the yearly sunspots' training windows with the 12 phase-shifted annual means of the
monthly sunspots (seqlab/tasks/forecast_data.py ``phase_annual_means``, ``monthly_phase_series``,
``WindowData(..., monthly=...)``; the family's ``--augment``): the means by hand, the rule that no
augmented window holds or targets a month at or after the training part's end, the training split
alone growing, and the option's bad inputs (one line each)."""

import json

import numpy as np
import pytest
import torch

import seqlab
from seqlab.tasks.forecast_data import Series, WindowData, make_frame, monthly_phase_series, phase_annual_means
from seqlab.testing import one_line_error, snapshot


def test_phase_annual_means_by_hand():
    x = np.zeros(30)
    x[14] = 12.0  # one spike: a block's mean is 1 where it holds month 14, else 0
    a = phase_annual_means(x, 30)
    assert len(a) == 12
    # k = 0: blocks 0..11, 12..23 (24..35 is incomplete)
    np.testing.assert_allclose(a[0], [0.0, 1.0])
    # k = 3: blocks 3..14 (holds 14), 15..26
    np.testing.assert_allclose(a[3], [1.0, 0.0])
    # k = 6: blocks 6..17 (holds 14), 18..29 (ends at the last value)
    np.testing.assert_allclose(a[6], [1.0, 0.0])
    # k = 7: block 7..18 only (19..30 would need x[30])
    np.testing.assert_allclose(a[7], [1.0])
    # end = 29: the block 18..29 of k = 6 needs x[29] and goes
    np.testing.assert_allclose(phase_annual_means(x, 29)[6], [1.0])
    # a ramp: A_k[j] = k + 12 j + 5.5, the mean of its block's indices
    r = phase_annual_means(np.arange(40.0), 40)
    for k in range(12):
        np.testing.assert_allclose(r[k], k + 12 * np.arange((40 - k) // 12) + 5.5)


def _pair(first_month_year=1749, years=(1700, 1830), nan_from=None):
    """A yearly series with dates (July 1st, as the bundled one) and a monthly companion whose
    value is 100 + its month index (so an annual mean names its block: last index = mean - 94.5),
    the yearly values from the year 1749 on equal to its calendar-year means."""
    n_m = 12 * (years[1] - first_month_year)
    m = 100.0 + np.arange(n_m)
    if nan_from is not None:
        m[nan_from:] = np.nan
    m_dates = [f"{first_month_year + i // 12:04d}-{i % 12 + 1:02d}-01" for i in range(n_m)]
    yrs = np.arange(*years)
    y = np.where(yrs >= first_month_year, 100.0 + 12 * (yrs - first_month_year) + 5.5,
                 100.0 + 5.0 * (yrs - years[0]) % 60)
    return (Series("yearly", y, [f"{t}-07-01" for t in yrs]), Series("monthly", m, m_dates))


def test_augmented_windows_never_hold_or_target_a_month_at_or_after_the_cut():
    W, H = 8, 6
    yearly, _ = _pair()
    frame = make_frame(yearly, period=11, horizon=H, test_size=30)  # first origin 100 (year 1800)
    train_end = frame.first_origin - 12  # 88: the yearly training part is 1700..1787
    cut_year = int(yearly.dates[train_end - 1][:4]) + 1
    assert cut_year == 1788
    cut = 12 * (cut_year - 1749)  # the index of 1788-01 in the monthly series
    # every month at or after the cut is NaN: one leaked into a window would show
    yearly, monthly = _pair(nan_from=cut)
    data = WindowData(frame, window=W, scaling="standard", val_size=12, monthly=monthly)
    assert data.train_end == train_end
    n_own = len(data.origins["train"])
    x, z = data.tensors["train"]
    assert data.augmented > 0 and len(x) == len(z) == n_own + data.augmented
    assert torch.isfinite(x).all() and torch.isfinite(z).all()
    sc = data.scaler
    # standard scaling: x = (v - mu) / s for inputs, z = (v - mu) / s for targets: the raw values back
    v_in = x[n_own:, :, 0].double().numpy() * sc.scale + sc.loc
    v_out = z[n_own:].double().numpy() * sc.scale + sc.loc
    last_in, last_out = v_in - 94.5, v_out - 94.5  # the last month index of each value's block
    assert last_in.max() < cut and last_out.max() < cut
    # and the cut is tight: the block ending just before it (Dec 1787) is a target
    assert np.isclose(last_out.max(), cut - 1)
    # every value is a whole block's mean (last index integral) and targets follow their inputs by whole years
    np.testing.assert_allclose(last_in, np.round(last_in), atol=1e-4)
    np.testing.assert_allclose(np.diff(v_out, axis=1), 12.0, atol=1e-4)
    np.testing.assert_allclose(v_out[:, 0] - v_in[:, -1], 12.0, atol=1e-4)
    # 12 phases, each a window for every origin with inputs and targets inside it
    lens = [len(a) for a in monthly_phase_series(yearly, train_end, monthly)]
    assert data.augmented == sum(max(0, L - W - H) for L in lens)
    # the validation windows and the scaler are the yearly series' own
    plain = WindowData(frame, window=W, scaling="standard", val_size=12)
    assert plain.scaler == sc and plain.augmented == 0
    for k in ("val",):
        assert torch.equal(plain.tensors[k][0], data.tensors[k][0]) and torch.equal(plain.tensors[k][1],
                                                                                  data.tensors[k][1])
    assert torch.equal(plain.tensors["train"][0], x[:n_own])


def test_monthly_phase_series_refusals():
    yearly, monthly = _pair()
    with pytest.raises(ValueError, match=r"^--augment: expected a series with dates"):
        monthly_phase_series(Series("y", yearly.values), 50, monthly)
    with pytest.raises(ValueError, match=r"^--augment: expected yearly values .*1700-07-01 followed by 1702-07-01$"):
        monthly_phase_series(Series("y", yearly.values, yearly.dates[:1] + yearly.dates[2:] + ["2000-07-01"]),
                             50, monthly)
    with pytest.raises(ValueError, match=r"^--augment yearly: expected monthly values"):
        monthly_phase_series(yearly, 50, Series("yearly", yearly.values, yearly.dates))
    # the cut (1750-01-01) leaves 12 months: enough; (1749-01-01) none
    assert max(len(a) for a in monthly_phase_series(yearly, 50, monthly)) == 1
    with pytest.raises(ValueError, match=r"^--augment monthly: expected 12 monthly values before 1749-01-01"):
        monthly_phase_series(yearly, 49, monthly)
    off = Series("yearly", yearly.values * 1.2, yearly.dates)
    with pytest.raises(ValueError, match=r"^--augment monthly: expected calendar-year means on the scale"):
        monthly_phase_series(off, 100, monthly)


def test_cli_augment_bad_inputs(tmp_path, capsys):
    from seqlab.tasks.forecast_data import load_series

    y = load_series("sunspots")
    yearly_csv = tmp_path / "yearly.csv"
    yearly_csv.write_text("date,v\n" + "".join(f"{d},{v * 3}\n" for d, v in zip(y.dates, y.values)))
    cases = [
        (["--series", "co2", "--augment", "sunspots-monthly"], "a yearly series with a monthly companion"),
        (["--augment", "moon"], "augment: expected one of 'sunspots-monthly'"),
        (["--csv", str(yearly_csv), "--column", "v", "--augment", "sunspots-monthly"], "a series with dates"),
        (["--csv", str(yearly_csv), "--column", "v", "--date", "date", "--augment", "sunspots-monthly"],
         "calendar-year means on the scale"),
    ]
    before = snapshot(tmp_path)
    for extra, expect in cases:
        err = one_line_error(capsys, ["train", "forecast", "--out", str(tmp_path / "run"), "--quiet", *extra])
        assert expect in err, (extra, err)
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()


def test_tiny_augmented_run_saves_reloads_and_evaluates(tmp_path):
    r = seqlab.train("forecast", series="sunspots", augment="sunspots-monthly", scaling="sqrt", arch="gru",
                     preset="cpu-tiny", max_steps=2, eval_every=2, eval_batches=1, batch_size=4, warmup_steps=1,
                     out=tmp_path / "run", progress=False)
    saved = json.loads((r.run_dir / "run.json").read_text())
    text = json.dumps(saved)
    assert '"augment": "sunspots-monthly"' in text and '"augmented_windows": 1765' in text
    res = seqlab.evaluate(r.run_dir, baselines=False).to_json()
    assert res["origins"] == 49 and np.isfinite(res["scores"]["gru (seqlab, K=1)"]["h12"]["mase"])
