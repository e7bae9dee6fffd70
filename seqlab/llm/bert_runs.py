"""Runs of BERT (used by the command line, the tour and the benchmarks): masked-language
pretraining (family "bert") and fine-tuning a sequence classifier on top of a pretrained
run (family "bert-classifier"), both through the generic trainer.

Each checkpoint carries ``tokenizer.json`` (with the special tokens [PAD], [UNK], [CLS],
[SEP], [MASK]); a classifier's checkpoint also carries ``labels.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from seqlab.data.mlm import MLMDataset, PassageClassificationDataset, default_classification_corpora
from seqlab.data.text import load_text, read_text_file, resume_text
from seqlab.llm.bert import (BERT, PRESETS, BERTClassifier, BERTClassifierConfig, BERTConfig, evaluate, fill,
                             unigram_accuracy)
from seqlab.llm.runs import build_tokenizer, saved_tokenizer, source_name
from seqlab.llm.tokenizers import Tokenizer, tokenizer_from_json
from seqlab.training.checkpoint import Checkpoint, checkpoint_file, load_checkpoint, load_weights
from seqlab.training.config import TrainConfig
from seqlab.training.loop import TrainResult, train
from seqlab.training.rundir import default_run_dir, read_run, resolve_checkpoint
from seqlab.validation import check_choice, check_int, fail

FAMILY = "bert"
CLASSIFIER_FAMILY = "bert-classifier"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
DEFAULT_PRESET = "cpu-small"
# What `seqlab train bert` does with no options (about 3 minutes on 2 CPU cores)
BERT_TRAIN_DEFAULTS: dict[str, Any] = dict(max_steps=1500, batch_size=32, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                                           beta2=0.99, weight_decay=0.01, clip_norm=1.0, eval_every=250,
                                           eval_batches=20)
CLASSIFIER_TRAIN_DEFAULTS: dict[str, Any] = dict(max_steps=300, batch_size=32, lr=3e-4, min_lr=3e-5,
                                                 warmup_steps=30, beta2=0.99, weight_decay=0.01, clip_norm=1.0,
                                                 eval_every=100, eval_batches=10)
BERT_MODEL_FIELDS = {"block_size", "d_model", "num_heads", "num_layers", "d_ff", "dropout", "norm_first", "fused"}
FILL_EXAMPLES = ("The [MASK]ython language", "a list of integ[MASK]rs", "def f(x):\n    ret[MASK]rn x")


def build_bert_run(*, text: str | None = None, preset: str = DEFAULT_PRESET, tokenizer: str = "char",
                   vocab_size: int | None = None, block_size: int | None = None,
                   model_options: Mapping[str, Any] | None = None, train_options: Mapping[str, Any] | None = None):
    """(model, MLM dataset, TrainConfig, data_info) for a new BERT run; nothing is written."""
    check_choice(preset, "preset", PRESETS)
    model_options = dict(model_options or {})
    unknown = set(model_options) - BERT_MODEL_FIELDS
    if unknown:
        fail("model options", f"names among {sorted(BERT_MODEL_FIELDS)}", sorted(unknown))
    if block_size is not None:
        model_options["block_size"] = check_int(block_size, "block_size", minimum=2)
    model_options.setdefault("fused", True)  # F.scaled_dot_product_attention; --no-fused for the explicit path
    name, corpus = load_text(text)
    tok = build_tokenizer(tokenizer, corpus, vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS)
    config = BERTConfig.for_tokenizer(tok, preset, **model_options)
    data = MLMDataset.from_text(corpus, tok, config.block_size)
    cfg = TrainConfig.from_dict({**BERT_TRAIN_DEFAULTS, **dict(train_options or {})})
    info = {"source": source_name(text), "name": name, **data.info()}
    torch.manual_seed(cfg.seed)
    return BERT(config), data, cfg, info


def start_bert(*, out: str | os.PathLike | None = None, progress: bool = True, **options) -> tuple[TrainResult, Path]:
    """Pretrain a new BERT with masked-language modelling."""
    model, data, cfg, info = build_bert_run(**options)
    run_dir = Path(out) if out is not None else default_run_dir(FAMILY)
    result = train(model, data, cfg, run_dir, family=FAMILY, model_config=model.config.to_dict(),
                   files={"tokenizer.json": data.tokenizer.to_json()}, progress=progress, data_info=info)
    return result, run_dir


def _tokenizer_of(ckpt: Checkpoint) -> Tokenizer:
    return tokenizer_from_json(checkpoint_file(ckpt, "tokenizer.json"))


def resume_bert(run_dir: str | os.PathLike, *, progress: bool = True, text: str | None = None,
                model_options: Mapping[str, Any] | None = None,
                train_options: Mapping[str, Any] | None = None) -> tuple[TrainResult, Path]:
    """Continue a BERT run where it stopped, with the tokenizer saved in its checkpoint."""
    run_dir = Path(run_dir)
    saved = read_run(run_dir, FAMILY)
    data_saved = saved.get("data") or {}
    corpus = resume_text(data_saved.get("source"), text)
    tok = saved_tokenizer(run_dir, FAMILY)
    config = BERTConfig.from_dict(saved["model_config"])
    data = MLMDataset.from_text(corpus, tok, config.block_size, val_fraction=data_saved.get("val_fraction", 0.1))
    model = BERT(config)
    requested = {**saved["model_config"], **dict(model_options or {})}
    saved_train = {k: v for k, v in saved["train_config"].items() if k != "max_seconds"}
    cfg = TrainConfig.from_dict({**saved_train, **dict(train_options or {})})
    info = {"source": data_saved.get("source"), "name": data_saved.get("name"), **data.info()}
    result = train(model, data, cfg, run_dir, family=FAMILY, model_config=requested,
                   files={"tokenizer.json": tok.to_json()}, resume=True, progress=progress, data_info=info)
    return result, run_dir


def load_bert(path: str | os.PathLike, map_location: str = "cpu") -> tuple[BERT, Tokenizer, Checkpoint]:
    """A pretrained BERT from a run directory (best checkpoint, else latest) or a checkpoint."""
    ckpt = load_checkpoint(resolve_checkpoint(path), family=FAMILY, map_location=map_location)
    model = BERT(BERTConfig.from_dict(ckpt.config))
    load_weights(model, ckpt)
    tok = _tokenizer_of(ckpt)
    if tok.vocab_size != model.config.vocab_size:
        fail(f"checkpoint {ckpt.path}", f"a tokenizer of {model.config.vocab_size} tokens", f"{tok.vocab_size}")
    model.eval()
    return model, tok, ckpt


def fill_text(path: str | os.PathLike, text: str, *, top_k: int = 5, model=None, tokenizer=None
              ) -> list[list[tuple[str, float]]]:
    """For each [MASK] in ``text``: the top_k (filler, probability) of the BERT at ``path``."""
    if model is None:
        model, tokenizer, _ = load_bert(path)
    return fill(model, tokenizer, text, top_k)


def format_fill(text: str, fillers: list[list[tuple[str, float]]]) -> str:
    lines = [repr(text)]
    for j, options in enumerate(fillers, 1):
        lines.append(f"  [MASK] {j}: " + "  ".join(f"{tok!r} {p:.3f}" for tok, p in options))
    return "\n".join(lines)


def fill_demo(path: str | os.PathLike, examples=FILL_EXAMPLES, top_k: int = 3) -> str:
    """The fillers of a few example texts (those the vocabulary can encode)."""
    model, tok, _ = load_bert(path)
    out = []
    for text in examples:
        try:
            out.append(format_fill(text, fill(model, tok, text, top_k)))
        except ValueError:
            continue  # characters outside this corpus's vocabulary
    return "\n".join(out)


@torch.no_grad()
def masked_accuracy(model: BERT, data: MLMDataset, *, batches: int = 50, batch_size: int = 32,
                    seed: int = 1234) -> dict[str, float]:
    """Masked-token accuracy on random held-out windows (the validation split, masked with a
    fixed seed), with the unigram baseline: always guess the most frequent token of the
    training split."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.bincount(data.data.train_data, minlength=model.config.vocab_size)
    correct = total = 0
    base_correct = 0.0
    was_training = model.training
    model.eval()
    try:
        for _ in range(batches):
            x, y = data.get_batch("val", batch_size, g)
            logits = model(x)
            sel = y != -100
            n = int(sel.sum())
            correct += int((logits.argmax(-1)[sel] == y[sel]).sum())
            base_correct += unigram_accuracy(y, counts) * n
            total += n
    finally:
        model.train(was_training)
    return {"accuracy": correct / total, "unigram_accuracy": base_correct / total, "masked": total}


# --------------------------------------------------------------------------- classifier


def classification_texts(texts: Mapping[str, str] | None, tokenizer: Tokenizer) -> dict[str, str]:
    """label -> corpus text: the given label -> file path map, or the embedded default
    (Python's reference manual against Python source code of the standard library). With a
    character tokenizer, characters outside the pretrained vocabulary are removed (a BPE
    tokenizer encodes any text)."""
    corpora = default_classification_corpora() if not texts else \
        {label: read_text_file(path) for label, path in texts.items()}
    chars = getattr(tokenizer, "chars", None)
    if chars is not None:
        known = set(chars)
        corpora = {label: "".join(ch for ch in text if ch in known) for label, text in corpora.items()}
    return corpora


def start_classifier(bert_run: str | os.PathLike, *, texts: Mapping[str, str] | None = None,
                     out: str | os.PathLike | None = None, pooling: str = "cls", progress: bool = True,
                     train_options: Mapping[str, Any] | None = None) -> tuple[TrainResult, Path, float]:
    """Fine-tune the pretrained BERT of ``bert_run`` (all its weights) with a classification
    head on passages of ``texts`` (label -> file path; default: manual vs code); returns
    the result, the run directory and the accuracy over every validation passage."""
    bert, tok, ckpt = load_bert(bert_run)
    corpora = classification_texts(texts, tok)
    data = PassageClassificationDataset(corpora, tok, bert.config.block_size)
    cfg = TrainConfig.from_dict({**CLASSIFIER_TRAIN_DEFAULTS, **dict(train_options or {})})
    torch.manual_seed(cfg.seed)
    bert.train()
    model = BERTClassifier(bert, num_classes=data.num_classes, pooling=pooling)
    run_dir = Path(out) if out is not None else default_run_dir(CLASSIFIER_FAMILY)
    info = {"pretrained": str(ckpt.path), "labels": list(data.labels), **data.info()}
    result = train(model, data, cfg, run_dir, family=CLASSIFIER_FAMILY, model_config=model.config.to_dict(),
                   files={"tokenizer.json": tok.to_json(), "labels.json": json.dumps(list(data.labels))},
                   progress=progress, data_info=info)
    best, _, _ = load_classifier(run_dir)
    return result, run_dir, evaluate(best, data, "val")


def load_classifier(path: str | os.PathLike, map_location: str = "cpu"
                    ) -> tuple[BERTClassifier, Tokenizer, list[str]]:
    ckpt = load_checkpoint(resolve_checkpoint(path), family=CLASSIFIER_FAMILY, map_location=map_location)
    model = BERTClassifier.from_config(BERTClassifierConfig.from_dict(ckpt.config))
    load_weights(model, ckpt)
    tok = _tokenizer_of(ckpt)
    labels = json.loads(checkpoint_file(ckpt, "labels.json"))
    model.eval()
    return model, tok, labels


@torch.no_grad()
def classify(path: str | os.PathLike, text: str) -> list[tuple[str, float]]:
    """(label, probability) for ``text`` (cropped to the model's context), most probable first."""
    model, tok, labels = load_classifier(path)
    if not isinstance(text, str) or not text:
        fail("text", "a non-empty string", repr(text))
    ids = tok.encode(text, name="text")
    T = model.config.bert.block_size
    cls_id = model.config.bert.cls_id
    ids = ([cls_id] if cls_id is not None else []) + ids[: T - (cls_id is not None)]
    probs = torch.softmax(model(torch.tensor([ids])).float(), dim=-1)[0]
    return sorted(zip(labels, probs.tolist()), key=lambda lp: -lp[1])


def summary(result: TrainResult, accuracy: str = "masked-token accuracy") -> str:
    if result.best_val_loss is None:
        return f"{result.steps} steps, no evaluation yet"
    acc = [r.get("accuracy") for r in result.history if r.get("split") == "val" and r.get("accuracy") is not None]
    tail = f", {accuracy} {acc[-1]:.3f}" if acc else ""
    return (f"validation loss {result.best_val_loss:.4f} (best){tail}, {result.steps} steps in "
            f"{result.seconds:.0f} s")
