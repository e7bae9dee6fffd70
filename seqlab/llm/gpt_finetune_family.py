"""A pretrained GPT fine-tuned on a new text, as a family of the registry: ``seqlab finetune
GPT_RUN [--freeze K | --lora-rank r]`` (= ``seqlab train gpt-finetune --base GPT_RUN``),
``seqlab sample``, ``seqlab attention``, ``seqlab eval`` (the forgetting table)::

    result = seqlab.train("gpt-finetune", base="runs/gpt-...", text="shakespeare", freeze=2)
    model, run = seqlab.load(result.run_dir)          # the whole GPT, rebuilt from the base run
    print(seqlab.evaluate(result.run_dir).table())      # new text and base corpus, before and after

The new text is tokenized with the base run's tokenizer (with a character tokenizer, the
characters it does not know are removed and counted). A run whose base weights are frozen
stores only the weights it trains and a reference to the base run's checkpoint (its path and
the sha256 of its weights: ``seqlab.llm.adapt``). The size is the base run's, so the family
has no presets. Checkpoints carry ``tokenizer.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqlab.data.text import TextData, load_corpus, saved_corpus
from seqlab.data.tokens import TokenDataset
from seqlab.llm.adapt import base_fields, load_base
from seqlab.llm.finetune import FineTunedGPT, GPTFineTuneConfig, forgetting
from seqlab.llm.gpt_family import GPTSampleOptions
from seqlab.llm.language import TextFamily
from seqlab.llm.sampling import sample_text
from seqlab.llm.tokenizers import Tokenizer, tokenizer_from_json
from seqlab.runs import RunRecord, get_family, load, register
from seqlab.validation import fail


@dataclass(frozen=True)
class FineTuneText:
    """The data of a GPT fine-tune.

    Attributes:
        base: the pretrained GPT's run directory (seqlab train gpt)
        text: the new corpus: code (standard-library source, embedded), pydoc, shakespeare or a UTF-8 file
    """

    base: str | None = None
    text: str = "code"


@dataclass(frozen=True)
class ForgettingOptions:
    """Options of ``seqlab eval`` for a GPT fine-tune.

    Attributes:
        batches: validation batches of each corpus (1 to 100,000)
        batch_size: windows per batch (1 to 4,096)
        seed: seed of the windows (the same for both models)
    """

    batches: int = 20
    batch_size: int = 12
    seed: int = 1234


def known_text(text: str, tokenizer: Tokenizer) -> tuple[str, int]:
    """``text`` without the characters a character tokenizer does not know, and how many were
    removed (a BPE tokenizer encodes any text: nothing is removed)."""
    chars = getattr(tokenizer, "chars", None)
    if chars is None:
        return text, 0
    known = set(chars)
    kept = "".join(ch for ch in text if ch in known)
    return kept, len(text) - len(kept)


@dataclass
class FineTuneData:
    """A fine-tune's data: the new text's windows, and for a new run the base model."""

    text: TextData
    removed: int  # characters of the new text the base tokenizer does not know
    base_dir: str  # the base run's directory
    base: Any = None  # (GPT, RunRecord) of the base run, for a new run only

    @property
    def tokenizer(self) -> Tokenizer:
        return self.text.tokenizer

    @property
    def dataset(self) -> TokenDataset:
        return self.text.dataset

    def info(self) -> dict:
        return {"base": self.base_dir, "removed_characters": self.removed, **self.text.info()}


def _windows(corpus, tokenizer: Tokenizer, block_size: int, val_fraction: float = 0.1) -> tuple[TextData, int]:
    kept, removed = known_text(corpus.text, tokenizer)
    if not kept:
        fail(f"text {corpus.name!r}", "characters the base run's tokenizer knows", "none")
    return TextData(corpus, TokenDataset.from_text(kept, tokenizer, block_size, val_fraction)), removed


class GPTFineTuneFamily(TextFamily):
    name = "gpt-finetune"
    description = "a pretrained GPT fine-tuned on a new text (all weights, --freeze K layers, or --lora-rank r)"
    model_class = FineTunedGPT
    config_class = GPTFineTuneConfig
    data_class = FineTuneText
    sample_class = GPTSampleOptions
    evaluate_class = ForgettingOptions
    presets = {}
    # fine-tuning: a few hundred steps at a smaller learning rate than pretraining
    train_defaults = dict(max_steps=300, batch_size=12, lr=5e-4, min_lr=5e-5, warmup_steps=20, beta2=0.99,
                          weight_decay=0.01, clip_norm=1.0, eval_every=100, eval_batches=20)
    data_fields = ("gpt", "base_checkpoint", "base_sha256")
    views = ("attention",)

    # ---- data

    def make_data(self, options: FineTuneText, fields, train_config) -> FineTuneData:
        gpt, base = load_base(options.base, "gpt", "a pretrained GPT")
        text, removed = _windows(load_corpus(options.text), base.tokenizer, gpt.config.block_size)
        return FineTuneData(text, removed, str(Path(base.dir or base.checkpoint).resolve()), (gpt, base))

    def data_from_run(self, run: RunRecord, options) -> FineTuneData:
        saved = run.saved_data()
        text, removed = _windows(saved_corpus(saved, options.get("text")), run.tokenizer,
                                 run.config.gpt.block_size, saved.get("val_fraction", 0.1))
        return FineTuneData(text, removed, saved["base"])

    def config_from_data(self, data: FineTuneData, train_config) -> dict:
        gpt, base = data.base
        return {"gpt": gpt.config, **base_fields(base.checkpoint)}

    def new_model(self, config: GPTFineTuneConfig, data: FineTuneData) -> FineTunedGPT:
        model = self.build(config)  # the adapted structure (LoRA's A drawn from the run's seed)
        model.start_from(data.base[0].state_dict())  # the base run's weights
        return model

    def extras(self, run: RunRecord) -> None:
        run.tokenizer = tokenizer_from_json(run.file("tokenizer.json"))
        if run.tokenizer.vocab_size != run.config.gpt.vocab_size:
            fail(f"checkpoint {run.checkpoint}", f"a tokenizer of {run.config.gpt.vocab_size} tokens",
                 f"{run.tokenizer.vocab_size} tokens")

    # ---- use

    def sample(self, model: FineTunedGPT, run: RunRecord, options: GPTSampleOptions, *, on_text=None) -> str:
        # LoRA folded into the weights: the same text, without B A recomputed at every step
        return sample_text(model.merged().eval(), run.tokenizer, options, on_text=on_text, use_cache=options.cache)

    def evaluate(self, model: FineTunedGPT, run: RunRecord, options: ForgettingOptions):
        """The base and the fine-tuned model on the new text and on the base run's corpus."""
        base_model, base_run = load(model.finetune_config.base_checkpoint)  # the weights it started from
        old = get_family("gpt").data_from_run(base_run, {}).dataset
        new = self.data_from_run(run, {}).dataset
        return forgetting(base_model, model, new, old, batches=options.batches, batch_size=options.batch_size,
                          seed=options.seed)

    def report(self, model: FineTunedGPT, run: RunRecord) -> list[str]:
        return [*self.evaluate(model, run, ForgettingOptions()).table().splitlines(),
                "sample: " + self.sample(model, run, self.sample_class(length=200))]


register(GPTFineTuneFamily())
