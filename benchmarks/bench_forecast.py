"""Time-series forecasting, measured (seqlab.tasks.forecast), against naive, seasonal naive,
ARIMA (orders by AIC) and exponential smoothing (ETS by AIC), in the same run.

For each series (yearly and monthly sunspots, Mauna Loa CO2, S&P 500 prices and log returns)
it trains seqlab's forecasters (``seqlab.train("forecast", ...)``: GRU, LSTM and Transformer
ensembles, direct 12-step Gaussian heads) on the values before the held-out tail only (the last
part of them for validation), and scores every model and baseline by rolling origin over the
tail: MASE and sMAPE at 1, 6 and 12 steps, and the Diebold-Mariano test (HLN correction) of each
against the random walk. Two worker processes of one torch thread each.

    python benchmarks/bench_forecast.py                     # the reported setting
    python benchmarks/bench_forecast.py --quick --name forecast_smoke

Writes benchmarks/results/NAME.md and .json (and NAME_sunspots.png, NAME_co2.png).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RESULTS = ROOT / "benchmarks" / "results"
SERIES = ("sunspots", "co2", "sunspots-monthly", "sp500", "sp500-returns")

# The networks of the target series (sunspots, CO2) are chosen by the benchmark itself, on a
# validation tail: the values before the held-out tail are cut again, the last `test_size` of
# them becoming a rolling-origin tail of their own; every candidate is trained on the values
# before that tail (less its own validation block) and scored there, by MASE averaged over the
# horizons 1..H. Each architecture's best candidate is then trained on all the values before the
# held-out tail and scored once on it; the forecaster reported against the target (one
# architecture, or the mean of the three) is the one with the lowest validation-tail score.
# The held-out tail is used for nothing else.
# The yearly sunspots' grid includes the scaling: standard, or sqrt (the square root, then
# standardised: the variance-stabilising transform of counts, Box-Cox lambda = 1/2), chosen on the
# validation tail like the size and the window. So that a reader can tell what the transform
# alone does, the sunspots' table also has "ARIMA (AIC) on sqrt": the same order search on the
# square roots, its forecasts squared back (an extra row: the target stays ARIMA (AIC) and ETS).
# The yearly sunspots' grid also has candidates whose training windows are augmented by the monthly
# sunspots (augment="sunspots-monthly": the windows of the 12 phase-shifted annual means Jan-Dec,
# Feb-Jan, ..., Dec-Nov of the months before the year after the candidate's last training value;
# its validation windows, scaling and the tails stay the yearly series' own): both scalings, hidden
# 16 and 32, windows 16 and 22 (the region of the best unaugmented candidates), chosen on the
# validation tail with the rest.
# Every yearly sunspots candidate is trained with each head: Gaussian (squared errors) and Laplace
# (absolute errors, the errors MASE counts; see seqlab.tasks.forecast), the head chosen on the
# validation tail like the rest.
BASE = {"sunspots": dict(members=5, max_steps=300, nll_beta=1.0), "co2": dict(members=5, max_steps=600)}
AUGMENT = "sunspots-monthly"
HEADS = ("gaussian", "laplace")
CANDIDATES = {
    "sunspots": {arch: [dict(BASE["sunspots"], scaling=sc, hidden_size=h, window=w, head=head,
                             **({"d_ff": 2 * h} if arch == "transformer" else {}))
                        for head in HEADS for sc in ("standard", "sqrt") for h in (16, 32) for w in (11, 16, 22)]
                 + [dict(BASE["sunspots"], scaling=sc, hidden_size=h, window=w, augment=AUGMENT, head=head,
                         **({"d_ff": 2 * h} if arch == "transformer" else {}))
                    for head in HEADS for sc in ("standard", "sqrt") for h in (16, 32) for w in (16, 22)]
                 for arch in ("gru", "lstm", "transformer")},
    "co2": {arch: [dict(BASE["co2"], hidden_size=h, window=w, **({"d_ff": 2 * h} if arch == "transformer" else {}))
                   for h, w in ((32, 36), (48, 36), (32, 24))] for arch in ("gru", "lstm", "transformer")},
}
# the other series' networks are fixed (not tuned on anything): they are not the target
NETS = {
    "sunspots-monthly": {
        "gru": dict(hidden_size=32, members=3, max_steps=300, window=60, nll_beta=1.0),
        "transformer": dict(hidden_size=32, d_ff=64, members=3, max_steps=300, window=60, nll_beta=1.0),
    },
    "sp500": {
        "gru": dict(hidden_size=32, members=3, max_steps=300),
        "transformer": dict(hidden_size=32, d_ff=64, members=3, max_steps=300),
    },
    "sp500-returns": {
        "gru": dict(hidden_size=32, members=3, max_steps=300),
        "transformer": dict(hidden_size=32, d_ff=64, members=3, max_steps=300),
    },
}
# The networks scored on the held-out tail are refit (ForecastData(refit=True)): the number of steps
# chosen on the validation block, then a fresh network trained on the values before the tail with
# that block included, as ARIMA and ETS are fitted on all of them. Adopted on the validation tails
# (the candidates' own cut): refit against not, the chosen configurations, MASE averaged over h:
# CO2 gru 0.437 / 0.475, lstm 0.446 / 0.484, transformer 0.424 / 0.477; sunspots (two seeds) gru
# 0.598, 0.592 / 0.584, 0.594, transformer 0.619, 0.618 / 0.638, 0.636. The candidates themselves are
# scored without the refit (it would double the grid's time).
REFIT = True
COMBINED = "mean of the seqlab networks"
ARIMA_SQRT = "ARIMA (AIC) on sqrt"
SQRT_ARIMA_SERIES = ("sunspots",)  # the series with the extra ARIMA-on-square-roots row
TRAIN = dict(batch_size=64, lr=3e-3, min_lr=3e-4, warmup_steps=30, eval_every=100, eval_batches=4, seed=1337)


def _init() -> None:
    import torch

    torch.set_num_threads(1)


def job_baselines(series: str, arima_seconds: float) -> dict:
    import seqlab
    from seqlab.tasks.forecast_family import ForecastData, make_forecast_data
    from seqlab.tasks.forecast_data import baselines

    seqlab.runs.discover()
    t = time.perf_counter()
    data = make_forecast_data(ForecastData(series=series))
    out = baselines(data.frame, arima_seconds=arima_seconds)
    if series in SQRT_ARIMA_SERIES:
        from seqlab.tasks.forecast_data import arima_forecasts

        out[ARIMA_SQRT] = arima_forecasts(data.frame, seconds=arima_seconds, sqrt=True)
    return {"series": series, "kind": "baselines", "forecasts": {k: v[0] for k, v in out.items()},
            "fitted": {k: v[1] for k, v in out.items() if v[1]}, "seconds": time.perf_counter() - t}


def validation_cut(series: str, folder: Path) -> dict:
    """The data options of the validation cut of a series: a CSV of the values before its
    held-out tail, cut again with the same sizes (its own rolling-origin tail, validation block,
    period, scaling and stride)."""
    from seqlab.tasks.forecast_family import ForecastData, make_forecast_data

    data = make_forecast_data(ForecastData(series=series))
    r, first = data.resolved, data.frame.first_origin
    path = folder / f"{series}_before_test.csv"
    rows = ["date,value"] + [f"{d},{float(v)!r}" for d, v in zip(data.series.dates[:first], data.series.values[:first])]
    path.write_text("\n".join(rows) + "\n")
    return dict(csv=str(path), column="value", date="date", horizon=r["horizon"], period=r["period"],
                scaling=r["scaling"], test_size=r["test_size"], val_size=r["val_size"], stride=r["stride"])


def job_network(series: str, arch: str, opts: dict, quick: bool, data_options: dict | None = None,
                candidate: int | None = None) -> dict:
    """Train one network (an ensemble of K) and forecast at the rolling origins of its frame:
    the series' held-out tail, or, with ``data_options`` of a validation cut, that cut's tail."""
    import seqlab
    from seqlab.tasks.forecast_data import coverage, network_forecasts, score

    t = time.perf_counter()
    kw = {**TRAIN, **opts}
    if quick:
        kw.update(max_steps=6, eval_every=3, members=1)
    where = data_options if data_options is not None else {"series": series, "refit": REFIT}
    with tempfile.TemporaryDirectory() as tmp:
        # a candidate's own data options (its scaling) replace the cut's
        r = seqlab.train("forecast", arch=arch, out=Path(tmp) / "run", progress=False, **{**where, **kw})
        model, run = seqlab.load(r.run_dir)
        fam = seqlab.runs.get_family("forecast")
        data = fam._data(run)
        f = network_forecasts(model, data.windows, data.frame.origins)
        cov = coverage(data.frame, f["lower"], f["upper"])
        first_pass = run.saved_data().get("validation_pass")  # a refit run's (else None)
        H = data.frame.horizon
        augmented = data.windows.augmented  # the extra training windows of an augmented run (else 0)
        mean_mase = float(np.mean([v["mase"] for v in score(data.frame, f["mean"], range(1, H + 1)).values()]))
    return {"series": series, "kind": "network" if data_options is None else "candidate", "arch": arch,
            "candidate": candidate, "label": f"{arch} (seqlab, K={kw['members']})", "forecast": f["mean"],
            "coverage": cov, "steps": r.steps, "best_step": run.step, "best_val": r.best_val_loss, "options": kw,
            "mase_mean": mean_mase, "augmented_windows": augmented, "validation_pass": first_pass,
            "seconds": time.perf_counter() - t}


def choose(series: str, candidates: list[dict]) -> dict:
    """The validation-tail choice of a target series: each architecture's best candidate (lowest
    MASE averaged over the horizons), and the forecaster for the target: one of those, or their
    mean, whichever scores lowest on the validation tail."""
    from seqlab.tasks.forecast_family import ForecastData, make_forecast_data
    from seqlab.tasks.forecast_data import score

    per_arch = {}
    for c in candidates:
        if c["arch"] not in per_arch or c["mase_mean"] < per_arch[c["arch"]]["mase_mean"]:
            per_arch[c["arch"]] = c
    # the cut's frame, to score the mean of the chosen networks on the same validation tail
    with tempfile.TemporaryDirectory() as tmp:
        cut = make_forecast_data(ForecastData(**validation_cut(series, Path(tmp))))
        H = cut.frame.horizon
        mean = np.mean([c["forecast"] for c in per_arch.values()], axis=0)
        combined = float(np.mean([v["mase"] for v in score(cut.frame, mean, range(1, H + 1)).values()]))
        origins = len(cut.frame.origins)
    scores = {f"{a} (seqlab, K={c['options']['members']})": c["mase_mean"] for a, c in per_arch.items()}
    scores[COMBINED] = combined
    return {"chosen_options": {a: c["options"] for a, c in per_arch.items()},
            "candidates": [{k: c[k] for k in ("arch", "candidate", "options", "mase_mean", "best_step",
                                              "augmented_windows", "seconds")}
                           for c in candidates],
            "validation_scores": scores, "forecaster": min(scores, key=scores.get), "validation_origins": origins}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny networks and steps (a smoke test of the script)")
    ap.add_argument("--series", nargs="*", default=list(SERIES), choices=SERIES)
    ap.add_argument("--arima-seconds", type=float, default=float("inf"),
                    help="time for each ARIMA order search (default: no limit, the whole grid whatever the load)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--name", default="forecast")
    args = ap.parse_args()
    from bench_recurrent_speed import machine

    load = os.getloadavg()
    t0 = time.perf_counter()
    done, choices = [], {}
    targets_here = [s for s in args.series if s in CANDIDATES]
    with tempfile.TemporaryDirectory() as cuts, ProcessPoolExecutor(args.workers, initializer=_init) as pool:
        pending = []
        # the slowest first: the order searches of the long series, then the networks
        for s in sorted(args.series, key=lambda s: s not in ("sp500", "co2", "sunspots-monthly", "sp500-returns")):
            pending.append(pool.submit(job_baselines, s, 3.0 if args.quick else args.arima_seconds))
        for s in targets_here:
            where = validation_cut(s, Path(cuts))
            for arch, grid in CANDIDATES[s].items():
                for i, opts in enumerate(grid[:1] if args.quick else grid):
                    pending.append(pool.submit(job_network, s, arch, opts, args.quick, where, i))
        for s in args.series:
            for arch, opts in NETS.get(s, {}).items():
                pending.append(pool.submit(job_network, s, arch, opts, args.quick))
        left = {s: sum(len(g[:1] if args.quick else g) for g in CANDIDATES[s].values()) for s in targets_here}
        while pending:
            finished, rest = wait(pending, return_when=FIRST_COMPLETED)
            pending = list(rest)
            for f in finished:
                d = f.result()
                done.append(d)
                if d["kind"] == "candidate":
                    left[d["series"]] -= 1
                    if left[d["series"]] == 0:  # every candidate scored: train the chosen ones on all
                        s = d["series"]
                        choices[s] = choose(s, [c for c in done if c["kind"] == "candidate" and c["series"] == s])
                        for arch, opts in choices[s]["chosen_options"].items():
                            pending.append(pool.submit(job_network, s, arch, opts, args.quick))
    total = time.perf_counter() - t0

    import seqlab
    from seqlab.tasks.forecast_data import dm_table, reference_name, score
    from seqlab.tasks.forecast_family import ForecastData, make_forecast_data

    seqlab.runs.discover()
    results = {}
    for s in args.series:
        data = make_forecast_data(ForecastData(series=s))
        frame = data.frame
        base = next(d for d in done if d["series"] == s and d["kind"] == "baselines")
        nets = [d for d in done if d["series"] == s and d["kind"] == "network"]
        forecasts = {n["label"]: n["forecast"] for n in nets}
        if len(nets) > 1:  # forecast combination: the plain mean of the networks' forecasts
            forecasts[COMBINED] = np.mean([n["forecast"] for n in nets], axis=0)
        forecasts.update(base["forecasts"])
        ref = reference_name(frame)
        results[s] = {
            "origins": len(frame.origins), "first_origin": data.series.dates[frame.first_origin],
            "stride": data.resolved["stride"], "window_default": data.resolved["window"],
            "scaling": data.resolved["scaling"], "period": frame.period, "mase_scale": frame.scale(),
            "scores": {k: score(frame, f) for k, f in forecasts.items()},
            "dm_vs": ref, "dm": dm_table(frame, forecasts, ref),
            # the networks against ARIMA: is a difference in accuracy more than chance?
            "dm_vs_arima": {k: v for k, v in dm_table(frame, forecasts, "ARIMA (AIC)").items() if "seqlab" in k},
            **({"dm_vs_arima_sqrt": {k: v for k, v in dm_table(frame, forecasts, ARIMA_SQRT).items() if "seqlab" in k}}
               if ARIMA_SQRT in forecasts else {}),
            "fitted": base["fitted"], "baseline_seconds": base["seconds"],
            "networks": {n["label"]: {k: n[k] for k in ("arch", "coverage", "steps", "best_step", "best_val",
                                                          "options", "augmented_windows", "validation_pass",
                                                          "seconds")} for n in nets},
            "_forecasts": forecasts, "_frame": frame, "_data": data,
        }
        if s in choices:
            results[s]["selection"] = {k: v for k, v in choices[s].items() if k != "chosen_options"}
    out = {"command": "python benchmarks/bench_forecast.py" + (" --quick" if args.quick else "") +
           (" --series " + " ".join(args.series) if list(args.series) != list(SERIES) else "") +
           (f" --name {args.name}" if args.name != "forecast" else ""),
           "machine": {**machine(), "threads": 1, "workers": args.workers, "load_average_at_start": list(load)},
           "seconds_total": total, "refit": REFIT, "series": {s: {k: v for k, v in r.items() if not k.startswith("_")}
                                               for s, r in results.items()}}
    out["targets"] = targets(out)
    RESULTS.mkdir(exist_ok=True)
    from seqlab.training.io import atomic_write_json, atomic_write_text

    atomic_write_json(RESULTS / f"{args.name}.json", _jsonable(out))
    atomic_write_text(RESULTS / f"{args.name}.md", markdown(out))
    from seqlab.tasks.forecast_plot import plot_origins

    for s in ("sunspots", "co2"):
        if s in results:
            r = results[s]
            plot_origins(r["_frame"].y, r["_data"].series.dates, r["_frame"].origins, r["_forecasts"], 12,
                         RESULTS / f"{args.name}_{s}.png", title=f"{s}: 12-step forecasts at the rolling origins")
    print(markdown(out))
    return 0


def targets(out: dict) -> dict:
    """The issue's target: MASE@12 below ARIMA's and ETS's on sunspots and CO2, for the forecaster
    chosen on the validation tail (before the held-out tail is looked at)."""
    t = {}
    for s in ("sunspots", "co2"):
        r = out["series"].get(s)
        if r is None or "selection" not in r:
            continue
        sc = r["scores"]
        chosen = r["selection"]["forecaster"]
        arima, ets = sc["ARIMA (AIC)"]["h12"]["mase"], sc["ETS (AIC)"]["h12"]["mase"]
        nets = {k: v["h12"]["mase"] for k, v in sc.items() if "seqlab" in k}
        t[s] = {"forecaster": chosen, "mase12": nets[chosen], "arima": arima, "ets": ets,
                **({"arima_sqrt": sc[ARIMA_SQRT]["h12"]["mase"]} if ARIMA_SQRT in sc else {}),
                "met": nets[chosen] < arima and nets[chosen] < ets,
                "networks_below_both": sorted(k for k, v in nets.items() if v < arima and v < ets),
                "dm_h12_vs_arima": r["dm_vs_arima"][chosen]["h12"]}
    return t


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


def markdown(out: dict) -> str:
    from seqlab.tasks.forecast_data import format_table

    m = out["machine"]
    fit_held_out = ("the networks and their scaling were fitted on the values before the first origin, less a "
                    "validation block")
    fit_refit = ("each network's number of steps was chosen on a validation block, the last values before the first "
                 "origin, then the network and its scaling were fitted on all the values before the first origin "
                 "(refit; the validation-tail candidates below are scored without it)")
    lines = ["# Forecasting: seqlab's GRU / LSTM / Transformer against naive, ARIMA and ETS", "",
             f"Command: `{out['command']}` ({out['seconds_total']:.0f} s in all, {m['workers']} worker processes "
             f"of {m['threads']} torch thread).", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, load average at start "
             f"{', '.join(f'{x:.2f}' for x in m['load_average_at_start'])} (the machine is shared with other "
             "workers: times are slower than on an idle one).", "",
             "Rolling origin over each series' held-out tail (no model sees a value at or after its origin; "
             + (fit_refit if out.get("refit") else fit_held_out) + "; ARIMA's and ETS's parameters were fitted on "
             "all values before the first origin and re-applied at later origins). MASE is scaled by the in-sample "
             "MAE of the seasonal naive forecast (period m); sMAPE in percent. K: ensemble members.", ""]
    t = out.get("targets", {})
    if t:
        lines += ["## Target: MASE@12 below ARIMA and ETS on sunspots and CO2", "",
                  "The forecaster of each series is the one chosen on the validation tail (see its section); the "
                  "held-out tail scores it once.", ""]
        for s, r in t.items():
            verdict = "met" if r["met"] else "NOT met"
            below = r["networks_below_both"]
            d = r["dm_h12_vs_arima"]
            extra = ""
            if "arima_sqrt" in r:
                side = "below" if r["mase12"] < r["arima_sqrt"] else "not below"
                extra = (f" (and, not part of the target, ARIMA on the square roots {r['arima_sqrt']:.3f}: the "
                         f"forecaster is {side} it)")
            lines.append(f"- {s}: {r['forecaster']} MASE@12 {r['mase12']:.3f}, ARIMA {r['arima']:.3f}, "
                         f"ETS {r['ets']:.3f}: {verdict}{extra}; Diebold-Mariano of it against ARIMA at h=12: "
                         f"{d['dm_hln']:+.2f} (p={d['p_value']:.3f})"
                         + (f" (seqlab forecasters below both on the held-out tail: {', '.join(below)})"
                            if below else ""))
        lines.append("")
    for s, r in out["series"].items():
        lines += [f"## {s}", "",
                  f"{r['origins']} origins from {r['first_origin']} (every {r['stride']} step(s)), period m = "
                  f"{r['period']}, MASE scale {r['mase_scale']:.4g}, network scaling {r['scaling']}"
                  + (" by default (each network's own below)" if any("scaling" in n["options"] for n in
                                                                     r["networks"].values()) else "")
                  + ".", "", "```",
                  format_table(r["scores"]), "```", ""]
        for name, info in r["fitted"].items():
            if "order" in info:
                lines.append(f"- {name}: order {tuple(info['order'])} seasonal {tuple(info['seasonal_order'])}, "
                             f"trend {info['trend']}, AIC {info['aic']:.1f}"
                             + (" (of the square roots)" if name == ARIMA_SQRT else "")
                             + f", {info['fits']} of the {info['grid']} orders of the grid fitted")
            else:
                lines.append(f"- {name}: {info['form']}, AIC {info['aic']:.1f}")
        sel = r.get("selection")
        if sel:
            lines += ["", f"Chosen on the validation tail ({sel['validation_origins']} origins before the held-out "
                      "tail; MASE averaged over horizons 1..H): "
                      + ", ".join(f"{k} {v:.3f}" for k, v in sel["validation_scores"].items())
                      + f"; the forecaster: **{sel['forecaster']}**.", "",
                      "| architecture | K | head | scaling | augment | hidden | window | validation-tail MASE (mean "
                      "over h) | best step | s |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
            archs = sorted({c["arch"] for c in sel["candidates"]})  # gru, lstm, transformer
            for c in sorted(sel["candidates"], key=lambda c: (archs.index(c["arch"]), c["candidate"])):
                o = c["options"]
                lines.append(f"| {c['arch']} | {o['members']} | {o.get('head', 'gaussian')} | "
                             f"{o.get('scaling', r['scaling'])} | "
                             f"{o.get('augment') or '-'} | {o['hidden_size']} | "
                             f"{o.get('window', r['window_default'])} | "
                             f"{c['mase_mean']:.3f} | {c['best_step']} | {c['seconds']:.0f} |")
            lines.append("")
            aug = sorted({c["options"]["augment"] for c in sel["candidates"] if c["options"].get("augment")})
            if aug:
                best = {}
                for c in sel["candidates"]:
                    k = (c["arch"], bool(c["options"].get("augment")))
                    best[k] = min(best.get(k, float("inf")), c["mase_mean"])
                lines += [f"Training windows augmented by {', '.join(aug)} (the 12 phase-shifted annual means of the "
                          "months before the training part's end), the best candidate of each architecture with and "
                          "without, on the validation tail: " + ", ".join(
                              f"{a} {best[(a, True)]:.3f} with, {best[(a, False)]:.3f} without"
                              for a in archs if (a, True) in best and (a, False) in best) + ".", ""]
            heads = sorted({c["options"].get("head", "gaussian") for c in sel["candidates"]})
            if len(heads) > 1:
                best = {}
                for c in sel["candidates"]:
                    k = (c["arch"], c["options"].get("head", "gaussian"))
                    best[k] = min(best.get(k, float("inf")), c["mase_mean"])
                lines += ["The best candidate of each architecture with each head, on the validation tail: "
                          + "; ".join(f"{a} " + ", ".join(f"{h} {best[(a, h)]:.3f}" for h in heads if (a, h) in best)
                                      for a in archs) + ".", ""]
        for name, n in r["networks"].items():
            o = n["options"]
            lines.append(f"- {name}: {o.get('head', 'gaussian')} head, scaling {o.get('scaling', r['scaling'])}, "
                         + (f"training windows augmented by {o['augment']} ({n['augmented_windows']} extra), "
                            if o.get("augment") else "")
                         + f"hidden {o['hidden_size']}, "
                         f"window {o.get('window', r['window_default'])}, "
                         + (f"refit for {n['steps']} steps (the validation pass's best step of its "
                            f"{n['validation_pass']['steps']})" if n.get("validation_pass") else
                            f"{n['steps']} steps (best validation at step {n['best_step']})")
                         + f", {n['seconds']:.0f} s (both passes); 95% "
                         "interval coverage " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in n["coverage"].items()))
        lines += ["", f"Diebold-Mariano (HLN, squared error) against {r['dm_vs']}: statistic (p); negative means more "
                  "accurate than it.", "", "| model | h=1 | h=6 | h=12 |", "|---|---|---|---|"]
        for name, d in r["dm"].items():
            lines.append(f"| {name} | " + " | ".join(f"{d[k]['dm_hln']:+.2f} ({d[k]['p_value']:.3f})"
                                                     for k in ("h1", "h6", "h12") if k in d) + " |")
        lines += ["", "The networks against ARIMA (AIC), the same test: negative means more accurate than ARIMA.", "",
                  "| model | h=1 | h=6 | h=12 |", "|---|---|---|---|"]
        for name, d in r["dm_vs_arima"].items():
            lines.append(f"| {name} | " + " | ".join(f"{d[k]['dm_hln']:+.2f} ({d[k]['p_value']:.3f})"
                                                     for k in ("h1", "h6", "h12") if k in d) + " |")
        if "dm_vs_arima_sqrt" in r:
            lines += ["", f"The networks against {ARIMA_SQRT}, the same test: negative means more accurate than it.",
                      "", "| model | h=1 | h=6 | h=12 |", "|---|---|---|---|"]
            for name, d in r["dm_vs_arima_sqrt"].items():
                lines.append(f"| {name} | " + " | ".join(f"{d[k]['dm_hln']:+.2f} ({d[k]['p_value']:.3f})"
                                                         for k in ("h1", "h6", "h12") if k in d) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
