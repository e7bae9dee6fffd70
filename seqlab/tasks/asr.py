r"""Speech recognition: a convolutional front end, a bidirectional recurrent encoder written
with seqlab's own GRU/LSTM, a character output layer and the CTC loss.

Lecture, applications of recurrent networks: "Speech recognition." The input is a sequence of
log-mel frames x_1..x_T (``seqlab.tasks.audio``), the output a sequence of characters
l = (l_1..l_U), much shorter and not aligned with the frames.

The model (``ASRModel``, shapes batch first):

    h^(0) = relu(conv_2(relu(conv_1(x))))       conv_1 strides ``stride`` frames: T' = ceil(T / stride)   (B, T', C)
    a^->_t = RNN_fwd(h_t, a^->_{t-1})           t = 1 .. T'_b   (seqlab.recurrent GRU or LSTM)        (B, T', H)
    a^<-_t = RNN_bwd(h_t, a^<-_{t+1})           t = T'_b .. 1   (the same, on the reversed frames)     (B, T', H)
    h^(l)_t = [a^->_t ; a^<-_t]                 per layer l = 1 .. L (each layer reads the one below)  (B, T', 2H)
    y_t = softmax(w^(o) . h^(L)_t + b^(o))       over the characters and the blank "-"                 (B, T', V)

CTC (Graves, Fernandez, Gomez and Schmidhuber, 2006, "Connectionist Temporal
Classification"). A path pi = (pi_1..pi_T') is one symbol (character or blank) per frame; the
map B removes repeated symbols, then blanks (B("-hh-e-ll-ll-oo") = "hello"). With the frames
independent given x,

    p(pi | x) = prod_t y_t[pi_t]
    p(l | x)  = sum_{pi in B^-1(l)} p(pi | x)
    C_CTC     = -ln p(l | x)

summed over the paths by the forward variables alpha over l' (l with blanks between its
characters and at both ends, |l'| = 2U + 1):

    alpha_1(1) = y_1[-],  alpha_1(2) = y_1[l_1]
    alpha_t(s) = (alpha_{t-1}(s) + alpha_{t-1}(s-1)) y_t[l'_s]                        if l'_s = - or l'_s = l'_{s-2}
    alpha_t(s) = (alpha_{t-1}(s) + alpha_{t-1}(s-1) + alpha_{t-1}(s-2)) y_t[l'_s]     otherwise
    p(l | x)   = alpha_T'(|l'|) + alpha_T'(|l'| - 1)

(``torch.nn.functional.ctc_loss`` computes this recursion and its gradient; the loss of a batch
is the mean over the utterances of C_CTC / U.)

Decoding:

- greedy (``greedy_decode``): pi*_t = argmax_k y_t[k], then B(pi*) (collapse repeats, drop
  blanks). The most probable *path*, not the most probable *labelling*.
- prefix beam search (``prefix_beam_search``, Graves 2006 section 3.2; with a language model
  as in Hannun et al. 2014, "First-pass large vocabulary continuous speech recognition using
  bi-directional recurrent DNNs"): for each prefix l keep p_b(l) (paths so far that map to l
  and end in a blank) and p_nb(l) (that end in l's last character); a frame extends l by a
  character c with y_t[c] (from p_b(l) only when c repeats l's last character), keeps l with a
  blank or a repeat of its last character; the ``beam`` most probable prefixes survive each
  frame, scored by

      score(l) = ln(p_b(l) + p_nb(l)) + alpha ln P_LM(l) + beta |l|

  P_LM: an optional character n-gram model (``CharNGramLM``, fitted on the training
  transcripts, Witten-Bell interpolation), its weight alpha (shallow fusion) and the
  insertion bonus beta per character (which offsets the LM's cost of every character).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqlab.recurrent.gru import GRU, GRUConfig
from seqlab.recurrent.lstm import LSTM, LSTMConfig
from seqlab.validation import check_choice, check_float, check_int, check_tensor, fail, fields_from_dict

BLANK = "<blank>"
CELLS = ("gru", "lstm")


@dataclass(frozen=True)
class ASRConfig:
    """A CTC speech recogniser.

    Attributes:
        vocab_size: characters + 1 (the blank, last id); set from the data
        n_mels: mel bands of the features (seqlab.tasks.audio)
        n_fft: FFT window of the features in samples (at 22,050 Hz)
        hop_length: samples between feature frames
        conv_channels: channels C of the two convolutions of the front end
        kernel_size: width of each convolution in frames (odd)
        stride: frames the first convolution strides (the encoder runs at 1/stride of the frame rate)
        hidden_size: hidden units H of each direction of each recurrent layer
        num_layers: bidirectional recurrent layers
        cell: gru or lstm (seqlab.recurrent's own, the lecture's equations)
        dropout: dropout between the layers in training
    """

    vocab_size: int = 29
    n_mels: int = 80
    n_fft: int = 1024
    hop_length: int = 256
    conv_channels: int = 192
    kernel_size: int = 5
    stride: int = 2
    hidden_size: int = 160
    num_layers: int = 2
    cell: str = "gru"
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_int(self.vocab_size, "vocab_size", minimum=2)
        check_int(self.n_mels, "n_mels", minimum=1, maximum=512)
        check_int(self.n_fft, "n_fft", minimum=16, maximum=16384)
        check_int(self.hop_length, "hop_length", minimum=1, maximum=self.n_fft)
        check_int(self.conv_channels, "conv_channels", minimum=1)
        check_int(self.kernel_size, "kernel_size", minimum=1, maximum=31)
        if self.kernel_size % 2 == 0:
            fail("kernel_size", "an odd width (the convolution is centred)", self.kernel_size)
        check_int(self.stride, "stride", minimum=1, maximum=8)
        check_int(self.hidden_size, "hidden_size", minimum=1)
        check_int(self.num_layers, "num_layers", minimum=1, maximum=8)
        check_choice(self.cell, "cell", CELLS)
        check_float(self.dropout, "dropout", minimum=0.0, maximum=1.0, open_max=True)

    @property
    def blank(self) -> int:
        return self.vocab_size - 1

    def mel(self):
        from seqlab.tasks.audio import MelConfig

        return MelConfig(n_fft=self.n_fft, hop_length=self.hop_length, n_mels=self.n_mels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ASRConfig":
        return cls(**fields_from_dict(cls, d, "asr config"))


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each item's first lengths[b] steps in reverse order, the padding left where it is: (B, T, D)."""
    B, T = x.shape[:2]
    t = torch.arange(T, device=x.device)[None, :]  # (1, T)
    n = lengths.to(x.device)[:, None]  # (B, 1)
    idx = torch.where(t < n, n - 1 - t, t)  # (B, T)
    return x.gather(1, idx[:, :, None].expand(-1, -1, x.shape[2]))


def _mask(lengths: torch.Tensor, T: int, like: torch.Tensor) -> torch.Tensor:
    """1.0 at each item's first lengths[b] steps, 0.0 after: (B, T)."""
    return (torch.arange(T)[None, :] < lengths[:, None]).to(like.device, like.dtype)


class BiRecurrent(nn.Module):
    """One bidirectional layer of seqlab's GRU or LSTM: (B, T, I) -> (B, T, 2H),
    h_t = [a^->_t ; a^<-_t]."""

    def __init__(self, cell: str, input_size: int, hidden_size: int) -> None:
        super().__init__()
        make = (lambda: GRU(GRUConfig(input_size, hidden_size))) if cell == "gru" else (
            lambda: LSTM(LSTMConfig(input_size, hidden_size)))
        self.fwd, self.bwd = make(), make()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # a^->_t = RNN_fwd(h_t, a^->_{t-1}),  t = 1 .. T_b                     (B, T, H)
        forward, _ = self.fwd(x, lengths)
        # a^<-_t = RNN_bwd(h_t, a^<-_{t+1}),  t = T_b .. 1: the forward RNN on the reversed frames
        backward, _ = self.bwd(reverse_padded(x, lengths), lengths)
        # h_t = [a^->_t ; a^<-_t]                                                (B, T, 2H)
        return torch.cat([forward, reverse_padded(backward, lengths)], dim=-1)


class ASRModel(nn.Module):
    """``forward(x, lengths) -> (log_probs (B, T', V), out_lengths (B,))``; ``loss(batch)``:
    the CTC loss of a batch ``(x, x_lengths, y, y_lengths)``."""

    family = "asr"

    def __init__(self, config: ASRConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = ASRConfig(**kwargs)
        elif not isinstance(config, ASRConfig) or kwargs:
            fail("config", "an ASRConfig (or keyword arguments)", type(config).__name__)
        self.config = c = config
        p = c.kernel_size // 2
        self.conv_1 = nn.Conv1d(c.n_mels, c.conv_channels, c.kernel_size, stride=c.stride, padding=p)
        self.conv_2 = nn.Conv1d(c.conv_channels, c.conv_channels, c.kernel_size, padding=p)
        sizes = [c.conv_channels] + [2 * c.hidden_size] * (c.num_layers - 1)
        self.layers = nn.ModuleList(BiRecurrent(c.cell, i, c.hidden_size) for i in sizes)
        self.w_o = nn.Linear(2 * c.hidden_size, c.vocab_size)  # w^(o), b^(o)

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """T'_b = floor((T_b + 2 p - k) / stride) + 1: the encoder's frames per item."""
        k, s = self.config.kernel_size, self.config.stride
        return torch.div(lengths + 2 * (k // 2) - k, s, rounding_mode="floor") + 1

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        check_tensor(x, "features", ndim=3, dims="(batch, frames, n_mels)", floating=True, finite=True)
        B, T, D = x.shape
        if D != c.n_mels:
            fail("features", f"{c.n_mels} mel bands (the model's n_mels)", f"{D} in shape {tuple(x.shape)}")
        if T < 1 or B < 1:
            fail("features", "at least one utterance of at least one frame", f"shape {tuple(x.shape)}")
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long)
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        if lengths.shape != (B,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
            fail("lengths", f"{B} frame counts in [1, {T}]", lengths.tolist())
        n = self.out_lengths(lengths)  # (B,)
        # frames past an item's length are zeroed before each convolution, as the convolution's own
        # zero padding would be: an utterance gives the same outputs alone and in a padded batch
        x = x * _mask(lengths, T, x)[:, :, None]
        # h^(0) = relu(conv_2(relu(conv_1(x))))                                 (B, C, T')
        h = F.relu(self.conv_1(x.transpose(1, 2)))
        h = h * _mask(n, h.shape[2], h)[:, None, :]
        h = F.relu(self.conv_2(h))
        h = h.transpose(1, 2)  # (B, T', C)
        for i, layer in enumerate(self.layers):
            if i > 0 and c.dropout > 0:
                h = F.dropout(h, c.dropout, training=self.training)
            # h^(l)_t = [a^->_t ; a^<-_t]                                        (B, T', 2H)
            h = layer(h, n)
        # y_t = softmax(w^(o) . h_t + b^(o)), as log probabilities                (B, T', V)
        return F.log_softmax(self.w_o(h).float(), dim=-1), n

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """C_CTC = -ln p(l | x), divided by |l| and averaged over the batch."""
        x, x_lengths, y, y_lengths = batch
        log_probs, n = self(x, x_lengths)  # (B, T', V), (B,)
        loss, short = ctc_loss(log_probs, n, y, y_lengths, self.config.blank)
        return loss, {"utterances": int(x.shape[0]), "too_short": short}


def ctc_loss(log_probs: torch.Tensor, n: torch.Tensor, y: torch.Tensor, y_lengths: torch.Tensor,
             blank: int) -> tuple[torch.Tensor, int]:
    """C_CTC = -ln p(l | x) of log_probs (B, T', V) with n valid frames each and the targets y
    (B, U) of y_lengths, divided by |l| and averaged over the batch (``F.ctc_loss``); and how many
    targets are longer than their frames (their loss is zeroed: no path exists)."""
    # torch's CTC takes (T', B, V)
    loss = F.ctc_loss(log_probs.transpose(0, 1), y, n, y_lengths.cpu(), blank=blank, reduction="mean",
                      zero_infinity=True)
    return loss, int((n < y_lengths.cpu()).sum())


# --------------------------------------------------------------------------- decoding


def collapse(path: Sequence[int], blank: int) -> list[int]:
    """B(pi): repeated symbols merged, then blanks removed."""
    out, prev = [], None
    for k in path:
        if k != prev and k != blank:
            out.append(int(k))
        prev = k
    return out


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor | None, blank: int) -> list[list[int]]:
    """pi*_t = argmax_k y_t[k] for each item's frames, then B(pi*): (B, T', V) -> B id lists."""
    check_tensor(log_probs, "log_probs", ndim=3, dims="(batch, frames, symbols)")
    B, T, _ = log_probs.shape
    lengths = torch.full((B,), T) if lengths is None else lengths
    best = log_probs.argmax(-1).cpu()  # (B, T')
    return [collapse(best[b, : int(lengths[b])].tolist(), blank) for b in range(B)]


class CharNGramLM:
    """A character n-gram model of transcripts with Witten-Bell interpolation,

        P(c | h) = (C(h c) + N1+(h .) P(c | h')) / (C(h) + N1+(h .))

    h the n - 1 characters before c (padded with "^" at the start), h' h without its first
    character, down to the uniform distribution over the characters and the end "$";
    N1+(h .) the number of distinct characters seen after h."""

    START, END = "^", "$"

    def __init__(self, texts: Sequence[str], order: int = 5) -> None:
        check_int(order, "lm order", minimum=1, maximum=12)
        texts = [t for t in texts if t]
        if not texts:
            fail("lm texts", "at least one non-empty transcript", "none")
        self.order = order
        self.symbols = sorted(set("".join(texts))) + [self.END]
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for text in texts:
            padded = self.START * (order - 1) + text + self.END
            for i in range(order - 1, len(padded)):
                for k in range(order):  # the contexts of lengths 0 .. n-1
                    self.counts[padded[i - k:i]][padded[i]] += 1
        self.totals = {h: sum(d.values()) for h, d in self.counts.items()}
        self._cache: dict[tuple[str, str], float] = {}

    def _prob(self, h: str, c: str) -> float:
        p = 1.0 / len(self.symbols)  # the uniform distribution at the bottom
        for k in range(0, len(h) + 1):  # from the empty context up to h
            ctx = h[len(h) - k:]
            seen = self.counts.get(ctx)
            if seen is None:
                break
            n1 = len(seen)
            # P(c | h) = (C(h c) + N1+(h .) P(c | h')) / (C(h) + N1+(h .))
            p = (seen.get(c, 0) + n1 * p) / (self.totals[ctx] + n1)
        return p

    def logprob(self, prefix: str, c: str) -> float:
        """ln P(c | the last n-1 characters of ``prefix``); ``c`` may be ``END``."""
        h = (self.START * (self.order - 1) + prefix)[-(self.order - 1):] if self.order > 1 else ""
        key = (h, c)
        v = self._cache.get(key)
        if v is None:
            v = self._cache[key] = math.log(self._prob(h, c))
        return v

    def score(self, text: str) -> float:
        """ln P_LM(text $)."""
        return sum(self.logprob(text[:i], c) for i, c in enumerate(text + self.END))


def _lse(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


def prefix_beam_search(log_probs: np.ndarray | torch.Tensor, chars: str, blank: int, *, beam: int = 8,
                       lm: CharNGramLM | None = None, alpha: float = 0.5, beta: float = 0.0,
                       prune: float = 1e-3) -> str:
    """The most probable labelling of one utterance's (T', V) log probabilities by prefix beam
    search (see the module docstring); ``chars[k]`` is the character of id k (k != blank).
    ``lm``, ``alpha``, ``beta``: shallow fusion of a character LM and the insertion bonus; at the
    end the LM also scores the end of the sentence. ``prune``: characters whose y_t is below it
    are not tried at frame t (the blank and the frame's best are always kept)."""
    lp = log_probs.detach().cpu().double().numpy() if isinstance(log_probs, torch.Tensor) else np.asarray(
        log_probs, dtype=np.float64)
    if lp.ndim != 2:
        fail("log_probs", "a (frames, symbols) array", f"shape {lp.shape}")
    check_int(beam, "beam", minimum=1, maximum=1024)
    V = lp.shape[1]
    if len(chars) != V - 1 or not 0 <= blank < V:
        fail("chars", f"{V - 1} characters and a blank in [0, {V - 1}]", f"{len(chars)} characters, blank {blank}")
    sym = {k: chars[k if k < blank else k - 1] for k in range(V) if k != blank}
    use_lm = lm is not None and alpha != 0
    # each beam: prefix -> [ln p_b, ln p_nb, alpha ln P_LM(prefix)]
    beams: dict[str, list[float]] = {"": [0.0, -math.inf, 0.0]}
    log_prune = math.log(prune)
    for t in range(lp.shape[0]):
        row = lp[t]
        cands = [k for k in np.flatnonzero(row >= log_prune).tolist() if k != blank]
        top = int(row.argmax())
        if top != blank and top not in cands:
            cands.append(top)
        nxt: dict[str, list[float]] = {}

        def entry(prefix: str, lm_score: float) -> list[float]:
            e = nxt.get(prefix)
            if e is None:
                e = nxt[prefix] = [-math.inf, -math.inf, lm_score]
            return e

        for prefix, (pb, pnb, lms) in beams.items():
            total = _lse(pb, pnb)
            # keep l with a blank: p_b(l) += (p_b(l) + p_nb(l)) y_t[-]
            e = entry(prefix, lms)
            e[0] = _lse(e[0], total + row[blank])
            last = prefix[-1] if prefix else None
            for k in cands:
                c, y = sym[k], row[k]
                if c == last:
                    # a repeat of l's last character keeps l: p_nb(l) += p_nb(l) y_t[c]
                    e[1] = _lse(e[1], pnb + y)
                new = prefix + c
                new_lms = lms + alpha * lm.logprob(prefix, c) if use_lm else 0.0
                n = entry(new, new_lms)
                # extend l by c: p_nb(l c) += (p_b(l) if c repeats l's last character else p_b + p_nb) y_t[c]
                n[1] = _lse(n[1], (pb if c == last else total) + y)

        def score(item) -> float:
            prefix, (pb, pnb, lms) = item
            # score(l) = ln(p_b + p_nb) + alpha ln P_LM(l) + beta |l|
            return _lse(pb, pnb) + lms + beta * len(prefix)

        beams = dict(sorted(nxt.items(), key=score, reverse=True)[:beam])

    def final(item) -> float:
        prefix, (pb, pnb, lms) = item
        end = alpha * lm.logprob(prefix, lm.END) if use_lm else 0.0
        return _lse(pb, pnb) + lms + end + beta * len(prefix)

    return max(beams.items(), key=final)[0]


# --------------------------------------------------------------------------- data


class SpeechData:
    """Features and character ids of a ``SpeechCorpus`` (``seqlab.data.speech``), for the
    trainer: ``get_batch(split, B, generator) -> (x (B, T, n_mels), x_lengths (B,), y (B, U),
    y_lengths (B,))``, zero-padded. The features are computed once, here (log-mel, normalised
    per utterance: ``seqlab.tasks.audio.features``)."""

    def __init__(self, corpus, tokenizer, mel, splits: Sequence[str] = ("train", "val", "test")) -> None:
        from seqlab.tasks.audio import features

        self.corpus, self.tokenizer, self.mel = corpus, tokenizer, mel
        self.items: dict[str, list[tuple[torch.Tensor, list[int], str]]] = {}
        for split in splits:
            rows = []
            for u in corpus.split(split):
                x = torch.from_numpy(features(u.audio(), mel))  # (T, n_mels)
                rows.append((x, tokenizer.encode(u.text), u.text))
            self.items[split] = rows
        for split in ("train", "val"):
            if split in self.items and not self.items[split]:
                fail("speech corpus", "at least one train and one val utterance", f"no {split} utterance")

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None):
        rows = self.items[check_choice(split, "split", tuple(self.items))]
        check_int(batch_size, "batch_size", minimum=1)
        ix = torch.randint(len(rows), (batch_size,), generator=generator).tolist()
        return collate([rows[i] for i in ix])


def collate(rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features (T_b, D), ids, ...) rows -> zero-padded (x (B, T, D), x_lengths, y (B, U), y_lengths)."""
    T = max(r[0].shape[0] for r in rows)
    U = max(max(len(r[1]) for r in rows), 1)
    x = torch.zeros(len(rows), T, rows[0][0].shape[1])
    y = torch.zeros(len(rows), U, dtype=torch.long)
    for b, r in enumerate(rows):
        x[b, : r[0].shape[0]] = r[0]
        y[b, : len(r[1])] = torch.tensor(r[1], dtype=torch.long)
    return (x, torch.tensor([r[0].shape[0] for r in rows]), y, torch.tensor([len(r[1]) for r in rows]))


def speech_tokenizer(texts: Sequence[str]):
    """The characters of ``texts`` (sorted) and the blank, last: a CharTokenizer."""
    from seqlab.llm.tokenizers import CharTokenizer

    return CharTokenizer(sorted(set("".join(texts))), special_tokens=[BLANK])


@torch.no_grad()
def decode(model: ASRModel, tokenizer, features: Sequence[torch.Tensor], *, beam: int = 0,
           lm: CharNGramLM | None = None, alpha: float = 0.5, beta: float = 0.0, batch_size: int = 32) -> list[str]:
    """Transcripts of feature arrays ((T, n_mels) each): greedy with ``beam=0``, else prefix beam
    search of that width (with ``lm``, shallow fusion weight ``alpha`` and bonus ``beta``)."""
    model.eval()
    chars, blank = tokenizer.chars, model.config.blank
    out: list[str] = []
    device = next(model.parameters()).device
    for s in range(0, len(features), batch_size):
        rows = [(f, [], "") for f in features[s:s + batch_size]]
        x, n, _, _ = collate(rows)
        log_probs, m = model(x.to(device), n)  # (B, T', V)
        if beam == 0:
            out += ["".join(chars[k] for k in ids) for ids in greedy_decode(log_probs, m, blank)]
        else:
            out += [prefix_beam_search(log_probs[b, : int(m[b])], chars, blank, beam=beam, lm=lm, alpha=alpha,
                                       beta=beta) for b in range(len(rows))]
    return out


# --------------------------------------------------------------------------- metrics


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Corpus WER and CER with jiwer: (substitutions + deletions + insertions) / reference
    words (characters, spaces included), summed over the utterances."""
    import jiwer

    if len(references) != len(hypotheses) or not references:
        fail("hypotheses", f"one per reference ({len(references)}, at least one)", len(hypotheses))
    if any(not r.strip() for r in references):
        fail("references", "non-empty transcripts", "an empty one")
    return {"wer": float(jiwer.wer(list(references), list(hypotheses))),
            "cer": float(jiwer.cer(list(references), list(hypotheses)))}


__all__ = ["ASRConfig", "ASRModel", "BLANK", "BiRecurrent", "CharNGramLM", "SpeechData", "collapse", "collate",
           "decode", "error_rates", "greedy_decode", "prefix_beam_search", "reverse_padded", "speech_tokenizer"]
