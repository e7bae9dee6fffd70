"""Time-series forecasting (``seqlab.tasks.forecast``) as a family of the registry:
``seqlab train forecast [--series sunspots|sunspots-monthly|co2|sp500|sp500-returns]
[--csv FILE --column NAME [--date COL]] [--arch lstm|gru|transformer] [--horizon 12] [--window W]
[--augment sunspots-monthly] [--refit]`` (augment: the yearly sunspots' training windows plus those
of the monthly series' 12 phase-shifted annual means, months before the training part's end only;
refit: the number of steps chosen on the validation block, then a fresh network trained on the
validation block too, ``ForecastFamily.train_config_for``),
``seqlab eval RUN`` (rolling origin over the held-out tail: MASE and sMAPE at 1, 6 and 12 steps of
the network, naive, seasonal naive, ARIMA by AIC and ETS, with Diebold-Mariano tests against the
random walk), ``seqlab forecast RUN --horizon 12 [--png forecast.png] [--json]``, and from Python::

    result = seqlab.train("forecast", series="co2", arch="lstm")
    print(seqlab.evaluate(result.run_dir).table())
    from seqlab.tasks.forecast_family import forecast
    out = forecast(result.run_dir, horizon=12)         # {"mean", "lower", "upper", "dates", ...}

Checkpoints carry ``forecast_scaler.json`` (the scaling fitted on the training part); run.json
names the series (a bundled name, or the CSV's path, column and sha256) and the split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqlab.runs import Family, RunRecord, register
from seqlab.tasks.forecast import ForecastConfig, Forecaster
from seqlab.validation import check_choice, check_float, check_int, fail

SCALER_FILE = "forecast_scaler.json"
SERIES_NAMES = ("sunspots", "sunspots-monthly", "co2", "sp500", "sp500-returns")  # forecast_data.SERIES
AUGMENT_SOURCES = ("sunspots-monthly",)  # the monthly series --augment takes
MONTHLY_COMPANION = {"sunspots": "sunspots-monthly"}  # the bundled yearly series that have one


@dataclass(frozen=True)
class ForecastData:
    """The series a forecast run learns, and how it is cut.

    Attributes:
        series: a bundled series: sunspots (yearly), sunspots-monthly, co2 (Mauna Loa, monthly),
            sp500 (daily prices) or sp500-returns (daily log returns); not used with --csv
        csv: a CSV file whose column --column is the series (rows in time order)
        column: the CSV column to forecast (with --csv)
        date: the CSV's date column (optional: the plots' time axis)
        horizon: forecast steps H (the network forecasts all H at once)
        window: input steps W (none: the series' default)
        scaling: standard, relative (differences), log-relative, seasonal (correction to the
            seasonal naive), sqrt (standardised square root, for non-negative counts such as
            sunspots) or window (each window by its own mean and sd, RevIN: for a level or
            amplitude that moves) (none: the series' default; standard for a CSV)
        period: seasonal period m of the seasonal naive, the MASE scale and seasonal ARIMA/ETS
            (none: the series' default; 1 for a CSV)
        test_size: values in the held-out tail of forecast origins (none: the series' default; a CSV: a fifth)
        val_size: values in the validation block before the tail (none: the series' default; a CSV: a tenth)
        stride: steps between forecast origins (none: the series' default; 1 for a CSV)
        augment: a bundled monthly series (sunspots-monthly) whose 12 phase-shifted annual means add
            training windows to a yearly series with dates (sunspots, or a CSV with --date); only its
            months before the training part's end are used; validation and test windows stay the series' own
            (none: no augmentation)
        refit: after choosing the number of steps on the validation block, train again on it too.
            The first run holds the validation block out and finds the step of its lowest
            validation loss s*; then a fresh network (the same seed, so the same initial
            weights) on every window before the held-out tail, the validation block's included,
            for s* steps (Goodfellow et al. 2016, Algorithm 7.2). The run saved is the second; its
            scaling is fitted on all the values before the tail, and run.json keeps s* and its
            validation loss. The validation block's windows stay the run's val split, where the
            second network has trained: its validation loss there is a fit, not a test
    """

    series: str = "sunspots"
    csv: str | None = None
    column: str | None = None
    date: str | None = None
    horizon: int = 12
    window: int | None = None
    scaling: str | None = None
    period: int | None = None
    test_size: int | None = None
    val_size: int | None = None
    stride: int | None = None
    augment: str | None = None
    refit: bool = False


@dataclass(frozen=True)
class ForecastEvaluation:
    """Options of ``seqlab eval`` for a forecast run.

    Attributes:
        baselines: also run naive, seasonal naive, ARIMA (AIC) and ETS on the same origins
        arima_seconds: time allowed for ARIMA's order search (the orders are tried smallest first)
        level: coverage of the prediction intervals whose hit rate is reported
    """

    baselines: bool = True
    arima_seconds: float = 60.0
    level: float = 0.95


@dataclass
class ForecastRunData:
    """A forecast run's data: options, series, frame (rolling origins) and windows."""

    options: ForecastData
    resolved: dict
    series: Any
    frame: Any
    windows: Any
    csv_sha256: str | None = None
    validation_pass: dict | None = None  # a refit run's first pass: {"step": s*, "val_loss", "steps"}

    def info(self) -> dict:
        o = self.options
        out = {"kind": "csv" if o.csv else "bundled", "series": self.series.name, "values": len(self.series),
               "series_sha256": self.series.fingerprint(), **self.resolved}
        if o.augment is not None:
            out["augmented_windows"] = self.windows.augmented
        if self.validation_pass is not None:
            out["validation_pass"] = self.validation_pass
        if o.csv:
            out.update(csv=str(Path(o.csv).resolve()), column=o.column, date=o.date, csv_sha256=self.csv_sha256)
        return out


@dataclass
class ForecastResult:
    """``seqlab eval``'s result: the rolling-origin scores of the network and the baselines."""

    series: str
    origins: int
    first_origin: str
    scores: dict
    coverage: dict
    level: float
    dm: dict
    reference: str
    fitted: dict

    def table(self) -> str:
        from seqlab.tasks.forecast_data import format_table

        lines = [format_table(self.scores, title=f"{self.series}: {self.origins} rolling origins from "
                              f"{self.first_origin} (MASE: scaled by the in-sample seasonal naive MAE)")]
        if self.coverage:
            lines.append(f"network {int(100 * self.level)}% interval coverage: " + ", ".join(
                f"{k} {100 * v:.0f}%" for k, v in self.coverage.items()))
        for name, info in self.fitted.items():
            if "order" in info:
                lines.append(f"{name}: order {tuple(info['order'])} seasonal {tuple(info['seasonal_order'])}, "
                             f"AIC {info['aic']:.1f} ({info['fits']} of {info.get('grid', '?')} orders fitted)")
            elif "form" in info:
                lines.append(f"{name}: {info['form']}, AIC {info['aic']:.1f}")
        if self.dm:
            lines.append(f"Diebold-Mariano (HLN) against {self.reference}, squared error "
                         "(negative: more accurate than it):")
            for name, r in self.dm.items():
                lines.append(f"  {name:<24} " + "  ".join(
                    f"{k}: {v['dm_hln']:+.2f} (p={v['p_value']:.3f})" for k, v in r.items()))
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"series": self.series, "origins": self.origins, "first_origin": self.first_origin,
                "scores": self.scores, "coverage": self.coverage, "level": self.level, "dm": self.dm,
                "reference": self.reference, "fitted": self.fitted}


def _resolve(options: ForecastData, n: int, spec) -> dict:
    """The run's cut of the series: every option filled from the series' defaults."""
    from seqlab.tasks.forecast_data import SCALINGS

    o = options
    check_int(o.horizon, "horizon", minimum=1, maximum=1000)
    d = {"horizon": o.horizon}
    if spec is not None:
        defaults = dict(window=spec.window, scaling=spec.scaling, period=spec.period, test_size=spec.test_size,
                        val_size=spec.val_size, stride=spec.stride, series_kind=spec.kind)
    else:
        defaults = dict(window=24, scaling="standard", period=1, test_size=max(o.horizon, n // 5),
                        val_size=max(o.horizon, n // 10), stride=1, series_kind="level")
    for name in ("window", "scaling", "period", "test_size", "val_size", "stride"):
        v = getattr(o, name)
        d[name] = defaults[name] if v is None else v
    d["series_kind"] = defaults["series_kind"]
    check_int(d["window"], "window", minimum=2, maximum=10_000)
    check_choice(d["scaling"], "scaling", SCALINGS)
    check_int(d["period"], "period", minimum=1, maximum=10_000)
    check_int(d["test_size"], "test_size", minimum=1)
    check_int(d["val_size"], "val_size", minimum=1)
    check_int(d["stride"], "stride", minimum=1)
    if d["test_size"] < d["horizon"]:
        fail("test_size", f"at least the horizon ({d['horizon']})", d["test_size"])
    if d["val_size"] < d["horizon"]:
        fail("val_size", f"at least the horizon ({d['horizon']})", d["val_size"])
    if o.augment is not None:
        check_choice(o.augment, "augment", AUGMENT_SOURCES)
        if spec is not None and o.series not in MONTHLY_COMPANION:
            fail(f"--augment {o.augment}", "a yearly series with a monthly companion (--series sunspots, or a "
                 "yearly CSV with --date)", f"--series {o.series}")
    d["augment"] = o.augment
    if not isinstance(o.refit, bool):
        fail("refit", "True or False", repr(o.refit))
    d["refit"] = o.refit
    need = d["window"] + 1 + d["horizon"] + d["val_size"] + d["test_size"]
    need = max(need, d["period"] + 1 + d["val_size"] + d["test_size"])
    if n < need:
        fail("series", f"at least {need} values (window {d['window']} + 1 + horizon {d['horizon']} for one "
             f"training window, + validation {d['val_size']} + held-out tail {d['test_size']})", f"{n} values")
    return d


def make_forecast_data(options: ForecastData, expect_sha: str | None = None) -> ForecastRunData:
    from seqlab.tasks.forecast_data import SERIES, WindowData, file_sha256, load_csv, load_series, make_frame

    if not isinstance(options, ForecastData):
        fail("forecast data", "a ForecastData", type(options).__name__)
    sha = None
    if options.csv is not None or options.column is not None or options.date is not None:
        if options.csv is None:
            fail("--column/--date", "a CSV file given with --csv", "no --csv")
        if options.column is None:
            fail("--column", "the name of the CSV column to forecast", "none")
        series = load_csv(options.csv, options.column, options.date)
        sha = file_sha256(options.csv)
        if expect_sha is not None and sha != expect_sha:
            fail("--csv", f"the run's CSV (sha256 {expect_sha[:12]}...)", f"{options.csv!r} with sha256 {sha[:12]}...")
        spec = None
    else:
        check_choice(options.series, "series", SERIES_NAMES)
        series = load_series(options.series)
        spec = SERIES[options.series]
    r = _resolve(options, len(series), spec)
    frame = make_frame(series, period=r["period"], horizon=r["horizon"], test_size=r["test_size"],
                       stride=r["stride"], kind=r["series_kind"])
    monthly = load_series(r["augment"]) if r["augment"] is not None else None
    windows = WindowData(frame, window=r["window"], scaling=r["scaling"], val_size=r["val_size"], monthly=monthly,
                         refit=r["refit"])
    return ForecastRunData(options, r, series, frame, windows, sha)


class ForecastFamily(Family):
    name = "forecast"
    description = ("time-series forecasting: seqlab's LSTM/GRU/Transformer, direct multi-step with a "
                   "Gaussian head (sunspots, CO2, S&P 500, any CSV column)")
    model_class = Forecaster
    config_class = ForecastConfig
    data_class = ForecastData
    evaluate_class = ForecastEvaluation
    presets = {
        "cpu-tiny": dict(hidden_size=8, members=1, num_heads=2, d_ff=16),
        "cpu-small": dict(hidden_size=32, members=5),
    }
    default_preset = "cpu-small"
    # what `seqlab train forecast` does with no options (a CO2 GRU of this size: 61-78 s on a shared
    # 2-core CPU in benchmarks/bench_forecast.py)
    train_defaults = dict(max_steps=600, batch_size=64, lr=3e-3, min_lr=3e-4, warmup_steps=30, eval_every=100,
                          eval_batches=4, clip_norm=1.0)
    data_fields = ("window", "horizon", "input_size")
    resume_data_options = ("csv",)
    metric = "validation beta-NLL (scaled units, summed over the ensemble)"
    views = ("forecast",)

    def make_data(self, options: ForecastData, fields, train_config) -> ForecastRunData:
        return make_forecast_data(options)

    def train_config_for(self, data: ForecastRunData, fields, train_config):
        """A refit run (``refit=True``) first trains the same network with the validation block
        held out (a run of its own in a temporary directory, with these settings); the step of
        its lowest validation loss s* becomes this run's length. This run then evaluates and
        saves once, at s*, so its checkpoint is the network after s* steps."""
        if not data.resolved["refit"]:
            return train_config
        import dataclasses
        import tempfile

        from seqlab.runs import train

        # every config field by name (the preset's too), the data options without refit
        config = dataclasses.asdict(self.make_config({**self.config_from_data(data, train_config), **fields}))
        model = {k: v for k, v in config.items() if k not in self.data_fields}
        held_out = {**dataclasses.asdict(data.options), "refit": False}
        with tempfile.TemporaryDirectory(prefix="seqlab-refit-") as tmp:
            first = train(self.name, out=Path(tmp) / "validation", progress=False, **model, **held_out,
                          **train_config.to_dict())
        if first.stopped == "interrupted":  # Ctrl-C during the first pass: nothing to save yet
            raise KeyboardInterrupt
        # every run that was not interrupted ends with an evaluation after at least one step
        evals = [(r["loss"], r["step"]) for r in first.history if r.get("split") == "val" and r["step"] > 0]
        val_loss, step = min(evals)  # the earliest step of the lowest loss
        data.validation_pass = {"step": step, "val_loss": val_loss, "steps": first.steps}
        return dataclasses.replace(train_config, max_steps=step, eval_every=step, patience=None)

    def data_from_run(self, run: RunRecord, options) -> ForecastRunData:
        saved = run.saved_data()
        names = ("horizon", "window", "scaling", "period", "test_size", "val_size", "stride")
        missing = [k for k in names + ("kind", "series_sha256") if k not in saved]
        if missing:
            fail(f"run {run.dir}", "a run.json describing a forecast series", "missing " + ", ".join(missing))
        cut = {k: saved[k] for k in names}
        cut["augment"] = saved.get("augment")  # runs saved before the option have none
        cut["refit"] = saved.get("refit", False)
        if saved["kind"] == "csv":
            opts = ForecastData(csv=options.get("csv") or saved.get("csv"), column=saved.get("column"),
                                date=saved.get("date"), **cut)
            data = make_forecast_data(opts, expect_sha=saved.get("csv_sha256"))
        elif saved["kind"] == "bundled":
            data = make_forecast_data(ForecastData(series=saved.get("series"), **cut))
        else:
            fail(f"run {run.dir}", "a run.json of kind csv or bundled", repr(saved["kind"]))
        if data.series.fingerprint() != saved["series_sha256"]:
            fail("series", f"the run's values (sha256 {saved['series_sha256'][:12]}...)",
                 f"values with sha256 {data.series.fingerprint()[:12]}...")
        return data

    def training_data(self, data: ForecastRunData):
        return data.windows

    def files(self, data: ForecastRunData) -> dict[str, str]:
        return {SCALER_FILE: json.dumps(data.windows.scaler.to_dict())}

    def config_from_data(self, data: ForecastRunData, train_config) -> dict:
        return {"window": data.resolved["window"], "horizon": data.resolved["horizon"], "input_size": 1}

    def extras(self, run: RunRecord) -> None:
        from seqlab.tasks.forecast_data import Scaler

        try:
            d = json.loads(run.file(SCALER_FILE))
        except json.JSONDecodeError as exc:
            fail(f"checkpoint {run.checkpoint}", f"a JSON {SCALER_FILE}", f"malformed JSON ({exc.msg})")
        run.extras["scaler"] = Scaler.from_dict(d)

    # ---- use

    def _data(self, run: RunRecord, data=None) -> ForecastRunData:
        data = self.data_from_run(run, {}) if data is None else data
        # the saved scaler (fitted when the run was trained) is the one the network learned with
        data.windows.scaler = run.extras["scaler"]
        return data

    def evaluate(self, model: Forecaster, run: RunRecord, options: ForecastEvaluation, data=None,
                 precomputed: dict | None = None) -> ForecastResult:
        """Rolling origin over the held-out tail; ``precomputed``: baselines already run on the
        same frame (``forecast_data.baselines``), so a benchmark fits them once per series."""
        from seqlab.tasks.forecast_data import baselines, coverage, dm_table, network_forecasts, reference_name, score

        if not isinstance(options.baselines, bool):
            fail("baselines", "True or False", repr(options.baselines))
        check_float(options.arima_seconds, "arima_seconds", minimum=0.0)
        check_float(options.level, "level", minimum=0.0, maximum=1.0, open_min=True, open_max=True)
        data = self._data(run, data)
        frame = data.frame
        net = network_forecasts(model, data.windows, frame.origins, options.level)
        label = f"{run.config.arch} (seqlab, K={run.config.members})"
        forecasts = {label: net["mean"]}
        fitted: dict = {}
        if options.baselines:
            base = precomputed if precomputed is not None else baselines(frame, arima_seconds=options.arima_seconds)
            for name, (f, info) in base.items():
                forecasts[name] = f
                if info:
                    fitted[name] = info
        scores = {name: score(frame, f) for name, f in forecasts.items()}
        ref = reference_name(frame)
        dm = dm_table(frame, forecasts, ref) if ref in forecasts else {}
        dates = data.series.dates
        first = dates[frame.first_origin] if dates else f"index {frame.first_origin}"
        return ForecastResult(data.series.name, len(frame.origins), first, scores,
                              coverage(frame, net["lower"], net["upper"]), options.level, dm, ref, fitted)

    def report(self, model: Forecaster, run: RunRecord) -> list[str]:
        lines = self.evaluate(model, run, ForecastEvaluation(baselines=False)).table().splitlines()
        return lines + [f"(baselines: seqlab eval {run.dir})"]

    def forecast(self, model: Forecaster, run: RunRecord, horizon: int | None = None, level: float = 0.95) -> dict:
        """The forecast from the end of the series (all values observed), with the interval of
        coverage ``level``. The network forecasts its trained horizon H at once; a longer one is
        refused (it is not extended recursively)."""
        import numpy as np

        H = run.config.horizon
        horizon = H if horizon is None else horizon
        if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= H:
            fail("--horizon", f"a whole number of steps from 1 to {H} (the run's trained horizon; "
                 "train with --horizon N for a longer one)", repr(horizon))
        check_float(level, "--level", minimum=0.0, maximum=1.0, open_min=True, open_max=True)
        from seqlab.tasks.forecast_data import network_forecasts

        data = self._data(run)
        y = data.series.values
        n = len(y)
        out = network_forecasts(model, data.windows, np.array([n], dtype=np.int64), level)
        dates = data.series.dates
        return {"series": data.series.name, "arch": run.config.arch, "horizon": horizon, "level": level,
                "last_date": dates[-1] if dates else None, "dates": _future_dates(dates, horizon),
                "mean": out["mean"][0, :horizon].tolist(), "lower": out["lower"][0, :horizon].tolist(),
                "upper": out["upper"][0, :horizon].tolist(),
                "history": y[-min(n, max(4 * H, run.config.window)):].tolist(),
                "history_dates": dates[-min(n, max(4 * H, run.config.window)):] if dates else None}


def _future_dates(dates: list[str] | None, horizon: int) -> list[str] | None:
    """The next ``horizon`` dates after the series' end, where pandas can tell its frequency."""
    if not dates or len(dates) < 3:
        return None
    import pandas as pd

    import warnings

    idx = pd.DatetimeIndex(dates[-12:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas 3 warns that infer_freq will return an offset
        freq = pd.infer_freq(idx)
    if freq is None:
        if len(set(pd.DatetimeIndex(dates[-60:]).dayofweek)) <= 5:
            freq = "B"  # trading days
        else:
            return None
    return [d.strftime("%Y-%m-%d") for d in pd.date_range(idx[-1], periods=horizon + 1, freq=freq)[1:]]


def forecast(run_dir: str | Path, *, horizon: int | None = None, level: float = 0.95) -> dict:
    """Python API of ``seqlab forecast``: the forecast of the forecast run at ``run_dir`` from
    the end of its series."""
    from seqlab import runs

    model, run = runs.load(run_dir)
    if run.family != ForecastFamily.name:
        fail("forecast", "a run of the forecast family", f"a {run.family!r} run")
    return runs.get_family("forecast").forecast(model, run, horizon, level)


register(ForecastFamily())
