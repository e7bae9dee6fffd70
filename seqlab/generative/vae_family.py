"""The VAE as a family of the registry (``seqlab.runs``): ``seqlab train vae``, ``seqlab
sample`` (with its latent map, interpolations and reconstructions), ``seqlab eval``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from seqlab.generative.imagefamily import ImageFamily, ImageSampleOptions, flat
from seqlab.generative.vae import PRESETS, VAE, VAEConfig
from seqlab.runs import RunRecord, register
from seqlab.validation import fail

PAIRS = ((0, 1), (3, 8), (4, 7), (5, 6))  # classes whose test images are interpolated (when present)


@dataclass(frozen=True)
class VAESampleOptions(ImageSampleOptions):
    """Options of ``seqlab sample`` for a VAE run.

    Attributes:
        latent_map: also draw the latent space (test images by class) to this PNG
        interpolate: also draw decodings along lines between test images' codes to this PNG
        reconstruct: also draw test images over their reconstructions to this PNG
    """

    latent_map: str | None = None
    interpolate: str | None = None
    reconstruct: str | None = None


class VAEFamily(ImageFamily):
    name = "vae"
    description = "variational autoencoder: Gaussian encoder, Bernoulli decoder, the ELBO with an analytic KL"
    model_class = VAE
    config_class = VAEConfig
    sample_class = VAESampleOptions
    presets = PRESETS
    train_defaults = dict(max_steps=4000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.0,
                          clip_norm=5.0, eval_every=500, eval_batches=10, log_every=50)
    metric = "validation negative ELBO (nats/image)"
    legacy_fields = {"hidden": "hidden_size"}

    @torch.no_grad()
    def write_views(self, model: VAE, run: RunRecord, options: VAESampleOptions) -> list[Path]:
        from seqlab.viz.generative import plot_latent_map
        from seqlab.viz.plots import plot_image_grid

        if options.latent_map is None and options.interpolate is None and options.reconstruct is None:
            return []
        data = self.data_from_run(run, {})
        test, labels = data.images("test"), data.split("test").y
        side, written = data.side, []
        if options.latent_map is not None:
            written.append(plot_latent_map(model, test, labels, options.latent_map))
        if options.interpolate is not None:
            rows = []
            for a, b in PAIRS:
                ia, ib = (labels == a).nonzero(), (labels == b).nonzero()
                if len(ia) and len(ib):
                    rows.append(model.interpolate(test[ia[0]], test[ib[0]], steps=10))
            if not rows:
                fail("interpolate", "test images of at least two classes", f"labels {sorted(set(labels.tolist()))}")
            grid = torch.cat(rows)
            written.append(plot_image_grid(flat(grid), options.interpolate, side=side, cols=10,
                                           title="VAE: decoded along straight lines between two test images' codes"))
        if options.reconstruct is not None:
            x = test[:10]
            written.append(plot_image_grid(flat(torch.cat([x, model.reconstruct(x)])), options.reconstruct,
                                           side=side, cols=10, row_labels=["data", "recon."],
                                           title="VAE: test images and reconstructions"))
        return written


register(VAEFamily())
