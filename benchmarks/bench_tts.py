"""Text to speech on eSpeak NG speech, measured (seqlab.tasks.tts): mel distance to eSpeak's audio
and intelligibility to the project's recogniser and to PocketSphinx.

Trains the duration-model synthesiser (``seqlab train tts --asr RUN``: a GRU character encoder,
durations from the forced alignment of an asr run's CTC outputs, a length regulator and a
convolutional decoder to log-mel frames) on the sentences of part 3's eSpeak corpus, spoken by
one voice setting, with a wall-clock guard; then synthesises the held-out test sentences
(Griffin-Lim, librosa) and measures, on the same sentences:

- the mel L1 distance to eSpeak's own log-mel (with the aligned durations frame by frame, and
  with the predicted durations along a DTW path);
- the WER and CER (jiwer) of the asr run (greedy CTC) on our audio, on eSpeak's audio, and on
  eSpeak's mel through the same Griffin-Lim (what the vocoder alone costs);
- PocketSphinx's WER on our audio and on eSpeak's (resampled to 16 kHz), restricted to the
  sentence generator's templates (a JSGF grammar; ``pip install pocketsphinx``).

The recogniser: ``--asr RUN`` reuses a trained asr run (its training time is quoted from its
run.json and counted in the total); without it, one is trained first (``--asr-steps``).

    python benchmarks/bench_tts.py --asr RUN                  # the reported setting (reuses an asr run)
    python benchmarks/bench_tts.py --asr-steps 360            # trains its own recogniser first
    python benchmarks/bench_tts.py --steps 20 --utterances 100 --test 10 --asr-steps 20 --name tts_smoke

Writes benchmarks/results/NAME.md, .json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_recurrent_speed import machine_with_load as machine  # noqa: E402

import seqlab  # noqa: E402
from seqlab.data import speech  # noqa: E402
from seqlab.tasks.asr import error_rates  # noqa: E402
from seqlab.tasks.tts_plot import plot_mel_pair  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"



def pocketsphinx_templates(texts, waves: dict) -> dict:
    """PocketSphinx (default acoustic model) restricted to the generator's templates (JSGF)."""
    import librosa
    from bench_asr import template_grammar
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=16000, loglevel="FATAL")
    decoder.add_jsgf_string("templates", template_grammar())
    decoder.activate_search("templates")
    out = {}
    for name, audio in waves.items():
        t = time.perf_counter()
        hyps = []
        for a in audio:
            a16 = librosa.resample(a, orig_sr=speech.SAMPLE_RATE, target_sr=16000)
            decoder.start_utt()
            decoder.process_raw((np.clip(a16, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
            decoder.end_utt()
            h = decoder.hyp()
            hyps.append(speech.normalize_text(h.hypstr) if h is not None else "")
        out[name] = {**error_rates(texts, hyps), "seconds": time.perf_counter() - t}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--asr", default=None, help="an asr run to reuse (none: train one first)")
    p.add_argument("--asr-steps", type=int, default=360, help="steps of the asr run trained when --asr is not given")
    p.add_argument("--asr-seconds", type=float, default=240.0, help="wall-clock guard of that asr training")
    p.add_argument("--steps", type=int, default=700, help="tts training steps (the plan)")
    p.add_argument("--seconds", type=float, default=330.0, help="wall-clock guard of the tts training in seconds")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--utterances", type=int, default=1500, help="training sentences")
    p.add_argument("--val", type=int, default=100, help="validation sentences")
    p.add_argument("--test", type=int, default=150, help="test sentences of the corpus")
    p.add_argument("--eval", type=int, default=100, help="test sentences synthesised and measured")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--name", default="tts")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    t_all = time.perf_counter()
    command = "python benchmarks/bench_tts.py " + " ".join(sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="seqlab-bench-tts-"))

    if args.asr is None:
        t0 = time.perf_counter()
        asr = seqlab.train("asr", out=work / "asr", progress=sys.stderr.isatty(), utterances=args.utterances,
                           val_utterances=args.val, test_utterances=args.test, max_steps=args.asr_steps,
                           max_seconds=args.asr_seconds, eval_every=max(1, args.asr_steps // 4),
                           warmup_steps=min(100, args.asr_steps // 10 + 1), seed=args.seed, log_every=25)
        asr_dir, asr_s, asr_origin = asr.run_dir, time.perf_counter() - t0, "trained by this benchmark"
    else:
        asr_dir = Path(args.asr)
        lines = [json.loads(x) for x in (asr_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
        asr_s = max(float(x.get("time", 0.0)) for x in lines)
        asr_origin = f"reused ({asr_dir}); its training time read from its metrics.jsonl"
    asr_json = json.loads((asr_dir / "run.json").read_text())

    t0 = time.perf_counter()
    result = seqlab.train("tts", out=work / "tts", progress=sys.stderr.isatty(), asr=str(asr_dir),
                          utterances=args.utterances, val_utterances=args.val, test_utterances=args.test,
                          max_steps=args.steps, max_seconds=args.seconds, batch_size=args.batch,
                          eval_every=max(1, args.steps // 4), warmup_steps=min(50, args.steps // 10 + 1),
                          seed=args.seed, log_every=50)
    train_s = time.perf_counter() - t0
    model, run = seqlab.load(result.run_dir)
    fam = seqlab.runs.get_family("tts")
    t0 = time.perf_counter()
    data = fam.data_from_run(run, {})
    ev = fam.evaluate(model, run, fam.evaluate_class(split="test", limit=args.eval), data)
    eval_s = time.perf_counter() - t0
    texts = [r[3] for r in data.data.test_items[: args.eval]]
    try:
        ps = pocketsphinx_templates(texts, {"eSpeak audio": ev.audio["espeak"],
                                           "eSpeak mel + Griffin-Lim": ev.audio["vocoded"],
                                           "our audio": ev.audio["ours"]})
    except ImportError as e:
        ps = {"skipped": f"pocketsphinx not installed ({e})"}

    ids, _, x_ref, text = data.data.test_items[0]
    plot_mel_pair(RESULTS / f"{args.name}.png", x_ref, model.synthesize(ids), text)
    total_s = time.perf_counter() - t_all
    m = ev.rows
    ratio = m.get("WER ratio (ours / eSpeak)")
    res = {
        "command": command, "machine": machine(load), "seconds_total": total_s, "train_seconds": train_s,
        "eval_seconds": eval_s, "asr_seconds": asr_s, "asr_origin": asr_origin, "asr_run": str(asr_dir),
        "asr_train_config": asr_json.get("train_config"), "asr_model_config": asr_json.get("model_config"),
        "steps": result.steps, "stopped": result.stopped, "best_val_loss": result.best_val_loss,
        "history": [h for h in result.history if h.get("split") == "val"],
        "model_config": model.config.to_dict(), "parameters": sum(p.numel() for p in model.parameters()),
        "data": run.saved_data(), "metrics": m, "pocketsphinx_templates": ps, "examples": ev.examples,
        "target": {"wer_ratio": 2.0, "met": ratio is not None and ratio <= 2.0},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(res, indent=2))
    (RESULTS / f"{args.name}.md").write_text(markdown(res, args))
    print((RESULTS / f"{args.name}.md").read_text())


def markdown(r: dict, args) -> str:
    mc, m, d, c = r["machine"], r["metrics"], r["data"], r["model_config"]
    rows = []
    for name in ("eSpeak audio", "eSpeak mel + Griffin-Lim", "our audio"):
        if f"asr WER, {name}" in m:
            ps = r["pocketsphinx_templates"].get(name) if isinstance(r["pocketsphinx_templates"], dict) else None
            rows.append(f"| {name} | {100 * m[f'asr WER, {name}']:.1f} | {100 * m[f'asr CER, {name}']:.1f} | "
                        + (f"{100 * ps['wer']:.1f} | {100 * ps['cer']:.1f} |" if ps else "- | - |"))
    ratio = m.get("WER ratio (ours / eSpeak)")
    lines = [
        "# Text to speech on eSpeak NG speech (seqlab tts: durations from CTC, Griffin-Lim)",
        "",
        f"Reproduce: `{r['command'].strip()}`",
        "",
        f"Machine: {mc['cpu']}, {mc['cores']} cores, {mc['threads']} torch threads, torch {mc['torch']}, load average "
        f"at start {', '.join(f'{x:.2f}' for x in mc['load_average_at_start'])} (other jobs shared the CPUs: the run "
        "is slower than on an idle machine).",
        "",
        f"Data: the sentences of part 3's eSpeak corpus (seed {d['corpus_seed']}: {d['utterances']} training, "
        f"{d['val_utterances']} validation, {d['test_utterances']} test sentences; the test sentences are in "
        f"neither the tts nor the asr training), spoken by one voice setting ({d['voice']}, rate {d['rate']}, "
        f"pitch {d['pitch']}, no noise). Durations: {d['durations']} (forced alignment of the asr run's CTC "
        "outputs on the training audio).",
        "",
        f"Recogniser: asr run {r['asr_origin']}: {r['asr_train_config'].get('max_steps')} planned steps, "
        f"{r['asr_seconds']:.0f} s of training. Synthesiser: {r['steps']} steps ({r['stopped']}) of batch "
        f"{args.batch} in {r['train_seconds']:.0f} s (plan {args.steps} steps, guard {args.seconds:.0f} s; the time "
        f"includes synthesising the corpus's audio when not cached and aligning it), {r['parameters']:,} parameters "
        f"(encoder GRU {c['hidden_size']} per direction, decoder {c['decoder_layers']} convolutions of "
        f"{c['channels']} channels). Training time, recogniser + synthesiser: "
        f"{r['asr_seconds'] + r['train_seconds']:.0f} s "
        f"({'within' if r['asr_seconds'] + r['train_seconds'] <= 600 else 'OVER'} the issue's 10 minutes). "
        f"Evaluation {r['eval_seconds']:.0f} s; whole benchmark {r['seconds_total']:.0f} s"
        + (" (+ the reused recogniser's training)." if r["asr_origin"].startswith("reused")
           else ", the recogniser's training included."),
        "",
        f"Intelligibility on the first {args.eval} held-out test sentences: WER and CER (jiwer) of the recogniser "
        "(greedy CTC) and of PocketSphinx (default acoustic model, JSGF grammar of the sentence generator's "
        "templates, audio resampled to 16 kHz):",
        "",
        "| audio | asr WER % | asr CER % | PocketSphinx WER % | PocketSphinx CER % |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        (f"Target (issue 14): the recogniser's WER on our audio <= 2x its WER on eSpeak's audio: ratio "
         f"{ratio:.2f}, {'met' if r['target']['met'] else 'NOT met'}." if ratio is not None else
         "Target: not measured (no recogniser)."),
        "",
        "Mel-spectrogram distance to eSpeak's audio of the same sentences (mean |X^ - X| over frames and 80 "
        "bands, natural log of the mel power, both floored at ln 1e-5):",
        "",
        f"- with the aligned durations (the same frames as eSpeak's, compared frame by frame): "
        f"{m['mel L1, aligned durations (frame by frame)']:.3f}",
        f"- with the predicted durations (compared along the DTW path of the two spectrograms): "
        f"{m['mel L1, predicted durations (DTW path)']:.3f}",
        "",
        f"Figure: {args.name}.png (eSpeak's log-mel and ours, predicted durations, for the first test sentence).",
        "",
        "Examples (reference -> recogniser on eSpeak's audio -> on ours):",
        "",
        *[f"- `{a}` -> `{b}` -> `{c_}`" for a, b, c_ in r["examples"]],
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
