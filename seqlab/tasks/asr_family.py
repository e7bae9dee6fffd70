"""Speech recognition (``seqlab.tasks.asr``) as a family of the registry: ``seqlab train asr
[--wavs FOLDER]``, ``seqlab eval RUN`` (WER and CER with jiwer: greedy, beam, beam + LM),
``seqlab transcribe RUN file.wav [--beam N] [--lm]``, and the same from Python::

    result = seqlab.train("asr", max_steps=2000)
    model, run = seqlab.load(result.run_dir)
    print(seqlab.evaluate(result.run_dir).table())
    from seqlab.tasks.asr_family import transcribe
    print(transcribe(result.run_dir, "hello.wav", beam=8, lm=True)["text"])

The data: the generated eSpeak NG corpus (``seqlab.data.speech.speech_corpus``: held-out
sentences, and held-out voice settings in the test split), or any folder of WAV files with a
``transcripts.tsv`` (``--wavs``). Checkpoints carry ``tokenizer.json`` (the characters and
the blank) and ``lm_texts.txt`` (the training transcripts, which the character n-gram LM of
the beam search is fitted on when a run is loaded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqlab.runs import Family, RunRecord, register
from seqlab.tasks.asr import ASRConfig, ASRModel
from seqlab.validation import check_choice, check_float, check_int, fail

LM_FILE = "lm_texts.txt"


@dataclass(frozen=True)
class ASRData:
    """The speech an asr run trains on.

    Attributes:
        wavs: a folder of WAV files with transcripts.tsv (file<TAB>text[<TAB>split]); none: the generated eSpeak corpus
        utterances: training utterances of the generated corpus
        val_utterances: validation utterances of the generated corpus (held-out sentences, training voices)
        test_utterances: test utterances of the generated corpus (held-out sentences and voice settings)
        corpus_seed: seed of the generated corpus's sentences and voice settings
    """

    wavs: str | None = None
    utterances: int = 1500
    val_utterances: int = 100
    test_utterances: int = 200
    corpus_seed: int = 0


@dataclass(frozen=True)
class ASREvaluation:
    """Options of ``seqlab eval`` for an asr run.

    Attributes:
        split: the split to transcribe: test (held-out sentences and voices) or val
        beam: beam width of the prefix beam search
        lm_order: order n of the character n-gram LM (fitted on the training transcripts)
        lm_weight: shallow-fusion weight alpha of the LM
        bonus: insertion bonus beta per character
        limit: transcribe at most this many utterances of the split (none: all)
    """

    split: str = "test"
    beam: int = 8
    lm_order: int = 6
    lm_weight: float = 0.5
    bonus: float = 1.0
    limit: int | None = None


@dataclass
class ASRRunData:
    """An asr run's data: the options, the corpus and its features."""

    options: ASRData
    corpus: Any
    data: Any
    tokenizer: Any

    def info(self) -> dict:
        o = self.options
        if self.corpus.source == "folder":
            return {"kind": "wav-folder", "wavs": self.corpus.options["wavs"],
                    "transcripts_sha256": self.corpus.fingerprint()}
        return {"kind": "espeak", "utterances": o.utterances, "val_utterances": o.val_utterances,
                "test_utterances": o.test_utterances, "corpus_seed": o.corpus_seed,
                "transcripts_sha256": self.corpus.fingerprint()}


@dataclass
class ASRResult:
    """``seqlab eval``'s result: WER and CER of each decoder."""

    rows: dict
    split: str
    n: int

    def table(self) -> str:
        lines = [f"{self.n} {self.split} utterances"]
        for name, r in self.rows.items():
            lines.append(f"{name:<14} WER {100 * r['wer']:5.1f}%  CER {100 * r['cer']:5.1f}%  ({r['seconds']:.1f} s)")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"split": self.split, "utterances": self.n, "decoders": self.rows}


def make_asr_data(options: ASRData, fields: dict, splits=("train", "val", "test")) -> ASRRunData:
    """The corpus of ``options`` and the features of ``splits`` (computed with the mel settings
    of ``fields``)."""
    from seqlab.data.speech import load_folder, speech_corpus
    from seqlab.tasks.asr import SpeechData, speech_tokenizer
    from seqlab.tasks.audio import MelConfig

    if options.wavs is not None:
        if not isinstance(options.wavs, str) or not options.wavs:
            fail("wavs", "a folder path", repr(options.wavs))
        corpus = load_folder(options.wavs)
    else:
        for name in ("utterances", "val_utterances", "test_utterances"):
            check_int(getattr(options, name), name, minimum=1, maximum=200_000)
        check_int(options.corpus_seed, "corpus_seed", minimum=0, maximum=2**31 - 1)
        corpus = speech_corpus(options.utterances, options.val_utterances, options.test_utterances,
                               options.corpus_seed)
    tokenizer = speech_tokenizer([u.text for u in corpus.utterances])
    d = ASRConfig()
    mel = MelConfig(n_fft=fields.get("n_fft", d.n_fft), hop_length=fields.get("hop_length", d.hop_length),
                    n_mels=fields.get("n_mels", d.n_mels))
    return ASRRunData(options, corpus, SpeechData(corpus, tokenizer, mel, splits), tokenizer)


def _lm(run: RunRecord, order: int):
    from seqlab.tasks.asr import CharNGramLM

    return CharNGramLM(run.extras["lm_texts"], order)


class ASRFamily(Family):
    name = "asr"
    description = "speech recognition: conv front end, bidirectional GRU/LSTM encoder, CTC (eSpeak NG speech)"
    model_class = ASRModel
    config_class = ASRConfig
    data_class = ASRData
    evaluate_class = ASREvaluation
    presets = {
        "cpu-tiny": dict(conv_channels=16, hidden_size=16, num_layers=1),
        "cpu-small": dict(conv_channels=192, hidden_size=160, num_layers=2),
    }
    default_preset = "cpu-small"
    # What `seqlab train asr` does with no options: about 6 minutes on a shared 2-core CPU
    # (benchmarks/bench_asr.py: 360-450 steps reach a test CER near 1.5% greedy)
    train_defaults = dict(max_steps=500, batch_size=32, lr=2e-3, min_lr=2e-4, warmup_steps=50, eval_every=125,
                          eval_batches=4, clip_norm=1.0)
    data_fields = ("vocab_size",)
    resume_data_options = ("wavs",)
    metric = "validation CTC loss (per character)"
    views = ("transcribe",)

    def make_data(self, options: ASRData, fields, train_config) -> ASRRunData:
        return make_asr_data(options, dict(fields))

    def data_from_run(self, run: RunRecord, options, splits=("train", "val", "test")) -> ASRRunData:
        saved = run.saved_data()
        c = run.config
        fields = {"n_fft": c.n_fft, "hop_length": c.hop_length, "n_mels": c.n_mels}
        if saved.get("kind") == "espeak":
            names = ("utterances", "val_utterances", "test_utterances", "corpus_seed")
            missing = [k for k in names if k not in saved]
            if missing:
                fail(f"run {run.dir}", "a run.json describing the eSpeak corpus", "missing " + ", ".join(missing))
            data = make_asr_data(ASRData(**{k: saved[k] for k in names}), fields, splits)
        elif saved.get("kind") == "wav-folder":
            data = make_asr_data(ASRData(wavs=options.get("wavs") or saved.get("wavs")), fields, splits)
        else:
            fail(f"run {run.dir}", "a run.json describing speech (kind espeak or wav-folder)",
                 f"kind {saved.get('kind')!r}")
        if saved.get("transcripts_sha256") not in (None, data.corpus.fingerprint()):
            fail("speech corpus", f"the run's transcripts (sha256 {saved['transcripts_sha256'][:12]}...)",
                 f"transcripts with sha256 {data.corpus.fingerprint()[:12]}... in {data.corpus.root}")
        return data

    def training_data(self, data: ASRRunData):
        return data.data

    def files(self, data: ASRRunData) -> dict[str, str]:
        return {"tokenizer.json": data.tokenizer.to_json(), LM_FILE: "\n".join(data.corpus.texts("train")) + "\n"}

    def config_from_data(self, data: ASRRunData, train_config) -> dict:
        return {"vocab_size": data.tokenizer.vocab_size}

    def extras(self, run: RunRecord) -> None:
        from seqlab.llm.tokenizers import tokenizer_from_json
        from seqlab.tasks.asr import BLANK

        tok = tokenizer_from_json(run.file("tokenizer.json"))
        if tuple(getattr(tok, "special_tokens", ())) != (BLANK,):
            fail(f"checkpoint {run.checkpoint}", f"a character tokenizer whose one special token is {BLANK}",
                 "another tokenizer")
        if tok.vocab_size != run.config.vocab_size:
            fail(f"checkpoint {run.checkpoint}", f"a tokenizer of {run.config.vocab_size} symbols",
                 tok.vocab_size)
        run.tokenizer = tok
        run.extras["lm_texts"] = [line for line in run.file(LM_FILE).splitlines() if line]

    # ---- use

    def evaluate(self, model: ASRModel, run: RunRecord, options: ASREvaluation, data=None) -> ASRResult:
        from seqlab.tasks.asr import decode, error_rates

        check_choice(options.split, "split", ("test", "val"))
        check_int(options.beam, "beam", minimum=1, maximum=256)
        check_int(options.lm_order, "lm_order", minimum=1, maximum=12)
        check_float(options.lm_weight, "lm_weight", minimum=0.0, maximum=10.0)
        check_float(options.bonus, "bonus", minimum=-10.0, maximum=10.0)
        if options.limit is not None:
            check_int(options.limit, "limit", minimum=1)
        data = self.data_from_run(run, {}, (options.split,)) if data is None else data
        rows = data.data.items[options.split][: options.limit]
        if not rows:
            fail("split", f"a split with utterances ({options.split} has none)", options.split)
        feats, refs = [r[0] for r in rows], [r[2] for r in rows]
        lm = _lm(run, options.lm_order)
        decoders = {"greedy": dict(beam=0), f"beam {options.beam}": dict(beam=options.beam),
                    f"beam {options.beam} + LM": dict(beam=options.beam, lm=lm, alpha=options.lm_weight,
                                                      beta=options.bonus)}
        out = {}
        for name, kw in decoders.items():
            t = time.perf_counter()
            hyps = decode(model, run.tokenizer, feats, **kw)
            out[name] = {**error_rates(refs, hyps), "seconds": time.perf_counter() - t,
                         "examples": [[r, h] for r, h in zip(refs[:3], hyps[:3])]}
        return ASRResult(out, options.split, len(rows))

    def report(self, model: ASRModel, run: RunRecord) -> list[str]:
        has_test = (run.saved_data().get("kind") == "espeak"
                    or bool(self.data_from_run(run, {}, ()).corpus.split("test")))
        split = "test" if has_test else "val"
        return self.evaluate(model, run, ASREvaluation(split=split, limit=50)).table().splitlines()

    def transcribe(self, model: ASRModel, run: RunRecord, path: str, *, beam: int = 0, lm: bool = False,
                   lm_order: int = 6, lm_weight: float = 0.5, bonus: float = 1.0) -> dict:
        """The transcript of one WAV file (any rate >= 16 kHz, resampled to 22,050 Hz)."""
        import torch

        from seqlab.data.speech import read_wav
        from seqlab.tasks.asr import decode
        from seqlab.tasks.audio import features

        check_int(beam, "beam", minimum=0, maximum=256)
        if lm and beam == 0:
            fail("lm", "a beam width (--beam N) to search with the LM", "--lm without --beam")
        audio = read_wav(path)
        x = torch.from_numpy(features(audio, model.config.mel()))  # (T, n_mels)
        kw: dict[str, Any] = dict(beam=beam)
        if lm:
            kw.update(lm=_lm(run, lm_order), alpha=lm_weight, beta=bonus)
        text = decode(model, run.tokenizer, [x], **kw)[0]
        decoder = "greedy" if beam == 0 else f"beam {beam}" + (" + LM" if lm else "")
        return {"file": str(path), "seconds": len(audio) / 22050, "decoder": decoder, "text": text}


def transcribe(run_dir: str | Path, path: str | Path, *, beam: int = 0, lm: bool = False) -> dict:
    """Python API of ``seqlab transcribe``: load the asr run at ``run_dir`` and transcribe ``path``."""
    from seqlab import runs
    from seqlab.data.speech import wav_info

    wav_info(path)
    model, run = runs.load(run_dir)
    if run.family != ASRFamily.name:
        fail("transcribe", "a run of the asr family", f"a {run.family!r} run")
    return runs.get_family("asr").transcribe(model, run, str(path), beam=beam, lm=lm)


register(ASRFamily())
