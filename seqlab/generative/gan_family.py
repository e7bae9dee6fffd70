"""The GAN as a family of the registry (``seqlab.runs``): ``seqlab train gan``, ``seqlab
sample``, ``seqlab eval``. Its discriminator's validation loss does not rank the generator's
samples, so ``load`` takes a run's latest checkpoint, not its best."""

from __future__ import annotations

from seqlab.generative.gan import GAN, PRESETS, GANConfig
from seqlab.generative.imagefamily import ImageFamily
from seqlab.runs import register


class GANFamily(ImageFamily):
    name = "gan"
    description = "generative adversarial network: a deconvolutional generator against a convolutional discriminator"
    model_class = GAN
    config_class = GANConfig
    presets = PRESETS
    # DCGAN's Adam settings (lr 2e-4, beta1 0.5), constant learning rate; a few minutes on the digits
    train_defaults = dict(max_steps=4000, batch_size=64, lr=2e-4, beta1=0.5, beta2=0.999, schedule="constant",
                          warmup_steps=0, weight_decay=0.0, clip_norm=None, eval_every=500, eval_batches=10,
                          log_every=50)
    checkpoint = "latest"
    metric = "validation discriminator loss"
    legacy_fields = {"g_width": "hidden_size", "d_width": "d_hidden_size"}


register(GANFamily())
