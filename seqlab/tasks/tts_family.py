"""Text to speech (``seqlab.tasks.tts``) as a family of the registry: ``seqlab train tts [--asr
RUN]``, ``seqlab eval RUN [--asr RUN]`` (mel-spectrogram distance to eSpeak NG's audio of the
held-out sentences, and intelligibility: the WER of an asr run on our audio and on eSpeak's),
``seqlab speak RUN "text" out.wav``, and the same from Python::

    asr = seqlab.train("asr")                       # the recogniser whose CTC alignments give the durations
    result = seqlab.train("tts", asr=str(asr.run_dir))
    print(seqlab.evaluate(result.run_dir).table())
    from seqlab.tasks.tts_family import speak
    speak(result.run_dir, "the small red fox chased a white duck", "fox.wav")

The data: the sentences of the eSpeak corpus of part 3 (``seqlab.data.speech.plan_corpus``:
the same train, val and test sentences as an asr run of the same sizes and seed, so the test
sentences are held out from both), spoken by one eSpeak voice setting without noise (a
synthesiser learns one voice: ``voice``, ``rate``, ``pitch``), cached under the user cache
folder as WAV files. The durations (frames per character) come from the forced alignment of
the asr run's CTC outputs on that audio (``--asr RUN``), or, without a recogniser, from spreading
each utterance's frames evenly over its characters (``uniform``: a weak source, for tests and
quick runs). Checkpoints carry ``tokenizer.json`` (the characters) and ``durations.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqlab.runs import Family, RunRecord, register
from seqlab.tasks.tts import TTSConfig, TTSModel
from seqlab.validation import check_choice, check_int, fail

DURATIONS = "durations.json"
CORPUS_VERSION = 1


@dataclass(frozen=True)
class TTSDataOptions:
    """The speech a tts run learns.

    Attributes:
        asr: an asr run whose CTC alignments give the durations (none: uniform durations)
        utterances: training sentences of the eSpeak corpus (part 3's generator)
        val_utterances: validation sentences
        test_utterances: held-out test sentences (seqlab eval)
        corpus_seed: seed of the corpus's sentences
        voice: the eSpeak NG voice the synthesiser learns
        rate: its rate in words per minute
        pitch: its pitch (0-100)
    """

    asr: str | None = None
    utterances: int = 1500
    val_utterances: int = 100
    test_utterances: int = 150
    corpus_seed: int = 0
    voice: str = "en-us"
    rate: int = 170
    pitch: int = 55


@dataclass(frozen=True)
class TTSEvaluation:
    """Options of ``seqlab eval`` for a tts run.

    Attributes:
        split: the sentences to synthesise: test (held out) or val
        asr: the asr run that listens (none: the run's own, if it was trained with one)
        limit: at most this many sentences of the split
        n_iter: Griffin-Lim iterations
    """

    split: str = "test"
    asr: str | None = None
    limit: int | None = 50
    n_iter: int = 32


@dataclass
class TTSRunData:
    options: TTSDataOptions
    texts: dict
    audio: dict
    data: Any
    tokenizer: Any
    durations: dict
    source: str
    root: Path

    def info(self) -> dict:
        o = self.options
        return {"kind": "espeak-tts", "utterances": o.utterances, "val_utterances": o.val_utterances,
                "test_utterances": o.test_utterances, "corpus_seed": o.corpus_seed, "voice": o.voice,
                "rate": o.rate, "pitch": o.pitch, "durations": self.source,
                "asr": str(Path(o.asr).resolve()) if o.asr else None}


@dataclass
class TTSResult:
    rows: dict
    split: str
    n: int
    examples: list

    def table(self) -> str:
        lines = [f"{self.n} {self.split} sentences"]
        for name, v in self.rows.items():
            if v is None:
                lines.append(f"{name:<46} undefined (0 errors on eSpeak's audio, some on ours)")
            elif name.startswith("asr "):
                lines.append(f"{name:<46} {100 * v:.1f}%")
            else:
                lines.append(f"{name:<46} {v:.3f}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"split": self.split, "sentences": self.n, "metrics": self.rows, "examples": self.examples}


def _corpus(options: TTSDataOptions) -> tuple[dict, dict, Path]:
    """Texts and audio per split: the corpus's sentences, one voice, no noise (cached WAVs)."""
    import numpy as np
    import soundfile as sf

    from seqlab.data.cache import build_once
    from seqlab.data.speech import SAMPLE_RATE, plan_corpus, read_wav, synthesize

    o = options
    for name in ("utterances", "val_utterances", "test_utterances"):
        check_int(getattr(o, name), name, minimum=1, maximum=200_000)
    check_int(o.corpus_seed, "corpus_seed", minimum=0, maximum=2**31 - 1)
    if not isinstance(o.voice, str) or not o.voice or any(c in o.voice for c in "/\\ "):
        fail("voice", "an eSpeak NG voice name such as 'en-us' or 'en+f3'", repr(o.voice))
    plan = plan_corpus(o.utterances, o.val_utterances, o.test_utterances, o.corpus_seed)
    synthesize("test", o.voice, o.rate, o.pitch)  # a bad voice, rate or pitch: refused before any build

    def build(tmp: Path) -> None:
        (tmp / "wavs").mkdir()
        lines = []
        for u in plan:
            audio = synthesize(u.text, o.voice, o.rate, o.pitch)
            sf.write(tmp / u.file, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
            lines.append(f"{u.file.as_posix()}\t{u.text}\t{u.split}")
        (tmp / "transcripts.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    name = (f"tts-v{CORPUS_VERSION}-seed{o.corpus_seed}-{o.utterances}-{o.val_utterances}-{o.test_utterances}-"
            f"{o.voice}-{o.rate}-{o.pitch}")
    root = build_once(name, build)
    texts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    audio: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for u in plan:
        texts[u.split].append(u.text)
        audio[u.split].append(read_wav(root / u.file, "tts corpus"))
    return texts, audio, root


def make_tts_data(options: TTSDataOptions, fields: dict, saved_durations: dict | None = None) -> TTSRunData:
    """The corpus, the log-mel targets, the durations (from ``saved_durations``, the asr run, or
    uniform) and the training set's mel statistics."""
    import torch

    from seqlab.llm.tokenizers import CharTokenizer
    from seqlab.tasks.audio import MelConfig, features, log_mel
    from seqlab.tasks.tts import TTSData, asr_durations, mel_stats, uniform_durations

    d = TTSConfig()
    mel = MelConfig(n_fft=fields.get("n_fft", d.n_fft), hop_length=fields.get("hop_length", d.hop_length),
                    n_mels=fields.get("n_mels", d.n_mels))
    texts, audio, root = _corpus(options)
    mels = {s: [log_mel(a, mel) for a in audio[s]] for s in texts}
    tokenizer = CharTokenizer(sorted(set("".join(t for s in texts.values() for t in s))))
    if saved_durations is not None:
        source = saved_durations["source"]
        durations = {s: [list(map(int, x)) for x in saved_durations[s]] for s in texts}
    elif options.asr:
        from seqlab import runs

        asr_model, asr_run = runs.load(options.asr)
        if asr_run.family != "asr":
            fail("asr", "a run of the asr family", f"a {asr_run.family!r} run")
        ac = asr_run.config
        if (ac.n_fft, ac.hop_length) != (mel.n_fft, mel.hop_length):
            fail("asr", f"a recogniser with n_fft {mel.n_fft} and hop_length {mel.hop_length} (the same frames)",
                 f"n_fft {ac.n_fft}, hop_length {ac.hop_length}")
        unknown = sorted(set("".join(tokenizer.chars)) - set(asr_run.tokenizer.chars))
        if unknown:
            fail("asr", "a recogniser that knows every character of the corpus", f"one without {unknown!r}")
        source = "ctc"
        durations = {}
        for s in texts:
            feats = [torch.from_numpy(features(a, ac.mel())) for a in audio[s]]
            durations[s] = [x.tolist() for x in asr_durations(asr_model, asr_run.tokenizer, texts[s], feats,
                                                               [m.shape[0] for m in mels[s]])]
    else:
        source = "uniform"
        durations = {s: [uniform_durations(len(t), m.shape[0]).tolist() for t, m in zip(texts[s], mels[s])]
                     for s in texts}
    items = {s: [(tokenizer.encode(t), dur, m, t) for t, dur, m in zip(texts[s], durations[s], mels[s])]
             for s in texts}
    for s in items:
        for ids, dur, m, t in items[s]:
            if len(dur) != len(ids) or sum(dur) != m.shape[0]:
                fail(DURATIONS, "one duration per character, summing to the frames", f"a mismatch for {t!r}")
    mean, std = mel_stats(mels["train"])
    data = TTSData({s: items[s] for s in ("train", "val")}, mean, std)
    data.test_items = items["test"]
    return TTSRunData(options, texts, audio, data, tokenizer, {"source": source, **durations}, source, root)


class TTSFamily(Family):
    name = "tts"
    description = "text to speech: character encoder (GRU), durations from CTC alignments, conv decoder to log-mel"
    model_class = TTSModel
    config_class = TTSConfig
    data_class = TTSDataOptions
    evaluate_class = TTSEvaluation
    presets = {
        "cpu-tiny": dict(embed_size=16, hidden_size=16, channels=16, decoder_layers=2),
        "cpu-small": dict(embed_size=128, hidden_size=128, channels=192, decoder_layers=6),
    }
    default_preset = "cpu-small"
    train_defaults = dict(max_steps=400, batch_size=16, lr=2e-3, min_lr=2e-4, warmup_steps=30, eval_every=100,
                          eval_batches=4, clip_norm=1.0)
    data_fields = ("vocab_size",)
    metric = "validation loss (mel L1 + duration MSE)"
    views = ("speak",)

    def make_data(self, options: TTSDataOptions, fields, train_config) -> TTSRunData:
        return make_tts_data(options, dict(fields))

    def data_from_run(self, run: RunRecord, options) -> TTSRunData:
        saved = run.saved_data()
        if saved.get("kind") != "espeak-tts":
            fail(f"run {run.dir}", "a run.json describing the tts corpus (kind espeak-tts)",
                 f"kind {saved.get('kind')!r}")
        names = ("utterances", "val_utterances", "test_utterances", "corpus_seed", "voice", "rate", "pitch")
        missing = [k for k in names if k not in saved]
        if missing:
            fail(f"run {run.dir}", "a run.json describing the tts corpus", "missing " + ", ".join(missing))
        c = run.config
        fields = {"n_fft": c.n_fft, "hop_length": c.hop_length, "n_mels": c.n_mels}
        durations = json.loads(run.file(DURATIONS))
        return make_tts_data(TTSDataOptions(asr=saved.get("asr"), **{k: saved[k] for k in names}), fields,
                             durations)

    def training_data(self, data: TTSRunData):
        return data.data

    def files(self, data: TTSRunData) -> dict[str, str]:
        return {"tokenizer.json": data.tokenizer.to_json(), DURATIONS: json.dumps(data.durations)}

    def config_from_data(self, data: TTSRunData, train_config) -> dict:
        return {"vocab_size": data.tokenizer.vocab_size}

    def new_model(self, config: TTSConfig, data: TTSRunData) -> TTSModel:
        model = self.build(config)
        model.set_stats(data.data.mean.numpy(), data.data.std.numpy())
        return model

    def extras(self, run: RunRecord) -> None:
        from seqlab.llm.tokenizers import tokenizer_from_json

        tok = tokenizer_from_json(run.file("tokenizer.json"))
        if tok.vocab_size != run.config.vocab_size or tuple(getattr(tok, "special_tokens", ())):
            fail(f"checkpoint {run.checkpoint}", f"a character tokenizer of {run.config.vocab_size} characters",
                 f"one of {tok.vocab_size}")
        run.tokenizer = tok

    # ---- use

    def encode_text(self, run: RunRecord, text: str) -> list[int]:
        """The ids of ``text`` (lower case, runs of spaces one space); empty text or a character the
        run has not learnt is a one-line error."""
        if not isinstance(text, str) or not text.strip():
            fail("text", "a non-empty text", repr(text))
        clean = " ".join(text.lower().split())
        chars = run.tokenizer.chars
        unknown = sorted(set(clean) - set(chars))
        if unknown:
            fail("text", f"only the characters the run learnt ({''.join(chars)!r})",
                 "unknown " + ", ".join(repr(c) for c in unknown))
        return run.tokenizer.encode(clean)

    def synthesize(self, model: TTSModel, run: RunRecord, text: str, *, n_iter: int = 32, speed: float = 1.0):
        """(log-mel X^ (T, n_mels), waveform (N,) at 22,050 Hz) of ``text``."""
        from seqlab.tasks.tts_audio import griffin_lim
        from seqlab.validation import check_float

        check_float(speed, "speed", minimum=0.25, maximum=4.0)
        x = model.synthesize(self.encode_text(run, text), speed=speed)
        return x, griffin_lim(x, model.config.mel(), n_iter=n_iter)

    def speak(self, model: TTSModel, run: RunRecord, text: str, out: str, *, force: bool = False,
              n_iter: int = 32, speed: float = 1.0) -> dict:
        from seqlab.paths import output_file
        from seqlab.tasks.tts_audio import write_wav

        path = output_file(out, "OUT.wav")
        if path.exists() and not force:
            fail("OUT.wav", "a file that does not exist yet (or --force to replace it)",
                 f"{str(path)!r}, which exists")
        if path.suffix.lower() != ".wav":
            fail("OUT.wav", "a file name ending in .wav", repr(str(path)))
        x, audio = self.synthesize(model, run, text, n_iter=n_iter, speed=speed)
        write_wav(path, audio, model.config.mel().sample_rate)
        return {"file": str(path), "frames": int(x.shape[0]), "seconds": len(audio) / model.config.mel().sample_rate}

    def evaluate(self, model: TTSModel, run: RunRecord, options: TTSEvaluation, data=None) -> TTSResult:
        import torch

        from seqlab import runs
        from seqlab.tasks.asr import decode, error_rates
        from seqlab.tasks.audio import features
        from seqlab.tasks.tts import mel_distance
        from seqlab.tasks.tts_audio import griffin_lim

        check_choice(options.split, "split", ("test", "val"))
        if options.limit is not None:
            check_int(options.limit, "limit", minimum=1)
        check_int(options.n_iter, "n_iter", minimum=1, maximum=1000)
        asr_dir = options.asr or run.saved_data().get("asr")
        asr = None
        if asr_dir:
            asr_model, asr_run = runs.load(asr_dir)
            if asr_run.family != "asr":
                fail("asr", "a run of the asr family", f"a {asr_run.family!r} run")
            asr = (asr_model, asr_run)
        data = self.data_from_run(run, {}) if data is None else data
        rows = (data.data.test_items if options.split == "test" else data.data.items["val"])[: options.limit]
        audio_ref = data.audio[options.split][: options.limit]
        mel = model.config.mel()
        t0 = time.perf_counter()
        tf, dtw, ours, vocoded = [], [], [], []
        for (ids, dur, x_ref, _), a_ref in zip(rows, audio_ref):
            x_tf = model.synthesize(ids, dur)  # the aligned durations: the same frames as eSpeak's
            tf.append(mel_distance(x_tf, x_ref, "equal"))
            x = model.synthesize(ids)  # predicted durations
            dtw.append(mel_distance(x, x_ref, "dtw"))
            ours.append(griffin_lim(x, mel, n_iter=options.n_iter))
            if asr is not None:
                vocoded.append(griffin_lim(x_ref, mel, n_iter=options.n_iter))
        out: dict[str, Any] = {
            "mel L1, aligned durations (frame by frame)": float(sum(tf) / len(tf)),
            "mel L1, predicted durations (DTW path)": float(sum(dtw) / len(dtw)),
            "synthesis seconds": time.perf_counter() - t0}
        refs = [r[3] for r in rows]
        examples = []
        if asr is not None:
            am, ar = asr
            heard = {}
            for name, wavs in (("eSpeak audio", audio_ref), ("eSpeak mel + Griffin-Lim", vocoded),
                               ("our audio", ours)):
                feats = [torch.from_numpy(features(a, am.config.mel())) for a in wavs]
                hyps = decode(am, ar.tokenizer, feats)
                heard[name] = hyps
                r = error_rates(refs, hyps)
                out[f"asr WER, {name}"] = r["wer"]
                out[f"asr CER, {name}"] = r["cer"]
            out["WER ratio (ours / eSpeak)"] = (out["asr WER, our audio"] / out["asr WER, eSpeak audio"]
                                                if out["asr WER, eSpeak audio"] > 0 else
                                                (0.0 if out["asr WER, our audio"] == 0 else None))
            examples = [[refs[i], heard["eSpeak audio"][i], heard["our audio"][i]] for i in range(min(3, len(refs)))]
        result = TTSResult(out, options.split, len(rows), examples)
        result.audio = {"espeak": audio_ref, "vocoded": vocoded, "ours": ours}  # for a benchmark's other listeners (not in JSON)
        return result

    def report(self, model: TTSModel, run: RunRecord) -> list[str]:
        return self.evaluate(model, run, TTSEvaluation(limit=10)).table().splitlines()


def speak(run_dir: str | Path, text: str, out: str | Path, *, force: bool = False, n_iter: int = 32,
          speed: float = 1.0) -> dict:
    """Python API of ``seqlab speak``: load the tts run at ``run_dir``, synthesise ``text`` and
    write it to ``out`` (a WAV file at 22,050 Hz; an existing file only with ``force``)."""
    from seqlab import runs
    from seqlab.paths import output_file

    path = output_file(out, "OUT.wav")
    if path.exists() and not force:
        fail("OUT.wav", "a file that does not exist yet (or --force to replace it)", f"{str(path)!r}, which exists")
    if not isinstance(text, str) or not text.strip():
        fail("text", "a non-empty text", repr(text))
    model, run = runs.load(run_dir)
    if run.family != TTSFamily.name:
        fail("speak", "a run of the tts family", f"a {run.family!r} run")
    return runs.get_family("tts").speak(model, run, text, str(path), force=force, n_iter=n_iter, speed=speed)


register(TTSFamily())
