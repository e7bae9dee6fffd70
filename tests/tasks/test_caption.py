"""Image captioning (seqlab/tasks/caption_data.py, caption.py, caption_family.py, seqlab caption): the
scene generator and its held-out combinations, the caption grammar and parser, the metrics on
hand-computed cases, the attention, a short learning run, save/load/resume, a folder of images,
and bad inputs (Python and command line)."""

import json

import numpy as np
import pytest
import torch

import seqlab
from seqlab.cli import main
from seqlab.tasks import caption_data as cd
from seqlab.tasks.caption import CaptionConfig, CaptionModel
from seqlab.tasks.caption_data import (HELD_OUT, KINDS, COLOURS, SceneObject, Vocabulary, attribute_scores,
                                       bleu_cider, caption_of, make_scenes, parse_caption, read_image, write_image)
from seqlab.testing import one_line_error

TINY = dict(preset="cpu-tiny", max_steps=4, eval_every=4, eval_batches=1, batch_size=4, warmup_steps=1,
            scenes=64, log_every=2)
TINY_FLAGS = ["--preset", "cpu-tiny", "--max-steps", "2", "--eval-every", "2", "--eval-batches", "1",
              "--batch-size", "4", "--warmup-steps", "1", "--quiet"]


# --------------------------------------------------------------------------- the scene set


def test_generator_is_deterministic_and_seeded():
    a, b, c = make_scenes("train", 200, seed=3), make_scenes("train", 200, seed=3), make_scenes("train", 200, seed=4)
    assert np.array_equal(a.objects, b.objects) and a.captions == b.captions
    assert a.captions != c.captions
    assert torch.equal(a.images(range(10)), b.images(range(10)))
    # each split has its own scenes
    assert make_scenes("val", 50).captions != make_scenes("train", 50).captions


def test_held_out_combinations_never_appear_in_training():
    train, val = make_scenes("train", 3000), make_scenes("val", 500)
    test, seen = make_scenes("test", 500), make_scenes("test_seen", 500)
    for s in (train, val, seen):
        assert cd.held_out_pairs_in(s.objects) == 0
        for cap in s.captions:
            assert not any((o.colour, o.kind) in HELD_OUT for o in parse_caption(cap).objects)
    # every test scene holds a held-out pair; the split is compositional: every colour and kind is seen
    for cap in test.captions:
        assert any((o.colour, o.kind) in HELD_OUT for o in parse_caption(cap).objects)
    objs = [o for cap in train.captions for o in parse_caption(cap).objects]
    assert {o.colour for o in objs} == set(COLOURS) and {o.kind for o in objs} == set(KINDS)
    assert {o.size for o in objs} == {"small", "large"}
    assert len(HELD_OUT) == len(KINDS) and {k for _, k in HELD_OUT} == set(KINDS)
    # the digits' pictures of the test side are none of the training side's
    used = lambda s: {int(o[cd.IMAGE]) for sc in s.objects for o in sc if 0 <= o[cd.KIND] < 10}  # noqa: E731
    assert not used(train) & used(test) and not used(val) & used(seen)


def test_captions_describe_the_layout():
    s = make_scenes("train", 300)
    for objects, cap in zip(s.objects, s.captions):
        present = [o for o in objects if o[cd.KIND] >= 0]
        assert 2 <= len(present) <= 3
        cells = [(o[cd.ROW], o[cd.COL]) for o in present]
        assert cells == sorted(cells) and len(set(cells)) == len(cells)  # reading order, one per cell
        p = parse_caption(cap)
        for (a, b), rel in zip(zip(cells, cells[1:]), p.relations):
            assert rel == ("left of" if a[0] == b[0] else "above") and (a[0] == b[0] or a[1] == b[1])
    assert s.images(range(5)).shape == (5, 3, 48, 48)
    # the image shows each object in its colour: the pixels of a drawn object
    one = np.full((3, 8), -1)
    one[0] = (KINDS.index("square"), list(COLOURS).index("red"), 1, 1, 2, 0, 0, 0)
    img = cd.render(one)
    assert np.allclose(img[:, 16 + 5, 32 + 5], COLOURS["red"]) and img[:, :16].max() == 0


def test_parser_round_trip_and_partial_captions():
    for cap in make_scenes("test", 200).captions:
        p = parse_caption(cap)
        assert p.complete and caption_of(p.objects, p.relations) == cap
    p = parse_caption("a small red 3 left of a large blue square above a small green 7")
    assert p.objects == (SceneObject("small", "red", "3"), SceneObject("large", "blue", "square"),
                         SceneObject("small", "green", "7")) and p.relations == ("left of", "above")
    p = parse_caption("a small red 3 left of a huge blue square")
    assert not p.complete and p.objects == (SceneObject("small", "red", "3"),) and p.relations == ()
    assert parse_caption("") == cd.ParsedCaption((), (), False)
    assert not parse_caption("a small red 3 beside").complete


# --------------------------------------------------------------------------- metrics


def test_bleu_and_cider_on_hand_computed_cases():
    # one pair: p_n = 4/5, 3/4, 2/3, 1/2, no brevity penalty -> BLEU-4 = (4/5 3/4 2/3 1/2)^(1/4)
    s = bleu_cider(["a b c d f"], ["a b c d e"])
    assert s["bleu4"] == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25, abs=1e-6)
    assert bleu_cider(["a b c d e"], ["a b c d e"])["bleu4"] == pytest.approx(1.0, abs=1e-6)
    # CIDEr-D: two images, each caption equal to its reference and sharing no n-gram with the other:
    # cosine 1 for n = 1, 2; no 3- or 4-grams -> 10 (1 + 1 + 0 + 0) / 4 = 5
    assert bleu_cider(["a b", "c d"], ["a b", "c d"])["cider"] == pytest.approx(5.0)
    # a wrong caption sharing nothing scores 0
    assert bleu_cider(["a b", "c d"], ["x y", "c d"])["cider"] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="as many hypotheses"):
        bleu_cider(["a"], [])


def test_attribute_accuracy_by_hand():
    ref = ["a small red 3 left of a large blue square", "a large red 1 above a small cyan 2"]
    hyp = ["a small red 3 above a large green square", "a large red 1"]
    s = attribute_scores(ref, hyp)
    # objects: (ok, colour wrong), (ok, missing): size 2/4, colour 2/4, kind 3/4 -> size: 1, 1, 1, 0
    assert s["size"] == pytest.approx(3 / 4) and s["colour"] == pytest.approx(2 / 4)
    assert s["kind"] == pytest.approx(3 / 4) and s["object"] == pytest.approx(2 / 4)
    assert s["relation"] == pytest.approx(0.0) and s["count"] == pytest.approx(1 / 2)
    assert s["fully_correct"] == 0.0
    # ("red", "1") and ("cyan", "2") are held-out pairs: one named right, one missing
    assert ("red", "1") in HELD_OUT and ("cyan", "2") in HELD_OUT
    assert s["held_out_pair"] == pytest.approx(1 / 2)
    assert attribute_scores(ref, ref)["fully_correct"] == 1.0


# --------------------------------------------------------------------------- the model


def tiny_model(**kw):
    return CaptionModel(CaptionConfig(vocab_size=29, max_len=18, channels=4, feature_size=8, embed_size=8,
                                      hidden_size=16, attention_size=8, **kw))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_attention_is_a_distribution_and_the_anchor_is_uniform(cell):
    torch.manual_seed(0)
    s = make_scenes("val", 3)
    images = s.images(range(3))
    ids = torch.tensor([Vocabulary.scenes().encode(c, 18) for c in s.captions])
    m = tiny_model(cell=cell)
    logits, alphas = m(images, ids[:, :-1])
    assert logits.shape == (3, 17, 29) and alphas.shape == (3, 17, 36)  # L = 6 x 6
    assert torch.allclose(alphas.sum(-1), torch.ones(3, 17), atol=1e-6) and (alphas >= 0).all()
    assert alphas.std() > 0  # not uniform
    out, al = m.generate(images)
    alive = torch.cat([torch.ones(3, 1, dtype=torch.bool), (out[:, :-1] != 2).cumprod(1).bool()], 1)
    assert torch.allclose(al.sum(-1)[alive], torch.ones(int(alive.sum())), atol=1e-6)
    assert not ({0, 1, 3} & set(out[alive].tolist()))  # <pad>, <bos>, <unk> never generated
    flat = tiny_model(cell=cell, attention=False)
    _, alphas = flat(images, ids[:, :-1])
    assert torch.allclose(alphas, torch.full_like(alphas, 1 / 36))


def test_the_stacked_lstm_step_is_the_layers_own_step():
    """The decoder's LSTM step with the four gates in one product (``stacked_gates``) computes
    what LSTMLayer.reference computes: the loss, every gradient and the greedy captions."""
    torch.manual_seed(0)
    s = make_scenes("val", 4)
    images = s.images(range(4)).double()
    ids = torch.tensor([Vocabulary.scenes().encode(c, 18) for c in s.captions])
    m = tiny_model().double()
    assert m.stacked_gates()[0].shape == (4 * m.config.hidden_size, m.config.embed_size + m.config.annotation_size)
    results = []
    for stacked in (True, False):
        if not stacked:
            m.stacked_gates = lambda: None  # the layer's own step
        loss, _ = m.loss((images, ids))
        results.append((loss, torch.autograd.grad(loss, list(m.parameters())), m.generate(images)))
    (l1, g1, (y1, a1)), (l2, g2, (y2, a2)) = results
    assert torch.allclose(l1, l2, rtol=0, atol=1e-12)
    assert all(torch.allclose(x, y, rtol=0, atol=1e-12) for x, y in zip(g1, g2))
    assert torch.equal(y1, y2) and torch.allclose(a1, a2, rtol=0, atol=1e-12)
    assert tiny_model(cell="gru").stacked_gates() is None


def test_the_factored_encoder_sees_shape_and_colour_apart():
    """Recolouring a scene changes only the colour part of each a_i (the convolutions read the
    ink max_c x_c), and the colour part is the brightest value of each channel under the cell."""
    torch.manual_seed(0)
    m = tiny_model()
    objs = make_scenes("val", 1).objects[0].copy()
    recoloured = objs.copy()
    recoloured[:, cd.COLOUR] = np.where(objs[:, cd.KIND] >= 0, (objs[:, cd.COLOUR] + 1) % 6, -1)
    x = torch.from_numpy(np.stack([cd.render(objs), cd.render(recoloured)]))
    a = m.annotations(x)  # (2, 36, 8 + 2 + 3)
    assert a.shape == (2, 36, 13)
    assert torch.allclose(a[0, :, :10], a[1, :, :10], atol=1e-6) and not torch.allclose(a[0, :, 10:], a[1, :, 10:])
    assert torch.allclose(a[0, :, 10:].reshape(6, 6, 3), torch.nn.functional.max_pool2d(x[:1], 8)[0].permute(1, 2, 0))
    joint = tiny_model(encoder="joint")
    assert joint.annotations(x).shape == (2, 36, 10)


def test_model_checks_its_inputs():
    m = tiny_model()
    with pytest.raises(ValueError, match=r"RGB images of shape \(B, 3, 48, 48\).*\(2, 1, 48, 48\)"):
        m.generate(torch.zeros(2, 1, 48, 48))
    with pytest.raises(ValueError, match="4-D tensor"):
        m.generate(torch.zeros(3, 48, 48))
    with pytest.raises(ValueError, match="one row per image"):
        m(torch.zeros(2, 3, 48, 48), torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="cell"):
        CaptionConfig(cell="elman")


def test_the_model_learns_a_few_captions():
    """Overfitting 8 scenes: the per-word loss falls far below its start, and greedy decoding
    then reproduces most of the captions."""
    torch.manual_seed(0)
    s = make_scenes("train", 8)
    images = s.images(range(8))
    ids = torch.tensor([Vocabulary.scenes().encode(c, 18) for c in s.captions])
    m = CaptionModel(CaptionConfig(vocab_size=29, max_len=18, channels=8, feature_size=16, embed_size=16,
                                   hidden_size=48, attention_size=16))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        loss, _ = m.loss((images, ids))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 3.0 and loss.item() < 0.1
    out, _ = m.eval().generate(images)
    got = [Vocabulary.scenes().decode(r) for r in out.tolist()]
    assert sum(g == c for g, c in zip(got, s.captions)) >= 6


# --------------------------------------------------------------------------- the family


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("caption") / "run"
    assert main(["train", "caption", *TINY_FLAGS, "--scenes", "64", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def scene_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "scene.png"
    write_image(path, make_scenes("test", 1).images([0])[0])
    return path


def test_run_saves_its_vocabulary_and_reloads(tiny_run):
    model, run = seqlab.load(tiny_run)
    assert isinstance(model, CaptionModel) and run.tokenizer == Vocabulary.scenes()
    assert json.loads((tiny_run / "run.json").read_text())["data"]["kind"] == "caption-scenes"
    assert model.config.vocab_size == 29 and model.config.image_size == 48
    result = seqlab.evaluate(tiny_run, n=5)
    j = result.to_json()
    assert j["n"] == 5 and 0 <= j["bleu4"] <= 1 and "relation" in j and "held_out_pair" in j
    assert "BLEU-4" in result.table()


def test_the_default_training_data_is_a_stream_of_new_scenes():
    from seqlab.tasks.caption_family import CaptionData, Captions

    data = Captions(CaptionData())
    assert data.streaming and data.info()["scenes"] == 0
    a = data.get_batch("train", 200, torch.Generator().manual_seed(1))
    b = data.get_batch("train", 200, torch.Generator().manual_seed(1))
    c = data.get_batch("train", 200, torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # the step's generator decides the batch
    assert not torch.equal(a[1], c[1])
    assert a[0].shape == (200, 3, 48, 48) and a[1].shape == (200, data.max_len)
    # the stream holds no held-out pair either, and its captions are the images' captions
    caps = [data.vocab.decode(row.tolist()) for row in a[1]]
    assert not any((o.colour, o.kind) in HELD_OUT for cap in caps for o in parse_caption(cap).objects)
    fixed = Captions(CaptionData(scenes=50))
    assert not fixed.streaming and fixed.size("train") == 50


@pytest.mark.parametrize("scenes", [64, 0])  # a fixed set; the stream
def test_resume_is_exact(tmp_path, scenes):
    opts = {**TINY, "scenes": scenes}
    whole = seqlab.train("caption", out=tmp_path / "whole", progress=False, **opts)
    part = seqlab.train("caption", out=tmp_path / "part", progress=False, max_seconds=1e-9, **opts)
    assert part.steps < 4
    assert seqlab.resume(tmp_path / "part", progress=False).steps == 4
    a, _ = seqlab.load(tmp_path / "whole")
    b, _ = seqlab.load(tmp_path / "part")
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k
    assert whole.steps == 4


def test_caption_command(tiny_run, scene_png, tmp_path, capsys):
    assert main(["caption", str(tiny_run), str(scene_png), "--png", str(tmp_path / "att.png")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "wrote" in out[1] and (tmp_path / "att.png").stat().st_size > 1000
    assert main(["caption", str(tiny_run), str(scene_png), "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert len(j["alphas"]) == len(j["words"]) and len(j["alphas"][0]) == 6
    assert abs(sum(map(sum, j["alphas"][0])) - 1) < 1e-3


def test_caption_command_bad_inputs(tiny_run, scene_png, tmp_path, capsys):
    from PIL import Image

    good = tmp_path / "good.png"
    good.write_bytes(b"keep me")
    Image.new("RGB", (32, 32)).save(tmp_path / "small.png")
    Image.new("L", (48, 48)).save(tmp_path / "grey.png")
    Image.new("RGBA", (48, 48)).save(tmp_path / "alpha.png")
    (tmp_path / "text.png").write_text("not an image")
    cases = {
        "missing.png": "no such file",
        "small.png": "an image of 48 x 48 pixels",
        "grey.png": "an RGB image (mode 'RGB'",
        "alpha.png": "mode 'RGBA'",
        "text.png": "a readable image file",
    }
    for name, expected in cases.items():
        err = one_line_error(capsys, ["caption", str(tiny_run), str(tmp_path / name), "--png", str(good)])
        assert expected in err, err
    assert good.read_bytes() == b"keep me"  # nothing written over a good file
    err = one_line_error(capsys, ["caption", str(tiny_run), str(scene_png), "--png", str(tmp_path / "no" / "a.png")])
    assert "--png" in err
    err = one_line_error(capsys, ["caption", str(tmp_path / "norun"), str(scene_png)])
    assert "norun" in err
    gpt = tmp_path / "gpt"
    seqlab.train("gpt", out=gpt, progress=False, preset="cpu-tiny", max_steps=1, eval_every=1, eval_batches=1,
                 batch_size=2, warmup_steps=1)
    err = one_line_error(capsys, ["caption", str(gpt), str(scene_png)])
    assert "caption: expected a run of caption" in err and "'gpt' run" in err
    # Python: the same checks
    with pytest.raises(ValueError, match="48 x 48"):
        read_image(tmp_path / "small.png")
    model, run = seqlab.load(tiny_run)
    with pytest.raises(ValueError, match="mode 'L'"):
        seqlab.runs.get_family("caption").caption(model, run, tmp_path / "grey.png")


def test_train_bad_options(tmp_path, capsys):
    err = one_line_error(capsys, ["train", "caption", "--image-size", "32", "--out", str(tmp_path / "r")])
    assert "48 for the generated scene set" in err
    err = one_line_error(capsys, ["train", "caption", "--cell", "elman", "--out", str(tmp_path / "r")])
    assert "cell" in err
    err = one_line_error(capsys, ["eval", str(tmp_path / "missing")])
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- a folder of images


def make_folder(path, n=6, size=48):
    path.mkdir()
    s = make_scenes("val", n)
    lines = []
    for k in range(n):
        write_image(path / f"im{k}.png", s.images([k])[0])
        lines.append(f"im{k}.png\t{s.captions[k].upper() if k == 0 else s.captions[k]}")
    (path / "captions.tsv").write_text("\n".join(lines) + "\n")
    return s


def test_a_folder_of_images_trains_and_evaluates(tmp_path, capsys):
    s = make_folder(tmp_path / "imgs")
    data = cd.load_caption_folder(tmp_path / "imgs")
    assert data.images.shape == (6, 3, 48, 48) and data.captions[0] == s.captions[0]  # lowercased
    assert sorted(np.concatenate(list(data.split_index.values())).tolist()) == list(range(6))
    out = tmp_path / "run"
    assert main(["train", "caption", *TINY_FLAGS, "--images", str(tmp_path / "imgs"), "--out", str(out)]) == 0
    capsys.readouterr()
    model, run = seqlab.load(out)
    assert run.saved_data()["kind"] == "caption-folder" and len(run.tokenizer) == model.config.vocab_size
    j = seqlab.evaluate(out).to_json()
    assert j["split"] == "test" and j["n"] == 1 and "relation" not in j
    # a changed folder is refused on resume
    (tmp_path / "imgs" / "captions.tsv").write_text("im0.png\ta b\nim1.png\tc d\nim2.png\te f\n")
    with pytest.raises(ValueError, match="images or captions changed"):
        seqlab.resume(out, progress=False, max_steps=4)


def test_bad_folders(tmp_path, capsys):
    from PIL import Image

    def err_of(folder):
        return one_line_error(capsys, ["train", "caption", "--images", str(folder), "--out", str(tmp_path / "r")])

    assert "no such folder" in err_of(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    assert "(a file)" in err_of(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    assert "captions.tsv" in err_of(tmp_path / "empty")
    make_folder(tmp_path / "f", n=4)
    tsv = tmp_path / "f" / "captions.tsv"
    good = tsv.read_text()
    tsv.write_text(good + "im9.png\t  \n")
    assert "a non-empty caption" in err_of(tmp_path / "f")
    tsv.write_text(good + "no tab here\n")
    assert "filename<TAB>caption" in err_of(tmp_path / "f")
    tsv.write_text(good + "im9.png\ta cat\n")
    assert "im9.png" in err_of(tmp_path / "f") and "no such file" in err_of(tmp_path / "f")
    tsv.write_text("")
    assert "(empty)" in err_of(tmp_path / "f")
    tsv.write_text(good)
    Image.new("RGB", (40, 48)).save(tmp_path / "f" / "im1.png")
    assert "48 x 48 pixels" in err_of(tmp_path / "f") and "40 x 48" in err_of(tmp_path / "f")
    Image.new("L", (48, 48)).save(tmp_path / "f" / "im1.png")
    assert "mode 'L'" in err_of(tmp_path / "f")
    (tmp_path / "f" / "im1.png").write_bytes(b"\x89PNG broken")
    assert "a readable image file" in err_of(tmp_path / "f")
    tsv.write_bytes(b"\xff\xfe\x00bad")
    assert "UTF-8" in err_of(tmp_path / "f")
    assert not (tmp_path / "r").exists()
    make_folder(tmp_path / "two", n=2)
    with pytest.raises(ValueError, match="at least 3 images"):
        cd.load_caption_folder(tmp_path / "two")


# --------------------------------------------------------------------------- the tour


def test_tour_part_quick(tmp_path):
    from seqlab.tasks.caption_tour import caption as tour_part
    from seqlab.tour.context import TourContext
    from seqlab.viz.report import Report

    report = Report("t")
    ctx = TourContext(out=tmp_path, quick=True, progress=False, report=report)
    sec = report.section("Applications")
    line = tour_part(ctx, sec)
    assert line.startswith("caption: held-out scenes fully correct")
    kinds = sec.kinds()
    assert "table" in kinds and "equation" in kinds and "figure" in kinds
    assert (tmp_path / "caption-attention.png").stat().st_size > 1000
    assert (tmp_path / "runs" / "caption" / "run.json").is_file()
