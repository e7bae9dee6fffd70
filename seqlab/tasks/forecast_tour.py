"""The forecasting part of the tour's Applications section: a small GRU ensemble trained briefly
on the yearly sunspot numbers, scored by rolling origin over the held-out tail against naive,
seasonal naive, ARIMA (AIC) and ETS, with the benchmark's full numbers quoted."""

from __future__ import annotations

from seqlab.tour.context import TourContext, quoted_benchmark
from seqlab.training.device import cpu_threads
from seqlab.viz.report import Section


def forecast(ctx: TourContext, sec: Section) -> str:
    import seqlab
    from seqlab.tasks.forecast_data import baselines, network_forecasts, score
    from seqlab.tasks.forecast_family import ForecastEvaluation
    from seqlab.tasks.forecast_plot import plot_origins

    sec.text("Lecture: \"Time series prediction (for example, stock price prediction)\". A forecaster reads a "
             "window of W past values with seqlab's GRU and maps its last state to the centre and log variance "
             "of each of the next H values at once (direct multi-step forecasting), trained by the negative "
             "log-likelihood of a Gaussian (squared errors) or, here, of a Laplace distribution (absolute errors, "
             "a median forecast: the errors MASE counts; b_h = sqrt(s_h^2 / 2)); an ensemble of K such networks "
             "gives the mixture's centre and interval.")
    sec.equation(r"\mu_h = w^{(\mu)}_h \cdot a_W + b^{(\mu)}_h, \quad \log s_h^2 = w^{(s)}_h \cdot a_W + b^{(s)}_h",
                 r"L_{\mathrm{Gauss}} = \frac{1}{2}\log(2\pi s_h^2) + \frac{(z_h - \mu_h)^2}{2 s_h^2}, \quad "
                 r"L_{\mathrm{Laplace}} = \log(2 b_h) + \frac{|z_h - \mu_h|}{b_h}")
    sec.code("seqlab train forecast --series sunspots --arch gru --head laplace\nseqlab eval RUN\n"
             "seqlab forecast RUN --horizon 12 --png forecast.png")
    if ctx.quick:
        opts = dict(preset="cpu-tiny", max_steps=3, eval_every=3, eval_batches=1, batch_size=8, warmup_steps=1,
                    log_every=1)
    else:
        # the GRU the benchmark chooses on the sunspots' validation tail: 5 GRUs of 16 units, window 22,
        # the Laplace head, the series' standard scaling, 300 steps (about 20 s on a shared 2-core CPU);
        # the benchmark trains every architecture on five series (benchmarks/results/forecast.md)
        opts = dict(arch="gru", hidden_size=16, members=5, window=22, head="laplace", nll_beta=1.0, max_steps=300,
                    eval_every=100, eval_batches=4, log_every=25)
    with cpu_threads(1):
        result = ctx.train("forecast", name="forecast", guard=40, series="sunspots", **opts)
        model, run = seqlab.load(result.run_dir)
        fam = seqlab.runs.get_family("forecast")
        data = fam._data(run)
        frame = data.frame
        base = baselines(frame, arima_seconds=0.0 if ctx.quick else 15.0)
        net = network_forecasts(model, data.windows, frame.origins)
    label = f"GRU ensemble (K={run.config.members})"
    forecasts = {label: net["mean"], **{k: v[0] for k, v in base.items()}}
    scores = {k: score(frame, f) for k, f in forecasts.items()}
    small = "a tiny" if ctx.quick else "a small"
    sec.text(f"Here {small} run ({result.steps} steps; `seqlab train forecast --series sunspots --arch gru`), "
             f"scored at {len(frame.origins)} rolling origins from {data.series.dates[frame.first_origin][:4]} "
             "(each model sees only the values before its origin). MASE is scaled by the in-sample MAE of the "
             "seasonal naive forecast (m = 11 years).")
    sec.table(["model", "MASE@1", "MASE@6", "MASE@12", "sMAPE@12"],
              [[k, f"{v['h1']['mase']:.3f}", f"{v['h6']['mase']:.3f}", f"{v['h12']['mase']:.3f}",
                f"{v['h12']['smape']:.1f}%"] for k, v in scores.items()])
    path = ctx.out / "forecast_sunspots.png"
    plot_origins(frame.y, data.series.dates, frame.origins, {label: net["mean"], "ARIMA (AIC)": base["ARIMA (AIC)"][0]},
                 12, path, title="yearly sunspots: 12-step forecasts at the rolling origins")
    sec.figure(path, "12-step forecasts at each origin of the held-out tail: the GRU ensemble and ARIMA")
    saved = quoted_benchmark(sec, "forecast", " (every architecture, five series, all baselines in one run)")
    if saved:
        rows = []
        for s, r in saved["series"].items():
            for name in r["scores"]:
                rows.append([s, name, f"{r['scores'][name]['h12']['mase']:.3f}"])
        sec.table(["series", "model", "MASE@12"], rows)
    _ = ForecastEvaluation  # the same evaluation as `seqlab eval RUN`
    best = min(scores, key=lambda k: scores[k]["h12"]["mase"])
    return (f"forecast: sunspots MASE@12: {label} {scores[label]['h12']['mase']:.3f}, ARIMA "
            f"{scores['ARIMA (AIC)']['h12']['mase']:.3f}, ETS {scores['ETS (AIC)']['h12']['mase']:.3f} (best: {best})")
