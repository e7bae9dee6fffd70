"""Machine translation (seqlab/tasks/translate*.py, seqlab translate): the number corpus and
its split by number, the pairs-file loader, the tokenisation, greedy and beam search (width 1
equals greedy; a hand-built case where the beam finds the better sequence), the metrics on
hand-computed cases, the attention weights, a short learning run of each model, save / load /
resume, and every bad input through Python and the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import seqlab
from seqlab.cli import main
from seqlab.tasks import translate_data as td
from seqlab.tasks.translate import (Hypothesis, TranslateConfig, Translator, beam_search, decode, greedy,
                                    translate_texts)
from seqlab.tasks.translate_data import BOS, EOS, Vocab, collate, make_translation_data
from seqlab.tasks.translate_family import bleu, chrf, exact_match, score_translations, translate
from seqlab.testing import one_line_error, snapshot

TINY = dict(preset="cpu-tiny", high=199, max_steps=4, eval_every=4, eval_batches=1, batch_size=8, warmup_steps=1,
            log_every=2, device="cpu")


def tiny_model(arch: str, data, seed: int = 0) -> Translator:
    torch.manual_seed(seed)
    S, T = data.longest()
    return Translator(TranslateConfig(arch=arch, src_vocab_size=len(data.source_vocab),
                                      tgt_vocab_size=len(data.target_vocab), max_source_len=2 * S,
                                      max_target_len=2 * T + 2, d_model=32, hidden_size=32, attention_size=32,
                                      num_layers=1, num_heads=2, d_ff=64, dropout=0.0))


@pytest.fixture(scope="module")
def small_data():
    return make_translation_data(high=299)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("translate") / "run"
    seqlab.train("translate", out=out, progress=False, arch="rnn", **TINY)
    return out


# --------------------------------------------------------------------------- the corpus


def test_number_corpus_is_num2words_and_deterministic():
    a = make_translation_data(high=499)
    b = make_translation_data(high=499)
    assert (a.train, a.val, a.test) == (b.train, b.val, b.test)
    every = dict(a.train + a.val + a.test)
    assert every["three hundred and twelve"] == "trois cent douze"
    assert every["eighty-one"] == "quatre-vingt-un" and every["two hundred"] == "deux cents"
    assert len(every) == 500
    digits = make_translation_data(direction="digits-en", high=499)
    assert dict(digits.train + digits.val + digits.test)["312"] == "three hundred and twelve"
    assert a.source_vocab == b.source_vocab and a.target_vocab == b.target_vocab


def test_the_split_is_by_number_disjoint_and_seeded():
    train, val, test = td.split_numbers(0, 999, 0.1, 0.05, seed=0)
    assert sorted(train + val + test) == list(range(1000))
    assert not (set(train) & set(test)) and not (set(train) & set(val)) and not (set(val) & set(test))
    assert (len(test), len(val)) == (100, 50)
    assert td.split_numbers(0, 999, 0.1, 0.05, seed=0) == (train, val, test)
    assert td.split_numbers(0, 999, 0.1, 0.05, seed=1)[2] != test
    # the run's data: no test source (no test number) in training
    d = make_translation_data(high=999)
    assert not {s for s, _ in d.test} & {s for s, _ in d.train}
    assert {s for s, _ in d.test} == {td.say(n, "en") for n in test}


def test_pairs_file_split_by_source(tmp_path):
    lines = [f"s{i % 40} x\tt{i}" for i in range(120)] + ["# a comment", ""]
    f = tmp_path / "pairs.tsv"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pairs, digest = td.read_pairs(f)
    assert len(pairs) == 120 and pairs[0] == ("s0 x", "t0") and len(digest) == 64
    d = make_translation_data(pairs=str(f), test_fraction=0.25, val_fraction=0.1)
    sources = [{s for s, _ in part} for part in (d.train, d.val, d.test)]
    assert not (sources[0] & sources[2]) and not (sources[0] & sources[1]) and len(sources[2]) == 10
    assert len(d.train) + len(d.val) + len(d.test) == 120
    again = make_translation_data(pairs=str(f), test_fraction=0.25, val_fraction=0.1)
    assert again.test == d.test and d.info()["sha256"] == digest


def test_tokenisation_round_trips():
    texts = ["quatre-vingt-un mille", "trois cent douze", "one thousand, two hundred"]
    v = Vocab.build("words", texts)
    assert v.pieces("quatre-vingt-un mille") == ["▁quatre", "-", "vingt", "-", "un", "▁mille"]
    assert v.pieces("one thousand, two") == ["▁one", "▁thousand", ",", "▁two"]
    for text in texts:
        assert v.decode(v.encode(text)) == text
    assert v.decode(v.encode("trois  cent\tdouze ")) == "trois cent douze"
    assert v.encode("zéro") == [td.UNK]
    assert Vocab.from_json(v.to_json()) == v
    digits = Vocab.build("words", ["312"])
    assert digits.pieces("312") == ["▁3", "1", "2"]
    c = Vocab.build("chars", ["drei hundert"])
    assert c.decode(c.encode("drei hundert")) == "drei hundert" and len(c.pieces("drei")) == 4
    assert td.resolve_tokens("auto", "en-de") == "chars" and td.resolve_tokens("auto", "en-fr") == "words"


def test_batches_teacher_forcing_layout(small_data):
    src, src_len, y_in, y_out = small_data.get_batch("train", 5, torch.Generator().manual_seed(0))
    assert src.shape[0] == 5 and y_in.shape == y_out.shape
    assert bool((y_in[:, 0] == BOS).all())
    for i in range(5):
        n = int((y_out[i] != td.PAD).sum())
        assert y_out[i, n - 1] == EOS and torch.equal(y_in[i, 1:n], y_out[i, :n - 1])
        assert int((src[i] != td.PAD).sum()) == int(src_len[i])


# --------------------------------------------------------------------------- decoding


class Scripted:
    """A hand-built 'model' with the decoding interface: p(next | prefix) from a table.
    Tokens: 4 = a, 5 = b (ids 0-3 are the special tokens)."""

    A, B = 4, 5
    TABLE = {(): {4: 0.6, 5: 0.4}, (4,): {4: 0.4, 5: 0.3, EOS: 0.3}, (5,): {EOS: 0.9, 4: 0.05, 5: 0.05},
             (4, 4): {EOS: 1.0}, (4, 5): {EOS: 1.0}, (5, 4): {EOS: 1.0}, (5, 5): {EOS: 1.0}}

    def start(self, src, src_len):
        return {"prefix": [()] * src.shape[0]}

    def decode_step(self, state, y_prev):
        prefixes = [p if int(y) == BOS else p + (int(y),) for p, y in zip(state["prefix"], y_prev)]
        logp = torch.full((len(prefixes), 6), -1e9)
        for i, p in enumerate(prefixes):
            for tok, prob in self.TABLE.get(p, {EOS: 1.0}).items():
                logp[i, tok] = math.log(prob)
        return logp, torch.full((len(prefixes), 1), 1.0), {"prefix": prefixes}

    def reorder(self, state, index):
        return {"prefix": [state["prefix"][i] for i in index.tolist()]}


def test_beam_search_finds_the_higher_scoring_sequence():
    src, src_len = torch.zeros(1, 1, dtype=torch.long), torch.tensor([1])
    g = greedy(Scripted(), src, src_len, 5)[0]
    assert g.ids == [4, 4] and g.ended and g.log_prob == pytest.approx(math.log(0.6 * 0.4 * 1.0))
    b = beam_search(Scripted(), src, src_len, 5, beam=2, alpha=0.0)[0]
    assert b.ids == [5] and b.ended and b.log_prob == pytest.approx(math.log(0.4 * 0.9))
    assert b.log_prob > g.log_prob
    # the beam's width 1 is greedy
    one = beam_search(Scripted(), src, src_len, 5, beam=1, alpha=0.0)[0]
    assert one.ids == g.ids and one.log_prob == pytest.approx(g.log_prob)


def test_length_normalisation_by_hand():
    # score = log p / |y|^alpha, |y| counting </s>: "b </s>" 2 tokens, "a a </s>" 3 tokens
    src, src_len = torch.zeros(1, 1, dtype=torch.long), torch.tensor([1])
    # alpha = 1: log(0.36) / 2 = -0.511 < log(0.24) / 3 = -0.476: the longer one wins
    b = beam_search(Scripted(), src, src_len, 5, beam=2, alpha=1.0)[0]
    assert b.ids == [4, 4] and b.score == pytest.approx(math.log(0.24) / 3)
    assert isinstance(b, Hypothesis) and b.attention.shape == (3, 1)
    # alpha = 0.5: log(0.36) / sqrt(2) = -0.722 > log(0.24) / sqrt(3) = -0.824
    b = beam_search(Scripted(), src, src_len, 5, beam=2, alpha=0.5)[0]
    assert b.ids == [5] and b.score == pytest.approx(math.log(0.36) / math.sqrt(2))


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_beam_of_width_one_equals_greedy(arch, small_data):
    model = tiny_model(arch, small_data, seed=3).eval()
    src, src_len = collate([torch.tensor(small_data.source_vocab.encode(s)) for s, _ in small_data.test[:12]])
    g = greedy(model, src, src_len, 12)
    b = beam_search(model, src, src_len, 12, beam=1)
    assert [h.ids for h in g] == [h.ids for h in b]
    assert [h.log_prob for h in g] == pytest.approx([h.log_prob for h in b], abs=1e-5)
    wide = beam_search(model, src, src_len, 12, beam=4, alpha=0.6)
    for h in wide:  # the reported score is log p / |y|^alpha of what it returns
        assert h.score == pytest.approx(h.log_prob / (len(h.ids) + h.ended) ** 0.6)


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_attention_weights_sum_to_one_and_skip_padding(arch, small_data):
    model = tiny_model(arch, small_data).eval()
    src, src_len, y_in, _ = small_data.get_batch("val", 6, torch.Generator().manual_seed(1))
    if arch == "rnn":
        _, attn = model(src, src_len, y_in)
    else:
        _, attn = model(src, src_len, y_in, need_weights=True)
    assert attn.shape == (6, y_in.shape[1], src.shape[1])
    torch.testing.assert_close(attn.sum(-1), torch.ones(6, y_in.shape[1]))
    pad = torch.arange(src.shape[1])[None, :] >= src_len[:, None]  # (B, S)
    assert float(attn.detach().masked_select(pad[:, None, :].expand_as(attn)).abs().sum()) == 0.0
    for h in decode(model, src, src_len, beam=3):
        torch.testing.assert_close(h.attention.sum(-1), torch.ones(h.attention.shape[0]))


# --------------------------------------------------------------------------- metrics


def test_exact_match_by_hand():
    assert exact_match(["trois cent douze", "deux"], ["trois cent douze", "deux cents"]) == 0.5
    assert exact_match(["trois  cent douze "], ["trois cent douze"]) == 1.0
    with pytest.raises(ValueError, match="as many hypotheses"):
        exact_match(["a"], [])


def test_bleu_and_chrf_by_hand():
    # one pair, p_n = 4/5, 3/4, 2/3, 1/2, no brevity penalty: BLEU = 100 (p1 p2 p3 p4)^(1/4)
    assert bleu(["a b c d e"], ["a b c d f"]) == pytest.approx(100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25, abs=1e-6)
    # corpus BLEU sums the counts over the corpus (not a mean of sentence scores):
    # "a b c d e" / "a b c d f" and "a b c d e" / "a b c d e": p_n = 9/10, 7/8, 5/6, 3/4
    two = bleu(["a b c d e", "a b c d e"], ["a b c d f", "a b c d e"])
    assert two == pytest.approx(100 * (9 / 10 * 7 / 8 * 5 / 6 * 3 / 4) ** 0.25, abs=1e-6)
    # brevity penalty: hypothesis 4 words, reference 5: exp(1 - 5/4), precisions all 1
    assert bleu(["a b c d"], ["a b c d e"]) == pytest.approx(100 * math.exp(1 - 5 / 4), abs=1e-6)
    assert chrf(["trois cent douze"], ["trois cent douze"]) == pytest.approx(100.0)
    assert chrf(["xyz"], ["abc"]) == pytest.approx(0.0)
    s = score_translations(["trois cent douze mille un", "deux"], ["trois cent douze mille un", "deux cents"])
    assert s["exact_match"] == 0.5 and 0 < s["bleu"] < 100 and 0 < s["chrf"] < 100


# --------------------------------------------------------------------------- learning


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_each_model_learns_a_batch_by_heart(arch, small_data):
    model = tiny_model(arch, small_data)
    batch = small_data.get_batch("train", 8, torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    model.train()
    for _ in range(150):
        loss, _ = model.loss(batch)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * first
    src, src_len, _, y_out = batch
    hyps = decode(model, src, src_len, beam=1)
    refs = [small_data.target_vocab.decode([t for t in row.tolist() if t > 3]) for row in y_out]
    assert [small_data.target_vocab.decode(h.ids) for h in hyps] == refs


# --------------------------------------------------------------------------- runs


def test_train_load_translate_and_evaluate(run_dir, capsys):
    model, run = seqlab.load(run_dir)
    assert run.family == "translate" and type(model).__name__ == "RNNTranslator"
    files = run_dir / "checkpoints"
    assert any((p / "source_vocab.json").is_file() for p in files.iterdir() if p.is_dir())
    src_vocab = run.extras["source_vocab"]
    assert json.loads(src_vocab.to_json())["mode"] == "words"
    t = translate(run_dir, "three hundred and twelve", beam=3)
    same = translate_texts(model, src_vocab, run.extras["target_vocab"], ["three hundred and twelve"], beam=3)[0]
    assert t.text == same.text and t.attention.shape == (len(t.target_pieces), 4)
    r = seqlab.evaluate(run_dir, limit=6, beam=2)
    assert set(r.to_json()["results"]) == {"greedy", "beam 2"} and r.n == 6
    assert main(["eval", str(run_dir), "--limit", "4", "--beam", "1"]) == 0
    assert "exact match" in capsys.readouterr().out


def test_cli_translate_and_png(run_dir, tmp_path, capsys):
    png = tmp_path / "alignment.png"
    assert main(["translate", str(run_dir), "three hundred and twelve", "--beam", "2", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "wrote" in out
    assert main(["translate", str(run_dir), "twelve", "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["source_pieces"] == ["twelve"] and len(j["attention"]) == len(j["target_pieces"])


def test_resume_is_exact(tmp_path, monkeypatch):
    from seqlab.training import loop
    from seqlab.training.checkpoint import load_checkpoint
    from seqlab.training.rundir import latest_checkpoint

    options = dict(TINY, arch="transformer", max_steps=6, eval_every=2)
    straight = seqlab.train("translate", out=tmp_path / "straight", progress=False, **options)
    real_step = loop._Run.train_step

    def interrupted(self):
        if self.step == 3:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(loop._Run, "train_step", interrupted)
    part = seqlab.train("translate", out=tmp_path / "cut", progress=False, **options)
    assert part.stopped == "interrupted" and part.steps == 3
    monkeypatch.undo()
    rest = seqlab.resume(tmp_path / "cut", progress=False)
    assert rest.steps == 6 and rest.last_val_loss == straight.last_val_loss

    def records(d):
        return [{k: v for k, v in json.loads(line).items() if k not in ("time", "tokens_per_s", "steps_per_s")}
                for line in (d / "metrics.jsonl").read_text().splitlines()]

    # every logged record equal, but the extra evaluation the interrupted invocation made at its stop
    assert [r for r in records(tmp_path / "cut") if (r["step"], r["split"]) != (3, "val")] == \
        records(tmp_path / "straight")
    a = load_checkpoint(latest_checkpoint(tmp_path / "straight"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "cut"))
    for name, tensor in a.state_dict.items():
        assert torch.equal(tensor, b.state_dict[name]), name


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def other_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("other") / "gru"
    seqlab.train("gru", out=out, progress=False, preset="cpu-tiny", block_size=8, batch_size=2, max_steps=1,
                 eval_every=1, eval_batches=1, warmup_steps=1)
    return out


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "empty.tsv").write_text("# nothing\n\n", encoding="utf-8")
    (tmp_path / "malformed.tsv").write_text("one\tun\ntwo un deux\n", encoding="utf-8")
    (tmp_path / "blank_side.tsv").write_text("one\tun\ntwo\t \n", encoding="utf-8")
    (tmp_path / "latin1.tsv").write_bytes("z\xe9ro\tnull\n".encode("latin-1"))
    (tmp_path / "folder.tsv").mkdir()
    return {"missing": (tmp_path / "missing.tsv", "no such file"), "empty": (tmp_path / "empty.tsv", "empty file"),
            "malformed": (tmp_path / "malformed.tsv", "line 2"), "blank": (tmp_path / "blank_side.tsv", "line 2"),
            "not utf-8": (tmp_path / "latin1.tsv", "not UTF-8"), "folder": (tmp_path / "folder.tsv", "not a file")}


def test_bad_pairs_files_in_python(tmp_path, monkeypatch):
    for _, (path, words) in bad_files(tmp_path).items():
        with pytest.raises(ValueError, match=words) as e:
            seqlab.train("translate", out=tmp_path / "never", progress=False, pairs=str(path), **TINY)
        assert "\n" not in str(e.value)
    assert not (tmp_path / "never").exists()
    good = tmp_path / "good.tsv"
    good.write_text("a\tb\n", encoding="utf-8")

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ValueError, match="readable file.*permission denied"):
        td.read_pairs(good)


def test_bad_pairs_files_on_the_command_line(tmp_path, capsys):
    for _, (path, words) in bad_files(tmp_path).items():
        err = one_line_error(capsys, ["train", "translate", "--pairs", str(path), "--out", str(tmp_path / "never"),
                                      "--preset", "cpu-tiny", "--max-steps", "1", "--quiet"])
        assert words in err
    assert not (tmp_path / "never").exists()
    err = one_line_error(capsys, ["train", "translate", "--direction", "en-xx", "--out", str(tmp_path / "never")])
    assert "direction" in err and "en-xx" in err


def test_bad_texts_in_python(run_dir, other_run):
    with pytest.raises(ValueError, match="empty text"):
        translate(run_dir, "")
    with pytest.raises(ValueError, match="only whitespace"):
        translate(run_dir, "   ")
    with pytest.raises(ValueError, match="unknown words 'douze'"):
        translate(run_dir, "three douze")
    limit = seqlab.load(run_dir)[1].config.max_source_len  # twice the corpus' longest source
    with pytest.raises(ValueError, match=f"at most {limit} pieces"):
        translate(run_dir, " ".join(["one"] * (limit + 1)))
    with pytest.raises(ValueError, match="a run of the translate family.*'charlm'"):
        translate(other_run, "one")
    with pytest.raises(ValueError, match="beam"):
        translate(run_dir, "one", beam=0)


def test_bad_input_on_the_command_line_writes_nothing(run_dir, other_run, tmp_path, capsys):
    before = snapshot(run_dir)
    png = tmp_path / "keep.png"
    png.write_bytes(b"good file")
    r = str(run_dir)
    limit = seqlab.load(run_dir)[1].config.max_source_len
    cases = [
        (["translate", r, ""], "empty text"),
        (["translate", r, " "], "only whitespace"),
        (["translate", r, "three douze", "--png", str(png)], "unknown words 'douze'"),
        (["translate", r, " ".join(["one"] * (limit + 1)), "--png", str(png)], f"at most {limit} pieces"),
        (["translate", str(other_run), "one"], "'charlm' run"),
        (["translate", r, "one", "--beam", "0"], "--beam"),
        (["translate", r, "one", "--png", str(tmp_path / "no" / "a.png")], "--png"),
        (["translate", str(tmp_path / "nowhere"), "one"], "nowhere"),
        (["eval", r, "--split", "train"], "split"),
    ]
    for argv, words in cases:
        assert words in one_line_error(capsys, argv), argv
    assert snapshot(run_dir) == before and png.read_bytes() == b"good file"


def test_a_moved_pairs_file_must_be_the_same_file(tmp_path):
    f = tmp_path / "pairs.tsv"
    f.write_text("".join(f"w{i} x\tv{i} y\n" for i in range(30)), encoding="utf-8")
    out = tmp_path / "run"
    seqlab.train("translate", out=out, progress=False, pairs=str(f), **dict(TINY, high=9999))
    assert seqlab.evaluate(out, beam=1).n == 3
    moved = tmp_path / "moved.tsv"
    f.rename(moved)
    with pytest.raises(ValueError, match="no such file"):
        seqlab.evaluate(out, beam=1)
    assert seqlab.evaluate(out, beam=1, pairs=str(moved)).n == 3  # a moved copy of the same file
    moved.write_text("".join(f"w{i} x\tv{i} z\n" for i in range(30)), encoding="utf-8")
    with pytest.raises(ValueError, match="the file the run was trained on"):
        seqlab.evaluate(out, beam=1, pairs=str(moved))
    with pytest.raises(ValueError, match="the file the run was trained on"):
        seqlab.resume(out, pairs=str(moved), progress=False)


def test_tour_part_quick(tmp_path):
    from seqlab.tasks.translate_tour import translate as tour_part
    from seqlab.tour.context import TourContext
    from seqlab.viz.report import Report

    report = Report("t")
    ctx = TourContext(out=tmp_path, quick=True, progress=False, report=report)
    sec = report.section("Applications")
    line = tour_part(ctx, sec)
    assert line.startswith("translate:") and "exact match" in line
