"""The text-to-speech part of the tour's Applications section: a small duration-model synthesiser
(``seqlab.tasks.tts``) trained briefly on the sentences of the eSpeak corpus, its spectrogram of a
held-out sentence beside eSpeak's, and the quoted benchmark."""

from __future__ import annotations

import seqlab
from seqlab.tasks.tts_plot import plot_mel_pair
from seqlab.tour.context import TourContext, quoted_benchmark
from seqlab.training.device import cpu_threads
from seqlab.viz.report import Section


def tts(ctx: TourContext, sec: Section) -> str:
    from seqlab.tasks.tts_family import TTSEvaluation

    asr_dir = ctx.run_dir("asr")
    if ctx.quick:
        opts = dict(preset="cpu-tiny", utterances=8, val_utterances=2, test_utterances=2, max_steps=2, batch_size=2,
                    eval_every=2, eval_batches=1, warmup_steps=1, log_every=1)
        asr = None
        limit, n_iter = 1, 2
    else:
        # a small synthesiser (decoder of 4 convolutions of 128 channels) on 300 sentences, 250 steps of 16: the
        # benchmark trains the default model on 1,500 sentences (benchmarks/results/tts.md). The durations come
        # from the asr part's recogniser (same sentences) when it ran before, else spread evenly.
        opts = dict(utterances=300, val_utterances=20, test_utterances=40, channels=128, decoder_layers=4,
                    max_steps=250, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=25, eval_every=125,
                    eval_batches=2, log_every=25)
        asr = str(asr_dir) if (asr_dir / "run.json").is_file() else None
        limit, n_iter = 10, 16
    with cpu_threads(1):
        result = ctx.train("tts", name="tts", guard=40, asr=asr, **opts)
        model, run = seqlab.load(result.run_dir)
        fam = seqlab.runs.get_family("tts")
        data = fam.data_from_run(run, {})
        ev = fam.evaluate(model, run, TTSEvaluation(limit=limit, n_iter=n_iter), data)
        ids, _, x_ref, text = data.data.test_items[0]
        ours = model.synthesize(ids)
    m = ev.rows

    sec.text("\"Text to speech.\" The reverse of recognition: from characters to a spectrogram, then to a "
             "waveform. The synthesiser here is a duration model (FastSpeech, Ren et al. 2019): a bidirectional "
             "GRU reads the characters; a small predictor says how many frames each character lasts; a length "
             "regulator repeats each character's state for that many frames; convolutions turn the frames into "
             "log-mel spectra, and Griffin-Lim (librosa) finds a waveform with that spectrogram. The durations "
             "it learns from come from the speech recogniser: the most probable CTC path of each training "
             "transcript through the recogniser's outputs (a forced alignment) says which frames belong to which "
             "character.")
    sec.equation(r"z_t = [h_{u(t)};\ (t - s_{u(t)} + \frac{1}{2})/d_{u(t)}], \quad "
                 r"C = \overline{|\hat Y - Y|} + \overline{(\ln(1+\hat d_u) - \ln(1+d_u))^2}")
    durations = run.saved_data()["durations"]
    sec.text(f"This run is small ({result.steps} steps of batch {opts['batch_size']} on {opts['utterances']} "
             f"sentences, durations: {durations}"
             + (", from the asr part's recogniser" if durations == "ctc" else
                ", each utterance's frames spread evenly over its characters: no recogniser was at hand")
             + "). Measured on held-out sentences:")
    rows = [[k, "undefined" if v is None else f"{100 * v:.1f}" if k.startswith("asr ") else f"{v:.3f}"]
            for k, v in m.items() if k != "synthesis seconds"]
    sec.table(["measure", "value (WER, CER in %)"], rows)
    png = ctx.out / "tts_mel.png"
    plot_mel_pair(png, x_ref, ours, text)
    sec.figure(png, "The log-mel spectrogram of a held-out sentence: eSpeak NG's (top) and the synthesiser's, with "
               "its own predicted durations (bottom).")
    saved = quoted_benchmark(sec, "tts")
    if saved is not None:
        sm = saved["metrics"]
        table = [[k, f"{100 * v:.1f}" if "WER" in k or "CER" in k else f"{v:.3f}"] for k, v in sm.items()
                 if k != "synthesis seconds" and "ratio" not in k]
        sec.table(["measure (benchmark)", "value (WER, CER in %)"], table)
    summary = f"tts: mel L1 {m['mel L1, predicted durations (DTW path)']:.2f} (DTW, predicted durations)"
    if "asr WER, our audio" in m:
        summary += (f", recogniser WER {100 * m['asr WER, our audio']:.1f}% on ours vs "
                    f"{100 * m['asr WER, eSpeak audio']:.1f}% on eSpeak's")
    return summary + f" ({result.steps} steps)"
