"""``seqlab forecast RUN_DIR [--horizon H] [--level 0.95] [--png forecast.png] [--json]``: the forecast
of a forecast run (``seqlab train forecast``) from the end of its series, with the prediction
interval of its Gaussian head, printed (or as JSON) and drawn."""

from __future__ import annotations

import argparse
import json

VERB = "forecast"


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(VERB, help="forecast the next steps of a series with a forecast run",
                       description="Forecast the H steps after the end of the series of the forecast run "
                       "RUN_DIR (its trained horizon at most: the network forecasts them all at once), with "
                       "the mean and the prediction interval of the ensemble's Gaussian head.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--horizon", type=int, default=None, help="steps to forecast (default: the run's horizon)")
    p.add_argument("--level", type=float, default=0.95, help="coverage of the interval (default 0.95)")
    p.add_argument("--png", default=None, help="draw the forecast into this PNG file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from seqlab.cli.attention import load_view
    from seqlab.paths import output_file
    from seqlab.validation import check_float, check_int

    # the inputs first: a bad one is refused before the run is read
    if args.horizon is not None:
        check_int(args.horizon, "--horizon", minimum=1)
    check_float(args.level, "--level", minimum=0.0, maximum=1.0, open_min=True, open_max=True)
    if args.png is not None:
        output_file(args.png, "--png")
    model, record, family = load_view(args.run, VERB)
    out = family.forecast(model, record, args.horizon, args.level)
    if args.png is not None:
        from seqlab.tasks.forecast_plot import plot_forecast

        plot_forecast(out, args.png)
    if args.json:
        print(json.dumps({k: v for k, v in out.items() if not k.startswith("history")}))
    else:
        pct = int(round(100 * out["level"]))
        print(f"{out['series']}: {out['horizon']}-step forecast ({out['arch']}) after "
              f"{out['last_date'] or 'the last value'}, with {pct}% interval")
        for i in range(out["horizon"]):
            when = out["dates"][i] if out["dates"] else f"+{i + 1}"
            print(f"  {when:>10}  {out['mean'][i]:12.4g}  [{out['lower'][i]:.4g}, {out['upper'][i]:.4g}]")
        if args.png is not None:
            print(f"wrote {args.png}")
    return 0
