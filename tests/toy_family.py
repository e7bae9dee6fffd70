"""A model family defined in one file outside the package: a counter that learns the next
number of 0, 1, 2, ... modulo m. Importing this file registers it; ``tests/test_runs.py``
then trains, resumes, loads and samples it through the command line, with no edit to the
CLI or the run code (the proof that a family plugs in by itself)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.runs import Family, register
from seqlab.validation import check_int, fields_from_dict


@dataclass(frozen=True)
class CounterConfig:
    """A counter.

    Attributes:
        modulus: the numbers are 0 .. modulus - 1
        hidden_size: width of each number's embedding
    """

    modulus: int = 10
    hidden_size: int = 8

    def __post_init__(self) -> None:
        check_int(self.modulus, "modulus", minimum=2)
        check_int(self.hidden_size, "hidden_size", minimum=1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d) -> "CounterConfig":
        return cls(**fields_from_dict(cls, d, "counter config"))


class Counter(nn.Module):
    """logits(x) = w_o . e(x): which number follows x."""

    def __init__(self, config: CounterConfig) -> None:
        super().__init__()
        self.config = config
        self.e = nn.Parameter(torch.randn(config.modulus, config.hidden_size))  # (m, H)
        self.w_o = nn.Parameter(torch.randn(config.modulus, config.hidden_size) * 0.1)  # (m, H)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.e[x] @ self.w_o.T  # (B, m)

    def loss(self, batch):
        x, y = batch
        logits = self(x)
        return F.cross_entropy(logits, y), {"accuracy": float((logits.argmax(-1) == y).float().mean())}


class Counting:
    """Batches of (x, x + 1 mod m)."""

    def __init__(self, modulus: int):
        self.modulus = modulus

    def get_batch(self, split, batch_size, generator=None):
        x = torch.randint(self.modulus, (batch_size,), generator=generator)
        return x, (x + 1) % self.modulus

    def info(self) -> dict:
        return {"kind": "counting", "modulus": self.modulus}


@dataclass(frozen=True)
class CountingData:
    """The data of a counter.

    Attributes:
        modulus_of_data: count modulo this (default: the model's modulus)
    """

    modulus_of_data: int | None = None


@dataclass(frozen=True)
class CountSample:
    """Options of ``seqlab sample`` for a counter.

    Attributes:
        start: the number to count from
        length: numbers to generate
    """

    start: int = 0
    length: int = 5


class CounterFamily(Family):
    name = "toy-counter"
    description = "a toy: learns to count (defined in tests/toy_family.py)"
    model_class = Counter
    config_class = CounterConfig
    data_class = CountingData
    sample_class = CountSample
    presets = {"cpu-tiny": {"hidden_size": 4}, "cpu-small": {"hidden_size": 8}}
    train_defaults = dict(max_steps=60, batch_size=16, lr=0.1, warmup_steps=0, eval_every=20, eval_batches=2,
                          clip_norm=None)

    def make_data(self, options, fields, train_config):
        return Counting(options.modulus_of_data or fields.get("modulus", CounterConfig.modulus))

    def data_from_run(self, run, options):
        return Counting(run.data["modulus"])

    @torch.no_grad()
    def sample(self, model, run, options):
        out, x = [], options.start
        for _ in range(options.length):
            x = int(model(torch.tensor([x])).argmax(-1))
            out.append(x)
        return out

    def format_sample(self, result, options):
        return " ".join(map(str, result))


register(CounterFamily())
