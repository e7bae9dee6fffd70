"""GPT as a family of the registry (``seqlab.runs``): ``seqlab train gpt``, ``seqlab sample``,
``seqlab attention``, and the same from Python::

    result = seqlab.train("gpt", text="shakespeare", max_steps=500)
    print(seqlab.sample(result.run_dir, prompt="ROMEO:", top_p=0.9))

Corpus -> tokenizer (characters, or byte-level BPE fitted to the corpus) -> ``TokenDataset``
windows of the model's context -> ``GPT`` -> the trainer; every checkpoint carries
``tokenizer.json`` (Hugging Face's format).
"""

from __future__ import annotations

from dataclasses import dataclass

from seqlab.llm.gpt import PRESETS, GPT, GPTConfig
from seqlab.llm.language import LanguageData, TextFamily
from seqlab.llm.sampling import SampleOptions, sample_text
from seqlab.runs import RunRecord, register


@dataclass(frozen=True)
class GPTSampleOptions(SampleOptions):
    """Options of ``seqlab sample`` for a GPT run.

    Attributes:
        cache: keep the keys and values of the context (the KV cache); --no-cache recomputes every position
    """

    cache: bool = True


class GPTFamily(TextFamily):
    name = "gpt"
    description = "GPT: a decoder-only Transformer language model (next-token prediction, KV cache)"
    model_class = GPT
    config_class = GPTConfig
    data_class = LanguageData
    sample_class = GPTSampleOptions
    presets = PRESETS
    default_preset = "cpu-small"
    # What `seqlab train gpt` does with no options: nanoGPT's CPU recipe for tiny Shakespeare
    # (2,000 steps of batch 12, AdamW lr 1e-3 cosine-decayed to 1e-4 after 100 warmup steps,
    # beta2 0.99, weight decay 0.1, gradient norm clipped at 1).
    train_defaults = dict(max_steps=2000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup_steps=100, beta2=0.99,
                          weight_decay=0.1, clip_norm=1.0, eval_every=250, eval_batches=20)
    views = ("attention",)
    legacy_weights = {"w_e": "w_x", "w_out": "w_o"}  # seqlab 0.1's names of w^(x) and the untied w^(o)

    def sample(self, model: GPT, run: RunRecord, options: GPTSampleOptions, *, on_text=None) -> str:
        return sample_text(model, run.tokenizer, options, on_text=on_text, use_cache=options.cache)


register(GPTFamily())
