"""The three generative families (seqlab/generative/imagefamily.py and gan_family.py,
vae_family.py, diffusion_family.py) through the registry and the command line: train (with
--preset cpu-tiny), resume, load (a GAN its latest checkpoint, the others their best),
sample (and each family's own pictures), eval, --help, folders of images, seqlab 0.1's field
names, and the bad-input paths (one line, nothing written over good files)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import seqlab
from seqlab.cli import main
from seqlab.generative.diffusion import Diffusion, DiffusionConfig
from seqlab.generative.gan import GAN, GANConfig
from seqlab.generative.vae import VAE, VAEConfig
from seqlab.runs import get_family
from seqlab.testing import one_line_error, snapshot

FAMILIES = ("gan", "vae", "diffusion")
LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_runs"
TINY = {"max_steps": 6, "eval_every": 3, "eval_batches": 1, "batch_size": 16}
FLAGS = {"gan": [], "vae": ["--latent-size", "2"], "diffusion": ["--timesteps", "20"]}
# what --preset cpu-tiny (and the flags above) make of each family's config
TINY_CONFIG = {"gan": {"noise_size": 16, "hidden_size": 16, "d_hidden_size": None},
               "vae": {"hidden_size": 64, "depth": 1, "latent_size": 2},
               "diffusion": {"base_channels": 8, "channel_mults": (1, 2), "time_dim": 32, "timesteps": 20}}
SAMPLE_OPTIONS = {"gan": {"--n", "--seed", "--png"},
                  "vae": {"--n", "--seed", "--png", "--latent-map", "--interpolate", "--reconstruct"},
                  "diffusion": {"--n", "--seed", "--png", "--method", "--steps", "--trajectory"}}
EVAL_OPTIONS = {"gan": {"--n", "--seed", "--json", "--quiet"}, "vae": {"--n", "--seed", "--json", "--quiet"},
                "diffusion": {"--n", "--seed", "--method", "--steps", "--json", "--quiet"}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """One 6-step cpu-tiny run of each family, trained from the command line: family -> (run
    directory, what `seqlab train` printed)."""
    root = tmp_path_factory.mktemp("image-runs")
    out = {}
    for family in FAMILIES:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main(["train", family, "--preset", "cpu-tiny", "--max-steps", "6", "--eval-every", "3",
                         "--eval-batches", "1", "--batch-size", "16", "--out", str(root / family), "--quiet",
                         *FLAGS[family]]) == 0
        out[family] = (root / family, printed.getvalue())
    return out


def _help(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse's line wrapping undone


def usage_flags(capsys, argv) -> set[str]:
    """The options the usage line of ``argv --help`` lists (``[--n N]`` -> ``--n``)."""
    usage = _help(capsys, argv).split(" RUN_DIR ")[0]
    return {w.strip("[]") for w in usage.split() if w.startswith("[--")}


def image_folder(root: Path, per_class: int = 6, seed: int = 0) -> Path:
    """``root/cats/K.png`` and ``root/dogs/K.png``: grey 10x12 images of random pixels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label in ("cats", "dogs"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            Image.fromarray((rng.random((10, 12)) * 255).astype(np.uint8)).save(root / label / f"{k}.png")
    return root


# --------------------------------------------------------------------------- train, sample, evaluate


@pytest.mark.parametrize("family", FAMILIES)
def test_train_sample_eval_each_family(family, runs, tmp_path):
    run, printed = runs[family]
    assert printed.startswith(f"run {run}: ") and "6 steps" in printed and f"seqlab eval {run}" in printed
    assert (run / "samples" / "step-00000003.png").exists() and (run / "samples" / "step-00000006.png").exists()
    model, record = seqlab.load(run)
    assert record.family == family and record.dir == run and not model.training
    assert {k: getattr(record.config, k) for k in TINY_CONFIG[family]} == TINY_CONFIG[family]
    assert record.config.image_size == 8 and record.config.channels == 1  # from the digits
    out = seqlab.sample(run, n=5, seed=1, png=str(tmp_path / "g.png"))
    x = out.images
    assert x.shape == (5, 1, 8, 8) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert out.files == [tmp_path / "g.png"] and out.files[0].stat().st_size > 0
    again = seqlab.sample(run, n=5, seed=1, png=None)
    assert torch.equal(x, again.images) and again.files == []  # the seed fixes the samples
    ev = seqlab.evaluate(run, n=30)
    assert ev.n == 30 and ev.classes == 10 and 0 <= ev.confident <= 1 and ev.frechet >= 0 and ev.model == family
    assert ev.floor > 0 and ev.real_coverage >= 8


@pytest.mark.parametrize("family", FAMILIES)
def test_cli_eval_each_family(family, runs, capsys):
    run, _ = runs[family]
    assert main(["eval", str(run), "--n", "20", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["n"] == 20 and payload["model"] == family and "floor" in payload
    assert len(payload["classifier"]["sha256"]) == 64
    assert payload == seqlab.evaluate(run, n=20).to_json()  # the same seed: the same samples


def test_cli_diffusion_sample_eval_and_errors(runs, tmp_path, capsys, monkeypatch):
    run, _ = runs["diffusion"]
    png = tmp_path / "grid.png"
    assert main(["sample", str(run), "--n", "6", "--method", "ddim", "--steps", "5", "--png", str(png)]) == 0
    assert png.exists() and capsys.readouterr().out.startswith("6 diffusion samples")
    assert main(["eval", str(run), "--n", "20", "--method", "ddim", "--steps", "5", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["n"] == 20 and "floor" in payload and len(payload["classifier"]["sha256"]) == 64
    assert main(["eval", str(run), "--n", "20", "--method", "ddim", "--steps", "5"]) == 0
    assert "real data (floor)" in capsys.readouterr().out

    monkeypatch.chdir(tmp_path)
    good, written = snapshot(run), sorted(p.name for p in tmp_path.iterdir())
    assert "steps: expected an integer in [1, 20]" in one_line_error(
        capsys, ["sample", str(run), "--method", "ddim", "--steps", "50", "--png", str(png)])
    assert "method: expected one of 'ddpm', 'ddim', received 'fast'" in one_line_error(
        capsys, ["sample", str(run), "--method", "fast", "--png", str(png)])
    assert "expected a run directory (holding run.json) or a checkpoint directory" in one_line_error(
        capsys, ["eval", str(tmp_path / "nothing")])
    assert "--timesteps 5: expected options listed by seqlab train lstm --help" in one_line_error(
        capsys, ["train", "lstm", "--timesteps", "5", "--out", str(run)])
    assert "--timesteps 5: expected options listed by seqlab train vae --help" in one_line_error(
        capsys, ["train", "vae", "--timesteps", "5", "--out", str(run)])
    assert "latent_size: expected an integer >= 1, received 0" in one_line_error(
        capsys, ["train", "vae", "--latent-size", "0", "--out", str(run)])
    assert "timesteps: expected an integer >= 1, received 0" in one_line_error(
        capsys, ["train", "diffusion", "--timesteps", "0", "--out", str(run)])
    assert "--prompt x: expected options listed by seqlab sample RUN_DIR --help (a 'diffusion' run)" in \
        one_line_error(capsys, ["sample", str(run), "--prompt", "x"])

    def never(*args, **kwargs):
        raise AssertionError("sampled before refusing n")

    monkeypatch.setattr(Diffusion, "sample", never)  # n is refused before any sampling
    assert "n: expected an integer in [2, 179] (half the test split of digits), received 500" in one_line_error(
        capsys, ["eval", str(run), "--n", "500"])
    assert "n: expected an integer >= 2, received 1" in one_line_error(capsys, ["eval", str(run), "--n", "1"])
    assert snapshot(run) == good and sorted(p.name for p in tmp_path.iterdir()) == written


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_and_eval_help_list_exactly_the_family_s_options(family, runs, capsys):
    run, _ = runs[family]
    assert usage_flags(capsys, ["sample", str(run)]) == SAMPLE_OPTIONS[family]
    assert usage_flags(capsys, ["eval", str(run)]) == EVAL_OPTIONS[family]


@pytest.mark.parametrize("family", FAMILIES)
def test_png_none_writes_no_file(family, runs, tmp_path, capsys, monkeypatch):
    run, _ = runs[family]
    monkeypatch.chdir(tmp_path)
    assert main(["sample", str(run), "--n", "3", "--png", "none"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"3 {family} samples, mean pixel") and "wrote" not in out
    assert list(tmp_path.iterdir()) == []
    assert main(["sample", str(run), "--n", "3"]) == 0  # the default: samples.png here
    assert capsys.readouterr().out.strip().endswith("; wrote samples.png") and (tmp_path / "samples.png").exists()


@pytest.mark.parametrize("family, verb, flags", [
    ("gan", "sample", ["--method", "ddim"]),
    ("gan", "sample", ["--steps", "5"]),
    ("gan", "sample", ["--latent-map", "m.png"]),
    ("gan", "sample", ["--trajectory", "t.png"]),
    ("gan", "sample", ["--prompt", "x"]),
    ("vae", "sample", ["--trajectory", "t.png"]),
    ("vae", "sample", ["--method", "ddim"]),
    ("diffusion", "sample", ["--latent-map", "m.png"]),
    ("diffusion", "sample", ["--interpolate", "i.png"]),
    ("diffusion", "sample", ["--reconstruct", "r.png"]),
    ("gan", "eval", ["--method", "ddim"]),
    ("vae", "eval", ["--png", "x.png"]),
])
def test_options_of_another_family_are_refused(family, verb, flags, runs, tmp_path, capsys, monkeypatch):
    run, _ = runs[family]
    monkeypatch.chdir(tmp_path)
    err = one_line_error(capsys, [verb, str(run), "--n", "3", *flags])
    assert f"{' '.join(flags)}: expected options listed by seqlab {verb} RUN_DIR --help (a {family!r} run)" in err
    assert list(tmp_path.iterdir()) == []  # no samples.png, no picture
    name = flags[0][2:].replace("-", "_")
    with pytest.raises(ValueError, match=f"{family} {verb}: expected options among .*, received unknown {name}"):
        (seqlab.sample if verb == "sample" else seqlab.evaluate)(run, **{name: flags[1]})


def test_a_text_run_has_no_image_options(tmp_path, capsys):
    assert "eval: expected a run of a family with an evaluation" in one_line_error(
        capsys, ["eval", str(LEGACY / "lstm"), "--n", "5"])
    assert "--png x.png: expected options listed by seqlab sample RUN_DIR --help (a 'charlm' run)" in \
        one_line_error(capsys, ["sample", str(LEGACY / "lstm"), "--png", "x.png"])


def test_views_of_vae_and_diffusion(runs, tmp_path, capsys):
    paths = {k: tmp_path / f"{k}.png" for k in ("map", "interp", "recon", "traj")}
    vae, _ = runs["vae"]
    assert main(["sample", str(vae), "--n", "4", "--png", str(tmp_path / "s.png"),
                 "--latent-map", str(paths["map"]), "--interpolate", str(paths["interp"]),
                 "--reconstruct", str(paths["recon"])]) == 0
    assert all(paths[k].stat().st_size > 0 for k in ("map", "interp", "recon"))
    assert capsys.readouterr().out.strip().endswith(
        f"wrote {tmp_path / 's.png'}, {paths['map']}, {paths['interp']}, {paths['recon']}")
    diffusion, _ = runs["diffusion"]
    assert main(["sample", str(diffusion), "--n", "4", "--png", str(tmp_path / "s.png"),
                 "--trajectory", str(paths["traj"])]) == 0
    assert paths["traj"].stat().st_size > 0
    out = seqlab.sample(vae, n=2, png=None, reconstruct=str(tmp_path / "r2.png"))
    assert out.files == [tmp_path / "r2.png"] and out.images.shape == (2, 1, 8, 8)


# --------------------------------------------------------------------------- the families


def test_the_families():
    gan, vae, diffusion = (get_family(f) for f in FAMILIES)
    assert gan.checkpoint == "latest" and vae.checkpoint == diffusion.checkpoint == "best"
    for family in (gan, vae, diffusion):
        assert family.commands() == {family.name: {}} and family.data_fields == ("channels", "image_size")
        assert family.data_options() == ("images", "image_size", "channels")
        assert "cpu-tiny" in family.presets and family.default_preset == "cpu-small"
    # DCGAN's Adam settings
    assert {k: gan.train_defaults[k] for k in ("max_steps", "lr", "beta1", "schedule")} == {
        "max_steps": 4000, "lr": 2e-4, "beta1": 0.5, "schedule": "constant"}
    assert gan.model_options() == ("noise_size", "hidden_size", "d_hidden_size", "loss", "d_steps", "d_lr_scale",
                                   "g_lr_scale")
    assert diffusion.sampler_kwargs(diffusion.sample_class(method="ddim", steps=5)) == {"method": "ddim", "steps": 5}
    assert diffusion.sampler_kwargs(diffusion.sample_class()) == {"method": "ddpm"}
    assert gan.sampler_kwargs(gan.sample_class()) == {} == vae.sampler_kwargs(vae.sample_class())


def test_train_gan_help(capsys):
    out = _help(capsys, ["train", "gan"])
    for line in ("--noise-size NOISE_SIZE Z, units of the noise z ~ N(0, I) (default: 32)",
                 "--hidden-size HIDDEN_SIZE g, channels of the generator's last hidden layer (2g before it) "
                 "(default: 32)",
                 "--d-hidden-size D_HIDDEN_SIZE d, channels of the discriminator's first layer (2d after it); None: "
                 "the same as hidden_size (default: none)",
                 '--loss LOSS the generator\'s loss, "non-saturating" (default) or "minimax"',
                 "--max-steps MAX_STEPS number of optimizer steps of the whole run (default: 4000)",
                 "--lr LR peak learning rate, reached at the end of the warmup (default: 0.0002)",
                 "--beta1 BETA1 AdamW's moving-average coefficients (default: 0.5)",
                 "--schedule SCHEDULE", "(default: constant)", "--preset {cpu-tiny,cpu-small}",
                 "(default: cpu-small)"):
        assert line in out, line
    for absent in ("--g-width", "--d-width", "--gan-loss", "--timesteps", "--latent-size", "--channels CHANNELS "
                   "C,", "--image-size IMAGE_SIZE image height"):
        assert absent not in out, absent
    assert "--beta-schedule" in _help(capsys, ["train", "diffusion"])
    assert "--latent-size LATENT_SIZE" in _help(capsys, ["train", "vae"])


def test_renamed_flags_are_refused(tmp_path, capsys):
    for flag in ("--g-width", "--d-width", "--gan-loss"):
        err = one_line_error(capsys, ["train", "gan", flag, "4", "--out", str(tmp_path / "gan")])
        assert f"{flag} 4: expected options listed by seqlab train gan --help" in err
    assert not (tmp_path / "gan").exists()


def test_a_gan_loads_its_latest_checkpoint(runs, tmp_path):
    for family in FAMILIES:
        run = tmp_path / family
        shutil.copytree(runs[family][0], run)
        assert (run / "checkpoints" / "step-00000003").is_dir() and (run / "checkpoints" / "step-00000006").is_dir()
        # the best checkpoint an earlier one than the latest
        (run / "checkpoints" / "best.json").write_text(json.dumps({"step": 3, "path": "step-00000003",
                                                                   "val_loss": 0.0}))
        model, record = seqlab.load(run)
        assert record.step == (6 if family == "gan" else 3), family
        assert record.checkpoint == run / "checkpoints" / f"step-0000000{record.step}"
        assert seqlab.load(run / "checkpoints" / "step-00000003")[1].step == 3  # a checkpoint named is taken
    gan = tmp_path / "gan"
    assert torch.equal(seqlab.sample(gan, n=4, png=None).images,
                       seqlab.sample(gan / "checkpoints" / "step-00000006", n=4, png=None).images)


def test_resume_is_exact(tmp_path, monkeypatch):
    opts = {**TINY, "max_steps": 8, "eval_every": 4}
    seqlab.train("vae", out=tmp_path / "full", progress=False, **opts)
    original = VAE.loss
    calls = {"n": 0}

    def interrupted(self, *a, **kw):
        if self.training:
            calls["n"] += 1
            if calls["n"] == 6:
                raise KeyboardInterrupt
        return original(self, *a, **kw)

    monkeypatch.setattr(VAE, "loss", interrupted)
    part = seqlab.train("vae", out=tmp_path / "part", progress=False, **opts)
    assert part.stopped == "interrupted" and part.steps == 5
    monkeypatch.setattr(VAE, "loss", original)
    rest = seqlab.resume(part.run_dir, progress=False)
    assert rest.steps == 8
    a, _ = seqlab.load(tmp_path / "full" / "checkpoints" / "step-00000008")
    b, _ = seqlab.load(part.run_dir / "checkpoints" / "step-00000008")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_wrong_images_for_a_model_are_refused(tmp_path):
    for model in (GAN(), VAE(), Diffusion(timesteps=10)):
        with pytest.raises(ValueError, match="images of 8x8 pixels, received 28x28"):
            model.loss(torch.rand(2, 1, 28, 28))
        with pytest.raises(ValueError, match=r"1 channel\(s\)"):
            model.loss(torch.rand(2, 3, 8, 8))
    # a named set has its own size (load_image_data: tests/data/test_images_data.py)
    with pytest.raises(ValueError, match="image_size, channels: expected nothing for 'digits'"):
        seqlab.train("vae", out=tmp_path / "v", progress=False, image_size=28, max_steps=1)
    assert not (tmp_path / "v").exists()


def test_a_run_on_a_folder_of_images(tmp_path, capsys):
    folder = image_folder(tmp_path / "imgs", per_class=10)
    result = seqlab.train("vae", images=str(folder), image_size=8, channels=3, out=tmp_path / "run",
                          progress=False, preset="cpu-tiny", max_seconds=1e-9, **TINY)  # stops after step 1
    assert result.steps == 1
    model, record = seqlab.load(result.run_dir)
    assert record.config.image_size == 8 and record.config.channels == 3
    assert record.data["source"] == str(folder) and record.data["side"] == 8 and record.data["channels"] == 3
    assert seqlab.sample(result.run_dir, n=2, png=None).images.shape == (2, 3, 8, 8)
    # re-read with its side and channels: evaluated (against the folder's test split) and resumed
    ev = seqlab.evaluate(result.run_dir)
    assert ev.n == 2 and ev.classes == 2
    assert seqlab.resume(result.run_dir, progress=False).steps == 6
    # images changed since: refused in one line, nothing written over the run
    from PIL import Image

    Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(folder / "cats" / "0.png")
    good = snapshot(result.run_dir)
    err = one_line_error(capsys, ["train", "--resume", str(result.run_dir), "--quiet"])
    assert "images: expected the images the run was trained on (sha256 " in err and "received different images" in err
    assert "expected the images the run was trained on" in one_line_error(capsys, ["eval", str(result.run_dir)])
    assert snapshot(result.run_dir) == good


# --------------------------------------------------------------------------- seqlab 0.1


@pytest.mark.parametrize("family, renamed, config_class", [
    ("gan", {"g_width": "hidden_size", "d_width": "d_hidden_size"}, GANConfig),
    ("vae", {"hidden": "hidden_size"}, VAEConfig),
    ("diffusion", {"schedule": "beta_schedule"}, DiffusionConfig),
])
def test_seqlab_0_1_field_names_are_upgraded(family, renamed, config_class):
    from seqlab.training.checkpoint import load_checkpoint

    fam = get_family(family)
    assert dict(fam.legacy_fields) == renamed and not fam.legacy_weights
    old = json.loads((LEGACY / family / "run.json").read_text())["model_config"]
    assert set(renamed) <= set(old) and not set(renamed.values()) & set(old)
    new = fam.upgrade_config(old)
    assert new == {renamed.get(k, k): v for k, v in old.items()} and set(renamed) <= set(old)  # input unchanged
    assert fam.upgrade_config(new) == new  # today's names pass unchanged
    config = config_class.from_dict(new)
    assert all(getattr(config, renamed[k]) == (tuple(v) if isinstance(v, list) else v) for k, v in old.items()
               if k in renamed)
    # a checkpoint: its config upgraded, its weights (unrenamed) fit the model
    ckpt = load_checkpoint(LEGACY / family / "checkpoints" / "step-00000002", family=family)
    keys = set(ckpt.state_dict)
    up = fam.upgrade_checkpoint(ckpt)
    assert up.config == new
    assert set(up.state_dict) == keys == set(fam.build(config_class.from_dict(up.config)).state_dict())


def test_a_seqlab_0_1_gan_resumes_under_today_s_flags(tmp_path, capsys):
    run = tmp_path / "gan"
    shutil.copytree(LEGACY / "gan", run)
    good = {k: v for k, v in snapshot(run).items() if k != "run.json"}
    err = one_line_error(capsys, ["train", "--resume", str(run), "--hidden-size", "5", "--quiet"])
    assert "model_config.hidden_size: saved 4, new 5" in err
    assert {k: v for k, v in snapshot(run).items() if k != "run.json"} == good  # nothing written but the names
    assert main(["train", "--resume", str(run), "--hidden-size", "4", "--d-hidden-size", "4", "--quiet"]) == 0
    assert "4 steps" in capsys.readouterr().out
    saved = json.loads((run / "run.json").read_text())["model_config"]
    assert saved["hidden_size"] == saved["d_hidden_size"] == 4 and "g_width" not in saved and "d_width" not in saved
