"""Slow learning tests (``make test-slow``): short real runs must beat trivial baselines."""

import math
from collections import Counter

import pytest

import seqlab
from seqlab.data.text import pydoc_text
from seqlab.data.tokens import TokenDataset
from seqlab.llm.tokenizers import CharTokenizer

pytestmark = pytest.mark.slow


def unigram_bits_per_char(data: TokenDataset) -> float:
    """Cross-entropy on the validation split of the training split's character frequencies
    (the best model that ignores context), in bits per character."""
    train = Counter(data.train_data.tolist())
    total = sum(train.values())
    V = data.vocab_size
    val = data.val_data.tolist()
    # add-one smoothing so unseen characters have a finite cost
    return -sum(math.log2((train[c] + 1) / (total + V)) for c in val) / len(val)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_char_model_beats_the_unigram_baseline(tmp_path, cell):
    result = seqlab.train(cell, out=tmp_path / cell, progress=False, preset="cpu-small", block_size=64,
                          max_steps=400, batch_size=32, lr=2e-2, eval_every=200, eval_batches=20, warmup_steps=50)
    text = pydoc_text()
    baseline = unigram_bits_per_char(TokenDataset.from_text(text, CharTokenizer.from_text(text), 64))
    bpc = result.best_val_loss / math.log(2)
    # a model that uses context must do clearly better than character frequencies
    assert bpc < baseline - 1.0, (bpc, baseline)
