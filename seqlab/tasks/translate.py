r"""Machine translation: two encoder-decoders written with seqlab's own layers, trained with
teacher forcing, decoded greedily or by beam search.

Lecture, "Applications": "Machine translation." Both models read the source x_1 .. x_S
and model the target one token at a time, p(y_t | y_<t, x); training maximises the
likelihood of the reference with the reference's own previous tokens as inputs (teacher
forcing):

    C = -(1/N) sum_t log p(y_t | y_<t, x)          N: the target tokens of the batch (</s> included)

**(a) ``arch="rnn"``: a recurrent encoder-decoder with additive attention** (Bahdanau, Cho
and Bengio 2015, "Neural machine translation by jointly learning to align and translate").
The encoder is a bidirectional GRU (``seqlab.recurrent.GRU``, the lecture's equations) whose
annotations are both directions side by side; the decoder is a GRU cell whose input is
the previous target token and the context vector:

    h_s     = [h->_s ; h<-_s]                                   (2H,)  annotation of source token s
    s_0     = tanh(w^(init) . h<-_1 + b^(init))                 (H,)
    e_(t,s) = v^T tanh(W h_s + U s_(t-1))                       additive attention score
    alpha_(t,s) = exp(e_(t,s)) / sum_s' exp(e_(t,s'))           (over the real source tokens)
    c_t     = sum_s alpha_(t,s) h_s                             (2H,)  context
    s_t     = GRU([E y_(t-1) ; c_t], s_(t-1))                   (H,)   decoder state
    p(y_t | y_<t, x) = softmax(w^(o) . tanh(w^(t) . [s_t ; c_t ; E y_(t-1)] + b^(t)) + b^(o))

**(b) ``arch="transformer"``: the Transformer encoder-decoder** (Vaswani et al. 2017,
"Attention is all you need") from ``seqlab.transformer``: source and target embeddings
scaled by sqrt(D) plus the sinusoidal positional encoding, an ``Encoder`` of blocks with
self-attention (padding masked), a ``Decoder`` of blocks with causal self-attention (the
lecture's mask: query s sees t <= s) and cross-attention to the encoder's output, and the
output layer tied to the target embedding:

    z^(0)_s = sqrt(D) E^(x) x_s + PE(s);   z = Encoder(z^(0))                  (B, S, D)
    u^(0)_t = sqrt(D) E^(y) y_(t-1) + PE(t);  u = Decoder(u^(0), z)            (B, T, D)
    p(y_t | y_<t, x) = softmax(E^(y) . u_t)

**Decoding.** Greedy: y_t = argmax p(y_t | y_<t, x) until </s>. Beam search (width K) keeps
the K best prefixes by log-probability and, among the finished hypotheses, returns the best
by the length-normalised score (Wu et al. 2016 use a smoothed form; this is the plain one):

    score(y) = log p(y | x) / |y|^alpha                 |y|: tokens with </s>; alpha = 0: no normalisation

Both return the attention weights of each output token over the source tokens: alpha_(t,s)
for the RNN, the last decoder block's cross-attention (mean over heads) for the Transformer.
Each row sums to 1.

Code names: ``w_src`` E^(x) (V_x, D), ``w_tgt`` E^(y) (V_y, D); RNN: ``enc_f``, ``enc_b`` (GRU),
``w_init``, ``b_init``, ``w_W`` W (A, 2H), ``w_U`` U (A, H), ``v`` (A,), ``dec`` (GRU layer),
``w_t``, ``b_t``, ``w_o``, ``b_o``; Transformer: ``pos``, ``encoder``, ``decoder``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.recurrent.gru import GRU, GRUConfig, GRULayer
from seqlab.tasks.translate_data import BOS, EOS, PAD, Vocab, collate
from seqlab.transformer import BlockConfig, Decoder, Encoder, SinusoidalPositionalEncoding
from seqlab.validation import check_choice, check_float, check_int, fail, fields_from_dict

ARCHS = ("rnn", "transformer")


@dataclass(frozen=True)
class TranslateConfig:
    """Settings of a translation model.

    Attributes:
        arch: rnn (bidirectional GRU encoder, GRU decoder with additive attention) or transformer
        src_vocab_size: source pieces, special tokens included (set from the data)
        tgt_vocab_size: target pieces, special tokens included (set from the data)
        max_source_len: longest source accepted, in pieces (set from the data: twice the corpus' longest)
        max_target_len: most target pieces decoded, </s> included (set from the data: twice the longest + 2)
        d_model: width D of the token embeddings (both archs) and of the Transformer's blocks
        hidden_size: GRU width H of each encoder direction and of the decoder (arch rnn)
        attention_size: width A of the additive attention's hidden layer, v^T tanh(W h + U s) (arch rnn)
        num_layers: blocks in the encoder and in the decoder (arch transformer)
        num_heads: attention heads (arch transformer)
        d_ff: width of the blocks' MLP (arch transformer)
        dropout: dropout probability while training (embeddings, blocks; the RNN's readout)
    """

    arch: str = "transformer"
    src_vocab_size: int = 50
    tgt_vocab_size: int = 50
    max_source_len: int = 32
    max_target_len: int = 32
    d_model: int = 128
    hidden_size: int = 128
    attention_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    d_ff: int = 256
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_choice(self.arch, "arch", ARCHS)
        for name in ("src_vocab_size", "tgt_vocab_size"):
            check_int(getattr(self, name), name, minimum=5, maximum=1_000_000)
        for name in ("max_source_len", "max_target_len"):
            check_int(getattr(self, name), name, minimum=1, maximum=100_000)
        for name in ("d_model", "hidden_size", "attention_size", "d_ff"):
            check_int(getattr(self, name), name, minimum=1, maximum=65_536)
        check_int(self.num_layers, "num_layers", minimum=1, maximum=64)
        check_int(self.num_heads, "num_heads", minimum=1)
        if self.d_model % self.num_heads:
            fail("num_heads", f"a divisor of d_model = {self.d_model}", self.num_heads)
        check_float(self.dropout, "dropout", minimum=0.0, maximum=1.0, open_max=True)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TranslateConfig":
        return cls(**fields_from_dict(cls, d, "translate config"))


def make_model(config: TranslateConfig) -> "Translator":
    """The model of ``config.arch``."""
    if not isinstance(config, TranslateConfig):
        fail("config", "a TranslateConfig", type(config).__name__)
    return (RNNTranslator if config.arch == "rnn" else TransformerTranslator)(config)


class Translator(nn.Module):
    """What both models share: the loss with teacher forcing and the decoding interface
    (``start``, ``step``, ``reorder``) that ``greedy`` and ``beam_search`` drive.

    ``forward(src, src_len, y_in) -> (logits (B, T, V_y), attention (B, T, S))``."""

    family = "translate"

    def __new__(cls, config: TranslateConfig | None = None, **kwargs):
        # Translator(config) builds the model of config.arch (the registry builds model_class(config))
        if cls is Translator:
            config = config if config is not None else TranslateConfig(**kwargs)
            cls = RNNTranslator if getattr(config, "arch", None) == "rnn" else TransformerTranslator
        return super().__new__(cls)

    def __init__(self, config: TranslateConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = TranslateConfig(**kwargs)
        elif not isinstance(config, TranslateConfig):
            fail("config", "a TranslateConfig", type(config).__name__)
        self.config = config

    # -- boundary checks ---------------------------------------------------------------
    def check_source(self, src: Any, src_len: Any) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        if not isinstance(src, torch.Tensor) or src.dim() != 2 or src.is_floating_point() or src.dtype == torch.bool:
            fail("src", "a (batch, time) tensor of integer token ids", type(src).__name__ if not isinstance(
                src, torch.Tensor) else f"shape {tuple(src.shape)}, dtype {src.dtype}")
        B, S = src.shape
        if B < 1 or S < 1:
            fail("src", "at least one sentence and one token", f"shape {tuple(src.shape)}")
        if S > c.max_source_len:
            fail("src", f"at most max_source_len = {c.max_source_len} tokens", f"{S} tokens")
        if int(src.min()) < 0 or int(src.max()) >= c.src_vocab_size:
            fail("src", f"token ids in [0, {c.src_vocab_size - 1}]", f"values in [{int(src.min())}, {int(src.max())}]")
        if not isinstance(src_len, torch.Tensor) or src_len.shape != (B,) or src_len.is_floating_point():
            fail("src_len", f"a ({B},) integer tensor of source lengths", repr(getattr(src_len, "shape", src_len)))
        if int(src_len.min()) < 1 or int(src_len.max()) > S:
            fail("src_len", f"lengths in [1, {S}]", f"[{int(src_len.min())}, {int(src_len.max())}]")
        return src.long(), src_len.long().cpu()

    def source_mask(self, src_len: torch.Tensor, S: int, device) -> torch.Tensor:
        """(B, S) bool, True on real source tokens."""
        return torch.arange(S, device=device)[None, :] < src_len.to(device)[:, None]

    # -- training ----------------------------------------------------------------------
    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """batch = (src, src_len, y_in, y_out): C = -(1/N) sum_t log p(y_t | y_<t, x) over the
        N target tokens that are not <pad> (teacher forcing: y_in is the reference shifted)."""
        src, src_len, y_in, y_out = batch
        logits, _ = self(src, src_len, y_in)  # (B, T, V_y)
        logits = logits.float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y_out.reshape(-1), ignore_index=PAD)
        real = y_out != PAD  # (B, T)
        with torch.no_grad():
            right = (logits.argmax(-1) == y_out) | ~real  # (B, T)
            token_acc = float(right[real].float().mean()) if bool(real.any()) else 0.0
            seq_acc = float(right.all(dim=1).float().mean())
        return loss, {"token_accuracy": token_acc, "sequence_accuracy_tf": seq_acc, "tokens": int(real.sum())}

    # -- decoding interface (implemented by each arch) ---------------------------------
    def start(self, src: torch.Tensor, src_len: torch.Tensor) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, state: dict, y_prev: torch.Tensor):  # pragma: no cover - abstract
        """y_prev (N,) -> (log p(y_t | ...) (N, V_y), attention (N, S), new state)."""
        raise NotImplementedError

    @staticmethod
    def reorder(state: dict, index: torch.Tensor) -> dict:
        """The state of rows ``index`` (beam search's surviving prefixes)."""
        return {k: (v.index_select(0, index) if isinstance(v, torch.Tensor) else v) for k, v in state.items()}


# --------------------------------------------------------------------------- (a) RNN + attention


def _reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence of x (B, S, ...) reversed within its own length (padding stays put)."""
    B, S = x.shape[:2]
    t = torch.arange(S)[None, :]  # (1, S)
    L = lengths[:, None]  # (B, 1)
    idx = torch.where(t < L, L - 1 - t, t).to(x.device)  # (B, S)
    return x.gather(1, idx.view(B, S, *([1] * (x.dim() - 2))).expand_as(x))


class RNNTranslator(Translator):
    """The encoder-decoder with additive attention (module docstring, (a))."""

    def __init__(self, config: TranslateConfig | None = None, /, **kwargs) -> None:
        super().__init__(config, **kwargs)
        c = self.config
        D, H, A = c.d_model, c.hidden_size, c.attention_size
        self.w_src = nn.Parameter(torch.randn(c.src_vocab_size, D) * D ** -0.5)  # E^(x): (V_x, D)
        self.w_tgt = nn.Parameter(torch.randn(c.tgt_vocab_size, D) * D ** -0.5)  # E^(y): (V_y, D)
        # the two directions of the encoder: seqlab's GRU (the lecture's equations)
        self.enc_f = GRU(GRUConfig(input_size=D, hidden_size=H))
        self.enc_b = GRU(GRUConfig(input_size=D, hidden_size=H))
        self.w_init = nn.Parameter(torch.empty(H, H))  # w^(init): (H, H)
        self.b_init = nn.Parameter(torch.zeros(H))
        self.w_W = nn.Parameter(torch.empty(A, 2 * H))  # W: (A, 2H)
        self.w_U = nn.Parameter(torch.empty(A, H))  # U: (A, H)
        self.v = nn.Parameter(torch.empty(A))  # v: (A,)
        self.dec = GRULayer(D + 2 * H, H, "before")  # the decoder's GRU cell, input [E y ; c]
        self.w_t = nn.Parameter(torch.empty(D, H + 2 * H + D))  # w^(t): (D, H + 2H + D)
        self.b_t = nn.Parameter(torch.zeros(D))
        self.w_o = nn.Parameter(torch.empty(c.tgt_vocab_size, D))  # w^(o): (V_y, D)
        self.b_o = nn.Parameter(torch.zeros(c.tgt_vocab_size))
        for w in (self.w_init, self.w_W, self.w_U, self.w_t, self.w_o):
            bound = 1.0 / math.sqrt(w.shape[1])
            nn.init.uniform_(w, -bound, bound)
        nn.init.uniform_(self.v, -1.0 / math.sqrt(A), 1.0 / math.sqrt(A))

    def start(self, src, src_len) -> dict:
        src, src_len = self.check_source(src, src_len)
        c = self.config
        p = c.dropout if self.training else 0.0
        B, S = src.shape
        x = F.dropout(F.embedding(src, self.w_src), p, self.training)  # (B, S, D)
        h_f, _ = self.enc_f(x, src_len)  # (B, S, H): h->_s
        h_b, _ = self.enc_b(_reverse_padded(x, src_len), src_len)  # (B, S, H), read from the end
        h_b = _reverse_padded(h_b, src_len)  # (B, S, H): h<-_s
        # h_s = [h->_s ; h<-_s]
        h = torch.cat([h_f, h_b], dim=-1)  # (B, S, 2H)
        # s_0 = tanh(w^(init) . h<-_1 + b^(init))
        s = torch.tanh(h_b[:, 0] @ self.w_init.T + self.b_init)  # (B, H)
        # W h_s, computed once for every decoder step
        Wh = h @ self.w_W.T  # (B, S, A)
        return {"h": h, "Wh": Wh, "mask": self.source_mask(src_len, S, h.device), "s": s}

    def step(self, state: dict, y_prev: torch.Tensor):
        p = self.config.dropout if self.training else 0.0
        h, Wh, mask, s = state["h"], state["Wh"], state["mask"], state["s"]
        # e_(t,s) = v^T tanh(W h_s + U s_(t-1))
        e = torch.tanh(Wh + (s @ self.w_U.T)[:, None, :]) @ self.v  # (N, S)
        e = e.masked_fill(~mask, float("-inf"))
        # alpha_(t,s) = softmax_s(e_(t,s))
        alpha = torch.softmax(e, dim=-1)  # (N, S)
        # c_t = sum_s alpha_(t,s) h_s
        ctx = torch.bmm(alpha[:, None, :], h)[:, 0]  # (N, 2H)
        ey = F.dropout(F.embedding(y_prev, self.w_tgt), p, self.training)  # (N, D): E y_(t-1)
        # s_t = GRU([E y_(t-1) ; c_t], s_(t-1))
        _, (s,) = self.dec.reference(torch.cat([ey, ctx], dim=-1)[:, None, :], (s,), None)  # (N, H)
        # p(y_t | y_<t, x) = softmax(w^(o) . tanh(w^(t) . [s_t ; c_t ; E y_(t-1)] + b^(t)) + b^(o))
        t = torch.tanh(torch.cat([s, ctx, ey], dim=-1) @ self.w_t.T + self.b_t)  # (N, D)
        logits = F.dropout(t, p, self.training) @ self.w_o.T + self.b_o  # (N, V_y)
        return logits, alpha, {**state, "s": s}

    def forward(self, src, src_len, y_in):
        """Teacher forcing: logits (B, T, V_y) and attention (B, T, S)."""
        state = self.start(src, src_len)
        logits, attn = [], []
        for t in range(y_in.shape[1]):
            out, alpha, state = self.step(state, y_in[:, t])
            logits.append(out)
            attn.append(alpha)
        return torch.stack(logits, 1), torch.stack(attn, 1)  # (B, T, V_y), (B, T, S)

    def decode_step(self, state, y_prev):
        logits, alpha, state = self.step(state, y_prev)
        return torch.log_softmax(logits.float(), -1), alpha, state


# --------------------------------------------------------------------------- (b) Transformer


class TransformerTranslator(Translator):
    """The Transformer encoder-decoder (module docstring, (b)) from ``seqlab.transformer``."""

    def __init__(self, config: TranslateConfig | None = None, /, **kwargs) -> None:
        super().__init__(config, **kwargs)
        c = self.config
        D = c.d_model
        self.w_src = nn.Parameter(torch.randn(c.src_vocab_size, D) * D ** -0.5)  # E^(x): (V_x, D)
        self.w_tgt = nn.Parameter(torch.randn(c.tgt_vocab_size, D) * D ** -0.5)  # E^(y): (V_y, D), also w^(o)
        self.pos = SinusoidalPositionalEncoding(d_model=D, max_len=max(c.max_source_len, c.max_target_len) + 1)
        block = dict(d_model=D, num_heads=c.num_heads, d_ff=c.d_ff, dropout=c.dropout)
        self.encoder = Encoder(num_layers=c.num_layers, config=BlockConfig(**block))
        self.decoder = Decoder(num_layers=c.num_layers, config=BlockConfig(**block, causal=True, cross_attention=True))

    def _embed(self, ids: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        p = self.config.dropout if self.training else 0.0
        # sqrt(D) E x_t + PE(t)
        x = self.pos.forward_unchecked(F.embedding(ids, w) * math.sqrt(self.config.d_model))  # (B, T, D)
        return F.dropout(x, p, self.training)

    def start(self, src, src_len) -> dict:
        src, src_len = self.check_source(src, src_len)
        mask = self.source_mask(src_len, src.shape[1], src.device)  # (B, S)
        # z = Encoder(sqrt(D) E^(x) x + PE)
        z = self.encoder(self._embed(src, self.w_src), key_padding_mask=mask)  # (B, S, D)
        return {"z": z, "mask": mask, "prefix": torch.empty(src.shape[0], 0, dtype=torch.long, device=src.device)}

    def _decode(self, z, mask, y_in, need_weights: bool):
        out = self.decoder(self._embed(y_in, self.w_tgt), z, memory_key_padding_mask=mask,
                           need_weights=need_weights)  # (B, T, D)
        u, weights = out if need_weights else (out, None)
        # p(y_t | y_<t, x) = softmax(E^(y) . u_t)
        logits = u @ self.w_tgt.T  # (B, T, V_y)
        attn = weights[-1]["cross"].mean(dim=1) if need_weights else None  # (B, h, T, S) -> (B, T, S)
        return logits, attn

    def forward(self, src, src_len, y_in, need_weights: bool = False):
        """Teacher forcing: logits (B, T, V_y), and the last block's cross-attention (B, T, S)
        when ``need_weights`` (else None)."""
        state = self.start(src, src_len)
        if y_in.shape[1] > self.config.max_target_len:
            fail("y_in", f"at most max_target_len = {self.config.max_target_len} tokens", y_in.shape[1])
        return self._decode(state["z"], state["mask"], y_in, need_weights)

    def decode_step(self, state, y_prev):
        # the decoder reads the whole prefix again (no cache: the prefixes are short)
        prefix = torch.cat([state["prefix"], y_prev[:, None]], dim=1)  # (N, t)
        logits, attn = self._decode(state["z"], state["mask"], prefix, True)
        return torch.log_softmax(logits[:, -1].float(), -1), attn[:, -1], {**state, "prefix": prefix}


# --------------------------------------------------------------------------- decoding


class Decodes(Protocol):
    """What the search functions drive: ``start(src, src_len) -> state``; ``decode_step(state,
    y_prev (N,)) -> (log-probabilities (N, V), attention (N, S), state)``; ``reorder(state,
    index) -> state``."""

    def start(self, src, src_len) -> dict: ...

    def decode_step(self, state, y_prev): ...

    def reorder(self, state, index): ...


@dataclass
class Hypothesis:
    """One output: ``ids`` (without </s>), ``log_prob`` = log p(y | x) (</s> included when
    ``ended``), ``score`` (log_prob / |y|^alpha), ``attention`` (steps, S): one row per output
    token, the </s> step last when ``ended``."""

    ids: list[int]
    log_prob: float
    score: float
    attention: torch.Tensor
    ended: bool


def _normalised(log_prob: float, steps: int, alpha: float) -> float:
    # score(y) = log p(y | x) / |y|^alpha
    return log_prob / (max(steps, 1) ** alpha)


@torch.no_grad()
def greedy(model: Decodes, src: torch.Tensor, src_len: torch.Tensor, max_len: int, *, alpha: float = 0.0
           ) -> list[Hypothesis]:
    """y_t = argmax_y p(y | y_<t, x), for every sentence of the batch at once, until </s> (or
    ``max_len`` steps)."""
    state = model.start(src, src_len)
    B = src.shape[0]
    y = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(B, dtype=torch.bool)
    steps = torch.zeros(B, dtype=torch.long)
    logp_sum = torch.zeros(B, dtype=torch.float64)
    ids, attn = [], []
    for _ in range(max_len):
        logp, a, state = model.decode_step(state, y)  # (B, V), (B, S)
        y = logp.argmax(-1)  # (B,)
        live = ~done
        # log p(y | x) = sum_t log p(y_t | y_<t, x), over the steps up to </s>
        chosen = logp.gather(1, y[:, None])[:, 0].double().cpu()  # (B,)
        logp_sum += torch.where(live, chosen, torch.zeros_like(chosen))
        steps += live.long()
        ids.append(y.cpu())
        attn.append(a.float().cpu())
        done |= y.cpu() == EOS
        if bool(done.all()):
            break
    ids_t = torch.stack(ids, 1)  # (B, steps)
    attn_t = torch.stack(attn, 1)  # (B, steps, S)
    out = []
    for b in range(B):
        n = int(steps[b])
        row = ids_t[b, :n].tolist()
        ended = bool(row) and row[-1] == EOS
        out.append(Hypothesis(row[:-1] if ended else row, float(logp_sum[b]),
                              _normalised(float(logp_sum[b]), n, alpha), attn_t[b, :n], ended))
    return out


@torch.no_grad()
def beam_search(model: Decodes, src: torch.Tensor, src_len: torch.Tensor, max_len: int, *, beam: int = 5,
                alpha: float = 0.6) -> list[Hypothesis]:
    """The best hypothesis of each sentence by beam search of width ``beam`` (K).

    Every step extends each live prefix by every token and keeps the W best extensions by
    log p, W = K minus the hypotheses already finished: an extension by </s> is finished and
    leaves the beam, the others stay live (so with K = 1 this is greedy decoding). A sentence
    stops when no prefix is live, after ``max_len`` steps (its live prefixes then count as
    unfinished hypotheses), or when no live prefix can still beat the best finished one: log p
    only falls as a prefix grows, so a live prefix's best reachable score is its log p /
    max_len^alpha. The answer is the hypothesis with the best score log p / |y|^alpha."""
    check_int(beam, "beam", minimum=1, maximum=100)
    check_float(alpha, "length_alpha", minimum=0.0, maximum=5.0)
    B, K = src.shape[0], beam
    state = model.start(src, src_len)
    rows = torch.arange(B, device=src.device).repeat_interleave(K)  # (B*K,)
    state = model.reorder(state, rows)
    y = torch.full((B * K,), BOS, dtype=torch.long, device=src.device)
    scores = torch.full((B, K), float("-inf"), dtype=torch.float64)  # log p of each live prefix
    scores[:, 0] = 0.0  # one live prefix (<s>) at the start
    hist = torch.zeros(B, K, 0, dtype=torch.long)  # (B, K, t)
    attn = None  # (B, K, t, S)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B
    for t in range(max_len):
        logp, a, state = model.decode_step(state, y)  # (B*K, V), (B*K, S)
        V = logp.shape[-1]
        a = a.float().cpu().view(B, K, 1, -1)
        attn = a if attn is None else torch.cat([attn, a], dim=2)  # (B, K, t+1, S)
        cand = (scores[:, :, None] + logp.double().cpu().view(B, K, V)).view(B, K * V)  # (B, K*V)
        top, idx = cand.topk(min(K, K * V), dim=1)  # (B, K)
        pick_beam = torch.zeros(B, K, dtype=torch.long)
        pick_tok = torch.full((B, K), EOS, dtype=torch.long)
        pick_score = torch.full((B, K), float("-inf"), dtype=torch.float64)
        top_l, idx_l = top.tolist(), idx.tolist()
        for b in range(B):
            if done[b]:
                continue
            width, n_live = K - len(finished[b]), 0
            for s_val, i in zip(top_l[b][:width], idx_l[b][:width]):
                if s_val == float("-inf"):
                    break
                k, tok = divmod(i, V)
                if tok == EOS:  # finished: it leaves the beam
                    finished[b].append(Hypothesis(hist[b, k].tolist(), s_val, _normalised(s_val, t + 1, alpha),
                                                  attn[b, k].clone(), True))
                else:
                    pick_beam[b, n_live], pick_tok[b, n_live], pick_score[b, n_live] = k, tok, s_val
                    n_live += 1
            if n_live == 0:
                done[b] = True
            elif finished[b]:
                # the best score a live prefix can still reach: log p / max_len^alpha (log p <= 0 only falls)
                reachable = float(pick_score[b, 0]) / (max_len ** alpha)
                done[b] = max(h.score for h in finished[b]) >= reachable
        if all(done):
            break
        # the surviving prefixes: rows b*K + k of this step, extended by their token
        src_rows = (torch.arange(B)[:, None] * K + pick_beam).view(-1)  # (B*K,)
        state = model.reorder(state, src_rows.to(src.device))
        hist = torch.cat([hist.reshape(B * K, -1)[src_rows].view(B, K, -1), pick_tok[:, :, None]], dim=2)
        attn = attn.reshape(B * K, *attn.shape[2:])[src_rows].view(B, K, *attn.shape[2:])
        scores = pick_score
        y = pick_tok.view(-1).to(src.device)
    out = []
    for b in range(B):
        hyps = list(finished[b])
        if not done[b]:  # max_len reached: the live prefixes count, unfinished
            for k in range(K):
                if scores[b, k] > float("-inf"):
                    s_val = float(scores[b, k])
                    hyps.append(Hypothesis(hist[b, k].tolist(), s_val, _normalised(s_val, hist.shape[2], alpha),
                                           attn[b, k, :hist.shape[2]].clone(), False))
        out.append(max(hyps, key=lambda h: h.score))
    return out


def decode(model: Translator, src: torch.Tensor, src_len: torch.Tensor, *, beam: int = 1, alpha: float = 0.6,
           max_len: int | None = None) -> list[Hypothesis]:
    """Greedy decoding (``beam=1``) or beam search, up to ``max_len`` (default the model's
    ``max_target_len``) steps; the model is put in eval mode."""
    check_int(beam, "beam", minimum=1, maximum=100)
    check_float(alpha, "length_alpha", minimum=0.0, maximum=5.0)
    model.eval()
    max_len = model.config.max_target_len if max_len is None else max_len
    if beam == 1:
        return greedy(model, src, src_len, max_len, alpha=alpha)
    return beam_search(model, src, src_len, max_len, beam=beam, alpha=alpha)


# --------------------------------------------------------------------------- texts in, texts out


@dataclass
class Translation:
    """A translation of one text: the source and target pieces (for a plot's labels), the
    text, log p(y | x), the score, and the attention (rows: target pieces, </s> last when the
    model ended; columns: source pieces), each row summing to 1."""

    source: str
    text: str
    source_pieces: list[str]
    target_pieces: list[str]
    log_prob: float
    score: float
    attention: torch.Tensor
    ended: bool

    def to_json(self) -> dict:
        return {"source": self.source, "translation": self.text, "source_pieces": self.source_pieces,
                "target_pieces": self.target_pieces, "log_prob": self.log_prob, "score": self.score,
                "ended": self.ended, "attention": [[round(v, 6) for v in row] for row in self.attention.tolist()]}


def check_text(model: Translator, source_vocab: Vocab, text: Any, name: str = "text") -> list[int]:
    """The ids of a text to translate: a non-empty string of known pieces, not longer than the
    model takes. Each failure is one line."""
    from seqlab.tasks.translate_data import normalise

    if not isinstance(text, str):
        fail(name, "a string", type(text).__name__)
    if not normalise(text):
        fail(name, "some text to translate", "an empty text" if not text else "only whitespace")
    ids = source_vocab.encode(text, strict=True, name=name)
    limit = model.config.max_source_len
    if len(ids) > limit:
        unit = "characters" if source_vocab.mode == "chars" else "pieces"
        fail(name, f"at most {limit} {unit} (the run's max_source_len)", f"{len(ids)} {unit}")
    return ids


def translate_texts(model: Translator, source_vocab: Vocab, target_vocab: Vocab, texts: list[str], *,
                    beam: int = 1, alpha: float = 0.6, batch_size: int = 256) -> list[Translation]:
    """Translate ``texts`` (every one checked first: ``check_text``), in batches."""
    if not isinstance(texts, (list, tuple)) or not texts:
        fail("texts", "a non-empty list of strings", repr(texts)[:60])
    if len(source_vocab) != model.config.src_vocab_size or len(target_vocab) != model.config.tgt_vocab_size:
        fail("vocabularies", f"sizes {model.config.src_vocab_size} and {model.config.tgt_vocab_size} (the model's)",
             f"{len(source_vocab)} and {len(target_vocab)}")
    ids = [check_text(model, source_vocab, t, f"text {i + 1}" if len(texts) > 1 else "text")
           for i, t in enumerate(texts)]
    device = next(model.parameters()).device
    out: list[Translation] = []
    for lo in range(0, len(texts), batch_size):
        chunk = ids[lo:lo + batch_size]
        src, src_len = collate([torch.tensor(x) for x in chunk])
        hyps = decode(model, src.to(device), src_len, beam=beam, alpha=alpha)
        for text, x, h in zip(texts[lo:lo + batch_size], chunk, hyps):
            out.append(Translation(text, target_vocab.decode(h.ids), [source_vocab.show(i) for i in x],
                                   [target_vocab.show(i) for i in h.ids] + (["</s>"] if h.ended else []),
                                   h.log_prob, h.score, h.attention[:, :len(x)], h.ended))
    return out


__all__ = ["ARCHS", "Hypothesis", "RNNTranslator", "Translation", "TranslateConfig", "Translator",
           "TransformerTranslator", "beam_search", "check_text", "decode", "greedy", "make_model", "translate_texts"]
