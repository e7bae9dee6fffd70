r"""Time series for forecasting: loading, scaling, windows, rolling-origin evaluation, metrics,
baselines (naive, seasonal naive, ARIMA by AIC, exponential smoothing) and the Diebold-Mariano
test.

The series (all shipped with installed packages; ``SERIES``):

    sunspots          yearly mean sunspot numbers 1700-2008 (statsmodels ``sunspots``), 309 values
    sunspots-monthly  monthly mean sunspot numbers 1749-2009/06 (statsmodels ships them as
                      ``datasets/sunspots/src/sunspots_monthly.dat``; no loader: parsed here), 3126 values
    co2               Mauna Loa CO2 (statsmodels ``co2``), weekly 1958-2001 with gaps: monthly means
                      (``resample("MS").mean()``); the 5 months without a single weekly value
                      (1958-06, 1958-10, 1964-02..04) are filled by linear interpolation, 526 values
    sp500             S&P 500 daily adjusted close 1999-2018 (arch ``sp500``), 5031 values
    sp500-returns     its daily log returns in percent, r_t = 100 log(P_t / P_{t-1}), 5030 values
    a CSV column      ``load_csv(path, column, date=None)``

Scaling (``Scaler``), fitted on the training part only (the values before the first test origin):

    standard:        z_t = (y_t - mu) / s                 mu, s: mean and sd of the training part
    relative:        inputs  x_t = (dy_t - delta) / s_d   dy_t = y_t - y_{t-1}; delta, s_d: their mean, sd
                     targets z_{o,h} = (y_{o+h-1} - y_{o-1} - h delta) / s_d
                     (the change from the last observed value, with the mean drift taken out:
                     differencing, for trending series such as CO2)
    log-relative:    the same on log y (prices: the change of log price is the cumulative log return)
    seasonal:        inputs (y_t - mu) / s_m; targets z_{o,h} = (y_{o+h-1} - snaive_{o,h}) / s_m, the
                     correction to the seasonal naive forecast (s_m: sd of y_t - y_{t-m})
    sqrt:            z_t = (sqrt(y_t) - mu) / s             mu, s: mean and sd of sqrt(y) on the training part
                     (the variance-stabilising transform of counts such as sunspot numbers, whose
                     spread grows with their level; Box-Cox with lambda = 1/2). For non-negative
                     series only; back: y = max(mu + s z, 0)^2, the forecast of a non-negative series
    window:          z = (y - m_w) / s_w, inputs and targets alike, with m_w and s_w the mean and sd of
                     each input window itself (s_w at least 1e-3 s of the training part); back:
                     y = m_w + s_w z. Reversible instance normalisation (RevIN, Kim et al. 2022,
                     without its learned affine map): the network sees every window at one level
                     and spread, so a level or amplitude outside the training part's (a shift of
                     the distribution) is not an extrapolation for it

Every mapping back (``Scaler.invert``) is monotone non-decreasing in z, so quantiles (interval
bounds) map to quantiles. The point forecast mapped back is g^-1(mean of z): for the nonlinear
modes (log-relative, sqrt) that is the median of a symmetric forecast distribution, not its
mean (the forecast MASE and sMAPE, absolute errors, call for).

A window at forecast origin o (the number of values observed) is ``y[o-W:o]`` and its targets
``y[o:o+H]``; training windows have o + H <= the end of their split, so no target crosses it
(``window_origins``).

Augmentation of a yearly series by a monthly one (``WindowData(..., monthly=...)``; the yearly
sunspots by ``sunspots-monthly``): the 12 phase-shifted annual means of the monthly values x,

    A_k[j] = 1/12 sum_{i=0}^{11} x[k + 12 j + i],   k = 0..11 (Jan-Dec, Feb-Jan, ..., Dec-Nov)

taken only over the monthly values dated before 1 January of the year after the last yearly
training value (the year of y[train_end - 1] + 1: the months the yearly training part itself
summarises), are 12 more yearly-resolution series; their windows (inputs and targets inside
them) are added to the training split only, scaled by the scaler fitted on the yearly training
part. The validation and test windows stay the yearly series' own (``phase_annual_means``,
``monthly_phase_series``).

Rolling origin (Tashman 2000): origins o_1 < o_2 < ... in the held-out tail; at each the models
forecast y[o..o+H-1] from y[:o] only. The networks and the scaler were fitted on y[:o_1 - val]
(and validated on y[o_1-val:o_1]), or, refit (``WindowData(refit=True)``: the number of steps
chosen that way first), on y[:o_1]; ARIMA and ETS are fitted on y[:o_1] and their fixed
parameters re-applied to y[:o] at each origin (``res.extend``: the Kalman filter
carried on over the new values; ``ETSModel(y[:o]).smooth(params)``).

Metrics at horizon h over the origins (Hyndman & Koehler 2006; Makridakis 1993):

    MASE_h  = mean_o |y_{o+h-1} - f_{o,h}| / Q,   Q = 1/(n-m) sum_{t=m}^{n-1} |y_t - y_{t-m}|
              (Q: the in-sample MAE of the seasonal naive forecast with period m on y[:o_1])
    sMAPE_h = mean_o 200 |y - f| / (|y| + |f|)   (in percent; a term with y = f = 0 counts 0)

Diebold-Mariano (Diebold & Mariano 1995) with the small-sample correction of Harvey, Leybourne &
Newbold (1997), for h-step forecasts with loss differential d_t = L(e1_t) - L(e2_t):

    dbar = mean(d),  gamma_k = 1/n sum_{t=k+1}^{n} (d_t - dbar)(d_{t-k} - dbar)
    V    = gamma_0 + 2 sum_{k=1}^{h-1} gamma_k        (if V <= 0: gamma_0)
    DM   = dbar / sqrt(V / n)
    DM*  = DM sqrt((n + 1 - 2h + h(h-1)/n) / n),   p = 2 P(T_{n-1} > |DM*|)
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqlab.validation import check_choice, check_int, fail

SCALINGS = ("standard", "relative", "log-relative", "seasonal", "sqrt", "window")
# the window scaling's floor on a window's spread, as a fraction of the training part's: a
# near-constant window is not blown up
WINDOW_FLOOR = 1e-3
REPORT_HORIZONS = (1, 6, 12)


@dataclass(frozen=True)
class SeriesSpec:
    """Defaults of a named series: period m (seasonal naive, MASE, seasonal ARIMA/ETS),
    scaling, held-out tail, validation block, stride between origins, window."""

    period: int
    scaling: str
    test_size: int
    val_size: int
    stride: int
    window: int
    kind: str = "level"  # "level", "price" or "returns" (the stock comparisons)
    about: str = ""


SERIES: dict[str, SeriesSpec] = {
    "sunspots": SeriesSpec(11, "standard", 60, 24, 1, 16, about="yearly sunspot numbers 1700-2008 (statsmodels)"),
    "sunspots-monthly": SeriesSpec(132, "standard", 360, 240, 3, 132,
                                   about="monthly sunspot numbers 1749-2009 (statsmodels src)"),
    "co2": SeriesSpec(12, "relative", 120, 48, 1, 36, about="Mauna Loa CO2, monthly means 1958-2001 (statsmodels)"),
    "sp500": SeriesSpec(1, "log-relative", 500, 250, 1, 20, kind="price",
                        about="S&P 500 daily adjusted close 1999-2018 (arch)"),
    "sp500-returns": SeriesSpec(1, "standard", 500, 250, 1, 20, kind="returns",
                                about="S&P 500 daily log returns in percent (arch)"),
}


@dataclass
class Series:
    """A univariate series: ``values`` (N,) float64, ``dates`` (N ISO strings, or None)."""

    name: str
    values: np.ndarray
    dates: list[str] | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.values)

    def fingerprint(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.values, dtype="<f8").tobytes()).hexdigest()


# --------------------------------------------------------------------------- loading


def _iso(index) -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in index]


def _sunspots_monthly_file() -> Path:
    import statsmodels.datasets.sunspots as mod

    return Path(mod.__file__).parent / "src" / "sunspots_monthly.dat"


def load_series(name: str) -> Series:
    """One of ``SERIES`` by name (an unknown name is a one-line error)."""
    check_choice(name, "series", tuple(SERIES))
    if name == "sunspots":
        import statsmodels.api as sm

        d = sm.datasets.sunspots.load_pandas().data
        years = d["YEAR"].astype(int)
        return Series(name, d["SUNACTIVITY"].to_numpy(np.float64), [f"{y:04d}-07-01" for y in years],
                      "statsmodels.datasets.sunspots")
    if name == "sunspots-monthly":
        values, dates = [], []
        for line in _sunspots_monthly_file().read_text().splitlines():
            parts = line.split()
            if len(parts) < 2 or not parts[0].isdigit() or len(parts[0]) != 4:
                continue
            for month, v in enumerate(parts[1:13], start=1):
                values.append(float(v))
                dates.append(f"{parts[0]}-{month:02d}-01")
        return Series(name, np.asarray(values, np.float64), dates, "statsmodels sunspots/src/sunspots_monthly.dat")
    if name == "co2":
        import statsmodels.api as sm

        weekly = sm.datasets.co2.load_pandas().data["co2"]
        monthly = weekly.resample("MS").mean().interpolate(method="linear")
        return Series(name, monthly.to_numpy(np.float64), _iso(monthly.index),
                      "statsmodels.datasets.co2 (weekly -> monthly means, 5 empty months interpolated)")
    from arch.data import sp500

    price = sp500.load()["Adj Close"]
    if name == "sp500":
        return Series(name, price.to_numpy(np.float64), _iso(price.index), "arch.data.sp500 (Adj Close)")
    r = 100.0 * np.diff(np.log(price.to_numpy(np.float64)))
    return Series(name, r, _iso(price.index[1:]), "arch.data.sp500 (100 * log returns of Adj Close)")


def load_csv(path: str | Path, column: str, date: str | None = None) -> Series:
    """A numeric column of a CSV file (rows in time order; ``date`` names a date column, used
    for the plots' axis and checked to increase). Every bad input is one line."""
    import pandas as pd

    p = Path(path)
    if not p.exists():
        fail("--csv", "an existing CSV file", f"{str(path)!r} (no such file)")
    if not p.is_file():
        fail("--csv", "a CSV file", f"{str(path)!r} (not a file)")
    try:
        df = pd.read_csv(p)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        fail("--csv", "a readable CSV file", f"{str(path)!r} ({type(exc).__name__}: {first})")
    if not isinstance(column, str) or column not in df.columns:
        cols = ", ".join(map(str, list(df.columns)[:12]))
        fail("--column", f"a column of {p.name} (one of: {cols})", repr(column))
    raw = df[column]
    missing = np.flatnonzero(raw.isna().to_numpy())
    if len(missing):
        fail(f"--column {column}", "a value in every row", f"an empty cell in data row {missing[0] + 1} of {p.name}")
    num = pd.to_numeric(raw, errors="coerce")
    bad = np.flatnonzero(num.isna().to_numpy())
    if len(bad):
        fail(f"--column {column}", "numeric values", f"{str(raw.iloc[bad[0]])!r} in data row {bad[0] + 1} of {p.name}")
    values = num.to_numpy(np.float64)
    if not np.isfinite(values).all():
        k = int(np.flatnonzero(~np.isfinite(values))[0])
        fail(f"--column {column}", "finite values", f"{values[k]} in data row {k + 1} of {p.name}")
    dates = None
    if date is not None:
        if date not in df.columns:
            cols = ", ".join(map(str, list(df.columns)[:12]))
            fail("--date", f"a column of {p.name} (one of: {cols})", repr(date))
        parsed = pd.to_datetime(df[date], errors="coerce")
        badd = np.flatnonzero(parsed.isna().to_numpy())
        if len(badd):
            fail(f"--date {date}", "dates", f"{str(df[date].iloc[badd[0]])!r} in data row {badd[0] + 1} of {p.name}")
        if not parsed.is_monotonic_increasing:
            fail(f"--date {date}", "dates in increasing order (rows in time order)", "dates out of order")
        dates = _iso(parsed)
    return Series(f"{p.name}:{column}", values, dates, f"csv {p}")


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- scaling


def check_domain(y: np.ndarray, mode: str) -> None:
    """The values a scaling can take: positive for log-relative (logarithms), non-negative for
    sqrt (square roots); anything else is a one-line error."""
    y = np.asarray(y, np.float64)
    if mode == "log-relative" and (y <= 0).any():
        fail("scaling log-relative", "positive values (it takes logarithms)", f"a minimum of {y.min()}")
    if mode == "sqrt" and (y < 0).any():
        fail("scaling sqrt", "non-negative values (it takes square roots)", f"a minimum of {y.min()}")


@dataclass
class Scaler:
    """The scaling of a series, fitted on its training part only (see the module docstring).
    ``targets`` and ``invert`` take the raw input windows (N, W): the relative modes need their
    last value, the seasonal mode the value one period m before each target."""

    mode: str
    loc: float = 0.0
    scale: float = 1.0
    period: int = 1

    @classmethod
    def fit(cls, y: np.ndarray, mode: str, period: int = 1) -> "Scaler":
        check_choice(mode, "scaling", SCALINGS)
        y = np.asarray(y, np.float64)
        check_domain(y, mode)
        if mode == "log-relative":
            y = np.log(y)
        elif mode == "sqrt":
            y = np.sqrt(y)
        u = np.diff(y) if mode in ("relative", "log-relative") else y
        loc, scale = float(u.mean()), float(u.std())
        if mode == "seasonal":
            if len(y) <= period:
                fail("scaling seasonal", f"more than period={period} training values", len(y))
            scale = float((y[period:] - y[:-period]).std())
        if not scale > 0:
            fail("series", "values that vary in the training part", "a constant series")
        return cls(mode, loc, scale, int(period))

    def _g(self, y: np.ndarray) -> np.ndarray:
        """g(y): log y (log-relative), sqrt y (sqrt) or y."""
        y = np.asarray(y, np.float64)
        check_domain(y, self.mode)
        if self.mode == "log-relative":
            return np.log(y)
        return np.sqrt(y) if self.mode == "sqrt" else y

    def _g_inv(self, u: np.ndarray) -> np.ndarray:
        """g^-1(u): exp u, max(u, 0)^2 (sqrt: a negative u, which no square root gives, is clipped
        to 0, so the forecast of a non-negative series stays non-negative) or u. Each is monotone
        non-decreasing, so interval bounds and quantiles stay bounds and quantiles."""
        if self.mode == "log-relative":
            return np.exp(u)
        return np.square(np.maximum(u, 0.0)) if self.mode == "sqrt" else u

    def _anchor(self, w: np.ndarray, H: int) -> np.ndarray:
        """(N, H) what the scaled target is taken relative to (before the drift): 0, the last value
        (relative modes) or the seasonal naive forecast (seasonal mode)."""
        g = self._g(w)
        if self.mode in ("standard", "sqrt"):
            return np.zeros((len(w), H))
        if self.mode == "window":
            return np.repeat(g.mean(axis=1, keepdims=True), H, axis=1)
        if self.mode == "seasonal":
            m = self.period
            if w.shape[1] < m:
                fail("window", f"at least the period m={m} for the seasonal scaling", w.shape[1])
            return g[:, w.shape[1] - m + (np.arange(H) % m)]
        return np.repeat(g[:, -1:], H, axis=1)

    def inputs(self, windows: np.ndarray, before: np.ndarray | None = None) -> np.ndarray:
        """(N, W) raw windows -> (N, W) network inputs. Relative modes need ``before`` (N,), the
        value just before each window (its first difference), else the first difference is 0."""
        w = self._g(windows)
        if self.mode == "window":
            return (w - w.mean(axis=1, keepdims=True)) / self._spread(windows)
        if self.mode in ("standard", "seasonal", "sqrt"):
            return (w - self.loc) / self.scale
        prev = self._g(before)[:, None] if before is not None else w[:, :1]
        d = np.diff(np.concatenate([prev, w], axis=1), axis=1)  # (N, W)
        return (d - self.loc) / self.scale

    def _spread(self, windows: np.ndarray) -> np.ndarray | float:
        """What scaled values are divided by: the training part's sd, or (window mode) each
        window's own, (N, 1), floored at WINDOW_FLOOR of the training part's."""
        if self.mode != "window":
            return self.scale
        w = np.asarray(windows, np.float64)
        return np.maximum(w.std(axis=1, keepdims=True), WINDOW_FLOOR * self.scale)

    def _drift(self, H: int) -> np.ndarray:
        h = np.arange(1, H + 1)[None, :]
        return h * self.loc if self.mode in ("relative", "log-relative") else (
            self.loc if self.mode in ("standard", "sqrt") else 0.0 * h)

    def targets(self, windows: np.ndarray, future: np.ndarray) -> np.ndarray:
        """(N, W) raw windows and (N, H) future values -> (N, H) scaled targets."""
        f = self._g(future)
        H = f.shape[1]
        return (f - self._anchor(windows, H) - self._drift(H)) / self._spread(windows)

    def invert(self, windows: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Scaled forecasts (N, H) (means or quantiles) -> values (N, H): the inverse of ``targets``
        (monotone in ``z``; sqrt clips below 0 before squaring, see ``_g_inv``)."""
        z = np.asarray(z, np.float64)
        H = z.shape[1]
        return self._g_inv(self._anchor(windows, H) + self._drift(H) + z * self._spread(windows))

    def to_dict(self) -> dict:
        return {"mode": self.mode, "loc": self.loc, "scale": self.scale, "period": self.period}

    @classmethod
    def from_dict(cls, d: dict) -> "Scaler":
        if not isinstance(d, dict) or set(d) != {"mode", "loc", "scale", "period"}:
            fail("forecast_scaler.json", "an object with mode, loc, scale and period", repr(d)[:80])
        check_choice(d["mode"], "scaling", SCALINGS)
        return cls(d["mode"], float(d["loc"]), float(d["scale"]), int(d["period"]))


# --------------------------------------------------------------------------- windows


def window_origins(start: int, end: int, window: int, horizon: int, stride: int = 1) -> np.ndarray:
    """Origins o (values observed: y[:o]) whose window y[o-W:o] starts at or after ``start``
    (one more value before it for the relative scalings) and whose targets y[o:o+H] end at or
    before ``end``: no target crosses ``end``."""
    first = start + window + 1
    return np.arange(first, end - horizon + 1, stride, dtype=np.int64)


def windows_at(y: np.ndarray, origins: np.ndarray, window: int, horizon: int | None = None):
    """(windows (N, W), value before each window (N,), last values (N,), futures (N, H) or None)."""
    idx = origins[:, None] + np.arange(-window, 0)[None, :]
    w = y[idx]
    before = y[origins - window - 1]
    fut = None
    if horizon is not None:
        fut = y[origins[:, None] + np.arange(horizon)[None, :]]
    return w, before, y[origins - 1], fut


def phase_annual_means(x: np.ndarray, end: int) -> list[np.ndarray]:
    """The 12 phase-shifted annual means of the monthly values ``x[:end]``: A_k[j] = mean of
    x[k + 12 j : k + 12 j + 12] for k = 0..11, every 12-month block ending before ``end``."""
    x = np.asarray(x, np.float64)
    check_int(end, "end", minimum=0, maximum=len(x))
    out = []
    for k in range(12):
        n = max(0, (end - k) // 12)  # blocks k + 12 j .. k + 12 j + 11 <= end - 1
        # A_k[j] = 1/12 sum_{i=0}^{11} x[k + 12 j + i]
        out.append(x[k: k + 12 * n].reshape(n, 12).mean(axis=1))
    return out


def _years(dates: list[str] | None, what: str, monthly: bool) -> np.ndarray:
    """(N,) the years of ISO ``dates`` (checked to be consecutive years, or consecutive months:
    N monthly dates give N years, one per month)."""
    if not dates:
        fail(what, "a series with dates (a bundled one, or a CSV with --date)", "a series without dates")
    try:
        ym = np.array([(int(d[:4]), int(d[5:7])) for d in dates], np.int64)
    except ValueError:
        fail(what, "ISO dates YYYY-MM-DD", repr(dates[0]))
    step = np.diff(ym[:, 0] * 12 + ym[:, 1] - 1)
    if len(dates) > 1 and not (step == (1 if monthly else 12)).all():
        k = int(np.flatnonzero(step != (1 if monthly else 12))[0])
        fail(what, f"{'monthly' if monthly else 'yearly'} values (one every {'month' if monthly else 'year'})",
             f"{dates[k]} followed by {dates[k + 1]}")
    return ym[:, 0]


def monthly_phase_series(yearly: Series, train_end: int, monthly: Series) -> list[np.ndarray]:
    """The 12 phase-shifted annual means of ``monthly`` over its values dated before 1 January of
    the year after y[train_end - 1] (the last value of the yearly training part), the extra
    training series of ``WindowData(..., monthly=...)``. Refused (one line): a series that is not
    yearly with dates, a companion that is not monthly, no complete year of the companion before
    the cut, or a companion whose calendar-year means are not on the yearly series' scale (their
    mean absolute difference over the common years above 5% of the yearly values' mean size)."""
    years = _years(yearly.dates, "--augment", monthly=False)
    check_int(train_end, "train_end", minimum=1, maximum=len(yearly))
    m_years = _years(monthly.dates, f"--augment {monthly.name}", monthly=True)
    cut_year = int(years[train_end - 1]) + 1
    end = int(np.searchsorted(m_years, cut_year, side="left"))  # monthly values dated before cut_year-01-01
    phases = phase_annual_means(monthly.values, end)
    if end < 12:
        fail(f"--augment {monthly.name}", f"12 monthly values before {cut_year}-01-01 (the training part's end)",
             f"{end} values")
    # the scale check: the calendar-year means (the Jan-Dec phase) against the yearly values of the same years
    jan = next((k for k in range(12) if monthly.dates[k][5:7] == "01"), None)
    if jan is not None and len(phases[jan]):
        cal_years = m_years[jan] + np.arange(len(phases[jan]))
        common = np.intersect1d(cal_years, years[:train_end])
        if len(common):
            diff = float(np.mean(np.abs(phases[jan][np.searchsorted(cal_years, common)]
                                        - yearly.values[np.searchsorted(years, common)])))
            size = float(np.mean(np.abs(yearly.values[np.searchsorted(years, common)])))
            if diff > 0.05 * size:
                fail(f"--augment {monthly.name}", f"calendar-year means on the scale of the yearly values (a mean "
                     f"absolute difference of at most 5% of their mean size {size:.4g} over {len(common)} common "
                     "years)", f"a mean absolute difference of {diff:.4g}")
    return phases


# --------------------------------------------------------------------------- metrics


def mase_scale(y_train: np.ndarray, period: int) -> float:
    """Q = mean |y_t - y_{t-m}| over the training part (the seasonal naive's in-sample MAE)."""
    y = np.asarray(y_train, np.float64)
    if len(y) <= period:
        fail("series", f"more than {period} training values for the MASE scale", len(y))
    q = float(np.mean(np.abs(y[period:] - y[:-period])))
    if not q > 0:
        fail("series", "a training part that is not periodic with its period (MASE scale > 0)", "scale 0")
    return q


def mase(actual: np.ndarray, forecast: np.ndarray, scale: float) -> float:
    """mean |y - f| / Q."""
    return float(np.mean(np.abs(np.asarray(actual) - np.asarray(forecast))) / scale)


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """mean 200 |y - f| / (|y| + |f|), in percent; a term with y = f = 0 counts 0."""
    a, f = np.asarray(actual, np.float64), np.asarray(forecast, np.float64)
    den = np.abs(a) + np.abs(f)
    terms = np.where(den > 0, 200.0 * np.abs(a - f) / np.where(den > 0, den, 1.0), 0.0)
    return float(np.mean(terms))


def diebold_mariano(e1: np.ndarray, e2: np.ndarray, h: int = 1, loss: str = "squared") -> dict:
    """DM test of equal accuracy of forecasts 1 and 2 (errors e1, e2 of h-step forecasts), with
    the HLN (1997) correction. Negative statistic: forecast 1 is more accurate. Returns
    {"dm", "dm_hln", "p_value", "mean_d", "n", "h"}."""
    from scipy import stats

    check_choice(loss, "loss", ("squared", "absolute"))
    check_int(h, "h", minimum=1)
    e1, e2 = np.asarray(e1, np.float64), np.asarray(e2, np.float64)
    if e1.shape != e2.shape or e1.ndim != 1:
        fail("diebold_mariano", "two 1-D error arrays of one length", f"shapes {e1.shape} and {e2.shape}")
    n = len(e1)
    if n < 3 or n <= h:
        fail("diebold_mariano", f"more than max(2, h={h}) errors", n)
    # d_t = L(e1_t) - L(e2_t)
    d = (e1 ** 2 - e2 ** 2) if loss == "squared" else (np.abs(e1) - np.abs(e2))
    dbar = d.mean()
    u = d - dbar
    # gamma_k = 1/n sum_{t=k+1}^{n} (d_t - dbar)(d_{t-k} - dbar)
    gamma = [float(u[k:] @ u[: n - k]) / n for k in range(h)]
    # V = gamma_0 + 2 sum_{k=1}^{h-1} gamma_k
    v = gamma[0] + 2.0 * sum(gamma[1:])
    if v <= 0:
        v = gamma[0]
    if v <= 0:  # identical losses
        return {"dm": 0.0, "dm_hln": 0.0, "p_value": 1.0, "mean_d": float(dbar), "n": n, "h": h}
    # DM = dbar / sqrt(V / n)
    dm = dbar / math.sqrt(v / n)
    # DM* = DM sqrt((n + 1 - 2h + h(h-1)/n) / n)
    dm_hln = dm * math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    p = float(2 * stats.t.sf(abs(dm_hln), df=n - 1))
    return {"dm": float(dm), "dm_hln": float(dm_hln), "p_value": p, "mean_d": float(dbar), "n": n, "h": h}


# --------------------------------------------------------------------------- the evaluation frame


@dataclass
class Frame:
    """A series cut for evaluation: values before ``first_origin`` are the training part
    (the networks' scaler and weights see y[:first_origin - val_size] only, the validation block
    after it); ``origins`` are the rolling forecast origins in the held-out tail."""

    series: Series
    period: int
    horizon: int
    first_origin: int
    origins: np.ndarray
    kind: str = "level"

    @property
    def y(self) -> np.ndarray:
        return self.series.values

    def actuals(self) -> np.ndarray:
        """(n_origins, H): y[o + h - 1]."""
        return self.y[self.origins[:, None] + np.arange(self.horizon)[None, :]]

    def scale(self) -> float:
        return mase_scale(self.y[: self.first_origin], self.period)


def make_frame(series: Series, *, period: int, horizon: int, test_size: int, stride: int = 1,
               kind: str = "level") -> Frame:
    n = len(series)
    first = n - test_size
    origins = np.arange(first, n - horizon + 1, stride, dtype=np.int64)
    if len(origins) == 0:
        fail("test_size", f"a held-out tail of at least the horizon ({horizon})", test_size)
    return Frame(series, period, horizon, first, origins, kind)


def score(frame: Frame, forecasts: np.ndarray, horizons=REPORT_HORIZONS) -> dict:
    """{"h1": {"mase", "smape"}, ...} of point forecasts (n_origins, H)."""
    a, q = frame.actuals(), frame.scale()
    out = {}
    for h in horizons:
        if h <= frame.horizon:
            out[f"h{h}"] = {"mase": mase(a[:, h - 1], forecasts[:, h - 1], q),
                            "smape": smape(a[:, h - 1], forecasts[:, h - 1])}
    return out


# --------------------------------------------------------------------------- baselines


def naive_forecasts(frame: Frame) -> np.ndarray:
    """f_{o,h} = y_{o-1} (the random walk)."""
    return np.repeat(frame.y[frame.origins - 1][:, None], frame.horizon, axis=1)


def seasonal_naive_forecasts(frame: Frame) -> np.ndarray:
    """f_{o,h} = y_{o-1 - m + ((h-1) mod m) + 1} = the value one period before y_{o+h-1} (repeated)."""
    m = frame.period
    h = np.arange(frame.horizon)
    idx = frame.origins[:, None] - m + (h % m)[None, :]
    return frame.y[idx]


def zero_forecasts(frame: Frame) -> np.ndarray:
    """f = 0: the random walk's forecast of a return."""
    return np.zeros((len(frame.origins), frame.horizon))


def _kpss_d(y: np.ndarray, max_d: int = 2) -> int:
    """The number of differences d after which the KPSS test (5%) no longer rejects stationarity."""
    import warnings

    from statsmodels.tsa.stattools import kpss

    x = np.asarray(y, np.float64)
    for d in range(max_d + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = kpss(x, regression="c", nlags="auto")[1]
        if p >= 0.05 or d == max_d:
            return d
        x = np.diff(x)
    return max_d


def arima_forecasts(frame: Frame, *, seconds: float = 60.0, log: bool = False,
                    sqrt: bool = False) -> tuple[np.ndarray, dict]:
    """ARIMA/SARIMA with orders chosen by AIC, fitted on y[:o_1] and re-applied at every origin.

    d by KPSS (as auto.arima); a grid over p in 0..3, q in 0..2 (and, where the period m is at
    most 24, a seasonal (P, 1, Q)_m with P, Q in 0..1 after one seasonal difference), fitted in
    order of size until ``seconds`` have passed (the orders tried are reported).

    ``log``: the whole search on log y, forecasts mapped back by exp; ``sqrt``: on sqrt y (a
    non-negative series), forecasts mapped back by max(f, 0)^2 (the sqrt scaling's inverse)."""
    import itertools
    import warnings

    from statsmodels.tsa.statespace.sarimax import SARIMAX

    if log and sqrt:
        fail("arima_forecasts", "log or sqrt, not both", "both")
    if sqrt:
        check_domain(frame.y, "sqrt")
    y = np.log(frame.y) if log else (np.sqrt(frame.y) if sqrt else frame.y)
    train = y[: frame.first_origin]
    m = frame.period
    seasonal = 2 <= m <= 24
    t0 = time.perf_counter()
    if seasonal:
        d = _kpss_d(train[m:] - train[:-m], 1)
        seas = [(P, 1, Q, m) for P, Q in ((0, 1), (1, 1), (1, 0), (0, 0))]
    else:
        d = _kpss_d(train)
        seas = [(0, 0, 0, 0)]
    grid = sorted(itertools.product(range(4), range(3), seas), key=lambda g: (g[0] + g[1] + g[2][0] + g[2][2]))
    best, tried = None, []
    for p, q, s in grid:
        if time.perf_counter() - t0 > seconds and best is not None:
            break
        trend = "c" if d + s[1] == 0 else ("t" if d + s[1] == 1 and not seasonal else "n")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = SARIMAX(train, order=(p, d, q), seasonal_order=s, trend=trend).fit(disp=False, maxiter=80)
            except (ValueError, np.linalg.LinAlgError):
                continue
        if not np.isfinite(res.aic):
            continue
        tried.append({"order": [p, d, q], "seasonal": list(s), "aic": float(res.aic)})
        if best is None or res.aic < best[0]:
            best = (float(res.aic), (p, d, q), s, trend, res)
    assert best is not None
    aic, order, s, trend, res = best
    out = np.empty((len(frame.origins), frame.horizon))
    cur, at = res, frame.first_origin
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, o in enumerate(frame.origins):
            if o > at:
                cur = cur.extend(y[at:o])  # filter the new values with the parameters fitted on y[:o_1]
                at = o
            out[i] = cur.forecast(frame.horizon)
    if log:
        out = np.exp(out)
    if sqrt:
        out = np.square(np.maximum(out, 0.0))
    info = {"order": list(order), "seasonal_order": list(s), "trend": trend, "aic": aic, "fits": len(tried),
            "grid": len(grid),
            "seconds": time.perf_counter() - t0}
    return out, info


def ets_forecasts(frame: Frame, *, log: bool = False) -> tuple[np.ndarray, dict]:
    """Exponential smoothing (statsmodels ``ETSModel``, additive errors): the form with the least
    AIC among trend none / additive damped and, where 2 <= m <= 24, seasonal none / additive,
    fitted on y[:o_1]; its parameters (and initial states) are re-applied to y[:o] at each origin."""
    import warnings

    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y = np.log(frame.y) if log else frame.y
    train = y[: frame.first_origin]
    m = frame.period
    forms = [dict(trend=None), dict(trend="add", damped_trend=True)]
    if 2 <= m <= 24:
        forms += [dict(f, seasonal="add", seasonal_periods=m) for f in forms]
    t0 = time.perf_counter()
    best = None
    for f in forms:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = ETSModel(train, error="add", **f).fit(disp=False, maxiter=200)
            except (ValueError, np.linalg.LinAlgError):
                continue
        if np.isfinite(res.aic) and (best is None or res.aic < best[0]):
            best = (float(res.aic), f, res)
    assert best is not None
    aic, form, res = best
    out = np.empty((len(frame.origins), frame.horizon))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, o in enumerate(frame.origins):
            r = res if o == frame.first_origin else ETSModel(y[:o], error="add", **form).smooth(res.params)
            out[i] = r.forecast(frame.horizon)
    if log:
        out = np.exp(out)
    name = "ETS(A," + ("Ad" if form.get("trend") else "N") + "," + ("A" if form.get("seasonal") else "N") + ")"
    return out, {"form": name, "aic": aic, "seconds": time.perf_counter() - t0}


def baselines(frame: Frame, *, arima_seconds: float = 60.0) -> dict[str, tuple[np.ndarray, dict]]:
    """Every baseline's point forecasts (n_origins, H) on ``frame``, with what was fitted."""
    out: dict[str, tuple[np.ndarray, dict]] = {}
    if frame.kind == "returns":
        out["random walk (zero return)"] = (zero_forecasts(frame), {})
        out["naive (last return)"] = (naive_forecasts(frame), {})
    else:
        out["naive" + (" (random walk)" if frame.kind == "price" else "")] = (naive_forecasts(frame), {})
    if frame.period > 1:
        out[f"seasonal naive (m={frame.period})"] = (seasonal_naive_forecasts(frame), {})
    log = frame.kind == "price"
    out["ARIMA (AIC)"] = arima_forecasts(frame, seconds=arima_seconds, log=log)
    out["ETS (AIC)"] = ets_forecasts(frame, log=log)
    return out


def reference_name(frame: Frame) -> str:
    """The random walk's row for the Diebold-Mariano comparisons."""
    return {"returns": "random walk (zero return)", "price": "naive (random walk)"}.get(frame.kind, "naive")


def dm_table(frame: Frame, forecasts: dict[str, np.ndarray], reference: str, horizons=REPORT_HORIZONS) -> dict:
    """DM (HLN) of each forecast against ``reference`` at each horizon, squared-error loss. With
    origins ``stride`` apart, h-step errors overlap for ceil(h / stride) - 1 lags."""
    a = frame.actuals()
    stride = int(frame.origins[1] - frame.origins[0]) if len(frame.origins) > 1 else 1
    ref = a - forecasts[reference]
    out = {}
    for name, f in forecasts.items():
        if name == reference:
            continue
        e = a - f
        out[name] = {f"h{h}": diebold_mariano(e[:, h - 1], ref[:, h - 1], h=max(1, math.ceil(h / stride)))
                     for h in horizons if h <= frame.horizon}
    return out


def format_table(rows: dict[str, dict], horizons=REPORT_HORIZONS, title: str = "") -> str:
    hs = [h for h in horizons if any(f"h{h}" in r for r in rows.values())]
    width = max([len(n) for n in rows] + [10])
    head = f"{'':<{width}}  " + "  ".join(f"MASE@{h:<3} sMAPE@{h:<3}" for h in hs)
    lines = ([title] if title else []) + [head]
    for name, r in rows.items():
        cells = "  ".join(f"{r[f'h{h}']['mase']:7.3f} {r[f'h{h}']['smape']:8.2f}%" for h in hs)
        lines.append(f"{name:<{width}}  {cells}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the networks' windows


class WindowData:
    """The networks' training and validation windows of a frame (the trainer's
    ``get_batch(split, B, generator)``), scaled with a ``Scaler`` fitted on the training part.

    train: origins o with o + H <= train_end = o_1 - val_size (targets before the validation block)
    val:   origins o >= o_1 - val_size with o + H <= o_1 (targets in the validation block)
    Nothing at or after the first test origin o_1 is used.

    ``refit``: the final fit of a refit run (``ForecastData(refit=True)``): train_end = o_1, so the
    training split and the scaler take the validation block too; the val split is unchanged
    (its windows are then training windows: its loss measures the fit, not generalisation).

    ``monthly``: a monthly companion of a yearly series; the windows of its 12 phase-shifted
    annual means over the months before the year after y[train_end - 1] (``monthly_phase_series``;
    inputs and targets inside each) are added to the training split only (``augmented``: how many)."""

    def __init__(self, frame: Frame, *, window: int, scaling: str, val_size: int,
                 monthly: Series | None = None, refit: bool = False) -> None:
        import torch

        self.frame, self.window, self.horizon = frame, window, frame.horizon
        o1 = frame.first_origin
        val_start = o1 - val_size
        self.train_end = o1 if refit else val_start
        y = frame.y
        check_choice(scaling, "scaling", SCALINGS)
        check_domain(y, scaling)  # the whole series: the validation and test windows are scaled too
        self.scaler = Scaler.fit(y[: self.train_end], scaling, frame.period)
        train = window_origins(0, self.train_end, window, self.horizon)
        val = np.arange(max(val_start, window + 1), o1 - self.horizon + 1, dtype=np.int64)
        if len(train) < 1:
            fail("series", f"enough values before the validation block for one training window "
                 f"(window {window} + 1 + horizon {self.horizon} = {window + 1 + self.horizon}, before value "
                 f"{self.train_end})", f"{self.train_end} values")
        if len(val) < 1:
            val = train[-1:]  # no room for a validation window: the last training window stands in
        self.origins = {"train": train, "val": val}
        self.tensors = {k: self.tensors_at(o, with_targets=True) for k, o in self.origins.items()}
        self.augmented = 0
        if monthly is not None:
            xs, ys = [self.tensors["train"][0]], [self.tensors["train"][1]]
            for a in monthly_phase_series(frame.series, self.train_end, monthly):
                o = window_origins(0, len(a), window, self.horizon)  # inputs and targets inside a
                if len(o) == 0:
                    continue
                w, before, _, fut = windows_at(a, o, window, self.horizon)
                xs.append(torch.from_numpy(self.scaler.inputs(w, before)[..., None]).float())
                ys.append(torch.from_numpy(self.scaler.targets(w, fut)).float())
                self.augmented += len(o)
            self.tensors["train"] = (torch.cat(xs), torch.cat(ys))
        self._torch = torch

    def inputs_at(self, origins: np.ndarray) -> np.ndarray:
        """(N, W, 1) scaled inputs of the windows ending at ``origins`` (y[:o] only)."""
        w, before, _, _ = windows_at(self.frame.y, origins, self.window)
        return self.scaler.inputs(w, before)[..., None]

    def tensors_at(self, origins: np.ndarray, with_targets: bool = False):
        import torch

        x = torch.from_numpy(self.inputs_at(origins)).float()
        if not with_targets:
            return x
        w, _, _, fut = windows_at(self.frame.y, origins, self.window, self.horizon)
        return x, torch.from_numpy(self.scaler.targets(w, fut)).float()

    def get_batch(self, split: str, batch_size: int, generator=None) -> dict:
        x, y = self.tensors["val" if split not in self.tensors else split]
        idx = self._torch.randint(0, len(x), (batch_size,), generator=generator)
        return {"x": x[idx], "y": y[idx]}


def network_forecasts(model, data: "WindowData", origins: np.ndarray, level: float = 0.95) -> dict:
    """The model's forecasts at ``origins`` in the series' units: {"mean", "lower", "upper"} (N, H),
    the interval mu +- q s mapped back through the scaling (``level``: its coverage; q from the
    model's head, ``Forecaster.interval_factor``)."""
    import torch

    z = model.interval_factor(level)
    with torch.no_grad():
        mean, sd = model.predict(data.tensors_at(origins))
    w, _, _, _ = windows_at(data.frame.y, origins, data.window)
    mean, sd = mean.double().numpy(), sd.double().numpy()
    sc = data.scaler
    return {"mean": sc.invert(w, mean), "lower": sc.invert(w, mean - z * sd), "upper": sc.invert(w, mean + z * sd)}


def coverage(frame: Frame, lower: np.ndarray, upper: np.ndarray, horizons=REPORT_HORIZONS) -> dict:
    """The share of actual values inside [lower, upper] at each horizon."""
    a = frame.actuals()
    return {f"h{h}": float(np.mean((a[:, h - 1] >= lower[:, h - 1]) & (a[:, h - 1] <= upper[:, h - 1])))
            for h in horizons if h <= frame.horizon}


__all__ = ["Frame", "REPORT_HORIZONS", "SCALINGS", "SERIES", "Scaler", "Series", "SeriesSpec", "WindowData",
           "arima_forecasts", "baselines", "check_domain", "coverage", "diebold_mariano", "dm_table", "ets_forecasts",
           "file_sha256", "format_table", "load_csv", "load_series", "make_frame", "mase", "mase_scale",
           "monthly_phase_series", "naive_forecasts", "network_forecasts", "phase_annual_means", "reference_name",
           "score", "seasonal_naive_forecasts", "smape", "window_origins", "windows_at", "zero_forecasts"]
