"""GPT: causality, the KV cache, weight tying, learning, runs and the command line."""

import json
import math

import pytest
import torch

from seqlab.cli import main
from seqlab.llm import runs
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
        GPTConfig(**TINY, position="rotary")
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


# -- runs and the command line -------------------------------------------------------

TRAIN = dict(max_steps=30, eval_every=15, eval_batches=2, batch_size=8, warmup_steps=5, log_every=5)


def test_short_run_beats_the_unigram_baseline(tmp_path):
    result, run_dir = runs.start_gpt(out=tmp_path / "r", progress=False, preset="cpu-tiny", block_size=32,
                                     train_options={**TRAIN, "max_steps": 150, "eval_every": 150, "lr": 3e-3})
    # the unigram entropy of the training split's characters
    model, tok, _ = runs.load_gpt(run_dir)
    from seqlab.data.text import load_text
    from seqlab.data.tokens import TokenDataset

    data = TokenDataset.from_text(load_text(None)[1], tok, 32)
    counts = torch.bincount(data.train_data, minlength=tok.vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    unigram = float(-(p * p.log()).sum())
    assert result.best_val_loss < unigram - 0.3, (result.best_val_loss, unigram)


def test_bpe_run_saves_its_tokenizer_and_samples(tmp_path):
    result, run_dir = runs.start_gpt(out=tmp_path / "r", progress=False, preset="cpu-tiny", tokenizer="bpe",
                                     vocab_size=300, train_options=TRAIN)
    model, tok, ckpt = runs.load_gpt(run_dir)
    assert type(tok).__name__ == "BPETokenizer" and tok.vocab_size == 300 == model.config.vocab_size
    text = runs.sample_gpt(run_dir, "The ", length=20, seed=0)
    ids = model.generate(tok.encode("The "), 20, seed=0, temperature=0.8)
    assert len(ids) == 20 and tok.decode(ids) == text
    assert runs.sample_gpt(run_dir, "The ", length=20, seed=0) == text  # the seed fixes the draw
    with pytest.raises(ValueError, match="vocab_size: expected an integer >= 257, received 100"):
        runs.build_tokenizer("bpe", "abc", vocab_size=100)
    with pytest.raises(ValueError, match="vocab_size: expected nothing with the char tokenizer"):
        runs.build_tokenizer("char", "abc", vocab_size=100)


def test_cli_train_sample_attention_resume(tmp_path, capsys):
    run = tmp_path / "gpt"
    assert main(["train", "gpt", "--preset", "cpu-tiny", "--max-steps", "20", "--eval-every", "10",
                 "--eval-batches", "2", "--batch-size", "4", "--quiet", "--out", str(run),
                 "--sample-length", "10"]) == 0
    out = capsys.readouterr().out
    assert f"run {run}: validation loss" in out and "sample:" in out
    assert json.loads((run / "run.json").read_text())["family"] == "gpt"

    assert main(["sample", str(run), "--prompt", "The", "--length", "30", "--top-p", "0.9", "--seed", "2"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("The")
    assert main(["sample", str(run), "--prompt", "The", "--length", "30", "--top-p", "0.9", "--seed", "2",
                 "--no-cache"]) == 0
    assert capsys.readouterr().out == first  # the cache changes nothing
    assert main(["sample", str(run), "--prompt", "The", "--length", "200", "--temperature", "0",
                 "--stop", "e"]) == 0
    assert "e" not in capsys.readouterr().out[len("The"):]  # stopped before the first "e"

    png = tmp_path / "att.png"
    assert main(["attention", str(run), "--text", "def f(x):", "--out", str(png)]) == 0
    assert png.stat().st_size > 1000 and "2 layers x 4 heads over 9 tokens" in capsys.readouterr().out
    assert main(["attention", str(run), "--text", "ab", "--json"]) == 0
    maps = json.loads(capsys.readouterr().out)
    w = torch.tensor(maps["weights"])  # (L, h, S, S)
    assert w.shape == (2, 4, 2, 2) and torch.all(w[..., 0, 1] == 0)  # causal: 0 above the diagonal
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 2))

    # resume to the same step count: nothing to do, the run is complete
    assert main(["train", "--resume", str(run), "--quiet", "--sample-length", "0"]) == 0


def test_cli_bad_inputs(tmp_path, capsys):
    run = tmp_path / "gpt"
    assert main(["train", "gpt", "--preset", "cpu-tiny", "--max-steps", "2", "--eval-every", "2",
                 "--eval-batches", "1", "--batch-size", "2", "--quiet", "--out", str(run), "--sample-length", "0"]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in (run / "checkpoints").iterdir())

    def err(argv):
        assert main(argv) == 2
        return capsys.readouterr().err

    assert "num_heads = 3" in err(["train", "gpt", "--num-heads", "3", "--out", str(tmp_path / "x")])
    assert "prompt: expected at least one character" in err(["sample", str(run), "--prompt", ""])
    assert "received unknown characters '☃'" in err(["sample", str(run), "--prompt", "☃"])
    assert "top_p: expected a number <= 1.0, received 1.5" in err(["sample", str(run), "--top-p", "1.5"])
    assert "top_p: expected a number > 0.0, received 0.0" in err(["sample", str(run), "--top-p", "0"])
    assert "temperature: expected a number >= 0.0, received -1.0" in err(["sample", str(run), "--temperature", "-1"])
    assert "text: expected a non-empty string" in err(["attention", str(run), "--text", ""])
    assert "expected at most block_size = 64 tokens, received 65" in err(["attention", str(run), "--text", "a" * 65])
    assert "--tokenizer: expected only with gpt or bert" in err(["train", "lstm", "--tokenizer", "bpe"])
    assert "model options: expected names among" in err(["train", "gpt", "--hidden-size", "8"])
    assert "--resume: expected no data options but --text (the run's are kept), received ['block_size']" in err(
        ["train", "--resume", str(run), "--block-size", "32"])
    # a checkpoint of another family
    lstm = tmp_path / "lstm"
    assert main(["train", "lstm", "--preset", "cpu-tiny", "--max-steps", "2", "--eval-every", "2", "--eval-batches",
                 "1", "--batch-size", "2", "--quiet", "--out", str(lstm), "--sample-length", "0"]) == 0
    capsys.readouterr()
    assert "expected a gpt or bert run, received a 'charlm' run" in err(["attention", str(lstm), "--text", "a"])
    with pytest.raises(ValueError, match=r"checkpoint family: expected 'gpt', received 'charlm'"):
        runs.load_gpt(lstm)
    assert "run family: expected 'gpt', received 'charlm'" in err(["train", "gpt", "--resume", str(lstm)])
    # nothing was overwritten
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
