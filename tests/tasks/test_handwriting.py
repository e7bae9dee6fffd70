"""Online handwriting (seqlab/tasks/handwriting*.py, seqlab read / write): the ink <-> offsets
conversion, the Hershey writers and the held-out split, the strokes JSON format and its bad
files, the mixture density log-likelihood against a direct computation, the attention window
by hand, the sampling bias, the recogniser's masking and a tiny learning run, the family's
three tasks end to end, and bad inputs through Python and the command line."""

import json
import math

import numpy as np
import pytest
import torch

import seqlab
from seqlab.cli import main
from seqlab.tasks import handwriting_data as hd
from seqlab.tasks.handwriting import (HandwritingConfig, HandwritingRecognizer, ShapeClassifier, collate_ink,
                                      collate_text, recognize, word_scores)
from seqlab.tasks.handwriting_mdn import HandwritingGenerator, mixture_nll, mixture_params, window_weights
from seqlab.testing import one_line_error, snapshot

TINY = dict(preset="cpu-tiny", words=24, val_words=4, test_words=4, writers=4, test_writers=2, max_steps=2,
            eval_every=2, eval_batches=1, batch_size=4, warmup_steps=1, log_every=1, shape_copies=1)


# --------------------------------------------------------------------------- data


def test_offsets_round_trip_and_pen_ups():
    strokes = [np.array([[1.0, 2.0], [2.0, 2.5], [3.0, 1.0]]), np.array([[5.0, 0.0]]), np.array([[6.0, 1.0],
                                                                                                 [7.0, 3.0]])]
    x = hd.to_offsets(strokes)
    assert x.shape == (6, 3)
    assert x[:, 2].tolist() == [0, 0, 1, 1, 0, 1]  # e_t = 1 at the last point of each stroke
    assert np.allclose(x[0], [0, 0, 0]) and np.allclose(x[3, :2], [2.0, -1.0])  # the jump of the lifted pen
    back = hd.from_offsets(x)
    assert len(back) == 3
    for a, b in zip(back, strokes):
        assert np.allclose(a, b - strokes[0][0], atol=1e-6)


def test_resample_spacing():
    line = np.array([[0.0, 0.0], [10.0, 0.0]])
    r = hd.resample(line, 1.0)
    assert len(r) == 11 and np.allclose(np.diff(r[:, 0]), 1.0)
    assert np.allclose(r[0], line[0]) and np.allclose(r[-1], line[-1])
    assert len(hd.resample(np.array([[1.0, 1.0]]), 0.5)) == 1


def test_writers_words_and_held_out_split():
    words = hd.split_words(0)
    assert not set(words["test"]) & set(words["train"]) and not set(words["val"]) & set(words["train"])
    assert len(words["train"]) > 1500 and all(set(w) <= set(hd.ALPHABET) for w in words["train"])
    c = hd.word_corpus({"train": 30, "test": 30}, seed=0, writers=5, test_writers=3)
    assert all(s.text in words["train"] for s in c["train"]) and all(s.text in words["test"] for s in c["test"])
    rng = np.random.default_rng(0)
    train_slants = [hd.sample_writer(rng).slant for _ in range(200)]
    test_slants = [hd.sample_writer(rng, hd.TEST_SLANTS).slant for _ in range(200)]
    lo, hi = hd.TEST_SLANTS[0]
    assert all(not lo < s < hi for s in train_slants) and all(lo <= s <= hi for s in test_slants)
    again = hd.word_corpus({"train": 30, "test": 30}, seed=0, writers=5, test_writers=3)
    assert all(np.array_equal(np.concatenate(a.strokes), np.concatenate(b.strokes))
               for a, b in zip(c["test"], again["test"]))
    # a slower writer (smaller spacing) leaves more points; a join keeps the pen down
    style = hd.WriterStyle(jitter=0.0, wobble=0.0, connect=0.0)
    slow = hd.write_word("minimum", hd.WriterStyle(spacing=0.2, jitter=0, wobble=0), np.random.default_rng(1))
    fast = hd.write_word("minimum", hd.WriterStyle(spacing=0.6, jitter=0, wobble=0), np.random.default_rng(1))
    assert sum(map(len, slow)) > 2 * sum(map(len, fast))
    apart = hd.write_word("ox", hd.WriterStyle(font="futural", connect=0.0), np.random.default_rng(2))
    joined = hd.write_word("ox", hd.WriterStyle(font="futural", connect=1.0), np.random.default_rng(2))
    assert len(joined) == len(apart) - 1
    assert len(hd.write_word("ab", style, rng)) >= 1
    with pytest.raises(ValueError, match="letters of"):
        hd.write_word("Hello!", style, rng)


def test_lasa_shapes():
    shapes = hd.lasa_shapes()
    assert len(shapes) == 26 and all(len(d) == 7 and d[0].shape == (1000, 2) for d in shapes.values())
    x = hd.shape_features([shapes["Angle"][0]])
    assert x.shape == (hd.SHAPE_POINTS, 3) and x[-1, 2] == 1 and x[:-1, 2].sum() == 0


def test_strokes_json_round_trip_and_bad_files(tmp_path):
    s = [np.array([[0.0, 0.0], [1.0, 2.0]]), np.array([[3.0, 1.0]])]
    path = hd.save_strokes_json(tmp_path / "a.json", s, "hi")
    back = hd.load_strokes_json(path)
    assert back["text"] == "hi" and all(np.allclose(a, b) for a, b in zip(back["strokes"], s))
    (tmp_path / "down.json").write_text(json.dumps({"strokes": [[[0, 5], [1, 7]]], "y_axis": "down"}))
    assert np.allclose(hd.load_strokes_json(tmp_path / "down.json")["strokes"][0], [[0, -5], [1, -7]])
    cases = {"missing.json": (None, "does not exist"),
             "bad.json": ('{"strokes": [[[0, 1]', "valid JSON"),
             "list.json": ("[1, 2]", '"strokes" list'),
             "empty.json": ('{"strokes": []}', "empty list"),
             "empty_stroke.json": ('{"strokes": [[]]}', "non-empty lists"),
             "nan.json": ('{"strokes": [[[0, NaN]]]}', "finite"),
             "inf.json": ('{"strokes": [[[0, 1e999]]]}', "finite"),
             "text.json": ('{"strokes": [[["a", 1]]]}', "two numbers"),
             "three.json": ('{"strokes": [[[0, 1, 2]]]}', "two numbers"),
             "axis.json": ('{"strokes": [[[0, 1]]], "y_axis": "left"}', "y_axis"),
             "label.json": ('{"strokes": [[[0, 1]]], "text": 5}', "string")}
    for name, (content, match) in cases.items():
        if content is not None:
            (tmp_path / name).write_text(content)
        with pytest.raises(ValueError, match=match) as e:
            hd.load_strokes_json(tmp_path / name)
        assert "\n" not in str(e.value)
    (tmp_path / "latin1.json").write_bytes(b'{"strokes": [[[0, 1]]], "text": "\xe9"}')
    with pytest.raises(ValueError, match="UTF-8"):
        hd.load_strokes_json(tmp_path / "latin1.json")
    with pytest.raises(ValueError, match="not a file"):
        hd.load_strokes_json(tmp_path)


# --------------------------------------------------------------------------- the mixture density network


def _bivariate_normal(x1, x2, mu1, mu2, s1, s2, rho):
    """Graves 2013 eqs. 24-25, written out with plain floats."""
    z = (x1 - mu1) ** 2 / s1 ** 2 + (x2 - mu2) ** 2 / s2 ** 2 - 2 * rho * (x1 - mu1) * (x2 - mu2) / (s1 * s2)
    return math.exp(-z / (2 * (1 - rho ** 2))) / (2 * math.pi * s1 * s2 * math.sqrt(1 - rho ** 2))


def test_mixture_nll_equals_a_direct_computation():
    from scipy.stats import multivariate_normal

    torch.manual_seed(0)
    M = 3
    y_hat = torch.randn(2, 4, 1 + 6 * M, dtype=torch.float64)
    target = torch.cat([torch.randn(2, 4, 2, dtype=torch.float64), torch.randint(0, 2, (2, 4, 1)).double()], -1)
    nll = mixture_nll(y_hat, target, M)
    for b in range(2):
        for t in range(4):
            v = y_hat[b, t].tolist()
            e = 1 / (1 + math.exp(v[0]))  # eq. 18
            pi_hat, mu, sig, rho = v[1:1 + M], v[1 + M:1 + 3 * M], v[1 + 3 * M:1 + 5 * M], v[1 + 5 * M:]
            z = sum(math.exp(p) for p in pi_hat)
            x1, x2, x3 = target[b, t].tolist()
            total, total_scipy = 0.0, 0.0
            for j in range(M):
                m1, m2, s1, s2, r = mu[2 * j], mu[2 * j + 1], math.exp(sig[2 * j]), math.exp(sig[2 * j + 1]), \
                    math.tanh(rho[j])
                total += math.exp(pi_hat[j]) / z * _bivariate_normal(x1, x2, m1, m2, s1, s2, r)
                cov = [[s1 * s1, r * s1 * s2], [r * s1 * s2, s2 * s2]]
                total_scipy += math.exp(pi_hat[j]) / z * multivariate_normal([m1, m2], cov).pdf([x1, x2])
            assert math.isclose(total, total_scipy, rel_tol=1e-9)
            expected = -math.log(total) - math.log(e if x3 == 1 else 1 - e)  # eq. 26
            assert math.isclose(float(nll[b, t]), expected, rel_tol=1e-9, abs_tol=1e-9)


def test_sampling_bias_and_window_by_hand():
    M = 2
    y_hat = torch.tensor([[0.3, 1.0, -1.0, 0.1, 0.2, 0.3, 0.4, -0.5, 0.5, -1.0, 0.0, 0.2, -0.2]])
    e_hat, log_pi, mu, log_sigma, rho = mixture_params(y_hat, M, bias=2.0)
    # pi = softmax(pi^ (1 + b)), sigma = exp(sigma^ - b)
    assert torch.allclose(log_pi.exp(), torch.softmax(torch.tensor([[3.0, -3.0]]), -1))
    assert torch.allclose(log_sigma.exp(), torch.exp(torch.tensor([[[-0.5, 0.5], [-1.0, 0.0]]]) - 2.0))
    assert torch.allclose(rho, torch.tanh(torch.tensor([[0.2, -0.2]])))
    # the window: phi(t, u) = sum_k alpha_k exp(-beta_k (kappa_k - u)^2), kappa_t = kappa_{t-1} + exp(kappa^)
    w_p = torch.nn.Linear(1, 3 * 2)
    with torch.no_grad():
        w_p.weight.zero_()
        w_p.bias.copy_(torch.tensor([0.0, math.log(2.0), math.log(0.5), 0.0, math.log(1.5), 0.0]))
    kappa0 = torch.tensor([[1.0, 2.0]])
    phi, kappa = window_weights(torch.zeros(1, 1), w_p, kappa0, 3, torch.ones(1, 3))
    assert torch.allclose(kappa, torch.tensor([[2.5, 3.0]]))
    for u in (1, 2, 3):
        want = 1.0 * math.exp(-0.5 * (2.5 - u) ** 2) + 2.0 * math.exp(-1.0 * (3.0 - u) ** 2)
        assert math.isclose(float(phi[0, u - 1].detach()), want, rel_tol=1e-6)


def test_generator_learns_a_batch_and_samples():
    torch.manual_seed(0)
    c = hd.word_corpus({"train": 4}, seed=1, writers=2)["train"]
    xs = [torch.from_numpy(hd.to_offsets(hd.normalize(s.strokes))) for s in c]
    ids = [[hd.ALPHABET.index(ch) for ch in s.text] for s in c]
    x, n = collate_ink(xs)
    y, m = collate_text(ids)
    for conditional in (True, False):
        g = HandwritingGenerator(HandwritingConfig(task="generate", hidden_size=24, num_layers=2, mixtures=4,
                                                   window_mixtures=3, conditional=conditional))
        opt = torch.optim.Adam(g.parameters(), 1e-2)
        first = None
        for _ in range(40):
            loss, _ = g.loss((x, n, y, m))
            first = loss.item() if first is None else first
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert loss.item() < first - 1.0, (conditional, first, loss.item())
        gen = torch.Generator().manual_seed(0)
        if conditional:
            out = g.sample(y, m, max_points=30, generator=gen)
            assert len(out) == 4 and all(1 <= len(o) <= 30 and o.shape[1] == 3 for o in out)
            with pytest.raises(ValueError, match="chars"):
                g.sample(None)
        else:
            out = g.sample(batch_size=2, max_points=20, generator=gen)
            assert [o.shape for o in out] == [(20, 3), (20, 3)] and all(o[-1, 2] == 1 for o in out)
        # a large bias writes (nearly) the mode: the first point is the mean of the likeliest component
        x0 = torch.tensor([[[0.0, 0.0, 1.0]]])
        with torch.no_grad():
            y0 = g(x0, y[:1], m[:1]) if conditional else g(x0)
        _, log_pi, mu, log_sigma, _ = mixture_params(y0[0, 0], 4, bias=8.0)
        kw = dict(chars=y[:1], char_lengths=m[:1]) if conditional else dict(batch_size=1)
        firsts = torch.stack([g.sample(**kw, bias=8.0, max_points=1, generator=torch.Generator().manual_seed(s))[0][0]
                              for s in range(5)])
        if float(log_pi.max().exp()) > 0.99:
            mode = mu[log_pi.argmax()].expand(5, 2)
            assert torch.allclose(firsts[:, :2], mode, atol=5 * float(log_sigma.exp().max()))
        unbiased = torch.stack([g.sample(**kw, max_points=1, generator=torch.Generator().manual_seed(s))[0][0]
                                for s in range(5)])
        assert float(firsts[:, :2].std(0).sum()) < float(unbiased[:, :2].std(0).sum())


# --------------------------------------------------------------------------- the recogniser


def test_recogniser_shapes_and_masking():
    torch.manual_seed(0)
    m = HandwritingRecognizer(HandwritingConfig(hidden_size=6, conv_channels=5, num_layers=2, dropout=0.0))
    x = torch.randn(3, 21, 3)
    lengths = torch.tensor([21, 13, 5])
    lp, n = m(x, lengths)
    assert lp.shape == (3, 11, 27) and n.tolist() == [11, 7, 3]
    y = x.clone()
    y[1, 13:] = 50.0
    lp2, _ = m(y, lengths)
    assert torch.allclose(lp[1, :7], lp2[1, :7], atol=1e-6)
    alone, _ = m(x[1:2, :13])
    assert torch.allclose(alone[0], lp[1, :7], atol=1e-6)
    for enc in ("unidirectional", "conv"):
        a = HandwritingRecognizer(HandwritingConfig(encoder=enc, hidden_size=4, conv_channels=4))
        assert a(x, lengths)[0].shape[:2] == (3, 11)
    assert ShapeClassifier(HandwritingConfig(task="shapes", num_classes=5, hidden_size=4, conv_channels=4))(
        x, lengths).shape == (3, 5)
    for bad, match in [(torch.randn(2, 5), "pen offsets"), (torch.randn(1, 5, 2), "3 values"),
                       (torch.full((1, 4, 3), float("nan")), "finite")]:
        with pytest.raises(ValueError, match=match):
            m(bad)
    with pytest.raises(ValueError, match="lengths"):
        m(x, torch.tensor([22, 1, 1]))
    for kw, match in [(dict(task="draw"), "task"), (dict(kernel_size=4), "odd"), (dict(encoder="rnn"), "encoder")]:
        with pytest.raises(ValueError, match=match):
            HandwritingConfig(**kw)


def test_word_scores_by_hand():
    s = word_scores(["hello", "cat"], ["hallo", "cat"])
    assert math.isclose(s["cer"], 1 / 8) and s["word_accuracy"] == 0.5
    with pytest.raises(ValueError, match="references"):
        word_scores([""], ["a"])


def test_tiny_recogniser_learns_words():
    """A small BiGRU + CTC on 6 written words: the loss falls well below its start and greedy
    decoding reads most letters of those words back."""
    torch.manual_seed(0)
    c = hd.word_corpus({"train": 6}, seed=3, writers=1)["train"]
    xs = [torch.from_numpy(hd.to_offsets(hd.normalize(s.strokes))) for s in c]
    texts = [s.text for s in c]
    x, n = collate_ink(xs)
    y, m = collate_text([[hd.ALPHABET.index(ch) for ch in t] for t in texts])
    model = HandwritingRecognizer(HandwritingConfig(hidden_size=48, conv_channels=32, num_layers=1, dropout=0.0))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    first = None
    for _ in range(150):
        model.train()
        loss, _ = model.loss((x, n, y, m))
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    hyps = recognize(model, hd.ALPHABET, xs)
    assert word_scores(texts, hyps)["cer"] < 0.3, (texts, hyps)


# --------------------------------------------------------------------------- family and CLI


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hw")
    out = {}
    for task in ("recognize", "generate", "shapes"):
        out[task] = root / task
        seqlab.train("handwriting", task=task, out=out[task], progress=False, **TINY)
    out["free"] = root / "free"
    seqlab.train("handwriting", task="generate", conditional=False, out=out["free"], progress=False, **TINY)
    return out


@pytest.fixture(scope="module")
def word_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ink") / "hello.json"
    hd.save_strokes_json(path, hd.write_word("hello", hd.WriterStyle(), np.random.default_rng(0)), "hello")
    return path


def test_family_runs_load_evaluate_resume(runs, tmp_path):
    for task, cls in [("recognize", "HandwritingRecognizer"), ("generate", "HandwritingGenerator"),
                      ("shapes", "ShapeClassifier")]:
        model, run = seqlab.load(runs[task])
        assert type(model).__name__ == cls and run.config.task == task
        j = seqlab.evaluate(runs[task], limit=3).to_json()
        assert j["task"] == task and j["items"] == 3
    assert seqlab.load(runs["shapes"])[1].extras["classes"][0] == "Angle"
    assert seqlab.load(runs["recognize"])[1].extras["alphabet"] == hd.ALPHABET
    cut = tmp_path / "cut"
    first = seqlab.train("handwriting", task="generate", out=cut, progress=False, **{**TINY, "max_seconds": 1e-9})
    assert first.steps == 1
    assert seqlab.resume(cut, progress=False).steps == 2


def test_read_and_write_cli_and_python(runs, word_file, tmp_path, capsys):
    from seqlab.tasks.handwriting_family import read, write

    assert main(["read", str(runs["recognize"]), str(word_file), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out["text"], str) and out["points"] > 10
    shape = tmp_path / "angle.json"
    hd.save_strokes_json(shape, [hd.lasa_shapes()["Angle"][5]])
    assert main(["read", str(runs["shapes"]), str(shape)]) == 0
    assert capsys.readouterr().out.strip() in hd.lasa_shapes()
    assert read(runs["recognize"], word_file, beam=2)["file"] == str(word_file)
    png, js = tmp_path / "w.png", tmp_path / "w.json"
    assert main(["write", str(runs["generate"]), "hello", "--png", str(png), "--json", str(js), "--bias", "1",
                 "--seed", "3"]) == 0
    assert capsys.readouterr().out.startswith("wrote ")
    assert png.read_bytes()[:4] == b"\x89PNG" and hd.load_strokes_json(js)["text"] == "hello"
    # the same seed writes the same strokes; the file seqlab write saves is one seqlab read takes
    again = write(runs["generate"], "hello", bias=1.0, seed=3)["strokes"]
    assert all(np.allclose(a, b, atol=1e-3) for a, b in zip(again, hd.load_strokes_json(js)["strokes"]))
    assert main(["read", str(runs["recognize"]), str(js)]) == 0
    capsys.readouterr()
    assert main(["write", str(runs["free"]), "--png", str(tmp_path / "free.png")]) == 0
    capsys.readouterr()
    assert main(["write", str(runs["generate"]), "abc"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "abc"


def test_read_write_bad_inputs(runs, word_file, tmp_path, capsys):
    rec, gen = str(runs["recognize"]), str(runs["generate"])
    before = {k: snapshot(v) for k, v in runs.items()}
    (tmp_path / "nan.json").write_text('{"strokes": [[[0, NaN], [1, 2]]]}')
    (tmp_path / "empty.json").write_text('{"strokes": []}')
    (tmp_path / "bad.json").write_text("{not json")
    assert "does not exist" in one_line_error(capsys, ["read", rec, str(tmp_path / "none.json")])
    assert "finite" in one_line_error(capsys, ["read", rec, str(tmp_path / "nan.json")])
    assert "empty list" in one_line_error(capsys, ["read", rec, str(tmp_path / "empty.json")])
    assert "valid JSON" in one_line_error(capsys, ["read", rec, str(tmp_path / "bad.json")])
    assert "generate run" in one_line_error(capsys, ["read", gen, str(word_file)])
    assert "recognize run" in one_line_error(capsys, ["write", rec, "hello", "--png", str(tmp_path / "a.png")])
    assert "alphabet" in one_line_error(capsys, ["write", gen, "Hello!", "--png", str(tmp_path / "a.png")])
    assert "non-empty" in one_line_error(capsys, ["write", gen, " ", "--png", str(tmp_path / "a.png")])
    assert "non-empty text" in one_line_error(capsys, ["write", gen, "--png", str(tmp_path / "a.png")])
    assert "unconditional" in one_line_error(capsys, ["write", str(runs["free"]), "hi", "--png",
                                                      str(tmp_path / "a.png")])
    assert "no folder" in one_line_error(capsys, ["write", gen, "hi", "--png", str(tmp_path / "no" / "a.png")])
    (tmp_path / "old.png").write_bytes(b"keep me")
    assert "--force" in one_line_error(capsys, ["write", gen, "hi", "--png", str(tmp_path / "old.png")])
    assert (tmp_path / "old.png").read_bytes() == b"keep me"
    assert ".png" in one_line_error(capsys, ["write", gen, "hi", "--png", str(tmp_path / "a.jpg")])
    assert "--bias" in one_line_error(capsys, ["write", gen, "hi", "--bias", "-1"])
    assert not (tmp_path / "a.png").exists()
    assert {k: snapshot(v) for k, v in runs.items()} == before


def test_read_and_write_refuse_another_family(tmp_path, word_file, capsys):
    other = tmp_path / "rnn"
    assert main(["train", "rnn", "--preset", "cpu-tiny", "--max-steps", "1", "--eval-every", "1", "--eval-batches",
                 "1", "--batch-size", "2", "--quiet", "--out", str(other)]) == 0
    capsys.readouterr()
    assert "'charlm' run" in one_line_error(capsys, ["read", str(other), str(word_file)])
    assert "'charlm' run" in one_line_error(capsys, ["write", str(other), "hi"])
    from seqlab.tasks.handwriting_family import read

    with pytest.raises(ValueError, match="handwriting family"):
        read(other, word_file)


def test_train_cli_tasks_and_bad_options(tmp_path, capsys):
    err = one_line_error(capsys, ["train", "handwriting", "--task", "draw", "--out", str(tmp_path / "r")])
    assert "task" in err
    err = one_line_error(capsys, ["train", "handwriting", "--fonts", "comic", "--out", str(tmp_path / "r")])
    assert "fonts" in err
    assert not (tmp_path / "r").exists()


def test_tour_part_quick(tmp_path):
    from seqlab.tasks.handwriting_tour import handwriting
    from seqlab.tour.context import TourContext
    from seqlab.viz.report import Report

    ctx = TourContext(out=tmp_path, quick=True, progress=False, report=Report("t"))
    sec = ctx.report.section("Online handwriting")
    line = handwriting(ctx, sec)
    assert line.startswith("handwriting: ")
    assert {"table", "equation", "figure"} <= set(sec.kinds())
    assert (tmp_path / "handwriting_samples.png").is_file()


def test_train_on_a_strokes_corpus_file_and_bad_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    words = ["cat", "dog", "sun", "map", "pen", "ink", "log", "bit", "row", "key"] * 2
    samples = [{"strokes": [s.tolist() for s in hd.write_word(w, hd.WriterStyle(), rng)], "text": w} for w in words]
    corpus = tmp_path / "words.json"
    corpus.write_text(json.dumps({"samples": samples}))
    run = tmp_path / "run"
    assert main(["train", "handwriting", "--strokes", str(corpus), "--preset", "cpu-tiny", "--max-steps", "1",
                 "--eval-every", "1", "--eval-batches", "1", "--batch-size", "2", "--quiet", "--out", str(run)]) == 0
    capsys.readouterr()
    model, rec = seqlab.load(run)
    assert rec.data["kind"] == "file" and len(rec.data["sha256"]) == 64
    assert seqlab.evaluate(run).to_json()["items"] == 2  # samples 9 and 19 (i % 10 == 9) are the test split
    shapes = {"samples": [{"strokes": [hd.lasa_shapes()[n][d].tolist()], "label": n, "split": s}
                          for n in ("Angle", "Sine") for d, s in ((0, "train"), (1, "val"))]}
    (tmp_path / "shapes.json").write_text(json.dumps(shapes))
    seqlab.train("handwriting", task="shapes", strokes=str(tmp_path / "shapes.json"), out=tmp_path / "s",
                 progress=False, **{k: v for k, v in TINY.items() if k not in ("words", "val_words", "test_words")})
    assert seqlab.load(tmp_path / "s")[1].extras["classes"] == ("Angle", "Sine")
    bad = {"nosamples.json": ('{"samples": []}', 'non-empty "samples"'),
           "upper.json": (json.dumps({"samples": [{"strokes": [[[0, 1]]], "text": "Cat"}]}), "letters"),
           "nan.json": ('{"samples": [{"strokes": [[[0, NaN]]], "text": "a"}]}', "finite"),
           "split.json": (json.dumps({"samples": [{"strokes": [[[0, 1]]], "text": "a", "split": "dev"}]}), "split"),
           "noval.json": (json.dumps({"samples": [{"strokes": [[[0, 1]]], "text": "a", "split": "train"}]}),
                          "val sample")}
    for name, (content, match) in bad.items():
        (tmp_path / name).write_text(content)
        err = one_line_error(capsys, ["train", "handwriting", "--strokes", str(tmp_path / name), "--out",
                                      str(tmp_path / "bad")])
        assert match in err, err
    assert "does not exist" in one_line_error(capsys, ["train", "handwriting", "--strokes", str(tmp_path / "x.json"),
                                                       "--out", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()
    # a resume checks that the file is still the one the run was trained on
    corpus.write_text(json.dumps({"samples": samples[::-1]}))
    with pytest.raises(ValueError, match="sha256"):
        seqlab.resume(run, progress=False, max_steps=2)
