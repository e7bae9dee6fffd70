"""The image-captioning part of the tour's Applications section: a small "show, attend and tell"
model trained briefly on the generated scene set, captioning scenes whose (colour, kind) pairs
no training scene holds, with the attention of one caption drawn word by word."""

from __future__ import annotations

import seqlab
from seqlab.tour.context import TourContext, quoted_benchmark
from seqlab.training.device import cpu_threads
from seqlab.viz.report import Section


def caption(ctx: TourContext, sec: Section) -> str:
    from seqlab.tasks.caption_data import HELD_OUT, make_scenes, write_image
    from seqlab.tasks.caption_family import CaptionEvaluation, caption_image, evaluate_captions
    from seqlab.tasks.caption_plot import plot_caption_attention

    if ctx.quick:
        opts = dict(preset="cpu-tiny", max_steps=3, batch_size=4, eval_every=3, eval_batches=1, warmup_steps=1,
                    scenes=64, log_every=1)
        n = 8
    else:
        # a narrower decoder than the benchmark's, 600 steps of batch 32 (about 45 s on one thread
        # of a busy 2-core machine): too short to learn the scenes well; benchmarks/bench_caption.py
        # trains the full model
        opts = dict(hidden_size=96, max_steps=600, batch_size=32, lr=3e-3, min_lr=3e-4, warmup_steps=30,
                    eval_every=600, eval_batches=4, log_every=50)  # a stream of new scenes (the default)
        n = 200
    # one thread: the model's many small operations ran 20x slower on two threads of a shared 2-core
    # machine (1.7 s a step against 0.07 s, measured)
    with cpu_threads(1):
        result = ctx.train("caption", name="caption", guard=60, seed=ctx.seed, **opts)
    model, run = seqlab.load(result.run_dir)
    ev = {split: evaluate_captions(model, run.tokenizer, CaptionEvaluation(split=split, n=n), run.saved_data())
          for split in ("test", "test_seen")}
    sec.text("\"Image captioning (combines with convolutional networks).\" A convolutional encoder turns the image "
             "into a map of L feature vectors a_i (with the cell's coordinates); a recurrent decoder (seqlab's "
             "LSTM) writes the caption word by word, and at each word looks at the image through soft attention "
             "(Xu et al., 2015, \"Show, attend and tell\"). The data are generated scenes of 2-3 coloured digits "
             "and shapes, captioned like \"a small red 3 left of a large blue square\"; the test scenes hold "
             f"(colour, kind) pairs never seen in training ({len(HELD_OUT)} of 78, e.g. "
             + ", ".join(f"{c} {k}" for c, k in sorted(HELD_OUT)[:3]) + ").")
    sec.equation(r"e_{t,i} = w_e^\top \tanh(W_a a_i + W_h h_{t-1}), \quad \alpha_t = \mathrm{softmax}(e_t), \quad "
                 r"z_t = \sum_i \alpha_{t,i} a_i")
    sec.equation(r"h_t = \mathrm{LSTM}([E y_{t-1}; z_t], h_{t-1}), \quad "
                 r"p(y_t) = \mathrm{softmax}(L_o(E y_{t-1} + L_h h_t + L_z z_t))")
    cols = ("bleu4", "cider", "fully_correct", "colour", "kind", "relation")
    sec.table(["split", "BLEU-4", "CIDEr", "fully correct", "colour", "kind", "relation"],
              [[label] + [f"{ev[s].scores[k]:.2f}" for k in cols]
               for s, label in (("test", "held-out pairs"), ("test_seen", "seen pairs"))])
    scene = make_scenes("test", 1)
    png = ctx.out / "caption-scene.png"
    write_image(png, scene.images([0])[0])
    c = caption_image(model, run, png)
    fig = plot_caption_attention(c["image"], c["words"], c["alphas"], ctx.out / "caption-attention.png",
                                 title=f"{c['caption']!r}")
    sec.figure(fig, f"attention for each word of a held-out scene (true caption: {scene.captions[0]!r})")
    sec.text(f"This is a small run ({result.steps} steps, hidden size {model.config.hidden_size}) on {n} scenes per "
             "split: it shows the mechanics, not the model's worth. The benchmark trains the full model and its "
             "non-attentive anchor (the mean-pooled feature map, no attention) side by side, 10 minutes in all.")
    saved = quoted_benchmark(sec, "caption", ", held-out scenes")
    if saved is not None:
        sec.table(["model", "BLEU-4", "CIDEr", "fully correct", "relation", "held-out pair"],
                  [[m, f"{r['test']['bleu4']:.3f}", f"{r['test']['cider']:.3f}", f"{r['test']['fully_correct']:.3f}",
                    f"{r['test']['relation']:.3f}", f"{r['test']['held_out_pair']:.3f}"]
                   for m, r in saved["results"].items()])
    t = ev["test"].scores
    return (f"caption: held-out scenes fully correct {t['fully_correct']:.2f}, BLEU-4 {t['bleu4']:.2f}, "
            f"CIDEr {t['cider']:.2f} ({result.steps} steps)")
