"""GPT: causality, the KV cache, weight tying, learning. (Its runs and the command line:
tests/llm/test_gpt_family.py.)"""

import json
import math

import pytest
import torch

from seqlab.llm.gpt import GPT, PRESETS, GPTConfig

TINY = dict(vocab_size=11, block_size=16, d_model=16, num_heads=4, num_layers=2)


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**TINY, **kw}))


@pytest.mark.parametrize("fused", [False, True])
def test_causal_a_later_token_never_changes_earlier_logits(fused):
    model = tiny(fused=fused).double()
    x = torch.randint(0, 11, (2, 12))
    y = x.clone()
    y[:, 7] = (y[:, 7] + 1) % 11
    a, b = model(x), model(y)
    assert torch.equal(a[:, :7], b[:, :7])
    assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-6  # it does change the later ones


def test_explicit_and_fused_paths_agree():
    model = tiny(fused=False).double()
    fused = tiny(fused=True).double()
    fused.load_state_dict(model.state_dict())
    x = torch.randint(0, 11, (3, 16))
    torch.testing.assert_close(model(x), fused(x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("position", ["learned", "sinusoidal"])
def test_cached_forward_equals_full_forward(position):
    model = tiny(position=position).double()
    x = torch.randint(0, 11, (2, 16))
    full = model(x)
    cache = model.new_cache()
    parts = [model(x[:, :5], cache=cache), model(x[:, 5:6], cache=cache), model(x[:, 6:], cache=cache)]
    assert cache[0].length == 16
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-12, rtol=0)


@pytest.mark.parametrize("sampling", [dict(temperature=0.0), dict(temperature=1.0, top_k=5),
                                      dict(temperature=0.9, top_p=0.8)])
def test_kv_cache_gives_exactly_the_tokens_of_uncached_generation(sampling):
    model = tiny()
    # 40 new tokens after a 6-token prompt: the 16-position window fills and then slides
    cached = model.generate([1, 2, 3, 4, 5, 6], 40, seed=3, use_cache=True, **sampling)
    plain = model.generate([1, 2, 3, 4, 5, 6], 40, seed=3, use_cache=False, **sampling)
    assert len(cached) == 40
    assert cached == plain


def test_cache_does_less_work_than_recomputing():
    model = tiny()
    seen = []  # positions per forward call
    orig = model.forward

    def spy(ids, **kw):
        seen.append(ids.shape[1])
        return orig(ids, **kw)

    model.forward = spy
    model.generate([1, 2, 3], 5, seed=0, use_cache=True)
    assert seen == [3, 1, 1, 1, 1]  # the prompt once, then one position per new token
    seen.clear()
    model.generate([1, 2, 3], 5, seed=0, use_cache=False)
    assert seen == [3, 4, 5, 6, 7]


def test_prompt_longer_than_the_context_is_cropped_from_the_left():
    model = tiny()
    prompt = [i % 11 for i in range(40)]
    long = model.generate(prompt, 10, seed=1)
    cropped = model.generate(prompt[-16:], 10, seed=1)
    assert long == cropped


def test_weight_tying_shares_the_embedding():
    model = tiny()
    assert model.w_o is None
    names = [n for n, _ in model.named_parameters()]
    assert "w_x" in names and "w_o" not in names and not any("out" in n for n in names)
    x = torch.randint(0, 11, (2, 8))
    torch.testing.assert_close(model(x)[0, 0], model.blocks(model.pos(torch.nn.functional.embedding(x, model.w_x)))[0, 0]
                               @ model.w_x.T)
    untied = tiny(tie_weights=False)
    assert untied.w_o is not None and "w_o" in dict(untied.named_parameters())
    assert untied.num_parameters() == model.num_parameters() + 11 * 16


def test_loss_is_next_token_cross_entropy():
    model = tiny().double()
    x = torch.randint(0, 11, (2, 9))
    loss, metrics = model.loss((x[:, :-1], x[:, 1:]))
    logp = torch.log_softmax(model(x[:, :-1]), -1)
    expected = -logp.gather(-1, x[:, 1:, None]).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    assert metrics["bits"] == pytest.approx(loss.item() / math.log(2))
    assert metrics["tokens"] == 16
    # untrained: near log V
    assert abs(tiny().loss((x[:, :-1], x[:, 1:]))[0].item() - math.log(11)) < 0.3


def test_overfits_one_batch():
    model = tiny(d_model=32)
    x = torch.randint(0, 11, (4, 17), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss, _ = model.loss((x[:, :-1], x[:, 1:]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1  # from log 11 = 2.4


def test_config_round_trip_and_presets():
    c = GPTConfig(**TINY, dropout=0.1, position="sinusoidal")
    assert GPTConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    for name in PRESETS:
        GPTConfig.preset(name, vocab_size=65)
    assert GPTConfig.preset("cpu-small").d_model == 128
    with pytest.raises(ValueError, match=r"GPT config: expected fields among .*received unknown fields \['width'\]"):
        GPTConfig.from_dict({**TINY, "width": 3})
    with pytest.raises(ValueError, match=r"GPT config: expected a dict, received list"):
        GPTConfig.from_dict([1, 2])


def test_bad_inputs_name_expected_and_received():
    with pytest.raises(ValueError, match=r"d_model: expected a multiple of num_heads = 3, received d_model = 16"):
        GPTConfig(**{**TINY, "num_heads": 3})
    with pytest.raises(ValueError, match=r"position: expected one of"):
        GPTConfig(**TINY, position="alibi")
    model = tiny()
    with pytest.raises(ValueError, match=r"ids: expected token ids in \[0, 10\], received values in \[0, 11\]"):
        model(torch.tensor([[0, 11]]))
    with pytest.raises(ValueError, match=r"ids: expected at most block_size = 16 positions, received 17 positions"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"ids: expected integer token ids, received dtype torch.float32"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"prompt_ids: expected at least one token, received an empty prompt"):
        model.generate([], 5)
    with pytest.raises(ValueError, match=r"prompt_ids: expected token ids in \[0, 10\], received 12"):
        model.generate([1, 12], 5)
    with pytest.raises(ValueError, match=r"top_p: expected a number > 0.0, received 0.0"):
        model.generate([1], 5, top_p=0.0)
    with pytest.raises(ValueError, match=r"top_p: expected a number <= 1.0, received 1.5"):
        model.generate([1], 5, top_p=1.5)
    with pytest.raises(ValueError, match=r"temperature: expected a number >= 0.0, received -0.5"):
        model.generate([1], 5, temperature=-0.5)
    cache = model.new_cache()
    model(torch.zeros(1, 10, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match=r"expected at most block_size = 16 positions, received 10 cached \+ 7 new"):
        model(torch.zeros(1, 7, dtype=torch.long), cache=cache)
