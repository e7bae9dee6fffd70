"""The character language model as a family of the registry (``seqlab.runs``):
``seqlab train rnn|lstm|gru``, ``seqlab sample``, and the same from Python::

    result = seqlab.train("lstm", max_steps=200)          # the embedded text (Python's manual)
    print(seqlab.sample(result.run_dir, prompt="def "))

Corpus -> characters (``CharTokenizer``) -> ``TokenDataset`` windows (x, y) -> ``CharLM`` ->
the trainer; every checkpoint carries ``tokenizer.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

from seqlab.data.text import TextData, load_corpus
from seqlab.llm.language import TextFamily
from seqlab.llm.tokenizers import CharTokenizer
from seqlab.recurrent.charlm import PRESETS, CharLM, CharLMConfig
from seqlab.runs import RunRecord, register


@dataclass(frozen=True)
class CharLMData:
    """The data of a character model.

    Attributes:
        text: the corpus: pydoc (Python's reference manual, embedded), shakespeare (tiny Shakespeare) or a UTF-8 file
        block_size: characters per training window (the BPTT length T)
    """

    text: str = "pydoc"
    block_size: int = 64


class CharLMFamily(TextFamily):
    name = "charlm"
    description = "character language model: Elman RNN, LSTM or GRU written from the lecture's equations"
    model_class = CharLM
    config_class = CharLMConfig
    data_class = CharLMData
    presets = PRESETS
    default_preset = "cpu-small"
    # What `seqlab train lstm` does with no options: about 5 minutes on 2 CPU cores. Tuned on
    # tiny Shakespeare in 5-minute budgets (benchmarks/bench_charlm_quality.py): short windows
    # and small batches give many updates, and with gradient clipping a high peak learning
    # rate (decayed by the cosine schedule) learns fastest.
    train_defaults = dict(max_steps=3000, batch_size=32, lr=2e-2, warmup_steps=100, eval_every=500, eval_batches=20,
                          clip_norm=1.0)
    variants = {"rnn": {"cell": "rnn"}, "lstm": {"cell": "lstm"}, "gru": {"cell": "gru"}}
    unit = "char"

    def make_data(self, options: CharLMData, fields, train_config) -> TextData:
        corpus = load_corpus(options.text)
        tokenizer = CharTokenizer.from_text(corpus.text)
        return TextData(corpus, self.make_dataset(corpus.text, tokenizer, options.block_size))

    def saved_block_size(self, run: RunRecord) -> int:
        return run.saved_data().get("block_size", CharLMData.block_size)


register(CharLMFamily())
