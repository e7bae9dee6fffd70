"""The online-handwriting part of the tour's Applications section: a small BiGRU + CTC recogniser
trained briefly on Hershey words written by generated writers, reading held-out words written by
held-out writers; a small recurrent classifier of the LASA shapes; and, quoted from the
benchmark, words written by the mixture density generator and read back by the recogniser."""

from __future__ import annotations

import shutil
from pathlib import Path

import seqlab
from seqlab.tour.context import TourContext, quoted_benchmark
from seqlab.training.device import cpu_threads
from seqlab.viz.report import Section


def handwriting(ctx: TourContext, sec: Section) -> str:
    from seqlab.tasks import handwriting_data as hd
    from seqlab.tasks.handwriting import recognize
    from seqlab.tasks.handwriting_family import HandwritingEvaluation
    from seqlab.tasks.handwriting_plot import plot_strokes

    if ctx.quick:
        rec_opts = dict(preset="cpu-tiny", words=24, val_words=4, test_words=6, writers=4, test_writers=2,
                        max_steps=2, batch_size=4, eval_every=2, eval_batches=1, warmup_steps=1, log_every=1)
        shape_opts = dict(preset="cpu-tiny", shape_copies=1, max_steps=2, batch_size=4, eval_every=2,
                          eval_batches=1, warmup_steps=1, log_every=1)
    else:
        # a small recogniser (one bidirectional GRU layer of 64) for 700 steps of 32 words, and a small
        # shape classifier: the benchmark trains two layers of 96 for 800 steps (benchmarks/results/handwriting.md)
        rec_opts = dict(words=2000, val_words=100, test_words=200, hidden_size=64, num_layers=1, conv_channels=48,
                        max_steps=700, batch_size=32, eval_every=350, eval_batches=2, warmup_steps=30, log_every=25)
        shape_opts = dict(hidden_size=32, num_layers=1, conv_channels=32, shape_copies=10, max_steps=400,
                          batch_size=32, eval_every=200, eval_batches=2, warmup_steps=15, log_every=25)
    # one thread: these small recurrent models are many small operations (restored afterwards)
    with cpu_threads(1):
        result = ctx.train("handwriting", name="handwriting", guard=45, task="recognize", **rec_opts)
        model, run = seqlab.load(result.run_dir)
        from seqlab.runs import get_family

        fam = get_family("handwriting")
        data = fam.data_from_run(run, {}, ("test",))
        ev = fam.evaluate(model, run, HandwritingEvaluation(), data).to_json()
        shapes = ctx.train("handwriting", name="handwriting-shapes", guard=15, task="shapes", **shape_opts)
        s_model, s_run = seqlab.load(shapes.run_dir)
        s_ev = fam.evaluate(s_model, s_run, HandwritingEvaluation()).to_json()
        test = data.items["test"][:6]
        hyps = recognize(model, run.extras["alphabet"], [r[0] for r in test])

    sec.text("\"Handwriting recognition (online recognition: input is a sequence of pen positions, not an image)\": "
             "the lecture lists it among the sequential prediction problems. The pen's trajectory is a sequence of "
             "offsets x_t = (dx, dy, e_t), e_t = 1 where the pen is lifted. Here the words of the Python manual are "
             "written with the single-stroke Hershey fonts by generated writers (slant, size, width, spacing, "
             "jitter, speed, connecting strokes); the test words are words no training sample has, written by "
             "writers whose slant lies in a band no training writer has. The recogniser is a strided 1-D "
             "convolution, a bidirectional GRU written from the lecture's equations and a softmax over the 26 "
             "letters and a blank, trained with CTC (Graves et al., 2006).")
    sec.equation(r"p(l \mid x) = \sum_{\pi \in \mathcal{B}^{-1}(l)} \prod_{t=1}^{T'} y_t[\pi_t], \qquad "
                 r"C_{CTC} = -\ln p(l \mid x)")
    sec.table(["split", "words", "CER %", "word accuracy %"],
              [["test (unseen words, unseen writers)", ev["items"], f"{100 * ev['cer']:.1f}",
                f"{100 * ev['word_accuracy']:.1f}"]])
    png = ctx.out / "handwriting_samples.png"
    plot_strokes(png, [(hd.from_offsets(r[0].numpy()), f"'{r[2]}' read '{h}'") for r, h in zip(test, hyps)],
                 columns=3)
    sec.figure(png, "Held-out test words by held-out writers (the recogniser's input, size-normalised; red dots: the "
               "pen's samples) and what the small recogniser read.")
    sec.text(f"This run is small ({result.steps} steps of batch {rec_opts['batch_size']}, one bidirectional layer "
             f"of {model.config.hidden_size}). The same encoder, averaged over the points, classifies the 26 LASA "
             f"handwritten shapes: {100 * s_ev['accuracy']:.1f}% of {s_ev['items']} held-out demonstrations "
             f"({shapes.steps} steps).")
    sec.text("The reverse direction, text in and pen positions out, is Graves' (2013) recurrent mixture density "
             "network: an LSTM whose output at each point is a mixture of M bivariate Gaussians over the next offset "
             "and a Bernoulli pen-up, reading the text through a soft window of K Gaussians that only moves forward.")
    sec.equation(r"\Pr(x_{t+1} \mid y_t) = \sum_{j=1}^{M} \pi_t^j\, \mathcal{N}(x_{t+1} \mid \mu_t^j, \sigma_t^j, "
                 r"\rho_t^j) \; e_t^{\,(x_{t+1})_3} (1 - e_t)^{1 - (x_{t+1})_3}, "
                 r"\qquad \phi(t, u) = \sum_{k=1}^{K} \alpha_t^k \exp(-\beta_t^k (\kappa_t^k - u)^2)")
    saved = quoted_benchmark(sec, "handwriting", " (training the generator takes minutes, so the tour quotes it)")
    if saved is not None:
        r, g = saved["recognition"], saved["generation"]
        rows = [["recogniser BiGRU + CTC, real test ink", f"{100 * r['bigru']['cer']:.1f}",
                 f"{100 * r['bigru']['word_accuracy']:.1f}"],
                ["anchor: 1-D convolutions + CTC, real test ink", f"{100 * r['conv']['cer']:.1f}",
                 f"{100 * r['conv']['word_accuracy']:.1f}"]]
        for name in ("conditional", "unconditional"):
            for k, v in g[name]["read_back"].items():
                rows.append([f"{name} generator, {k}, read back", f"{100 * v['cer']:.1f}",
                             f"{100 * v['word_accuracy']:.1f}"])
        sec.table(["handwriting read (test words)", "CER %", "word accuracy %"], rows)
        bench_png = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "handwriting.png"
        if bench_png.is_file():
            copy = ctx.out / "handwriting_generated.png"
            shutil.copyfile(bench_png, copy)
            sec.figure(copy, "From the benchmark: held-out test words written by the conditional generator (bias 1) "
                       "and by the unconditional one, with what the recogniser read.")
    return (f"handwriting: unseen words by unseen writers, CER {100 * ev['cer']:.1f}% word accuracy "
            f"{100 * ev['word_accuracy']:.1f}% ({result.steps} steps); LASA shapes {100 * s_ev['accuracy']:.1f}%")
