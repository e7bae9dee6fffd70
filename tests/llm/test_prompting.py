"""Prompting (seqlab/llm/prompting.py, seqlab/llm/icl_family.py, seqlab prompt): the task
generator, exact-match accuracy by teacher forcing, the induction score, a short run that
learns, and the command line end to end."""

import contextlib
import dataclasses
import io
import json
import random
from pathlib import Path

import pytest
import torch
from torch import nn

import seqlab
from seqlab.cli import main
from seqlab.llm.icl_family import ICLGPT, ICLDataset, read_icl_metrics
from seqlab.llm.prompting import (ALPHABET, IGNORE, SYMBOLS, TASKS, answer, cipher_induction_score,
                                  cipher_targets, copy_sequence, encode_batch, exact_matches,
                                  few_shot_accuracy, held_out, induction_score, induction_score_from_weights,
                                  make_sequence, max_sequence_length, mixture_sequence, repeated_random_tokens)
from seqlab.llm.tokenizers import CharTokenizer
from seqlab.testing import one_line_error, snapshot

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_runs"
TOK = CharTokenizer(ALPHABET)


def _parse(text):
    """(instruction word or None, [(x, y)] of every line "x>y") of a sequence's text."""
    lines = text.rstrip("\n").split("\n")
    word = lines[0][:-1] if lines[0].endswith(":") else None
    pairs = [tuple(line.split(">")) for line in (lines[1:] if word else lines)]
    return word, pairs


# ----------------------------------------------------------------------------- the generator


@pytest.mark.parametrize("task", TASKS)
def test_sequences_are_deterministic_well_formed_and_answered_correctly(task):
    for seed in range(20):
        kw = dict(instruction=seed % 2 == 0, length=(3, 5), symbols=8)
        seq = make_sequence(task, 4, random.Random(seed), **kw)
        assert seq == make_sequence(task, 4, random.Random(seed), **kw)  # seeded
        word, pairs = _parse(seq.text)
        assert word == (task if seed % 2 == 0 else None) and len(pairs) == 5 and seq.prompt.endswith(">")
        lengths = {len(x) for x, _ in pairs}
        if task == "cipher":  # one symbol per line, the query one of the demonstrated symbols
            assert lengths == {1} and pairs[-1] in pairs[:-1]
        else:
            assert len(lengths) == 1 and 3 <= lengths.pop() <= 5  # one length L per sequence
        for x, y in pairs:
            assert len(set(x)) == len(x) and set(x) <= set(SYMBOLS[:8])  # distinct symbols among 0..7
            if task == "sort":
                assert y == "".join(sorted(x))
            elif task == "reverse":
                assert y == x[::-1]
            else:
                assert y == "".join(str(seq.cipher[int(c)]) for c in x)
        assert pairs[-1] == ("".join(map(str, seq.query)), seq.answer)
        # the loss positions are exactly the answers and their newlines
        assert [seq.text[a:b] for a, b in seq.spans] == [y + "\n" for _, y in pairs]


def test_the_cipher_is_a_bijection_drawn_fresh_for_every_sequence():
    rng = random.Random(0)
    ciphers = [make_sequence("cipher", 2, rng, symbols=8).cipher for _ in range(50)]
    assert all(sorted(pi) == list(range(8)) for pi in ciphers)
    assert len(set(ciphers)) == 50  # 8! = 40,320 of them: a repeat would be suspicious
    # the demonstrations are the only source of the mapping: the same query under two ciphers
    a = make_sequence("cipher", 8, random.Random(1), symbols=6)
    b = make_sequence("cipher", 8, random.Random(2), symbols=6)
    assert a.cipher != b.cipher and all(sorted(p) == list(range(6)) for p in (a.cipher, b.cipher))


def test_held_out_instances_are_unseen_in_training():
    rng = random.Random(0)
    for _ in range(200):
        tr = mixture_sequence(rng)
        if tr.task == "cipher":  # the instance is the cipher pi (its lines are single symbols)
            assert not held_out(tr.cipher)
        else:
            assert not any(held_out(x) for x, _ in tr.demos) and not held_out(tr.query) and tr.cipher is None
        if not tr.instruction:
            assert tr.shots >= 1  # without a name, the task must be shown
        va = make_sequence("cipher", 3, rng, split="val")
        assert held_out(va.cipher) and va.query in [x for x, _ in va.demos]
        vs = make_sequence("sort", 3, rng, split="val")
        assert held_out(vs.query) and not any(held_out(x) for x, _ in vs.demos)


def test_copy_sequences_repeat_distinct_tokens_and_train_on_the_second_half():
    rng = random.Random(0)
    for _ in range(20):
        seq = copy_sequence(rng, shortest=5, longest=9)
        m = (len(seq.text) - 1) // 2
        first = seq.text[:m]
        assert 5 <= m <= 9 and seq.text == first + first + "\n" and len(set(first)) == m and "\n" not in first
        # the loss positions: the second copy after its first token, each predictable by induction
        assert [seq.text[a:b] for a, b in seq.spans] == [first[1:]]
    data = ICLDataset(tasks="sort", max_shots=2, length=(3, 3), symbols=5, instruction=0.5, block_size=64, copy=1.0)
    assert all(s.task == "copy" for s in data.sequences("train", 10, random.Random(1)))
    with pytest.raises(ValueError, match="block_size: expected at least 44 with copy > 0"):
        ICLDataset(tasks="sort", max_shots=2, length=(3, 3), symbols=5, instruction=0.5, block_size=40, copy=0.1)
    with pytest.raises(ValueError, match="copy: expected a number <= 1"):
        ICLDataset(tasks="sort", max_shots=2, length=(3, 3), symbols=5, instruction=0.5, block_size=64, copy=1.5)


def test_encode_batch_pads_and_keeps_only_the_answers():
    seqs = [make_sequence(t, k, random.Random(k)) for t, k in (("sort", 0), ("reverse", 3), ("cipher", 8))]
    x, y = encode_batch(seqs, TOK)
    T = max(len(s.text) for s in seqs) - 1
    assert x.shape == y.shape == (3, T) and x.dtype == y.dtype == torch.int64
    for i, s in enumerate(seqs):
        ids = TOK.encode(s.text)
        assert x[i, :len(ids) - 1].tolist() == ids[:-1]
        kept = "".join(TOK.decode([int(t)]) for t in y[i] if t != IGNORE)
        assert kept == "".join(s.text[a:b] for a, b in s.spans)
        assert torch.all(y[i, len(ids) - 1:] == IGNORE)


def test_generator_bad_inputs():
    rng = random.Random(0)
    with pytest.raises(ValueError, match="task: expected one of 'sort', 'reverse', 'cipher', received 'add'"):
        make_sequence("add", 2, rng)
    with pytest.raises(ValueError, match="shots: expected an integer >= 0, received -1"):
        make_sequence("sort", -1, rng)
    with pytest.raises(ValueError, match="symbols: expected an integer <= 10, received 11"):
        make_sequence("sort", 1, rng, symbols=11)
    with pytest.raises(ValueError, match="rng: expected a random.Random"):
        make_sequence("sort", 1, 0)
    with pytest.raises(ValueError, match="block_size: expected at least 116"):
        ICLDataset(tasks="sort", max_shots=8, length=(3, 5), symbols=8, instruction=0.5, block_size=64)
    with pytest.raises(ValueError, match="tasks: expected distinct names among sort, reverse, cipher"):
        ICLDataset(tasks="sort,add", max_shots=8, length=(3, 5), symbols=8, instruction=0.5, block_size=128)
    assert max_sequence_length(8, (3, 5)) == 117


# ----------------------------------------------------------------------------- accuracy


class Oracle(nn.Module):
    """A stand-in language model that knows some texts: at every position of a row that is a
    prefix of one of them it puts all its mass on that text's next token."""

    def __init__(self, texts):
        super().__init__()
        self.ids = [TOK.encode(t) for t in texts]
        self.config = type("C", (), {"block_size": 128, "vocab_size": TOK.vocab_size})()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        B, T = x.shape
        logits = torch.zeros(B, T, TOK.vocab_size)
        for b in range(B):
            row = x[b].tolist()
            match = next(ids for ids in self.ids if row[:len(ids) - 1] == ids[:-1])
            for t in range(len(match) - 1):
                logits[b, t, match[t + 1]] = 1.0
        return logits


def test_exact_match_on_a_hand_made_case():
    seqs = [make_sequence("sort", 2, random.Random(i), split="val") for i in range(10)]
    assert exact_matches(Oracle([s.text for s in seqs]), TOK, seqs) == [True] * 10
    # the oracle knows a wrong answer for the odd ones (one symbol off, or a missing newline)
    texts = [s.text if i % 2 == 0 else s.prompt + s.answer[:-1] + ("9" if i % 4 == 1 else s.answer[-1] + "0")
             for i, s in enumerate(seqs)]
    assert exact_matches(Oracle(texts), TOK, seqs, batch_size=3) == [i % 2 == 0 for i in range(10)]


# ----------------------------------------------------------------------------- induction heads


class Copycat(nn.Module):
    """Attention by hand: head 0 attends to the query itself, head 1 to the token after the
    previous occurrence of the query's token (to itself where there is none): an induction head."""

    def __init__(self, vocab_size=23, block_size=64):
        super().__init__()
        self.config = type("C", (), {"block_size": block_size, "vocab_size": vocab_size})()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, ids, need_weights=False):
        B, S = ids.shape
        w = torch.zeros(B, 2, S, S)
        for b in range(B):
            for s in range(S):
                w[b, 0, s, s] = 1.0
                prev = [t for t in range(s) if ids[b, t] == ids[b, s]]
                w[b, 1, s, prev[-1] + 1 if prev else s] = 1.0
        return torch.zeros(B, S, self.config.vocab_size), [w, w.flip(1)]


def test_induction_score_finds_the_hand_made_induction_head():
    ids = repeated_random_tokens(23, 10, 4, seed=3)
    assert ids.shape == (4, 20) and torch.equal(ids[:, :10], ids[:, 10:])
    assert all(len(set(row[:10].tolist())) == 10 for row in ids)
    ind = induction_score(Copycat())
    assert (ind.layer, ind.head, ind.score) == (0, 1, 1.0)
    assert ind.scores.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    # uniform causal attention: 1 / (s + 1) on the target
    n = 5
    uniform = torch.tril(torch.ones(2 * n, 2 * n)) / torch.arange(1, 2 * n + 1)[:, None]
    expected = sum(1 / (s + 1) for s in range(n, 2 * n)) / n
    got = induction_score_from_weights(uniform.expand(3, 2, 2 * n, 2 * n), n)
    assert got.shape == (3,) and got.tolist() == pytest.approx([expected] * 3)
    with pytest.raises(ValueError, match=r"weights: expected a tensor \(..., B, 10, 10\)"):
        induction_score_from_weights(uniform[:4, :4][None], n)


def test_a_fresh_gpt_has_no_induction_head():
    torch.manual_seed(0)
    model = ICLGPT(vocab_size=TOK.vocab_size, block_size=128, d_model=32, num_heads=2, num_layers=2)
    state = torch.random.get_rng_state()
    ind = induction_score(model)
    assert torch.equal(torch.random.get_rng_state(), state)  # its own random numbers
    assert ind.scores.shape == (2, 2) and ind.score < 0.15


class CipherReader(nn.Module):
    """Attention by hand on cipher prompts: head 0 attends from every position to itself, head
    1 from a query's ">" to the answers after the earlier "c>" of the same c (evenly), from
    elsewhere to itself."""

    def __init__(self):
        super().__init__()
        self.config = type("C", (), {"block_size": 128, "vocab_size": TOK.vocab_size})()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, ids, need_weights=False):
        B, S = ids.shape
        w = torch.zeros(B, 2, S, S)
        arrow = TOK.encode(">")[0]
        for b in range(B):
            row = ids[b].tolist()
            for s in range(S):
                w[b, 0, s, s] = 1.0
                hits = [t + 2 for t in range(s - 1) if row[s] == arrow and row[t] == row[s - 1]
                        and row[t + 1] == arrow and t + 2 < s]
                for t in hits or [s]:
                    w[b, 1, s, t] = 1.0 / len(hits or [s])
        return torch.zeros(B, S, TOK.vocab_size), [w]


def test_the_cipher_induction_score_reads_the_query_and_its_demonstrations():
    seq = make_sequence("cipher", 6, random.Random(3))
    q, targets = cipher_targets(seq)
    assert seq.prompt[q] == ">" and q == len(seq.prompt) - 1 and targets
    query = seq.prompt[q - 1]
    assert all(seq.text[t - 2] == query and seq.text[t - 1] == ">" for t in targets)
    assert len(targets) == sum(x == seq.query for x, _ in seq.demos)
    seqs = [make_sequence("cipher", k, random.Random(k)) for k in (1, 3, 8)]
    ind = cipher_induction_score(CipherReader(), TOK, seqs)
    assert (ind.layer, ind.head) == (0, 1) and ind.scores.shape == (1, 2)
    assert ind.scores[0].tolist() == pytest.approx([0.0, 1.0])
    with pytest.raises(ValueError, match="sequence: expected a cipher prompt without instruction"):
        cipher_targets(make_sequence("sort", 2, random.Random(0)))
    with pytest.raises(ValueError, match="sequences: expected cipher prompts with at least one demonstration"):
        cipher_induction_score(CipherReader(), TOK, [make_sequence("cipher", 0, random.Random(0))])


def test_the_shift_inputs_are_causal_and_decoding_agrees():
    torch.manual_seed(0)
    model = ICLGPT(vocab_size=TOK.vocab_size, block_size=32, d_model=16, num_heads=2, num_layers=1).eval()
    assert model.config.shifts == 2 and model.w_shift.shape == (2, TOK.vocab_size, 16)
    ids = torch.randint(0, TOK.vocab_size, (2, 12))
    with torch.no_grad():
        full = model(ids)
        assert torch.allclose(model(ids[:, :7]), full[:, :7], atol=1e-6)  # a prefix sees no later token
        changed = ids.clone()
        changed[:, 5] = (changed[:, 5] + 1) % TOK.vocab_size
        out = model(changed)
        assert torch.allclose(out[:, :5], full[:, :5], atol=1e-6) and not torch.allclose(out[:, 5:8], full[:, 5:8])
    # the previous tokens enter the input: a model without attention or MLP effect still sees x_(t-1)
    prompt = ids[0, :5].tolist()
    steps = model.generate(prompt, 6, temperature=0.0)
    again = []
    for _ in range(6):
        with torch.no_grad():
            again.append(int(model(torch.tensor([prompt + again]))[0, -1].argmax()))
    assert steps == again
    plain = ICLGPT(vocab_size=TOK.vocab_size, block_size=32, d_model=16, num_heads=2, num_layers=1, shifts=0)
    assert plain.w_shift.shape == (0, TOK.vocab_size, 16)
    with pytest.raises(ValueError, match="shifts: expected an integer >= 0, received -1"):
        ICLGPT(vocab_size=TOK.vocab_size, shifts=-1)
    with pytest.raises(ValueError, match="cache: expected None"):
        model(ids, cache=model.new_cache())


# ----------------------------------------------------------------------------- learning, CLI

TINY = ["--preset", "cpu-tiny", "--d-model", "32", "--tasks", "sort,reverse", "--max-shots", "2",
        "--min-length", "3", "--max-length", "3", "--symbols", "5", "--batch-size", "32", "--eval-prompts", "20",
        "--lr", "1e-2", "--copy", "0",
        "--warmup-steps", "20", "--eval-batches", "2", "--quiet"]


@pytest.fixture(scope="module")
def icl_run(tmp_path_factory):
    """A short run of `seqlab train icl` on a small mixture (its printed output kept)."""
    run = tmp_path_factory.mktemp("icl") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", "icl", *TINY, "--max-steps", "300", "--eval-every", "150", "--out", str(run)]) == 0
    return run, printed.getvalue()


def test_a_short_run_learns_the_tasks(icl_run):
    run, printed = icl_run
    assert "held-out exact match at 2 shots (step 300)" in printed and "induction score" in printed
    model, record = seqlab.load(run)
    assert isinstance(model, ICLGPT) and record.config.block_size == 128 and record.tokenizer == TOK
    records = read_icl_metrics(run)
    assert [r["step"] for r in records] == [150, 300]
    kw = dict(length=(3, 3), symbols=5)
    # named by its instruction word, with no example: a guess of the query's 3 symbols in some order is right
    # once in 6, of any 3 distinct symbols once in 60
    acc = {t: few_shot_accuracy(model, TOK, t, 0, 60, seed=1, instruction=True, **kw) for t in ("sort", "reverse")}
    assert min(acc.values()) >= 0.8, acc
    # teacher-forced exact match = greedy decoding's answer
    seqs = [make_sequence(t, 2, random.Random(i), split="val", **kw) for i in range(15) for t in ("sort", "reverse")]
    hits = exact_matches(model, TOK, seqs)
    assert hits == [answer(model, TOK, s.prompt) == s.answer for s in seqs] and 0 < sum(hits)


def test_the_cipher_is_read_from_the_context_once_an_induction_head_forms(tmp_path, capsys):
    """A short run on the cipher and the copying task: the cipher's accuracy and both induction
    scores are low at the first evaluation and high at the end (the phase change); a symbol no
    demonstration shows is not answered (its image is in no weight)."""
    opts = dict(preset="cpu-tiny", tasks="cipher", copy=0.25, max_shots=4, symbols=5, batch_size=32, max_steps=600,
                eval_every=150, eval_batches=2, eval_prompts=20)
    result = seqlab.train("icl", out=tmp_path / "c", progress=False, **opts)
    first, last = read_icl_metrics(result.run_dir)[0], read_icl_metrics(result.run_dir)[-1]
    assert first["step"] == 150 and last["step"] == 600
    assert first["fewshot"]["cipher"]["4"] <= 0.5 and first["induction"]["score"] < 0.2
    assert first["cipher_induction"]["score"] < 0.3
    model, run = seqlab.load(result.run_dir)
    acc = few_shot_accuracy(model, TOK, "cipher", 4, 60, seed=7, symbols=5)
    assert acc >= 0.9 and last["induction"]["score"] > 0.5 and last["cipher_induction"]["score"] > 0.6, (acc, last)
    # the same prompts, asked for a symbol no demonstration shows: at most a guess (1/4 to 1/1 of the unshown images)
    rng = random.Random(3)
    unshown = []
    while len(unshown) < 60:
        seq = make_sequence("cipher", 2, rng, symbols=5, split="val")
        shown = {x for x, _ in seq.demos}
        c = next(c for c in range(5) if (c,) not in shown)
        prompt = seq.prompt[:-2] + str(c) + ">"
        unshown.append(dataclasses.replace(seq, prompt=prompt, answer=str(seq.cipher[c]), query=(c,), spans=()))
    assert sum(exact_matches(model, TOK, unshown)) / 60 < 0.6
    # the command line draws the head that reads the cipher
    capsys.readouterr()
    png = tmp_path / "cipher_head.png"
    assert main(["prompt", str(result.run_dir), "--shots", "4", "--show-attention", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cipher, 4 shots") and "on 50 4-shot cipher prompts" in out and png.stat().st_size > 1000


def test_resume_rebuilds_the_mixture_and_keeps_the_curves(tmp_path):
    opts = dict(preset="cpu-tiny", d_model=32, tasks="reverse", max_shots=1, min_length=3, max_length=3,
                symbols=5, batch_size=8, eval_prompts=4, eval_every=4, eval_batches=1, max_steps=8, warmup_steps=1)
    first = seqlab.train("icl", out=tmp_path / "r", progress=False, max_seconds=1e-9, **opts)
    assert first.steps < 8 and [r["step"] for r in read_icl_metrics(first.run_dir)] == [first.steps]
    assert seqlab.resume(first.run_dir, progress=False).steps == 8
    steps = [r["step"] for r in read_icl_metrics(first.run_dir)]
    assert steps == sorted(set(steps)) and steps[-2:] == [4, 8]
    again = seqlab.train("icl", out=tmp_path / "s", progress=False, **opts)  # uninterrupted: the same losses
    assert seqlab.load(again.run_dir)[1].saved_data() == seqlab.load(first.run_dir)[1].saved_data()
    assert again.best_val_loss == pytest.approx(seqlab.resume(first.run_dir, progress=False).best_val_loss)


def test_cli_prompt_attention_and_eval(icl_run, tmp_path, capsys):
    run, _ = icl_run
    capsys.readouterr()
    png = tmp_path / "head.png"
    assert main(["prompt", str(run), "--task", "sort", "--shots", "2", "--show-attention", str(png)]) == 0
    out = capsys.readouterr().out
    seq = make_sequence("sort", 2, random.Random("prompt-0"), length=(3, 3), symbols=5, split="val")
    assert out.startswith("sort, 2 shots (held-out query, seed 0)")
    assert "\n".join("  " + line for line in seq.prompt.split("\n")) in out
    assert f"expected:     {seq.answer!r}" in out and "model answer: " in out
    assert "the best induction head" in out and png.stat().st_size > 1000
    assert main(["prompt", str(run), "--text", "sort:\\n3120>"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("prompt:\n  sort:\n  3120>\nmodel answer: ") and "expected" not in out
    assert main(["eval", str(run), "--n", "10", "--json", "--quiet"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert set(rec["fewshot"]) == {"sort", "reverse"} and set(rec["instruction"]["sort"]) == {"0", "1", "2"}
    assert set(rec["fewshot"]["sort"]) == {"1", "2"} and 0 <= rec["induction"]["score"] <= 1


def test_cli_bad_prompts(icl_run, tmp_path, capsys):
    run, _ = icl_run
    capsys.readouterr()
    before = snapshot(run)

    def err(argv):
        return one_line_error(capsys, argv)

    assert "prompt: expected a non-empty text" in err(["prompt", str(run), "--text", ""])
    assert "prompt: expected at most block_size - 1 = 127 tokens (room for the answer), received 130" in err(
        ["prompt", str(run), "--text", "0123>" * 26])
    assert "prompt: expected" in (e := err(["prompt", str(run), "--text", "sort: 4 1 3 ->"])) and "' '" in e
    assert "task: expected one of 'sort', 'reverse', received 'cipher'" in err(["prompt", str(run)])
    assert "task: expected one of 'sort', 'reverse', received 'add'" in err(["prompt", str(run), "--task", "add"])
    assert "shots (0 to the run's max_shots, 2): expected an integer <= 2, received 3" in err(
        ["prompt", str(run), "--task", "sort", "--shots", "3"])
    assert "expected an integer >= 0, received -1" in err(["prompt", str(run), "--task", "sort", "--shots", "-1"])
    assert "--text: expected either --text or --task/--shots/--instruction" in err(
        ["prompt", str(run), "--text", "01>", "--shots", "1"])
    assert "prompt: expected a run of the icl family (seqlab train icl), received a 'charlm' run" in err(
        ["prompt", str(LEGACY / "lstm")])
    assert "no such path" in err(["prompt", str(tmp_path / "missing")])
    (tmp_path / "file").write_text("x")
    assert "--show-attention: expected a path through folders" in err(
        ["prompt", str(run), "--task", "sort", "--show-attention", str(tmp_path / "file" / "x.png")])
    assert snapshot(run) == before


def test_the_tour_part_in_quick_mode(tmp_path):
    from seqlab.llm.prompting_tour import prompting
    from seqlab.tour.context import TourContext
    from seqlab.viz.report import Report

    ctx = TourContext(out=tmp_path, quick=True, progress=False, report=Report("t"))
    ctx.section = sec = ctx.report.section("prompting")
    line = prompting(ctx, sec)
    assert line.startswith("ICL exact match at 2 shots: reverse ") and "cipher prompts" in line
    assert {"text", "equation", "table", "figure", "code"} <= set(sec.kinds())
    assert (tmp_path / "prompting_curves.png").stat().st_size > 1000 and (tmp_path / "prompting_head.png").is_file()
