"""Training, loading and sampling runs of the language models (used by the command line, the
tour and the benchmarks): corpus -> tokenizer -> TokenDataset -> GPT -> the generic trainer.

A run directory holds what ``seqlab.training.loop.train`` writes (run.json,
metrics.jsonl, checkpoints/) and every checkpoint carries ``tokenizer.json``, so that a run
can be sampled, resumed or inspected without the corpus it was trained on.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

import torch

from seqlab.data.text import load_text, resume_text
from seqlab.data.tokens import TokenDataset
from seqlab.llm.gpt import GPT, LN2, PRESETS, GPTConfig
from seqlab.llm.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, tokenizer_from_json
from seqlab.training.checkpoint import Checkpoint, checkpoint_file, load_checkpoint, load_weights
from seqlab.training.config import TrainConfig
from seqlab.training.loop import TrainResult, train
from seqlab.training.rundir import default_run_dir, read_run, resolve_checkpoint
from seqlab.validation import check_choice, check_int, fail

GPT_FAMILY = "gpt"
TOKENIZERS = ("char", "bpe")
DEFAULT_BPE_VOCAB = 512
DEFAULT_PRESET = "cpu-small"
# What `seqlab train gpt` does with no options: nanoGPT's CPU recipe for tiny Shakespeare
# (2,000 steps of batch 12, AdamW lr 1e-3 cosine-decayed to 1e-4 after 100 warmup steps,
# beta2 0.99, weight decay 0.1, gradient norm clipped at 1).
GPT_TRAIN_DEFAULTS: dict[str, Any] = dict(max_steps=2000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                                          beta2=0.99, weight_decay=0.1, clip_norm=1.0, eval_every=250,
                                          eval_batches=20)
GPT_MODEL_FIELDS = {f.name for f in fields(GPTConfig)} - {"vocab_size"}


def source_name(text: str | None) -> str:
    if text is None or text in ("pydoc", "shakespeare"):
        return text or "pydoc"
    return str(Path(text).expanduser().resolve())


def build_tokenizer(kind: str, corpus: str, *, vocab_size: int | None = None,
                    special_tokens: tuple[str, ...] = ()) -> Tokenizer:
    """A tokenizer fitted to ``corpus``: its characters, or byte-level BPE with
    ``vocab_size`` entries (default 512)."""
    check_choice(kind, "tokenizer", TOKENIZERS)
    if kind == "char":
        if vocab_size is not None:
            fail("vocab_size", "nothing with the char tokenizer (its vocabulary is the corpus's characters)",
                 vocab_size)
        return CharTokenizer.from_text(corpus, special_tokens=special_tokens)
    vocab_size = DEFAULT_BPE_VOCAB if vocab_size is None else check_int(vocab_size, "vocab_size", minimum=257)
    return BPETokenizer.train(corpus, vocab_size=vocab_size, special_tokens=special_tokens)


def build_gpt_run(*, text: str | None = None, preset: str = DEFAULT_PRESET, tokenizer: str = "char",
                  vocab_size: int | None = None, block_size: int | None = None,
                  model_options: Mapping[str, Any] | None = None, train_options: Mapping[str, Any] | None = None):
    """(model, dataset, TrainConfig, data_info) for a new GPT run; nothing is written."""
    check_choice(preset, "preset", PRESETS)
    model_options = dict(model_options or {})
    unknown = set(model_options) - GPT_MODEL_FIELDS
    if unknown:
        fail("model options", f"names among {sorted(GPT_MODEL_FIELDS)}", sorted(unknown))
    if block_size is not None:
        model_options["block_size"] = check_int(block_size, "block_size", minimum=1)
    name, corpus = load_text(text)
    tok = build_tokenizer(tokenizer, corpus, vocab_size=vocab_size)
    config = GPTConfig(vocab_size=tok.vocab_size, **{**PRESETS[preset], **model_options})
    data = TokenDataset.from_text(corpus, tok, config.block_size)
    cfg = TrainConfig.from_dict({**GPT_TRAIN_DEFAULTS, **dict(train_options or {})})
    info = {"source": source_name(text), "name": name, **data.info()}
    torch.manual_seed(cfg.seed)  # the initial weights depend on the run's seed only
    return GPT(config), data, cfg, info


def start_gpt(*, out: str | os.PathLike | None = None, progress: bool = True, **options) -> tuple[TrainResult, Path]:
    """Train a new GPT; returns the result and the run directory."""
    model, data, cfg, info = build_gpt_run(**options)
    run_dir = Path(out) if out is not None else default_run_dir(GPT_FAMILY)
    result = train(model, data, cfg, run_dir, family=GPT_FAMILY, model_config=model.config.to_dict(),
                   files={"tokenizer.json": data.tokenizer.to_json()}, progress=progress, data_info=info)
    return result, run_dir


def saved_tokenizer(path: str | os.PathLike, family: str) -> Tokenizer:
    """The tokenizer saved with the checkpoint of a run (or a checkpoint directory)."""
    ckpt = load_checkpoint(resolve_checkpoint(path), family=family)
    return tokenizer_from_json(checkpoint_file(ckpt, "tokenizer.json"))


def resume_gpt(run_dir: str | os.PathLike, *, progress: bool = True, text: str | None = None,
               model_options: Mapping[str, Any] | None = None,
               train_options: Mapping[str, Any] | None = None) -> tuple[TrainResult, Path]:
    """Continue a GPT run where it stopped, with the tokenizer saved in its checkpoint."""
    run_dir = Path(run_dir)
    saved = read_run(run_dir, GPT_FAMILY)
    data_saved = saved.get("data") or {}
    corpus = resume_text(data_saved.get("source"), text)
    tok = saved_tokenizer(run_dir, GPT_FAMILY)
    config = GPTConfig.from_dict(saved["model_config"])
    data = TokenDataset.from_text(corpus, tok, config.block_size, val_fraction=data_saved.get("val_fraction", 0.1))
    if data_saved.get("sha256") not in (None, data.sha256):
        fail("resume", "the corpus the run was trained on (sha256 " + str(data_saved.get("sha256"))[:12] + "...)",
             f"a different text (sha256 {data.sha256[:12]}...)")
    model = GPT(config)
    requested = {**saved["model_config"], **dict(model_options or {})}
    saved_train = {k: v for k, v in saved["train_config"].items() if k != "max_seconds"}
    cfg = TrainConfig.from_dict({**saved_train, **dict(train_options or {})})
    info = {"source": data_saved.get("source"), "name": data_saved.get("name"), **data.info()}
    result = train(model, data, cfg, run_dir, family=GPT_FAMILY, model_config=requested,
                   files={"tokenizer.json": tok.to_json()}, resume=True, progress=progress, data_info=info)
    return result, run_dir


def load_gpt(path: str | os.PathLike, map_location: str = "cpu") -> tuple[GPT, Tokenizer, Checkpoint]:
    """A trained GPT from a run directory (its best checkpoint, else the latest) or a
    checkpoint directory, in eval mode."""
    ckpt = load_checkpoint(resolve_checkpoint(path), family=GPT_FAMILY, map_location=map_location)
    config = GPTConfig.from_dict(ckpt.config)
    model = GPT(config)
    load_weights(model, ckpt)
    tokenizer = tokenizer_from_json(checkpoint_file(ckpt, "tokenizer.json"))
    if tokenizer.vocab_size != config.vocab_size:
        fail(f"checkpoint {ckpt.path}", f"a tokenizer of {config.vocab_size} tokens", f"{tokenizer.vocab_size} tokens")
    model.eval()
    return model, tokenizer, ckpt


def default_prompt(tokenizer: Tokenizer) -> str:
    """A newline if the vocabulary has one, else its first character."""
    try:
        tokenizer.encode("\n")
        return "\n"
    except ValueError:
        return tokenizer.decode([0])


def sample_gpt(path: str | os.PathLike, prompt: str | None, *, length: int = 300, temperature: float = 0.8,
               top_k: int | None = None, top_p: float | None = None, seed: int = 0, stop: list[str] | None = None,
               use_cache: bool = True, model=None, tokenizer=None) -> str:
    """Text generated after ``prompt`` (not included) by the GPT saved at ``path``:
    at most ``length`` tokens, cut before the first of the ``stop`` strings. The prompt is
    cropped from the left to the model's context (``block_size`` tokens)."""
    if model is None:
        model, tokenizer, _ = load_gpt(path)
    if prompt is None:
        prompt = default_prompt(tokenizer)
    if not isinstance(prompt, str) or prompt == "":
        fail("prompt", "at least one character (or no --prompt for the default)", repr(prompt))
    ids = tokenizer.encode(prompt, name="prompt")
    out = model.generate(ids, length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                         stop_strings=stop or None, decode=tokenizer.decode, use_cache=use_cache)
    return tokenizer.decode(out)


def summary(result: TrainResult, unit: str = "token") -> str:
    if result.best_val_loss is None:
        return f"{result.steps} steps, no evaluation yet"
    return (f"validation loss {result.best_val_loss:.4f} nats/{unit} = {result.best_val_loss / LN2:.3f} bits/{unit} "
            f"(best), {result.steps} steps in {result.seconds:.0f} s")
