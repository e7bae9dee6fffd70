"""Next-token sampling (greedy, temperature, top-k, top-p), the decoding loop, and sampling
text from a language model (SampleOptions, sample_text, default_prompt)."""

import math
import re
from collections import Counter

import pytest
import torch

from seqlab.llm.sampling import SampleOptions, default_prompt, generate, sample_next, sample_text
from seqlab.llm.tokenizers import BPETokenizer, CharTokenizer
from seqlab.recurrent import charlm

N_DRAWS = 4000
# The standard deviation of a frequency estimated from N draws is sqrt(p (1 - p) / N) <= 0.0079;
# 0.03 is nearly four of them (the draws are seeded, so a run is reproducible), and far smaller than the gaps between the right and the wrong answers
# the tests below tell apart (no renormalisation, wrong set, no temperature).
TOL = 0.03


def draws(logits, n=N_DRAWS, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    return Counter(sample_next(logits, generator=g, **kw) for _ in range(n))


def assert_frequencies(counts, probs: dict[int, float], n=N_DRAWS):
    """The drawn set is exactly ``probs``' keys and the frequencies match its values."""
    assert set(counts) == set(probs)
    total = sum(probs.values())
    for i, p in probs.items():
        assert counts[i] / n == pytest.approx(p / total, abs=TOL), (i, counts[i] / n, p / total)


# hand-made distribution, probabilities out of order with respect to the ids
P = torch.tensor([0.10, 0.40, 0.05, 0.25, 0.20])
LOGITS = P.log()


def test_greedy():
    assert sample_next(torch.tensor([0.0, 3.0, -1.0, 2.9]), temperature=0) == 1
    assert sample_next(torch.tensor([1.0, 5.0, 5.0]), temperature=0) == 1  # ties: the lowest id
    # greedy ignores top-k and top-p, and needs no generator
    assert sample_next(LOGITS, temperature=0, top_k=3, top_p=0.5) == 1
    assert sample_next(torch.tensor([float("-inf"), -50.0]), temperature=0) == 1


def test_plain_sampling_matches_softmax():
    assert_frequencies(draws(LOGITS), dict(enumerate(P.tolist())))


def test_temperature_flattens_and_sharpens():
    for tau in (0.5, 2.0):
        q = torch.softmax(LOGITS / tau, dim=0)
        assert_frequencies(draws(LOGITS, temperature=tau), dict(enumerate(q.tolist())))


def test_top_k_set_and_frequencies():
    # k = 2 keeps the two largest (ids 1 and 3), renormalised: 0.40/0.65, 0.25/0.65
    assert_frequencies(draws(LOGITS, top_k=2), {1: 0.40, 3: 0.25})
    assert_frequencies(draws(LOGITS, top_k=3), {1: 0.40, 3: 0.25, 4: 0.20})
    assert set(draws(LOGITS, n=200, top_k=1)) == {1}
    # k >= V keeps everything
    assert_frequencies(draws(LOGITS, top_k=5), dict(enumerate(P.tolist())))
    assert_frequencies(draws(LOGITS, top_k=50), dict(enumerate(P.tolist())))
    # ties with the k-th largest are kept
    assert set(draws(torch.tensor([1.0, 2.0, 2.0, 0.0]), n=500, top_k=1)) == {1, 2}


@pytest.mark.parametrize("top_p, kept", [
    (0.05, {1}),              # the most probable token is always kept
    (0.39, {1}),
    (0.41, {1, 3}),           # 0.40 < 0.41: one more is needed
    (0.64, {1, 3}),
    (0.66, {1, 3, 4}),        # 0.65 < 0.66
    (0.84, {1, 3, 4}),
    (0.86, {1, 3, 4, 0}),     # 0.85 < 0.86
    (0.96, {1, 3, 4, 0, 2}),
    (1.0, {1, 3, 4, 0, 2}),
])
def test_top_p_set_and_frequencies(top_p, kept):
    assert_frequencies(draws(LOGITS, top_p=top_p), {i: P[i].item() for i in kept})


def test_top_p_ties_go_to_the_lower_id():
    tied = torch.zeros(4)  # four tokens of probability 0.25
    assert set(draws(tied, n=500, top_p=0.3)) == {0, 1}
    assert set(draws(tied, n=500, top_p=0.2)) == {0}


def test_top_k_then_top_p_then_temperature():
    # top-k 3 leaves 0.40, 0.25, 0.20 (renormalised 0.47, 0.29, 0.24); top-p 0.6 keeps two of them
    assert_frequencies(draws(LOGITS, top_k=3, top_p=0.6), {1: 0.40, 3: 0.25})
    # the nucleus is taken on the tempered distribution: at tau = 0.25 the top token has 0.85
    q = torch.softmax(LOGITS / 0.25, dim=0)
    assert q[1] > 0.8
    assert set(draws(LOGITS, n=2000, temperature=0.25, top_p=0.8)) == {1}


def test_masked_tokens_never_drawn():
    logits = torch.tensor([0.0, float("-inf"), 0.0, float("-inf")])
    assert_frequencies(draws(logits, top_p=1.0), {0: 0.5, 2: 0.5})


def test_seed_reproduces_and_accepts_other_dtypes():
    a = [sample_next(LOGITS, generator=g) for g in [torch.Generator().manual_seed(3)] for _ in range(100)]
    b = [sample_next(LOGITS, generator=g) for g in [torch.Generator().manual_seed(3)] for _ in range(100)]
    c = [sample_next(LOGITS, generator=g) for g in [torch.Generator().manual_seed(4)] for _ in range(100)]
    assert a == b and a != c
    assert sample_next(LOGITS.double(), generator=torch.Generator().manual_seed(3)) == a[0]
    assert sample_next(LOGITS.to(torch.bfloat16), temperature=0) == 1


def _former_charlm_sampler(logits, *, temperature, top_k, generator):
    """The char LM's sampler before it moved here, as the reference for identical draws."""
    logits = logits.float().cpu()
    if temperature == 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.7, 3), (2.0, 1), (0.0, None), (1.3, 10)])
def test_charlm_sampler_draws_unchanged(temperature, top_k):
    logits = torch.randn(40, generator=torch.Generator().manual_seed(1)) * 2
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    new = [sample_next(logits, temperature=temperature, top_k=top_k, generator=g1) for _ in range(300)]
    old = [_former_charlm_sampler(logits, temperature=temperature, top_k=top_k, generator=g2) for _ in range(300)]
    assert new == old


def test_sample_next_errors():
    ok = torch.zeros(3)
    cases = [
        (dict(logits=ok, temperature=-0.5), r"^temperature: expected a number >= 0.0, received -0.5$"),
        (dict(logits=ok, temperature=float("nan")), r"^temperature: expected a number, received nan$"),
        (dict(logits=ok, top_k=0), r"^top_k: expected an integer >= 1, received 0$"),
        (dict(logits=ok, top_k=2.0), r"^top_k: expected an integer, received 2.0$"),
        (dict(logits=ok, top_p=0.0), r"^top_p: expected a number > 0.0, received 0.0$"),
        (dict(logits=ok, top_p=1.5), r"^top_p: expected a number <= 1.0, received 1.5$"),
        (dict(logits=ok, top_p=-0.1), r"^top_p: expected a number > 0.0, received -0.1$"),
        (dict(logits=torch.zeros(2, 3)), r"^logits: expected a 1-D tensor \(vocab,\), received shape \(2, 3\)$"),
        (dict(logits=torch.zeros(())), r"^logits: expected a 1-D tensor \(vocab,\), received shape \(\)$"),
        (dict(logits=[0.0, 1.0]), r"^logits: expected a torch.Tensor, received list$"),
        (dict(logits=torch.zeros(0)), r"^logits: expected at least one token, received an empty tensor$"),
        (dict(logits=torch.tensor([0.0, float("nan"), float("nan")])), r"^logits: expected no NaN, received 2 NaN value\(s\)$"),
        (dict(logits=torch.tensor([0.0, float("inf")])), r"^logits: expected finite values or -inf, received 1 value\(s\) \+inf$"),
        (dict(logits=torch.full((3,), float("-inf"))), r"^logits: expected at least one token that is not -inf, received all -inf$"),
        (dict(logits=ok, generator=0), r"^generator: expected a torch.Generator or None, received int$"),
    ]
    for kw, pattern in cases:
        logits = kw.pop("logits")
        with pytest.raises(ValueError, match=pattern):
            sample_next(logits, **kw)
    # NaN is an error even for greedy decoding
    with pytest.raises(ValueError, match=r"^logits: expected no NaN"):
        sample_next(torch.tensor([float("nan"), 0.0]), temperature=0)


# --------------------------------------------------------------------------- generate


class CountingModel:
    """A stand-in language model over V tokens: the next token is (last + 1) mod V with
    logit ``sharp`` above the others. Records what it is fed."""

    def __init__(self, V=10, sharp=50.0):
        self.V, self.sharp, self.calls = V, sharp, []

    def __call__(self, new_ids):
        self.calls.append(list(new_ids))
        z = torch.zeros(self.V)
        z[(new_ids[-1] + 1) % self.V] = self.sharp
        return z


def test_generate_greedy_and_what_the_model_is_fed():
    m = CountingModel()
    out = generate(m, [4, 7], 5, temperature=0)
    assert out == [8, 9, 0, 1, 2]
    # the prompt once, then each new token but the last
    assert m.calls == [[4, 7], [8], [9], [0], [1]]
    m = CountingModel()
    assert generate(m, torch.tensor([3]), 0) == [] and m.calls == []
    assert generate(CountingModel(), [3], 1, temperature=0) == [4]


def test_generate_seed_reproduces():
    m = CountingModel(V=6, sharp=0.5)  # a flat model: the draws are random
    a = generate(m, [0], 40, seed=11)
    assert a == generate(m, [0], 40, seed=11)
    assert a != generate(m, [0], 40, seed=12)
    assert a == generate(m, [0], 40, generator=torch.Generator().manual_seed(11))
    assert len(a) == 40 and set(a) <= set(range(6)) and len(set(a)) > 1
    # top-k 1 is greedy whatever the seed
    assert generate(m, [0], 8, top_k=1, seed=5) == [1, 2, 3, 4, 5, 0, 1, 2]
    assert generate(m, [0], 8, top_p=0.01, seed=5) == [1, 2, 3, 4, 5, 0, 1, 2]


def test_generate_stop_ids():
    m = CountingModel()
    out = generate(m, [2], 20, temperature=0, stop_ids=[6, 9])
    assert out == [3, 4, 5]  # 6 stops the loop and is not returned
    assert m.calls == [[2], [3], [4], [5]]
    assert generate(CountingModel(), [5], 20, temperature=0, stop_ids=torch.tensor([6])) == []
    assert generate(CountingModel(), [2], 3, temperature=0, stop_ids=[9]) == [3, 4, 5]


def test_generate_stop_strings_cut_before_the_stop_string():
    tok = CharTokenizer("abcdefghij")  # the counting model writes a, b, c, ... cyclically
    m = CountingModel()
    out = generate(m, [0], 50, temperature=0, stop_strings=["def"], decode=tok.decode)
    assert tok.decode(out) == "bc"  # generated "bcdef": cut right before "def"
    assert m.calls == [[0], [1], [2], [3], [4]]  # and stopped as soon as "def" was complete
    # the earliest of several stop strings; a single string is accepted too
    out = generate(CountingModel(), [0], 50, temperature=0, stop_strings=["gh", "de"], decode=tok.decode)
    assert tok.decode(out) == "bc"
    assert tok.decode(generate(CountingModel(), [0], 50, temperature=0, stop_strings="j", decode=tok.decode)) == "bcdefghi"
    # a stop string at the very start gives nothing
    assert generate(CountingModel(), [0], 50, temperature=0, stop_strings="bc", decode=tok.decode) == []
    # the prompt's text does not count: "a" is in the prompt, the next "a" comes after "bcdefghij"
    assert tok.decode(generate(CountingModel(), [0], 50, temperature=0, stop_strings="a", decode=tok.decode)) == "bcdefghij"
    # not found: max_new_tokens
    assert len(generate(CountingModel(), [0], 7, temperature=0, stop_strings="zz", decode=tok.decode)) == 7


def test_generate_stop_string_inside_a_multi_character_token():
    # tokens of two characters: id i writes PIECES[i]
    pieces = ["ab", "c\n", "\nd", "ef", "gh"]

    def decode(ids):
        return "".join(pieces[i] for i in ids)

    def next_logits(new_ids):
        z = torch.zeros(len(pieces))
        z[(new_ids[-1] + 1) % len(pieces)] = 50.0
        return z

    # "ab" + "c\n" + "\nd": the stop string "\n\n" starts inside token 1, which is dropped
    assert generate(next_logits, [0], 10, temperature=0, stop_strings="\n\n", decode=decode) == []
    out = generate(next_logits, [4], 10, temperature=0, stop_strings="\n\n", decode=decode)
    assert out == [0] and decode(out) == "ab"
    # a stop string that starts on a token boundary keeps everything before it
    assert decode(generate(next_logits, [4], 10, temperature=0, stop_strings="c\n\nd", decode=decode)) == "ab"
    assert decode(generate(next_logits, [4], 10, temperature=0, stop_strings="efg", decode=decode)) == "abc\n\nd"


def test_generate_errors():
    m = CountingModel()
    cases = [
        (dict(prompt_ids=[]), r"^prompt_ids: expected at least one token, received an empty prompt$"),
        (dict(prompt_ids=torch.tensor([], dtype=torch.long)), r"^prompt_ids: expected at least one token"),
        (dict(prompt_ids=[1, -2]), r"^prompt_ids: expected integer token ids >= 0, received -2$"),
        (dict(prompt_ids="ab"), r"^prompt_ids: expected a list of integer token ids, received str$"),
        (dict(prompt_ids=torch.tensor([[1]])), r"^prompt_ids: expected a 1-D integer tensor or a list of ints"),
        (dict(max_new_tokens=-1), r"^max_new_tokens: expected an integer >= 0, received -1$"),
        (dict(temperature=-1.0), r"^temperature: expected a number >= 0.0, received -1.0$"),
        (dict(top_k=0), r"^top_k: expected an integer >= 1, received 0$"),
        (dict(top_p=2.0), r"^top_p: expected a number <= 1.0, received 2.0$"),
        (dict(stop_strings=["\n"]), r"^decode: expected a callable ids -> text when stop_strings are given, received NoneType$"),
        (dict(stop_strings=["ok", ""], decode=str), r"^stop_strings: expected non-empty strings, received ''$"),
        (dict(stop_ids=[1.5]), r"^stop_ids: expected integer token ids >= 0, received 1.5$"),
        (dict(seed=1, generator=torch.Generator()), r"^seed: expected a seed or a generator, not both"),
        (dict(seed="1"), r"^seed: expected an integer, received '1'$"),
        (dict(next_logits=None), r"^next_logits: expected a callable new_ids -> logits \(V,\), received NoneType$"),
        (dict(next_logits=lambda ids: torch.zeros(1, 10)),
         r"^next_logits\(\.\.\.\): expected a 1-D tensor \(vocab,\), received shape \(1, 10\)$"),
        (dict(next_logits=lambda ids: torch.zeros(10 + len(ids))),
         r"^next_logits\(\.\.\.\): expected V = 12 logits, as at the first step, received 11$"),
        (dict(next_logits=lambda ids: torch.full((4,), float("nan"))), r"^logits: expected no NaN"),
    ]
    for kw, pattern in cases:
        args = dict(next_logits=m, prompt_ids=[1, 2], max_new_tokens=3)
        args.update(kw)
        with pytest.raises(ValueError, match=pattern):
            generate(args.pop("next_logits"), args.pop("prompt_ids"), args.pop("max_new_tokens"), **args)


def test_generate_with_a_char_lm():
    """The loop drives a real model through its recurrent state (the KV cache's analogue)."""
    torch.manual_seed(0)
    model = charlm.CharLM(cell="gru", vocab_size=7, hidden_size=8).eval()
    state = {"h": None}

    @torch.no_grad()
    def next_logits(new_ids):
        logits, state["h"] = model(torch.tensor([new_ids]), state=state["h"])
        return logits[0, -1]

    out = generate(next_logits, [1, 2, 3], 12, seed=4)
    ref = model.generate([1, 2, 3], 12, generator=torch.Generator().manual_seed(4))
    assert out == ref
    assert math.isfinite(sum(out))


# --------------------------------------------------------------------------- the char LM's sampler


def _former_charlm_generate(model, prompt, length, *, temperature, top_k, generator):
    """CharLM.generate before it went through ``generate``: one forward per step carrying the
    recurrent state, each token drawn by the former sampler."""
    model.eval()
    with torch.no_grad():
        logits, state = model(torch.tensor([prompt]))
        logits = logits[:, -1]  # (1, V)
        out = []
        for _ in range(length):
            nxt = _former_charlm_sampler(logits[0], temperature=temperature, top_k=top_k, generator=generator)
            out.append(nxt)
            logits, state = model(torch.tensor([[nxt]]), state=state)
            logits = logits[:, -1]
    return out


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.7, 3), (0.0, None)])
def test_charlm_generate_draws_what_the_former_loop_drew(cell, temperature, top_k):
    torch.manual_seed(0)
    model = charlm.CharLM(cell=cell, vocab_size=12, hidden_size=8)
    old = _former_charlm_generate(model, [1, 2, 3], 30, temperature=temperature, top_k=top_k,
                                  generator=torch.Generator().manual_seed(5))
    assert model.generate([1, 2, 3], 30, temperature=temperature, top_k=top_k, seed=5) == old
    assert model.generate([1, 2, 3], 30, temperature=temperature, top_k=top_k,
                          generator=torch.Generator().manual_seed(5)) == old
    if temperature > 0:
        assert model.generate([1, 2, 3], 30, temperature=temperature, top_k=top_k, seed=6) != old


def test_charlm_generate_top_p_and_stop():
    torch.manual_seed(0)
    tok = CharTokenizer.from_text("abcdefgh \n")
    model = charlm.CharLM(cell="lstm", vocab_size=tok.vocab_size, hidden_size=8)
    prompt = tok.encode("ab")
    # the nucleus of a tiny p is the most probable token alone: greedy decoding
    assert model.generate(prompt, 20, top_p=1e-9, seed=3) == model.generate(prompt, 20, temperature=0)
    # every token drawn with top_p lies in its step's nucleus (replayed through the recurrent state)
    out = model.generate(prompt, 40, temperature=1.5, top_p=0.5, seed=3)
    assert len(out) == 40
    step = model.next_logits_fn()
    logits = step(prompt)
    for token in out:
        p = torch.softmax(logits / 1.5, -1)
        p_sorted, order = torch.sort(p, descending=True, stable=True)
        nucleus = order[(torch.cumsum(p_sorted, 0) - p_sorted) < 0.5].tolist()
        assert token in nucleus and len(nucleus) < tok.vocab_size
        logits = step([token])
    # stop strings: the output is cut right before the first one
    free = model.generate(prompt, 40, temperature=1.5, seed=4)
    text = tok.decode(free)
    stop = next(ch for ch in text[3:] if ch not in text[:3])  # a character first drawn after the third
    cut = model.generate(prompt, 40, temperature=1.5, seed=4, stop_strings=[stop], decode=tok.decode)
    assert tok.decode(cut) == text[:text.index(stop)] and cut == free[:len(cut)]
    two = text[5:7]
    cut = model.generate(prompt, 40, temperature=1.5, seed=4, stop_strings=[two, "zz"], decode=tok.decode)
    assert tok.decode(cut) == text[:text.index(two)]


# --------------------------------------------------------------------------- text from a model


class RecordingModel:
    """A language model that records what ``generate`` is asked and returns fixed ids."""

    def __init__(self, ids):
        self.ids, self.calls = ids, []

    def generate(self, prompt_ids, length, **kwargs):
        self.calls.append((prompt_ids, length, kwargs))
        return list(self.ids)


def test_sample_options_defaults():
    assert SampleOptions() == SampleOptions(prompt=None, length=300, temperature=0.8, top_k=None, top_p=None,
                                            stop=(), seed=0)


def test_default_prompt():
    assert default_prompt(CharTokenizer.from_text("ab\nc")) == "\n"
    assert default_prompt(CharTokenizer.from_text("cab")) == "a"  # no newline: the first character
    assert default_prompt(BPETokenizer.train("some text " * 20, vocab_size=260)) == "\n"  # any text encodes


def test_sample_text_asks_the_model_and_decodes():
    tok = CharTokenizer.from_text("abc\n")
    model = RecordingModel(tok.encode("cab"))
    options = SampleOptions(prompt="ab", length=7, temperature=0.5, top_k=2, top_p=0.9, stop=("x", "yy"), seed=4)
    assert sample_text(model, tok, options, use_cache=False) == "cab"  # the prompt is not included
    ids, length, kwargs = model.calls[-1]
    decode = kwargs.pop("decode")
    assert ids == tok.encode("ab") and length == 7 and decode([0, 1]) == "\na"
    assert kwargs == dict(temperature=0.5, top_k=2, top_p=0.9, seed=4, stop_strings=["x", "yy"], use_cache=False)
    sample_text(model, tok, SampleOptions())  # the defaults: a newline to start, no stop strings
    ids, length, kwargs = model.calls[-1]
    assert ids == tok.encode("\n") and length == 300 and kwargs["stop_strings"] is None and "use_cache" not in kwargs


def test_sample_text_with_a_char_lm_is_generate_with_its_options():
    torch.manual_seed(0)
    tok = CharTokenizer.from_text("abcdefgh \n")
    model = charlm.CharLM(cell="gru", vocab_size=tok.vocab_size, hidden_size=8)
    text = sample_text(model, tok, SampleOptions(prompt="ab", length=25, seed=2))
    assert text == tok.decode(model.generate(tok.encode("ab"), 25, temperature=0.8, seed=2))
    stopped = sample_text(model, tok, SampleOptions(prompt="ab", length=25, seed=2, stop=(text[10:12],)))
    assert stopped == text[:text.index(text[10:12])]


def test_sample_text_errors():
    tok = CharTokenizer.from_text("abc")
    model = RecordingModel([0])
    with pytest.raises(ValueError, match=r"^prompt: expected at least one character \(or none for the default\), "
                                         r"received ''$"):
        sample_text(model, tok, SampleOptions(prompt=""))
    with pytest.raises(ValueError, match=r"^prompt: expected characters from the tokenizer's .*received unknown "
                                         r"characters 'z'$"):
        sample_text(model, tok, SampleOptions(prompt="az"))
    assert model.calls == []


# --------------------------------------------------------------------------- a tiny temperature, streaming, limits


@pytest.mark.parametrize("tau", [1e-3, 1e-39, 1e-300, 5e-324])
def test_a_tiny_temperature_is_greedy(tau):
    # z / tau overflowed to inf (and softmax to NaN) before the division moved to log space
    for logits in (LOGITS, LOGITS.double(), torch.tensor([0.0, 3.0, -1.0, 2.9]), torch.tensor([float("-inf"), -50.0])):
        g = torch.Generator().manual_seed(0)
        greedy = sample_next(logits, temperature=0)
        assert {sample_next(logits, temperature=tau, generator=g) for _ in range(50)} == {greedy}
    # top-k and top-p stay correct: the largest logit is in every kept set
    g = torch.Generator().manual_seed(0)
    assert sample_next(LOGITS, temperature=1e-300, top_k=3, generator=g) == 1
    assert sample_next(LOGITS, temperature=1e-300, top_p=0.3, generator=g) == 1
    assert sample_next(LOGITS, temperature=1e-300, top_k=2, top_p=0.99, generator=g) == 1


def test_a_tiny_temperature_draws_evenly_among_tied_largest_logits():
    logits = torch.tensor([1.0, 5.0, 5.0, 4.999])
    assert_frequencies(draws(logits, temperature=1e-300), {1: 0.5, 2: 0.5})
    assert_frequencies(draws(logits, temperature=1e-300, top_k=1), {1: 0.5, 2: 0.5})  # ties with the k-th are kept


def test_generate_with_a_tiny_temperature_is_greedy_generation():
    m = CountingModel(V=6, sharp=0.5)
    assert generate(m, [0], 12, temperature=1e-300, seed=3) == generate(m, [0], 12, temperature=0)


def test_an_infinite_temperature_or_an_unusable_seed_is_refused():
    with pytest.raises(ValueError, match=r"^temperature: expected a finite number >= 0.0, received inf$"):
        sample_next(LOGITS, temperature=float("inf"))
    for seed in (2**64, -(2**63) - 1):
        with pytest.raises(ValueError, match=rf"^seed: expected an integer (<=|>=) .*received {seed}$"):
            generate(CountingModel(), [0], 3, seed=seed)
    assert len(generate(CountingModel(), [0], 3, seed=2**64 - 1)) == 3  # the whole range torch takes


def test_generate_hands_each_token_to_on_token():
    seen = []
    out = generate(CountingModel(), [2], 20, temperature=0, stop_ids=[7], on_token=seen.append)
    assert out == [3, 4, 5, 6] and seen == out  # the stop id is not output, so not handed out
    tok = CharTokenizer("abcdefghij")
    seen = []
    out = generate(CountingModel(), [0], 50, temperature=0, stop_strings="def", decode=tok.decode, on_token=seen.append)
    assert tok.decode(out) == "bc" and seen == [1, 2, 3, 4, 5]  # before the cut: TextStream holds them back
    with pytest.raises(ValueError, match=r"^on_token: expected a callable token -> None, received int$"):
        generate(CountingModel(), [0], 3, on_token=3)


def _streamed(tokens, decode, stops=()):
    """(pieces handed out while the tokens came, the rest at the end) for the output ``tokens``
    of a generation that stopped before ``stops``."""
    from seqlab.llm.sampling import TextStream

    stream = TextStream(decode, stops)
    pieces = [p for p in (stream.add(t) for t in tokens) if p]
    return pieces, stream


def test_text_stream_hands_out_text_as_it_comes_and_never_takes_it_back():
    tok = CharTokenizer("abcdefghij")
    # no stop strings: every character at once
    pieces, stream = _streamed([1, 2, 3], tok.decode)
    assert pieces == ["b", "c", "d"] and stream.finish([1, 2, 3]) == ""
    # with the stop string "def" the generation outputs "bc" after seeing "bcdef"; what might be the
    # start of "def" is held back, and a token is handed out only once a later one has come
    tokens = [1, 2, 3, 4, 5]  # b c d e f
    out = generate(CountingModel(), [0], 50, temperature=0, stop_strings="def", decode=tok.decode)
    pieces, stream = _streamed(tokens, tok.decode, ["def"])
    assert "".join(pieces) == "bc"[:len("".join(pieces))]
    assert "".join(pieces) + stream.finish(out) == "bc"
    # a stop string that starts inside a multi-character token: the token is dropped with its text
    texts = ["ab", "c\n", "\nd", "ef", "gh"]

    def decode(ids):
        return "".join(texts[i] for i in ids)

    tokens = [0, 1, 2]  # "ab" "c\n" "\nd": "\n\n" starts inside token 1, which generate drops
    out = generate(lambda ids: torch.eye(5)[(ids[-1] + 1) % 5] * 50, [4], 10, temperature=0, stop_strings="\n\n",
                   decode=decode)
    assert out == [0]
    pieces, stream = _streamed(tokens, decode, ["\n\n"])
    assert pieces == ["ab"] and stream.finish(out) == ""  # "c\n" was held back: it might be cut, and it was
    pieces, stream = _streamed([0, 1, 2, 3], decode, ["gh"])
    assert pieces == ["ab", "c\n", "\nd"]  # each token once the next one has come ("ef" may yet be dropped)
    assert stream.add(4) == "ef" and stream.finish([0, 1, 2, 3]) == ""  # "gh" is the stop string: cut


def test_text_stream_waits_for_the_rest_of_a_character_split_across_bpe_tokens():
    tok = BPETokenizer.train("caf\u00e9 na\u00efve " * 20 + "\u2603 snow " * 20, vocab_size=257)  # bytes only, almost
    ids = tok.encode("\u2603 caf\u00e9")
    assert len(ids) > len("\u2603 caf\u00e9")  # the snowman and the e-acute are several tokens each
    pieces, stream = _streamed(ids, tok.decode)
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) + stream.finish(ids) == "\u2603 caf\u00e9"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("stop", [(), ("e",), ("ab", "h ")])
def test_sample_text_streams_the_text_it_returns(cell, stop):
    torch.manual_seed(0)
    tok = CharTokenizer.from_text("abcdefgh \n")
    model = charlm.CharLM(cell=cell, vocab_size=tok.vocab_size, hidden_size=8)
    options = SampleOptions(prompt="ab", length=60, seed=1, stop=stop)
    pieces = []
    text = sample_text(model, tok, options, on_text=pieces.append)
    assert text == sample_text(model, tok, options)  # the same draws as without streaming
    assert "".join(pieces) == text
    if not stop:
        assert len(pieces) == len(text)  # one piece per character, as they were drawn
    assert model.training  # the mode it was in


def test_sample_text_length_is_limited_and_documented():
    from seqlab.llm.sampling import MAX_SAMPLE_LENGTH
    from seqlab.cli.options import field_docs

    assert MAX_SAMPLE_LENGTH == 100_000 and "100000" in field_docs(SampleOptions)["length"]
    tok = CharTokenizer.from_text("abc")
    model = RecordingModel([0])
    for length in (MAX_SAMPLE_LENGTH + 1, 10**9, -1, True, 2.5):
        with pytest.raises(ValueError, match=rf"^length: expected an integer from 0 to 100000 \(tokens to generate\), "
                                             rf"received {re.escape(repr(length))}$"):
            sample_text(model, tok, SampleOptions(prompt="a", length=length))
    assert model.calls == []
    sample_text(model, tok, SampleOptions(prompt="a", length=MAX_SAMPLE_LENGTH))
    assert model.calls[-1][1] == MAX_SAMPLE_LENGTH
