r"""Text to speech: characters to a log-mel spectrogram with a duration model (FastSpeech style:
Ren, Ruan, Tan, Qin, Zhao, Zhao and Liu, 2019, "FastSpeech: Fast, Robust and Controllable Text
to Speech"), the durations taken from the CTC alignments of the speech recogniser
(``seqlab.tasks.asr``), and Griffin-Lim back to a waveform (``seqlab.tasks.tts_audio``).

Lecture, applications of recurrent networks: "Text to speech." The input is a sequence of
characters c_1..c_U, the output a sequence of log-mel frames X_1..X_T (``seqlab.tasks.audio``:
22,050 Hz, hop 256, 80 bands), T much longer than U (about 6 frames a character).

The model (``TTSModel``, shapes batch first):

    e_u = E[c_u]                                   a character embedding                          (B, U, D_e)
    g_u = relu(conv(e)_u)                          kernel ``kernel_size`` over the characters      (B, U, D_e)
    h_u = [GRU_fwd(g)_u ; GRU_bwd(g)_u]            seqlab's own GRU, both directions               (B, U, 2H)
    ln(1 + d^_u) = w_d . relu(conv_d(h)_u) + b_d   the duration predictor (frames of character u)  (B, U)

The length regulator repeats each encoder state for its duration d_u (the aligned durations in
training, round(d^_u) at inference) and adds where in its character each frame lies:

    z_t = [h_{u(t)} ; (t - s_{u(t)} + 1/2) / d_{u(t)}]    s_u = d_1 + .. + d_{u-1},  u(t): s_u <= t < s_u + d_u
                                                                                                  (B, T, 2H + 1)

and the decoder, residual dilated convolutions over the frames (WaveNet-style dilations: the
receptive field of L layers of kernel k is 1 + (k - 1) sum_l dil_l frames):

    a^(0)_t = W_in z_t
    a^(l)   = a^(l-1) + conv_l(relu(LN(a^(l-1))))      dilation dil_l = 2^((l-1) mod 3)        (B, T, C)
    Y^_t    = W_out relu(LN(a^(L)_t)) + b_out           normalised log-mel frame                  (B, T, n_mels)

The target is the log-mel of eSpeak NG's audio, floored at ``MEL_FLOOR`` (ln 1e-5, silence),
normalised per band by the training set's mean mu and standard deviation sigma (buffers of
the model, saved with its weights): Y_t = (X_t - mu) / sigma. The loss:

    C = (1 / (T n_mels)) sum_t sum_j |Y^_tj - Y_tj|  +  (1 / U) sum_u (ln(1 + d^_u) - ln(1 + d_u))^2

(L1 on the frames as in FastSpeech 2's mel loss; the durations in the log domain as in FastSpeech.)

Durations from CTC (``ctc_forced_align``, ``char_durations``). The recogniser gives y_t[k] at
each encoder frame t (every ``stride``-th feature frame). The Viterbi path over l' (the
transcript with blanks between its characters and at both ends, as in the CTC loss),

    delta_1(1) = ln y_1[-],  delta_1(2) = ln y_1[l_1]
    delta_t(s) = ln y_t[l'_s] + max(delta_{t-1}(s), delta_{t-1}(s-1),
                                    delta_{t-1}(s-2) if l'_s != - and l'_s != l'_{s-2})
    path end: argmax(delta_T'(|l'|), delta_T'(|l'| - 1)), then back-pointers,

visits every character at least once in order. Each frame goes to a character: its own at a
character state, the one before at a blank (the blanks before the first character: the first),
giving c_u encoder frames per character; in feature frames the character u ends at
min(stride (c_1 + .. + c_u), T) and the last one at T, so the durations sum to T.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqlab.tasks.asr import BiRecurrent
from seqlab.validation import check_float, check_int, check_tensor, fail, fields_from_dict

MEL_FLOOR = math.log(1e-5)  # ln of the mel power below which frames count as silence


@dataclass(frozen=True)
class TTSConfig:
    """A duration-model synthesiser (characters -> log-mel frames).

    Attributes:
        vocab_size: characters of the text (set from the data)
        n_mels: mel bands of the spectrogram (seqlab.tasks.audio)
        n_fft: FFT window of the spectrogram in samples (at 22,050 Hz)
        hop_length: samples between spectrogram frames
        embed_size: size D_e of the character embedding
        hidden_size: hidden units H of each direction of the bidirectional GRU encoder
        channels: channels C of the decoder's convolutions
        decoder_layers: residual convolution layers L of the decoder
        kernel_size: width of the convolutions (odd)
        dropout: dropout in the decoder in training
    """

    vocab_size: int = 25
    n_mels: int = 80
    n_fft: int = 1024
    hop_length: int = 256
    embed_size: int = 128
    hidden_size: int = 128
    channels: int = 192
    decoder_layers: int = 6
    kernel_size: int = 5
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_int(self.vocab_size, "vocab_size", minimum=1)
        check_int(self.n_mels, "n_mels", minimum=1, maximum=512)
        check_int(self.n_fft, "n_fft", minimum=16, maximum=16384)
        check_int(self.hop_length, "hop_length", minimum=1, maximum=self.n_fft)
        for name in ("embed_size", "hidden_size", "channels"):
            check_int(getattr(self, name), name, minimum=1)
        check_int(self.decoder_layers, "decoder_layers", minimum=1, maximum=32)
        check_int(self.kernel_size, "kernel_size", minimum=1, maximum=31)
        if self.kernel_size % 2 == 0:
            fail("kernel_size", "an odd width (the convolution is centred)", self.kernel_size)
        check_float(self.dropout, "dropout", minimum=0.0, maximum=1.0, open_max=True)

    def mel(self):
        from seqlab.tasks.audio import MelConfig

        return MelConfig(n_fft=self.n_fft, hop_length=self.hop_length, n_mels=self.n_mels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TTSConfig":
        return cls(**fields_from_dict(cls, d, "tts config"))


def _mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """1.0 at each item's first lengths[b] steps, 0.0 after: (B, T)."""
    return (torch.arange(T)[None, :] < lengths.cpu()[:, None]).float()


def length_regulate(h: torch.Tensor, durations: torch.Tensor, lengths: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each state h_u repeated d_u times, with the position (t - s_u + 1/2) / d_u of each frame in
    its character appended: h (B, U, D), durations (B, U) non-negative integers (0 past an item's
    length) -> (z (B, T, D + 1) zero-padded, frame counts (B,)), T the longest item's sum of d."""
    check_tensor(h, "encoder states", ndim=3, dims="(batch, characters, size)")
    B, U, D = h.shape
    d = torch.as_tensor(durations).long().cpu()
    if d.shape != (B, U) or int(d.min()) < 0:
        fail("durations", f"non-negative integers of shape {(B, U)}", f"shape {tuple(d.shape)}")
    if lengths is not None:
        d = d * (torch.arange(U)[None, :] < torch.as_tensor(lengths).cpu()[:, None]).long()
    n = d.sum(1)  # (B,)
    T = max(int(n.max()), 1)
    z = h.new_zeros(B, T, D + 1)
    for b in range(B):
        if int(n[b]) == 0:
            continue
        # z_t = [h_{u(t)} ; (t - s_{u(t)} + 1/2) / d_{u(t)}]
        idx = torch.repeat_interleave(torch.arange(U), d[b])  # u(t)       (T_b,)
        start = torch.cumsum(d[b], 0) - d[b]  # s_u                            (U,)
        pos = (torch.arange(len(idx)) - start[idx] + 0.5) / d[b][idx]
        z[b, : len(idx), :D] = h[b, idx.to(h.device)]
        z[b, : len(idx), D] = pos.to(h.dtype).to(h.device)
    return z, n


class TTSModel(nn.Module):
    """``forward(chars, lengths, durations=None) -> (Y^ (B, T, n_mels) normalised, frame counts
    (B,), ln(1 + d^) (B, U))``; ``loss(batch)`` on ``(chars, lengths, durations, Y, frames)``;
    ``synthesize(ids) -> log-mel X (T, n_mels)``."""

    family = "tts"

    def __init__(self, config: TTSConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = TTSConfig(**kwargs)
        elif not isinstance(config, TTSConfig) or kwargs:
            fail("config", "a TTSConfig (or keyword arguments)", type(config).__name__)
        self.config = c = config
        p = c.kernel_size // 2
        self.embed = nn.Embedding(c.vocab_size, c.embed_size)  # E
        self.conv = nn.Conv1d(c.embed_size, c.embed_size, c.kernel_size, padding=p)
        self.encoder = BiRecurrent("gru", c.embed_size, c.hidden_size)
        self.dur_conv = nn.Conv1d(2 * c.hidden_size, c.hidden_size, 3, padding=1)  # conv_d
        self.dur_out = nn.Linear(c.hidden_size, 1)  # w_d, b_d
        self.w_in = nn.Linear(2 * c.hidden_size + 1, c.channels)
        self.dilations = [2 ** (i % 3) for i in range(c.decoder_layers)]
        self.norms = nn.ModuleList(nn.LayerNorm(c.channels) for _ in self.dilations)
        self.convs = nn.ModuleList(nn.Conv1d(c.channels, c.channels, c.kernel_size, padding=p * dil, dilation=dil)
                                   for dil in self.dilations)
        self.out_norm = nn.LayerNorm(c.channels)
        self.w_out = nn.Linear(c.channels, c.n_mels)
        # mu, sigma of the training set's log-mel frames per band (set from the data, saved with the weights)
        self.register_buffer("mel_mean", torch.zeros(c.n_mels))
        self.register_buffer("mel_std", torch.ones(c.n_mels))

    def set_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mel_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.mel_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3))

    def encode(self, chars: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, U, 2H) and the predicted ln(1 + d^) (B, U)."""
        c = self.config
        check_tensor(chars, "characters", ndim=2, dims="(batch, characters)")
        B, U = chars.shape
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        if lengths.shape != (B,) or int(lengths.min()) < 1 or int(lengths.max()) > U:
            fail("lengths", f"{B} character counts in [1, {U}]", lengths.tolist())
        if int(chars.min()) < 0 or int(chars.max()) >= c.vocab_size:
            fail("characters", f"ids in [0, {c.vocab_size - 1}]", f"ids in [{int(chars.min())}, {int(chars.max())}]")
        m = _mask(lengths, U).to(chars.device)  # (B, U)
        # e_u = E[c_u]; g_u = relu(conv(e)_u)                                    (B, U, D_e)
        e = self.embed(chars) * m[:, :, None]
        g = F.relu(self.conv(e.transpose(1, 2))).transpose(1, 2) * m[:, :, None]
        # h_u = [GRU_fwd(g)_u ; GRU_bwd(g)_u]                                    (B, U, 2H)
        h = self.encoder(g, lengths) * m[:, :, None]
        # ln(1 + d^_u) = w_d . relu(conv_d(h)_u) + b_d                           (B, U)
        log_d = self.dur_out(F.relu(self.dur_conv(h.transpose(1, 2))).transpose(1, 2)).squeeze(-1) * m
        return h, log_d

    def decode(self, z: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """The decoder: z (B, T, 2H + 1) -> Y^ (B, T, n_mels), frames past an item's length zeroed."""
        m = _mask(frames, z.shape[1]).to(z.device)[:, :, None]  # (B, T, 1)
        a = self.w_in(z) * m  # a^(0)                                              (B, T, C)
        for norm, conv in zip(self.norms, self.convs):
            # a^(l) = a^(l-1) + conv_l(relu(LN(a^(l-1))))
            u = F.relu(norm(a)) * m
            u = F.dropout(u, self.config.dropout, training=self.training)
            a = a + conv(u.transpose(1, 2)).transpose(1, 2) * m
        # Y^_t = W_out relu(LN(a^(L)_t)) + b_out                                  (B, T, n_mels)
        return self.w_out(F.relu(self.out_norm(a))) * m

    def forward(self, chars: torch.Tensor, lengths: torch.Tensor, durations: torch.Tensor | None = None,
                speed: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, log_d = self.encode(chars, lengths)
        if durations is None:
            # d_u = max(1, round((exp(ln(1 + d^_u)) - 1) / speed))
            durations = ((log_d.detach().exp() - 1) / speed).round().clamp_min(1).long()
        z, frames = length_regulate(h, durations, lengths)  # (B, T, 2H + 1), (B,)
        return self.decode(z, frames), frames, log_d

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """C = mean |Y^ - Y| over the frames and bands + mean (ln(1 + d^) - ln(1 + d))^2 over the characters."""
        chars, lengths, durations, target, frames = batch
        y, n, log_d = self(chars, lengths, durations)  # (B, T, n_mels), (B,), (B, U)
        m = _mask(frames, target.shape[1]).to(target.device)  # (B, T)
        y = y[:, : target.shape[1]]
        mel = ((y - target).abs().mean(-1) * m).sum() / m.sum()
        mu = _mask(lengths, chars.shape[1]).to(log_d.device)
        dur = (((log_d - torch.log1p(durations.float())) ** 2) * mu).sum() / mu.sum()
        return mel + dur, {"mel_l1": float(mel.detach()), "duration_mse": float(dur.detach())}

    def normalize(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Y = (max(X, MEL_FLOOR) - mu) / sigma."""
        return (log_mel.clamp_min(MEL_FLOOR) - self.mel_mean) / self.mel_std

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        """X^ = max(Y^ sigma + mu, MEL_FLOOR)."""
        return (y * self.mel_std + self.mel_mean).clamp_min(MEL_FLOOR)

    @torch.no_grad()
    def synthesize(self, ids: Sequence[int], durations: Sequence[int] | None = None, speed: float = 1.0
                   ) -> np.ndarray:
        """The log-mel spectrogram X^ (T, n_mels) of one character-id sequence; ``durations``:
        frames per character (none: the predicted ones)."""
        if len(ids) == 0:
            fail("text", "at least one character", "none")
        self.eval()
        device = self.mel_mean.device
        x = torch.tensor([list(ids)], dtype=torch.long, device=device)
        d = None if durations is None else torch.tensor([list(durations)], dtype=torch.long)
        y, n, _ = self(x, torch.tensor([len(ids)]), d, speed)
        return self.denormalize(y[0, : int(n[0])]).cpu().numpy()


# --------------------------------------------------------------------------- durations from CTC


def ctc_forced_align(log_probs: np.ndarray | torch.Tensor, labels: Sequence[int], blank: int) -> list[int]:
    """The Viterbi path of a transcript through CTC outputs: for each of the T' frames of
    ``log_probs`` (T', V), the state s of l' (l with blanks around its characters: even s a
    blank, odd s the character (s - 1) / 2). The most probable single path, not the sum."""
    lp = log_probs.detach().cpu().double().numpy() if isinstance(log_probs, torch.Tensor) else np.asarray(
        log_probs, dtype=np.float64)
    if lp.ndim != 2:
        fail("log_probs", "a (frames, symbols) array", f"shape {lp.shape}")
    U, Tn = len(labels), lp.shape[0]
    if U == 0:
        fail("labels", "at least one character", "none")
    ext = [blank]
    for k in labels:
        ext += [int(k), blank]
    S = len(ext)  # 2U + 1
    need = U + sum(1 for a, b in zip(labels, labels[1:]) if a == b)
    if Tn < need:
        fail("alignment", f"at least {need} encoder frames for {U} characters", f"{Tn} frames")
    ext_a = np.array(ext)
    skip = np.zeros(S, dtype=bool)  # the s-2 transition: l'_s a character unlike l'_{s-2}
    skip[2:] = (ext_a[2:] != blank) & (ext_a[2:] != ext_a[:-2])
    delta = np.full(S, -np.inf)
    delta[0], delta[1] = lp[0, blank], lp[0, ext[1]]
    back = np.zeros((Tn, S), dtype=np.int64)
    for t in range(1, Tn):
        # delta_t(s) = ln y_t[l'_s] + max(delta_{t-1}(s), delta_{t-1}(s-1), delta_{t-1}(s-2) if allowed)
        cand = np.stack([delta, np.r_[-np.inf, delta[:-1]], np.where(skip, np.r_[-np.inf, -np.inf, delta[:-2]],
                                                                     -np.inf)])  # (3, S)
        arg = cand.argmax(0)
        back[t] = np.arange(S) - arg
        delta = cand[arg, np.arange(S)] + lp[t, ext_a]
    s = S - 1 if S == 1 or delta[S - 1] >= delta[S - 2] else S - 2
    path = [s]
    for t in range(Tn - 1, 0, -1):
        s = int(back[t, s])
        path.append(s)
    return path[::-1]


def char_durations(path: Sequence[int], num_chars: int, frames: int, stride: int) -> np.ndarray:
    """Feature frames per character (U,) from a CTC state path at 1/``stride`` of the frame rate:
    a blank frame counts for the character before it (the leading blanks for the first), the
    ends scaled by ``stride`` and the last one put at ``frames``: the durations sum to ``frames``."""
    check_int(num_chars, "num_chars", minimum=1)
    check_int(stride, "stride", minimum=1)
    counts = np.zeros(num_chars, dtype=np.int64)
    for s in path:
        u = (s - 1) // 2 if s % 2 == 1 else max(s // 2 - 1, 0)
        counts[min(u, num_chars - 1)] += 1
    ends = np.minimum(np.cumsum(counts) * stride, frames)
    ends[-1] = frames
    return np.diff(np.r_[0, ends])


def uniform_durations(num_chars: int, frames: int) -> np.ndarray:
    """The frames spread evenly over the characters (the simple source without a recogniser):
    character u ends at round(frames (u + 1) / U)."""
    ends = np.round(frames * np.arange(1, num_chars + 1) / num_chars).astype(np.int64)
    return np.diff(np.r_[0, ends])


@torch.no_grad()
def asr_durations(asr_model, asr_tokenizer, texts: Sequence[str], feats: Sequence[torch.Tensor],
                  frames: Sequence[int], batch_size: int = 32) -> list[np.ndarray]:
    """Durations of each text in feature frames from the recogniser's CTC outputs on its audio:
    the forced alignment (``ctc_forced_align``) of the transcript, then ``char_durations``."""
    from seqlab.tasks.asr import collate

    asr_model.eval()
    out = []
    for s in range(0, len(texts), batch_size):
        rows = [(f, [], "") for f in feats[s:s + batch_size]]
        x, n, _, _ = collate(rows)
        log_probs, m = asr_model(x, n)  # (B, T', V)
        for b, text in enumerate(texts[s:s + batch_size]):
            ids = asr_tokenizer.encode(text)
            path = ctc_forced_align(log_probs[b, : int(m[b])], ids, asr_model.config.blank)
            out.append(char_durations(path, len(ids), int(frames[s + b]), asr_model.config.stride))
    return out


# --------------------------------------------------------------------------- data


class TTSData:
    """Character ids, durations and normalised log-mel targets for the trainer:
    ``get_batch(split, B, generator) -> (chars (B, U), lengths (B,), durations (B, U), Y (B, T,
    n_mels), frames (B,))``, zero-padded. ``items[split]``: (ids, durations, log-mel X (T, n_mels), text)."""

    def __init__(self, items: dict, mean: np.ndarray, std: np.ndarray) -> None:
        self.items = items
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.std = torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3)
        for split in ("train", "val"):
            if not items.get(split):
                fail("tts corpus", "at least one train and one val utterance", f"no {split} utterance")

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None):
        rows = self.items[split]
        check_int(batch_size, "batch_size", minimum=1)
        ix = torch.randint(len(rows), (batch_size,), generator=generator).tolist()
        return self.collate([rows[i] for i in ix])

    def collate(self, rows):
        U = max(len(r[0]) for r in rows)
        T = max(r[2].shape[0] for r in rows)
        B, M = len(rows), rows[0][2].shape[1]
        chars = torch.zeros(B, U, dtype=torch.long)
        durs = torch.zeros(B, U, dtype=torch.long)
        y = torch.zeros(B, T, M)
        for b, (ids, d, x, _) in enumerate(rows):
            chars[b, : len(ids)] = torch.tensor(ids)
            durs[b, : len(ids)] = torch.as_tensor(d)
            # Y = (max(X, MEL_FLOOR) - mu) / sigma
            y[b, : x.shape[0]] = (torch.as_tensor(x).clamp_min(MEL_FLOOR) - self.mean) / self.std
        return (chars, torch.tensor([len(r[0]) for r in rows]), durs, y,
                torch.tensor([r[2].shape[0] for r in rows]))

    @staticmethod
    def shard_batch(batch, rank: int, world_size: int):
        """Rank ``rank``'s share of a collated batch under torchrun (seqlab.training.distributed):
        its rows, re-padded to the share's own longest text and mel (what ``collate`` of those
        rows gives: the model expects the padding of the batch it is given)."""
        chars, lengths, durs, y, frames = batch
        share = chars.shape[0] // world_size
        rows = slice(rank * share, (rank + 1) * share)
        U, T = int(lengths[rows].max()), int(frames[rows].max())
        return chars[rows, :U], lengths[rows], durs[rows, :U], y[rows, :T], frames[rows]


def mel_stats(mels: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """mu, sigma per band of the floored log-mel frames of ``mels``."""
    x = np.concatenate([np.maximum(m, MEL_FLOOR) for m in mels], 0)
    return x.mean(0).astype(np.float32), x.std(0).astype(np.float32)


# --------------------------------------------------------------------------- metric


def mel_distance(ours: np.ndarray, reference: np.ndarray, align: str = "dtw") -> float:
    """Mean absolute difference of two floored log-mel spectrograms (T, n_mels), in nats per band
    and frame. ``align="dtw"``: along the dynamic-time-warping path of the frames (librosa's
    ``sequence.dtw``, Euclidean frame distance), averaged over the path's pairs; ``"equal"``:
    frame by frame, the lengths must agree."""
    a = np.maximum(np.asarray(ours, dtype=np.float64), MEL_FLOOR)
    b = np.maximum(np.asarray(reference, dtype=np.float64), MEL_FLOOR)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or not len(a) or not len(b):
        fail("spectrograms", "two (frames, bands) arrays with the same bands", f"shapes {a.shape} and {b.shape}")
    if align == "equal":
        if a.shape != b.shape:
            fail("spectrograms", "the same number of frames (align='equal')", f"{len(a)} and {len(b)}")
        return float(np.abs(a - b).mean())
    if align != "dtw":
        fail("align", "'dtw' or 'equal'", repr(align))
    import librosa

    _, wp = librosa.sequence.dtw(X=a.T, Y=b.T, metric="euclidean")
    return float(np.abs(a[wp[:, 0]] - b[wp[:, 1]]).mean())


__all__ = ["MEL_FLOOR", "TTSConfig", "TTSData", "TTSModel", "asr_durations", "char_durations", "ctc_forced_align",
           "length_regulate", "mel_distance", "mel_stats", "uniform_durations"]
