"""``seqlab gradflow``: vanishing and exploding gradients of RNN, LSTM and GRU, and gradient
clipping (``seqlab.recurrent.gradflow``, ``.clipping``)."""

from __future__ import annotations

import argparse

VERB = "gradflow"


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, received {text!r}") from None


def run(args: argparse.Namespace) -> int:
    import json as _json

    from seqlab.paths import output_dir
    from seqlab.recurrent import clipping
    from seqlab.recurrent import gradflow as gf
    from seqlab.recurrent import gradflow_report as report
    from seqlab.training.io import atomic_write_json, atomic_write_text
    from seqlab.viz.recurrent import plot_clipping, plot_gradflow

    out = output_dir(args.out, "--out")  # before the measurement, not after it
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    result = gf.gradflow(cells, args.scales, args.length, args.hidden_size, args.batch_size, args.seed,
                         repeats=args.repeats, forget_bias=None if args.default_gates else args.forget_bias,
                         progress=not args.quiet)
    out.mkdir(parents=True, exist_ok=True)
    table = report.format_table(result)
    plot_gradflow(result, out / "gradflow.png")
    atomic_write_text(out / "gradflow.txt", table + "\n")
    payload = {"gradflow": report.to_json(result)}
    lines = [table]
    if not args.no_clipping:
        demo = clipping.clipping_demo(seed=args.seed)
        plot_clipping(demo, out / "clipping.png")
        payload["clipping"] = clipping.to_json(demo)
        lines.append(clipping.format_clipping(demo))
    atomic_write_json(out / "gradflow.json", payload)
    if args.json:
        print(_json.dumps(payload))
        return 0
    print("\n".join(lines))
    print(f"wrote {out / 'gradflow.png'}, {out / 'gradflow.txt'}, {out / 'gradflow.json'}"
          + ("" if args.no_clipping else f", {out / 'clipping.png'}"))
    return 0


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser("gradflow", help="measure vanishing and exploding gradients (RNN, LSTM, GRU)",
                       description="||dC/da_t|| and ||da_T/da_t|| against t for RNN, LSTM and GRU at several "
                       "recurrent-weight scales on a long-dependency task (remember the first symbol), plus a "
                       "demonstration that gradient clipping keeps an exploding RNN trainable. Writes a plot, "
                       "a table and JSON.")
    p.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated cells (default rnn,lstm,gru)")
    p.add_argument("--scales", type=_floats, default=[0.5, 1.0, 1.5],
                   help="recurrent-weight scales: spectral norm of each recurrent matrix (default 0.5,1,1.5)")
    p.add_argument("--length", "-T", type=int, default=200, help="sequence length T (default 200)")
    p.add_argument("--hidden-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2, help="independent draws averaged (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--forget-bias", type=float, default=4.0,
                   help="LSTM b^(f) and minus the GRU's b^(z): how open the memory path starts (default 4)")
    p.add_argument("--default-gates", action="store_true", help="keep the models' default gate biases (about 0)")
    p.add_argument("--no-clipping", action="store_true", help="skip the clipping demonstration")
    p.add_argument("--out", default="gradflow", help="output folder (default ./gradflow)")
    p.add_argument("--json", action="store_true", help="print everything (curves, summary, clipping runs) as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress display (on stderr)")
    p.set_defaults(handler=run)
