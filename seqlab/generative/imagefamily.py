"""What the three generative families share (GAN, VAE, diffusion; ``*_family.py`` beside
this file): images from ``seqlab.data.images`` -> model -> the trainer, a grid of samples
written into ``RUN/samples/`` at every evaluation, sampling to a PNG grid, and the one
evaluation protocol of ``seqlab.generative.evaluate``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from seqlab.data.images import ImageData, ImageOptions, load_image_data, saved_image_data
from seqlab.progress import Progress
from seqlab.runs import Family, RunRecord
from seqlab.validation import check_int, fail

GRID = 64  # images in the sample grid written at every evaluation


@dataclass(frozen=True)
class ImageSampleOptions:
    """Options of ``seqlab sample`` for an image model.

    Attributes:
        n: images to sample
        seed: seed of the draws
        png: the PNG grid to write (none: no file)
    """

    n: int = 64
    seed: int = 0
    png: str | None = "samples.png"


@dataclass(frozen=True)
class ImageEvaluation:
    """Options of ``seqlab eval`` for an image model.

    Attributes:
        n: samples (default: half the test split, at most 2000)
        seed: seed of the samples and of the halves of the test split
    """

    n: int | None = None
    seed: int = 0


@dataclass
class ImageSamples:
    """What sampling an image model gives: the images (n, C, H, W) in [0, 1] and the files written."""

    images: torch.Tensor
    files: list[Path] = field(default_factory=list)


def flat(x: torch.Tensor) -> torch.Tensor:
    """(n, C, H, W) -> (n, H W) for the grid plots (the first channel of a colour image)."""
    return x[:, 0].reshape(x.shape[0], -1).detach().cpu()


class ImageFamily(Family):
    """A generative model of images (``model.sample(n, generator=...)``)."""

    data_class = ImageOptions
    sample_class: ClassVar[type] = ImageSampleOptions
    evaluate_class: ClassVar[type] = ImageEvaluation
    data_fields = ("channels", "image_size")

    def make_data(self, options: ImageOptions, fields, train_config) -> ImageData:
        return load_image_data(options.images, image_size=options.image_size, channels=options.channels)

    def data_from_run(self, run: RunRecord, options) -> ImageData:
        return saved_image_data(run.saved_data())

    def config_from_data(self, data: ImageData, train_config) -> dict:
        return {"channels": data.channels, "image_size": data.side}

    def training_data(self, data: ImageData):
        return data.as_images()

    def sampler_kwargs(self, options: Any) -> dict:
        """Options of ``model.sample`` beyond n and the generator (diffusion: the sampler)."""
        return {}

    def grid_kwargs(self, model) -> dict:
        """Sampler options for the grids written during training (cheap ones)."""
        return {}

    def on_eval(self, model, run_dir: Path, data: ImageData):
        from seqlab.viz.plots import plot_image_grid

        def write(step: int) -> None:
            (run_dir / "samples").mkdir(parents=True, exist_ok=True)
            # a generator of its own: the training run's random numbers are not touched
            gen = torch.Generator(device=next(model.parameters()).device).manual_seed(0)
            x = model.sample(GRID, generator=gen, **self.grid_kwargs(model))
            plot_image_grid(flat(x), run_dir / "samples" / f"step-{step:08d}.png", side=data.side, cols=8,
                            title=f"{type(model).__name__} samples at step {step}")

        return write

    def report(self, model, run: RunRecord) -> list[str]:
        return [f"sample grids in {Path(run.dir) / 'samples'}; evaluate with: seqlab eval {run.dir}"]

    @torch.no_grad()
    def sample(self, model, run: RunRecord, options: ImageSampleOptions) -> ImageSamples:
        check_int(options.n, "n", minimum=1)
        x = model.sample(options.n, generator=torch.Generator().manual_seed(options.seed),
                         **self.sampler_kwargs(options))
        out = ImageSamples(x)
        if options.png is not None:
            from seqlab.viz.plots import plot_image_grid

            out.files.append(plot_image_grid(flat(x), options.png, side=model.config.image_size,
                                             cols=min(options.n, 16),
                                             title=f"{self.name} samples (seed {options.seed})"))
        out.files.extend(self.write_views(model, run, options))
        return out

    def write_views(self, model, run: RunRecord, options: Any) -> list[Path]:
        """Pictures beyond the samples that the sample options ask for (VAE, diffusion)."""
        return []

    def format_sample(self, result: ImageSamples, options: Any) -> str:
        x = result.images
        line = f"{x.shape[0]} {self.name} samples, mean pixel {float(x.mean()):.3f}"
        return line + ("; wrote " + ", ".join(str(p) for p in result.files) if result.files else "")

    def evaluate(self, model, run: RunRecord, options: Any):
        """The protocol of ``seqlab.generative.evaluate`` on ``n`` samples. Progress (sampling
        step by step: a DDPM's n samples take minutes; the reference classifier's epochs the first
        time) shows as the caller's ``seqlab.progress.enabled`` block says (``seqlab eval``: on
        unless --quiet)."""
        from seqlab.generative.evaluate import default_n, evaluate_samples

        data = self.data_from_run(run, {})
        n = default_n(data) if options.n is None else check_int(options.n, "n", minimum=2)
        half = data.split("test").x.shape[0] // 2
        if n > half:  # refused before sampling (a DDPM's n samples take minutes), as evaluate_samples would
            fail("n", f"an integer in [2, {half}] (half the test split of {data.name})", n)
        kwargs = self.sampler_kwargs(options)
        with torch.no_grad(), sampling_progress(model, f"{self.name} eval: sampling {n} images", kwargs):
            x = model.sample(n, generator=torch.Generator().manual_seed(options.seed), **kwargs)
        return evaluate_samples(x, data, seed=options.seed, model=self.name)


@contextlib.contextmanager
def sampling_progress(model: torch.nn.Module, desc: str, sampler_kwargs: dict, progress: bool | None = None):
    """Progress through ``model.sample``: one unit per call of the model's networks (its direct
    submodules: a diffusion model's U-Net runs once per timestep, a GAN's generator or a VAE's
    decoder once). The total is known where the model lists its timesteps
    (``timestep_sequence``). The hooks only count: the samples are the same with or without."""
    total = None
    timesteps = getattr(model, "timestep_sequence", None)
    if callable(timesteps):
        names = {k: v for k, v in sampler_kwargs.items() if k in ("method", "steps")}
        total = len(timesteps(**names))
    with Progress(total, desc=desc, unit="step", enabled=progress) as bar:
        if not bar.enabled:
            yield bar
            return
        hooks = [m.register_forward_hook(lambda *_: bar.update()) for m in model.children()]
        try:
            yield bar
        finally:
            for h in hooks:
                h.remove()
