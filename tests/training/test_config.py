"""Training settings (seqlab.training.config): checks, the dict round trip, the schedule."""

import dataclasses
import json
import math
import re

import pytest

from seqlab.training.config import TrainConfig, lr_at


def test_lr_schedule_values():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == 0.0
    assert lr_at(5, cfg) == pytest.approx(0.5)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)  # half way: (lr + min_lr) / 2
    assert lr_at(35, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert lr_at(110, cfg) == pytest.approx(0.1)
    assert lr_at(500, cfg) == pytest.approx(0.1)
    after = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(after, after[1:]))
    assert lr_at(110, TrainConfig(lr=2.0, warmup_steps=10, max_steps=110)) == pytest.approx(0.2)  # min_lr = lr / 10
    const = TrainConfig(lr=1.0, warmup_steps=4, max_steps=100, schedule="constant")
    assert [lr_at(s, const) for s in (1, 4, 50, 100)] == [0.25, 1.0, 1.0, 1.0]
    assert lr_at(0, TrainConfig(lr=1.0, warmup_steps=0, max_steps=10)) == 1.0
    with pytest.raises(ValueError, match=r"step: expected an integer >= 0, received -1"):
        lr_at(-1, cfg)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("max_steps", 0, r"max_steps: expected an integer >= 1, received 0"),
        ("max_steps", 1.5, r"max_steps: expected an integer, received 1.5"),
        ("max_seconds", 0, r"max_seconds: expected a number > 0.0, received 0.0"),
        ("batch_size", 0, r"batch_size: expected an integer >= 1, received 0"),
        ("lr", -1e-3, r"lr: expected a number > 0.0, received -0.001"),
        ("lr", float("inf"), r"lr: expected a finite number, received inf"),
        ("min_lr", 1.0, r"min_lr: expected a number <= 0.003, received 1.0"),
        ("warmup_steps", -1, r"warmup_steps: expected an integer >= 0, received -1"),
        ("schedule", "linear", r"schedule: expected one of 'cosine', 'constant', received 'linear'"),
        ("weight_decay", -0.1, r"weight_decay: expected a number >= 0.0, received -0.1"),
        ("beta1", 1.0, r"beta1: expected a number < 1.0, received 1.0"),
        ("beta2", "0.9", r"beta2: expected a number, received '0.9'"),
        ("clip_norm", -0.5, r"clip_norm: expected a number > 0.0, received -0.5"),
        ("clip_norm", float("inf"), r"clip_norm: expected a finite number, received inf"),
        ("clip_value", True, r"clip_value: expected a number, received True"),
        ("clip_value", -1, r"clip_value: expected a number > 0.0, received -1.0"),
        ("eval_every", 0, r"eval_every: expected an integer >= 1, received 0"),
        ("eval_batches", 0, r"eval_batches: expected an integer >= 1, received 0"),
        ("patience", 0, r"patience: expected an integer >= 1, received 0"),
        ("save_every", 0, r"save_every: expected an integer >= 1, received 0"),
        ("keep_last", 0, r"keep_last: expected an integer >= 1, received 0"),
        ("seed", -1, r"seed: expected an integer >= 0, received -1"),
        ("device", "tpu", r"device: expected one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps', received 'tpu'"),
        ("precision", "fp16", r"precision: expected one of 'auto', 'fp32', 'bf16', received 'fp16'"),
        ("log_every", 0, r"log_every: expected an integer >= 1, received 0"),
    ],
)
def test_train_config_validation(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_train_config_dict_round_trip():
    cfg = TrainConfig(max_steps=7, min_lr=1e-4, patience=3, clip_value=0.5, device="cuda:1")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_dict({"lr": 0.1}) == TrainConfig(lr=0.1)
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()
    with pytest.raises(ValueError, match=r"train config: expected fields among max_steps, .*received unknown field\(s\) 'learning_rate'"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ValueError, match=r"train config: expected a dict, received list"):
        TrainConfig.from_dict([])


@pytest.mark.parametrize("field", ["clip_norm", "clip_value"])
@pytest.mark.parametrize("zero", [0, 0.0])
def test_zero_clipping_means_off_and_is_stored_as_none(field, zero):
    cfg = TrainConfig(**{field: zero})
    assert getattr(cfg, field) is None
    assert cfg == TrainConfig(**{field: None})
    assert TrainConfig.from_dict({field: zero}).to_dict()[field] is None  # run.json says "off" one way


def attribute_entries(cls):
    """(names, text) of each entry of a Google-style "Attributes:" section, continuation
    lines joined."""
    section = cls.__doc__.split("Attributes:", 1)[1]
    entries = []
    for line in section.splitlines():
        m = re.match(r"^        ([a-z0-9_]+(?:, [a-z0-9_]+)*): (\S.*)$", line)
        if m:
            entries.append((m.group(1).split(", "), m.group(2)))
        elif line.startswith("            ") and entries:
            names, text = entries[-1]
            entries[-1] = (names, text + " " + line.strip())
    return entries


def test_every_field_has_one_entry_in_the_attributes_section():
    """The command line makes each --flag's help from these lines: ``name: help`` (several
    names may share an entry, ``beta1, beta2: ...``), one entry per field, in field order."""
    entries = attribute_entries(TrainConfig)
    assert [n for names, _ in entries for n in names] == [f.name for f in dataclasses.fields(TrainConfig)]
    for names, text in entries:
        first_sentence = text.split(". ")[0]
        assert len(first_sentence) <= 100, (names, first_sentence)
    text = dict((names[0], text) for names, text in entries)
    for field in ("clip_norm", "clip_value"):
        assert "(0 or ``None``: off)" in text[field] and "A 0 is stored as ``None``." in text[field], text[field]
