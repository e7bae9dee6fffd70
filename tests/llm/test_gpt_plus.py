"""The GPT options of issue 17 (rotary, QK-norm, MLP variants, zero-out init) and the
cpu-small-plus preset."""

from __future__ import annotations

import pytest
import torch

from seqlab.llm.gpt import GPT, PRESETS, GPTConfig

TINY = dict(vocab_size=11, block_size=16, d_model=16, num_heads=4, num_layers=2)
PLUS = dict(position="rotary", qk_norm=True, mlp="relu2", tie_weights=False, init="zero-out")


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**TINY, **kw}))


def test_plus_preset_keeps_the_parameter_count_of_nanogpts_recipe():
    base = GPT(GPTConfig.preset("cpu-small")).num_parameters()
    plus = GPT(GPTConfig.preset("cpu-small-plus")).num_parameters()
    assert base == 804_096
    assert abs(plus - base) <= 0.05 * base
    assert {k: PRESETS["cpu-small-plus"][k] for k in ("num_layers", "num_heads", "d_model", "block_size")} == \
        {k: PRESETS["cpu-small"][k] for k in ("num_layers", "num_heads", "d_model", "block_size")}
    swiglu = GPT(GPTConfig.preset("cpu-small", mlp="swiglu"))
    assert swiglu.config.mlp_width == 341 and abs(swiglu.num_parameters() - base) <= 0.05 * base


@pytest.mark.parametrize("options", [PLUS, dict(mlp="swiglu"), dict(position="rotary", fused=False)],
                         ids=["plus", "swiglu", "rotary-explicit"])
def test_cached_forward_equals_full_forward(options):
    model = tiny(**options).double().eval()
    with torch.no_grad():
        for p in model.parameters():  # zero-out leaves some weights 0: give every weight a value
            p.add_(0.05 * torch.randn_like(p))
    ids = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(1))
    full = model(ids)
    cache = model.new_cache()
    parts = [model(ids[:, :5], cache=cache)] + [model(ids[:, t:t + 1], cache=cache) for t in range(5, 12)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-10, rtol=0)
    # the cached and uncached generations give the same tokens (the window slides past block_size)
    assert model.generate([1, 2, 3], 30, seed=4) == model.generate([1, 2, 3], 30, seed=4, use_cache=False)


def test_rotary_model_has_no_position_table_and_sees_order():
    model = tiny(position="rotary")
    assert not any("pos" in name for name, _ in model.named_parameters())
    with torch.no_grad():
        a = model(torch.tensor([[1, 2, 3, 4]]))[0, -1]
        b = model(torch.tensor([[2, 1, 3, 4]]))[0, -1]
    assert not torch.allclose(a, b)  # attention alone would be blind to the order of 1 and 2


def test_zero_out_init_starts_every_block_as_the_identity():
    model = tiny(**PLUS)
    for block in model.blocks.blocks:
        assert block.self_attn.w_o.abs().sum() == 0 and block.w_2.abs().sum() == 0
    ids = torch.randint(0, 11, (2, 8))
    logits = model(ids)
    assert torch.equal(logits, torch.zeros_like(logits))  # untied w^(o) = 0: uniform predictions
    loss, _ = model.loss((ids, ids))
    loss.backward()
    assert model.w_o.grad.abs().sum() > 0  # and learning starts
    tied = tiny(init="zero-out")  # tied: w^(o) = w^(x) keeps its N(0, 0.02^2) start
    assert tied.w_x.std() > 0.01


def test_config_round_trip_and_bad_options():
    c = GPTConfig(**TINY, **PLUS)
    assert GPTConfig.from_dict(c.to_dict()) == c
    old = {k: v for k, v in c.to_dict().items() if k not in ("qk_norm", "mlp", "init", "rope_base")}
    assert GPTConfig.from_dict(old).mlp == "gelu"  # a run saved before these options loads as before
    with pytest.raises(ValueError, match=r"mlp: expected one of 'gelu', 'relu2', 'swiglu', received 'tanh'"):
        GPTConfig(**TINY, mlp="tanh")
    with pytest.raises(ValueError, match=r"init: expected one of 'gpt2', 'zero-out', received 'xavier'"):
        GPTConfig(**TINY, init="xavier")
    with pytest.raises(ValueError, match=r"qk_norm: expected True or False, received 1"):
        GPTConfig(**TINY, qk_norm=1)
    with pytest.raises(ValueError, match=r"rotary: expected an even head width"):
        GPTConfig(**{**TINY, "d_model": 12, "num_heads": 4}, position="rotary")
