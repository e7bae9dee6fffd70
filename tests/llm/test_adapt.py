"""Fine-tuning with frozen layers and LoRA (seqlab/llm/adapt.py, finetune.py, gpt_finetune_family.py,
the BERT classifier's --freeze/--lora-rank): the LoRA equation and its parity with Hugging Face
peft, frozen weights bit-identical after training with no gradient and no optimiser state,
checkpoints holding only what changed and rebuilding the whole model, merging, the command
line and its bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import seqlab
from seqlab.cli import main
from seqlab.llm.adapt import LoRA, add_lora, merge_lora
from seqlab.llm.bert import BERTClassifier
from seqlab.llm.finetune import FineTunedGPT, GPTFineTuneConfig, mean_loss
from seqlab.llm.gpt import GPT, GPTConfig
from seqlab.testing import one_line_error
from seqlab.training.checkpoint import load_checkpoint
from seqlab.training.rundir import latest_checkpoint

TINY = dict(preset="cpu-tiny", block_size=16, batch_size=4, warmup_steps=2, eval_batches=1)
TUNE = dict(max_steps=6, eval_every=6, eval_batches=1, batch_size=4, warmup_steps=2, log_every=3)


@pytest.fixture(scope="module")
def gpt_base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "gpt"
    seqlab.train("gpt", out=out, progress=False, max_steps=4, eval_every=4, **TINY)
    return out


@pytest.fixture(scope="module")
def bert_base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "bert"
    seqlab.train("bert", out=out, progress=False, max_steps=2, eval_every=2, **TINY)
    return out


# --------------------------------------------------------------------------- LoRA, the equation


def test_lora_is_w_plus_alpha_over_r_b_a_and_starts_at_w():
    torch.manual_seed(0)
    layer = nn.Linear(6, 5, bias=False).double()
    W = layer.weight.detach().clone()
    lora = add_lora(layer, "weight", rank=3, alpha=6.0)
    assert torch.equal(layer.weight, W)  # B = 0: the adapted model equals the base one at step 0
    assert lora.A.shape == (3, 6) and lora.B.shape == (5, 3) and lora.scaling == 2.0
    assert float(lora.A.detach().abs().max()) <= 1 / 6 ** 0.5  # Kaiming-uniform with a = sqrt(5): U(+-1/sqrt(in))
    with torch.no_grad():
        lora.B.normal_()
    assert torch.allclose(layer.weight, W + 2.0 * lora.B @ lora.A, atol=1e-14, rtol=0)
    assert not layer.parametrizations.weight.original.requires_grad
    assert [n for n, p in layer.named_parameters() if p.requires_grad] == ["parametrizations.weight.0.A",
                                                                            "parametrizations.weight.0.B"]
    x = torch.randn(4, 6, dtype=torch.float64)
    before = layer(x)
    assert merge_lora(layer) == 1
    assert isinstance(layer.weight, nn.Parameter) and torch.allclose(layer(x), before, atol=1e-13, rtol=0)


def test_lora_refuses_what_it_cannot_adapt():
    with pytest.raises(ValueError, match="LoRA weight: expected a matrix"):
        LoRA(torch.zeros(3), 1)
    with pytest.raises(ValueError, match="lora_rank: expected an integer >= 1"):
        LoRA(torch.zeros(3, 3), 0)
    with pytest.raises(ValueError, match="LoRA target: expected a weight matrix named 'nosuch'"):
        add_lora(nn.Linear(2, 2), "nosuch", 1)


def test_lora_equals_peft_outputs_and_gradients_in_float64():
    """The same module and weights: peft's LoRA on two nn.Linear layers and ours on copies of
    them give the same outputs and the same gradients of A, B and the input."""
    peft = pytest.importorskip("peft", reason="peft is a test-only dependency (pip install -e '.[bench]')")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    ours = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    ours.load_state_dict(net.state_dict())
    theirs = peft.get_peft_model(net, peft.LoraConfig(r=2, lora_alpha=3, target_modules=["0", "2"],
                                                      lora_dropout=0.0))
    loras = {i: add_lora(ours[i], "weight", rank=2, alpha=3.0) for i in (0, 2)}
    with torch.no_grad():
        for i, lora in loras.items():
            layer = theirs.base_model.model[i]
            layer.lora_B["default"].weight.normal_()  # B != 0, so the product counts
            lora.A.copy_(layer.lora_A["default"].weight)
            lora.B.copy_(layer.lora_B["default"].weight)
    x1 = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1, y2 = theirs(x1), ours(x2)
    torch.testing.assert_close(y2, y1, atol=1e-12, rtol=0)
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    torch.testing.assert_close(x2.grad, x1.grad, atol=1e-12, rtol=0)
    for i, lora in loras.items():
        layer = theirs.base_model.model[i]
        torch.testing.assert_close(lora.A.grad, layer.lora_A["default"].weight.grad, atol=1e-12, rtol=0)
        torch.testing.assert_close(lora.B.grad, layer.lora_B["default"].weight.grad, atol=1e-12, rtol=0)
        assert ours[i].parametrizations.weight.original.grad is None  # W frozen in both
        assert layer.base_layer.weight.grad is None


def test_lora_on_a_gpt_adapts_every_attention_and_mlp_projection_and_merges_exactly():
    torch.manual_seed(0)
    gpt = GPTConfig(vocab_size=11, block_size=8, d_model=16, num_heads=2, num_layers=2)
    model = FineTunedGPT(GPTFineTuneConfig(gpt=gpt, lora_rank=2, lora_alpha=4.0, base_checkpoint="b",
                                           base_sha256="s")).double()
    trainable = model.trainable_names()
    assert len(trainable) == 2 * 2 * 6  # A and B of w_q, w_k, w_v, w_o, w_1, w_2 in each of 2 blocks
    assert model.num_trainable() == 2 * sum(2 * (o + i) for o, i in [(16, 16)] * 4 + [(64, 16), (16, 64)])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".B"):
                p.normal_(std=0.1)
    ids = torch.randint(0, 11, (3, 8))
    merged = model.merged()
    assert type(merged) is GPT
    torch.testing.assert_close(merged(ids), model(ids), atol=1e-12, rtol=0)
    block = model.blocks.blocks[0].self_attn
    lora = block.parametrizations.w_q[0]
    W = block.parametrizations.w_q.original
    torch.testing.assert_close(block.w_q, W + 2.0 * lora.B @ lora.A, atol=1e-14, rtol=0)


# --------------------------------------------------------------------------- freezing


@pytest.mark.parametrize("freeze", [0, 1, 2])
def test_frozen_weights_get_no_gradient_no_optimiser_state_and_stay_bit_identical(gpt_base, tmp_path, freeze):
    base, _ = seqlab.load(gpt_base)
    result = seqlab.train("gpt-finetune", base=str(gpt_base), freeze=freeze, out=tmp_path / "ft", progress=False,
                          **TUNE)
    model, run = seqlab.load(result.run_dir)
    L = base.config.num_layers
    frozen = {"w_x", "pos.p"} | {n for n, _ in base.named_parameters()
                                 if any(n.startswith(f"blocks.blocks.{k}.") for k in range(freeze))}
    tuned = dict(model.named_parameters())
    for name, p in base.named_parameters():
        if name in frozen:
            assert torch.equal(tuned[name], p), name  # bit for bit
            assert not tuned[name].requires_grad
        elif name.startswith(f"blocks.blocks.{L - 1}.") or name.startswith("blocks.norm"):
            assert not torch.equal(tuned[name], p), name  # the last block and the final norm learned
    ckpt = load_checkpoint(latest_checkpoint(result.run_dir))
    # the checkpoint holds the trained weights only, and AdamW kept state for those only
    assert set(ckpt.state_dict) == set(model.trainable_names()) == set(tuned) - frozen
    assert len(ckpt.optimizer_state["state"]) == len(ckpt.state_dict)
    # a backward pass leaves the frozen weights without a gradient
    model.train()
    x, y = torch.randint(0, base.config.vocab_size, (2, 2, 8)).unbind(0)
    model.loss((x, y))[0].backward()
    assert all((p.grad is None) == (n in frozen) for n, p in model.named_parameters())


def test_a_finetune_stores_only_what_changed_and_loading_rebuilds_the_whole_model(gpt_base, tmp_path):
    result = seqlab.train("gpt-finetune", base=str(gpt_base), lora_rank=2, out=tmp_path / "ft", progress=False,
                          **TUNE)
    saved = load_checkpoint(result.checkpoint)
    assert saved.config["base_checkpoint"] == str((gpt_base / "checkpoints").resolve() / result.checkpoint.name) \
        or Path(saved.config["base_checkpoint"]).parent == (gpt_base / "checkpoints").resolve()
    assert all(".parametrizations." in k and k.endswith((".A", ".B")) for k in saved.state_dict)
    assert any(bool(v.abs().sum() > 0) for k, v in saved.state_dict.items() if k.endswith(".B"))  # B learned
    model, run = seqlab.load(result.run_dir)
    base, _ = seqlab.load(gpt_base)
    x = torch.randint(0, base.config.vocab_size, (2, 16))
    # the frozen W are the base's; the output differs from the base by the learned B A only
    assert not torch.allclose(model(x), base(x))
    merged = model.merged()
    torch.testing.assert_close(merged(x), model(x), atol=1e-5, rtol=1e-5)
    ckpt_bytes = (result.checkpoint / "model.safetensors").stat().st_size
    base_bytes = (load_checkpoint(Path(saved.config["base_checkpoint"])).path / "model.safetensors").stat().st_size
    assert ckpt_bytes < base_bytes / 2


def test_a_changed_or_missing_base_is_one_clear_line(gpt_base, tmp_path):
    copy = tmp_path / "base"
    shutil.copytree(gpt_base, copy)
    result = seqlab.train("gpt-finetune", base=str(copy), freeze=1, out=tmp_path / "ft", progress=False, **TUNE)
    ckpt = Path(load_checkpoint(result.checkpoint).config["base_checkpoint"])
    header = json.loads((ckpt / "config.json").read_text())
    header["manifest"]["model.safetensors"]["sha256"] = "0" * 64  # as if the base had been trained further
    (ckpt / "config.json").write_text(json.dumps(header))
    with pytest.raises(ValueError, match="the base run changed since"):
        seqlab.load(result.run_dir)
    shutil.rmtree(copy)
    with pytest.raises(ValueError, match="base run: expected the checkpoint this fine-tune adapts.*moved or deleted"):
        seqlab.load(result.run_dir)


def test_forgetting_table_and_sampling_of_a_finetune(gpt_base, tmp_path):
    result = seqlab.train("gpt-finetune", base=str(gpt_base), out=tmp_path / "ft", progress=False, **TUNE)
    table = seqlab.evaluate(result.run_dir, batches=1, batch_size=2)
    assert table.trainable == table.total  # full fine-tuning
    base, run = seqlab.load(gpt_base)
    old = seqlab.runs.get_family("gpt").data_from_run(run, {}).dataset
    assert table.old_before == pytest.approx(mean_loss(base, old, batches=1, batch_size=2), abs=1e-6)
    assert "base corpus (forgetting)" in table.table()
    text = seqlab.sample(result.run_dir, length=10, seed=0)
    assert isinstance(text, str) and len(text) > 0


def test_a_bert_classifier_with_frozen_layers_or_lora(bert_base, tmp_path):
    base, _ = seqlab.load(bert_base)
    for name, adapt in (("freeze", dict(freeze=1)), ("lora", dict(lora_rank=2, lora_alpha=4.0))):
        result = seqlab.train("bert-classifier", base=str(bert_base), out=tmp_path / name, progress=False,
                              **adapt, **TUNE)
        model, run = seqlab.load(result.run_dir)
        assert isinstance(model, BERTClassifier)
        stored = set(load_checkpoint(result.checkpoint).state_dict)
        assert stored == set(model.trainable_names()) and {"w_c", "b_c"} <= stored
        assert not any(k.startswith(("bert.w_m", "bert.b_o", "bert.w_x")) for k in stored)  # MLM head, embeddings
        tuned = dict(model.named_parameters())
        assert torch.equal(tuned["bert.w_x"], base.w_x) and torch.equal(tuned["bert.w_m"], base.w_m)
        assert 0.0 <= seqlab.evaluate(result.run_dir).accuracy <= 1.0


# --------------------------------------------------------------------------- command line


def test_seqlab_finetune_picks_the_family_from_the_run(gpt_base, bert_base, tmp_path, capsys):
    assert main(["finetune", str(gpt_base), "--freeze", "1", "--max-steps", "2", "--eval-every", "2",
                 "--eval-batches", "1", "--batch-size", "2", "--quiet", "--out", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    assert "base corpus (forgetting)" in out and "trainable parameters" in out
    assert json.loads((tmp_path / "g" / "run.json").read_text())["family"] == "gpt-finetune"
    assert main(["finetune", str(bert_base), "--lora-rank", "2", "--max-steps", "2", "--eval-every", "2",
                 "--eval-batches", "1", "--batch-size", "2", "--quiet", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "run.json").read_text())["family"] == "bert-classifier"
    with pytest.raises(SystemExit):
        main(["finetune", str(gpt_base), "--help"])
    assert "--lora-rank" in capsys.readouterr().out


def test_seqlab_finetune_takes_a_checkpoint_directory_of_the_base(gpt_base, tmp_path):
    checkpoint = latest_checkpoint(gpt_base)  # a checkpoint directory, not the run directory
    assert main(["finetune", str(checkpoint), "--freeze", "1", "--max-steps", "2", "--eval-every", "2",
                 "--eval-batches", "1", "--batch-size", "2", "--quiet", "--out", str(tmp_path / "g")]) == 0
    model, run = seqlab.load(tmp_path / "g")
    assert run.family == "gpt-finetune" and Path(model.finetune_config.base_checkpoint) == checkpoint.resolve()


@pytest.mark.parametrize("args, expected", [
    (["--freeze", "9"], "freeze: expected an integer <= 2, received 9"),
    (["--freeze", "-1"], "freeze: expected an integer >= 0, received -1"),
    (["--lora-rank", "-2"], "lora_rank: expected an integer >= 0, received -2"),
    (["--lora-rank", "2", "--freeze", "1"], "expected --freeze K or --lora-rank r, not both"),
    (["--lora-alpha", "4"], "lora_alpha: expected no value without --lora-rank"),
    (["--lora-rank", "2", "--lora-alpha", "0"], "lora_alpha: expected a number > 0.0, received 0.0"),
    (["--lora-rank", "2", "--lora-alpha", "nan"], "lora_alpha"),
    (["--text", "/no/such/file.txt"], "no/such/file.txt"),
])
def test_bad_finetune_options_are_one_line(gpt_base, tmp_path, capsys, args, expected):
    err = one_line_error(capsys, ["finetune", str(gpt_base), *args, "--max-steps", "1", "--quiet",
                                  "--out", str(tmp_path / "x")])
    assert expected in err
    assert not (tmp_path / "x" / "checkpoints").exists()


@pytest.mark.parametrize("args, expected", [
    (["--batches", "0"], "batches: expected an integer >= 1, received 0"),
    (["--batch-size", "5000"], "batch_size: expected an integer <= 4096, received 5000"),
    (["--pooling", "cls"], "--pooling"),
])
def test_bad_forgetting_options_are_one_line(gpt_base, tmp_path, capsys, args, expected):
    ft = tmp_path / "ft"
    seqlab.train("gpt-finetune", base=str(gpt_base), out=ft, progress=False, **TUNE)
    assert expected in one_line_error(capsys, ["eval", str(ft), *args])


def test_finetune_of_a_run_that_is_not_gpt_or_bert(gpt_base, tmp_path, capsys):
    ft = tmp_path / "ft"
    seqlab.train("gpt-finetune", base=str(gpt_base), out=ft, progress=False, **TUNE)
    err = one_line_error(capsys, ["finetune", str(ft), "--quiet", "--out", str(tmp_path / "x")])
    assert "RUN_DIR: expected a gpt or bert run, received a 'gpt-finetune' run" in err
    err = one_line_error(capsys, ["train", "gpt-finetune", "--base", str(ft), "--quiet", "--out", str(tmp_path / "y")])
    assert "base: expected a gpt run (seqlab train gpt), received a 'gpt-finetune' run" in err
    err = one_line_error(capsys, ["train", "gpt-finetune", "--quiet", "--out", str(tmp_path / "z")])
    assert "base: expected the run directory of a pretrained GPT" in err
