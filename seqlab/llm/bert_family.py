"""BERT as a family of the registry (``seqlab.runs``): masked-language-model pretraining,
``seqlab train bert``, ``seqlab fill``, ``seqlab attention``, ``seqlab eval``::

    result = seqlab.train("bert", max_steps=500)
    model, run = seqlab.load(result.run_dir)
    print(seqlab.llm.bert.fill(model, run.tokenizer, "def f(x): ret[MASK]rn x"))

Corpus -> tokenizer with [PAD] [UNK] [CLS] [SEP] [MASK] -> ``MLMDataset`` (15% of the tokens
masked: 80% [MASK], 10% random, 10% kept; the masking drawn from the batch's generator, so a
resumed run is exact) -> ``BERT`` -> the trainer. Fine-tuning a classifier on top of a
pretrained run is the family ``bert-classifier`` (``bert_classifier_family.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from seqlab.data.mlm import MLMDataset
from seqlab.llm.bert import PRESETS, BERT, BERTConfig, fill, masked_accuracy
from seqlab.llm.language import LanguageData, TextFamily
from seqlab.llm.tokenizers import BERT_SPECIAL_TOKENS
from seqlab.runs import RunRecord, register
from seqlab.validation import check_int

FILL_EXAMPLES = ("The [MASK]ython language", "a list of integ[MASK]rs", "def f(x):\n    ret[MASK]rn x")


@dataclass(frozen=True)
class MaskedEvaluation:
    """Options of ``seqlab eval`` for a BERT run.

    Attributes:
        batches: held-out batches of masked windows (1 to 100,000)
        batch_size: windows per batch (1 to 4,096)
        seed: seed of the windows and the masking
    """

    batches: int = 50
    batch_size: int = 32
    seed: int = 1234


@dataclass
class MaskedAccuracy:
    """Masked-token accuracy on held-out windows, against always guessing the most frequent
    token of the training split."""

    accuracy: float
    unigram_accuracy: float
    masked: int

    def table(self) -> str:
        return (f"masked-token accuracy {self.accuracy:.3f} over {self.masked} masked tokens of the validation "
                f"split; always guessing the most frequent token: {self.unigram_accuracy:.3f}")

    def to_json(self) -> dict:
        return {"accuracy": self.accuracy, "unigram_accuracy": self.unigram_accuracy, "masked": self.masked}


def format_fill(text: str, fillers: list[list[tuple[str, float]]]) -> str:
    """The fillers of each [MASK] of ``text``, one line per mask."""
    lines = [repr(text)]
    for j, options in enumerate(fillers, 1):
        lines.append(f"  [MASK] {j}: " + "  ".join(f"{tok!r} {p:.3f}" for tok, p in options))
    return "\n".join(lines)


class BERTFamily(TextFamily):
    name = "bert"
    description = "BERT: a bidirectional Transformer encoder pretrained by masked-language modelling"
    model_class = BERT
    config_class = BERTConfig
    data_class = LanguageData
    sample_class = None  # a BERT fills in masks (seqlab fill) rather than sampling text
    evaluate_class = MaskedEvaluation
    presets = PRESETS
    default_preset = "cpu-small"
    special_tokens = BERT_SPECIAL_TOKENS
    # What `seqlab train bert` does with no options (about 3 minutes on 2 CPU cores)
    train_defaults = dict(max_steps=1500, batch_size=32, lr=1e-3, min_lr=1e-4, warmup_steps=100, beta2=0.99,
                          weight_decay=0.01, clip_norm=1.0, eval_every=250, eval_batches=20)
    config_defaults = {"fused": True}  # F.scaled_dot_product_attention; --no-fused for the explicit form
    data_fields = ("vocab_size", "mask_id", "pad_id", "cls_id")
    metric = "validation loss (nats per masked token)"
    views = ("attention", "fill")

    def make_dataset(self, text, tokenizer, block_size, val_fraction=0.1) -> MLMDataset:
        return MLMDataset.from_text(text, tokenizer, block_size, val_fraction)

    def config_from_data(self, data, train_config) -> dict:
        tok = data.tokenizer
        return {"vocab_size": tok.vocab_size, "mask_id": tok.mask_id, "pad_id": tok.pad_id, "cls_id": tok.cls_id}

    def summary(self, result) -> str:
        if result.best_val_loss is None:
            return f"{result.steps} steps, no evaluation"
        acc = [r["accuracy"] for r in result.history if r.get("split") == "val" and "accuracy" in r]
        tail = f", masked-token accuracy {acc[-1]:.3f}" if acc else ""
        return (f"validation loss {result.best_val_loss:.4f} (best){tail}, {result.steps} steps in "
                f"{result.seconds:.0f} s")

    def fill(self, model: BERT, run: RunRecord, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """For each [MASK] in ``text``: the ``top_k`` (filler, probability)."""
        return fill(model, run.tokenizer, text, top_k)

    def report(self, model: BERT, run: RunRecord) -> list[str]:
        out = []
        for text in FILL_EXAMPLES:
            try:
                out.append(format_fill(text, self.fill(model, run, text, 3)))
            except ValueError:
                continue  # characters outside this corpus's vocabulary
        return out

    def evaluate(self, model: BERT, run: RunRecord, options: MaskedEvaluation) -> MaskedAccuracy:
        check_int(options.batches, "batches", minimum=1, maximum=100_000)
        check_int(options.batch_size, "batch_size", minimum=1, maximum=4096)
        data = self.data_from_run(run, {})
        return MaskedAccuracy(**masked_accuracy(model, data.dataset, batches=options.batches,
                                                batch_size=options.batch_size, seed=options.seed))


register(BERTFamily())
