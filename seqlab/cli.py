"""The ``seqlab`` command: one entry point, one subcommand per job.

Errors a user can cause (bad options, bad files, bad data) print one line,
``seqlab: error: ...``, and exit with status 2; nothing is written over good files.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn

    return register


# --------------------------------------------------------------------------- unfold
@command("unfold")
def _unfold(args: argparse.Namespace) -> int:
    from seqlab.recurrent import unfold as uf

    result = uf.unfold(args.length, output=args.output, layers=args.layers, wrt=args.wrt)
    if args.png:
        uf.render_png(result, args.png)
    if args.json:
        print(json.dumps(uf.to_json(result)))
    else:
        print(uf.render_text(result))
        if args.png:
            print(f"wrote {args.png}")
    return 0


def _add_unfold(sub) -> None:
    p = sub.add_parser(
        "unfold",
        help="which weight copies one BPTT step uses for dC/dW",
        description="Unroll an Elman RNN over T steps and answer the lecture's question: which "
        "weights, including copies of the same weight, are used in one BPTT gradient step "
        "when computing dC/dW? The answer is read off the computation graph of the unrolled "
        "network.",
    )
    p.add_argument("--length", "-T", type=int, required=True, help="sequence length T (>= 1)")
    p.add_argument("--output", choices=["last", "sequence"], default="sequence",
                   help="one output at the end of the item, or one per step (default)")
    p.add_argument("--layers", type=int, default=1, help="stacked recurrent layers (default 1)")
    p.add_argument("--wrt", default="w_x",
                   help="the weight W: w_x, w_a, b_a, w_o or b_o (with several layers w_x[l] ...)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.add_argument("--png", metavar="FILE", help="also draw the unrolled network to a PNG")


# --------------------------------------------------------------------------- train
TRAIN_OPTIONS = [
    # (flag, type, help) -- dest is the flag with '_' for '-'; only options given are used
    ("--max-steps", int, "optimizer steps of the whole run"),
    ("--max-seconds", float, "wall-clock budget of this invocation"),
    ("--batch-size", int, "sequences per batch"),
    ("--lr", float, "peak learning rate (AdamW)"),
    ("--min-lr", float, "learning rate at the end of the cosine decay (default lr/10)"),
    ("--warmup-steps", int, "steps of linear warmup"),
    ("--schedule", str, "cosine or constant"),
    ("--weight-decay", float, "AdamW weight decay on matrices"),
    ("--beta1", float, "AdamW beta1"),
    ("--beta2", float, "AdamW beta2"),
    ("--clip-norm", float, "clip the gradient norm to this (0 = off)"),
    ("--clip-value", float, "clip every gradient entry to [-v, v] (0 = off)"),
    ("--eval-every", int, "steps between validation evaluations"),
    ("--eval-batches", int, "batches per evaluation"),
    ("--patience", int, "early stopping: evaluations without improvement"),
    ("--save-every", int, "steps between checkpoints (default: every evaluation)"),
    ("--keep-last", int, "newest checkpoints kept (the best is kept too)"),
    ("--seed", int, "random seed"),
    ("--device", str, "auto, cpu, cuda, cuda:N or mps"),
    ("--precision", str, "auto, fp32 or bf16 (bf16 autocast on CUDA)"),
    ("--log-every", int, "steps between lines in metrics.jsonl"),
]
MODEL_OPTIONS = [
    ("--hidden-size", int, "hidden units H per layer"),
    ("--num-layers", int, "stacked recurrent layers L"),
    ("--dropout", float, "dropout between layers"),
    ("--nonlinearity", str, "rnn: tanh or relu"),
    ("--reset", str, "gru: before (the lecture's form) or after (PyTorch's)"),
    ("--forget-bias", float, "lstm: initial forget-gate bias"),
]


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _read_config_file(path: str) -> dict:
    """A TOML file of option names (flat, or under [model], [train], [data])."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ValueError(f"--config: expected an existing TOML file, received {path!r} (no such file)") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"--config: expected valid TOML, received {path!r} ({e})") from None
    flat: dict = {}
    for k, v in raw.items():
        if isinstance(v, dict) and k in ("model", "train", "data"):
            flat.update({kk.replace("-", "_"): vv for kk, vv in v.items()})
        else:
            flat[k.replace("-", "_")] = v
    return flat


def _train_options(args: argparse.Namespace) -> tuple[dict, dict, dict]:
    """(model options, train options, data options) from --config and explicit flags."""
    given = dict(_read_config_file(args.config)) if getattr(args, "config", None) else {}
    given.update({k: v for k, v in vars(args).items() if k in _ALL_DESTS and v is not None})
    model = {k: given.pop(k) for k in list(given) if k in _MODEL_DESTS}
    train = {k: given.pop(k) for k in list(given) if k in _TRAIN_DESTS}
    for k in ("clip_norm", "clip_value"):
        if train.get(k) == 0:
            train[k] = None
    data = {k: given.pop(k) for k in list(given) if k in ("text", "preset", "block_size")}
    if given:
        raise ValueError(f"--config: expected option names such as hidden_size or lr, received unknown {sorted(given)}")
    return model, train, data


_MODEL_DESTS = {_dest(f) for f, _, _ in MODEL_OPTIONS} | {"fused"}
_TRAIN_DESTS = {_dest(f) for f, _, _ in TRAIN_OPTIONS}
_ALL_DESTS = _MODEL_DESTS | _TRAIN_DESTS | {"text", "preset", "block_size"}


@command("train")
def _train(args: argparse.Namespace) -> int:
    from seqlab.recurrent import charlm_runs

    model, train, data = _train_options(args)
    progress = not args.quiet
    if args.resume:
        if args.model:
            model["cell"] = args.model  # must match the saved run's cell
        result, run_dir = charlm_runs.resume(args.resume, progress=progress, model_options=model,
                                             train_options=train, text=data.get("text"),
                                             block_size=data.get("block_size"))
    else:
        if args.model is None:
            raise ValueError("model: expected one of rnn, lstm, gru (or --resume RUN_DIR), received nothing")
        result, run_dir = charlm_runs.start(args.model, out=args.out, progress=progress, model_options=model,
                                            train_options=train, **data)
    print(f"run {run_dir}: {charlm_runs.summary(result)}")
    if result.stopped == "interrupted":
        print(f"interrupted at step {result.steps}; saved {result.checkpoint}; "
              f"continue with: seqlab train --resume {run_dir}")
        return 130
    if args.sample_length > 0 and result.checkpoint is not None:
        text = charlm_runs.sample(run_dir, None, length=args.sample_length, temperature=0.8, seed=0)
        print("sample:", text)
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a character language model (rnn, lstm, gru)",
        description="Train a character-level language model on the embedded default text "
        "(Python's reference manual, pydoc_data.topics), on any UTF-8 file (--text PATH) or on "
        "tiny Shakespeare (--text shakespeare). Writes a run directory with checkpoints and "
        "metrics.jsonl; Ctrl-C saves; --resume RUN_DIR continues.",
    )
    p.add_argument("model", nargs="?", choices=["rnn", "lstm", "gru"], help="the recurrent cell")
    p.add_argument("--text", help="a UTF-8 text file, 'pydoc' (default) or 'shakespeare'")
    p.add_argument("--preset", help="named size: cpu-tiny, cpu-small (default), cpu-medium, gpu-baby")
    p.add_argument("--block-size", type=int, help="characters per training sequence (default 128)")
    g = p.add_argument_group("model")
    for flag, typ, hlp in MODEL_OPTIONS:
        g.add_argument(flag, type=typ, help=hlp)
    g.add_argument("--no-fused", dest="fused", action="store_const", const=False,
                   help="use the readable per-step code instead of the fused fast path")
    g = p.add_argument_group("training")
    for flag, typ, hlp in TRAIN_OPTIONS:
        g.add_argument(flag, type=typ, help=hlp)
    p.add_argument("--out", help="run directory (default runs/MODEL-DATE-TIME)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run saved in RUN_DIR")
    p.add_argument("--config", metavar="FILE", help="TOML file of options (flags given here win)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--sample-length", type=int, default=200, help="characters to sample at the end (0 = none)")


# --------------------------------------------------------------------------- sample
@command("sample")
def _sample(args: argparse.Namespace) -> int:
    from seqlab.recurrent import charlm_runs

    text = charlm_runs.sample(args.run, args.prompt, length=args.length, temperature=args.temperature,
                              top_k=args.top_k, seed=args.seed)
    print((args.prompt or "") + text)
    return 0


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a trained model",
                       description="Sample from the best checkpoint of RUN_DIR (or a checkpoint directory).")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--prompt", default=None, help="text to start from (default: a newline)")
    p.add_argument("--length", type=int, default=300, help="characters to generate")
    p.add_argument("--temperature", type=float, default=0.8, help="softmax temperature (0 = greedy)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely characters")
    p.add_argument("--seed", type=int, default=0)


# --------------------------------------------------------------------------- tour
@command("tour")
def _tour(args: argparse.Namespace) -> int:
    from seqlab.tour import run_tour

    result = run_tour(args.out, quick=args.quick, progress=not args.quiet, only=args.only)
    print(f"report: {result.report}  ({result.seconds:.0f} s, {result.failures} failed step(s))")
    return 1 if result.failures else 0


def _add_tour(sub) -> None:
    p = sub.add_parser("tour", help="walk through the lecture: train each model briefly, write report.html",
                       description="The main job: every section of the lecture that seqlab implements, on "
                       "embedded data; one line of result per step and an HTML report with the plots. "
                       "About ten minutes on 2 CPU cores; --quick takes well under a minute.")
    p.add_argument("--out", default="tour", help="output folder (default ./tour)")
    p.add_argument("--quick", action="store_true", help="tiny settings (for tests and a first look)")
    p.add_argument("--only", nargs="+", metavar="WORD", help="run only the steps whose title contains WORD")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# --------------------------------------------------------------------------- gradflow
def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, received {text!r}") from None


@command("gradflow")
def _gradflow(args: argparse.Namespace) -> int:
    import json as _json
    from pathlib import Path

    from seqlab.recurrent import gradflow as gf
    from seqlab.training.checkpoint import atomic_write_json, atomic_write_text

    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    result = gf.gradflow(cells, args.scales, args.length, args.hidden_size, args.batch_size, args.seed,
                         repeats=args.repeats, forget_bias=None if args.default_gates else args.forget_bias)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = gf.format_table(result)
    gf.plot(result, out / "gradflow.png")
    atomic_write_text(out / "gradflow.txt", table + "\n")
    payload = {"gradflow": gf.to_json(result)}
    lines = [table]
    if not args.no_clipping:
        demo = gf.clipping_demo(seed=args.seed)
        gf.plot_clipping(demo, out / "clipping.png")
        payload["clipping"] = gf.to_json(demo)
        lines.append(gf.format_clipping(demo))
    atomic_write_json(out / "gradflow.json", payload)
    if args.json:
        print(_json.dumps(payload))
        return 0
    print("\n".join(lines))
    print(f"wrote {out / 'gradflow.png'}, {out / 'gradflow.txt'}, {out / 'gradflow.json'}"
          + ("" if args.no_clipping else f", {out / 'clipping.png'}"))
    return 0


def _add_gradflow(sub) -> None:
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


# --------------------------------------------------------------------------- bptt
@command("bptt")
def _bptt(args: argparse.Namespace) -> int:
    from seqlab.recurrent.bptt import compare_with_autograd

    worst = 0.0
    print("NumPy BPTT (the lecture's chain-rule sums) against PyTorch autograd, float64")
    print(f"{'seed':>4}  {'output':8}  {'cost':13}  {'layers':>6}  {'truncate':>8}  max |difference|")
    for seed in range(args.seed, args.seed + args.trials):
        hidden = [args.hidden_size] * args.layers
        d = compare_with_autograd(seed, hidden_sizes=hidden, output=args.output, loss=args.loss,
                                  truncate=args.truncate)
        worst = max(worst, d)
        print(f"{seed:>4}  {args.output:8}  {args.loss:13}  {args.layers:>6}  {str(args.truncate or '-'):>8}  {d:.2e}")
    print(f"worst: {worst:.2e}")
    return 0 if worst < 1e-9 else 1


def _add_bptt(sub) -> None:
    p = sub.add_parser("bptt", help="check the NumPy BPTT against autograd",
                       description="Run backpropagation through time written by hand in NumPy on random Elman "
                       "networks and compare every gradient with PyTorch autograd (float64).")
    p.add_argument("--output", choices=["last", "sequence"], default="sequence")
    p.add_argument("--loss", choices=["squared", "cross_entropy"], default="squared")
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--hidden-size", type=int, default=5)
    p.add_argument("--truncate", type=int, default=None, help="truncated BPTT over k steps")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqlab",
        description="Sequence and generative neural networks from the lecture's equations.",
    )
    from seqlab import __version__

    parser.add_argument("--version", action="version", version=f"seqlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_tour(sub)
    _add_train(sub)
    _add_sample(sub)
    _add_unfold(sub)
    _add_bptt(sub)
    _add_gradflow(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ValueError as exc:  # bad input: one line, no traceback
        print(f"seqlab: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"seqlab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
