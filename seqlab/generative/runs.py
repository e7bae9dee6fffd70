"""Runs of the generative models (used by the command line, the tour and the benchmark):
images -> GAN / VAE / Diffusion -> the generic trainer, sample grids during training, loading,
sampling and the evaluation protocol of ``seqlab.generative.evaluate``.

Checkpoints have family "gan", "vae" or "diffusion"; run.json names the image set (or folder)
and its split, so a run can be resumed and evaluated without repeating the options.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

import torch

from seqlab.data.images import ImageData, load_image_folder, load_images
from seqlab.training.checkpoint import Checkpoint, load_checkpoint, load_weights
from seqlab.training.config import TrainConfig
from seqlab.training.loop import TrainResult, train
from seqlab.training.rundir import (default_run_dir, find_run_dir, latest_checkpoint, read_run, resolve_checkpoint,
                                   run_family)
from seqlab.validation import check_choice, check_int, fail

FAMILIES = ("gan", "vae", "diffusion")
# What `seqlab train FAMILY` does with no options (on the 8x8 digits, a few minutes on 2 cores)
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    # DCGAN's Adam settings (lr 2e-4, beta1 0.5), constant learning rate
    "gan": dict(max_steps=4000, batch_size=64, lr=2e-4, beta1=0.5, beta2=0.999, schedule="constant",
                warmup_steps=0, weight_decay=0.0, clip_norm=None, eval_every=500, eval_batches=10, log_every=50),
    "vae": dict(max_steps=4000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.0,
                clip_norm=5.0, eval_every=500, eval_batches=10, log_every=50),
    "diffusion": dict(max_steps=6000, batch_size=64, lr=2e-3, min_lr=1e-4, warmup_steps=200, weight_decay=0.0,
                      clip_norm=1.0, eval_every=500, eval_batches=10, log_every=50),
}
GRID = 64  # images in the sample grid written at every evaluation


def _family(name: str):
    """(model class, config class) of a family (imported on first use)."""
    check_choice(name, "model", FAMILIES)
    if name == "gan":
        from seqlab.generative.gan import GAN, GANConfig

        return GAN, GANConfig
    if name == "vae":
        from seqlab.generative.vae import VAE, VAEConfig

        return VAE, VAEConfig
    from seqlab.generative.diffusion import Diffusion, DiffusionConfig

    return Diffusion, DiffusionConfig


def model_fields(family: str) -> set[str]:
    """The model options a family accepts (channels and image_size come from the data)."""
    return {f.name for f in fields(_family(family)[1])} - {"channels", "image_size"}


def load_data(images: str = "digits", *, image_size: int | None = None, channels: int | None = None,
              seed: int = 0) -> ImageData:
    """"digits" (8x8, the default), "fashion-mnist" (28x28), or a folder of images (resized
    to ``image_size``, default 28, with ``channels`` 1 or 3, default 1); pixels in [0, 1]."""
    if images in ("digits", "fashion-mnist"):
        if image_size is not None or channels is not None:
            fail("image_size, channels", f"nothing for {images!r} (only for a folder of images)",
                 f"image_size={image_size}, channels={channels}")
        return load_images(images, binary=False, seed=seed)
    return load_image_folder(images, size=28 if image_size is None else image_size,
                             channels=1 if channels is None else channels, seed=seed)


def _data_info(images: str, data: ImageData) -> dict:
    source = images if images in ("digits", "fashion-mnist") else str(Path(images).expanduser().resolve())
    return {"source": source, **data.info()}


def _saved_data(saved: dict) -> ImageData:
    d = saved.get("data") or {}
    source = d.get("source", "digits")
    folder = source not in ("digits", "fashion-mnist")
    data = load_data(source, image_size=d.get("side") if folder else None,
                     channels=d.get("channels") if folder else None, seed=d.get("split_seed", 0))
    if d.get("sha256") not in (None, data.sha256):
        fail("images", "the images the run was trained on (sha256 " + str(d.get("sha256"))[:12] + "...)",
             f"different images (sha256 {data.sha256[:12]}...)")
    return data


def build_run(family: str, *, images: str = "digits", image_size: int | None = None, channels: int | None = None,
              model_options: Mapping[str, Any] | None = None, train_options: Mapping[str, Any] | None = None):
    """(model, data, TrainConfig, data_info) for a new run; nothing is written."""
    Model, Config = _family(family)
    model_options = dict(model_options or {})
    unknown = set(model_options) - model_fields(family)
    if unknown:
        fail("model options", f"names among {sorted(model_fields(family))} for {family}", sorted(unknown))
    cfg = TrainConfig.from_dict({**TRAIN_DEFAULTS[family], **dict(train_options or {})})
    data = load_data(images, image_size=image_size, channels=channels)
    config = Config(channels=data.channels, image_size=data.side, **model_options)
    torch.manual_seed(cfg.seed)  # the initial weights depend on the run's seed only
    return Model(config), data, cfg, _data_info(images, data)


def _grid_writer(model, run_dir: Path, data: ImageData):
    from seqlab.viz.plots import plot_image_grid

    (run_dir / "samples").mkdir(parents=True, exist_ok=True)

    def write(step: int) -> None:
        # a generator of its own: the training run's random numbers are not touched
        gen = torch.Generator(device=next(model.parameters()).device).manual_seed(0)
        kwargs = {}
        if hasattr(model.config, "timesteps"):  # diffusion: DDIM with 50 steps keeps the grids cheap
            kwargs = {"method": "ddim", "steps": min(50, model.config.timesteps)}
        x = model.sample(GRID, generator=gen, **kwargs)
        plot_image_grid(_flat(x, data), run_dir / "samples" / f"step-{step:08d}.png", side=data.side, cols=8,
                        title=f"{type(model).__name__} samples at step {step}")

    return write


def _flat(x: torch.Tensor, data: ImageData) -> torch.Tensor:
    """(n, C, H, W) -> (n, H W) for the grid plots (the first channel of a colour image)."""
    return x[:, 0].reshape(x.shape[0], -1).detach().cpu()


def start_run(family: str, *, out: str | os.PathLike | None = None, progress: bool = True,
              **options) -> tuple[TrainResult, Path]:
    """Train a new model of ``family``; a grid of samples is written at every evaluation into
    RUN_DIR/samples/. Returns the result and the run directory."""
    model, data, cfg, info = build_run(family, **options)
    run_dir = Path(out) if out is not None else default_run_dir(family)
    result = train(model, data.as_images(), cfg, run_dir, family=family, model_config=model.config.to_dict(),
                   progress=progress, data_info=info, on_eval=_grid_writer(model, run_dir, data))
    return result, run_dir


def resume_run(run_dir: str | os.PathLike, *, progress: bool = True, model_options: Mapping[str, Any] | None = None,
               train_options: Mapping[str, Any] | None = None) -> tuple[TrainResult, Path]:
    """Continue a run where it stopped, on the images named in its run.json."""
    run_dir = Path(run_dir)
    saved = read_run(run_dir, FAMILIES)
    family = saved["family"]
    Model, Config = _family(family)
    data = _saved_data(saved)
    model = Model(Config.from_dict(saved["model_config"]))
    requested = {**saved["model_config"], **dict(model_options or {})}
    saved_train = {k: v for k, v in saved["train_config"].items() if k != "max_seconds"}
    cfg = TrainConfig.from_dict({**saved_train, **dict(train_options or {})})
    info = {"source": (saved.get("data") or {}).get("source", "digits"), **data.info()}
    result = train(model, data.as_images(), cfg, run_dir, family=family, model_config=requested, resume=True,
                   progress=progress, data_info=info, on_eval=_grid_writer(model, run_dir, data))
    return result, run_dir


def load_model(path: str | os.PathLike, family: str | None = None, map_location: str = "cpu"):
    """(model in eval mode, checkpoint) of a gan, vae or diffusion run (its best checkpoint,
    else the latest; for a GAN always the latest) or checkpoint directory; another family is
    a ValueError naming both."""
    family = run_family(path) if family is None else family
    if family not in FAMILIES:
        fail("run", "a gan, vae or diffusion run", f"a {family!r} run")
    where = resolve_checkpoint(path)
    if family == "gan" and (Path(path) / "run.json").exists():
        # a GAN's validation loss (the discriminator's) does not rank its samples: the latest
        where = latest_checkpoint(path) or where
    ckpt: Checkpoint = load_checkpoint(where, family=family, map_location=map_location)
    Model, Config = _family(family)
    model = Model(Config.from_dict(ckpt.config))
    load_weights(model, ckpt)
    model.to(map_location).eval()
    return model, ckpt


def run_data(path: str | os.PathLike) -> ImageData:
    """The image set (and split) a run was trained on."""
    run_dir = find_run_dir(path)
    return _saved_data(read_run(run_dir, FAMILIES))


def sample_kwargs(family: str, method: str | None, steps: int | None) -> dict:
    """Sampler options: only the diffusion model has them (ddpm or ddim, DDIM steps)."""
    if family != "diffusion":
        if method is not None or steps is not None:
            fail("--method, --steps", "only with a diffusion run", f"a {family!r} run")
        return {}
    out: dict[str, Any] = {"method": method or "ddpm"}
    if steps is not None:
        out["steps"] = steps
    return out


@torch.no_grad()
def sample_run(path: str | os.PathLike, *, n: int = 64, seed: int = 0, method: str | None = None,
               steps: int | None = None, png: str | os.PathLike | None = None) -> torch.Tensor:
    """``n`` samples (n, C, H, W) in [0, 1] of a trained model; optionally a PNG grid."""
    check_int(n, "n", minimum=1)
    model, ckpt = load_model(path)
    x = model.sample(n, generator=torch.Generator().manual_seed(seed), **sample_kwargs(ckpt.family, method, steps))
    if png is not None:
        from seqlab.viz.plots import plot_image_grid

        side = model.config.image_size
        plot_image_grid(x[:, 0].reshape(n, -1), png, side=side, cols=min(n, 16),
                        title=f"{ckpt.family} samples (seed {seed})")
    return x


@torch.no_grad()
def write_views(path: str | os.PathLike, *, seed: int = 0, method: str | None = None, steps: int | None = None,
                trajectory: str | os.PathLike | None = None, latent_map: str | os.PathLike | None = None,
                interpolate: str | os.PathLike | None = None, reconstruct: str | os.PathLike | None = None
                ) -> list[Path]:
    """The pictures of one model beyond its samples: a diffusion run's denoising ``trajectory``
    (8 samples, x_T to x_0); a VAE run's ``latent_map`` (test images' posterior means by class,
    with the decoded grid when the latent space is 2-D), ``interpolate`` (decoded along the line
    between the codes of test images of different classes) and ``reconstruct`` (test images
    over their reconstructions)."""
    from seqlab.viz.plots import plot_image_grid

    model, ckpt = load_model(path)
    family = ckpt.family
    asked = {"trajectory": trajectory, "latent_map": latent_map, "interpolate": interpolate,
             "reconstruct": reconstruct}
    allowed = {"diffusion": {"trajectory"}, "vae": {"latent_map", "interpolate", "reconstruct"}}.get(family, set())
    wrong = [k for k, v in asked.items() if v is not None and k not in allowed]
    if wrong:
        fail(", ".join("--" + k.replace("_", "-") for k in wrong),
             "--trajectory with a diffusion run; --latent-map, --interpolate, --reconstruct with a vae run",
             f"a {family!r} run")
    data = run_data(path)
    side, written = data.side, []
    if trajectory is not None:
        from seqlab.viz.generative import plot_trajectory

        _, snaps = model.sample(8, generator=torch.Generator().manual_seed(seed), trajectory=True,
                                **sample_kwargs(family, method, steps))
        ts = model.trajectory_timesteps(**sample_kwargs(family, method, steps))
        written.append(plot_trajectory(snaps, trajectory, [f"t={t}" for t in ts]))
    test, labels = data.images("test"), data.split("test").y
    if latent_map is not None:
        from seqlab.viz.generative import plot_latent_map

        written.append(plot_latent_map(model, test, labels, latent_map))
    if interpolate is not None:
        rows = []
        for a, b in ((0, 1), (3, 8), (4, 7), (5, 6)):  # pairs of classes (when present)
            ia, ib = (labels == a).nonzero(), (labels == b).nonzero()
            if len(ia) and len(ib):
                rows.append(model.interpolate(test[ia[0]], test[ib[0]], steps=10))
        if not rows:
            fail("interpolate", "test images of at least two classes", f"labels {sorted(set(labels.tolist()))}")
        grid = torch.cat(rows)
        written.append(plot_image_grid(grid[:, 0].reshape(grid.shape[0], -1), interpolate, side=side, cols=10,
                                       title="VAE: decoded along straight lines between two test images' codes"))
    if reconstruct is not None:
        x = test[:10]
        both = torch.cat([x, model.reconstruct(x)])
        written.append(plot_image_grid(both[:, 0].reshape(20, -1), reconstruct, side=side, cols=10,
                                       row_labels=["data", "recon."], title="VAE: test images and reconstructions"))
    return written


def evaluate_run(path: str | os.PathLike, *, n: int | None = None, seed: int = 0, method: str | None = None,
                 steps: int | None = None, progress: bool = False):
    """The evaluation protocol (``seqlab.generative.evaluate``) for the model of a run."""
    from seqlab.generative.evaluate import default_n, evaluate_samples

    model, ckpt = load_model(path)
    data = run_data(path)
    n = default_n(data) if n is None else check_int(n, "n", minimum=2)
    with torch.no_grad():
        x = model.sample(n, generator=torch.Generator().manual_seed(seed),
                         **sample_kwargs(ckpt.family, method, steps))
    return evaluate_samples(x, data, seed=seed, progress=progress)


def summary(result: TrainResult, family: str) -> str:
    if result.best_val_loss is None:
        return f"{result.steps} steps, no evaluation yet"
    what = {"gan": "discriminator loss", "vae": "negative ELBO (nats/image)",
            "diffusion": "noise-prediction MSE"}[family]
    return f"validation {what} {result.best_val_loss:.4f} (best), {result.steps} steps in {result.seconds:.0f} s"
