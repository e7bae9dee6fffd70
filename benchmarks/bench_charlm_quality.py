"""Quality in a fixed time budget: character language models on tiny Shakespeare.

    python benchmarks/bench_charlm_quality.py                 # 5 minutes per model, 4 models
    python benchmarks/bench_charlm_quality.py --seconds 30    # a quick look

Each model trains for the same wall-clock budget (default 300 s, evaluations included) on
the first 90% of tiny Shakespeare and is scored on the last 10% (nanoGPT's split). The
reference is torch.nn.LSTM inside the same character model (one-hot input, softmax
output), trained by the same trainer with the same settings, in the same run. The cosine
schedule is sized to the budget: a short calibration measures the step time first.
The score is the mean cross-entropy (nats per character) of the final weights over a
fixed set of validation windows (the same windows for every model), and bits per char.
Writes ``benchmarks/results/charlm_quality.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_recurrent_speed import machine  # noqa: E402
from seqlab.data.text import read_text_file, shakespeare_path  # noqa: E402
from seqlab.data.tokens import TokenDataset  # noqa: E402
from seqlab.llm.tokenizers import CharTokenizer  # noqa: E402
from seqlab.recurrent.charlm import LN2, CharLM, CharLMConfig  # noqa: E402
from seqlab.training.checkpoint import load_checkpoint, load_weights  # noqa: E402
from seqlab.training.config import TrainConfig  # noqa: E402
from seqlab.training.loop import DivergenceError, NonFiniteLossError, train  # noqa: E402
from seqlab.training.rundir import read_metrics  # noqa: E402


class TorchCharLM(nn.Module):
    """The reference: the same character model with torch.nn.LSTM/GRU/RNN as its core."""

    def __init__(self, cell: str, vocab_size: int, hidden_size: int, num_layers: int, dropout: float,
                 forget_bias: float = 0.0):
        super().__init__()
        cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.vocab_size = vocab_size
        self.core = cls(vocab_size, hidden_size, num_layers, batch_first=True, dropout=dropout)
        self.out = nn.Linear(hidden_size, vocab_size)
        if cell == "lstm" and forget_bias:  # the same initial forget-gate bias as seqlab's LSTM
            H = hidden_size
            with torch.no_grad():
                for l in range(num_layers):
                    getattr(self.core, f"bias_ih_l{l}")[H : 2 * H] = forget_bias
                    getattr(self.core, f"bias_hh_l{l}")[H : 2 * H] = 0.0

    def forward(self, ids, *, state=None):
        a, state = self.core(F.one_hot(ids, self.vocab_size).float(), state)
        return self.out(a), state

    def loss(self, batch):
        x, y = batch
        logits, _ = self(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        return loss, {"bpc": loss.item() / LN2, "tokens": y.numel()}


def build(name: str, vocab: int, args) -> nn.Module:
    if name.startswith("torch-"):
        return TorchCharLM(name[6:], vocab, args.hidden_size, args.num_layers, args.dropout, args.forget_bias)
    return CharLM(CharLMConfig(cell=name, vocab_size=vocab, hidden_size=args.hidden_size,
                               num_layers=args.num_layers, dropout=args.dropout, forget_bias=args.forget_bias
                               if name == "lstm" else 0.0))


@torch.no_grad()
def score(model: nn.Module, data: TokenDataset, batches: int, batch_size: int, seed: int = 1234) -> float:
    """Mean validation cross-entropy over a fixed set of random windows of data.block_size
    characters (the same windows for every model: same generator seed)."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(batches):
        loss, _ = model.loss(data.get_batch("val", batch_size, g))
        total += loss.item()
    model.train()
    return total / batches


@torch.no_grad()
def score_sequential(model: nn.Module, data: TokenDataset, streams: int = 16, chunk: int = 512) -> float:
    """Cross-entropy of the whole validation split read in order: the split is cut into
    ``streams`` contiguous parts, each read from its start with the recurrent state carried
    from chunk to chunk (so every character after the first few of a part has all of its
    part's preceding text as context). Nats per character."""
    model.eval()
    ids = data.val_data
    n = (ids.numel() - 1) // streams
    x = torch.stack([ids[i * n : (i + 1) * n] for i in range(streams)])  # (S, n)
    y = torch.stack([ids[i * n + 1 : (i + 1) * n + 1] for i in range(streams)])
    state, total = None, 0.0
    for t in range(0, n, chunk):
        logits, state = model(x[:, t : t + chunk], state=state)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y[:, t : t + chunk].reshape(-1),
                                 reduction="sum").item()
    model.train()
    return total / y.numel()


def step_seconds(name: str, data: TokenDataset, args) -> float:
    """Calibration: seconds per training step (forward, backward, AdamW): the median of
    the last 25 of 45 steps (the first steps of a process run slower while the memory
    allocator settles)."""
    torch.manual_seed(0)
    model = build(name, data.vocab_size, args)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    times = []
    for i in range(45):
        t0 = time.perf_counter()
        loss, _ = model.loss(data.get_batch("train", args.batch_size, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 20:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="torch-lstm,lstm,gru,rnn",
                   help="comma-separated: lstm, gru, rnn (seqlab) and torch-lstm, torch-gru, torch-rnn")
    p.add_argument("--seconds", type=float, default=300.0, help="wall-clock budget per model")
    p.add_argument("--text", default=None, help="corpus (default: tiny Shakespeare from ../shared/data)")
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--num-layers", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--forget-bias", type=float, default=1.0)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-2)
    p.add_argument("--min-lr", type=float, default=None)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--clip-norm", type=float, default=1.0)
    p.add_argument("--score-batches", type=int, default=40)
    p.add_argument("--score-block", type=int, default=256,
                   help="window length of the final score (the model starts each window from a zero state)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "charlm_quality"))
    args = p.parse_args(argv)

    torch.set_num_threads(os.cpu_count() or 1)
    path = args.text or str(shakespeare_path())
    text = read_text_file(path)
    data = TokenDataset.from_text(text, CharTokenizer.from_text(text), args.block_size)
    score_data = TokenDataset.from_text(text, data.tokenizer, args.score_block)
    info = machine()
    print(f"corpus {path}: {len(text):,} characters, vocabulary {data.vocab_size}; "
          f"train {data.train_data.numel():,} / val {data.val_data.numel():,}; budget {args.seconds:.0f} s per model")
    rows, curves = [], {}
    for name in [m for m in args.models.split(",") if m]:
        sec = step_seconds(name, data, args)
        # budget for training steps: leave room for the periodic evaluations (about 5%)
        max_steps = max(20, int(args.seconds * 0.96 / sec))
        cfg = TrainConfig(max_steps=max_steps, max_seconds=args.seconds, batch_size=args.batch_size, lr=args.lr,
                          min_lr=args.min_lr, warmup_steps=min(args.warmup_steps, max_steps // 10),
                          weight_decay=args.weight_decay, clip_norm=args.clip_norm or None,
                          eval_every=max(10, max_steps // 8), eval_batches=8, seed=args.seed, device="cpu",
                          log_every=max(1, max_steps // 100))
        torch.manual_seed(args.seed)
        model = build(name, data.vocab_size, args)
        diverged = None  # a run whose loss or gradient became non-finite: its last good checkpoint is scored
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            try:
                result = train(model, data, cfg, Path(tmp) / "run", family=f"bench-{name}",
                               model_config={"name": name, **{k: getattr(args, k) for k in (
                                   "hidden_size", "num_layers", "dropout", "block_size")}}, progress=False)
            except (NonFiniteLossError, DivergenceError) as e:
                ckpt = load_checkpoint(e.checkpoint) if e.checkpoint is not None else None
                if ckpt is not None:
                    load_weights(model, ckpt)
                diverged = {"step": e.step, "checkpoint_step": None if ckpt is None else int(ckpt.step),
                            "error": str(e).split(";")[0]}
                history = [rec for _, rec in read_metrics(Path(tmp) / "run")]
                result = SimpleNamespace(steps=e.step, history=history, stopped="diverged")
                print(f"{name}: {diverged['error']}; " + ("no checkpoint to score" if ckpt is None else
                      f"scoring its last good checkpoint (step {ckpt.step})"), flush=True)
            wall = time.perf_counter() - t0
        scored = diverged is None or diverged["checkpoint_step"] is not None
        val = score_sequential(model, data) if scored else float("nan")
        val_window = score(model, score_data, args.score_batches, 32) if scored else float("nan")
        val_block = score(model, data, args.score_batches, 32) if scored else float("nan")
        tok_s = [r["tokens_per_s"] for r in result.history if r.get("split") == "train" and "tokens_per_s" in r]
        row = {"model": name, "val_loss": val, "bpc": val / LN2, "val_loss_windows": val_window,
               "val_loss_train_windows": val_block,
               "steps": result.steps, "planned_steps": max_steps,
               "seconds": wall, "tokens_per_s": sum(tok_s) / max(len(tok_s), 1),
               "params": sum(p.numel() for p in model.parameters()), "stopped": result.stopped,
               "diverged": diverged}
        rows.append(row)
        curves[name] = [(r["time"], r["loss"]) for r in result.history if r.get("split") == "val"]
        print(f"{name:10s} val loss {val:.4f} ({val / LN2:.3f} bits/char; windows of {args.score_block}: "
              f"{val_window:.4f}, of {args.block_size}: {val_block:.4f})  {result.steps} steps in {wall:.0f} s, "
              f"{row['tokens_per_s']:,.0f} tokens/s", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(args, k) for k in ("seconds", "hidden_size", "num_layers", "dropout", "forget_bias",
                                               "block_size", "batch_size", "lr", "min_lr", "warmup_steps",
                                               "weight_decay", "clip_norm", "score_batches", "score_block", "seed")}
    out.with_suffix(".json").write_text(json.dumps({"machine": info, "settings": settings, "corpus": path,
                                                    "rows": rows, "curves": curves,
                                                    "date": time.strftime("%Y-%m-%d")}, indent=2))
    ref = next((r for r in rows if r["model"] == "torch-lstm"), None)
    lines = [
        "# Character language models on tiny Shakespeare, fixed time budget",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}; {time.strftime('%Y-%m-%d')}. "
        f"Budget {args.seconds:.0f} s of wall-clock training per model (evaluations included). Settings: "
        + ", ".join(f"{k}={v}" for k, v in settings.items() if k != "seconds")
        + ". AdamW, warmup then cosine decay sized to the budget. Validation = the last 10% of the text. "
        "Main score: cross-entropy of the final weights on the whole validation split read in order (16 "
        "contiguous parts, the recurrent state carried through each part). Also: the mean over "
        f"{args.score_batches} x 32 fixed random windows of {args.score_block} and of {args.block_size} "
        "characters, each window read from a zero state (nanoGPT-style). "
        "Command: `python benchmarks/bench_charlm_quality.py`.",
        "",
        f"| model | val loss (nats/char) | bits/char | {args.score_block}-char windows | {args.block_size}-char windows |"
        " steps | tokens/s | parameters |" + (" loss - nn.LSTM |" if ref else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if ref else ""),
    ]
    for r in rows:
        d = r["diverged"]
        steps = (f"{r['steps']}" if d is None else f"diverged at {d['step']}: " + (
            "no checkpoint" if d["checkpoint_step"] is None else f"its step-{d['checkpoint_step']} weights"))
        lines.append(f"| {r['model']} | {r['val_loss']:.4f} | {r['bpc']:.3f} | {r['val_loss_windows']:.4f} | "
                     f"{r['val_loss_train_windows']:.4f} | "
                     f"{steps} | "
                     f"{r['tokens_per_s']:,.0f} | {r['params']:,} |"
                     + (f" {r['val_loss'] - ref['val_loss']:+.4f} |" if ref else ""))
    for r in rows:
        d = r["diverged"]
        if d:
            lines += ["", f"{r['model']}: {d['error']}; the trainer stopped without saving past it, and "
                      + ("no checkpoint had been saved (no scores)." if d["checkpoint_step"] is None else
                         f"the scores above are those of its last good checkpoint (step {d['checkpoint_step']}).")]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    try:
        from seqlab.viz.plots import plot_curves

        plot_curves({k: ([t for t, _ in v], [l for _, l in v]) for k, v in curves.items()},
                    out.with_suffix(".png"), title="tiny Shakespeare, validation loss", xlabel="seconds",
                    ylabel="nats per character")
    except Exception as e:  # a plot is a convenience; the table is the result
        print(f"(no plot: {e})")
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
