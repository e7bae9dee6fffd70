"""Speech data and features (seqlab/data/speech.py, seqlab/tasks/audio.py): eSpeak NG synthesis,
noise at an SNR, the sentence generator, the corpus's held-out sentences and voice settings,
the cache, the WAV-folder loader's one-line errors, and log-mel features against librosa."""

import numpy as np
import pytest
import soundfile as sf

from seqlab.data import speech
from seqlab.data.speech import (SAMPLE_RATE, add_noise, generate_sentences, load_folder, normalize_text, plan_corpus,
                                read_wav, speech_corpus, synthesize, voice_settings)
from seqlab.tasks.audio import MelConfig, features, frames, log_mel, normalize


def test_synthesis_works_and_is_deterministic():
    a = synthesize("the red cat saw a dog")
    b = synthesize("the red cat saw a dog")
    assert a.dtype == np.float32 and a.ndim == 1
    assert 0.5 * SAMPLE_RATE < len(a) < 4 * SAMPLE_RATE  # about 1.5 s of speech
    assert np.array_equal(a, b)
    assert 0.05 < np.abs(a).max() <= 1.0 and np.sqrt(np.mean(a ** 2)) > 0.01  # not silence
    # rate, pitch and voice change the audio; a faster rate is shorter
    fast = synthesize("the red cat saw a dog", rate=300)
    assert len(fast) < 0.8 * len(a)
    assert not np.array_equal(synthesize("the red cat saw a dog", pitch=80), a)
    other = synthesize("the red cat saw a dog", voice="en+f3")
    assert not (len(other) == len(a) and np.array_equal(other, a))


@pytest.mark.parametrize("kwargs, match", [
    (dict(text=""), "text"), (dict(text="   "), "text"), (dict(text="hi", rate=10), "rate"),
    (dict(text="hi", pitch=101), "pitch"), (dict(text="hi", voice="xx-nope"), "voice"),
    (dict(text="hi", voice="en+nosuchvariant"), "voice"),
])
def test_synthesis_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        synthesize(**kwargs)
    assert "\n" not in str(e.value) and "expected" in str(e.value)


def test_noise_at_snr():
    s = synthesize("a big black dog")
    for snr in (20.0, 5.0):
        noisy = add_noise(s, snr, seed=1)
        n = noisy.astype(np.float64) - s
        measured = 10 * np.log10(np.mean(s.astype(np.float64) ** 2) / np.mean(n ** 2))
        assert abs(measured - snr) < 0.3
        assert np.array_equal(noisy, add_noise(s, snr, seed=1))
    assert add_noise(s, None, seed=1) is s


def test_sentence_generator():
    a = generate_sentences(300, seed=1)
    assert a == generate_sentences(300, seed=1) and a != generate_sentences(300, seed=2)
    assert len(set(a)) == 300 and generate_sentences(50, seed=1) == a[:50]
    words = {w for s in a for w in s.split()}
    assert words <= set(speech.VOCABULARY)
    assert 60 <= len(speech.VOCABULARY) <= 100
    assert all(normalize_text(s) == s for s in a)


def test_corpus_split_disjointness():
    plan = plan_corpus(400, 40, 60, seed=0)
    by = {s: [u for u in plan if u.split == s] for s in ("train", "val", "test")}
    texts = {s: {u.text for u in us} for s, us in by.items()}
    assert len(texts["train"]) == 400 and len(texts["val"]) == 40 and len(texts["test"]) == 60
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["val"] and not texts["val"] & texts["test"]
    # voice settings: no voice, rate or pitch of the test split is in training
    train = {(u.voice, u.rate, u.pitch) for u in by["train"] + by["val"]}
    test = {(u.voice, u.rate, u.pitch) for u in by["test"]}
    assert {v for v, _, _ in train}.isdisjoint({v for v, _, _ in test})
    assert {r for _, r, _ in train}.isdisjoint({r for _, r, _ in test})
    assert {p for _, _, p in train}.isdisjoint({p for _, _, p in test})
    assert {(s.voice, s.rate, s.pitch) for s in voice_settings("test")} >= test
    # every word of the test sentences is in the training sentences (new combinations only)
    assert {w for t in texts["test"] for w in t.split()} <= {w for t in texts["train"] for w in t.split()}
    assert len({u.snr_db for u in by["train"]}) > 1


def test_corpus_is_cached_and_rebuilt_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLAB_CACHE", str(tmp_path))
    c = speech_corpus(6, 2, 2, seed=5)
    assert c.root.parent == tmp_path and (c.root / "transcripts.tsv").is_file()
    u = c.split("test")[0]
    audio = u.audio()
    info = sf.info(str(u.file))
    assert info.samplerate == SAMPLE_RATE and info.format == "WAV" and info.subtype == "PCM_16"
    # the WAV holds the synthesised audio (plus its noise), 16-bit
    clean = u.clean_audio()
    assert len(audio) == len(clean)
    if u.snr_db is None:
        assert np.abs(audio - clean).max() < 1e-4
    mtime = (c.root / "transcripts.tsv").stat().st_mtime_ns
    again = speech_corpus(6, 2, 2, seed=5)
    assert (again.root / "transcripts.tsv").stat().st_mtime_ns == mtime  # read, not rebuilt
    import shutil

    shutil.rmtree(c.root)
    rebuilt = speech_corpus(6, 2, 2, seed=5)
    assert np.array_equal(rebuilt.split("test")[0].audio(), audio)
    # the generated folder is also a folder of WAV files with transcripts
    folder = load_folder(rebuilt.root)
    assert [(x.text, x.split) for x in folder.utterances] == [(x.text, x.split) for x in rebuilt.utterances]


def _write(path, rate=SAMPLE_RATE, seconds=0.3, channels=1, fmt="WAV"):
    x = np.random.default_rng(0).standard_normal((int(rate * seconds), channels)).astype(np.float32) * 0.1
    sf.write(str(path), x, rate, format=fmt)
    return x


def test_folder_loader_and_its_errors(tmp_path):
    _write(tmp_path / "a.wav")
    _write(tmp_path / "b.wav", rate=44100, channels=2)
    (tmp_path / "transcripts.tsv").write_text("a.wav\tHello, World!\ttrain\nb.wav\tyes\tval\n")
    c = load_folder(tmp_path)
    assert [u.text for u in c.utterances] == ["hello world", "yes"]
    b = c.utterances[1].audio()
    assert b.ndim == 1 and abs(len(b) - int(0.3 * SAMPLE_RATE)) <= 2  # stereo averaged, resampled

    def bad(text, match):
        (tmp_path / "transcripts.tsv").write_text(text)
        with pytest.raises(ValueError, match=match) as e:
            load_folder(tmp_path)
        assert "\n" not in str(e.value)

    bad("a.wav\t ?! \ttrain\nb.wav\tyes\tval\n", "non-empty transcript")
    bad("missing.wav\thi\ttrain\n", "does not exist")
    (tmp_path / "c.wav").write_bytes(b"this is not audio at all")
    bad("c.wav\thi\ttrain\n", "readable WAV")
    _write(tmp_path / "d.flac", fmt="FLAC")
    bad("d.flac\thi\ttrain\n", "a WAV file")
    _write(tmp_path / "e.wav", rate=8000)
    bad("e.wav\thi\ttrain\n", "sample rate of at least 16000 Hz")
    bad("a.wav\thi\tholdout\n", "split")
    bad("a.wav\n", "file<TAB>text")
    bad("a.wav\thi\ttrain\n", "val utterance")
    with pytest.raises(ValueError, match="transcripts.tsv"):
        load_folder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="sample rate"):
        read_wav(tmp_path / "e.wav")


def test_log_mel_equals_librosa_and_shapes():
    import librosa

    audio = synthesize("put the red cup on the table")
    cfg = MelConfig()
    X = log_mel(audio, cfg)
    assert X.shape == (frames(len(audio), cfg), 80) and X.dtype == np.float32
    ref = librosa.feature.melspectrogram(y=audio, sr=SAMPLE_RATE, n_fft=1024, hop_length=256, n_mels=80,
                                         fmax=8000.0, power=2.0)
    assert np.allclose(np.exp(X.T), np.maximum(ref, 1e-10), rtol=1e-3, atol=1e-6 * ref.max())
    small = MelConfig(n_fft=512, hop_length=128, n_mels=40)
    assert log_mel(audio, small).shape == (1 + len(audio) // 128, 40)
    Z = normalize(X)
    assert np.allclose(Z.mean(0), 0, atol=1e-4) and np.allclose(Z.std(0), 1, atol=1e-2)
    assert np.array_equal(features(audio, cfg), Z)
    for bad in (np.zeros(0), np.zeros((3, 3)), np.array([np.nan, 0.0])):
        with pytest.raises(ValueError, match="audio"):
            log_mel(bad)
    with pytest.raises(ValueError, match="fmax"):
        MelConfig(fmax=20000.0)
