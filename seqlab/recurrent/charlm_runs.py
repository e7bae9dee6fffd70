"""Training and sampling runs of the character language model (used by the command line,
the tour and the benchmarks): corpus -> tokenizer -> CharLM -> the generic trainer."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

import torch

from seqlab.data.text import load_text, resume_text
from seqlab.data.tokens import TokenDataset
from seqlab.llm.tokenizers import CharTokenizer
from seqlab.recurrent.charlm import LN2, PRESETS, CharLM, CharLMConfig
from seqlab.training.checkpoint import Checkpoint, checkpoint_file, load_checkpoint, load_weights
from seqlab.training.config import TrainConfig
from seqlab.training.loop import TrainResult, train
from seqlab.training.rundir import default_run_dir, resolve_checkpoint
from seqlab.training.rundir import read_run as _read_run
from seqlab.validation import check_choice, check_int, fail

FAMILY = "charlm"
DEFAULT_PRESET = "cpu-small"
DEFAULT_BLOCK_SIZE = 64
# What `seqlab train lstm` does with no options: about 5 minutes on 2 CPU cores. Tuned on
# tiny Shakespeare in 5-minute budgets (benchmarks/bench_charlm_quality.py): short windows
# and small batches give many updates, and with gradient clipping a high peak learning rate
# (decayed by the cosine schedule) learns fastest.
TRAIN_DEFAULTS: dict[str, Any] = dict(max_steps=3000, batch_size=32, lr=2e-2, warmup_steps=100,
                                      eval_every=500, eval_batches=20, clip_norm=1.0)
MODEL_FIELDS = {f.name for f in fields(CharLMConfig)} - {"cell", "vocab_size"}


def _source_name(text: str | None) -> str:
    if text is None or text in ("pydoc", "shakespeare"):
        return text or "pydoc"
    return str(Path(text).expanduser().resolve())


def build_run(cell: str, *, text: str | None = None, preset: str = DEFAULT_PRESET, block_size: int = DEFAULT_BLOCK_SIZE,
              model_options: Mapping[str, Any] | None = None, train_options: Mapping[str, Any] | None = None):
    """(model, dataset, TrainConfig, data_info) for a new run; nothing is written."""
    check_choice(preset, "preset", PRESETS)
    check_int(block_size, "block_size", minimum=1)
    model_options = dict(model_options or {})
    unknown = set(model_options) - MODEL_FIELDS
    if unknown:
        fail("model options", f"names among {sorted(MODEL_FIELDS)}", sorted(unknown))
    name, corpus = load_text(text)
    data = TokenDataset.from_text(corpus, CharTokenizer.from_text(corpus), block_size)
    config = CharLMConfig(cell=cell, vocab_size=data.vocab_size, **{**PRESETS[preset], **model_options})
    cfg = TrainConfig.from_dict({**TRAIN_DEFAULTS, **dict(train_options or {})})
    info = {"source": _source_name(text), "name": name, **data.info()}
    torch.manual_seed(cfg.seed)  # the initial weights depend on the run's seed only
    return CharLM(config), data, cfg, info


def start(cell: str, *, out: str | os.PathLike | None = None, progress: bool = True, **options) -> tuple[TrainResult, Path]:
    """Train a new character model; returns the result and the run directory."""
    model, data, cfg, info = build_run(cell, **options)
    run_dir = Path(out) if out is not None else default_run_dir(cell)
    result = train(model, data, cfg, run_dir, family=FAMILY, model_config=model.config.to_dict(),
                   files={"tokenizer.json": data.tokenizer.to_json()}, progress=progress, data_info=info)
    return result, run_dir


def resume(run_dir: str | os.PathLike, *, progress: bool = True, text: str | None = None,
           block_size: int | None = None, model_options: Mapping[str, Any] | None = None,
           train_options: Mapping[str, Any] | None = None) -> tuple[TrainResult, Path]:
    """Continue a run where it stopped. Options given here must equal the saved ones (the
    trainer says which differ), except device, precision, log_every and max_seconds."""
    run_dir = Path(run_dir)
    saved = read_run(run_dir)
    data_saved = saved.get("data") or {}
    corpus = resume_text(data_saved.get("source"), text)
    data = TokenDataset.from_text(corpus, CharTokenizer.from_text(corpus),
                                  block_size or data_saved.get("block_size", DEFAULT_BLOCK_SIZE),
                                  val_fraction=data_saved.get("val_fraction", 0.1))
    model = CharLM(CharLMConfig.from_dict(saved["model_config"]))
    # options given now are compared with the saved ones by the trainer
    requested = {**saved["model_config"], **dict(model_options or {})}
    # a wall-clock budget belongs to one invocation: a resumed run has none unless given again
    saved_train = {k: v for k, v in saved["train_config"].items() if k != "max_seconds"}
    cfg = TrainConfig.from_dict({**saved_train, **dict(train_options or {})})
    info = {"source": _source_name(text) if text is not None else data_saved.get("source"),
            "name": data_saved.get("name"), **_data_info(data, data_saved)}
    result = train(model, data, cfg, run_dir, family=FAMILY, model_config=requested,
                   files={"tokenizer.json": data.tokenizer.to_json()}, resume=True, progress=progress,
                   data_info=info)
    return result, run_dir


def _data_info(data: TokenDataset, saved: Mapping[str, Any]) -> dict:
    """``data.info()``, or for a run saved before the character model used ``TokenDataset``
    (its run.json says kind "characters") the same facts under that run's names, so that a
    resumed old run is compared like with like."""
    info = data.info()
    if saved.get("kind") != "characters":
        return info
    return {"kind": "characters", "characters": info["characters"], "sha256": info["sha256"],
            "vocab_size": info["vocab_size"], "block_size": info["block_size"],
            "val_fraction": info["val_fraction"], "train_characters": info["train_tokens"],
            "val_characters": info["val_tokens"]}


def read_run(run_dir: Path) -> dict:
    return _read_run(run_dir, FAMILY)


def load(path: str | os.PathLike, map_location: str = "cpu") -> tuple[CharLM, CharTokenizer, Checkpoint]:
    """A trained character model from a run directory (its best checkpoint, else the latest)
    or a checkpoint directory."""
    ckpt = load_checkpoint(resolve_checkpoint(path), family=FAMILY, map_location=map_location)
    config = CharLMConfig.from_dict(ckpt.config)
    model = CharLM(config)
    load_weights(model, ckpt)
    # tokenizer.json: the Hugging Face format, or the character format of older runs
    tokenizer = CharTokenizer.from_json(checkpoint_file(ckpt, "tokenizer.json"))
    if tokenizer.vocab_size != config.vocab_size:
        fail(f"checkpoint {ckpt.path}", f"a tokenizer of {config.vocab_size} characters",
             f"{tokenizer.vocab_size} characters")
    model.eval()
    return model, tokenizer, ckpt


def sample(path: str | os.PathLike, prompt: str | None, *, length: int = 300, temperature: float = 0.8,
           top_k: int | None = None, seed: int = 0) -> str:
    """Text generated after ``prompt`` by the model saved at ``path`` (prompt excluded).
    ``prompt=None`` starts from a newline (or the vocabulary's first character)."""
    model, tokenizer, _ = load(path)
    if prompt is None:
        prompt = "\n" if "\n" in tokenizer.chars else tokenizer.chars[0]
    ids = tokenizer.encode(prompt, name="prompt")
    gen = torch.Generator().manual_seed(seed)
    return tokenizer.decode(model.generate(ids, length, temperature=temperature, top_k=top_k, generator=gen))


def summary(result: TrainResult) -> str:
    if result.best_val_loss is None:
        return f"{result.steps} steps, no evaluation yet"
    return (f"validation loss {result.best_val_loss:.4f} nats/char = {result.best_val_loss / LN2:.3f} bits/char "
            f"(best), {result.steps} steps in {result.seconds:.0f} s")
