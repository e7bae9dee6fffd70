"""The restricted Boltzmann machine as a family of the registry (``seqlab.runs``):
``seqlab train rbm``, ``seqlab sample``, ``seqlab eval``. Binarized images -> ``RBM`` -> the
trainer, which calls the RBM's own CD-k / PCD-k ``train_step`` (no optimizer, no backward
pass); the validation loss is -log pseudo-likelihood per image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from seqlab.data.images import ImageData, load_image_data, saved_image_data
from seqlab.energy.rbm import PRESETS, RBM, RBMConfig
from seqlab.energy.rbm_eval import RBMEvaluation, evaluate_rbm
from seqlab.runs import Family, NoOptions, RunRecord, register
from seqlab.validation import check_int, fail


@dataclass(frozen=True)
class RBMData:
    """The images of an RBM (binarized at half their range).

    Attributes:
        images: digits (scikit-learn's 8x8 digits, embedded) or fashion-mnist (Debian's dataset-fashion-mnist)
    """

    images: str = "digits"


MAX_GIBBS_STEPS = 1_000_000  # about a minute for 64 chains on a laptop CPU


@dataclass(frozen=True)
class RBMSampleOptions:
    """Options of ``seqlab sample`` for an RBM run.

    Attributes:
        n: images to sample
        steps: Gibbs steps from a random start (1 to 1,000,000)
        seed: seed of the chains
        png: the PNG grid of p(v | h) to write (none: no file)
    """

    n: int = 64
    steps: int = 1000
    seed: int = 0
    png: str | None = "samples.png"


class RBMFamily(Family):
    name = "rbm"
    description = "restricted Boltzmann machine on binarized images, by (persistent) contrastive divergence"
    model_class = RBM
    config_class = RBMConfig
    data_class = RBMData
    sample_class = RBMSampleOptions
    evaluate_class = NoOptions
    presets = PRESETS
    # What `seqlab train rbm` does with no options: PCD-1 with 100 hidden units, batches of 10,
    # plain SGD at a constant lr 0.05 (scikit-learn's BernoulliRBM recipe), 20 epochs of the
    # training split.
    train_defaults = dict(max_steps=2500, batch_size=10, lr=0.05, schedule="constant", warmup_steps=0,
                          weight_decay=0.0, clip_norm=None, eval_every=250, eval_batches=20, log_every=25)
    data_fields = ("visible_size",)
    metric = "validation -log pseudo-likelihood (nats/image)"
    legacy_fields = {"n_visible": "visible_size", "n_hidden": "hidden_size"}
    flag_aliases = {"cd": ("persistent", False, "CD-k: each update's chains start at the data (= --no-persistent)")}

    def make_data(self, options: RBMData, fields, train_config) -> ImageData:
        return load_image_data(options.images, binary=True)

    def data_from_run(self, run: RunRecord, options) -> ImageData:
        return saved_image_data(run.saved_data(), binary=True)

    def config_from_data(self, data: ImageData, train_config) -> dict:
        return {"visible_size": data.dim, "n_chains": train_config.batch_size}

    def report(self, model: RBM, run: RunRecord) -> list[str]:
        from seqlab.viz.energy import plot_rbm_pictures

        data = self.data_from_run(run, {})
        paths = plot_rbm_pictures(model, data, Path(run.dir))
        return [evaluate_rbm(model, data).line(), "wrote " + ", ".join(str(p) for p in paths.values())]

    def evaluate(self, model: RBM, run: RunRecord, options) -> RBMEvaluation:
        return evaluate_rbm(model, self.data_from_run(run, {}))

    @torch.no_grad()
    def sample(self, model: RBM, run: RunRecord, options: RBMSampleOptions) -> torch.Tensor:
        """``n`` samples p(v | h) (n, D) after ``steps`` Gibbs steps; optionally a PNG grid."""
        check_int(options.n, "n", minimum=1)
        check_int(options.steps, "steps", minimum=1, maximum=MAX_GIBBS_STEPS)
        _, pv = model.sample(options.n, steps=options.steps, generator=torch.Generator().manual_seed(options.seed))
        if options.png is not None:
            from seqlab.viz.plots import plot_image_grid

            side = int(round(model.config.visible_size ** 0.5))
            if side * side != model.config.visible_size:
                fail("png", f"square images (visible_size a square, received {model.config.visible_size})",
                     options.png)
            plot_image_grid(pv, options.png, side=side, cols=min(options.n, 16),
                            title=f"RBM samples after {options.steps} Gibbs steps")
        return pv

    def format_sample(self, result: torch.Tensor, options: RBMSampleOptions) -> str:
        wrote = f"; wrote {options.png}" if options.png is not None else ""
        return (f"{result.shape[0]} samples after {options.steps} Gibbs steps, mean pixel "
                f"{float(result.mean()):.3f}{wrote}")


register(RBMFamily())
