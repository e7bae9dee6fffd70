"""Resuming is exact for every registered family: a run trained 6 steps in one go equals one
interrupted after step 3 and resumed (``seqlab.resume``) to step 6, in every logged loss and in
the final weights and optimizer state, bit for bit (on the CPU, at tiny sizes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import seqlab
from seqlab import runs
from seqlab.training import loop
from seqlab.training.checkpoint import load_checkpoint
from seqlab.training.rundir import latest_checkpoint

STEPS, CUT = 6, 3
TRAIN = dict(max_steps=STEPS, eval_every=2, log_every=2, eval_batches=1, device="cpu")
TEXT = dict(preset="cpu-tiny", block_size=16, batch_size=4, warmup_steps=2)
IMAGES = dict(preset="cpu-tiny", batch_size=8, warmup_steps=2)
# the tiny options of every family of seqlab (a new family adds its line here)
TINY = {
    "rnn": TEXT, "lstm": TEXT, "gru": TEXT,
    "gpt": TEXT,
    "bert": TEXT,
    "bert-classifier": dict(batch_size=4, warmup_steps=2),  # + base: a BERT run
    "gpt-finetune": dict(batch_size=4, warmup_steps=2, lora_rank=2),  # + base: a GPT run
    "icl": dict(preset="cpu-tiny", d_model=32, tasks="reverse,cipher", max_shots=2, min_length=3, max_length=3,
                symbols=5, batch_size=4, warmup_steps=2, eval_prompts=2),
    "instruct": dict(preset="cpu-tiny", batch_size=4, warmup_steps=1, examples=200, defense="segment+adversarial"),
    "reward-model": dict(batch_size=4, warmup_steps=1),  # + base: a GPT run, prefs: its labelled pairs
    "dpo": dict(batch_size=4, warmup_steps=1),  # + base, prefs
    "ppo": dict(batch_size=4, warmup_steps=1, judge="vowels", new_tokens=4),  # + base, prompts
    "rbm": dict(preset="cpu-tiny", hidden_size=8, batch_size=10),
    "gan": IMAGES,
    "vae": IMAGES,
    "diffusion": dict(IMAGES, timesteps=20),
    "asr": dict(preset="cpu-tiny", utterances=8, val_utterances=2, test_utterances=2, batch_size=2, warmup_steps=1),
    "caption": dict(preset="cpu-tiny", batch_size=4, warmup_steps=1, scenes=64),
    "control": dict(preset="cpu-tiny", env="cartpole-masked", batch_size=3),
    "forecast": dict(preset="cpu-tiny", batch_size=4, warmup_steps=1),
    "handwriting": dict(preset="cpu-tiny", words=24, val_words=4, test_words=4, writers=4, test_writers=2,
                        batch_size=4, warmup_steps=1),
    "translate": dict(preset="cpu-tiny", high=199, batch_size=4, warmup_steps=2),
    "tts": dict(preset="cpu-tiny", utterances=8, val_utterances=2, test_utterances=2, batch_size=2, warmup_steps=1),
}


def test_every_family_of_seqlab_is_covered():
    ours = {name for name, fam in runs.families().items() if type(fam).__module__.startswith("seqlab.")}
    commands = {c for c, (fam, _) in runs.commands().items() if fam.name in ours}
    assert ours <= {runs.get_family(c).name for c in TINY} and commands <= set(TINY)


@pytest.fixture(scope="module")
def bert_base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "bert"
    seqlab.train("bert", out=out, progress=False, max_steps=2, eval_every=2, eval_batches=1, **TEXT)
    return out


@pytest.fixture(scope="module")
def gpt_base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "gpt"
    seqlab.train("gpt", out=out, progress=False, max_steps=2, eval_every=2, eval_batches=1, **TEXT)
    return out


@pytest.fixture(scope="module")
def prefs(gpt_base) -> Path:
    """Pairs of the GPT base's samples labelled by the scripted vowels judge (and a prompts file)."""
    from seqlab.llm.preferences import label

    gpt, run = seqlab.load(gpt_base)
    prompts = ["The ", "class ", "def ", "for ", "a ", "if ", "in ", "is "]
    out = gpt_base.parent / "prefs.jsonl"
    label(gpt, run.tokenizer, prompts, out, judge="vowels", length=6, run=str(gpt_base))
    (gpt_base.parent / "prompts.txt").write_text("".join(p + "\n" for p in prompts))
    return out


def records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in ("time", "tokens_per_s", "steps_per_s")}
            for line in lines]


@pytest.mark.parametrize("command", list(TINY))
def test_an_interrupted_and_resumed_run_equals_the_uninterrupted_one(command, tmp_path, monkeypatch, request):
    options = dict(TINY[command], **TRAIN)
    if command == "bert-classifier":
        options["base"] = str(request.getfixturevalue("bert_base"))
    elif command in ("gpt-finetune", "reward-model", "dpo", "ppo"):
        options["base"] = str(request.getfixturevalue("gpt_base"))
    if command in ("reward-model", "dpo"):
        options["prefs"] = str(request.getfixturevalue("prefs"))
    elif command == "ppo":
        options["prompts"] = str(request.getfixturevalue("prefs").with_name("prompts.txt"))
    straight = seqlab.train(command, out=tmp_path / "straight", progress=False, **options)
    assert straight.steps == STEPS and straight.stopped == "max_steps"

    real_step = loop._Run.train_step

    def interrupted(self):
        if self.step == CUT:  # a Ctrl-C (pressed twice) before step CUT + 1
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(loop._Run, "train_step", interrupted)
    part = seqlab.train(command, out=tmp_path / "cut", progress=False, **options)
    assert part.stopped == "interrupted" and part.steps == CUT
    monkeypatch.undo()
    rest = seqlab.resume(tmp_path / "cut", progress=False)
    assert rest.steps == STEPS and rest.stopped == "max_steps"

    # every record equal, but the extra evaluation the interrupted invocation made at its last step
    everything = records(tmp_path / "cut")
    cut = [r for r in everything if (r["step"], r["split"]) != (CUT, "val")]
    assert len(cut) == len(everything) - 1
    assert cut == records(tmp_path / "straight")
    assert [r["step"] for r in cut if r["split"] == "train"] == [2, 4, 6]
    assert rest.last_val_loss == straight.last_val_loss

    a = load_checkpoint(latest_checkpoint(tmp_path / "straight"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "cut"))
    assert a.state_dict.keys() == b.state_dict.keys()
    for name, tensor in a.state_dict.items():
        assert torch.equal(tensor, b.state_dict[name]), name
    assert (a.optimizer_state is None) == (b.optimizer_state is None)
    if a.optimizer_state is not None:
        for pid, entry in a.optimizer_state["state"].items():
            for key, value in entry.items():
                other = b.optimizer_state["state"][pid][key]
                assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other, key
    for key in ("step", "diverge_reference", "window", "bad_evals"):
        assert a.trainer_state[key] == b.trainer_state[key], key
