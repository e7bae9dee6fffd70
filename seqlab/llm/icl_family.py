r"""``icl``: a GPT pretrained on in-context tasks, as a family of the registry
(``seqlab train icl``, ``seqlab prompt``, ``seqlab eval``, ``seqlab attention``)::

    result = seqlab.train("icl", max_steps=2000)
    print(seqlab.evaluate(result.run_dir).table())      # accuracy against the number of shots

The data are the generated task mixture of ``seqlab.llm.prompting`` (sorting, reversal, a
substitution cipher drawn per sequence; some sequences named by an instruction word; by
default a quarter of the sequences are repeated random tokens, a copying task), read by a
character tokenizer over its fixed alphabet; every training example is one sequence, padded
on the right to the longest of its batch (never packed: a cipher belongs to its sequence).
The model is seqlab's ``GPT`` (the gpt family's config and presets, with a context of at
least 128 characters, enough for 10 demonstrations of 4 symbols) with one change at its
input: each position also adds the embeddings of the ``shifts`` (2) previous tokens,

    a^(0)_t = w^(x) x_t + w^(1) x_(t-1) + w^(2) x_(t-2) + p_t

a causal convolution of width 3 over the embeddings (the "shift" of Fu et al. 2023, H3; like
the smeared keys of Olsson et al. 2022, it hands an attention head the previous tokens
without a previous-token head). With it a single head can match the query's "c>" against the
"c>" before a demonstration's answer, and the induction head forms within a few hundred steps;
the plain GPT (``shifts`` 0, 2 layers, width 64) did not find the cipher in 1,500 to 3,000
steps in our runs (docs/llm-prompting.md). The embeddings of the tokens, the positions and the
attention's w^(q), w^(k) start at N(0, 1/D) (GPT's 0.02 gave a long plateau). The cost is the
next-token cross entropy on the answers only (every demonstration's and the query's, with
their newline; for a copy sequence its second half), the tokens the prompt determines:

    C = -(1/|A|) sum_{t in A} log o_t[x_(t+1)]        A: the positions followed by an answer token

After every evaluation (``on_eval``) the run measures, on held-out prompts and with its own
random numbers, the exact-match accuracy of each task at 0, 1, 2, 4 and 8 shots, the
induction score of its best head on repeated random tokens and on the cipher's prompts
(``cipher_induction_score``), and appends them to ``icl.jsonl`` in the run directory:
the in-context accuracy and induction curves over training.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.llm.gpt import LN2, PRESETS, GPT, GPTConfig, previous_token_embeddings
from seqlab.llm.prompting import (ALPHABET, COPY_TOKENS, IGNORE, TASKS, cipher_induction_score, cipher_prompts, copy_sequence,
                                  encode_batch, few_shot_accuracy, induction_score,
                                  max_sequence_length, mixture_sequence)
from seqlab.transformer.position import LearnedPositionalEncoding
from seqlab.llm.tokenizers import CharTokenizer, tokenizer_from_json
from seqlab.runs import Family, RunRecord, register
from seqlab.validation import check_float, check_int, fail, resolve_config, shape_str

EVAL_SHOTS = (0, 1, 2, 4, 8)
METRICS = "icl.jsonl"
MIN_CONTEXT = 128
# the gpt family's sizes, each with a context of at least 128 characters
ICL_PRESETS = {name: {**p, "block_size": max(p["block_size"], MIN_CONTEXT)} for name, p in PRESETS.items()}


@dataclass(frozen=True)
class ICLConfig(GPTConfig):
    """The gpt family's settings, and:

    Attributes:
        shifts: how many previous tokens' embeddings are added to each position's input,
            a^(0)_t = w^(x) x_t + sum_{j=1..shifts} w^(j) x_(t-j) + p_t (2 by default; 0: the
            plain GPT). See the module docstring: with 0 the cipher was not learned.
    """

    shifts: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.shifts, "shifts", minimum=0, maximum=8)


class ICLGPT(GPT):
    """seqlab's GPT whose input also holds the embeddings of the previous ``shifts`` tokens
    (a fixed-width causal convolution of the embeddings, like the "shift" of Fu et al. 2023,
    H3, or the smeared keys of Olsson et al. 2022), and whose cost skips the positions whose
    target is -100 (not an answer)."""

    family = "icl"

    def __init__(self, config: ICLConfig | None = None, /, **kwargs) -> None:
        config = resolve_config(config, kwargs, ICLConfig, type(self).__name__)
        super().__init__(config)
        c = self.config
        # w^(1) .. w^(shifts): embeddings of the previous tokens x_(t-1), x_(t-2), ..., (shifts, V, D)
        self.w_shift = nn.Parameter(torch.empty(c.shifts, c.vocab_size, c.d_model))
        nn.init.normal_(self.w_shift, std=c.d_model ** -0.5)

    def forward(self, ids: torch.Tensor, *, cache=None, need_weights: bool = False):
        """As GPT's, with a^(0)_t = w^(x) x_t + sum_j w^(j) x_(t-j) + p_t (x_(t-j) = 0 before the
        start); with shifts > 0 there is no KV cache (every call reads the whole context)."""
        if self.config.shifts and cache is not None:
            fail("cache", "None (this GPT reads the previous tokens at every position: no KV cache)", "a cache")
        return super().forward(ids, cache=cache, need_weights=need_weights)

    def embed(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        # a^(0)_t = w^(x) . x_t + p_t ...
        x = super().embed(ids, offset)  # (B, T, D)
        # ... + sum_j w^(j) . x_(t-j)
        return x + previous_token_embeddings(ids, self.w_shift) if self.config.shifts else x

    def next_logits_fn(self, *, use_cache: bool = True):
        return super().next_logits_fn(use_cache=use_cache and self.config.shifts == 0)

    def reset_parameters(self) -> None:
        """GPT's initialisation, except the token and position embeddings and the attention's
        w^(q), w^(k): N(0, 1/D) instead of N(0, 0.02^2). With the small init the attention
        logits a^(q) . a^(k) start near 0 with near-0 gradients, and the induction head the
        cipher needs formed only after a long plateau (see docs/llm-prompting.md)."""
        super().reset_parameters()
        std = self.config.d_model ** -0.5
        nn.init.normal_(self.w_x, std=std)
        if isinstance(self.pos, LearnedPositionalEncoding):
            nn.init.normal_(self.pos.p, std=std)
        for block in self.blocks.blocks:
            nn.init.normal_(block.self_attn.w_q, std=std)
            nn.init.normal_(block.self_attn.w_k, std=std)

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """batch = (x, y), (B, T) each, y the next tokens or -100:
        C = -(1/|A|) sum_{t in A} log o_t[y_t], A = {t : y_t != -100}."""
        x, y = batch
        logits = self(x)  # (B, T, V)
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            fail("y", f"next-token ids of shape {tuple(x.shape)}",
                 f"shape {shape_str(y)}" if isinstance(y, torch.Tensor) else type(y).__name__)
        V = self.config.vocab_size
        bad = (y != IGNORE) & ((y < 0) | (y >= V))
        if bool(bad.any()):
            fail("y", f"token ids in [0, {V - 1}] or {IGNORE}", int(y[bad][0]))
        n = int((y != IGNORE).sum())
        if n == 0:
            fail("y", "at least one answer position", "none")
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        # C = -(1/|A|) sum_{t in A} log o_t[y_t]
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), ignore_index=IGNORE)
        return loss, {"bits": loss.item() / LN2, "tokens": n}


@dataclass(frozen=True)
class ICLData:
    """The generated pretraining mixture.

    Attributes:
        tasks: the tasks of the mixture, comma-separated among sort, reverse, cipher
        max_shots: the most demonstrations in a sequence (evaluated at 0, 1, 2, 4, 8 up to it; 10
            by default, so that even an 8-shot prompt's last positions are well trained)
        min_length: the shortest list (every list of a sequence has one length L)
        max_length: the longest list
        symbols: n, the alphabet of the lists: the digits 0 .. n-1 (4 to 10)
        instruction: the fraction of sequences that begin with the task's name ("sort:")
        copy: the fraction of repeated-random-tokens sequences (a copying task) in the mixture
        eval_prompts: held-out prompts per task and number of shots at each evaluation
    """

    tasks: str = "sort,reverse,cipher"
    max_shots: int = 10
    min_length: int = 4
    max_length: int = 4
    symbols: int = 6
    instruction: float = 0.5
    copy: float = 0.25
    eval_prompts: int = 50


def parse_tasks(tasks: object) -> tuple[str, ...]:
    if isinstance(tasks, (list, tuple)):
        names = [str(t).strip() for t in tasks]
    elif isinstance(tasks, str):
        names = [t.strip() for t in tasks.split(",")]
    else:
        fail("tasks", "task names separated by commas", type(tasks).__name__)
    unknown = [t for t in names if t not in TASKS]
    if not names or unknown or len(set(names)) != len(names):
        fail("tasks", "distinct names among " + ", ".join(TASKS) + ", separated by commas", repr(tasks))
    return tuple(names)


class ICLDataset:
    """The mixture as the trainer sees it: ``get_batch(split, B, generator)`` draws a seed from
    ``generator``, makes B sequences with ``random.Random`` from it ("train": no held-out list
    or cipher; "val": held-out queries), and returns (x, y), (B, T) with T the longest text of
    the batch less one (at most ``block_size``)."""

    def __init__(self, *, tasks, max_shots: int, length: tuple[int, int], symbols: int, instruction: float,
                 block_size: int, eval_prompts: int = 50, copy: float = 0.0):
        self.tasks = parse_tasks(tasks)
        self.max_shots = check_int(max_shots, "max_shots", minimum=0)
        self.length = (int(length[0]), int(length[1]))
        self.symbols = symbols
        self.instruction = check_float(instruction, "instruction", minimum=0.0, maximum=1.0)
        self.eval_prompts = check_int(eval_prompts, "eval_prompts", minimum=1)
        self.copy = check_float(copy, "copy", minimum=0.0, maximum=1.0)
        if self.max_shots == 0 and self.instruction == 0.0:
            fail("max_shots", "at least 1 when no sequence has an instruction (instruction 0)", 0)
        # one draw checks the symbols and lengths
        mixture_sequence(random.Random(0), tasks=self.tasks, max_shots=self.max_shots, instruction=self.instruction,
                         length=self.length, symbols=symbols)
        need = max_sequence_length(self.max_shots, self.length) - 1
        check_int(block_size, "block_size", minimum=1)
        if block_size < need:
            fail("block_size", f"at least {need} (a sequence of {self.max_shots} demonstrations of lists of "
                 f"{self.length[1]} symbols, less one)", block_size)
        if self.copy > 0 and block_size < 2 * len(COPY_TOKENS):
            fail("block_size", f"at least {2 * len(COPY_TOKENS)} with copy > 0 (a copying sequence of "
                 f"{len(COPY_TOKENS)} tokens twice, less one)", block_size)
        self.block_size = block_size
        self.tokenizer = CharTokenizer(ALPHABET)

    def sequences(self, split: str, n: int, rng: random.Random):
        return [copy_sequence(rng) if self.copy > 0 and rng.random() < self.copy else
                mixture_sequence(rng, tasks=self.tasks, max_shots=self.max_shots, instruction=self.instruction,
                                 length=self.length, symbols=self.symbols, split=split) for _ in range(n)]

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None):
        check_int(batch_size, "batch_size", minimum=1)
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
        return encode_batch(self.sequences(split, batch_size, random.Random(f"{split}-{seed}")), self.tokenizer)

    def info(self) -> dict:
        return {"kind": "icl-mixture", "tasks": list(self.tasks), "max_shots": self.max_shots,
                "length": list(self.length), "symbols": self.symbols, "instruction": self.instruction,
                "copy": self.copy, "eval_prompts": self.eval_prompts, "alphabet": ALPHABET,
                "block_size": self.block_size}


def eval_shots(max_shots: int) -> tuple[int, ...]:
    return tuple(k for k in EVAL_SHOTS if k <= max_shots)


def measure(model, tokenizer, *, tasks, max_shots: int, length, symbols: int, n: int, seed: int = 0) -> dict:
    """Held-out exact-match accuracy per task and number of shots, plain few-shot prompts
    ("fewshot") and prompts headed by the task's name ("instruction"), and the induction
    score: one record of ``icl.jsonl``."""
    record: dict = {"fewshot": {}, "instruction": {}}
    for task in tasks:
        for mode, named in (("fewshot", False), ("instruction", True)):
            record[mode][task] = {str(k): few_shot_accuracy(model, tokenizer, task, k, n, seed, instruction=named,
                                                            length=tuple(length), symbols=symbols)
                                  for k in eval_shots(max_shots) if named or k > 0}
    ind = induction_score(model, seed=seed)
    record["induction"] = ind.to_json()
    k = max(eval_shots(max_shots))
    if "cipher" in tasks and k > 0:
        # the same head measure on the cipher's prompts: attention from the query's ">" to the
        # answers of the demonstrations of its symbol
        record["cipher_induction"] = cipher_induction_score(
            model, tokenizer, cipher_prompts(k, n, seed, symbols=symbols)).to_json()
    k = max(eval_shots(max_shots))
    record["icl_accuracy"] = sum(record["fewshot"][t][str(k)] for t in tasks) / len(tasks) if k > 0 else None
    record["icl_shots"] = k
    return record


def read_icl_metrics(run_dir) -> list[dict]:
    """The records of ``icl.jsonl`` (one per evaluation), oldest first; [] if none."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                fail(str(path), "one JSON object per line", f"line {i}: {line[:40]!r}")
    return out


@dataclass(frozen=True)
class ICLEvaluation:
    """Options of ``seqlab eval`` for an icl run.

    Attributes:
        n: held-out prompts per task and number of shots
        seed: the seed the prompts are drawn from
    """

    n: int = 100
    seed: int = 0


@dataclass
class ShotsTable:
    """Accuracy against the number of shots (``measure``'s record)."""

    record: dict

    def table(self) -> str:
        rec = self.record
        shots = sorted({int(k) for m in ("fewshot", "instruction") for t in rec[m] for k in rec[m][t]})
        lines = ["task     prompt        " + " ".join(f"{k:>6d}" for k in shots) + "   (shots; exact match)"]
        for task in rec["fewshot"]:
            for mode in ("fewshot", "instruction"):
                row = rec[mode][task]
                cells = " ".join(f"{row[str(k)]:6.2f}" if str(k) in row else "     -" for k in shots)
                lines.append(f"{task:<8} {mode:<13} {cells}")
        ind = rec["induction"]
        lines.append(f"induction score {ind['score']:.3f} (layer {ind['layer'] + 1}, head {ind['head'] + 1}; "
                     f"repeated random tokens)")
        if "cipher_induction" in rec:
            ci = rec["cipher_induction"]
            lines.append(f"cipher induction score {ci['score']:.3f} (layer {ci['layer'] + 1}, head {ci['head'] + 1}; "
                         f"attention from the query's '>' to the answers of its symbol's demonstrations)")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return self.record


class ICLFamily(Family):
    name = "icl"
    description = "GPT pretrained on in-context tasks (sort, reverse, a per-sequence cipher): few-shot prompting"
    model_class = ICLGPT
    config_class = ICLConfig
    data_class = ICLData
    evaluate_class = ICLEvaluation
    presets = ICL_PRESETS
    default_preset = "cpu-tiny"
    data_fields = ("vocab_size",)
    # 2 layers, width 64, 2,000 steps of 32 sequences, AdamW lr 5e-3 -> 5e-4 (see docs/llm-prompting.md)
    train_defaults = dict(max_steps=2000, batch_size=32, lr=5e-3, min_lr=5e-4, warmup_steps=100, beta2=0.99,
                          weight_decay=0.1, clip_norm=1.0, eval_every=250, eval_batches=10)
    views = ("attention",)
    metric = "validation loss on the answers"

    def make_data(self, options: ICLData, fields, train_config) -> ICLDataset:
        if options.min_length > options.max_length:
            fail("max_length", f"at least min_length ({options.min_length})", options.max_length)
        return ICLDataset(tasks=options.tasks, max_shots=options.max_shots,
                          length=(options.min_length, options.max_length), symbols=options.symbols,
                          instruction=options.instruction, eval_prompts=options.eval_prompts, copy=options.copy,
                          block_size=fields.get("block_size", GPTConfig.block_size))

    def data_from_run(self, run: RunRecord, options) -> ICLDataset:
        d = run.saved_data()
        if d.get("kind") != "icl-mixture" or d.get("alphabet") != ALPHABET:
            fail(f"run {run.dir}", "an icl run's data (the task mixture over this alphabet)", repr(d.get("kind")))
        return ICLDataset(tasks=d["tasks"], max_shots=d["max_shots"], length=tuple(d["length"]),
                          symbols=d["symbols"], instruction=d["instruction"], eval_prompts=d["eval_prompts"],
                          copy=d.get("copy", 0.0),
                          block_size=run.config.block_size)

    def files(self, data: ICLDataset) -> dict[str, str]:
        return {"tokenizer.json": data.tokenizer.to_json()}

    def config_from_data(self, data: ICLDataset, train_config) -> dict:
        return {"vocab_size": data.tokenizer.vocab_size}

    def extras(self, run: RunRecord) -> None:
        run.tokenizer = tokenizer_from_json(run.file("tokenizer.json"))
        if run.tokenizer.vocab_size != run.config.vocab_size:
            fail(f"checkpoint {run.checkpoint}", f"a tokenizer of {run.config.vocab_size} tokens",
                 f"{run.tokenizer.vocab_size} tokens")

    def on_eval(self, model, run_dir: Path, data: ICLDataset):
        from seqlab.training.io import atomic_write_text

        state = {"first": True}

        def log(step: int) -> None:
            path = Path(run_dir) / METRICS
            records = read_icl_metrics(run_dir)
            if state["first"]:  # a resumed run: what came after its checkpoint is measured again
                records = [r for r in records if r.get("step", 0) < step]
                state["first"] = False
            records = [r for r in records if r.get("step") != step]
            rec = measure(model, data.tokenizer, tasks=data.tasks, max_shots=data.max_shots, length=data.length,
                          symbols=data.symbols, n=data.eval_prompts)
            records.append({"step": step, **rec})
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))

        return log

    def summary(self, result) -> str:
        if result.best_val_loss is None:
            return f"{result.steps} steps, no evaluation"
        return (f"validation loss {result.best_val_loss:.4f} nats/answer token (best), {result.steps} steps in "
                f"{result.seconds:.0f} s")

    def report(self, model, run: RunRecord) -> list[str]:
        records = read_icl_metrics(run.dir) if run.dir is not None else []
        if not records:
            return []
        last = records[-1]
        k = last["icl_shots"]
        acc = ", ".join(f"{t} {last['fewshot'][t][str(k)]:.2f}" for t in last["fewshot"]) if k > 0 else "n/a"
        ind = last["induction"]
        return [f"held-out exact match at {k} shots (step {last['step']}): {acc}; induction score {ind['score']:.3f} "
                f"(layer {ind['layer'] + 1}, head {ind['head'] + 1}); more: seqlab eval {run.dir}, "
                f"seqlab prompt {run.dir} --task cipher --shots 4"]

    def evaluate(self, model, run: RunRecord, options: ICLEvaluation) -> ShotsTable:
        check_int(options.n, "n", minimum=1)
        check_int(options.seed, "seed", minimum=0)
        d = run.saved_data()
        return ShotsTable(measure(model, run.tokenizer, tasks=d["tasks"], max_shots=d["max_shots"],
                                  length=d["length"], symbols=d["symbols"], n=options.n, seed=options.seed))


register(ICLFamily())
