"""The machine-translation part of the tour's Applications section: a small RNN with
additive attention and a small Transformer encoder-decoder, trained briefly on the number
phrases of ``num2words`` (English words -> French words), tested on held-out numbers
(``seqlab.tasks.translate``)."""

from __future__ import annotations

import seqlab
from seqlab.tour.context import TourContext, quoted_benchmark
from seqlab.training.device import cpu_threads
from seqlab.viz.report import Section


def translate(ctx: TourContext, sec: Section) -> str:
    if ctx.quick:
        common = dict(preset="cpu-tiny", high=199, max_steps=3, batch_size=8, eval_every=3, eval_batches=1,
                      warmup_steps=1, log_every=1)
        plans = {"rnn": {}, "transformer": {}}
        n_test = 8
    else:
        # small models, a few hundred steps each (the benchmark trains larger ones for longer:
        # benchmarks/results/translate.md)
        common = dict(d_model=64, hidden_size=64, attention_size=64, num_layers=2, num_heads=4, d_ff=128,
                      dropout=0.0, batch_size=64, lr=3e-3, min_lr=3e-4, warmup_steps=30, eval_batches=4,
                      log_every=50)
        plans = {"rnn": dict(max_steps=400, eval_every=400), "transformer": dict(max_steps=400, eval_every=400)}
        n_test = 200

    # one thread for these small models: on a busy 2-core machine a second thread spent more
    # in waiting than it gained (measured: 140 s instead of 46 s for this part); restored after
    with cpu_threads(1):
        return _translate(ctx, sec, common, plans, n_test)


def _translate(ctx: TourContext, sec: Section, common: dict, plans: dict, n_test: int) -> str:
    from seqlab.tasks.translate_family import evaluate_pairs, sample_pairs, translate as translate_text
    from seqlab.tasks.translate_plot import plot_alignment

    rows, runs, measured = [], {}, {}
    for arch, plan in plans.items():
        result = ctx.train("translate", name=f"translate-{arch}", guard=25, arch=arch, **common, **plan)
        model, run = seqlab.load(result.run_dir)
        family = seqlab.runs.get_family("translate")
        pairs = sample_pairs(family.data_from_run(run, {}).test, n_test)
        r = evaluate_pairs(model, run.extras["source_vocab"], run.extras["target_vocab"], pairs, beams=(1, 4))
        runs[arch], measured[arch] = (model, run), r["scores"]
        for name, s in r["scores"].items():
            rows.append([arch, name, f"{s['exact_match']:.3f}", f"{s['bleu']:.1f}", f"{s['chrf']:.1f}",
                         str(result.steps)])
    sec.text("\"Machine translation\" is one of the lecture's applications of sequence models: an encoder "
             "reads the source sentence, a decoder writes the target one token at a time, and attention lets "
             "each output token look at the source tokens it needs. Here the sentences are number phrases made "
             "by num2words, English words to French words (\"three hundred and twelve\" -> \"trois cent "
             "douze\"), and the test numbers are never seen in training. The recurrent model is a bidirectional "
             "GRU encoder with a GRU decoder and additive (Bahdanau) attention; the Transformer is built from "
             "seqlab.transformer's blocks. Both train with teacher forcing and decode greedily or by beam search.")
    sec.equation(r"e_{t,s} = v^{T} \tanh(W h_{s} + U s_{t-1}), \quad \alpha_{t,s} = "
                 r"\mathrm{softmax}_{s}(e_{t,s}), \quad c_{t} = \sum_{s} \alpha_{t,s} h_{s}",
                 r"\mathrm{score}(y) = \log p(y \mid x) \,/\, |y|^{\alpha}")
    sec.table(["model", "decoding", "exact match", "BLEU", "chrF", "steps"], rows)
    best = max(measured, key=lambda a: measured[a]["greedy"]["exact_match"])
    example = translate_text(runs[best], "three hundred and twelve" if not ctx.quick else "twelve", beam=4)
    png = plot_alignment(example, ctx.out / "translate-alignment.png")
    sec.figure(png, f"the {best} model's attention while translating {example.source!r} -> {example.text!r}")
    sec.text(f"These are small models ({'tiny, 3 steps' if ctx.quick else 'width 64, 400 steps each'}) scored on "
             f"{len(pairs)} held-out numbers with sacrebleu's BLEU and chrF; the benchmark "
             "(benchmarks/bench_translate.py) trains larger ones for a few minutes.")
    saved = quoted_benchmark(sec, "translate")
    if saved is not None:
        sec.table(["model", "decoding", "exact match", "BLEU", "chrF"],
                  [[arch, name, f"{s['exact_match']:.3f}", f"{s['bleu']:.1f}", f"{s['chrf']:.1f}"]
                   for arch, r in saved["results"].items() for name, s in r["scores"].items()])
    g = {a: measured[a]["greedy"] for a in measured}
    return (f"translate: exact match on held-out numbers rnn {g['rnn']['exact_match']:.2f}, transformer "
            f"{g['transformer']['exact_match']:.2f} (greedy; BLEU {g['rnn']['bleu']:.1f} / "
            f"{g['transformer']['bleu']:.1f})")
