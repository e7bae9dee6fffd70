r"""BERT: a bidirectional transformer encoder, pretrained by masked-language modelling.

Lecture, "Large Language Models": "BERT (Bidirectional Encoder Representations from
Transformers)". In GPT the attention is masked so that a unit a_s cannot pay attention to
units in its future (t > s). BERT's attention is not masked: the query at position s
attends to every key t of the sequence, before and after s (padding keys excepted). Such a
model cannot learn to predict the next token (it sees it); it learns instead to recover
tokens hidden in its input from both sides (``seqlab.data.mlm.mask_tokens``: 15 % of the
positions selected, of those 80 % [MASK], 10 % a random token, 10 % unchanged).

Model, for token ids x_1 .. x_T (x_1 = [CLS] in seqlab's data):

    a^(0)_t = w^(x) . x_t + p_t                 x_t one-hot: the x_t-th row of ``w_x`` (V, D),
                                                p_t a learned position vector      (B, T, D)
    a^(L)   = Encoder(a^(0))                     L transformer blocks with causal=False, then
                                                a final LayerNorm (seqlab.transformer.block)
    u_t     = LN(g(w^(m) . a^(L)_t + b^(m)))     the MLM transform, g = gelu         (D,)
    z_t     = w^(o) . u_t + b^(o)                logits over the V tokens, with the output
                                                weights tied to the embedding: w^(o) = w_x
    o_t     = softmax(z_t)

Masked-language-model cost, M the selected positions (targets y != -100):

    C = -(1 / |M|) sum_{(b, t) in M} log o_(b,t)[y_(b,t)]

Sequence classification (``BERTClassifier``) fine-tunes the whole encoder with a new
output layer on one vector per sequence:

    h = a^(L)_1                                  the hidden state at [CLS] (pooling="cls"), or
    h = (1 / n) sum_{t real} a^(L)_t             the mean over the non-padding positions ("mean")
    z = w^(c) . h + b^(c)                        (num_classes,)    C = -log softmax(z)[label]

Code names: ``w_x`` (V, D) token embedding, ``pos.p`` (block_size, D), ``encoder``,
``w_m`` (D, D), ``b_m`` (D,), ``norm_m`` (LN), ``b_o`` (V,); classifier ``w_c`` (K, D),
``b_c`` (K,).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.data.mlm import (
    IGNORE_INDEX,
    MLMDataset,
    PassageClassificationDataset,
    default_classification_corpora,
    mask_tokens,
)
from seqlab.llm.adapt import Adaptable, Adaptation
from seqlab.transformer.attention import padding_mask
from seqlab.transformer.block import BlockConfig, Encoder
from seqlab.transformer.layernorm import LayerNorm
from seqlab.transformer.position import LearnedPositionalEncoding
from seqlab.validation import (
    check_choice,
    check_float,
    check_int,
    check_tensor,
    check_token_ids,
    fail,
    fields_from_dict,
    resolve_config,
    shape_str,
)

# Named sizes (vocab_size and the special ids come from the tokenizer: BERTConfig.for_tokenizer).
PRESETS: dict[str, dict] = {
    "cpu-tiny": dict(num_layers=2, num_heads=4, d_model=64, block_size=64, dropout=0.0),
    "cpu-small": dict(num_layers=4, num_heads=4, d_model=128, block_size=128, dropout=0.0),
    "cpu-medium": dict(num_layers=6, num_heads=6, d_model=192, block_size=128, dropout=0.1),
    "gpu-baby": dict(num_layers=6, num_heads=6, d_model=384, block_size=256, dropout=0.1),
}
POOLINGS = ("cls", "mean")


@dataclass(frozen=True)
class BERTConfig:
    """Settings of a BERT.

    Attributes:
        vocab_size: V, tokens in the vocabulary, special tokens included (the tokenizer's).
        mask_id: the token id of [MASK] (the tokenizer's).
        pad_id, cls_id: the token ids of [PAD] and [CLS] (None if the vocabulary has none).
        block_size: the most positions T a sequence may have (rows of the position table).
        d_model: D, width of the token embeddings and of every block.
        num_heads: h, attention heads per block (d_model must be a multiple of h).
        num_layers: L, transformer blocks.
        d_ff: width of the blocks' MLP hidden layer (None: 4 D).
        dropout: dropout probability on the embeddings and inside the blocks while training.
        norm_first: pre-norm blocks (True) or post-norm, as the original BERT (False).
        fused: ``F.scaled_dot_product_attention`` in the attention (True) or the explicit form.
        layer_norm_eps: the eps of every LayerNorm (> 0).
    """

    vocab_size: int
    mask_id: int
    pad_id: int | None = None
    cls_id: int | None = None
    block_size: int = 128
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 4
    d_ff: int | None = None
    dropout: float = 0.0
    norm_first: bool = True
    fused: bool = False
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        check_int(self.vocab_size, "vocab_size", minimum=2)
        for name in ("mask_id", "pad_id", "cls_id"):
            value = getattr(self, name)
            if value is None and name != "mask_id":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.vocab_size:
                fail(name, f"a token id in [0, {self.vocab_size - 1}] (vocab_size {self.vocab_size})", repr(value))
        check_int(self.block_size, "block_size", minimum=1)
        check_int(self.num_layers, "num_layers", minimum=1)
        if self.d_ff is None:
            check_int(self.d_model, "d_model", minimum=1)
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        self.block_config()  # checks d_model, num_heads, d_ff, dropout, norm_first, fused, eps

    def block_config(self) -> BlockConfig:
        return BlockConfig(d_model=self.d_model, num_heads=self.num_heads, d_ff=self.d_ff, dropout=self.dropout,
                           activation="gelu", norm_first=self.norm_first, causal=False,
                           layer_norm_eps=self.layer_norm_eps, fused=self.fused)

    @classmethod
    def preset(cls, name: str, **fields) -> "BERTConfig":
        """A preset of ``PRESETS``; ``fields`` must give vocab_size and mask_id and may
        override the rest."""
        check_choice(name, "preset", PRESETS)
        return cls(**{**PRESETS[name], **fields})

    @classmethod
    def for_tokenizer(cls, tokenizer, preset: str | None = None, **overrides) -> "BERTConfig":
        """vocab_size and the ids of [MASK], [PAD], [CLS] from ``tokenizer`` (a
        ``seqlab.llm.tokenizers.Tokenizer`` with a [MASK] token), the sizes from ``preset``
        (None: the field defaults), then ``overrides``."""
        if not isinstance(getattr(tokenizer, "vocab_size", None), int):
            fail("tokenizer", "a tokenizer (vocab_size, mask_id)", type(tokenizer).__name__)
        if not isinstance(getattr(tokenizer, "mask_id", None), int):
            fail("tokenizer", "a tokenizer with a [MASK] special token", f"{type(tokenizer).__name__} without one")
        fields = dict(vocab_size=tokenizer.vocab_size, mask_id=tokenizer.mask_id,
                      pad_id=getattr(tokenizer, "pad_id", None), cls_id=getattr(tokenizer, "cls_id", None))
        if preset is not None:
            check_choice(preset, "preset", PRESETS)
            fields.update(PRESETS[preset])
        fields.update(overrides)
        return cls(**fields)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BERTConfig":
        return cls(**fields_from_dict(cls, d, "BERT config"))


def _check_ids(ids: object, config: BERTConfig, name: str = "ids") -> torch.Tensor:
    """ids: a (B, T) integer tensor, 1 <= T <= block_size, values in [0, V); returned as int64."""
    V = config.vocab_size
    return check_token_ids(ids, name, V, max_len=config.block_size, note=f" (vocab_size {V})",
                           integer="an integer tensor of token ids", max_len_note=" (the model's longest sequence)")


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """bf16 / fp16 logits (autocast) -> float32 for the softmax; float32 and float64 as they are."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _unpack(batch: object, names: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(x, y) or (x, y, key_padding_mask or lengths) -> (x, y, key_padding_mask or None)."""
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        got = f"a {type(batch).__name__} of {len(batch)}" if isinstance(batch, (tuple, list)) else type(batch).__name__
        fail("batch", f"a tuple {names} or {names[:-1]}, key_padding_mask or lengths)", got)
    x, y = batch[0], batch[1]
    extra = batch[2] if len(batch) == 3 else None
    if isinstance(extra, torch.Tensor) and extra.dim() == 1 and isinstance(x, torch.Tensor) and x.dim() == 2:
        # lengths (B,) -> key_padding_mask (B, T): True on the first lengths[b] positions
        extra = padding_mask(extra, x.shape[1])
    return x, y, extra


class BERT(nn.Module):
    """``BERT(config)`` or ``BERT(**fields)``. ``forward(ids, *, key_padding_mask=None,
    need_weights=False)`` -> logits (B, T, V); ``encode(ids, key_padding_mask=None)`` ->
    hidden states (B, T, D); ``loss((inputs, targets))`` for the trainer.

    key_padding_mask (B, T): True at real tokens, False at padding (seqlab's convention)."""

    family = "bert"

    def __init__(self, config: BERTConfig | None = None, /, **kwargs) -> None:
        super().__init__()
        config = resolve_config(config, kwargs, BERTConfig, type(self).__name__)
        self.config = c = config
        V, D = c.vocab_size, c.d_model
        self.w_x = nn.Parameter(torch.empty(V, D))  # w^(x): row i = embedding of token i, (V, D)
        self.pos = LearnedPositionalEncoding(max_len=c.block_size, d_model=D)  # p_t: (block_size, D)
        # pre-norm blocks leave their output unnormalised: a final LayerNorm; post-norm ends in one
        self.encoder = Encoder(num_layers=c.num_layers, config=c.block_config(), final_norm=c.norm_first)
        self.w_m = nn.Parameter(torch.empty(D, D))  # w^(m): (D, D)
        self.b_m = nn.Parameter(torch.zeros(D))  # b^(m): (D,)
        self.norm_m = LayerNorm(D, eps=c.layer_norm_eps)
        self.b_o = nn.Parameter(torch.zeros(V))  # b^(o): (V,); w^(o) is w_x (tied)
        # BERT's initialisation: N(0, 0.02^2) for the embedding and the MLM transform
        nn.init.normal_(self.w_x, std=0.02)
        nn.init.normal_(self.w_m, std=0.02)

    @staticmethod
    def activation_bytes(config: BERTConfig, batch_size: int) -> int:
        """About the bytes a training step on ``batch_size`` sequences of block_size tokens keeps
        for the backward pass (float32): per token and block ~12 D + 2 d_ff (and the attention
        weights, h T, unless fused), then the MLM head's logits where there is a target (15 %)."""
        c = config
        T, D, L = c.block_size, c.d_model, c.num_layers
        per_token = L * (12 * D + 2 * c.d_ff + (0 if c.fused else 2 * c.num_heads * T)) + 3 * D + c.vocab_size // 2
        return 4 * batch_size * T * per_token

    # -- the model -----------------------------------------------------------------------
    def encode_unchecked(self, ids: torch.Tensor, key_padding_mask=None, need_weights: bool = False):
        """:meth:`encode` without the checks of ``ids``: the caller has checked the inputs.
        With ``need_weights``, ``(a^(L), weights)`` as the ``Encoder`` returns them."""
        c = self.config
        # a^(0)_t = w^(x) . x_t + p_t
        a = self.w_x[ids]  # (B, T, D)
        a = self.pos.forward_unchecked(a)  # (B, T, D)
        p = c.dropout if self.training else 0.0
        a = F.dropout(a, p, training=p > 0)
        # a^(L) = Encoder(a^(0)): every position attends to every real position
        return self.encoder(a, key_padding_mask=key_padding_mask, need_weights=need_weights)

    def encode(self, ids: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, T) -> a^(L), (B, T, D)."""
        return self.encode_unchecked(_check_ids(ids, self.config), key_padding_mask)

    def mlm_head(self, h: torch.Tensor) -> torch.Tensor:
        """a^(L)_t (..., D) -> logits z_t (..., V)."""
        # u_t = LN(g(w^(m) . a^(L)_t + b^(m)))
        u = self.norm_m.forward_unchecked(F.gelu(h @ self.w_m.T + self.b_m))  # (..., D)
        # z_t = w^(o) . u_t + b^(o), w^(o) = w_x
        return u @ self.w_x.T + self.b_o  # (..., D) @ (D, V) -> (..., V)

    def forward(self, ids: torch.Tensor, *, key_padding_mask: torch.Tensor | None = None,
                need_weights: bool = False):
        """ids (B, T) -> logits z (B, T, V); with ``need_weights``, ``(logits, weights)``,
        weights a list of L tensors (B, h, T, T), each layer's attention weights."""
        ids = _check_ids(ids, self.config)
        out = self.encode_unchecked(ids, key_padding_mask, need_weights)
        if need_weights:
            h, blocks = out
            return self.mlm_head(h), [w["self"] for w in blocks]
        return self.mlm_head(out)

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """batch = (inputs (B, T), targets (B, T)) [, key_padding_mask (B, T) or lengths (B,)],
        targets -100 where nothing is predicted. Cross entropy over the masked positions only;
        metrics: ``accuracy`` (of the argmax at the masked positions), ``masked`` (|M|),
        ``tokens`` (B T, for the trainer's throughput)."""
        ids, targets, kpm = _unpack(batch, "(inputs, targets)")
        ids = _check_ids(ids, self.config, "inputs")
        check_tensor(targets, "targets", ndim=2, dims="(batch, time)")
        if targets.shape != ids.shape:
            fail("targets", f"shape {shape_str(ids)} (as inputs)", f"shape {shape_str(targets)}")
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            fail("targets", "an integer tensor (token ids, -100 where nothing is predicted)", f"dtype {targets.dtype}")
        selected = targets != IGNORE_INDEX  # (B, T): the positions M
        n = int(selected.sum())
        if n == 0:
            fail("targets", "at least one masked position (a target other than -100)", "none")
        y = targets[selected]  # (|M|,)
        V = self.config.vocab_size
        if int(y.min()) < 0 or int(y.max()) >= V:
            fail("targets", f"-100 or token ids in [0, {V - 1}]", f"values in [{int(y.min())}, {int(y.max())}]")
        h = self.encode_unchecked(ids, kpm)  # (B, T, D)
        # the output layer only where there is a target
        logits = self.mlm_head(h[selected])  # (|M|, V)
        # C = -(1/|M|) sum_{M} log o[y]
        loss = F.cross_entropy(_at_least_fp32(logits), y)
        accuracy = (logits.argmax(dim=-1) == y).float().mean().item()
        return loss, {"accuracy": accuracy, "masked": n, "tokens": ids.numel()}


# --------------------------------------------------------------------------- fill-mask


def _check_bert_tokenizer(model: object, tokenizer: object) -> None:
    if not isinstance(model, BERT):
        fail("model", "a BERT", type(model).__name__)
    if not callable(getattr(tokenizer, "encode", None)) or not callable(getattr(tokenizer, "decode", None)) \
            or not isinstance(getattr(tokenizer, "vocab_size", None), int):
        fail("tokenizer", "a seqlab.llm.tokenizers.Tokenizer", type(tokenizer).__name__)
    c = model.config
    if tokenizer.vocab_size != c.vocab_size:
        fail("tokenizer", f"vocab_size {c.vocab_size} (the model's)", f"vocab_size {tokenizer.vocab_size}")
    if getattr(tokenizer, "mask_id", None) != c.mask_id:
        fail("tokenizer", f"[MASK] at id {c.mask_id} (the model's mask_id)",
             f"mask_id {getattr(tokenizer, 'mask_id', None)}")


@torch.no_grad()
def fill(model: BERT, tokenizer, text: str, top_k: int = 5, *, add_cls: bool = True) -> list[list[tuple[str, float]]]:
    """The model's fillers for each [MASK] of ``text``, left to right: for each, a list of
    the ``top_k`` (token string, probability o_t[i]) of highest probability, most probable
    first. The probabilities are over the whole vocabulary (special tokens included).

    ``text`` is encoded with ``tokenizer.encode(text, specials=True)`` (write the mask as the
    literal "[MASK]"); with ``add_cls`` the tokenizer's [CLS] is put in front unless the text
    starts with it, as in ``MLMDataset``'s rows. A text longer than block_size tokens (with
    [CLS]) is an error: it is not cropped. Characters outside the vocabulary raise the
    tokenizer's error."""
    _check_bert_tokenizer(model, tokenizer)
    c = model.config
    check_int(top_k, "top_k", minimum=1, maximum=c.vocab_size)
    if not isinstance(add_cls, bool):
        fail("add_cls", "True or False", repr(add_cls))
    ids = tokenizer.encode(text, specials=True)
    cls_id = getattr(tokenizer, "cls_id", None)
    if add_cls and cls_id is not None and (not ids or ids[0] != cls_id):
        ids = [cls_id] + ids
    where = [t for t, i in enumerate(ids) if i == c.mask_id]
    if not where:
        fail("text", "at least one [MASK] token (e.g. 'ab[MASK]d')", repr(text))
    if len(ids) > c.block_size:
        fail("text", f"at most block_size = {c.block_size} tokens{' with [CLS]' if ids[0] == cls_id else ''}",
             f"{len(ids)} tokens")
    was_training = model.training
    model.eval()
    try:
        x = torch.tensor([ids], dtype=torch.int64, device=model.w_x.device)  # (1, T)
        h = model.encode(x)[0, where]  # (M, D)
        probs = torch.softmax(_at_least_fp32(model.mlm_head(h)), dim=-1)  # (M, V)
        top_p, top_i = probs.topk(top_k, dim=-1)  # (M, k), sorted, largest first
    finally:
        model.train(was_training)
    return [[(tokenizer.decode([int(i)]), float(p)) for p, i in zip(ps, is_)]
            for ps, is_ in zip(top_p.tolist(), top_i.tolist())]


# --------------------------------------------------------------------------- classification


@dataclass(frozen=True)
class BERTClassifierConfig(Adaptation):
    """Settings of a BERT sequence classifier.

    Attributes:
        bert: the encoder's config (a BERTConfig).
        num_classes: K, the number of classes (>= 2).
        pooling: the sequence's vector h, "cls" (the hidden state at position 0, which must
            hold [CLS]) or "mean" (the mean over the non-padding positions).
        dropout: dropout probability on the pooled vector h while training.

    and the :class:`Adaptation` fields (freeze, lora_rank, lora_alpha, and the pretrained
    BERT's base_checkpoint and base_sha256, set from the base run).
    """

    bert: BERTConfig
    num_classes: int
    pooling: str = "cls"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.bert, BERTConfig):
            fail("bert", "a BERTConfig", type(self.bert).__name__)
        check_int(self.num_classes, "num_classes", minimum=2)
        check_choice(self.pooling, "pooling", POOLINGS)
        check_float(self.dropout, "dropout", minimum=0.0, maximum=1.0, open_max=True)
        self.check_adaptation(self.bert.num_layers)

    def to_dict(self) -> dict:
        return {"bert": self.bert.to_dict(), "num_classes": self.num_classes, "pooling": self.pooling,
                "dropout": self.dropout, **self.adaptation_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BERTClassifierConfig":
        fields = fields_from_dict(cls, d, "BERT classifier config")
        if "bert" in fields:
            fields["bert"] = BERTConfig.from_dict(fields["bert"])
        return cls(**fields)


class BERTClassifier(Adaptable, nn.Module):
    """``BERTClassifier(bert, *, num_classes, pooling="cls", dropout=0.0, freeze=None,
    lora_rank=0, lora_alpha=None, base_checkpoint=None, base_sha256=None)``: a pretrained
    ``bert`` (its encoder and embeddings are fine-tuned with the head, or only its last
    blocks with ``freeze=K``, or LoRA's A and B with ``lora_rank=r``: ``seqlab.llm.adapt``;
    its MLM head is not used) and z = w^(c) . h + b^(c) on the pooled hidden state h.

    ``forward(ids, *, key_padding_mask=None)`` -> logits (B, K); ``loss((ids, labels))``
    or ``loss((ids, labels, key_padding_mask or lengths))`` for the trainer."""

    family = "bert-classifier"

    base_prefix = "bert."  # the base run's weights are this model's bert.*
    base_family = "bert"

    def __init__(self, bert: BERT, *, num_classes: int, pooling: str = "cls", dropout: float = 0.0,
                 freeze: int | None = None, lora_rank: int = 0, lora_alpha: float | None = None,
                 base_checkpoint: str | None = None, base_sha256: str | None = None) -> None:
        super().__init__()
        if not isinstance(bert, BERT):
            fail("bert", "a BERT", type(bert).__name__)
        self.config = c = BERTClassifierConfig(bert=bert.config, num_classes=num_classes, pooling=pooling,
                                               dropout=dropout, freeze=freeze, lora_rank=lora_rank,
                                               lora_alpha=lora_alpha, base_checkpoint=base_checkpoint,
                                               base_sha256=base_sha256)
        if c.pooling == "cls" and bert.config.cls_id is None:
            fail("pooling", "'mean' for a BERT without [CLS] (cls_id None)", repr(pooling))
        self.bert = bert
        D = bert.config.d_model
        ref = bert.w_x
        self.w_c = nn.Parameter(torch.empty(num_classes, D, device=ref.device, dtype=ref.dtype))  # w^(c): (K, D)
        self.b_c = nn.Parameter(torch.zeros(num_classes, device=ref.device, dtype=ref.dtype))  # b^(c): (K,)
        nn.init.normal_(self.w_c, std=0.02)
        self.adapt(Adaptation.of(c))

    def adaptation_parts(self) -> tuple[list[nn.Parameter], list[nn.Module], list[nn.Parameter]]:
        # w^(x) and p; the encoder's blocks in order; the MLM head (w^(m), b^(m), its norm, b^(o)), unused here
        b = self.bert
        return ([b.w_x, *b.pos.parameters()], list(b.encoder.blocks),
                [b.w_m, b.b_m, *b.norm_m.parameters(), b.b_o])

    @classmethod
    def from_config(cls, config: BERTClassifierConfig) -> "BERTClassifier":
        """A classifier with a freshly initialised BERT (then load a checkpoint's weights)."""
        if not isinstance(config, BERTClassifierConfig):
            fail("config", "a BERTClassifierConfig", type(config).__name__)
        return cls(BERT(config.bert), **{k: v for k, v in config.to_dict().items() if k != "bert"})

    def pool(self, h: torch.Tensor, ids: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        """a^(L) (B, T, D) -> h (B, D)."""
        if self.config.pooling == "cls":
            # h = a^(L)_1, the [CLS] position
            return h[:, 0]  # (B, D)
        if key_padding_mask is None:
            real = torch.ones(ids.shape, dtype=h.dtype, device=h.device)  # (B, T)
        elif key_padding_mask.dtype == torch.bool:
            real = key_padding_mask.to(h.dtype)  # (B, T): 1 at real tokens, 0 at padding
        else:
            real = torch.isfinite(key_padding_mask).to(h.dtype)  # a float mask: -inf at padding
        # h = (1/n) sum_{t real} a^(L)_t
        return (h * real[..., None]).sum(dim=1) / real.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, D)

    def forward(self, ids: torch.Tensor, *, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, T) -> logits z (B, K)."""
        bc = self.bert.config
        ids = _check_ids(ids, bc)
        if self.config.pooling == "cls" and bool((ids[:, 0] != bc.cls_id).any()):
            bad = ids[:, 0][ids[:, 0] != bc.cls_id]
            fail("ids", f"[CLS] (id {bc.cls_id}) at position 0 of every row (pooling='cls')",
                 f"id {int(bad[0])} at position 0 of {bad.numel()} row(s)")
        h = self.bert.encode_unchecked(ids, key_padding_mask)  # (B, T, D)
        h = self.pool(h, ids, key_padding_mask)  # (B, D)
        p = self.config.dropout if self.training else 0.0
        h = F.dropout(h, p, training=p > 0)
        # z = w^(c) . h + b^(c)
        return h @ self.w_c.T + self.b_c  # (B, K)

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """Cross entropy of the labels (B,); metrics ``accuracy`` and ``tokens``."""
        ids, labels, kpm = _unpack(batch, "(ids, labels)")
        logits = self(ids, key_padding_mask=kpm)  # (B, K)
        check_tensor(labels, "labels", ndim=1, dims="(batch,)")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            fail("labels", "an integer tensor of class ids", f"dtype {labels.dtype}")
        if labels.shape[0] != ids.shape[0]:
            fail("labels", f"one label per sequence ({ids.shape[0]})", f"shape {shape_str(labels)}")
        K = self.config.num_classes
        if int(labels.min()) < 0 or int(labels.max()) >= K:
            fail("labels", f"class ids in [0, {K - 1}]", f"values in [{int(labels.min())}, {int(labels.max())}]")
        # C = -(1/B) sum_b log softmax(z_b)[label_b]
        loss = F.cross_entropy(_at_least_fp32(logits), labels)
        accuracy = (logits.argmax(dim=-1) == labels).float().mean().item()
        return loss, {"accuracy": accuracy, "tokens": ids.numel()}


@torch.no_grad()
def evaluate(classifier: BERTClassifier, dataset: PassageClassificationDataset, split: str = "val", *,
             batch_size: int = 64) -> float:
    """Accuracy of ``classifier`` over every passage of ``split`` (in order, in eval mode;
    deterministic)."""
    if not isinstance(classifier, BERTClassifier):
        fail("classifier", "a BERTClassifier", type(classifier).__name__)
    if not isinstance(dataset, PassageClassificationDataset):
        fail("dataset", "a PassageClassificationDataset", type(dataset).__name__)
    check_int(batch_size, "batch_size", minimum=1)
    if dataset.num_classes != classifier.config.num_classes:
        fail("dataset", f"{classifier.config.num_classes} labels (the classifier's num_classes)",
             f"{dataset.num_classes} labels {list(dataset.labels)}")
    ids, labels = dataset.passages(split)  # (N, T), (N,)
    device = classifier.w_c.device
    was_training = classifier.training
    classifier.eval()
    correct = 0
    try:
        for i in range(0, ids.shape[0], batch_size):
            logits = classifier(ids[i:i + batch_size].to(device))  # (b, K)
            correct += int((logits.argmax(dim=-1).cpu() == labels[i:i + batch_size]).sum())
    finally:
        classifier.train(was_training)
    return correct / ids.shape[0]


def unigram_accuracy(targets: torch.Tensor, counts: torch.Tensor) -> float:
    """The baseline a masked-token predictor must beat: the accuracy on ``targets`` (-100
    ignored) of always guessing the most frequent token of ``counts`` (V,) (e.g. the
    training split's token counts)."""
    check_tensor(targets, "targets")
    check_tensor(counts, "counts", ndim=1, dims="(vocab,)")
    y = targets[targets != IGNORE_INDEX]
    if y.numel() == 0:
        fail("targets", "at least one target other than -100", "none")
    guess = int(counts.argmax())
    return float((y == guess).float().mean())


@torch.no_grad()
def masked_accuracy(model: BERT, data: MLMDataset, *, batches: int = 50, batch_size: int = 32,
                    seed: int = 1234) -> dict[str, float]:
    """Masked-token accuracy on random held-out windows (the validation split, masked with a
    fixed seed), with the unigram baseline: always guess the most frequent token of the
    training split."""
    if not isinstance(model, BERT):
        fail("model", "a BERT", type(model).__name__)
    if not isinstance(data, MLMDataset):
        fail("data", "an MLMDataset", type(data).__name__)
    check_int(batches, "batches", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    g = torch.Generator().manual_seed(seed)
    counts = torch.bincount(data.data.train_data, minlength=model.config.vocab_size)
    device = model.w_x.device
    correct = total = 0
    base_correct = 0.0
    was_training = model.training
    model.eval()
    try:
        for _ in range(batches):
            x, y = data.get_batch("val", batch_size, g)
            logits = model(x.to(device)).cpu()
            sel = y != IGNORE_INDEX
            n = int(sel.sum())
            correct += int((logits.argmax(-1)[sel] == y[sel]).sum())
            base_correct += unigram_accuracy(y, counts) * n
            total += n
    finally:
        model.train(was_training)
    return {"accuracy": correct / total, "unigram_accuracy": base_correct / total, "masked": total}


__all__ = [
    "BERT",
    "masked_accuracy",
    "IGNORE_INDEX",
    "POOLINGS",
    "PRESETS",
    "BERTClassifier",
    "BERTClassifierConfig",
    "BERTConfig",
    "MLMDataset",
    "PassageClassificationDataset",
    "default_classification_corpora",
    "evaluate",
    "fill",
    "mask_tokens",
    "unigram_accuracy",
]
