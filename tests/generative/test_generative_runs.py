"""Runs of the generative models through the trainer, the command line (train, sample, eval),
the evaluation protocol (Frechet distance, coverage, confidence) and their bad-input paths."""

import json

import numpy as np
import pytest
import torch

from seqlab.cli import main
from seqlab.data.images import load_image_folder, load_images
from seqlab.generative import evaluate as ev
from seqlab.generative import runs

TINY = {"max_steps": 6, "eval_every": 3, "eval_batches": 1, "batch_size": 16}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def small_classifier(monkeypatch):
    """The reference classifier with 2 epochs instead of 15 (the protocol is the same)."""
    original = ev.reference_classifier
    monkeypatch.setattr(ev, "reference_classifier", lambda data, **kw: original(data, epochs=2, **kw))


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    b = rng.normal(size=(4000, 3)) * 2.0 + 1.0
    # Gaussians N(0, I) and N(1, 4 I): FD = 3 * 1^2 + Tr(I + 4 I - 2 * 2 I) = 3 + 3 = 6
    assert abs(ev.frechet_distance(a, b) - 6.0) < 0.4
    assert ev.frechet_distance(a, a) < 1e-6
    with pytest.raises(ValueError, match="features: expected two 2-D arrays"):
        ev.frechet_distance(a, b[:, :2])


@pytest.mark.parametrize("family", runs.FAMILIES)
def test_train_sample_eval_each_family(family, tmp_path, small_classifier):
    result, run = runs.start_run(family, out=tmp_path / family, progress=False, train_options=TINY)
    assert result.steps == 6
    assert (run / "samples" / "step-00000003.png").exists() and (run / "samples" / "step-00000006.png").exists()
    model, ckpt = runs.load_model(run)
    assert ckpt.family == family
    x = runs.sample_run(run, n=5, seed=1, png=tmp_path / "g.png")
    assert x.shape == (5, 1, 8, 8) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.equal(x, runs.sample_run(run, n=5, seed=1))  # the seed fixes the samples
    out = runs.evaluate_run(run, n=30)
    assert out.n == 30 and out.classes == 10 and 0 <= out.confident <= 1 and out.frechet >= 0
    assert out.floor > 0 and out.real_coverage >= 8


def test_resume_is_exact(tmp_path, monkeypatch):
    from seqlab.generative.vae import VAE

    opts = dict(train_options={**TINY, "max_steps": 8, "eval_every": 4})
    full, _ = runs.start_run("vae", out=tmp_path / "full", progress=False, **opts)
    original = VAE.loss
    calls = {"n": 0}

    def interrupted(self, *a, **kw):
        if self.training:
            calls["n"] += 1
            if calls["n"] == 6:
                raise KeyboardInterrupt
        return original(self, *a, **kw)

    monkeypatch.setattr(VAE, "loss", interrupted)
    part, run = runs.start_run("vae", out=tmp_path / "part", progress=False, **opts)
    assert part.stopped == "interrupted" and part.steps == 5
    monkeypatch.setattr(VAE, "loss", original)
    rest, _ = runs.resume_run(run, progress=False)
    a, _ = runs.load_model(tmp_path / "full" / "checkpoints" / "step-00000008")
    b, _ = runs.load_model(run / "checkpoints" / "step-00000008")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_cli_train_sample_eval(tmp_path, capsys, small_classifier):
    run = tmp_path / "diff"
    assert main(["train", "diffusion", "--timesteps", "20", "--max-steps", "4", "--eval-every", "2",
                 "--batch-size", "8", "--out", str(run), "--quiet"]) == 0
    assert "seqlab eval" in capsys.readouterr().out
    png = tmp_path / "grid.png"
    assert main(["sample", str(run), "--n", "6", "--method", "ddim", "--steps", "5", "--png", str(png)]) == 0
    assert png.exists() and "6 diffusion samples" in capsys.readouterr().out
    assert main(["eval", str(run), "--n", "20", "--method", "ddim", "--steps", "5", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["n"] == 20 and "floor" in payload and len(payload["classifier"]["sha256"]) == 64
    assert main(["eval", str(run), "--n", "20", "--method", "ddim", "--steps", "5"]) == 0
    assert "real data (floor)" in capsys.readouterr().out

    def err(argv):
        assert main(argv) == 2
        return capsys.readouterr().err

    assert "steps: expected an integer in [1, 20]" in err(["sample", str(run), "--method", "ddim", "--steps", "50"])
    assert "expected a run directory (holding run.json) or a checkpoint directory" in err(["eval", str(tmp_path / "nothing")])
    assert "--timesteps: expected only with gan, vae or diffusion" in err(["train", "lstm", "--timesteps", "5"])
    assert "vae: expected only the options" in err(["train", "vae", "--timesteps", "5", "--out", str(tmp_path / "v")])
    assert "latent_size: expected an integer >= 1, received 0" in err(
        ["train", "vae", "--latent-size", "0", "--out", str(tmp_path / "v0")])
    assert "timesteps: expected an integer >= 1, received 0" in err(
        ["train", "diffusion", "--timesteps", "0", "--out", str(tmp_path / "d0")])
    assert "expected only with a text model" in err(["sample", str(run), "--prompt", "x"])


def test_checkpoint_of_another_family_is_refused(tmp_path, capsys):
    from seqlab.energy import rbm_runs

    rbm = tmp_path / "rbm"
    rbm_runs.start_rbm(out=rbm, progress=False, model_options={"hidden_size": 4},
                       train_options={"max_steps": 2, "eval_every": 2, "eval_batches": 1})
    with pytest.raises(ValueError, match=r"run: expected a gan, vae or diffusion run, received a 'rbm' run"):
        runs.load_model(rbm)
    with pytest.raises(ValueError, match=r"checkpoint family: expected 'vae', received 'rbm'"):
        runs.load_model(rbm, family="vae")
    assert main(["eval", str(rbm)]) == 2
    assert "expected a gan, vae or diffusion run" in capsys.readouterr().err
    gan, _ = runs.start_run("gan", out=tmp_path / "gan", progress=False, train_options=TINY)
    assert main(["sample", str(tmp_path / "gan"), "--method", "ddim"]) == 2
    assert "--method, --steps: expected only with a diffusion run, received a 'gan' run" in capsys.readouterr().err


def test_image_folder(tmp_path):
    from PIL import Image

    for label in ("cats", "dogs"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for k in range(6):
            arr = (np.random.default_rng(k).random((10, 12)) * 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / "imgs" / label / f"{k}.png")
    data = load_image_folder(str(tmp_path / "imgs"), size=8, channels=1)
    assert data.image_shape == (1, 8, 8) and sorted(set(torch.cat([data.split(s).y for s in
                                                                   ("train", "val", "test")]).tolist())) == [0, 1]
    rgb = load_image_folder(str(tmp_path / "imgs"), size=12, channels=3)
    assert rgb.images("train").shape[1:] == (3, 12, 12)
    result, run = runs.start_run("vae", images=str(tmp_path / "imgs"), image_size=8, out=tmp_path / "run",
                                 progress=False, train_options=TINY)
    assert runs.load_model(run)[0].config.image_size == 8
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"image files \(.png.*received none \(found: notes.txt\)"):
        load_image_folder(str(tmp_path / "text"))
    (tmp_path / "text" / "broken.png").write_text("not a png")
    with pytest.raises(ValueError, match="readable image files"):
        load_image_folder(str(tmp_path / "text"))
    with pytest.raises(ValueError, match="a folder of image files"):
        load_image_folder(str(tmp_path / "nowhere"))


def test_wrong_images_for_a_model_are_refused():
    from seqlab.generative.diffusion import Diffusion
    from seqlab.generative.gan import GAN
    from seqlab.generative.vae import VAE

    for model in (GAN(), VAE(), Diffusion(timesteps=10)):
        with pytest.raises(ValueError, match="images of 8x8 pixels, received 28x28"):
            model.loss(torch.rand(2, 1, 28, 28))
        with pytest.raises(ValueError, match=r"1 channel\(s\)"):
            model.loss(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="image_size, channels: expected nothing for 'digits'"):
        runs.load_data("digits", image_size=28)


def test_evaluation_refuses_bad_samples(small_classifier):
    data = load_images("digits", binary=False)
    with pytest.raises(ValueError, match=r"samples: expected between 2 and 179 images"):
        ev.evaluate_samples(torch.rand(500, 1, 8, 8), data)
    with pytest.raises(ValueError, match="samples: expected pixel values in"):
        ev.evaluate_samples(torch.rand(10, 1, 8, 8) * 2, data)


def test_cli_views_of_vae_and_diffusion(tmp_path, capsys):
    vae, _ = runs.start_run("vae", out=tmp_path / "vae", progress=False,
                            model_options={"latent_size": 2}, train_options=TINY)
    paths = {k: tmp_path / f"{k}.png" for k in ("map", "interp", "recon", "traj")}
    assert main(["sample", str(tmp_path / "vae"), "--n", "4", "--png", str(tmp_path / "s.png"),
                 "--latent-map", str(paths["map"]), "--interpolate", str(paths["interp"]),
                 "--reconstruct", str(paths["recon"])]) == 0
    assert all(paths[k].stat().st_size > 0 for k in ("map", "interp", "recon"))
    runs.start_run("diffusion", out=tmp_path / "diff", progress=False, model_options={"timesteps": 10},
                   train_options=TINY)
    assert main(["sample", str(tmp_path / "diff"), "--n", "4", "--png", str(tmp_path / "s.png"),
                 "--trajectory", str(paths["traj"])]) == 0
    assert paths["traj"].stat().st_size > 0
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "diff"), "--latent-map", str(paths["map"])]) == 2
    assert "--latent-map: expected --trajectory with a diffusion run" in capsys.readouterr().err


def test_the_classifier_trains_under_no_grad(small_classifier):
    """Evaluation is usually called while sampling under torch.no_grad(); the first call
    trains the reference classifier, which needs gradients."""
    data = load_images("digits", binary=False)
    with torch.no_grad():
        out = ev.evaluate_samples(data.images("train")[:50], data)
    assert out.classifier.test_accuracy > 0.5 and out.n == 50
