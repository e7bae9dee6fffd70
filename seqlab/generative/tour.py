"""The Generative Adversarial Networks section's step of ``seqlab tour``: a GAN, a VAE (with a
2-D latent space, so that its map can be drawn) and a diffusion model, each trained briefly on
the 8x8 digits, then sampled and scored by the same evaluation protocol."""

from __future__ import annotations

import torch

from seqlab.tour.context import TourContext
from seqlab.viz.report import Section

# training steps per model in the full tour, about 45 s (GAN), 30 s (VAE) and 70 s (diffusion)
# on 2 idle CPU cores; the guard (seconds) stops only a machine several times slower
STEPS = {"gan": 6000, "vae": 18000, "diffusion": 5000}
GUARD = 300.0


EQUATIONS = {
    "gan": (r"\min_{G}\ \max_{D}\ V(D, G) = \mathbb{E}_{x}\left[\log D(x)\right] + "
            r"\mathbb{E}_{z}\left[\log\left(1 - D(G(z))\right)\right]",),
    "vae": (r"\log p(x) \geq \mathbb{E}_{q(z \mid x)}\left[\log p(x \mid z)\right] - "
            r"\mathrm{KL}\left(q(z \mid x)\ \|\ p(z)\right), \qquad z = \mu + \sigma \odot \epsilon",),
    "diffusion": (r"x_{t} = \sqrt{\bar{\alpha}_{t}}\, x_{0} + \sqrt{1 - \bar{\alpha}_{t}}\, \epsilon, \qquad "
                  r"L = \mathbb{E}_{t, x_{0}, \epsilon} \left\| \epsilon - \epsilon_{\theta}(x_{t}, t) "
                  r"\right\|^{2}",),
}
TEXT = {
    "gan": "The GAN's generator G turns noise z into images and is trained against a discriminator D that tells "
           "real from generated ones: a zero-sum game.",
    "vae": "The VAE encodes an image to a Gaussian q(z | x) over a latent code (here 2-D, so that it can be "
           "drawn) and decodes samples of it; it is trained on a lower bound on the likelihood (the ELBO), "
           "sampling z by the reparameterisation trick.",
    "diffusion": "The diffusion model (DDPM) learns to predict the noise added to an image, and generates by "
                 "removing noise step by step from pure noise x_T.",
}


def generative(ctx: TourContext, sec: Section) -> str:
    import seqlab
    from seqlab.data.images import saved_image_data
    from seqlab.generative.evaluate import default_n, evaluate_samples
    from seqlab.viz.generative import plot_latent_map, plot_trajectory
    from seqlab.viz.plots import plot_image_grid

    rows, scores, T = [], {}, 0
    n = 40 if ctx.quick else None
    sec.text("Three ways to generate images, each trained for its planned number of steps on the 8x8 digits, "
             "then sampled and scored by the same evaluation.")
    for family in ("gan", "vae", "diffusion"):
        options: dict = {"latent_size": 2} if family == "vae" else {}
        train = {"max_steps": 20, "eval_every": 10, "eval_batches": 2} if ctx.quick else {"max_steps": STEPS[family]}
        result = ctx.train(family, guard=GUARD, **train, **options)
        model, run = seqlab.load(result.run_dir)
        data = saved_image_data(run.data)
        gen = torch.Generator().manual_seed(ctx.seed)
        kwargs = {"method": "ddim", "steps": 50} if family == "diffusion" else {}
        with torch.no_grad():
            x = model.sample(default_n(data) if n is None else n, generator=gen, **kwargs)
        ev = evaluate_samples(x, data, seed=ctx.seed, model=family)
        scores[family] = ev
        sec.text(TEXT[family])
        sec.equation(*EQUATIONS[family])
        png = ctx.out / f"{family}_samples.png"
        plot_image_grid(x[:40, 0].reshape(min(40, x.shape[0]), -1), png, side=data.side, cols=10,
                        title=f"{family}: samples after {result.steps} steps")
        how = " (DDIM: 50 of the noising steps)" if family == "diffusion" else ""
        sec.figure(png, f"{family}: samples{how} after {result.steps:,} training steps ({result.seconds:.0f} s)")
        rows.append([family, f"{result.steps:,}", f"{ev.frechet:.1f}", f"{ev.coverage}/{ev.classes}",
                     f"{ev.confident:.0%}"])
        if family == "vae":
            test = data.images("test")
            plot_latent_map(model, test, data.split("test").y, ctx.out / "vae_latent.png")
            sec.figure(ctx.out / "vae_latent.png", "VAE: posterior means of the test digits in the 2-D latent "
                       "space, coloured by digit, and images decoded on a grid of z")
        if family == "diffusion":
            T = model.config.timesteps
            _, snaps = model.sample(8, generator=torch.Generator().manual_seed(ctx.seed), trajectory=True)
            ts = model.trajectory_timesteps("ddpm")
            plot_trajectory(snaps, ctx.out / "diffusion_trajectory.png", [f"t={t}" for t in ts])
            sec.figure(ctx.out / "diffusion_trajectory.png", f"diffusion: ancestral sampling through all {T} "
                       "steps from pure noise x_T (left) to x_0 (right), one row per sample")
    ev = scores["diffusion"]
    rows.append(["real test digits (floor)", "-", f"{ev.floor:.1f}", f"{ev.real_coverage}/{ev.classes}",
                 f"{ev.real_confident:.0%}"])
    sec.text(
        f"All three are scored the same way: a classifier trained once on real digits (test accuracy "
        f"{ev.classifier.test_accuracy:.3f}) gives features for the Frechet distance between {ev.n} samples "
        f"and {ev.n} real test digits, next to the distance between two halves of the real test digits; it "
        f"also says which classes the samples cover and how confidently they are classified.")
    sec.table(["model", "training steps", "Frechet distance", "classes covered", "classifier confidence >= 0.9"],
              rows)
    return "; ".join(f"{f}: FD {s.frechet:.1f}, {s.coverage}/{s.classes} classes" for f, s in scores.items()) + \
        f" (real-data floor {ev.floor:.1f})"
