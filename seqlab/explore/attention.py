r"""The attention widget's endpoints: the attention weights of a GPT or BERT run on a text.

Lecture, "Transformers": the weight of key t for query s is g(a^(q)_s . a^(k)_t / sqrt(m)),
g the softmax over t; a GPT masks it causally (query s sees keys t <= s, "s >= t"), a BERT
does not. The weights come from ``seqlab.viz.attention.attention_maps``, the function behind
``seqlab attention RUN --json``, so the widget shows the command's numbers.

- ``GET /api/attention/runs``: the runs below RUNS_DIR whose family has attention maps.
- ``GET /api/attention/maps?run=&text=&layer=&head=&causal=&top=``: the maps of one layer
  (every head, or one), the tokens, and the model's output distribution: for a GPT the next
  token after the text (from the last position), for a BERT the filler of each [MASK].

The causal toggle runs the *same trained weights* with the mask switched in every layer:
for a GPT, ``causal=false`` lets each query see the whole text (not what the GPT computes,
and every later layer's input changes with it); for a BERT, ``causal=true`` adds the mask it
was never trained with. The output distribution is always the model's own (its own mask).
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import torch
from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from seqlab.explore.common import BadRequest, family_of, models, run_path, runs_of

router = APIRouter()

MAX_CHARS = 400  # characters of text
MAX_TOKENS = 64  # tokens drawn (seqlab.viz.attention labels at most 64 positions)
MAX_TOP = 50  # most probable tokens listed


def attention_families() -> list[str]:
    from seqlab import runs

    return runs.families_with("attention")


@router.get("/runs")
def list_runs(request: Request) -> dict:
    """The runs below RUNS_DIR whose family draws attention maps (GPT, BERT ...)."""
    wanted = attention_families()
    out = [{"name": name, "family": meta["family"]} for _, name, meta in runs_of(request, wanted)]
    return {"runs": out, "families": sorted(wanted)}


def _blocks(model: torch.nn.Module) -> list:
    from seqlab.transformer.block import TransformerBlock

    return [m for m in model.modules() if isinstance(m, TransformerBlock)]


@contextmanager
def _causal(model: torch.nn.Module, causal: bool):
    """Every self-attention block of ``model`` with its causal mask on or off, for the time of
    the ``with`` (the caller holds the model's lock); restored afterwards."""
    blocks = _blocks(model)
    saved = [b.config for b in blocks]
    try:
        for b in blocks:
            b.config = dataclasses.replace(b.config, causal=causal)
        yield
    finally:
        for b, c in zip(blocks, saved):
            b.config = c


def _top(probs: torch.Tensor, tokenizer, k: int) -> list[dict]:
    """The k most probable tokens of ``probs`` (V,), most probable first."""
    from seqlab.viz.attention import _token_strings

    p, i = probs.topk(min(k, probs.numel()))
    ids = i.tolist()
    return [{"id": t, "token": s, "p": float(v)} for t, s, v in zip(ids, _token_strings(tokenizer, ids), p.tolist())]


def compute(model, record, text: str, *, layer: int, head: int, causal: bool | None, top: int) -> dict:
    """The answer of ``/maps`` (the caller holds the model's lock)."""
    from seqlab.viz.attention import attention_maps

    tok = record.tokenizer
    specials = bool(tok.special_tokens)  # as `seqlab attention`: "[MASK]" in the text is BERT's mask
    ids = tok.encode(text, name="text", specials=specials)
    cls_id = getattr(tok, "cls_id", None)
    if model.family == "bert" and cls_id is not None and (not ids or ids[0] != cls_id):
        ids = [cls_id] + ids  # as attention_maps (and BERT's training rows)
    block = model.config.block_size
    limit = min(block, MAX_TOKENS)
    if not ids:
        raise BadRequest(f"text: expected at least one token, got {text!r}")
    if len(ids) > limit:
        why = (f"block_size = {block}" if limit == block
               else f"the widget draws at most {MAX_TOKENS}; block_size = {block}")
        raise BadRequest(f"text: expected at most {limit} tokens ({why}), got {len(ids)} tokens "
                         f"({len(text)} characters)")
    blocks = _blocks(model)
    L, h = len(blocks), blocks[0].config.num_heads
    if not 1 <= layer <= L:
        raise BadRequest(f"layer: expected 1 to {L} (this run has {L} layers), got {layer}")
    if not 0 <= head <= h:
        raise BadRequest(f"head: expected 1 to {h} (this run has {h} heads), or 0 for every head, got {head}")
    own = blocks[0].config.causal
    causal = own if causal is None else causal
    if causal == own:
        maps = attention_maps(model, tok, text, specials=specials)
    else:
        with _causal(model, causal):
            maps = attention_maps(model, tok, text, specials=specials)
    heads = range(h) if head == 0 else [head - 1]
    weights = maps.weights[layer - 1]  # (h, S, S)
    x = torch.tensor([ids], device=next(model.parameters()).device)
    with torch.no_grad():
        logits = model(x).float()[0]  # (S, V), with the model's own mask
    if model.family == "bert":
        mask_id = getattr(tok, "mask_id", None)
        where = [t for t, i in enumerate(ids) if i == mask_id]
        outputs = [{"position": t, "top": _top(torch.softmax(logits[t], -1), tok, top)} for t in where]
        what = ("the filler of each [MASK]: o_t = softmax(z_t) at the masked position" if where else
                "write [MASK] in the text to see BERT's distribution for the hidden token")
    else:
        outputs = [{"position": len(ids) - 1, "top": _top(torch.softmax(logits[-1], -1), tok, top)}]
        what = "the next token after the text: o_t = softmax(w^(o) LN(a^(L)_t)) at the last position"
    return {"family": model.family, "tokens": maps.tokens, "ids": ids, "num_layers": L, "num_heads": h,
            "block_size": block, "max_tokens": limit, "layer": layer, "head": head, "causal": causal,
            "model_causal": own,
            "maps": [{"layer": layer, "head": j + 1, "weights": weights[j].tolist()} for j in heads],
            "outputs": outputs, "outputs_are": what}


@router.get("/maps")
async def maps(request: Request, run: str = Query(..., max_length=200),
               text: str = Query(..., min_length=1, max_length=MAX_CHARS),
               layer: int = Query(1, ge=1, le=64), head: int = Query(0, ge=0, le=64),
               causal: bool | None = Query(None), top: int = Query(10, ge=1, le=MAX_TOP)) -> dict:
    """The attention maps of ``layer`` (head 0: every head; 1..h: that one), the tokens, and
    the model's output distribution (``top`` most probable tokens)."""
    path = run_path(request, run)
    family = family_of(request, path)
    wanted = attention_families()
    if family not in wanted:
        raise BadRequest(f"run: expected a run of {', '.join(wanted)} (a family with attention maps), "
                         f"got {run!r}, a {family!r} run")

    def work() -> dict:
        model, record, lock = models(request).get(path)
        with lock:
            return compute(model, record, text, layer=layer, head=head, causal=causal, top=top)

    return {"run": run, **await run_in_threadpool(work)}
