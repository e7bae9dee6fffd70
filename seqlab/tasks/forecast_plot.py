"""Plots of forecasts: the end of the series, the forecast mean and its prediction interval."""

from __future__ import annotations

import os
from pathlib import Path


def _axis(dates, n: int):
    if dates:
        import pandas as pd

        return list(pd.to_datetime(dates))
    return list(range(n))


def plot_forecast(out: dict, path: str | os.PathLike) -> Path:
    """Draw ``forecast_family.forecast``'s result (history, mean, interval) to a PNG, atomically."""
    from seqlab.viz.plots import new_figure, save_png

    hist = out["history"]
    fig = new_figure(8, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    if out.get("history_dates") and out.get("dates"):
        xh, xf = _axis(out["history_dates"], len(hist)), _axis(out["dates"], out["horizon"])
    else:
        xh = list(range(-len(hist) + 1, 1))
        xf = list(range(1, out["horizon"] + 1))
        ax.set_xlabel("steps from the end of the series")
    ax.plot(xh, hist, color="black", lw=1.2, label="series")
    ax.plot([xh[-1]] + list(xf), [hist[-1]] + list(out["mean"]), color="tab:blue", lw=1.6,
            label=f"{out['arch']} forecast")
    ax.fill_between(xf, out["lower"], out["upper"], color="tab:blue", alpha=0.25,
                    label=f"{int(round(100 * out['level']))}% interval")
    ax.set_title(f"{out['series']}: {out['horizon']}-step forecast from the end of the series", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    return save_png(fig, path)


def plot_origins(y, dates, origins, forecasts: dict, h: int, path: str | os.PathLike, title: str = "") -> Path:
    """The held-out tail with each model's h-step forecasts at the rolling origins (forecast for
    y[o + h - 1] drawn at that time)."""
    import numpy as np

    from seqlab.viz.plots import new_figure, save_png

    origins = np.asarray(origins)
    start = max(0, int(origins[0]) - 3 * h)
    x = _axis(dates[start:] if dates else None, len(y) - start)
    if not dates:
        x = list(range(start, len(y)))
    fig = new_figure(9, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(x, y[start:], color="black", lw=1.4, label="series")
    for name, f in forecasts.items():
        t = origins + h - 1
        ax.plot([x[i - start] for i in t], f[:, h - 1], lw=1.0, label=name)
    ax.axvline(x[int(origins[0]) - start], color="grey", ls=":", lw=1)
    ax.set_title(title or f"{h}-step forecasts at the rolling origins", fontsize=10)
    ax.legend(loc="best", fontsize=7)
    fig.autofmt_xdate()
    return save_png(fig, path)
