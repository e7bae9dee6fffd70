r"""From a log-mel spectrogram back to a waveform with Griffin-Lim (Griffin and Lim, 1984, "Signal
estimation from modified short-time Fourier transform"), with librosa's implementation
(``librosa.feature.inverse.mel_to_audio``), and WAV files written atomically.

The mel power P = exp(X) (X: ``seqlab.tasks.audio.log_mel``) is first taken back to a linear
magnitude |S^| with the pseudo-inverse of the filter bank M (librosa: non-negative least
squares, ``mel_to_stft``), then Griffin-Lim looks for a signal whose STFT has that magnitude,
alternating projections from a random phase (librosa's "fast" momentum variant, Perraudin et al.
2013):

    S^(i)  = |S^| exp(j angle(STFT(s^(i-1))))
    s^(i)  = ISTFT(S^(i))                                i = 1 .. n_iter

The waveform has (T - 1) hop samples at 22,050 Hz (T frames, centred as ``log_mel``'s) and
peaks scaled to 0.9 (the spectrogram's level is the one it was trained on; the scaling only
keeps a loud one from clipping in 16-bit PCM).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from seqlab.validation import check_int, fail


def griffin_lim(log_mel: np.ndarray, config=None, n_iter: int = 32, seed: int = 0) -> np.ndarray:
    """A waveform (N,) float32 at the config's rate (22,050 Hz), N = (T - 1) hop_length, from a
    log-mel spectrogram (T, n_mels) in natural log of the mel power."""
    import librosa

    from seqlab.tasks.audio import MelConfig

    config = MelConfig() if config is None else config
    x = np.asarray(log_mel, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] != config.n_mels:
        fail("log-mel spectrogram", f"a (frames >= 2, {config.n_mels}) array", f"shape {x.shape}")
    if not np.isfinite(x).all():
        fail("log-mel spectrogram", "finite values", "NaN or infinite values")
    check_int(n_iter, "n_iter", minimum=1, maximum=1000)
    length = (x.shape[0] - 1) * config.hop_length
    # P = exp(X), (n_mels, T); |S^| by NNLS through M, then n_iter Griffin-Lim iterations
    # |S^| from P = exp(X) through M (NNLS; the same filter bank as log_mel)     (n_fft // 2 + 1, T)
    magnitude = librosa.feature.inverse.mel_to_stft(
        np.exp(x.T.astype(np.float64)), sr=config.sample_rate, n_fft=config.n_fft, power=2.0,
        fmin=config.fmin, fmax=config.fmax)
    # n_iter Griffin-Lim iterations from a seeded random phase                    (N,)
    audio = librosa.griffinlim(magnitude, n_iter=n_iter, hop_length=config.hop_length, window="hann", center=True,
                               pad_mode="constant", length=length, random_state=np.random.RandomState(seed))
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0.9:
        audio = audio * (0.9 / peak)
    return audio.astype(np.float32)


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = 22050) -> Path:
    """``audio`` (N,) in [-1, 1] as a 16-bit PCM WAV file, written atomically (a temporary file in
    the same folder, then renamed over ``path``)."""
    import io

    import soundfile as sf

    from seqlab.training.io import atomic_write_bytes

    a = np.asarray(audio, dtype=np.float32)
    if a.ndim != 1 or a.size == 0:
        fail("audio", "a non-empty 1-D array of samples", f"shape {a.shape}")
    buf = io.BytesIO()
    sf.write(buf, np.clip(a, -1, 1), sample_rate, subtype="PCM_16", format="WAV")
    return atomic_write_bytes(path, buf.getvalue())


__all__ = ["griffin_lim", "write_wav"]
