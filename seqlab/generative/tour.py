"""The Generative Adversarial Networks section's step of ``seqlab tour``: a GAN, a VAE (with a
2-D latent space, so that its map can be drawn) and a diffusion model, each trained briefly on
the 8x8 digits, then sampled and scored by the same evaluation protocol."""

from __future__ import annotations

import torch

from seqlab.tour.context import TourContext
from seqlab.viz.report import Section

# seconds of training per model in the full tour (quick: a few steps)
BUDGET = {"gan": 45.0, "vae": 30.0, "diffusion": 75.0}


def generative(ctx: TourContext, sec: Section) -> str:
    import seqlab
    from seqlab.data.images import saved_image_data
    from seqlab.generative.evaluate import default_n, evaluate_samples
    from seqlab.viz.generative import plot_latent_map, plot_trajectory
    from seqlab.viz.plots import plot_image_grid

    rows, scores, T = [], {}, 0
    n = 40 if ctx.quick else None
    for family in ("gan", "vae", "diffusion"):
        options: dict = {"latent_size": 2} if family == "vae" else {}
        train = {"max_steps": 20, "eval_every": 10, "eval_batches": 2} if ctx.quick else \
            {"max_steps": 100_000, "max_seconds": BUDGET[family]}
        result = seqlab.train(family, out=ctx.run_dir(family), progress=ctx.progress, **train, **options)
        model, run = seqlab.load(result.run_dir)
        data = saved_image_data(run.data)
        gen = torch.Generator().manual_seed(ctx.seed)
        kwargs = {"method": "ddim", "steps": 50} if family == "diffusion" else {}
        with torch.no_grad():
            x = model.sample(default_n(data) if n is None else n, generator=gen, **kwargs)
        ev = evaluate_samples(x, data, seed=ctx.seed, model=family)
        scores[family] = ev
        png = ctx.out / f"{family}_samples.png"
        plot_image_grid(x[:40, 0].reshape(min(40, x.shape[0]), -1), png, side=data.side, cols=10,
                        title=f"{family}: samples after {result.steps} steps")
        sec.images.append((str(png), f"{family}: samples after {result.steps} training steps "
                                     f"({result.seconds:.0f} s)"))
        rows.append([family, str(result.steps), f"{ev.frechet:.1f}", f"{ev.coverage}/{ev.classes}",
                     f"{ev.confident:.0%}"])
        if family == "vae":
            test = data.images("test")
            plot_latent_map(model, test, data.split("test").y, ctx.out / "vae_latent.png")
            sec.images.append((str(ctx.out / "vae_latent.png"), "VAE: posterior means of the test digits in the "
                               "2-D latent space, coloured by digit, and images decoded on a grid of z"))
        if family == "diffusion":
            T = model.config.timesteps
            _, snaps = model.sample(8, generator=torch.Generator().manual_seed(ctx.seed), trajectory=True)
            ts = model.trajectory_timesteps("ddpm")
            plot_trajectory(snaps, ctx.out / "diffusion_trajectory.png", [f"t={t}" for t in ts])
            sec.images.append((str(ctx.out / "diffusion_trajectory.png"), "diffusion: ancestral sampling from "
                               "pure noise x_T (left) to x_0 (right), one row per sample"))
    ev = scores["diffusion"]
    rows.append(["real test digits (floor)", "-", f"{ev.floor:.1f}", f"{ev.real_coverage}/{ev.classes}",
                 f"{ev.real_confident:.0%}"])
    sec.tables.append((["model", "training steps", "Frechet distance", "classes covered",
                        "classifier confidence >= 0.9"], rows))
    sec.paragraphs.append(
        f"Three ways to generate images. The GAN's generator turns noise into images and is trained against a "
        f"discriminator that tells real from generated ones (a zero-sum game). The VAE encodes an image to a "
        f"Gaussian over a latent code and decodes samples of it, trained on a bound on the likelihood (the "
        f"ELBO). The diffusion model learns to predict the noise added to an image, and generates by removing "
        f"noise step by step (the samples above use DDIM: 50 of the {T} noising steps). All three are scored the same "
        f"way: a classifier trained once on real digits (test accuracy "
        f"{ev.classifier.test_accuracy:.3f}) gives features for the Frechet distance between {ev.n} samples "
        f"and {ev.n} real test digits, next to the distance between two halves of the real test digits.")
    return "; ".join(f"{f}: FD {s.frechet:.1f}, {s.coverage}/{s.classes} classes" for f, s in scores.items()) + \
        f" (real-data floor {ev.floor:.1f})"
