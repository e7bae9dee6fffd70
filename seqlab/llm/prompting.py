r"""Prompting: learning from the context, without changing a weight.

Lecture, "Large Language Models": prompt engineering "does not alter the weights, and only
provides more context (in the form of examples)". This module makes that measurable on a
small GPT (``seqlab.llm.gpt``) pretrained on a mixture of synthetic tasks written as text
(``seqlab.llm.icl_family``), after Brown et al. (2020), "Language Models are Few-Shot
Learners", and Olsson et al. (2022), "In-context Learning and Induction Heads".

The tasks, on lists of distinct symbols (the digits 0 .. n-1, ``symbols`` = n):

    sort      y = the symbols of x in increasing order
    reverse   y = x_L ... x_1
    cipher    y = pi(c) for one symbol c, pi a bijection of the n symbols drawn fresh for
              every sequence, so the mapping can only be read from the demonstrations in
              the prompt

One sequence holds an optional instruction (the task's name), k demonstrations and a query,
one per line; for sort and reverse every list of a sequence has the same length L
(``length``: (shortest, longest), by default (4, 4); ``symbols``: by default 6):

    sort:            <- instruction-style sequences only
    413>134          <- k demonstrations "x>y"
    7250>0257
    352>             <- the query; the answer is "235" and a newline

A cipher demonstration maps one symbol, and the query asks for one symbol that the
demonstrations show (drawn among them, with k >= 1; with k = 0 any symbol, which nothing can
tell): reading the answer from the prompt is then exactly induction, the answer is the token
that followed the earlier occurrence of the query's "c>":

    3>0              <- k demonstrations "c>pi(c)", symbols drawn with replacement
    5>1
    3>0
    5>               <- the query, a demonstrated symbol; the answer is "1"

``make_sequence(task, shots, rng)`` draws one (``random.Random`` ``rng``: seeded, so
deterministic). The lists split once and for all into a training part and a held-out part
(a list, or a cipher pi, is held out when the CRC-32 of its text is a multiple of 5): a
"train" sequence uses no held-out list or cipher, a "val" sequence's query list (sort,
reverse) or cipher pi is held out, so that every measured prompt asks for an unseen task
instance.

Measured, with the weights fixed:

    exact match   acc_k = (1/N) sum_i 1[ greedy answer to prompt_i(k shots) = y_i ]

computed by teacher forcing: the greedy answer equals y exactly iff at every answer position
the argmax of o_t is the expected token (the answer's own tokens before it given), so one
forward pass of prompt + answer scores a whole batch (``few_shot_accuracy``);

    induction score  I(l, h) = 1/(n B) sum_b sum_{t=n}^{2n-1} A^(l,h)_b[t, t-n+1]

on B sequences of n random distinct tokens repeated twice: A[s, t] is head (l, h)'s
attention g(a^(q)_s . a^(k)_t / sqrt(m)) from query s to key t, and t - n + 1 is the token
that followed the previous occurrence of token s, the "induction target" (Olsson et al.
2022, section "Measuring induction heads"). ``induction_score`` returns every head's score
and the best head. The same measure on the cipher's prompts (``cipher_induction_score``):

    J(l, h) = (1/N) sum_i sum_{t in targets_i} A^(l,h)_i[q_i, t]

from the query's ">" (q_i, where the answer is predicted) to the answers of the
demonstrations of the query's symbol (the tokens after the earlier occurrences of "c>").

The pretraining mixture may also hold repeated-random-tokens sequences (``copy_sequence``),
the classic data on which induction heads form.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import permutations
from typing import Sequence

import torch

from seqlab.validation import check_choice, check_int, fail

TASKS = ("sort", "reverse", "cipher")
SYMBOLS = "0123456789"
ARROW = ">"  # between a list and its answer
END = "\n"  # after every line; the answer's last token
COLON = ":"  # after the instruction word
# the fixed alphabet of the character tokenizer: separators, symbols, the instruction words' letters
ALPHABET = END + COLON + ARROW + SYMBOLS + "".join(sorted(set("".join(TASKS))))
SPLITS = ("train", "val")
HELD_OUT_MOD = 5  # a list or cipher is held out when crc32(its text) % 5 == 0 (about 1 in 5)
IGNORE = -100  # target id of a position the loss skips
DEFAULT_LENGTH = (4, 4)  # the icl family's default lists: 4 of 6 symbols
DEFAULT_SYMBOLS = 6


def _text(xs: Sequence[int]) -> str:
    return "".join(SYMBOLS[s] for s in xs)


def held_out(xs: Sequence[int]) -> bool:
    """Whether a list (or a cipher, written as the images of 0 .. n-1) belongs to the held-out
    part: crc32 of its text is a multiple of 5."""
    return zlib.crc32(_text(xs).encode()) % HELD_OUT_MOD == 0


@lru_cache(maxsize=None)
def _lists(symbols: int, length: int) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
    """(training lists, held-out lists) of ``length`` distinct symbols among ``symbols``."""
    train, val = [], []
    for p in permutations(range(symbols), length):
        (val if held_out(p) else train).append(p)
    return tuple(train), tuple(val)


def check_settings(*, symbols: int, length: tuple[int, int]) -> None:
    check_int(symbols, "symbols", minimum=4, maximum=len(SYMBOLS))
    if not (isinstance(length, (tuple, list)) and len(length) == 2):
        fail("length", "a pair (shortest, longest)", repr(length))
    lo, hi = length
    check_int(lo, "shortest list length", minimum=1, maximum=symbols)
    check_int(hi, f"longest list length (at least the shortest, {lo})", minimum=lo, maximum=symbols)
    for L in range(lo, hi + 1):
        tr, va = _lists(symbols, L)
        if not tr or not va:
            fail("length", f"list lengths with both training and held-out lists of {symbols} symbols",
                 f"length {L}, with {len(tr)} training and {len(va)} held-out lists")


def solve(task: str, xs: Sequence[int], cipher: Sequence[int] | None = None) -> tuple[int, ...]:
    """The answer to list ``xs`` under ``task`` (``cipher``: the images pi(0) .. pi(n-1))."""
    check_choice(task, "task", TASKS)
    if task == "sort":
        return tuple(sorted(xs))
    if task == "reverse":
        return tuple(reversed(xs))
    if cipher is None:
        fail("cipher", "the cipher's images pi(0) .. pi(n-1)", "None")
    return tuple(cipher[s] for s in xs)


@dataclass(frozen=True)
class TaskSequence:
    """One generated sequence: ``prompt`` (instruction, demonstrations, query and ``>``) and
    ``answer`` (the query's answer, without the final newline); ``text`` = prompt + answer +
    newline. ``demos`` are the (x, y) pairs, ``query`` x, ``cipher`` pi (images of 0 .. n-1)
    or None; ``spans``: (start, end) character ranges of every answer (demonstrations' and the
    query's) with its newline, the positions the loss is taken on. A copying sequence
    (``copy_sequence``) has task "copy", no demonstrations, the first copy and the second's
    first token as ``prompt`` and the rest of the second copy as ``answer``."""

    task: str
    shots: int
    instruction: bool
    prompt: str
    answer: str
    demos: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    query: tuple[int, ...]
    cipher: tuple[int, ...] | None
    spans: tuple[tuple[int, int], ...] = field(repr=False)

    @property
    def text(self) -> str:
        return self.prompt + self.answer + END


def _draw_cipher(symbols: int, rng: random.Random, split: str) -> tuple[int, ...]:
    want = split == "val"
    for _ in range(10_000):
        pi = list(range(symbols))
        rng.shuffle(pi)
        if held_out(pi) == want:
            return tuple(pi)
    fail("symbols", "an alphabet with both training and held-out ciphers", symbols)  # pragma: no cover


def make_sequence(task: str, shots: int, rng: random.Random, *, instruction: bool = False,
                  length: tuple[int, int] = DEFAULT_LENGTH, symbols: int = DEFAULT_SYMBOLS,
                  split: str = "train") -> TaskSequence:
    """One sequence of ``task`` with ``shots`` demonstrations and a query, drawn with ``rng``
    (a ``random.Random``: the same seed gives the same sequence). ``instruction``: begin with
    the task's name (``sort:``); ``length``: (shortest, longest) list length L of sort and
    reverse, one L per sequence (a cipher line maps one symbol, and its query is one of the
    demonstrated symbols, any symbol with 0 shots); ``symbols``: n, the alphabet 0 .. n-1;
    ``split``: "train" draws no held-out list or cipher, "val" draws the query list (sort,
    reverse) or the cipher from the held-out ones."""
    check_choice(task, "task", TASKS)
    check_int(shots, "shots", minimum=0)
    check_choice(split, "split", SPLITS)
    check_settings(symbols=symbols, length=length)
    if not isinstance(rng, random.Random):
        fail("rng", "a random.Random", type(rng).__name__)
    demos = []
    if task == "cipher":
        # one symbol per line: a demonstration "c>pi(c)", the query "c>" for a demonstrated c
        cipher = _draw_cipher(symbols, rng, split)
        for _ in range(shots):
            x = (rng.randrange(symbols),)
            demos.append((x, solve(task, x, cipher)))
        query = demos[rng.randrange(shots)][0] if shots else (rng.randrange(symbols),)
    else:
        L = rng.randint(length[0], length[1])
        train_lists, val_lists = _lists(symbols, L)
        cipher = None
        for _ in range(shots):
            x = rng.choice(train_lists)
            demos.append((x, solve(task, x, cipher)))
        query = rng.choice(val_lists if split == "val" else train_lists)
    answer = solve(task, query, cipher)
    parts, spans = [], []
    pos = 0
    if instruction:
        parts.append(task + COLON + END)
        pos += len(parts[-1])
    for x, y in demos:
        line = _text(x) + ARROW
        parts.append(line + _text(y) + END)
        spans.append((pos + len(line), pos + len(parts[-1])))
        pos += len(parts[-1])
    prompt = "".join(parts) + _text(query) + ARROW
    spans.append((len(prompt), len(prompt) + len(answer) + 1))
    return TaskSequence(task=task, shots=shots, instruction=instruction, prompt=prompt, answer=_text(answer),
                        demos=tuple(demos), query=tuple(query), cipher=cipher, spans=tuple(spans))


def max_sequence_length(max_shots: int, length: tuple[int, int]) -> int:
    """The most characters a sequence with at most ``max_shots`` demonstrations can have."""
    L = length[1]
    header = max(len(t) for t in TASKS) + 2
    return header + (max_shots + 1) * (2 * L + 2)


def mixture_sequence(rng: random.Random, *, tasks: Sequence[str] = TASKS, max_shots: int = 10,
                     instruction: float = 0.5, length: tuple[int, int] = DEFAULT_LENGTH, symbols: int = DEFAULT_SYMBOLS,
                     split: str = "train") -> TaskSequence:
    """One draw of the pretraining mixture: a task uniformly among ``tasks``; with probability
    ``instruction`` an instruction-style sequence (the task's name, then 0 .. max_shots
    demonstrations), else a plain few-shot one (1 .. max_shots demonstrations: without a name
    and without examples the task could not be known)."""
    task = tasks[rng.randrange(len(tasks))]
    named = rng.random() < instruction
    shots = rng.randint(0 if named else 1, max_shots)
    return make_sequence(task, shots, rng, instruction=named, length=length, symbols=symbols, split=split)


COPY_TOKENS = ALPHABET.replace(END, "")  # what a repeated-random-tokens sequence is made of


def copy_sequence(rng: random.Random, *, shortest: int = 8, longest: int = len(COPY_TOKENS)) -> TaskSequence:
    """A repeated-random-tokens sequence (the copying task of the pretraining mixture, after
    Olsson et al. 2022): m distinct characters of the alphabet (no newline), m drawn in
    [shortest, longest], written twice, then a newline. Its loss positions are the second
    copy's tokens after its first: each is the token that followed the previous occurrence
    of the token before it, so only an induction-like lookup predicts them."""
    check_int(shortest, "shortest", minimum=2, maximum=len(COPY_TOKENS))
    check_int(longest, f"longest (at least shortest, {shortest})", minimum=shortest, maximum=len(COPY_TOKENS))
    m = rng.randint(shortest, longest)
    first = "".join(rng.sample(COPY_TOKENS, m))
    return TaskSequence(task="copy", shots=0, instruction=False, prompt=first + first[0], answer=first[1:],
                        demos=(), query=(), cipher=None, spans=((m + 1, 2 * m),))


# --------------------------------------------------------------------------- batches


def encode_batch(sequences: Sequence[TaskSequence], tokenizer, *, answers_only: bool = True,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y), int64 (B, T): x the texts' ids but the last, y the next ids, padded on the right
    to the longest (x with newlines, y with -100, which the loss skips). ``answers_only``: y is
    -100 outside the answers (the inputs are random, the instruction is a free choice: only the
    answers can be predicted)."""
    rows = []
    for seq in sequences:
        ids = tokenizer.encode(seq.text, name="sequence")
        target = list(ids[1:])
        if answers_only:
            keep = [False] * len(ids)
            for a, b in seq.spans:
                for i in range(a, b):
                    keep[i] = True
            target = [t if keep[i + 1] else IGNORE for i, t in enumerate(target)]
        rows.append((ids[:-1], target))
    T = max(len(x) for x, _ in rows)
    pad = tokenizer.encode(END)[0]
    x = torch.full((len(rows), T), pad, dtype=torch.int64)
    y = torch.full((len(rows), T), IGNORE, dtype=torch.int64)
    for i, (xi, yi) in enumerate(rows):
        x[i, :len(xi)] = torch.tensor(xi)
        y[i, :len(yi)] = torch.tensor(yi)
    return x.to(device), y.to(device)


# --------------------------------------------------------------------------- accuracy


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def exact_matches(model, tokenizer, sequences: Sequence[TaskSequence], *, batch_size: int = 64) -> list[bool]:
    """For each sequence: does greedy decoding after its prompt give exactly its answer and a
    newline? By teacher forcing: every answer position's argmax must be the expected token."""
    T_max = model.config.block_size
    out: list[bool] = []
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(sequences), batch_size):
            chunk = sequences[i:i + batch_size]
            long = [len(s.text) - 1 for s in chunk if len(s.text) - 1 > T_max]
            if long:
                fail("prompt", f"a prompt and answer of at most block_size + 1 = {T_max + 1} tokens",
                     f"{long[0] + 1} tokens")
            x, _ = encode_batch(chunk, tokenizer, answers_only=False, device=_model_device(model))
            pred = model(x).argmax(-1).cpu()  # (B, T): the greedy next token after each prefix
            for b, seq in enumerate(chunk):
                ids = tokenizer.encode(seq.text, name="sequence")
                start = len(seq.prompt)  # the first answer token is predicted at position start - 1
                expected = torch.tensor(ids[start:])
                out.append(bool(torch.equal(pred[b, start - 1:len(ids) - 1], expected)))
    finally:
        model.train(was_training)
    return out


def few_shot_accuracy(model, tokenizer, task: str, shots: int, n: int = 100, seed: int = 0, *,
                      instruction: bool = False, length: tuple[int, int] = DEFAULT_LENGTH,
                      symbols: int = DEFAULT_SYMBOLS) -> float:
    """Exact-match accuracy of ``model`` on ``n`` held-out prompts of ``task`` with ``shots``
    demonstrations (``instruction``: headed by the task's name), drawn from ``seed``."""
    check_int(n, "n", minimum=1)
    rng = random.Random(f"{seed}-{task}-{shots}-{int(instruction)}")
    seqs = [make_sequence(task, shots, rng, instruction=instruction, length=length, symbols=symbols, split="val")
            for _ in range(n)]
    hits = exact_matches(model, tokenizer, seqs)
    return sum(hits) / len(hits)


def chance_accuracy(task: str, shots: int, *, length: tuple[int, int] = DEFAULT_LENGTH,
                    symbols: int = DEFAULT_SYMBOLS) -> float:
    """Exact-match accuracy of a guess that knows the task's form but not the cipher: for the
    cipher with no demonstration, 1 / n (any of the n symbols); nan otherwise (the others are
    decided by the task, not guessed; with demonstrations the cipher's answer is shown)."""
    if task != "cipher" or shots > 0:
        return float("nan")
    return 1.0 / symbols


# --------------------------------------------------------------------------- induction heads


@dataclass
class InductionScore:
    """``scores`` (L, h): each head's mean attention to the induction target; ``layer``,
    ``head`` (0-based) the best head; ``score`` its score."""

    scores: torch.Tensor
    layer: int
    head: int
    score: float

    def to_json(self) -> dict:
        return {"score": self.score, "layer": self.layer, "head": self.head,
                "scores": [[round(float(v), 4) for v in row] for row in self.scores]}


def repeated_random_tokens(vocab_size: int, n: int, batch: int, seed: int = 0) -> torch.Tensor:
    """(batch, 2n) ids: n distinct random tokens (a random permutation's first n), twice."""
    check_int(n, "n", minimum=2, maximum=vocab_size)
    g = torch.Generator().manual_seed(seed)
    first = torch.stack([torch.randperm(vocab_size, generator=g)[:n] for _ in range(batch)])  # (B, n)
    return torch.cat([first, first], dim=1)  # (B, 2n)


def induction_score_from_weights(weights: torch.Tensor, n: int) -> torch.Tensor:
    """weights (L, h, B, 2n, 2n) or (h, B, 2n, 2n) ...: attention on sequences of n tokens
    repeated twice; returns the mean over the batch and the second half's queries s = n ..
    2n-1 of the attention to the induction target t = s - n + 1, shape weights.shape[:-3]."""
    if not isinstance(weights, torch.Tensor) or weights.dim() < 3 or weights.shape[-1] != 2 * n \
            or weights.shape[-2] != 2 * n:
        fail("weights", f"a tensor (..., B, {2 * n}, {2 * n})",
             f"shape {tuple(weights.shape)}" if isinstance(weights, torch.Tensor) else type(weights).__name__)
    s = torch.arange(n, 2 * n)
    # A[s, s - n + 1]: the key after the previous occurrence of query s's token
    target = weights[..., s, s - n + 1]  # (..., B, n)
    return target.mean(dim=(-1, -2))


@torch.no_grad()
def induction_score(model, *, n: int | None = None, batch: int = 16, seed: int = 0) -> InductionScore:
    """Every head's induction score on ``batch`` sequences of ``n`` random distinct tokens
    (default: the whole vocabulary, at most block_size // 2) repeated twice, and the best head.
    Uses its own random generator: the global ones are not touched."""
    c = model.config
    n = min(c.vocab_size, c.block_size // 2) if n is None else n
    check_int(n, "n", minimum=2, maximum=min(c.vocab_size, c.block_size // 2))
    ids = repeated_random_tokens(c.vocab_size, n, batch, seed).to(_model_device(model))
    was_training = model.training
    model.eval()
    try:
        _, per_layer = model(ids, need_weights=True)  # L x (B, h, 2n, 2n)
    finally:
        model.train(was_training)
    w = torch.stack([a.float().transpose(0, 1) for a in per_layer]).cpu()  # (L, h, B, 2n, 2n)
    scores = induction_score_from_weights(w, n)  # (L, h)
    best = int(scores.argmax())
    layer, head = divmod(best, scores.shape[1])
    return InductionScore(scores=scores, layer=layer, head=head, score=float(scores[layer, head]))


def cipher_targets(seq: TaskSequence) -> tuple[int, list[int]]:
    """For a cipher prompt: (q, targets), q the position of the query's ">" (where the answer is
    predicted) and targets the positions of the answers of the demonstrations of the query's
    symbol, the tokens that followed the earlier occurrences of "c>" (character positions =
    token positions: the tokenizer reads characters)."""
    if seq.task != "cipher" or seq.instruction:
        fail("sequence", "a cipher prompt without instruction", f"{seq.task!r}, instruction {seq.instruction}")
    q = len(seq.prompt) - 1
    # line i is "c>y\n" at characters 4 i .. 4 i + 3: its answer y at 4 i + 2
    targets = [4 * i + 2 for i, (x, _) in enumerate(seq.demos) if x == seq.query]
    return q, targets


@torch.no_grad()
def cipher_induction_score(model, tokenizer, sequences: Sequence[TaskSequence]) -> InductionScore:
    """Every head's induction score on cipher prompts: the attention from the query's ">"
    (position q) to the answers of the demonstrations of the query's symbol, summed over
    them (the tokens after the earlier occurrences of "c>"), averaged over the prompts:

        J(l, h) = (1/N) sum_i sum_{t in targets_i} A^(l,h)_i[q_i, t]

    Uniform causal attention would give the mean of |targets_i| / (q_i + 1)."""
    seqs = [s for s in sequences if s.shots > 0]
    if not seqs:
        fail("sequences", "cipher prompts with at least one demonstration", f"{len(sequences)} without")
    x, _ = encode_batch(seqs, tokenizer, answers_only=False, device=_model_device(model))
    was_training = model.training
    model.eval()
    try:
        _, per_layer = model(x, need_weights=True)  # L x (B, h, T, T)
    finally:
        model.train(was_training)
    w = torch.stack([a.float() for a in per_layer]).cpu()  # (L, B, h, T, T)
    total = torch.zeros(w.shape[0], w.shape[2])
    for b, seq in enumerate(seqs):
        q, targets = cipher_targets(seq)
        total += w[:, b, :, q, targets].sum(-1)  # (L, h)
    scores = total / len(seqs)
    best = int(scores.argmax())
    layer, head = divmod(best, scores.shape[1])
    return InductionScore(scores=scores, layer=layer, head=head, score=float(scores[layer, head]))


def cipher_prompts(shots: int, n: int, seed: int = 0, *, symbols: int = DEFAULT_SYMBOLS) -> list[TaskSequence]:
    """n held-out cipher prompts with ``shots`` demonstrations (no instruction)."""
    rng = random.Random(f"{seed}-cipher-{shots}-0")
    return [make_sequence("cipher", shots, rng, symbols=symbols, split="val") for _ in range(n)]


# --------------------------------------------------------------------------- prompting a run


@dataclass
class PromptResult:
    """A prompt, the model's greedy answer (up to the first newline), the expected one."""

    task: str | None
    shots: int | None
    prompt: str
    answer: str
    expected: str | None

    @property
    def correct(self) -> bool | None:
        return None if self.expected is None else self.answer == self.expected

    def lines(self) -> list[str]:
        out = ["prompt:", *("  " + line for line in self.prompt.split(END))]
        out.append(f"model answer: {self.answer!r}")
        if self.expected is not None:
            out.append(f"expected:     {self.expected!r} ({'correct' if self.correct else 'wrong'})")
        return out


def check_prompt_text(prompt: object, tokenizer, block_size: int) -> list[int]:
    if not isinstance(prompt, str) or not prompt:
        fail("prompt", "a non-empty text (an instruction, demonstrations 'x>y', a query 'x>')", repr(prompt))
    ids = tokenizer.encode(prompt, name="prompt")
    if len(ids) >= block_size:
        fail("prompt", f"at most block_size - 1 = {block_size - 1} tokens (room for the answer)",
             f"{len(ids)} tokens")
    return ids


@torch.no_grad()
def answer(model, tokenizer, prompt: str, *, max_new_tokens: int | None = None) -> str:
    """The model's greedy continuation of ``prompt`` up to (not including) the first newline."""
    ids = check_prompt_text(prompt, tokenizer, model.config.block_size)
    room = model.config.block_size - len(ids)
    n_new = room if max_new_tokens is None else min(max_new_tokens, room)
    end = tokenizer.encode(END)[0]
    out = model.generate(ids, n_new, temperature=0.0, stop_ids=[end])
    return tokenizer.decode([i for i in out if i != end])


def prompt_run(path, task: str | None = "cipher", shots: int = 4, *, seed: int = 0, instruction: bool = False,
               prompt: str | None = None) -> tuple[PromptResult, torch.nn.Module, object]:
    """Prompt the ``icl`` run at ``path``: a held-out sequence of ``task`` with ``shots``
    demonstrations drawn from ``seed`` (the run's list lengths and alphabet), or the text
    ``prompt`` as given. Returns (result, model, run record)."""
    import seqlab

    model, run = seqlab.load(path)
    if run.family != "icl":
        fail("prompt", "a run of the icl family (seqlab train icl)", f"a {run.family!r} run")
    data = run.saved_data()
    tok = run.tokenizer
    if prompt is not None:
        text = prompt.replace("\\n", END)
        return PromptResult(None, None, text, answer(model, tok, text), None), model, run
    check_choice(task, "task", data["tasks"])
    max_shots = data["max_shots"]
    check_int(shots, f"shots (0 to the run's max_shots, {max_shots})", minimum=0, maximum=max_shots)
    seq = make_sequence(task, shots, random.Random(f"prompt-{seed}"), instruction=instruction,
                        length=tuple(data["length"]), symbols=data["symbols"], split="val")
    return PromptResult(task, shots, seq.prompt, answer(model, tok, seq.prompt), seq.answer), model, run


__all__ = ["ALPHABET", "InductionScore", "PromptResult", "TASKS", "TaskSequence", "answer", "chance_accuracy",
           "cipher_induction_score", "cipher_prompts", "cipher_targets", "copy_sequence", "encode_batch",
           "exact_matches", "few_shot_accuracy", "held_out", "induction_score",
           "induction_score_from_weights", "make_sequence", "max_sequence_length", "mixture_sequence",
           "prompt_run", "repeated_random_tokens", "solve"]


# --------------------------------------------------------------------------- the induction head's attention


@torch.no_grad()
def head_attention(model, tokenizer, text: str, layer: int, head: int) -> tuple[torch.Tensor, list[str]]:
    """Head (layer, head)'s attention weights (S, S) on ``text`` and its S token strings."""
    from seqlab.viz.attention import attention_maps

    maps = attention_maps(model, tokenizer, text)
    return maps.weights[layer, head], maps.tokens


def plot_head_attention(weights: torch.Tensor, tokens: Sequence[str], path, *, title: str = ""):
    """One head's attention (S, S) as a heat map, queries s down, keys t across."""
    from seqlab.viz.plots import check_output_path, new_figure, save_png

    path = check_output_path(path, "png")
    S = weights.shape[0]
    side = min(12.0, 2.0 + 0.12 * S)
    fig = new_figure(width=side + 1.0, height=side)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    fs = 7 if S <= 40 else 5 if S <= 80 else 3.5
    ax.set_xticks(range(S))
    ax.set_yticks(range(S))
    ax.set_xticklabels(tokens, rotation=90, fontsize=fs)
    ax.set_yticklabels(tokens, fontsize=fs)
    ax.set_xlabel("key t")
    ax.set_ylabel("query s")
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title(title, fontsize=9)
    return save_png(fig, path)


__all__ += ["head_attention", "plot_head_attention"]
