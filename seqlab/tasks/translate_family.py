"""Machine translation (``seqlab.tasks.translate``) as a family of the registry:
``seqlab train translate [--arch rnn|transformer] [--direction en-fr] [--pairs FILE.tsv]``,
``seqlab translate RUN "three hundred and twelve" [--beam 5] [--png alignment.png]``,
``seqlab eval RUN [--beam 5]``, and the same from Python::

    result = seqlab.train("translate", arch="transformer", max_steps=3000)
    model, run = seqlab.load(result.run_dir)
    from seqlab.tasks.translate_family import translate
    print(translate(result.run_dir, "three hundred and twelve", beam=5).text)   # trois cent douze
    print(seqlab.evaluate(result.run_dir, beam=5).table())                       # BLEU, chrF, exact match

The data are the number phrases of ``num2words`` (English words -> French words by default;
``--direction digits-en``, ``en-de``, ...), split by number so that the test split holds
numbers never seen in training, or the pairs of a tab-separated file (``--pairs``), split by
source sentence (``seqlab.tasks.translate_data``). Checkpoints carry both vocabularies as
JSON (``source_vocab.json``, ``target_vocab.json``). The evaluation translates the held-out
test split greedily and by beam search and scores it with sacrebleu's BLEU and chrF and the
exact-match rate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqlab.runs import Family, RunRecord, register
from seqlab.tasks.translate import TranslateConfig, Translator, make_model
from seqlab.tasks.translate_data import (DIRECTIONS, TOKENS, TranslationData, Vocab, check_direction,
                                         make_translation_data, normalise)
from seqlab.validation import check_choice, check_float, check_int, fail

SOURCE_VOCAB, TARGET_VOCAB = "source_vocab.json", "target_vocab.json"


@dataclass(frozen=True)
class TranslateData:
    """The sentence pairs a translate run learns from.

    Attributes:
        direction: the generated number phrases, SOURCE-TARGET among digits, en, fr, de (en-fr, digits-en, en-de, ...)
        low: the smallest number of the generated corpus
        high: the largest number of the generated corpus
        pairs: a UTF-8 tab-separated file of pairs, source<TAB>target per line, used instead of the numbers
        tokens: auto (chars when a side is German, else words), words or chars
        test_fraction: share of the numbers (or distinct source sentences) held out for the test split
        val_fraction: share held out for validation
        split_seed: seed of the split (the same split whatever the training seed)
    """

    direction: str = "en-fr"
    low: int = 0
    high: int = 9999
    pairs: str | None = None
    tokens: str = "auto"
    test_fraction: float = 0.1
    val_fraction: float = 0.05
    split_seed: int = 0


@dataclass(frozen=True)
class TranslateEvaluation:
    """Options of ``seqlab eval`` for a translate run.

    Attributes:
        split: test (held out) or val
        beam: beam width of the second decoding (1: greedy only)
        length_alpha: length normalisation of the beam's scores, log p / |y|^alpha (0: none)
        limit: translate at most this many pairs of the split, a seeded sample (None: all)
        pairs: a moved copy of the run's pairs file (its sha256 must match); None: where it was
    """

    split: str = "test"
    beam: int = 5
    length_alpha: float = 0.6
    limit: int | None = None
    pairs: str | None = None


@dataclass
class TranslationScores:
    """``seqlab eval``'s result: per decoding (greedy, beam K), exact match, BLEU and chrF, and
    a few examples."""

    split: str
    n: int
    rows: dict
    examples: list

    def table(self) -> str:
        lines = [f"{self.split} split, {self.n} pairs"]
        for name, r in self.rows.items():
            lines.append(f"{name:>8}: exact match {r['exact_match']:.3f}, BLEU {r['bleu']:.1f}, chrF {r['chrf']:.1f}")
        for src, ref, hyp in self.examples:
            lines.append(f"  {src!r} -> {hyp!r}" + ("" if hyp == ref else f"  (reference {ref!r})"))
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"split": self.split, "n": self.n, "results": self.rows,
                "examples": [{"source": s, "reference": r, "hypothesis": h} for s, r, h in self.examples]}


# --------------------------------------------------------------------------- metrics


def exact_match(hypotheses: list[str], references: list[str]) -> float:
    """The share of hypotheses equal to their reference (both normalised: ``normalise``)."""
    if len(hypotheses) != len(references) or not references:
        fail("exact_match", "as many hypotheses as references (at least one)",
             f"{len(hypotheses)} and {len(references)}")
    return sum(normalise(h) == normalise(r) for h, r in zip(hypotheses, references)) / len(references)


def bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU (sacrebleu's defaults: 13a tokenisation, 4-grams, exponential smoothing), 0-100."""
    import sacrebleu

    if len(hypotheses) != len(references) or not references:
        fail("bleu", "as many hypotheses as references (at least one)", f"{len(hypotheses)} and {len(references)}")
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def chrf(hypotheses: list[str], references: list[str]) -> float:
    """Corpus chrF (sacrebleu's defaults: character 6-grams, beta = 2), 0-100."""
    import sacrebleu

    if len(hypotheses) != len(references) or not references:
        fail("chrf", "as many hypotheses as references (at least one)", f"{len(hypotheses)} and {len(references)}")
    return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)


def score_translations(hypotheses: list[str], references: list[str]) -> dict:
    return {"exact_match": exact_match(hypotheses, references), "bleu": bleu(hypotheses, references),
            "chrf": chrf(hypotheses, references)}


def evaluate_pairs(model: Translator, source_vocab: Vocab, target_vocab: Vocab, pairs: list[tuple[str, str]], *,
                   beams: tuple[int, ...] = (1, 5), alpha: float = 0.6) -> dict:
    """{"greedy" | "beam K": scores} of the model's translations of ``pairs``; a source with a
    piece the training split never had is translated with <unk> in its place."""
    from seqlab.tasks.translate import decode
    from seqlab.tasks.translate_data import collate
    import torch

    refs = [t for _, t in pairs]
    device = next(model.parameters()).device
    limit = model.config.max_source_len
    enc = [torch.tensor(source_vocab.encode(s)[:limit]) for s, _ in pairs]
    out, hyps_by = {}, {}
    for K in beams:
        hyps = []
        for lo in range(0, len(enc), 256):
            src, src_len = collate(enc[lo:lo + 256])
            hyps += [target_vocab.decode(h.ids) for h in decode(model, src.to(device), src_len, beam=K, alpha=alpha)]
        name = "greedy" if K == 1 else f"beam {K}"
        out[name] = score_translations(hyps, refs)
        hyps_by[name] = hyps
    return {"scores": out, "hypotheses": hyps_by}


def sample_pairs(pairs: list, limit: int | None, seed: int = 0) -> list:
    """At most ``limit`` of ``pairs``: all of them, or a seeded random sample kept in order (a
    split is sorted by number, so its first pairs would be the smallest numbers only)."""
    if limit is None or limit >= len(pairs):
        return list(pairs)
    import random

    keep = sorted(random.Random(seed).sample(range(len(pairs)), limit))
    return [pairs[i] for i in keep]


# --------------------------------------------------------------------------- the family


class TranslateFamily(Family):
    name = "translate"
    description = "machine translation: an RNN with additive attention or a Transformer encoder-decoder"
    model_class = Translator
    config_class = TranslateConfig
    data_class = TranslateData
    evaluate_class = TranslateEvaluation
    presets = {
        "cpu-tiny": dict(d_model=32, hidden_size=32, attention_size=32, num_layers=1, num_heads=2, d_ff=64,
                         dropout=0.0),
        "cpu-small": dict(d_model=128, hidden_size=128, attention_size=128, num_layers=2, num_heads=4, d_ff=256,
                          dropout=0.1),
    }
    default_preset = "cpu-small"
    train_defaults = dict(max_steps=3000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.01,
                          clip_norm=1.0, eval_every=250, eval_batches=8)
    data_fields = ("src_vocab_size", "tgt_vocab_size", "max_source_len", "max_target_len")
    resume_data_options = ("pairs",)
    metric = "validation loss (target tokens, teacher forcing)"
    views = ("translate",)

    def build(self, config: TranslateConfig) -> Translator:
        return make_model(config)

    def make_data(self, options: TranslateData, fields, train_config) -> TranslationData:
        check_choice(options.tokens, "tokens", TOKENS)
        if options.pairs is None:
            check_direction(options.direction)
        return make_translation_data(**vars(options))

    def data_from_run(self, run: RunRecord, options) -> TranslationData:
        saved = run.saved_data()
        kind = saved.get("kind")
        common = ("tokens", "test_fraction", "val_fraction", "split_seed")
        names = {"numbers": ("direction", "low", "high", *common), "pairs": ("pairs", "sha256", *common)}.get(kind)
        if names is None or any(k not in saved for k in names):
            fail(f"run {run.dir}", "a run.json describing translation pairs (numbers or a pairs file)",
                 f"kind {kind!r}" if names is None else "missing " + ", ".join(k for k in names if k not in saved))
        given = {k: saved[k] for k in names}
        if options.get("pairs") is not None:  # a moved copy of the same file (its sha256 must match)
            if kind != "pairs":
                fail("--pairs", "nothing (this run was trained on the generated number phrases)", options["pairs"])
            given["pairs"] = options["pairs"]
        data = make_translation_data(**given)
        vocab = (run.extras.get("source_vocab"), run.extras.get("target_vocab"))
        if None not in vocab and (data.source_vocab, data.target_vocab) != vocab:
            fail(f"run {run.dir}", "the vocabularies its checkpoint carries", "other vocabularies from its data")
        return data

    def files(self, data: TranslationData) -> dict[str, str]:
        return {SOURCE_VOCAB: data.source_vocab.to_json(), TARGET_VOCAB: data.target_vocab.to_json()}

    def config_from_data(self, data: TranslationData, train_config) -> dict:
        S, T = data.longest()
        return {"src_vocab_size": len(data.source_vocab), "tgt_vocab_size": len(data.target_vocab),
                "max_source_len": 2 * S, "max_target_len": 2 * T + 2}

    def extras(self, run: RunRecord) -> None:
        src = Vocab.from_json(run.file(SOURCE_VOCAB), f"{run.checkpoint}/{SOURCE_VOCAB}")
        tgt = Vocab.from_json(run.file(TARGET_VOCAB), f"{run.checkpoint}/{TARGET_VOCAB}")
        if (len(src), len(tgt)) != (run.config.src_vocab_size, run.config.tgt_vocab_size):
            fail(f"checkpoint {run.checkpoint}", f"vocabularies of {run.config.src_vocab_size} and "
                 f"{run.config.tgt_vocab_size} pieces (its config)", f"{len(src)} and {len(tgt)}")
        run.extras["source_vocab"], run.extras["target_vocab"] = src, tgt

    # ---- use

    def evaluate(self, model: Translator, run: RunRecord, options: TranslateEvaluation) -> TranslationScores:
        check_choice(options.split, "split", ("test", "val"))
        check_int(options.beam, "beam", minimum=1, maximum=100)
        check_float(options.length_alpha, "length_alpha", minimum=0.0, maximum=5.0)
        if options.limit is not None:
            check_int(options.limit, "limit", minimum=1)
        data = self.data_from_run(run, {"pairs": options.pairs})
        pairs = sample_pairs(data.split(options.split), options.limit)
        beams = (1,) if options.beam == 1 else (1, options.beam)
        r = evaluate_pairs(model, run.extras["source_vocab"], run.extras["target_vocab"], pairs, beams=beams,
                           alpha=options.length_alpha)
        last = list(r["hypotheses"])[-1]
        examples = [(s, t, h) for (s, t), h in zip(pairs[:5], r["hypotheses"][last][:5])]
        return TranslationScores(options.split, len(pairs), r["scores"], examples)

    def report(self, model: Translator, run: RunRecord) -> list[str]:
        try:
            return self.evaluate(model, run, TranslateEvaluation(beam=1, limit=200)).table().splitlines()
        except ValueError as e:  # the pairs file moved since training: say so, the run is saved
            return [f"(no evaluation: {e})"]

    def translate(self, model: Translator, run: RunRecord, text: str, *, beam: int = 1, length_alpha: float = 0.6):
        """The translation of ``text`` (a ``Translation``: text, pieces, attention)."""
        from seqlab.tasks.translate import translate_texts

        return translate_texts(model, run.extras["source_vocab"], run.extras["target_vocab"], [text], beam=beam,
                               alpha=length_alpha)[0]


def translate(run: str | os.PathLike | tuple[Any, RunRecord], text: str, *, beam: int = 1,
              length_alpha: float = 0.6):
    """Translate ``text`` with the translate run at ``run`` (a run directory, or ``(model,
    record)`` from ``seqlab.load``); a run of another family is a one-line error."""
    import seqlab

    if isinstance(run, tuple):
        model, record = run
    else:
        if not isinstance(run, (str, os.PathLike)):
            fail("run", "a run directory or (model, record) from seqlab.load", type(run).__name__)
        model, record = seqlab.load(Path(run))
    if record.family != TranslateFamily.name:
        fail("translate", "a run of the translate family", f"a {record.family!r} run")
    return FAMILY.translate(model, record, text, beam=beam, length_alpha=length_alpha)


FAMILY = register(TranslateFamily())

__all__ = ["DIRECTIONS", "TranslateData", "TranslateEvaluation", "TranslateFamily", "TranslationScores", "bleu",
           "chrf", "evaluate_pairs", "exact_match", "sample_pairs", "score_translations", "translate"]
