"""Fine-tuning a pretrained BERT as a passage classifier, as a family of the registry
(``seqlab.runs``): ``seqlab finetune BERT_RUN`` (= ``seqlab train bert-classifier --base
BERT_RUN``), ``seqlab classify``, ``seqlab eval``::

    result = seqlab.train("bert-classifier", base="runs/bert-...", max_steps=100)
    model, run = seqlab.load(result.run_dir)

The head z = w^(c) . h + b^(c) on the [CLS] state (or the mean state) is trained together
with every weight of the encoder, or with its last blocks only (``--freeze K``: the
embeddings and the first K blocks frozen), or with LoRA's low-rank A and B on every
projection (``--lora-rank r``); see ``seqlab.llm.adapt``. A run with frozen weights stores
only what it trains, and reads the rest from the base run's checkpoint. The corpora are
labelled text files (``--text LABEL=PATH``, at least two) or, by default, Python's
reference manual against standard-library source code. A classifier's size is its base run's, so the family has no
presets. Checkpoints carry ``tokenizer.json`` and ``labels.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqlab.data.mlm import PassageClassificationDataset, default_classification_corpora
from seqlab.data.text import read_text_file
from seqlab.llm.adapt import base_fields, load_base
from seqlab.llm.bert import BERTClassifier, BERTClassifierConfig, evaluate
from seqlab.llm.tokenizers import Tokenizer, tokenizer_from_json
from seqlab.runs import Family, RunRecord, register
from seqlab.validation import fail


@dataclass(frozen=True)
class ClassifierData:
    """The data of a classifier fine-tuned from a BERT run.

    Attributes:
        base: the pretrained BERT's run directory (seqlab train bert)
        text: a labelled corpus LABEL=PATH (repeat, at least two; default: manual vs code)
    """

    base: str | None = None
    text: tuple[str, ...] = ()


@dataclass
class Passages:
    """A classifier run's data: the passages, and for a new run the pretrained BERT."""

    dataset: PassageClassificationDataset
    texts: dict[str, str] | None  # label -> file path, None for the embedded corpora
    base: Any = None  # (BERT, RunRecord) of the pretrained run, for a new run only

    @property
    def tokenizer(self) -> Tokenizer:
        return self.dataset.tokenizer

    def info(self) -> dict:
        pretrained = None if self.base is None else str(self.base[1].checkpoint)
        return {"pretrained": pretrained, "labels": list(self.dataset.labels), "texts": self.texts,
                **self.dataset.info()}


@dataclass(frozen=True)
class ClassifierEvaluation:
    """Options of ``seqlab eval`` for a classifier run.

    Attributes:
        split: the passages to score: val or train
    """

    split: str = "val"


@dataclass
class Accuracy:
    accuracy: float
    split: str
    passages: int

    def table(self) -> str:
        return f"accuracy {self.accuracy:.3f} over every {self.split} passage ({self.passages})"

    def to_json(self) -> dict:
        return {"accuracy": self.accuracy, "split": self.split, "passages": self.passages}


def label_files(items: tuple[str, ...] | list[str]) -> dict[str, str] | None:
    """``["manual=a.txt", "code=b.txt"]`` -> {label: absolute path}; empty -> None (the default
    corpora)."""
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        label, sep, path = str(item).partition("=")
        if not sep or not label or not path:
            fail("text", "LABEL=PATH", repr(item))
        if label in out:
            fail("text", "each label once", f"{label!r} twice")
        out[label] = str(Path(path).expanduser().resolve())
    if len(out) < 2:
        fail("text", "at least two LABEL=PATH corpora", len(out))
    return out


def corpora(texts: dict[str, str] | None, tokenizer: Tokenizer) -> dict[str, str]:
    """label -> corpus text; with a character tokenizer, characters outside the pretrained
    vocabulary are removed (a BPE tokenizer encodes any text)."""
    out = default_classification_corpora() if texts is None else \
        {label: read_text_file(path) for label, path in texts.items()}
    chars = getattr(tokenizer, "chars", None)
    if chars is not None:
        known = set(chars)
        out = {label: "".join(ch for ch in text if ch in known) for label, text in out.items()}
    return out


class BERTClassifierFamily(Family):
    name = "bert-classifier"
    description = "a pretrained BERT fine-tuned with a classification head (which corpus is a passage from?)"
    model_class = BERTClassifier
    config_class = BERTClassifierConfig
    data_class = ClassifierData
    evaluate_class = ClassifierEvaluation
    train_defaults = dict(max_steps=300, batch_size=32, lr=3e-4, min_lr=3e-5, warmup_steps=30, beta2=0.99,
                          weight_decay=0.01, clip_norm=1.0, eval_every=100, eval_batches=10)
    data_fields = ("bert", "num_classes", "base_checkpoint", "base_sha256")
    metric = "validation loss (cross-entropy)"
    views = ("classify",)

    def make_data(self, options: ClassifierData, fields, train_config) -> Passages:
        bert, base = load_base(options.base, "bert", "a pretrained BERT")
        texts = label_files(options.text)
        dataset = PassageClassificationDataset(corpora(texts, base.tokenizer), base.tokenizer,
                                               bert.config.block_size)
        return Passages(dataset, texts, (bert, base))

    def data_from_run(self, run: RunRecord, options) -> Passages:
        saved = run.saved_data()
        if "texts" not in saved:
            fail("bert-classifier run", "a run.json that names its corpora (seqlab 0.2 or later)",
                 f"{run.dir} (a seqlab 0.1 run: it loads and classifies, but cannot be resumed or evaluated)")
        texts = saved["texts"]
        dataset = PassageClassificationDataset(corpora(texts, run.tokenizer), run.tokenizer,
                                               run.config.bert.block_size, saved.get("val_fraction", 0.1))
        return Passages(dataset, texts)

    def config_from_data(self, data: Passages, train_config) -> dict:
        return {"bert": data.base[0].config, "num_classes": data.dataset.num_classes,
                **base_fields(data.base[1].checkpoint)}

    def build(self, config: BERTClassifierConfig) -> BERTClassifier:
        return BERTClassifier.from_config(config)

    def new_model(self, config: BERTClassifierConfig, data: Passages) -> BERTClassifier:
        bert = data.base[0].train()  # the pretrained encoder, fine-tuned with the new head (or frozen, or LoRA)
        return BERTClassifier(bert, **{k: v for k, v in config.to_dict().items() if k != "bert"})

    def files(self, data: Passages) -> dict[str, str]:
        return {"tokenizer.json": data.tokenizer.to_json(), "labels.json": json.dumps(list(data.dataset.labels))}

    def training_data(self, data: Passages) -> PassageClassificationDataset:
        return data.dataset

    def extras(self, run: RunRecord) -> None:
        run.tokenizer = tokenizer_from_json(run.file("tokenizer.json"))
        labels = json.loads(run.file("labels.json"))
        if not isinstance(labels, list) or len(labels) != run.config.num_classes:
            fail(f"checkpoint {run.checkpoint}", f"labels.json with {run.config.num_classes} labels", repr(labels))
        run.extras["labels"] = [str(x) for x in labels]

    def evaluate(self, model: BERTClassifier, run: RunRecord, options: ClassifierEvaluation) -> Accuracy:
        data = self.data_from_run(run, {})
        acc = evaluate(model, data.dataset, options.split)
        return Accuracy(acc, options.split, int(data.dataset.passages(options.split)[0].shape[0]))

    def report(self, model: BERTClassifier, run: RunRecord) -> list[str]:
        return [self.evaluate(model, run, ClassifierEvaluation()).table() + " (best checkpoint)"]

    @torch.no_grad()
    def classify(self, model: BERTClassifier, run: RunRecord, text: str) -> list[tuple[str, float]]:
        """(label, probability) for ``text`` (cropped to the model's context), most probable first."""
        if not isinstance(text, str) or not text:
            fail("text", "a non-empty string", repr(text))
        ids = run.tokenizer.encode(text, name="text")
        bc = model.config.bert
        ids = ([bc.cls_id] if bc.cls_id is not None else []) + ids[: bc.block_size - (bc.cls_id is not None)]
        probs = torch.softmax(model(torch.tensor([ids])).float(), dim=-1)[0]
        return sorted(zip(run.extras["labels"], probs.tolist()), key=lambda lp: -lp[1])


register(BERTClassifierFamily())
