"""RLHF as three families of the registry (``seqlab.runs``), each started from a GPT run:

- ``reward-model``: a GPT body with a scalar head trained on a preferences file with the
  Bradley-Terry loss (``seqlab rlhf reward GPT_RUN --prefs prefs.jsonl`` = ``seqlab train
  reward-model --base GPT_RUN --prefs prefs.jsonl``); ``seqlab eval`` gives its accuracy on
  the held-out pairs;
- ``ppo``: the GPT optimised with PPO against a reward model run (``--reward RM_RUN``) or a
  scripted judge (``--judge NAME``), with a per-token KL penalty against the frozen starting
  policy (``seqlab rlhf ppo GPT_RUN --reward RM_RUN``);
- ``dpo``: the GPT optimised with DPO directly on the preferences file (``seqlab rlhf dpo
  GPT_RUN --prefs prefs.jsonl``).

From Python::

    rm = seqlab.train("reward-model", base="runs/gpt-...", prefs="prefs.jsonl")
    ppo = seqlab.train("ppo", base="runs/gpt-...", reward=str(rm.run_dir), max_steps=100)
    print(seqlab.sample(ppo.run_dir, prompt="The "))        # the policy is a GPT

A PPO or DPO checkpoint holds the whole policy (and PPO's value head and KL coefficient);
the frozen reference is not saved: the config records the base run's checkpoint
(``reference``), from which a resumed run reloads it (PPO's reward model likewise,
``reward``). Every checkpoint carries the base run's ``tokenizer.json``; a PPO run's also
its prompts (``prompts.json``). The reward model and DPO read the preferences file again to
resume or evaluate, and check that its first ``records`` answers are the ones trained on
(their sha256): answers added later do not change a run.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqlab.llm.gpt import GPT
from seqlab.llm.gpt_family import GPTSampleOptions
from seqlab.llm.preferences import corpus_prompts, get_judge, preference_pairs, read_preferences, read_prompts
from seqlab.llm.rlhf import pad_sequences
from seqlab.llm.rlhf_models import (DPOConfig, DPOModel, PairBatch, PPOConfig, PPOModel, RewardModel,
                                    RewardModelConfig, _load_gpt)
from seqlab.llm.sampling import sample_text
from seqlab.llm.tokenizers import Tokenizer, tokenizer_from_json
from seqlab.runs import Family, RunRecord, register
from seqlab.validation import check_float, fail

# --------------------------------------------------------------------------- preference pairs


def encode_pair(tokenizer: Tokenizer, prompt: str, completion: str, block_size: int) -> tuple[list[int], int]:
    """(prompt + completion ids, prompt length), cropped from the left to the context; at
    least one prompt token is kept before the completion when the crop reaches it (the first
    completion token needs a position whose logits predict it)."""
    p = tokenizer.encode(prompt, name="prompt")
    c = tokenizer.encode(completion, name="completion")
    if not c:
        fail("completion", "at least one token", repr(completion))
    seq = p + c
    if len(seq) > block_size:
        cut = len(seq) - block_size
        seq, P = seq[cut:], max(len(p) - cut, 1)
    else:
        P = len(p)
    if P < 1:
        fail("prompt", "at least one token", repr(prompt))
    return seq, P


class PairDataset:
    """Decided preference pairs as token ids, split into train and val (a fixed shuffle);
    ``get_batch`` draws pairs with replacement, ``batches(split, B)`` goes over a split once."""

    def __init__(self, pairs: list[tuple[str, str, str]], tokenizer: Tokenizer, block_size: int,
                 val_fraction: float = 0.1) -> None:
        check_float(val_fraction, "val_fraction", minimum=0.0, maximum=1.0, open_min=True, open_max=True)
        if len(pairs) < 2:
            fail("preferences", "at least 2 answers 'a' or 'b' (ties and skips are not used)", len(pairs))
        self.tokenizer = tokenizer
        self.val_fraction = val_fraction
        self.items = []
        for prompt, chosen, rejected in pairs:
            self.items.append((*encode_pair(tokenizer, prompt, chosen, block_size),
                               *encode_pair(tokenizer, prompt, rejected, block_size)))
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(0)).tolist()
        n_val = min(max(1, round(len(pairs) * val_fraction)), len(pairs) - 1)
        self.split = {"val": order[:n_val], "train": order[n_val:]}

    def size(self, split: str) -> int:
        return len(self.split[split])

    def _batch(self, rows: list[int]) -> PairBatch:
        items = [self.items[i] for i in rows]
        c, cl = pad_sequences([it[0] for it in items])
        r, rl = pad_sequences([it[2] for it in items])
        return PairBatch(c, cl, torch.tensor([it[1] for it in items]), r, rl, torch.tensor([it[3] for it in items]))

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None) -> PairBatch:
        if split not in self.split:
            fail("split", "'train' or 'val'", repr(split))
        rows = self.split[split]
        pick = torch.randint(len(rows), (batch_size,), generator=generator).tolist()
        return self._batch([rows[i] for i in pick])

    def batches(self, split: str, batch_size: int):
        rows = self.split[split]
        for i in range(0, len(rows), batch_size):
            yield self._batch(rows[i:i + batch_size])


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False).encode("utf-8")).hexdigest()


@dataclass
class PairData:
    """A reward-model or DPO run's data: the pairs, where they came from, the base GPT."""

    dataset: PairDataset
    prefs: str
    records: int
    sha256: str
    base_dir: str | None = None
    base: Any = None  # (GPT, RunRecord) of the base run, for a new run only

    @property
    def tokenizer(self) -> Tokenizer:
        return self.dataset.tokenizer

    def info(self) -> dict:
        return {"base": self.base_dir, "prefs": self.prefs, "records": self.records, "sha256": self.sha256,
                "pairs": len(self.dataset.items), "train_pairs": self.dataset.size("train"),
                "val_pairs": self.dataset.size("val"), "val_fraction": self.dataset.val_fraction}


def read_pairs(prefs: str, records: int | None = None) -> tuple[list, int, str]:
    """(decided pairs, records read, sha256 of those records) of a preferences file; with
    ``records``: its first ``records`` answers only (a run's own)."""
    recs = read_preferences(prefs)
    if not Path(prefs).exists():
        fail("prefs", "an existing preferences file (seqlab rlhf label ... --out FILE)", repr(prefs))
    if records is not None:
        if len(recs) < records:
            fail(f"preferences file {prefs!r}", f"the run's {records} answers", f"{len(recs)}")
        recs = recs[:records]
    keep = [{k: r[k] for k in ("key", "prompt", "a", "b", "choice")} for r in recs]
    return preference_pairs(recs), len(recs), _sha(keep)


def _base(base: str | None, what: str = "base") -> tuple[GPT, RunRecord]:
    if base is None:
        fail(what, "the run directory of a GPT (seqlab train gpt)", "nothing")
    return _load_gpt(base, what)


class _PairFamily(Family):
    """What the reward model and DPO share: their data are a preferences file and a GPT run."""

    metric = "validation loss"

    def make_data(self, options, fields, train_config) -> PairData:
        gpt, run = _base(options.base)
        if options.prefs is None:
            fail("prefs", "a preferences file (seqlab rlhf label ... --out FILE)", "nothing")
        prefs = str(Path(options.prefs).expanduser().resolve())
        pairs, n, sha = read_pairs(prefs)
        dataset = PairDataset(pairs, run.tokenizer, gpt.config.block_size, options.val_fraction)
        return PairData(dataset, prefs, n, sha, str(run.dir or run.checkpoint), (gpt, run))

    def data_from_run(self, run: RunRecord, options) -> PairData:
        saved = run.saved_data()
        pairs, n, sha = read_pairs(saved["prefs"], saved["records"])
        if sha != saved["sha256"]:
            fail(f"preferences file {saved['prefs']!r}", f"the {n} answers the run was trained on (sha256 "
                 f"{saved['sha256'][:12]})", f"other answers (sha256 {sha[:12]})")
        dataset = PairDataset(pairs, run.tokenizer, run.config.gpt.block_size, saved.get("val_fraction", 0.1))
        return PairData(dataset, saved["prefs"], n, sha, saved.get("base"))

    def training_data(self, data: PairData) -> PairDataset:
        return data.dataset

    def files(self, data: PairData) -> dict[str, str]:
        return {"tokenizer.json": data.tokenizer.to_json()}

    def extras(self, run: RunRecord) -> None:
        run.tokenizer = tokenizer_from_json(run.file("tokenizer.json"))
        if run.tokenizer.vocab_size != run.config.gpt.vocab_size:
            fail(f"checkpoint {run.checkpoint}", f"a tokenizer of {run.config.gpt.vocab_size} tokens",
                 f"{run.tokenizer.vocab_size} tokens")


# --------------------------------------------------------------------------- reward model


@dataclass(frozen=True)
class RewardData:
    """The data of a reward model.

    Attributes:
        base: the GPT run whose body the reward model starts from (seqlab train gpt)
        prefs: the preferences file (JSON Lines, seqlab rlhf label ... --out FILE)
        val_fraction: the fraction of the decided pairs held out for validation
    """

    base: str | None = None
    prefs: str | None = None
    val_fraction: float = 0.1


@dataclass(frozen=True)
class RewardEvaluation:
    """Options of ``seqlab eval`` for a reward model.

    Attributes:
        split: the pairs to score: val (held out) or train
    """

    split: str = "val"


@dataclass
class PairAccuracy:
    accuracy: float
    split: str
    pairs: int

    def table(self) -> str:
        return (f"reward-model accuracy {self.accuracy:.3f} on the {self.pairs} {self.split} pairs "
                f"(r(preferred) > r(rejected))")

    def to_json(self) -> dict:
        return {"accuracy": self.accuracy, "split": self.split, "pairs": self.pairs}


@torch.no_grad()
def pair_accuracy(model: RewardModel, dataset: PairDataset, split: str = "val", batch_size: int = 64) -> float:
    """The fraction of the split's pairs whose preferred completion gets the higher reward."""
    was = model.training
    model.eval()
    right = total = 0
    device = model.w_r.device
    try:
        for b in dataset.batches(split, batch_size):
            b = PairBatch(*(t.to(device) for t in b))
            rw = model(b.chosen, b.chosen_len)
            rl = model(b.rejected, b.rejected_len)
            right += int((rw > rl).sum())
            total += rw.numel()
    finally:
        model.train(was)
    return right / total


class RewardModelFamily(_PairFamily):
    name = "reward-model"
    description = "RLHF reward model: a GPT body with a scalar head, trained on preferences (Bradley-Terry)"
    model_class = RewardModel
    config_class = RewardModelConfig
    data_class = RewardData
    evaluate_class = RewardEvaluation
    train_defaults = dict(max_steps=300, batch_size=16, lr=3e-4, min_lr=3e-5, warmup_steps=20, weight_decay=0.01,
                          clip_norm=1.0, eval_every=100, eval_batches=4, log_every=10)
    data_fields = ("gpt",)
    metric = "validation loss (Bradley-Terry)"

    def config_from_data(self, data: PairData, train_config) -> dict:
        return {"gpt": data.base[0].config}

    def new_model(self, config: RewardModelConfig, data: PairData) -> RewardModel:
        return RewardModel.from_gpt(data.base[0])

    def evaluate(self, model: RewardModel, run: RunRecord, options: RewardEvaluation) -> PairAccuracy:
        if options.split not in ("val", "train"):
            fail("split", "'val' or 'train'", repr(options.split))
        data = self.data_from_run(run, {})
        return PairAccuracy(pair_accuracy(model, data.dataset, options.split), options.split,
                            data.dataset.size(options.split))

    def report(self, model: RewardModel, run: RunRecord) -> list[str]:
        return [self.evaluate(model, run, RewardEvaluation()).table() + " (best checkpoint)"]


# --------------------------------------------------------------------------- DPO


@dataclass(frozen=True)
class DPOData:
    """The data of DPO.

    Attributes:
        base: the GPT run the policy starts from, and the frozen reference (seqlab train gpt)
        prefs: the preferences file (JSON Lines, seqlab rlhf label ... --out FILE)
        val_fraction: the fraction of the decided pairs held out for validation
    """

    base: str | None = None
    prefs: str | None = None
    val_fraction: float = 0.1


class _PolicyFamily:
    """Sampling a PPO or DPO run: its policy is a GPT."""

    sample_class = GPTSampleOptions

    def sample(self, model, run: RunRecord, options: GPTSampleOptions, *, on_text=None) -> str:
        return sample_text(model.policy, run.tokenizer, options, on_text=on_text, use_cache=options.cache)

    def format_sample(self, result: str, options) -> str:
        return (options.prompt or "") + result

    def report(self, model, run: RunRecord) -> list[str]:
        return ["sample: " + self.sample(model, run, GPTSampleOptions(length=200))]


def _start_policy(model, base_gpt: GPT, **frozen: Any):
    """A policy that starts from the base GPT's weights, with a frozen copy as its reference."""
    model.policy.load_state_dict(base_gpt.state_dict())
    model.attach(reference=copy.deepcopy(base_gpt), **frozen)
    return model


class DPOFamily(_PolicyFamily, _PairFamily):
    name = "dpo"
    description = "RLHF with DPO: a GPT optimised directly on preferences against its frozen starting point"
    model_class = DPOModel
    config_class = DPOConfig
    data_class = DPOData
    train_defaults = dict(max_steps=200, batch_size=16, lr=1e-4, min_lr=1e-5, warmup_steps=10, weight_decay=0.0,
                          clip_norm=1.0, eval_every=50, eval_batches=4, log_every=10)
    data_fields = ("gpt", "reference")
    metric = "validation loss (DPO)"

    def config_from_data(self, data: PairData, train_config) -> dict:
        gpt, run = data.base
        return {"gpt": gpt.config, "reference": str(Path(run.checkpoint).resolve())}

    def new_model(self, config: DPOConfig, data: PairData) -> DPOModel:
        return _start_policy(DPOModel(config), data.base[0])


# --------------------------------------------------------------------------- PPO


@dataclass(frozen=True)
class PPOData:
    """The data of PPO.

    Attributes:
        base: the GPT run the policy starts from, and the frozen reference (seqlab train gpt)
        reward: a reward-model run (seqlab rlhf reward), the reward PPO maximises
        judge: a scripted judge (vowels or sentiment): the reward without --reward, else only measured
        prompts: a file of prompts, one per line (default: line beginnings of the base run's corpus)
        val_fraction: the fraction of the prompts held out for validation
    """

    base: str | None = None
    reward: str | None = None
    judge: str | None = None
    prompts: str | None = None
    val_fraction: float = 0.1


class PromptDataset:
    """Prompts as token ids, split into train and val (a fixed shuffle); a batch is
    (ids (B, P) right-padded, lengths (B,))."""

    def __init__(self, prompts: list[str], tokenizer: Tokenizer, val_fraction: float = 0.1) -> None:
        check_float(val_fraction, "val_fraction", minimum=0.0, maximum=1.0, open_min=True, open_max=True)
        if len(prompts) < 2:
            fail("prompts", "at least 2 prompts (train and validation)", len(prompts))
        self.prompts = list(prompts)
        self.tokenizer = tokenizer
        self.val_fraction = val_fraction
        self.ids = [tokenizer.encode(p, name="prompt") for p in prompts]
        if any(not ids for ids in self.ids):
            fail("prompts", "prompts of at least one token", "an empty prompt")
        order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(0)).tolist()
        n_val = min(max(1, round(len(prompts) * val_fraction)), len(prompts) - 1)
        self.split = {"val": order[:n_val], "train": order[n_val:]}

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None):
        if split not in self.split:
            fail("split", "'train' or 'val'", repr(split))
        rows = self.split[split]
        pick = torch.randint(len(rows), (batch_size,), generator=generator).tolist()
        return pad_sequences([self.ids[rows[i]] for i in pick])


@dataclass
class PromptData:
    dataset: PromptDataset
    source: str | None  # the prompts file, or None: the base run's corpus
    base_dir: str | None = None
    reward_dir: str | None = None
    judge: str | None = None
    base: Any = None  # (GPT, RunRecord), new runs only
    reward_model: Any = None  # (RewardModel, RunRecord), new runs only

    @property
    def tokenizer(self) -> Tokenizer:
        return self.dataset.tokenizer

    def info(self) -> dict:
        return {"base": self.base_dir, "reward": self.reward_dir, "judge": self.judge, "prompts": self.source,
                "count": len(self.dataset.prompts), "sha256": _sha(self.dataset.prompts),
                "val_fraction": self.dataset.val_fraction}


class PPOFamily(_PolicyFamily, Family):
    name = "ppo"
    description = "RLHF with PPO: a GPT optimised against a reward model (or a judge), KL-penalised to its start"
    model_class = PPOModel
    config_class = PPOConfig
    data_class = PPOData
    # no divergence guard: PPO's loss (a surrogate whose advantages are normalised) starts near 0
    # and changes sign, so "far above the first step's loss" means nothing for it
    train_defaults = dict(max_steps=100, batch_size=16, lr=1e-4, warmup_steps=0, schedule="constant",
                          weight_decay=0.0, clip_norm=1.0, eval_every=25, eval_batches=2, log_every=5,
                          diverge_factor=None)
    data_fields = ("gpt", "reference", "reward", "judge")
    metric = "validation loss (-(reward - kl_coef KL) on held-out prompts)"
    checkpoint = "latest"

    def make_data(self, options: PPOData, fields, train_config) -> PromptData:
        gpt, run = _base(options.base)
        if options.reward is None and options.judge is None:
            fail("reward", "a reward-model run (--reward RUN_DIR) or a scripted judge (--judge NAME)", "neither")
        if options.judge is not None:
            get_judge(options.judge)
        rm = None
        if options.reward is not None:
            from seqlab.runs import load

            rm = load(options.reward)
            if not isinstance(rm[0], RewardModel):
                fail("reward", "a reward-model run (seqlab rlhf reward)", f"a {rm[1].family!r} run")
            if rm[1].tokenizer != run.tokenizer:
                fail("reward", "a reward model trained with the base run's tokenizer", "another tokenizer")
        if options.prompts is not None:
            source = str(Path(options.prompts).expanduser().resolve())
            prompts = read_prompts(source)
        else:
            from seqlab.data.text import saved_corpus

            source = None
            prompts = corpus_prompts(saved_corpus(run.saved_data()).text)
        dataset = PromptDataset(prompts, run.tokenizer, options.val_fraction)
        return PromptData(dataset, source, str(run.dir or run.checkpoint),
                          None if rm is None else str(rm[1].dir or rm[1].checkpoint), options.judge, (gpt, run), rm)

    def data_from_run(self, run: RunRecord, options) -> PromptData:
        saved = run.saved_data()
        prompts = json.loads(run.file("prompts.json"))
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            fail(f"checkpoint {run.checkpoint}", "prompts.json: a list of strings", type(prompts).__name__)
        dataset = PromptDataset(prompts, run.tokenizer, saved.get("val_fraction", 0.1))
        return PromptData(dataset, saved.get("prompts"), saved.get("base"), saved.get("reward"), saved.get("judge"))

    def training_data(self, data: PromptData) -> PromptDataset:
        return data.dataset

    def files(self, data: PromptData) -> dict[str, str]:
        return {"tokenizer.json": data.tokenizer.to_json(), "prompts.json": json.dumps(data.dataset.prompts)}

    def extras(self, run: RunRecord) -> None:
        _PairFamily.extras(self, run)

    def config_from_data(self, data: PromptData, train_config) -> dict:
        gpt, run = data.base
        reward = None if data.reward_model is None else str(Path(data.reward_model[1].checkpoint).resolve())
        return {"gpt": gpt.config, "reference": str(Path(run.checkpoint).resolve()), "reward": reward,
                "judge": data.judge}

    def new_model(self, config: PPOConfig, data: PromptData) -> PPOModel:
        frozen: dict[str, Any] = {"tokenizer": data.base[1].tokenizer}
        if data.reward_model is not None:
            frozen["reward_model"] = data.reward_model[0]
        return _start_policy(PPOModel(config), data.base[0], **frozen)


register(RewardModelFamily())
register(DPOFamily())
register(PPOFamily())
