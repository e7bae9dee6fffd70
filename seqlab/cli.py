"""The ``seqlab`` command: one entry point, one subcommand per job.

Errors a user can cause (bad options, bad files, bad data) print one line,
``seqlab: error: ...``, and exit with status 2; nothing is written over good files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
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
    from seqlab.viz.recurrent import plot_unfold

    result = uf.unfold(args.length, output=args.output, layers=args.layers, wrt=args.wrt)
    if args.png:
        plot_unfold(result, args.png)
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
    ("--hidden-size", int, "hidden width: rnn, lstm, gru: units H per layer; rbm: hidden units; vae: MLP width; "
                           "gan: generator width"),
    ("--num-layers", int, "stacked recurrent layers L"),
    ("--dropout", float, "dropout between layers"),
    ("--nonlinearity", str, "rnn: tanh or relu"),
    ("--reset", str, "gru: before (the lecture's form) or after (PyTorch's)"),
    ("--forget-bias", float, "lstm: initial forget-gate bias"),
    ("--d-model", int, "gpt, bert: width D of the transformer"),
    ("--num-heads", int, "gpt, bert: attention heads h (D must be a multiple of h)"),
    ("--d-ff", int, "gpt, bert: hidden width of the MLP (default 4 D)"),
    ("--position", str, "gpt: learned or sinusoidal positional encoding"),
    ("--k", int, "rbm: Gibbs steps per update (CD-k / PCD-k, default 1)"),
    ("--n-chains", int, "rbm: persistent chains (default: the batch size)"),
    ("--init-std", float, "rbm: standard deviation of the initial weights (default 0.01)"),
    ("--latent-size", int, "vae: latent dimensions (default 8; 2 for a latent map with a decoded grid)"),
    ("--noise-size", int, "gan: noise dimensions (default 32)"),
    ("--d-hidden-size", int, "gan: discriminator width (default: the generator's, --hidden-size)"),
    ("--gan-loss", str, "gan: non-saturating (default) or minimax generator loss"),
    ("--d-steps", int, "gan: discriminator updates per generator update"),
    ("--timesteps", int, "diffusion: noising steps T (default 200)"),
    ("--beta-schedule", str, "diffusion: linear (default) or cosine noise schedule"),
    ("--base-channels", int, "diffusion: U-Net width"),
]
DATA_DESTS = ("text", "preset", "block_size", "tokenizer", "vocab_size", "images", "image_size", "channels")
GENERATIVE = ("gan", "vae", "diffusion")
# CLI name -> model config field, per generative family
GENERATIVE_FIELDS = {"gan": {"noise_size": "noise_size", "hidden_size": "hidden_size",
                             "d_hidden_size": "d_hidden_size", "gan_loss": "loss", "d_steps": "d_steps"},
                     "vae": {"latent_size": "latent_size", "hidden_size": "hidden_size"},
                     "diffusion": {"timesteps": "timesteps", "beta_schedule": "beta_schedule",
                                   "base_channels": "base_channels"}}
TRANSFORMERS = ("gpt", "bert")
RBM_DATA = ("images",)


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
    data = {k: given.pop(k) for k in list(given) if k in DATA_DESTS}
    if given:
        raise ValueError(f"--config: expected option names such as hidden_size or lr, received unknown {sorted(given)}")
    return model, train, data


_MODEL_DESTS = {_dest(f) for f, _, _ in MODEL_OPTIONS} | {"fused", "persistent"}
_TRAIN_DESTS = {_dest(f) for f, _, _ in TRAIN_OPTIONS}
_ALL_DESTS = _MODEL_DESTS | _TRAIN_DESTS | set(DATA_DESTS)


def _train_transformer(args: argparse.Namespace, model: dict, train: dict, data: dict) -> int:
    from seqlab.llm import bert_runs, runs
    from seqlab.training.rundir import run_family

    progress = not args.quiet
    family = args.model or run_family(args.resume)
    if args.resume:
        extra = sorted(k for k in data if k != "text")
        if extra:
            raise ValueError(f"--resume: expected no data options but --text (the run's are kept), received {extra}")
    if family == "bert":
        if args.resume:
            result, run_dir = bert_runs.resume_bert(args.resume, progress=progress, text=data.get("text"),
                                                    model_options=model, train_options=train)
        else:
            result, run_dir = bert_runs.start_bert(out=args.out, progress=progress, model_options=model,
                                                   train_options=train, **data)
        print(f"run {run_dir}: {bert_runs.summary(result)}")
    else:
        if args.resume:
            result, run_dir = runs.resume_gpt(args.resume, progress=progress, text=data.get("text"),
                                              model_options=model, train_options=train)
        else:
            result, run_dir = runs.start_gpt(out=args.out, progress=progress, model_options=model,
                                             train_options=train, **data)
        print(f"run {run_dir}: {runs.summary(result)}")
    if result.stopped == "interrupted":
        print(f"interrupted at step {result.steps}; saved {result.checkpoint}; "
              f"continue with: seqlab train --resume {run_dir}")
        return 130
    if family == "gpt" and args.sample_length > 0 and result.checkpoint is not None:
        print("sample:", runs.sample_gpt(run_dir, None, length=args.sample_length, temperature=0.8, seed=0))
    if family == "bert" and result.checkpoint is not None:
        print(bert_runs.fill_demo(run_dir))
    return 0


def _train_generative(args: argparse.Namespace, model: dict, train: dict, data: dict) -> int:
    from seqlab.generative import runs as gruns
    from seqlab.training.rundir import run_family

    progress = not args.quiet
    family = args.model or run_family(args.resume)
    names = GENERATIVE_FIELDS[family]
    extra = sorted([k for k in model if k not in names] + [k for k in data if k not in ("images", "image_size",
                                                                                         "channels")])
    if extra:
        allowed = ", ".join("--" + k.replace("_", "-") for k in names)
        raise ValueError(f"{family}: expected only the options {allowed}, --images, --image-size, --channels and "
                         f"the training options, received {['--' + k.replace('_', '-') for k in extra]}")
    model = {names[k]: v for k, v in model.items()}
    if args.resume:
        if data:
            raise ValueError(f"--resume: expected no data options (the run's images are kept), received {sorted(data)}")
        result, run_dir = gruns.resume_run(args.resume, progress=progress, model_options=model, train_options=train)
    else:
        result, run_dir = gruns.start_run(family, out=args.out, progress=progress, model_options=model,
                                          train_options=train, **data)
    print(f"run {run_dir}: {gruns.summary(result, family)}")
    if result.stopped == "interrupted":
        print(f"interrupted at step {result.steps}; saved {result.checkpoint}; "
              f"continue with: seqlab train --resume {run_dir}")
        return 130
    print(f"sample grids in {Path(run_dir) / 'samples'}; evaluate with: seqlab eval {run_dir}")
    return 0


def _train_rbm(args: argparse.Namespace, model: dict, train: dict, data: dict) -> int:
    from seqlab.energy import rbm_runs
    from seqlab.viz.energy import plot_rbm_pictures

    progress = not args.quiet
    extra = sorted(k for k in list(model) + list(data) if k not in rbm_runs.RBM_MODEL_FIELDS and k not in RBM_DATA)
    if extra:
        raise ValueError(f"rbm: expected only the options --hidden-size, --k, --cd, --n-chains, --init-std, "
                         f"--images and the training options, received {['--' + k.replace('_', '-') for k in extra]}")
    if args.resume:
        if data:
            raise ValueError(f"--resume: expected no data options (the run's images are kept), received {sorted(data)}")
        result, run_dir = rbm_runs.resume_rbm(args.resume, progress=progress, model_options=model,
                                              train_options=train)
    else:
        result, run_dir = rbm_runs.start_rbm(out=args.out, progress=progress, model_options=model,
                                             train_options=train, **data)
    print(f"run {run_dir}: {rbm_runs.summary(result)}")
    if result.stopped == "interrupted":
        print(f"interrupted at step {result.steps}; saved {result.checkpoint}; "
              f"continue with: seqlab train --resume {run_dir}")
        return 130
    if result.checkpoint is not None:
        rbm, _ = rbm_runs.load_rbm(run_dir)
        images = rbm_runs.run_images(run_dir)
        print(rbm_runs.evaluate_rbm(rbm, images).line())
        paths = plot_rbm_pictures(rbm, images, run_dir)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


@command("train")
def _train(args: argparse.Namespace) -> int:
    from seqlab.recurrent import charlm_runs
    from seqlab.training.rundir import run_family

    model, train, data = _train_options(args)
    saved = run_family(args.resume) if args.resume and args.model is None else None
    if args.model in GENERATIVE or saved in GENERATIVE:
        return _train_generative(args, model, train, data)
    for k in ("image_size", "channels"):
        if k in data:
            raise ValueError(f"--{k.replace('_', '-')}: expected only with gan, vae or diffusion and a folder of "
                             f"images, received {data[k]!r}")
    gen_only = sorted(({k for f in GENERATIVE_FIELDS.values() for k in f} - {"hidden_size"}) & set(model))
    if gen_only:
        raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in gen_only)}: expected only with gan, vae "
                         f"or diffusion, received them with {args.model or 'a resumed run'}")
    if args.model == "rbm" or saved == "rbm":
        return _train_rbm(args, model, train, data)
    if "images" in data:
        raise ValueError(f"--images: expected only with rbm, received {data['images']!r}")
    bad = sorted(k for k in ("k", "n_chains", "init_std", "persistent") if k in model)
    if bad:
        raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in bad)}: expected only with rbm, "
                         f"received them with {args.model or 'a resumed run'}")
    if args.model in TRANSFORMERS or saved in TRANSFORMERS:
        return _train_transformer(args, model, train, data)
    for k in ("tokenizer", "vocab_size"):
        if k in data:
            raise ValueError(f"--{k.replace('_', '-')}: expected only with gpt or bert (the recurrent models read "
                             f"characters), received {data[k]!r}")
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
        help="train a model (rnn, lstm, gru, gpt, bert, rbm, gan, vae, diffusion)",
        description="Train a language model on the embedded default text (Python's reference "
        "manual, pydoc_data.topics), on any UTF-8 file (--text PATH) or on tiny Shakespeare "
        "(--text shakespeare): a recurrent character model (rnn, lstm, gru), a GPT (next-token "
        "prediction) or a BERT (masked-language modelling); or a restricted Boltzmann machine (rbm) "
        "on binarized 8x8 digits, by persistent contrastive divergence (--cd for CD-k); or a generative "
        "model of images (gan, vae, diffusion) on the 8x8 digits, Fashion-MNIST or a folder. Writes a run "
        "directory with checkpoints and metrics.jsonl; Ctrl-C saves; --resume RUN_DIR continues.",
    )
    p.add_argument("model", nargs="?", choices=["rnn", "lstm", "gru", *TRANSFORMERS, "rbm", *GENERATIVE],
                   help="the model")
    p.add_argument("--images", help="rbm, gan, vae, diffusion: digits (the default: scikit-learn's 8x8 digits), "
                   "fashion-mnist (Debian's dataset-fashion-mnist) or, for gan, vae, diffusion, a folder of images")
    p.add_argument("--image-size", type=int, help="gan, vae, diffusion with a folder: resize to this (default 28)")
    p.add_argument("--channels", type=int, help="gan, vae, diffusion with a folder: 1 (grey, default) or 3 (RGB)")
    p.add_argument("--text", help="a UTF-8 text file, 'pydoc' (default) or 'shakespeare'")
    p.add_argument("--preset", help="named size: cpu-tiny, cpu-small (default), cpu-medium, gpu-baby")
    p.add_argument("--block-size", type=int,
                   help="tokens per training sequence (default: 64; gpt, bert: the preset's context)")
    p.add_argument("--tokenizer", choices=["char", "bpe"],
                   help="gpt, bert: characters (default) or byte-level BPE trained on the text")
    p.add_argument("--vocab-size", type=int, help="gpt, bert with --tokenizer bpe: vocabulary size (default 512)")
    g = p.add_argument_group("model")
    for flag, typ, hlp in MODEL_OPTIONS:
        g.add_argument(flag, type=typ, help=hlp)
    g.add_argument("--no-fused", dest="fused", action="store_const", const=False,
                   help="use the readable per-step code instead of the fused fast path")
    g.add_argument("--cd", dest="persistent", action="store_const", const=False,
                   help="rbm: CD-k (chains start at the data) instead of persistent CD")
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
    from seqlab.llm import runs
    from seqlab.recurrent import charlm_runs
    from seqlab.training.rundir import run_family

    family = run_family(args.run)
    if family == "rbm":
        if args.method is not None or _view_options(args):
            raise ValueError(f"{', '.join(['--method'] * (args.method is not None) + _view_options(args))}: "
                             f"expected only with a diffusion or vae run, received an rbm run")
        return _sample_rbm(args)
    if family in GENERATIVE:
        return _sample_generative(args, family)
    image_opts = [f for f, v in (("--n", args.n), ("--png", args.png), ("--steps", args.steps),
                                 ("--method", args.method)) if v is not None] + _view_options(args)
    if image_opts:
        raise ValueError(f"{', '.join(image_opts)}: expected only with an image model (rbm, gan, vae, diffusion), "
                         f"received a {family!r} run")
    length = 300 if args.length is None else args.length
    if family == "gpt":
        text = runs.sample_gpt(args.run, args.prompt, length=length, temperature=args.temperature,
                               top_k=args.top_k, top_p=args.top_p, seed=args.seed, stop=args.stop,
                               use_cache=not args.no_cache)
    elif family == "charlm":
        if args.top_p is not None or args.stop or args.no_cache:
            raise ValueError("--top-p, --stop, --no-cache: expected only with a gpt run, received a "
                             "recurrent (charlm) run")
        text = charlm_runs.sample(args.run, args.prompt, length=length, temperature=args.temperature,
                                  top_k=args.top_k, seed=args.seed)
    else:
        hint = " (use seqlab fill for a bert run)" if family in ("bert", "bert-classifier") else ""
        raise ValueError(f"sample: expected a run of a generative model (gpt, rnn, lstm, gru, rbm, gan, vae, "
                         f"diffusion), "
                         f"received a {family!r} run{hint}")
    print((args.prompt or "") + text)
    return 0


def _view_options(args: argparse.Namespace) -> list[str]:
    return [f for f, v in (("--trajectory", args.trajectory), ("--latent-map", args.latent_map),
                           ("--interpolate", args.interpolate), ("--reconstruct", args.reconstruct)) if v is not None]


def _text_options(args: argparse.Namespace) -> list[str]:
    return [f for f, v in (("--prompt", args.prompt), ("--top-k", args.top_k), ("--top-p", args.top_p),
                           ("--stop", args.stop), ("--no-cache", args.no_cache or None),
                           ("--length", args.length)) if v is not None]


def _sample_generative(args: argparse.Namespace, family: str) -> int:
    from seqlab.generative import runs as gruns

    if _text_options(args):
        raise ValueError(f"{', '.join(_text_options(args))}: expected only with a text model, received a "
                         f"{family!r} run")
    n = 64 if args.n is None else args.n
    png = args.png or "samples.png"
    x = gruns.sample_run(args.run, n=n, seed=args.seed, method=args.method, steps=args.steps, png=png)
    print(f"{x.shape[0]} {family} samples, mean pixel {float(x.mean()):.3f}; wrote {png}")
    views = gruns.write_views(args.run, seed=args.seed, method=args.method, steps=args.steps,
                              trajectory=args.trajectory, latent_map=args.latent_map, interpolate=args.interpolate,
                              reconstruct=args.reconstruct)
    if views:
        print("wrote " + ", ".join(str(p) for p in views))
    return 0


def _sample_rbm(args: argparse.Namespace) -> int:
    from seqlab.energy import rbm_runs

    text_opts = _text_options(args)
    if text_opts:
        raise ValueError(f"{', '.join(text_opts)}: expected only with a text model, received an rbm run")
    n = 64 if args.n is None else args.n
    steps = 1000 if args.steps is None else args.steps
    png = args.png or "samples.png"
    pv = rbm_runs.sample_rbm(args.run, n=n, steps=steps, seed=args.seed, png=png)
    print(f"{pv.shape[0]} samples after {steps} Gibbs steps, mean pixel {float(pv.mean()):.3f}; wrote {png}")
    return 0


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate text or images from a trained model",
                       description="Sample from the best checkpoint of RUN_DIR (or a checkpoint directory) of a "
                       "gpt, recurrent, rbm, gan, vae or diffusion run (an image model writes a PNG grid). A gpt "
                       "prompt longer than the model's context is cropped from "
                       "the left (its last block_size tokens are used).")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--prompt", default=None, help="text to start from (default: a newline)")
    p.add_argument("--length", type=int, default=None, help="tokens (characters) to generate at most (default 300)")
    p.add_argument("--temperature", type=float, default=0.8, help="softmax temperature (0 = greedy)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None,
                   help="gpt: sample among the most likely tokens whose probability mass reaches p, 0 < p <= 1")
    p.add_argument("--stop", action="append", metavar="TEXT",
                   help="gpt: stop before this text (repeat for several)")
    p.add_argument("--no-cache", action="store_true", help="gpt: recompute every position at each step")
    p.add_argument("--n", type=int, default=None, help="image models: images to sample (default 64)")
    p.add_argument("--steps", type=int, default=None,
                   help="rbm: Gibbs steps from a random start (default 1000); diffusion: DDIM steps")
    p.add_argument("--method", default=None, help="diffusion: ddpm (ancestral, default) or ddim")
    p.add_argument("--png", default=None, help="image models: the image grid to write (default samples.png)")
    p.add_argument("--trajectory", metavar="PNG", help="diffusion: also draw the denoising trajectory x_T ... x_0")
    p.add_argument("--latent-map", metavar="PNG", help="vae: also draw the latent space (test images by class)")
    p.add_argument("--interpolate", metavar="PNG", help="vae: also draw interpolations between test images")
    p.add_argument("--reconstruct", metavar="PNG", help="vae: also draw test images and their reconstructions")
    p.add_argument("--seed", type=int, default=0)


# --------------------------------------------------------------------------- attention
def _load_transformer(run: str):
    """(model, tokenizer, family) of a gpt or bert run."""
    from seqlab.llm import runs
    from seqlab.training.rundir import run_family

    family = run_family(run)
    if family == "gpt":
        model, tok, _ = runs.load_gpt(run)
    elif family == "bert":
        from seqlab.llm import bert_runs

        model, tok, _ = bert_runs.load_bert(run)
    else:
        raise ValueError(f"run: expected a gpt or bert run, received a {family!r} run")
    return model, tok, family


@command("attention")
def _attention(args: argparse.Namespace) -> int:
    import torch

    from seqlab.viz.attention import attention_maps, plot_attention_maps

    model, tok, family = _load_transformer(args.run)
    maps = attention_maps(model, tok, args.text, specials=family == "bert")
    if args.json:
        print(json.dumps(maps.to_json()))
        return 0
    path = plot_attention_maps(maps, args.out, title=f"{family} attention on {args.text[:40]!r}")
    L, h = maps.num_layers, maps.num_heads
    print(f"wrote {path}: {L} layers x {h} heads over {len(maps.tokens)} tokens")
    for l in range(L):
        # where each head looks most, averaged over the queries: the mean distance s - t
        S = len(maps.tokens)
        pos = torch.arange(S, dtype=maps.weights.dtype)
        dist = (maps.weights[l] * (pos[:, None] - pos[None, :]).abs()).sum(-1).mean(-1)  # (h,)
        print(f"layer {l + 1}: mean |s - t| per head " + " ".join(f"{d:.1f}" for d in dist.tolist()))
    return 0


def _add_attention(sub) -> None:
    p = sub.add_parser("attention", help="draw the attention maps of a gpt or bert run",
                       description="Run the model of RUN_DIR on TEXT and draw the attention weights of every "
                       "layer and head as heat maps (queries down, keys across) in one PNG. A GPT's maps are "
                       "zero above the diagonal (the causal mask); a BERT's are not.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--text", required=True, help="the text to read (at most the model's context in tokens)")
    p.add_argument("--out", default="attention.png", help="PNG file to write (default attention.png)")
    p.add_argument("--json", action="store_true", help="print the tokens and weights as JSON instead")


# --------------------------------------------------------------------------- fill, finetune, classify
@command("fill")
def _fill(args: argparse.Namespace) -> int:
    from seqlab.llm import bert_runs

    fillers = bert_runs.fill_text(args.run, args.text, top_k=args.top_k)
    if args.json:
        print(json.dumps([[{"token": t, "probability": p} for t, p in options] for options in fillers]))
    else:
        print(bert_runs.format_fill(args.text, fillers))
    return 0


def _add_fill(sub) -> None:
    p = sub.add_parser("fill", help="fill in the [MASK] tokens of a text with a bert run",
                       description="Print, for each [MASK] in TEXT, the top-k tokens the BERT of RUN_DIR "
                       "predicts there, with their probabilities.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("text", metavar="TEXT", help='text with one or more [MASK], e.g. "def f(x): ret[MASK]rn x"')
    p.add_argument("--top-k", type=int, default=5, help="fillers per mask (default 5)")
    p.add_argument("--json", action="store_true")


def _label_files(items: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    out = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise ValueError(f"--text: expected LABEL=PATH, received {item!r}")
        if label in out:
            raise ValueError(f"--text: expected each label once, received {label!r} twice")
        out[label] = path
    if len(out) < 2:
        raise ValueError(f"--text: expected at least two LABEL=PATH corpora, received {len(out)}")
    return out


@command("finetune")
def _finetune(args: argparse.Namespace) -> int:
    from seqlab.llm import bert_runs

    _, train, _ = _train_options(args)
    result, run_dir, acc = bert_runs.start_classifier(args.run, texts=_label_files(args.text), out=args.out,
                                                      pooling=args.pooling, progress=not args.quiet,
                                                      train_options=train)
    print(f"run {run_dir}: {bert_runs.summary(result, 'accuracy on validation batches')}; "
          f"accuracy over every validation passage (best checkpoint) {acc:.3f}")
    return 130 if result.stopped == "interrupted" else 0


def _add_finetune(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune a bert run as a passage classifier",
                       description="Add a classification head to the pretrained BERT of RUN_DIR and fine-tune "
                       "all its weights to tell which corpus a passage comes from. Default corpora (embedded): "
                       "Python's reference manual ('manual') against standard-library source code ('code').")
    p.add_argument("run", metavar="RUN_DIR", help="a bert run (seqlab train bert)")
    p.add_argument("--text", action="append", metavar="LABEL=PATH", help="a labelled corpus (repeat, at least two)")
    p.add_argument("--pooling", choices=["cls", "mean"], default="cls", help="[CLS] position (default) or mean")
    p.add_argument("--out", help="run directory (default runs/bert-classifier-DATE-TIME)")
    p.add_argument("--quiet", action="store_true")
    g = p.add_argument_group("training")
    for flag, typ, hlp in TRAIN_OPTIONS:
        g.add_argument(flag, type=typ, help=hlp)


@command("classify")
def _classify(args: argparse.Namespace) -> int:
    from seqlab.llm import bert_runs

    for label, p in bert_runs.classify(args.run, args.text):
        print(f"{label}\t{p:.3f}")
    return 0


def _add_classify(sub) -> None:
    p = sub.add_parser("classify", help="classify a passage with a fine-tuned bert classifier",
                       description="Print the class probabilities of TEXT under the classifier of RUN_DIR "
                       "(seqlab finetune); the text is cropped to the model's context.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--text", required=True)


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
                       "About 15 minutes on 2 CPU cores; --quick takes well under a minute.")
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

    from seqlab.recurrent import clipping
    from seqlab.recurrent import gradflow as gf
    from seqlab.recurrent import gradflow_report as report
    from seqlab.training.io import atomic_write_json, atomic_write_text
    from seqlab.viz.recurrent import plot_clipping, plot_gradflow

    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    result = gf.gradflow(cells, args.scales, args.length, args.hidden_size, args.batch_size, args.seed,
                         repeats=args.repeats, forget_bias=None if args.default_gates else args.forget_bias)
    out = Path(args.out)
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


# --------------------------------------------------------------------------- hopfield
def _parse_list(text: str, name: str, kind):
    want = "comma-separated integers" if kind is int else "comma-separated numbers"
    try:
        vals = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name}: expected {want}, received {text!r}") from None
    if not vals:
        raise ValueError(f"{name}: expected {want}, received {text!r}")
    return vals


@command("hopfield")
def _hopfield(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from seqlab.energy import capacity as cap
    from seqlab.energy.hopfield import RULES
    from seqlab.training.io import atomic_write_json
    from seqlab.viz.energy import plot_capacity

    if args.action == "recall":
        return _hopfield_recall(args)
    if args.units is None:
        raise ValueError("--units: expected comma-separated network sizes N (>= 2) for 'capacity', received nothing")
    if args.rule is None:
        args.rule = "hebbian"
    units = _parse_list(args.units, "--units", int)
    loads = _parse_list(args.loads, "--loads", float) if args.loads else list(cap.DEFAULT_LOADS)
    if args.rule not in RULES + ("all",):
        raise ValueError(f"--rule: expected one of {', '.join(RULES + ('all',))}, received {args.rule!r}")
    rules = list(RULES) if args.rule == "all" else [args.rule]
    results = []
    for rule in rules:
        gen = torch.Generator().manual_seed(args.seed)
        results.append(cap.measure_capacity(units, loads, rule=rule, trials=args.trials, generator=gen,
                                            max_sweeps=args.max_sweeps, flip=args.flip))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_capacity(results, out / "capacity.png")
    payload = {"theory_alpha_c": cap.ALPHA_C, "results": [cap.to_json(r) for r in results]}
    atomic_write_json(out / "capacity.json", payload)
    if args.json:
        print(json.dumps(payload))
        return 0
    print(cap.format_table(results))
    print(f"wrote {out / 'capacity.png'}, {out / 'capacity.json'}")
    return 0


def _hopfield_recall(args: argparse.Namespace) -> int:
    from pathlib import Path

    from seqlab.energy import images as im
    from seqlab.energy.hopfield import RULES
    from seqlab.viz.energy import plot_recall

    digits = _parse_list(args.digits, "--digits", int)
    for d in digits:
        if not 0 <= d <= 9:
            raise ValueError(f"--digits: expected digits in 0-9, received {d}")
    if args.digit not in digits:
        raise ValueError(f"--digit: expected one of the stored digits {args.digits}, received {args.digit}")
    if not 0.0 <= args.noise <= 1.0:
        raise ValueError(f"--noise: expected a fraction in [0, 1], received {args.noise:g}")
    if args.occlude is not None and args.occlude not in im.SIDES:
        raise ValueError(f"--occlude: expected one of {', '.join(im.SIDES)}, received {args.occlude!r}")
    rule = "pseudo-inverse" if args.rule is None else args.rule
    if rule not in RULES:
        raise ValueError(f"--rule: expected one of {', '.join(RULES)}, received {rule!r}")
    if args.mode not in ("async", "sync"):
        raise ValueError(f"--mode: expected async or sync, received {args.mode!r}")
    rec = im.recall_images(args.digit, digits=digits, noise=args.noise, occlude=args.occlude, rule=rule,
                           mode=args.mode, seed=args.seed, images=args.images)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_recall(rec, out / "recall.png")
    res = rec.result
    e0, e1 = float(res.energies[0]), float(res.energies[-1])
    payload = {"images": args.images, "digit": args.digit, "digits": list(rec.labels), "rule": rule,
               "mode": args.mode,
               "noise": args.noise, "occlude": args.occlude, "seed": args.seed, "match": rec.match,
               "exact": rec.exact, "overlaps": {str(d): float(m) for d, m in zip(rec.labels, rec.overlaps)},
               "converged": res.converged, "cycle": res.cycle, "steps": res.steps,
               "energy_start": e0, "energy_end": e1, "png": str(png)}
    if args.json:
        print(json.dumps(payload))
        return 0
    corruption = f"noise {args.noise:g}" + (f", occluded {args.occlude}" if args.occlude else "")
    print(f"digit {args.digit} ({corruption}), stored {','.join(map(str, rec.labels))}, rule {rule}, "
          f"mode {args.mode}, seed {args.seed}")
    print("overlap with stored: " + "  ".join(f"{d}: {float(m):+.3f}" for d, m in zip(rec.labels, rec.overlaps)))
    state = "converged (fixed point)" if res.converged else ("2-cycle" if res.cycle else "not converged")
    print(f"final state matches digit {rec.match}" + (" exactly" if rec.exact else "")
          + f"; {state} after {res.steps} steps")
    print(f"energy: start {e0:.4f}, end {e1:.4f}")
    print(f"wrote {png}")
    return 0


def _add_hopfield(sub) -> None:
    p = sub.add_parser("hopfield", help="binary Hopfield network experiments (capacity, recall)",
                       description="Binary Hopfield network experiments. 'capacity': store P = load * N random "
                       "patterns, start asynchronous recall at each, and report the mean final overlap against "
                       "P/N and the critical load (theory, Hebbian rule: 0.138). 'recall': store 8x8 digit prototypes "
                       "(scikit-learn's load_digits), corrupt one, recall it and write recall.png.")
    p.add_argument("action", choices=["capacity", "recall"], help="what to run")
    p.add_argument("--units", default=None,
                   help="capacity: comma-separated network sizes N (>= 2), e.g. 100,200,500 (required)")
    p.add_argument("--rule", default=None, help="hebbian, pseudo-inverse, storkey or (capacity only) all "
                   "(default: hebbian for capacity, pseudo-inverse for recall)")
    p.add_argument("--loads", default=None, help="comma-separated loads P/N in (0, 1.5] (default 0.02 ... 0.8)")
    p.add_argument("--trials", type=int, default=3, help="independent pattern draws per point (default 3)")
    p.add_argument("--flip", type=float, default=0.0, help="fraction of units flipped in the start state (default 0)")
    p.add_argument("--max-sweeps", type=int, default=20, help="asynchronous sweeps at most (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--digit", type=int, default=3, help="recall: the stored digit to corrupt and recall (default 3)")
    p.add_argument("--digits", default="0,1,2,3,4",
                   help="recall: comma-separated digits whose prototypes are stored (default 0,1,2,3,4)")
    p.add_argument("--noise", type=float, default=0.2, help="recall: fraction of units flipped (default 0.2)")
    p.add_argument("--occlude", default=None, help="recall: set half the image to -1: top, bottom, left or right")
    p.add_argument("--mode", default="async", help="recall: async or sync updates (default async)")
    p.add_argument("--images", default="digits",
                   help="recall: digits (8x8, the default) or fashion-mnist (28x28, classes 0-9; needs Debian's "
                   "dataset-fashion-mnist)")
    p.add_argument("--out", default="hopfield", help="output folder (default ./hopfield)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


@command("boltzmann")
def _boltzmann(args: argparse.Namespace) -> int:
    from seqlab.energy import parity_demo
    from seqlab.training.io import atomic_write_json
    from seqlab.viz.energy import plot_parity_demo

    hidden = _parse_list(args.hidden, "--hidden", int)
    result = parity_demo.demo(hidden, epochs=args.epochs, lr=args.lr, momentum=args.momentum,
                              init_std=args.init_std, seed=args.seed, method=args.method, n_bits=args.bits)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_parity_demo(result, out / "boltzmann.png")
    payload = parity_demo.to_json(result)
    atomic_write_json(out / "boltzmann.json", payload)
    if args.json:
        print(json.dumps({k: v for k, v in payload.items() if k != "kl"}))
        return 0
    print(f"{result.n_bits}-bit parity, {result.method} gradient, {result.epochs} epochs, lr {result.lr:g}, "
          f"momentum {result.momentum:g} ({result.seconds:.1f} s)")
    print(f"KL(data || p(v)) at the end; without hidden units the best possible is log 2 = {result.log2:.4f}")
    for k in result.hidden_sizes:
        print(f"  {k:2d} hidden units: {result.final_kl[k]:.4f}")
    print(f"wrote {out / 'boltzmann.png'}, {out / 'boltzmann.json'}")
    return 0


def _add_boltzmann(sub) -> None:
    p = sub.add_parser("boltzmann", help="Boltzmann machine with hidden units on n-bit parity, checked exactly",
                       description="Fit fully connected Boltzmann machines (visible and hidden units, Gibbs "
                       "sampling or exact enumeration for the model statistics) to the uniform distribution on "
                       "even-parity vectors, and report the exact KL(data || p(v)) for each number of hidden "
                       "units: without hidden units it cannot go below log 2.")
    p.add_argument("--hidden", default="0,1,2,4", help="comma-separated numbers of hidden units (default 0,1,2,4)")
    p.add_argument("--bits", type=int, default=3, help="parity of this many visible bits (default 3)")
    p.add_argument("--method", default="exact", help="exact (enumeration) or gibbs (sampled statistics)")
    p.add_argument("--epochs", type=int, default=1000, help="full-batch gradient steps (default 1000)")
    p.add_argument("--lr", type=float, default=0.2, help="learning rate (default 0.2)")
    p.add_argument("--momentum", type=float, default=0.9, help="momentum (default 0.9; use 0 with gibbs)")
    p.add_argument("--init-std", type=float, default=1.0, help="standard deviation of the initial weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="boltzmann", help="output folder (default ./boltzmann)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


@command("eval")
def _eval(args: argparse.Namespace) -> int:
    from seqlab.generative import runs as gruns
    from seqlab.training.rundir import run_family

    ev = gruns.evaluate_run(args.run, n=args.n, seed=args.seed, method=args.method, steps=args.steps,
                            progress=not args.json)
    if args.json:
        print(json.dumps(ev.to_json()))
        return 0
    print(ev.table(run_family(args.run)))
    return 0


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a gan, vae or diffusion run (Frechet distance, coverage, confidence)",
                       description="The evaluation protocol of the generative models: a reference classifier "
                       "trained once on the real training images (cached) gives features for the Frechet "
                       "distance between n samples and half of the real test images, next to the distance "
                       "between the two halves of the real test images (the floor), and class predictions for "
                       "the coverage (classes that appear) and the share of confident predictions.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--n", type=int, default=None, help="samples (default: half the test split, at most 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", default=None, help="diffusion: ddpm (default) or ddim")
    p.add_argument("--steps", type=int, default=None, help="diffusion with ddim: sampling steps")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


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
    _add_attention(sub)
    _add_fill(sub)
    _add_finetune(sub)
    _add_classify(sub)
    _add_unfold(sub)
    _add_bptt(sub)
    _add_gradflow(sub)
    _add_hopfield(sub)
    _add_boltzmann(sub)
    _add_eval(sub)
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
