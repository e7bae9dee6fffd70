r"""Online handwriting recognition: pen offsets in, characters out, with a bidirectional
recurrent network (seqlab's own GRU/LSTM) and CTC; and the same encoder classifying the LASA
shapes.

Lecture, "other similar sequential control or prediction problems": "Handwriting recognition
(online recognition: input is a sequence of pen positions, not an image)". The input is the
pen's offsets x_t = (dx_t, dy_t, e_t), t = 1..T (``seqlab.tasks.handwriting_data``), the output
a word l = (l_1..l_U), far shorter than T and not aligned with the points: the CTC setting
(Graves, Fernandez, Gomez and Schmidhuber, 2006; online handwriting with a bidirectional LSTM
and CTC: Graves, Liwicki, Fernandez, Bertolami, Bunke and Schmidhuber, 2009, "A Novel
Connectionist System for Unconstrained Handwriting Recognition").

``HandwritingRecognizer`` (shapes batch first):

    h^(0) = relu(conv(x))          a 1-D convolution over the points, striding ``stride``:
                                   T' = floor((T + 2p - k) / stride) + 1                  (B, T', C)
    a^->_t = RNN_fwd(h_t, a^->_{t-1}),  a^<-_t = RNN_bwd(h_t, a^<-_{t+1})                  (B, T', H) each
    h^(l)_t = [a^->_t ; a^<-_t]    per layer l = 1..L (``encoder="bidirectional"``)         (B, T', 2H)
    y_t = softmax(w^(o) . h^(L)_t + b^(o))   over the 26 letters and the blank              (B, T', V)
    C_CTC = -ln p(l | x) = -ln sum_{pi in B^-1(l)} prod_t y_t[pi_t]      (torch's F.ctc_loss)

decoded greedily (pi*_t = argmax_k y_t[k], then B: collapse repeats, drop blanks) or by prefix
beam search (``seqlab.tasks.asr.prefix_beam_search``).

Two anchors of the same class, for the benchmark: ``encoder="unidirectional"`` (a^->_t only:
each output sees the points before it) and ``encoder="conv"`` (no recurrence: L more
convolutions of width k over the points, each output sees a fixed window).

``ShapeClassifier`` (``task="shapes"``): the same front end and encoder, then the mean of
h^(L)_t over the points and a softmax over the shapes,

    p(c | x) = softmax(w^(o) . (1/T' sum_t h^(L)_t) + b^(o)),    C = -ln p(c* | x).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqlab.recurrent.gru import GRU, GRUConfig
from seqlab.recurrent.lstm import LSTM, LSTMConfig
from seqlab.tasks.asr import BiRecurrent, ctc_loss, greedy_decode
from seqlab.validation import check_choice, check_float, check_int, check_tensor, fail, fields_from_dict

TASKS = ("recognize", "generate", "shapes")
ENCODERS = ("bidirectional", "unidirectional", "conv")
CELLS = ("gru", "lstm")


@dataclass(frozen=True)
class HandwritingConfig:
    """A handwriting model: a recogniser, a generator or a shape classifier (``task``).

    Attributes:
        task: recognize (pen offsets -> text, CTC), generate (text -> pen offsets, mixture density network) or shapes (LASA shape classes)
        vocab_size: letters + 1 (recognize: the CTC blank, last id; generate: unused id); set from the data
        num_classes: LASA shape classes (task shapes); set from the data
        encoder: recogniser/classifier encoder: bidirectional (default), unidirectional or conv (the anchors)
        cell: recurrent cell of the recogniser/classifier: gru or lstm (seqlab.recurrent's own)
        conv_channels: channels C of the front-end convolution (and of the conv encoder)
        kernel_size: width k of the convolutions in points (odd)
        stride: points the front-end convolution strides
        hidden_size: hidden units H per direction and layer (generate: of each LSTM layer)
        num_layers: encoder layers (generate: LSTM layers, at least 1)
        dropout: dropout between the encoder layers in training
        mixtures: bivariate Gaussian components M of the generator's output
        window_mixtures: Gaussians K of the generator's soft attention window over the text
        conditional: the generator reads the text through the window (false: unconditional)
    """

    task: str = "recognize"
    vocab_size: int = 27
    num_classes: int = 26
    encoder: str = "bidirectional"
    cell: str = "gru"
    conv_channels: int = 64
    kernel_size: int = 5
    stride: int = 2
    hidden_size: int = 128
    num_layers: int = 2
    dropout: float = 0.1
    mixtures: int = 20
    window_mixtures: int = 10
    conditional: bool = True

    def __post_init__(self) -> None:
        check_choice(self.task, "task", TASKS)
        check_int(self.vocab_size, "vocab_size", minimum=2, maximum=10_000)
        check_int(self.num_classes, "num_classes", minimum=2, maximum=10_000)
        check_choice(self.encoder, "encoder", ENCODERS)
        check_choice(self.cell, "cell", CELLS)
        check_int(self.conv_channels, "conv_channels", minimum=1, maximum=4096)
        check_int(self.kernel_size, "kernel_size", minimum=1, maximum=31)
        if self.kernel_size % 2 == 0:
            fail("kernel_size", "an odd width (the convolution is centred)", self.kernel_size)
        check_int(self.stride, "stride", minimum=1, maximum=4)
        check_int(self.hidden_size, "hidden_size", minimum=1, maximum=8192)
        check_int(self.num_layers, "num_layers", minimum=1, maximum=8)
        check_float(self.dropout, "dropout", minimum=0.0, maximum=1.0, open_max=True)
        check_int(self.mixtures, "mixtures", minimum=1, maximum=200)
        check_int(self.window_mixtures, "window_mixtures", minimum=1, maximum=100)
        if not isinstance(self.conditional, bool):
            fail("conditional", "True or False", repr(self.conditional))

    @property
    def blank(self) -> int:
        return self.vocab_size - 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HandwritingConfig":
        return cls(**fields_from_dict(cls, d, "handwriting config"))


def _mask(lengths: torch.Tensor, T: int, like: torch.Tensor) -> torch.Tensor:
    """1.0 at each item's first lengths[b] steps, 0.0 after: (B, T)."""
    return (torch.arange(T)[None, :] < lengths[:, None]).to(like.device, like.dtype)


def check_offsets(x: object, lengths: object = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pen offsets (B, T, 3) (finite floats, at least one point) and their lengths (B,) in [1, T]."""
    check_tensor(x, "pen offsets", ndim=3, dims="(batch, points, 3)", floating=True, finite=True)
    B, T, D = x.shape
    if D != 3:
        fail("pen offsets", "3 values per point (dx, dy, pen-up)", f"{D} in shape {tuple(x.shape)}")
    if B < 1 or T < 1:
        fail("pen offsets", "at least one sequence of at least one point", f"shape {tuple(x.shape)}")
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long)
    lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
    if lengths.shape != (B,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
        fail("lengths", f"{B} point counts in [1, {T}]", lengths.tolist())
    return x, lengths


class InkEncoder(nn.Module):
    """The front end and encoder shared by the recogniser and the shape classifier:
    ``forward(x (B, T, 3), lengths) -> (h (B, T', D), out_lengths (B,))``."""

    def __init__(self, c: HandwritingConfig) -> None:
        super().__init__()
        self.config = c
        p = c.kernel_size // 2
        self.conv = nn.Conv1d(3, c.conv_channels, c.kernel_size, stride=c.stride, padding=p)
        if c.encoder == "bidirectional":
            sizes = [c.conv_channels] + [2 * c.hidden_size] * (c.num_layers - 1)
            self.layers = nn.ModuleList(BiRecurrent(c.cell, i, c.hidden_size) for i in sizes)
            self.out_size = 2 * c.hidden_size
        elif c.encoder == "unidirectional":
            make = GRU(GRUConfig(c.conv_channels, c.hidden_size, c.num_layers, c.dropout)) if c.cell == "gru" else \
                LSTM(LSTMConfig(c.conv_channels, c.hidden_size, c.num_layers, c.dropout))
            self.rnn = make
            self.out_size = c.hidden_size
        else:
            self.convs = nn.ModuleList(nn.Conv1d(c.conv_channels, c.conv_channels, c.kernel_size, padding=p)
                                       for _ in range(c.num_layers))
            self.out_size = c.conv_channels

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """T'_b = floor((T_b + 2p - k) / stride) + 1."""
        k, s = self.config.kernel_size, self.config.stride
        return torch.div(lengths + 2 * (k // 2) - k, s, rounding_mode="floor") + 1

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        x, lengths = check_offsets(x, lengths)
        n = self.out_lengths(lengths)  # (B,)
        # points past an item's length are zeroed, as the convolution's own padding would be
        x = x * _mask(lengths, x.shape[1], x)[:, :, None]
        # h^(0) = relu(conv(x))                                                    (B, C, T')
        h = F.relu(self.conv(x.transpose(1, 2)))
        h = h * _mask(n, h.shape[2], h)[:, None, :]
        if c.encoder == "conv":
            for conv in self.convs:
                h = F.dropout(h, c.dropout, training=self.training) if c.dropout > 0 else h
                # h^(l) = relu(conv_l(h^(l-1))) + h^(l-1)  (a residual stack: no recurrence)
                h = (F.relu(conv(h)) + h) * _mask(n, h.shape[2], h)[:, None, :]
            return h.transpose(1, 2), n  # (B, T', C)
        h = h.transpose(1, 2)  # (B, T', C)
        if c.encoder == "unidirectional":
            out, _ = self.rnn(h, n)  # a^->_t only                                   (B, T', H)
            return out, n
        for i, layer in enumerate(self.layers):
            if i > 0 and c.dropout > 0:
                h = F.dropout(h, c.dropout, training=self.training)
            # h^(l)_t = [a^->_t ; a^<-_t]                                              (B, T', 2H)
            h = layer(h, n)
        return h, n


class HandwritingRecognizer(nn.Module):
    """``forward(x, lengths) -> (log_probs (B, T', V), out_lengths (B,))``; ``loss(batch)``: the
    CTC loss of ``(x, x_lengths, y, y_lengths)``."""

    family = "handwriting"

    def __init__(self, config: HandwritingConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        self.config = c = config if config is not None else HandwritingConfig(**kwargs)
        self.encoder = InkEncoder(c)
        self.w_o = nn.Linear(self.encoder.out_size, c.vocab_size)  # w^(o), b^(o)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h, n = self.encoder(x, lengths)
        # y_t = softmax(w^(o) . h_t + b^(o)), as log probabilities                   (B, T', V)
        return F.log_softmax(self.w_o(h).float(), dim=-1), n

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """C_CTC = -ln p(l | x), divided by |l| and averaged over the batch."""
        x, x_lengths, y, y_lengths = batch
        log_probs, n = self(x, x_lengths)  # (B, T', V), (B,)
        loss, short = ctc_loss(log_probs, n, y, y_lengths, self.config.blank)
        return loss, {"words": int(x.shape[0]), "too_short": short}


class ShapeClassifier(nn.Module):
    """``forward(x, lengths) -> log p(c | x) (B, num_classes)``; ``loss(batch)``: the
    cross-entropy of ``(x, x_lengths, labels)``."""

    family = "handwriting"

    def __init__(self, config: HandwritingConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        self.config = c = config if config is not None else HandwritingConfig(task="shapes", **kwargs)
        self.encoder = InkEncoder(c)
        self.w_o = nn.Linear(self.encoder.out_size, c.num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        h, n = self.encoder(x, lengths)  # (B, T', D)
        # the mean of h^(L)_t over each item's own points                           (B, D)
        pooled = (h * _mask(n, h.shape[1], h)[:, :, None]).sum(1) / n.to(h.device)[:, None].to(h.dtype)
        # p(c | x) = softmax(w^(o) . mean_t h_t + b^(o))                             (B, classes)
        return F.log_softmax(self.w_o(pooled).float(), dim=-1)

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        x, lengths, labels = batch
        log_p = self(x, lengths)
        loss = F.nll_loss(log_p, labels.to(log_p.device))
        acc = float((log_p.argmax(-1).cpu() == labels.cpu()).float().mean())
        return loss, {"accuracy": acc}


# --------------------------------------------------------------------------- batches and decoding


def collate_ink(xs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(T_b, 3) offsets -> zero-padded (B, T, 3) and lengths (B,)."""
    T = max(int(x.shape[0]) for x in xs)
    out = torch.zeros(len(xs), T, 3)
    for b, x in enumerate(xs):
        out[b, : x.shape[0]] = x
    return out, torch.tensor([int(x.shape[0]) for x in xs])


def collate_text(ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Id lists -> zero-padded (B, U) and lengths (B,)."""
    U = max(max((len(i) for i in ids), default=1), 1)
    y = torch.zeros(len(ids), U, dtype=torch.long)
    for b, i in enumerate(ids):
        y[b, : len(i)] = torch.tensor(list(i), dtype=torch.long)
    return y, torch.tensor([len(i) for i in ids])


@torch.no_grad()
def recognize(model: HandwritingRecognizer, alphabet: str, xs: Sequence[torch.Tensor], *, beam: int = 0,
              batch_size: int = 64) -> list[str]:
    """The words of pen-offset arrays ((T, 3) each): greedy CTC decoding with ``beam=0``, else
    prefix beam search of that width. ``alphabet[k]`` is the letter of id k (the blank is last)."""
    from seqlab.tasks.asr import prefix_beam_search

    model.eval()
    blank = model.config.blank
    out: list[str] = []
    device = next(model.parameters()).device
    for s in range(0, len(xs), batch_size):
        x, n = collate_ink(xs[s:s + batch_size])
        log_probs, m = model(x.to(device), n)  # (B, T', V)
        if beam == 0:
            out += ["".join(alphabet[k] for k in ids) for ids in greedy_decode(log_probs, m, blank)]
        else:
            out += [prefix_beam_search(log_probs[b, : int(m[b])], alphabet, blank, beam=beam)
                    for b in range(x.shape[0])]
    return out


def word_scores(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """CER (jiwer: character edits / reference characters, summed over the words) and word
    accuracy (the share of words read exactly)."""
    import jiwer

    if len(references) != len(hypotheses) or not references:
        fail("hypotheses", f"one per reference ({len(references)}, at least one)", len(hypotheses))
    if any(not r for r in references):
        fail("references", "non-empty words", "an empty one")
    return {"cer": float(jiwer.cer(list(references), list(hypotheses))),
            "word_accuracy": float(np.mean([r == h for r, h in zip(references, hypotheses)]))}


__all__ = ["CELLS", "ENCODERS", "HandwritingConfig", "HandwritingRecognizer", "InkEncoder", "ShapeClassifier",
           "TASKS", "check_offsets", "collate_ink", "collate_text", "recognize", "word_scores"]
