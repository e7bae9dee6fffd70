r"""Sampling the next token and the decoding loop, for any language model.

A language model gives logits z (one per token of the vocabulary) for the next token; the
next token is drawn from

    p_i = exp(z_i / tau) / sum_j exp(z_j / tau)            temperature tau > 0

restricted, if asked, to

- top-k: the k tokens of largest z (tokens tied with the k-th largest are kept too);
- top-p (nucleus): the smallest set of most probable tokens whose probability mass reaches p
  (sorted by probability, ties by lower id; the most probable token is always kept),

and renormalised over the tokens kept. top-k is applied first, then top-p on what is left.
tau = 0 is greedy decoding: the token of largest z (the lowest id among ties).

The division by tau is done in log space, on y_i = (z_i - max_j z_j) / tau <= 0 (the same
distribution: softmax does not change when a constant is subtracted), in float64: z / tau
itself overflows to inf for a tiny tau (float32 logits at tau = 1e-39 already; 1e-300 is 0 in
float32) and softmax then gives NaN, while y only sends the tokens below the largest to -inf,
so a tiny tau samples like tau = 0 (uniformly among tied largest logits).

``generate`` is the decoding loop. It knows nothing of the model: ``next_logits(new_ids)``
is given the prompt first and then each sampled token, and returns the logits (V,) for the
token that follows everything fed so far (the model keeps its own state or KV cache).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

from seqlab.validation import check_float, check_int, check_tensor, fail


def _check_sampling_args(temperature: float, top_k: int | None, top_p: float | None) -> float:
    temperature = check_float(temperature, "temperature", minimum=0.0)
    if math.isinf(temperature):
        fail("temperature", "a finite number >= 0.0", temperature)
    if top_k is not None:
        check_int(top_k, "top_k", minimum=1)
    if top_p is not None:
        check_float(top_p, "top_p", minimum=0.0, maximum=1.0, open_min=True)
    return temperature


def _check_generator(generator: object) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        fail("generator", "a torch.Generator or None", type(generator).__name__)
    if generator.device.type != "cpu":
        fail("generator", "a CPU torch.Generator (sampling runs on the CPU)", f"one on {generator.device}")


def sample_next(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> int:
    """One token id drawn from softmax(logits / temperature), restricted to the top_k largest
    and then to the top_p nucleus (see the module docstring); temperature 0 is the argmax.

    logits: (V,), on any device (the draw runs on the CPU with ``generator``); -inf marks a
    token that may not be drawn."""
    temperature = _check_sampling_args(temperature, top_k, top_p)
    check_tensor(logits, "logits", ndim=1, dims="(vocab,)")
    _check_generator(generator)
    if logits.numel() == 0:
        fail("logits", "at least one token", "an empty tensor")
    z = logits.detach().float().cpu()
    if not bool(torch.isfinite(z).all()):  # one test for the usual case, where none of these can fail
        if bool(torch.isnan(z).any()):
            fail("logits", "no NaN", f"{int(torch.isnan(z).sum())} NaN value(s)")
        if bool((z == float("inf")).any()):
            fail("logits", "finite values or -inf", f"{int((z == float('inf')).sum())} value(s) +inf")
        if bool((z == float("-inf")).all()):
            fail("logits", "at least one token that is not -inf", "all -inf")
    if temperature == 0:
        return int(z.argmax())
    # y = (z - max z) / tau, in float64: 0 for the largest logit, -inf (not NaN) where a tiny
    # tau overflows; back in float32, where the draw is made as before
    z = ((z.double() - z.max().double()) / temperature).float()
    if top_k is not None and top_k < z.numel():
        # keep z_i >= the k-th largest z
        kth = torch.topk(z, top_k).values[-1]
        z = z.masked_fill(z < kth, float("-inf"))
    p = torch.softmax(z, dim=-1)
    if top_p is not None and top_p < 1.0:
        # sort by probability (stable: ties by lower id) and keep token j while the mass of
        # the tokens before it is still < top_p; the first token is always kept
        p_sorted, order = torch.sort(p, descending=True, stable=True)
        mass_before = torch.cumsum(p_sorted.double(), dim=0) - p_sorted.double()
        keep = torch.zeros_like(p, dtype=torch.bool)
        keep[order[mass_before < top_p]] = True
        p = p.masked_fill(~keep, 0.0)  # multinomial renormalises
    return int(torch.multinomial(p, 1, generator=generator))


def _check_ids(ids: object, name: str) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1 or ids.is_floating_point() or ids.dtype == torch.bool:
            fail(name, "a 1-D integer tensor or a list of ints", f"shape {tuple(ids.shape)}, dtype {ids.dtype}")
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        fail(name, "a list of integer token ids", type(ids).__name__)
    out = list(ids)
    for i in out:
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            fail(name, "integer token ids >= 0", repr(i))
    return out


def _cut_before(ids: list[int], text: str, position: int, decode: Callable[[list[int]], str]) -> list[int]:
    """The longest prefix of ``ids`` whose text is a prefix of text[:position]."""
    for j in range(len(ids), -1, -1):
        s = decode(ids[:j])
        if len(s) <= position and text.startswith(s):
            return ids[:j]
    return []  # unreachable: decode([]) is "" for any sensible decoder


def _check_stops(stop_ids, stop_strings, decode) -> tuple[set[int], list[str]]:
    """The stop ids as a set and the stop strings as a list (a single string is one stop
    string); stop strings need ``decode`` (ids -> text) to be recognised."""
    stops = set(_check_ids(stop_ids, "stop_ids")) if stop_ids is not None else set()
    if isinstance(stop_strings, str):
        stop_strings = [stop_strings]
    strings = list(stop_strings) if stop_strings is not None else []
    bad = [s for s in strings if not isinstance(s, str) or not s]
    if bad:
        fail("stop_strings", "non-empty strings", ", ".join(repr(s) for s in bad))
    if strings and not callable(decode):
        fail("decode", "a callable ids -> text when stop_strings are given", type(decode).__name__)
    return stops, strings


def generate(next_logits: Callable[[list[int]], torch.Tensor], prompt_ids: Sequence[int] | torch.Tensor,
             max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None, generator: torch.Generator | None = None,
             stop_ids: Iterable[int] | None = None, stop_strings: str | Iterable[str] | None = None,
             decode: Callable[[list[int]], str] | None = None,
             on_token: Callable[[int], None] | None = None) -> list[int]:
    """The generated token ids (without the prompt).

    next_logits(new_ids) -> (V,): called once with the prompt, then with ``[token]`` for each
    sampled token except the last; it returns the logits of the token that comes next.

    Stops after ``max_new_tokens`` tokens, or

    - at a token in ``stop_ids`` (e.g. the end-of-text id): that token is not returned;
    - when the text of the generated tokens, ``decode(generated)``, contains one of
      ``stop_strings`` (one string or several; ``decode`` is then required): the output is
      cut right before the earliest stop string, i.e. it is the longest run of generated
      tokens whose text ends at or before the stop string's start. With characters the cut
      is exact; a BPE token that straddles the start is dropped with its text before it.

    Sampling is ``sample_next``'s; ``seed`` makes the draws reproducible (a fresh
    ``torch.Generator`` seeded with it), or pass your own ``generator``; with neither, the
    draws use torch's global generator.

    ``on_token(token)``, if given, is called with each token as it joins the output, before
    the stop strings are looked for (so the last tokens it saw may be cut off the result;
    ``TextStream`` turns the tokens into text that is never taken back)."""
    prompt = _check_ids(prompt_ids, "prompt_ids")
    if not prompt:
        fail("prompt_ids", "at least one token", "an empty prompt")
    check_int(max_new_tokens, "max_new_tokens", minimum=0)
    _check_sampling_args(temperature, top_k, top_p)
    if not callable(next_logits):
        fail("next_logits", "a callable new_ids -> logits (V,)", type(next_logits).__name__)
    if seed is not None and generator is not None:
        fail("seed", "a seed or a generator, not both", f"seed {seed!r} and a generator")
    if seed is not None:
        # the range torch.Generator.manual_seed takes (int64 or uint64)
        check_int(seed, "seed", minimum=-(2**63), maximum=2**64 - 1)
        generator = torch.Generator().manual_seed(seed)
    _check_generator(generator)
    stops, strings = _check_stops(stop_ids, stop_strings, decode)
    if on_token is not None and not callable(on_token):
        fail("on_token", "a callable token -> None", type(on_token).__name__)

    out: list[int] = []
    if max_new_tokens == 0:
        return out
    logits = next_logits(prompt)
    vocab = None
    while True:
        check_tensor(logits, "next_logits(...)", ndim=1, dims="(vocab,)")
        if vocab is None:
            vocab = logits.numel()
        elif logits.numel() != vocab:
            fail("next_logits(...)", f"V = {vocab} logits, as at the first step", logits.numel())
        token = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
        if token in stops:
            return out
        out.append(token)
        if on_token is not None:
            on_token(token)
        if strings:
            text = decode(out)
            hits = [i for i in (text.find(s) for s in strings) if i >= 0]
            if hits:
                return _cut_before(out, text, min(hits), decode)
        if len(out) == max_new_tokens:
            return out
        logits = next_logits([token])


def generate_batch(decoder: Any, prompts: Sequence[Sequence[int] | torch.Tensor], max_new_tokens: int, *,
                   temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                   seeds: Sequence[int] | None = None, stop_ids: Iterable[int] | None = None,
                   stop_strings: str | Iterable[str] | None = None,
                   decode: Callable[[list[int]], str] | None = None) -> list[list[int]]:
    """``generate`` for several prompts at once: one list of generated ids per prompt, each
    equal to what ``generate`` gives for that prompt alone with ``seed=seeds[i]``.

    decoder: ``decoder.feed(rows) -> (B, V)`` appends ``rows[b]`` (the same number of new ids
    for every sequence) to sequence b and returns the logits of each one's next token;
    ``decoder.keep(indices)`` drops the other sequences (a GPT's ``next_logits_fn()``).

    The prompts may differ in length. All sequences move one position per step, in step: the
    first ``min(len(prompt))`` tokens of every prompt are fed at once, then at each step a
    sequence still inside its prompt is fed its next prompt token (its logits are not drawn
    from), and one past its prompt draws its next token with its own generator, seeded with
    ``seeds[i]``. A sequence that stops (``max_new_tokens``, a stop id or a stop string, as in
    ``generate``) leaves the batch. So sequence i sees exactly its own tokens at the positions
    it would have alone, and draws from its generator in the same order; only the rounding of
    batched products differs (by ~1e-7, far below what moves a draw in practice).

    seeds: one per prompt (None: every draw from torch's global generator, not reproducible
    one prompt at a time)."""
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence) or not prompts:
        fail("prompts", "a non-empty list of prompts (lists of token ids)", type(prompts).__name__
             if not isinstance(prompts, Sequence) or isinstance(prompts, (str, bytes)) else "an empty list")
    rows = [_check_ids(p, f"prompts[{i}]") for i, p in enumerate(prompts)]
    for i, p in enumerate(rows):
        if not p:
            fail(f"prompts[{i}]", "at least one token", "an empty prompt")
    check_int(max_new_tokens, "max_new_tokens", minimum=0)
    _check_sampling_args(temperature, top_k, top_p)
    if not callable(getattr(decoder, "feed", None)) or not callable(getattr(decoder, "keep", None)):
        fail("decoder", "an object with feed(rows) -> (B, V) and keep(indices)", type(decoder).__name__)
    if seeds is None:
        generators: list[torch.Generator | None] = [None] * len(rows)
    else:
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or len(seeds) != len(rows):
            fail("seeds", f"one seed per prompt ({len(rows)})", repr(seeds))
        for s in seeds:
            check_int(s, "seeds", minimum=-(2**63), maximum=2**64 - 1)
        generators = [torch.Generator().manual_seed(s) for s in seeds]
    stops, strings = _check_stops(stop_ids, stop_strings, decode)

    outs: list[list[int]] = [[] for _ in rows]
    if max_new_tokens == 0:
        return outs
    active = list(range(len(rows)))  # the prompts whose sequences are in the decoder's batch, in its order
    fed = min(len(p) for p in rows)  # positions fed so far (the same for every sequence)
    logits = decoder.feed([rows[i][:fed] for i in active])  # (B, V)
    while True:
        check_tensor(logits, "decoder.feed(...)", ndim=2, dims="(batch, vocab)")
        if logits.shape[0] != len(active):
            fail("decoder.feed(...)", f"{len(active)} rows of logits", logits.shape[0])
        next_tokens, still = [], []
        for b, i in enumerate(active):
            if fed < len(rows[i]):  # still inside its prompt: feed the next prompt token
                next_tokens.append(rows[i][fed])
                still.append(b)
                continue
            token = sample_next(logits[b], temperature=temperature, top_k=top_k, top_p=top_p,
                                generator=generators[i])
            if token in stops:
                continue
            out = outs[i]
            out.append(token)
            if strings:
                text = decode(out)
                hits = [j for j in (text.find(s) for s in strings) if j >= 0]
                if hits:
                    outs[i] = _cut_before(out, text, min(hits), decode)
                    continue
            if len(out) == max_new_tokens:
                continue
            next_tokens.append(token)
            still.append(b)
        if not still:
            return outs
        if len(still) < len(active):
            decoder.keep(still)
            active = [active[b] for b in still]
        logits = decoder.feed([[t] for t in next_tokens])
        fed += 1


@dataclass(frozen=True)
class SampleOptions:
    """Options of ``seqlab sample`` for a language model (``sample_text``).

    Attributes:
        prompt: text to start from (default: a newline, or the vocabulary's first character)
        length: tokens to generate at most (0 to 100000; seqlab sample prints them as they come)
        temperature: softmax temperature tau (0 = greedy)
        top_k: sample among the k most likely tokens
        top_p: sample among the most likely tokens whose probability mass reaches p, 0 < p <= 1
        stop: stop before this text (repeat for several)
        seed: seed of the draws (with --prompts, prompt i is drawn with seed + i)
        prompts: sample after several prompts at once, as one batch (repeat for several; instead of --prompt); one text per prompt, the i-th the same as --prompt alone with seed + i
    """

    prompt: str | None = None
    length: int = 300
    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int = 0
    prompts: tuple[str, ...] = ()


def default_prompt(tokenizer: Any) -> str:
    """A newline if the vocabulary has one, else its first token's text."""
    try:
        tokenizer.encode("\n")
        return "\n"
    except ValueError:
        return tokenizer.decode([0])


MAX_SAMPLE_LENGTH = 100_000  # SampleOptions.length at most: minutes of generation, and a screenful is ~2,000


class TextStream:
    """Text of generated tokens, handed out piece by piece as they come, never taken back.

    ``add(token)`` (give it as ``generate``'s ``on_token``) returns the new text that is
    certain to stay: text that might still be the start of a stop string is held back (the
    output will be cut before it), as is a token whose bytes end inside a character (BPE) or,
    with stop strings, one that may yet be dropped with them. ``finish(ids)`` returns the rest
    of the final text ``decode(ids)``. Without stop strings each token's text is decoded
    alone (with any bytes left over from the one before), so streaming n tokens costs O(n)."""

    def __init__(self, decode: Callable[[list[int]], str], stop_strings: Sequence[str] = ()):
        self.decode, self.stops = decode, tuple(stop_strings)
        self.emitted = ""  # the text handed out so far
        self.ids: list[int] = []  # with stop strings: every token so far; without: those not handed out yet
        self.lengths: list[int] = []  # with stop strings: len(decode(ids[:k + 1])) for each k

    def _held_back(self, text: str) -> int:
        """Characters at the end of ``text`` that may be the start of a stop string."""
        for n in range(min(len(text), max(len(s) for s in self.stops) - 1), 0, -1):
            if any(s.startswith(text[-n:]) for s in self.stops):
                return n
        return 0

    def add(self, token: int) -> str:
        self.ids.append(token)
        if not self.stops:
            text = self.decode(self.ids)
            if text.endswith("\ufffd"):  # a character split across tokens: wait for its other bytes
                return ""
            self.ids = []
            self.emitted += text
            return text
        text = self.decode(self.ids)
        self.lengths.append(len(text))
        # hand out whole tokens only (one that straddles a stop string is dropped with its text),
        # and never the last one, nor text that may begin a stop string or is one (the output
        # is cut before it)
        limit = min([len(text) - self._held_back(text)] + [text.find(s) for s in self.stops if s in text])
        safe = max((n for n in self.lengths[:-1] if n <= limit), default=0)
        if safe <= len(self.emitted) or text[:safe].endswith("\ufffd"):
            return ""
        piece = text[len(self.emitted):safe]
        self.emitted = text[:safe]
        return piece

    def finish(self, ids: list[int]) -> str:
        """The text of the final output ``ids`` not handed out yet."""
        text = self.decode(ids)
        if not text.startswith(self.emitted):  # cannot happen with a decoder whose text only grows
            return ""
        piece = text[len(self.emitted):]
        self.emitted = text
        return piece


def sample_text(model: Any, tokenizer: Any, options: SampleOptions, *,
                on_text: Callable[[str], None] | None = None, **generate_options: Any) -> str | list[str]:
    """The text ``model.generate`` samples after ``options.prompt`` (not included), cut before
    the first of the ``stop`` strings. With ``options.prompts`` (several prompts): a list, one
    text per prompt, prompt i drawn with seed ``options.seed + i`` (so entry i equals the text
    of ``prompt=prompts[i], seed=seed + i``), generated as one batch where the model has
    ``generate_batch``; ``on_text`` is not called then. ``model`` is any language model whose ``generate(ids,
    n, temperature=, top_k=, top_p=, seed=, stop_strings=, decode=)`` returns token ids;
    ``generate_options`` go to it too (a GPT's ``use_cache``).

    ``on_text(piece)``, if given, receives the text as it is generated (``TextStream``: the
    pieces joined are the text returned); the model must then also have
    ``next_logits_fn(**generate_options)`` (as every seqlab language model has), which
    ``generate`` drives here directly, with the model in eval mode and without gradients, as
    ``model.generate`` does. ``options.length`` is at most ``MAX_SAMPLE_LENGTH``."""
    if options.prompts:
        return _sample_texts(model, tokenizer, options, **generate_options)
    prompt = default_prompt(tokenizer) if options.prompt is None else options.prompt
    if not isinstance(prompt, str) or prompt == "":
        fail("prompt", "at least one character (or none for the default)", repr(prompt))
    length = options.length
    if isinstance(length, bool) or not isinstance(length, int) or not 0 <= length <= MAX_SAMPLE_LENGTH:
        fail("length", f"an integer from 0 to {MAX_SAMPLE_LENGTH} (tokens to generate)", repr(length))
    ids = tokenizer.encode(prompt, name="prompt")
    stops = list(options.stop) or None
    if on_text is None:
        out = model.generate(ids, length, temperature=options.temperature, top_k=options.top_k,
                             top_p=options.top_p, seed=options.seed, stop_strings=stops, decode=tokenizer.decode,
                             **generate_options)
        return tokenizer.decode(out)
    if not callable(on_text):
        fail("on_text", "a callable text -> None", type(on_text).__name__)
    stream = TextStream(tokenizer.decode, [s for s in options.stop if isinstance(s, str) and s])

    def on_token(token: int) -> None:
        piece = stream.add(token)
        if piece:
            on_text(piece)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = generate(model.next_logits_fn(**generate_options), ids, length, temperature=options.temperature,
                           top_k=options.top_k, top_p=options.top_p, seed=options.seed, stop_strings=stops,
                           decode=tokenizer.decode, on_token=on_token)
    finally:
        model.train(was_training)
    rest = stream.finish(out)
    if rest:
        on_text(rest)
    return tokenizer.decode(out)


def _sample_texts(model: Any, tokenizer: Any, options: SampleOptions, **generate_options: Any) -> list[str]:
    """``sample_text`` with ``options.prompts``: one text per prompt, prompt i drawn with
    ``options.seed + i``; in one batch where the model has ``generate_batch`` (a GPT),
    else one prompt after the other (the same texts)."""
    if options.prompt is not None:
        fail("prompt, prompts", "one or the other (--prompt for one text, --prompts for several)",
             f"prompt {options.prompt!r} and prompts {list(options.prompts)!r}")
    prompts = options.prompts
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
        fail("prompts", "a list of texts", type(prompts).__name__)
    bad = [p for p in prompts if not isinstance(p, str) or p == ""]
    if bad:
        fail("prompts", "texts of at least one character", repr(bad[0]))
    length = options.length
    if isinstance(length, bool) or not isinstance(length, int) or not 0 <= length <= MAX_SAMPLE_LENGTH:
        fail("length", f"an integer from 0 to {MAX_SAMPLE_LENGTH} (tokens to generate)", repr(length))
    check_int(options.seed, "seed", minimum=-(2**63), maximum=2**64 - 1 - len(prompts))
    ids = [tokenizer.encode(p, name=f"prompts[{i}]") for i, p in enumerate(prompts)]
    seeds = [options.seed + i for i in range(len(prompts))]
    stops = list(options.stop) or None
    common = dict(temperature=options.temperature, top_k=options.top_k, top_p=options.top_p, stop_strings=stops,
                  decode=tokenizer.decode, **generate_options)
    if callable(getattr(model, "generate_batch", None)):
        outs = model.generate_batch(ids, length, seeds=seeds, **common)
    else:
        outs = [model.generate(p, length, seed=s, **common) for p, s in zip(ids, seeds)]
    return [tokenizer.decode(out) for out in outs]


__all__ = ["MAX_SAMPLE_LENGTH", "SampleOptions", "TextStream", "default_prompt", "generate", "generate_batch",
           "sample_next", "sample_text"]
