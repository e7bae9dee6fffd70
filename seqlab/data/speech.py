r"""Speech for the recogniser (``seqlab.tasks.asr``) and the synthesiser: eSpeak NG through
ctypes, a seeded sentence generator, a cached corpus, and a loader for any folder of WAV files.

Synthesis. eSpeak NG's library and voices come from PyPI (``espeakng-loader``), so neither
apt nor the network is needed. Its C API is called through ``ctypes``:
``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, ...)``, a synth callback
(``espeak_SetSynthCallback``) that collects the 16-bit samples at 22,050 Hz,
``espeak_SetVoiceByName`` for the voice ("en-us", "en+f3": language, then an optional
variant of ``espeak-ng-data/voices/!v``) and ``espeak_SetParameter`` for the rate (words
per minute) and the pitch (0-100). ``synthesize(text, voice, rate, pitch)`` returns float32
samples in [-1, 1]; it is deterministic (the same arguments give the same samples: eSpeak's
random generator is seeded before each utterance with ``espeak_ng_SetRandSeed``, and the voices'
pitch flutter, whose phase the library carries from one utterance to the next, is off:
``_steady_data``) and
fast (about 3 ms for a sentence on a laptop CPU). ``add_noise(audio, snr_db, seed)`` adds
white Gaussian noise at a signal-to-noise ratio

    SNR_dB = 10 log10( mean(s^2) / mean(n^2) ).

The sentence generator (``generate_sentences``). Seeded sentences from a few templates
over a small vocabulary (``VOCABULARY``: {n} distinct words), e.g. "the small red fox
chased a white duck" or "put the blue cup under the old table". A recogniser trained on
some sentences is tested on *other* sentences: new combinations of the same words.

The corpus (``speech_corpus``). Train, validation and test sentences, pairwise distinct,
spoken with voice settings (voice, rate, pitch) drawn per utterance and with noise at an
SNR drawn from ``SNRS_DB`` (``None``: clean). The training and validation splits use the
``TRAIN_VOICES`` x ``TRAIN_RATES`` x ``TRAIN_PITCHES`` settings; the test split uses held-out
voices (``TEST_VOICES``), rates (``TEST_RATES``) and pitches (``TEST_PITCHES``) that no
training utterance has. It is cached under the user cache folder
(``seqlab.data.cache.build_once``) as ``wavs/*.wav`` (16-bit PCM, 22,050 Hz, the audio as
heard, noise included), ``transcripts.tsv`` (file, text, split) and ``transcripts.json`` (the
same, with each utterance's voice, rate, pitch and SNR, so that its clean audio can be
synthesised again: ``Utterance.clean_audio``), and rebuilt when missing.

Any folder of WAV files (``load_folder``) with a ``transcripts.tsv``: one line per file,
``file<TAB>text`` or ``file<TAB>text<TAB>split`` (train, val or test; without a split column
the split is chosen from a hash of the file name: about 80/10/10). Rules (each broken rule
is a one-line ``ValueError``): every file named exists and is a readable WAV file (any
other format is refused) of at least one sample; a file of several channels is averaged to
mono; a sample rate below ``MIN_SAMPLE_RATE`` (16 kHz: the mel features reach 8 kHz) is
refused, any other rate is resampled to 22,050 Hz (``librosa.resample``); every text is
non-empty after normalisation (``normalize_text``: lower case, letters, digits, apostrophes
and single spaces).
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import json
import os
import random
import re
import threading
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from seqlab.validation import check_int, fail

SAMPLE_RATE = 22050  # eSpeak NG's output rate
MIN_SAMPLE_RATE = 16000
SPLITS = ("train", "val", "test")
TRANSCRIPTS = "transcripts.tsv"
CORPUS_JSON = "transcripts.json"
CORPUS_VERSION = 2
MAX_UTTERANCES = 200_000

# ----------------------------------------------------------------------------- eSpeak NG

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH = 1, 3
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
RATE_RANGE = (80, 450)  # words per minute, eSpeak's range
PITCH_RANGE = (0, 100)


class _ESpeak:
    """The one eSpeak NG library of the process (its state is global): loaded and initialised
    on first use, called under a lock."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:  # pragma: no cover - a declared dependency
            fail("speech synthesis", "the espeakng-loader package (pip install espeakng-loader)", "none")
        self.data_path = _steady_data(Path(espeakng_loader.get_data_path()))
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        # eSpeak draws from a random generator (noise sources, small timing jitter): seeded before
        # every utterance, so that the same arguments give the same samples
        self.set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self.set_seed is None:  # pragma: no cover - espeak-ng < 1.52: it uses the C library's rand()
            self.set_seed = ctypes.CDLL(None).srand
        self.set_seed.argtypes = [ctypes.c_long]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(), 0)
        if rate != SAMPLE_RATE:  # pragma: no cover - eSpeak NG always runs at 22,050 Hz
            fail("espeak_Initialize", f"a sample rate of {SAMPLE_RATE} Hz", rate)
        self.lib = lib
        self.chunks: list[np.ndarray] = []
        # the callback: eSpeak hands over `n` samples at a time (n = 0 at the end)
        self.callback = _CALLBACK(self._collect)  # kept alive as long as the library
        lib.espeak_SetSynthCallback(self.callback)
        self.lock = threading.Lock()
        self.variants = {p.name for p in (Path(self.data_path) / "espeak-ng-data" / "voices" / "!v").iterdir()}

    def _collect(self, wav, n, events) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0: go on

    def synth(self, text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
        with self.lock:
            language, _, variant = voice.partition("+")
            if variant and (variant not in self.variants or variant == STEADY):
                fail("voice", "LANGUAGE or LANGUAGE+VARIANT with a variant of eSpeak NG (m1-m7, f1-f5, klatt, ...)",
                     repr(voice))
            if self.lib.espeak_SetVoiceByName(f"{language}+{variant or STEADY}".encode()) != 0:
                fail("voice", "a voice eSpeak NG knows (en, en-us, en+m3, ...)", repr(voice))
            self.lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            self.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            data = text.encode("utf-8")
            self.chunks = []
            self.set_seed(0)
            err = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            chunks, self.chunks = self.chunks, []
        if err != 0:  # pragma: no cover - eSpeak refuses nothing we pass
            fail("espeak_Synth", "status 0", err)
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return (pcm.astype(np.float32) / 32768.0)


_ENGINE: _ESpeak | None = None
STEADY = "seqlab-steady"  # the variant "flutter 0" that a voice without a variant is given
STEADY_VERSION = 1


def _steady_data(original: Path) -> str:
    """eSpeak NG's data folder with every voice variant's pitch flutter off, built once in the
    user cache (links to the original files, and copies of the variant files, each with "flutter 0"
    appended, plus a variant of its own, ``seqlab-steady``: "flutter 0" alone).

    Why: eSpeak's flutter reads a table at an index that is a static variable of the library,
    carried from one utterance to the next and never reset; with the flutter on, the same text
    comes out differently after other utterances. With it off (and the random generator
    seeded), synthesis is a function of its arguments."""
    from seqlab.data.cache import build_once

    def build(tmp: Path) -> None:
        data = tmp / "espeak-ng-data"
        data.mkdir()
        for entry in original.iterdir():
            if entry.name != "voices":
                _link(entry, data / entry.name)
        (data / "voices").mkdir()
        for entry in (original / "voices").iterdir():
            if entry.name != "!v":
                _link(entry, data / "voices" / entry.name)
        variants = data / "voices" / "!v"
        variants.mkdir()
        for entry in (original / "voices" / "!v").iterdir():
            if entry.is_file():
                text = entry.read_text(encoding="latin-1")
                (variants / entry.name).write_text(text.rstrip("\n") + "\nflutter 0\n", encoding="latin-1")
        (variants / STEADY).write_text(f"language variant\nname {STEADY}\nflutter 0\n", encoding="latin-1")

    # named after the original folder too: the copy links to it, so another installation (a
    # moved virtual environment, another espeakng-loader) gets a copy of its own
    where = hashlib.sha256(str(original.resolve()).encode()).hexdigest()[:12]
    root = build_once(f"espeak-ng-data-steady-v{STEADY_VERSION}-{where}", build)
    return str(root)


def _link(source: Path, target: Path) -> None:
    try:
        target.symlink_to(source, target_is_directory=source.is_dir())
    except OSError:  # pragma: no cover - a file system without symbolic links
        import shutil

        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)


def _engine() -> _ESpeak:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _ESpeak()
    return _ENGINE


def synthesize(text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50) -> np.ndarray:
    """``text`` spoken by eSpeak NG: float32 samples in [-1, 1] at 22,050 Hz, shape (N,).

    voice: a language ("en", "en-us") or language+variant ("en-us+f3"); rate: words per
    minute in [80, 450]; pitch: 0-100 (50 is the voice's own)."""
    if not isinstance(text, str) or not text.strip():
        fail("text", "a non-empty string", repr(text))
    if not isinstance(voice, str) or not voice:
        fail("voice", "a voice name such as 'en-us' or 'en+f3'", repr(voice))
    check_int(rate, "rate", minimum=RATE_RANGE[0], maximum=RATE_RANGE[1])
    check_int(pitch, "pitch", minimum=PITCH_RANGE[0], maximum=PITCH_RANGE[1])
    audio = _engine().synth(text, voice, rate, pitch)
    if audio.size == 0:
        fail("text", "text eSpeak NG speaks (it produced no audio)", repr(text))
    return audio


def add_noise(audio: np.ndarray, snr_db: float | None, seed: int) -> np.ndarray:
    """``audio`` plus white Gaussian noise n at ``snr_db`` (None: ``audio`` unchanged):
    mean(n^2) = mean(s^2) / 10^(SNR_dB / 10). Deterministic in ``seed``."""
    if snr_db is None:
        return audio
    power = float(np.mean(audio.astype(np.float64) ** 2))
    # mean(n^2) = mean(s^2) / 10^(SNR_dB / 10)
    sigma = np.sqrt(power / 10 ** (snr_db / 10))
    noise = np.random.default_rng(seed).standard_normal(audio.shape) * sigma
    return np.clip(audio + noise, -1.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- sentences

WORDS = {
    "size": ("big", "small", "old", "young", "tall", "little"),
    "colour": ("red", "green", "blue", "yellow", "black", "white", "brown", "pink", "grey"),
    "animal": ("cat", "dog", "bird", "fish", "horse", "mouse", "cow", "fox", "lion", "bear", "duck", "frog",
               "sheep", "goat"),
    "object": ("box", "ball", "cup", "book", "hat", "bag", "key", "lamp", "shoe", "clock", "spoon", "coat"),
    "place": ("table", "chair", "bed", "door", "tree", "house", "river", "garden", "window", "bridge"),
    "verb": ("saw", "chased", "found", "liked", "pushed", "followed", "heard", "watched", "helped", "called"),
    "command": ("put", "move", "place", "drop", "leave", "hide"),
    "prep": ("on", "under", "near", "behind", "beside", "inside"),
    "det": ("the", "a"),
}
TEMPLATES = (
    "{det} {size} {colour} {animal} {verb} {det} {colour} {animal}",
    "{command} the {colour} {object} {prep} the {place}",
    "{det} {animal} {verb} the {size} {animal} {prep} the {place}",
    "the {size} {object} is {prep} the {colour} {place}",
    "{det} {colour} {animal} {verb} {det} {size} {object}",
    "{command} the {size} {colour} {object} {prep} {det} {place}",
)
VOCABULARY = tuple(sorted(set(itertools.chain(*WORDS.values(), "is".split()))))


def generate_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` sentences from ``TEMPLATES`` over ``VOCABULARY``, pairwise distinct, in a seeded order
    (the same ``seed`` gives the same list; a longer list starts with the shorter one)."""
    check_int(n, "n", minimum=0, maximum=MAX_UTTERANCES)
    check_int(seed, "seed", minimum=0)
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        template = rng.choice(TEMPLATES)
        # every slot of a template draws its own word ("{det} ... {det}": two draws)
        text = re.sub(r"\{(\w+)\}", lambda m: rng.choice(WORDS[m.group(1)]), template)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


# ----------------------------------------------------------------------------- voices

TRAIN_VOICES = ("en-us", "en-us+m1", "en-us+m3", "en-us+f1", "en-us+f4", "en", "en+m2", "en+m5", "en+f2")
TEST_VOICES = ("en-us+m7", "en+m4", "en-us+f3", "en+f5")
TRAIN_RATES = (130, 150, 170, 190, 210)
TEST_RATES = (160, 200)
TRAIN_PITCHES = (25, 40, 55, 70)
TEST_PITCHES = (35, 62)
SNRS_DB = (None, 30.0, 20.0, 15.0)


@dataclass(frozen=True)
class VoiceSetting:
    """How an utterance is spoken: eSpeak voice, rate (words per minute), pitch (0-100)."""

    voice: str
    rate: int
    pitch: int


def voice_settings(split: str) -> list[VoiceSetting]:
    """The voice settings a split draws from: train and val share ``TRAIN_*``; test has the
    held-out ``TEST_*`` (no voice, rate or pitch of it is in training)."""
    voices, rates, pitches = ((TEST_VOICES, TEST_RATES, TEST_PITCHES) if split == "test"
                              else (TRAIN_VOICES, TRAIN_RATES, TRAIN_PITCHES))
    return [VoiceSetting(v, r, p) for v in voices for r in rates for p in pitches]


# ----------------------------------------------------------------------------- corpus


@dataclass
class Utterance:
    """One recording: its WAV file, transcript, split and (for a generated corpus) how it was
    spoken; ``None`` fields for recordings of a user's folder."""

    file: Path
    text: str
    split: str
    voice: str | None = None
    rate: int | None = None
    pitch: int | None = None
    snr_db: float | None = None

    def audio(self) -> np.ndarray:
        """The recording as float32 samples at 22,050 Hz (resampled if needed), shape (N,)."""
        return read_wav(self.file)

    def clean_audio(self) -> np.ndarray:
        """A generated utterance synthesised again without noise (the same voice settings)."""
        if self.voice is None:
            fail("clean_audio", "an utterance of a generated corpus", f"the recording {str(self.file)!r}")
        return synthesize(self.text, self.voice, self.rate, self.pitch)


@dataclass
class SpeechCorpus:
    """Utterances in their splits, from a folder (``root``) that holds the WAV files."""

    root: Path
    utterances: list[Utterance]
    source: str  # "espeak" or "folder"
    options: dict = field(default_factory=dict)

    def split(self, name: str) -> list[Utterance]:
        if name not in SPLITS:
            fail("split", "one of " + ", ".join(SPLITS), repr(name))
        return [u for u in self.utterances if u.split == name]

    def texts(self, name: str) -> list[str]:
        return [u.text for u in self.split(name)]

    def fingerprint(self) -> str:
        """sha256 of the transcripts file (what a saved run checks its corpus against)."""
        return hashlib.sha256((self.root / TRANSCRIPTS).read_bytes()).hexdigest()


def corpus_name(train: int, val: int, test: int, seed: int) -> str:
    return f"speech-v{CORPUS_VERSION}-seed{seed}-{train}-{val}-{test}"


def _utterance_seed(seed: int, split: str, i: int) -> int:
    return zlib.crc32(f"{seed}/{split}/{i}".encode())


def plan_corpus(train: int, val: int, test: int, seed: int = 0) -> list[Utterance]:
    """The utterances of a generated corpus (texts and settings, without audio): pairwise
    distinct sentences; train and val drawn from the training voice settings, test from the
    held-out ones."""
    counts = {"train": train, "val": val, "test": test}
    for name, n in counts.items():
        check_int(n, f"{name} utterances", minimum=1, maximum=MAX_UTTERANCES)
    check_int(seed, "corpus seed", minimum=0, maximum=2**31 - 1)
    sentences = generate_sentences(train + val + test, seed)
    out, start = [], 0
    for split, n in counts.items():
        settings = voice_settings(split)
        for i, text in enumerate(sentences[start:start + n]):
            rng = random.Random(_utterance_seed(seed, split, i))
            s = rng.choice(settings)
            snr = rng.choice(SNRS_DB)
            out.append(Utterance(Path("wavs") / f"{split}-{i:05d}.wav", text, split, s.voice, s.rate, s.pitch, snr))
        start += n
    return out


def _write_corpus(folder: Path, utterances: list[Utterance], options: dict) -> None:
    import soundfile as sf

    (folder / "wavs").mkdir()
    lines = []
    for u in utterances:
        audio = synthesize(u.text, u.voice, u.rate, u.pitch)
        audio = add_noise(audio, u.snr_db, _utterance_seed(options["seed"], u.split, int(u.file.stem[-5:])) + 1)
        sf.write(folder / u.file, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        lines.append(f"{u.file.as_posix()}\t{u.text}\t{u.split}")
    (folder / TRANSCRIPTS).write_text("\n".join(lines) + "\n", encoding="utf-8")
    meta = {"format": "seqlab-speech-corpus", "version": CORPUS_VERSION, "sample_rate": SAMPLE_RATE,
            "options": options, "vocabulary": list(VOCABULARY),
            "utterances": [{**asdict(u), "file": u.file.as_posix()} for u in utterances]}
    (folder / CORPUS_JSON).write_text(json.dumps(meta, indent=1), encoding="utf-8")


def speech_corpus(train: int = 2000, val: int = 100, test: int = 200, seed: int = 0) -> SpeechCorpus:
    """The generated eSpeak corpus (built into the user cache folder on first use, then read
    from there; rebuilt when missing). Its test split: held-out sentences, held-out voices."""
    utterances = plan_corpus(train, val, test, seed)
    options = {"train": train, "val": val, "test": test, "seed": seed}
    root = _build_once(corpus_name(train, val, test, seed), lambda tmp: _write_corpus(tmp, utterances, options))
    for u in utterances:
        u.file = root / u.file
    missing = [u.file.name for u in utterances if not u.file.is_file()]
    if missing:  # a cache folder someone emptied by hand: it is not rebuilt behind their back
        fail(f"speech corpus {root}", "every WAV file of the corpus (delete the folder to rebuild it)",
             f"{len(missing)} missing, e.g. {missing[0]}")
    return SpeechCorpus(root, utterances, "espeak", options)


def _build_once(name, build):
    from seqlab.data.cache import build_once

    return build_once(name, build)


# ----------------------------------------------------------------------------- reading WAV files


def normalize_text(text: str) -> str:
    """Lower case; letters (a-z), digits and apostrophes kept; everything else a space; runs of
    spaces one space; no space at either end."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"[^a-z0-9']+", " ", text)
    return " ".join(text.split())


def wav_info(path: str | os.PathLike, what: str = "audio file"):
    """``soundfile.info`` of a WAV file, or a one-line ValueError: missing, unreadable, not WAV."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        fail(what, "an existing WAV file", f"{str(path)!r}, which does not exist")
    if not path.is_file():
        fail(what, "a WAV file", f"{str(path)!r}, which is not a file")
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, sf.LibsndfileError if hasattr(sf, "LibsndfileError") else RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        fail(what, "a readable WAV file", f"{str(path)!r}, which cannot be read as audio ({reason})")
    if info.format != "WAV":
        fail(what, "a WAV file", f"{str(path)!r}, a {info.format} file")
    if info.frames < 1:
        fail(what, "a WAV file with at least one sample", f"{str(path)!r}, which is empty")
    if info.samplerate < MIN_SAMPLE_RATE:
        fail(what, f"a sample rate of at least {MIN_SAMPLE_RATE} Hz (it is resampled to {SAMPLE_RATE} Hz; the "
             "features reach 8 kHz)", f"{info.samplerate} Hz in {str(path)!r}")
    return info


def read_wav(path: str | os.PathLike, what: str = "audio file") -> np.ndarray:
    """A WAV file as float32 mono samples at 22,050 Hz, shape (N,): several channels are
    averaged, another sample rate (>= 16 kHz) is resampled; anything else is refused in one line."""
    import soundfile as sf

    wav_info(path, what)
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as e:
        fail(what, "a readable WAV file", f"{str(path)!r} ({str(e).splitlines()[0] if str(e) else e})")
    audio = audio.mean(axis=1)  # (N,)
    if not np.isfinite(audio).all():
        fail(what, "finite samples", f"NaN or infinite samples in {str(path)!r}")
    if rate != SAMPLE_RATE:
        import librosa

        audio = librosa.resample(audio, orig_sr=rate, target_sr=SAMPLE_RATE).astype(np.float32)
    return audio


def load_folder(folder: str | os.PathLike) -> SpeechCorpus:
    """A folder of WAV files with ``transcripts.tsv`` (``file<TAB>text[<TAB>split]``), every
    file checked (exists, readable WAV, >= 16 kHz) and every text non-empty; at least one
    utterance in train and one in val (the trainer evaluates on val)."""
    root = Path(folder)
    if not root.is_dir():
        fail("--wavs", "a folder of WAV files with transcripts.tsv", f"{str(root)!r}, which is not a folder")
    tsv = root / TRANSCRIPTS
    if not tsv.is_file():
        fail("--wavs", f"a folder holding {TRANSCRIPTS} (file<TAB>text per line)", f"{str(root)!r} without it")
    try:
        lines = tsv.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, OSError) as e:
        fail(str(tsv), "a UTF-8 text file", f"a file that cannot be read ({type(e).__name__})")
    utterances = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) not in (2, 3):
            fail(f"{tsv}:{n}", "file<TAB>text or file<TAB>text<TAB>split", f"{len(parts)} fields")
        name, text = parts[0].strip(), normalize_text(parts[1])
        if not text:
            fail(f"{tsv}:{n}", "a non-empty transcript (letters or digits)", repr(parts[1]))
        if len(parts) == 3:
            split = parts[2].strip()
            if split not in SPLITS:
                fail(f"{tsv}:{n}", "a split among " + ", ".join(SPLITS), repr(split))
        else:
            h = zlib.crc32(name.encode()) % 10
            split = "test" if h == 0 else "val" if h == 1 else "train"
        path = root / name
        wav_info(path, f"{tsv}:{n}")
        utterances.append(Utterance(path, text, split))
    if not utterances:
        fail(str(tsv), "at least one line file<TAB>text", "none")
    for split in ("train", "val"):
        if not any(u.split == split for u in utterances):
            fail(str(tsv), f"at least one {split} utterance (give a third column: train, val or test)", "none")
    return SpeechCorpus(root, utterances, "folder", {"wavs": str(root.resolve())})


__doc__ = __doc__.replace("{n}", str(len(VOCABULARY)))

__all__ = ["MIN_SAMPLE_RATE", "SAMPLE_RATE", "SNRS_DB", "SPLITS", "TEMPLATES", "TEST_PITCHES", "TEST_RATES",
           "TEST_VOICES", "TRAIN_PITCHES", "TRAIN_RATES", "TRAIN_VOICES", "VOCABULARY", "SpeechCorpus", "Utterance",
           "VoiceSetting", "add_noise", "generate_sentences", "load_folder", "normalize_text", "plan_corpus",
           "read_wav", "speech_corpus", "synthesize", "voice_settings", "wav_info"]
