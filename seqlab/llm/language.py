"""What the language-model families share (the character RNN/LSTM/GRU, GPT, BERT): a corpus
read by name, a tokenizer saved as ``tokenizer.json`` with every checkpoint, a dataset of
windows, summaries in bits per token, and sampling text.

``TextFamily`` is a ``seqlab.runs.Family`` with those parts filled in; a text family sets
``make_dataset`` (which windows it trains on) and the rest of the protocol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from seqlab.data.text import TextData, load_corpus, saved_corpus
from seqlab.data.tokens import TokenDataset
from seqlab.llm.sampling import SampleOptions, sample_text
from seqlab.llm.tokenizers import Tokenizer, fit_tokenizer, tokenizer_from_json
from seqlab.runs import Family, RunRecord
from seqlab.validation import fail

LN2 = math.log(2.0)


@dataclass(frozen=True)
class LanguageData:
    """The data of a Transformer language model (GPT, BERT).

    Attributes:
        text: the corpus: pydoc (Python's reference manual, embedded), shakespeare (tiny Shakespeare) or a UTF-8 file
        tokenizer: char (the corpus's characters) or bpe (byte-level BPE fitted to the corpus)
        vocab_size: with bpe, the vocabulary size to reach (default 512)
    """

    text: str = "pydoc"
    tokenizer: str = "char"
    vocab_size: int | None = None


class TextFamily(Family):
    """A family trained on windows of a corpus, with a tokenizer."""

    unit: ClassVar[str] = "token"  # what the loss is per, in summaries
    special_tokens: ClassVar[tuple[str, ...]] = ()
    data_fields = ("vocab_size",)
    resume_data_options = ("text",)
    sample_class = SampleOptions

    # ---- data

    def make_dataset(self, text: str, tokenizer: Tokenizer, block_size: int, val_fraction: float = 0.1) -> Any:
        """The windows the model trains on."""
        return TokenDataset.from_text(text, tokenizer, block_size, val_fraction)

    def block_size(self, fields: dict) -> int:
        """The window length of a new run, from its config fields (preset and options)."""
        return fields.get("block_size", self.config_class.block_size)

    def saved_block_size(self, run: RunRecord) -> int:
        return run.config.block_size

    def make_data(self, options: LanguageData, fields, train_config) -> TextData:
        corpus = load_corpus(options.text)
        tokenizer = fit_tokenizer(options.tokenizer, corpus.text, vocab_size=options.vocab_size,
                                  special_tokens=self.special_tokens)
        return TextData(corpus, self.make_dataset(corpus.text, tokenizer, self.block_size(fields)))

    def data_from_run(self, run: RunRecord, options) -> TextData:
        saved = run.saved_data()
        corpus = saved_corpus(saved, options.get("text"))
        return TextData(corpus, self.make_dataset(corpus.text, run.tokenizer, self.saved_block_size(run),
                                                  saved.get("val_fraction", 0.1)))

    def training_data(self, data: TextData) -> Any:
        return data.dataset

    def files(self, data: TextData) -> dict[str, str]:
        return {"tokenizer.json": data.tokenizer.to_json()}

    def config_from_data(self, data: TextData, train_config) -> dict:
        return {"vocab_size": data.tokenizer.vocab_size}

    def extras(self, run: RunRecord) -> None:
        run.tokenizer = tokenizer_from_json(run.file("tokenizer.json"))
        expected = run.config.vocab_size
        if run.tokenizer.vocab_size != expected:
            fail(f"checkpoint {run.checkpoint}", f"a tokenizer of {expected} {self.unit}s",
                 f"{run.tokenizer.vocab_size} {self.unit}s")

    # ---- use

    def summary(self, result) -> str:
        if result.best_val_loss is None:
            return f"{result.steps} steps, no evaluation"
        u = self.unit
        return (f"validation loss {result.best_val_loss:.4f} nats/{u} = {result.best_val_loss / LN2:.3f} bits/{u} "
                f"(best), {result.steps} steps in {result.seconds:.0f} s")

    def sample(self, model, run: RunRecord, options: SampleOptions, *, on_text=None) -> str:
        return sample_text(model, run.tokenizer, options, on_text=on_text)

    def format_sample(self, result: str, options: SampleOptions) -> str:
        return (options.prompt or "") + result

    def report(self, model, run: RunRecord) -> list[str]:
        return ["sample: " + self.sample(model, run, self.sample_class(length=200))]
