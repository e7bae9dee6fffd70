"""The speech-recognition part of the tour's Applications section: a small CTC recogniser
trained briefly on a small eSpeak NG corpus (``seqlab.data.speech``), transcribing held-out
sentences spoken with held-out voices, greedy and with beam search + character LM."""

from __future__ import annotations

from pathlib import Path

import seqlab
from seqlab.tour.context import TourContext, quoted_benchmark
from seqlab.training.device import cpu_threads
from seqlab.viz.report import Section


def _plot(path: Path, mel, log_probs, chars: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 5), sharex=False)
    a.imshow(mel.T, origin="lower", aspect="auto", cmap="magma")
    a.set_ylabel("mel band")
    a.set_title(title, fontsize=9)
    labels = [("space" if c == " " else c) for c in chars] + ["blank"]
    b.imshow(log_probs.exp().T.numpy(), origin="lower", aspect="auto", cmap="Greys", vmin=0, vmax=1)
    b.set_yticks(range(len(labels)))
    b.set_yticklabels(labels, fontsize=5)
    b.set_xlabel("encoder frame t (every 2nd feature frame)")
    b.set_ylabel("y_t")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def asr(ctx: TourContext, sec: Section) -> str:
    import torch

    from seqlab.data.speech import VOCABULARY
    from seqlab.tasks.asr import decode
    from seqlab.tasks.asr_family import ASREvaluation
    from seqlab.tasks.audio import log_mel

    if ctx.quick:
        opts = dict(preset="cpu-tiny", utterances=8, val_utterances=2, test_utterances=2, max_steps=2, batch_size=2,
                    eval_every=2, eval_batches=1, warmup_steps=1, log_every=1)
    else:
        # a small model (one bidirectional GRU layer of 96) on 300 utterances, 300 steps of 16: the
        # benchmark trains the default model on 1,500 utterances (benchmarks/results/asr.md)
        opts = dict(utterances=300, val_utterances=20, test_utterances=40, conv_channels=96, hidden_size=96,
                    num_layers=1, max_steps=300, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=30,
                    eval_every=150, eval_batches=2, log_every=25)
    # one thread: this small recurrent model's steps are many small operations, measured faster
    # on one thread than on two of a shared 2-core machine (restored afterwards)
    with cpu_threads(1):
        result = ctx.train("asr", name="asr", guard=45, **opts)
        model, run = seqlab.load(result.run_dir)
        fam = seqlab.runs.get_family("asr")
        data = fam.data_from_run(run, {}, ("test",))
        ev = fam.evaluate(model, run, ASREvaluation(beam=4 if ctx.quick else 8), data).to_json()
    rows = [[name, f"{100 * r['wer']:.1f}", f"{100 * r['cer']:.1f}"] for name, r in ev["decoders"].items()]

    sec.text("\"Speech recognition.\" The lecture names it first among the applications of recurrent networks. "
             "Here the speech is synthesised by eSpeak NG (its library and voices come from PyPI, called through "
             f"ctypes) from generated sentences over {len(VOCABULARY)} words, with varied voices, rates, pitches "
             "and noise. The recogniser reads log-mel frames through two convolutions (the first strides two "
             "frames), a bidirectional GRU written from the lecture's equations, and a softmax over the "
             "characters and a blank; it is trained with the CTC loss, which sums over every frame-level path "
             "that collapses to the transcript (Graves et al., 2006).")
    sec.equation(r"p(l \mid x) = \sum_{\pi \in \mathcal{B}^{-1}(l)} \prod_{t=1}^{T'} y_t[\pi_t], \qquad "
                 r"C_{CTC} = -\ln p(l \mid x)")
    test = data.data.items["test"]
    sec.text(f"Word and character error rates (jiwer) on {ev['utterances']} test utterances: sentences no training "
             "utterance has, spoken with voices, rates and pitches no training utterance has. Decoders: greedy "
             "(the best symbol per frame, repeats collapsed, blanks dropped), prefix beam search, and beam "
             "search with a character 6-gram LM of the training transcripts (shallow fusion).")
    sec.table(["decoder", "WER %", "CER %"], rows)
    x, _, ref = test[0]
    with torch.no_grad():
        log_probs, n = model(x[None])
    hyp = decode(model, run.tokenizer, [x])[0]
    u = data.corpus.split("test")[0]
    sec.code(f"voice {u.voice}, rate {u.rate}, pitch {u.pitch}, SNR {u.snr_db} dB\nreference: {ref}\n"
             f"greedy:    {hyp}")
    png = ctx.out / "asr_ctc.png"
    _plot(png, log_mel(u.audio(), model.config.mel()), log_probs[0, : int(n[0])], run.tokenizer.chars,
          f"log-mel and CTC outputs y_t: '{ref}'")
    sec.figure(png, "Top: the log-mel features of a held-out test utterance (86 frames a second). Bottom: the "
               "recogniser's output distribution y_t over the characters and the blank at each encoder frame (43 "
               "a second; dark = probable): CTC lets a character occupy a frame or two, with blanks between.")
    sec.text(f"This run is small ({result.steps} steps of batch {opts['batch_size']} on {opts['utterances']} "
             "utterances, one bidirectional layer of 96): a recogniser trained in well under a minute. The "
             "benchmark "
             "(benchmarks/bench_asr.py) trains the default model on 1,500 utterances against PocketSphinx.")
    saved = quoted_benchmark(sec, "asr")
    if saved is not None:
        table = [[f"seqlab asr, {k}", f"{100 * v['wer']:.1f}", f"{100 * v['cer']:.1f}"]
                 for k, v in saved["ours"].items()]
        table += [[f"PocketSphinx, {k}", f"{100 * v['wer']:.1f}", f"{100 * v['cer']:.1f}"]
                  for k, v in saved["pocketsphinx"].items()]
        sec.table(["system", "WER %", "CER %"], table)
    best = ev["decoders"][rows[-1][0]]
    greedy = ev["decoders"]["greedy"]
    return (f"asr: held-out sentences and voices, greedy WER {100 * greedy['wer']:.1f}% CER "
            f"{100 * greedy['cer']:.1f}%, beam + LM WER {100 * best['wer']:.1f}% CER {100 * best['cer']:.1f}% "
            f"({result.steps} steps)")
