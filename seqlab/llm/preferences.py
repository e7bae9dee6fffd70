"""Preferences: who says which of two samples is better, and the file where it is kept.

A *preference* is one answer to "for this prompt x, which completion is better, y_a or
y_b?": ``a``, ``b``, ``tie`` or ``skip``. A person gives it in the terminal (``seqlab rlhf
label RUN --prompts FILE --out prefs.jsonl``), or a scripted *judge* does (``--judge NAME``),
and both write the same JSON Lines file, one object per answer::

    {"key": "3f1c2a9e0b17/0", "prompt": "The ", "a": "...", "b": "...", "choice": "a",
     "labeler": "human", "run": "runs/gpt-...", "length": 32, "temperature": 1.0, "seed": 0, ...}

``key`` names the pair: the prompt's sha256 (12 hex digits) and the pair's number k for that
prompt. Both samples of pair k are drawn with a generator seeded from (seed, key), so asking
again gives the same two samples, and a labelling session that is stopped (``q``, Ctrl-C,
end of input) and started again skips every key already answered.

No answer is ever lost: each one is appended as one line and the file is flushed and
fsync'ed before the next pair is shown. A kill in the middle of a write can leave a torn last
line (no newline); reading ignores it, and the next append first removes it (it was never a
recorded answer: an answer counts once its newline is on disk). A bad line anywhere else is
a one-line error naming the line.

Judges (``JUDGES``), for tests, benchmarks and the tour: a program that prefers, of two
completions, the one with the higher score:

- ``vowels``: the fraction of the completion's letters that are vowels (a, e, i, o, u). A
  character model learns it quickly; a policy that games it writes "eeeeaaaa".
- ``sentiment``: a word-list sentiment score, (positive words - negative words) / words, with
  lists fitted to Shakespeare-style English ("love", "sweet", "noble" / "death", "woe", ...).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from seqlab.validation import check_float, check_int, fail

CHOICES = ("a", "b", "tie", "skip")
KEYS = {"a": "a", "b": "b", "t": "tie", "tie": "tie", "s": "skip", "skip": "skip", "q": "quit", "quit": "quit"}

# --------------------------------------------------------------------------- judges

VOWELS = frozenset("aeiouAEIOU")
POSITIVE = frozenset("""love loves loved loving lovely sweet sweetest fair fairest good best better joy joyful happy
happiness gentle noble kind kindness dear dearest true honour honest peace grace gracious merry bless blessed heaven
heavenly smile smiles friend friends hope beauty beautiful glad delight delights comfort virtue worthy brave
faithful bright wise pleasure laugh thanks thank welcome""".split())
NEGATIVE = frozenset("""hate hated hateful death dead die dies died kill killed ill foul evil grief woe sad sorrow
sorrows blood bloody poison curse cursed cruel fear false villain villains tears weep weeping traitor traitors vile
war slain murder murderer bad worse worst shame wicked wretched despair damned plague sick pain enemy enemies
fool""".split())
_WORD = re.compile(r"[A-Za-z']+")


@dataclass(frozen=True)
class Judge:
    """A scripted preference: ``score(text) -> float``; ``judge(a, b)`` prefers the higher score
    ("tie" when equal)."""

    name: str
    description: str
    score: Callable[[str], float]

    def judge(self, a: str, b: str) -> str:
        sa, sb = self.score(a), self.score(b)
        return "a" if sa > sb else "b" if sb > sa else "tie"


def vowel_score(text: str) -> float:
    """The fraction of the letters of ``text`` that are vowels (0 without letters)."""
    letters = [c for c in text if c.isalpha()]
    return sum(c in VOWELS for c in letters) / len(letters) if letters else 0.0


def sentiment_score(text: str) -> float:
    """(positive words - negative words) / words, with the word lists ``POSITIVE``, ``NEGATIVE``
    (0 without words)."""
    words = [w.lower().strip("'") for w in _WORD.findall(text)]
    if not words:
        return 0.0
    return (sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)) / len(words)


JUDGES = {
    "vowels": Judge("vowels", "the fraction of the completion's letters that are vowels", vowel_score),
    "sentiment": Judge("sentiment", "word-list sentiment: (positive - negative words) / words", sentiment_score),
}


def get_judge(name: str) -> Judge:
    if name not in JUDGES:
        fail("judge", "one of " + ", ".join(JUDGES), repr(name))
    return JUDGES[name]


# --------------------------------------------------------------------------- the file


def pair_key(prompt: str, k: int) -> str:
    """The name of pair k of ``prompt``: 12 hex digits of the prompt's sha256, then /k."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:12] + f"/{k}"


def _check_record(rec: object, where: str) -> dict:
    if not isinstance(rec, dict):
        fail(where, "a JSON object", type(rec).__name__)
    for name in ("key", "prompt", "a", "b"):
        if not isinstance(rec.get(name), str):
            fail(where, f"a string field {name!r}", repr(rec.get(name)))
    if rec.get("choice") not in CHOICES:
        fail(where, "a field 'choice' among " + ", ".join(CHOICES), repr(rec.get("choice")))
    return rec


def read_preferences(path: str | os.PathLike) -> list[dict]:
    """The answers recorded in a preferences file (none if it does not exist). A torn last
    line (no newline: a write cut short by a kill) is ignored; any other line that is not a
    preference is a one-line error naming it."""
    p = Path(path)
    if not p.exists():
        return []
    if not p.is_file():
        fail("preferences file", "a JSON Lines file", f"{str(path)!r} (not a file)")
    data = p.read_bytes()
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline
    out = []
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        where = f"preferences file {str(path)!r} line {n}"
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            fail(where, "one JSON object per line", f"{type(e).__name__}: {str(e).splitlines()[0]}")
        out.append(_check_record(rec, where))
    del torn  # a torn last line: never a recorded answer
    return out


class PreferenceStore:
    """Append-only preferences file: ``append(record)`` writes one line, flushes and fsyncs."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.records = read_preferences(self.path)  # checks the file before anything is added
        self._repaired = False

    @property
    def answered(self) -> set[str]:
        return {r["key"] for r in self.records}

    def _repair(self) -> None:
        """Cut a torn last line (bytes after the last newline) before the first append."""
        if self._repaired or not self.path.exists():
            self._repaired = True
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
                f.flush()
                os.fsync(f.fileno())
        self._repaired = True

    def append(self, record: dict) -> None:
        _check_record(record, "preference")
        self._repair()
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)


def preference_pairs(records: Iterable[dict]) -> list[tuple[str, str, str]]:
    """(prompt, preferred, rejected) of every answer "a" or "b" (ties and skips say nothing
    about which is better: the Bradley-Terry loss and DPO use decided pairs only)."""
    out = []
    for r in records:
        if r["choice"] == "a":
            out.append((r["prompt"], r["a"], r["b"]))
        elif r["choice"] == "b":
            out.append((r["prompt"], r["b"], r["a"]))
    return out


def read_prompts(path: str | os.PathLike) -> list[str]:
    """Prompts, one per non-empty line of a UTF-8 file ("\\n" in a line stands for a newline)."""
    from seqlab.data.text import read_text_file

    prompts = [line.replace("\\n", "\n") for line in read_text_file(path).split("\n") if line.strip()]
    if not prompts:
        fail(f"prompts file {str(path)!r}", "at least one non-empty line", "none")
    return prompts


def corpus_prompts(text: str, *, chars: int = 12, count: int = 256) -> list[str]:
    """Default prompts from a corpus: the first ``chars`` characters of ``count`` of its
    distinct lines that are at least that long, spread evenly over the corpus."""
    seen, lines = set(), []
    for line in text.split("\n"):
        head = line.strip()[:chars]
        if len(head) == chars and head not in seen:
            seen.add(head)
            lines.append(head)
    if not lines:
        fail("corpus", f"lines of at least {chars} characters (for prompts)", "none")
    step = max(1, len(lines) // count)
    return lines[::step][:count]


# --------------------------------------------------------------------------- the labelling loop


def _seed_of(seed: int, key: str, side: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}:{side}".encode()).digest()[:8], "little") % (2**63 - 1)


def sample_pairs(gpt, tokenizer, items: Sequence[tuple[str, str]], *, length: int = 32, temperature: float = 1.0,
                 seed: int = 0) -> list[tuple[str, str]]:
    """The two completions (a, b) of each pair (prompt, key): ``length`` tokens after the
    prompt (its last tokens, where it is longer than the context leaves room for). Each
    completion is drawn with its own generator seeded from (seed, key, side), so a pair's
    samples are the same whatever else is sampled with it (one pair, or a batch)."""
    from seqlab.llm.rlhf_models import sample_completions

    room = gpt.config.block_size - length
    if room < 1:
        fail("length", f"at most {gpt.config.block_size - 1} tokens (the model's context minus one)", length)
    rows, gens = [], []
    for prompt, key in items:
        ids = tokenizer.encode(prompt, name="prompt")
        if not ids:
            fail("prompt", "at least one token", repr(prompt))
        for side in ("a", "b"):
            rows.append(ids[-room:])
            gens.append(torch.Generator(device=gpt.w_x.device).manual_seed(_seed_of(seed, key, side)))
    out = sample_completions(gpt, rows, length, temperature=temperature, generator=gens).tolist()
    return [(tokenizer.decode(out[2 * i]), tokenizer.decode(out[2 * i + 1])) for i in range(len(items))]


def sample_pair(gpt, tokenizer, prompt: str, key: str, *, length: int = 32, temperature: float = 1.0,
                seed: int = 0) -> tuple[str, str]:
    """The two completions of pair ``key`` (``sample_pairs`` of one pair)."""
    return sample_pairs(gpt, tokenizer, [(prompt, key)], length=length, temperature=temperature, seed=seed)[0]


def shown(text: str) -> str:
    """``text`` on one line: characters that are not printable (newlines, tabs) escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


@dataclass
class LabelResult:
    recorded: int = 0  # answers written this session
    already: int = 0  # pairs skipped because the file already answered them
    stopped: str = "done"  # "done", "quit", "eof" or "interrupted"
    counts: dict = field(default_factory=lambda: {c: 0 for c in CHOICES})


def label(gpt, tokenizer, prompts: Sequence[str], out: str | os.PathLike, *, judge: str | None = None,
          pairs: int = 1, length: int = 32, temperature: float = 1.0, seed: int = 0, run: str = "",
          ask: Callable[[str], str] = input, show: Callable[[str], None] = print) -> LabelResult:
    """Label ``pairs`` pairs of completions per prompt into ``out`` (appending): by asking
    (``ask(question) -> answer``: a, b, t(ie), s(kip), q(uit)) or by the scripted ``judge``.
    Pairs already answered in ``out`` are skipped. Returns what happened; stops cleanly at
    'q', at the end of input (EOFError) and at Ctrl-C (KeyboardInterrupt), with every answer
    given so far on disk."""
    check_int(pairs, "pairs", minimum=1, maximum=1000)
    check_int(length, "length", minimum=1)
    check_float(temperature, "temperature", minimum=0.0, open_min=True)
    j = get_judge(judge) if judge is not None else None
    store = PreferenceStore(out)
    for p in prompts:  # every prompt must be encodable before anything is asked
        tokenizer.encode(p, name="prompt")
    todo = [(p, k) for p in prompts for k in range(pairs)]
    answered = store.answered
    result = LabelResult(already=sum(pair_key(p, k) in answered for p, k in todo))
    todo = [(p, k) for p, k in todo if pair_key(p, k) not in answered]
    chunk = 32 if j is not None else 1  # a judge's pairs are sampled in batches (the same samples)
    try:
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            samples = sample_pairs(gpt, tokenizer, [(p, pair_key(p, k)) for p, k in part], length=length,
                                   temperature=temperature, seed=seed)
            for n, ((prompt, k), (a, b)) in enumerate(zip(part, samples), start + 1):
                key = pair_key(prompt, k)
                record: dict[str, Any] = {"key": key, "prompt": prompt, "a": a, "b": b}
                if j is not None:
                    record.update(choice=j.judge(a, b), labeler=f"judge:{j.name}", score_a=j.score(a),
                                  score_b=j.score(b))
                else:
                    show(f"\n[{n}/{len(todo)}] prompt: {shown(prompt)}\n  a: {shown(prompt + a)}\n"
                         f"  b: {shown(prompt + b)}")
                    while True:
                        answer = ask("which is better? a / b / t(ie) / s(kip) / q(uit): ").strip().lower()
                        if answer in KEYS:
                            break
                        show(f"  please answer a, b, t, s or q (received {answer!r})")
                    if KEYS[answer] == "quit":
                        result.stopped = "quit"
                        return result
                    record.update(choice=KEYS[answer], labeler="human")
                record.update(run=run, k=k, length=length, temperature=temperature, seed=seed,
                              time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
                store.append(record)
                result.recorded += 1
                result.counts[record["choice"]] += 1
    except EOFError:
        result.stopped = "eof"
    except KeyboardInterrupt:
        result.stopped = "interrupted"
    return result


__all__ = ["CHOICES", "JUDGES", "Judge", "LabelResult", "PreferenceStore", "corpus_prompts", "get_judge", "label",
           "pair_key", "preference_pairs", "read_preferences", "read_prompts", "sample_pair", "sample_pairs",
           "sentiment_score",
           "shown", "vowel_score"]
