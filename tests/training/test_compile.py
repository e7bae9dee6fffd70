"""``seqlab train --compile`` (seqlab/transformer/compile.py, TrainConfig.compile): the model's
forward compiled in place for any family, checkpoints that load, sample and resume with or
without compile, and the one-line fallback where compilation fails.

The runs here compile with the ``aot_eager`` backend (the same tracing by dynamo and
AOTAutograd as the default inductor backend, without its C++ build, which takes tens of
seconds on a 2-core CPU); one test compiles a GPT with inductor itself."""

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import seqlab
from seqlab.cli import main
from seqlab.llm.gpt import GPT, GPTConfig
from seqlab.training.config import TrainConfig
from seqlab.training.rundir import latest_checkpoint
from seqlab.transformer import compile as compile_mod
from seqlab.transformer.compile import compile_in_place, is_compiled

TINY = dict(max_steps=4, eval_every=2, eval_batches=1, batch_size=4, warmup_steps=1, log_every=1)
GPT_TINY = dict(preset="cpu-tiny", block_size=16, **TINY)
LSTM_TINY = dict(hidden_size=16, num_layers=1, block_size=16, **TINY)


@pytest.fixture(autouse=True)
def fast_backend(monkeypatch):
    monkeypatch.setattr(compile_mod, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _weights(run_dir) -> dict[str, torch.Tensor]:
    """The weights of the latest checkpoint of a run, read from model.safetensors."""
    return load_file(str(latest_checkpoint(run_dir) / "model.safetensors"))


def _help(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_config_field_is_checked_and_shown_for_every_family(capsys):
    assert TrainConfig().compile is False and TrainConfig(compile=True).compile is True
    with pytest.raises(ValueError, match="compile: expected True or False"):
        TrainConfig(compile="yes")
    for family in ("gpt", "lstm", "vae"):
        assert "--compile, --no-compile" in _help(capsys, ["train", family])


def test_compile_in_place_keeps_the_state_dict_keys_and_the_outputs():
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("cpu-tiny", vocab_size=11, block_size=8))
    keys = list(model.state_dict())
    x = torch.randint(0, 11, (2, 8))
    want = model(x)
    note = compile_in_place(model)
    assert "compiled" in note and is_compiled(model) and isinstance(model, GPT)
    assert list(model.state_dict()) == keys  # no _orig_mod. prefix
    torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-6)
    loss, _ = model.loss((x, x))
    loss.backward()
    assert model.w_x.grad is not None and torch.isfinite(model.w_x.grad).all()


def test_a_compiler_failure_falls_back_to_the_plain_forward_once():
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no C++ compiler here")

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 3))

        def forward(self, x):
            return torch.tanh(x @ self.w.T)

    torch.manual_seed(0)
    model = Tiny()
    x = torch.randn(5, 3)
    want = model(x)
    lines = []
    compile_in_place(model, backend=broken_backend, on_fallback=lines.append)
    torch.testing.assert_close(model(x), want)
    torch.testing.assert_close(model(x), want)
    assert len(lines) == 1 and "training goes on uncompiled" in lines[0] and "\n" not in lines[0]
    assert "no C++ compiler here" in lines[0] and not is_compiled(model)


def test_the_model_s_own_errors_are_not_taken_for_compiler_failures():
    model = GPT(GPTConfig.preset("cpu-tiny", vocab_size=11, block_size=8))
    lines = []
    compile_in_place(model, on_fallback=lines.append)
    with pytest.raises(ValueError, match="ids"):
        model(torch.full((1, 4), 99))  # a token id outside the vocabulary
    assert lines == []


@pytest.mark.parametrize("family, options", [("gpt", GPT_TINY), ("lstm", LSTM_TINY)])
def test_compiled_run_loads_samples_and_resumes_without_compile_and_back(tmp_path, family, options):
    """Step 1 compiled, step 2 resumed without compile, steps 3-4 resumed compiled again:
    the weights of the uninterrupted plain run (aot_eager runs the same operations; float32
    rounding may differ in the last bits)."""
    plain = seqlab.train(family, out=tmp_path / "plain", progress=False, **options)
    stop = dict(max_seconds=1e-9)  # each invocation makes one step, then saves
    result = seqlab.train(family, out=tmp_path / "r", progress=False, compile=True, **options, **stop)
    run_dir = result.run_dir
    assert result.steps == 1
    assert json.loads((run_dir / "run.json").read_text())["train_config"]["compile"] is True
    saved = _weights(run_dir)
    assert not any("_orig_mod" in k for k in saved)
    # loaded (never compiled): the weights of the checkpoint, and it samples
    model, _ = seqlab.load(run_dir)
    state = model.state_dict()
    assert set(saved) <= set(state)
    for k, v in saved.items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    assert isinstance(seqlab.sample(run_dir, length=5, prompt="a"), str)
    assert seqlab.resume(run_dir, progress=False, compile=False, **stop).steps == 2
    assert json.loads((run_dir / "run.json").read_text())["train_config"]["compile"] is False
    assert seqlab.resume(run_dir, progress=False, compile=True).steps == 4
    a, b = _weights(plain.run_dir), _weights(run_dir)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)


def test_compiled_and_plain_runs_agree(tmp_path):
    """The same GPT run with and without compile: the same loss curve and weights (aot_eager
    runs the same operations; float32 rounding may differ in the last bits)."""
    plain = seqlab.train("gpt", out=tmp_path / "plain", progress=False, **GPT_TINY)
    comp = seqlab.train("gpt", out=tmp_path / "comp", progress=False, compile=True, **GPT_TINY)
    a, b = _weights(plain.run_dir), _weights(comp.run_dir)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    assert comp.best_val_loss == pytest.approx(plain.best_val_loss, rel=1e-4)


def test_inductor_compiles_a_gpt_step(monkeypatch):
    """The default backend itself (a C++ build: slow on a small CPU, so one tiny model)."""
    monkeypatch.setattr(compile_mod, "BACKEND", "inductor")
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("cpu-tiny", vocab_size=11, block_size=8, num_layers=1))
    plain = GPT(GPTConfig.preset("cpu-tiny", vocab_size=11, block_size=8, num_layers=1))
    plain.load_state_dict(model.state_dict())
    lines = []
    compile_in_place(model, on_fallback=lines.append)
    x = torch.randint(0, 11, (2, 8))
    loss, _ = model.loss((x, x))
    want, _ = plain.loss((x, x))
    if lines:  # no working C++ toolchain: the fallback must have said so and given the plain result
        assert "uncompiled" in lines[0]
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
