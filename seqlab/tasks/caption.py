r"""Image captioning, "show, attend and tell" (Xu et al., 2015, "Show, Attend and Tell: Neural
Image Caption Generation with Visual Attention", ICML): a convolutional encoder and a
recurrent decoder with soft attention over the encoder's feature map.

Lecture, applications of recurrent networks: "Image captioning (combines with convolutional
networks)".

Encoder. Four 3 x 3 convolutions (``torch.nn.Conv2d``; the first keeps the size, the others
halve it), each followed by group normalisation (``torch.nn.GroupNorm``) and a ReLU, turn the
image (3, 48, 48) into a feature map of H' x W' = 6 x 6 cells; each cell's features, with its
coordinates (x_i, y_i) in [-1, 1] appended (so that a cell says where it is: the relations
"left of" and "above" need it), is one annotation vector

    a = {a_1, ..., a_L},   a_i in R^D,   L = H' W'                      (Xu et al., sec. 3.1.1)

With ``encoder="factored"`` (the default) the convolutions read the ink m = max_c x_c (one
channel: the shape without its colour), and each cell's colour, the largest value of each of
R, G, B under it (adaptive max pooling), is appended to a_i. Shape and colour then reach the
decoder as separate features, so a (colour, kind) pair never seen in training is made of
features that were each seen; ``encoder="joint"`` convolves the RGB image.

Decoder: seqlab's own LSTM (or GRU) cell (``seqlab.recurrent``), whose input at step t is the
previous word's embedding E y_{t-1} and the context vector z_t. Soft attention (sec. 3.1.2 and
4.2), with f_att a one-hidden-layer network:

    e_{t,i}  = w_e . tanh(W_a a_i + W_h h_{t-1} + b_e)                  f_att(a_i, h_{t-1})
    alpha_t  = softmax(e_t)              (alpha_{t,i} over the L cells, sum_i alpha_{t,i} = 1)
    z_t      = sum_i alpha_{t,i} a_i
    h_t, c_t = LSTM([E y_{t-1}; z_t], h_{t-1}, c_{t-1})                 (the lecture's LSTM)
    p(y_t | a, y_1..y_{t-1}) = softmax(L_o (E y_{t-1} + L_h h_t + L_z z_t))   (the deep output, eq. 7)

The initial state is predicted from the mean annotation (sec. 3.1.2):

    h_0 = tanh(f_init,h(mean_i a_i)),   c_0 = tanh(f_init,c(mean_i a_i))

Training maximises the likelihood of the caption with teacher forcing (y_{t-1} is the true
previous word): the cross entropy over the words and ``<eos>``,

    C = -(1/N) sum_t log p(y_t | a, y_1..y_{t-1})

Inference is greedy (``generate``: the most likely word at each step until ``<eos>``),
returning the attention map alpha_t of every word. The paper's doubly stochastic
regularisation and its gating scalar beta_t are left out.

The non-attentive anchor (``attention=False``): the same encoder and decoder, with the context
the mean-pooled feature map at every step instead of an attended one,

    z_t = (1/L) sum_i a_i                                               (alpha_{t,i} = 1/L)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.recurrent.gru import GRULayer
from seqlab.recurrent.lstm import LSTMLayer
from seqlab.validation import check_bool, check_choice, check_float, check_int, check_tensor, fail, \
    fields_from_dict, shape_str

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
NEVER_GENERATED = (PAD_ID, BOS_ID, UNK_ID)
CELLS = ("lstm", "gru")
ENCODERS = ("factored", "joint")


@dataclass(frozen=True)
class CaptionConfig:
    """Settings of a captioning model.

    Attributes:
        vocab_size: words in the vocabulary, <pad> <bos> <eos> <unk> included (set from the data)
        max_len: the longest caption in tokens, <bos> and <eos> included (set from the data)
        image_size: the images' height = width in pixels (set from the data)
        channels: feature maps of the first convolutions (the last has feature_size)
        feature_size: D - 2, the encoder's features per cell (the cell's x, y coordinates are appended)
        embed_size: size of the word embedding E y
        hidden_size: size of the recurrent state h_t
        attention_size: hidden units of f_att
        cell: the decoder's recurrent cell, lstm or gru (seqlab's own)
        attention: soft attention (True) or the mean-pooled feature map at every step (the anchor)
        dropout: dropout on the deep output's input during training
        encoder: factored (convolutions on the ink max_c x_c; each cell's colour appended) or joint (on RGB)
        word_dropout: in training, the share of previous words y_{t-1} (after <bos>) replaced by <unk>
    """

    vocab_size: int = 29
    max_len: int = 18
    image_size: int = 48
    channels: int = 16
    feature_size: int = 64
    embed_size: int = 32
    hidden_size: int = 128
    attention_size: int = 64
    cell: str = "lstm"
    attention: bool = True
    dropout: float = 0.0
    word_dropout: float = 0.0
    encoder: str = "factored"

    def __post_init__(self) -> None:
        check_int(self.vocab_size, "vocab_size", minimum=5, maximum=1_000_000)
        check_int(self.max_len, "max_len", minimum=3, maximum=1000)
        check_int(self.image_size, "image_size", minimum=8, maximum=512)
        for name in ("channels", "feature_size", "embed_size", "hidden_size", "attention_size"):
            check_int(getattr(self, name), name, minimum=1, maximum=8192)
        check_choice(self.cell, "cell", CELLS)
        check_choice(self.encoder, "encoder", ENCODERS)
        check_bool(self.attention, "attention")
        check_float(self.dropout, "dropout", minimum=0.0, maximum=1.0, open_max=True)
        check_float(self.word_dropout, "word_dropout", minimum=0.0, maximum=1.0, open_max=True)

    @property
    def annotation_size(self) -> int:
        """D: the features of a cell, its 2 coordinates and (factored) its 3 colour values."""
        return self.feature_size + 2 + (3 if self.encoder == "factored" else 0)

    @property
    def map_size(self) -> int:
        """H' = W': the side of the feature map (three halvings, rounded up)."""
        s = self.image_size
        for _ in range(3):
            s = (s + 1) // 2
        return s

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CaptionConfig":
        return cls(**fields_from_dict(cls, d, "caption config"))


class Encoder(nn.Module):
    """Image (B, 3, S, S) -> annotation vectors a (B, L, D), L = H' W', D = ``annotation_size``
    (feature_size + 2 coordinates, + 3 colour values when factored)."""

    def __init__(self, config: CaptionConfig) -> None:
        super().__init__()
        C, F_ = config.channels, config.feature_size
        self.factored = config.encoder == "factored"
        self.convs = nn.ModuleList([
            nn.Conv2d(1 if self.factored else 3, C, 3, padding=1),  # (B, C, S, S)
            nn.Conv2d(C, C, 3, stride=2, padding=1),  # (B, C, S/2, S/2)
            nn.Conv2d(C, 2 * C, 3, stride=2, padding=1),  # (B, 2C, S/4, S/4)
            nn.Conv2d(2 * C, F_, 3, stride=2, padding=1),  # (B, F, H', W')
        ])
        # group normalisation after each convolution (Wu and He, 2018): the same in training and
        # use, and measured here to halve the steps the scenes need
        self.norms = nn.ModuleList([nn.GroupNorm(math.gcd(4, c.out_channels), c.out_channels) for c in self.convs])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # factored: the convolutions see the ink m = max_c x_c (B, 1, S, S), not the colour
        x = images.amax(dim=1, keepdim=True) if self.factored else images
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x)))
        B, F_, H, W = x.shape  # (B, F, H', W')
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, H, device=x.device), torch.linspace(-1, 1, W, device=x.device),
                                indexing="ij")
        coords = torch.stack([xs, ys]).to(x.dtype).expand(B, 2, H, W)  # (B, 2, H', W')
        parts = [x, coords]
        if self.factored:
            # the colour of a cell: the brightest value of each channel under it (B, 3, H', W')
            parts.append(F.adaptive_max_pool2d(images, (H, W)))
        a = torch.cat(parts, dim=1)  # (B, D, H', W')
        return a.flatten(2).transpose(1, 2)  # (B, L, D)


class CaptionModel(nn.Module):
    """Show, attend and tell. ``forward(images, ids)`` -> (logits (B, T, V), alphas (B, T, L))
    with teacher forcing (``ids`` (B, T) start with <bos>); ``loss((images, ids))`` for the
    trainer; ``generate(images)`` greedy captions and their attention maps."""

    family = "caption"

    def __init__(self, config: CaptionConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = CaptionConfig(**kwargs)
        elif not isinstance(config, CaptionConfig) or kwargs:
            fail("config", "a CaptionConfig (or keyword arguments)", type(config).__name__)
        self.config = c = config
        D, H, E, A = c.annotation_size, c.hidden_size, c.embed_size, c.attention_size
        self.encoder = Encoder(c)
        self.embed = nn.Embedding(c.vocab_size, E)  # E: (V, E)
        self.init_h = nn.Linear(D, H)  # f_init,h
        self.init_c = nn.Linear(D, H)  # f_init,c (unused by a GRU)
        self.w_a = nn.Linear(D, A, bias=False)  # W_a
        self.w_h = nn.Linear(H, A)  # W_h, b_e
        self.w_e = nn.Linear(A, 1, bias=False)  # w_e
        self.cell = (LSTMLayer(E + D, H) if c.cell == "lstm" else GRULayer(E + D, H, "before"))
        self.l_h = nn.Linear(H, E)  # L_h
        self.l_z = nn.Linear(D, E)  # L_z
        self.l_o = nn.Linear(E, c.vocab_size)  # L_o
        self.drop = nn.Dropout(c.dropout)

    # ------------------------------------------------------------------ checks

    def check_images(self, images: object, name: str = "images") -> torch.Tensor:
        S = self.config.image_size
        check_tensor(images, name, ndim=4, dims="(batch, 3, height, width)", floating=True, finite=True)
        if images.shape[1:] != (3, S, S):
            fail(name, f"RGB images of shape (B, 3, {S}, {S})", f"shape {shape_str(images)}")
        if images.shape[0] < 1:
            fail(name, "at least one image", f"shape {shape_str(images)}")
        return images

    # ------------------------------------------------------------------ the equations

    def annotations(self, images: torch.Tensor) -> torch.Tensor:
        """a = {a_1 .. a_L}: (B, L, D)."""
        return self.encoder(images)

    def initial_state(self, a: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mean = a.mean(dim=1)  # (B, D)
        # h_0 = tanh(f_init,h(mean_i a_i)),  c_0 = tanh(f_init,c(mean_i a_i))
        h0 = torch.tanh(self.init_h(mean))  # (B, H)
        return (h0, torch.tanh(self.init_c(mean))) if self.config.cell == "lstm" else (h0,)

    def attend(self, a: torch.Tensor, wa: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_t (B, D), alpha_t (B, L)) from the annotations a (B, L, D), W_a a (B, L, A) and
        h_{t-1} (B, H)."""
        if not self.config.attention:
            # the anchor: z_t = (1/L) sum_i a_i   (alpha_{t,i} = 1/L)
            alpha = torch.full(a.shape[:2], 1.0 / a.shape[1], dtype=a.dtype, device=a.device)  # (B, L)
            return a.mean(dim=1), alpha
        # e_{t,i} = w_e . tanh(W_a a_i + W_h h_{t-1} + b_e)
        e = self.w_e(torch.tanh(wa + self.w_h(h)[:, None, :])).squeeze(-1)  # (B, L)
        # alpha_t = softmax(e_t)
        alpha = torch.softmax(e, dim=-1)  # (B, L)
        # z_t = sum_i alpha_{t,i} a_i
        z = torch.bmm(alpha[:, None, :], a).squeeze(1)  # (B, D)
        return z, alpha

    def stacked_gates(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The LSTM's four gates stacked, for one matrix product per step instead of eight: the
        same parameters (``torch.cat`` passes the gradients back to each), rows (i, f, g, o):
        W (4H, E + D), U (4H, H), b (4H,). None for a GRU (its step is the layer's own)."""
        if self.config.cell != "lstm":
            return None
        m = self.cell
        return (torch.cat([m.w_i, m.w_f, m.w_g, m.w_o]), torch.cat([m.w_I, m.w_F, m.w_G, m.w_O]),
                torch.cat([m.b_i, m.b_f, m.b_g, m.b_o]))

    def step(self, a, wa, state, y_prev, stacked=None):
        """One decoder step: (logits (B, V), alpha_t (B, L), state) from y_{t-1} (B,);
        ``stacked``: ``stacked_gates()``, computed once per caption (else the layer's own step)."""
        ey = self.embed(y_prev)  # E y_{t-1}: (B, E)
        z, alpha = self.attend(a, wa, state[0])
        x = torch.cat([ey, z], dim=-1)  # (B, E + D)
        # h_t, c_t = LSTM([E y_{t-1}; z_t], h_{t-1}, c_{t-1})
        if stacked is None:
            _, state = self.cell.reference(x[:, None, :], state, None)  # x: (B, 1, E + D)
        else:
            w, u, b = stacked
            h, c = state
            # the lecture's LSTM (LSTMLayer.reference), its four products in one:
            # a^(i,f,g,o)_t = w^(i,f,g,o) . x_t + w^(I,F,G,O) . a^(h)_{t-1} + b^(i,f,g,o)     (B, 4H)
            i, f, g, o = (torch.addmm(b, x, w.T) + h @ u.T).chunk(4, dim=-1)
            # a^(c)_t = a^(f)_t * a^(c)_{t-1} + a^(i)_t * a^(g)_t
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            # a^(h)_t = a^(o)_t * g(a^(c)_t)
            state = (torch.sigmoid(o) * torch.tanh(c), c)
        h = state[0]  # (B, H)
        # p(y_t) = softmax(L_o (E y_{t-1} + L_h h_t + L_z z_t))
        logits = self.l_o(self.drop(ey + self.l_h(h) + self.l_z(z)))  # (B, V)
        return logits, alpha, state

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: images (B, 3, S, S), ids (B, T) the input words y_0 = <bos> ..
        y_{T-1}. Returns logits (B, T, V) of y_1 .. y_T and alphas (B, T, L)."""
        self.check_images(images)
        check_tensor(ids, "ids", ndim=2, dims="(batch, time)")
        if ids.shape[0] != images.shape[0]:
            fail("ids", f"one row per image ({images.shape[0]})", f"shape {shape_str(ids)}")
        a = self.annotations(images)  # (B, L, D)
        wa = self.w_a(a) if self.config.attention else None  # W_a a_i: (B, L, A), the same at every step
        state = self.initial_state(a)
        stacked = self.stacked_gates()
        logits, alphas = [], []
        for t in range(ids.shape[1]):
            lg, alpha, state = self.step(a, wa, state, ids[:, t], stacked)
            logits.append(lg)
            alphas.append(alpha)
        return torch.stack(logits, 1), torch.stack(alphas, 1)  # (B, T, V), (B, T, L)

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """C = -(1/N) sum_t log p(y_t | a, y_<t) over the caption's words and <eos> (not <pad>)."""
        images, ids = batch  # (B, 3, S, S), (B, T + 1)
        target = ids[:, 1:]  # (B, T)
        inputs = ids[:, :-1]  # (B, T)
        if self.training and self.config.word_dropout > 0:
            # word dropout: y_{t-1} -> <unk> at random (not <bos>), so the word is read from the image
            drop = torch.rand(inputs.shape, device=inputs.device) < self.config.word_dropout
            drop[:, 0] = False
            inputs = torch.where(drop & (inputs != PAD_ID), torch.full_like(inputs, UNK_ID), inputs)
        logits, _ = self(images, inputs)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=PAD_ID)
        with torch.no_grad():
            keep = target != PAD_ID
            acc = ((logits.argmax(-1) == target) & keep).sum() / keep.sum().clamp(min=1)
        return loss, {"word_accuracy": float(acc)}

    @torch.no_grad()
    def generate(self, images: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding: y_t = argmax p(y_t | a, y_<t) (over the words and <eos>) until <eos> (or ``max_len`` - 1
        words). Returns ids (B, T) (after <bos>; <pad> after <eos>) and alphas (B, T, L), the
        attention map of each generated word (zero after <eos>)."""
        self.check_images(images)
        T = (max_len or self.config.max_len) - 1
        a = self.annotations(images)
        wa = self.w_a(a) if self.config.attention else None
        state = self.initial_state(a)
        stacked = self.stacked_gates()
        y = torch.full((a.shape[0],), BOS_ID, dtype=torch.long, device=a.device)
        done = torch.zeros(a.shape[0], dtype=torch.bool, device=a.device)
        ids, alphas = [], []
        for _ in range(T):
            logits, alpha, state = self.step(a, wa, state, y, stacked)
            logits[:, list(NEVER_GENERATED)] = float("-inf")  # <pad>, <bos>, <unk> are never written
            y = logits.argmax(-1)  # (B,)
            y = torch.where(done, torch.full_like(y, PAD_ID), y)
            ids.append(y)
            alphas.append(alpha * (~done)[:, None])
            done = done | (y == EOS_ID)
            if bool(done.all()):
                break
        return torch.stack(ids, 1), torch.stack(alphas, 1)  # (B, T), (B, T, L)


__all__ = ["CaptionConfig", "CaptionModel", "Encoder"]
