"""The diffusion model as a family of the registry (``seqlab.runs``): ``seqlab train
diffusion``, ``seqlab sample`` (DDPM or DDIM, with the denoising trajectory), ``seqlab eval``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from seqlab.generative.diffusion import PRESETS, Diffusion, DiffusionConfig
from seqlab.generative.imagefamily import ImageEvaluation, ImageFamily, ImageSampleOptions
from seqlab.runs import RunRecord, register


@dataclass(frozen=True)
class DiffusionSampleOptions(ImageSampleOptions):
    """Options of ``seqlab sample`` for a diffusion run.

    Attributes:
        method: ddpm (ancestral, every timestep) or ddim (deterministic, fewer steps)
        steps: with ddim: the sampling steps (default 50)
        trajectory: also draw the denoising trajectory x_T ... x_0 of 8 samples to this PNG
    """

    method: str = "ddpm"
    steps: int | None = None
    trajectory: str | None = None


@dataclass(frozen=True)
class DiffusionEvaluation(ImageEvaluation):
    """Options of ``seqlab eval`` for a diffusion run.

    Attributes:
        method: ddpm (ancestral, every timestep) or ddim (deterministic, fewer steps)
        steps: with ddim: the sampling steps (default 50)
    """

    method: str = "ddpm"
    steps: int | None = None


class DiffusionFamily(ImageFamily):
    name = "diffusion"
    description = "denoising diffusion model (DDPM, DDIM sampling) with a small U-Net predicting the noise"
    model_class = Diffusion
    config_class = DiffusionConfig
    sample_class = DiffusionSampleOptions
    evaluate_class = DiffusionEvaluation
    presets = PRESETS
    train_defaults = dict(max_steps=6000, batch_size=64, lr=2e-3, min_lr=1e-4, warmup_steps=200, weight_decay=0.0,
                          clip_norm=1.0, eval_every=500, eval_batches=10, log_every=50)
    metric = "validation noise-prediction MSE"
    legacy_fields = {"schedule": "beta_schedule"}

    def sampler_kwargs(self, options) -> dict:
        out = {"method": options.method}
        if options.steps is not None:
            out["steps"] = options.steps
        return out

    def grid_kwargs(self, model: Diffusion) -> dict:
        return {"method": "ddim", "steps": min(50, model.config.timesteps)}  # keeps the grids cheap

    @torch.no_grad()
    def write_views(self, model: Diffusion, run: RunRecord, options: DiffusionSampleOptions) -> list[Path]:
        if options.trajectory is None:
            return []
        from seqlab.viz.generative import plot_trajectory

        kwargs = self.sampler_kwargs(options)
        _, snaps = model.sample(8, generator=torch.Generator().manual_seed(options.seed), trajectory=True, **kwargs)
        ts = model.trajectory_timesteps(**kwargs)
        return [plot_trajectory(snaps, options.trajectory, [f"t={t}" for t in ts])]


register(DiffusionFamily())
