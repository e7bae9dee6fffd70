"""Batched generation (seqlab.llm.sampling.generate_batch, GPT.generate_batch, --prompts) and
the decoder behind every GPT generation (seqlab/llm/gpt_decoding.py, the preallocated
KVBuffer): several prompts at once give what each gives alone with its own seed."""

import contextlib
import io

import pytest
import torch

import seqlab
from seqlab.cli import main
from seqlab.llm.gpt import GPT, GPTConfig
from seqlab.llm.gpt_decoding import GPTDecoder
from seqlab.llm.sampling import generate_batch
from seqlab.transformer.kv_buffer import KVBuffer
from seqlab.transformer.multihead import KVCache

V = 13


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("cpu-tiny", vocab_size=V, block_size=24))
    # larger weights than the initialisation, so that the distributions are far from uniform
    with torch.no_grad():
        model.w_x.mul_(20)
    return model.eval()


def _prompts(lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, V, (n,), generator=g).tolist() for n in lengths]


def _one_by_one(model, prompts, n, seeds, **kw):
    return [model.generate(p, n, seed=s, **kw) for p, s in zip(prompts, seeds)]


@pytest.mark.parametrize("sampling", [dict(temperature=1.0), dict(temperature=0.7, top_k=5),
                                      dict(temperature=1.3, top_p=0.8), dict(temperature=0.0)])
@pytest.mark.parametrize("use_cache", [True, False])
def test_batch_equals_one_by_one(gpt, sampling, use_cache):
    prompts = _prompts([3, 7, 1, 7])
    seeds = [5, 6, 7, 5]
    got = gpt.generate_batch(prompts, 12, seeds=seeds, use_cache=use_cache, **sampling)
    assert got == _one_by_one(gpt, prompts, 12, seeds, use_cache=use_cache, **sampling)
    assert all(len(out) == 12 for out in got)


def test_batch_equals_one_by_one_when_the_window_slides(gpt):
    # block_size 24: prompts of 5, 20 and 30 tokens (cropped alone), 25 new tokens
    prompts = _prompts([5, 20, 30], seed=2)
    seeds = [0, 1, 2]
    for use_cache in (True, False):
        got = gpt.generate_batch(prompts, 25, seeds=seeds, use_cache=use_cache)
        assert got == _one_by_one(gpt, prompts, 25, seeds, use_cache=use_cache)
    assert gpt.generate_batch(prompts, 25, seeds=seeds) == gpt.generate_batch(prompts, 25, seeds=seeds,
                                                                             use_cache=False)


def test_each_prompt_stops_on_its_own(gpt):
    prompts = _prompts([4, 2, 6, 3], seed=3)
    seeds = [10, 11, 12, 13]
    alone = _one_by_one(gpt, prompts, 30, seeds)
    stop_id = alone[1][3]  # the fourth token of the second text: that one stops early
    got = gpt.generate_batch(prompts, 30, seeds=seeds, stop_ids=[stop_id])
    want = _one_by_one(gpt, prompts, 30, seeds, stop_ids=[stop_id])
    assert got == want and len(got[1]) <= 3 and stop_id not in sum(got, [])

    def decode(ids):
        return "".join(chr(97 + i) for i in ids)

    stop = decode(alone[2][5:7])
    got = gpt.generate_batch(prompts, 30, seeds=seeds, stop_strings=[stop], decode=decode)
    want = _one_by_one(gpt, prompts, 30, seeds, stop_strings=[stop], decode=decode)
    assert got == want and len(got[2]) <= 5
    assert gpt.generate_batch(prompts, 0, seeds=seeds) == [[], [], [], []]


def test_one_prompt_batch_is_generate(gpt):
    p = _prompts([9])[0]
    assert gpt.generate_batch([p], 20, seeds=[4]) == [gpt.generate(p, 20, seed=4)]


def test_bad_batches_are_refused_in_one_line(gpt):
    decoder = gpt.next_logits_fn()
    with pytest.raises(ValueError, match="prompts: expected a non-empty list"):
        generate_batch(decoder, [], 3)
    with pytest.raises(ValueError, match=r"prompts\[1\]: expected at least one token"):
        generate_batch(decoder, [[1], []], 3)
    with pytest.raises(ValueError, match="seeds: expected one seed per prompt"):
        gpt.generate_batch([[1], [2]], 3, seeds=[1])
    with pytest.raises(ValueError, match=r"prompts\[0\]: expected token ids in \[0, 12\]"):
        gpt.generate_batch([[1, 99]], 3)
    with pytest.raises(ValueError, match="decoder: expected an object with feed"):
        generate_batch(lambda ids: torch.zeros(V), [[1]], 3)
    with pytest.raises(ValueError, match="rows: expected the same number"):
        GPTDecoder(gpt).feed([[1, 2], [3]])


def test_decoder_restores_the_thread_count(gpt):
    before = torch.get_num_threads()
    gpt.generate(_prompts([5])[0], 10, seed=0)
    assert torch.get_num_threads() == before


def test_kv_buffer_holds_what_the_concatenating_cache_holds():
    g = torch.Generator().manual_seed(0)
    buf, cat = KVBuffer(10), KVCache()
    for S in (4, 1, 1, 3):
        k, v = torch.randn(2, 3, S, 5, generator=g), torch.randn(2, 3, S, 7, generator=g)
        kb, vb = buf.append(k, v)
        kc, vc = cat.append(k, v)
        assert torch.equal(kb, kc) and torch.equal(vb, vc) and buf.length == cat.length
    buf.select([1])
    assert torch.equal(buf.k, cat.k[1:]) and torch.equal(buf.v, cat.v[1:]) and buf.length == 9
    with pytest.raises(ValueError, match="cache: expected at most capacity = 10 positions"):
        buf.append(torch.zeros(1, 3, 2, 5), torch.zeros(1, 3, 2, 7))
    with pytest.raises(ValueError, match="k, v: expected shapes"):
        buf.append(torch.zeros(1, 3, 1, 4), torch.zeros(1, 3, 1, 7))
    buf.reset()
    assert buf.length == 0 and buf.k is None


# -- the registry and the command line ---------------------------------------------------


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpt") / "run"
    return seqlab.train("gpt", out=out, progress=False, preset="cpu-tiny", block_size=32, max_steps=3,
                        eval_every=3, eval_batches=1, batch_size=4, warmup_steps=1).run_dir


def test_sample_with_prompts_equals_each_prompt_alone(gpt_run):
    prompts = ["The ", "def f(x):", "a"]
    texts = seqlab.sample(gpt_run, prompts=prompts, length=20, seed=7, temperature=1.0)
    assert texts == [seqlab.sample(gpt_run, prompt=p, length=20, seed=7 + i, temperature=1.0)
                     for i, p in enumerate(prompts)]
    assert texts == seqlab.sample(gpt_run, prompts=prompts, length=20, seed=7, temperature=1.0, cache=False)
    with pytest.raises(ValueError, match="prompt, prompts: expected one or the other"):
        seqlab.sample(gpt_run, prompt="x", prompts=["y"])
    with pytest.raises(ValueError, match="prompts: expected texts of at least one character"):
        seqlab.sample(gpt_run, prompts=["y", ""])


def test_cli_prompts(gpt_run):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["sample", str(gpt_run), "--prompts", "The ", "--prompts", "a", "--length", "15",
                     "--seed", "3"]) == 0
    out = printed.getvalue()
    first = seqlab.sample(gpt_run, prompt="The ", length=15, seed=3)
    second = seqlab.sample(gpt_run, prompt="a", length=15, seed=4)
    assert out == (f"--- prompt 1 of 2 (seed 3)\nThe {first}\n--- prompt 2 of 2 (seed 4)\na{second}\n")


def test_a_model_without_generate_batch_samples_the_prompts_one_after_the_other(tmp_path):
    run = seqlab.train("lstm", out=tmp_path / "r", progress=False, hidden_size=16, num_layers=1, block_size=16,
                       max_steps=2, eval_every=2, eval_batches=1, batch_size=4).run_dir
    texts = seqlab.sample(run, prompts=["ab", "c"], length=8, seed=5)
    assert texts == [seqlab.sample(run, prompt=p, length=8, seed=5 + i) for i, p in enumerate(["ab", "c"])]


def test_cached_steps_narrow_the_threads_only_from_the_main_thread(gpt, monkeypatch):
    """The thread count is process-wide: the cached steps set it to one only in the main
    thread; a generation in another thread (the explorer serves several) leaves it alone."""
    import threading

    calls = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n)))
    gpt.generate([1, 2, 3], 5, seed=0)
    assert 1 in calls  # main thread: narrowed (and restored)
    calls.clear()
    worker = threading.Thread(target=lambda: gpt.generate([1, 2, 3], 5, seed=0))
    worker.start()
    worker.join()
    assert calls == []
