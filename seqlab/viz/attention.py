"""Attention maps: the weights g(a^(q)_s . a^(k)_t / sqrt(m)) of every layer and head, one
heat map per (layer, head), queries s down the rows and keys t along the columns.

``attention_maps(model, tokenizer, text)`` runs a GPT or a BERT on ``text`` and returns the
weights; ``plot_attention_maps`` draws them on a grid (a row per layer, a column per head).
In a GPT's maps everything above the diagonal is zero (a query s sees keys t <= s).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from seqlab.validation import fail
from seqlab.viz.plots import check_output_path, new_figure, save_png

MAX_POSITIONS = 64  # more than this many tokens make unreadable tick labels


@dataclass
class AttentionMaps:
    """weights: (L, h, S, S) attention weights of a self-attention stack for one text;
    tokens: the S token strings; family: "gpt" or "bert"."""

    weights: torch.Tensor
    tokens: list[str]
    family: str

    @property
    def num_layers(self) -> int:
        return self.weights.shape[0]

    @property
    def num_heads(self) -> int:
        return self.weights.shape[1]

    def to_json(self) -> dict:
        return {"family": self.family, "tokens": self.tokens,
                "weights": [[head.tolist() for head in layer] for layer in self.weights]}


def _token_strings(tokenizer, ids: list[int]) -> list[str]:
    strings = tokenizer.token_strings(ids) if hasattr(tokenizer, "token_strings") else \
        [tokenizer.decode([i]) for i in ids]
    return [s.replace("\n", "\\n").replace(" ", "\u2423") or "\u2205" for s in strings]


@torch.no_grad()
def attention_maps(model, tokenizer, text: str, *, specials: bool = False) -> AttentionMaps:
    """The attention weights of every layer and head of ``model`` (a GPT or a BERT, the
    family read from ``model.family``) on ``text``; at most the model's ``block_size`` tokens
    (a longer text is an error, so that no position is silently dropped)."""
    if not isinstance(text, str) or not text:
        fail("text", "a non-empty string", repr(text))
    ids = tokenizer.encode(text, name="text", specials=specials)
    if not ids:
        fail("text", "at least one token", repr(text))
    cls_id = getattr(tokenizer, "cls_id", None)
    if model.family == "bert" and cls_id is not None and ids[0] != cls_id:
        ids = [cls_id] + ids  # as BERT's training rows
    T_max = model.config.block_size
    if len(ids) > T_max:
        fail("text", f"at most block_size = {T_max} tokens", f"{len(ids)} tokens")
    was_training = model.training
    model.eval()
    try:
        x = torch.tensor([ids], device=next(model.parameters()).device)
        _, per_layer = model(x, need_weights=True)  # [(1, h, S, S)] * L
    finally:
        model.train(was_training)
    weights = torch.stack([w[0] for w in per_layer]).float().cpu()  # L x (1, h, S, S) -> (L, h, S, S)
    return AttentionMaps(weights=weights, tokens=_token_strings(tokenizer, ids), family=model.family)


def plot_attention_maps(maps: AttentionMaps, path: str | os.PathLike, *, title: str = "") -> Path:
    """A grid of heat maps, a row per layer and a column per head; tick labels are the
    tokens when there are at most 64 of them."""
    path = check_output_path(path, "png")
    L, h, S, _ = maps.weights.shape
    cell = 1.6 if S <= 16 else 2.4 if S <= 40 else 3.2
    fig = new_figure(width=cell * h + 0.8, height=cell * L + 0.6)
    labels = S <= MAX_POSITIONS
    fontsize = 7 if S <= 16 else 5 if S <= 32 else 3.5
    for l in range(L):
        for j in range(h):
            ax = fig.add_subplot(L, h, l * h + j + 1)
            ax.imshow(maps.weights[l, j].numpy(), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(f"layer {l + 1}, head {j + 1}", fontsize=7)
            if labels:
                ax.set_xticks(range(S))
                ax.set_yticks(range(S))
                ax.set_xticklabels(maps.tokens, rotation=90, fontsize=fontsize)
                ax.set_yticklabels(maps.tokens, fontsize=fontsize)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
            if j == 0:
                ax.set_ylabel("query s", fontsize=7)
            if l == L - 1:
                ax.set_xlabel("key t", fontsize=7)
    fig.suptitle(title or f"{maps.family} attention weights, {L} layers x {h} heads", fontsize=9)
    return save_png(fig, path)
